//! metagov's live supervisor: `metagov run` beside real training jobs.
//!
//! A thin shell around the deterministic core. The shell (actix-web on
//! actix-rt/tokio, plus line readers for standard input and TCP) reads
//! sockets, signals and the clock, and turns each request into a message
//! on one bounded queue. One core thread takes that queue in order, runs
//! every packet through the governance bus as one tick ([`Supervisor`]),
//! writes and syncs the chronicle once per batch (group commit), publishes
//! the committed decisions on the [`Board`], and only then answers.
//!
//! This crate must never hand the wall clock, a socket or the environment
//! to an actor, never acknowledge a packet before its ingress record is in
//! the chronicle, and never queue without bound: a full queue is answered
//! at once (HTTP 429). A restarted supervisor rebuilds its state by
//! replaying the recorded ingress, so it decides what one that never
//! stopped would have decided.
#![deny(missing_docs)]

pub mod board;
pub mod core;
pub mod http;
pub mod lines;
mod metrics;
pub mod supervisor;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use sha2::{Digest, Sha256};

pub use crate::board::Board;
pub use crate::core::{CoreOptions, CoreReport, Durability};
pub use crate::supervisor::{Answer, Outcome, Packet, Supervisor, SupervisorError};

/// Why the live supervisor could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// A file or socket operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file, directory or address.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The chronicle could not be written or read.
    #[error("chronicle: {0}")]
    Chronicle(String),
    /// Syncing the chronicle failed: fatal, since acknowledgements promise it.
    #[error("fdatasync of the chronicle failed (nothing more is acknowledged): {0}")]
    Sync(String),
    /// An earlier run in the directory cannot be resumed.
    #[error("cannot resume the run in {dir}: {reason}")]
    Resume {
        /// The run directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// The governance bus stopped.
    #[error("the supervisor stopped: {0}")]
    Stopped(#[from] SupervisorError),
    /// The options do not make a safe supervisor.
    #[error("{0}")]
    Refused(String),
}

impl LiveError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        LiveError::Io { path: path.to_path_buf(), source }
    }
}

/// How often histogram samples are folded into their buckets.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// How to run the supervisor.
pub struct LiveOptions {
    /// The run directory, config and durability.
    pub core: CoreOptions,
    /// Where the HTTP API listens (port 0: any free port).
    pub listen: SocketAddr,
    /// Where JSON lines are taken over TCP, if anywhere.
    pub tcp: Option<SocketAddr>,
    /// Take JSON lines on standard input (answers on standard output); the
    /// end of input stops the supervisor.
    pub stdin: bool,
    /// The token clients must present, if any.
    pub token: Option<String>,
    /// Requests waiting for the core at most.
    pub queue_len_max: usize,
    /// Line connections served at once at most.
    pub connections_max: usize,
}

/// Where the shell listens, once it does: told to the caller before the
/// first request is served.
#[derive(Clone, Debug)]
pub struct Listening {
    /// The HTTP address.
    pub http: SocketAddr,
    /// The TCP lines address.
    pub tcp: Option<SocketAddr>,
}

/// Runs the supervisor until SIGINT or SIGTERM (or the end of standard
/// input with `stdin`), then drains, seals and returns. `on_listening` is
/// called once the sockets are bound.
pub fn run(options: LiveOptions, on_listening: impl FnOnce(&Listening)) -> Result<CoreReport, LiveError> {
    let exposed = std::iter::once(options.listen).chain(options.tcp).find(|addr| !addr.ip().is_loopback());
    if let (Some(addr), None) = (exposed, &options.token) {
        return Err(LiveError::Refused(format!(
            "refusing to listen on {addr} without a token: only loopback addresses may go without --token-file"
        )));
    }
    if options.queue_len_max == 0 || options.connections_max == 0 {
        return Err(LiveError::Refused("--queue-len-max and --connections-max must be at least 1".into()));
    }
    let metrics = metrics::install().map_err(LiveError::Refused)?;
    let board = Arc::new(Board::default());
    let (queue, taken) = crossbeam_channel::bounded(options.queue_len_max);
    let durability = options.core.durability;
    let core_board = board.clone();
    let (core_done, core_finished) = tokio::sync::oneshot::channel();
    let core_options = options.core;
    let core = std::thread::Builder::new()
        .name("metagov-core".into())
        .spawn(move || {
            let report = core::run(core_options, taken, core_board);
            let _ = core_done.send(());
            report
        })
        .map_err(|e| LiveError::Refused(format!("cannot start the core thread: {e}")))?;

    // Histograms keep their samples until upkeep folds them into buckets:
    // without it they would grow with every packet.
    let upkeep = metrics.clone();
    let shared = web::Data::new(http::Shared {
        queue: queue.clone(),
        board: board.clone(),
        token_sha256: options.token.as_ref().map(|t| Sha256::digest(t.as_bytes()).into()),
        metrics,
        durability,
    });
    let shell = actix_rt::System::new().block_on(async move {
        let server = HttpServer::new(move || App::new().app_data(shared.clone()).configure(http::routes))
            .disable_signals()
            .shutdown_timeout(5)
            .bind(options.listen)
            .map_err(|e| LiveError::Io { path: PathBuf::from(options.listen.to_string()), source: e })?;
        let http_addr = server.addrs().first().copied().unwrap_or(options.listen);
        let tcp = match options.tcp {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| LiveError::Io { path: PathBuf::from(addr.to_string()), source: e })?,
            ),
            None => None,
        };
        let listening = Listening { http: http_addr, tcp: tcp.as_ref().and_then(|l| l.local_addr().ok()) };
        on_listening(&listening);
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        actix_rt::spawn(async move {
            loop {
                tokio::time::sleep(METRICS_UPKEEP).await;
                upkeep.run_upkeep();
            }
        });
        if let Some(listener) = tcp {
            let (queue, shutdown) = (queue.clone(), board.shutdown_signal());
            actix_rt::spawn(lines::serve_tcp(listener, options.connections_max, queue, durability, shutdown));
        }
        let (stdin_done, stdin_finished) = tokio::sync::oneshot::channel::<()>();
        if options.stdin {
            let (queue, shutdown) = (queue.clone(), board.shutdown_signal());
            actix_rt::spawn(async move {
                let result =
                    lines::serve_stream(tokio::io::stdin(), tokio::io::stdout(), queue, durability, shutdown).await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "standard input ended with an error");
                }
                let _ = stdin_done.send(());
            });
        } else {
            drop(stdin_done);
        }
        let why = wait_for_stop(stdin_finished, core_finished).await;
        tracing::info!(why, "stopping: no new requests; draining what was accepted");
        board.begin_shutdown();
        handle.stop(true).await;
        // Every accepted request is in the queue or answered; the core
        // answers the rest, seals and stops.
        let _ = queue.send(core::Message::Stop);
        Ok::<(), LiveError>(())
    });
    let report = core.join().map_err(|_| LiveError::Refused("the core thread panicked".into()))?;
    shell?;
    report
}

async fn wait_for_stop(
    stdin_finished: tokio::sync::oneshot::Receiver<()>,
    core_finished: tokio::sync::oneshot::Receiver<()>,
) -> &'static str {
    let stdin = async {
        if stdin_finished.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return "cannot listen for signals";
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = stdin => "end of standard input",
            _ = core_finished => "the core stopped",
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "Ctrl-C",
            _ = stdin => "end of standard input",
            _ = core_finished => "the core stopped",
        }
    }
}
