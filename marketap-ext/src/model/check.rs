//! One pass over a finished item's `properties`: how deeply they nest
//! ([`MAX_DEPTH`]), their reserved names and types ([`crate::model::reserved`])
//! and their length as JSON, counted as serde_json would write it without
//! writing it. NaN and infinity need no look here: a `serde_json::Value`
//! cannot hold them, and the setters refuse them on the way in. Valid input
//! allocates nothing: paths and echoes are made only for an error.

use serde_json::{Map, Value};

use crate::{
    error::ValidationError,
    model::properties::{MAX_DEPTH, Path, compound_len, number_len, str_len, too_deep},
    model::reserved::{check_element, check_entry},
    model::taxonomy::Scope,
};

/// What the walk over valid-enough `properties` found.
#[derive(Debug, PartialEq)]
pub(crate) struct Walked {
    /// The length of the properties object as JSON, in bytes.
    pub(crate) bytes: usize,
    /// The first reserved-name problem, in the order the walk met it.
    pub(crate) reserved: Option<ValidationError>,
}

/// Walks `properties` once. Nesting past [`MAX_DEPTH`] is the error, as it
/// comes before every other problem; a reserved-name problem (looked for
/// only when `scope` is given: the scope of the top-level names) is
/// handed back in [`Walked::reserved`], so the caller decides its rank.
pub(crate) fn walk(
    properties: &Map<String, Value>,
    scope: Option<Scope>,
) -> Result<Walked, ValidationError> {
    let mut walk = Walk { reserved: None };
    let bytes = walk.object(properties, 1, scope, &Path::Root("properties"))?;
    Ok(Walked {
        bytes,
        reserved: walk.reserved,
    })
}

/// The walk's state: the first reserved-name problem found. Once one is
/// found, no more are looked for.
struct Walk {
    reserved: Option<ValidationError>,
}

impl Walk {
    /// Looks at `found` unless a problem was found before.
    fn reserved<T: Default>(&mut self, found: impl FnOnce() -> Result<T, ValidationError>) -> T {
        if self.reserved.is_some() {
            return T::default();
        }
        found().unwrap_or_else(|error| {
            self.reserved = Some(error);
            T::default()
        })
    }

    /// An object at nesting `level`, at `path`; `scope` governs its `mkt_`
    /// keys, if they are checked at all.
    fn object(
        &mut self,
        object: &Map<String, Value>,
        level: usize,
        scope: Option<Scope>,
        path: &Path<'_>,
    ) -> Result<usize, ValidationError> {
        if level > MAX_DEPTH {
            return Err(too_deep(path));
        }
        let mut members = 0;
        for (key, value) in object {
            let here = Path::Key(path, key);
            let elements = match scope {
                Some(scope) => self.reserved(|| check_entry(scope, key, value, &here)),
                None => None,
            };
            members += str_len(key) + 1 + self.value(value, level + 1, elements, &here)?;
        }
        Ok(compound_len(object.len(), members))
    }

    /// Any value at nesting `level` (counted for arrays and objects), at
    /// `path`; `elements` governs the fields of the objects of a reserved
    /// list.
    fn value(
        &mut self,
        value: &Value,
        level: usize,
        elements: Option<Scope>,
        path: &Path<'_>,
    ) -> Result<usize, ValidationError> {
        Ok(match value {
            Value::Null | Value::Bool(true) => 4,
            Value::Bool(false) => 5,
            Value::Number(number) => number_len(number),
            Value::String(text) => str_len(text),
            Value::Object(object) => self.object(object, level, None, path)?,
            Value::Array(list) => {
                if level > MAX_DEPTH {
                    return Err(too_deep(path));
                }
                let mut members = 0;
                for (index, element) in list.iter().enumerate() {
                    let here = Path::Index(path, index);
                    members += match (element, elements) {
                        (Value::Object(object), Some(fields)) => {
                            let checked = self.reserved.is_none().then_some(fields);
                            self.object(object, level + 1, checked, &here)?
                        }
                        (_, Some(fields)) => {
                            self.reserved(|| check_element(fields, element, &here));
                            self.value(element, level + 1, None, &here)?
                        }
                        (_, None) => self.value(element, level + 1, None, &here)?,
                    };
                }
                compound_len(list.len(), members)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            other => panic!("not an object: {other}"),
        }
    }

    fn bytes(value: Value) -> usize {
        walk(&object(value), None).unwrap().bytes
    }

    #[test]
    fn counts_escapes_and_utf8_bytes() {
        let accents = json!({ "s": "é".repeat(1000) });
        assert_eq!(bytes(accents), 2008);
        let escapes = json!({"q": "a\"b\n\\\u{1f}\u{7f}\t"});
        assert_eq!(
            bytes(escapes.clone()),
            r#"{"q":"a\"b\n\\\u001f"#.len() + "\u{7f}".len() + r#"\t"}"#.len()
        );
        assert_eq!(bytes(escapes.clone()), escapes.to_string().len());
    }

    #[test]
    fn counts_numbers_as_serde_json_writes_them() {
        for number in [
            json!(0),
            json!(9),
            json!(10),
            json!(-1),
            json!(-10),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(0.0),
            json!(-0.0),
            json!(1.5),
            json!(1e300),
            json!(f64::MIN_POSITIVE),
            json!(59_000.0),
        ] {
            let value = json!({ "n": number });
            assert_eq!(bytes(value.clone()), value.to_string().len(), "{value}");
        }
    }

    #[test]
    fn empty_and_nested_compounds() {
        for value in [
            json!({}),
            json!({"a": []}),
            json!({"a": {}}),
            json!({"a": [1, [2, 3], {"b": null, "c": true, "d": false}]}),
        ] {
            assert_eq!(bytes(value.clone()), value.to_string().len(), "{value}");
        }
    }

    #[test]
    fn depth_limit_is_exact_and_names_the_path() {
        // `properties` is level 1: 63 arrays inside it reach level 64.
        let nest = |levels: usize| {
            let mut value = json!(1);
            for _ in 0..levels {
                value = json!([value]);
            }
            json!({ "a": value })
        };
        assert!(walk(&object(nest(MAX_DEPTH - 1)), None).is_ok());
        let Err(ValidationError::TooDeep { field, max }) = walk(&object(nest(MAX_DEPTH)), None)
        else {
            panic!("expected TooDeep");
        };
        assert_eq!(max, MAX_DEPTH);
        let path = format!("properties.a{}", "[0]".repeat(MAX_DEPTH - 1));
        assert_eq!(field, crate::echo::echo(&path));
    }

    #[test]
    fn depth_comes_before_a_reserved_problem_met_earlier() {
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!({ "x": deep });
        }
        let properties = object(json!({ "mkt_revenu": 1, "z": deep }));
        assert!(matches!(
            walk(&properties, Some(Scope::EventProperty)),
            Err(ValidationError::TooDeep { .. })
        ));
        let shallow = object(json!({ "mkt_revenu": 1 }));
        let walked = walk(&shallow, Some(Scope::EventProperty)).unwrap();
        assert!(matches!(
            walked.reserved,
            Some(ValidationError::NotReserved { .. })
        ));
        assert_eq!(walk(&shallow, None).unwrap().reserved, None);
    }

    /// Strings that lean on what JSON escapes: quotes, backslashes,
    /// control characters, DEL, and several widths of UTF-8.
    fn text() -> impl Strategy<Value = String> {
        let special = prop::sample::select(vec![
            '"', '\\', '\n', '\r', '\t', '\u{8}', '\u{c}', '\0', '\u{1f}', '\u{7f}', 'é', '한',
            '😀', '\u{2028}', 'a', '/',
        ]);
        prop::collection::vec(prop_oneof![special, any::<char>()], 0..12)
            .prop_map(String::from_iter)
    }

    fn json_value() -> impl Strategy<Value = Value> {
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
    fn id() -> impl Strategy<Value = String> {
        text().prop_map(|text| {
            let kept: String = text.chars().filter(|c| !c.is_control()).collect();
            format!("i{kept}")
        })
    }

    fn properties() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::btree_map(text(), json_value(), 0..8)
            .prop_map(|properties| properties.into_iter().collect())
    }

    proptest! {
        #[test]
        fn an_event_counts_its_own_wire_length(
            user_id in id(),
            event_name in id(),
            properties in properties(),
            millis in prop::option::of(0_i64..4_102_444_800_000),
            nanos in prop::sample::select(vec![0_i64, 1, 1_000, 123_000, 5_000_000]),
        ) {
            let raw = marketap_api::types::CreateEventReq {
                user_id,
                event_name,
                properties,
                timestamp: millis.map(|millis| {
                    crate::Timestamp::from_unix_millis(millis).unwrap().into_datetime()
                        + chrono::Duration::nanoseconds(nanos)
                }),
            };
            let event = crate::EventBuilder::from(raw).skip_reserved_check().build().unwrap();
            prop_assert_eq!(event.wire_bytes(), serde_json::to_vec(&event).unwrap().len());
        }

        #[test]
        fn a_profile_counts_its_own_wire_length(
            user_id in id(),
            properties in properties(),
        ) {
            let raw = marketap_api::types::BulkUserProfile {
                user_id,
                properties,
            };
            let profile = crate::UserProfileBuilder::from(raw)
                .skip_reserved_check()
                .build()
                .unwrap();
            prop_assert_eq!(profile.wire_bytes(), serde_json::to_vec(&profile).unwrap().len());
        }

        #[test]
        fn count_equals_serde_json_length(
            properties in prop::collection::btree_map(text(), json_value(), 0..8),
        ) {
            let properties: Map<String, Value> = properties.into_iter().collect();
            let walked = walk(&properties, None).unwrap();
            prop_assert_eq!(walked.bytes, serde_json::to_vec(&properties).unwrap().len());
        }
    }
}
