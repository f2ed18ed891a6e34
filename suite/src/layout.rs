//! Where a suite run's files go (docs/testing.md, "Output files"): one
//! directory per run of a suite, `<YYYYMMDD>__<SUITE>/`, holding a
//! directory per category, and in each the category's files named
//! `<YYYYMMDD>__<SUITE>__<category>.<ext>`. The runs of each seed keep
//! their own directory under `runs/`.
//!
//! This is the only place those names are made: the shell, the prune and
//! the tests ask it.

use std::path::{Path, PathBuf};

/// The categories, each a directory of the suite's results, in the order
/// docs/testing.md lists them.
pub const CATEGORIES: [&str; 6] = ["runs", "summaries", "timing", "determinism", "errors", "audit"];

/// The files of one suite run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The suite's directory.
    pub root: PathBuf,
    /// `YYYYMMDD`, the day the run started (UTC, the caller's clock).
    pub date: String,
    /// The suite's name.
    pub suite: String,
}

impl Layout {
    /// The layout of `suite`'s run on `date` in `root`.
    pub fn new(root: PathBuf, date: &str, suite: &str) -> Layout {
        Layout { root, date: date.to_owned(), suite: suite.to_owned() }
    }

    /// The directory a suite's run on `date` gets by default, under
    /// `results` (`metagov-tests`).
    pub fn default_root(results: &Path, date: &str, suite: &str) -> PathBuf {
        results.join(format!("{date}__{suite}"))
    }

    /// `CATEGORY/<date>__<suite>__<name>.<ext>`.
    pub fn file(&self, category: &str, name: &str, ext: &str) -> PathBuf {
        self.root.join(category).join(format!("{}__{}__{name}.{ext}", self.date, self.suite))
    }

    /// `summaries/…__summary.json`.
    pub fn summary_json(&self) -> PathBuf {
        self.file("summaries", "summary", "json")
    }

    /// `summaries/…__summary.md`.
    pub fn summary_md(&self) -> PathBuf {
        self.file("summaries", "summary", "md")
    }

    /// `summaries/…__junit.xml`.
    pub fn junit(&self) -> PathBuf {
        self.file("summaries", "junit", "xml")
    }

    /// `timing/…__timing.csv`.
    pub fn timing_csv(&self) -> PathBuf {
        self.file("timing", "timing", "csv")
    }

    /// `timing/…__timing.json`.
    pub fn timing_json(&self) -> PathBuf {
        self.file("timing", "timing", "json")
    }

    /// `determinism/…__determinism.json`: what `metagov test --replay`
    /// reads.
    pub fn determinism(&self) -> PathBuf {
        self.file("determinism", "determinism", "json")
    }

    /// `errors/…__errors.log`.
    pub fn errors_log(&self) -> PathBuf {
        self.file("errors", "errors", "log")
    }

    /// `errors/…__errors.json`.
    pub fn errors_json(&self) -> PathBuf {
        self.file("errors", "errors", "json")
    }

    /// `audit/…__audit.zip`: the bundle of every other category.
    pub fn audit_bundle(&self) -> PathBuf {
        self.file("audit", "audit", "zip")
    }

    /// `audit/…__chronicle.cmeta`: the suite chronicle.
    pub fn audit_chronicle(&self) -> PathBuf {
        self.file("audit", "chronicle", "cmeta")
    }

    /// `runs/NNN-TEST/seed-N/`: where seed `seed` of the suite's `index`-th
    /// test runs (`a/`, `b/`) and writes its execution log.
    pub fn seed_dir(&self, index: usize, test: &str, seed: u64) -> PathBuf {
        self.root.join("runs").join(run_dir_name(index, test)).join(format!("seed-{seed}"))
    }
}

/// `NNN-TEST` for a test's runs: its index in the suite, then its name with
/// characters other than `[A-Za-z0-9._-]` as `_` (cut to 60).
fn run_dir_name(index: usize, name: &str) -> String {
    let slug: String = name.chars().take(60).map(safe_char).collect();
    format!("{index:03}-{slug}")
}

/// A character of a file name as it is written: `[A-Za-z0-9._-]` kept,
/// anything else `_`.
pub fn safe_char(c: char) -> char {
    if c.is_ascii_alphanumeric() || "._-".contains(c) {
        c
    } else {
        '_'
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_date_suite_category() {
        let layout = Layout::new(PathBuf::from("out"), "20261202", "governance");
        assert_eq!(layout.summary_json(), Path::new("out/summaries/20261202__governance__summary.json"));
        assert_eq!(layout.errors_log(), Path::new("out/errors/20261202__governance__errors.log"));
        assert_eq!(layout.audit_chronicle(), Path::new("out/audit/20261202__governance__chronicle.cmeta"));
        assert_eq!(run_dir_name(7, "a plateau: cut/kept"), "007-a_plateau__cut_kept");
    }
}
