//! `metagov run`: the live supervisor beside training jobs (the shell is
//! `metagov-live`; this module turns options into its [`LiveOptions`] and
//! sets up logging for people beside the deterministic log).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use metagov_actors::ACTOR_NAMES;
use metagov_config::Config;
use metagov_live::{CoreOptions, Durability, LiveOptions};
use metagov_storage::init_session;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::Layer;

use super::Outcome;

/// The options of `metagov run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Config for a new run (default: built-in). A resumed run keeps
    /// its recorded config; a different --config is refused.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run seed (overrides the config's run.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The run directory [default: metagov-runs/live-RUNID].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// HTTP address (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,
    /// Also take JSON lines over TCP on this address.
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<SocketAddr>,
    /// Also take JSON lines on standard input (answers on standard
    /// output); the end of input stops the supervisor.
    #[arg(long)]
    pub stdin: bool,
    /// fsync: acknowledge once synced to disk (group commit); buffered:
    /// once written to the OS (faster; a power loss may lose the last
    /// acknowledged packets, and responses say "buffered").
    #[arg(long, value_enum, default_value_t = DurabilityArg::Fsync)]
    pub durability: DurabilityArg,
    /// A file holding a bearer token clients must present
    /// (`Authorization: Bearer TOKEN`). Required to listen beyond loopback.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Requests waiting for the core at most; one more is answered 429.
    #[arg(long, default_value_t = 4096)]
    pub queue_len_max: usize,
    /// JSON-lines TCP connections served at once at most.
    #[arg(long, default_value_t = 64)]
    pub connections_max: usize,
    /// Once the current chronicle segment holds this many bytes, it is
    /// sealed and the run goes on in the next (run.0001.cmeta, …), each
    /// chained to the one before; every chronicle command reads the run
    /// directory as one run.
    #[arg(long, value_name = "BYTES", default_value_t = metagov_live::core::SEGMENT_BYTES_DEFAULT,
          value_parser = clap::value_parser!(u64).range(metagov_live::core::SEGMENT_BYTES_MIN..))]
    pub segment_bytes: u64,
}

/// `--durability`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum DurabilityArg {
    /// Acknowledge once synced to disk.
    Fsync,
    /// Acknowledge once written to the OS.
    Buffered,
}

/// `metagov run`.
pub fn run(args: RunArgs, out: &mut dyn Write) -> Result<Outcome> {
    let durability = match args.durability {
        DurabilityArg::Fsync => Durability::Fsync,
        DurabilityArg::Buffered => Durability::Buffered,
    };
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(seed) = args.seed {
        anyhow::ensure!(seed <= i64::MAX as u64, "--seed {seed} is above the largest seed a config can hold");
        config.run.seed = seed;
    }
    let token = match &args.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let token = text.trim_end_matches(['\n', '\r']).to_string();
            anyhow::ensure!(!token.is_empty(), "{} is empty: a token must have at least one character", path.display());
            Some(token)
        }
        None => None,
    };
    let dir = match args.out {
        Some(dir) => dir,
        None => {
            let actors = ACTOR_NAMES.iter().map(|a| a.to_string()).collect();
            let context = init_session(config.run.seed, &config.canonical_toml(), actors);
            PathBuf::from(format!("metagov-runs/live-{}", context.run_id))
        }
    };
    // People read the terminal (wall-clock times, the shell's own events);
    // run.log keeps the deterministic account of every delivery.
    let human = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_filter(
        Targets::new().with_target("metagov_live", LevelFilter::INFO).with_target("metagov::", LevelFilter::INFO),
    );
    metagov_bus::log::install_with(human);
    let options = LiveOptions {
        core: CoreOptions {
            dir: dir.clone(),
            config,
            config_given: args.config.is_some(),
            durability,
            segment_bytes_max: args.segment_bytes,
        },
        listen: args.listen,
        tcp: args.tcp,
        stdin: args.stdin,
        token,
        queue_len_max: args.queue_len_max,
        connections_max: args.connections_max,
    };
    let report = metagov_live::run(options, |listening| {
        let tcp = listening.tcp.map(|a| format!(", JSON lines on tcp://{a}")).unwrap_or_default();
        eprintln!(
            "metagov run: listening on http://{}{tcp}; run directory {} ({} mode); Ctrl-C to stop",
            listening.http,
            dir.display(),
            durability.as_str()
        );
    })?;
    // Standard output may carry JSON lines (--stdin): the last words go to
    // standard error.
    let segments = super::counted(u64::from(report.segments), "segment");
    eprintln!(
        "metagov run: stopped after tick {} ({} resumed); chronicle sealed: {} ({segments})",
        report.ticks,
        report.resumed_packets,
        report.dir.display()
    );
    eprintln!("replay it:   metagov replay {} --verify", report.dir.display());
    out.flush()?;
    Ok(Outcome::Success)
}

/// The one chronicle file a command that works on a file (`sign`) takes:
/// the file given, or a run directory's last segment (whose chain head
/// covers every segment before it).
pub fn last_segment(path: PathBuf) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path);
    }
    let segments = metagov_storage::segment_files(&path)?;
    // Invariant: `segment_files` refuses a directory without `run.cmeta`.
    Ok(segments.last().expect("a run directory has a first segment").clone())
}

/// `metagov simulate --telemetry FILE`: a recorded JSON-lines packet stream
/// through the supervisor exactly as `metagov run` takes it (the same
/// validator, duplicate rule and records), into a run directory that
/// `metagov run --out DIR` can carry on.
pub fn simulate_telemetry(file: &Path, config: Config, out_dir: &Path, out: &mut dyn Write) -> Result<Outcome> {
    use std::io::BufRead;

    // Checked before opening: opening a FIFO with no writer would block.
    let kind = std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    anyhow::ensure!(kind.is_file(), "{} is not a regular file (a telemetry file must be one)", file.display());
    let input = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let chronicle = out_dir.join(metagov_storage::FIRST_SEGMENT_FILE);
    anyhow::ensure!(
        !chronicle.exists(),
        "{} holds a run already: choose another --out (or carry it on with `metagov run --out {}`)",
        out_dir.display(),
        out_dir.display()
    );
    let actors = ACTOR_NAMES.iter().map(|a| a.to_string()).collect();
    let context = init_session(config.run.seed, &config.canonical_toml(), actors);
    // Written as a live run's first segment, so `metagov run` can carry it on.
    let writer =
        metagov_storage::ChronicleWriter::create(&chronicle, &context, metagov_live::core::writer_options(&config))
            .with_context(|| format!("cannot create {}", chronicle.display()))?;
    let mut supervisor = metagov_live::Supervisor::new(&config, writer)?;
    let log_path = out_dir.join(metagov_live::core::LOG_FILE);
    let log_file = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut tally = std::collections::BTreeMap::<String, u64>::new();
    let mut changes = std::collections::BTreeMap::<String, u64>::new();
    let mut lines = 0u64;
    metagov_bus::log::capture(std::io::BufWriter::new(log_file), || -> Result<()> {
        let mut reader = std::io::BufReader::new(input);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).with_context(|| format!("cannot read {}", file.display()))?;
            if n == 0 {
                return Ok(());
            }
            lines += 1;
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let packet = metagov_live::Packet::from_bytes(line.clone());
            let answer = supervisor.submit(packet).with_context(|| format!("{}:{lines}", file.display()))?;
            let key = match &answer.outcome {
                metagov_live::Outcome::Rejected { reason, .. } => format!("rejected {reason}"),
                other => format!("{other:?}").to_lowercase(),
            };
            *tally.entry(key).or_default() += 1;
            for knob in answer.changed.keys() {
                *changes.entry(knob.clone()).or_default() += 1;
            }
        }
    })?;
    let file_out = supervisor.into_journal().seal().context("cannot seal the chronicle")?;
    file_out
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .context("cannot sync the chronicle")?;
    writeln!(out, "metagov simulate: recorded telemetry {} ({lines} lines)", file.display())?;
    for (outcome, n) in &tally {
        writeln!(out, "  {n:>8}  {outcome}")?;
    }
    for (knob, n) in &changes {
        writeln!(out, "  {n:>8}  changes of {knob}")?;
    }
    writeln!(out, "chronicle    {}", chronicle.display())?;
    writeln!(out, "log          {}", log_path.display())?;
    writeln!(out, "\nreplay it:   metagov replay {} --verify", chronicle.display())?;
    Ok(Outcome::Success)
}

/// `metagov export RUN --telemetry`: the run's recorded telemetry as JSON
/// lines, one packet per line as it arrived, so it can be re-run with
/// `simulate --telemetry` (under another config, say).
pub fn export_telemetry(file: &Path, output: Option<&Path>, stdout: &mut dyn Write) -> Result<Outcome> {
    let reader = super::open(file)?;
    let write_all = |sink: &mut dyn Write| -> Result<(u64, Outcome)> {
        let mut packets = 0;
        let outcome = super::export_records(file, &reader, |entry| {
            let metagov_bus::OwnedEntry::Delivery(d) = entry else { return Ok(()) };
            if &*d.from != metagov_bus::INGRESS || &*d.topic != metagov_actors::messages::TELEMETRY_RAW {
                return Ok(());
            }
            match &*d.payload {
                metagov_bus::Value::Text(line) if !line.contains('\n') => sink.write_all(line.as_bytes())?,
                metagov_bus::Value::Bytes(bytes) if !bytes.contains(&b'\n') => sink.write_all(bytes)?,
                other => sink.write_all(other.to_json().to_string().as_bytes())?,
            }
            packets += 1;
            sink.write_all(b"\n")
        })?;
        sink.flush()?;
        Ok((packets, outcome))
    };
    match output {
        None => Ok(write_all(stdout)?.1),
        Some(path) => {
            let mut out = super::OutputFile::create(file, path)?;
            let (packets, outcome) = write_all(out.writer())?;
            out.commit()?;
            eprintln!("{packets} telemetry packets written to {}", super::Escaped(path.display()));
            Ok(outcome)
        }
    }
}
