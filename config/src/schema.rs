//! The sections of a run config, their defaults and their validity rules.
//!
//! Adding a section: a struct with the same derives and serde attributes as
//! the others, a `Default` impl, a `check` method stating each field's rule
//! with its dotted key, and a field in [`Config`] plus a line in
//! [`Config::problems`]. Reading, unknown-key detection, positions and the
//! canonical form follow from the struct.

use std::fmt::Display;
use std::ops::RangeInclusive;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::governance::{
    self, CrossMetaConfig, DomainMetaConfig, KnobConfig, MetaConfig, MetaOptimizerConfig, MetaSchedulerConfig,
    MetaStorageConfig, MetaValidatorConfig, RewardConfig, RuleConfig, SafetyConfig,
};

/// A whole run config: one field per `[section]` of the TOML file.
///
/// Every field has a default, so an empty file is a valid config. The
/// `Deserialize` impl checks shape only (types, unknown keys); use
/// [`Config::from_toml_str`] or [`Config::load`] to also check every rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[run]`: identity of the run.
    pub run: RunConfig,
    /// `[bus]`: limits of the deterministic bus.
    pub bus: BusConfig,
    /// `[chronicle]`: how the journal is cut into frames.
    pub chronicle: ChronicleConfig,
    /// `[meta]`: the integrative layer's own parameters.
    pub meta: MetaConfig,
    /// `[knobs.<name>]`: the job knobs. Written, it replaces the default set
    /// (`learning_rate`, `batch_size`).
    pub knobs: BTreeMap<String, KnobConfig>,
    /// `[reward]`: how a telemetry packet is scored.
    pub reward: RewardConfig,
    /// `[[rules]]`: the rules, in evaluation order. Written, they replace the
    /// default rules.
    pub rules: Vec<RuleConfig>,
    /// `[safety]`: rollback thresholds and resource hints.
    pub safety: SafetyConfig,
    /// `[domain]`: the per-domain learner.
    pub domain: DomainMetaConfig,
    /// `[aggregator]`: the cross-domain aggregator.
    pub aggregator: CrossMetaConfig,
    /// `[reptile]`: the online Reptile meta-optimizer.
    pub reptile: MetaOptimizerConfig,
    /// `[scheduler]`: when the meta update runs.
    pub scheduler: MetaSchedulerConfig,
    /// `[validator]`: limits of telemetry packets and domain updates.
    pub validator: MetaValidatorConfig,
    /// `[storage]`: versions of the learned prior.
    pub storage: MetaStorageConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            run: RunConfig::default(),
            bus: BusConfig::default(),
            chronicle: ChronicleConfig::default(),
            meta: MetaConfig::default(),
            knobs: governance::default_knobs(),
            reward: RewardConfig::default(),
            rules: governance::default_rules(),
            safety: SafetyConfig::default(),
            domain: DomainMetaConfig::default(),
            aggregator: CrossMetaConfig::default(),
            reptile: MetaOptimizerConfig::default(),
            scheduler: MetaSchedulerConfig::default(),
            validator: MetaValidatorConfig::default(),
            storage: MetaStorageConfig::default(),
        }
    }
}

impl Config {
    /// Every rule this config breaks, as (dotted key, message), in field order.
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut check = Check::default();
        // `run`: any seed a file can hold is valid.
        self.bus.check(&mut check);
        self.chronicle.check(&mut check);
        self.meta.check(&mut check);
        governance::check_knobs(&self.knobs, &mut check);
        self.reward.check(&mut check);
        governance::check_rules(&self.rules, &self.knobs, &mut check);
        self.safety.check(&mut check);
        self.domain.check(&mut check);
        self.aggregator.check(&mut check);
        self.reptile.check(&mut check);
        self.scheduler.check(&mut check);
        self.validator.check(&mut check);
        self.storage.check(&mut check);
        check.0
    }
}

/// `[run]`: identity of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Run seed; every random generator of the run derives from it.
    /// Default 42. A TOML file can hold at most `i64::MAX`.
    pub seed: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig { seed: 42 }
    }
}

/// `[bus]`: limits of the deterministic bus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// Most deliveries pending on the bus at once, in messages.
    /// Default 1048576 (2^20); valid 1..=16777216 (2^24).
    pub queue_len_max: u32,
    /// Most messages one handler call may emit. Default 4096; valid 1..=1048576.
    pub outbox_len_max: u32,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig { queue_len_max: 1 << 20, outbox_len_max: 4096 }
    }
}

impl BusConfig {
    fn check(&self, check: &mut Check) {
        check.range("bus.queue_len_max", self.queue_len_max, 1..=1 << 24);
        check.range("bus.outbox_len_max", self.outbox_len_max, 1..=1 << 20);
    }
}

/// `[chronicle]`: how the journal is cut into frames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChronicleConfig {
    /// Most records in one chronicle frame. Default 4096; valid 1..=1048576.
    pub frame_records_max: u32,
    /// Payload bytes after which a frame is closed.
    /// Default 1048576 (1 MiB); valid 1024..=67108864 (64 MiB).
    pub frame_bytes_max: u32,
}

impl Default for ChronicleConfig {
    fn default() -> Self {
        ChronicleConfig { frame_records_max: 4096, frame_bytes_max: 1 << 20 }
    }
}

impl ChronicleConfig {
    fn check(&self, check: &mut Check) {
        check.range("chronicle.frame_records_max", self.frame_records_max, 1..=1 << 20);
        check.range("chronicle.frame_bytes_max", self.frame_bytes_max, 1024..=1 << 26);
    }
}

/// The rules a config breaks, as (dotted key, message).
#[derive(Default)]
pub(crate) struct Check(Vec<(String, String)>);

impl Check {
    /// Notes `message()` at `key` unless `ok`.
    pub(crate) fn rule(&mut self, key: &str, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push((key.to_owned(), message()));
        }
    }

    pub(crate) fn range<T: PartialOrd + Display>(&mut self, key: &str, value: T, range: RangeInclusive<T>) {
        if !range.contains(&value) {
            let (min, max) = range.into_inner();
            let message = format!("{value} is out of range {min}..={max}");
            self.0.push((key.to_owned(), message));
        }
    }
}
