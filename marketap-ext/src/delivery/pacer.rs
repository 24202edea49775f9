//! A learned send rate, per client and operation: the requests a server
//! allows per second, learned from its 429s and 503s.
//!
//! [`Concurrency`](super::throttle::Concurrency) bounds the requests in
//! flight; a [`Pacer`] bounds the requests *started* per second, which is
//! what most gateways limit (token buckets, fixed and sliding windows).
//! The idea is the one of the AWS SDKs' adaptive retry mode:
//! - every attempt's start is recorded, so the send rate of the last second
//!   is known when a throttle comes;
//! - on a 429 or 503 the rate drops to [`BETA`] × the rate measured then,
//!   once for all the requests that were already on their way;
//! - without throttling it grows back along a cubic curve
//!   (`C·(t − K)³ + 0.9·w_max`, after TCP CUBIC): fast at first, flat a
//!   little below the rate that was refused (`w_max`), then probing above
//!   it; never faster than twice what the client actually sends;
//! - starts are spaced `1 / rate` apart, so after a `Retry-After` pause the
//!   requests that waited leave one by one, not as a burst.
//!
//! Until the first throttle a pacer only records start times in a ring of
//! atomics: no lock, no sleep.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use tokio::time::Instant;

use crate::lock::lock;

/// The multiplicative decrease: the rate after a throttle, as a share of
/// the rate measured when it came.
pub(crate) const BETA: f64 = 0.7;
/// Where the cubic flattens, as a share of the rate refused: that rate was
/// over the limit, so the curve lingers a little below it, not at it.
pub(crate) const PLATEAU: f64 = 0.9;
/// CUBIC's scaling constant, in requests per second per second³.
const SCALE: f64 = 0.4;
/// The slowest the learned rate goes, in requests per second. A client
/// that sends little measures a low rate, and a few 503s would otherwise
/// pace it at one request every few seconds long after the server
/// recovered (the ingestor property test found a flush of 9 items that
/// took over 10 s at 0.5).
pub(crate) const MIN_RATE: f64 = 5.0;
/// The span the send rate is measured over.
const MEASURE_OVER: Duration = Duration::from_secs(1);
/// Start times kept for measuring: enough for 256 requests a second.
const RING: usize = 256;

/// A learned send rate; see the module docs.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// Set on the first throttle: from then on starts are paced.
    engaged: AtomicBool,
    /// The instant start times are counted from.
    origin: Instant,
    /// The last [`RING`] start times, in microseconds since `origin`, plus
    /// one (0 is an empty cell).
    starts: [AtomicU64; RING],
    next_cell: AtomicUsize,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// Requests per second now.
    rate: f64,
    /// The rate that was refused last (CUBIC's `w_max`).
    refused: f64,
    /// When the last decrease happened; requests started before it are
    /// already accounted for.
    decreased_at: Instant,
    /// The time from a decrease to regaining `refused` (CUBIC's `K`).
    plateau_after: Duration,
    /// The earliest start of the next request.
    next_start: Instant,
    /// The rate last reported in a tracing event.
    reported: f64,
    /// When the last pause the server asked for ends: the send rate
    /// measured over a second that holds a pause says nothing.
    resumed_at: Instant,
}

impl Pacer {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Self {
            engaged: AtomicBool::new(false),
            origin: now,
            starts: std::array::from_fn(|_| AtomicU64::new(0)),
            next_cell: AtomicUsize::new(0),
            state: Mutex::new(State {
                rate: f64::INFINITY,
                refused: f64::INFINITY,
                decreased_at: now,
                plateau_after: Duration::ZERO,
                next_start: now,
                reported: f64::INFINITY,
                resumed_at: now,
            }),
        }
    }

    /// Whether a throttle came, so that starts are paced.
    pub(crate) fn is_engaged(&self) -> bool {
        self.engaged.load(Relaxed)
    }

    /// The learned rate in requests per second, once a throttle came.
    pub(crate) fn rate(&self) -> Option<f64> {
        self.is_engaged().then(|| lock(&self.state).rate)
    }

    /// The time between starts at the learned rate (zero before any
    /// throttle).
    pub(crate) fn interval(&self) -> Duration {
        if !self.is_engaged() {
            return Duration::ZERO;
        }
        interval(lock(&self.state).rate)
    }

    /// Reserves the next start: `None` to go now, or the instant to go at
    /// (the caller sleeps until then, and may go then).
    pub(crate) fn reserve(&self) -> Option<Instant> {
        if !self.is_engaged() {
            return None;
        }
        let now = Instant::now();
        let mut state = lock(&self.state);
        let at = state.next_start.max(now);
        state.next_start = at + interval(state.rate);
        (at > now).then_some(at)
    }

    /// An attempt started at `at`.
    pub(crate) fn started(&self, at: Instant) {
        let micros = u64::try_from(at.saturating_duration_since(self.origin).as_micros())
            .unwrap_or(u64::MAX - 1);
        let cell = self.next_cell.fetch_add(1, Relaxed) % RING;
        self.starts[cell].store(micros + 1, Relaxed);
    }

    /// Requests started per second over the last [`MEASURE_OVER`] (or, if
    /// more than [`RING`] started in it, over the time the ring spans).
    pub(crate) fn measured(&self, now: Instant) -> f64 {
        let now = u64::try_from(now.saturating_duration_since(self.origin).as_micros())
            .unwrap_or(u64::MAX);
        let span = u64::try_from(MEASURE_OVER.as_micros()).unwrap_or(u64::MAX);
        let mut recent = 0u32;
        let mut oldest = now;
        for cell in &self.starts {
            let stored = cell.load(Relaxed);
            if stored == 0 {
                continue;
            }
            let start = stored - 1;
            if now.saturating_sub(start) <= span {
                recent += 1;
                oldest = oldest.min(start);
            }
        }
        if usize::try_from(recent).unwrap_or(usize::MAX) < RING {
            return f64::from(recent) / MEASURE_OVER.as_secs_f64();
        }
        let spanned = Duration::from_micros(now - oldest).max(Duration::from_millis(1));
        f64::from(recent) / spanned.as_secs_f64()
    }

    /// An attempt started at `started` was throttled (429 or 503).
    pub(crate) fn throttled(&self, started: Instant) {
        let now = Instant::now();
        let measured = self.measured(now);
        let mut state = lock(&self.state);
        if self.is_engaged() && started < state.decreased_at {
            // On its way before the last decrease: already accounted for.
            return;
        }
        // The rate measured is what the server refused, if the client was
        // sending all that second; after a pause it would be too low, and
        // the rate paced at is what was refused.
        let measured_whole = now.saturating_duration_since(state.resumed_at) >= MEASURE_OVER;
        let from = if !self.is_engaged() || measured_whole {
            measured.min(state.rate)
        } else {
            state.rate
        }
        .max(MIN_RATE);
        state.refused = from;
        state.rate = (from * BETA).max(MIN_RATE);
        state.plateau_after = Duration::from_secs_f64((from * (PLATEAU - BETA) / SCALE).cbrt());
        state.decreased_at = now;
        // The next start waits one new interval from now, whatever was
        // reserved at the old rate.
        state.next_start = now + interval(state.rate);
        state.reported = state.rate;
        self.engaged.store(true, Relaxed);
        tracing::debug!(
            measured = from,
            rate = state.rate,
            "marketap: throttled; fewer requests per second"
        );
    }

    /// The server asked for a pause until `until`.
    pub(crate) fn paused_until(&self, until: Instant) {
        let mut state = lock(&self.state);
        state.resumed_at = state.resumed_at.max(until);
    }

    /// An attempt was accepted: the rate grows back along the cubic.
    pub(crate) fn succeeded(&self) {
        if !self.is_engaged() {
            return;
        }
        let now = Instant::now();
        let measured = self.measured(now);
        let mut state = lock(&self.state);
        let grown = state.cubic(now).min(2.0 * measured);
        if grown <= state.rate {
            return;
        }
        state.rate = grown;
        if state.rate >= state.reported + 1.0 {
            state.reported = state.rate;
            tracing::debug!(rate = state.rate, "marketap: more requests per second");
        }
    }
}

impl State {
    /// CUBIC's rate `now`: `SCALE·(t − K)³ + PLATEAU·refused`, which is
    /// `BETA·refused` at the decrease.
    fn cubic(&self, now: Instant) -> f64 {
        let t = now
            .saturating_duration_since(self.decreased_at)
            .as_secs_f64()
            - self.plateau_after.as_secs_f64();
        SCALE * t * t * t + PLATEAU * self.refused
    }
}

/// The time between starts at `rate` requests per second.
fn interval(rate: f64) -> Duration {
    if rate.is_finite() && rate > 0.0 {
        Duration::from_secs_f64(1.0 / rate)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    /// `n` starts spread evenly over the next `over`, the clock moving.
    async fn send(pacer: &Pacer, n: u32, over: Duration) {
        for _ in 0..n {
            pacer.started(Instant::now());
            tokio::time::advance(over / n).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn before_any_throttle_nothing_is_paced() {
        let pacer = Pacer::new();
        for _ in 0..1000 {
            assert_eq!(pacer.reserve(), None);
            pacer.started(Instant::now());
            pacer.succeeded();
        }
        assert_eq!(pacer.rate(), None);
        assert!(!pacer.is_engaged());
    }

    #[tokio::test(start_paused = true)]
    async fn the_send_rate_is_measured_over_the_last_second() {
        let pacer = Pacer::new();
        send(&pacer, 30, Duration::from_secs(3)).await;
        // 10 a second, evenly: the last second holds 10 (11 with its edge).
        let rate = pacer.measured(Instant::now());
        assert!((10.0..=11.0).contains(&rate), "{rate}");
        // Twenty at once, then nothing: counted while within the second.
        let burst = Pacer::new();
        for _ in 0..20 {
            burst.started(Instant::now());
        }
        tokio::time::advance(Duration::from_millis(900)).await;
        assert!(close(burst.measured(Instant::now()), 20.0));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(close(burst.measured(Instant::now()), 0.0));
        // More than the ring holds: measured over the time it spans.
        let fast = Pacer::new();
        send(&fast, 1000, Duration::from_secs(1)).await;
        let rate = fast.measured(Instant::now());
        assert!((990.0..=1010.0).contains(&rate), "{rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_drops_to_beta_times_the_measured_rate_once_per_decrease() {
        let pacer = Pacer::new();
        send(&pacer, 40, Duration::from_secs(2)).await;
        let before = Instant::now() - Duration::from_millis(10);
        pacer.throttled(before);
        let rate = pacer.rate().expect("engaged");
        let measured = 20.0;
        assert!(
            (measured * BETA..=(measured + 1.0) * BETA).contains(&rate),
            "{rate}"
        );
        // A request on its way before the decrease changes nothing.
        pacer.throttled(before);
        assert!(close(pacer.rate().unwrap(), rate));
        // One started after it decreases again, from the lower rate.
        tokio::time::advance(Duration::from_millis(1)).await;
        pacer.throttled(Instant::now());
        let again = pacer.rate().unwrap();
        assert!(close(again, rate * BETA), "{again} after {rate}");
        // Never below the floor.
        for _ in 0..50 {
            tokio::time::advance(Duration::from_millis(1)).await;
            pacer.throttled(Instant::now());
        }
        assert!(close(pacer.rate().unwrap(), MIN_RATE));
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_just_after_a_pause_drops_from_the_paced_rate() {
        let pacer = Pacer::new();
        send(&pacer, 20, Duration::from_secs(1)).await;
        pacer.throttled(Instant::now());
        assert!(close(pacer.rate().unwrap(), 14.0));
        pacer.paused_until(Instant::now() + Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        // Two requests after the pause, then a throttle: the last second
        // holds two starts, but the client was paced at 14 a second.
        send(&pacer, 2, Duration::from_millis(150)).await;
        pacer.throttled(Instant::now());
        let rate = pacer.rate().unwrap();
        assert!(close(rate, 14.0 * BETA), "{rate}");
        // A whole second after the pause, what was sent counts.
        tokio::time::advance(Duration::from_secs(1)).await;
        send(&pacer, 10, Duration::from_secs(1)).await;
        pacer.throttled(Instant::now());
        let rate = pacer.rate().unwrap();
        // BETA x what went out in that second: about 10 (paced at 9.8).
        assert!((9.5 * BETA..=11.0 * BETA).contains(&rate), "{rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn starts_are_spaced_by_the_rate_even_after_a_pause() {
        let pacer = Pacer::new();
        send(&pacer, 10, Duration::from_secs(1)).await;
        pacer.throttled(Instant::now());
        let rate = pacer.rate().unwrap();
        assert!(close(rate, 7.0), "{rate}");
        let gap = interval(rate);
        // A long pause, then twenty requests at once: one by one.
        tokio::time::advance(Duration::from_secs(5)).await;
        let now = Instant::now();
        assert_eq!(pacer.reserve(), None, "the first goes at once");
        for n in 1..20u32 {
            assert_eq!(pacer.reserve(), Some(now + gap * n), "start {n}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_grows_back_along_a_cubic_flat_near_the_refused_rate() {
        let pacer = Pacer::new();
        send(&pacer, 20, Duration::from_secs(1)).await;
        pacer.throttled(Instant::now());
        let (refused, low) = {
            let state = lock(&pacer.state);
            (state.refused, state.rate)
        };
        assert!(close(low, refused * BETA));
        let plateau = lock(&pacer.state).plateau_after;
        // K = cbrt(w_max (PLATEAU − β) / C).
        assert!(close(
            plateau.as_secs_f64(),
            (refused * (PLATEAU - BETA) / SCALE).cbrt()
        ));
        assert!(close(lock(&pacer.state).cubic(Instant::now()), low));
        let flat = refused * PLATEAU;
        // Keep sending at the learned rate while time passes; sample it.
        let mut samples = Vec::new();
        let step = Duration::from_millis(250);
        for _ in 0..24 {
            let rate = pacer.rate().unwrap();
            send(&pacer, (rate * step.as_secs_f64()).ceil() as u32, step).await;
            pacer.succeeded();
            samples.push(pacer.rate().unwrap());
        }
        assert!(samples.windows(2).all(|w| w[0] <= w[1]), "{samples:?}");
        // Back near (below) the refused rate at K, and slowly there.
        let at_k = samples[(plateau.as_secs_f64() / step.as_secs_f64()) as usize - 1];
        assert!((flat - 0.5..=flat).contains(&at_k), "{at_k} at K");
        let (first_step, near_k) = (
            samples[1] - samples[0],
            samples[(plateau.as_secs_f64() / step.as_secs_f64()) as usize]
                - samples[(plateau.as_secs_f64() / step.as_secs_f64()) as usize - 1],
        );
        assert!(first_step > near_k, "concave: {first_step} then {near_k}");
        // Then probes above it.
        assert!(*samples.last().unwrap() > refused, "{samples:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_grows_no_faster_than_twice_what_is_sent() {
        let pacer = Pacer::new();
        send(&pacer, 100, Duration::from_secs(1)).await;
        pacer.throttled(Instant::now());
        // An idle client: nothing sent, so nothing learned about more.
        tokio::time::advance(Duration::from_secs(60)).await;
        pacer.succeeded();
        assert!(close(pacer.rate().unwrap(), 70.0));
        // Sending 5 a second asks for no more than 70 either.
        send(&pacer, 5, Duration::from_secs(1)).await;
        pacer.succeeded();
        assert!(close(pacer.rate().unwrap(), 70.0));
        // Sending 50 a second allows up to 100, the cubic being far past.
        send(&pacer, 50, Duration::from_secs(1)).await;
        pacer.succeeded();
        let rate = pacer.rate().unwrap();
        assert!((99.0..=102.0).contains(&rate), "{rate}");
    }
}
