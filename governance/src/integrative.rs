//! The integrative layer (`MetaIntegrativeLayer`; docs/governance.md): per job, score
//! each window, smooth the reward, run the safety checks and the rules, and
//! answer with knob changes and a resource hint.

use std::collections::{BTreeMap, VecDeque};

use metagov_config::{Comparison, IntegrativeMetaConfig, Signal, Threshold};

use crate::stats::Welford;
use crate::TelemetryPacket;

/// The weighted terms of one window's reward and their sum. The reward lies
/// in `[−(gain_weight + stability_weight + vram_weight + latency_weight),
/// gain_weight + stability_weight]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scoring {
    /// `gain_weight · clamp((gain_p50 − g_min)/gain_scale, −1, 1)`
    pub gain: f64,
    /// `stability_weight · (2·stability_mean − 1)`
    pub stability: f64,
    /// `−vram_weight · clamp((vram_high − vram_target)/(1 − vram_target), 0, 1)`:
    /// only memory use above the target costs, in proportion.
    pub vram: f64,
    /// `−latency_weight · clamp((latency_ms − target)/target, 0, 1)`, 0 if
    /// latency is not reported.
    pub latency: f64,
    /// The reward: the sum of the four terms.
    pub total: f64,
}

/// Scores one packet, with `g_min` the job's minimum useful gain.
///
/// Reference: docs/governance.md, "Reward".
///
/// # Panics
///
/// If the packet lacks `gain_p50` or `stability_mean`: it was not admitted
/// by the validator.
#[must_use]
pub fn score(packet: &TelemetryPacket, layer: &IntegrativeMetaConfig, g_min: f64) -> Scoring {
    let config = &layer.reward;
    let gain = config.gain_weight * ((packet.required("gain_p50") - g_min) / config.gain_scale).clamp(-1.0, 1.0);
    let stability = config.stability_weight * (2.0 * packet.required("stability_mean") - 1.0);
    let target = layer.safety.vram_target;
    let excess = if target < 1.0 { ((packet.vram_fraction() - target) / (1.0 - target)).clamp(0.0, 1.0) } else { 0.0 };
    let vram = -config.vram_weight * excess;
    let target = config.latency_target_ms;
    let over = packet.metric("latency_ms").map_or(0.0, |latency| ((latency - target) / target).clamp(0.0, 1.0));
    let latency = -config.latency_weight * over;
    Scoring { gain, stability, vram, latency, total: gain + stability + vram + latency }
}

/// How the job should scale its resources: a factor on its batch size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResourceHint {
    /// Factor on the batch size, in `[batch_scale_min, 1]`; 1 means keep.
    pub batch_scale: f64,
    /// The job reported memory use above `safety.vram_high_max`.
    pub memory_high: bool,
    /// The job reported latency above `latency_target_ms`.
    pub latency_high: bool,
}

/// Why the knobs were rolled back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackReason {
    /// `ema_reward` fell below `safety.reward_floor`.
    BelowFloor,
    /// `ema_reward` fell more than `safety.max_drop` (and the confidence
    /// half-width) below its best.
    DropFromBest,
}

/// A rule that fired, with the values it saw.
#[derive(Clone, Debug, PartialEq)]
pub struct FiredRule {
    /// The rule's name.
    pub rule: String,
    /// The signal it watches.
    pub signal: Signal,
    /// The signal's value in this window.
    pub value: f64,
    /// The threshold it was compared with (a knob's value, if named so).
    pub threshold: f64,
}

/// Why the safety check did not roll back although its condition held, or
/// did not look at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SafetyHold {
    /// A rollback's incident is still open: the smoothed reward has not yet
    /// recovered to the level that ends it.
    IncidentOpen,
    /// The rollback cooldown runs, for this many more windows.
    Cooldown(u64),
    /// The knobs already are the known-good snapshot: nothing to restore.
    AtSnapshot,
}

/// What the safety check saw in one window.
#[derive(Clone, Debug, PartialEq)]
pub struct SafetyEvidence {
    /// Best smoothed reward, after this window's decay, before the check.
    pub best_ema_reward: f64,
    /// The rollback the smoothed reward called for, held back or not.
    pub condition: Option<RollbackReason>,
    /// Why no rollback was made, when one was called for or could not be.
    pub hold: Option<SafetyHold>,
    /// The smoothed reward at which an open incident ends.
    pub incident_recovery: Option<f64>,
}

/// What one rule saw in one window (every rule, every window, unless the
/// window rolled back, in which no rule runs).
#[derive(Clone, Debug, PartialEq)]
pub struct RuleEvidence {
    /// The rule's name.
    pub rule: String,
    /// The value compared: the signal's (its recent mean for a
    /// `significant` rule); none when the window lacks it.
    pub value: Option<f64>,
    /// The threshold this window (a knob's current value, if named so).
    pub threshold: f64,
    /// The condition held (for a `significant` rule: beyond its band).
    pub held: bool,
    /// Consecutive windows it has held, this one included (the count the
    /// rule fired at, when it fired).
    pub streak: u32,
    /// Windows the rule stays silent, this one included, because it fired
    /// within its cooldown (0: it was free to fire).
    pub cooldown_left: u64,
    /// The rule fired.
    pub fired: bool,
}

/// What became of one knob a fired rule moved.
#[derive(Clone, Debug, PartialEq)]
pub struct KnobEvidence {
    /// The knob.
    pub knob: String,
    /// Its value before. The fired rules (and their `scale` and `adjust`
    /// in the config) say what they asked of it: `old × factors + changes`.
    pub old: f64,
    /// Its value after (`old` when blocked).
    pub new: f64,
    /// The change was cut to the knob's `step`.
    pub step_limited: bool,
    /// The bounds or the knob's kind (integer, power of two) changed the
    /// value: at a bound, or rounded.
    pub fitted: bool,
    /// Windows the knob stays still, this one included, because it moved
    /// within its cooldown: when non-zero the change was blocked.
    pub cooldown_left: u64,
}

/// Everything the layer weighed in one window: recorded for every window,
/// so a window in which nothing changed can say why not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    /// The safety check. It runs in every window, so `update` always sets
    /// it; `None` only in a default-made value.
    pub safety: Option<SafetyEvidence>,
    /// Every rule, in config order (empty in a rollback window).
    pub rules: Vec<RuleEvidence>,
    /// Every knob a fired rule moved or would have moved, by name.
    pub knobs: Vec<KnobEvidence>,
}

/// The answer to one window of one job.
#[derive(Clone, Debug, PartialEq)]
pub struct IntegrativeDecision {
    /// The job.
    pub job: String,
    /// The packet's window.
    pub window: u64,
    /// New values of the knobs that changed, by name.
    pub policy_updates: BTreeMap<String, f64>,
    /// New values of the job's own meta parameters a meta rule moved, by
    /// name (`tau`, `g_min`, `lambda_ci`).
    pub meta_updates: BTreeMap<String, f64>,
    /// How the job should scale its resources.
    pub resource_hint: ResourceHint,
    /// The reward and its terms.
    pub scoring: Scoring,
    /// The smoothed reward after this window.
    pub ema_reward: f64,
    /// Change of `ema_reward` in this window (none in the job's first).
    pub reward_delta: Option<f64>,
    /// Confidence half-width, scaled by `lambda_ci` (none before 2 rewards).
    pub ci_half_width: Option<f64>,
    /// Rules that fired, in config order (none in a rollback window).
    pub fired_rules: Vec<FiredRule>,
    /// What the layer weighed: safety, every rule, every knob moved.
    pub evidence: Evidence,
    /// Set when the knobs were rolled back to the last known-good snapshot.
    pub rollback: Option<RollbackReason>,
    /// The job's first window reported knob values (as `params`) other than
    /// the ones it starts from under governance (the initial values, or the
    /// learned prior): `policy_updates` tells it the governed ones.
    pub start: bool,
}

/// The layer's state for one job (`MetaState`; docs/governance.md).
#[derive(Clone, Debug, PartialEq)]
pub struct MetaState {
    /// Current knob values, by name.
    pub knobs: BTreeMap<String, f64>,
    /// The job's own `tau`, `g_min` and `lambda_ci`: the config's `[meta]`
    /// values until a meta rule moves them.
    pub meta: BTreeMap<String, f64>,
    /// Knob values at the window `ema_reward` last reached its best: what a
    /// rollback restores.
    pub good_knobs: BTreeMap<String, f64>,
    /// Smoothed reward (the first window's reward, then the EMA).
    pub ema_reward: f64,
    /// Best `ema_reward` since the job started or last rolled back.
    pub best_ema_reward: f64,
    /// The last window's reward.
    pub last_reward: f64,
    /// The last `reward.ci_window` rewards, oldest first.
    pub rewards: VecDeque<f64>,
    /// Consecutive windows each rule's condition has held, by rule.
    pub streaks: BTreeMap<String, u32>,
    /// The last `reward.ci_window` values of the signal of each
    /// `significant` rule, oldest first, by rule.
    pub signal_windows: BTreeMap<String, VecDeque<f64>>,
    /// Last window (counted in `windows`) each rule stays silent, by rule.
    pub rule_cooldowns: BTreeMap<String, u64>,
    /// Last window (counted in `windows`) each knob stays still, by knob.
    pub knob_cooldowns: BTreeMap<String, u64>,
    /// Last window (counted in `windows`) in which no safety check runs.
    pub rollback_cooldown: u64,
    /// `ema_reward` when a rule last moved the knobs: a later fall below the
    /// floor is that change's doing only if the job was above the floor
    /// then (none before the first change).
    pub ema_at_change: Option<f64>,
    /// After a rollback, the smoothed reward at which its incident ends:
    /// back to within `max_drop` of the best before the rollback, and at
    /// least the floor. Until then no second rollback (one per incident).
    pub incident_recovery: Option<f64>,
    /// The job's recent losses as a sliding minimum: (loss window number,
    /// loss), increasing in both, so the front is the lowest loss of the
    /// last `meta.best_loss_windows` loss windows (of every one, if 0).
    pub best_losses: VecDeque<(u64, f64)>,
    /// Windows that reported a loss.
    pub loss_windows: u64,
    /// The job's previous `metrics.loss`.
    pub last_loss: Option<f64>,
    /// Windows seen: this job's packets, the layer's clock for the job.
    pub windows: u64,
    /// Windows in which at least one knob changed.
    pub decision_count: u64,
    /// Rollbacks.
    pub rollback_count: u64,
}

impl MetaState {
    fn new(knobs: BTreeMap<String, f64>, meta: &metagov_config::MetaConfig) -> Self {
        MetaState {
            good_knobs: knobs.clone(),
            knobs,
            meta: BTreeMap::from([
                ("g_min".to_owned(), meta.g_min),
                ("lambda_ci".to_owned(), meta.lambda_ci),
                ("tau".to_owned(), meta.tau),
            ]),
            ema_reward: 0.0,
            best_ema_reward: f64::NEG_INFINITY,
            last_reward: 0.0,
            rewards: VecDeque::new(),
            streaks: BTreeMap::new(),
            signal_windows: BTreeMap::new(),
            rule_cooldowns: BTreeMap::new(),
            knob_cooldowns: BTreeMap::new(),
            rollback_cooldown: 0,
            incident_recovery: None,
            ema_at_change: None,
            best_losses: VecDeque::new(),
            loss_windows: 0,
            last_loss: None,
            windows: 0,
            decision_count: 0,
            rollback_count: 0,
        }
    }
}

/// How many windows, from `window` on and this one included, a cooldown
/// that ends at window `until` still blocks (0: it does not block
/// `window`). A cooldown of c windows set at window w ends at w + c: it
/// blocks windows w+1 ..= w+c.
fn cooldown_left(until: Option<&u64>, window: u64) -> u64 {
    until.map_or(0, |&until| until.saturating_add(1).saturating_sub(window))
}

/// The values rules can watch, for one window.
struct Signals<'a> {
    packet: &'a TelemetryPacket,
    reward: f64,
    ema_reward: f64,
    reward_delta: Option<f64>,
    ci_half_width: Option<f64>,
    loss_improvement: Option<f64>,
    loss_change: Option<f64>,
}

impl Signals<'_> {
    fn get(&self, signal: Signal) -> Option<f64> {
        match signal {
            Signal::Reward => Some(self.reward),
            Signal::EmaReward => Some(self.ema_reward),
            Signal::RewardDelta => self.reward_delta,
            Signal::GainP50 => self.packet.metric("gain_p50"),
            Signal::StabilityMean => self.packet.metric("stability_mean"),
            Signal::LatencyMs => self.packet.metric("latency_ms"),
            Signal::Loss => self.packet.metric("loss"),
            Signal::VramHigh => Some(self.packet.vram_fraction()),
            Signal::CiHalfWidth => self.ci_half_width,
            Signal::LossImprovement => self.loss_improvement,
            Signal::LossChange => self.loss_change,
        }
    }
}

fn holds(comparison: Comparison, value: f64, threshold: f64) -> bool {
    match comparison {
        Comparison::Lt => value < threshold,
        Comparison::Le => value <= threshold,
        Comparison::Gt => value > threshold,
        Comparison::Ge => value >= threshold,
    }
}

/// `MetaIntegrativeLayer`: one [`MetaState`] per job, updated by
/// [`MetaIntegrativeLayer::update`] once per admitted packet. The order of
/// one update is documented in docs/governance.md. It holds a state for
/// every job it is given; the validator bounds their number (`jobs_max`).
#[derive(Clone, Debug)]
pub struct MetaIntegrativeLayer {
    config: IntegrativeMetaConfig,
    /// Knob values a new job starts from: the initial values, or the prior.
    start: BTreeMap<String, f64>,
    states: BTreeMap<String, MetaState>,
}

impl MetaIntegrativeLayer {
    /// A layer with no jobs; new jobs start from the knobs' initial values.
    ///
    /// # Panics
    ///
    /// If the config lacks a required knob or a rule names an unknown knob:
    /// [`metagov_config::Config::from_toml_str`] rejects such configs.
    #[must_use]
    pub fn new(config: IntegrativeMetaConfig) -> Self {
        for rule in &config.rules {
            let threshold = match &rule.threshold {
                Threshold::Knob(knob) => Some(knob),
                Threshold::Value(_) => None,
            };
            for knob in rule.adjust.keys().chain(rule.scale.keys()).chain(threshold) {
                assert!(config.knobs.contains_key(knob), "a checked config's rule {} names knob {knob}", rule.name);
            }
        }
        let start = config.knobs.iter().map(|(name, knob)| (name.clone(), knob.initial)).collect();
        MetaIntegrativeLayer { config, start, states: BTreeMap::new() }
    }

    /// The config this layer runs.
    #[must_use]
    pub fn config(&self) -> &IntegrativeMetaConfig {
        &self.config
    }

    /// The state of `job`, once it sent a packet.
    #[must_use]
    pub fn state(&self, job: &str) -> Option<&MetaState> {
        self.states.get(job)
    }

    /// Every job's state, by job.
    #[must_use]
    pub fn states(&self) -> &BTreeMap<String, MetaState> {
        &self.states
    }

    /// Jobs that start after this call start from `prior` (entries that
    /// name a knob, clipped to its bounds); running jobs keep their knobs.
    pub fn set_prior(&mut self, prior: &BTreeMap<String, f64>) {
        for (name, value) in prior {
            if let Some(knob) = self.config.knobs.get(name) {
                assert!(value.is_finite(), "a prior value is finite: {name} = {value}");
                self.start.insert(name.clone(), value.clamp(knob.min, knob.max));
            }
        }
    }

    /// Processes one admitted packet and returns the decision for its job.
    ///
    /// # Panics
    ///
    /// If the packet was not admitted by the validator (a required metric is
    /// missing).
    pub fn update(&mut self, packet: &TelemetryPacket) -> IntegrativeDecision {
        let config = &self.config;
        let state = slot(&mut self.states, &packet.job, || MetaState::new(self.start.clone(), &config.meta));
        state.windows += 1;

        // Reward and its smoothing. Reference: docs/governance.md, "Reward" and "One update, in order".
        let scoring = score(packet, config, state.meta["g_min"]);
        let reward = scoring.total;
        let tau = state.meta["tau"];
        let previous_ema = (state.windows > 1).then_some(state.ema_reward);
        state.ema_reward = previous_ema.map_or(reward, |ema| tau * ema + (1.0 - tau) * reward);
        let reward_delta = previous_ema.map(|ema| state.ema_reward - ema);
        state.last_reward = reward;
        push_recent(&mut state.rewards, reward, config.reward.ci_window);
        let ci_level = config.reward.ci_level;
        let ci_half_width = Welford::of(&state.rewards).t_half_width(ci_level).map(|hw| hw * state.meta["lambda_ci"]);
        let loss = packet.metric("loss");
        let relative = |from: f64, to: f64| (to - from) / from.abs().max(f64::MIN_POSITIVE);
        let best = state.best_losses.front().map(|&(_, best)| best);
        let loss_improvement = loss.zip(best).map(|(loss, best)| -relative(best, loss));
        let loss_change = loss.zip(state.last_loss).map(|(loss, last)| relative(last, loss));
        if let Some(loss) = loss {
            remember_loss(state, loss, config.meta.best_loss_windows);
            state.last_loss = Some(loss);
        }

        let mut decision = IntegrativeDecision {
            job: packet.job.clone(),
            window: packet.window,
            policy_updates: BTreeMap::new(),
            meta_updates: BTreeMap::new(),
            resource_hint: resource_hint(packet, config),
            scoring,
            ema_reward: state.ema_reward,
            reward_delta,
            ci_half_width,
            fired_rules: Vec::new(),
            evidence: Evidence::default(),
            rollback: None,
            start: false,
        };
        if state.windows == 1 {
            for (name, &value) in &state.knobs {
                if packet.params.get(name).is_some_and(|&reported| reported != value) {
                    decision.policy_updates.insert(name.clone(), value);
                    decision.start = true;
                }
            }
        }

        // The best sinks slowly, so only a fast fall is a drop from it.
        state.best_ema_reward -= config.safety.best_decay_per_window;
        // Safety first: a rollback window runs no rule.
        let safety = safety_check(state, config, ci_half_width);
        decision.rollback = safety.condition.filter(|_| safety.hold.is_none());
        decision.evidence.safety = Some(safety);
        if decision.rollback.is_some() {
            for (name, &good) in &state.good_knobs {
                if state.knobs[name] != good {
                    decision.policy_updates.insert(name.clone(), good);
                }
            }
            state.knobs.clone_from(&state.good_knobs);
            state.best_ema_reward = state.ema_reward;
            state.streaks.clear();
            state.rollback_count += 1;
            state.rollback_cooldown = state.windows + u64::from(config.safety.rollback_cooldown_windows);
        } else {
            if state.ema_reward >= state.best_ema_reward {
                state.best_ema_reward = state.ema_reward;
                state.good_knobs.clone_from(&state.knobs);
            }
            let signals = Signals {
                packet,
                reward,
                ema_reward: state.ema_reward,
                reward_delta,
                ci_half_width,
                loss_improvement,
                loss_change,
            };
            apply_rules(state, config, &signals, &mut decision);
        }
        if !decision.policy_updates.is_empty() || !decision.meta_updates.is_empty() {
            state.decision_count += 1;
        }
        decision
    }
}

/// The value of `key` in `map`, made by `make` if absent. Unlike
/// `entry(key.to_owned())`, copies the key only when it is new: the maps of
/// a job's state are keyed by job, rule and knob names that repeat on every
/// window.
fn slot<'m, V>(map: &'m mut BTreeMap<String, V>, key: &str, make: impl FnOnce() -> V) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), make());
    }
    map.get_mut(key).expect("the key was inserted above")
}

/// Adds `loss` to the job's sliding minimum of its last `memory` losses (of
/// all of them if `memory` is 0): drops the losses it makes irrelevant (not
/// lower than it) from the back and the ones that left the memory from the
/// front, so the front is the best remembered loss.
fn remember_loss(state: &mut MetaState, loss: f64, memory: u32) {
    state.loss_windows += 1;
    while state.best_losses.back().is_some_and(|&(_, kept)| kept >= loss) {
        state.best_losses.pop_back();
    }
    state.best_losses.push_back((state.loss_windows, loss));
    if memory > 0 {
        let oldest = state.loss_windows.saturating_sub(u64::from(memory)) + 1;
        while state.best_losses.front().is_some_and(|&(window, _)| window < oldest) {
            state.best_losses.pop_front();
        }
    }
}

/// The rollback a window calls for, if any. Nothing is rolled back while the
/// rollback cooldown runs, nor when the knobs already are the snapshot, nor
/// a second time in one incident: after a rollback, the next waits until the
/// smoothed reward is back to within `max_drop` of the best it had before.
///
/// Reference: docs/governance.md, "One update, in order", step 4.
fn safety_check(state: &mut MetaState, config: &IntegrativeMetaConfig, ci: Option<f64>) -> SafetyEvidence {
    let drop = state.best_ema_reward - state.ema_reward;
    let floor = config.safety.reward_floor;
    let condition = if state.ema_reward < floor && state.ema_at_change.is_none_or(|ema| ema >= floor) {
        Some(RollbackReason::BelowFloor)
    } else if drop > config.safety.max_drop && drop > ci.unwrap_or(0.0) {
        Some(RollbackReason::DropFromBest)
    } else {
        None
    };
    if state.incident_recovery.is_some_and(|level| state.ema_reward >= level) {
        state.incident_recovery = None;
    }
    let hold = if state.incident_recovery.is_some() {
        Some(SafetyHold::IncidentOpen)
    } else if let left @ 1.. = cooldown_left(Some(&state.rollback_cooldown), state.windows) {
        Some(SafetyHold::Cooldown(left))
    } else if state.knobs == state.good_knobs {
        Some(SafetyHold::AtSnapshot)
    } else {
        None
    };
    let evidence = SafetyEvidence {
        best_ema_reward: state.best_ema_reward,
        condition,
        hold,
        incident_recovery: state.incident_recovery,
    };
    if condition.is_some() && hold.is_none() {
        state.incident_recovery = Some((state.best_ema_reward - config.safety.max_drop).max(floor));
    }
    evidence
}

/// Appends `value` to `recent`, dropping the oldest so that at most `len`
/// values are kept (the rewards of the confidence band, a significant
/// rule's signal values).
fn push_recent(recent: &mut VecDeque<f64>, value: f64, len: u32) {
    if recent.len() == usize::try_from(len).unwrap_or(usize::MAX) {
        recent.pop_front();
    }
    recent.push_back(value);
}

/// A `significant` rule's test: adds this window's value (if any) to the
/// rule's recent values (at most `reward.ci_window`), and returns their
/// mean with whether the whole t-interval of the mean lies on the firing
/// side of `threshold` (`mean + half-width < threshold` for `lt`, and so
/// on). Fewer than two values never hold.
fn recent_mean_holds(
    window: &mut VecDeque<f64>,
    value: Option<f64>,
    comparison: Comparison,
    threshold: f64,
    reward: &metagov_config::RewardConfig,
) -> (Option<f64>, bool) {
    if let Some(value) = value {
        push_recent(window, value, reward.ci_window);
    }
    let moments = Welford::of(window.iter());
    let Some(half_width) = moments.t_half_width(reward.ci_level) else { return (None, false) };
    let mean = moments.mean();
    let held = match comparison {
        Comparison::Lt | Comparison::Le => holds(comparison, mean + half_width, threshold),
        Comparison::Gt | Comparison::Ge => holds(comparison, mean - half_width, threshold),
    };
    (Some(mean), held)
}

/// Runs every rule in config order, then moves each knob: multiplied by the
/// product of the fired rules' factors, plus the sum of their changes,
/// limited to ±step (if the knob has one), clipped to its bounds and
/// rounded to its kind.
///
/// Reference: docs/governance.md, "Rules"; the
/// worked example in docs/governance.md.
fn apply_rules(
    state: &mut MetaState,
    config: &IntegrativeMetaConfig,
    signals: &Signals<'_>,
    decision: &mut IntegrativeDecision,
) {
    // Per knob: (product of factors, sum of changes); per meta parameter:
    // the sum of changes.
    let mut changes: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    let mut meta_changes: BTreeMap<&str, f64> = BTreeMap::new();
    for rule in &config.rules {
        let threshold = match &rule.threshold {
            Threshold::Value(value) => *value,
            Threshold::Knob(knob) => state.knobs[knob],
        };
        let (value, held) = if rule.significant {
            let window = slot(&mut state.signal_windows, &rule.name, VecDeque::new);
            recent_mean_holds(window, signals.get(rule.signal), rule.comparison, threshold, &config.reward)
        } else {
            let value = signals.get(rule.signal);
            (value, value.is_some_and(|value| holds(rule.comparison, value, threshold)))
        };
        let streak = slot(&mut state.streaks, &rule.name, u32::default);
        *streak = if held { streak.saturating_add(1) } else { 0 };
        let reached = *streak;
        let cooldown_left = cooldown_left(state.rule_cooldowns.get(&rule.name), state.windows);
        let fired = value.filter(|_| held && reached >= rule.for_windows && cooldown_left == 0);
        if fired.is_some() {
            *streak = 0;
            let until = state.windows + u64::from(rule.cooldown_windows);
            *slot(&mut state.rule_cooldowns, &rule.name, u64::default) = until;
        }
        decision.evidence.rules.push(RuleEvidence {
            rule: rule.name.clone(),
            value,
            threshold,
            held,
            streak: reached,
            cooldown_left,
            fired: fired.is_some(),
        });
        if let Some(value) = fired {
            decision.fired_rules.push(FiredRule { rule: rule.name.clone(), signal: rule.signal, value, threshold });
            for (knob, factor) in &rule.scale {
                changes.entry(knob).or_insert((1.0, 0.0)).0 *= factor;
            }
            for (knob, delta) in &rule.adjust {
                changes.entry(knob).or_insert((1.0, 0.0)).1 += delta;
            }
            for (name, delta) in &rule.meta {
                *meta_changes.entry(name).or_default() += delta;
            }
        }
    }
    for (name, (factor, delta)) in changes {
        let knob = &config.knobs[name];
        let old = state.knobs[name];
        let change = old * factor + delta - old;
        let limited = knob.step.map_or(change, |step| change.clamp(-step, step));
        let fitted = knob.fit(old + limited);
        let cooldown_left = cooldown_left(state.knob_cooldowns.get(name), state.windows);
        let new = if cooldown_left > 0 { old } else { fitted };
        decision.evidence.knobs.push(KnobEvidence {
            knob: name.to_owned(),
            old,
            new,
            step_limited: limited != change,
            fitted: fitted != old + limited,
            cooldown_left,
        });
        if new != old {
            *slot(&mut state.knobs, name, f64::default) = new;
            let until = state.windows + u64::from(knob.cooldown_windows);
            *slot(&mut state.knob_cooldowns, name, u64::default) = until;
            decision.policy_updates.insert(name.to_owned(), new);
        }
    }
    for (name, delta) in meta_changes {
        let old = state.meta[name];
        // Invariant: a checked config's meta rules name adjustable parameters.
        let new = metagov_config::MetaConfig::fit(name, old + delta).expect("a checked meta parameter");
        if new != old {
            state.meta.insert(name.to_owned(), new);
            decision.meta_updates.insert(name.to_owned(), new);
        }
    }
    if !decision.policy_updates.is_empty() {
        // A drop is measured from here on: what happens after a change is
        // the change's doing, what happened before it is not.
        state.best_ema_reward = state.ema_reward;
        state.ema_at_change = Some(state.ema_reward);
    }
}

/// `batch_scale = clamp(m · l, batch_scale_min, 1)` with m =
/// `vram_target / vram_high` when memory use is above `vram_high_max`
/// (else 1) and l = `latency_target_ms / latency_ms` above the latency
/// target (else 1): the factor that would bring the job back to its targets.
fn resource_hint(packet: &TelemetryPacket, config: &IntegrativeMetaConfig) -> ResourceHint {
    let vram = packet.vram_fraction();
    let memory_high = vram > config.safety.vram_high_max;
    let target = config.reward.latency_target_ms;
    let latency = packet.metric("latency_ms").filter(|&latency| latency > target);
    let memory = if memory_high { config.safety.vram_target / vram } else { 1.0 };
    let batch_scale =
        (memory * latency.map_or(1.0, |latency| target / latency)).clamp(config.safety.batch_scale_min, 1.0);
    ResourceHint { batch_scale, memory_high, latency_high: latency.is_some() }
}
