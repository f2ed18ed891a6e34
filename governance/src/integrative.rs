//! The integrative layer (`MetaIntegrativeLayer`; docs/governance.md): per job, score
//! each window, smooth the reward, run the safety checks and the rules, and
//! answer with knob changes and a resource hint.

use std::collections::{BTreeMap, VecDeque};

use metagov_config::{Comparison, IntegrativeMetaConfig, RewardConfig, Signal, Threshold};

use crate::stats::Welford;
use crate::TelemetryPacket;

/// The weighted terms of one window's reward and their sum.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scoring {
    /// `gain_weight · clamp((gain_p50 − g_min)/gain_scale, −1, 1)`
    pub gain: f64,
    /// `stability_weight · (2·stability_mean − 1)`
    pub stability: f64,
    /// `−vram_weight · vram_high`
    pub vram: f64,
    /// `−latency_weight · clamp((latency_ms − target)/target, 0, 1)`, 0 if
    /// latency is not reported.
    pub latency: f64,
    /// The reward: the sum of the four terms.
    pub total: f64,
}

/// Scores one packet.
///
/// Reference: docs/governance.md, "Reward".
///
/// # Panics
///
/// If the packet lacks `gain_p50` or `stability_mean`: it was not admitted
/// by the validator.
#[must_use]
pub fn score(packet: &TelemetryPacket, g_min: f64, config: &RewardConfig) -> Scoring {
    let gain = config.gain_weight * ((packet.required("gain_p50") - g_min) / config.gain_scale).clamp(-1.0, 1.0);
    let stability = config.stability_weight * (2.0 * packet.required("stability_mean") - 1.0);
    let vram = -config.vram_weight * f64::from(u8::from(packet.vram_high()));
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
    /// The job reported memory pressure.
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

/// The answer to one window of one job.
#[derive(Clone, Debug, PartialEq)]
pub struct IntegrativeDecision {
    /// The job.
    pub job: String,
    /// The packet's window.
    pub window: u64,
    /// New values of the knobs that changed, by name.
    pub policy_updates: BTreeMap<String, f64>,
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
    /// Knobs a fired rule would have moved but that were cooling down.
    pub blocked_knobs: Vec<String>,
    /// Set when the knobs were rolled back to the last known-good snapshot.
    pub rollback: Option<RollbackReason>,
}

/// The layer's state for one job (`MetaState`; docs/governance.md).
#[derive(Clone, Debug, PartialEq)]
pub struct MetaState {
    /// Current knob values, by name.
    pub knobs: BTreeMap<String, f64>,
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
    /// Last window (counted in `windows`) each rule stays silent, by rule.
    pub rule_cooldowns: BTreeMap<String, u64>,
    /// Last window (counted in `windows`) each knob stays still, by knob.
    pub knob_cooldowns: BTreeMap<String, u64>,
    /// Last window (counted in `windows`) in which no safety check runs.
    pub rollback_cooldown: u64,
    /// Windows seen: this job's packets, the layer's clock for the job.
    pub windows: u64,
    /// Windows in which at least one knob changed.
    pub decision_count: u64,
    /// Rollbacks.
    pub rollback_count: u64,
}

impl MetaState {
    fn new(knobs: BTreeMap<String, f64>) -> Self {
        MetaState {
            good_knobs: knobs.clone(),
            knobs,
            ema_reward: 0.0,
            best_ema_reward: f64::NEG_INFINITY,
            last_reward: 0.0,
            rewards: VecDeque::new(),
            streaks: BTreeMap::new(),
            rule_cooldowns: BTreeMap::new(),
            knob_cooldowns: BTreeMap::new(),
            rollback_cooldown: 0,
            windows: 0,
            decision_count: 0,
            rollback_count: 0,
        }
    }
}

/// Whether a cooldown that ends at window `until` blocks window `window`.
/// A cooldown of c windows set at window w ends at w + c: it blocks windows
/// w+1 ..= w+c.
fn cooling(until: Option<&u64>, window: u64) -> bool {
    until.is_some_and(|&until| window <= until)
}

/// The values rules can watch, for one window.
struct Signals<'a> {
    packet: &'a TelemetryPacket,
    reward: f64,
    ema_reward: f64,
    reward_delta: Option<f64>,
    ci_half_width: Option<f64>,
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
            Signal::VramHigh => Some(f64::from(u8::from(self.packet.vram_high()))),
            Signal::CiHalfWidth => self.ci_half_width,
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
        for knob in metagov_config::REQUIRED_KNOBS {
            assert!(config.knobs.contains_key(knob), "a checked config has knob {knob}");
        }
        for rule in &config.rules {
            let threshold = match &rule.threshold {
                Threshold::Knob(knob) => Some(knob),
                Threshold::Value(_) => None,
            };
            for knob in rule.adjust.keys().chain(threshold) {
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
        let state = self.states.entry(packet.job.clone()).or_insert_with(|| MetaState::new(self.start.clone()));
        state.windows += 1;

        // Reward and its smoothing. Reference: docs/governance.md, "Reward" and "One update, in order".
        let scoring = score(packet, state.knobs["g_min"], &config.reward);
        let reward = scoring.total;
        let tau = state.knobs["tau"];
        let previous_ema = (state.windows > 1).then_some(state.ema_reward);
        state.ema_reward = previous_ema.map_or(reward, |ema| tau * ema + (1.0 - tau) * reward);
        let reward_delta = previous_ema.map(|ema| state.ema_reward - ema);
        state.last_reward = reward;
        if state.rewards.len() == usize::try_from(config.reward.ci_window).unwrap_or(usize::MAX) {
            state.rewards.pop_front();
        }
        state.rewards.push_back(reward);
        let ci_level = config.reward.ci_level;
        let ci_half_width = Welford::of(&state.rewards).t_half_width(ci_level).map(|hw| hw * state.knobs["lambda_ci"]);

        let mut decision = IntegrativeDecision {
            job: packet.job.clone(),
            window: packet.window,
            policy_updates: BTreeMap::new(),
            resource_hint: resource_hint(packet, config),
            scoring,
            ema_reward: state.ema_reward,
            reward_delta,
            ci_half_width,
            fired_rules: Vec::new(),
            blocked_knobs: Vec::new(),
            rollback: None,
        };

        // The best sinks slowly, so only a fast fall is a drop from it.
        state.best_ema_reward -= config.safety.best_decay_per_window;
        // Safety first: a rollback window runs no rule.
        decision.rollback = safety_check(state, config, ci_half_width);
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
            let signals = Signals { packet, reward, ema_reward: state.ema_reward, reward_delta, ci_half_width };
            apply_rules(state, config, &signals, &mut decision);
        }
        if !decision.policy_updates.is_empty() {
            state.decision_count += 1;
        }
        decision
    }
}

/// The rollback a window calls for, if any. Nothing is rolled back while the
/// rollback cooldown runs, nor when the knobs already are the snapshot.
///
/// Reference: docs/governance.md, "One update, in order", step 4.
fn safety_check(state: &mut MetaState, config: &IntegrativeMetaConfig, ci: Option<f64>) -> Option<RollbackReason> {
    if cooling(Some(&state.rollback_cooldown), state.windows) || state.knobs == state.good_knobs {
        return None;
    }
    let drop = state.best_ema_reward - state.ema_reward;
    if state.ema_reward < config.safety.reward_floor {
        Some(RollbackReason::BelowFloor)
    } else if drop > config.safety.max_drop && drop > ci.unwrap_or(0.0) {
        Some(RollbackReason::DropFromBest)
    } else {
        None
    }
}

/// Runs every rule in config order, then moves each knob by the sum of the
/// fired rules' changes, limited to ±step and clipped to its bounds.
///
/// Reference: docs/governance.md, "Rules"; the
/// worked example in docs/governance.md.
fn apply_rules(
    state: &mut MetaState,
    config: &IntegrativeMetaConfig,
    signals: &Signals<'_>,
    decision: &mut IntegrativeDecision,
) {
    let mut changes: BTreeMap<&str, f64> = BTreeMap::new();
    for rule in &config.rules {
        let value = signals.get(rule.signal);
        let threshold = match &rule.threshold {
            Threshold::Value(value) => *value,
            Threshold::Knob(knob) => state.knobs[knob],
        };
        let streak = state.streaks.entry(rule.name.clone()).or_default();
        let held = value.is_some_and(|value| holds(rule.comparison, value, threshold));
        *streak = if held { streak.saturating_add(1) } else { 0 };
        let silent = cooling(state.rule_cooldowns.get(&rule.name), state.windows);
        if let Some(value) = value.filter(|_| held && *streak >= rule.for_windows && !silent) {
            *streak = 0;
            state.rule_cooldowns.insert(rule.name.clone(), state.windows + u64::from(rule.cooldown_windows));
            decision.fired_rules.push(FiredRule { rule: rule.name.clone(), signal: rule.signal, value, threshold });
            for (knob, delta) in &rule.adjust {
                *changes.entry(knob).or_default() += delta;
            }
        }
    }
    for (name, change) in changes {
        let knob = &config.knobs[name];
        if cooling(state.knob_cooldowns.get(name), state.windows) {
            decision.blocked_knobs.push(name.to_owned());
            continue;
        }
        let old = state.knobs[name];
        let new = (old + change.clamp(-knob.step, knob.step)).clamp(knob.min, knob.max);
        if new != old {
            state.knobs.insert(name.to_owned(), new);
            state.knob_cooldowns.insert(name.to_owned(), state.windows + u64::from(knob.cooldown_windows));
            decision.policy_updates.insert(name.to_owned(), new);
        }
    }
}

/// `batch_scale = max(batch_scale_min, m · l)` with m = `vram_batch_scale`
/// under memory pressure (else 1) and l = `latency_target_ms / latency_ms`
/// above the target (else 1).
fn resource_hint(packet: &TelemetryPacket, config: &IntegrativeMetaConfig) -> ResourceHint {
    let memory_high = packet.vram_high();
    let target = config.reward.latency_target_ms;
    let latency = packet.metric("latency_ms").filter(|&latency| latency > target);
    let memory = if memory_high { config.safety.vram_batch_scale } else { 1.0 };
    let batch_scale = (memory * latency.map_or(1.0, |latency| target / latency)).max(config.safety.batch_scale_min);
    ResourceHint { batch_scale, memory_high, latency_high: latency.is_some() }
}
