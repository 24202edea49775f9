//! What delivery hands back: the outcome of each request
//! ([`RequestOutcome`]: [`Accepted`], or a [`FailedBatch`] holding its
//! items and the reason), and a batch call's [`BatchReport`]. A failed
//! request of any kind, as the ingestor reports it, is
//! [`Undelivered`](crate::Undelivered).
//!
//! Each is `#[non_exhaustive]`: fields can be read, and a later version may
//! add some, so they are not built outside this crate.

use std::fmt;

use crate::error::{Error, ErrorChain};

/// A request the server accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Accepted {
    /// Items in the request.
    pub items: usize,
    /// How many times it was sent (1 unless it was retried).
    pub attempts: u32,
}

/// How one request of [`Marketap::deliver`](crate::Marketap::deliver)
/// ended.
#[derive(Debug)]
#[non_exhaustive]
#[must_use = "a request may have failed; its items are in `result`"]
pub struct RequestOutcome<T> {
    /// Where the request's first item was in the input (0 for the first
    /// item). A request holds the next items of the input, in order.
    pub offset: u64,
    /// Accepted, or failed with its items handed back.
    pub result: Result<Accepted, FailedBatch<T>>,
}

impl<T> RequestOutcome<T> {
    /// How many items the request held.
    pub fn items(&self) -> usize {
        match &self.result {
            Ok(accepted) => accepted.items,
            Err(failed) => failed.items.len(),
        }
    }
}

/// One request that finally failed, with its items handed back in order.
///
/// An error (where `T: Debug`), so `send_batch(..).await?` works in a
/// function returning `Box<dyn Error>`: it says how many items failed, and
/// its [`source`](std::error::Error::source) is the reason.
#[derive(Debug)]
#[non_exhaustive]
#[must_use = "its items were not delivered"]
pub struct FailedBatch<T> {
    /// The items of the request, as sent.
    pub items: Vec<T>,
    /// Why it failed: the status and the API's `code` and `message`, a
    /// transport error, or a validation error (nothing was sent).
    pub error: Error,
    /// How many times it was sent (0 if it never was).
    pub attempts: u32,
}

impl<T> fmt::Display for FailedBatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items = self.items.len();
        write!(
            f,
            "{items} item{} not delivered",
            if items == 1 { "" } else { "s" }
        )?;
        match self.attempts {
            0 => f.write_str(" (never sent)"),
            1 => f.write_str(" after 1 attempt"),
            n => write!(f, " after {n} attempts"),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for FailedBatch<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// What throttling and the server's refusals cost a run of requests: a
/// batch call's (in its [`BatchReport`]) or a
/// [`deliver`](crate::Marketap::deliver) stream's
/// ([`Deliveries::stats`](crate::Deliveries::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryStats {
    /// Responses that throttled (429 and 503), over all attempts.
    pub throttled: u64,
    /// Time requests spent waiting because of throttling (and the rate
    /// cap, if set), summed over requests.
    pub throttle_wait: std::time::Duration,
    /// Requests split in two because the server refused them as too large
    /// (413), or as invalid (400) to isolate the refused items.
    pub splits: u64,
    /// Items the server refused on their own (400) once isolated.
    pub isolated: u64,
    /// Requests sent to isolate the items a 400 refused (two a split).
    pub isolation_requests: u64,
    /// The part of [`throttle_wait`](Self::throttle_wait) spent waiting
    /// for the send rate learned from 429s and 503s, summed over requests.
    pub paced: std::time::Duration,
}

/// What a batch call did. Items the server did not accept are in
/// [`failed`](Self::failed); [`into_result`](Self::into_result) turns the
/// report into a `Result` for `?`.
///
/// It is `#[must_use]`: dropping it unread is a warning, since that would
/// ignore every failure silently.
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// # async fn run(client: marketap_ext::Marketap, event: marketap_ext::Event) {
/// client.send_events([event]).await; // error: unused `BatchReport` that must be used
/// # }
/// ```
///
/// The same call, with the report read, compiles:
///
/// ```
/// #![deny(unused_must_use)]
/// # async fn run(client: marketap_ext::Marketap, event: marketap_ext::Event) {
/// let report = client.send_events([event]).await;
/// if !report.is_success() {
///     eprintln!("{report}");
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
#[must_use = "some items may have failed; look at `failed`, or call `into_result()`"]
pub struct BatchReport<T> {
    /// Requests sent (each counted once, however many attempts it took).
    /// A request split in halves (see [`splits`](Self::splits)) is counted
    /// by its halves: the server saw `requests + splits` requests.
    pub requests: usize,
    /// Items the server accepted.
    pub accepted: usize,
    /// Retries made, over all requests.
    pub retries: usize,
    /// Responses that throttled (429 and 503), over all attempts.
    pub throttled: usize,
    /// Time requests spent waiting because of throttling (and the rate
    /// cap, if set), summed over requests.
    pub throttle_wait: std::time::Duration,
    /// Requests split in two because the server refused them as too large
    /// (413), or as invalid (400) to isolate the refused items.
    pub splits: usize,
    /// Items the server refused on their own (400) once isolated; each is
    /// a failed request of its own in [`failed`](Self::failed).
    pub isolated: usize,
    /// Requests sent to isolate the items a 400 refused: what isolation
    /// cost (two a split).
    pub isolation_requests: usize,
    /// The send rate, in requests per second, the client learned from 429s
    /// and 503s: a little under what the server was found to allow, which
    /// requests are paced at between probes for more (the slowest, if
    /// several operations were throttled). `None` if no throttle taught
    /// one (none came, or they came before a second of sending, or with
    /// too few requests to say). It is the client's, kept from one call to
    /// the next; a cap for the next run
    /// ([`RateLimit::with_max_requests_per_second`](crate::RateLimit::with_max_requests_per_second))
    /// saves relearning it.
    pub learned_rate: Option<f64>,
    /// The part of [`throttle_wait`](Self::throttle_wait) spent waiting
    /// for the learned send rate, summed over requests.
    pub paced: std::time::Duration,
    /// Requests that finally failed, with their items.
    pub failed: Vec<FailedBatch<T>>,
}

impl<T> Default for BatchReport<T> {
    fn default() -> Self {
        Self {
            requests: 0,
            accepted: 0,
            retries: 0,
            throttled: 0,
            throttle_wait: std::time::Duration::ZERO,
            splits: 0,
            isolated: 0,
            isolation_requests: 0,
            learned_rate: None,
            paced: std::time::Duration::ZERO,
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
    // The error is the report, by design (and public): the Ok side is as
    // large, and it is returned once per batch call.
    #[allow(clippy::result_large_err)]
    pub fn into_result(self) -> Result<Self, BatchError<T>> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(BatchError(self))
        }
    }

    /// Adds what the run's throttling and splits cost.
    pub(crate) fn add_stats(&mut self, stats: DeliveryStats) {
        self.throttled = stats.throttled as usize;
        self.throttle_wait = stats.throttle_wait;
        self.splits = stats.splits as usize;
        self.isolated = stats.isolated as usize;
        self.isolation_requests = stats.isolation_requests as usize;
        self.paced = stats.paced;
    }

    /// Adds one request's outcome.
    pub(crate) fn record(&mut self, outcome: Result<Accepted, FailedBatch<T>>) {
        match outcome {
            Ok(accepted) => {
                self.requests += 1;
                self.accepted += accepted.items;
                self.retries += accepted.attempts.saturating_sub(1) as usize;
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
    /// The counts, then the first failure with its causes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.summary(f)?;
        if let Some(first) = self.failed.first() {
            write!(f, "; first failure: {}", ErrorChain(&first.error))?;
        }
        Ok(())
    }
}

impl<T> BatchReport<T> {
    /// The counts, without the first failure.
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} accepted, {} failed in {} request{} ({} retries)",
            self.accepted,
            self.failed_items(),
            self.requests,
            if self.requests == 1 { "" } else { "s" },
            self.retries
        )?;
        if self.throttled > 0 {
            write!(
                f,
                "; throttled {} time{}, {:.1?} waited",
                self.throttled,
                if self.throttled == 1 { "" } else { "s" },
                self.throttle_wait
            )?;
            if let Some(rate) = self.learned_rate {
                write!(f, ", paced at {rate:.1} requests/s")?;
            }
        }
        if self.splits > 0 {
            write!(
                f,
                "; {} split{} after 413 or 400",
                self.splits,
                if self.splits == 1 { "" } else { "s" }
            )?;
        }
        if self.isolation_requests > 0 {
            write!(
                f,
                "; {} item{} refused alone (400), isolated in {} more requests",
                self.isolated,
                if self.isolated == 1 { "" } else { "s" },
                self.isolation_requests
            )?;
        }
        Ok(())
    }
}

/// A batch call in which some items were not accepted. Holds the whole
/// report, failed items included. Its `Display` gives the counts; its
/// [`source`](std::error::Error::source) is the first failure.
#[derive(Debug)]
pub struct BatchError<T>(pub BatchReport<T>);

impl<T> fmt::Display for BatchError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not every item was accepted: ")?;
        self.0.summary(f)
    }
}

impl<T: fmt::Debug> std::error::Error for BatchError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.failed.first().map(|batch| &batch.error as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_adds_up_requests_items_and_retries() {
        let mut report = BatchReport::<u8>::default();
        for attempts in [1, 2, 3] {
            report.record(Ok(Accepted { items: 5, attempts }));
        }
        report.record(Err(FailedBatch {
            items: vec![1, 2, 3],
            error: Error::Cancelled,
            attempts: 4,
        }));
        assert_eq!(
            (
                report.requests,
                report.accepted,
                report.retries,
                report.failed_items()
            ),
            (4, 15, 6, 3)
        );
        assert!(!report.is_success());
    }

    #[test]
    fn a_report_says_what_throttling_cost_only_when_it_happened() {
        let mut report = BatchReport::<u8>::default();
        report.record(Ok(Accepted {
            items: 10,
            attempts: 3,
        }));
        assert_eq!(
            report.to_string(),
            "10 accepted, 0 failed in 1 request (2 retries)"
        );
        report.throttled = 2;
        report.throttle_wait = std::time::Duration::from_millis(1500);
        report.splits = 1;
        assert_eq!(
            report.to_string(),
            "10 accepted, 0 failed in 1 request (2 retries); throttled 2 times, 1.5s waited; 1 split after 413 or 400"
        );
        report.record(Err(FailedBatch {
            items: vec![1, 2],
            error: Error::Cancelled,
            attempts: 0,
        }));
        assert_eq!(
            (report.requests, report.failed_items()),
            (1, 2),
            "never sent: no request"
        );
        assert!(report.to_string().contains("2 failed in 1 request"));
        assert!(
            report.to_string().ends_with(
                "first failure: not delivered: the shutdown or stop deadline passed first"
            )
        );
        let failed: Vec<_> = report.failed_items_iter().map(|(item, _)| *item).collect();
        assert_eq!(failed, [1, 2]);
        let error = report.into_result().unwrap_err();
        assert!(std::error::Error::source(&error).is_some());
    }
}
