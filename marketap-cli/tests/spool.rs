//! `marketap spool inspect` and `marketap spool drain` on a spool the
//! library left behind.

mod support;

use std::{net::TcpListener, path::Path, time::Duration};

use marketap_ext::{Config, Event, IngestorConfig, Marketap, spool::SpoolConfig};
use serde_json::Value;
use support::{KEY, PROJECT, Server, marketap, run, temp_dir};

/// Leaves `n` events (`user_id` `u{i}`, property `n` = i) in a spool at
/// `dir`: an ingestor whose server refuses connections tracks them, and
/// its shutdown deadline passes with all of them still in the spool.
fn leave_in_spool(dir: &Path, n: u64) {
    // A port nothing listens on: every connection is refused.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = Config::new(KEY, PROJECT).with_base_url(format!("http://{closed}"));
        let ingestor = Marketap::new(config)
            .unwrap()
            .ingestor(IngestorConfig::default().with_spool(SpoolConfig::new(dir)))
            .unwrap();
        for i in 0..n {
            let event = Event::builder(format!("u{i}"), "mkt_page_view")
                .property("n", i)
                .build()
                .unwrap();
            ingestor.track(event).await.unwrap();
        }
        let report = ingestor.shutdown(Duration::from_millis(100)).await;
        assert_eq!(report.spooled, n, "{report:?}");
    });
}

fn numbers(items: &[Value]) -> Vec<u64> {
    let mut seen: Vec<u64> = items
        .iter()
        .map(|item| item["properties"]["n"].as_u64().unwrap())
        .collect();
    seen.sort_unstable();
    seen
}

#[test]
fn inspect_prints_what_a_spool_holds_and_changes_nothing() {
    let dir = temp_dir("spool-inspect");
    let spool = dir.join("spool");
    leave_in_spool(&spool, 25);
    let path = spool.to_str().unwrap();

    let json = run(marketap(
        &dir,
        None,
        &["spool", "inspect", path, "--output", "json"],
    ));
    assert_eq!(json.code, Some(0), "{json:?}");
    let summary = json.json();
    assert_eq!(summary["items"], 25);
    assert!(summary["bytes"].as_u64().unwrap() > 25 * 40, "{summary}");
    assert!(summary["oldest"].as_str().unwrap() <= summary["newest"].as_str().unwrap());
    assert_eq!(summary["corrupted"], serde_json::json!([]));

    let text = run(marketap(&dir, None, &["spool", "inspect", path]));
    assert_eq!(text.code, Some(0), "{text:?}");
    assert!(text.stdout.contains("25 items"), "{}", text.stdout);
    assert!(text.stdout.contains("no damaged ranges"), "{}", text.stdout);
    // Read only: the same again.
    let again = run(marketap(
        &dir,
        None,
        &["spool", "inspect", path, "--output", "json"],
    ));
    assert_eq!(again.json()["items"], 25);
}

#[test]
fn inspect_of_no_spool_is_a_usage_error() {
    let dir = temp_dir("spool-inspect-missing");
    let missing = run(marketap(&dir, None, &["spool", "inspect", "nowhere"]));
    assert_eq!(missing.code, Some(2), "{missing:?}");
    assert!(missing.stderr.contains("nowhere"), "{}", missing.stderr);
}

#[test]
fn drain_delivers_a_leftover_spool_and_empties_it() {
    let dir = temp_dir("spool-drain");
    let spool = dir.join("spool");
    leave_in_spool(&spool, 40);
    let server = Server::accepting();
    let path = spool.to_str().unwrap();

    let drained = run(marketap(
        &dir,
        Some(&server),
        &["spool", "drain", path, "--output", "json", "--quiet"],
    ));
    assert_eq!(drained.code, Some(0), "{drained:?}");
    let summary = drained.json();
    assert_eq!(summary["command"], "spool drain");
    assert_eq!(
        (
            &summary["items"],
            &summary["accepted"],
            &summary["failed"],
            &summary["not_sent"]
        ),
        (&40.into(), &40.into(), &0.into(), &0.into()),
        "{summary}"
    );
    assert_eq!(numbers(&server.items()), (0..40).collect::<Vec<_>>());

    let after = run(marketap(
        &dir,
        None,
        &["spool", "inspect", path, "--output", "json"],
    ));
    assert_eq!(after.json()["items"], 0);
}

#[test]
fn drain_stops_at_a_401_with_exit_code_3_and_keeps_the_items() {
    let dir = temp_dir("spool-drain-401");
    let spool = dir.join("spool");
    leave_in_spool(&spool, 10);
    let server = Server::start(|_| (401, Duration::ZERO));
    let path = spool.to_str().unwrap();

    let drained = run(marketap(
        &dir,
        Some(&server),
        &["spool", "drain", path, "--quiet"],
    ));
    assert_eq!(drained.code, Some(3), "{drained:?}");
    assert!(drained.stdout.contains("401"), "{}", drained.stdout);
    let after = run(marketap(
        &dir,
        None,
        &["spool", "inspect", path, "--output", "json"],
    ));
    assert_eq!(after.json()["items"], 10, "the items stay for a fixed key");
}

#[test]
fn drain_with_max_time_during_an_outage_leaves_the_items_and_exits_1() {
    let dir = temp_dir("spool-drain-outage");
    let spool = dir.join("spool");
    leave_in_spool(&spool, 10);
    let server = Server::start(|_| (503, Duration::ZERO));
    let path = spool.to_str().unwrap();

    let drained = run(marketap(
        &dir,
        Some(&server),
        &[
            "spool",
            "drain",
            path,
            "--max-time",
            "1",
            "--drain-timeout",
            "0.2",
            "--output",
            "json",
        ],
    ));
    assert_eq!(drained.code, Some(1), "{drained:?}");
    let summary = drained.json();
    assert_eq!(
        (&summary["accepted"], &summary["not_sent"]),
        (&0.into(), &10.into())
    );
    assert!(
        summary["stopped"].as_str().unwrap().contains("--max-time"),
        "{summary}"
    );
    let after = run(marketap(
        &dir,
        None,
        &["spool", "inspect", path, "--output", "json"],
    ));
    assert_eq!(after.json()["items"], 10);
}
