//! The spool's kill test: a child process (`examples/spooled_producer.rs`)
//! tracks events through a spool while the loopback server answers 503 to
//! everything, for longer than one request's retries last, and is killed
//! with SIGKILL partway. A second run with `N=0` against a server that
//! accepts everything must deliver every event whose `track` had returned
//! `Ok` (printed as `tracked {i}`): none missing, and duplicates within the
//! documented bound, the ingestor's capacity. Run for both sync policies.
//!
//! The example's binary is built by `cargo test` (which builds the
//! package's examples) or `cargo build --example spooled_producer`.
#![cfg(unix)]

mod support;

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use support::{Reply, TestServer};

/// The ingestor's default capacity, which the example uses: the most a
/// crash may deliver twice.
const CAPACITY: usize = 10_000;
/// How long one request keeps retrying 503s in the child before the
/// spool's own retries take over.
const THROTTLED_WAIT: Duration = Duration::from_millis(200);
/// Every wait of the test is bounded by this.
const LIMIT: Duration = Duration::from_secs(120);

/// The example's binary, next to this test's: `target/<profile>/examples`.
fn producer() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("a test runs from target/<profile>/deps");
    let path = profile.join("examples").join("spooled_producer");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p marketap-ext` (it builds the examples) or \
         `cargo build -p marketap-ext --example spooled_producer` first",
        path.display()
    );
    path
}

/// The `seq` of each event of a request.
fn seqs(request: &support::Request) -> Vec<u64> {
    request
        .items()
        .iter()
        .filter_map(|event| event["properties"]["seq"].as_u64())
        .collect()
}

fn start(server: &TestServer, spool: &std::path::Path, n: u64, sync: &str) -> Child {
    Command::new(producer())
        .env("MARKETAP_API_KEY", "test-key")
        .env("MARKETAP_PROJECT_ID", "proj")
        .env("MARKETAP_BASE_URL", server.url())
        .env("SPOOL_PATH", spool)
        .env("N", n.to_string())
        .env("SPOOL_SYNC", sync)
        .env(
            "RETRY_THROTTLED_WAIT_MS",
            THROTTLED_WAIT.as_millis().to_string(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the example starts")
}

/// Waits for `child` to exit, killing it past [`LIMIT`].
async fn wait(child: &mut Child) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("the child did not finish within {LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the server does while the first run is killed.
#[derive(Clone, Copy, PartialEq)]
enum During {
    /// Answers 503 to everything.
    Outage,
    /// Accepts everything: the kill comes while deliveries are being
    /// acknowledged, which is what may deliver twice.
    Delivery,
}

async fn killed_and_restarted(sync: &str, during: During) {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // Every event the servers accepted, duplicates included.
    let received: Arc<Mutex<Vec<u64>>> = Arc::default();

    // 1. The first run: when each request carrying event 0 arrived is
    // recorded.
    let first_seen: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = first_seen.clone();
    let sink = received.clone();
    let outage = TestServer::start(move |request| {
        if seqs(request).contains(&0) {
            seen.lock().unwrap().push(Instant::now());
        }
        match during {
            During::Outage => Reply::status(503),
            During::Delivery => {
                sink.lock().unwrap().extend(seqs(request));
                Reply::accepted()
            }
        }
    })
    .await;
    let mut child = start(&outage, &spool, 1_000_000, sync);
    let stdout = child.stdout.take().unwrap();
    // The reader stops after 200 lines until told to go on: the child then
    // blocks on a full pipe, partway through its events.
    let (lines_tx, lines_rx) = mpsc::channel::<u64>();
    let (go_on, resume) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut read = 0;
        let mut tracked = BTreeSet::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(i) = line.strip_prefix("tracked ") {
                tracked.insert(i.parse::<u64>().unwrap());
                read += 1;
                let _ = lines_tx.send(read);
                if read == 200 {
                    resume.recv().unwrap();
                }
            }
        }
        tracked
    });
    let started = Instant::now();
    while lines_rx.recv_timeout(LIMIT).expect("the child tracks") < 200 {}
    // Wait until event 0 is sent again long after one request would have
    // given up on it (without a spool it would have failed then), or, while
    // the server accepts, until some events were delivered.
    loop {
        if during == During::Delivery && received.lock().unwrap().len() >= 1000 {
            break;
        }
        let times = first_seen.lock().unwrap().clone();
        if let (Some(first), Some(last)) = (times.first(), times.last())
            && last.duration_since(*first) > THROTTLED_WAIT * 10
        {
            break;
        }
        assert!(
            started.elapsed() < LIMIT,
            "event 0 was not sent again: {times:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    go_on.send(()).unwrap();
    let tracked = reader.join().unwrap();
    assert!(tracked.len() >= 200);
    assert!(
        tracked.len() < 1_000_000,
        "the child was not killed partway"
    );

    // 2. The restart, against a server that accepts everything.
    let sink = received.clone();
    let healthy = TestServer::start(move |request| {
        sink.lock().unwrap().extend(seqs(request));
        Reply::accepted()
    })
    .await;
    let mut child = start(&healthy, &spool, 0, sync);
    let status = wait(&mut child).await;
    let mut report = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut report).unwrap();
    assert!(status.success(), "{status}: {report}");

    let received = received.lock().unwrap().clone();
    let distinct: BTreeSet<u64> = received.iter().copied().collect();
    let missing: Vec<u64> = tracked.difference(&distinct).copied().collect();
    let duplicates = received.len() - distinct.len();
    let during = match during {
        During::Outage => "an outage",
        During::Delivery => "delivery",
    };
    println!(
        "{sync}, killed during {during}: tracked {}, received {} ({} distinct), duplicates {duplicates}, missing {}",
        tracked.len(),
        received.len(),
        distinct.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{sync}: {} of {} tracked events missing, the first {:?}",
        missing.len(),
        tracked.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(
        duplicates <= CAPACITY,
        "{sync}: {duplicates} duplicates, over the bound of {CAPACITY}"
    );
    // Only what was tracked (and perhaps the one event written when the
    // kill came, before its line was printed) was sent.
    let last = tracked.last().copied().unwrap();
    assert!(distinct.iter().all(|seq| *seq <= last + 1), "{distinct:?}");
    assert!(report.contains("left in the spool 0"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_killed_during_an_outage_loses_nothing_with_the_interval_policy() {
    killed_and_restarted("interval", During::Outage).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_killed_during_an_outage_loses_nothing_with_the_always_policy() {
    killed_and_restarted("always", During::Outage).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_killed_while_delivering_resends_at_most_its_capacity_interval() {
    killed_and_restarted("interval", During::Delivery).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_killed_while_delivering_resends_at_most_its_capacity_always() {
    killed_and_restarted("always", During::Delivery).await;
}
