//! A panic in code the SDK calls while sending (here a `tracing`
//! subscriber, on the request's own task) hands the request's items back
//! with `Error::Panicked`, and delivery goes on, in the ingestor and in a
//! batch call.
//!
//! A binary of its own: the subscriber is the global one, so no other
//! test's subscriber can change whether the request span reaches it.

mod support;

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use marketap_ext::{
    BatchConfig, Config, Error, IngestorConfig, Marketap, RetryConfig, Undelivered,
};
use support::{Reply, TestServer, event, ids, undelivered_ids};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

/// Armed, the next request span panics as it opens.
static ARMED: AtomicBool = AtomicBool::new(false);

struct PanicsWhenArmed;

impl tracing::Subscriber for PanicsWhenArmed {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        if span.metadata().name() == "marketap.request" && ARMED.swap(false, Ordering::SeqCst) {
            panic!("a subscriber bug");
        }
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn client(server: &TestServer) -> Marketap {
    Marketap::new(
        Config::new("test-key", "proj")
            .with_base_url(server.url())
            .with_batch(
                BatchConfig::default()
                    .with_max_batch_size(10)
                    .with_max_in_flight(1),
            )
            .with_retry(RetryConfig::disabled()),
    )
    .unwrap()
}

/// One test, so the two scenarios never arm the subscriber at once.
#[test]
fn a_panic_while_sending_hands_the_items_back_and_delivery_goes_on() {
    tracing::subscriber::set_global_default(PanicsWhenArmed).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(in_the_ingestor());
    runtime.block_on(in_a_batch_call());
}

async fn in_the_ingestor() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let seen = std::sync::Arc::new(Mutex::new(Vec::<Undelivered>::new()));
    let sink = seen.clone();
    let ingestor = client(&server)
        .ingestor(IngestorConfig::default().with_on_failure(move |u| sink.lock().unwrap().push(u)))
        .unwrap();
    ARMED.store(true, Ordering::SeqCst);
    for id in 0..10 {
        ingestor.track(event(id)).await.unwrap();
    }
    let _ = timeout(LIMIT, ingestor.flush())
        .await
        .expect("flush returns");
    assert!(!ARMED.load(Ordering::SeqCst), "the panic happened");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(undelivered_ids(&seen[0]), (0..10).collect::<Vec<u64>>());
        assert!(
            matches!(seen[0].error(), Error::Panicked { message, .. } if message.contains("subscriber bug")),
            "{:?}",
            seen[0].error()
        );
    }
    for id in 10..20 {
        ingestor.track(event(id)).await.unwrap();
    }
    let report = timeout(LIMIT, ingestor.shutdown(Duration::from_secs(5)))
        .await
        .expect("bounded");
    assert_eq!(report.delivered, 10);
    let received: Vec<u64> = server.requests().iter().flat_map(ids).collect();
    assert_eq!(received, (10..20).collect::<Vec<u64>>());
}

async fn in_a_batch_call() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    ARMED.store(true, Ordering::SeqCst);
    let report = client(&server).send_events((0..20).map(event)).await;
    assert!(!ARMED.load(Ordering::SeqCst), "the panic happened");
    assert_eq!((report.accepted, report.failed_items()), (10, 10));
    assert!(matches!(report.failed[0].error, Error::Panicked { .. }));
    assert_eq!(
        server.requests().len(),
        1,
        "the panicked request never left"
    );
}
