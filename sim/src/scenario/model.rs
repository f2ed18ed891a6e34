//! The noisy quadratic model: a simulated training job whose telemetry
//! follows the knobs the supervisor sets (docs/scenarios.md, "Training that
//! answers back").
//!
//! Zhang et al., "Which Algorithmic Choices Matter at Which Batch Sizes?
//! Insights From a Noisy Quadratic Model" (NeurIPS 2019): SGD with heavy-ball
//! momentum on `L(θ) = ½ Σᵢ hᵢ θᵢ²` with a power-law spectrum
//! `hᵢ = curvature · i^(−exponent)`, and gradient noise of variance
//! `noise · hᵢ / batch_size` in each eigendirection. The model tracks the
//! exact second moments `E[θᵢ²], E[θᵢvᵢ], E[vᵢ²]` of every direction, so the
//! expected loss is computed, not sampled: one step is
//!
//! ```text
//! θ' = (1 − αh)·θ + β·v − α·ε        v' = −αh·θ + β·v − α·ε
//! ```
//!
//! (α the learning rate, β the momentum, ε the gradient noise), which moves
//! the moments by a 3×3 linear map plus the noise's `α²σ²` term. A window is
//! `steps_per_window` steps, composed once per knob setting. A step larger
//! than `2(1 + β)/h₁` diverges; a small one crawls; the loss levels off at a
//! floor that grows with α and shrinks with the batch.
//!
//! Pure arithmetic on `f64` (+ − × ÷ and `libm`), no clock, no I/O.

/// A model job's settings, from its scenario group's `[jobs.nqm]` table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct NqmSpec {
    /// Eigendirections.
    pub dims: u32,
    /// Top curvature h₁.
    pub curvature: f64,
    /// Power-law exponent of the spectrum.
    pub exponent: f64,
    /// Gradient noise scale c: variance c·hᵢ/batch per direction.
    pub noise: f64,
    /// Heavy-ball momentum β.
    pub momentum: f64,
    /// Optimizer steps per telemetry window.
    pub steps_per_window: u32,
    /// Memory fraction one sample of the batch takes.
    pub memory_per_sample: f64,
    /// Memory fraction the model itself takes.
    pub memory_base: f64,
    /// Latency of a window at batch 0, in ms.
    pub latency_base_ms: f64,
    /// Latency each sample of the batch adds, in ms.
    pub latency_per_sample_ms: f64,
    /// The loss the scorecard counts windows to (not seen by the supervisor).
    pub target_loss: f64,
    /// The first window (of the run) the job reports; jobs of one domain
    /// can start one after another.
    pub start_window: u64,
}

/// A loss this many times the job's starting loss (on the current
/// curvature) is a divergence: the job restarts from its initial weights, as
/// a job that hit NaN restarts from scratch.
pub(super) const DIVERGENCE_FACTOR: f64 = 100.0;

/// What disturbs a model job in one window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Disturbance {
    /// Factor on every curvature (a curvature jump, or a flat region).
    pub curvature_factor: f64,
    /// Factor on the gradient noise (a noise burst).
    pub noise_factor: f64,
    /// Factor on the memory the batch takes (another tenant on the device).
    pub memory_factor: f64,
    /// Restart from the initial weights in this window (a bad restart).
    pub restart: bool,
}

impl Disturbance {
    pub(super) const NONE: Disturbance =
        Disturbance { curvature_factor: 1.0, noise_factor: 1.0, memory_factor: 1.0, restart: false };
}

/// One window of a model job, as it reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct NqmWindow {
    /// Expected loss after the window.
    pub loss: f64,
    /// Expected relative loss decrease over the window.
    pub gain: f64,
    /// 1 while the loss does not rise, falling to 0 as it rises 20 % a window.
    pub stability: f64,
    /// Fraction of device memory in use.
    pub vram: f64,
    /// Window latency in ms.
    pub latency_ms: f64,
    /// The loss passed [`DIVERGENCE_FACTOR`] × the start: the job restarted.
    pub diverged: bool,
}

/// The second moments of one eigendirection: `[E θ², E θv, E v²]`.
type Moments = [f64; 3];

/// One direction's window propagator: `m' = t·m + u`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Propagator {
    t: [[f64; 3]; 3],
    u: Moments,
}

/// A model job's state.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Nqm {
    spec: NqmSpec,
    /// Base curvatures hᵢ.
    curvatures: Vec<f64>,
    moments: Vec<Moments>,
    /// The initial weights' moments, restored by a restart.
    start: Vec<Moments>,
    /// The knobs the job applies.
    pub learning_rate: f64,
    pub batch_size: f64,
    /// The settings the cached propagators were built for.
    built_for: Option<(u64, u64, u64, u64)>,
    propagators: Vec<Propagator>,
    start_loss: f64,
    loss: f64,
    /// Divergences so far.
    pub divergences: u64,
}

impl Nqm {
    pub(super) fn new(spec: NqmSpec, learning_rate: f64, batch_size: f64) -> Nqm {
        let curvatures: Vec<f64> =
            (1..=spec.dims).map(|i| spec.curvature * libm::pow(f64::from(i), -spec.exponent)).collect();
        let start = start_moments(&curvatures);
        let start_loss = loss_of(&curvatures, &start, 1.0);
        Nqm {
            moments: start.clone(),
            start,
            spec,
            curvatures,
            learning_rate,
            batch_size,
            built_for: None,
            propagators: Vec::new(),
            start_loss,
            loss: start_loss,
            divergences: 0,
        }
    }

    pub(super) fn spec(&self) -> &NqmSpec {
        &self.spec
    }

    /// Builds the window propagators for the current knobs and disturbance.
    fn build(&mut self, d: &Disturbance) {
        let key = (
            self.learning_rate.to_bits(),
            self.batch_size.to_bits(),
            d.curvature_factor.to_bits(),
            d.noise_factor.to_bits(),
        );
        if self.built_for == Some(key) {
            return;
        }
        let (alpha, beta) = (self.learning_rate, self.spec.momentum);
        let batch = self.batch_size.max(1.0);
        self.propagators = self
            .curvatures
            .iter()
            .map(|&h0| {
                let h = h0 * d.curvature_factor;
                let sigma2 = self.spec.noise * d.noise_factor * h / batch;
                let (a11, a12, a21, a22) = (1.0 - alpha * h, beta, -alpha * h, beta);
                // One step on [p, q, r] = [E θ², E θv, E v²].
                let step = [
                    [a11 * a11, 2.0 * a11 * a12, a12 * a12],
                    [a11 * a21, a11 * a22 + a12 * a21, a12 * a22],
                    [a21 * a21, 2.0 * a21 * a22, a22 * a22],
                ];
                let c = alpha * alpha * sigma2;
                let mut t = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
                let mut u = [0.0; 3];
                for _ in 0..self.spec.steps_per_window {
                    t = mat_mul(&step, &t);
                    u = mat_vec(&step, &u);
                    u.iter_mut().for_each(|x| *x += c);
                }
                Propagator { t, u }
            })
            .collect();
        self.built_for = Some(key);
    }

    /// Runs one window under disturbance `d` and returns what the job reports.
    pub(super) fn window(&mut self, d: &Disturbance) -> NqmWindow {
        if d.restart {
            self.moments.clone_from(&self.start);
        }
        self.build(d);
        let previous = self.loss;
        for (m, p) in self.moments.iter_mut().zip(&self.propagators) {
            *m = mat_vec(&p.t, m);
            m.iter_mut().zip(p.u).for_each(|(x, u)| *x += u);
        }
        let mut loss = loss_of(&self.curvatures, &self.moments, d.curvature_factor);
        // A NaN loss (an overflow) is a divergence too.
        let limit = DIVERGENCE_FACTOR * self.start_loss * d.curvature_factor;
        let diverged = loss.is_nan() || loss > limit;
        if diverged {
            self.divergences += 1;
            self.moments.clone_from(&self.start);
            loss = limit;
        }
        self.loss = if diverged { self.start_loss * d.curvature_factor } else { loss };
        let gain = (previous - loss) / previous;
        let stability = (1.0 + 5.0 * gain.min(0.0)).clamp(0.0, 1.0);
        let vram = (self.spec.memory_base + self.spec.memory_per_sample * self.batch_size * d.memory_factor).min(1.0);
        let latency_ms = self.spec.latency_base_ms + self.spec.latency_per_sample_ms * self.batch_size;
        NqmWindow { loss, gain, stability, vram, latency_ms, diverged }
    }
}

/// Initial weights: `E θᵢ² = h₁/(hᵢ·d)`, so every direction holds the same
/// share `h₁/(2d)` of the starting loss `h₁/2` and training progresses
/// through the spectrum from the top, as in the model's paper.
fn start_moments(curvatures: &[f64]) -> Vec<Moments> {
    let top = curvatures[0];
    let d = curvatures.len() as f64;
    curvatures.iter().map(|&h| [top / (h * d), 0.0, 0.0]).collect()
}

/// `L = ½ Σ factor·hᵢ·E θᵢ²`.
fn loss_of(curvatures: &[f64], moments: &[Moments], factor: f64) -> f64 {
    0.5 * curvatures.iter().zip(moments).map(|(h, m)| h * factor * m[0]).sum::<f64>()
}

fn mat_mul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

fn mat_vec(a: &[[f64; 3]; 3], v: &Moments) -> Moments {
    std::array::from_fn(|i| (0..3).map(|k| a[i][k] * v[k]).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NqmSpec {
        NqmSpec {
            dims: 16,
            curvature: 1.0,
            exponent: 1.0,
            noise: 1.0,
            momentum: 0.9,
            steps_per_window: 10,
            memory_per_sample: 0.005,
            memory_base: 0.1,
            latency_base_ms: 5.0,
            latency_per_sample_ms: 0.2,
            target_loss: 0.05,
            start_window: 1,
        }
    }

    #[test]
    fn one_step_matches_a_direct_second_moment_computation() {
        // One direction (h = 1), one step, from θ² = 1: E θ'² = (1 − αh)² + α²σ².
        let spec = NqmSpec { dims: 1, steps_per_window: 1, ..spec() };
        let mut model = Nqm::new(spec, 0.1, 4.0);
        let w = model.window(&Disturbance::NONE);
        let expected = 0.5 * ((1.0 - 0.1_f64).powi(2) + 0.01 * (1.0 / 4.0));
        assert!((w.loss - expected).abs() < 1e-15, "{} vs {expected}", w.loss);
    }

    #[test]
    fn a_step_too_large_for_the_top_curvature_diverges_and_a_small_one_crawls() {
        // Stable iff α·h₁ < 2(1 + β) = 3.8.
        let mut fast = Nqm::new(spec(), 4.0, 128.0);
        let diverged = (0..50).map(|_| fast.window(&Disturbance::NONE)).filter(|w| w.diverged).count();
        assert!(diverged > 0 && fast.divergences > 0, "α = 4 must diverge");
        let mut good = Nqm::new(spec(), 0.5, 128.0);
        let mut slow = Nqm::new(spec(), 0.005, 128.0);
        let (mut g, mut s) = (0.0, 0.0);
        for _ in 0..3 {
            g = good.window(&Disturbance::NONE).loss;
            s = slow.window(&Disturbance::NONE).loss;
        }
        assert_eq!(good.divergences, 0);
        assert!(g < 0.5 * s, "α = 0.5 ({g}) trains faster than α = 0.005 ({s})");
    }

    #[test]
    fn the_noise_floor_grows_with_the_rate_and_shrinks_with_the_batch() {
        let floor = |lr: f64, batch: f64| {
            let mut model = Nqm::new(NqmSpec { dims: 4, ..spec() }, lr, batch);
            (0..3000).map(|_| model.window(&Disturbance::NONE).loss).last().unwrap()
        };
        assert!(floor(0.2, 128.0) < floor(0.8, 128.0));
        assert!(floor(0.8, 512.0) < floor(0.8, 32.0));
    }

    #[test]
    fn a_curvature_jump_makes_a_safe_rate_diverge() {
        let mut model = Nqm::new(spec(), 0.5, 128.0);
        let jump = Disturbance { curvature_factor: 10.0, ..Disturbance::NONE };
        assert!((0..50).any(|_| model.window(&jump).diverged));
    }
}
