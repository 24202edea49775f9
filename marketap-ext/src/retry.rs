//! Retrying one request: which failures are worth another attempt, how long
//! to wait (exponential backoff with full jitter, or the server's
//! `Retry-After`, capped), and the loop that does it. Every operation goes
//! through [`send`], the batch calls and the ingestor included.

use std::{future::Future, time::Duration};

use marketap_api::{ResponseValue, types::IngestionResponse};
use tokio::sync::watch;
use tracing::Instrument;

use crate::error::{Error, ValidationError};

const MAX_ATTEMPTS: u32 = 20;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Bodies of unexpected responses are kept up to this size.
const MAX_ERROR_BODY: usize = 4096;

/// When and how often a failed request is tried again.
///
/// Retried: transport errors, timeouts, and statuses 408, 429, 500, 502,
/// 503 and 504. Never retried: 400 and 401 (the same request would fail the
/// same way). Waits grow exponentially from `initial_backoff` up to
/// `max_backoff`, each drawn uniformly from zero to that bound ("full
/// jitter"), so clients that failed together do not retry together. A
/// `Retry-After` from the server (seconds or an HTTP date) replaces the
/// drawn wait, capped by `max_backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts in all, the first included: 1 to 20. `1` turns retries off.
    /// Default 5.
    pub max_attempts: u32,
    /// Upper bound of the first wait. Default 200 ms.
    pub initial_backoff: Duration,
    /// Upper bound of any wait, `Retry-After` included. Default 10 s.
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
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

    pub(crate) fn validate(&self) -> Result<(), ValidationError> {
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(ValidationError::config(
                "retry.max_attempts",
                self.max_attempts,
                format!("must be 1 (no retries) to {MAX_ATTEMPTS}"),
            ));
        }
        if self.max_backoff > MAX_BACKOFF {
            return Err(ValidationError::config(
                "retry.max_backoff",
                format!("{:?}", self.max_backoff),
                format!("must be at most {MAX_BACKOFF:?}"),
            ));
        }
        if self.initial_backoff > self.max_backoff {
            return Err(ValidationError::config(
                "retry.initial_backoff",
                format!("{:?}", self.initial_backoff),
                format!("must not exceed retry.max_backoff ({:?})", self.max_backoff),
            ));
        }
        Ok(())
    }

    /// The wait before attempt `failed + 1`, after `failed` attempts.
    pub(crate) fn delay(&self, failed: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_backoff);
        }
        let bound = self
            .initial_backoff
            .saturating_mul(1 << failed.saturating_sub(1).min(30))
            .min(self.max_backoff);
        bound.mul_f64(fastrand::f64())
    }
}

impl Error {
    /// Whether another attempt of the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout(_) => true,
            // A request that could not be built will not build next time.
            Error::Transport(e) => !e.is_builder(),
            Error::Status { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Maps the generated client's error, reading the body of an
    /// unexpected response.
    pub(crate) async fn from_api(error: marketap_api::Error<IngestionResponse>) -> Self {
        use marketap_api::Error as Api;
        match error {
            Api::ErrorResponse(response) => {
                let status = response.status().as_u16();
                let IngestionResponse { code, message } = response.into_inner();
                if status == 401 {
                    Error::Unauthorized { code, message }
                } else {
                    Error::BadRequest { code, message }
                }
            }
            Api::UnexpectedResponse(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(parse_retry_after);
                let body = match response.bytes().await {
                    Ok(bytes) => String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_ERROR_BODY)])
                        .into_owned(),
                    Err(e) => format!("(body unreadable: {e})"),
                };
                Error::Status {
                    status,
                    body,
                    retry_after,
                }
            }
            Api::CommunicationError(e) | Api::ResponseBodyError(e) if e.is_timeout() => {
                Error::Timeout(e)
            }
            Api::CommunicationError(e) | Api::ResponseBodyError(e) => Error::Transport(e),
            // A documented error status whose body is not the documented JSON.
            Api::InvalidResponsePayload(bytes, e) => Error::BadRequest {
                code: None,
                message: Some(format!(
                    "undecodable error body ({e}): {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_ERROR_BODY)])
                )),
            },
            other => Error::Status {
                status: 0,
                body: other.to_string(),
                retry_after: None,
            },
        }
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    // A date in the past means "now".
    Some(
        date.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// Lets a caller abandon a request and its retries (the ingestor does at
/// its shutdown deadline). [`Cancel::never`] for calls that run to the end.
#[derive(Debug, Clone)]
pub(crate) struct Cancel(Option<watch::Receiver<bool>>);

impl Cancel {
    pub(crate) fn never() -> Self {
        Self(None)
    }

    pub(crate) fn new(receiver: watch::Receiver<bool>) -> Self {
        Self(Some(receiver))
    }

    /// Resolves once cancellation is signalled; never, without a signal.
    async fn cancelled(&mut self) {
        if let Some(receiver) = &mut self.0
            && receiver.wait_for(|cancelled| *cancelled).await.is_ok()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// How one request ended, after all its attempts.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// `Ok` when the server accepted it.
    pub result: Result<(), Error>,
    /// Attempts made, at least one.
    pub attempts: u32,
}

/// Runs `attempt` until it succeeds, fails in a way not worth retrying, or
/// runs out of attempts; or until `cancel` fires, which ends it at once
/// with [`Error::Cancelled`].
pub(crate) async fn send<F, Fut>(
    config: &RetryConfig,
    operation: &'static str,
    items: usize,
    mut cancel: Cancel,
    mut attempt: F,
) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<ResponseValue<()>, marketap_api::Error<IngestionResponse>>>,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        let span = tracing::debug_span!("marketap.request", operation, items, attempt = attempts);
        let result = tokio::select! {
            result = attempt().instrument(span.clone()) => result,
            () = cancel.cancelled() => return Outcome { result: Err(Error::Cancelled), attempts },
        };
        let error = match result {
            Ok(response) => {
                span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "accepted"));
                return Outcome {
                    result: Ok(()),
                    attempts,
                };
            }
            Err(error) => Error::from_api(error).await,
        };
        if attempts >= config.max_attempts || !error.is_retryable() {
            span.in_scope(|| tracing::warn!(status = error.status(), %error, "request failed"));
            return Outcome {
                result: Err(error),
                attempts,
            };
        }
        let delay = config.delay(attempts, error.retry_after());
        span.in_scope(|| tracing::info!(status = error.status(), %error, ?delay, "retrying"));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => return Outcome { result: Err(error), attempts },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_jittered_bounds() {
        let config = RetryConfig {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for (failed, bound_ms) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)] {
            let delays: Vec<_> = (0..200).map(|_| config.delay(failed, None)).collect();
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
    fn retry_after_replaces_backoff_but_is_capped() {
        let config = RetryConfig {
            max_backoff: Duration::from_secs(5),
            ..RetryConfig::default()
        };
        assert_eq!(
            config.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            config.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let future = std::time::SystemTime::now() + Duration::from_secs(120);
        let wait = parse_retry_after(&httpdate::fmt_http_date(future)).unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-3"), None);
    }

    #[test]
    fn only_transient_statuses_are_retryable() {
        let status = |status| Error::Status {
            status,
            body: String::new(),
            retry_after: None,
        };
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(status(code).is_retryable(), "{code}");
        }
        for code in [404, 409, 413, 501] {
            assert!(!status(code).is_retryable(), "{code}");
        }
        assert!(
            !Error::BadRequest {
                code: None,
                message: None
            }
            .is_retryable()
        );
        assert!(
            !Error::Unauthorized {
                code: None,
                message: None
            }
            .is_retryable()
        );
    }

    #[test]
    fn config_bounds_are_checked() {
        let bad = [
            RetryConfig {
                max_attempts: 0,
                ..RetryConfig::default()
            },
            RetryConfig {
                max_attempts: 21,
                ..RetryConfig::default()
            },
            RetryConfig {
                max_backoff: Duration::from_secs(3600),
                ..RetryConfig::default()
            },
            RetryConfig {
                initial_backoff: Duration::from_secs(20),
                ..RetryConfig::default()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(ValidationError::Config { .. })),
                "{config:?}"
            );
        }
        assert!(RetryConfig::default().validate().is_ok());
        assert!(!RetryConfig::disabled().is_enabled());
    }
}
