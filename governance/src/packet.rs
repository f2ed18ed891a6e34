//! The telemetry packet, as the validator admits it.

use std::collections::BTreeMap;

/// One window of one job's telemetry (docs/scenarios.md, "The packets"), as
/// [`MetaPacketValidator`](crate::MetaPacketValidator) admits it: every
/// number finite, `gain_p50` and `stability_mean` present, booleans read as
/// 0 or 1.
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetryPacket {
    /// The job: 1–128 characters of `[A-Za-z0-9._-]`.
    pub job: String,
    /// The job's domain: 1–128 characters of `[A-Za-z0-9._-]`.
    pub domain: String,
    /// Window number, strictly increasing per job.
    pub window: u64,
    /// Training phase, if the job names one.
    pub phase: Option<String>,
    /// Metrics by name, unknown ones included; a boolean `vram_high` is 0 or 1.
    pub metrics: BTreeMap<String, f64>,
    /// The job's current parameter values by name.
    pub params: BTreeMap<String, f64>,
}

impl TelemetryPacket {
    /// The metric `name`, if reported.
    #[must_use]
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied()
    }

    /// A metric every admitted packet has.
    ///
    /// # Panics
    ///
    /// If the packet lacks it: it did not come from the validator.
    pub(crate) fn required(&self, name: &str) -> f64 {
        self.metric(name).unwrap_or_else(|| panic!("an admitted packet has metrics.{name}"))
    }

    /// The fraction of device memory in use, `metrics.vram_high` (a
    /// boolean reads as 0 or 1); 0 if not reported.
    #[must_use]
    pub fn vram_fraction(&self) -> f64 {
        self.metric("vram_high").unwrap_or(0.0)
    }
}
