//! Marketap's reserved taxonomy: the names of its predefined events, user properties, event
//! properties, item fields and coupon fields, as constants grouped by list, with the
//! [`ValueType`] each name's value must have and the [`user_property::Gender`] values. Marketap
//! reserves the `mkt_` prefix ([`RESERVED_PREFIX`]); the names are those Marketap's own mobile
//! SDKs send. Use them as written so Marketap's built-in reports and campaigns recognize the
//! data, and keep your own names free of the prefix: builders refuse a `mkt_` name that is not
//! reserved where it is used ([`Scope`]), a reserved one whose value has the wrong type, and the
//! events only the mobile SDKs send ([`sdk_event`]).
//!
//! Each list is written once, in one macro call that makes its constants, its `ALL` list and
//! the table the check reads, so a name cannot be in one and not the others.
//!
//! Keep the marketing opt-in properties ([`user_property::TEXT_MESSAGE_OPT_IN`],
//! [`user_property::KAKAO_OPT_IN`], [`user_property::EMAIL_OPT_IN`]) in sync with your own
//! records: per Marketap's taxonomy page, users with no value are not blocked, and only users
//! explicitly marked as not agreed (`false`) are excluded from ad messages.

use std::fmt;

/// The prefix Marketap reserves for its predefined names.
pub const RESERVED_PREFIX: &str = "mkt_";

/// Whether `name` uses Marketap's reserved [`RESERVED_PREFIX`] (`mkt_`).
///
/// The check is case-sensitive: `MKT_login` is not reserved.
#[must_use]
#[inline]
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// What the value of a reserved name must be, as JSON. `null` is accepted for every name (it
/// is how serde writes an absent `Option`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValueType {
    /// A string.
    String,
    /// An integer: no fraction, no exponent (`5`, not `5.0`).
    Integer,
    /// An integer of 0 or more.
    NonNegativeInteger,
    /// Any number.
    Number,
    /// `true` or `false`.
    Bool,
    /// A date as a `YYYY-MM-DD` string, without a time of day.
    Date,
    /// An RFC 3339 date-time in UTC, such as `"2025-01-17T05:39:22Z"`, as the SDKs send
    /// instants.
    Instant,
    /// One of the [`user_property::Gender`] values.
    Gender,
    /// A list of item objects, each checked against [`item_field`].
    ItemList,
    /// A list of coupon objects, each checked against [`coupon_field`].
    CouponList,
    /// One element of an [`ItemList`](Self::ItemList): an object.
    ItemObject,
    /// One element of a [`CouponList`](Self::CouponList): an object.
    CouponObject,
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::String => "a string",
            Self::Integer => "an integer",
            Self::NonNegativeInteger => "an integer of 0 or more",
            Self::Number => "a number",
            Self::Bool => "a boolean",
            Self::Date => "a `YYYY-MM-DD` date (no time of day)",
            Self::Instant => "an RFC 3339 date-time in UTC, such as \"2025-01-17T05:39:22Z\"",
            Self::ItemList => "a list of item objects",
            Self::CouponList => "a list of coupon objects",
            Self::ItemObject => "an item object",
            Self::CouponObject => "a coupon object",
            Self::Gender => {
                f.write_str("one of")?;
                for (i, gender) in user_property::Gender::ALL.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    write!(f, "{sep}\"{gender}\"")?;
                }
                return Ok(());
            }
        })
    }
}

/// Where a name is used; each place has its own list of reserved names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// An event's `event_name`: [`event`], and [`sdk_event`] which a server must not send.
    EventName,
    /// A key of an event's `properties`: [`event_property`].
    EventProperty,
    /// A key of a user profile's `properties`: [`user_property`].
    UserProperty,
    /// A key of an item object, in [`event_property::ITEMS`], [`user_property::CART`] or
    /// [`user_property::WISH_LIST`]: [`item_field`].
    ItemField,
    /// A key of a coupon object, in [`user_property::COUPONS`]: [`coupon_field`].
    CouponField,
}

impl Scope {
    /// Every scope, in the order above.
    pub(crate) const ALL: [Scope; 5] = [
        Self::EventName,
        Self::EventProperty,
        Self::UserProperty,
        Self::ItemField,
        Self::CouponField,
    ];

    /// The names reserved here that a server may send, with their types (event names have
    /// none).
    pub(crate) fn names(self) -> impl Iterator<Item = &'static str> {
        let (names, typed): (&[&str], &[(&str, ValueType)]) = match self {
            Self::EventName => (event::ALL, &[]),
            Self::EventProperty => (&[], event_property::TYPES),
            Self::UserProperty => (&[], user_property::TYPES),
            Self::ItemField => (&[], item_field::TYPES),
            Self::CouponField => (&[], coupon_field::TYPES),
        };
        names
            .iter()
            .copied()
            .chain(typed.iter().map(|(name, _)| *name))
    }

    /// The type of `name`'s value here, if `name` is reserved here (and is not an event name).
    pub(crate) fn value_type(self, name: &str) -> Option<ValueType> {
        let table = match self {
            Self::EventName => return None,
            Self::EventProperty => event_property::TYPES,
            Self::UserProperty => user_property::TYPES,
            Self::ItemField => item_field::TYPES,
            Self::CouponField => coupon_field::TYPES,
        };
        table
            .iter()
            .find(|(reserved, _)| *reserved == name)
            .map(|(_, value_type)| *value_type)
    }

    /// Whether `name` is reserved here, an SDK-only event name included.
    pub(crate) fn reserves(self, name: &str) -> bool {
        match self {
            Self::EventName => event::ALL.contains(&name) || sdk_event::ALL.contains(&name),
            _ => self.value_type(name).is_some(),
        }
    }

    /// The plural noun for error messages, e.g. `event properties`.
    pub(crate) fn plural(self) -> &'static str {
        match self {
            Self::EventName => "event names",
            Self::EventProperty => "event properties",
            Self::UserProperty => "user properties",
            Self::ItemField => "item fields",
            Self::CouponField => "coupon fields",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EventName => "event name",
            Self::EventProperty => "event property",
            Self::UserProperty => "user property",
            Self::ItemField => "item field",
            Self::CouponField => "coupon field",
        })
    }
}

/// One list of reserved names: a constant per name, `ALL`, and (for a list whose names take
/// values) `TYPES`, the table the reserved check reads. Each constant's docs end with its type.
macro_rules! reserved_names {
    (typed: $($(#[$doc:meta])* $constant:ident = $name:expr => $value_type:ident;)*) => {
        $(
            $(#[$doc])*
            ///
            #[doc = concat!(
                "Value: [`", stringify!($value_type), "`](super::ValueType::",
                stringify!($value_type), ")."
            )]
            pub const $constant: &str = $name;
        )*
        reserved_names!(all: $($constant)*);

        /// Every name of this list with the type of its value, for the reserved check.
        pub(crate) const TYPES: &[(&str, super::ValueType)] =
            &[$(($constant, super::ValueType::$value_type)),*];
    };
    (names: $($(#[$doc:meta])* $constant:ident = $name:expr;)*) => {
        $($(#[$doc])* pub const $constant: &str = $name;)*
        reserved_names!(all: $($constant)*);
    };
    (all: $($constant:ident)*) => {
        /// Every name of this list, in the order above.
        pub const ALL: &[&str] = &[$($constant),*];
    };
}

/// Predefined event names a server may send, for an event's `event_name`.
pub mod event {
    reserved_names!(names:
        /// A user logged in.
        LOGIN = "mkt_login";
        /// A user logged out.
        LOGOUT = "mkt_logout";
        /// A user signed up.
        SIGNUP = "mkt_signup";
        /// A purchase was completed; see [`Event::purchase`](crate::Event::purchase).
        PURCHASE = "mkt_purchase";
        /// A page or screen was viewed.
        PAGE_VIEW = "mkt_page_view";
        /// A session started.
        SESSION_START = "mkt_session_start";
        /// A session ended.
        SESSION_END = "mkt_session_end";
        /// A search was run.
        SEARCH = "mkt_search";
        /// A product detail was viewed.
        PRODUCT_VIEW = "mkt_product_view";
        /// Items were added to the cart.
        ADD_TO_CART = "mkt_add_to_cart";
        /// Items were added to the wish list.
        ADD_TO_WISHLIST = "mkt_add_to_wishlist";
        /// Checkout began.
        BEGIN_CHECKOUT = "mkt_begin_checkout";
        /// The cart was viewed.
        CART_VIEW = "mkt_cart_view";
    );
}

/// Events Marketap's mobile SDKs send by themselves. A server has no reason to send them: a
/// copy from a server would sit beside the SDK's and skew reports and campaigns, so the
/// reserved check refuses them.
pub mod sdk_event {
    reserved_names!(names:
        /// The app was opened for the first time on this device.
        FIRST_VISIT = "mkt_first_visit";
        /// A message (push or in-app) was delivered.
        DELIVERY_MESSAGE = "mkt_delivery_message";
        /// A message (push or in-app) was clicked.
        CLICK_MESSAGE = "mkt_click_message";
        /// A push notification was shown.
        PUSH_IMPRESSION = "mkt_push_impression";
    );
}

/// Predefined user-property names, for a user profile's `properties`; the typed setters are
/// on [`UserProfileBuilder`](crate::UserProfileBuilder).
pub mod user_property {
    use serde::{Deserialize, Serialize};

    reserved_names!(typed:
        /// Name.
        NAME = "mkt_name" => String;
        /// Phone number.
        PHONE_NUMBER = "mkt_phone_number" => String;
        /// Email address.
        EMAIL = "mkt_email" => String;
        /// Gender; see [`Gender`].
        GENDER = "mkt_gender" => Gender;
        /// Membership grade or tier.
        GRADE = "mkt_grade" => String;
        /// Date of birth. The SDKs called it `mkt_date_of_birth` until 2025-08-12; that name
        /// is a mistake now.
        BIRTH = "mkt_birth" => Date;
        /// Consent to marketing text messages. Only `false` excludes the user.
        TEXT_MESSAGE_OPT_IN = "mkt_text_message_opt_in" => Bool;
        /// Consent to marketing messages on KakaoTalk. Only `false` excludes the user.
        KAKAO_OPT_IN = "mkt_kakao_opt_in" => Bool;
        /// Consent to marketing email. Only `false` excludes the user.
        EMAIL_OPT_IN = "mkt_email_opt_in" => Bool;
        /// Points available to spend.
        AVAILABLE_POINTS = "mkt_available_points" => Integer;
        /// Total price of the cart.
        CART_TOTAL_PRICE = "mkt_cart_total_price" => Number;
        /// Total price of the wish list.
        WISH_LIST_TOTAL_PRICE = "mkt_wish_list_total_price" => Number;
        /// Items in the cart; see [`super::item_field`].
        CART = "mkt_cart" => ItemList;
        /// Items in the wish list; see [`super::item_field`].
        WISH_LIST = "mkt_wish_list" => ItemList;
        /// Coupons the user holds; see [`super::coupon_field`].
        COUPONS = "mkt_coupons" => CouponList;
    );

    /// Gender: each variant once, with its wire value and `ALL`.
    macro_rules! gender {
        ($($variant:ident),*) => {
            /// The values of [`GENDER`]; serializes to exactly its variant's name.
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
            pub enum Gender {
                $(#[doc = concat!("`\"", stringify!($variant), "\"`.")] $variant,)*
            }

            impl Gender {
                /// Every value, in the order above.
                pub const ALL: &'static [Gender] = &[$(Self::$variant),*];

                /// The value as Marketap expects it, e.g. `"Female"`.
                #[must_use]
                pub const fn as_str(self) -> &'static str {
                    match self {
                        $(Self::$variant => stringify!($variant),)*
                    }
                }
            }
        };
    }

    gender!(Male, Female, Other, Unknown);

    impl std::fmt::Display for Gender {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.as_str())
        }
    }
}

/// Predefined event-property names, for an event's `properties`; the typed setters are on
/// [`EventBuilder`](crate::EventBuilder).
pub mod event_property {
    reserved_names!(typed:
        /// Revenue of the event.
        REVENUE = "mkt_revenue" => Number;
        /// Order identifier.
        ORDER_ID = "mkt_order_id" => String;
        /// Items involved; see [`super::item_field`].
        ITEMS = "mkt_items" => ItemList;
        /// The app session the event belongs to (the SDKs add it).
        SESSION_ID = "mkt_session_id" => String;
        /// The campaign behind a message event.
        CAMPAIGN_ID = "mkt_campaign_id" => String;
        /// The campaign's category: `ON_SITE` or `OFF_SITE`.
        CAMPAIGN_CATEGORY = "mkt_campaign_category" => String;
        /// The message's channel, e.g. `PUSH` or `IN_APP_MESSAGE`.
        CHANNEL_TYPE = "mkt_channel_type" => String;
        /// The channel's sub-type, e.g. `IOS` or `MODAL`.
        SUB_CHANNEL_TYPE = "mkt_sub_channel_type" => String;
        /// The message's result code, e.g. `200000`.
        RESULT_STATUS = "mkt_result_status" => Integer;
        /// The message's result, e.g. `SUCCESS`.
        RESULT_MESSAGE = "mkt_result_message" => String;
        /// Whether the message succeeded.
        IS_SUCCESS = "mkt_is_success" => Bool;
        /// The message.
        MESSAGE_ID = "mkt_message_id" => String;
        /// Where the message was shown or clicked.
        LOCATION_ID = "mkt_location_id" => String;
        /// The URL a message click opened.
        URL = "mkt_url" => String;
    );
}

/// Field names inside an item object, as listed under [`event_property::ITEMS`],
/// [`user_property::CART`] and [`user_property::WISH_LIST`]; the typed builder is
/// [`Product`](crate::Product).
pub mod item_field {
    reserved_names!(typed:
        /// Product identifier.
        PRODUCT_ID = "mkt_product_id" => String;
        /// Product name.
        PRODUCT_NAME = "mkt_product_name" => String;
        /// Top-level category.
        CATEGORY1 = "mkt_category1" => String;
        /// Second-level category.
        CATEGORY2 = "mkt_category2" => String;
        /// Third-level category.
        CATEGORY3 = "mkt_category3" => String;
        /// Fourth-level category.
        CATEGORY4 = "mkt_category4" => String;
        /// Fifth-level category.
        CATEGORY5 = "mkt_category5" => String;
        /// Unit price of the product.
        PRODUCT_PRICE = "mkt_product_price" => Number;
        /// Quantity.
        QUANTITY = "mkt_quantity" => NonNegativeInteger;
        /// Variant, such as size or color.
        VARIANT = "mkt_variant" => String;
        /// Brand.
        BRAND = "mkt_brand" => String;
        /// Extra price of the chosen option.
        OPTION_PRICE = "mkt_option_price" => Number;
        /// Shipping information.
        SHIPPING_INFO = "mkt_shipping_info" => String;
        /// Bundle information.
        BUNDLE_INFO = "mkt_bundle_info" => String;
        /// When the product was created, as your system writes it.
        CREATED_DATETIME = "mkt_created_datetime" => String;
    );
}

/// Field names inside a coupon object, as listed under [`user_property::COUPONS`]; the typed
/// builder is [`Coupon`](crate::Coupon). The category names are the item fields'.
pub mod coupon_field {
    use super::item_field;

    reserved_names!(typed:
        /// This issue of the coupon to this user.
        ISSUE_ID = "mkt_issue_id" => String;
        /// When the coupon was issued.
        ISSUED_AT = "mkt_issued_at" => Instant;
        /// When the coupon expires.
        EXPIRES_AT = "mkt_expires_at" => Instant;
        /// Top-level category the coupon applies to.
        CATEGORY1 = item_field::CATEGORY1 => String;
        /// Second-level category the coupon applies to.
        CATEGORY2 = item_field::CATEGORY2 => String;
        /// Third-level category the coupon applies to.
        CATEGORY3 = item_field::CATEGORY3 => String;
        /// Fourth-level category the coupon applies to.
        CATEGORY4 = item_field::CATEGORY4 => String;
        /// Fifth-level category the coupon applies to.
        CATEGORY5 = item_field::CATEGORY5 => String;
        /// The coupon's name.
        COUPON_NAME = "mkt_coupon_name" => String;
        /// The coupon (the kind, not this issue of it).
        COUPON_ID = "mkt_coupon_id" => String;
        /// Whether the coupon was used.
        IS_USED = "mkt_is_used" => Bool;
    );
}

#[cfg(test)]
mod tests {
    use super::user_property::Gender;
    use super::*;
    use std::collections::HashSet;

    const LISTS: [&[&str]; 6] = [
        event::ALL,
        sdk_event::ALL,
        user_property::ALL,
        event_property::ALL,
        item_field::ALL,
        coupon_field::ALL,
    ];

    #[test]
    fn every_name_is_reserved_and_well_formed() {
        for name in LISTS.into_iter().flatten() {
            assert!(is_reserved(name), "{name}");
            assert!(name.len() > RESERVED_PREFIX.len(), "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
        }
    }

    #[test]
    fn names_are_unique_but_for_the_categories_items_and_coupons_share() {
        for list in LISTS {
            let unique: HashSet<_> = list.iter().collect();
            assert_eq!(unique.len(), list.len(), "{list:?}");
        }
        let mut lists_of: std::collections::HashMap<&str, usize> = Default::default();
        for name in LISTS.into_iter().flatten() {
            *lists_of.entry(name).or_default() += 1;
        }
        let mut shared: Vec<_> = lists_of
            .into_iter()
            .filter(|(_, count)| *count > 1)
            .map(|(name, _)| name)
            .collect();
        shared.sort_unstable();
        let categories = [
            item_field::CATEGORY1,
            item_field::CATEGORY2,
            item_field::CATEGORY3,
            item_field::CATEGORY4,
            item_field::CATEGORY5,
        ];
        assert_eq!(shared, categories);
        for category in categories {
            assert_eq!(
                Scope::ItemField.value_type(category),
                Scope::CouponField.value_type(category)
            );
        }
    }

    #[test]
    fn all_and_types_list_the_same_names() {
        for (all, types) in [
            (user_property::ALL, user_property::TYPES),
            (event_property::ALL, event_property::TYPES),
            (item_field::ALL, item_field::TYPES),
            (coupon_field::ALL, coupon_field::TYPES),
        ] {
            let typed: Vec<&str> = types.iter().map(|(name, _)| *name).collect();
            assert_eq!(all, typed.as_slice());
        }
    }

    #[test]
    fn each_scope_reserves_its_own_list() {
        for (scope, list) in [
            (Scope::EventName, event::ALL),
            (Scope::EventName, sdk_event::ALL),
            (Scope::EventProperty, event_property::ALL),
            (Scope::UserProperty, user_property::ALL),
            (Scope::ItemField, item_field::ALL),
            (Scope::CouponField, coupon_field::ALL),
        ] {
            for name in list {
                assert!(scope.reserves(name), "{scope}: {name}");
            }
        }
        assert!(Scope::EventName.names().eq(event::ALL.iter().copied()));
        assert!(Scope::ItemField.names().eq(item_field::ALL.iter().copied()));
        assert!(!Scope::EventProperty.reserves(user_property::CART));
        assert!(!Scope::UserProperty.reserves(event_property::ITEMS));
        assert!(!Scope::EventProperty.reserves(item_field::PRODUCT_ID));
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
        let texts = ["Male", "Female", "Other", "Unknown"];
        assert_eq!(Gender::ALL.len(), texts.len());
        for (gender, text) in Gender::ALL.iter().zip(texts) {
            assert_eq!(gender.as_str(), text);
            assert_eq!(gender.to_string(), text);
            let json = serde_json::to_string(gender).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Gender>(&json).unwrap(), *gender);
        }
        assert!(serde_json::from_str::<Gender>("\"male\"").is_err());
        assert_eq!(
            ValueType::Gender.to_string(),
            r#"one of "Male", "Female", "Other", "Unknown""#
        );
    }
}
