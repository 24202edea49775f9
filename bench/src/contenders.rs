//! The contenders, the enqueue-latency test, and the ingestor against a
//! sink that refuses everything.
//!
//! Every contender sends the same events in requests of [`BATCH`] with
//! [`IN_FLIGHT`] at once, on a Tokio runtime of [`crate::WORKER_THREADS`]
//! workers, from a task on that runtime, except `ingestor-burst`, which
//! tracks from the runtime's main body ([`Contender::tracks_from_main_body`]).
//! Each builds its own representation of the events and its client before
//! the clock starts; the clock covers sending only, including dropping
//! what was sent. The two end-to-end contenders, `baseline-e2e` and
//! `ext-e2e`, are the exception: they build each event from its input
//! inside the timed section, as a service pays for it.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt, future, stream};
use marketap_api::types::{CreateBulkEventReq, CreateEventReq};
use marketap_ext::{
    BatchConfig, Config, Event, Ingestor, IngestorConfig, Marketap, Product,
    spool::{SpoolConfig, SyncPolicy},
};
use reqwest::{StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    BoxError,
    events::{self, API_KEY, EventSpec, PROJECT_ID},
    measure::{Clock, InputMark},
    report::{LatencyResult, OutageResult, RefusedResult, RunResult},
    sink::{EVENTS_PATH, SinkClient},
};

/// Items per request.
pub const BATCH: usize = 1000;
/// Requests in flight at once.
pub const IN_FLIGHT: usize = 4;
/// The ingestor's queue in the throughput runs (its default).
pub const INGESTOR_CAPACITY: usize = 10_000;
/// Tasks tracking at once in `ingestor-spool`.
pub const SPOOL_PRODUCERS: usize = 64;
/// Longest wait for an ingestor to drain.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// Hand-written reqwest + serde_json.
    Baseline,
    /// The generated `marketap-api` client.
    Raw,
    /// `marketap-ext`'s batch call.
    Ext,
    /// `marketap-ext`'s `Ingestor` as a service uses it: `track()` each
    /// event from a task, into the default capacity, then `shutdown`.
    Ingestor,
    /// The `Ingestor` as a batch job or a burst of traffic uses it: `track()`
    /// each event from the runtime's main body (what `#[tokio::main]` runs),
    /// into a capacity that holds them all, then `shutdown`.
    IngestorBurst,
    /// The `marketap` command line importing a prebuilt NDJSON file (see
    /// [`crate::cli`]); compared with `ext`, not the baseline.
    Cli,
    /// The same, from a CP949 file with Korean product names read with
    /// `--encoding cp949`: its own figure, run apart from the rounds.
    CliCp949,
    /// `baseline`, building each of its structs inside the timed section.
    BaselineE2e,
    /// `ext`, building each event with `Event::builder` inside the timed
    /// section; compared with `baseline-e2e` ([`E2E_TARGET`]).
    ExtE2e,
    /// `ingestor` with a durable spool (the default `SyncPolicy`, an fsync
    /// at most every 200 ms): `track()` returns once each event is written
    /// to the spool's file. It tracks from [`SPOOL_PRODUCERS`] tasks at
    /// once, as a service's request handlers do: the callers waiting at
    /// the same moment share one write (a single task awaiting each
    /// `track()` in turn would pay a write per event).
    IngestorSpool,
}

impl Contender {
    pub const ALL: [Self; 9] = [
        Self::Baseline,
        Self::Raw,
        Self::Ext,
        Self::Ingestor,
        Self::IngestorBurst,
        Self::Cli,
        Self::BaselineE2e,
        Self::ExtE2e,
        Self::IngestorSpool,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Raw => "raw",
            Self::Ext => "ext",
            Self::Ingestor => "ingestor",
            Self::IngestorBurst => "ingestor-burst",
            Self::Cli => "cli",
            Self::CliCp949 => "cli-cp949",
            Self::BaselineE2e => "baseline-e2e",
            Self::ExtE2e => "ext-e2e",
            Self::IngestorSpool => "ingestor-spool",
        }
    }

    /// The least events/s, as a share of the baseline's in the same round,
    /// this contender is meant to reach; none for the baseline itself, for
    /// `cli`, which is held to [`CLI_TARGET`] of `ext` instead, and for the
    /// end-to-end pair, held to [`E2E_TARGET`] of each other.
    pub fn ratio_target(self) -> Option<f64> {
        match self {
            Self::Baseline | Self::Cli | Self::CliCp949 | Self::BaselineE2e | Self::ExtE2e => None,
            Self::Raw | Self::Ext | Self::Ingestor => Some(0.95),
            Self::IngestorBurst => Some(0.9),
            Self::IngestorSpool => Some(0.8),
        }
    }

    /// Whether it sends from the future `block_on` runs (not a worker
    /// thread) rather than from a spawned task.
    pub fn tracks_from_main_body(self) -> bool {
        self == Self::IngestorBurst
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain([Self::CliCp949])
            .find(|c| c.name() == name)
    }
}

impl fmt::Display for Contender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The least events/s of `cli`, as a share of `ext`'s in the same round:
/// parsing a line costs about what serialising it does.
pub const CLI_TARGET: f64 = 0.6;

/// The least events/s of `ext-e2e`, as a share of `baseline-e2e`'s in the
/// same round: building with the ext builders (and their checks) may cost a
/// little more than writing the structs by hand, not much more.
pub const E2E_TARGET: f64 = 0.9;

/// Sends `n` events to the sink at `url` as `contender`, and measures it.
/// Fails unless the sink counts exactly `n` items.
pub fn run(contender: Contender, n: usize, url: &str) -> Result<RunResult, BoxError> {
    if matches!(contender, Contender::Cli | Contender::CliCp949) {
        return crate::cli::run(n, url, contender == Contender::CliCp949);
    }
    let runtime = crate::runtime()?;
    let measured = measure_run(contender, n, url.to_owned());
    if contender.tracks_from_main_body() {
        runtime.block_on(measured)
    } else {
        runtime.block_on(async { tokio::spawn(measured).await? })
    }
}

async fn measure_run(contender: Contender, n: usize, url: String) -> Result<RunResult, BoxError> {
    let sink = SinkClient::new(&url)?;
    let prepared = Prepared::new(contender, n, &url)?;
    sink.reset().await?;
    let input = InputMark::take();
    let clock = Clock::start();
    prepared.send(n).await?;
    let (wall, cpu) = clock.stop();
    let memory = input.peak();
    let stats = sink.stats().await?;
    stats.expect_items(n)?;
    Ok(RunResult {
        contender: contender.name().to_owned(),
        n: n as u64,
        wall_secs: wall.as_secs_f64(),
        cpu_secs: cpu.as_secs_f64(),
        memory,
        sink: stats,
    })
}

/// Tracks `n` events through an ingestor whose queue holds them all, while
/// the sink at `url` answers slowly, timing each `track()`; then shuts it
/// down and checks every event arrived. With `spool`, through a spool with
/// that policy: each `track()` then waits for its group commit.
pub fn latency(n: usize, url: &str, spool: Option<SyncPolicy>) -> Result<LatencyResult, BoxError> {
    let url = url.to_owned();
    crate::runtime()?.block_on(async move {
        tokio::spawn(async move {
            let sink = SinkClient::new(&url)?;
            let client = ext_client(&url)?;
            let events: Vec<Event> = events::generate(n).map(ext_event).collect();
            sink.reset().await?;
            // Room for every event: `track()` never waits for space.
            let capacity = n.max(1);
            let mut config = IngestorConfig::default().with_capacity(capacity);
            let scratch = match spool {
                Some(sync) => {
                    let dir = ScratchDir::new("latency")?;
                    config = config.with_spool(SpoolConfig::new(dir.path()).with_sync(sync));
                    Some(dir)
                }
                None => None,
            };
            let ingestor = client.ingestor(config)?;
            let mut nanos = Vec::with_capacity(n);
            for event in events {
                let start = Instant::now();
                ingestor.track(event).await?;
                nanos.push(start.elapsed().as_nanos() as u64);
            }
            let after_tracking = ingestor.metrics();
            shut_down_delivered(ingestor, n).await?;
            drop(scratch);
            sink.stats().await?.expect_items(n)?;
            nanos.sort_unstable();
            let micros = |q: f64| percentile(&nanos, q) as f64 / 1000.0;
            Ok(LatencyResult {
                n: n as u64,
                capacity: capacity as u64,
                p50_us: micros(0.50),
                p99_us: micros(0.99),
                max_us: micros(1.0),
                delivered_after_tracking: after_tracking.delivered,
                queued_after_tracking: after_tracking.queued,
            })
        })
        .await?
    })
}

/// Tracks `n` events, each built only when it is tracked, through an
/// ingestor with the default settings (no `on_failure`, no dead-letter
/// file) while the sink at `url` refuses every request with a 400; then
/// shuts it down. Fails unless every item is counted as failed and the
/// sink saw each exactly once.
pub fn refused(n: usize, url: &str) -> Result<RefusedResult, BoxError> {
    let url = url.to_owned();
    crate::runtime()?.block_on(async move {
        tokio::spawn(async move {
            let sink = SinkClient::new(&url)?;
            // Every request is refused whole: isolating the items would
            // split each request up to its bound (129 requests for one),
            // which is not what this run measures.
            let client = client_with(&url, ext_batch().with_isolate_bad_requests(false))?;
            sink.reset().await?;
            // No input is built ahead: the memory measured is the ingestor's.
            let input = InputMark::take();
            let clock = Clock::start();
            let config = IngestorConfig::default();
            let (capacity, max_retained) = (config.capacity(), config.max_retained());
            let ingestor = client.ingestor(config)?;
            for spec in events::generate(n) {
                ingestor.track(ext_event(spec)).await?;
            }
            let report = ingestor.shutdown(SHUTDOWN_DEADLINE).await;
            let (wall, _) = clock.stop();
            let memory = input.peak();
            let metrics = ingestor.metrics();
            let stats = sink.stats().await?;
            stats.expect_items(n)?;
            if metrics.failed != n as u64 || report.delivered != 0 {
                return Err(format!(
                    "refused: metrics.failed is {} and {} were delivered; expected {n} failed, none delivered",
                    metrics.failed, report.delivered
                )
                .into());
            }
            Ok(RefusedResult {
                n: n as u64,
                capacity: capacity as u64,
                max_retained: max_retained as u64,
                wall_secs: wall.as_secs_f64(),
                memory,
                failed: metrics.failed,
                unreported: metrics.unreported,
                undelivered_items: report.undelivered_items() as u64,
                sink: stats,
            })
        })
        .await?
    })
}

/// Tracks `n` events, each built only when it is tracked, through an
/// ingestor with a spool while the sink at `url` answers 503 to every
/// request (an outage): the spool grows to `n` items on disk while memory
/// holds at most the default capacity. Then shuts down, leaving them in the
/// spool, and checks they all are.
pub fn outage(n: usize, url: &str) -> Result<OutageResult, BoxError> {
    let url = url.to_owned();
    crate::runtime()?.block_on(async move {
        tokio::spawn(async move {
            let client = ext_client(&url)?;
            let dir = ScratchDir::new("outage")?;
            let input = InputMark::take();
            let clock = Clock::start();
            let config = IngestorConfig::default().with_spool(SpoolConfig::new(dir.path()));
            let capacity = config.capacity();
            let ingestor = client.ingestor(config)?;
            for spec in events::generate(n) {
                ingestor.track(ext_event(spec)).await?;
            }
            let metrics = ingestor.metrics();
            let report = ingestor.shutdown(Duration::from_secs(1)).await;
            let (wall, _) = clock.stop();
            let memory = input.peak();
            if report.spooled != n as u64 || report.delivered != 0 {
                return Err(format!(
                    "outage: {} left in the spool and {} delivered; expected all {n} left",
                    report.spooled, report.delivered
                )
                .into());
            }
            Ok(OutageResult {
                n: n as u64,
                capacity: capacity as u64,
                wall_secs: wall.as_secs_f64(),
                memory,
                spooled_bytes: metrics.spooled_bytes,
            })
        })
        .await?
    })
}

/// Tracks `events` from [`SPOOL_PRODUCERS`] tasks, each taking the next
/// event in turn, as a service's request handlers take the next request:
/// the events tracked at one moment lie next to each other in the input,
/// which every other contender walks in order too.
async fn track_concurrently(ingestor: &Ingestor, events: Vec<Event>) -> Result<(), BoxError> {
    let events = Arc::new(Mutex::new(events.into_iter()));
    let mut producers = tokio::task::JoinSet::new();
    for _ in 0..SPOOL_PRODUCERS {
        let (ingestor, events) = (ingestor.clone(), events.clone());
        producers.spawn(async move {
            loop {
                let next = events.lock().expect("not poisoned").next();
                let Some(event) = next else { break };
                ingestor.track(event).await?;
            }
            Ok::<(), marketap_ext::EnqueueError<Event>>(())
        });
    }
    while let Some(tracked) = producers.join_next().await {
        tracked??;
    }
    Ok(())
}

/// A directory of its own under the system's temporary directory, removed
/// when dropped.
pub(crate) struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    pub(crate) fn new(what: &str) -> std::io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "marketap-bench-{what}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Shuts `ingestor` down and checks that all `n` items were delivered.
async fn shut_down_delivered(ingestor: Ingestor, n: usize) -> Result<(), BoxError> {
    let report = ingestor.shutdown(SHUTDOWN_DEADLINE).await;
    if report.undelivered_items() == 0 && report.delivered == n as u64 {
        Ok(())
    } else {
        Err(format!(
            "ingestor delivered {} of {n}, {} undelivered, {} unreported",
            report.delivered,
            report.undelivered_items(),
            report.unreported
        )
        .into())
    }
}

/// The value at quantile `q` of sorted `values` (nearest rank).
fn percentile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or(0)
}

/// A contender's events and client, ready to send.
enum Prepared {
    Baseline {
        http: reqwest::Client,
        url: String,
        auth: header::HeaderValue,
        events: Vec<BaselineEvent>,
    },
    Raw {
        api: marketap_api::Client,
        events: Vec<CreateEventReq>,
    },
    Ext {
        client: Marketap,
        events: Vec<Event>,
    },
    Ingestor {
        client: Marketap,
        events: Vec<Event>,
        capacity: usize,
        /// With a spool, in this directory (removed after the run).
        spool: Option<ScratchDir>,
    },
    /// The inputs only: each event is built on the clock.
    BaselineE2e {
        http: reqwest::Client,
        url: String,
        auth: header::HeaderValue,
        specs: Vec<EventSpec>,
    },
    ExtE2e {
        client: Marketap,
        specs: Vec<EventSpec>,
    },
}

impl Prepared {
    fn new(contender: Contender, n: usize, url: &str) -> Result<Self, BoxError> {
        let specs = events::generate(n);
        Ok(match contender {
            Contender::Baseline => Self::Baseline {
                http: http_client()?,
                url: baseline_url(url),
                auth: baseline_auth()?,
                events: specs.map(baseline_event).collect(),
            },
            Contender::BaselineE2e => Self::BaselineE2e {
                http: http_client()?,
                url: baseline_url(url),
                auth: baseline_auth()?,
                specs: specs.collect(),
            },
            Contender::ExtE2e => Self::ExtE2e {
                client: ext_client(url)?,
                specs: specs.collect(),
            },
            Contender::Raw => Self::Raw {
                api: marketap_api::Client::new_with_client(
                    url,
                    http_client()?,
                    marketap_api::Auth::bearer(API_KEY)?,
                ),
                events: specs.map(raw_event).collect(),
            },
            Contender::Ext => Self::Ext {
                client: ext_client(url)?,
                events: specs.map(ext_event).collect(),
            },
            Contender::Ingestor => Self::Ingestor {
                client: ext_client(url)?,
                events: specs.map(ext_event).collect(),
                capacity: INGESTOR_CAPACITY,
                spool: None,
            },
            Contender::IngestorSpool => Self::Ingestor {
                client: ext_client(url)?,
                events: specs.map(ext_event).collect(),
                capacity: INGESTOR_CAPACITY,
                spool: Some(ScratchDir::new("spool")?),
            },
            Contender::Cli | Contender::CliCp949 => {
                unreachable!("run() hands cli to crate::cli")
            }
            Contender::IngestorBurst => Self::Ingestor {
                client: ext_client(url)?,
                events: specs.map(ext_event).collect(),
                // Room for every event: the queue fills as fast as the loop
                // runs, the way a batch job or a burst of traffic fills it.
                capacity: n.max(1),
                spool: None,
            },
        })
    }

    /// Sends everything; the part on the clock.
    async fn send(self, n: usize) -> Result<(), BoxError> {
        match self {
            Self::Baseline {
                http,
                url,
                auth,
                events,
            } => send_baseline(&http, &url, &auth, stream::iter(events)).await,
            Self::BaselineE2e {
                http,
                url,
                auth,
                specs,
            } => {
                let events = stream::iter(specs).map(baseline_event);
                send_baseline(&http, &url, &auth, events).await
            }
            Self::Raw { api, events } => {
                stream::iter(events)
                    .chunks(BATCH)
                    .map(|events| {
                        let api = &api;
                        async move {
                            let body = CreateBulkEventReq { events };
                            api.collect_bulk_user_events(PROJECT_ID, &body)
                                .await
                                .map(drop)
                                .map_err(|e| BoxError::from(e.to_string()))
                        }
                    })
                    .buffer_unordered(IN_FLIGHT)
                    .try_for_each(|()| future::ok(()))
                    .await
            }
            Self::Ext { client, events } => send_ext(&client, stream::iter(events), n).await,
            Self::ExtE2e { client, specs } => {
                send_ext(&client, stream::iter(specs).map(ext_event), n).await
            }
            Self::Ingestor {
                client,
                events,
                capacity,
                spool,
            } => {
                let mut config = IngestorConfig::default().with_capacity(capacity);
                if let Some(dir) = &spool {
                    config = config.with_spool(SpoolConfig::new(dir.path()));
                }
                let ingestor = client.ingestor(config)?;
                if spool.is_some() {
                    track_concurrently(&ingestor, events).await?;
                } else {
                    for event in events {
                        ingestor.track(event).await?;
                    }
                }
                shut_down_delivered(ingestor, n).await
            }
        }
    }
}

/// Sends `events` with the batch call; fails unless all `n` are accepted.
async fn send_ext(
    client: &Marketap,
    events: impl futures::Stream<Item = Event> + Send,
    n: usize,
) -> Result<(), BoxError> {
    let report = client.send_stream(events).await;
    if report.is_success() && report.accepted == n {
        Ok(())
    } else {
        Err(format!("ext: {report}").into())
    }
}

/// The HTTP client of `baseline` and `raw`: the settings `marketap-ext`
/// gives its own.
fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(marketap_ext::USER_AGENT)
        .build()
}

fn ext_client(url: &str) -> Result<Marketap, BoxError> {
    client_with(url, ext_batch())
}

/// The batching every ext contender uses.
fn ext_batch() -> BatchConfig {
    BatchConfig::default()
        .with_max_batch_size(BATCH)
        .with_max_in_flight(IN_FLIGHT)
}

fn client_with(url: &str, batch: BatchConfig) -> Result<Marketap, BoxError> {
    let config = Config::new(API_KEY, PROJECT_ID)
        .with_base_url(url)
        .with_batch(batch);
    Ok(Marketap::new(config)?)
}

// ------------------------------------------------------------ baseline

/// What one would write by hand: the API's event shape (fields in the
/// order the generated type writes them), properties as a JSON map, and the
/// same data model as the other contenders: the timestamp is a chrono
/// `DateTime<Utc>`, formatted when the body is serialised. (Keeping it as a
/// preformatted string instead moves ~0.4 µs/event of chrono formatting out
/// of the timed section; the README gives that figure too.)
#[derive(Debug, Serialize)]
struct BaselineEvent {
    event_name: String,
    properties: Map<String, Value>,
    timestamp: chrono::DateTime<chrono::Utc>,
    user_id: String,
}

#[derive(Serialize)]
struct BaselineBody {
    events: Vec<BaselineEvent>,
}

fn baseline_url(url: &str) -> String {
    format!("{url}{EVENTS_PATH}?project_id={PROJECT_ID}")
}

fn baseline_auth() -> Result<header::HeaderValue, BoxError> {
    Ok(header::HeaderValue::try_from(format!("Bearer {API_KEY}"))?)
}

/// Sends `events` as the baseline does: requests of [`BATCH`], [`IN_FLIGHT`]
/// at once.
async fn send_baseline(
    http: &reqwest::Client,
    url: &str,
    auth: &header::HeaderValue,
    events: impl futures::Stream<Item = BaselineEvent>,
) -> Result<(), BoxError> {
    events
        .chunks(BATCH)
        .map(|chunk| post_baseline(http, url, auth, chunk))
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|()| future::ok(()))
        .await
}

async fn post_baseline(
    http: &reqwest::Client,
    url: &str,
    auth: &header::HeaderValue,
    events: Vec<BaselineEvent>,
) -> Result<(), BoxError> {
    let body = serde_json::to_vec(&BaselineBody { events })?;
    let response = http
        .post(url)
        .header(header::AUTHORIZATION, auth.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .header("api-version", "1.0.0")
        .body(body)
        .send()
        .await?;
    match response.status() {
        StatusCode::ACCEPTED => Ok(()),
        status => Err(format!("baseline: sink answered {status}").into()),
    }
}

fn properties(spec: &EventSpec) -> Map<String, Value> {
    let mut item = Map::new();
    item.insert(events::PRODUCT_ID.into(), spec.product_id.clone().into());
    item.insert(events::PRODUCT_NAME.into(), spec.product_name.into());
    item.insert(events::PRODUCT_PRICE.into(), spec.price.into());
    item.insert(events::QUANTITY.into(), spec.quantity.into());
    item.insert(events::CATEGORY1.into(), spec.category.into());
    let mut properties = Map::new();
    properties.insert(events::ITEMS.into(), vec![Value::Object(item)].into());
    properties.insert(events::IS_MEMBER.into(), spec.is_member.into());
    properties
}

fn baseline_event(spec: EventSpec) -> BaselineEvent {
    BaselineEvent {
        event_name: spec.event_name.to_owned(),
        properties: properties(&spec),
        timestamp: spec.timestamp.into_datetime(),
        user_id: spec.user_id,
    }
}

// ------------------------------------------------------------------ raw

pub(crate) fn raw_event(spec: EventSpec) -> CreateEventReq {
    CreateEventReq {
        event_name: spec.event_name.to_owned(),
        properties: properties(&spec),
        timestamp: Some(spec.timestamp.into_datetime()),
        user_id: spec.user_id,
    }
}

// ------------------------------------------------------- ext, ingestors

pub(crate) fn ext_event(spec: EventSpec) -> Event {
    let product = Product::new(spec.product_id)
        .name(spec.product_name)
        .price(spec.price)
        .quantity(spec.quantity)
        .category1(spec.category);
    Event::builder(spec.user_id, spec.event_name)
        .items([product])
        .property(events::IS_MEMBER, spec.is_member)
        .timestamp(spec.timestamp)
        .build()
        .expect("the benchmark's events are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every contender puts the same bytes on the wire.
    #[test]
    fn representations_serialize_alike() {
        for spec in events::generate(200) {
            let baseline = serde_json::to_string(&baseline_event(spec.clone())).unwrap();
            let raw = serde_json::to_string(&raw_event(spec.clone())).unwrap();
            let ext = serde_json::to_string(&ext_event(spec)).unwrap();
            assert_eq!(baseline, raw);
            assert_eq!(baseline, ext);
        }
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.5), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&values, 1.0), 100);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
