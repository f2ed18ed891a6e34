//! The error log (`errors/…__errors.log` and `.json`): one entry for every
//! problem of a suite run — each expectation that did not hold, each
//! determinism or replay failure — and of a `--replay`, with its severity,
//! the values, the test and the command that reproduces it.
//!
//! Severities (docs/testing.md, "Errors"):
//! - **moderate**: the run is reproducible, but what it produced is not what
//!   was declared: an expectation that did not hold, an input whose text
//!   no longer hashes to the recorded SHA-256, or a trace of another build,
//!   whose chronicle bytes cannot be compared (`--replay`);
//! - **critical**: determinism is broken: the two runs of a seed differ,
//!   the replay does not reproduce the chronicle, a `--replay` gives other
//!   bytes or generator states, or a trace's seed and generator states do
//!   not agree (seed corruption).
//!
//! There is no *minor* entry: nothing in a run drifts within a tolerance —
//! a chronicle is the same to the bit, or it is a critical failure.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::run::{SeedResult, Verdict};
use crate::trace::{ReplayProblem, SeedTrace};

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// What a run produced is not what was declared.
    Moderate,
    /// Determinism is broken.
    Critical,
}

impl Severity {
    /// `MODERATE`, `CRITICAL`: as the log prints it.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Moderate => "MODERATE",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// One problem, as the error log holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorEntry {
    /// When the seed ended (UTC, RFC 3339), as the caller timed it; the
    /// suite's timestamp when it was not timed.
    pub at: String,
    /// How bad it is.
    pub severity: Severity,
    /// `expectation`, `determinism failure`, `replay failure`, `hash
    /// mismatch`, `different build`, `seed corruption`.
    pub kind: String,
    /// The test.
    pub test: String,
    /// Its file.
    pub file: PathBuf,
    /// The seed.
    pub seed: u64,
    /// The assertion or check that failed (the sentence, for an
    /// expectation).
    pub check: String,
    /// What was expected and what was found.
    pub detail: String,
    /// The command that reproduces it.
    pub reproduce: String,
}

/// Every problem of `results`, in their order; `timestamp` for a result
/// the caller did not time.
pub fn of_results(results: &[SeedResult], timestamp: &str) -> Vec<ErrorEntry> {
    let mut entries = Vec::new();
    for r in results {
        let at = r.timing.map_or_else(|| format!("{timestamp}Z"), |t| metagov_storage::utc_text(t.end_ns));
        let entry = |severity, kind: &str, check: String, detail: String| ErrorEntry {
            at: at.clone(),
            severity,
            kind: kind.to_owned(),
            test: r.test.clone(),
            file: r.file.clone(),
            seed: r.seed,
            check,
            detail,
            reproduce: r.reproduce.clone(),
        };
        match &r.verdict {
            Verdict::Pass => {}
            Verdict::Failed { failures } => entries.extend(
                failures.iter().map(|f| entry(Severity::Moderate, "expectation", f.expectation.clone(), f.detail())),
            ),
            Verdict::DeterminismFailure { .. } => entries.extend(r.verdict.lines().into_iter().map(|line| {
                entry(Severity::Critical, "determinism failure", "the two runs are identical".into(), line)
            })),
            Verdict::ReplayFailure { .. } => entries.extend(r.verdict.lines().into_iter().map(|line| {
                entry(Severity::Critical, "replay failure", "replay --verify of the first run".into(), line)
            })),
        }
    }
    entries
}

/// Every problem `--replay` found with seed `seed` of a trace, at `at`
/// (UTC), with `reproduce` the command that runs the replay again.
pub fn of_replay(seed: &SeedTrace, problems: &[ReplayProblem], at: &str, reproduce: &str) -> Vec<ErrorEntry> {
    problems
        .iter()
        .map(|p| ErrorEntry {
            at: at.to_owned(),
            severity: p.severity,
            kind: p.kind.to_owned(),
            test: seed.test.clone(),
            file: seed.file.clone(),
            seed: seed.seed,
            check: "the run again from its determinism trace, bit for bit".into(),
            detail: p.detail.clone(),
            reproduce: reproduce.to_owned(),
        })
        .collect()
}

/// The `.log` text: an entry a paragraph, in the order given.
///
/// ```text
/// [2026-12-02T18:40:03Z] MODERATE: expectation
///   Test: too strict [seed 6] (x.toml)
///   Check: knob learning_rate stays within [0.09, 0.11]
///   expected within [0.09, 0.11], actual 0.05 on job stalled after window 320; …
///   Command: metagov test x.toml --test 'too strict' --seed 6
/// ```
pub fn to_log(entries: &[ErrorEntry]) -> String {
    let mut log = String::new();
    for e in entries {
        let _ = writeln!(log, "[{}] {}: {}", e.at, e.severity.label(), e.kind);
        let _ = writeln!(log, "  Test: {} [seed {}] ({})", e.test, e.seed, e.file.display());
        let _ = writeln!(log, "  Check: {}", e.check);
        let _ = writeln!(log, "  {}", e.detail);
        let _ = writeln!(log, "  Command: {}\n", e.reproduce);
    }
    log
}

/// The `.json` text: the counts by severity, then the entries.
pub fn to_json(entries: &[ErrorEntry]) -> String {
    let count = |severity| entries.iter().filter(|e| e.severity == severity).count();
    let value = serde_json::json!({
        "counts": {"moderate": count(Severity::Moderate), "critical": count(Severity::Critical)},
        "errors": entries,
    });
    // Invariant: a `serde_json::Value` always renders.
    serde_json::to_string_pretty(&value).expect("a JSON value renders") + "\n"
}
