//! Packing a directory into a bundle: [`Plan::scan`] lists its files (and
//! refuses what a bundle cannot hold, naming it), then [`pack`] streams each
//! into the zip while hashing it, and ends with `manifest.sha256` and, when
//! a key is given, `manifest.sha256.sig`.
//!
//! The zip bytes are a function of the files' paths and contents (and the
//! key) alone: entries in bytewise order of path, each deflated, dated
//! 1980-01-01 00:00, mode 0644, made by "Unix". File modes, owners and
//! times are not kept; empty directories are not kept.

use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipWriter};

use crate::manifest::{check_path, Entry, Manifest};
use crate::{BundleError, DetachedSignature, PublicKey, SecretKey, MANIFEST_BYTES_MAX, MANIFEST_NAME, SIGNATURE_NAME};

/// Bytes read from a file (or a zip entry) at a time while streaming it.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// A file that will go into the bundle.
#[derive(Clone, Debug)]
pub struct PlannedFile {
    /// Its path in the bundle (and the manifest).
    pub path: String,
    /// Where it is read from.
    pub source: PathBuf,
    /// Its size when the directory was scanned.
    pub bytes: u64,
}

/// The files of a directory, in bytewise order of their bundle paths, each
/// path checked by [`check_path`]: made only by [`Plan::scan`].
#[derive(Clone, Debug)]
pub struct Plan {
    files: Vec<PlannedFile>,
    bytes: u64,
}

/// What [`pack`] wrote.
#[derive(Clone, Debug)]
pub struct Packed {
    /// Files in the bundle (besides its manifest and signature).
    pub files: u64,
    /// Their bytes, added up.
    pub bytes: u64,
    /// The SHA-256 of the manifest's bytes, in hex.
    pub manifest_sha256: String,
    /// The signer, when signed.
    pub signer: Option<PublicKey>,
}

impl Plan {
    /// Lists every regular file under `dir`, recursively. Refuses (naming
    /// it) a symbolic link or any other file that is not a regular file or
    /// a directory, a name that is not UTF-8 or that a manifest cannot hold
    /// ([`check_path`]), and a directory with no file at all.
    pub fn scan(dir: &Path) -> Result<Plan, BundleError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BundleError::Io { path, source }
        };
        let meta = fs::metadata(dir).map_err(io(dir))?;
        if !meta.is_dir() {
            return Err(BundleError::Unbundleable { path: dir.to_path_buf(), reason: "not a directory".into() });
        }
        let mut files = Vec::new();
        // (directory on disk, its path in the bundle): walked without
        // recursion, so a deep tree cannot overflow the stack.
        let mut pending = vec![(dir.to_path_buf(), String::new())];
        while let Some((on_disk, prefix)) = pending.pop() {
            for item in fs::read_dir(&on_disk).map_err(io(&on_disk))? {
                let item = item.map_err(io(&on_disk))?;
                let source = item.path();
                let refuse = |reason: String| BundleError::Unbundleable { path: source.clone(), reason };
                let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                    return Err(refuse("its name is not UTF-8".into()));
                };
                let path = format!("{prefix}{name}");
                check_path(&path).map_err(|reason| refuse(format!("its name {reason}")))?;
                let kind = item.file_type().map_err(io(&source))?;
                if kind.is_dir() {
                    pending.push((source, format!("{path}/")));
                } else if kind.is_file() {
                    let bytes = item.metadata().map_err(io(&source))?.len();
                    files.push(PlannedFile { path, source, bytes });
                } else if kind.is_symlink() {
                    return Err(refuse("a symbolic link (a bundle holds regular files only)".into()));
                } else {
                    return Err(refuse("not a regular file".into()));
                }
            }
        }
        if files.is_empty() {
            return Err(BundleError::Unbundleable { path: dir.to_path_buf(), reason: "it holds no file".into() });
        }
        files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        let bytes = files.iter().map(|f| f.bytes).sum();
        Ok(Plan { files, bytes })
    }

    /// The plan without the files under the top-level directory `top` (a
    /// bundle written into that directory of the one it packs).
    pub fn without_dir(mut self, top: &str) -> Plan {
        let prefix = format!("{top}/");
        self.files.retain(|f| !f.path.starts_with(&prefix));
        self.bytes = self.files.iter().map(|f| f.bytes).sum();
        self
    }

    /// The files, in bytewise order of path.
    pub fn files(&self) -> &[PlannedFile] {
        &self.files
    }

    /// Their bytes when scanned, added up.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Writes the bundle of `plan` to `out` (named `name` in errors), signed
/// with `key` when given. Each file is read in chunks of `CHUNK_BYTES`,
/// hashed and deflated on the way through; `progress(done, total)` is told
/// the bytes read so far after each chunk. A file whose size changed since
/// the scan is an error naming it.
pub fn pack<W: Write + Seek>(
    plan: &Plan,
    key: Option<&SecretKey>,
    out: W,
    name: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Packed, BundleError> {
    let zip_error = |source| BundleError::Zip { path: name.to_path_buf(), source };
    let write_error = |source| BundleError::Io { path: name.to_path_buf(), source };
    let mut zip = ZipWriter::new(out);
    let mut entries = Vec::with_capacity(plan.files.len());
    let mut buffer = vec![0; CHUNK_BYTES];
    let mut done = 0;
    for file in &plan.files {
        let read_error = |source| BundleError::Io { path: file.source.clone(), source };
        let mut input = fs::File::open(&file.source).map_err(read_error)?;
        zip.start_file(file.path.as_str(), options(file.bytes)).map_err(zip_error)?;
        let mut hasher = Sha256::new();
        let mut read = 0;
        loop {
            let n = match input.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            };
            hasher.update(&buffer[..n]);
            zip.write_all(&buffer[..n]).map_err(write_error)?;
            read += n as u64;
            done += n as u64;
            progress(done, plan.bytes);
        }
        if read != file.bytes {
            return Err(BundleError::Unbundleable {
                path: file.source.clone(),
                reason: format!("it changed while being bundled ({} bytes when scanned, {read} read)", file.bytes),
            });
        }
        entries.push(Entry { path: file.path.clone(), sha256: hasher.finalize().into() });
    }
    let manifest = Manifest::new(entries).to_bytes();
    let manifest_bytes = manifest.len() as u64;
    if manifest_bytes > MANIFEST_BYTES_MAX {
        return Err(BundleError::TooLarge {
            path: PathBuf::from(format!("{}:{MANIFEST_NAME}", name.display())),
            bytes: manifest_bytes,
            max: MANIFEST_BYTES_MAX,
        });
    }
    zip.start_file(MANIFEST_NAME, options(manifest_bytes)).map_err(zip_error)?;
    zip.write_all(&manifest).map_err(write_error)?;
    if let Some(key) = key {
        let signature = DetachedSignature::sign(key, &manifest).to_bytes();
        zip.start_file(SIGNATURE_NAME, options(signature.len() as u64)).map_err(zip_error)?;
        zip.write_all(&signature).map_err(write_error)?;
    }
    let mut out = zip.finish().map_err(zip_error)?;
    out.flush().map_err(write_error)?;
    Ok(Packed {
        files: plan.files.len() as u64,
        bytes: done,
        manifest_sha256: crate::sha256_hex(&manifest),
        signer: key.map(SecretKey::public),
    })
}

/// Every entry's options: deflated, 1980-01-01 00:00, 0644, Unix; zip64
/// sizes for a file of 4 GiB or more (decided by its size, so still a
/// function of the contents).
fn options(bytes: u64) -> SimpleFileOptions {
    SimpleFileOptions::DEFAULT
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::DEFAULT)
        .unix_permissions(0o644)
        .system(System::Unix)
        .large_file(bytes >= u64::from(u32::MAX))
}
