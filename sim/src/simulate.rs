//! `metagov simulate`: a scenario's seeded telemetry through the full
//! governance actor set, recorded in a chronicle, with the deterministic log
//! and a summary beside it.
//!
//! Output directory layout: `run.cmeta` (the chronicle), `run.log` (the
//! deterministic log), `summary.json` and `summary.txt`. The chronicle is
//! written as `run.cmeta.partial` and renamed when sealed, so a crashed or
//! interrupted run never leaves a file that looks complete.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use metagov_actors::messages::{POLICY_UPDATE, TELEMETRY_RAW};
use metagov_actors::{MetaSupervisor, Output, ACTOR_NAMES};
use metagov_bus::{log, Bus, Egress, IngressReport, Journal, RngState};
use metagov_config::Config;
use metagov_storage::{init_session, ChronicleWriter, RunContext, WriterOptions};

use crate::scenario::{Scenario, TelemetryStream};
use crate::summary::{Summary, SummaryCollector};

/// Packets an estimate runs before extrapolating (at most).
const PROBE_PACKETS_MAX: u64 = 2048;

/// Feeds at most `packets` packets of `stream` into `bus`, one tick each,
/// and closes the loop: after each tick, every `policy.update` the actors
/// emitted is applied to its job before the job's next window, so a model
/// job trains under the knobs the supervisor set. The decisions are
/// recorded deliveries and the next packets are ingress, so a replay of the
/// chronicle needs nothing of the loop. `each` sees every tick's report and
/// egress, with the packet's 1-based number.
///
/// # Errors
///
/// The bus's error, naming the packet; or the first error of `each`.
pub fn drive<J: Journal>(
    bus: &mut Bus<J>,
    stream: &mut TelemetryStream,
    packets: u64,
    mut each: impl FnMut(u64, &IngressReport, &[Egress]) -> Result<()>,
) -> Result<()> {
    let mut n = 0;
    while n < packets {
        let Some(packet) = stream.next() else { break };
        n += 1;
        let report = bus.ingress(TELEMETRY_RAW, packet).with_context(|| format!("the run stopped at packet {n}"))?;
        // Only policy updates matter to the loop: the rest is not decoded.
        for message in bus.egress().iter().filter(|message| &*message.topic == POLICY_UPDATE) {
            if let Output::PolicyUpdate(update) = Output::from_egress(message).with_context(|| format!("packet {n}"))? {
                stream.apply(&update.job, &update.knobs);
            }
        }
        each(n, &report, bus.egress())?;
    }
    Ok(())
}

/// How large a run's chronicle will be, measured on its own first packets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SizeEstimate {
    /// Packets the whole run ingests.
    pub packets: u64,
    /// Packets the estimate ran.
    pub probe_packets: u64,
    /// Deliveries per packet in the probe: the actor set's real fan-out
    /// under this config, rejected packets included.
    pub deliveries_per_packet: f64,
    /// Sealed chronicle bytes per delivery in the probe (cycle records, meta
    /// frames, frame and index overhead included).
    pub bytes_per_delivery: f64,
    /// The estimate: packets × deliveries per packet × bytes per delivery.
    pub bytes: u64,
}

/// A `Write` that keeps only the count of bytes written.
#[derive(Default)]
struct ByteCount(u64);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Estimates the chronicle of `scenario` under `config` by running its
/// first packets (at most 2,048) through the real actor set into a sealed
/// chronicle that only counts bytes, then extrapolating per packet. The
/// per-delivery size differs by workload (docs/BENCHMARKS.md measures 19.3
/// bytes for the kernel workload; a governance run is nearer 30), so it is
/// measured here rather than assumed. Nothing is written to disk.
///
/// # Errors
///
/// If the probe itself stops (the run would stop the same way).
pub fn estimate_chronicle(scenario: &Scenario, config: &Config, windows: Option<u64>) -> Result<SizeEstimate> {
    let seed = config.run.seed;
    let actors = ACTOR_NAMES.iter().map(|a| a.to_string()).collect();
    let context = init_session(seed, &config.canonical_toml(), actors);
    let mut stream = scenario.stream(seed, windows);
    let packets = stream.total_packets();
    let probe_packets = packets.min(PROBE_PACKETS_MAX);
    let writer = ChronicleWriter::new(ByteCount::default(), &context, WriterOptions::from(&config.chronicle))?;
    let mut bus = MetaSupervisor::build(config, writer)?;
    let mut deliveries = 0_u64;
    drive(&mut bus, &mut stream, probe_packets, |_, report, _| {
        deliveries += report.deliveries;
        Ok(())
    })
    .context("the run would stop the same way")?;
    let bytes_probe = bus.into_journal().seal().context("cannot seal the probe chronicle")?.0;
    #[allow(clippy::cast_precision_loss, reason = "an estimate: counts far below 2^53 in the probe")]
    let (deliveries_per_packet, bytes_per_delivery) =
        (deliveries as f64 / probe_packets.max(1) as f64, bytes_probe as f64 / deliveries.max(1) as f64);
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "an estimate of a byte count; saturates at u64::MAX"
    )]
    let bytes = (packets as f64 * deliveries_per_packet * bytes_per_delivery) as u64;
    Ok(SizeEstimate { packets, probe_packets, deliveries_per_packet, bytes_per_delivery, bytes })
}

/// Bytes free for an unprivileged writer on the filesystem holding `dir`.
///
/// # Errors
///
/// What `statvfs` said.
pub fn free_bytes(dir: &Path) -> Result<u64> {
    let stat = rustix::fs::statvfs(dir).with_context(|| format!("cannot read the free space of {}", dir.display()))?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Windows of the built-in `default` scenario (4 jobs, 3 domains: healthy
/// training, a plateau, a memory spike, garbage) that probe the bus limits:
/// enough for every actor and topic to fire, the meta-update cascade
/// (scheduler → aggregator → Reptile → hooks) several times over.
const PROBE_WINDOWS: u64 = 100;

/// Runs the probe packets (the first `PROBE_WINDOWS` (100) windows of the
/// built-in `default` scenario) through the actor set `config` builds, with
/// the config's own bus limits, and returns the limits they used: the
/// longest the queue was and the most one handler emitted.
///
/// # Errors
///
/// If the limits are too small, the bus's error naming the limit and where.
pub fn run_probe(config: &Config) -> Result<metagov_bus::BusLimits> {
    // Invariant: the built-ins are checked by the scenario tests.
    let scenario = Scenario::builtin("default").expect("the built-in default scenario exists");
    let mut bus = MetaSupervisor::build(config, metagov_bus::NoJournal)?;
    let mut stream = scenario.stream(config.run.seed, Some(PROBE_WINDOWS));
    drive(&mut bus, &mut stream, u64::MAX, |_, _, _| Ok(())).context("the probe stopped")?;
    Ok(bus.limits_used())
}

/// The smallest bus limits with which the actor set `config` builds
/// processes each probe packet: measured by [`run_probe`] with the limits
/// raised to the largest a config allows, so it is the actor set's real
/// fan-out (queue: a packet's breadth-first cascade; outbox: the most one
/// actor emits for one delivery), not a number kept beside it.
///
/// # Errors
///
/// If the probe stops even then (an actor rejects the config).
pub fn limits_needed(config: &Config) -> Result<metagov_bus::BusLimits> {
    let mut roomy = config.clone();
    (roomy.bus.queue_len_max, roomy.bus.outbox_len_max) = (1 << 24, 1 << 20);
    run_probe(&roomy)
}

/// `config`'s bus bounds that are below [`limits_needed`], as (key,
/// message) for [`Config::from_toml_str_with`].
pub fn bus_problems(config: &Config) -> Vec<(String, String)> {
    let needed = match limits_needed(config) {
        Ok(needed) => needed,
        Err(error) => return vec![("bus".into(), format!("the actor set cannot run one packet: {error:#}"))],
    };
    let mut problems = Vec::new();
    for (key, value, minimum) in [
        ("bus.queue_len_max", config.bus.queue_len_max, needed.queue_len_max),
        ("bus.outbox_len_max", config.bus.outbox_len_max, needed.outbox_len_max),
    ] {
        if value < minimum {
            let message =
                format!("{value} is below {minimum}, the least the configured actor set needs to process one packet");
            problems.push((key.to_owned(), message));
        }
    }
    problems
}

/// Rebuilds the actor set a chronicle recorded, from its context (seed,
/// config text, actor names): the governance set of [`MetaSupervisor`] or
/// the kernel's [`workload`](crate::workload). What a replay hands to
/// `metagov_storage::verify_replay`.
///
/// # Errors
///
/// If the recorded config does not read, or no known actor set has the
/// recorded actors.
pub fn rebuild<J: Journal>(ctx: &RunContext, journal: J) -> Result<Bus<J>, String> {
    let config = Config::from_toml_str(&ctx.config_text, "the chronicle's config").map_err(|e| e.to_string())?;
    if ctx.actors == ACTOR_NAMES {
        return MetaSupervisor::build(&config, journal).map_err(|e| e.to_string());
    }
    if ctx.actors == crate::workload::ACTORS {
        return crate::workload::build_bus(ctx.seed, metagov_actors::bus_limits(&config), journal)
            .map_err(|e| e.to_string());
    }
    Err(format!("no known actor set matches the recorded actors {:?}", ctx.actors))
}

/// Every file a run writes in its directory.
pub const RUN_FILES: [&str; 5] = ["run.cmeta", "run.cmeta.partial", "run.log", "summary.json", "summary.txt"];

/// What to simulate.
pub struct Simulation {
    /// The scenario whose telemetry is generated.
    pub scenario: Scenario,
    /// The governance config; its `run.seed` seeds both the telemetry and
    /// the actors.
    pub config: Config,
    /// Overrides the scenario's window count.
    pub windows: Option<u64>,
    /// Where the files go (created if missing).
    pub out_dir: PathBuf,
}

/// What a simulation wrote.
pub struct SimulationReport {
    /// The sealed chronicle.
    pub chronicle: PathBuf,
    /// The deterministic log.
    pub log: PathBuf,
    /// The summary, also written as `summary.json` and `summary.txt`.
    pub summary: Summary,
    /// Every random generator of the run, before its first packet and
    /// after its last.
    pub rng: RngTrace,
}

/// The states of a run's random generators: each actor's (by name, in
/// registration order) then each scenario job's (`scenario:<job>`, in file
/// order). Each is a pure function of the seed, the name and the words
/// drawn, so the states before a run are known from its seed alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RngTrace {
    /// Before the first packet.
    pub before: Vec<(String, RngState)>,
    /// After the last.
    pub after: Vec<(String, RngState)>,
}

/// The generator states of `bus`'s actors, then of `stream`'s jobs.
fn rng_states<J: Journal>(bus: &Bus<J>, stream: &TelemetryStream) -> Vec<(String, RngState)> {
    let mut states = bus.rng_states();
    states.extend(stream.rng_states());
    states
}

/// Where a long run reports how far it got: the shell draws a bar, tests
/// and benchmarks pass [`NoProgress`]. Called from the run's own thread.
pub trait Progress {
    /// The run starts: `total` packets, under `label`.
    fn start(&mut self, total: u64, label: &str);
    /// `done` packets went through.
    fn advance(&mut self, done: u64);
    /// The run ended (also when it failed).
    fn finish(&mut self);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _total: u64, _label: &str) {}
    fn advance(&mut self, _done: u64) {}
    fn finish(&mut self) {}
}

/// Runs the simulation to the end and writes its files, reporting to
/// `progress` every 1,024 packets; refuses to start when the estimated
/// chronicle ([`estimate_chronicle`]) would not fit the free space.
pub fn run(sim: &Simulation, progress: &mut dyn Progress) -> Result<SimulationReport> {
    let estimate = estimate_chronicle(&sim.scenario, &sim.config, sim.windows)?;
    run_estimated(sim, &estimate, 1, progress)
}

/// [`run`] with the chronicle's estimate already made (by
/// [`estimate_chronicle`] on the same scenario, config and windows), for a
/// caller that makes `copies` runs of the same at once (`metagov test` runs
/// each seed twice): the free space must hold `copies` chronicles.
pub fn run_estimated(
    sim: &Simulation,
    estimate: &SizeEstimate,
    copies: u64,
    progress: &mut dyn Progress,
) -> Result<SimulationReport> {
    fs::create_dir_all(&sim.out_dir).with_context(|| format!("cannot create {}", sim.out_dir.display()))?;
    let free = free_bytes(&sim.out_dir)?;
    anyhow::ensure!(
        estimate.bytes.saturating_mul(copies.max(1)) <= free,
        "the chronicle would take about {} bytes ({} packets × {:.2} deliveries/packet × {:.1} bytes/delivery, \
         measured on the first {} packets){}, more than the {free} bytes free on {}; shorten the run (--windows) \
         or free space",
        estimate.bytes,
        estimate.packets,
        estimate.deliveries_per_packet,
        estimate.bytes_per_delivery,
        estimate.probe_packets,
        if copies > 1 { format!(", {copies} times over") } else { String::new() },
        sim.out_dir.display()
    );
    let chronicle = sim.out_dir.join("run.cmeta");
    let partial = sim.out_dir.join("run.cmeta.partial");
    let log_path = sim.out_dir.join("run.log");
    if partial.exists() {
        fs::remove_file(&partial).with_context(|| format!("cannot remove the stale {}", partial.display()))?;
    }
    let seed = sim.config.run.seed;
    let actors = ACTOR_NAMES.iter().map(|a| a.to_string()).collect();
    let context = init_session(seed, &sim.config.canonical_toml(), actors);
    let writer = ChronicleWriter::create(&partial, &context, WriterOptions::from(&sim.config.chronicle))
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut stream = sim.scenario.stream(seed, sim.windows);
    let packets = stream.total_packets();
    let initial = sim.config.initial_knobs();
    let mut summary = SummaryCollector::new(initial, packets, &stream.training());
    let mut bus = MetaSupervisor::build(&sim.config, writer)?;
    let rng_before = rng_states(&bus, &stream);

    let log_file = File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    progress.start(packets, &format!("{} (packets)", sim.scenario.name()));
    let outcome = log::capture(BufWriter::new(log_file), || -> Result<()> {
        tracing::info!(scenario = sim.scenario.name(), seed, packets, "simulation starts");
        drive(&mut bus, &mut stream, packets, |n, report, egress| {
            summary.observe(report, egress).with_context(|| format!("packet {n}"))?;
            if n % 1024 == 0 {
                progress.advance(n);
            }
            Ok(())
        })?;
        tracing::info!("simulation ends");
        Ok(())
    });
    progress.finish();
    let rng = RngTrace { before: rng_before, after: rng_states(&bus, &stream) };
    let writer = bus.into_journal();
    if let Err(e) = outcome {
        // Keep what was recorded, sealed up to its last whole frame: also on
        // a full disk (the failed write's bytes are cut, which frees the room
        // for the index and footer). If even that fails, the file is still an
        // unsealed chronicle of its whole frames.
        let kept = match writer.seal_written() {
            Ok(file) => match file.sync_all() {
                Ok(()) => "sealed up to its last whole frame",
                Err(_) => "sealed up to its last whole frame, not synced",
            },
            Err(_) => "unsealed, readable up to its last whole frame",
        };
        return Err(e.context(format!("the partial record ({kept}) is in {}", partial.display())));
    }
    let file = writer.seal().context("cannot seal the chronicle")?;
    let file = file.into_inner().map_err(|e| e.into_error()).context("cannot flush the chronicle")?;
    file.sync_all().context("cannot sync the chronicle")?;
    fs::rename(&partial, &chronicle)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), chronicle.display()))?;

    let summary = summary.finish(&stream.training());
    let json = serde_json::to_string_pretty(&summary).context("cannot render the summary")?;
    write(&sim.out_dir.join("summary.json"), &(json + "\n"))?;
    write(&sim.out_dir.join("summary.txt"), &summary.to_string())?;
    Ok(SimulationReport { chronicle, log: log_path, summary, rng })
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
