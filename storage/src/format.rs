//! The fixed-layout parts of the chronicle format (docs/chronicle-format.md):
//! constants and reader hard limits, CRC-64/XZ, uvarint and zigzag, and the
//! preamble, header body, frame header, index block and footer with their
//! `to_bytes`/`from_bytes`.
//!
//! This module owns byte layouts only. It does no I/O and never panics on
//! input: every `from_bytes` and every [`Cursor`] read checks its bounds and
//! returns an error naming what is wrong. The record payload inside a frame
//! belongs to `codec`.

use std::fmt;

use crc::{Crc, Table, CRC_64_XZ};
use sha2::{Digest, Sha256};

use crate::context::{Arch, Environment, Os, RunContext};

/// File magic `0x0C0DA55E`, stored little-endian as `5E A5 0D 0C`.
pub const MAGIC: u32 = 0x0C0D_A55E;
/// The format version this crate writes. It reads every version from 1 to
/// this one.
pub const VERSION: u16 = 3;
/// Size of the preamble.
pub const PREAMBLE_BYTES: u64 = 20;
/// Size of a frame header.
pub const FRAME_HEADER_BYTES: u64 = 96;
/// Size of one index entry.
pub const INDEX_ENTRY_BYTES: u64 = 40;
/// Size of an index block without its entries: magic, count and CRC.
pub const INDEX_FIXED_BYTES: u64 = 16;
/// Size of the footer.
pub const FOOTER_BYTES: u64 = 64;
/// Tag that opens a frame.
pub const FRAME_MAGIC: [u8; 4] = *b"cmFR";
/// Tag that opens the index block.
pub const INDEX_MAGIC: [u8; 4] = *b"cmIX";
/// Tag that opens the footer.
pub const FOOTER_MAGIC: [u8; 4] = *b"cmFT";

/// Reader hard limit: bytes of the header body.
pub const HEADER_BYTES_MAX: u32 = 16 << 20;
/// Reader hard limit: bytes of one frame payload. The writer never writes a
/// larger one.
pub const PAYLOAD_BYTES_MAX: u32 = 64 << 20;
/// Most bytes of records one frame holds: [`PAYLOAD_BYTES_MAX`] less the
/// packing byte of a version-2 payload, so a frame stored plain still fits.
pub const RECORDS_BYTES_MAX: u32 = PAYLOAD_BYTES_MAX - 1;
/// Longest uvarint (a `u64` needs at most 10 groups of 7 bits).
pub const VARINT_BYTES_MAX: usize = 10;
/// Deepest shape: the root value counts as depth 1.
pub const SHAPE_DEPTH_MAX: u32 = 32;
/// Most items in one list or record.
pub const SHAPE_ITEMS_MAX: u64 = 65_536;
/// Reader hard limit: the nominal memory one frame may decode to (see the
/// spec's "Decoded size"). It stops a small payload from expanding into an
/// unbounded number of values; the writer closes frames below it.
pub const FRAME_DECODED_BYTES_MAX: u64 = 256 << 20;

/// A link of the frame hash chain (SHA-256).
pub type Chain = [u8; 32];

/// CRC-64/XZ with a 16-way slicing table (32 KiB, built at compile time).
static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_XZ);

/// CRC-64/XZ of `bytes` (check value over `123456789`: `0x995dc9bbdf1939fa`).
pub fn crc64(bytes: &[u8]) -> u64 {
    CRC64.checksum(bytes)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends `x` as an unsigned LEB128 varint.
#[inline]
pub fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push(x as u8 | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// Maps `i64` to `u64` so that small magnitudes stay small: 0, -1, 1, -2 →
/// 0, 1, 2, 3.
#[inline]
pub fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[inline]
pub fn unzigzag(u: u64) -> i64 {
    (u >> 1) as i64 ^ -((u & 1) as i64)
}

/// Why some bytes do not decode, and where (a byte offset within the
/// structure being decoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Offset of the offending byte within the decoded buffer.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// A bounds-checked reader over a byte slice. Every read either succeeds or
/// returns a [`DecodeError`]; nothing here panics or allocates from a length
/// it has not checked against the bytes left.
#[derive(Debug)]
pub struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    /// A cursor at `pos` of `bytes` (clamped to the end): how a decoder
    /// that owns its bytes resumes between calls.
    pub fn at(bytes: &'a [u8], pos: usize) -> Self {
        Cursor { bytes, pos: pos.min(bytes.len()) }
    }

    /// Bytes consumed so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// An error at the current position.
    pub fn error(&self, reason: impl Into<String>) -> DecodeError {
        DecodeError { offset: self.pos as u64, reason: reason.into() }
    }

    /// One byte.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.pos).ok_or_else(|| self.error("unexpected end of data"))?;
        self.pos += 1;
        Ok(b)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() as u64 {
            return Err(self.error(format!("needs {n} bytes, {} left", self.remaining())));
        }
        let n = n as usize;
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    /// A little-endian `u32`.
    pub fn u32_le(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    /// A little-endian `u64`.
    pub fn u64_le(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    /// An unsigned LEB128 varint: at most [`VARINT_BYTES_MAX`] bytes, no
    /// overflow, no redundant trailing zero group (so every number has one
    /// encoding).
    #[inline]
    pub fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut x: u64 = 0;
        for i in 0..VARINT_BYTES_MAX {
            let b = self.u8()?;
            if i == VARINT_BYTES_MAX - 1 && b > 1 {
                return Err(DecodeError { offset: start as u64, reason: "varint overflows u64".into() });
            }
            x |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(DecodeError {
                        offset: start as u64,
                        reason: "varint has a redundant zero byte".into(),
                    });
                }
                return Ok(x);
            }
        }
        // Unreachable in practice: the tenth byte either ends the varint or
        // fails the overflow check above.
        Err(DecodeError { offset: start as u64, reason: "varint longer than 10 bytes".into() })
    }

    /// A string: uvarint length, then that many bytes of UTF-8.
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.uvarint()?;
        let at = self.pos;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map_err(|e| DecodeError { offset: (at + e.valid_up_to()) as u64, reason: "string is not UTF-8".into() })
    }
}

/// Appends a string as uvarint length + bytes.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// What the preamble says is wrong with a file's first 20 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreambleError {
    /// The magic is not [`MAGIC`].
    NotAChronicle {
        /// The first four bytes, in file order.
        found: [u8; 4],
    },
    /// The preamble CRC holds but the version is not one this crate reads
    /// (1 to [`VERSION`]).
    UnsupportedVersion(u16),
    /// CRC mismatch, reserved flags set, or an oversized header.
    Corrupt(String),
}

/// The first 20 bytes of a chronicle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preamble {
    /// Format version.
    pub version: u16,
    /// Bytes of the header body that follows.
    pub header_len: u32,
}

impl Preamble {
    /// The preamble bytes, CRC included (flags are always 0).
    pub fn to_bytes(&self) -> [u8; PREAMBLE_BYTES as usize] {
        let mut out = [0u8; PREAMBLE_BYTES as usize];
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[8..12].copy_from_slice(&self.header_len.to_le_bytes());
        let crc = crc64(&out[0..12]);
        out[12..20].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Checks, in this order: magic, CRC, version, flags, header length. The
    /// CRC comes before the version so a damaged version byte reads as
    /// corruption, not as a version from the future.
    pub fn from_bytes(b: &[u8; PREAMBLE_BYTES as usize]) -> Result<Preamble, PreambleError> {
        let le32 = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if le32(0) != MAGIC {
            return Err(PreambleError::NotAChronicle { found: [b[0], b[1], b[2], b[3]] });
        }
        let stored = u64::from_le_bytes([b[12], b[13], b[14], b[15], b[16], b[17], b[18], b[19]]);
        if crc64(&b[0..12]) != stored {
            return Err(PreambleError::Corrupt("preamble CRC mismatch".into()));
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if !(1..=VERSION).contains(&version) {
            return Err(PreambleError::UnsupportedVersion(version));
        }
        if b[6] != 0 || b[7] != 0 {
            return Err(PreambleError::Corrupt("reserved preamble flags are set".into()));
        }
        let header_len = le32(8);
        if header_len > HEADER_BYTES_MAX {
            return Err(PreambleError::Corrupt(format!(
                "header_len {header_len} exceeds header_bytes_max {HEADER_BYTES_MAX}"
            )));
        }
        Ok(Preamble { version, header_len })
    }
}

/// Where a chronicle file stands in its run: a run is one file, or a
/// sequence of segment files each chained to the one before (a resumed or
/// rotated live run). Stored at the end of a version-3 header body; a file
/// of an earlier version is always a run's first segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentLink {
    /// 0 for a run's first file, `k` for its `k`-th continuation.
    pub index: u32,
    /// For a continuation, the chain of the last whole frame of segment
    /// `index − 1` (its header's anchor when it has no frame): the new
    /// segment's anchor covers it, so the chain runs on across files.
    /// All zeros, and not stored, for a first segment.
    pub previous_chain: Chain,
}

impl SegmentLink {
    /// A run's first (or only) file.
    pub const FIRST: SegmentLink = SegmentLink { index: 0, previous_chain: [0; 32] };

    /// Segment `index` (at least 1), continuing a segment whose last chain is
    /// `previous_chain`.
    pub fn after(index: u32, previous_chain: Chain) -> SegmentLink {
        assert!(index > 0, "a continuation segment has an index of at least 1");
        SegmentLink { index, previous_chain }
    }
}

/// The whole file header: preamble, header body and header CRC. Errors when
/// the body would exceed [`HEADER_BYTES_MAX`].
pub fn encode_header(context: &RunContext, segment: &SegmentLink) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    put_str(&mut body, &context.run_id);
    put_str(&mut body, &context.config_sha256);
    put_str(&mut body, &context.config_text);
    put_str(&mut body, context.environment.os.as_str());
    put_str(&mut body, context.environment.arch.as_str());
    body.extend_from_slice(&context.seed.to_le_bytes());
    put_uvarint(&mut body, context.actors.len() as u64);
    for actor in &context.actors {
        put_str(&mut body, actor);
    }
    put_str(&mut body, &context.producer);
    put_uvarint(&mut body, u64::from(segment.index));
    if segment.index > 0 {
        body.extend_from_slice(&segment.previous_chain);
    }
    let header_len = u32::try_from(body.len()).ok().filter(|&n| n <= HEADER_BYTES_MAX).ok_or_else(|| {
        format!("the run context needs {} header bytes, more than header_bytes_max {HEADER_BYTES_MAX}", body.len())
    })?;
    let mut out = Vec::with_capacity(PREAMBLE_BYTES as usize + body.len() + 8);
    out.extend_from_slice(&Preamble { version: VERSION, header_len }.to_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc64(&body).to_le_bytes());
    Ok(out)
}

/// Decodes a header body of format `version` whose CRC has been checked. It
/// must be consumed exactly; the config hash is checked by the caller.
pub fn decode_header_body(body: &[u8], version: u16) -> Result<(RunContext, SegmentLink), DecodeError> {
    let mut c = Cursor::new(body);
    let run_id = c.str()?.to_string();
    let config_sha256 = c.str()?.to_string();
    let config_text = c.str()?.to_string();
    let os = Os::parse(c.str()?);
    let arch = Arch::parse(c.str()?);
    let seed = c.u64_le()?;
    let count = c.uvarint()?;
    // Each actor takes at least one byte, so this bounds the loop.
    if count > c.remaining() as u64 {
        return Err(c.error(format!("{count} actors cannot fit in {} bytes", c.remaining())));
    }
    let actors = (0..count).map(|_| c.str().map(str::to_string)).collect::<Result<Vec<_>, _>>()?;
    let producer = c.str()?.to_string();
    let segment = if version >= 3 {
        let at = c.pos();
        let index = c.uvarint()?;
        let index = u32::try_from(index)
            .map_err(|_| DecodeError { offset: at as u64, reason: format!("segment {index} exceeds 2^32 − 1") })?;
        let previous_chain = if index > 0 { c.array()? } else { [0; 32] };
        SegmentLink { index, previous_chain }
    } else {
        SegmentLink::FIRST
    };
    if c.remaining() != 0 {
        return Err(c.error(format!("{} bytes after the last header field", c.remaining())));
    }
    let context = RunContext {
        run_id,
        config_sha256,
        config_text,
        environment: Environment { os, arch },
        seed,
        actors,
        producer,
    };
    Ok((context, segment))
}

/// SHA-256 of `bytes`: the chain of "frame −1" when `bytes` is the preamble,
/// header body and header CRC.
pub fn chain_anchor(bytes: &[u8]) -> Chain {
    Sha256::digest(bytes).into()
}

/// SHA-256(`prev` ‖ `linked`): a frame's chain, where `linked` is bytes 0..56
/// of its header.
pub fn chain_link(prev: &Chain, linked: &[u8]) -> Chain {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(linked);
    h.finalize().into()
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Position of the frame in the file, from 0.
    pub frame_index: u32,
    /// Records in the payload (at least 1).
    pub record_count: u32,
    /// Payload bytes (at most [`PAYLOAD_BYTES_MAX`]).
    pub payload_len: u32,
    /// Tick of the first record.
    pub first_tick: u64,
    /// Seq of the first record.
    pub first_seq: u64,
    /// Tick of the last record.
    pub last_tick: u64,
    /// Seq of the last record.
    pub last_seq: u64,
    /// CRC of the payload.
    pub payload_crc: u64,
    /// SHA-256(previous chain ‖ bytes 0..56 of this header).
    pub chain: Chain,
}

impl FrameHeader {
    /// Bytes 0..56: the part a chain link covers.
    fn linked_bytes(&self) -> [u8; 56] {
        let mut out = [0u8; 56];
        out[0..4].copy_from_slice(&FRAME_MAGIC);
        out[4..8].copy_from_slice(&self.frame_index.to_le_bytes());
        out[8..12].copy_from_slice(&self.record_count.to_le_bytes());
        out[12..16].copy_from_slice(&self.payload_len.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_tick.to_le_bytes());
        out[24..32].copy_from_slice(&self.first_seq.to_le_bytes());
        out[32..40].copy_from_slice(&self.last_tick.to_le_bytes());
        out[40..48].copy_from_slice(&self.last_seq.to_le_bytes());
        out[48..56].copy_from_slice(&self.payload_crc.to_le_bytes());
        out
    }

    /// The chain this header must carry after a frame whose chain is `prev`.
    pub fn expected_chain(&self, prev: &Chain) -> Chain {
        chain_link(prev, &self.linked_bytes())
    }

    /// The 96 header bytes, header CRC included.
    pub fn to_bytes(&self) -> [u8; FRAME_HEADER_BYTES as usize] {
        let mut out = [0u8; FRAME_HEADER_BYTES as usize];
        out[0..56].copy_from_slice(&self.linked_bytes());
        out[56..88].copy_from_slice(&self.chain);
        let crc = crc64(&out[0..88]);
        out[88..96].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Checks magic, header CRC, then the fields' own rules (at least one
    /// record, payload within the limit, first position not after the last).
    /// Chain, frame index and payload are the caller's to check.
    pub fn from_bytes(b: &[u8; FRAME_HEADER_BYTES as usize]) -> Result<FrameHeader, String> {
        if b[0..4] != FRAME_MAGIC {
            return Err(format!("frame magic is {:02x?}, not `cmFR`", &b[0..4]));
        }
        let mut c = Cursor::new(&b[4..]);
        // Invariant: the array is 96 bytes, so none of these reads can fail.
        let mut read = || -> Result<FrameHeader, DecodeError> {
            Ok(FrameHeader {
                frame_index: c.u32_le()?,
                record_count: c.u32_le()?,
                payload_len: c.u32_le()?,
                first_tick: c.u64_le()?,
                first_seq: c.u64_le()?,
                last_tick: c.u64_le()?,
                last_seq: c.u64_le()?,
                payload_crc: c.u64_le()?,
                chain: c.array()?,
            })
        };
        let header = read().map_err(|e| e.to_string())?;
        let stored = u64::from_le_bytes([b[88], b[89], b[90], b[91], b[92], b[93], b[94], b[95]]);
        if crc64(&b[0..88]) != stored {
            return Err("frame header CRC mismatch".into());
        }
        if header.record_count == 0 {
            return Err("frame holds no records".into());
        }
        if header.payload_len > PAYLOAD_BYTES_MAX {
            return Err(format!("payload_len {} exceeds payload_bytes_max {PAYLOAD_BYTES_MAX}", header.payload_len));
        }
        if (header.first_tick, header.first_seq) > (header.last_tick, header.last_seq) {
            return Err("frame's first (tick, seq) is after its last".into());
        }
        Ok(header)
    }

    /// Where the frame sits in the index.
    pub fn info(&self, offset: u64) -> FrameInfo {
        FrameInfo {
            index: self.frame_index,
            offset,
            first_tick: self.first_tick,
            first_seq: self.first_seq,
            last_tick: self.last_tick,
            last_seq: self.last_seq,
        }
    }
}

/// One frame's place in the file and its `(tick, seq)` range: an index
/// entry, plus the frame's number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Frame number, from 0.
    pub index: u32,
    /// File offset of the frame header.
    pub offset: u64,
    /// Tick of the first record.
    pub first_tick: u64,
    /// Seq of the first record.
    pub first_seq: u64,
    /// Tick of the last record.
    pub last_tick: u64,
    /// Seq of the last record.
    pub last_seq: u64,
}

impl FrameInfo {
    /// The 40-byte index entry.
    pub fn to_index_bytes(&self) -> [u8; INDEX_ENTRY_BYTES as usize] {
        let mut out = [0u8; INDEX_ENTRY_BYTES as usize];
        for (i, x) in
            [self.offset, self.first_tick, self.first_seq, self.last_tick, self.last_seq].into_iter().enumerate()
        {
            out[8 * i..8 * i + 8].copy_from_slice(&x.to_le_bytes());
        }
        out
    }

    /// Reads index entry number `index`.
    pub fn from_index_bytes(index: u32, b: &[u8; INDEX_ENTRY_BYTES as usize]) -> FrameInfo {
        let at =
            |i: usize| u64::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]]);
        FrameInfo { index, offset: at(0), first_tick: at(8), first_seq: at(16), last_tick: at(24), last_seq: at(32) }
    }
}

/// The index block for `frames`: magic, count, entries, CRC.
pub fn encode_index(frames: &[FrameInfo]) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_FIXED_BYTES as usize + frames.len() * INDEX_ENTRY_BYTES as usize);
    out.extend_from_slice(&INDEX_MAGIC);
    // Invariant: frame numbers are u32, so the count fits.
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    for f in frames {
        out.extend_from_slice(&f.to_index_bytes());
    }
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The first 8 bytes of an index block: checks the magic, returns `count`.
pub fn index_count(b: &[u8; 8]) -> Result<u32, String> {
    if b[0..4] != INDEX_MAGIC {
        return Err(format!("index magic is {:02x?}, not `cmIX`", &b[0..4]));
    }
    Ok(u32::from_le_bytes([b[4], b[5], b[6], b[7]]))
}

/// Decodes a whole index block (its length already matched to its count):
/// checks magic and CRC, returns the entries.
pub fn decode_index(block: &[u8]) -> Result<Vec<FrameInfo>, String> {
    let mut c = Cursor::new(block);
    let count = index_count(&c.array().map_err(|e| e.to_string())?)?;
    if block.len() as u64 != INDEX_FIXED_BYTES + u64::from(count) * INDEX_ENTRY_BYTES {
        return Err(format!("index block of {} bytes cannot hold {count} entries", block.len()));
    }
    let (body, crc) = block.split_at(block.len() - 8);
    if crc64(body) != u64::from_le_bytes(crc.try_into().map_err(|_| "index CRC is not 8 bytes")?) {
        return Err("index block CRC mismatch".into());
    }
    (0..count).map(|i| c.array().map(|b| FrameInfo::from_index_bytes(i, &b)).map_err(|e| e.to_string())).collect()
}

/// The last 64 bytes of a sealed file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    /// Frames in the file.
    pub frame_count: u32,
    /// Records in all frames.
    pub record_count: u64,
    /// File offset of the index block.
    pub index_offset: u64,
    /// The last frame's chain, or the header's with no frames.
    pub chain_head: Chain,
}

impl Footer {
    /// The 64 footer bytes, CRC included.
    pub fn to_bytes(&self) -> [u8; FOOTER_BYTES as usize] {
        let mut out = [0u8; FOOTER_BYTES as usize];
        out[0..4].copy_from_slice(&FOOTER_MAGIC);
        out[4..8].copy_from_slice(&self.frame_count.to_le_bytes());
        out[8..16].copy_from_slice(&self.record_count.to_le_bytes());
        out[16..24].copy_from_slice(&self.index_offset.to_le_bytes());
        out[24..56].copy_from_slice(&self.chain_head);
        let crc = crc64(&out[0..56]);
        out[56..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Checks magic and CRC.
    pub fn from_bytes(b: &[u8; FOOTER_BYTES as usize]) -> Result<Footer, String> {
        if b[0..4] != FOOTER_MAGIC {
            return Err(format!("footer magic is {:02x?}, not `cmFT`", &b[0..4]));
        }
        let mut c = Cursor::new(&b[4..]);
        let mut read = || -> Result<Footer, DecodeError> {
            Ok(Footer {
                frame_count: c.u32_le()?,
                record_count: c.u64_le()?,
                index_offset: c.u64_le()?,
                chain_head: c.array()?,
            })
        };
        let footer = read().map_err(|e| e.to_string())?;
        let stored = u64::from_le_bytes([b[56], b[57], b[58], b[59], b[60], b[61], b[62], b[63]]);
        if crc64(&b[0..56]) != stored {
            return Err("footer CRC mismatch".into());
        }
        Ok(footer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(x: u64) -> Vec<u8> {
        let mut v = Vec::new();
        put_uvarint(&mut v, x);
        v
    }

    #[test]
    fn uvarint_roundtrips_at_the_edges() {
        for x in [0, 1, 127, 128, 16_383, 16_384, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
            let bytes = varint_bytes(x);
            assert!(bytes.len() <= VARINT_BYTES_MAX);
            let mut c = Cursor::new(&bytes);
            assert_eq!(c.uvarint(), Ok(x));
            assert_eq!(c.remaining(), 0);
        }
        assert_eq!(varint_bytes(u64::MAX).len(), 10);
    }

    #[test]
    fn uvarint_rejects_overflow_overlong_redundant_and_truncated() {
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Cursor::new(&overflow).uvarint().is_err());
        let overlong = [0x80; 11];
        assert!(Cursor::new(&overlong).uvarint().is_err());
        assert!(Cursor::new(&[0x80, 0x00]).uvarint().is_err());
        assert!(Cursor::new(&[0x80]).uvarint().is_err());
        assert!(Cursor::new(&[]).uvarint().is_err());
    }

    #[test]
    fn zigzag_maps_small_magnitudes_to_small_numbers() {
        assert_eq!([0, -1, 1, -2, 2].map(zigzag), [0, 1, 2, 3, 4]);
        for n in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX] {
            assert_eq!(unzigzag(zigzag(n)), n);
        }
    }

    #[test]
    fn fixed_structures_roundtrip() {
        let p = Preamble { version: VERSION, header_len: 77 };
        assert_eq!(Preamble::from_bytes(&p.to_bytes()), Ok(p));
        let h = FrameHeader {
            frame_index: 3,
            record_count: 2,
            payload_len: 10,
            first_tick: 1,
            first_seq: 2,
            last_tick: 3,
            last_seq: 4,
            payload_crc: 5,
            chain: [7; 32],
        };
        assert_eq!(FrameHeader::from_bytes(&h.to_bytes()), Ok(h));
        let f = Footer { frame_count: 1, record_count: 2, index_offset: 3, chain_head: [9; 32] };
        assert_eq!(Footer::from_bytes(&f.to_bytes()), Ok(f));
        let infos = [h.info(100), h.info(200)];
        assert_eq!(
            decode_index(&encode_index(&infos)).unwrap(),
            vec![FrameInfo { index: 0, ..infos[0] }, FrameInfo { index: 1, ..infos[1] }]
        );
    }
}
