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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    cancel::Cancel,
    config::{Connection, MAX_BATCH_SIZE},
    error::{Error, ValidationError},
    kind::Item,
    report::{Accepted, FailedBatch},
    retry,
};

/// One delivery run; see the module docs.
pub(crate) struct Delivery {
    connection: Arc<Connection>,
    /// One permit per request in flight.
    slots: Arc<Semaphore>,
    /// The first 401's code and message: every later request fails with it.
    unauthorized: OnceLock<(Option<i64>, Option<String>)>,
    cancel: Cancel,
}

/// The right to have one request in flight, until dropped.
pub(crate) struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Delivery {
    /// A run with the connection's concurrency and retries, watching
    /// `cancel`.
    pub(crate) fn new(connection: Arc<Connection>, cancel: Cancel) -> Self {
        let slots = Arc::new(Semaphore::new(connection.batch.max_in_flight));
        Self {
            connection,
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

        let inner = &*self.connection;
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
    use super::*;

    #[test]
    fn panic_messages_are_read_from_str_and_string_payloads() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert_eq!(panic_message(&7_u8), "a panic with a non-string payload");
    }
}
