//! `metagov test --prune`: carries out `metagov_suite::prune`'s plan on a
//! results directory (docs/testing.md, "Pruning old results"). It lists the
//! directory, packs each old suite directory into `archive/` as a bundle,
//! checks the archive against its manifest before it removes the
//! directory, deletes what is past retention, and says what it did.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use metagov_bundle::SecretKey;
use metagov_suite::prune::{plan, Action, Listed, Retention, ARCHIVE_DIR};

use super::bundle::escaped;
use super::{counted, Escaped};

/// What one prune did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Entries kept.
    pub kept: usize,
    /// Directories packed into `archive/` and removed.
    pub archived: usize,
    /// Directories and archives deleted.
    pub deleted: usize,
    /// Entries not touched (not a dated suite result).
    pub left: usize,
}

/// Prunes `root` as of `today` (`YYYYMMDD`), never touching the directory
/// named `protected`; archives are signed with `key` when one is given.
///
/// # Errors
///
/// A directory that cannot be listed, an archive that cannot be written or
/// does not check out (its directory is then kept), a file that cannot be
/// removed.
pub fn prune(
    root: &Path,
    today: &str,
    retention: Retention,
    protected: Option<&str>,
    key: Option<&SecretKey>,
    out: &mut dyn Write,
) -> Result<Pruned> {
    let shown = Escaped(root.display());
    let limits = format!("rotate_days {}, retain_days {}", retention.rotate_days, retention.retain_days);
    if !root.is_dir() {
        writeln!(out, "prune        nothing to prune: no directory {shown} ({limits})")?;
        return Ok(Pruned::default());
    }
    let mut listed = list(root, false)?;
    let archives = root.join(ARCHIVE_DIR);
    if archives.is_dir() {
        listed.extend(list(&archives, true)?);
    }
    let steps = plan(&listed, today, retention, protected).map_err(anyhow::Error::msg)?;
    let mut pruned = Pruned::default();
    for step in steps {
        let path = root.join(&step.path);
        let age = step.age_days.map_or_else(String::new, |days| format!(", {days} days old"));
        match step.action {
            Action::Keep => pruned.kept += 1,
            Action::Leave { reason } => {
                pruned.left += 1;
                writeln!(out, "prune        left {}: {reason}", Escaped(step.path.display()))?;
            }
            Action::Archive { to } => {
                let files = archive(&path, &root.join(&to), key)?;
                pruned.archived += 1;
                writeln!(
                    out,
                    "prune        archived {} to {} ({}, checked{age})",
                    Escaped(step.path.display()),
                    Escaped(to.display()),
                    counted(files, "file")
                )?;
            }
            Action::Delete => {
                let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                removed.with_context(|| format!("cannot delete {}", Escaped(path.display())))?;
                pruned.deleted += 1;
                writeln!(out, "prune        deleted {}{age}", Escaped(step.path.display()))?;
            }
        }
    }
    writeln!(
        out,
        "prune        {shown}: kept {}, archived {}, deleted {}, left {} ({limits})",
        pruned.kept, pruned.archived, pruned.deleted, pruned.left
    )?;
    out.flush()?;
    Ok(pruned)
}

/// The directories of `dir` (but `archive/`), or with `archives` its
/// files, sorted by name. A name that is not UTF-8 is no dated suite
/// result and is not listed.
fn list(dir: &Path, archives: bool) -> Result<Vec<Listed>> {
    let cannot = || format!("cannot list {}", Escaped(dir.display()));
    let mut listed = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(cannot)? {
        let entry = entry.with_context(cannot)?;
        let is_dir = entry.file_type().with_context(cannot)?.is_dir();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        match (archives, is_dir) {
            (false, true) if name != ARCHIVE_DIR => {
                listed.push(Listed::Dir { results: entry.path().join("runs").is_dir(), name });
            }
            (true, false) => listed.push(Listed::Archive { name }),
            _ => {}
        }
    }
    listed.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    Ok(listed)
}

fn name_of(listed: &Listed) -> &str {
    match listed {
        Listed::Dir { name, .. } | Listed::Archive { name } => name,
    }
}

/// Packs `dir` into the bundle `to`, checks the bundle against its manifest
/// (and its signature), then removes `dir`. Returns the files packed.
fn archive(dir: &Path, to: &Path, key: Option<&SecretKey>) -> Result<u64> {
    let parent = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", Escaped(parent.display())))?;
    let plan = metagov_bundle::Plan::scan(dir).map_err(escaped)?;
    let checked = super::bundle::pack_checked(dir, &plan, to, key)
        .with_context(|| format!("cannot archive {}; the directory is kept", Escaped(dir.display())))?;
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", Escaped(dir.display())))?;
    Ok(checked.files)
}
