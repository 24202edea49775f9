//! The ingestor's background task: it takes batches from the intake (when
//! one is full, when the flush interval passes, when a flush is asked for,
//! and when a request finishes), and starts a request task for each as the
//! delivery engine frees a request slot. A caller who finds no room gets
//! partial batches sent only when nothing else waits for a free slot, and
//! again, while it waits, whenever nothing is in flight. Each
//! request task hands its own failures over, so nothing depends on the
//! worker to reach the caller.
//!
//! The worker keeps the batches waiting for a slot and the bookkeeping of
//! flushes. It ends when draining is done; however it ends (a panic
//! included), dropping it closes intake and hands everything still queued
//! back. Batches read back from the spool go to
//! [`spooled::request`] instead, which acknowledges what is done with and
//! keeps what failed for now.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
};

use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use tokio::{
    sync::{oneshot, watch},
    task::JoinError,
    time::Instant,
};

use super::{
    batch::Batch,
    intake::{Closed, Partials, Taken},
    shared::Shared,
    spooled,
};
use crate::{
    delivery::cancel::Phase, delivery::panic_message, delivery::throttle::Slot, error::Error,
};

/// Starts the worker of `shared` on `runtime`.
pub(super) fn start(shared: &Arc<Shared>, runtime: &tokio::runtime::Handle) {
    let worker = Worker {
        // Watching from before the worker runs, so no change is missed.
        phase: shared.phase.subscribe(),
        shared: shared.clone(),
        next_id: 0,
        ready: VecDeque::new(),
        outstanding: BTreeMap::new(),
        requests: FuturesUnordered::new(),
        flush_waiters: Vec::new(),
        draining: false,
    };
    shared.tasks.spawn_on(worker.run(), runtime);
}

/// A request task's end: its id, and whether the server said 401.
type Finished = (u64, Result<bool, JoinError>);

struct Worker {
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
    next_id: u64,
    /// Batches taken from the intake, waiting for a request slot, by id.
    ready: VecDeque<(u64, Box<dyn Batch>)>,
    /// Batches ready or in flight, by id, with their item counts.
    outstanding: BTreeMap<u64, usize>,
    requests: FuturesUnordered<BoxFuture<'static, Finished>>,
    /// Each flush waits for every batch up to its id.
    flush_waiters: Vec<(u64, oneshot::Sender<()>)>,
    draining: bool,
}

impl Worker {
    async fn run(mut self) {
        let shared = self.shared.clone();
        let interval = shared.flush_interval;
        // The first tick comes one interval in, not at once.
        let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.release_flush_waiters();
            if self.draining && self.outstanding.is_empty() {
                return;
            }
            let waiting = !self.ready.is_empty();
            tokio::select! {
                Some((id, finished)) = self.requests.next() => {
                    self.finished(id, finished);
                    // A slot is free: a caller who found no room while every
                    // slot was busy may now need the partial batches.
                    if !self.draining {
                        self.take(shared.intake.take(self.partials()));
                    }
                }
                slot = shared.delivery.slot(), if waiting => match slot {
                    Some(slot) => self.send(slot),
                    None => self.fail_ready(|| Error::Cancelled),
                },
                _ = self.phase.changed(), if !self.draining => self.drain(Closed::ShutDown),
                () = shared.intake.woken(), if !self.draining => self.take(shared.intake.take(self.partials())),
                _ = tick.tick(), if !self.draining => self.take(shared.intake.take(Partials::All)),
            }
        }
    }

    /// Closes intake and sends what was queued, or, after a 401, hands it
    /// back unsent.
    fn drain(&mut self, why: Closed) {
        self.draining = true;
        self.take(self.shared.intake.close(why));
        if why == Closed::Unauthorized {
            let shared = self.shared.clone();
            shared.phase.send_modify(|phase| *phase = phase.drain(None));
            self.fail_ready(|| {
                shared
                    .delivery
                    .unauthorized()
                    .expect("closed for a 401 after one came")
            });
        }
    }

    /// Which partial batches a caller finding no room may have sent now:
    /// only when no batch waits for a request slot and one is free; and
    /// when nothing is in flight, for callers still waiting too.
    fn partials(&self) -> Partials {
        let slot_free = self.requests.len() < self.shared.delivery.concurrency_limit();
        if !self.ready.is_empty() || !slot_free {
            Partials::None
        } else if self.requests.is_empty() {
            Partials::IfWaiting
        } else {
            Partials::IfStarved
        }
    }

    /// Queues taken batches for a slot; flushes wait for all of them.
    fn take(&mut self, taken: Taken) {
        for batch in taken.batches {
            let id = self.next_id;
            self.next_id += 1;
            self.outstanding.insert(id, batch.len());
            self.ready.push_back((id, batch));
        }
        // Everything queued before a flush now has an id at most this.
        let last = self.next_id.wrapping_sub(1);
        self.flush_waiters
            .extend(taken.flush_waiters.into_iter().map(|waiter| (last, waiter)));
    }

    /// Starts the oldest ready batch's request in `slot`.
    fn send(&mut self, slot: Slot) {
        let Some((id, batch)) = self.ready.pop_front() else {
            return;
        };
        self.shared.counters.started(batch.len());
        let shared = self.shared.clone();
        let task = match batch.spooled() {
            Ok(spooled) => self
                .shared
                .tasks
                .spawn(spooled::request(shared, slot, spooled)),
            Err(batch) => self.shared.tasks.spawn(request(shared, slot, batch)),
        };
        self.requests
            .push(task.map(move |finished| (id, finished)).boxed());
    }

    /// Hands back every ready batch unsent (the deadline passed, or a 401).
    fn fail_ready(&mut self, error: impl Fn() -> Error) {
        while let Some((id, batch)) = self.ready.pop_front() {
            self.outstanding.remove(&id);
            self.shared.fail_unsent(batch, error());
        }
    }

    fn finished(&mut self, id: u64, finished: Result<bool, JoinError>) {
        let items = self.outstanding.remove(&id).unwrap_or_default();
        match finished {
            Ok(unauthorized) => {
                if unauthorized && !self.draining {
                    self.drain(Closed::Unauthorized);
                }
            }
            // Request tasks catch panics where the items can still be
            // handed back; the items of one that ends anyway were counted
            // and logged by its guard.
            Err(join_error) => {
                let why = match join_error.try_into_panic() {
                    Ok(panic) => panic_message(&*panic),
                    Err(join_error) => join_error.to_string(),
                };
                tracing::error!(items, %why, "marketap ingestor: a request task ended abnormally");
            }
        }
    }

    /// Wakes flushes whose batches have all finished, once the dead-letter
    /// file is on disk: their letters were handed over before their
    /// requests finished, so the sync asked for now comes after them.
    fn release_flush_waiters(&mut self) {
        let oldest = self.outstanding.keys().next().copied();
        let done = |last: u64| oldest.is_none_or(|oldest| oldest > last);
        let released: Vec<_> = self
            .flush_waiters
            .extract_if(.., |(last, _)| done(*last))
            .map(|(_, waiter)| waiter)
            .collect();
        if !released.is_empty() {
            // Dropping the senders, after the sync, ends their wait just as
            // a sent value would.
            self.shared.failures.sync_then(released);
        }
    }
}

/// However the worker ends: intake closes and whatever is still queued,
/// in the intake or waiting for a slot, is handed back; then shutdown can
/// complete once the request tasks have.
impl Drop for Worker {
    fn drop(&mut self) {
        let mut unsent = self.shared.intake.close(Closed::Stopped).batches;
        unsent.extend(self.ready.drain(..).map(|(_, batch)| batch));
        if !unsent.is_empty() {
            tracing::error!(
                "marketap ingestor: the background task stopped unexpectedly; intake is closed and queued items are handed back"
            );
            let shared = self.shared.clone();
            let fail = move || {
                for batch in unsent {
                    shared.fail_unsent(
                        batch,
                        Error::Panicked {
                            message: "the ingestor's background task stopped before sending these"
                                .to_owned(),
                        },
                    );
                }
            };
            if std::thread::panicking() {
                // User callbacks must not run during an unwind (a second
                // panic would abort): hand over from a task of its own.
                self.shared.tasks.spawn(async move { fail() });
            } else {
                fail();
            }
        }
        self.shared.tasks.close();
    }
}

/// Counts and logs the items of a request task that ends before its
/// outcome: the runtime shut down, or a panic escaped. The items are gone
/// with the task; this is the trace they leave.
struct Abandoned<'a> {
    shared: &'a Shared,
    items: usize,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        let Self { shared, items } = *self;
        tracing::error!(
            items,
            "marketap ingestor: a request was abandoned before its outcome (the runtime shut down, or a panic); its items are lost"
        );
        shared.intake.release(items);
        shared.counters.finished(items, true, false, 0);
        shared.counters.lost(items);
    }
}

/// One batch's requests: sends `batch` in `slot`, counts each request,
/// and hands failures over. Returns whether the server said 401.
async fn request(shared: Arc<Shared>, slot: Slot, batch: Box<dyn Batch>) -> bool {
    let items = batch.len();
    let abandoned = Abandoned {
        shared: &shared,
        items,
    };
    let outcomes = batch.send(&shared.delivery, slot).await;
    std::mem::forget(abandoned);
    // The items keep their room until their dead letters are written, so
    // what waits for the disk stays within the ingestor's capacity.
    let held = shared.intake.held(items);
    let mut unauthorized = false;
    for outcome in outcomes {
        match outcome {
            Ok(accepted) => {
                shared
                    .counters
                    .finished(accepted.items, true, true, accepted.attempts);
            }
            Err(undelivered) => {
                shared
                    .counters
                    .finished(undelivered.len(), true, false, undelivered.attempts());
                unauthorized |= matches!(undelivered.error(), Error::Unauthorized { .. });
                shared.failures.hand_over(undelivered, held.clone());
            }
        }
    }
    unauthorized
}
