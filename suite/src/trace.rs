//! The determinism trace (`determinism/…__determinism.json`): for every
//! seed of a suite run, what went in — the scenario's and the config's TOML
//! text, with their SHA-256 —, every random generator's state before and
//! after the first run, and what came out — the chronicle's SHA-256, size,
//! chain head —, with the two runs' comparison. `metagov test --replay`
//! reads it and runs every seed again from it alone, bit for bit
//! ([`replay_seed`]): no test file, scenario file or config file is needed.
//!
//! Generator states are exact: a generator is ChaCha8 on the run seed, on a
//! stream named after its owner, at a word position; the states before a
//! run follow from the seed alone, so a trace whose states do not is
//! corrupt.

use std::path::{Path, PathBuf};

use metagov_bus::RngState;
use metagov_config::Config;
use metagov_sim::scenario::Scenario;
use metagov_sim::simulate::{self, NoProgress, Simulation};
use metagov_storage::sha256_hex;
use serde::{Deserialize, Serialize};

use crate::errors::Severity;
use crate::file::TestCase;
use crate::run::{compare_files, seed_config, sha256_file, ChronicleFacts, SeedResult, Verdict};
use crate::SuiteError;

/// The `format` line of a trace this build writes and reads.
pub const TRACE_FORMAT: &str = "metagov-determinism-trace-1";

/// Largest trace file `--replay` reads, in bytes (a trace holds each seed's
/// scenario and config text: at most 1 MiB each, by their own limits).
pub const TRACE_BYTES_MAX: u64 = 256 << 20;

/// A suite run's determinism trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeterminismTrace {
    /// Always [`TRACE_FORMAT`].
    pub format: String,
    /// The suite's name.
    pub suite: String,
    /// When the suite ran (UTC, the caller's clock).
    pub timestamp: String,
    /// Every seed of every test, in the order run.
    pub seeds: Vec<SeedTrace>,
}

/// One seed of one test, traced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedTrace {
    /// The test's name.
    pub test: String,
    /// The test file it came from.
    pub file: PathBuf,
    /// The seed.
    pub seed: u64,
    /// The window count the run was cut to, if the test set one.
    pub windows: Option<u64>,
    /// The build that ran it (`metagov 0.1.0 on linux/x86_64`): a chronicle
    /// records its producer and platform, so only the same build can write
    /// the same bytes.
    pub build: String,
    /// The scenario, as run.
    pub scenario: Input,
    /// The config, as run (`run.seed` set to the seed).
    pub config: Input,
    /// Every generator before the first packet.
    pub rng_before: Vec<Generator>,
    /// Every generator after the last.
    pub rng_after: Vec<Generator>,
    /// The first run's chronicle.
    pub chronicle: TracedChronicle,
    /// The comparison of the two runs: `the two chronicles are identical`,
    /// or where they differ.
    pub determinism: String,
}

/// A text the run read, with its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A name for it (the scenario's name; `config`).
    pub name: String,
    /// Lowercase hex SHA-256 of `toml`.
    pub sha256: String,
    /// The TOML text.
    pub toml: String,
}

/// A random generator's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    /// Whose it is: an actor's name, or `scenario:<job>`.
    pub name: String,
    /// The run seed it was keyed with.
    pub seed: u64,
    /// Its stream, `0x` and 16 hex digits (a hash of the name).
    pub stream: String,
    /// 32-bit words drawn.
    pub word_pos: u64,
}

/// The first run's chronicle: where it was written and what it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracedChronicle {
    /// Its path when traced.
    pub path: PathBuf,
    /// Its facts.
    #[serde(flatten)]
    pub facts: ChronicleFacts,
}

impl Generator {
    fn of((name, state): &(String, RngState)) -> Generator {
        Generator {
            name: name.clone(),
            seed: state.seed,
            stream: format!("{:#018x}", state.stream),
            // Invariant: a run draws far fewer than 2^64 words.
            word_pos: u64::try_from(state.word_pos).expect("a generator's word position fits 64 bits"),
        }
    }
}

/// Every generator of `states`.
fn generators(states: &[(String, RngState)]) -> Vec<Generator> {
    states.iter().map(Generator::of).collect()
}

impl SeedTrace {
    /// The trace of `result`, a seed of `case`.
    pub fn of(case: &TestCase, result: &SeedResult) -> SeedTrace {
        let config = seed_config(case, result.seed).canonical_toml();
        SeedTrace {
            test: result.test.clone(),
            file: result.file.clone(),
            seed: result.seed,
            windows: case.windows,
            build: metagov_storage::this_build(),
            scenario: Input {
                name: case.scenario.name().to_owned(),
                sha256: case.scenario.source_sha256().to_owned(),
                toml: case.scenario.source().to_owned(),
            },
            config: Input { name: "config".into(), sha256: sha256_hex(config.as_bytes()), toml: config },
            rng_before: generators(&result.rng.before),
            rng_after: generators(&result.rng.after),
            chronicle: TracedChronicle { path: result.chronicles[0].clone(), facts: result.chronicle.clone() },
            determinism: match &result.verdict {
                Verdict::DeterminismFailure { offset, .. } => format!("the chronicles differ at byte {offset}"),
                _ => "the two chronicles are identical".into(),
            },
        }
    }
}

impl DeterminismTrace {
    /// The trace as written: pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        // Invariant: every field is a string, a number or a list of them.
        serde_json::to_string_pretty(self).expect("a trace renders") + "\n"
    }

    /// Reads a trace file.
    ///
    /// # Errors
    ///
    /// An unreadable or oversized file, JSON that is not a trace (serde's
    /// message with its line and column), another `format`.
    pub fn load(path: &Path) -> Result<DeterminismTrace, SuiteError> {
        let io = |source| SuiteError::Io { path: path.to_owned(), source };
        let text = metagov_config::read_text_file(path, TRACE_BYTES_MAX, "the trace's limit").map_err(io)?;
        let trace: DeterminismTrace = serde_json::from_str(&text)
            .map_err(|e| SuiteError::Trace { path: path.to_owned(), message: e.to_string() })?;
        if trace.format != TRACE_FORMAT {
            return Err(SuiteError::Trace {
                path: path.to_owned(),
                message: format!("format {:?}: this build reads {TRACE_FORMAT:?}", trace.format),
            });
        }
        Ok(trace)
    }
}

/// One problem `--replay` found with a seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplayProblem {
    /// How bad it is.
    pub severity: Severity,
    /// `hash mismatch`, `seed corruption` or `determinism failure`.
    pub kind: &'static str,
    /// What differs, with both values.
    pub detail: String,
}

/// How a seed ran again from its trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplayCheck {
    /// The new run's chronicle (none when the trace's inputs did not check).
    pub chronicle: Option<PathBuf>,
    /// Its SHA-256.
    pub sha256: Option<String>,
    /// Every difference from the trace; none: reproduced bit for bit.
    pub problems: Vec<ReplayProblem>,
}

/// Runs `seed` again from its trace alone into `dir`, and compares: the
/// inputs' texts against their recorded SHA-256 (a mismatch is a *hash
/// mismatch*, and the seed is not run: it would not be the traced run), the
/// config's `run.seed` and the generators before the run against the seed
/// (*seed corruption*), then the new chronicle's SHA-256 and size (when
/// the trace comes from this build; from another it is a *different
/// build*, and the bytes are not compared) and the generators after it
/// against the trace (*determinism failure*).
///
/// # Errors
///
/// A traced scenario or config this build no longer reads, or a run that
/// stops.
pub fn replay_seed(seed: &SeedTrace, dir: &Path) -> Result<ReplayCheck, SuiteError> {
    let failed = |message: String| SuiteError::Run { test: seed.test.clone(), seed: seed.seed, message };
    let new_problem = |severity, kind, detail: String| ReplayProblem { severity, kind, detail };
    let mismatches: Vec<ReplayProblem> = [&seed.scenario, &seed.config]
        .into_iter()
        .filter_map(|input| {
            let actual = sha256_hex(input.toml.as_bytes());
            let detail = format!("the {} text hashes to {actual}, the trace recorded {}", input.name, input.sha256);
            (actual != input.sha256).then(|| new_problem(Severity::Moderate, "hash mismatch", detail))
        })
        .collect();
    if !mismatches.is_empty() {
        return Ok(ReplayCheck { chronicle: None, sha256: None, problems: mismatches });
    }
    let mut problems = Vec::new();
    let mut problem = |severity, kind, detail: String| problems.push(new_problem(severity, kind, detail));
    let origin = |what: &str| format!("the trace's {what} of test `{}`, seed {}", seed.test, seed.seed);
    let scenario =
        Scenario::from_toml_str(&seed.scenario.toml, &origin("scenario")).map_err(|e| failed(e.to_string()))?;
    let config = Config::from_toml_str(&seed.config.toml, &origin("config")).map_err(|e| failed(e.to_string()))?;
    if config.run.seed != seed.seed {
        problem(
            Severity::Critical,
            "seed corruption",
            format!("the config's run.seed is {}, the trace's seed {}", config.run.seed, seed.seed),
        );
    }
    let simulation = Simulation { scenario, config, windows: seed.windows, out_dir: dir.to_owned() };
    let report = simulate::run(&simulation, &mut NoProgress).map_err(|e| failed(format!("{e:#}")))?;
    if generators(&report.rng.before) != seed.rng_before {
        problem(
            Severity::Critical,
            "seed corruption",
            format!(
                "the generators before the run are not those seed {} gives: {}",
                seed.seed,
                first_generator_difference(&seed.rng_before, &generators(&report.rng.before))
            ),
        );
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SuiteError::Io { path, source }
    };
    let (sha256, bytes) = sha256_file(&report.chronicle).map_err(io(&report.chronicle))?;
    let traced = &seed.chronicle.facts;
    let build = metagov_storage::this_build();
    if build != seed.build {
        problem(
            Severity::Moderate,
            "different build",
            format!(
                "traced by {}, replayed by {build}: a chronicle records its producer and platform, so its bytes \
                 are not compared (the generators are)",
                seed.build
            ),
        );
    } else if sha256 != traced.sha256 {
        // Equal bytes: equal chain head and records too.
        let at = match seed.chronicle.path.is_file() {
            true => compare_files(&seed.chronicle.path, &report.chronicle, None)
                .map_err(io(&seed.chronicle.path))?
                .difference
                .map_or_else(String::new, |(offset, ..)| {
                    format!(", first differing at byte {offset} of the traced file")
                }),
            false => String::new(),
        };
        problem(
            Severity::Critical,
            "determinism failure",
            format!(
                "the chronicle's SHA-256 is {sha256} ({bytes} bytes), the trace recorded {} ({} bytes){at}",
                traced.sha256, traced.bytes
            ),
        );
    }
    let after = generators(&report.rng.after);
    if after != seed.rng_after {
        problem(
            Severity::Critical,
            "determinism failure",
            format!("the generators after the run differ: {}", first_generator_difference(&seed.rng_after, &after)),
        );
    }
    Ok(ReplayCheck { chronicle: Some(report.chronicle), sha256: Some(sha256), problems })
}

/// The first generator that differs between the traced and the new states,
/// said with both.
fn first_generator_difference(traced: &[Generator], new: &[Generator]) -> String {
    let show = |g: Option<&Generator>| {
        g.map_or_else(
            || "none".to_owned(),
            |g| format!("{} seed {} stream {} word {}", g.name, g.seed, g.stream, g.word_pos),
        )
    };
    let at = (0..traced.len().max(new.len())).find(|&i| traced.get(i) != new.get(i)).unwrap_or(0);
    format!("traced {}, now {}", show(traced.get(at)), show(new.get(at)))
}
