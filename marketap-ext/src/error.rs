//! The crate's errors: [`Error`] for anything a call can fail with, and
//! [`ValidationError`] for bad input caught before anything goes on the
//! wire.
//!
//! No variant ever holds the API key: validation of the key reports that it
//! is invalid without echoing it, and transport errors carry the URL (which
//! holds the project id, not the key).

use std::time::Duration;

use crate::echo::echo;
use crate::timestamp::TimestampError;

/// Everything a call to Marketap can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input was rejected before anything was sent.
    #[error(transparent)]
    Validation(#[from] ValidationError),

    /// 401: the API key or project id was not accepted. Never retried.
    #[error("unauthorized (401){}", describe(*code, message.as_deref()))]
    Unauthorized {
        /// The API's error `code`, when it sent one.
        code: Option<i64>,
        /// The API's error `message`, when it sent one.
        message: Option<String>,
    },

    /// 400: the API rejected the request as invalid. Never retried.
    #[error("bad request (400){}", describe(*code, message.as_deref()))]
    BadRequest {
        /// The API's error `code`, when it sent one.
        code: Option<i64>,
        /// The API's error `message`, when it sent one.
        message: Option<String>,
    },

    /// Any status the API does not document (429, 5xx, ...).
    #[error("unexpected HTTP status {status}: {}", echo(body))]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The response body, as text.
        body: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },

    /// The request timed out (connect or whole-request timeout).
    #[error("request timed out: {0}")]
    Timeout(#[source] reqwest::Error),

    /// The request could not be sent or its response not read.
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),

    /// Given up before the server accepted it: the ingestor's shutdown
    /// deadline passed while the request was in flight or still queued.
    #[error("not delivered: the shutdown deadline passed first")]
    Cancelled,
}

impl Error {
    /// The HTTP status of the response, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Unauthorized { .. } => Some(401),
            Error::BadRequest { .. } => Some(400),
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API's error `code` from a 400 or 401 body.
    pub fn api_code(&self) -> Option<i64> {
        match self {
            Error::Unauthorized { code, .. } | Error::BadRequest { code, .. } => *code,
            _ => None,
        }
    }

    /// The API's error `message` from a 400 or 401 body.
    pub fn api_message(&self) -> Option<&str> {
        match self {
            Error::Unauthorized { message, .. } | Error::BadRequest { message, .. } => {
                message.as_deref()
            }
            _ => None,
        }
    }
}

fn describe(code: Option<i64>, message: Option<&str>) -> String {
    match (code, message) {
        (None, None) => String::new(),
        (Some(code), None) => format!(": code {code}"),
        (None, Some(message)) => format!(": {message}"),
        (Some(code), Some(message)) => format!(": code {code}: {message}"),
    }
}

/// Bad input, caught before anything goes on the wire. Each variant names
/// the field and, where it can be shown, the offending value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A required string or list is empty.
    #[error("`{field}` must not be empty (got \"{value}\")")]
    Empty {
        /// The field, e.g. `user_id`.
        field: &'static str,
        /// What was given (a blank string, or `[]`), control characters escaped.
        value: String,
    },

    /// Properties must serialise to a JSON object.
    #[error("`{field}` must serialise to a JSON object, got {found}: {value}")]
    NotAnObject {
        /// The field, e.g. `properties`.
        field: String,
        /// The JSON type it serialised to (`array`, `string`, ...).
        found: &'static str,
        /// The value, cut to a readable length.
        value: String,
    },

    /// JSON has no NaN or infinity; serde_json would silently send `null`.
    #[error("`{field}` is {value}; JSON has no NaN or infinity")]
    NonFiniteNumber {
        /// Where the number is, e.g. `properties.price`.
        field: String,
        /// `NaN`, `inf` or `-inf`.
        value: String,
    },

    /// An item is larger than the SDK sends in one piece.
    #[error("`{field}` is {bytes} bytes as JSON; the limit is {max} bytes")]
    TooLarge {
        /// Where, e.g. `properties.description`.
        field: String,
        /// Its size as JSON, at least.
        bytes: usize,
        /// The limit ([`crate::MAX_ITEM_BYTES`]).
        max: usize,
    },

    /// The value's `Serialize` implementation failed.
    #[error("`{field}` could not be serialised: {reason}")]
    Unserializable {
        /// The field, e.g. `properties`.
        field: String,
        /// serde's message.
        reason: String,
    },

    /// More items than one request may carry.
    #[error("{count} {field} in one request; the API takes at most {max}")]
    TooManyItems {
        /// The list, e.g. `events`.
        field: &'static str,
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },

    /// A timestamp that is invalid, out of range or has no offset.
    #[error("invalid `{field}`: {source}")]
    Timestamp {
        /// The field, e.g. `timestamp`.
        field: &'static str,
        /// What is wrong with it.
        #[source]
        source: TimestampError,
    },

    /// A configuration value is unusable.
    #[error("invalid `{field}` \"{value}\": {reason}")]
    Config {
        /// The setting, e.g. `base_url` or `retry.max_attempts`.
        field: &'static str,
        /// The value given, cut to 100 characters, control characters escaped.
        value: String,
        /// Why it is rejected.
        reason: String,
    },

    /// A required environment variable is unset or empty.
    #[error("environment variable {name} is not set or is empty")]
    MissingEnv {
        /// The variable's name.
        name: &'static str,
    },

    /// The API key cannot go into an HTTP header. The key is not shown.
    #[error(
        "`api_key` is not a valid HTTP header value (empty, or holds a control character such as a newline); the key is not shown"
    )]
    InvalidApiKey,
}

impl ValidationError {
    pub(crate) fn empty(field: &'static str, value: &str) -> Self {
        ValidationError::Empty {
            field,
            value: echo(value),
        }
    }

    pub(crate) fn config(
        field: &'static str,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        ValidationError::Config {
            field,
            value: echo(&value.to_string()),
            reason: reason.into(),
        }
    }
}

/// Checks that a required string is not empty or blank.
pub(crate) fn require_non_empty(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        Err(ValidationError::empty(field, value))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_body_cannot_forge_log_lines() {
        let error = Error::Status {
            status: 502,
            body: "<html>\nINFO all good\r\n\u{1b}[2K</html>".into(),
            retry_after: None,
        };
        assert_eq!(
            error.to_string(),
            r"unexpected HTTP status 502: <html>\nINFO all good\r\n\u{1b}[2K</html>"
        );
    }

    #[test]
    fn echoed_values_are_quoted_and_escaped_once() {
        let error = ValidationError::empty("user_id", "\n\t");
        assert_eq!(
            error.to_string(),
            r#"`user_id` must not be empty (got "\n\t")"#
        );
        let error = ValidationError::config("base_url", "https://a\u{1b}b", "no");
        assert_eq!(
            error.to_string(),
            r#"invalid `base_url` "https://a\u{1b}b": no"#
        );
    }
}
