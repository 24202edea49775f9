//! The typed commerce model against the wire: each typed builder gives
//! exactly the JSON Marketap's mobile SDKs send for the same data. Each
//! expected body is written out by hand, with the Android SDK call that
//! sends it (`Item.Builder`, `Coupon.Builder`, `EventProperty.Builder`,
//! `UserProperty.Builder`; Moshi writes a Kotlin `Double` as `59000.0`, an
//! `Int` as `2`, an `Instant` as its `toString()`).

use chrono::NaiveDate;
use marketap_ext::{
    Coupon, Event, Product, Timestamp, UserProfile, ValidationError,
    taxonomy::user_property::Gender,
};
use serde_json::{Value, json};

/// `Item.Builder()` with all 15 setters.
fn sneakers() -> Product {
    Product::new("sku-1")
        .name("Running Sneakers")
        .category1("Shoes")
        .category2("Running")
        .category3("Road")
        .category4("Men")
        .category5("Wide")
        .price(59_000.0)
        .quantity(2)
        .variant("black/270")
        .brand("Marketap")
        .option_price(3_000.0)
        .shipping_info("free")
        .bundle_info("none")
        .created_datetime("2024-11-02T09:00:00Z")
}

fn sneakers_json() -> Value {
    json!({
        "mkt_product_id": "sku-1",
        "mkt_product_name": "Running Sneakers",
        "mkt_category1": "Shoes",
        "mkt_category2": "Running",
        "mkt_category3": "Road",
        "mkt_category4": "Men",
        "mkt_category5": "Wide",
        "mkt_product_price": 59000.0,
        "mkt_quantity": 2,
        "mkt_variant": "black/270",
        "mkt_brand": "Marketap",
        "mkt_option_price": 3000.0,
        "mkt_shipping_info": "free",
        "mkt_bundle_info": "none",
        "mkt_created_datetime": "2024-11-02T09:00:00Z",
    })
}

/// `Item.Builder().setProductId("sku-2").setProductName("Socks").setProductPrice(9900.0).setQuantity(1)`.
fn socks() -> Product {
    Product::new("sku-2")
        .name("Socks")
        .price(9_900.0)
        .quantity(1)
}

fn socks_json() -> Value {
    json!({
        "mkt_product_id": "sku-2",
        "mkt_product_name": "Socks",
        "mkt_product_price": 9900.0,
        "mkt_quantity": 1,
    })
}

/// `Coupon.Builder()` with all 11 setters; the instants are Java
/// `Instant`s, written by `toString()`.
fn welcome_coupon() -> Coupon {
    Coupon::new("WELCOME10")
        .issue_id("issue-7")
        .issued_at(Timestamp::parse("2025-01-01T09:00:00+09:00").unwrap())
        .expires_at(Timestamp::parse("2025-01-31T14:59:59.999Z").unwrap())
        .category1("Shoes")
        .category2("Running")
        .category3("Road")
        .category4("Men")
        .category5("Wide")
        .name("10% off your first order")
        .used(false)
}

fn welcome_coupon_json() -> Value {
    json!({
        "mkt_coupon_id": "WELCOME10",
        "mkt_issue_id": "issue-7",
        "mkt_issued_at": "2025-01-01T00:00:00Z",
        "mkt_expires_at": "2025-01-31T14:59:59.999Z",
        "mkt_category1": "Shoes",
        "mkt_category2": "Running",
        "mkt_category3": "Road",
        "mkt_category4": "Men",
        "mkt_category5": "Wide",
        "mkt_coupon_name": "10% off your first order",
        "mkt_is_used": false,
    })
}

fn wire(item: &impl serde::Serialize) -> Value {
    serde_json::to_value(item).unwrap()
}

#[test]
fn a_product_with_all_fifteen_fields() {
    assert_eq!(wire(&sneakers()), sneakers_json());
    assert_eq!(wire(&sneakers()).as_object().unwrap().len(), 15);
    // Prices are floating-point numbers, as a Kotlin Double; the quantity
    // an integer.
    let text = serde_json::to_string(&sneakers()).unwrap();
    assert!(text.contains(r#""mkt_product_price":59000.0"#), "{text}");
    assert!(text.contains(r#""mkt_quantity":2"#), "{text}");
}

#[test]
fn a_coupon_with_all_eleven_fields() {
    assert_eq!(wire(&welcome_coupon()), welcome_coupon_json());
    // `Coupon.kt` has 11 names (five of them the item fields' categories),
    // though the issue and shared/marketap/README.md say 10 while listing 11.
    assert_eq!(wire(&welcome_coupon()).as_object().unwrap().len(), 11);
}

#[test]
fn a_purchase_of_two_line_items() {
    // Marketap.track("mkt_purchase", EventProperty.Builder()
    //     .setRevenue(127900.0).setOrderId("order-7").setItems(listOf(sneakers, socks)).build())
    let event = Event::purchase("user-42", "order-7", 127_900.0, [sneakers(), socks()])
        .timestamp("2025-01-17T05:39:22Z")
        .build()
        .unwrap();
    assert_eq!(
        wire(&event),
        json!({
            "user_id": "user-42",
            "event_name": "mkt_purchase",
            "properties": {
                "mkt_revenue": 127900.0,
                "mkt_order_id": "order-7",
                "mkt_items": [sneakers_json(), socks_json()],
            },
            "timestamp": "2025-01-17T05:39:22Z",
        })
    );
}

#[test]
fn the_other_commerce_events_carry_their_items() {
    // Marketap.track(name, EventProperty.Builder().setItems(items).build())
    let cases = [
        (
            Event::product_view("u1", socks()),
            "mkt_product_view",
            json!([socks_json()]),
        ),
        (
            Event::add_to_cart("u1", [socks()]),
            "mkt_add_to_cart",
            json!([socks_json()]),
        ),
        (
            Event::add_to_wishlist("u1", [sneakers()]),
            "mkt_add_to_wishlist",
            json!([sneakers_json()]),
        ),
        (
            Event::begin_checkout("u1", [sneakers(), socks()]),
            "mkt_begin_checkout",
            json!([sneakers_json(), socks_json()]),
        ),
        (
            Event::cart_view("u1", [socks(), sneakers()]),
            "mkt_cart_view",
            json!([socks_json(), sneakers_json()]),
        ),
        // The SDK's EventProperty.Builder writes the list even when empty.
        (Event::cart_view("u1", []), "mkt_cart_view", json!([])),
    ];
    for (builder, name, items) in cases {
        let event = builder.build().unwrap();
        assert_eq!(
            wire(&event),
            json!({
                "user_id": "u1",
                "event_name": name,
                "properties": { "mkt_items": items },
            }),
            "{name}"
        );
    }
    // Marketap.track("mkt_search") with a property of the app's own.
    let search = Event::search("u1")
        .property("search_term", "trail shoes")
        .build()
        .unwrap();
    assert_eq!(
        wire(&search),
        json!({
            "user_id": "u1",
            "event_name": "mkt_search",
            "properties": { "search_term": "trail shoes" },
        })
    );
}

#[test]
fn typed_events_stay_ordinary_builders() {
    let event = Event::add_to_cart("u1", [socks()])
        .property("source", "recommendation")
        .revenue(9_900.0)
        .build()
        .unwrap();
    assert_eq!(
        event.properties(),
        json!({
            "mkt_items": [socks_json()],
            "mkt_revenue": 9900.0,
            "source": "recommendation",
        })
        .as_object()
        .unwrap()
    );
}

#[test]
fn a_member_profile_with_all_fifteen_properties() {
    // Marketap.setUserProperties(UserProperty.Builder().setName(...)...setCoupons(...).build())
    let profile = UserProfile::builder("user-42")
        .name("Kim Jisoo")
        .phone_number("+821012345678")
        .email("jisoo@example.com")
        .gender(Gender::Female)
        .grade("gold")
        .birth(NaiveDate::from_ymd_opt(1990, 5, 7).unwrap())
        .text_message_opt_in(true)
        .kakao_opt_in(false)
        .email_opt_in(true)
        .available_points(1_200)
        .cart_total_price(127_900.0)
        .wish_list_total_price(59_000.0)
        .cart([sneakers(), socks()])
        .wish_list([sneakers()])
        .coupons([welcome_coupon()])
        .build()
        .unwrap();
    assert_eq!(
        wire(&profile),
        json!({
            "user_id": "user-42",
            "properties": {
                "mkt_name": "Kim Jisoo",
                "mkt_phone_number": "+821012345678",
                "mkt_email": "jisoo@example.com",
                "mkt_gender": "Female",
                "mkt_grade": "gold",
                "mkt_birth": "1990-05-07",
                "mkt_text_message_opt_in": true,
                "mkt_kakao_opt_in": false,
                "mkt_email_opt_in": true,
                "mkt_available_points": 1200,
                "mkt_cart_total_price": 127900.0,
                "mkt_wish_list_total_price": 59000.0,
                "mkt_cart": [sneakers_json(), socks_json()],
                "mkt_wish_list": [sneakers_json()],
                "mkt_coupons": [welcome_coupon_json()],
            },
        })
    );
}

#[test]
fn a_non_finite_price_names_its_line() {
    let error = Event::purchase("u1", "o1", 1.0, [socks(), socks().price(f64::NAN)])
        .build()
        .unwrap_err();
    assert_eq!(
        error,
        ValidationError::NonFiniteNumber {
            field: "properties.mkt_items[1].mkt_product_price".into(),
            value: "NaN".into(),
        }
    );
    assert!(matches!(
        Event::purchase("u1", "o1", f64::INFINITY, []).build(),
        Err(ValidationError::NonFiniteNumber { field, .. }) if field == "properties.mkt_revenue"
    ));
}

#[test]
fn a_birth_date_the_wire_cannot_write_is_refused() {
    let error = UserProfile::builder("u1")
        .birth(NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap())
        .build()
        .unwrap_err();
    assert!(
        matches!(&error, ValidationError::WrongType { field, value, .. }
            if field == "properties.mkt_birth" && value == "\"+10000-01-01\""),
        "{error:?}"
    );
}

/// The wire JSON of `item`, as text, as the batch call would send it.
fn wire_text(item: &impl serde::Serialize) -> String {
    serde_json::to_string(item).unwrap()
}

/// Each typed setter moves its value straight into the properties; what it
/// sends must be exactly what `property(name, value)` sends for the same
/// value built by hand.
#[test]
fn typed_builders_send_what_the_generic_path_sends() {
    use marketap_ext::taxonomy::{event, event_property, item_field, user_property};

    let cheap = Product::new("sku-2").price(9_900.0).quantity(1);
    let by_hand = |product: &Product| serde_json::to_value(product).unwrap();
    let typed = Event::purchase("user-42", "order-7", 118_000.0, [sneakers(), cheap.clone()])
        .build()
        .unwrap();
    let generic = Event::builder("user-42", event::PURCHASE)
        .property(event_property::ORDER_ID, "order-7")
        .property(event_property::REVENUE, 118_000.0)
        .property(
            event_property::ITEMS,
            json!([by_hand(&sneakers()), {
                item_field::PRODUCT_ID: "sku-2",
                item_field::PRODUCT_PRICE: 9_900.0,
                item_field::QUANTITY: 1,
            }]),
        )
        .build()
        .unwrap();
    assert_eq!(wire_text(&typed), wire_text(&generic));

    for (typed, name) in [
        (Event::product_view("u", cheap.clone()), event::PRODUCT_VIEW),
        (Event::add_to_cart("u", [cheap.clone()]), event::ADD_TO_CART),
        (
            Event::add_to_wishlist("u", [cheap.clone()]),
            event::ADD_TO_WISHLIST,
        ),
        (
            Event::begin_checkout("u", [cheap.clone()]),
            event::BEGIN_CHECKOUT,
        ),
        (Event::cart_view("u", [cheap.clone()]), event::CART_VIEW),
    ] {
        let generic = Event::builder("u", name).property(event_property::ITEMS, [&cheap]);
        assert_eq!(
            wire_text(&typed.build().unwrap()),
            wire_text(&generic.build().unwrap()),
            "{name}"
        );
    }
    assert_eq!(
        wire_text(&Event::search("u").build().unwrap()),
        wire_text(&Event::builder("u", event::SEARCH).build().unwrap())
    );

    let coupon = Coupon::new("WELCOME10")
        .issue_id("issue-7")
        .issued_at(Timestamp::parse("2025-01-01T00:00:00+09:00").unwrap())
        .expires_at(Timestamp::parse("2025-02-01T00:00:00.250Z").unwrap())
        .category1("Shoes")
        .name("Welcome")
        .used(false);
    let typed = UserProfile::builder("user-42")
        .name("Jisoo")
        .phone_number("+821012345678")
        .email("jisoo@example.com")
        .gender(Gender::Female)
        .grade("VIP")
        .birth(NaiveDate::from_ymd_opt(1990, 5, 7).unwrap())
        .text_message_opt_in(true)
        .kakao_opt_in(false)
        .email_opt_in(true)
        .available_points(-1_200)
        .cart_total_price(59_000.5)
        .wish_list_total_price(0.0)
        .cart([sneakers()])
        .wish_list([cheap.clone()])
        .coupons([coupon])
        .build()
        .unwrap();
    let generic = UserProfile::builder("user-42")
        .property(user_property::NAME, "Jisoo")
        .property(user_property::PHONE_NUMBER, "+821012345678")
        .property(user_property::EMAIL, "jisoo@example.com")
        .property(user_property::GENDER, "Female")
        .property(user_property::GRADE, "VIP")
        .property(user_property::BIRTH, "1990-05-07")
        .property(user_property::TEXT_MESSAGE_OPT_IN, true)
        .property(user_property::KAKAO_OPT_IN, false)
        .property(user_property::EMAIL_OPT_IN, true)
        .property(user_property::AVAILABLE_POINTS, -1_200)
        .property(user_property::CART_TOTAL_PRICE, 59_000.5)
        .property(user_property::WISH_LIST_TOTAL_PRICE, 0.0)
        .property(user_property::CART, [by_hand(&sneakers())])
        .property(user_property::WISH_LIST, [&cheap])
        .property(
            user_property::COUPONS,
            json!([{
                "mkt_coupon_id": "WELCOME10",
                "mkt_issue_id": "issue-7",
                "mkt_issued_at": "2024-12-31T15:00:00Z",
                "mkt_expires_at": "2025-02-01T00:00:00.250Z",
                "mkt_category1": "Shoes",
                "mkt_coupon_name": "Welcome",
                "mkt_is_used": false,
            }]),
        )
        .build()
        .unwrap();
    assert_eq!(wire_text(&typed), wire_text(&generic));
}

/// `property` takes plain values by a fast path; what it makes must be
/// what serde_json makes of them.
#[test]
fn plain_property_values_are_what_serde_json_makes() {
    #[derive(serde::Serialize)]
    enum Tier {
        Gold,
    }
    #[derive(serde::Serialize)]
    struct Wrapped(u8);
    let built = Event::builder("u", "e")
        .property("s", "text")
        .property("owned", String::from("owned"))
        .property("i", -7_i8)
        .property("u", u64::MAX)
        .property("f", 0.1)
        .property("f32", 0.1_f32)
        .property("b", true)
        .property("c", 'x')
        .property("none", None::<u8>)
        .property("some", Some(3))
        .property("unit", ())
        .property("variant", Tier::Gold)
        .property("newtype", Wrapped(4))
        .property("value", json!("v"))
        .property("i128", 5_i128)
        .build()
        .unwrap();
    let expected = json!({
        "s": "text", "owned": "owned", "i": -7, "u": u64::MAX, "f": 0.1,
        "f32": serde_json::to_value(0.1_f32).unwrap(), "b": true, "c": "x",
        "none": null, "some": 3, "unit": null, "variant": "Gold", "newtype": 4,
        "value": "v", "i128": 5,
    });
    assert_eq!(Value::Object(built.properties().clone()), expected);
    assert!(matches!(
        Event::builder("u", "e").property("nan", f64::NAN).build(),
        Err(ValidationError::NonFiniteNumber { field, value }) if field == "properties.nan" && value == "NaN"
    ));
}
