//! Envelopes: one delivery of one payload to one actor.

use std::fmt;
use std::sync::Arc;

use crate::value::Value;

/// An interned name (topic or actor). Cloning is a reference-count bump.
pub type Name = Arc<str>;

/// The actor name that stands for the outside world on ingress deliveries.
pub const INGRESS: &str = "ingress";
/// The recipient name of a publish that no actor subscribes to. The delivery
/// is still journaled, so nothing published is lost from the record.
pub const NOBODY: &str = "nobody";

/// Identifies the ingress packet whose consequences a delivery belongs to:
/// the tick that packet opened (every delivery of a tick descends from the
/// tick's one ingress packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceId(pub u64);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// One delivery: a payload on a topic, from one actor to one actor, at a
/// logical time `(tick, seq)` that is unique and strictly increasing in
/// delivery order.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// Logical time: the number of the ingress packet being processed.
    pub tick: u64,
    /// Order within the tick, from 0.
    pub seq: u64,
    /// Topic the payload was published on.
    pub topic: Name,
    /// Publishing actor, or [`INGRESS`].
    pub from: Name,
    /// Receiving actor, or [`NOBODY`].
    pub to: Name,
    /// The seq, in the same tick, of the delivery whose handler published
    /// this one; `None` for an ingress delivery (and for every delivery read
    /// from a version 1 chronicle, which did not record causes).
    pub cause: Option<u64>,
    /// The data; shared between the deliveries of one publish.
    pub payload: Arc<Value>,
}

impl Envelope {
    /// The ingress packet this delivery descends from.
    pub fn trace(&self) -> TraceId {
        TraceId(self.tick)
    }
}
