//! Splitting any number of items into requests of at most 1,000, sending a
//! bounded number at once, and reporting the outcome: how many were
//! accepted, and every item of every failed request with the reason.
//!
//! Memory stays bounded for a stream of any length: at most
//! `max_in_flight` requests' worth of items are held at once.

use std::{fmt, sync::OnceLock};

use futures::{Stream, StreamExt, future};

use crate::{
    client::Marketap,
    config::MAX_BATCH_SIZE,
    error::{Error, ValidationError},
    item::Item,
    retry::{self, Cancel},
};

/// One request that finally failed, with its items handed back in order.
#[derive(Debug)]
pub struct FailedBatch<T> {
    /// The items of the request, as sent.
    pub items: Vec<T>,
    /// Why it failed: the status and the API's `code` and `message`, a
    /// transport error, or a validation error (nothing was sent).
    pub error: Error,
    /// How many times it was sent (0 if it never was).
    pub attempts: u32,
}

/// What a batch call did.
#[derive(Debug)]
pub struct BatchReport<T> {
    /// Requests sent (each counted once, however many attempts it took).
    pub requests: usize,
    /// Items the server accepted.
    pub accepted: usize,
    /// Retries made, over all requests.
    pub retries: usize,
    /// Requests that finally failed, with their items.
    pub failed: Vec<FailedBatch<T>>,
}

impl<T> Default for BatchReport<T> {
    fn default() -> Self {
        Self {
            requests: 0,
            accepted: 0,
            retries: 0,
            failed: Vec::new(),
        }
    }
}

impl<T> BatchReport<T> {
    /// Whether every item was accepted.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
    }

    /// How many items failed, over all failed requests.
    pub fn failed_items(&self) -> usize {
        self.failed.iter().map(|batch| batch.items.len()).sum()
    }

    /// The failed items, in order, with the error of their request.
    pub fn failed_items_iter(&self) -> impl Iterator<Item = (&T, &Error)> {
        self.failed
            .iter()
            .flat_map(|batch| batch.items.iter().map(move |item| (item, &batch.error)))
    }

    /// `Ok(self)` if everything was accepted, else an error holding the
    /// whole report, so `?` works and nothing is lost.
    pub fn into_result(self) -> Result<Self, BatchError<T>> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(BatchError(self))
        }
    }

    pub(crate) fn record(&mut self, sent: Result<Sent, FailedBatch<T>>) {
        match sent {
            Ok(sent) => {
                self.requests += 1;
                self.accepted += sent.items;
                self.retries += sent.attempts.saturating_sub(1) as usize;
            }
            Err(failed) => {
                self.requests += usize::from(failed.attempts > 0);
                self.retries += failed.attempts.saturating_sub(1) as usize;
                self.failed.push(failed);
            }
        }
    }
}

impl<T> fmt::Display for BatchReport<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} accepted, {} failed in {} request{} ({} retries)",
            self.accepted,
            self.failed_items(),
            self.requests,
            if self.requests == 1 { "" } else { "s" },
            self.retries
        )?;
        if let Some(first) = self.failed.first() {
            write!(f, "; first failure: {}", first.error)?;
        }
        Ok(())
    }
}

/// A batch call in which some items were not accepted. Holds the whole
/// report, failed items included.
#[derive(Debug)]
pub struct BatchError<T>(pub BatchReport<T>);

impl<T> fmt::Display for BatchError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not every item was accepted: {}", self.0)
    }
}

impl<T: fmt::Debug> std::error::Error for BatchError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.failed.first().map(|batch| &batch.error as _)
    }
}

/// A request the server accepted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub items: usize,
    pub attempts: u32,
}

impl Marketap {
    /// Sends `items` as exactly one request (with retries). More than
    /// 1,000 items, or none, is a validation error and nothing is sent; on
    /// any failure the items come back in the error.
    pub async fn send_batch<T: Item>(&self, items: Vec<T>) -> Result<usize, FailedBatch<T>> {
        self.send_request(items, Cancel::never())
            .await
            .map(|sent| sent.items)
    }

    /// Sends a stream of items of any length: requests of at most
    /// `max_batch_size` items, `max_in_flight` at once. Order within a
    /// request is kept; requests may complete out of order.
    ///
    /// After a 401 the key or project is wrong for every request, so the
    /// rest are not sent: their items come back with the same error.
    pub async fn send_stream<T: Item>(&self, items: impl Stream<Item = T>) -> BatchReport<T> {
        let batch = self.inner.batch;
        let unauthorized = &OnceLock::new();
        items
            .chunks(batch.max_batch_size)
            .map(|chunk| async move {
                if let Some((code, message)) = unauthorized.get() {
                    let error = Error::Unauthorized {
                        code: *code,
                        message: Clone::clone(message),
                    };
                    return Err(FailedBatch {
                        items: chunk,
                        error,
                        attempts: 0,
                    });
                }
                let sent = self.send_request(chunk, Cancel::never()).await;
                if let Err(FailedBatch {
                    error: Error::Unauthorized { code, message },
                    ..
                }) = &sent
                {
                    let _ = unauthorized.set((*code, message.clone()));
                }
                sent
            })
            .buffer_unordered(batch.max_in_flight)
            .fold(BatchReport::default(), |mut report, sent| {
                report.record(sent);
                future::ready(report)
            })
            .await
    }

    /// One request with retries; the items come back on failure.
    pub(crate) async fn send_request<T: Item>(
        &self,
        items: Vec<T>,
        cancel: Cancel,
    ) -> Result<Sent, FailedBatch<T>> {
        let count = items.len();
        let invalid = if count == 0 {
            Some(ValidationError::empty(T::FIELD, "[]"))
        } else if count > MAX_BATCH_SIZE {
            Some(ValidationError::TooManyItems {
                field: T::FIELD,
                count,
                max: MAX_BATCH_SIZE,
            })
        } else {
            None
        };
        if let Some(error) = invalid {
            return Err(FailedBatch {
                items,
                error: error.into(),
                attempts: 0,
            });
        }

        let inner = &*self.inner;
        let body = T::into_body(items);
        let outcome = retry::send(&inner.retry, T::OPERATION, count, cancel, || {
            T::post(&inner.api, &inner.project_id, &body)
        })
        .await;
        match outcome.result {
            Ok(()) => Ok(Sent {
                items: count,
                attempts: outcome.attempts,
            }),
            Err(error) => Err(FailedBatch {
                items: T::into_items(body),
                error,
                attempts: outcome.attempts,
            }),
        }
    }
}
