//! Seeded simulated telemetry: scenario files in, telemetry packets out.
//!
//! A [`Scenario`] is a TOML document (docs/scenarios.md) naming groups of
//! jobs, the training pattern each group follows (steady, plateau, drift,
//! oscillation) and events that disturb it for a stretch of windows (memory
//! and latency spikes, reward collapse, an outlier domain, NaN and garbage
//! bursts). [`Scenario::stream`] turns it into a [`TelemetryStream`] of bus
//! [`Value`](metagov_bus::Value) packets shaped as the telemetry
//! packet of docs/scenarios.md, with garbage as raw text lines the validator must reject.
//!
//! This module owns the scenario format, its built-ins (`scenarios/*.toml`,
//! compiled in) and the generators. It must never read the clock or the
//! environment, and does no I/O except in [`Scenario::load`] and
//! [`Scenario::resolve`], which read the one file they are asked for. A
//! stream is a pure function of the scenario, the seed and the window count.

mod file;
mod model;
mod stream;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use file::ScenarioError;
pub use stream::{JobTraining, TelemetryStream};

use file::{EventSpec, JobSpec};

/// The built-in scenarios, by name, in the order `metagov simulate` lists them.
const BUILTINS: [(&str, &str); 10] = [
    ("default", include_str!("../../../scenarios/default.toml")),
    ("steady", include_str!("../../../scenarios/steady.toml")),
    ("plateau", include_str!("../../../scenarios/plateau.toml")),
    ("drift", include_str!("../../../scenarios/drift.toml")),
    ("oscillation", include_str!("../../../scenarios/oscillation.toml")),
    ("memory-spikes", include_str!("../../../scenarios/memory-spikes.toml")),
    ("nan-burst", include_str!("../../../scenarios/nan-burst.toml")),
    ("collapse", include_str!("../../../scenarios/collapse.toml")),
    ("outlier-domain", include_str!("../../../scenarios/outlier-domain.toml")),
    ("many-jobs", include_str!("../../../scenarios/many-jobs.toml")),
];

const BUILTIN_NAMES: [&str; BUILTINS.len()] = {
    let mut names = [""; BUILTINS.len()];
    let mut i = 0;
    while i < BUILTINS.len() {
        names[i] = BUILTINS[i].0;
        i += 1;
    }
    names
};

/// A parsed and validated scenario: which jobs report, how their training
/// goes, and what disturbs it. Build one with [`Scenario::builtin`],
/// [`Scenario::from_toml_str`], [`Scenario::load`] or [`Scenario::resolve`].
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    name: String,
    description: String,
    windows: u64,
    jobs: Vec<JobSpec>,
    events: Vec<EventSpec>,
    /// Lowercase hex SHA-256 of the TOML text it was parsed from.
    source_sha256: String,
    /// That text (shared: a test clones its scenario for every run).
    source: std::sync::Arc<str>,
}

impl Scenario {
    /// Most jobs a scenario may have, over all its groups.
    pub const JOBS_MAX: u64 = 4096;
    /// Most windows a scenario may run.
    pub const WINDOWS_MAX: u64 = 100_000_000;
    /// Most events a scenario may have.
    pub const EVENTS_MAX: usize = 1024;
    /// Largest scenario file [`Scenario::load`] reads, in bytes.
    pub const FILE_BYTES_MAX: u64 = 1 << 20;

    /// The names of the built-in scenarios.
    pub fn builtin_names() -> &'static [&'static str] {
        &BUILTIN_NAMES
    }

    /// The built-in scenario called `name`, if there is one.
    pub fn builtin(name: &str) -> Option<Scenario> {
        let (_, text) = BUILTINS.iter().find(|(builtin, _)| *builtin == name)?;
        // Invariant: built-ins are checked by the tests; a bad one is a bug.
        let origin = format!("built-in scenario {name}");
        Some(Scenario::from_toml_str(text, &origin).unwrap_or_else(|error| panic!("{error}")))
    }

    /// Parses and validates a scenario text. `origin` names the text in
    /// errors (usually the file name).
    ///
    /// # Errors
    ///
    /// [`ScenarioError::Invalid`] with the problems at their line and column,
    /// read by the config's reader (`metagov_config::read_toml`): a syntax
    /// error, unknown keys, wrong types (each naming its key and what it
    /// takes), or else the first value out of range or over a limit, or name
    /// that is not a valid id.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        file::parse(text, origin)
    }

    /// Reads the file at `path` and parses it, naming it by its path in
    /// errors.
    ///
    /// # Errors
    ///
    /// [`ScenarioError::Io`] if the file is not a regular file, cannot be
    /// read as UTF-8 text or is larger than [`Scenario::FILE_BYTES_MAX`]
    /// (`metagov_config::read_text_file`); otherwise as
    /// [`Scenario::from_toml_str`].
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        file::load(path)
    }

    /// The built-in called `name_or_path`, else the scenario file at that
    /// path.
    ///
    /// # Errors
    ///
    /// [`ScenarioError::NotFound`] (with a "did you mean" for a misspelled
    /// built-in) if it is neither a built-in name nor an existing path;
    /// otherwise as [`Scenario::load`].
    pub fn resolve(name_or_path: &str) -> Result<Scenario, ScenarioError> {
        if let Some(scenario) = Scenario::builtin(name_or_path) {
            return Ok(scenario);
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            return Err(ScenarioError::NotFound { name: name_or_path.to_owned() });
        }
        Scenario::load(path)
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Lowercase hex SHA-256 of the TOML text the scenario was parsed from
    /// (a built-in's embedded text, or the file's): what a test's execution
    /// log names as its scenario input.
    pub fn source_sha256(&self) -> &str {
        &self.source_sha256
    }

    /// The TOML text the scenario was parsed from: what a test's
    /// determinism trace keeps, so `metagov test --replay` runs it again
    /// without the file.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// What the scenario shows, in a sentence or two.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Windows each job reports unless overridden.
    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// How many jobs report.
    pub fn job_count(&self) -> u64 {
        self.jobs.len() as u64
    }

    /// The names of its jobs, in file order.
    pub fn job_names(&self) -> Vec<&str> {
        self.jobs.iter().map(|job| job.name.as_str()).collect()
    }

    /// The packets of a run seeded with `seed`: window by window, and within
    /// a window the jobs in file order. `windows_override` replaces the
    /// file's window count, capped at [`Scenario::WINDOWS_MAX`]; events
    /// keep their window numbers.
    pub fn stream(&self, seed: u64, windows_override: Option<u64>) -> TelemetryStream {
        let windows = windows_override.unwrap_or(self.windows).min(Scenario::WINDOWS_MAX);
        TelemetryStream::new(self, seed, windows)
    }
}
