//! The chronicle writer: the bus's [`Journal`] on a file or any [`Write`].
//!
//! It writes the preamble and header at once, then whole frames: each is
//! built in memory by the [`FrameEncoder`], its header and chain link are
//! re-verified from the very bytes about to go out, and header and payload
//! are written in one sequence followed by a flush, so a reader (or a kill)
//! only ever sees whole frames or a torn tail. Sealing adds the index block
//! and footer.
//!
//! It never reads what it wrote, never seeks, and never reorders records: a
//! record out of journal order is a bug in the caller and fails an assertion
//! that is kept in release builds.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use metagov_bus::{CycleRecord, Entry, Journal, JournalError, MetaFrame, INGRESS};

use crate::codec::{position, EncodeError, FrameEncoder, JournalOrder};
use crate::context::{sha256_hex, RunContext};
use crate::error::ChronicleError;
use crate::format::{
    chain_anchor, chain_link, crc64, encode_header, encode_index, Chain, Footer, FrameHeader, FrameInfo, SegmentLink,
    PAYLOAD_BYTES_MAX,
};
use crate::packing::{Packer, ZSTD_LEVEL_DEFAULT};

/// When the writer closes a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// A frame closes once it holds this many records (at least 1).
    pub frame_records_max: u32,
    /// A frame closes once its payload reaches this many bytes (1 to
    /// `PAYLOAD_BYTES_MAX`). A frame may exceed it by its last record.
    pub frame_bytes_max: u32,
    /// The zstd level frames are packed with when that makes them smaller
    /// (`None`: every frame is stored plain).
    pub zstd_level: Option<i32>,
    /// Close a frame that reached a limit only before the record that opens
    /// the next tick, so every frame ends with a whole tick (it may exceed
    /// the limits by one tick's records; a tick is still split where the
    /// frame would cross the format's own limits, the payload and decoded
    /// sizes a reader accepts). A live run writes this way, so a kill
    /// between two frame writes never leaves half a tick behind.
    pub tick_aligned: bool,
}

impl From<&metagov_config::ChronicleConfig> for WriterOptions {
    /// The frame limits a config's `[chronicle]` section asks for.
    fn from(config: &metagov_config::ChronicleConfig) -> Self {
        WriterOptions {
            frame_records_max: config.frame_records_max,
            frame_bytes_max: config.frame_bytes_max,
            ..WriterOptions::default()
        }
    }
}

impl Default for WriterOptions {
    /// 4096 records or 1 MiB, whichever comes first, packed with zstd at
    /// its default level, closed wherever a limit is reached.
    fn default() -> Self {
        WriterOptions {
            frame_records_max: 4096,
            frame_bytes_max: 1 << 20,
            zstd_level: Some(ZSTD_LEVEL_DEFAULT),
            tick_aligned: false,
        }
    }
}

/// Writes a chronicle to `W`.
///
/// Call order: [`new`](Self::new) or [`create`](Self::create) (writes the
/// header), then [`append`](Self::append) entries in journal order,
/// [`flush`](Self::flush) whenever the records so far must reach the OS,
/// and finally [`seal`](Self::seal). Records appended since the last flush
/// are lost if the writer is dropped without `flush` or `seal`, exactly as
/// if the process had been killed.
#[derive(Debug)]
pub struct ChronicleWriter<W: Write> {
    out: W,
    path: PathBuf,
    options: WriterOptions,
    encoder: FrameEncoder,
    packer: Packer,
    order: JournalOrder,
    chain: Chain,
    frames: Vec<FrameInfo>,
    bytes_written: u64,
    records_written: u64,
    /// Records in the whole frames written (what a seal after a failure keeps).
    records_framed: u64,
    failed: bool,
    /// The arrival time of the next ingress delivery, once noted.
    arrival: Option<i64>,
}

/// A file that can be cut to a length, for [`ChronicleWriter::seal_written`].
pub trait SetLen {
    /// Cuts or extends the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> std::io::Result<()>;
}

impl SetLen for File {
    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        File::set_len(self, len)
    }
}

impl<F: Write + Seek + SetLen> ChronicleWriter<BufWriter<F>> {
    /// Seals what was written, also after a failed write (a full disk):
    /// drops whatever part of the failed write reached the file, then
    /// writes the index and footer of the whole frames written before it,
    /// in the space the cut frees. The open frame's records and the failed
    /// frame's are lost, as in a kill. On a writer that has not failed it
    /// seals as [`seal`](Self::seal) does.
    ///
    /// # Errors
    ///
    /// If the cut or the seal cannot be written; the file is then an
    /// unsealed chronicle of the whole frames (a reader keeps them).
    pub fn seal_written(self) -> Result<F, ChronicleError> {
        if !self.failed {
            let out = self.seal()?;
            let path = PathBuf::from("<stream>");
            return out.into_inner().map_err(|e| ChronicleError::Io { path, source: e.into_error() });
        }
        let io_error = |source| ChronicleError::Io { path: self.path.clone(), source };
        // The buffer holds bytes of the failed write: dropped, not flushed.
        let (mut file, _failed_bytes) = self.out.into_parts();
        file.set_len(self.bytes_written).map_err(io_error)?;
        file.seek(SeekFrom::Start(self.bytes_written)).map_err(io_error)?;
        let footer = Footer {
            // Invariant: write_frame refuses a frame number beyond u32.
            frame_count: self.frames.len() as u32,
            record_count: self.records_framed,
            index_offset: self.bytes_written,
            chain_head: self.chain,
        };
        let index = encode_index(&self.frames);
        file.write_all(&index)
            .and_then(|()| file.write_all(&footer.to_bytes()))
            .and_then(|()| file.flush())
            .map_err(io_error)?;
        Ok(file)
    }
}

impl ChronicleWriter<BufWriter<File>> {
    /// Creates the file at `path` and writes the header. Refuses to replace
    /// an existing file: a chronicle is never overwritten.
    pub fn create(path: &Path, context: &RunContext, options: WriterOptions) -> Result<Self, ChronicleError> {
        Self::create_segment(path, context, &SegmentLink::FIRST, options)
    }

    /// [`create`](Self::create) for segment `segment.index` of a run: a file
    /// whose header links it to the chain of the segment before.
    pub fn create_segment(
        path: &Path,
        context: &RunContext,
        segment: &SegmentLink,
        options: WriterOptions,
    ) -> Result<Self, ChronicleError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| ChronicleError::Io { path: path.to_path_buf(), source })?;
        Self::start(BufWriter::new(file), path.to_path_buf(), context, segment, options)
    }
}

impl<W: Write> ChronicleWriter<W> {
    /// A writer on `out`; writes the preamble and header immediately.
    pub fn new(out: W, context: &RunContext, options: WriterOptions) -> Result<Self, ChronicleError> {
        Self::start(out, PathBuf::from("<stream>"), context, &SegmentLink::FIRST, options)
    }

    fn start(
        out: W,
        path: PathBuf,
        context: &RunContext,
        segment: &SegmentLink,
        options: WriterOptions,
    ) -> Result<Self, ChronicleError> {
        let invalid = |reason: String| ChronicleError::InvalidArgument { reason };
        if options.frame_records_max == 0 || options.frame_bytes_max == 0 || options.frame_bytes_max > PAYLOAD_BYTES_MAX
        {
            return Err(invalid(format!(
                "writer options {options:?}: frame_records_max must be at least 1, frame_bytes_max 1 to {PAYLOAD_BYTES_MAX}"
            )));
        }
        let actual = sha256_hex(context.config_text.as_bytes());
        if context.config_sha256 != actual {
            return Err(invalid(format!(
                "context config_sha256 {} is not the SHA-256 of its config_text ({actual})",
                context.config_sha256
            )));
        }
        let header = encode_header(context, segment).map_err(invalid)?;
        let packer = Packer::new(options.zstd_level)
            .map_err(|e| invalid(format!("writer options {options:?}: zstd refused the level: {e}")))?;
        let mut writer = ChronicleWriter {
            out,
            path,
            options,
            encoder: FrameEncoder::new(),
            packer,
            order: JournalOrder::default(),
            chain: chain_anchor(&header),
            frames: Vec::new(),
            bytes_written: 0,
            records_written: 0,
            records_framed: 0,
            failed: false,
            arrival: None,
        };
        writer.write_parts(&[&header])?;
        Ok(writer)
    }

    /// Appends one entry. `(tick, seq)` must not decrease, and must strictly
    /// increase from one delivery to the next (asserted, also in release).
    /// A record the format cannot hold is refused with
    /// [`ChronicleError::Unencodable`] and the writer goes on.
    pub fn append(&mut self, entry: Entry<'_>) -> Result<(), ChronicleError> {
        self.usable()?;
        let (tick, seq) = position(&entry);
        let mut order = self.order;
        if let Err(why) = order.admit(matches!(entry, Entry::Delivery(_)), (tick, seq)) {
            panic!("chronicle writer: journal order broken: {why}");
        }
        let unencodable = |e: EncodeError| ChronicleError::Unencodable { tick, seq, reason: e.to_string() };
        if self.options.tick_aligned
            && self.encoder.record_count() > 0
            && tick > self.encoder.last().0
            && self.frame_reached_limit()
        {
            self.write_frame()?;
        }
        match self.encoder.push(entry) {
            Ok(()) => {}
            Err(EncodeError::FrameFull) => {
                self.write_frame()?;
                // An empty frame never reports FrameFull, only Unencodable.
                self.encoder.push(entry).map_err(unencodable)?;
            }
            Err(e) => return Err(unencodable(e)),
        }
        self.order = order;
        self.records_written += 1;
        if !self.options.tick_aligned && self.frame_reached_limit() {
            self.write_frame()?;
        }
        Ok(())
    }

    /// The open frame holds `frame_records_max` records or
    /// `frame_bytes_max` bytes.
    fn frame_reached_limit(&self) -> bool {
        self.encoder.record_count() >= self.options.frame_records_max
            || self.encoder.payload().len() as u64 >= u64::from(self.options.frame_bytes_max)
    }

    /// Notes when the next ingress packet reached the shell (nanoseconds
    /// since the Unix epoch): it is recorded as an arrival record right
    /// after that packet's delivery, for people reading the run. The bus
    /// and the actors never see it, so it cannot change a decision.
    pub fn note_arrival(&mut self, unix_nanos: i64) {
        self.arrival = Some(unix_nanos);
    }

    /// Appends a cycle record emitted while handling delivery `(tick, seq)`.
    pub fn record_cycle(&mut self, tick: u64, seq: u64, record: &CycleRecord) -> Result<(), ChronicleError> {
        self.append(Entry::Cycle { tick, seq, record })
    }

    /// Appends a meta frame emitted while handling delivery `(tick, seq)`.
    pub fn record_frame(&mut self, tick: u64, seq: u64, frame: &MetaFrame) -> Result<(), ChronicleError> {
        self.append(Entry::Frame { tick, seq, frame })
    }

    /// Writes the open frame, if it has records, and flushes `W`. Afterwards the output is a valid unsealed chronicle holding
    /// every record appended so far.
    pub fn flush(&mut self) -> Result<(), ChronicleError> {
        self.usable()?;
        self.write_frame()?;
        self.write_parts(&[])
    }

    /// Writes the open frame, the index block and the footer, flushes, and
    /// hands back `W`. For a file, call `sync_all` on it for durability
    /// against power loss.
    pub fn seal(mut self) -> Result<W, ChronicleError> {
        self.usable()?;
        self.write_frame()?;
        let index_offset = self.bytes_written;
        let index = encode_index(&self.frames);
        let footer = Footer {
            // Invariant: write_frame refuses a frame number beyond u32.
            frame_count: self.frames.len() as u32,
            record_count: self.records_written,
            index_offset,
            chain_head: self.chain,
        };
        self.write_parts(&[&index, &footer.to_bytes()])?;
        Ok(self.out)
    }

    /// Bytes handed to `W` so far (the header and whole frames; not the open
    /// frame).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Records appended so far, including those in the open frame.
    pub fn records_written(&self) -> u64 {
        self.records_written
    }

    /// Whole frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.frames.len() as u64
    }

    /// The chain of the last whole frame written (the header's anchor
    /// before the first): after [`flush`](Self::flush), what a next segment
    /// of the run links to.
    pub fn chain_head(&self) -> Chain {
        self.chain
    }

    /// The output, to make what [`flush`](Self::flush) handed it durable
    /// (for a file: `get_ref().get_ref().sync_data()`).
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    fn usable(&self) -> Result<(), ChronicleError> {
        if self.failed {
            return Err(ChronicleError::WriterFailed { path: self.path.clone() });
        }
        Ok(())
    }

    /// Writes `parts` in order and flushes. A failure may leave a partial
    /// structure behind, so it stops the writer for good.
    fn write_parts(&mut self, parts: &[&[u8]]) -> Result<(), ChronicleError> {
        let out = &mut self.out;
        let written = parts.iter().try_for_each(|part| out.write_all(part)).and_then(|()| out.flush());
        if let Err(source) = written {
            self.failed = true;
            return Err(ChronicleError::Io { path: self.path.clone(), source });
        }
        self.bytes_written += parts.iter().map(|p| p.len() as u64).sum::<u64>();
        Ok(())
    }

    /// Writes the open frame if it has records, and starts a new one.
    fn write_frame(&mut self) -> Result<(), ChronicleError> {
        let record_count = self.encoder.record_count();
        if record_count == 0 {
            return Ok(());
        }
        let frame_index = u32::try_from(self.frames.len()).map_err(|_| ChronicleError::InvalidArgument {
            reason: "a chronicle holds at most 2^32 frames; raise frame_records_max or frame_bytes_max".into(),
        })?;
        // The encoder moves out for the write, so its payload can be borrowed
        // while `self` writes (a move of a few pointers, no copy).
        let mut encoder = std::mem::take(&mut self.encoder);
        let mut packer = std::mem::take(&mut self.packer);
        let payload = packer.pack(encoder.payload());
        let (first, last) = (encoder.first(), encoder.last());
        let mut header = FrameHeader {
            frame_index,
            record_count,
            // Invariant: the encoder keeps its records within
            // PAYLOAD_BYTES_MAX − 1, and packing adds at most the packing byte.
            payload_len: payload.len() as u32,
            first_tick: first.0,
            first_seq: first.1,
            last_tick: last.0,
            last_seq: last.1,
            payload_crc: crc64(payload),
            chain: [0; 32],
        };
        header.chain = header.expected_chain(&self.chain);
        let bytes = header.to_bytes();
        // Checked right before write, from the bytes that go out: the header
        // CRC, the payload CRC and the chain link.
        assert_eq!(FrameHeader::from_bytes(&bytes), Ok(header), "frame {frame_index}: header does not read back");
        assert_eq!(crc64(payload), header.payload_crc, "frame {frame_index}: payload changed before write");
        assert_eq!(
            chain_link(&self.chain, &bytes[..56]),
            bytes[56..88],
            "frame {frame_index}: chain link does not verify"
        );

        let offset = self.bytes_written;
        let written = self.write_parts(&[&bytes, payload]);
        encoder.reset();
        self.encoder = encoder;
        self.packer = packer;
        written?;
        self.chain = header.chain;
        self.frames.push(header.info(offset));
        self.records_framed += u64::from(record_count);
        Ok(())
    }
}

impl<W: Write> Journal for ChronicleWriter<W> {
    fn record(&mut self, entry: Entry<'_>) -> Result<(), JournalError> {
        self.append(entry)?;
        if let Entry::Delivery(e) = entry {
            if &*e.from == INGRESS {
                if let Some(unix_nanos) = self.arrival.take() {
                    self.append(Entry::Arrival { tick: e.tick, seq: e.seq, unix_nanos })?;
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), JournalError> {
        ChronicleWriter::flush(self).map_err(Into::into)
    }
}
