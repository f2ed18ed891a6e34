//! `metagov bench governance`: the scorecard of docs/BENCHMARKS.md. The runs
//! are `metagov_sim::scorecard`'s; this prints them as Markdown with each
//! target's verdict, and the wall time of the whole suite.

use std::io::Write;

use anyhow::Result;
use metagov_config::Config;
use metagov_sim::scorecard::{run_suite, JobCard, ScenarioCard, CONSTANT_RATES};

use super::bench::met;
use super::progress::progress_bar;

fn windows(card: &JobCard) -> String {
    card.windows_to_target.map_or_else(|| "not reached".to_owned(), |w| w.to_string())
}

/// Windows to target as a number for ratios: never reached counts as the
/// whole run and more.
fn windows_or(card: &JobCard, never: u64) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "window counts far below 2^53")]
    card.windows_to_target.map_or(never as f64, |w| w as f64)
}

/// The entrant `name`'s cards in `card`.
fn of<'a>(card: &'a ScenarioCard, name: &str) -> &'a [JobCard] {
    card.entrants.iter().find(|(n, _)| n == name).map_or(&[], |(_, jobs)| jobs.as_slice())
}

/// The best constant rate in hindsight on `card`: the fewest divergences,
/// then the fewest windows to the target on its first job, then the lowest
/// final loss.
fn best_constant(card: &ScenarioCard) -> &str {
    let constants = card.entrants.iter().filter(|(name, _)| name.starts_with("constant-"));
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^53")]
    let key = |jobs: &[JobCard]| {
        let divergences = jobs.iter().map(|j| j.divergences).sum::<u64>() as f64;
        (divergences, jobs[0].windows_to_target.unwrap_or(u64::MAX) as f64, jobs[0].final_loss)
    };
    constants
        .min_by(|(_, a), (_, b)| key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal))
        .map_or("constant-?", |(name, _)| name.as_str())
}

pub(super) fn bench_governance(base: &Config, quick: bool, out: &mut dyn Write) -> Result<()> {
    let seeds: Vec<u64> = if quick { vec![1] } else { vec![1, 2, 3] };
    let bar = progress_bar(0, true, "scorecard (runs)");
    #[allow(clippy::disallowed_methods)] // The bench measures wall time; the scorecard itself never does.
    let start = std::time::Instant::now();
    let cards = run_suite(base, &seeds, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    let spent = start.elapsed();
    writeln!(out, "## governance scorecard (closed loop, seeds {seeds:?})\n")?;
    writeln!(
        out,
        "Entrants: the default config; ReduceLROnPlateau (factor 0.1, patience 10, cooldown 0) as a rule; a \
         constant learning rate from {CONSTANT_RATES:?}, best in hindsight per scenario. Medians over seeds; \
         divergences summed; rollbacks: the most in one run.\n"
    )?;
    writeln!(
        out,
        "| scenario | job | entrant | windows to target | final loss | divergences | changes/1000w | rollbacks |"
    )?;
    writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|")?;
    let mut ratios = Vec::new();
    let mut diverges_where_best_does_not = Vec::new();
    for card in &cards {
        let best = best_constant(card);
        for name in ["default", "reduce_lr_on_plateau", best] {
            for job in of(card, name) {
                writeln!(
                    out,
                    "| {} | {} | {name} | {} | {:.4} | {} | {:.1} | {} |",
                    card.scenario,
                    job.job,
                    windows(job),
                    job.final_loss,
                    job.divergences,
                    job.changes_per_1000,
                    job.rollbacks_max
                )?;
            }
        }
        // One ratio per scenario (the median over its jobs), so a scenario
        // with many jobs weighs as much as one with one.
        let never = 1_000_000;
        let mut jobs: Vec<f64> = of(card, "default")
            .iter()
            .zip(of(card, "reduce_lr_on_plateau"))
            .map(|(ours, rop)| windows_or(ours, never) / windows_or(rop, never))
            .collect();
        jobs.sort_by(f64::total_cmp);
        ratios.push((card.scenario.clone(), jobs[(jobs.len() - 1) / 2]));
        let best_diverged: u64 = of(card, best).iter().map(|j| j.divergences).sum();
        let ours_diverged: u64 = of(card, "default").iter().map(|j| j.divergences).sum();
        if ours_diverged > 0 && best_diverged == 0 {
            diverges_where_best_does_not.push(card.scenario.clone());
        }
    }
    let mut sorted: Vec<f64> = ratios.iter().map(|(_, r)| *r).collect();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[(sorted.len() - 1) / 2];
    let worst = ratios.iter().max_by(|a, b| a.1.total_cmp(&b.1)).map_or(("".to_owned(), 0.0), |w| w.clone());
    writeln!(
        out,
        "\ndefault ÷ ReduceLROnPlateau, windows to target, per scenario (the median over its jobs; not reached \
         counts as 10^6, so two runs that never reach it count as 1):"
    )?;
    for (job, ratio) in &ratios {
        writeln!(out, "- {job}: {ratio:.2}")?;
    }
    writeln!(out, "\ntarget: median ≤ 0.8 ({median:.2}: {})", met(median <= 0.8))?;
    writeln!(out, "target: never above 1.1 (worst {} at {:.2}: {})", worst.0, worst.1, met(worst.1 <= 1.1))?;
    writeln!(
        out,
        "target: no divergence where the best constant rate has none ({}: {})",
        if diverges_where_best_does_not.is_empty() {
            "none".to_owned()
        } else {
            diverges_where_best_does_not.join(", ")
        },
        met(diverges_where_best_does_not.is_empty())
    )?;
    if let Some(healthy) = cards.iter().find(|c| c.scenario == "healthy") {
        let job = &of(healthy, "default")[0];
        let ok = job.changes_per_1000 <= 1.0 && job.rollbacks_max == 0;
        writeln!(
            out,
            "target: healthy job ≤ 1 knob change per 1000 windows and 0 rollbacks ({:.1}, {}: {})",
            job.changes_per_1000,
            job.rollbacks_max,
            met(ok)
        )?;
    }
    if let Some(collapse) = cards.iter().find(|c| c.scenario == "collapse") {
        let job = &of(collapse, "default")[0];
        writeln!(
            out,
            "target: at most one rollback for the one collapse incident ({}: {})",
            job.rollbacks_max,
            met(job.rollbacks_max <= 1)
        )?;
    }
    if let Some(sequential) = cards.iter().find(|c| c.scenario == "sequential") {
        let jobs = of(sequential, "default");
        let never = 1_000_000;
        let first = windows_or(&jobs[0], never);
        let later: Vec<String> = jobs[1..].iter().map(windows).collect();
        let ok = jobs[1..].iter().all(|j| windows_or(j, never) < first);
        writeln!(
            out,
            "target: later jobs of a domain reach the target sooner than the first ({} vs {}: {})",
            windows(&jobs[0]),
            later.join(", "),
            met(ok)
        )?;
    }
    writeln!(out, "\n{} runs in {:.1} s\n", cards.len() * cards[0].entrants.len() * seeds.len(), spent.as_secs_f64())?;
    Ok(())
}
