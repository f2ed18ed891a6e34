//! The live supervisor's state machine: one packet in, one [`Answer`] out.
//!
//! [`Supervisor`] owns the governance bus and what the shell must remember
//! between packets: each job's current knobs and hints (read from egress,
//! never from the journal) and the digests of its recent windows, which make
//! a retried packet safe. It does no I/O of its own and reads no clock; the
//! journal it is given does the writing. The core thread calls
//! [`Supervisor::submit`] for every packet in queue order, then makes the
//! journal durable, then answers — so a run, and a resumed run, is a pure
//! function of the recorded ingress.

use std::collections::BTreeMap;

use metagov_actors::messages::TELEMETRY_RAW;
use metagov_actors::{FiredRuleView, MetaSupervisor, Output, ResourceHintView};
use metagov_bus::{Bus, BusError, Journal, Value};
use metagov_config::Config;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

/// Windows per job whose digests are kept for duplicate detection. A retry
/// of an older window than these is not recognised as a repeat: the
/// validator rejects it as a stale window, which changes nothing either.
pub const DEDUP_WINDOWS_MAX: usize = 1024;

/// One packet as it arrived: text, or bytes that are not UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// A JSON text (not yet parsed: the validator parses it).
    Text(String),
    /// Bytes that are not UTF-8; recorded and rejected by the validator.
    Bytes(Vec<u8>),
}

impl Packet {
    /// The packet from raw bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Packet {
        match String::from_utf8(bytes) {
            Ok(text) => Packet::Text(text),
            Err(e) => Packet::Bytes(e.into_bytes()),
        }
    }

    /// The bus payload: the raw text, so the live path and a replay of it
    /// run the very same validator on the very same bytes.
    pub fn into_value(self) -> Value {
        match self {
            Packet::Text(text) => Value::Text(text),
            Packet::Bytes(bytes) => Value::Bytes(bytes),
        }
    }

    /// The packet from a recorded `telemetry.raw` payload.
    pub fn from_value(value: &Value) -> Option<Packet> {
        match value {
            Value::Text(text) => Some(Packet::Text(text.clone())),
            Value::Bytes(bytes) => Some(Packet::Bytes(bytes.clone())),
            _ => None,
        }
    }
}

/// What happened to one packet.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Admitted by the validator and governed.
    Accepted,
    /// Refused by the validator, with its reason code.
    Rejected {
        /// The reason code.
        reason: String,
        /// What exactly was wrong.
        detail: String,
    },
    /// An identical repeat of an admitted window: nothing was done again.
    Duplicate,
    /// A different body for an admitted window: refused, nothing done.
    Conflict,
}

/// The supervisor's answer to one packet.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The tick the packet opened (its trace id); none for a duplicate or a
    /// conflict, which never reach the bus.
    pub tick: Option<u64>,
    /// What happened.
    pub outcome: Outcome,
    /// The job, when the packet named one.
    pub job: Option<String>,
    /// The window, when the packet named one.
    pub window: Option<u64>,
    /// Knobs this packet changed, with their new values.
    pub changed: BTreeMap<String, f64>,
    /// Rules that fired on it.
    pub rules: Vec<FiredRuleView>,
    /// The rollback reason code, if it rolled the knobs back.
    pub rollback: Option<String>,
    /// The resource hint it caused, if any.
    pub hint: Option<ResourceHintView>,
    /// The job's knobs after it (every knob), when the job is known.
    pub knobs: Option<BTreeMap<String, f64>>,
    /// The tick's egress as events, in emission order (the core moves them
    /// to the board; the answer a client gets does not carry them).
    pub events: Vec<Event>,
}

impl Answer {
    /// The response body every transport sends for this packet.
    pub fn to_json(&self, durability: &str) -> Json {
        let (status, rejection) = match &self.outcome {
            Outcome::Accepted => ("accepted", Json::Null),
            Outcome::Rejected { reason, detail } => ("rejected", json!({"reason": reason, "detail": detail})),
            Outcome::Duplicate => ("duplicate", Json::Null),
            Outcome::Conflict => ("conflict", Json::Null),
        };
        json!({
            "status": status,
            "accepted": matches!(self.outcome, Outcome::Accepted | Outcome::Duplicate),
            "duplicate": matches!(self.outcome, Outcome::Duplicate),
            "tick": self.tick,
            "trace": self.tick,
            "job": self.job,
            "window": self.window,
            "durability": durability,
            "rejection": rejection,
            "decision": {
                "knobs": self.knobs,
                "changed": self.changed,
                "rules": rules_json(&self.rules),
                "rollback": self.rollback,
                "hint": self.hint.as_ref().map(hint_json),
            },
        })
    }
}

/// Fired rules as JSON: each rule with its signal's value and threshold.
fn rules_json(rules: &[FiredRuleView]) -> Json {
    rules.iter().map(|r| json!({"rule": r.rule, "value": r.value, "threshold": r.threshold})).collect()
}

/// A resource hint as JSON.
pub fn hint_json(h: &ResourceHintView) -> Json {
    json!({"window": h.window, "batch_scale": h.batch_scale, "memory_high": h.memory_high, "latency_high": h.latency_high})
}

/// One egress message, for the event stream: `id` is `tick.seq`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Tick of the publish.
    pub tick: u64,
    /// Seq of its first delivery.
    pub seq: u64,
    /// Its topic (the SSE event name).
    pub topic: String,
    /// The payload as JSON text (kept as text: the stream sends it as it
    /// is, and the board keeps many).
    pub data: String,
}

impl Event {
    /// The event id a client resumes from: `tick.seq`.
    pub fn id(&self) -> String {
        format!("{}.{}", self.tick, self.seq)
    }
}

/// The last `policy.update` of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct LastChange {
    /// Its tick.
    pub tick: u64,
    /// The knobs it changed, with their new values.
    pub changed: BTreeMap<String, f64>,
    /// The rules that fired.
    pub rules: Vec<FiredRuleView>,
    /// The rollback reason code, if it was a rollback.
    pub rollback: Option<String>,
}

/// What the supervisor knows of one job.
#[derive(Clone, Debug, PartialEq)]
pub struct JobState {
    /// The job's current knobs (every configured knob).
    pub knobs: BTreeMap<String, f64>,
    /// The last resource hint, if any.
    pub hint: Option<ResourceHintView>,
    /// The last tick that changed the job's knobs or hints (0: never).
    pub tick: u64,
    /// The last admitted window.
    pub window: Option<u64>,
    /// The last change of the job's knobs.
    pub last_change: Option<LastChange>,
    /// Digests of the recent admitted windows.
    seen: BTreeMap<u64, [u8; 32]>,
}

impl JobState {
    /// The job's decision as JSON (what `GET /v1/jobs/{job}/decision`
    /// serves).
    pub fn to_json(&self, job: &str) -> Json {
        let last_change = self.last_change.as_ref().map(|LastChange { tick, changed, rules, rollback }| {
            json!({"tick": tick, "changed": changed, "rules": rules_json(rules), "rollback": rollback})
        });
        json!({
            "job": job,
            "tick": self.tick,
            "window": self.window,
            "knobs": self.knobs,
            "hint": self.hint.as_ref().map(hint_json),
            "last_change": last_change,
        })
    }
}

/// Why the supervisor stopped.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The bus stopped (a journal failure or an actor's bug).
    #[error(transparent)]
    Bus(#[from] BusError),
    /// An actor published a payload of the wrong shape.
    #[error("egress at tick {tick}: {source}")]
    Shape {
        /// The tick.
        tick: u64,
        /// The mismatch.
        source: metagov_actors::messages::ShapeMismatch,
    },
}

/// The governance bus with the shell's memory of jobs.
pub struct Supervisor<J: Journal> {
    bus: Bus<J>,
    initial: BTreeMap<String, f64>,
    jobs: BTreeMap<String, JobState>,
    prior: Option<Json>,
}

/// `(job, window, digest)` of a packet that names them, read without
/// validating anything else (the validator decides the rest).
fn identity(packet: &Packet) -> Option<(String, u64, [u8; 32])> {
    let Packet::Text(text) = packet else { return None };
    let parsed: Json = serde_json::from_str(text).ok()?;
    let job = parsed.get("job")?.as_str()?.to_string();
    let window = parsed.get("window")?.as_u64()?;
    // The digest of the parsed value's canonical text (keys sorted), so a
    // repeat that differs only in spacing or key order is still identical.
    let canonical = serde_json::to_vec(&parsed).ok()?;
    Some((job, window, Sha256::digest(&canonical).into()))
}

/// The state of `job`, created with the initial knobs on first use.
fn job_mut<'a>(
    jobs: &'a mut BTreeMap<String, JobState>,
    initial: &BTreeMap<String, f64>,
    job: &str,
) -> &'a mut JobState {
    if !jobs.contains_key(job) {
        let state = JobState {
            knobs: initial.clone(),
            hint: None,
            tick: 0,
            window: None,
            last_change: None,
            seen: BTreeMap::new(),
        };
        jobs.insert(job.to_string(), state);
    }
    // Invariant: inserted just above when missing.
    jobs.get_mut(job).expect("job state exists")
}

impl<J: Journal> Supervisor<J> {
    /// A supervisor for `config`, journaling into `journal`.
    pub fn new(config: &Config, journal: J) -> Result<Self, BusError> {
        Ok(Supervisor {
            bus: MetaSupervisor::build(config, journal)?,
            initial: config.initial_knobs(),
            jobs: BTreeMap::new(),
            prior: None,
        })
    }

    /// Takes one packet: answers a repeat from memory, or injects it as the
    /// next tick and reads the tick's egress.
    pub fn submit(&mut self, packet: Packet) -> Result<Answer, SupervisorError> {
        let identity = identity(&packet);
        let mut answer = Answer {
            tick: None,
            outcome: Outcome::Accepted,
            job: identity.as_ref().map(|(job, _, _)| job.clone()),
            window: identity.as_ref().map(|(_, window, _)| *window),
            changed: BTreeMap::new(),
            rules: Vec::new(),
            rollback: None,
            hint: None,
            knobs: None,
            events: Vec::new(),
        };
        if let Some((job, window, digest)) = &identity {
            if let Some(state) = self.jobs.get(job) {
                if let Some(seen) = state.seen.get(window) {
                    answer.outcome = if seen == digest { Outcome::Duplicate } else { Outcome::Conflict };
                    answer.knobs = Some(state.knobs.clone());
                    answer.hint = state.hint.clone();
                    return Ok(answer);
                }
            }
        }
        let report = self.bus.ingress(TELEMETRY_RAW, packet.into_value())?;
        answer.tick = Some(report.tick);
        for egress in self.bus.egress() {
            answer.events.push(Event {
                tick: egress.tick,
                seq: egress.seq,
                topic: egress.topic.to_string(),
                data: egress.payload.to_json().to_string(),
            });
            let output =
                Output::from_egress(egress).map_err(|source| SupervisorError::Shape { tick: report.tick, source })?;
            match output {
                Output::Rejected(r) => answer.outcome = Outcome::Rejected { reason: r.reason, detail: r.detail },
                Output::PolicyUpdate(update) => {
                    let state = job_mut(&mut self.jobs, &self.initial, &update.job);
                    state.knobs.extend(update.knobs.iter().map(|(k, v)| (k.clone(), *v)));
                    state.tick = report.tick;
                    state.last_change = Some(LastChange {
                        tick: report.tick,
                        changed: update.knobs.clone(),
                        rules: update.rules.clone(),
                        rollback: update.rollback.clone(),
                    });
                    answer.changed = update.knobs;
                    answer.rules = update.rules;
                    answer.rollback = update.rollback;
                }
                Output::ResourceHint(hint) => {
                    let state = job_mut(&mut self.jobs, &self.initial, &hint.job);
                    state.hint = Some(hint.clone());
                    state.tick = report.tick;
                    answer.hint = Some(hint);
                }
                Output::PriorUpdated(_) => self.prior = Some(egress.payload.to_json()),
                Output::Reward(_) | Output::Aggregate { .. } | Output::MetaTelemetry(_) => {}
            }
        }
        if let (Outcome::Accepted, Some((job, window, digest))) = (&answer.outcome, identity) {
            let state = job_mut(&mut self.jobs, &self.initial, &job);
            state.window = Some(window);
            state.seen.insert(window, digest);
            while state.seen.len() > DEDUP_WINDOWS_MAX {
                state.seen.pop_first();
            }
            answer.knobs = Some(state.knobs.clone());
            if answer.hint.is_none() {
                answer.hint = state.hint.clone();
            }
        }
        Ok(answer)
    }

    /// Every job the supervisor has admitted a packet of.
    pub fn jobs(&self) -> &BTreeMap<String, JobState> {
        &self.jobs
    }

    /// The last `prior.updated` payload, as JSON.
    pub fn prior(&self) -> Option<&Json> {
        self.prior.as_ref()
    }

    /// The last tick opened.
    pub fn tick(&self) -> u64 {
        self.bus.tick()
    }

    /// The journal (to flush and sync it between batches).
    pub fn journal_mut(&mut self) -> &mut J {
        self.bus.journal_mut()
    }

    /// Ends the supervisor and hands back its journal.
    pub fn into_journal(self) -> J {
        self.bus.into_journal()
    }
}
