//! The HTTP contract of every generated operation, against httpmock:
//! method, path, the `project_id` query parameter, the exact JSON body,
//! and how 202, 400, 401 (with the documented body or a gateway's) and an
//! undocumented status come back.

use httpmock::{Method::POST, MockServer};
use marketap_api::{Auth, Client, Error, mock::MockServerExt, types};
use serde_json::{Value, json};

const PROJECT: &str = "proj-1";
const KEY: &str = "test-key";

fn client(server: &MockServer) -> Client {
    Client::new(&server.base_url(), Auth::bearer(KEY).unwrap())
}

/// Mocks `path` to answer 202 only for the exact `body` and project, runs
/// `call`, and checks the mock matched exactly once.
async fn assert_accepts<F>(path: &str, body: Value, call: F)
where
    F: AsyncFnOnce(
        Client,
    )
        -> Result<progenitor_client::ResponseValue<()>, Error<types::IngestionResponse>>,
{
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(POST)
                .path(path)
                .query_param("project_id", PROJECT)
                .header("authorization", format!("Bearer {KEY}"))
                .header("content-type", "application/json")
                .json_body(body);
            then.status(202);
        })
        .await;
    let response = call(client(&server)).await.expect("202 is Ok");
    assert_eq!(response.status(), 202);
    mock.assert_async().await;
}

/// Checks 400 and 401 come back as the typed error body and 503 keeps its status.
async fn assert_error_mapping<F>(path: &str, call: F)
where
    F: AsyncFn(
        Client,
    )
        -> Result<progenitor_client::ResponseValue<()>, Error<types::IngestionResponse>>,
{
    for (status, code, message) in [
        (400, 4001, "invalid user_id"),
        (401, 4010, "invalid api key"),
    ] {
        let server = MockServer::start_async().await;
        server
            .mock_async(|when, then| {
                when.method(POST).path(path);
                then.status(status)
                    .header("content-type", "application/json")
                    .json_body(json!({ "code": code, "message": message }));
            })
            .await;
        match call(client(&server)).await {
            Err(Error::ErrorResponse(body)) => {
                assert_eq!(body.status(), status);
                assert_eq!(body.code, Some(code));
                assert_eq!(body.message.as_deref(), Some(message));
            }
            other => panic!("{path} {status}: expected ErrorResponse, got {other:?}"),
        }
    }

    // A gateway's 401 or 400 with a body that is not the documented JSON
    // keeps its status; the body's text becomes the message.
    for (status, body, message) in [
        (401, "", None),
        (
            401,
            "<html>401 Authorization Required</html>",
            Some("<html>401 Authorization Required</html>"),
        ),
        (400, "Bad Request", Some("Bad Request")),
    ] {
        let server = MockServer::start_async().await;
        server
            .mock_async(|when, then| {
                when.method(POST).path(path);
                then.status(status)
                    .header("content-type", "text/html")
                    .body(body);
            })
            .await;
        match call(client(&server)).await {
            Err(Error::ErrorResponse(response)) => {
                assert_eq!(response.status(), status);
                assert_eq!(response.code, None);
                assert_eq!(response.message.as_deref(), message);
            }
            other => panic!("{path} {status} {body:?}: expected ErrorResponse, got {other:?}"),
        }
    }

    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.method(POST).path(path);
            then.status(503).body("upstream unavailable");
        })
        .await;
    match call(client(&server)).await {
        Err(Error::UnexpectedResponse(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(response.text().await.unwrap(), "upstream unavailable");
        }
        other => panic!("{path} 503: expected UnexpectedResponse, got {other:?}"),
    }
}

fn events_body() -> types::CreateBulkEventReq {
    types::CreateBulkEventReq {
        events: vec![
            types::CreateEventReq {
                user_id: "u1".into(),
                event_name: "mkt_purchase".into(),
                properties: json!({ "mkt_revenue": 12.5, "mkt_order_id": "o-1" })
                    .as_object()
                    .cloned()
                    .unwrap(),
                timestamp: Some("2025-01-17T05:39:22+09:00".parse().unwrap()),
            },
            types::CreateEventReq {
                user_id: "u2".into(),
                event_name: "mkt_login".into(),
                properties: Default::default(),
                timestamp: None,
            },
        ],
    }
}

#[tokio::test]
async fn collect_bulk_user_events() {
    let expected = json!({ "events": [
        { "user_id": "u1", "event_name": "mkt_purchase",
          "properties": { "mkt_revenue": 12.5, "mkt_order_id": "o-1" },
          "timestamp": "2025-01-16T20:39:22Z" },
        { "user_id": "u2", "event_name": "mkt_login" }
    ]});
    let body = events_body();
    assert_accepts("/v1/api/events", expected, async |c| {
        c.collect_bulk_user_events(PROJECT, &body).await
    })
    .await;
    assert_error_mapping("/v1/api/events", async |c| {
        c.collect_bulk_user_events(PROJECT, &body).await
    })
    .await;
}

#[tokio::test]
async fn update_bulk_user_profiles() {
    let body = types::UpdateBulkUserProfileReq {
        profiles: vec![types::BulkUserProfile {
            user_id: "u1".into(),
            properties: json!({ "mkt_email": "a@example.com", "mkt_email_opt_in": true })
                .as_object()
                .cloned()
                .unwrap(),
        }],
    };
    let expected = json!({ "profiles": [
        { "user_id": "u1", "properties": { "mkt_email": "a@example.com", "mkt_email_opt_in": true } }
    ]});
    assert_accepts("/v1/api/profile/user", expected, async |c| {
        c.update_bulk_user_profiles(PROJECT, &body).await
    })
    .await;
    assert_error_mapping("/v1/api/profile/user", async |c| {
        c.update_bulk_user_profiles(PROJECT, &body).await
    })
    .await;
}

#[tokio::test]
async fn request_user_profile_deletion() {
    let body = types::DeleteUserProfileReq {
        user_id: "u1".into(),
    };
    let path = "/v1/api/profile/user/deletion-job";
    assert_accepts(path, json!({ "user_id": "u1" }), async |c| {
        c.request_user_profile_deletion(PROJECT, &body).await
    })
    .await;
    assert_error_mapping(path, async |c| {
        c.request_user_profile_deletion(PROJECT, &body).await
    })
    .await;
}

#[tokio::test]
async fn request_bulk_user_profile_deletion() {
    let body = types::DeleteBulkUserProfileReq {
        user_ids: vec!["u1".into(), "u2".into()],
    };
    let path = "/v1/api/profile/user/deletion-job/bulk";
    assert_accepts(path, json!({ "user_ids": ["u1", "u2"] }), async |c| {
        c.request_bulk_user_profile_deletion(PROJECT, &body).await
    })
    .await;
    assert_error_mapping(path, async |c| {
        c.request_bulk_user_profile_deletion(PROJECT, &body).await
    })
    .await;
}

#[tokio::test]
async fn update_bulk_device_profiles() {
    let body = types::UpdateBulkDeviceProfileReq {
        profiles: vec![
            types::UpdateDeviceProfileReq {
                device: types::ClientDevice {
                    token: "fcm-token".into(),
                    platform: "ANDROID".into(),
                    opt_in: Some(true),
                },
                user_id: Some("u1".into()),
                timestamp: Some("2025-01-17T05:39:22Z".parse().unwrap()),
            },
            types::UpdateDeviceProfileReq {
                device: types::ClientDevice {
                    token: "apns-token".into(),
                    platform: "IOS".into(),
                    opt_in: None,
                },
                user_id: None,
                timestamp: None,
            },
        ],
    };
    let expected = json!({ "profiles": [
        { "device": { "token": "fcm-token", "platform": "ANDROID", "opt_in": true },
          "user_id": "u1", "timestamp": "2025-01-17T05:39:22Z" },
        { "device": { "token": "apns-token", "platform": "IOS" } }
    ]});
    let path = "/v1/api/profile/user/device/bulk";
    assert_accepts(path, expected, async |c| {
        c.update_bulk_device_profiles(PROJECT, &body).await
    })
    .await;
    assert_error_mapping(path, async |c| {
        c.update_bulk_device_profiles(PROJECT, &body).await
    })
    .await;
}

/// The typed mock generated from the same spec matches what the client sends.
#[tokio::test]
async fn typed_mock_matches_the_client() {
    let server = MockServer::start_async().await;
    let body = events_body();
    let accepted = server.collect_bulk_user_events(|when, then| {
        when.project_id(PROJECT).body(&body);
        then.accepted();
    });
    client(&server)
        .collect_bulk_user_events(PROJECT, &body)
        .await
        .unwrap();
    accepted.assert();

    let rejected = server.update_bulk_user_profiles(|when, then| {
        when.project_id(PROJECT);
        then.unauthorized(&types::IngestionResponse {
            code: Some(401),
            message: Some("bad key".into()),
        });
    });
    let body = types::UpdateBulkUserProfileReq { profiles: vec![] };
    let err = client(&server)
        .update_bulk_user_profiles(PROJECT, &body)
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(401));
    rejected.assert();
}

#[test]
fn auth_never_shows_the_key() {
    let auth = Auth::bearer("s3cret-key").unwrap();
    assert!(!format!("{auth:?}").contains("s3cret"));
    let client = Client::new("http://127.0.0.1:1", auth);
    assert!(!format!("{client:?}").contains("s3cret"));

    let err = Auth::bearer("s3cret\nkey").unwrap_err();
    assert!(!format!("{err} {err:?}").contains("s3cret"));
}
