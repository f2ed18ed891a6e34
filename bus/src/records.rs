//! Records that actors emit besides messages: governance cycle records
//! (`CycleRecord`) and meta frames (`MetaFrame`).
//!
//! Both convert to and from a [`Value`] so the journal stores them with the
//! same delta encoding as payloads.

use crate::value::{Fixed, Value};

/// One governance cycle, as `CycleRecord`. Real numbers are on the
/// 1e-6 grid (as [`Fixed`]).
#[derive(Clone, Debug, PartialEq)]
pub struct CycleRecord {
    /// Logical tick the cycle ended at.
    pub tick: u64,
    /// Phase label: `train`, `validate`, ...
    pub phase: String,
    /// Diagnostics snapshot: a record of named numbers.
    pub diagnostics: Value,
    /// A 3-value signature of the state.
    pub signature: [Fixed; 3],
    /// Loss at the end of the cycle.
    pub loss: Fixed,
    /// Coherence, in metagov the normalised aggregation entropy.
    pub coherence: Fixed,
    /// The action taken, if any.
    pub action_code: Option<u8>,
    /// RNG state to restore for replay (the emitting actor's stream position).
    pub seed_state: u64,
}

/// One meta frame (`MetaFrame`) without its run context, which the
/// chronicle header holds once for the whole run.
#[derive(Clone, Debug, PartialEq)]
pub struct MetaFrame {
    /// Cycle number.
    pub cycle_id: u64,
    /// Logical tick.
    pub tick: u64,
    /// The subsystem that produced it (an actor name).
    pub module: String,
    /// Diagnostics snapshot.
    pub diagnostics: Value,
    /// Seed of the module's RNG stream.
    pub rng_seed: u64,
    /// Phase label.
    pub phase: String,
}

/// A record value did not have the expected shape.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: field `{field}` is missing or has the wrong type")]
pub struct ShapeError {
    /// The record kind being decoded.
    pub kind: &'static str,
    /// The offending field.
    pub field: &'static str,
}

fn field<'a>(v: &'a Value, kind: &'static str, field: &'static str) -> Result<&'a Value, ShapeError> {
    v.get(field).ok_or(ShapeError { kind, field })
}

fn fixed(v: &Value, kind: &'static str, name: &'static str) -> Result<Fixed, ShapeError> {
    match field(v, kind, name)? {
        Value::Fixed(x) => Ok(*x),
        _ => Err(ShapeError { kind, field: name }),
    }
}

fn text(v: &Value, kind: &'static str, name: &'static str) -> Result<String, ShapeError> {
    match field(v, kind, name)? {
        Value::Text(s) => Ok(s.clone()),
        _ => Err(ShapeError { kind, field: name }),
    }
}

/// `u64` values are stored as `Int` by reinterpreting the bits, so seeds and
/// stream positions above `i64::MAX` survive.
fn bits(x: u64) -> Value {
    Value::Int(x as i64)
}

fn unbits(v: &Value, kind: &'static str, name: &'static str) -> Result<u64, ShapeError> {
    match field(v, kind, name)? {
        Value::Int(i) => Ok(*i as u64),
        _ => Err(ShapeError { kind, field: name }),
    }
}

impl CycleRecord {
    const KIND: &'static str = "cycle";

    /// The record as a value, fields in declaration order.
    pub fn to_value(&self) -> Value {
        Value::Record(vec![
            ("tick".into(), bits(self.tick)),
            ("phase".into(), Value::Text(self.phase.clone())),
            ("diagnostics".into(), self.diagnostics.clone()),
            ("signature".into(), Value::List(self.signature.iter().map(|&x| Value::Fixed(x)).collect())),
            ("loss".into(), Value::Fixed(self.loss)),
            ("coherence".into(), Value::Fixed(self.coherence)),
            ("action_code".into(), self.action_code.map_or(Value::Int(-1), |c| Value::Int(c.into()))),
            ("seed_state".into(), bits(self.seed_state)),
        ])
    }

    /// Reads a value written by [`CycleRecord::to_value`].
    pub fn from_value(v: &Value) -> Result<CycleRecord, ShapeError> {
        let k = Self::KIND;
        let signature = match field(v, k, "signature")? {
            Value::List(items) if items.len() == 3 => {
                let mut out = [Fixed::ZERO; 3];
                for (slot, item) in out.iter_mut().zip(items) {
                    *slot = match item {
                        Value::Fixed(x) => *x,
                        _ => return Err(ShapeError { kind: k, field: "signature" }),
                    };
                }
                out
            }
            _ => return Err(ShapeError { kind: k, field: "signature" }),
        };
        let action_code = match field(v, k, "action_code")? {
            Value::Int(-1) => None,
            Value::Int(c) => Some(u8::try_from(*c).map_err(|_| ShapeError { kind: k, field: "action_code" })?),
            _ => return Err(ShapeError { kind: k, field: "action_code" }),
        };
        Ok(CycleRecord {
            tick: unbits(v, k, "tick")?,
            phase: text(v, k, "phase")?,
            diagnostics: field(v, k, "diagnostics")?.clone(),
            signature,
            loss: fixed(v, k, "loss")?,
            coherence: fixed(v, k, "coherence")?,
            action_code,
            seed_state: unbits(v, k, "seed_state")?,
        })
    }
}

impl MetaFrame {
    const KIND: &'static str = "meta_frame";

    /// The frame as a value, fields in declaration order.
    pub fn to_value(&self) -> Value {
        Value::Record(vec![
            ("cycle_id".into(), bits(self.cycle_id)),
            ("tick".into(), bits(self.tick)),
            ("module".into(), Value::Text(self.module.clone())),
            ("diagnostics".into(), self.diagnostics.clone()),
            ("rng_seed".into(), bits(self.rng_seed)),
            ("phase".into(), Value::Text(self.phase.clone())),
        ])
    }

    /// Reads a value written by [`MetaFrame::to_value`].
    pub fn from_value(v: &Value) -> Result<MetaFrame, ShapeError> {
        let k = Self::KIND;
        Ok(MetaFrame {
            cycle_id: unbits(v, k, "cycle_id")?,
            tick: unbits(v, k, "tick")?,
            module: text(v, k, "module")?,
            diagnostics: field(v, k, "diagnostics")?.clone(),
            rng_seed: unbits(v, k, "rng_seed")?,
            phase: text(v, k, "phase")?,
        })
    }
}
