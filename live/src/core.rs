//! The core thread: the one place packets become ticks.
//!
//! It takes [`Message`]s from one bounded queue, in queue order, whatever
//! transport they came from, so the order of ticks is one recorded order.
//! Group commit: it takes every request waiting (up to
//! [`BATCH_REQUESTS_MAX`]), submits their packets one at a time, writes the
//! chronicle frame, syncs it once (in `fsync` mode), publishes the batch's
//! decisions to the [`Board`], and only then answers each request. A sync
//! error is fatal: nothing is acknowledged that is not recorded.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use metagov_actors::messages::{INGRESS_TOPICS, TELEMETRY_RAW};
use metagov_actors::{MetaSupervisor, ACTOR_NAMES};
use metagov_bus::{log, OwnedEntry, INGRESS};
use metagov_config::Config;
use metagov_storage::{init_session, verify_replay, ChronicleReader, ChronicleWriter, RunContext, WriterOptions};
use tokio::sync::oneshot;

use crate::board::{Board, JobDecision};
use crate::metrics;
use crate::supervisor::{Answer, Event, JobState, Packet, Supervisor};
use crate::LiveError;

/// Requests the core takes into one group commit at most.
pub const BATCH_REQUESTS_MAX: usize = 1024;

/// The chronicle file of a live run directory.
pub const CHRONICLE_FILE: &str = "run.cmeta";
/// The deterministic log of a live run directory.
pub const LOG_FILE: &str = "run.log";
/// Where a resumed run's history is rewritten before it replaces the old
/// chronicle (a crash meanwhile leaves the old one untouched).
const RESUME_SUFFIX: &str = ".resume";

/// How an acknowledgement relates to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledged once written and `fdatasync`ed (group commit).
    Fsync,
    /// Acknowledged once written to the operating system, not synced.
    Buffered,
}

impl Durability {
    /// The word responses carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Buffered => "buffered",
        }
    }
}

/// What the core answers a request with: one answer per packet, or why the
/// supervisor stopped.
pub type Reply = Result<Vec<Answer>, String>;

/// Packets from one transport request, and where to send the answers.
pub struct Request {
    /// The packets, in order.
    pub packets: Vec<Packet>,
    /// The answer channel.
    pub reply: oneshot::Sender<Reply>,
    /// When the shell received it (for the ingest-to-ack histogram; never
    /// handed to an actor).
    pub received: Instant,
    /// The same moment on the wall clock, in nanoseconds since the Unix
    /// epoch: recorded in the chronicle beside each of the request's packets
    /// for people (arrival records), never handed to an actor.
    pub arrived_unix_nanos: i64,
}

/// What the queue carries.
pub enum Message {
    /// Packets to govern.
    Packets(Request),
    /// Answer what is queued, seal the chronicle and stop.
    Stop,
}

type Writer = ChronicleWriter<BufWriter<File>>;

/// A live run directory and how to run in it.
pub struct CoreOptions {
    /// The run directory.
    pub dir: PathBuf,
    /// The config for a new run (a resumed run uses its recorded one).
    pub config: Config,
    /// Whether `config` was given explicitly (then it must match a recorded
    /// run's).
    pub config_given: bool,
    /// Durability of acknowledgements.
    pub durability: Durability,
}

/// What the core did, for the shell's last words.
#[derive(Debug)]
pub struct CoreReport {
    /// The chronicle.
    pub chronicle: PathBuf,
    /// Packets the run held when it started (resumed from).
    pub resumed_packets: u64,
    /// The last tick.
    pub ticks: u64,
}

/// Runs the core on this thread until [`Message::Stop`] or until every
/// sender is gone: rebuilds (or starts) the run in `options.dir`, marks the
/// board ready, governs, then seals the chronicle.
pub fn run(options: CoreOptions, queue: Receiver<Message>, board: Arc<Board>) -> Result<CoreReport, LiveError> {
    fs::create_dir_all(&options.dir).map_err(|e| LiveError::io(&options.dir, e))?;
    let log_path = options.dir.join(LOG_FILE);
    let log_tmp = with_suffix(&log_path, RESUME_SUFFIX);
    let log_file = File::create(&log_tmp).map_err(|e| LiveError::io(&log_tmp, e))?;
    log::capture(BufWriter::new(log_file), || {
        let (mut supervisor, resumed_packets) = open(&options, &board).inspect_err(|_| {
            // Nothing started: leave the directory as it was found.
            let _ = fs::remove_file(&log_tmp);
        })?;
        fs::rename(&log_tmp, &log_path).map_err(|e| LiveError::io(&log_path, e))?;
        tracing::info!(resumed_packets, "supervisor ready");
        board.set_ready();
        let result = serve(&mut supervisor, &queue, &board, options.durability);
        board.begin_shutdown();
        // Whatever stopped the loop, answer what is still queued.
        let stop_reason = result.as_ref().err().map(ToString::to_string);
        drain_after_stop(&queue, stop_reason.as_deref(), &mut supervisor, options.durability, &board);
        let ticks = supervisor.tick();
        let chronicle = options.dir.join(CHRONICLE_FILE);
        let file = supervisor.into_journal().seal().map_err(|e| LiveError::Chronicle(e.to_string()))?;
        let file = file.into_inner().map_err(|e| LiveError::io(&chronicle, e.into_error()))?;
        file.sync_all().map_err(|e| LiveError::io(&chronicle, e))?;
        result?;
        tracing::info!(ticks, "chronicle sealed");
        Ok(CoreReport { chronicle, resumed_packets, ticks })
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Starts a new run, or rebuilds the one recorded in the directory: its
/// recorded ingress is verified by replay, then re-submitted into a fresh
/// chronicle (same context) that atomically replaces the old one, so every
/// actor, the duplicate memory and the board are exactly as a supervisor
/// that never stopped would have them.
fn open(options: &CoreOptions, board: &Board) -> Result<(Supervisor<Writer>, u64), LiveError> {
    let chronicle = options.dir.join(CHRONICLE_FILE);
    let create = |path: &Path, context: &RunContext, config: &Config| {
        let writer = ChronicleWriter::create(path, context, WriterOptions::from(&config.chronicle))
            .map_err(|e| LiveError::Chronicle(e.to_string()))?;
        Supervisor::new(config, writer).map_err(|e| LiveError::Chronicle(e.to_string()))
    };
    if !chronicle.exists() {
        let actors = ACTOR_NAMES.iter().map(|a| a.to_string()).collect();
        let context = init_session(options.config.run.seed, &options.config.canonical_toml(), actors);
        let supervisor = create(&chronicle, &context, &options.config)?;
        sync_dir(&options.dir)?;
        return Ok((supervisor, 0));
    }
    let reader = ChronicleReader::open(&chronicle).map_err(|e| LiveError::Chronicle(e.to_string()))?;
    let context = reader.context().clone();
    let recorded = Config::from_toml_str(&context.config_text, "the recorded config")
        .map_err(|e| LiveError::Resume { dir: options.dir.clone(), reason: e.to_string() })?;
    if options.config_given && options.config.canonical_toml() != context.config_text {
        return Err(LiveError::Resume {
            dir: options.dir.clone(),
            reason: format!(
                "it holds a run under config {}, and --config differs; resume without --config, or use another --out",
                &context.config_sha256[..12]
            ),
        });
    }
    let report =
        verify_replay(&reader, |_, journal| MetaSupervisor::build(&recorded, journal).map_err(|e| e.to_string()))
            .map_err(|e| LiveError::Resume {
                dir: options.dir.clone(),
                reason: format!("replay --verify failed: {e}"),
            })?;
    if let metagov_storage::IntegrityStatus::Corrupt { .. } = report.status {
        // Acknowledged packets may sit behind the damage: resuming would
        // silently drop them. A person decides.
        return Err(LiveError::Resume {
            dir: options.dir.clone(),
            reason: format!(
                "the chronicle is {}; nothing is resumed (its intact prefix reads with `metagov export`; \
                 move the file aside to start a new run)",
                report.status
            ),
        });
    }
    tracing::info!(packets = report.ingress, status = %report.status, "recorded run verified");

    let rewrite = with_suffix(&chronicle, RESUME_SUFFIX);
    if rewrite.exists() {
        fs::remove_file(&rewrite).map_err(|e| LiveError::io(&rewrite, e))?;
    }
    let mut supervisor = create(&rewrite, &context, &recorded)?;
    let mut packets = 0;
    let mut events = Vec::new();
    // A packet is submitted once the record after it is read: an arrival
    // record, if any, follows its delivery and is carried over with it.
    let mut pending: Option<(Packet, Option<i64>)> = None;
    let mut submit = |supervisor: &mut Supervisor<Writer>, pending: Option<(Packet, Option<i64>)>| {
        let Some((packet, arrival)) = pending else { return Ok(()) };
        if let Some(unix_nanos) = arrival {
            supervisor.journal_mut().note_arrival(unix_nanos);
        }
        let answer = supervisor.submit(packet).map_err(|e| LiveError::Chronicle(e.to_string()))?;
        packets += 1;
        events.extend(answer.events);
        if events.len() > crate::board::EVENTS_KEPT_MAX {
            events.drain(..events.len() - crate::board::EVENTS_KEPT_MAX);
        }
        Ok::<(), LiveError>(())
    };
    for entry in reader.records() {
        let entry = entry.map_err(|e| LiveError::Chronicle(e.to_string()))?;
        let delivery = match entry {
            OwnedEntry::Arrival { unix_nanos, .. } => {
                if let Some((_, arrival)) = &mut pending {
                    *arrival = Some(unix_nanos);
                }
                continue;
            }
            OwnedEntry::Delivery(delivery) if &*delivery.from == INGRESS => delivery,
            _ => continue,
        };
        let packet = match Packet::from_value(&delivery.payload) {
            Some(packet) if &*delivery.topic == TELEMETRY_RAW => packet,
            _ => {
                return Err(LiveError::Resume {
                    dir: options.dir.clone(),
                    reason: format!(
                        "tick {} is `{}` ingress of a kind a live run never records (ingress topics: {}); \
                         only runs of `metagov run` resume",
                        delivery.tick,
                        delivery.topic,
                        INGRESS_TOPICS.join(", ")
                    ),
                });
            }
        };
        submit(&mut supervisor, pending.replace((packet, None)))?;
    }
    submit(&mut supervisor, pending.take())?;
    commit(&mut supervisor, Durability::Fsync)?;
    fs::rename(&rewrite, &chronicle).map_err(|e| LiveError::io(&chronicle, e))?;
    sync_dir(&options.dir)?;
    let jobs = supervisor
        .jobs()
        .iter()
        .map(|(job, s)| (job.clone(), JobDecision { tick: s.tick, json: s.to_json(job) }))
        .collect();
    board.publish(jobs, supervisor.prior().cloned(), events, supervisor.tick());
    Ok((supervisor, packets))
}

/// A job's committed decision, as the board keeps it.
fn decision(job: &str, state: &JobState) -> (String, JobDecision) {
    (job.to_string(), JobDecision { tick: state.tick, json: state.to_json(job) })
}

fn sync_dir(dir: &Path) -> Result<(), LiveError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| LiveError::io(dir, e))
}

/// Writes the open frame and, in `fsync` mode, syncs it. Records the sync's
/// latency and the chronicle's size.
fn commit(supervisor: &mut Supervisor<Writer>, durability: Durability) -> Result<(), LiveError> {
    let writer = supervisor.journal_mut();
    writer.flush().map_err(|e| LiveError::Chronicle(e.to_string()))?;
    if durability == Durability::Fsync {
        #[allow(clippy::disallowed_methods)] // The shell times the sync for metrics; no actor sees it.
        let started = Instant::now();
        writer.get_ref().get_ref().sync_data().map_err(|e| LiveError::Sync(e.to_string()))?;
        metrics::fsync_done(started.elapsed());
    }
    metrics::chronicle_size(writer.bytes_written(), writer.frames_written());
    Ok(())
}

fn serve(
    supervisor: &mut Supervisor<Writer>,
    queue: &Receiver<Message>,
    board: &Board,
    durability: Durability,
) -> Result<(), LiveError> {
    let mut batch: Vec<Request> = Vec::new();
    let mut stop = false;
    while !stop {
        match queue.recv() {
            Ok(Message::Packets(request)) => batch.push(request),
            Ok(Message::Stop) | Err(_) => break,
        }
        while batch.len() < BATCH_REQUESTS_MAX {
            match queue.try_recv() {
                Ok(Message::Packets(request)) => batch.push(request),
                Ok(Message::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        metrics::queue_depth(queue.len());
        govern(supervisor, &mut batch, board, durability)?;
    }
    Ok(())
}

/// Submits, commits, publishes and answers one batch. On an error every
/// request of the batch is answered with it.
fn govern(
    supervisor: &mut Supervisor<Writer>,
    batch: &mut Vec<Request>,
    board: &Board,
    durability: Durability,
) -> Result<(), LiveError> {
    let mut answers = Vec::with_capacity(batch.len());
    let mut outcome = Ok(());
    for request in batch.iter_mut() {
        let mut these = Vec::with_capacity(request.packets.len());
        for packet in std::mem::take(&mut request.packets) {
            supervisor.journal_mut().note_arrival(request.arrived_unix_nanos);
            match supervisor.submit(packet) {
                Ok(answer) => these.push(answer),
                Err(e) => {
                    outcome = Err(LiveError::Stopped(e));
                    break;
                }
            }
        }
        if outcome.is_err() {
            break;
        }
        answers.push(these);
    }
    let outcome = outcome.and_then(|()| commit(supervisor, durability));
    if let Err(e) = outcome {
        let message = e.to_string();
        for request in batch.drain(..) {
            let _ = request.reply.send(Err(message.clone()));
        }
        return Err(e);
    }
    // Each job the batch touched, once; the events move to the board (the
    // answers sent to clients do not carry them).
    let mut touched = std::collections::BTreeSet::new();
    let mut events: Vec<Event> = Vec::new();
    for answer in answers.iter_mut().flatten() {
        metrics::answered(answer);
        if let Some(job) = &answer.job {
            touched.insert(job.clone());
        }
        events.append(&mut answer.events);
    }
    let jobs = touched.iter().filter_map(|job| supervisor.jobs().get(job).map(|state| decision(job, state))).collect();
    board.publish(jobs, supervisor.prior().cloned(), events, supervisor.tick());
    for (request, answer) in batch.drain(..).zip(answers) {
        metrics::acknowledged(request.received.elapsed(), answer.len());
        // A client that went away is not an error: its packets are recorded.
        let _ = request.reply.send(Ok(answer));
    }
    Ok(())
}

/// After the loop ends: governs what is still queued (when the loop ended
/// cleanly) or answers it with the reason it stopped.
fn drain_after_stop(
    queue: &Receiver<Message>,
    stopped: Option<&str>,
    supervisor: &mut Supervisor<Writer>,
    durability: Durability,
    board: &Board,
) {
    let mut batch: Vec<Request> = queue
        .try_iter()
        .filter_map(|m| match m {
            Message::Packets(request) => Some(request),
            Message::Stop => None,
        })
        .collect();
    match stopped {
        None => {
            if let Err(e) = govern(supervisor, &mut batch, board, durability) {
                tracing::error!(error = %e, "the last batch failed");
            }
        }
        Some(reason) => {
            for request in batch {
                let _ = request.reply.send(Err(reason.to_string()));
            }
        }
    }
}
