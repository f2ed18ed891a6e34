//! How a frame's records are stored in its payload (format version 2,
//! docs/chronicle-format.md, "Payload packing"): a packing byte, then the
//! records as they are (`plain`) or one zstd frame of them with their length
//! (`zstd`). The writer packs with zstd when that is smaller, so a frame is
//! never stored larger than plain plus one byte. Version 1 payloads are the
//! records themselves.
//!
//! This module owns compression and nothing else: it knows nothing of
//! records, frame headers or files. Unpacking treats its input as hostile:
//! the declared length is bounded by [`PAYLOAD_BYTES_MAX`] before anything
//! is allocated, and the zstd frame must decompress to exactly that many
//! bytes.

use crate::format::{put_uvarint, Cursor, DecodeError, PAYLOAD_BYTES_MAX};

/// Packing byte: the records follow as they are.
pub const PACKING_PLAIN: u8 = 0;
/// Packing byte: `uvarint records_len`, then one zstd frame that
/// decompresses to exactly `records_len` bytes.
pub const PACKING_ZSTD: u8 = 1;

/// The zstd level the writer packs with by default: level 1 packs the
/// governance actors' frames as small as level 3 does (7.15 against 7.11
/// bytes a delivery, `metagov bench size`) for about 8 % less CPU of a whole
/// `simulate` run (docs/BENCHMARKS.md).
pub const ZSTD_LEVEL_DEFAULT: i32 = 1;

/// Packs frames for the writer, reusing one compression context and its
/// buffers from frame to frame. The default packs every frame plain.
#[derive(Default)]
pub struct Packer {
    /// `None`: every frame is stored plain.
    compressor: Option<zstd::bulk::Compressor<'static>>,
    compressed: Vec<u8>,
    packed: Vec<u8>,
}

impl std::fmt::Debug for Packer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packer").field("zstd", &self.compressor.is_some()).finish_non_exhaustive()
    }
}

impl Packer {
    /// A packer that tries zstd at `level` (`None`: plain only).
    ///
    /// # Errors
    ///
    /// zstd refused the level or could not allocate its context.
    pub fn new(zstd_level: Option<i32>) -> std::io::Result<Packer> {
        let compressor = zstd_level.map(zstd::bulk::Compressor::new).transpose()?;
        Ok(Packer { compressor, compressed: Vec::new(), packed: Vec::new() })
    }

    /// The stored payload for `records`: zstd-packed when that is smaller,
    /// else plain. Borrowed until the next call.
    pub fn pack(&mut self, records: &[u8]) -> &[u8] {
        self.packed.clear();
        if let Some(compressor) = &mut self.compressor {
            self.compressed.clear();
            self.compressed.reserve(zstd::zstd_safe::compress_bound(records.len()));
            // Invariant: zstd fails only on a destination smaller than
            // compress_bound, which was reserved above.
            compressor.compress_to_buffer(records, &mut self.compressed).expect("zstd compresses into compress_bound");
            self.packed.push(PACKING_ZSTD);
            put_uvarint(&mut self.packed, records.len() as u64);
            if self.packed.len() + self.compressed.len() < 1 + records.len() {
                self.packed.extend_from_slice(&self.compressed);
                return &self.packed;
            }
            self.packed.clear();
        }
        self.packed.push(PACKING_PLAIN);
        self.packed.extend_from_slice(records);
        &self.packed
    }
}

/// The records of a stored payload of a file of format `version`.
///
/// # Errors
///
/// An empty version-2 payload, an unknown packing byte, a declared length
/// above [`PAYLOAD_BYTES_MAX`], or a zstd frame that does not decompress to
/// exactly the declared length; offsets are the payload's.
pub fn unpack(mut payload: Vec<u8>, version: u16) -> Result<Vec<u8>, DecodeError> {
    if version < 2 {
        return Ok(payload);
    }
    let Some(&packing) = payload.first() else {
        return Err(DecodeError { offset: 0, reason: "empty payload: no packing byte".into() });
    };
    match packing {
        PACKING_PLAIN => {
            payload.drain(..1);
            Ok(payload)
        }
        PACKING_ZSTD => {
            let mut cursor = Cursor::at(&payload, 1);
            let declared = cursor.uvarint()?;
            if declared > u64::from(PAYLOAD_BYTES_MAX) {
                return Err(DecodeError {
                    offset: 1,
                    reason: format!("packed records of {declared} bytes exceed payload_bytes_max {PAYLOAD_BYTES_MAX}"),
                });
            }
            let start = cursor.pos();
            // Invariant: `declared` is at most PAYLOAD_BYTES_MAX (64 MiB), so it fits usize.
            let records = zstd::bulk::decompress(&payload[start..], declared as usize).map_err(|e| DecodeError {
                offset: start as u64,
                reason: format!("zstd frame does not decompress to {declared} bytes: {e}"),
            })?;
            if records.len() as u64 != declared {
                return Err(DecodeError {
                    offset: start as u64,
                    reason: format!("zstd frame decompresses to {} bytes, not the declared {declared}", records.len()),
                });
            }
            Ok(records)
        }
        other => Err(DecodeError { offset: 0, reason: format!("unknown packing byte {other}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetitive_records_pack_with_zstd_and_unpack() {
        let records: Vec<u8> = (0..4000u32).flat_map(|i| [1, 0, 1, (i % 7) as u8]).collect();
        let mut packer = Packer::new(Some(ZSTD_LEVEL_DEFAULT)).unwrap();
        let packed = packer.pack(&records).to_vec();
        assert_eq!(packed[0], PACKING_ZSTD);
        assert!(packed.len() < records.len() / 10, "{} bytes", packed.len());
        assert_eq!(unpack(packed, 2).unwrap(), records);
    }

    #[test]
    fn records_zstd_cannot_shrink_are_stored_plain() {
        let records = vec![1, 0, 0, 4];
        for level in [Some(ZSTD_LEVEL_DEFAULT), None] {
            let mut packer = Packer::new(level).unwrap();
            let packed = packer.pack(&records).to_vec();
            assert_eq!(packed, [PACKING_PLAIN, 1, 0, 0, 4]);
            assert_eq!(unpack(packed, 2).unwrap(), records);
        }
        assert_eq!(unpack(records.clone(), 1).unwrap(), records, "version 1 has no packing byte");
    }

    #[test]
    fn bad_packings_are_refused_with_the_reason() {
        let reason = |payload: Vec<u8>| unpack(payload, 2).unwrap_err().reason;
        assert!(reason(vec![]).contains("no packing byte"));
        assert!(reason(vec![7, 1]).contains("unknown packing byte 7"));
        let mut huge = vec![PACKING_ZSTD];
        put_uvarint(&mut huge, u64::from(PAYLOAD_BYTES_MAX) + 1);
        assert!(reason(huge).contains("exceed payload_bytes_max"));
        // A real zstd frame of 100 bytes, declared as 99 and as 101.
        let frame = zstd::bulk::compress(&[5u8; 100], 3).unwrap();
        for declared in [99u64, 101] {
            let mut payload = vec![PACKING_ZSTD];
            put_uvarint(&mut payload, declared);
            payload.extend_from_slice(&frame);
            assert!(reason(payload).contains(&format!("{declared}")), "declared {declared}");
        }
        let mut garbage = vec![PACKING_ZSTD, 10];
        garbage.extend_from_slice(b"not zstd at all");
        assert!(reason(garbage).contains("does not decompress"));
    }
}
