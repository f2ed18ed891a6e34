//! metagov's governance actors: one bus actor per component of
//! `metagov-governance`, the messages they exchange (with their topics), and
//! [`MetaSupervisor`], which assembles them on a bus from a config, and
//! reads their output back: typed egress views ([`Output`]), each knob
//! change put in words ([`explain`]) and each packet's lifecycle
//! ([`trace`]).
//!
//! This crate binds math to messages and nothing else: it never does I/O,
//! never reads the clock or the environment, and holds no formula of its own
//! (every number comes from `metagov-governance`). Every real number it
//! publishes is quantized to the 1e-6 grid at the point of publishing.
#![deny(missing_docs)]

mod components;
pub mod explain;
pub mod messages;
mod output;
mod supervisor;
pub mod trace;

pub use components::{
    AggregatorActor, DomainLearnerActor, IntegrativeActor, ReptileActor, SchedulerActor, TelemetryHooksActor,
    ValidatorActor,
};
pub use output::{FiredRuleView, Output, PolicyUpdateView, RejectionView, ResourceHintView, RewardView};
pub use supervisor::{bus_limits, MetaSupervisor, ACTOR_NAMES};
