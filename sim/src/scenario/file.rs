//! The scenario file: its TOML schema, its validation, and its errors, each
//! placed at a line and column.
//!
//! Parsing is a pure function of the text; the only I/O is [`load`], which
//! reads the one file it is given, at most [`Scenario::FILE_BYTES_MAX`] bytes.

use std::collections::BTreeSet;
use std::io;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};

use metagov_config::{ConfigError, Located as Spanned};
use serde::Deserialize;

use super::model::NqmSpec;
use super::Scenario;

/// Why a scenario could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read (missing, not a regular file, unreadable,
    /// too large, not UTF-8).
    #[error("cannot read scenario file {}", path.display())]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The text is not a valid scenario: the problems, each at its line and
    /// column with its key, as the config's reader reports them.
    #[error("{problems}")]
    Invalid {
        /// The problems (always [`ConfigError::Invalid`]).
        problems: ConfigError,
    },
    /// Neither a built-in scenario nor an existing file.
    #[error(
        "no scenario `{}`: not a built-in ({}) and no such file; {}",
        metagov_config::shorten(name, 80),
        Scenario::builtin_names().join(", "),
        metagov_config::suggestion(name, Scenario::builtin_names())
    )]
    NotFound {
        /// The name or path that was asked for.
        name: String,
    },
}

/// What one job does, window by window, before events.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Shape {
    pub pattern: Pattern,
    /// First window of the pattern's stretch (1-based, inclusive).
    pub from: u64,
    /// Last window of the stretch (inclusive); `u64::MAX` for "to the end".
    pub to: u64,
    pub gain_start: f64,
    pub gain_end: f64,
    pub decay_windows: f64,
    pub stability: f64,
    pub latency_ms: f64,
    pub noise: f64,
}

/// A training pattern with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Pattern {
    Steady,
    Plateau,
    Drift {
        per_window: f64,
    },
    Oscillation {
        period_windows: u64,
        amplitude: f64,
    },
    /// Closed loop: the noisy quadratic model, following the knobs.
    Nqm(NqmSpec),
}

/// One job of the scenario.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct JobSpec {
    pub name: String,
    /// The name of the `[[jobs]]` group it came from.
    pub group: String,
    pub domain: String,
    pub shape: Shape,
}

/// What an event does to the packets it hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum EventKind {
    MemorySpike,
    LatencySpike,
    Collapse,
    Outlier,
    NanBurst,
    GarbageBurst,
    /// Model jobs: every curvature × `factor`.
    CurvatureJump,
    /// Model jobs: every curvature grows steadily from × 1 at `from_window`
    /// to × `factor` at `to_window`, and stays there.
    CurvatureDrift,
    /// Model jobs: gradient noise × `factor`.
    NoiseBurst,
}

/// One event, with its selection resolved to names that exist.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct EventSpec {
    pub kind: EventKind,
    pub from: u64,
    /// Inclusive; `u64::MAX` for "to the end".
    pub to: u64,
    /// Group or job names; empty for every job.
    pub jobs: Vec<String>,
    /// Domain names; empty for every domain.
    pub domains: Vec<String>,
    /// Chance that a packet in the stretch is hit.
    pub rate: f64,
    /// Latency during a memory or latency spike.
    pub latency_ms: f64,
    /// What a curvature jump, a noise burst or (on model jobs) a memory
    /// spike multiplies.
    pub factor: f64,
}

impl EventSpec {
    pub fn applies_to(&self, job: &JobSpec) -> bool {
        let by_job = self.jobs.is_empty() || self.jobs.iter().any(|name| *name == job.name || *name == job.group);
        let by_domain = self.domains.is_empty() || self.domains.contains(&job.domain);
        by_job && by_domain
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    windows: Spanned<u64>,
    jobs: Vec<JobsDocument>,
    #[serde(default)]
    events: Vec<EventDocument>,
}

#[derive(Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum PatternName {
    #[default]
    Steady,
    Plateau,
    Drift,
    Oscillation,
    Nqm,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobsDocument {
    name: Spanned<String>,
    count: Option<Spanned<u64>>,
    domains: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pattern: PatternName,
    from_window: Option<Spanned<u64>>,
    to_window: Option<Spanned<u64>>,
    gain_start: Option<Spanned<f64>>,
    gain_end: Option<Spanned<f64>>,
    decay_windows: Option<Spanned<f64>>,
    stability: Option<Spanned<f64>>,
    latency_ms: Option<Spanned<f64>>,
    noise: Option<Spanned<f64>>,
    period_windows: Option<Spanned<u64>>,
    amplitude: Option<Spanned<f64>>,
    drift_per_window: Option<Spanned<f64>>,
    nqm: Option<Spanned<NqmDocument>>,
}

/// `[jobs.nqm]`: the settings of a model job (docs/scenarios.md).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NqmDocument {
    dims: Option<Spanned<u64>>,
    curvature: Option<Spanned<f64>>,
    exponent: Option<Spanned<f64>>,
    noise: Option<Spanned<f64>>,
    momentum: Option<Spanned<f64>>,
    steps_per_window: Option<Spanned<u64>>,
    memory_per_sample: Option<Spanned<f64>>,
    memory_base: Option<Spanned<f64>>,
    latency_per_sample_ms: Option<Spanned<f64>>,
    target_loss: Option<Spanned<f64>>,
    start_window: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventDocument {
    kind: Spanned<EventKind>,
    from_window: Option<Spanned<u64>>,
    to_window: Option<Spanned<u64>>,
    #[serde(default)]
    jobs: Vec<Spanned<String>>,
    #[serde(default)]
    domains: Vec<Spanned<String>>,
    rate: Option<Spanned<f64>>,
    latency_ms: Option<Spanned<f64>>,
    factor: Option<Spanned<f64>>,
}

/// A problem at a byte offset of the text.
struct Problem {
    at: usize,
    message: String,
}

fn problem(span: Range<usize>, message: String) -> Problem {
    Problem { at: span.start, message }
}

pub(super) fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = metagov_config::read_text_file(path, Scenario::FILE_BYTES_MAX, "the scenario file limit")
        .map_err(|source| ScenarioError::Io { path: path.to_owned(), source })?;
    parse(&text, &path.display().to_string())
}

pub(super) fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    let invalid = |problem: Problem| {
        let problems = ConfigError::at_offsets(origin, text, [(problem.at, String::new(), problem.message)]);
        ScenarioError::Invalid { problems }
    };
    if text.len() as u64 > Scenario::FILE_BYTES_MAX {
        let message = format!("the text is more than {} bytes long", Scenario::FILE_BYTES_MAX);
        return Err(invalid(Problem { at: 0, message }));
    }
    let document: Document =
        metagov_config::read_toml(text, origin).map_err(|problems| ScenarioError::Invalid { problems })?;
    validate(document, text).map_err(invalid)
}

fn validate(document: Document, text: &str) -> Result<Scenario, Problem> {
    check_id(&document.name, "name")?;
    let windows = integer(&document.windows, "windows", 1..=Scenario::WINDOWS_MAX)?;
    if document.jobs.is_empty() {
        return Err(Problem { at: 0, message: "a scenario needs at least one [[jobs]] group".into() });
    }
    let mut jobs = Vec::new();
    let mut names = BTreeSet::new();
    for group in &document.jobs {
        add_group(group, windows, &mut jobs, &mut names)?;
    }
    if document.events.len() > Scenario::EVENTS_MAX {
        let span = document.events[Scenario::EVENTS_MAX].kind.span();
        return Err(problem(span, format!("more than {} events", Scenario::EVENTS_MAX)));
    }
    let events = document
        .events
        .iter()
        .map(|event| event_spec(event, windows, &document.jobs, &jobs))
        .collect::<Result<_, _>>()?;
    Ok(Scenario {
        name: document.name.into_inner(),
        description: document.description,
        windows,
        jobs,
        events,
        source_sha256: metagov_storage::sha256_hex(text.as_bytes()),
        source: std::sync::Arc::from(text),
    })
}

/// Expands a `[[jobs]]` group into its jobs, appending them to `jobs`.
fn add_group(
    group: &JobsDocument,
    windows: u64,
    jobs: &mut Vec<JobSpec>,
    names: &mut BTreeSet<String>,
) -> Result<(), Problem> {
    check_id(&group.name, "name")?;
    let count = match &group.count {
        Some(count) => integer(count, "count", 1..=Scenario::JOBS_MAX)?,
        None => 1,
    };
    let total = jobs.len() as u64 + count;
    if total > Scenario::JOBS_MAX {
        let span = group.count.as_ref().map_or_else(|| group.name.span(), Spanned::span);
        return Err(problem(
            span,
            format!("this group brings the scenario to {total} jobs, more than {}", Scenario::JOBS_MAX),
        ));
    }
    let domains = group.domains.get_ref();
    if domains.is_empty() {
        return Err(problem(group.domains.span(), "`domains` needs at least one domain".into()));
    }
    for domain in domains {
        check_id(domain, "domain")?;
    }
    if domains.len() as u64 > count {
        let unused = &domains[count as usize];
        return Err(problem(
            unused.span(),
            format!("domain `{}` gets no job: the group has {count} job(s)", unused.get_ref()),
        ));
    }
    let shape = shape(group, windows)?;
    let group_name = group.name.get_ref();
    let width = (count - 1).to_string().len();
    for i in 0..count {
        let name = if count == 1 { group_name.clone() } else { format!("{group_name}-{i:0width$}") };
        if name.len() > ID_LEN_MAX || !names.insert(name.clone()) {
            let why = if name.len() > ID_LEN_MAX { "is longer than 128 characters" } else { "is already used" };
            return Err(problem(group.name.span(), format!("job name `{name}` {why}")));
        }
        let domain = domains[(i % domains.len() as u64) as usize].get_ref().clone();
        jobs.push(JobSpec { name, group: group_name.clone(), domain, shape });
    }
    Ok(())
}

fn shape(group: &JobsDocument, windows: u64) -> Result<Shape, Problem> {
    let pattern_only = [
        (group.period_windows.as_ref().map(Spanned::span), "period_windows", PatternName::Oscillation, "oscillation"),
        (group.amplitude.as_ref().map(Spanned::span), "amplitude", PatternName::Oscillation, "oscillation"),
        (group.drift_per_window.as_ref().map(Spanned::span), "drift_per_window", PatternName::Drift, "drift"),
        (group.nqm.as_ref().map(Spanned::span), "nqm", PatternName::Nqm, "nqm"),
    ];
    for (span, key, wanted, wanted_name) in pattern_only {
        if let Some(span) = span.filter(|_| group.pattern != wanted) {
            return Err(problem(span, format!("`{key}` applies only to pattern = \"{wanted_name}\"")));
        }
    }
    let pattern = match group.pattern {
        PatternName::Steady => {
            if let Some(field) = group.from_window.as_ref().or(group.to_window.as_ref()) {
                return Err(problem(
                    field.span(),
                    "pattern = \"steady\" has no stretch: `from_window` and `to_window` do not apply".into(),
                ));
            }
            Pattern::Steady
        }
        PatternName::Plateau => Pattern::Plateau,
        PatternName::Drift => {
            Pattern::Drift { per_window: real(&group.drift_per_window, "drift_per_window", -1.0..=1.0, -0.0002)? }
        }
        PatternName::Oscillation => Pattern::Oscillation {
            period_windows: match &group.period_windows {
                Some(period) => integer(period, "period_windows", 2..=Scenario::WINDOWS_MAX)?,
                None => 200,
            },
            amplitude: real(&group.amplitude, "amplitude", 0.0..=10.0, 0.1)?,
        },
        PatternName::Nqm => Pattern::Nqm(nqm_spec(group.nqm.as_ref().map(Spanned::get_ref), group, windows)?),
    };
    let (from, to) = stretch(&group.from_window, &group.to_window, windows)?;
    Ok(Shape {
        pattern,
        from,
        to,
        gain_start: real(&group.gain_start, "gain_start", -10.0..=10.0, 0.2)?,
        gain_end: real(&group.gain_end, "gain_end", -10.0..=10.0, 0.03)?,
        decay_windows: real(&group.decay_windows, "decay_windows", 1.0..=1e9, 500.0)?,
        stability: real(&group.stability, "stability", 0.0..=1.0, 0.85)?,
        latency_ms: real(&group.latency_ms, "latency_ms", 0.0..=1e6, 30.0)?,
        noise: real(&group.noise, "noise", 0.0..=1.0, 0.01)?,
    })
}

fn event_spec(
    event: &EventDocument,
    windows: u64,
    groups: &[JobsDocument],
    jobs: &[JobSpec],
) -> Result<EventSpec, Problem> {
    let kind = *event.kind.get_ref();
    let (from, to) = stretch(&event.from_window, &event.to_window, windows)?;
    for job in &event.jobs {
        let name = job.get_ref();
        if !groups.iter().any(|group| group.name.get_ref() == name) && !jobs.iter().any(|spec| spec.name == *name) {
            return Err(problem(job.span(), format!("no job or [[jobs]] group is named `{name}`")));
        }
    }
    for domain in &event.domains {
        if !jobs.iter().any(|spec| spec.domain == *domain.get_ref()) {
            return Err(problem(domain.span(), format!("no job is in domain `{}`", domain.get_ref())));
        }
    }
    let factor_default = match kind {
        EventKind::CurvatureJump | EventKind::CurvatureDrift => 10.0,
        EventKind::NoiseBurst => 20.0,
        EventKind::MemorySpike => 1.6,
        _ => {
            if let Some(factor) = &event.factor {
                return Err(problem(
                    factor.span(),
                    "`factor` applies only to curvature_jump, curvature_drift, noise_burst and memory_spike".into(),
                ));
            }
            1.0
        }
    };
    if kind == EventKind::CurvatureDrift && event.to_window.is_none() {
        return Err(problem(
            event.kind.span(),
            "curvature_drift needs `to_window`: the window by which the curvature has grown by `factor`".into(),
        ));
    }
    let latency_default = match kind {
        EventKind::MemorySpike => 250.0,
        EventKind::LatencySpike => 400.0,
        _ => {
            if let Some(latency) = &event.latency_ms {
                return Err(problem(
                    latency.span(),
                    "`latency_ms` applies only to memory_spike and latency_spike".into(),
                ));
            }
            0.0
        }
    };
    Ok(EventSpec {
        kind,
        from,
        to,
        jobs: event.jobs.iter().map(|job| job.get_ref().clone()).collect(),
        domains: event.domains.iter().map(|domain| domain.get_ref().clone()).collect(),
        rate: real(&event.rate, "rate", 0.0..=1.0, 1.0)?,
        latency_ms: real(&event.latency_ms, "latency_ms", 0.0..=1e6, latency_default)?,
        factor: real(&event.factor, "factor", 1e-3..=1e3, factor_default)?,
    })
}

/// A model job's settings; every one has a default (docs/scenarios.md).
fn nqm_spec(nqm: Option<&NqmDocument>, group: &JobsDocument, windows: u64) -> Result<NqmSpec, Problem> {
    let none = NqmDocument {
        dims: None,
        curvature: None,
        exponent: None,
        noise: None,
        momentum: None,
        steps_per_window: None,
        memory_per_sample: None,
        memory_base: None,
        latency_per_sample_ms: None,
        target_loss: None,
        start_window: None,
    };
    let d = nqm.unwrap_or(&none);
    let count = |value: &Option<Spanned<u64>>, key, range: RangeInclusive<u64>, default| match value {
        Some(value) => integer(value, key, range),
        None => Ok(default),
    };
    Ok(NqmSpec {
        // Invariant: the ranges below fit u32.
        dims: count(&d.dims, "dims", 1..=1024, 100)? as u32,
        curvature: real(&d.curvature, "curvature", 1e-6..=1e6, 1.0)?,
        exponent: real(&d.exponent, "exponent", 0.0..=4.0, 2.0)?,
        noise: real(&d.noise, "noise", 0.0..=1e6, 1.0)?,
        momentum: real(&d.momentum, "momentum", 0.0..=0.999, 0.9)?,
        steps_per_window: count(&d.steps_per_window, "steps_per_window", 1..=1000, 10)? as u32,
        memory_per_sample: real(&d.memory_per_sample, "memory_per_sample", 0.0..=1.0, 0.005)?,
        memory_base: real(&d.memory_base, "memory_base", 0.0..=1.0, 0.1)?,
        latency_base_ms: real(&group.latency_ms, "latency_ms", 0.0..=1e6, 5.0)?,
        latency_per_sample_ms: real(&d.latency_per_sample_ms, "latency_per_sample_ms", 0.0..=1e4, 0.2)?,
        target_loss: real(&d.target_loss, "target_loss", 0.0..=1e6, 0.05)?,
        start_window: count(&d.start_window, "start_window", 1..=windows, 1)?,
    })
}

/// The inclusive window range `from_window..=to_window`, defaulting to the
/// whole run (an open end is `u64::MAX`, so a longer run keeps it).
fn stretch(from: &Option<Spanned<u64>>, to: &Option<Spanned<u64>>, windows: u64) -> Result<(u64, u64), Problem> {
    let first = match from {
        Some(from) => integer(from, "from_window", 1..=windows)?,
        None => 1,
    };
    let last = match to {
        Some(to) => integer(to, "to_window", 1..=windows)?,
        None => u64::MAX,
    };
    if last < first {
        // Invariant: `last` is below `first` only when it was given.
        let span = to.as_ref().map_or(0..0, Spanned::span);
        return Err(problem(span, format!("`to_window` = {last} is before `from_window` = {first}")));
    }
    Ok((first, last))
}

fn integer(value: &Spanned<u64>, key: &str, range: RangeInclusive<u64>) -> Result<u64, Problem> {
    let x = *value.get_ref();
    if range.contains(&x) {
        Ok(x)
    } else {
        Err(problem(value.span(), format!("`{key}` = {x} is out of range {}..={}", range.start(), range.end())))
    }
}

/// The value of an optional real field, or `default`. NaN and infinities
/// fail the range check.
fn real(value: &Option<Spanned<f64>>, key: &str, range: RangeInclusive<f64>, default: f64) -> Result<f64, Problem> {
    let Some(value) = value else { return Ok(default) };
    let x = *value.get_ref();
    if range.contains(&x) {
        Ok(x)
    } else {
        Err(problem(value.span(), format!("`{key}` = {x} is out of range {}..={}", range.start(), range.end())))
    }
}

/// Longest job or domain name (docs/scenarios.md, "The packets").
const ID_LEN_MAX: usize = 128;

/// A job or domain name: 1–128 characters of `[A-Za-z0-9._-]`.
fn check_id(value: &Spanned<String>, key: &str) -> Result<(), Problem> {
    let id = value.get_ref();
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if (1..=ID_LEN_MAX).contains(&id.len()) && id.chars().all(allowed) {
        Ok(())
    } else {
        Err(problem(value.span(), format!("{key} `{id}` is not 1–128 characters of [A-Za-z0-9._-]")))
    }
}
