//! The governance test file (docs/testing.md, "The file"): its TOML schema,
//! read by the config's reader so its problems look like a config's (line,
//! column, key, "did you mean"), and its checks: seeds, windows, the
//! scenario and config it names (relative to the file), inline config
//! overrides, and every expectation sentence with the names it uses.
//!
//! The only I/O is reading the test file and the scenario and config files
//! it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use metagov_actors::messages::rollback_code;
use metagov_config::{Config, ConfigError, Located};
use metagov_governance::{ReasonCode, RollbackReason};
use metagov_sim::scenario::Scenario;
use serde::Deserialize;

use crate::expect::{self, Check, Expectation, NameKind};
use crate::prune::{Retention, DAYS_MAX};
use crate::SuiteError;

/// Largest test file read, in bytes.
pub const FILE_BYTES_MAX: u64 = 1 << 20;
/// Most tests in one file.
pub const TESTS_MAX: usize = 1024;
/// Most seeds one test runs.
pub const SEEDS_MAX: usize = 1024;

/// The rollback reason codes a `policy.update` carries.
const ROLLBACK_REASONS: [&str; 2] =
    [rollback_code(RollbackReason::BelowFloor), rollback_code(RollbackReason::DropFromBest)];

/// One test of a file, checked and ready to run.
#[derive(Clone, Debug)]
pub struct TestCase {
    /// The test file, as it was named (directories joined with the file).
    pub file: PathBuf,
    /// The test's name, unique in its file.
    pub name: String,
    /// The scenario whose telemetry it runs.
    pub scenario: Scenario,
    /// The config, its overrides applied; `run.seed` is set per seed.
    pub config: Config,
    /// The seeds, each its own run, in file order.
    pub seeds: Vec<u64>,
    /// Overrides the scenario's window count.
    pub windows: Option<u64>,
    /// What must hold on every seed.
    pub expectations: Vec<Expectation>,
}

/// A checked test file: its tests and the retention it sets.
#[derive(Clone, Debug)]
pub struct TestFile {
    /// The file, as it was named.
    pub path: PathBuf,
    /// Its tests, in file order.
    pub cases: Vec<TestCase>,
    /// Its `[tests]` table: how long `metagov test --prune` keeps the
    /// suite's results; `None` when the file has no such table.
    pub retention: Option<Retention>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    tests: Option<Located<RetentionDocument>>,
    test: Vec<TestDocument>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionDocument {
    rotate_days: Option<Located<u64>>,
    retain_days: Option<Located<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestDocument {
    name: Located<String>,
    scenario: Located<String>,
    config: Option<Located<String>>,
    seeds: Located<Vec<Located<u64>>>,
    windows: Option<Located<u64>>,
    overrides: Option<Located<BTreeMap<String, Located<toml::Value>>>>,
    expect: Located<Vec<ExpectDocument>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectDocument {
    that: Located<String>,
}

/// The retention of a suite of `files`: the one their `[tests]` tables
/// agree on, or the defaults when none has one.
///
/// # Errors
///
/// Two files whose tables differ, naming both and their values.
pub fn suite_retention(files: &[TestFile]) -> Result<Retention, SuiteError> {
    let mut set: Option<(&TestFile, Retention)> = None;
    for file in files {
        let Some(retention) = file.retention else { continue };
        match set {
            Some((first, agreed)) if agreed != retention => {
                let say = |r: Retention| format!("rotate_days = {}, retain_days = {}", r.rotate_days, r.retain_days);
                return Err(SuiteError::Retention {
                    message: format!(
                        "{} sets [tests] {} but {} sets {}: the files of one suite must agree (or leave it to one of them)",
                        first.path.display(),
                        say(agreed),
                        file.path.display(),
                        say(retention)
                    ),
                });
            }
            Some(_) => {}
            None => set = Some((file, retention)),
        }
    }
    Ok(set.map_or_else(Retention::default, |(_, retention)| retention))
}

/// The `*.toml` files `paths` name: a file as itself, a directory as every
/// `*.toml` directly in it, sorted by name.
///
/// # Errors
///
/// A path that does not exist, a directory that cannot be listed or holds
/// no `*.toml` file.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SuiteError> {
    let mut files = Vec::new();
    for path in paths {
        let io = |source| SuiteError::Io { path: path.clone(), source };
        let metadata = std::fs::metadata(path).map_err(io)?;
        if !metadata.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io)? {
            let entry = entry.map_err(io)?;
            let file = entry.path();
            if file.extension().is_some_and(|e| e == "toml") && !entry.file_type().map_err(io)?.is_dir() {
                found.push(file);
            }
        }
        if found.is_empty() {
            return Err(SuiteError::NoTests { path: path.clone() });
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Reads and checks the test file at `path`.
///
/// # Errors
///
/// [`SuiteError::Invalid`] with every problem of the file at its line and
/// column (unknown keys with a "did you mean", wrong types, sentences the
/// grammar does not take, names the config or scenario lacks); the errors
/// of the scenario or config files it names; I/O errors.
pub fn load(path: &Path) -> Result<TestFile, SuiteError> {
    let text = metagov_config::read_text_file(path, FILE_BYTES_MAX, "the test file limit")
        .map_err(|source| SuiteError::Io { path: path.to_owned(), source })?;
    parse(&text, path)
}

/// Checks a test file's text; `path` names it in problems and is where
/// relative scenario and config paths start from.
///
/// # Errors
///
/// As [`load`], without the I/O of the test file itself.
pub fn parse(text: &str, path: &Path) -> Result<TestFile, SuiteError> {
    let origin = path.display().to_string();
    let document: Document =
        metagov_config::read_toml(text, &origin).map_err(|problems| SuiteError::Invalid { problems })?;
    let mut file = FileCheck { text, origin: &origin, dir: path.parent().unwrap_or(Path::new("")), problems: vec![] };
    if document.test.is_empty() {
        file.problem(0, "test", "a test file needs at least one [[test]]".into());
    }
    if document.test.len() > TESTS_MAX {
        file.problem(document.test[TESTS_MAX].name.at(), "test", format!("more than {TESTS_MAX} tests"));
    }
    let retention = document.tests.as_ref().map(|tests| file.retention(tests));
    let mut names = BTreeSet::new();
    let mut cases = Vec::new();
    for (i, test) in document.test.iter().enumerate().take(TESTS_MAX) {
        let key = format!("test[{i}]");
        if test.name.get_ref().trim().is_empty() {
            file.problem(test.name.at(), &format!("{key}.name"), "a test needs a name".into());
        } else if !names.insert(test.name.get_ref().clone()) {
            let message = format!("`{}` is the name of an earlier test of this file", test.name.get_ref());
            file.problem(test.name.at(), &format!("{key}.name"), message);
        }
        if let Some(case) = file.test(test, &key, path)? {
            cases.push(case);
        }
    }
    if file.problems.is_empty() {
        Ok(TestFile { path: path.to_owned(), cases, retention })
    } else {
        Err(SuiteError::Invalid { problems: ConfigError::at_offsets(&origin, text, file.problems) })
    }
}

/// The problems found in one file so far, placed by byte offset.
struct FileCheck<'a> {
    text: &'a str,
    origin: &'a str,
    dir: &'a Path,
    problems: Vec<(usize, String, String)>,
}

impl FileCheck<'_> {
    fn problem(&mut self, at: usize, key: &str, message: String) {
        self.problems.push((at, key.to_owned(), message));
    }

    /// The byte offset in the file of byte `offset` of the string `value`
    /// (a basic or literal string written without escapes; otherwise the
    /// string's start).
    fn inside(&self, value: &Located<String>, offset: usize) -> usize {
        let at = value.at();
        let quoted = self.text.get(at..).is_some_and(|rest| {
            rest.starts_with(['"', '\'']) && rest.get(1..).is_some_and(|s| s.starts_with(value.get_ref().as_str()))
        });
        if quoted {
            at + 1 + offset
        } else {
            at
        }
    }

    /// The `[tests]` table, its defaults filled in; a value out of range is
    /// noted (and the default kept in its place).
    fn retention(&mut self, tests: &Located<RetentionDocument>) -> Retention {
        let mut retention = Retention::default();
        let document = tests.get_ref();
        let before = self.problems.len();
        for (value, key, into) in [
            (&document.rotate_days, "tests.rotate_days", &mut retention.rotate_days),
            (&document.retain_days, "tests.retain_days", &mut retention.retain_days),
        ] {
            let Some(value) = value else { continue };
            match u32::try_from(*value.get_ref()).ok().filter(|days| (1..=DAYS_MAX).contains(days)) {
                Some(days) => *into = days,
                None => self.problem(value.at(), key, format!("{} is out of range 1..={DAYS_MAX}", value.get_ref())),
            }
        }
        if self.problems.len() == before && retention.retain_days < retention.rotate_days {
            let at = document.retain_days.as_ref().or(document.rotate_days.as_ref()).map_or(tests.at(), Located::at);
            let message = format!(
                "retain_days {} is less than rotate_days {}: results are archived after rotate_days and deleted after retain_days",
                retention.retain_days, retention.rotate_days
            );
            self.problem(at, "tests.retain_days", message);
        }
        retention
    }

    /// Checks one `[[test]]`; `None` when a problem was noted.
    fn test(&mut self, test: &TestDocument, key: &str, path: &Path) -> Result<Option<TestCase>, SuiteError> {
        let before = self.problems.len();
        let seeds: Vec<u64> = test.seeds.get_ref().iter().map(|s| *s.get_ref()).collect();
        if seeds.is_empty() {
            self.problem(test.seeds.at(), &format!("{key}.seeds"), "a test needs at least one seed".into());
        }
        if seeds.len() > SEEDS_MAX {
            self.problem(test.seeds.at(), &format!("{key}.seeds"), format!("more than {SEEDS_MAX} seeds"));
        }
        let mut seen = BTreeSet::new();
        for seed in test.seeds.get_ref() {
            if !seen.insert(*seed.get_ref()) {
                self.problem(seed.at(), &format!("{key}.seeds"), format!("seed {} is listed twice", seed.get_ref()));
            }
        }
        if let Some(windows) = &test.windows {
            if !(1..=Scenario::WINDOWS_MAX).contains(windows.get_ref()) {
                let message = format!("{} is out of range 1..={}", windows.get_ref(), Scenario::WINDOWS_MAX);
                self.problem(windows.at(), &format!("{key}.windows"), message);
            }
        }
        let Some(scenario) = self.scenario(&test.scenario, key)? else { return Ok(None) };
        let Some(config) = self.config(test, key)? else { return Ok(None) };
        if test.expect.get_ref().is_empty() {
            self.problem(
                test.expect.at(),
                &format!("{key}.expect"),
                "a test needs at least one [[test.expect]]".into(),
            );
        }
        let jobs = scenario.job_names();
        // The seed only seeds the generators: the model jobs are the same for all.
        let model_jobs: Vec<String> = scenario.stream(0, Some(1)).training().into_iter().map(|t| t.job).collect();
        let rules: Vec<&str> = config.rules.iter().map(|rule| rule.name.as_str()).collect();
        let knobs: Vec<&str> = config.knobs.keys().map(String::as_str).collect();
        let rejection_reasons: Vec<&str> = ReasonCode::ALL.iter().map(|code| code.name()).collect();
        let mut expectations = Vec::new();
        for (j, expect) in test.expect.get_ref().iter().enumerate() {
            let key = format!("{key}.expect[{j}].that");
            let sentence = &expect.that;
            let parsed = match expect::parse(sentence.get_ref()) {
                Ok(parsed) => parsed,
                Err(error) => {
                    let at = self.inside(sentence, error.at);
                    self.problem(at, &key, error.message);
                    continue;
                }
            };
            let closed_loop = matches!(
                parsed.check,
                Check::FinalLossBelow { .. } | Check::ReachesTarget { .. } | Check::NoDivergence
            );
            if closed_loop && model_jobs.is_empty() {
                let message = format!(
                    "scenario `{}` has no closed-loop (model) job: only `pattern = \"nqm\"` jobs train a loss",
                    scenario.name()
                );
                self.problem(sentence.at(), &key, message);
            }
            let model: Vec<&str> = model_jobs.iter().map(String::as_str).collect();
            for name in &parsed.names {
                let (known, what): (&[&str], &str) = match name.kind {
                    NameKind::Rule => (&rules, "rule of the config"),
                    NameKind::Knob => (&knobs, "knob of the config"),
                    NameKind::Job => (&jobs, "job of the scenario"),
                    NameKind::ModelJob => (&model, "closed-loop (model) job of the scenario"),
                    NameKind::RollbackReason => (&ROLLBACK_REASONS, "rollback reason"),
                    NameKind::RejectionReason => (&rejection_reasons, "rejection reason code"),
                };
                if !known.contains(&name.name.as_str()) {
                    let message = format!(
                        "`{}` is no {what}; {}",
                        metagov_config::shorten(&name.name, 40),
                        metagov_config::suggestion(&name.name, known)
                    );
                    self.problem(self.inside(sentence, name.at), &key, message);
                }
            }
            expectations.push(parsed);
        }
        if self.problems.len() > before {
            return Ok(None);
        }
        Ok(Some(TestCase {
            file: path.to_owned(),
            name: test.name.get_ref().clone(),
            scenario,
            config,
            seeds,
            windows: test.windows.as_ref().map(|w| *w.get_ref()),
            expectations,
        }))
    }

    /// A built-in scenario, else a scenario file relative to the test file.
    fn scenario(&mut self, scenario: &Located<String>, key: &str) -> Result<Option<Scenario>, SuiteError> {
        let name = scenario.get_ref();
        if let Some(builtin) = Scenario::builtin(name) {
            return Ok(Some(builtin));
        }
        let path = self.dir.join(name);
        if !path.exists() {
            let message = format!(
                "no scenario `{}`: not a built-in ({}) and no file {}; {}",
                metagov_config::shorten(name, 80),
                Scenario::builtin_names().join(", "),
                path.display(),
                metagov_config::suggestion(name, Scenario::builtin_names())
            );
            self.problem(scenario.at(), &format!("{key}.scenario"), message);
            return Ok(None);
        }
        Scenario::load(&path)
            .map(Some)
            .map_err(|source| SuiteError::Scenario { origin: format!("{}: {key}.scenario", self.origin), source })
    }

    /// The test's config (a file relative to the test file, or the
    /// defaults) with its overrides applied.
    fn config(&mut self, test: &TestDocument, key: &str) -> Result<Option<Config>, SuiteError> {
        let base = match &test.config {
            Some(file) => {
                let path = self.dir.join(file.get_ref());
                if !path.exists() {
                    let message = format!("no config file {}", path.display());
                    self.problem(file.at(), &format!("{key}.config"), message);
                    return Ok(None);
                }
                Config::load_with(&path, metagov_sim::simulate::bus_problems)
                    .map_err(|source| SuiteError::Config { origin: format!("{}: {key}.config", self.origin), source })?
            }
            None => Config::default(),
        };
        let Some(overrides) = test.overrides.as_ref().filter(|o| !o.get_ref().is_empty()) else {
            return Ok(Some(base));
        };
        Ok(self.overridden(&base, overrides, &format!("{key}.overrides")))
    }

    /// `base` with `overrides` (dotted keys of the config TOML) set, checked
    /// as a config is; each problem is placed at the override it comes from.
    fn overridden(
        &mut self,
        base: &Config,
        overrides: &Located<BTreeMap<String, Located<toml::Value>>>,
        key: &str,
    ) -> Option<Config> {
        // Invariant: a config's canonical text is TOML (it is what `toml` wrote).
        let mut table: toml::Table = base.canonical_toml().parse().expect("a canonical config is TOML");
        for (dotted, value) in overrides.get_ref() {
            let parts: Vec<&str> = dotted.split('.').collect();
            let Some((last, parents)) = parts.split_last().filter(|_| parts.iter().all(|p| !p.is_empty())) else {
                self.problem(value.at(), key, format!("`{dotted}` is not a dotted config key like `safety.max_drop`"));
                continue;
            };
            let mut at = &mut table;
            for (depth, part) in parents.iter().enumerate() {
                let entry = at.entry(*part).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let Some(inner) = entry.as_table_mut() else {
                    let message = format!("`{}` is a value in the config, not a section", parts[..=depth].join("."));
                    self.problem(value.at(), &format!("{key}.\"{dotted}\""), message);
                    return None;
                };
                at = inner;
            }
            merge(at, last, value.get_ref().clone());
        }
        let text = match toml::to_string(&table) {
            Ok(text) => text,
            Err(error) => {
                self.problem(overrides.at(), key, format!("the overridden config cannot be written: {error}"));
                return None;
            }
        };
        match Config::from_toml_str_with(&text, "the overridden config", metagov_sim::simulate::bus_problems) {
            Ok(config) => Some(config),
            Err(ConfigError::Invalid { problems }) => {
                for problem in problems {
                    // The override the problem's key lies in (or above).
                    let source = overrides.get_ref().iter().find(|(dotted, _)| {
                        let (a, b) = (dotted.as_str(), problem.key.as_str());
                        a == b || b.starts_with(&format!("{a}.")) || a.starts_with(&format!("{b}."))
                    });
                    let (at, shown) = match source {
                        Some((dotted, value)) => (value.at(), format!("{key}.\"{dotted}\"")),
                        None => (overrides.at(), key.to_owned()),
                    };
                    self.problem(at, &shown, format!("{}: {}", problem.key, problem.message));
                }
                None
            }
            Err(error) => {
                self.problem(overrides.at(), key, error.to_string());
                None
            }
        }
    }
}

/// Sets `key` to `value` in `table`; a table given for a table is merged
/// key by key (`[test.overrides.safety]` keeps the section's other keys).
fn merge(table: &mut toml::Table, key: &str, value: toml::Value) {
    match (table.get_mut(key), value) {
        (Some(toml::Value::Table(into)), toml::Value::Table(from)) => {
            for (key, value) in from {
                merge(into, &key, value);
            }
        }
        (_, value) => {
            table.insert(key.to_owned(), value);
        }
    }
}
