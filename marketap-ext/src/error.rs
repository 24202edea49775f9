//! The crate's errors: [`Error`] for anything a call can fail with,
//! [`ValidationError`] for bad input caught before anything goes on the
//! wire, and [`ConfigError`] for a client or ingestor that cannot be set up;
//! how one attempt's outcome is classified (by HTTP status, never by the
//! body's shape), and which failures are worth another attempt.
//!
//! Each cause is said once: `Display` says what happened at this level and
//! [`source`](std::error::Error::source) gives the cause. To print a whole
//! chain on one line, use [`ErrorChain`].
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
    #[non_exhaustive]
    Unauthorized {
        /// The API's error `code`, when it sent one.
        code: Option<i64>,
        /// The API's error `message`, when it sent one.
        message: Option<String>,
    },

    /// 400: the API rejected the request as invalid. Never retried. A
    /// request of several items is split to find the ones refused (see
    /// [`BatchConfig::with_isolate_bad_requests`](crate::BatchConfig::with_isolate_bad_requests)),
    /// so this usually holds one item.
    #[error(
        "bad request (400){}{}",
        describe(*code, message.as_deref()),
        if *isolation_stopped { "; not isolated further: the split limit per request was reached" } else { "" }
    )]
    #[non_exhaustive]
    BadRequest {
        /// The API's error `code`, when it sent one.
        code: Option<i64>,
        /// The API's error `message`, when it sent one.
        message: Option<String>,
        /// The request held several items, and the client stopped splitting
        /// it to isolate the refused ones: its split limit was reached.
        isolation_stopped: bool,
    },

    /// Any status the API does not document (429, 5xx, ...).
    #[error("unexpected HTTP status {status}: {}", echo(body))]
    #[non_exhaustive]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The response body, as text.
        body: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },

    /// The request timed out (connect or whole-request timeout). The
    /// cause is the [`source`](std::error::Error::source).
    #[error("request timed out")]
    Timeout(#[source] reqwest::Error),

    /// The request could not be sent or its response not read. The cause
    /// is the [`source`](std::error::Error::source).
    #[error("transport error")]
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
    #[non_exhaustive]
    Protocol {
        /// What went wrong.
        reason: String,
    },

    /// The item could not be written to the ingestor's spool (a
    /// [`try_track`](crate::Ingestor::try_track) whose write failed after
    /// it returned). The cause is the [`source`](std::error::Error::source).
    #[error("not taken: the item could not be written to the spool")]
    Spool(#[source] crate::spool::SpoolError),

    /// A panic interrupted the request (in this SDK, or in code it called,
    /// such as a `tracing` subscriber), or ended the ingestor's background
    /// task. The items were not delivered. Never retried.
    #[error("not delivered: a panic interrupted delivery: {message}")]
    #[non_exhaustive]
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

    /// Whether this is a 400 for several items that the client stopped
    /// splitting to isolate the refused ones (see
    /// [`BatchConfig::with_max_isolation_splits`](crate::BatchConfig::with_max_isolation_splits)).
    pub fn isolation_stopped(&self) -> bool {
        matches!(
            self,
            Error::BadRequest {
                isolation_stopped: true,
                ..
            }
        )
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

/// How one attempt ended, as the generated client reports it. `pub` only so
/// the sealed [`Item`](crate::Item) trait can name it; this module is private.
pub type ApiResult = Result<ResponseValue<()>, marketap_api::Error<IngestionResponse>>;

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
            400 => Error::BadRequest {
                code,
                message,
                isolation_stopped: false,
            },
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

/// The API's `code` and `message` for a 400 or 401, the message through
/// [`echo`]: it comes from the server (or a proxy), and must not put a
/// newline or a terminal escape into a log line.
fn describe(code: Option<i64>, message: Option<&str>) -> String {
    match (code, message.map(echo)) {
        (None, None) => String::new(),
        (Some(code), None) => format!(": code {code}"),
        (None, Some(message)) => format!(": {message}"),
        (Some(code), Some(message)) => format!(": code {code}: {message}"),
    }
}

/// Shows an error and every cause under it on one line, separated by `: `,
/// for logs and terminals. The crate's errors say each cause once
/// (`Display` for this level, `source()` for the cause), so printing one
/// with `{}` alone shows only its own level.
///
/// ```
/// use marketap_ext::{ErrorChain, ValidationError, Timestamp};
///
/// let error = Timestamp::parse("2024-11-02 14:03").unwrap_err();
/// let error = ValidationError::Timestamp { field: "timestamp", source: error };
/// assert_eq!(error.to_string(), "invalid `timestamp`");
/// assert!(ErrorChain(&error).to_string().starts_with("invalid `timestamp`: "));
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

impl std::fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
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

    /// A timestamp that is invalid, out of range or has no offset; what is
    /// wrong with it is the [`source`](std::error::Error::source).
    #[error("invalid `{field}`")]
    Timestamp {
        /// The field, e.g. `timestamp`.
        field: &'static str,
        /// What is wrong with it.
        #[source]
        source: TimestampError,
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

    /// Two [`TrackEvent`](crate::TrackEvent) types share one event name
    /// with different properties in one [`TrackingPlan`](crate::TrackingPlan).
    #[error(
        "`TrackEvent::NAME` \"{name}\": two event types share this name with different properties"
    )]
    ConflictingEvent {
        /// The event name.
        name: String,
    },
}

/// A client or ingestor that cannot be set up: a setting out of range, a
/// missing environment variable, an unusable API key, or no Tokio runtime
/// to run on. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting is unusable.
    #[error("invalid `{field}` \"{value}\": {reason}")]
    Invalid {
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

    /// An [`Ingestor`](crate::Ingestor) was started outside a Tokio
    /// runtime; it needs one to run its background task on.
    #[error("an Ingestor must be started inside a Tokio runtime")]
    NoRuntime,

    /// The ingestor's spool could not be opened: another ingestor or
    /// process holds it, it has a format this version cannot read, or the
    /// disk refused. The cause is the [`source`](std::error::Error::source).
    #[error("could not open the ingestor's spool")]
    Spool(#[source] crate::spool::SpoolError),
}

impl ConfigError {
    pub(crate) fn invalid(
        field: &'static str,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            field,
            value: echo(&value.to_string()),
            reason: reason.into(),
        }
    }
}

impl ValidationError {
    pub(crate) fn empty(field: &'static str, value: &str) -> Self {
        ValidationError::Empty {
            field,
            value: echo(value),
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

/// Whether `value` starts with a printable ASCII byte (no whitespace):
/// then it is not blank, which settles [`require_non_empty`] without a
/// trim.
#[inline]
pub(crate) fn starts_printable(value: &str) -> bool {
    value
        .as_bytes()
        .first()
        .is_some_and(|b| (b'!'..=b'~').contains(b))
}

/// Checks that a required string is not empty or blank.
pub(crate) fn require_non_empty(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if !starts_printable(value) && value.trim().is_empty() {
        Err(ValidationError::empty(field, value))
    } else {
        Ok(())
    }
}

/// Checks an id: not empty or blank, and free of control characters.
pub(crate) fn require_id(field: &'static str, value: &str) -> Result<(), ValidationError> {
    require_non_empty(field, value)?;
    // Control characters are U+0000 to U+001F and U+007F to U+009F: in
    // UTF-8, bytes below 0x20, 0x7F, or 0xC2 followed by 0x80 to 0x9F. Only
    // a string with such a byte is decoded.
    let suspect = crate::bytes::any_word(value.as_bytes(), crate::bytes::may_be_control);
    if suspect && value.chars().any(char::is_control) {
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

    /// What `require_id` refuses, by the definitions its byte fast path
    /// stands in for: blank by `str::trim`, control by `char::is_control`.
    fn refuses(value: &str) -> bool {
        value.trim().is_empty() || value.chars().any(char::is_control)
    }

    #[test]
    fn ids_are_checked_as_trim_and_is_control_define_them() {
        for value in [
            "", " ", "a", " a", "\u{a0}", "\u{3000}", "\u{a0}a", "\u{85}", "a\u{85}", "a\u{9f}",
            "a\u{a0}", "é", "Ã", "a\u{7f}", "a\n", "a\u{1}", "\u{7f}", "~", "!", "\u{2028}",
            "a\u{c2}",
        ] {
            assert_eq!(
                require_id("id", value).is_err(),
                refuses(value),
                "{value:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn ids_match_their_definition(value in "\\PC{0,3}[\\x00-\\x20\\x7e-\\u{a0}\\u{3000}]{0,3}") {
            proptest::prop_assert_eq!(require_id("id", &value).is_err(), refuses(&value));
        }
    }

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
                message: None,
                isolation_stopped: false,
            }
        ));
        let documented = IngestionResponse {
            code: Some(7),
            message: Some("bad user_id".into()),
        };
        assert!(matches!(
            Error::from_status(400, Some(documented), String::new(), None),
            Error::BadRequest { code: Some(7), message: Some(m), .. } if m == "bad user_id"
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
            isolation_stopped: false,
        };
        assert_eq!(
            (bad.status(), bad.to_string().as_str()),
            (Some(400), "bad request (400): no")
        );
        let code_only = Error::BadRequest {
            code: Some(3),
            message: None,
            isolation_stopped: true,
        };
        assert_eq!(
            code_only.to_string(),
            "bad request (400): code 3; not isolated further: the split limit per request was reached"
        );
        assert!(code_only.isolation_stopped() && !bad.isolation_stopped());
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
        let error = ConfigError::invalid("base_url", "https://a\u{1b}b", "no");
        assert_eq!(
            error.to_string(),
            r#"invalid `base_url` "https://a\u{1b}b": no"#
        );
    }
}

/// Every error the crate shows, walked along its `source()` chain: no
/// level repeats what its cause says. Each enum is listed through a `match`
/// with no wildcard, so a new variant does not compile until it is here.
#[cfg(test)]
mod chain_tests {
    use std::error::Error as StdError;

    use super::*;
    use crate::{
        EnqueueError, Timestamp,
        model::timestamp::TimestampError,
        report::{BatchError, BatchReport, FailedBatch},
    };

    fn error_name(error: &Error) -> &'static str {
        match error {
            Error::Validation(_) => "Validation",
            Error::Unauthorized { .. } => "Unauthorized",
            Error::BadRequest { .. } => "BadRequest",
            Error::Status { .. } => "Status",
            Error::Timeout(_) => "Timeout",
            Error::Transport(_) => "Transport",
            Error::Cancelled => "Cancelled",
            Error::Protocol { .. } => "Protocol",
            Error::Panicked { .. } => "Panicked",
            Error::Spool(_) => "Spool",
        }
    }
    const ERRORS: usize = 10;

    fn validation_name(error: &ValidationError) -> &'static str {
        match error {
            ValidationError::Empty { .. } => "Empty",
            ValidationError::NotAnObject { .. } => "NotAnObject",
            ValidationError::NonFiniteNumber { .. } => "NonFiniteNumber",
            ValidationError::TooLarge { .. } => "TooLarge",
            ValidationError::Unserializable { .. } => "Unserializable",
            ValidationError::TooManyItems { .. } => "TooManyItems",
            ValidationError::Timestamp { .. } => "Timestamp",
            ValidationError::ControlCharacter { .. } => "ControlCharacter",
            ValidationError::TooDeep { .. } => "TooDeep",
            ValidationError::NotReserved { .. } => "NotReserved",
            ValidationError::WrongType { .. } => "WrongType",
            ValidationError::SdkOnlyEvent { .. } => "SdkOnlyEvent",
            ValidationError::ConflictingEvent { .. } => "ConflictingEvent",
        }
    }
    const VALIDATION_ERRORS: usize = 13;

    fn config_name(error: &ConfigError) -> &'static str {
        match error {
            ConfigError::Invalid { .. } => "Invalid",
            ConfigError::MissingEnv { .. } => "MissingEnv",
            ConfigError::InvalidApiKey => "InvalidApiKey",
            ConfigError::NoRuntime => "NoRuntime",
            ConfigError::Spool(_) => "Spool",
        }
    }
    const CONFIG_ERRORS: usize = 5;

    fn timestamp_name(error: &TimestampError) -> &'static str {
        match error {
            TimestampError::MissingOffset { .. } => "MissingOffset",
            TimestampError::Invalid { .. } => "Invalid",
            TimestampError::OutOfRange { .. } => "OutOfRange",
            TimestampError::LeapSecond { .. } => "LeapSecond",
            TimestampError::NonexistentLocalTime { .. } => "NonexistentLocalTime",
            TimestampError::AmbiguousLocalTime { .. } => "AmbiguousLocalTime",
        }
    }
    const TIMESTAMP_ERRORS: usize = 6;

    fn enqueue_name(error: &EnqueueError<u8>) -> &'static str {
        match error {
            EnqueueError::Full(_) => "Full",
            EnqueueError::Closed(_) => "Closed",
            EnqueueError::Unauthorized(_) => "Unauthorized",
            EnqueueError::Stopped(_) => "Stopped",
            EnqueueError::Spool(..) => "Spool",
        }
    }
    const ENQUEUE_ERRORS: usize = 5;

    /// A spool error with a cause of its own.
    fn disk_full() -> crate::spool::SpoolError {
        crate::spool::SpoolError::io(
            "write to",
            std::path::Path::new("/spool/00000000000000000000.seg"),
            std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device"),
        )
    }

    /// Walks `error`'s chain: each level's message must be non-empty and
    /// must not hold its cause's message, and no message may appear twice.
    fn assert_said_once(what: &str, error: &(dyn StdError + 'static)) {
        let mut seen = Vec::new();
        let mut level: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(current) = level {
            let message = current.to_string();
            assert!(!message.is_empty(), "{what}: an empty message in the chain");
            if let Some(cause) = current.source() {
                let cause = cause.to_string();
                assert!(
                    !message.contains(&cause),
                    "{what}: {message:?} repeats its cause {cause:?}"
                );
            }
            assert!(
                !seen.contains(&message),
                "{what}: {message:?} appears twice in the chain"
            );
            seen.push(message);
            level = current.source();
        }
    }

    fn timestamp_errors() -> Vec<TimestampError> {
        let zone = chrono_tz::Europe::Berlin;
        vec![
            Timestamp::parse("2024-11-02T14:03:00").unwrap_err(),
            Timestamp::parse("yesterday").unwrap_err(),
            Timestamp::from_unix_seconds(i64::MAX).unwrap_err(),
            Timestamp::parse("2016-12-31T23:59:60Z").unwrap_err(),
            Timestamp::parse_in("2024-03-31T02:30:00", &zone).unwrap_err(),
            Timestamp::parse_in("2024-10-27T02:30:00", &zone).unwrap_err(),
        ]
    }

    fn validation_errors() -> Vec<ValidationError> {
        let field = || "properties.x".to_owned();
        let mut errors = vec![
            ValidationError::empty("user_id", " "),
            ValidationError::NotAnObject {
                field: field(),
                found: "array",
                value: "[]".into(),
            },
            ValidationError::NonFiniteNumber {
                field: field(),
                value: "NaN".into(),
            },
            ValidationError::TooLarge {
                field: field(),
                bytes: 2,
                max: 1,
            },
            ValidationError::Unserializable {
                field: field(),
                reason: "no".into(),
            },
            ValidationError::TooManyItems {
                field: "events",
                count: 1001,
                max: 1000,
            },
            ValidationError::ControlCharacter {
                field: "user_id",
                value: r"\n".into(),
            },
            ValidationError::TooDeep {
                field: field(),
                max: 64,
            },
            ValidationError::NotReserved {
                field: "event_name".into(),
                name: "mkt_logn".into(),
                scope: Scope::EventName,
                suggestion: Some("mkt_login"),
                reserved_as: None,
            },
            ValidationError::WrongType {
                field: "properties.mkt_revenue".into(),
                expected: ValueType::Number,
                found: "string",
                value: "\"1\"".into(),
            },
            ValidationError::SdkOnlyEvent {
                name: "mkt_app_open",
            },
            ValidationError::ConflictingEvent { name: "e".into() },
        ];
        errors.extend(
            timestamp_errors()
                .into_iter()
                .map(|source| ValidationError::Timestamp {
                    field: "timestamp",
                    source,
                }),
        );
        errors
    }

    /// A real transport error (a refused connection) and a real timeout
    /// (a listener that never answers), both on loopback.
    async fn reqwest_errors() -> (reqwest::Error, reqwest::Error) {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused_at = closed.local_addr().unwrap();
        drop(closed);
        let refused = reqwest::Client::new()
            .get(format!("http://{refused_at}/"))
            .send()
            .await
            .unwrap_err();
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let timed_out = reqwest::Client::builder()
            .timeout(Duration::from_millis(50))
            .build()
            .unwrap()
            .get(format!("http://{}/", silent.local_addr().unwrap()))
            .send()
            .await
            .unwrap_err();
        assert!(timed_out.is_timeout(), "{timed_out:?}");
        (refused, timed_out)
    }

    #[tokio::test]
    async fn every_error_says_each_cause_once() {
        let (refused, timed_out) = reqwest_errors().await;
        let errors = vec![
            Error::Validation(validation_errors().swap_remove(12)),
            Error::from_status(401, None, "denied\n\u{1b}[31m".into(), None),
            Error::from_status(400, None, "bad".into(), None),
            Error::from_status(503, None, "busy".into(), None),
            Error::Timeout(timed_out),
            Error::Transport(refused),
            Error::Cancelled,
            Error::Protocol {
                reason: "odd".into(),
            },
            Error::Panicked {
                message: "boom".into(),
            },
            Error::Spool(disk_full()),
        ];
        let mut names: Vec<_> = errors.iter().map(error_name).collect();
        names.dedup();
        assert_eq!(names.len(), ERRORS, "one of each Error variant");
        for error in &errors {
            assert_said_once(error_name(error), error);
        }
        assert!(
            ErrorChain(&errors[5])
                .to_string()
                .starts_with("transport error: "),
            "the chain shows the cause: {}",
            ErrorChain(&errors[5])
        );

        let validation = validation_errors();
        let mut names: Vec<_> = validation.iter().map(validation_name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            VALIDATION_ERRORS,
            "one of each ValidationError variant"
        );
        for error in &validation {
            assert_said_once(validation_name(error), error);
        }

        let timestamps = timestamp_errors();
        let mut names: Vec<_> = timestamps.iter().map(timestamp_name).collect();
        names.dedup();
        assert_eq!(
            names.len(),
            TIMESTAMP_ERRORS,
            "one of each TimestampError: {names:?}"
        );
        for error in &timestamps {
            assert_said_once(timestamp_name(error), error);
        }

        let config = [
            ConfigError::invalid("base_url", "x", "no"),
            ConfigError::MissingEnv {
                name: "MARKETAP_API_KEY",
            },
            ConfigError::InvalidApiKey,
            ConfigError::NoRuntime,
            ConfigError::Spool(crate::spool::SpoolError::Locked {
                path: "/spool".into(),
            }),
        ];
        assert_eq!(config.len(), CONFIG_ERRORS);
        for error in &config {
            assert_said_once(config_name(error), error);
        }

        let enqueue = [
            EnqueueError::Full(1u8),
            EnqueueError::Closed(1),
            EnqueueError::Unauthorized(1),
            EnqueueError::Stopped(1),
            EnqueueError::Spool(1, Box::new(disk_full())),
        ];
        assert_eq!(enqueue.len(), ENQUEUE_ERRORS);
        for error in &enqueue {
            assert_said_once(enqueue_name(error), error);
        }

        let failed = FailedBatch {
            items: vec![1u8, 2],
            error: Error::Transport(reqwest_errors().await.0),
            attempts: 3,
        };
        assert_said_once("FailedBatch", &failed);
        assert_eq!(failed.to_string(), "2 items not delivered after 3 attempts");
        let mut report = BatchReport::<u8>::default();
        report.record(Err(failed));
        let error = BatchError(report);
        assert_said_once("BatchError", &error);
        assert!(error.source().is_some(), "the first failure is the cause");
    }

    #[test]
    fn server_text_in_400_and_401_messages_is_escaped() {
        let error = Error::from_status(401, None, "no\nINFO forged\u{1b}[2K".into(), None);
        assert_eq!(
            error.to_string(),
            r"unauthorized (401): no\nINFO forged\u{1b}[2K"
        );
        let documented = IngestionResponse {
            code: Some(3),
            message: Some("bad\r\nline".into()),
        };
        let error = Error::from_status(400, Some(documented), String::new(), None);
        assert_eq!(error.to_string(), r"bad request (400): code 3: bad\r\nline");
    }
}
