//! Signed bundles: a directory packed into a zip with a `sha256sum`
//! manifest and an optional detached Ed25519 signature over it, and the
//! check of such a zip (docs/bundles.md).
//!
//! It owns the key files ([`keys`]: `metagov-ed25519-secret-v1` and
//! `metagov-ed25519-public-v1`, text), the manifest ([`manifest`]: the
//! exact bytes `sha256sum` writes, so `sha256sum -c manifest.sha256` passes
//! on an unpacked bundle), the signature file ([`signature`]:
//! `manifest.sha256.sig`), packing ([`mod@pack`]: deterministic zip bytes for
//! the same directory) and verification ([`mod@verify`]: every finding names
//! its file); and the signature of a chronicle's seal ([`seal`]:
//! `RUN.cmeta.sig`, over the chronicle's footer).
//!
//! What it must never do: read a clock or draw randomness (a new key's 32
//! random bytes are the caller's argument, and every zip entry carries the
//! fixed time 1980-01-01 00:00), touch a terminal, hold a whole file's
//! bytes in memory (contents are streamed and hashed on the way through),
//! or panic on a file, key or zip from outside: those are errors or
//! findings that name the file (and line) at fault. It reads only the
//! directory and files it is handed and writes only to the writer it is
//! handed and the key files it is asked to create.

#![deny(missing_docs)]

pub mod keys;
pub mod manifest;
pub mod pack;
pub mod seal;
pub mod signature;
pub mod verify;

use std::path::PathBuf;

pub use keys::{PublicKey, SecretKey};
pub use manifest::Manifest;
pub use pack::{pack, Packed, Plan};
pub use signature::DetachedSignature;
pub use verify::{verify, Finding, Signer, Verification};

/// The manifest's name inside a bundle (at its top level).
pub const MANIFEST_NAME: &str = "manifest.sha256";

/// The detached signature's name inside a bundle (at its top level).
pub const SIGNATURE_NAME: &str = "manifest.sha256.sig";

/// The largest manifest a bundle may hold, in bytes: 64 MiB, about 600,000
/// files. It is read whole (it is what the signature covers).
pub const MANIFEST_BYTES_MAX: u64 = 64 << 20;

/// The largest key or signature file, in bytes (each is about 200).
pub const SMALL_FILE_BYTES_MAX: u64 = 4096;

/// Why a bundle, key or signature operation could not be carried out. A
/// verification that ran and found problems is not an error: its findings
/// are data ([`Verification::findings`]).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading or writing a file failed.
    #[error("I/O error on {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A key or signature file does not hold what its first line says it
    /// holds.
    #[error("{}: line {line}: {reason}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A file that `keygen` would create exists; it is never overwritten.
    #[error("{} exists; a key file is never overwritten: choose another name or remove it", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A file of the directory cannot be put in a bundle (its name cannot be
    /// written in a `sha256sum` manifest, or it is not a regular file).
    #[error("cannot bundle {}: {reason}", path.display())]
    Unbundleable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The zip layer failed: not a zip one can read, or one that could not
    /// be written.
    #[error("cannot read or write the zip {}", path.display())]
    Zip {
        /// The bundle.
        path: PathBuf,
        /// What the zip reader or writer said.
        source: zip::result::ZipError,
    },
    /// A file is larger than what is read of it whole.
    #[error("{}: {bytes} bytes, more than the {max} bytes allowed", path.display())]
    TooLarge {
        /// The file (for a member of a bundle, `BUNDLE.zip:NAME`).
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// The limit.
        max: u64,
    },
}

/// What is wrong with a line of a text file (a manifest, key or signature
/// file): its number and the reason. A line's text is quoted only cut
/// short and escaped, and a secret line never.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    /// The line (1-based).
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

impl LineError {
    /// The error for the file `path`.
    pub fn in_file(self, path: &std::path::Path) -> BundleError {
        BundleError::KeyFile { path: path.to_path_buf(), line: self.line, reason: self.reason }
    }
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
