//! Checking a bundle: every file in the zip against `manifest.sha256`, and
//! the manifest's bytes against `manifest.sha256.sig` (docs/bundles.md,
//! "What verify reports").
//!
//! Each problem is a [`Finding`] naming the file at fault, never an error:
//! an error is only a bundle that cannot be opened as a zip at all. File
//! contents are streamed through SHA-256 while they are decompressed, one
//! chunk at a time; only the manifest and the signature are read whole
//! (each within its limit).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Seek};
use std::path::Path;

use sha2::{Digest, Sha256};
use zip::ZipArchive;

use crate::pack::CHUNK_BYTES;
use crate::{
    BundleError, DetachedSignature, LineError, Manifest, PublicKey, MANIFEST_BYTES_MAX, MANIFEST_NAME, SIGNATURE_NAME,
    SMALL_FILE_BYTES_MAX,
};

/// One problem with a bundle. Its `Display` is one line that names the
/// file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// In the zip, not in the manifest.
    Added {
        /// The entry's name.
        path: String,
    },
    /// In the manifest, not in the zip.
    Removed {
        /// The manifest's path.
        path: String,
    },
    /// In both, with different contents.
    Changed {
        /// The path.
        path: String,
        /// The SHA-256 the manifest lists.
        expected: [u8; 32],
        /// The SHA-256 of the zip entry's bytes.
        actual: [u8; 32],
    },
    /// A zip entry that cannot be decompressed (a CRC mismatch, damaged
    /// deflate data, an encrypted entry).
    Corrupt {
        /// The entry's name.
        path: String,
        /// What the zip reader said.
        reason: String,
    },
    /// The zip's directory holds a name twice: an unzip would keep one.
    DuplicateNames,
    /// The bundle has no `manifest.sha256`.
    ManifestMissing,
    /// `manifest.sha256` cannot be read (too large, or damaged in the zip).
    ManifestUnreadable {
        /// Why.
        reason: String,
    },
    /// `manifest.sha256` does not parse.
    ManifestInvalid(LineError),
    /// A signer was pinned and the bundle holds no `manifest.sha256.sig`.
    SignatureMissing {
        /// The pinned key.
        pinned: PublicKey,
    },
    /// `manifest.sha256.sig` cannot be read or does not parse.
    SignatureMalformed(LineError),
    /// The signature was made by another key than the pinned one.
    WrongSigner {
        /// The pinned key.
        pinned: PublicKey,
        /// The key the signature file names.
        found: PublicKey,
    },
    /// The signature is not its key's over the manifest's bytes: the
    /// manifest or the signature was altered.
    SignatureInvalid {
        /// The key the signature file names.
        key: PublicKey,
    },
}

/// Who signed a bundle, as far as verification could tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// No signature, and none was required.
    Unsigned,
    /// A valid signature by `key`; `pinned`: the key the caller required.
    Valid {
        /// The signer.
        key: PublicKey,
        /// Whether the caller pinned this key (otherwise the signature
        /// only proves that whoever holds its secret signed it).
        pinned: bool,
    },
    /// The signature did not check (see the findings).
    Failed,
}

/// The outcome of [`verify`].
#[derive(Clone, Debug)]
pub struct Verification {
    /// Zip entries hashed (besides the manifest and signature).
    pub files: u64,
    /// Their decompressed bytes, added up.
    pub bytes: u64,
    /// The SHA-256 of the manifest's bytes, when it could be read.
    pub manifest_sha256: Option<String>,
    /// Who signed it.
    pub signer: Signer,
    /// Every problem found: the manifest's, then the signature's, then the
    /// files' in bytewise order of path. Empty: the bundle checks.
    pub findings: Vec<Finding>,
}

/// Checks the bundle read from `bundle` (named `name` in errors). With
/// `pinned`, the bundle must carry a valid signature by that key; without,
/// a signature is checked against the key it names. `progress(done,
/// total)` is told the decompressed bytes hashed so far. Only a zip that
/// cannot be opened is an error.
pub fn verify<R: Read + Seek>(
    bundle: R,
    name: &Path,
    pinned: Option<&PublicKey>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Verification, BundleError> {
    let mut zip = ZipArchive::new(bundle).map_err(|source| BundleError::Zip { path: name.to_path_buf(), source })?;
    let total = zip.decompressed_size().map_or(0, |t| u64::try_from(t).unwrap_or(u64::MAX));
    let mut findings = Vec::new();
    if zip.has_duplicate_names() {
        findings.push(Finding::DuplicateNames);
    }
    let manifest_bytes = match read_member(&mut zip, MANIFEST_NAME, MANIFEST_BYTES_MAX) {
        None => {
            findings.push(Finding::ManifestMissing);
            None
        }
        Some(Err(reason)) => {
            findings.push(Finding::ManifestUnreadable { reason });
            None
        }
        Some(Ok(bytes)) => Some(bytes),
    };
    let manifest = manifest_bytes
        .as_deref()
        .and_then(|bytes| Manifest::parse(bytes).map_err(|e| findings.push(Finding::ManifestInvalid(e))).ok());
    let signer = match &manifest_bytes {
        Some(bytes) => check_signature(&mut zip, bytes, pinned, &mut findings),
        None => Signer::Failed,
    };

    let mut hashed: BTreeMap<Vec<u8>, [u8; 32]> = BTreeMap::new();
    let mut file_findings = Vec::new();
    let (mut files, mut done) = (0, 0);
    let mut buffer = vec![0; CHUNK_BYTES];
    for index in 0..zip.len() {
        let path = zip.name_for_index(index).and_then(Result::ok).map_or(format!("entry #{index}"), String::from);
        let mut entry = match zip.by_index(index) {
            Ok(entry) => entry,
            Err(e) => {
                file_findings.push(Finding::Corrupt { path, reason: e.to_string() });
                continue;
            }
        };
        let raw = entry.name_raw().to_vec();
        if raw == MANIFEST_NAME.as_bytes() || raw == SIGNATURE_NAME.as_bytes() {
            continue;
        }
        let mut hasher = Sha256::new();
        let read = loop {
            match entry.read(&mut buffer) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    hasher.update(&buffer[..n]);
                    done += n as u64;
                    progress(done, total);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        files += 1;
        match read {
            Ok(()) => {
                hashed.insert(raw, hasher.finalize().into());
            }
            // Named once, as corrupt: not also as added, removed or changed.
            Err(e) => file_findings.push(Finding::Corrupt { path: lossy(&raw), reason: e.to_string() }),
        }
    }
    if let Some(manifest) = &manifest {
        compare(manifest, &hashed, &mut file_findings);
    }
    file_findings.sort_by(|a, b| path_of(a).cmp(path_of(b)));
    findings.extend(file_findings);
    let manifest_sha256 = manifest_bytes.as_deref().map(crate::sha256_hex);
    Ok(Verification { files, bytes: done, manifest_sha256, signer, findings })
}

/// Reads the member `name` whole, at most `max` bytes: `None` when the zip
/// has no such member, the reason when it cannot be read.
fn read_member<R: Read + Seek>(zip: &mut ZipArchive<R>, name: &str, max: u64) -> Option<Result<Vec<u8>, String>> {
    let index = zip.index_for_name(name)?;
    let mut read = || {
        let entry = zip.by_index(index).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        entry.take(max + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        if bytes.len() as u64 > max {
            return Err(format!("more than the {max} bytes allowed"));
        }
        Ok(bytes)
    };
    Some(read())
}

fn check_signature<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    manifest: &[u8],
    pinned: Option<&PublicKey>,
    findings: &mut Vec<Finding>,
) -> Signer {
    let signature = match read_member(zip, SIGNATURE_NAME, SMALL_FILE_BYTES_MAX) {
        None => {
            return match pinned {
                Some(&pinned) => {
                    findings.push(Finding::SignatureMissing { pinned });
                    Signer::Failed
                }
                None => Signer::Unsigned,
            }
        }
        Some(Err(reason)) => Err(LineError { line: 1, reason }),
        Some(Ok(bytes)) => DetachedSignature::parse(bytes),
    };
    let signature = match signature {
        Ok(signature) => signature,
        Err(e) => {
            findings.push(Finding::SignatureMalformed(e));
            return Signer::Failed;
        }
    };
    if let Some(&pinned) = pinned {
        if signature.key != pinned {
            findings.push(Finding::WrongSigner { pinned, found: signature.key });
            return Signer::Failed;
        }
    }
    if !signature.verifies(manifest) {
        findings.push(Finding::SignatureInvalid { key: signature.key });
        return Signer::Failed;
    }
    Signer::Valid { key: signature.key, pinned: pinned.is_some() }
}

/// Adds the files the manifest and the zip disagree on.
fn compare(manifest: &Manifest, hashed: &BTreeMap<Vec<u8>, [u8; 32]>, findings: &mut Vec<Finding>) {
    let corrupt: Vec<String> =
        findings.iter().filter(|f| matches!(f, Finding::Corrupt { .. })).map(|f| path_of(f).to_owned()).collect();
    let mut listed = BTreeMap::new();
    for entry in manifest.entries() {
        listed.insert(entry.path.as_bytes(), entry.sha256);
        if corrupt.contains(&entry.path) {
            continue;
        }
        match hashed.get(entry.path.as_bytes()) {
            None => findings.push(Finding::Removed { path: entry.path.clone() }),
            Some(&actual) if actual != entry.sha256 => {
                findings.push(Finding::Changed { path: entry.path.clone(), expected: entry.sha256, actual })
            }
            Some(_) => {}
        }
    }
    for raw in hashed.keys() {
        if !listed.contains_key(raw.as_slice()) {
            findings.push(Finding::Added { path: lossy(raw) });
        }
    }
}

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// The path a file finding names (empty for the others, which come first).
fn path_of(finding: &Finding) -> &str {
    match finding {
        Finding::Added { path }
        | Finding::Removed { path }
        | Finding::Changed { path, .. }
        | Finding::Corrupt { path, .. } => path,
        _ => "",
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Added { path } => write!(f, "ADDED     {path}: in the bundle, not in {MANIFEST_NAME}"),
            Finding::Removed { path } => write!(f, "REMOVED   {path}: in {MANIFEST_NAME}, not in the bundle"),
            Finding::Changed { path, expected, actual } => write!(
                f,
                "CHANGED   {path}: sha256 {} in the bundle, {} in {MANIFEST_NAME}",
                hex::encode(actual),
                hex::encode(expected)
            ),
            Finding::Corrupt { path, reason } => write!(f, "CORRUPT   {path}: cannot be read from the zip: {reason}"),
            Finding::DuplicateNames => {
                write!(f, "DUPLICATE the zip's directory lists a name more than once (an unzip keeps only one)")
            }
            Finding::ManifestMissing => write!(f, "MANIFEST  {MANIFEST_NAME}: missing from the bundle"),
            Finding::ManifestUnreadable { reason } => write!(f, "MANIFEST  {MANIFEST_NAME}: {reason}"),
            Finding::ManifestInvalid(e) => write!(f, "MANIFEST  {MANIFEST_NAME}: {e}"),
            Finding::SignatureMissing { pinned } => write!(
                f,
                "SIGNATURE {SIGNATURE_NAME}: missing: the bundle is unsigned, and a signature by {} is required",
                pinned.fingerprint()
            ),
            Finding::SignatureMalformed(e) => write!(f, "SIGNATURE {SIGNATURE_NAME}: {e}"),
            Finding::WrongSigner { pinned, found } => write!(
                f,
                "SIGNATURE {SIGNATURE_NAME}: signed by {}, not by the required key {}",
                found.fingerprint(),
                pinned.fingerprint()
            ),
            Finding::SignatureInvalid { key } => write!(
                f,
                "SIGNATURE {SIGNATURE_NAME}: not a valid signature of {MANIFEST_NAME} by {} (the manifest or the signature was altered)",
                key.fingerprint()
            ),
        }
    }
}
