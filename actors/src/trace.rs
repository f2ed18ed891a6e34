//! The lifecycle of one ingress packet (a trace), derived from a run's
//! deliveries: each tick holds exactly one ingress delivery and everything
//! its handling published, so the deliveries of tick T are trace T's log,
//! append-only by construction. Each delivery names its cause, the
//! delivery whose handler published it, so the log is a tree rooted at the
//! ingress delivery; a cause that is missing, later, or was not delivered
//! to the publisher breaks the trace (chronicles of format version 1 kept
//! no causes, and their logs are read by tick alone).
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
    /// `sealed` says whether the frame holding them is sealed, `causes`
    /// whether the chronicle recorded each delivery's cause (version 2 on).
    #[must_use]
    pub fn derive(tick: u64, log: Vec<Envelope>, sealed: bool, causes: bool) -> Trace {
        let mut states = Vec::new();
        let invalid = walk(&log, &mut states, sealed, causes).err();
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

    /// How many publishes separate `delivery` from the ingress delivery (0
    /// for it, and for every delivery of a log without causes).
    #[must_use]
    pub fn depth(&self, delivery: &Envelope) -> usize {
        let mut depth = 0;
        let mut at = delivery;
        while let Some(cause) = at.cause.and_then(|seq| self.log.iter().find(|e| e.seq == seq)) {
            // Causes point strictly back (checked when derived, and by the
            // format), so this ends; the bound only guards a broken log.
            if depth == self.log.len() {
                break;
            }
            depth += 1;
            at = cause;
        }
        depth
    }
}

/// A delivery's cause must be an earlier delivery of the same log, made to
/// the actor that published this one.
fn check_cause(log: &[Envelope], e: &Envelope) -> Result<(), String> {
    let Some(cause) = e.cause else {
        return Err(format!("seq {} ({} from `{}`) names no cause", e.seq, e.topic, e.from));
    };
    match log.iter().take_while(|c| c.seq < e.seq).find(|c| c.seq == cause) {
        Some(c) if c.to == e.from => Ok(()),
        Some(c) => Err(format!(
            "seq {} ({} from `{}`) names cause seq {cause}, which was delivered to `{}`, not to its publisher",
            e.seq, e.topic, e.from, c.to
        )),
        None => Err(format!("seq {} ({}) names cause seq {cause}, which is not an earlier delivery", e.seq, e.topic)),
    }
}

/// Moves `states` through the lifecycle along `log`, asserting each step is
/// forward and none is skipped.
fn walk(
    log: &[Envelope],
    states: &mut Vec<(TraceState, Option<u64>)>,
    sealed: bool,
    causes: bool,
) -> Result<(), String> {
    let origin = log.first().ok_or("the tick holds no delivery")?;
    if *origin.from != *INGRESS {
        return Err(format!("its first delivery ({}) is not ingress but from `{}`", origin.seq, origin.from));
    }
    if let Some(cause) = origin.cause {
        return Err(format!("its ingress delivery names a cause, seq {cause}"));
    }
    advance(states, TraceState::Created, Some(origin.seq))?;
    let admitted = if *origin.topic == *TELEMETRY_RAW { TELEMETRY_ACCEPTED } else { DOMAIN_UPDATE };
    let completed = if *origin.topic == *FEDERATION_POLICY_PACK { DOMAIN_UPDATE } else { META_REWARD };
    let mut verdict = None;
    for e in &log[1..] {
        let from_validator = *e.from == *"validator";
        if from_validator && (*e.topic == *admitted || *e.topic == *TELEMETRY_REJECTED) {
            let state = if *e.topic == *admitted { TraceState::Active } else { TraceState::Blocked };
            if causes {
                check_cause(log, e)?;
            }
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
        if causes {
            check_cause(log, e)?;
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
