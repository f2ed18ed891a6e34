//! Governance tests (`metagov test`, docs/testing.md): a config tested
//! against scenarios the way code is tested against fixtures.
//!
//! It owns the test file format ([`mod@file`]), the expectation sentences and
//! their grammar ([`expect`]), what a run recorded as the expectations read
//! it and their verdicts ([`record`]), the run of one seed — twice, compared
//! byte for byte, replayed — ([`run`]), the written results: JSON,
//! Markdown, JUnit XML, timing ([`report`]), where each file of a suite run
//! goes ([`layout`]), a seed's execution log ([`execution`]), the
//! determinism trace and its replay from the trace alone ([`trace`]), the
//! error log with severities ([`errors`]), the suite chronicle ([`audit`])
//! and the plan of a prune of old results ([`prune`]).
//!
//! It must never decide anything about governance: runs are
//! `metagov_sim::simulate::run`, the replay is `metagov_storage`'s
//! `verify_replay_file`, and expectations only count and compare what the
//! actors published. It reads no clock and no environment (times, dates and
//! timestamps are the caller's), draws nothing on a terminal, and panics on
//! no test file or trace: every problem is an error with its file, line and
//! column. Its only I/O is reading test, scenario, config and trace files,
//! and writing the runs and the suite chronicle where the caller says.
#![deny(missing_docs)]

use std::path::PathBuf;

pub mod audit;
pub mod errors;
pub mod execution;
pub mod expect;
pub mod file;
pub mod layout;
pub mod prune;
pub mod record;
pub mod report;
pub mod run;
pub mod trace;

/// Why a suite could not be run (a failed expectation is a verdict, not an
/// error).
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// A file or directory could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A directory holds no `*.toml` test file.
    #[error("{} holds no *.toml test file", path.display())]
    NoTests {
        /// The directory.
        path: PathBuf,
    },
    /// A test file is not valid: every problem at its line and column.
    #[error("{problems}")]
    Invalid {
        /// The problems (always `ConfigError::Invalid`).
        problems: metagov_config::ConfigError,
    },
    /// A scenario file a test names is not valid.
    #[error("{origin}")]
    Scenario {
        /// The test file and key that name it.
        origin: String,
        /// Its problems.
        #[source]
        source: metagov_sim::scenario::ScenarioError,
    },
    /// A config file a test names is not valid.
    #[error("{origin}")]
    Config {
        /// The test file and key that name it.
        origin: String,
        /// Its problems.
        #[source]
        source: metagov_config::ConfigError,
    },
    /// The test files of a suite disagree on how long its results are kept.
    #[error("{message}")]
    Retention {
        /// Which files, and what each sets.
        message: String,
    },
    /// The suite chronicle cannot be written.
    #[error("the suite chronicle: {message}")]
    Audit {
        /// What went wrong.
        message: String,
    },
    /// A determinism trace that cannot be read.
    #[error("{}: not a determinism trace: {message}", path.display())]
    Trace {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A simulation of a test stopped.
    #[error("test `{test}`, seed {seed}: {message}")]
    Run {
        /// The test.
        test: String,
        /// The seed.
        seed: u64,
        /// What stopped it.
        message: String,
    },
}
