//! The meta-metrics snapshot (`build_meta_metrics_snapshot`; docs/governance.md).

use ndarray::Array1;

/// What a snapshot is computed from, all of it bus data.
#[derive(Clone, Copy, Debug)]
pub struct MetaMetricsInput<'a> {
    /// The latest meta reward.
    pub reward: f64,
    /// Meta updates so far.
    pub updates: u64,
    /// Windows so far.
    pub windows: u64,
    /// The latest `gain_p50`.
    pub gain: f64,
    /// The latest aggregate's confidence (weighted mean of the domains').
    pub confidence: f64,
    /// The prior before the latest update, if any.
    pub previous_prior: Option<&'a Array1<f64>>,
    /// The current prior.
    pub prior: &'a Array1<f64>,
    /// The latest reported latency, in ms.
    pub latency_ms: f64,
    /// Entries journaled so far (a deterministic size: byte counts depend on
    /// the journal, which replay swaps out).
    pub journal_entries: u64,
}

/// A snapshot of the meta layer, published on `meta.telemetry`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetaMetricsSnapshot {
    /// The latest meta reward.
    pub reward: f64,
    /// Meta updates per window (0 before the first window).
    pub update_rate: f64,
    /// The latest `gain_p50`.
    pub gain: f64,
    /// The latest confidence.
    pub confidence: f64,
    /// Euclidean distance between the last two priors (0 with one).
    pub drift_score: f64,
    /// The latest reported latency, in ms.
    pub latency_ms: f64,
    /// Entries journaled so far (a deterministic size: byte counts depend on
    /// the journal, which replay swaps out).
    pub journal_entries: u64,
}

/// Builds the snapshot: `update_rate = updates / windows`,
/// `drift_score = ‖prior − previous_prior‖₂`.
///
/// Reference: docs/governance.md, "Metrics snapshot".
///
/// # Panics
///
/// If the two priors differ in length.
#[must_use]
pub fn build_meta_metrics_snapshot(input: &MetaMetricsInput<'_>) -> MetaMetricsSnapshot {
    #[allow(clippy::cast_precision_loss, reason = "counts stay far below 2^53")]
    let update_rate = if input.windows == 0 { 0.0 } else { input.updates as f64 / input.windows as f64 };
    let drift_score = input.previous_prior.map_or(0.0, |previous| {
        assert_eq!(previous.len(), input.prior.len(), "priors over the same keys");
        (input.prior - previous).mapv(|d| d * d).sum().sqrt()
    });
    MetaMetricsSnapshot {
        reward: input.reward,
        update_rate,
        gain: input.gain,
        confidence: input.confidence,
        drift_score,
        latency_ms: input.latency_ms,
        journal_entries: input.journal_entries,
    }
}
