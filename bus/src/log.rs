//! The deterministic text log: a `tracing` layer that stamps every event with
//! the logical `(tick, seq)` and actor of the delivery being handled, and
//! never with a wall-clock time.
//!
//! The bus opens a `deliver` span (fields `tick`, `seq`, `actor`, `topic`)
//! around every handler call; events inside it are written as
//!
//! ```text
//! 12.3 validator INFO rejected packet reason=nan_metric
//! ```
//!
//! and events outside any delivery as `-.- - LEVEL message`. Lines come in
//! delivery order because the bus delivers one at a time, so the same run
//! gives the same bytes (seed 000: "Ordered Logging", "Fixed Timestamp Source").

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

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

/// The stamp of a `deliver` span, kept in the span's extensions.
struct Stamp(String);

/// Collects `key=value` pairs and the message of an event or span.
#[derive(Default)]
struct Fields {
    message: String,
    pairs: String,
    tick: Option<u64>,
    seq: Option<u64>,
    actor: Option<String>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "tick" => self.tick = Some(value),
            "seq" => self.seq = Some(value),
            name => {
                let _ = write!(self.pairs, " {name}={value}");
            }
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // Six decimals: the bus grid, so a value prints the same everywhere.
        let _ = write!(self.pairs, " {}={value:.6}", field.name());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "actor" => self.actor = Some(value.to_string()),
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
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: Write + Send + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "deliver" {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(tick), Some(seq), Some(actor), Some(span)) = (fields.tick, fields.seq, fields.actor, ctx.span(id))
        {
            span.extensions_mut().insert(Stamp(format!("{tick}.{seq} {actor}")));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let stamp = ctx
            .event_scope(event)
            .and_then(|scope| scope.from_root().find_map(|span| span.extensions().get::<Stamp>().map(|s| s.0.clone())))
            .unwrap_or_else(|| "-.- -".to_string());
        let line = format!("{stamp} {} {}{}\n", event.metadata().level(), fields.message, fields.pairs);
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(line.as_bytes());
        }
    }
}
