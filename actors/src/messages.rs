//! The messages of the governance actors and their topics. Each message is a
//! plain struct that converts to a bus [`Value`] when published and back when
//! received; the conversions are the only place payload shapes are written
//! down. Every real number is quantized to the 1e-6 grid on the way out.

use std::collections::BTreeMap;

use metagov_bus::{Fixed, Key, Value};
use metagov_governance::{
    CrossAggregate, DomainMetaUpdate, DropReason, Evidence, IntegrativeDecision, KnobEvidence, Rejection,
    RollbackReason, RuleEvidence, SafetyEvidence, SafetyHold, TelemetryPacket,
};
use ndarray::Array1;

/// Raw telemetry from outside: a packet record, or the raw line when it did
/// not parse.
pub const TELEMETRY_RAW: &str = "telemetry.raw";
/// Telemetry the validator admitted, as a [`TelemetryPacket`].
pub const TELEMETRY_ACCEPTED: &str = "telemetry.accepted";
/// Telemetry or packs the validator refused, with a reason code.
pub const TELEMETRY_REJECTED: &str = "telemetry.rejected";
/// New knob values for a job.
pub const POLICY_UPDATE: &str = "policy.update";
/// A resource hint for a job.
pub const RESOURCE_HINT: &str = "resource.hint";
/// One window's reward breakdown.
pub const META_REWARD: &str = "meta.reward";
/// A domain's parameter estimate.
pub const DOMAIN_UPDATE: &str = "domain.update";
/// Domain policy packs from outside (federation ingress).
pub const FEDERATION_POLICY_PACK: &str = "federation.policy_pack";
/// The scheduler's signal to aggregate.
pub const META_TRIGGER: &str = "meta.trigger";
/// The aggregator's cross-domain vector and report.
pub const CROSS_AGGREGATE: &str = "cross.aggregate";
/// The Reptile prior after an update or rollback.
pub const PRIOR_UPDATED: &str = "prior.updated";
/// Telemetry-hook snapshots.
pub const META_TELEMETRY: &str = "meta.telemetry";
/// What the integrative layer weighed in one window of one job: the safety
/// check, every rule, every knob a rule moved. Recorded for every window,
/// for audits; nobody subscribes and it is not egress.
pub const DECISION_EVIDENCE: &str = "decision.evidence";

/// The topics the outside world may inject: telemetry and federation packs.
/// Every other topic is published only by actors.
pub const INGRESS_TOPICS: [&str; 2] = [TELEMETRY_RAW, FEDERATION_POLICY_PACK];

/// The topics whose publishes are meant for the outside world (the bus hands
/// them to its caller as egress, see [`Output`](crate::Output)): rejections, decisions,
/// hints, rewards, the aggregation report, prior updates and meta telemetry.
pub const EGRESS_TOPICS: [&str; 7] =
    [TELEMETRY_REJECTED, POLICY_UPDATE, RESOURCE_HINT, META_REWARD, CROSS_AGGREGATE, PRIOR_UPDATED, META_TELEMETRY];

/// Every topic the governance actors use, in message-flow order.
pub const TOPICS: [&str; 13] = [
    TELEMETRY_RAW,
    FEDERATION_POLICY_PACK,
    TELEMETRY_ACCEPTED,
    TELEMETRY_REJECTED,
    POLICY_UPDATE,
    RESOURCE_HINT,
    META_REWARD,
    DECISION_EVIDENCE,
    DOMAIN_UPDATE,
    META_TRIGGER,
    CROSS_AGGREGATE,
    PRIOR_UPDATED,
    META_TELEMETRY,
];

/// A payload did not have the shape its topic promises: a bug upstream, since
/// only the actors publish these topics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The topic.
    pub topic: &'static str,
    /// The field that is missing or of the wrong type.
    pub field: String,
}

impl std::fmt::Display for ShapeMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` payload: field `{}` is missing or has the wrong type", self.topic, self.field)
    }
}

impl std::error::Error for ShapeMismatch {}

/// Quantizes a governance output to the bus grid.
///
/// Governance outputs are finite and within the bus's range by construction
/// (`config check` refuses bounds outside it, the validator refuses telemetry
/// outside it), so a value that does not fit is a bug: the handler panics,
/// and the bus stops the run naming the actor, the delivery and the value.
/// Nothing is ever substituted for it.
pub fn real(x: f64) -> Value {
    match Fixed::from_f64(x) {
        Ok(f) => Value::Fixed(f),
        Err(e) => panic!("governance output does not fit the bus: {e}"),
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn record(fields: Vec<(&'static str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(k, v)| (Key::Borrowed(k), v)).collect())
}

/// Metric and knob names common enough to name without allocating.
const COMMON_KEYS: [&str; 11] = [
    "batch_size",
    "g_min",
    "gain_p50",
    "gamma_diversity",
    "lambda_ci",
    "latency_ms",
    "learning_rate",
    "loss",
    "stability_mean",
    "tau",
    "vram_high",
];

/// `name` as a record key: a static one for the common names, so the
/// packets of a run do not allocate them again and again.
fn key_of(name: &str) -> Key {
    COMMON_KEYS.iter().find(|&&k| k == name).map_or_else(|| Key::Owned(name.to_string()), |&k| Key::Borrowed(k))
}

fn map_record(map: &BTreeMap<String, f64>) -> Value {
    Value::Record(map.iter().map(|(k, &v)| (key_of(k), real(v))).collect())
}

fn vector(v: &Array1<f64>) -> Value {
    Value::List(v.iter().map(|&x| real(x)).collect())
}

fn texts(items: &[String]) -> Value {
    Value::List(items.iter().map(|s| text(s)).collect())
}

/// Reads fields of one payload, naming the first missing one.
pub(crate) struct Reader<'a> {
    pub(crate) topic: &'static str,
    pub(crate) value: &'a Value,
}

impl<'a> Reader<'a> {
    pub(crate) fn field(&self, name: &str) -> Result<&'a Value, ShapeMismatch> {
        self.value.get(name).ok_or_else(|| self.mismatch(name))
    }
    pub(crate) fn mismatch(&self, name: &str) -> ShapeMismatch {
        ShapeMismatch { topic: self.topic, field: name.to_string() }
    }
    /// A number, or `None` for `Unit` (a field the payload may leave out).
    pub(crate) fn optional_num(&self, name: &str) -> Result<Option<f64>, ShapeMismatch> {
        match self.field(name)? {
            Value::Unit => Ok(None),
            other => other.as_f64().map(Some).ok_or_else(|| self.mismatch(name)),
        }
    }
    /// A text, or `None` for `Unit`.
    pub(crate) fn optional_str(&self, name: &str) -> Result<Option<&'a str>, ShapeMismatch> {
        match self.field(name)? {
            Value::Unit => Ok(None),
            other => other.as_str().map(Some).ok_or_else(|| self.mismatch(name)),
        }
    }
    pub(crate) fn num(&self, name: &str) -> Result<f64, ShapeMismatch> {
        self.field(name)?.as_f64().ok_or_else(|| self.mismatch(name))
    }
    pub(crate) fn str(&self, name: &str) -> Result<&'a str, ShapeMismatch> {
        self.field(name)?.as_str().ok_or_else(|| self.mismatch(name))
    }
    pub(crate) fn bool(&self, name: &str) -> Result<bool, ShapeMismatch> {
        match self.field(name)? {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.mismatch(name)),
        }
    }
    pub(crate) fn uint(&self, name: &str) -> Result<u64, ShapeMismatch> {
        self.field(name)?.as_u64().ok_or_else(|| self.mismatch(name))
    }
    pub(crate) fn map(&self, name: &str) -> Result<BTreeMap<String, f64>, ShapeMismatch> {
        match self.field(name)? {
            Value::Record(fields) => fields
                .iter()
                .map(|(k, v)| v.as_f64().map(|x| (k.to_string(), x)).ok_or_else(|| self.mismatch(name)))
                .collect(),
            _ => Err(self.mismatch(name)),
        }
    }
    pub(crate) fn list(&self, name: &str) -> Result<&'a [Value], ShapeMismatch> {
        match self.field(name)? {
            Value::List(items) => Ok(items),
            _ => Err(self.mismatch(name)),
        }
    }
    pub(crate) fn vector(&self, name: &str) -> Result<Array1<f64>, ShapeMismatch> {
        self.list(name)?.iter().map(|v| v.as_f64().ok_or_else(|| self.mismatch(name))).collect()
    }
    pub(crate) fn texts(&self, name: &str) -> Result<Vec<String>, ShapeMismatch> {
        self.list(name)?.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(|| self.mismatch(name))).collect()
    }
}

/// `telemetry.accepted`: an admitted packet.
pub fn packet_to_value(p: &TelemetryPacket) -> Value {
    record(vec![
        ("job", text(&p.job)),
        ("domain", text(&p.domain)),
        ("window", Value::Int(p.window as i64)),
        ("phase", p.phase.as_deref().map_or(Value::Unit, text)),
        ("metrics", map_record(&p.metrics)),
        ("params", map_record(&p.params)),
    ])
}

/// Reads a `telemetry.accepted` payload.
pub fn packet_from_value(v: &Value) -> Result<TelemetryPacket, ShapeMismatch> {
    let r = Reader { topic: TELEMETRY_ACCEPTED, value: v };
    Ok(TelemetryPacket {
        job: r.str("job")?.to_string(),
        domain: r.str("domain")?.to_string(),
        window: r.uint("window")?,
        phase: r.field("phase")?.as_str().map(str::to_string),
        metrics: r.map("metrics")?,
        params: r.map("params")?,
    })
}

/// `telemetry.rejected`: the reason code, its detail, and the job and window
/// when the packet named them.
pub fn rejection_to_value(rejection: &Rejection, job: Option<&str>) -> Value {
    record(vec![
        ("reason", text(rejection.reason.name())),
        ("detail", text(&rejection.detail)),
        ("job", job.map_or(Value::Unit, text)),
    ])
}

/// `policy.update`: the knobs that changed, the rules that fired and a
/// rollback, if any.
pub fn policy_update_to_value(d: &IntegrativeDecision) -> Value {
    let rules: Vec<Value> = d
        .fired_rules
        .iter()
        .map(|f| record(vec![("rule", text(&f.rule)), ("value", real(f.value)), ("threshold", real(f.threshold))]))
        .collect();
    record(
        vec![
            ("job", text(&d.job)),
            ("window", Value::Int(d.window as i64)),
            ("knobs", map_record(&d.policy_updates)),
            ("rules", Value::List(rules)),
            ("rollback", d.rollback.map_or(Value::Unit, |r| text(rollback_code(r)))),
            ("start", Value::Bool(d.start)),
        ]
        .into_iter()
        // Only a meta rule's decision names the job's meta parameters.
        .chain((!d.meta_updates.is_empty()).then(|| ("meta", map_record(&d.meta_updates))))
        .collect(),
    )
}

/// A `decision.evidence` payload read back: the window, the smoothed
/// reward and its band, and what the layer weighed.
#[derive(Clone, Debug, PartialEq)]
pub struct EvidenceRecord {
    /// The job.
    pub job: String,
    /// The packet's window.
    pub window: u64,
    /// The smoothed reward after the window.
    pub ema_reward: f64,
    /// The confidence half-width (none before two rewards).
    pub ci_half_width: Option<f64>,
    /// The evidence.
    pub evidence: Evidence,
}

fn option_real(x: Option<f64>) -> Value {
    x.map_or(Value::Unit, real)
}

fn count(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `decision.evidence`: flat fields for the safety check, then a list of
/// rules and a list of knobs (docs/audit.md, "Evidence").
pub fn evidence_to_value(d: &IntegrativeDecision) -> Value {
    let e = &d.evidence;
    let safety = e.safety.as_ref();
    let hold = safety.and_then(|s| s.hold);
    let rules = e.rules.iter().map(|r| {
        record(vec![
            ("rule", text(&r.rule)),
            ("value", option_real(r.value)),
            ("threshold", real(r.threshold)),
            ("held", Value::Bool(r.held)),
            ("streak", Value::Int(i64::from(r.streak))),
            ("cooldown_left", count(r.cooldown_left)),
            ("fired", Value::Bool(r.fired)),
        ])
    });
    let knobs = e.knobs.iter().map(|k| {
        record(vec![
            ("knob", text(&k.knob)),
            ("old", real(k.old)),
            ("new", real(k.new)),
            ("step_limited", Value::Bool(k.step_limited)),
            ("fitted", Value::Bool(k.fitted)),
            ("cooldown_left", count(k.cooldown_left)),
        ])
    });
    record(vec![
        ("job", text(&d.job)),
        ("window", Value::Int(d.window as i64)),
        ("ema_reward", real(d.ema_reward)),
        ("ci_half_width", option_real(d.ci_half_width)),
        ("best_ema_reward", option_real(safety.map(|s| s.best_ema_reward).filter(|b| b.is_finite()))),
        ("rollback_condition", safety.and_then(|s| s.condition).map_or(Value::Unit, |r| text(rollback_code(r)))),
        ("rollback_hold", hold.map_or(Value::Unit, |h| text(hold_code(h)))),
        (
            "rollback_cooldown_left",
            count(match hold {
                Some(SafetyHold::Cooldown(left)) => left,
                _ => 0,
            }),
        ),
        ("incident_recovery", option_real(safety.and_then(|s| s.incident_recovery))),
        ("rules", Value::List(rules.collect())),
        ("knobs", Value::List(knobs.collect())),
    ])
}

fn hold_code(hold: SafetyHold) -> &'static str {
    match hold {
        SafetyHold::IncidentOpen => "incident_open",
        SafetyHold::Cooldown(_) => "cooldown",
        SafetyHold::AtSnapshot => "at_snapshot",
    }
}

/// Reads a `decision.evidence` payload.
pub fn evidence_from_value(v: &Value) -> Result<EvidenceRecord, ShapeMismatch> {
    let r = Reader { topic: DECISION_EVIDENCE, value: v };
    let condition = match r.optional_str("rollback_condition")? {
        None => None,
        Some("below_floor") => Some(RollbackReason::BelowFloor),
        Some("drop_from_best") => Some(RollbackReason::DropFromBest),
        Some(_) => return Err(r.mismatch("rollback_condition")),
    };
    let hold = match r.optional_str("rollback_hold")? {
        None => None,
        Some("incident_open") => Some(SafetyHold::IncidentOpen),
        Some("cooldown") => Some(SafetyHold::Cooldown(r.uint("rollback_cooldown_left")?)),
        Some("at_snapshot") => Some(SafetyHold::AtSnapshot),
        Some(_) => return Err(r.mismatch("rollback_hold")),
    };
    let safety = SafetyEvidence {
        best_ema_reward: r.optional_num("best_ema_reward")?.unwrap_or(f64::NEG_INFINITY),
        condition,
        hold,
        incident_recovery: r.optional_num("incident_recovery")?,
    };
    let rules = r
        .list("rules")?
        .iter()
        .map(|item| {
            let i = Reader { topic: DECISION_EVIDENCE, value: item };
            Ok(RuleEvidence {
                rule: i.str("rule")?.to_owned(),
                value: i.optional_num("value")?,
                threshold: i.num("threshold")?,
                held: i.bool("held")?,
                streak: u32::try_from(i.uint("streak")?).map_err(|_| i.mismatch("streak"))?,
                cooldown_left: i.uint("cooldown_left")?,
                fired: i.bool("fired")?,
            })
        })
        .collect::<Result<_, ShapeMismatch>>()?;
    let knobs = r
        .list("knobs")?
        .iter()
        .map(|item| {
            let i = Reader { topic: DECISION_EVIDENCE, value: item };
            Ok(KnobEvidence {
                knob: i.str("knob")?.to_owned(),
                old: i.num("old")?,
                new: i.num("new")?,
                step_limited: i.bool("step_limited")?,
                fitted: i.bool("fitted")?,
                cooldown_left: i.uint("cooldown_left")?,
            })
        })
        .collect::<Result<_, ShapeMismatch>>()?;
    Ok(EvidenceRecord {
        job: r.str("job")?.to_owned(),
        window: r.uint("window")?,
        ema_reward: r.num("ema_reward")?,
        ci_half_width: r.optional_num("ci_half_width")?,
        evidence: Evidence { safety: Some(safety), rules, knobs },
    })
}

/// The stable code of a drop reason, with the robust z of an outlier.
pub fn drop_code(reason: &DropReason) -> (&'static str, Option<f64>) {
    match reason {
        DropReason::KeysMismatch => ("keys_mismatch", None),
        DropReason::Superseded => ("superseded", None),
        DropReason::Outlier { z } => ("outlier", Some(*z)),
    }
}

/// The stable code of a rollback reason, as reason codes are written.
pub const fn rollback_code(reason: RollbackReason) -> &'static str {
    match reason {
        RollbackReason::BelowFloor => "below_floor",
        RollbackReason::DropFromBest => "drop_from_best",
    }
}

/// `resource.hint`.
pub fn resource_hint_to_value(d: &IntegrativeDecision) -> Value {
    let h = &d.resource_hint;
    record(vec![
        ("job", text(&d.job)),
        ("window", Value::Int(d.window as i64)),
        ("batch_scale", real(h.batch_scale)),
        ("memory_high", Value::Bool(h.memory_high)),
        ("latency_high", Value::Bool(h.latency_high)),
    ])
}

/// `meta.reward`: the reward breakdown of one window of one job (the terms
/// `gain`, `stability`, `vram`, `latency` add up to `reward`), with the
/// metrics it was scored from that the telemetry hooks average.
pub fn meta_reward_to_value(d: &IntegrativeDecision, packet: &TelemetryPacket) -> Value {
    let s = &d.scoring;
    record(vec![
        ("job", text(&d.job)),
        ("domain", text(&packet.domain)),
        ("window", Value::Int(d.window as i64)),
        ("reward", real(s.total)),
        ("ema_reward", real(d.ema_reward)),
        ("gain", real(s.gain)),
        ("gain_p50", packet.metric("gain_p50").map_or(Value::Unit, real)),
        ("stability", real(s.stability)),
        ("vram", real(s.vram)),
        ("latency", real(s.latency)),
        ("ci_half_width", d.ci_half_width.map_or(Value::Unit, real)),
        ("loss", packet.metric("loss").map_or(Value::Unit, real)),
        ("latency_ms", packet.metric("latency_ms").map_or(Value::Unit, real)),
    ])
}

/// `domain.update` (also the shape of a federation policy pack).
pub fn domain_update_to_value(u: &DomainMetaUpdate) -> Value {
    record(vec![
        ("domain", text(&u.domain_id)),
        ("keys", texts(&u.keys)),
        ("vector", vector(&u.vector)),
        ("reward", real(u.reward)),
        ("confidence", real(u.confidence)),
        ("window", Value::Int(u.window as i64)),
        ("observations", Value::Int(u.observations as i64)),
    ])
}

/// Reads a `domain.update` or `federation.policy_pack` payload.
pub fn domain_update_from_value(v: &Value, topic: &'static str) -> Result<DomainMetaUpdate, ShapeMismatch> {
    let r = Reader { topic, value: v };
    Ok(DomainMetaUpdate {
        domain_id: r.str("domain")?.to_string(),
        keys: r.texts("keys")?,
        vector: r.vector("vector")?,
        reward: r.num("reward")?,
        confidence: r.num("confidence")?,
        window: r.uint("window")?,
        observations: r.uint("observations")?,
    })
}

/// `cross.aggregate`: the vector and the aggregator's report.
pub fn cross_aggregate_to_value(a: &CrossAggregate) -> Value {
    let m = &a.meta;
    let dropped = m
        .dropped
        .iter()
        .map(|d| {
            // A reason code and, for outliers, the robust z on the grid: no
            // float crosses the bus as text.
            let (reason, z) = drop_code(&d.reason);
            record(vec![("domain", text(&d.domain_id)), ("reason", text(reason)), ("z", z.map_or(Value::Unit, real))])
        })
        .collect();
    record(vec![
        ("keys", texts(&a.keys)),
        ("vector", vector(&a.vector)),
        ("reward", real(a.reward)),
        ("confidence", real(a.confidence)),
        ("used", texts(&m.used)),
        ("weights", Value::List(m.weights.iter().map(|&w| real(w)).collect())),
        ("dropped", Value::List(dropped)),
        ("entropy", real(m.entropy)),
        ("entropy_target", real(m.entropy_target)),
        ("beta", real(m.beta)),
    ])
}

/// What the Reptile actor needs from a `cross.aggregate`.
pub struct AggregateView {
    /// Knob names, sorted.
    pub keys: Vec<String>,
    /// The aggregated vector.
    pub vector: Array1<f64>,
    /// The aggregate's reward.
    pub reward: f64,
    /// The aggregate's confidence, Σ wᵢ·confidenceᵢ.
    pub confidence: f64,
    /// Normalised entropy of the weights (coherence), in [0, 1].
    pub coherence: f64,
    /// Each domain used, with its weight, in the aggregator's order.
    pub weights: Vec<(String, f64)>,
    /// Each domain dropped, with its reason code.
    pub dropped: Vec<(String, String)>,
}

/// Reads a `cross.aggregate` payload.
pub fn aggregate_from_value(v: &Value) -> Result<AggregateView, ShapeMismatch> {
    let r = Reader { topic: CROSS_AGGREGATE, value: v };
    let used = r.texts("used")?;
    let weights = r.vector("weights")?;
    if weights.len() != used.len() {
        return Err(r.mismatch("weights"));
    }
    let dropped = r
        .list("dropped")?
        .iter()
        .map(|d| {
            let d = Reader { topic: CROSS_AGGREGATE, value: d };
            Ok((d.str("domain")?.to_owned(), d.str("reason")?.to_owned()))
        })
        .collect::<Result<_, ShapeMismatch>>()?;
    let entropy = r.num("entropy")?;
    // libm, not std: the same bits on every platform.
    let coherence = if used.len() > 1 { entropy / libm::log(used.len() as f64) } else { 1.0 };
    Ok(AggregateView {
        keys: r.texts("keys")?,
        vector: r.vector("vector")?,
        reward: r.num("reward")?,
        confidence: r.num("confidence")?,
        coherence,
        weights: used.into_iter().zip(weights.iter().copied()).collect(),
        dropped,
    })
}

/// `prior.updated`: the prior after an update (or a rollback), with the
/// reward, confidence and coherence of the aggregate behind it.
pub fn prior_to_value(
    version: u64,
    keys: &[String],
    prior: &Array1<f64>,
    rolled_back: bool,
    aggregate: &AggregateView,
) -> Value {
    record(vec![
        ("version", Value::Int(version as i64)),
        ("keys", texts(keys)),
        ("prior", vector(prior)),
        ("reward", real(aggregate.reward)),
        ("rolled_back", Value::Bool(rolled_back)),
        ("coherence", real(aggregate.coherence)),
        ("confidence", real(aggregate.confidence)),
    ])
}

/// A `prior.updated` payload, read back.
#[derive(Clone, Debug, PartialEq)]
pub struct PriorView {
    /// Version number, from 1.
    pub version: u64,
    /// The prior by knob name.
    pub prior: BTreeMap<String, f64>,
    /// The reward that drove it.
    pub reward: f64,
    /// Whether this was a rollback.
    pub rolled_back: bool,
    /// Coherence of the aggregate behind it.
    pub coherence: f64,
    /// Confidence of the aggregate behind it, Σ wᵢ·confidenceᵢ.
    pub confidence: f64,
}

/// Reads a `prior.updated` payload.
pub fn prior_from_value(v: &Value) -> Result<PriorView, ShapeMismatch> {
    let r = Reader { topic: PRIOR_UPDATED, value: v };
    let keys = r.texts("keys")?;
    let prior = r.vector("prior")?;
    if keys.len() != prior.len() {
        return Err(r.mismatch("prior"));
    }
    Ok(PriorView {
        version: r.uint("version")?,
        prior: keys.into_iter().zip(prior.iter().copied()).collect(),
        reward: r.num("reward")?,
        rolled_back: matches!(r.field("rolled_back")?, Value::Bool(true)),
        coherence: r.num("coherence")?,
        confidence: r.num("confidence")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use metagov_governance::{FiredRule, ResourceHint, RollbackReason, Scoring};

    fn packet() -> TelemetryPacket {
        TelemetryPacket {
            job: "bert-a".into(),
            domain: "nlp".into(),
            window: 1042,
            phase: Some("train".into()),
            metrics: [("gain_p50", 0.15), ("stability_mean", 0.8), ("vram_high", 0.0)]
                .map(|(k, v)| (k.to_string(), v))
                .into(),
            params: [("tau", 0.9)].map(|(k, v)| (k.to_string(), v)).into(),
        }
    }

    fn update() -> DomainMetaUpdate {
        DomainMetaUpdate {
            domain_id: "vision".into(),
            keys: vec!["g_min".into(), "tau".into()],
            vector: Array1::from(vec![0.01, 0.9]),
            reward: 0.42,
            confidence: 0.75,
            window: 17,
            observations: 12,
        }
    }

    /// An aggregate's view with this reward, confidence and coherence.
    fn aggregate(reward: f64, confidence: f64, coherence: f64) -> AggregateView {
        AggregateView {
            keys: Vec::new(),
            vector: Array1::zeros(0),
            reward,
            confidence,
            coherence,
            weights: Vec::new(),
            dropped: Vec::new(),
        }
    }

    #[test]
    fn messages_read_back_as_written() {
        let p = packet();
        assert_eq!(packet_from_value(&packet_to_value(&p)).unwrap(), p);
        let no_phase = TelemetryPacket { phase: None, ..packet() };
        assert_eq!(packet_from_value(&packet_to_value(&no_phase)).unwrap(), no_phase);
        let u = update();
        assert_eq!(domain_update_from_value(&domain_update_to_value(&u), DOMAIN_UPDATE).unwrap(), u);
        let keys = ["g_min".to_string(), "tau".to_string()];
        let behind = aggregate(0.5, 0.75, 0.25);
        let prior = prior_from_value(&prior_to_value(3, &keys, &u.vector, true, &behind)).unwrap();
        assert_eq!(
            (prior.version, prior.reward, prior.rolled_back, prior.coherence, prior.confidence),
            (3, 0.5, true, 0.25, 0.75)
        );
        assert_eq!(prior.prior, [("g_min".to_string(), 0.01), ("tau".to_string(), 0.9)].into());
    }

    #[test]
    fn reals_are_quantized_on_the_way_out_and_never_substituted() {
        let p = TelemetryPacket { metrics: [("gain_p50".to_string(), 0.123_456_789)].into(), ..packet() };
        let read = packet_from_value(&packet_to_value(&p)).unwrap();
        assert_eq!(read.metrics["gain_p50"], 0.123_457);
        for bad in [f64::NAN, f64::INFINITY, 5e9] {
            let panic = std::panic::catch_unwind(|| real(bad)).unwrap_err();
            let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(message.contains("does not fit the bus") && message.contains(&bad.to_string()), "{message}");
        }
    }

    #[test]
    fn a_misshaped_payload_names_its_topic_and_field() {
        let mut value = packet_to_value(&packet());
        if let Value::Record(fields) = &mut value {
            fields.retain(|(k, _)| k != "window");
        }
        let err = packet_from_value(&value).unwrap_err();
        assert_eq!(err, ShapeMismatch { topic: TELEMETRY_ACCEPTED, field: "window".into() });
        assert!(err.to_string().contains("`telemetry.accepted`") && err.to_string().contains("`window`"), "{err}");
        let keys = ["tau".to_string()];
        let short = prior_to_value(1, &keys, &Array1::from(vec![0.9, 0.1]), false, &aggregate(0.0, 1.0, 1.0));
        assert_eq!(prior_from_value(&short).err().map(|e| e.field), Some("prior".into()), "keys and values pair up");
    }

    #[test]
    fn policy_updates_carry_rules_and_rollbacks() {
        let decision = IntegrativeDecision {
            job: "bert-a".into(),
            window: 9,
            policy_updates: [("gamma_diversity".to_string(), 0.35)].into(),
            meta_updates: BTreeMap::new(),
            resource_hint: ResourceHint { batch_scale: 1.0, memory_high: false, latency_high: false },
            scoring: Scoring { gain: 0.1, stability: 0.2, vram: 0.0, latency: 0.0, total: 0.3 },
            ema_reward: 0.3,
            reward_delta: Some(0.001),
            ci_half_width: None,
            fired_rules: vec![FiredRule {
                rule: "plateau".into(),
                signal: metagov_config::Signal::RewardDelta,
                value: 0.001,
                threshold: 0.002,
            }],
            evidence: Default::default(),
            start: false,
            rollback: None,
        };
        let v = policy_update_to_value(&decision);
        assert_eq!(v.get("rollback"), Some(&Value::Unit));
        assert_eq!(v.get("knobs").and_then(|k| k.get("gamma_diversity")).and_then(Value::as_f64), Some(0.35));
        let Some(Value::List(rules)) = v.get("rules") else { panic!("{v}") };
        assert_eq!(rules[0].get("rule").and_then(Value::as_str), Some("plateau"));
        assert_eq!(v.get("meta"), None, "no meta field without a meta rule");
        let meta = IntegrativeDecision { meta_updates: [("tau".to_string(), 0.95)].into(), ..decision.clone() };
        let egress = metagov_bus::Egress {
            tick: 1,
            seq: 1,
            topic: POLICY_UPDATE.into(),
            from: "integrative".into(),
            payload: std::sync::Arc::new(policy_update_to_value(&meta)),
        };
        let Ok(crate::Output::PolicyUpdate(view)) = crate::Output::from_egress(&egress) else {
            panic!("a policy update")
        };
        assert_eq!(view.meta, BTreeMap::from([("tau".to_string(), 0.95)]));
        let rolled = IntegrativeDecision { rollback: Some(RollbackReason::BelowFloor), ..decision };
        assert_eq!(policy_update_to_value(&rolled).get("rollback").and_then(Value::as_str), Some("below_floor"));
    }
}
