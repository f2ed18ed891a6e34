//! Versioning of the learned prior (`MetaStorageManager`; docs/governance.md),
//! without I/O: which version to write next, which to prune, the bytes of a
//! version, and which stored version to load. Writing and reading files is
//! `storage/`'s job.
//!
//! A prior version is UTF-8 text, one `name value` pair a line:
//!
//! ```text
//! metagov-prior 1
//! version 3
//! g_min 0.01
//! tau 0.9
//! crc64-xz 0f4a1c…(16 hex digits)
//! ```
//!
//! Knob lines are sorted by name; values are written in Rust's shortest
//! round-trip form; the last line is the CRC-64/XZ of every byte before it.

use std::collections::BTreeMap;

use crc::{Crc, CRC_64_XZ};
use metagov_config::{is_name, MetaStorageConfig, NAME_CHARS_MAX};

/// Checksum of a prior version. Reference: CRC-64/XZ (check value
/// 0x995dc9bbdf1939fa).
const CHECKSUM: Crc<u64> = Crc::<u64>::new(&CRC_64_XZ);
/// First line of every prior version.
const MAGIC: &str = "metagov-prior 1";
/// Largest prior version read, in bytes.
pub const PRIOR_BYTES_MAX: usize = 1 << 20;
/// Most knobs in a prior.
const PRIOR_KNOBS_MAX: usize = 4096;

/// One version of the prior.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPrior {
    /// Version number, from 1.
    pub version: u64,
    /// Knob values by name.
    pub values: BTreeMap<String, f64>,
}

/// Why stored bytes are not a prior version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PriorError {
    /// More than [`PRIOR_BYTES_MAX`] bytes.
    #[error("{bytes} bytes, at most {PRIOR_BYTES_MAX}")]
    TooLarge {
        /// Its length.
        bytes: usize,
    },
    /// Not text, no magic line, a bad line, or too many knobs.
    #[error("line {line}: {reason}")]
    Malformed {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The checksum does not hold.
    #[error("checksum {stored:016x} does not match the content's {computed:016x}")]
    Checksum {
        /// The checksum written.
        stored: u64,
        /// The checksum of the content.
        computed: u64,
    },
    /// The version inside is not the version it was stored as.
    #[error("stored as version {stored} but holds version {inside}")]
    Version {
        /// The version it was stored as.
        stored: u64,
        /// The version it holds.
        inside: u64,
    },
}

/// The newest stored version that holds, and the newer ones that did not.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedPrior {
    /// The newest version whose checksum holds, if any.
    pub prior: Option<StoredPrior>,
    /// Newer versions skipped, newest first, with why.
    pub skipped: Vec<(u64, PriorError)>,
}

/// Decides prior versions; keeps no state but its config.
#[derive(Clone, Debug)]
pub struct MetaStorageManager {
    config: MetaStorageConfig,
}

impl MetaStorageManager {
    /// A manager keeping `versions_kept` versions.
    #[must_use]
    pub fn new(config: MetaStorageConfig) -> Self {
        MetaStorageManager { config }
    }

    /// The version the next save writes: one above the highest stored, or 1.
    #[must_use]
    pub fn next_version(&self, stored: &[u64]) -> u64 {
        stored.iter().max().map_or(1, |newest| newest.saturating_add(1))
    }

    /// The stored versions to delete so that the newest `versions_kept`
    /// remain, oldest first.
    #[must_use]
    pub fn prune(&self, stored: &[u64]) -> Vec<u64> {
        let mut versions = stored.to_vec();
        versions.sort_unstable();
        versions.dedup();
        let kept = usize::try_from(self.config.versions_kept).unwrap_or(usize::MAX);
        versions.truncate(versions.len().saturating_sub(kept));
        versions
    }

    /// The bytes of `prior`.
    ///
    /// # Panics
    ///
    /// If a knob name is malformed or a value not finite: priors come from
    /// the optimizer over checked knobs.
    #[must_use]
    pub fn encode(&self, prior: &StoredPrior) -> Vec<u8> {
        let mut text = format!("{MAGIC}\nversion {}\n", prior.version);
        for (name, value) in &prior.values {
            assert!(is_name(name, NAME_CHARS_MAX) && value.is_finite(), "a prior entry {name} = {value}");
            text.push_str(&format!("{name} {value}\n"));
        }
        let checksum = CHECKSUM.checksum(text.as_bytes());
        text.push_str(&format!("crc64-xz {checksum:016x}\n"));
        text.into_bytes()
    }

    /// Reads the bytes of a prior version. Never panics.
    ///
    /// # Errors
    ///
    /// [`PriorError`] saying what does not hold.
    pub fn decode(&self, bytes: &[u8]) -> Result<StoredPrior, PriorError> {
        if bytes.len() > PRIOR_BYTES_MAX {
            return Err(PriorError::TooLarge { bytes: bytes.len() });
        }
        let malformed = |line: usize, reason: &str| PriorError::Malformed { line, reason: reason.to_owned() };
        let text = std::str::from_utf8(bytes).map_err(|_| malformed(1, "not UTF-8 text"))?;
        let body_end = text.trim_end_matches('\n').rfind('\n').map_or(0, |i| i + 1);
        let (body, last) = text.split_at(body_end);
        let lines = body.lines().count();
        let stored = last
            .strip_prefix("crc64-xz ")
            .and_then(|hex| u64::from_str_radix(hex.trim_end_matches('\n'), 16).ok())
            .ok_or_else(|| malformed(lines + 1, "the last line is not `crc64-xz <16 hex digits>`"))?;
        let computed = CHECKSUM.checksum(body.as_bytes());
        if stored != computed {
            return Err(PriorError::Checksum { stored, computed });
        }
        let mut lines = body.lines().enumerate().map(|(i, line)| (i + 1, line));
        if lines.next().map(|(_, line)| line) != Some(MAGIC) {
            return Err(malformed(1, "not a metagov prior (no `metagov-prior 1` line)"));
        }
        let version = match lines.next() {
            Some((_, line)) => line.strip_prefix("version ").and_then(|v| v.parse().ok()),
            None => None,
        }
        .ok_or_else(|| malformed(2, "expected `version <number>`"))?;
        let mut values = BTreeMap::new();
        for (number, line) in lines {
            let entry = line.split_once(' ').and_then(|(name, value)| Some((name, value.parse::<f64>().ok()?)));
            let Some((name, value)) = entry.filter(|(name, value)| is_name(name, NAME_CHARS_MAX) && value.is_finite())
            else {
                return Err(malformed(number, "expected `<knob> <finite number>`"));
            };
            if values.insert(name.to_owned(), value).is_some() || values.len() > PRIOR_KNOBS_MAX {
                return Err(malformed(number, "a repeated knob, or too many knobs"));
            }
        }
        Ok(StoredPrior { version, values })
    }

    /// Of the stored `(version, bytes)`, the newest that decodes and holds
    /// the version it was stored as.
    #[must_use]
    pub fn newest_valid(&self, stored: &[(u64, &[u8])]) -> LoadedPrior {
        let mut newest_first: Vec<&(u64, &[u8])> = stored.iter().collect();
        newest_first.sort_by_key(|&&(version, _)| std::cmp::Reverse(version));
        let mut skipped = Vec::new();
        for &&(version, bytes) in &newest_first {
            let checked = self.decode(bytes).and_then(|prior| match prior.version {
                inside if inside == version => Ok(prior),
                inside => Err(PriorError::Version { stored: version, inside }),
            });
            match checked {
                Ok(prior) => return LoadedPrior { prior: Some(prior), skipped },
                Err(error) => skipped.push((version, error)),
            }
        }
        LoadedPrior { prior: None, skipped }
    }
}
