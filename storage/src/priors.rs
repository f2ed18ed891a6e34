//! Prior versions on disk (docs/governance.md, "Prior versions"): one file per version,
//! `prior-<version>.txt` (20 digits, so names sort as numbers) in one
//! directory, each written atomically — a temporary file, `fsync`, `rename`,
//! then an `fsync` of the directory — so a crash leaves either the old set
//! of versions or the new one, never a half-written version under a real
//! name.
//!
//! This module stores and lists bytes. What they mean (the text format, its
//! checksum, which version to load, which to prune) is decided by
//! `metagov-governance`'s `MetaStorageManager`; nothing here interprets them.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Largest prior version file read, in bytes.
pub const PRIOR_FILE_BYTES_MAX: u64 = 1 << 20;

const PREFIX: &str = "prior-";
const SUFFIX: &str = ".txt";

/// What went wrong storing or reading a prior version.
#[derive(Debug, thiserror::Error)]
pub enum PriorStoreError {
    /// The operating system refused.
    #[error("I/O error on `{}`", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A version file is larger than [`PRIOR_FILE_BYTES_MAX`].
    #[error("`{}` is larger than prior_file_bytes_max = {PRIOR_FILE_BYTES_MAX} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
}

/// A directory of prior versions.
#[derive(Clone, Debug)]
pub struct PriorStore {
    dir: PathBuf,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> PriorStoreError + '_ {
    move |source| PriorStoreError::Io { path: path.to_path_buf(), source }
}

impl PriorStore {
    /// The store in `dir`, created if missing.
    pub fn open(dir: &Path) -> Result<PriorStore, PriorStoreError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        Ok(PriorStore { dir: dir.to_path_buf() })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `version`.
    pub fn path_of(&self, version: u64) -> PathBuf {
        self.dir.join(format!("{PREFIX}{version:020}{SUFFIX}"))
    }

    /// The stored versions, ascending. Files of other names (temporary files
    /// of an interrupted save among them) are not versions.
    pub fn versions(&self) -> Result<Vec<u64>, PriorStoreError> {
        let mut versions = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_error(&self.dir))? {
            let name = entry.map_err(io_error(&self.dir))?.file_name();
            let digits = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|n| n.strip_suffix(SUFFIX));
            if let Some(version) = digits.filter(|d| d.len() == 20).and_then(|d| d.parse().ok()) {
                versions.push(version);
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    /// The bytes of `version`.
    pub fn read(&self, version: u64) -> Result<Vec<u8>, PriorStoreError> {
        let path = self.path_of(version);
        let file = File::open(&path).map_err(io_error(&path))?;
        let mut bytes = Vec::new();
        // One byte past the limit, so an oversized file is told apart.
        file.take(PRIOR_FILE_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(io_error(&path))?;
        if bytes.len() as u64 > PRIOR_FILE_BYTES_MAX {
            return Err(PriorStoreError::TooLarge { path });
        }
        Ok(bytes)
    }

    /// Writes `bytes` as `version`, atomically, and returns its path. An
    /// existing file of that version is replaced.
    pub fn save(&self, version: u64, bytes: &[u8]) -> Result<PathBuf, PriorStoreError> {
        let path = self.path_of(version);
        let temp = self.dir.join(format!(".{PREFIX}{version:020}{SUFFIX}.tmp"));
        let mut file = File::create(&temp).map_err(io_error(&temp))?;
        file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io_error(&temp))?;
        drop(file);
        fs::rename(&temp, &path).map_err(io_error(&path))?;
        sync_dir(&self.dir)?;
        Ok(path)
    }

    /// Deletes `version`.
    pub fn remove(&self, version: u64) -> Result<(), PriorStoreError> {
        let path = self.path_of(version);
        fs::remove_file(&path).map_err(io_error(&path))
    }
}

/// Makes a rename in `dir` durable. Directories cannot be opened for sync on
/// every platform; where they cannot, the rename is as durable as the OS
/// makes it.
fn sync_dir(dir: &Path) -> Result<(), PriorStoreError> {
    match File::open(dir) {
        Ok(handle) => match handle.sync_all() {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied || e.kind() == io::ErrorKind::InvalidInput => Ok(()),
            Err(e) => Err(io_error(dir)(e)),
        },
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_saved_atomically_listed_read_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = PriorStore::open(&dir.path().join("priors")).unwrap();
        assert_eq!(store.versions().unwrap(), Vec::<u64>::new());
        store.save(2, b"two").unwrap();
        store.save(10, b"ten").unwrap();
        // Leftovers of an interrupted save and unrelated files are not versions.
        fs::write(store.dir().join(".prior-00000000000000000011.txt.tmp"), b"half").unwrap();
        fs::write(store.dir().join("notes.txt"), b"mine").unwrap();
        assert_eq!(store.versions().unwrap(), [2, 10]);
        assert_eq!(store.read(10).unwrap(), b"ten");
        store.save(10, b"ten again").unwrap();
        assert_eq!(store.read(10).unwrap(), b"ten again");
        store.remove(2).unwrap();
        assert_eq!(store.versions().unwrap(), [10]);
        let missing = store.read(2).unwrap_err().to_string();
        assert!(missing.contains("prior-00000000000000000002.txt"), "{missing}");
    }

    #[test]
    fn an_oversized_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = PriorStore::open(dir.path()).unwrap();
        fs::write(store.path_of(1), vec![b'x'; PRIOR_FILE_BYTES_MAX as usize + 1]).unwrap();
        assert!(matches!(store.read(1), Err(PriorStoreError::TooLarge { .. })));
    }
}
