//! The execution log of one seed (`runs/NNN-TEST/seed-N/execution.json`):
//! when it ran and how it ended, what went in (the scenario's and the
//! config's SHA-256), every random generator before and after the first
//! run, what came out (the chronicle's SHA-256, integrity, chain head and
//! records, the summary's SHA-256 and numbers), the determinism verdict,
//! the platform and a digest of the environment variables (never their
//! values), and the record's own SHA-256 over the rest.

use metagov_storage::{sha256_hex, utc_text, RunContext};

use crate::run::{SeedResult, Timing};
use crate::trace::SeedTrace;

/// The log of `result` as written: pretty JSON, keys sorted, with a final
/// newline. `trace` is the seed's trace, `timing` the caller's times,
/// `context` the first run's recorded context (its platform and producer),
/// `variables_sha256` the caller's digest of its environment variables,
/// `summary` the first run's `summary.json` text (absent: not written).
pub fn execution_log(
    result: &SeedResult,
    trace: &SeedTrace,
    timing: &Timing,
    context: &RunContext,
    variables_sha256: &str,
    summary: Option<&str>,
) -> String {
    let summary_numbers = summary.and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok());
    let mut log = serde_json::json!({
        "test": result.test,
        "file": result.file.display().to_string(),
        "seed": result.seed,
        "status": result.verdict.label(),
        "start": utc_text(timing.start_ns),
        "end": utc_text(timing.end_ns),
        "duration_ms": timing.end_ns.saturating_sub(timing.start_ns) as f64 / 1e6,
        "rng_state": {"before": trace.rng_before, "after": trace.rng_after},
        "inputs": {
            "scenario": trace.scenario.name,
            "scenario_sha256": trace.scenario.sha256,
            "config_sha256": trace.config.sha256,
            "windows": trace.windows,
        },
        "outputs": {
            "chronicle": trace.chronicle.path.display().to_string(),
            "chronicle_sha256": trace.chronicle.facts.sha256,
            "integrity": trace.chronicle.facts.integrity,
            "chain_head": trace.chronicle.facts.chain_head,
            "records": trace.chronicle.facts.records,
            "summary_sha256": summary.map(|text| sha256_hex(text.as_bytes())),
            "summary": summary_numbers,
        },
        "determinism": trace.determinism,
        "reproduce": result.reproduce,
        "environment": {
            "os": context.environment.os.as_str(),
            "arch": context.environment.arch.as_str(),
            "variables_sha256": variables_sha256,
            "producer": context.producer,
        },
    });
    // The digest covers the record as written without it (serde_json's
    // maps keep their keys sorted, so the text is canonical).
    log["record_sha256"] = sha256_hex(log.to_string().as_bytes()).into();
    // Invariant: a `serde_json::Value` always renders.
    serde_json::to_string_pretty(&log).expect("a JSON value renders") + "\n"
}
