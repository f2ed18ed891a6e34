//! `metagov run`: the live supervisor beside training jobs (the shell is
//! `metagov-live`; this module turns options into its [`LiveOptions`] and
//! sets up logging for people beside the deterministic log).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use metagov_actors::ACTOR_NAMES;
use metagov_config::Config;
use metagov_live::{CoreOptions, Durability, LiveOptions};
use metagov_storage::init_session;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::Layer;

use super::Outcome;

/// The options of `metagov run`.
pub struct RunArgs {
    /// A config file for a new run.
    pub config: Option<PathBuf>,
    /// Overrides the config's seed.
    pub seed: Option<u64>,
    /// The run directory.
    pub out: Option<PathBuf>,
    /// The HTTP address.
    pub listen: SocketAddr,
    /// The TCP JSON-lines address.
    pub tcp: Option<SocketAddr>,
    /// JSON lines on standard input.
    pub stdin: bool,
    /// Acknowledgement durability.
    pub durability: Durability,
    /// A file holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// Requests waiting for the core at most.
    pub queue_len_max: usize,
    /// Line connections at once at most.
    pub connections_max: usize,
}

/// `metagov run`.
pub fn run(args: RunArgs, out: &mut dyn Write) -> Result<Outcome> {
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
            durability: args.durability,
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
            args.durability.as_str()
        );
    })?;
    // Standard output may carry JSON lines (--stdin): the last words go to
    // standard error.
    eprintln!(
        "metagov run: stopped after tick {} ({} resumed); chronicle sealed: {}",
        report.ticks,
        report.resumed_packets,
        report.chronicle.display()
    );
    eprintln!("replay it:   metagov replay {} --verify", report.chronicle.display());
    out.flush()?;
    Ok(Outcome::Success)
}
