//! Background ingestion for web services: [`Ingestor`] takes events,
//! profiles and devices into a bounded in-memory queue without touching the
//! network, and one background task sends them in batches through the
//! client's batching and retries.
//!
//! Nothing is dropped silently. A full queue makes [`Ingestor::track`] wait
//! (backpressure) and [`Ingestor::try_track`] hand the item back. Items
//! that finally fail go to your `on_failure` callback, to an optional
//! dead-letter file, and, after [`Ingestor::shutdown`] begins or when no
//! callback is set, into the [`ShutdownReport`].

use std::{
    fmt,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use futures::{StreamExt, stream::FuturesUnordered};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
    time::Instant,
};

use crate::{
    batch::{FailedBatch, Sent},
    client::Marketap,
    dead_letter::DeadLetterWriter,
    error::{Error, ValidationError},
    item::{Device, Event, Item, UserProfile},
    retry::Cancel,
};

const MAX_CAPACITY: usize = 10_000_000;

/// Settings of an [`Ingestor`]. Batch size and concurrency come from the
/// client's [`BatchConfig`](crate::BatchConfig), retries from its
/// [`RetryConfig`](crate::RetryConfig).
#[derive(Clone)]
pub struct IngestorConfig {
    /// Items the queue holds before `track` waits: 1 to 10,000,000.
    /// Default 10,000.
    pub capacity: usize,
    /// A partial batch is sent once it is this old. Default 2 s.
    pub flush_interval: Duration,
    /// Where to append items that finally fail, one request per line, for
    /// a later run to resend (see [`crate::dead_letter`]). Default none.
    pub dead_letter_path: Option<PathBuf>,
    /// Called with each request that finally fails while the ingestor runs;
    /// see [`on_failure`](Self::on_failure). Default none: failures are kept
    /// for the [`ShutdownReport`].
    pub on_failure: Option<FailureCallback>,
}

/// A callback for undelivered items.
pub type FailureCallback = Arc<dyn Fn(Undelivered) + Send + Sync>;

impl Default for IngestorConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            flush_interval: Duration::from_secs(2),
            dead_letter_path: None,
            on_failure: None,
        }
    }
}

impl fmt::Debug for IngestorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestorConfig")
            .field("capacity", &self.capacity)
            .field("flush_interval", &self.flush_interval)
            .field("dead_letter_path", &self.dead_letter_path)
            .field("on_failure", &self.on_failure.as_ref().map(|_| "callback"))
            .finish()
    }
}

impl IngestorConfig {
    /// Calls `callback` with each request that finally fails while the
    /// ingestor runs (after `shutdown` begins, failures go into the
    /// report). It runs on the background task: keep it quick, e.g. send
    /// into a channel of your own.
    pub fn on_failure(mut self, callback: impl Fn(Undelivered) + Send + Sync + 'static) -> Self {
        self.on_failure = Some(Arc::new(callback));
        self
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if !(1..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(ValidationError::config(
                "ingestor.capacity",
                self.capacity,
                format!("must be 1 to {MAX_CAPACITY}"),
            ));
        }
        if self.flush_interval < Duration::from_millis(1)
            || self.flush_interval > Duration::from_secs(3600)
        {
            return Err(ValidationError::config(
                "ingestor.flush_interval",
                format!("{:?}", self.flush_interval),
                "must be 1 ms to 1 hour",
            ));
        }
        Ok(())
    }
}

/// Items of one request that were not accepted, by kind.
#[derive(Debug)]
#[non_exhaustive]
pub enum Undelivered {
    /// Events.
    Events(FailedBatch<Event>),
    /// User profiles.
    Profiles(FailedBatch<UserProfile>),
    /// Devices.
    Devices(FailedBatch<Device>),
}

impl Undelivered {
    /// How many items.
    pub fn len(&self) -> usize {
        match self {
            Undelivered::Events(batch) => batch.items.len(),
            Undelivered::Profiles(batch) => batch.items.len(),
            Undelivered::Devices(batch) => batch.items.len(),
        }
    }

    /// Whether there are none (never, for what an ingestor reports).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why they were not delivered.
    pub fn error(&self) -> &Error {
        match self {
            Undelivered::Events(batch) => &batch.error,
            Undelivered::Profiles(batch) => &batch.error,
            Undelivered::Devices(batch) => &batch.error,
        }
    }

    fn attempts(&self) -> u32 {
        match self {
            Undelivered::Events(batch) => batch.attempts,
            Undelivered::Profiles(batch) => batch.attempts,
            Undelivered::Devices(batch) => batch.attempts,
        }
    }
}

/// An item the queue did not take, handed back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnqueueError<T> {
    /// The queue is at capacity (only from the `try_` calls).
    #[error("the ingestor's queue is full")]
    Full(T),
    /// The ingestor is shutting down or has stopped.
    #[error("the ingestor is shut down")]
    Closed(T),
}

impl<T> EnqueueError<T> {
    /// The item that was not queued.
    pub fn into_inner(self) -> T {
        match self {
            EnqueueError::Full(item) | EnqueueError::Closed(item) => item,
        }
    }
}

/// Counters of an [`Ingestor`], in items (retries in requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Waiting in the queue or in a partial batch.
    pub queued: u64,
    /// In requests that have not finished.
    pub in_flight: u64,
    /// Accepted by the server.
    pub delivered: u64,
    /// Requests sent again after a failure.
    pub retried: u64,
    /// Finally not delivered.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    in_flight: AtomicU64,
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
}

/// What [`Ingestor::shutdown`] did.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Items accepted by the server over the ingestor's life.
    pub delivered: u64,
    /// Every undelivered item not already handed to `on_failure`: all of
    /// them when no callback is set, and those that failed or were
    /// abandoned at the deadline once shutdown began.
    pub undelivered: Vec<Undelivered>,
    /// Whether the deadline passed before everything was sent.
    pub deadline_passed: bool,
}

impl ShutdownReport {
    /// How many items are in [`undelivered`](Self::undelivered).
    pub fn undelivered_items(&self) -> usize {
        self.undelivered.iter().map(Undelivered::len).sum()
    }
}

enum Message {
    Event(Event),
    Profile(UserProfile),
    Device(Device),
    Flush(oneshot::Sender<()>),
}

/// Sends events, profiles and devices in the background. Enqueueing never
/// touches the network. Clones share one queue; shut it down once.
///
/// ```no_run
/// use std::time::Duration;
/// use marketap_ext::{Event, IngestorConfig, Marketap};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Marketap::from_env()?;
/// let ingestor = client.ingestor(IngestorConfig::default())?;
///
/// // In a request handler: returns at once unless the queue is full.
/// ingestor.track(Event::builder("user-42", "mkt_login").build()?).await?;
///
/// // When the service stops:
/// let report = ingestor.shutdown(Duration::from_secs(10)).await;
/// assert_eq!(report.undelivered_items(), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Ingestor {
    shared: Arc<Shared>,
}

struct Shared {
    sender: mpsc::Sender<Message>,
    counters: Arc<Counters>,
    shutdown: watch::Sender<Option<Instant>>,
    worker: Mutex<Option<JoinHandle<ShutdownReport>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let never_shut_down = self
            .worker
            .get_mut()
            .map(|worker| worker.is_some())
            .unwrap_or(false);
        if never_shut_down {
            tracing::warn!(
                queued = self.counters.queued.load(Relaxed),
                in_flight = self.counters.in_flight.load(Relaxed),
                "marketap Ingestor dropped without shutdown(): queued items are still sent in the background \
                 while the runtime runs, but nothing waits for them; call shutdown(deadline) to be sure"
            );
        }
    }
}

impl fmt::Debug for Ingestor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ingestor")
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

macro_rules! enqueue_methods {
    ($(#[$doc:meta])* $wait:ident, $try_:ident, $item:ty, $variant:ident) => {
        $(#[$doc])*
        ///
        /// Waits only while the queue is full (backpressure); an error hands
        /// the item back when the ingestor is shut down.
        pub async fn $wait(&self, item: $item) -> Result<(), EnqueueError<$item>> {
            self.shared.counters.queued.fetch_add(1, Relaxed);
            self.shared.sender.send(Message::$variant(item)).await.map_err(|e| {
                self.shared.counters.queued.fetch_sub(1, Relaxed);
                match e.0 {
                    Message::$variant(item) => EnqueueError::Closed(item),
                    _ => unreachable!("the message sent comes back"),
                }
            })
        }

        /// Like the waiting call, but never waits: a full queue hands the
        /// item back at once.
        pub fn $try_(&self, item: $item) -> Result<(), EnqueueError<$item>> {
            self.shared.counters.queued.fetch_add(1, Relaxed);
            self.shared.sender.try_send(Message::$variant(item)).map_err(|e| {
                self.shared.counters.queued.fetch_sub(1, Relaxed);
                match e {
                    mpsc::error::TrySendError::Full(Message::$variant(item)) => EnqueueError::Full(item),
                    mpsc::error::TrySendError::Closed(Message::$variant(item)) => EnqueueError::Closed(item),
                    _ => unreachable!("the message sent comes back"),
                }
            })
        }
    };
}

impl Ingestor {
    pub(crate) fn start(client: Marketap, config: IngestorConfig) -> Result<Self, ValidationError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ValidationError::config(
                "ingestor",
                "no runtime",
                "must be started inside a Tokio runtime",
            )
        })?;
        let dead_letter = config.dead_letter_path.clone().map(DeadLetterWriter::new);
        let (sender, receiver) = mpsc::channel(config.capacity);
        let (shutdown, shutdown_signal) = watch::channel(None);
        let (cancel, cancel_signal) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let batch = client.inner.batch;
        let worker = Worker {
            client,
            receiver,
            receiving: true,
            shutdown_signal,
            cancel,
            cancel_signal,
            flush_interval: config.flush_interval,
            max_batch_size: batch.max_batch_size,
            max_in_flight: batch.max_in_flight,
            events: Vec::new(),
            profiles: Vec::new(),
            devices: Vec::new(),
            due: false,
            in_flight: FuturesUnordered::new(),
            flush_waiters: Vec::new(),
            counters: counters.clone(),
            on_failure: config.on_failure,
            dead_letter,
            report: ShutdownReport::default(),
        };
        let worker = runtime.spawn(worker.run());
        Ok(Self {
            shared: Arc::new(Shared {
                sender,
                counters,
                shutdown,
                worker: Mutex::new(Some(worker)),
            }),
        })
    }

    enqueue_methods!(
        /// Queues an event.
        track, try_track, Event, Event
    );
    enqueue_methods!(
        /// Queues a user-profile update.
        identify, try_identify, UserProfile, Profile
    );
    enqueue_methods!(
        /// Queues a device registration.
        register_device, try_register_device, Device, Device
    );

    /// Returns once everything queued before the call has been delivered
    /// or has failed (and been reported). Returns at once after shutdown.
    pub async fn flush(&self) {
        let (done, waiter) = oneshot::channel();
        if self.shared.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = waiter.await;
        }
    }

    /// The counters now.
    pub fn metrics(&self) -> Metrics {
        let c = &self.shared.counters;
        Metrics {
            queued: c.queued.load(Relaxed),
            in_flight: c.in_flight.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            retried: c.retried.load(Relaxed),
            failed: c.failed.load(Relaxed),
        }
    }

    /// Stops intake, sends everything still queued, and returns within
    /// `deadline` (plus the moment it takes to hand items back) with a
    /// report holding every item that was not delivered. Requests still in
    /// flight at the deadline are abandoned and their items reported: they
    /// may or may not have reached the server. Later calls return an
    /// empty report.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let worker = self.shared.worker.lock().expect("not poisoned").take();
        let Some(worker) = worker else {
            return ShutdownReport::default();
        };
        self.shared
            .shutdown
            .send_replace(Some(Instant::now() + deadline));
        match worker.await {
            Ok(report) => report,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

impl Marketap {
    /// Starts an [`Ingestor`] on the current Tokio runtime.
    pub fn ingestor(&self, config: IngestorConfig) -> Result<Ingestor, ValidationError> {
        Ingestor::start(self.clone(), config)
    }
}

type Done = Result<(Result<Sent, Undelivered>, u64), tokio::task::JoinError>;

/// The background task: one owner of every queued item.
struct Worker {
    client: Marketap,
    receiver: mpsc::Receiver<Message>,
    /// False once the queue is closed and empty.
    receiving: bool,
    shutdown_signal: watch::Receiver<Option<Instant>>,
    cancel: watch::Sender<bool>,
    cancel_signal: watch::Receiver<bool>,
    flush_interval: Duration,
    max_batch_size: usize,
    max_in_flight: usize,
    events: Vec<Event>,
    profiles: Vec<UserProfile>,
    devices: Vec<Device>,
    /// Partial batches are to be sent now (the interval passed, or a flush
    /// or shutdown asked).
    due: bool,
    in_flight: FuturesUnordered<JoinHandle<(Result<Sent, Undelivered>, u64)>>,
    flush_waiters: Vec<oneshot::Sender<()>>,
    counters: Arc<Counters>,
    on_failure: Option<FailureCallback>,
    dead_letter: Option<DeadLetterWriter>,
    report: ShutdownReport,
}

impl Worker {
    async fn run(mut self) -> ShutdownReport {
        // The first tick comes one interval in, not at once.
        let mut tick =
            tokio::time::interval_at(Instant::now() + self.flush_interval, self.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown_signal = self.shutdown_signal.clone();
        let mut deadline: Option<Instant> = None;
        loop {
            self.dispatch();
            if self.lanes_empty() {
                self.due = false;
            }
            if self.is_idle() {
                // A waiter that stopped waiting is no loss.
                for waiter in self.flush_waiters.drain(..) {
                    let _ = waiter.send(());
                }
                if !self.receiving {
                    break;
                }
            }
            // A flush is a barrier: nothing queued after it is taken until
            // everything before it is done. A full batch waiting for a free
            // request slot also stops intake, so the queue pushes back.
            let take = self.receiving && self.flush_waiters.is_empty() && !self.has_full_batch();
            tokio::select! {
                Some(done) = self.in_flight.next() => self.complete(done).await,
                message = self.receiver.recv(), if take => self.receive(message),
                _ = tick.tick() => self.due = true,
                Ok(()) = shutdown_signal.changed(), if deadline.is_none() => {
                    deadline = *shutdown_signal.borrow();
                    self.receiver.close();
                }
                () = sleep_until(deadline), if deadline.is_some() && !*self.cancel_signal.borrow() => {
                    self.abandon_everything().await;
                }
            }
        }
        self.report.delivered = self.counters.delivered.load(Relaxed);
        self.report
    }

    fn receive(&mut self, message: Option<Message>) {
        match message {
            Some(Message::Event(event)) => self.events.push(event),
            Some(Message::Profile(profile)) => self.profiles.push(profile),
            Some(Message::Device(device)) => self.devices.push(device),
            Some(Message::Flush(waiter)) => {
                self.flush_waiters.push(waiter);
                self.due = true;
            }
            // Every handle is gone, or shutdown closed the queue: drain.
            None => {
                self.receiving = false;
                self.due = true;
            }
        }
    }

    fn has_full_batch(&self) -> bool {
        let full = self.max_batch_size;
        self.events.len() >= full || self.profiles.len() >= full || self.devices.len() >= full
    }

    fn lanes_empty(&self) -> bool {
        self.events.is_empty() && self.profiles.is_empty() && self.devices.is_empty()
    }

    fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.lanes_empty()
    }

    /// Sends full batches, and partial ones when due, while request slots
    /// are free.
    fn dispatch(&mut self) {
        if *self.cancel_signal.borrow() {
            return;
        }
        loop {
            let before = self.in_flight.len();
            self.dispatch_lane(|w| &mut w.events, Undelivered::Events);
            self.dispatch_lane(|w| &mut w.profiles, Undelivered::Profiles);
            self.dispatch_lane(|w| &mut w.devices, Undelivered::Devices);
            if self.in_flight.len() == before {
                return;
            }
        }
    }

    fn dispatch_lane<T: Item>(
        &mut self,
        lane: fn(&mut Self) -> &mut Vec<T>,
        undelivered: fn(FailedBatch<T>) -> Undelivered,
    ) {
        // While draining, every partial batch is due.
        let (max, due) = (self.max_batch_size, self.due || !self.receiving);
        let len = lane(self).len();
        if self.in_flight.len() >= self.max_in_flight || len == 0 || (len < max && !due) {
            return;
        }
        let batch: Vec<T> = lane(self).drain(..len.min(max)).collect();
        let count = batch.len() as u64;
        self.counters.queued.fetch_sub(count, Relaxed);
        self.counters.in_flight.fetch_add(count, Relaxed);
        let client = self.client.clone();
        let cancel = Cancel::new(self.cancel_signal.clone());
        self.in_flight.push(tokio::spawn(async move {
            (
                client
                    .send_request(batch, cancel)
                    .await
                    .map_err(undelivered),
                count,
            )
        }));
    }

    async fn complete(&mut self, done: Done) {
        let (result, count) = match done {
            Ok(done) => done,
            // A panic in a request task is a bug; surface it.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        self.counters.in_flight.fetch_sub(count, Relaxed);
        match result {
            Ok(sent) => {
                self.counters.delivered.fetch_add(count, Relaxed);
                self.counters
                    .retried
                    .fetch_add(u64::from(sent.attempts - 1), Relaxed);
            }
            Err(undelivered) => {
                self.counters
                    .retried
                    .fetch_add(u64::from(undelivered.attempts().saturating_sub(1)), Relaxed);
                self.fail(undelivered).await;
            }
        }
    }

    /// Hands undelivered items to the dead-letter file and to the caller.
    async fn fail(&mut self, undelivered: Undelivered) {
        self.counters
            .failed
            .fetch_add(undelivered.len() as u64, Relaxed);
        if let Some(dead_letter) = &mut self.dead_letter {
            dead_letter.append(&undelivered).await;
        }
        let shutting_down = self.shutdown_signal.borrow().is_some();
        match &self.on_failure {
            Some(callback) if !shutting_down => callback(undelivered),
            _ => self.report.undelivered.push(undelivered),
        }
    }

    /// The deadline passed: cancel requests in flight (they come back
    /// through `complete`) and report everything not yet sent.
    async fn abandon_everything(&mut self) {
        self.report.deadline_passed = true;
        self.cancel.send_replace(true);
        while let Ok(message) = self.receiver.try_recv() {
            self.receive(Some(message));
        }
        let max = self.max_batch_size;
        let mut left = Vec::new();
        left.extend(abandon(
            std::mem::take(&mut self.events),
            max,
            Undelivered::Events,
        ));
        left.extend(abandon(
            std::mem::take(&mut self.profiles),
            max,
            Undelivered::Profiles,
        ));
        left.extend(abandon(
            std::mem::take(&mut self.devices),
            max,
            Undelivered::Devices,
        ));
        for undelivered in left {
            tracing::warn!(
                items = undelivered.len(),
                "marketap shutdown deadline passed; items not sent"
            );
            self.counters
                .queued
                .fetch_sub(undelivered.len() as u64, Relaxed);
            self.fail(undelivered).await;
        }
    }
}

/// Items never sent, in request-sized groups, reported as abandoned.
fn abandon<T: Item>(
    mut items: Vec<T>,
    max: usize,
    wrap: fn(FailedBatch<T>) -> Undelivered,
) -> Vec<Undelivered> {
    let mut groups = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(items.len().min(max));
        groups.push(wrap(FailedBatch {
            items,
            error: Error::Cancelled,
            attempts: 0,
        }));
        items = rest;
    }
    groups
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
