//! The input: `n` realistic events, the same on every run, in no
//! contender's representation. Each contender turns them into its own
//! before the clock starts.

use marketap_ext::{
    Timestamp,
    taxonomy::{event, event_property, item_field},
};

/// The project every request is for.
pub const PROJECT_ID: &str = "bench-project";
/// The API key every request carries (the sink checks it).
pub const API_KEY: &str = "bench-key";

/// Property names: one line item in `mkt_items`, with five fields from
/// Marketap's taxonomy, and one property of the shop's own. (Item fields go
/// inside `mkt_items`: the reserved check refuses them at the top level.)
pub const ITEMS: &str = event_property::ITEMS;
pub const PRODUCT_ID: &str = item_field::PRODUCT_ID;
pub const PRODUCT_NAME: &str = item_field::PRODUCT_NAME;
pub const PRODUCT_PRICE: &str = item_field::PRODUCT_PRICE;
pub const QUANTITY: &str = item_field::QUANTITY;
pub const CATEGORY1: &str = item_field::CATEGORY1;
pub const IS_MEMBER: &str = "is_member";

const EVENT_NAMES: [&str; 4] = [
    event::PAGE_VIEW,
    event::PRODUCT_VIEW,
    event::ADD_TO_CART,
    event::PURCHASE,
];

/// Name, top-level category and unit price.
const PRODUCTS: [(&str, &str, f64); 8] = [
    ("Organic Cotton T-Shirt", "Apparel", 19.99),
    ("Wireless Noise-Cancelling Headphones", "Electronics", 249.0),
    ("Ceramic Pour-Over Coffee Set", "Home", 38.5),
    ("Vitamin C Brightening Serum", "Beauty", 27.9),
    ("Trail Running Shoes", "Sports", 129.95),
    ("Stainless Steel Water Bottle 750ml", "Outdoor", 24.0),
    ("Hardcover Notebook, Dotted", "Stationery", 12.75),
    ("Kids' Wooden Building Blocks", "Toys", 45.0),
];

/// 2025-01-17T05:39:22Z.
const START_MILLIS: i64 = 1_737_092_362_000;

/// One event: a user, a taxonomy event name, a line item of five fields,
/// one property of the shop's own and a timestamp with milliseconds.
#[derive(Debug, Clone)]
pub struct EventSpec {
    pub user_id: String,
    pub event_name: &'static str,
    pub product_id: String,
    pub product_name: &'static str,
    pub price: f64,
    pub quantity: u32,
    pub category: &'static str,
    pub is_member: bool,
    pub timestamp: Timestamp,
}

/// The first `n` events of the benchmark's fixed sequence.
pub fn generate(n: usize) -> impl Iterator<Item = EventSpec> {
    (0..n).map(|i| {
        let (product_name, category, price) = PRODUCTS[(i * 7 + i / 13) % PRODUCTS.len()];
        let millis = START_MILLIS + i64::try_from(i).expect("n fits in i64") * 37;
        EventSpec {
            user_id: format!("user-{:06}", (i * 7919) % 1_000_000),
            event_name: EVENT_NAMES[i % EVENT_NAMES.len()],
            product_id: format!("P-{:08}", (i * 104_729) % 100_000_000),
            product_name,
            price,
            quantity: (i % 5) as u32 + 1,
            category,
            is_member: i % 3 == 0,
            timestamp: Timestamp::from_unix_millis(millis).expect("a 2025 date is in range"),
        }
    })
}
