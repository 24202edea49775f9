//! Retrying one request: when a failure is worth another attempt, how long
//! to wait (exponential backoff with full jitter, or the server's
//! `Retry-After`), and the loop that does it, pacing each attempt through
//! the client's [`Throttle`] (pauses, learned send rate, cap) and feeding
//! the run's [`Concurrency`]. Every
//! request goes through [`send`], from the delivery engine.

use std::{
    future::Future,
    sync::atomic::{AtomicU32, Ordering::Relaxed},
    time::Duration,
};

use tokio::time::Instant;
use tracing::Instrument;

use crate::{
    delivery::cancel::Cancel,
    delivery::throttle::{Concurrency, Slot, Stats, Throttle},
    error::{ApiResult, ConfigError, Error, ErrorChain},
    model::kind::Operation,
};

const MAX_ATTEMPTS: u32 = 20;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
const MAX_THROTTLED_WAIT: Duration = Duration::from_secs(24 * 3600);

/// When and how often a failed request is tried again.
///
/// Retried: transport errors, timeouts, and statuses 408, 429, 500, 502,
/// 503 and 504. Never retried: 400 and 401 (the same request would fail the
/// same way). Waits grow exponentially from `initial_backoff` up to
/// `max_backoff`, each drawn uniformly from zero to that bound ("full
/// jitter"), so clients that failed together do not retry together. A
/// `Retry-After` from the server (seconds or an HTTP date) is honoured
/// exactly, up to `max_retry_after`, and pauses every request of the client
/// to that operation; a server that asks for a longer wait gets no retry,
/// and the request is reported as failed with the `Retry-After` it sent.
///
/// Throttling (429 and 503) is not an error of the request: such attempts
/// do not count against `max_attempts`. A request that is only ever
/// throttled keeps trying, slower and slower, for `max_throttled_wait`, so
/// a long backfill slows down instead of failing.
///
/// ```
/// use std::time::Duration;
/// use marketap_ext::RetryConfig;
///
/// let retry = RetryConfig::default()
///     .with_max_attempts(3)
///     .with_max_backoff(Duration::from_secs(2));
/// assert_eq!(retry.max_attempts(), 3);
/// assert!(!RetryConfig::disabled().is_enabled());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_retry_after: Duration,
    max_throttled_wait: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            max_throttled_wait: Duration::from_secs(600),
        }
    }
}

impl RetryConfig {
    /// One attempt per request: the off switch.
    pub fn disabled() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Whether failed requests are tried again at all.
    pub fn is_enabled(&self) -> bool {
        self.max_attempts > 1
    }

    /// Attempts in all, the first included: 1 to 20. `1` turns retries off.
    /// Default 5.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Upper bound of the first wait: at most `max_backoff`. Default 200 ms.
    pub fn with_initial_backoff(mut self, wait: Duration) -> Self {
        self.initial_backoff = wait;
        self
    }

    /// Upper bound of any drawn wait: at most 5 minutes. Default 10 s.
    pub fn with_max_backoff(mut self, wait: Duration) -> Self {
        self.max_backoff = wait;
        self
    }

    /// The longest `Retry-After` honoured: at most 1 hour. Default 60 s.
    pub fn with_max_retry_after(mut self, wait: Duration) -> Self {
        self.max_retry_after = wait;
        self
    }

    /// How long a throttled request keeps trying, from its first 429 or
    /// 503: at most 24 hours. Default 10 minutes.
    pub fn with_max_throttled_wait(mut self, wait: Duration) -> Self {
        self.max_throttled_wait = wait;
        self
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Upper bound of the first wait.
    pub fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }

    /// Upper bound of any drawn wait.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// The longest `Retry-After` honoured.
    pub fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    /// How long a throttled request keeps trying.
    pub fn max_throttled_wait(&self) -> Duration {
        self.max_throttled_wait
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(ConfigError::invalid(
                "retry.max_attempts",
                self.max_attempts,
                format!("must be 1 (no retries) to {MAX_ATTEMPTS}"),
            ));
        }
        if self.max_backoff > MAX_BACKOFF {
            return Err(ConfigError::invalid(
                "retry.max_backoff",
                format!("{:?}", self.max_backoff),
                format!("must be at most {MAX_BACKOFF:?}"),
            ));
        }
        if self.initial_backoff > self.max_backoff {
            return Err(ConfigError::invalid(
                "retry.initial_backoff",
                format!("{:?}", self.initial_backoff),
                format!("must not exceed retry.max_backoff ({:?})", self.max_backoff),
            ));
        }
        if self.max_throttled_wait > MAX_THROTTLED_WAIT {
            return Err(ConfigError::invalid(
                "retry.max_throttled_wait",
                format!("{:?}", self.max_throttled_wait),
                format!("must be at most {MAX_THROTTLED_WAIT:?}"),
            ));
        }
        if self.max_retry_after > MAX_RETRY_AFTER {
            return Err(ConfigError::invalid(
                "retry.max_retry_after",
                format!("{:?}", self.max_retry_after),
                format!("must be at most {MAX_RETRY_AFTER:?}"),
            ));
        }
        Ok(())
    }

    /// The wait before the next attempt, after `counted` attempts that
    /// count against `max_attempts`, the last of which failed with `error`
    /// (not throttling); `None` to give up.
    pub(crate) fn next_delay(&self, counted: u32, error: &Error) -> Option<Duration> {
        if counted >= self.max_attempts || !error.is_retryable() {
            return None;
        }
        match error.retry_after() {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait),
            None => Some(self.backoff(counted)),
        }
    }

    /// The wait after the `throttles`-th throttled attempt in a row, the
    /// request having been throttled for `throttled_for`; `None` to give
    /// up. Never shorter than the server's `Retry-After`, and drawn like a
    /// backoff so that many requests throttled together spread out.
    pub(crate) fn throttled_delay(
        &self,
        throttles: u32,
        throttled_for: Duration,
        error: &Error,
    ) -> Option<Duration> {
        let asked = error.retry_after().unwrap_or_default();
        if !self.is_enabled() || asked > self.max_retry_after {
            return None;
        }
        let delay = asked.max(self.backoff(throttles));
        (throttled_for.saturating_add(delay) <= self.max_throttled_wait).then_some(delay)
    }

    /// A drawn wait after `failed` failed attempts.
    fn backoff(&self, failed: u32) -> Duration {
        let bound = self
            .initial_backoff
            .saturating_mul(1 << failed.saturating_sub(1).min(30))
            .min(self.max_backoff);
        bound.mul_f64(fastrand::f64())
    }
}

/// What pacing a request needs from its run and its client.
pub(crate) struct Pace<'a> {
    pub throttle: &'a Throttle,
    pub concurrency: &'a Concurrency,
    pub slot: &'a Slot,
    pub stats: &'a Stats,
}

/// Runs `attempt` until it succeeds, fails in a way not worth retrying, or
/// runs out of attempts (or of throttled time); counts each attempt in
/// `attempts`. Each attempt first waits for the client's pauses and rate
/// cap. Once `cancel` fires no attempt starts, and one in flight is
/// abandoned with [`Error::Cancelled`].
pub(crate) async fn send<F, Fut>(
    config: &RetryConfig,
    pace: Pace<'_>,
    operation: Operation,
    items: usize,
    cancel: &mut Cancel,
    attempts: &AtomicU32,
    mut attempt: F,
) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ApiResult>,
{
    let mut last_error = None;
    let mut counted = 0;
    let mut throttles = 0;
    let mut throttled_since = None;
    loop {
        let started = if cancel.is_cancelled() {
            None
        } else {
            pace.throttle
                .wait_turn(operation, items, cancel, pace.stats)
                .await
        };
        let Some(started) = started else {
            return Err(last_error.unwrap_or(Error::Cancelled));
        };
        let number = attempts.fetch_add(1, Relaxed) + 1;
        let span = tracing::debug_span!(
            "marketap.request",
            operation = operation.as_str(),
            items,
            attempt = number
        );
        let on_wire = pace.concurrency.enter(pace.slot);
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(Error::Cancelled),
            result = attempt().instrument(span.clone()) => result,
        };
        drop(on_wire);
        let error = match Error::classify(result).await {
            Ok(()) => {
                pace.concurrency.succeeded(pace.slot);
                pace.throttle.pacer(operation).succeeded();
                span.in_scope(|| tracing::debug!("accepted"));
                return Ok(());
            }
            Err(error) => error,
        };
        let delay = if error.is_throttling() {
            pace.stats.throttled.fetch_add(1, Relaxed);
            let crowded = pace.concurrency.throttled(pace.slot);
            // A `Retry-After: 0` asks for no slower rate (only a retry),
            // so it teaches the learned rate nothing; nor does a refusal
            // the concurrency explains. The concurrency limit still backs
            // off.
            if !crowded && error.retry_after() != Some(Duration::ZERO) {
                pace.throttle.pacer(operation).throttled(started);
            }
            throttles += 1;
            let since = *throttled_since.get_or_insert_with(Instant::now);
            let delay = config.throttled_delay(throttles, since.elapsed(), &error);
            if let (Some(_), Some(asked)) = (delay, error.retry_after()) {
                pace.throttle.pause(operation, asked);
            }
            delay
        } else {
            counted += 1;
            throttles = 0;
            config.next_delay(counted, &error)
        };
        let Some(delay) = delay else {
            span.in_scope(|| tracing::warn!(status = error.status(), error = %ErrorChain(&error), "request failed"));
            return Err(error);
        };
        span.in_scope(|| tracing::info!(status = error.status(), error = %ErrorChain(&error), ?delay, "retrying"));
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(error),
            () = tokio::time::sleep(delay) => {}
        }
        if error.is_throttling() {
            pace.stats.waited(delay);
        }
        last_error = Some(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, retry_after: Option<Duration>) -> Error {
        Error::Status {
            status,
            body: String::new(),
            retry_after,
        }
    }

    #[test]
    fn backoff_grows_exponentially_within_jittered_bounds() {
        let config = RetryConfig::default()
            .with_max_attempts(10)
            .with_initial_backoff(Duration::from_millis(100))
            .with_max_backoff(Duration::from_millis(1000));
        for (failed, bound_ms) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)] {
            let delays: Vec<_> = (0..200)
                .map(|_| config.next_delay(failed, &status(500, None)).unwrap())
                .collect();
            let bound = Duration::from_millis(bound_ms);
            assert!(
                delays.iter().all(|d| *d <= bound),
                "attempt {failed}: over {bound:?}"
            );
            // Full jitter spreads waits over the whole range.
            assert!(
                delays.iter().any(|d| *d < bound / 4),
                "attempt {failed}: no short waits"
            );
            assert!(
                delays.iter().any(|d| *d > bound * 3 / 4),
                "attempt {failed}: no long waits"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_exactly_up_to_its_own_cap() {
        let config = RetryConfig::default()
            .with_max_backoff(Duration::from_secs(5))
            .with_max_retry_after(Duration::from_secs(60));
        let after = |secs| status(429, Some(Duration::from_secs(secs)));
        // Longer than max_backoff, and still honoured: the server asked.
        assert_eq!(
            config.next_delay(1, &after(30)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(config.next_delay(1, &after(0)), Some(Duration::ZERO));
        assert_eq!(
            config.next_delay(1, &after(60)),
            Some(Duration::from_secs(60))
        );
        // Past the cap: give up rather than retry before the server asked.
        assert_eq!(config.next_delay(1, &after(61)), None);
    }

    #[test]
    fn attempts_stop_at_the_limit_and_at_errors_not_worth_retrying() {
        let config = RetryConfig::default().with_max_attempts(3);
        assert!(config.next_delay(1, &status(500, None)).is_some());
        assert!(config.next_delay(2, &status(502, None)).is_some());
        assert_eq!(config.next_delay(3, &status(500, None)), None);
        assert_eq!(config.next_delay(1, &status(404, None)), None);
        let unauthorized = Error::Unauthorized {
            code: None,
            message: None,
        };
        assert_eq!(config.next_delay(1, &unauthorized), None);
        assert_eq!(
            RetryConfig::disabled().next_delay(1, &status(503, None)),
            None
        );
    }

    #[test]
    fn throttled_requests_wait_at_least_what_the_server_asked_within_a_budget() {
        let config = RetryConfig::default()
            .with_initial_backoff(Duration::from_millis(100))
            .with_max_backoff(Duration::from_secs(1))
            .with_max_retry_after(Duration::from_secs(60))
            .with_max_throttled_wait(Duration::from_secs(30));
        let asked = |secs| status(429, Some(Duration::from_secs(secs)));
        for throttles in 1..40 {
            let delay = config
                .throttled_delay(throttles, Duration::ZERO, &asked(2))
                .unwrap();
            assert!(delay >= Duration::from_secs(2), "{delay:?}");
            let drawn = config
                .throttled_delay(throttles, Duration::ZERO, &status(503, None))
                .unwrap();
            assert!(drawn <= Duration::from_secs(1), "{drawn:?}");
        }
        // Past the budget, or a Retry-After past its cap: give up.
        assert_eq!(
            config.throttled_delay(1, Duration::from_secs(29), &asked(2)),
            None
        );
        assert!(
            config
                .throttled_delay(1, Duration::from_secs(27), &asked(2))
                .is_some()
        );
        assert_eq!(config.throttled_delay(1, Duration::ZERO, &asked(61)), None);
        let disabled = RetryConfig::disabled();
        assert_eq!(disabled.throttled_delay(1, Duration::ZERO, &asked(1)), None);
    }

    #[test]
    fn config_bounds_are_checked() {
        let bad = [
            RetryConfig::default().with_max_attempts(0),
            RetryConfig::default().with_max_attempts(21),
            RetryConfig::default().with_max_backoff(Duration::from_secs(3600)),
            RetryConfig::default().with_initial_backoff(Duration::from_secs(20)),
            RetryConfig::default().with_max_retry_after(Duration::from_secs(3601)),
            RetryConfig::default().with_max_throttled_wait(Duration::from_secs(24 * 3600 + 1)),
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(ConfigError::Invalid { .. })),
                "{config:?}"
            );
        }
        assert!(RetryConfig::default().validate().is_ok());
        let at_the_bounds = RetryConfig::default()
            .with_max_attempts(MAX_ATTEMPTS)
            .with_initial_backoff(MAX_BACKOFF)
            .with_max_backoff(MAX_BACKOFF)
            .with_max_retry_after(MAX_RETRY_AFTER)
            .with_max_throttled_wait(MAX_THROTTLED_WAIT);
        assert!(at_the_bounds.validate().is_ok(), "{at_the_bounds:?}");
        assert!(!RetryConfig::disabled().is_enabled());
        assert!(RetryConfig::default().is_enabled());
    }
}
