//! The reserved check runs on every event and profile built, so for valid
//! input it must allocate nothing: building with it costs exactly the
//! allocations of building without it.

use std::hint::black_box;

use allocation_counter::measure;
use chrono::NaiveDate;
use marketap_ext::{
    Coupon, Event, Product, Timestamp, UserProfile, taxonomy::user_property::Gender,
};

fn product(i: u32) -> Product {
    Product::new(format!("sku-{i}"))
        .name("Sneakers")
        .category1("Shoes")
        .price(59_000.0)
        .quantity(i)
        .option_price(0.0)
}

/// Allocations of `build` with the check, and without it.
fn allocations<B: Clone, T>(
    builder: &B,
    skip: impl Fn(B) -> B,
    build: impl Fn(B) -> T,
) -> (u64, u64) {
    let (on, off) = (builder.clone(), skip(builder.clone()));
    let with = measure(|| drop(black_box(build(on))));
    let without = measure(|| drop(black_box(build(off))));
    (with.count_total, without.count_total)
}

#[test]
fn valid_input_allocates_nothing_for_the_check() {
    let purchase = Event::purchase("user-42", "order-7", 118_000.0, (0..20).map(product))
        .property("mkt_session_id", "s-1")
        .property("coupon_code", "WELCOME10")
        .timestamp("2025-01-17T05:39:22Z");
    let (with, without) = allocations(
        &purchase,
        |b| b.skip_reserved_check(),
        |b| b.build().unwrap(),
    );
    assert_eq!(with, without, "purchase");

    let login = Event::builder("user-42", "mkt_login");
    let (with, without) = allocations(&login, |b| b.skip_reserved_check(), |b| b.build().unwrap());
    assert_eq!(with, without, "login");

    let coupon = Coupon::new("WELCOME10")
        .issued_at(Timestamp::parse("2025-01-01T00:00:00Z").unwrap())
        .expires_at(Timestamp::parse("2025-01-31T14:59:59.999Z").unwrap())
        .used(false);
    let profile = UserProfile::builder("user-42")
        .email("jisoo@example.com")
        .gender(Gender::Female)
        .birth(NaiveDate::from_ymd_opt(1990, 5, 7).unwrap())
        .kakao_opt_in(true)
        .available_points(1_200)
        .cart((0..10).map(product))
        .coupons([coupon.clone(), coupon]);
    let (with, without) = allocations(
        &profile,
        |b| b.skip_reserved_check(),
        |b| b.build().unwrap(),
    );
    assert_eq!(with, without, "profile");
}

#[test]
fn the_counter_sees_the_check_allocate_for_an_error() {
    let typo = Event::builder("user-42", "mkt_purchase").property("mkt_revenu", 1);
    let (with, without) = allocations(&typo, |b| b.skip_reserved_check(), |b| b.build());
    assert!(with > without, "{with} vs {without}");
}
