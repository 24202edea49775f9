//! Adapting to limits the API does not publish.
//!
//! - [`Concurrency`], per delivery run: how many requests may be in flight.
//!   It starts at one and grows by one per success (a slow start, as TCP
//!   does), then adds one per window of successes up to `max_in_flight`
//!   (additive increase); a 429 or 503 halves it, never below one
//!   (multiplicative decrease), once per window however many requests of
//!   that window were refused. The limit that was refused becomes a
//!   ceiling, probed again only after a long run of successes, so a server
//!   that allows three requests at once is not hit with a fourth every few
//!   requests.
//! - [`Throttle`], per client: a `Retry-After` pauses every request to that
//!   operation (not only the one that got it), an optional rate cap in
//!   requests and items per second, and the request size a 413 taught.
//! - [`Stats`]: what throttling cost, for reports and metrics.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use governor::{
    DefaultDirectRateLimiter, InsufficientCapacity, Quota, RateLimiter, clock::Clock as _,
};
use tokio::{sync::Notify, time::Instant};

use crate::{cancel::Cancel, kind::Operation};

/// An optional cap on how fast the client sends, across all its batch calls
/// and ingestors. Off by default: the client adapts to 429s and 503s on its
/// own; set a cap when you know the server's limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, at most. Default none.
    pub max_requests_per_second: Option<NonZeroU32>,
    /// Items per second, at most. Default none.
    pub max_items_per_second: Option<NonZeroU32>,
}

/// After a refusal, successes in a row before the limit may probe above
/// the ceiling again, in windows (one window = `limit` successes).
const PROBE_AFTER_WINDOWS: usize = 10;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many requests of one run may be in flight; see the module docs.
#[derive(Debug)]
pub(crate) struct Concurrency {
    window: Mutex<Window>,
    /// Signalled when a slot is freed or the limit grows.
    changed: Notify,
}

#[derive(Debug)]
struct Window {
    limit: usize,
    max: usize,
    in_flight: usize,
    slow_start: bool,
    /// The highest limit not yet refused since the last refusal.
    ceiling: usize,
    /// Successes since the limit last changed.
    successes: usize,
    /// Successes in a row at the ceiling, to probe above it.
    at_ceiling: usize,
    /// Bumped on each decrease: refusals of requests started before it do
    /// not decrease the limit again.
    epoch: u64,
}

/// The right to have one request in flight, until dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    concurrency: Arc<Concurrency>,
    epoch: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.concurrency.window).in_flight -= 1;
        self.concurrency.changed.notify_waiters();
    }
}

impl Concurrency {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        let max = max.max(1);
        Arc::new(Self {
            window: Mutex::new(Window {
                limit: 1,
                max,
                in_flight: 0,
                slow_start: true,
                ceiling: max,
                successes: 0,
                at_ceiling: 0,
                epoch: 0,
            }),
            changed: Notify::new(),
        })
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        lock(&self.window).limit
    }

    /// Waits until a request may start.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Slot {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut window = lock(&self.window);
                if window.in_flight < window.limit {
                    window.in_flight += 1;
                    return Slot {
                        concurrency: self.clone(),
                        epoch: window.epoch,
                    };
                }
            }
            changed.await;
        }
    }

    /// A request in `slot` was accepted.
    pub(crate) fn succeeded(&self, _slot: &Slot) {
        let mut window = lock(&self.window);
        let grew = window.grow();
        drop(window);
        if grew {
            self.changed.notify_waiters();
        }
    }

    /// A request in `slot` was throttled (429 or 503).
    pub(crate) fn throttled(&self, slot: &Slot) {
        let mut window = lock(&self.window);
        if slot.epoch != window.epoch {
            // Started before the last decrease: already accounted for.
            return;
        }
        let refused = window.limit;
        window.limit = (refused / 2).max(1);
        window.ceiling = refused.saturating_sub(1).max(1);
        window.slow_start = false;
        window.successes = 0;
        window.at_ceiling = 0;
        window.epoch += 1;
        tracing::debug!(
            from = refused,
            to = window.limit,
            "marketap: throttled; fewer requests in flight"
        );
    }
}

impl Window {
    /// Counts a success; whether the limit grew.
    fn grow(&mut self) -> bool {
        self.successes += 1;
        if self.limit >= self.max {
            return false;
        }
        let next = if self.slow_start {
            self.limit + 1
        } else if self.successes < self.limit {
            return false;
        } else if self.limit < self.ceiling {
            self.limit + 1
        } else {
            self.at_ceiling += 1;
            if self.at_ceiling < PROBE_AFTER_WINDOWS {
                self.successes = 0;
                return false;
            }
            self.ceiling = self.limit + 1;
            self.limit + 1
        };
        if self.slow_start && next > self.ceiling {
            self.slow_start = false;
            return false;
        }
        self.limit = next.min(self.max);
        self.successes = 0;
        self.at_ceiling = 0;
        tracing::trace!(limit = self.limit, "marketap: more requests in flight");
        true
    }
}

/// What throttling cost a run.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Responses 429 and 503.
    pub throttled: AtomicU64,
    /// Time requests spent waiting on throttling, in microseconds.
    pub waited_micros: AtomicU64,
    /// Requests split in two after a 413.
    pub splits: AtomicU64,
}

impl Stats {
    pub(crate) fn waited(&self, wait: Duration) {
        self.waited_micros
            .fetch_add(u64::try_from(wait.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }
}

/// A client's view of the server's limits: pauses asked for with
/// `Retry-After`, an optional rate cap, and request sizes learned from 413s.
#[derive(Debug)]
pub(crate) struct Throttle {
    paused_until: Mutex<HashMap<Operation, Instant>>,
    requests: Option<DefaultDirectRateLimiter>,
    items: Option<DefaultDirectRateLimiter>,
    /// Per operation, the largest body to send, once a 413 said less.
    learned_bytes: Mutex<HashMap<Operation, usize>>,
}

impl Throttle {
    pub(crate) fn new(rate: RateLimit) -> Self {
        let limiter = |per_second: Option<NonZeroU32>| {
            per_second.map(|n| RateLimiter::direct(Quota::per_second(n)))
        };
        Self {
            paused_until: Mutex::default(),
            requests: limiter(rate.max_requests_per_second),
            items: limiter(rate.max_items_per_second),
            learned_bytes: Mutex::default(),
        }
    }

    /// The server asked every request to `operation` to wait `wait`.
    pub(crate) fn pause(&self, operation: Operation, wait: Duration) {
        let Some(until) = Instant::now().checked_add(wait) else {
            return;
        };
        let mut paused = lock(&self.paused_until);
        let slot = paused.entry(operation).or_insert(until);
        if *slot < until {
            *slot = until;
        }
        tracing::info!(
            operation = operation.as_str(),
            ?wait,
            "marketap: the server asked to wait; every request to this operation waits"
        );
    }

    /// Waits for a pause of `operation` to end and for the rate cap to let
    /// one request of `items` through. `false` if `cancel` fired first.
    pub(crate) async fn wait_turn(
        &self,
        operation: Operation,
        items: usize,
        cancel: &mut Cancel,
        stats: &Stats,
    ) -> bool {
        let started = Instant::now();
        loop {
            let until = self.next_turn(operation, items);
            let Some(until) = until.filter(|until| *until > Instant::now()) else {
                break;
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep_until(until) => {}
            }
        }
        let waited = started.elapsed();
        if !waited.is_zero() {
            stats.waited(waited);
        }
        true
    }

    /// When the next attempt may start, if not now. A rate cap's cell is
    /// taken when this returns `None`.
    fn next_turn(&self, operation: Operation, items: usize) -> Option<Instant> {
        if let Some(until) = lock(&self.paused_until).get(&operation).copied()
            && until > Instant::now()
        {
            return Some(until);
        }
        let now = Instant::now();
        let later = |limiter: &DefaultDirectRateLimiter, n: usize| {
            let n =
                NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
            let outcome = match limiter.check_n(n) {
                Ok(outcome) => outcome,
                // More items than a second allows: wait for a full bucket
                // rather than forever.
                Err(InsufficientCapacity(burst)) => limiter
                    .check_n(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
                    .unwrap_or(Ok(())),
            };
            outcome
                .err()
                .map(|not_until| now + not_until.wait_time_from(limiter.clock().now()))
        };
        if let Some(limiter) = &self.requests
            && let Some(until) = later(limiter, 1)
        {
            return Some(until);
        }
        if let Some(limiter) = &self.items
            && let Some(until) = later(limiter, items)
        {
            return Some(until);
        }
        None
    }

    /// The largest body to send to `operation`, given the configured cap.
    pub(crate) fn max_bytes(&self, operation: Operation, configured: usize) -> usize {
        lock(&self.learned_bytes)
            .get(&operation)
            .map_or(configured, |learned| configured.min(*learned))
    }

    /// A 413 refused a body of `bytes`: later requests stay at half of it.
    pub(crate) fn refused_size(&self, operation: Operation, bytes: usize) {
        let half = (bytes / 2).max(1);
        let mut learned = lock(&self.learned_bytes);
        let cap = learned.entry(operation).or_insert(half);
        *cap = (*cap).min(half);
        tracing::info!(
            operation = operation.as_str(),
            refused = bytes,
            cap = *cap,
            "marketap: the server refused a request as too large (413); later requests are cut smaller"
        );
    }
}
