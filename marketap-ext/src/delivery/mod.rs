//! The delivery engine: a request's worth of items in, an outcome per
//! request out, the same for the batch calls and the ingestor. A
//! [`Delivery`] is one run (a batch call, or an ingestor's life):
//! - it bounds the requests in flight, adapting to throttling
//!   ([`Concurrency`]);
//! - it cuts a batch by bytes as well as items, and splits a batch the
//!   server refuses as too large (413) in halves, down to one item;
//! - it splits a batch the server refuses as invalid (400) in halves too,
//!   up to a number of splits per request, so only the items refused on
//!   their own fail (the API names no item in its answer);
//! - it stops every request after the first 401 (the key or project is
//!   wrong for all of them) and starts nothing once its deadline has
//!   passed;
//! - it retries through [`retry`], and hands the items of any request that
//!   fails back, a panic included.
//!
//! Beside the engine: [`retry`] (one request's attempts and backoff),
//! [`throttle`] (concurrency, the server's limits and the optional rate
//! cap), [`pacer`] (the send rate learned from throttling), [`encoded`]
//! (items sent as the JSON the spool wrote) and [`cancel`] (when a run
//! must give up, and the public [`Stop`]).
//!
//! [`Stop`]: cancel::Stop

pub(crate) mod cancel;
pub(crate) mod encoded;
pub(crate) mod pacer;
pub(crate) mod retry;
pub(crate) mod throttle;

use std::{
    any::Any,
    collections::VecDeque,
    panic::AssertUnwindSafe,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU32, Ordering::Relaxed},
    },
};

use futures::FutureExt;

use crate::{
    config::{Connection, MAX_BATCH_SIZE},
    delivery::cancel::Cancel,
    delivery::retry::Pace,
    delivery::throttle::{Concurrency, Slot, Stats},
    error::{Error, ValidationError},
    model::kind::sealed::Wire,
    report::{Accepted, FailedBatch},
};

/// How one request of a batch ended: the offset of its first item in the
/// batch, and its result.
pub(crate) type Piece<T> = (usize, Result<Accepted, FailedBatch<T>>);

/// A run of consecutive items cut from a batch, with the offset of its
/// first item: to send, or one item too large to send at all.
type Run<T> = (usize, Result<Vec<T>, FailedBatch<T>>);

/// One delivery run; see the module docs.
pub(crate) struct Delivery {
    connection: Arc<Connection>,
    concurrency: Arc<Concurrency>,
    /// The first 401's code and message: every later request fails with it.
    unauthorized: OnceLock<(Option<i64>, Option<String>)>,
    /// Whether the first 401 stops the run (not for a spooled ingestor,
    /// whose items wait in the spool for the key to be fixed).
    stop_on_401: bool,
    cancel: Cancel,
    stats: Stats,
}

impl Delivery {
    /// A run with the connection's concurrency and retries, watching
    /// `cancel`.
    pub(crate) fn new(connection: Arc<Connection>, cancel: Cancel) -> Self {
        Self {
            concurrency: Concurrency::new(connection.batch.max_in_flight()),
            connection,
            unauthorized: OnceLock::new(),
            stop_on_401: true,
            cancel,
            stats: Stats::default(),
        }
    }

    /// A run that sends every request, whatever 401s came before: each
    /// fails with its own 401, to be sent again later.
    pub(crate) fn without_401_stop(mut self) -> Self {
        self.stop_on_401 = false;
        self
    }

    /// What throttling cost this run so far.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// How many requests may be in flight now.
    pub(crate) fn concurrency_limit(&self) -> usize {
        self.concurrency.limit()
    }

    /// The lowest send rate the client learned from throttling, in
    /// requests per second; `None` before any throttle.
    pub(crate) fn learned_rate(&self) -> Option<f64> {
        self.connection.throttle.learned_rate()
    }

    /// The error every request of this run gets after a 401, if one came.
    pub(crate) fn unauthorized(&self) -> Option<Error> {
        self.unauthorized
            .get()
            .map(|(code, message)| Error::Unauthorized {
                code: *code,
                message: message.clone(),
            })
    }

    /// Why no request may start now: a 401 came, or the deadline passed.
    fn refusal(&self) -> Option<Error> {
        self.unauthorized()
            .or_else(|| self.cancel.is_cancelled().then_some(Error::Cancelled))
    }

    /// Waits for a request slot; `None` once the deadline has passed.
    pub(crate) async fn slot(&self) -> Option<Slot> {
        let mut cancel = self.cancel.clone();
        tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            slot = self.concurrency.acquire() => Some(slot),
        }
    }

    /// Sends `items`, once a request slot is free, in as many requests as
    /// the byte limits ask for; see [`send_in`](Self::send_in).
    pub(crate) async fn send<T: Wire>(&self, items: Vec<T>) -> Vec<Piece<T>> {
        match self.slot().await {
            Some(slot) => self.send_in(slot, items).await,
            None => vec![(0, Err(unsent(items, Error::Cancelled)))],
        }
    }

    /// Sends `items` in `slot`: one request, or, when the body would pass
    /// the byte limit or the server refuses it as too large (413) or as
    /// invalid (400), several, one after another, each of consecutive
    /// items. Yields each request's outcome with the offset of its first
    /// item; failed items come back, `attempts == 0` meaning they never
    /// went on the wire. An item too large to send alone, or refused alone,
    /// fails with its own error.
    pub(crate) async fn send_in<T: Wire>(&self, slot: Slot, items: Vec<T>) -> Vec<Piece<T>> {
        if let Some(error) = invalid_count::<T>(items.len()) {
            return vec![(0, Err(unsent(items, error.into())))];
        }
        let max_bytes = self.max_bytes::<T>();
        let mut outcomes = Vec::new();
        // Each body to send, with whether it is a half split off to isolate
        // a 400. Written at once: the items are dropped as they are written.
        // A run no request may carry (after a 401, or past the deadline:
        // both last) goes back as it is, never written to be read back.
        let mut todo: VecDeque<(usize, T::Body, bool)> = cut_by_bytes(items, max_bytes)
            .into_iter()
            .filter_map(|(offset, piece)| match piece {
                Ok(piece) => match self.refusal() {
                    None => Some((offset, T::into_body(piece), false)),
                    Some(error) => {
                        outcomes.push((offset, Err(unsent(piece, error))));
                        None
                    }
                },
                Err(too_large) => {
                    outcomes.push((offset, Err(too_large)));
                    None
                }
            })
            .collect();
        let batch = &self.connection.batch;
        let mut isolation_splits_left = batch.max_isolation_splits();
        while let Some((offset, body, isolating)) = todo.pop_front() {
            let count = T::count(&body);
            let mut failed = match self.request(&slot, body).await {
                Ok(accepted) => {
                    outcomes.push((offset, Ok(accepted)));
                    continue;
                }
                Err(failed) => failed,
            };
            let status = failed.error.status();
            let split = match status {
                Some(413) if count > 1 => {
                    // Too large for the server: learn, and send the halves.
                    let bytes = T::body_bytes(&failed.body);
                    self.connection.throttle.refused_size(T::OPERATION, bytes);
                    Some(isolating)
                }
                Some(400)
                    if count > 1 && batch.isolate_bad_requests() && isolation_splits_left > 0 =>
                {
                    // Refused as invalid, with no item named: find the
                    // refused items by sending the halves.
                    isolation_splits_left -= 1;
                    self.stats.isolation_requests.fetch_add(2, Relaxed);
                    Some(true)
                }
                Some(400) => {
                    if count > 1 && batch.isolate_bad_requests() {
                        if let Error::BadRequest {
                            isolation_stopped, ..
                        } = &mut failed.error
                        {
                            *isolation_stopped = true;
                        }
                    } else if isolating {
                        self.stats.isolated.fetch_add(1, Relaxed);
                    }
                    None
                }
                _ => None,
            };
            let Some(isolating) = split else {
                outcomes.push((offset, Err(failed.into_batch())));
                continue;
            };
            self.stats.splits.fetch_add(1, Relaxed);
            let at = count / 2;
            let (first, second) = T::split(failed.body, at);
            todo.push_front((offset + at, second, isolating));
            todo.push_front((offset, first, isolating));
        }
        outcomes
    }

    /// Sends `items` as exactly one request: a body over the byte limit is
    /// a validation error, and a 413 is not split.
    pub(crate) async fn send_exactly<T: Wire>(
        &self,
        items: Vec<T>,
    ) -> Result<Accepted, FailedBatch<T>> {
        if let Some(error) = invalid_count::<T>(items.len()) {
            return Err(unsent(items, error.into()));
        }
        let max = self.max_bytes::<T>();
        if let Some(bytes) = body_over(&items, max) {
            return Err(unsent(items, too_large::<T>(bytes, max)));
        }
        let Some(slot) = self.slot().await else {
            return Err(unsent(items, Error::Cancelled));
        };
        self.request(&slot, T::into_body(items))
            .await
            .map_err(Failed::into_batch)
    }

    /// The largest body for `T`'s operation: the configured cap, or less
    /// once a 413 taught so.
    fn max_bytes<T: Wire>(&self) -> usize {
        self.connection
            .throttle
            .max_bytes(T::OPERATION, self.connection.batch.max_request_bytes())
    }

    /// One request in `slot`, with retries.
    async fn request<T: Wire>(&self, slot: &Slot, body: T::Body) -> Result<Accepted, Failed<T>> {
        let count = T::count(&body);
        let mut cancel = self.cancel.clone();
        if let Some(error) = self.refusal() {
            return Err(Failed {
                body,
                error,
                attempts: 0,
            });
        }

        let connection = &*self.connection;
        let attempts = AtomicU32::new(0);
        let pace = Pace {
            throttle: &connection.throttle,
            concurrency: &self.concurrency,
            slot,
            stats: &self.stats,
        };
        let sending = retry::send(
            &connection.retry,
            pace,
            T::operation(&body),
            count,
            &mut cancel,
            &attempts,
            || T::post(&connection.api, &connection.project_id, &body),
        );
        // The body lives outside the caught future, so a panic while sending
        // still hands the items back.
        let result = AssertUnwindSafe(sending)
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                let message = panic_message(&*panic);
                tracing::error!(items = count, %message, "a panic interrupted a request; its items are handed back");
                Err(Error::Panicked { message })
            });
        let attempts = attempts.load(Relaxed);
        match result {
            Ok(()) => Ok(Accepted {
                items: count,
                attempts,
            }),
            Err(error) => {
                if let Error::Unauthorized { code, message } = &error
                    && self.stop_on_401
                {
                    let _ = self.unauthorized.set((*code, message.clone()));
                }
                Err(Failed {
                    body,
                    error,
                    attempts,
                })
            }
        }
    }
}

/// A request that failed: its body, until it is split or its items are
/// handed back.
struct Failed<T: Wire> {
    body: T::Body,
    error: Error,
    attempts: u32,
}

impl<T: Wire> Failed<T> {
    /// The items, read back out of the body, with the error.
    fn into_batch(self) -> FailedBatch<T> {
        FailedBatch {
            items: T::into_items(self.body),
            error: self.error,
            attempts: self.attempts,
        }
    }
}

/// Items handed back without going on the wire.
fn unsent<T>(items: Vec<T>, error: Error) -> FailedBatch<T> {
    FailedBatch {
        items,
        error,
        attempts: 0,
    }
}

/// A body of `bytes`, over the limit of `max`.
fn too_large<T: Wire>(bytes: usize, max: usize) -> Error {
    ValidationError::TooLarge {
        field: T::FIELD.to_owned(),
        bytes,
        max,
    }
    .into()
}

/// The bytes of an empty bulk body: `{"<field>":[]}`.
fn envelope_bytes<T: Wire>() -> usize {
    T::FIELD.len() + 7
}

/// The bytes of a bulk body holding `items`: `{"<field>":[a,b,...]}`.
fn body_bytes<T: Wire>(items: &[T]) -> usize {
    body_len(items, T::wire_bytes)
}

/// At least [`body_bytes`], from the items' bounds: no counting.
fn body_bound<T: Wire>(items: &[T]) -> usize {
    body_len(items, T::wire_bound)
}

/// A bulk body's length, given each item's by `item_len`.
fn body_len<T: Wire>(items: &[T], item_len: impl Fn(&T) -> usize) -> usize {
    let commas = items.len().saturating_sub(1);
    envelope_bytes::<T>() + commas + items.iter().map(item_len).sum::<usize>()
}

/// Whether the bulk body of `items` is within `max_bytes`, or its length
/// when it is not: settled by the items' bounds when they fit, the usual
/// case, and counted only when they do not.
fn body_over<T: Wire>(items: &[T], max_bytes: usize) -> Option<usize> {
    if body_bound(items) <= max_bytes {
        return None;
    }
    Some(body_bytes(items)).filter(|&bytes| bytes > max_bytes)
}

/// `items` cut into runs of consecutive items whose bodies fit in
/// `max_bytes`, each with the offset of its first item. An item that does
/// not fit alone is handed back on its own, with a validation error.
fn cut_by_bytes<T: Wire>(items: Vec<T>, max_bytes: usize) -> Vec<Run<T>> {
    let envelope = envelope_bytes::<T>();
    if body_bound(&items) <= max_bytes {
        return vec![(0, Ok(items))];
    }
    // Each item counted once: the runs below are cut by exact lengths.
    let mut pieces = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut current_bytes = envelope;
    let mut start = 0;
    for (index, item) in items.into_iter().enumerate() {
        let bytes = item.wire_bytes();
        if envelope + bytes > max_bytes {
            if !current.is_empty() {
                pieces.push((start, Ok(std::mem::take(&mut current))));
            }
            let error = too_large::<T>(envelope + bytes, max_bytes);
            pieces.push((index, Err(unsent(vec![item], error))));
            current_bytes = envelope;
            start = index + 1;
            continue;
        }
        let mut comma = usize::from(!current.is_empty());
        if current_bytes + comma + bytes > max_bytes {
            pieces.push((start, Ok(std::mem::take(&mut current))));
            current_bytes = envelope;
            start = index;
            comma = 0;
        }
        current_bytes += comma + bytes;
        current.push(item);
    }
    if !current.is_empty() {
        pieces.push((start, Ok(current)));
    }
    pieces
}

/// A request must hold 1 to [`MAX_BATCH_SIZE`] items.
fn invalid_count<T: Wire>(count: usize) -> Option<ValidationError> {
    if count == 0 {
        Some(ValidationError::empty(T::FIELD, "[]"))
    } else if count > MAX_BATCH_SIZE {
        Some(ValidationError::TooManyItems {
            field: T::FIELD,
            count,
            max: MAX_BATCH_SIZE,
        })
    } else {
        None
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Device, Event, Platform, UserDeletion, UserProfile};

    /// The real length of the body `items` make.
    fn real_bytes<T: crate::model::kind::Generated>(items: Vec<T>) -> usize {
        serde_json::to_vec(&T::generated_body(items)).unwrap().len()
    }

    fn event(id: usize, padding: usize) -> Event {
        Event::builder(format!("u{id}"), "e")
            .property("pad", "x".repeat(padding))
            .build()
            .unwrap()
    }

    #[test]
    fn body_bytes_are_exact_for_every_bulk_kind() {
        let events: Vec<Event> = (0..7).map(|i| event(i, i * 13)).collect();
        assert_eq!(body_bytes(&events), real_bytes(events));
        let profiles: Vec<UserProfile> = (0..3)
            .map(|i| {
                UserProfile::builder(format!("p{i}"))
                    .property("a", i)
                    .build()
                    .unwrap()
            })
            .collect();
        assert_eq!(body_bytes(&profiles), real_bytes(profiles));
        let devices = vec![Device::builder("t", Platform::Ios).build().unwrap()];
        assert_eq!(body_bytes(&devices), real_bytes(devices));
        let deletions: Vec<UserDeletion> = ["a", "b\"c"]
            .map(|id| UserDeletion::new(id).unwrap())
            .into();
        assert_eq!(body_bytes(&deletions), real_bytes(deletions));
        let empty: Vec<Event> = Vec::new();
        assert_eq!(body_bytes(&empty), "{\"events\":[]}".len());
    }

    #[test]
    fn cutting_by_bytes_keeps_order_fills_each_request_and_sets_aside_what_cannot_fit() {
        fastrand::seed(7);
        for round in 0..50 {
            let max = 400 + fastrand::usize(..600);
            let sizes: Vec<usize> = (0..40).map(|_| fastrand::usize(..500)).collect();
            let items: Vec<Event> = sizes
                .iter()
                .enumerate()
                .map(|(i, s)| event(i, *s))
                .collect();
            let alone: Vec<usize> = items
                .iter()
                .map(|e| body_bytes(std::slice::from_ref(e)))
                .collect();
            let runs = cut_by_bytes(items, max);
            let mut next = 0;
            for (index, (offset, run)) in runs.iter().enumerate() {
                assert_eq!(*offset, next, "round {round}: runs are consecutive");
                match run {
                    Ok(piece) => {
                        assert!(!piece.is_empty());
                        let bytes = real_bytes(piece.clone());
                        assert!(bytes <= max, "round {round}: {bytes} > {max}");
                        // Full: the next item, when it could fit alone, would not fit here.
                        let after = offset + piece.len();
                        if let Some((_, Ok(_))) = runs.get(index + 1) {
                            let with_next = bytes + 1 + alone[after] - (body_bytes::<Event>(&[]));
                            assert!(with_next > max, "round {round}: a request was cut early");
                        }
                        next = after;
                    }
                    Err(failed) => {
                        assert_eq!(failed.items.len(), 1);
                        assert!(
                            alone[*offset] > max,
                            "round {round}: {} fits",
                            alone[*offset]
                        );
                        let Error::Validation(ValidationError::TooLarge { bytes, max: m, .. }) =
                            failed.error
                        else {
                            panic!("round {round}: {:?}", failed.error);
                        };
                        assert_eq!((bytes, m), (alone[*offset], max), "round {round}");
                        next = offset + 1;
                    }
                }
            }
            assert_eq!(next, 40, "round {round}: every item is in a run");
        }
    }

    /// Bounds settle most bodies without counting, but never refuse or
    /// cut one whose real length fits.
    #[test]
    fn a_body_over_its_bound_but_within_the_limit_goes_whole() {
        // Each pad string is bounded by six bytes per byte.
        let items: Vec<Event> = (0..4).map(|i| event(i, 100)).collect();
        let exact = real_bytes(items.clone());
        assert!(body_bound(&items) > exact + 4 * 400);
        assert_eq!(body_bytes(&items), exact);
        assert_eq!(body_over(&items, exact), None);
        assert_eq!(body_over(&items, exact - 1), Some(exact));
        let runs = cut_by_bytes(items.clone(), exact);
        assert!(matches!(&runs[..], [(0, Ok(run))] if run.len() == 4));
        let runs = cut_by_bytes(items, exact - 1);
        assert_eq!(runs.len(), 2, "cut by the real length, not the bound");
    }

    #[test]
    fn panic_messages_are_read_from_str_and_string_payloads() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert_eq!(panic_message(&7_u8), "a panic with a non-string payload");
    }
}
