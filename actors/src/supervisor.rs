//! `MetaSupervisor`: builds the bus and every governance actor from a config,
//! wired as DESIGN.md's message flow draws it.

use metagov_bus::{Bus, BusError, BusLimits, Journal};
use metagov_config::Config;

use crate::components::*;

/// The actor names, in the order they are added to the bus (the order the
/// chronicle header records and replay checks).
pub const ACTOR_NAMES: [&str; 7] =
    ["validator", "integrative", "domain_learner", "scheduler", "aggregator", "reptile", "telemetry_hooks"];

/// Seed 003's `MetaSupervisor`: the assembly of the governance actors.
pub struct MetaSupervisor;

impl MetaSupervisor {
    /// A bus carrying every governance actor configured by `config`, seeded
    /// with `config.run.seed`, journaling into `journal`.
    pub fn build<J: Journal>(config: &Config, journal: J) -> Result<Bus<J>, BusError> {
        let limits = BusLimits { queue_len_max: config.bus.queue_len_max, outbox_len_max: config.bus.outbox_len_max };
        let mut bus = Bus::new(config.run.seed, limits, journal);
        let [validator, integrative, domain_learner, scheduler, aggregator, reptile, hooks] = ACTOR_NAMES;
        bus.add_actor(validator, Box::new(ValidatorActor::new(config)))?;
        bus.add_actor(integrative, Box::new(IntegrativeActor::new(config)))?;
        bus.add_actor(domain_learner, Box::new(DomainLearnerActor::new(config)))?;
        bus.add_actor(scheduler, Box::new(SchedulerActor::new(config)))?;
        bus.add_actor(aggregator, Box::new(AggregatorActor::new(config)))?;
        bus.add_actor(reptile, Box::new(ReptileActor::new(config)))?;
        bus.add_actor(hooks, Box::new(TelemetryHooksActor::new()))?;
        Ok(bus)
    }
}
