//! The `metagov` command line: a thin shell over the library crates. It is
//! the only place that touches the terminal, the wall clock (benchmarks) and
//! process exit codes.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use metagov::cli;

/// mimalloc: a run allocates many small payload values; the system allocator
/// spent about a sixth of a simulation in malloc and free (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// metagov — a deterministic meta-governance supervisor for ML training.
///
/// Every run is recorded in a chronicle (`.cmeta`): a checksummed, append-only
/// journal of every bus delivery, so a run can be inspected, queried,
/// exported, integrity-checked and replayed bit for bit.
#[derive(Parser)]
#[command(name = "metagov", version, about, long_about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario's simulated telemetry through the full governance actor
    /// set, and record it.
    ///
    /// Writes OUT/run.cmeta (the chronicle), OUT/run.log (the deterministic
    /// log), OUT/summary.json and OUT/summary.txt, prints the summary, and
    /// ends with the command that replays the run. With no arguments it runs
    /// the built-in `default` scenario under the default config.
    Simulate {
        /// A built-in scenario name (see --list) or a scenario TOML file.
        #[arg(long, default_value = "default")]
        scenario: String,
        /// A governance config file (default: the built-in defaults, see
        /// `metagov config init`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Run seed (overrides the config's run.seed): seeds the telemetry
        /// and every actor.
        #[arg(long)]
        seed: Option<u64>,
        /// Number of windows (overrides the scenario's).
        #[arg(long)]
        windows: Option<u64>,
        /// Output directory [default: metagov-runs/SCENARIO-seedSEED-HASH,
        /// HASH the start of the config's SHA-256].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace the files of an earlier run in --out.
        #[arg(long)]
        force: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// List the built-in scenarios and exit.
        #[arg(long)]
        list: bool,
        /// Print the process's peak resident memory at the end (Linux).
        #[arg(long)]
        peak_rss: bool,
        /// Run a recorded JSON-lines telemetry file (one packet per line, as
        /// `metagov run` takes them and `export --telemetry` writes them)
        /// through the supervisor instead of a scenario; the run directory
        /// can then be carried on with `metagov run --out DIR`.
        #[arg(long, value_name = "FILE.jsonl", conflicts_with_all = ["scenario", "windows", "prior_dir"])]
        telemetry: Option<PathBuf>,
        /// Carry the learned prior across runs: start from the newest valid
        /// prior version in DIR (as the knobs' initial values, recorded in
        /// the run's config) and save the run's final prior as the next
        /// version there.
        #[arg(long, value_name = "DIR")]
        prior_dir: Option<PathBuf>,
    },
    /// Supervise live training jobs: take their telemetry over HTTP (and
    /// JSON lines on standard input or TCP), answer with governance
    /// decisions, and record every delivery in the run's chronicle.
    ///
    /// With no arguments it listens on 127.0.0.1:7878 with the default config
    /// and writes to metagov-runs/live-RUNID/ (the run id follows from the
    /// config and seed, so the same command after a stop resumes the same
    /// run). A packet is answered only once it is in the chronicle; in fsync
    /// mode (the default) durably. SIGINT/SIGTERM: stop taking packets,
    /// answer what was accepted, seal, exit 0. Started on a directory that
    /// holds an earlier run (sealed or killed), it verifies and replays the
    /// recorded telemetry and carries on exactly where that run stood.
    /// The API is documented in docs/live.md.
    Run(cli::run::RunArgs),
    /// Test a governance config the way code is tested: run the governance
    /// test files in PATH (files, or directories of *.toml), each seed
    /// twice (the two chronicles compared byte for byte) and replayed, and
    /// check every expectation on what the run recorded.
    ///
    /// Prints a verdict per test and seed (pass, failed with expected and
    /// actual values and the command that reproduces it, determinism
    /// failure, replay failure) and writes to --out: the two runs of each
    /// seed and its execution log (runs/), summary JSON, Markdown and JUnit
    /// XML (summaries/), timing (timing/), a determinism trace that --replay
    /// re-runs (determinism/), the errors with their severity and the
    /// command that reproduces each (errors/), and a bundle of all of it
    /// recorded in a suite chronicle (audit/). Exits non-zero when anything
    /// does not pass or a test file is invalid. The format: docs/testing.md.
    Test {
        /// Test files or directories [default: tests/governance].
        paths: Vec<PathBuf>,
        /// Only the test of this name.
        #[arg(long = "test", value_name = "NAME")]
        name: Option<String>,
        /// Only this seed of the selected tests.
        #[arg(long)]
        seed: Option<u64>,
        /// Output directory [default: metagov-tests/YYYYMMDD__SUITE, the
        /// date from the wall clock, SUITE the path's name].
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// Seeds run at once, on threads; the verdicts and files are those
        /// of one after another, in the same order (only the times differ).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: u16,
        /// Sign the suite's audit bundle (audit/…__audit.zip) and its suite
        /// chronicle with this secret key (from `metagov keygen`).
        #[arg(long, value_name = "KEY")]
        key: Option<PathBuf>,
        /// Run every seed of a determinism trace
        /// (determinism/…__determinism.json) again, from the trace alone,
        /// and check each is reproduced bit for bit: the same chronicle
        /// SHA-256 and the same random generator states. Writes to --out
        /// [default: metagov-tests/YYYYMMDD__SUITE__replay]; takes no PATH.
        #[arg(long, value_name = "TRACE", conflicts_with_all = ["paths", "name", "seed", "key", "prune"])]
        replay: Option<PathBuf>,
        /// Before running, prune the results directory (metagov-tests, or
        /// the directory --out lies in): a suite directory older than the
        /// files' `[tests] rotate_days` (default 30) is packed into
        /// archive/DIR.zip, checked, then removed; a directory or archive
        /// older than `retain_days` (default 90) is deleted. Ages come from
        /// the YYYYMMDD the names begin with; anything else is left alone.
        #[arg(long)]
        prune: bool,
    },
    /// Show stored prior versions.
    #[command(subcommand)]
    Prior(PriorCommand),
    /// Write or check governance configs.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show a chronicle's header, run context, frames and integrity status.
    Inspect {
        /// The chronicle file (.cmeta), or a run directory (run.cmeta and the
        /// segments after it, read as one run).
        file: PathBuf,
        /// List every frame, not only the first and last few.
        #[arg(long)]
        frames: bool,
        /// The run's metadata as one JSON object: context, counts per topic
        /// and per phase, integrity.
        #[arg(long, conflicts_with = "frames")]
        json: bool,
    },
    /// Check a chronicle's integrity: every CRC, the hash chain, the index and
    /// the footer. Exits non-zero on a torn, unsealed or corrupted file.
    Verify {
        /// The chronicle file (.cmeta), or a run directory (run.cmeta and the
        /// segments after it, read as one run).
        file: PathBuf,
        /// The verdict as one JSON object (an audit report: status, counts,
        /// chain head, where a tear or damage is, the run's context).
        #[arg(long)]
        json: bool,
        /// Also check the seal signature beside the file (RUN.cmeta.sig,
        /// from `metagov sign`) against this public key file: a missing
        /// signature, another signer's, or one that does not cover this
        /// file's seal fails. This catches an edit that recomputed every CRC
        /// and the whole hash chain, which the integrity checks cannot.
        #[arg(long, value_name = "PUB")]
        pubkey: Option<PathBuf>,
    },
    /// Print the entries whose tick lies in [--from, --to] (inclusive).
    ///
    /// On a sealed chronicle only the frames that overlap the range are read.
    Query {
        /// The chronicle file (.cmeta), or a run directory (run.cmeta and the
        /// segments after it, read as one run).
        file: PathBuf,
        /// First tick (inclusive). Ticks count ingress packets (tick n is
        /// the n-th packet of the run), not windows: see --window.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Last tick (inclusive).
        #[arg(long, default_value_t = u64::MAX)]
        to: u64,
        /// Only deliveries on these topics (repeat it, or separate with
        /// commas). `metagov topics RUN` lists a run's topics; one no actor
        /// uses and the run does not hold is an error.
        #[arg(long, value_delimiter = ',')]
        topic: Vec<String>,
        /// Only deliveries about this job (their payload's `job`).
        #[arg(long)]
        job: Option<String>,
        /// Only deliveries about these windows (their payload's `window`):
        /// `N` or `A..B`, inclusive.
        #[arg(long, value_parser = cli::parse_windows)]
        window: Option<std::ops::RangeInclusive<u64>>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The lifecycle of one packet (CREATED → ACTIVE or BLOCKED →
    /// COMPLETED → ARCHIVED, or INVALID) and what happened to it: what
    /// started it, the validator's verdict, every delivery it caused and
    /// what each carried. Exits non-zero on an INVALID trace.
    Trace {
        /// The chronicle file (.cmeta), or a run directory (run.cmeta and the
        /// segments after it, read as one run).
        file: PathBuf,
        /// The trace id: the tick of the packet (`query` and `explain` show
        /// ticks).
        trace: u64,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Say why a job's knobs changed, and why not: one line per change,
    /// with the rule that fired, the signal's value against its threshold,
    /// the rule's patience and cooldown (or the rollback, or the job's start
    /// values); for one window in which nothing changed, what held each rule
    /// back.
    ///
    /// Asked about one window (--window or --tick), it reads only a few
    /// frames of the chronicle; otherwise the whole run. docs/audit.md.
    Explain {
        /// The chronicle file (.cmeta), or a run directory (run.cmeta and the
        /// segments after it, read as one run).
        file: PathBuf,
        /// The job.
        #[arg(long)]
        job: String,
        /// Only this knob.
        #[arg(long)]
        knob: Option<String>,
        /// Only changes caused by this window's packet. A window in which
        /// nothing changed is answered with why not: what the layer weighed
        /// (the safety check, every rule's value, streak and cooldown).
        #[arg(long, conflicts_with = "tick")]
        window: Option<u64>,
        /// Only changes caused by the packet of this tick (as `--window`).
        #[arg(long)]
        tick: Option<u64>,
        /// Under each window's changes, the whole chain: what the layer
        /// weighed in that window.
        #[arg(long)]
        detail: bool,
        /// One JSON object per change (and per window's evidence, with
        /// --detail).
        #[arg(long)]
        json: bool,
    },
    /// List the topics of a run with how many deliveries each has, and its
    /// cycle records and meta frames.
    Topics {
        /// The chronicle file (.cmeta), or a run directory (run.cmeta and the
        /// segments after it, read as one run).
        file: PathBuf,
    },
    /// Export every entry of a chronicle as CSV or JSON lines.
    Export {
        /// The chronicle file (.cmeta), or a run directory (run.cmeta and the
        /// segments after it, read as one run).
        file: PathBuf,
        /// Output format: `csv` (one row per entry, the payload as JSON in the
        /// last column; with --topic, one column per payload field) or `json`
        /// (one JSON object per line).
        #[arg(long, value_enum, required_unless_present = "telemetry")]
        format: Option<ExportFormat>,
        /// With --format csv: only this topic's deliveries, their payloads
        /// flattened into columns (`knobs.learning_rate`), for pandas or
        /// polars. `metagov topics RUN` lists the topics.
        #[arg(long, requires = "format")]
        topic: Option<String>,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Write only the recorded telemetry, one packet per line as it
        /// arrived (for `simulate --telemetry`), instead of every entry.
        #[arg(long, conflicts_with = "format")]
        telemetry: bool,
    },
    /// Replay a chronicle on a freshly built actor set and compare every
    /// delivery with the recorded one. Exits non-zero on a divergence, on a
    /// corrupt recording, and on an unsealed or torn one unless
    /// --allow-partial is given.
    Replay {
        /// The chronicle file (.cmeta), or a run directory (run.cmeta and the
        /// segments after it, read as one run).
        file: PathBuf,
        /// Re-execute from the recorded ingress and compare every delivery.
        #[arg(
            long,
            required_unless_present_any = ["simulate", "inspect", "explain"],
            conflicts_with_all = ["simulate", "inspect", "explain"]
        )]
        verify: bool,
        /// Every knob change of every job over the run, one line each in
        /// `metagov explain`'s words, prefixed with the job, in one pass.
        #[arg(long, conflicts_with_all = ["simulate", "inspect"])]
        explain: bool,
        /// Re-execute the recorded ingress up to --tick and print every
        /// actor's state after it: each job's knobs, smoothed reward and
        /// best, streaks and cooldowns; each domain's estimate; the
        /// aggregator's buffer; the prior.
        #[arg(long, requires = "tick", conflicts_with = "simulate")]
        inspect: bool,
        /// With --inspect: the tick (the n-th ingress packet).
        #[arg(long)]
        tick: Option<u64>,
        /// Re-execute the recorded ingress under --config into a new run in
        /// --out (the original is never written) and print where the
        /// decisions differ: exact up to the first difference, open loop
        /// after it (the recorded telemetry did not react).
        #[arg(long, requires_all = ["config", "out"])]
        simulate: bool,
        /// With --simulate: the other config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// With --simulate: the directory of the new run.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Accept an unsealed or torn recording that matched as far as it
        /// goes (exit 0); without it, only a sealed recording passes. A
        /// corrupt recording always fails.
        #[arg(long)]
        allow_partial: bool,
    },
    /// Compare the decisions of two runs of the same telemetry, window by
    /// window, with the point after which the comparison is open loop.
    Diff {
        /// The first run (chronicle or run directory).
        first: PathBuf,
        /// The second run.
        second: PathBuf,
    },
    /// Write one self-contained HTML page of a run: its context and
    /// integrity, and per job the reward, the smoothed reward and every
    /// knob's trajectory with each change marked (hover a mark for its
    /// explanation), resource hints, rejections by reason and the prior.
    ///
    /// No script, no network, no external file: inline SVG only. The page
    /// is written beside its name and renamed into place. docs/audit.md.
    Report {
        /// The chronicle file (.cmeta), or a run directory (run.cmeta and the
        /// segments after it, read as one run).
        file: PathBuf,
        /// Another run of the same telemetry (from `replay --simulate`, or a
        /// second config): its rewards and knobs are drawn dashed over this
        /// run's, with the window where their decisions first differ — open
        /// loop after it — marked.
        #[arg(long, value_name = "OTHER")]
        against: Option<PathBuf>,
        /// The page to write.
        #[arg(short, long, value_name = "REPORT.html")]
        output: PathBuf,
    },
    /// Sign a sealed chronicle's seal: writes RUN.cmeta.sig beside it.
    ///
    /// The signature (Ed25519, by a key from `metagov keygen`) covers the
    /// chronicle's footer, whose chain head covers the run's header and
    /// every frame; `metagov verify RUN --pubkey KEY.pub` checks it, so an
    /// edit that recomputed every CRC and the whole chain is caught. Only a
    /// sealed, intact chronicle can be signed. An earlier signature is
    /// replaced whole. Format: docs/bundles.md, "Signing a chronicle".
    Sign {
        /// The chronicle file (.cmeta), or a run directory: its last
        /// segment is signed (its chain head covers every segment before).
        file: PathBuf,
        /// The secret key file.
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
    },
    /// Create an Ed25519 key pair for signing bundles and chronicles.
    ///
    /// Writes the secret key to KEY (mode 0600) and the public key to
    /// KEY.pub; refuses if either exists (a key is never overwritten).
    /// Prints the public key's path and fingerprint, never the secret.
    /// Give KEY to `metagov bundle --key`, and KEY.pub to whoever checks
    /// the bundles (`metagov bundle verify --pubkey`). Formats:
    /// docs/bundles.md.
    Keygen {
        /// The secret key file to create (the public key goes to KEY.pub).
        #[arg(short, long, value_name = "KEY")]
        output: PathBuf,
    },
    /// Pack a directory into a signed, verifiable zip bundle, or check one
    /// (`metagov bundle verify`).
    ///
    /// The zip holds every regular file under DIR (paths relative to it),
    /// manifest.sha256 (each file's SHA-256 in `sha256sum` format, so
    /// `sha256sum -c manifest.sha256` passes on the unpacked bundle) and,
    /// with --key, manifest.sha256.sig (an Ed25519 signature of the
    /// manifest's bytes). The same directory always gives the same zip
    /// bytes: entries in bytewise order, fixed dates (1980-01-01), fixed
    /// modes. Prints the file count, bytes, the manifest's SHA-256 and
    /// whether it is signed. Formats and exit codes: docs/bundles.md.
    Bundle(cli::bundle::BundleArgs),
    /// Measure the kernel against in-process baselines and print ratios.
    Bench {
        /// Which benchmark.
        #[arg(value_enum, default_value_t = cli::bench::Which::All)]
        which: cli::bench::Which,
        /// Smaller workloads (seconds instead of minutes).
        #[arg(long)]
        quick: bool,
        /// Where to put the chronicles the benchmarks write (default: a
        /// temporary directory, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// `governance` only: the config scored as the governed entrant
        /// (default: the embedded default config); the ReduceLROnPlateau and
        /// constant-rate entrants are built from it, keeping its knobs and
        /// memory rules.
        #[arg(long)]
        config: Option<PathBuf>,
        /// `bundle` only: the bytes of incompressible data in the bundle
        /// measured, as a number with an optional K, M or G (KiB, MiB,
        /// GiB) [default: 256M, or 32M with --quick].
        #[arg(long, value_parser = cli::bench::parse_bytes)]
        bytes: Option<u64>,
    },
}

#[derive(Subcommand)]
enum PriorCommand {
    /// Show the newest valid prior version in DIR, and any newer version
    /// skipped because its checksum or version does not hold. Exits non-zero
    /// when no version is valid.
    Show {
        /// The prior directory (as given to `simulate --prior-dir`).
        dir: PathBuf,
        /// The config whose `[storage]` settings apply (default: built-in).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Write the default config, every field commented, to FILE (or print it).
    Init {
        /// Where to write it; standard output when absent.
        file: Option<PathBuf>,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Check a config: every problem with its line and column, and a "did
    /// you mean" for misspelled keys. Exits non-zero on any problem.
    Check {
        /// The config file.
        file: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Csv,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let stdout = io::stdout();
    // `metagov run --stdin` answers on standard output from the shell's own
    // threads, so it must not be locked here; run reports on standard error.
    let mut out: Box<dyn Write> = match args.command {
        Command::Run { .. } => Box::new(io::sink()),
        _ => Box::new(io::BufWriter::new(stdout.lock())),
    };
    let result = match args.command {
        Command::Simulate { scenario: _, config, seed, out: out_dir, telemetry: Some(telemetry), .. } => (|| {
            let mut config = match config {
                Some(path) => metagov_config::Config::load(&path)?,
                None => metagov_config::Config::default(),
            };
            if let Some(seed) = seed {
                config.run.seed = seed;
            }
            let out_dir = out_dir.unwrap_or_else(|| {
                let stem = telemetry.file_stem().map_or("telemetry".into(), |s| s.to_string_lossy().to_string());
                PathBuf::from(format!("metagov-runs/{stem}-seed{}", config.run.seed))
            });
            cli::run::simulate_telemetry(&telemetry, config, &out_dir, &mut out)
        })(),
        Command::Simulate {
            scenario,
            config,
            seed,
            windows,
            out: out_dir,
            force,
            quiet,
            list,
            peak_rss,
            prior_dir,
            ..
        } => {
            if list {
                cli::list_scenarios(&mut out)
            } else {
                let options =
                    cli::SimulateArgs { scenario, config, seed, windows, out: out_dir, quiet, prior_dir, force };
                cli::simulate(&options, &mut out).and_then(|outcome| {
                    if peak_rss {
                        writeln!(
                            out,
                            "peak RSS     {}",
                            cli::peak_rss_kib().map_or("unknown".into(), |k| format!("{k} KiB"))
                        )?;
                    }
                    Ok(outcome)
                })
            }
        }
        Command::Run(args) => cli::run::run(args, &mut out),
        Command::Test { replay: Some(trace), out: out_dir, quiet, .. } => {
            cli::suite::replay(&trace, out_dir.as_deref(), quiet, &mut out)
        }
        Command::Test { paths, name, seed, out: out_dir, quiet, jobs, key, replay: None, prune } => {
            let args =
                cli::suite::TestArgs { paths, test: name, seed, out: out_dir, quiet, jobs: jobs.into(), key, prune };
            cli::suite::test(&args, metagov_suite::run::Hooks::default(), &mut out)
        }
        Command::Prior(PriorCommand::Show { dir, config }) => cli::prior_show(&dir, config.as_deref(), &mut out),
        Command::Config(ConfigCommand::Init { file, force }) => cli::config_init(file.as_deref(), force, &mut out),
        Command::Config(ConfigCommand::Check { file }) => cli::config_check(&file, &mut out),
        Command::Inspect { file, frames, json } => cli::inspect(&file, frames, json, &mut out),
        Command::Verify { file, json, pubkey } => cli::verify(&file, json, pubkey.as_deref(), &mut out),
        Command::Report { file, against, output } => cli::report::report(&file, against.as_deref(), &output, &mut out),
        Command::Sign { file, key } => {
            cli::run::last_segment(file).and_then(|file| cli::bundle::sign(&file, &key, &mut out))
        }
        Command::Query { file, from, to, topic, job, window, json } => {
            let filter = cli::QueryFilter { topics: topic, job, windows: window };
            cli::query(&file, from, to, &filter, json, &mut out)
        }
        Command::Trace { file, trace, json } => cli::trace(&file, trace, json, &mut out),
        Command::Explain { file, job, knob, window, tick, detail, json } => {
            let query = cli::ExplainQuery { job: &job, knob: knob.as_deref(), window, tick, detail };
            cli::explain(&file, &query, json, &mut out)
        }
        Command::Topics { file } => cli::topics(&file, &mut out),
        Command::Export { file, telemetry: true, output, .. } => {
            cli::run::export_telemetry(&file, output.as_deref(), &mut out)
        }
        Command::Export { file, format: Some(ExportFormat::Csv), topic: Some(topic), output, .. } => {
            cli::export_topic_csv(&file, &topic, output.as_deref(), &mut out)
        }
        Command::Export { topic: Some(_), .. } => {
            Err(anyhow::anyhow!("--topic goes with --format csv: JSON lines keep every field as it is"))
        }
        Command::Export { file, format, output, .. } => {
            let json = matches!(format, Some(ExportFormat::Json));
            cli::export(&file, json, output.as_deref(), &mut out)
        }
        Command::Replay { file, simulate: true, config: Some(config), out: Some(dir), .. } => {
            match metagov_config::Config::load_with(&config, metagov_sim::simulate::bus_problems) {
                Ok(config) => cli::replay_simulate(&file, config, &dir, &mut out),
                Err(error) => Err(error.into()),
            }
        }
        Command::Replay { file, explain: true, .. } => cli::replay_explain(&file, &mut out),
        Command::Replay { file, inspect: true, tick: Some(tick), .. } => cli::replay_inspect(&file, tick, &mut out),
        Command::Diff { first, second } => cli::diff_runs(&first, &second, &mut out),
        Command::Replay { file, verify: _, allow_partial, .. } => cli::replay_verify(&file, allow_partial, &mut out),
        Command::Keygen { output } => cli::bundle::keygen(&output, &mut out),
        Command::Bundle(args) => cli::bundle::run(args, &mut out),
        Command::Bench { which, quick, dir, config, bytes } => {
            cli::bench::run(which, quick, dir.as_deref(), config.as_deref(), bytes, &mut out)
        }
    };
    let flushed = out.flush().map_err(anyhow::Error::from);
    match result.and_then(|outcome| flushed.map(|()| outcome)) {
        Ok(cli::Outcome::Success) => ExitCode::SUCCESS,
        Ok(cli::Outcome::Failure) => ExitCode::FAILURE,
        Err(e) if cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("metagov: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
