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
    collections::{BTreeSet, VecDeque},
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
    sync::{Notify, Semaphore, TryAcquireError, oneshot, watch},
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
    /// Items held at once, queued or in requests not yet finished, before
    /// `track` waits: 1 to 10,000,000. Default 10,000. This bounds the
    /// ingestor's memory whatever the server does.
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
    intake: Arc<Intake>,
    /// `Some(deadline)` once draining: `Some(None)` drains without one.
    stop: watch::Sender<Option<Option<Instant>>>,
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
            let counters = &self.intake.counters;
            tracing::warn!(
                queued = counters.queued.load(Relaxed),
                in_flight = counters.in_flight.load(Relaxed),
                "marketap Ingestor dropped without shutdown(): queued items are still sent in the background \
                 while the runtime runs, but nothing waits for them; call shutdown(deadline) to be sure"
            );
            // The worker drains what is queued, then stops.
            self.stop.send_replace(Some(None));
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

/// Where enqueued items wait. A caller takes a permit of `room` per item
/// (that is the backpressure), pushes under a short lock, and wakes the
/// worker only when a lane holds a whole batch: per item, one atomic and
/// one uncontended lock, no hand-off through a channel.
struct Intake {
    lanes: Mutex<Lanes>,
    /// One permit per item the ingestor may still hold, queued or in
    /// flight; given back when its request finishes.
    room: Semaphore,
    wake: Notify,
    max_batch_size: usize,
    counters: Counters,
}

#[derive(Default)]
struct Lanes {
    events: Vec<Event>,
    profiles: Vec<UserProfile>,
    devices: Vec<Device>,
    flush_waiters: Vec<oneshot::Sender<()>>,
    /// Set under the lock when the worker stops intake, so no item can be
    /// pushed after its last look.
    closed: bool,
}

/// An item kind the ingestor queues, with its lane.
trait Queued: Item {
    fn lane(lanes: &mut Lanes) -> &mut Vec<Self>;
    fn batch(items: Vec<Self>) -> Batch;
}

impl Queued for Event {
    fn lane(lanes: &mut Lanes) -> &mut Vec<Self> {
        &mut lanes.events
    }
    fn batch(items: Vec<Self>) -> Batch {
        Batch::Events(items)
    }
}

impl Queued for UserProfile {
    fn lane(lanes: &mut Lanes) -> &mut Vec<Self> {
        &mut lanes.profiles
    }
    fn batch(items: Vec<Self>) -> Batch {
        Batch::Profiles(items)
    }
}

impl Queued for Device {
    fn lane(lanes: &mut Lanes) -> &mut Vec<Self> {
        &mut lanes.devices
    }
    fn batch(items: Vec<Self>) -> Batch {
        Batch::Devices(items)
    }
}

impl Intake {
    fn lock(&self) -> std::sync::MutexGuard<'_, Lanes> {
        // A panic while holding this lock leaves plain vectors behind; go on.
        self.lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push<T: Queued>(
        &self,
        permit: tokio::sync::SemaphorePermit<'_>,
        item: T,
    ) -> Result<(), EnqueueError<T>> {
        let mut lanes = self.lock();
        if lanes.closed {
            return Err(EnqueueError::Closed(item));
        }
        let lane = T::lane(&mut lanes);
        lane.push(item);
        let batch_ready = lane.len() == self.max_batch_size;
        drop(lanes);
        permit.forget();
        self.counters.queued.fetch_add(1, Relaxed);
        if batch_ready {
            self.wake.notify_one();
        }
        Ok(())
    }

    async fn enqueue<T: Queued>(&self, item: T) -> Result<(), EnqueueError<T>> {
        match self.room.acquire().await {
            Ok(permit) => self.push(permit, item),
            Err(_) => Err(EnqueueError::Closed(item)),
        }
    }

    fn try_enqueue<T: Queued>(&self, item: T) -> Result<(), EnqueueError<T>> {
        match self.room.try_acquire() {
            Ok(permit) => self.push(permit, item),
            Err(TryAcquireError::NoPermits) => Err(EnqueueError::Full(item)),
            Err(TryAcquireError::Closed) => Err(EnqueueError::Closed(item)),
        }
    }
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
        let batch = client.inner.batch;
        let intake = Arc::new(Intake {
            lanes: Mutex::default(),
            room: Semaphore::new(config.capacity),
            wake: Notify::new(),
            max_batch_size: batch.max_batch_size,
            counters: Counters::default(),
        });
        let (stop, stop_signal) = watch::channel(None);
        let (cancel, cancel_signal) = watch::channel(false);
        let worker = Worker {
            client,
            intake: intake.clone(),
            stop_signal,
            draining: false,
            cancel,
            cancel_signal,
            flush_interval: config.flush_interval,
            max_in_flight: batch.max_in_flight,
            ready: VecDeque::new(),
            next_id: 0,
            outstanding: BTreeSet::new(),
            in_flight: FuturesUnordered::new(),
            flush_waiters: Vec::new(),
            on_failure: config.on_failure,
            dead_letter: config.dead_letter_path.map(DeadLetterWriter::new),
            report: ShutdownReport::default(),
        };
        let worker = runtime.spawn(worker.run());
        Ok(Self {
            shared: Arc::new(Shared {
                intake,
                stop,
                worker: Mutex::new(Some(worker)),
            }),
        })
    }

    /// Queues an event. Waits only while the ingestor is at capacity
    /// (backpressure); hands the item back once it is shut down.
    pub async fn track(&self, event: Event) -> Result<(), EnqueueError<Event>> {
        self.shared.intake.enqueue(event).await
    }

    /// Queues an event, or hands it back at once if at capacity.
    pub fn try_track(&self, event: Event) -> Result<(), EnqueueError<Event>> {
        self.shared.intake.try_enqueue(event)
    }

    /// Queues a user-profile update; waits like [`track`](Self::track).
    pub async fn identify(&self, profile: UserProfile) -> Result<(), EnqueueError<UserProfile>> {
        self.shared.intake.enqueue(profile).await
    }

    /// Queues a user-profile update, or hands it back at once if at capacity.
    pub fn try_identify(&self, profile: UserProfile) -> Result<(), EnqueueError<UserProfile>> {
        self.shared.intake.try_enqueue(profile)
    }

    /// Queues a device registration; waits like [`track`](Self::track).
    pub async fn register_device(&self, device: Device) -> Result<(), EnqueueError<Device>> {
        self.shared.intake.enqueue(device).await
    }

    /// Queues a device registration, or hands it back at once if at capacity.
    pub fn try_register_device(&self, device: Device) -> Result<(), EnqueueError<Device>> {
        self.shared.intake.try_enqueue(device)
    }

    /// Returns once everything queued before the call has been delivered
    /// or has failed (and been reported). Returns at once after shutdown.
    pub async fn flush(&self) {
        let (done, waiter) = oneshot::channel();
        {
            let mut lanes = self.shared.intake.lock();
            if lanes.closed {
                return;
            }
            lanes.flush_waiters.push(done);
        }
        self.shared.intake.wake.notify_one();
        let _ = waiter.await;
    }

    /// The counters now.
    pub fn metrics(&self) -> Metrics {
        let c = &self.shared.intake.counters;
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
        let worker = self
            .shared
            .worker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let Some(worker) = worker else {
            return ShutdownReport::default();
        };
        self.shared
            .stop
            .send_replace(Some(Some(Instant::now() + deadline)));
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

/// A request's worth of items taken from a lane.
enum Batch {
    Events(Vec<Event>),
    Profiles(Vec<UserProfile>),
    Devices(Vec<Device>),
}

impl Batch {
    fn len(&self) -> usize {
        match self {
            Batch::Events(items) => items.len(),
            Batch::Profiles(items) => items.len(),
            Batch::Devices(items) => items.len(),
        }
    }

    /// Never sent: handed back as abandoned at the deadline.
    fn abandon(self) -> Undelivered {
        fn abandoned<T>(items: Vec<T>) -> FailedBatch<T> {
            FailedBatch {
                items,
                error: Error::Cancelled,
                attempts: 0,
            }
        }
        match self {
            Batch::Events(items) => Undelivered::Events(abandoned(items)),
            Batch::Profiles(items) => Undelivered::Profiles(abandoned(items)),
            Batch::Devices(items) => Undelivered::Devices(abandoned(items)),
        }
    }
}

/// A request task's result: its batch id, its outcome, and its item count.
type Finished = (u64, Result<Sent, Undelivered>, usize);
type Done = Result<Finished, tokio::task::JoinError>;

/// The background task: takes batches from the intake, sends them with
/// bounded concurrency, and hands back what fails.
struct Worker {
    client: Marketap,
    intake: Arc<Intake>,
    stop_signal: watch::Receiver<Option<Option<Instant>>>,
    /// Intake is closed; everything left is sent (or abandoned at the
    /// deadline), then the worker ends.
    draining: bool,
    cancel: watch::Sender<bool>,
    cancel_signal: watch::Receiver<bool>,
    flush_interval: Duration,
    max_in_flight: usize,
    /// Batches taken from the lanes, waiting for a request slot, with ids.
    ready: VecDeque<(u64, Batch)>,
    next_id: u64,
    /// Ids of batches ready or in flight.
    outstanding: BTreeSet<u64>,
    in_flight: FuturesUnordered<JoinHandle<Finished>>,
    /// Each waits for every batch up to its id.
    flush_waiters: Vec<(u64, oneshot::Sender<()>)>,
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
        let mut stop_signal = self.stop_signal.clone();
        let mut deadline: Option<Instant> = None;
        loop {
            self.dispatch();
            self.release_flush_waiters();
            if self.draining && self.outstanding.is_empty() {
                break;
            }
            let intake = self.intake.clone();
            tokio::select! {
                Some(done) = self.in_flight.next() => self.complete(done).await,
                () = intake.wake.notified(), if !self.draining => self.take(false),
                _ = tick.tick(), if !self.draining => self.take(true),
                Ok(()) = stop_signal.changed(), if !self.draining => {
                    deadline = stop_signal.borrow().flatten();
                    self.draining = true;
                    // Waiting callers get their items back at once.
                    self.intake.room.close();
                    self.take(true);
                }
                () = sleep_until(deadline), if deadline.is_some() && !*self.cancel_signal.borrow() => {
                    self.abandon_everything().await;
                }
            }
        }
        self.report.delivered = self.intake.counters.delivered.load(Relaxed);
        self.report
    }

    /// Takes whole batches from the lanes, or everything when `all` (the
    /// interval passed, a flush asked, or intake is closing).
    fn take(&mut self, all: bool) {
        let max = self.intake.max_batch_size;
        let mut lanes = self.intake.lock();
        let waiters = std::mem::take(&mut lanes.flush_waiters);
        let all = all || !waiters.is_empty() || self.draining;
        lanes.closed |= self.draining;
        let events = take_lane(&mut lanes.events, max, all);
        let profiles = take_lane(&mut lanes.profiles, max, all);
        let devices = take_lane(&mut lanes.devices, max, all);
        drop(lanes);
        // Split outside the lock, so callers wait only for the moves above.
        let mut batches = Vec::new();
        split_into_batches(events, max, &mut batches);
        split_into_batches(profiles, max, &mut batches);
        split_into_batches(devices, max, &mut batches);
        for batch in batches {
            let id = self.next_id;
            self.next_id += 1;
            self.outstanding.insert(id);
            self.ready.push_back((id, batch));
        }
        // Everything queued before the flush now has an id at most this.
        let last = self.next_id.wrapping_sub(1);
        self.flush_waiters
            .extend(waiters.into_iter().map(|waiter| (last, waiter)));
    }

    /// Sends ready batches while request slots are free.
    fn dispatch(&mut self) {
        if *self.cancel_signal.borrow() {
            return;
        }
        while self.in_flight.len() < self.max_in_flight {
            let Some((id, batch)) = self.ready.pop_front() else {
                return;
            };
            let count = batch.len();
            let counters = &self.intake.counters;
            counters.queued.fetch_sub(count as u64, Relaxed);
            counters.in_flight.fetch_add(count as u64, Relaxed);
            let client = self.client.clone();
            let cancel = Cancel::new(self.cancel_signal.clone());
            self.in_flight.push(tokio::spawn(async move {
                let outcome = match batch {
                    Batch::Events(items) => client
                        .send_request(items, cancel)
                        .await
                        .map_err(Undelivered::Events),
                    Batch::Profiles(items) => client
                        .send_request(items, cancel)
                        .await
                        .map_err(Undelivered::Profiles),
                    Batch::Devices(items) => client
                        .send_request(items, cancel)
                        .await
                        .map_err(Undelivered::Devices),
                };
                (id, outcome, count)
            }));
        }
    }

    fn release_flush_waiters(&mut self) {
        let oldest = self.outstanding.first().copied();
        self.flush_waiters
            .retain_mut(|(last, _)| oldest.is_some_and(|oldest| oldest <= *last));
        // `retain_mut` dropped the satisfied waiters' senders, which wakes
        // them: a dropped sender ends `flush`'s wait just as a sent value.
    }

    async fn complete(&mut self, done: Done) {
        let (id, result, count) = match done {
            Ok(done) => done,
            // A panic in a request task is a bug; surface it.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        self.outstanding.remove(&id);
        self.intake.room.add_permits(count);
        let counters = &self.intake.counters;
        counters.in_flight.fetch_sub(count as u64, Relaxed);
        match result {
            Ok(sent) => {
                counters.delivered.fetch_add(count as u64, Relaxed);
                counters
                    .retried
                    .fetch_add(u64::from(sent.attempts.saturating_sub(1)), Relaxed);
            }
            Err(undelivered) => {
                counters
                    .retried
                    .fetch_add(u64::from(undelivered.attempts().saturating_sub(1)), Relaxed);
                self.fail(undelivered).await;
            }
        }
    }

    /// Hands undelivered items to the dead-letter file and to the caller.
    async fn fail(&mut self, undelivered: Undelivered) {
        self.intake
            .counters
            .failed
            .fetch_add(undelivered.len() as u64, Relaxed);
        if let Some(dead_letter) = &mut self.dead_letter {
            dead_letter.append(&undelivered).await;
        }
        match &self.on_failure {
            Some(callback) if !self.draining => callback(undelivered),
            _ => self.report.undelivered.push(undelivered),
        }
    }

    /// The deadline passed: cancel requests in flight (they come back
    /// through `complete`) and report every batch not yet sent.
    async fn abandon_everything(&mut self) {
        self.report.deadline_passed = true;
        self.cancel.send_replace(true);
        self.take(true);
        while let Some((id, batch)) = self.ready.pop_front() {
            let count = batch.len();
            tracing::warn!(
                items = count,
                "marketap shutdown deadline passed; items not sent"
            );
            self.outstanding.remove(&id);
            self.intake.counters.queued.fetch_sub(count as u64, Relaxed);
            self.fail(batch.abandon()).await;
        }
    }
}

/// `items` in request-sized batches of at most `max`, appended to `out`.
fn split_into_batches<T: Queued>(items: Option<Vec<T>>, max: usize, out: &mut Vec<Batch>) {
    let Some(mut items) = items else { return };
    while items.len() > max {
        let rest = items.split_off(max);
        out.push(T::batch(items));
        items = rest;
    }
    if !items.is_empty() {
        out.push(T::batch(items));
    }
}

/// Whole batches from `lane` (everything, when `all`), or `None`.
fn take_lane<T>(lane: &mut Vec<T>, max: usize, all: bool) -> Option<Vec<T>> {
    let take = if all {
        lane.len()
    } else {
        lane.len() - lane.len() % max
    };
    match take {
        0 => None,
        n if n == lane.len() => Some(std::mem::replace(lane, Vec::with_capacity(max))),
        n => Some(lane.drain(..n).collect()),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
