//! When the meta update runs (`MetaScheduler`; docs/governance.md).

use std::collections::BTreeMap;

use metagov_config::MetaSchedulerConfig;

/// Counts windows (admitted packets, all jobs together) and says when the
/// next meta update is due.
#[derive(Clone, Debug)]
pub struct MetaScheduler {
    config: MetaSchedulerConfig,
    windows_since_update: u64,
}

impl MetaScheduler {
    /// A scheduler at the start of an interval.
    #[must_use]
    pub fn new(config: MetaSchedulerConfig) -> Self {
        MetaScheduler { config, windows_since_update: 0 }
    }

    /// Counts one window.
    pub fn record_window(&mut self) {
        self.windows_since_update += 1;
    }

    /// Windows counted since the last update.
    #[must_use]
    pub fn windows_since_update(&self) -> u64 {
        self.windows_since_update
    }

    /// Whether the meta update runs now: after `update_interval_windows`
    /// windows if `metrics.latency_ms` is absent or within
    /// `latency_target_ms`, and after `max_deferral_windows` more windows in
    /// any case. A `true` answer starts the next interval.
    ///
    /// Reference: docs/governance.md, "Scheduler".
    pub fn should_update(&mut self, metrics: &BTreeMap<String, f64>) -> bool {
        let interval = u64::from(self.config.update_interval_windows);
        let deadline = interval + u64::from(self.config.max_deferral_windows);
        let latency_ok = metrics.get("latency_ms").is_none_or(|&latency| latency <= self.config.latency_target_ms);
        let due = self.windows_since_update >= interval && (latency_ok || self.windows_since_update >= deadline);
        if due {
            self.windows_since_update = 0;
        }
        due
    }
}
