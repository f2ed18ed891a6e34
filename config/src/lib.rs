//! metagov's run config: the TOML file a user edits to steer a run.
//!
//! This crate owns the config's schema ([`Config`] and one struct per
//! `[section]`), the default of every field, validation that reports every
//! problem it can find at its line and column ([`ConfigError`]), and the
//! canonical text of a config with its SHA-256, which a chronicle records so
//! that a run names exactly the config it ran under.
//!
//! It must never read environment variables, the clock, or any file other
//! than the one it is asked to load: a config is a pure function of its
//! text. It depends on no other metagov crate.
//!
//! ```
//! use metagov_config::Config;
//!
//! let config = Config::from_toml_str("[bus]\nqueue_len_max = 4096\n", "gov.toml").unwrap();
//! assert_eq!(config.bus.queue_len_max, 4096);
//! assert_eq!(config.chronicle, Config::default().chronicle);
//!
//! let error = Config::from_toml_str("[bus]\nqueue_len_max = 0\n", "gov.toml").unwrap_err();
//! assert_eq!(error.to_string(), "gov.toml:2:17: bus.queue_len_max: 0 is out of range 1..=16777216");
//! ```
#![deny(missing_docs)]

mod error;
mod governance;
mod read;
mod schema;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use error::{shorten, ConfigError, ConfigProblem, PROBLEMS_SHOWN_MAX};
pub use governance::{
    is_name, Comparison, CrossMetaConfig, DomainMetaConfig, IntegrativeMetaConfig, KnobConfig, KnobKind, MetaConfig,
    MetaLearningConfig, MetaOptimizerConfig, MetaSchedulerConfig, MetaStorageConfig, MetaValidatorConfig, RewardConfig,
    RuleConfig, SafetyConfig, Signal, Threshold, NAME_CHARS_MAX, VALUE_ABS_MAX,
};
pub use read::{suggestion, Located};
pub use schema::{BusConfig, ChronicleConfig, Config, RunConfig};

impl Config {
    /// Parses and validates a config text. `origin` names the text in
    /// problems (usually the file name). Missing keys and sections take their
    /// defaults; an empty text is the default config.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with every problem found: unknown keys, wrong
    /// types, values out of range. A syntax error stops parsing and comes
    /// alone.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str_with(text, origin, |_| Vec::new())
    }

    /// [`Config::from_toml_str`] with checks the config crate cannot make
    /// itself (what the actor set needs): `more` is called on a config that
    /// passed every other check and returns problems as (dotted key,
    /// message), which are placed at the key like the crate's own.
    ///
    /// # Errors
    ///
    /// As [`Config::from_toml_str`], with `more`'s problems.
    pub fn from_toml_str_with(
        text: &str,
        origin: &str,
        more: impl FnOnce(&Config) -> Vec<(String, String)>,
    ) -> Result<Config, ConfigError> {
        let (config, mut notes) = parse_and_read::<Config>(text, origin)?;
        if let Some(config) = &config {
            for (key, message) in config.problems() {
                // A value already noted as unreadable was read as a placeholder.
                if notes.problems.iter().all(|problem| problem.key != key) {
                    let at = notes.offset_of(&key);
                    notes.problems.push(read::Noted { at, key, message });
                }
            }
        }
        if let Some(config) = config.as_ref().filter(|_| notes.problems.is_empty()) {
            for (key, message) in more(config) {
                let at = notes.offset_of(&key);
                notes.problems.push(read::Noted { at, key, message });
            }
        }
        match config {
            Some(config) if notes.problems.is_empty() => Ok(config),
            _ => Err(ConfigError::invalid(origin, text, notes.problems)),
        }
    }

    /// Reads the file at `path` and parses it with [`Config::from_toml_str`],
    /// naming it by its path in problems.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`] with the path if the file cannot be read as UTF-8
    /// text; otherwise as [`Config::from_toml_str`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, |_| Vec::new())
    }

    /// [`Config::load`] with [`Config::from_toml_str_with`]'s extra checks.
    ///
    /// # Errors
    ///
    /// As [`Config::load`], with `more`'s problems.
    pub fn load_with(path: &Path, more: impl FnOnce(&Config) -> Vec<(String, String)>) -> Result<Config, ConfigError> {
        let text = read_text_file(path, CONFIG_BYTES_MAX, "config_bytes_max")
            .map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
        Config::from_toml_str_with(&text, &path.display().to_string(), more)
    }

    /// The canonical text of this config: every field written, sections and
    /// keys in declaration order, no comments. Equal configs have equal text,
    /// and [`Config::from_toml_str`] reads a valid config's text back to it.
    ///
    /// # Panics
    ///
    /// If `run.seed` exceeds `i64::MAX`, which TOML cannot write and so no
    /// loaded config holds.
    #[must_use]
    pub fn canonical_toml(&self) -> String {
        toml::to_string(self).expect("every field of a config is writable as TOML")
    }

    /// Lowercase hex SHA-256 of [`Config::canonical_toml`]: the config's
    /// identity in chronicles.
    #[must_use]
    pub fn sha256_hex(&self) -> String {
        sha256_hex(self.canonical_toml().as_bytes())
    }
}

/// Lowercase hex SHA-256 of `bytes`.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Parses `text` and reads it as a `T` with the config's reader, so that
/// another TOML file (a scenario) gets the same problems as a config: every
/// problem at once, with its key, line and column, a "did you mean" for a
/// misspelled key or name, quoted values cut short, at most
/// [`PROBLEMS_SHOWN_MAX`] shown. [`Located`] fields keep where a value was,
/// for checks made after the read.
///
/// # Errors
///
/// [`ConfigError::Invalid`] with every problem the read found.
pub fn read_toml<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    match parse_and_read::<T>(text, origin)? {
        (Some(value), notes) if notes.problems.is_empty() => Ok(value),
        (_, notes) if notes.problems.is_empty() => {
            let problem = read::Noted { at: 0, key: String::new(), message: "the text could not be read".into() };
            Err(ConfigError::invalid(origin, text, vec![problem]))
        }
        (_, notes) => Err(ConfigError::invalid(origin, text, notes.problems)),
    }
}

/// Parses `text` as TOML (a syntax error comes alone) and reads it as a `T`.
fn parse_and_read<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
) -> Result<(Option<T>, read::Notes), ConfigError> {
    let document = toml_edit::ImDocument::parse(text).map_err(|error| {
        let syntax = read::Noted {
            at: error.span().map_or(0, |span| span.start),
            key: String::new(),
            message: error.message().to_owned(),
        };
        ConfigError::invalid(origin, text, vec![syntax])
    })?;
    Ok(read::read::<T>(document.as_table()))
}

/// Reads the regular file at `path` as UTF-8 text of at most `bytes_max`
/// bytes (`limit` names the limit in the error). Config and scenario files
/// are both read through here.
///
/// Anything but a regular file (a FIFO, a device, a directory) is refused
/// before it is opened, so a FIFO with no writer cannot block; the size is
/// checked before the encoding, so a cut through a character is still the
/// size error; invalid UTF-8 is reported with its byte offset.
///
/// # Errors
///
/// What the operating system said, or `InvalidInput` (not a regular file) or
/// `InvalidData` (too large, not UTF-8) with a message naming the problem.
pub fn read_text_file(path: &Path, bytes_max: u64, limit: &str) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read as _};
    let not_regular = |kind: &str| {
        Error::new(ErrorKind::InvalidInput, format!("not a regular file (it is {kind}); give a regular file"))
    };
    let kind =
        |file_type: std::fs::FileType| if file_type.is_dir() { "a directory" } else { "a FIFO, socket or device" };
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(not_regular(kind(metadata.file_type())));
    }
    let file = std::fs::File::open(path)?;
    // The path may have been replaced between the two looks.
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(not_regular(kind(metadata.file_type())));
    }
    let mut bytes = Vec::new();
    // One byte past the limit, so an oversized file is told apart.
    file.take(bytes_max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > bytes_max {
        return Err(Error::new(ErrorKind::InvalidData, format!("the file is larger than {limit} = {bytes_max} bytes")));
    }
    String::from_utf8(bytes).map_err(|error| {
        let at = error.utf8_error().valid_up_to();
        Error::new(ErrorKind::InvalidData, format!("the file is not UTF-8: invalid byte at byte {at}"))
    })
}

/// The largest config file [`Config::load`] reads, in bytes.
pub const CONFIG_BYTES_MAX: u64 = 1 << 20;

/// The default config as a commented TOML file: what `metagov config init`
/// writes. It reads back as [`Config::default`] (tested).
pub const DEFAULT_TOML: &str = include_str!("../default.toml");
