//! The learned send rate against the limiter shapes real gateways use
//! (issue 15), each a loopback server with a hidden limit of 20 accepted
//! requests a second and 3 in flight, answering 429 with `Retry-After: 1`
//! beyond either:
//! - a token bucket refilling continuously (20 deep, 20 a second);
//! - a fixed window (20 per calendar second);
//! - a sliding one-second window that does not count refused requests;
//! - a concurrency cap only (3 in flight, each request taking 150 ms, so
//!   20 a second at most);
//! - a sliding window whose limit changes: 20 a second, then 5, then 40.
//!
//! Each is driven by `send_events` at `max_in_flight` 4 and 16, every row
//! at once (each has its own server and client; the limits are per
//! server). The table is printed (`cargo test --test limiters --
//! --nocapture`): the share of requests answered 429, over the run and
//! after a warm-up of 5 s; the requests accepted a second after the
//! warm-up against the hidden limit; the time to the first 429; and, when
//! the limit changes, how long the client took to follow. Time is real
//! (the servers are on real sockets), so speed is printed and only counts
//! and wide margins are asserted. With `MARKETAP_LIMITER_CSV=path` set,
//! every request the servers saw is written there (for
//! `cargo xtask limiter-plot`).
//!
//! Before the first 429 nothing is paced (pacing costs nothing until the
//! server throttles), so the warm-up holds the requests already on their
//! way when the first 429 came.

mod support;

use std::{
    collections::{HashSet, VecDeque},
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use marketap_ext::{BatchConfig, Config, Marketap, RetryConfig};
use support::{Reply, Request, TestServer, event, ids};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(120);
const PER_SECOND: usize = 20;
const IN_FLIGHT: usize = 3;
const WINDOW: Duration = Duration::from_secs(1);
/// Events per request: small, so that the rows, all at once, are limited
/// by the servers and not by the CPU building and reading requests.
const BATCH: usize = 10;
/// The share of the run ignored by the "after warm-up" figures.
const WARM_UP: Duration = Duration::from_secs(5);
/// How long a changing limit keeps each of its values, and the values.
const PHASE: Duration = Duration::from_secs(7);
const PHASES: [usize; 3] = [20, 5, 40];
/// A request's time on a rate-limited server; under the concurrency cap
/// alone it is longer, so that 3 in flight make 20 a second.
const SERVICE: Duration = Duration::from_millis(20);
const SERVICE_CONCURRENCY_ONLY: Duration = Duration::from_millis(150);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    TokenBucket,
    FixedWindow,
    SlidingWindow,
    ConcurrencyOnly,
    Changing,
}

impl Shape {
    const ALL: [Shape; 5] = [
        Shape::TokenBucket,
        Shape::FixedWindow,
        Shape::SlidingWindow,
        Shape::ConcurrencyOnly,
        Shape::Changing,
    ];

    fn name(self) -> &'static str {
        match self {
            Shape::TokenBucket => "token bucket",
            Shape::FixedWindow => "fixed window",
            Shape::SlidingWindow => "sliding window",
            Shape::ConcurrencyOnly => "concurrency only",
            Shape::Changing => "20 -> 5 -> 40/s",
        }
    }

    /// The hidden rate `elapsed` after the server started.
    fn limit_at(self, elapsed: Duration) -> usize {
        match self {
            Shape::Changing => {
                let phase = (elapsed.as_secs_f64() / PHASE.as_secs_f64()) as usize;
                PHASES[phase.min(PHASES.len() - 1)]
            }
            _ => PER_SECOND,
        }
    }

    /// When the limit last changed before `at` (zero if it never did).
    fn changed_before(self, at: Duration) -> Duration {
        match self {
            Shape::Changing => {
                let phase = (at.as_secs_f64() / PHASE.as_secs_f64()) as u32;
                PHASE * phase.min(PHASES.len() as u32 - 1)
            }
            _ => Duration::ZERO,
        }
    }

    /// Events to send: five phases' worth of requests when the limit
    /// changes (the last phase, at 40, lasts while the client follows).
    fn events(self) -> usize {
        match self {
            Shape::Changing => 4_500,
            _ => 3_000,
        }
    }
}

/// A limiter's memory.
#[derive(Default)]
struct Limiter {
    /// Sliding window: when the accepted requests of the last second came.
    accepted_at: VecDeque<Instant>,
    /// Fixed window: the window's start and its accepted requests.
    window: Option<(Instant, usize)>,
    /// Token bucket: tokens left, and when it was last filled.
    bucket: Option<(f64, Instant)>,
}

impl Limiter {
    /// Whether a request arriving `now` is within the rate `limit`.
    fn admit(&mut self, shape: Shape, limit: usize, now: Instant) -> bool {
        match shape {
            Shape::SlidingWindow | Shape::Changing => {
                while self
                    .accepted_at
                    .front()
                    .is_some_and(|at| now.duration_since(*at) >= WINDOW)
                {
                    self.accepted_at.pop_front();
                }
                let admit = self.accepted_at.len() < limit;
                if admit {
                    self.accepted_at.push_back(now);
                }
                admit
            }
            Shape::FixedWindow => {
                let (start, count) = self.window.get_or_insert((now, 0));
                if now.duration_since(*start) >= WINDOW {
                    // Calendar seconds: windows follow each other.
                    let whole = now.duration_since(*start).as_secs();
                    *start += Duration::from_secs(whole);
                    *count = 0;
                }
                let admit = *count < limit;
                if admit {
                    *count += 1;
                }
                admit
            }
            Shape::TokenBucket => {
                let rate = limit as f64;
                let (tokens, last) = self.bucket.unwrap_or((rate, now));
                let tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(rate);
                let admit = tokens >= 1.0;
                self.bucket = Some((if admit { tokens - 1.0 } else { tokens }, now));
                admit
            }
            Shape::ConcurrencyOnly => true,
        }
    }
}

/// What a server saw and answered.
struct Seen {
    started: Instant,
    accepted: HashSet<u64>,
    limiter: Limiter,
    /// Each request: when it came, and why it was refused (`None` if
    /// accepted).
    arrivals: Vec<(Instant, Option<&'static str>)>,
}

async fn limiter_server(shape: Shape) -> (TestServer, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen {
        started: Instant::now(),
        accepted: HashSet::new(),
        limiter: Limiter::default(),
        arrivals: Vec::new(),
    }));
    let server = {
        let seen = seen.clone();
        TestServer::start(move |request: &Request| {
            let mut seen = seen.lock().unwrap();
            let now = Instant::now();
            let limit = shape.limit_at(now.duration_since(seen.started));
            // Refusals for concurrency do not count against the rate.
            let refused = if request.in_flight > IN_FLIGHT {
                Some("in flight")
            } else if !seen.limiter.admit(shape, limit, now) {
                Some("rate")
            } else {
                None
            };
            seen.arrivals.push((now, refused));
            if refused.is_some() {
                return Reply::status(429).with_header("retry-after", "1");
            }
            seen.accepted.extend(ids(request));
            let service = match shape {
                Shape::ConcurrencyOnly => SERVICE_CONCURRENCY_ONLY,
                _ => SERVICE,
            };
            Reply::accepted().after(service)
        })
        .await
    };
    (server, seen)
}

/// How one row went.
struct Row {
    shape: Shape,
    max_in_flight: usize,
    requests: usize,
    refused: usize,
    /// The share of requests answered 429, over the run and after the
    /// warm-up.
    share: f64,
    share_after_warm_up: f64,
    /// Requests accepted a second after the warm-up, against the hidden
    /// limit over the same time.
    throughput: f64,
    first_429: Option<Duration>,
    /// When the limit changes: the time each change took to follow.
    follow: Vec<Duration>,
    learned_rate: Option<f64>,
    elapsed: Duration,
    /// `shape,max_in_flight,seconds,refused,limit` lines.
    csv: String,
}

/// Sends the shape's events at `max_in_flight` through a fresh client.
async fn run(shape: Shape, max_in_flight: usize) -> Row {
    let (server, seen) = limiter_server(shape).await;
    let client = Marketap::new(
        Config::new("test-key", "proj")
            .with_base_url(server.url())
            .with_batch(
                BatchConfig::default()
                    .with_max_batch_size(BATCH)
                    .with_max_in_flight(max_in_flight),
            )
            .with_retry(
                RetryConfig::default()
                    .with_initial_backoff(Duration::from_millis(50))
                    .with_max_backoff(Duration::from_secs(2)),
            ),
    )
    .unwrap();
    let n = shape.events();
    let report = timeout(LIMIT, client.send_events((0..n).map(event)))
        .await
        .expect("bounded");
    let seen = seen.lock().unwrap();
    let elapsed = seen.started.elapsed();
    assert!(report.is_success(), "{shape:?}: {report}");
    assert_eq!(seen.accepted.len(), n, "{shape:?}: every event accepted");
    let offsets: Vec<(Duration, Option<&str>)> = seen
        .arrivals
        .iter()
        .map(|(at, refused)| (at.duration_since(seen.started), *refused))
        .collect();
    let refused = offsets.iter().filter(|(_, r)| r.is_some()).count();
    assert_eq!(report.throttled, refused);
    let after: Vec<_> = offsets.iter().filter(|(at, _)| *at >= WARM_UP).collect();
    let refused_after = after.iter().filter(|(_, r)| r.is_some()).count();
    let last = offsets.last().map_or(Duration::ZERO, |(at, _)| *at);
    // The time the throughput is measured over: after the warm-up, and,
    // when the limit changes, not in the 5 s after a change.
    let steady = |at: Duration| at >= WARM_UP && at >= shape.changed_before(at) + WARM_UP;
    let accepted_steady = offsets
        .iter()
        .filter(|(at, r)| r.is_none() && steady(*at))
        .count();
    let step = Duration::from_millis(10);
    let allowed_steady: f64 = (0..)
        .map(|i| step * i)
        .take_while(|at| *at <= last)
        .filter(|at| steady(*at))
        .map(|at| shape.limit_at(at) as f64 * step.as_secs_f64())
        .sum();
    let follow = if shape == Shape::Changing {
        followed(&offsets)
    } else {
        Vec::new()
    };
    let csv = offsets.iter().fold(String::new(), |mut csv, (at, r)| {
        let _ = writeln!(
            csv,
            "{},{max_in_flight},{:.4},{},{}",
            shape.name(),
            at.as_secs_f64(),
            u8::from(r.is_some()),
            shape.limit_at(*at)
        );
        csv
    });
    Row {
        shape,
        max_in_flight,
        requests: offsets.len(),
        refused,
        share: refused as f64 / offsets.len().max(1) as f64,
        share_after_warm_up: refused_after as f64 / after.len().max(1) as f64,
        throughput: accepted_steady as f64 / allowed_steady.max(1.0),
        first_429: offsets.iter().find(|(_, r)| r.is_some()).map(|(at, _)| *at),
        follow,
        learned_rate: report.learned_rate,
        elapsed,
        csv,
    }
}

/// How long the client took to follow each change of a changing limit:
/// until the end of the first second after the change in which 85% of
/// the new limit was accepted and nothing refused (a phase's length if
/// never).
fn followed(offsets: &[(Duration, Option<&str>)]) -> Vec<Duration> {
    let step = Duration::from_millis(50);
    PHASES
        .iter()
        .enumerate()
        .skip(1)
        .map(|(phase, limit)| {
            let change = PHASE * phase as u32;
            let wanted = (*limit as f64 * 0.85).ceil() as usize;
            (0..)
                .map(|i| change + step * i)
                .take_while(|from| *from + WINDOW <= change + PHASE)
                .find(|from| {
                    let second: Vec<_> = offsets
                        .iter()
                        .filter(|(at, _)| *at >= *from && *at < *from + WINDOW)
                        .collect();
                    second.iter().all(|(_, r)| r.is_none()) && second.len() >= wanted
                })
                .map_or(PHASE, |from| from + WINDOW - change)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limiter_shape_is_learned_not_burst_into() {
    // `MARKETAP_LIMITER_ONLY=sliding` runs only the rows of the shapes so named.
    let only = std::env::var("MARKETAP_LIMITER_ONLY").unwrap_or_default();
    let rows = Shape::ALL
        .into_iter()
        .filter(|shape| shape.name().contains(only.as_str()))
        .flat_map(|shape| [4, 16].map(|max_in_flight| tokio::spawn(run(shape, max_in_flight))));
    let mut table = Vec::new();
    for row in rows.collect::<Vec<_>>() {
        table.push(row.await.expect("the row ran"));
    }
    println!(
        "limiter           in flight  requests  429s  429 share  after warm-up  \
         rate/limit  first 429  learned  follows  time"
    );
    for row in &table {
        let follow: Vec<String> = row
            .follow
            .iter()
            .map(|d| format!("{:.1}s", d.as_secs_f64()))
            .collect();
        println!(
            "{:<17} {:>9}  {:>8}  {:>4}  {:>8.1}%  {:>12.1}%  {:>9.0}%  {:>9}  {:>7}  {:>7}  {:.1}s",
            row.shape.name(),
            row.max_in_flight,
            row.requests,
            row.refused,
            row.share * 100.0,
            row.share_after_warm_up * 100.0,
            row.throughput * 100.0,
            row.first_429
                .map_or("none".into(), |d| format!("{:.2}s", d.as_secs_f64())),
            row.learned_rate
                .map_or("none".into(), |r| format!("{r:.1}/s")),
            if follow.is_empty() {
                "-".into()
            } else {
                follow.join(" ")
            },
            row.elapsed.as_secs_f64(),
        );
    }
    if let Some(path) = std::env::var_os("MARKETAP_LIMITER_CSV") {
        let csv = table.iter().fold(
            String::from("limiter,max_in_flight,seconds,refused,limit\n"),
            |csv, row| csv + &row.csv,
        );
        std::fs::write(path, csv).expect("the CSV is written");
    }
    for row in &table {
        let name = format!("{} at {}", row.shape.name(), row.max_in_flight);
        // Issue 15 measured 34% under the sliding window before the
        // learned rate, and the target is under 5% after the
        // warm-up (measured: 1.1% at most over ten runs). Throughput (85%
        // of the limit is the target; 90% to 105% in every row of eight
        // clean runs, down to 55% in two runs the test process stalled in)
        // and how fast a changed limit is followed (target 5 s; 3.2 to
        // 4.0 s up, 1.2 to 1.3 s down, 7.0 s up in a stalled run) are
        // timing, printed only.
        assert!(
            row.share_after_warm_up < 0.05,
            "{name}: {:.1}% answered 429 after the warm-up",
            row.share_after_warm_up * 100.0
        );
        assert!(row.requests > row.refused, "{name}");
    }
}
