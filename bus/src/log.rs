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
//! gives the same bytes (seed 000: "Ordered Logging", "Fixed Timestamp Source").

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use crate::envelope::Name;

/// The `tracing` layer that writes the deterministic log to `W`.
pub struct DeterministicLog<W: Write + Send + 'static> {
    out: Mutex<W>,
}

impl<W: Write + Send + 'static> DeterministicLog<W> {
    /// A layer writing to `out`. Write errors are ignored by design: the log
    /// is for people, and the chronicle is the record.
    pub fn new(out: W) -> Self {
        DeterministicLog { out: Mutex::new(out) }
    }
}

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

impl<S, W> Layer<S> for DeterministicLog<W>
where
    S: Subscriber,
    W: Write + Send + 'static,
{
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let stamp = CURRENT.with(|c| match &*c.borrow() {
            Some((tick, seq, actor)) => format!("{tick}.{seq} {actor}"),
            None => "-.- -".to_string(),
        });
        let line = format!("{stamp} {} {}{}\n", event.metadata().level(), fields.message, fields.pairs);
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(line.as_bytes());
        }
    }
}
