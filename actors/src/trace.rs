//! The lifecycle of one ingress packet (a trace), derived from a run's
//! deliveries: each tick holds exactly one ingress delivery and everything
//! its handling published, so the deliveries of tick T are trace T's log,
//! append-only by construction.
//!
//! CREATED (the ingress delivery) → ACTIVE (the validator admitted it) or
//! BLOCKED (it rejected it, with a reason) → COMPLETED (its decisions were
//! emitted) → ARCHIVED (its frame is sealed). A log that breaks the state
//! machine — no ingress first, no verdict or two, consequences after a
//! rejection, an admitted packet without its decision — is INVALID, with
//! the reason, and never archived.

use std::fmt;

use metagov_bus::{Envelope, Value, INGRESS};

use crate::messages::{
    DOMAIN_UPDATE, FEDERATION_POLICY_PACK, META_REWARD, TELEMETRY_ACCEPTED, TELEMETRY_RAW, TELEMETRY_REJECTED,
};

/// A state of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TraceState {
    /// The packet was taken in.
    Created,
    /// The validator admitted it.
    Active,
    /// The validator rejected it.
    Blocked,
    /// Its decisions were emitted.
    Completed,
    /// Its frame is sealed.
    Archived,
    /// Its log breaks the state machine.
    Invalid,
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceState::Created => "CREATED",
            TraceState::Active => "ACTIVE",
            TraceState::Blocked => "BLOCKED",
            TraceState::Completed => "COMPLETED",
            TraceState::Archived => "ARCHIVED",
            TraceState::Invalid => "INVALID",
        })
    }
}

/// One trace, derived.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// The trace id: the tick of its packet.
    pub tick: u64,
    /// The states it went through, in order, each with the seq of the
    /// delivery that moved it there (none for ARCHIVED and INVALID).
    pub states: Vec<(TraceState, Option<u64>)>,
    /// Why it is INVALID, if it is.
    pub invalid: Option<String>,
    /// Its log: every delivery of the tick, in `(tick, seq)` order.
    pub log: Vec<Envelope>,
}

impl Trace {
    /// Derives trace `tick` from that tick's deliveries (in seq order);
    /// `sealed` says whether the frame holding them is sealed.
    #[must_use]
    pub fn derive(tick: u64, log: Vec<Envelope>, sealed: bool) -> Trace {
        let mut states = Vec::new();
        let invalid = walk(&log, &mut states, sealed).err();
        if invalid.is_some() {
            states.push((TraceState::Invalid, None));
        }
        Trace { tick, states, invalid, log }
    }

    /// The last state.
    #[must_use]
    pub fn state(&self) -> TraceState {
        current(&self.states)
    }

    /// The ingress delivery that started it.
    #[must_use]
    pub fn origin(&self) -> Option<&Envelope> {
        self.log.first().filter(|e| *e.from == *INGRESS)
    }
}

/// Moves `states` through the lifecycle along `log`, asserting each step is
/// forward and none is skipped.
fn walk(log: &[Envelope], states: &mut Vec<(TraceState, Option<u64>)>, sealed: bool) -> Result<(), String> {
    let origin = log.first().ok_or("the tick holds no delivery")?;
    if *origin.from != *INGRESS {
        return Err(format!("its first delivery ({}) is not ingress but from `{}`", origin.seq, origin.from));
    }
    advance(states, TraceState::Created, Some(origin.seq))?;
    let admitted = if *origin.topic == *TELEMETRY_RAW { TELEMETRY_ACCEPTED } else { DOMAIN_UPDATE };
    let completed = if *origin.topic == *FEDERATION_POLICY_PACK { DOMAIN_UPDATE } else { META_REWARD };
    let mut verdict = None;
    for e in &log[1..] {
        let from_validator = *e.from == *"validator";
        if from_validator && (*e.topic == *admitted || *e.topic == *TELEMETRY_REJECTED) {
            let state = if *e.topic == *admitted { TraceState::Active } else { TraceState::Blocked };
            match verdict {
                None => verdict = Some(state),
                Some(first) if first == state => continue, // the same publish, to another subscriber
                Some(first) => return Err(format!("the validator said {first} and then {state} (seq {})", e.seq)),
            }
            advance(states, state, Some(e.seq))?;
            continue;
        }
        match verdict {
            None => return Err(format!("seq {} ({}) comes before the validator's verdict", e.seq, e.topic)),
            Some(TraceState::Blocked) => {
                return Err(format!("a rejected packet has a consequence: seq {} ({})", e.seq, e.topic))
            }
            _ => {}
        }
        if *e.topic == *completed && current(states) == TraceState::Active {
            advance(states, TraceState::Completed, Some(e.seq))?;
        }
    }
    match verdict {
        None => return Err("the validator gave no verdict".to_owned()),
        Some(TraceState::Active) if current(states) != TraceState::Completed => {
            return Err(format!("admitted, but no {completed} followed"))
        }
        _ => {}
    }
    if sealed {
        advance(states, TraceState::Archived, None)?;
    }
    Ok(())
}

fn current(states: &[(TraceState, Option<u64>)]) -> TraceState {
    states.last().map_or(TraceState::Invalid, |&(state, _)| state)
}

fn advance(states: &mut Vec<(TraceState, Option<u64>)>, next: TraceState, seq: Option<u64>) -> Result<(), String> {
    let current = states.last().map(|&(state, _)| state);
    let allowed = matches!(
        (current, next),
        (None, TraceState::Created)
            | (Some(TraceState::Created), TraceState::Active | TraceState::Blocked)
            | (Some(TraceState::Active), TraceState::Completed)
            | (Some(TraceState::Completed | TraceState::Blocked), TraceState::Archived)
    );
    if !allowed {
        let from = current.map_or_else(|| "nothing".to_owned(), |s| s.to_string());
        return Err(format!("{from} → {next} is not a transition of the lifecycle"));
    }
    states.push((next, seq));
    Ok(())
}

/// A short account of a payload for a person: `key value` pairs of its top
/// level (records shown as JSON).
#[must_use]
pub fn summary(payload: &Value) -> String {
    match payload {
        Value::Record(fields) => fields
            .iter()
            .filter(|(_, v)| !matches!(v, Value::Unit))
            .map(|(k, v)| match v {
                Value::Text(text) => format!("{k} {text}"),
                other => format!("{k} {}", other.to_json()),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Value::Text(line) => format!("raw line {:?}", line.chars().take(120).collect::<String>()),
        other => other.to_json().to_string(),
    }
}
