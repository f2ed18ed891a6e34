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
use metagov_bus::{log, Entry, Journal, JournalError, OwnedEntry, INGRESS};
use metagov_config::Config;
use metagov_storage::{
    init_session, segment_file_name, verify_replay, ChronicleReader, ChronicleWriter, RunContext, RunReader,
    SegmentLink, WriterOptions, FIRST_SEGMENT_FILE,
};
use tokio::sync::oneshot;

use crate::board::{Board, JobDecision};
use crate::metrics;
use crate::supervisor::{Answer, Event, JobState, Packet, Supervisor};
use crate::LiveError;

/// Requests the core takes into one group commit at most.
pub const BATCH_REQUESTS_MAX: usize = 1024;

/// The deterministic log of a live run directory.
pub const LOG_FILE: &str = "run.log";
/// Where `run.log` is written (the whole run's, a resumed one's included)
/// before it replaces the old one, so a failed start leaves the old log.
const LOG_REWRITE_SUFFIX: &str = ".resume";
/// The size at which a live run's segment is sealed and the next begun,
/// unless told otherwise: 64 MiB. The writer keeps each frame's 48-byte
/// index entry in memory until the seal, and a lightly loaded supervisor
/// writes one small frame per packet (under 1 KiB), so this bounds that
/// memory to a few MiB and the seal to one short write.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// The smallest segment size accepted (a segment holds its header and at
/// least one frame whatever the limit, so a smaller one only multiplies
/// files).
pub const SEGMENT_BYTES_MIN: u64 = 4096;

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
    /// Once a segment holds this many bytes, it is sealed before the next
    /// batch and the run goes on in the next ([`SEGMENT_BYTES_MIN`] at least).
    pub segment_bytes_max: u64,
}

/// What the core did, for the shell's last words.
#[derive(Debug)]
pub struct CoreReport {
    /// The run directory (its segments: `run.cmeta`, `run.0001.cmeta`, …).
    pub dir: PathBuf,
    /// Segment files the run has.
    pub segments: u32,
    /// Packets the run held when it started (resumed from).
    pub resumed_packets: u64,
    /// The last tick.
    pub ticks: u64,
}

/// Runs the core on this thread until [`Message::Stop`] or until every
/// sender is gone: rebuilds (or starts) the run in `options.dir`, marks the
/// board ready, governs, then seals the chronicle.
pub fn run(options: CoreOptions, queue: Receiver<Message>, board: Arc<Board>) -> Result<CoreReport, LiveError> {
    if options.segment_bytes_max < SEGMENT_BYTES_MIN {
        return Err(LiveError::Refused(format!(
            "a segment size of {} bytes is below the smallest, {SEGMENT_BYTES_MIN}",
            options.segment_bytes_max
        )));
    }
    fs::create_dir_all(&options.dir).map_err(|e| LiveError::io(&options.dir, e))?;
    let log_path = options.dir.join(LOG_FILE);
    let log_tmp = with_suffix(&log_path, LOG_REWRITE_SUFFIX);
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
        let mut journal = supervisor.into_journal();
        let segments = journal.segments();
        journal.seal()?;
        result?;
        tracing::info!(ticks, segments, "chronicle sealed");
        Ok(CoreReport { dir: options.dir.clone(), segments, resumed_packets, ticks })
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Starts a new run, or rebuilds the one recorded in the directory and
/// continues it in a new segment: the recorded run (every segment) is
/// verified by replay, its ingress is re-submitted to a supervisor that
/// records nothing (those entries are on disk already, and the replay has
/// just compared every one), so every actor, the duplicate memory and the
/// board are exactly as a supervisor that never stopped would have them;
/// then the next segment is created, linked to the chain of the last whole
/// frame on disk. The files already there are never written to.
fn open(options: &CoreOptions, board: &Board) -> Result<(Supervisor<SegmentJournal>, u64), LiveError> {
    let dir = &options.dir;
    let resume_error = |reason: String| LiveError::Resume { dir: dir.clone(), reason };
    drop_recordless_last_segment(dir)?;
    if !dir.join(FIRST_SEGMENT_FILE).exists() {
        let actors = ACTOR_NAMES.iter().map(|a| a.to_string()).collect();
        let context = init_session(options.config.run.seed, &options.config.canonical_toml(), actors);
        let place = SegmentPlace::new(options, context, &options.config);
        let journal = SegmentJournal::create(place, &SegmentLink::FIRST, (0, 0))?;
        let supervisor = Supervisor::new(&options.config, journal).map_err(|e| LiveError::Chronicle(e.to_string()))?;
        sync_dir(dir)?;
        return Ok((supervisor, 0));
    }
    let run = RunReader::open(dir).map_err(|e| resume_error(e.to_string()))?;
    let context = run.context().clone();
    let recorded =
        Config::from_toml_str(&context.config_text, "the recorded config").map_err(|e| resume_error(e.to_string()))?;
    if options.config_given && options.config.canonical_toml() != context.config_text {
        return Err(resume_error(format!(
            "it holds a run under config {}, and --config differs; resume without --config, or use another --out",
            &context.config_sha256[..12]
        )));
    }
    let report = verify_replay(&run, |_, journal| MetaSupervisor::build(&recorded, journal).map_err(|e| e.to_string()))
        .map_err(|e| resume_error(format!("replay --verify failed: {e}")))?;
    if let metagov_storage::IntegrityStatus::Corrupt { .. } = report.status {
        // Acknowledged packets may sit behind the damage: resuming would
        // silently drop them. A person decides.
        return Err(resume_error(format!(
            "the chronicle is {}; nothing is resumed (its intact prefix reads with `metagov export`; \
             move the file aside to start a new run)",
            report.status
        )));
    }
    if !report.complete {
        // A live run's frames end with whole ticks (tick-aligned), so this
        // is a chronicle some other writer split inside a tick.
        return Err(resume_error(format!(
            "its recording ends inside the tick of packet {}: only a run written by `metagov run` or \
             `metagov simulate --telemetry` (whose frames end with whole ticks) resumes",
            report.ingress
        )));
    }
    tracing::info!(packets = report.ingress, status = %report.status, "recorded run verified");

    let mut supervisor =
        Supervisor::new(&recorded, SegmentJournal::rebuilding()).map_err(|e| LiveError::Chronicle(e.to_string()))?;
    let mut packets = 0;
    let mut events = Vec::new();
    for entry in run.records() {
        let entry = entry.map_err(|e| LiveError::Chronicle(e.to_string()))?;
        let OwnedEntry::Delivery(delivery) = entry else { continue };
        if &*delivery.from != INGRESS {
            continue;
        }
        let packet = match Packet::from_value(&delivery.payload) {
            Some(packet) if &*delivery.topic == TELEMETRY_RAW => packet,
            _ => {
                return Err(resume_error(format!(
                    "tick {} is `{}` ingress of a kind a live run never records (ingress topics: {}); \
                     only runs of `metagov run` resume",
                    delivery.tick,
                    delivery.topic,
                    INGRESS_TOPICS.join(", ")
                )));
            }
        };
        let answer = supervisor.submit(packet).map_err(|e| LiveError::Chronicle(e.to_string()))?;
        packets += 1;
        events.extend(answer.events);
        if events.len() > crate::board::EVENTS_KEPT_MAX {
            events.drain(..events.len() - crate::board::EVENTS_KEPT_MAX);
        }
    }
    // Invariant: the replay above re-injected exactly these packets.
    assert_eq!(packets, report.ingress, "the rebuild re-submits the packets the replay verified");
    let last = run.segments().last().expect("a run has a segment");
    let link = SegmentLink::after(last.segment().index + 1, last.chain_head());
    let place = SegmentPlace::new(options, context, &recorded);
    supervisor.journal_mut().begin(SegmentJournal::create(place, &link, run_size(&run))?);
    sync_dir(dir)?;
    let jobs = supervisor
        .jobs()
        .iter()
        .map(|(job, s)| (job.clone(), JobDecision { tick: s.tick, json: s.to_json(job) }))
        .collect();
    board.publish(jobs, supervisor.prior().cloned(), events, supervisor.tick());
    Ok((supervisor, packets))
}

/// Bytes and whole frames of a run's segments.
fn run_size(run: &RunReader) -> (u64, u64) {
    let bytes = run.segments().iter().map(|s| fs::metadata(s.path()).map_or(0, |m| m.len())).sum();
    (bytes, run.frame_count())
}

/// A last segment that holds no record (a supervisor stopped or killed
/// before its first frame, or while writing its header) is removed, so a
/// resume does not leave a trail of empty files and never stops at a torn
/// header. Nothing recorded is lost: the file has no frame.
fn drop_recordless_last_segment(dir: &Path) -> Result<(), LiveError> {
    let segments = match metagov_storage::segment_files(dir) {
        Ok(segments) => segments,
        // No run here (or nothing readable as one): `open` decides.
        Err(_) => return Ok(()),
    };
    let Some(last) = segments.last() else { return Ok(()) };
    let recordless = match ChronicleReader::open(last) {
        Ok(reader) => reader.frame_count() == 0 && !matches!(reader.tail(), metagov_storage::Tail::Corrupt { .. }),
        Err(metagov_storage::ChronicleError::TornHeader { .. }) => true,
        Err(_) => false,
    };
    if recordless {
        tracing::info!(segment = %last.display(), "removing a segment that holds no record");
        fs::remove_file(last).map_err(|e| LiveError::io(last, e))?;
        sync_dir(dir)?;
    }
    Ok(())
}

/// The writer options of a live run's segments: the config's frame limits,
/// with frames that end only between ticks, so a kill between two frame
/// writes never leaves half a tick (which a resume could not continue).
pub fn writer_options(config: &Config) -> WriterOptions {
    WriterOptions { tick_aligned: true, ..WriterOptions::from(&config.chronicle) }
}

/// Where a live run's segments go and when the current one is full.
struct SegmentPlace {
    dir: PathBuf,
    context: RunContext,
    options: WriterOptions,
    /// A segment at least this large is sealed before the next batch, and
    /// the run goes on in the next.
    bytes_max: u64,
}

impl SegmentPlace {
    /// The segments of the run `context` under `config` in `options.dir`.
    fn new(options: &CoreOptions, context: RunContext, config: &Config) -> SegmentPlace {
        SegmentPlace {
            dir: options.dir.clone(),
            context,
            options: writer_options(config),
            bytes_max: options.segment_bytes_max,
        }
    }
}

/// The live run's journal: the writer of the run's current segment, or no
/// writer while a recorded run is re-submitted to rebuild the actors' state
/// (those entries are on disk already).
pub struct SegmentJournal {
    writer: Option<(Writer, SegmentPlace)>,
    /// Where the current segment stands in the run.
    link: SegmentLink,
    /// Bytes and whole frames of the run's segments before the current one.
    before: (u64, u64),
}

impl SegmentJournal {
    /// A journal that records nothing, until [`begin`](Self::begin).
    fn rebuilding() -> SegmentJournal {
        SegmentJournal { writer: None, link: SegmentLink::FIRST, before: (0, 0) }
    }

    /// Creates segment `link.index` of the run (a file that must not exist
    /// yet); `before` is the size of the segments before it.
    fn create(place: SegmentPlace, link: &SegmentLink, before: (u64, u64)) -> Result<SegmentJournal, LiveError> {
        let path = place.dir.join(segment_file_name(link.index));
        let writer = ChronicleWriter::create_segment(&path, &place.context, link, place.options)
            .map_err(|e| LiveError::Chronicle(e.to_string()))?;
        Ok(SegmentJournal { writer: Some((writer, place)), link: *link, before })
    }

    /// Records from now on into `next` (the rebuild is over).
    fn begin(&mut self, next: SegmentJournal) {
        *self = next;
    }

    fn writer(&mut self) -> Result<&mut Writer, LiveError> {
        match &mut self.writer {
            Some((writer, _)) => Ok(writer),
            None => Err(LiveError::Chronicle("no segment is open for writing".into())),
        }
    }

    /// Notes the arrival time of the next ingress packet (nothing while
    /// rebuilding).
    fn note_arrival(&mut self, unix_nanos: i64) {
        if let Some((writer, _)) = &mut self.writer {
            writer.note_arrival(unix_nanos);
        }
    }

    /// Bytes and whole frames of the run written so far, every segment
    /// included.
    fn run_size(&self) -> (u64, u64) {
        let (bytes, frames) = self.writer.as_ref().map_or((0, 0), |(w, _)| (w.bytes_written(), w.frames_written()));
        (self.before.0 + bytes, self.before.1 + frames)
    }

    /// The segments of the run so far, the current one included.
    fn segments(&self) -> u32 {
        self.link.index + 1
    }

    /// Seals the current segment and syncs it to disk; returns where its
    /// segments go and its chain head.
    fn seal(&mut self) -> Result<(SegmentPlace, metagov_storage::format::Chain), LiveError> {
        let Some((writer, place)) = self.writer.take() else {
            return Err(LiveError::Chronicle("no segment is open to seal".into()));
        };
        let path = place.dir.join(segment_file_name(self.link.index));
        let (bytes, frames) = (writer.bytes_written(), writer.frames_written());
        let head = writer.chain_head();
        let file = writer.seal().map_err(|e| LiveError::Chronicle(e.to_string()))?;
        let file = file.into_inner().map_err(|e| LiveError::io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| LiveError::io(&path, e))?;
        self.before = (self.before.0 + bytes, self.before.1 + frames);
        Ok((place, head))
    }

    /// Before a batch: once the current segment holds `bytes_max` bytes,
    /// seals it and goes on in the next one, linked to its chain head.
    fn rotate_if_full(&mut self) -> Result<(), LiveError> {
        let full = self.writer.as_ref().is_some_and(|(w, place)| w.bytes_written() >= place.bytes_max);
        if !full {
            return Ok(());
        }
        let sealed = self.link.index;
        let (place, head) = self.seal()?;
        let dir = place.dir.clone();
        let next = SegmentLink::after(sealed + 1, head);
        *self = SegmentJournal::create(place, &next, self.before)?;
        sync_dir(&dir)?;
        tracing::info!(sealed = %segment_file_name(sealed), next = %segment_file_name(next.index), "chronicle segment rotated");
        Ok(())
    }
}

impl Journal for SegmentJournal {
    fn record(&mut self, entry: Entry<'_>) -> Result<(), JournalError> {
        match &mut self.writer {
            Some((writer, _)) => Journal::record(writer, entry),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<(), JournalError> {
        match &mut self.writer {
            Some((writer, _)) => Journal::flush(writer),
            None => Ok(()),
        }
    }
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
fn commit(supervisor: &mut Supervisor<SegmentJournal>, durability: Durability) -> Result<(), LiveError> {
    let journal = supervisor.journal_mut();
    let writer = journal.writer()?;
    writer.flush().map_err(|e| LiveError::Chronicle(e.to_string()))?;
    if durability == Durability::Fsync {
        #[allow(clippy::disallowed_methods)] // The shell times the sync for metrics; no actor sees it.
        let started = Instant::now();
        writer.get_ref().get_ref().sync_data().map_err(|e| LiveError::Sync(e.to_string()))?;
        metrics::fsync_done(started.elapsed());
    }
    let (bytes, frames) = journal.run_size();
    metrics::chronicle_size(bytes, frames);
    Ok(())
}

fn serve(
    supervisor: &mut Supervisor<SegmentJournal>,
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
    supervisor: &mut Supervisor<SegmentJournal>,
    batch: &mut Vec<Request>,
    board: &Board,
    durability: Durability,
) -> Result<(), LiveError> {
    let mut answers = Vec::with_capacity(batch.len());
    // A full segment is sealed only when there is something for the next
    // one, so a run never ends in an empty segment.
    let mut outcome = if batch.is_empty() { Ok(()) } else { supervisor.journal_mut().rotate_if_full() };
    for request in batch.iter_mut() {
        if outcome.is_err() {
            break;
        }
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
    supervisor: &mut Supervisor<SegmentJournal>,
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
