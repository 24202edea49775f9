//! A slow disk never stalls the caller: dead letters are written while
//! `track` goes on, on a runtime of one thread, where a write on a worker
//! would stall every task. The disk here is a gate: each write waits until
//! the test opens it, so the test asserts what happened while a write was
//! stuck, not how long anything took.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use httpmock::{Method::POST, MockServer};
use tokio::time::timeout;

use super::{EnqueueError, Ingestor, IngestorConfig};
use crate::{Config, Event, RetryConfig, dead_letter::Writer, lock::lock};

/// A bound on every wait, so a broken build fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(30);

/// How long a write waits for the gate before it goes on anyway. Only a
/// write that holds the runtime's only thread (the test cannot open the
/// gate then) ever waits this long; it keeps that failure bounded.
const STUCK: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Gate {
    open: bool,
    /// Writes begun, and writes past the gate.
    started: usize,
    finished: usize,
    /// When the first write began.
    began: Option<Instant>,
}

/// A disk whose writes wait at a gate.
#[derive(Clone, Default)]
struct Disk(Arc<(Mutex<Gate>, Condvar)>);

impl Disk {
    /// Runs before each write, on whatever thread writes.
    fn write(&self) {
        let (gate, changed) = &*self.0;
        let mut state = lock(gate);
        state.started += 1;
        state.began.get_or_insert_with(Instant::now);
        let (mut state, _) = changed
            .wait_timeout_while(state, STUCK, |state| !state.open)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.finished += 1;
    }

    fn counts(&self) -> (usize, usize) {
        let state = lock(&self.0.0);
        (state.started, state.finished)
    }

    /// How long since the first write began.
    fn since_first_write(&self) -> Option<Duration> {
        lock(&self.0.0).began.map(|began| began.elapsed())
    }

    fn open(&self) {
        lock(&self.0.0).open = true;
        self.0.1.notify_all();
    }

    /// Resolves once a write has begun.
    async fn writing(&self) {
        while self.counts().0 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn event(id: u64) -> Event {
    Event::builder(format!("u{id}"), "e")
        .property("id", id)
        .build()
        .unwrap()
}

/// A server that refuses every request with a 400.
async fn refusing_server() -> MockServer {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.method(POST);
            then.status(400)
                .header("content-type", "application/json")
                .body(r#"{"code":1,"message":"refused"}"#);
        })
        .await;
    server
}

fn temp_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "marketap-slow-disk-{name}-{}.ndjson",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// The ids of the events in the dead-letter file at `path`, which it
/// removes.
fn written_ids(path: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = crate::dead_letter::read(path)
        .unwrap()
        .flat_map(|letter| letter.unwrap().items::<Event>().unwrap())
        .map(|event| event.properties()["id"].as_u64().unwrap())
        .collect();
    std::fs::remove_file(path).unwrap();
    ids.sort_unstable();
    ids
}

/// Starts an ingestor of `capacity` against `server` whose dead letters go
/// to `path` through `disk`.
fn ingestor(server: &MockServer, path: &Path, disk: &Disk, capacity: usize) -> Ingestor {
    let connection = Config::new("test-key", "proj")
        .with_base_url(server.base_url())
        .with_retry(RetryConfig::disabled())
        .connect()
        .unwrap();
    let disk = disk.clone();
    let writer = Writer::new(path).before_each_write(move || disk.write());
    let config = IngestorConfig::default().with_capacity(capacity);
    Ingestor::launch(Arc::new(connection), config, Some(writer)).unwrap()
}

// One thread: a dead letter written on it would stall `track`.
#[tokio::test(flavor = "current_thread")]
async fn track_goes_on_while_a_dead_letter_write_is_stuck() {
    const HANDLERS: u64 = 20;
    let server = refusing_server().await;
    let path = temp_path("track");
    let disk = Disk::default();
    let ingestor = ingestor(&server, &path, &disk, 10_000);

    // The first request fails, and its dead letter's write gets stuck.
    ingestor.track(event(0)).await.unwrap();
    let flushing = tokio::spawn({
        let ingestor = ingestor.clone();
        async move { ingestor.flush().await }
    });
    timeout(LIMIT, disk.writing())
        .await
        .expect("a dead letter is being written");

    // Meanwhile, request handlers (tasks of their own) track more.
    for id in 1..=HANDLERS {
        let ingestor = ingestor.clone();
        let handler = tokio::spawn(async move { ingestor.track(event(id)).await });
        timeout(LIMIT, handler)
            .await
            .expect("track returns")
            .unwrap()
            .unwrap();
    }
    let (writes, finished) = disk.counts();
    // Printed, not asserted: what a stuck write cost the handlers.
    eprintln!(
        "{HANDLERS} track calls done {:?} after the first write began; writes begun {writes}, finished {finished}",
        disk.since_first_write()
    );
    assert_eq!(
        finished, 0,
        "track returned only once the stuck write went on: the write held the runtime's thread"
    );

    // The disk comes back: the flush ends, and shutdown writes and syncs
    // every other letter before it returns.
    disk.open();
    let kept = timeout(LIMIT, flushing)
        .await
        .expect("flush returns")
        .unwrap();
    assert_eq!(kept.iter().map(|u| u.len()).sum::<usize>(), 1);
    let report = timeout(LIMIT, ingestor.shutdown(Duration::MAX))
        .await
        .expect("shutdown returns");
    assert_eq!(report.undelivered_items() as u64, HANDLERS);
    assert_eq!(written_ids(&path), (0..=HANDLERS).collect::<Vec<_>>());
}

// What waits for the disk is bounded by the ingestor's capacity: the items
// of a letter not yet written keep their room, so a disk slower than the
// failures makes `track` wait instead of memory grow.
#[tokio::test(flavor = "current_thread")]
async fn items_keep_their_room_until_their_letter_is_written() {
    let server = refusing_server().await;
    let path = temp_path("room");
    let disk = Disk::default();
    let ingestor = ingestor(&server, &path, &disk, 2);
    ingestor.track(event(0)).await.unwrap();
    ingestor.track(event(1)).await.unwrap();
    let flushing = tokio::spawn({
        let ingestor = ingestor.clone();
        async move { ingestor.flush().await }
    });
    timeout(LIMIT, disk.writing())
        .await
        .expect("a dead letter is being written");
    // The request is over, but its letter is not written: no room yet.
    assert!(matches!(
        ingestor.try_track(event(2)),
        Err(EnqueueError::Full(_))
    ));
    disk.open();
    let kept = timeout(LIMIT, flushing)
        .await
        .expect("flush returns")
        .unwrap();
    assert_eq!(kept.iter().map(|u| u.len()).sum::<usize>(), 2);
    ingestor.try_track(event(2)).unwrap();
    let report = timeout(LIMIT, ingestor.shutdown(Duration::MAX))
        .await
        .expect("shutdown returns");
    assert_eq!(report.undelivered_items(), 1);
    assert_eq!(written_ids(&path), [0, 1, 2]);
}
