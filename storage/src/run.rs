//! A run's chronicle as one thing: a single file, or the segment files of a
//! run directory.
//!
//! A live supervisor that is restarted, or that rotates its chronicle at a
//! size, writes its run as segments: `run.cmeta`, then `run.0001.cmeta`,
//! `run.0002.cmeta`, … Each segment is a whole chronicle file whose header
//! names its place in the run and, for a continuation, the chain of the
//! last whole frame of the segment before ([`SegmentLink`](crate::SegmentLink)), so the hash
//! chain runs on from file to file. [`RunReader`] opens a file or a
//! directory, checks what binds the segments together (the numbering, one
//! run context, each link, the order of ticks across the boundary), and
//! reads the segments in order as one stream of records. [`verify_run`] is
//! [`verify_file`] over every segment plus those checks.
//!
//! Segments before the last may be unsealed or torn: a supervisor killed
//! while writing one resumes in a new segment, chained to the last whole
//! frame it finds. Every check is on the files' bytes; nothing here writes.

use std::fs;
use std::path::{Path, PathBuf};

use metagov_bus::OwnedEntry;

use crate::error::{ChronicleError, Location};
use crate::format::{hex, FrameInfo};
use crate::reader::{verify_file, ChronicleReader, IntegrityReport, IntegrityStatus, Records, Span, Tail};
use crate::RunContext;

/// The first (or only) chronicle file of a run directory.
pub const FIRST_SEGMENT_FILE: &str = "run.cmeta";

/// Most segments a run directory may hold (a reader's limit: a listing
/// with more is refused rather than opened file by file).
pub const SEGMENTS_MAX: u32 = 9_999;

/// The file name of segment `index` of a run directory: `run.cmeta` for the
/// first, `run.0001.cmeta` for the next, and so on.
pub fn segment_file_name(index: u32) -> String {
    if index == 0 {
        FIRST_SEGMENT_FILE.to_string()
    } else {
        format!("run.{index:04}.cmeta")
    }
}

/// The segment index a file name gives, if it is one of
/// [`segment_file_name`]'s.
fn segment_index_of(name: &str) -> Option<u32> {
    if name == FIRST_SEGMENT_FILE {
        return Some(0);
    }
    let digits = name.strip_prefix("run.")?.strip_suffix(".cmeta")?;
    let index: u32 = digits.parse().ok().filter(|&k| (1..=SEGMENTS_MAX).contains(&k))?;
    (segment_file_name(index) == name).then_some(index)
}

/// The segment files of run directory `dir`, in order. Errors on a
/// directory without `run.cmeta`, a gap in the numbering, or more than
/// [`SEGMENTS_MAX`] segments.
pub fn segment_files(dir: &Path) -> Result<Vec<PathBuf>, ChronicleError> {
    let io = |source| ChronicleError::Io { path: dir.to_path_buf(), source };
    let not_a_run = |reason: String| ChronicleError::NotARun { path: dir.to_path_buf(), reason };
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if let Some(index) = entry.file_name().to_str().and_then(segment_index_of) {
            found.push(index);
        }
    }
    found.sort_unstable();
    if found.first() != Some(&0) {
        return Err(not_a_run(format!("it holds no `{FIRST_SEGMENT_FILE}`")));
    }
    if let Some((k, _)) = found.iter().enumerate().find(|&(k, &index)| index as usize != k) {
        return Err(not_a_run(format!(
            "segment `{}` is missing: the segments must be numbered without a gap",
            segment_file_name(k as u32)
        )));
    }
    Ok(found.iter().map(|&k| dir.join(segment_file_name(k))).collect())
}

/// A run opened for reading: one chronicle file, or every segment of a run
/// directory, checked to belong together.
#[derive(Debug)]
pub struct RunReader {
    path: PathBuf,
    segments: Vec<ChronicleReader>,
}

impl RunReader {
    /// Opens `path`: a chronicle file (a run of one segment), or a run
    /// directory, whose segments must be numbered without a gap, share one
    /// run context, each link to the chain the segment before ends with,
    /// and start after it in `(tick, seq)` order; a segment before the last
    /// must not be corrupt. A break is [`ChronicleError::Corrupt`] naming
    /// the segment file.
    pub fn open(path: impl AsRef<Path>) -> Result<RunReader, ChronicleError> {
        let path = path.as_ref();
        if !path.is_dir() {
            let reader = ChronicleReader::open(path)?;
            return Ok(RunReader { path: path.to_path_buf(), segments: vec![reader] });
        }
        let segments = segment_files(path)?.iter().map(ChronicleReader::open).collect::<Result<Vec<_>, _>>()?;
        check_segments(&segments)?;
        Ok(RunReader { path: path.to_path_buf(), segments })
    }

    /// The file or directory opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The segments, in order (at least one).
    pub fn segments(&self) -> &[ChronicleReader] {
        &self.segments
    }

    fn last(&self) -> &ChronicleReader {
        // Invariant: `open` makes at least one segment.
        self.segments.last().expect("a run has a segment")
    }

    /// The run context (the same in every segment).
    pub fn context(&self) -> &RunContext {
        self.segments[0].context()
    }

    /// The lowest format version among the segments: what the run as a
    /// whole records (a version 1 file records no causes).
    pub fn version(&self) -> u16 {
        self.segments.iter().map(ChronicleReader::version).min().unwrap_or(0)
    }

    /// How the last segment ends: how the run ends.
    pub fn tail(&self) -> &Tail {
        self.last().tail()
    }

    /// Whole frames in all segments.
    pub fn frame_count(&self) -> u64 {
        self.segments.iter().map(|s| u64::from(s.frame_count())).sum()
    }

    /// Records in the whole frames of all segments.
    pub fn record_count(&self) -> u64 {
        self.segments.iter().map(ChronicleReader::record_count).sum()
    }

    /// Every whole frame's place and range, segment after segment (a
    /// frame's `index` and `offset` are within its own segment file).
    pub fn frames(&self) -> Result<Vec<FrameInfo>, ChronicleError> {
        let mut frames = Vec::new();
        for segment in &self.segments {
            frames.extend(segment.frames()?);
        }
        Ok(frames)
    }

    /// Every record of the run in journal order, segment after segment,
    /// with [`ChronicleReader::records`]' checks in each; the stream ends
    /// at the first damage.
    pub fn records(&self) -> RunRecords<'_> {
        RunRecords { run: self, at: 0, current: self.segments[0].records(), records_before: 0, status: None }
    }

    /// [`ChronicleReader::visit_range`] over the run.
    pub fn visit_range<E: From<ChronicleError>>(
        &self,
        start_tick: u64,
        end_tick: u64,
        each: impl FnMut(OwnedEntry) -> Result<(), E>,
    ) -> Result<(), E> {
        self.visit_range_where(start_tick, end_tick, |_| true, each)
    }

    /// [`ChronicleReader::visit_range_where`] over the run: each segment
    /// whose ticks meet the range is searched through its own index.
    pub fn visit_range_where<E: From<ChronicleError>>(
        &self,
        start_tick: u64,
        end_tick: u64,
        keep: impl Fn(&str) -> bool,
        mut each: impl FnMut(OwnedEntry) -> Result<(), E>,
    ) -> Result<(), E> {
        for segment in &self.segments {
            match segment.span()? {
                Some(span) if span.first.0 <= end_tick && span.last.0 >= start_tick => {
                    segment.visit_range_where(start_tick, end_tick, &keep, &mut each)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The file name of `path`, as messages name a segment.
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// `status` as a run of `several` segments states it: damage names the
/// segment `file` it is in.
fn in_segment(status: &IntegrityStatus, file: &Path, several: bool) -> IntegrityStatus {
    match status {
        IntegrityStatus::Corrupt { location, offset, reason } if several => IntegrityStatus::Corrupt {
            location: *location,
            offset: *offset,
            reason: format!("in `{}`: {reason}", file_name(file)),
        },
        other => other.clone(),
    }
}

/// The checks that bind the segments of a run directory together (see
/// [`RunReader::open`]).
fn check_segments(segments: &[ChronicleReader]) -> Result<(), ChronicleError> {
    let first = &segments[0];
    let name = |s: &ChronicleReader| file_name(s.path());
    let at_header = |s: &ChronicleReader, reason: String| ChronicleError::Corrupt {
        path: s.path().to_path_buf(),
        location: Location::Header,
        offset: 0,
        reason,
    };
    // The last position of the run so far: of the latest segment with a frame.
    let mut last_at: Option<((u64, u64), String)> = None;
    for (k, segment) in segments.iter().enumerate() {
        let link = segment.segment();
        if link.index as usize != k {
            return Err(at_header(segment, format!("its header says segment {}, its name segment {k}", link.index)));
        }
        if segment.context() != first.context() {
            return Err(at_header(
                segment,
                format!(
                    "its run context (run id {}) is not the run's in `{}` (run id {})",
                    segment.context().run_id,
                    name(first),
                    first.context().run_id
                ),
            ));
        }
        if k > 0 {
            let before = &segments[k - 1];
            if let Tail::Corrupt { location, offset, reason } = before.tail() {
                return Err(ChronicleError::Corrupt {
                    path: before.path().to_path_buf(),
                    location: *location,
                    offset: *offset,
                    reason: format!("{reason} (and segment `{}` follows it)", name(segment)),
                });
            }
            if link.previous_chain != before.chain_head() {
                return Err(at_header(
                    segment,
                    format!(
                        "it links to chain {}, but `{}` ends with chain {}",
                        hex(&link.previous_chain),
                        name(before),
                        hex(&before.chain_head())
                    ),
                ));
            }
        }
        if let Some(Span { first: start, last: end }) = segment.span()? {
            if let Some((previous, ref previous_name)) = last_at {
                if start <= previous {
                    return Err(at_header(
                        segment,
                        format!(
                            "it starts at (tick, seq) {start:?}, not after {previous:?} where `{previous_name}` ends"
                        ),
                    ));
                }
            }
            last_at = Some((end, name(segment)));
        }
    }
    Ok(())
}

/// The records of a run, segment after segment (see [`RunReader::records`]).
#[derive(Debug)]
pub struct RunRecords<'a> {
    run: &'a RunReader,
    /// The segment being read.
    at: usize,
    current: Records<'a>,
    /// Records of the segments before `at`.
    records_before: u64,
    /// The run's verdict, once the stream has ended.
    status: Option<IntegrityStatus>,
}

impl RunRecords<'_> {
    /// The verdict on the run once the stream has ended: the last segment's
    /// (a segment before it may be unsealed or torn), or the damage that
    /// ended it, naming the segment file when the run has several. `None`
    /// before the end, or after an I/O error.
    pub fn status(&self) -> Option<&IntegrityStatus> {
        self.status.as_ref()
    }

    /// Records handed out so far.
    pub fn records_read(&self) -> u64 {
        self.records_before + self.current.records_read()
    }

    /// Hex chain of the last frame walked so far: at the end of a sealed
    /// run, the last segment's chain head.
    pub fn chain_head(&self) -> String {
        self.current.chain_head()
    }

    /// The current segment's verdict `status` as the run's.
    fn run_status(&self, status: &IntegrityStatus) -> IntegrityStatus {
        in_segment(status, self.run.segments[self.at].path(), self.run.segments.len() > 1)
    }
}

impl Iterator for RunRecords<'_> {
    type Item = Result<OwnedEntry, ChronicleError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.current.next() {
                if item.is_err() {
                    // Damage ends the run's stream here: its verdict is known now.
                    self.status = self.current.status().map(|s| self.run_status(s));
                }
                return Some(item);
            }
            let ended = self.current.status().cloned()?;
            let last = self.at + 1 == self.run.segments.len();
            if last || matches!(ended, IntegrityStatus::Corrupt { .. }) {
                if self.status.is_none() {
                    self.status = Some(self.run_status(&ended));
                }
                return None;
            }
            self.records_before = self.records_read();
            self.at += 1;
            self.current = self.run.segments[self.at].records();
        }
    }
}

/// What [`verify_run`] found: the run's verdict and totals, and each
/// segment's own report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunIntegrity {
    /// The run: frames, records and bytes summed over the segments, the
    /// last segment's chain head, and the verdict — the first damage found
    /// (in a segment, or in what binds them), else the last segment's.
    pub total: IntegrityReport,
    /// Each segment file and [`verify_file`]'s report on it, in order.
    pub segments: Vec<(PathBuf, IntegrityReport)>,
}

/// [`verify_file`] on every segment of the run at `path` (a file or a run
/// directory), then the checks that bind the segments together
/// ([`RunReader::open`]). Damage is reported in the verdict, naming the
/// segment file when there are several; `Err` is for a path that holds no
/// readable run at all.
pub fn verify_run(path: impl AsRef<Path>) -> Result<RunIntegrity, ChronicleError> {
    let path = path.as_ref();
    if !path.is_dir() {
        let report = verify_file(path)?;
        return Ok(RunIntegrity { total: report.clone(), segments: vec![(path.to_path_buf(), report)] });
    }
    let files = segment_files(path)?;
    let mut segments = Vec::with_capacity(files.len());
    for file in files {
        let report = verify_file(&file)?;
        segments.push((file, report));
    }
    let several = segments.len() > 1;
    let damaged = segments.iter().find(|(_, report)| matches!(report.status, IntegrityStatus::Corrupt { .. }));
    let status = match damaged {
        Some((file, report)) => in_segment(&report.status, file, several),
        None => match RunReader::open(path) {
            Ok(_) => segments.last().map_or(IntegrityStatus::Unsealed, |(_, r)| r.status.clone()),
            Err(ChronicleError::Corrupt { path: file, location, offset, reason }) => {
                in_segment(&IntegrityStatus::Corrupt { location, offset, reason }, &file, several)
            }
            Err(e) => return Err(e),
        },
    };
    let total = IntegrityReport {
        status,
        frames: segments.iter().map(|(_, r)| r.frames).sum(),
        records: segments.iter().map(|(_, r)| r.records).sum(),
        bytes: segments.iter().map(|(_, r)| r.bytes).sum(),
        chain_head: segments.last().map(|(_, r)| r.chain_head.clone()).unwrap_or_default(),
    };
    Ok(RunIntegrity { total, segments })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_nothing_else_is_a_segment() {
        for k in [0, 1, 42, 9_999] {
            assert_eq!(segment_index_of(&segment_file_name(k)), Some(k));
        }
        assert_eq!(segment_file_name(3), "run.0003.cmeta");
        for name in ["run.0.cmeta", "run.3.cmeta", "run.0000.cmeta", "run.10000.cmeta", "run.cmeta.resume", "x.cmeta"] {
            assert_eq!(segment_index_of(name), None, "{name}");
        }
    }
}
