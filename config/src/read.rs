//! Reading a parsed TOML document into a typed config, noting every problem
//! with its byte offset instead of stopping at the first one.
//!
//! The reader is a serde [`Deserializer`](de::Deserializer) over the spanned
//! tree of `toml_edit`, so the section structs stay plain `#[derive]`d types
//! and their field lists come from serde, not from a second copy here. It
//! recovers where it can, so that one run finds as many problems as possible:
//!
//! - an unknown key of a struct is noted (with a "did you mean") and skipped;
//! - an integer of the wrong type or out of its type's range is noted and
//!   read as `0`, a struct or map given a non-table as no entries, a sequence
//!   given a non-array as no elements;
//! - an enum is read from a string naming one of its unit variants; any
//!   other name is noted (with a "did you mean") and read as the first
//!   variant;
//! - any other failure (one serde itself reports) is noted where it happened
//!   and stops the read, keeping what was noted so far.
//!
//! Values read as placeholders are never returned as a valid config: the
//! caller rejects any read that noted a problem.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use toml_edit::{ArrayOfTables, Table, TableLike, Value};

/// A problem noted while reading or validating, located by byte offset.
#[derive(Debug)]
pub(crate) struct Noted {
    /// Byte offset into the text where the problem is.
    pub at: usize,
    /// Dotted path of the offending key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// What a read leaves behind besides the value.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    /// Problems in the order they were found.
    pub problems: Vec<Noted>,
    /// Byte offset of every item that was read, by dotted path.
    pub offsets: BTreeMap<String, usize>,
}

impl Notes {
    /// Byte offset of `key`, or of its nearest ancestor that was read, or 0.
    pub fn offset_of(&self, mut key: &str) -> usize {
        loop {
            if let Some(&at) = self.offsets.get(key) {
                return at;
            }
            match key.rsplit_once('.') {
                Some((parent, _)) => key = parent,
                None => return 0,
            }
        }
    }
}

/// Reads `root` as a `T`. The value is `None` when the read stopped early;
/// it may be `Some` and still hold placeholders when problems were noted.
pub(crate) fn read<T: DeserializeOwned>(root: &Table) -> (Option<T>, Notes) {
    let notes = RefCell::new(Notes::default());
    let reader = Reader { node: Node::Table(root), path: String::new(), at: 0, notes: &notes };
    let value = T::deserialize(reader).ok();
    (value, notes.into_inner())
}

/// The reader's error: the problem has been noted, or is still to be noted
/// by the reader that sees it come back (serde creates it without a place).
#[derive(Debug)]
pub(crate) enum Error {
    /// Already in the notes; just unwind.
    Noted,
    /// A message from serde, not yet placed.
    Unplaced(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Noted => f.write_str("problem noted"),
            Error::Unplaced(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Error::Unplaced(message.to_string())
    }
}

/// One node of the parsed tree: a value, a `[table]`, or an `[[array]]`.
#[derive(Clone, Copy)]
enum Node<'a> {
    Value(&'a Value),
    Table(&'a Table),
    Tables(&'a ArrayOfTables),
}

impl<'a> Node<'a> {
    fn of(item: &'a toml_edit::Item) -> Option<Self> {
        match item {
            toml_edit::Item::None => None,
            toml_edit::Item::Value(value) => Some(Node::Value(value)),
            toml_edit::Item::Table(table) => Some(Node::Table(table)),
            toml_edit::Item::ArrayOfTables(tables) => Some(Node::Tables(tables)),
        }
    }

    fn start(self) -> Option<usize> {
        let span = match self {
            Node::Value(value) => value.span(),
            Node::Table(table) => table.span(),
            Node::Tables(tables) => tables.span(),
        };
        span.map(|span| span.start)
    }

    fn table_like(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Value(Value::InlineTable(table)) => Some(table),
            Node::Table(table) => Some(table),
            _ => None,
        }
    }

    /// The elements of an array or an array of tables.
    fn elements(self) -> Option<Vec<Node<'a>>> {
        match self {
            Node::Value(Value::Array(array)) => Some(array.iter().map(Node::Value).collect()),
            Node::Tables(tables) => Some(tables.iter().map(Node::Table).collect()),
            _ => None,
        }
    }

    /// What the node is, for "expected X, found Y" messages.
    fn describe(self) -> String {
        /// Long strings are cut in messages; the position says where they are.
        const SHOWN_CHARS_MAX: usize = 40;
        match self {
            Node::Value(Value::String(s)) if s.value().chars().count() > SHOWN_CHARS_MAX => {
                let shown: String = s.value().chars().take(SHOWN_CHARS_MAX).collect();
                format!("string {shown:?}…")
            }
            Node::Value(Value::String(s)) => format!("string {:?}", s.value()),
            Node::Value(Value::Integer(i)) => format!("integer {}", i.value()),
            Node::Value(Value::Float(x)) => format!("float {}", x.value()),
            Node::Value(Value::Boolean(b)) => format!("boolean {}", b.value()),
            Node::Value(Value::Datetime(d)) => format!("datetime {}", d.value()),
            Node::Value(value) => value.type_name().to_owned(),
            Node::Table(_) => "table".to_owned(),
            Node::Tables(_) => "array of tables".to_owned(),
        }
    }
}

/// Deserializer for one node, knowing its dotted path and byte offset.
struct Reader<'a> {
    node: Node<'a>,
    path: String,
    at: usize,
    notes: &'a RefCell<Notes>,
}

impl<'a> Reader<'a> {
    fn note(&self, at: usize, key: String, message: String) {
        let problem = Noted { at, key, message };
        self.notes.borrow_mut().problems.push(problem);
    }

    fn note_here(&self, message: String) {
        self.note(self.at, self.path.clone(), message);
    }

    /// Notes an error serde raised while this node was being read.
    fn settle<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        result.map_err(|error| {
            if let Error::Unplaced(message) = error {
                self.note_here(message);
            }
            Error::Noted
        })
    }

    /// A reader for a child at `path`, placed at its value or else at `at`.
    fn child(&self, node: Node<'a>, path: String, at: usize) -> Reader<'a> {
        let at = node.start().unwrap_or(at);
        self.notes.borrow_mut().offsets.insert(path.clone(), at);
        Reader { node, path, at, notes: self.notes }
    }

    /// The entries of a table; with `fields`, unknown keys are noted and left out.
    fn entries(&self, fields: Option<&[&str]>) -> Entries<'a> {
        let Some(table) = self.node.table_like() else {
            self.note_here(format!("expected a table, found {}", self.node.describe()));
            return Entries::default();
        };
        let mut entries = Vec::new();
        for (key, item) in table.iter() {
            let path = join(&self.path, key);
            let key_at = table.key(key).and_then(|k| k.span()).map_or(self.at, |s| s.start);
            match fields {
                Some(fields) if !fields.contains(&key) => {
                    self.note(key_at, path, unknown_key(key, fields));
                }
                _ => {
                    if let Some(node) = Node::of(item) {
                        entries.push((key.to_owned(), self.child(node, path, key_at)));
                    }
                }
            }
        }
        Entries { entries: entries.into_iter(), value: None }
    }

    /// Reads the node's first `len` elements as a sequence.
    fn read_seq<'de, V: Visitor<'de>>(self, visitor: V, len: usize) -> Result<V::Value, Error> {
        let elements = self.node.elements().unwrap_or_else(|| {
            self.note_here(format!("expected an array, found {}", self.node.describe()));
            Vec::new()
        });
        let readers: Vec<Reader<'_>> = elements
            .into_iter()
            .take(len)
            .enumerate()
            .map(|(i, node)| self.child(node, format!("{}[{i}]", self.path), self.at))
            .collect();
        let result = visitor.visit_seq(Elements(readers.into_iter()));
        self.settle(result)
    }

    /// The value of an integer node if it lies in `min..=max` (the target
    /// type's range); otherwise the problem is noted.
    fn integer(&self, min: i128, max: i128) -> Option<i64> {
        match self.node {
            Node::Value(Value::Integer(i)) if (min..=max).contains(&i128::from(*i.value())) => Some(*i.value()),
            Node::Value(Value::Integer(i)) => {
                // A TOML integer is an i64: that is the most a file can hold.
                let max = max.min(i64::MAX.into());
                self.note_here(format!("{} is out of range {min}..={max}", i.value()));
                None
            }
            node => {
                self.note_here(format!("expected an integer, found {}", node.describe()));
                None
            }
        }
    }
}

/// Integer methods: read in range, or note and read `0`.
macro_rules! integers {
    ($($method:ident $visit:ident $ty:ty;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let value = self.integer(<$ty>::MIN.into(), <$ty>::MAX.into());
            let value = value.and_then(|v| <$ty>::try_from(v).ok()).unwrap_or_default();
            self.settle(visitor.$visit(value))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Reader<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match self.node {
            Node::Value(Value::Integer(i)) => visitor.visit_i64(*i.value()),
            Node::Value(Value::Float(x)) => visitor.visit_f64(*x.value()),
            Node::Value(Value::Boolean(b)) => visitor.visit_bool(*b.value()),
            Node::Value(Value::String(s)) => visitor.visit_str(s.value()),
            Node::Value(Value::Datetime(d)) => visitor.visit_string(d.value().to_string()),
            Node::Value(Value::Array(_)) | Node::Tables(_) => return self.deserialize_seq(visitor),
            Node::Value(Value::InlineTable(_)) | Node::Table(_) => return self.deserialize_map(visitor),
        };
        self.settle(result)
    }

    integers! {
        deserialize_i8 visit_i8 i8;
        deserialize_i16 visit_i16 i16;
        deserialize_i32 visit_i32 i32;
        deserialize_i64 visit_i64 i64;
        deserialize_u8 visit_u8 u8;
        deserialize_u16 visit_u16 u16;
        deserialize_u32 visit_u32 u32;
        deserialize_u64 visit_u64 u64;
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // A key that is present is `Some`; absent keys never reach a reader.
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.read_seq(visitor, usize::MAX)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = visitor.visit_map(self.entries(None));
        self.settle(result)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == LOCATED {
            return visitor.visit_map(LocatedAccess { at: Some(self.at), reader: Some(self) });
        }
        let result = visitor.visit_map(self.entries(Some(fields)));
        self.settle(result)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let variant = match self.node {
            Node::Value(Value::String(s)) if variants.contains(&s.value().as_str()) => s.value().as_str(),
            Node::Value(Value::String(s)) => {
                self.note_here(format!("unknown value `{}`, {}", s.value(), suggestion(s.value(), variants)));
                variants.first().copied().unwrap_or_default()
            }
            node => {
                self.note_here(format!("expected {}, found {}", one_of(variants), node.describe()));
                variants.first().copied().unwrap_or_default()
            }
        };
        self.settle(visitor.visit_enum(variant.into_deserializer()))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        // serde's visitor for `[T; N]` takes N elements and ignores the rest,
        // so the length is checked here, where the array is.
        // Too many elements: noted, and the first `len` read on so that later
        // problems are found too. Too few: noted, and the read stops.
        let found = self.node.elements().map_or(len, |elements| elements.len());
        if found != len {
            self.note_here(format!("expected an array of {len} elements, found {found}"));
            if found < len {
                return Err(Error::Noted);
            }
        }
        self.read_seq(visitor, len)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Value(Value::Float(_) | Value::Integer(_)) => self.deserialize_any(visitor),
            node => {
                self.note_here(format!("expected a number, found {}", node.describe()));
                self.settle(visitor.visit_f64(0.0))
            }
        }
    }

    serde::forward_to_deserialize_any! {
        bool i128 u128 f32 char str string bytes byte_buf unit unit_struct
        newtype_struct tuple_struct identifier ignored_any
    }
}

/// A table's entries, for serde's map and struct visitors.
#[derive(Default)]
struct Entries<'a> {
    entries: std::vec::IntoIter<(String, Reader<'a>)>,
    value: Option<Reader<'a>>,
}

impl<'de> de::MapAccess<'de> for Entries<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let key = value.settle(seed.deserialize(key.into_deserializer()))?;
        self.value = Some(value);
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self.value.take();
        seed.deserialize(value.expect("serde asks for a value only after its key"))
    }
}

/// The struct name [`Located`] asks the reader for; no other reader knows it.
const LOCATED: &str = "$metagov_config::Located";
/// The field holding the byte offset.
const LOCATED_AT: &str = "at";
/// The field holding the value.
const LOCATED_VALUE: &str = "value";

/// A value read from a TOML text with the byte offset where it was written,
/// so that a later check (one the types cannot state) can place its problem.
/// It is read only by [`read_toml`](crate::read_toml), which knows where every
/// value is.
#[derive(Clone, Debug, PartialEq)]
pub struct Located<T> {
    at: usize,
    value: T,
}

impl<T> Located<T> {
    /// Byte offset of the value in the text.
    pub fn at(&self) -> usize {
        self.at
    }

    /// The byte range to place a problem at (the value's first byte).
    pub fn span(&self) -> std::ops::Range<usize> {
        self.at..self.at
    }

    /// The value.
    pub fn get_ref(&self) -> &T {
        &self.value
    }

    /// The value, owned.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<'de, T: de::Deserialize<'de>> de::Deserialize<'de> for Located<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LocatedVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: de::Deserialize<'de>> Visitor<'de> for LocatedVisitor<T> {
            type Value = Located<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value read by metagov_config::read_toml")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Located<T>, A::Error> {
                let (mut at, mut value) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        LOCATED_AT => at = Some(map.next_value()?),
                        LOCATED_VALUE => value = Some(map.next_value()?),
                        other => return Err(de::Error::unknown_field(other, &[LOCATED_AT, LOCATED_VALUE])),
                    }
                }
                match (at, value) {
                    (Some(at), Some(value)) => Ok(Located { at, value }),
                    _ => Err(de::Error::custom("a located value needs its offset and value")),
                }
            }
        }
        deserializer.deserialize_struct(LOCATED, &[LOCATED_AT, LOCATED_VALUE], LocatedVisitor(std::marker::PhantomData))
    }
}

/// The two entries of a [`Located`]: the offset, then the value.
struct LocatedAccess<'a> {
    at: Option<usize>,
    reader: Option<Reader<'a>>,
}

impl<'de> de::MapAccess<'de> for LocatedAccess<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let key = match (self.at, &self.reader) {
            (Some(_), _) => LOCATED_AT,
            (None, Some(_)) => LOCATED_VALUE,
            (None, None) => return Ok(None),
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        if let Some(at) = self.at.take() {
            return seed.deserialize(at.into_deserializer());
        }
        let reader = self.reader.take();
        seed.deserialize(reader.expect("serde asks for the value only after its key"))
    }
}

/// An array's elements, for serde's sequence visitors.
struct Elements<'a>(std::vec::IntoIter<Reader<'a>>);

impl<'de> de::SeqAccess<'de> for Elements<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        self.0.next().map(|element| seed.deserialize(element)).transpose()
    }
}

/// `parent.key`, quoting `key` when it is not a bare TOML key.
pub(crate) fn join(parent: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare { key.to_owned() } else { format!("{key:?}") };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// The message for an unknown key: the closest known key if one is near,
/// else the list of known keys.
fn unknown_key(key: &str, fields: &[&str]) -> String {
    format!("unknown key, {}", suggestion(key, fields))
}

/// "did you mean `x`?" naming the closest of `known` to `word` if one is
/// near, else "expected one of `a`, `b`".
pub fn suggestion(word: &str, known: &[&str]) -> String {
    /// Most edits (insert, delete, substitute, swap neighbours) between a
    /// typo and the name it meant.
    const TYPO_EDITS_MAX: usize = 2;
    let closest = known
        .iter()
        .map(|name| (strsim::osa_distance(word, name), name))
        .filter(|&(edits, _)| edits <= TYPO_EDITS_MAX)
        .min_by_key(|&(edits, _)| edits);
    match closest {
        Some((_, name)) => format!("did you mean `{name}`?"),
        None => format!("expected {}", one_of(known)),
    }
}

/// "one of `a`, `b`".
fn one_of(names: &[&str]) -> String {
    let names: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    format!("one of {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    //! The reader on shapes the schema does not use yet (maps, arrays of
    //! tables, floats, options), so later sections can rely on them.

    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Knob {
        min: f64,
        max: f64,
        step: Option<f64>,
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Shape {
        name: String,
        on: bool,
        weights: Vec<f64>,
        knobs: BTreeMap<String, Knob>,
        rules: Vec<Knob>,
    }

    /// The value read (if the read went through) and the problems as
    /// `offset key: message`.
    fn read_shape(text: &str) -> (Option<Shape>, Vec<String>) {
        let document = toml_edit::ImDocument::parse(text).expect("valid TOML");
        let (shape, notes) = read::<Shape>(document.as_table());
        let problems = notes.problems.iter();
        (shape, problems.map(|p| format!("{} {}: {}", p.at, p.key, p.message)).collect())
    }

    #[test]
    fn maps_arrays_floats_and_options_are_read() {
        let text = "name = \"n\"\non = true\nweights = [0.5, 1]\n\
                    [knobs.tau]\nmin = 0.1\nmax = 0.9\nstep = 0.01\n\
                    [[rules]]\nmin = 1\n[[rules]]\nmax = 2.5\n";
        let tau = Knob { min: 0.1, max: 0.9, step: Some(0.01) };
        let expected = Shape {
            name: "n".to_owned(),
            on: true,
            weights: vec![0.5, 1.0],
            knobs: BTreeMap::from([("tau".to_owned(), tau)]),
            rules: vec![Knob { min: 1.0, ..Knob::default() }, Knob { max: 2.5, ..Knob::default() }],
        };
        assert_eq!(read_shape(text), (Some(expected), vec![]));
    }

    #[test]
    fn problems_inside_maps_and_arrays_are_placed_with_their_path() {
        let text = "weights = 3\n[knobs.tau]\nmni = 0\n[[rules]]\n[[rules]]\nstep = 1\nmxa = 2\n";
        let (shape, problems) = read_shape(text);
        assert!(shape.is_some());
        assert_eq!(
            problems,
            [
                "10 weights: expected an array, found integer 3",
                "24 knobs.tau.mni: unknown key, did you mean `min`?",
                "61 rules[1].mxa: unknown key, did you mean `max`?",
            ]
        );
    }

    #[test]
    fn a_problem_serde_raises_is_placed_and_stops_the_read() {
        let (shape, problems) = read_shape("on = 1\nname = 2\n");
        assert_eq!(shape, None);
        assert_eq!(problems, ["5 on: invalid type: integer `1`, expected a boolean"]);
    }
}
