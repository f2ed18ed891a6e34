//! `manifest.sha256`: one line per file, `<64 lowercase hex>  <path>\n`,
//! exactly as `sha256sum` writes it (text mode, two spaces), paths
//! relative to the bundled directory with `/` separators, no `./`, sorted
//! bytewise, each once (docs/bundles.md, "The manifest").
//!
//! `sha256sum` escapes a name holding a backslash or a line break (the line
//! then starts with `\`); such names are refused here instead, so every
//! line of a manifest is plain and `sha256sum -c` reads it as written.

use std::fmt;

use crate::keys::{decode_hex, quoted};
use crate::{LineError, MANIFEST_NAME, SIGNATURE_NAME};

/// One file of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its path inside the bundle (checked by [`check_path`]).
    pub path: String,
    /// The SHA-256 of its bytes.
    pub sha256: [u8; 32],
}

/// A manifest: its entries in bytewise order of path, each path once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<Entry>,
}

impl Manifest {
    /// The manifest of `entries`, sorted bytewise by path. Every path must
    /// pass [`check_path`] and appear once: the caller (packing) checked
    /// them as it walked the directory.
    pub(crate) fn new(mut entries: Vec<Entry>) -> Manifest {
        entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        // Invariant: a Plan holds only checked paths, each once (Plan::scan).
        assert!(entries.iter().all(|e| check_path(&e.path).is_ok()), "a manifest path was not checked");
        assert!(entries.windows(2).all(|w| w[0].path != w[1].path), "a manifest path appears twice");
        Manifest { entries }
    }

    /// The entries, in bytewise order of path.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The manifest's bytes, as `sha256sum` would print them.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Parses a manifest's bytes. Only what [`Manifest::to_bytes`] writes is
    /// accepted: every line ends with `\n`, is `<64 lowercase hex>  <path>`
    /// with a path [`check_path`] accepts, and comes after the line before
    /// it in bytewise order. At least one line.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, LineError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut rest = bytes;
        let mut line = 0u64;
        while !rest.is_empty() {
            line += 1;
            let error = |reason: String| LineError { line, reason };
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                return Err(error("the last line does not end with a line break".into()));
            };
            let text = std::str::from_utf8(&rest[..end]).map_err(|_| error("not UTF-8 text".into()))?;
            rest = &rest[end + 1..];
            let (digest, path) = match text.split_at_checked(64) {
                Some((digest, tail)) if tail.starts_with("  ") => (digest, &tail[2..]),
                _ => {
                    return Err(error(format!(
                        "expected `<64 hex digits>  <path>` (two spaces), found `{}`",
                        quoted(text)
                    )))
                }
            };
            let sha256 = decode_hex::<32>(digest).map_err(|reason| error(format!("the digest: {reason}")))?;
            check_path(path).map_err(|reason| error(format!("the path `{}`: {reason}", quoted(path))))?;
            if let Some(previous) = entries.last() {
                if previous.path.as_bytes() >= path.as_bytes() {
                    let how = if previous.path == path { "appears twice" } else { "is out of bytewise order" };
                    return Err(error(format!("`{}` {how} (after `{}`)", quoted(path), quoted(&previous.path))));
                }
            }
            entries.push(Entry { path: path.to_owned(), sha256 });
        }
        if entries.is_empty() {
            return Err(LineError { line: 1, reason: "empty: a manifest lists at least one file".into() });
        }
        Ok(Manifest { entries })
    }
}

impl fmt::Display for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            writeln!(f, "{}  {}", hex::encode(entry.sha256), entry.path)?;
        }
        Ok(())
    }
}

/// Whether `path` can be a file's path in a bundle, or why not: not empty,
/// relative, `/`-separated with no empty, `.` or `..` component, no line
/// break, carriage return or backslash (which `sha256sum` would escape),
/// and not the manifest's or the signature's own name.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty".into());
    }
    if let Some(c) = path.chars().find(|c| matches!(c, '\n' | '\r' | '\\')) {
        return Err(format!(
            "holds a {}, which a sha256sum manifest cannot hold unescaped",
            match c {
                '\n' => "line break",
                '\r' => "carriage return",
                _ => "backslash",
            }
        ));
    }
    if path.starts_with('/') {
        return Err("absolute".into());
    }
    if path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err("has an empty, `.` or `..` component".into());
    }
    if path == MANIFEST_NAME || path == SIGNATURE_NAME {
        return Err("is the name of the bundle's own manifest or signature".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn parse_error(text: &str) -> LineError {
        Manifest::parse(text.as_bytes()).expect_err(text)
    }

    #[test]
    fn writes_what_sha256sum_writes_and_reads_it_back() {
        let manifest = Manifest::new(vec![
            Entry { path: "b/x".into(), sha256: [0xbb; 32] },
            Entry { path: "a".into(), sha256: [0xaa; 32] },
            Entry { path: "B".into(), sha256: [0xaa; 32] },
        ]);
        let text = format!("{A}  B\n{A}  a\n{B}  b/x\n");
        assert_eq!(String::from_utf8(manifest.to_bytes()).unwrap(), text, "bytewise order: `B` before `a`");
        assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), manifest);
    }

    #[test]
    fn a_bad_line_is_named_with_its_number() {
        let cases = [
            (format!("{A}  a\n{B} b\n"), 2, "two spaces"),
            (format!("{A}  a\n{}  b\n", &B[1..]), 2, "two spaces"),
            (format!("{}  a\n", A.to_uppercase()), 1, "lowercase hex digit"),
            (format!("{A}  a\n{B}  b"), 2, "does not end with a line break"),
            (format!("{A}  b\n{B}  a\n"), 2, "out of bytewise order"),
            (format!("{A}  a\n{B}  a\n"), 2, "appears twice"),
            (format!("{A}  ./a\n"), 1, "`.` or `..` component"),
            (format!("{A}  a/../b\n"), 1, "`.` or `..` component"),
            (format!("{A}  /etc/passwd\n"), 1, "absolute"),
            (format!("{A}  a\\b\n"), 1, "backslash"),
            (format!("{A}  a\r\n"), 1, "carriage return"),
            (format!("{A}  \n"), 1, "empty"),
            (format!("{A}  {MANIFEST_NAME}\n"), 1, "own manifest"),
            (String::new(), 1, "empty"),
            (format!("{A}  a\n\n"), 2, "two spaces"),
        ];
        for (text, line, reason) in cases {
            let error = parse_error(&text);
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.reason.contains(reason), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_line_that_is_not_utf8_is_named() {
        let mut bytes = format!("{A}  a\n{B}  ").into_bytes();
        bytes.extend_from_slice(b"\xff\n");
        let error = Manifest::parse(&bytes).unwrap_err();
        assert_eq!((error.line, error.reason.as_str()), (2, "not UTF-8 text"));
    }

    #[test]
    fn a_quoted_line_is_cut_short_and_escaped() {
        let long = format!("\x1b[2J{}", "x".repeat(500));
        let error = parse_error(&format!("{long}\n"));
        assert!(error.reason.contains("\\u{1b}[2J"), "{error}");
        assert!(error.reason.len() < 200, "{error}");
    }
}
