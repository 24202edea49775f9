//! One pass over a finished item's `properties`: how deeply they nest
//! ([`MAX_DEPTH`]), their reserved names and types ([`crate::model::reserved`])
//! and a bound of their length as JSON: exact, as serde_json would write it
//! without writing it, but for the values typed setters counted. NaN and infinity need no look here: a `serde_json::Value`
//! cannot hold them, and the setters refuse them on the way in. Valid input
//! allocates nothing: paths and echoes are made only for an error.
//!
//! A value that a typed setter put in is [`Known`]: a list of
//! [`Product`](crate::Product)s (`mkt_items`, `mkt_cart`, `mkt_wish_list`)
//! or a plain value of its reserved name's type (`mkt_order_id`,
//! `mkt_revenue`, a member's `mkt_email`, ...). A bound of its length was
//! counted as it was built, without reading its strings
//! ([`crate::model::properties::value_bound`]), and every name and value in it is one the reserved check
//! passes, so the walk takes the length and does not look inside.

use serde_json::{Map, Value};

use crate::{
    error::ValidationError,
    model::properties::{MAX_DEPTH, Path, compound_len, number_len, str_len, too_deep},
    model::reserved::{check_element, check_entry},
    model::taxonomy::{Scope, event_property, user_property},
};

/// `KnownName`: its variants, each with the property it stands for.
macro_rules! known_names {
    ($($variant:ident => $name:path,)*) => {
        /// The reserved properties a typed setter writes: one byte each in
        /// [`Known`], where a name would take sixteen.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum KnownName {
            $($variant,)*
        }

        impl KnownName {
            #[cfg(test)]
            const ALL: &[Self] = &[$(Self::$variant),*];

            /// The property's name.
            pub(crate) const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

known_names! {
    Revenue => event_property::REVENUE,
    OrderId => event_property::ORDER_ID,
    Items => event_property::ITEMS,
    Name => user_property::NAME,
    PhoneNumber => user_property::PHONE_NUMBER,
    Email => user_property::EMAIL,
    Gender => user_property::GENDER,
    Grade => user_property::GRADE,
    TextMessageOptIn => user_property::TEXT_MESSAGE_OPT_IN,
    KakaoOptIn => user_property::KAKAO_OPT_IN,
    EmailOptIn => user_property::EMAIL_OPT_IN,
    AvailablePoints => user_property::AVAILABLE_POINTS,
    CartTotalPrice => user_property::CART_TOTAL_PRICE,
    WishListTotalPrice => user_property::WISH_LIST_TOTAL_PRICE,
    Cart => user_property::CART,
    WishList => user_property::WISH_LIST,
}

/// The top-level properties that a typed setter wrote, each with a bound
/// of its value's length as JSON. What such a value holds passes every check of
/// the walk by construction: a reserved name of the builder's scope with a
/// value of its type (a list of products: objects of item fields of their
/// types, three levels deep), numbers finite (a non-finite one was refused
/// when the value was made). Up to [`Known::CAPACITY`] are kept (a
/// purchase's items, order id and revenue), each bound at most
/// `u32::MAX`; any other value is walked as any other. Whatever sets a
/// property otherwise forgets its name here.
///
/// Twenty bytes (it held names, 104), so that a builder, moved through
/// each setter, stays within 128 bytes: a move of that size is a few
/// vector stores, a larger one a call to `memcpy`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Known {
    names: [Option<KnownName>; Known::CAPACITY],
    bytes: [u32; Known::CAPACITY],
}

impl Known {
    /// How many values are kept.
    const CAPACITY: usize = 4;

    /// No known values.
    const NONE: Self = Self {
        names: [None; Known::CAPACITY],
        bytes: [0; Known::CAPACITY],
    };

    /// Records that `name` holds a value a typed setter made, at most
    /// `bytes` long as JSON.
    #[inline]
    pub(crate) fn insert(&mut self, name: KnownName, bytes: usize) {
        let Ok(bytes) = u32::try_from(bytes) else {
            return self.forget(name.as_str());
        };
        // The names kept come first: `name` is before the first free slot,
        // if it is kept.
        let slot = self
            .names
            .iter()
            .position(|known| known.is_none_or(|known| known == name));
        if let Some(slot) = slot {
            self.names[slot] = Some(name);
            self.bytes[slot] = bytes;
        }
    }

    /// `name` now holds a value the walk must look at.
    #[inline]
    pub(crate) fn forget(&mut self, name: &str) {
        let slot = self
            .names
            .iter()
            .position(|known| known.is_some_and(|known| known.as_str() == name));
        if let Some(slot) = slot {
            // The names after it move up: the names kept stay first.
            self.names.copy_within(slot + 1.., slot);
            self.bytes.copy_within(slot + 1.., slot);
            self.names[Self::CAPACITY - 1] = None;
        }
    }

    /// Every name may now hold a value the walk must look at.
    pub(crate) fn clear(&mut self) {
        *self = Self::NONE;
    }

    /// The bound of `name`'s value's length, if it is known.
    fn get(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .zip(self.bytes)
            .find(|(known, _)| known.is_some_and(|known| known.as_str() == name))
            .map(|(_, bytes)| bytes as usize)
    }
}

/// What the walk over valid-enough `properties` found.
#[derive(Debug, PartialEq)]
pub(crate) struct Walked {
    /// At least the length of the properties object as JSON, in bytes:
    /// exact but for the [`Known`] values' bounds.
    pub(crate) bytes: usize,
    /// The first reserved-name problem, in the order the walk met it.
    pub(crate) reserved: Option<ValidationError>,
}

/// Walks `properties` once. Nesting past [`MAX_DEPTH`] is the error, as it
/// comes before every other problem; a reserved-name problem (looked for
/// only when `scope` is given: the scope of the top-level names) is
/// handed back in [`Walked::reserved`], so the caller decides its rank.
/// The values of `known` names are counted, not walked.
pub(crate) fn walk(
    properties: &Map<String, Value>,
    scope: Option<Scope>,
    known: &Known,
) -> Result<Walked, ValidationError> {
    let mut walk = Walk { reserved: None };
    let bytes = walk.object(properties, 1, scope, &Path::Root("properties"), known)?;
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
    /// keys, if they are checked at all; the values of `known` keys are
    /// counted, not walked.
    fn object(
        &mut self,
        object: &Map<String, Value>,
        level: usize,
        scope: Option<Scope>,
        path: &Path<'_>,
        known: &Known,
    ) -> Result<usize, ValidationError> {
        if level > MAX_DEPTH {
            return Err(too_deep(path));
        }
        let mut members = 0;
        for (key, value) in object {
            if let Some(bytes) = known.get(key) {
                debug_assert!(bytes >= crate::model::properties::json_len(value), "{key}");
                // A name of the taxonomy: nothing in it is escaped.
                debug_assert_eq!(str_len(key), key.len() + 2, "{key}");
                members += key.len() + r#""":"#.len() + bytes;
                continue;
            }
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
            Value::Object(object) => self.object(object, level, None, path, &Known::NONE)?,
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
                            self.object(object, level + 1, checked, &here, &Known::NONE)?
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
    use crate::model::strategies::{id, json_value, properties, text};
    use crate::taxonomy::{event_property, user_property};

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            other => panic!("not an object: {other}"),
        }
    }

    fn bytes(value: Value) -> usize {
        walk(&object(value), None, &Known::NONE).unwrap().bytes
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
        assert!(walk(&object(nest(MAX_DEPTH - 1)), None, &Known::NONE).is_ok());
        let Err(ValidationError::TooDeep { field, max }) =
            walk(&object(nest(MAX_DEPTH)), None, &Known::NONE)
        else {
            panic!("expected TooDeep");
        };
        assert_eq!(max, MAX_DEPTH);
        let path = format!("properties.a{}", "[0]".repeat(MAX_DEPTH - 1));
        assert_eq!(field, crate::echo::echo(&path));
    }

    /// `property` counts a plain value under a name that is not reserved
    /// as it is set; anything else is still walked in `build()`: a value
    /// of the wrong type under a reserved name, and nesting too deep.
    #[test]
    fn a_reserved_or_nested_property_is_still_walked() {
        let wrong = crate::Event::builder("u", "e")
            .property(event_property::REVENUE, "a lot")
            .build();
        assert!(
            matches!(wrong, Err(ValidationError::WrongType { .. })),
            "{wrong:?}"
        );
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!([deep]);
        }
        let deep = crate::Event::builder("u", "e").property("a", deep).build();
        assert!(
            matches!(deep, Err(ValidationError::TooDeep { .. })),
            "{deep:?}"
        );
    }

    #[test]
    fn depth_limit_is_exact_for_objects_too() {
        // `properties` is level 1: 63 objects inside it reach level 64.
        let nest = |levels: usize| {
            let mut value = json!(1);
            for _ in 0..levels {
                value = json!({ "o": value });
            }
            object(value)
        };
        assert!(walk(&nest(MAX_DEPTH), None, &Known::NONE).is_ok());
        let Err(ValidationError::TooDeep { field, .. }) =
            walk(&nest(MAX_DEPTH + 1), None, &Known::NONE)
        else {
            panic!("expected TooDeep");
        };
        let path = format!("properties{}", ".o".repeat(MAX_DEPTH));
        assert_eq!(field, crate::echo::echo(&path));
    }

    #[test]
    fn each_known_name_is_a_reserved_property_of_its_own() {
        let mut names: Vec<_> = KnownName::ALL.iter().map(|name| name.as_str()).collect();
        for name in &names {
            let event = event_property::ALL.contains(name);
            assert!(event || user_property::ALL.contains(name), "{name}");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KnownName::ALL.len());
    }

    /// A known list is counted, not walked: a bogus field inside it goes
    /// unseen (the SDK never builds one; this shows the walk skips it), and
    /// once forgotten it is walked and found.
    #[test]
    fn a_known_list_is_counted_not_walked_until_forgotten() {
        let properties = object(json!({ "mkt_items": [{ "mkt_bogus": 1 }], "z": 1 }));
        let list_bytes = crate::model::properties::json_len(&properties["mkt_items"]);
        let scope = Some(Scope::EventProperty);
        let walked = |known: &Known| walk(&properties, scope, known).unwrap();

        let mut known = Known::default();
        known.insert(KnownName::Items, list_bytes);
        known.insert(KnownName::Cart, 7);
        known.insert(KnownName::Email, 8);
        known.insert(KnownName::Name, 3);
        known.insert(KnownName::WishList, 9);
        assert_eq!(walked(&known).reserved, None);
        assert_eq!(
            walked(&known).bytes,
            serde_json::to_vec(&properties).unwrap().len()
        );
        assert_eq!(known.get(user_property::CART), Some(7));
        assert_eq!(known.get(user_property::NAME), Some(3));
        assert_eq!(known.get(user_property::WISH_LIST), None, "four at most");
        known.forget(user_property::EMAIL);
        known.forget(user_property::NAME);
        assert_eq!(known.get(user_property::EMAIL), None);
        assert_eq!(known.get(user_property::NAME), None);

        known.insert(KnownName::Items, list_bytes);
        assert_eq!(
            known.get(event_property::ITEMS),
            Some(list_bytes),
            "set again, kept once"
        );
        known.forget(user_property::CART);
        assert_eq!(known.get(user_property::CART), None);
        assert_eq!(known.get(event_property::ITEMS), Some(list_bytes));
        assert_eq!(walked(&known).reserved, None);
        known.forget(event_property::ITEMS);
        assert!(matches!(
            walked(&known).reserved,
            Some(ValidationError::NotReserved { .. })
        ));

        // Set again after a name before it was forgotten: kept once, so
        // forgotten at once.
        known.insert(KnownName::Cart, 7);
        known.insert(KnownName::Email, 8);
        known.forget(user_property::CART);
        known.insert(KnownName::Email, 5);
        assert_eq!(known.get(user_property::EMAIL), Some(5));
        known.forget(user_property::EMAIL);
        assert_eq!(known.get(user_property::EMAIL), None);

        known.insert(KnownName::Items, list_bytes);
        let past_u32 = usize::try_from(u64::from(u32::MAX) + 1).unwrap();
        known.insert(KnownName::Items, past_u32);
        assert_eq!(
            known.get(event_property::ITEMS),
            None,
            "past u32::MAX: walked"
        );
        known.insert(KnownName::Items, list_bytes);
        known.clear();
        assert_eq!(known.get(event_property::ITEMS), None);
        assert!(matches!(
            walked(&known).reserved,
            Some(ValidationError::NotReserved { .. })
        ));
    }

    /// Inside a list the reserved check looks into (`mkt_items`), its
    /// objects and other elements count their levels as anywhere else.
    #[test]
    fn depth_limit_is_exact_inside_a_reserved_list() {
        let scope = Some(Scope::EventProperty);
        // `properties` 1, `mkt_items` 2, its element 3: 61 more reach 64.
        let nest = |levels: usize, element: fn(Value) -> Value| {
            let mut value = json!(1);
            for _ in 0..levels {
                value = element(value);
            }
            object(json!({ "mkt_items": [value] }))
        };
        let in_objects = |value| json!({ "x": value });
        let in_arrays = |value| json!([value]);
        for element in [in_objects as fn(Value) -> Value, in_arrays] {
            assert!(walk(&nest(MAX_DEPTH - 2, element), scope, &Known::NONE).is_ok());
            assert!(matches!(
                walk(&nest(MAX_DEPTH - 1, element), scope, &Known::NONE),
                Err(ValidationError::TooDeep { .. })
            ));
        }
    }

    #[test]
    fn depth_comes_before_a_reserved_problem_met_earlier() {
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!({ "x": deep });
        }
        let properties = object(json!({ "mkt_revenu": 1, "z": deep }));
        assert!(matches!(
            walk(&properties, Some(Scope::EventProperty), &Known::NONE),
            Err(ValidationError::TooDeep { .. })
        ));
        let shallow = object(json!({ "mkt_revenu": 1 }));
        let walked = walk(&shallow, Some(Scope::EventProperty), &Known::NONE).unwrap();
        assert!(matches!(
            walked.reserved,
            Some(ValidationError::NotReserved { .. })
        ));
        assert_eq!(walk(&shallow, None, &Known::NONE).unwrap().reserved, None);
    }

    /// A product with every field, its texts from `texts` (which may need
    /// escapes), set twice where `again` says so (a replaced field is
    /// counted once).
    fn product(texts: &[String], price: f64, quantity: u32, again: bool) -> crate::Product {
        let text = |i: usize| texts[i % texts.len()].clone();
        let mut product = crate::Product::new(text(0))
            .name(text(1))
            .category1(text(2))
            .category2(text(3))
            .category3(text(4))
            .category4(text(5))
            .category5(text(6))
            .price(price)
            .quantity(quantity)
            .variant(text(7))
            .brand(text(8))
            .option_price(-price)
            .shipping_info(text(9))
            .bundle_info(text(10))
            .created_datetime(text(11));
        if again {
            product = product
                .name(text(12))
                .price(price / 3.0)
                .quantity(quantity / 2);
        }
        product
    }

    #[test]
    fn a_known_list_replaced_by_a_property_is_walked_again() {
        use crate::taxonomy::{event, event_property, user_property};
        use crate::{Event, UserProfile, ValidationError};

        let item = || crate::Product::new("sku").price(1.0);
        let bad = json!([{ "mkt_product_idd": "sku" }]);
        let replaced = Event::builder("u", event::PURCHASE)
            .items([item()])
            .property(event_property::ITEMS, &bad)
            .build();
        assert!(
            matches!(replaced, Err(ValidationError::NotReserved { .. })),
            "{replaced:?}"
        );
        let merged = Event::builder("u", event::PURCHASE)
            .items([item()])
            .properties(json!({ event_property::ITEMS: "not a list" }))
            .build();
        assert!(
            matches!(merged, Err(ValidationError::WrongType { .. })),
            "{merged:?}"
        );
        let profile = UserProfile::builder("u")
            .cart([item()])
            .wish_list([item()])
            .property(user_property::WISH_LIST, &bad)
            .build();
        assert!(
            matches!(profile, Err(ValidationError::NotReserved { .. })),
            "{profile:?}"
        );
        // Set again by the typed setter, it is known again, and counted once.
        let event = Event::builder("u", event::PURCHASE)
            .items([item()])
            .property(event_property::ITEMS, &bad)
            .items([item(), item()])
            .build()
            .unwrap();
        within_bounds(event.wire_bound(), &serde_json::to_vec(&event).unwrap()).unwrap();
    }

    /// `bound` is at least the length of `json`, and at most eight times
    /// it (a string is bounded by six bytes per byte, a float by 24 bytes,
    /// which is eight times the three of `0.5`).
    fn within_bounds(bound: usize, json: &[u8]) -> Result<(), TestCaseError> {
        prop_assert!(bound >= json.len(), "{bound} < {}", json.len());
        prop_assert!(bound <= 8 * json.len(), "{bound} > 8 × {}", json.len());
        Ok(())
    }

    /// A string, an integer, a finite float, a bool or null.
    fn plain_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            text().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
        ]
    }

    proptest! {
        #[test]
        fn a_typed_event_counts_its_own_wire_length(
            user_id in id(),
            texts in prop::collection::vec(text(), 1..14),
            price in any::<f64>().prop_filter("finite", |x| x.is_finite()),
            quantity in any::<u32>(),
            again in any::<bool>(),
            count in 0_usize..3,
            extra in properties(),
        ) {
            let products = (0..count).map(|i| product(&texts, price + i as f64, quantity, again));
            let event = crate::Event::purchase(user_id.clone(), texts[0].clone(), price, products)
                .properties(&extra)
                .items((0..count).map(|_| product(&texts, price, quantity, again)))
                .skip_reserved_check()
                .build()
                .unwrap();
            within_bounds(event.wire_bound(), &serde_json::to_vec(&event).unwrap())?;

            let products = || (0..count).map(|_| product(&texts, price, quantity, again));
            let profile = crate::UserProfile::builder(user_id)
                .cart(products())
                .wish_list(products())
                .properties(&extra)
                .cart(products())
                .skip_reserved_check()
                .build()
                .unwrap();
            within_bounds(profile.wire_bound(), &serde_json::to_vec(&profile).unwrap())?;
        }

        /// Every typed member setter counts its value as it sets it: more
        /// of them than [`Known`] keeps (the rest are walked), texts with
        /// escapes, both flags, any points and prices; and a typed value
        /// replaced by `property` is walked again.
        #[test]
        fn a_typed_profile_counts_its_own_wire_length(
            texts in prop::collection::vec(text(), 5..6),
            flags in any::<[bool; 3]>(),
            points in any::<i64>(),
            prices in any::<[f64; 2]>().prop_filter("finite", |p| p.iter().all(|x| x.is_finite())),
            gender in prop::sample::select(user_property::Gender::ALL.to_vec()),
            replaced in any::<bool>(),
            checked in any::<bool>(),
        ) {
            let mut builder = crate::UserProfile::builder("u")
                .name(texts[0].clone())
                .phone_number(texts[1].clone())
                .email(texts[2].clone())
                .gender(gender)
                .grade(texts[3].clone())
                .text_message_opt_in(flags[0])
                .kakao_opt_in(flags[1])
                .email_opt_in(flags[2])
                .available_points(points)
                .cart_total_price(prices[0])
                .wish_list_total_price(prices[1]);
            if replaced {
                builder = builder.property(user_property::NAME, &texts[4]);
            }
            if !checked {
                builder = builder.skip_reserved_check();
            }
            let profile = builder.build().unwrap();
            within_bounds(profile.wire_bound(), &serde_json::to_vec(&profile).unwrap())?;
            let order = crate::Event::purchase("u", texts[4].clone(), prices[0], [])
                .build()
                .unwrap();
            within_bounds(order.wire_bound(), &serde_json::to_vec(&order).unwrap())?;
        }

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
            // Walked: counted exactly.
            let json = serde_json::to_vec(&event).unwrap();
            prop_assert_eq!(event.wire_bound(), json.len());
            prop_assert_eq!(event.wire_bytes(), json.len());
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
            let json = serde_json::to_vec(&profile).unwrap();
            prop_assert_eq!(profile.wire_bound(), json.len());
            prop_assert_eq!(profile.wire_bytes(), json.len());
        }

        /// Plain values set by `property` under names that are not
        /// reserved are counted as they are set (no walk in `build()`):
        /// each string by its bound, everything else exactly.
        #[test]
        fn plain_properties_are_bounded_as_they_are_set(
            values in prop::collection::btree_map(
                text().prop_map(|key| format!("k{key}")),
                plain_value(),
                0..8,
            ),
            again in any::<bool>(),
        ) {
            let mut builder = crate::Event::builder("u", "e");
            for (key, value) in &values {
                builder = builder.property(key, value);
                if again {
                    // Set twice: the first is taken off (here by walking).
                    builder = builder.property(key, value);
                }
            }
            let event = builder.build().unwrap();
            let json = serde_json::to_vec(&event).unwrap();
            within_bounds(event.wire_bound(), &json)?;
            use crate::model::properties::{json_len, text_bound, value_bound};
            let extra: usize = values
                .iter()
                .filter(|_| !again)
                .map(|(key, value)| {
                    text_bound(key) - str_len(key) + value_bound(value) - json_len(value)
                })
                .sum();
            prop_assert_eq!(event.wire_bound(), json.len() + extra);
        }

        #[test]
        fn count_equals_serde_json_length(
            properties in prop::collection::btree_map(text(), json_value(), 0..8),
        ) {
            let properties: Map<String, Value> = properties.into_iter().collect();
            let walked = walk(&properties, None, &Known::NONE).unwrap();
            prop_assert_eq!(walked.bytes, serde_json::to_vec(&properties).unwrap().len());
        }
    }
}
