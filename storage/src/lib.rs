//! metagov's storage: the chronicle (`.cmeta`) writer and reader, the run
//! context (session), replay verification, and the prior store.
//!
//! This crate owns every byte metagov writes about a run. The chronicle
//! writer implements the bus's `Journal` trait; the reader never trusts a
//! length it has not checked, never panics on a file's contents, and tells a
//! torn tail (kept up to the last whole frame) from corruption (located by
//! frame and byte offset). It must never decide anything about governance and
//! never feed the wall clock or the environment into a run: the only platform
//! fact it records, [`Environment`], is for people.
//!
//! The format is specified in `docs/chronicle-format.md`; [`format`](mod@format) holds its
//! fixed layouts, [`codec`] its records and [`packing`] how a frame stores
//! them (plain or zstd).
#![deny(missing_docs)]

mod chronicle;
pub mod codec;
mod context;
mod error;
pub mod format;
pub mod packing;
mod priors;
mod reader;
mod replay;
mod run;
mod writer;

pub use chronicle::{replay_cycle, Chronicle, ReplayState};
pub use codec::{check_frame, decode_frame, encode_frame, entry_ref, EncodeError, FrameEncoder};
pub use context::{
    config_run_seed, init_session, run_id_for, sha256_hex, this_build, utc_text, Arch, ContextFrame, Environment, Os,
    RunContext, PRODUCER,
};
pub use error::{ChronicleError, Location};
pub use format::{crc64, FrameInfo, SegmentLink};
pub use priors::{PriorStore, PriorStoreError, PRIOR_FILE_BYTES_MAX};
pub use reader::{verify_file, ChronicleReader, IntegrityReport, IntegrityStatus, Records, Span, Tail};
pub use replay::{
    verify_replay, verify_replay_file, verify_replay_observed, ComparingJournal, Divergence, ReplayError, ReplayReport,
};
pub use run::{
    segment_file_name, segment_files, verify_run, RunIntegrity, RunReader, RunRecords, FIRST_SEGMENT_FILE, SEGMENTS_MAX,
};
pub use writer::{ChronicleWriter, SetLen, WriterOptions};
