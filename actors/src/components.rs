//! One actor per governance component. Each binds a `metagov-governance`
//! type to the bus: it reads its topics, calls the math, and publishes the
//! result as a message (ARCHITECTURE.md, `actors/`).
//!
//! Actors trust the shapes of the topics other actors publish (a mismatch is
//! a bug and stops the run with the actor and delivery named); only the
//! validator faces data from outside, and it never panics on it.

use std::collections::BTreeMap;

use metagov_bus::{Actor, CycleRecord, Envelope, Fixed, MetaFrame, Outbox, Value};
use metagov_config::Config;
use metagov_governance::{
    build_meta_metrics_snapshot, CrossDomainMetaAggregator, DomainMetaLearner, DomainMetaUpdate, MetaIntegrativeLayer,
    MetaMetricsInput, MetaPacketValidator, MetaScheduler, OnlineReptileOptimizer, ReasonCode, Rejection, UpdateBounds,
};
use ndarray::Array1;

use crate::messages::*;

/// A number of an actor's state as shown by `replay --inspect`: on the
/// grid, or unit when it has none (the best of a job with no window yet is
/// −∞). Never published, so nothing is substituted in a run.
fn shown(x: f64) -> Value {
    Value::real(x).unwrap_or(Value::Unit)
}

fn shown_map(map: &BTreeMap<String, f64>) -> Value {
    Value::Record(map.iter().map(|(k, &v)| (k.clone().into(), shown(v))).collect())
}

/// Stops the run on a payload another actor shaped wrongly (a bug, named).
fn expect<T>(result: Result<T, ShapeMismatch>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

/// Admits telemetry and federation packs (`MetaPacketValidator`).
pub struct ValidatorActor {
    validator: MetaPacketValidator,
    /// What a pack may hold: the knobs' ranges and the reward's.
    bounds: UpdateBounds,
}

impl ValidatorActor {
    /// The validator for `config`. A pack's reals arrive on the bus's grid,
    /// so its bounds are rounded to the grid too: a value within a bound
    /// still is once rounded (rounding is monotone).
    pub fn new(config: &Config) -> Self {
        let on_grid = |x: f64| Fixed::from_f64(x).map_or(x, Fixed::to_f64);
        ValidatorActor {
            validator: MetaPacketValidator::new(config.validator.clone()),
            bounds: UpdateBounds::new(&config.knobs, &config.reward).map(on_grid),
        }
    }

    fn telemetry(&mut self, payload: &Value, out: &mut Outbox<'_>) {
        let result = match payload {
            Value::Text(line) => self.validator.validate_telemetry_line(line),
            Value::Bytes(_) => {
                Err(Rejection { reason: ReasonCode::MalformedJson, detail: "packet is not UTF-8 text".into() })
            }
            structured => self.validator.validate_telemetry(&structured.to_json()),
        };
        match result {
            Ok(packet) => out.publish(TELEMETRY_ACCEPTED, packet_to_value(&packet)),
            Err(rejection) => {
                let job = payload.get("job").and_then(Value::as_str);
                tracing::info!(reason = rejection.reason.name(), detail = %rejection.detail, "telemetry rejected");
                out.publish(TELEMETRY_REJECTED, rejection_to_value(&rejection, job));
            }
        }
    }

    fn pack(&mut self, payload: &Value, out: &mut Outbox<'_>) {
        let result = domain_update_from_value(payload, FEDERATION_POLICY_PACK)
            .map_err(|e| Rejection { reason: ReasonCode::MissingField, detail: e.to_string() })
            .and_then(|update| self.validator.validate_update(&update, &self.bounds).map(|()| update));
        match result {
            Ok(update) => out.publish(DOMAIN_UPDATE, domain_update_to_value(&update)),
            Err(rejection) => {
                tracing::info!(reason = rejection.reason.name(), detail = %rejection.detail, "policy pack rejected");
                out.publish(TELEMETRY_REJECTED, rejection_to_value(&rejection, None));
            }
        }
    }
}

impl Actor for ValidatorActor {
    fn subscriptions(&self) -> Vec<String> {
        vec![TELEMETRY_RAW.into(), FEDERATION_POLICY_PACK.into()]
    }

    fn handle(&mut self, envelope: &Envelope, out: &mut Outbox<'_>) {
        if &*envelope.topic == TELEMETRY_RAW {
            self.telemetry(&envelope.payload, out);
        } else {
            self.pack(&envelope.payload, out);
        }
    }
}

/// The integrative layer on the bus: scores each
/// admitted window and answers with knob changes and hints.
pub struct IntegrativeActor {
    layer: MetaIntegrativeLayer,
}

impl IntegrativeActor {
    /// The layer for `config`.
    pub fn new(config: &Config) -> Self {
        IntegrativeActor { layer: MetaIntegrativeLayer::new(config.integrative()) }
    }
}

impl Actor for IntegrativeActor {
    fn subscriptions(&self) -> Vec<String> {
        vec![TELEMETRY_ACCEPTED.into(), PRIOR_UPDATED.into()]
    }

    /// Per job: knobs, the known-good snapshot, the smoothed reward and its
    /// best, the best recent loss, each rule's streak and the last window
    /// of its cooldown, the rollback cooldown, an open incident.
    fn state(&self) -> Value {
        let jobs = self.layer.states().iter().map(|(job, s)| {
            let counts = |m: &BTreeMap<String, u32>| {
                Value::Record(m.iter().map(|(k, &v)| (k.clone().into(), Value::Int(i64::from(v)))).collect())
            };
            let until = |m: &BTreeMap<String, u64>| {
                Value::Record(
                    m.iter()
                        .map(|(k, &v)| (k.clone().into(), Value::Int(i64::try_from(v).unwrap_or(i64::MAX))))
                        .collect(),
                )
            };
            let window = |w: u64| Value::Int(i64::try_from(w).unwrap_or(i64::MAX));
            let state = Value::Record(vec![
                ("windows".into(), window(s.windows)),
                ("knobs".into(), shown_map(&s.knobs)),
                ("good_knobs".into(), shown_map(&s.good_knobs)),
                ("ema_reward".into(), shown(s.ema_reward)),
                ("best_ema_reward".into(), shown(s.best_ema_reward)),
                ("best_recent_loss".into(), s.best_losses.front().map_or(Value::Unit, |&(_, l)| shown(l))),
                ("streaks".into(), counts(&s.streaks)),
                ("rule_cooldown_until".into(), until(&s.rule_cooldowns)),
                ("knob_cooldown_until".into(), until(&s.knob_cooldowns)),
                ("rollback_cooldown_until".into(), window(s.rollback_cooldown)),
                ("incident_recovery".into(), s.incident_recovery.map_or(Value::Unit, shown)),
                ("decisions".into(), window(s.decision_count)),
                ("rollbacks".into(), window(s.rollback_count)),
            ]);
            (job.clone().into(), state)
        });
        Value::Record(jobs.collect())
    }

    fn handle(&mut self, envelope: &Envelope, out: &mut Outbox<'_>) {
        if &*envelope.topic == PRIOR_UPDATED {
            let prior = expect(prior_from_value(&envelope.payload));
            self.layer.set_prior(&prior.prior);
            return;
        }
        let packet = expect(packet_from_value(&envelope.payload));
        let decision = self.layer.update(&packet);
        for rule in &decision.fired_rules {
            tracing::info!(job = %decision.job, rule = %rule.rule, value = rule.value, threshold = rule.threshold, "rule fired");
        }
        if let Some(reason) = decision.rollback {
            tracing::info!(job = %decision.job, reason = rollback_code(reason), "knobs rolled back");
        }
        if !decision.policy_updates.is_empty() || !decision.meta_updates.is_empty() || decision.rollback.is_some() {
            out.publish(POLICY_UPDATE, policy_update_to_value(&decision));
        }
        let hint = &decision.resource_hint;
        if hint.memory_high || hint.latency_high || hint.batch_scale < 1.0 {
            out.publish(RESOURCE_HINT, resource_hint_to_value(&decision));
        }
        out.publish(META_REWARD, meta_reward_to_value(&decision, &packet));
        out.publish(DECISION_EVIDENCE, evidence_to_value(&decision));
    }
}

/// Per-domain parameter estimates (`DomainMetaLearner`; docs/governance.md).
pub struct DomainLearnerActor {
    learner: DomainMetaLearner,
}

impl DomainLearnerActor {
    /// The learner for `config`.
    pub fn new(config: &Config) -> Self {
        DomainLearnerActor { learner: DomainMetaLearner::new(config.domain.clone(), &config.integrative()) }
    }
}

impl Actor for DomainLearnerActor {
    fn subscriptions(&self) -> Vec<String> {
        vec![TELEMETRY_ACCEPTED.into()]
    }

    /// Per domain: the reward-weighted estimate of each knob and the
    /// windows seen.
    fn state(&self) -> Value {
        let keys = self.learner.keys();
        let domains = self.learner.estimates().into_iter().map(|(domain, (estimate, windows))| {
            let estimate = keys.iter().zip(estimate).map(|(k, v)| (k.clone().into(), shown(v))).collect();
            let windows = Value::Int(i64::try_from(windows).unwrap_or(i64::MAX));
            (
                domain.into(),
                Value::Record(vec![("estimate".into(), Value::Record(estimate)), ("windows".into(), windows)]),
            )
        });
        Value::Record(domains.collect())
    }

    fn handle(&mut self, envelope: &Envelope, out: &mut Outbox<'_>) {
        let packet = expect(packet_from_value(&envelope.payload));
        if let Some(update) = self.learner.observe(&packet) {
            out.publish(DOMAIN_UPDATE, domain_update_to_value(&update));
        }
    }
}

/// Decides when the meta layer updates (`MetaScheduler`; docs/governance.md).
pub struct SchedulerActor {
    scheduler: MetaScheduler,
}

impl SchedulerActor {
    /// The scheduler for `config`.
    pub fn new(config: &Config) -> Self {
        SchedulerActor { scheduler: MetaScheduler::new(config.scheduler.clone()) }
    }
}

impl Actor for SchedulerActor {
    fn subscriptions(&self) -> Vec<String> {
        vec![TELEMETRY_ACCEPTED.into()]
    }

    fn handle(&mut self, envelope: &Envelope, out: &mut Outbox<'_>) {
        // The scheduler reads only the reported latency; decoding the whole
        // packet here would cost a third of the accepted-packet conversions.
        let latency = envelope.payload.get("metrics").and_then(|m| m.get("latency_ms")).and_then(Value::as_f64);
        let metrics: BTreeMap<String, f64> = latency.map(|l| ("latency_ms".to_string(), l)).into_iter().collect();
        self.scheduler.record_window();
        let waited = self.scheduler.windows_since_update();
        if self.scheduler.should_update(&metrics) {
            out.publish(META_TRIGGER, Value::Record(vec![("windows".into(), Value::Int(waited as i64))]));
        }
    }
}

/// Buffers the latest update per domain and aggregates them on a trigger
/// (`CrossDomainMetaAggregator`; docs/governance.md).
pub struct AggregatorActor {
    aggregator: CrossDomainMetaAggregator,
    /// Latest update per domain, by domain name.
    latest: BTreeMap<String, DomainMetaUpdate>,
}

impl AggregatorActor {
    /// The aggregator for `config`.
    pub fn new(config: &Config) -> Self {
        AggregatorActor {
            aggregator: CrossDomainMetaAggregator::new(
                config.aggregator.clone(),
                config.knobs.keys().cloned().collect(),
            )
            .with_knob_ranges(&config.knobs),
            latest: BTreeMap::new(),
        }
    }
}

impl Actor for AggregatorActor {
    fn subscriptions(&self) -> Vec<String> {
        vec![DOMAIN_UPDATE.into(), META_TRIGGER.into()]
    }

    /// The buffer: the latest update of each domain.
    fn state(&self) -> Value {
        let buffer = self.latest.iter().map(|(domain, update)| (domain.clone().into(), domain_update_to_value(update)));
        Value::Record(buffer.collect())
    }

    fn handle(&mut self, envelope: &Envelope, out: &mut Outbox<'_>) {
        if &*envelope.topic == DOMAIN_UPDATE {
            let update = expect(domain_update_from_value(&envelope.payload, DOMAIN_UPDATE));
            self.latest.insert(update.domain_id.clone(), update);
            return;
        }
        let updates: Vec<DomainMetaUpdate> = self.latest.values().cloned().collect();
        match self.aggregator.aggregate(&updates) {
            Ok(aggregate) => {
                for dropped in &aggregate.meta.dropped {
                    let (reason, z) = drop_code(&dropped.reason);
                    tracing::info!(domain = %dropped.domain_id, reason, z = z.unwrap_or(0.0), "domain dropped from aggregate");
                }
                out.publish(CROSS_AGGREGATE, cross_aggregate_to_value(&aggregate));
            }
            Err(nothing) => tracing::info!(dropped = nothing.dropped.len(), "nothing to aggregate"),
        }
    }
}

/// The online Reptile meta-optimizer (`OnlineReptileOptimizer`;
/// docs/governance.md): moves the prior toward each aggregate,
/// or rolls it back when the aggregate's reward collapses.
pub struct ReptileActor {
    optimizer: OnlineReptileOptimizer,
    version: u64,
    /// A job reported memory pressure since the last aggregate.
    memory_pressure: bool,
}

impl ReptileActor {
    /// The optimizer for `config`.
    pub fn new(config: &Config) -> Self {
        ReptileActor {
            optimizer: OnlineReptileOptimizer::new(config.reptile.clone(), &config.knobs),
            version: 0,
            memory_pressure: false,
        }
    }
}

impl Actor for ReptileActor {
    fn subscriptions(&self) -> Vec<String> {
        vec![CROSS_AGGREGATE.into(), RESOURCE_HINT.into()]
    }

    /// The prior, its version and how many checkpoints the ring holds.
    fn state(&self) -> Value {
        let count = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
        Value::Record(vec![
            ("version".into(), count(self.version)),
            ("prior".into(), shown_map(&self.optimizer.prior_map())),
            ("checkpoints".into(), count(self.optimizer.checkpoints() as u64)),
            ("memory_pressure".into(), Value::Bool(self.memory_pressure)),
        ])
    }

    fn handle(&mut self, envelope: &Envelope, out: &mut Outbox<'_>) {
        if &*envelope.topic == RESOURCE_HINT {
            self.memory_pressure |= matches!(envelope.payload.get("memory_high"), Some(Value::Bool(true)));
            return;
        }
        let aggregate = expect(aggregate_from_value(&envelope.payload));
        let rolled_back =
            self.optimizer.should_rollback(aggregate.reward) && self.optimizer.rollback(aggregate.reward).is_some();
        if rolled_back {
            tracing::info!(reward = aggregate.reward, "prior rolled back");
        } else {
            self.optimizer.apply(&aggregate.vector, &aggregate.keys, aggregate.reward, self.memory_pressure);
        }
        self.memory_pressure = false;
        self.version += 1;
        let keys = self.optimizer.keys().to_vec();
        let prior = self.optimizer.prior().clone();
        out.publish(PRIOR_UPDATED, prior_to_value(self.version, &keys, &prior, rolled_back, &aggregate));
    }
}

/// Running sums the hooks keep over the windows (`meta.reward` messages)
/// between two prior updates.
#[derive(Default)]
struct Window {
    windows: u64,
    reward_sum: f64,
    gain_p50_sum: f64,
    loss_sum: f64,
    loss_count: u64,
    latency_sum: f64,
    latency_count: u64,
}

/// Telemetry hooks (`build_meta_metrics_snapshot`,
/// docs/governance.md): on every prior update, a snapshot on
/// `meta.telemetry`, one cycle record and one meta frame in the journal.
/// The snapshot's reward, gain (`gain_p50`) and latency are means over the
/// windows since the previous prior update; its confidence is that of the
/// aggregate the prior update answers (a rollback too).
pub struct TelemetryHooksActor {
    window: Window,
    total_windows: u64,
    updates: u64,
    previous_prior: Option<Array1<f64>>,
}

impl TelemetryHooksActor {
    /// The hooks (they have no settings).
    pub fn new() -> Self {
        TelemetryHooksActor { window: Window::default(), total_windows: 0, updates: 0, previous_prior: None }
    }

    fn reward(&mut self, payload: &Value) {
        let w = &mut self.window;
        let num = |k: &str| payload.get(k).and_then(Value::as_f64);
        w.windows += 1;
        w.reward_sum += num("reward").unwrap_or(0.0);
        w.gain_p50_sum += num("gain_p50").unwrap_or(0.0);
        if let Some(loss) = num("loss") {
            w.loss_sum += loss;
            w.loss_count += 1;
        }
        if let Some(latency) = num("latency_ms") {
            w.latency_sum += latency;
            w.latency_count += 1;
        }
        self.total_windows += 1;
    }

    fn prior(&mut self, payload: &Value, out: &mut Outbox<'_>) {
        let view = expect(prior_from_value(payload));
        let prior: Array1<f64> = view.prior.values().copied().collect();
        self.updates += 1;
        let w = std::mem::take(&mut self.window);
        let mean = |sum: f64, n: u64| if n == 0 { 0.0 } else { sum / n as f64 };
        let snapshot = build_meta_metrics_snapshot(&MetaMetricsInput {
            reward: mean(w.reward_sum, w.windows),
            updates: self.updates,
            windows: self.total_windows,
            gain: mean(w.gain_p50_sum, w.windows),
            confidence: view.confidence,
            previous_prior: self.previous_prior.as_ref(),
            prior: &prior,
            latency_ms: mean(w.latency_sum, w.latency_count),
            journal_entries: out.journaled(),
        });
        self.previous_prior = Some(prior);
        let diagnostics = Value::Record(vec![
            ("reward".into(), real(snapshot.reward)),
            ("update_rate".into(), real(snapshot.update_rate)),
            ("gain".into(), real(snapshot.gain)),
            ("confidence".into(), real(snapshot.confidence)),
            ("drift_score".into(), real(snapshot.drift_score)),
            ("latency_ms".into(), real(snapshot.latency_ms)),
            ("journal_entries".into(), Value::Int(snapshot.journal_entries as i64)),
            ("windows".into(), Value::Int(w.windows as i64)),
            ("prior_version".into(), Value::Int(view.version as i64)),
        ]);
        out.publish(META_TELEMETRY, diagnostics.clone());
        let fixed = |x: f64| Fixed::from_f64(x).unwrap_or(Fixed::ZERO);
        let seed_state = out.rng().state().word_pos as u64;
        let rng_seed = out.rng().state().seed;
        out.record_cycle(CycleRecord {
            tick: out.tick(),
            phase: "meta".into(),
            diagnostics: diagnostics.clone(),
            signature: [fixed(snapshot.reward), fixed(snapshot.drift_score), fixed(snapshot.confidence)],
            loss: fixed(mean(w.loss_sum, w.loss_count)),
            coherence: fixed(view.coherence),
            action_code: Some(if view.rolled_back { 2 } else { 1 }),
            seed_state,
        });
        out.record_frame(MetaFrame {
            cycle_id: self.updates,
            tick: out.tick(),
            module: "telemetry_hooks".into(),
            diagnostics,
            rng_seed,
            phase: "meta".into(),
        });
    }
}

impl Default for TelemetryHooksActor {
    fn default() -> Self {
        Self::new()
    }
}

impl Actor for TelemetryHooksActor {
    fn subscriptions(&self) -> Vec<String> {
        vec![META_REWARD.into(), PRIOR_UPDATED.into()]
    }

    fn handle(&mut self, envelope: &Envelope, out: &mut Outbox<'_>) {
        if &*envelope.topic == META_REWARD {
            self.reward(&envelope.payload);
        } else {
            self.prior(&envelope.payload, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use metagov_bus::{Bus, BusLimits, MemoryJournal};

    use super::*;

    fn reward(reward: f64, gain_p50: f64, latency_ms: Option<f64>) -> Value {
        let real = |x: f64| Value::real(x).unwrap();
        Value::Record(vec![
            ("job".into(), Value::Text("j".into())),
            ("reward".into(), real(reward)),
            // The reward's gain term, which is not the snapshot's gain.
            ("gain".into(), real(0.5)),
            ("gain_p50".into(), real(gain_p50)),
            ("ci_half_width".into(), real(0.3)),
            ("loss".into(), Value::Unit),
            ("latency_ms".into(), latency_ms.map_or(Value::Unit, real)),
        ])
    }

    fn prior(version: u64, values: [f64; 2], confidence: f64) -> Value {
        let view = AggregateView {
            keys: Vec::new(),
            vector: Array1::zeros(0),
            reward: 0.5,
            confidence,
            coherence: 1.0,
            weights: Vec::new(),
            dropped: Vec::new(),
        };
        prior_to_value(version, &["a".into(), "b".into()], &Array1::from(values.to_vec()), false, &view)
    }

    /// The snapshot of a hand-computed cycle: three windows with rewards
    /// 0.2, 0.4, 0.6, `gain_p50` 0.1, 0.2, 0.3 (the reward's gain term 0.5
    /// each) and latencies 40, none, 60, then a prior from an aggregate of
    /// confidence 0.75; then one window and a prior 5 away, confidence 0.5.
    #[test]
    fn the_snapshot_averages_the_cycle_and_carries_the_aggregates_confidence() {
        let mut bus = Bus::new(1, BusLimits::default(), MemoryJournal::new(1000));
        bus.add_actor("telemetry_hooks", Box::new(TelemetryHooksActor::new())).unwrap();
        for topic in [META_REWARD, PRIOR_UPDATED] {
            bus.allow_ingress(topic).unwrap();
        }
        bus.tap_egress(META_TELEMETRY).unwrap();
        let mut snapshots = Vec::new();
        let mut ingress = |bus: &mut Bus<MemoryJournal>, topic: &str, payload: Value| {
            bus.ingress(topic, payload).unwrap();
            snapshots.extend(bus.egress().iter().map(|e| (*e.payload).clone()));
        };
        ingress(&mut bus, META_REWARD, reward(0.2, 0.1, Some(40.0)));
        ingress(&mut bus, META_REWARD, reward(0.4, 0.2, None));
        ingress(&mut bus, META_REWARD, reward(0.6, 0.3, Some(60.0)));
        ingress(&mut bus, PRIOR_UPDATED, prior(1, [1.0, 1.0], 0.75));
        ingress(&mut bus, META_REWARD, reward(0.1, 0.05, None));
        ingress(&mut bus, PRIOR_UPDATED, prior(2, [4.0, 5.0], 0.5));
        let fields = |s: &Value| {
            ["reward", "gain", "confidence", "latency_ms", "drift_score", "update_rate"]
                .map(|k| s.get(k).and_then(Value::as_f64).unwrap_or_else(|| panic!("{k} in {s}")))
        };
        assert_eq!(snapshots.len(), 2, "{snapshots:?}");
        assert_eq!(fields(&snapshots[0]), [0.4, 0.2, 0.75, 50.0, 0.0, 0.333333]);
        assert_eq!(fields(&snapshots[1]), [0.1, 0.05, 0.5, 0.0, 5.0, 0.5]);
        assert_eq!(snapshots[1].get("windows").and_then(Value::as_f64), Some(1.0));
    }
}
