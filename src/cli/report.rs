//! `metagov report RUN -o report.html`: one self-contained HTML page of a
//! run (docs/audit.md, "A report to look at"): the run's context and
//! integrity verdict, and per job its reward and smoothed reward over
//! windows and every knob's trajectory with each change marked — its
//! explanation, `explain`'s sentence, shown on hover — then the rejections
//! by reason, the resource hints, each domain's aggregation weight with the
//! domains dropped, and the prior's trajectory. Given another run of the
//! same telemetry, it overlays that run's rewards and knobs and marks each
//! job's first differing window, after which the comparison is open loop.
//!
//! It checks the chronicle (`verify_file`), then reads it once, front to
//! back (and a compared run once), and writes nothing but the
//! page: no script, no network, no external file; the plots are inline SVG
//! drawn here, and a long series is thinned to at most [`POINTS_MAX`]
//! points a line (every change mark is kept).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use anyhow::Result;
use metagov_actors::explain::{Cause, Explainer, KnobChange};
use metagov_actors::messages::{
    aggregate_from_value, prior_from_value, CROSS_AGGREGATE, META_REWARD, PRIOR_UPDATED, RESOURCE_HINT,
    TELEMETRY_REJECTED,
};
use metagov_bus::{OwnedEntry, Value};
use metagov_storage::RunReader;

use super::{export_records, open, recorded_config, verify_path, Escaped, Outcome, OutputFile};

/// Most points drawn for one line; longer series are thinned evenly.
pub const POINTS_MAX: usize = 2000;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 190.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 10.0;
const MARGIN_Y: f64 = 18.0;
const COLORS: [&str; 6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf"];

/// What the page shows of one job.
#[derive(Default)]
struct JobSeries {
    /// (window, reward, smoothed reward), one per admitted window.
    rewards: Vec<(u64, f64, f64)>,
    /// Every knob change, in order.
    changes: Vec<KnobChange>,
    /// Resource hints and the windows they came at, with their batch factor.
    hints: Vec<(u64, f64)>,
    /// The job's last window.
    last_window: u64,
}

/// Escapes text from the chronicle for HTML and SVG.
fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `points` thinned evenly to at most [`POINTS_MAX`], first and last kept.
fn thinned<T: Copy>(points: &[T]) -> Vec<T> {
    if points.len() <= POINTS_MAX {
        return points.to_vec();
    }
    let step = points.len() as f64 / (POINTS_MAX - 1) as f64;
    let mut out: Vec<T> = (0..POINTS_MAX - 1).map(|i| points[(i as f64 * step) as usize]).collect();
    out.push(points[points.len() - 1]);
    out
}

/// Short text of a number for an axis label.
fn label(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) {
        format!("{x:.2e}")
    } else {
        let text = format!("{x:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// One line of a chart: its name, color, points and whether it steps.
struct Line<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
    step: bool,
    /// Drawn dashed: the run compared against.
    dashed: bool,
}

/// A point marked on a chart, with its hover text.
struct Mark {
    x: f64,
    y: f64,
    color: &'static str,
    title: String,
}

/// An SVG line chart over windows. `log_y` plots log10 of positive values;
/// `from` draws a vertical line at an x with its hover text (where a
/// comparison of two runs turns open loop).
fn chart(
    title: &str,
    lines: &[Line<'_>],
    marks: &[Mark],
    x_max: f64,
    log_y: bool,
    from: Option<(f64, &str)>,
) -> String {
    let ys = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).chain(marks.iter().map(|m| m.y));
    let ys: Vec<f64> = ys.filter(|y| y.is_finite() && (!log_y || *y > 0.0)).collect();
    let (mut lo, mut hi) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &y| (lo.min(y), hi.max(y)));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let f = |y: f64| if log_y { y.log10() } else { y };
    let (flo, mut fhi) = (f(lo), f(hi));
    if fhi - flo < 1e-12 {
        fhi = flo + 1.0;
    }
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = HEIGHT - 2.0 * MARGIN_Y;
    let x_of = |x: f64| MARGIN_LEFT + plot_w * (x / x_max.max(1.0));
    let y_of = |y: f64| MARGIN_Y + plot_h * (1.0 - (f(y) - flo) / (fhi - flo));
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = html(title)
    );
    let _ = write!(
        svg,
        r##"<rect x="{MARGIN_LEFT}" y="{MARGIN_Y}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>"##
    );
    let scale = if log_y { " (log)" } else { "" };
    for (y, text) in [(MARGIN_Y + 4.0, label(hi)), (HEIGHT - MARGIN_Y, label(lo))] {
        let _ =
            write!(svg, r#"<text x="{}" y="{y}" font-size="10" text-anchor="end">{}</text>"#, MARGIN_LEFT - 4.0, text);
    }
    let _ = write!(
        svg,
        r#"<text x="{MARGIN_LEFT}" y="{}" font-size="10">window 0</text><text x="{}" y="{}" font-size="10" text-anchor="end">window {}</text><text x="4" y="12" font-size="11" font-weight="bold">{}{scale}</text>"#,
        HEIGHT - 4.0,
        WIDTH - MARGIN_RIGHT,
        HEIGHT - 4.0,
        x_max as u64,
        html(title)
    );
    for line in lines {
        let points: Vec<(f64, f64)> =
            thinned(&line.points).into_iter().filter(|p| p.1.is_finite() && (!log_y || p.1 > 0.0)).collect();
        let mut path = String::new();
        let mut previous: Option<(f64, f64)> = None;
        for (x, y) in points {
            let (px, py) = (x_of(x), y_of(y));
            match previous {
                None => {
                    let _ = write!(path, "M{px:.1},{py:.1}");
                }
                Some((_, prev_y)) if line.step => {
                    let _ = write!(path, " L{px:.1},{prev_y:.1} L{px:.1},{py:.1}");
                }
                Some(_) => {
                    let _ = write!(path, " L{px:.1},{py:.1}");
                }
            }
            previous = Some((px, py));
        }
        if let (true, Some((_, py))) = (line.step, previous) {
            let _ = write!(path, " L{:.1},{py:.1}", x_of(x_max));
        }
        let dash = if line.dashed { r#" stroke-dasharray="5,3""# } else { "" };
        let _ = write!(
            svg,
            r#"<path d="{path}" fill="none" stroke="{}" stroke-width="1.3"{dash}><title>{}</title></path>"#,
            line.color,
            html(line.name)
        );
    }
    if let Some((x, text)) = from {
        let x = x_of(x);
        let _ = write!(
            svg,
            r##"<line class="open-loop" x1="{x:.1}" y1="{MARGIN_Y}" x2="{x:.1}" y2="{}" stroke="#d62728" stroke-dasharray="2,2"><title>{}</title></line>"##,
            HEIGHT - MARGIN_Y,
            html(text)
        );
    }
    for mark in marks.iter().filter(|m| m.y.is_finite() && (!log_y || m.y > 0.0)) {
        let _ = write!(
            svg,
            r#"<circle class="mark" cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}</title></circle>"#,
            x_of(mark.x),
            y_of(mark.y),
            mark.color,
            html(&mark.title)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The color and hover text of a knob change's mark.
fn change_mark(change: &KnobChange) -> Mark {
    let color = match change.cause {
        Cause::Rollback(_) => "#d62728",
        Cause::Start => "#7f7f7f",
        Cause::Rules(_) => "#000000",
    };
    Mark { x: change.window as f64, y: change.to, color, title: change.to_string() }
}

/// What the page draws of one run, read in one pass.
#[derive(Default)]
struct RunSeries {
    jobs: BTreeMap<String, JobSeries>,
    rejections: BTreeMap<String, u64>,
    /// (tick, prior by knob, rolled back).
    priors: Vec<(u64, BTreeMap<String, f64>, bool)>,
    /// Each domain's aggregation weight over ticks.
    weights: BTreeMap<String, Vec<(f64, f64)>>,
    /// Drops by (domain, reason).
    drops: BTreeMap<(String, String), u64>,
    last_aggregate: u64,
    /// The decisions by window, for a comparison with another run.
    decisions: metagov_actors::explain::Decisions,
}

/// Reads the series of the run in `reader` (recorded under `config`), with
/// the file's verdict.
fn read_run(file: &Path, reader: &RunReader, config: &metagov_config::Config) -> Result<(RunSeries, Outcome)> {
    let mut explainer = Explainer::new(config);
    let mut run = RunSeries::default();
    let RunSeries { jobs, rejections, priors, weights, drops, last_aggregate, decisions } = &mut run;
    let outcome = export_records(file, reader, |entry| {
        let OwnedEntry::Delivery(d) = entry else { return Ok(()) };
        super::counterfactual::observe(decisions, &metagov_bus::Egress::of_delivery(&d));
        let job = d.payload.get("job").and_then(Value::as_str).map(str::to_owned);
        let window = d.payload.get("window").and_then(Value::as_u64);
        for change in explainer.observe(&d) {
            jobs.entry(change.job.clone()).or_default().changes.push(change);
        }
        match &*d.topic {
            t if t == META_REWARD => {
                let num = |key: &str| d.payload.get(key).and_then(Value::as_f64);
                if let (Some(job), Some(window), Some(reward), Some(ema)) =
                    (job, window, num("reward"), num("ema_reward"))
                {
                    let series = jobs.entry(job).or_default();
                    series.rewards.push((window, reward, ema));
                    series.last_window = series.last_window.max(window);
                }
            }
            t if t == RESOURCE_HINT => {
                let scale = d.payload.get("batch_scale").and_then(Value::as_f64);
                if let (Some(job), Some(window), Some(scale)) = (job, window, scale) {
                    jobs.entry(job).or_default().hints.push((window, scale));
                }
            }
            t if t == TELEMETRY_REJECTED => {
                let reason = d.payload.get("reason").and_then(Value::as_str).unwrap_or("?");
                *rejections.entry(reason.to_owned()).or_default() += 1;
            }
            t if t == CROSS_AGGREGATE => {
                if let Ok(aggregate) = aggregate_from_value(&d.payload) {
                    for (domain, weight) in aggregate.weights {
                        weights.entry(domain).or_default().push((d.tick as f64, weight));
                    }
                    for dropped in aggregate.dropped {
                        *drops.entry(dropped).or_default() += 1;
                    }
                    *last_aggregate = d.tick;
                }
            }
            t if t == PRIOR_UPDATED => {
                if let Ok(prior) = prior_from_value(&d.payload) {
                    priors.push((d.tick, prior.prior, prior.rolled_back));
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok((run, outcome))
}

/// The run a report is compared with: its series, and where its decisions
/// first differ from the reported run's.
struct Against {
    file: std::path::PathBuf,
    series: RunSeries,
    /// Each job's first window whose decision differs.
    first_window: BTreeMap<String, u64>,
    /// One sentence: where the comparison is exact and where open loop.
    summary: String,
    /// The compared file's verdict, as `export_records` gave it.
    outcome: Outcome,
}

/// Reads `path` (a run of the same telemetry, e.g. from `replay --simulate`)
/// and diffs its decisions with `ours`, as `metagov diff` does.
fn read_against(ours: &metagov_actors::explain::Decisions, path: &Path) -> Result<Against> {
    let path = path.to_path_buf();
    let reader = open(&path)?;
    let config = recorded_config(&path, &reader)?;
    let (series, outcome) = read_run(&path, &reader, &config)?;
    let diff = metagov_actors::explain::diff(ours, &series.decisions);
    let mut first_window = BTreeMap::new();
    for (job, window, _, _) in &diff.lines {
        first_window.entry(job.clone()).or_insert(*window);
    }
    let summary = match diff.first_tick {
        None => format!("the decisions are identical in all {} windows", diff.windows),
        Some(tick) => format!(
            "decisions are exact up to tick {tick} ({} of {} windows) and open loop after it: the recorded telemetry \
             did not react to the other run's decisions. The red dotted line marks each job's first differing window.",
            diff.exact_windows, diff.windows
        ),
    };
    Ok(Against { file: path, series, first_window, summary, outcome })
}

/// `metagov report`: checks `file`, reads it once (and `against`, another
/// run of the same telemetry, when given) and writes the page to `output`.
pub fn report(file: &Path, against: Option<&Path>, output: &Path, out: &mut dyn Write) -> Result<Outcome> {
    let integrity = verify_path(file)?.total;
    let reader = open(file)?;
    let config = recorded_config(file, &reader)?;
    let initial = config.initial_knobs();
    let (run, outcome) = read_run(file, &reader, &config)?;
    let other = against.map(|path| read_against(&run.decisions, path)).transpose()?;
    let RunSeries { jobs, rejections, priors, weights, drops, last_aggregate, .. } = run;
    let context = reader.context();
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>metagov run {run}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;max-width:800px;color:#222}}h2{{margin-top:1.6em;border-bottom:1px solid #ddd}}table{{border-collapse:collapse}}td,th{{padding:2px 10px 2px 0;text-align:left;font-size:13px}}.chart{{display:block;margin:6px 0}}code{{font-size:12px}}</style>
</head><body>
<h1>metagov run</h1>
<table id="context">
<tr><th>file</th><td><code>{file}</code></td></tr>
<tr><th>integrity</th><td>{status} — {frames} frames, {records} records, chain head <code>{head}</code></td></tr>
<tr><th>run id</th><td><code>{run}</code></td></tr>
<tr><th>seed</th><td>{seed}</td></tr>
<tr><th>config sha256</th><td><code>{config}</code></td></tr>
<tr><th>environment</th><td>{env}</td></tr>
<tr><th>producer</th><td>{producer}, chronicle format version {version}</td></tr>
</table>
<p>Marks on a knob's line are its changes: black a rule, red a rollback, grey the job's governed start value; hover one for <code>metagov explain</code>'s sentence.</p>
"#,
        run = html(&context.run_id),
        file = html(&file.display().to_string()),
        status = html(&integrity.status.to_string()),
        frames = integrity.frames,
        records = integrity.records,
        head = html(&integrity.chain_head),
        seed = context.seed,
        config = html(&context.config_sha256),
        env = html(&context.environment.to_string()),
        producer = html(&context.producer),
        version = reader.version(),
    );
    if let Some(other) = &other {
        let _ = write!(
            page,
            r#"<p id="against">Compared with <code>{}</code> (dashed lines, orange marks): {}</p>"#,
            html(&other.file.display().to_string()),
            html(&other.summary)
        );
    }
    let mut changes_drawn = 0;
    for (job, series) in &jobs {
        let theirs = other.as_ref().and_then(|o| o.series.jobs.get(job));
        let from = other
            .as_ref()
            .and_then(|o| o.first_window.get(job))
            .map(|&w| (w as f64, format!("window {w}: the first decision that differs; open loop after it")));
        let from = from.as_ref().map(|(x, text)| (*x, text.as_str()));
        let x_max = theirs.map_or(series.last_window, |t| t.last_window.max(series.last_window)) as f64;
        let _ = write!(page, r#"<h2 class="job">job {}</h2>"#, html(job));
        let ema = |series: &JobSeries| series.rewards.iter().map(|r| (r.0 as f64, r.2)).collect();
        let mut rewards = vec![
            Line {
                name: "reward",
                color: "#aec7e8",
                points: series.rewards.iter().map(|r| (r.0 as f64, r.1)).collect(),
                step: false,
                dashed: false,
            },
            Line { name: "smoothed reward", color: COLORS[0], points: ema(series), step: false, dashed: false },
        ];
        if let Some(theirs) = theirs {
            let name = "smoothed reward, compared run";
            rewards.push(Line { name, color: COLORS[1], points: ema(theirs), step: false, dashed: true });
        }
        page.push_str(&chart(&format!("{job}: reward and smoothed reward"), &rewards, &[], x_max, false, from));
        for (i, (knob, start)) in initial.iter().enumerate() {
            let trajectory = |series: &JobSeries| -> (Vec<(f64, f64)>, Vec<Mark>) {
                let changes: Vec<&KnobChange> = series.changes.iter().filter(|c| &c.knob == knob).collect();
                let mut points = vec![(0.0, changes.first().map_or(*start, |c| c.from))];
                points.extend(changes.iter().map(|c| (c.window as f64, c.to)));
                (points, changes.iter().map(|c| change_mark(c)).collect())
            };
            let (points, mut marks) = trajectory(series);
            changes_drawn += marks.len();
            let color = COLORS[(i + 1) % COLORS.len()];
            let mut lines = vec![Line { name: knob, color, points, step: true, dashed: false }];
            let title = format!("{job}: {knob} ({} changes)", marks.len());
            if let Some(theirs) = theirs {
                let (points, their_marks) = trajectory(theirs);
                marks.extend(their_marks.into_iter().map(|m| Mark { color: "#ff7f0e", ..m }));
                lines.push(Line { name: "compared run", color: COLORS[1], points, step: true, dashed: true });
            }
            let all = lines.iter().flat_map(|l| l.points.iter());
            let positive = all.clone().all(|p| p.1 > 0.0);
            let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
            page.push_str(&chart(&title, &lines, &marks, x_max, positive && hi > 10.0 * lo, from));
        }
        if !series.hints.is_empty() {
            let line = Line {
                name: "batch_scale",
                color: COLORS[3],
                points: series.hints.iter().map(|h| (h.0 as f64, h.1)).collect(),
                step: false,
                dashed: false,
            };
            let title = format!("{job}: resource hints, batch_scale ({} hints)", series.hints.len());
            page.push_str(&chart(&title, &[line], &[], x_max, false, None));
        }
    }
    page.push_str(r#"<h2>rejections by reason</h2><table id="rejections">"#);
    if rejections.is_empty() {
        page.push_str("<tr><td>none</td></tr>");
    }
    for (reason, count) in &rejections {
        let _ = write!(page, "<tr><td><code>{}</code></td><td>{count}</td></tr>", html(reason));
    }
    page.push_str("</table>");
    if !weights.is_empty() {
        let lines: Vec<Line<'_>> = weights
            .iter()
            .enumerate()
            .map(|(i, (domain, points))| Line {
                name: domain,
                color: COLORS[i % COLORS.len()],
                points: points.clone(),
                step: false,
                dashed: false,
            })
            .collect();
        let names: Vec<String> = weights.keys().map(|d| html(d)).collect();
        let _ = write!(
            page,
            "<h2>the cross-domain aggregator</h2><p>Each domain's weight in the aggregate over ticks: {}.</p>",
            names.join(", ")
        );
        page.push_str(&chart(
            "aggregation weight by domain, over ticks",
            &lines,
            &[],
            last_aggregate as f64,
            false,
            None,
        ));
        page.push_str(r#"<table id="dropped"><tr><th>dropped domain</th><th>reason</th><th>times</th></tr>"#);
        if drops.is_empty() {
            page.push_str("<tr><td>none</td></tr>");
        }
        for ((domain, reason), count) in &drops {
            let _ = write!(
                page,
                "<tr><td>{}</td><td><code>{}</code></td><td>{count}</td></tr>",
                html(domain),
                html(reason)
            );
        }
        page.push_str("</table>");
    }
    if let Some(last_tick) = priors.last().map(|p| p.0) {
        let keys: Vec<&String> = priors.last().map(|p| p.1.keys().collect()).unwrap_or_default();
        let lines: Vec<Line<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| Line {
                name: key,
                color: COLORS[i % COLORS.len()],
                points: priors.iter().filter_map(|p| Some((p.0 as f64, *p.1.get(*key)?))).collect(),
                step: true,
                dashed: false,
            })
            .collect();
        let marks: Vec<Mark> = priors
            .iter()
            .filter(|p| p.2)
            .filter_map(|p| {
                let key = keys.first()?;
                Some(Mark {
                    x: p.0 as f64,
                    y: *p.1.get(*key)?,
                    color: "#d62728",
                    title: format!("tick {}: prior rolled back", p.0),
                })
            })
            .collect();
        let _ = write!(
            page,
            "<h2>the Reptile prior</h2><p>{} updates, {} rollbacks; x is the tick here.</p>",
            priors.len(),
            marks.len()
        );
        page.push_str(&chart("prior over ticks", &lines, &marks, last_tick as f64, false, None));
    }
    page.push_str("</body></html>\n");

    let mut file_out = OutputFile::create(file, output)?;
    file_out.writer().write_all(page.as_bytes())?;
    file_out.commit()?;
    writeln!(
        out,
        "report       {} ({} jobs, {changes_drawn} knob changes marked, {} bytes)",
        Escaped(output.display()),
        jobs.len(),
        page.len()
    )?;
    // A damaged compared run fails the command as a damaged reported one does.
    Ok(if other.is_some_and(|o| o.outcome == Outcome::Failure) { Outcome::Failure } else { outcome })
}
