//! Ed25519 key files: their text format, their fingerprint, reading them
//! and creating a new pair (docs/bundles.md, "Key files").
//!
//! A secret key file is two lines: `metagov-ed25519-secret-v1`, then the
//! 32-byte seed as 64 lowercase hex digits. A public key file is
//! `metagov-ed25519-public-v1`, then the 32-byte public key in hex. This
//! module never writes a secret anywhere but the file it creates (mode
//! 0600, never over an existing file), and its errors never quote a
//! secret line.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use crate::{BundleError, LineError, SMALL_FILE_BYTES_MAX};

/// The first line of a secret key file.
pub const SECRET_HEADER: &str = "metagov-ed25519-secret-v1";

/// The first line of a public key file.
pub const PUBLIC_HEADER: &str = "metagov-ed25519-public-v1";

/// A secret (signing) key. Its bytes are wiped when it is dropped.
pub struct SecretKey(SigningKey);

/// A public (verifying) key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl SecretKey {
    /// The key whose seed is `seed`: the caller draws the 32 bytes from the
    /// operating system's randomness (this crate draws none).
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// Its public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Reads a secret key file.
    pub fn read(path: &Path) -> Result<SecretKey, BundleError> {
        let text = read_small_file(path)?;
        let seed = parse_two_lines(&text, SECRET_HEADER, "secret key", true).map_err(|e| e.in_file(path))?;
        Ok(SecretKey::from_seed(seed))
    }

    /// The text of its secret key file.
    fn file_text(&self) -> String {
        format!("{SECRET_HEADER}\n{}\n", hex::encode(self.0.to_bytes()))
    }
}

impl PublicKey {
    /// The key of 32 bytes, or why they are not an Ed25519 public key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, String> {
        VerifyingKey::from_bytes(bytes).map(PublicKey).map_err(|e| format!("not an Ed25519 public key ({e})"))
    }

    /// Its 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Its bytes as 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    /// How a person tells keys apart: `SHA256:` and the first 16 hex digits
    /// of the SHA-256 of the key's 32 bytes.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", &crate::sha256_hex(&self.0.to_bytes())[..16])
    }

    /// True when `signature` is this key's Ed25519 signature of `message`
    /// (strict verification: no malleable or small-order encodings).
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.0.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature)).is_ok()
    }

    /// Reads a public key file.
    pub fn read(path: &Path) -> Result<PublicKey, BundleError> {
        let text = read_small_file(path)?;
        let bytes = parse_two_lines(&text, PUBLIC_HEADER, "public key", false).map_err(|e| e.in_file(path))?;
        PublicKey::from_bytes(&bytes).map_err(|reason| LineError { line: 2, reason }.in_file(path))
    }

    /// The text of its public key file (`KEY.pub`).
    pub fn file_text(&self) -> String {
        format!("{PUBLIC_HEADER}\n{}\n", self.hex())
    }
}

/// Where [`write_new_pair`] put the public half of a key pair.
pub struct NewPair {
    /// The public key file, the secret's path with `.pub` added.
    pub public: PathBuf,
    /// The public key.
    pub key: PublicKey,
}

/// The public key file that goes with the secret key file `secret`: its
/// name with `.pub` added.
pub fn public_path(secret: &Path) -> PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Writes `key` to a new file `secret` (mode 0600) and its public half to
/// `secret.pub` (mode 0644). Neither may exist: an existing file is an
/// error naming it, and nothing is written. If the public file cannot be
/// written, the secret file just created is removed again.
pub fn write_new_pair(secret: &Path, key: &SecretKey) -> Result<NewPair, BundleError> {
    let public = public_path(secret);
    for path in [secret, &public] {
        if fs::symlink_metadata(path).is_ok() {
            return Err(BundleError::Exists { path: path.to_path_buf() });
        }
    }
    write_new(secret, key.file_text().as_bytes(), 0o600)?;
    if let Err(e) = write_new(&public, key.public().file_text().as_bytes(), 0o644) {
        // The secret alone is of no use and was created just now by us.
        let _ = fs::remove_file(secret);
        return Err(e);
    }
    Ok(NewPair { public, key: key.public() })
}

/// Creates `path` (never over an existing file, whatever appeared since
/// the check) with `mode`, writes `bytes` and syncs; a file it created but
/// could not fill is removed again.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BundleError> {
    let io = |source| BundleError::Io { path: path.to_path_buf(), source };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            BundleError::Exists { path: path.to_path_buf() }
        } else {
            io(source)
        }
    })?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    written.map_err(|source| {
        let _ = fs::remove_file(path);
        io(source)
    })
}

/// Reads a key or signature file whole as text, refusing one over
/// [`SMALL_FILE_BYTES_MAX`] bytes.
pub(crate) fn read_small_file(path: &Path) -> Result<String, BundleError> {
    let io = |source| BundleError::Io { path: path.to_path_buf(), source };
    let file = fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(SMALL_FILE_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(io)?;
    let len = bytes.len() as u64;
    if len > SMALL_FILE_BYTES_MAX {
        return Err(BundleError::TooLarge { path: path.to_path_buf(), bytes: len, max: SMALL_FILE_BYTES_MAX });
    }
    text(bytes).map_err(|e| e.in_file(path))
}

/// `bytes` as UTF-8 text, or the line where they stop being UTF-8.
pub(crate) fn text(bytes: Vec<u8>) -> Result<String, LineError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        LineError { line: 1 + valid.iter().filter(|&&b| b == b'\n').count() as u64, reason: "not UTF-8 text".into() }
    })
}

/// The lines of a small text file: each ended by `\n` (the last may lack
/// it), none holding `\r`.
pub(crate) fn text_lines(text: &str) -> Result<Vec<&str>, LineError> {
    let lines: Vec<&str> = text.strip_suffix('\n').unwrap_or(text).split('\n').collect();
    match lines.iter().position(|l| l.contains('\r')) {
        Some(i) => Err(LineError {
            line: i as u64 + 1,
            reason: "holds a carriage return (the file must have Unix line ends)".into(),
        }),
        None => Ok(lines),
    }
}

/// The 32 bytes of a two-line key file whose first line is `header`.
/// `secret`: the second line is never quoted in an error.
fn parse_two_lines(text: &str, header: &str, what: &str, secret: bool) -> Result<[u8; 32], LineError> {
    let error = |line, reason: String| LineError { line, reason };
    let lines = text_lines(text)?;
    let first = lines.first().copied().unwrap_or("");
    if first != header {
        let hint = match first {
            SECRET_HEADER => " (this is a secret key file; give its .pub file)",
            PUBLIC_HEADER => " (this is a public key file; give the secret key file, without .pub)",
            _ => "",
        };
        return Err(error(1, format!("expected `{header}`: this is not a metagov {what} file{hint}")));
    }
    let Some(second) = lines.get(1) else {
        return Err(error(2, format!("missing: the {what} as 64 hex digits")));
    };
    let bytes = decode_hex::<32>(second).map_err(|reason| {
        if secret {
            error(2, format!("not a {what}: {reason}"))
        } else {
            error(2, format!("not a {what}: {reason}: `{}`", quoted(second)))
        }
    })?;
    if lines.len() > 2 {
        return Err(error(3, format!("unexpected: a {what} file has two lines")));
    }
    Ok(bytes)
}

/// `N` bytes from exactly `2N` lowercase hex digits, or why not.
pub(crate) fn decode_hex<const N: usize>(text: &str) -> Result<[u8; N], String> {
    if text.len() != 2 * N {
        return Err(format!("expected {} hex digits, found {} characters", 2 * N, text.chars().count()));
    }
    if let Some(c) = text.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(format!("`{}` is not a lowercase hex digit", c.escape_default()));
    }
    let mut bytes = [0; N];
    // Invariant: exactly 2N characters, each a hex digit (checked above).
    hex::decode_to_slice(text, &mut bytes).expect("checked hex digits");
    Ok(bytes)
}

/// At most 80 characters of `text`, control characters escaped: how a
/// line from a file is quoted in an error.
pub(crate) fn quoted(text: &str) -> String {
    let mut out: String = text.chars().take(80).flat_map(char::escape_default).collect();
    if text.chars().count() > 80 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032, section 7.1, TEST 1: the seed, its public key, and the
    /// signature of the empty message.
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const SIGNATURE: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    #[test]
    fn keys_follow_the_rfc_8032_test_vector() {
        let key = SecretKey::from_seed(decode_hex(SEED).unwrap());
        assert_eq!(key.public().hex(), PUBLIC);
        assert_eq!(hex::encode(key.sign(b"")), SIGNATURE);
        assert!(key.public().verifies(b"", &decode_hex(SIGNATURE).unwrap()));
    }

    #[test]
    fn key_file_text_round_trips() {
        let key = SecretKey::from_seed(decode_hex(SEED).unwrap());
        assert_eq!(key.file_text(), format!("{SECRET_HEADER}\n{SEED}\n"));
        assert_eq!(parse_two_lines(&key.file_text(), SECRET_HEADER, "secret key", true).unwrap(), key.0.to_bytes());
        assert_eq!(key.public().file_text(), format!("{PUBLIC_HEADER}\n{PUBLIC}\n"));
    }

    #[test]
    fn a_bad_key_file_names_its_line_and_never_quotes_a_secret() {
        let secret_like = "0123456789abcdefXYZ";
        let cases = [
            (format!("{PUBLIC_HEADER}\n{PUBLIC}\n"), 1, "give the secret key file"),
            (format!("{SECRET_HEADER}\n"), 2, "missing"),
            (format!("{SECRET_HEADER}\n{secret_like}\n"), 2, "expected 64 hex digits"),
            (format!("{SECRET_HEADER}\n{SEED}\nmore\n"), 3, "two lines"),
            (format!("{SECRET_HEADER}\r\n{SEED}\r\n"), 1, "carriage return"),
        ];
        for (text, line, reason) in cases {
            let error = parse_two_lines(&text, SECRET_HEADER, "secret key", true).expect_err(&text);
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.reason.contains(reason), "{text:?}: {error}");
            assert!(!error.reason.contains(secret_like), "{error} quotes the secret line");
        }
        let public = parse_two_lines(&format!("{SECRET_HEADER}\n{SEED}\n"), PUBLIC_HEADER, "public key", false);
        assert!(public.unwrap_err().reason.contains("give its .pub file"));
    }
}
