//! The no-silent-loss promise, one test per way it used to break: a
//! panicking callback, a drop or an abandoned shutdown, failures piling up
//! in memory, a 401 the body of which is not JSON, deadlines that overflow
//! or are not kept, a capacity below the batch size, and `Retry-After`.
//! Every test is bounded in time.

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use marketap_ext::{
    BatchConfig, Config, EnqueueError, Error, Event, Ingestor, IngestorConfig, Marketap,
    RetryConfig, Undelivered, UserProfile,
};
use support::{Reply, TestServer, event, ids, undelivered_ids};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

fn client(server: &TestServer, batch: BatchConfig) -> Marketap {
    Marketap::new(
        Config::new("test-key", "proj")
            .with_base_url(server.url())
            .with_request_timeout(Duration::from_secs(5))
            .with_batch(batch)
            .with_retry(
                RetryConfig::default()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1))
                    .with_max_backoff(Duration::from_millis(5)),
            ),
    )
    .unwrap()
}

fn batch(max_batch_size: usize, max_in_flight: usize) -> BatchConfig {
    BatchConfig::default()
        .with_max_batch_size(max_batch_size)
        .with_max_in_flight(max_in_flight)
}

/// An ingestor of `capacity` items in batches of `max_batch_size`, 2 in
/// flight, whose flush interval (a minute) never comes within a test: what
/// is sent is sent because a batch filled or a caller found no room.
fn at_capacity(server: &TestServer, max_batch_size: usize, capacity: usize) -> Ingestor {
    client(server, batch(max_batch_size, 2))
        .ingestor(
            IngestorConfig::default()
                .with_capacity(capacity)
                .with_flush_interval(Duration::from_secs(60)),
        )
        .unwrap()
}

fn received(server: &TestServer) -> Vec<u64> {
    server.requests().iter().flat_map(ids).collect()
}

/// An `on_failure` callback that records what it is given.
fn recorder() -> (
    Arc<Mutex<Vec<Undelivered>>>,
    impl Fn(Undelivered) + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |undelivered| {
        sink.lock().unwrap().push(undelivered)
    })
}

// ------------------------------------------------------------ 1. panics

#[tokio::test]
async fn a_panicking_callback_does_not_stop_delivery() {
    // The first request is refused; later ones are accepted.
    let calls = AtomicUsize::new(0);
    let server = TestServer::start(move |_| match calls.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::error(400, 1, "refused"),
        _ => Reply::accepted(),
    })
    .await;
    let ingestor = client(&server, batch(10, 1))
        .ingestor(
            IngestorConfig::default().with_on_failure(|_| panic!("a bug in the caller's callback")),
        )
        .unwrap();

    ingestor.track(event(0)).await.unwrap();
    timeout(LIMIT, ingestor.flush())
        .await
        .expect("flush returns");
    ingestor.track(event(1)).await.unwrap();
    timeout(LIMIT, ingestor.flush())
        .await
        .expect("flush returns after the callback panicked");
    assert_eq!(received(&server), [0, 1], "delivery went on");
    assert_eq!(ingestor.metrics().delivered, 1);

    let report = timeout(LIMIT, ingestor.shutdown(Duration::from_secs(5)))
        .await
        .expect("bounded");
    assert_eq!(report.delivered, 1);
}

// ------------------------------------------- 2. someone gets every failure

#[tokio::test]
async fn failures_after_the_last_handle_is_dropped_reach_on_failure() {
    let server =
        TestServer::start(|_| Reply::error(400, 1, "refused").after(Duration::from_millis(200)))
            .await;
    let (seen, callback) = recorder();
    let ingestor = client(&server, batch(10, 2))
        .ingestor(IngestorConfig::default().with_on_failure(callback))
        .unwrap();
    for id in 0..25 {
        ingestor.track(event(id)).await.unwrap();
    }
    drop(ingestor);

    let started = Instant::now();
    loop {
        let handed: usize = seen.lock().unwrap().iter().map(Undelivered::len).sum();
        if handed == 25 {
            break;
        }
        assert!(
            started.elapsed() < LIMIT,
            "only {handed} of 25 failed items reached on_failure"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_shutdown_abandoned_by_its_caller_keeps_failures_for_the_next() {
    let server =
        TestServer::start(|_| Reply::error(400, 1, "refused").after(Duration::from_millis(300)))
            .await;
    let ingestor = client(&server, batch(10, 4))
        .ingestor(IngestorConfig::default())
        .unwrap();
    for id in 0..25 {
        ingestor.track(event(id)).await.unwrap();
    }
    // The caller gives up on the first shutdown long before the server answers.
    let abandoned = timeout(
        Duration::from_millis(50),
        ingestor.shutdown(Duration::from_secs(20)),
    )
    .await;
    assert!(abandoned.is_err());

    let report = timeout(LIMIT, ingestor.shutdown(Duration::from_secs(20)))
        .await
        .expect("bounded");
    let mut handed: Vec<u64> = report
        .undelivered
        .iter()
        .flat_map(undelivered_ids)
        .collect();
    handed.sort_unstable();
    assert_eq!(handed, (0..25).collect::<Vec<u64>>());
}

// ------------------------------------------------ 3. bounded when all fails

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_kept_for_the_report_are_bounded_and_the_rest_counted() {
    const N: usize = 30_000;
    let server = TestServer::start(|_| Reply::error(400, 1, "refused")).await;
    // Defaults: capacity 10,000, no callback, no dead-letter file.
    let ingestor = client(&server, batch(1000, 4))
        .ingestor(IngestorConfig::default())
        .unwrap();
    for id in 0..N {
        ingestor.track(event(id)).await.unwrap();
    }
    let report = timeout(LIMIT, ingestor.shutdown(Duration::from_secs(20)))
        .await
        .expect("bounded");
    let metrics = ingestor.metrics();
    assert_eq!(metrics.failed, N as u64, "every item counted as failed");
    let kept = report.undelivered_items();
    assert!(
        kept <= IngestorConfig::default().max_retained(),
        "{kept} failed items retained for the report"
    );
    assert_eq!(kept, 10_000, "the bound is filled, not undershot");
    assert_eq!(
        (metrics.unreported, report.unreported),
        ((N - kept) as u64, (N - kept) as u64),
        "the rest is counted"
    );
    assert_eq!(
        (metrics.queued, metrics.in_flight, metrics.retained),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn flush_hands_over_what_is_kept_and_a_later_report_holds_the_rest() {
    let server = TestServer::start(|_| Reply::error(400, 1, "refused")).await;
    let ingestor = client(&server, batch(10, 2))
        .ingestor(IngestorConfig::default())
        .unwrap();
    for id in 0..15 {
        ingestor.track(event(id)).await.unwrap();
    }
    let flushed = timeout(LIMIT, ingestor.flush()).await.expect("bounded");
    let mut handed: Vec<u64> = flushed.iter().flat_map(undelivered_ids).collect();
    handed.sort_unstable();
    assert_eq!(handed, (0..15).collect::<Vec<u64>>());
    assert_eq!(ingestor.metrics().retained, 0);

    ingestor.track(event(15)).await.unwrap();
    let report = timeout(LIMIT, ingestor.shutdown(Duration::from_secs(5)))
        .await
        .expect("bounded");
    let rest: Vec<u64> = report
        .undelivered
        .iter()
        .flat_map(undelivered_ids)
        .collect();
    assert_eq!(rest, [15], "each failure is handed over once");
}

#[tokio::test]
async fn after_a_401_the_ingestor_stops_sending_and_refuses_new_items() {
    let server = TestServer::start(|_| Reply::error(401, 1001, "invalid api key")).await;
    let (seen, callback) = recorder();
    let ingestor = client(&server, batch(10, 1))
        .ingestor(IngestorConfig::default().with_on_failure(callback))
        .unwrap();
    for id in 0..50 {
        ingestor.track(event(id)).await.unwrap();
    }
    timeout(LIMIT, ingestor.flush()).await.expect("bounded");
    assert_eq!(server.requests().len(), 1, "one 401 is enough");
    let handed: usize = seen.lock().unwrap().iter().map(Undelivered::len).sum();
    assert_eq!(handed, 50, "every queued item is handed back");
    let refused = ingestor.try_track(event(50)).unwrap_err();
    let message = refused.to_string();
    assert!(message.contains("401"), "{message}");
    assert!(matches!(&refused, EnqueueError::Unauthorized(e) if e.properties()["id"] == 50));
    assert!(matches!(
        ingestor.track(event(51)).await,
        Err(EnqueueError::Unauthorized(_))
    ));
    let report = timeout(LIMIT, ingestor.shutdown(Duration::from_secs(5)))
        .await
        .expect("bounded");
    assert_eq!((report.delivered, report.undelivered_items()), (0, 0));
    assert_eq!(ingestor.metrics().failed, 50);
}

// ---------------------------------------------- 4. classify by HTTP status

#[tokio::test]
async fn a_401_without_a_json_body_is_unauthorized_and_stops_the_rest() {
    for body in ["", "<html>401 Authorization Required</html>"] {
        let server = TestServer::start(move |_| Reply::Respond {
            status: 401,
            headers: vec![("content-type".into(), "text/html".into())],
            body: body.into(),
            delay: Duration::ZERO,
        })
        .await;
        let report = client(&server, batch(10, 1))
            .send_events((0..30).map(event))
            .await;
        assert_eq!(report.failed_items(), 30);
        for failed in &report.failed {
            assert!(
                matches!(failed.error, Error::Unauthorized { .. }),
                "body {body:?}: {:?}",
                failed.error
            );
        }
        assert_eq!(server.requests().len(), 1, "body {body:?}: stopped");
    }
}

#[tokio::test]
async fn any_2xx_is_accepted() {
    for status in [200, 201, 202, 204] {
        let server = TestServer::start(move |_| Reply::status(status)).await;
        let report = client(&server, batch(10, 1))
            .send_events((0..25).map(event))
            .await;
        assert!(report.is_success(), "{status}: {report}");
        assert_eq!((report.accepted, report.requests), (25, 3), "{status}");
    }
}

// ------------------------------------------------------------ 5. deadlines

#[tokio::test]
async fn a_huge_shutdown_deadline_means_no_deadline() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let ingestor = client(&server, batch(10, 1))
        .ingestor(IngestorConfig::default())
        .unwrap();
    ingestor.track(event(0)).await.unwrap();
    let report = timeout(LIMIT, ingestor.shutdown(Duration::MAX))
        .await
        .expect("bounded");
    assert_eq!((report.delivered, report.undelivered_items()), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_starts_after_the_deadline() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let client = client(&server, batch(100, 4));
    for round in 0..40 {
        let before = server.requests().len();
        let ingestor = client
            .ingestor(IngestorConfig::default().with_flush_interval(Duration::from_secs(3600)))
            .unwrap();
        // Three full batches may start at once; the partial one waits for
        // the flush interval, so only shutdown can send it.
        for id in 0..350 {
            ingestor.try_track(event(round * 1000 + id)).unwrap();
        }
        let report = timeout(LIMIT, ingestor.shutdown(Duration::ZERO))
            .await
            .expect("bounded");
        let sent: Vec<u64> = server.requests()[before..].iter().flat_map(ids).collect();
        let unsent: Vec<u64> = report
            .undelivered
            .iter()
            .filter(|u| u.attempts() == 0)
            .flat_map(undelivered_ids)
            .collect();
        assert!(
            unsent.contains(&(round as u64 * 1000 + 349)),
            "round {round}: the partial batch was sent after the deadline"
        );
        assert!(
            unsent.iter().all(|id| !sent.contains(id)),
            "round {round}: an item reported as never sent reached the server"
        );
        let handed: usize = report.undelivered_items();
        assert_eq!(
            handed as u64 + report.delivered,
            350,
            "round {round}: every item delivered or handed back"
        );
    }
}

// ------------------------------------------------------ 6. small capacity

#[tokio::test]
async fn a_capacity_below_the_batch_size_does_not_stall() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let ingestor = at_capacity(&server, 1000, 5);
    timeout(Duration::from_secs(10), async {
        for id in 0..40 {
            ingestor.track(event(id)).await.unwrap();
        }
    })
    .await
    .expect("track waits for a request, not for the flush interval");
    ingestor.shutdown(Duration::from_secs(5)).await;
    assert_eq!(received(&server).len(), 40);
}

// ---------------------------------------------------------- 7. dead letters

fn temp_path(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("marketap-{name}-{}.ndjson", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// `{"a":{"a":...{"a":1}}}` with `levels` objects.
fn nested(levels: usize) -> serde_json::Value {
    (0..levels).fold(
        serde_json::json!(1),
        |inner, _| serde_json::json!({ "a": inner }),
    )
}

#[tokio::test]
async fn dead_letters_are_private_and_read_back_however_deeply_nested() {
    let server = TestServer::start(|_| Reply::error(400, 1, "refused")).await;
    let path = temp_path("deep");
    let ingestor = client(&server, batch(10, 1))
        .ingestor(IngestorConfig::default().with_dead_letter_path(path.clone()))
        .unwrap();
    // The properties object is level 1: 63 more levels inside it is the most.
    let deepest = Event::builder("u", "e")
        .property("deep", nested(63))
        .property("id", 0)
        .build()
        .unwrap();
    ingestor.track(deepest).await.unwrap();
    let report = timeout(LIMIT, ingestor.shutdown(Duration::from_secs(5)))
        .await
        .expect("bounded");
    assert_eq!(report.undelivered_items(), 1);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "personal data: owner only");
    }
    let letters: Vec<_> = marketap_ext::dead_letter::read(&path).unwrap().collect();
    assert_eq!(letters.len(), 1);
    let letter = letters.into_iter().next().unwrap().expect("reads back");
    let events: Vec<Event> = letter.items().unwrap();
    assert_eq!(events[0].properties()["deep"], nested(63));
    std::fs::remove_file(&path).unwrap();

    // One level more is refused when built, naming where.
    let error = Event::builder("u", "e")
        .property("deep", nested(64))
        .build()
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(
            error,
            marketap_ext::ValidationError::TooDeep { max: 64, .. }
        ),
        "{error:?}"
    );
    assert!(message.starts_with("`properties.deep.a.a"), "{message}");
}

#[test]
fn one_bad_line_never_hides_the_good_ones() {
    let path = temp_path("lines");
    let good = r#"{"operation":"collect_bulk_user_events","error":"x","status":400,"attempts":1,"body":{"events":[{"user_id":"u","event_name":"e"}]}}"#;
    let text = format!("{good}\n{{\"operation\":\"collect_bulk\n\n{good}\nnot json at all\n");
    std::fs::write(&path, text).unwrap();
    let results: Vec<_> = marketap_ext::dead_letter::read(&path).unwrap().collect();
    std::fs::remove_file(&path).unwrap();
    let lines: Vec<Result<(), usize>> = results
        .iter()
        .map(|r| r.as_ref().map(drop).map_err(|e| e.line))
        .collect();
    assert_eq!(lines, [Ok(()), Err(2), Ok(()), Err(5)]);
}

// ---------------------------------------------------------- 10. Retry-After

#[tokio::test]
async fn retry_after_longer_than_max_backoff_is_honoured() {
    let calls = AtomicUsize::new(0);
    let server = TestServer::start(move |_| match calls.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::status(429).with_header("retry-after", "1"),
        _ => Reply::accepted(),
    })
    .await;
    let started = Instant::now();
    let report = timeout(LIMIT, client(&server, batch(10, 1)).send_events([event(0)]))
        .await
        .expect("bounded");
    assert!(report.is_success(), "{report}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}, before the server's Retry-After of 1 s",
        started.elapsed()
    );
}

#[tokio::test]
async fn retry_after_beyond_its_cap_gives_up_and_reports() {
    let server = TestServer::start(|_| Reply::status(503).with_header("retry-after", "3600")).await;
    let report = timeout(LIMIT, client(&server, batch(10, 1)).send_events([event(0)]))
        .await
        .expect("bounded");
    assert_eq!(
        server.requests().len(),
        1,
        "no retry before the server asked"
    );
    let failed = &report.failed[0];
    assert!(
        matches!(failed.error, Error::Status { status: 503, retry_after: Some(wait), .. } if wait == Duration::from_secs(3600)),
        "{:?}",
        failed.error
    );
}

// ------------------------------------------------------------- 9. secrets

#[test]
fn ids_with_control_characters_are_refused() {
    for id in ["user\0", "user\n42", "\u{1b}[31mred"] {
        assert!(
            Event::builder(id, "mkt_login").build().is_err(),
            "user_id {id:?}"
        );
        assert!(
            Event::builder("u", id).build().is_err(),
            "event_name {id:?}"
        );
        assert!(
            marketap_ext::UserDeletion::new(id).is_err(),
            "deletion {id:?}"
        );
    }
}

#[tokio::test]
async fn a_caller_finding_no_room_gets_partial_batches_sent() {
    let server = TestServer::start(|_| Reply::accepted().after(Duration::from_millis(300))).await;
    let ingestor = at_capacity(&server, 8, 10);
    // Eight fill a batch; two wait in a partial one; the eleventh finds no
    // room, which must send the partial batch, not leave it for a minute.
    for id in 0..11 {
        timeout(LIMIT, ingestor.track(event(id)))
            .await
            .expect("bounded")
            .unwrap();
    }
    let started = Instant::now();
    while received(&server).len() < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the partial batch waited for the flush interval: {:?}",
            received(&server)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ingestor.shutdown(Duration::from_secs(5)).await;
}

/// Callers waiting for room when every request has finished and what is
/// queued fills no batch (two kinds, each partial) used to wait for the
/// flush interval: the "no room" signal was spent on the partial batches
/// sent before, and nothing else sends them.
#[tokio::test]
async fn callers_still_waiting_when_nothing_is_in_flight_get_partial_batches_sent() {
    let server = TestServer::start(|_| Reply::accepted().after(Duration::from_millis(50))).await;
    let ingestor = at_capacity(&server, 3, 3);
    let callers: Vec<_> = (0..12)
        .map(|id| {
            let ingestor = ingestor.clone();
            tokio::spawn(async move {
                if id % 2 == 0 {
                    ingestor.track(event(id)).await.unwrap();
                } else {
                    let profile = UserProfile::builder(format!("user-{id}")).build().unwrap();
                    ingestor.identify(profile).await.unwrap();
                }
            })
        })
        .collect();
    timeout(Duration::from_secs(10), futures::future::join_all(callers))
        .await
        .expect("the callers waited for the flush interval");
    ingestor.shutdown(Duration::from_secs(5)).await;
    let items: usize = server.requests().iter().map(|r| r.items().len()).sum();
    assert_eq!(items, 12);
}

/// Many request handlers tracking at once into a full queue (a web service
/// under load) used to turn each caller that found no room into a partial
/// batch of a few items: 44,350 requests for 200,000 events in the bench.
/// Partial batches go only when they would use a slot nothing else needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_at_capacity_still_get_full_batches() {
    const EVENTS: usize = 4000;
    let server = TestServer::start(|_| Reply::accepted().after(Duration::from_millis(5))).await;
    let ingestor = at_capacity(&server, 100, 400);
    let producers: Vec<_> = (0..64)
        .map(|producer| {
            let ingestor = ingestor.clone();
            tokio::spawn(async move {
                for id in (producer..EVENTS).step_by(64) {
                    ingestor.track(event(id)).await.unwrap();
                }
            })
        })
        .collect();
    timeout(LIMIT, futures::future::join_all(producers))
        .await
        .expect("bounded");
    ingestor.shutdown(Duration::from_secs(5)).await;
    let requests = server.requests();
    let mut seen: Vec<u64> = requests.iter().flat_map(ids).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..EVENTS as u64).collect::<Vec<_>>());
    // 40 full batches; a few partial ones at the end of a wait are fine.
    assert!(
        requests.len() <= EVENTS / 100 * 5 / 4,
        "{} requests for {EVENTS} events in batches of 100",
        requests.len()
    );
}

#[tokio::test]
async fn a_full_batch_goes_at_once_and_a_partial_one_waits_for_the_interval() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let ingestor = client(&server, batch(10, 2))
        .ingestor(IngestorConfig::default().with_flush_interval(Duration::from_secs(60)))
        .unwrap();
    for id in 0..13 {
        ingestor.track(event(id)).await.unwrap();
    }
    let started = Instant::now();
    while received(&server).len() < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a full batch waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received(&server).len(), 10, "the partial batch waits");
    ingestor.shutdown(Duration::from_secs(5)).await;
    assert_eq!(received(&server).len(), 13);
}

#[test]
fn when_the_runtime_stops_queued_items_are_handed_back_and_in_flight_ones_counted() {
    let (seen, callback) = recorder();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ingestor = runtime.block_on(async {
        let server = TestServer::start(|_| Reply::Stall).await;
        let ingestor = client(&server, batch(10, 1))
            .ingestor(IngestorConfig::default().with_on_failure(callback))
            .unwrap();
        for id in 0..30 {
            ingestor.track(event(id)).await.unwrap();
        }
        // One batch in flight against the stalled server, two waiting.
        tokio::time::sleep(Duration::from_millis(200)).await;
        (ingestor, server)
    });
    drop(runtime);
    let (ingestor, _server) = ingestor;
    let handed: usize = seen.lock().unwrap().iter().map(Undelivered::len).sum();
    assert_eq!(handed, 20, "queued batches are handed back");
    let metrics = ingestor.metrics();
    assert_eq!(
        (metrics.failed, metrics.unreported),
        (30, 10),
        "{metrics:?}"
    );
    assert!(matches!(
        ingestor.try_track(event(99)),
        Err(EnqueueError::Stopped(_))
    ));
}
