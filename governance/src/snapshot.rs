//! The meta-metrics snapshot (`build_meta_metrics_snapshot`; docs/governance.md).

use ndarray::Array1;

/// What a snapshot is computed from, all of it bus data. "The cycle" is the
/// windows (admitted packets) since the previous snapshot.
#[derive(Clone, Copy, Debug)]
pub struct MetaMetricsInput<'a> {
    /// The mean reward of the cycle's windows (0 without one).
    pub reward: f64,
    /// Meta updates so far.
    pub updates: u64,
    /// Windows so far.
    pub windows: u64,
    /// The mean `gain_p50` of the cycle's windows (0 without one).
    pub gain: f64,
    /// The confidence of the aggregate the latest prior update answers (a
    /// rollback too): the weighted mean of its domains' confidences,
    /// Σ wᵢ·confidenceᵢ, in [0, 1].
    pub confidence: f64,
    /// The prior before the latest update, if any.
    pub previous_prior: Option<&'a Array1<f64>>,
    /// The current prior.
    pub prior: &'a Array1<f64>,
    /// The mean latency of the cycle's windows that reported one, in ms (0
    /// without one).
    pub latency_ms: f64,
    /// Entries journaled so far (a deterministic size: byte counts depend on
    /// the journal, which replay swaps out).
    pub journal_entries: u64,
}

/// A snapshot of the meta layer, published on `meta.telemetry`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetaMetricsSnapshot {
    /// The mean reward of the cycle's windows.
    pub reward: f64,
    /// Meta updates per window (0 before the first window).
    pub update_rate: f64,
    /// The mean `gain_p50` of the cycle's windows.
    pub gain: f64,
    /// The confidence of the aggregate the latest prior update answers, in
    /// [0, 1].
    pub confidence: f64,
    /// Euclidean distance between the last two priors (0 with one).
    pub drift_score: f64,
    /// The mean reported latency of the cycle's windows, in ms.
    pub latency_ms: f64,
    /// Entries journaled so far (a deterministic size: byte counts depend on
    /// the journal, which replay swaps out).
    pub journal_entries: u64,
}

/// Builds the snapshot: `update_rate = updates / windows`,
/// `drift_score = ‖prior − previous_prior‖₂`; the other fields are passed
/// through.
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
