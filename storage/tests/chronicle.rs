//! The chronicle's integration tests: the seed-001 tests, a property test of
//! the writer/reader roundtrip, damage at every byte (truncation and flips),
//! and golden bytes (the spec's worked example and a checked-in v1 file).

/// Shared builders: contexts, values, entries, files.
mod support {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use metagov_bus::{CycleRecord, Envelope, Fixed, MetaFrame, OwnedEntry, Value};
    use metagov_storage::{entry_ref, init_session, Arch, ChronicleWriter, Environment, Os, RunContext, WriterOptions};

    /// A context with a fixed environment and producer, so files are the
    /// same bytes on every machine and every crate version.
    pub fn context() -> RunContext {
        let mut c = init_session(42, "[run]\nseed = 42\n", vec!["validator".into()]);
        c.environment = Environment { os: Os::Linux, arch: Arch::X86_64 };
        c.producer = "metagov 0.1.0".into();
        c
    }

    pub fn fixed(micros: i64) -> Value {
        Value::Fixed(Fixed::from_micros(micros))
    }

    pub fn record(fields: Vec<(&'static str, Value)>) -> Value {
        Value::Record(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn delivery(tick: u64, seq: u64, topic: &str, to: &str, payload: Value) -> OwnedEntry {
        OwnedEntry::Delivery(Envelope {
            tick,
            seq,
            topic: topic.into(),
            from: "ingress".into(),
            to: to.into(),
            cause: None,
            payload: Arc::new(payload),
        })
    }

    pub fn cycle(tick: u64, seq: u64, loss: i64, seed_state: u64) -> OwnedEntry {
        let record = CycleRecord {
            tick,
            phase: "train".into(),
            diagnostics: record(vec![("ema_reward", fixed(loss / 3)), ("windows", Value::Int(tick as i64))]),
            signature: [Fixed::from_micros(loss), Fixed::ZERO, Fixed::from_micros(loss.wrapping_neg())],
            loss: Fixed::from_micros(loss),
            coherence: Fixed::from_micros(1_000_000),
            action_code: if tick.is_multiple_of(2) { None } else { Some(7) },
            seed_state,
        };
        OwnedEntry::Cycle { tick, seq, record }
    }

    pub fn meta_frame(tick: u64, seq: u64) -> OwnedEntry {
        let frame = MetaFrame {
            cycle_id: tick / 4,
            tick,
            module: "learner".into(),
            diagnostics: record(vec![("drift", fixed(tick as i64 * 17))]),
            rng_seed: u64::MAX - tick,
            phase: "train".into(),
        };
        OwnedEntry::Frame { tick, seq, frame }
    }

    /// A telemetry-like stream: per tick a packet to the validator, an
    /// accepted copy to the learner, and every fourth tick a cycle record and
    /// a meta frame. Ticks are `2, 4, 6, …` so odd ticks are gaps.
    pub fn stream(ticks: u64) -> Vec<OwnedEntry> {
        let mut out = Vec::new();
        for t in 1..=ticks {
            let tick = 2 * t;
            let packet = record(vec![
                ("job", Value::Text(format!("job-{:03}", t % 3))),
                ("window", Value::Int(t as i64)),
                (
                    "metrics",
                    record(vec![
                        ("gain_p50", fixed(150_000 + 37 * t as i64)),
                        ("loss", fixed(2_310_000 - 1000 * t as i64)),
                    ]),
                ),
            ]);
            out.push(delivery(tick, 0, "telemetry.raw", "validator", packet.clone()));
            out.push(delivery(tick, 1, "telemetry.accepted", "learner", packet));
            if t.is_multiple_of(4) {
                out.push(cycle(tick, 1, 2_000_000 - t as i64, 8 * t));
                out.push(meta_frame(tick, 1));
            }
        }
        out
    }

    /// `entry`, a delivery, as published by `from` while handling the
    /// delivery at seq `cause` of the same tick.
    pub fn caused(entry: OwnedEntry, from: &str, cause: u64) -> OwnedEntry {
        let OwnedEntry::Delivery(mut e) = entry else { panic!("not a delivery: {entry:?}") };
        e.from = from.into();
        e.cause = Some(cause);
        OwnedEntry::Delivery(e)
    }

    /// [`stream`] as a live run records it (format version 2): each packet's
    /// arrival time after it, and the accepted copy caused by the packet's
    /// delivery to the validator.
    pub fn live_stream(ticks: u64) -> Vec<OwnedEntry> {
        let mut out = Vec::new();
        for entry in stream(ticks) {
            match entry {
                OwnedEntry::Delivery(ref e) if e.seq == 0 => {
                    let tick = e.tick;
                    out.push(entry);
                    out.push(OwnedEntry::Arrival { tick, seq: 0, unix_nanos: 1_796_126_400_000_000_000 + tick as i64 });
                }
                OwnedEntry::Delivery(ref e) if e.topic.as_ref() == "telemetry.accepted" => {
                    out.push(caused(entry, "validator", 0));
                }
                other => out.push(other),
            }
        }
        out
    }

    pub fn write_sealed(path: &Path, entries: &[OwnedEntry], options: WriterOptions) {
        let mut w = ChronicleWriter::create(path, &context(), options).unwrap();
        for e in entries {
            w.append(entry_ref(e)).unwrap();
        }
        w.seal().unwrap();
    }

    pub fn sealed_bytes(entries: &[OwnedEntry], options: WriterOptions) -> Vec<u8> {
        let mut w = ChronicleWriter::new(Vec::new(), &context(), options).unwrap();
        for e in entries {
            w.append(entry_ref(e)).unwrap();
        }
        w.seal().unwrap()
    }

    pub fn tick_of(e: &OwnedEntry) -> u64 {
        match e {
            OwnedEntry::Delivery(d) => d.tick,
            OwnedEntry::Cycle { tick, .. } | OwnedEntry::Frame { tick, .. } | OwnedEntry::Arrival { tick, .. } => *tick,
        }
    }

    pub fn in_range(entries: &[OwnedEntry], start: u64, end: u64) -> Vec<OwnedEntry> {
        entries.iter().filter(|e| (start..=end).contains(&tick_of(e))).cloned().collect()
    }

    pub fn temp_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// The in-memory chronicle's tests: append, compression round trip, replay of
/// a cycle's random stream, file integrity, range query, integrity hash.
mod seed_001 {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use metagov_bus::{ActorRng, CycleRecord, Fixed, OwnedEntry, Value};
    use metagov_storage::format::{FRAME_HEADER_BYTES, PREAMBLE_BYTES, VERSION};
    use metagov_storage::{
        crc64, decode_frame, encode_frame, entry_ref, replay_cycle, sha256_hex, verify_file, Chronicle, ChronicleError,
        ChronicleReader, ChronicleWriter, IntegrityStatus, Location, Tail, WriterOptions,
    };
    use sha2::{Digest, Sha256};

    use crate::support::*;

    const SMALL_FRAMES: WriterOptions = WriterOptions {
        frame_records_max: 7,
        frame_bytes_max: 1 << 20,
        zstd_level: Some(metagov_storage::packing::ZSTD_LEVEL_DEFAULT),
        tick_aligned: false,
    };

    #[test]
    fn test_chronicle_record_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut chronicle = Chronicle::new(context());
        let ticks = [(1, 0), (1, 0), (1, 3), (2, 0), (5, 9), (5, 9), (40, 1)];
        for (i, &(tick, seq)) in ticks.iter().enumerate() {
            let OwnedEntry::Cycle { record, .. } = cycle(tick, seq, i as i64, i as u64) else { unreachable!() };
            chronicle.record_cycle(tick, seq, record);
        }
        // An earlier (tick, seq) is a bug in the caller: the assertion holds in release too.
        let earlier = match cycle(5, 0, 0, 0) {
            OwnedEntry::Cycle { record, .. } => record,
            _ => unreachable!(),
        };
        let mut copy = chronicle.clone();
        assert!(catch_unwind(AssertUnwindSafe(|| copy.record_cycle(5, 0, earlier))).is_err());

        let path = dir.path().join("append.cmeta");
        chronicle.save_chronicle(&path, WriterOptions { frame_records_max: 3, ..WriterOptions::default() }).unwrap();
        let loaded = Chronicle::load_chronicle(&path).unwrap();
        assert_eq!(loaded.tail, Tail::Sealed);
        assert_eq!(loaded.records, chronicle.records);
        let positions: Vec<(u64, u64)> = loaded
            .records
            .iter()
            .map(|e| match e {
                OwnedEntry::Cycle { tick, seq, .. } => (*tick, *seq),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(positions, ticks);
        assert!(positions.windows(2).all(|w| w[0] <= w[1]), "monotonic");
        // Saving never replaces a chronicle.
        assert!(matches!(chronicle.save_chronicle(&path, WriterOptions::default()), Err(ChronicleError::Io { .. })));

        // The streaming writer keeps the same order, and a delivery may not repeat a position.
        let entries = stream(10);
        let mut w = ChronicleWriter::new(Vec::new(), &context(), SMALL_FRAMES).unwrap();
        for e in &entries {
            w.append(entry_ref(e)).unwrap();
        }
        assert_eq!(w.records_written(), entries.len() as u64);
        let repeat = entries[0].clone();
        assert!(catch_unwind(AssertUnwindSafe(|| w.append(entry_ref(&repeat)))).is_err());
    }

    #[test]
    fn test_chronicle_compression_roundtrip() {
        let every_variant = record(vec![
            ("unit", Value::Unit),
            ("yes", Value::Bool(true)),
            ("no", Value::Bool(false)),
            ("int", Value::Int(-5)),
            ("fixed", fixed(150_000)),
            ("text", Value::Text("καλημέρα 🌍 governance".into())),
            ("empty", Value::Text(String::new())),
            ("bytes", Value::Bytes(vec![0, 0xff, 0x80, 7])),
            ("no_bytes", Value::Bytes(vec![])),
            ("list", Value::List(vec![Value::Int(1), Value::Text("x".into()), Value::List(vec![])])),
            ("record", record(vec![])),
            ("", Value::Text("empty key".into())),
        ]);
        let extremes =
            |a: i64, b: i64| record(vec![("i", Value::Int(a)), ("f", fixed(b)), ("s", Value::Text(String::new()))]);
        let mut entries = vec![delivery(0, 0, "", "", every_variant.clone()), delivery(0, 1, "t", "ü", every_variant)];
        for (i, (a, b)) in
            [(i64::MIN, i64::MAX), (i64::MAX, i64::MIN), (0, -1), (i64::MIN, i64::MIN), (-1, 1)].into_iter().enumerate()
        {
            entries.push(delivery(1, i as u64, "telemetry.raw", "validator", extremes(a, b)));
        }
        entries.push(OwnedEntry::Arrival { tick: u64::MAX, seq: 0, unix_nanos: i64::MIN });
        entries.push(cycle(u64::MAX, 0, i64::MIN, u64::MAX));
        entries.push(meta_frame(u64::MAX, 0));
        let mut cause_extreme = delivery(u64::MAX, u64::MAX, "x", "y", Value::Unit);
        if let OwnedEntry::Delivery(e) = &mut cause_extreme {
            e.cause = Some(0);
        }
        entries.push(cause_extreme);

        let payload = encode_frame(entries.iter().map(entry_ref)).unwrap();
        let decoded = decode_frame(&payload, 0, 0, entries.len() as u32, VERSION).unwrap();
        assert_eq!(decoded, entries);
        // Bitwise: the decoded records encode to the very same bytes.
        assert_eq!(encode_frame(decoded.iter().map(entry_ref)).unwrap(), payload);
        // Decoding with the wrong record count or first position is corruption, not a panic.
        assert!(decode_frame(&payload, 0, 0, entries.len() as u32 - 1, VERSION).is_err());
        assert!(decode_frame(&payload, 0, 0, entries.len() as u32 + 1, VERSION).is_err());
        assert!(decode_frame(&payload, 1, 0, entries.len() as u32, VERSION).is_err());
    }

    #[test]
    fn test_deterministic_replay() {
        let dir = tempfile::tempdir().unwrap();
        let seed = 42;
        let mut rng = ActorRng::for_actor(seed, "learner");
        let mut chronicle = Chronicle::new(context());
        let mut drawn = Vec::new();
        for cycle_no in 0..20u64 {
            let seed_state = rng.state().word_pos as u64;
            let draws = [rng.next_u64(), rng.next_u64(), rng.below(1000)];
            rng.next_f64();
            drawn.push(draws);
            let record = CycleRecord {
                tick: cycle_no,
                phase: "train".into(),
                diagnostics: Value::List(draws.iter().map(|&d| Value::Int(d as i64)).collect()),
                signature: [Fixed::ZERO; 3],
                loss: Fixed::from_micros(cycle_no as i64),
                coherence: Fixed::ZERO,
                action_code: None,
                seed_state,
            };
            chronicle.record_cycle(cycle_no, 0, record);
        }
        let path = dir.path().join("replay.cmeta");
        chronicle.save_chronicle(&path, SMALL_FRAMES).unwrap();
        let loaded = Chronicle::load_chronicle(&path).unwrap();
        for (entry, expected) in loaded.records.iter().zip(&drawn) {
            let OwnedEntry::Cycle { record, .. } = entry else { panic!("not a cycle record: {entry:?}") };
            let mut state = replay_cycle(record, seed, "learner");
            assert_eq!(state.tick, record.tick);
            let again = [state.rng.next_u64(), state.rng.next_u64(), state.rng.below(1000)];
            assert_eq!(&again, expected, "cycle {}", record.tick);
            assert_eq!(record.diagnostics, Value::List(again.iter().map(|&d| Value::Int(d as i64)).collect()));
        }
        assert_eq!(loaded.records.len(), drawn.len());
    }

    #[test]
    fn test_file_integrity() {
        assert_eq!(crc64(b"123456789"), 0x995d_c9bb_df19_39fa, "CRC-64/XZ check value");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("good.cmeta");
        let entries = stream(12);
        write_sealed(&path, &entries, SMALL_FRAMES);
        let report = verify_file(&path).unwrap();
        assert_eq!(report.status, IntegrityStatus::Sealed);
        assert_eq!(report.records, entries.len() as u64);
        assert_eq!(report.bytes, std::fs::metadata(&path).unwrap().len());

        let reader = ChronicleReader::open(&path).unwrap();
        let frame_1 = reader.frames().unwrap()[1];
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(frame_1.offset + FRAME_HEADER_BYTES + 5) as usize] ^= 0x10;
        let bad = temp_file(&dir, "bad.cmeta", &bytes);
        let report = verify_file(&bad).unwrap();
        let IntegrityStatus::Corrupt { location, offset, reason } = &report.status else { panic!("{report:?}") };
        assert_eq!((*location, *offset), (Location::Frame(1), frame_1.offset));
        assert!(reason.contains("payload CRC"), "{reason}");
        assert_eq!(report.frames, 1, "frame 0 still checks");
        // Reading the damaged frame is an error naming it; nothing is made up.
        let reader = ChronicleReader::open(&bad).unwrap();
        let err = reader.records().find_map(Result::err).unwrap();
        assert!(matches!(err, ChronicleError::Corrupt { location: Location::Frame(1), .. }), "{err}");
        assert!(err.to_string().contains("frame 1"), "{err}");
    }

    #[test]
    fn test_query_range() {
        let dir = tempfile::tempdir().unwrap();
        let entries = stream(30); // ticks 2..=60, frames of 7 records
        let sealed = dir.path().join("sealed.cmeta");
        write_sealed(&sealed, &entries, SMALL_FRAMES);

        let unsealed = dir.path().join("unsealed.cmeta");
        let mut w = ChronicleWriter::create(&unsealed, &context(), SMALL_FRAMES).unwrap();
        for e in &entries {
            w.append(entry_ref(e)).unwrap();
        }
        w.flush().unwrap();
        drop(w);

        let mut torn_bytes = std::fs::read(&unsealed).unwrap();
        let last = ChronicleReader::open(&unsealed).unwrap().frames().unwrap().last().copied().unwrap();
        torn_bytes.truncate(last.offset as usize + 100);
        let torn = temp_file(&dir, "torn.cmeta", &torn_bytes);

        let frames = ChronicleReader::open(&sealed).unwrap().frames().unwrap();
        let f2 = frames[2];
        let ranges = [
            (f2.first_tick, f2.first_tick),              // inside one frame
            (f2.first_tick, f2.last_tick),               // exactly one frame
            (frames[1].last_tick, frames[4].first_tick), // across frames
            (3, 3),                                      // a gap between ticks: empty
            (10, 9),                                     // start after end: empty
            (0, 1),                                      // before the first tick
            (59, 1000),                                  // runs past the end
            (61, u64::MAX),                              // entirely past the end
            (0, u64::MAX),                               // everything
        ];
        for (path, tail) in [
            (&sealed, Tail::Sealed),
            (&unsealed, Tail::Unsealed),
            (&torn, Tail::Torn { offset: last.offset, dropped_bytes: 100 }),
        ] {
            let reader = ChronicleReader::open(path).unwrap();
            assert_eq!(reader.tail(), &tail);
            let kept: Vec<OwnedEntry> = reader.records().collect::<Result<_, _>>().unwrap();
            assert_eq!(kept[..], entries[..kept.len()]);
            let in_memory = Chronicle::load_chronicle(path).unwrap();
            for (start, end) in ranges {
                let got = reader.query_range(start, end).unwrap();
                assert_eq!(got, in_range(&kept, start, end), "{tail:?} {start}..={end}");
                assert_eq!(in_memory.query_range(start, end), &got[..]);
            }
        }
        assert!(ChronicleReader::open(&torn).unwrap().record_count() < entries.len() as u64);
        assert!(ChronicleReader::open(&sealed).unwrap().query_range(3, 3).unwrap().is_empty());
    }

    #[test]
    fn test_integrity_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hash.cmeta");
        write_sealed(&path, &stream(20), SMALL_FRAMES);
        let bytes = std::fs::read(&path).unwrap();
        let reader = ChronicleReader::open(&path).unwrap();
        assert_eq!(reader.context().config_sha256, sha256_hex(reader.context().config_text.as_bytes()));

        // The chain, recomputed from the bytes by hand.
        let header_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let header_end = PREAMBLE_BYTES as usize + header_len + 8;
        let mut chain: [u8; 32] = Sha256::digest(&bytes[..header_end]).into();
        for f in reader.frames().unwrap() {
            let at = f.offset as usize;
            let mut h = Sha256::new();
            h.update(chain);
            h.update(&bytes[at..at + 56]);
            chain = h.finalize().into();
            assert_eq!(chain[..], bytes[at + 56..at + 88]);
        }
        let hex: String = chain.iter().map(|b| format!("{b:02x}")).collect();
        let footer = &bytes[bytes.len() - 64..];
        assert_eq!(footer[24..56], chain, "footer chain head");
        assert_eq!(verify_file(&path).unwrap().chain_head, hex);

        // Edit one config byte and fix up the header CRC: the SHA check still catches it.
        let body = PREAMBLE_BYTES as usize..PREAMBLE_BYTES as usize + header_len;
        let at = body.start + bytes[body.clone()].windows(9).position(|w| w == b"seed = 42").unwrap() + 7;
        let mut edited = bytes.clone();
        edited[at] = b'3';
        let crc = crc64(&edited[body.clone()]);
        edited[body.end..body.end + 8].copy_from_slice(&crc.to_le_bytes());
        let edited_path = temp_file(&dir, "edited.cmeta", &edited);
        let report = verify_file(&edited_path).unwrap();
        let IntegrityStatus::Corrupt { location: Location::Header, offset: 0, reason } = &report.status else {
            panic!("{report:?}")
        };
        assert!(reason.contains("config_sha256"), "{reason}");
        let err = ChronicleReader::open(&edited_path).unwrap_err();
        assert!(matches!(err, ChronicleError::Corrupt { location: Location::Header, .. }), "{err}");
    }
}

/// The writer as the bus's journal, and its behaviour on refusal and failure.
mod writer {
    use std::cell::RefCell;
    use std::io::{self, Write};
    use std::rc::Rc;

    use metagov_bus::{Actor, Bus, BusLimits, CycleRecord, Envelope, Fixed, MemoryJournal, Outbox, OwnedEntry, Value};
    use metagov_storage::{entry_ref, ChronicleError, ChronicleReader, ChronicleWriter, Tail, WriterOptions};

    use crate::support::*;

    /// Echoes every packet to `out` and records a cycle every other tick.
    struct Echo;

    impl Actor for Echo {
        fn subscriptions(&self) -> Vec<String> {
            vec!["in".into()]
        }
        fn handle(&mut self, envelope: &Envelope, out: &mut Outbox<'_>) {
            out.publish("out", (*envelope.payload).clone());
            if envelope.tick.is_multiple_of(2) {
                let seed_state = out.rng().state().word_pos as u64;
                let draw = out.rng().below(100) as i64;
                out.record_cycle(CycleRecord {
                    tick: envelope.tick,
                    phase: "train".into(),
                    diagnostics: Value::Int(draw),
                    signature: [Fixed::ZERO; 3],
                    loss: Fixed::from_micros(draw),
                    coherence: Fixed::ZERO,
                    action_code: None,
                    seed_state,
                });
            }
        }
    }

    fn run<J: metagov_bus::Journal>(journal: J) -> J {
        let mut bus = Bus::new(7, BusLimits::default(), journal);
        bus.add_actor("echo", Box::new(Echo)).unwrap();
        bus.allow_ingress("in").unwrap();
        for i in 0..50 {
            bus.ingress("in", record(vec![("i", Value::Int(i)), ("x", fixed(i * 1001))])).unwrap();
        }
        bus.into_journal()
    }

    #[test]
    fn the_bus_journals_through_the_writer() {
        let expected = run(MemoryJournal::new(1 << 20)).entries;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.cmeta");
        let options = WriterOptions { frame_records_max: 16, ..WriterOptions::default() };
        let mut writer = run(ChronicleWriter::create(&path, &context(), options).unwrap());
        metagov_bus::Journal::flush(&mut writer).unwrap();
        let reader = ChronicleReader::open(&path).unwrap();
        assert_eq!(reader.tail(), &Tail::Unsealed);
        let got: Vec<OwnedEntry> = reader.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(got, expected);
        assert_eq!(got.len(), 50 * 2 + 25);
        writer.seal().unwrap();
        assert_eq!(ChronicleReader::open(&path).unwrap().tail(), &Tail::Sealed);
    }

    #[test]
    fn a_record_the_format_cannot_hold_is_refused_and_the_writer_goes_on() {
        let mut deep = Value::Unit;
        for _ in 0..40 {
            deep = Value::List(vec![deep]);
        }
        let entries = stream(3);
        let mut w = ChronicleWriter::new(Vec::new(), &context(), WriterOptions::default()).unwrap();
        w.append(entry_ref(&entries[0])).unwrap();
        let refused = delivery(2, 1, "x", "y", deep);
        let err = w.append(entry_ref(&refused)).unwrap_err();
        assert!(matches!(err, ChronicleError::Unencodable { tick: 2, seq: 1, .. }), "{err}");
        for e in &entries[1..] {
            w.append(entry_ref(e)).unwrap();
        }
        let bytes = w.seal().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let reader = ChronicleReader::open(temp_file(&dir, "refused.cmeta", &bytes)).unwrap();
        assert_eq!(reader.records().collect::<Result<Vec<_>, _>>().unwrap(), entries);
    }

    /// A file on a disk of `capacity` bytes: a write past it fails with
    /// ENOSPC after writing what fits; truncating frees the space again.
    struct SmallDisk {
        file: std::fs::File,
        capacity: u64,
    }

    impl Write for SmallDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            use std::io::Seek;
            let at = self.file.stream_position()?;
            let room = self.capacity.saturating_sub(at) as usize;
            if room == 0 {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            self.file.write(&buf[..buf.len().min(room)])
        }
        fn flush(&mut self) -> io::Result<()> {
            self.file.flush()
        }
    }

    impl io::Seek for SmallDisk {
        fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
            self.file.seek(to)
        }
    }

    impl metagov_storage::SetLen for SmallDisk {
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            self.file.set_len(len)
        }
    }

    /// Issue 9, item 15: a full disk stops the writer; what it wrote is
    /// then sealed (the torn tail dropped, index and footer written in the
    /// space that frees), so the file verifies as sealed with every whole frame.
    #[test]
    fn a_full_disk_stops_the_writer_and_what_was_written_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.cmeta");
        // Plain frames of 64 records (about 1.3 KB): larger than the index
        // and footer, so cutting the torn one frees room for them. (Packed
        // frames of this stream are a few hundred bytes, and the seal needs
        // 40 bytes of index per frame: on a full disk, sealing is best effort.)
        let entries = stream(200);
        let options = WriterOptions { frame_records_max: 64, zstd_level: None, ..WriterOptions::default() };
        let disk = SmallDisk { file: std::fs::File::create(&path).unwrap(), capacity: 6000 };
        let mut writer = ChronicleWriter::new(io::BufWriter::new(disk), &context(), options).unwrap();
        let failed = entries.iter().position(|e| writer.append(entry_ref(e)).is_err());
        let failed = failed.expect("the disk fills before the stream ends");
        assert!(writer.append(entry_ref(&entries[failed])).is_err(), "a failed writer stays failed");
        writer.seal_written().expect("the whole frames are sealed");
        let report = metagov_storage::verify_file(&path).unwrap();
        assert!(matches!(report.status, metagov_storage::IntegrityStatus::Sealed), "{report:?}");
        let reader = ChronicleReader::open(&path).unwrap();
        assert_eq!(reader.tail(), &Tail::Sealed);
        let kept: Vec<OwnedEntry> = reader.records().collect::<Result<_, _>>().unwrap();
        assert!(!kept.is_empty() && kept.len() < failed + 1, "{} kept of {failed}", kept.len());
        assert_eq!(kept[..], entries[..kept.len()], "a prefix, in order");
    }

    /// Accepts `budget` bytes into a shared buffer, then fails every write.
    struct Failing {
        written: Rc<RefCell<Vec<u8>>>,
        budget: usize,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut written = self.written.borrow_mut();
            let n = buf.len().min(self.budget - written.len());
            if n == 0 {
                return Err(io::Error::other("disk full"));
            }
            written.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_stops_the_writer_and_leaves_a_readable_prefix() {
        let entries = stream(20);
        let written = Rc::new(RefCell::new(Vec::new()));
        let sink = Failing { written: written.clone(), budget: 1200 };
        let options = WriterOptions { frame_records_max: 5, ..WriterOptions::default() };
        let mut w = ChronicleWriter::new(sink, &context(), options).unwrap();
        let failed_at = entries.iter().position(|e| w.append(entry_ref(e)).is_err()).unwrap();
        let err = w.append(entry_ref(&entries[failed_at + 1])).unwrap_err();
        assert!(matches!(err, ChronicleError::WriterFailed { .. }), "{err}");
        assert!(w.flush().is_err());
        assert!(w.seal().is_err());
        // What reached the sink is a chronicle: the whole frames, then a torn tail.
        let dir = tempfile::tempdir().unwrap();
        let reader = ChronicleReader::open(temp_file(&dir, "failed.cmeta", &written.borrow())).unwrap();
        assert!(matches!(reader.tail(), Tail::Torn { .. }), "{:?}", reader.tail());
        let kept: Vec<OwnedEntry> = reader.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(kept.len() % 5, 0);
        assert!(!kept.is_empty() && kept.len() <= failed_at);
        assert_eq!(kept[..], entries[..kept.len()]);
    }
}

/// Any sequence of records survives writer and reader bit for bit.
mod roundtrip {
    use std::borrow::Cow;
    use std::sync::Arc;

    use metagov_bus::{CycleRecord, Envelope, Fixed, MetaFrame, OwnedEntry, Value};
    use metagov_storage::format::VERSION;
    use metagov_storage::{
        check_frame, decode_frame, encode_frame, entry_ref, verify_file, ChronicleReader, ChronicleWriter,
        IntegrityStatus, Tail, WriterOptions,
    };
    use proptest::prelude::*;

    use crate::support::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[ab]{1,2}", "\\PC{0,8}"]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Unit),
            any::<bool>().prop_map(Value::Bool),
            prop_oneof![-3i64..3, any::<i64>()].prop_map(Value::Int),
            prop_oneof![-3i64..3, any::<i64>()].prop_map(|m| Value::Fixed(Fixed::from_micros(m))),
            text().prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..6).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 24, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::List),
                proptest::collection::vec(("[a-c]{0,2}", inner), 0..5)
                    .prop_map(|fields| Value::Record(fields.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect())),
            ]
        })
    }

    /// (kind, tick step, seq step, names, cause offset, value, number)
    type Step = (u8, u64, u64, (String, String, String), i64, Value, u64);

    fn step() -> impl Strategy<Value = Step> {
        (
            0u8..4,
            prop_oneof![4 => Just(0u64), 2 => 1u64..3, 1 => any::<u32>().prop_map(u64::from)],
            prop_oneof![0u64..3, any::<u32>().prop_map(u64::from)],
            (text(), text(), text()),
            prop_oneof![Just(0i64), -2i64..2, any::<i64>()],
            value(),
            any::<u64>(),
        )
    }

    /// Turns random steps into entries that keep journal order.
    fn entries(steps: Vec<Step>) -> Vec<OwnedEntry> {
        let (mut tick, mut seq) = (0u64, 0u64);
        let mut last_delivery: Option<(u64, u64)> = None;
        let mut out = Vec::new();
        for (kind, dt, ds, (topic, from, to), trace, value, n) in steps {
            tick += dt;
            seq = if dt == 0 { seq + ds } else { ds };
            // A tick's arrival record sits at seq 0, right where its
            // ingress is: only a step that opens a tick can make one.
            let kind = if kind == 3 && (dt == 0 || seq != 0) { 2 } else { kind };
            out.push(match kind {
                0 => {
                    if last_delivery.is_some_and(|last| (tick, seq) <= last) {
                        seq += 1;
                    }
                    last_delivery = Some((tick, seq));
                    OwnedEntry::Delivery(Envelope {
                        tick,
                        seq,
                        topic: topic.into(),
                        from: from.into(),
                        to: to.into(),
                        // Any seq before this one, or none.
                        cause: (seq > 0 && trace != 0).then(|| seq - 1 - trace.unsigned_abs() % seq),
                        payload: Arc::new(value),
                    })
                }
                1 => OwnedEntry::Cycle {
                    tick,
                    seq,
                    record: CycleRecord {
                        tick: n,
                        phase: topic,
                        diagnostics: value,
                        signature: [Fixed::from_micros(n as i64), Fixed::from_micros(trace), Fixed::ZERO],
                        loss: Fixed::from_micros(trace.wrapping_mul(3)),
                        coherence: Fixed::from_micros(-(n as i64)),
                        action_code: (!n.is_multiple_of(3)).then_some(n as u8),
                        seed_state: n.rotate_left(7),
                    },
                },
                3 => OwnedEntry::Arrival { tick, seq, unix_nanos: trace },
                _ => OwnedEntry::Frame {
                    tick,
                    seq,
                    frame: MetaFrame {
                        cycle_id: n,
                        tick: n ^ 5,
                        module: from,
                        diagnostics: value,
                        rng_seed: !n,
                        phase: to,
                    },
                },
            });
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn any_records_roundtrip_through_writer_and_reader(
            steps in proptest::collection::vec(step(), 0..40),
            frame_records_max in 1u32..6,
            frame_bytes_max in 1u32..300,
            query in (0u64..8, 0u64..8),
        ) {
            let entries = entries(steps);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("prop.cmeta");
            let options = WriterOptions { frame_records_max, frame_bytes_max, ..WriterOptions::default() };
            let mut w = ChronicleWriter::create(&path, &context(), options).unwrap();
            for e in &entries {
                w.append(entry_ref(e)).unwrap();
            }
            w.seal().unwrap();

            let reader = ChronicleReader::open(&path).unwrap();
            prop_assert_eq!(reader.tail(), &Tail::Sealed);
            prop_assert_eq!(reader.record_count(), entries.len() as u64);
            let back: Vec<OwnedEntry> = reader.records().collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(&back, &entries);
            let report = verify_file(&path).unwrap();
            prop_assert_eq!(report.status, IntegrityStatus::Sealed);
            prop_assert_eq!(report.frames, reader.frame_count());
            // Query around the ticks that occur.
            let ticks: Vec<u64> = entries.iter().map(tick_of).collect();
            let pick = |i: u64| ticks.get(i as usize % ticks.len().max(1)).copied().unwrap_or(i);
            let (start, end) = (pick(query.0), pick(query.1));
            prop_assert_eq!(reader.query_range(start, end).unwrap(), in_range(&entries, start, end));
        }

        /// `check_frame` (what verify runs) accepts and refuses exactly what
        /// `decode_frame` does, with the same error, on valid payloads and on
        /// the same payloads with one byte changed.
        #[test]
        fn check_frame_agrees_with_decode_frame(
            steps in proptest::collection::vec(step(), 1..30),
            flip in any::<(u16, u8)>(),
        ) {
            let entries = entries(steps);
            let payload = encode_frame(entries.iter().map(entry_ref)).unwrap();
            let first = entries[0].at();
            let count = entries.len() as u32;
            let mut damaged = payload.clone();
            let at = usize::from(flip.0) % damaged.len();
            damaged[at] ^= flip.1.max(1);
            for bytes in [&payload, &damaged] {
                let decoded =
                    decode_frame(bytes, first.0, first.1, count, VERSION).map(|r| r.last().map(OwnedEntry::at));
                prop_assert_eq!(check_frame(bytes, first.0, first.1, count, VERSION), decoded);
            }
        }
    }
}

/// Damage at every byte of a small sealed chronicle: a cut keeps exactly the
/// whole frames before it; a flipped byte is corruption, located.
mod damage {
    use metagov_bus::OwnedEntry;
    use metagov_storage::format::{FOOTER_BYTES, PREAMBLE_BYTES, VERSION};
    use metagov_storage::{
        verify_file, ChronicleError, ChronicleReader, FrameInfo, IntegrityStatus, Location, Tail, WriterOptions,
    };

    use crate::support::*;

    struct Layout {
        bytes: Vec<u8>,
        entries: Vec<OwnedEntry>,
        header_end: u64,
        frames: Vec<FrameInfo>,
        /// End of each frame.
        ends: Vec<u64>,
        /// Records in each frame.
        counts: Vec<usize>,
        index_offset: u64,
        footer_offset: u64,
    }

    /// Three frames of four, four and two records.
    fn small_sealed() -> Layout {
        let entries = stream(4);
        let options = WriterOptions { frame_records_max: 4, ..WriterOptions::default() };
        let bytes = sealed_bytes(&entries, options);
        let dir = tempfile::tempdir().unwrap();
        let reader = ChronicleReader::open(temp_file(&dir, "small.cmeta", &bytes)).unwrap();
        let frames = reader.frames().unwrap();
        assert_eq!(frames.len(), 3);
        let header_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as u64;
        let footer_offset = bytes.len() as u64 - FOOTER_BYTES;
        let index_offset = footer_offset - 16 - 40 * frames.len() as u64;
        let ends: Vec<u64> = frames.iter().skip(1).map(|f| f.offset).chain([index_offset]).collect();
        Layout {
            bytes,
            entries,
            header_end: PREAMBLE_BYTES + header_len + 8,
            frames,
            ends,
            counts: vec![4, 4, 2],
            index_offset,
            footer_offset,
        }
    }

    #[test]
    fn a_cut_at_every_offset_keeps_exactly_the_whole_frames_before_it() {
        let l = small_sealed();
        let dir = tempfile::tempdir().unwrap();
        for cut in 0..=l.bytes.len() as u64 {
            let path = temp_file(&dir, "cut.cmeta", &l.bytes[..cut as usize]);
            if cut < l.header_end {
                let err = ChronicleReader::open(&path).unwrap_err();
                assert!(matches!(err, ChronicleError::TornHeader { needed, .. } if needed > cut), "cut {cut}: {err}");
                assert!(err.to_string().contains("torn inside its header"), "{err}");
                assert!(matches!(verify_file(&path), Err(ChronicleError::TornHeader { .. })), "cut {cut}");
                continue;
            }
            let whole = l.ends.iter().filter(|&&end| end <= cut).count();
            let kept_end = if whole == 0 { l.header_end } else { l.ends[whole - 1] };
            let expected_tail = if cut == l.bytes.len() as u64 {
                Tail::Sealed
            } else if cut == kept_end {
                Tail::Unsealed
            } else {
                Tail::Torn { offset: kept_end, dropped_bytes: cut - kept_end }
            };
            let reader = ChronicleReader::open(&path).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            assert_eq!(reader.tail(), &expected_tail, "cut {cut}");
            assert_eq!(reader.frame_count() as usize, whole, "cut {cut}");
            let records: usize = l.counts[..whole].iter().sum();
            let mut stream = reader.records();
            let got: Vec<OwnedEntry> = stream.by_ref().collect::<Result<_, _>>().unwrap();
            assert_eq!(got[..], l.entries[..records], "cut {cut}");
            assert_eq!(reader.query_range(0, u64::MAX).unwrap(), got, "cut {cut}");
            let report = verify_file(&path).unwrap();
            let expected_status = match expected_tail {
                Tail::Sealed => IntegrityStatus::Sealed,
                Tail::Unsealed => IntegrityStatus::Unsealed,
                Tail::Torn { offset, dropped_bytes } => IntegrityStatus::Torn { offset, dropped_bytes },
                Tail::Corrupt { .. } => panic!("cut {cut}: a cut is never corruption"),
            };
            assert_eq!(report.status, expected_status, "cut {cut}");
            assert_eq!(stream.status(), Some(&expected_status), "cut {cut}: the readers' verdict is verify's");
            assert_eq!((report.frames as usize, report.records as usize), (whole, records), "cut {cut}");
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_is_corruption_at_its_structure() {
        let l = small_sealed();
        let dir = tempfile::tempdir().unwrap();
        for at in 0..l.bytes.len() as u64 {
            let (location, offset) = if at < l.header_end {
                (Location::Header, 0)
            } else if at < l.index_offset {
                let k = l.ends.iter().position(|&end| at < end).unwrap();
                (Location::Frame(k as u32), l.frames[k].offset)
            } else if at < l.footer_offset {
                (Location::Index, l.index_offset)
            } else {
                (Location::Footer, l.footer_offset)
            };
            for mask in [0xff, 0x01] {
                let mut bytes = l.bytes.clone();
                bytes[at as usize] ^= mask;
                let path = temp_file(&dir, "flip.cmeta", &bytes);
                let report = verify_file(&path);
                // Whatever else happens, reading never panics and never invents records.
                if let Ok(reader) = ChronicleReader::open(&path) {
                    let mut records = reader.records();
                    records.by_ref().for_each(drop);
                    // Every reader gives verify's verdict.
                    if let Ok(report) = &report {
                        assert_eq!(records.status(), Some(&report.status), "byte {at} ^ {mask:#x}");
                    }
                    let _ = reader.query_range(0, u64::MAX);
                    let _ = reader.frames();
                }
                if at < 4 {
                    assert!(
                        matches!(report, Err(ChronicleError::NotAChronicle { .. })),
                        "byte {at} ^ {mask:#x}: {report:?}"
                    );
                    continue;
                }
                let report = report.unwrap_or_else(|e| panic!("byte {at} ^ {mask:#x}: {e}"));
                match &report.status {
                    IntegrityStatus::Corrupt { location: l2, offset: o2, .. } => {
                        assert_eq!((*l2, *o2), (location, offset), "byte {at} ^ {mask:#x}: {report:?}")
                    }
                    other => panic!("byte {at} ^ {mask:#x}: {other:?}"),
                }
                if location == Location::Header {
                    assert!(ChronicleReader::open(&path).is_err(), "byte {at}");
                }
            }
        }
    }

    #[test]
    fn garbage_and_other_versions_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = temp_file(&dir, "text.cmeta", b"[run]\nseed = 42\n not a chronicle at all");
        assert!(matches!(
            ChronicleReader::open(&path),
            Err(ChronicleError::NotAChronicle { found: [0x5b, 0x72, 0x75, 0x6e], .. })
        ));
        let mut bytes = small_sealed().bytes;
        for version in [0u16, VERSION + 1] {
            bytes[4..6].copy_from_slice(&version.to_le_bytes());
            let crc = metagov_storage::crc64(&bytes[0..12]);
            bytes[12..20].copy_from_slice(&crc.to_le_bytes());
            let path = temp_file(&dir, "other-version.cmeta", &bytes);
            let err = ChronicleReader::open(&path).unwrap_err();
            assert!(matches!(err, ChronicleError::UnsupportedVersion { version: v, .. } if v == version), "{err}");
            assert!(err.to_string().contains(&format!("version {version}")), "{err}");
        }
        let empty = temp_file(&dir, "empty.cmeta", b"");
        assert!(matches!(ChronicleReader::open(&empty), Err(ChronicleError::TornHeader { file_len: 0, .. })));
    }
}

/// Issue 9's damaged files: every reader reads the intact prefix, checks
/// each frame against the run header, and gives verify's verdict.
mod readers {
    use metagov_bus::OwnedEntry;
    use metagov_storage::format::{chain_anchor, encode_header, Footer, FrameHeader, FOOTER_BYTES, PREAMBLE_BYTES};
    use metagov_storage::{
        entry_ref, init_session, verify_file, Arch, ChronicleError, ChronicleReader, ChronicleWriter, Environment,
        IntegrityStatus, Location, Os, RunContext, Tail, WriterOptions,
    };

    use crate::support::*;

    fn context_seeded(seed: u64) -> RunContext {
        let mut c = init_session(seed, &format!("[run]\nseed = {seed}\n"), vec!["validator".into()]);
        c.environment = Environment { os: Os::Linux, arch: Arch::X86_64 };
        c.producer = "metagov 0.1.0".into();
        c
    }

    /// A sealed file of `stream(ticks)` under `ctx`, four records a frame.
    fn sealed_with(ctx: &RunContext, ticks: u64) -> Vec<u8> {
        let options = WriterOptions { frame_records_max: 4, ..WriterOptions::default() };
        let mut w = ChronicleWriter::new(Vec::new(), ctx, options).unwrap();
        for e in &stream(ticks) {
            w.append(entry_ref(e)).unwrap();
        }
        w.seal().unwrap()
    }

    fn header_end(bytes: &[u8]) -> usize {
        PREAMBLE_BYTES as usize + u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize + 8
    }

    /// Applies `edit` to every frame header of a sealed file, then
    /// recomputes every header CRC, every chain link from the run header on,
    /// and the footer: a forgery every CRC and link vouches for.
    fn rechain(bytes: &mut [u8], mut edit: impl FnMut(&mut FrameHeader)) {
        let footer_at = bytes.len() - FOOTER_BYTES as usize;
        let mut footer = Footer::from_bytes(bytes[footer_at..].try_into().unwrap()).unwrap();
        let mut chain = chain_anchor(&bytes[..header_end(bytes)]);
        let mut offset = header_end(bytes);
        while offset < footer.index_offset as usize {
            let mut h = FrameHeader::from_bytes(bytes[offset..offset + 96].try_into().unwrap()).unwrap();
            let next = offset + 96 + h.payload_len as usize;
            edit(&mut h);
            h.chain = h.expected_chain(&chain);
            chain = h.chain;
            bytes[offset..offset + 96].copy_from_slice(&h.to_bytes());
            offset = next;
        }
        footer.chain_head = chain;
        bytes[footer_at..].copy_from_slice(&footer.to_bytes());
    }

    /// Every record a full read yields, the error it ends with, and its verdict.
    fn read_all(reader: &ChronicleReader) -> (Vec<OwnedEntry>, Option<ChronicleError>, IntegrityStatus) {
        let mut records = reader.records();
        let (mut got, mut error) = (Vec::new(), None);
        for r in records.by_ref() {
            match r {
                Ok(e) => got.push(e),
                Err(e) => error = Some(e),
            }
        }
        (got, error, records.status().cloned().expect("a finished read has a verdict"))
    }

    fn corrupt_at(status: &IntegrityStatus) -> (Location, u64) {
        match status {
            IntegrityStatus::Corrupt { location, offset, .. } => (*location, *offset),
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn a_frame_running_past_the_index_of_a_sealed_file_is_corrupt_at_the_frame_not_torn() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = sealed_with(&context_seeded(42), 4);
        let frame0 = header_end(&bytes) as u64;
        rechain(&mut bytes, |h| {
            if h.frame_index == 0 {
                h.payload_len = 64 << 20;
            }
        });
        let path = temp_file(&dir, "long.cmeta", &bytes);
        let report = verify_file(&path).unwrap();
        assert_eq!(corrupt_at(&report.status), (Location::Frame(0), frame0), "{}", report.status);
        assert!(report.status.to_string().contains("past the index block"), "{}", report.status);
        let reader = ChronicleReader::open(&path).unwrap();
        let (got, error, status) = read_all(&reader);
        assert!(got.is_empty() && error.is_some());
        assert_eq!(status, report.status, "records() gives verify's verdict");
        match reader.query_range(0, u64::MAX).unwrap_err() {
            ChronicleError::Corrupt { location, offset, .. } => {
                assert_eq!((location, offset), (Location::Frame(0), frame0))
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_range_query_checks_every_frame_against_the_run_header() {
        let dir = tempfile::tempdir().unwrap();
        let ours = sealed_with(&context_seeded(42), 20);
        let mut swapped = sealed_with(&context_seeded(43), 20);
        let end = header_end(&ours);
        assert_eq!(end, header_end(&swapped), "the two headers have the same length");
        swapped[..end].copy_from_slice(&ours[..end]);
        let path = temp_file(&dir, "swapped.cmeta", &swapped);
        let report = verify_file(&path).unwrap();
        assert_eq!(corrupt_at(&report.status), (Location::Frame(0), end as u64));
        let reader = ChronicleReader::open(&path).unwrap();
        assert!(reader.frames().unwrap().iter().any(|f| f.first_tick > 18), "the range is not in frame 0");
        let err = reader.query_range(18, 22).unwrap_err();
        assert!(err.to_string().contains("broken chain link"), "{err}");
        assert_eq!(read_all(&reader).2, report.status);
    }

    /// The walk over the frames before a range reads their index entries
    /// in blocks of 1,024: a range past the first blocks still matches, and
    /// a damaged header in a later block still fails the query.
    #[test]
    fn a_range_query_past_a_thousand_frames_checks_every_earlier_header() {
        let dir = tempfile::tempdir().unwrap();
        let entries = stream(1200);
        let one_per_frame = WriterOptions { frame_records_max: 1, ..WriterOptions::default() };
        let path = dir.path().join("many.cmeta");
        write_sealed(&path, &entries, one_per_frame);
        let reader = ChronicleReader::open(&path).unwrap();
        let frames = reader.frames().unwrap();
        assert!(frames.len() > 2 * 1024 + 1, "{} frames", frames.len());
        let last = frames.last().unwrap().last_tick;
        let in_range = |from: u64, to: u64| -> Vec<OwnedEntry> {
            entries.iter().filter(|e| (from..=to).contains(&e.at().0)).cloned().collect()
        };
        assert!(!in_range(last, last).is_empty());
        // One reader, queried back and forth: the chain checkpoints an
        // earlier query left serve the later ones, and change no answer.
        for tick in [last, 2, last / 2, last / 3 + 1, last - 40, 130, last] {
            assert_eq!(reader.query_range(tick, tick + 5).unwrap(), in_range(tick, tick + 5), "tick {tick}");
        }
        // A topic filter builds only those deliveries, and every other record.
        let mut accepted = Vec::new();
        reader
            .visit_range_where(
                last / 2,
                last,
                |topic| topic == "telemetry.accepted",
                |entry| {
                    accepted.push(entry);
                    Ok::<(), metagov_storage::ChronicleError>(())
                },
            )
            .unwrap();
        let expected: Vec<OwnedEntry> = in_range(last / 2, last)
            .into_iter()
            .filter(|e| !matches!(e, OwnedEntry::Delivery(d) if &*d.topic != "telemetry.accepted"))
            .collect();
        assert!(expected.iter().any(|e| matches!(e, OwnedEntry::Delivery(_))), "the stream has accepted packets");
        assert!(expected.len() < in_range(last / 2, last).len(), "and other deliveries");
        assert_eq!(accepted, expected);

        let mut damaged = std::fs::read(&path).unwrap();
        let hit = frames[2 * 1024 + 1].offset as usize;
        damaged[hit + 20] ^= 0x01;
        let damaged = temp_file(&dir, "damaged.cmeta", &damaged);
        let err = ChronicleReader::open(&damaged).unwrap().query_range(last, last).unwrap_err();
        assert!(err.to_string().contains(&format!("frame {}", 2 * 1024 + 1)), "{err}");
    }

    #[test]
    fn a_zero_filled_tail_keeps_the_intact_frames_and_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let good = sealed_with(&context_seeded(42), 4);
        let first = ChronicleReader::open(temp_file(&dir, "good.cmeta", &good)).unwrap().frames().unwrap();
        let cut = first[1].offset as usize;
        let mut bytes = good[..cut].to_vec();
        bytes.extend(std::iter::repeat_n(0u8, 4096));
        let path = temp_file(&dir, "zeroed.cmeta", &bytes);
        let report = verify_file(&path).unwrap();
        assert_eq!(corrupt_at(&report.status), (Location::Frame(1), cut as u64));
        let reader = ChronicleReader::open(&path).unwrap();
        assert!(matches!(reader.tail(), Tail::Corrupt { location: Location::Frame(1), .. }), "{}", reader.tail());
        assert_eq!(reader.frame_count(), 1);
        let (got, error, status) = read_all(&reader);
        assert_eq!(got, stream(4)[..4], "frame 0's four records");
        assert!(error.is_some());
        assert_eq!(status, report.status);
        assert_eq!(reader.query_range(0, u64::MAX).unwrap(), got);
    }

    #[test]
    fn a_header_seed_that_disagrees_with_its_config_or_run_id_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let good = sealed_with(&context_seeded(42), 4);
        let end = header_end(&good);
        // The seed edited alone (run id and config kept), then the run id
        // edited alone: each disagrees with what states it again.
        for (edit, expected) in [(0, "seed 43 disagrees with run.seed 42"), (1, "run_id \"forged\" is not")] {
            let mut ctx = context_seeded(42);
            if edit == 0 {
                ctx.seed = 43;
            } else {
                ctx.run_id = "forged".into();
                ctx.producer = format!("{}{}", ctx.producer, "x".repeat(36 - "forged".len()));
            }
            let header = encode_header(&ctx, &metagov_storage::SegmentLink::FIRST).unwrap();
            assert_eq!(header.len(), end);
            let mut bytes = good.clone();
            bytes[..end].copy_from_slice(&header);
            rechain(&mut bytes, |_| {});
            let path = temp_file(&dir, "forged.cmeta", &bytes);
            let report = verify_file(&path).unwrap();
            assert_eq!(corrupt_at(&report.status), (Location::Header, 0), "{}", report.status);
            assert!(report.status.to_string().contains(expected), "{}", report.status);
            assert!(ChronicleReader::open(&path).is_err());
        }
    }

    #[test]
    fn not_a_chronicle_names_the_four_bytes_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = temp_file(&dir, "text.cmeta", b"em #  notes");
        let err = ChronicleReader::open(&path).unwrap_err();
        assert!(err.to_string().contains("starts with the bytes 65 6d 20 23, not 5e a5 0d 0c"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_or_a_directory_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.cmeta");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        for (path, kind) in [(fifo, "a FIFO"), (dir.path().to_path_buf(), "a directory")] {
            let err = verify_file(&path).unwrap_err();
            assert!(matches!(err, ChronicleError::NotAFile { kind: k, .. } if k == kind), "{err}");
            let err = ChronicleReader::open(&path).unwrap_err();
            assert!(err.to_string().contains(&format!("is not a regular file but {kind}")), "{err}");
        }
    }
}

/// Golden bytes: the spec's worked example and a checked-in version-1 file.
mod golden {
    use std::path::PathBuf;

    use metagov_bus::{OwnedEntry, Value};
    use metagov_storage::{verify_file, Chronicle, ChronicleReader, IntegrityStatus, Tail, WriterOptions};

    use crate::support::*;

    /// The worked example of docs/chronicle-format.md, byte for byte.
    const WORKED_EXAMPLE: &str = "
5e a5 0d 0c 03 00 00 00 a6 00 00 00 bf d5 98 06
93 30 7f 78 24 62 30 30 30 35 66 66 38 2d 62 30
37 30 2d 38 35 63 34 2d 38 61 32 37 2d 32 65 33
38 61 30 38 63 64 33 63 30 40 35 64 30 39 61 34
36 37 64 38 36 65 31 36 38 65 31 65 61 33 36 35
33 33 37 35 36 31 38 38 39 31 32 62 38 38 37 66
34 35 32 37 32 61 37 33 39 32 66 63 32 62 63 38
66 33 65 38 37 63 38 33 37 37 10 5b 72 75 6e 5d
0a 73 65 65 64 20 3d 20 34 32 0a 05 6c 69 6e 75
78 06 78 38 36 5f 36 34 2a 00 00 00 00 00 00 00
01 09 76 61 6c 69 64 61 74 6f 72 0d 6d 65 74 61
67 6f 76 20 30 2e 31 2e 30 00 da 1e 42 b6 40 5a
5d 99 63 6d 46 52 00 00 00 00 03 00 00 00 7e 00
00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 01 00 00 00 00 00 00 00 01 00 00 00 00 00
00 00 bc ea 17 3c 5b dd 1f 65 e7 d4 38 a2 7e 5c
9c e4 0b 22 a8 a0 0d 00 3d 8c 27 94 5a 6b 3f 38
b5 d3 f7 3d 4c 1a e3 83 28 2a 07 36 ce c3 9d de
dc 4f 00 01 00 00 00 0d 74 65 6c 65 6d 65 74 72
79 2e 72 61 77 01 07 69 6e 67 72 65 73 73 02 09
76 61 6c 69 64 61 74 6f 72 00 00 07 02 03 03 6a
6f 62 04 04 08 67 61 69 6e 5f 70 35 30 03 06 06
62 65 72 74 2d 61 e0 a7 12 04 00 00 01 02 80 80
9c bb b9 dc 8f ed 31 01 00 01 06 12 74 65 6c 65
6d 65 74 72 79 2e 61 63 63 65 70 74 65 64 02 07
0b 69 6e 74 65 67 72 61 74 69 76 65 01 00 00 00
63 6d 49 58 01 00 00 00 c2 00 00 00 00 00 00 00
01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
01 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00
f4 64 7a 5c 11 62 b8 eb 63 6d 46 54 01 00 00 00
03 00 00 00 00 00 00 00 a0 01 00 00 00 00 00 00
e7 d4 38 a2 7e 5c 9c e4 0b 22 a8 a0 0d 00 3d 8c
27 94 5a 6b 3f 38 b5 d3 f7 3d 4c 1a e3 83 28 2a
e9 01 09 70 89 66 af bd
";

    fn hex_dump(bytes: &[u8]) -> String {
        bytes
            .chunks(16)
            .map(|line| line.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ") + "\n")
            .collect()
    }

    #[test]
    fn worked_example_bytes() {
        let packet = record(vec![("job", Value::Text("bert-a".into())), ("gain_p50", fixed(150_000))]);
        let entries = [
            delivery(1, 0, "telemetry.raw", "validator", packet.clone()),
            // 2026-12-01T12:00:00Z
            OwnedEntry::Arrival { tick: 1, seq: 0, unix_nanos: 1_796_126_400_000_000_000 },
            caused(delivery(1, 1, "telemetry.accepted", "integrative", packet), "validator", 0),
        ];
        let bytes = sealed_bytes(&entries, WriterOptions::default());
        assert_eq!(hex_dump(&bytes), WORKED_EXAMPLE.trim_start(), "got:\n{}", hex_dump(&bytes));
    }

    fn golden_path(version: u16) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/golden-v{version}.cmeta"))
    }

    /// Regenerates tests/data/golden-v2.cmeta, only when `METAGOV_BLESS=1`
    /// and the file is missing. A golden file is never re-blessed: it is the
    /// file every later version must still read (golden-v1.cmeta was written
    /// by the version-1 writer, which no longer exists).
    #[allow(clippy::disallowed_methods)] // A test switch, read outside any run.
    fn bless_golden_v2_if_missing() {
        let path = golden_path(2);
        if std::env::var("METAGOV_BLESS").as_deref() != Ok("1") || path.exists() {
            return;
        }
        let mut chronicle = Chronicle::new(context());
        chronicle.records = live_stream(120);
        let options = WriterOptions { frame_records_max: 64, frame_bytes_max: 4096, ..WriterOptions::default() };
        chronicle.save_chronicle(&path, options).unwrap();
    }

    /// Regenerates tests/data/golden-v3.cmeta, only when `METAGOV_BLESS=1`
    /// and the file is missing: segment 1 of a run, continuing a first
    /// segment of [`live_stream`]`(60)` cut after tick 60.
    #[allow(clippy::disallowed_methods)] // A test switch, read outside any run.
    fn bless_golden_v3_if_missing() {
        let path = golden_path(3);
        if std::env::var("METAGOV_BLESS").as_deref() != Ok("1") || path.exists() {
            return;
        }
        let (_, rest) = golden_v3_parts();
        let options = WriterOptions { frame_records_max: 64, frame_bytes_max: 4096, ..WriterOptions::default() };
        let link = metagov_storage::SegmentLink::after(1, GOLDEN_V3_PREVIOUS_CHAIN);
        let mut w = metagov_storage::ChronicleWriter::create_segment(&path, &context(), &link, options).unwrap();
        for e in &rest {
            w.append(metagov_storage::entry_ref(e)).unwrap();
        }
        w.seal().unwrap();
    }

    /// The records before golden-v3.cmeta and the records in it.
    fn golden_v3_parts() -> (Vec<OwnedEntry>, Vec<OwnedEntry>) {
        let entries = live_stream(60);
        let cut = entries.iter().position(|e| crate::support::tick_of(e) > 60).unwrap();
        (entries[..cut].to_vec(), entries[cut..].to_vec())
    }

    /// The chain golden-v3.cmeta links to (a made-up previous segment's).
    const GOLDEN_V3_PREVIOUS_CHAIN: [u8; 32] = [0xab; 32];
    const GOLDEN_V3_CHAIN_HEAD: &str = "d3c153445ee11be8d9ebfb4e4016a00afa183a9a07d7f33795ef67127a2cec45";

    #[test]
    fn golden_v3_file_still_reads() {
        bless_golden_v3_if_missing();
        let path = golden_path(3);
        let report = verify_file(&path).unwrap();
        assert_eq!(report.status, IntegrityStatus::Sealed);
        assert_eq!(report.chain_head, GOLDEN_V3_CHAIN_HEAD);
        let reader = ChronicleReader::open(&path).unwrap();
        assert_eq!(reader.version(), 3);
        assert_eq!(reader.context(), &context());
        assert_eq!(*reader.segment(), metagov_storage::SegmentLink::after(1, GOLDEN_V3_PREVIOUS_CHAIN));
        let records: Vec<OwnedEntry> = reader.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(records, golden_v3_parts().1, "the stream builder is the file's source");
        assert_eq!(records[0].at(), (62, 0));
    }

    const GOLDEN_V1_CHAIN_HEAD: &str = "400540e51ebbd8f5f842f9efe30a6d85b7b4afcb69f63f061494c34ea1a3d2e7";

    #[test]
    fn golden_v1_file_still_reads() {
        let path = golden_path(1);
        let report = verify_file(&path).unwrap();
        assert_eq!(report.status, IntegrityStatus::Sealed);
        assert_eq!(report.chain_head, GOLDEN_V1_CHAIN_HEAD);
        let reader = ChronicleReader::open(&path).unwrap();
        assert_eq!(reader.version(), 1);
        assert_eq!(reader.tail(), &Tail::Sealed);
        assert_eq!(reader.record_count(), 300);
        assert_eq!(reader.context(), &context());
        let records: Vec<OwnedEntry> = reader.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(records.len(), 300);
        let OwnedEntry::Delivery(first) = &records[0] else { panic!("{:?}", records[0]) };
        assert_eq!((first.tick, first.seq, &*first.topic, &*first.to), (2, 0, "telemetry.raw", "validator"));
        assert_eq!(first.payload.get("job"), Some(&Value::Text("job-001".into())));
        assert_eq!(first.payload.get("metrics").and_then(|m| m.get("gain_p50")), Some(&fixed(150_037)));
        let OwnedEntry::Cycle { tick, record, .. } = &records[8] else { panic!("{:?}", records[8]) };
        assert_eq!((*tick, record.loss.micros(), record.action_code, record.seed_state), (8, 1_999_996, None, 32));
        let OwnedEntry::Frame { frame, .. } = records.last().unwrap() else { panic!("{:?}", records.last()) };
        assert_eq!((frame.cycle_id, frame.rng_seed, frame.module.as_str()), (60, u64::MAX - 240, "learner"));
        assert_eq!(reader.query_range(100, 103).unwrap().len(), 4);
        assert_eq!(records, stream(120), "the stream builder is the file's source");
    }

    const GOLDEN_V2_CHAIN_HEAD: &str = "661e25b1a1ad02d36e3fe0c640286214971a7fcae7143765e41da5a2f08d4bbc";

    #[test]
    fn golden_v2_file_still_reads() {
        bless_golden_v2_if_missing();
        let path = golden_path(2);
        let report = verify_file(&path).unwrap();
        assert_eq!(report.status, IntegrityStatus::Sealed);
        assert_eq!(report.chain_head, GOLDEN_V2_CHAIN_HEAD);
        let reader = ChronicleReader::open(&path).unwrap();
        assert_eq!(reader.version(), 2);
        // The first frame's payload (after the 193 bytes of the context and
        // a 96-byte frame header) starts with its packing byte: zstd.
        assert_eq!(std::fs::read(&path).unwrap()[193 + 96], metagov_storage::packing::PACKING_ZSTD);
        let records: Vec<OwnedEntry> = reader.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(records.len(), 420);
        let OwnedEntry::Delivery(accepted) = &records[2] else { panic!("{:?}", records[2]) };
        assert_eq!((accepted.tick, accepted.seq, accepted.cause, &*accepted.from), (2, 1, Some(0), "validator"));
        assert_eq!(records[1], OwnedEntry::Arrival { tick: 2, seq: 0, unix_nanos: 1_796_126_400_000_000_002 });
        assert_eq!(records, live_stream(120), "the stream builder is the file's source");
    }
}

/// Runs of several segment files: a run directory read as one run, and each
/// thing that binds its segments found broken.
mod segments {
    use std::path::Path;

    use metagov_bus::OwnedEntry;
    use metagov_storage::{
        entry_ref, segment_file_name, verify_run, ChronicleError, ChronicleReader, ChronicleWriter, IntegrityStatus,
        RunReader, SegmentLink, WriterOptions,
    };

    use crate::support::*;

    const OPTIONS: WriterOptions = WriterOptions {
        frame_records_max: 16,
        frame_bytes_max: 1 << 20,
        zstd_level: Some(metagov_storage::packing::ZSTD_LEVEL_DEFAULT),
        tick_aligned: true,
    };

    /// Writes `entries` as segment `index` of a run in `dir`, linked to
    /// `previous_chain`; sealed or left unsealed. Returns its chain head.
    fn write_segment(dir: &Path, index: u32, previous_chain: [u8; 32], entries: &[OwnedEntry], seal: bool) -> [u8; 32] {
        let link = if index == 0 { SegmentLink::FIRST } else { SegmentLink::after(index, previous_chain) };
        let path = dir.join(segment_file_name(index));
        let mut w = ChronicleWriter::create_segment(&path, &context(), &link, OPTIONS).unwrap();
        for e in entries {
            w.append(entry_ref(e)).unwrap();
        }
        w.flush().unwrap();
        let head = w.chain_head();
        if seal {
            w.seal().unwrap();
        }
        head
    }

    /// A run of three segments over [`live_stream`]`(60)`, the first left
    /// unsealed (a supervisor killed and resumed), the others sealed.
    fn three_segments(dir: &Path) -> Vec<OwnedEntry> {
        let entries = live_stream(60);
        let cut = |tick: u64| entries.iter().position(|e| tick_of(e) > tick).unwrap();
        let (a, b) = (cut(40), cut(90));
        let head = write_segment(dir, 0, [0; 32], &entries[..a], false);
        let head = write_segment(dir, 1, head, &entries[a..b], true);
        write_segment(dir, 2, head, &entries[b..], true);
        entries
    }

    #[test]
    fn a_run_directory_reads_as_one_run_and_verifies_across_its_segments() {
        let dir = tempfile::tempdir().unwrap();
        let entries = three_segments(dir.path());
        let run = RunReader::open(dir.path()).unwrap();
        assert_eq!(run.segments().len(), 3);
        assert_eq!(run.segments()[2].segment().index, 2);
        let mut records = run.records();
        let read: Vec<OwnedEntry> = records.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(read, entries, "the segments' records in order are the run's");
        assert_eq!(records.status(), Some(&IntegrityStatus::Sealed));
        assert_eq!(records.records_read(), entries.len() as u64);
        let mut ranged = Vec::new();
        run.visit_range(38, 44, |entry| {
            ranged.push(entry);
            Ok::<(), ChronicleError>(())
        })
        .unwrap();
        assert_eq!(ranged, in_range(&entries, 38, 44), "a range across a boundary");
        assert_eq!(run.record_count(), entries.len() as u64);
        let integrity = verify_run(dir.path()).unwrap();
        assert_eq!(integrity.total.status, IntegrityStatus::Sealed);
        assert_eq!(integrity.segments.len(), 3);
        assert_eq!(integrity.segments[0].1.status, IntegrityStatus::Unsealed, "an earlier segment may be unsealed");
        assert_eq!(integrity.total.records, entries.len() as u64);
        // A continuation read alone is a chronicle of its own, later ticks.
        let alone = ChronicleReader::open(dir.path().join("run.0001.cmeta")).unwrap();
        assert_eq!(alone.version(), 3);
        assert!(alone.records().next().unwrap().unwrap().at().0 > 40);
    }

    #[test]
    fn a_segment_linked_to_another_chain_is_corruption_naming_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let entries = live_stream(20);
        let a = entries.iter().position(|e| tick_of(e) > 20).unwrap();
        write_segment(dir.path(), 0, [0; 32], &entries[..a], true);
        write_segment(dir.path(), 1, [7; 32], &entries[a..], true);
        let err = RunReader::open(dir.path()).unwrap_err();
        assert!(matches!(err, ChronicleError::Corrupt { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("run.0001.cmeta") && text.contains("links to chain 0707"), "{text}");
        let integrity = verify_run(dir.path()).unwrap();
        let IntegrityStatus::Corrupt { reason, .. } = &integrity.total.status else { panic!("{integrity:?}") };
        assert!(reason.starts_with("in `run.0001.cmeta`: it links to chain"), "{reason}");
        assert_eq!(integrity.segments[1].1.status, IntegrityStatus::Sealed, "each file alone is whole");
    }

    #[test]
    fn a_gap_another_run_or_ticks_that_go_back_break_a_run_directory() {
        // A gap in the numbering.
        let dir = tempfile::tempdir().unwrap();
        let entries = live_stream(20);
        let a = entries.iter().position(|e| tick_of(e) > 20).unwrap();
        let head = write_segment(dir.path(), 0, [0; 32], &entries[..a], true);
        std::fs::create_dir(dir.path().join("x")).unwrap();
        write_segment(&dir.path().join("x"), 1, head, &entries[a..], true);
        std::fs::rename(dir.path().join("x/run.0001.cmeta"), dir.path().join("run.0002.cmeta")).unwrap();
        let err = RunReader::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("segment `run.0001.cmeta` is missing"), "{err}");
        assert!(matches!(verify_run(dir.path()), Err(ChronicleError::NotARun { .. })));
        // No first segment.
        let empty = tempfile::tempdir().unwrap();
        let err = RunReader::open(empty.path()).unwrap_err();
        assert!(err.to_string().contains("is not a run directory: it holds no `run.cmeta`"), "{err}");
        // Ticks that go back: the continuation starts before the first ends.
        let back = tempfile::tempdir().unwrap();
        let head = write_segment(back.path(), 0, [0; 32], &entries[..a], true);
        write_segment(back.path(), 1, head, &entries[..a], true);
        let err = RunReader::open(back.path()).unwrap_err();
        assert!(err.to_string().contains("it starts at (tick, seq) (2, 0), not after (20, 1)"), "{err}");
        // A segment of another run.
        let other = tempfile::tempdir().unwrap();
        let head = write_segment(other.path(), 0, [0; 32], &entries[..a], true);
        let mut context = context();
        context.producer = "metagov 9.9.9".into();
        let link = SegmentLink::after(1, head);
        let path = other.path().join("run.0001.cmeta");
        let mut w = ChronicleWriter::create_segment(&path, &context, &link, OPTIONS).unwrap();
        w.append(entry_ref(&entries[a])).unwrap();
        w.seal().unwrap();
        let err = RunReader::open(other.path()).unwrap_err();
        assert!(err.to_string().contains("its run context (run id"), "{err}");
    }

    #[test]
    fn a_torn_earlier_segment_keeps_its_whole_frames_and_the_run_reads_on() {
        let dir = tempfile::tempdir().unwrap();
        let entries = live_stream(40);
        let a = entries.iter().position(|e| tick_of(e) > 40).unwrap();
        let head = write_segment(dir.path(), 0, [0; 32], &entries[..a], false);
        // A frame cut short after the last whole one: a kill mid-write.
        let first = dir.path().join("run.cmeta");
        let mut bytes = std::fs::read(&first).unwrap();
        bytes.extend_from_slice(b"cmFR\x99\x00");
        std::fs::write(&first, &bytes).unwrap();
        write_segment(dir.path(), 1, head, &entries[a..], true);
        let run = RunReader::open(dir.path()).unwrap();
        let read: Vec<OwnedEntry> = run.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(read, entries);
        let integrity = verify_run(dir.path()).unwrap();
        assert_eq!(integrity.total.status, IntegrityStatus::Sealed);
        assert!(matches!(integrity.segments[0].1.status, IntegrityStatus::Torn { dropped_bytes: 6, .. }));
    }

    #[test]
    fn tick_aligned_frames_end_with_whole_ticks() {
        // Each tick of `live_stream` holds 3 or 5 records; frames of at most
        // 4 records would split ticks, tick-aligned ones never do.
        let entries = live_stream(30);
        for (tick_aligned, splits) in [(false, true), (true, false)] {
            let options = WriterOptions { frame_records_max: 4, tick_aligned, ..OPTIONS };
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("run.cmeta");
            write_sealed(&path, &entries, options);
            let frames = ChronicleReader::open(&path).unwrap().frames().unwrap();
            let split = frames.windows(2).any(|w| w[0].last_tick == w[1].first_tick);
            assert_eq!(split, splits, "tick_aligned {tick_aligned}: {frames:?}");
            assert!(frames.len() > 5);
        }
    }
}
