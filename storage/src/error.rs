//! The errors of the chronicle writer and reader, each carrying the file, the
//! structure and the byte offset it concerns (ripgrep/redb style).
//!
//! This module only describes failures; it decides nothing about them.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::format::{MAGIC, VERSION};

/// Which structure of a chronicle a problem is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// The preamble, header body or header CRC.
    Header,
    /// Frame number `n` (header or payload).
    Frame(u32),
    /// The index block.
    Index,
    /// The footer.
    Footer,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Header => write!(f, "header"),
            Location::Frame(n) => write!(f, "frame {n}"),
            Location::Index => write!(f, "index block"),
            Location::Footer => write!(f, "footer"),
        }
    }
}

/// `5e a5 0d 0c`: bytes as two-digit hex, space separated.
fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// What went wrong writing or reading a chronicle.
#[derive(Debug, thiserror::Error)]
pub enum ChronicleError {
    /// The operating system refused a read or write. `path` is `<stream>`
    /// for a writer made with [`ChronicleWriter::new`](crate::ChronicleWriter::new).
    #[error("I/O error on `{}`", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file does not start with the chronicle magic.
    #[error(
        "`{}` is not a chronicle: it starts with the bytes {}, not {}",
        path.display(),
        hex_bytes(found),
        hex_bytes(&MAGIC.to_le_bytes())
    )]
    NotAChronicle {
        /// The file.
        path: PathBuf,
        /// Its first four bytes, in file order.
        found: [u8; 4],
    },
    /// The path names something that is not a regular file (a directory, a
    /// FIFO, a socket, a device): reading it could block or never end.
    #[error("`{}` is not a regular file but {kind}", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead ("a FIFO", "a directory", …).
        kind: &'static str,
    },
    /// A directory that does not hold the segments of one run.
    #[error("`{}` is not a run directory: {reason}", path.display())]
    NotARun {
        /// The directory.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// The file is a chronicle of a version this build does not read.
    #[error("`{}` is chronicle format version {version}; this build reads versions 1 to {VERSION}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version it declares.
        version: u16,
    },
    /// The file ends before its header does, so there is no run to read.
    #[error("`{}` is torn inside its header: it has {file_len} bytes, the header needs {needed}", path.display())]
    TornHeader {
        /// The file.
        path: PathBuf,
        /// Bytes in the file.
        file_len: u64,
        /// Bytes the header needs.
        needed: u64,
    },
    /// A checksum, chain link, count or encoding is wrong.
    #[error("`{}` is corrupt: {location} at byte {offset}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The damaged structure.
        location: Location,
        /// File offset where that structure starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An argument the writer cannot use (options, or a context whose hash
    /// does not match its config).
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// What is wrong with it.
        reason: String,
    },
    /// A record the format cannot hold (too deep, too wide, too large).
    /// Nothing was written for it; the writer goes on.
    #[error("record ({tick}, {seq}) cannot be stored: {reason}")]
    Unencodable {
        /// Tick of the record.
        tick: u64,
        /// Seq of the record.
        seq: u64,
        /// Why not.
        reason: String,
    },
    /// An earlier write failed, so the file may end in a partial frame; the
    /// writer takes nothing more.
    #[error("the chronicle writer for `{}` failed earlier and takes no more records", path.display())]
    WriterFailed {
        /// The file.
        path: PathBuf,
    },
}
