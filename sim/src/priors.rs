//! The learned prior across runs: `simulate --prior-dir DIR` starts from the
//! newest valid prior version in DIR (as the knobs' initial values, so the
//! run's recorded config holds it and replay needs nothing else) and saves
//! the run's final prior as the next version.
//!
//! The format and the choice of versions are `MetaStorageManager`'s
//! (governance); the atomic files are `PriorStore`'s (storage). This module
//! only joins them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use metagov_config::Config;
use metagov_governance::{LoadedPrior, MetaStorageManager, StoredPrior};
use metagov_storage::PriorStore;

/// The newest prior in `dir` whose checksum and version hold, with the
/// versions skipped on the way.
pub fn load_newest(dir: &Path, config: &Config) -> Result<LoadedPrior> {
    let store = PriorStore::open(dir)?;
    let mut stored = Vec::new();
    for version in store.versions()? {
        stored.push((version, store.read(version)?));
    }
    let borrowed: Vec<(u64, &[u8])> = stored.iter().map(|(v, b)| (*v, b.as_slice())).collect();
    Ok(MetaStorageManager::new(config.storage.clone()).newest_valid(&borrowed))
}

/// Makes `prior` the knobs' initial values, clamped to their bounds.
/// Returns the prior's names that are not knobs of `config` (left out).
pub fn apply(config: &mut Config, prior: &StoredPrior) -> Vec<String> {
    let mut unknown = Vec::new();
    for (name, &value) in &prior.values {
        match config.knobs.get_mut(name) {
            Some(knob) => knob.initial = value.clamp(knob.min, knob.max),
            None => unknown.push(name.clone()),
        }
    }
    unknown
}

/// What [`save_next`] wrote.
pub struct Saved {
    /// The new version.
    pub version: u64,
    /// Its file.
    pub path: PathBuf,
    /// Older versions deleted to keep `storage.versions_kept`.
    pub pruned: Vec<u64>,
}

/// Saves `values` as the next version in `dir` and prunes old versions.
pub fn save_next(dir: &Path, config: &Config, values: &BTreeMap<String, f64>) -> Result<Saved> {
    let store = PriorStore::open(dir)?;
    let manager = MetaStorageManager::new(config.storage.clone());
    let version = manager.next_version(&store.versions()?);
    let bytes = manager.encode(&StoredPrior { version, values: values.clone() });
    let path = store.save(version, &bytes)?;
    let pruned = manager.prune(&store.versions()?);
    for &old in &pruned {
        store.remove(old).with_context(|| format!("cannot prune prior version {old}"))?;
    }
    Ok(Saved { version, path, pruned })
}
