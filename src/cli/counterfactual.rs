//! `metagov replay --simulate --config OTHER.toml`, `metagov replay
//! --inspect --tick T` and `metagov diff A B`: a run's recorded ingress
//! re-executed under another config or up to a tick, and the decisions of
//! two runs compared window by window. Reading and comparing
//! decisions is `metagov_actors::explain`'s; this module opens the files,
//! writes the new run and prints.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use metagov_actors::explain::{diff, Decision, DecisionDiff, Decisions};
use metagov_actors::messages::{META_REWARD, POLICY_UPDATE};
use metagov_actors::{MetaSupervisor, Output, ACTOR_NAMES};
use metagov_bus::{Egress, OwnedEntry, Value, INGRESS};
use metagov_config::Config;
use metagov_storage::{init_session, ChronicleWriter, RunReader, WriterOptions};

use super::{open, Escaped, Outcome};

/// Takes one publish into `decisions` if it is one they keep: a
/// `policy.update`, or the `meta.reward` that marks an admitted window.
pub(super) fn observe(decisions: &mut Decisions, message: &Egress) {
    if *message.topic == *META_REWARD {
        let job = message.payload.get("job").and_then(Value::as_str).unwrap_or_default();
        let window = message.payload.get("window").and_then(Value::as_f64).unwrap_or(0.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "windows are small integers")]
        decisions.window(job, window as u64, message.tick);
    } else if *message.topic == *POLICY_UPDATE {
        if let Ok(Output::PolicyUpdate(update)) = Output::from_egress(message) {
            decisions.update(message.tick, &update);
        }
    }
}

/// The decisions recorded in `reader`'s whole frames.
pub(super) fn decisions(file: &Path, reader: &RunReader) -> Result<Decisions> {
    let mut decisions = Decisions::default();
    for entry in reader.records() {
        let entry = entry.with_context(|| format!("cannot read {}", Escaped(file.display())))?;
        if let OwnedEntry::Delivery(d) = entry {
            observe(&mut decisions, &Egress::of_delivery(&d));
        }
    }
    Ok(decisions)
}

fn describe(decision: Option<&Decision>) -> String {
    decision.map_or_else(
        || "—".to_owned(),
        |d| {
            let knobs: Vec<String> = d.knobs.iter().map(|(k, v)| format!("{k} {v}")).collect();
            format!("{} ({})", knobs.join(", "), d.why.join(", "))
        },
    )
}

fn print_diff(result: &DecisionDiff, out: &mut dyn Write) -> Result<()> {
    match result.first_tick {
        None => writeln!(out, "decisions: identical in all {} windows", result.windows)?,
        Some(tick) => {
            #[allow(clippy::cast_precision_loss, reason = "window counts far below 2^53")]
            let share = 100.0 * result.exact_windows as f64 / result.windows.max(1) as f64;
            writeln!(
                out,
                "decisions: exact up to tick {tick} ({} of {} windows, {share:.1} %); after it the telemetry is the \
                 recorded one, which did not react to the other decisions: every later line is open loop",
                result.exact_windows, result.windows
            )?;
        }
    }
    if !result.lines.is_empty() {
        writeln!(out, "\n{:<16} {:>8}  {:<48} second run", "job", "window", "first run")?;
    }
    for (i, (job, window, a, b)) in result.lines.iter().enumerate() {
        let open_loop = if i > 0 { "  [open loop]" } else { "" };
        writeln!(
            out,
            "{:<16} {window:>8}  {:<48} {}{open_loop}",
            Escaped(job).to_string(),
            describe(a.as_ref()),
            describe(b.as_ref())
        )?;
    }
    Ok(())
}

/// `metagov replay FILE --simulate --config OTHER --out DIR`: re-executes
/// the recorded ingress of `file` under `config` into a new chronicle in
/// `out_dir` (with `replayed-from.json` naming the source run), never
/// writing to the original, and prints the decision diff.
///
/// # Errors
///
/// If the files cannot be read or written, `out_dir` holds a run, or the
/// new run stops.
pub fn replay_simulate(file: &Path, config: Config, out_dir: &Path, out: &mut dyn Write) -> Result<Outcome> {
    let reader = open(file)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", Escaped(out_dir.display())))?;
    let chronicle = out_dir.join("run.cmeta");
    anyhow::ensure!(!chronicle.exists(), "{} holds a run already: choose another --out", Escaped(out_dir.display()));
    let actors = ACTOR_NAMES.iter().map(|a| a.to_string()).collect();
    let context = init_session(config.run.seed, &config.canonical_toml(), actors);
    let writer = ChronicleWriter::create(&chronicle, &context, WriterOptions::from(&config.chronicle))
        .with_context(|| format!("cannot create {}", Escaped(chronicle.display())))?;
    let mut bus = MetaSupervisor::build(&config, writer)?;
    let mut packets = 0u64;
    // One pass: the recorded decisions are read as the ingress is re-run,
    // and the new run's are taken from its egress, so neither file is read
    // again.
    let (mut recorded, mut counterfactual) = (Decisions::default(), Decisions::default());
    for entry in reader.records() {
        let entry = entry.with_context(|| format!("cannot read {}", Escaped(file.display())))?;
        let OwnedEntry::Delivery(d) = entry else { continue };
        if *d.from != *INGRESS {
            observe(&mut recorded, &Egress::of_delivery(&d));
            continue;
        }
        packets += 1;
        bus.ingress(&d.topic, d.payload)
            .with_context(|| format!("the counterfactual run stopped at packet {packets}"))?;
        bus.egress().iter().for_each(|message| observe(&mut counterfactual, message));
    }
    let sealed = bus.into_journal().seal().context("cannot seal the counterfactual chronicle")?;
    let sealed =
        sealed.into_inner().map_err(|e| e.into_error()).context("cannot flush the counterfactual chronicle")?;
    sealed.sync_all().context("cannot sync the counterfactual chronicle")?;
    let source = serde_json::json!({
        "replayed_from": file.display().to_string(),
        "run_id": reader.context().run_id,
        "config_sha256": reader.context().config_sha256,
        "packets": packets,
    });
    let origin = out_dir.join("replayed-from.json");
    std::fs::write(&origin, format!("{source}\n"))
        .with_context(|| format!("cannot write {}", Escaped(origin.display())))?;
    writeln!(
        out,
        "replayed {packets} ingress packets of {} under config {}: {}",
        Escaped(file.display()),
        &context.config_sha256[..12],
        Escaped(chronicle.display())
    )?;
    print_diff(&diff(&recorded, &counterfactual), out)?;
    Ok(Outcome::Success)
}

/// `metagov diff A B`: the decisions of two runs compared window by window.
///
/// # Errors
///
/// If either file cannot be read.
pub fn diff_runs(a: &Path, b: &Path, out: &mut dyn Write) -> Result<Outcome> {
    let (ra, rb) = (open(a)?, open(b)?);
    print_diff(&diff(&decisions(a, &ra)?, &decisions(b, &rb)?), out)?;
    Ok(Outcome::Success)
}

/// `metagov replay FILE --inspect --tick T`: rebuilds the recorded actor set
/// from the recorded config, re-injects the recorded ingress up to tick `T`,
/// and prints every actor's state after it (each job's knobs, smoothed
/// reward and its best, streaks and cooldowns; each domain's estimate; the
/// aggregator's buffer; the prior and its checkpoint ring), as JSON.
///
/// # Errors
///
/// If the file cannot be read, its actor set is not the governance set, or
/// the re-execution stops.
pub fn replay_inspect(file: &Path, tick: u64, out: &mut dyn Write) -> Result<Outcome> {
    let reader = open(file)?;
    let ctx = reader.context();
    anyhow::ensure!(
        ctx.actors == ACTOR_NAMES,
        "{} records the actor set {:?}, not the governance actors: nothing to inspect",
        Escaped(file.display()),
        ctx.actors
    );
    let config = super::recorded_config(file, &reader)?;
    let mut bus = MetaSupervisor::build(&config, metagov_bus::NoJournal)?;
    let mut last = 0;
    for entry in reader.records() {
        let entry = entry.with_context(|| format!("cannot read {}", Escaped(file.display())))?;
        let OwnedEntry::Delivery(d) = entry else { continue };
        if *d.from != *INGRESS {
            continue;
        }
        if d.tick > tick {
            break;
        }
        bus.ingress(&d.topic, d.payload).with_context(|| format!("the replay stopped at tick {}", d.tick))?;
        last = d.tick;
    }
    anyhow::ensure!(
        last == tick,
        "{} has no ingress at tick {tick} (its last before it is {last})",
        Escaped(file.display())
    );
    writeln!(out, "state after tick {tick} of {}", Escaped(file.display()))?;
    for (actor, state) in bus.actor_states() {
        let json = serde_json::to_string_pretty(&state.to_json()).context("cannot render a state")?;
        writeln!(out, "\n{actor}: {json}")?;
    }
    Ok(Outcome::Success)
}
