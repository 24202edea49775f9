//! Marketap's reserved taxonomy: the names of its predefined events, user properties, event
//! properties and purchase-item fields, as constants grouped by kind, plus the
//! [`user_property::Gender`] values. Marketap reserves the `mkt_` prefix ([`RESERVED_PREFIX`])
//! for these names; use them as written so Marketap's built-in reports and campaigns recognize
//! the data, and keep your own names free of the prefix. Keep the marketing opt-in properties
//! ([`user_property::TEXT_MESSAGE_OPT_IN`], [`user_property::KAKAO_OPT_IN`],
//! [`user_property::EMAIL_OPT_IN`]) in sync with your own records: per Marketap's taxonomy
//! page, users with no value are not blocked, and only users explicitly marked as not agreed
//! (`false`) are excluded from ad messages.

/// The prefix Marketap reserves for its predefined names.
pub const RESERVED_PREFIX: &str = "mkt_";

/// Whether `name` uses Marketap's reserved [`RESERVED_PREFIX`] (`mkt_`).
///
/// The check is case-sensitive: `MKT_login` is not reserved.
#[must_use]
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// Predefined event names, for an event's `event_name`.
pub mod event {
    /// A user logged in.
    pub const LOGIN: &str = "mkt_login";
    /// A user logged out.
    pub const LOGOUT: &str = "mkt_logout";
    /// A user signed up.
    pub const SIGNUP: &str = "mkt_signup";
    /// A purchase was completed; see [`super::event_property`] for its properties.
    pub const PURCHASE: &str = "mkt_purchase";
    /// A page or screen was viewed.
    pub const PAGE_VIEW: &str = "mkt_page_view";
    /// A session started.
    pub const SESSION_START: &str = "mkt_session_start";
    /// A session ended.
    pub const SESSION_END: &str = "mkt_session_end";
    /// A search was run.
    pub const SEARCH: &str = "mkt_search";
    /// A product detail was viewed.
    pub const PRODUCT_VIEW: &str = "mkt_product_view";
    /// Items were added to the cart.
    pub const ADD_TO_CART: &str = "mkt_add_to_cart";
    /// Items were added to the wish list.
    pub const ADD_TO_WISHLIST: &str = "mkt_add_to_wishlist";
    /// Checkout began.
    pub const BEGIN_CHECKOUT: &str = "mkt_begin_checkout";
    /// The cart was viewed.
    pub const CART_VIEW: &str = "mkt_cart_view";

    /// Every predefined event name, in the order above.
    pub const ALL: &[&str] = &[
        LOGIN,
        LOGOUT,
        SIGNUP,
        PURCHASE,
        PAGE_VIEW,
        SESSION_START,
        SESSION_END,
        SEARCH,
        PRODUCT_VIEW,
        ADD_TO_CART,
        ADD_TO_WISHLIST,
        BEGIN_CHECKOUT,
        CART_VIEW,
    ];
}

/// Predefined user-property names, for a user profile's `properties`.
pub mod user_property {
    use std::fmt;

    use serde::{Deserialize, Serialize};

    /// Name (string).
    pub const NAME: &str = "mkt_name";
    /// Phone number (string).
    pub const PHONE_NUMBER: &str = "mkt_phone_number";
    /// Email address (string).
    pub const EMAIL: &str = "mkt_email";
    /// Gender (string): `Male`, `Female`, `Other` or `Unknown`; see [`Gender`].
    pub const GENDER: &str = "mkt_gender";
    /// Membership grade or tier (string).
    pub const GRADE: &str = "mkt_grade";
    /// Date of birth (string, `YYYY-MM-DD`).
    pub const BIRTH: &str = "mkt_birth";
    /// Consent to marketing text messages (boolean). Only `false` excludes the user.
    pub const TEXT_MESSAGE_OPT_IN: &str = "mkt_text_message_opt_in";
    /// Consent to marketing messages on Kakao (boolean). Only `false` excludes the user.
    pub const KAKAO_OPT_IN: &str = "mkt_kakao_opt_in";
    /// Consent to marketing email (boolean). Only `false` excludes the user.
    pub const EMAIL_OPT_IN: &str = "mkt_email_opt_in";
    /// Points available to spend (integer).
    pub const AVAILABLE_POINTS: &str = "mkt_available_points";
    /// Total price of the cart (number).
    pub const CART_TOTAL_PRICE: &str = "mkt_cart_total_price";
    /// Total price of the wish list (number).
    pub const WISH_LIST_TOTAL_PRICE: &str = "mkt_wish_list_total_price";
    /// Items in the cart (list of item objects; see [`super::item_field`]).
    pub const CART: &str = "mkt_cart";
    /// Items in the wish list (list of item objects; see [`super::item_field`]).
    pub const WISH_LIST: &str = "mkt_wish_list";
    /// Coupons the user holds (list of coupon objects).
    pub const COUPONS: &str = "mkt_coupons";

    /// Every predefined user-property name, in the order above.
    pub const ALL: &[&str] = &[
        NAME,
        PHONE_NUMBER,
        EMAIL,
        GENDER,
        GRADE,
        BIRTH,
        TEXT_MESSAGE_OPT_IN,
        KAKAO_OPT_IN,
        EMAIL_OPT_IN,
        AVAILABLE_POINTS,
        CART_TOTAL_PRICE,
        WISH_LIST_TOTAL_PRICE,
        CART,
        WISH_LIST,
        COUPONS,
    ];

    /// The values of [`GENDER`]; serializes to exactly `"Male"`, `"Female"`, `"Other"` or
    /// `"Unknown"`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub enum Gender {
        /// `"Male"`.
        Male,
        /// `"Female"`.
        Female,
        /// `"Other"`.
        Other,
        /// `"Unknown"`.
        Unknown,
    }

    impl Gender {
        /// The value as Marketap expects it, e.g. `"Female"`.
        #[must_use]
        pub const fn as_str(self) -> &'static str {
            match self {
                Self::Male => "Male",
                Self::Female => "Female",
                Self::Other => "Other",
                Self::Unknown => "Unknown",
            }
        }
    }

    impl fmt::Display for Gender {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.as_str())
        }
    }
}

/// Predefined event-property names, mainly for [`event::PURCHASE`].
pub mod event_property {
    /// Revenue of the event (number).
    pub const REVENUE: &str = "mkt_revenue";
    /// Order identifier (string).
    pub const ORDER_ID: &str = "mkt_order_id";
    /// Items involved (list of item objects; see [`super::item_field`]).
    pub const ITEMS: &str = "mkt_items";

    /// Every predefined event-property name, in the order above.
    pub const ALL: &[&str] = &[REVENUE, ORDER_ID, ITEMS];
}

/// Field names inside an item object, as listed under [`event_property::ITEMS`],
/// [`user_property::CART`] and [`user_property::WISH_LIST`].
pub mod item_field {
    /// Product identifier (string).
    pub const PRODUCT_ID: &str = "mkt_product_id";
    /// Product name (string).
    pub const PRODUCT_NAME: &str = "mkt_product_name";
    /// Top-level category (string).
    pub const CATEGORY1: &str = "mkt_category1";
    /// Second-level category (string).
    pub const CATEGORY2: &str = "mkt_category2";
    /// Third-level category (string).
    pub const CATEGORY3: &str = "mkt_category3";
    /// Fourth-level category (string).
    pub const CATEGORY4: &str = "mkt_category4";
    /// Fifth-level category (string).
    pub const CATEGORY5: &str = "mkt_category5";
    /// Unit price of the product (number).
    pub const PRODUCT_PRICE: &str = "mkt_product_price";
    /// Quantity (integer).
    pub const QUANTITY: &str = "mkt_quantity";
    /// Brand (string).
    pub const BRAND: &str = "mkt_brand";
    /// Variant, such as size or color (string).
    pub const VARIANT: &str = "mkt_variant";
    /// Extra price of the chosen option (number).
    pub const OPTION_PRICE: &str = "mkt_option_price";

    /// Every predefined item field name, in the order above.
    pub const ALL: &[&str] = &[
        PRODUCT_ID,
        PRODUCT_NAME,
        CATEGORY1,
        CATEGORY2,
        CATEGORY3,
        CATEGORY4,
        CATEGORY5,
        PRODUCT_PRICE,
        QUANTITY,
        BRAND,
        VARIANT,
        OPTION_PRICE,
    ];
}

#[cfg(test)]
mod tests {
    use super::user_property::Gender;
    use super::*;
    use std::collections::HashSet;

    const GROUPS: [&[&str]; 4] = [
        event::ALL,
        user_property::ALL,
        event_property::ALL,
        item_field::ALL,
    ];

    #[test]
    fn group_sizes() {
        assert_eq!(event::ALL.len(), 13);
        assert_eq!(user_property::ALL.len(), 15);
        assert_eq!(event_property::ALL.len(), 3);
        assert_eq!(item_field::ALL.len(), 12);
    }

    #[test]
    fn every_name_is_reserved_and_unique() {
        let mut seen = HashSet::new();
        for name in GROUPS.into_iter().flatten() {
            assert!(name.starts_with(RESERVED_PREFIX), "{name}");
            assert!(is_reserved(name), "{name}");
            assert!(name.len() > RESERVED_PREFIX.len(), "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
            assert!(seen.insert(*name), "duplicate {name}");
        }
    }

    #[test]
    fn is_reserved_checks_the_prefix_only() {
        assert!(is_reserved("mkt_anything"));
        assert!(!is_reserved("purchase"));
        assert!(!is_reserved("MKT_login"));
        assert!(!is_reserved("my_mkt_login"));
        assert!(!is_reserved("mkt"));
    }

    #[test]
    fn gender_serializes_to_documented_values() {
        for (gender, text) in [
            (Gender::Male, "Male"),
            (Gender::Female, "Female"),
            (Gender::Other, "Other"),
            (Gender::Unknown, "Unknown"),
        ] {
            assert_eq!(gender.as_str(), text);
            assert_eq!(gender.to_string(), text);
            let json = serde_json::to_string(&gender).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Gender>(&json).unwrap(), gender);
        }
        assert!(serde_json::from_str::<Gender>("\"male\"").is_err());
    }
}
