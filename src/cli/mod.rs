//! The commands behind the CLI. Each writes its report to the `Write` it is
//! given and returns whether the command succeeded; errors carry their
//! context for `{:#}` printing.

pub mod bench;
mod bench_live;
pub mod run;

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use metagov_actors::{bus_limits, MetaSupervisor, ACTOR_NAMES};
use metagov_bus::OwnedEntry;
use metagov_config::{Config, DEFAULT_TOML};
use metagov_storage::{verify_file, verify_replay, ChronicleReader, IntegrityStatus, ReplayError, Tail};

use crate::priors;
use crate::scenario::Scenario;
use crate::simulate::{self as sim, Simulation};
use crate::workload;

/// How a command ended when it did not fail outright.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// The command ran but found a problem (exit 1).
    Failure,
}

/// True when `e` is a broken pipe on output (`metagov export … | head`),
/// which is not an error.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}

fn open(file: &Path) -> Result<ChronicleReader> {
    ChronicleReader::open(file).with_context(|| format!("cannot read chronicle {}", file.display()))
}

/// `metagov inspect`.
pub fn inspect(file: &Path, all_frames: bool, out: &mut dyn Write) -> Result<Outcome> {
    let reader = open(file)?;
    let ctx = reader.context();
    writeln!(out, "chronicle    {}", file.display())?;
    writeln!(out, "run id       {}", ctx.run_id)?;
    writeln!(out, "seed         {}", ctx.seed)?;
    writeln!(out, "config sha   {}", ctx.config_sha256)?;
    writeln!(out, "environment  {}", ctx.environment)?;
    writeln!(out, "actors       {}", ctx.actors.join(", "))?;
    writeln!(out, "producer     {}", ctx.producer)?;
    writeln!(out, "frames       {}", reader.frame_count())?;
    writeln!(out, "records      {}", reader.record_count())?;
    writeln!(out, "tail         {}", reader.tail())?;
    let frames = reader.frames()?;
    writeln!(out, "\n{:>7}  {:>12}  {:>21}  {:>21}", "frame", "offset", "first (tick.seq)", "last (tick.seq)")?;
    let n = frames.len();
    for (i, f) in frames.iter().enumerate() {
        if !all_frames && n > 10 && (5..n - 5).contains(&i) {
            if i == 5 {
                writeln!(out, "{:>7}  ({} more frames; --frames lists all)", "…", n - 10)?;
            }
            continue;
        }
        writeln!(
            out,
            "{:>7}  {:>12}  {:>21}  {:>21}",
            f.index,
            f.offset,
            format!("{}.{}", f.first_tick, f.first_seq),
            format!("{}.{}", f.last_tick, f.last_seq),
        )?;
    }
    let report = verify_file(file).with_context(|| format!("cannot verify {}", file.display()))?;
    writeln!(out, "\nintegrity    {}", report.status)?;
    Ok(Outcome::Success)
}

/// `metagov verify`.
pub fn verify(file: &Path, out: &mut dyn Write) -> Result<Outcome> {
    let report = verify_file(file).with_context(|| format!("cannot verify {}", file.display()))?;
    writeln!(out, "{}: {}", file.display(), report.status)?;
    writeln!(
        out,
        "  frames {}, records {}, bytes {}, chain head {}",
        report.frames, report.records, report.bytes, report.chain_head
    )?;
    Ok(if matches!(report.status, IntegrityStatus::Sealed) { Outcome::Success } else { Outcome::Failure })
}

fn keep(entry: &OwnedEntry, topic: Option<&str>) -> bool {
    match (topic, entry) {
        (None, _) => true,
        (Some(t), OwnedEntry::Delivery(e)) => &*e.topic == t,
        (Some(_), _) => false,
    }
}

fn write_row(entry: &OwnedEntry, json: bool, out: &mut dyn Write) -> io::Result<()> {
    if json {
        return writeln!(out, "{}", entry.to_value());
    }
    let (tick, seq) = entry.at();
    match entry {
        OwnedEntry::Delivery(e) => {
            writeln!(out, "{tick}.{seq}  {}  {} -> {}  {}  {}", e.topic, e.from, e.to, e.trace, e.payload)
        }
        OwnedEntry::Cycle { record, .. } => writeln!(out, "{tick}.{seq}  (cycle)  {}", record.to_value()),
        OwnedEntry::Frame { frame, .. } => writeln!(out, "{tick}.{seq}  (meta frame)  {}", frame.to_value()),
    }
}

/// `metagov query`.
pub fn query(file: &Path, from: u64, to: u64, topic: Option<&str>, json: bool, out: &mut dyn Write) -> Result<Outcome> {
    anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
    let reader = open(file)?;
    reader
        .visit_range(from, to, |entry| -> Result<()> {
            if keep(&entry, topic) {
                write_row(&entry, json, out)?;
            }
            Ok(())
        })
        .with_context(|| format!("cannot query {}", file.display()))?;
    Ok(Outcome::Success)
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Whether `a` and `b` are the same file (the same device and inode, links
/// followed). A path that does not exist is nobody's twin.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Runs `write` on standard output, or on a temporary file beside `output`
/// that replaces `output` only once everything was written — so a failed
/// command never leaves a half-written file, and never touches its input
/// (`output` naming the same file as `input` is refused up front).
pub fn write_output<T>(
    input: &Path,
    output: Option<&Path>,
    stdout: &mut dyn Write,
    write: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<T> {
    let Some(path) = output else { return write(stdout) };
    anyhow::ensure!(
        !same_file(input, path),
        "refusing to write {}: it is the input {} (a command never writes to what it reads)",
        path.display(),
        input.display()
    );
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp =
        tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    let result = {
        let mut out = BufWriter::new(temp.as_file_mut());
        let result = write(&mut out)?;
        out.flush().with_context(|| format!("cannot write {}", path.display()))?;
        result
    };
    temp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(result)
}

/// `metagov export`.
pub fn export(file: &Path, json: bool, output: Option<&Path>, stdout: &mut dyn Write) -> Result<Outcome> {
    let reader = open(file)?;
    write_output(file, output, stdout, |out| export_entries(&reader, file, json, out))?;
    if matches!(reader.tail(), Tail::Torn { .. }) {
        eprintln!("metagov: warning: {}: {}", file.display(), reader.tail());
    }
    Ok(Outcome::Success)
}

fn export_entries(reader: &ChronicleReader, file: &Path, json: bool, out: &mut dyn Write) -> Result<()> {
    if !json {
        writeln!(out, "kind,tick,seq,topic,from,to,trace,payload")?;
    }
    for entry in reader.records() {
        let entry = entry.with_context(|| format!("cannot read {}", file.display()))?;
        if json {
            writeln!(out, "{}", entry.to_value())?;
            continue;
        }
        let (tick, seq) = entry.at();
        let (topic, from, to, trace, payload) = match &entry {
            OwnedEntry::Delivery(e) => (
                e.topic.to_string(),
                e.from.to_string(),
                e.to.to_string(),
                e.trace.0.to_string(),
                e.payload.to_string(),
            ),
            OwnedEntry::Cycle { record, .. } => {
                (String::new(), String::new(), String::new(), String::new(), record.to_value().to_string())
            }
            OwnedEntry::Frame { frame, .. } => {
                (String::new(), String::new(), String::new(), String::new(), frame.to_value().to_string())
            }
        };
        writeln!(
            out,
            "{},{tick},{seq},{},{},{},{trace},{}",
            entry.kind(),
            csv_field(&topic),
            csv_field(&from),
            csv_field(&to),
            csv_field(&payload)
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `metagov replay --verify`: rebuilds the recorded actor set from the
/// chronicle's own config and compares every entry.
pub fn replay_verify(file: &Path, out: &mut dyn Write) -> Result<Outcome> {
    let reader = open(file)?;
    let result = verify_replay(&reader, |ctx, journal| {
        let config = Config::from_toml_str(&ctx.config_text, "the chronicle's config").map_err(|e| e.to_string())?;
        if ctx.actors == ACTOR_NAMES {
            return MetaSupervisor::build(&config, journal).map_err(|e| e.to_string());
        }
        if ctx.actors == workload::ACTORS {
            return workload::build_bus(ctx.seed, bus_limits(&config), journal).map_err(|e| e.to_string());
        }
        Err(format!("no known actor set matches the recorded actors {:?}", ctx.actors))
    });
    match result {
        Ok(report) => {
            writeln!(
                out,
                "{}: replay matches: {} ingress packets re-injected, {} entries identical",
                file.display(),
                report.ingress,
                report.entries
            )?;
            if !report.complete {
                writeln!(out, "  (the recording is {}; it matched up to its last whole frame)", reader.tail())?;
            }
            Ok(Outcome::Success)
        }
        Err(ReplayError::Diverged(d)) => {
            write!(out, "{}: {d}", file.display())?;
            Ok(Outcome::Failure)
        }
        Err(e) => Err(e).with_context(|| format!("cannot replay {}", file.display())),
    }
}

/// The options of `metagov simulate`.
pub struct SimulateArgs {
    /// A built-in scenario name or a scenario file.
    pub scenario: String,
    /// A config file, or the defaults.
    pub config: Option<PathBuf>,
    /// Overrides the config's seed.
    pub seed: Option<u64>,
    /// Overrides the scenario's windows.
    pub windows: Option<u64>,
    /// The output directory.
    pub out: Option<PathBuf>,
    /// No progress bar.
    pub quiet: bool,
    /// Where the learned prior is carried across runs.
    pub prior_dir: Option<PathBuf>,
    /// Replace the files of an earlier run in `out`.
    pub force: bool,
}

/// The largest seed a config file can hold (TOML integers are signed).
const SEED_MAX: u64 = i64::MAX as u64;

/// `metagov simulate`.
pub fn simulate(args: &SimulateArgs, out: &mut dyn Write) -> Result<Outcome> {
    let scenario = Scenario::resolve(&args.scenario)?;
    let mut config = match &args.config {
        Some(path) => Config::load_with(path, sim::bus_problems)?,
        None => Config::default(),
    };
    if let Some(seed) = args.seed {
        anyhow::ensure!(seed <= SEED_MAX, "--seed {seed} is above the largest seed a config can hold, {SEED_MAX}");
        config.run.seed = seed;
    }
    if let Some(windows) = args.windows {
        anyhow::ensure!(
            (1..=Scenario::WINDOWS_MAX).contains(&windows),
            "--windows {windows} is outside 1..={}",
            Scenario::WINDOWS_MAX
        );
    }
    let seed = config.run.seed;
    writeln!(out, "metagov simulate: scenario `{}` ({}), seed {seed}", scenario.name(), scenario.description())?;
    if let Some(dir) = &args.prior_dir {
        start_from_prior(dir, &mut config, out)?;
    }
    // After the prior: it is part of the run's config, so of its hash.
    let out_dir = args.out.clone().unwrap_or_else(|| default_out_dir(scenario.name(), &config));
    // The default directory names scenario, seed and config hash, so what it
    // holds is an earlier run of the same: replaced. Any other is kept unless
    // --force.
    clear_earlier_run(&out_dir, args.force || args.out.is_none())?;
    out.flush()?;
    let simulation = Simulation { scenario, config, windows: args.windows, out_dir, progress: !args.quiet };
    let report = sim::run(&simulation)?;
    writeln!(out, "\n{}", report.summary)?;
    writeln!(out, "chronicle    {}", report.chronicle.display())?;
    writeln!(out, "log          {}", report.log.display())?;
    writeln!(out, "summary      {}", simulation.out_dir.join("summary.json").display())?;
    if let Some(dir) = &args.prior_dir {
        if report.summary.prior.is_empty() {
            writeln!(out, "prior        none learned in this run; nothing saved to {}", dir.display())?;
        } else {
            let saved = priors::save_next(dir, &simulation.config, &report.summary.prior)
                .with_context(|| format!("cannot save the prior to {}", dir.display()))?;
            let pruned = if saved.pruned.is_empty() { String::new() } else { format!(" (pruned {:?})", saved.pruned) };
            writeln!(out, "prior        saved as version {} in {}{pruned}", saved.version, saved.path.display())?;
        }
    }
    writeln!(out, "\nreplay it:   metagov replay {} --verify", report.chronicle.display())?;
    Ok(Outcome::Success)
}

/// The default output directory of a run: `metagov-runs/SCENARIO-seedSEED-HASH`,
/// HASH the first 12 hex digits of the config's SHA-256, so runs of
/// different configs never share a directory.
pub fn default_out_dir(scenario: &str, config: &Config) -> PathBuf {
    let hash = config.sha256_hex();
    PathBuf::from(format!("metagov-runs/{scenario}-seed{}-{}", config.run.seed, &hash[..12]))
}

/// Removes the files an earlier run left in `dir` (all of them, so no two
/// runs' files are ever mixed), or refuses unless `replace`.
fn clear_earlier_run(dir: &Path, replace: bool) -> Result<()> {
    let earlier: Vec<&str> = sim::RUN_FILES.iter().copied().filter(|name| dir.join(name).exists()).collect();
    if earlier.is_empty() {
        return Ok(());
    }
    anyhow::ensure!(
        replace,
        "{} holds files of an earlier run ({}); pass --force to replace them, or choose another --out",
        dir.display(),
        earlier.join(", ")
    );
    for name in earlier {
        let path = dir.join(name);
        fs::remove_file(&path).with_context(|| format!("cannot remove {} of the earlier run", path.display()))?;
    }
    Ok(())
}

/// Sets the knobs' initial values from the newest valid prior in `dir`.
fn start_from_prior(dir: &Path, config: &mut Config, out: &mut dyn Write) -> Result<()> {
    let loaded =
        priors::load_newest(dir, config).with_context(|| format!("cannot read priors in {}", dir.display()))?;
    for (version, error) in &loaded.skipped {
        writeln!(out, "prior        skipped version {version} in {}: {error}", dir.display())?;
    }
    match &loaded.prior {
        Some(prior) => {
            let unknown = priors::apply(config, prior);
            writeln!(out, "prior        starting from version {} in {}", prior.version, dir.display())?;
            if !unknown.is_empty() {
                writeln!(out, "prior        left out (not knobs of this config): {}", unknown.join(", "))?;
            }
        }
        None => {
            writeln!(out, "prior        no valid version in {} yet; starting from the config's knobs", dir.display())?
        }
    }
    Ok(())
}

/// `metagov prior show`.
pub fn prior_show(dir: &Path, config: Option<&Path>, out: &mut dyn Write) -> Result<Outcome> {
    anyhow::ensure!(dir.exists(), "{} does not exist", dir.display());
    anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    let config = match config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let loaded =
        priors::load_newest(dir, &config).with_context(|| format!("cannot read priors in {}", dir.display()))?;
    for (version, error) in &loaded.skipped {
        writeln!(out, "skipped version {version}: {error}")?;
    }
    let Some(prior) = loaded.prior else {
        writeln!(out, "{}: no valid prior version", dir.display())?;
        return Ok(Outcome::Failure);
    };
    writeln!(out, "{}: version {}", dir.display(), prior.version)?;
    for (name, value) in &prior.values {
        writeln!(out, "  {name:<16} {value}")?;
    }
    Ok(Outcome::Success)
}

/// `metagov simulate --list`.
pub fn list_scenarios(out: &mut dyn Write) -> Result<Outcome> {
    for name in Scenario::builtin_names() {
        // Invariant: every listed name is a built-in.
        let scenario = Scenario::builtin(name).expect("a listed built-in exists");
        writeln!(
            out,
            "{name:<16} {:>6} windows {:>4} jobs  {}",
            scenario.windows(),
            scenario.job_count(),
            scenario.description()
        )?;
    }
    Ok(Outcome::Success)
}

/// `metagov config init`.
pub fn config_init(file: Option<&Path>, force: bool, out: &mut dyn Write) -> Result<Outcome> {
    let Some(path) = file else {
        out.write_all(DEFAULT_TOML.as_bytes())?;
        return Ok(Outcome::Success);
    };
    anyhow::ensure!(force || !path.exists(), "{} exists; pass --force to replace it", path.display());
    std::fs::write(path, DEFAULT_TOML).with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(
        out,
        "wrote {} (the defaults, commented); check it with `metagov config check {}`",
        path.display(),
        path.display()
    )?;
    Ok(Outcome::Success)
}

/// `metagov config check`.
pub fn config_check(file: &Path, out: &mut dyn Write) -> Result<Outcome> {
    match Config::load_with(file, sim::bus_problems) {
        Ok(config) => {
            writeln!(out, "{}: ok (config sha256 {})", file.display(), config.sha256_hex())?;
            Ok(Outcome::Success)
        }
        Err(error @ metagov_config::ConfigError::Invalid { .. }) => {
            // Shown capped: the first problems, then a count.
            writeln!(out, "{error}")?;
            let metagov_config::ConfigError::Invalid { problems } = error else { unreachable!("matched above") };
            writeln!(
                out,
                "{}: {} problem{}",
                file.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            )?;
            Ok(Outcome::Failure)
        }
        Err(e) => Err(e.into()),
    }
}

/// This process's peak resident set size in KiB (`VmHWM` of
/// /proc/self/status), where the platform has it.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
