//! The deterministic text log: a `tracing` layer that stamps every event with
//! the logical `(tick, seq)` and actor of the delivery being handled, and
//! never with a wall-clock time.
//!
//! The bus stamps the thread with the delivery being handled (`tick`, `seq`,
//! actor) around every handler call — a thread-local, cheaper than a span per
//! delivery — and events raised meanwhile are written as
//!
//! ```text
//! 12.3 validator INFO rejected packet reason=nan_metric
//! ```
//!
//! and events outside any delivery as `-.- - LEVEL message`. Lines come in
//! delivery order because the bus delivers one at a time, so the same run
//! gives the same bytes: no wall clock, only the logical `tick.seq`.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use crate::envelope::Name;

/// Writes the deterministic log of everything `run` does on this thread to
/// `out` (flushed and dropped when `run` returns), and returns what `run`
/// returns.
///
/// The log layer is installed once as the process's global `tracing`
/// subscriber and writes each event to the sink of the thread that raised
/// it. A global subscriber matters: with per-thread (scoped) subscribers,
/// `tracing` caches callsite interest process-wide, and events can be lost
/// while another thread has no subscriber, so two identical runs could log
/// differently. If the process already has another global subscriber, the
/// layer falls back to a scoped one for `run`.
pub fn capture<R>(out: impl Write + 'static, run: impl FnOnce() -> R) -> R {
    INSTALL.call_once(|| {
        let global = tracing_subscriber::registry().with(DeterministicLog);
        INSTALLED.store(tracing::subscriber::set_global_default(global).is_ok(), Ordering::SeqCst);
    });
    let previous = SINK.with(|sink| sink.replace(Some(Box::new(out))));
    let result = if INSTALLED.load(Ordering::SeqCst) {
        run()
    } else {
        tracing::subscriber::with_default(tracing_subscriber::registry().with(DeterministicLog), run)
    };
    let ours = SINK.with(|sink| sink.replace(previous));
    if let Some(mut out) = ours {
        let _ = out.flush();
    }
    result
}

static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the deterministic log layer together with `human` (for
/// instance a terminal formatter with wall-clock times) as the process's
/// global `tracing` subscriber, so one process can log for people and keep a
/// deterministic log at once: events go to `human` always, and also to the
/// sink of a thread inside [`capture`]. Call it before any `capture`; it
/// returns `false` (and installs nothing) when a global subscriber exists
/// already.
pub fn install_with<L>(human: L) -> bool
where
    L: Layer<tracing_subscriber::layer::Layered<DeterministicLog, tracing_subscriber::Registry>> + Send + Sync,
{
    let mut installed = false;
    INSTALL.call_once(|| {
        let global = tracing_subscriber::registry().with(DeterministicLog).with(human);
        installed = tracing::subscriber::set_global_default(global).is_ok();
        INSTALLED.store(installed, Ordering::SeqCst);
    });
    installed
}

thread_local! {
    /// Where this thread's log lines go while [`capture`] runs.
    static SINK: RefCell<Option<Box<dyn Write>>> = const { RefCell::new(None) };
}

/// The `tracing` layer that formats events and hands them to the current
/// thread's sink. Write errors are ignored by design: the log is for people,
/// and the chronicle is the record.
pub struct DeterministicLog;

/// The delivery a thread is handling, set by the bus around each handler
/// call and read by the log layer.
pub(crate) struct Stamp {
    previous: Option<(u64, u64, Name)>,
}

thread_local! {
    static CURRENT: RefCell<Option<(u64, u64, Name)>> = const { RefCell::new(None) };
}

impl Stamp {
    /// Marks the thread as handling delivery `(tick, seq)` to `actor` until
    /// the returned guard drops.
    pub(crate) fn enter(tick: u64, seq: u64, actor: &Name) -> Stamp {
        let previous = CURRENT.with(|c| c.replace(Some((tick, seq, actor.clone()))));
        Stamp { previous }
    }
}

impl Drop for Stamp {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Collects `key=value` pairs and the message of an event.
#[derive(Default)]
struct Fields {
    message: String,
    pairs: String,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        let _ = write!(self.pairs, " {}={value}", field.name());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // Six decimals: the bus grid, so a value prints the same everywhere.
        let _ = write!(self.pairs, " {}={value:.6}", field.name());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            name => {
                let _ = write!(self.pairs, " {name}={value}");
            }
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.pairs, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for DeterministicLog {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if !SINK.with(|sink| sink.borrow().is_some()) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let stamp = CURRENT.with(|c| match &*c.borrow() {
            Some((tick, seq, actor)) => format!("{tick}.{seq} {actor}"),
            None => "-.- -".to_string(),
        });
        let line = format!("{stamp} {} {}{}\n", event.metadata().level(), fields.message, fields.pairs);
        SINK.with(|sink| {
            if let Some(out) = sink.borrow_mut().as_mut() {
                let _ = out.write_all(line.as_bytes());
            }
        });
    }
}
