//! The reserved-name check. In an event or a user profile, every name that starts with `mkt_`
//! must be one Marketap reserves where it is used ([`Scope`]) and hold a value of its
//! [`ValueType`], down into the item and coupon objects of `mkt_items`, `mkt_cart`,
//! `mkt_wish_list` and `mkt_coupons`; an event name must not be one that only the mobile SDKs
//! send. Other names are never looked at. The names and types are [`crate::taxonomy`]'s; this
//! module only reads them. Valid input allocates nothing: paths, echoes and suggestions are
//! made only for an error.

use chrono::{DateTime, NaiveDate};
use serde_json::Value;

use crate::{
    echo::echo,
    error::ValidationError,
    model::properties::{Path, json_type},
    model::taxonomy::{
        RESERVED_PREFIX, Scope, ValueType, event, is_reserved, sdk_event, user_property,
    },
    model::timestamp::Timestamp,
};

/// Names Marketap's SDKs renamed: where, the old name, the new one.
const RENAMED: &[(Scope, &str, &str)] = &[(
    Scope::UserProperty,
    "mkt_date_of_birth",
    user_property::BIRTH,
)];

/// Whether `name` is an event Marketap reserves ([`event::ALL`]): one of
/// this crate's constants, so printable ASCII that passes every check.
#[inline]
pub(crate) fn is_reserved_event(name: &str) -> bool {
    is_reserved(name) && event::ALL.contains(&name)
}

/// Checks an event's name: a reserved one must be an event Marketap
/// reserves, and not one only its mobile SDKs send.
pub(crate) fn check_event_name(name: &str) -> Result<(), ValidationError> {
    if !is_reserved(name) || is_reserved_event(name) {
        return Ok(());
    }
    if let Some(sdk_only) = sdk_event::ALL.iter().find(|sdk_only| **sdk_only == name) {
        return Err(ValidationError::SdkOnlyEvent { name: sdk_only });
    }
    Err(not_reserved(
        &Path::Root("event_name"),
        name,
        Scope::EventName,
    ))
}

/// Checks one entry of an object whose `mkt_` keys `scope` governs; the
/// entry is at `path`. For a list of item or coupon objects, returns the
/// scope of its elements' fields, which the caller checks with
/// [`check_element`] as it walks them.
pub(crate) fn check_entry(
    scope: Scope,
    key: &str,
    value: &Value,
    path: &Path<'_>,
) -> Result<Option<Scope>, ValidationError> {
    if !is_reserved(key) {
        return Ok(None);
    }
    let Some(expected) = scope.value_type(key) else {
        return Err(not_reserved(path, key, scope));
    };
    let (list, fields) = match expected {
        ValueType::ItemList => (expected, Scope::ItemField),
        ValueType::CouponList => (expected, Scope::CouponField),
        _ if value.is_null() || fits(expected, value) => return Ok(None),
        _ => return Err(wrong_type(path, expected, value)),
    };
    match value {
        Value::Null => Ok(None),
        Value::Array(_) => Ok(Some(fields)),
        other => Err(wrong_type(path, list, other)),
    }
}

/// Checks that an element (at `path`) of a list whose elements' fields
/// `fields` governs is an object; its entries are then checked with
/// [`check_entry`].
pub(crate) fn check_element(
    fields: Scope,
    value: &Value,
    path: &Path<'_>,
) -> Result<(), ValidationError> {
    if value.is_object() {
        return Ok(());
    }
    let element = match fields {
        Scope::CouponField => ValueType::CouponObject,
        _ => ValueType::ItemObject,
    };
    Err(wrong_type(path, element, value))
}

/// Whether `value` (not null) is of type `expected`.
fn fits(expected: ValueType, value: &Value) -> bool {
    match expected {
        ValueType::String => value.is_string(),
        ValueType::Integer => value.is_i64() || value.is_u64(),
        ValueType::NonNegativeInteger => value.is_u64(),
        ValueType::Number => value.is_number(),
        ValueType::Bool => value.is_boolean(),
        ValueType::Date => value.as_str().is_some_and(is_date),
        ValueType::Instant => value.as_str().is_some_and(is_utc_instant),
        ValueType::Gender => value.as_str().is_some_and(|text| {
            user_property::Gender::ALL
                .iter()
                .any(|gender| gender.as_str() == text)
        }),
        ValueType::ItemList | ValueType::CouponList => value.is_array(),
        ValueType::ItemObject | ValueType::CouponObject => value.is_object(),
    }
}

/// Exactly `YYYY-MM-DD`, a date that exists.
fn is_date(text: &str) -> bool {
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(
            (number(0..4), number(5..7), number(8..10)),
            (Some(year), Some(month), Some(day))
                if NaiveDate::from_ymd_opt(year as i32, month, day).is_some()
        )
}

/// An RFC 3339 date-time in UTC that the wire can carry.
fn is_utc_instant(text: &str) -> bool {
    DateTime::parse_from_rfc3339(text).is_ok_and(|instant| {
        instant.offset().local_minus_utc() == 0 && Timestamp::try_from(instant).is_ok()
    })
}

fn wrong_type(path: &Path<'_>, expected: ValueType, value: &Value) -> ValidationError {
    ValidationError::WrongType {
        field: echo(&path.to_string()),
        expected,
        found: json_type(value),
        value: echo(&value.to_string()),
    }
}

fn not_reserved(path: &Path<'_>, name: &str, scope: Scope) -> ValidationError {
    let reserved_as = Scope::ALL
        .into_iter()
        .find(|other| *other != scope && other.reserves(name));
    ValidationError::NotReserved {
        field: echo(&path.to_string()),
        name: echo(name),
        scope,
        suggestion: reserved_as
            .is_none()
            .then(|| closest(name, scope))
            .flatten(),
        reserved_as,
    }
}

/// The name reserved in `scope` that `name` most likely meant: a known rename, else the
/// nearest by edit distance when the distance is at most a quarter of the longer name (without
/// the prefix), or a reserved name that starts with `name` or that `name` starts with (four
/// characters at least: `mkt_phone` → `mkt_phone_number`).
fn closest(name: &str, scope: Scope) -> Option<&'static str> {
    if let Some((.., new)) = RENAMED
        .iter()
        .find(|(renamed_in, old, _)| *renamed_in == scope && *old == name)
    {
        return Some(new);
    }
    let given = name.strip_prefix(RESERVED_PREFIX).unwrap_or(name);
    let mut best: Option<(usize, &'static str)> = None;
    for candidate in scope.names() {
        let reserved = candidate.strip_prefix(RESERVED_PREFIX).unwrap_or(candidate);
        let distance = edit_distance(given, reserved);
        let longest = given.chars().count().max(reserved.chars().count());
        let (short, long) = if given.len() <= reserved.len() {
            (given, reserved)
        } else {
            (reserved, given)
        };
        let close = distance * 4 <= longest || (short.len() >= 4 && long.starts_with(short));
        if close && best.is_none_or(|(nearest, _)| distance < nearest) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// The optimal-string-alignment distance: insertions, deletions, substitutions and swaps of
/// two neighbours, each counting one.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Rows i - 2, i - 1 and i of the distance table.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let substitution = usize::from(a[i - 1] != b[j - 1]);
            current[j] = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + substitution);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                current[j] = current[j].min(before[j - 2] + 1);
            }
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::taxonomy::{coupon_field, event_property, item_field};

    #[test]
    fn edit_distance_counts_swaps_as_one() {
        for (a, b, distance) in [
            ("", "", 0),
            ("revenue", "revenue", 0),
            ("revenu", "revenue", 1),
            ("emial", "email", 1),
            ("revneue", "revenue", 1),
            ("kitten", "sitting", 3),
            ("", "abc", 3),
            ("생일", "생년월일", 2),
        ] {
            assert_eq!(edit_distance(a, b), distance, "{a} / {b}");
            assert_eq!(edit_distance(b, a), distance, "{b} / {a}");
        }
    }

    #[test]
    fn suggestions_are_close_names_of_the_same_scope() {
        for (scope, given, suggestion) in [
            (
                Scope::EventProperty,
                "mkt_revenu",
                Some(event_property::REVENUE),
            ),
            (
                Scope::EventProperty,
                "mkt_revneue",
                Some(event_property::REVENUE),
            ),
            (
                Scope::EventProperty,
                "mkt_item",
                Some(event_property::ITEMS),
            ),
            (
                Scope::EventProperty,
                "mkt_order",
                Some(event_property::ORDER_ID),
            ),
            (
                Scope::UserProperty,
                "mkt_date_of_birth",
                Some(user_property::BIRTH),
            ),
            (
                Scope::UserProperty,
                "mkt_birthday",
                Some(user_property::BIRTH),
            ),
            (Scope::UserProperty, "mkt_emial", Some(user_property::EMAIL)),
            (
                Scope::UserProperty,
                "mkt_phone",
                Some(user_property::PHONE_NUMBER),
            ),
            (
                Scope::UserProperty,
                "mkt_wishlist",
                Some(user_property::WISH_LIST),
            ),
            (
                Scope::UserProperty,
                "mkt_email_optin",
                Some(user_property::EMAIL_OPT_IN),
            ),
            (
                Scope::ItemField,
                "mkt_prodcut_id",
                Some(item_field::PRODUCT_ID),
            ),
            (Scope::ItemField, "mkt_quantiy", Some(item_field::QUANTITY)),
            (
                Scope::ItemField,
                "mkt_category",
                Some(item_field::CATEGORY1),
            ),
            (
                Scope::CouponField,
                "mkt_expire_at",
                Some(coupon_field::EXPIRES_AT),
            ),
            (Scope::EventName, "mkt_purchse", Some(event::PURCHASE)),
            (
                Scope::EventName,
                "mkt_add_to_wish_list",
                Some(event::ADD_TO_WISHLIST),
            ),
            (Scope::EventName, "mkt_pageview", Some(event::PAGE_VIEW)),
            // Far from every reserved name: no guess.
            (Scope::EventProperty, "mkt_discount", None),
            (Scope::UserProperty, "mkt_id", None),
            (Scope::ItemField, "mkt_qty", None),
            (Scope::EventName, "mkt_refund", None),
            // The rename is a user property's; elsewhere it is just far.
            (Scope::EventProperty, "mkt_date_of_birth", None),
        ] {
            assert_eq!(closest(given, scope), suggestion, "{scope}: {given}");
        }
    }

    #[test]
    fn dates_are_exactly_year_month_day() {
        for valid in ["1990-05-17", "2024-02-29", "0000-01-01", "9999-12-31"] {
            assert!(is_date(valid), "{valid}");
        }
        for invalid in [
            "1990-5-17",
            "1990-05-17T00:00:00Z",
            "1990-05-17 ",
            "2023-02-29",
            "1990/05/17",
            "+990-05-17",
            "19900517",
            "1990-13-01",
            "1990-00-10",
            "",
            "１９９０-05-17",
        ] {
            assert!(!is_date(invalid), "{invalid}");
        }
    }

    #[test]
    fn instants_are_rfc3339_in_utc() {
        for valid in [
            "2025-01-17T05:39:22Z",
            "2025-01-17T05:39:22.123Z",
            "2025-01-17T05:39:22+00:00",
        ] {
            assert!(is_utc_instant(valid), "{valid}");
        }
        for invalid in [
            "2025-01-17T05:39:22+09:00",
            "2025-01-17T05:39:22",
            "2025-01-17",
            "2016-12-31T23:59:60Z",
            "yesterday",
        ] {
            assert!(!is_utc_instant(invalid), "{invalid}");
        }
    }

    #[test]
    fn paths_show_keys_and_indices() {
        let root = Path::Root("properties");
        let items = Path::Key(&root, "mkt_items");
        let second = Path::Index(&items, 1);
        let field = Path::Key(&second, "mkt_quantity");
        assert_eq!(field.to_string(), "properties.mkt_items[1].mkt_quantity");
    }
}
