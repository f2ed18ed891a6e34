//! `metagov test [PATH ...]`: the CLI glue of governance tests
//! (docs/testing.md). Finding, checking and running the tests, and writing
//! their results, is `metagov_suite`'s; this module filters them, times each
//! seed on the wall clock, draws the progress bar, prints the verdicts and
//! picks the output directory (dated by the wall clock).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use metagov_suite::file::{self, TestCase};
use metagov_suite::report::SuiteReport;
use metagov_suite::run::{self as suite_run, Hooks, Timing};

use super::{progress, Escaped, EscapedLines, Outcome};

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
    let mut cases = Vec::new();
    for path in &files {
        cases.extend(file::load(path)?);
    }
    let cases = filter(cases, args)?;
    let runs: u64 = cases.iter().map(|case| case.seeds.len() as u64).sum();
    let suite = suite_name(&paths);
    let (date, timestamp) = wall_clock_date();
    let out_dir = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("metagov-tests/{date}__{suite}")));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    writeln!(
        out,
        "metagov test: {} tests, {runs} runs from {} files (each seed twice, compared byte for byte, the first replayed)",
        cases.len(),
        files.len()
    )?;
    out.flush()?;

    let bar = progress::progress_bar(runs, !args.quiet, "governance tests (seeds)");
    let work: Vec<(&TestCase, u64, PathBuf)> = cases
        .iter()
        .enumerate()
        .flat_map(|(index, case)| {
            let tests = out_dir.join("runs").join(run_dir_name(index, case));
            case.seeds.iter().map(move |&seed| (case, seed, tests.join(format!("seed-{seed}"))))
        })
        .collect();
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
        write_execution_log(case, &result, &timing, dir).map_err(|e| metagov_suite::SuiteError::Run {
            test: case.name.clone(),
            seed: *seed,
            message: format!("{e:#}"),
        })?;
        Ok::<_, metagov_suite::SuiteError>(result)
    };
    let mut results = Vec::new();
    if args.jobs <= 1 {
        for item in &work {
            let result = run_one(item)?;
            bar.inc(1);
            print_result(&result, out)?;
            results.push(result);
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
                while let Some(result) = waiting.remove(&results.len()) {
                    let result = result?;
                    bar.inc(1);
                    print_result(&result, out)?;
                    results.push(result);
                }
            }
            Ok(())
        })?;
    }
    bar.finish_and_clear();

    let timing_dir = out_dir.join("timing");
    std::fs::create_dir_all(&timing_dir).with_context(|| format!("cannot create {}", timing_dir.display()))?;
    let timing_name = |ext: &str| timing_dir.join(format!("{date}__{suite}__timing.{ext}"));
    let (timing_csv, timing_json) = (timing_name("csv"), timing_name("json"));
    let report = SuiteReport { suite, timestamp, files: files.clone(), results };
    let counts = report.counts();
    for (path, text) in [
        (out_dir.join("summary.json"), report.to_json()),
        (out_dir.join("summary.md"), report.to_markdown()),
        (out_dir.join("junit.xml"), report.to_junit()),
        (timing_csv, report.to_timing_csv()),
        (timing_json, report.timing_summary_json()),
    ] {
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    writeln!(
        out,
        "\n{} passed, {} failed, {} determinism failures, {} replay failures",
        counts.passed, counts.failed, counts.determinism_failures, counts.replay_failures
    )?;
    writeln!(out, "results      {}", Escaped(out_dir.display()))?;
    writeln!(out, "             summary.json, summary.md, junit.xml; timing/; the chronicles under runs/")?;
    Ok(if counts.not_passed() == 0 { Outcome::Success } else { Outcome::Failure })
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
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect::<String>()
    };
    match paths {
        [] => "suite".to_owned(),
        [one] => name(one),
        [first, rest @ ..] => format!("{}+{}", name(first), rest.len()),
    }
}

/// `NN-TEST` for a test's runs: its index in the suite, then its name with
/// characters other than `[A-Za-z0-9._-]` as `_` (cut to 60).
fn run_dir_name(index: usize, case: &TestCase) -> String {
    let slug: String = case
        .name
        .chars()
        .take(60)
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .collect();
    format!("{index:03}-{slug}")
}

/// Writes `execution.json` beside a seed's two runs: when it ran, how it
/// ended, what went in (the scenario's text and the run's config, by
/// SHA-256) and what came out (the first run's chain head and records, its
/// summary's SHA-256, the determinism verdict), the platform and a digest of
/// the environment variables (never their values), and the record's own
/// SHA-256 over the rest. The actors' RNG states are not in it: a run does
/// not hand them out yet.
fn write_execution_log(case: &TestCase, result: &suite_run::SeedResult, timing: &Timing, dir: &Path) -> Result<()> {
    use metagov_storage::{sha256_hex, utc_text, verify_file, ChronicleReader};
    let first = &result.chronicles[0];
    let integrity = verify_file(first).with_context(|| format!("cannot verify {}", first.display()))?;
    let reader = ChronicleReader::open(first).with_context(|| format!("cannot read {}", first.display()))?;
    let context = reader.context();
    let summary = first.with_file_name("summary.json");
    let summary_sha256 = std::fs::read(&summary).map(|bytes| sha256_hex(&bytes)).ok();
    #[allow(clippy::disallowed_methods, reason = "the shell digests the environment for the log; no run sees it")]
    let mut variables: Vec<String> =
        std::env::vars_os().map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())).collect();
    variables.sort();
    let determinism = match &result.verdict {
        suite_run::Verdict::DeterminismFailure { offset, .. } => format!("the chronicles differ at byte {offset}"),
        _ => "the two chronicles are identical".to_owned(),
    };
    let mut log = serde_json::json!({
        "test": result.test,
        "file": result.file.display().to_string(),
        "seed": result.seed,
        "status": result.verdict.label(),
        "start": utc_text(timing.start_ns),
        "end": utc_text(timing.end_ns),
        "duration_ms": timing.end_ns.saturating_sub(timing.start_ns) as f64 / 1e6,
        "inputs": {
            "scenario": case.scenario.name(),
            "scenario_sha256": case.scenario.source_sha256(),
            "config_sha256": context.config_sha256,
            "windows": case.windows,
        },
        "outputs": {
            "chronicle": first.display().to_string(),
            "integrity": integrity.status.to_string(),
            "chain_head": integrity.chain_head,
            "records": integrity.records,
            "summary_sha256": summary_sha256,
        },
        "determinism": determinism,
        "reproduce": result.reproduce,
        "environment": {
            "os": context.environment.os.as_str(),
            "arch": context.environment.arch.as_str(),
            "variables_sha256": sha256_hex(variables.join("\n").as_bytes()),
            "producer": context.producer,
        },
    });
    // The digest covers the record as written without it (serde_json's
    // maps keep their keys sorted, so the text is canonical).
    log["record_sha256"] = sha256_hex(log.to_string().as_bytes()).into();
    let path = dir.join("execution.json");
    let text = serde_json::to_string_pretty(&log).context("the execution log")? + "\n";
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
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
