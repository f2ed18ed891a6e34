//! The generators: a scenario, a seed and a window count in, telemetry
//! packets out.
//!
//! Each job draws from its own `ActorRng` stream (`scenario:<job>`), exactly
//! six words per packet whatever happens to it, so adding a job or an event
//! shifts no other job's numbers. Each domain's starting knob values come
//! from its own stream (`scenario:domain:<domain>`). Exponentials and sines
//! come from `libm`, so a stream is the same on every platform. No clock, no
//! environment, no I/O.

use std::collections::BTreeMap;
use std::f64::consts::TAU;

use metagov_bus::{ActorRng, Fixed, Key, RngState, Value};

use super::file::{EventKind, Pattern, Shape};
use super::model::{Disturbance, Nqm};
use super::Scenario;

/// Loss at the start of training and where it levels off.
const LOSS_START: f64 = 2.5;
const LOSS_END: f64 = 0.5;
/// Relative jitter of latency.
const LATENCY_JITTER: f64 = 0.1;
/// Metrics during a reward collapse: gain negative, stability low, loss up.
const COLLAPSE_GAIN: f64 = -0.1;
const COLLAPSE_STABILITY: f64 = 0.2;
const COLLAPSE_LOSS_RISE: f64 = 1.0;
/// How far above its peers an outlier's gain sits.
const OUTLIER_GAIN_SHIFT: f64 = 0.3;
/// Knob values an open-loop job of every domain reports near, and how far a
/// domain strays: (name, default, spread). They are the default config's
/// knobs (docs/governance.md, "The default knobs").
const KNOBS: [(&str, f64, f64); 2] = [("batch_size", 128.0, 0.0), ("learning_rate", 0.1, 0.01)];
/// Knob values of an outlier domain, far from [`KNOBS`] defaults.
const OUTLIER_KNOBS: [f64; 2] = [16.0, 5.0];
/// Relative noise of one sample's loss: a window's measured loss and gain
/// carry `OBSERVATION_NOISE / √(batch × steps)` of it.
const OBSERVATION_NOISE: f64 = 0.1;
/// Every generated real is clamped to this magnitude before quantizing.
const REAL_ABS_MAX: f64 = 1e6;
/// Stands for a raw token (`NaN`, `1e999`) in a rendered garbage line.
const RAW_MARK: &str = "@raw@";

/// The packets of one run of a scenario, in order: window by window, and
/// within a window the jobs in file order. Built by [`Scenario::stream`].
///
/// A packet is a telemetry packet (docs/scenarios.md, "The packets") as a [`Value::Record`] (`job`,
/// `domain`, `window`, `phase`, `metrics`, `params`, reals as
/// [`Value::Fixed`]); garbage arrives as the outside world would send it: a
/// [`Value::Text`] raw line, or a record that breaks a rule (stability 1.7,
/// no `gain_p50`, a window already sent).
#[derive(Clone, Debug)]
pub struct TelemetryStream {
    jobs: Vec<JobSim>,
    /// Job index by name, for [`TelemetryStream::apply`].
    by_name: BTreeMap<String, usize>,
    windows: u64,
    /// The window being emitted, 1-based.
    window: u64,
    next_job: usize,
}

/// One job's generator state.
#[derive(Clone, Debug)]
struct JobSim {
    name: String,
    domain: String,
    shape: Shape,
    /// The events that select this job, in file order.
    hits: Vec<Hit>,
    rng: ActorRng,
    params: Value,
    outlier_params: Value,
    /// The last window sent as a valid packet, for duplicate-window garbage.
    last_good: Option<u64>,
    /// A closed-loop job's model; `None` for the open-loop patterns.
    model: Option<Nqm>,
    /// The first run window the job reports in (1 unless a model says).
    start_window: u64,
}

/// An event as one job sees it.
#[derive(Clone, Copy, Debug)]
struct Hit {
    kind: EventKind,
    from: u64,
    to: u64,
    rate: f64,
    latency_ms: f64,
    factor: f64,
    /// The event's index in the file: decorrelates the dice of events.
    salt: u64,
}

/// What a garbage event turns a packet into.
#[derive(Clone, Copy)]
enum Garbage {
    Nan,
    Any,
}

impl TelemetryStream {
    pub(super) fn new(scenario: &Scenario, seed: u64, windows: u64) -> TelemetryStream {
        let mut domains = BTreeMap::new();
        for job in &scenario.jobs {
            domains.entry(job.domain.as_str()).or_insert_with(|| domain_params(seed, &job.domain));
        }
        let jobs = scenario
            .jobs
            .iter()
            .map(|job| {
                let hits = scenario
                    .events
                    .iter()
                    .zip(0..)
                    .filter(|(event, _)| event.applies_to(job))
                    .map(|(event, salt)| Hit {
                        kind: event.kind,
                        from: event.from,
                        to: event.to,
                        rate: event.rate,
                        latency_ms: event.latency_ms,
                        factor: event.factor,
                        salt,
                    })
                    .collect();
                let (params, outlier_params) = domains[job.domain.as_str()].clone();
                let model = match job.shape.pattern {
                    Pattern::Nqm(spec) => Some(Nqm::new(spec, KNOBS[1].1, KNOBS[0].1)),
                    _ => None,
                };
                JobSim {
                    start_window: model.as_ref().map_or(1, |m| m.spec().start_window),
                    model,
                    name: job.name.clone(),
                    domain: job.domain.clone(),
                    shape: job.shape,
                    hits,
                    rng: ActorRng::for_actor(seed, &format!("scenario:{}", job.name)),
                    params,
                    outlier_params,
                    last_good: None,
                }
            })
            .collect();
        let by_name = scenario.jobs.iter().enumerate().map(|(i, job)| (job.name.clone(), i)).collect();
        TelemetryStream { jobs, by_name, windows, window: 1, next_job: 0 }
    }

    /// How many packets the whole stream has: each job's windows from its
    /// start to the end.
    pub fn total_packets(&self) -> u64 {
        self.jobs.iter().map(|job| self.windows.saturating_sub(job.start_window - 1)).sum()
    }

    fn emitted(&self) -> u64 {
        let done = |job: &JobSim, through: u64| through.saturating_sub(job.start_window - 1);
        let this_window = self.jobs[..self.next_job].iter().map(|job| done(job, self.window)).sum::<u64>();
        let earlier = self.jobs[self.next_job..].iter().map(|job| done(job, self.window - 1)).sum::<u64>();
        this_window + earlier
    }

    /// A closed-loop job applies the knobs the supervisor set (the
    /// `policy.update` of its last window) before its next window. Knobs a
    /// job does not have, and jobs that follow an open-loop pattern, ignore
    /// them. Returns whether `job` is a job of this stream.
    pub fn apply(&mut self, job: &str, knobs: &BTreeMap<String, f64>) -> bool {
        let Some(&i) = self.by_name.get(job) else { return false };
        if let Some(model) = &mut self.jobs[i].model {
            if let Some(&lr) = knobs.get("learning_rate") {
                model.learning_rate = lr;
            }
            if let Some(&batch) = knobs.get("batch_size") {
                model.batch_size = batch;
            }
        }
        true
    }

    /// Each job's random generator (`scenario:<job>`) state, in file order.
    pub fn rng_states(&self) -> Vec<(String, RngState)> {
        self.jobs.iter().map(|job| (format!("scenario:{}", job.name), job.rng.state())).collect()
    }

    /// How each closed-loop job's training went so far, in file order.
    pub fn training(&self) -> Vec<JobTraining> {
        self.jobs
            .iter()
            .filter_map(|job| {
                job.model.as_ref().map(|m| JobTraining {
                    job: job.name.clone(),
                    target_loss: m.spec().target_loss,
                    divergences: m.divergences,
                })
            })
            .collect()
    }
}

/// What the scorecard needs from a closed-loop job beside its telemetry.
#[derive(Clone, Debug, PartialEq)]
pub struct JobTraining {
    /// The job.
    pub job: String,
    /// The loss it counts windows to.
    pub target_loss: f64,
    /// Times its loss passed 100 × its start and it restarted.
    pub divergences: u64,
}

impl Iterator for TelemetryStream {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        loop {
            if self.window > self.windows {
                return None;
            }
            let job = &mut self.jobs[self.next_job];
            let packet = (self.window >= job.start_window).then(|| job.packet(self.window - job.start_window + 1));
            self.next_job += 1;
            if self.next_job == self.jobs.len() {
                self.next_job = 0;
                self.window += 1;
            }
            if packet.is_some() {
                return packet;
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.total_packets() - self.emitted()).ok();
        (left.unwrap_or(usize::MAX), left)
    }
}

/// A domain's knob values, normal and outlier: the defaults moved by a
/// seeded amount within each knob's spread.
fn domain_params(seed: u64, domain: &str) -> (Value, Value) {
    let mut rng = ActorRng::for_actor(seed, &format!("scenario:domain:{domain}"));
    let offsets = KNOBS.map(|(_, _, spread)| spread * signed_unit(rng.next_u64()));
    let knobs = |values: [f64; KNOBS.len()]| {
        let fields = KNOBS
            .iter()
            .zip(values)
            .zip(offsets)
            .map(|(((name, _, _), v), offset)| (Key::from(*name), real(v + offset)));
        Value::Record(fields.collect())
    };
    (knobs(KNOBS.map(|(_, default, _)| default)), knobs(OUTLIER_KNOBS))
}

impl JobSim {
    /// The packet for window `w`. Draws exactly six words from the job's
    /// generator.
    fn packet(&mut self, w: u64) -> Value {
        let noise: [f64; 4] = std::array::from_fn(|_| signed_unit(self.rng.next_u64()));
        let die = self.rng.next_u64();
        let pick = self.rng.next_u64();
        let s = self.shape;
        let (mut gain, mut stability, mut loss) = trend(&s, w);
        gain += s.noise * noise[0];
        stability += s.noise * noise[1];
        loss += s.noise * noise[2];
        let mut latency = s.latency_ms * (1.0 + LATENCY_JITTER * noise[3]);
        let mut vram = 0.0;
        let mut disturbance = Disturbance::NONE;
        let mut params = &self.params;
        let mut garbage = None;
        for hit in &self.hits {
            if hit.kind == EventKind::CurvatureDrift && w >= hit.from {
                // Deterministic, and it stays after its stretch.
                let done = (w.min(hit.to) - hit.from + 1) as f64 / (hit.to - hit.from + 1) as f64;
                disturbance.curvature_factor *= 1.0 + (hit.factor - 1.0) * done;
                continue;
            }
            if w < hit.from || w > hit.to || unit(mix(die, hit.salt)) >= hit.rate {
                continue;
            }
            match hit.kind {
                EventKind::MemorySpike if self.model.is_some() => disturbance.memory_factor *= hit.factor,
                EventKind::MemorySpike => {
                    vram = 1.0;
                    latency = hit.latency_ms * (1.0 + LATENCY_JITTER * noise[3]);
                }
                EventKind::LatencySpike => latency = hit.latency_ms * (1.0 + LATENCY_JITTER * noise[3]),
                EventKind::Collapse if self.model.is_some() => disturbance.restart |= w == hit.from,
                EventKind::CurvatureJump => disturbance.curvature_factor *= hit.factor,
                EventKind::CurvatureDrift => {} // applied above
                EventKind::NoiseBurst => disturbance.noise_factor *= hit.factor,
                EventKind::Collapse => {
                    gain = COLLAPSE_GAIN + s.noise * noise[0];
                    stability = COLLAPSE_STABILITY + s.noise * noise[1];
                    loss += COLLAPSE_LOSS_RISE;
                }
                EventKind::Outlier => {
                    params = &self.outlier_params;
                    gain += OUTLIER_GAIN_SHIFT;
                }
                EventKind::NanBurst => garbage = garbage.or(Some(Garbage::Nan)),
                EventKind::GarbageBurst => garbage = garbage.or(Some(Garbage::Any)),
            }
        }
        let mut model_params = None;
        if let Some(model) = &mut self.model {
            let window = model.window(&disturbance);
            let (batch, steps) = (model.batch_size.max(1.0), f64::from(model.spec().steps_per_window));
            // A window's mean loss is measured on batch × steps samples.
            let measured = 1.0 + OBSERVATION_NOISE / libm::sqrt(batch * steps) * noise[0];
            loss = window.loss * measured;
            gain = window.gain + OBSERVATION_NOISE / libm::sqrt(batch * steps) * noise[1];
            stability = window.stability;
            vram = window.vram;
            latency = window.latency_ms * (1.0 + LATENCY_JITTER * noise[3]);
            model_params = Some(Value::Record(vec![
                ("batch_size".into(), real(model.batch_size)),
                ("learning_rate".into(), real(model.learning_rate)),
            ]));
        }
        let metrics = Value::Record(vec![
            ("gain_p50".into(), real(gain)),
            ("stability_mean".into(), real(stability.clamp(0.0, 1.0))),
            ("vram_high".into(), if self.model.is_some() { real(vram) } else { Value::Bool(vram >= 1.0) }),
            ("latency_ms".into(), real(latency.max(0.0))),
            ("loss".into(), real(loss.max(0.0))),
        ]);
        let params = model_params.as_ref().unwrap_or(params);
        let packet = Value::Record(vec![
            ("job".into(), Value::Text(self.name.clone())),
            ("domain".into(), Value::Text(self.domain.clone())),
            // Invariant: windows are at most Scenario::WINDOWS_MAX, far below i64::MAX.
            ("window".into(), Value::Int(w as i64)),
            ("phase".into(), Value::Text("train".into())),
            ("metrics".into(), metrics),
            ("params".into(), params.clone()),
        ]);
        match garbage {
            None => {
                self.last_good = Some(w);
                packet
            }
            Some(kind) => garble(packet, kind, pick, self.last_good),
        }
    }
}

/// Gain, stability and loss of window `w` before noise and events.
///
/// Training follows an exponential decay from `gain_start` to `gain_end`
/// with time constant `decay_windows` (loss likewise from `LOSS_START` to
/// `LOSS_END`). In its stretch a plateau holds the gain at zero and stops
/// the training clock; a drift moves gain and stability by `per_window` for
/// each window since the stretch began (and keeps the shift after it); an
/// oscillation adds `amplitude · sin(2π (w − from) / period_windows)` to both.
fn trend(s: &Shape, w: u64) -> (f64, f64, f64) {
    let in_stretch = s.from <= w && w <= s.to;
    let trained = match s.pattern {
        Pattern::Plateau if in_stretch => s.from - 1,
        Pattern::Plateau if w > s.to => w - (s.to - s.from + 1),
        _ => w,
    };
    let progress = libm::exp(-(trained as f64) / s.decay_windows);
    let mut gain = s.gain_end + (s.gain_start - s.gain_end) * progress;
    let mut stability = s.stability;
    let loss = LOSS_END + (LOSS_START - LOSS_END) * progress;
    match s.pattern {
        // A model job's numbers come from its model; this trend is unused.
        Pattern::Steady | Pattern::Nqm(_) => {}
        Pattern::Plateau => {
            if in_stretch {
                gain = 0.0;
            }
        }
        Pattern::Drift { per_window } => {
            if w >= s.from {
                let shift = per_window * (w.min(s.to) - s.from + 1) as f64;
                gain += shift;
                stability += shift;
            }
        }
        Pattern::Oscillation { period_windows, amplitude } => {
            if in_stretch {
                let phase = ((w - s.from) % period_windows) as f64 / period_windows as f64;
                let wave = amplitude * libm::sin(TAU * phase);
                gain += wave;
                stability += wave;
            }
        }
    }
    (gain, stability, loss)
}

/// Turns a valid packet into garbage of the given kind; `pick` chooses which.
fn garble(mut packet: Value, kind: Garbage, pick: u64, last_good: Option<u64>) -> Value {
    const NON_FINITE: [&str; 4] = ["NaN", "Infinity", "-Infinity", "nan"];
    let non_finite = |mut packet: Value| {
        let metric = if (pick >> 32) & 1 == 0 { "gain_p50" } else { "stability_mean" };
        set_metric(&mut packet, metric, Some(Value::Text(RAW_MARK.into())));
        raw_line(&packet, NON_FINITE[(pick % 4) as usize])
    };
    match kind {
        Garbage::Nan => non_finite(packet),
        Garbage::Any => match pick % 10 {
            0 => non_finite(packet),
            1 => {
                let line = packet.to_string();
                Value::Text(line[..line.len() / 2].to_owned())
            }
            2 => {
                set_metric(&mut packet, "gain_p50", Some(Value::Text(RAW_MARK.into())));
                raw_line(&packet, "1e999")
            }
            3 => {
                set_metric(&mut packet, "gain_p50", Some(Value::Text("fast".into())));
                Value::Text(packet.to_string())
            }
            4 => {
                set_metric(&mut packet, "stability_mean", None);
                Value::Text(packet.to_string())
            }
            5 => {
                set_field(&mut packet, "job", Value::Text("job name!".into()));
                Value::Text(packet.to_string())
            }
            6 => Value::Text("RuntimeError: CUDA error: an illegal memory access was encountered".into()),
            8 => {
                set_metric(&mut packet, "gain_p50", None);
                packet
            }
            9 if last_good.is_some() => {
                // Invariant: windows are at most Scenario::WINDOWS_MAX.
                set_field(&mut packet, "window", Value::Int(last_good.map_or(0, |w| w as i64)));
                packet
            }
            // 7, and 9 before any valid packet was sent.
            _ => {
                set_metric(&mut packet, "stability_mean", Some(real(1.7)));
                packet
            }
        },
    }
}

/// The packet's JSON text with the raw token in place of the marked value.
fn raw_line(packet: &Value, token: &str) -> Value {
    Value::Text(packet.to_string().replace(&format!("\"{RAW_MARK}\""), token))
}

fn fields(value: &mut Value) -> &mut Vec<(Key, Value)> {
    match value {
        Value::Record(fields) => fields,
        // Invariant: only packets built by `JobSim::packet` are garbled.
        other => unreachable!("a packet and its metrics are records, not {other}"),
    }
}

fn set_field(packet: &mut Value, key: &str, value: Value) {
    let slot = fields(packet).iter_mut().find(|(k, _)| k == key).expect("a packet has all its fields");
    slot.1 = value;
}

/// Replaces metric `key`, or removes it when `value` is `None`.
fn set_metric(packet: &mut Value, key: &str, value: Option<Value>) {
    let metrics = fields(packet).iter_mut().find(|(k, _)| k == "metrics").expect("a packet has metrics");
    let metrics = fields(&mut metrics.1);
    let i = metrics.iter().position(|(k, _)| k == key).expect("a packet has all its metrics");
    match value {
        Some(value) => metrics[i].1 = value,
        None => {
            metrics.remove(i);
        }
    }
}

/// A real on the 1e-6 grid, clamped to ±[`REAL_ABS_MAX`].
fn real(x: f64) -> Value {
    // Invariant: scenario inputs are finite and bounded, so every metric is finite.
    Value::Fixed(Fixed::from_f64(x.clamp(-REAL_ABS_MAX, REAL_ABS_MAX)).expect("a generated real is finite"))
}

/// A uniform float in [0, 1) from the top 53 bits of `x`.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform float in [−1, 1).
fn signed_unit(x: u64) -> f64 {
    2.0 * unit(x) - 1.0
}

/// SplitMix64's finalizer over `x` and `salt`: one die per event from one draw.
fn mix(x: u64, salt: u64) -> u64 {
    let mut z = x ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
