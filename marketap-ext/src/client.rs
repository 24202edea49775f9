//! [`Marketap`], the client: built once from a [`Config`], cheap to clone,
//! and the home of every call people make. It wires the API key and project
//! id into every request so callers never pass them, and keeps the
//! generated client reachable through [`Marketap::raw`]. The work is done
//! elsewhere: the [`delivery`](crate::delivery) engine sends, the ingestor
//! queues, the dead-letter file stores.
//!
//! # What the calls return
//!
//! One pattern: a call that may send **many requests** returns a
//! [`BatchReport`] (or a stream of [`RequestOutcome`]s), because some
//! requests can fail while others succeed, and every failed item must come
//! back; a call that sends **one request** returns a `Result`. Both are
//! `#[must_use]`. The two calls that differ say why:
//! - [`Marketap::delete_users`] takes plain ids and checks every one before
//!   sending anything, so a bad id fails the whole call
//!   (`Err(ValidationError)`): a privacy request is not sent half-done.
//! - [`Marketap::delete_user`] and [`Marketap::resend`] send one request
//!   and have no items of their own to hand back, so they fail with the
//!   [`Error`] alone.

use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::{Stream, StreamExt, stream};

use crate::{
    config::{BatchConfig, Config, Connection},
    dead_letter::DeadLetter,
    delivery::Delivery,
    delivery::cancel::{Cancel, Stop},
    error::{ConfigError, Error, ValidationError},
    ingest::{Ingestor, IngestorConfig},
    model::item::{Device, Event, EventBuilder, UserDeletion, UserProfile, UserProfileBuilder},
    model::kind::Item,
    report::{BatchReport, DeliveryStats, FailedBatch, RequestOutcome},
};

/// The Marketap client. Clones share one connection pool.
///
/// ```no_run
/// use marketap_ext::{Event, Marketap};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Marketap::from_env()?;
/// let event = Event::builder("user-42", "mkt_login").build()?;
/// client.send_events([event]).await.into_result()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Marketap {
    inner: Arc<Connection>,
}

impl fmt::Debug for Marketap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Marketap")
            .field(
                "base_url",
                &marketap_api::ClientInfo::baseurl(&self.inner.api),
            )
            .field("project_id", &self.inner.project_id)
            .field("retry", &self.inner.retry)
            .field("batch", &self.inner.batch)
            .field("reserved_check", &self.inner.reserved_check)
            .finish_non_exhaustive()
    }
}

impl Marketap {
    /// A client for `config`. Every setting is checked here; nothing is
    /// sent.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        Ok(Self {
            inner: Arc::new(config.connect()?),
        })
    }

    /// A client from `MARKETAP_API_KEY`, `MARKETAP_PROJECT_ID` and,
    /// optionally, `MARKETAP_BASE_URL`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(Config::from_env()?)
    }

    /// The generated client, with authentication wired in, for calls of
    /// your own. Pass [`project_id`](Self::project_id) to each.
    pub fn raw(&self) -> &marketap_api::Client {
        &self.inner.api
    }

    /// The project every request is for.
    pub fn project_id(&self) -> &str {
        &self.inner.project_id
    }

    /// An event builder, as [`Event::builder`], that runs the reserved check
    /// only if this client's [`Config::with_reserved_check`] says so. The
    /// typed setters (`revenue`, `order_id`, `items`) are on the builder.
    pub fn event(&self, user_id: impl Into<String>, event_name: impl Into<String>) -> EventBuilder {
        Event::builder(user_id, event_name).reserved_check(self.inner.reserved_check)
    }

    /// A profile builder, as [`UserProfile::builder`], that runs the reserved
    /// check only if this client's [`Config::with_reserved_check`] says so.
    pub fn profile(&self, user_id: impl Into<String>) -> UserProfileBuilder {
        UserProfile::builder(user_id).reserved_check(self.inner.reserved_check)
    }

    /// Sends events: any number, in requests of at most 1,000.
    pub async fn send_events(&self, events: impl IntoIterator<Item = Event>) -> BatchReport<Event> {
        self.send_stream(stream::iter(events)).await
    }

    /// Updates user profiles: any number, in requests of at most 1,000.
    pub async fn update_profiles(
        &self,
        profiles: impl IntoIterator<Item = UserProfile>,
    ) -> BatchReport<UserProfile> {
        self.send_stream(stream::iter(profiles)).await
    }

    /// Updates device push tokens: any number, in requests of at most 1,000.
    pub async fn update_devices(
        &self,
        devices: impl IntoIterator<Item = Device>,
    ) -> BatchReport<Device> {
        self.send_stream(stream::iter(devices)).await
    }

    /// Requests deletion of users' profiles. One id goes to the
    /// single-deletion endpoint, several to the bulk one. Every id is
    /// checked before anything is sent; an empty list is an error. The
    /// report holds what the server did not accept.
    pub async fn delete_users<I>(
        &self,
        user_ids: I,
    ) -> Result<BatchReport<UserDeletion>, ValidationError>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let deletions = user_ids
            .into_iter()
            .map(UserDeletion::new)
            .collect::<Result<Vec<_>, _>>()?;
        if deletions.is_empty() {
            return Err(ValidationError::empty("user_ids", "[]"));
        }
        Ok(self.send_stream(stream::iter(deletions)).await)
    }

    /// Requests deletion of one user's profile: one request, so a `Result`.
    pub async fn delete_user(&self, user_id: impl Into<String>) -> Result<(), Error> {
        let deletion = UserDeletion::new(user_id)?;
        self.send_batch(vec![deletion])
            .await
            .map(drop)
            .map_err(|failed| failed.error)
    }

    /// Sends `items` as exactly one request (with retries). More than
    /// 1,000 items, or none, is a validation error and nothing is sent; on
    /// any failure the items come back in the error.
    pub async fn send_batch<T: Item>(&self, items: Vec<T>) -> Result<usize, FailedBatch<T>> {
        Delivery::new(self.inner.clone(), Cancel::never())
            .send_exactly(items)
            .await
            .map(|accepted| accepted.items)
    }

    /// Sends a stream of items of any length and returns one report: see
    /// [`deliver`](Self::deliver) for how.
    pub async fn send_stream<T: Item>(&self, items: impl Stream<Item = T>) -> BatchReport<T> {
        let mut outcomes = self.deliver(items);
        let mut report = BatchReport::default();
        while let Some(outcome) = outcomes.next().await {
            report.record(outcome.result);
        }
        report.add_stats(outcomes.stats());
        report.learned_rate = outcomes.learned_rate();
        report
    }

    /// Sends a stream of items of any length and yields each request's
    /// outcome as it ends, for callers that act per request (a progress
    /// bar, a checkpoint, a retry file of their own).
    ///
    /// Requests hold at most `max_batch_size` consecutive items and
    /// `max_request_bytes` of JSON, and at most `max_in_flight` are sent at
    /// once (fewer while the server throttles), so at most that many
    /// requests' worth of items are held, whatever the stream's length.
    /// Each outcome names where its items were in the input
    /// ([`RequestOutcome::offset`]); outcomes may come out of order. After
    /// a 401 the key or project is wrong for every request, so the rest are
    /// not sent: their items come back with the same error.
    ///
    /// The stream's [`stats`](Deliveries::stats) say what throttling and
    /// the server's refusals cost the run so far.
    pub fn deliver<T, S>(
        &self,
        items: S,
    ) -> Deliveries<impl Stream<Item = RequestOutcome<T>> + use<T, S>>
    where
        T: Item,
        S: Stream<Item = T>,
    {
        let delivery = Arc::new(Delivery::new(self.inner.clone(), Cancel::never()));
        deliver_on(delivery, self.inner.batch.clone(), items)
    }

    /// [`deliver`](Self::deliver), with a deadline the caller can set while
    /// it runs: after [`Stop::drain`]'s deadline no request starts and
    /// those in flight are abandoned, each yielding its outcome with its
    /// items and [`Error::Cancelled`]. To stop early, end the item stream
    /// too (stop reading); the run then sends what it already took, until
    /// the deadline.
    pub fn deliver_until<T, S>(
        &self,
        items: S,
        stop: &Stop,
    ) -> Deliveries<impl Stream<Item = RequestOutcome<T>> + use<T, S>>
    where
        T: Item,
        S: Stream<Item = T>,
    {
        let delivery = Arc::new(Delivery::new(self.inner.clone(), stop.cancel()));
        deliver_on(delivery, self.inner.batch.clone(), items)
    }

    /// Sends a dead letter's items again, as one request (with retries).
    /// Returns how many items were accepted; on failure the letter is
    /// still yours to keep. Items are validated again first, with this
    /// client's reserved-check setting: the file may have been edited.
    pub async fn resend(&self, letter: &DeadLetter) -> Result<usize, Error> {
        letter.resend(self.inner.clone()).await
    }

    /// Starts an [`Ingestor`] on the current Tokio runtime.
    pub fn ingestor(&self, config: IngestorConfig) -> Result<Ingestor, ConfigError> {
        Ingestor::start(self.inner.clone(), config)
    }
}

/// The outcomes of [`Marketap::deliver`] or [`Marketap::deliver_until`],
/// one per request as it ends, and what the run cost so far.
#[must_use = "streams do nothing unless polled"]
pub struct Deliveries<St> {
    outcomes: Pin<Box<St>>,
    delivery: Arc<Delivery>,
}

impl<St> Deliveries<St> {
    /// What throttling and the server's refusals cost the run so far: read
    /// it once the stream has ended for the whole run's figures.
    pub fn stats(&self) -> DeliveryStats {
        self.delivery.stats().snapshot()
    }

    /// The send rate, in requests per second, the client learned from 429s
    /// and 503s: see [`BatchReport::learned_rate`].
    pub fn learned_rate(&self) -> Option<f64> {
        self.delivery.learned_rate()
    }
}

impl<St: Stream> Stream for Deliveries<St> {
    type Item = St::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<St::Item>> {
        self.outcomes.as_mut().poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.outcomes.size_hint()
    }
}

impl<St> fmt::Debug for Deliveries<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deliveries")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// [`Marketap::deliver`] on a given run.
fn deliver_on<T, S>(
    delivery: Arc<Delivery>,
    batch: BatchConfig,
    items: S,
) -> Deliveries<impl Stream<Item = RequestOutcome<T>>>
where
    T: Item,
    S: Stream<Item = T>,
{
    let run = delivery.clone();
    let mut next_offset = 0;
    let outcomes = items
        .chunks(batch.max_batch_size())
        .map(move |chunk| {
            let offset = next_offset;
            next_offset += chunk.len() as u64;
            let delivery = delivery.clone();
            async move {
                let pieces = delivery.send(chunk).await;
                stream::iter(
                    pieces
                        .into_iter()
                        .map(move |(within, result)| RequestOutcome {
                            offset: offset + within as u64,
                            result,
                        }),
                )
            }
        })
        .buffer_unordered(batch.max_in_flight())
        .flatten();
    Deliveries {
        outcomes: Box::pin(outcomes),
        delivery: run,
    }
}
