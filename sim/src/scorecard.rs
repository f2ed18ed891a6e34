//! The governance scorecard: closed-loop scenarios × seeds, each run under
//! the default config, under every constant learning rate of a log grid, and
//! under a config that does what Keras/PyTorch `ReduceLROnPlateau` does,
//! expressed as metagov rules (docs/BENCHMARKS.md, "Governance scorecard").
//!
//! Runs journal nothing (no chronicle, no log): the numbers come from the
//! actors' egress through [`SummaryCollector`], as `simulate`'s summary
//! does. Pure: no clock, no I/O.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use metagov_actors::MetaSupervisor;
use metagov_config::{Comparison, Config, RuleConfig, Signal, Threshold};

use crate::scenario::Scenario;
use crate::simulate::drive;
use crate::summary::{SummaryCollector, TrainingScore};

/// The suite's scenarios, in report order.
const SUITE: [(&str, &str); 7] = [
    ("healthy", include_str!("../../scenarios/scorecard/healthy.toml")),
    ("plateau", include_str!("../../scenarios/scorecard/plateau.toml")),
    ("curvature-jump", include_str!("../../scenarios/scorecard/curvature-jump.toml")),
    ("memory-capped", include_str!("../../scenarios/scorecard/memory-capped.toml")),
    ("noisy", include_str!("../../scenarios/scorecard/noisy.toml")),
    ("collapse", include_str!("../../scenarios/scorecard/collapse.toml")),
    ("sequential", include_str!("../../scenarios/scorecard/sequential.toml")),
];

/// The constant learning rates of entrant (b), a log grid.
pub const CONSTANT_RATES: [f64; 7] = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0];

/// The scorecard's scenarios.
///
/// # Panics
///
/// If a suite file does not parse: they are checked by the tests.
#[must_use]
pub fn suite() -> Vec<Scenario> {
    SUITE
        .iter()
        .map(|(name, text)| {
            Scenario::from_toml_str(text, &format!("scorecard scenario {name}")).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

/// One config the suite runs under.
#[derive(Clone, Debug, PartialEq)]
pub struct Entrant {
    /// `default`, `reduce_lr_on_plateau`, or `constant-<rate>`.
    pub name: String,
    /// The config.
    pub config: Config,
}

/// The rules of `base` that do not move the learning rate (the memory
/// rules), so every entrant handles memory the same way.
fn other_rules(base: &Config) -> Vec<RuleConfig> {
    base.rules
        .iter()
        .filter(|rule| !rule.scale.contains_key("learning_rate") && !rule.adjust.contains_key("learning_rate"))
        .cloned()
        .collect()
}

/// `ReduceLROnPlateau(mode="min", factor=0.1, patience=10, threshold=1e-4,
/// threshold_mode="rel", cooldown=0, min_lr=learning_rate.min)` as a rule:
/// the rate is cut tenfold in the 11th window in a row whose loss is not
/// 1e-4 below the best (PyTorch reduces when `num_bad_epochs > patience`),
/// and the count starts again. The best loss is the lowest since the job
/// started (`meta.best_loss_windows = 0`). One difference: metagov's best is
/// the lowest loss reported, where PyTorch's best only moves on an
/// improvement larger than the threshold.
#[must_use]
pub fn reduce_lr_on_plateau(base: &Config) -> Config {
    let mut config = base.clone();
    config.meta.best_loss_windows = 0;
    let rule = RuleConfig {
        name: "reduce_lr_on_plateau".to_owned(),
        signal: Signal::LossImprovement,
        comparison: Comparison::Lt,
        threshold: Threshold::Value(1e-4),
        for_windows: 11,
        adjust: BTreeMap::new(),
        scale: BTreeMap::from([("learning_rate".to_owned(), 0.1)]),
        meta: BTreeMap::new(),
        cooldown_windows: 0,
        significant: false,
    };
    config.rules = std::iter::once(rule).chain(other_rules(base)).collect();
    config
}

/// `base` with the learning rate held at `rate`: its knob starts there and
/// no rule moves it.
#[must_use]
pub fn constant_rate(base: &Config, rate: f64) -> Config {
    let mut config = base.clone();
    if let Some(knob) = config.knobs.get_mut("learning_rate") {
        knob.initial = rate.clamp(knob.min, knob.max);
    }
    config.rules = other_rules(base);
    config
}

/// Every entrant: (a) `base`, (b) each constant rate, (c) ReduceLROnPlateau.
#[must_use]
pub fn entrants(base: &Config) -> Vec<Entrant> {
    let mut entrants = vec![Entrant { name: "default".to_owned(), config: base.clone() }];
    entrants.push(Entrant { name: "reduce_lr_on_plateau".to_owned(), config: reduce_lr_on_plateau(base) });
    for rate in CONSTANT_RATES {
        entrants.push(Entrant { name: format!("constant-{rate}"), config: constant_rate(base, rate) });
    }
    entrants
}

/// Runs `scenario` under `config` with `seed` in closed loop, journaling
/// nothing, and returns each model job's numbers.
///
/// # Errors
///
/// If the run stops (an actor's error, naming the packet).
pub fn score(scenario: &Scenario, config: &Config, seed: u64) -> Result<BTreeMap<String, TrainingScore>> {
    let mut config = config.clone();
    config.run.seed = seed;
    let mut stream = scenario.stream(seed, None);
    let packets = stream.total_packets();
    let initial = config.initial_knobs();
    let mut summary = SummaryCollector::new(initial, packets, &stream.training());
    let mut bus = MetaSupervisor::build(&config, metagov_bus::NoJournal)?;
    drive(&mut bus, &mut stream, packets, |n, report, egress| {
        summary.observe(report, egress).with_context(|| format!("packet {n}"))
    })
    .with_context(|| format!("scenario {} under seed {seed}", scenario.name()))?;
    Ok(summary.finish(&stream.training()).training)
}

/// One job's numbers under one entrant, over the seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct JobCard {
    /// The job.
    pub job: String,
    /// Median over seeds of the windows to the target loss (a seed that
    /// never reached it counts as more than any that did); `None` if the
    /// median run did not reach it.
    pub windows_to_target: Option<u64>,
    /// Median over seeds of the final loss.
    pub final_loss: f64,
    /// Divergences, summed over seeds.
    pub divergences: u64,
    /// Knob changes per 1,000 windows, mean over seeds.
    pub changes_per_1000: f64,
    /// Most rollbacks in one seed's run.
    pub rollbacks_max: u64,
}

/// One scenario's numbers: each entrant's jobs, in [`entrants`] order.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioCard {
    /// The scenario's name.
    pub scenario: String,
    /// (entrant name, its jobs' cards in job order).
    pub entrants: Vec<(String, Vec<JobCard>)>,
}

/// The median of `values` (the lower middle one of an even count).
fn median_by<T: Clone>(mut values: Vec<T>, cmp: impl Fn(&T, &T) -> std::cmp::Ordering) -> T {
    assert!(!values.is_empty(), "a median of at least one seed");
    values.sort_by(&cmp);
    values[(values.len() - 1) / 2].clone()
}

/// Runs every suite scenario under every entrant built from `base`, for
/// each of `seeds`, and gathers the numbers; `progress` is told after each
/// run (runs done, runs in all).
///
/// # Errors
///
/// The first run that stops.
pub fn run_suite(base: &Config, seeds: &[u64], mut progress: impl FnMut(u64, u64)) -> Result<Vec<ScenarioCard>> {
    let (scenarios, entrants) = (suite(), entrants(base));
    let total = (scenarios.len() * entrants.len() * seeds.len()) as u64;
    let mut done = 0;
    let mut cards = Vec::new();
    for scenario in &scenarios {
        let mut rows = Vec::new();
        for entrant in &entrants {
            let mut runs = Vec::new();
            for &seed in seeds {
                runs.push(score(scenario, &entrant.config, seed)?);
                done += 1;
                progress(done, total);
            }
            let jobs = runs[0].keys().cloned().collect::<Vec<_>>();
            let cards = jobs
                .into_iter()
                .map(|job| {
                    let of = |run: &BTreeMap<String, TrainingScore>| run[&job].clone();
                    let scores: Vec<TrainingScore> = runs.iter().map(of).collect();
                    let windows = median_by(scores.iter().map(|s| s.windows_to_target).collect(), |a, b| {
                        a.unwrap_or(u64::MAX).cmp(&b.unwrap_or(u64::MAX))
                    });
                    #[allow(clippy::cast_precision_loss, reason = "a handful of seeds")]
                    let n = scores.len() as f64;
                    JobCard {
                        job,
                        windows_to_target: windows,
                        final_loss: median_by(scores.iter().map(|s| s.final_loss).collect(), f64::total_cmp),
                        divergences: scores.iter().map(|s| s.divergences).sum(),
                        changes_per_1000: scores.iter().map(|s| s.knob_changes_per_1000).sum::<f64>() / n,
                        rollbacks_max: scores.iter().map(|s| s.rollbacks).max().unwrap_or(0),
                    }
                })
                .collect();
            rows.push((entrant.name.clone(), cards));
        }
        cards.push(ScenarioCard { scenario: scenario.name().to_owned(), entrants: rows });
    }
    Ok(cards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_parses_and_every_job_is_a_model_with_a_target() {
        for scenario in suite() {
            let training = scenario.stream(1, None).training();
            assert!(!training.is_empty(), "{} has model jobs", scenario.name());
        }
    }

    #[test]
    fn the_entrants_differ_only_in_their_learning_rate_rules() {
        let base = Config::default();
        let entrants = entrants(&base);
        let rop = &entrants[1].config;
        assert_eq!(rop.rules[0].scale["learning_rate"], 0.1);
        assert_eq!((rop.rules[0].for_windows, rop.rules[0].cooldown_windows), (11, 0));
        let constant = &entrants[2].config;
        assert_eq!(constant.knobs["learning_rate"].initial, CONSTANT_RATES[0]);
        for entrant in &entrants[1..] {
            let memory: Vec<&str> =
                entrant.config.rules.iter().map(|r| r.name.as_str()).filter(|n| n.starts_with("memory")).collect();
            assert_eq!(memory, ["memory_pressure", "memory_recovered"], "{}", entrant.name);
            assert!(
                Config::from_toml_str(&entrant.config.canonical_toml(), &entrant.name).is_ok(),
                "{} is a valid config",
                entrant.name
            );
        }
    }

    /// The example file users run `simulate` with is the entrant scored here.
    #[test]
    fn the_example_reduce_lr_on_plateau_file_is_the_entrant() {
        let text = include_str!("../../config/examples/reduce-lr-on-plateau.toml");
        let file = Config::from_toml_str(text, "reduce-lr-on-plateau.toml").unwrap();
        assert_eq!(file, reduce_lr_on_plateau(&Config::default()));
    }

    #[test]
    fn a_scorecard_run_is_deterministic() {
        let scenario = &suite()[2];
        let a = score(scenario, &Config::default(), 5).unwrap();
        assert_eq!(a, score(scenario, &Config::default(), 5).unwrap());
    }
}
