//! The blocking client (feature `blocking`, on for this crate's tests
//! through its self dev-dependency): it works on a plain thread against a
//! loopback server, and refuses, handing everything back, wherever a Tokio
//! runtime is entered.

use std::time::Duration;

use httpmock::{Method::POST, MockServer};
use marketap_ext::{
    Config, Event, IngestorConfig, RetryConfig,
    blocking::{Error, Marketap},
};
use serde_json::json;

const KEY: &str = "blocking-key";
const PROJECT: &str = "blocking-project";

fn client(base_url: &str) -> Marketap {
    Marketap::new(
        Config::new(KEY, PROJECT)
            .with_base_url(base_url)
            .with_retry(RetryConfig::default().with_initial_backoff(Duration::from_millis(1))),
    )
    .unwrap()
}

fn event(user: &str) -> Event {
    Event::builder(user, "mkt_login").build().unwrap()
}

fn accept<'a>(server: &'a MockServer, path: &str, body: serde_json::Value) -> httpmock::Mock<'a> {
    server.mock(|when, then| {
        when.method(POST)
            .path(path)
            .query_param("project_id", PROJECT)
            .header("authorization", format!("Bearer {KEY}"))
            .json_body(body);
        then.status(202);
    })
}

#[test]
fn outside_a_runtime_it_sends_deletes_and_ingests() {
    let server = MockServer::start();
    let events = accept(
        &server,
        "/v1/api/events",
        json!({ "events": [
            { "user_id": "u1", "event_name": "mkt_login" },
            { "user_id": "u2", "event_name": "mkt_login" }
        ]}),
    );
    let deletion = accept(
        &server,
        "/v1/api/profile/user/deletion-job",
        json!({ "user_id": "u9" }),
    );
    let tracked = accept(
        &server,
        "/v1/api/events",
        json!({ "events": [{ "user_id": "u3", "event_name": "mkt_login" }] }),
    );
    let client = client(&server.base_url());

    let report = client
        .send_events([event("u1"), event("u2")])
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!((report.requests, report.accepted), (1, 2));
    client.delete_user("u9").unwrap();

    let ingestor = client.ingestor(IngestorConfig::default()).unwrap();
    ingestor.track(event("u3")).unwrap();
    let shut = ingestor.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!((shut.delivered, shut.undelivered_items()), (1, 0));

    events.assert_calls(1);
    deletion.assert_calls(1);
    tracked.assert_calls(1);
}

#[test]
fn a_call_that_fails_returns_the_async_error() {
    let server = MockServer::start();
    server.mock(|_, then| {
        then.status(401)
            .json_body(json!({ "code": 401, "message": "bad key" }));
    });
    let client = client(&server.base_url());
    let failed = client.delete_user("u1").unwrap_err();
    assert!(
        matches!(
            failed,
            Error::Call(marketap_ext::Error::Unauthorized { .. })
        ),
        "{failed:?}"
    );
    let report = client.send_events([event("u1")]).unwrap();
    assert_eq!(report.failed_items(), 1);
    let invalid = client.delete_users([""]).unwrap_err();
    assert!(matches!(invalid, Error::Call(_)), "{invalid:?}");
}

#[test]
fn an_ingestor_dropped_without_shutdown_is_drained_before_the_last_drop_returns() {
    let server = MockServer::start();
    let tracked = accept(
        &server,
        "/v1/api/events",
        json!({ "events": [{ "user_id": "u1", "event_name": "mkt_login" }] }),
    );
    let client = client(&server.base_url());
    // A flush interval far beyond the test: only the drop's drain sends.
    let ingestor = client
        .ingestor(IngestorConfig::default().with_flush_interval(Duration::from_secs(3600)))
        .unwrap();
    ingestor.track(event("u1")).unwrap();
    tracked.assert_calls(0);
    drop(ingestor);
    // The ingestor drains in the background; the client's drop, the last
    // handle, waits for it and for the runtime thread.
    drop(client);
    tracked.assert_calls(1);
}

/// Every waiting call, made on a thread that has entered a runtime: each
/// is refused with its input handed back, and nothing reaches the server.
fn assert_every_call_is_refused(client: &Marketap, server: &MockServer) {
    let anything = server.mock(|_, then| {
        then.status(202);
    });
    let refused = client.send_events([event("u1"), event("u2")]).unwrap_err();
    assert!(
        refused.to_string().contains("inside an async context"),
        "{refused}"
    );
    let back: Vec<_> = refused.into_input();
    assert_eq!(
        back.iter().map(Event::user_id).collect::<Vec<_>>(),
        ["u1", "u2"]
    );
    let refused = client.delete_user("u9").unwrap_err();
    assert!(
        refused.to_string().contains("inside an async context"),
        "{refused}"
    );
    let Error::InAsyncContext(refused) = refused else {
        panic!("delete_user was not refused: {refused:?}");
    };
    assert_eq!(refused.into_input(), "u9");
    let Err(Error::InAsyncContext(refused)) = client.delete_users(["u7", "u8"]) else {
        panic!("delete_users was not refused");
    };
    assert_eq!(refused.into_input(), ["u7", "u8"]);
    let Err(Error::InAsyncContext(refused)) = client.send_batch(vec![event("u4")]) else {
        panic!("send_batch was not refused");
    };
    assert_eq!(refused.into_input()[0].user_id(), "u4");

    // Building an ingestor and `try_track` never wait: they work.
    let ingestor = client.ingestor(IngestorConfig::default()).unwrap();
    let Err(Error::InAsyncContext(refused)) = ingestor.track(event("u5")) else {
        panic!("track was not refused");
    };
    assert_eq!(refused.into_input().user_id(), "u5");
    assert!(ingestor.flush().is_err());
    assert!(ingestor.shutdown(Duration::from_secs(1)).is_err());
    ingestor.try_track(event("u6")).unwrap();
    assert_eq!(ingestor.metrics().queued, 1);
    anything.assert_calls(0);

    // From a thread of its own, the same ingestor shuts down and delivers.
    let shut = std::thread::scope(|scope| {
        scope
            .spawn(|| ingestor.shutdown(Duration::from_secs(10)))
            .join()
    })
    .unwrap()
    .unwrap();
    assert_eq!((shut.delivered, shut.undelivered_items()), (1, 0));
    anything.assert_calls(1);
}

#[tokio::test]
async fn inside_a_current_thread_runtime_every_call_is_refused() {
    let server = MockServer::start_async().await;
    let client = client(&server.base_url());
    assert_every_call_is_refused(&client, &server);
    // Dropped here, on the runtime: no wait, no panic.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_a_task_of_a_multi_thread_runtime_every_call_is_refused() {
    let server = MockServer::start_async().await;
    let client = client(&server.base_url());
    tokio::spawn(async move { assert_every_call_is_refused(&client, &server) })
        .await
        .unwrap();
}

/// Tokio enters its runtime in `spawn_blocking` too and offers no public
/// way to tell that thread from a worker, so the client refuses there
/// (documented in the module); a thread of one's own is the way.
#[tokio::test]
async fn inside_spawn_blocking_it_refuses_and_on_a_thread_of_its_own_it_works() {
    let server = MockServer::start_async().await;
    let accepted = server
        .mock_async(|when, then| {
            when.method(POST).path("/v1/api/events");
            then.status(202);
        })
        .await;
    let client = client(&server.base_url());
    let in_pool = client.clone();
    let refused = tokio::task::spawn_blocking(move || in_pool.send_events([event("u1")]))
        .await
        .unwrap();
    assert_eq!(refused.unwrap_err().into_input().len(), 1);
    accepted.assert_calls_async(0).await;

    let report = std::thread::spawn(move || client.send_events([event("u1")]))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(report.accepted, 1);
    accepted.assert_calls_async(1).await;
}
