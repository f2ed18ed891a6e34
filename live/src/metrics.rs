//! Prometheus metrics of the live supervisor, in the text format
//! `GET /metrics` serves (checked with `promtool check metrics` in the
//! tests). Units are in the names, counters end in `_total`, and every
//! metric has help text.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use metagov_actors::messages::RESOURCE_HINT;

use crate::supervisor::{Answer, Outcome};

const PACKETS: &str = "metagov_packets_total";
const DECISIONS: &str = "metagov_decisions_total";
const ROLLBACKS: &str = "metagov_rollbacks_total";
const HINTS: &str = "metagov_resource_hints_total";
const OVERLOADED: &str = "metagov_overloaded_total";
const QUEUE_DEPTH: &str = "metagov_ingress_queue_depth";
const ACK_SECONDS: &str = "metagov_ingest_to_ack_seconds";
const FSYNC_SECONDS: &str = "metagov_fsync_seconds";
const CHRONICLE_BYTES: &str = "metagov_chronicle_bytes";
const CHRONICLE_FRAMES: &str = "metagov_chronicle_frames";

/// Histogram buckets in seconds: 50 µs to 5 s.
const BUCKETS_SECONDS: [f64; 16] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Installs the process-wide recorder and describes every metric. Returns
/// the handle that renders the text format, or why it could not.
pub fn install() -> Result<PrometheusHandle, String> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS_SECONDS)
        .map_err(|e| e.to_string())?;
    let handle = builder.install_recorder().map_err(|e| e.to_string())?;
    describe_counter!(PACKETS, Unit::Count, "Telemetry packets answered, by outcome and rejection reason.");
    describe_counter!(DECISIONS, Unit::Count, "Policy updates (knob changes or rollbacks) sent to jobs.");
    describe_counter!(ROLLBACKS, Unit::Count, "Knob rollbacks to the last known-good snapshot, by reason.");
    describe_counter!(HINTS, Unit::Count, "Resource hints sent to jobs.");
    describe_counter!(OVERLOADED, Unit::Count, "Requests refused with 429 because the ingress queue was full.");
    describe_gauge!(QUEUE_DEPTH, Unit::Count, "Requests waiting in the ingress queue at the last batch.");
    describe_histogram!(ACK_SECONDS, Unit::Seconds, "Time from receiving a request to acknowledging it.");
    describe_histogram!(FSYNC_SECONDS, Unit::Seconds, "Time of one fdatasync of the chronicle (one per group commit).");
    describe_gauge!(CHRONICLE_BYTES, Unit::Bytes, "Bytes of whole frames written to the chronicle.");
    describe_gauge!(CHRONICLE_FRAMES, Unit::Count, "Frames written to the chronicle.");
    // Register the series up front so a fresh supervisor serves them all.
    counter!(OVERLOADED).absolute(0);
    counter!(DECISIONS).absolute(0);
    counter!(HINTS).absolute(0);
    gauge!(QUEUE_DEPTH).set(0.0);
    Ok(handle)
}

/// One answered packet.
pub fn answered(answer: &Answer) {
    match &answer.outcome {
        Outcome::Accepted => counter!(PACKETS, "outcome" => "accepted", "reason" => "").increment(1),
        Outcome::Rejected { reason, .. } => {
            counter!(PACKETS, "outcome" => "rejected", "reason" => reason.clone()).increment(1)
        }
        Outcome::Duplicate => counter!(PACKETS, "outcome" => "duplicate", "reason" => "").increment(1),
        Outcome::Conflict => counter!(PACKETS, "outcome" => "conflict", "reason" => "").increment(1),
    }
    if !answer.changed.is_empty() || answer.rollback.is_some() {
        counter!(DECISIONS).increment(1);
    }
    if let Some(reason) = &answer.rollback {
        counter!(ROLLBACKS, "reason" => reason.clone()).increment(1);
    }
    let hints = answer.events.iter().filter(|e| e.topic == RESOURCE_HINT).count();
    if hints > 0 {
        counter!(HINTS).increment(hints as u64);
    }
}

/// One request acknowledged after `elapsed`, carrying `packets` packets.
pub fn acknowledged(elapsed: Duration, packets: usize) {
    let seconds = elapsed.as_secs_f64();
    for _ in 0..packets.max(1) {
        histogram!(ACK_SECONDS).record(seconds);
    }
}

/// One fdatasync that took `elapsed`.
pub fn fsync_done(elapsed: Duration) {
    histogram!(FSYNC_SECONDS).record(elapsed.as_secs_f64());
}

/// The chronicle's size after a commit.
pub fn chronicle_size(bytes: u64, frames: u64) {
    gauge!(CHRONICLE_BYTES).set(bytes as f64);
    gauge!(CHRONICLE_FRAMES).set(frames as f64);
}

/// The queue depth seen when a batch was taken.
pub fn queue_depth(len: usize) {
    gauge!(QUEUE_DEPTH).set(len as f64);
}

/// A request refused because the queue was full.
pub fn overloaded() {
    counter!(OVERLOADED).increment(1);
}
