//! Turns anything `Serialize` into the JSON that goes into an item's
//! `properties`, refusing what serde_json would silently get wrong (NaN and
//! infinity, which it turns into `null`) or what is too large to send.

use std::fmt::{Display, Write as _};
use std::io;

use serde::Serialize;
use serde::ser;
use serde_json::{Map, Value};

use crate::echo::echo;
use crate::error::ValidationError;

/// The largest serialised item (one event, profile or device) the SDK
/// sends, in bytes. The API documents no byte limit; 1 MiB matches what
/// comparable ingestion APIs accept per event. Larger items are rejected
/// before they go on the wire.
pub const MAX_ITEM_BYTES: usize = 1024 * 1024;

/// How deeply arrays and objects may nest in an item's `properties`, the
/// properties object itself being the first level. The dead-letter file's
/// reader (serde_json) stops at 128 levels for a whole letter; this limit
/// keeps every item the SDK sends well inside it, and no analytics value
/// needs more.
pub const MAX_DEPTH: usize = 64;

/// Where a value is in an item, from a named root, formatted only for an
/// error: `properties.mkt_items[2].mkt_quantity`.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    Root(&'static str),
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root(root) => f.write_str(root),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// [`ValidationError::TooDeep`] for the array or object at `path`.
pub(crate) fn too_deep(path: &Path<'_>) -> ValidationError {
    ValidationError::TooDeep {
        field: echo(&path.to_string()),
        max: MAX_DEPTH,
    }
}

/// How many bytes each byte of a string adds to its JSON form beyond
/// itself, as serde_json escapes: `\"`, `\\` and the five short control
/// escapes add one, other control characters (`\u001f`) five; everything
/// else, UTF-8 included, is written as it is.
static ESCAPE_EXTRA: [u8; 256] = {
    let mut extra = [0; 256];
    let mut byte = 0;
    while byte < 0x20 {
        extra[byte] = 5;
        byte += 1;
    }
    let short = [b'"', b'\\', 0x08, 0x09, 0x0a, 0x0c, 0x0d];
    let mut i = 0;
    while i < short.len() {
        extra[short[i] as usize] = 1;
        i += 1;
    }
    extra
};

/// The length of `text` as a JSON string, quotes included, as serde_json
/// writes it.
pub(crate) fn str_len(text: &str) -> usize {
    // Most strings need no escape: found a word at a time.
    if !crate::bytes::any_word(text.as_bytes(), crate::bytes::escapes) {
        return 2 + text.len();
    }
    let extra: usize = text
        .bytes()
        .map(|byte| usize::from(ESCAPE_EXTRA[usize::from(byte)]))
        .sum();
    2 + text.len() + extra
}

/// How many decimal digits `n` has.
#[inline]
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// The length of `number` as JSON, as serde_json writes it.
#[inline]
pub(crate) fn number_len(number: &serde_json::Number) -> usize {
    if let Some(n) = number.as_u64() {
        digits(n)
    } else if let Some(n) = number.as_i64() {
        1 + digits(n.unsigned_abs())
    } else {
        // Without serde_json's `arbitrary_precision`, which this crate does
        // not turn on, a number that is no integer is an `f64`.
        number.as_f64().map_or_else(|| json_len(number), float_len)
    }
}

/// The length of a finite `float` as JSON, as serde_json writes it: the
/// shortest form that reads back as the same `f64`, by zmij, which writes
/// `59000.0`, `0.1`, `1e16` and `1.5e-7`.
pub(crate) fn float_len(float: f64) -> usize {
    // Anything but a whole number as serde_json does it, to a buffer on
    // the stack.
    whole_len(float).unwrap_or_else(|| zmij::Buffer::new().format_finite(float).len())
}

/// The length as JSON of a whole number below 10^15 (a price in won, a
/// count), counted: its digits and `.0`. At that size a double holds every
/// whole number exactly, and no shorter decimal reads back as it. `None`
/// for any other float.
#[inline]
fn whole_len(float: f64) -> Option<usize> {
    // A cast, not `fract`: that is a call to libm's `trunc`.
    (float.abs() < 1e15 && float as i64 as f64 == float).then(|| {
        let sign = usize::from(float.is_sign_negative());
        sign + digits(float.abs() as u64) + ".0".len()
    })
}

/// The most bytes serde_json writes for a string of `text`'s length: two
/// quotes and six per byte (a control character as `\u00XX`). Counted
/// without reading the text: a typed setter's strings are bounded so, and
/// the exact length is counted only when a bound does not settle a limit.
#[inline]
pub(crate) fn text_bound(text: &str) -> usize {
    2 + 6 * text.len()
}

/// The most bytes serde_json writes for a finite `float`: a whole number
/// below 10^15 exactly (its digits and `.0`, cheap to count), any other
/// at most 24 (`-2.2250738585072014e-308`).
#[inline]
pub(crate) fn float_bound(float: f64) -> usize {
    whole_len(float).unwrap_or(FLOAT_MAX_LEN)
}

/// The longest a finite `f64` is as JSON.
const FLOAT_MAX_LEN: usize = 24;

/// A bound of `value`'s length as JSON, as the typed setters count their
/// plain values ([`text_bound`], [`float_bound`], integers exactly): the
/// same for the same value, so a value replaced is taken off as it was
/// added. Arrays and objects are counted exactly.
#[inline]
pub(crate) fn value_bound(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::String(text) => text_bound(text),
        Value::Number(number) => match number.as_f64() {
            Some(float) if number.is_f64() => float_bound(float),
            _ => number_len(number),
        },
        compound => json_len(compound),
    }
}

/// The length of a JSON array or object of `count` members whose own
/// lengths add up to `members`: brackets and commas.
#[inline]
pub(crate) fn compound_len(count: usize, members: usize) -> usize {
    2 + count.saturating_sub(1) + members
}

/// Like [`serde_json::to_value`], but a NaN or infinite float anywhere inside
/// is [`ValidationError::NonFiniteNumber`], naming its path from `field`
/// (e.g. `properties.mkt_items[2].mkt_product_price`), and a failing
/// `Serialize` impl is [`ValidationError::Unserializable`].
///
/// `field` is only formatted for an error, so a caller can pass
/// `format_args!` and valid input allocates nothing for it.
pub(crate) fn to_value<T: Serialize + ?Sized>(
    field: impl Display,
    value: &T,
) -> Result<Value, ValidationError> {
    // A plain value (a string, number, bool, null) becomes JSON at once.
    match value.serialize(Scalar) {
        Ok(value) => return Ok(value),
        Err(NotScalar::NonFinite(value)) => {
            return Err(ValidationError::NonFiniteNumber {
                field: field.to_string(),
                value: value.to_string(),
            });
        }
        Err(NotScalar::Custom(reason)) => return Err(unserializable(&field, reason)),
        Err(NotScalar::Compound) => {}
    }
    // Below `field`.
    let mut path = String::new();
    value
        .serialize(Checker { path: &mut path })
        .map_err(|found| match found {
            Found::NonFinite { path, value } => ValidationError::NonFiniteNumber {
                field: format!("{field}{path}"),
                value,
            },
            Found::Custom(reason) => unserializable(&field, reason),
        })?;
    serde_json::to_value(value).map_err(|e| unserializable(&field, e))
}

/// `number` as JSON; NaN or infinity is [`ValidationError::NonFiniteNumber`]
/// naming `field` (formatted only for the error).
pub(crate) fn number(field: impl Display, number: f64) -> Result<Value, ValidationError> {
    serde_json::Number::from_f64(number)
        .map(Value::Number)
        .ok_or_else(|| ValidationError::NonFiniteNumber {
            field: field.to_string(),
            value: number.to_string(),
        })
}

/// Why [`Scalar`] made no value.
#[derive(Debug, thiserror::Error)]
enum NotScalar {
    /// An array, an object, or a rarer scalar: the general path takes it.
    #[error("not a plain value")]
    Compound,
    #[error("{0} is not finite")]
    NonFinite(f64),
    #[error("{0}")]
    Custom(String),
}

impl ser::Error for NotScalar {
    fn custom<M: Display>(msg: M) -> Self {
        NotScalar::Custom(msg.to_string())
    }
}

/// The fast path of [`to_value`]: a serializer that makes the `Value` of a
/// string, an integer, an `f64`, a bool or a null directly, as
/// serde_json's own would, and declines everything else.
struct Scalar;

macro_rules! scalar {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, v: $ty) -> Result<Value, NotScalar> {
            Ok(Value::from(v))
        })*
    };
}

macro_rules! not_scalar {
    ($($method:ident($($ty:ty),*) -> $ok:ty),* $(,)?) => {
        $(fn $method(self, $(_: $ty),*) -> Result<$ok, NotScalar> {
            Err(NotScalar::Compound)
        })*
    };
}

impl ser::Serializer for Scalar {
    type Ok = Value;
    type Error = NotScalar;
    type SerializeSeq = ser::Impossible<Value, NotScalar>;
    type SerializeTuple = ser::Impossible<Value, NotScalar>;
    type SerializeTupleStruct = ser::Impossible<Value, NotScalar>;
    type SerializeTupleVariant = ser::Impossible<Value, NotScalar>;
    type SerializeMap = ser::Impossible<Value, NotScalar>;
    type SerializeStruct = ser::Impossible<Value, NotScalar>;
    type SerializeStructVariant = ser::Impossible<Value, NotScalar>;

    scalar!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_str(&str),
    );

    not_scalar!(
        serialize_i128(i128) -> Value,
        serialize_u128(u128) -> Value,
        serialize_f32(f32) -> Value,
        serialize_bytes(&[u8]) -> Value,
        serialize_seq(Option<usize>) -> Self::SerializeSeq,
        serialize_tuple(usize) -> Self::SerializeTuple,
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct,
        serialize_tuple_variant(&'static str, u32, &'static str, usize)
            -> Self::SerializeTupleVariant,
        serialize_map(Option<usize>) -> Self::SerializeMap,
        serialize_struct(&'static str, usize) -> Self::SerializeStruct,
        serialize_struct_variant(&'static str, u32, &'static str, usize)
            -> Self::SerializeStructVariant,
    );

    fn serialize_f64(self, v: f64) -> Result<Value, NotScalar> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or(NotScalar::NonFinite(v))
    }

    fn serialize_char(self, v: char) -> Result<Value, NotScalar> {
        Ok(Value::String(v.into()))
    }

    fn serialize_none(self) -> Result<Value, NotScalar> {
        Ok(Value::Null)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, NotScalar> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<Value, NotScalar> {
        Ok(Value::Null)
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, NotScalar> {
        Ok(Value::Null)
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, NotScalar> {
        Ok(Value::String(variant.to_owned()))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Value, NotScalar> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Value, NotScalar> {
        Err(NotScalar::Compound)
    }
}

/// [`to_value`], which must give a JSON object, else
/// [`ValidationError::NotAnObject`].
pub(crate) fn to_object<T: Serialize + ?Sized>(
    field: &str,
    value: &T,
) -> Result<Map<String, Value>, ValidationError> {
    match to_value(field, value)? {
        Value::Object(map) => Ok(map),
        other => Err(ValidationError::NotAnObject {
            field: field.to_owned(),
            found: json_type(&other),
            value: echo(&other.to_string()),
        }),
    }
}

/// The JSON type of `value`, as error messages name it (`string`, `array`, ...).
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `bytes`, the length of an item as JSON; over [`MAX_ITEM_BYTES`] is
/// [`ValidationError::TooLarge`] naming `field`.
pub(crate) fn check_size(field: &str, bytes: usize) -> Result<usize, ValidationError> {
    if bytes > MAX_ITEM_BYTES {
        return Err(ValidationError::TooLarge {
            field: field.to_owned(),
            bytes,
            max: MAX_ITEM_BYTES,
        });
    }
    Ok(bytes)
}

/// The length of `value` as compact JSON, in bytes, counted without
/// building the JSON.
pub(crate) fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = Counter(0);
    // Items were checked when built, so they serialise.
    serde_json::to_writer(&mut counter, value).map_or(usize::MAX, |()| counter.0)
}

fn unserializable(field: &dyn Display, reason: impl Display) -> ValidationError {
    ValidationError::Unserializable {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// An `io::Write` sink that only counts the bytes written to it.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why [`Checker`] stopped.
#[derive(Debug, thiserror::Error)]
enum Found {
    #[error("`{path}` is {value}")]
    NonFinite { path: String, value: String },
    #[error("{0}")]
    Custom(String),
}

impl ser::Error for Found {
    fn custom<M: Display>(msg: M) -> Self {
        Found::Custom(msg.to_string())
    }
}

/// A serializer that builds nothing: it walks the value, keeping the path
/// to where it is in `path`, and stops at the first non-finite float.
///
/// A `Checker` may leave its own segments at the end of `path`; whoever
/// pushed the segment before it cuts `path` back before pushing the next.
struct Checker<'a> {
    path: &'a mut String,
}

impl<'a> Checker<'a> {
    fn float(self, value: f64) -> Result<(), Found> {
        if value.is_finite() {
            return Ok(());
        }
        // Display gives exactly `NaN`, `inf` and `-inf`.
        Err(Found::NonFinite {
            path: self.path.clone(),
            value: value.to_string(),
        })
    }

    /// Pushes `.variant`: serde_json puts a variant's content under its name.
    fn variant(self, variant: &str) -> Self {
        self.path.push('.');
        self.path.push_str(variant);
        self
    }

    /// The serializer for the elements or fields of a compound value.
    fn compound(self) -> Result<Compound<'a>, Found> {
        Ok(Compound {
            base: self.path.len(),
            path: self.path,
            index: 0,
        })
    }
}

macro_rules! fine {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Result<(), Found> {
            Ok(())
        })*
    };
}

impl<'a> ser::Serializer for Checker<'a> {
    type Ok = ();
    type Error = Found;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fine!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_f32(self, v: f32) -> Result<(), Found> {
        self.float(v.into())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Found> {
        self.float(v)
    }

    fn serialize_none(self) -> Result<(), Found> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Found> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Found> {
        Ok(())
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Found> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Found> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Found> {
        value.serialize(self.variant(variant))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Found> {
        self.compound()
    }

    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, Found> {
        self.compound()
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Found> {
        self.compound()
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Found> {
        self.variant(variant).compound()
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Found> {
        self.compound()
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Found> {
        self.compound()
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Found> {
        self.variant(variant).compound()
    }
}

/// Checks the elements or fields of one array or object; `path[..base]` is
/// the path to the compound value itself.
struct Compound<'a> {
    path: &'a mut String,
    base: usize,
    index: usize,
}

impl Compound<'_> {
    /// Checks `value` at `path[..base]` followed by `segment`.
    fn child<T: Serialize + ?Sized>(
        &mut self,
        segment: impl Display,
        value: &T,
    ) -> Result<(), Found> {
        self.path.truncate(self.base);
        let _ = write!(self.path, "{segment}"); // cannot fail on a String
        value.serialize(Checker { path: self.path })
    }

    /// Checks the next array element, at `[index]`.
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Found> {
        self.index += 1;
        self.child(format_args!("[{}]", self.index - 1), value)
    }
}

/// Compound serializers whose items are array elements.
macro_rules! elements {
    ($($trait:ident::$method:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = Found;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Found> {
                self.element(value)
            }

            fn end(self) -> Result<(), Found> {
                Ok(())
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// Compound serializers whose items are named fields.
macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = Found;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Found> {
                self.child(format_args!(".{key}"), value)
            }

            fn end(self) -> Result<(), Found> {
                Ok(())
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Found;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Found> {
        self.path.truncate(self.base);
        self.path.push('.');
        // Only string keys go into the path. serde_json turns some others
        // (integers, ...) into strings and refuses the rest, later.
        match serde_json::to_value(key) {
            Ok(Value::String(key)) => self.path.push_str(&key),
            _ => self.path.push('?'),
        }
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Found> {
        value.serialize(Checker { path: self.path })
    }

    fn end(self) -> Result<(), Found> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[derive(Serialize)]
    struct Item {
        mkt_product_id: &'static str,
        mkt_product_price: f64,
    }

    #[derive(Serialize)]
    struct Purchase {
        mkt_items: Vec<Item>,
    }

    fn item(price: f64) -> Item {
        Item {
            mkt_product_id: "sku",
            mkt_product_price: price,
        }
    }

    fn non_finite(field: &str, value: &str) -> ValidationError {
        ValidationError::NonFiniteNumber {
            field: field.into(),
            value: value.into(),
        }
    }

    #[test]
    fn nan_at_top_level_of_a_map() {
        let map = BTreeMap::from([("a", 1.0), ("price", f64::NAN)]);
        assert_eq!(
            to_value("properties", &map),
            Err(non_finite("properties.price", "NaN"))
        );
        assert_eq!(
            to_object("properties", &map),
            Err(non_finite("properties.price", "NaN"))
        );
    }

    #[test]
    fn infinity_in_a_struct_in_a_vec_names_the_index() {
        let purchase = Purchase {
            mkt_items: vec![item(1.5), item(2.0), item(f64::INFINITY)],
        };
        assert_eq!(
            to_object("properties", &purchase),
            Err(non_finite(
                "properties.mkt_items[2].mkt_product_price",
                "inf"
            )),
        );
    }

    #[test]
    fn f32_negative_infinity() {
        let map = BTreeMap::from([("list", vec![Some(0.5_f32), None, Some(f32::NEG_INFINITY)])]);
        assert_eq!(
            to_object("properties", &map),
            Err(non_finite("properties.list[2]", "-inf"))
        );
    }

    #[test]
    fn non_finite_in_enum_variants_and_tuples() {
        #[derive(Serialize)]
        enum E {
            New(f64),
            Tuple(u8, f64),
            Struct { x: f64 },
        }
        assert_eq!(
            to_value("p", &E::New(f64::NAN)),
            Err(non_finite("p.New", "NaN"))
        );
        assert_eq!(
            to_value("p", &E::Tuple(1, f64::NAN)),
            Err(non_finite("p.Tuple[1]", "NaN"))
        );
        assert_eq!(
            to_value("p", &E::Struct { x: f64::NAN }),
            Err(non_finite("p.Struct.x", "NaN"))
        );
        assert_eq!(
            to_value("p", &(1, (2, f64::NAN))),
            Err(non_finite("p[1][1]", "NaN"))
        );
    }

    #[test]
    fn non_string_map_keys_show_as_question_marks() {
        let map = BTreeMap::from([(7, f64::NAN)]);
        assert_eq!(to_value("p", &map), Err(non_finite("p.?", "NaN")));
    }

    #[test]
    fn json_value_object_passes_unchanged() {
        let value = json!({"a": 1, "b": [1.5, "x", null, {"c": true}], "d": {"e": -2}});
        assert_eq!(to_value("properties", &value), Ok(value.clone()));
        assert_eq!(
            to_object("properties", &value),
            Ok(value.as_object().unwrap().clone())
        );
    }

    #[test]
    fn finite_values_pass() {
        let purchase = Purchase {
            mkt_items: vec![item(0.0), item(-1e300), item(f64::MIN_POSITIVE)],
        };
        let expected = json!({"mkt_items": [
            {"mkt_product_id": "sku", "mkt_product_price": 0.0},
            {"mkt_product_id": "sku", "mkt_product_price": -1e300},
            {"mkt_product_id": "sku", "mkt_product_price": f64::MIN_POSITIVE},
        ]});
        assert_eq!(to_value("properties", &purchase), Ok(expected));

        let mixed = json!({
            "int": -3, "big": u64::MAX, "float": 2.5_f32, "s": "hé", "t": true, "n": null,
            "nested": {"deep": {"list": [1, {"x": 0.1}]}},
        });
        assert_eq!(to_value("properties", &mixed), Ok(mixed.clone()));
        assert_eq!(
            to_value("properties", &(i128::MAX / 2_i128.pow(64))),
            Ok(json!(i64::MAX))
        );
    }

    #[test]
    fn non_objects_are_refused_with_their_json_type() {
        let cases = [
            (json!([1, 2]), "array", "[1,2]"),
            (json!("text"), "string", "\"text\""),
            (json!(4.5), "number", "4.5"),
            (json!(false), "boolean", "false"),
            (json!(null), "null", "null"),
        ];
        for (value, found, echoed) in cases {
            assert_eq!(
                to_object("properties", &value),
                Err(ValidationError::NotAnObject {
                    field: "properties".into(),
                    found,
                    value: echoed.into(),
                }),
            );
        }
        let unit: Option<u8> = None;
        assert!(matches!(
            to_object("properties", &unit),
            Err(ValidationError::NotAnObject { found: "null", .. }),
        ));
    }

    #[test]
    fn non_string_map_keys_are_unserializable() {
        let map = BTreeMap::from([((1, 2), "x")]);
        let err = to_object("properties", &map).unwrap_err();
        let ValidationError::Unserializable { field, reason } = &err else {
            panic!("expected Unserializable, got {err:?}");
        };
        assert_eq!(field, "properties");
        assert!(reason.contains("key must be a string"), "{reason}");
    }

    #[test]
    fn failing_serialize_impl_is_unserializable() {
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: ser::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(ser::Error::custom("boom"))
            }
        }
        assert_eq!(
            to_value("properties", &BTreeMap::from([("x", Fails)])),
            Err(ValidationError::Unserializable {
                field: "properties".into(),
                reason: "boom".into()
            }),
        );
    }

    #[test]
    fn size_limit_is_exact() {
        assert_eq!(check_size("event", MAX_ITEM_BYTES), Ok(MAX_ITEM_BYTES));
        assert_eq!(check_size("event", 0), Ok(0));
        assert_eq!(
            check_size("event", MAX_ITEM_BYTES + 1),
            Err(ValidationError::TooLarge {
                field: "event".into(),
                bytes: MAX_ITEM_BYTES + 1,
                max: MAX_ITEM_BYTES,
            }),
        );
    }

    /// Whole floats take the short way below 10^15 and zmij's from there:
    /// both agree with serde_json on each side of every power of ten.
    #[test]
    fn float_lengths_match_serde_json_around_powers_of_ten() {
        let mut floats = vec![0.0, -0.0, 1.0, 0.5, 1e15 - 0.5, 1e16 - 2.0, 2f64.powi(53)];
        for power in 0..=20 {
            let ten = 10f64.powi(power);
            floats.extend([ten - 1.0, ten, ten + 1.0, ten * 1.5]);
        }
        for float in floats {
            for float in [float, -float] {
                let json = serde_json::to_string(&float).unwrap();
                assert_eq!(float_len(float), json.len(), "{json}");
                let number = serde_json::Number::from_f64(float).unwrap();
                assert_eq!(number_len(&number), json.len(), "{json}");
            }
        }
    }

    proptest::proptest! {
        /// A bound is never short, and is exact where it says so: a
        /// whole float below 10^15, an integer, a bool, null.
        #[test]
        fn bounds_are_never_short(
            float in proptest::strategy::Strategy::prop_filter(
                proptest::prelude::any::<f64>(),
                "finite",
                |x| x.is_finite(),
            ),
            whole in -1e15_f64..1e15,
            integer in proptest::prelude::any::<i64>(),
            text in ".{0,20}",
        ) {
            let whole = whole.trunc();
            proptest::prop_assert!(float_bound(float) >= float_len(float));
            proptest::prop_assert_eq!(float_bound(whole), float_len(whole));
            // The longest: 17 digits, a sign, a point and a 3-digit exponent.
            let longest = serde_json::to_string(&-f64::MIN_POSITIVE).unwrap();
            proptest::prop_assert_eq!(longest.len(), FLOAT_MAX_LEN);
            proptest::prop_assert_eq!(text_bound(&text), 2 + 6 * text.len());
            proptest::prop_assert!(text_bound(&text) >= str_len(&text));
            for value in [
                Value::from(float),
                Value::from(whole),
                Value::from(integer),
                Value::from(text.as_str()),
                Value::Bool(true),
                Value::Bool(false),
                Value::Null,
            ] {
                let exact = serde_json::to_vec(&value).unwrap().len();
                proptest::prop_assert!(value_bound(&value) >= exact, "{}", value);
                let whole = |f: f64| f.fract() == 0.0 && f.abs() < 1e15;
                if !value.is_string() && (value.is_i64() || value.as_f64().is_none_or(whole)) {
                    proptest::prop_assert_eq!(value_bound(&value), exact, "{}", value);
                }
            }
        }

        #[test]
        fn float_lengths_match_serde_json(
            float in proptest::strategy::Strategy::prop_filter(
                proptest::prelude::any::<f64>(),
                "finite",
                |x| x.is_finite(),
            ),
            whole in -1e17_f64..1e17,
        ) {
            for float in [float, whole.trunc()] {
                let json = serde_json::to_string(&float).unwrap();
                proptest::prop_assert_eq!(float_len(float), json.len(), "{}", json);
            }
        }
    }

    #[test]
    fn string_lengths_count_escapes_and_utf8_bytes() {
        for text in [
            "",
            "abc",
            "é",
            "a\"b\n",
            "\u{0}\u{1f}\u{7f}",
            "\\/",
            "한😀\t\r\u{8}\u{c}",
        ] {
            assert_eq!(
                str_len(text),
                serde_json::to_string(text).unwrap().len(),
                "{text:?}"
            );
        }
    }

    proptest::proptest! {
        /// Every byte that needs an escape, at every place in a word of
        /// eight and in the tail after the last whole word.
        #[test]
        fn string_lengths_match_serde_json_at_every_offset(
            text in "[a\"\\\\\\x00-\\x1f\\x7f é한😀]{0,20}",
        ) {
            proptest::prop_assert_eq!(str_len(&text), serde_json::to_string(&text).unwrap().len());
        }
    }

    #[test]
    fn one_escape_anywhere_in_a_long_string_is_counted() {
        for special in ['"', '\\', '\0', '\u{1f}', '\n'] {
            for at in 0..24 {
                let mut text = "x".repeat(23);
                text.insert(at, special);
                assert_eq!(
                    str_len(&text),
                    serde_json::to_string(&text).unwrap().len(),
                    "{text:?}"
                );
            }
        }
        // Bytes just past what is escaped: space, `!`, `#`, `[`, `]`, DEL, UTF-8.
        let plain = " !#[]\u{7f}\u{80}\u{ff}";
        assert_eq!(str_len(plain), plain.len() + 2);
    }

    #[test]
    fn echo_of_huge_array_is_cut() {
        let huge: Vec<u32> = (0..1_000_000).collect();
        let Err(ValidationError::NotAnObject { found, value, .. }) = to_object("properties", &huge)
        else {
            panic!("expected NotAnObject");
        };
        assert_eq!(found, "array");
        assert!(value.chars().count() < 300, "{}", value.len());
        assert!(value.starts_with("[0,1,2,"), "{value}");
    }
}
