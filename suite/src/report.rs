//! A suite's results written down: `summary.json`, `summary.md`,
//! `junit.xml`, and the timings as `timing.csv` with their averages and
//! variances in `timing.json` (docs/testing.md, "Output files").
//!
//! The JUnit XML follows the Apache Ant schema as Jenkins reads it
//! (`tests/junit/JUnit.xsd`): one `testsuite` per test file, one `testcase`
//! per seed of a test, a `failure` carrying the problems and the command
//! that reproduces it. Times are the caller's, in seconds; the timestamp is
//! the caller's too (this crate reads no clock).

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::run::{SeedResult, Timing, Verdict};

/// Everything a suite run reports.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteReport {
    /// The suite's name (the directory or file it was given).
    pub suite: String,
    /// When it ran, `YYYY-MM-DDTHH:MM:SS` (UTC), as the caller read it.
    pub timestamp: String,
    /// The test files, in the order run.
    pub files: Vec<PathBuf>,
    /// Every seed of every test, in file, test and seed order.
    pub results: Vec<SeedResult>,
}

/// Counts of verdicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Passed.
    pub passed: u64,
    /// Expectations failed.
    pub failed: u64,
    /// Determinism failures.
    pub determinism_failures: u64,
    /// Replay failures.
    pub replay_failures: u64,
}

impl Counts {
    /// Every run that did not pass.
    pub fn not_passed(self) -> u64 {
        self.failed + self.determinism_failures + self.replay_failures
    }
}

impl SuiteReport {
    /// The verdicts counted.
    pub fn counts(&self) -> Counts {
        count(self.results.iter())
    }

    /// `summary.json`: the report with its counts.
    pub fn to_json(&self) -> String {
        let value = serde_json::json!({
            "suite": self.suite,
            "timestamp": self.timestamp,
            "counts": self.counts(),
            "files": self.files,
            "results": self.results,
        });
        // Invariant: a `serde_json::Value` always renders.
        serde_json::to_string_pretty(&value).expect("a JSON value renders") + "\n"
    }

    /// `timing.csv`: one row per seed that the caller timed: test, seed,
    /// start and end (ns since the Unix epoch), duration in ns and ms, the
    /// process's peak memory (MiB) and CPU use.
    pub fn to_timing_csv(&self) -> String {
        let mut csv = String::from("test,seed,start_ns,end_ns,duration_ns,duration_ms,memory_mb,cpu_util\n");
        for r in &self.results {
            let Some(t) = r.timing else { continue };
            let duration = t.end_ns.saturating_sub(t.start_ns);
            let _ = writeln!(
                csv,
                "{},{},{},{},{duration},{:.3},{:.1},{:.3}",
                csv_field(&r.test),
                r.seed,
                t.start_ns,
                t.end_ns,
                duration as f64 / 1e6,
                t.memory_mb,
                t.cpu_util
            );
        }
        csv
    }

    /// `timing.json`: per test and over the suite, the seeds timed and the
    /// mean and (population) variance of their duration in ms, memory and
    /// CPU use.
    pub fn timing_summary_json(&self) -> String {
        let summary = |results: &[&SeedResult]| {
            let timings: Vec<Timing> = results.iter().filter_map(|r| r.timing).collect();
            let stats = |values: Vec<f64>| {
                let n = values.len() as f64;
                let mean = if n > 0.0 { values.iter().sum::<f64>() / n } else { 0.0 };
                let variance = if n > 0.0 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n } else { 0.0 };
                serde_json::json!({"mean": mean, "variance": variance})
            };
            serde_json::json!({
                "seeds": timings.len(),
                "duration_ms": stats(timings.iter().map(|t| t.end_ns.saturating_sub(t.start_ns) as f64 / 1e6).collect()),
                "memory_mb": stats(timings.iter().map(|t| t.memory_mb).collect()),
                "cpu_util": stats(timings.iter().map(|t| t.cpu_util).collect()),
            })
        };
        let mut tests: Vec<(&str, Vec<&SeedResult>)> = Vec::new();
        for r in &self.results {
            match tests.iter_mut().find(|(name, _)| *name == r.test) {
                Some((_, results)) => results.push(r),
                None => tests.push((&r.test, vec![r])),
            }
        }
        let all: Vec<&SeedResult> = self.results.iter().collect();
        let value = serde_json::json!({
            "suite": self.suite,
            "timestamp": self.timestamp,
            "all": summary(&all),
            "tests": tests.iter().map(|(name, results)| serde_json::json!({"test": name, "timing": summary(results)})).collect::<Vec<_>>(),
        });
        // Invariant: a `serde_json::Value` always renders.
        serde_json::to_string_pretty(&value).expect("a JSON value renders") + "\n"
    }

    /// `summary.md`: a table of every seed, then each problem with its
    /// reproduction command.
    pub fn to_markdown(&self) -> String {
        let counts = self.counts();
        let mut md = String::new();
        let _ = writeln!(md, "# Governance tests: {}\n", md_cell(&self.suite));
        let _ = writeln!(
            md,
            "{} runs: {} passed, {} failed, {} determinism failures, {} replay failures ({}).\n",
            self.results.len(),
            counts.passed,
            counts.failed,
            counts.determinism_failures,
            counts.replay_failures,
            self.timestamp
        );
        md.push_str("| file | test | seed | verdict | seconds |\n| --- | --- | ---: | --- | ---: |\n");
        for r in &self.results {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.2} |",
                md_cell(&r.file.display().to_string()),
                md_cell(&r.test),
                r.seed,
                r.verdict.label(),
                r.seconds
            );
        }
        for r in self.results.iter().filter(|r| !r.verdict.passed()) {
            let _ = writeln!(
                md,
                "\n## {} — {} (seed {}): {}\n",
                md_cell(&r.file.display().to_string()),
                md_cell(&r.test),
                r.seed,
                r.verdict.label()
            );
            for line in r.verdict.lines() {
                let _ = writeln!(md, "- {}", md_cell(&line));
            }
            let _ = writeln!(md, "\nReproduce: `{}`", r.reproduce.replace('`', "'"));
        }
        md
    }

    /// `junit.xml`.
    pub fn to_junit(&self) -> String {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
        for (id, file) in self.files.iter().enumerate() {
            let results: Vec<&SeedResult> = self.results.iter().filter(|r| r.file == *file).collect();
            let counts = count(results.iter().copied());
            let seconds: f64 = results.iter().map(|r| r.seconds).sum();
            let name = file.display().to_string();
            let _ = writeln!(
                xml,
                "  <testsuite name=\"{}\" package=\"{}\" id=\"{id}\" timestamp=\"{}\" hostname=\"localhost\" tests=\"{}\" \
                 failures=\"{}\" errors=\"0\" skipped=\"0\" time=\"{seconds:.3}\">",
                attr(&name),
                attr(&name),
                attr(&self.timestamp),
                results.len(),
                counts.not_passed()
            );
            xml.push_str("    <properties>\n");
            let _ = writeln!(xml, "      <property name=\"suite\" value=\"{}\"/>", attr(&self.suite));
            xml.push_str("    </properties>\n");
            for r in results {
                let _ = write!(
                    xml,
                    "    <testcase name=\"{} [seed {}]\" classname=\"{}\" time=\"{:.3}\"",
                    attr(&r.test),
                    r.seed,
                    attr(&name),
                    r.seconds
                );
                if r.verdict.passed() {
                    xml.push_str("/>\n");
                    continue;
                }
                let kind = match r.verdict {
                    Verdict::DeterminismFailure { .. } => "determinism",
                    Verdict::ReplayFailure { .. } => "replay",
                    _ => "expectation",
                };
                let lines = r.verdict.lines();
                let message = format!("{}; reproduce: {}", lines.first().map_or("", String::as_str), r.reproduce);
                let mut body = lines.join("\n");
                let _ = write!(body, "\nreproduce: {}", r.reproduce);
                let _ = write!(
                    xml,
                    ">\n      <failure message=\"{}\" type=\"{kind}\">{}</failure>\n    </testcase>\n",
                    attr(&message),
                    text(&body)
                );
            }
            xml.push_str("    <system-out/>\n    <system-err/>\n  </testsuite>\n");
        }
        xml.push_str("</testsuites>\n");
        xml
    }
}

fn count<'a>(results: impl Iterator<Item = &'a SeedResult>) -> Counts {
    let mut counts = Counts::default();
    for r in results {
        match r.verdict {
            Verdict::Pass => counts.passed += 1,
            Verdict::Failed { .. } => counts.failed += 1,
            Verdict::DeterminismFailure { .. } => counts.determinism_failures += 1,
            Verdict::ReplayFailure { .. } => counts.replay_failures += 1,
        }
    }
    counts
}

/// `s` as XML character data: markup escaped, and characters XML 1.0 does
/// not allow (most control characters) written as `?`.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// `s` as an XML attribute value in double quotes (line breaks kept as
/// character references, which attribute normalization would otherwise eat).
fn attr(s: &str) -> String {
    text(s).replace('"', "&quot;").replace('\n', "&#10;").replace('\t', "&#9;").replace('\r', "&#13;")
}

/// `s` in a Markdown table cell: pipes escaped, on one line.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// `text` as one CSV field: quoted (inner quotes doubled) when it holds a
/// comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_quotes_and_control_characters() {
        assert_eq!(attr("a<b & \"c\"\n\u{1}"), "a&lt;b &amp; &quot;c&quot;&#10;?");
        assert_eq!(text("x > y\n"), "x &gt; y\n");
    }

    #[test]
    fn a_csv_field_is_quoted_only_when_it_must_be() {
        assert_eq!(super::csv_field("plain name"), "plain name");
        assert_eq!(super::csv_field("a, \"b\""), "\"a, \"\"b\"\"\"");
        assert_eq!(super::csv_field("line\nbreak"), "\"line\nbreak\"");
    }
}
