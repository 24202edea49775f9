//! A request's worth of one kind's items, behind a trait object, so the
//! ingestor keeps every kind in one queue and sends them through one
//! engine without a `match` on the kind.
//!
//! Items written to the spool travel as a [`Tagged`] batch: each item with
//! its JSON as the spool wrote it (which is what goes on the wire, see
//! [`Encoded`]), its place in the spool and its age. Sending one sorts each item's
//! outcome ([`Settled`]): accepted, finally failed, failed for now (to try
//! again while younger than the spool's `max_age`), or left in the spool
//! (the shutdown deadline passed).

use std::{
    any::Any,
    time::{Duration, SystemTime},
};

use futures::{FutureExt, future::BoxFuture};

use crate::{
    delivery::Delivery,
    delivery::encoded::Encoded,
    delivery::throttle::Slot,
    error::{Error, ErrorChain},
    model::kind::Item,
    model::kind::Undelivered,
    report::{Accepted, FailedBatch},
};

/// Items of one kind, in the order they were enqueued.
pub(super) trait Batch: Send + 'static {
    fn len(&self) -> usize;

    /// The items, for [`push`] to add to.
    fn as_any_mut(&mut self) -> &mut dyn Any;

    /// Sends the items in `slot`: one request, or several when the byte
    /// limits ask for it; an outcome per request.
    fn send(
        self: Box<Self>,
        delivery: &Delivery,
        slot: Slot,
    ) -> BoxFuture<'_, Vec<Result<Accepted, Undelivered>>>;

    /// Hands the items back unsent, with `error`.
    fn fail(self: Box<Self>, error: Error) -> Undelivered;

    /// The batch as items read back from the spool, if it is one; itself
    /// otherwise.
    fn spooled(self: Box<Self>) -> Result<Box<dyn Spooled>, Box<dyn Batch>>;
}

impl<T: Item> Batch for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn send(
        self: Box<Self>,
        delivery: &Delivery,
        slot: Slot,
    ) -> BoxFuture<'_, Vec<Result<Accepted, Undelivered>>> {
        delivery
            .send_in(slot, *self)
            .map(|pieces| {
                pieces
                    .into_iter()
                    .map(|(_, result)| result.map_err(T::undelivered))
                    .collect()
            })
            .boxed()
    }

    fn fail(self: Box<Self>, error: Error) -> Undelivered {
        T::undelivered(FailedBatch {
            items: *self,
            error,
            attempts: 0,
        })
    }

    fn spooled(self: Box<Self>) -> Result<Box<dyn Spooled>, Box<dyn Batch>> {
        Err(self)
    }
}

/// An empty batch of `T`, with room for `capacity` items.
pub(super) fn new<T: Item>(capacity: usize) -> Box<dyn Batch> {
    Box::new(Vec::<T>::with_capacity(capacity))
}

/// Adds `item` to `batch`, which must hold `T`s.
pub(super) fn push<T: Item>(batch: &mut dyn Batch, item: T) {
    batch
        .as_any_mut()
        .downcast_mut::<Vec<T>>()
        .expect("a batch holds one kind of item: the intake keeps one per kind")
        .push(item);
}

/// Where an item read back from the spool sits in it, and when it was
/// written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tag {
    pub seq: u64,
    pub enqueued_at: SystemTime,
}

/// Items written to the spool, each with its JSON and its [`Tag`].
pub(super) struct Tagged<T> {
    items: Vec<Encoded<T>>,
    tags: Vec<Tag>,
}

/// The items of a failed request of [`Encoded`] ones, as they are handed
/// back.
fn decoded<T>(failed: FailedBatch<Encoded<T>>) -> FailedBatch<T> {
    FailedBatch {
        items: failed
            .items
            .into_iter()
            .map(|encoded| encoded.item)
            .collect(),
        error: failed.error,
        attempts: failed.attempts,
    }
}

/// A [`Tagged`] batch of any kind.
pub(super) trait Spooled: Send + 'static {
    fn len(&self) -> usize;

    /// Sends the items in `slot` and sorts each one's outcome: an item that
    /// failed for now and is older than `max_age` counts as finally failed.
    fn send(
        self: Box<Self>,
        delivery: &Delivery,
        slot: Slot,
        max_age: Duration,
    ) -> BoxFuture<'_, Settled>;
}

/// How a [`Spooled`] batch's items ended, each group with the sequence
/// numbers to acknowledge.
#[derive(Default)]
pub(super) struct Settled {
    /// Accepted requests.
    pub accepted: Vec<(Vec<u64>, Accepted)>,
    /// Finally failed: refused for good, or failing for now past
    /// `max_age`. They go where failures go, then leave the spool.
    pub failed: Vec<(Undelivered, Vec<u64>)>,
    /// Not sent, or abandoned, because the shutdown deadline passed: they
    /// stay in the spool. Items and attempts per request.
    pub left: Vec<(usize, u32)>,
    /// Failed for now (429, 5xx, a timeout, a transport error, a 401), to
    /// send again later.
    pub retry: Option<Retry>,
}

/// The items of a [`Spooled`] batch to send again.
pub(super) struct Retry {
    pub batch: Box<dyn Spooled>,
    /// Items and attempts per request that failed for now.
    pub requests: Vec<(usize, u32)>,
    /// The last error, for the log.
    pub why: String,
    /// Requests among them answered 401.
    pub unauthorized: u64,
}

/// Whether a spooled item that failed with `error` may be delivered later:
/// what [`Error::is_retryable`] says, and a 401 too (the key or project may
/// be fixed, and the process restarted, while the items wait).
pub(super) fn transient(error: &Error) -> bool {
    error.is_retryable() || matches!(error, Error::Unauthorized { .. })
}

impl<T: Item> Batch for Tagged<T> {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn send(
        self: Box<Self>,
        delivery: &Delivery,
        slot: Slot,
    ) -> BoxFuture<'_, Vec<Result<Accepted, Undelivered>>> {
        delivery
            .send_in(slot, self.items)
            .map(|pieces| {
                pieces
                    .into_iter()
                    .map(|(_, result)| result.map_err(|failed| T::undelivered(decoded(failed))))
                    .collect()
            })
            .boxed()
    }

    fn fail(self: Box<Self>, error: Error) -> Undelivered {
        let items: Vec<T> = self.items.into_iter().map(|encoded| encoded.item).collect();
        Box::new(items).fail(error)
    }

    fn spooled(self: Box<Self>) -> Result<Box<dyn Spooled>, Box<dyn Batch>> {
        Ok(self)
    }
}

impl<T: Item> Spooled for Tagged<T> {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn send(
        self: Box<Self>,
        delivery: &Delivery,
        slot: Slot,
        max_age: Duration,
    ) -> BoxFuture<'_, Settled> {
        let Tagged { items, tags } = *self;
        delivery
            .send_in(slot, items)
            .map(move |pieces| settle(pieces, &tags, max_age, SystemTime::now()))
            .boxed()
    }
}

/// Sorts the outcome of each request (`pieces`, by the offset of their
/// first item in the batch whose tags are `tags`).
fn settle<T: Item>(
    pieces: Vec<crate::delivery::Piece<Encoded<T>>>,
    tags: &[Tag],
    max_age: Duration,
    now: SystemTime,
) -> Settled {
    let seqs = |offset: usize, count: usize| -> Vec<u64> {
        tags[offset..offset + count].iter().map(|t| t.seq).collect()
    };
    let mut settled = Settled::default();
    let mut retry = Tagged::<T> {
        items: Vec::new(),
        tags: Vec::new(),
    };
    let mut requests = Vec::new();
    let mut why = String::new();
    let mut unauthorized = 0;
    for (offset, result) in pieces {
        let failed = match result {
            Ok(accepted) => {
                settled
                    .accepted
                    .push((seqs(offset, accepted.items), accepted));
                continue;
            }
            Err(failed) => failed,
        };
        let count = failed.items.len();
        if matches!(failed.error, Error::Cancelled) {
            settled.left.push((count, failed.attempts));
            continue;
        }
        if !transient(&failed.error) {
            settled
                .failed
                .push((T::undelivered(decoded(failed)), seqs(offset, count)));
            continue;
        }
        // Failing for now: the young items wait for another try, the old
        // ones have waited long enough.
        let FailedBatch {
            items,
            error,
            attempts,
        } = failed;
        let mut old = Vec::new();
        let mut old_seqs = Vec::new();
        let mut young = 0;
        for (item, tag) in items.into_iter().zip(&tags[offset..offset + count]) {
            let age = now.duration_since(tag.enqueued_at).unwrap_or_default();
            if age < max_age {
                retry.items.push(item);
                retry.tags.push(*tag);
                young += 1;
            } else {
                old.push(item.item);
                old_seqs.push(tag.seq);
            }
        }
        if young > 0 {
            requests.push((young, attempts));
            why = ErrorChain(&error).to_string();
            unauthorized += u64::from(matches!(error, Error::Unauthorized { .. }));
        }
        if !old.is_empty() {
            let failed = FailedBatch {
                items: old,
                error,
                attempts,
            };
            settled.failed.push((T::undelivered(failed), old_seqs));
        }
    }
    if !retry.items.is_empty() {
        settled.retry = Some(Retry {
            batch: Box::new(retry),
            requests,
            why,
            unauthorized,
        });
    }
    settled
}

/// An empty batch of `T` read back from the spool, with room for
/// `capacity` items.
pub(super) fn new_spooled<T: Item>(capacity: usize) -> Box<dyn Batch> {
    Box::new(Tagged::<T> {
        items: Vec::with_capacity(capacity),
        tags: Vec::with_capacity(capacity),
    })
}

/// Adds `item`, written to the spool, to `batch`, which must be a
/// [`Tagged`] batch of `T`s.
pub(super) fn push_spooled<T: Item>(batch: &mut dyn Batch, item: Encoded<T>, tag: Tag) {
    let tagged = batch
        .as_any_mut()
        .downcast_mut::<Tagged<T>>()
        .expect("a spooled batch holds one kind of item: the intake keeps one per kind");
    tagged.items.push(item);
    tagged.tags.push(tag);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, UserProfile};

    fn event(id: usize) -> Event {
        Event::builder(format!("u{id}"), "e").build().unwrap()
    }

    fn encoded(id: usize) -> Encoded<Event> {
        let item = event(id);
        let json = serde_json::to_vec(&item).unwrap();
        Encoded { item, json }
    }

    #[test]
    fn a_batch_keeps_its_items_in_order_and_fails_whole() {
        let mut batch = new::<Event>(4);
        for id in 0..3 {
            push(batch.as_mut(), event(id));
        }
        assert_eq!(batch.len(), 3);
        let Undelivered::Events(failed) = batch.fail(Error::Cancelled) else {
            panic!("events come back as events");
        };
        let users: Vec<_> = failed.items.iter().map(Event::user_id).collect();
        assert_eq!(users, ["u0", "u1", "u2"]);
        assert_eq!(failed.attempts, 0);
    }

    #[test]
    fn spooled_outcomes_are_sorted_per_item_by_offset_and_age() {
        let now = SystemTime::now();
        let young = now - Duration::from_secs(1);
        let old = now - Duration::from_secs(100);
        // Seqs 10..16; the items at offsets 3 and 5 are old.
        let tags: Vec<Tag> = (0..6)
            .map(|i| Tag {
                seq: 10 + i as u64,
                enqueued_at: if i == 3 || i == 5 { old } else { young },
            })
            .collect();
        let failed = |ids: std::ops::Range<usize>, error| FailedBatch {
            items: ids.map(encoded).collect(),
            error,
            attempts: 2,
        };
        let pieces = vec![
            (
                0,
                Ok(Accepted {
                    items: 2,
                    attempts: 1,
                }),
            ),
            (
                2,
                Err(failed(
                    2..4,
                    Error::Status {
                        status: 503,
                        body: String::new(),
                        retry_after: None,
                    },
                )),
            ),
            (4, Err(failed(4..5, Error::Cancelled))),
            (
                5,
                Err(failed(
                    5..6,
                    Error::Unauthorized {
                        code: None,
                        message: None,
                    },
                )),
            ),
        ];
        let settled = settle(pieces, &tags, Duration::from_secs(50), now);
        assert_eq!(settled.accepted.len(), 1);
        assert_eq!(settled.accepted[0].0, [10, 11]);
        // The old items of the failing pieces finally fail, with their error.
        let failed: Vec<(usize, Vec<u64>)> = settled
            .failed
            .iter()
            .map(|(u, seqs)| (u.len(), seqs.clone()))
            .collect();
        assert_eq!(failed, [(1, vec![13]), (1, vec![15])]);
        assert_eq!(settled.failed[0].0.error().status(), Some(503));
        assert_eq!(settled.failed[1].0.error().status(), Some(401));
        // The deadline's item stays in the spool.
        assert_eq!(settled.left, [(1, 2)]);
        // The young one of the 503 waits for a retry.
        let retry = settled.retry.expect("a young item failed for now");
        assert_eq!(retry.batch.len(), 1);
        assert_eq!(retry.requests, [(1, 2)]);
        assert!(retry.why.contains("503"), "{}", retry.why);
    }

    #[test]
    fn a_refusal_is_final_whatever_the_age() {
        let now = SystemTime::now();
        let tags = [Tag {
            seq: 1,
            enqueued_at: now,
        }];
        let refused = FailedBatch {
            items: vec![encoded(0)],
            error: Error::BadRequest {
                code: None,
                message: None,
                isolation_stopped: false,
            },
            attempts: 1,
        };
        let settled = settle(vec![(0, Err(refused))], &tags, Duration::from_secs(60), now);
        assert_eq!(settled.failed.len(), 1);
        assert!(settled.retry.is_none());
        assert!(transient(&Error::Unauthorized {
            code: None,
            message: None
        }));
        assert!(!transient(&Error::Cancelled));
    }

    #[test]
    #[should_panic(expected = "one kind of item")]
    fn pushing_another_kind_is_a_bug() {
        let mut batch = new::<Event>(1);
        push(batch.as_mut(), UserProfile::builder("u").build().unwrap());
    }
}
