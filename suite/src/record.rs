//! What a run recorded, as the expectations read it, and their verdicts.
//!
//! Decisions (`policy.update`), resource hints, rejections and the jobs
//! that reported (`meta.reward`) are taken from the egress of the replay of
//! the run's chronicle: the replay re-injects the recorded telemetry and
//! checks every delivery against the recorded one, so once it has matched
//! to the end of the sealed recording, its egress is exactly what the run
//! published. The closed-loop jobs' training numbers come from the run's
//! summary (computed from the run's egress). Nothing here decides anything
//! about governance: an expectation only counts and compares what the
//! actors published.

use std::collections::{BTreeMap, BTreeSet};

use metagov_actors::messages::ShapeMismatch;
use metagov_actors::{Output, PolicyUpdateView, RejectionView, ResourceHintView};
use metagov_bus::Egress;
use metagov_sim::summary::TrainingScore;
use serde::Serialize;

use crate::expect::{Check, Counted, Expectation, HintKind};

/// The recorded outcome of one run.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// Every `policy.update`, in the order published.
    pub updates: Vec<PolicyUpdateView>,
    /// Every `resource.hint`, in the order published.
    pub hints: Vec<ResourceHintView>,
    /// Every `telemetry.rejected`, in the order published.
    pub rejections: Vec<RejectionView>,
    /// The jobs with an admitted window (a `meta.reward`), in the order of
    /// their first: a job whose reported knobs were its governed start
    /// values has no decision until a rule moves them.
    pub jobs: Vec<String>,
    /// The same jobs, to look up.
    seen: BTreeSet<String>,
    /// The knobs' initial values under the run's config.
    pub initial: BTreeMap<String, f64>,
    /// The closed-loop jobs' training numbers, by job.
    pub training: BTreeMap<String, TrainingScore>,
}

impl Record {
    /// An empty record of a run whose knobs start at `initial`, its model
    /// jobs' training numbers `training` (from the run's summary).
    pub fn new(initial: BTreeMap<String, f64>, training: BTreeMap<String, TrainingScore>) -> Record {
        Record { initial, training, ..Record::default() }
    }

    /// Takes one tick's egress (the replay's, which matched the recording):
    /// its decisions, hints, rejections and the job of each reward.
    ///
    /// # Errors
    ///
    /// If a payload does not have its topic's shape.
    pub fn observe(&mut self, egress: &[Egress]) -> Result<(), ShapeMismatch> {
        for message in egress {
            match Output::from_egress(message)? {
                Output::Reward(reward) if self.seen.insert(reward.job.clone()) => self.jobs.push(reward.job),
                Output::PolicyUpdate(update) => self.updates.push(update),
                Output::ResourceHint(hint) => self.hints.push(hint),
                Output::Rejected(rejection) => self.rejections.push(rejection),
                _ => {}
            }
        }
        Ok(())
    }

    /// The counted events of `what`, as (job, window) in the order published
    /// (a rejection has no window).
    fn events(&self, what: &Counted) -> Vec<(Option<&str>, Option<u64>)> {
        fn update(u: &PolicyUpdateView) -> (Option<&str>, Option<u64>) {
            (Some(u.job.as_str()), Some(u.window))
        }
        match what {
            Counted::RuleFires(rule) => {
                self.updates.iter().filter(|u| u.rules.iter().any(|r| r.rule == *rule)).map(update).collect()
            }
            Counted::KnobChanges(knob) => {
                self.updates.iter().filter(|u| !u.start && u.knobs.contains_key(knob)).map(update).collect()
            }
            Counted::Rollbacks(reason) => self
                .updates
                .iter()
                .filter(|u| u.rollback.as_ref().is_some_and(|r| reason.as_ref().is_none_or(|want| want == r)))
                .map(update)
                .collect(),
            Counted::Hints(kind) => self
                .hints
                .iter()
                .filter(|h| match kind {
                    HintKind::Any => true,
                    HintKind::Memory => h.memory_high,
                    HintKind::Latency => h.latency_high,
                })
                .map(|h| (Some(h.job.as_str()), Some(h.window)))
                .collect(),
            Counted::Rejections(reason) => self
                .rejections
                .iter()
                .filter(|r| reason.as_ref().is_none_or(|want| *want == r.reason))
                .map(|r| (r.job.as_deref(), None))
                .collect(),
        }
    }

    /// A knob's values for `job`: its initial value (window 0), then each
    /// value a decision set, with the window that caused it.
    fn knob_values(&self, job: &str, knob: &str) -> Vec<(u64, f64)> {
        let initial = self.initial.get(knob).map(|&x| (0, x));
        let set = self.updates.iter().filter(|u| u.job == job).filter_map(|u| Some((u.window, *u.knobs.get(knob)?)));
        initial.into_iter().chain(set).collect()
    }
}

/// An expectation that did not hold on a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failure {
    /// The sentence.
    pub expectation: String,
    /// What it asked for.
    pub expected: String,
    /// What the run did.
    pub actual: String,
    /// The job where it broke, when one job broke it.
    pub job: Option<String>,
    /// The first window where it broke, when that makes sense.
    pub first_window: Option<u64>,
}

impl Failure {
    /// `expected …, actual …`, then the job and first window where it
    /// broke when there is one.
    pub fn detail(&self) -> String {
        let at = match (&self.job, self.first_window) {
            (Some(job), Some(w)) => format!("; first broken on job {job} at window {w}"),
            (None, Some(w)) => format!("; first broken at window {w}"),
            _ => String::new(),
        };
        format!("expected {}, actual {}{at}", self.expected, self.actual)
    }
}

/// Most windows an actual count lists.
const WINDOWS_SHOWN_MAX: usize = 5;

/// Checks `expectation` against `record`: `None` when it holds.
pub fn evaluate(expectation: &Expectation, record: &Record) -> Option<Failure> {
    let job_ok = |job: &str| expectation.job.as_deref().is_none_or(|want| want == job);
    let fail = |expected: String, actual: String, job: Option<&str>, first_window: Option<u64>| {
        Some(Failure {
            expectation: expectation.text.clone(),
            expected,
            actual,
            job: job.map(str::to_owned),
            first_window,
        })
    };
    let model_jobs = || record.training.iter().filter(|(job, _)| job_ok(job));
    match &expectation.check {
        Check::Count { what, bound } => {
            let events: Vec<_> = record
                .events(what)
                .into_iter()
                .filter(|(job, window)| {
                    (expectation.job.is_none() || job.is_some_and(job_ok))
                        && window.is_none_or(|w| expectation.windows.contains(w))
                })
                .collect();
            let count = events.len() as u64;
            if bound.holds(count) {
                return None;
            }
            let windows: Vec<String> = events
                .iter()
                .take(WINDOWS_SHOWN_MAX)
                .filter_map(|&(job, window)| Some(format!("{} window {}", job?, window?)))
                .collect();
            let more = if events.len() > WINDOWS_SHOWN_MAX { ", …" } else { "" };
            let actual =
                if windows.is_empty() { count.to_string() } else { format!("{count} ({}{more})", windows.join(", ")) };
            // The event that broke an upper bound for good.
            let breaker = bound.breaks_after().and_then(|n| usize::try_from(n).ok()).and_then(|n| events.get(n));
            let (job, window) = breaker.map_or((None, None), |&(job, window)| (job, window));
            fail(bound.to_string(), actual, job, window)
        }
        Check::KnobWithin { knob, min, max } => {
            for job in record.jobs.iter().map(String::as_str).filter(|job| job_ok(job)) {
                let values = record.knob_values(job, knob);
                let outside = values.iter().find(|&&(window, x)| {
                    let seen = if window == 0 {
                        expectation.windows.after.is_none()
                    } else {
                        expectation.windows.contains(window)
                    };
                    seen && !(*min..=*max).contains(&x)
                });
                if let Some(&(window, x)) = outside {
                    let when = if window == 0 { "at the start".to_owned() } else { format!("after window {window}") };
                    return fail(
                        format!("within [{min}, {max}]"),
                        format!("{x} on job {job} {when}"),
                        Some(job),
                        Some(window),
                    );
                }
            }
            None
        }
        Check::KnobAt { knob, window, min, max } => {
            let outside: Vec<(&str, f64)> = record
                .jobs
                .iter()
                .map(String::as_str)
                .filter(|job| job_ok(job))
                .filter_map(|job| {
                    let values = record.knob_values(job, knob);
                    let x = values.iter().take_while(|(w, _)| w <= window).last().map(|&(_, x)| x)?;
                    (!(*min..=*max).contains(&x)).then_some((job, x))
                })
                .collect();
            let (&(job, _), rest) = outside.split_first()?;
            let actual: Vec<String> = outside.iter().map(|(job, x)| format!("{x} on job {job}")).collect();
            let job = if rest.is_empty() { Some(job) } else { None };
            fail(format!("within [{min}, {max}] at window {window}"), actual.join(", "), job, None)
        }
        Check::FinalLossBelow { max } => {
            let above: Vec<(&String, f64)> =
                model_jobs().filter(|(_, t)| t.final_loss >= *max).map(|(job, t)| (job, t.final_loss)).collect();
            let (&(job, _), rest) = above.split_first()?;
            let actual: Vec<String> = above.iter().map(|(job, x)| format!("{x} on job {job}")).collect();
            fail(format!("below {max}"), actual.join(", "), rest.is_empty().then_some(job.as_str()), None)
        }
        Check::ReachesTarget { by } => {
            let missed: Vec<(&String, &TrainingScore)> =
                model_jobs().filter(|(_, t)| t.windows_to_target.is_none_or(|w| by.is_some_and(|by| w > by))).collect();
            let (&(job, _), rest) = missed.split_first()?;
            let actual: Vec<String> = missed
                .iter()
                .map(|(job, t)| match t.windows_to_target {
                    Some(w) => format!("job {job} reached {} at window {w}", t.target_loss),
                    None => format!("job {job} never reached {} (final loss {})", t.target_loss, t.final_loss),
                })
                .collect();
            let expected = by.map_or_else(
                || "the target loss reached".to_owned(),
                |by| format!("the target loss reached by window {by}"),
            );
            fail(expected, actual.join(", "), rest.is_empty().then_some(job.as_str()), None)
        }
        Check::NoDivergence => {
            let diverged: Vec<(&String, u64)> =
                model_jobs().filter(|(_, t)| t.divergences > 0).map(|(job, t)| (job, t.divergences)).collect();
            let (&(job, _), rest) = diverged.split_first()?;
            let actual: Vec<String> = diverged.iter().map(|(job, n)| format!("{n} on job {job}")).collect();
            fail("no divergence".into(), actual.join(", "), rest.is_empty().then_some(job.as_str()), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expect::parse;

    /// A job that never got a decision still has its knobs: the initial
    /// values hold for it, and are judged.
    #[test]
    fn a_job_without_decisions_is_judged_on_its_initial_knobs() {
        let mut record = Record::new(BTreeMap::from([("learning_rate".to_owned(), 0.1)]), BTreeMap::new());
        record.jobs.push("quiet".into());
        let failure = evaluate(&parse("knob learning_rate stays within [0.2, 0.3]").unwrap(), &record).unwrap();
        assert_eq!(failure.actual, "0.1 on job quiet at the start");
        let failure =
            evaluate(&parse("knob learning_rate at window 50 is within [0.2, 0.3]").unwrap(), &record).unwrap();
        assert_eq!(failure.actual, "0.1 on job quiet");
        assert!(evaluate(&parse("knob learning_rate stays within [0.1, 0.3]").unwrap(), &record).is_none());
    }
}
