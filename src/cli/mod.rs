//! The commands behind the CLI. Each writes its report to the `Write` it is
//! given and returns whether the command succeeded; errors carry their
//! context for `{:#}` printing.

pub mod bench;
mod bench_bundle;
mod bench_governance;
mod bench_live;
mod bench_suite;
pub mod bundle;
mod counterfactual;
mod output;
mod progress;
pub mod prune;
pub mod report;
pub mod run;
pub mod suite;

pub use counterfactual::{diff_runs, replay_inspect, replay_simulate};
pub use output::{counted, write_csv_field, Escaped, EscapedLines, OutputFile};

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use metagov_bus::{OwnedEntry, Value};
use metagov_config::{Config, DEFAULT_TOML};
use metagov_storage::{verify_replay, verify_run, IntegrityStatus, ReplayError, RunIntegrity, RunReader, Tail};

// The verdict every chronicle command shares (docs/chronicle-format.md,
// "Verdicts and exit codes"): `sealed`, `unsealed`, `torn` or `corrupt`, as
// storage's one walk over the frames gives it.

use metagov_sim::priors;
use metagov_sim::scenario::Scenario;
use metagov_sim::simulate::{self as sim, Simulation};

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

/// Opens a run: a chronicle file, or a run directory's segments.
fn open(file: &Path) -> Result<RunReader> {
    RunReader::open(file).with_context(|| format!("cannot read chronicle {}", Escaped(file.display())))
}

/// A segment file as `inspect` and `verify` name it: its file name.
fn segment_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// [`verify_run`], with the path in the error.
fn verify_path(file: &Path) -> Result<RunIntegrity> {
    verify_run(file).with_context(|| format!("cannot verify {}", Escaped(file.display())))
}

/// Says on standard error what a command that printed records (query,
/// export) learned about the file's end: nothing when sealed, a warning when
/// unsealed or torn (the records are those of the whole frames), an error
/// when corrupt, which fails the command.
fn report_verdict(file: &Path, status: &IntegrityStatus, records: u64) -> Outcome {
    let file = Escaped(file.display());
    match status {
        IntegrityStatus::Sealed => Outcome::Success,
        IntegrityStatus::Unsealed | IntegrityStatus::Torn { .. } => {
            eprintln!("metagov: warning: {file}: {}; {records} records read", Escaped(status));
            Outcome::Success
        }
        IntegrityStatus::Corrupt { .. } => {
            eprintln!(
                "metagov: error: {file}: {}; {records} records of the whole frames before it were read",
                Escaped(status)
            );
            Outcome::Failure
        }
    }
}

/// The verdict a reader's open found, as verify states it: what `query`
/// knows without reading every payload.
fn tail_status(tail: &Tail) -> IntegrityStatus {
    match tail {
        Tail::Sealed => IntegrityStatus::Sealed,
        Tail::Unsealed => IntegrityStatus::Unsealed,
        &Tail::Torn { offset, dropped_bytes } => IntegrityStatus::Torn { offset, dropped_bytes },
        Tail::Corrupt { location, offset, reason } => {
            IntegrityStatus::Corrupt { location: *location, offset: *offset, reason: reason.clone() }
        }
    }
}

/// `metagov inspect`: exits non-zero when the file is corrupt.
pub fn inspect(file: &Path, all_frames: bool, json: bool, out: &mut dyn Write) -> Result<Outcome> {
    let reader = open(file)?;
    if json {
        return inspect_json(file, &reader, out);
    }
    let ctx = reader.context();
    writeln!(out, "chronicle    {}", Escaped(file.display()))?;
    writeln!(out, "run id       {}", Escaped(&ctx.run_id))?;
    writeln!(out, "seed         {}", ctx.seed)?;
    writeln!(out, "config sha   {}", Escaped(&ctx.config_sha256))?;
    writeln!(out, "environment  {}", Escaped(&ctx.environment))?;
    writeln!(out, "actors       {}", Escaped(ctx.actors.join(", ")))?;
    writeln!(out, "producer     {}", Escaped(&ctx.producer))?;
    writeln!(out, "format       version {}", reader.version())?;
    writeln!(out, "frames       {}", reader.frame_count())?;
    writeln!(out, "records      {}", reader.record_count())?;
    let several = reader.segments().len() > 1;
    if several {
        writeln!(out, "segments     {}", reader.segments().len())?;
    }
    for segment in reader.segments() {
        if several {
            let name = segment_name(segment.path());
            writeln!(
                out,
                "\nsegment {}    {}: {} frames, {} records, {}",
                segment.segment().index,
                Escaped(name),
                segment.frame_count(),
                segment.record_count(),
                Escaped(segment.tail())
            )?;
        }
        match segment.frames() {
            Ok(frames) => write_frames(&frames, all_frames, out)?,
            Err(e) => writeln!(out, "\nframes       cannot be listed: {}", Escaped(format!("{e:#}")))?,
        }
    }
    let report = verify_path(file)?.total;
    writeln!(out, "\nintegrity    {}", Escaped(&report.status))?;
    Ok(if matches!(report.status, IntegrityStatus::Corrupt { .. }) { Outcome::Failure } else { Outcome::Success })
}

/// `inspect --json`: the run's metadata as one JSON object — its context,
/// the frames and records, the deliveries per topic, the telemetry packets
/// and cycle records per phase, and the integrity verdict (the audit
/// report of `verify --json`).
fn inspect_json(file: &Path, reader: &RunReader, out: &mut dyn Write) -> Result<Outcome> {
    let counts = count_records(reader);
    let report = verify_path(file)?;
    let metadata = serde_json::json!({
        "run": run_json(reader.context()),
        "format_version": reader.version(),
        "frames": reader.frame_count(),
        "records": reader.record_count(),
        "deliveries_by_topic": counts.topics,
        "cycle_records": counts.cycles,
        "meta_frames": counts.frames,
        "arrival_records": counts.arrivals,
        "phases": counts.phases,
        "integrity": audit_report(file, &report),
    });
    writeln!(out, "{metadata}")?;
    Ok(if matches!(report.total.status, IntegrityStatus::Corrupt { .. }) { Outcome::Failure } else { Outcome::Success })
}

fn write_frames(frames: &[metagov_storage::FrameInfo], all_frames: bool, out: &mut dyn Write) -> io::Result<()> {
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
    Ok(())
}

/// `metagov verify`: a chronicle file, or every segment of a run directory
/// and the links between them. With `pubkey`, the seal signature of the
/// run's last segment (its chain head covers every segment before it).
pub fn verify(file: &Path, json: bool, pubkey: Option<&Path>, out: &mut dyn Write) -> Result<Outcome> {
    let integrity = verify_path(file)?;
    let report = &integrity.total;
    let sealed = matches!(report.status, IntegrityStatus::Sealed);
    // The seal signature is checked only on a sealed run: anything else
    // has no seal, and already fails.
    let seal = match (pubkey, integrity.segments.last()) {
        (Some(pubkey), Some((last, _))) if sealed => Some(bundle::check_seal_signature(last, pubkey)?),
        _ => None,
    };
    let signed = seal.as_ref().is_none_or(|s| s.passed);
    let outcome = if sealed && signed { Outcome::Success } else { Outcome::Failure };
    if json {
        let mut report = audit_report(file, &integrity);
        if let Some(seal) = &seal {
            report["seal_signature"] = serde_json::json!({"status": seal.status, "signer": seal.signer});
        }
        writeln!(out, "{report}")?;
        return Ok(outcome);
    }
    writeln!(out, "{}: {}", Escaped(file.display()), Escaped(&report.status))?;
    writeln!(
        out,
        "  frames {}, records {}, bytes {}, chain head {}",
        report.frames, report.records, report.bytes, report.chain_head
    )?;
    if integrity.segments.len() > 1 {
        writeln!(out, "  {} segments, each linked to the chain of the one before:", integrity.segments.len())?;
        for (path, segment) in &integrity.segments {
            let name = segment_name(path);
            writeln!(
                out,
                "    {}: {}; frames {}, records {}, bytes {}",
                Escaped(name),
                Escaped(&segment.status),
                segment.frames,
                segment.records,
                segment.bytes
            )?;
        }
    }
    if let Some(seal) = seal {
        writeln!(out, "  {}", seal.line)?;
    }
    Ok(outcome)
}

/// One verdict as the audit report states it: `status` and where a tear or
/// the damage is.
fn status_json(status: &IntegrityStatus) -> (&'static str, Option<serde_json::Value>, Option<serde_json::Value>) {
    use serde_json::json;
    match status {
        IntegrityStatus::Sealed => ("sealed", None, None),
        IntegrityStatus::Unsealed => ("unsealed", None, None),
        IntegrityStatus::Torn { offset, dropped_bytes } => {
            ("torn", Some(json!({"offset": offset, "dropped_bytes": dropped_bytes})), None)
        }
        IntegrityStatus::Corrupt { location, offset, reason } => {
            ("corrupt", None, Some(json!({"location": location.to_string(), "offset": offset, "reason": reason})))
        }
    }
}

/// `verify --json`: the integrity verdict as one JSON object (the audit
/// report): the file, `status` (`sealed`, `unsealed`, `torn`, `corrupt`)
/// and `sealed`, the counts and chain head, where a tear or the damage is,
/// the run it records (null when the header itself cannot be read), and
/// each segment's own verdict (one for a single file).
fn audit_report(file: &Path, integrity: &RunIntegrity) -> serde_json::Value {
    use serde_json::json;
    let report = &integrity.total;
    let (status, torn, corruption) = status_json(&report.status);
    let run = RunReader::open(file).ok().map(|reader| run_json(reader.context()));
    let segments: Vec<serde_json::Value> = integrity
        .segments
        .iter()
        .map(|(path, segment)| {
            let (status, torn, corruption) = status_json(&segment.status);
            json!({
                "file": path.display().to_string(),
                "status": status,
                "frames": segment.frames,
                "records": segment.records,
                "bytes": segment.bytes,
                "chain_head": segment.chain_head,
                "torn": torn,
                "corruption": corruption,
            })
        })
        .collect();
    json!({
        "file": file.display().to_string(),
        "status": status,
        "sealed": matches!(report.status, IntegrityStatus::Sealed),
        "frames": report.frames,
        "records": report.records,
        "bytes": report.bytes,
        "chain_head": report.chain_head,
        "torn": torn,
        "corruption": corruption,
        "run": run,
        "segments": segments,
    })
}

/// What `query` keeps besides its tick range: deliveries on some of
/// `topics` (all when empty), of one `job`, for `windows`. A filter on a
/// job or window keeps only deliveries whose payload names one (cycle
/// records and meta frames are kept only with no filter at all).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryFilter {
    /// Topics to keep; empty keeps every topic.
    pub topics: Vec<String>,
    /// Keep only deliveries whose payload's `job` is this.
    pub job: Option<String>,
    /// Keep only deliveries whose payload's `window` is in this range.
    pub windows: Option<std::ops::RangeInclusive<u64>>,
}

impl QueryFilter {
    fn is_empty(&self) -> bool {
        self.topics.is_empty() && self.job.is_none() && self.windows.is_none()
    }

    fn keeps(&self, entry: &OwnedEntry) -> bool {
        let OwnedEntry::Delivery(e) = entry else { return self.is_empty() };
        let topic = self.topics.is_empty() || self.topics.iter().any(|t| *t == *e.topic);
        let job = self.job.as_deref().is_none_or(|job| e.payload.get("job").and_then(Value::as_str) == Some(job));
        let window = self
            .windows
            .as_ref()
            .is_none_or(|range| e.payload.get("window").and_then(Value::as_u64).is_some_and(|w| range.contains(&w)));
        topic && job && window
    }
}

/// Parses `--window`: `N` or `A..B` (inclusive), naming the bad text.
///
/// # Errors
///
/// If it is neither, or `A > B`.
pub fn parse_windows(text: &str) -> Result<std::ops::RangeInclusive<u64>> {
    let number =
        |s: &str| s.trim().parse::<u64>().with_context(|| format!("--window {text:?}: {s:?} is not a window number"));
    let (from, to) = match text.split_once("..") {
        Some((from, to)) => (number(from)?, number(to.strip_prefix('=').unwrap_or(to))?),
        None => (number(text)?, number(text)?),
    };
    anyhow::ensure!(from <= to, "--window {text:?}: {from} is after {to}");
    Ok(from..=to)
}

/// What the whole frames of a chronicle hold, counted in one pass.
#[derive(Default)]
struct RunCounts {
    /// Deliveries per topic.
    topics: BTreeMap<String, u64>,
    /// Cycle records.
    cycles: u64,
    /// Meta frames.
    frames: u64,
    /// Arrival records (live runs).
    arrivals: u64,
    /// Records read.
    records: u64,
    /// Per phase: admitted telemetry packets (their `phase`) and cycle
    /// records (theirs).
    phases: BTreeMap<String, BTreeMap<&'static str, u64>>,
}

fn count_records(reader: &RunReader) -> RunCounts {
    use metagov_actors::messages::TELEMETRY_ACCEPTED;
    let mut counts = RunCounts::default();
    let phase = |counts: &mut RunCounts, phase: String, what| {
        *counts.phases.entry(phase).or_default().entry(what).or_default() += 1;
    };
    for entry in reader.records().map_while(Result::ok) {
        counts.records += 1;
        match entry {
            OwnedEntry::Delivery(d) => {
                *counts.topics.entry(d.topic.to_string()).or_default() += 1;
                // An admitted packet is delivered to several actors: count it once.
                if *d.topic == *TELEMETRY_ACCEPTED && *d.to == *"integrative" {
                    let name = d.payload.get("phase").and_then(Value::as_str).unwrap_or("(none)").to_owned();
                    phase(&mut counts, name, "packets");
                }
            }
            OwnedEntry::Cycle { record, .. } => {
                counts.cycles += 1;
                phase(&mut counts, record.phase.to_string(), "cycle_records");
            }
            OwnedEntry::Frame { .. } => counts.frames += 1,
            OwnedEntry::Arrival { .. } => counts.arrivals += 1,
        }
    }
    counts
}

/// The config a chronicle recorded in its header, read back.
fn recorded_config(file: &Path, reader: &RunReader) -> Result<Config> {
    Config::from_toml_str(&reader.context().config_text, "the chronicle's config")
        .with_context(|| format!("{}: the recorded config does not read", Escaped(file.display())))
}

/// A run's context as JSON, as `verify --json` and `inspect --json` show it.
fn run_json(ctx: &metagov_storage::RunContext) -> serde_json::Value {
    serde_json::json!({
        "run_id": ctx.run_id,
        "seed": ctx.seed,
        "config_sha256": ctx.config_sha256,
        "environment": ctx.environment.to_string(),
        "actors": ctx.actors,
        "producer": ctx.producer,
    })
}

/// Refuses a topic no actor uses and the run does not hold, listing the
/// run's topics with a "did you mean".
fn check_topics(file: &Path, reader: &RunReader, topics: &[String]) -> Result<()> {
    let unknown: Vec<&String> =
        topics.iter().filter(|t| !metagov_actors::messages::TOPICS.contains(&t.as_str())).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let present = count_records(reader).topics;
    let names: Vec<&str> = present.keys().map(String::as_str).collect();
    for topic in unknown {
        anyhow::ensure!(
            present.contains_key(topic.as_str()),
            "{}: no delivery on topic `{}`; {} (the run's topics: {})",
            Escaped(file.display()),
            Escaped(topic),
            metagov_config::suggestion(topic, &names),
            names.join(", ")
        );
    }
    Ok(())
}

/// One entry of `query`: a JSON line, or a table row for a person, every
/// field escaped.
fn write_row(entry: &OwnedEntry, json: bool, out: &mut dyn Write) -> io::Result<()> {
    if json {
        return writeln!(out, "{}", entry.json());
    }
    let (tick, seq) = entry.at();
    match entry {
        OwnedEntry::Delivery(e) => {
            let cause = e.cause.map_or_else(|| "(ingress)".to_owned(), |cause| format!("<- {tick}.{cause}"));
            writeln!(
                out,
                "{tick}.{seq}  {}  {} -> {}  {cause}  {}",
                Escaped(&e.topic),
                Escaped(&e.from),
                Escaped(&e.to),
                Escaped(&e.payload)
            )
        }
        OwnedEntry::Cycle { record, .. } => writeln!(out, "{tick}.{seq}  (cycle)  {}", Escaped(record.to_value())),
        OwnedEntry::Frame { frame, .. } => writeln!(out, "{tick}.{seq}  (meta frame)  {}", Escaped(frame.to_value())),
        OwnedEntry::Arrival { unix_nanos, .. } => {
            writeln!(out, "{tick}.{seq}  (arrival)  {}", metagov_storage::utc_text(*unix_nanos))
        }
    }
}

/// `metagov query`.
pub fn query(
    file: &Path,
    from: u64,
    to: u64,
    filter: &QueryFilter,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome> {
    anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
    let reader = open(file)?;
    check_topics(file, &reader, &filter.topics)?;
    let mut count = 0;
    reader
        .visit_range(from, to, |entry| -> Result<()> {
            count += 1;
            if filter.keeps(&entry) {
                write_row(&entry, json, out)?;
            }
            Ok(())
        })
        .with_context(|| format!("cannot query {}", Escaped(file.display())))?;
    out.flush()?;
    Ok(report_verdict(file, &tail_status(reader.tail()), count))
}

/// What `metagov explain` is asked: a job, and optionally one knob, one
/// window (or the window of one tick), and the whole chain of each change.
#[derive(Clone, Debug, Default)]
pub struct ExplainQuery<'a> {
    /// The job.
    pub job: &'a str,
    /// Only this knob's changes.
    pub knob: Option<&'a str>,
    /// Only the changes caused by this window's packet.
    pub window: Option<u64>,
    /// Only the changes caused by the packet of this tick.
    pub tick: Option<u64>,
    /// Under each window's changes, what the layer weighed in it.
    pub detail: bool,
}

impl ExplainQuery<'_> {
    fn wants(&self, window: u64, tick: u64) -> bool {
        self.window.is_none_or(|w| w == window) && self.tick.is_none_or(|t| t == tick)
    }
}

/// `metagov explain`: each knob change of the job in words, from the
/// recorded decisions and the run's own config; `json` writes one object
/// per change. With `detail`, each window's changes are followed by what the
/// layer weighed in it (its `decision.evidence`). Asked about one window in
/// which nothing changed, it says why not, from the same evidence.
pub fn explain(file: &Path, query: &ExplainQuery<'_>, json: bool, out: &mut dyn Write) -> Result<Outcome> {
    use metagov_actors::explain::{weighed, Cause, Explainer};
    use metagov_actors::messages::{evidence_from_value, DECISION_EVIDENCE};
    let job = query.job;
    let reader = open(file)?;
    let config = recorded_config(file, &reader)?;
    let mut explainer = Explainer::new(&config);
    let (mut seen_job, mut printed) = (false, 0);
    // The one window asked about, if nothing changed in it: its tick and
    // evidence, for the answer to "why not".
    let mut asked = None;
    // The tick of the last window whose changes were printed, whose
    // evidence follows in the same tick (with `detail`).
    let mut changed_at = None;
    let mut visit = |entry: OwnedEntry| -> io::Result<()> {
        let OwnedEntry::Delivery(d) = entry else { return Ok(()) };
        if d.payload.get("job").and_then(Value::as_str) != Some(job) {
            return Ok(());
        }
        seen_job = true;
        if *d.topic == *DECISION_EVIDENCE {
            let Ok(record) = evidence_from_value(&d.payload) else { return Ok(()) };
            let one_window = query.window.is_some() || query.tick.is_some();
            if one_window && query.wants(record.window, d.tick) {
                asked = Some((d.tick, record.clone()));
            }
            if query.detail && changed_at == Some(d.tick) {
                let lines = weighed(&record, &config);
                if json {
                    let line = serde_json::json!({
                        "job": job, "window": record.window, "tick": d.tick, "weighed": lines,
                    });
                    writeln!(out, "{line}")?;
                } else {
                    for line in lines {
                        writeln!(out, "    {}", Escaped(line))?;
                    }
                }
            }
            return Ok(());
        }
        for change in explainer.observe(&d) {
            if query.knob.is_some_and(|k| k != change.knob) || !query.wants(change.window, change.tick) {
                continue;
            }
            printed += 1;
            changed_at = Some(d.tick);
            if json {
                let (cause, rules) = match &change.cause {
                    Cause::Start => ("start", Vec::new()),
                    Cause::Rollback(reason) => (reason.as_str(), Vec::new()),
                    Cause::Rules(fired) => ("rules", fired.iter().map(|f| f.rule.clone()).collect()),
                };
                let line = serde_json::json!({
                    "job": change.job, "window": change.window, "tick": change.tick, "knob": change.knob,
                    "from": change.from, "to": change.to, "cause": cause, "rules": rules,
                    "explanation": change.to_string(),
                });
                writeln!(out, "{line}")?;
            } else {
                writeln!(out, "{}", Escaped(&change))?;
            }
        }
        Ok(())
    };
    // One window: only the frames of its tick are read (through the index),
    // once the tick is known; a window the search cannot place is looked for
    // in the whole run.
    let at = match (query.tick, query.window) {
        (Some(tick), _) => WindowAt::Tick(tick),
        (None, Some(window)) => window_tick(file, &reader, job, window)
            .with_context(|| format!("cannot find window {window} of job {job:?} in {}", Escaped(file.display())))?,
        (None, None) => WindowAt::Unknown,
    };
    let outcome = match at {
        WindowAt::Tick(tick) => {
            reader
                .visit_range(tick, tick, |entry| visit(entry).map_err(anyhow::Error::from))
                .with_context(|| format!("cannot read tick {tick} of {}", Escaped(file.display())))?;
            anyhow::ensure!(
                seen_job,
                "{}: tick {tick} holds no delivery of job {:?} (a tick is one packet of one job: see `metagov trace`)",
                Escaped(file.display()),
                Escaped(job).to_string()
            );
            Outcome::Success
        }
        // The search saw the job's packets around the window.
        WindowAt::Absent => {
            seen_job = true;
            Outcome::Success
        }
        WindowAt::Unknown => export_records(file, &reader, visit)?,
    };
    anyhow::ensure!(seen_job, "{}: no delivery names job {:?}", Escaped(file.display()), Escaped(job).to_string());
    if printed == 0 {
        why_not(query, asked, &config, json, out)?;
    }
    out.flush()?;
    Ok(outcome)
}

/// `metagov replay RUN --explain`: every knob change of every job over the
/// run in `explain`'s words, `job: sentence` a line, in one pass.
pub fn replay_explain(file: &Path, out: &mut dyn Write) -> Result<Outcome> {
    use metagov_actors::explain::Explainer;
    let reader = open(file)?;
    let config = recorded_config(file, &reader)?;
    let mut explainer = Explainer::new(&config);
    let mut changes = 0;
    let outcome = export_records(file, &reader, |entry| {
        let OwnedEntry::Delivery(d) = entry else { return Ok(()) };
        for change in explainer.observe(&d) {
            changes += 1;
            writeln!(out, "{}: {}", Escaped(&change.job), Escaped(&change))?;
        }
        Ok(())
    })?;
    writeln!(out, "{changes} knob changes")?;
    out.flush()?;
    Ok(outcome)
}

/// Where `job`'s admitted packet of `window` is, as the search over the
/// frames found it.
enum WindowAt {
    /// At this tick.
    Tick(u64),
    /// Nowhere: the job's admitted windows pass it by (a gap, or beyond its
    /// last or before its first).
    Absent,
    /// The search met a frame without a packet of the job: read the run.
    Unknown,
}

/// The job's admitted windows in frame `k`: the (window, tick) of each.
fn job_windows(reader: &RunReader, frame: &metagov_storage::FrameInfo, job: &str) -> Result<Vec<(u64, u64)>> {
    use metagov_actors::messages::TELEMETRY_ACCEPTED;
    let mut windows = Vec::new();
    // Only the admitted packets are built: the rest of the frame (evidence,
    // decisions) is checked and walked past.
    reader
        .visit_range_where(
            frame.first_tick,
            frame.last_tick,
            |topic| topic == TELEMETRY_ACCEPTED,
            |entry| {
                let OwnedEntry::Delivery(d) = entry else { return Ok::<(), metagov_storage::ChronicleError>(()) };
                if *d.topic != *TELEMETRY_ACCEPTED || d.payload.get("job").and_then(Value::as_str) != Some(job) {
                    return Ok(());
                }
                // An admitted packet's window is a non-negative int (the validator's rule).
                if let Some(w) = d.payload.get("window").and_then(Value::as_u64) {
                    windows.push((w, d.tick));
                }
                Ok(())
            },
        )
        .with_context(|| format!("cannot read frame {} of the chronicle", frame.index))?;
    Ok(windows)
}

/// Finds `job`'s admitted packet of `window` by interpolation over the
/// frames (a job's admitted windows rise with the tick, at a rate that
/// seldom changes much): a few frames are decoded, not the run.
fn window_tick(file: &Path, reader: &RunReader, job: &str, window: u64) -> Result<WindowAt> {
    let frames = reader.frames().with_context(|| format!("cannot read the index of {}", Escaped(file.display())))?;
    let Some(last) = frames.len().checked_sub(1) else { return Ok(WindowAt::Unknown) };
    // The frames lo..=hi may hold the window; (frame, its job windows' range) at each end.
    let range = |k: usize| -> Result<Option<(u64, u64, Option<u64>)>> {
        let windows = job_windows(reader, &frames[k], job)?;
        let found = windows.iter().find(|&&(w, _)| w == window).map(|&(_, tick)| tick);
        Ok(windows.iter().map(|&(w, _)| w).min().zip(windows.iter().map(|&(w, _)| w).max()).map(|(a, b)| (a, b, found)))
    };
    let (mut lo, mut hi) = (0, last);
    let (Some(first), Some(end)) = (range(lo)?, range(hi)?) else { return Ok(WindowAt::Unknown) };
    let (mut lo_window, mut hi_window) = (first.0, end.1);
    for (_, _, found) in [first, end] {
        if let Some(tick) = found {
            return Ok(WindowAt::Tick(tick));
        }
    }
    if window < lo_window || window > hi_window {
        return Ok(WindowAt::Absent);
    }
    // Each probe cuts the span; at most log2(frames) + a few of them.
    for _ in 0..64 {
        if hi <= lo + 1 {
            return Ok(WindowAt::Absent);
        }
        let share = (window - lo_window) as f64 / (hi_window - lo_window).max(1) as f64;
        let guess = lo + ((hi - lo) as f64 * share) as usize;
        let mid = guess.clamp(lo + 1, hi - 1);
        let Some((min, max, found)) = range(mid)? else { return Ok(WindowAt::Unknown) };
        if let Some(tick) = found {
            return Ok(WindowAt::Tick(tick));
        }
        if window < min {
            (hi, hi_window) = (mid, min);
        } else if window > max {
            (lo, lo_window) = (mid, max);
        } else {
            return Ok(WindowAt::Absent);
        }
    }
    Ok(WindowAt::Unknown)
}

/// The answer of `explain` when nothing it was asked about changed: for one
/// window, what held the rules back (from its evidence), else that nothing
/// changed.
fn why_not(
    query: &ExplainQuery<'_>,
    asked: Option<(u64, metagov_actors::messages::EvidenceRecord)>,
    config: &Config,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let what = query.knob.map_or_else(|| "no knob".to_owned(), |k| format!("{}", Escaped(k)));
    let job = Escaped(query.job);
    match asked {
        Some((tick, record)) => {
            let lines = metagov_actors::explain::weighed(&record, config);
            if json {
                let line = serde_json::json!({
                    "job": query.job, "window": record.window, "tick": tick, "changed": false, "weighed": lines,
                });
                writeln!(out, "{line}")?;
            } else {
                writeln!(
                    out,
                    "{job}: window {} (tick {tick}): {what} changed. What the layer weighed:",
                    record.window
                )?;
                for line in lines {
                    writeln!(out, "    {}", Escaped(line))?;
                }
            }
        }
        None if json => {}
        None => {
            let when = match (query.window, query.tick) {
                (Some(w), _) => format!("at window {w}"),
                (None, Some(t)) => format!("at tick {t}"),
                (None, None) => "in the run".to_owned(),
            };
            let why = if query.window.is_some() || query.tick.is_some() {
                " The chronicle holds no evidence for that window (the job did not reach it, its packet was \
                 rejected, or the run was recorded before evidence was), so it cannot say why not."
            } else {
                ""
            };
            writeln!(out, "{job}: {what} changed {when}.{why}")?;
        }
    }
    Ok(())
}

/// `metagov trace`: the lifecycle of the packet of `tick` and the answers
/// to the audit questions, from that tick's deliveries alone (read through
/// the index: only the frames holding the tick). `json` writes one object.
pub fn trace(file: &Path, tick: u64, json: bool, out: &mut dyn Write) -> Result<Outcome> {
    use metagov_actors::trace::{summary, Trace, TraceState};
    let reader = open(file)?;
    let mut log = Vec::new();
    let mut arrival = None;
    reader
        .visit_range(tick, tick, |entry| -> Result<()> {
            match entry {
                OwnedEntry::Delivery(d) => log.push(d),
                OwnedEntry::Arrival { unix_nanos, .. } => arrival = Some(unix_nanos),
                _ => {}
            }
            Ok(())
        })
        .with_context(|| format!("cannot read {}", Escaped(file.display())))?;
    anyhow::ensure!(!log.is_empty(), "{}: no delivery at tick {tick}", Escaped(file.display()));
    let causes = reader.version() >= 2;
    // Every frame the reader hands out is whole: CRC-checked and chained.
    let trace = Trace::derive(tick, log, true, causes);
    let arrived = match arrival {
        Some(unix_nanos) => format!("arrived {}", metagov_storage::utc_text(unix_nanos)),
        None if causes => "no arrival time: not a live packet".to_owned(),
        None => "arrival time: not recorded in a version 1 chronicle".to_owned(),
    };
    let states: Vec<String> = trace.states.iter().map(|(s, _)| s.to_string()).collect();
    let origin = trace.origin();
    let field = |key: &str| origin.and_then(|o| o.payload.get(key)).map(Value::to_json);
    let verdict = trace.log.iter().find(|e| *e.from == *"validator");
    if json {
        let log: Vec<serde_json::Value> = trace
            .log
            .iter()
            .map(|e| serde_json::json!({"seq": e.seq, "cause": e.cause, "topic": &*e.topic, "from": &*e.from, "to": &*e.to, "payload": e.payload.to_json()}))
            .collect();
        let value = serde_json::json!({
            "trace": tick, "states": states, "state": trace.state().to_string(), "invalid": trace.invalid,
            "job": field("job"), "domain": field("domain"), "window": field("window"),
            "source": origin.map(|o| o.topic.to_string()), "arrival_unix_nanos": arrival,
            "arrival_time": arrival.map(metagov_storage::utc_text),
            "verdict": verdict.map(|v| v.topic.to_string()), "log": log,
        });
        writeln!(out, "{value}")?;
    } else {
        writeln!(out, "trace {tick}: {}", states.join(" → "))?;
        if let Some(reason) = &trace.invalid {
            writeln!(out, "  INVALID: {}", Escaped(reason))?;
        }
        let text =
            |key: &str| field(key).map_or_else(|| "?".to_owned(), |v| v.as_str().map_or(v.to_string(), str::to_owned));
        match origin {
            Some(o) if matches!(&*o.payload, Value::Record(_)) => writeln!(
                out,
                "started by   {} from outside: job {}, domain {}, window {} ({arrived})",
                Escaped(&o.topic),
                Escaped(text("job")),
                Escaped(text("domain")),
                Escaped(text("window"))
            )?,
            Some(o) => writeln!(
                out,
                "started by   {} from outside: {} ({arrived})",
                Escaped(&o.topic),
                Escaped(summary(&o.payload))
            )?,
            None => writeln!(out, "started by   (no ingress delivery)")?,
        }
        match (trace.states.get(1).map(|s| s.0), verdict) {
            (Some(TraceState::Blocked), Some(v)) => {
                writeln!(out, "checks       rejected by the validator: {}", Escaped(summary(&v.payload)))?;
            }
            (Some(TraceState::Active), _) => writeln!(out, "checks       admitted: every validator check passed")?,
            _ => writeln!(out, "checks       no verdict recorded")?,
        }
        writeln!(out, "ran          each delivery under the one whose handler published it")?;
        for e in &trace.log {
            let indent = "  ".repeat(trace.depth(e).min(16));
            writeln!(
                out,
                "  {indent}{tick}.{:<4} {:<22} {} → {}: {}",
                e.seq,
                Escaped(&e.topic).to_string(),
                Escaped(&e.from),
                Escaped(&e.to),
                Escaped(summary(&e.payload))
            )?;
        }
    }
    out.flush()?;
    Ok(if trace.state() == TraceState::Invalid { Outcome::Failure } else { Outcome::Success })
}

/// `metagov topics`: each topic of the run with its deliveries, then the
/// cycle records and meta frames, then the verdict.
pub fn topics(file: &Path, out: &mut dyn Write) -> Result<Outcome> {
    let reader = open(file)?;
    let RunCounts { topics, cycles, frames, arrivals, records: count, .. } = count_records(&reader);
    writeln!(out, "{:<24} {:>12}", "topic", "deliveries")?;
    for (topic, n) in &topics {
        writeln!(out, "{:<24} {n:>12}", Escaped(topic).to_string())?;
    }
    writeln!(out, "{:<24} {cycles:>12}", "(cycle records)")?;
    writeln!(out, "{:<24} {frames:>12}", "(meta frames)")?;
    if arrivals > 0 {
        writeln!(out, "{:<24} {arrivals:>12}", "(arrival records)")?;
    }
    out.flush()?;
    Ok(report_verdict(file, &tail_status(reader.tail()), count))
}

/// `metagov export`: every record of the whole frames, then the verdict.
/// With `-o` the output is written to a temporary file beside it and renamed
/// into place, and an output that is the input is refused.
pub fn export(file: &Path, json: bool, output: Option<&Path>, stdout: &mut dyn Write) -> Result<Outcome> {
    let reader = open(file)?;
    let Some(path) = output else { return export_to(file, &reader, json, stdout) };
    let mut out = OutputFile::create(file, path)?;
    let outcome = export_to(file, &reader, json, out.writer())?;
    out.commit()?;
    Ok(outcome)
}

/// `metagov export --format csv --topic T`: the deliveries on one topic as a
/// table a dataframe reads directly: `tick,seq,from,to,trace` and then one
/// column per payload field, nested records flattened to dotted names
/// (`knobs.learning_rate`), lists written as JSON text, a field a payload
/// lacks left empty. The columns are the union over the topic's deliveries,
/// sorted by name, found in a first pass over the file.
pub fn export_topic_csv(file: &Path, topic: &str, output: Option<&Path>, stdout: &mut dyn Write) -> Result<Outcome> {
    let reader = open(file)?;
    check_topics(file, &reader, &[topic.to_owned()])?;
    let mut columns = std::collections::BTreeSet::new();
    for entry in reader.records().map_while(Result::ok) {
        if let OwnedEntry::Delivery(d) = &entry {
            if *d.topic == *topic {
                flatten("", &d.payload, &mut |name, _| {
                    columns.insert(name);
                });
            }
        }
    }
    let columns: Vec<String> = columns.into_iter().collect();
    let write_table = |out: &mut dyn Write| -> Result<Outcome> {
        write!(out, "tick,seq,from,to,cause")?;
        for column in &columns {
            out.write_all(b",")?;
            write_csv_field(out, column)?;
        }
        out.write_all(b"\n")?;
        let outcome = export_records(file, &reader, |entry| {
            let OwnedEntry::Delivery(d) = &entry else { return Ok(()) };
            if *d.topic != *topic {
                return Ok(());
            }
            let mut cells: BTreeMap<String, String> = BTreeMap::new();
            flatten("", &d.payload, &mut |name, cell| {
                cells.insert(name, cell);
            });
            write!(out, "{},{},", d.tick, d.seq)?;
            write_csv_field(out, &&*d.from)?;
            out.write_all(b",")?;
            write_csv_field(out, &&*d.to)?;
            out.write_all(b",")?;
            if let Some(cause) = d.cause {
                write!(out, "{cause}")?;
            }
            for column in &columns {
                out.write_all(b",")?;
                write_csv_field(out, &cells.get(column).map_or("", String::as_str))?;
            }
            out.write_all(b"\n")
        })?;
        out.flush()?;
        Ok(outcome)
    };
    let Some(path) = output else { return write_table(stdout) };
    let mut out = OutputFile::create(file, path)?;
    let outcome = write_table(out.writer())?;
    out.commit()?;
    Ok(outcome)
}

/// Calls `cell` with each leaf of `value` as (dotted name, text): records
/// are walked, every other value is a leaf (text as itself, lists and bytes
/// as JSON, unit as empty).
fn flatten(prefix: &str, value: &Value, cell: &mut dyn FnMut(String, String)) {
    match value {
        Value::Record(fields) => {
            for (key, field) in fields {
                let name = if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
                flatten(&name, field, cell);
            }
        }
        leaf => {
            let text = match leaf {
                Value::Unit => String::new(),
                Value::Text(text) => text.clone(),
                other => other.to_json().to_string(),
            };
            let name = if prefix.is_empty() { "value".to_owned() } else { prefix.to_owned() };
            cell(name, text);
        }
    }
}

fn export_to(file: &Path, reader: &RunReader, json: bool, out: &mut dyn Write) -> Result<Outcome> {
    if !json {
        writeln!(out, "kind,tick,seq,topic,from,to,cause,payload")?;
    }
    let outcome = export_records(file, reader, |entry| {
        if json {
            writeln!(out, "{}", entry.json())
        } else {
            write_csv_row(&entry, out)
        }
    })?;
    out.flush()?;
    Ok(outcome)
}

/// Hands every record of the file's whole frames to `write`, in order, then
/// gives the file's verdict (a warning for a partial file, an error for
/// damage, after the records before it): what every exporting command does.
fn export_records(
    file: &Path,
    reader: &RunReader,
    mut write: impl FnMut(OwnedEntry) -> io::Result<()>,
) -> Result<Outcome> {
    let mut records = reader.records();
    let mut damage = None;
    let mut count = 0;
    for entry in records.by_ref() {
        match entry {
            Ok(entry) => {
                count += 1;
                write(entry)?;
            }
            Err(e) => {
                damage = Some(e);
                break;
            }
        }
    }
    match records.status() {
        Some(status) => Ok(report_verdict(file, status, count)),
        None => Err(damage.map_or_else(|| anyhow::anyhow!("the read ended without a verdict"), Into::into))
            .with_context(|| format!("cannot read {}", Escaped(file.display()))),
    }
}

fn write_csv_row(entry: &OwnedEntry, out: &mut dyn Write) -> io::Result<()> {
    let (tick, seq) = entry.at();
    write!(out, "{},{tick},{seq},", entry.kind())?;
    match entry {
        OwnedEntry::Delivery(e) => {
            for name in [&e.topic, &e.from, &e.to] {
                write_csv_field(out, &&**name)?;
                out.write_all(b",")?;
            }
            if let Some(cause) = e.cause {
                write!(out, "{cause}")?;
            }
            out.write_all(b",")?;
            write_csv_field(out, &*e.payload)?;
        }
        OwnedEntry::Cycle { record, .. } => {
            out.write_all(b",,,,")?;
            write_csv_field(out, &record.to_value())?;
        }
        OwnedEntry::Frame { frame, .. } => {
            out.write_all(b",,,,")?;
            write_csv_field(out, &frame.to_value())?;
        }
        OwnedEntry::Arrival { unix_nanos, .. } => write!(out, ",,,,{unix_nanos}")?,
    }
    out.write_all(b"\n")
}

/// `metagov replay --verify`: rebuilds the recorded actor set from the
/// chronicle's own config and compares every entry. Only a sealed recording
/// that matched to its end succeeds; an unsealed or torn one succeeds with
/// `allow_partial`, a corrupt one never.
pub fn replay_verify(file: &Path, allow_partial: bool, out: &mut dyn Write) -> Result<Outcome> {
    let reader = open(file)?;
    let result = verify_replay(&reader, sim::rebuild);
    let name = Escaped(file.display());
    match result {
        Ok(report) if report.status == IntegrityStatus::Sealed && report.complete => {
            writeln!(
                out,
                "{name}: replay matches: {} ingress packets re-injected, {} entries identical",
                report.ingress, report.entries
            )?;
            Ok(Outcome::Success)
        }
        Ok(report) => {
            writeln!(
                out,
                "{name}: replay matches the recording as far as it goes: {} ingress packets re-injected, {} entries identical",
                report.ingress, report.entries
            )?;
            writeln!(out, "  but the recording is {}", Escaped(&report.status))?;
            if matches!(report.status, IntegrityStatus::Corrupt { .. }) {
                return Ok(Outcome::Failure);
            }
            if allow_partial {
                writeln!(out, "  (accepted as partial: --allow-partial)")?;
                return Ok(Outcome::Success);
            }
            writeln!(out, "  nothing vouches that the run is complete; pass --allow-partial to accept it")?;
            Ok(Outcome::Failure)
        }
        Err(ReplayError::Diverged(d)) => {
            write!(out, "{name}: {}", EscapedLines(&d))?;
            Ok(Outcome::Failure)
        }
        Err(e) => Err(e).with_context(|| format!("cannot replay {name}")),
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
    writeln!(
        out,
        "metagov simulate: scenario `{}` ({}), seed {seed}",
        Escaped(scenario.name()),
        Escaped(scenario.description())
    )?;
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
    let simulation = Simulation { scenario, config, windows: args.windows, out_dir };
    let report = sim::run(&simulation, &mut progress::Bar::new(!args.quiet))?;
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
            writeln!(out, "{}: {}", file.display(), counted(problems.len() as u64, "problem"))?;
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
