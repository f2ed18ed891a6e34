//! The chronicle reader and the integrity check.
//!
//! [`ChronicleReader::open`] reads the header and, on a sealed file, the
//! footer; on an unsealed file it walks the frame headers (skipping payloads)
//! to find the frames and the torn tail (or the damage, keeping the whole
//! frames before it). [`ChronicleReader::records`] streams every record, one
//! record decoded at a time, through the same walk as [`verify_file`], so it
//! ends with the same verdict; [`ChronicleReader::query_range`]
//! binary-searches the on-disk index with positioned reads and decodes only
//! the frames it needs, and [`verify_file`] scans the whole file checking
//! every CRC, chain link, count and payload.
//!
//! Every byte read is hostile: the reader never panics on a file's contents,
//! never allocates from a length it has not checked against the file, and
//! checks each frame's CRC and chain link right after reading it. It never
//! writes.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use metagov_bus::OwnedEntry;

use crate::codec::{check_frame, FrameStream};
use crate::context::{config_run_seed, run_id_for, sha256_hex, RunContext};
use crate::error::{ChronicleError, Location};
use crate::format::{
    chain_anchor, crc64, decode_header_body, decode_index, hex, index_count, Chain, Cursor, Footer, FrameHeader,
    FrameInfo, Preamble, PreambleError, SegmentLink, FOOTER_BYTES, FRAME_HEADER_BYTES, FRAME_MAGIC, INDEX_ENTRY_BYTES,
    INDEX_FIXED_BYTES, INDEX_MAGIC, MAGIC, PREAMBLE_BYTES,
};
use crate::packing::unpack;

/// The `(tick, seq)` of a file's first record and of its last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The first record's position.
    pub first: (u64, u64),
    /// The last record's position.
    pub last: (u64, u64),
}

/// How a chronicle ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// With an index block and footer: the run was sealed.
    Sealed,
    /// After a whole frame (or the header): a run in progress, or killed
    /// between frames.
    Unsealed,
    /// Inside a structure: every whole frame before `offset` is kept and the
    /// `dropped_bytes` from there to the end of the file are not read.
    Torn {
        /// Where the dropped bytes start (the end of the last whole frame).
        offset: u64,
        /// Bytes from `offset` to the end of the file.
        dropped_bytes: u64,
    },
    /// The walk over the frames found damage: every whole frame before it is
    /// kept, nothing from it on is read.
    Corrupt {
        /// The damaged structure.
        location: Location,
        /// File offset where it starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Reads `buf.len()` bytes at `offset` without moving a shared cursor, so a
/// `&ChronicleReader` can be used from several places at once.
fn read_exact_at(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match std::os::windows::fs::FileExt::seek_read(file, buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// An open file with its length (taken once, at open) and its path for
/// error messages.
#[derive(Debug)]
struct Source {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Source {
    /// Opens `path` for reading, refusing anything that is not a regular
    /// file: opening a FIFO with no writer blocks forever, and a device or
    /// socket has no length to check structures against. The kind is checked
    /// before the open (so a FIFO is never opened) and again on the open
    /// handle (so a swap in between is caught).
    fn open(path: &Path) -> Result<Source, ChronicleError> {
        let io_error = |source| ChronicleError::Io { path: path.to_path_buf(), source };
        let not_a_file = |meta: &std::fs::Metadata| {
            (!meta.is_file()).then(|| ChronicleError::NotAFile { path: path.to_path_buf(), kind: file_kind(meta) })
        };
        if let Some(e) = not_a_file(&std::fs::metadata(path).map_err(io_error)?) {
            return Err(e);
        }
        let file = File::open(path).map_err(io_error)?;
        let meta = file.metadata().map_err(io_error)?;
        if let Some(e) = not_a_file(&meta) {
            return Err(e);
        }
        Ok(Source { path: path.to_path_buf(), file, len: meta.len() })
    }

    /// Reads `len` bytes at `offset`; the caller has checked they are inside
    /// the file.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), ChronicleError> {
        read_exact_at(&self.file, offset, buf).map_err(|source| ChronicleError::Io { path: self.path.clone(), source })
    }

    /// Checks that `len` bytes at `offset` are inside the file; a structure
    /// that points past the end is `location`'s corruption.
    fn check_inside(&self, offset: u64, len: u64, location: Location) -> Result<(), ChronicleError> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(self.corrupt(
                location,
                offset,
                format!("{len} bytes at {offset} run past the end of the file ({})", self.len),
            ));
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset` into a new buffer, after checking that
    /// they are inside the file (so the allocation is bounded by it).
    fn read_vec(&self, offset: u64, len: u64, location: Location) -> Result<Vec<u8>, ChronicleError> {
        self.check_inside(offset, len, location)?;
        let mut buf = vec![0u8; len as usize];
        self.read(offset, &mut buf)?;
        Ok(buf)
    }

    /// Reads `N` bytes at `offset`, after checking they are inside the file.
    fn read_array<const N: usize>(&self, offset: u64, location: Location) -> Result<[u8; N], ChronicleError> {
        self.check_inside(offset, N as u64, location)?;
        let mut buf = [0u8; N];
        self.read(offset, &mut buf)?;
        Ok(buf)
    }

    fn corrupt(&self, location: Location, offset: u64, reason: impl Into<String>) -> ChronicleError {
        ChronicleError::Corrupt { path: self.path.clone(), location, offset, reason: reason.into() }
    }
}

/// The chain after a frame, and that frame's last (tick, seq) (`None`
/// before the first frame): what the next frame's header is checked with.
type ChainAt = (Chain, Option<(u64, u64)>);

/// Frames between two checkpoints of the chain a reader keeps for its range
/// queries: to reach a frame an earlier walk passed, a query reads at most
/// this many headers.
const CHAIN_CHECKPOINT_FRAMES: u32 = 64;

/// Index entries read at once when a range query checks the chain of the
/// frames before its range: 40 KiB, one read for every 1,024 frames.
const INDEX_BLOCK_ENTRIES: u32 = 1024;

/// What a path that is not a regular file is, for [`ChronicleError::NotAFile`].
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    "not a regular file"
}

/// The header of a chronicle, read and checked.
#[derive(Debug)]
struct Header {
    /// The format version the preamble states.
    version: u16,
    context: RunContext,
    /// Offset of frame 0: the end of the header CRC.
    frames_start: u64,
    /// The chain of "frame −1".
    anchor: Chain,
    /// Where the file stands in its run.
    segment: SegmentLink,
}

fn read_header(src: &Source) -> Result<Header, ChronicleError> {
    let torn = |needed| ChronicleError::TornHeader { path: src.path.clone(), file_len: src.len, needed };
    let mut preamble = [0u8; PREAMBLE_BYTES as usize];
    let have = src.len.min(PREAMBLE_BYTES) as usize;
    src.read(0, &mut preamble[..have])?;
    if have >= 4 && preamble[0..4] != MAGIC.to_le_bytes() {
        let found = [preamble[0], preamble[1], preamble[2], preamble[3]];
        return Err(ChronicleError::NotAChronicle { path: src.path.clone(), found });
    }
    if have < PREAMBLE_BYTES as usize {
        return Err(torn(PREAMBLE_BYTES));
    }
    let (version, header_len) = match Preamble::from_bytes(&preamble) {
        Ok(p) => (p.version, u64::from(p.header_len)),
        Err(PreambleError::NotAChronicle { found }) => {
            return Err(ChronicleError::NotAChronicle { path: src.path.clone(), found })
        }
        Err(PreambleError::UnsupportedVersion(version)) => {
            return Err(ChronicleError::UnsupportedVersion { path: src.path.clone(), version })
        }
        Err(PreambleError::Corrupt(reason)) => return Err(src.corrupt(Location::Header, 0, reason)),
    };
    let frames_start = PREAMBLE_BYTES + header_len + 8;
    if src.len < frames_start {
        return Err(torn(frames_start));
    }
    let bytes = src.read_vec(0, frames_start, Location::Header)?;
    let corrupt = |reason: String| src.corrupt(Location::Header, 0, reason);
    let mut c = Cursor::new(&bytes[PREAMBLE_BYTES as usize..]);
    let (body, crc) = (c.take(header_len), c.u64_le());
    let (body, crc) = body.and_then(|b| crc.map(|c| (b, c))).map_err(|e| corrupt(e.to_string()))?;
    if crc64(body) != crc {
        return Err(corrupt("header CRC mismatch".into()));
    }
    let (context, segment) = decode_header_body(body, version).map_err(|e| corrupt(format!("header body {e}")))?;
    let actual = sha256_hex(context.config_text.as_bytes());
    if context.config_sha256 != actual {
        return Err(corrupt(format!(
            "config_sha256 {} does not match the SHA-256 of config_text ({actual})",
            context.config_sha256
        )));
    }
    check_context(&context).map_err(corrupt)?;
    Ok(Header { version, context, frames_start, anchor: chain_anchor(&bytes), segment })
}

/// The header's fields that are also stated elsewhere must agree: the run id
/// is derived from the seed and the config hash, and the config text states
/// the seed again as `run.seed`.
fn check_context(context: &RunContext) -> Result<(), String> {
    if let Some(config_seed) = config_run_seed(&context.config_text) {
        if config_seed != context.seed {
            return Err(format!("seed {} disagrees with run.seed {config_seed} in config_text", context.seed));
        }
    }
    let expected = run_id_for(context.seed, &context.config_sha256);
    if context.run_id != expected {
        return Err(format!("run_id {:?} is not the one the seed and config hash give ({expected})", context.run_id));
    }
    Ok(())
}

/// Checks a frame header read at frame number `index`: CRC and field rules,
/// frame number, chain link (when the previous chain is known) and order
/// after the previous frame.
fn check_header(
    bytes: &[u8; FRAME_HEADER_BYTES as usize],
    index: u32,
    prev_chain: Option<&Chain>,
    prev_last: Option<(u64, u64)>,
) -> Result<FrameHeader, String> {
    let header = FrameHeader::from_bytes(bytes)?;
    if header.frame_index != index {
        return Err(format!("frame_index is {}, expected {index}", header.frame_index));
    }
    if prev_chain.is_some_and(|prev| header.expected_chain(prev) != header.chain) {
        return Err("broken chain link".into());
    }
    if prev_last.is_some_and(|last| (header.first_tick, header.first_seq) < last) {
        return Err("frame starts before the previous frame ends".into());
    }
    Ok(header)
}

/// The checks of a frame read record by record ([`ChronicleReader::next_in`])
/// without building the records, for `verify`, which needs no values.
fn check_payload_only(header: &FrameHeader, payload: Vec<u8>, version: u16) -> Result<(), String> {
    let records = checked_records(header, payload, version)?;
    let last = check_frame(&records, header.first_tick, header.first_seq, header.record_count, version)
        .map_err(|e| format!("records {e}"))?;
    check_last(header, last)
}

/// The records of a stored payload, once its CRC matches the header's.
fn checked_records(header: &FrameHeader, payload: Vec<u8>, version: u16) -> Result<Vec<u8>, String> {
    check_crc(header, &payload)?;
    unpack(payload, version).map_err(|e| format!("payload {e}"))
}

fn check_crc(header: &FrameHeader, payload: &[u8]) -> Result<(), String> {
    if crc64(payload) != header.payload_crc {
        return Err("payload CRC mismatch".into());
    }
    Ok(())
}

fn check_last(header: &FrameHeader, last: Option<(u64, u64)>) -> Result<(), String> {
    if last != Some((header.last_tick, header.last_seq)) {
        return Err(format!("last record is at {last:?}, the header says ({}, {})", header.last_tick, header.last_seq));
    }
    Ok(())
}

/// The reason for a frame whose payload ends at `end`, past `limit` (the
/// index block of a sealed file).
fn runs_past(header: &FrameHeader, end: u64, limit: u64) -> String {
    format!("payload_len {} runs to byte {end}, past the index block at {limit}", header.payload_len)
}

/// How a walk over the frames ended.
#[derive(Debug)]
enum WalkEnd {
    Unsealed,
    /// Torn at this offset.
    Torn(u64),
    Sealed,
}

/// One step of a walk: a whole frame (its header checked) and the offset
/// after it, or the end.
#[derive(Debug)]
enum Step {
    Next(u64, FrameHeader),
    End(WalkEnd),
}

/// What a walk over the frames found: the whole, valid frames, and how the
/// file ends after them (or the first corruption).
#[derive(Debug)]
struct Walk {
    /// The file's format version, which the payloads are decoded by.
    version: u16,
    frames: Vec<FrameInfo>,
    records: u64,
    chain: Chain,
    end: Result<WalkEnd, ChronicleError>,
}

impl Walk {
    /// A walk that has read nothing past `header`.
    fn new(header: &Header) -> Walk {
        Walk {
            version: header.version,
            frames: Vec::new(),
            records: 0,
            chain: header.anchor,
            end: Ok(WalkEnd::Unsealed),
        }
    }
}

/// Walks the file frame by frame from the header's end. With
/// `check_payloads` it reads, checks and decodes every payload; otherwise it
/// skips them. `index_at` is where a valid footer puts the index block, so
/// damage there is reported as the index's.
fn walk(src: &Source, header: &Header, check_payloads: bool, index_at: Option<u64>) -> Walk {
    let mut w = Walk::new(header);
    let mut offset = header.frames_start;
    w.end = loop {
        match walk_step(src, &mut w, offset, check_payloads, index_at) {
            Ok(Step::Next(next, _)) => offset = next,
            Ok(Step::End(end)) => break Ok(end),
            Err(e) => break Err(e),
        }
    };
    w
}

/// One step of [`walk`] at `offset`: a whole frame (added to `w`), or how
/// the walk ends there.
fn walk_step(
    src: &Source,
    w: &mut Walk,
    offset: u64,
    check_payloads: bool,
    index_at: Option<u64>,
) -> Result<Step, ChronicleError> {
    let remaining = src.len - offset;
    if remaining == 0 {
        return Ok(Step::End(WalkEnd::Unsealed));
    }
    let index =
        u32::try_from(w.frames.len()).map_err(|_| src.corrupt(Location::Index, offset, "more than 2^32 frames"))?;
    let mut head = [0u8; FRAME_HEADER_BYTES as usize];
    let have = remaining.min(FRAME_HEADER_BYTES) as usize;
    src.read(offset, &mut head[..have])?;
    if have < 4 {
        return Ok(Step::End(WalkEnd::Torn(offset)));
    }
    let at_index = index_at == Some(offset);
    let tag = [head[0], head[1], head[2], head[3]];
    if tag == FRAME_MAGIC && !at_index {
        if have < FRAME_HEADER_BYTES as usize {
            return Ok(Step::End(WalkEnd::Torn(offset)));
        }
        let location = Location::Frame(index);
        let prev_last = w.frames.last().map(|f| (f.last_tick, f.last_seq));
        let header =
            check_header(&head, index, Some(&w.chain), prev_last).map_err(|r| src.corrupt(location, offset, r))?;
        let payload_at = offset + FRAME_HEADER_BYTES;
        let end = payload_at + u64::from(header.payload_len);
        // With a valid footer the frames end at the index block: a frame
        // that runs past it is corruption, never a torn tail.
        if let Some(at) = index_at.filter(|&at| end > at) {
            return Err(src.corrupt(location, offset, runs_past(&header, end, at)));
        }
        if end > src.len {
            return Ok(Step::End(WalkEnd::Torn(offset)));
        }
        if check_payloads {
            let payload = src.read_vec(payload_at, u64::from(header.payload_len), location)?;
            check_payload_only(&header, payload, w.version).map_err(|r| src.corrupt(location, offset, r))?;
        }
        w.frames.push(header.info(offset));
        w.records += u64::from(header.record_count);
        w.chain = header.chain;
        return Ok(Step::Next(end, header));
    }
    if tag == INDEX_MAGIC && index_at.is_none_or(|at| at == offset) {
        return sealed_tail(src, w, offset).map(Step::End);
    }
    let location = if at_index { Location::Index } else { Location::Frame(index) };
    Err(src.corrupt(location, offset, format!("found {tag:02x?} where the {location} must start")))
}

/// Checks the index block at `offset` and the footer after it against the
/// walked frames. A block or footer cut short is a torn tail at `offset`.
fn sealed_tail(src: &Source, w: &Walk, offset: u64) -> Result<WalkEnd, ChronicleError> {
    let remaining = src.len - offset;
    let torn = Ok(WalkEnd::Torn(offset));
    let corrupt = |location, at, reason: String| Err(src.corrupt(location, at, reason));
    if remaining < 8 {
        return torn;
    }
    let head = src.read_array(offset, Location::Index)?;
    let count = index_count(&head).map_err(|r| src.corrupt(Location::Index, offset, r))?;
    if count as usize != w.frames.len() {
        return corrupt(
            Location::Index,
            offset,
            format!("index counts {count} frames, the file has {}", w.frames.len()),
        );
    }
    let block_len = INDEX_FIXED_BYTES + u64::from(count) * INDEX_ENTRY_BYTES;
    if remaining < block_len {
        return torn;
    }
    let block = src.read_vec(offset, block_len, Location::Index)?;
    let entries = decode_index(&block).map_err(|r| src.corrupt(Location::Index, offset, r))?;
    if let Some((entry, _)) = entries.iter().zip(&w.frames).find(|(e, f)| e != f) {
        return corrupt(Location::Index, offset, format!("entry {} does not match its frame", entry.index));
    }
    let footer_at = offset + block_len;
    if remaining - block_len < FOOTER_BYTES {
        return torn;
    }
    let bytes = src.read_array(footer_at, Location::Footer)?;
    let footer = Footer::from_bytes(&bytes).map_err(|r| src.corrupt(Location::Footer, footer_at, r))?;
    let after = remaining - block_len - FOOTER_BYTES;
    let expected = Footer { frame_count: count, record_count: w.records, index_offset: offset, chain_head: w.chain };
    if after != 0 {
        return corrupt(Location::Footer, footer_at, format!("{after} bytes after the footer"));
    }
    if footer != expected {
        return corrupt(
            Location::Footer,
            footer_at,
            format!("footer {footer:?} disagrees with the file, which gives {expected:?}"),
        );
    }
    Ok(WalkEnd::Sealed)
}

/// The footer at the end of the file, if the last 64 bytes are one (magic
/// and CRC), checked against the file length. `Ok(None)`: not sealed.
fn valid_footer(src: &Source, frames_start: u64) -> Result<Option<Footer>, ChronicleError> {
    if src.len < frames_start + INDEX_FIXED_BYTES + FOOTER_BYTES {
        return Ok(None);
    }
    let at = src.len - FOOTER_BYTES;
    let bytes = src.read_array(at, Location::Footer)?;
    let Ok(footer) = Footer::from_bytes(&bytes) else { return Ok(None) };
    let index_len = INDEX_FIXED_BYTES + u64::from(footer.frame_count) * INDEX_ENTRY_BYTES;
    if footer.index_offset < frames_start || footer.index_offset.checked_add(index_len) != Some(at) {
        return Err(src.corrupt(
            Location::Footer,
            at,
            format!("index_offset {} and frame_count {} do not fit the file", footer.index_offset, footer.frame_count),
        ));
    }
    Ok(Some(footer))
}

/// Where the frames are known from.
#[derive(Debug)]
enum Layout {
    /// A sealed file: the on-disk index, read entry by entry.
    Sealed { index_offset: u64 },
    /// A walked file: the frames found.
    Walked(Vec<FrameInfo>),
}

/// A chronicle opened for reading. All methods take `&self` and use
/// positioned reads, so one reader can serve several queries.
#[derive(Debug)]
pub struct ChronicleReader {
    src: Source,
    header: Header,
    tail: Tail,
    frame_count: u32,
    record_count: u64,
    layout: Layout,
    /// Where a valid footer puts the index block (the end of the frames).
    index_at: Option<u64>,
    /// The chain of the last whole frame as opening found it: the footer's
    /// chain head on a sealed file (checked against the frames by a full
    /// walk), the walked chain otherwise.
    chain_head: Chain,
    /// The chain as range queries have checked it, every
    /// [`CHAIN_CHECKPOINT_FRAMES`] frames: entry `i` is the chain and last
    /// position before frame `i × CHAIN_CHECKPOINT_FRAMES` (entry 0, the run
    /// header's anchor). A later query starts its walk from the nearest one.
    checked_chain: Mutex<Vec<ChainAt>>,
}

impl ChronicleReader {
    /// Opens a chronicle: reads and checks its header, then either its footer
    /// (sealed) or its frame headers (unsealed, possibly torn).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ChronicleError> {
        let src = Source::open(path.as_ref())?;
        let header = read_header(&src)?;
        // A damaged footer or index head is found again, and located, by the
        // walk below, which keeps every whole frame before the damage.
        let footer = match valid_footer(&src, header.frames_start) {
            Ok(footer) => footer,
            Err(ChronicleError::Corrupt { .. }) => None,
            Err(e) => return Err(e),
        };
        if let Some(footer) = footer {
            let head = src.read_array(footer.index_offset, Location::Index)?;
            if index_count(&head) == Ok(footer.frame_count) {
                return Ok(ChronicleReader {
                    tail: Tail::Sealed,
                    frame_count: footer.frame_count,
                    record_count: footer.record_count,
                    layout: Layout::Sealed { index_offset: footer.index_offset },
                    index_at: Some(footer.index_offset),
                    chain_head: footer.chain_head,
                    checked_chain: Mutex::new(vec![(header.anchor, None)]),
                    src,
                    header,
                });
            }
        }
        let index_at = footer.map(|f| f.index_offset);
        let w = walk(&src, &header, false, index_at);
        let tail = match w.end {
            Ok(WalkEnd::Unsealed) => Tail::Unsealed,
            Ok(WalkEnd::Sealed) => Tail::Sealed,
            Ok(WalkEnd::Torn(offset)) => Tail::Torn { offset, dropped_bytes: src.len - offset },
            Err(ChronicleError::Corrupt { location, offset, reason, .. }) => Tail::Corrupt { location, offset, reason },
            Err(e) => return Err(e),
        };
        Ok(ChronicleReader {
            tail,
            // Invariant: the walk stops before frame number 2^32.
            frame_count: w.frames.len() as u32,
            record_count: w.records,
            layout: Layout::Walked(w.frames),
            index_at,
            chain_head: w.chain,
            checked_chain: Mutex::new(vec![(header.anchor, None)]),
            src,
            header,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.src.path
    }

    /// The run context from the header.
    pub fn context(&self) -> &RunContext {
        &self.header.context
    }

    /// The file's format version (1 or 2): a version 1 file records no
    /// delivery causes and no arrival times.
    pub fn version(&self) -> u16 {
        self.header.version
    }

    /// How the file ends.
    pub fn tail(&self) -> &Tail {
        &self.tail
    }

    /// Where the file stands in its run (a version 1 or 2 file is always a
    /// first segment).
    pub fn segment(&self) -> &SegmentLink {
        &self.header.segment
    }

    /// The chain of the last whole frame (the header's anchor when there is
    /// none), as opening the file found it: what the next segment of the
    /// run links to.
    pub fn chain_head(&self) -> Chain {
        self.chain_head
    }

    /// Where the first record and the last are, from the first and last
    /// whole frames' index entries; `None` without a frame.
    pub fn span(&self) -> Result<Option<Span>, ChronicleError> {
        let Some(last) = self.frame_count.checked_sub(1) else { return Ok(None) };
        let (first, last) = (self.frame_info(0)?, self.frame_info(last)?);
        Ok(Some(Span { first: (first.first_tick, first.first_seq), last: (last.last_tick, last.last_seq) }))
    }

    /// Whole frames in the file.
    pub fn frame_count(&self) -> u32 {
        self.frame_count
    }

    /// Records in the whole frames.
    pub fn record_count(&self) -> u64 {
        self.record_count
    }

    /// Every whole frame's place and range (reads the whole index of a
    /// sealed file and checks its CRC).
    pub fn frames(&self) -> Result<Vec<FrameInfo>, ChronicleError> {
        match &self.layout {
            Layout::Walked(frames) => Ok(frames.clone()),
            &Layout::Sealed { index_offset } => {
                let len = INDEX_FIXED_BYTES + u64::from(self.frame_count) * INDEX_ENTRY_BYTES;
                let block = self.src.read_vec(index_offset, len, Location::Index)?;
                decode_index(&block).map_err(|r| self.src.corrupt(Location::Index, index_offset, r))
            }
        }
    }

    /// Every record, in journal order, decoded one record at a time. The
    /// frames are walked in file order with exactly the checks of
    /// [`verify_file`] (headers, chain from the run header, payloads, and on
    /// a sealed file the index block and footer against the frames), so
    /// once the iterator has ended, [`Records::status`] is the verdict
    /// `verify_file` gives for the same file. Damage ends the stream with
    /// one error after every record before it.
    pub fn records(&self) -> Records<'_> {
        Records {
            reader: self,
            walk: Walk::new(&self.header),
            offset: self.header.frames_start,
            current: None,
            frames_read: 0,
            records_read: 0,
            finished: false,
            status: None,
        }
    }

    /// The records whose tick is in `start_tick..=end_tick`, in order.
    /// Finds the first frame by binary search over the index (positioned
    /// reads of single entries on a sealed file) and decodes only the frames
    /// whose ticks meet the range, so the cost grows with the range, not with
    /// the file. The frames at both edges of the search are read and checked
    /// against their index entries, so a damaged index cannot silently hide
    /// records.
    pub fn query_range(&self, start_tick: u64, end_tick: u64) -> Result<Vec<OwnedEntry>, ChronicleError> {
        let mut out = Vec::new();
        self.visit_range(start_tick, end_tick, |entry| {
            out.push(entry);
            Ok::<(), ChronicleError>(())
        })?;
        Ok(out)
    }

    /// [`ChronicleReader::query_range`] as a stream: hands each entry whose
    /// tick is in `[start_tick, end_tick]` to `each`, in order, holding one
    /// frame's payload and one decoded record in memory at a time; stops at
    /// the first error `each` returns.
    pub fn visit_range<E: From<ChronicleError>>(
        &self,
        start_tick: u64,
        end_tick: u64,
        each: impl FnMut(OwnedEntry) -> Result<(), E>,
    ) -> Result<(), E> {
        self.visit_range_where(start_tick, end_tick, |_| true, each)
    }

    /// [`ChronicleReader::visit_range`] for the deliveries of the topics
    /// `keep` takes (and every record that is not a delivery): the others
    /// are checked as every record is, but never built, which is most of
    /// the cost of reading a frame.
    pub fn visit_range_where<E: From<ChronicleError>>(
        &self,
        start_tick: u64,
        end_tick: u64,
        keep: impl Fn(&str) -> bool,
        mut each: impl FnMut(OwnedEntry) -> Result<(), E>,
    ) -> Result<(), E> {
        if start_tick > end_tick || self.frame_count == 0 {
            return Ok(());
        }
        let (mut lo, mut hi) = (0, self.frame_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.frame_info(mid)?.last_tick < start_tick {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let (mut chain, mut last) = self.chain_before(lo)?;
        for k in lo..self.frame_count {
            let info = self.frame_info(k)?;
            let header = self.read_header(&info, Some(&chain), last)?;
            if header.first_tick > end_tick {
                break;
            }
            let mut frame = self.open_frame(&header, info.offset)?;
            while let Some(entry) = self.next_in_where(&mut frame, &keep)? {
                if (start_tick..=end_tick).contains(&entry.at().0) {
                    each(entry)?;
                }
            }
            chain = header.chain;
            last = Some((header.last_tick, header.last_seq));
        }
        Ok(())
    }

    /// The chain and last position before frame `lo`, checked from the run
    /// header on: only the headers of the frames before it are read
    /// (through the index), so frames that do not belong to this header are
    /// refused. The walk starts at the nearest checkpoint an earlier query
    /// left, and leaves new ones.
    fn chain_before(&self, lo: u32) -> Result<ChainAt, ChronicleError> {
        // A panic while the lock was held left only checkpoints already checked.
        let mut checkpoints = self.checked_chain.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Invariant: entry 0, the anchor, is put there at open.
        let have = (checkpoints.len() - 1).min((lo / CHAIN_CHECKPOINT_FRAMES) as usize);
        let (mut chain, mut last) = checkpoints[have];
        let from = have as u32 * CHAIN_CHECKPOINT_FRAMES;
        for block in (from..lo).step_by(INDEX_BLOCK_ENTRIES as usize) {
            for info in self.frame_infos(block, (block + INDEX_BLOCK_ENTRIES).min(lo))? {
                let h = self.read_header(&info, Some(&chain), last)?;
                (chain, last) = (h.chain, Some((h.last_tick, h.last_seq)));
                let next = info.index + 1;
                if next % CHAIN_CHECKPOINT_FRAMES == 0 && (next / CHAIN_CHECKPOINT_FRAMES) as usize == checkpoints.len()
                {
                    checkpoints.push((chain, last));
                }
            }
        }
        Ok((chain, last))
    }

    /// Frame `k`'s index entry: one positioned read on a sealed file.
    fn frame_info(&self, k: u32) -> Result<FrameInfo, ChronicleError> {
        match &self.layout {
            Layout::Walked(frames) => Ok(frames[k as usize]),
            &Layout::Sealed { index_offset } => {
                let at = index_offset + 8 + u64::from(k) * INDEX_ENTRY_BYTES;
                Ok(FrameInfo::from_index_bytes(k, &self.src.read_array(at, Location::Index)?))
            }
        }
    }

    /// The index entries of frames `from..to`: one read on a sealed file.
    fn frame_infos(&self, from: u32, to: u32) -> Result<Vec<FrameInfo>, ChronicleError> {
        match &self.layout {
            Layout::Walked(frames) => Ok(frames[from as usize..to as usize].to_vec()),
            &Layout::Sealed { index_offset } => {
                let at = index_offset + 8 + u64::from(from) * INDEX_ENTRY_BYTES;
                let bytes = self.src.read_vec(at, u64::from(to - from) * INDEX_ENTRY_BYTES, Location::Index)?;
                let entries = bytes.chunks_exact(INDEX_ENTRY_BYTES as usize).zip(from..to);
                // Invariant: `chunks_exact` hands out slices of exactly the entry size.
                Ok(entries
                    .map(|(entry, k)| FrameInfo::from_index_bytes(k, entry.try_into().expect("an index entry")))
                    .collect())
            }
        }
    }

    /// Reads and checks the header of frame `index` at `offset` (see
    /// [`check_header`]).
    fn frame_header(
        &self,
        index: u32,
        offset: u64,
        prev_chain: Option<&Chain>,
        prev_last: Option<(u64, u64)>,
    ) -> Result<FrameHeader, ChronicleError> {
        let location = Location::Frame(index);
        let head = self.src.read_array(offset, location)?;
        check_header(&head, index, prev_chain, prev_last).map_err(|r| self.src.corrupt(location, offset, r))
    }

    /// Reads and checks the header of the frame `info` names, and that it
    /// matches `info`.
    fn read_header(
        &self,
        info: &FrameInfo,
        prev_chain: Option<&Chain>,
        prev_last: Option<(u64, u64)>,
    ) -> Result<FrameHeader, ChronicleError> {
        let header = self.frame_header(info.index, info.offset, prev_chain, prev_last)?;
        if header.info(info.offset) != *info {
            return Err(self.src.corrupt(
                Location::Index,
                info.offset,
                format!("entry {} does not match its frame", info.index),
            ));
        }
        Ok(header)
    }

    /// Reads the payload of the frame at `offset` and checks its CRC, ready
    /// to be decoded record by record.
    fn open_frame(&self, header: &FrameHeader, offset: u64) -> Result<OpenFrame, ChronicleError> {
        let location = Location::Frame(header.frame_index);
        let end = offset + FRAME_HEADER_BYTES + u64::from(header.payload_len);
        if let Some(at) = self.index_at.filter(|&at| end > at) {
            return Err(self.src.corrupt(location, offset, runs_past(header, end, at)));
        }
        if end > self.src.len {
            let reason = format!("payload_len {} runs to byte {end}, past the end of the file", header.payload_len);
            return Err(self.src.corrupt(location, offset, reason));
        }
        let payload = self.src.read_vec(offset + FRAME_HEADER_BYTES, u64::from(header.payload_len), location)?;
        let records =
            checked_records(header, payload, self.header.version).map_err(|r| self.src.corrupt(location, offset, r))?;
        let stream =
            FrameStream::new(records, header.first_tick, header.first_seq, header.record_count, self.header.version);
        Ok(OpenFrame { header: *header, offset, stream })
    }

    /// The next record of an open frame; `Ok(None)` after its last, once the
    /// payload's end and the header's last position are checked.
    fn next_in(&self, frame: &mut OpenFrame) -> Result<Option<OwnedEntry>, ChronicleError> {
        self.next_in_where(frame, &|_| true)
    }

    /// [`ChronicleReader::next_in`], building only the deliveries of the
    /// topics `keep` takes.
    fn next_in_where(
        &self,
        frame: &mut OpenFrame,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Option<OwnedEntry>, ChronicleError> {
        let corrupt = |reason| self.src.corrupt(Location::Frame(frame.header.frame_index), frame.offset, reason);
        match frame.stream.next_entry_where(keep) {
            Ok(Some(entry)) => Ok(Some(entry)),
            Ok(None) => check_last(&frame.header, frame.stream.last()).map(|()| None).map_err(corrupt),
            Err(e) => Err(corrupt(format!("records {e}"))),
        }
    }
}

/// A frame being decoded record by record: its checked header, its offset
/// and the payload stream.
#[derive(Debug)]
struct OpenFrame {
    header: FrameHeader,
    offset: u64,
    stream: FrameStream,
}

/// The records of a chronicle, decoded one at a time: memory holds one
/// frame's payload and tables and the record handed out, never a whole
/// decoded frame. Yields an error once (the damage) and then ends.
#[derive(Debug)]
pub struct Records<'a> {
    reader: &'a ChronicleReader,
    walk: Walk,
    offset: u64,
    current: Option<OpenFrame>,
    frames_read: u32,
    records_read: u64,
    finished: bool,
    status: Option<IntegrityStatus>,
}

impl Records<'_> {
    /// The verdict on the file, once the iteration has ended: the same as
    /// [`verify_file`]'s. `None` before the end, or when the read failed for
    /// a reason that is not the file's content (I/O).
    pub fn status(&self) -> Option<&IntegrityStatus> {
        self.status.as_ref()
    }

    /// Whole frames decoded so far.
    pub fn frames_read(&self) -> u32 {
        self.frames_read
    }

    /// Records handed out so far.
    pub fn records_read(&self) -> u64 {
        self.records_read
    }

    /// Hex chain of the last frame walked so far (the header's before the
    /// first): at the end of a sealed file, its chain head, as
    /// [`verify_file`] reports it.
    pub fn chain_head(&self) -> String {
        hex(&self.walk.chain)
    }

    fn fail(&mut self, e: ChronicleError) -> Option<Result<OwnedEntry, ChronicleError>> {
        self.finished = true;
        if let ChronicleError::Corrupt { location, offset, reason, .. } = &e {
            self.status =
                Some(IntegrityStatus::Corrupt { location: *location, offset: *offset, reason: reason.clone() });
        }
        Some(Err(e))
    }
}

impl Iterator for Records<'_> {
    type Item = Result<OwnedEntry, ChronicleError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(frame) = &mut self.current {
                match self.reader.next_in(frame) {
                    Ok(Some(entry)) => {
                        self.records_read += 1;
                        return Some(Ok(entry));
                    }
                    Ok(None) => {
                        self.current = None;
                        self.frames_read += 1;
                        continue;
                    }
                    Err(e) => {
                        self.current = None;
                        return self.fail(e);
                    }
                }
            }
            if self.finished {
                return None;
            }
            let src = &self.reader.src;
            match walk_step(src, &mut self.walk, self.offset, false, self.reader.index_at) {
                Ok(Step::Next(next, header)) => match self.reader.open_frame(&header, self.offset) {
                    Ok(frame) => {
                        self.current = Some(frame);
                        self.offset = next;
                    }
                    Err(e) => return self.fail(e),
                },
                Ok(Step::End(end)) => {
                    self.finished = true;
                    self.status = Some(match end {
                        WalkEnd::Sealed => IntegrityStatus::Sealed,
                        WalkEnd::Unsealed => IntegrityStatus::Unsealed,
                        WalkEnd::Torn(offset) => IntegrityStatus::Torn { offset, dropped_bytes: src.len - offset },
                    });
                    return None;
                }
                Err(e) => return self.fail(e),
            }
        }
    }
}

/// What [`verify_file`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntegrityStatus {
    /// Whole and sealed: every check passed.
    Sealed,
    /// Every check passed, but the run was not sealed.
    Unsealed,
    /// Every whole frame checks, then the file ends inside a structure.
    Torn {
        /// Where the dropped bytes start.
        offset: u64,
        /// Bytes from there to the end.
        dropped_bytes: u64,
    },
    /// A check failed.
    Corrupt {
        /// The damaged structure.
        location: Location,
        /// File offset where it starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// The result of [`verify_file`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrityReport {
    /// The verdict.
    pub status: IntegrityStatus,
    /// Frames that passed every check (before any damage).
    pub frames: u32,
    /// Records in those frames.
    pub records: u64,
    /// File length.
    pub bytes: u64,
    /// Hex chain of the last frame that passed: the header's with none, all
    /// zeros when the header itself is damaged.
    pub chain_head: String,
}

/// Scans the whole file in order, checking every CRC, chain link, frame
/// number, payload decoding, the index block against the frames, the footer
/// against the totals and the chain head, and the config hash. Damage is
/// reported in the [`IntegrityReport`]; `Err` is for a file that is not a
/// readable chronicle at all (I/O, not a chronicle, unsupported version,
/// torn inside its header).
pub fn verify_file(path: impl AsRef<Path>) -> Result<IntegrityReport, ChronicleError> {
    let src = Source::open(path.as_ref())?;
    let report = |status, frames, records, chain: &Chain| IntegrityReport {
        status,
        frames,
        records,
        bytes: src.len,
        chain_head: hex(chain),
    };
    let as_status = |e: ChronicleError| match e {
        ChronicleError::Corrupt { location, offset, reason, .. } => {
            Ok(IntegrityStatus::Corrupt { location, offset, reason })
        }
        other => Err(other),
    };
    let header = match read_header(&src) {
        Ok(h) => h,
        Err(e) => return Ok(report(as_status(e)?, 0, 0, &[0; 32])),
    };
    // A damaged footer is found again, and located, when the walk reaches it.
    let index_at = match valid_footer(&src, header.frames_start) {
        Ok(footer) => footer.map(|f| f.index_offset),
        Err(e) => as_status(e).map(|_| None)?,
    };
    let w = walk(&src, &header, true, index_at);
    let status = match w.end {
        Ok(WalkEnd::Sealed) => IntegrityStatus::Sealed,
        Ok(WalkEnd::Unsealed) => IntegrityStatus::Unsealed,
        Ok(WalkEnd::Torn(offset)) => IntegrityStatus::Torn { offset, dropped_bytes: src.len - offset },
        Err(e) => as_status(e)?,
    };
    // Invariant: the walk stops before frame number 2^32.
    Ok(report(status, w.frames.len() as u32, w.records, &w.chain))
}

impl std::fmt::Display for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tail::Sealed => write!(f, "sealed"),
            Tail::Unsealed => {
                write!(f, "unsealed (whole frames, no footer: a run in progress or killed between frames)")
            }
            Tail::Torn { offset, dropped_bytes } => write_torn(f, *offset, *dropped_bytes),
            Tail::Corrupt { location, offset, reason } => {
                write!(f, "corrupt: {location} at byte {offset}: {reason} (the whole frames before it are kept)")
            }
        }
    }
}

fn write_torn(f: &mut std::fmt::Formatter<'_>, offset: u64, dropped_bytes: u64) -> std::fmt::Result {
    write!(f, "torn at byte {offset}: {dropped_bytes} bytes after the last whole frame dropped")
}

impl std::fmt::Display for IntegrityStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntegrityStatus::Sealed => write!(f, "sealed, every check passed"),
            IntegrityStatus::Unsealed => {
                write!(f, "unsealed: every frame checks, but nothing vouches the run is complete")
            }
            IntegrityStatus::Torn { offset, dropped_bytes } => write_torn(f, *offset, *dropped_bytes),
            IntegrityStatus::Corrupt { location, offset, reason } => {
                write!(f, "corrupt: {location} at byte {offset}: {reason}")
            }
        }
    }
}
