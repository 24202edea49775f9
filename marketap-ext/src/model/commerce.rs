//! The commerce model, typed: [`Product`] (a line item) and [`Coupon`], the typed commerce
//! events ([`Event::purchase`], [`Event::add_to_cart`], ...), the typed event properties on
//! [`EventBuilder`] and the typed member properties on [`UserProfileBuilder`]. Each writes the
//! reserved names of [`crate::taxonomy`] with values of their types, exactly as Marketap's
//! mobile SDKs do, and returns the ordinary builder, so properties of your own can be added.

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    error::ValidationError,
    model::check::KnownName,
    model::item::{Event, EventBuilder, UserProfileBuilder},
    model::properties,
    model::taxonomy::{coupon_field, event, event_property, item_field, user_property},
    model::timestamp::Timestamp,
};

/// The reserved fields set on a product or coupon, as the JSON object they
/// go on the wire as: each setter moves its value in, so putting a product
/// into an event moves the object, never copies it. Setting a field again
/// replaces its value. A bound of the object's length as JSON is counted
/// as it is built, without reading its strings
/// ([`properties::value_bound`]), so a list of products goes into an event
/// already counted (`check::Known`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
struct Fields {
    object: Map<String, Value>,
    /// A bound of the length as JSON of the members of `object`
    /// (`"name":value`), added up: without the braces and commas.
    #[serde(skip)]
    members: usize,
    /// Fields set to NaN or infinity (null in `object`): refused when the
    /// product or coupon goes into an event or profile. Empty, so no
    /// allocation, unless one was set.
    #[serde(skip)]
    non_finite: Vec<(&'static str, f64)>,
}

impl Fields {
    /// Sets `name` to `value`, whose bound is `bytes`
    /// ([`properties::value_bound`], known to each setter by its type).
    #[inline(always)]
    fn set(&mut self, name: &'static str, value: Value, bytes: usize) {
        debug_assert_eq!(bytes, properties::value_bound(&value), "{name}");
        if !self.non_finite.is_empty() {
            self.non_finite.retain(|(set, _)| *set != name);
        }
        // A reserved name: nothing in it is escaped.
        let member = name.len() + r#""":"#.len();
        self.members += member + bytes;
        if let Some(replaced) = self.object.insert(name.to_owned(), value) {
            self.members -= member + properties::value_bound(&replaced);
        }
    }

    #[inline]
    fn set_text(&mut self, name: &'static str, text: String) {
        let bytes = properties::text_bound(&text);
        self.set(name, Value::String(text), bytes);
    }

    #[inline]
    fn set_number(&mut self, name: &'static str, number: f64) {
        match serde_json::Number::from_f64(number) {
            Some(json) => self.set(name, Value::Number(json), properties::float_bound(number)),
            None => {
                self.set(name, Value::Null, "null".len());
                self.non_finite.push((name, number));
            }
        }
    }

    #[inline]
    fn set_count(&mut self, name: &'static str, count: u32) {
        let number = serde_json::Number::from(count);
        let bytes = properties::number_len(&number);
        self.set(name, Value::Number(number), bytes);
    }

    #[inline]
    fn set_bool(&mut self, name: &'static str, value: bool) {
        let bytes = if value { "true".len() } else { "false".len() };
        self.set(name, Value::Bool(value), bytes);
    }

    /// The list of `fields` as the JSON array under `key`, moved, with a
    /// bound of its length as JSON; the first non-finite number is
    /// [`ValidationError::NonFiniteNumber`] naming its path
    /// (`properties.mkt_items[1].mkt_product_price`).
    fn list(
        key: &'static str,
        fields: impl IntoIterator<Item = Box<Fields>>,
    ) -> Result<(Value, usize), ValidationError> {
        // The array is made in its place, then filled, and each object is
        // written straight into the array's buffer by `collect` (a list of
        // known length): a `Value` made aside and moved is copied with
        // 16-byte loads over its 1-byte tag store, a store-forwarding stall
        // the CPU pays on every event.
        let mut value = Value::Array(Vec::new());
        let Value::Array(list) = &mut value else {
            unreachable!("made an array just above")
        };
        let mut elements = 0;
        let mut first_error = None;
        *list = fields
            .into_iter()
            .enumerate()
            .map(|(index, fields)| {
                // The first in wire order, as serialising would have met it.
                let first = fields.non_finite.iter().min_by_key(|(name, _)| *name);
                if let Some((name, number)) = first
                    && first_error.is_none()
                {
                    first_error = Some(ValidationError::NonFiniteNumber {
                        field: format!("properties.{key}[{index}].{name}"),
                        value: number.to_string(),
                    });
                }
                elements += properties::compound_len(fields.object.len(), fields.members);
                Value::Object(fields.object)
            })
            .collect();
        if let Some(error) = first_error {
            return Err(error);
        }
        let bytes = properties::compound_len(list.len(), elements);
        Ok((value, bytes))
    }
}

/// What each kind of setter moves into [`Fields`].
macro_rules! field_value {
    (Text, $fields:expr, $name:expr, $value:expr) => {
        $fields.set_text($name, $value.into())
    };
    (Number, $fields:expr, $name:expr, $value:expr) => {
        $fields.set_number($name, $value)
    };
    (Count, $fields:expr, $name:expr, $value:expr) => {
        $fields.set_count($name, $value)
    };
    (Bool, $fields:expr, $name:expr, $value:expr) => {
        $fields.set_bool($name, $value)
    };
    (Instant, $fields:expr, $name:expr, $value:expr) => {
        $fields.set_text($name, $value.to_string())
    };
}

/// Setters that each write one reserved field, of the given kind.
macro_rules! field_setters {
    ($($(#[$doc:meta])* $method:ident($value:ident: $type:ty) => $name:expr, $kind:ident;)*) => {$(
        $(#[$doc])*
        #[inline(always)]
        pub fn $method(mut self, $value: $type) -> Self {
            field_value!($kind, self.0, $name, $value);
            self
        }
    )*};
}

/// An item of Marketap's taxonomy: a product in a purchase, a cart or a wish list, with the
/// fields of [`item_field`]. (Marketap calls it an item; in this crate
/// [`Item`](crate::Item) is anything the client sends.)
///
/// It serializes to exactly the reserved names, with only the fields you set. Prices are
/// numbers (a NaN or infinite price is refused when the event or profile is built), the
/// quantity a non-negative integer.
///
/// ```
/// use marketap_ext::Product;
///
/// let sneakers = Product::new("sku-1").name("Sneakers").price(59_000.0).quantity(2);
/// assert_eq!(
///     serde_json::to_value(&sneakers)?,
///     serde_json::json!({
///         "mkt_product_id": "sku-1",
///         "mkt_product_name": "Sneakers",
///         "mkt_product_price": 59000.0,
///         "mkt_quantity": 2,
///     }),
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
#[must_use]
// Boxed: each setter takes the product by value and hands it back. A
// pointer moves in a register; the fields themselves (56 bytes) were copied
// between stack slots around every setter, and each copy stalled on the map
// length the insert had just stored (about 3% of `build-ext`).
pub struct Product(Box<Fields>);

impl Product {
    /// A product with its id ([`item_field::PRODUCT_ID`]).
    #[inline]
    pub fn new(product_id: impl Into<String>) -> Self {
        Self(Box::default()).id(product_id)
    }

    field_setters! {
        /// Its id ([`item_field::PRODUCT_ID`]), replacing the one given to `new`.
        id(product_id: impl Into<String>) => item_field::PRODUCT_ID, Text;
        /// Its name ([`item_field::PRODUCT_NAME`]).
        name(name: impl Into<String>) => item_field::PRODUCT_NAME, Text;
        /// Its top-level category ([`item_field::CATEGORY1`]).
        category1(category: impl Into<String>) => item_field::CATEGORY1, Text;
        /// Its second-level category ([`item_field::CATEGORY2`]).
        category2(category: impl Into<String>) => item_field::CATEGORY2, Text;
        /// Its third-level category ([`item_field::CATEGORY3`]).
        category3(category: impl Into<String>) => item_field::CATEGORY3, Text;
        /// Its fourth-level category ([`item_field::CATEGORY4`]).
        category4(category: impl Into<String>) => item_field::CATEGORY4, Text;
        /// Its fifth-level category ([`item_field::CATEGORY5`]).
        category5(category: impl Into<String>) => item_field::CATEGORY5, Text;
        /// Its unit price ([`item_field::PRODUCT_PRICE`]).
        price(price: f64) => item_field::PRODUCT_PRICE, Number;
        /// How many ([`item_field::QUANTITY`]).
        quantity(quantity: u32) => item_field::QUANTITY, Count;
        /// Its variant, such as size or color ([`item_field::VARIANT`]).
        variant(variant: impl Into<String>) => item_field::VARIANT, Text;
        /// Its brand ([`item_field::BRAND`]).
        brand(brand: impl Into<String>) => item_field::BRAND, Text;
        /// The extra price of the chosen option ([`item_field::OPTION_PRICE`]).
        option_price(price: f64) => item_field::OPTION_PRICE, Number;
        /// Shipping information ([`item_field::SHIPPING_INFO`]).
        shipping_info(info: impl Into<String>) => item_field::SHIPPING_INFO, Text;
        /// Bundle information ([`item_field::BUNDLE_INFO`]).
        bundle_info(info: impl Into<String>) => item_field::BUNDLE_INFO, Text;
        /// When the product was created, as your system writes it
        /// ([`item_field::CREATED_DATETIME`]).
        created_datetime(created: impl Into<String>) => item_field::CREATED_DATETIME, Text;
    }
}

/// A coupon a member holds, with the fields of [`coupon_field`], for
/// [`UserProfileBuilder::coupons`]. Instants go out as RFC 3339 in UTC, as the SDKs send them.
///
/// ```
/// use marketap_ext::{Coupon, Timestamp};
///
/// let coupon = Coupon::new("WELCOME10")
///     .issue_id("issue-7")
///     .expires_at(Timestamp::parse("2025-02-01T00:00:00+09:00")?)
///     .used(false);
/// assert_eq!(
///     serde_json::to_value(&coupon)?,
///     serde_json::json!({
///         "mkt_coupon_id": "WELCOME10",
///         "mkt_issue_id": "issue-7",
///         "mkt_expires_at": "2025-01-31T15:00:00Z",
///         "mkt_is_used": false,
///     }),
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
#[must_use]
// Boxed as `Product` is.
pub struct Coupon(Box<Fields>);

impl Coupon {
    /// A coupon with its id ([`coupon_field::COUPON_ID`]): the kind of coupon, not this
    /// issue of it.
    pub fn new(coupon_id: impl Into<String>) -> Self {
        Self(Box::default()).id(coupon_id)
    }

    field_setters! {
        /// Its id ([`coupon_field::COUPON_ID`]), replacing the one given to `new`.
        id(coupon_id: impl Into<String>) => coupon_field::COUPON_ID, Text;
        /// This issue of the coupon to this member ([`coupon_field::ISSUE_ID`]).
        issue_id(issue_id: impl Into<String>) => coupon_field::ISSUE_ID, Text;
        /// When it was issued ([`coupon_field::ISSUED_AT`]).
        issued_at(at: Timestamp) => coupon_field::ISSUED_AT, Instant;
        /// When it expires ([`coupon_field::EXPIRES_AT`]).
        expires_at(at: Timestamp) => coupon_field::EXPIRES_AT, Instant;
        /// The top-level category it applies to ([`coupon_field::CATEGORY1`]).
        category1(category: impl Into<String>) => coupon_field::CATEGORY1, Text;
        /// The second-level category it applies to ([`coupon_field::CATEGORY2`]).
        category2(category: impl Into<String>) => coupon_field::CATEGORY2, Text;
        /// The third-level category it applies to ([`coupon_field::CATEGORY3`]).
        category3(category: impl Into<String>) => coupon_field::CATEGORY3, Text;
        /// The fourth-level category it applies to ([`coupon_field::CATEGORY4`]).
        category4(category: impl Into<String>) => coupon_field::CATEGORY4, Text;
        /// The fifth-level category it applies to ([`coupon_field::CATEGORY5`]).
        category5(category: impl Into<String>) => coupon_field::CATEGORY5, Text;
        /// Its name ([`coupon_field::COUPON_NAME`]).
        name(name: impl Into<String>) => coupon_field::COUPON_NAME, Text;
        /// Whether it was used ([`coupon_field::IS_USED`]).
        used(used: bool) => coupon_field::IS_USED, Bool;
    }
}

/// The typed commerce events. Each returns the ordinary [`EventBuilder`]: add a timestamp or
/// properties of your own, then `build()`.
impl Event {
    /// A completed purchase ([`event::PURCHASE`]) of order `order_id`, with its `revenue` and
    /// line `items`.
    ///
    /// ```
    /// use marketap_ext::{Event, Product};
    ///
    /// let purchase = Event::purchase("user-42", "order-7", 118_000.0, [
    ///     Product::new("sku-1").name("Sneakers").price(59_000.0).quantity(2),
    /// ])
    /// .property("coupon_code", "WELCOME10")
    /// .build()?;
    /// assert_eq!(purchase.properties()["mkt_items"][0]["mkt_quantity"], 2);
    /// # Ok::<(), marketap_ext::ValidationError>(())
    /// ```
    pub fn purchase(
        user_id: impl Into<String>,
        order_id: impl Into<String>,
        revenue: f64,
        items: impl IntoIterator<Item = Product>,
    ) -> EventBuilder {
        Self::builder(user_id, event::PURCHASE)
            .order_id(order_id)
            .revenue(revenue)
            .items(items)
    }

    /// A product's detail was viewed ([`event::PRODUCT_VIEW`]).
    pub fn product_view(user_id: impl Into<String>, product: Product) -> EventBuilder {
        Self::builder(user_id, event::PRODUCT_VIEW).items([product])
    }

    /// `items` were added to the cart ([`event::ADD_TO_CART`]).
    pub fn add_to_cart(
        user_id: impl Into<String>,
        items: impl IntoIterator<Item = Product>,
    ) -> EventBuilder {
        Self::builder(user_id, event::ADD_TO_CART).items(items)
    }

    /// `items` were added to the wish list ([`event::ADD_TO_WISHLIST`]).
    pub fn add_to_wishlist(
        user_id: impl Into<String>,
        items: impl IntoIterator<Item = Product>,
    ) -> EventBuilder {
        Self::builder(user_id, event::ADD_TO_WISHLIST).items(items)
    }

    /// Checkout began for `items` ([`event::BEGIN_CHECKOUT`]).
    pub fn begin_checkout(
        user_id: impl Into<String>,
        items: impl IntoIterator<Item = Product>,
    ) -> EventBuilder {
        Self::builder(user_id, event::BEGIN_CHECKOUT).items(items)
    }

    /// The cart, holding `items`, was viewed ([`event::CART_VIEW`]).
    pub fn cart_view(
        user_id: impl Into<String>,
        items: impl IntoIterator<Item = Product>,
    ) -> EventBuilder {
        Self::builder(user_id, event::CART_VIEW).items(items)
    }

    /// A search was run ([`event::SEARCH`]). Marketap reserves no property for the search
    /// terms: add your own, e.g. `.property("search_term", terms)`.
    pub fn search(user_id: impl Into<String>) -> EventBuilder {
        Self::builder(user_id, event::SEARCH)
    }
}

/// A typed setter's text, moved in as a JSON string, with a bound of its
/// length as JSON.
#[inline]
fn known_text(text: String) -> Result<(Value, usize), ValidationError> {
    let bytes = properties::text_bound(&text);
    Ok((Value::String(text), bytes))
}

/// A typed setter's flag as JSON, with its length.
#[inline]
fn known_bool(on: bool) -> Result<(Value, usize), ValidationError> {
    let bytes = if on { "true".len() } else { "false".len() };
    Ok((Value::Bool(on), bytes))
}

/// A typed setter's number for the property `name` as JSON, with a bound
/// of its length; NaN or infinity is [`ValidationError::NonFiniteNumber`].
#[inline]
fn known_number(name: KnownName, number: f64) -> Result<(Value, usize), ValidationError> {
    let json = properties::number(format_args!("properties.{}", name.as_str()), number)?;
    Ok((json, properties::float_bound(number)))
}

/// The typed event properties of [`crate::taxonomy::event_property`].
impl EventBuilder {
    /// The event's revenue ([`event_property::REVENUE`]); NaN or infinity is an error.
    #[inline]
    pub fn revenue(self, revenue: f64) -> Self {
        self.set_known(
            KnownName::Revenue,
            known_number(KnownName::Revenue, revenue),
        )
    }

    /// The order's id ([`event_property::ORDER_ID`]).
    #[inline]
    pub fn order_id(self, order_id: impl Into<String>) -> Self {
        self.set_known(KnownName::OrderId, known_text(order_id.into()))
    }

    /// The items involved ([`event_property::ITEMS`]), replacing any set before.
    #[inline]
    pub fn items(self, items: impl IntoIterator<Item = Product>) -> Self {
        let items = items.into_iter().map(|product| product.0);
        self.set_known(KnownName::Items, Fields::list(event_property::ITEMS, items))
    }
}

/// The typed member properties of [`crate::taxonomy::user_property`].
impl UserProfileBuilder {
    /// The member's name ([`user_property::NAME`]).
    pub fn name(self, name: impl Into<String>) -> Self {
        self.set_known(KnownName::Name, known_text(name.into()))
    }

    /// The member's phone number ([`user_property::PHONE_NUMBER`]).
    pub fn phone_number(self, phone_number: impl Into<String>) -> Self {
        let phone_number = known_text(phone_number.into());
        self.set_known(KnownName::PhoneNumber, phone_number)
    }

    /// The member's email address ([`user_property::EMAIL`]).
    pub fn email(self, email: impl Into<String>) -> Self {
        self.set_known(KnownName::Email, known_text(email.into()))
    }

    /// The member's gender ([`user_property::GENDER`]).
    pub fn gender(self, gender: user_property::Gender) -> Self {
        let gender = known_text(gender.as_str().to_owned());
        self.set_known(KnownName::Gender, gender)
    }

    /// The member's grade or tier ([`user_property::GRADE`]).
    pub fn grade(self, grade: impl Into<String>) -> Self {
        self.set_known(KnownName::Grade, known_text(grade.into()))
    }

    /// The member's date of birth ([`user_property::BIRTH`]), sent as `YYYY-MM-DD`. A year
    /// outside 0000 to 9999 cannot be written so, and is an error.
    pub fn birth(self, date: NaiveDate) -> Self {
        let birth = date.format("%Y-%m-%d").to_string();
        // Walked in `build()`, which refuses a year that is not four digits.
        self.set(user_property::BIRTH, Ok(Value::String(birth)))
    }

    /// Consent to marketing text messages ([`user_property::TEXT_MESSAGE_OPT_IN`]). Only
    /// `false` excludes the member: leave it unset when you do not know.
    pub fn text_message_opt_in(self, opt_in: bool) -> Self {
        self.set_known(KnownName::TextMessageOptIn, known_bool(opt_in))
    }

    /// Consent to marketing messages on KakaoTalk ([`user_property::KAKAO_OPT_IN`]). Only
    /// `false` excludes the member.
    pub fn kakao_opt_in(self, opt_in: bool) -> Self {
        self.set_known(KnownName::KakaoOptIn, known_bool(opt_in))
    }

    /// Consent to marketing email ([`user_property::EMAIL_OPT_IN`]). Only `false` excludes
    /// the member.
    pub fn email_opt_in(self, opt_in: bool) -> Self {
        self.set_known(KnownName::EmailOptIn, known_bool(opt_in))
    }

    /// Points the member can spend ([`user_property::AVAILABLE_POINTS`]).
    pub fn available_points(self, points: i64) -> Self {
        let points = serde_json::Number::from(points);
        let bytes = properties::number_len(&points);
        self.set_known(
            KnownName::AvailablePoints,
            Ok((Value::Number(points), bytes)),
        )
    }

    /// The total price of the member's cart ([`user_property::CART_TOTAL_PRICE`]).
    pub fn cart_total_price(self, price: f64) -> Self {
        let price = known_number(KnownName::CartTotalPrice, price);
        self.set_known(KnownName::CartTotalPrice, price)
    }

    /// The total price of the member's wish list
    /// ([`user_property::WISH_LIST_TOTAL_PRICE`]).
    pub fn wish_list_total_price(self, price: f64) -> Self {
        let price = known_number(KnownName::WishListTotalPrice, price);
        self.set_known(KnownName::WishListTotalPrice, price)
    }

    /// What is in the member's cart ([`user_property::CART`]).
    pub fn cart(self, items: impl IntoIterator<Item = Product>) -> Self {
        let items = items.into_iter().map(|product| product.0);
        self.set_known(KnownName::Cart, Fields::list(user_property::CART, items))
    }

    /// What is in the member's wish list ([`user_property::WISH_LIST`]).
    pub fn wish_list(self, items: impl IntoIterator<Item = Product>) -> Self {
        let items = items.into_iter().map(|product| product.0);
        self.set_known(
            KnownName::WishList,
            Fields::list(user_property::WISH_LIST, items),
        )
    }

    /// The coupons the member holds ([`user_property::COUPONS`]).
    pub fn coupons(self, coupons: impl IntoIterator<Item = Coupon>) -> Self {
        let coupons = coupons.into_iter().map(|coupon| coupon.0);
        // Walked in `build()` as any value: only product lists are known.
        let coupons = Fields::list(user_property::COUPONS, coupons).map(|(list, _)| list);
        self.set(user_property::COUPONS, coupons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A product's strings are bounded as if every byte were escaped (six
    /// bytes each), its float price by 24; the rest is counted exactly.
    /// Replacing a field takes off what it added.
    #[test]
    fn a_product_is_bounded_without_reading_its_strings() {
        let event = |product: Product| {
            let event = Event::builder("u", "e").items([product]).build().unwrap();
            let exact = serde_json::to_vec(&event).unwrap().len();
            (event.wire_bound(), exact)
        };
        let (bound, exact) = event(Product::new("p\"\n").quantity(12).price(1000.0));
        // `"p\"\n"`: 7 bytes as JSON, bounded by 2 + 6 × 3.
        assert_eq!(bound, exact - 7 + 20);
        let (bound, exact) = event(Product::new("x").name("long name").name("n").price(0.5));
        assert_eq!(bound, exact + 5 + 5 + (24 - 3));
    }

    /// Items compare by what goes on the wire: the same event built with a
    /// bound and read back exactly is equal to itself.
    #[test]
    fn items_compare_by_their_wire_values_not_their_bounds() {
        let built = Event::purchase("u", "o", 1.5, [Product::new("p").price(2.5)])
            .build()
            .unwrap();
        let exact = Event::from_raw(built.clone().into_raw()).unwrap();
        assert!(built.wire_bound() > exact.wire_bound());
        assert_eq!(built, exact);
        let other = Event::purchase("u", "o", 1.5, [Product::new("q")]).build();
        assert_ne!(built, other.unwrap());
    }

    /// Each kind of field setter writes its field.
    #[test]
    fn counts_and_flags_are_written() {
        let product = serde_json::to_value(Product::new("p").quantity(3)).unwrap();
        assert_eq!(product[item_field::QUANTITY], 3);
        let coupon = serde_json::to_value(Coupon::new("c").used(false)).unwrap();
        assert_eq!(coupon[coupon_field::IS_USED], false);
    }

    /// A non-finite number is refused when the product goes into an event,
    /// unless that field was set again to a finite one; setting another
    /// field does not clear it.
    #[test]
    fn a_non_finite_field_is_refused_until_it_is_set_again() {
        let built = |product: Product| Event::builder("u", "e").items([product]).build();
        assert!(built(Product::new("a").price(f64::NAN).price(1.0)).is_ok());
        let refused = built(Product::new("a").price(f64::INFINITY).name("n"));
        assert!(
            matches!(&refused, Err(ValidationError::NonFiniteNumber { field, .. })
                if field == "properties.mkt_items[0].mkt_product_price"),
            "{refused:?}"
        );
    }

    #[test]
    fn setting_a_field_again_replaces_it() {
        let product = Product::new("a").price(1.0).name("n").price(2.0).id("b");
        // In name order, as it goes on the wire inside an event.
        assert_eq!(
            serde_json::to_string(&product).unwrap(),
            r#"{"mkt_product_id":"b","mkt_product_name":"n","mkt_product_price":2.0}"#
        );
    }
}
