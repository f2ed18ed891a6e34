//! Admission of telemetry packets and domain updates, with reason codes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use metagov_config::{is_name, KnobConfig, MetaValidatorConfig, RewardConfig, NAME_CHARS_MAX};
use serde_json::{Map, Value};

use crate::{DomainMetaUpdate, TelemetryPacket};

/// Longest job, domain or phase name, in characters.
pub const ID_CHARS_MAX: usize = 128;
/// Most characters of an offending input value quoted in a detail.
const SHOWN_CHARS_MAX: usize = 40;
/// Metrics every packet must have.
const REQUIRED_METRICS: [&str; 2] = ["gain_p50", "stability_mean"];
/// Keys a packet may have.
const PACKET_FIELDS: [&str; 6] = ["job", "domain", "window", "phase", "metrics", "params"];

/// Why a packet or update was rejected. The names are stable: they are
/// recorded in chronicles and shown to users.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReasonCode {
    /// `malformed_json`: the line is not JSON.
    MalformedJson,
    /// `packet_too_large`: the line is longer than `packet_bytes_max`.
    PacketTooLarge,
    /// `unknown_field`: the packet has a key it may not have.
    UnknownField,
    /// `missing_field`: a required key or metric is absent.
    MissingField,
    /// `wrong_type`: a value has the wrong JSON type.
    WrongType,
    /// `non_finite`: a number is NaN or infinite.
    NonFinite,
    /// `out_of_range`: a number is outside its allowed range.
    OutOfRange,
    /// `bad_id`: a job, domain, phase or entry name is malformed.
    BadId,
    /// `stale_window`: the window is not after the job's last one.
    StaleWindow,
    /// `too_many_entries`: `metrics` or `params` has more than `entries_max`.
    TooManyEntries,
    /// `limit_reached`: a new job or domain beyond `jobs_max`/`domains_max`.
    LimitReached,
    /// `wrong_dimension`: an update's vector and keys differ in length.
    WrongDimension,
    /// `keys_mismatch`: an update's keys are not the governed knobs.
    KeysMismatch,
    /// `duplicate_key`: one JSON object names a key twice.
    DuplicateKey,
}

impl ReasonCode {
    /// Every code, in declaration order.
    pub const ALL: [ReasonCode; 14] = [
        ReasonCode::MalformedJson,
        ReasonCode::PacketTooLarge,
        ReasonCode::UnknownField,
        ReasonCode::MissingField,
        ReasonCode::WrongType,
        ReasonCode::NonFinite,
        ReasonCode::OutOfRange,
        ReasonCode::BadId,
        ReasonCode::StaleWindow,
        ReasonCode::TooManyEntries,
        ReasonCode::LimitReached,
        ReasonCode::WrongDimension,
        ReasonCode::KeysMismatch,
        ReasonCode::DuplicateKey,
    ];

    /// The stable snake_case name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ReasonCode::MalformedJson => "malformed_json",
            ReasonCode::PacketTooLarge => "packet_too_large",
            ReasonCode::UnknownField => "unknown_field",
            ReasonCode::MissingField => "missing_field",
            ReasonCode::WrongType => "wrong_type",
            ReasonCode::NonFinite => "non_finite",
            ReasonCode::OutOfRange => "out_of_range",
            ReasonCode::BadId => "bad_id",
            ReasonCode::StaleWindow => "stale_window",
            ReasonCode::TooManyEntries => "too_many_entries",
            ReasonCode::LimitReached => "limit_reached",
            ReasonCode::WrongDimension => "wrong_dimension",
            ReasonCode::KeysMismatch => "keys_mismatch",
            ReasonCode::DuplicateKey => "duplicate_key",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rejected packet or update: data to record, not an error of the
/// supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The reason code.
    pub reason: ReasonCode,
    /// The offending field and value, e.g. `metrics.stability_mean: 1.5 is
    /// out of range 0..=1`.
    pub detail: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

fn reject<T>(reason: ReasonCode, detail: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection { reason, detail: detail.into() })
}

/// What a domain update from outside (a federation policy pack) may hold
/// beyond its shape: the governed knobs with the `[min, max]` of each, and
/// the `[min, max]` a reward can take.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateBounds {
    /// Each governed knob's `[min, max]`, by name: an update's keys must be
    /// exactly these.
    pub knobs: BTreeMap<String, [f64; 2]>,
    /// The range of a reward.
    pub reward: [f64; 2],
}

impl UpdateBounds {
    /// The bounds a config sets: each knob's `min` and `max`, and the range of
    /// the reward its weights allow,
    /// [−(gain_weight + stability_weight + vram_weight + latency_weight),
    /// gain_weight + stability_weight] (docs/governance.md, "Reward": the
    /// gain and stability terms reach ±their weight, the vram and latency
    /// terms only cost).
    #[must_use]
    pub fn new(knobs: &BTreeMap<String, KnobConfig>, reward: &RewardConfig) -> Self {
        let best = reward.gain_weight + reward.stability_weight;
        let worst = -(best + reward.vram_weight + reward.latency_weight);
        UpdateBounds {
            knobs: knobs.iter().map(|(name, knob)| (name.clone(), [knob.min, knob.max])).collect(),
            reward: [worst, best],
        }
    }

    /// Every bound passed through `f`: e.g. rounded to the grid the
    /// updates arrive on, so that a value within a bound still is once
    /// rounded.
    #[must_use]
    pub fn map(self, f: impl Fn(f64) -> f64) -> Self {
        let [lo, hi] = self.reward;
        UpdateBounds {
            knobs: self.knobs.into_iter().map(|(name, [min, max])| (name, [f(min), f(max)])).collect(),
            reward: [f(lo), f(hi)],
        }
    }
}

/// Admits telemetry packets and domain updates (`MetaPacketValidator`,
/// docs/governance.md). Keeps the last window of every job it admitted,
/// so a duplicate or older window is rejected, not applied twice.
#[derive(Clone, Debug)]
pub struct MetaPacketValidator {
    config: MetaValidatorConfig,
    last_windows: BTreeMap<String, u64>,
    domains: BTreeSet<String>,
}

impl MetaPacketValidator {
    /// A validator that has admitted nothing yet.
    #[must_use]
    pub fn new(config: MetaValidatorConfig) -> Self {
        MetaPacketValidator { config, last_windows: BTreeMap::new(), domains: BTreeSet::new() }
    }

    /// The last window admitted for `job`.
    #[must_use]
    pub fn last_window(&self, job: &str) -> Option<u64> {
        self.last_windows.get(job).copied()
    }

    /// Parses one JSON line and validates it as [`Self::validate_telemetry`]
    /// does. A bare `NaN`, `Infinity` or `-Infinity` (which JSON does not
    /// have but Python's `json` writes) is `non_finite`, not `malformed_json`.
    ///
    /// # Errors
    ///
    /// The [`Rejection`], if the line is not an admissible packet.
    pub fn validate_telemetry_line(&mut self, line: &str) -> Result<TelemetryPacket, Rejection> {
        let bytes_max = self.config.packet_bytes_max;
        if line.len() > usize::try_from(bytes_max).unwrap_or(usize::MAX) {
            return reject(ReasonCode::PacketTooLarge, format!("{} bytes, at most {bytes_max}", line.len()));
        }
        match serde_json::from_str::<Value>(line) {
            Ok(value) => {
                if let Some(key) = duplicate_key(line) {
                    return reject(
                        ReasonCode::DuplicateKey,
                        format!("key {} appears twice in one object", shown(&key)),
                    );
                }
                self.validate_telemetry(&value)
            }
            Err(error) => {
                let at = byte_offset(line, error.line(), error.column());
                let rest = line.get(at..).unwrap_or_default();
                match ["NaN", "Infinity", "-Infinity"].into_iter().find(|token| rest.starts_with(token)) {
                    Some(token) => reject(ReasonCode::NonFinite, format!("{token} at column {}", error.column())),
                    // serde_json's words for a literal like 1e999 that no f64
                    // holds: well-formed JSON, a number out of range.
                    None if error.to_string().starts_with("number out of range") => reject(
                        ReasonCode::OutOfRange,
                        format!("a number beyond any 64-bit float at column {}", error.column()),
                    ),
                    None => reject(ReasonCode::MalformedJson, error.to_string()),
                }
            }
        }
    }

    /// Validates a parsed packet and, if it is admitted, records its window
    /// as the job's last. Never panics, whatever the value.
    ///
    /// # Errors
    ///
    /// The [`Rejection`] for the first rule the packet breaks, checked in
    /// this order: shape and unknown fields, `job`, `domain`, `window`,
    /// `phase`, `metrics`, `params`, limits on jobs and domains, then window
    /// order.
    pub fn validate_telemetry(&mut self, value: &Value) -> Result<TelemetryPacket, Rejection> {
        let Some(object) = value.as_object() else {
            return reject(ReasonCode::WrongType, format!("packet: expected an object, found {}", describe(value)));
        };
        if let Some(key) = object.keys().find(|key| !PACKET_FIELDS.contains(&key.as_str())) {
            return reject(ReasonCode::UnknownField, format!("{}: not a packet field", shown(key)));
        }
        let job = id(object, "job")?;
        let domain = id(object, "domain")?;
        let window = match object.get("window") {
            None => return reject(ReasonCode::MissingField, "window"),
            Some(Value::Number(n)) if n.is_u64() => n.as_u64().unwrap_or_default(),
            Some(Value::Number(n)) if n.is_i64() => {
                return reject(ReasonCode::OutOfRange, format!("window: {n} is negative"));
            }
            Some(other) => {
                return reject(
                    ReasonCode::WrongType,
                    format!("window: expected an integer, found {}", describe(other)),
                );
            }
        };
        let phase = match object.get("phase") {
            None | Some(Value::Null) => None,
            Some(_) => Some(id(object, "phase")?),
        };
        let metrics = match object.get("metrics") {
            None => return reject(ReasonCode::MissingField, "metrics"),
            Some(metrics) => self.entries("metrics", metrics)?,
        };
        if let Some(missing) = REQUIRED_METRICS.into_iter().find(|name| !metrics.contains_key(*name)) {
            return reject(ReasonCode::MissingField, format!("metrics.{missing}"));
        }
        let params = match object.get("params") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(params) => self.entries("params", params)?,
        };
        self.admit(&job, &domain, window)?;
        Ok(TelemetryPacket { job, domain, window, phase, metrics, params })
    }

    /// Checks the job and domain limits and the window order, then records
    /// the window.
    fn admit(&mut self, job: &str, domain: &str, window: u64) -> Result<(), Rejection> {
        let jobs_max = self.config.jobs_max;
        let domains_max = self.config.domains_max;
        match self.last_windows.get(job) {
            Some(&last) if window <= last => {
                return reject(
                    ReasonCode::StaleWindow,
                    format!("window: {window} is not after {last}, job {job}'s last"),
                );
            }
            None if self.last_windows.len() >= usize::try_from(jobs_max).unwrap_or(usize::MAX) => {
                return reject(ReasonCode::LimitReached, format!("job {job}: {jobs_max} jobs (jobs_max) already seen"));
            }
            _ => {}
        }
        if !self.domains.contains(domain) && self.domains.len() >= usize::try_from(domains_max).unwrap_or(usize::MAX) {
            let detail = format!("domain {domain}: {domains_max} domains (domains_max) already seen");
            return reject(ReasonCode::LimitReached, detail);
        }
        // A known job or domain is updated in place: no name is copied.
        match self.last_windows.get_mut(job) {
            Some(last) => *last = window,
            None => {
                self.last_windows.insert(job.to_owned(), window);
            }
        }
        if !self.domains.contains(domain) {
            self.domains.insert(domain.to_owned());
        }
        Ok(())
    }

    /// Reads `metrics` or `params`: an object of at most `entries_max` names
    /// to finite numbers (booleans read as 0 or 1) within `value_abs_max`
    /// and, for metrics, their configured range.
    fn entries(&self, field: &str, value: &Value) -> Result<BTreeMap<String, f64>, Rejection> {
        let Some(object) = value.as_object() else {
            return reject(ReasonCode::WrongType, format!("{field}: expected an object, found {}", describe(value)));
        };
        let entries_max = self.config.entries_max;
        if object.len() > usize::try_from(entries_max).unwrap_or(usize::MAX) {
            return reject(
                ReasonCode::TooManyEntries,
                format!("{field}: {} entries, at most {entries_max}", object.len()),
            );
        }
        let mut entries = BTreeMap::new();
        for (name, value) in object {
            if !is_name(name, NAME_CHARS_MAX) {
                let detail = format!("{field}: name {} is not 1–{NAME_CHARS_MAX} of [A-Za-z0-9._-]", shown(name));
                return reject(ReasonCode::BadId, detail);
            }
            // Written out only in a rejection's detail: an admitted entry
            // formats nothing.
            let key = || format!("{field}.{name}");
            let number = match value {
                Value::Bool(b) => f64::from(u8::from(*b)),
                Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                other => {
                    let detail = format!("{}: expected a number or a boolean, found {}", key(), describe(other));
                    return reject(ReasonCode::WrongType, detail);
                }
            };
            if !number.is_finite() {
                return reject(ReasonCode::NonFinite, format!("{}: {number}", key()));
            }
            let abs_max = self.config.value_abs_max;
            if number.abs() > abs_max {
                return reject(
                    ReasonCode::OutOfRange,
                    format!("{}: |{number}| exceeds value_abs_max {abs_max}", key()),
                );
            }
            let range = if field == "metrics" { self.config.ranges.get(name) } else { None };
            if let Some(&[min, max]) = range.filter(|[min, max]| !(*min..=*max).contains(&number)) {
                return reject(ReasonCode::OutOfRange, format!("{}: {number} is out of range {min}..={max}", key()));
            }
            entries.insert(name.clone(), number);
        }
        Ok(entries)
    }

    /// Validates a domain update against `bounds`: well-formed domain, as
    /// many values as governed knobs, the same key set, finite values within
    /// `value_abs_max` and within their knob's `[min, max]`, a finite reward
    /// within the reward's range, confidence in [0, 1]. Never panics.
    ///
    /// # Errors
    ///
    /// The [`Rejection`] for the first rule the update breaks.
    pub fn validate_update(&self, update: &DomainMetaUpdate, bounds: &UpdateBounds) -> Result<(), Rejection> {
        if !is_name(&update.domain_id, ID_CHARS_MAX) {
            let detail = format!("domain_id: {} is not 1–{ID_CHARS_MAX} of [A-Za-z0-9._-]", shown(&update.domain_id));
            return reject(ReasonCode::BadId, detail);
        }
        let knobs = &bounds.knobs;
        if update.vector.len() != update.keys.len() || update.vector.len() != knobs.len() {
            let (values, names) = (update.vector.len(), update.keys.len());
            let detail = format!("vector: {values} values for {names} keys, {} governed knobs", knobs.len());
            return reject(ReasonCode::WrongDimension, detail);
        }
        let theirs: BTreeSet<&String> = update.keys.iter().collect();
        if theirs.len() != knobs.len() || knobs.keys().any(|key| !theirs.contains(key)) {
            let governed: Vec<&String> = knobs.keys().collect();
            let detail =
                format!("keys: {} are not the governed knobs {governed:?}", shown(&format!("{:?}", update.keys)));
            return reject(ReasonCode::KeysMismatch, detail);
        }
        let abs_max = self.config.value_abs_max;
        for (key, &value) in update.keys.iter().zip(&update.vector) {
            if !value.is_finite() {
                return reject(ReasonCode::NonFinite, format!("vector.{key}: {value}"));
            }
            if value.abs() > abs_max {
                return reject(
                    ReasonCode::OutOfRange,
                    format!("vector.{key}: |{value}| exceeds value_abs_max {abs_max}"),
                );
            }
            let Some(&[min, max]) = knobs.get(key) else {
                return reject(ReasonCode::KeysMismatch, format!("keys: {} is not a governed knob", shown(key)));
            };
            if !(min..=max).contains(&value) {
                return reject(ReasonCode::OutOfRange, format!("vector.{key}: {value} is out of range {min}..={max}"));
            }
        }
        if !update.reward.is_finite() {
            return reject(ReasonCode::NonFinite, format!("reward: {}", update.reward));
        }
        let [worst, best] = bounds.reward;
        if !(worst..=best).contains(&update.reward) {
            return reject(
                ReasonCode::OutOfRange,
                format!("reward: {} is out of range {worst}..={best}", update.reward),
            );
        }
        if !update.confidence.is_finite() {
            return reject(ReasonCode::NonFinite, format!("confidence: {}", update.confidence));
        }
        if !(0.0..=1.0).contains(&update.confidence) {
            return reject(ReasonCode::OutOfRange, format!("confidence: {} is out of range 0..=1", update.confidence));
        }
        Ok(())
    }
}

/// Reads the required id string `field`.
fn id(object: &Map<String, Value>, field: &str) -> Result<String, Rejection> {
    match object.get(field) {
        None => reject(ReasonCode::MissingField, field),
        Some(Value::String(id)) if is_name(id, ID_CHARS_MAX) => Ok(id.clone()),
        Some(Value::String(id)) => {
            reject(ReasonCode::BadId, format!("{field}: {} is not 1–{ID_CHARS_MAX} of [A-Za-z0-9._-]", shown(id)))
        }
        Some(other) => reject(ReasonCode::WrongType, format!("{field}: expected a string, found {}", describe(other))),
    }
}

/// A JSON value's type, and the value itself when it is short.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {}", shown(s)),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// `text` quoted, cut after [`SHOWN_CHARS_MAX`] characters.
fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS_MAX) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// Byte offset of serde_json's 1-based (line, column in bytes) in `text`;
/// column 0 (end of line) and positions past the end clamp to the text.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    (line_start + column.saturating_sub(1)).min(text.len())
}

/// The first key that one JSON object of `text` names twice, if any. A
/// parse into `serde_json::Value` keeps the last of repeated keys silently,
/// so a packet could say two things at once; it is walked once more here
/// with serde's own deserializer (whose recursion limit still holds).
fn duplicate_key(text: &str) -> Option<String> {
    use std::cell::RefCell;

    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    /// Walks any value; notes the first repeated key in `found`.
    #[derive(Clone, Copy)]
    struct Walk<'a> {
        found: &'a RefCell<Option<String>>,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(self)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut keys = BTreeSet::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value_seed(self)?;
                if !keys.insert(key.clone()) {
                    *self.found.borrow_mut() = Some(key);
                    return Err(de::Error::custom("duplicate key"));
                }
            }
            Ok(())
        }
    }

    let found = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    // The text parsed as a `Value` already; the only error here is the
    // duplicate noted in `found`.
    let _ = Walk { found: &found }.deserialize(&mut deserializer);
    found.into_inner()
}
