//! Replay verification (seeds 000 and 004, mode `verify`): rebuild a fresh
//! bus from a chronicle's recorded context, re-inject the recorded ingress,
//! and compare every entry the replay journals with the recorded one.
//!
//! The comparison streams: the recorded entries are read frame by frame as
//! the replay asks for them, so memory does not grow with the run. Replay
//! never writes to the original chronicle.

use std::fmt;
use std::path::Path;

use metagov_bus::{Bus, BusError, Egress, Entry, FieldDiff, Journal, JournalError, OwnedEntry, Value, INGRESS};

use crate::context::RunContext;
use crate::reader::IntegrityStatus;
use crate::run::{RunReader, RunRecords};
use crate::ChronicleError;

/// The first place where a replay and its recording part ways.
#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    /// `(tick, seq)` of the entry that differs (of whichever side has one).
    pub at: (u64, u64),
    /// The recorded entry, or `None` where the replay produced an extra one.
    pub expected: Option<OwnedEntry>,
    /// The replayed entry, or `None` where the recording has one the replay
    /// did not produce.
    pub actual: Option<OwnedEntry>,
    /// Every field that differs, with its path (`payload.metrics.loss`).
    pub fields: Vec<FieldDiff>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (tick, seq) = self.at;
        writeln!(f, "replay diverged at (tick {tick}, seq {seq})")?;
        match (&self.expected, &self.actual) {
            (Some(_), None) => writeln!(f, "  the recording has an entry here that the replay did not produce")?,
            (None, Some(_)) => writeln!(f, "  the replay produced an entry here that the recording does not have")?,
            _ => {}
        }
        let show = |v: &Option<Value>| v.as_ref().map_or("(absent)".to_string(), Value::to_string);
        let width = self.fields.iter().map(|d| d.path.len()).max().unwrap_or(0).max(5);
        writeln!(f, "  {:width$}  {:<30}  actual", "field", "expected")?;
        for d in &self.fields {
            writeln!(f, "  {:width$}  {:<30}  {}", d.path, show(&d.expected), show(&d.actual))?;
        }
        Ok(())
    }
}

/// What a successful comparison covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayReport {
    /// Ingress packets re-injected.
    pub ingress: u64,
    /// Entries compared and found identical.
    pub entries: u64,
    /// False when the recording ended (unsealed, torn or at damage) inside a
    /// tick: everything read matched, and the replay went on past its end.
    pub complete: bool,
    /// The verdict on the recording as the replay read it, the same as
    /// `verify_file`'s: only `Sealed` vouches that the whole run was
    /// compared. On `Corrupt`, the entries before the damage matched.
    pub status: IntegrityStatus,
    /// Hex chain of the last frame the replay read: on `Sealed`, the file's
    /// chain head, as `verify_file` reports it.
    pub chain_head: String,
    /// Records the replay read from the file (arrival records included,
    /// which it skips): on `Sealed`, all of them.
    pub records: u64,
}

/// Why a replay could not be completed or did not match.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The chronicle could not be read.
    #[error(transparent)]
    Chronicle(#[from] ChronicleError),
    /// The actor set could not be rebuilt from the recorded context.
    #[error("cannot rebuild the run from the chronicle's context: {0}")]
    Build(String),
    /// The replay and the recording differ.
    #[error("{0}")]
    Diverged(Box<Divergence>),
    /// The rebuilt bus stopped with an error of its own.
    #[error("the replayed run stopped: {0}")]
    Bus(BusError),
}

/// A journal that, instead of writing, checks each entry against the next
/// recorded one and refuses the first that differs.
pub struct ComparingJournal<'r> {
    records: RunRecords<'r>,
    /// The next recorded entry, once peeked (`Some(None)`: the end).
    peeked: Option<Option<Result<OwnedEntry, ChronicleError>>>,
    compared: u64,
    divergence: Option<Divergence>,
    read_error: Option<ChronicleError>,
    /// The replay asked for an entry after the last recorded one.
    exhausted: bool,
    /// The recording is of format version 1, which kept no delivery
    /// causes: the replay's are not compared.
    without_causes: bool,
}

fn divergence(expected: Option<OwnedEntry>, actual: Option<OwnedEntry>) -> Divergence {
    let as_value = |e: &Option<OwnedEntry>| e.as_ref().map_or(Value::Unit, OwnedEntry::to_value);
    let fields = as_value(&expected).diff(&as_value(&actual));
    let at = expected.as_ref().or(actual.as_ref()).map_or((0, 0), OwnedEntry::at);
    Divergence { at, expected, actual, fields }
}

impl<'r> ComparingJournal<'r> {
    fn new(records: RunRecords<'r>, version: u16) -> Self {
        ComparingJournal {
            records,
            peeked: None,
            compared: 0,
            divergence: None,
            read_error: None,
            exhausted: false,
            without_causes: version == 1,
        }
    }

    /// The next recorded entry the bus produces: arrival records are a
    /// shell's notes for people, which no replay makes, so they are passed.
    fn next_recorded(&mut self) -> Option<Result<OwnedEntry, ChronicleError>> {
        self.records.find(|entry| !matches!(entry, Ok(OwnedEntry::Arrival { .. })))
    }

    /// The next recorded ingress `(topic, payload)`, `Ok(None)` at the end of
    /// the recording, or the divergence when the next recorded entry is not
    /// an ingress delivery opening a tick.
    fn peek(&mut self) -> Option<&Result<OwnedEntry, ChronicleError>> {
        if self.peeked.is_none() {
            self.peeked = Some(self.next_recorded());
        }
        self.peeked.as_ref().and_then(Option::as_ref)
    }

    fn next_expected(&mut self) -> Option<Result<OwnedEntry, ChronicleError>> {
        match self.peeked.take() {
            Some(peeked) => peeked,
            None => self.next_recorded(),
        }
    }

    fn next_ingress(&mut self) -> Result<Option<(String, Value)>, ReplayError> {
        match self.peek() {
            None => return Ok(None),
            Some(Ok(OwnedEntry::Delivery(e))) if &*e.from == INGRESS && e.seq == 0 => {
                return Ok(Some((e.topic.to_string(), (*e.payload).clone())))
            }
            Some(Ok(other)) => return Err(ReplayError::Diverged(Box::new(divergence(Some(other.clone()), None)))),
            Some(Err(_)) => {}
        }
        match self.next_expected() {
            Some(Err(e)) => Err(ReplayError::Chronicle(e)),
            _ => Ok(None),
        }
    }
}

impl Journal for ComparingJournal<'_> {
    fn record(&mut self, entry: Entry<'_>) -> Result<(), JournalError> {
        let mut actual = OwnedEntry::from(entry);
        if let (true, OwnedEntry::Delivery(delivery)) = (self.without_causes, &mut actual) {
            delivery.cause = None;
        }
        match self.next_expected() {
            Some(Ok(expected)) if expected == actual => {
                self.compared += 1;
                Ok(())
            }
            Some(Err(e)) => {
                let message = e.to_string();
                self.read_error = Some(e);
                Err(message.into())
            }
            None => {
                self.exhausted = true;
                let d = divergence(None, Some(actual));
                let message = format!("the recording ends before {:?}", d.at);
                self.divergence = Some(d);
                Err(message.into())
            }
            Some(Ok(expected)) => {
                let d = divergence(Some(expected), Some(actual));
                let message = format!("diverged at {:?}", d.at);
                self.divergence = Some(d);
                Err(message.into())
            }
        }
    }

    fn flush(&mut self) -> Result<(), JournalError> {
        Ok(())
    }
}

/// Replays the run `reader` holds (one chronicle, or a run directory's
/// segments in order) on the bus that `build` makes from its recorded
/// context, and compares every entry.
///
/// `build` gets the recorded [`RunContext`] (seed, canonical config text,
/// actor names) and the comparing journal, and returns the bus with the same
/// actor set. Returns what was compared, or the first divergence.
pub fn verify_replay<'r, B>(reader: &'r RunReader, build: B) -> Result<ReplayReport, ReplayError>
where
    B: FnOnce(&RunContext, ComparingJournal<'r>) -> Result<Bus<ComparingJournal<'r>>, String>,
{
    verify_replay_observed(reader, build, |_| {})
}

/// [`verify_replay`], handing `observe` the replayed bus's egress after
/// each tick that matched the recording: on a replay that matches to the end
/// of a sealed recording, that is every publish the run handed out, as
/// recorded.
pub fn verify_replay_observed<'r, B>(
    reader: &'r RunReader,
    build: B,
    mut observe: impl FnMut(&[Egress]),
) -> Result<ReplayReport, ReplayError>
where
    B: FnOnce(&RunContext, ComparingJournal<'r>) -> Result<Bus<ComparingJournal<'r>>, String>,
{
    let first = reader.segments()[0].segment().index;
    if first != 0 {
        return Err(ReplayError::Build(format!(
            "`{}` is segment {first} of a run, not its start: replay the run directory that holds it",
            reader.path().display()
        )));
    }
    let journal = ComparingJournal::new(reader.records(), reader.version());
    let mut bus = build(reader.context(), journal).map_err(ReplayError::Build)?;
    let recorded_actors = &reader.context().actors;
    if !recorded_actors.is_empty() && &bus.actor_names() != recorded_actors {
        return Err(ReplayError::Build(format!(
            "the rebuilt actor set {:?} differs from the recorded {:?}",
            bus.actor_names(),
            recorded_actors
        )));
    }
    let mut ingress = 0;
    loop {
        let next = match bus.journal_mut().next_ingress() {
            Ok(next) => next,
            Err(ReplayError::Chronicle(e)) => return at_damage(bus.journal(), ingress, e),
            Err(e) => return Err(e),
        };
        let Some((topic, payload)) = next else { break };
        ingress += 1;
        if let Err(error) = bus.ingress(&topic, payload) {
            let journal = bus.journal_mut();
            if journal.exhausted {
                if let Some(status) = journal.records.status().filter(|s| **s != IntegrityStatus::Sealed) {
                    let status = status.clone();
                    let (chain_head, records) = (journal.records.chain_head(), journal.records.records_read());
                    return Ok(ReplayReport {
                        ingress,
                        entries: journal.compared,
                        complete: false,
                        status,
                        chain_head,
                        records,
                    });
                }
            }
            if let Some(d) = journal.divergence.take() {
                return Err(ReplayError::Diverged(Box::new(d)));
            }
            if let Some(e) = journal.read_error.take() {
                return at_damage(journal, ingress, e);
            }
            return Err(ReplayError::Bus(error));
        }
        observe(bus.egress());
    }
    let journal = bus.journal();
    // Invariant: the loop ends when the recording has no entry left, and
    // then its walk has given its verdict.
    let status = journal.records.status().cloned().expect("an exhausted recording has a verdict");
    Ok(ReplayReport {
        ingress,
        entries: journal.compared,
        complete: true,
        status,
        chain_head: journal.records.chain_head(),
        records: journal.records.records_read(),
    })
}

/// The recording could not be read past some point: damage there ends the
/// comparison (everything before it matched); an I/O error is an error.
fn at_damage(journal: &ComparingJournal<'_>, ingress: u64, e: ChronicleError) -> Result<ReplayReport, ReplayError> {
    match e {
        ChronicleError::Corrupt { location, offset, reason, .. } => Ok(ReplayReport {
            ingress,
            entries: journal.compared,
            complete: false,
            status: IntegrityStatus::Corrupt { location, offset, reason },
            chain_head: journal.records.chain_head(),
            records: journal.records.records_read(),
        }),
        e => Err(ReplayError::Chronicle(e)),
    }
}

/// Opens `path` (a chronicle file or a run directory) and runs
/// [`verify_replay`] on it.
pub fn verify_replay_file<B>(path: &Path, build: B) -> Result<ReplayReport, ReplayError>
where
    B: for<'r> FnOnce(&RunContext, ComparingJournal<'r>) -> Result<Bus<ComparingJournal<'r>>, String>,
{
    let reader = RunReader::open(path)?;
    verify_replay(&reader, build)
}
