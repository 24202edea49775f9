//! The delivery engine: one request's worth of items in, one outcome out,
//! the same for the batch calls and the ingestor. A [`Delivery`] is one
//! run (a batch call, or an ingestor's life): it bounds the requests in
//! flight, stops every request after the first 401 (the key or project is
//! wrong for all of them), starts nothing once its deadline has passed,
//! retries through [`retry`](crate::retry), and hands the items of any
//! request that fails back, a panic included.

use std::{
    any::Any,
    panic::AssertUnwindSafe,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU32, Ordering::Relaxed},
    },
};

use futures::FutureExt;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    time::Instant,
};

use crate::{
    client::Marketap,
    config::MAX_BATCH_SIZE,
    error::{Error, ValidationError},
    kind::Item,
    report::{Accepted, FailedBatch},
    retry,
};

/// Where a run is in its life. Requests watch it: once a deadline is set
/// and has passed, none starts and those in flight are abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Taking new items.
    Running,
    /// Intake is closed; what was taken is sent, until `deadline` if set.
    Draining {
        /// When to give up on what is not yet delivered.
        deadline: Option<Instant>,
    },
}

impl Phase {
    /// Draining, with the earlier of the current deadline and `deadline`
    /// (a later call can shorten a deadline, never lengthen it).
    pub(crate) fn drain(self, deadline: Option<Instant>) -> Phase {
        let earliest = match (self, deadline) {
            (
                Phase::Draining {
                    deadline: Some(current),
                },
                Some(new),
            ) => Some(current.min(new)),
            (
                Phase::Draining {
                    deadline: Some(current),
                },
                None,
            ) => Some(current),
            (_, new) => new,
        };
        Phase::Draining { deadline: earliest }
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Phase::Draining { deadline } => deadline,
            Phase::Running => None,
        }
    }
}

/// A request's view of its run's [`Phase`]: whether to give up.
#[derive(Debug, Clone)]
pub(crate) struct Cancel(Option<watch::Receiver<Phase>>);

impl Cancel {
    /// For calls that run to the end.
    pub(crate) fn never() -> Self {
        Self(None)
    }

    pub(crate) fn new(phase: watch::Receiver<Phase>) -> Self {
        Self(Some(phase))
    }

    /// Whether the deadline has passed.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|phase| {
            phase
                .borrow()
                .deadline()
                .is_some_and(|deadline| Instant::now() >= deadline)
        })
    }

    /// Resolves once the deadline has passed; never, without one.
    pub(crate) async fn cancelled(&mut self) {
        let Some(phase) = &mut self.0 else {
            return std::future::pending().await;
        };
        loop {
            let deadline = phase.borrow_and_update().deadline();
            let changed = match deadline {
                Some(deadline) => tokio::select! {
                    () = tokio::time::sleep_until(deadline) => return,
                    changed = phase.changed() => changed,
                },
                None => phase.changed().await,
            };
            if changed.is_err() {
                // Nobody can set a deadline any more.
                return std::future::pending().await;
            }
        }
    }
}

/// One delivery run; see the module docs.
pub(crate) struct Delivery {
    client: Marketap,
    /// One permit per request in flight.
    slots: Arc<Semaphore>,
    /// The first 401's code and message: every later request fails with it.
    unauthorized: OnceLock<(Option<i64>, Option<String>)>,
    cancel: Cancel,
}

/// The right to have one request in flight, until dropped.
pub(crate) struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Delivery {
    /// A run with the client's concurrency and retries, watching `cancel`.
    pub(crate) fn new(client: Marketap, cancel: Cancel) -> Self {
        let slots = Arc::new(Semaphore::new(client.inner.batch.max_in_flight));
        Self {
            client,
            slots,
            unauthorized: OnceLock::new(),
            cancel,
        }
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

    /// Waits for a request slot; `None` once the deadline has passed.
    pub(crate) async fn slot(&self) -> Option<Slot> {
        let mut cancel = self.cancel.clone();
        tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            slot = self.slots.clone().acquire_owned() => slot.ok().map(Slot),
        }
    }

    /// Sends `items` as one request, once a request slot is free, with
    /// retries. The items come back on any failure; `attempts == 0` means
    /// they never went on the wire.
    pub(crate) async fn send<T: Item>(&self, items: Vec<T>) -> Result<Accepted, FailedBatch<T>> {
        match self.slot().await {
            Some(slot) => self.send_in(slot, items).await,
            None => Err(FailedBatch {
                items,
                error: Error::Cancelled,
                attempts: 0,
            }),
        }
    }

    /// Sends `items` as one request in `slot`, with retries; see
    /// [`send`](Self::send).
    pub(crate) async fn send_in<T: Item>(
        &self,
        slot: Slot,
        items: Vec<T>,
    ) -> Result<Accepted, FailedBatch<T>> {
        let _slot = slot;
        let count = items.len();
        let mut cancel = self.cancel.clone();
        let refused = invalid_count::<T>(count)
            .map(Error::from)
            .or_else(|| self.unauthorized())
            .or_else(|| cancel.is_cancelled().then_some(Error::Cancelled));
        if let Some(error) = refused {
            return Err(FailedBatch {
                items,
                error,
                attempts: 0,
            });
        }

        let inner = &*self.client.inner;
        let body = T::into_body(items);
        let attempts = AtomicU32::new(0);
        let sending = retry::send(
            &inner.retry,
            T::operation(&body),
            count,
            &mut cancel,
            &attempts,
            || T::post(&inner.api, &inner.project_id, &body),
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
                if let Error::Unauthorized { code, message } = &error {
                    let _ = self.unauthorized.set((*code, message.clone()));
                }
                Err(FailedBatch {
                    items: T::into_items(body),
                    error,
                    attempts,
                })
            }
        }
    }
}

/// A request must hold 1 to [`MAX_BATCH_SIZE`] items.
fn invalid_count<T: Item>(count: usize) -> Option<ValidationError> {
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
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_later_shutdown_can_shorten_a_deadline_but_never_lengthen_it() {
        let now = Instant::now();
        let soon = Some(now + Duration::from_secs(1));
        let later = Some(now + Duration::from_secs(10));
        let drained = |deadline| Phase::Draining { deadline };
        assert_eq!(Phase::Running.drain(None), drained(None));
        assert_eq!(Phase::Running.drain(later), drained(later));
        assert_eq!(drained(None).drain(soon), drained(soon));
        assert_eq!(drained(later).drain(soon), drained(soon));
        assert_eq!(drained(soon).drain(later), drained(soon));
        assert_eq!(drained(soon).drain(None), drained(soon));
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_fires_at_the_deadline_and_not_before() {
        let (phase, watching) = watch::channel(Phase::Running);
        let mut cancel = Cancel::new(watching);
        assert!(!cancel.is_cancelled());
        let deadline = Instant::now() + Duration::from_secs(5);
        phase.send_modify(|p| *p = p.drain(Some(deadline)));
        assert!(!cancel.is_cancelled());
        cancel.cancelled().await;
        assert!(Instant::now() >= deadline);
        assert!(cancel.is_cancelled());

        assert!(!Cancel::never().is_cancelled());
        let mut never = Cancel::never();
        let waited = tokio::time::timeout(Duration::from_secs(3600), never.cancelled());
        assert!(waited.await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn draining_without_a_deadline_never_cancels() {
        let (phase, watching) = watch::channel(Phase::Running);
        let mut cancel = Cancel::new(watching);
        phase.send_modify(|p| *p = p.drain(None));
        let waited = tokio::time::timeout(Duration::from_secs(3600), cancel.cancelled()).await;
        assert!(waited.is_err());
        assert!(!cancel.is_cancelled());
    }

    #[test]
    fn panic_messages_are_read_from_str_and_string_payloads() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert_eq!(panic_message(&7_u8), "a panic with a non-string payload");
    }
}
