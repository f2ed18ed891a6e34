//! A run's summary, computed from the governance actors' output alone: what a person
//! wants to know after a simulation (reward start and end, each knob's
//! trajectory, rollbacks, rejections by reason, meta updates, the prior).
//!
//! It reads what the bus hands out after every tick (the ingress report and
//! the egress messages), never the journal, and is as deterministic as they
//! are.

use std::collections::BTreeMap;
use std::fmt;

use metagov_actors::messages::ShapeMismatch;
use metagov_actors::Output;
use metagov_bus::{Egress, IngressReport};
use serde::Serialize;

use crate::scenario::JobTraining;

/// One knob's path through the run: the mean over jobs at evenly spaced
/// points, and its extremes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KnobTrajectory {
    /// The configured initial value.
    pub initial: f64,
    /// Mean over jobs at each sample point (0 %, 25 %, 50 %, 75 %, 100 % of
    /// the packets).
    pub samples: Vec<f64>,
    /// Lowest value any job had.
    pub min: f64,
    /// Highest value any job had.
    pub max: f64,
    /// How many times any job's value changed.
    pub changes: u64,
}

/// Everything `metagov simulate` reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Telemetry packets taken in.
    pub packets: u64,
    /// Packets the validator admitted.
    pub accepted: u64,
    /// Rejected packets (and packs) by reason code.
    pub rejected: BTreeMap<String, u64>,
    /// Deliveries journaled.
    pub deliveries: u64,
    /// Mean over jobs of the first smoothed reward.
    pub reward_start: f64,
    /// Mean over jobs of the last smoothed reward.
    pub reward_end: f64,
    /// Knob trajectories by knob.
    pub knobs: BTreeMap<String, KnobTrajectory>,
    /// Knob rollbacks (all jobs), by reason.
    pub rollbacks: BTreeMap<String, u64>,
    /// Resource hints sent, and how many of them for memory pressure.
    pub resource_hints: u64,
    /// Resource hints sent for memory pressure.
    pub memory_hints: u64,
    /// Rules fired, by rule.
    pub rules_fired: BTreeMap<String, u64>,
    /// Prior updates (Reptile steps and rollbacks).
    pub meta_updates: u64,
    /// Prior rollbacks.
    pub prior_rollbacks: u64,
    /// Domains the aggregator dropped, with how often.
    pub domains_dropped: BTreeMap<String, u64>,
    /// The last prior, by knob.
    pub prior: BTreeMap<String, f64>,
    /// Cycle records journaled.
    pub cycles: u64,
    /// How each closed-loop (model) job trained, by job: the scorecard's
    /// numbers for this run.
    pub training: BTreeMap<String, TrainingScore>,
}

/// A closed-loop job's scorecard numbers (docs/BENCHMARKS.md, "Governance
/// scorecard").
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TrainingScore {
    /// The loss the scenario counts windows to.
    pub target_loss: f64,
    /// The job's first window whose reported loss was at most the target.
    pub windows_to_target: Option<u64>,
    /// The job's last reported loss.
    pub final_loss: f64,
    /// Times the loss passed 100 × its start and the job restarted.
    pub divergences: u64,
    /// Windows the job reported.
    pub windows: u64,
    /// Knob changes (a job's start values not counted).
    pub knob_changes: u64,
    /// Knob changes per 1,000 windows.
    pub knob_changes_per_1000: f64,
    /// Knob rollbacks.
    pub rollbacks: u64,
}

/// Builds a [`Summary`] from what each tick of a run of `packets` packets
/// hands out: the ingress report and the egress.
pub struct SummaryCollector {
    summary: Summary,
    initial: BTreeMap<String, f64>,
    /// Current knob values per job (jobs appear at their first reward).
    jobs: BTreeMap<String, BTreeMap<String, f64>>,
    first_reward: BTreeMap<String, f64>,
    last_reward: BTreeMap<String, f64>,
    sample_every: u64,
    next_sample: u64,
    /// Closed-loop jobs' scores, by job, from their first reward on.
    training: BTreeMap<String, TrainingScore>,
}

impl SummaryCollector {
    /// A collector for a run of `packets` packets whose knobs start at
    /// `initial`; `training` names the closed-loop jobs (with their target
    /// losses) whose scorecard numbers it keeps.
    pub fn new(initial: BTreeMap<String, f64>, packets: u64, training: &[JobTraining]) -> Self {
        let knobs = initial
            .iter()
            .map(|(k, &v)| (k.clone(), KnobTrajectory { initial: v, samples: Vec::new(), min: v, max: v, changes: 0 }))
            .collect();
        SummaryCollector {
            summary: Summary { knobs, ..Summary::default() },
            initial,
            jobs: BTreeMap::new(),
            first_reward: BTreeMap::new(),
            last_reward: BTreeMap::new(),
            sample_every: (packets / 4).max(1),
            next_sample: 0,
            training: training
                .iter()
                .map(|job| {
                    (job.job.clone(), TrainingScore { target_loss: job.target_loss, ..TrainingScore::default() })
                })
                .collect(),
        }
    }

    fn sample(&mut self) {
        for (name, trajectory) in &mut self.summary.knobs {
            let mean = if self.jobs.is_empty() {
                self.initial[name]
            } else {
                self.jobs.values().map(|knobs| knobs[name]).sum::<f64>() / self.jobs.len() as f64
            };
            trajectory.samples.push(mean);
        }
    }

    /// The finished summary; `training` is each closed-loop job's state at
    /// the end (its divergences).
    pub fn finish(mut self, training: &[JobTraining]) -> Summary {
        self.sample();
        for job in training {
            if let Some(score) = self.training.get_mut(&job.job) {
                score.divergences = job.divergences;
                #[allow(clippy::cast_precision_loss, reason = "counts far below 2^53")]
                let per_1000 = score.knob_changes as f64 * 1000.0 / score.windows.max(1) as f64;
                score.knob_changes_per_1000 = per_1000;
            }
        }
        self.summary.training = std::mem::take(&mut self.training);
        let mean =
            |m: &BTreeMap<String, f64>| if m.is_empty() { 0.0 } else { m.values().sum::<f64>() / m.len() as f64 };
        self.summary.reward_start = mean(&self.first_reward);
        self.summary.reward_end = mean(&self.last_reward);
        let rejected: u64 = self.summary.rejected.values().sum();
        // Every packet is either admitted or rejected by the validator.
        self.summary.accepted = self.summary.packets - rejected.min(self.summary.packets);
        self.summary
    }

    /// Takes one tick: its report and its egress, in emission order.
    pub fn observe(&mut self, report: &IngressReport, egress: &[Egress]) -> Result<(), ShapeMismatch> {
        self.summary.deliveries += report.deliveries;
        self.summary.cycles += report.cycles;
        self.summary.packets += 1;
        if self.summary.packets > self.next_sample {
            self.sample();
            self.next_sample += self.sample_every;
        }
        for message in egress {
            self.output(Output::from_egress(message)?);
        }
        Ok(())
    }

    fn output(&mut self, output: Output) {
        let s = &mut self.summary;
        match output {
            Output::Rejected(r) => *s.rejected.entry(r.reason).or_default() += 1,
            Output::Reward(r) => {
                if let Some(score) = self.training.get_mut(&r.job) {
                    score.windows += 1;
                    if let Some(loss) = r.loss {
                        score.final_loss = loss;
                        if loss <= score.target_loss && score.windows_to_target.is_none() {
                            score.windows_to_target = Some(r.window);
                        }
                    }
                }
                match self.last_reward.get_mut(&r.job) {
                    Some(last) => *last = r.ema_reward,
                    None => {
                        self.first_reward.insert(r.job.clone(), r.ema_reward);
                        self.last_reward.insert(r.job.clone(), r.ema_reward);
                        self.jobs.entry(r.job).or_insert_with(|| self.initial.clone());
                    }
                }
            }
            Output::PolicyUpdate(update) => {
                if let Some(score) = self.training.get_mut(&update.job).filter(|_| !update.start) {
                    score.knob_changes += update.knobs.len() as u64;
                    score.rollbacks += u64::from(update.rollback.is_some());
                }
                let knobs = self.jobs.entry(update.job).or_insert_with(|| self.initial.clone());
                for (name, x) in update.knobs {
                    let Some(t) = s.knobs.get_mut(&name) else { continue };
                    t.changes += u64::from(!update.start);
                    t.min = t.min.min(x);
                    t.max = t.max.max(x);
                    knobs.insert(name, x);
                }
                if let Some(reason) = update.rollback {
                    *s.rollbacks.entry(reason).or_default() += 1;
                }
                for rule in update.rules {
                    *s.rules_fired.entry(rule.rule).or_default() += 1;
                }
            }
            Output::ResourceHint(hint) => {
                s.resource_hints += 1;
                s.memory_hints += u64::from(hint.memory_high);
            }
            Output::Aggregate { dropped } => {
                for (domain, _reason) in dropped {
                    *s.domains_dropped.entry(domain).or_default() += 1;
                }
            }
            Output::PriorUpdated(prior) => {
                s.meta_updates += 1;
                s.prior_rollbacks += u64::from(prior.rolled_back);
                s.prior = prior.prior;
            }
            Output::MetaTelemetry(_) => {}
        }
    }
}

impl fmt::Display for Summary {
    /// The readable table `metagov simulate` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rejected: u64 = self.rejected.values().sum();
        writeln!(
            f,
            "packets      {} in, {} accepted, {} rejected; {} deliveries",
            self.packets, self.accepted, rejected, self.deliveries
        )?;
        for (reason, n) in &self.rejected {
            writeln!(f, "  rejected   {n:>8}  {reason}")?;
        }
        writeln!(
            f,
            "reward       {:+.4} at the start → {:+.4} at the end (smoothed, mean over jobs)",
            self.reward_start, self.reward_end
        )?;
        writeln!(
            f,
            "\nknob               initial       0%      25%      50%      75%     100%      min      max  changes"
        )?;
        for (name, t) in &self.knobs {
            write!(f, "{name:<16} {:>9}", significant(t.initial))?;
            for s in &t.samples {
                write!(f, " {:>8}", significant(*s))?;
            }
            writeln!(f, " {:>8} {:>8} {:>8}", significant(t.min), significant(t.max), t.changes)?;
        }
        writeln!(f)?;
        for (rule, n) in &self.rules_fired {
            writeln!(f, "rule fired   {n:>8}  {rule}")?;
        }
        let rollbacks: u64 = self.rollbacks.values().sum();
        writeln!(
            f,
            "rollbacks    {rollbacks} (knobs){}",
            if rollbacks > 0 { format!(": {:?}", self.rollbacks) } else { String::new() }
        )?;
        writeln!(f, "hints        {} resource hints, {} for memory pressure", self.resource_hints, self.memory_hints)?;
        writeln!(
            f,
            "meta         {} prior updates, {} prior rollbacks, {} cycle records",
            self.meta_updates, self.prior_rollbacks, self.cycles
        )?;
        for (domain, n) in &self.domains_dropped {
            writeln!(f, "  dropped    {n:>8}  domain {domain} (by the aggregator)")?;
        }
        let prior: Vec<String> = self.prior.iter().map(|(k, v)| format!("{k} = {}", significant(*v))).collect();
        writeln!(f, "prior        {}", if prior.is_empty() { "(none yet)".to_string() } else { prior.join(", ") })?;
        if !self.training.is_empty() {
            writeln!(
                f,
                "\ntraining (closed loop)  target loss  windows to target  final loss  divergences  changes/1000w  rollbacks"
            )?;
            for (job, t) in &self.training {
                let reached = t.windows_to_target.map_or_else(|| "not reached".to_string(), |w| w.to_string());
                writeln!(
                    f,
                    "{job:<23} {:>11} {reached:>18} {:>11} {:>12} {:>14.1} {:>10}",
                    significant(t.target_loss),
                    significant(t.final_loss),
                    t.divergences,
                    t.knob_changes_per_1000,
                    t.rollbacks
                )?;
            }
        }
        Ok(())
    }
}

/// `x` in at most 8 characters with its significant digits: 4 decimals
/// from 0.001 to below 10,000 (and for 0), else 4 significant digits in
/// scientific notation, so a learning rate of 3e-5 reads `3.000e-5`, not
/// `0.0000`.
fn significant(x: f64) -> String {
    if x == 0.0 || (1e-3..1e4).contains(&x.abs()) {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}
