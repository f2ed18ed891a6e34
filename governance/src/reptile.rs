//! The online Reptile meta-optimizer (`OnlineReptileOptimizer`; docs/governance.md).

use std::collections::{BTreeMap, VecDeque};

use metagov_config::{KnobConfig, MetaOptimizerConfig};
use ndarray::{Array1, Zip};

/// Moves the prior toward each aggregate and keeps a ring of the priors it
/// left, to roll back to.
#[derive(Clone, Debug)]
pub struct OnlineReptileOptimizer {
    config: MetaOptimizerConfig,
    keys: Vec<String>,
    min: Array1<f64>,
    max: Array1<f64>,
    prior: Array1<f64>,
    /// Priors before each `apply`, oldest first; at most `checkpoints_len`.
    checkpoints: VecDeque<Array1<f64>>,
    /// Best recent aggregate reward: the highest seen, sinking by
    /// `best_decay_per_update` at every update, reset by a rollback.
    best_reward: f64,
}

impl OnlineReptileOptimizer {
    /// An optimizer whose prior is the knobs' initial values, keys sorted by
    /// name.
    #[must_use]
    pub fn new(config: MetaOptimizerConfig, knobs: &BTreeMap<String, KnobConfig>) -> Self {
        OnlineReptileOptimizer {
            config,
            keys: knobs.keys().cloned().collect(),
            min: knobs.values().map(|knob| knob.min).collect(),
            max: knobs.values().map(|knob| knob.max).collect(),
            prior: knobs.values().map(|knob| knob.initial).collect(),
            checkpoints: VecDeque::new(),
            best_reward: f64::NEG_INFINITY,
        }
    }

    /// The keys of the prior, sorted.
    #[must_use]
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The current prior, in key order.
    #[must_use]
    pub fn prior(&self) -> &Array1<f64> {
        &self.prior
    }

    /// The current prior by key.
    #[must_use]
    pub fn prior_map(&self) -> BTreeMap<String, f64> {
        self.keys.iter().cloned().zip(self.prior.iter().copied()).collect()
    }

    /// Priors held to roll back to.
    #[must_use]
    pub fn checkpoints(&self) -> usize {
        self.checkpoints.len()
    }

    /// The effective step: lr · clamp((reward + 1)/2, 0, 1), times
    /// `memory_damping` under memory pressure.
    ///
    /// Reference: Nichol, Achiam & Schulman (2018), "On First-Order Meta-Learning Algorithms"; docs/governance.md, "Online Reptile".
    #[must_use]
    pub fn step_size(&self, reward: f64, memory_pressure: bool) -> f64 {
        let damping = if memory_pressure { self.config.memory_damping } else { 1.0 };
        self.config.lr * ((reward + 1.0) / 2.0).clamp(0.0, 1.0) * damping
    }

    /// One Reptile step toward `aggregated`: checkpoint the prior, then
    /// θ ← clip(θ + ε(φ − θ), min, max) with ε = [`Self::step_size`].
    /// Returns the new prior.
    ///
    /// Reference: Nichol, Achiam & Schulman (2018), "On First-Order
    /// Meta-Learning Algorithms", the serial Reptile update.
    ///
    /// # Panics
    ///
    /// If `keys` are not this optimizer's keys, or a value or the reward is
    /// not finite: the aggregator and validator guarantee both.
    pub fn apply(
        &mut self,
        aggregated: &Array1<f64>,
        keys: &[String],
        reward: f64,
        memory_pressure: bool,
    ) -> &Array1<f64> {
        assert_eq!(keys, self.keys, "the aggregate is over the governed knobs");
        assert_eq!(aggregated.len(), self.keys.len(), "one value per key");
        assert!(reward.is_finite() && aggregated.iter().all(|v| v.is_finite()), "finite inputs");
        if self.checkpoints.len() == usize::try_from(self.config.checkpoints_len).unwrap_or(usize::MAX) {
            self.checkpoints.pop_front();
        }
        self.checkpoints.push_back(self.prior.clone());
        self.best_reward = (self.best_reward - self.config.best_decay_per_update).max(reward);
        let epsilon = self.step_size(reward, memory_pressure);
        Zip::from(&mut self.prior).and(aggregated).and(&self.min).and(&self.max).for_each(|theta, &phi, &min, &max| {
            *theta = (*theta + epsilon * (phi - *theta)).clamp(min, max);
        });
        &self.prior
    }

    /// Whether `reward` calls for a rollback: it is more than
    /// `rollback_drop` below the best recent aggregate reward (the highest
    /// seen, sinking by `best_decay_per_update` an update, so the threshold
    /// follows a run whose reward declines as it converges) and a checkpoint
    /// is held.
    #[must_use]
    pub fn should_rollback(&self, reward: f64) -> bool {
        self.best_reward - reward > self.config.rollback_drop && !self.checkpoints.is_empty()
    }

    /// Restores the newest checkpoint exactly and drops it; successive calls
    /// walk back through the ring. `None` if no checkpoint is held. The
    /// `reward` that called for it becomes the best recent reward, so one
    /// incident rolls back once, not at every update until it ends.
    pub fn rollback(&mut self, reward: f64) -> Option<&Array1<f64>> {
        self.prior = self.checkpoints.pop_back()?;
        self.best_reward = reward;
        Some(&self.prior)
    }

    /// Replaces the prior (e.g. by one loaded from storage), clipped to the
    /// knob bounds; keeps the checkpoints.
    ///
    /// # Panics
    ///
    /// If `prior` has not one finite value per key.
    pub fn restore(&mut self, prior: &Array1<f64>) {
        assert_eq!(prior.len(), self.keys.len(), "one value per key");
        assert!(prior.iter().all(|v| v.is_finite()), "a finite prior");
        Zip::from(&mut self.prior).and(prior).and(&self.min).and(&self.max).for_each(|theta, &value, &min, &max| {
            *theta = value.clamp(min, max);
        });
    }
}
