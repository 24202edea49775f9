//! Backfills against limits nobody published: a loopback server that
//! enforces a hidden limit (requests in flight, requests per second, and a
//! body size), answering 429 with `Retry-After` or 413 beyond it. The
//! client must adapt: everything accepted, few refusals. The figures are
//! printed (`cargo test --test throttling -- --nocapture`); the time is a
//! figure to read, not an assertion.

mod support;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use marketap_ext::{BatchConfig, Config, Marketap, RetryConfig};
use support::{Reply, Request, TestServer, event, ids};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(120);

/// The limits the server keeps to itself.
#[derive(Clone, Copy)]
struct Hidden {
    max_in_flight: usize,
    per_second: f64,
    max_body_bytes: usize,
}

/// What the server saw and answered.
#[derive(Default)]
struct Seen {
    accepted: HashSet<u64>,
    requests: usize,
    too_many: usize,
    too_large: usize,
    /// Token bucket: tokens left, and when it was last filled.
    bucket: Option<(f64, Instant)>,
    /// When the pause the first 429 asked for ends: what reached the
    /// server before then was on its way before the client could know.
    first_pause_ends: Option<Instant>,
    /// Requests, and 429s, from then on.
    requests_after_first_pause: usize,
    too_many_after_first_pause: usize,
}

/// The pause every 429 asks for.
const RETRY_AFTER: Duration = Duration::from_secs(1);

async fn hidden_limit_server(hidden: Hidden) -> (TestServer, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = {
        let seen = seen.clone();
        TestServer::start(move |request: &Request| {
            let mut seen = seen.lock().unwrap();
            seen.requests += 1;
            if request.body.len() > hidden.max_body_bytes {
                seen.too_large += 1;
                return Reply::status(413);
            }
            let now = Instant::now();
            let after_first_pause = seen.first_pause_ends.is_some_and(|end| now >= end);
            seen.requests_after_first_pause += usize::from(after_first_pause);
            let (tokens, last) = seen.bucket.unwrap_or((hidden.per_second, now));
            let tokens = (tokens + now.duration_since(last).as_secs_f64() * hidden.per_second)
                .min(hidden.per_second);
            if request.in_flight > hidden.max_in_flight || tokens < 1.0 {
                seen.bucket = Some((tokens, now));
                seen.too_many += 1;
                seen.too_many_after_first_pause += usize::from(after_first_pause);
                seen.first_pause_ends.get_or_insert(now + RETRY_AFTER);
                return Reply::status(429)
                    .with_header("retry-after", &RETRY_AFTER.as_secs().to_string());
            }
            seen.bucket = Some((tokens - 1.0, now));
            seen.accepted.extend(ids(request));
            // The server takes a moment per request, so requests overlap.
            Reply::accepted().after(Duration::from_millis(20))
        })
        .await
    };
    (server, seen)
}

fn client(server: &TestServer, max_in_flight: usize) -> Marketap {
    Marketap::new(
        Config::new("test-key", "proj")
            .with_base_url(server.url())
            .with_batch(BatchConfig::default().with_max_in_flight(max_in_flight))
            .with_retry(
                RetryConfig::default()
                    .with_initial_backoff(Duration::from_millis(50))
                    .with_max_backoff(Duration::from_secs(2)),
            ),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_slows_to_a_hidden_rate_and_concurrency_limit() {
    const N: usize = 100_000;
    let hidden = Hidden {
        max_in_flight: 3,
        per_second: 20.0,
        max_body_bytes: usize::MAX,
    };
    let (server, seen) = hidden_limit_server(hidden).await;
    let started = Instant::now();
    const MAX_IN_FLIGHT: usize = 16;
    let report = timeout(
        LIMIT,
        client(&server, MAX_IN_FLIGHT).send_events((0..N).map(event)),
    )
    .await
    .expect("bounded");
    let elapsed = started.elapsed();

    assert!(report.is_success(), "{report}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.accepted.len(), N, "every event accepted");
    let batches = N / 1000;
    assert_eq!(report.requests, batches);
    // The slow start's overshoot: what was on its way when the first 429
    // came, never more than `max_in_flight`. On a busy machine (a debug
    // build, the tests of this file at once) up to 9 of them reached the
    // server together, the client's requests queued behind its own work.
    let first_round = seen.too_many - seen.too_many_after_first_pause;
    assert!(
        first_round <= MAX_IN_FLIGHT,
        "{first_round} refused before the first pause ended"
    );
    // From then on, the client paces itself: few refusals.
    let share_after =
        seen.too_many_after_first_pause as f64 / seen.requests_after_first_pause.max(1) as f64;
    assert!(
        share_after < 0.15,
        "{} of {} requests after the first pause answered 429 ({:.0}%)",
        seen.too_many_after_first_pause,
        seen.requests_after_first_pause,
        share_after * 100.0
    );
    assert_eq!(report.throttled, seen.too_many);
    let share = seen.too_many as f64 / seen.requests as f64;
    // A full bucket lets the first `per_second` through at once.
    let allowed = Duration::from_secs_f64((batches as f64 - hidden.per_second) / hidden.per_second);
    println!(
        "{N} events in {batches} requests: {elapsed:.2?} against {allowed:.2?} the hidden limit allows \
         ({:.2}x); {} answered 429 of {} ({:.1}%), {first_round} before the first pause ended and \
         {} of {} after it; {:.2?} spent waiting",
        elapsed.as_secs_f64() / allowed.as_secs_f64(),
        seen.too_many,
        seen.requests,
        share * 100.0,
        seen.too_many_after_first_pause,
        seen.requests_after_first_pause,
        report.throttle_wait
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_body_size_limit_is_learned_from_413s() {
    const N: usize = 30_000;
    let hidden = Hidden {
        max_in_flight: usize::MAX,
        per_second: f64::INFINITY,
        // About 400 of these events.
        max_body_bytes: 30_000,
    };
    let (server, seen) = hidden_limit_server(hidden).await;
    let report = timeout(LIMIT, client(&server, 4).send_events((0..N).map(event)))
        .await
        .expect("bounded");

    assert!(report.is_success(), "{report}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.accepted.len(), N, "every event accepted");
    let sent = seen.requests - seen.too_large;
    assert!(
        seen.too_large * 10 <= sent,
        "{} requests refused as too large, against {sent} accepted: the client did not learn",
        seen.too_large
    );
    assert_eq!(report.splits, seen.too_large);
    println!(
        "{N} events: {sent} requests accepted, {} refused as too large (413), {} splits",
        seen.too_large, report.splits
    );
}

#[tokio::test]
async fn the_ingestor_reports_throttling_in_its_metrics() {
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let server = TestServer::start(move |_| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3 {
            // Not zero: a `Retry-After: 0` teaches no send rate.
            Reply::status(429).with_header("retry-after", "1")
        } else {
            Reply::accepted()
        }
    })
    .await;
    let ingestor = client(&server, 4)
        .ingestor(marketap_ext::IngestorConfig::default())
        .unwrap();
    for id in 0..2500 {
        ingestor.track(event(id)).await.unwrap();
    }
    let report = timeout(LIMIT, ingestor.shutdown(Duration::from_secs(30)))
        .await
        .expect("bounded");
    assert_eq!(report.delivered, 2500);
    let metrics = ingestor.metrics();
    assert_eq!(metrics.throttled, 3);
    assert!(metrics.throttle_wait > Duration::ZERO);
    assert!((1..=4).contains(&metrics.concurrency_limit), "{metrics:?}");
    // Three 429s on the first requests, before a second of sending, teach
    // no send rate: nothing is paced.
    assert_eq!(metrics.send_rate(), None, "{metrics:?}");
    assert_eq!(metrics.paced, Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingestor_shows_the_rate_it_learned_and_the_time_it_paced() {
    let (server, seen) = hidden_limit_server(Hidden {
        max_in_flight: 3,
        per_second: 20.0,
        max_body_bytes: usize::MAX,
    })
    .await;
    let client = Marketap::new(
        Config::new("test-key", "proj")
            .with_base_url(server.url())
            .with_batch(BatchConfig::default().with_max_batch_size(10)),
    )
    .unwrap();
    let ingestor = client
        .ingestor(marketap_ext::IngestorConfig::default())
        .unwrap();
    for id in 0..1500 {
        ingestor.track(event(id)).await.unwrap();
    }
    let report = timeout(LIMIT, ingestor.shutdown(Duration::from_secs(60)))
        .await
        .expect("bounded");
    assert_eq!(report.delivered, 1500);
    assert_eq!(seen.lock().unwrap().accepted.len(), 1500);
    let metrics = ingestor.metrics();
    // 150 requests at 20 a second: throttled past the first second, so a
    // rate is learned, near the hidden one, and starts were paced.
    let rate = metrics.send_rate().expect("a learned rate");
    assert!(rate > 5.0 && rate < 60.0, "{metrics:?}");
    assert!(metrics.paced > Duration::ZERO, "{metrics:?}");
    assert!(metrics.paced <= metrics.throttle_wait, "{metrics:?}");
    println!("{metrics:?}");
}

#[tokio::test]
async fn only_an_item_too_large_alone_fails_and_with_its_own_error() {
    let server = TestServer::start(|request: &Request| {
        if request.body.len() > 2_000 {
            Reply::status(413)
        } else {
            Reply::accepted()
        }
    })
    .await;
    let huge = marketap_ext::Event::builder("user-big", "mkt_page_view")
        .property("id", 999)
        .property("blob", "x".repeat(5_000))
        .build()
        .unwrap();
    let events = (0..5).map(event).chain([huge]).chain((5..10).map(event));
    let report = timeout(LIMIT, client(&server, 1).send_events(events))
        .await
        .expect("bounded");
    assert_eq!(report.accepted, 10, "{report}");
    assert_eq!(report.failed.len(), 1);
    let failed = &report.failed[0];
    assert_eq!(failed.items.len(), 1);
    assert_eq!(failed.items[0].properties()["id"], 999);
    assert!(matches!(
        failed.error,
        marketap_ext::Error::Status { status: 413, .. }
    ));
    assert!(report.splits >= 1);
    let received: HashSet<u64> = server.requests().iter().flat_map(ids).collect();
    assert!((0..10).all(|id| received.contains(&id)));
}

#[tokio::test]
async fn without_throttling_the_limit_grows_to_max_in_flight() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let ingestor = client(&server, 3)
        .ingestor(marketap_ext::IngestorConfig::default())
        .unwrap();
    assert_eq!(ingestor.metrics().concurrency_limit, 1, "a slow start");
    for id in 0..6000 {
        ingestor.track(event(id)).await.unwrap();
    }
    timeout(LIMIT, ingestor.shutdown(Duration::from_secs(30)))
        .await
        .expect("bounded");
    assert_eq!(ingestor.metrics().concurrency_limit, 3);
    assert_eq!(
        ingestor.metrics().send_interval,
        None,
        "never throttled: never paced"
    );
}

#[tokio::test]
async fn split_requests_report_where_their_items_were() {
    use futures::StreamExt;
    let server = TestServer::start(|request: &Request| {
        if request.body.len() > 20_000 {
            Reply::status(413)
        } else {
            Reply::accepted()
        }
    })
    .await;
    let mut outcomes: Vec<_> = client(&server, 2)
        .deliver(futures::stream::iter((0..2500).map(event)))
        .collect()
        .await;
    outcomes.sort_by_key(|outcome| outcome.offset);
    let mut next = 0;
    for outcome in &outcomes {
        assert_eq!(outcome.offset, next, "requests cover the input in order");
        let accepted = outcome.result.as_ref().expect("every piece accepted");
        next += accepted.items as u64;
    }
    assert_eq!(next, 2500);
    assert!(outcomes.len() > 3, "the batches were split");
}

#[tokio::test]
async fn one_request_calls_refuse_a_body_over_the_byte_limit() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let limited = |max_request_bytes| {
        Marketap::new(
            Config::new("test-key", "proj")
                .with_base_url(server.url())
                .with_batch(BatchConfig::default().with_max_request_bytes(max_request_bytes)),
        )
        .unwrap()
    };
    let client = limited(64 * 1024);
    let events: Vec<_> = (0..1000).map(event).collect();
    let failed = client.send_batch(events).await.unwrap_err();
    assert!(
        matches!(
            failed.error,
            marketap_ext::Error::Validation(marketap_ext::ValidationError::TooLarge {
                max: 65536,
                ..
            })
        ),
        "{:?}",
        failed.error
    );
    assert_eq!((failed.items.len(), failed.attempts), (1000, 0));
    assert!(server.requests().is_empty());
    // Under the limit, it goes as one request.
    let fits: Vec<_> = (0..100).map(event).collect();
    assert_eq!(client.send_batch(fits).await.unwrap(), 100);
    assert_eq!(server.requests().len(), 1);

    // The limit is inclusive: a body of exactly that many bytes goes.
    let events = || (0..1000).map(event).collect::<Vec<_>>();
    limited(4 << 20).send_batch(events()).await.unwrap();
    let exact = server.requests()[1].body.len();
    assert!(exact > 65536, "over the smallest limit allowed");
    assert_eq!(limited(exact).send_batch(events()).await.unwrap(), 1000);
    assert_eq!(server.requests()[2].body.len(), exact);
    let failed = limited(exact - 1).send_batch(events()).await.unwrap_err();
    assert_eq!(failed.attempts, 0, "{:?}", failed.error);
    assert_eq!(server.requests().len(), 3);
}
