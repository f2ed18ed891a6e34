//! The expectation sentences of a governance test (docs/testing.md,
//! "Expectations"): their grammar, read word by word, and the checks they
//! stand for.
//!
//! Parsing is strict: a sentence it does not understand is an error naming
//! the word (by its byte offset in the sentence) and what was expected
//! there, with a "did you mean" for a misspelled keyword. Names (rules,
//! knobs, jobs) are checked against the test's config and scenario by the
//! caller, which knows them ([`Expectation::names`]).

use std::fmt;

/// How many times something may happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// At least this many.
    AtLeast(u64),
    /// At most this many.
    AtMost(u64),
    /// Exactly this many (`never` is exactly 0).
    Exactly(u64),
}

impl Bound {
    /// Whether `count` satisfies the bound.
    pub fn holds(self, count: u64) -> bool {
        match self {
            Bound::AtLeast(n) => count >= n,
            Bound::AtMost(n) => count <= n,
            Bound::Exactly(n) => count == n,
        }
    }

    /// The count past which the bound is broken for good (the `n + 1`-th
    /// event), if there is one.
    pub fn breaks_after(self) -> Option<u64> {
        match self {
            Bound::AtLeast(_) => None,
            Bound::AtMost(n) | Bound::Exactly(n) => Some(n),
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::AtLeast(n) => write!(f, "at least {n}"),
            Bound::AtMost(n) => write!(f, "at most {n}"),
            Bound::Exactly(0) => f.write_str("none"),
            Bound::Exactly(n) => write!(f, "exactly {n}"),
        }
    }
}

/// Which resource hints are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HintKind {
    /// Every hint.
    Any,
    /// Hints for memory pressure.
    Memory,
    /// Hints for latency above target.
    Latency,
}

/// What a counting expectation counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Counted {
    /// Firings of one rule (each job-window it fired on counts once).
    RuleFires(String),
    /// Changes of one knob (a job's start values not counted).
    KnobChanges(String),
    /// Knob rollbacks, optionally of one reason.
    Rollbacks(Option<String>),
    /// Resource hints.
    Hints(HintKind),
    /// Rejected packets, optionally of one reason code.
    Rejections(Option<String>),
}

/// The check a sentence stands for.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// Something happens a bounded number of times.
    Count {
        /// What is counted.
        what: Counted,
        /// How often it may happen.
        bound: Bound,
    },
    /// A knob's value after the decision on a window lies in `[min, max]`.
    KnobAt {
        /// The knob.
        knob: String,
        /// The window.
        window: u64,
        /// Lowest allowed value.
        min: f64,
        /// Highest allowed value.
        max: f64,
    },
    /// Every value a knob takes lies in `[min, max]`.
    KnobWithin {
        /// The knob.
        knob: String,
        /// Lowest allowed value.
        min: f64,
        /// Highest allowed value.
        max: f64,
    },
    /// A model job's last reported loss is below `max`.
    FinalLossBelow {
        /// The loss it must be below.
        max: f64,
    },
    /// A model job's loss reaches the scenario's target loss (by a window).
    ReachesTarget {
        /// The window by which it must (any window when `None`).
        by: Option<u64>,
    },
    /// A model job never diverges.
    NoDivergence,
}

/// Windows an expectation looks at: after `after` and before `before`
/// (both exclusive), each bound optional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Windows {
    /// Only windows after this one.
    pub after: Option<u64>,
    /// Only windows before this one.
    pub before: Option<u64>,
}

impl Windows {
    /// Whether `window` is looked at.
    pub fn contains(self, window: u64) -> bool {
        self.after.is_none_or(|a| window > a) && self.before.is_none_or(|b| window < b)
    }
}

/// One parsed expectation: a check, the job it is about (every job when
/// `None`) and the windows it looks at.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    /// The sentence as written.
    pub text: String,
    /// What is checked.
    pub check: Check,
    /// `on job J`.
    pub job: Option<String>,
    /// `before window W` / `after window W`.
    pub windows: Windows,
    /// Where each name of the sentence is, for the caller's checks.
    pub names: Vec<Name>,
}

/// A name a sentence uses, with its byte offset in the sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    /// What it names.
    pub kind: NameKind,
    /// The name.
    pub name: String,
    /// Byte offset in the sentence.
    pub at: usize,
}

/// What a [`Name`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// A rule of the config.
    Rule,
    /// A knob of the config.
    Knob,
    /// A job of the scenario.
    Job,
    /// A model (closed-loop) job of the scenario.
    ModelJob,
    /// A rollback reason code.
    RollbackReason,
    /// A validator reason code.
    RejectionReason,
}

/// A sentence the grammar does not take: what was expected at which word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset of the offending word in the sentence (its length when
    /// the sentence ended too early).
    pub at: usize,
    /// What is wrong, naming the word and what was expected.
    pub message: String,
}

/// One word of a sentence with its byte offset. `[`, `]` and `,` are words
/// of their own.
#[derive(Clone, Copy, Debug)]
struct Word<'a> {
    text: &'a str,
    at: usize,
}

fn words(sentence: &str) -> Vec<Word<'_>> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in sentence.char_indices() {
        let single = matches!(c, '[' | ']' | ',');
        if c.is_whitespace() || single {
            if let Some(s) = start.take() {
                words.push(Word { text: &sentence[s..i], at: s });
            }
            if single {
                words.push(Word { text: &sentence[i..i + 1], at: i });
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        words.push(Word { text: &sentence[s..], at: s });
    }
    words
}

/// The first words a sentence may start with.
const SUBJECTS: [&str; 8] = ["rule", "knob", "rollbacks", "resource", "rejections", "final", "loss", "no"];
/// The words that may follow the subject.
const QUALIFIERS: [&str; 3] = ["on", "before", "after"];

struct Parser<'a> {
    words: Vec<Word<'a>>,
    next: usize,
    end: usize,
    names: Vec<Name>,
}

type Parsed<T> = Result<T, ParseError>;

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Word<'a>> {
        self.words.get(self.next).copied()
    }

    fn error(&self, expected: &str, known: &[&str]) -> ParseError {
        match self.peek() {
            Some(word) => {
                let hint = if known.is_empty() {
                    String::new()
                } else {
                    let suggestion = metagov_config::suggestion(word.text, known);
                    if suggestion.starts_with("did you mean") {
                        format!("; {suggestion}")
                    } else {
                        String::new()
                    }
                };
                ParseError {
                    at: word.at,
                    message: format!("expected {expected} at `{}`{hint}", metagov_config::shorten(word.text, 40)),
                }
            }
            None => ParseError { at: self.end, message: format!("expected {expected}, but the sentence ends") },
        }
    }

    /// Takes the next word if it is `keyword`.
    fn eat(&mut self, keyword: &str) -> bool {
        if self.peek().is_some_and(|w| w.text == keyword) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, keyword: &str) -> Parsed<()> {
        if self.eat(keyword) {
            Ok(())
        } else {
            Err(self.error(&format!("`{keyword}`"), &[keyword]))
        }
    }

    /// Takes one of `keywords`, returning it.
    fn one_of(&mut self, keywords: &[&'static str]) -> Parsed<&'static str> {
        for &keyword in keywords {
            if self.eat(keyword) {
                return Ok(keyword);
            }
        }
        let list: Vec<String> = keywords.iter().map(|k| format!("`{k}`")).collect();
        Err(self.error(&format!("one of {}", list.join(", ")), keywords))
    }

    fn name(&mut self, kind: NameKind, what: &str) -> Parsed<String> {
        match self.peek() {
            Some(word) if !matches!(word.text, "[" | "]" | ",") => {
                self.next += 1;
                self.names.push(Name { kind, name: word.text.to_owned(), at: word.at });
                Ok(word.text.to_owned())
            }
            _ => Err(self.error(what, &[])),
        }
    }

    fn integer(&mut self, what: &str) -> Parsed<u64> {
        match self.peek().and_then(|w| w.text.parse::<u64>().ok()) {
            Some(n) => {
                self.next += 1;
                Ok(n)
            }
            None => Err(self.error(what, &[])),
        }
    }

    fn number(&mut self) -> Parsed<f64> {
        match self.peek().and_then(|w| w.text.parse::<f64>().ok()).filter(|x| x.is_finite()) {
            Some(x) => {
                self.next += 1;
                Ok(x)
            }
            None => Err(self.error("a finite number", &[])),
        }
    }

    /// `[A, B]` with `A <= B`.
    fn range(&mut self) -> Parsed<(f64, f64)> {
        self.expect("[")?;
        let at = self.peek().map_or(self.end, |w| w.at);
        let min = self.number()?;
        self.expect(",")?;
        let max = self.number()?;
        self.expect("]")?;
        if min > max {
            return Err(ParseError { at, message: format!("the range [{min}, {max}] is empty: {min} is above {max}") });
        }
        Ok((min, max))
    }

    /// `at least N`, `at most N`, `exactly N`, each with an optional
    /// `time`/`times`.
    fn bound(&mut self) -> Parsed<Bound> {
        let bound = match self.one_of(&["at", "exactly"])? {
            "at" => match self.one_of(&["least", "most"])? {
                "least" => Bound::AtLeast(self.integer("a count (a whole number)")?),
                _ => Bound::AtMost(self.integer("a count (a whole number)")?),
            },
            _ => Bound::Exactly(self.integer("a count (a whole number)")?),
        };
        let _ = self.eat("times") || self.eat("time");
        Ok(bound)
    }

    /// `with reason R`, if present.
    fn reason(&mut self, kind: NameKind) -> Parsed<Option<String>> {
        if !self.eat("with") {
            return Ok(None);
        }
        self.expect("reason")?;
        self.name(kind, "a reason code").map(Some)
    }

    /// `for memory pressure` / `for latency`, if present.
    fn hint_kind(&mut self) -> Parsed<HintKind> {
        if !self.eat("for") {
            return Ok(HintKind::Any);
        }
        match self.one_of(&["memory", "latency"])? {
            "memory" => {
                self.expect("pressure")?;
                Ok(HintKind::Memory)
            }
            _ => Ok(HintKind::Latency),
        }
    }

    /// A counted noun after `no` or before a bound: `rollbacks [with reason
    /// R]`, `resource hints [for …]`, `rejections [with reason R]`.
    fn counted_noun(&mut self, first: &str) -> Parsed<Counted> {
        Ok(match first {
            "rollbacks" => Counted::Rollbacks(self.reason(NameKind::RollbackReason)?),
            "rejections" => Counted::Rejections(self.reason(NameKind::RejectionReason)?),
            _ => {
                self.expect("hints")?;
                Counted::Hints(self.hint_kind()?)
            }
        })
    }

    fn subject(&mut self) -> Parsed<Check> {
        let first = self.one_of(&SUBJECTS)?;
        Ok(match first {
            "rule" => {
                let rule = self.name(NameKind::Rule, "a rule name")?;
                let what = Counted::RuleFires(rule);
                if self.eat("never") {
                    self.expect("fires")?;
                    Check::Count { what, bound: Bound::Exactly(0) }
                } else {
                    self.one_of(&["fires", "never"])?;
                    Check::Count { what, bound: self.bound()? }
                }
            }
            "knob" => {
                let knob = self.name(NameKind::Knob, "a knob name")?;
                match self.one_of(&["changes", "never", "stays", "at"])? {
                    "changes" => Check::Count { what: Counted::KnobChanges(knob), bound: self.bound()? },
                    "never" => {
                        self.expect("changes")?;
                        Check::Count { what: Counted::KnobChanges(knob), bound: Bound::Exactly(0) }
                    }
                    "stays" => {
                        self.expect("within")?;
                        let (min, max) = self.range()?;
                        Check::KnobWithin { knob, min, max }
                    }
                    _ => {
                        self.expect("window")?;
                        let window = self.integer("a window number")?;
                        self.expect("is")?;
                        self.expect("within")?;
                        let (min, max) = self.range()?;
                        Check::KnobAt { knob, window, min, max }
                    }
                }
            }
            "rollbacks" | "rejections" | "resource" => {
                let what = self.counted_noun(first)?;
                Check::Count { what, bound: self.bound()? }
            }
            "final" => {
                self.expect("loss")?;
                self.expect("is")?;
                self.expect("below")?;
                Check::FinalLossBelow { max: self.number()? }
            }
            "loss" => {
                self.expect("reaches")?;
                self.expect("the")?;
                self.expect("target")?;
                let by = if self.eat("by") {
                    self.expect("window")?;
                    Some(self.integer("a window number")?)
                } else {
                    None
                };
                Check::ReachesTarget { by }
            }
            _ => match self.one_of(&["rollbacks", "resource", "rejections", "divergence"])? {
                "divergence" => Check::NoDivergence,
                noun => Check::Count { what: self.counted_noun(noun)?, bound: Bound::Exactly(0) },
            },
        })
    }
}

/// Parses one expectation sentence.
///
/// # Errors
///
/// The first word the grammar does not take, with what it expected there.
pub fn parse(sentence: &str) -> Result<Expectation, ParseError> {
    let mut parser = Parser { words: words(sentence), next: 0, end: sentence.len(), names: Vec::new() };
    let check = parser.subject()?;
    let (mut job, mut windows) = (None, Windows::default());
    let window_bounds = matches!(
        check,
        Check::Count {
            what: Counted::RuleFires(_) | Counted::KnobChanges(_) | Counted::Rollbacks(_) | Counted::Hints(_),
            ..
        } | Check::KnobWithin { .. }
    );
    while let Some(word) = parser.peek() {
        match parser.one_of(&QUALIFIERS)? {
            "on" if job.is_none() => {
                parser.expect("job")?;
                let kind = if matches!(
                    check,
                    Check::FinalLossBelow { .. } | Check::ReachesTarget { .. } | Check::NoDivergence
                ) {
                    NameKind::ModelJob
                } else {
                    NameKind::Job
                };
                job = Some(parser.name(kind, "a job name")?);
            }
            keyword @ ("before" | "after") if window_bounds => {
                parser.expect("window")?;
                let window = parser.integer("a window number")?;
                let slot = if keyword == "before" { &mut windows.before } else { &mut windows.after };
                if slot.replace(window).is_some() {
                    return Err(ParseError { at: word.at, message: format!("`{keyword} window` is given twice") });
                }
            }
            "before" | "after" => {
                let why = match check {
                    Check::Count { what: Counted::Rejections(_), .. } => {
                        "rejections are counted over the whole run (a rejected packet need not carry a window)"
                    }
                    Check::KnobAt { .. } => "the sentence names its window already",
                    _ => "the training's loss and divergences are judged over the whole run",
                };
                return Err(ParseError { at: word.at, message: format!("`{}` does not apply here: {why}", word.text) });
            }
            _ => return Err(ParseError { at: word.at, message: "`on job` is given twice".into() }),
        }
    }
    if let (Some(after), Some(before)) = (windows.after, windows.before) {
        if after + 1 >= before {
            return Err(ParseError {
                at: 0,
                message: format!("no window is after window {after} and before window {before}"),
            });
        }
    }
    Ok(Expectation { text: sentence.to_owned(), check, job, windows, names: parser.names })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses() {
        let e = parse("rule plateau fires at least 1 time on job resnet before window 900").unwrap();
        assert_eq!(e.check, Check::Count { what: Counted::RuleFires("plateau".into()), bound: Bound::AtLeast(1) });
        assert_eq!(e.job.as_deref(), Some("resnet"));
        assert_eq!(e.windows, Windows { after: None, before: Some(900) });
        let e = parse("knob learning_rate stays within [1e-4, 0.3]").unwrap();
        assert_eq!(e.check, Check::KnobWithin { knob: "learning_rate".into(), min: 1e-4, max: 0.3 });
        let e = parse("rollbacks at most 2").unwrap();
        assert_eq!(e.check, Check::Count { what: Counted::Rollbacks(None), bound: Bound::AtMost(2) });
        let e = parse("no rejections with reason bad_id").unwrap();
        assert_eq!(
            e.check,
            Check::Count { what: Counted::Rejections(Some("bad_id".into())), bound: Bound::Exactly(0) }
        );
        let e = parse("resource hints for memory pressure exactly 3 times after window 10 before window 90").unwrap();
        assert_eq!(e.check, Check::Count { what: Counted::Hints(HintKind::Memory), bound: Bound::Exactly(3) });
        assert_eq!(e.windows, Windows { after: Some(10), before: Some(90) });
        let e = parse("knob batch_size at window 600 is within [64,128] on job bert-0").unwrap();
        assert_eq!(e.check, Check::KnobAt { knob: "batch_size".into(), window: 600, min: 64.0, max: 128.0 });
        assert_eq!(
            parse("rule exploding never fires").unwrap().check.clone(),
            Check::Count { what: Counted::RuleFires("exploding".into()), bound: Bound::Exactly(0) }
        );
        assert_eq!(parse("final loss is below 0.01").unwrap().check, Check::FinalLossBelow { max: 0.01 });
        assert_eq!(
            parse("loss reaches the target by window 400").unwrap().check,
            Check::ReachesTarget { by: Some(400) }
        );
        assert_eq!(parse("no divergence on job wav2vec").unwrap().check, Check::NoDivergence);
        assert_eq!(parse("no divergence on job wav2vec").unwrap().names[0].kind, NameKind::ModelJob);
    }

    /// docs/testing.md's examples are sentences the grammar takes.
    #[test]
    fn the_documented_examples_parse() {
        let doc = include_str!("../../docs/testing.md");
        let examples = doc.split("### Examples").nth(1).and_then(|rest| rest.split("```").nth(1)).unwrap();
        let lines: Vec<&str> = examples.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert!(lines.len() > 10, "{examples}");
        for line in lines {
            assert!(parse(line).is_ok(), "{line}: {:?}", parse(line));
        }
    }

    #[test]
    fn a_sentence_it_does_not_understand_names_the_word_and_what_was_expected() {
        let e = parse("rule plateau fire at least 1").unwrap_err();
        assert_eq!(e.at, 13);
        assert_eq!(e.message, "expected one of `fires`, `never` at `fire`; did you mean `fires`?");
        let e = parse("rule plateau fires at leats 1").unwrap_err();
        assert_eq!(e.message, "expected one of `least`, `most` at `leats`; did you mean `least`?");
        let e = parse("rollbacks at most").unwrap_err();
        assert_eq!((e.at, e.message.as_str()), (17, "expected a count (a whole number), but the sentence ends"));
        let e = parse("knob lr stays within [0.3, 0.1]").unwrap_err();
        assert_eq!(e.message, "the range [0.3, 0.1] is empty: 0.3 is above 0.1");
        let e = parse("no rejections before window 3").unwrap_err();
        assert!(e.message.starts_with("`before` does not apply here: rejections"), "{e:?}");
        let e = parse("rollbacks at most 2 on job a on job b").unwrap_err();
        assert_eq!(e.message, "`on job` is given twice");
        let e = parse("rollbacks at most 2 please").unwrap_err();
        assert_eq!(e.message, "expected one of `on`, `before`, `after` at `please`");
        let e = parse("rollbacks after window 5 before window 6 at most 1").unwrap_err();
        assert!(e.message.starts_with("expected one of `at`, `exactly`"), "{e:?}");
    }
}
