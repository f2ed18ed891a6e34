//! The record payload of one frame: the
//! per-frame string table, shape table and per-shape delta state of
//! docs/chronicle-format.md, "Payload: records".
//!
//! [`FrameEncoder`] is on the hot path of every bus delivery: it encodes from
//! a borrowed [`Entry`] without cloning the payload, reuses its buffers across
//! frames, and finds a value's shape through a reusable scratch key, so a
//! record in a warm frame allocates nothing. [`decode_frame`] treats its input
//! as hostile: every count, length, depth and string is checked, the decoded
//! size is bounded by [`FRAME_DECODED_BYTES_MAX`], and bad bytes are a
//! [`DecodeError`], never a panic. This module does no I/O and knows nothing
//! of frame headers or files.

use std::borrow::Cow;
#[allow(clippy::disallowed_types)] // Lookup caches only, see `FxMap`.
use std::collections::HashMap;
use std::sync::Arc;

use metagov_bus::{CycleRecord, Entry, Envelope, Fixed, MetaFrame, OwnedEntry, Value};

use crate::format::{
    put_uvarint, unzigzag, zigzag, Cursor, DecodeError, FRAME_DECODED_BYTES_MAX, RECORDS_BYTES_MAX, SHAPE_DEPTH_MAX,
    SHAPE_ITEMS_MAX,
};

/// Record kind byte of a delivery.
pub const KIND_DELIVERY: u8 = 1;
/// Record kind byte of a cycle record.
pub const KIND_CYCLE: u8 = 2;
/// Record kind byte of a meta frame.
pub const KIND_FRAME: u8 = 3;
/// Record kind byte of an ingress packet's wall-clock arrival time (version 2).
pub const KIND_ARRIVAL: u8 = 4;

const TAG_UNIT: u8 = 0;
const TAG_BOOL: u8 = 1;
const TAG_INT: u8 = 2;
const TAG_FIXED: u8 = 3;
const TAG_TEXT: u8 = 4;
const TAG_BYTES: u8 = 5;
const TAG_LIST: u8 = 6;
const TAG_RECORD: u8 = 7;

/// Decoded size of a record before its payload value (spec, "Decoded size").
const RECORD_DECODED_BYTES: u64 = 128;
/// Decoded size of one value node, one shape node or one string-table entry,
/// before its text.
const NODE_DECODED_BYTES: u64 = 32;

/// Why a record was not added to the frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The record would push the frame past [`RECORDS_BYTES_MAX`] or
    /// [`FRAME_DECODED_BYTES_MAX`]. The frame still holds every record before
    /// it, intact; write it out and [`FrameEncoder::reset`] before pushing
    /// the record again.
    #[error("the frame is full")]
    FrameFull,
    /// The record cannot be stored in any frame (too deep, too many items,
    /// too large, or out of order). The encoder is unchanged.
    #[error("{0}")]
    Unencodable(String),
}

/// The `(tick, seq)` of an entry.
pub fn position(entry: &Entry<'_>) -> (u64, u64) {
    match *entry {
        Entry::Delivery(e) => (e.tick, e.seq),
        Entry::Cycle { tick, seq, .. } | Entry::Frame { tick, seq, .. } | Entry::Arrival { tick, seq, .. } => {
            (tick, seq)
        }
    }
}

/// Borrows an owned entry as an [`Entry`] (the bus offers only the other
/// direction).
pub fn entry_ref(entry: &OwnedEntry) -> Entry<'_> {
    match entry {
        OwnedEntry::Delivery(e) => Entry::Delivery(e),
        OwnedEntry::Cycle { tick, seq, record } => Entry::Cycle { tick: *tick, seq: *seq, record },
        OwnedEntry::Frame { tick, seq, frame } => Entry::Frame { tick: *tick, seq: *seq, frame },
        OwnedEntry::Arrival { tick, seq, unix_nanos } => {
            Entry::Arrival { tick: *tick, seq: *seq, unix_nanos: *unix_nanos }
        }
    }
}

/// The journal-order rule (spec, "Records are in journal order"): `(tick,
/// seq)` never decreases, and strictly increases from one delivery to the
/// next.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct JournalOrder {
    last: Option<(u64, u64)>,
    last_delivery: Option<(u64, u64)>,
}

impl JournalOrder {
    /// Takes the next record if it keeps the order; says why not otherwise.
    pub(crate) fn admit(&mut self, is_delivery: bool, at: (u64, u64)) -> Result<(), String> {
        if let Some(last) = self.last.filter(|&last| at < last) {
            return Err(format!("record {at:?} comes before the previous record {last:?}"));
        }
        if let Some(last) = self.last_delivery.filter(|&last| is_delivery && at <= last) {
            return Err(format!("delivery {at:?} does not follow the previous delivery {last:?}"));
        }
        self.last = Some(at);
        if is_delivery {
            self.last_delivery = Some(at);
        }
        Ok(())
    }
}

/// rustc's Fx hash: a multiply and a rotate per 8 bytes. Much cheaper than
/// SipHash for the short keys here; it is not resistant to crafted
/// collisions, which could only slow one frame's encoding, never change it.
#[derive(Clone, Copy, Debug, Default)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

#[allow(clippy::disallowed_types)] // Lookup caches only: nothing iterates them, so no order reaches an output.
type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// The frame string table on the encoding side.
#[derive(Debug, Default)]
struct Strings {
    ids: FxMap<Arc<str>, u32>,
    by_id: Vec<Arc<str>>,
    /// Bus names seen in this frame, by pointer (see [`Strings::put_name`]).
    names: Vec<(Arc<str>, u32)>,
}

/// Bus names cached by pointer per frame: more than a run's topics and actors.
const NAME_CACHE_LEN: usize = 32;

impl Strings {
    /// Writes `uvarint(id + bias)` for a known string, or `uvarint(len + bias)`
    /// and the string for a new one. Returns the id and the decoded bytes a
    /// new entry adds.
    #[inline]
    fn put(&mut self, out: &mut Vec<u8>, s: &str, bias: u64) -> (u32, u64) {
        if let Some(&id) = self.ids.get(s) {
            put_uvarint(out, u64::from(id) + bias);
            return (id, 0);
        }
        // Invariant: a frame holds at most PAYLOAD_BYTES_MAX bytes, and every
        // new string costs at least one, so ids fit in u32.
        let id = self.by_id.len() as u32;
        put_uvarint(out, u64::from(id) + bias);
        put_uvarint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
        let shared: Arc<str> = Arc::from(s);
        self.ids.insert(shared.clone(), id);
        self.by_id.push(shared);
        (id, NODE_DECODED_BYTES + s.len() as u64)
    }

    /// [`Strings::put`] for a bus name: the bus shares one `Arc` per topic
    /// and actor, so a pointer match against the names seen in this frame
    /// skips hashing. The cache holds the `Arc`s, so an address cannot be
    /// reused by another string while it is cached.
    #[inline]
    fn put_name(&mut self, out: &mut Vec<u8>, name: &Arc<str>) -> u64 {
        if let Some((_, id)) = self.names.iter().find(|(n, _)| Arc::ptr_eq(n, name)) {
            put_uvarint(out, u64::from(*id));
            return 0;
        }
        let (id, decoded) = self.put(out, name, 0);
        if self.names.len() < NAME_CACHE_LEN {
            self.names.push((name.clone(), id));
        }
        decoded
    }

    fn clear(&mut self) {
        self.ids.clear();
        self.by_id.clear();
        self.names.clear();
    }
}

/// What the first walk over a value learns: its shape key (in the scratch
/// buffer), its node and scalar-leaf counts and its decoded size.
#[derive(Debug, Default)]
struct Measure {
    nodes: u64,
    leaves: u64,
    decoded_bytes: u64,
}

/// Writes the shape key of `v` (tags, counts and key texts, prefix-free) into
/// `key` and measures it; refuses values deeper or wider than the format
/// allows. Touches nothing else, so a refusal leaves the encoder unchanged.
fn shape_key(v: &Value, depth: u32, key: &mut Vec<u8>, m: &mut Measure) -> Result<(), String> {
    if depth > SHAPE_DEPTH_MAX {
        return Err(format!("value nests deeper than shape_depth_max {SHAPE_DEPTH_MAX}"));
    }
    m.nodes += 1;
    m.decoded_bytes += NODE_DECODED_BYTES;
    let items = |n: usize| {
        if n as u64 > SHAPE_ITEMS_MAX {
            Err(format!("a list or record of {n} items exceeds shape_items_max {SHAPE_ITEMS_MAX}"))
        } else {
            Ok(n as u64)
        }
    };
    match v {
        Value::List(list) => {
            key.push(TAG_LIST);
            put_uvarint(key, items(list.len())?);
            for item in list {
                shape_key(item, depth + 1, key, m)?;
            }
        }
        Value::Record(fields) => {
            key.push(TAG_RECORD);
            put_uvarint(key, items(fields.len())?);
            for (k, item) in fields {
                put_uvarint(key, k.len() as u64);
                key.extend_from_slice(k.as_bytes());
                m.decoded_bytes += k.len() as u64;
                shape_key(item, depth + 1, key, m)?;
            }
        }
        scalar => {
            key.push(scalar_tag(scalar));
            m.leaves += 1;
            m.decoded_bytes += match scalar {
                Value::Text(s) => s.len() as u64,
                Value::Bytes(b) => b.len() as u64,
                _ => 0,
            };
        }
    }
    Ok(())
}

fn scalar_tag(v: &Value) -> u8 {
    match v {
        Value::Unit => TAG_UNIT,
        Value::Bool(_) => TAG_BOOL,
        Value::Int(_) => TAG_INT,
        Value::Fixed(_) => TAG_FIXED,
        Value::Text(_) => TAG_TEXT,
        Value::Bytes(_) => TAG_BYTES,
        Value::List(_) => TAG_LIST,
        Value::Record(_) => TAG_RECORD,
    }
}

/// Writes the shape definition of `v` (keys as strrefs). Returns the decoded
/// bytes its new strings add.
fn put_shape(out: &mut Vec<u8>, strings: &mut Strings, v: &Value) -> u64 {
    out.push(scalar_tag(v));
    match v {
        Value::List(items) => {
            put_uvarint(out, items.len() as u64);
            items.iter().map(|item| put_shape(out, strings, item)).sum()
        }
        Value::Record(fields) => {
            put_uvarint(out, fields.len() as u64);
            fields.iter().map(|(k, item)| strings.put(out, k, 0).1 + put_shape(out, strings, item)).sum()
        }
        _ => 0,
    }
}

/// Writes the scalars of `v`, depth first, as deltas against the shape's
/// per-leaf state starting at `*leaf`. Returns the decoded bytes new strings
/// add.
fn put_scalars(out: &mut Vec<u8>, strings: &mut Strings, state: &mut [i64], leaf: &mut usize, v: &Value) -> u64 {
    let mut delta = |out: &mut Vec<u8>, x: i64| {
        let prev = &mut state[*leaf];
        put_uvarint(out, zigzag(x.wrapping_sub(*prev)));
        *prev = x;
    };
    let added = match v {
        Value::List(items) => return items.iter().map(|item| put_scalars(out, strings, state, leaf, item)).sum(),
        Value::Record(fields) => {
            return fields.iter().map(|(_, item)| put_scalars(out, strings, state, leaf, item)).sum()
        }
        Value::Unit => 0,
        Value::Bool(b) => {
            out.push(u8::from(*b));
            0
        }
        Value::Int(i) => {
            delta(out, *i);
            0
        }
        Value::Fixed(f) => {
            delta(out, f.micros());
            0
        }
        Value::Text(s) => {
            let prev = &mut state[*leaf];
            // 0 is the initial empty text; otherwise the string id + 1.
            let same = if *prev == 0 { s.is_empty() } else { *strings.by_id[(*prev - 1) as usize] == **s };
            if same {
                out.push(0);
                0
            } else {
                let (id, added) = strings.put(out, s, 1);
                *prev = i64::from(id) + 1;
                added
            }
        }
        Value::Bytes(b) => {
            put_uvarint(out, b.len() as u64);
            out.extend_from_slice(b);
            0
        }
    };
    *leaf += 1;
    added
}

/// A known shape: its number in the frame and where its leaf state starts.
#[derive(Clone, Copy, Debug)]
struct ShapeSlot {
    id: u32,
    state_base: u32,
}

/// Builds one frame payload, record by record.
///
/// Call order: [`push`](Self::push) entries in journal order; when the frame
/// is to be closed, take [`payload`](Self::payload) and the positions, then
/// [`reset`](Self::reset). After [`EncodeError::FrameFull`] the frame must be
/// closed before the next push.
#[derive(Debug, Default)]
pub struct FrameEncoder {
    out: Vec<u8>,
    strings: Strings,
    shapes: FxMap<Vec<u8>, ShapeSlot>,
    state: Vec<i64>,
    scratch: Vec<u8>,
    record_count: u32,
    first: (u64, u64),
    last: (u64, u64),
    decoded_bytes: u64,
    must_close: bool,
}

impl FrameEncoder {
    /// An empty frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// The payload so far.
    pub fn payload(&self) -> &[u8] {
        &self.out
    }

    /// Records in the frame.
    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    /// `(tick, seq)` of the first record (meaningless while empty).
    pub fn first(&self) -> (u64, u64) {
        self.first
    }

    /// `(tick, seq)` of the last record (meaningless while empty).
    pub fn last(&self) -> (u64, u64) {
        self.last
    }

    /// Starts a new, empty frame, keeping the buffers' capacity.
    pub fn reset(&mut self) {
        self.out.clear();
        self.strings.clear();
        self.shapes.clear();
        self.state.clear();
        self.record_count = 0;
        self.decoded_bytes = 0;
        self.must_close = false;
    }

    /// Appends one record. Its `(tick, seq)` must not be before the previous
    /// record's.
    pub fn push(&mut self, entry: Entry<'_>) -> Result<(), EncodeError> {
        assert!(!self.must_close, "FrameEncoder::push after FrameFull without reset");
        let (tick, seq) = position(&entry);
        let prev = if self.record_count == 0 { (tick, seq) } else { self.last };
        if (tick, seq) < prev {
            return Err(EncodeError::Unencodable(format!(
                "record ({tick}, {seq}) comes before ({}, {})",
                prev.0, prev.1
            )));
        }
        // Cycle records and meta frames are rare; they go through their value
        // form. Delivery payloads are only borrowed.
        let owned;
        let (kind, value) = match entry {
            Entry::Delivery(e) => (KIND_DELIVERY, &*e.payload),
            Entry::Cycle { record, .. } => {
                owned = record.to_value();
                (KIND_CYCLE, &owned)
            }
            Entry::Frame { frame, .. } => {
                owned = frame.to_value();
                (KIND_FRAME, &owned)
            }
            Entry::Arrival { seq: arrival_seq, unix_nanos, .. } => {
                if arrival_seq != 0 {
                    return Err(EncodeError::Unencodable(format!(
                        "arrival time at ({tick}, {arrival_seq}): an arrival belongs to a tick's ingress delivery, seq 0"
                    )));
                }
                owned = Value::Int(unix_nanos);
                (KIND_ARRIVAL, &owned)
            }
        };
        self.scratch.clear();
        let mut m = Measure::default();
        shape_key(value, 1, &mut self.scratch, &mut m).map_err(EncodeError::Unencodable)?;

        let (len_before, decoded_before) = (self.out.len(), self.decoded_bytes);
        let out = &mut self.out;
        let mut decoded = RECORD_DECODED_BYTES + m.decoded_bytes;
        out.push(kind);
        put_uvarint(out, tick - prev.0);
        put_uvarint(out, if tick == prev.0 { seq - prev.1 } else { seq });
        if let Entry::Delivery(e) = entry {
            for name in [&e.topic, &e.from, &e.to] {
                decoded += self.strings.put_name(out, name);
            }
            put_uvarint(out, cause_code(e, seq).map_err(EncodeError::Unencodable)?);
        }
        let slot = match self.shapes.get(self.scratch.as_slice()) {
            Some(&slot) => {
                put_uvarint(out, u64::from(slot.id));
                slot
            }
            None => {
                // Invariant: each shape costs at least one payload byte.
                let slot = ShapeSlot { id: self.shapes.len() as u32, state_base: self.state.len() as u32 };
                put_uvarint(out, u64::from(slot.id));
                decoded += put_shape(out, &mut self.strings, value) + NODE_DECODED_BYTES * m.nodes;
                self.state.resize(self.state.len() + m.leaves as usize, 0);
                self.shapes.insert(self.scratch.clone(), slot);
                slot
            }
        };
        let mut leaf = slot.state_base as usize;
        decoded += put_scalars(out, &mut self.strings, &mut self.state, &mut leaf, value);
        self.decoded_bytes += decoded;

        if self.out.len() > RECORDS_BYTES_MAX as usize || self.decoded_bytes > FRAME_DECODED_BYTES_MAX {
            // The bytes before this record are a whole, decodable frame; the
            // tables now name strings and shapes whose definitions are cut.
            self.out.truncate(len_before);
            self.decoded_bytes = decoded_before;
            if self.record_count == 0 {
                self.reset();
                return Err(EncodeError::Unencodable(format!(
                    "record ({tick}, {seq}) alone exceeds records_bytes_max {RECORDS_BYTES_MAX} or frame_decoded_bytes_max {FRAME_DECODED_BYTES_MAX}"
                )));
            }
            self.must_close = true;
            return Err(EncodeError::FrameFull);
        }
        if self.record_count == 0 {
            self.first = (tick, seq);
        }
        self.last = (tick, seq);
        self.record_count += 1;
        Ok(())
    }
}

/// A delivery's cause as written: 0 for none (ingress), else `seq − cause`,
/// at least 1 (a delivery is published by the handler of an earlier one).
fn cause_code(e: &Envelope, seq: u64) -> Result<u64, String> {
    match e.cause {
        None => Ok(0),
        Some(cause) if cause < seq => Ok(seq - cause),
        Some(cause) => Err(format!("delivery ({}, {seq}) names cause seq {cause}, not before it", e.tick)),
    }
}

/// Encodes `entries` as one frame payload. Errors with
/// [`EncodeError::FrameFull`] when they do not fit in one frame.
pub fn encode_frame<'a>(entries: impl IntoIterator<Item = Entry<'a>>) -> Result<Vec<u8>, EncodeError> {
    let mut encoder = FrameEncoder::new();
    for entry in entries {
        encoder.push(entry)?;
    }
    Ok(encoder.out)
}

/// One node of a decoded shape, in depth-first order.
#[derive(Clone, Copy, Debug)]
struct Node {
    tag: u8,
    /// Items of a list or record.
    count: u32,
    /// String id of this node's key within its parent record, or `NO_KEY`.
    key: u32,
    /// Index of this scalar's delta state.
    leaf: u32,
}

const NO_KEY: u32 = u32::MAX;

/// The decoding side of one frame's tables.
struct Decoder<'a> {
    c: Cursor<'a>,
    strings: Vec<Arc<str>>,
    nodes: Vec<Node>,
    /// Per shape: index of its root node.
    shapes: Vec<u32>,
    state: Vec<i64>,
    decoded_bytes: u64,
    /// Build the values; when false, parse and check exactly the same bytes
    /// (same tables, state and budget) but build nothing: `Value::Unit`
    /// stands for every value.
    materialize: bool,
}

impl<'a> Decoder<'a> {
    fn spend(&mut self, bytes: u64) -> Result<(), DecodeError> {
        self.decoded_bytes = self.decoded_bytes.saturating_add(bytes);
        if self.decoded_bytes > FRAME_DECODED_BYTES_MAX {
            return Err(self
                .c
                .error(format!("frame decodes to more than frame_decoded_bytes_max {FRAME_DECODED_BYTES_MAX}")));
        }
        Ok(())
    }

    /// Resolves table reference `x`: an existing string, or a new one that
    /// follows when `x` equals the table length.
    fn string(&mut self, x: u64) -> Result<u32, DecodeError> {
        let len = self.strings.len() as u64;
        if x < len {
            return Ok(x as u32);
        }
        if x > len {
            return Err(self.c.error(format!("string reference {x} beyond the table of {len}")));
        }
        let s = self.c.str()?;
        self.spend(NODE_DECODED_BYTES + s.len() as u64)?;
        self.strings.push(Arc::from(s));
        Ok(x as u32)
    }

    fn strref(&mut self) -> Result<Arc<str>, DecodeError> {
        let x = self.c.uvarint()?;
        let id = self.string(x)?;
        Ok(self.strings[id as usize].clone())
    }

    fn value(&mut self) -> Result<Value, DecodeError> {
        let x = self.c.uvarint()?;
        let len = self.shapes.len() as u64;
        let root = if x < len {
            self.shapes[x as usize]
        } else if x == len {
            let root = self.nodes.len() as u32;
            self.define(1, NO_KEY)?;
            self.shapes.push(root);
            root
        } else {
            return Err(self.c.error(format!("shape reference {x} beyond the table of {len}")));
        };
        self.spend(NODE_DECODED_BYTES)?;
        let mut pos = root as usize;
        self.build(&mut pos)
    }

    /// Reads one shape definition into `nodes`.
    fn define(&mut self, depth: u32, key: u32) -> Result<(), DecodeError> {
        if depth > SHAPE_DEPTH_MAX {
            return Err(self.c.error(format!("shape nests deeper than shape_depth_max {SHAPE_DEPTH_MAX}")));
        }
        self.spend(NODE_DECODED_BYTES)?;
        let tag = self.c.u8()?;
        match tag {
            TAG_UNIT..=TAG_BYTES => {
                self.nodes.push(Node { tag, count: 0, key, leaf: self.state.len() as u32 });
                self.state.push(0);
            }
            TAG_LIST | TAG_RECORD => {
                let count = self.c.uvarint()?;
                if count > SHAPE_ITEMS_MAX {
                    return Err(self.c.error(format!("{count} items exceed shape_items_max {SHAPE_ITEMS_MAX}")));
                }
                self.nodes.push(Node { tag, count: count as u32, key, leaf: 0 });
                for _ in 0..count {
                    let key = if tag == TAG_RECORD {
                        let x = self.c.uvarint()?;
                        self.string(x)?
                    } else {
                        NO_KEY
                    };
                    self.define(depth + 1, key)?;
                }
            }
            _ => return Err(self.c.error(format!("unknown shape tag {tag}"))),
        }
        Ok(())
    }

    /// Builds the value of the node at `*pos` from the scalars that follow.
    /// The node itself is already paid for; its children are paid here,
    /// before anything is allocated for them.
    fn build(&mut self, pos: &mut usize) -> Result<Value, DecodeError> {
        let node = self.nodes[*pos];
        *pos += 1;
        let leaf = node.leaf as usize;
        Ok(match node.tag {
            TAG_UNIT => Value::Unit,
            TAG_BOOL => match self.c.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.c.error(format!("bool byte is {b}"))),
            },
            TAG_INT | TAG_FIXED => {
                let x = self.state[leaf].wrapping_add(unzigzag(self.c.uvarint()?));
                self.state[leaf] = x;
                if node.tag == TAG_INT {
                    Value::Int(x)
                } else {
                    Value::Fixed(Fixed::from_micros(x))
                }
            }
            TAG_TEXT => {
                let x = self.c.uvarint()?;
                if x != 0 {
                    let id = self.string(x - 1)?;
                    self.state[leaf] = i64::from(id) + 1;
                }
                let prev = self.state[leaf];
                let text = if prev == 0 { "" } else { &*self.strings[(prev - 1) as usize] };
                let (len, text) = (text.len() as u64, self.materialize.then(|| text.to_string()));
                self.spend(len)?;
                text.map_or(Value::Unit, Value::Text)
            }
            TAG_BYTES => {
                let len = self.c.uvarint()?;
                let bytes = self.c.take(len)?;
                self.spend(len)?;
                if self.materialize {
                    Value::Bytes(bytes.to_vec())
                } else {
                    Value::Unit
                }
            }
            _ => {
                self.spend(NODE_DECODED_BYTES * u64::from(node.count))?;
                let count = node.count as usize;
                if !self.materialize {
                    for _ in 0..count {
                        if node.tag == TAG_RECORD {
                            self.spend(self.strings[self.nodes[*pos].key as usize].len() as u64)?;
                        }
                        self.build(pos)?;
                    }
                    return Ok(Value::Unit);
                }
                if node.tag == TAG_LIST {
                    let mut items = Vec::with_capacity(count);
                    for _ in 0..count {
                        items.push(self.build(pos)?);
                    }
                    Value::List(items)
                } else {
                    let mut fields = Vec::with_capacity(count);
                    for _ in 0..count {
                        let key = self.strings[self.nodes[*pos].key as usize].to_string();
                        self.spend(key.len() as u64)?;
                        fields.push((Cow::Owned(key), self.build(pos)?));
                    }
                    Value::Record(fields)
                }
            }
        })
    }
}

/// Decodes a frame payload of `record_count` records whose first record is
/// at `(first_tick, first_seq)`. Every input is treated as hostile: the
/// result is the records or a [`DecodeError`] at a payload offset.
pub fn decode_frame(
    payload: &[u8],
    first_tick: u64,
    first_seq: u64,
    record_count: u32,
    version: u16,
) -> Result<Vec<OwnedEntry>, DecodeError> {
    // Every record takes at least four bytes (kind, tick, seq, shape).
    let mut out = Vec::with_capacity((record_count as usize).min(payload.len() / 4));
    walk_frame(payload, (first_tick, first_seq, record_count, version), true, |entry, _| {
        // Invariant: a materializing walk hands over every entry.
        out.push(entry.expect("a materializing walk yields entries"));
    })?;
    Ok(out)
}

/// Checks a frame payload exactly as [`decode_frame`] does — same rules,
/// same limits, same errors — without building the delivery payloads, and
/// returns the position of its last record. What `verify` uses.
pub fn check_frame(
    payload: &[u8],
    first_tick: u64,
    first_seq: u64,
    record_count: u32,
    version: u16,
) -> Result<Option<(u64, u64)>, DecodeError> {
    let mut last = None;
    walk_frame(payload, (first_tick, first_seq, record_count, version), false, |_, at| last = Some(at))?;
    Ok(last)
}

/// A frame's decoding tables, kept between records by [`FrameStream`].
#[derive(Debug, Default)]
struct Tables {
    strings: Vec<Arc<str>>,
    nodes: Vec<Node>,
    shapes: Vec<u32>,
    state: Vec<i64>,
    decoded_bytes: u64,
}

impl<'a> Decoder<'a> {
    /// A decoder over `payload` from `pos`, taking the tables (cheap moves).
    fn resume(payload: &'a [u8], pos: usize, t: &mut Tables, materialize: bool) -> Decoder<'a> {
        Decoder {
            c: Cursor::at(payload, pos),
            strings: std::mem::take(&mut t.strings),
            nodes: std::mem::take(&mut t.nodes),
            shapes: std::mem::take(&mut t.shapes),
            state: std::mem::take(&mut t.state),
            decoded_bytes: t.decoded_bytes,
            materialize,
        }
    }

    /// Gives the tables back and returns the position reached.
    fn suspend(self, t: &mut Tables) -> usize {
        *t = Tables {
            strings: self.strings,
            nodes: self.nodes,
            shapes: self.shapes,
            state: self.state,
            decoded_bytes: self.decoded_bytes,
        };
        self.c.pos()
    }
}

/// Where a walk over a frame's records is: the previous position, the order
/// rule, and how many records are done.
#[derive(Debug)]
struct Progress {
    first: (u64, u64),
    tick: u64,
    seq: u64,
    order: JournalOrder,
    done: u32,
    /// The file's format version: what a delivery's fourth field means, and
    /// which record kinds exist.
    version: u16,
}

impl Progress {
    fn new(first_tick: u64, first_seq: u64, version: u16) -> Progress {
        Progress {
            first: (first_tick, first_seq),
            tick: first_tick,
            seq: first_seq,
            order: JournalOrder::default(),
            done: 0,
            version,
        }
    }
}

/// Decodes or checks the next record (built when `materialize`, and for a
/// delivery only when `keep` takes its topic: another is checked as if
/// not materialized, and `None` is handed back). Cycle records and meta
/// frames are always built: their shape is part of what is checked.
fn next_record(
    d: &mut Decoder<'_>,
    p: &mut Progress,
    materialize: bool,
    keep: &dyn Fn(&str) -> bool,
) -> Result<(Option<OwnedEntry>, (u64, u64)), DecodeError> {
    d.spend(RECORD_DECODED_BYTES)?;
    let at = d.c.pos() as u64;
    let kind = d.c.u8()?;
    let dt = d.c.uvarint()?;
    let ds = d.c.uvarint()?;
    let tick = p.tick.checked_add(dt).ok_or_else(|| d.c.error("tick overflows u64"))?;
    let seq = if dt == 0 { p.seq.checked_add(ds).ok_or_else(|| d.c.error("seq overflows u64"))? } else { ds };
    (p.tick, p.seq) = (tick, seq);
    if p.done == 0 && (tick, seq) != p.first {
        return Err(DecodeError { offset: at, reason: "first record is not at the frame's first (tick, seq)".into() });
    }
    p.order.admit(kind == KIND_DELIVERY, (tick, seq)).map_err(|reason| DecodeError { offset: at, reason })?;
    let shape_error = |e: metagov_bus::ShapeError| DecodeError { offset: at, reason: e.to_string() };
    let mut built = || {
        d.materialize = true;
        let value = d.value();
        d.materialize = materialize;
        value
    };
    let entry = match kind {
        KIND_DELIVERY => {
            let topic = d.strref()?;
            let from = d.strref()?;
            let to = d.strref()?;
            let code = d.c.uvarint()?;
            let cause = if p.version == 1 {
                // Version 1's `trace`, zigzag(trace − tick): metagov only
                // ever wrote the tick itself, and recorded no cause.
                if code != 0 {
                    let trace = tick.wrapping_add(unzigzag(code) as u64);
                    return Err(DecodeError {
                        offset: at,
                        reason: format!("version 1 trace {trace} is not the delivery's tick {tick}"),
                    });
                }
                None
            } else if code == 0 {
                None
            } else {
                let cause = seq
                    .checked_sub(code)
                    .ok_or_else(|| DecodeError { offset: at, reason: format!("cause {code} seqs before seq {seq}") })?;
                Some(cause)
            };
            let build = materialize && keep(&topic);
            d.materialize = build;
            let payload = d.value();
            d.materialize = materialize;
            let payload = Arc::new(payload?);
            build.then_some(OwnedEntry::Delivery(Envelope { tick, seq, topic, from, to, cause, payload }))
        }
        KIND_CYCLE => {
            Some(OwnedEntry::Cycle { tick, seq, record: CycleRecord::from_value(&built()?).map_err(shape_error)? })
        }
        KIND_FRAME => {
            Some(OwnedEntry::Frame { tick, seq, frame: MetaFrame::from_value(&built()?).map_err(shape_error)? })
        }
        KIND_ARRIVAL if p.version >= 2 => {
            if seq != 0 {
                return Err(DecodeError { offset: at, reason: format!("arrival time at seq {seq}, not 0") });
            }
            match built()? {
                Value::Int(unix_nanos) => Some(OwnedEntry::Arrival { tick, seq, unix_nanos }),
                other => {
                    return Err(DecodeError { offset: at, reason: format!("arrival time is not an int: {other}") })
                }
            }
        }
        k => return Err(DecodeError { offset: at, reason: format!("unknown record kind {k}") }),
    };
    p.done += 1;
    Ok((entry, (tick, seq)))
}

/// The payload must end exactly after its last record.
fn check_end(d: &Decoder<'_>) -> Result<(), DecodeError> {
    if d.c.remaining() != 0 {
        return Err(d.c.error(format!("{} bytes after the last record", d.c.remaining())));
    }
    Ok(())
}

/// Decodes or checks every record of a payload, handing each (built when
/// `materialize`) and its position to `each`.
fn walk_frame(
    payload: &[u8],
    (first_tick, first_seq, record_count, version): (u64, u64, u32, u16),
    materialize: bool,
    mut each: impl FnMut(Option<OwnedEntry>, (u64, u64)),
) -> Result<(), DecodeError> {
    let mut d = Decoder::resume(payload, 0, &mut Tables::default(), materialize);
    let mut p = Progress::new(first_tick, first_seq, version);
    for _ in 0..record_count {
        let (entry, at) = next_record(&mut d, &mut p, materialize, &|_| true)?;
        each(entry, at);
    }
    check_end(&d)
}

/// One frame's records decoded one at a time, from a payload it owns: memory
/// holds the payload, the frame's tables and the record being handed out,
/// never the whole decoded frame. The same rules, limits and errors as
/// [`decode_frame`].
#[derive(Debug)]
pub struct FrameStream {
    payload: Vec<u8>,
    pos: usize,
    tables: Tables,
    progress: Progress,
    record_count: u32,
    last: Option<(u64, u64)>,
}

impl FrameStream {
    /// A stream over `payload`, a frame of `record_count` records whose first
    /// is at `(first_tick, first_seq)`.
    pub fn new(payload: Vec<u8>, first_tick: u64, first_seq: u64, record_count: u32, version: u16) -> FrameStream {
        FrameStream {
            payload,
            pos: 0,
            tables: Tables::default(),
            progress: Progress::new(first_tick, first_seq, version),
            record_count,
            last: None,
        }
    }

    /// The next record; `Ok(None)` after the last one, once the payload is
    /// known to end there.
    pub fn next_entry(&mut self) -> Result<Option<OwnedEntry>, DecodeError> {
        self.next_entry_where(&|_| true)
    }

    /// The next record that is not a delivery of a topic `keep` refuses:
    /// those are checked, as every record is, but not built (their payload
    /// is walked without allocating a value). `Ok(None)` after the last.
    pub fn next_entry_where(&mut self, keep: &dyn Fn(&str) -> bool) -> Result<Option<OwnedEntry>, DecodeError> {
        let mut d = Decoder::resume(&self.payload, self.pos, &mut self.tables, true);
        let result = loop {
            if self.progress.done == self.record_count {
                break check_end(&d).map(|()| None);
            }
            match next_record(&mut d, &mut self.progress, true, keep) {
                Ok((entry, at)) => {
                    self.last = Some(at);
                    if entry.is_some() {
                        break Ok(entry);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.pos = d.suspend(&mut self.tables);
        result
    }

    /// Position of the last record decoded.
    pub fn last(&self) -> Option<(u64, u64)> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(tick: u64, seq: u64, payload: Value) -> Envelope {
        Envelope {
            tick,
            seq,
            topic: "telemetry.raw".into(),
            from: "ingress".into(),
            to: "validator".into(),
            cause: None,
            payload: Arc::new(payload),
        }
    }

    use crate::format::VERSION;

    #[test]
    fn repeated_records_cost_only_their_deltas() {
        let v = |x: i64| Value::Record(vec![("x".into(), Value::Int(x)), ("name".into(), Value::Text("job-a".into()))]);
        let envs: Vec<Envelope> = (0..3).map(|i| delivery(1, i, v(i as i64))).collect();
        let payload = encode_frame(envs.iter().map(Entry::Delivery)).unwrap();
        let back = decode_frame(&payload, 1, 0, 3, VERSION).unwrap();
        assert_eq!(back, envs.into_iter().map(OwnedEntry::Delivery).collect::<Vec<_>>());
        // The third record: kind, dt, ds, 3 strrefs, cause, shaperef, x delta, same text.
        let one = encode_frame(std::iter::once(Entry::Delivery(&delivery(1, 0, v(0))))).unwrap();
        let two = encode_frame([delivery(1, 0, v(0)), delivery(1, 1, v(1))].iter().map(Entry::Delivery)).unwrap();
        assert_eq!(payload.len() - two.len(), 10);
        assert_eq!(two.len() - one.len(), 10);
    }

    #[test]
    fn refuses_too_deep_and_too_wide_without_changing_state() {
        let mut deep = Value::Unit;
        for _ in 0..SHAPE_DEPTH_MAX {
            deep = Value::List(vec![deep]);
        }
        let mut enc = FrameEncoder::new();
        let e = delivery(1, 0, deep);
        assert!(matches!(enc.push(Entry::Delivery(&e)), Err(EncodeError::Unencodable(_))));
        let wide = delivery(1, 0, Value::List(vec![Value::Unit; SHAPE_ITEMS_MAX as usize + 1]));
        assert!(matches!(enc.push(Entry::Delivery(&wide)), Err(EncodeError::Unencodable(_))));
        assert_eq!(enc.payload().len(), 0);
        let ok = delivery(1, 0, Value::List(vec![Value::Unit; SHAPE_ITEMS_MAX as usize]));
        enc.push(Entry::Delivery(&ok)).unwrap();
        assert_eq!(decode_frame(enc.payload(), 1, 0, 1, VERSION).unwrap(), vec![OwnedEntry::Delivery(ok)]);
    }

    #[test]
    fn a_shape_bomb_is_stopped_by_the_decoded_size_limit() {
        // One shape of 65,536 units, then many eight-byte deliveries using it.
        let records = 200_000u32;
        let mut payload = vec![KIND_DELIVERY, 0, 0, 0, 0, 0, 0, 0, 0, TAG_LIST];
        put_uvarint(&mut payload, SHAPE_ITEMS_MAX);
        payload.extend(std::iter::repeat_n(TAG_UNIT, SHAPE_ITEMS_MAX as usize));
        for _ in 1..records {
            payload.extend_from_slice(&[KIND_DELIVERY, 0, 1, 0, 0, 0, 0, 0]);
        }
        let err = decode_frame(&payload, 0, 0, records, VERSION).unwrap_err();
        assert!(err.reason.contains("frame_decoded_bytes_max"), "{err}");
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = metagov_bus::ActorRng::for_actor(1, "garbage");
        for _ in 0..20_000 {
            let len = rng.below(40) as usize;
            let bytes: Vec<u8> =
                (0..len).map(|_| if rng.below(3) == 0 { rng.below(8) as u8 } else { rng.next_u64() as u8 }).collect();
            let _ = decode_frame(&bytes, 0, 0, rng.below(4) as u32 + 1, VERSION);
            let _ = decode_frame(&bytes, 0, 0, rng.below(4) as u32 + 1, 1);
        }
    }

    #[test]
    fn causes_and_arrivals_round_trip_and_bad_ones_are_refused() {
        let ingress = delivery(3, 0, Value::Int(1));
        let mut published = delivery(3, 2, Value::Int(2));
        published.cause = Some(0);
        let entries = [
            Entry::Delivery(&ingress),
            Entry::Arrival { tick: 3, seq: 0, unix_nanos: 1_764_000_000_123_456_789 },
            Entry::Delivery(&published),
        ];
        let payload = encode_frame(entries).unwrap();
        let back = decode_frame(&payload, 3, 0, 3, VERSION).unwrap();
        assert_eq!(back, entries.map(OwnedEntry::from).to_vec());
        // Version 1 had no arrival kind and no causes.
        let err = decode_frame(&payload, 3, 0, 3, 1).unwrap_err();
        assert!(err.reason.contains("unknown record kind 4"), "{err}");

        let mut ahead = delivery(3, 1, Value::Unit);
        ahead.cause = Some(1);
        assert!(
            matches!(encode_frame([Entry::Delivery(&ahead)]), Err(EncodeError::Unencodable(r)) if r.contains("cause seq 1"))
        );
        let late = Entry::Arrival { tick: 3, seq: 1, unix_nanos: 0 };
        assert!(matches!(encode_frame([late]), Err(EncodeError::Unencodable(r)) if r.contains("seq 0")));

        // A cause code past seq 0, written by hand: kind, dt 0, ds 0, one
        // new empty string as topic, from and to, cause 1, shape unit.
        let bytes = [KIND_DELIVERY, 0, 0, 0, 0, 0, 0, 1, 0, TAG_UNIT];
        let err = decode_frame(&bytes[..], 0, 0, 1, VERSION).unwrap_err();
        assert!(err.reason.contains("cause 1 seqs before seq 0"), "{err}");
        // In version 1 that byte is a trace other than the tick.
        let err = decode_frame(&bytes[..], 0, 0, 1, 1).unwrap_err();
        assert!(err.reason.contains("version 1 trace"), "{err}");
    }
}
