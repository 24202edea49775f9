//! The crate's errors: [`Error`] for anything a call can fail with, and
//! [`ValidationError`] for bad input caught before anything goes on the
//! wire; how one attempt's outcome is classified (by HTTP status, never by
//! the body's shape), and which failures are worth another attempt.
//!
//! No variant ever holds the API key: validation of the key reports that it
//! is invalid without echoing it, and transport errors carry the URL (which
//! holds the project id, not the key).

use std::time::Duration;

use marketap_api::{ResponseValue, types::IngestionResponse};

use crate::echo::echo;
use crate::model::taxonomy::{Scope, ValueType};
use crate::model::timestamp::TimestampError;

/// Bodies of unexpected responses are kept up to this size.
const MAX_ERROR_BODY: usize = 4096;

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
    /// deadline, or the deadline of a [`Stop`](crate::Stop), passed while
    /// the request was in flight or still queued.
    /// With `attempts == 0` (see [`FailedBatch`](crate::FailedBatch)) it
    /// never went on the wire; otherwise it may have reached the server.
    #[error("not delivered: the shutdown or stop deadline passed first")]
    Cancelled,

    /// Neither an HTTP status nor a transport failure: the request could not
    /// be built, or a documented response could not be decoded. Never
    /// retried.
    #[error("protocol error (no HTTP status): {reason}")]
    Protocol {
        /// What went wrong.
        reason: String,
    },

    /// A panic interrupted the request (in this SDK, or in code it called,
    /// such as a `tracing` subscriber), or ended the ingestor's background
    /// task. The items were not delivered. Never retried.
    #[error("not delivered: a panic interrupted delivery: {message}")]
    Panicked {
        /// The panic's message.
        message: String,
    },
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

/// How one attempt ended, as the generated client reports it.
pub(crate) type ApiResult = Result<ResponseValue<()>, marketap_api::Error<IngestionResponse>>;

impl Error {
    /// The outcome of one attempt, classified by HTTP status: any 2xx is
    /// accepted (the spec documents 202; a proxy may answer 200 or 204), a
    /// 401 is [`Error::Unauthorized`] and a 400 [`Error::BadRequest`]
    /// whatever their body holds, anything else [`Error::Status`].
    pub(crate) async fn classify(result: ApiResult) -> Result<(), Error> {
        use marketap_api::Error as Api;
        let error = match result {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        Err(match error {
            Api::ErrorResponse(response) => {
                let status = response.status().as_u16();
                let retry_after = retry_after(response.headers());
                let api_error = response.into_inner();
                let body = serde_json::to_string(&api_error).unwrap_or_default();
                Error::from_status(status, Some(api_error), body, retry_after)
            }
            Api::UnexpectedResponse(response) => {
                if response.status().is_success() {
                    return Ok(());
                }
                let status = response.status().as_u16();
                let retry_after = retry_after(response.headers());
                let body = match response.bytes().await {
                    Ok(bytes) => lossy(&bytes),
                    Err(e) if e.is_timeout() => return Err(Error::Timeout(e)),
                    Err(e) => return Err(Error::Transport(e)),
                };
                let api_error = serde_json::from_str::<IngestionResponse>(&body).ok();
                Error::from_status(status, api_error, body, retry_after)
            }
            Api::CommunicationError(e) | Api::ResponseBodyError(e) | Api::InvalidUpgrade(e)
                if e.is_timeout() =>
            {
                Error::Timeout(e)
            }
            Api::CommunicationError(e) | Api::ResponseBodyError(e) | Api::InvalidUpgrade(e) => {
                Error::Transport(e)
            }
            Api::InvalidResponsePayload(bytes, e) => Error::Protocol {
                reason: format!(
                    "a documented response could not be decoded ({e}): {}",
                    lossy(&bytes)
                ),
            },
            Api::InvalidRequest(reason) => Error::Protocol {
                reason: format!("the request could not be built: {reason}"),
            },
            Api::Custom(reason) => Error::Protocol {
                reason: format!("a client hook failed: {reason}"),
            },
        })
    }

    /// The error for an HTTP `status` that is not a success. `api_error` is
    /// the body when it is the API's error JSON; `body` is the body as text.
    fn from_status(
        status: u16,
        api_error: Option<IngestionResponse>,
        body: String,
        retry_after: Option<Duration>,
    ) -> Error {
        let (code, message) = match api_error {
            Some(IngestionResponse { code, message }) => (code, message),
            None => (None, Some(body.clone()).filter(|b| !b.trim().is_empty())),
        };
        match status {
            401 => Error::Unauthorized { code, message },
            400 => Error::BadRequest { code, message },
            _ => Error::Status {
                status,
                body,
                retry_after,
            },
        }
    }

    /// Whether another attempt of the same request may succeed: transport
    /// errors (but a request that could not be built), timeouts, and the
    /// statuses 408, 429, 500, 502, 503 and 504.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout(_) => true,
            Error::Transport(e) => !e.is_builder(),
            Error::Status { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// Whether the server is throttling (429 or 503): the request was fine,
    /// the server wants fewer or slower requests.
    pub fn is_throttling(&self) -> bool {
        matches!(
            self,
            Error::Status {
                status: 429 | 503,
                ..
            }
        )
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// `Retry-After` from `headers`, as delay-seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_retry_after)
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

/// A body as text, cut to [`MAX_ERROR_BODY`] bytes.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_ERROR_BODY)]).into_owned()
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

    /// An id holds a control character (NUL, a newline, an escape...).
    #[error("`{field}` must not hold control characters, got \"{value}\"")]
    ControlCharacter {
        /// The field, e.g. `user_id`.
        field: &'static str,
        /// What was given, cut to a readable length.
        value: String,
    },

    /// A value nests arrays and objects deeper than the SDK sends (and
    /// than its dead-letter file can read back).
    #[error("`{field}` nests arrays and objects deeper than {max} levels")]
    TooDeep {
        /// Where the limit is crossed, e.g. `properties.a.b`.
        field: String,
        /// The limit ([`crate::MAX_DEPTH`]).
        max: usize,
    },

    /// A name starting with `mkt_` that Marketap does not reserve where it is used (see
    /// [`crate::taxonomy`]).
    #[error("{}", not_reserved(field, name, *scope, *suggestion, *reserved_as))]
    NotReserved {
        /// Where, e.g. `properties.mkt_items[0].mkt_prodcut_id`, or `event_name`.
        field: String,
        /// The name, cut to a readable length.
        name: String,
        /// Where it was used.
        scope: Scope,
        /// The closest name reserved there, when one is close (`mkt_revenu` → `mkt_revenue`).
        suggestion: Option<&'static str>,
        /// Where the name is reserved instead, if anywhere (`mkt_cart`, a user property, among
        /// an event's properties).
        reserved_as: Option<Scope>,
    },

    /// A reserved name whose value has the wrong JSON type.
    #[error("`{field}` must be {expected}, got {found}: {value}")]
    WrongType {
        /// Where, e.g. `properties.mkt_revenue`.
        field: String,
        /// What the value must be.
        expected: ValueType,
        /// The JSON type it has (`string`, `number`, ...).
        found: &'static str,
        /// The value, cut to a readable length.
        value: String,
    },

    /// An event that Marketap's mobile SDKs send by themselves
    /// ([`crate::taxonomy::sdk_event`]).
    #[error(
        "`event_name`: \"{name}\" is sent by Marketap's mobile SDKs themselves; a copy from a \
         server would sit beside theirs and skew reports and campaigns (to send it anyway, \
         switch the reserved check off)"
    )]
    SdkOnlyEvent {
        /// The event name.
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

/// The message of [`ValidationError::NotReserved`].
fn not_reserved(
    field: &str,
    name: &str,
    scope: Scope,
    suggestion: Option<&str>,
    reserved_as: Option<Scope>,
) -> String {
    let here = scope.plural();
    if let Some(other) = reserved_as {
        let hint = match other {
            Scope::EventName => "; use it as an event's name",
            Scope::EventProperty => "; send it in an event's properties",
            Scope::UserProperty => "; send it in a user profile",
            Scope::ItemField => {
                "; put it in an item object, in `mkt_items`, `mkt_cart` or `mkt_wish_list`"
            }
            Scope::CouponField => "; put it in a coupon object, in `mkt_coupons`",
        };
        let there = other.plural();
        return format!("`{field}`: \"{name}\" is one of Marketap's {there}, not its {here}{hint}");
    }
    match suggestion {
        Some(suggestion) => format!(
            "`{field}`: \"{name}\" is not one of Marketap's reserved {here}; did you mean \"{suggestion}\"?"
        ),
        None => format!(
            "`{field}`: \"{name}\" is not one of Marketap's reserved {here}, and the `mkt_` prefix \
             is Marketap's: rename it (the reserved names are in `marketap_ext::taxonomy`)"
        ),
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

/// Checks an id: not empty or blank, and free of control characters.
pub(crate) fn require_id(field: &'static str, value: &str) -> Result<(), ValidationError> {
    require_non_empty(field, value)?;
    if value.chars().any(char::is_control) {
        return Err(ValidationError::ControlCharacter {
            field,
            value: echo(value),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_classifies_whatever_the_body() {
        let html = "<html>401 Authorization Required</html>".to_owned();
        match Error::from_status(401, None, html.clone(), None) {
            Error::Unauthorized {
                code: None,
                message: Some(message),
            } => assert_eq!(message, html),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Error::from_status(400, None, "  \n".into(), None),
            Error::BadRequest {
                code: None,
                message: None
            }
        ));
        let documented = IngestionResponse {
            code: Some(7),
            message: Some("bad user_id".into()),
        };
        assert!(matches!(
            Error::from_status(400, Some(documented), String::new(), None),
            Error::BadRequest { code: Some(7), message: Some(m) } if m == "bad user_id"
        ));
        let wait = Some(Duration::from_secs(3));
        assert!(matches!(
            Error::from_status(503, None, "busy".into(), wait),
            Error::Status { status: 503, body, retry_after } if body == "busy" && retry_after == wait
        ));
    }

    #[test]
    fn each_error_knows_its_status_code_and_message() {
        let unauthorized = Error::Unauthorized {
            code: Some(1001),
            message: Some("invalid api key".into()),
        };
        assert_eq!(unauthorized.status(), Some(401));
        assert_eq!(unauthorized.api_code(), Some(1001));
        assert_eq!(unauthorized.api_message(), Some("invalid api key"));
        assert_eq!(
            unauthorized.to_string(),
            "unauthorized (401): code 1001: invalid api key"
        );
        let bad = Error::BadRequest {
            code: None,
            message: Some("no".into()),
        };
        assert_eq!(
            (bad.status(), bad.to_string().as_str()),
            (Some(400), "bad request (400): no")
        );
        let code_only = Error::BadRequest {
            code: Some(3),
            message: None,
        };
        assert_eq!(code_only.to_string(), "bad request (400): code 3");
        let status = Error::Status {
            status: 418,
            body: "teapot".into(),
            retry_after: None,
        };
        assert_eq!(status.status(), Some(418));
        assert_eq!((status.api_code(), status.api_message()), (None, None));
        assert!(status.to_string().contains("teapot"));
        assert_eq!(Error::Cancelled.status(), None);
        assert!(status.retry_after().is_none());
        assert!(Error::from_status(429, None, String::new(), None).is_throttling());
        assert!(!Error::from_status(500, None, String::new(), None).is_throttling());
    }

    #[test]
    fn only_transient_statuses_are_retryable() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(
                Error::from_status(status, None, String::new(), None).is_retryable(),
                "{status}"
            );
        }
        for status in [400, 401, 404, 409, 413, 501] {
            assert!(
                !Error::from_status(status, None, String::new(), None).is_retryable(),
                "{status}"
            );
        }
        assert!(!Error::Cancelled.is_retryable());
        assert!(
            !Error::Protocol {
                reason: String::new()
            }
            .is_retryable()
        );
    }

    #[test]
    fn long_bodies_are_cut_to_a_readable_length() {
        let body = "x".repeat(MAX_ERROR_BODY + 10);
        assert_eq!(lossy(body.as_bytes()).len(), MAX_ERROR_BODY);
        assert_eq!(lossy("é ok".as_bytes()), "é ok");
        assert_eq!(lossy(b"\xff!"), "\u{fffd}!");
    }

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
