//! The per-domain learner (`DomainMetaLearner`; docs/governance.md).

use std::collections::BTreeMap;

use metagov_config::{DomainMetaConfig, IntegrativeMetaConfig};
use ndarray::Array1;

use crate::stats::Welford;
use crate::{score, TelemetryPacket};

/// One domain's current estimate, for the aggregator (`DomainMetaUpdate`).
#[derive(Clone, Debug, PartialEq)]
pub struct DomainMetaUpdate {
    /// The domain.
    pub domain_id: String,
    /// Knob names, sorted; `vector[i]` is the value of `keys[i]`.
    pub keys: Vec<String>,
    /// The reward-weighted parameter estimate.
    pub vector: Array1<f64>,
    /// Mean reward of the domain's windows.
    pub reward: f64,
    /// Confidence in [0, 1] from the reward's t-interval.
    pub confidence: f64,
    /// Window of the packet that produced this update (the actor adds the
    /// bus tick).
    pub window: u64,
    /// Windows the domain has been observed.
    pub observations: u64,
}

/// What the learner keeps per domain.
#[derive(Clone, Debug)]
struct DomainState {
    estimate: Array1<f64>,
    weight_sums: Array1<f64>,
    rewards: Welford,
}

/// Learns, per domain, which knob values go with high reward. It holds a
/// state for every domain it is given; the validator bounds their number
/// (`domains_max`).
#[derive(Clone, Debug)]
pub struct DomainMetaLearner {
    config: DomainMetaConfig,
    /// The integrative layer's config: its reward scores every packet,
    /// one yardstick for all domains.
    layer: IntegrativeMetaConfig,
    keys: Vec<String>,
    initial: Array1<f64>,
    domains: BTreeMap<String, DomainState>,
}

impl DomainMetaLearner {
    /// A learner over the integrative config's knobs (sorted by name) that
    /// scores packets with the integrative layer's reward.
    #[must_use]
    pub fn new(config: DomainMetaConfig, integrative: &IntegrativeMetaConfig) -> Self {
        let keys: Vec<String> = integrative.knobs.keys().cloned().collect();
        let initial = integrative.knobs.values().map(|knob| knob.initial).collect();
        DomainMetaLearner { config, layer: integrative.clone(), keys, initial, domains: BTreeMap::new() }
    }

    /// Each domain's current estimate (in [`DomainMetaLearner::keys`]
    /// order) and the windows it has seen, by domain.
    #[must_use]
    pub fn estimates(&self) -> BTreeMap<String, (Vec<f64>, u64)> {
        self.domains.iter().map(|(domain, s)| (domain.clone(), (s.estimate.to_vec(), s.rewards.count()))).collect()
    }

    /// The knob names the vectors are over, sorted.
    #[must_use]
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Learns from one admitted packet; returns the domain's update once it
    /// has `min_observations` windows, then every `emit_interval_windows`.
    ///
    /// With w = (clamp(reward, −1, 1) + 1)/2, for each knob k the packet
    /// reports in `params`: S_k ← decay·S_k + w; v_k ← v_k + (w/S_k)(p_k − v_k).
    /// Confidence = 1/(1 + h/`confidence_half_width`), h the reward's
    /// t-interval half-width.
    ///
    /// Reference: docs/governance.md, "Domain learner".
    ///
    /// # Panics
    ///
    /// If the packet was not admitted by the validator.
    pub fn observe(&mut self, packet: &TelemetryPacket) -> Option<DomainMetaUpdate> {
        let reward = score(packet, &self.layer, self.layer.meta.g_min).total;
        let weight = (reward.clamp(-1.0, 1.0) + 1.0) / 2.0;
        let state = self.domains.entry(packet.domain.clone()).or_insert_with(|| DomainState {
            estimate: self.initial.clone(),
            weight_sums: Array1::zeros(self.keys.len()),
            rewards: Welford::default(),
        });
        for (i, key) in self.keys.iter().enumerate() {
            let Some(&value) = packet.params.get(key) else { continue };
            state.weight_sums[i] = self.config.decay * state.weight_sums[i] + weight;
            if state.weight_sums[i] > 0.0 {
                state.estimate[i] += weight / state.weight_sums[i] * (value - state.estimate[i]);
            }
        }
        state.rewards.push(reward);
        let observations = state.rewards.count();
        let min = u64::from(self.config.min_observations);
        if observations < min || !(observations - min).is_multiple_of(u64::from(self.config.emit_interval_windows)) {
            return None;
        }
        let half_width = state.rewards.t_half_width(self.config.ci_level).unwrap_or(0.0);
        Some(DomainMetaUpdate {
            domain_id: packet.domain.clone(),
            keys: self.keys.clone(),
            vector: state.estimate.clone(),
            reward: state.rewards.mean(),
            confidence: 1.0 / (1.0 + half_width / self.config.confidence_half_width),
            window: packet.window,
            observations,
        })
    }
}
