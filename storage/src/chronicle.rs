//! The in-memory chronicle: a run's context and entries held in a
//! `Vec`, saved to and loaded from a `.cmeta` file, queried by tick range,
//! and the replay of a cycle record's random stream.
//!
//! Its operations are `record_cycle`, `save_chronicle`, `load_chronicle`,
//! `query_range` and `replay_cycle`. This
//! module holds no format logic of its own: files go through
//! [`ChronicleWriter`] and [`ChronicleReader`]. It never touches the clock.

use std::path::Path;

use metagov_bus::{stream_of, ActorRng, CycleRecord, OwnedEntry, RngState};

use crate::codec::entry_ref;
use crate::context::RunContext;
use crate::error::ChronicleError;
use crate::reader::{ChronicleReader, Tail};
use crate::writer::{ChronicleWriter, WriterOptions};

/// A whole chronicle in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Chronicle {
    /// The run context (the file header).
    pub context: RunContext,
    /// Every entry, in journal order.
    pub records: Vec<OwnedEntry>,
    /// How the file it was loaded from ended; `Unsealed` for a chronicle
    /// built in memory.
    pub tail: Tail,
}

impl Chronicle {
    /// An empty chronicle for a run.
    pub fn new(context: RunContext) -> Chronicle {
        Chronicle { context, records: Vec::new(), tail: Tail::Unsealed }
    }

    /// Appends a cycle record emitted while handling delivery `(tick, seq)`.
    /// `(tick, seq)` must not be before the last entry's (asserted, also in
    /// release).
    pub fn record_cycle(&mut self, tick: u64, seq: u64, record: CycleRecord) {
        if let Some(last) = self.records.last().map(OwnedEntry::at) {
            assert!(
                (tick, seq) >= last,
                "chronicle: cycle record ({tick}, {seq}) comes before the last entry {last:?}"
            );
        }
        self.records.push(OwnedEntry::Cycle { tick, seq, record });
    }

    /// Writes the chronicle to a new, sealed file at `path` (refuses to
    /// replace an existing file).
    pub fn save_chronicle(&self, path: &Path, options: WriterOptions) -> Result<(), ChronicleError> {
        let mut writer = ChronicleWriter::create(path, &self.context, options)?;
        for entry in &self.records {
            writer.append(entry_ref(entry))?;
        }
        writer.seal()?;
        Ok(())
    }

    /// Reads every record of the file at `path`. A torn tail is tolerated:
    /// the whole frames before it are loaded and [`Chronicle::tail`] says
    /// what was dropped. Corruption is an error.
    pub fn load_chronicle(path: &Path) -> Result<Chronicle, ChronicleError> {
        let reader = ChronicleReader::open(path)?;
        let records = reader.records().collect::<Result<Vec<_>, _>>()?;
        Ok(Chronicle { context: reader.context().clone(), records, tail: reader.tail().clone() })
    }

    /// The entries whose tick is in `start..=end`, in order.
    pub fn query_range(&self, start: u64, end: u64) -> &[OwnedEntry] {
        let from = self.records.partition_point(|e| e.at().0 < start);
        let to = self.records.partition_point(|e| e.at().0 <= end);
        self.records.get(from..to).unwrap_or(&[])
    }
}

/// The state a cycle is replayed from.
#[derive(Clone, Debug)]
pub struct ReplayState {
    /// The tick the cycle ended at.
    pub tick: u64,
    /// The emitting module (actor).
    pub module: String,
    /// The module's generator, at the position it had when the record was
    /// made: the numbers it draws next are the ones the run drew.
    pub rng: ActorRng,
}

/// `replay_cycle`: restores `module`'s [`ActorRng`] in a run
/// seeded with `seed` at the record's `seed_state` (the actor's stream
/// position in 32-bit words).
pub fn replay_cycle(record: &CycleRecord, seed: u64, module: &str) -> ReplayState {
    let rng = ActorRng::restore(RngState { seed, stream: stream_of(module), word_pos: u128::from(record.seed_state) });
    ReplayState { tick: record.tick, module: module.to_string(), rng }
}
