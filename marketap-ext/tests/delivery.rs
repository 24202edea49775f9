//! Delivery under faults, against a loopback server that misbehaves on
//! purpose: 503, 429 with `Retry-After`, connection resets, stalls past
//! the client's timeout, and 400 for batches holding a poisoned item. Every
//! test is bounded in time.

mod support;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use marketap_ext::{
    BatchConfig, Config, EnqueueError, Error, Ingestor, IngestorConfig, Marketap, Operation,
    RetryConfig, Stop, dead_letter,
};
use support::{
    Reply, TestServer, event, ids,
    recorded::{Recorded, Recorder},
    undelivered_ids,
};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);

fn client(server: &TestServer, request_timeout: Duration, batch: BatchConfig) -> Marketap {
    Marketap::new(
        Config::new("test-key", "proj")
            .with_base_url(server.url())
            .with_request_timeout(request_timeout)
            .with_batch(batch)
            .with_retry(
                RetryConfig::default()
                    .with_max_attempts(5)
                    .with_initial_backoff(Duration::from_millis(2))
                    .with_max_backoff(Duration::from_millis(20)),
            ),
    )
    .unwrap()
}

/// What the faulty server accepted, and the bodies it refused with 400.
#[derive(Default)]
struct Ledger {
    accepted: HashMap<u64, usize>,
    rejected_400: Vec<Vec<u64>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_events_under_faults_lose_none() {
    const N: usize = 100_000;
    let poisoned = |id: u64| id.is_multiple_of(9_973);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let counter = Arc::new(AtomicUsize::new(0));
    let server = {
        let ledger = ledger.clone();
        TestServer::start(move |request| {
            let ids = ids(request);
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let mut ledger = ledger.lock().unwrap();
            match n % 10 {
                0 => Reply::status(502),
                1 => Reply::status(429).with_header("retry-after", "0"),
                2 => Reply::Reset,
                3 => {
                    // The server took it, but the answer comes too late: the
                    // client retries, and the server sees it twice.
                    ids.iter()
                        .for_each(|id| *ledger.accepted.entry(*id).or_default() += 1);
                    Reply::Stall
                }
                _ if ids.iter().any(|id| poisoned(*id)) => {
                    ledger.rejected_400.push(ids);
                    Reply::error(400, 4001, "poisoned item")
                }
                _ => {
                    ids.iter()
                        .for_each(|id| *ledger.accepted.entry(*id).or_default() += 1);
                    Reply::accepted()
                }
            }
        })
        .await
    };

    let failed = Arc::new(Mutex::new(Vec::new()));
    let callback_failed = failed.clone();
    // 500 ms: long enough that a prompt 400 is never mistaken for a stall
    // on a busy machine (a timed-out 400 would be retried, and reach the
    // server twice), short enough that the stalls stay cheap.
    let client = client(
        &server,
        Duration::from_millis(500),
        BatchConfig::default()
            .with_max_batch_size(500)
            .with_max_in_flight(4),
    );
    let ingestor = client
        .ingestor(
            IngestorConfig::default()
                .with_capacity(20_000)
                .with_flush_interval(Duration::from_millis(50))
                .with_on_failure(move |undelivered| {
                    callback_failed.lock().unwrap().push(undelivered)
                }),
        )
        .unwrap();

    let started = Instant::now();
    for id in 0..N {
        ingestor.track(event(id)).await.unwrap();
    }
    let report = timeout(LIMIT, ingestor.shutdown(Duration::from_secs(30)))
        .await
        .expect("bounded");
    let elapsed = started.elapsed();
    assert!(!report.deadline_passed);

    let ledger = ledger.lock().unwrap();
    let failed = failed.lock().unwrap();
    let handed_back: HashSet<u64> = failed
        .iter()
        .chain(&report.undelivered)
        .flat_map(undelivered_ids)
        .collect();
    let lost: Vec<usize> = (0..N)
        .filter(|id| {
            !ledger.accepted.contains_key(&(*id as u64)) && !handed_back.contains(&(*id as u64))
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    // Every poisoned item is handed back with the server's 400.
    for id in (0..N as u64).filter(|id| poisoned(*id)) {
        assert!(handed_back.contains(&id), "poisoned {id} not handed back");
    }
    let bad_requests: Vec<_> = failed
        .iter()
        .filter(|u| u.error().status() == Some(400))
        .collect();
    assert!(!bad_requests.is_empty());
    assert!(bad_requests.iter().all(|u| matches!(
        u.error(),
        Error::BadRequest {
            code: Some(4001),
            ..
        }
    )));
    // No 400 was retried: no refused body reached the server twice.
    let distinct: HashSet<&Vec<u64>> = ledger.rejected_400.iter().collect();
    assert_eq!(
        distinct.len(),
        ledger.rejected_400.len(),
        "a 400 was retried"
    );

    let metrics = ingestor.metrics();
    let duplicates: usize = ledger.accepted.values().map(|n| n - 1).sum();
    assert_eq!(metrics.queued + metrics.in_flight, 0);
    assert_eq!(metrics.failed as usize, handed_back.len());
    assert!(metrics.retried > 0);
    println!(
        "{N} events in {elapsed:.2?}: {} requests, {} accepted once or more, {} handed back, \
         {duplicates} duplicates, {} retries",
        server.requests().len(),
        ledger.accepted.len(),
        handed_back.len(),
        metrics.retried
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_at_once_delivers_or_reports_everything() {
    const N: usize = 10_000;
    let server = TestServer::start(|_| Reply::accepted().after(Duration::from_millis(5))).await;
    let client = client(&server, Duration::from_secs(5), BatchConfig::default());
    let ingestor = client
        .ingestor(
            IngestorConfig::default()
                .with_capacity(N)
                .with_flush_interval(Duration::from_secs(3600)),
        )
        .unwrap();
    for id in 0..N {
        ingestor.try_track(event(id)).unwrap();
    }
    let report = timeout(LIMIT, ingestor.shutdown(Duration::from_secs(20)))
        .await
        .expect("bounded");

    let received: HashSet<u64> = server.requests().iter().flat_map(ids).collect();
    assert_eq!(report.undelivered_items(), 0, "{report:?}");
    assert_eq!(report.delivered, N as u64);
    assert_eq!(received.len(), N);
    assert_eq!(ingestor.metrics().delivered, N as u64);
    // After shutdown the queue hands items back.
    assert!(matches!(
        ingestor.try_track(event(0)),
        Err(EnqueueError::Closed(_))
    ));
    assert!(matches!(
        ingestor.track(event(0)).await,
        Err(EnqueueError::Closed(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_cannot_hold_shutdown_past_its_deadline() {
    const N: usize = 5_000;
    let server = TestServer::start(|_| Reply::Stall).await;
    let client = client(
        &server,
        Duration::from_secs(120),
        BatchConfig::default()
            .with_max_batch_size(1000)
            .with_max_in_flight(2),
    );
    let ingestor = client.ingestor(IngestorConfig::default()).unwrap();
    for id in 0..N {
        ingestor.track(event(id)).await.unwrap();
    }
    // Let requests reach the stalled server.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let report = timeout(LIMIT, ingestor.shutdown(Duration::from_millis(500)))
        .await
        .expect("bounded");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(1500),
        "shutdown took {elapsed:?}"
    );
    assert!(report.deadline_passed);

    let reported: Vec<u64> = report
        .undelivered
        .iter()
        .flat_map(undelivered_ids)
        .collect();
    let distinct: HashSet<u64> = reported.iter().copied().collect();
    assert_eq!(
        (reported.len(), distinct.len()),
        (N, N),
        "each item reported once"
    );
    assert!(
        report
            .undelivered
            .iter()
            .all(|u| matches!(u.error(), Error::Cancelled))
    );
    assert!(
        !server.requests().is_empty(),
        "requests were in flight at the deadline"
    );
    println!("shutdown with a stalled server returned in {elapsed:?}, {N} items reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_delivery_gives_up_at_its_deadline_and_hands_every_item_back() {
    const N: usize = 1_000;
    // The first two requests are accepted; the server never answers the rest.
    let answered = Arc::new(AtomicUsize::new(0));
    let server = TestServer::start(move |_| {
        if answered.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::accepted()
        } else {
            Reply::Stall
        }
    })
    .await;
    let client = client(
        &server,
        Duration::from_secs(120),
        BatchConfig::default()
            .with_max_batch_size(100)
            .with_max_in_flight(2),
    );
    let stop = Stop::new();
    let mut outcomes = std::pin::pin!(client.deliver_until(stream::iter((0..N).map(event)), &stop));
    let mut accepted = Vec::new();
    while accepted.len() < 2 {
        let outcome = timeout(LIMIT, outcomes.next())
            .await
            .expect("bounded")
            .unwrap();
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        accepted.push(outcome.offset);
    }
    // Let the next requests reach the stalled server, then give up on them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    stop.drain(Duration::from_millis(300));
    let mut seen = vec![0; N];
    for offset in &accepted {
        (*offset as usize..*offset as usize + 100).for_each(|i| seen[i] += 1);
    }
    let (mut on_the_wire, mut never_sent) = (0, 0);
    while let Some(outcome) = timeout(LIMIT, outcomes.next()).await.expect("bounded") {
        let failed = outcome
            .result
            .expect_err("nothing is accepted after the stall");
        assert!(
            matches!(failed.error, Error::Cancelled),
            "{:?}",
            failed.error
        );
        if failed.attempts == 0 {
            never_sent += 1;
        } else {
            on_the_wire += 1;
        }
        for (i, item) in failed.items.iter().enumerate() {
            assert_eq!(item.properties()["id"], outcome.offset + i as u64);
            seen[outcome.offset as usize + i] += 1;
        }
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    assert!(
        seen.iter().all(|&n| n == 1),
        "every item accepted or handed back, once"
    );
    assert!(on_the_wire >= 1, "a request was in flight at the deadline");
    assert!(never_sent >= 1, "later requests never started");
    println!(
        "stopped in {elapsed:?}: {on_the_wire} requests abandoned in flight, {never_sent} never sent"
    );
}

#[tokio::test]
async fn flush_waits_for_everything_queued_before_it() {
    let server = TestServer::start(|_| Reply::accepted().after(Duration::from_millis(20))).await;
    let client = client(&server, Duration::from_secs(5), BatchConfig::default());
    let ingestor = client
        .ingestor(IngestorConfig::default().with_flush_interval(Duration::from_secs(3600)))
        .unwrap();
    for id in 0..2_500 {
        ingestor.track(event(id)).await.unwrap();
    }
    timeout(LIMIT, ingestor.flush()).await.expect("bounded");
    assert_eq!(ingestor.metrics().delivered, 2_500);
    assert_eq!(
        server
            .requests()
            .iter()
            .map(|r| r.items().len())
            .sum::<usize>(),
        2_500
    );
    // A partial batch is sent by the flush, not held for the interval.
    assert_eq!(server.requests().len(), 3);
    assert_eq!(
        ingestor
            .shutdown(Duration::from_secs(5))
            .await
            .undelivered_items(),
        0
    );
}

#[tokio::test]
async fn a_full_queue_pushes_back_and_hands_items_back() {
    let server = TestServer::start(|_| Reply::accepted().after(Duration::from_millis(300))).await;
    let client = client(
        &server,
        Duration::from_secs(5),
        BatchConfig::default()
            .with_max_batch_size(1)
            .with_max_in_flight(1),
    );
    let ingestor = client
        .ingestor(IngestorConfig::default().with_capacity(2))
        .unwrap();

    // One item in flight, one waiting for the slot, two in the queue: full.
    let mut full = None;
    for id in 0..50 {
        match ingestor.try_track(event(id)) {
            Ok(()) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(error) => {
                full = Some((id, error));
                break;
            }
        }
    }
    let (id, error) = full.expect("the queue fills");
    assert!(matches!(&error, EnqueueError::Full(_)));
    assert_eq!(
        error.into_inner().properties()["id"],
        id,
        "the same item comes back"
    );

    // The waiting call blocks until there is room, then succeeds.
    let started = Instant::now();
    timeout(LIMIT, ingestor.track(event(id)))
        .await
        .expect("bounded")
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "track waited for room"
    );

    let report = ingestor.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.undelivered_items(), 0);
    assert_eq!(report.delivered, id as u64 + 1);
}

#[tokio::test]
async fn failures_reach_the_callback_and_the_dead_letter_file_and_can_be_resent() {
    let refusing = TestServer::start(|_| Reply::error(400, 7, "bad event")).await;
    let path = std::env::temp_dir().join(format!(
        "marketap-dead-letter-{}.ndjson",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    // The server refuses every request: one letter for the whole request,
    // not one per item after isolation (tests/isolation.rs has that).
    let client = client(
        &refusing,
        Duration::from_secs(5),
        BatchConfig::default().with_isolate_bad_requests(false),
    );
    let ingestor: Ingestor = client
        .ingestor(
            IngestorConfig::default()
                .with_dead_letter_path(path.clone())
                .with_on_failure(move |undelivered| sender.send(undelivered).unwrap()),
        )
        .unwrap();
    for id in 0..3 {
        ingestor.track(event(id)).await.unwrap();
    }
    assert!(ingestor.flush().await.is_empty(), "the callback has them");
    let undelivered = timeout(LIMIT, receiver.recv())
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(undelivered_ids(&undelivered), [0, 1, 2]);
    assert_eq!(ingestor.metrics().failed, 3);
    assert_eq!(
        ingestor
            .shutdown(Duration::from_secs(5))
            .await
            .undelivered_items(),
        0,
        "reported once"
    );

    let letters: Vec<_> = dead_letter::read(&path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].operation, Operation::CollectBulkUserEvents);
    assert_eq!(letters[0].status, Some(400));
    assert_eq!(letters[0].body["events"][2]["properties"]["id"], 2);

    let accepting = TestServer::start(|_| Reply::accepted()).await;
    let client = self::client(&accepting, Duration::from_secs(5), BatchConfig::default());
    assert_eq!(client.resend(&letters[0]).await.unwrap(), 3);
    assert_eq!(ids(&accepting.requests()[0]), [0, 1, 2]);
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn retries_follow_retry_after_and_stop_at_the_limit() {
    let server = TestServer::start(|_| Reply::status(500).with_header("retry-after", "0")).await;
    let client = client(&server, Duration::from_secs(5), BatchConfig::default());
    let report = client.send_events((0..3).map(event)).await;
    let failed = &report.failed[0];
    assert_eq!(failed.attempts, 5);
    assert!(
        matches!(failed.error, Error::Status { status: 500, retry_after: Some(d), .. } if d.is_zero())
    );
    assert_eq!((server.requests().len(), report.retries), (5, 4));

    // Throttling does not count against the attempts: it keeps trying,
    // slower, for max_throttled_wait.
    let server = TestServer::start(|_| Reply::status(503).with_header("retry-after", "0")).await;
    let client = Marketap::new(
        Config::new("k", "p")
            .with_base_url(server.url())
            .with_retry(
                RetryConfig::default()
                    .with_max_attempts(2)
                    .with_initial_backoff(Duration::from_millis(1))
                    .with_max_backoff(Duration::from_millis(10))
                    .with_max_throttled_wait(Duration::from_millis(300)),
            ),
    )
    .unwrap();
    let report = timeout(LIMIT, client.send_events((0..3).map(event)))
        .await
        .expect("bounded by max_throttled_wait");
    let failed = &report.failed[0];
    assert!(matches!(failed.error, Error::Status { status: 503, .. }));
    assert!(failed.attempts > 2, "{} attempts", failed.attempts);
    assert_eq!(report.throttled, failed.attempts as usize);

    let server = TestServer::start(|_| Reply::status(503)).await;
    let client = Marketap::new(
        Config::new("k", "p")
            .with_base_url(server.url())
            .with_retry(RetryConfig::disabled()),
    )
    .unwrap();
    let report = client.send_events((0..3).map(event)).await;
    assert_eq!((report.failed[0].attempts, server.requests().len()), (1, 1));
}

#[tokio::test]
async fn dropping_without_shutdown_warns() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let client = client(&server, Duration::from_secs(5), BatchConfig::default());
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());
    let warnings = || -> Vec<Recorded> {
        recorder
            .events()
            .into_iter()
            .filter(|event| event.level == tracing::Level::WARN)
            .collect()
    };

    let ingestor = client.ingestor(IngestorConfig::default()).unwrap();
    let clone = ingestor.clone();
    ingestor.track(event(1)).await.unwrap();
    let printed = format!("{ingestor:?}");
    assert!(
        printed.starts_with("Ingestor { metrics: Metrics {"),
        "{printed}"
    );
    drop(ingestor);
    assert!(warnings().is_empty(), "a clone is still alive");
    drop(clone);
    {
        let warnings = warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].says("without shutdown"), "{warnings:?}");
    }

    let shut = client.ingestor(IngestorConfig::default()).unwrap();
    shut.shutdown(Duration::from_secs(1)).await;
    drop(shut);
    assert_eq!(warnings().len(), 1, "no warning after a clean shutdown");
}

#[tokio::test]
async fn a_stall_past_the_request_timeout_is_a_timeout_and_is_retried() {
    let server = TestServer::start(|_| Reply::Stall).await;
    let client = client(&server, Duration::from_millis(100), BatchConfig::default());
    let started = Instant::now();
    let report = timeout(LIMIT, client.send_events((0..3).map(event)))
        .await
        .expect("bounded");
    let failed = &report.failed[0];
    assert!(
        matches!(failed.error, Error::Timeout(_)),
        "{:?}",
        failed.error
    );
    assert_eq!((failed.attempts, server.requests().len()), (5, 5));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn transport_failures_are_retried_and_read_failures_classified() {
    // A reset, then an answer: the retry delivers.
    let calls = AtomicUsize::new(0);
    let server = TestServer::start(move |_| match calls.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::Reset,
        _ => Reply::accepted(),
    })
    .await;
    let client = client(&server, Duration::from_secs(5), BatchConfig::default());
    let report = client.send_events((0..3).map(event)).await;
    assert!(report.is_success(), "{report}");
    assert_eq!((report.retries, server.requests().len()), (1, 2));

    // An error status whose body stalls: a timeout. One whose connection
    // resets mid-body: a transport error. Both keep being retried.
    for (then, timeout_expected) in [(Reply::Stall, true), (Reply::Reset, false)] {
        let server = TestServer::start(move |_| Reply::HeadOnly {
            status: 503,
            then: Box::new(then.clone()),
        })
        .await;
        let slow = self::client(&server, Duration::from_millis(200), BatchConfig::default());
        let report = timeout(LIMIT, slow.send_events((0..3).map(event)))
            .await
            .expect("bounded");
        let error = &report.failed[0].error;
        if timeout_expected {
            assert!(matches!(error, Error::Timeout(_)), "{error:?}");
        } else {
            assert!(matches!(error, Error::Transport(_)), "{error:?}");
        }
        assert_eq!(report.failed[0].attempts, 5, "{error:?} is retried");
    }
}

#[tokio::test]
async fn an_unexpected_status_keeps_the_body_the_server_sent() {
    let server = TestServer::start(|_| Reply::Respond {
        status: 418,
        headers: vec![],
        body: "short and stout".into(),
        delay: Duration::ZERO,
    })
    .await;
    let client = client(&server, Duration::from_secs(5), BatchConfig::default());
    let report = client.send_events((0..3).map(event)).await;
    assert!(
        matches!(&report.failed[0].error, Error::Status { status: 418, body, .. } if body == "short and stout"),
        "{:?}",
        report.failed[0].error
    );
    assert_eq!(report.failed[0].attempts, 1, "418 is not retried");
}

#[tokio::test]
async fn the_ingestor_sends_every_kind_to_its_operation() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let client = client(&server, Duration::from_secs(5), BatchConfig::default());
    let ingestor = client.ingestor(IngestorConfig::default()).unwrap();
    let profile = |id: &str| marketap_ext::UserProfile::builder(id).build().unwrap();
    let device = |token: &str| {
        marketap_ext::Device::builder(token, marketap_ext::Platform::Web)
            .build()
            .unwrap()
    };
    ingestor.track(event(1)).await.unwrap();
    ingestor.try_track(event(2)).unwrap();
    ingestor.identify(profile("p1")).await.unwrap();
    ingestor.try_identify(profile("p2")).unwrap();
    ingestor.register_device(device("t1")).await.unwrap();
    ingestor.try_register_device(device("t2")).unwrap();
    ingestor
        .enqueue(marketap_ext::UserDeletion::new("gone-1").unwrap())
        .await
        .unwrap();
    ingestor
        .try_enqueue(marketap_ext::UserDeletion::new("gone-2").unwrap())
        .unwrap();
    let report = timeout(LIMIT, ingestor.shutdown(Duration::from_secs(5)))
        .await
        .expect("bounded");
    assert_eq!(report.delivered, 8);
    let mut seen: Vec<(String, usize)> = server
        .requests()
        .iter()
        .map(|r| (r.path().to_owned(), r.items().len()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("/v1/api/events".to_owned(), 2),
            ("/v1/api/profile/user".to_owned(), 2),
            ("/v1/api/profile/user/deletion-job/bulk".to_owned(), 2),
            ("/v1/api/profile/user/device/bulk".to_owned(), 2),
        ]
    );
}
