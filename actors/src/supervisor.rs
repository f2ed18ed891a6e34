//! `MetaSupervisor`: builds the bus and every governance actor from a config,
//! wired as ARCHITECTURE.md's message flow draws it: telemetry and federation
//! packs are the only ingress, and the topics of [`EGRESS_TOPICS`] are handed
//! to the caller after every tick.

use metagov_bus::{Bus, BusError, BusLimits, Journal};
use metagov_config::Config;

use crate::components::*;
use crate::messages::{EGRESS_TOPICS, INGRESS_TOPICS};

/// The actor names, in the order they are added to the bus (the order the
/// chronicle header records and replay checks).
pub const ACTOR_NAMES: [&str; 7] =
    ["validator", "integrative", "domain_learner", "scheduler", "aggregator", "reptile", "telemetry_hooks"];

// The bus's value range is defined once, in `metagov_config` (a leaf that
// validates files before any bus exists); the bus's `Fixed` must agree.
const _: () = assert!(
    metagov_bus::Fixed::ABS_MAX == metagov_config::VALUE_ABS_MAX,
    "config bounds and the bus's fixed-point range are one limit"
);

/// The bus limits a config asks for.
pub fn bus_limits(config: &Config) -> BusLimits {
    BusLimits { queue_len_max: config.bus.queue_len_max, outbox_len_max: config.bus.outbox_len_max }
}

/// `MetaSupervisor`: the assembly of the governance actors.
pub struct MetaSupervisor;

impl MetaSupervisor {
    /// A bus carrying every governance actor configured by `config`, seeded
    /// with `config.run.seed`, journaling into `journal`.
    pub fn build<J: Journal>(config: &Config, journal: J) -> Result<Bus<J>, BusError> {
        let mut bus = Bus::new(config.run.seed, bus_limits(config), journal);
        let [validator, integrative, domain_learner, scheduler, aggregator, reptile, hooks] = ACTOR_NAMES;
        bus.add_actor(validator, Box::new(ValidatorActor::new(config)))?;
        bus.add_actor(integrative, Box::new(IntegrativeActor::new(config)))?;
        bus.add_actor(domain_learner, Box::new(DomainLearnerActor::new(config)))?;
        bus.add_actor(scheduler, Box::new(SchedulerActor::new(config)))?;
        bus.add_actor(aggregator, Box::new(AggregatorActor::new(config)))?;
        bus.add_actor(reptile, Box::new(ReptileActor::new(config)))?;
        bus.add_actor(hooks, Box::new(TelemetryHooksActor::new()))?;
        for topic in INGRESS_TOPICS {
            bus.allow_ingress(topic)?;
        }
        for topic in EGRESS_TOPICS {
            bus.tap_egress(topic)?;
        }
        Ok(bus)
    }
}

#[cfg(test)]
mod tests {
    use metagov_bus::{MemoryJournal, OwnedEntry, Value};
    use metagov_config::Config;

    use super::*;
    use crate::messages::*;

    fn pack(domain: &str, keys: &[&str], vector: &[f64]) -> Value {
        let real = |x: f64| Value::real(x).unwrap();
        Value::Record(vec![
            ("domain".into(), Value::Text(domain.into())),
            ("keys".into(), Value::List(keys.iter().map(|k| Value::Text(k.to_string())).collect())),
            ("vector".into(), Value::List(vector.iter().map(|&x| real(x)).collect())),
            ("reward".into(), real(0.5)),
            ("confidence".into(), real(0.9)),
            ("window".into(), Value::Int(1)),
            ("observations".into(), Value::Int(10)),
        ])
    }

    /// The topics delivered at `tick`, in order.
    fn topics_at(entries: &[OwnedEntry], tick: u64) -> Vec<String> {
        entries
            .iter()
            .filter_map(|e| match e {
                OwnedEntry::Delivery(d) if d.tick == tick => Some(d.topic.to_string()),
                _ => None,
            })
            .collect()
    }

    /// The payloads published on `topic`, in order.
    fn published<'a>(entries: &'a [OwnedEntry], topic: &str) -> Vec<&'a Value> {
        entries
            .iter()
            .filter_map(|e| match e {
                OwnedEntry::Delivery(d) if &*d.topic == topic => Some(&*d.payload),
                _ => None,
            })
            .collect()
    }

    /// A job reporting `tau` = 1e9 (within `validator.value_abs_max`) makes
    /// its domain's estimate 1e9. Against three domains at the default, its
    /// robust z was about 2.7e10, which the bus cannot carry: publishing the
    /// aggregate report stopped the run. It is dropped, reported at z = 1e6.
    #[test]
    fn a_domain_whose_z_exceeds_the_bus_range_is_dropped_and_the_run_goes_on() {
        let config = Config::default();
        let mut bus = MetaSupervisor::build(&config, MemoryJournal::new(100_000)).unwrap();
        for window in 1..=10 {
            for domain in ["nlp", "speech", "vision", "robotics"] {
                let params = if domain == "robotics" { r#", "params": {"learning_rate": 1e9}"# } else { "" };
                let line = format!(
                    r#"{{"job": "{domain}-1", "domain": "{domain}", "window": {window}, "metrics": {{"gain_p50": 0.1, "stability_mean": 0.8}}{params}}}"#
                );
                bus.ingress(TELEMETRY_RAW, Value::Text(line)).expect("the run goes on");
            }
        }
        let entries = bus.into_journal().entries;
        let aggregates = published(&entries, CROSS_AGGREGATE);
        let last = aggregates.last().expect("an aggregate of four domains");
        let Some(Value::List(dropped)) = last.get("dropped") else { panic!("{last}") };
        assert_eq!(dropped.len(), 1, "{last}");
        assert_eq!(dropped[0].get("domain").and_then(Value::as_str), Some("robotics"));
        assert_eq!(dropped[0].get("z").and_then(Value::as_f64), Some(1e6));
    }

    /// A pack claiming a reward of 1e6 with knob values of ±1e9 (within
    /// `validator.value_abs_max`) was admitted and took most of the
    /// aggregate's weight. It is refused as `out_of_range`, the detail naming
    /// the field and the value, and the aggregate is of the telemetry's
    /// domains alone.
    #[test]
    fn a_pack_outside_the_reward_or_knob_ranges_is_rejected_end_to_end() {
        let config = Config::default();
        let mut bus = MetaSupervisor::build(&config, MemoryJournal::new(100_000)).unwrap();
        let keys = ["batch_size", "learning_rate"];
        let mut rogue = pack("peer", &keys, &[1e9, -1e9]);
        let mut greedy = pack("greedy", &keys, &[64.0, 0.1]);
        if let (Value::Record(r), Value::Record(g)) = (&mut rogue, &mut greedy) {
            for fields in [r, g] {
                fields.retain(|(k, _)| k != "reward");
                fields.push(("reward".into(), Value::real(1e6).unwrap()));
            }
        }
        bus.ingress(FEDERATION_POLICY_PACK, rogue).unwrap();
        bus.ingress(FEDERATION_POLICY_PACK, greedy).unwrap();
        for window in 1..=10 {
            for domain in ["nlp", "speech", "vision", "robotics"] {
                let line = format!(
                    r#"{{"job": "{domain}-1", "domain": "{domain}", "window": {window}, "metrics": {{"gain_p50": 0.1, "stability_mean": 0.8}}}}"#
                );
                bus.ingress(TELEMETRY_RAW, Value::Text(line)).unwrap();
            }
        }
        let entries = bus.into_journal().entries;
        let rejected: Vec<(&str, &str)> = published(&entries, TELEMETRY_REJECTED)
            .into_iter()
            .map(|r| {
                (r.get("reason").and_then(Value::as_str).unwrap(), r.get("detail").and_then(Value::as_str).unwrap())
            })
            .collect();
        assert_eq!(
            rejected,
            [
                ("out_of_range", "vector.batch_size: 1000000000 is out of range 8..=128"),
                ("out_of_range", "reward: 1000000 is out of range -1..=0.8"),
            ]
        );
        let aggregate = *published(&entries, CROSS_AGGREGATE).last().expect("an aggregate");
        let Some(Value::List(used)) = aggregate.get("used") else { panic!("{aggregate}") };
        let used: Vec<&str> = used.iter().filter_map(Value::as_str).collect();
        assert_eq!(used, ["nlp", "robotics", "speech", "vision"], "{aggregate}");
    }

    #[test]
    fn federation_packs_are_validated_before_they_reach_the_aggregator() {
        let config = Config::default();
        let mut bus = MetaSupervisor::build(&config, MemoryJournal::new(1000)).unwrap();
        assert_eq!(bus.actor_names(), ACTOR_NAMES);
        let keys = ["batch_size", "learning_rate"];
        bus.ingress(FEDERATION_POLICY_PACK, pack("vision", &keys, &[64.0, 0.05])).unwrap();
        bus.ingress(FEDERATION_POLICY_PACK, pack("nlp", &keys[..1], &[64.0])).unwrap();
        bus.ingress(FEDERATION_POLICY_PACK, Value::Text("not a pack".into())).unwrap();
        let entries = bus.into_journal().entries;
        assert_eq!(topics_at(&entries, 1), [FEDERATION_POLICY_PACK, DOMAIN_UPDATE]);
        for tick in [2, 3] {
            assert_eq!(topics_at(&entries, tick), [FEDERATION_POLICY_PACK, TELEMETRY_REJECTED], "tick {tick}");
        }
        let reasons: Vec<&str> = entries
            .iter()
            .filter_map(|e| match e {
                OwnedEntry::Delivery(d) if &*d.topic == TELEMETRY_REJECTED => d.payload.get("reason")?.as_str(),
                _ => None,
            })
            .collect();
        assert_eq!(reasons, ["wrong_dimension", "missing_field"]);
    }
}
