//! The journal trait: the bus calls it for every delivery, in delivery order,
//! before the receiving actor runs. The bus knows nothing of files; the
//! chronicle writer in `metagov-storage` implements this trait.

use crate::envelope::Envelope;
use crate::records::{CycleRecord, MetaFrame};
use crate::value::Value;

/// What a journal can fail with. The bus wraps it with the delivery it was
/// journaling.
pub type JournalError = Box<dyn std::error::Error + Send + Sync>;

/// One entry, in the order the bus produced it.
#[derive(Clone, Copy, Debug)]
pub enum Entry<'a> {
    /// A delivery, journaled before the receiving actor handles it.
    Delivery(&'a Envelope),
    /// A cycle record an actor emitted while handling delivery `(tick, seq)`.
    Cycle {
        /// Tick of the delivery whose handler emitted it.
        tick: u64,
        /// Seq of that delivery.
        seq: u64,
        /// The record.
        record: &'a CycleRecord,
    },
    /// A meta frame an actor emitted while handling delivery `(tick, seq)`.
    Frame {
        /// Tick of the delivery whose handler emitted it.
        tick: u64,
        /// Seq of that delivery.
        seq: u64,
        /// The frame.
        frame: &'a MetaFrame,
    },
    /// When the ingress packet of delivery `(tick, seq)` reached the shell,
    /// in nanoseconds since the Unix epoch: metadata for people, recorded by
    /// a live shell's journal right after that delivery. The bus never
    /// produces it and never hands it to an actor.
    Arrival {
        /// Tick of the ingress delivery.
        tick: u64,
        /// Seq of the ingress delivery (0).
        seq: u64,
        /// Wall-clock arrival time, nanoseconds since the Unix epoch.
        unix_nanos: i64,
    },
}

/// A sink for entries. Calls come in `(tick, seq)` order.
pub trait Journal {
    /// Takes one entry. An error stops the run.
    fn record(&mut self, entry: Entry<'_>) -> Result<(), JournalError>;
    /// Makes everything recorded so far durable to the degree the journal
    /// promises (for a file: written to the OS).
    fn flush(&mut self) -> Result<(), JournalError>;
}

/// Records nothing. For runs whose record is not wanted (and the benchmark
/// baseline "journal off").
#[derive(Debug, Default)]
pub struct NoJournal;

impl Journal for NoJournal {
    fn record(&mut self, _: Entry<'_>) -> Result<(), JournalError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), JournalError> {
        Ok(())
    }
}

/// An owned copy of an [`Entry`].
#[derive(Clone, Debug, PartialEq)]
pub enum OwnedEntry {
    /// See [`Entry::Delivery`].
    Delivery(Envelope),
    /// See [`Entry::Cycle`].
    Cycle {
        /// Tick of the emitting delivery.
        tick: u64,
        /// Seq of the emitting delivery.
        seq: u64,
        /// The record.
        record: CycleRecord,
    },
    /// See [`Entry::Frame`].
    Frame {
        /// Tick of the emitting delivery.
        tick: u64,
        /// Seq of the emitting delivery.
        seq: u64,
        /// The frame.
        frame: MetaFrame,
    },
    /// See [`Entry::Arrival`].
    Arrival {
        /// Tick of the ingress delivery.
        tick: u64,
        /// Seq of the ingress delivery.
        seq: u64,
        /// Wall-clock arrival time, nanoseconds since the Unix epoch.
        unix_nanos: i64,
    },
}

impl From<Entry<'_>> for OwnedEntry {
    fn from(entry: Entry<'_>) -> Self {
        match entry {
            Entry::Delivery(e) => OwnedEntry::Delivery(e.clone()),
            Entry::Cycle { tick, seq, record } => OwnedEntry::Cycle { tick, seq, record: record.clone() },
            Entry::Frame { tick, seq, frame } => OwnedEntry::Frame { tick, seq, frame: frame.clone() },
            Entry::Arrival { tick, seq, unix_nanos } => OwnedEntry::Arrival { tick, seq, unix_nanos },
        }
    }
}

/// Keeps every entry in memory, bounded by `entries_max`.
#[derive(Debug)]
pub struct MemoryJournal {
    /// The entries, in order.
    pub entries: Vec<OwnedEntry>,
    entries_max: usize,
}

impl MemoryJournal {
    /// A journal that fails once it holds `entries_max` entries.
    pub fn new(entries_max: usize) -> Self {
        MemoryJournal { entries: Vec::new(), entries_max }
    }
}

impl Journal for MemoryJournal {
    fn record(&mut self, entry: Entry<'_>) -> Result<(), JournalError> {
        if self.entries.len() >= self.entries_max {
            return Err(format!("memory journal is full ({} entries)", self.entries_max).into());
        }
        self.entries.push(entry.into());
        Ok(())
    }
    fn flush(&mut self) -> Result<(), JournalError> {
        Ok(())
    }
}

impl<J: Journal + ?Sized> Journal for &mut J {
    fn record(&mut self, entry: Entry<'_>) -> Result<(), JournalError> {
        (**self).record(entry)
    }
    fn flush(&mut self) -> Result<(), JournalError> {
        (**self).flush()
    }
}

impl OwnedEntry {
    /// `(tick, seq)` of the entry (for records: of the delivery that emitted them).
    pub fn at(&self) -> (u64, u64) {
        match self {
            OwnedEntry::Delivery(e) => (e.tick, e.seq),
            OwnedEntry::Cycle { tick, seq, .. }
            | OwnedEntry::Frame { tick, seq, .. }
            | OwnedEntry::Arrival { tick, seq, .. } => (*tick, *seq),
        }
    }

    /// The kind as a word: `delivery`, `cycle`, `frame` or `arrival`.
    pub fn kind(&self) -> &'static str {
        match self {
            OwnedEntry::Delivery(_) => "delivery",
            OwnedEntry::Cycle { .. } => "cycle",
            OwnedEntry::Frame { .. } => "frame",
            OwnedEntry::Arrival { .. } => "arrival",
        }
    }

    /// The JSON text of [`OwnedEntry::to_value`], written as a stream and
    /// without copying the payload: what `export` and `query --json` print.
    pub fn json(&self) -> EntryJson<'_> {
        EntryJson(self)
    }

    /// The entry as one record value with every field named: what exports
    /// print and what replay diffs field by field.
    pub fn to_value(&self) -> Value {
        let (tick, seq) = self.at();
        let mut fields = vec![
            ("kind".into(), Value::Text(self.kind().into())),
            ("tick".into(), Value::Int(tick as i64)),
            ("seq".into(), Value::Int(seq as i64)),
        ];
        match self {
            OwnedEntry::Delivery(e) => fields.extend([
                ("topic".into(), Value::Text(e.topic.to_string())),
                ("from".into(), Value::Text(e.from.to_string())),
                ("to".into(), Value::Text(e.to.to_string())),
                ("cause".into(), e.cause.map_or(Value::Unit, |c| Value::Int(c as i64))),
                ("payload".into(), (*e.payload).clone()),
            ]),
            OwnedEntry::Cycle { record, .. } => fields.push(("payload".into(), record.to_value())),
            OwnedEntry::Frame { frame, .. } => fields.push(("payload".into(), frame.to_value())),
            OwnedEntry::Arrival { unix_nanos, .. } => fields.push(("unix_nanos".into(), Value::Int(*unix_nanos))),
        }
        Value::Record(fields)
    }
}

/// The JSON text of an entry (see [`OwnedEntry::json`]).
#[derive(Clone, Copy, Debug)]
pub struct EntryJson<'a>(&'a OwnedEntry);

impl std::fmt::Display for EntryJson<'_> {
    /// The fields of [`OwnedEntry::to_value`] in the order its JSON rendering
    /// sorts them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::value::write_json_str;
        let entry = self.0;
        let (tick, seq) = entry.at();
        // The same wrapping casts as `to_value`.
        let (tick, seq) = (tick as i64, seq as i64);
        let kind = entry.kind();
        match entry {
            OwnedEntry::Delivery(e) => {
                f.write_str("{\"cause\":")?;
                match e.cause {
                    Some(cause) => write!(f, "{}", cause as i64)?,
                    None => f.write_str("null")?,
                }
                f.write_str(",\"from\":")?;
                write_json_str(f, &e.from)?;
                write!(f, ",\"kind\":\"{kind}\",\"payload\":")?;
                e.payload.write_json(f)?;
                write!(f, ",\"seq\":{seq},\"tick\":{tick},\"to\":")?;
                write_json_str(f, &e.to)?;
                f.write_str(",\"topic\":")?;
                write_json_str(f, &e.topic)?;
                f.write_str("}")
            }
            OwnedEntry::Cycle { record, .. } => {
                write!(f, "{{\"kind\":\"{kind}\",\"payload\":")?;
                record.to_value().write_json(f)?;
                write!(f, ",\"seq\":{seq},\"tick\":{tick}}}")
            }
            OwnedEntry::Frame { frame, .. } => {
                write!(f, "{{\"kind\":\"{kind}\",\"payload\":")?;
                frame.to_value().write_json(f)?;
                write!(f, ",\"seq\":{seq},\"tick\":{tick}}}")
            }
            OwnedEntry::Arrival { unix_nanos, .. } => {
                write!(f, "{{\"kind\":\"{kind}\",\"seq\":{seq},\"tick\":{tick},\"unix_nanos\":{unix_nanos}}}")
            }
        }
    }
}
