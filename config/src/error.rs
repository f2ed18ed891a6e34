//! Errors of loading a config, each problem placed at a line and column.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::read::Noted;

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, not a regular file, unreadable,
    /// too large, not UTF-8).
    #[error("cannot read config file {}", path.display())]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The text is not a valid config: every problem found, in text order.
    /// A syntax error stops parsing, so it comes alone.
    #[error("{}", lines(problems))]
    Invalid {
        /// The problems, sorted by position; never empty.
        problems: Vec<ConfigProblem>,
    },
}

/// One thing wrong in a config text, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Name of the text, as given by the caller (usually the file name).
    pub origin: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// Dotted path of the offending key, like `bus.queue_len_max`; empty for
    /// a syntax error.
    pub key: String,
    /// What is wrong, naming the offending value.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.origin, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Most problems shown: a file with thousands of unknown keys is still one
/// screen of problems and a count.
pub const PROBLEMS_SHOWN_MAX: usize = 50;

fn lines(problems: &[ConfigProblem]) -> String {
    let mut lines: Vec<String> = problems.iter().take(PROBLEMS_SHOWN_MAX).map(ToString::to_string).collect();
    if problems.len() > PROBLEMS_SHOWN_MAX {
        lines.push(format!("… and {} more problems", problems.len() - PROBLEMS_SHOWN_MAX));
    }
    lines.join("\n")
}

/// `text` cut to `chars_max` characters, with `…` when cut: keys and
/// messages quote the file, whose names and values may be megabytes long.
pub fn shorten(text: &str, chars_max: usize) -> String {
    match text.char_indices().nth(chars_max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Longest key shown in a problem, in characters.
const KEY_CHARS_MAX: usize = 80;
/// Longest message shown in a problem, in characters.
const MESSAGE_CHARS_MAX: usize = 240;

impl ConfigError {
    /// [`ConfigError::Invalid`] from problems found by another reader of a
    /// TOML text (a scenario's checks), each given as (byte offset, key,
    /// message), placed and shown as a config's are.
    ///
    /// # Panics
    ///
    /// If `problems` is empty: an invalid text has a problem.
    pub fn at_offsets(
        origin: &str,
        text: &str,
        problems: impl IntoIterator<Item = (usize, String, String)>,
    ) -> ConfigError {
        let noted = problems.into_iter().map(|(at, key, message)| Noted { at, key, message }).collect();
        ConfigError::invalid(origin, text, noted)
    }

    /// Places problems noted by byte offset in `text` at their line and
    /// column, in one pass over the text.
    pub(crate) fn invalid(origin: &str, text: &str, mut noted: Vec<Noted>) -> ConfigError {
        assert!(!noted.is_empty(), "an invalid config has a problem");
        noted.sort_by_key(|problem| problem.at);
        let (mut line, mut column) = (1_u32, 1_u32);
        let mut chars = text.char_indices().peekable();
        let problems = noted
            .into_iter()
            .map(|problem| {
                while let Some((_, c)) = chars.next_if(|&(i, _)| i < problem.at) {
                    if c == '\n' {
                        (line, column) = (line.saturating_add(1), 1);
                    } else {
                        column = column.saturating_add(1);
                    }
                }
                ConfigProblem {
                    origin: origin.to_owned(),
                    line,
                    column,
                    key: shorten(&problem.key, KEY_CHARS_MAX),
                    // Parser messages span lines; a problem is one line.
                    message: shorten(&problem.message.trim().replace('\n', "; "), MESSAGE_CHARS_MAX),
                }
            })
            .collect();
        ConfigError::Invalid { problems }
    }
}
