//! The governance sections of a run config: knobs, reward, rules, safety,
//! and the meta-learning components (domain learner, aggregator, Reptile,
//! scheduler, validator, prior storage). The formulas that read these values
//! are written down in `docs/governance.md`; each field's doc names its unit
//! and default.
//!
//! Time is counted in windows (telemetry packets), never in wall-clock time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::read::{join, suggestion};
use crate::schema::Check;
use crate::Config;

/// Most knobs in a config.
const KNOBS_MAX: usize = 64;
/// Most rules in a config.
const RULES_MAX: usize = 256;
/// Longest knob, rule or metric name, in characters.
pub const NAME_CHARS_MAX: usize = 64;
/// Longest count of windows any patience or cooldown may name.
const WINDOWS_MAX: u32 = 1_000_000;
/// Largest magnitude of a number that crosses the bus: every real bound of a
/// config must fit it. This is the one definition of the bus's value range:
/// `config` is a leaf and validates files before any bus exists, so the
/// constant lives here, and `metagov_bus::Fixed::ABS_MAX` must equal it
/// (`actors`, which joins the two, asserts so at compile time).
pub const VALUE_ABS_MAX: f64 = 1.0e9;

/// What values a knob takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnobKind {
    /// Any real in `[min, max]` (on the bus's 1e-6 grid).
    #[default]
    Real,
    /// Whole numbers: a change is rounded to the nearest integer.
    Integer,
    /// Powers of two (batch sizes): a change is rounded to the nearest power
    /// of two in log scale.
    PowerOfTwo,
}

/// One job knob: a number the training job applies (its learning rate, its
/// batch size) and the supervisor steers, per job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnobConfig {
    /// Value a new job starts from (until a prior replaces it). Required.
    pub initial: f64,
    /// Lowest value. Required.
    pub min: f64,
    /// Highest value. Required.
    pub max: f64,
    /// Largest additive change in one window, whatever the rules add up to.
    /// Optional (none: only the bounds limit a change); positive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    /// Windows after a change during which the knob does not move again.
    /// Default 0.
    #[serde(default)]
    pub cooldown_windows: u32,
    /// `real` (default), `integer` or `power_of_two`.
    #[serde(default)]
    pub kind: KnobKind,
}

impl KnobConfig {
    /// `value` clipped to the bounds and rounded to the knob's kind.
    #[must_use]
    pub fn fit(&self, value: f64) -> f64 {
        let rounded = match self.kind {
            KnobKind::Real => value,
            KnobKind::Integer => libm::round(value),
            KnobKind::PowerOfTwo if value > 0.0 => libm::exp2(libm::round(libm::log2(value))),
            KnobKind::PowerOfTwo => self.min,
        };
        rounded.clamp(self.min, self.max)
    }
}

/// The default knobs: a training job's `learning_rate` (0.1 in [1e-5, 10],
/// moved by factors) and `batch_size` (128 in [8, 128], a power of two).
pub(crate) fn default_knobs() -> BTreeMap<String, KnobConfig> {
    BTreeMap::from([
        (
            "learning_rate".to_owned(),
            KnobConfig { initial: 0.1, min: 1e-5, max: 10.0, step: None, cooldown_windows: 0, kind: KnobKind::Real },
        ),
        (
            "batch_size".to_owned(),
            KnobConfig {
                initial: 128.0,
                min: 8.0,
                max: 128.0,
                step: None,
                cooldown_windows: 0,
                kind: KnobKind::PowerOfTwo,
            },
        ),
    ])
}

/// `[meta]`: the integrative layer's own parameters (its `MetaState`), one
/// set for every job, each read by the formula it names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaConfig {
    /// EMA decay of the reward: `ema = tau·ema + (1 − tau)·reward`.
    /// Default 0.9; valid 0..=0.999.
    pub tau: f64,
    /// Minimum useful gain: the reward's gain term is
    /// `clamp((gain_p50 − g_min)/gain_scale, −1, 1)`. Default 0; valid −1..=1.
    pub g_min: f64,
    /// Scale of the reward's confidence band (its half-width is multiplied
    /// by it). Default 1; valid 0..=100.
    pub lambda_ci: f64,
    /// Loss windows a best loss is remembered for: `loss_improvement`
    /// compares a window's loss with the lowest of the job's previous this
    /// many, so after a restart or a shift the job is measured against its
    /// recent past, not a best it can no longer reach. 0: every window
    /// since the job started (as `ReduceLROnPlateau`). Default 20; valid
    /// 0..=4096.
    pub best_loss_windows: u32,
}

impl Default for MetaConfig {
    fn default() -> Self {
        MetaConfig { tau: 0.9, g_min: 0.0, lambda_ci: 1.0, best_loss_windows: 20 }
    }
}

impl MetaConfig {
    /// The parameters a rule's `[rules.meta]` may move.
    pub const ADJUSTABLE: [&'static str; 3] = ["g_min", "lambda_ci", "tau"];

    /// `value` for parameter `name` kept within the range `[meta]` allows
    /// it (`None` for a name not in [`MetaConfig::ADJUSTABLE`]).
    #[must_use]
    pub fn fit(name: &str, value: f64) -> Option<f64> {
        let (min, max) = match name {
            "tau" => (0.0, 0.999),
            "g_min" => (-1.0, 1.0),
            "lambda_ci" => (0.0, 100.0),
            _ => return None,
        };
        Some(value.clamp(min, max))
    }

    pub(crate) fn check(&self, check: &mut Check) {
        check.range("meta.tau", self.tau, 0.0..=0.999);
        check.range("meta.g_min", self.g_min, -1.0..=1.0);
        check.range("meta.lambda_ci", self.lambda_ci, 0.0..=100.0);
        check.range("meta.best_loss_windows", self.best_loss_windows, 0..=4096);
    }
}

/// `[reward]`: how a telemetry packet is scored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardConfig {
    /// Weight of the gain term. Default 0.5; valid 0..=100.
    pub gain_weight: f64,
    /// Weight of the stability term. Default 0.3; valid 0..=100.
    pub stability_weight: f64,
    /// Weight of the memory-pressure penalty. Default 0.1; valid 0..=100.
    pub vram_weight: f64,
    /// Weight of the latency penalty. Default 0.1; valid 0..=100.
    pub latency_weight: f64,
    /// Gain above `g_min` that scores a full 1. Default 0.2; positive.
    pub gain_scale: f64,
    /// Latency above which the latency penalty starts, in ms. Default 50;
    /// positive.
    pub latency_target_ms: f64,
    /// Rewards in the confidence band, in windows. Default 20; valid 2..=4096.
    pub ci_window: u32,
    /// Coverage of the confidence band. Default 0.95; valid 0.5..=0.999.
    pub ci_level: f64,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            gain_weight: 0.5,
            stability_weight: 0.3,
            vram_weight: 0.1,
            latency_weight: 0.1,
            gain_scale: 0.2,
            latency_target_ms: 50.0,
            ci_window: 20,
            ci_level: 0.95,
        }
    }
}

/// A value a rule can watch. Names are snake_case in the TOML.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// This window's reward.
    Reward,
    /// The reward's exponential moving average after this window.
    EmaReward,
    /// Change of `ema_reward` in this window (none in a job's first window).
    RewardDelta,
    /// The packet's `metrics.gain_p50`.
    GainP50,
    /// The packet's `metrics.stability_mean`.
    StabilityMean,
    /// The packet's `metrics.latency_ms`, if reported.
    LatencyMs,
    /// The packet's `metrics.loss`, if reported.
    Loss,
    /// The packet's `metrics.vram_high` as 0 or 1 (0 if not reported).
    VramHigh,
    /// Half-width of the reward's confidence band (none before 2 rewards).
    CiHalfWidth,
    /// Relative improvement of `metrics.loss` on the job's best recent loss
    /// (the lowest of its previous `meta.best_loss_windows` losses):
    /// `(best − loss)/|best|` (none before the job's first loss). At most 0
    /// when the window made no new best: what `ReduceLROnPlateau` watches.
    LossImprovement,
    /// Relative change of `metrics.loss` since the job's previous window:
    /// `(loss − previous)/|previous|` (none before two losses). Positive
    /// when the loss rises.
    LossChange,
}

impl Signal {
    /// Every signal, in declaration order.
    pub const ALL: [Signal; 11] = [
        Signal::Reward,
        Signal::EmaReward,
        Signal::RewardDelta,
        Signal::GainP50,
        Signal::StabilityMean,
        Signal::LatencyMs,
        Signal::Loss,
        Signal::VramHigh,
        Signal::CiHalfWidth,
        Signal::LossImprovement,
        Signal::LossChange,
    ];

    /// The name a config file uses for it (`loss_improvement`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Signal::Reward => "reward",
            Signal::EmaReward => "ema_reward",
            Signal::RewardDelta => "reward_delta",
            Signal::GainP50 => "gain_p50",
            Signal::StabilityMean => "stability_mean",
            Signal::LatencyMs => "latency_ms",
            Signal::Loss => "loss",
            Signal::VramHigh => "vram_high",
            Signal::CiHalfWidth => "ci_half_width",
            Signal::LossImprovement => "loss_improvement",
            Signal::LossChange => "loss_change",
        }
    }
}

/// How a rule compares its signal with its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// signal < threshold
    Lt,
    /// signal ≤ threshold
    Le,
    /// signal > threshold
    Gt,
    /// signal ≥ threshold
    Ge,
}

/// A rule's threshold: a number, or the name of a knob whose current value
/// is the threshold.
#[derive(Clone, Debug, PartialEq)]
pub enum Threshold {
    /// A fixed number.
    Value(f64),
    /// The current value of this knob.
    Knob(String),
}

impl Serialize for Threshold {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Threshold::Value(value) => serializer.serialize_f64(*value),
            Threshold::Knob(knob) => serializer.serialize_str(knob),
        }
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ThresholdVisitor;
        impl Visitor<'_> for ThresholdVisitor {
            type Value = Threshold;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a knob name")
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Threshold, E> {
                Ok(Threshold::Value(value))
            }
            #[allow(clippy::cast_precision_loss, reason = "a TOML integer threshold is read as the nearest f64")]
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Threshold, E> {
                Ok(Threshold::Value(value as f64))
            }
            fn visit_str<E: de::Error>(self, knob: &str) -> Result<Threshold, E> {
                Ok(Threshold::Knob(knob.to_owned()))
            }
        }
        deserializer.deserialize_any(ThresholdVisitor)
    }
}

/// `[[rules]]`: when `signal comparison threshold` has held for
/// `for_windows` consecutive windows, move knobs by `adjust`, then stay
/// silent for `cooldown_windows` windows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name: 1–64 characters of `[A-Za-z0-9._-]`. Required.
    pub name: String,
    /// The watched value. Required.
    pub signal: Signal,
    /// How the signal is compared. Required.
    pub comparison: Comparison,
    /// What the signal is compared with. Required.
    pub threshold: Threshold,
    /// Consecutive windows the condition must hold. Default 1; valid
    /// 1..=1000000.
    #[serde(default = "one")]
    pub for_windows: u32,
    /// Change added to each named knob when the rule fires (signed, in the
    /// knob's unit). `adjust` and `scale` may not both be empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub adjust: BTreeMap<String, f64>,
    /// Factor each named knob is multiplied by when the rule fires
    /// (positive, not 1), as `ReduceLROnPlateau`'s `factor`; applied before
    /// `adjust`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scale: BTreeMap<String, f64>,
    /// Change added to the layer's own parameters for this job when the
    /// rule fires: `tau`, `g_min`, `lambda_ci` (a meta rule), kept within
    /// the ranges `[meta]` allows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, f64>,
    /// Windows after firing during which the rule does not fire. Default 0.
    #[serde(default)]
    pub cooldown_windows: u32,
    /// Compare the signal's recent mean, not this window's value: the
    /// condition holds only when the mean over the job's last
    /// `reward.ci_window` values of the signal lies on the firing side of
    /// the threshold by more than its Student-t half-width at
    /// `reward.ci_level`, so noise around the threshold never fires the
    /// rule. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub significant: bool,
}

fn one() -> u32 {
    1
}

/// The default rules: they govern a training job's learning rate and batch
/// size (docs/governance.md, "The default rules").
pub(crate) fn default_rules() -> Vec<RuleConfig> {
    let rule = |name: &str, signal, comparison, threshold: f64, for_windows, scale: (&str, f64), cooldown_windows| {
        RuleConfig {
            name: name.to_owned(),
            signal,
            comparison,
            threshold: Threshold::Value(threshold),
            for_windows,
            adjust: BTreeMap::new(),
            scale: BTreeMap::from([(scale.0.to_owned(), scale.1)]),
            meta: BTreeMap::new(),
            cooldown_windows,
            significant: false,
        }
    };
    use Comparison::{Gt, Lt};
    use Signal::{LossChange, LossImprovement, VramHigh};
    vec![
        // The loss jumped by half in one window: the step is far too large
        // for the curvature (it will diverge in a window or two). Quarter
        // the rate at once.
        rule("exploding", LossChange, Gt, 0.5, 1, ("learning_rate", 0.25), 2),
        // The loss rises window after window: the step is too large for the
        // curvature. Halve the rate at once, before it diverges.
        rule("diverging", LossChange, Gt, 0.02, 3, ("learning_rate", 0.5), 3),
        // Steady progress early on: try a three times larger step, once per
        // job (the cooldown outlasts any run). A job already near its
        // largest stable step then trips `exploding`, which quarters it.
        rule("accelerating", LossImprovement, Gt, 0.003, 10, ("learning_rate", 3.0), 1_000_000),
        // No new best loss (by 1e-4) for 20 windows: training stalled at
        // this rate's noise floor. Halve the rate (a gentler
        // ReduceLROnPlateau).
        rule("plateau", LossImprovement, Lt, 0.0001, 20, ("learning_rate", 0.5), 20),
        // Memory nearly full: halve the batch.
        rule("memory_pressure", VramHigh, Gt, 0.9, 1, ("batch_size", 0.5), 2),
        // Memory has been comfortable for 20 windows: give the batch back.
        rule("memory_recovered", VramHigh, Lt, 0.45, 20, ("batch_size", 2.0), 20),
    ]
}

/// `[safety]`: when knobs are rolled back, and the resource hint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafetyConfig {
    /// Roll back when `ema_reward` falls below this. Default -0.25.
    pub reward_floor: f64,
    /// Roll back when `ema_reward` is more than this (and more than the
    /// confidence half-width) below its best. Default 0.3; positive.
    pub max_drop: f64,
    /// How far the best `ema_reward` sinks each window, in reward units, so
    /// a slow, healthy decline (gain shrinks as training converges) is not a
    /// drop from the best while a collapse still is. Default 0.002; valid
    /// 0..=1 (0: the best never sinks).
    pub best_decay_per_window: f64,
    /// Windows after a rollback during which no safety check runs.
    /// Default 10.
    pub rollback_cooldown_windows: u32,
    /// `metrics.vram_high` (the fraction of device memory in use) above
    /// which a job is under memory pressure. Default 0.9; valid 0.01..=1.
    pub vram_high_max: f64,
    /// Memory fraction a resource hint aims for: under pressure the hinted
    /// batch scale is `vram_target / vram_high`, and the reward's memory
    /// penalty counts only the use above it. Default 0.8; valid
    /// 0.01..=`vram_high_max`.
    pub vram_target: f64,
    /// Smallest batch scale ever hinted. Default 0.5; valid 0.01..=1.
    pub batch_scale_min: f64,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        SafetyConfig {
            reward_floor: -0.25,
            max_drop: 0.3,
            best_decay_per_window: 0.002,
            rollback_cooldown_windows: 10,
            vram_high_max: 0.9,
            vram_target: 0.8,
            batch_scale_min: 0.5,
        }
    }
}

/// `[domain]`: the per-domain learner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainMetaConfig {
    /// Observations of a domain before its first update, in windows.
    /// Default 5; valid 2..=1000000.
    pub min_observations: u32,
    /// Windows between two updates of a domain. Default 5; valid 1..=1000000.
    pub emit_interval_windows: u32,
    /// Forgetting factor of the reward-weighted parameter estimate, per
    /// window. Default 0.99; valid 0.5..=1.
    pub decay: f64,
    /// Coverage of the reward's t-interval. Default 0.95; valid 0.5..=0.999.
    pub ci_level: f64,
    /// t-interval half-width at which confidence is 0.5. Default 0.1; positive.
    pub confidence_half_width: f64,
}

impl Default for DomainMetaConfig {
    fn default() -> Self {
        DomainMetaConfig {
            min_observations: 5,
            emit_interval_windows: 5,
            decay: 0.99,
            ci_level: 0.95,
            confidence_half_width: 0.1,
        }
    }
}

/// `[aggregator]`: the cross-domain aggregator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrossMetaConfig {
    /// A domain whose robust |z| exceeds this is dropped. Default 3.5
    /// (Iglewicz & Hoaglin); valid 1..=1000, so that one key alone drops at
    /// most half the domains (fewer than half when their count is odd or
    /// this is at least 1.35, above 2 × 0.6745).
    pub outlier_z_max: f64,
    /// Fewest domains for outlier filtering to run. Default 4 (with 3, the
    /// MAD is the smaller of two deviations and flags ordinary spread); valid
    /// 3..=4096.
    pub outlier_min_domains: u32,
    /// Smallest MAD the outlier test divides by, as a fraction of the knob's
    /// `max − min`: domains that differ by less than this much are ordinary
    /// spread, however tightly the others agree. Default 0.05: with z_max 3.5
    /// a domain must stray more than about a quarter of the range; valid
    /// (0, 1] (with no floor, a domain a hair from others that agree exactly
    /// would be an outlier).
    pub outlier_mad_floor: f64,
    /// Softmax temperature over rewards. Default 0.1; positive.
    pub temperature: f64,
    /// Entropy target as a fraction of ln n (the aggregator's own `gamma_diversity`; the
    /// knob of the same name is the jobs' own). Default 0.3; valid 0..=1.
    pub gamma_diversity: f64,
}

impl Default for CrossMetaConfig {
    fn default() -> Self {
        CrossMetaConfig {
            outlier_z_max: 3.5,
            outlier_min_domains: 4,
            outlier_mad_floor: 0.05,
            temperature: 0.1,
            gamma_diversity: 0.3,
        }
    }
}

/// `[reptile]`: the online Reptile meta-optimizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaOptimizerConfig {
    /// Step size ε of θ ← θ + ε(φ − θ). Default 0.1; valid 0..=1, not 0.
    pub lr: f64,
    /// Factor on the step under memory pressure. Default 0.5; valid 0..=1.
    pub memory_damping: f64,
    /// Priors kept to roll back to. Default 8; valid 1..=1024.
    pub checkpoints_len: u32,
    /// An aggregate reward more than this below the best recent aggregate
    /// reward rolls the prior back. Default 0.3; positive.
    pub rollback_drop: f64,
    /// How far the best recent aggregate reward sinks at each update, so a
    /// slow decline as training converges is not a drop. Default 0.01; valid
    /// 0..=1.
    pub best_decay_per_update: f64,
}

impl Default for MetaOptimizerConfig {
    fn default() -> Self {
        MetaOptimizerConfig {
            lr: 0.1,
            memory_damping: 0.5,
            checkpoints_len: 8,
            rollback_drop: 0.3,
            best_decay_per_update: 0.01,
        }
    }
}

/// `[scheduler]`: when the meta update runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaSchedulerConfig {
    /// Windows between meta updates. Default 10; valid 1..=1000000.
    pub update_interval_windows: u32,
    /// An update waits while reported latency is above this, in ms.
    /// Default 50; positive.
    pub latency_target_ms: f64,
    /// Most windows an update waits for latency. Default 20; valid 0..=1000000.
    pub max_deferral_windows: u32,
}

impl Default for MetaSchedulerConfig {
    fn default() -> Self {
        MetaSchedulerConfig { update_interval_windows: 10, latency_target_ms: 50.0, max_deferral_windows: 20 }
    }
}

/// `[validator]`: what a telemetry packet or a domain update may hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaValidatorConfig {
    /// Largest telemetry line, in bytes. Default 65536; valid 256..=16777216.
    pub packet_bytes_max: u32,
    /// Most entries in a packet's `metrics` and in its `params` (each).
    /// Default 64; valid 2..=4096.
    pub entries_max: u32,
    /// Largest magnitude of any number. Default 1e9; valid up to 1e9 (the bus's fixed-point range).
    pub value_abs_max: f64,
    /// Most distinct jobs. Default 4096; valid 1..=1048576.
    pub jobs_max: u32,
    /// Most distinct domains. Default 256; valid 1..=65536.
    pub domains_max: u32,
    /// Allowed `[min, max]` of named metrics. Default `stability_mean` and
    /// `vram_high` in [0, 1], `latency_ms` in [0, 3600000]. The ranges of
    /// `stability_mean` and `vram_high` must lie within [0, 1]: the reward
    /// reads them as fractions.
    pub ranges: BTreeMap<String, [f64; 2]>,
}

impl Default for MetaValidatorConfig {
    fn default() -> Self {
        MetaValidatorConfig {
            packet_bytes_max: 1 << 16,
            entries_max: 64,
            value_abs_max: 1e9,
            jobs_max: 4096,
            domains_max: 256,
            ranges: BTreeMap::from([
                ("latency_ms".to_owned(), [0.0, 3_600_000.0]),
                ("stability_mean".to_owned(), [0.0, 1.0]),
                ("vram_high".to_owned(), [0.0, 1.0]),
            ]),
        }
    }
}

/// `[storage]`: versions of the learned prior.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaStorageConfig {
    /// Prior versions kept; older ones are pruned. Default 5; valid 1..=1000.
    pub versions_kept: u32,
}

impl Default for MetaStorageConfig {
    fn default() -> Self {
        MetaStorageConfig { versions_kept: 5 }
    }
}

/// What the integrative layer reads: `[meta]`, `[knobs]`, `[reward]`,
/// `[[rules]]`, `[safety]`.
#[derive(Clone, Debug, PartialEq)]
pub struct IntegrativeMetaConfig {
    /// The layer's own parameters.
    pub meta: MetaConfig,
    /// The knobs, by name.
    pub knobs: BTreeMap<String, KnobConfig>,
    /// Reward weights and the confidence band.
    pub reward: RewardConfig,
    /// Rules, in the order they are evaluated.
    pub rules: Vec<RuleConfig>,
    /// Rollback thresholds and resource hints.
    pub safety: SafetyConfig,
}

impl Default for IntegrativeMetaConfig {
    fn default() -> Self {
        Config::default().integrative()
    }
}

/// What the meta-learning components read (`MetaLearningConfig`; docs/governance.md).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetaLearningConfig {
    /// `[domain]`
    pub domain: DomainMetaConfig,
    /// `[aggregator]`
    pub cross: CrossMetaConfig,
    /// `[reptile]`
    pub optimizer: MetaOptimizerConfig,
    /// `[scheduler]`
    pub scheduler: MetaSchedulerConfig,
    /// `[validator]`
    pub validator: MetaValidatorConfig,
    /// `[storage]`
    pub storage: MetaStorageConfig,
}

impl Config {
    /// Each knob's initial value, by name: where every new job starts.
    #[must_use]
    pub fn initial_knobs(&self) -> BTreeMap<String, f64> {
        self.knobs.iter().map(|(name, knob)| (name.clone(), knob.initial)).collect()
    }

    /// The integrative layer's part of this config.
    #[must_use]
    pub fn integrative(&self) -> IntegrativeMetaConfig {
        IntegrativeMetaConfig {
            meta: self.meta.clone(),
            knobs: self.knobs.clone(),
            reward: self.reward.clone(),
            rules: self.rules.clone(),
            safety: self.safety.clone(),
        }
    }

    /// The meta-learning components' part of this config.
    #[must_use]
    pub fn meta_learning(&self) -> MetaLearningConfig {
        MetaLearningConfig {
            domain: self.domain.clone(),
            cross: self.aggregator.clone(),
            optimizer: self.reptile.clone(),
            scheduler: self.scheduler.clone(),
            validator: self.validator.clone(),
            storage: self.storage.clone(),
        }
    }
}

/// Whether `name` is 1 to `chars_max` characters of `[A-Za-z0-9._-]`: the
/// one rule for every name (knob, rule, metric, job, domain).
#[must_use]
pub fn is_name(name: &str, chars_max: usize) -> bool {
    (1..=chars_max).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `is_name` for config names, with its message.
fn check_name(check: &mut Check, key: &str, what: &str, name: &str) {
    check.rule(key, is_name(name, NAME_CHARS_MAX), || {
        format!("{what} name {name:?} is not 1–{NAME_CHARS_MAX} characters of [A-Za-z0-9._-]")
    });
}

/// Checks `value` is finite and positive.
fn positive(check: &mut Check, key: &str, value: f64) {
    let ok = value.is_finite() && value > 0.0 && value <= VALUE_ABS_MAX;
    check.rule(key, ok, || format!("{value} is not a positive number at most {VALUE_ABS_MAX}"));
}

/// Checks the governance sections; `knobs`, `rules` are `Config` fields.
pub(crate) fn check_knobs(knobs: &BTreeMap<String, KnobConfig>, check: &mut Check) {
    check.rule("knobs", knobs.len() <= KNOBS_MAX, || format!("{} knobs, at most {KNOBS_MAX}", knobs.len()));
    for (name, knob) in knobs {
        let key = join("knobs", name);
        check_name(check, &key, "knob", name);
        let field = |field: &str| format!("{key}.{field}");
        check.range(&field("min"), knob.min, -VALUE_ABS_MAX..=VALUE_ABS_MAX);
        check.range(&field("max"), knob.max, knob.min..=VALUE_ABS_MAX);
        check.range(&field("initial"), knob.initial, knob.min..=knob.max);
        if let Some(step) = knob.step {
            positive(check, &field("step"), step);
        }
        check.range(&field("cooldown_windows"), knob.cooldown_windows, 0..=WINDOWS_MAX);
        for (bound, value) in [("min", knob.min), ("max", knob.max), ("initial", knob.initial)] {
            let (ok, what) = match knob.kind {
                KnobKind::Real => (true, ""),
                KnobKind::Integer => (value == libm::round(value), "an integer"),
                KnobKind::PowerOfTwo => (value > 0.0 && knob.fit(value) == value, "a power of two"),
            };
            check.rule(&field(bound), ok, || format!("{value} is not {what}, as kind = {:?} needs", knob.kind));
        }
    }
}

/// Checks `[[rules]]` against the signals and the knobs.
pub(crate) fn check_rules(rules: &[RuleConfig], knobs: &BTreeMap<String, KnobConfig>, check: &mut Check) {
    check.rule("rules", rules.len() <= RULES_MAX, || format!("{} rules, at most {RULES_MAX}", rules.len()));
    let known: Vec<&str> = knobs.keys().map(String::as_str).collect();
    let unknown_knob = |knob: &str| format!("unknown knob `{knob}`, {}", suggestion(knob, &known));
    let mut names = BTreeSet::new();
    for (i, rule) in rules.iter().enumerate() {
        let key = |field: &str| format!("rules[{i}].{field}");
        let name = &rule.name;
        check_name(check, &key("name"), "rule", name);
        check.rule(&key("name"), names.insert(name), || format!("a rule named {name:?} comes earlier"));
        match &rule.threshold {
            Threshold::Value(value) => check.range(&key("threshold"), *value, -VALUE_ABS_MAX..=VALUE_ABS_MAX),
            Threshold::Knob(knob) => check.rule(&key("threshold"), knobs.contains_key(knob), || unknown_knob(knob)),
        }
        check.range(&key("for_windows"), rule.for_windows, 1..=WINDOWS_MAX);
        check.range(&key("cooldown_windows"), rule.cooldown_windows, 0..=WINDOWS_MAX);
        let moves = !rule.adjust.is_empty() || !rule.scale.is_empty() || !rule.meta.is_empty();
        check.rule(&key("adjust"), moves, || "a rule must adjust or scale a knob, or move a meta parameter".to_owned());
        for (name, delta) in &rule.meta {
            let key = join(&key("meta"), name);
            let known = MetaConfig::ADJUSTABLE.contains(&name.as_str());
            check.rule(&key, known, || {
                format!(
                    "`{name}` is not a meta parameter a rule can move, {}",
                    suggestion(name, &MetaConfig::ADJUSTABLE)
                )
            });
            let ok = delta.is_finite() && *delta != 0.0 && delta.abs() <= VALUE_ABS_MAX;
            check.rule(&key, ok, || format!("{delta} is not a non-zero finite change"));
        }
        for (knob, factor) in &rule.scale {
            let key = join(&key("scale"), knob);
            check.rule(&key, knobs.contains_key(knob), || unknown_knob(knob));
            let ok = factor.is_finite() && *factor > 0.0 && *factor != 1.0 && *factor <= VALUE_ABS_MAX;
            check.rule(&key, ok, || format!("{factor} is not a positive factor other than 1"));
        }
        for (knob, delta) in &rule.adjust {
            let key = join(&key("adjust"), knob);
            check.rule(&key, knobs.contains_key(knob), || unknown_knob(knob));
            let ok = delta.is_finite() && *delta != 0.0 && delta.abs() <= VALUE_ABS_MAX;
            check.rule(&key, ok, || format!("{delta} is not a non-zero finite change"));
        }
    }
}

impl RewardConfig {
    pub(crate) fn check(&self, check: &mut Check) {
        check.range("reward.gain_weight", self.gain_weight, 0.0..=100.0);
        check.range("reward.stability_weight", self.stability_weight, 0.0..=100.0);
        check.range("reward.vram_weight", self.vram_weight, 0.0..=100.0);
        check.range("reward.latency_weight", self.latency_weight, 0.0..=100.0);
        let total = self.gain_weight + self.stability_weight + self.vram_weight + self.latency_weight;
        check.rule("reward", total > 0.0, || format!("the reward weights add up to {total}, not a positive number"));
        positive(check, "reward.gain_scale", self.gain_scale);
        positive(check, "reward.latency_target_ms", self.latency_target_ms);
        check.range("reward.ci_window", self.ci_window, 2..=4096);
        check.range("reward.ci_level", self.ci_level, 0.5..=0.999);
    }
}

impl SafetyConfig {
    pub(crate) fn check(&self, check: &mut Check) {
        check.range("safety.reward_floor", self.reward_floor, -VALUE_ABS_MAX..=VALUE_ABS_MAX);
        positive(check, "safety.max_drop", self.max_drop);
        check.range("safety.best_decay_per_window", self.best_decay_per_window, 0.0..=1.0);
        check.range("safety.rollback_cooldown_windows", self.rollback_cooldown_windows, 0..=WINDOWS_MAX);
        check.range("safety.vram_high_max", self.vram_high_max, 0.01..=1.0);
        check.range("safety.vram_target", self.vram_target, 0.01..=self.vram_high_max.max(0.01));
        check.range("safety.batch_scale_min", self.batch_scale_min, 0.01..=1.0);
    }
}

impl DomainMetaConfig {
    pub(crate) fn check(&self, check: &mut Check) {
        check.range("domain.min_observations", self.min_observations, 2..=WINDOWS_MAX);
        check.range("domain.emit_interval_windows", self.emit_interval_windows, 1..=WINDOWS_MAX);
        check.range("domain.decay", self.decay, 0.5..=1.0);
        check.range("domain.ci_level", self.ci_level, 0.5..=0.999);
        positive(check, "domain.confidence_half_width", self.confidence_half_width);
    }
}

impl CrossMetaConfig {
    pub(crate) fn check(&self, check: &mut Check) {
        check.range("aggregator.outlier_z_max", self.outlier_z_max, 1.0..=1000.0);
        check.range("aggregator.outlier_min_domains", self.outlier_min_domains, 3..=4096);
        let floor = self.outlier_mad_floor;
        check.rule("aggregator.outlier_mad_floor", floor > 0.0 && floor <= 1.0, || {
            format!("{floor} is out of range (0, 1]: with no floor, a domain a hair from others that agree exactly is an outlier")
        });
        positive(check, "aggregator.temperature", self.temperature);
        check.range("aggregator.gamma_diversity", self.gamma_diversity, 0.0..=1.0);
    }
}

impl MetaOptimizerConfig {
    pub(crate) fn check(&self, check: &mut Check) {
        check.range("reptile.lr", self.lr, 0.0..=1.0);
        check.rule("reptile.lr", self.lr != 0.0, || "0 would never move the prior".to_owned());
        check.range("reptile.memory_damping", self.memory_damping, 0.0..=1.0);
        check.range("reptile.checkpoints_len", self.checkpoints_len, 1..=1024);
        positive(check, "reptile.rollback_drop", self.rollback_drop);
        check.range("reptile.best_decay_per_update", self.best_decay_per_update, 0.0..=1.0);
    }
}

impl MetaSchedulerConfig {
    pub(crate) fn check(&self, check: &mut Check) {
        check.range("scheduler.update_interval_windows", self.update_interval_windows, 1..=WINDOWS_MAX);
        positive(check, "scheduler.latency_target_ms", self.latency_target_ms);
        check.range("scheduler.max_deferral_windows", self.max_deferral_windows, 0..=WINDOWS_MAX);
    }
}

impl MetaValidatorConfig {
    pub(crate) fn check(&self, check: &mut Check) {
        check.range("validator.packet_bytes_max", self.packet_bytes_max, 256..=1 << 24);
        check.range("validator.entries_max", self.entries_max, 2..=4096);
        check.range("validator.value_abs_max", self.value_abs_max, 1.0..=VALUE_ABS_MAX);
        check.range("validator.jobs_max", self.jobs_max, 1..=1 << 20);
        check.range("validator.domains_max", self.domains_max, 1..=1 << 16);
        for (metric, [min, max]) in &self.ranges {
            let key = join("validator.ranges", metric);
            check_name(check, &key, "metric", metric);
            let fits = |x: &f64| x.is_finite() && x.abs() <= VALUE_ABS_MAX;
            let ok = fits(min) && fits(max) && min <= max;
            check.rule(&key, ok, || format!("[{min}, {max}] is not a range with min ≤ max within ±{VALUE_ABS_MAX}"));
            // The reward and the rules read these two as fractions.
            if ok && ["stability_mean", "vram_high"].contains(&metric.as_str()) {
                let fraction = *min >= 0.0 && *max <= 1.0;
                check.rule(&key, fraction, || {
                    format!("[{min}, {max}] is not within [0, 1]: the reward reads {metric} as a fraction")
                });
            }
        }
    }
}

impl MetaStorageConfig {
    pub(crate) fn check(&self, check: &mut Check) {
        check.range("storage.versions_kept", self.versions_kept, 1..=1000);
    }
}
