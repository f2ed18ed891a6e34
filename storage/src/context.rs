//! The run context (the session and its `ContextFrame`): who this run is,
//! what config it ran, on what platform, with which seed and actors. The
//! chronicle header stores it once; replay rebuilds the run from it.

use std::fmt;

use sha2::{Digest, Sha256};

/// The operating system, as a stable enum. Taken
/// from the compile target, so it never varies between runs of one binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Os {
    /// Linux.
    Linux,
    /// macOS.
    MacOs,
    /// Windows.
    Windows,
    /// FreeBSD.
    FreeBsd,
    /// Anything else.
    Other,
}

/// The processor architecture, as a stable enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// x86-64.
    X86_64,
    /// 64-bit ARM.
    Aarch64,
    /// Anything else.
    Other,
}

/// Platform of a run. Recorded for people and audits; it is never an input
/// to an actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Environment {
    /// Operating system.
    pub os: Os,
    /// Architecture.
    pub arch: Arch,
}

impl Os {
    /// The stable lowercase name stored in chronicles.
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::MacOs => "macos",
            Os::Windows => "windows",
            Os::FreeBsd => "freebsd",
            Os::Other => "other",
        }
    }

    /// Parses a stored name; unknown names are `Other`.
    pub fn parse(name: &str) -> Os {
        [Os::Linux, Os::MacOs, Os::Windows, Os::FreeBsd].into_iter().find(|os| os.as_str() == name).unwrap_or(Os::Other)
    }
}

impl Arch {
    /// The stable lowercase name stored in chronicles.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Other => "other",
        }
    }

    /// Parses a stored name; unknown names are `Other`.
    pub fn parse(name: &str) -> Arch {
        [Arch::X86_64, Arch::Aarch64].into_iter().find(|a| a.as_str() == name).unwrap_or(Arch::Other)
    }
}

impl Environment {
    /// The platform this binary was compiled for.
    pub fn detect() -> Environment {
        Environment { os: Os::parse(std::env::consts::OS), arch: Arch::parse(std::env::consts::ARCH) }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os.as_str(), self.arch.as_str())
    }
}

/// Everything about a run that is fixed before its first tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunContext {
    /// A UUID derived from the seed and the config hash (so deterministic).
    pub run_id: String,
    /// Lowercase hex SHA-256 of `config_text`.
    pub config_sha256: String,
    /// The canonical TOML config of the run.
    pub config_text: String,
    /// The platform.
    pub environment: Environment,
    /// The run seed.
    pub seed: u64,
    /// Actor names in registration order.
    pub actors: Vec<String>,
    /// The program that wrote the run, e.g. `metagov 0.1.0`.
    pub producer: String,
}

/// The run context as one module sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextFrame {
    /// The run id.
    pub run_id: String,
    /// The module (actor) name.
    pub module: String,
    /// The config hash.
    pub config_hash: String,
    /// The platform, as `os/arch`.
    pub environment: String,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The run id of a run with this seed and config hash: a UUID (version 8)
/// made of the first 16 bytes of SHA-256("metagov-run\0" ‖ seed ‖ hash).
pub fn run_id_for(seed: u64, config_sha256: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"metagov-run\0");
    h.update(seed.to_le_bytes());
    h.update(config_sha256.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes).to_string()
}

/// The `seed` of the `[run]` table of a canonical config text, if it states
/// one. The canonical text is what the config crate writes (`[run]` on its
/// own line, then `seed = N`), so a line scan reads it; storage does not
/// depend on the config crate.
pub fn config_run_seed(config_text: &str) -> Option<u64> {
    let mut in_run = false;
    for line in config_text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_run = line == "[run]";
        } else if in_run {
            if let Some(value) = line.strip_prefix("seed").map(str::trim_start).and_then(|r| r.strip_prefix('=')) {
                return value.trim().parse().ok();
            }
        }
    }
    None
}

/// The producer this build records in every chronicle's context.
pub const PRODUCER: &str = concat!("metagov ", env!("CARGO_PKG_VERSION"));

/// The build a chronicle written here records: its producer and platform
/// (`metagov 0.1.0 on linux/x86_64`). Two builds that differ here write
/// different bytes for the same run.
pub fn this_build() -> String {
    format!("{PRODUCER} on {}", Environment::detect())
}

/// The context of a run with this seed, canonical
/// config text and actor set. The same arguments give the same run id.
pub fn init_session(seed: u64, config_text: &str, actors: Vec<String>) -> RunContext {
    let config_sha256 = sha256_hex(config_text.as_bytes());
    RunContext {
        run_id: run_id_for(seed, &config_sha256),
        config_sha256,
        config_text: config_text.to_string(),
        environment: Environment::detect(),
        seed,
        actors,
        producer: PRODUCER.to_owned(),
    }
}

impl RunContext {
    /// The context frame for `module`.
    pub fn frame(&self, module: &str) -> ContextFrame {
        ContextFrame {
            run_id: self.run_id.clone(),
            module: module.to_string(),
            config_hash: self.config_sha256.clone(),
            environment: self.environment.to_string(),
        }
    }
}

/// A wall-clock time recorded as nanoseconds since the Unix epoch (an
/// arrival record's), as RFC 3339 UTC text with nanoseconds, for people.
/// A time before the epoch (which no clock of a live run gives, but a file
/// can hold) is said as the number: `humantime` formats only times after
/// it, and panics on earlier ones. An `i64` of nanoseconds ends in 2262,
/// within its range (year 9999).
pub fn utc_text(unix_nanos: i64) -> String {
    match u64::try_from(unix_nanos) {
        Ok(nanos) => {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos);
            humantime::format_rfc3339_nanos(time).to_string()
        }
        Err(_) => format!("{unix_nanos} ns since the Unix epoch (before it)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_environment_detection() {
        let a = Environment::detect();
        let b = Environment::detect();
        assert_eq!(a, b, "detection is stable");
        assert_eq!(Os::parse(a.os.as_str()), a.os);
        assert_eq!(Arch::parse(a.arch.as_str()), a.arch);
        #[cfg(target_os = "linux")]
        assert_eq!(a.os, Os::Linux);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(a.arch, Arch::X86_64);
        assert_eq!(Os::parse("plan9"), Os::Other);
    }

    #[test]
    fn run_id_is_a_deterministic_uuid() {
        let a = init_session(42, "[run]\nseed = 42\n", vec![]);
        let b = init_session(42, "[run]\nseed = 42\n", vec![]);
        let c = init_session(43, "[run]\nseed = 42\n", vec![]);
        assert_eq!(a.run_id, b.run_id);
        assert_ne!(a.run_id, c.run_id);
        let parsed = uuid::Uuid::parse_str(&a.run_id).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(a.config_sha256.len(), 64);
    }

    #[test]
    fn utc_text_is_rfc3339_with_nanoseconds() {
        assert_eq!(utc_text(1_796_126_400_000_000_001), "2026-12-01T12:00:00.000000001Z");
        assert_eq!(utc_text(i64::MAX), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(utc_text(-1_000_000_000), "-1000000000 ns since the Unix epoch (before it)");
    }
}
