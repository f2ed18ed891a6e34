//! Payload values: the only data that crosses the bus.
//!
//! A [`Value`] is a small self-describing tree. Its one numeric type for
//! real numbers is [`Fixed`], a count of millionths, so every float that is
//! published is on the 1e-6 grid by construction: the determinism contract's
//! quantization happens when a payload is built, and the journal stores the
//! exact integer.
//!
//! Reference: docs/chronicle-format.md, "Global rules" (fixed point): reals are
//! rounded to the deterministic 1e-6 grid before they are journaled.

use std::borrow::Cow;
use std::fmt;

/// The name of a record field. Static names cost nothing to build; names
/// decoded from a chronicle are owned.
pub type Key = Cow<'static, str>;

/// A real number on the 1e-6 grid, stored as an integer count of millionths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Fixed(i64);

/// Why a float could not be put on the grid.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum QuantizeError {
    /// NaN or an infinity.
    #[error("{0} is not a finite number")]
    NonFinite(f64),
    /// Finite but outside `±Fixed::ABS_MAX`.
    #[error("{0} is outside the fixed-point range ±{max}", max = Fixed::ABS_MAX)]
    OutOfRange(f64),
}

impl Fixed {
    /// Millionths per unit.
    pub const SCALE: i64 = 1_000_000;
    /// The largest magnitude accepted, in units. At 10^15 millionths the two
    /// roundings of a trip through `f64` add at most 0.23 millionths, so a
    /// `Fixed` converts to `f64` and back without loss (tested). Configs are
    /// checked against the same limit, `metagov_config::VALUE_ABS_MAX`, which
    /// `metagov-actors` asserts equal at compile time.
    pub const ABS_MAX: f64 = 1_000_000_000.0;
    /// Zero.
    pub const ZERO: Fixed = Fixed(0);

    /// Rounds `x` to the nearest millionth (halves away from zero).
    /// IEEE-754 multiplication and `round` are exactly specified, so the
    /// result is the same on every platform.
    pub fn from_f64(x: f64) -> Result<Fixed, QuantizeError> {
        if !x.is_finite() {
            return Err(QuantizeError::NonFinite(x));
        }
        if x.abs() > Self::ABS_MAX {
            return Err(QuantizeError::OutOfRange(x));
        }
        Ok(Fixed((x * Self::SCALE as f64).round() as i64))
    }

    /// The value with exactly `micros` millionths.
    pub const fn from_micros(micros: i64) -> Fixed {
        Fixed(micros)
    }

    /// The count of millionths.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// The nearest `f64`. `Fixed::from_f64(f.to_f64()) == Ok(f)` for every
    /// value in range.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / Self::SCALE as f64
    }
}

impl fmt::Display for Fixed {
    /// Exact decimal text with no trailing zeros: `0.15`, `-3`, `0.000001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / Self::SCALE as u64;
        let frac = abs % Self::SCALE as u64;
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        let digits = format!("{frac:06}");
        write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// A payload: a small tree of data whose every number is exact.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Value {
    /// No data.
    #[default]
    Unit,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A real number on the 1e-6 grid.
    Fixed(Fixed),
    /// UTF-8 text.
    Text(String),
    /// Opaque bytes (for instance an ingress packet that is not valid UTF-8).
    Bytes(Vec<u8>),
    /// An ordered list.
    List(Vec<Value>),
    /// Named fields in a fixed order (the order they were built in).
    Record(Vec<(Key, Value)>),
}

impl Value {
    /// A real number quantized to the grid.
    pub fn real(x: f64) -> Result<Value, QuantizeError> {
        Fixed::from_f64(x).map(Value::Fixed)
    }

    /// The field `name` of a record, if this is a record that has it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Record(fields) => fields.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The number as an `f64` for `Fixed` and `Int`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Fixed(x) => Some(x.to_f64()),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The number of a non-negative `Int` (a window, a count).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }

    /// The text of a `Text` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The JSON rendering: `Fixed` becomes the JSON number that reads back as
    /// the same `Fixed`, `Bytes` a list of byte values, `Unit` null.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Unit => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            // The shortest decimal that reads back as the same f64, hence
            // (tested) as the same Fixed.
            Value::Fixed(x) => serde_json::Number::from_f64(x.to_f64()).map_or(J::Null, J::Number),
            Value::Text(s) => J::String(s.clone()),
            Value::Bytes(b) => J::Array(b.iter().map(|&x| J::from(x)).collect()),
            Value::List(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Record(fields) => J::Object(fields.iter().map(|(k, v)| (k.to_string(), v.to_json())).collect()),
        }
    }

    /// Converts parsed JSON, quantizing every non-integer number. Object keys
    /// come out in the order serde_json yields them (sorted).
    pub fn from_json(json: &serde_json::Value) -> Result<Value, QuantizeError> {
        use serde_json::Value as J;
        Ok(match json {
            J::Null => Value::Unit,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                // Invariant: serde_json numbers are finite and always have an f64 view.
                None => Value::real(n.as_f64().expect("serde_json number has an f64 view"))?,
            },
            J::String(s) => Value::Text(s.clone()),
            J::Array(items) => Value::List(items.iter().map(Value::from_json).collect::<Result<_, _>>()?),
            J::Object(map) => Value::Record(
                map.iter()
                    .map(|(k, v)| Ok((Cow::Owned(k.clone()), Value::from_json(v)?)))
                    .collect::<Result<_, QuantizeError>>()?,
            ),
        })
    }

    /// Every leaf where `self` (expected) and `actual` differ, with its path
    /// (`metrics.gain_p50`, `vector[2]`). Empty when they are equal.
    pub fn diff(&self, actual: &Value) -> Vec<FieldDiff> {
        let mut out = Vec::new();
        diff_into(String::new(), self, actual, &mut out);
        out
    }
}

/// One leaf that differs between two values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDiff {
    /// Where in the tree: empty for the root, else `a.b[3]`.
    pub path: String,
    /// The expected leaf, or `None` where only `actual` has it.
    pub expected: Option<Value>,
    /// The actual leaf, or `None` where only `expected` has it.
    pub actual: Option<Value>,
}

fn diff_into(path: String, expected: &Value, actual: &Value, out: &mut Vec<FieldDiff>) {
    match (expected, actual) {
        (Value::Record(e), Value::Record(a)) => {
            for (k, ev) in e {
                let sub = join(&path, k);
                match actual.get(k) {
                    Some(av) => diff_into(sub, ev, av, out),
                    None => out.push(FieldDiff { path: sub, expected: Some(ev.clone()), actual: None }),
                }
            }
            for (k, av) in a {
                if expected.get(k).is_none() {
                    let sub = join(&path, k);
                    out.push(FieldDiff { path: sub, expected: None, actual: Some(av.clone()) });
                }
            }
        }
        (Value::List(e), Value::List(a)) => {
            for i in 0..e.len().max(a.len()) {
                let sub = format!("{path}[{i}]");
                match (e.get(i), a.get(i)) {
                    (Some(ev), Some(av)) => diff_into(sub, ev, av, out),
                    (ev, av) => out.push(FieldDiff { path: sub, expected: ev.cloned(), actual: av.cloned() }),
                }
            }
        }
        (e, a) if e != a => out.push(FieldDiff { path, expected: Some(e.clone()), actual: Some(a.clone()) }),
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl fmt::Display for Value {
    /// Compact JSON text, with `Fixed` numbers exact: the text of
    /// [`Value::to_json`], written as a stream (see [`Value::write_json`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_json(f)
    }
}

impl Value {
    /// Writes the JSON rendering of [`Value::to_json`], byte for byte the
    /// same text, without building it: a value's text never has to fit in
    /// memory beside it (a 60 MiB `Bytes` is 60 Mi JSON numbers, which as a
    /// `serde_json::Value` take some 2 GB). Record fields come out sorted by
    /// key, and of a repeated key the last, as `serde_json`'s map makes them.
    pub fn write_json(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        match self {
            Value::Unit => f.write_str("null"),
            Value::Bool(b) => f.write_str(if *b { "true" } else { "false" }),
            Value::Int(i) => write!(f, "{i}"),
            Value::Fixed(x) => match serde_json::Number::from_f64(x.to_f64()) {
                Some(n) => write!(f, "{n}"),
                None => f.write_str("null"),
            },
            Value::Text(s) => write_json_str(f, s),
            Value::Bytes(bytes) => {
                f.write_char('[')?;
                for (i, b) in bytes.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{b}")?;
                }
                f.write_char(']')
            }
            Value::List(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    item.write_json(f)?;
                }
                f.write_char(']')
            }
            Value::Record(fields) => {
                let mut sorted: Vec<&(Key, Value)> = fields.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                f.write_char('{')?;
                let mut first = true;
                for (i, (key, value)) in sorted.iter().map(|kv| (&kv.0, &kv.1)).enumerate() {
                    // Of equal keys (adjacent after a stable sort) the last wins.
                    if sorted.get(i + 1).is_some_and(|next| next.0 == *key) {
                        continue;
                    }
                    if !first {
                        f.write_char(',')?;
                    }
                    first = false;
                    write_json_str(f, key)?;
                    f.write_char(':')?;
                    value.write_json(f)?;
                }
                f.write_char('}')
            }
        }
    }
}

/// A JSON string literal, escaped as `serde_json` escapes it: `\"`, `\\`,
/// `\b`, `\f`, `\n`, `\r`, `\t`, and `\u00XX` for the other controls below
/// 0x20.
pub fn write_json_str(f: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        f.write_str(&s[start..i])?;
        if escape.is_empty() {
            write!(f, "\\u{b:04x}")?;
        } else {
            f.write_str(escape)?;
        }
        start = i + 1;
    }
    f.write_str(&s[start..])?;
    f.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantizes_to_nearest_millionth() {
        assert_eq!(Fixed::from_f64(0.15).unwrap().micros(), 150_000);
        assert_eq!(Fixed::from_f64(1.0000004).unwrap().micros(), 1_000_000);
        assert_eq!(Fixed::from_f64(-2.5e-6).unwrap().micros(), -3);
        assert!(matches!(Fixed::from_f64(f64::NAN), Err(QuantizeError::NonFinite(_))));
        assert!(matches!(Fixed::from_f64(f64::INFINITY), Err(QuantizeError::NonFinite(_))));
        assert!(matches!(Fixed::from_f64(1e300), Err(QuantizeError::OutOfRange(_))));
    }

    #[test]
    fn only_a_non_negative_int_is_a_u64() {
        assert_eq!(Value::Int(7).as_u64(), Some(7));
        assert_eq!(Value::Int(-1).as_u64(), None);
        assert_eq!(Value::Fixed(Fixed::from_micros(7_000_000)).as_u64(), None);
        assert_eq!(Value::Text("7".into()).as_u64(), None);
    }

    #[test]
    fn displays_exact_decimals() {
        assert_eq!(Fixed::from_micros(150_000).to_string(), "0.15");
        assert_eq!(Fixed::from_micros(-3_000_000).to_string(), "-3");
        assert_eq!(Fixed::from_micros(1).to_string(), "0.000001");
        assert_eq!(Fixed::from_micros(-1_000_001).to_string(), "-1.000001");
    }

    #[test]
    fn diff_names_each_differing_leaf() {
        let a = Value::Record(vec![
            ("x".into(), Value::Int(1)),
            ("v".into(), Value::List(vec![Value::Int(1), Value::Int(2)])),
        ]);
        let b = Value::Record(vec![
            ("x".into(), Value::Int(1)),
            ("v".into(), Value::List(vec![Value::Int(1), Value::Int(3)])),
            ("extra".into(), Value::Unit),
        ]);
        let d = a.diff(&b);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].path, "v[1]");
        assert_eq!(d[1].path, "extra");
        assert!(a.diff(&a).is_empty());
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Unit),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            (-1_000_000_000_000_000i64..=1_000_000_000_000_000i64).prop_map(|m| Value::Fixed(Fixed::from_micros(m))),
            "[\\x00-\\x7f\u{80}-\u{10ffff}]{0,8}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
                proptest::collection::vec(("[ab\"\\\\\n]{0,2}", inner), 0..4)
                    .prop_map(|fields| Value::Record(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn streamed_json_is_the_text_of_to_json(v in any_value()) {
            prop_assert_eq!(v.to_string(), v.to_json().to_string());
        }

        #[test]
        fn grid_roundtrip_is_exact(m in -1_000_000_000_000_000i64..=1_000_000_000_000_000i64) {
            let f = Fixed::from_micros(m);
            prop_assert_eq!(Fixed::from_f64(f.to_f64()), Ok(f));
        }

        #[test]
        fn json_rendering_reads_back_as_the_same_fixed(m in -1_000_000_000_000_000i64..=1_000_000_000_000_000i64) {
            let v = Value::Fixed(Fixed::from_micros(m));
            let text = v.to_json().to_string();
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(Value::from_json(&back).unwrap(), v);
        }

        #[test]
        fn display_parses_back(m in -1_000_000_000_000_000i64..=1_000_000_000_000_000i64) {
            let f = Fixed::from_micros(m);
            let back: f64 = f.to_string().parse().unwrap();
            prop_assert_eq!(Fixed::from_f64(back), Ok(f));
        }
    }
}
