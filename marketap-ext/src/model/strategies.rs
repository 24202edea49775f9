//! Random inputs for the model's property tests: texts that lean on JSON's
//! escapes, JSON values of every kind (floats of any finite value), ids
//! and property maps.

use proptest::prelude::*;
use serde_json::{Map, Value};

/// Strings that lean on what JSON escapes: quotes, backslashes,
/// control characters, DEL, and several widths of UTF-8.
pub(crate) fn text() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '"', '\\', '\n', '\r', '\t', '\u{8}', '\u{c}', '\0', '\u{1f}', '\u{7f}', 'é', '한', '😀',
        '\u{2028}', 'a', '/',
    ]);
    prop::collection::vec(prop_oneof![special, any::<char>()], 0..12).prop_map(String::from_iter)
}

pub(crate) fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// An id: no control characters, but quotes, backslashes and UTF-8.
pub(crate) fn id() -> impl Strategy<Value = String> {
    text().prop_map(|text| {
        let kept: String = text.chars().filter(|c| !c.is_control()).collect();
        format!("i{kept}")
    })
}

pub(crate) fn properties() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(text(), json_value(), 0..8)
        .prop_map(|properties| properties.into_iter().collect())
}
