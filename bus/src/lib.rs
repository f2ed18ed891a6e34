//! metagov's deterministic in-process bus.
//!
//! This crate owns logical time and order: [`Envelope`]s stamped with
//! `(tick, seq)`, the [`Actor`] trait, the [`Bus`] that delivers strictly in
//! `(tick, seq)` order, the seeded per-actor [`ActorRng`], the [`Value`]
//! payload whose numbers are on the 1e-6 grid by construction, the
//! [`Journal`] trait it calls on every delivery, and the deterministic text
//! log layer.
//!
//! It must never read the wall clock, the environment, files or sockets, and
//! never let hash-map iteration order reach an output: it does no I/O at all
//! (the journal is a trait someone else implements), so a run is a pure
//! function of the seed, the actor set and the ingress sequence.
#![deny(missing_docs)]

mod bus;
mod envelope;
mod journal;
pub mod log;
mod records;
mod rng;
mod value;

pub use bus::{Actor, Bus, BusError, BusLimits, DeliveryPoint, Egress, IngressReport, Outbox};
pub use envelope::{Envelope, Name, TraceId, INGRESS, NOBODY};
pub use journal::{Entry, EntryJson, Journal, JournalError, MemoryJournal, NoJournal, OwnedEntry};
pub use records::{CycleRecord, MetaFrame, ShapeError};
pub use rng::{stream_of, ActorRng, RngState};
pub use value::{write_json_str, FieldDiff, Fixed, Key, QuantizeError, Value};
