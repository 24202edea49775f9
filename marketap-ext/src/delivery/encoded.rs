//! Request bodies written once, as the bytes that go on the wire, and sent
//! as those bytes.
//!
//! - Items sent in bulk (events, profiles, devices) are written into their
//!   body by their own `Serialize` when the request is made
//!   ([`WrittenBody`]): an event's timestamp without chrono's `fmt` round
//!   trip, which the generated type's `Serialize` takes (about 2,400
//!   instructions an event, a third of writing it). The items are dropped
//!   once written, on the thread that just made them: holding them until
//!   the answer cost the end-to-end bench about a fifth of its CPU
//!   (freeing them cold, after four requests' worth of other events). The
//!   body records where each item ends, so a request is cut in two (a 413,
//!   or isolating a 400) by copying bytes; a request that fails for good
//!   reads its items back from their bytes, the same items (a property
//!   test holds every kind to it).
//! - [`Encoded`] items: the spool writes each item's own JSON before
//!   `track` returns; those bytes are spliced into the request body
//!   (`{"events":[a,b,...]}`), never serialised a second time
//!   ([`EncodedBody`]), and the items ride along, to be handed back.
//!
//! A retry sends the same bytes again, and the bytes are the generated
//! type's JSON, byte for byte (the tests post both to a server that accepts
//! only the generated request).
//!
//! [`post`] sends such a body where the generated method would send the
//! typed one: the method and path come from the spec
//! ([`marketap_api::OPERATIONS`]), the `Authorization` header from the
//! client's [`Auth`](marketap_api::Auth), and the response goes through the
//! client's own hook, so the outcome reads the same
//! ([`Error::classify`](crate::error::Error) takes any 2xx as accepted and
//! reads the status and body of anything else).

use marketap_api::{Client, ClientInfo, ResponseValue};
use progenitor_client::{ClientHooks, OperationInfo};

use crate::{
    error::ApiResult,
    model::kind::{
        Item, Operation,
        sealed::{Wire, encoded_list, write_list},
    },
};

/// An item and its own JSON (`serde_json::to_vec(&item)`).
#[derive(Debug)]
pub(crate) struct Encoded<T> {
    pub item: T,
    pub json: Vec<u8>,
}

/// A request body spliced from [`Encoded`] items' JSON, with the items.
#[doc(hidden)]
pub struct EncodedBody<T> {
    operation: Operation,
    bytes: bytes::Bytes,
    items: Vec<Encoded<T>>,
}

/// A bulk body written from its items by their own `Serialize`; the items
/// are dropped once written and read back from the bytes if the request
/// fails. See the module docs.
#[doc(hidden)]
pub struct WrittenBody<T> {
    operation: Operation,
    written: Result<Written, Unwritten<T>>,
}

/// A list body's bytes, and where each item ends in them: enough to cut
/// the body in two without reading the items back.
struct Written {
    bytes: bytes::Bytes,
    /// Past the last byte of each item, in order.
    ends: Vec<usize>,
}

/// A body that could not be written: why, and the items, kept to hand
/// back. Never, for the SDK's own items, whose `Serialize` cannot fail; if
/// it did, the request would fail unsent, as the generated method's does
/// when it cannot build one ([`marketap_api::Error::InvalidRequest`]).
struct Unwritten<T> {
    why: String,
    items: Vec<T>,
}

impl<T: Item> WrittenBody<T> {
    /// `items` written as the list `{FIELD:[a,b,...]}`, each by its own
    /// `Serialize`, for [`T::OPERATION`](Wire::OPERATION).
    pub(crate) fn new(items: Vec<T>) -> Self {
        let mut body = Vec::new();
        let mut ends = Vec::with_capacity(items.len());
        let written = write_list(&mut body, T::FIELD, items.len(), |body, i| {
            serde_json::to_writer(&mut *body, &items[i])?;
            ends.push(body.len());
            Ok::<(), serde_json::Error>(())
        });
        let written = match written {
            // Freed here, while the items are still in the cache.
            Ok(()) => Ok(Written {
                bytes: body.into(),
                ends,
            }),
            Err(error) => Err(Unwritten {
                why: format!("the body could not be written: {error}"),
                items,
            }),
        };
        WrittenBody {
            operation: T::OPERATION,
            written,
        }
    }

    /// The items, to hand a failed request back: read back from the bytes.
    ///
    /// # Panics
    ///
    /// If the bytes do not read back as `T`s, which would be a bug of this
    /// crate: they are `T`'s own JSON, and the tests read every kind back.
    pub(crate) fn into_items(self) -> Vec<T> {
        match self.written {
            Ok(written) => written
                .items(T::FIELD)
                .map(T::from_spool)
                .collect::<Result<_, _>>()
                .unwrap_or_else(|error| {
                    panic!(
                        "a {} body this SDK wrote did not read back ({error}): please report it",
                        self.operation
                    )
                }),
            Err(unwritten) => unwritten.items,
        }
    }

    /// How many items it holds.
    pub(crate) fn count(&self) -> usize {
        match &self.written {
            Ok(written) => written.ends.len(),
            Err(unwritten) => unwritten.items.len(),
        }
    }

    /// Its length in bytes (0 for a body that could not be written: it
    /// never goes on the wire).
    pub(crate) fn len(&self) -> usize {
        self.written
            .as_ref()
            .map_or(0, |written| written.bytes.len())
    }

    /// Cut after its first `at` items (0 < `at` < its count), by copying
    /// each run's bytes into a list of its own: the same bytes as writing
    /// each run's items, with nothing read back.
    pub(crate) fn split(self, at: usize) -> (Self, Self) {
        let operation = self.operation;
        let (first, second) = match self.written {
            Ok(written) => {
                let (first, second) = written.split(T::FIELD, at);
                (Ok(first), Ok(second))
            }
            Err(Unwritten { why, mut items }) => {
                let second = items.split_off(at);
                let first = Unwritten {
                    why: why.clone(),
                    items,
                };
                (Err(first), Err(Unwritten { why, items: second }))
            }
        };
        let body = |written| WrittenBody { operation, written };
        (body(first), body(second))
    }

    /// Posts the body once.
    pub(crate) async fn post(&self, api: &Client, project_id: &str) -> ApiResult {
        match &self.written {
            // A retry sends the same bytes again: a reference count, no copy.
            Ok(written) => post(api, project_id, self.operation, written.bytes.clone()).await,
            Err(unwritten) => Err(marketap_api::Error::InvalidRequest(unwritten.why.clone())),
        }
    }
}

impl Written {
    /// Where the first item of a list of `field` starts: after `{"<field>":[`.
    fn first_start(field: &str) -> usize {
        field.len() + 5
    }

    /// Each item's JSON, in order.
    fn items(&self, field: &str) -> impl Iterator<Item = &[u8]> {
        let first = Self::first_start(field);
        let starts = std::iter::once(first).chain(self.ends.iter().map(|end| end + 1));
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.bytes[start..end])
    }

    /// The two lists of `field` holding the items before `at` and from
    /// `at` on.
    fn split(self, field: &str, at: usize) -> (Self, Self) {
        let start = Self::first_start(field);
        let cut = self.ends[at - 1];
        let last = self.ends[self.ends.len() - 1];
        // Each run, commas within it included, spliced as one element.
        let first = encoded_list(field, &[&self.bytes[start..cut]]);
        let second = encoded_list(field, &[&self.bytes[cut + 1..last]]);
        // The second run moved back by what came before it (and its comma).
        let shift = cut + 1 - start;
        let mut ends = self.ends;
        let later = ends.split_off(at);
        let first = Written {
            bytes: first.into(),
            ends,
        };
        let second = Written {
            bytes: second.into(),
            ends: later.into_iter().map(|end| end - shift).collect(),
        };
        (first, second)
    }
}

impl<T: Item> Wire for Encoded<T> {
    type Body = EncodedBody<T>;
    const FIELD: &'static str = T::FIELD;
    const OPERATION: Operation = T::OPERATION;

    fn into_body(items: Vec<Self>) -> Self::Body {
        let jsons: Vec<&[u8]> = items.iter().map(|item| item.json.as_slice()).collect();
        let (operation, bytes) = T::encoded_body(&jsons);
        EncodedBody {
            operation,
            bytes: bytes.into(),
            items,
        }
    }

    fn into_items(body: Self::Body) -> Vec<Self> {
        body.items
    }

    fn count(body: &Self::Body) -> usize {
        body.items.len()
    }

    fn body_bytes(body: &Self::Body) -> usize {
        body.bytes.len()
    }

    fn operation(body: &Self::Body) -> Operation {
        body.operation
    }

    fn post<'a>(
        api: &'a Client,
        project_id: &'a str,
        body: &'a Self::Body,
    ) -> impl Future<Output = ApiResult> + Send + 'a {
        // A retry sends the same bytes again: a reference count, no copy.
        post(api, project_id, body.operation, body.bytes.clone())
    }

    fn wire_bytes(&self) -> usize {
        self.json.len()
    }
}

/// The method and path of `operation`, from the spec.
fn route(operation: Operation) -> (reqwest::Method, &'static str) {
    let id = operation.as_str();
    let &(_, method, path) = marketap_api::OPERATIONS
        .iter()
        .find(|(name, _, _)| *name == id)
        .unwrap_or_else(|| panic!("the spec has no operation {id}: regenerate marketap-api"));
    let method = method.parse().expect("the spec's methods are HTTP methods");
    (method, path)
}

/// Posts `body`, a JSON request body, to `operation` once, as the
/// generated method would post its typed body.
pub(crate) async fn post(
    api: &Client,
    project_id: &str,
    operation: Operation,
    body: bytes::Bytes,
) -> ApiResult {
    use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
    let (method, path) = route(operation);
    let json = HeaderValue::from_static("application/json");
    let mut request = api
        .client()
        .request(method, format!("{}{path}", api.baseurl()))
        .header(ACCEPT, json.clone())
        .header(CONTENT_TYPE, json)
        .query(&[("project_id", project_id)])
        .header("api-version", Client::api_version())
        .body(body)
        .build()?;
    api.inner().apply(&mut request);
    let info = OperationInfo {
        operation_id: operation.as_str(),
    };
    let response = api.exec(request, &info).await?;
    if response.status().is_success() {
        let (status, headers) = (response.status(), response.headers().clone());
        Ok(ResponseValue::new((), status, headers))
    } else {
        // `Error::classify` reads the status, `Retry-After` and the body.
        Err(marketap_api::Error::UnexpectedResponse(response))
    }
}

#[cfg(test)]
mod tests {
    use httpmock::{Method::POST, MockServer};

    use super::*;
    use crate::{
        Config, Device, Event, Platform, UserDeletion, UserProfile,
        error::Error,
        model::kind::{Generated, Item, sealed::Wire},
    };

    fn encode<T: Item>(items: &[T]) -> Vec<Encoded<T>> {
        items
            .iter()
            .map(|item| Encoded {
                item: item.clone(),
                json: serde_json::to_vec(item).unwrap(),
            })
            .collect()
    }

    /// Posts `items` the generated way, the way the delivery engine posts
    /// them, and as their spooled JSON, to a server that answers only a
    /// request exactly like the generated one: same method, path, query,
    /// headers and body bytes.
    async fn every_way<T: Generated>(items: Vec<T>) {
        let server = MockServer::start_async().await;
        let connection = Config::new("test-key", "proj")
            .with_base_url(server.base_url())
            .connect()
            .unwrap();
        let api = &connection.api;
        let encoded = <Encoded<T> as Wire>::into_body(encode(&items));
        let ours = T::into_body(items.clone());
        let typed = T::generated_body(items);
        let expected_body = serde_json::to_vec(&typed).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&encoded.bytes),
            String::from_utf8_lossy(&expected_body),
            "the spliced body is the serialised one, byte for byte"
        );
        let operation = T::operation(&ours);
        assert_eq!(<Encoded<T> as Wire>::operation(&encoded), operation);
        let path = route(operation).1;
        let mock = server
            .mock_async(|when, then| {
                when.method(POST)
                    .path(path)
                    .query_param("project_id", "proj")
                    .header("authorization", "Bearer test-key")
                    .header("api-version", Client::api_version())
                    .header("content-type", "application/json")
                    .header("accept", "application/json")
                    .body(String::from_utf8(expected_body.clone()).unwrap());
                then.status(202);
            })
            .await;
        T::post_generated(api, "proj", &typed).await.unwrap();
        T::post(api, "proj", &ours).await.unwrap();
        <Encoded<T> as Wire>::post(api, "proj", &encoded)
            .await
            .unwrap();
        mock.assert_calls_async(3).await;
    }

    #[tokio::test]
    async fn every_kind_goes_on_the_wire_exactly_as_the_generated_method_sends_it() {
        let event = |id: u32| {
            Event::builder(format!("u{id}"), "mkt_page_view")
                .property("title", "Ünïcode \"quoted\" \u{1F600}")
                .property("n", 1.5)
                .build()
                .unwrap()
        };
        let at = |id: u32, when: &str| {
            Event::builder(format!("u{id}"), "mkt_login")
                .timestamp(when)
                .build()
                .unwrap()
        };
        every_way(vec![
            event(1),
            event(2),
            // No properties; timestamps with 0, 3, 6 and 9 fractional digits.
            at(3, "2025-01-17T05:39:22+09:00"),
            at(4, "2025-01-17T05:39:22.5Z"),
            at(5, "2025-01-17T05:39:22.000120Z"),
            at(6, "0001-02-03T04:05:06.000000007Z"),
        ])
        .await;
        every_way(vec![
            UserProfile::builder("u1")
                .property("mkt_name", "Kim")
                .build()
                .unwrap(),
        ])
        .await;
        every_way(vec![
            Device::builder("token", Platform::Ios).build().unwrap(),
        ])
        .await;
        // One deletion has an operation and a body of its own.
        every_way(vec![UserDeletion::new("u1").unwrap()]).await;
        every_way(vec![
            UserDeletion::new("u1").unwrap(),
            UserDeletion::new("u2").unwrap(),
        ])
        .await;
    }

    /// Each answer reads the same either way.
    #[tokio::test]
    async fn answers_read_the_same_as_the_generated_methods() {
        let answers: [(u16, &str, Option<&str>); 5] = [
            (202, "", None),
            (400, r#"{"code":1001,"message":"bad"}"#, None),
            (400, "<html>gateway says no</html>", None),
            (401, r#"{"code":2,"message":"wrong key"}"#, None),
            (503, "busy", Some("7")),
        ];
        let items = vec![Event::builder("u1", "e").build().unwrap()];
        for (status, body, retry_after) in answers {
            let server = MockServer::start_async().await;
            server
                .mock_async(|when, then| {
                    when.method(POST);
                    let then = then.status(status).body(body);
                    if let Some(seconds) = retry_after {
                        then.header("retry-after", seconds);
                    }
                })
                .await;
            let connection = Config::new("test-key", "proj")
                .with_base_url(server.base_url())
                .connect()
                .unwrap();
            let api = &connection.api;
            let typed = Event::generated_body(items.clone());
            let encoded = <Encoded<Event> as Wire>::into_body(encode(&items));
            let generated = Error::classify(Event::post_generated(api, "proj", &typed).await).await;
            let raw =
                Error::classify(<Encoded<Event> as Wire>::post(api, "proj", &encoded).await).await;
            let ours = Event::into_body(items.clone());
            let written = Error::classify(Event::post(api, "proj", &ours).await).await;
            let show = |result: Result<(), Error>| match result {
                Ok(()) => "accepted".to_owned(),
                Err(error) => format!("{error:?}"),
            };
            let (generated, raw, written) = (show(generated), show(raw), show(written));
            assert_eq!(raw, generated, "status {status}");
            assert_eq!(written, generated, "status {status}");
            assert_eq!(status == 202, raw == "accepted", "status {status}: {raw}");
        }
    }

    /// A body that could not be written fails its request unsent, as one
    /// the generated method could not build: never retried, and its items
    /// go back.
    #[tokio::test]
    async fn a_body_that_could_not_be_written_fails_unsent() {
        let server = MockServer::start_async().await;
        let mock = server
            .mock_async(|when, then| {
                when.method(POST);
                then.status(202);
            })
            .await;
        let connection = Config::new("test-key", "proj")
            .with_base_url(server.base_url())
            .connect()
            .unwrap();
        let items = vec![Event::builder("u1", "e").build().unwrap()];
        let body = WrittenBody {
            operation: Operation::CollectBulkUserEvents,
            written: Err(Unwritten {
                why: "broken".to_owned(),
                items: items.clone(),
            }),
        };
        let error = Error::classify(Event::post(&connection.api, "proj", &body).await)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::Protocol { reason } if reason.contains("broken")),
            "{error:?}"
        );
        assert_eq!(Event::count(&body), 1);
        assert_eq!(Event::body_bytes(&body), 0, "never on the wire");
        assert_eq!(Event::into_items(body), items);
        mock.assert_calls_async(0).await;
    }

    /// The bytes of a written body, where there are some.
    fn bytes_of<T: Item>(body: &WrittenBody<T>) -> &[u8] {
        &body.written.as_ref().ok().expect("written").bytes
    }

    /// Cutting a written body anywhere gives the bodies its two runs of
    /// items would be written as, byte for byte, holding those items.
    #[test]
    fn a_written_body_cuts_into_the_bodies_of_its_two_runs() {
        let events: Vec<Event> = (0..5)
            .map(|i| {
                Event::builder(format!("u{i}\"\u{1F600}"), "mkt_page_view")
                    .property("n", i as f64 + 0.1)
                    .property("pad", "x".repeat(i * 7))
                    .build()
                    .unwrap()
            })
            .collect();
        for at in 1..events.len() {
            let whole = Event::into_body(events.clone());
            assert_eq!(Event::count(&whole), 5);
            assert_eq!(Event::body_bytes(&whole), bytes_of(&whole).len());
            let (first, second) = Event::split(whole, at);
            for (half, items) in [(first, &events[..at]), (second, &events[at..])] {
                let expected = Event::into_body(items.to_vec());
                assert_eq!(
                    String::from_utf8_lossy(bytes_of(&half)),
                    String::from_utf8_lossy(bytes_of(&expected)),
                    "cut at {at}"
                );
                assert_eq!(Event::count(&half), items.len(), "cut at {at}");
                // Each half cuts again, by its own item ends.
                if items.len() > 1 {
                    let (a, b) = Event::split(half, 1);
                    let mut back = Event::into_items(a);
                    back.extend(Event::into_items(b));
                    assert_eq!(back, items, "cut at {at}, then at 1");
                } else {
                    assert_eq!(Event::into_items(half), items, "cut at {at}");
                }
            }
        }
        let profiles = vec![
            UserProfile::builder("p1").build().unwrap(),
            UserProfile::builder("p2").property("a", 1).build().unwrap(),
        ];
        let (first, second) = UserProfile::split(UserProfile::into_body(profiles.clone()), 1);
        assert_eq!(UserProfile::into_items(first), &profiles[..1]);
        assert_eq!(UserProfile::into_items(second), &profiles[1..]);
    }

    #[test]
    fn every_operation_has_a_route_in_the_spec() {
        for operation in Operation::ALL {
            let (method, path) = route(operation);
            assert_eq!(method, reqwest::Method::POST);
            assert!(path.starts_with("/v1/api/"), "{operation}: {path}");
        }
    }
}
