//! Where the ingestor's failed items go, and what its reports hold.
//!
//! Every failed request is queued for the dead-letter file when one is
//! set (written on a thread of its own, see [`letters`](super::letters)),
//! and handed to `on_failure` when one is set; otherwise it is kept for
//! the next [`flush`](super::Ingestor::flush) or
//! [`shutdown`](super::Ingestor::shutdown), up to `max_retained` items.
//! Both return only once the letters of what they waited for are written
//! and synced. What nobody can take (past that bound, after the last
//! handle is dropped, or given to an `on_failure` that panicked) is counted
//! as [`Metrics::unreported`] and logged once its letter is written:
//! at warning level when it is in the file, at error level when it is not.
//! Never gone without a trace. [`Counters`] are the ingestor's metrics.

use std::{
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
};

use tokio::sync::oneshot;

use super::letters::Letters;
use crate::{
    dead_letter::{DeadLetter, Writer},
    delivery::panic_message,
    error::Error,
    lock::lock,
    model::kind::Undelivered,
};

/// A callback for undelivered items.
pub type FailureCallback = Arc<dyn Fn(Undelivered) + Send + Sync>;

/// Counters of an [`Ingestor`](super::Ingestor), in items (retries in
/// requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Enqueued, not yet in a request.
    pub queued: u64,
    /// In requests that have not finished.
    pub in_flight: u64,
    /// Accepted by the server.
    pub delivered: u64,
    /// Requests sent again after a failure.
    pub retried: u64,
    /// Finally not delivered (handed back, kept, or unreported).
    pub failed: u64,
    /// Failed items kept now for the next `flush` or `shutdown`.
    pub retained: u64,
    /// Failed items no report or callback could take: past
    /// `max_retained`, after the last handle was dropped, or given to an
    /// `on_failure` that panicked. They are in the dead-letter file when
    /// one is set, and logged at error level.
    pub unreported: u64,
    /// Requests that may be in flight now: lower while the server
    /// throttles, up to `max_in_flight`.
    pub concurrency_limit: u64,
    /// The time between request starts the client learned from 429s and
    /// 503s (the slowest, if several operations were throttled); `None`
    /// until a throttle taught one, when starts are not paced at all. See
    /// [`send_rate`](Self::send_rate) and
    /// [`BatchReport::learned_rate`](crate::BatchReport::learned_rate).
    pub send_interval: Option<std::time::Duration>,
    /// Responses that throttled (429 and 503).
    pub throttled: u64,
    /// Time requests spent waiting because of throttling (and the rate
    /// cap, if set), summed over requests.
    pub throttle_wait: std::time::Duration,
    /// Requests split in two because the server refused them as too large
    /// (413), or as invalid (400) to isolate the refused items.
    pub splits: u64,
    /// Items the server refused on their own (400) once isolated.
    pub isolated: u64,
    /// Requests sent to isolate the items a 400 refused (two a split).
    pub isolation_requests: u64,
    /// The part of [`throttle_wait`](Self::throttle_wait) spent waiting
    /// for the learned send rate, summed over requests.
    pub paced: std::time::Duration,
    /// With a spool: items in it not yet delivered or finally failed,
    /// those read back into memory (queued, in flight, waiting for a
    /// retry) included. What the spool held when the ingestor started
    /// counts once the spool's own thread has checked it, moments later
    /// (a large spool is read whole once, off the runtime's workers).
    pub spooled: u64,
    /// With a spool: their bytes on disk, framing included.
    pub spooled_bytes: u64,
    /// With a spool: items in memory that failed for now (429, 5xx, a
    /// timeout, a transport error, a 401) and wait to be sent again.
    pub spool_waiting: u64,
    /// With a spool: requests sent again after such a failure, beyond the
    /// retries of [`RetryConfig`](crate::RetryConfig).
    pub spool_retries: u64,
    /// With a spool: requests answered 401 whose items stay in the spool
    /// to be sent again (the key or project is wrong until someone fixes
    /// it and restarts; nothing is lost meanwhile).
    pub spool_unauthorized: u64,
    /// With a spool: items it could not write (each caller got
    /// [`EnqueueError::Spool`](super::EnqueueError::Spool), or, after
    /// `try_track`, the item went where failures go).
    pub spool_write_errors: u64,
    /// With a spool: damaged regions found in its files (logged at error
    /// level with their byte ranges; their records are lost, every good
    /// record around them is kept).
    pub spool_corrupted_ranges: u64,
    /// With a spool: the bytes of those regions.
    pub spool_corrupted_bytes: u64,
}

impl Metrics {
    /// The learned send rate in requests per second: `1 / send_interval`.
    pub fn send_rate(&self) -> Option<f64> {
        self.send_interval
            .filter(|interval| !interval.is_zero())
            .map(|interval| 1.0 / interval.as_secs_f64())
    }
}

/// The live counters behind [`Metrics`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    queued: AtomicU64,
    in_flight: AtomicU64,
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    retained: AtomicU64,
    unreported: AtomicU64,
    spool_waiting: AtomicU64,
    spool_retries: AtomicU64,
    spool_write_errors: AtomicU64,
    pub(super) spool_unauthorized: AtomicU64,
}

impl Counters {
    pub(super) fn enqueued(&self, items: usize) {
        self.queued.fetch_add(items as u64, Relaxed);
    }

    /// A request of `items` got its slot.
    pub(super) fn started(&self, items: usize) {
        self.queued.fetch_sub(items as u64, Relaxed);
        self.in_flight.fetch_add(items as u64, Relaxed);
    }

    /// A request of `items` ended; `started` if it had got its slot,
    /// `delivered` if the server accepted it, after `attempts` attempts.
    pub(super) fn finished(&self, items: usize, started: bool, delivered: bool, attempts: u32) {
        let was = if started {
            &self.in_flight
        } else {
            &self.queued
        };
        was.fetch_sub(items as u64, Relaxed);
        if delivered {
            self.delivered.fetch_add(items as u64, Relaxed);
        }
        self.retried
            .fetch_add(u64::from(attempts.saturating_sub(1)), Relaxed);
    }

    /// Items lost with a request task that ended abnormally, or records
    /// of the spool that could not be read back as items.
    pub(super) fn lost(&self, items: usize) {
        self.failed.fetch_add(items as u64, Relaxed);
        self.unreported.fetch_add(items as u64, Relaxed);
    }

    /// Spooled items that failed for now now wait for a retry.
    pub(super) fn parked(&self, items: usize) {
        self.spool_waiting.fetch_add(items as u64, Relaxed);
    }

    /// Spooled items waiting for a retry are sent again (`resent`), or
    /// left in the spool at shutdown.
    pub(super) fn unparked(&self, items: usize, resent: bool) {
        self.spool_waiting.fetch_sub(items as u64, Relaxed);
        if resent {
            self.in_flight.fetch_add(items as u64, Relaxed);
            self.spool_retries.fetch_add(1, Relaxed);
        }
    }

    /// Spooled items waiting for a retry now.
    pub(super) fn waiting(&self) -> u64 {
        self.spool_waiting.load(Relaxed)
    }

    /// An item the spool could not write.
    pub(super) fn write_error(&self) {
        self.spool_write_errors.fetch_add(1, Relaxed);
    }

    pub(super) fn snapshot(&self) -> Metrics {
        Metrics {
            queued: self.queued.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            retried: self.retried.load(Relaxed),
            failed: self.failed.load(Relaxed),
            retained: self.retained.load(Relaxed),
            unreported: self.unreported.load(Relaxed),
            spool_waiting: self.spool_waiting.load(Relaxed),
            spool_retries: self.spool_retries.load(Relaxed),
            spool_write_errors: self.spool_write_errors.load(Relaxed),
            spool_unauthorized: self.spool_unauthorized.load(Relaxed),
            ..Metrics::default()
        }
    }
}

/// What [`Ingestor::shutdown`](super::Ingestor::shutdown) did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Items accepted by the server over the ingestor's life.
    pub delivered: u64,
    /// Undelivered items kept for this report: every failure when no
    /// `on_failure` is set (none otherwise), up to `max_retained` items,
    /// less what an earlier `flush` took.
    pub undelivered: Vec<Undelivered>,
    /// Whether the deadline passed before everything was sent: some items
    /// failed with [`Error::Cancelled`].
    pub deadline_passed: bool,
    /// Failed items over the ingestor's life that no report or callback
    /// could take ([`Metrics::unreported`]).
    pub unreported: u64,
    /// With a spool: items left in it, not delivered and not failed (the
    /// deadline passed, or they were failing for now), for the next
    /// ingestor opened on it to deliver. They are not in
    /// [`undelivered`](Self::undelivered).
    pub spooled: u64,
}

impl ShutdownReport {
    /// How many items are in [`undelivered`](Self::undelivered).
    pub fn undelivered_items(&self) -> usize {
        self.undelivered.iter().map(Undelivered::len).sum()
    }
}

/// Failed items kept for a report.
#[derive(Default)]
struct Kept {
    batches: Vec<Undelivered>,
    items: usize,
}

/// Where failed requests go; see the module docs.
pub(super) struct Failures {
    counters: Arc<Counters>,
    on_failure: Option<FailureCallback>,
    dead_letter: Option<Letters>,
    kept: Mutex<Kept>,
    max_retained: usize,
    /// No handle is left, so nobody can take a report.
    orphaned: AtomicBool,
    deadline_passed: AtomicBool,
}

impl Failures {
    pub(super) fn new(
        counters: Arc<Counters>,
        on_failure: Option<FailureCallback>,
        dead_letter: Option<Writer>,
        max_retained: usize,
    ) -> Self {
        Self {
            counters,
            on_failure,
            dead_letter: dead_letter.map(Letters::start),
            kept: Mutex::default(),
            max_retained,
            orphaned: AtomicBool::new(false),
            deadline_passed: AtomicBool::new(false),
        }
    }

    fn kept(&self) -> MutexGuard<'_, Kept> {
        lock(&self.kept)
    }

    /// Hands one failed request over: to the dead-letter file, and to
    /// `on_failure` or a report, or else to the error log. Never waits for
    /// the disk: the letter is queued, and `held` (the room its items take
    /// in the ingestor) is dropped once it is written, or at once without
    /// a dead-letter file.
    pub(super) fn hand_over(&self, undelivered: Undelivered, held: impl Send + 'static) {
        let items = undelivered.len();
        self.counters.failed.fetch_add(items as u64, Relaxed);
        if matches!(undelivered.error(), Error::Cancelled) {
            self.deadline_passed.store(true, Relaxed);
        }
        // The letter is made before the items are given away.
        let letter = self
            .dead_letter
            .as_ref()
            .and_then(|letters| Some((letters, letter_of(&undelivered)?)));
        let unreported = self.give(undelivered);
        let Some((letters, letter)) = letter else {
            if let Some(why) = unreported {
                log_unreported(items, false, &why);
            }
            return;
        };
        let then = move |written| {
            if let Some(why) = unreported {
                log_unreported(items, written, &why);
            }
            drop(held);
        };
        letters.append(letter, items, Box::new(then));
    }

    /// Gives the items to `on_failure` or keeps them for a report; if
    /// neither can take them, counts them as unreported and says why.
    fn give(&self, undelivered: Undelivered) -> Option<String> {
        let items = undelivered.len();
        if let Some(callback) = &self.on_failure {
            // The callback's panic is a bug of its own; delivery goes on.
            let called = std::panic::catch_unwind(AssertUnwindSafe(|| callback(undelivered)));
            return called.err().map(|panic| {
                self.counters.unreported.fetch_add(items as u64, Relaxed);
                format!("on_failure panicked: {}", panic_message(&*panic))
            });
        }
        if !self.orphaned.load(Relaxed) {
            let mut kept = self.kept();
            if kept.items + items <= self.max_retained {
                kept.items += items;
                kept.batches.push(undelivered);
                self.counters.retained.fetch_add(items as u64, Relaxed);
                return None;
            }
        }
        let why = if self.orphaned.load(Relaxed) {
            "no handle is left to take a report"
        } else {
            "the report already holds max_retained items"
        };
        self.counters.unreported.fetch_add(items as u64, Relaxed);
        Some(format!("{why}; last error: {}", undelivered.error()))
    }

    /// Makes the dead-letter file durable up to every letter handed over
    /// so far, then wakes `waiters`: at once without a file. Never waits.
    pub(super) fn sync_then(&self, waiters: Vec<oneshot::Sender<()>>) {
        match &self.dead_letter {
            Some(letters) => letters.sync(waiters),
            None => drop(waiters),
        }
    }

    /// Waits, without blocking, until every letter handed over so far is
    /// written and synced.
    pub(super) async fn sync_dead_letters(&self) {
        if let Some(letters) = &self.dead_letter {
            letters.synced().await;
        }
    }

    /// Takes what is kept for a report.
    pub(super) fn take_kept(&self) -> Vec<Undelivered> {
        let kept = std::mem::take(&mut *self.kept());
        self.counters.retained.fetch_sub(kept.items as u64, Relaxed);
        kept.batches
    }

    /// The last handle is gone: what is kept can never be taken, so it is
    /// logged and counted now, and so is every later failure without a
    /// callback.
    pub(super) fn orphan(&self) {
        self.orphaned.store(true, Relaxed);
        for undelivered in self.take_kept() {
            // In the dead-letter file (or on its way), if one is set.
            let dead_lettered = self.dead_letter.is_some();
            self.counters
                .unreported
                .fetch_add(undelivered.len() as u64, Relaxed);
            log_unreported(
                undelivered.len(),
                dead_lettered,
                &format!(
                    "the ingestor was dropped without shutdown(); last error: {}",
                    undelivered.error()
                ),
            );
        }
    }

    /// The report, taking what is kept.
    pub(super) fn report(&self) -> ShutdownReport {
        let metrics = self.counters.snapshot();
        ShutdownReport {
            delivered: metrics.delivered,
            undelivered: self.take_kept(),
            deadline_passed: self.deadline_passed.load(Relaxed),
            unreported: metrics.unreported,
            spooled: 0,
        }
    }
}

/// The dead letter of `undelivered`, or none if it cannot be made (logged).
fn letter_of(undelivered: &Undelivered) -> Option<DeadLetter> {
    DeadLetter::new(undelivered)
        .inspect_err(|error| {
            tracing::error!(items = undelivered.len(), %error, "could not write the dead-letter file");
        })
        .ok()
}

/// Logs `items` failed items nobody can take, saying whether they are in
/// the dead-letter file.
fn log_unreported(items: usize, dead_lettered: bool, why: &str) {
    if dead_lettered {
        tracing::warn!(
            items,
            why,
            "marketap ingestor: failed items not reported to the caller; they are in the dead-letter file"
        );
    } else {
        tracing::error!(
            items,
            why,
            "marketap ingestor: failed items dropped: not reported to the caller and not in a dead-letter file"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, report::FailedBatch};

    fn failed(items: usize, error: Error) -> Undelivered {
        Undelivered::Events(FailedBatch {
            items: (0..items)
                .map(|i| Event::builder(format!("u{i}"), "e").build().unwrap())
                .collect(),
            error,
            attempts: 1,
        })
    }

    fn refused() -> Error {
        Error::BadRequest {
            code: Some(1),
            message: None,
            isolation_stopped: false,
        }
    }

    #[test]
    fn without_a_callback_failures_are_kept_up_to_the_bound_then_counted() {
        let counters = Arc::new(Counters::default());
        let failures = Failures::new(counters.clone(), None, None, 25);
        for _ in 0..4 {
            failures.hand_over(failed(10, refused()), ());
        }
        let metrics = counters.snapshot();
        assert_eq!(
            (metrics.failed, metrics.retained, metrics.unreported),
            (40, 20, 20)
        );
        let report = failures.report();
        assert_eq!(report.undelivered_items(), 20);
        assert_eq!(report.unreported, 20);
        assert!(!report.deadline_passed);
        assert_eq!(counters.snapshot().retained, 0);
        // Taken: room again.
        failures.hand_over(failed(10, Error::Cancelled), ());
        let report = failures.report();
        assert_eq!(report.undelivered_items(), 10);
        assert!(report.deadline_passed);
    }

    #[test]
    fn a_callback_gets_every_failure_and_its_panic_is_counted() {
        let counters = Arc::new(Counters::default());
        let calls = Arc::new(AtomicU64::new(0));
        let seen = calls.clone();
        let callback: FailureCallback = Arc::new(move |undelivered: Undelivered| {
            if seen.fetch_add(1, Relaxed) == 0 {
                panic!("a bug in the callback");
            }
            assert_eq!(undelivered.len(), 3);
        });
        let failures = Failures::new(counters.clone(), Some(callback), None, 100);
        for _ in 0..3 {
            failures.hand_over(failed(3, refused()), ());
        }
        assert_eq!(calls.load(Relaxed), 3);
        let metrics = counters.snapshot();
        assert_eq!(
            (metrics.failed, metrics.retained, metrics.unreported),
            (9, 0, 3)
        );
        assert!(failures.report().undelivered.is_empty());
    }

    #[test]
    fn once_orphaned_nothing_is_kept() {
        let counters = Arc::new(Counters::default());
        let failures = Failures::new(counters.clone(), None, None, 100);
        failures.hand_over(failed(5, refused()), ());
        failures.orphan();
        failures.hand_over(failed(5, refused()), ());
        let metrics = counters.snapshot();
        assert_eq!(
            (metrics.failed, metrics.retained, metrics.unreported),
            (10, 0, 10)
        );
    }

    #[test]
    fn lost_items_count_as_failed_and_unreported() {
        let counters = Counters::default();
        counters.lost(7);
        let metrics = counters.snapshot();
        assert_eq!((metrics.failed, metrics.unreported), (7, 7));
    }

    #[test]
    fn counters_move_items_from_queued_through_in_flight() {
        let counters = Counters::default();
        counters.enqueued(10);
        counters.started(4);
        counters.finished(4, true, true, 3);
        counters.finished(6, false, false, 0);
        let metrics = counters.snapshot();
        assert_eq!(
            (
                metrics.queued,
                metrics.in_flight,
                metrics.delivered,
                metrics.retried
            ),
            (0, 0, 4, 2)
        );
    }
}
