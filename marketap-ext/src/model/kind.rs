//! Everything kind-specific about the four items, in one sealed trait:
//! [`Item`] says which [`Operation`] takes a kind, how a list of items
//! becomes that operation's request body and back, how it is posted, how
//! a dead letter's body is read back, and how failed items are handed
//! back ([`Undelivered`]). The delivery engine, the ingestor and the
//! dead-letter file are generic over it, so a new kind is one impl here
//! plus its [`Operation`] and [`Undelivered`] variants.

use std::{fmt::Debug, future::Future};

use marketap_api::{Client, types};

use self::sealed::Wire as _;
use serde::{Deserialize, Serialize};

use crate::{
    delivery::encoded::WrittenBody,
    error::{Error, ValidationError},
    model::item::{Device, Event, EventBuilder, UserDeletion, UserProfile, UserProfileBuilder},
    report::FailedBatch,
};

/// An operation of the API that takes items, by its `operationId`: what a
/// dead letter records, and what traces name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Operation {
    /// Events: `POST /v1/api/events`.
    CollectBulkUserEvents,
    /// User profiles: `POST /v1/api/profile/user`.
    UpdateBulkUserProfiles,
    /// Device push tokens: `POST /v1/api/profile/user/device/bulk`.
    UpdateBulkDeviceProfiles,
    /// One user's deletion: `POST /v1/api/profile/user/deletion-job`.
    RequestUserProfileDeletion,
    /// Several users' deletion: `POST /v1/api/profile/user/deletion-job/bulk`.
    RequestBulkUserProfileDeletion,
}

impl Operation {
    /// The `operationId`, e.g. `collect_bulk_user_events`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::CollectBulkUserEvents => "collect_bulk_user_events",
            Operation::UpdateBulkUserProfiles => "update_bulk_user_profiles",
            Operation::UpdateBulkDeviceProfiles => "update_bulk_device_profiles",
            Operation::RequestUserProfileDeletion => "request_user_profile_deletion",
            Operation::RequestBulkUserProfileDeletion => "request_bulk_user_profile_deletion",
        }
    }
}

#[cfg(test)]
impl Operation {
    /// Every operation, for tests that go through them all.
    pub(crate) const ALL: [Operation; 5] = [
        Operation::CollectBulkUserEvents,
        Operation::UpdateBulkUserProfiles,
        Operation::UpdateBulkDeviceProfiles,
        Operation::RequestUserProfileDeletion,
        Operation::RequestBulkUserProfileDeletion,
    ];
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something the batch calls, the ingestor and the dead-letter file can
/// send: [`Event`], [`UserProfile`], [`Device`] or [`UserDeletion`].
///
/// Serialises to the API's own JSON for one item. Sealed: only this
/// crate's items implement it.
pub trait Item: sealed::Kind + Serialize + Debug + Clone + Send + Sync + 'static {}

impl<T: sealed::Kind + Serialize + Debug + Clone + Send + Sync + 'static> Item for T {}

pub(crate) mod sealed {
    use super::*;

    pub use crate::error::ApiResult;

    /// What the delivery engine needs of what it sends: a request body
    /// made of a list of them, and how that body is posted. Every kind is
    /// one, and so is an item with its JSON already written
    /// ([`Encoded`](crate::delivery::encoded::Encoded)).
    pub trait Wire: Sized + Send + Sync + 'static {
        /// The request body the generated client takes by reference.
        type Body: Send + Sync + 'static;
        /// The list's name in a bulk body (`events`, `profiles`,
        /// `user_ids`), and in a dead letter's body.
        const FIELD: &'static str;
        /// The operation a dead letter of this kind names.
        const OPERATION: Operation;

        /// Makes the body of `items`.
        fn into_body(items: Vec<Self>) -> Self::Body;
        /// Takes the items back out, to hand a failed request back.
        fn into_items(body: Self::Body) -> Vec<Self>;
        /// How many items `body` holds.
        fn count(body: &Self::Body) -> usize;
        /// The body's length as JSON, in bytes.
        fn body_bytes(body: &Self::Body) -> usize;
        /// `body` cut after its first `at` items (0 < `at` < its count):
        /// the two bodies [`into_body`](Self::into_body) would make of the
        /// two runs of items.
        fn split(body: Self::Body, at: usize) -> (Self::Body, Self::Body) {
            let mut first = Self::into_items(body);
            let second = first.split_off(at);
            (Self::into_body(first), Self::into_body(second))
        }
        /// The operation a body goes to (deletions pick one of two).
        fn operation(_body: &Self::Body) -> Operation {
            Self::OPERATION
        }
        /// Posts the body once.
        fn post<'a>(
            api: &'a Client,
            project_id: &'a str,
            body: &'a Self::Body,
        ) -> impl Future<Output = ApiResult> + Send + 'a;
        /// The item's length as JSON in a request body, in bytes.
        fn wire_bytes(&self) -> usize;
        /// At least [`wire_bytes`](Self::wire_bytes), known without
        /// counting: most requests fit by their items' bounds alone.
        fn wire_bound(&self) -> usize {
            self.wire_bytes()
        }
    }

    /// The kind-specific part of [`Item`](super::Item).
    pub trait Kind: Wire {
        /// Which slot of per-kind storage (the ingestor's lanes) is this
        /// kind's: 0 to [`KINDS`] - 1, one per kind.
        const INDEX: usize;

        /// Checks an item that did not come from a builder (read back from
        /// a dead letter), with the reserved check on or off.
        fn validate(self, reserved_check: bool) -> Result<Self, ValidationError>;
        /// The items of a dead letter's body, `{FIELD: [...]}`, unchecked.
        fn from_letter(body: serde_json::Value) -> Result<Vec<Self>, serde_json::Error>;
        /// An item read back from the spool, where it was written as its
        /// own JSON (`serde_json::to_vec(&item)`) after it was checked.
        fn from_spool(bytes: &[u8]) -> Result<Self, serde_json::Error>;
        /// The request body of items whose own JSON is `jsons`, as
        /// [`post`](Wire::post) would send it, and its operation: the
        /// list `{FIELD:[a,b,...]}` (deletions of one user differ).
        fn encoded_body(jsons: &[&[u8]]) -> (Operation, Vec<u8>) {
            (Self::OPERATION, encoded_list(Self::FIELD, jsons))
        }
        /// Failed items of this kind, as the ingestor hands them back.
        fn undelivered(batch: FailedBatch<Self>) -> Undelivered;
    }

    /// `{"<field>":[a,b,...]}` from each element's JSON.
    pub(crate) fn encoded_list(field: &str, jsons: &[&[u8]]) -> Vec<u8> {
        let len = field.len() + 7 + jsons.iter().map(|json| json.len() + 1).sum::<usize>();
        let mut body = Vec::with_capacity(len);
        let Ok(()) = write_list(&mut body, field, jsons.len(), |body, i| {
            body.extend_from_slice(jsons[i]);
            Ok::<(), std::convert::Infallible>(())
        });
        body
    }

    /// Writes the list `{"<field>":[a,b,...]}` into `body`: `count`
    /// elements, each written by `element(body, index)`, stopping at the
    /// first error. Every request body of a list is framed here.
    pub(crate) fn write_list<E>(
        body: &mut Vec<u8>,
        field: &str,
        count: usize,
        mut element: impl FnMut(&mut Vec<u8>, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        body.extend_from_slice(b"{\"");
        body.extend_from_slice(field.as_bytes());
        body.extend_from_slice(b"\":[");
        for index in 0..count {
            if index > 0 {
                body.push(b',');
            }
            element(body, index)?;
        }
        body.extend_from_slice(b"]}");
        Ok(())
    }
}

/// How many kinds there are (the range of [`sealed::Kind::INDEX`]).
pub(crate) const KINDS: usize = 4;

/// What the generated client sends for a list of items: its typed body,
/// posted by its method. The tests hold every body this crate writes to
/// it, byte for byte.
#[cfg(test)]
pub(crate) trait Generated: Item {
    type Typed: Serialize + Sync;

    fn generated_body(items: Vec<Self>) -> Self::Typed;

    fn post_generated<'a>(
        api: &'a Client,
        project_id: &'a str,
        body: &'a Self::Typed,
    ) -> impl Future<Output = sealed::ApiResult> + Send + 'a;
}

/// Deletions are posted by the generated methods themselves.
#[cfg(test)]
impl Generated for UserDeletion {
    type Typed = DeletionBody;

    fn generated_body(items: Vec<Self>) -> Self::Typed {
        Self::into_body(items)
    }

    fn post_generated<'a>(
        api: &'a Client,
        project_id: &'a str,
        body: &'a Self::Typed,
    ) -> impl Future<Output = sealed::ApiResult> + Send + 'a {
        Self::post(api, project_id, body)
    }
}

/// The [`Item`] impl of a kind sent in bulk: `$item` wraps one element of
/// `types::$body`'s `$list`, and is written into its request body by its
/// own `Serialize` ([`WrittenBody`]) and posted as those bytes,
/// which the tests hold to what `Client::$method` sends ([`Generated`]);
/// `$validate` checks one element again (with the reserved check on or
/// off).
macro_rules! bulk_kind {
    ($item:ident, $body:ident, $raw:ident, $list:ident, $operation:ident, $method:ident, $index:literal, $undelivered:ident, $validate:expr) => {
        impl sealed::Wire for $item {
            type Body = WrittenBody<Self>;
            const FIELD: &'static str = stringify!($list);
            const OPERATION: Operation = Operation::$operation;

            fn into_body(items: Vec<Self>) -> Self::Body {
                WrittenBody::new(items)
            }

            fn into_items(body: Self::Body) -> Vec<Self> {
                body.into_items()
            }

            fn count(body: &Self::Body) -> usize {
                body.count()
            }

            fn body_bytes(body: &Self::Body) -> usize {
                body.len()
            }

            fn split(body: Self::Body, at: usize) -> (Self::Body, Self::Body) {
                body.split(at)
            }

            fn post<'a>(
                api: &'a Client,
                project_id: &'a str,
                body: &'a Self::Body,
            ) -> impl Future<Output = sealed::ApiResult> + Send + 'a {
                body.post(api, project_id)
            }

            fn wire_bytes(&self) -> usize {
                $item::wire_bytes(self)
            }

            fn wire_bound(&self) -> usize {
                $item::wire_bound(self)
            }
        }

        impl sealed::Kind for $item {
            const INDEX: usize = $index;

            fn validate(self, reserved_check: bool) -> Result<Self, ValidationError> {
                let validate: fn(_, bool) -> Result<Self, ValidationError> = $validate;
                validate(self.into_raw(), reserved_check)
            }

            fn from_letter(body: serde_json::Value) -> Result<Vec<Self>, serde_json::Error> {
                let body = serde_json::from_value::<types::$body>(body)?;
                Ok(body.$list.into_iter().map(Self::from_checked).collect())
            }

            fn from_spool(bytes: &[u8]) -> Result<Self, serde_json::Error> {
                serde_json::from_slice::<types::$raw>(bytes).map(Self::from_checked)
            }

            fn undelivered(batch: FailedBatch<Self>) -> Undelivered {
                Undelivered::$undelivered(batch)
            }
        }

        #[cfg(test)]
        impl Generated for $item {
            type Typed = types::$body;

            fn generated_body(items: Vec<Self>) -> Self::Typed {
                types::$body {
                    $list: items.into_iter().map(Self::into_raw).collect(),
                }
            }

            fn post_generated<'a>(
                api: &'a Client,
                project_id: &'a str,
                body: &'a Self::Typed,
            ) -> impl Future<Output = sealed::ApiResult> + Send + 'a {
                api.$method(project_id, body)
            }
        }
    };
}

bulk_kind!(
    Event,
    CreateBulkEventReq,
    CreateEventReq,
    events,
    CollectBulkUserEvents,
    collect_bulk_user_events,
    0,
    Events,
    |raw, reserved_check| EventBuilder::from(raw)
        .reserved_check(reserved_check)
        .build()
);
bulk_kind!(
    UserProfile,
    UpdateBulkUserProfileReq,
    BulkUserProfile,
    profiles,
    UpdateBulkUserProfiles,
    update_bulk_user_profiles,
    1,
    Profiles,
    |raw, reserved_check| UserProfileBuilder::from(raw)
        .reserved_check(reserved_check)
        .build()
);
bulk_kind!(
    Device,
    UpdateBulkDeviceProfileReq,
    UpdateDeviceProfileReq,
    profiles,
    UpdateBulkDeviceProfiles,
    update_bulk_device_profiles,
    2,
    Devices,
    // A device has no properties: nothing for the reserved check.
    |raw, _| Device::from_raw(raw)
);

/// The body of a deletion request: one user, or several.
#[derive(Debug, Serialize)]
#[serde(untagged)]
#[doc(hidden)]
pub enum DeletionBody {
    One(types::DeleteUserProfileReq),
    Many(types::DeleteBulkUserProfileReq),
}

impl sealed::Wire for UserDeletion {
    type Body = DeletionBody;
    const FIELD: &'static str = "user_ids";
    const OPERATION: Operation = Operation::RequestBulkUserProfileDeletion;

    fn into_body(mut items: Vec<Self>) -> Self::Body {
        if items.len() == 1 {
            let user_id = items.remove(0).into_user_id();
            DeletionBody::One(types::DeleteUserProfileReq { user_id })
        } else {
            DeletionBody::Many(types::DeleteBulkUserProfileReq {
                user_ids: items.into_iter().map(Self::into_user_id).collect(),
            })
        }
    }

    fn into_items(body: Self::Body) -> Vec<Self> {
        match body {
            DeletionBody::One(req) => vec![Self::from_checked(req.user_id)],
            DeletionBody::Many(req) => req.user_ids.into_iter().map(Self::from_checked).collect(),
        }
    }

    fn count(body: &Self::Body) -> usize {
        match body {
            DeletionBody::One(_) => 1,
            DeletionBody::Many(req) => req.user_ids.len(),
        }
    }

    fn body_bytes(body: &Self::Body) -> usize {
        serde_json::to_vec(body).map_or(0, |json| json.len())
    }

    fn operation(body: &Self::Body) -> Operation {
        match body {
            DeletionBody::One(_) => Operation::RequestUserProfileDeletion,
            DeletionBody::Many(_) => Operation::RequestBulkUserProfileDeletion,
        }
    }

    async fn post(api: &Client, project_id: &str, body: &Self::Body) -> sealed::ApiResult {
        match body {
            DeletionBody::One(req) => api.request_user_profile_deletion(project_id, req).await,
            DeletionBody::Many(req) => {
                api.request_bulk_user_profile_deletion(project_id, req)
                    .await
            }
        }
    }

    fn wire_bytes(&self) -> usize {
        crate::model::properties::json_len(self.user_id())
    }
}

impl sealed::Kind for UserDeletion {
    const INDEX: usize = 3;

    fn validate(self, _reserved_check: bool) -> Result<Self, ValidationError> {
        Self::new(self.into_user_id())
    }

    fn from_letter(body: serde_json::Value) -> Result<Vec<Self>, serde_json::Error> {
        serde_json::from_value::<types::DeleteBulkUserProfileReq>(body)
            .map(|req| Self::into_items(DeletionBody::Many(req)))
    }

    fn from_spool(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice::<String>(bytes).map(Self::from_checked)
    }

    fn encoded_body(jsons: &[&[u8]]) -> (Operation, Vec<u8>) {
        match jsons {
            // One user: `{"user_id":"..."}`, as `into_body` does.
            [one] => {
                let mut body = Vec::with_capacity(one.len() + 12);
                body.extend_from_slice(b"{\"user_id\":");
                body.extend_from_slice(one);
                body.push(b'}');
                (Operation::RequestUserProfileDeletion, body)
            }
            _ => (Self::OPERATION, sealed::encoded_list(Self::FIELD, jsons)),
        }
    }

    fn undelivered(batch: FailedBatch<Self>) -> Undelivered {
        Undelivered::Deletions(batch)
    }
}

/// Items of one request that were not delivered, by kind: what the
/// ingestor hands to `on_failure` and keeps for its reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum Undelivered {
    /// Events.
    Events(FailedBatch<Event>),
    /// User profiles.
    Profiles(FailedBatch<UserProfile>),
    /// Devices.
    Devices(FailedBatch<Device>),
    /// User deletions.
    Deletions(FailedBatch<UserDeletion>),
}

impl<T: Item> From<FailedBatch<T>> for Undelivered {
    /// The failed batch under its kind's variant, e.g. for a
    /// [`DeadLetter`](crate::dead_letter::DeadLetter).
    fn from(batch: FailedBatch<T>) -> Self {
        T::undelivered(batch)
    }
}

/// What every kind's failed batch can say of itself.
pub(crate) trait AnyFailedBatch {
    fn len(&self) -> usize;
    fn error(&self) -> &Error;
    fn attempts(&self) -> u32;
    fn operation(&self) -> Operation;
    /// The items as the API's JSON for the list, `[...]`.
    fn items_json(&self) -> serde_json::Result<serde_json::Value>;
    fn field(&self) -> &'static str;
}

impl<T: Item> AnyFailedBatch for FailedBatch<T> {
    fn len(&self) -> usize {
        self.items.len()
    }
    fn error(&self) -> &Error {
        &self.error
    }
    fn attempts(&self) -> u32 {
        self.attempts
    }
    fn operation(&self) -> Operation {
        T::OPERATION
    }
    fn items_json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::to_value(&self.items)
    }
    fn field(&self) -> &'static str {
        T::FIELD
    }
}

impl Undelivered {
    /// The one place that matches on the kind.
    pub(crate) fn batch(&self) -> &dyn AnyFailedBatch {
        match self {
            Undelivered::Events(batch) => batch,
            Undelivered::Profiles(batch) => batch,
            Undelivered::Devices(batch) => batch,
            Undelivered::Deletions(batch) => batch,
        }
    }

    /// How many items.
    pub fn len(&self) -> usize {
        self.batch().len()
    }

    /// Whether there are none (never, for what an ingestor reports).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why they were not delivered.
    pub fn error(&self) -> &Error {
        self.batch().error()
    }

    /// How many times their request was sent (0 if it never was).
    pub fn attempts(&self) -> u32 {
        self.batch().attempts()
    }

    /// The operation that takes them.
    pub fn operation(&self) -> Operation {
        self.batch().operation()
    }
}

#[cfg(test)]
mod tests {
    use super::{sealed::Kind, *};
    use crate::model::strategies;

    fn index_of<T: Item>() -> usize {
        T::INDEX
    }

    #[test]
    fn each_kind_has_its_own_slot() {
        let mut indices = [
            index_of::<Event>(),
            index_of::<UserProfile>(),
            index_of::<Device>(),
            index_of::<UserDeletion>(),
        ];
        indices.sort_unstable();
        assert_eq!(indices, [0, 1, 2, 3]);
        assert_eq!(indices.len(), KINDS);
    }

    #[test]
    fn operations_serialise_as_their_operation_ids() {
        for operation in Operation::ALL {
            let json = serde_json::to_value(operation).unwrap();
            assert_eq!(json, operation.as_str());
            assert_eq!(
                serde_json::from_value::<Operation>(json).unwrap(),
                operation
            );
        }
    }

    #[test]
    fn operations_display_as_their_operation_ids() {
        assert_eq!(
            Operation::UpdateBulkDeviceProfiles.to_string(),
            "update_bulk_device_profiles"
        );
    }

    /// What the spool writes of `item` reads back as the same item, and so
    /// do the items of a request body that failed.
    fn round_trips<T: Item + PartialEq>(item: T) {
        let bytes = serde_json::to_vec(&item).unwrap();
        let back = T::from_spool(&bytes).unwrap();
        assert_eq!(back, item, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(back.wire_bytes(), bytes.len());
        let items = vec![item.clone(), item];
        assert_eq!(T::into_items(T::into_body(items.clone())), items);
    }

    #[test]
    fn every_kind_reads_back_from_the_spool_as_it_was_written() {
        round_trips(
            Event::builder("u1", "mkt_page_view")
                .timestamp("2025-01-17T05:39:22+09:00")
                .property("seq", 7)
                .property("nested", serde_json::json!({ "a": [1.5, "x\n\u{1F600}"] }))
                .build()
                .unwrap(),
        );
        round_trips(
            UserProfile::builder("u2")
                .email("u2@example.com")
                .property("score", 3.25)
                .build()
                .unwrap(),
        );
        round_trips(
            Device::builder("token", crate::Platform::Android)
                .user_id("u3")
                .opt_in(true)
                .build()
                .unwrap(),
        );
        round_trips(UserDeletion::new("u4 \"quoted\"").unwrap());
        // Anything else is an error, not a panic.
        assert!(Event::from_spool(b"{\"not\":").is_err());
        assert!(UserDeletion::from_spool(b"7").is_err());
    }

    proptest::proptest! {
        /// Any valid item reads back from its JSON as the same item: every
        /// finite float, every escape, timestamps to the nanosecond.
        #[test]
        fn any_item_reads_back_from_its_json_unchanged(
            user_id in strategies::id(),
            event_name in strategies::id(),
            properties in strategies::properties(),
            secs in -62_167_219_200_i64..253_402_300_800,
            nanos in 0_u32..1_000_000_000,
            token in strategies::id(),
            opt_in in proptest::prelude::any::<Option<bool>>(),
        ) {
            let instant = chrono::DateTime::from_timestamp(secs, nanos).unwrap();
            let timestamp = crate::Timestamp::parse(&instant.to_rfc3339()).unwrap();
            let event = Event::from_raw(types::CreateEventReq {
                event_name,
                properties: properties.clone(),
                timestamp: Some(timestamp.into()),
                user_id: user_id.clone(),
            });
            // Random maps may nest too deeply or name a reserved property.
            if let Ok(event) = event {
                round_trips(event);
            }
            if let Ok(profile) = UserProfile::from_raw(types::BulkUserProfile {
                user_id: user_id.clone(),
                properties,
            }) {
                round_trips(profile);
            }
            let mut device = Device::builder(token, crate::Platform::Ios).timestamp(timestamp);
            if let Some(opt_in) = opt_in {
                device = device.opt_in(opt_in).user_id(user_id);
            }
            round_trips(device.build().unwrap());
        }
    }

    #[test]
    fn a_deletion_letter_reads_back_its_ids() {
        let body = serde_json::json!({ "user_ids": ["u1", "u2"] });
        let ids: Vec<String> = UserDeletion::from_letter(body)
            .unwrap()
            .iter()
            .map(|d| d.user_id().to_owned())
            .collect();
        assert_eq!(ids, ["u1", "u2"]);
    }

    #[test]
    fn undelivered_says_how_many_and_why() {
        fn batch<T>(items: Vec<T>) -> FailedBatch<T> {
            FailedBatch {
                items,
                error: Error::Cancelled,
                attempts: 2,
            }
        }
        let one = Undelivered::Deletions(batch(vec![UserDeletion::new("u").unwrap()]));
        assert_eq!((one.len(), one.is_empty(), one.attempts()), (1, false, 2));
        assert_eq!(one.operation(), Operation::RequestBulkUserProfileDeletion);
        assert!(matches!(one.error(), Error::Cancelled));
        let none = Undelivered::Events(batch(Vec::new()));
        assert!(none.is_empty());
    }

    #[test]
    fn one_deletion_goes_to_the_single_endpoint_and_comes_back() {
        let one = UserDeletion::into_body(vec![UserDeletion::new("u1").unwrap()]);
        assert_eq!(
            UserDeletion::operation(&one),
            Operation::RequestUserProfileDeletion
        );
        assert_eq!(UserDeletion::into_items(one)[0].user_id(), "u1");
        let many = UserDeletion::into_body(vec![
            UserDeletion::new("u1").unwrap(),
            UserDeletion::new("u2").unwrap(),
        ]);
        assert_eq!(
            UserDeletion::operation(&many),
            Operation::RequestBulkUserProfileDeletion
        );
        assert_eq!(UserDeletion::into_items(many).len(), 2);
    }
}
