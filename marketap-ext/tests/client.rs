//! The ext client's HTTP contract: what each call puts on the wire, how
//! items are split into requests, the in-flight limit, and the report of
//! what failed. httpmock for exact requests; the loopback `TestServer` for
//! counting and concurrency.

mod support;

use std::time::Duration;

use futures::StreamExt;
use httpmock::{Method::POST, MockServer};
use marketap_ext::{
    BatchConfig, Config, ConfigError, Device, Error, Event, Marketap, Platform, RetryConfig,
    UserProfile, ValidationError,
};
use serde_json::json;
use support::{Reply, TestServer};

const KEY: &str = "test-key-7f3a";
const PROJECT: &str = "proj-1";

fn client(base_url: &str) -> Marketap {
    client_with(base_url, BatchConfig::default())
}

fn client_with(base_url: &str, batch: BatchConfig) -> Marketap {
    Marketap::new(
        Config::new(KEY, PROJECT)
            .with_base_url(base_url)
            .with_batch(batch)
            .with_retry(RetryConfig::default().with_initial_backoff(Duration::from_millis(1))),
    )
    .unwrap()
}

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            Event::builder(format!("user-{i}"), "mkt_login")
                .property("i", i)
                .build()
                .unwrap()
        })
        .collect()
}

/// Mocks `path` with every header and the query the client must send.
async fn expect<'a>(
    server: &'a MockServer,
    path: &str,
    body: serde_json::Value,
) -> httpmock::Mock<'a> {
    server
        .mock_async(|when, then| {
            when.method(POST)
                .path(path)
                .query_param("project_id", PROJECT)
                .header("authorization", format!("Bearer {KEY}"))
                .header("content-type", "application/json")
                .header("user-agent", marketap_ext::USER_AGENT)
                .json_body(body);
            then.status(202);
        })
        .await
}

#[tokio::test]
async fn events_go_on_the_wire_as_documented() {
    let server = MockServer::start_async().await;
    let mock = expect(
        &server,
        "/v1/api/events",
        json!({ "events": [
            { "user_id": "u1", "event_name": "mkt_purchase",
              "properties": { "mkt_revenue": 42000, "mkt_order_id": "o-7" },
              "timestamp": "2025-01-16T20:39:22Z" },
            { "user_id": "u2", "event_name": "mkt_login" }
        ]}),
    )
    .await;
    let purchase = Event::builder("u1", "mkt_purchase")
        .property("mkt_revenue", 42000)
        .property("mkt_order_id", "o-7")
        .timestamp("2025-01-17T05:39:22+09:00")
        .build()
        .unwrap();
    let login = Event::builder("u2", "mkt_login").build().unwrap();

    let report = client(&server.base_url())
        .send_events([purchase, login])
        .await;
    assert!(report.is_success(), "{report}");
    assert_eq!((report.requests, report.accepted), (1, 2));
    mock.assert_async().await;
}

#[tokio::test]
async fn profiles_and_devices_go_on_the_wire_as_documented() {
    let server = MockServer::start_async().await;
    let profiles = expect(
        &server,
        "/v1/api/profile/user",
        json!({ "profiles": [
            { "user_id": "u1", "properties": { "mkt_email": "a@example.com", "mkt_email_opt_in": true } },
            { "user_id": "u2", "properties": {} }
        ]}),
    )
    .await;
    let devices = expect(
        &server,
        "/v1/api/profile/user/device/bulk",
        json!({ "profiles": [
            { "device": { "token": "fcm-1", "platform": "ANDROID", "opt_in": false },
              "user_id": "u1", "timestamp": "2025-01-17T05:39:22Z" },
            { "device": { "token": "apns-1", "platform": "IOS" } },
            { "device": { "token": "https://push.example/1", "platform": "WEB" } }
        ]}),
    )
    .await;
    let client = client(&server.base_url());

    let report = client
        .update_profiles([
            UserProfile::builder("u1")
                .property("mkt_email", "a@example.com")
                .property("mkt_email_opt_in", true)
                .build()
                .unwrap(),
            UserProfile::builder("u2").build().unwrap(),
        ])
        .await;
    assert_eq!((report.accepted, report.failed_items()), (2, 0));

    let report = client
        .update_devices([
            Device::builder("fcm-1", Platform::Android)
                .user_id("u1")
                .opt_in(false)
                .timestamp("2025-01-17T05:39:22Z")
                .build()
                .unwrap(),
            Device::builder("apns-1", Platform::Ios).build().unwrap(),
            Device::builder("https://push.example/1", Platform::Web)
                .build()
                .unwrap(),
        ])
        .await;
    assert_eq!((report.accepted, report.failed_items()), (3, 0));
    profiles.assert_async().await;
    devices.assert_async().await;
}

#[tokio::test]
async fn one_deletion_goes_to_the_single_endpoint_and_several_to_bulk() {
    let server = MockServer::start_async().await;
    let single = expect(
        &server,
        "/v1/api/profile/user/deletion-job",
        json!({ "user_id": "u1" }),
    )
    .await;
    let bulk = expect(
        &server,
        "/v1/api/profile/user/deletion-job/bulk",
        json!({ "user_ids": ["u2", "u3", "u4"] }),
    )
    .await;
    let client = client(&server.base_url());

    client.delete_user("u1").await.unwrap();
    let report = client.delete_users(["u2", "u3", "u4"]).await.unwrap();
    assert_eq!((report.requests, report.accepted), (1, 3));
    single.assert_async().await;
    bulk.assert_async().await;

    // Checked before anything is sent.
    assert!(matches!(
        client.delete_users(Vec::<String>::new()).await,
        Err(ValidationError::Empty { .. })
    ));
    assert!(matches!(
        client.delete_users(["u5", " "]).await,
        Err(ValidationError::Empty {
            field: "user_id",
            ..
        })
    ));
    single.assert_calls_async(1).await;
    bulk.assert_calls_async(1).await;
}

#[tokio::test]
async fn items_are_split_at_the_limit_and_keep_their_order() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let client = client(&server.url());
    let mut expected_requests = 0;
    for (n, sizes) in [
        (999, vec![999]),
        (1000, vec![1000]),
        (1001, vec![1000, 1]),
        (2500, vec![1000, 1000, 500]),
    ] {
        let report = client.send_events(events(n)).await;
        assert!(report.is_success(), "{n}: {report}");
        assert_eq!((report.requests, report.accepted), (sizes.len(), n));
        expected_requests += sizes.len();

        let requests = server.requests();
        assert_eq!(requests.len(), expected_requests);
        let batches = &requests[expected_requests - sizes.len()..];
        let mut seen: Vec<Vec<u64>> = batches
            .iter()
            .map(|r| {
                r.items()
                    .iter()
                    .map(|e| e["properties"]["i"].as_u64().unwrap())
                    .collect()
            })
            .collect();
        seen.sort();
        let mut start = 0;
        for (batch, size) in seen.iter().zip(&sizes) {
            // Each request holds a consecutive run, in order.
            assert_eq!(
                *batch,
                (start..start + *size as u64).collect::<Vec<_>>(),
                "{n}"
            );
            start += *size as u64;
        }
    }
}

#[tokio::test]
async fn batch_size_can_be_lowered_and_streams_are_sent_lazily() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let client = client_with(
        &server.url(),
        BatchConfig::default()
            .with_max_batch_size(100)
            .with_max_in_flight(2),
    );
    let stream = futures::stream::iter(0..1050).map(|i| {
        Event::builder(format!("user-{i}"), "mkt_page_view")
            .build()
            .unwrap()
    });

    let report = client.send_stream(stream).await;
    assert_eq!((report.requests, report.accepted), (11, 1050));
    let mut sizes: Vec<usize> = server.requests().iter().map(|r| r.items().len()).collect();
    sizes.sort();
    assert_eq!(sizes, [&[50][..], &[100; 10]].concat());
}

#[tokio::test]
async fn deliver_yields_each_request_with_where_its_items_were() {
    // Requests holding item 4321 are refused; the rest accepted.
    let server = TestServer::start(|request| {
        if request.items().iter().any(|e| e["properties"]["i"] == 4321) {
            Reply::error(400, 4001, "refused")
        } else {
            Reply::accepted()
        }
    })
    .await;
    // Whole requests, not isolated items (tests/isolation.rs has those).
    let client = client_with(
        &server.url(),
        BatchConfig::default()
            .with_max_batch_size(1000)
            .with_max_in_flight(4)
            .with_isolate_bad_requests(false),
    );
    let mut outcomes: Vec<_> = client
        .deliver(futures::stream::iter(events(5500)))
        .collect()
        .await;
    outcomes.sort_by_key(|outcome| outcome.offset);
    let spans: Vec<(u64, usize)> = outcomes.iter().map(|o| (o.offset, o.items())).collect();
    assert_eq!(
        spans,
        [
            (0, 1000),
            (1000, 1000),
            (2000, 1000),
            (3000, 1000),
            (4000, 1000),
            (5000, 500)
        ]
    );
    for outcome in &outcomes {
        match (&outcome.result, outcome.offset) {
            (Err(failed), 4000) => {
                assert_eq!(failed.items[0].properties()["i"], 4000);
                assert_eq!(failed.error.api_code(), Some(4001));
            }
            (Ok(accepted), _) => {
                assert_eq!((accepted.items, accepted.attempts), (outcome.items(), 1))
            }
            (other, offset) => panic!("offset {offset}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn no_more_than_max_in_flight_requests_at_once() {
    let server = TestServer::start(|_| Reply::accepted().after(Duration::from_millis(40))).await;
    let client = client_with(
        &server.url(),
        BatchConfig::default()
            .with_max_batch_size(10)
            .with_max_in_flight(3),
    );

    let report = client.send_events(events(200)).await;
    assert_eq!((report.requests, report.accepted), (20, 200));
    // Concurrency happens, and never past the limit.
    assert_eq!(server.max_in_flight(), 3);
}

#[tokio::test]
async fn a_rejected_request_hands_its_items_back_with_the_reason() {
    let server = TestServer::start(|request| {
        let poisoned = request.items().iter().any(|e| e["user_id"] == "user-1234");
        if poisoned {
            Reply::error(400, 4001, "invalid property")
        } else {
            Reply::accepted()
        }
    })
    .await;
    // Isolation off: the whole request comes back (tests/isolation.rs has
    // isolation on).
    let client = client_with(
        &server.url(),
        BatchConfig::default().with_isolate_bad_requests(false),
    );

    let report = client.send_events(events(2500)).await;
    assert_eq!(
        (report.requests, report.accepted, report.retries),
        (3, 1500, 0)
    );
    assert_eq!(report.failed.len(), 1);
    let failed = &report.failed[0];
    assert_eq!(failed.items.len(), 1000);
    assert_eq!(failed.items[0].user_id(), "user-1000");
    assert_eq!(failed.items[999].user_id(), "user-1999");
    assert_eq!(failed.attempts, 1, "400 is never retried");
    assert_eq!(failed.error.status(), Some(400));
    assert_eq!(failed.error.api_code(), Some(4001));
    assert_eq!(failed.error.api_message(), Some("invalid property"));
    assert_eq!(server.requests().len(), 3);

    let error = report.into_result().unwrap_err();
    assert!(error.to_string().contains("1000 failed"), "{error}");
}

#[tokio::test]
async fn unauthorized_is_reported_with_code_and_message_and_stops_the_rest() {
    let server = TestServer::start(|_| Reply::error(401, 1001, "invalid api key")).await;
    let client = client_with(
        &server.url(),
        BatchConfig::default()
            .with_max_batch_size(10)
            .with_max_in_flight(1),
    );
    let report = client.send_events(events(45)).await;
    assert_eq!(
        (report.accepted, report.failed_items(), report.failed.len()),
        (0, 45, 5)
    );
    for failed in &report.failed {
        assert!(
            matches!(&failed.error, Error::Unauthorized { code: Some(1001), message: Some(m), .. } if m == "invalid api key")
        );
    }
    assert_eq!(report.failed[0].attempts, 1, "401 is never retried");
    // The key is wrong for every request: after the first 401, no more are sent.
    assert_eq!(server.requests().len(), 1);
    assert_eq!((report.requests, report.failed[4].attempts), (1, 0));
}

#[tokio::test]
async fn one_request_calls_refuse_more_than_the_limit_before_the_wire() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let client = client(&server.url());

    let failed = client.send_batch(events(1001)).await.unwrap_err();
    assert!(matches!(
        failed.error,
        Error::Validation(ValidationError::TooManyItems {
            field: "events",
            count: 1001,
            max: 1000
        })
    ));
    assert_eq!((failed.items.len(), failed.attempts), (1001, 0));

    let failed = client.send_batch(Vec::<Event>::new()).await.unwrap_err();
    assert!(matches!(
        failed.error,
        Error::Validation(ValidationError::Empty {
            field: "events",
            ..
        })
    ));
    assert!(server.requests().is_empty());

    assert_eq!(client.send_batch(events(1000)).await.unwrap(), 1000);
}

#[tokio::test]
async fn the_key_is_never_printed() {
    let server = TestServer::start(|_| Reply::error(401, 1, "no")).await;
    let config = Config::new(KEY, PROJECT).with_base_url(server.url());
    let client = Marketap::new(config.clone()).unwrap();
    let report = client.send_events(events(1)).await;
    let transport = Marketap::new(
        Config::new(KEY, PROJECT)
            .with_base_url("http://127.0.0.1:9")
            .with_retry(RetryConfig::disabled()),
    )
    .unwrap()
    .send_events(events(1))
    .await;
    let invalid_key = Marketap::new(Config::new(format!("{KEY}\n"), PROJECT)).unwrap_err();

    let printed = [
        format!("{config:?}"),
        format!("{:?} {}", config.api_key(), config.api_key()),
        format!("{client:?}"),
        format!("{report} {report:?}"),
        format!("{transport} {transport:?}"),
        format!("{invalid_key} {invalid_key:?}"),
    ];
    for text in printed {
        assert!(!text.contains(KEY), "key printed in: {text}");
    }
    assert!(matches!(invalid_key, ConfigError::InvalidApiKey));
    assert!(matches!(transport.failed[0].error, Error::Transport(_)));
}

#[tokio::test]
async fn the_raw_client_stays_reachable_with_auth_wired_in() {
    let server = MockServer::start_async().await;
    let mock = expect(
        &server,
        "/v1/api/profile/user/deletion-job",
        json!({ "user_id": "u9" }),
    )
    .await;
    let client = client(&server.base_url());
    let body = marketap_ext::api::types::DeleteUserProfileReq {
        user_id: "u9".into(),
    };
    client
        .raw()
        .request_user_profile_deletion(client.project_id(), &body)
        .await
        .unwrap();
    mock.assert_async().await;
}
