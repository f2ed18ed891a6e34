//! What the governance actors tell the outside world, as typed data.
//!
//! The bus hands its caller every publish on an egress topic
//! ([`EGRESS_TOPICS`](crate::messages::EGRESS_TOPICS)) after each tick;
//! [`Output::from_egress`] reads one into an [`Output`]. Summaries, the prior
//! carry-over and the live supervisor all read decisions here — never back
//! out of the journal. The payload itself stays available for anyone who
//! wants it whole (the live event stream sends it as JSON).

use std::collections::BTreeMap;

use metagov_bus::{Egress, Value};

use crate::messages::*;

/// One rule that fired on a window: its signal's value against its threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct FiredRuleView {
    /// The rule's name in the config.
    pub rule: String,
    /// The signal's value.
    pub value: f64,
    /// The threshold it was compared with.
    pub threshold: f64,
}

/// A `policy.update`: new knob values for one job.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyUpdateView {
    /// The job.
    pub job: String,
    /// The window that caused it.
    pub window: u64,
    /// Knobs that changed, with their new values.
    pub knobs: BTreeMap<String, f64>,
    /// The rules that fired.
    pub rules: Vec<FiredRuleView>,
    /// The rollback reason code, when the knobs were rolled back.
    pub rollback: Option<String>,
    /// The job's first window: the knobs it starts from under governance.
    pub start: bool,
    /// The job's meta parameters a meta rule moved, with their new values.
    pub meta: BTreeMap<String, f64>,
}

/// A `resource.hint` for one job.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceHintView {
    /// The job.
    pub job: String,
    /// The window that caused it.
    pub window: u64,
    /// Suggested batch-size factor (1 = unchanged).
    pub batch_scale: f64,
    /// The job reported memory pressure.
    pub memory_high: bool,
    /// The job's latency is above target.
    pub latency_high: bool,
}

/// A `meta.reward`: one window's reward.
#[derive(Clone, Debug, PartialEq)]
pub struct RewardView {
    /// The job.
    pub job: String,
    /// The job's domain.
    pub domain: String,
    /// The window.
    pub window: u64,
    /// This window's reward.
    pub reward: f64,
    /// The smoothed reward after it.
    pub ema_reward: f64,
    /// The job's reported loss, if any.
    pub loss: Option<f64>,
}

/// A `telemetry.rejected`: a packet or pack the validator refused.
#[derive(Clone, Debug, PartialEq)]
pub struct RejectionView {
    /// The reason code.
    pub reason: String,
    /// What exactly was wrong.
    pub detail: String,
    /// The job, when the packet named one.
    pub job: Option<String>,
}

/// One message for the outside world.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// The validator refused a packet.
    Rejected(RejectionView),
    /// New knob values for a job.
    PolicyUpdate(PolicyUpdateView),
    /// A resource hint for a job.
    ResourceHint(ResourceHintView),
    /// A window's reward.
    Reward(RewardView),
    /// The aggregator's report: the domains it dropped, by name.
    Aggregate {
        /// Dropped domains with their reason codes.
        dropped: Vec<(String, String)>,
    },
    /// The Reptile prior after an update or rollback.
    PriorUpdated(PriorView),
    /// A telemetry-hook snapshot, as published.
    MetaTelemetry(Value),
}

impl Output {
    /// Reads one egress message. A shape that does not match its topic is a
    /// bug in the actor that published it.
    pub fn from_egress(egress: &Egress) -> Result<Output, ShapeMismatch> {
        let v = &*egress.payload;
        Ok(match &*egress.topic {
            TELEMETRY_REJECTED => {
                let r = Reader { topic: TELEMETRY_REJECTED, value: v };
                Output::Rejected(RejectionView {
                    reason: r.str("reason")?.to_string(),
                    detail: r.str("detail")?.to_string(),
                    job: r.field("job")?.as_str().map(str::to_string),
                })
            }
            POLICY_UPDATE => {
                let r = Reader { topic: POLICY_UPDATE, value: v };
                let rules = r
                    .list("rules")?
                    .iter()
                    .map(|rule| {
                        let f = Reader { topic: POLICY_UPDATE, value: rule };
                        Ok(FiredRuleView {
                            rule: f.str("rule")?.to_string(),
                            value: f.num("value")?,
                            threshold: f.num("threshold")?,
                        })
                    })
                    .collect::<Result<_, ShapeMismatch>>()?;
                Output::PolicyUpdate(PolicyUpdateView {
                    job: r.str("job")?.to_string(),
                    window: r.uint("window")?,
                    knobs: r.map("knobs")?,
                    rules,
                    rollback: r.field("rollback")?.as_str().map(str::to_string),
                    start: matches!(r.field("start")?, Value::Bool(true)),
                    meta: if v.get("meta").is_some() { r.map("meta")? } else { BTreeMap::new() },
                })
            }
            RESOURCE_HINT => {
                let r = Reader { topic: RESOURCE_HINT, value: v };
                Output::ResourceHint(ResourceHintView {
                    job: r.str("job")?.to_string(),
                    window: r.uint("window")?,
                    batch_scale: r.num("batch_scale")?,
                    memory_high: r.bool("memory_high")?,
                    latency_high: r.bool("latency_high")?,
                })
            }
            META_REWARD => {
                let r = Reader { topic: META_REWARD, value: v };
                Output::Reward(RewardView {
                    job: r.str("job")?.to_string(),
                    domain: r.str("domain")?.to_string(),
                    window: r.uint("window")?,
                    reward: r.num("reward")?,
                    ema_reward: r.num("ema_reward")?,
                    loss: r.field("loss")?.as_f64(),
                })
            }
            CROSS_AGGREGATE => {
                let r = Reader { topic: CROSS_AGGREGATE, value: v };
                let dropped = r
                    .list("dropped")?
                    .iter()
                    .map(|d| {
                        let f = Reader { topic: CROSS_AGGREGATE, value: d };
                        Ok((f.str("domain")?.to_string(), f.str("reason")?.to_string()))
                    })
                    .collect::<Result<_, ShapeMismatch>>()?;
                Output::Aggregate { dropped }
            }
            PRIOR_UPDATED => Output::PriorUpdated(prior_from_value(v)?),
            META_TELEMETRY => Output::MetaTelemetry(v.clone()),
            _ => return Err(ShapeMismatch { topic: "egress", field: egress.topic.to_string() }),
        })
    }

    /// The job this output is about, if it is about one job.
    pub fn job(&self) -> Option<&str> {
        match self {
            Output::Rejected(r) => r.job.as_deref(),
            Output::PolicyUpdate(p) => Some(&p.job),
            Output::ResourceHint(h) => Some(&h.job),
            Output::Reward(r) => Some(&r.job),
            Output::Aggregate { .. } | Output::PriorUpdated(_) | Output::MetaTelemetry(_) => None,
        }
    }
}
