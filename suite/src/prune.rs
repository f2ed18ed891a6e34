//! Pruning old suite results (`metagov test --prune`, docs/testing.md,
//! "Pruning old results"): which suite directories and archives of a
//! results directory are kept, archived or deleted, by the date in their
//! names and the suite's retention (`[tests] rotate_days`, `retain_days`).
//!
//! A pure planner: the caller lists the directory, says which entries hold
//! a suite's results, gives today's date from its clock and carries out the
//! plan. The age of a result is the date its name begins with (the day its
//! run started, as [`crate::layout`] names it), never a file time, so the
//! same listing on the same day always gives the same plan.

use std::path::PathBuf;

/// Suite directories older than this many days are archived, by default.
pub const ROTATE_DAYS_DEFAULT: u32 = 30;
/// Suite directories and archives older than this many days are deleted,
/// by default.
pub const RETAIN_DAYS_DEFAULT: u32 = 90;
/// The largest `rotate_days` or `retain_days`: a hundred years.
pub const DAYS_MAX: u32 = 36_500;
/// The directory of a results directory that holds the archives.
pub const ARCHIVE_DIR: &str = "archive";

/// How long a suite's results are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// A suite directory older than this is packed into `archive/`.
    pub rotate_days: u32,
    /// A suite directory or archive older than this is deleted.
    pub retain_days: u32,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention { rotate_days: ROTATE_DAYS_DEFAULT, retain_days: RETAIN_DAYS_DEFAULT }
    }
}

/// An entry of a results directory, as the caller listed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    /// A directory directly in the results directory; `results` when it
    /// holds a suite's results (a `runs/` directory).
    Dir {
        /// Its name.
        name: String,
        /// Whether it holds a suite's results.
        results: bool,
    },
    /// A file directly in `archive/`.
    Archive {
        /// Its name.
        name: String,
    },
}

/// What to do with one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Younger than the limit that applies (or the directory being written).
    Keep,
    /// Pack the directory into `archive/<name>.zip`, check the archive,
    /// then remove the directory.
    Archive {
        /// The archive's path, relative to the results directory.
        to: PathBuf,
    },
    /// Remove the directory or archive.
    Delete,
    /// Not touched, and why: not named `YYYYMMDD__…`, not a suite's
    /// results, or dated after today.
    Leave {
        /// Why.
        reason: String,
    },
}

/// The plan for one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The entry, relative to the results directory (`archive/…` for an
    /// archive).
    pub path: PathBuf,
    /// Its age in days, when its name carries a date.
    pub age_days: Option<i64>,
    /// What to do.
    pub action: Action,
}

/// The plan for `listed` on `today` (`YYYYMMDD`), in the order listed;
/// `protected` names a directory never touched (the one the command is
/// about to write).
///
/// A directory older than `retain_days` is deleted (not archived first);
/// older than `rotate_days`, archived; an archive older than `retain_days`
/// is deleted. "Older than N days" means more than N days before today.
///
/// # Errors
///
/// `today` that is not a date `YYYYMMDD`.
pub fn plan(
    listed: &[Listed],
    today: &str,
    retention: Retention,
    protected: Option<&str>,
) -> Result<Vec<Step>, String> {
    let today = day_number(today).ok_or_else(|| format!("today `{today}` is not a date YYYYMMDD"))?;
    let (rotate, retain) = (i64::from(retention.rotate_days), i64::from(retention.retain_days));
    let steps = listed
        .iter()
        .map(|entry| {
            let (name, path) = match entry {
                Listed::Dir { name, .. } => (name, PathBuf::from(name)),
                Listed::Archive { name } => (name, PathBuf::from(ARCHIVE_DIR).join(name)),
            };
            let age_days = name.split_once("__").and_then(|(date, _)| day_number(date)).map(|day| today - day);
            let leave = |reason: &str| Action::Leave { reason: reason.to_owned() };
            let action = match (entry, age_days) {
                (_, None) => leave("not named YYYYMMDD__SUITE"),
                (_, Some(age)) if age < 0 => leave("dated after today"),
                (Listed::Dir { results: false, .. }, _) => leave("holds no suite's results (no runs/)"),
                (Listed::Dir { .. }, _) if protected == Some(name.as_str()) => Action::Keep,
                (Listed::Archive { .. }, _) if !name.ends_with(".zip") => leave("not a .zip archive"),
                (_, Some(age)) if age > retain => Action::Delete,
                (Listed::Dir { .. }, Some(age)) if age > rotate => {
                    Action::Archive { to: PathBuf::from(ARCHIVE_DIR).join(format!("{name}.zip")) }
                }
                _ => Action::Keep,
            };
            Step { path, age_days, action }
        })
        .collect();
    Ok(steps)
}

/// Days since 1970-01-01 of the date `YYYYMMDD`, when it is one (a
/// proleptic Gregorian calendar day of years 1000 to 9999).
pub fn day_number(date: &str) -> Option<i64> {
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| date[range].parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if year < 1000 || !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize] {
        return None;
    }
    // Days from civil (H. Hinnant): years counted from March, so that the
    // leap day ends a year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> Listed {
        Listed::Dir { name: name.into(), results: true }
    }

    fn actions(listed: &[Listed], today: &str, protected: Option<&str>) -> Vec<(String, Action)> {
        plan(listed, today, Retention::default(), protected)
            .unwrap()
            .into_iter()
            .map(|s| (s.path.display().to_string(), s.action))
            .collect()
    }

    #[test]
    fn day_numbers_are_days_since_the_epoch() {
        assert_eq!(day_number("19700101"), Some(0));
        assert_eq!(day_number("20000301"), Some(11_017));
        assert_eq!(day_number("20261203"), Some(20_790));
        assert_eq!(day_number("20240229").unwrap() + 1, day_number("20240301").unwrap());
        for bad in ["20230229", "19001301", "20261200", "2026120", "2026-12-", "09991231", "２０２６１２０３"] {
            assert_eq!(day_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn directories_are_archived_after_rotate_days_and_deleted_after_retain_days() {
        let listed = [
            dir("20261203__governance"),
            dir("20261103__governance"),
            dir("20261102__governance"),
            dir("20260904__governance"),
            dir("20260903__governance__replay"),
            Listed::Archive { name: "20260904__old.zip".into() },
            Listed::Archive { name: "20260903__old.zip".into() },
        ];
        let archive = |name: &str| Action::Archive { to: PathBuf::from(format!("archive/{name}.zip")) };
        assert_eq!(
            actions(&listed, "20261203", None),
            [
                ("20261203__governance".into(), Action::Keep),
                ("20261103__governance".into(), Action::Keep),
                ("20261102__governance".into(), archive("20261102__governance")),
                ("20260904__governance".into(), archive("20260904__governance")),
                ("20260903__governance__replay".into(), Action::Delete),
                ("archive/20260904__old.zip".into(), Action::Keep),
                ("archive/20260903__old.zip".into(), Action::Delete),
            ]
        );
    }

    #[test]
    fn what_is_not_a_dated_suite_result_is_left_alone() {
        let listed = [
            dir("notes"),
            dir("2026__x"),
            Listed::Dir { name: "20200101__mine".into(), results: false },
            dir("20301231__future"),
            dir("20200101__being-written"),
            Listed::Archive { name: "20200101__x.tar".into() },
        ];
        let planned = actions(&listed, "20261203", Some("20200101__being-written"));
        let reasons: Vec<String> = planned
            .iter()
            .map(|(_, action)| match action {
                Action::Leave { reason } => reason.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            reasons,
            [
                "not named YYYYMMDD__SUITE",
                "not named YYYYMMDD__SUITE",
                "holds no suite's results (no runs/)",
                "dated after today",
                "Keep",
                "not a .zip archive"
            ]
        );
        assert!(plan(&[], "tomorrow", Retention::default(), None).unwrap_err().contains("`tomorrow`"));
    }
}
