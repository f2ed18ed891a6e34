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
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use metagov_actors::{messages::TELEMETRY_RAW, MetaSupervisor, ACTOR_NAMES};
use metagov_bus::log;
use metagov_config::Config;
use metagov_storage::{init_session, ChronicleWriter, WriterOptions};

use crate::scenario::Scenario;
use crate::summary::{Summary, SummaryJournal, Tee};

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
    /// Draw a progress bar on standard error.
    pub progress: bool,
}

/// What a simulation wrote.
pub struct SimulationReport {
    /// The sealed chronicle.
    pub chronicle: PathBuf,
    /// The deterministic log.
    pub log: PathBuf,
    /// The summary, also written as `summary.json` and `summary.txt`.
    pub summary: Summary,
}

/// The writer options a config asks for.
pub fn writer_options(config: &Config) -> WriterOptions {
    WriterOptions {
        frame_records_max: config.chronicle.frame_records_max,
        frame_bytes_max: config.chronicle.frame_bytes_max,
    }
}

/// A progress bar on standard error (drawn only when `show` and standard
/// error is a terminal), labelled `message`, counting to `len`.
pub fn progress_bar(len: u64, show: bool, message: &str) -> ProgressBar {
    let target = if show { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
            // Invariant: the template above is a literal that indicatif accepts.
            .expect("progress template is valid")
            .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

/// Runs the simulation to the end and writes its files.
pub fn run(sim: &Simulation) -> Result<SimulationReport> {
    fs::create_dir_all(&sim.out_dir).with_context(|| format!("cannot create {}", sim.out_dir.display()))?;
    let chronicle = sim.out_dir.join("run.cmeta");
    let partial = sim.out_dir.join("run.cmeta.partial");
    let log_path = sim.out_dir.join("run.log");
    if partial.exists() {
        fs::remove_file(&partial).with_context(|| format!("cannot remove the stale {}", partial.display()))?;
    }
    let seed = sim.config.run.seed;
    let actors = ACTOR_NAMES.iter().map(|a| a.to_string()).collect();
    let context = init_session(seed, &sim.config.canonical_toml(), actors);
    let writer = ChronicleWriter::create(&partial, &context, writer_options(&sim.config))
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let stream = sim.scenario.stream(seed, sim.windows);
    let packets = stream.total_packets();
    let initial = sim.config.knobs.iter().map(|(k, knob)| (k.clone(), knob.initial)).collect();
    let journal = Tee(writer, SummaryJournal::new(initial, packets));
    let mut bus = MetaSupervisor::build(&sim.config, journal)?;

    let log_file = File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let bar = progress_bar(packets, sim.progress, &format!("{} (packets)", sim.scenario.name()));
    let outcome = log::capture(BufWriter::new(log_file), || -> Result<()> {
        tracing::info!(scenario = sim.scenario.name(), seed, packets, "simulation starts");
        for (i, packet) in stream.enumerate() {
            bus.ingress(TELEMETRY_RAW, packet).with_context(|| format!("the run stopped at packet {}", i + 1))?;
            if i % 1024 == 0 {
                bar.set_position(i as u64);
            }
        }
        tracing::info!("simulation ends");
        Ok(())
    });
    bar.finish_and_clear();
    let Tee(writer, summary) = bus.into_journal();
    if let Err(e) = outcome {
        // Keep what was recorded: a torn-free prefix, readable and replayable.
        writer.seal().ok();
        return Err(e.context(format!("the partial record is in {}", partial.display())));
    }
    let file = writer.seal().context("cannot seal the chronicle")?;
    let file = file.into_inner().map_err(|e| e.into_error()).context("cannot flush the chronicle")?;
    file.sync_all().context("cannot sync the chronicle")?;
    fs::rename(&partial, &chronicle)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), chronicle.display()))?;

    let summary = summary.finish();
    let json = serde_json::to_string_pretty(&summary).context("cannot render the summary")?;
    write(&sim.out_dir.join("summary.json"), &(json + "\n"))?;
    write(&sim.out_dir.join("summary.txt"), &summary.to_string())?;
    Ok(SimulationReport { chronicle, log: log_path, summary })
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
