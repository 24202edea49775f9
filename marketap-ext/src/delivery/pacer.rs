//! A learned send rate, per client and operation: the requests a server
//! allows per second, learned from its 429s and 503s.
//!
//! [`Concurrency`](super::throttle::Concurrency) bounds the requests in
//! flight; a [`Pacer`] bounds the requests *started* per second, which is
//! what most gateways limit (token buckets, fixed and sliding windows).
//! The idea is the one of the AWS SDKs' adaptive retry mode, with more
//! read out of each 429, since every refusal costs the pause the server
//! asks for (`Retry-After`):
//! - every attempt's start is recorded, and every refused one's, so when a
//!   throttle comes the client knows how many requests the server saw in
//!   the second before the refused one, and how many of them it refused:
//!   for a sliding window the rest is its limit, for a fixed window or a
//!   token bucket at least its limit;
//! - on a 429 or 503 the rate drops to a *plateau*, [`PLATEAU`] × the
//!   smaller of the rate sent and the rate accepted, once for all the
//!   requests that were already on their way: a little below what the
//!   server allowed, so that a one-second window never sees one too many;
//! - it holds the plateau, then probes above it along a cubic
//!   (`plateau·(1 + ((t − hold)/PROBE)³)`, after TCP CUBIC's convex part):
//!   gently at first, then fast, so that a limit that went up is found
//!   within seconds; never faster than twice what the client actually
//!   sends;
//! - every refused probe costs the pause the server asks for (a second of
//!   sending nothing, at `Retry-After: 1`), so a probe every `P` seconds
//!   costs about `1/P` of the throughput; how long it holds trades that
//!   against how soon a limit that went up is found: [`HOLD_LEARNED`]
//!   (the longest, [`HOLD_MAX`]) after the first throttle that taught a
//!   rate from ten requests accepted or more, and after a probe that found
//!   [`RISE`] times the old limit or more (both measured a second of
//!   sending flat out); a shorter hold grows [`HOLD_GROWTH`] times after
//!   each probe refused at about the old limit, up to [`HOLD_MAX`]; but
//!   after a fall (a refusal while holding that found less than [`DROP`]
//!   of the plateau) [`HOLD_FIRST`], and never more than a third of the
//!   time since the fall ([`AFTER_DROP`]): a limit that moved may move
//!   back, and is followed within seconds;
//! - a probe's rate rises within the second counted, and a fixed window
//!   refuses only once its quota is spent, so a second counted across two
//!   windows can hold up to twice the limit: a refused probe is also
//!   counted over two seconds when the client sent steadily in both
//!   ([`STEADY`]), and one that found no more than [`NOISE`] times the old
//!   limit so keeps the plateau; when the plateau a probe found is refused
//!   while holding, and the one before the probe is lower, the rate goes
//!   back to that one, which held, and to its hold; a refusal while
//!   holding a little below the plateau lowers it and holds as long;
//! - starts are spaced `1 / rate` apart, so after a `Retry-After` pause the
//!   requests that waited leave one by one, not as a burst.
//!
//! Some throttles teach nothing, and leave pacing to the concurrency limit
//! and the pauses: one that the concurrency explains (more requests were
//! on the wire than the server ever accepted at once, see
//! [`Concurrency::throttled`](super::throttle::Concurrency::throttled));
//! one in the client's first second of sending (the counts would be of
//! less than a second); one with fewer than [`TRUST`] requests sent in its
//! second (so few requests say nothing about a rate, and pacing them would
//! only slow a client that sends little: the ingestor property test found
//! a flush of 9 items that took over 10 s when a few 503s could pace it at
//! 0.5 a second); and, before any pacing, one with fewer than [`TRUST`]
//! accepted in its second (a burst after a pause that met a window already
//! spent). The rate never goes below [`MIN_RATE`].
//!
//! Until the first throttle that teaches a rate a pacer only records start
//! times in a ring of atomics: no lock, no sleep.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use tokio::time::Instant;

use crate::lock::lock;

/// Where the rate settles after a throttle, as a share of the ceiling (the
/// rate the server was found to allow). What is left is the slack for
/// requests that reach the server bunched (scheduling, the network): a
/// one-second window sees one too many only when they arrive 50 ms closer
/// together than they started. At 0.97 (30 ms) the limiter table on a busy
/// machine saw such refusals while holding, each a second's pause, more
/// often than the 2% they cost.
const PLATEAU: f64 = 0.95;
/// How long the plateau is held after the throttle that taught the first
/// rate: counted over a whole second of sending flat out, it is the best
/// estimate there is, as good as one probes confirmed, so it is held as
/// long. Each refused probe costs the pause the server asks for (a second
/// at `Retry-After: 1`); probing every 10 s cost about 10% of the
/// throughput in the limiter table, every 20 s costs under 5%.
const HOLD_LEARNED: Duration = HOLD_MAX;
/// How long it is held after a refusal while holding: the limit moved (or
/// the estimate was off), and may move again.
const HOLD_FIRST: Duration = Duration::from_millis(1500);
/// Each refused probe holds this many times longer the next time.
const HOLD_GROWTH: u32 = 2;
/// The longest hold: it bounds the time a limit that went up goes
/// unnoticed.
const HOLD_MAX: Duration = Duration::from_secs(20);
/// The probe's pace: it doubles the rate this long after the hold.
const PROBE: Duration = Duration::from_millis(1200);
/// A refused probe that found this many times the old ceiling found a
/// limit that went up.
const RISE: f64 = 1.5;
/// A refused probe that found up to this many times the old ceiling over
/// two seconds found the same limit: a fixed window's straddle, or noise.
const NOISE: f64 = 1.15;
/// A refusal while holding that finds less than this share of the plateau
/// found a limit that went down.
const DROP: f64 = 0.75;
/// After a limit went down, the hold stays under this share of the time
/// since (and at least [`HOLD_FIRST`]): a limit that moved may move back.
const AFTER_DROP: u32 = 3;
/// A second in which the client sent this share of the plateau or more
/// counts toward a two-second measure.
const STEADY: f64 = 0.9;
/// The fewest requests sent in the last second for a throttle to teach a
/// rate.
const TRUST: u32 = 5;
/// The slowest the learned rate goes, in requests per second.
const MIN_RATE: f64 = 1.0;
/// The span the send rate is measured over.
const MEASURE_OVER: Duration = Duration::from_secs(1);
/// The same in microseconds.
const SPAN: u64 = 1_000_000;
/// Times kept for measuring: enough for 256 requests a second.
const RING: usize = 256;

/// The last [`RING`] instants of something, in microseconds since an
/// origin, plus one (0 is an empty cell); lock-free.
#[derive(Debug)]
struct Ring {
    cells: [AtomicU64; RING],
    next: AtomicUsize,
}

impl Ring {
    fn new() -> Self {
        Self {
            cells: std::array::from_fn(|_| AtomicU64::new(0)),
            next: AtomicUsize::new(0),
        }
    }

    fn record(&self, micros: u64) {
        let cell = self.next.fetch_add(1, Relaxed) % RING;
        self.cells[cell].store(micros.saturating_add(1), Relaxed);
    }

    /// How many instants fall in the `span` up to `now` (`now` included,
    /// its start not, as a sliding window counts), and the oldest.
    fn within(&self, now: u64, span: u64) -> (u32, u64) {
        let mut count = 0u32;
        let mut oldest = now;
        for cell in &self.cells {
            let stored = cell.load(Relaxed);
            if stored == 0 {
                continue;
            }
            let at = stored - 1;
            if at <= now && now - at < span {
                count += 1;
                oldest = oldest.min(at);
            }
        }
        (count, oldest)
    }

    /// Instants a second over the `span` before `now` (or, if the ring is
    /// full of them, over the time it spans), and their count.
    fn per_second(&self, now: u64, span: u64) -> (f64, u32) {
        let (count, oldest) = self.within(now, span);
        let over = if usize::try_from(count).unwrap_or(usize::MAX) < RING {
            span
        } else {
            now - oldest
        };
        let over = Duration::from_micros(over.max(1_000)).as_secs_f64();
        (f64::from(count) / over, count)
    }
}

/// A learned send rate; see the module docs.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// Set on the first throttle that taught a rate: from then on starts
    /// are paced.
    engaged: AtomicBool,
    /// The instant times are counted from.
    origin: Instant,
    /// When attempts started.
    starts: Ring,
    /// When attempts that were refused (429 or 503) started.
    refused: Ring,
    /// The first start, in microseconds since `origin`, plus one (0 before
    /// any).
    first_start: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// Requests per second now.
    rate: f64,
    /// The rate held after the last decrease.
    plateau: f64,
    /// The plateau before the last probe, which held until then (infinite
    /// if none is known to).
    held: f64,
    /// When the last decrease happened; requests started before it are
    /// already accounted for.
    decreased_at: Instant,
    /// How long the plateau is held before probing above it.
    hold: Duration,
    /// The earliest start of the next request.
    next_start: Instant,
    /// The rate last reported in a tracing event.
    reported: f64,
    /// When the last pause the server asked for ends: the requests sent
    /// over a second that holds a pause say nothing of the rate refused.
    resumed_at: Instant,
    /// When the limit was last found to go down (`None` if never).
    dropped_at: Option<Instant>,
}

impl Pacer {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Self {
            engaged: AtomicBool::new(false),
            origin: now,
            starts: Ring::new(),
            refused: Ring::new(),
            first_start: AtomicU64::new(0),
            state: Mutex::new(State {
                rate: f64::INFINITY,
                plateau: f64::INFINITY,
                held: f64::INFINITY,
                decreased_at: now,
                hold: HOLD_FIRST,
                next_start: now,
                reported: f64::INFINITY,
                resumed_at: now,
                dropped_at: None,
            }),
        }
    }

    /// Whether a throttle taught a rate, so that starts are paced.
    pub(crate) fn is_engaged(&self) -> bool {
        self.engaged.load(Relaxed)
    }

    /// The rate paced at now (above the plateau while probing), once a
    /// throttle taught one.
    #[cfg(test)]
    pub(crate) fn rate(&self) -> Option<f64> {
        self.is_engaged().then(|| lock(&self.state).rate)
    }

    /// The rate the server was found to allow, a little under it: the
    /// plateau the rate holds at between probes; `None` before a throttle
    /// taught one.
    pub(crate) fn learned(&self) -> Option<f64> {
        self.is_engaged().then(|| lock(&self.state).plateau)
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

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX - 1)
    }

    /// An attempt started at `at`.
    pub(crate) fn started(&self, at: Instant) {
        let micros = self.micros(at);
        if self.first_start.load(Relaxed) == 0 {
            let _ = self
                .first_start
                .compare_exchange(0, micros + 1, Relaxed, Relaxed);
        }
        self.starts.record(micros);
    }

    /// Whether the client has been sending for `span` microseconds at
    /// `at` (microseconds since `origin`).
    fn sent_for(&self, at: u64, span: u64) -> bool {
        match self.first_start.load(Relaxed) {
            0 => false,
            first => at.saturating_sub(first - 1) >= span,
        }
    }

    /// Requests started per second over the last [`MEASURE_OVER`] (or, if
    /// more than [`RING`] started in it, over the time the ring spans).
    pub(crate) fn measured(&self, now: Instant) -> f64 {
        self.starts.per_second(self.micros(now), SPAN).0
    }

    /// An attempt started at `started` was throttled (429 or 503). What
    /// the server saw when it refused is counted over the second before
    /// that start: the requests sent, and those of them it accepted.
    pub(crate) fn throttled(&self, started: Instant) {
        let now = Instant::now();
        let micros = self.micros(started);
        self.refused.record(micros);
        // The server saw the requests sent in the second up to this one's
        // start, and refused those it answered so (this one included);
        // those not answered yet count as accepted.
        let (_, count) = self.starts.per_second(micros, SPAN);
        let (_, refused_count) = self.refused.per_second(micros, SPAN);
        let accepted = count.saturating_sub(refused_count);
        let allowed = f64::from(accepted) / MEASURE_OVER.as_secs_f64();
        let mut state = lock(&self.state);
        let engaged = self.is_engaged();
        if engaged && started < state.decreased_at {
            // On its way before the last decrease: already accounted for.
            return;
        }
        // Too few requests, or less than a second of them, say nothing of
        // a rate; nor, before any pacing, do too few accepted.
        if count < TRUST || !self.sent_for(micros, SPAN) || (!engaged && accepted < TRUST) {
            tracing::trace!(
                sent = count,
                "marketap: throttled, but too few requests were sent to learn a rate from"
            );
            return;
        }
        // The second before that one, when the client sent over both
        // without a pause.
        let before = (self.sent_for(micros, 2 * SPAN)
            && started.saturating_duration_since(state.resumed_at) >= 2 * MEASURE_OVER)
            .then(|| {
                let (_, count) = self.starts.per_second(micros, 2 * SPAN);
                let (_, refused_count) = self.refused.per_second(micros, 2 * SPAN);
                let two = count.saturating_sub(refused_count);
                f64::from(two.saturating_sub(accepted)) / MEASURE_OVER.as_secs_f64()
            });
        state.learn(
            now,
            Seen {
                engaged,
                accepted,
                allowed,
                before,
            },
        );
        self.engaged.store(true, Relaxed);
        tracing::debug!(
            sent = count,
            accepted = allowed,
            rate = state.rate,
            hold = ?state.hold,
            "marketap: throttled; fewer requests per second"
        );
    }

    /// The server asked for a pause until `until`.
    pub(crate) fn paused_until(&self, until: Instant) {
        let mut state = lock(&self.state);
        state.resumed_at = state.resumed_at.max(until);
    }

    /// An attempt was accepted: the rate probes upward once the hold is
    /// over.
    pub(crate) fn succeeded(&self) {
        if !self.is_engaged() {
            return;
        }
        let now = Instant::now();
        let measured = self.measured(now);
        let mut state = lock(&self.state);
        let grown = state.probe(now).min(2.0 * measured);
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

/// What the server was seen to allow when it refused a request.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Whether a rate was learned before.
    engaged: bool,
    /// The requests it accepted in the second before the refused one.
    accepted: u32,
    /// The same a second.
    allowed: f64,
    /// The requests it accepted in the second before that one, when the
    /// client sent over both without a pause.
    before: Option<f64>,
}

impl Seen {
    /// Accepted a second over both seconds, when the client sent at
    /// about `plateau` or more in the first (an idle second would say
    /// nothing of the limit).
    fn over_two(&self, plateau: f64) -> Option<f64> {
        self.before
            .filter(|before| *before >= STEADY * plateau)
            .map(|before| (before + self.allowed) / 2.0)
    }
}

impl State {
    /// A refusal the client learns from, `now`: the new plateau and hold.
    fn learn(&mut self, now: Instant, seen: Seen) {
        // What the server allowed, and no more than the rate paced at (the
        // requests sent, of which those allowed are a part, bound it too).
        let mut plateau = PLATEAU * self.rate.min(seen.allowed);
        // The ceiling the plateau was learned from.
        let ceiling = self.plateau / PLATEAU;
        if !seen.engaged {
            // A second of sending flat out is the best estimate there is;
            // a few requests after a pause are not.
            self.hold = if seen.accepted >= 2 * TRUST {
                HOLD_LEARNED
            } else {
                HOLD_FIRST
            };
            self.held = f64::INFINITY;
        } else if now.saturating_duration_since(self.held_from()) >= self.hold {
            // A refused probe. The plateau held until the probe: keep it,
            // should the new one not hold.
            self.held = self.plateau;
            if seen.allowed >= RISE * ceiling {
                // The limit went up: a second of probing flat out
                // measured it, as the first throttle did. The old plateau
                // is no fallback: far below, it is no longer the limit.
                self.held = f64::INFINITY;
                self.hold = HOLD_LEARNED;
            } else {
                // About where it was. A probe's rate rises within the
                // second counted, and a fixed window refuses only once its
                // quota is spent: a second counted across two windows can
                // hold up to twice the limit. Two seconds hold at most
                // three windows' worth, and hold the plateau too.
                match seen.over_two(self.plateau) {
                    // No more than a fixed window's straddle, or a sliding
                    // window's limit reached again: the limit did not
                    // move, and the plateau held.
                    Some(over_two) if over_two <= NOISE * ceiling => plateau = self.plateau,
                    Some(over_two) => plateau = plateau.min(PLATEAU * over_two),
                    None => {}
                }
                // Confirmed: hold longer before the next probe, but not
                // long after the limit went down, as it may come back.
                let mut hold = (self.hold * HOLD_GROWTH).min(HOLD_MAX);
                if let Some(dropped_at) = self.dropped_at {
                    hold = hold.min(
                        HOLD_FIRST.max(now.saturating_duration_since(dropped_at) / AFTER_DROP),
                    );
                }
                self.hold = hold;
            }
        } else if self.held < plateau {
            // Refused while holding: the plateau a probe found did not
            // hold, but the one before it did: back to that one, and to
            // its hold.
            plateau = self.held;
        } else if plateau < DROP * self.plateau {
            // The limit went down, and may move again: probe soon.
            self.held = f64::INFINITY;
            self.hold = HOLD_FIRST;
            self.dropped_at = Some(now);
        } else {
            // A little too high (a first second counted across two fixed
            // windows, or a burst the server allowed at first): a little
            // lower, held as long again. Over two seconds, if there are.
            if let Some(over_two) = seen.over_two(self.plateau) {
                plateau = plateau.min(PLATEAU * over_two);
            }
            self.held = f64::INFINITY;
        }
        self.plateau = plateau.max(MIN_RATE);
        self.rate = self.plateau;
        self.decreased_at = now;
        // The next start waits one new interval from now, whatever was
        // reserved at the old rate.
        self.next_start = now + interval(self.rate);
        self.reported = self.rate;
    }

    /// When the hold began: at the last decrease, or at the end of the
    /// pause the server asked for then.
    fn held_from(&self) -> Instant {
        self.decreased_at.max(self.resumed_at)
    }

    /// The rate the probe allows `now`: the plateau while holding, then
    /// `plateau·(1 + ((t − hold)/PROBE)³)`, `t` counted from
    /// [`held_from`](Self::held_from).
    fn probe(&self, now: Instant) -> f64 {
        let t = now
            .saturating_duration_since(self.held_from())
            .saturating_sub(self.hold)
            .as_secs_f64()
            / PROBE.as_secs_f64();
        self.plateau * (1.0 + t * t * t)
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
    use crate::recorded::Recorder;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    /// `n` starts spread evenly over the next `over`, the clock moving,
    /// each accepted.
    async fn send(pacer: &Pacer, n: u32, over: Duration) {
        for _ in 0..n {
            pacer.started(Instant::now());
            pacer.succeeded();
            tokio::time::advance(over / n).await;
        }
    }

    /// One start now, refused.
    fn refuse(pacer: &Pacer) {
        let now = Instant::now();
        pacer.started(now);
        pacer.throttled(now);
    }

    /// A pacer that sent 20 a second, then 21, the last refused: the
    /// server saw 21 in the last second and refused one.
    async fn learned_at_20() -> Pacer {
        let pacer = Pacer::new();
        send(&pacer, 20, Duration::from_secs(1)).await;
        send(&pacer, 20, Duration::from_millis(1000 * 20 / 21)).await;
        tokio::time::advance(Duration::from_millis(1000 / 21)).await;
        refuse(&pacer);
        pacer
    }

    /// The plateau [`learned_at_20`] learns.
    fn at_20() -> f64 {
        PLATEAU * 20.0
    }

    fn state(pacer: &Pacer) -> State {
        *lock(&pacer.state)
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
        assert_eq!(pacer.learned(), None);
        assert_eq!(pacer.interval(), Duration::ZERO);
        assert!(!pacer.is_engaged());
    }

    #[tokio::test(start_paused = true)]
    async fn the_send_rate_is_measured_over_the_last_second() {
        let pacer = Pacer::new();
        send(&pacer, 30, Duration::from_secs(3)).await;
        // 10 a second, evenly: the last second holds 9, the start a
        // second ago being out of it, as a sliding window counts.
        assert!(close(pacer.measured(Instant::now()), 9.0));
        // Twenty at once, then nothing: counted while within the second.
        let burst = Pacer::new();
        for _ in 0..20 {
            burst.started(Instant::now());
        }
        tokio::time::advance(Duration::from_millis(900)).await;
        assert!(close(burst.measured(Instant::now()), 20.0));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(close(burst.measured(Instant::now()), 0.0));
        // Starts after the instant measured are not counted.
        let earlier = Instant::now() - Duration::from_millis(500);
        burst.started(Instant::now());
        assert!(close(burst.measured(earlier), 20.0));
        // More than the ring holds: measured over the time it spans.
        let fast = Pacer::new();
        send(&fast, 1000, Duration::from_secs(1)).await;
        let rate = fast.measured(Instant::now());
        assert!((990.0..=1010.0).contains(&rate), "{rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_drops_to_the_plateau_below_what_the_server_accepted() {
        let pacer = learned_at_20().await;
        // 21 sent, 20 accepted: the plateau is 0.95 × 20.
        assert!(close(pacer.rate().unwrap(), at_20()), "{:?}", pacer.rate());
        assert_eq!(pacer.interval(), interval(at_20()));
        assert!(close(pacer.learned().unwrap(), at_20()));
        let learned = state(&pacer);
        assert_eq!(learned.hold, HOLD_LEARNED);
        assert!(close(learned.plateau, at_20()));
        // A request on its way before the decrease changes nothing.
        pacer.throttled(Instant::now() - Duration::from_millis(1));
        assert!(close(pacer.rate().unwrap(), at_20()));
        assert_eq!(state(&pacer).decreased_at, learned.decreased_at);
    }

    #[tokio::test(start_paused = true)]
    async fn what_the_server_accepted_sets_the_first_plateau() {
        let pacer = Pacer::new();
        send(&pacer, 20, Duration::from_secs(1)).await;
        // 10 in the last second, none refused but this one: 10 sent.
        send(&pacer, 10, Duration::from_secs(1)).await;
        refuse(&pacer);
        // 9 accepted × 0.95.
        assert!(close(pacer.rate().unwrap(), 9.0 * PLATEAU));
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_too_early_or_too_sparse_teach_no_rate() {
        // In the first second of sending.
        let early = Pacer::new();
        send(&early, 20, Duration::from_millis(500)).await;
        refuse(&early);
        assert_eq!(early.rate(), None);
        // Before any start at all.
        let idle = Pacer::new();
        idle.throttled(Instant::now());
        assert_eq!(idle.rate(), None);
        // Fewer than TRUST sent in the second, once pacing.
        let sparse = learned_at_20().await;
        tokio::time::advance(Duration::from_secs(2)).await;
        send(&sparse, 3, Duration::from_secs(1)).await;
        refuse(&sparse);
        assert!(close(sparse.rate().unwrap(), at_20()), "4 sent");
        send(&sparse, 1, Duration::from_millis(10)).await;
        refuse(&sparse);
        assert!(sparse.rate().unwrap() < at_20(), "6 sent");
        // Before any pacing, fewer than TRUST accepted.
        let refused = Pacer::new();
        send(&refused, 10, Duration::from_secs(1)).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..6 {
            let now = Instant::now();
            refused.started(now);
            refused.refused.record(refused.micros(now));
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        send(&refused, 4, Duration::from_millis(100)).await;
        refuse(&refused);
        assert_eq!(refused.rate(), None, "4 accepted of 11");
        send(&refused, 1, Duration::from_millis(10)).await;
        refuse(&refused);
        assert!(refused.rate().is_some(), "5 accepted of 13");
    }

    #[tokio::test(start_paused = true)]
    async fn few_accepted_are_held_briefly_and_a_whole_second_long() {
        let few = Pacer::new();
        send(&few, 10, Duration::from_secs(1)).await;
        send(&few, 10, Duration::from_secs(1)).await;
        refuse(&few);
        assert_eq!(state(&few).hold, HOLD_FIRST, "9 accepted");
        let many = Pacer::new();
        send(&many, 10, Duration::from_secs(1)).await;
        send(&many, 11, Duration::from_secs(1)).await;
        refuse(&many);
        assert_eq!(state(&many).hold, HOLD_LEARNED, "10 accepted");
    }

    #[tokio::test(start_paused = true)]
    async fn the_plateau_holds_then_the_probe_rises_along_a_cubic() {
        let pacer = learned_at_20().await;
        let learned = state(&pacer);
        let start = learned.held_from();
        assert_eq!(start, learned.decreased_at, "no pause asked for");
        assert!(close(learned.probe(start), at_20()));
        assert!(close(learned.probe(start + HOLD_LEARNED), at_20()));
        // plateau·(1 + (t/PROBE)³): twice it one PROBE after the hold,
        // nine times two PROBEs after.
        assert!(close(
            learned.probe(start + HOLD_LEARNED + PROBE),
            2.0 * at_20()
        ));
        assert!(close(
            learned.probe(start + HOLD_LEARNED + PROBE / 2),
            at_20() * 1.125
        ));
        assert!(close(
            learned.probe(start + HOLD_LEARNED + 2 * PROBE),
            9.0 * at_20()
        ));
        // A pause the server asked for moves the hold's start.
        pacer.paused_until(start + Duration::from_secs(1));
        assert_eq!(state(&pacer).held_from(), start + Duration::from_secs(1));
        pacer.paused_until(start);
        assert_eq!(
            state(&pacer).held_from(),
            start + Duration::from_secs(1),
            "a shorter pause never shortens a longer one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_grows_only_after_the_hold_and_no_faster_than_twice_what_is_sent() {
        let pacer = learned_at_20().await;
        // Sending at the plateau while it holds: no growth.
        send(&pacer, 95, Duration::from_secs(5)).await;
        assert!(close(pacer.rate().unwrap(), at_20()));
        // An idle client: nothing sent, so nothing learned about more.
        tokio::time::advance(Duration::from_secs(60)).await;
        pacer.succeeded();
        assert!(close(pacer.rate().unwrap(), at_20()));
        // Sending 15 a second allows up to 30, the cubic being far past.
        send(&pacer, 15, Duration::from_secs(1)).await;
        pacer.succeeded();
        let rate = pacer.rate().unwrap();
        assert!((29.9..=32.1).contains(&rate), "{rate}");
        assert!(
            close(pacer.learned().unwrap(), at_20()),
            "the plateau stays"
        );
        // And never falls back by growing.
        send(&pacer, 5, Duration::from_secs(1)).await;
        pacer.succeeded();
        assert!(pacer.rate().unwrap() >= rate);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rising_rate_is_a_debug_event_per_request_a_second_gained() {
        // With one dispatcher registered, tracing-core decides the interest
        // of a callsite first hit on another test's thread from that
        // thread's default (none), and caches "never": a second one keeps
        // it from that shortcut.
        let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let recorder = Recorder::default();
        let _events = tracing::subscriber::set_default(recorder.clone());
        let pacer = learned_at_20().await;
        // Past the hold, sending fast: the probe lifts the rate many times,
        // a little each time.
        send(&pacer, 20 * 22, HOLD_LEARNED + Duration::from_secs(2)).await;
        let rate = pacer.rate().unwrap();
        assert!(rate > at_20() + 5.0, "the rate rose to {rate}");
        let mut reported = vec![at_20()];
        reported.extend(
            recorder
                .events()
                .iter()
                .filter(|event| event.says("more requests per second"))
                .map(|event| {
                    let rate = event.field("rate").expect("each event says its rate");
                    rate.parse::<f64>().expect("a number")
                }),
        );
        // Each event a whole request a second above the one before, and
        // none owed at the end.
        assert!(
            reported.windows(2).all(|pair| pair[1] >= pair[0] + 1.0),
            "{reported:?}"
        );
        assert!(
            rate < reported[reported.len() - 1] + 1.0,
            "{reported:?} then {rate}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_probe_holds_longer_the_next_time_up_to_a_bound() {
        let pacer = learned_at_20().await;
        assert_eq!(
            state(&pacer).hold,
            HOLD_MAX,
            "a second's measure holds longest"
        );
        // A shorter hold (as after a fall); probe past it at 20 a second,
        // then a refusal.
        let hold = Duration::from_secs(4);
        lock(&pacer.state).hold = hold;
        send(&pacer, 20 * 5, hold + Duration::from_secs(1)).await;
        refuse(&pacer);
        let after = state(&pacer);
        assert_eq!(after.hold, hold * HOLD_GROWTH);
        // 19 accepted in the last second (the one a second ago is out),
        // 20 in the one before: the same limit, so the plateau held.
        assert!(close(after.plateau, at_20()), "{}", after.plateau);
        assert!(close(after.held, at_20()));
        lock(&pacer.state).hold = HOLD_MAX - Duration::from_secs(1);
        send(&pacer, 20 * 20, HOLD_MAX).await;
        refuse(&pacer);
        assert_eq!(state(&pacer).hold, HOLD_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_while_holding_a_little_high_lowers_the_plateau_and_holds_as_long() {
        let pacer = learned_at_20().await;
        // Still 20 a second (over the plateau), refused while holding.
        send(&pacer, 30, Duration::from_millis(1500)).await;
        refuse(&pacer);
        let after = state(&pacer);
        assert_eq!(after.hold, HOLD_LEARNED);
        // PLATEAU × min(19 paced at, 19 accepted).
        assert!(close(after.plateau, PLATEAU * 19.0), "{}", after.plateau);
        assert!(after.held.is_infinite());
        assert_eq!(after.dropped_at, None, "not a limit that went down");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_just_after_a_pause_counts_what_the_server_accepted() {
        let pacer = learned_at_20().await;
        pacer.paused_until(Instant::now() + Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        // The limit went down to 5: five accepted, then a refusal.
        send(&pacer, 5, Duration::from_millis(250)).await;
        refuse(&pacer);
        let after = state(&pacer);
        assert!(close(after.plateau, 5.0 * PLATEAU), "{}", after.plateau);
        assert_eq!(after.hold, HOLD_FIRST);
        assert_eq!(
            after.dropped_at,
            Some(Instant::now()),
            "the limit went down"
        );
        // Everything refused: the floor.
        tokio::time::advance(Duration::from_secs(2)).await;
        for _ in 0..6 {
            let now = Instant::now();
            pacer.started(now);
            pacer.refused.record(pacer.micros(now));
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        refuse(&pacer);
        assert!(close(pacer.rate().unwrap(), MIN_RATE));
    }

    /// A pacer holding 19, its hold over, no pause asked for, then 26
    /// requests in a second, then a refusal: a probe refused.
    async fn probe_refused() -> Pacer {
        let pacer = learned_at_20().await;
        tokio::time::advance(Duration::from_secs(3)).await;
        {
            let mut state = lock(&pacer.state);
            state.rate = 40.0;
            state.hold = Duration::from_secs(1);
        }
        send(&pacer, 27, Duration::from_secs(1)).await;
        // Off the edge: the first of the 27 falls in the second before.
        tokio::time::advance(Duration::from_millis(1)).await;
        refuse(&pacer);
        pacer
    }

    #[tokio::test(start_paused = true)]
    async fn a_plateau_a_probe_found_that_does_not_hold_falls_back_to_the_one_before() {
        let pacer = probe_refused().await;
        let probed = state(&pacer);
        assert!(close(probed.plateau, PLATEAU * 26.0), "{}", probed.plateau);
        assert!(close(probed.held, at_20()));
        assert_eq!(probed.hold, Duration::from_secs(2));
        // A fixed window: 26 in a second was two windows' worth. Refused
        // again while holding at 24.7: back to 19, which held, and to its
        // hold.
        send(&pacer, 24, Duration::from_secs(1)).await;
        refuse(&pacer);
        let back = state(&pacer);
        assert!(close(back.plateau, at_20()), "{}", back.plateau);
        assert_eq!(back.hold, Duration::from_secs(2));
        // Refused below that too: a little lower, held as long.
        send(&pacer, 19, Duration::from_secs(1)).await;
        refuse(&pacer);
        let lower = state(&pacer);
        assert!(lower.plateau < at_20(), "{}", lower.plateau);
        assert_eq!(lower.hold, Duration::from_secs(2));
        assert!(lower.held.is_infinite());
        // Refused far below: the limit went down.
        send(&pacer, 11, Duration::from_secs(1)).await;
        refuse(&pacer);
        let down = state(&pacer);
        assert!(close(down.plateau, PLATEAU * 10.0), "{}", down.plateau);
        assert_eq!(down.hold, HOLD_FIRST);
        assert!(down.dropped_at.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn starts_are_spaced_by_the_rate_even_after_a_pause() {
        let pacer = learned_at_20().await;
        let gap = interval(at_20());
        assert_eq!(pacer.interval(), gap);
        // A long pause, then twenty requests at once: one by one.
        tokio::time::advance(Duration::from_secs(5)).await;
        let now = Instant::now();
        assert_eq!(pacer.reserve(), None, "the first goes at once");
        for n in 1..20u32 {
            assert_eq!(pacer.reserve(), Some(now + gap * n), "start {n}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_throttle_the_next_start_waits_one_new_interval() {
        let pacer = learned_at_20().await;
        let now = Instant::now();
        // Whatever was reserved at the old rate: one interval from now.
        assert_eq!(pacer.reserve(), Some(now + interval(at_20())));
        assert_eq!(pacer.reserve(), Some(now + interval(at_20()) * 2));
    }

    #[tokio::test(start_paused = true)]
    async fn five_requests_in_the_second_are_enough_to_learn_from_four_are_not() {
        for (sent, learns) in [(4, false), (5, true)] {
            let pacer = learned_at_20().await;
            tokio::time::advance(Duration::from_secs(2)).await;
            // `sent - 1` accepted in the second, then the refusal.
            send(&pacer, sent, Duration::from_secs(1)).await;
            refuse(&pacer);
            assert_eq!(state(&pacer).plateau < at_20(), learns, "{sent} sent");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_counts_from_the_very_first_start() {
        // The first start is at the pacer's origin: a refusal a second and
        // a little later is past the first second.
        let pacer = Pacer::new();
        send(&pacer, 20, Duration::from_secs(1)).await;
        tokio::time::advance(Duration::from_millis(20)).await;
        refuse(&pacer);
        assert!(pacer.learned().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_started_at_the_decrease_counts_as_after_it() {
        let pacer = learned_at_20().await;
        let decreased_at = state(&pacer).decreased_at;
        tokio::time::advance(Duration::from_secs(1)).await;
        send(&pacer, 10, Duration::from_secs(1)).await;
        // Refused, though started at the very instant of the decrease:
        // not on its way before it.
        pacer.throttled(decreased_at);
        assert!(state(&pacer).decreased_at > decreased_at);
    }

    /// A state holding [`at_20`] since `at`, for 2 s.
    fn holding(at: Instant) -> State {
        State {
            rate: at_20(),
            plateau: at_20(),
            held: f64::INFINITY,
            decreased_at: at,
            hold: Duration::from_secs(2),
            next_start: at,
            reported: at_20(),
            resumed_at: at,
            dropped_at: None,
        }
    }

    fn seen(allowed: f64, before: Option<f64>) -> Seen {
        Seen {
            engaged: true,
            accepted: 20,
            allowed,
            before,
        }
    }

    #[test]
    fn a_refused_probe_that_found_about_the_old_limit_keeps_the_plateau() {
        let at = Instant::now();
        let probe = at + Duration::from_secs(3);
        // 24 in the last second, 19.4 in the one before: (19.4 + 24) / 2
        // = 21.7 <= NOISE × 20, a fixed window's straddle.
        let mut state = holding(at);
        state.rate = 30.0;
        state.learn(probe, seen(24.0, Some(19.4)));
        assert!(close(state.plateau, at_20()), "{}", state.plateau);
        assert!(close(state.held, at_20()));
        assert_eq!(state.hold, Duration::from_secs(4));
        // (19.4 + 28) / 2 = 23.7 > NOISE × 20 = 23: a limit that rose a
        // little, measured over the two seconds.
        let mut state = holding(at);
        state.rate = 30.0;
        state.learn(probe, seen(28.0, Some(19.4)));
        assert!(close(state.plateau, PLATEAU * 23.7), "{}", state.plateau);
        // An idle second before says nothing: the last second's 28.
        let mut state = holding(at);
        state.rate = 30.0;
        state.learn(probe, seen(28.0, Some(0.9 * at_20() - 0.01)));
        assert!(close(state.plateau, PLATEAU * 28.0), "{}", state.plateau);
        let mut state = holding(at);
        state.rate = 30.0;
        state.learn(probe, seen(29.0, Some(0.9 * at_20())));
        assert!(close(state.plateau, PLATEAU * (29.0 + 0.9 * at_20()) / 2.0));
    }

    #[test]
    fn a_probe_at_exactly_noise_times_the_old_limit_found_the_same_limit() {
        let at = Instant::now();
        let probe = at + Duration::from_secs(3);
        // (20 + 26) / 2 = 23 = NOISE × 20, exactly: the same limit.
        let mut state = holding(at);
        state.rate = 30.0;
        state.learn(probe, seen(26.0, Some(20.0)));
        assert!(close(state.plateau, at_20()), "{}", state.plateau);
        // Just over: measured over both seconds.
        let mut state = holding(at);
        state.rate = 30.0;
        state.learn(probe, seen(26.2, Some(20.0)));
        assert!(close(state.plateau, PLATEAU * 23.1), "{}", state.plateau);
    }

    #[tokio::test(start_paused = true)]
    async fn two_seconds_are_counted_only_without_a_pause_in_them() {
        // A probe refused 1.5 s after a pause ended: the last second only,
        // though the client sent steadily through both (the pause is set
        // to have ended in the past, as a pause asked for by a request
        // that went before).
        for (since_pause, two_seconds) in [(1500, false), (2000, true)] {
            let pacer = learned_at_20().await;
            lock(&pacer.state).hold = Duration::from_millis(500);
            send(&pacer, 60, Duration::from_secs(3)).await;
            lock(&pacer.state).rate = 40.0;
            // 25 accepted in the last second (the first of the 26 falls
            // off its edge): (20 + 25) / 2 = 22.5, the old limit.
            send(&pacer, 26, Duration::from_secs(1)).await;
            tokio::time::advance(Duration::from_millis(1)).await;
            // The hold counts from the pause's end: over either way.
            pacer.paused_until(Instant::now() - Duration::from_millis(since_pause));
            refuse(&pacer);
            let after = state(&pacer);
            if two_seconds {
                assert!(close(after.plateau, at_20()), "{}", after.plateau);
            } else {
                assert!(
                    close(after.plateau, PLATEAU * 25.0),
                    "{since_pause} ms: {}",
                    after.plateau
                );
            }
        }
    }

    /// Accepted starts at each of `at` (ms after `base`), then a refused
    /// one at `refused`, the clock moving to each.
    async fn starts_then_refused(pacer: &Pacer, base: Instant, at: &[u64], refused: u64) {
        for ms in at.iter().chain([&refused]) {
            let when = base + Duration::from_millis(*ms);
            tokio::time::advance(when - Instant::now()).await;
            pacer.started(when);
            if *ms == refused {
                pacer.throttled(when);
            } else {
                pacer.succeeded();
            }
        }
    }

    /// A pacer made two seconds ago, and now: its first second of sending
    /// is not right after a pause.
    async fn idle_for_two_seconds() -> (Pacer, Instant) {
        let pacer = Pacer::new();
        tokio::time::advance(Duration::from_secs(2)).await;
        (pacer, Instant::now())
    }

    /// `n` times `step` ms apart, the first `from + step`.
    fn every(step: u64, from: u64, n: u64) -> Vec<u64> {
        (1..=n).map(|k| from + k * step).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_second_before_counts_only_once_the_client_sent_for_two() {
        let (pacer, base) = idle_for_two_seconds().await;
        // One start at 0, 17 in (0, 0.9], 3 in (0.9, 1.0), refused at 1 s:
        // 20 accepted in its second, so a plateau at 19.
        let mut first = vec![0];
        first.extend(every(50, 0, 17));
        first.extend([920, 940, 960]);
        starts_then_refused(&pacer, base, &first, 1_000).await;
        assert!(close(state(&pacer).plateau, PLATEAU * 20.0));
        // 16 more, refused at 1.9 s: 19 accepted in its second, a little
        // high. The second before it, (-0.1 s, 0.9 s], held 18: counted,
        // (18 + 19) / 2 would lower the plateau to PLATEAU × 18.5; but
        // the client had sent for 1.9 s only, so it is not counted.
        starts_then_refused(&pacer, base, &every(50, 1_000, 16), 1_900).await;
        let after = state(&pacer);
        assert!(close(after.plateau, PLATEAU * 19.0), "{}", after.plateau);
    }

    #[tokio::test(start_paused = true)]
    async fn the_second_before_leaves_out_the_refusals_in_it() {
        let (pacer, base) = idle_for_two_seconds().await;
        // 24 starts 50 ms apart from 0, refused at 1.2 s: 19 accepted in
        // its second, a plateau at PLATEAU × 19.
        let mut first = vec![0];
        first.extend(every(50, 0, 23));
        starts_then_refused(&pacer, base, &first, 1_200).await;
        assert!(close(state(&pacer).plateau, PLATEAU * 19.0));
        // Then 14 to 1.9 s and 18 in (2 s, 3 s), refused at 3 s: 18
        // accepted in its second; in the second before, (1 s, 2 s], 18
        // started and one was refused, so 17 accepted, and over both
        // (17 + 18) / 2 = 17.5 (with that refusal counted as accepted it
        // would be 18).
        let mut then = every(50, 1_200, 14);
        then.extend(every(50, 2_000, 18));
        starts_then_refused(&pacer, base, &then, 3_000).await;
        let after = state(&pacer);
        assert!(close(after.plateau, PLATEAU * 17.5), "{}", after.plateau);
    }

    #[test]
    fn a_refused_probe_that_found_half_as_much_again_found_a_limit_that_rose() {
        let at = Instant::now();
        let probe = at + Duration::from_secs(3);
        let mut state = holding(at);
        state.rate = 50.0;
        state.learn(probe, seen(30.0, Some(20.0)));
        assert!(close(state.plateau, PLATEAU * 30.0), "{}", state.plateau);
        assert_eq!(state.hold, HOLD_LEARNED);
        assert!(state.held.is_infinite(), "no fallback to the old limit");
        // Refused while holding it, a little below: a little lower, not
        // back to the old plateau (a 20 -> 5 -> 40 limit sat at 5 for 10 s
        // so).
        let later = probe + Duration::from_secs(2);
        state.learn(later, seen(28.0, Some(29.0)));
        assert!(close(state.plateau, PLATEAU * 28.0), "{}", state.plateau);
        assert_eq!(state.hold, HOLD_LEARNED);
        // Just under RISE: the same limit, measured over two seconds.
        let mut state = holding(at);
        state.rate = 50.0;
        state.learn(probe, seen(29.9, Some(20.0)));
        assert_eq!(state.hold, Duration::from_secs(4));
        assert!(close(state.plateau, PLATEAU * 24.95), "{}", state.plateau);
    }

    #[test]
    fn after_a_fall_the_hold_stays_under_a_third_of_the_time_since() {
        let at = Instant::now();
        let mut state = holding(at);
        state.hold = Duration::from_secs(8);
        state.dropped_at = Some(at);
        // 9 s after the fall, 3 s at most (not 16).
        state.learn(at + Duration::from_secs(9), seen(20.0, Some(19.4)));
        assert_eq!(state.hold, Duration::from_secs(3));
        // Soon after it, HOLD_FIRST at least.
        let mut state = holding(at);
        state.dropped_at = Some(at);
        state.learn(at + Duration::from_secs(3), seen(20.0, Some(19.4)));
        assert_eq!(state.hold, HOLD_FIRST);
        // Long after it, the doubling rules, up to HOLD_MAX.
        let mut state = holding(at);
        state.hold = Duration::from_secs(15);
        state.dropped_at = Some(at);
        state.learn(at + Duration::from_secs(100), seen(20.0, Some(19.4)));
        assert_eq!(state.hold, HOLD_MAX);
    }

    #[test]
    fn a_plateau_held_before_the_probe_and_found_again_is_not_lower() {
        // Refused while holding at exactly the plateau held before the
        // probe: not a lower one to go back to, but a little too high.
        let at = Instant::now();
        let mut state = holding(at);
        state.held = PLATEAU * 18.0;
        state.learn(at + Duration::from_secs(1), seen(18.0, None));
        assert!(close(state.plateau, PLATEAU * 18.0), "{}", state.plateau);
        assert!(state.held.is_infinite(), "{}", state.held);
    }

    #[test]
    fn a_refusal_while_holding_a_quarter_below_is_a_fall() {
        let at = Instant::now();
        let now = at + Duration::from_secs(1);
        // PLATEAU × 15 is at DROP × PLATEAU × 20 (15 / 20 = DROP): not below
        // it.
        let mut state = holding(at);
        state.learn(now, seen(15.0, None));
        assert_eq!(state.dropped_at, None);
        assert_eq!(state.hold, Duration::from_secs(2));
        let mut state = holding(at);
        state.learn(now, seen(14.9, None));
        assert_eq!(state.dropped_at, Some(now));
        assert_eq!(state.hold, HOLD_FIRST);
        assert!(close(state.plateau, PLATEAU * 14.9));
        assert_eq!(state.next_start, now + interval(PLATEAU * 14.9));
        // A little high, with a steady second before: over both.
        let mut state = holding(at);
        state.learn(now, seen(19.0, Some(18.0)));
        assert!(close(state.plateau, PLATEAU * 18.5), "{}", state.plateau);
        assert_eq!(state.decreased_at, now);
    }

    #[test]
    fn an_interval_is_the_inverse_of_a_finite_positive_rate() {
        assert_eq!(interval(4.0), Duration::from_millis(250));
        assert_eq!(interval(f64::INFINITY), Duration::ZERO);
        assert_eq!(interval(0.0), Duration::ZERO);
        assert_eq!(interval(-1.0), Duration::ZERO);
    }
}
