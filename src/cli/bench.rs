//! `metagov bench`: the kernel's performance figures, each reported as a
//! ratio against a baseline measured in the same process.
//!
//! Every measurement runs the real path: the synthetic telemetry pipeline of
//! [`metagov_sim::workload`] on the real bus, journaled by the real chronicle
//! writer. Wall-clock time is read here and nowhere in the deterministic
//! crates. Figures and how to read them: docs/BENCHMARKS.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::ValueEnum;
use metagov_bus::{ActorRng, BusLimits, Entry, Envelope, Journal, JournalError, NoJournal, OwnedEntry, Value};
use metagov_storage::{init_session, verify_file, ChronicleReader, ChronicleWriter, WriterOptions};

use super::Outcome;
use metagov_config::Config;
use metagov_sim::scenario::Scenario;
use metagov_sim::simulate::{self, Simulation};
use metagov_sim::workload::{self, TelemetryStream, TELEMETRY_RAW};

/// Which benchmark to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// All of them.
    All,
    /// Bus deliveries per second: journal off, to memory, to a file, against
    /// crossbeam-channel and actix baselines.
    Bus,
    /// Chronicle bytes per delivery against JSON lines, raw and zstd.
    Size,
    /// `query_range` on a large chronicle against a 10× smaller one.
    Query,
    /// `verify` throughput against `sha256sum` of the same file.
    Verify,
    /// End-to-end `simulate` throughput, and peak memory against run length.
    Simulate,
    /// The governance scorecard: closed-loop scenarios × seeds under the
    /// default config, every constant learning rate of a log grid and
    /// ReduceLROnPlateau. Not part of `all`.
    Governance,
    /// `metagov bundle verify` throughput on a large signed bundle of
    /// incompressible data (--bytes) against `sha256sum` of the same bytes,
    /// and `metagov bundle` beside it; then signing a chronicle's seal and
    /// checking it against writing the chronicle. Not part of `all` (it
    /// writes twice --bytes to --dir).
    Bundle,
    /// A governance suite (`metagov test` on tests/governance) against the
    /// plain `simulate` runs it contains. Not part of `all`.
    Suite,
    /// `metagov run` under open-loop HTTP load: latency percentiles, maximum
    /// sustained rate against an actix-web baseline and an fsync ceiling,
    /// peak memory against packets taken. Not part of `all` (about a minute).
    Live,
}

/// Packets generated (untimed) before each timed batch.
const BATCH_PACKETS: u64 = 10_000;

/// A byte count as `--bytes` takes it: digits with an optional `K`, `M`
/// or `G` (KiB, MiB, GiB).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'K' | b'k') => (&text[..text.len() - 1], 10),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 20),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let n: u64 = digits.parse().map_err(|_| format!("`{text}` is not a byte count such as 268435456, 256M or 1G"))?;
    n.checked_mul(1 << shift).filter(|&n| n > 0).ok_or_else(|| format!("`{text}`: not between 1 byte and 16 EiB"))
}

#[allow(clippy::disallowed_methods)] // Benchmarks measure wall time; the deterministic crates never do.
pub(super) fn now() -> Instant {
    Instant::now()
}

fn context(actors: &[&str]) -> metagov_storage::RunContext {
    init_session(42, "# metagov bench\n", actors.iter().map(|a| a.to_string()).collect())
}

/// Runs the pipeline over `packets` packets into `journal`, timing only the
/// bus (packet generation is outside the timed region). Returns the
/// deliveries made and the time spent delivering.
fn run_pipeline<J: Journal>(packets: u64, journal: J, label: &str) -> Result<(u64, Duration, J)> {
    let mut bus = workload::build_bus(42, BusLimits::default(), journal)?;
    let mut stream = TelemetryStream::new(42, 16, 4);
    let bar = super::progress::progress_bar(packets, true, label);
    let (mut deliveries, mut spent) = (0, Duration::ZERO);
    let mut done = 0;
    while done < packets {
        let batch: Vec<Value> = (0..BATCH_PACKETS.min(packets - done)).map(|_| stream.next_packet()).collect();
        let start = now();
        for packet in batch {
            deliveries += bus.ingress(TELEMETRY_RAW, packet)?.deliveries;
            done += 1;
        }
        spent += start.elapsed();
        bar.set_position(done);
    }
    let start = now();
    bus.journal_mut().flush().map_err(|e| anyhow::anyhow!("flush: {e}"))?;
    spent += start.elapsed();
    bar.finish_and_clear();
    Ok((deliveries, spent, bus.into_journal()))
}

/// A chronicle writer at `path`, replacing what an earlier bench run left
/// there (the writer itself never overwrites).
fn fresh_writer(
    path: &Path,
    ctx: &metagov_storage::RunContext,
) -> Result<ChronicleWriter<std::io::BufWriter<std::fs::File>>> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot replace {}", path.display()))
        }
        _ => {}
    }
    Ok(ChronicleWriter::create(path, ctx, WriterOptions::default())?)
}

fn per_second(count: u64, spent: Duration) -> f64 {
    count as f64 / spent.as_secs_f64().max(1e-9)
}

fn sample_envelope() -> Envelope {
    Envelope {
        tick: 1,
        seq: 0,
        topic: TELEMETRY_RAW.into(),
        from: "ingress".into(),
        to: "validator".into(),
        cause: None,
        payload: std::sync::Arc::new(TelemetryStream::new(42, 1, 1).next_packet()),
    }
}

fn crossbeam_baseline(deliveries: u64) -> Duration {
    let (tx, rx) = crossbeam_channel::unbounded::<Envelope>();
    let envelope = sample_envelope();
    let start = now();
    for _ in 0..deliveries {
        // Invariant: both ends live in this function, so neither can fail.
        tx.send(envelope.clone()).expect("receiver alive");
        let received = rx.recv().expect("sender alive");
        std::hint::black_box(&received);
    }
    start.elapsed()
}

struct Sink(u64);

impl actix::Actor for Sink {
    type Context = actix::Context<Self>;
}

struct Deliver(Envelope);

impl actix::Message for Deliver {
    type Result = ();
}

impl actix::Handler<Deliver> for Sink {
    type Result = ();
    fn handle(&mut self, msg: Deliver, _: &mut Self::Context) {
        std::hint::black_box(&msg.0);
        self.0 += 1;
    }
}

struct Count;

impl actix::Message for Count {
    type Result = u64;
}

impl actix::Handler<Count> for Sink {
    type Result = u64;
    fn handle(&mut self, _: Count, _: &mut Self::Context) -> u64 {
        self.0
    }
}

/// Messages sent to the actix actor before waiting for it to catch up, so
/// its mailbox stays small (a steady state, not a 4-million-message queue).
const ACTIX_BATCH: u64 = 1024;

fn actix_baseline(deliveries: u64) -> Result<Duration> {
    let system = actix::System::new();
    let envelope = sample_envelope();
    let (spent, handled) = system.block_on(async move {
        use actix::Actor as _;
        let addr = Sink(0).start();
        let start = now();
        let mut handled = Ok(0);
        let mut sent = 0;
        while sent < deliveries {
            let batch = ACTIX_BATCH.min(deliveries - sent);
            for _ in 0..batch {
                addr.do_send(Deliver(envelope.clone()));
            }
            sent += batch;
            handled = addr.send(Count).await;
        }
        (start.elapsed(), handled)
    });
    let handled = handled.context("actix actor stopped")?;
    anyhow::ensure!(handled == deliveries, "actix handled {handled} of {deliveries} messages");
    Ok(spent)
}

/// Receives every envelope and does nothing else: the bus-side counterpart of
/// the baselines' receiving end.
struct SinkActor;

impl metagov_bus::Actor for SinkActor {
    fn subscriptions(&self) -> Vec<String> {
        vec![TELEMETRY_RAW.into()]
    }
    fn handle(&mut self, envelope: &Envelope, _: &mut metagov_bus::Outbox<'_>) {
        std::hint::black_box(envelope);
    }
}

/// Delivers the sample envelope's payload `deliveries` times, one ingress
/// and one delivery each, through `journal`.
fn same_envelope_on_bus<J: Journal>(deliveries: u64, journal: J) -> Result<(Duration, J)> {
    let mut bus = metagov_bus::Bus::new(42, BusLimits::default(), journal);
    bus.add_actor("sink", Box::new(SinkActor))?;
    bus.allow_ingress(TELEMETRY_RAW)?;
    let payload = sample_envelope().payload;
    let start = now();
    for _ in 0..deliveries {
        bus.ingress(TELEMETRY_RAW, payload.clone())?;
    }
    bus.journal_mut().flush().map_err(|e| anyhow::anyhow!("flush: {e}"))?;
    Ok((start.elapsed(), bus.into_journal()))
}

fn rate_table(
    out: &mut dyn Write,
    deliveries: u64,
    rows: &[(&str, Duration)],
    crossbeam: Duration,
    actix: Duration,
) -> Result<()> {
    let rate = |d| per_second(deliveries, d);
    writeln!(out, "| path | deliveries/s | vs crossbeam | vs actix do_send |")?;
    writeln!(out, "|---|---:|---:|---:|")?;
    for &(name, spent) in rows {
        writeln!(
            out,
            "| {name} | {:.0} | {:.2} | {:.2} |",
            rate(spent),
            rate(spent) / rate(crossbeam),
            rate(spent) / rate(actix)
        )?;
    }
    Ok(())
}

fn bench_bus(deliveries: u64, dir: &Path, out: &mut dyn Write) -> Result<()> {
    let ctx = context(&["sink"]);
    let crossbeam = crossbeam_baseline(deliveries);
    let actix = actix_baseline(deliveries)?;
    let (off, _) = same_envelope_on_bus(deliveries, NoJournal)?;
    let memory = ChronicleWriter::new(Vec::new(), &ctx, WriterOptions::default())?;
    let (to_memory, _) = same_envelope_on_bus(deliveries, memory)?;
    let path = dir.join("bench-bus-same.cmeta");
    let (to_file, writer) = same_envelope_on_bus(deliveries, fresh_writer(&path, &ctx)?)?;
    writer.seal()?;
    std::fs::remove_file(&path).ok();
    writeln!(out, "## bus deliveries per second: the same envelope, {deliveries} times\n")?;
    writeln!(out, "One telemetry packet (a 6-field record, 8 numbers) delivered to one actor that does nothing.\n")?;
    rate_table(
        out,
        deliveries,
        &[
            ("baseline: crossbeam-channel send+recv", crossbeam),
            ("baseline: actix do_send to one actor", actix),
            ("bus, journal off", off),
            ("bus, journal to memory", to_memory),
            ("bus, journal to file (buffered)", to_file),
        ],
        crossbeam,
        actix,
    )?;
    let rate = |d| per_second(deliveries, d);
    let vs_actix = rate(to_file) / rate(actix);
    let vs_crossbeam = rate(to_file) / rate(crossbeam);
    writeln!(
        out,
        "\ntarget: journal to file ≥ 1.0 × actix ({vs_actix:.2}: {}) and ≥ 0.25 × crossbeam ({vs_crossbeam:.2}: {})\n",
        met(vs_actix >= 1.0),
        met(vs_crossbeam >= 0.25)
    )?;

    let packets = deliveries / 4;
    let (made, off, _) = run_pipeline(packets, NoJournal, "pipeline, journal off")?;
    let ctx = context(&workload::ACTORS);
    let memory = ChronicleWriter::new(Vec::new(), &ctx, WriterOptions::default())?;
    let (_, to_memory, _) = run_pipeline(packets, memory, "pipeline, to memory")?;
    let path = dir.join("bench-bus.cmeta");
    let file = fresh_writer(&path, &ctx)?;
    let (_, to_file, writer) = run_pipeline(packets, file, "pipeline, to file")?;
    writer.seal()?;
    std::fs::remove_file(&path).ok();
    writeln!(out, "## bus deliveries per second: the pipeline workload, {packets} packets ({made} deliveries)\n")?;
    writeln!(out, "Validator, learner and hooks doing their (small) work, so handler time is included.\n")?;
    let scale = |d: Duration| d.mul_f64(deliveries as f64 / made as f64);
    rate_table(
        out,
        deliveries,
        &[
            ("bus, journal off", scale(off)),
            ("bus, journal to memory", scale(to_memory)),
            ("bus, journal to file (buffered)", scale(to_file)),
        ],
        crossbeam,
        actix,
    )?;
    writeln!(out)?;
    Ok(())
}

pub(super) fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// Writes every entry as one line of JSON: the baseline the chronicle's size
/// is compared with.
struct JsonLines(Vec<u8>);

impl Journal for JsonLines {
    fn record(&mut self, entry: Entry<'_>) -> Result<(), JournalError> {
        let line = OwnedEntry::from(entry).to_value().to_string();
        self.0.extend_from_slice(line.as_bytes());
        self.0.push(b'\n');
        Ok(())
    }
    fn flush(&mut self) -> Result<(), JournalError> {
        Ok(())
    }
}

/// The governance actors under the default config on the built-in default
/// scenario's telemetry (closed loop, as `simulate` runs it), journaled to
/// `journal`: deliveries made, and the journal.
fn run_governance<J: Journal>(windows: u64, journal: J, label: &str) -> Result<(u64, J)> {
    let config = Config::default();
    let scenario = Scenario::builtin("default").context("built-in default scenario")?;
    let mut stream = scenario.stream(config.run.seed, Some(windows));
    let packets = stream.total_packets();
    let mut bus = metagov_actors::MetaSupervisor::build(&config, journal)?;
    let bar = super::progress::progress_bar(packets, true, label);
    let mut deliveries = 0;
    simulate::drive(&mut bus, &mut stream, packets, |n, report, _| {
        deliveries += report.deliveries;
        if n % 1024 == 0 {
            bar.set_position(n);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok((deliveries, bus.into_journal()))
}

fn bench_size(packets: u64, out: &mut dyn Write) -> Result<()> {
    writeln!(out, "## chronicle bytes per delivery ({packets} telemetry packets)\n")?;
    let ctx = context(&workload::ACTORS);
    let writer = ChronicleWriter::new(Vec::new(), &ctx, WriterOptions::default())?;
    let (deliveries, _, writer) = run_pipeline(packets, writer, "chronicle")?;
    let chronicle = writer.seal()?.len() as f64;
    let (_, _, JsonLines(json)) = run_pipeline(packets, JsonLines(Vec::new()), "json lines")?;
    size_table("the synthetic pipeline (validator, learner, hooks)", deliveries, chronicle, json, out)?;

    // The governance actors record far richer payloads (decisions, rewards,
    // every window's evidence): the target must hold for them too.
    let windows = (packets / 8).max(1);
    let ctx = context(&metagov_actors::ACTOR_NAMES);
    let writer = ChronicleWriter::new(Vec::new(), &ctx, WriterOptions::default())?;
    let (deliveries, writer) = run_governance(windows, writer, "governance chronicle")?;
    let chronicle = writer.seal()?.len() as f64;
    let (_, JsonLines(json)) = run_governance(windows, JsonLines(Vec::new()), "governance json lines")?;
    let title = format!("the governance actors, default config and scenario, {windows} windows per job");
    size_table(&title, deliveries, chronicle, json, out)
}

/// One encoding comparison of `bench size`: the chronicle against the same
/// entries as JSON lines, raw and zstd level 3.
fn size_table(title: &str, deliveries: u64, chronicle: f64, json: Vec<u8>, out: &mut dyn Write) -> Result<()> {
    writeln!(out, "{title}: {deliveries} deliveries\n")?;
    let zstd = zstd::bulk::compress(&json, 3).context("zstd")?.len() as f64;
    let json = json.len() as f64;
    let per = |bytes: f64| bytes / deliveries as f64;
    writeln!(out, "| encoding | bytes | bytes/delivery | chronicle ÷ this |")?;
    writeln!(out, "|---|---:|---:|---:|")?;
    for (name, bytes) in
        [("JSON lines, raw", json), ("JSON lines, zstd level 3", zstd), ("chronicle (.cmeta, sealed)", chronicle)]
    {
        writeln!(out, "| {name} | {bytes:.0} | {:.2} | {:.3} |", per(bytes), chronicle / bytes)?;
    }
    writeln!(
        out,
        "\ntarget: ≤ 1.0 × zstd(JSON) ({:.3}: {}) and ≤ 0.2 × raw JSON ({:.3}: {})\n",
        chronicle / zstd,
        met(chronicle <= zstd),
        chronicle / json,
        met(chronicle <= 0.2 * json)
    )?;
    Ok(())
}

/// Writes a sealed pipeline chronicle of at least `deliveries` deliveries.
pub(super) fn write_chronicle(path: &Path, deliveries: u64, label: &str) -> Result<u64> {
    let ctx = context(&workload::ACTORS);
    let writer = fresh_writer(path, &ctx)?;
    let mut bus = workload::build_bus(42, BusLimits::default(), writer)?;
    let mut stream = TelemetryStream::new(42, 16, 4);
    let bar = super::progress::progress_bar(deliveries, true, label);
    let mut made = 0;
    while made < deliveries {
        made += bus.ingress(TELEMETRY_RAW, stream.next_packet())?.deliveries;
        if bus.tick() % 4096 == 0 {
            bar.set_position(made.min(deliveries));
        }
    }
    bus.into_journal().seal()?;
    bar.finish_and_clear();
    Ok(made)
}

pub(super) fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn time_queries(path: &Path, width: u64, samples: u32) -> Result<(Duration, u64)> {
    let reader = ChronicleReader::open(path)?;
    let last_tick = reader.frames()?.last().map_or(1, |f| f.last_tick);
    let mut rng = ActorRng::for_actor(7, "bench-query");
    let mut times = Vec::new();
    let mut found = 0;
    for _ in 0..samples {
        let start_tick = 1 + rng.below(last_tick.saturating_sub(width).max(1));
        let start = now();
        let entries = ChronicleReader::open(path)?.query_range(start_tick, start_tick + width - 1)?;
        times.push(start.elapsed());
        found += entries.len() as u64;
    }
    Ok((median(times), found / u64::from(samples)))
}

fn bench_query(big: u64, dir: &Path, out: &mut dyn Write) -> Result<PathBuf> {
    let small = big / 10;
    writeln!(
        out,
        "## query_range: {big} vs {small} deliveries (median of 25 random ranges, reader opened per query)\n"
    )?;
    let big_path = dir.join("bench-query-big.cmeta");
    let small_path = dir.join("bench-query-small.cmeta");
    write_chronicle(&big_path, big, "big chronicle")?;
    write_chronicle(&small_path, small, "small chronicle")?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    writeln!(out, "files: {} bytes and {} bytes\n", size(&big_path), size(&small_path))?;
    writeln!(out, "| ticks asked | entries returned | small file | big file | big ÷ small |")?;
    writeln!(out, "|---:|---:|---:|---:|---:|")?;
    for width in [1, 100, 1_000, 10_000] {
        let (t_small, _) = time_queries(&small_path, width, 25)?;
        let (t_big, found) = time_queries(&big_path, width, 25)?;
        writeln!(
            out,
            "| {width} | {found} | {:.3} ms | {:.3} ms | {:.2} |",
            ms(t_small),
            ms(t_big),
            t_big.as_secs_f64() / t_small.as_secs_f64().max(1e-9)
        )?;
    }
    writeln!(
        out,
        "\nexpected: time grows down the table (with the range), and big ÷ small stays near 1 (not with the file)\n"
    )?;
    std::fs::remove_file(&small_path).ok();
    Ok(big_path)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn bench_verify(path: &Path, out: &mut dyn Write) -> Result<()> {
    let bytes = std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?.len() as f64;
    writeln!(out, "## verify throughput ({bytes:.0}-byte chronicle, warm page cache)\n")?;
    verify_file(path)?; // warm the page cache for both contenders
    let start = now();
    let report = verify_file(path)?;
    let ours = start.elapsed();
    anyhow::ensure!(
        matches!(report.status, metagov_storage::IntegrityStatus::Sealed),
        "bench chronicle is not sealed: {}",
        report.status
    );
    let start = now();
    let status = Command::new("sha256sum")
        .arg(path)
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run sha256sum")?;
    let sha = start.elapsed();
    anyhow::ensure!(status.success(), "sha256sum failed: {status}");
    let mbps = |d: Duration| bytes / 1e6 / d.as_secs_f64().max(1e-9);
    writeln!(out, "| tool | MB/s | vs sha256sum |")?;
    writeln!(out, "|---|---:|---:|")?;
    writeln!(out, "| sha256sum | {:.0} | 1.00 |", mbps(sha))?;
    writeln!(
        out,
        "| metagov verify (CRC-64 of every byte, chain, index, footer, decode of every frame) | {:.0} | {:.2} |\n",
        mbps(ours),
        mbps(ours) / mbps(sha)
    )?;
    Ok(())
}

/// One steadily training job: the single-job simulate workload.
const ONE_JOB: &str = r#"
name = "bench-one-job"
description = "One steadily training job."
windows = 1000

[[jobs]]
name = "job"
domains = ["nlp"]
"#;

/// 64 closed-loop model jobs over 8 domains: `simulate` with the loop on.
const MANY_MODELS: &str = r#"
name = "bench-many-models"
description = "64 noisy-quadratic-model jobs over 8 domains, in closed loop."
windows = 500

[[jobs]]
name = "model"
count = 64
domains = ["nlp", "vision", "speech", "rl", "tabular", "code", "math", "robotics"]
pattern = "nqm"
"#;

fn simulate_throughput(scenario: Scenario, windows: u64, dir: &Path) -> Result<(u64, u64, Duration)> {
    let simulation =
        Simulation { scenario, config: Config::default(), windows: Some(windows), out_dir: dir.join("bench-simulate") };
    let start = now();
    let report = simulate::run(&simulation, &mut simulate::NoProgress)?;
    let spent = start.elapsed();
    Ok((report.summary.packets, report.summary.deliveries, spent))
}

fn peak_rss_of_run(scenario: &Path, windows: u64, dir: &Path) -> Result<u64> {
    let exe = std::env::current_exe().context("cannot find the metagov executable")?;
    let output = Command::new(exe)
        .args(["simulate", "--quiet", "--peak-rss", "--windows", &windows.to_string(), "--scenario"])
        .arg(scenario)
        .arg("--out")
        .arg(dir.join(format!("bench-rss-{windows}")))
        .output()
        .context("cannot run metagov simulate")?;
    anyhow::ensure!(output.status.success(), "metagov simulate failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.starts_with("peak RSS")).context("no peak RSS line")?;
    line.split_whitespace().nth(2).and_then(|k| k.parse().ok()).with_context(|| format!("peak RSS unknown: {line}"))
}

fn bench_simulate(quick: bool, dir: &Path, out: &mut dyn Write) -> Result<()> {
    let one_job = Scenario::from_toml_str(ONE_JOB, "bench-one-job")?;
    let many = Scenario::builtin("many-jobs").context("built-in many-jobs")?;
    let models = Scenario::from_toml_str(MANY_MODELS, "bench-many-models")?;
    let (one_windows, many_windows) = if quick { (50_000, 400) } else { (500_000, 4_000) };
    writeln!(out, "## simulate end to end (chronicle written to a file, deterministic log on)\n")?;
    writeln!(out, "| workload | packets | deliveries | packets/s | deliveries/s |")?;
    writeln!(out, "|---|---:|---:|---:|---:|")?;
    let mut rates = Vec::new();
    let workloads = [
        ("1 job", one_job, one_windows),
        ("64 jobs × 8 domains", many, many_windows),
        ("64 model jobs × 8 domains, closed loop", models, many_windows),
    ];
    for (name, scenario, windows) in workloads {
        let (packets, deliveries, spent) = simulate_throughput(scenario, windows, dir)?;
        let rate = per_second(packets, spent);
        rates.push(rate);
        writeln!(out, "| {name} | {packets} | {deliveries} | {rate:.0} | {:.0} |", per_second(deliveries, spent))?;
    }
    let slowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
    writeln!(
        out,
        "\ntarget: ≥ 100000 packets/s end to end ({slowest:.0} at the slowest: {})\n",
        met(slowest >= 100_000.0)
    )?;

    let scenario_file = dir.join("bench-one-job.toml");
    std::fs::write(&scenario_file, ONE_JOB).context("cannot write the bench scenario")?;
    let (short, long) = if quick { (10_000, 100_000) } else { (100_000, 1_000_000) };
    let rss_short = peak_rss_of_run(&scenario_file, short, dir)?;
    let rss_long = peak_rss_of_run(&scenario_file, long, dir)?;
    let ratio = rss_long as f64 / rss_short as f64;
    writeln!(out, "| windows (1 job) | peak RSS |")?;
    writeln!(out, "|---:|---:|")?;
    writeln!(out, "| {short} | {rss_short} KiB |")?;
    writeln!(out, "| {long} | {rss_long} KiB |")?;
    writeln!(
        out,
        "\ntarget: peak RSS at {long} windows within 10 % of that at {short} ({ratio:.3}: {})\n",
        met(ratio <= 1.10)
    )?;
    Ok(())
}

/// Runs the chosen benchmarks and prints a Markdown report to `out`.
pub fn run(
    which: Which,
    quick: bool,
    dir: Option<&Path>,
    config: Option<&Path>,
    bundle_bytes: Option<u64>,
    out: &mut dyn Write,
) -> Result<Outcome> {
    anyhow::ensure!(
        config.is_none() || matches!(which, Which::Governance),
        "--config applies only to `metagov bench governance`"
    );
    anyhow::ensure!(
        bundle_bytes.is_none() || matches!(which, Which::Bundle),
        "--bytes applies only to `metagov bench bundle`"
    );
    let temp;
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.to_path_buf()
        }
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let (packets, big) = if quick { (100_000, 1_000_000) } else { (1_000_000, 10_000_000) };
    writeln!(
        out,
        "# metagov bench ({}, release build: {})\n",
        if quick { "quick" } else { "full" },
        !cfg!(debug_assertions)
    )?;
    if matches!(which, Which::All | Which::Bus) {
        bench_bus(packets * 4, &dir, out)?;
    }
    if matches!(which, Which::All | Which::Size) {
        bench_size(packets / 4, out)?;
    }
    if matches!(which, Which::All | Which::Simulate) {
        bench_simulate(quick, &dir, out)?;
    }
    if matches!(which, Which::Governance) {
        let base = match config {
            Some(path) => Config::load_with(path, simulate::bus_problems)?,
            None => Config::default(),
        };
        super::bench_governance::bench_governance(&base, quick, out)?;
        return Ok(Outcome::Success);
    }
    if matches!(which, Which::Bundle) {
        let bytes = bundle_bytes.unwrap_or(if quick { 32 << 20 } else { 256 << 20 });
        super::bench_bundle::bench_bundle(bytes, &dir, out)?;
        return Ok(Outcome::Success);
    }
    if matches!(which, Which::Suite) {
        super::bench_suite::bench_suite(quick, &dir, out)?;
        return Ok(Outcome::Success);
    }
    if matches!(which, Which::Live) {
        super::bench_live::bench_live(quick, &dir, out)?;
        return Ok(Outcome::Success);
    }
    if matches!(which, Which::All | Which::Query | Which::Verify) {
        let path = if matches!(which, Which::Verify) {
            let path = dir.join("bench-query-big.cmeta");
            write_chronicle(&path, big, "chronicle")?;
            path
        } else {
            bench_query(big, &dir, out)?
        };
        if matches!(which, Which::All | Which::Verify) {
            bench_verify(&path, out)?;
        }
    }
    Ok(Outcome::Success)
}
