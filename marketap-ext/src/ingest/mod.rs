//! Background ingestion for web services: [`Ingestor`] takes items into a
//! bounded in-memory queue without touching the network, and sends them in
//! batches through the same delivery engine as the batch calls.
//!
//! - [`intake`]: the queue, its capacity and its closing.
//! - [`worker`]: the background task that takes batches and starts their
//!   requests, and the state the ingestor's parts share.
//! - [`report`]: where failed items go ([`on_failure`](IngestorConfig::with_on_failure),
//!   a report, the dead-letter file, or the error log) and the metrics.
//! - [`letters`]: the thread that writes the dead-letter file, so no
//!   runtime worker ever waits for the disk.
//! - [`batch`]: a request's worth of one kind, behind a trait object.
//! - [`shared`]: what those parts share.
//! - [`spooled`]: with a spool, the write before `track` returns, the pump
//!   that reads the spool back into the intake, and the outcomes that
//!   leave it (delivered, or finally failed) or stay in it (failing for
//!   now).
//!
//! Nothing is dropped silently. A full queue makes [`Ingestor::track`] wait
//! (backpressure) and [`Ingestor::try_track`] hand the item back; see
//! [`report`] for where failures go.

mod batch;
mod intake;
mod letters;
mod report;
mod shared;
#[cfg(test)]
mod slow_disk;
mod spooled;
mod worker;

use std::{
    fmt,
    path::PathBuf,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use tokio::{
    sync::{Notify, oneshot},
    time::Instant,
};
use tokio_util::task::TaskTracker;

pub use intake::EnqueueError;
pub use report::{FailureCallback, Metrics, ShutdownReport};

use self::{
    intake::Intake,
    report::{Counters, Failures},
    shared::{Shared, SpoolLane},
};
use crate::{
    config::Connection,
    dead_letter::Writer,
    delivery::Delivery,
    delivery::cancel::{Cancel, Phase},
    error::ConfigError,
    model::item::{Device, Event, UserProfile},
    model::kind::{Item, Undelivered},
    spool::{Spool, SpoolConfig},
};

const MAX_CAPACITY: usize = 10_000_000;

/// Settings of an [`Ingestor`]. Batch size and concurrency come from the
/// client's [`BatchConfig`](crate::BatchConfig), retries from its
/// [`RetryConfig`](crate::RetryConfig).
///
/// ```
/// use std::time::Duration;
/// use marketap_ext::IngestorConfig;
///
/// let config = IngestorConfig::default()
///     .with_capacity(50_000)
///     .with_flush_interval(Duration::from_millis(500))
///     .with_dead_letter_path("marketap-dead-letters.ndjson");
/// assert_eq!(config.capacity(), 50_000);
/// ```
#[derive(Clone)]
pub struct IngestorConfig {
    capacity: usize,
    flush_interval: Duration,
    max_retained: usize,
    dead_letter_path: Option<PathBuf>,
    on_failure: Option<FailureCallback>,
    spool: Option<SpoolConfig>,
}

impl Default for IngestorConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            flush_interval: Duration::from_secs(2),
            max_retained: 10_000,
            dead_letter_path: None,
            on_failure: None,
            spool: None,
        }
    }
}

impl fmt::Debug for IngestorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestorConfig")
            .field("capacity", &self.capacity)
            .field("flush_interval", &self.flush_interval)
            .field("max_retained", &self.max_retained)
            .field("dead_letter_path", &self.dead_letter_path)
            .field("on_failure", &self.on_failure.as_ref().map(|_| "callback"))
            .field("spool", &self.spool)
            .finish()
    }
}

impl IngestorConfig {
    /// Items held at once, queued, in requests not yet finished, or
    /// waiting for their dead letters to be written, before `track` waits:
    /// 1 to 10,000,000. Default 10,000. This bounds the ingestor's memory
    /// whatever the server (or the disk) does.
    pub fn with_capacity(mut self, items: usize) -> Self {
        self.capacity = items;
        self
    }

    /// A partial batch is sent once it is this old: 1 ms to 1 hour.
    /// Default 2 s.
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Failed items kept for the next [`Ingestor::flush`] or
    /// [`Ingestor::shutdown`] when no `on_failure` is set: 0 to 10,000,000.
    /// Default 10,000. Past it, failures are counted as
    /// [`Metrics::unreported`] and logged (they are in the dead-letter
    /// file, when one is set), so memory stays bounded when every request
    /// fails.
    pub fn with_max_retained(mut self, items: usize) -> Self {
        self.max_retained = items;
        self
    }

    /// Appends every request that finally fails to this file, one per line,
    /// for a later run to resend (see [`crate::dead_letter`]). Default none.
    pub fn with_dead_letter_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.dead_letter_path = Some(path.into());
        self
    }

    /// Items held at once before `track` waits.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How old a partial batch gets before it is sent.
    pub fn flush_interval(&self) -> Duration {
        self.flush_interval
    }

    /// Failed items kept for the next report.
    pub fn max_retained(&self) -> usize {
        self.max_retained
    }

    /// The dead-letter file, if one is set.
    pub fn dead_letter_path(&self) -> Option<&std::path::Path> {
        self.dead_letter_path.as_deref()
    }

    /// Writes every item to a durable spool on disk before `track`
    /// returns, and delivers from it, so a killed process or a long outage
    /// loses nothing `track` said was taken. Default none: items wait in
    /// memory only.
    ///
    /// With a spool:
    /// - [`track`](Ingestor::track) returns `Ok` once the item is written
    ///   (what that survives is the [`SyncPolicy`](crate::spool::SyncPolicy)'s
    ///   to say); it waits while the spool holds
    ///   [`max_bytes`](SpoolConfig::with_max_bytes), and a write that fails
    ///   hands the item back in [`EnqueueError::Spool`].
    ///   [`try_track`](Ingestor::try_track) returns `Full` at the byte cap,
    ///   and does not wait for the disk: its write completes in the
    ///   background, and if it fails, the item goes where failures go.
    /// - An item leaves the spool once the server accepted it, or once it
    ///   finally failed and went where failures go (a 400, an item too
    ///   large alone, or failing for now past
    ///   [`max_age`](SpoolConfig::with_max_age), 7 days by default). A 429,
    ///   5xx, timeout, transport error or 401 keeps it in the spool, sent
    ///   again with a backoff of 1 s doubling to 60 s for as long as the
    ///   outage lasts; a 401 does not close intake.
    /// - Each item is serialised once: the JSON written to the spool is what
    ///   goes on the wire. While the queue has room the item also stays in
    ///   memory, so a spool that keeps up is written and never read.
    /// - Delivery is at least once: after a crash, the items in memory but
    ///   not yet acknowledged are sent again, at most
    ///   [`capacity`](Self::with_capacity) items.
    /// - Memory stays within `capacity` items however much the spool holds:
    ///   what does not fit is read back lazily. The disk holds at most
    ///   `max_bytes`.
    /// - [`shutdown`](Ingestor::shutdown) leaves what it could not deliver
    ///   in the spool ([`ShutdownReport::spooled`]), for the next ingestor
    ///   opened on it, not failed.
    /// - Opening happens in [`Marketap::ingestor`](crate::Marketap::ingestor),
    ///   which fails with [`ConfigError::Spool`] when another ingestor or
    ///   process holds the spool, when it is of a format version this one
    ///   cannot read, or when the disk refuses. Only those checks run on the
    ///   calling thread (a few bytes per file); the spool's own thread then
    ///   reads every record once, before it delivers any.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use marketap_ext::{Event, IngestorConfig, Marketap, spool::{SpoolConfig, SyncPolicy}};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = Marketap::from_env()?;
    /// let spool = SpoolConfig::new("/var/lib/my-service/marketap-spool")
    ///     .with_sync(SyncPolicy::Always);
    /// let ingestor = client.ingestor(IngestorConfig::default().with_spool(spool))?;
    ///
    /// // Ok means on disk: a kill -9 from here on loses nothing.
    /// ingestor.track(Event::builder("user-42", "mkt_login").build()?).await?;
    ///
    /// let report = ingestor.shutdown(Duration::from_secs(10)).await;
    /// println!("{} left in the spool for the next start", report.spooled);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_spool(mut self, spool: SpoolConfig) -> Self {
        self.spool = Some(spool);
        self
    }

    /// The spool, if one is set.
    pub fn spool(&self) -> Option<&SpoolConfig> {
        self.spool.as_ref()
    }

    /// Calls `callback` with every request that finally fails, for the
    /// ingestor's whole life, shutdown and drop included; reports then hold
    /// none. It runs on the ingestor's request tasks, possibly several at
    /// once: keep it quick (send into a channel of your own). A panic in it
    /// is caught and logged, and delivery goes on.
    pub fn with_on_failure(
        mut self,
        callback: impl Fn(Undelivered) + Send + Sync + 'static,
    ) -> Self {
        self.on_failure = Some(Arc::new(callback));
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(ConfigError::invalid(
                "ingestor.capacity",
                self.capacity,
                format!("must be 1 to {MAX_CAPACITY}"),
            ));
        }
        if self.max_retained > MAX_CAPACITY {
            return Err(ConfigError::invalid(
                "ingestor.max_retained",
                self.max_retained,
                format!("must be 0 to {MAX_CAPACITY}"),
            ));
        }
        if self.flush_interval < Duration::from_millis(1)
            || self.flush_interval > Duration::from_secs(3600)
        {
            return Err(ConfigError::invalid(
                "ingestor.flush_interval",
                format!("{:?}", self.flush_interval),
                "must be 1 ms to 1 hour",
            ));
        }
        if let Some(spool) = &self.spool {
            spool.validate()?;
        }
        Ok(())
    }
}

/// Sends events, profiles, devices and deletions in the background.
/// Enqueueing never touches the network. Clones share one queue.
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
    handle: Arc<Handle>,
}

/// Dropped with the last clone of an [`Ingestor`].
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let shared = &self.shared;
        if *shared.phase.borrow() == Phase::Running {
            let metrics = shared.counters.snapshot();
            tracing::warn!(
                queued = metrics.queued,
                in_flight = metrics.in_flight,
                "marketap Ingestor dropped without shutdown(): queued items are still sent in the background \
                 while the runtime runs, and failures go to on_failure (or the error log), but nothing waits \
                 for them; call shutdown(deadline) to be sure"
            );
            shared.phase.send_modify(|phase| *phase = phase.drain(None));
        }
        shared.failures.orphan();
    }
}

impl fmt::Debug for Ingestor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ingestor")
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

impl Ingestor {
    pub(crate) fn start(
        connection: Arc<Connection>,
        mut config: IngestorConfig,
    ) -> Result<Self, ConfigError> {
        let dead_letter = config.dead_letter_path.take().map(Writer::new);
        Self::launch(connection, config, dead_letter)
    }

    /// [`start`](Self::start) with the dead-letter writer given (a test's
    /// slow disk), not made from `dead_letter_path`.
    fn launch(
        connection: Arc<Connection>,
        config: IngestorConfig,
        dead_letter: Option<Writer>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        let spool = match &config.spool {
            Some(spool_config) => {
                let spool = Spool::open(spool_config, config.capacity as u64)
                    .map_err(ConfigError::Spool)?;
                Some(SpoolLane {
                    written: AtomicU64::new(0),
                    admitted: AtomicU64::new(0),
                    spool,
                    max_age: spool_config.max_age(),
                    flushes: Default::default(),
                    wake: Notify::new(),
                    runtime: runtime.clone(),
                })
            }
            None => None,
        };
        let batch = &connection.batch;
        let counters = Arc::new(Counters::default());
        let (phase, watching) = tokio::sync::watch::channel(Phase::Running);
        let mut delivery = Delivery::new(connection.clone(), Cancel::new(watching));
        if spool.is_some() {
            delivery = delivery.without_401_stop();
        }
        let shared = Arc::new(Shared {
            intake: Intake::new(config.capacity, batch.max_batch_size(), counters.clone()),
            failures: Failures::new(
                counters.clone(),
                config.on_failure,
                dead_letter,
                config.max_retained,
            ),
            counters,
            delivery,
            phase,
            tasks: TaskTracker::new(),
            flush_interval: config.flush_interval,
            spool,
        });
        worker::start(&shared, &runtime);
        if shared.spool.is_some() {
            spooled::start_pump(&shared, &runtime);
        }
        Ok(Self {
            handle: Arc::new(Handle { shared }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Ends once the worker and every request task have: after
    /// [`shutdown`](Self::shutdown), or after the last clone's drop and its
    /// drain. The blocking client's runtime thread waits for it.
    #[cfg(any(feature = "blocking", doc))]
    pub(crate) fn finished(&self) -> impl Future<Output = ()> + Send + 'static {
        let tasks = self.shared().tasks.clone();
        async move { tasks.wait().await }
    }

    /// Queues an item of any kind. Waits only while the ingestor is at
    /// capacity (backpressure); hands the item back once it is shut down,
    /// or stopped after a 401.
    ///
    /// With a [spool](IngestorConfig::with_spool), returns `Ok` only once
    /// the item is written to it; waits while the spool is at its byte cap;
    /// hands the item back in [`EnqueueError::Spool`] if the write fails.
    pub async fn enqueue<T: Item>(&self, item: T) -> Result<(), EnqueueError<T>> {
        let shared = self.shared();
        if shared.spool.is_some() {
            return spooled::enqueue(shared, item).await;
        }
        shared.intake.enqueue(item).await
    }

    /// Queues an item of any kind, or hands it back at once if at capacity.
    ///
    /// With a [spool](IngestorConfig::with_spool), hands it back as `Full`
    /// when the spool is at its byte cap, and otherwise returns `Ok` at
    /// once, without waiting for the disk: the write completes in the
    /// background, and if it fails the item goes where failures go
    /// (`on_failure`, the report, the dead-letter file) with
    /// [`Error::Spool`](crate::Error::Spool). Use [`enqueue`](Self::enqueue)
    /// for the promise that `Ok` means written.
    pub fn try_enqueue<T: Item>(&self, item: T) -> Result<(), EnqueueError<T>> {
        let shared = &self.handle.shared;
        if shared.spool.is_some() {
            return spooled::try_enqueue(shared, item);
        }
        shared.intake.try_enqueue(item)
    }

    /// Queues an event; waits like [`enqueue`](Self::enqueue).
    pub async fn track(&self, event: Event) -> Result<(), EnqueueError<Event>> {
        self.enqueue(event).await
    }

    /// Queues an event, or hands it back at once if at capacity.
    pub fn try_track(&self, event: Event) -> Result<(), EnqueueError<Event>> {
        self.try_enqueue(event)
    }

    /// Queues a user-profile update; waits like [`enqueue`](Self::enqueue).
    pub async fn identify(&self, profile: UserProfile) -> Result<(), EnqueueError<UserProfile>> {
        self.enqueue(profile).await
    }

    /// Queues a user-profile update, or hands it back at once if at capacity.
    pub fn try_identify(&self, profile: UserProfile) -> Result<(), EnqueueError<UserProfile>> {
        self.try_enqueue(profile)
    }

    /// Queues a device registration; waits like [`enqueue`](Self::enqueue).
    pub async fn register_device(&self, device: Device) -> Result<(), EnqueueError<Device>> {
        self.enqueue(device).await
    }

    /// Queues a device registration, or hands it back at once if at capacity.
    pub fn try_register_device(&self, device: Device) -> Result<(), EnqueueError<Device>> {
        self.try_enqueue(device)
    }

    /// Sends everything queued before the call and returns once it has been
    /// delivered or has failed, with the dead-letter file synced to disk.
    /// Returns the undelivered items kept so far (none when `on_failure` is
    /// set), which a later report will then not hold. After shutdown began
    /// it returns at once.
    ///
    /// With a [spool](IngestorConfig::with_spool), it returns once
    /// everything written before the call (what the spool held when it was
    /// opened included) has been delivered, has finally failed, or waits
    /// in the spool for a retry after a failure for now (while items wait
    /// for one, what has not been read back yet waits in the spool too).
    #[must_use = "the undelivered items are handed to you; they are not kept"]
    pub async fn flush(&self) -> Vec<Undelivered> {
        if self.shared().spool.is_some() {
            spooled::flush(self.shared()).await;
            self.shared().failures.sync_dead_letters().await;
            return self.shared().failures.take_kept();
        }
        let (done, waiter) = oneshot::channel();
        if self.shared().intake.flush(done).is_ok() {
            // A dropped sender (a worker that stopped) ends the wait too.
            let _ = waiter.await;
        }
        self.shared().failures.take_kept()
    }

    /// The counters now.
    pub fn metrics(&self) -> Metrics {
        let shared = self.shared();
        let delivery = &shared.delivery;
        let stats = delivery.stats().snapshot();
        let mut metrics = Metrics {
            concurrency_limit: delivery.concurrency_limit() as u64,
            send_interval: delivery
                .learned_rate()
                .map(|rate| Duration::from_secs_f64(1.0 / rate)),
            throttled: stats.throttled,
            throttle_wait: stats.throttle_wait,
            splits: stats.splits,
            isolated: stats.isolated,
            isolation_requests: stats.isolation_requests,
            paced: stats.paced,
            ..shared.counters.snapshot()
        };
        if let Some(lane) = &shared.spool {
            let spool = lane.spool.stats();
            metrics.spooled = spool.items;
            metrics.spooled_bytes = spool.bytes;
            metrics.spool_corrupted_ranges = spool.corrupted_ranges;
            metrics.spool_corrupted_bytes = spool.corrupted_bytes;
        }
        metrics
    }

    /// Stops intake, sends everything still queued, and returns within
    /// `deadline` (plus the moment it takes to hand items back) with a
    /// report. At the deadline, requests not yet started are not sent and
    /// those in flight are abandoned: their items fail with
    /// [`Error::Cancelled`](crate::Error::Cancelled) (`attempts` says
    /// whether they went on the wire). `Duration::MAX` means no deadline.
    ///
    /// With a spool, everything tracked before the call is read back and
    /// sent first, unless an outage is on; what is not delivered by the
    /// deadline (abandoned requests included) stays in the spool, counted
    /// in [`ShutdownReport::spooled`], not failed.
    ///
    /// Never panics. If the caller stops waiting (a timeout of its own),
    /// the ingestor goes on draining, and a later `shutdown`, which may
    /// shorten the deadline, still gets every undelivered item.
    ///
    /// With a [spool](IngestorConfig::with_spool), it stops reading the
    /// spool and sends what was read back; items waiting for a retry get
    /// one more try. What is not delivered by the deadline, or still fails
    /// for now, stays in the spool, neither failed nor lost:
    /// [`ShutdownReport::spooled`] counts it, and the next ingestor opened
    /// on the spool delivers it. Then the spool is closed.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let shared = self.shared();
        let deadline = Instant::now().checked_add(deadline);
        if shared.spool.is_some() {
            // What was tracked before shutdown is read out of the spool and
            // sent first, within the deadline, unless an outage is on (then
            // it stays in the spool for the next opening).
            let flushed = spooled::flush(shared);
            match deadline {
                Some(deadline) => {
                    let _ = tokio::time::timeout_at(deadline, flushed).await;
                }
                None => flushed.await,
            }
        }
        shared
            .phase
            .send_modify(|phase| *phase = phase.drain(deadline));
        shared.tasks.wait().await;
        shared.failures.sync_dead_letters().await;
        let mut report = shared.failures.report();
        if let Some(lane) = &shared.spool {
            lane.spool.close().await;
            report.spooled = lane.spool.stats().items;
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(change: impl FnOnce(&mut IngestorConfig)) -> IngestorConfig {
        let mut config = IngestorConfig::default();
        change(&mut config);
        config
    }

    #[test]
    fn settings_are_checked_at_their_bounds() {
        let valid = [
            config(|c| c.capacity = 1),
            config(|c| c.capacity = MAX_CAPACITY),
            config(|c| c.max_retained = 0),
            config(|c| c.max_retained = MAX_CAPACITY),
            config(|c| c.flush_interval = Duration::from_millis(1)),
            config(|c| c.flush_interval = Duration::from_secs(3600)),
        ];
        for config in valid {
            assert!(config.validate().is_ok(), "{config:?}");
        }
        let invalid = [
            ("ingestor.capacity", config(|c| c.capacity = 0)),
            (
                "ingestor.capacity",
                config(|c| c.capacity = MAX_CAPACITY + 1),
            ),
            (
                "ingestor.max_retained",
                config(|c| c.max_retained = MAX_CAPACITY + 1),
            ),
            (
                "ingestor.flush_interval",
                config(|c| c.flush_interval = Duration::from_micros(999)),
            ),
            (
                "ingestor.flush_interval",
                config(|c| c.flush_interval = Duration::from_secs(3601)),
            ),
        ];
        for (field, config) in invalid {
            let error = config.validate().unwrap_err();
            assert!(error.to_string().contains(field), "{error}");
        }
    }

    #[test]
    fn the_config_prints_its_settings_not_the_callback() {
        let config = IngestorConfig::default()
            .with_capacity(123)
            .with_on_failure(|_| {});
        let printed = format!("{config:?}");
        for part in [
            "capacity: 123",
            "max_retained: 10000",
            "flush_interval: 2s",
            "Some(\"callback\")",
        ] {
            assert!(printed.contains(part), "{printed}");
        }
    }
}
