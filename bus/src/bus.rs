//! The scheduler: logical clock, subscriptions, the delivery loop.
//!
//! Call order (sans-IO, like quinn-proto's `Connection`): build a [`Bus`]
//! with its actors, then call [`Bus::ingress`] once per packet from outside.
//! `ingress` opens a new tick, delivers the packet to every subscriber and
//! then every message those handlers publish, breadth first, until the queue
//! is empty; it returns when the tick is quiescent. Each delivery is
//! journaled before its handler runs. Nothing else moves the clock.
//!
//! Topics are declared before the first ingress: [`Bus::allow_ingress`]
//! names the topics the outside may inject (any other is refused, so no
//! outsider can impersonate an actor), and [`Bus::tap_egress`] names the
//! topics whose publishes are meant for the outside. After each `ingress`,
//! [`Bus::egress`] holds that tick's publishes on tapped topics, in emission
//! order: the caller reads decisions there, never back out of the journal.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::envelope::{Envelope, Name, INGRESS, NOBODY};
use crate::journal::{Entry, Journal, JournalError};
use crate::records::{CycleRecord, MetaFrame};
use crate::rng::ActorRng;
use crate::value::Value;

/// A state machine on the bus.
///
/// **Contract:** a handler reads only the envelope, its own state and its
/// [`Outbox`] (which holds its seeded RNG). It never reads the clock, the
/// environment, files or sockets, and never iterates a hash map into an
/// output. Same inputs in the same order must give the same outputs.
pub trait Actor: Send {
    /// The topics this actor receives, fixed for the life of the bus.
    fn subscriptions(&self) -> Vec<String>;
    /// Handles one delivery. Publishes go to `out`; they are delivered after
    /// every delivery already queued.
    fn handle(&mut self, envelope: &Envelope, out: &mut Outbox<'_>);
    /// What the actor holds now, for a person inspecting a run (`replay
    /// --inspect`). Never read by the bus, another actor or a journal, so
    /// it cannot change a run. Default: nothing to show.
    fn state(&self) -> Value {
        Value::Unit
    }
}

/// What a handler may do while it runs: publish, emit records, draw random
/// numbers. The bus drains it after the handler returns.
pub struct Outbox<'a> {
    tick: u64,
    journaled: u64,
    rng: &'a mut ActorRng,
    messages: Vec<(String, Value)>,
    cycles: Vec<CycleRecord>,
    frames: Vec<MetaFrame>,
}

impl Outbox<'_> {
    /// The current logical tick (the only clock an actor has).
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// Entries the bus has journaled so far, this delivery included: a
    /// deterministic measure of the record's size (its byte size depends on
    /// the journal, which replay swaps out).
    pub fn journaled(&self) -> u64 {
        self.journaled
    }

    /// Queues `payload` on `topic`, for every subscriber of the topic.
    pub fn publish(&mut self, topic: &str, payload: Value) {
        self.messages.push((topic.to_string(), payload));
    }

    /// Emits a cycle record into the journal.
    pub fn record_cycle(&mut self, record: CycleRecord) {
        self.cycles.push(record);
    }

    /// Emits a meta frame into the journal.
    pub fn record_frame(&mut self, frame: MetaFrame) {
        self.frames.push(frame);
    }

    /// This actor's seeded generator.
    pub fn rng(&mut self) -> &mut ActorRng {
        self.rng
    }

    fn len(&self) -> usize {
        self.messages.len() + self.cycles.len() + self.frames.len()
    }
}

/// Explicit bounds of a bus. Hitting one stops the run with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusLimits {
    /// Deliveries waiting in the queue at once.
    pub queue_len_max: u32,
    /// Messages and records one handler call may emit.
    pub outbox_len_max: u32,
}

impl Default for BusLimits {
    fn default() -> Self {
        BusLimits { queue_len_max: 1 << 20, outbox_len_max: 4096 }
    }
}

/// Where a delivery stood when the run stopped: enough to find it in the
/// journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryPoint {
    /// Tick of the delivery.
    pub tick: u64,
    /// Seq of the delivery.
    pub seq: u64,
    /// Its topic.
    pub topic: Name,
    /// The receiving actor.
    pub actor: Name,
}

impl std::fmt::Display for DeliveryPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "delivery ({}, {}) of `{}` to `{}`", self.tick, self.seq, self.topic, self.actor)
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A handler panicked. Everything journaled before it (including this
    /// delivery) is kept.
    #[error("actor `{}` panicked on {at}: {message}", at.actor)]
    ActorPanicked {
        /// The delivery being handled.
        at: DeliveryPoint,
        /// The panic message.
        message: String,
    },
    /// The delivery queue reached `queue_len_max`.
    #[error("bus queue is full ({limit} deliveries) while publishing `{topic}` at tick {tick}")]
    QueueFull {
        /// The configured limit.
        limit: u32,
        /// The topic being published.
        topic: String,
        /// The tick.
        tick: u64,
    },
    /// A handler emitted more than `outbox_len_max` messages and records.
    #[error("actor `{}` emitted {emitted} messages on {at}, more than outbox_len_max = {limit}", at.actor)]
    OutboxFull {
        /// The delivery being handled.
        at: DeliveryPoint,
        /// How many it emitted.
        emitted: usize,
        /// The configured limit.
        limit: u32,
    },
    /// The journal refused an entry.
    #[error("journal failed at tick {tick} seq {seq}: {source}")]
    Journal {
        /// Tick of the entry.
        tick: u64,
        /// Seq of the entry.
        seq: u64,
        /// The journal's error.
        source: JournalError,
    },
    /// A name is not of the allowed form or is taken.
    #[error("invalid actor name `{0}`: 1-64 characters of [A-Za-z0-9._-], unique, not `ingress` or `nobody`")]
    BadActorName(String),
    /// A topic name is not of the allowed form.
    #[error("invalid topic name `{0}`: 1-128 characters of [A-Za-z0-9._-]")]
    BadTopic(String),
    /// Ingress on a topic that was not declared with [`Bus::allow_ingress`].
    /// Refused before the tick opens; the bus carries on.
    #[error("topic `{topic}` does not take ingress from outside (ingress topics: {allowed})")]
    NotIngress {
        /// The refused topic.
        topic: String,
        /// The topics that take ingress, comma-separated.
        allowed: String,
    },
    /// More distinct topics than `TOPICS_MAX` were used.
    #[error("more than {limit} distinct topics (the last was `{topic}`)")]
    TooManyTopics {
        /// The limit.
        limit: usize,
        /// The topic that went over it.
        topic: String,
    },
    /// An earlier error stopped the bus; it takes no more ingress.
    #[error("the bus stopped after an earlier error and takes no more ingress")]
    Stopped,
}

/// What one call to [`Bus::ingress`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngressReport {
    /// The tick the packet opened (also its trace id).
    pub tick: u64,
    /// Deliveries made during the tick.
    pub deliveries: u64,
    /// Cycle records emitted during the tick.
    pub cycles: u64,
    /// Meta frames emitted during the tick.
    pub frames: u64,
}

/// A publish on a topic tapped with [`Bus::tap_egress`]: a message meant
/// for the world outside the bus.
#[derive(Clone, Debug, PartialEq)]
pub struct Egress {
    /// Tick of the publish.
    pub tick: u64,
    /// Seq of the publish's first delivery (its position in the journal).
    pub seq: u64,
    /// The topic.
    pub topic: Name,
    /// The publishing actor.
    pub from: Name,
    /// The payload, shared with its deliveries.
    pub payload: Arc<Value>,
}

impl Egress {
    /// The publish a recorded delivery belongs to, read back from a journal:
    /// exact for a publish's first delivery, so for every delivery on a
    /// topic with at most one subscriber (or none: the delivery to
    /// [`NOBODY`](crate::NOBODY)).
    pub fn of_delivery(delivery: &Envelope) -> Egress {
        Egress {
            tick: delivery.tick,
            seq: delivery.seq,
            topic: delivery.topic.clone(),
            from: delivery.from.clone(),
            payload: delivery.payload.clone(),
        }
    }
}

/// Where a topic goes: its subscribers, and whether it is an ingress or an
/// egress topic.
#[derive(Default)]
struct Route {
    slots: Vec<usize>,
    ingress: bool,
    egress: bool,
}

struct Slot {
    name: Name,
    actor: Box<dyn Actor>,
    rng: ActorRng,
}

/// The deterministic bus.
pub struct Bus<J: Journal> {
    slots: Vec<Slot>,
    /// Topic name → subscribed slots (in registration order) and flags.
    routes: BTreeMap<Name, Route>,
    /// This tick's publishes on egress topics, in emission order.
    egress: Vec<Egress>,
    ingress_name: Name,
    nobody_name: Name,
    queue: VecDeque<(Envelope, Option<usize>)>,
    limits: BusLimits,
    seed: u64,
    tick: u64,
    seq: u64,
    stopped: bool,
    /// The last `(tick, seq)` delivered: each delivery must be after it.
    last_delivered: (u64, u64),
    /// Entries handed to the journal so far.
    journaled: u64,
    /// Cycle records and meta frames emitted during the current tick.
    tick_records: (u64, u64),
    /// The longest the queue has been, right after an enqueue.
    queue_len_peak: usize,
    /// The most one handler has emitted in one delivery.
    outbox_len_peak: usize,
    journal: J,
}

/// Most distinct topics a bus carries (subscribed or published).
pub const TOPICS_MAX: usize = 4096;

fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl<J: Journal> Bus<J> {
    /// An empty bus for a run seeded with `seed`.
    pub fn new(seed: u64, limits: BusLimits, journal: J) -> Self {
        Bus {
            slots: Vec::new(),
            routes: BTreeMap::new(),
            egress: Vec::new(),
            ingress_name: Name::from(INGRESS),
            nobody_name: Name::from(NOBODY),
            queue: VecDeque::new(),
            limits,
            seed,
            tick: 0,
            seq: 0,
            stopped: false,
            last_delivered: (0, 0),
            journaled: 0,
            tick_records: (0, 0),
            queue_len_peak: 0,
            outbox_len_peak: 0,
            journal,
        }
    }

    /// Adds an actor under a unique name; it gets the RNG stream of that name.
    pub fn add_actor(&mut self, name: &str, actor: Box<dyn Actor>) -> Result<(), BusError> {
        let taken = name == INGRESS || name == NOBODY || self.slots.iter().any(|s| &*s.name == name);
        if !is_name(name, 64) || taken {
            return Err(BusError::BadActorName(name.to_string()));
        }
        let index = self.slots.len();
        for topic in actor.subscriptions() {
            if !is_name(&topic, 128) {
                return Err(BusError::BadTopic(topic));
            }
            let route = self.route_mut(&topic)?;
            if !route.slots.contains(&index) {
                route.slots.push(index);
            }
        }
        self.slots.push(Slot { name: Name::from(name), rng: ActorRng::for_actor(self.seed, name), actor });
        Ok(())
    }

    /// Lets the outside inject packets on `topic` through [`Bus::ingress`].
    pub fn allow_ingress(&mut self, topic: &str) -> Result<(), BusError> {
        self.route_mut(topic)?.ingress = true;
        Ok(())
    }

    /// Hands every publish on `topic` to the caller too (see [`Bus::egress`]),
    /// besides delivering it to the topic's subscribers.
    pub fn tap_egress(&mut self, topic: &str) -> Result<(), BusError> {
        self.route_mut(topic)?.egress = true;
        Ok(())
    }

    /// The publishes on egress topics during the last [`Bus::ingress`], in
    /// emission order. Emptied when the next ingress starts.
    pub fn egress(&self) -> &[Egress] {
        &self.egress
    }

    /// The route of `topic`, interned on first use (checked once, bounded by
    /// [`TOPICS_MAX`]).
    fn route_mut(&mut self, topic: &str) -> Result<&mut Route, BusError> {
        if !self.routes.contains_key(topic) {
            if !is_name(topic, 128) {
                return Err(BusError::BadTopic(topic.to_string()));
            }
            if self.routes.len() >= TOPICS_MAX {
                return Err(BusError::TooManyTopics { limit: TOPICS_MAX, topic: topic.to_string() });
            }
            self.routes.insert(Name::from(topic), Route::default());
        }
        // Invariant: the topic was inserted just above if it was missing.
        Ok(self.routes.get_mut(topic).expect("topic is interned"))
    }

    /// The smallest limits that would have carried every delivery so far:
    /// the longest the queue has been and the most one handler emitted.
    pub fn limits_used(&self) -> BusLimits {
        let fit = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        BusLimits { queue_len_max: fit(self.queue_len_peak), outbox_len_max: fit(self.outbox_len_peak) }
    }

    /// Each actor's [`Actor::state`] with its random generator's word
    /// position, in registration order.
    pub fn actor_states(&self) -> Vec<(String, Value)> {
        self.slots
            .iter()
            .map(|s| {
                let rng = Value::Int(i64::try_from(s.rng.state().word_pos).unwrap_or(i64::MAX));
                (
                    s.name.to_string(),
                    Value::Record(vec![("rng_word_pos".into(), rng), ("state".into(), s.actor.state())]),
                )
            })
            .collect()
    }

    /// Each actor's random generator state, in registration order: what a
    /// test's execution log records before and after a run.
    pub fn rng_states(&self) -> Vec<(String, crate::rng::RngState)> {
        self.slots.iter().map(|s| (s.name.to_string(), s.rng.state())).collect()
    }

    /// The actor names in registration order.
    pub fn actor_names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.name.to_string()).collect()
    }

    /// The run seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The last tick opened (0 before the first ingress).
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// The journal.
    pub fn journal(&self) -> &J {
        &self.journal
    }

    /// The journal, mutably (to flush or seal it between ticks).
    pub fn journal_mut(&mut self) -> &mut J {
        &mut self.journal
    }

    /// Ends the bus and hands back its journal.
    pub fn into_journal(self) -> J {
        self.journal
    }

    /// Takes one packet from outside on `topic`: opens tick `t + 1`, delivers
    /// it and everything it causes, and returns when the tick is quiescent.
    /// The payload may be shared (`Arc<Value>`): deliveries hold it by
    /// reference count, never by copy.
    pub fn ingress(&mut self, topic: &str, payload: impl Into<Arc<Value>>) -> Result<IngressReport, BusError> {
        if self.stopped {
            return Err(BusError::Stopped);
        }
        if !self.routes.get(topic).is_some_and(|route| route.ingress) {
            // Refused before the tick opens: a bad packet does not stop the bus.
            let allowed: Vec<&str> =
                self.routes.iter().filter(|(_, route)| route.ingress).map(|(name, _)| &**name).collect();
            return Err(BusError::NotIngress { topic: topic.to_string(), allowed: allowed.join(", ") });
        }
        self.tick += 1;
        self.seq = 0;
        self.egress.clear();
        self.tick_records = (0, 0);
        let from = self.ingress_name.clone();
        let result = self.enqueue(topic, from, None, payload.into()).and_then(|()| self.drain());
        if result.is_err() {
            self.stopped = true;
            self.queue.clear();
        }
        let (cycles, frames) = self.tick_records;
        result.map(|deliveries| IngressReport { tick: self.tick, deliveries, cycles, frames })
    }

    fn enqueue(&mut self, topic: &str, from: Name, cause: Option<u64>, payload: Arc<Value>) -> Result<(), BusError> {
        // First use of a topic nobody subscribes to: check it once and
        // intern it, so its deliveries share one name. A known topic costs
        // two map lookups here, not three.
        if !self.routes.contains_key(topic) {
            self.route_mut(topic)?;
        }
        // Invariant: route_mut interned the topic just above.
        let (topic_name, route) = self.routes.get_key_value(topic).expect("topic is interned");
        let topic_name = topic_name.clone();
        let targets = &route.slots;
        let fan_out = targets.len().max(1);
        if self.queue.len() + fan_out > self.limits.queue_len_max as usize {
            return Err(BusError::QueueFull {
                limit: self.limits.queue_len_max,
                topic: topic.to_string(),
                tick: self.tick,
            });
        }
        if route.egress && !Arc::ptr_eq(&from, &self.ingress_name) {
            self.egress.push(Egress {
                tick: self.tick,
                seq: self.seq,
                topic: topic_name.clone(),
                from: from.clone(),
                payload: payload.clone(),
            });
        }
        self.queue_len_peak = self.queue_len_peak.max(self.queue.len() + fan_out);
        let mut push = |to: Name, slot: Option<usize>, seq: &mut u64| {
            let envelope = Envelope {
                tick: self.tick,
                seq: *seq,
                topic: topic_name.clone(),
                from: from.clone(),
                to,
                cause,
                payload: payload.clone(),
            };
            *seq += 1;
            self.queue.push_back((envelope, slot));
        };
        if targets.is_empty() {
            push(self.nobody_name.clone(), None, &mut self.seq);
        } else {
            for &slot in targets {
                push(self.slots[slot].name.clone(), Some(slot), &mut self.seq);
            }
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<u64, BusError> {
        let mut delivered = 0;
        while let Some((envelope, slot)) = self.queue.pop_front() {
            delivered += 1;
            let at = (envelope.tick, envelope.seq);
            assert!(
                at > self.last_delivered,
                "(tick, seq) must strictly increase: {at:?} after {:?}",
                self.last_delivered
            );
            self.last_delivered = at;
            self.journal.record(Entry::Delivery(&envelope)).map_err(|source| BusError::Journal {
                tick: envelope.tick,
                seq: envelope.seq,
                source,
            })?;
            self.journaled += 1;
            let Some(slot) = slot else { continue };
            self.deliver(slot, &envelope)?;
        }
        Ok(delivered)
    }

    fn deliver(&mut self, index: usize, envelope: &Envelope) -> Result<(), BusError> {
        let slot = &mut self.slots[index];
        let _stamp = crate::log::Stamp::enter(envelope.tick, envelope.seq, &slot.name);
        let mut out = Outbox {
            tick: envelope.tick,
            journaled: self.journaled,
            rng: &mut slot.rng,
            messages: Vec::new(),
            cycles: Vec::new(),
            frames: Vec::new(),
        };
        let actor = &mut slot.actor;
        let outcome = catch_unwind(AssertUnwindSafe(|| actor.handle(envelope, &mut out)));
        let at = || DeliveryPoint {
            tick: envelope.tick,
            seq: envelope.seq,
            topic: envelope.topic.clone(),
            actor: slot.name.clone(),
        };
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-text panic payload".to_string());
            return Err(BusError::ActorPanicked { at: at(), message });
        }
        self.outbox_len_peak = self.outbox_len_peak.max(out.len());
        if out.len() > self.limits.outbox_len_max as usize {
            return Err(BusError::OutboxFull { at: at(), emitted: out.len(), limit: self.limits.outbox_len_max });
        }
        let Outbox { messages, cycles, frames, .. } = out;
        let from = slot.name.clone();
        let (tick, seq) = (envelope.tick, envelope.seq);
        let journal_error = |source| BusError::Journal { tick, seq, source };
        for record in &cycles {
            self.journal.record(Entry::Cycle { tick, seq, record }).map_err(journal_error)?;
            self.journaled += 1;
        }
        for frame in &frames {
            self.journal.record(Entry::Frame { tick, seq, frame }).map_err(journal_error)?;
            self.journaled += 1;
        }
        self.tick_records.0 += cycles.len() as u64;
        self.tick_records.1 += frames.len() as u64;
        for (topic, payload) in messages {
            self.enqueue(&topic, from.clone(), Some(seq), Arc::new(payload))?;
        }
        Ok(())
    }
}
