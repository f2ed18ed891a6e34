//! A synthetic telemetry pipeline that exercises the kernel end to end:
//! seeded telemetry packets in, a small actor set that validates them, keeps
//! a per-job running reward, publishes policy updates, emits cycle records and
//! meta frames, and publishes hook snapshots that no actor consumes.
//!
//! It is the workload of `metagov bench` and of the kernel's determinism and
//! replay tests until the governance actors exist. Its payloads have the
//! shape and size of real telemetry (docs/scenarios.md, "The packets"), so the
//! chronicle-size and throughput figures it gives are representative.

use metagov_bus::{
    Actor, ActorRng, Bus, BusError, BusLimits, CycleRecord, Envelope, Fixed, Journal, MetaFrame, Outbox, Value,
};

/// Topic telemetry packets arrive on: the governance actors' raw topic.
pub use metagov_actors::messages::TELEMETRY_RAW;

/// Windows between two cycle records of one job.
const CYCLE_WINDOWS: u64 = 16;

/// The actor names of the pipeline, in registration order.
pub const ACTORS: [&str; 3] = ["validator", "learner", "hooks"];

/// Builds a bus carrying the pipeline's actors.
pub fn build_bus<J: Journal>(seed: u64, limits: BusLimits, journal: J) -> Result<Bus<J>, BusError> {
    let mut bus = Bus::new(seed, limits, journal);
    bus.add_actor("validator", Box::new(Validator))?;
    bus.add_actor("learner", Box::new(Learner::default()))?;
    bus.add_actor("hooks", Box::new(Hooks))?;
    bus.allow_ingress(TELEMETRY_RAW)?;
    Ok(bus)
}

/// Seeded telemetry for `jobs` jobs spread over `domains` domains.
pub struct TelemetryStream {
    rng: ActorRng,
    jobs: u32,
    domains: u32,
    window: u64,
    next_job: u32,
}

impl TelemetryStream {
    /// A stream seeded with `seed`. About one packet in 50 lacks its
    /// `stability_mean`, so rejections are part of the mix.
    pub fn new(seed: u64, jobs: u32, domains: u32) -> Self {
        TelemetryStream {
            rng: ActorRng::for_actor(seed, "telemetry-generator"),
            jobs: jobs.max(1),
            domains: domains.max(1),
            window: 0,
            next_job: 0,
        }
    }

    /// The next packet, round robin over jobs.
    pub fn next_packet(&mut self) -> Value {
        let job = self.next_job;
        self.next_job = (self.next_job + 1) % self.jobs;
        if job == 0 {
            self.window += 1;
        }
        let r = &mut self.rng;
        let progress = 1.0 / (1.0 + self.window as f64 / 500.0);
        let real = |x: f64| Value::Fixed(Fixed::from_f64(x).unwrap_or(Fixed::ZERO));
        let mut metrics = vec![
            ("gain_p50".into(), real(0.2 * progress + 0.02 * (r.next_f64() - 0.5))),
            ("stability_mean".into(), real((0.7 + 0.2 * r.next_f64()).min(1.0))),
            ("vram_high".into(), Value::Bool(r.below(20) == 0)),
            ("latency_ms".into(), real(30.0 + 10.0 * r.next_f64())),
            ("loss".into(), real(2.5 * progress + 0.05 * r.next_f64())),
        ];
        if r.below(50) == 0 {
            metrics.remove(1);
        }
        let metrics = Value::Record(metrics);
        let params = Value::Record(vec![
            ("tau".into(), real(0.9)),
            ("gamma_diversity".into(), real(0.3)),
            ("g_min".into(), real(0.01)),
        ]);
        Value::Record(vec![
            ("job".into(), Value::Text(format!("job-{job:03}"))),
            ("domain".into(), Value::Text(format!("domain-{}", job % self.domains))),
            ("window".into(), Value::Int(self.window as i64)),
            ("phase".into(), Value::Text("train".into())),
            ("metrics".into(), metrics),
            ("params".into(), params),
        ])
    }
}

/// Accepts packets whose required metrics are present and in range.
struct Validator;

impl Actor for Validator {
    fn subscriptions(&self) -> Vec<String> {
        vec![TELEMETRY_RAW.into()]
    }

    fn handle(&mut self, envelope: &Envelope, out: &mut Outbox<'_>) {
        let packet = &*envelope.payload;
        let metrics = packet.get("metrics");
        let stability = metrics.and_then(|m| m.get("stability_mean")).and_then(Value::as_f64);
        let gain = metrics.and_then(|m| m.get("gain_p50")).and_then(Value::as_f64);
        match (gain, stability) {
            (Some(_), Some(s)) if (0.0..=1.0).contains(&s) => out.publish("telemetry.accepted", packet.clone()),
            _ => {
                tracing::info!(reason = "missing_or_out_of_range", "rejected packet");
                out.publish(
                    "telemetry.rejected",
                    Value::Record(vec![("reason".into(), Value::Text("missing_or_out_of_range".into()))]),
                );
            }
        }
    }
}

/// Keeps an exponential moving average of a reward per job and publishes it.
#[derive(Default)]
struct Learner {
    /// Per job: (windows seen, EMA in millionths). A Vec keyed by job name,
    /// kept sorted, so nothing depends on hash order.
    jobs: Vec<(String, u64, i64)>,
}

impl Actor for Learner {
    fn subscriptions(&self) -> Vec<String> {
        vec!["telemetry.accepted".into()]
    }

    fn handle(&mut self, envelope: &Envelope, out: &mut Outbox<'_>) {
        let p = &*envelope.payload;
        let job = p.get("job").and_then(Value::as_str).unwrap_or("?").to_string();
        let m = p.get("metrics");
        let num = |k: &str| m.and_then(|m| m.get(k)).and_then(Value::as_f64).unwrap_or(0.0);
        let reward = (num("gain_p50") - 0.01) / 0.1 + 2.0 * num("stability_mean") - 1.0;
        let reward = Fixed::from_f64(reward.clamp(-3.0, 3.0)).unwrap_or(Fixed::ZERO).micros();
        let index = match self.jobs.binary_search_by(|(j, _, _)| j.as_str().cmp(&job)) {
            Ok(i) => i,
            Err(i) => {
                self.jobs.insert(i, (job.clone(), 0, reward));
                i
            }
        };
        let slot = &mut self.jobs[index];
        slot.1 += 1;
        // Integer EMA with tau = 0.9: exact, so replay needs no float care.
        slot.2 = (9 * slot.2 + reward) / 10;
        let (windows, ema) = (slot.1, Fixed::from_micros(slot.2));
        let explore = out.rng().below(1000) as i64;
        out.publish(
            "policy.update",
            Value::Record(vec![
                ("job".into(), Value::Text(job.clone())),
                ("ema_reward".into(), Value::Fixed(ema)),
                ("tau".into(), Value::Fixed(Fixed::from_micros(900_000 + explore))),
                ("windows".into(), Value::Int(windows as i64)),
            ]),
        );
        if windows % CYCLE_WINDOWS == 0 {
            let diagnostics = Value::Record(vec![
                ("ema_reward".into(), Value::Fixed(ema)),
                ("windows".into(), Value::Int(windows as i64)),
            ]);
            let seed_state = out.rng().state().word_pos as u64;
            out.record_cycle(CycleRecord {
                tick: out.tick(),
                phase: "train".into(),
                diagnostics: diagnostics.clone(),
                signature: [ema, Fixed::from_micros(explore), Fixed::ZERO],
                loss: Fixed::from_f64(num("loss")).unwrap_or(Fixed::ZERO),
                coherence: Fixed::from_micros(1_000_000),
                action_code: None,
                seed_state,
            });
            out.record_frame(MetaFrame {
                cycle_id: windows / CYCLE_WINDOWS,
                tick: out.tick(),
                module: "learner".into(),
                diagnostics,
                rng_seed: seed_state,
                phase: "train".into(),
            });
        }
    }
}

/// Turns policy updates into telemetry snapshots nobody subscribes to, so
/// unrouted publishes are exercised and journaled.
struct Hooks;

impl Actor for Hooks {
    fn subscriptions(&self) -> Vec<String> {
        vec!["policy.update".into()]
    }

    fn handle(&mut self, envelope: &Envelope, out: &mut Outbox<'_>) {
        let reward = envelope.payload.get("ema_reward").cloned().unwrap_or_default();
        out.publish(
            "meta.telemetry",
            Value::Record(vec![("reward".into(), reward), ("tick".into(), Value::Int(envelope.tick as i64))]),
        );
    }
}
