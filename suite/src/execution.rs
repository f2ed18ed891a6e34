//! The execution log of one seed (`runs/NNN-TEST/seed-N/execution.json`):
//! when it ran and how it ended, what went in (the scenario's and the
//! config's SHA-256), every random generator before and after the first
//! run, what came out (the chronicle's SHA-256, integrity, chain head and
//! records, the summary's SHA-256 and numbers on the 1e-6 grid), the
//! determinism verdict, the platform and a digest of the environment
//! variables (never their values), and the record's own SHA-256 over the
//! rest.

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
    let summary_numbers = summary.and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok()).map(on_grid);
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

/// `value` with every fractional number rounded to the bus's 1e-6 grid
/// (as `Fixed` rounds), so the log says what a chronicle could carry and
/// not the last bits of a division; whole numbers, and numbers the grid
/// cannot hold (beyond ±1e9), stay as they are.
fn on_grid(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        Json::Number(n) if n.is_f64() => {
            let snapped = n.as_f64().and_then(|x| metagov_bus::Fixed::from_f64(x).ok());
            match snapped.and_then(|fixed| serde_json::Number::from_f64(fixed.to_f64())) {
                Some(on) => Json::Number(on),
                None => Json::Number(n),
            }
        }
        Json::Array(items) => Json::Array(items.into_iter().map(on_grid).collect()),
        Json::Object(fields) => Json::Object(fields.into_iter().map(|(k, v)| (k, on_grid(v))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_numbers_are_put_on_the_grid() {
        let summary = serde_json::json!({"a": 0.17812499999999998, "b": [1.45985401459854, 3], "c": 2e12, "d": "x"});
        assert_eq!(on_grid(summary).to_string(), r#"{"a":0.178125,"b":[1.459854,3],"c":2000000000000.0,"d":"x"}"#);
    }
}
