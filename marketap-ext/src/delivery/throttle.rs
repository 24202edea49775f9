//! Adapting to limits the API does not publish.
//!
//! - [`Concurrency`], per delivery run: how many requests may be in flight.
//!   It starts at one and grows by one per success (a slow start, as TCP
//!   does), then adds one per window of successes up to `max_in_flight`
//!   (additive increase), counting only successes that came after every
//!   slot was taken (a run that never fills its limit does not grow it);
//!   a 429 or 503 halves it, never below one
//!   (multiplicative decrease), once per window however many requests of
//!   that window were refused. The limit that was refused becomes a
//!   ceiling, probed again only after a long run of successes, so a server
//!   that allows three requests at once is not hit with a fourth every few
//!   requests; after a probe refused beyond the most requests ever
//!   accepted at once, the next waits the longest run
//!   ([`PROBE_AFTER_WINDOWS_MAX`]), as each costs a `Retry-After` pause.
//!   A 429 that came when more requests were on the wire than ever were
//!   accepted at once is *crowded*: the concurrency explains it, and it
//!   teaches the learned send rate nothing.
//! - [`Throttle`], per client: a `Retry-After` pauses every request to that
//!   operation (not only the one that got it), a send rate learned per
//!   operation from 429s and 503s ([`Pacer`]), an optional rate cap in
//!   requests and items per second, and the request size a 413 taught.
//! - [`Stats`]: what throttling cost, for reports and metrics.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use governor::{
    DefaultDirectRateLimiter, InsufficientCapacity, Quota, RateLimiter, clock::Clock as _,
};
use tokio::{sync::Notify, time::Instant};

use crate::{
    delivery::{cancel::Cancel, pacer::Pacer},
    error::ConfigError,
    lock::lock,
    model::kind::Operation,
};

/// An optional cap on how fast the client sends, across all its batch calls
/// and ingestors. Off by default: the client adapts to 429s and 503s on its
/// own; set a cap when you know the server's limit.
///
/// ```
/// use marketap_ext::{Config, RateLimit};
///
/// let config = Config::new("key", "project")
///     .with_rate_limit(RateLimit::default().with_max_requests_per_second(20));
/// assert_eq!(config.rate_limit().max_requests_per_second(), Some(20));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimit {
    max_requests_per_second: Option<u32>,
    max_items_per_second: Option<u32>,
}

impl RateLimit {
    /// Requests per second, at most: 1 or more. Default none. Requests are
    /// spaced evenly (`1 / per_second` apart), so no rolling second sees
    /// more: a cap a little under a gateway's window is never refused.
    pub fn with_max_requests_per_second(mut self, per_second: u32) -> Self {
        self.max_requests_per_second = Some(per_second);
        self
    }

    /// Items per second, at most: 1 or more. Default none. A second's
    /// worth of items may go at once, then they come at this rate (a token
    /// bucket one second deep).
    pub fn with_max_items_per_second(mut self, per_second: u32) -> Self {
        self.max_items_per_second = Some(per_second);
        self
    }

    /// Requests per second, at most, if capped.
    pub fn max_requests_per_second(&self) -> Option<u32> {
        self.max_requests_per_second
    }

    /// Items per second, at most, if capped.
    pub fn max_items_per_second(&self) -> Option<u32> {
        self.max_items_per_second
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (field, cap) in [
            (
                "rate_limit.max_requests_per_second",
                self.max_requests_per_second,
            ),
            ("rate_limit.max_items_per_second", self.max_items_per_second),
        ] {
            if cap == Some(0) {
                return Err(ConfigError::invalid(
                    field,
                    0,
                    "must be at least 1 (leave it unset for no cap)",
                ));
            }
        }
        Ok(())
    }
}

/// After a refusal, successes in a row before the limit may probe above
/// the ceiling again, in windows (one window = `limit` successes).
const PROBE_AFTER_WINDOWS: usize = 10;
/// Windows between probes once a probe was refused: at 3 in flight and 20
/// requests a second, 24 s, so that the second-long pauses refused probes
/// cost stay under 5% of the time (the limiter table measured about 8% at
/// 40 windows, one probe about 10 s after the first refusal).
const PROBE_AFTER_WINDOWS_MAX: usize = 160;
/// Acceptances with so many requests on the wire before the server is
/// known to hold that many, and how many times more acceptances than
/// refusals there must be at that level.
const HELD_AFTER: u32 = 4;
const HELD_RATIO: u32 = 4;

/// How many requests of one run may be in flight; see the module docs.
#[derive(Debug)]
pub(crate) struct Concurrency {
    window: Mutex<Window>,
    /// Signalled when a slot is freed or the limit grows.
    changed: Notify,
    /// Requests on the wire now (a slot is held while waiting for a turn
    /// too).
    on_wire: AtomicUsize,
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
    /// Windows at the ceiling before probing above it.
    probe_after: usize,
    /// The most requests on the wire at once that the server holds: see
    /// [`Window::holds`].
    held: usize,
    /// Acceptances and refusals per number of requests on the wire.
    accepted_at: Vec<u32>,
    refused_at: Vec<u32>,
    /// Bumped on each decrease: refusals of requests started before it do
    /// not decrease the limit again.
    epoch: u64,
    /// Whether every slot was taken at some moment since the limit last
    /// changed: only then does a success grow it.
    filled: bool,
}

/// The right to have one request in flight, until dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    concurrency: Arc<Concurrency>,
    epoch: u64,
    /// Requests on the wire when this slot's last attempt started, itself
    /// included.
    level: AtomicUsize,
}

/// An attempt on the wire, until dropped.
#[derive(Debug)]
pub(crate) struct OnWire<'a>(&'a Concurrency);

impl Drop for OnWire<'_> {
    fn drop(&mut self) {
        self.0.on_wire.fetch_sub(1, Relaxed);
    }
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
                probe_after: PROBE_AFTER_WINDOWS,
                held: 0,
                accepted_at: vec![0; max + 1],
                refused_at: vec![0; max + 1],
                epoch: 0,
                filled: false,
            }),
            changed: Notify::new(),
            on_wire: AtomicUsize::new(0),
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
                    window.filled |= window.in_flight == window.limit;
                    return Slot {
                        concurrency: self.clone(),
                        epoch: window.epoch,
                        level: AtomicUsize::new(0),
                    };
                }
            }
            changed.await;
        }
    }

    /// An attempt in `slot` goes on the wire, until the guard is dropped.
    pub(crate) fn enter(&self, slot: &Slot) -> OnWire<'_> {
        let level = self.on_wire.fetch_add(1, Relaxed) + 1;
        slot.level.store(level, Relaxed);
        OnWire(self)
    }

    /// A request in `slot` was accepted.
    pub(crate) fn succeeded(&self, slot: &Slot) {
        let level = slot.level.load(Relaxed);
        let mut window = lock(&self.window);
        let at = level.min(window.accepted_at.len() - 1);
        window.accepted_at[at] = window.accepted_at[at].saturating_add(1);
        if level > window.held && window.holds(level) {
            // More at once than ever before were accepted: a probe held.
            window.held = level;
            window.probe_after = PROBE_AFTER_WINDOWS;
        }
        if !window.filled {
            // The slots were never all taken since the limit last
            // changed, so this success says nothing of whether more at
            // once would be accepted: a quiet spell must not grow it for
            // the next burst (TCP keeps its window so, RFC 7661).
            return;
        }
        let grew = window.grow();
        drop(window);
        if grew {
            self.changed.notify_waiters();
        }
    }

    /// A request in `slot` was throttled (429 or 503). Whether it was
    /// crowded: on the wire with more requests than were ever accepted at
    /// once, so that the concurrency explains the refusal.
    pub(crate) fn throttled(&self, slot: &Slot) -> bool {
        let level = slot.level.load(Relaxed);
        let mut window = lock(&self.window);
        let crowded = !window.holds(level);
        let at = level.min(window.refused_at.len() - 1);
        window.refused_at[at] = window.refused_at[at].saturating_add(1);
        if slot.epoch != window.epoch {
            // Started before the last decrease: already accounted for.
            return crowded;
        }
        let refused = window.limit;
        if crowded && !window.slow_start {
            // A probe above the ceiling, refused: the ceiling is confirmed,
            // and each refused probe costs the pause the server asks for.
            window.probe_after = PROBE_AFTER_WINDOWS_MAX;
        }
        window.limit = (refused / 2).max(1);
        window.filled = window.in_flight >= window.limit;
        window.ceiling = refused.saturating_sub(1).max(1);
        window.slow_start = false;
        window.successes = 0;
        window.at_ceiling = 0;
        window.epoch += 1;
        tracing::debug!(
            from = refused,
            to = window.limit,
            crowded,
            "marketap: throttled; fewer requests in flight"
        );
        crowded
    }
}

impl Window {
    /// Whether the server holds `level` requests on the wire at once: it
    /// accepted [`HELD_AFTER`] of them, and [`HELD_RATIO`] times more than
    /// it refused. One lucky acceptance (the server had just finished a
    /// request the client had not heard back from yet) is not enough.
    fn holds(&self, level: usize) -> bool {
        let at = level.min(self.accepted_at.len() - 1);
        let accepted = self.accepted_at[at];
        accepted >= HELD_AFTER && accepted >= HELD_RATIO.saturating_mul(self.refused_at[at])
    }

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
            if self.at_ceiling < self.probe_after {
                self.successes = 0;
                return false;
            }
            // Probe one above; if it holds, it is the new ceiling.
            let probe = self.limit + 1;
            self.ceiling = probe;
            probe
        };
        if self.slow_start && next > self.ceiling {
            self.slow_start = false;
            return false;
        }
        self.limit = next.min(self.max);
        self.filled = self.in_flight >= self.limit;
        self.successes = 0;
        self.at_ceiling = 0;
        tracing::trace!(limit = self.limit, "marketap: more requests in flight");
        true
    }
}

/// What throttling, and the server's refusals, cost a run.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Responses 429 and 503.
    pub throttled: AtomicU64,
    /// Time requests spent waiting on throttling, in microseconds.
    waited_micros: AtomicU64,
    /// The part of it spent waiting for the learned send rate.
    paced_micros: AtomicU64,
    /// Requests split in two, after a 413 or to isolate a 400.
    pub splits: AtomicU64,
    /// Requests sent to isolate the items a 400 refused (two a split).
    pub isolation_requests: AtomicU64,
    /// Items the server refused on their own, once isolated.
    pub isolated: AtomicU64,
}

impl Stats {
    pub(crate) fn waited(&self, wait: Duration) {
        self.waited_micros
            .fetch_add(u64::try_from(wait.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    pub(crate) fn paced(&self, wait: Duration) {
        self.paced_micros
            .fetch_add(u64::try_from(wait.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> crate::report::DeliveryStats {
        crate::report::DeliveryStats {
            throttled: self.throttled.load(Relaxed),
            throttle_wait: self.total_wait(),
            paced: Duration::from_micros(self.paced_micros.load(Relaxed)),
            splits: self.splits.load(Relaxed),
            isolated: self.isolated.load(Relaxed),
            isolation_requests: self.isolation_requests.load(Relaxed),
        }
    }

    /// The time waited so far, summed over requests.
    pub(crate) fn total_wait(&self) -> Duration {
        Duration::from_micros(self.waited_micros.load(Relaxed))
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
    /// Per operation, the send rate learned from throttling.
    pacers: [Pacer; OPERATIONS],
}

/// How many operations there are, for [`pacer_index`].
const OPERATIONS: usize = 5;

/// Each operation's place among the pacers.
fn pacer_index(operation: Operation) -> usize {
    match operation {
        Operation::CollectBulkUserEvents => 0,
        Operation::UpdateBulkUserProfiles => 1,
        Operation::UpdateBulkDeviceProfiles => 2,
        Operation::RequestUserProfileDeletion => 3,
        Operation::RequestBulkUserProfileDeletion => 4,
    }
}

impl Throttle {
    /// The throttle for a checked `rate` (a cap of 0 is no cap).
    pub(crate) fn new(rate: &RateLimit) -> Self {
        // Requests are spaced evenly, so that no rolling second (a sliding
        // window's) sees more than the cap; items come a request's worth
        // at a time, so a second's worth may go at once.
        let requests = rate
            .max_requests_per_second
            .and_then(NonZeroU32::new)
            .map(|n| RateLimiter::direct(Quota::per_second(n).allow_burst(NonZeroU32::MIN)));
        let items = rate
            .max_items_per_second
            .and_then(NonZeroU32::new)
            .map(|n| RateLimiter::direct(Quota::per_second(n)));
        Self {
            paused_until: Mutex::default(),
            requests,
            items,
            learned_bytes: Mutex::default(),
            pacers: std::array::from_fn(|_| Pacer::new()),
        }
    }

    /// The lowest send rate learned (the rate the server was found to
    /// allow, a little under it), over the operations throttled so far.
    pub(crate) fn learned_rate(&self) -> Option<f64> {
        self.pacers
            .iter()
            .filter_map(Pacer::learned)
            .min_by(f64::total_cmp)
    }

    /// The send rate learned for `operation`.
    pub(crate) fn pacer(&self, operation: Operation) -> &Pacer {
        &self.pacers[pacer_index(operation)]
    }

    /// The server asked every request to `operation` to wait `wait`.
    pub(crate) fn pause(&self, operation: Operation, wait: Duration) {
        let Some(until) = Instant::now().checked_add(wait) else {
            return;
        };
        let mut paused = lock(&self.paused_until);
        let slot = paused.entry(operation).or_insert(until);
        *slot = (*slot).max(until);
        drop(paused);
        self.pacer(operation).paused_until(until);
        tracing::info!(
            operation = operation.as_str(),
            ?wait,
            "marketap: the server asked to wait; every request to this operation waits"
        );
    }

    /// Waits for a pause of `operation` to end, for the rate cap to let
    /// one request of `items` through, and for the learned send rate to
    /// allow one more start. The instant the attempt starts, recorded for
    /// the learned rate; `None` if `cancel` fired first.
    pub(crate) async fn wait_turn(
        &self,
        operation: Operation,
        items: usize,
        cancel: &mut Cancel,
        stats: &Stats,
    ) -> Option<Instant> {
        let started = Instant::now();
        let pacer = self.pacer(operation);
        let mut took_fresh_turn = false;
        loop {
            // A turn already past sleeps not at all; the next look decides.
            while let Some(until) = self.next_turn(operation, items) {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => return None,
                    () = tokio::time::sleep_until(until) => {}
                }
            }
            let Some(at) = pacer.reserve() else {
                break;
            };
            let paced_from = Instant::now();
            tokio::select! {
                biased;
                () = cancel.cancelled() => return None,
                () = tokio::time::sleep_until(at) => {}
            }
            stats.paced(paced_from.elapsed());
            // Woken well after its turn (the process stalled), with others
            // woken alike: once, take a fresh turn rather than go with them
            // as a burst.
            let late = Instant::now().saturating_duration_since(at) > pacer.interval();
            if late && !took_fresh_turn {
                took_fresh_turn = true;
                continue;
            }
            // A pause that began meanwhile holds this start too.
            if !self.is_paused(operation) {
                break;
            }
        }
        let now = Instant::now();
        let waited = now - started;
        if !waited.is_zero() {
            stats.waited(waited);
        }
        pacer.started(now);
        Some(now)
    }

    /// Whether `operation` is paused now.
    fn is_paused(&self, operation: Operation) -> bool {
        lock(&self.paused_until)
            .get(&operation)
            .is_some_and(|until| *until > Instant::now())
    }

    /// When the next attempt may start, if not now. A rate cap's cell is
    /// taken when this returns `None`.
    fn next_turn(&self, operation: Operation, items: usize) -> Option<Instant> {
        let now = Instant::now();
        if let Some(until) = lock(&self.paused_until).get(&operation).copied()
            && until > now
        {
            return Some(until);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit after `successes` acceptances, each after every slot was
    /// taken.
    fn limit_after(concurrency: &Arc<Concurrency>, successes: usize, slot: &Slot) -> usize {
        for _ in 0..successes {
            lock(&concurrency.window).filled = true;
            concurrency.succeeded(slot);
        }
        concurrency.limit()
    }

    #[tokio::test]
    async fn slow_start_grows_by_one_per_success_up_to_the_maximum() {
        let concurrency = Concurrency::new(5);
        assert_eq!(concurrency.limit(), 1);
        let slot = concurrency.acquire().await;
        assert_eq!(limit_after(&concurrency, 1, &slot), 2);
        assert_eq!(limit_after(&concurrency, 1, &slot), 3);
        assert_eq!(
            limit_after(&concurrency, 10, &slot),
            5,
            "never past the maximum"
        );
    }

    #[tokio::test]
    async fn the_limit_grows_only_after_every_slot_was_taken() {
        let concurrency = Concurrency::new(8);
        let first = concurrency.acquire().await;
        // One request at a time, accepted again and again: one slot more
        // than was used, no further, so that a later burst does not start
        // at a concurrency the server never saw.
        for _ in 0..50 {
            concurrency.succeeded(&first);
        }
        assert_eq!(concurrency.limit(), 2);
        // A burst takes every slot: each success grows the limit again.
        let mut burst = Vec::new();
        for expected in 3..=5 {
            burst.push(concurrency.acquire().await);
            concurrency.succeeded(&first);
            assert_eq!(concurrency.limit(), expected);
        }
        // A refusal, then one request at a time again: no growth.
        drop(burst);
        concurrency.throttled(&first);
        assert_eq!(concurrency.limit(), 2);
        for _ in 0..50 {
            concurrency.succeeded(&first);
        }
        assert_eq!(concurrency.limit(), 2, "one at a time never fills two");
    }

    #[tokio::test]
    async fn throttling_halves_once_per_window_never_below_one() {
        let concurrency = Concurrency::new(8);
        let first = concurrency.acquire().await;
        limit_after(&concurrency, 7, &first);
        assert_eq!(concurrency.limit(), 8);
        let second = concurrency.acquire().await;
        concurrency.throttled(&first);
        assert_eq!(concurrency.limit(), 4);
        // Started before the decrease: already accounted for.
        concurrency.throttled(&second);
        assert_eq!(concurrency.limit(), 4);
        drop((first, second));
        for expected in [2, 1, 1] {
            let slot = concurrency.acquire().await;
            concurrency.throttled(&slot);
            assert_eq!(concurrency.limit(), expected);
        }
    }

    #[tokio::test]
    async fn after_a_refusal_the_limit_grows_by_one_per_window_to_below_the_refused_one() {
        let concurrency = Concurrency::new(16);
        let slot = concurrency.acquire().await;
        limit_after(&concurrency, 3, &slot);
        assert_eq!(concurrency.limit(), 4);
        concurrency.throttled(&slot);
        drop(slot);
        let slot = concurrency.acquire().await;
        assert_eq!(concurrency.limit(), 2);
        // Additive increase: one per window of `limit` successes.
        assert_eq!(limit_after(&concurrency, 1, &slot), 2);
        assert_eq!(limit_after(&concurrency, 1, &slot), 3);
        // 3 is the ceiling (4 was refused): it holds for a long run...
        assert_eq!(
            limit_after(&concurrency, 3 * (PROBE_AFTER_WINDOWS - 1), &slot),
            3
        );
        // ...then probes one above.
        assert_eq!(limit_after(&concurrency, 3, &slot), 4);
    }

    /// `n` attempts in `slot` with `level` requests on the wire, accepted.
    fn accepted_at(concurrency: &Concurrency, slot: &Slot, level: usize, n: u32) {
        for _ in 0..n {
            slot.level.store(level, Relaxed);
            concurrency.succeeded(slot);
        }
    }

    #[tokio::test]
    async fn a_refusal_beyond_what_the_server_holds_is_crowded() {
        let concurrency = Concurrency::new(8);
        let slot = concurrency.acquire().await;
        // What goes on the wire is counted while it is there.
        let first = concurrency.enter(&slot);
        let second = concurrency.enter(&slot);
        assert_eq!(slot.level.load(Relaxed), 2);
        drop((first, second));
        assert_eq!(concurrency.enter(&slot).0.on_wire.load(Relaxed), 1);
        // Two at once accepted HELD_AFTER times: held; three only once
        // (a lucky one): not.
        accepted_at(&concurrency, &slot, 2, HELD_AFTER);
        accepted_at(&concurrency, &slot, 3, HELD_AFTER - 1);
        slot.level.store(3, Relaxed);
        assert!(concurrency.throttled(&slot), "3 at once is crowded");
        slot.level.store(2, Relaxed);
        assert!(!concurrency.throttled(&slot), "2 at once is held");
        // A level refused often is no longer held: HELD_RATIO times more
        // acceptances than refusals.
        let window = lock(&concurrency.window);
        assert_eq!(window.refused_at[2], 1);
        assert!(window.holds(2));
        drop(window);
        accepted_at(&concurrency, &slot, 2, HELD_RATIO * 2 - HELD_AFTER - 1);
        slot.level.store(2, Relaxed);
        concurrency.throttled(&slot);
        assert!(!lock(&concurrency.window).holds(2), "7 accepted, 2 refused");
        accepted_at(&concurrency, &slot, 2, 1);
        assert!(lock(&concurrency.window).holds(2), "8 accepted, 2 refused");
        // Levels past the maximum count as the maximum.
        accepted_at(&concurrency, &slot, 100, HELD_AFTER);
        assert!(lock(&concurrency.window).holds(8));
    }

    #[tokio::test]
    async fn a_crowded_refusal_after_slow_start_probes_less_often() {
        let concurrency = Concurrency::new(8);
        let slot = concurrency.acquire().await;
        accepted_at(&concurrency, &slot, 1, HELD_AFTER);
        assert_eq!(lock(&concurrency.window).held, 1);
        // In slow start a crowded refusal ends slow start only.
        slot.level.store(3, Relaxed);
        assert!(concurrency.throttled(&slot));
        assert_eq!(lock(&concurrency.window).probe_after, PROBE_AFTER_WINDOWS);
        drop(slot);
        let slot = concurrency.acquire().await;
        slot.level.store(3, Relaxed);
        assert!(concurrency.throttled(&slot));
        assert_eq!(
            lock(&concurrency.window).probe_after,
            PROBE_AFTER_WINDOWS_MAX
        );
        drop(slot);
        let slot = concurrency.acquire().await;
        slot.level.store(3, Relaxed);
        assert!(concurrency.throttled(&slot));
        assert_eq!(
            lock(&concurrency.window).probe_after,
            PROBE_AFTER_WINDOWS_MAX
        );
        // A refusal within what is held changes nothing of it.
        drop(slot);
        let slot = concurrency.acquire().await;
        slot.level.store(1, Relaxed);
        assert!(!concurrency.throttled(&slot));
        assert_eq!(
            lock(&concurrency.window).probe_after,
            PROBE_AFTER_WINDOWS_MAX
        );
        // A new level held: probing is frequent again.
        accepted_at(&concurrency, &slot, 2, HELD_AFTER);
        let window = lock(&concurrency.window);
        assert_eq!((window.held, window.probe_after), (2, PROBE_AFTER_WINDOWS));
    }

    #[tokio::test]
    async fn a_request_waits_for_a_slot_and_gets_one_when_another_ends() {
        let concurrency = Concurrency::new(4);
        let held = concurrency.acquire().await;
        let waiting = tokio::spawn({
            let concurrency = concurrency.clone();
            async move { concurrency.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the limit is one");
        drop(held);
        let slot = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .unwrap();
        // Growth wakes waiters too.
        let next = tokio::spawn({
            let concurrency = concurrency.clone();
            async move { concurrency.acquire().await }
        });
        concurrency.succeeded(&slot);
        tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("woken by growth")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_every_request_to_that_operation() {
        let throttle = Throttle::new(&RateLimit::default());
        let stats = Stats::default();
        let mut cancel = Cancel::never();
        throttle.pause(Operation::CollectBulkUserEvents, Duration::from_secs(1));
        // A longer pause extends a shorter one; a shorter one never
        // shortens a longer one.
        throttle.pause(Operation::CollectBulkUserEvents, Duration::from_secs(2));
        throttle.pause(Operation::CollectBulkUserEvents, Duration::from_secs(1));
        let started = Instant::now();
        assert!(
            throttle
                .wait_turn(Operation::CollectBulkUserEvents, 10, &mut cancel, &stats)
                .await
                .is_some()
        );
        assert!(started.elapsed() >= Duration::from_secs(2));
        assert!(stats.waited_micros.load(Relaxed) >= 2_000_000);
        // Other operations are not paused.
        throttle.pause(Operation::CollectBulkUserEvents, Duration::from_secs(60));
        let started = Instant::now();
        throttle
            .wait_turn(Operation::UpdateBulkUserProfiles, 10, &mut cancel, &stats)
            .await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_until_its_instant_and_not_after() {
        let throttle = Throttle::new(&RateLimit::default());
        let operation = Operation::CollectBulkUserEvents;
        throttle.pause(operation, Duration::from_secs(1));
        let until = throttle.next_turn(operation, 1).expect("paused");
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(throttle.next_turn(operation, 1), Some(until));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(Instant::now(), until);
        assert_eq!(
            throttle.next_turn(operation, 1),
            None,
            "ended at its instant"
        );
        throttle.pause(operation, Duration::ZERO);
        assert_eq!(throttle.next_turn(operation, 1), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_gives_way_to_the_deadline() {
        let throttle = Throttle::new(&RateLimit::default());
        let (phase, watching) =
            tokio::sync::watch::channel(crate::delivery::cancel::Phase::Running);
        let mut cancel = Cancel::new(watching);
        throttle.pause(Operation::CollectBulkUserEvents, Duration::from_secs(60));
        let deadline = Instant::now() + Duration::from_secs(1);
        phase.send_modify(|p| *p = p.drain(Some(deadline)));
        let went = throttle
            .wait_turn(
                Operation::CollectBulkUserEvents,
                1,
                &mut cancel,
                &Stats::default(),
            )
            .await;
        assert_eq!(went, None);
        assert_eq!(Instant::now(), deadline);
    }

    #[test]
    fn a_413_teaches_a_smaller_body_for_that_operation_only() {
        let throttle = Throttle::new(&RateLimit::default());
        let events = Operation::CollectBulkUserEvents;
        assert_eq!(throttle.max_bytes(events, 4096), 4096);
        throttle.refused_size(events, 3000);
        assert_eq!(throttle.max_bytes(events, 4096), 1500);
        assert_eq!(
            throttle.max_bytes(events, 1000),
            1000,
            "the configured cap still holds"
        );
        throttle.refused_size(events, 5000);
        assert_eq!(throttle.max_bytes(events, 4096), 1500, "never grows back");
        assert_eq!(
            throttle.max_bytes(Operation::UpdateBulkUserProfiles, 4096),
            4096
        );
    }

    #[test]
    fn a_request_cap_spaces_requests_and_an_item_cap_lets_a_second_through() {
        let throttle = Throttle::new(&RateLimit::default().with_max_requests_per_second(5));
        let events = Operation::CollectBulkUserEvents;
        assert_eq!(throttle.next_turn(events, 1000), None);
        // No burst: a rolling second never sees a sixth.
        let until = throttle.next_turn(events, 1000).expect("the second waits");
        let wait = until - Instant::now();
        assert!(
            wait > Duration::from_millis(150) && wait <= Duration::from_millis(200),
            "{wait:?}"
        );

        let items = Throttle::new(&RateLimit::default().with_max_items_per_second(1500));
        assert_eq!(items.next_turn(events, 1000), None);
        assert!(
            items.next_turn(events, 1000).is_some(),
            "1,000 more items wait"
        );
        // More items than a second allows waits for a full bucket, not forever.
        let huge = Throttle::new(&RateLimit::default().with_max_items_per_second(100));
        assert_eq!(huge.next_turn(events, 1000), None);
        assert!(huge.next_turn(events, 1000).is_some());
    }
}
