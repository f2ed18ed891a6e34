//! metagov's integration tests: one binary, one module per concern.
//!
//! The workload is the synthetic telemetry pipeline (`metagov::workload`):
//! seeded packets in, a validator, a learner that draws from its RNG and
//! emits cycle records and meta frames, and hooks that publish to a topic
//! nobody subscribes to.

use std::io::Write;
use std::sync::{Arc, Mutex};

use metagov::workload::{self, TelemetryStream, TELEMETRY_RAW};
use metagov_bus::{Actor, Bus, BusError, BusLimits, Envelope, MemoryJournal, Outbox, OwnedEntry, Value};
use metagov_storage::{init_session, ChronicleWriter, RunContext, WriterOptions};

/// Seeds every determinism test runs under; a failure names the seed.
const SEEDS: [u64; 3] = [42, 7, 1_000_003];

fn context(seed: u64) -> RunContext {
    let config = metagov_config::Config { run: metagov_config::RunConfig { seed }, ..Default::default() };
    init_session(seed, &config.canonical_toml(), workload::ACTORS.iter().map(|a| a.to_string()).collect())
}

/// Runs `packets` packets of the pipeline and returns the chronicle bytes.
fn chronicle_bytes(seed: u64, packets: u64, options: WriterOptions) -> Vec<u8> {
    let writer = ChronicleWriter::new(Vec::new(), &context(seed), options).unwrap();
    let mut bus = workload::build_bus(seed, BusLimits::default(), writer).unwrap();
    let mut stream = TelemetryStream::new(seed, 5, 2);
    for _ in 0..packets {
        bus.ingress(TELEMETRY_RAW, stream.next_packet()).unwrap();
    }
    bus.into_journal().seal().unwrap()
}

fn memory_run(seed: u64, packets: u64) -> Vec<OwnedEntry> {
    let mut bus = workload::build_bus(seed, BusLimits::default(), MemoryJournal::new(1 << 20)).unwrap();
    let mut stream = TelemetryStream::new(seed, 5, 2);
    for _ in 0..packets {
        bus.ingress(TELEMETRY_RAW, stream.next_packet()).unwrap();
    }
    bus.into_journal().entries
}

fn write_file(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Same seed ⇒ same bytes; the bus's ordering rules.
mod determinism {
    use super::*;

    #[test]
    fn same_seed_gives_identical_chronicle_bytes() {
        for seed in SEEDS {
            let options = WriterOptions { frame_records_max: 64, ..Default::default() };
            let a = chronicle_bytes(seed, 300, options);
            let b = chronicle_bytes(seed, 300, options);
            if a != b {
                let first = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
                panic!("chronicles differ at byte {first}; rerun with METAGOV_SEED={seed}");
            }
        }
    }

    #[test]
    fn a_different_seed_gives_a_different_chronicle() {
        let options = WriterOptions::default();
        assert_ne!(chronicle_bytes(42, 100, options), chronicle_bytes(43, 100, options));
    }

    #[test]
    fn deliveries_are_in_strict_tick_seq_order_and_traced_to_their_ingress() {
        let entries = memory_run(42, 200);
        let mut last = None;
        for entry in &entries {
            if let OwnedEntry::Delivery(e) = entry {
                let at = (e.tick, e.seq);
                assert!(last < Some(at), "{at:?} after {last:?}");
                last = Some(at);
                assert_eq!(e.trace.0, e.tick, "every delivery of a tick descends from that tick's packet");
            }
        }
        assert_eq!(last.map(|(tick, _)| tick), Some(200));
    }

    #[test]
    fn a_publish_nobody_subscribes_to_is_still_recorded() {
        let entries = memory_run(42, 3);
        let unrouted: Vec<_> = entries
            .iter()
            .filter_map(|e| match e {
                OwnedEntry::Delivery(d) if &*d.to == metagov_bus::NOBODY => Some(d.topic.to_string()),
                _ => None,
            })
            .collect();
        assert!(unrouted.contains(&"meta.telemetry".to_string()), "{unrouted:?}");
    }

    #[test]
    fn cycle_records_and_meta_frames_are_journaled_after_their_delivery() {
        let entries = memory_run(42, 200);
        let cycles = entries.iter().filter(|e| matches!(e, OwnedEntry::Cycle { .. })).count();
        let frames = entries.iter().filter(|e| matches!(e, OwnedEntry::Frame { .. })).count();
        assert!(cycles > 0 && cycles == frames, "{cycles} cycles, {frames} frames");
        for pair in entries.windows(2) {
            if let OwnedEntry::Cycle { .. } = &pair[1] {
                assert_eq!(pair[0].at(), pair[1].at(), "a cycle record follows the delivery that emitted it");
            }
        }
    }
}

/// Limits and failures: never a silent drop, never a lost record.
mod failures {
    use super::*;

    /// Publishes `fan` messages on its own topic per delivery.
    struct Amplifier {
        fan: usize,
    }

    impl Actor for Amplifier {
        fn subscriptions(&self) -> Vec<String> {
            vec!["boom".into()]
        }
        fn handle(&mut self, _: &Envelope, out: &mut Outbox<'_>) {
            for i in 0..self.fan {
                out.publish("boom", Value::Int(i as i64));
            }
        }
    }

    struct Panicker;

    impl Actor for Panicker {
        fn subscriptions(&self) -> Vec<String> {
            vec!["in".into()]
        }
        fn handle(&mut self, envelope: &Envelope, _: &mut Outbox<'_>) {
            if envelope.tick == 3 {
                panic!("bad state at tick 3");
            }
        }
    }

    #[test]
    fn a_full_queue_stops_the_run_with_the_limit_named() {
        let limits = BusLimits { queue_len_max: 100, outbox_len_max: 10 };
        let mut bus = Bus::new(1, limits, MemoryJournal::new(10_000));
        bus.add_actor("amp", Box::new(Amplifier { fan: 3 })).unwrap();
        let err = bus.ingress("boom", Value::Unit).unwrap_err();
        assert!(matches!(err, BusError::QueueFull { limit: 100, .. }), "{err}");
        assert!(err.to_string().contains("100"), "{err}");
        assert!(!bus.journal().entries.is_empty(), "deliveries made before the limit are kept");
        assert!(matches!(bus.ingress("boom", Value::Unit), Err(BusError::Stopped)));
    }

    #[test]
    fn an_overfull_outbox_names_the_actor() {
        let limits = BusLimits { queue_len_max: 1000, outbox_len_max: 2 };
        let mut bus = Bus::new(1, limits, MemoryJournal::new(10_000));
        bus.add_actor("amp", Box::new(Amplifier { fan: 3 })).unwrap();
        let err = bus.ingress("boom", Value::Unit).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, BusError::OutboxFull { emitted: 3, limit: 2, .. }), "{text}");
        assert!(text.contains("`amp`") && text.contains("(1, 0)"), "{text}");
    }

    #[test]
    fn a_panicking_handler_stops_the_run_and_keeps_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("panic.cmeta");
        let ctx = init_session(1, "", vec!["p".into()]);
        let writer = ChronicleWriter::create(&path, &ctx, WriterOptions::default()).unwrap();
        let mut bus = Bus::new(1, BusLimits::default(), writer);
        bus.add_actor("p", Box::new(Panicker)).unwrap();
        bus.ingress("in", Value::Int(1)).unwrap();
        bus.ingress("in", Value::Int(2)).unwrap();
        let err = bus.ingress("in", Value::Int(3)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("actor `p` panicked") && text.contains("(3, 0)") && text.contains("bad state"), "{text}");
        bus.into_journal().flush().unwrap();
        let reader = metagov_storage::ChronicleReader::open(&path).unwrap();
        let ticks: Vec<u64> = reader.records().map(|e| e.unwrap().at().0).collect();
        assert_eq!(ticks, [1, 2, 3], "the panicking delivery itself is on record");
    }

    #[test]
    fn bad_names_are_refused() {
        let mut bus = Bus::new(1, BusLimits::default(), MemoryJournal::new(10));
        assert!(matches!(bus.add_actor("ingress", Box::new(Panicker)), Err(BusError::BadActorName(_))));
        assert!(matches!(bus.add_actor("a b", Box::new(Panicker)), Err(BusError::BadActorName(_))));
        assert!(matches!(bus.ingress("bad topic!", Value::Unit), Err(BusError::BadTopic(_))));
    }
}

/// Seed 000: session, context, deterministic log.
mod session {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged_run(seed: u64) -> Vec<u8> {
        let buf = SharedBuf::default();
        let layer = metagov_bus::log::DeterministicLog::new(buf.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(seed, "run starts");
            memory_run(seed, 400);
        });
        let bytes = buf.0.lock().unwrap().clone();
        bytes
    }

    #[test]
    fn test_deterministic_logging() {
        for seed in SEEDS {
            let a = logged_run(seed);
            assert_eq!(a, logged_run(seed), "rerun with METAGOV_SEED={seed}");
            let text = String::from_utf8(a).unwrap();
            assert!(text.starts_with("-.- - INFO run starts seed="), "{text}");
            let rejected: Vec<&str> = text.lines().filter(|l| l.contains("rejected packet")).collect();
            assert!(!rejected.is_empty(), "the stream has bad packets, so the log has rejections");
            for line in rejected {
                let stamp = line.split(' ').next().unwrap();
                let (tick, seq) = stamp.split_once('.').unwrap();
                assert!(tick.parse::<u64>().is_ok() && seq == "0", "{line}");
                assert!(line.contains(" validator INFO "), "{line}");
            }
        }
    }

    #[test]
    fn test_context_consistency() {
        let config = metagov_config::Config::default();
        let text = config.canonical_toml();
        let a = init_session(42, &text, vec!["validator".into(), "learner".into()]);
        let b = init_session(42, &text, vec!["validator".into(), "learner".into()]);
        assert_eq!(a, b);
        assert_eq!(a.config_sha256, config.sha256_hex(), "storage and config hash the same canonical text");
        assert_eq!(a.frame("validator").config_hash, a.frame("learner").config_hash);
        let bytes = {
            let writer = ChronicleWriter::new(Vec::new(), &a, WriterOptions::default()).unwrap();
            writer.seal().unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "ctx.cmeta", &bytes);
        let read = metagov_storage::ChronicleReader::open(&path).unwrap();
        assert_eq!(read.context(), &a, "the context read back is the context written");
    }
}

/// Replay verify (seeds 000, 004): re-execute from the recorded ingress.
mod replay {
    use super::*;
    use metagov_storage::{verify_replay, ChronicleReader, ReplayError};

    fn recorded(seed: u64, packets: u64) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = chronicle_bytes(seed, packets, WriterOptions { frame_records_max: 100, ..Default::default() });
        let path = write_file(dir.path(), "run.cmeta", &bytes);
        (dir, path)
    }

    #[test]
    fn test_replay_audit() {
        let (_dir, path) = recorded(42, 500);
        let reader = ChronicleReader::open(&path).unwrap();
        let report = verify_replay(&reader, |ctx, journal| {
            workload::build_bus(ctx.seed, BusLimits::default(), journal).map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(report.ingress, 500);
        assert_eq!(report.entries, reader.record_count());
        assert!(report.complete);
        // The diagnostics snapshots of the replay equal the recorded ones
        // exactly (the seed asks for ≤ 1e-6 drift; on the grid there is none).
        let recorded: Vec<_> = reader
            .records()
            .filter_map(|e| match e.unwrap() {
                OwnedEntry::Cycle { record, .. } => Some(record.diagnostics),
                _ => None,
            })
            .collect();
        let replayed: Vec<_> = memory_run(42, 500)
            .into_iter()
            .filter_map(|e| match e {
                OwnedEntry::Cycle { record, .. } => Some(record.diagnostics),
                _ => None,
            })
            .collect();
        assert!(!recorded.is_empty());
        assert_eq!(recorded, replayed);
    }

    #[test]
    fn a_different_actor_set_is_reported_at_the_first_differing_delivery() {
        let (_dir, path) = recorded(42, 50);
        let reader = ChronicleReader::open(&path).unwrap();
        // Same actors, other seed: the learner's RNG draws differ, so the
        // first policy.update payload differs in its `tau` field.
        let err = verify_replay(&reader, |_, journal| {
            workload::build_bus(43, BusLimits::default(), journal).map_err(|e| e.to_string())
        })
        .unwrap_err();
        let ReplayError::Diverged(d) = err else { panic!("expected a divergence, got {err}") };
        assert_eq!(d.at, (1, 2), "tick 1: raw → validator (0), accepted → learner (1), policy.update → hooks (2)");
        let paths: Vec<&str> = d.fields.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["payload.tau"]);
        let text = d.to_string();
        assert!(text.contains("(tick 1, seq 2)") && text.contains("payload.tau"), "{text}");
    }

    #[test]
    fn a_different_actor_set_is_refused_before_replay() {
        let (_dir, path) = recorded(42, 5);
        let reader = ChronicleReader::open(&path).unwrap();
        let err = verify_replay(&reader, |ctx, journal| {
            let mut bus = Bus::new(ctx.seed, BusLimits::default(), journal);
            bus.add_actor("validator", Box::new(Echo)).map_err(|e| e.to_string())?;
            Ok(bus)
        })
        .unwrap_err();
        assert!(matches!(err, ReplayError::Build(_)), "the actor set is checked against the recorded one: {err}");
    }

    #[test]
    fn a_torn_recording_is_verified_up_to_its_last_whole_frame() {
        let (dir, path) = recorded(42, 300);
        let bytes = std::fs::read(&path).unwrap();
        let torn = write_file(dir.path(), "torn.cmeta", &bytes[..bytes.len() * 2 / 3]);
        let reader = ChronicleReader::open(&torn).unwrap();
        let report = verify_replay(&reader, |ctx, journal| {
            workload::build_bus(ctx.seed, BusLimits::default(), journal).map_err(|e| e.to_string())
        })
        .unwrap();
        assert!(!report.complete);
        assert_eq!(report.entries, reader.record_count(), "every recorded entry was compared");
        assert!(report.ingress < 300);
    }

    struct Echo;
    impl Actor for Echo {
        fn subscriptions(&self) -> Vec<String> {
            vec![TELEMETRY_RAW.into()]
        }
        fn handle(&mut self, _: &Envelope, _: &mut Outbox<'_>) {}
    }
}

/// The CLI commands on real chronicles and on bad files.
mod cli {
    use super::*;
    use metagov::cli::{self, Outcome};

    fn run(f: impl FnOnce(&mut Vec<u8>) -> anyhow::Result<Outcome>) -> (anyhow::Result<Outcome>, String) {
        let mut out = Vec::new();
        let result = f(&mut out);
        (result, String::from_utf8(out).unwrap())
    }

    fn sealed(dir: &std::path::Path) -> std::path::PathBuf {
        let bytes = chronicle_bytes(42, 200, WriterOptions { frame_records_max: 128, ..Default::default() });
        write_file(dir, "run.cmeta", &bytes)
    }

    #[test]
    fn inspect_verify_query_export_and_replay_work_on_a_sealed_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = sealed(dir.path());
        let (r, text) = run(|o| cli::inspect(&path, false, o));
        assert_eq!(r.unwrap(), Outcome::Success);
        assert!(text.contains("seed         42") && text.contains("integrity    sealed"), "{text}");
        let (r, text) = run(|o| cli::verify(&path, o));
        assert_eq!(r.unwrap(), Outcome::Success, "{text}");
        let (r, text) = run(|o| cli::query(&path, 10, 12, Some("policy.update"), true, o));
        assert_eq!(r.unwrap(), Outcome::Success);
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines.iter().all(|l| l["topic"] == "policy.update"));
        assert_eq!(lines.iter().map(|l| l["tick"].as_u64().unwrap()).collect::<Vec<_>>(), [10, 11, 12]);
        let (r, csv) = run(|o| cli::export(&path, false, None, o));
        assert_eq!(r.unwrap(), Outcome::Success);
        let reader = metagov_storage::ChronicleReader::open(&path).unwrap();
        assert_eq!(csv.lines().count() as u64, reader.record_count() + 1, "a header line and a row per entry");
        assert!(csv
            .starts_with("kind,tick,seq,topic,from,to,trace,payload\ndelivery,1,0,telemetry.raw,ingress,validator,1,"));
        let out_path = dir.path().join("export.jsonl");
        let (r, _) = run(|o| cli::export(&path, true, Some(&out_path), o));
        assert_eq!(r.unwrap(), Outcome::Success);
        assert_eq!(std::fs::read_to_string(&out_path).unwrap().lines().count() as u64, reader.record_count());
        let (r, text) = run(|o| cli::replay_verify(&path, o));
        assert_eq!(r.unwrap(), Outcome::Success, "{text}");
        assert!(text.contains("replay matches: 200 ingress packets"), "{text}");
    }

    #[test]
    fn missing_empty_truncated_and_corrupted_files_fail_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let good = std::fs::read(sealed(dir.path())).unwrap();

        let missing = dir.path().join("nope.cmeta");
        let err = run(|o| cli::verify(&missing, o)).0.unwrap_err();
        assert!(format!("{err:#}").contains("nope.cmeta"), "{err:#}");

        let empty = write_file(dir.path(), "empty.cmeta", b"");
        let err = run(|o| cli::inspect(&empty, false, o)).0.unwrap_err();
        assert!(format!("{err:#}").contains("empty.cmeta"), "{err:#}");

        let torn = write_file(dir.path(), "torn.cmeta", &good[..good.len() - 100]);
        let (r, text) = run(|o| cli::verify(&torn, o));
        assert_eq!(r.unwrap(), Outcome::Failure);
        assert!(text.contains("torn"), "{text}");

        let mut bad = good.clone();
        bad[good.len() / 2] ^= 0x40;
        let corrupt = write_file(dir.path(), "corrupt.cmeta", &bad);
        let (r, text) = run(|o| cli::verify(&corrupt, o));
        assert_eq!(r.unwrap(), Outcome::Failure);
        assert!(text.contains("corrupt") && text.contains("frame"), "{text}");

        let not = write_file(dir.path(), "not.cmeta", b"hello, this is not a chronicle at all");
        let err = run(|o| cli::query(&not, 0, 10, None, false, o)).0.unwrap_err();
        assert!(format!("{err:#}").contains("not a chronicle"), "{err:#}");
    }
}
