//! A 400 for a bulk request names no item, so the client splits the
//! request in halves until only the items the server refuses on their own
//! fail: one bad item must not sink 999 good ones. Against a loopback
//! server that refuses any request holding a poisoned item (or every
//! request), bounded in time.

mod support;

use std::{collections::HashMap, time::Duration};

use futures::StreamExt;
use marketap_ext::{
    BatchConfig, Config, Error, IngestorConfig, Marketap, RetryConfig, dead_letter,
};
use support::{Reply, TestServer, event, ids, undelivered_ids};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);

fn client(server: &TestServer, batch: BatchConfig) -> Marketap {
    Marketap::new(
        Config::new("test-key", "proj")
            .with_base_url(server.url())
            .with_batch(batch)
            .with_retry(RetryConfig::default().with_initial_backoff(Duration::from_millis(1))),
    )
    .unwrap()
}

/// A server that refuses with 400 any request holding an id `poisoned`
/// says is bad, and accepts the others.
async fn refusing(poisoned: fn(u64) -> bool) -> TestServer {
    TestServer::start(move |request| {
        if ids(request).into_iter().any(poisoned) {
            Reply::error(400, 4001, "invalid event")
        } else {
            Reply::accepted()
        }
    })
    .await
}

/// How often the server accepted each id.
fn accepted(server: &TestServer, poisoned: fn(u64) -> bool) -> HashMap<u64, usize> {
    let mut accepted = HashMap::new();
    for request in server.requests() {
        let ids = ids(&request);
        if !ids.iter().copied().any(poisoned) {
            for id in ids {
                *accepted.entry(id).or_default() += 1;
            }
        }
    }
    accepted
}

#[tokio::test]
async fn one_bad_item_fails_alone_and_the_other_1999_are_accepted() {
    let bad = |id: u64| id == 1234;
    let server = refusing(bad).await;
    let client = client(&server, BatchConfig::default());

    let report = timeout(LIMIT, client.send_events((0..2000).map(event)))
        .await
        .unwrap();

    assert_eq!(report.accepted, 1999, "{report}");
    assert_eq!(report.failed.len(), 1, "{report}");
    let failed = &report.failed[0];
    assert_eq!(failed.items.len(), 1);
    assert_eq!(failed.items[0].properties()["id"], 1234);
    assert!(
        matches!(
            failed.error,
            Error::BadRequest {
                code: Some(4001),
                ..
            }
        ),
        "{:?}",
        failed.error
    );
    assert!(!failed.error.isolation_stopped());
    assert_eq!(report.isolated, 1);
    // 1,000 items halve to one in ten splits, each sending two requests.
    assert!(
        (18..=20).contains(&report.isolation_requests),
        "{} requests to isolate one item in 1,000",
        report.isolation_requests
    );
    assert_eq!(report.splits * 2, report.isolation_requests);
    // A request split in halves is counted by its halves.
    assert_eq!(report.requests, 2 + report.splits);
    assert_eq!(server.requests().len(), 2 + report.isolation_requests);
    assert!(report.to_string().contains("1 item refused alone (400)"));
    println!(
        "one bad item in 2,000: {} requests in all, {} to isolate it",
        server.requests().len(),
        report.isolation_requests
    );

    // Every good item reached the server exactly once; the bad one never
    // was accepted.
    let accepted = accepted(&server, bad);
    assert_eq!(accepted.len(), 1999);
    assert!(accepted.values().all(|&n| n == 1));
    assert!(!accepted.contains_key(&1234));
}

#[tokio::test]
async fn items_refused_alone_keep_their_offsets_in_order() {
    let bad = |id: u64| id == 3 || id == 17;
    let server = refusing(bad).await;
    let client = client(&server, BatchConfig::default().with_max_batch_size(20));

    let mut offsets = Vec::new();
    let mut deliveries = client.deliver(futures::stream::iter((0..40).map(event)));
    let mut outcomes = Vec::new();
    while let Some(outcome) = deliveries.next().await {
        outcomes.push(outcome);
    }
    let stats = deliveries.stats();
    assert_eq!(stats.isolated, 2, "{stats:?}");
    assert_eq!(stats.isolation_requests, 2 * stats.splits);
    for outcome in &outcomes {
        if let Err(failed) = &outcome.result {
            let ids: Vec<_> = failed
                .items
                .iter()
                .map(|e| e.properties()["id"].as_u64().unwrap())
                .collect();
            assert_eq!(ids, [outcome.offset], "a refused item is where it was");
            offsets.push(outcome.offset);
        }
    }
    offsets.sort_unstable();
    assert_eq!(offsets, [3, 17]);
    let delivered: usize = outcomes
        .iter()
        .filter(|o| o.result.is_ok())
        .map(|o| o.items())
        .sum();
    assert_eq!(delivered, 38);
}

#[tokio::test]
async fn the_split_limit_stops_isolation_and_says_so() {
    let all = |_: u64| true;
    let server = refusing(all).await;
    let client = client(&server, BatchConfig::default().with_max_isolation_splits(3));

    let report = timeout(LIMIT, client.send_events((0..100).map(event)))
        .await
        .unwrap();

    assert_eq!(report.accepted, 0);
    assert_eq!(report.failed_items(), 100, "every item handed back");
    assert_eq!(report.isolation_requests, 6, "3 splits, 2 requests each");
    assert_eq!(server.requests().len(), 7);
    let stopped: usize = report
        .failed
        .iter()
        .filter(|f| f.error.isolation_stopped())
        .map(|f| f.items.len())
        .sum();
    assert_eq!(
        stopped, 100,
        "every request was refused: none was split to one item"
    );
    for failed in &report.failed {
        assert_eq!(
            failed.error.isolation_stopped(),
            failed.items.len() > 1,
            "only requests left unsplit are marked"
        );
    }
    let stopped = report
        .failed
        .iter()
        .find(|f| f.error.isolation_stopped())
        .unwrap();
    assert!(
        stopped.error.to_string().contains("split limit"),
        "{}",
        stopped.error
    );
}

#[tokio::test]
async fn isolation_can_be_switched_off() {
    let bad = |id: u64| id == 5;
    let server = refusing(bad).await;
    let client = client(
        &server,
        BatchConfig::default().with_isolate_bad_requests(false),
    );

    let report = client.send_events((0..100).map(event)).await;

    assert_eq!(server.requests().len(), 1);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed_items(), 100, "the one request fails whole");
    assert!(!report.failed[0].error.isolation_stopped());
    assert_eq!((report.isolated, report.isolation_requests), (0, 0));
}

#[tokio::test]
async fn the_ingestor_dead_letters_only_the_refused_item() {
    let bad = |id: u64| id == 42;
    let server = refusing(bad).await;
    let client = client(&server, BatchConfig::default().with_max_batch_size(100));
    let dir = std::env::temp_dir().join(format!("marketap-isolation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dead-letters.ndjson");
    let _ = std::fs::remove_file(&path);
    let ingestor = client
        .ingestor(
            IngestorConfig::default()
                .with_flush_interval(Duration::from_millis(10))
                .with_dead_letter_path(&path),
        )
        .unwrap();

    for id in 0..100 {
        ingestor.track(event(id)).await.unwrap();
    }
    let report = timeout(LIMIT, ingestor.shutdown(Duration::from_secs(30)))
        .await
        .unwrap();

    let undelivered: Vec<u64> = report
        .undelivered
        .iter()
        .flat_map(undelivered_ids)
        .collect();
    assert_eq!(undelivered, [42]);
    let metrics = ingestor.metrics();
    assert_eq!((metrics.delivered, metrics.failed), (99, 1));
    assert_eq!(metrics.isolated, 1);
    assert!(metrics.isolation_requests >= 2);

    let letters: Vec<_> = dead_letter::read(&path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(letters.len(), 1, "one letter for the one refused item");
    assert_eq!(letters[0].status, Some(400));
    assert_eq!(letters[0].body["events"].as_array().unwrap().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn three_bad_items_spread_over_one_request_fail_alone() {
    let bad = |id: u64| matches!(id, 7 | 500 | 993);
    let server = refusing(bad).await;
    let client = client(&server, BatchConfig::default());

    let report = timeout(LIMIT, client.send_events((0..1000).map(event)))
        .await
        .unwrap();

    let mut failed: Vec<u64> = report
        .failed
        .iter()
        .flat_map(|f| {
            assert_eq!(f.items.len(), 1, "each refused item alone");
            f.items
                .iter()
                .map(|e| e.properties()["id"].as_u64().unwrap())
        })
        .collect();
    failed.sort_unstable();
    assert_eq!(failed, [7, 500, 993]);
    assert_eq!((report.accepted, report.isolated), (997, 3));
    println!(
        "three bad items in 1,000: {} requests, {} to isolate them",
        server.requests().len(),
        report.isolation_requests
    );
    let accepted = accepted(&server, bad);
    assert_eq!(accepted.len(), 997);
    assert!(accepted.values().all(|&n| n == 1));
}

/// A 400 that says the whole request is wrong (here, an envelope the
/// server will never take) looks like any other 400: the API documents no
/// codes that tell them apart. Isolation stops at its bound, and every
/// item comes back, marked.
#[tokio::test]
async fn a_400_for_the_whole_request_costs_at_most_the_bound() {
    let server = TestServer::start(|_| Reply::error(400, 1001, "invalid project_id")).await;
    let client = client(&server, BatchConfig::default().with_max_isolation_splits(8));

    let report = timeout(LIMIT, client.send_events((0..1000).map(event)))
        .await
        .unwrap();

    assert_eq!(server.requests().len(), 1 + 2 * 8, "the bound, no more");
    assert_eq!(report.failed_items(), 1000, "every item handed back");
    assert_eq!(report.accepted, 0);
    assert!(
        report
            .failed
            .iter()
            .all(|f| f.error.api_code() == Some(1001))
    );
}

mod property {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// For a random batch and a random set of poisoned items, exactly the
        /// others are accepted, each once, and each poisoned item fails once,
        /// alone.
        #[test]
        fn exactly_the_poisoned_items_fail_each_once(
            n in 1usize..300,
            batch in 1usize..120,
            poison in proptest::collection::hash_set(0u64..300, 0..6),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let poisoned: HashSet<u64> = poison.into_iter().filter(|&id| id < n as u64).collect();
                let refused = poisoned.clone();
                let server = TestServer::start(move |request| {
                    if ids(request).iter().any(|id| refused.contains(id)) {
                        Reply::error(400, 4001, "poisoned")
                    } else {
                        Reply::accepted()
                    }
                })
                .await;
                let client = client(&server, BatchConfig::default().with_max_batch_size(batch));
                let report = timeout(LIMIT, client.send_events((0..n).map(event))).await.unwrap();

                let mut accepted: HashMap<u64, usize> = HashMap::new();
                for request in server.requests() {
                    let ids = ids(&request);
                    if !ids.iter().any(|id| poisoned.contains(id)) {
                        for id in ids {
                            *accepted.entry(id).or_default() += 1;
                        }
                    }
                }
                let expected: HashSet<u64> =
                    (0..n as u64).filter(|id| !poisoned.contains(id)).collect();
                assert_eq!(accepted.keys().copied().collect::<HashSet<_>>(), expected);
                assert!(accepted.values().all(|&times| times == 1));
                let mut failed: Vec<u64> = report
                    .failed
                    .iter()
                    .flat_map(|f| f.items.iter().map(|e| e.properties()["id"].as_u64().unwrap()))
                    .collect();
                failed.sort_unstable();
                let mut poisoned: Vec<u64> = poisoned.into_iter().collect();
                poisoned.sort_unstable();
                assert_eq!(failed, poisoned, "each poisoned item fails exactly once");
                assert!(report.failed.iter().all(|f| f.items.len() == 1));
            });
        }
    }
}
