//! Where enqueued items wait until the worker takes them.
//!
//! A caller takes one permit of `room` per item (the backpressure: permits
//! come back when the item's request finishes, delivered or not, and its
//! dead letter, if any, is written), then pushes under a short lock into
//! its kind's filling batch. A full batch moves to the `full` list as a
//! whole, so enqueueing and taking cost O(1) per item however long the
//! queue grows. The worker is woken when the first full batch is waiting,
//! when a flush is asked for, and when a caller finds no room: then
//! partial batches go too once nothing else would use a free request slot
//! (so a capacity below the batch size never waits for the flush interval,
//! and many callers at capacity do not split the queue into tiny requests).
//!
//! Closing is final and has a reason; it hands back everything still
//! queued, and callers waiting for room get their item back at once.

use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicUsize, Ordering::Relaxed},
};

use tokio::sync::{Notify, Semaphore, SemaphorePermit, TryAcquireError, oneshot};

use super::{
    batch::{self, Batch},
    report::Counters,
};
use crate::{
    delivery::encoded::Encoded,
    lock::lock,
    model::kind::{Item, KINDS},
};

/// An item the ingestor did not take, handed back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError<T> {
    /// The queue is at capacity (only from the `try_` calls).
    #[error("the ingestor's queue is full")]
    Full(T),
    /// The ingestor is shutting down or has shut down.
    #[error("the ingestor is shut down")]
    Closed(T),
    /// The server refused the API key or project (401), so the ingestor
    /// stopped sending: every request would fail the same way.
    #[error(
        "the ingestor stopped: the server refused the API key or project (401); \
         check them, then start a new ingestor"
    )]
    Unauthorized(T),
    /// The ingestor's background task stopped after a panic (logged at
    /// error level); nothing will send what is enqueued.
    #[error("the ingestor's background task stopped after a panic; start a new ingestor")]
    Stopped(T),
    /// With a spool: the item could not be written to it (the disk is
    /// full, the directory is not writable, ...). Nothing of it stays in
    /// the spool. The cause is the [`source`](std::error::Error::source);
    /// [`Metrics::spool_write_errors`](super::Metrics::spool_write_errors)
    /// counts it. Boxed, to keep the `Result` of every enqueue small.
    #[error("the ingestor could not write the item to its spool")]
    Spool(T, #[source] Box<crate::spool::SpoolError>),
}

impl<T> EnqueueError<T> {
    /// The item that was not queued.
    pub fn into_inner(self) -> T {
        match self {
            EnqueueError::Full(item)
            | EnqueueError::Closed(item)
            | EnqueueError::Unauthorized(item)
            | EnqueueError::Stopped(item)
            | EnqueueError::Spool(item, _) => item,
        }
    }
}

/// Why intake closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closed {
    ShutDown,
    Unauthorized,
    Stopped,
}

impl Closed {
    pub(super) fn refuse<T>(self, item: T) -> EnqueueError<T> {
        match self {
            Closed::ShutDown => EnqueueError::Closed(item),
            Closed::Unauthorized => EnqueueError::Unauthorized(item),
            Closed::Stopped => EnqueueError::Stopped(item),
        }
    }
}

/// Which partial batches [`Intake::take`] takes besides the full ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Partials {
    /// Every one (the flush interval passed).
    All,
    /// Every one if a caller found no room and no full batch is waiting:
    /// the worker has a request slot free for them. A partial batch sent
    /// while full ones wait, or while every slot is busy, would free no
    /// room sooner, and many callers finding none at once would split the
    /// queue into requests of a few items each.
    IfStarved,
    /// As [`IfStarved`](Self::IfStarved), or if a caller still waits for
    /// room: nothing is in flight, so nothing else will free any.
    IfWaiting,
    /// None: the worker has no slot free for them.
    None,
}

/// What the worker takes: batches to send, and flush calls that wait for
/// them.
#[derive(Default)]
pub(super) struct Taken {
    pub batches: Vec<Box<dyn Batch>>,
    pub flush_waiters: Vec<oneshot::Sender<()>>,
}

pub(super) struct Intake {
    state: Mutex<State>,
    /// One permit per item the ingestor may still hold: queued, in flight,
    /// or waiting for its dead letter to be written.
    room: Arc<Semaphore>,
    /// Callers waiting for room now.
    waiting: AtomicUsize,
    wake: Notify,
    max_batch_size: usize,
    counters: Arc<Counters>,
}

struct State {
    /// Per kind, the batch being filled.
    filling: [Option<Box<dyn Batch>>; KINDS],
    /// Full batches, oldest first.
    full: Vec<Box<dyn Batch>>,
    flush_waiters: Vec<oneshot::Sender<()>>,
    /// A caller found no room: partial batches must go too.
    starved: bool,
    /// Set under the lock, so no item can be pushed after the last take.
    closed: Option<Closed>,
}

impl Intake {
    pub(super) fn new(capacity: usize, max_batch_size: usize, counters: Arc<Counters>) -> Self {
        Self {
            state: Mutex::new(State {
                filling: Default::default(),
                full: Vec::new(),
                flush_waiters: Vec::new(),
                starved: false,
                closed: None,
            }),
            room: Arc::new(Semaphore::new(capacity)),
            waiting: AtomicUsize::new(0),
            wake: Notify::new(),
            max_batch_size: max_batch_size.min(capacity),
            counters,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves consistent vectors behind.
        lock(&self.state)
    }

    /// Queues `item`, waiting for room while the queue is full.
    pub(super) async fn enqueue<T: Item>(&self, item: T) -> Result<(), EnqueueError<T>> {
        match self.room.try_acquire() {
            Ok(permit) => self.push(permit, item),
            Err(TryAcquireError::Closed) => Err(self.refuse(item)),
            Err(TryAcquireError::NoPermits) => {
                let Some(permit) = self.wait_for_room().await else {
                    return Err(self.refuse(item));
                };
                let pushed = self.push(permit, item);
                // Others may still wait, with nothing in flight to free
                // room: the worker looks again (see `Partials::IfWaiting`).
                self.wake.notify_one();
                pushed
            }
        }
    }

    /// Waits for one item's room, having the worker send partial batches
    /// meanwhile; `None` once intake is closed.
    async fn wait_for_room(&self) -> Option<SemaphorePermit<'_>> {
        /// Counts a caller in [`Intake::waiting`] while it waits, however
        /// the wait ends.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Relaxed);
            }
        }
        self.waiting.fetch_add(1, Relaxed);
        let _waiting = Waiting(&self.waiting);
        self.starve();
        self.room.acquire().await.ok()
    }

    /// Queues `item`, or hands it back at once when the queue is full.
    pub(super) fn try_enqueue<T: Item>(&self, item: T) -> Result<(), EnqueueError<T>> {
        match self.room.try_acquire() {
            Ok(permit) => self.push(permit, item),
            Err(TryAcquireError::NoPermits) => {
                self.starve();
                Err(EnqueueError::Full(item))
            }
            Err(TryAcquireError::Closed) => Err(self.refuse(item)),
        }
    }

    fn push<T: Item>(&self, permit: SemaphorePermit<'_>, item: T) -> Result<(), EnqueueError<T>> {
        let mut state = self.lock();
        if let Some(closed) = state.closed {
            return Err(closed.refuse(item));
        }
        let filling =
            state.filling[T::INDEX].get_or_insert_with(|| batch::new::<T>(self.max_batch_size));
        batch::push(filling.as_mut(), item);
        let first_full = self.seal_if_full(&mut state, T::INDEX);
        // Counted under the lock: the worker takes under it too.
        self.counters.enqueued(1);
        drop(state);
        permit.forget();
        if first_full {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Moves kind `index`'s filling batch to the full ones if it is full;
    /// whether it is the first full one waiting (the worker must be woken).
    fn seal_if_full(&self, state: &mut State, index: usize) -> bool {
        let slot = &mut state.filling[index];
        if slot
            .as_ref()
            .is_none_or(|filling| filling.len() < self.max_batch_size)
        {
            return false;
        }
        let full = slot.take().expect("checked just above");
        state.full.push(full);
        state.full.len() == 1
    }

    pub(super) fn refuse<T>(&self, item: T) -> EnqueueError<T> {
        self.lock().closed.unwrap_or(Closed::ShutDown).refuse(item)
    }

    /// The most items a batch holds.
    pub(super) fn max_batch_size(&self) -> usize {
        self.max_batch_size
    }

    /// Why intake is closed, if it is.
    pub(super) fn closed(&self) -> Option<Closed> {
        self.lock().closed
    }

    /// Takes room for up to `max` items read back from the spool: waits for
    /// one (having the worker send partial batches meanwhile), then takes
    /// what else is free now. The room is given back as for enqueued items,
    /// or with [`release`](Self::release) for what is not used. `None` once
    /// intake is closed.
    pub(super) async fn take_room(&self, max: usize) -> Option<usize> {
        let first = match self.room.try_acquire() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return None,
            Err(TryAcquireError::NoPermits) => self.wait_for_room().await?,
        };
        first.forget();
        let more = self.room.available_permits().min(max.saturating_sub(1));
        let more = u32::try_from(more).unwrap_or(u32::MAX);
        let taken = match self.room.try_acquire_many(more) {
            Ok(permits) if more > 0 => {
                permits.forget();
                more as usize
            }
            _ => 0,
        };
        Some(1 + taken)
    }

    /// Takes room for one item if there is some now, without waiting and
    /// without having the worker send partial batches; whether it did.
    pub(super) fn try_take_one(&self) -> bool {
        self.room.try_acquire().map(SemaphorePermit::forget).is_ok()
    }

    /// Adds an item written to the spool (its room already taken) to
    /// its kind's filling batch, like [`enqueue`](Self::enqueue). Hands
    /// the item back once intake is closed.
    pub(super) fn push_spooled<T: Item>(
        &self,
        item: Encoded<T>,
        tag: batch::Tag,
    ) -> Result<(), Encoded<T>> {
        let mut state = self.lock();
        if state.closed.is_some() {
            return Err(item);
        }
        let filling = state.filling[T::INDEX]
            .get_or_insert_with(|| batch::new_spooled::<T>(self.max_batch_size));
        batch::push_spooled(filling.as_mut(), item, tag);
        let first_full = self.seal_if_full(&mut state, T::INDEX);
        self.counters.enqueued(1);
        drop(state);
        if first_full {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// No room: have the worker send partial batches, which frees room
    /// when their requests finish.
    fn starve(&self) {
        self.lock().starved = true;
        self.wake.notify_one();
    }

    /// Resolves when there may be something to take.
    pub(super) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Asks the worker to send everything queued now; `done` fires when it
    /// has been delivered or has failed. Refused once intake is closed.
    pub(super) fn flush(&self, done: oneshot::Sender<()>) -> Result<(), Closed> {
        let mut state = self.lock();
        if let Some(closed) = state.closed {
            return Err(closed);
        }
        state.flush_waiters.push(done);
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// The full batches; partial ones too as `partials` says, and always
    /// when a flush was asked for.
    pub(super) fn take(&self, partials: Partials) -> Taken {
        let mut state = self.lock();
        let all = match partials {
            Partials::All => true,
            Partials::IfStarved => state.starved && state.full.is_empty(),
            Partials::IfWaiting => {
                (state.starved || self.waiting.load(Relaxed) > 0) && state.full.is_empty()
            }
            Partials::None => false,
        } || !state.flush_waiters.is_empty();
        if all {
            state.starved = false;
        }
        Self::take_locked(&mut state, all)
    }

    fn take_locked(state: &mut State, all: bool) -> Taken {
        let mut batches = std::mem::take(&mut state.full);
        if all {
            batches.extend(state.filling.iter_mut().filter_map(Option::take));
        }
        Taken {
            batches,
            flush_waiters: std::mem::take(&mut state.flush_waiters),
        }
    }

    /// Closes intake for good, with the first reason given, and hands back
    /// everything still queued. Callers waiting for room get their items
    /// back at once.
    pub(super) fn close(&self, why: Closed) -> Taken {
        let mut state = self.lock();
        state.closed.get_or_insert(why);
        let taken = Self::take_locked(&mut state, true);
        drop(state);
        self.room.close();
        taken
    }

    /// Gives back the room of `items` whose request finished.
    pub(super) fn release(&self, items: usize) {
        self.room.add_permits(items);
    }

    /// The room of `items` whose request finished, given back when the
    /// last clone is dropped: once their dead letters are written.
    pub(super) fn held(&self, items: usize) -> Arc<Held> {
        Arc::new(Held {
            room: self.room.clone(),
            items,
        })
    }
}

/// Room held for items until dropped; see [`Intake::held`].
pub(super) struct Held {
    room: Arc<Semaphore>,
    items: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.room.add_permits(self.items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Device, Event, UserProfile};

    fn event(id: usize) -> Event {
        Event::builder(format!("u{id}"), "e").build().unwrap()
    }

    fn intake(capacity: usize, batch: usize) -> Intake {
        Intake::new(capacity, batch, Arc::default())
    }

    fn sizes(taken: &Taken) -> Vec<usize> {
        taken.batches.iter().map(|batch| batch.len()).collect()
    }

    #[test]
    fn full_batches_are_taken_whole_and_partial_ones_only_when_asked() {
        let intake = intake(100, 10);
        for id in 0..25 {
            intake.try_enqueue(event(id)).unwrap();
        }
        intake
            .try_enqueue(UserProfile::builder("u").build().unwrap())
            .unwrap();
        assert_eq!(sizes(&intake.take(Partials::IfStarved)), [10, 10]);
        assert!(intake.take(Partials::IfStarved).batches.is_empty());
        let mut partial = sizes(&intake.take(Partials::All));
        partial.sort_unstable();
        assert_eq!(partial, [1, 5], "one partial batch per kind");
        assert_eq!(intake.counters.snapshot().queued, 26);
    }

    #[test]
    fn a_long_queue_is_taken_in_batches_without_copying_items() {
        let intake = intake(100_000, 1000);
        for id in 0..100_000 {
            intake.try_enqueue(event(id)).unwrap();
        }
        let taken = intake.take(Partials::IfStarved);
        assert_eq!(taken.batches.len(), 100);
        assert!(taken.batches.iter().all(|batch| batch.len() == 1000));
    }

    #[test]
    fn no_room_hands_the_item_back_and_asks_for_partial_batches() {
        let intake = intake(3, 10);
        for id in 0..3 {
            intake.try_enqueue(event(id)).unwrap();
        }
        let full = intake.try_enqueue(event(3)).unwrap_err();
        assert!(matches!(&full, EnqueueError::Full(e) if e.user_id() == "u3"));
        // The worker, woken, takes the partial batch although nobody flushed.
        assert_eq!(sizes(&intake.take(Partials::IfStarved)), [3]);
        // Room comes back only when the request finishes.
        assert!(matches!(
            intake.try_enqueue(event(4)),
            Err(EnqueueError::Full(_))
        ));
        intake.release(3);
        intake.try_enqueue(event(4)).unwrap();
    }

    #[test]
    fn no_room_sends_partial_batches_only_when_nothing_else_could_go() {
        let intake = intake(23, 10);
        for id in 0..23 {
            intake.try_enqueue(event(id)).unwrap();
        }
        intake.try_enqueue(event(23)).unwrap_err();
        // Full batches are waiting: they go, and free room, first.
        assert_eq!(sizes(&intake.take(Partials::IfStarved)), [10, 10]);
        // Every slot busy: the partial one waits, and the caller with it.
        assert!(intake.take(Partials::None).batches.is_empty());
        // A slot frees and nothing else waits: now it goes.
        assert_eq!(sizes(&intake.take(Partials::IfStarved)), [3]);
        assert!(intake.take(Partials::IfStarved).batches.is_empty());
        // That answered the caller: the next partial batch waits again.
        intake.release(23);
        intake.try_enqueue(event(24)).unwrap();
        assert!(intake.take(Partials::IfStarved).batches.is_empty());
    }

    #[tokio::test]
    async fn a_caller_waiting_for_room_wakes_the_worker_and_gets_its_item_back_on_close() {
        let intake = Arc::new(intake(1, 10));
        intake.enqueue(event(0)).await.unwrap();
        let waiting = tokio::spawn({
            let intake = intake.clone();
            async move { intake.enqueue(event(1)).await }
        });
        // The waiting caller wakes the worker, which may take the partial batch.
        tokio::time::timeout(std::time::Duration::from_secs(5), intake.woken())
            .await
            .expect("woken");
        assert_eq!(sizes(&intake.take(Partials::IfStarved)), [1]);
        let closed = intake.close(Closed::Unauthorized);
        assert!(closed.batches.is_empty());
        let refused = waiting.await.unwrap().unwrap_err();
        assert!(matches!(&refused, EnqueueError::Unauthorized(e) if e.user_id() == "u1"));
        assert!(refused.to_string().contains("401"));
    }

    #[tokio::test]
    async fn a_caller_still_waiting_has_partial_batches_sent_when_nothing_is_in_flight() {
        let intake = Arc::new(intake(3, 10));
        intake.enqueue(event(0)).await.unwrap();
        intake.enqueue(event(1)).await.unwrap();
        // Two items in flight, one queued, no room left; two callers wait.
        assert_eq!(sizes(&intake.take(Partials::All)), [2]);
        intake.enqueue(event(2)).await.unwrap();
        let spawn = |id| {
            let intake = intake.clone();
            tokio::spawn(async move { intake.enqueue(event(id)).await })
        };
        let (first, second) = (spawn(3), spawn(4));
        while intake.waiting.load(Relaxed) < 2 {
            tokio::task::yield_now().await;
        }
        // They woke the worker (a wake not yet awaited is kept, once).
        tokio::time::timeout(std::time::Duration::from_secs(5), intake.woken())
            .await
            .expect("woken");
        // Their "no room" is answered once: the partial batch goes.
        assert_eq!(sizes(&intake.take(Partials::IfStarved)), [1]);
        // That request finishes: the first caller queues its item, and
        // wakes the worker to look again.
        intake.release(1);
        first.await.unwrap().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), intake.woken())
            .await
            .expect("woken after a wait");
        assert!(intake.take(Partials::IfStarved).batches.is_empty());
        // With nothing in flight (the worker says so), nothing else frees
        // room for the second: the partial batch goes.
        assert_eq!(sizes(&intake.take(Partials::IfWaiting)), [1]);
        intake.release(3);
        second.await.unwrap().unwrap();
        // Nobody waits: a partial batch waits for the interval again.
        assert_eq!(intake.waiting.load(Relaxed), 0);
        assert!(intake.take(Partials::IfWaiting).batches.is_empty());
    }

    #[test]
    fn closing_hands_back_everything_and_refuses_with_the_first_reason() {
        let intake = intake(100, 10);
        for id in 0..12 {
            intake.try_enqueue(event(id)).unwrap();
        }
        intake
            .try_enqueue(Device::builder("t", crate::Platform::Ios).build().unwrap())
            .unwrap();
        let (done, _waiting) = oneshot::channel();
        intake.flush(done).unwrap();
        let taken = intake.close(Closed::Unauthorized);
        let mut sizes = sizes(&taken);
        sizes.sort_unstable();
        assert_eq!(sizes, [1, 2, 10]);
        assert_eq!(taken.flush_waiters.len(), 1);
        assert_eq!(intake.close(Closed::ShutDown).batches.len(), 0);
        assert_eq!(intake.closed(), Some(Closed::Unauthorized));
        assert!(matches!(
            intake.try_enqueue(event(99)),
            Err(EnqueueError::Unauthorized(_))
        ));
        let (done, _waiting) = oneshot::channel();
        assert_eq!(intake.flush(done), Err(Closed::Unauthorized));
    }

    #[test]
    fn a_flush_takes_partial_batches() {
        let intake = intake(100, 10);
        intake.try_enqueue(event(0)).unwrap();
        let (done, _waiting) = oneshot::channel();
        intake.flush(done).unwrap();
        let taken = intake.take(Partials::IfStarved);
        assert_eq!((sizes(&taken), taken.flush_waiters.len()), (vec![1], 1));
    }

    #[test]
    fn enqueue_errors_hand_the_item_back() {
        for error in [
            EnqueueError::Full(1),
            EnqueueError::Closed(1),
            EnqueueError::Unauthorized(1),
            EnqueueError::Stopped(1),
            EnqueueError::Spool(1, Box::new(crate::spool::SpoolError::Closed)),
        ] {
            assert!(!error.to_string().is_empty());
            assert_eq!(error.into_inner(), 1);
        }
    }
}
