//! `metagov test [PATH ...]`: the CLI glue of governance tests
//! (docs/testing.md). Finding, checking and running the tests, and writing
//! their results, is `metagov_suite`'s; this module filters them, times each
//! seed on the wall clock, draws the progress bar, prints the verdicts and
//! picks the output directory (dated by the wall clock).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use metagov_bundle::SecretKey;
use metagov_storage::utc_text;
use metagov_suite::audit::{SeedRecord, SuiteRecord};
use metagov_suite::errors::Severity;
use metagov_suite::file::{self, TestCase};
use metagov_suite::layout::{safe_char, Layout, CATEGORIES};
use metagov_suite::report::SuiteReport;
use metagov_suite::run::{self as suite_run, sha256_file, Hooks, Timing};
use metagov_suite::trace::{replay_seed, DeterminismTrace, SeedTrace, TRACE_FORMAT};

use super::{counted, progress, Escaped, EscapedLines, Outcome};

/// The options of `metagov test`.
#[derive(Clone, Debug, Default)]
pub struct TestArgs {
    /// Test files and directories (every `*.toml` in a directory, sorted).
    pub paths: Vec<PathBuf>,
    /// Only the tests of this name.
    pub test: Option<String>,
    /// Only this seed.
    pub seed: Option<u64>,
    /// Where the chronicles and summaries go.
    pub out: Option<PathBuf>,
    /// No progress bar.
    pub quiet: bool,
    /// Seeds run at once, on threads (0 and 1: one after another). The
    /// results, the printed verdicts and the files are the same as one
    /// after another, in file, test and seed order; only the times differ.
    pub jobs: usize,
    /// Sign the audit bundle and the suite chronicle with this secret key
    /// (and, with `prune`, the archives).
    pub key: Option<PathBuf>,
    /// Before running, prune the results directory the output directory
    /// lies in (`metagov_suite::prune`).
    pub prune: bool,
}

/// The directory `metagov test` reads when given no path.
pub const DEFAULT_PATH: &str = "tests/governance";

/// `metagov test`: exits non-zero when any seed of any test does not pass.
/// `hooks` are for the harness's own tests; the CLI passes the default.
///
/// # Errors
///
/// An invalid test file (every problem with its line and column), a filter
/// that matches nothing, a simulation that stops, files that cannot be
/// written.
pub fn test(args: &TestArgs, hooks: Hooks, out: &mut dyn Write) -> Result<Outcome> {
    let paths = if args.paths.is_empty() { vec![PathBuf::from(DEFAULT_PATH)] } else { args.paths.clone() };
    let files = file::discover(&paths)?;
    let loaded = files.iter().map(|path| file::load(path)).collect::<Result<Vec<_>, _>>()?;
    let retention = file::suite_retention(&loaded)?;
    let cases = filter(loaded.into_iter().flat_map(|file| file.cases).collect(), args)?;
    let key = args.key.as_deref().map(SecretKey::read).transpose().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let runs: u64 = cases.iter().map(|case| case.seeds.len() as u64).sum();
    let suite = suite_name(&paths);
    let (date, timestamp) = wall_clock_date();
    let root = args.out.clone().unwrap_or_else(|| Layout::default_root(Path::new(RESULTS_DIR), &date, &suite));
    let layout = Layout::new(root, &date, &suite);
    if args.prune {
        // The results directory the suite's directory lies in; never the
        // suite's own directory, which this run is about to write.
        let results = match layout.root.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let protected = layout.root.file_name().and_then(|name| name.to_str());
        super::prune::prune(results, &date, retention, protected, key.as_ref(), out)?;
    }
    for category in CATEGORIES {
        let dir = layout.root.join(category);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    writeln!(
        out,
        "metagov test: {}, {} from {} (each seed twice, compared byte for byte, the first replayed)",
        counted(cases.len() as u64, "test"),
        counted(runs, "run"),
        counted(files.len() as u64, "file")
    )?;
    out.flush()?;

    let bar = progress::progress_bar(runs, !args.quiet, "governance tests (seeds)");
    let work: Vec<(&TestCase, u64, PathBuf)> = cases
        .iter()
        .enumerate()
        .flat_map(|(index, case)| {
            let layout = &layout;
            case.seeds.iter().map(move |&seed| (case, seed, layout.seed_dir(index, &case.name, seed)))
        })
        .collect();
    let variables_sha256 = environment_digest();
    let run_one = |(case, seed, dir): &(&TestCase, u64, PathBuf)| {
        let (start_ns, cpu_before) = (unix_nanos_now(), process_cpu_seconds());
        #[allow(clippy::disallowed_methods, reason = "the shell times each seed for the report; no run sees it")]
        let started = std::time::Instant::now();
        let mut result = suite_run::run_seed(case, *seed, dir, hooks)?;
        result.seconds = started.elapsed().as_secs_f64();
        let cpu_util = (process_cpu_seconds() - cpu_before) / result.seconds.max(f64::MIN_POSITIVE);
        let memory_mb = super::peak_rss_kib().map_or(0.0, |kib| kib as f64 / 1024.0);
        let timing = Timing { start_ns, end_ns: unix_nanos_now(), memory_mb, cpu_util };
        result.timing = Some(timing);
        let trace = SeedTrace::of(case, &result);
        let execution_sha256 = write_execution_log(&result, &trace, &timing, &variables_sha256, dir).map_err(|e| {
            metagov_suite::SuiteError::Run { test: case.name.clone(), seed: *seed, message: format!("{e:#}") }
        })?;
        Ok::<_, metagov_suite::SuiteError>(Ran { result, trace, execution_sha256 })
    };
    let mut done: Vec<Ran> = Vec::new();
    if args.jobs <= 1 {
        for item in &work {
            let ran = run_one(item)?;
            bar.inc(1);
            print_result(&ran.result, out)?;
            done.push(ran);
        }
    } else {
        // Workers take the next seed in order; results are printed and kept
        // in that order as soon as every earlier one is in.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::scope(|scope| -> Result<()> {
            for _ in 0..args.jobs.min(work.len()) {
                let send = send.clone();
                let (next, work, run_one) = (&next, &work, &run_one);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = work.get(i) else { break };
                    let result = run_one(item);
                    let stop = result.is_err();
                    if send.send((i, result)).is_err() || stop {
                        break;
                    }
                });
            }
            drop(send);
            let mut waiting = std::collections::BTreeMap::new();
            for (i, result) in receive {
                waiting.insert(i, result);
                while let Some(ran) = waiting.remove(&done.len()) {
                    let ran = ran?;
                    bar.inc(1);
                    print_result(&ran.result, out)?;
                    done.push(ran);
                }
            }
            Ok(())
        })?;
    }
    bar.finish_and_clear();

    let (results, traces): (Vec<_>, Vec<_>) = done.iter().map(|ran| (ran.result.clone(), ran.trace.clone())).unzip();
    let trace = DeterminismTrace {
        format: TRACE_FORMAT.into(),
        suite: suite.clone(),
        timestamp: timestamp.clone(),
        seeds: traces,
    };
    let report = SuiteReport { suite: suite.clone(), timestamp: timestamp.clone(), files: files.clone(), results };
    let errors = metagov_suite::errors::of_results(&report.results, &timestamp);
    let counts = report.counts();
    for (path, text) in [
        (layout.summary_json(), report.to_json()),
        (layout.summary_md(), report.to_markdown()),
        (layout.junit(), report.to_junit()),
        (layout.timing_csv(), report.to_timing_csv()),
        (layout.timing_json(), report.timing_summary_json()),
        (layout.determinism(), trace.to_json()),
        (layout.errors_log(), metagov_suite::errors::to_log(&errors)),
        (layout.errors_json(), metagov_suite::errors::to_json(&errors)),
    ] {
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let audit = write_audit(&layout, &report, &done, key.as_ref())?;
    writeln!(
        out,
        "\n{} passed, {} failed, {} determinism failures, {} replay failures",
        counts.passed, counts.failed, counts.determinism_failures, counts.replay_failures
    )?;
    if !errors.is_empty() {
        let critical = errors.iter().filter(|e| e.severity == Severity::Critical).count();
        writeln!(
            out,
            "errors       {} ({critical} critical): {}",
            errors.len(),
            Escaped(layout.errors_log().display())
        )?;
    }
    writeln!(out, "results      {}", Escaped(layout.root.display()))?;
    writeln!(out, "             summaries/ timing/ determinism/ errors/, the chronicles under runs/")?;
    writeln!(out, "audit        {} ({})", Escaped(layout.audit_bundle().display()), audit)?;
    writeln!(out, "             recorded in {}", Escaped(layout.audit_chronicle().display()))?;
    Ok(if counts.not_passed() == 0 { Outcome::Success } else { Outcome::Failure })
}

/// `metagov test --replay TRACE`: runs every seed of a determinism trace
/// again from the trace alone, into `out` (default
/// `metagov-tests/YYYYMMDD__SUITE__replay/`), and compares each with what
/// the trace recorded. Prints a line per seed, writes the problems to
/// `errors/` there, and fails unless every seed is reproduced bit for bit.
///
/// # Errors
///
/// A trace that cannot be read, a traced input this build cannot read, a
/// run that stops, files that cannot be written.
pub fn replay(trace_path: &Path, out_dir: Option<&Path>, quiet: bool, out: &mut dyn Write) -> Result<Outcome> {
    let trace = DeterminismTrace::load(trace_path)?;
    let (date, timestamp) = wall_clock_date();
    let suite = format!("{}__replay", trace.suite);
    let root = out_dir.map_or_else(|| Layout::default_root(Path::new(RESULTS_DIR), &date, &suite), Path::to_owned);
    let layout = Layout::new(root, &date, &suite);
    writeln!(
        out,
        "metagov test --replay: {} of suite {} ({}), each run again from the trace and compared bit for bit",
        counted(trace.seeds.len() as u64, "run"),
        Escaped(&trace.suite),
        Escaped(&trace.timestamp)
    )?;
    let reproduce = format!("metagov test --replay {}", suite_run::shell_quote(&trace_path.display().to_string()));
    let bar = progress::progress_bar(trace.seeds.len() as u64, !quiet, "replaying (seeds)");
    let mut tests: Vec<&str> = Vec::new();
    let (mut errors, mut not_reproduced) = (Vec::new(), 0);
    for seed in &trace.seeds {
        let index = tests.iter().position(|t| *t == seed.test).unwrap_or_else(|| {
            tests.push(&seed.test);
            tests.len() - 1
        });
        let check = replay_seed(seed, &layout.seed_dir(index, &seed.test, seed.seed))?;
        bar.inc(1);
        not_reproduced += usize::from(!check.problems.is_empty());
        let name = format!("{} :: {} [seed {}]", Escaped(seed.file.display()), Escaped(&seed.test), seed.seed);
        match check.problems.iter().map(|p| p.severity).max() {
            None => {
                writeln!(out, "REPRODUCED {name}  chronicle sha256 {}", check.sha256.as_deref().unwrap_or_default())?
            }
            Some(worst) => {
                writeln!(out, "{:<10} {name}", worst.label())?;
                for problem in &check.problems {
                    writeln!(out, "           {}: {}", problem.kind, Escaped(&problem.detail))?;
                }
            }
        }
        out.flush()?;
        errors.extend(metagov_suite::errors::of_replay(seed, &check.problems, &utc_text(unix_nanos_now()), &reproduce));
    }
    bar.finish_and_clear();
    let errors_dir = layout.root.join("errors");
    std::fs::create_dir_all(&errors_dir).with_context(|| format!("cannot create {}", errors_dir.display()))?;
    for (path, text) in [
        (layout.errors_log(), metagov_suite::errors::to_log(&errors)),
        (layout.errors_json(), metagov_suite::errors::to_json(&errors)),
    ] {
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    writeln!(out, "\n{} reproduced, {not_reproduced} not ({timestamp})", trace.seeds.len() - not_reproduced)?;
    writeln!(out, "results      {}", Escaped(layout.root.display()))?;
    Ok(if errors.is_empty() { Outcome::Success } else { Outcome::Failure })
}

/// Where `metagov test` writes its suites' directories by default.
pub const RESULTS_DIR: &str = "metagov-tests";

/// One seed run, with what the shell made of it.
struct Ran {
    result: suite_run::SeedResult,
    trace: SeedTrace,
    /// The SHA-256 of its `execution.json`.
    execution_sha256: String,
}

/// Packs every category but `audit/` into `audit/…__audit.zip` (signed with
/// `key` when given), reads it back and checks it, and records the suite in
/// the suite chronicle. Returns the signature's verdict, as the check found
/// it and the chronicle says it.
fn write_audit(layout: &Layout, report: &SuiteReport, done: &[Ran], key: Option<&SecretKey>) -> Result<String> {
    let bundle = layout.audit_bundle();
    let plan = metagov_bundle::Plan::scan(&layout.root).map_err(|e| anyhow::anyhow!("{e:#}"))?.without_dir("audit");
    let checked = super::bundle::pack_checked(&layout.root, &plan, &bundle, key)?;
    let (hash, _) = sha256_file(&bundle).with_context(|| format!("cannot read {}", bundle.display()))?;
    let signature = checked.signature;
    let counts = report.counts();
    let relative = |path: &Path| path.strip_prefix(&layout.root).unwrap_or(path).display().to_string();
    let suite_record = SuiteRecord {
        timestamp: format!("{}Z", report.timestamp),
        artifact: relative(&bundle),
        hash,
        manifest_sha256: checked.manifest_sha256,
        signature: signature.clone(),
        verdict: if counts.not_passed() == 0 { "pass" } else { "fail" }.into(),
        passed: counts.passed,
        not_passed: counts.not_passed(),
    };
    let seeds: Vec<SeedRecord> = done
        .iter()
        .map(|ran| SeedRecord {
            test: ran.result.test.clone(),
            file: ran.result.file.display().to_string(),
            seed: ran.result.seed,
            verdict: ran.result.verdict.label().into(),
            chronicle_sha256: ran.trace.chronicle.facts.sha256.clone(),
            chain_head: ran.trace.chronicle.facts.chain_head.clone(),
            execution_sha256: ran.execution_sha256.clone(),
        })
        .collect();
    let mut files = Vec::new();
    for path in &report.files {
        let (sha256, _) = sha256_file(path).with_context(|| format!("cannot read {}", path.display()))?;
        files.push((path.display().to_string(), sha256));
    }
    let identity = metagov_suite::audit::identity(&report.suite, &suite_record.timestamp, &files);
    metagov_suite::audit::write_chronicle(&layout.audit_chronicle(), &identity, &seeds, &suite_record)?;
    if let Some(key) = key {
        super::bundle::sign_sealed(&layout.audit_chronicle(), key)?;
    }
    Ok(signature)
}

/// Keeps the tests `--test` names and the seeds `--seed` names; a filter
/// that matches nothing is an error (with a "did you mean" for a name).
fn filter(mut cases: Vec<TestCase>, args: &TestArgs) -> Result<Vec<TestCase>> {
    if let Some(name) = &args.test {
        let names: Vec<String> = cases.iter().map(|case| case.name.clone()).collect();
        cases.retain(|case| case.name == *name);
        if cases.is_empty() {
            let known: Vec<&str> = names.iter().map(String::as_str).collect();
            anyhow::bail!(
                "--test {}: no test has that name; {}",
                Escaped(name),
                Escaped(metagov_config::suggestion(name, &known))
            );
        }
    }
    if let Some(seed) = args.seed {
        for case in &mut cases {
            case.seeds.retain(|&s| s == seed);
        }
        cases.retain(|case| !case.seeds.is_empty());
        anyhow::ensure!(!cases.is_empty(), "--seed {seed}: no selected test runs that seed");
    }
    Ok(cases)
}

fn print_result(result: &suite_run::SeedResult, out: &mut dyn Write) -> Result<()> {
    let label = match result.verdict.label() {
        "pass" => "PASS".to_owned(),
        other => other.to_uppercase(),
    };
    writeln!(
        out,
        "{label:<6} {} :: {} [seed {}]  ({:.2} s)",
        Escaped(result.file.display()),
        Escaped(&result.test),
        result.seed,
        result.seconds
    )?;
    if !result.verdict.passed() {
        for line in result.verdict.lines() {
            writeln!(out, "       {}", EscapedLines(&line))?;
        }
        writeln!(out, "       reproduce: {}", Escaped(&result.reproduce))?;
    }
    out.flush()?;
    Ok(())
}

/// The suite's name for the default directory: the one path's file name
/// (without `.toml`), or the first's with `+N` for N more; characters other
/// than `[A-Za-z0-9._-]` become `_`.
fn suite_name(paths: &[PathBuf]) -> String {
    let name = |path: &Path| {
        let path = if path.file_name().is_none() { path.canonicalize().unwrap_or_default() } else { path.to_owned() };
        let stem = path.file_stem().map_or_else(|| "suite".to_owned(), |s| s.to_string_lossy().to_string());
        stem.chars().map(safe_char).collect::<String>()
    };
    match paths {
        [] => "suite".to_owned(),
        [one] => name(one),
        [first, rest @ ..] => format!("{}+{}", name(first), rest.len()),
    }
}

/// The SHA-256 of the sorted `NAME=VALUE` lines of the environment
/// variables: the execution logs' digest of them (never their values).
fn environment_digest() -> String {
    #[allow(clippy::disallowed_methods, reason = "the shell digests the environment for the log; no run sees it")]
    let mut variables: Vec<String> =
        std::env::vars_os().map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())).collect();
    variables.sort();
    metagov_storage::sha256_hex(variables.join("\n").as_bytes())
}

/// Writes `execution.json` beside a seed's two runs
/// (`metagov_suite::execution`); returns the file's SHA-256.
fn write_execution_log(
    result: &suite_run::SeedResult,
    trace: &SeedTrace,
    timing: &Timing,
    variables_sha256: &str,
    dir: &Path,
) -> Result<String> {
    let first = &result.chronicles[0];
    let reader =
        metagov_storage::ChronicleReader::open(first).with_context(|| format!("cannot read {}", first.display()))?;
    let summary = std::fs::read_to_string(first.with_file_name("summary.json")).ok();
    let text = metagov_suite::execution::execution_log(
        result,
        trace,
        timing,
        reader.context(),
        variables_sha256,
        summary.as_deref(),
    );
    let path = dir.join("execution.json");
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(metagov_storage::sha256_hex(text.as_bytes()))
}

/// Today's date as `YYYYMMDD` and the time as `YYYY-MM-DDTHH:MM:SS`, UTC,
/// from the wall clock (humantime's RFC 3339 text, cut).
fn wall_clock_date() -> (String, String) {
    #[allow(clippy::disallowed_methods, reason = "the shell dates its output directory; no run sees it")]
    let now = std::time::SystemTime::now();
    let text = humantime::format_rfc3339_seconds(now).to_string();
    let timestamp = text.trim_end_matches('Z').to_owned();
    (timestamp[..10].replace('-', ""), timestamp)
}

/// The wall clock, in nanoseconds since the Unix epoch (0 before it).
fn unix_nanos_now() -> i64 {
    #[allow(clippy::disallowed_methods, reason = "the shell times each seed for the report; no run sees it")]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The CPU time this process has used, in seconds, on every thread.
fn process_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_date_is_utc_text() {
        let (date, timestamp) = wall_clock_date();
        assert_eq!((date.len(), timestamp.len()), (8, 19), "{date} {timestamp}");
        assert_eq!(date, timestamp[..10].replace('-', ""));
        assert!(timestamp.as_bytes()[10] == b'T' && date.starts_with("20"), "{timestamp}");
    }
}
