//! The cross-domain aggregator (`CrossDomainMetaAggregator`; docs/governance.md).

use ndarray::Array1;

use std::collections::BTreeMap;

use metagov_config::{CrossMetaConfig, KnobConfig};

use crate::stats::median;
use crate::DomainMetaUpdate;

/// Consistency constant of the MAD-based modified z-score.
/// Reference: Iglewicz & Hoaglin (1993), "How to Detect and Handle Outliers".
const MAD_Z: f64 = 0.6745;
/// The largest robust z reported. Beyond `outlier_z_max` (at most 1000) the
/// size of z decides nothing, while the bus carries reals only up to 1e9; a
/// domain off a value that more than half the domains share exactly (a MAD
/// of 0) is infinitely many MADs away, and is reported at this value too.
pub const Z_REPORTED_MAX: f64 = 1e6;
/// Bisection steps for the mixing weight β: 2⁻⁶⁰ is below f64 resolution.
const BETA_STEPS: u32 = 60;
/// How far the weights' sum may be from 1.
const WEIGHT_SUM_TOLERANCE: f64 = 1e-9;

/// Why an update took no part in an aggregate.
#[derive(Clone, Debug, PartialEq)]
pub enum DropReason {
    /// Its keys are not the aggregator's keys.
    KeysMismatch,
    /// A later update of the same domain came in the same batch.
    Superseded,
    /// Its largest robust |z| over the keys exceeded `outlier_z_max`.
    Outlier {
        /// That |z|, at most [`Z_REPORTED_MAX`].
        z: f64,
    },
}

/// An update left out, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Dropped {
    /// The update's domain.
    pub domain_id: String,
    /// Why.
    pub reason: DropReason,
}

/// How an aggregate was formed.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateMeta {
    /// Domains used, sorted.
    pub used: Vec<String>,
    /// Their weights, in the order of `used`; they sum to 1.
    pub weights: Vec<f64>,
    /// Domains left out, sorted.
    pub dropped: Vec<Dropped>,
    /// Entropy of the weights, in nats.
    pub entropy: f64,
    /// `gamma_diversity · ln n`, in nats.
    pub entropy_target: f64,
    /// Share of the uniform weights mixed in to reach the target (0 if none
    /// was needed).
    pub beta: f64,
}

/// The result of [`CrossDomainMetaAggregator::aggregate`].
#[derive(Clone, Debug, PartialEq)]
pub struct CrossAggregate {
    /// Σ wᵢ·vᵢ over the used domains.
    pub vector: Array1<f64>,
    /// The keys of `vector`, sorted.
    pub keys: Vec<String>,
    /// Σ wᵢ·rewardᵢ over the used domains.
    pub reward: f64,
    /// Σ wᵢ·confidenceᵢ over the used domains: a weighted mean of
    /// confidences in [0, 1].
    pub confidence: f64,
    /// How the aggregate was formed.
    pub meta: AggregateMeta,
}

/// Nothing could be aggregated.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("no domain update to aggregate ({} dropped)", dropped.len())]
pub struct NothingToAggregate {
    /// The updates left out, and why.
    pub dropped: Vec<Dropped>,
}

/// Combines the domains' updates into one vector.
#[derive(Clone, Debug)]
pub struct CrossDomainMetaAggregator {
    config: CrossMetaConfig,
    keys: Vec<String>,
    /// Per key, the smallest MAD the outlier test divides by (0 until
    /// [`CrossDomainMetaAggregator::with_knob_ranges`] sets it).
    mad_floors: Vec<f64>,
}

impl CrossDomainMetaAggregator {
    /// An aggregator over `keys` (sorted here).
    #[must_use]
    pub fn new(config: CrossMetaConfig, mut keys: Vec<String>) -> Self {
        keys.sort();
        keys.dedup();
        let mad_floors = vec![0.0; keys.len()];
        CrossDomainMetaAggregator { config, keys, mad_floors }
    }

    /// Sets each key's MAD floor to `outlier_mad_floor × (max − min)` of the
    /// knob of that name (keys that name no knob keep a floor of 0).
    ///
    /// Reference: docs/governance.md, aggregator step 3.
    #[must_use]
    pub fn with_knob_ranges(mut self, knobs: &BTreeMap<String, KnobConfig>) -> Self {
        let fraction = self.config.outlier_mad_floor;
        self.mad_floors =
            self.keys.iter().map(|k| knobs.get(k).map_or(0.0, |knob| fraction * (knob.max - knob.min))).collect();
        self
    }

    /// The keys of the aggregated vector, sorted.
    #[must_use]
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Aggregates one batch of updates (validated: finite values, confidence
    /// in [0, 1]). For a domain named twice the last update counts. In order:
    /// align keys, drop outliers, weight, balance entropy, combine.
    ///
    /// Reference: docs/governance.md, "Cross-domain aggregator".
    ///
    /// # Errors
    ///
    /// [`NothingToAggregate`] if no update is left.
    pub fn aggregate(&self, updates: &[DomainMetaUpdate]) -> Result<CrossAggregate, NothingToAggregate> {
        let mut dropped = Vec::new();
        // Last update per domain, aligned to our keys, sorted by domain.
        let mut latest: Vec<(usize, &DomainMetaUpdate)> = updates.iter().enumerate().collect();
        latest.sort_by(|(i, a), (j, b)| a.domain_id.cmp(&b.domain_id).then(i.cmp(j)));
        let mut rows: Vec<(&DomainMetaUpdate, Array1<f64>)> = Vec::new();
        for (k, &(_, update)) in latest.iter().enumerate() {
            let domain_id = update.domain_id.clone();
            if latest.get(k + 1).is_some_and(|(_, next)| next.domain_id == update.domain_id) {
                dropped.push(Dropped { domain_id, reason: DropReason::Superseded });
            } else if let Some(aligned) = self.align(update) {
                rows.push((update, aligned));
            } else {
                dropped.push(Dropped { domain_id, reason: DropReason::KeysMismatch });
            }
        }
        if rows.len() >= usize::try_from(self.config.outlier_min_domains).unwrap_or(usize::MAX) {
            let scores = self.outlier_scores(&rows);
            let mut kept = Vec::new();
            for (row, z) in rows.into_iter().zip(scores) {
                if z > self.config.outlier_z_max {
                    dropped.push(Dropped { domain_id: row.0.domain_id.clone(), reason: DropReason::Outlier { z } });
                } else {
                    kept.push(row);
                }
            }
            rows = kept;
        }
        dropped.sort_by(|a, b| a.domain_id.cmp(&b.domain_id));
        if rows.is_empty() {
            return Err(NothingToAggregate { dropped });
        }

        let (weights, entropy, entropy_target, beta) = self.weights(&rows);
        let total: f64 = weights.iter().sum();
        assert!((total - 1.0).abs() <= WEIGHT_SUM_TOLERANCE, "aggregate weights sum to 1, not {total}");
        let mut vector = Array1::zeros(self.keys.len());
        let (mut reward, mut confidence) = (0.0, 0.0);
        for (&weight, (update, values)) in weights.iter().zip(&rows) {
            vector.scaled_add(weight, values);
            reward += weight * update.reward;
            confidence += weight * update.confidence;
        }
        let used = rows.iter().map(|(update, _)| update.domain_id.clone()).collect();
        let meta = AggregateMeta { used, weights, dropped, entropy, entropy_target, beta };
        Ok(CrossAggregate { vector, keys: self.keys.clone(), reward, confidence, meta })
    }

    /// The update's values in our key order, if it has exactly our keys.
    fn align(&self, update: &DomainMetaUpdate) -> Option<Array1<f64>> {
        if update.keys.len() != self.keys.len() || update.vector.len() != update.keys.len() {
            return None;
        }
        let values: Option<Vec<f64>> =
            self.keys.iter().map(|key| update.keys.iter().position(|k| k == key).map(|i| update.vector[i])).collect();
        values.map(Array1::from)
    }

    /// Each row's largest robust |z| over the keys: 0.6745·|x − median|/MAD,
    /// the MAD raised to the key's floor, z capped at [`Z_REPORTED_MAX`].
    ///
    /// A floored MAD of 0 (no floor, or a knob with `min = max`) means more
    /// than half the domains agree exactly on the key: a domain at that
    /// value has z = 0, and one off it is infinitely many MADs away, so it
    /// gets the cap and is dropped. (It is not left unjudged: that let a far
    /// domain keep its weight whenever the others agreed exactly.) The bound
    /// on drops holds all the same: a MAD of 0 needs more than half the
    /// domains at the median.
    ///
    /// Reference: Iglewicz & Hoaglin (1993); docs/governance.md, "Cross-domain aggregator".
    fn outlier_scores(&self, rows: &[(&DomainMetaUpdate, Array1<f64>)]) -> Vec<f64> {
        let mut scores = vec![0.0_f64; rows.len()];
        for k in 0..self.keys.len() {
            let column: Vec<f64> = rows.iter().map(|(_, values)| values[k]).collect();
            let center = median(&column);
            let deviations: Vec<f64> = column.iter().map(|x| (x - center).abs()).collect();
            let mad = median(&deviations).max(self.mad_floors[k]);
            for (score, &deviation) in scores.iter_mut().zip(&deviations) {
                let z = if deviation == 0.0 {
                    0.0
                } else if mad > 0.0 {
                    // Finite inputs, so at worst +∞ (a tiny MAD), never NaN.
                    (MAD_Z * deviation / mad).min(Z_REPORTED_MAX)
                } else {
                    Z_REPORTED_MAX
                };
                *score = score.max(z);
            }
        }
        scores
    }

    /// Weights wᵢ ∝ confidenceᵢ · exp((rewardᵢ − max reward)/temperature)
    /// (uniform if all are 0), then mixed toward uniform,
    /// w(β) = (1 − β)·w + β/n, with the smallest β (bisection) whose entropy
    /// reaches `gamma_diversity · ln n`. Returns (weights, entropy, target, β).
    ///
    /// Reference: docs/governance.md, "Cross-domain aggregator"; exp and ln from `libm`.
    fn weights(&self, rows: &[(&DomainMetaUpdate, Array1<f64>)]) -> (Vec<f64>, f64, f64, f64) {
        #[allow(clippy::cast_precision_loss, reason = "a batch holds far fewer than 2^53 domains")]
        let n = rows.len() as f64;
        let best = rows.iter().map(|(update, _)| update.reward).fold(f64::NEG_INFINITY, f64::max);
        let raw: Vec<f64> = rows
            .iter()
            .map(|(update, _)| update.confidence * libm::exp((update.reward - best) / self.config.temperature))
            .collect();
        let sum: f64 = raw.iter().sum();
        let base: Vec<f64> = if sum > 0.0 { raw.iter().map(|w| w / sum).collect() } else { vec![1.0 / n; rows.len()] };
        let mix = |beta: f64| -> Vec<f64> { base.iter().map(|w| (1.0 - beta) * w + beta / n).collect() };
        let target = self.config.gamma_diversity * libm::log(n);
        if entropy(&base) >= target {
            return (base.clone(), entropy(&base), target, 0.0);
        }
        let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
        for _ in 0..BETA_STEPS {
            let mid = (lo + hi) / 2.0;
            if entropy(&mix(mid)) >= target {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let weights = mix(hi);
        let h = entropy(&weights);
        (weights, h, target, hi)
    }
}

/// Shannon entropy −Σ w·ln w in nats (0·ln 0 = 0).
fn entropy(weights: &[f64]) -> f64 {
    -weights.iter().filter(|&&w| w > 0.0).map(|&w| w * libm::log(w)).sum::<f64>()
}
