//! `metagov bench suite`: what a governance test costs against the plain
//! runs it contains. The suite is the project's own (`tests/governance`,
//! compiled in); each repetition runs every seed once as `metagov simulate`
//! does (the baseline), then the whole `metagov test` command on the suite
//! (two runs a seed, the byte comparison, the replay, the expectations,
//! and every file it writes: execution logs, summaries, timing, the
//! determinism trace, errors, the audit bundle and the suite chronicle),
//! and the ratio of the two wall times is reported with its spread over
//! the repetitions.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use metagov_sim::simulate::{self, NoProgress, Simulation};
use metagov_suite::file::{self, TestCase};
use metagov_suite::run::Hooks;

use super::bench::met;
use super::progress::progress_bar;
use super::suite::{test, TestArgs};
use super::Outcome;

/// The project's governance suite, as `cargo test` runs it.
const SUITE: [(&str, &str); 3] = [
    ("closed-loop.toml", include_str!("../../tests/governance/closed-loop.toml")),
    ("memory.toml", include_str!("../../tests/governance/memory.toml")),
    ("plateau.toml", include_str!("../../tests/governance/plateau.toml")),
];

/// The target: a suite takes at most this many times its plain runs.
const RATIO_MAX: f64 = 2.2;

#[allow(clippy::disallowed_methods)] // Benchmarks measure wall time; the deterministic crates never do.
fn timed(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let start = std::time::Instant::now();
    f()?;
    Ok(start.elapsed())
}

pub(super) fn bench_suite(quick: bool, dir: &Path, out: &mut dyn Write) -> Result<()> {
    let mut cases: Vec<TestCase> = Vec::new();
    let files = dir.join("bench-suite/files");
    std::fs::create_dir_all(&files).with_context(|| format!("cannot create {}", files.display()))?;
    for (name, text) in SUITE {
        cases.extend(file::parse(text, Path::new(name))?.cases);
        let path = files.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let seeds: usize = cases.iter().map(|case| case.seeds.len()).sum();
    let repetitions = if quick { 3 } else { 10 };
    writeln!(out, "## a governance suite against its plain runs: `metagov bench suite`\n")?;
    writeln!(
        out,
        "tests/governance: {} tests, {seeds} seeds; each repetition runs every seed once as `simulate` (baseline) \
         and the whole `metagov test` on the suite (each seed twice, compared, replayed, judged; every result \
         file written, the audit bundle and suite chronicle included), one seed after another\n",
        cases.len()
    )?;
    writeln!(out, "| repetition | plain runs | suite | ratio |")?;
    writeln!(out, "|---:|---:|---:|---:|")?;
    let bar = progress_bar(repetitions, true, "suite against plain runs (repetitions)");
    let mut ratios = Vec::new();
    for repetition in 1..=repetitions {
        let plain = timed(|| {
            for (i, case) in cases.iter().enumerate() {
                for &seed in &case.seeds {
                    let mut config = case.config.clone();
                    config.run.seed = seed;
                    let out_dir = dir.join(format!("bench-suite/plain/{i}/{seed}"));
                    let simulation =
                        Simulation { scenario: case.scenario.clone(), config, windows: case.windows, out_dir };
                    simulate::run(&simulation, &mut NoProgress)?;
                }
            }
            Ok(())
        })?;
        let args = TestArgs {
            paths: vec![files.clone()],
            out: Some(dir.join(format!("bench-suite/test/{repetition}"))),
            quiet: true,
            ..TestArgs::default()
        };
        let mut said = Vec::new();
        let suite = timed(|| {
            let outcome = test(&args, Hooks::default(), &mut said)?;
            anyhow::ensure!(outcome == Outcome::Success, "{}", String::from_utf8_lossy(&said));
            Ok(())
        })
        .context("the suite must pass to be measured")?;
        let ratio = suite.as_secs_f64() / plain.as_secs_f64().max(1e-9);
        ratios.push(ratio);
        writeln!(out, "| {repetition} | {:.3} s | {:.3} s | {ratio:.2}× |", plain.as_secs_f64(), suite.as_secs_f64())?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let (low, high) = (ratios[0], ratios[ratios.len() - 1]);
    writeln!(
        out,
        "\ntarget: the suite ≤ {RATIO_MAX}× its plain runs (median {median:.2}×, spread {low:.2}–{high:.2}× over \
         {repetitions} repetitions: {})\n",
        met(median <= RATIO_MAX)
    )?;
    Ok(())
}
