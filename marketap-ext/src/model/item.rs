//! The four kinds of item the API takes, each a validated wrapper around
//! its generated wire type: [`Event`], [`UserProfile`], [`Device`] and
//! [`UserDeletion`]; their builders; and [`Platform`]. What the delivery
//! engine needs of each kind is in [`crate::model::kind`].
//!
//! Validation happens in `build()`: once you hold an item, it can go on the
//! wire. That includes the reserved check ([`crate::taxonomy`]): each
//! builder runs it unless told otherwise with `skip_reserved_check()`, and a
//! builder made by a client ([`Marketap::event`](crate::Marketap::event),
//! [`Marketap::profile`](crate::Marketap::profile)) follows the client's
//! [`Config::with_reserved_check`](crate::Config::with_reserved_check).
//! Wrapping the generated types (rather than copying into them) means
//! sending costs a move, not a conversion.

use marketap_api::types;
use serde::Serialize;
use serde_json::{Map, Value};

#[cfg(feature = "tracking-plan")]
use crate::model::typed::TrackEvent;
use crate::{
    bytes,
    error::{ValidationError, require_id, starts_printable},
    model::check,
    model::properties,
    model::reserved,
    model::taxonomy::{Scope, is_reserved},
    model::timestamp::{IntoTimestamp, Timestamp, check_wire},
};

/// `from_checked`, `wire_bound`, `wire_bytes` and `PartialEq` of an item
/// that wraps a wire value `raw` with a bound of its length as JSON,
/// `bound`: the same for every such item.
macro_rules! checked_wrapper {
    ($item:ident, $raw:ty) => {
        impl $item {
            /// Wraps a wire value that was validated before (it came out of
            /// an item of this kind).
            pub(crate) fn from_checked(raw: $raw) -> Self {
                let bound = properties::json_len(&raw);
                Self { raw, bound }
            }

            /// At least its length as JSON, in bytes, without counting: what
            /// the builder counted (a typed setter's strings as if every
            /// byte were escaped). Most requests are settled by bounds.
            pub(crate) fn wire_bound(&self) -> usize {
                self.bound
            }

            /// Its length as JSON, in bytes: counted, for when a bound does
            /// not settle a limit.
            pub(crate) fn wire_bytes(&self) -> usize {
                properties::json_len(self)
            }
        }

        /// Items are equal when their wire values are (however their
        /// lengths were bounded).
        impl PartialEq for $item {
            fn eq(&self, other: &Self) -> bool {
                self.raw == other.raw
            }
        }
    };
}

/// `bound` if it is within [`crate::MAX_ITEM_BYTES`]; else the item's
/// length as JSON counted by `exact`, which must be within it too, or
/// [`ValidationError::TooLarge`] naming `field`.
#[inline]
fn check_bound(
    field: &str,
    bound: usize,
    exact: impl FnOnce() -> usize,
) -> Result<usize, ValidationError> {
    if bound <= crate::MAX_ITEM_BYTES {
        return Ok(bound);
    }
    properties::check_size(field, exact())
}

/// `property`, `properties` and `skip_reserved_check` for a builder whose
/// `raw` wire type has a `properties` map.
macro_rules! property_setters {
    () => {
        /// Builds without the reserved check: `mkt_` names and their values go
        /// out as they are, for a name Marketap reserves that this SDK does
        /// not know yet, or an event you replay on purpose. Every other check
        /// still runs. See [`crate::taxonomy`].
        pub fn skip_reserved_check(self) -> Self {
            self.reserved_check(false)
        }

        /// Whether `build()` runs the reserved check (a client's setting).
        pub(crate) fn reserved_check(mut self, on: bool) -> Self {
            self.reserved_check = on;
            self
        }

        /// Sets one property. `value` may be anything `Serialize`; a NaN or
        /// infinite number is an error.
        #[inline(always)]
        pub fn property(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
            let key = key.into();
            // Typed setters write reserved names only.
            if is_reserved(&key) {
                self.known.forget(&key);
            }
            let member = insert_property(&mut self.raw.properties, &mut self.error, key, &value);
            self.counted = count(self.counted, member);
            self
        }

        /// Sets a reserved property to a value a typed setter built, of the
        /// name's reserved type, with its length as JSON: `build()` counts
        /// it without walking it ([`check::Known`]).
        #[inline(always)]
        pub(crate) fn set_known(
            mut self,
            name: check::KnownName,
            list: Result<(Value, usize), ValidationError>,
        ) -> Self {
            if self.error.is_none() {
                match list {
                    Ok((list, bytes)) => {
                        let key = name.as_str();
                        let replaced = self.raw.properties.insert(key.to_owned(), list);
                        self.known.insert(name, bytes);
                        // A reserved name: nothing in it is escaped.
                        let member = key.len() + r#""":"#.len() + bytes;
                        let member = replaced.is_none().then_some(member);
                        self.counted = count(self.counted, member);
                    }
                    Err(error) => self.error = Some(Box::new(error)),
                }
            }
            self
        }

        /// Sets every field of `properties`, which must serialise to a JSON
        /// object (a struct, a map, or `serde_json::json!({...})`).
        pub fn properties(mut self, properties: impl Serialize) -> Self {
            self.known.clear();
            self.counted = None;
            merge_properties(&mut self.raw.properties, &mut self.error, &properties);
            self
        }
    };
}

/// A bound of the members (`"key":value`) of a builder's properties,
/// added up, while every one of them is known to pass the walk of
/// `build()` as it was set: a typed setter's value ([`check::Known`]) or a
/// plain value under a name that is not reserved. `None` once anything
/// else was set (or the builder started from a wire value): `build()`
/// walks the properties; so does one past `u32::MAX`. A `u32`, as
/// [`check::Known`] is small: to keep a builder within 128 bytes.
type Counted = Option<u32>;

/// `counted` with one more member of at most `member` bytes, if both are
/// counted.
#[inline]
fn count(counted: Counted, member: Option<usize>) -> Counted {
    counted?.checked_add(u32::try_from(member?).ok()?)
}

/// What `build()` needs of the properties: a bound of their length as
/// JSON, with every member `counted` at once, else by [`check::walk`].
/// `check_name` runs between the walk's nesting error and its reserved-name
/// problem, the order `build()` reports them in.
#[inline]
fn properties_len(
    properties: &Map<String, Value>,
    counted: Counted,
    scope: Option<Scope>,
    known: &check::Known,
    check_name: impl FnOnce() -> Result<(), ValidationError>,
) -> Result<usize, ValidationError> {
    match counted {
        Some(members) => {
            check_name()?;
            Ok(properties::compound_len(properties.len(), members as usize))
        }
        None => walked_len(properties, scope, known, check_name),
    }
}

/// [`properties_len`] by the walk. Out of line: what the walk hands back,
/// a reserved-name problem in it, is large, and copying it around cost
/// every `build()` (2 to 4% of `build-ext`), though a builder whose every
/// member was counted never walks.
#[inline(never)]
fn walked_len(
    properties: &Map<String, Value>,
    scope: Option<Scope>,
    known: &check::Known,
    check_name: impl FnOnce() -> Result<(), ValidationError>,
) -> Result<usize, ValidationError> {
    let walked = check::walk(properties, scope, known)?;
    check_name()?;
    walked.reserved.map_or(Ok(walked.bytes), Err)
}

/// The first problem a setter found, for `build()` to return: boxed, so
/// that a builder, which each setter takes and gives back by value, stays
/// small to move.
type FirstError = Option<Box<ValidationError>>;

/// Adds a property to `map`, or remembers the first error for `build()`.
/// A plain value under a name that is not reserved passes every check of
/// `build()`'s walk as it is set: the bound of its member's length
/// (`"key":value`) comes back, so the walk is not needed for it. Anything
/// else (an array or object, a reserved name, a name set before) is
/// `None`: `build()` walks.
fn insert_property(
    map: &mut Map<String, Value>,
    error: &mut FirstError,
    key: String,
    value: &(impl Serialize + ?Sized),
) -> Option<usize> {
    if error.is_some() {
        return None;
    }
    if key.is_empty() {
        *error = Some(Box::new(ValidationError::empty("property name", &key)));
        return None;
    }
    match properties::to_value(format_args!("properties.{key}"), value) {
        Ok(value) => {
            let member = (!value.is_array() && !value.is_object() && !is_reserved(&key))
                .then(|| properties::text_bound(&key) + 1 + properties::value_bound(&value));
            map.insert(key, value).map_or(member, |_| None)
        }
        Err(e) => {
            *error = Some(Box::new(e));
            None
        }
    }
}

/// Merges an object's fields into `map`, or remembers the first error.
fn merge_properties(
    map: &mut Map<String, Value>,
    error: &mut FirstError,
    value: &(impl Serialize + ?Sized),
) {
    if error.is_some() {
        return;
    }
    match properties::to_object("properties", value) {
        Ok(object) => map.extend(object),
        Err(e) => *error = Some(Box::new(e)),
    }
}

/// The length as JSON of a timestamp the wire can carry (a four-digit
/// year), as chrono writes it: `"2025-01-17T05:39:22Z"`, with `.123`,
/// `.123456` or `.123456789` when there is a fraction.
fn timestamp_len(timestamp: &chrono::DateTime<chrono::Utc>) -> usize {
    use chrono::Timelike as _;
    let nanos = timestamp.naive_utc().nanosecond() % 1_000_000_000;
    let fraction = if nanos == 0 {
        0
    } else if nanos.is_multiple_of(1_000_000) {
        4
    } else if nanos.is_multiple_of(1_000) {
        7
    } else {
        10
    };
    r#""2025-01-17T05:39:22Z""#.len() + fraction
}

/// Checks an id as [`require_id`] does, and gives its length as a JSON
/// string: one scan of the usual id, printable ASCII with no byte that is
/// escaped.
#[inline(always)]
fn id_len(field: &'static str, id: &str) -> Result<usize, ValidationError> {
    if starts_printable(id) && !bytes::any_word(id.as_bytes(), bytes::escapes_or_not_ascii) {
        return Ok(2 + id.len());
    }
    id_len_checked(field, id)
}

/// [`id_len`] of any other id (one that may be blank, holds a byte that
/// is escaped, or is not all ASCII): checked in full, then counted.
#[cold]
#[inline(never)]
fn id_len_checked(field: &'static str, id: &str) -> Result<usize, ValidationError> {
    require_id(field, id)?;
    Ok(properties::str_len(id))
}

/// The length of an event as JSON, by arithmetic, given those of its
/// two ids as JSON strings (from [`id_len`]) and of its properties (a
/// bound, from [`properties_len`]; the result is then one too):
/// `{"event_name":..,"properties":..,"timestamp":..,"user_id":..}`, the
/// properties left out when empty and the timestamp when unset, as the
/// generated type writes them.
#[inline]
fn event_len(raw: &types::CreateEventReq, ids_bytes: usize, properties_bytes: usize) -> usize {
    let mut bytes = r#"{"event_name":,"user_id":}"#.len() + ids_bytes;
    if !raw.properties.is_empty() {
        bytes += r#","properties":"#.len() + properties_bytes;
    }
    if let Some(timestamp) = &raw.timestamp {
        bytes += r#","timestamp":"#.len() + timestamp_len(timestamp);
    }
    bytes
}

/// The length of a profile as JSON, by arithmetic, given those of its
/// user id as a JSON string and of its properties (a bound, as for
/// [`event_len`]):
/// `{"properties":..,"user_id":..}`.
fn profile_len(user_id_bytes: usize, properties_bytes: usize) -> usize {
    r#"{"properties":,"user_id":}"#.len() + properties_bytes + user_id_bytes
}

fn timestamp_of(value: impl IntoTimestamp, error: &mut FirstError) -> Option<Timestamp> {
    match value.into_timestamp() {
        Ok(timestamp) => Some(timestamp),
        Err(source) => {
            error.get_or_insert_with(|| {
                Box::new(ValidationError::Timestamp {
                    field: "timestamp",
                    source,
                })
            });
            None
        }
    }
}

// ---------------------------------------------------------------- events

/// One user event. Build it with [`Event::builder`] or [`Event::typed`].
///
/// ```
/// use marketap_ext::{Event, taxonomy::{event, event_property}};
///
/// let event = Event::builder("user-42", event::PURCHASE)
///     .property(event_property::REVENUE, 42_000)
///     .property(event_property::ORDER_ID, "order-7")
///     .timestamp("2025-01-17T05:39:22+09:00")
///     .build()?;
/// assert_eq!(event.timestamp().unwrap().to_string(), "2025-01-16T20:39:22Z");
/// # Ok::<(), marketap_ext::ValidationError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Event {
    raw: types::CreateEventReq,
    /// At least its length as JSON, for cutting requests by bytes.
    bound: usize,
}

/// The generated `CreateEventReq`'s JSON, byte for byte (a test checks it),
/// with the timestamp written without chrono's `fmt` round trip: this is
/// what the spool writes for each event, and what goes on the wire from it.
impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // Every field named: a field the spec adds fails to compile here.
        let types::CreateEventReq {
            event_name,
            properties,
            timestamp,
            user_id,
        } = &self.raw;
        let mut out = serializer.serialize_struct("CreateEventReq", 4)?;
        out.serialize_field("event_name", event_name)?;
        if properties.is_empty() {
            out.skip_field("properties")?;
        } else {
            out.serialize_field("properties", properties)?;
        }
        match timestamp {
            Some(timestamp) => {
                out.serialize_field("timestamp", &crate::model::timestamp::OnTheWire(timestamp))?
            }
            None => out.skip_field("timestamp")?,
        }
        out.serialize_field("user_id", user_id)?;
        out.end()
    }
}

/// Builds an [`Event`]; errors surface in [`build`](Self::build).
#[derive(Debug, Clone)]
#[must_use = "call .build() to get the event"]
pub struct EventBuilder {
    raw: types::CreateEventReq,
    error: FirstError,
    reserved_check: bool,
    known: check::Known,
    counted: Counted,
    /// Whether `raw.timestamp` came from a [`Timestamp`], which the wire
    /// can carry by construction; one given in the wire type is checked in
    /// `build()`.
    timestamp_checked: bool,
}

/// Starts from an event in the wire type (read from a file, say), so that
/// the builder's switches apply before it is checked:
/// `EventBuilder::from(raw).skip_reserved_check().build()`.
/// [`Event::from_raw`] is `EventBuilder::from(raw).build()`.
impl From<types::CreateEventReq> for EventBuilder {
    fn from(raw: types::CreateEventReq) -> Self {
        Self {
            raw,
            error: None,
            reserved_check: true,
            known: check::Known::default(),
            counted: None,
            timestamp_checked: false,
        }
    }
}

checked_wrapper!(Event, types::CreateEventReq);

impl Event {
    /// An event named `event_name` for `user_id`.
    pub fn builder(user_id: impl Into<String>, event_name: impl Into<String>) -> EventBuilder {
        EventBuilder {
            raw: types::CreateEventReq {
                user_id: user_id.into(),
                event_name: event_name.into(),
                properties: Map::new(),
                timestamp: None,
            },
            error: None,
            reserved_check: true,
            known: check::Known::default(),
            counted: Some(0),
            timestamp_checked: false,
        }
    }

    /// An event from your own type: its name is `E::NAME` and its fields are
    /// the properties. See [`TrackEvent`].
    #[cfg(feature = "tracking-plan")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracking-plan")))]
    pub fn typed<E: TrackEvent>(user_id: impl Into<String>, event: &E) -> EventBuilder {
        Self::builder(user_id, E::NAME).properties(event)
    }

    /// Validates an event in the generated wire type, e.g. one read back
    /// from a dead-letter file. The reserved check runs.
    pub fn from_raw(raw: types::CreateEventReq) -> Result<Self, ValidationError> {
        EventBuilder::from(raw).build()
    }

    /// Who did it.
    pub fn user_id(&self) -> &str {
        &self.raw.user_id
    }

    /// What they did.
    pub fn event_name(&self) -> &str {
        &self.raw.event_name
    }

    /// Its properties.
    pub fn properties(&self) -> &Map<String, Value> {
        &self.raw.properties
    }

    /// When it happened, if set (the server uses arrival time otherwise).
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.raw.timestamp.map(Timestamp::from_checked)
    }

    /// The generated wire type.
    pub fn as_raw(&self) -> &types::CreateEventReq {
        &self.raw
    }

    /// The generated wire type, by value.
    pub fn into_raw(self) -> types::CreateEventReq {
        self.raw
    }
}

impl EventBuilder {
    property_setters!();

    /// When it happened: a chrono `DateTime` in any zone, a `SystemTime`,
    /// a [`Timestamp`], or an ISO 8601 string with an offset.
    pub fn timestamp(mut self, timestamp: impl IntoTimestamp) -> Self {
        self.raw.timestamp = timestamp_of(timestamp, &mut self.error).map(Timestamp::into_datetime);
        self.timestamp_checked = true;
        self
    }

    /// The event, or the first problem found.
    #[inline]
    pub fn build(self) -> Result<Event, ValidationError> {
        if let Some(error) = self.error {
            return Err(*error);
        }
        let user_id_bytes = id_len("user_id", &self.raw.user_id)?;
        let name = &self.raw.event_name;
        // A name of the taxonomy needs neither the scan nor the reserved
        // check: it is one of the crate's own constants.
        let taxonomy_name = reserved::is_reserved_event(name);
        let name_bytes = if taxonomy_name {
            2 + name.len()
        } else {
            id_len("event_name", name)?
        };
        let ids_bytes = user_id_bytes + name_bytes;
        if let Some(timestamp) = self
            .raw
            .timestamp
            .as_ref()
            .filter(|_| !self.timestamp_checked)
        {
            check_wire(timestamp).map_err(|source| ValidationError::Timestamp {
                field: "timestamp",
                source,
            })?;
        }
        let scope = self.reserved_check.then_some(Scope::EventProperty);
        let check_name = || {
            if self.reserved_check && !taxonomy_name {
                reserved::check_event_name(&self.raw.event_name)
            } else {
                Ok(())
            }
        };
        let properties_bytes = properties_len(
            &self.raw.properties,
            self.counted,
            scope,
            &self.known,
            check_name,
        )?;
        let bound = event_len(&self.raw, ids_bytes, properties_bytes);
        let bound = check_bound("event", bound, || properties::json_len(&self.raw))?;
        Ok(Event {
            raw: self.raw,
            bound,
        })
    }
}

// --------------------------------------------------------------- profiles

/// A user's profile properties. Build it with [`UserProfile::builder`].
///
/// ```
/// use marketap_ext::{UserProfile, taxonomy::user_property};
///
/// let profile = UserProfile::builder("user-42")
///     .property(user_property::EMAIL, "jane@example.com")
///     .property(user_property::EMAIL_OPT_IN, true)
///     .build()?;
/// assert_eq!(profile.properties().len(), 2);
/// # Ok::<(), marketap_ext::ValidationError>(())
/// ```
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct UserProfile {
    raw: types::BulkUserProfile,
    /// At least its length as JSON, for cutting requests by bytes.
    #[serde(skip)]
    bound: usize,
}

/// Builds a [`UserProfile`]; errors surface in [`build`](Self::build).
#[derive(Debug, Clone)]
#[must_use = "call .build() to get the profile"]
pub struct UserProfileBuilder {
    raw: types::BulkUserProfile,
    error: FirstError,
    reserved_check: bool,
    known: check::Known,
    counted: Counted,
}

/// Starts from a profile in the wire type, so that the builder's switches
/// apply before it is checked:
/// `UserProfileBuilder::from(raw).skip_reserved_check().build()`.
/// [`UserProfile::from_raw`] is `UserProfileBuilder::from(raw).build()`.
impl From<types::BulkUserProfile> for UserProfileBuilder {
    fn from(raw: types::BulkUserProfile) -> Self {
        Self {
            raw,
            error: None,
            reserved_check: true,
            known: check::Known::default(),
            counted: None,
        }
    }
}

checked_wrapper!(UserProfile, types::BulkUserProfile);

impl UserProfile {
    /// A profile update for `user_id`.
    pub fn builder(user_id: impl Into<String>) -> UserProfileBuilder {
        UserProfileBuilder {
            raw: types::BulkUserProfile {
                user_id: user_id.into(),
                properties: Map::new(),
            },
            error: None,
            reserved_check: true,
            known: check::Known::default(),
            counted: Some(0),
        }
    }

    /// Validates a profile in the generated wire type. The reserved check
    /// runs.
    pub fn from_raw(raw: types::BulkUserProfile) -> Result<Self, ValidationError> {
        UserProfileBuilder::from(raw).build()
    }

    /// Whose profile.
    pub fn user_id(&self) -> &str {
        &self.raw.user_id
    }

    /// The properties to set.
    pub fn properties(&self) -> &Map<String, Value> {
        &self.raw.properties
    }

    /// The generated wire type.
    pub fn into_raw(self) -> types::BulkUserProfile {
        self.raw
    }
}

impl UserProfileBuilder {
    property_setters!();

    /// Sets one property to a value the SDK built itself, moved in as it
    /// is, to be walked in `build()` as any other (a typed setter's value
    /// that the walk must still look at), or remembers the first error.
    pub(crate) fn set(mut self, key: &'static str, value: Result<Value, ValidationError>) -> Self {
        if self.error.is_none() {
            match value {
                Ok(value) => {
                    self.known.forget(key);
                    self.counted = None;
                    self.raw.properties.insert(key.to_owned(), value);
                }
                Err(error) => self.error = Some(Box::new(error)),
            }
        }
        self
    }

    /// The profile, or the first problem found.
    pub fn build(self) -> Result<UserProfile, ValidationError> {
        if let Some(error) = self.error {
            return Err(*error);
        }
        let user_id_bytes = id_len("user_id", &self.raw.user_id)?;
        let scope = self.reserved_check.then_some(Scope::UserProperty);
        let properties_bytes = properties_len(
            &self.raw.properties,
            self.counted,
            scope,
            &self.known,
            || Ok(()),
        )?;
        let bound = profile_len(user_id_bytes, properties_bytes);
        let bound = check_bound("profile", bound, || properties::json_len(&self.raw))?;
        Ok(UserProfile {
            raw: self.raw,
            bound,
        })
    }
}

// ---------------------------------------------------------------- devices

/// A device's push platform, as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Platform {
    /// `IOS`: an APNs token.
    #[serde(rename = "IOS")]
    Ios,
    /// `ANDROID`: an FCM token.
    #[serde(rename = "ANDROID")]
    Android,
    /// `WEB`: a Web Push endpoint.
    #[serde(rename = "WEB")]
    Web,
}

impl Platform {
    /// `IOS`, `ANDROID` or `WEB`.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "IOS",
            Platform::Android => "ANDROID",
            Platform::Web => "WEB",
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device push token and its owner. Build it with [`Device::builder`].
///
/// ```
/// use marketap_ext::{Device, Platform};
///
/// let device = Device::builder("fcm-token-abc", Platform::Android)
///     .user_id("user-42")
///     .opt_in(true)
///     .build()?;
/// assert_eq!(device.platform(), "ANDROID");
/// # Ok::<(), marketap_ext::ValidationError>(())
/// ```
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Device {
    raw: types::UpdateDeviceProfileReq,
    /// Its length as JSON, for cutting requests by bytes (exact).
    #[serde(skip)]
    bound: usize,
}

/// Builds a [`Device`]; errors surface in [`build`](Self::build).
#[derive(Debug, Clone)]
#[must_use = "call .build() to get the device"]
pub struct DeviceBuilder {
    raw: types::UpdateDeviceProfileReq,
    error: FirstError,
}

checked_wrapper!(Device, types::UpdateDeviceProfileReq);

impl Device {
    /// A device with push `token` (FCM, APNs, or a Web Push endpoint).
    pub fn builder(token: impl Into<String>, platform: Platform) -> DeviceBuilder {
        DeviceBuilder {
            raw: types::UpdateDeviceProfileReq {
                device: types::ClientDevice {
                    token: token.into(),
                    platform: platform.as_str().to_owned(),
                    opt_in: None,
                },
                user_id: None,
                timestamp: None,
            },
            error: None,
        }
    }

    /// Validates a device in the generated wire type.
    pub fn from_raw(raw: types::UpdateDeviceProfileReq) -> Result<Self, ValidationError> {
        DeviceBuilder { raw, error: None }.build()
    }

    /// The push token.
    pub fn token(&self) -> &str {
        &self.raw.device.token
    }

    /// The platform as sent (`IOS`, `ANDROID`, `WEB`).
    pub fn platform(&self) -> &str {
        &self.raw.device.platform
    }

    /// The owner, if set.
    pub fn user_id(&self) -> Option<&str> {
        self.raw.user_id.as_deref()
    }

    /// The generated wire type.
    pub fn into_raw(self) -> types::UpdateDeviceProfileReq {
        self.raw
    }
}

impl DeviceBuilder {
    /// The user the device belongs to.
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.raw.user_id = Some(user_id.into());
        self
    }

    /// The device's push-marketing consent. Leave unset when unknown: only
    /// an explicit `false` excludes the user from marketing pushes.
    pub fn opt_in(mut self, opt_in: bool) -> Self {
        self.raw.device.opt_in = Some(opt_in);
        self
    }

    /// When this was observed; same forms as [`EventBuilder::timestamp`].
    pub fn timestamp(mut self, timestamp: impl IntoTimestamp) -> Self {
        self.raw.timestamp = timestamp_of(timestamp, &mut self.error).map(Timestamp::into_datetime);
        self
    }

    /// The device, or the first problem found.
    pub fn build(self) -> Result<Device, ValidationError> {
        if let Some(error) = self.error {
            return Err(*error);
        }
        require_id("token", &self.raw.device.token)?;
        require_id("platform", &self.raw.device.platform)?;
        if let Some(user_id) = &self.raw.user_id {
            require_id("user_id", user_id)?;
        }
        if let Some(timestamp) = &self.raw.timestamp {
            check_wire(timestamp).map_err(|source| ValidationError::Timestamp {
                field: "timestamp",
                source,
            })?;
        }
        let bound = properties::check_size("device", properties::json_len(&self.raw))?;
        Ok(Device {
            raw: self.raw,
            bound,
        })
    }
}

// --------------------------------------------------------------- deletion

/// A request to delete one user's profile. One alone goes to the
/// single-deletion endpoint; several go to the bulk one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserDeletion(String);

impl UserDeletion {
    /// Deletion of `user_id`, which must not be empty.
    pub fn new(user_id: impl Into<String>) -> Result<Self, ValidationError> {
        let user_id = user_id.into();
        require_id("user_id", &user_id)?;
        Ok(Self(user_id))
    }

    /// The user to delete.
    pub fn user_id(&self) -> &str {
        &self.0
    }

    /// Wraps an id that was validated before.
    pub(crate) fn from_checked(user_id: String) -> Self {
        Self(user_id)
    }

    /// The id, by value.
    pub(crate) fn into_user_id(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What [`id_len`] must give, by the definitions its one scan stands in
    /// for: `require_id`'s verdict, then the length serde_json writes.
    fn by_definition(id: &str) -> Result<usize, ValidationError> {
        require_id("user_id", id).map(|()| serde_json::to_string(id).unwrap().len())
    }

    /// Each setter takes a builder by value and hands it back: within 128
    /// bytes that move is a few vector stores, past it a `memcpy` call (at
    /// 224 bytes the bench's `build-ext/build-raw` read 1.144, at 128 1.135).
    #[test]
    fn a_builder_is_at_most_128_bytes() {
        assert!(
            size_of::<EventBuilder>() <= 128,
            "{}",
            size_of::<EventBuilder>()
        );
        assert!(size_of::<UserProfileBuilder>() <= 128);
    }

    /// A builder counts while every member is counted and the sum fits a
    /// `u32`; past that, `build()` walks.
    #[test]
    fn members_are_counted_up_to_u32_max() {
        assert_eq!(count(Some(1), Some(2)), Some(3));
        assert_eq!(count(Some(u32::MAX - 2), Some(2)), Some(u32::MAX));
        assert_eq!(count(Some(u32::MAX - 1), Some(2)), None);
        let past_u32 = usize::try_from(u64::from(u32::MAX) + 1).unwrap();
        assert_eq!(count(Some(0), Some(past_u32)), None);
        assert_eq!(count(None, Some(1)), None);
        assert_eq!(count(Some(1), None), None);
    }

    #[test]
    fn an_id_is_counted_or_refused_as_the_full_check_would() {
        let ids = [
            "user-000042",
            "u",
            "mkt_page_view",
            "quote\"d",
            "back\\slash",
            "tab\there",
            "del\u{7f}",
            "next\u{85}line",
            "no-break\u{a0}space",
            "사용자-42",
            "🙂",
            "line\u{2028}separator",
            " ",
            " leading",
            "",
        ];
        for id in ids {
            assert_eq!(id_len("user_id", id), by_definition(id), "{id:?}");
        }
    }

    /// The user id is checked first, then the event name's form, then
    /// whether a reserved name is one of the taxonomy's; a taxonomy name
    /// is counted without a scan.
    #[test]
    fn an_event_reports_its_first_problem_in_field_order() {
        let first = |user_id: &str, name: &str| {
            Event::builder(user_id, name)
                .build()
                .map(|event| event.wire_bound())
                .map_err(|error| error.to_string())
        };
        let user_id = first(" ", "bad\nname").unwrap_err();
        assert!(user_id.contains("user_id"), "{user_id}");
        let name = first("u1", "bad\nname").unwrap_err();
        assert!(name.contains("event_name"), "{name}");
        let unknown = first("u1", "mkt_not_an_event").unwrap_err();
        assert!(unknown.contains("mkt_not_an_event"), "{unknown}");
        for name in crate::taxonomy::event::ALL {
            let exact = serde_json::to_vec(&Event::builder("u1", *name).build().unwrap())
                .unwrap()
                .len();
            assert_eq!(first("u1", name), Ok(exact), "{name}");
        }
    }

    /// An event of ids and a timestamp is bounded exactly: the timestamp's
    /// length, by its fraction's digits, is counted, not bounded.
    #[test]
    fn a_timestamp_is_counted_exactly() {
        let times = [
            "2025-01-17T05:39:22Z",
            "2025-01-17T05:39:22.5Z",
            "2025-01-17T05:39:22.000120Z",
            "2025-01-17T05:39:22.000000007Z",
        ];
        for at in times {
            let event = Event::builder("u1", "login").timestamp(at).build().unwrap();
            let exact = serde_json::to_vec(&event).unwrap().len();
            assert_eq!(event.wire_bound(), exact, "{at}");
        }
    }

    proptest! {
        #[test]
        fn ids_agree_with_the_full_check(id in "[ -~]{0,24}|\\PC{0,12}|.{0,12}") {
            prop_assert_eq!(id_len("user_id", &id), by_definition(&id));
        }
    }
}
