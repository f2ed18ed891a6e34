//! Running one seed of a test: the scenario simulated twice under the
//! test's config (two chronicles, compared byte for byte), the first replayed
//! with `replay --verify`'s code, and the expectations judged on what it
//! recorded. The second run goes on its own thread beside the first and its
//! replay; the runs share nothing, so the verdict does not depend on which
//! finishes first.
//!
//! Each run is `metagov_sim::simulate::run` itself, writing its usual files
//! into `DIR/a/` and `DIR/b/`; the replay is `replay --verify`'s
//! (`metagov_storage::verify_replay_observed` with the simulator's
//! `rebuild`), whose egress gives the expectations their record.

use std::path::{Path, PathBuf};

use metagov_config::Config;
use metagov_sim::simulate::{self, NoProgress, RngTrace, Simulation};
use metagov_storage::{verify_file, verify_replay_observed, IntegrityStatus, ReplayError, RunReader};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::file::TestCase;
use crate::record::{evaluate, Failure, Record};
use crate::SuiteError;

/// How one seed of a test ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Both runs identical, the replay matched, every expectation held.
    Pass,
    /// Some expectations did not hold.
    Failed {
        /// The expectations that did not hold, in file order.
        failures: Vec<Failure>,
    },
    /// The two runs' chronicles differ.
    DeterminismFailure {
        /// The first byte offset where they differ (the shorter one's length
        /// when one is a prefix of the other).
        offset: u64,
        /// Bytes of the first run's chronicle.
        first_bytes: u64,
        /// Bytes of the second run's chronicle.
        second_bytes: u64,
    },
    /// Replaying the first run's chronicle did not reproduce it.
    ReplayFailure {
        /// What the replay said.
        message: String,
    },
}

impl Verdict {
    /// Whether this is a pass.
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Pass)
    }

    /// A short name: `pass`, `failed`, `determinism failure`, `replay failure`.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Failed { .. } => "failed",
            Verdict::DeterminismFailure { .. } => "determinism failure",
            Verdict::ReplayFailure { .. } => "replay failure",
        }
    }

    /// One line per problem, as the report prints them.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Verdict::Pass => Vec::new(),
            Verdict::Failed { failures } => {
                failures.iter().map(|f| format!("`{}`: {}", f.expectation, f.detail())).collect()
            }
            Verdict::DeterminismFailure { offset, first_bytes, second_bytes } => vec![format!(
                "the two runs' chronicles differ at byte offset {offset} (first run {first_bytes} bytes, second run \
                 {second_bytes} bytes)"
            )],
            Verdict::ReplayFailure { message } => vec![format!("replay --verify of the first run: {message}")],
        }
    }
}

/// One seed of one test, run.
#[derive(Clone, Debug, Serialize)]
pub struct SeedResult {
    /// The test file.
    pub file: PathBuf,
    /// The test's name.
    pub test: String,
    /// The seed.
    pub seed: u64,
    /// How it ended.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The two runs' chronicles.
    pub chronicles: [PathBuf; 2],
    /// What the first run's chronicle is, as the replay (or, when the
    /// replay stopped, `verify_file`) read it.
    pub chronicle: ChronicleFacts,
    /// The first run's random generators before and after it.
    #[serde(skip)]
    pub rng: RngTrace,
    /// The command that runs this seed of this test alone.
    pub reproduce: String,
    /// Wall time of the two runs, the comparison, the replay and the
    /// judging, in seconds, as the caller measured it (0 until it does).
    pub seconds: f64,
    /// What the caller measured of the seed on its own clocks (none until
    /// it does): the timing record of `timing.csv`.
    pub timing: Option<Timing>,
}

/// The first run's chronicle, identified: the file's SHA-256 (hashed as it
/// is compared with the second run's), its size, its integrity verdict,
/// chain head and record count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChronicleFacts {
    /// Lowercase hex SHA-256 of the whole file.
    pub sha256: String,
    /// File length in bytes.
    pub bytes: u64,
    /// The integrity verdict, as `metagov verify` says it.
    pub integrity: String,
    /// Hex chain head.
    pub chain_head: String,
    /// Records read.
    pub records: u64,
}

/// The config seed `seed` of `case` runs under: the test's config with
/// `run.seed` set.
pub fn seed_config(case: &TestCase, seed: u64) -> Config {
    let mut config = case.config.clone();
    config.run.seed = seed;
    config
}

/// When a seed ran and what it cost, as the shell measured it: nothing of
/// it reaches a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Timing {
    /// Start, nanoseconds since the Unix epoch (UTC wall clock).
    pub start_ns: i64,
    /// End, likewise.
    pub end_ns: i64,
    /// The process's peak resident memory at the end, in MiB (the high
    /// water mark since the process started, not this seed's alone).
    pub memory_mb: f64,
    /// The process's CPU time over the seed's wall time (1.0 = one core
    /// busy; the two runs of a seed overlap, so up to 2). With `--jobs N`
    /// it counts every worker.
    pub cpu_util: f64,
}

/// Hooks into a run for the harness's own tests; the CLI passes
/// `Hooks::default()`, which changes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hooks {
    /// Flips every bit of the byte at this offset of the second run's
    /// chronicle as it is read for the comparison (the file is not
    /// touched): the determinism-failure verdict on demand.
    pub corrupt_second_chronicle_at: Option<u64>,
}

/// The first byte offset where `a` and `b` differ, `None` when they are
/// equal; when one is a prefix of the other, the shorter one's length.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<u64> {
    if a == b {
        return None;
    }
    let common = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    Some(common as u64)
}

/// Bytes of each file compared at a time.
const CHUNK_BYTES: usize = 1 << 16;

/// How two files compared: the first's SHA-256 and size, and where they
/// first differ with both sizes (`None` when equal).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Compared {
    pub(crate) first_sha256: String,
    pub(crate) first_bytes: u64,
    /// The first differing offset, with both sizes.
    pub(crate) difference: Option<(u64, u64, u64)>,
}

/// The first byte offset where the files at `a` and `b` differ, with both
/// sizes, and `a`'s SHA-256 on the way. Read in chunks of [`CHUNK_BYTES`],
/// so the memory does not grow with the run. `flip`: a byte offset of the
/// second file whose bits are flipped as read ([`Hooks`]).
pub(crate) fn compare_files(a: &Path, b: &Path, flip: Option<u64>) -> std::io::Result<Compared> {
    use std::io::Read;
    /// Reads until `buffer` is full or the file ends; the bytes read.
    fn fill(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
        let mut filled = 0;
        while filled < buffer.len() {
            match file.read(&mut buffer[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        Ok(filled)
    }
    let (mut file_a, mut file_b) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let sizes = (file_a.metadata()?.len(), file_b.metadata()?.len());
    let (mut chunk_a, mut chunk_b) = (vec![0; CHUNK_BYTES], vec![0; CHUNK_BYTES]);
    let mut offset = 0_u64;
    let mut hasher = Sha256::new();
    let mut difference = None;
    loop {
        let (read_a, read_b) = (fill(&mut file_a, &mut chunk_a)?, fill(&mut file_b, &mut chunk_b)?);
        if let Some(at) = flip.and_then(|at| at.checked_sub(offset)).and_then(|at| usize::try_from(at).ok()) {
            if let Some(byte) = chunk_b[..read_b].get_mut(at) {
                *byte ^= 0xff;
            }
        }
        hasher.update(&chunk_a[..read_a]);
        if difference.is_none() {
            difference =
                first_difference(&chunk_a[..read_a], &chunk_b[..read_b]).map(|at| (offset + at, sizes.0, sizes.1));
        }
        if read_a == 0 {
            let first_sha256 = hex(hasher.finalize().as_slice());
            return Ok(Compared { first_sha256, first_bytes: sizes.0, difference });
        }
        offset += read_a as u64;
    }
}

/// The lowercase hex SHA-256 of the file at `path` and its length, read in
/// chunks of 64 KiB.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let (mut hasher, mut chunk, mut bytes) = (Sha256::new(), vec![0; CHUNK_BYTES], 0_u64);
    loop {
        match file.read(&mut chunk)? {
            0 => break,
            n => {
                hasher.update(&chunk[..n]);
                bytes += n as u64;
            }
        }
    }
    Ok((hex(hasher.finalize().as_slice()), bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The shell command that runs seed `seed` of test `name` of `file` alone.
pub fn reproduce(file: &Path, name: &str, seed: u64) -> String {
    format!("metagov test {} --test {} --seed {seed}", shell_quote(&file.display().to_string()), shell_quote(name))
}

/// `text` as one shell word: as it is when it needs no quoting, else in
/// single quotes.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=+,@".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Runs seed `seed` of `case` into `dir` (`dir/a`, `dir/b`).
///
/// # Errors
///
/// If a simulation stops (its error, naming the packet) or its files cannot
/// be read back. A difference between the runs, a replay that does not
/// match and an expectation that does not hold are verdicts, not errors.
pub fn run_seed(case: &TestCase, seed: u64, dir: &Path, hooks: Hooks) -> Result<SeedResult, SuiteError> {
    let failed = |message: String| SuiteError::Run { test: case.name.clone(), seed, message };
    let config = seed_config(case, seed);
    // One estimate for both runs (they are the same run): the disk must
    // hold two chronicles.
    let estimate =
        simulate::estimate_chronicle(&case.scenario, &config, case.windows).map_err(|e| failed(format!("{e:#}")))?;
    let simulate_into = |side: &str| {
        let simulation = Simulation {
            scenario: case.scenario.clone(),
            config: config.clone(),
            windows: case.windows,
            out_dir: dir.join(side),
        };
        simulate::run_estimated(&simulation, &estimate, 2, &mut NoProgress).map_err(|e| failed(format!("{e:#}")))
    };
    // The second run beside the first and its replay: two independent runs
    // (each a pure function of scenario, config and seed), so the order they
    // finish in changes nothing but the wall time.
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| simulate_into("b"));
        let first = simulate_into("a").and_then(|report| {
            let mut record = Record::new(config.initial_knobs(), report.summary.training.clone());
            let mut shape = Ok(());
            let replay = RunReader::open(&report.chronicle).map_err(ReplayError::from).and_then(|reader| {
                verify_replay_observed(&reader, simulate::rebuild, |egress| {
                    if shape.is_ok() {
                        shape = record.observe(egress);
                    }
                })
            });
            shape.map_err(|e| failed(format!("the replay of {}: {e}", report.chronicle.display())))?;
            Ok((report, replay, record))
        });
        // A panic in the second run is a bug: it goes on unwinding here.
        (first, second.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    let ((first, replay, record), second) = (first?, second?);
    let chronicles = [first.chronicle, second.chronicle];
    let compared = compare_files(&chronicles[0], &chronicles[1], hooks.corrupt_second_chronicle_at).map_err(|e| {
        failed(format!("cannot compare {} with {}: {e}", chronicles[0].display(), chronicles[1].display()))
    })?;
    let read = match &replay {
        Ok(report) => (report.status.to_string(), report.chain_head.clone(), report.records),
        // The replay stopped early: the file's own check says what it is.
        Err(_) => {
            let report = verify_file(&chronicles[0])
                .map_err(|e| failed(format!("cannot verify {}: {e}", chronicles[0].display())))?;
            (report.status.to_string(), report.chain_head, report.records)
        }
    };
    let chronicle = ChronicleFacts {
        sha256: compared.first_sha256,
        bytes: compared.first_bytes,
        integrity: read.0,
        chain_head: read.1,
        records: read.2,
    };
    let verdict = if let Some((offset, first_bytes, second_bytes)) = compared.difference {
        Verdict::DeterminismFailure { offset, first_bytes, second_bytes }
    } else {
        match replay {
            Ok(report) if report.status == IntegrityStatus::Sealed && report.complete => {
                let failures: Vec<Failure> =
                    case.expectations.iter().filter_map(|expectation| evaluate(expectation, &record)).collect();
                if failures.is_empty() {
                    Verdict::Pass
                } else {
                    Verdict::Failed { failures }
                }
            }
            Ok(report) => Verdict::ReplayFailure { message: format!("the recording is {}", report.status) },
            Err(error) => Verdict::ReplayFailure { message: error.to_string() },
        }
    };
    Ok(SeedResult {
        file: case.file.clone(),
        test: case.name.clone(),
        seed,
        verdict,
        chronicles,
        chronicle,
        rng: first.rng,
        reproduce: reproduce(&case.file, &case.name, seed),
        seconds: 0.0,
        timing: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_difference_is_the_first_differing_byte_or_the_shorter_length() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
        assert_eq!(first_difference(b"", b"x"), Some(0));
    }

    #[test]
    fn files_are_compared_chunk_by_chunk_with_the_offset_across_chunks() {
        let dir = std::env::temp_dir().join(format!("metagov-suite-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        let bytes: Vec<u8> = (0..3 * CHUNK_BYTES + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&a, &bytes).unwrap();
        std::fs::write(&b, &bytes).unwrap();
        let size = bytes.len() as u64;
        let sha256 = metagov_storage::sha256_hex(&bytes);
        let compared = |difference| Compared { first_sha256: sha256.clone(), first_bytes: size, difference };
        assert_eq!(compare_files(&a, &b, None).unwrap(), compared(None));
        let at = 2 * CHUNK_BYTES as u64 + 5;
        assert_eq!(compare_files(&a, &b, Some(at)).unwrap(), compared(Some((at, size, size))));
        std::fs::write(&b, &bytes[..CHUNK_BYTES + 3]).unwrap();
        let short = Some((CHUNK_BYTES as u64 + 3, size, CHUNK_BYTES as u64 + 3));
        assert_eq!(compare_files(&a, &b, None).unwrap(), compared(short));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_reproduce_command_quotes_what_the_shell_would_split() {
        let command = reproduce(Path::new("tests/governance/a b.toml"), "it's fine", 3);
        assert_eq!(command, r"metagov test 'tests/governance/a b.toml' --test 'it'\''s fine' --seed 3");
        assert_eq!(reproduce(Path::new("t.toml"), "plain", 1), "metagov test t.toml --test plain --seed 1");
    }
}
