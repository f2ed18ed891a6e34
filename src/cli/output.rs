//! What the chronicle commands print and write: text escaped for a terminal,
//! and output files written beside their target and renamed into place.

use std::fmt;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Text for a person at a terminal: every control character (C0, DEL, C1,
/// which include CR, ESC and BEL) is written as `\xNN` (or `\u{NNNN}`), so a
/// string from a file can never move the cursor, rewrite a line or ring the
/// bell. Everything else passes through unchanged.
pub struct Escaped<T>(pub T);

/// [`Escaped`] for a multi-line report: the same, but a line feed is kept.
pub struct EscapedLines<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Write::write_fmt(&mut EscapingWriter { f, keep_newlines: false }, format_args!("{}", self.0))
    }
}

impl<T: fmt::Display> fmt::Display for EscapedLines<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Write::write_fmt(&mut EscapingWriter { f, keep_newlines: true }, format_args!("{}", self.0))
    }
}

/// A `fmt::Write` that escapes control characters on the way through.
struct EscapingWriter<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    keep_newlines: bool,
}

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, c) in s.char_indices() {
            if !c.is_control() || (c == '\n' && self.keep_newlines) {
                continue;
            }
            self.f.write_str(&s[start..i])?;
            let code = u32::from(c);
            if code < 0x100 {
                write!(self.f, "\\x{code:02x}")?;
            } else {
                write!(self.f, "\\u{{{code:04x}}}")?;
            }
            start = i + c.len_utf8();
        }
        self.f.write_str(&s[start..])
    }
}

/// An output file being written: a temporary file in the target's
/// directory, renamed onto the target by [`OutputFile::commit`]. Dropped
/// without a commit (an error on the way), it is removed and the target is
/// untouched, so a failed command never leaves a half-written file.
pub struct OutputFile {
    writer: BufWriter<tempfile::NamedTempFile>,
    target: PathBuf,
}

impl OutputFile {
    /// Starts writing `output` for a command that reads `input` (a file, or
    /// a run directory: each of its segments). Refuses an
    /// output that is the input (the same device and inode, after resolving
    /// links: also through a symlink or a hard link) and an output that
    /// exists but is not a regular file. A symlink is written through: its
    /// target is replaced.
    pub fn create(input: &Path, output: &Path) -> Result<OutputFile> {
        let is_link = fs::symlink_metadata(output).is_ok_and(|m| m.file_type().is_symlink());
        let target = if is_link {
            fs::canonicalize(output).unwrap_or_else(|_| output.to_path_buf())
        } else {
            output.to_path_buf()
        };
        if let Ok(meta) = fs::metadata(&target) {
            anyhow::ensure!(
                meta.is_file(),
                "refusing to write to {}: it exists and is not a regular file",
                Escaped(output.display())
            );
            // A run directory's input is each of its segment files.
            let inputs = if input.is_dir() {
                metagov_storage::segment_files(input).unwrap_or_default()
            } else {
                vec![input.to_path_buf()]
            };
            for input in &inputs {
                let input_meta =
                    fs::metadata(input).with_context(|| format!("cannot read {}", Escaped(input.display())))?;
                anyhow::ensure!(
                    !same_file(&input_meta, &meta, input, &target),
                    "refusing to write to {}: it is the input {} (the same file); choose another output",
                    Escaped(output.display()),
                    Escaped(input.display())
                );
            }
        }
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".metagov-output-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .with_context(|| format!("cannot create a temporary file in {}", Escaped(dir.display())))?;
        // The temporary file is private (0600); the output gets the mode of
        // the file it replaces, or the usual 0644.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&target).map_or(0o644, |m| m.permissions().mode() & 0o7777);
            temp.as_file()
                .set_permissions(fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set the mode of {}", Escaped(temp.path().display())))?;
        }
        Ok(OutputFile { writer: BufWriter::new(temp), target })
    }

    /// Where the output goes.
    pub fn writer(&mut self) -> &mut dyn Write {
        &mut self.writer
    }

    /// Where the output goes, for a writer that seeks back (a zip writes
    /// each entry's sizes into its header once the entry is done).
    pub fn seekable(&mut self) -> &mut (impl Write + std::io::Seek) {
        &mut self.writer
    }

    /// Flushes, syncs and renames the temporary file onto the target.
    pub fn commit(self) -> Result<()> {
        let target = self.target;
        let temp = self.writer.into_inner().map_err(|e| e.into_error()).context("cannot write the output")?;
        temp.as_file().sync_all().context("cannot sync the output")?;
        temp.persist(&target)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", Escaped(target.display())))?;
        Ok(())
    }
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata, _: &Path, _: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &fs::Metadata, _: &fs::Metadata, a: &Path, b: &Path) -> bool {
    matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(a), Ok(b)) if a == b)
}

/// `n` and `noun`, plural unless `n` is 1: `1 test`, `2 tests`.
pub fn counted(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// A CSV field holding the text of `value`, quoted (with `"` doubled) when
/// the text holds a comma, a quote or a line break. The text is written
/// twice as a stream, once to decide and once to write, and never held.
pub fn write_csv_field(out: &mut dyn Write, value: &dyn fmt::Display) -> std::io::Result<()> {
    struct NeedsQuotes(bool);
    impl fmt::Write for NeedsQuotes {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 |= s.contains([',', '"', '\n', '\r']);
            Ok(())
        }
    }
    struct Doubled<'a>(&'a mut dyn Write, Option<std::io::Error>);
    impl fmt::Write for Doubled<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let mut parts = s.split('"');
            let mut write = |bytes: &[u8]| self.0.write_all(bytes);
            let result = parts
                .next()
                .map_or(Ok(()), |p| write(p.as_bytes()))
                .and_then(|()| parts.try_for_each(|p| write(b"\"\"").and_then(|()| write(p.as_bytes()))));
            result.map_err(|e| {
                self.1 = Some(e);
                fmt::Error
            })
        }
    }
    let mut probe = NeedsQuotes(false);
    // The probe itself never fails; a failing Display is caught on the write.
    let _ = fmt::write(&mut probe, format_args!("{value}"));
    if !probe.0 {
        return write!(out, "{value}");
    }
    out.write_all(b"\"")?;
    let mut doubled = Doubled(out, None);
    if fmt::write(&mut doubled, format_args!("{value}")).is_err() {
        return Err(doubled.1.unwrap_or_else(|| std::io::Error::other("formatting failed")));
    }
    doubled.0.write_all(b"\"")
}
