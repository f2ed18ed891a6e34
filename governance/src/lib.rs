//! metagov's governance math: the components of docs/governance.md as pure, deterministic
//! state machines.
//!
//! This crate owns the integrative layer ([`MetaIntegrativeLayer`] with one
//! [`MetaState`] per job: reward, rules, safety rollback, resource hint),
//! the per-domain learner ([`DomainMetaLearner`]), the cross-domain
//! aggregator ([`CrossDomainMetaAggregator`]), the online Reptile
//! meta-optimizer ([`OnlineReptileOptimizer`]), the update scheduler
//! ([`MetaScheduler`]), packet and update validation with reason codes
//! ([`MetaPacketValidator`]), the metrics snapshot
//! ([`build_meta_metrics_snapshot`]) and prior versioning
//! ([`MetaStorageManager`]). Every formula is written down, with its
//! defaults, in `docs/governance.md`.
//!
//! It does no I/O and knows nothing of the bus: inputs are method calls,
//! outputs are returned values, and the actors bind them to topics. It never
//! reads the clock or the environment: time is counted in windows
//! (telemetry packets), and no randomness is needed. Iteration is over
//! sorted keys (`BTreeMap`, sorted `Vec`s) only, and every transcendental
//! (`exp`, `ln`, the Student-t quantile) is built on `libm` and IEEE 754
//! arithmetic, so equal inputs give equal outputs bit for bit, across
//! platforms too (docs/governance.md, "Determinism").
//!
//! Configs are the `metagov-config` types, re-exported here.
//!
//! ```
//! use metagov_governance::{IntegrativeMetaConfig, MetaIntegrativeLayer, MetaPacketValidator, MetaValidatorConfig};
//!
//! let mut validator = MetaPacketValidator::new(MetaValidatorConfig::default());
//! let line = r#"{"job": "bert-a", "domain": "nlp", "window": 1,
//!                "metrics": {"gain_p50": 0.15, "stability_mean": 0.8, "vram_high": false}}"#;
//! let packet = validator.validate_telemetry_line(line).unwrap();
//! let mut layer = MetaIntegrativeLayer::new(IntegrativeMetaConfig::default());
//! let decision = layer.update(&packet);
//! // gain 0.5·(0.15 − g_min 0)/0.2 = 0.375, stability 0.3·(2·0.8 − 1) = 0.18.
//! assert!((decision.scoring.total - 0.555).abs() < 1e-12);
//! ```
#![deny(missing_docs)]

mod aggregator;
mod domain;
mod integrative;
mod packet;
mod reptile;
mod scheduler;
mod snapshot;
mod stats;
mod storage;
mod validator;

pub use aggregator::{
    AggregateMeta, CrossAggregate, CrossDomainMetaAggregator, DropReason, Dropped, NothingToAggregate, Z_REPORTED_MAX,
};
pub use domain::{DomainMetaLearner, DomainMetaUpdate};
pub use integrative::{
    score, Evidence, FiredRule, IntegrativeDecision, KnobEvidence, MetaIntegrativeLayer, MetaState, ResourceHint,
    RollbackReason, RuleEvidence, SafetyEvidence, SafetyHold, Scoring,
};
pub use metagov_config::{
    Comparison, CrossMetaConfig, DomainMetaConfig, IntegrativeMetaConfig, KnobConfig, MetaLearningConfig,
    MetaOptimizerConfig, MetaSchedulerConfig, MetaStorageConfig, MetaValidatorConfig, RewardConfig, RuleConfig,
    SafetyConfig, Signal, Threshold,
};
pub use packet::TelemetryPacket;
pub use reptile::OnlineReptileOptimizer;
pub use scheduler::MetaScheduler;
pub use snapshot::{build_meta_metrics_snapshot, MetaMetricsInput, MetaMetricsSnapshot};
pub use storage::{LoadedPrior, MetaStorageManager, PriorError, StoredPrior, PRIOR_BYTES_MAX};
pub use validator::{MetaPacketValidator, ReasonCode, Rejection, UpdateBounds, ID_CHARS_MAX};
