//! The reserved check across the public API: a table of wrong uses of
//! Marketap's `mkt_` names, each with the exact error it gets; the ways to
//! switch the check off (per builder, per client); and what it never looks
//! at.

mod support;

use marketap_ext::{
    Config, Error, Event, EventBuilder, Marketap, Product, TrackEvent, UserProfile,
    UserProfileBuilder, ValidationError,
    api::types,
    dead_letter::DeadLetter,
    taxonomy::{Scope, ValueType},
};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};
use support::{Reply, TestServer};

fn not_reserved(
    field: &str,
    scope: Scope,
    suggestion: Option<&'static str>,
    reserved_as: Option<Scope>,
) -> ValidationError {
    ValidationError::NotReserved {
        field: field.into(),
        name: field.rsplit('.').next().unwrap().into(),
        scope,
        suggestion,
        reserved_as,
    }
}

fn wrong_type(
    field: &str,
    expected: ValueType,
    found: &'static str,
    value: &str,
) -> ValidationError {
    ValidationError::WrongType {
        field: field.into(),
        expected,
        found,
        value: value.into(),
    }
}

fn event(properties: Value) -> Result<Event, ValidationError> {
    Event::builder("u1", "mkt_purchase")
        .properties(properties)
        .build()
}

fn profile(properties: Value) -> Result<UserProfile, ValidationError> {
    UserProfile::builder("u1").properties(properties).build()
}

fn raw_event(event_name: &str) -> types::CreateEventReq {
    types::CreateEventReq {
        user_id: "u1".into(),
        event_name: event_name.into(),
        properties: Default::default(),
        timestamp: None,
    }
}

/// A typed event of the user's own with a misspelt reserved field.
#[derive(Serialize, JsonSchema)]
struct MyPurchase {
    mkt_order_id: String,
    mkt_revnue: f64,
}

impl TrackEvent for MyPurchase {
    const NAME: &'static str = "mkt_purchase";
}

/// One wrong use: what it is, what it produced, the error it must get, and
/// what its message must say.
struct Case {
    what: &'static str,
    got: Result<(), ValidationError>,
    expected: ValidationError,
    mentions: &'static [&'static str],
}

fn case<T>(
    what: &'static str,
    got: Result<T, ValidationError>,
    expected: ValidationError,
    mentions: &'static [&'static str],
) -> Case {
    Case {
        what,
        got: got.map(drop),
        expected,
        mentions,
    }
}

#[tokio::test]
async fn wrong_uses_of_reserved_names_get_an_error_naming_the_place_and_the_fix() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let client = Marketap::new(Config::new("k", "p").with_base_url(server.url())).unwrap();
    use ValueType as T;

    let cases = vec![
        // Misspelt or unknown names.
        case(
            "misspelt event property",
            event(json!({ "mkt_revenu": 42000 })),
            not_reserved(
                "properties.mkt_revenu",
                Scope::EventProperty,
                Some("mkt_revenue"),
                None,
            ),
            &[
                "properties.mkt_revenu",
                "event properties",
                "did you mean \"mkt_revenue\"",
            ],
        ),
        case(
            "the old name of the birth date",
            profile(json!({ "mkt_date_of_birth": "1990-05-17" })),
            not_reserved(
                "properties.mkt_date_of_birth",
                Scope::UserProperty,
                Some("mkt_birth"),
                None,
            ),
            &["mkt_date_of_birth", "user properties", "\"mkt_birth\""],
        ),
        case(
            "swapped letters in a user property",
            profile(json!({ "mkt_emial": "a@example.com" })),
            not_reserved(
                "properties.mkt_emial",
                Scope::UserProperty,
                Some("mkt_email"),
                None,
            ),
            &["\"mkt_email\""],
        ),
        case(
            "a made-up mkt_ name",
            event(json!({ "mkt_discount": 1000 })),
            not_reserved("properties.mkt_discount", Scope::EventProperty, None, None),
            &[
                "mkt_discount",
                "not one of Marketap's reserved event properties",
                "marketap_ext::taxonomy",
            ],
        ),
        case(
            "misspelt event name",
            Event::builder("u1", "mkt_purchse").build(),
            ValidationError::NotReserved {
                field: "event_name".into(),
                name: "mkt_purchse".into(),
                scope: Scope::EventName,
                suggestion: Some("mkt_purchase"),
                reserved_as: None,
            },
            &[
                "event_name",
                "\"mkt_purchse\"",
                "event names",
                "\"mkt_purchase\"",
            ],
        ),
        case(
            "misspelt field inside a line item",
            event(json!({ "mkt_items": [{ "mkt_product_id": "a" }, { "mkt_prodcut_id": "b" }] })),
            not_reserved(
                "properties.mkt_items[1].mkt_prodcut_id",
                Scope::ItemField,
                Some("mkt_product_id"),
                None,
            ),
            &[
                "properties.mkt_items[1].mkt_prodcut_id",
                "item fields",
                "\"mkt_product_id\"",
            ],
        ),
        case(
            "a typed event of your own with a misspelt field",
            Event::typed(
                "u1",
                &MyPurchase {
                    mkt_order_id: "o1".into(),
                    mkt_revnue: 1.0,
                },
            )
            .build(),
            not_reserved(
                "properties.mkt_revnue",
                Scope::EventProperty,
                Some("mkt_revenue"),
                None,
            ),
            &["mkt_revnue", "\"mkt_revenue\""],
        ),
        // Names reserved somewhere else.
        case(
            "an item field straight in an event's properties",
            event(json!({ "mkt_product_id": "sku-1" })),
            not_reserved(
                "properties.mkt_product_id",
                Scope::EventProperty,
                None,
                Some(Scope::ItemField),
            ),
            &[
                "one of Marketap's item fields, not its event properties",
                "`mkt_items`",
            ],
        ),
        case(
            "a user property on an event",
            event(json!({ "mkt_cart": [] })),
            not_reserved(
                "properties.mkt_cart",
                Scope::EventProperty,
                None,
                Some(Scope::UserProperty),
            ),
            &["user properties", "send it in a user profile"],
        ),
        case(
            "an event property on a profile",
            profile(json!({ "mkt_revenue": 1.0 })),
            not_reserved(
                "properties.mkt_revenue",
                Scope::UserProperty,
                None,
                Some(Scope::EventProperty),
            ),
            &["event properties, not its user properties"],
        ),
        case(
            "an item field in a coupon",
            profile(
                json!({ "mkt_coupons": [{ "mkt_coupon_id": "c", "mkt_product_id": "sku-1" }] }),
            ),
            not_reserved(
                "properties.mkt_coupons[0].mkt_product_id",
                Scope::CouponField,
                None,
                Some(Scope::ItemField),
            ),
            &[
                "properties.mkt_coupons[0].mkt_product_id",
                "not its coupon fields",
            ],
        ),
        // Events only the mobile SDKs send.
        case(
            "first visit from a server",
            Event::builder("u1", "mkt_first_visit").build(),
            ValidationError::SdkOnlyEvent {
                name: "mkt_first_visit",
            },
            &[
                "mkt_first_visit",
                "mobile SDKs",
                "skew",
                "switch the reserved check off",
            ],
        ),
        case(
            "push impression through from_raw",
            Event::from_raw(raw_event("mkt_push_impression")),
            ValidationError::SdkOnlyEvent {
                name: "mkt_push_impression",
            },
            &["mkt_push_impression"],
        ),
        case(
            "message click through a client's builder",
            client.event("u1", "mkt_click_message").build(),
            ValidationError::SdkOnlyEvent {
                name: "mkt_click_message",
            },
            &["mkt_click_message"],
        ),
        // Wrong types.
        case(
            "revenue as a string",
            event(json!({ "mkt_revenue": "42000" })),
            wrong_type("properties.mkt_revenue", T::Number, "string", "\"42000\""),
            &["`properties.mkt_revenue` must be a number, got string: \"42000\""],
        ),
        case(
            "an order id as a number, on a typed purchase",
            Event::purchase("u1", "o1", 1.0, [])
                .property("mkt_order_id", 7)
                .build(),
            wrong_type("properties.mkt_order_id", T::String, "number", "7"),
            &["must be a string"],
        ),
        case(
            "an opt-in as \"Y\"",
            profile(json!({ "mkt_email_opt_in": "Y" })),
            wrong_type("properties.mkt_email_opt_in", T::Bool, "string", "\"Y\""),
            &["mkt_email_opt_in", "must be a boolean"],
        ),
        case(
            "a birth date with a time",
            profile(json!({ "mkt_birth": "1990-05-17T00:00:00Z" })),
            wrong_type(
                "properties.mkt_birth",
                T::Date,
                "string",
                "\"1990-05-17T00:00:00Z\"",
            ),
            &["mkt_birth", "`YYYY-MM-DD` date (no time of day)"],
        ),
        case(
            "a birth date day first",
            profile(json!({ "mkt_birth": "17/05/1990" })),
            wrong_type("properties.mkt_birth", T::Date, "string", "\"17/05/1990\""),
            &["YYYY-MM-DD"],
        ),
        case(
            "a birth date that does not exist",
            profile(json!({ "mkt_birth": "1990-02-30" })),
            wrong_type("properties.mkt_birth", T::Date, "string", "\"1990-02-30\""),
            &["YYYY-MM-DD"],
        ),
        case(
            "gender in lower case",
            profile(json!({ "mkt_gender": "female" })),
            wrong_type("properties.mkt_gender", T::Gender, "string", "\"female\""),
            &[r#"one of "Male", "Female", "Other", "Unknown""#],
        ),
        case(
            "points with a fraction",
            profile(json!({ "mkt_available_points": 10.5 })),
            wrong_type(
                "properties.mkt_available_points",
                T::Integer,
                "number",
                "10.5",
            ),
            &["must be an integer"],
        ),
        case(
            "items as one object, not a list",
            event(json!({ "mkt_items": { "mkt_product_id": "a" } })),
            wrong_type(
                "properties.mkt_items",
                T::ItemList,
                "object",
                r#"{"mkt_product_id":"a"}"#,
            ),
            &["must be a list of item objects"],
        ),
        case(
            "items as a list of ids",
            event(json!({ "mkt_items": ["sku-1"] })),
            wrong_type(
                "properties.mkt_items[0]",
                T::ItemObject,
                "string",
                "\"sku-1\"",
            ),
            &["`properties.mkt_items[0]` must be an item object"],
        ),
        case(
            "a negative quantity",
            event(json!({ "mkt_items": [{ "mkt_quantity": 1 }, { "mkt_quantity": -1 }] })),
            wrong_type(
                "properties.mkt_items[1].mkt_quantity",
                T::NonNegativeInteger,
                "number",
                "-1",
            ),
            &[
                "properties.mkt_items[1].mkt_quantity",
                "an integer of 0 or more",
                "-1",
            ],
        ),
        case(
            "a quantity written as a float",
            event(json!({ "mkt_items": [{ "mkt_quantity": 1.0 }] })),
            wrong_type(
                "properties.mkt_items[0].mkt_quantity",
                T::NonNegativeInteger,
                "number",
                "1.0",
            ),
            &["an integer of 0 or more"],
        ),
        case(
            "a price as a string in a cart",
            profile(json!({ "mkt_cart": [{ "mkt_product_price": "59000" }] })),
            wrong_type(
                "properties.mkt_cart[0].mkt_product_price",
                T::Number,
                "string",
                "\"59000\"",
            ),
            &[
                "properties.mkt_cart[0].mkt_product_price",
                "must be a number",
            ],
        ),
        case(
            "a coupon expiry without a time",
            profile(json!({ "mkt_coupons": [{ "mkt_expires_at": "2025-01-31" }] })),
            wrong_type(
                "properties.mkt_coupons[0].mkt_expires_at",
                T::Instant,
                "string",
                "\"2025-01-31\"",
            ),
            &["RFC 3339 date-time in UTC"],
        ),
        case(
            "a coupon instant in another zone",
            profile(json!({ "mkt_coupons": [{ "mkt_issued_at": "2025-01-01T09:00:00+09:00" }] })),
            wrong_type(
                "properties.mkt_coupons[0].mkt_issued_at",
                T::Instant,
                "string",
                "\"2025-01-01T09:00:00+09:00\"",
            ),
            &["in UTC"],
        ),
        case(
            "a coupon's used flag as a string",
            profile(json!({ "mkt_coupons": [{ "mkt_is_used": "false" }] })),
            wrong_type(
                "properties.mkt_coupons[0].mkt_is_used",
                T::Bool,
                "string",
                "\"false\"",
            ),
            &["must be a boolean"],
        ),
        case(
            "a wrong type through a client's profile builder",
            client.profile("u1").property("mkt_kakao_opt_in", 1).build(),
            wrong_type("properties.mkt_kakao_opt_in", T::Bool, "number", "1"),
            &["mkt_kakao_opt_in"],
        ),
        case(
            "a wrong type in a raw profile",
            UserProfile::from_raw(types::BulkUserProfile {
                user_id: "u1".into(),
                properties: json!({ "mkt_wish_list_total_price": "free" })
                    .as_object()
                    .unwrap()
                    .clone(),
            }),
            wrong_type(
                "properties.mkt_wish_list_total_price",
                T::Number,
                "string",
                "\"free\"",
            ),
            &["mkt_wish_list_total_price"],
        ),
    ];
    assert!(cases.len() >= 20, "{}", cases.len());

    for Case {
        what,
        got,
        expected,
        mentions,
    } in &cases
    {
        let error = got.as_ref().expect_err(what);
        assert_eq!(error, expected, "{what}");
        let message = error.to_string();
        println!("{what}: {message}");
        for needle in *mentions {
            assert!(
                message.contains(needle),
                "{what}: {message:?} does not mention {needle:?}"
            );
        }
        assert!(message.len() < 600, "{what}: {} bytes", message.len());
    }
    assert!(server.requests().is_empty());
}

#[test]
fn each_wrong_use_passes_with_the_check_skipped() {
    for properties in [
        json!({ "mkt_revenu": 1 }),
        json!({ "mkt_revenue": "42000" }),
        json!({ "mkt_items": [{ "mkt_quantity": -1 }] }),
    ] {
        assert!(event(properties.clone()).is_err());
        Event::builder("u1", "mkt_purchase")
            .properties(&properties)
            .skip_reserved_check()
            .build()
            .unwrap_or_else(|e| panic!("{properties}: {e}"));
    }
    Event::builder("u1", "mkt_first_visit")
        .skip_reserved_check()
        .build()
        .unwrap();
    Event::purchase("u1", "o1", 1.0, [])
        .property("mkt_order_id", 7)
        .skip_reserved_check()
        .build()
        .unwrap();
    UserProfile::builder("u1")
        .property("mkt_date_of_birth", "1990-05-17")
        .skip_reserved_check()
        .build()
        .unwrap();
    // Only the reserved check is skipped.
    assert!(matches!(
        Event::builder("u1", "mkt_first_visit")
            .property("x", f64::NAN)
            .skip_reserved_check()
            .build(),
        Err(ValidationError::NonFiniteNumber { .. })
    ));
}

#[test]
fn an_item_in_the_wire_type_can_skip_the_check_through_its_builder() {
    let raw = types::CreateEventReq {
        user_id: "u1".into(),
        event_name: "mkt_purchase".into(),
        properties: json!({ "mkt_new_field": 1 }).as_object().unwrap().clone(),
        timestamp: None,
    };
    assert!(Event::from_raw(raw.clone()).is_err());
    assert!(
        EventBuilder::from(raw.clone()).build().is_err(),
        "on by default"
    );
    let event = EventBuilder::from(raw)
        .skip_reserved_check()
        .build()
        .unwrap();
    assert_eq!(event.properties()["mkt_new_field"], 1);

    let raw = types::BulkUserProfile {
        user_id: "u1".into(),
        properties: json!({ "mkt_date_of_birth": "1990-05-17" })
            .as_object()
            .unwrap()
            .clone(),
    };
    assert!(UserProfile::from_raw(raw.clone()).is_err());
    assert!(UserProfileBuilder::from(raw.clone()).build().is_err());
    UserProfileBuilder::from(raw)
        .skip_reserved_check()
        .build()
        .unwrap();
    // Only the reserved check is skipped.
    let blank = types::BulkUserProfile {
        user_id: " ".into(),
        properties: Default::default(),
    };
    assert!(
        UserProfileBuilder::from(blank)
            .skip_reserved_check()
            .build()
            .is_err()
    );
}

#[test]
fn a_client_can_switch_the_check_off_for_its_own_builders() {
    let off = Marketap::new(Config::new("k", "p").with_reserved_check(false)).unwrap();
    assert!(
        !Config::new("k", "p")
            .with_reserved_check(false)
            .reserved_check()
    );
    assert!(Config::new("k", "p").reserved_check());
    off.event("u1", "mkt_first_visit").build().unwrap();
    off.event("u1", "mkt_purchase")
        .property("mkt_revenue", "42000")
        .build()
        .unwrap();
    off.profile("u1")
        .property("mkt_date_of_birth", "1990-05-17")
        .build()
        .unwrap();
    // A builder made without the client keeps the default.
    assert!(Event::builder("u1", "mkt_first_visit").build().is_err());

    let on = Marketap::new(Config::new("k", "p")).unwrap();
    assert!(on.event("u1", "mkt_first_visit").build().is_err());
    assert!(
        on.profile("u1")
            .property("mkt_date_of_birth", "1990-05-17")
            .build()
            .is_err()
    );
    assert!(
        format!("{off:?}").contains("reserved_check: false"),
        "{off:?}"
    );
}

#[tokio::test]
async fn resending_a_dead_letter_follows_the_clients_setting() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let letter: DeadLetter = serde_json::from_value(json!({
        "operation": "collect_bulk_user_events",
        "error": "unexpected HTTP status 503: ",
        "status": 503,
        "attempts": 5,
        "body": { "events": [
            { "user_id": "u1", "event_name": "mkt_purchase", "properties": { "mkt_revenu": 1 } },
        ] },
    }))
    .unwrap();
    let config = Config::new("k", "p").with_base_url(server.url());

    let on = Marketap::new(config.clone()).unwrap();
    let error = on.resend(&letter).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Validation(ValidationError::NotReserved {
                suggestion: Some("mkt_revenue"),
                ..
            })
        ),
        "{error:?}"
    );
    assert!(letter.items::<Event>().is_err());
    assert!(server.requests().is_empty());

    let off = Marketap::new(config.with_reserved_check(false)).unwrap();
    assert_eq!(off.resend(&letter).await.unwrap(), 1);
    assert_eq!(
        server.requests()[0].items()[0]["properties"],
        json!({ "mkt_revenu": 1 })
    );
}

#[test]
fn names_without_the_prefix_and_null_values_are_never_refused() {
    event(json!({
        "revenue": "anything",
        "MKT_revenue": "upper case is not the prefix",
        "my_mkt_revenue": [],
        "custom": { "mkt_whatever": "inside a property of your own" },
        "mkt_revenue": null,
        "mkt_items": [{ "mkt_product_id": null, "size": "270", "mkt_quantity": 0 }],
    }))
    .unwrap();
    profile(json!({ "mkt_birth": null, "mkt_cart": null, "mkt_coupons": [] })).unwrap();
    Event::builder("u1", "my_event").build().unwrap();
    Event::builder("u1", "MKT_first_visit").build().unwrap();
}

#[test]
fn every_reserved_name_with_a_value_of_its_type_passes() {
    let sneakers = Product::new("sku-1").price(1.0).quantity(u32::MAX);
    Event::purchase("u1", "o1", 1.0, [sneakers])
        .property("mkt_session_id", "s1")
        .property("mkt_campaign_id", "c1")
        .property("mkt_campaign_category", "OFF_SITE")
        .property("mkt_channel_type", "PUSH")
        .property("mkt_sub_channel_type", "IOS")
        .property("mkt_result_status", 200_000)
        .property("mkt_result_message", "SUCCESS")
        .property("mkt_is_success", true)
        .property("mkt_message_id", "m1")
        .property("mkt_location_id", "push")
        .property("mkt_url", "https://example.com")
        .build()
        .unwrap();
    for name in marketap_ext::taxonomy::event::ALL {
        Event::builder("u1", *name).build().unwrap();
    }
    profile(json!({
        "mkt_available_points": -5,
        "mkt_cart_total_price": 0,
        "mkt_birth": "2024-02-29",
        "mkt_gender": "Unknown",
    }))
    .unwrap();
}
