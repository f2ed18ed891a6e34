//! Why a knob changed, and why not: each knob change of a run in words,
//! from what the chronicle records (the `policy.update`s with the rules
//! that fired, the jobs' reported `params`) and the run's own config (each
//! rule's comparison, patience and cooldown); and what the layer weighed in
//! any one window (its `decision.evidence`: the safety check, every rule's
//! value, streak and cooldown, every moved knob's step, bound and cooldown).
//!
//! It reads decisions; it makes none. It knows only what was recorded:
//! chronicles written before evidence was recorded can say what changed,
//! not what held a rule back.

use std::collections::BTreeMap;
use std::fmt;

use metagov_config::{Comparison, Config, RuleConfig, SafetyConfig, Threshold};
use metagov_governance::{RuleEvidence, SafetyHold};

use metagov_bus::{Egress, Envelope, Value};

use crate::messages::{rollback_code, EvidenceRecord, POLICY_UPDATE, TELEMETRY_ACCEPTED};
use crate::output::{FiredRuleView, Output, PolicyUpdateView};

/// What moved a knob.
#[derive(Clone, Debug, PartialEq)]
pub enum Cause {
    /// The job's first window: its governed start value (the initial value,
    /// or the learned prior) differed from what it reported.
    Start,
    /// A rollback to the last known-good knobs, with its reason code.
    Rollback(String),
    /// The rules that fired in that window.
    Rules(Vec<FiredRuleView>),
}

/// One knob change of one job.
#[derive(Clone, Debug, PartialEq)]
pub struct KnobChange {
    /// The job.
    pub job: String,
    /// The window whose packet caused it.
    pub window: u64,
    /// The tick of that packet.
    pub tick: u64,
    /// The knob.
    pub knob: String,
    /// The value before: what the job last reported for the knob (its
    /// `params`), else the last value it was told, else the knob's initial
    /// value.
    pub from: f64,
    /// The new value.
    pub to: f64,
    /// Why.
    pub cause: Cause,
    /// The rules of the run's config that fired, for their wording.
    rules: Vec<Option<RuleConfig>>,
}

/// Follows a run's decisions and names each knob change: feed it every
/// job's reported params ([`Explainer::reported`]) and every
/// `policy.update` ([`Explainer::update`]) in chronicle order.
#[derive(Clone, Debug)]
pub struct Explainer {
    rules: BTreeMap<String, RuleConfig>,
    initial: BTreeMap<String, f64>,
    /// Each job's knob values as last reported or told, by job and knob.
    known: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Explainer {
    /// An explainer for a run recorded under `config`.
    #[must_use]
    pub fn new(config: &Config) -> Self {
        Explainer {
            rules: config.rules.iter().map(|rule| (rule.name.clone(), rule.clone())).collect(),
            initial: config.initial_knobs(),
            known: BTreeMap::new(),
        }
    }

    /// The job reported these knob values (an admitted packet's `params`).
    pub fn reported(&mut self, job: &str, params: impl IntoIterator<Item = (String, f64)>) {
        self.known.entry(job.to_owned()).or_default().extend(params);
    }

    /// Takes one recorded delivery, in chronicle order: an admitted packet's
    /// `params` are what its job reported ([`Explainer::reported`]), and a
    /// `policy.update` gives its knob changes ([`Explainer::update`]).
    /// Every other delivery changes nothing and gives none.
    pub fn observe(&mut self, delivery: &Envelope) -> Vec<KnobChange> {
        if *delivery.topic == *TELEMETRY_ACCEPTED {
            if let (Some(job), Some(Value::Record(params))) =
                (delivery.payload.get("job").and_then(Value::as_str), delivery.payload.get("params"))
            {
                self.reported(job, params.iter().filter_map(|(k, v)| Some((k.to_string(), v.as_f64()?))));
            }
        } else if *delivery.topic == *POLICY_UPDATE {
            if let Ok(Output::PolicyUpdate(update)) = Output::from_egress(&Egress::of_delivery(delivery)) {
                return self.update(delivery.tick, &update);
            }
        }
        Vec::new()
    }

    /// A `policy.update` recorded at `tick`: its knob changes, by knob name.
    pub fn update(&mut self, tick: u64, update: &PolicyUpdateView) -> Vec<KnobChange> {
        let cause = if update.start {
            Cause::Start
        } else if let Some(reason) = &update.rollback {
            Cause::Rollback(reason.clone())
        } else {
            Cause::Rules(update.rules.clone())
        };
        let rules: Vec<Option<RuleConfig>> = match &cause {
            Cause::Rules(fired) => fired.iter().map(|f| self.rules.get(&f.rule).cloned()).collect(),
            _ => Vec::new(),
        };
        let known = self.known.entry(update.job.clone()).or_default();
        update
            .knobs
            .iter()
            .map(|(knob, &to)| {
                let from = known.get(knob).or_else(|| self.initial.get(knob)).copied().unwrap_or(f64::NAN);
                known.insert(knob.clone(), to);
                KnobChange {
                    job: update.job.clone(),
                    window: update.window,
                    tick,
                    knob: knob.clone(),
                    from,
                    to,
                    cause: cause.clone(),
                    rules: rules.clone(),
                }
            })
            .collect()
    }
}

fn symbol(comparison: Comparison) -> &'static str {
    match comparison {
        Comparison::Lt => "<",
        Comparison::Le => "≤",
        Comparison::Gt => ">",
        Comparison::Ge => "≥",
    }
}

/// `x` with at most 6 significant digits and no trailing zeros.
fn short(x: f64) -> String {
    let text = format!("{x:.6}");
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    if trimmed.is_empty() || trimmed == "-" || (x != 0.0 && x.abs() < 1e-3) {
        format!("{x:e}")
    } else {
        trimmed.to_owned()
    }
}

impl fmt::Display for KnobChange {
    /// `window 1042: learning_rate 0.1 → 0.05 (rule plateau: loss_improvement
    /// -0.0036 < 0.0001 for 20 windows; × 0.5; cooldown 20)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "window {}: {} {} → {} (", self.window, self.knob, short(self.from), short(self.to))?;
        match &self.cause {
            Cause::Start => write!(f, "start: the job's governed start value")?,
            Cause::Rollback(reason) => write!(f, "rollback {reason}: back to the last known-good knobs")?,
            Cause::Rules(fired) => {
                for (i, (fired, rule)) in fired.iter().zip(&self.rules).enumerate() {
                    if i > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "rule {}: ", fired.rule)?;
                    match rule {
                        Some(rule) => {
                            write!(
                                f,
                                "{} {} {} {} for {} window{}",
                                rule.signal.name(),
                                short(fired.value),
                                symbol(rule.comparison),
                                short(fired.threshold),
                                rule.for_windows,
                                if rule.for_windows == 1 { "" } else { "s" }
                            )?;
                            if let Some(factor) = rule.scale.get(&self.knob) {
                                write!(f, "; × {}", short(*factor))?;
                            }
                            if let Some(delta) = rule.adjust.get(&self.knob) {
                                write!(f, "; {:+}", delta)?;
                            }
                            write!(f, "; cooldown {}", rule.cooldown_windows)?;
                        }
                        None => write!(f, "value {} against {}", short(fired.value), short(fired.threshold))?,
                    }
                }
            }
        }
        write!(f, ")")
    }
}

/// One window's decision for one job: the knobs it set and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The tick of the packet that caused it.
    pub tick: u64,
    /// The knobs set, by name.
    pub knobs: BTreeMap<String, f64>,
    /// The rules that fired, or the rollback or start that set them.
    pub why: Vec<String>,
}

/// A run's decisions by (job, window), read from its `policy.update`s.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decisions {
    /// The decisions.
    pub by_window: BTreeMap<(String, u64), Decision>,
    /// Windows the run saw, by job (its `meta.reward`s: one per admitted packet).
    pub windows: BTreeMap<String, Vec<(u64, u64)>>,
}

impl Decisions {
    /// Takes a `policy.update` recorded at `tick`.
    pub fn update(&mut self, tick: u64, update: &PolicyUpdateView) {
        let why = if update.start {
            vec!["start".to_owned()]
        } else if let Some(reason) = &update.rollback {
            vec![format!("rollback {reason}")]
        } else {
            update.rules.iter().map(|r| r.rule.clone()).collect()
        };
        self.by_window.insert((update.job.clone(), update.window), Decision { tick, knobs: update.knobs.clone(), why });
    }

    /// Takes an admitted window of `job` at `tick`.
    pub fn window(&mut self, job: &str, window: u64, tick: u64) {
        self.windows.entry(job.to_owned()).or_default().push((tick, window));
    }
}

/// Where two runs of the same telemetry decide differently.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionDiff {
    /// (job, window, recorded, counterfactual) for every window whose
    /// decisions differ, in tick order of the first run.
    pub lines: Vec<(String, u64, Option<Decision>, Option<Decision>)>,
    /// The tick of the first difference: up to it the comparison is exact;
    /// after it the second run's telemetry did not react to its own
    /// decisions (open loop).
    pub first_tick: Option<u64>,
    /// Windows (over every job) at or before the first difference.
    pub exact_windows: u64,
    /// Windows in all.
    pub windows: u64,
}

/// Compares the decisions of two runs of the same ingress.
#[must_use]
pub fn diff(a: &Decisions, b: &Decisions) -> DecisionDiff {
    let keys: std::collections::BTreeSet<&(String, u64)> = a.by_window.keys().chain(b.by_window.keys()).collect();
    let mut lines: Vec<(String, u64, Option<Decision>, Option<Decision>)> = keys
        .into_iter()
        .filter_map(|key| {
            let (x, y) = (a.by_window.get(key), b.by_window.get(key));
            let same = match (x, y) {
                (Some(x), Some(y)) => x.knobs == y.knobs,
                (None, None) => true,
                _ => false,
            };
            (!same).then(|| (key.0.clone(), key.1, x.cloned(), y.cloned()))
        })
        .collect();
    let tick = |line: &(String, u64, Option<Decision>, Option<Decision>)| {
        line.2.as_ref().or(line.3.as_ref()).map_or(u64::MAX, |d| d.tick)
    };
    lines.sort_by_key(|line| (tick(line), line.0.clone()));
    let first_tick = lines.first().map(tick);
    let all = a.windows.values().flatten();
    let windows = all.clone().count() as u64;
    let exact_windows = all.filter(|(t, _)| first_tick.is_none_or(|first| *t <= first)).count() as u64;
    DecisionDiff { lines, first_tick, exact_windows, windows }
}

/// What the layer weighed in one window of one job, one line each: the
/// safety check, then every rule in config order, then every knob a fired
/// rule moved — the answer to "why did nothing change?" as much as to "why
/// did this change?". Rules and knobs the run's config no longer names are
/// said with the recorded values alone.
#[must_use]
pub fn weighed(record: &EvidenceRecord, config: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    let evidence = &record.evidence;
    if let Some(safety) = &evidence.safety {
        lines.push(safety_line(record, safety, &config.safety));
    }
    if evidence.rules.is_empty() {
        lines.push("rules: none ran (a rollback window runs no rule)".to_owned());
    }
    for rule in &evidence.rules {
        let configured = config.rules.iter().find(|r| r.name == rule.rule);
        lines.push(rule_line(rule, configured));
    }
    for knob in &evidence.knobs {
        let bounds = config.knobs.get(&knob.knob);
        let moved = format!("{} → {}", short(knob.old), short(knob.new));
        let line = if knob.cooldown_left > 0 {
            format!(
                "knob {}: a rule moved it, blocked by its cooldown ({} window{} left, this one included)",
                knob.knob,
                knob.cooldown_left,
                plural(knob.cooldown_left)
            )
        } else if knob.new == knob.old {
            let at = bounds.map_or(String::new(), |b| format!(" (bounds [{}, {}])", short(b.min), short(b.max)));
            format!(
                "knob {}: stays {}: the rules' change is undone by its bound or kind{at}",
                knob.knob,
                short(knob.old)
            )
        } else {
            let mut how = Vec::new();
            if knob.step_limited {
                let step = bounds.and_then(|b| b.step).map_or(String::new(), |s| format!(" {}", short(s)));
                how.push(format!("cut to its step{step}"));
            }
            if knob.fitted {
                how.push("fitted to its bounds or kind".to_owned());
            }
            let how = if how.is_empty() { String::new() } else { format!(" ({})", how.join(", ")) };
            format!("knob {}: {moved}{how}", knob.knob)
        };
        lines.push(line);
    }
    lines
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn safety_line(record: &EvidenceRecord, safety: &metagov_governance::SafetyEvidence, config: &SafetyConfig) -> String {
    let best = if safety.best_ema_reward.is_finite() { short(safety.best_ema_reward) } else { "none yet".to_owned() };
    let state =
        format!("smoothed reward {} (best {best}, floor {})", short(record.ema_reward), short(config.reward_floor));
    let Some(condition) = safety.condition else {
        return format!("safety: no rollback called for: {state}, drop within max_drop {}", short(config.max_drop));
    };
    let code = rollback_code(condition);
    match safety.hold {
        None => format!("safety: rolled back ({code}): {state}"),
        Some(SafetyHold::Cooldown(left)) => format!(
            "safety: {code} held, but the rollback cooldown runs ({left} window{} left, this one included): {state}",
            plural(left)
        ),
        Some(SafetyHold::IncidentOpen) => format!(
            "safety: {code} held, but the last rollback's incident is open until the smoothed reward is back to {}: {state}",
            safety.incident_recovery.map_or_else(|| "?".to_owned(), short)
        ),
        Some(SafetyHold::AtSnapshot) => {
            format!("safety: {code} held, but the knobs already are the known-good snapshot: {state}")
        }
    }
}

fn rule_line(rule: &RuleEvidence, configured: Option<&RuleConfig>) -> String {
    let Some(config) = configured else {
        let value = rule.value.map_or_else(|| "none".to_owned(), short);
        return format!(
            "rule {} (not in this config): value {value} against {}, streak {}, fired {}",
            rule.rule,
            short(rule.threshold),
            rule.streak,
            rule.fired
        );
    };
    let signal = if config.significant {
        format!("recent mean of {}", config.signal.name())
    } else {
        config.signal.name().to_owned()
    };
    let from_knob = match &config.threshold {
        Threshold::Knob(knob) => format!(" (knob {knob})"),
        Threshold::Value(_) => String::new(),
    };
    let test = format!("{signal} {} {}{from_knob}", symbol(config.comparison), short(rule.threshold));
    let Some(value) = rule.value else {
        return format!("rule {}: {test}: no value this window (the packet lacks it, or too few windows)", rule.rule);
    };
    let seen = format!("{signal} {}", short(value));
    let needed = u64::from(config.for_windows);
    let patience = if rule.streak >= config.for_windows {
        format!("held {} window{} (needs {needed})", rule.streak, plural(u64::from(rule.streak)))
    } else {
        format!("held {} of {needed} window{}", rule.streak, plural(needed))
    };
    if rule.fired {
        return format!("rule {}: fired: {seen} ({test}), {patience}", rule.rule);
    }
    if !rule.held {
        let why = if config.significant { ", not clear of it under the confidence band" } else { "" };
        return format!("rule {}: {seen} does not meet {test}{why}", rule.rule);
    }
    if rule.cooldown_left > 0 {
        return format!(
            "rule {}: {seen} meets {test}, {patience}, but it is cooling down ({} window{} left, this one included)",
            rule.rule,
            rule.cooldown_left,
            plural(rule.cooldown_left)
        );
    }
    format!("rule {}: {seen} meets {test}, {patience}: not yet", rule.rule)
}
