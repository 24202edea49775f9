//! A request's worth of one kind's items, behind a trait object, so the
//! ingestor keeps every kind in one queue and sends them through one
//! engine without a `match` on the kind.

use std::any::Any;

use futures::{FutureExt, future::BoxFuture};

use crate::{
    delivery::Delivery,
    delivery::throttle::Slot,
    error::Error,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, UserProfile};

    fn event(id: usize) -> Event {
        Event::builder(format!("u{id}"), "e").build().unwrap()
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
    #[should_panic(expected = "one kind of item")]
    fn pushing_another_kind_is_a_bug() {
        let mut batch = new::<Event>(1);
        push(batch.as_mut(), UserProfile::builder("u").build().unwrap());
    }
}
