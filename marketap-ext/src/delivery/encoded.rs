//! Items whose JSON is already written: the spool writes each item's own
//! JSON before `track` returns, and those bytes are what goes on the wire.
//! An [`Encoded`] item is sent as its bytes, spliced into the request body
//! (`{"events":[a,b,...]}`), never serialised a second time; the item
//! itself rides along, to be handed back if the request fails.
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
    model::kind::{Item, Operation, sealed::Wire},
};

/// An item and its own JSON (`serde_json::to_vec(&item)`).
#[derive(Debug)]
pub(crate) struct Encoded<T> {
    pub item: T,
    pub json: Vec<u8>,
}

/// A request body spliced from [`Encoded`] items' JSON, with the items.
pub(crate) struct EncodedBody<T> {
    operation: Operation,
    bytes: bytes::Bytes,
    items: Vec<Encoded<T>>,
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
        model::kind::{Item, sealed::Wire},
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

    /// Posts `items` once the generated way and once as their JSON, to a
    /// server that answers only a request exactly like the generated one:
    /// same method, path, query, headers and body bytes.
    async fn both_ways<T: Item>(items: Vec<T>)
    where
        T::Body: serde::Serialize,
    {
        let server = MockServer::start_async().await;
        let connection = Config::new("test-key", "proj")
            .with_base_url(server.base_url())
            .connect()
            .unwrap();
        let api = &connection.api;
        let encoded = <Encoded<T> as Wire>::into_body(encode(&items));
        let typed = T::into_body(items);
        let expected_body = serde_json::to_vec(&typed).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&encoded.bytes),
            String::from_utf8_lossy(&expected_body),
            "the spliced body is the serialised one, byte for byte"
        );
        let (operation, path) = (T::operation(&typed), route(T::operation(&typed)).1);
        assert_eq!(<Encoded<T> as Wire>::operation(&encoded), operation);
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
        T::post(api, "proj", &typed).await.unwrap();
        <Encoded<T> as Wire>::post(api, "proj", &encoded)
            .await
            .unwrap();
        mock.assert_calls_async(2).await;
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
        both_ways(vec![
            event(1),
            event(2),
            // No properties; timestamps with 0, 3, 6 and 9 fractional digits.
            at(3, "2025-01-17T05:39:22+09:00"),
            at(4, "2025-01-17T05:39:22.5Z"),
            at(5, "2025-01-17T05:39:22.000120Z"),
            at(6, "0001-02-03T04:05:06.000000007Z"),
        ])
        .await;
        both_ways(vec![
            UserProfile::builder("u1")
                .property("mkt_name", "Kim")
                .build()
                .unwrap(),
        ])
        .await;
        both_ways(vec![
            Device::builder("token", Platform::Ios).build().unwrap(),
        ])
        .await;
        // One deletion has an operation and a body of its own.
        both_ways(vec![UserDeletion::new("u1").unwrap()]).await;
        both_ways(vec![
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
            let typed = Event::into_body(items.clone());
            let encoded = <Encoded<Event> as Wire>::into_body(encode(&items));
            let generated = Error::classify(Event::post(api, "proj", &typed).await).await;
            let raw =
                Error::classify(<Encoded<Event> as Wire>::post(api, "proj", &encoded).await).await;
            let show = |result: Result<(), Error>| match result {
                Ok(()) => "accepted".to_owned(),
                Err(error) => format!("{error:?}"),
            };
            let (generated, raw) = (show(generated), show(raw));
            assert_eq!(raw, generated, "status {status}");
            assert_eq!(status == 202, raw == "accepted", "status {status}: {raw}");
        }
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
