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
