//! The suite chronicle (`audit/…__chronicle.cmeta`): a run of a suite
//! recorded in the chronicle format, so it is checksummed, hash-chained,
//! sealed, and read by `metagov verify`, `inspect`, `query` and `sign` like
//! any run. It ties the release artefact — the suite's bundle — to the runs
//! behind it.
//!
//! Each record is one ingress delivery to `nobody`, one tick each, in this
//! order:
//! - `suite.test_executed` for every seed: test, file, seed, verdict, the
//!   first run's chronicle SHA-256 and chain head, the execution log's
//!   SHA-256;
//! - `suite.executed` last: the event `TEST_SUITE_EXECUTED`, the suite's
//!   timestamp, the artifact (the bundle's path in the suite directory),
//!   its SHA-256 and its manifest's, the signature's verdict, the verdict
//!   (`pass` or `fail`) and the counts.
//!
//! The recorded context's "config" is the suite's identity as TOML (name,
//! timestamp, test files with their SHA-256); its seed is 0 and it has no
//! actors: no replay rebuilds a suite.

use std::path::Path;
use std::sync::Arc;

use metagov_bus::{Entry, Envelope, Key, Value, INGRESS, NOBODY};
use metagov_storage::{init_session, ChronicleWriter, WriterOptions};

use crate::SuiteError;

/// The topic of a seed's record.
pub const TEST_EXECUTED: &str = "suite.test_executed";
/// The topic of the suite's closing record.
pub const SUITE_EXECUTED: &str = "suite.executed";

/// One seed, as the suite chronicle records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedRecord {
    /// The test.
    pub test: String,
    /// Its file.
    pub file: String,
    /// The seed.
    pub seed: u64,
    /// `pass`, `failed`, `determinism failure`, `replay failure`.
    pub verdict: String,
    /// The first run's chronicle SHA-256.
    pub chronicle_sha256: String,
    /// Its chain head.
    pub chain_head: String,
    /// The SHA-256 of the seed's `execution.json`.
    pub execution_sha256: String,
}

/// The suite's closing record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuiteRecord {
    /// When the suite ran (UTC).
    pub timestamp: String,
    /// The bundle, relative to the suite directory.
    pub artifact: String,
    /// The bundle file's SHA-256.
    pub hash: String,
    /// Its manifest's SHA-256.
    pub manifest_sha256: String,
    /// `valid, by <fingerprint>` or `unsigned`.
    pub signature: String,
    /// `pass` when every seed passed, else `fail`.
    pub verdict: String,
    /// Seeds that passed.
    pub passed: u64,
    /// Seeds that did not.
    pub not_passed: u64,
}

/// The suite's identity, the chronicle's recorded "config": TOML with the
/// suite's name, timestamp and every test file with its SHA-256.
pub fn identity(suite: &str, timestamp: &str, files: &[(String, String)]) -> String {
    let mut table = toml::Table::new();
    table.insert("suite".into(), suite.into());
    table.insert("timestamp".into(), timestamp.into());
    let files = files
        .iter()
        .map(|(path, sha256)| {
            let mut file = toml::Table::new();
            file.insert("path".into(), path.as_str().into());
            file.insert("sha256".into(), sha256.as_str().into());
            toml::Value::Table(file)
        })
        .collect();
    table.insert("files".into(), toml::Value::Array(files));
    // Invariant: a table of strings always renders.
    toml::to_string(&table).expect("a TOML table renders")
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn int(n: u64) -> Result<Value, SuiteError> {
    i64::try_from(n).map(Value::Int).map_err(|_| SuiteError::Audit { message: format!("{n} does not fit an integer") })
}

/// Writes the suite chronicle to `path` (through `path.partial`, renamed
/// when sealed and synced; an earlier file is replaced).
///
/// # Errors
///
/// The file cannot be written; a count that does not fit an `i64`.
pub fn write_chronicle(
    path: &Path,
    identity: &str,
    seeds: &[SeedRecord],
    suite: &SuiteRecord,
) -> Result<(), SuiteError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SuiteError::Io { path, source }
    };
    let chronicle_error = |e: metagov_storage::ChronicleError| SuiteError::Audit { message: e.to_string() };
    let partial = path.with_extension("cmeta.partial");
    if partial.exists() {
        std::fs::remove_file(&partial).map_err(io(&partial))?;
    }
    let context = init_session(0, identity, Vec::new());
    let mut writer = ChronicleWriter::create(&partial, &context, WriterOptions::default()).map_err(chronicle_error)?;
    let mut records = Vec::new();
    for s in seeds {
        let payload = Value::Record(vec![
            (Key::from("test"), text(&s.test)),
            (Key::from("file"), text(&s.file)),
            (Key::from("seed"), int(s.seed)?),
            (Key::from("verdict"), text(&s.verdict)),
            (Key::from("chronicle_sha256"), text(&s.chronicle_sha256)),
            (Key::from("chain_head"), text(&s.chain_head)),
            (Key::from("execution_sha256"), text(&s.execution_sha256)),
        ]);
        records.push((TEST_EXECUTED, payload));
    }
    let closing = Value::Record(vec![
        (Key::from("event"), text("TEST_SUITE_EXECUTED")),
        (Key::from("timestamp"), text(&suite.timestamp)),
        (Key::from("artifact"), text(&suite.artifact)),
        (Key::from("hash"), text(&suite.hash)),
        (Key::from("manifest_sha256"), text(&suite.manifest_sha256)),
        (Key::from("signature"), text(&suite.signature)),
        (Key::from("verdict"), text(&suite.verdict)),
        (Key::from("passed"), int(suite.passed)?),
        (Key::from("not_passed"), int(suite.not_passed)?),
    ]);
    records.push((SUITE_EXECUTED, closing));
    for (tick, (topic, payload)) in (1..).zip(records) {
        let delivery = Envelope {
            tick,
            seq: 0,
            topic: Arc::from(topic),
            from: Arc::from(INGRESS),
            to: Arc::from(NOBODY),
            cause: None,
            payload: Arc::new(payload),
        };
        writer.append(Entry::Delivery(&delivery)).map_err(chronicle_error)?;
    }
    let file = writer.seal().map_err(chronicle_error)?;
    let file = file.into_inner().map_err(|e| e.into_error()).map_err(io(&partial))?;
    file.sync_all().map_err(io(&partial))?;
    std::fs::rename(&partial, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same suite, the same records: the same chronicle bytes.
    #[test]
    fn the_suite_chronicle_is_a_function_of_its_records() {
        let dir = std::env::temp_dir().join(format!("metagov-audit-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let seed = SeedRecord {
            test: "t".into(),
            file: "t.toml".into(),
            seed: 3,
            verdict: "pass".into(),
            chronicle_sha256: "a".repeat(64),
            chain_head: "b".repeat(64),
            execution_sha256: "c".repeat(64),
        };
        let suite = SuiteRecord {
            timestamp: "2026-12-03T09:00:00Z".into(),
            artifact: "audit/x.zip".into(),
            hash: "d".repeat(64),
            manifest_sha256: "e".repeat(64),
            signature: "unsigned".into(),
            verdict: "pass".into(),
            passed: 1,
            not_passed: 0,
        };
        let identity = identity("s", &suite.timestamp, &[("t.toml".into(), "f".repeat(64))]);
        let (a, b) = (dir.join("a.cmeta"), dir.join("b.cmeta"));
        write_chronicle(&a, &identity, std::slice::from_ref(&seed), &suite).unwrap();
        write_chronicle(&b, &identity, std::slice::from_ref(&seed), &suite).unwrap();
        let (bytes_a, bytes_b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!bytes_a.is_empty());
        assert_eq!(bytes_a, bytes_b);
    }
}
