//! Client configuration: the API key (a secret that never prints), the
//! project, where to send, timeouts, the retry and batching settings, and
//! whether the client's builders run the reserved check.
//! `Config::connect` turns it into what the client runs on, or a
//! [`ConfigError`] naming the setting.
//!
//! Settings are built with `with_*` setters over private fields, so a
//! later version can add one without breaking any caller. A setter takes
//! any value; every value is checked, with an error naming the setting,
//! when the client or ingestor is built.

use std::{borrow::Cow, fmt, time::Duration};

use reqwest::Url;

use crate::{
    delivery::retry::RetryConfig,
    delivery::throttle::{RateLimit, Throttle},
    error::{ConfigError, ErrorChain},
};

/// Marketap's production server.
pub const DEFAULT_BASE_URL: &str = "https://event.marketap.io";

/// The most items the API takes in one request (events, profiles, devices).
pub const MAX_BATCH_SIZE: usize = 1000;

/// `User-Agent` of the requests this SDK sends.
pub const USER_AGENT: &str = concat!("marketap-rust/", env!("CARGO_PKG_VERSION"));

const MAX_IN_FLIGHT: usize = 64;
const MIN_REQUEST_BYTES: usize = 64 * 1024;
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// A Marketap server API key. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for code that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        Self(key)
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        Self(key.to_owned())
    }
}

/// The default [`BatchConfig::max_request_bytes`]: 4 MiB. The API publishes
/// no limit. This keeps a request under the 10 MB that common API gateways
/// take, while 1,000 events of up to 4 KiB each still fit in one; a server
/// that takes less answers 413, and the client learns from it.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// How the batch calls and the ingestor cut and send requests.
///
/// ```
/// use marketap_ext::BatchConfig;
///
/// let batch = BatchConfig::default().with_max_batch_size(500).with_max_in_flight(8);
/// assert_eq!((batch.max_batch_size(), batch.max_in_flight()), (500, 8));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    max_batch_size: usize,
    max_in_flight: usize,
    max_request_bytes: usize,
    isolate_bad_requests: bool,
    max_isolation_splits: usize,
}

/// The default [`BatchConfig::with_max_isolation_splits`]: enough to find
/// six bad items among 1,000 (about 10 splits each), few enough that a
/// request the server refuses whole costs at most 128 more requests.
pub const DEFAULT_MAX_ISOLATION_SPLITS: usize = 64;
const MAX_ISOLATION_SPLITS: usize = 2 * MAX_BATCH_SIZE;

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch_size: MAX_BATCH_SIZE,
            max_in_flight: 4,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            isolate_bad_requests: true,
            max_isolation_splits: DEFAULT_MAX_ISOLATION_SPLITS,
        }
    }
}

impl BatchConfig {
    /// Items per request: 1 to [`MAX_BATCH_SIZE`]. Default 1,000.
    pub fn with_max_batch_size(mut self, items: usize) -> Self {
        self.max_batch_size = items;
        self
    }

    /// Requests in flight at once, at most: 1 to 64. Default 4. The client
    /// starts with one and grows towards it while the server keeps up.
    pub fn with_max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests;
        self
    }

    /// Bytes of JSON per request body, at most: 64 KiB to 64 MiB. Default
    /// [`DEFAULT_MAX_REQUEST_BYTES`]. Requests are cut by whichever of this
    /// and [`max_batch_size`](Self::with_max_batch_size) comes first; an
    /// item larger than this alone fails before sending.
    pub fn with_max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// Whether a request of several items that the server refuses with 400
    /// is split in halves, and each half sent, down to single items, so
    /// only the items the server refuses on their own fail. On by default.
    ///
    /// Marketap answers a bulk request with one status for the whole body
    /// and names no item, so one bad item would otherwise sink every item
    /// of its request. Finding one bad item among 1,000 costs about 20 more
    /// requests. A 400 for the whole request (a malformed envelope) cannot
    /// be told apart from one for an item; [`with_max_isolation_splits`]
    /// bounds what it costs.
    ///
    /// [`with_max_isolation_splits`]: Self::with_max_isolation_splits
    pub fn with_isolate_bad_requests(mut self, on: bool) -> Self {
        self.isolate_bad_requests = on;
        self
    }

    /// Splits made to isolate refused items, at most, per request the
    /// server refused with 400: 1 to 2,000. Default
    /// [`DEFAULT_MAX_ISOLATION_SPLITS`]. Past it, the items still unsplit
    /// fail together with their 400, marked
    /// [`isolation_stopped`](crate::Error::isolation_stopped).
    pub fn with_max_isolation_splits(mut self, splits: usize) -> Self {
        self.max_isolation_splits = splits;
        self
    }

    /// Whether a 400 for several items is split to isolate them.
    pub fn isolate_bad_requests(&self) -> bool {
        self.isolate_bad_requests
    }

    /// Splits to isolate refused items, at most, per refused request.
    pub fn max_isolation_splits(&self) -> usize {
        self.max_isolation_splits
    }

    /// Items per request, at most.
    pub fn max_batch_size(&self) -> usize {
        self.max_batch_size
    }

    /// Requests in flight at once, at most.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Bytes of JSON per request body, at most.
    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_BATCH_SIZE).contains(&self.max_batch_size) {
            return Err(ConfigError::invalid(
                "batch.max_batch_size",
                self.max_batch_size,
                format!("must be 1 to {MAX_BATCH_SIZE}, the API's limit per request"),
            ));
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            return Err(ConfigError::invalid(
                "batch.max_in_flight",
                self.max_in_flight,
                format!("must be 1 to {MAX_IN_FLIGHT}"),
            ));
        }
        if !(1..=MAX_ISOLATION_SPLITS).contains(&self.max_isolation_splits) {
            return Err(ConfigError::invalid(
                "batch.max_isolation_splits",
                self.max_isolation_splits,
                format!(
                    "must be 1 to {MAX_ISOLATION_SPLITS} (switch isolation off with with_isolate_bad_requests(false))"
                ),
            ));
        }
        if !(MIN_REQUEST_BYTES..=MAX_REQUEST_BYTES).contains(&self.max_request_bytes) {
            return Err(ConfigError::invalid(
                "batch.max_request_bytes",
                self.max_request_bytes,
                format!("must be {MIN_REQUEST_BYTES} to {MAX_REQUEST_BYTES}"),
            ));
        }
        Ok(())
    }
}

/// What a checked [`Config`] becomes: the generated client with
/// authentication wired in, the project, and the policies every request
/// follows. Shared by the client, the delivery engine and the ingestor.
pub(crate) struct Connection {
    pub api: marketap_api::Client,
    pub project_id: String,
    pub retry: RetryConfig,
    pub batch: BatchConfig,
    /// The server's limits as this client has met them.
    pub throttle: Throttle,
    /// Whether the client's builders and resends run the reserved check.
    pub reserved_check: bool,
}

/// Everything a [`Marketap`](crate::Marketap) client needs.
///
/// ```
/// use std::time::Duration;
/// use marketap_ext::{Config, RetryConfig};
///
/// let config = Config::new("my-api-key", "my-project")
///     .with_request_timeout(Duration::from_secs(10))
///     .with_retry(RetryConfig::default().with_max_attempts(5));
/// assert_eq!(format!("{:?}", config.api_key()), "ApiKey(***)");
/// ```
#[derive(Clone)]
pub struct Config {
    api_key: ApiKey,
    project_id: String,
    base_url: String,
    allow_insecure_http: bool,
    connect_timeout: Duration,
    request_timeout: Duration,
    http_client: Option<reqwest::Client>,
    retry: RetryConfig,
    batch: BatchConfig,
    rate_limit: RateLimit,
    reserved_check: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("api_key", &self.api_key)
            .field("project_id", &self.project_id)
            .field("base_url", &redact_userinfo(&self.base_url))
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("http_client", &self.http_client.as_ref().map(|_| "custom"))
            .field("retry", &self.retry)
            .field("batch", &self.batch)
            .field("rate_limit", &self.rate_limit)
            .field("reserved_check", &self.reserved_check)
            .finish()
    }
}

impl Config {
    /// A configuration for `project_id` with the production server and
    /// default timeouts (connect 10 s, request 30 s), retries and batching.
    pub fn new(api_key: impl Into<ApiKey>, project_id: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            project_id: project_id.into(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            allow_insecure_http: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            http_client: None,
            retry: RetryConfig::default(),
            batch: BatchConfig::default(),
            rate_limit: RateLimit::default(),
            reserved_check: true,
        }
    }

    /// Reads `MARKETAP_API_KEY`, `MARKETAP_PROJECT_ID` and, optionally,
    /// `MARKETAP_BASE_URL`. A missing or empty required variable is an error
    /// naming it.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) over any lookup: a secret store, a
    /// configuration file, or a map in a test. `lookup` is asked for each
    /// variable's name.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use marketap_ext::Config;
    ///
    /// let secrets = HashMap::from([
    ///     ("MARKETAP_API_KEY", "key-from-vault"),
    ///     ("MARKETAP_PROJECT_ID", "my-project"),
    /// ]);
    /// let config = Config::from_lookup(|name| secrets.get(name).map(|v| v.to_string()))?;
    /// assert_eq!(config.project_id(), "my-project");
    /// # Ok::<(), marketap_ext::ConfigError>(())
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            lookup(name)
                .filter(|value| !value.trim().is_empty())
                .ok_or(ConfigError::MissingEnv { name })
        };
        let mut config = Self::new(
            required("MARKETAP_API_KEY")?,
            required("MARKETAP_PROJECT_ID")?,
        );
        if let Some(url) = lookup("MARKETAP_BASE_URL").filter(|url| !url.trim().is_empty()) {
            config.base_url = url;
        }
        Ok(config)
    }

    /// Sends to `base_url` instead of production. Plain `http` is accepted
    /// only for loopback hosts unless [`allow_insecure_http`](Self::allow_insecure_http).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Accepts a plain-`http` base URL on a non-loopback host (the key then
    /// crosses the network unencrypted).
    pub fn allow_insecure_http(mut self) -> Self {
        self.allow_insecure_http = true;
        self
    }

    /// Time to establish a connection (default 10 s). Applies to the HTTP
    /// client this crate builds, not to one given with
    /// [`with_http_client`](Self::with_http_client).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time for a whole request, one attempt (default 30 s). Applies to the
    /// HTTP client this crate builds, not to one given with
    /// [`with_http_client`](Self::with_http_client).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Uses your own `reqwest::Client` (proxies, TLS roots, a shared pool).
    /// The `Authorization` header is still added to each request; its own
    /// timeouts and user agent apply.
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Retry policy for every request.
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Batch size, request size and concurrency of the batch calls and the
    /// ingestor.
    pub fn with_batch(mut self, batch: BatchConfig) -> Self {
        self.batch = batch;
        self
    }

    /// A cap on requests and items per second (default none).
    pub fn with_rate_limit(mut self, rate_limit: RateLimit) -> Self {
        self.rate_limit = rate_limit;
        self
    }

    /// Whether the builders this client makes ([`Marketap::event`],
    /// [`Marketap::profile`]) and [`Marketap::resend`] run the reserved check
    /// (see [`crate::taxonomy`]). On by default. Builders made without a
    /// client (`Event::builder`, `Event::purchase`, ...) always start with it
    /// on; switch it off on one builder with `skip_reserved_check()`.
    ///
    /// [`Marketap::event`]: crate::Marketap::event
    /// [`Marketap::profile`]: crate::Marketap::profile
    /// [`Marketap::resend`]: crate::Marketap::resend
    pub fn with_reserved_check(mut self, on: bool) -> Self {
        self.reserved_check = on;
        self
    }

    /// The API key (prints as `***`).
    pub fn api_key(&self) -> &ApiKey {
        &self.api_key
    }

    /// The project id.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryConfig {
        &self.retry
    }

    /// The batching settings.
    pub fn batch(&self) -> &BatchConfig {
        &self.batch
    }

    /// The cap on requests and items per second.
    pub fn rate_limit(&self) -> &RateLimit {
        &self.rate_limit
    }

    /// Whether the client's builders run the reserved check.
    pub fn reserved_check(&self) -> bool {
        self.reserved_check
    }

    /// Checks every setting and builds what the client runs on. Nothing is
    /// sent.
    pub(crate) fn connect(&self) -> Result<Connection, ConfigError> {
        Ok(Connection {
            api: self.build_api()?,
            project_id: self.project_id.clone(),
            retry: self.retry.clone(),
            batch: self.batch.clone(),
            throttle: Throttle::new(&self.rate_limit),
            reserved_check: self.reserved_check,
        })
    }

    /// Checks every setting and builds the generated client.
    fn build_api(&self) -> Result<marketap_api::Client, ConfigError> {
        if self.project_id.trim().is_empty() {
            return Err(ConfigError::invalid(
                "project_id",
                &self.project_id,
                "must not be empty",
            ));
        }
        let auth = marketap_api::Auth::bearer(self.api_key.expose())
            .ok()
            .filter(|_| !self.api_key.expose().trim().is_empty())
            .ok_or(ConfigError::InvalidApiKey)?;
        let base_url = self.checked_base_url()?;
        self.retry.validate()?;
        self.batch.validate()?;
        self.rate_limit.validate()?;
        for (field, timeout) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return Err(ConfigError::invalid(
                    field,
                    format!("{timeout:?}"),
                    format!("must be more than zero and at most {MAX_TIMEOUT:?}"),
                ));
            }
        }

        let http = match &self.http_client {
            Some(client) => client.clone(),
            None if !own_client_speaks(&base_url, TLS) => {
                return Err(ConfigError::invalid(
                    "http_client",
                    "none",
                    "this build has no TLS feature (only `custom-http-client`), so an https \
                     base URL needs your own client: Config::with_http_client",
                ));
            }
            None => reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .timeout(self.request_timeout)
                .user_agent(USER_AGENT)
                .build()
                .map_err(|e| {
                    ConfigError::invalid("http_client", "default", ErrorChain(&e).to_string())
                })?,
        };
        Ok(marketap_api::Client::new_with_client(&base_url, http, auth))
    }

    /// The base URL without a trailing slash, if it is absolute, `http(s)`,
    /// and not plain `http` to a remote host without an explicit opt-in.
    fn checked_base_url(&self) -> Result<String, ConfigError> {
        let raw = self.base_url.trim_end_matches('/');
        let invalid = |reason: &str| ConfigError::invalid("base_url", redact_userinfo(raw), reason);
        let url = Url::parse(raw)
            .map_err(|e| invalid(&format!("{e} (expected e.g. {DEFAULT_BASE_URL})")))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must not have a query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not hold credentials"));
        }
        if !matches!(url.scheme(), "http" | "https") {
            // The scheme is not repeated here: in `user:pass@host` it is the user name.
            return Err(invalid(&format!(
                "the scheme is not http or https (expected e.g. {DEFAULT_BASE_URL})"
            )));
        }
        let loopback = match url.host() {
            Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => return Err(invalid("has no host")),
        };
        if url.scheme() == "http" && !loopback && !self.allow_insecure_http {
            return Err(invalid(
                "plain http to a non-loopback host would send the API key unencrypted; use https, or Config::allow_insecure_http",
            ));
        }
        Ok(raw.to_owned())
    }
}

/// Whether this build has a TLS feature (`rustls` or `native-tls`); with only
/// `custom-http-client`, it has none.
const TLS: bool = cfg!(any(feature = "rustls", feature = "native-tls"));

/// Whether the client this crate builds can reach `base_url` (checked: http or https):
/// without TLS, only plain http.
fn own_client_speaks(base_url: &str, tls: bool) -> bool {
    tls || base_url
        .get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http:"))
}

/// `url` with its userinfo (`user:password@`) shown as `***@`, for error messages and `Debug`.
///
/// Works on the string, not on a parsed URL, so a URL that does not parse is hidden too.
/// Everything from the start of the authority (after `scheme:` and its slashes, or from the
/// start when there is no such prefix) up to the last `@` is hidden: a password holding `/`, `?`
/// or `#` that was never percent-encoded is hidden whole, and an `@` further on (in a path or
/// query) hides more than needed rather than too little.
fn redact_userinfo(url: &str) -> Cow<'_, str> {
    let Some(at) = url.rfind('@') else {
        return Cow::Borrowed(url);
    };
    let start = url
        .split_once(':')
        .filter(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && rest.starts_with(['/', '\\'])
        })
        .map_or(0, |(_, rest)| {
            url.len() - rest.trim_start_matches(['/', '\\']).len()
        })
        .min(at);
    Cow::Owned(format!("{}***{}", &url[..start], &url[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn from_env_reads_the_three_variables() {
        let config = Config::from_lookup(lookup(&[
            ("MARKETAP_API_KEY", "k-1"),
            ("MARKETAP_PROJECT_ID", "p-1"),
            ("MARKETAP_BASE_URL", "http://127.0.0.1:8080"),
        ]))
        .unwrap();
        assert_eq!(
            (config.api_key().expose(), config.project_id()),
            ("k-1", "p-1")
        );
        assert_eq!(config.base_url(), "http://127.0.0.1:8080");

        let config = Config::from_lookup(lookup(&[
            ("MARKETAP_API_KEY", "k"),
            ("MARKETAP_PROJECT_ID", "p"),
        ]))
        .unwrap();
        assert_eq!(config.base_url(), DEFAULT_BASE_URL);
    }

    #[test]
    fn a_missing_or_empty_variable_is_named() {
        for (vars, missing) in [
            (&[("MARKETAP_PROJECT_ID", "p")][..], "MARKETAP_API_KEY"),
            (&[("MARKETAP_API_KEY", "k")][..], "MARKETAP_PROJECT_ID"),
            (
                &[("MARKETAP_API_KEY", " "), ("MARKETAP_PROJECT_ID", "p")][..],
                "MARKETAP_API_KEY",
            ),
            (
                &[("MARKETAP_API_KEY", "k"), ("MARKETAP_PROJECT_ID", "")][..],
                "MARKETAP_PROJECT_ID",
            ),
        ] {
            let error = Config::from_lookup(lookup(vars)).unwrap_err();
            assert_eq!(error, ConfigError::MissingEnv { name: missing });
            assert!(error.to_string().contains(missing));
        }
    }

    #[test]
    fn without_tls_only_plain_http_goes_without_a_client_of_your_own() {
        assert!(own_client_speaks("https://event.marketap.io", true));
        assert!(own_client_speaks("http://127.0.0.1:8080", true));
        assert!(own_client_speaks("http://127.0.0.1:8080", false));
        assert!(own_client_speaks("HTTP://127.0.0.1:8080", false));
        assert!(!own_client_speaks("https://event.marketap.io", false));
        assert!(!own_client_speaks("HTTPS://event.marketap.io", false));
    }

    /// Built with `--no-default-features --features custom-http-client` only.
    #[cfg(not(any(feature = "rustls", feature = "native-tls")))]
    #[test]
    fn without_tls_an_https_client_needs_your_own_http_client() {
        let error = Config::new("k", "p").connect().err().unwrap();
        assert!(
            error.to_string().contains("Config::with_http_client"),
            "{error}"
        );
        let given = Config::new("k", "p").with_http_client(reqwest::Client::new());
        assert!(given.connect().is_ok());
        assert!(
            Config::new("k", "p")
                .with_base_url("http://127.0.0.1:9")
                .connect()
                .is_ok()
        );
    }

    #[test]
    fn the_key_prints_as_stars() {
        let config = Config::new("very-secret", "p");
        assert_eq!(config.api_key().to_string(), "***");
        assert!(!format!("{config:?}").contains("very-secret"));
    }

    #[test]
    fn userinfo_is_hidden_in_any_url_like_string() {
        for (url, shown) in [
            ("https://event.marketap.io", "https://event.marketap.io"),
            ("http://[::1]:8080/v1", "http://[::1]:8080/v1"),
            ("https://user:pw@host/v1", "https://***@host/v1"),
            ("https://user@host", "https://***@host"),
            ("https://:pw@host", "https://***@host"),
            ("https://user:p@ss@host", "https://***@host"),
            ("https://user:p/a?s#s@host", "https://***@host"),
            ("https:/user:pw@host", "https:/***@host"),
            (r"https:\\user:pw@host", r"https:\\***@host"),
            ("user:pw@host", "***@host"),
            ("//user:pw@host", "***@host"),
            ("https://host/@me", "https://***@me"),
            ("https://user:pw@", "https://***@"),
            ("@", "***@"),
            ("ftp://a:b@host", "ftp://***@host"),
            ("https://user:pw@[::1", "https://***@[::1"),
            ("https://사용자:비밀@host", "https://***@host"),
        ] {
            assert_eq!(redact_userinfo(url), shown, "{url}");
        }
    }

    #[test]
    fn debug_hides_the_base_url_userinfo() {
        let config = Config::new("k", "p").with_base_url("https://user:hunter2@event.marketap.io");
        let debug = format!("{config:?}");
        assert!(
            debug.contains(r#"base_url: "https://***@event.marketap.io""#),
            "{debug}"
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn a_trailing_slash_is_dropped_from_the_base_url() {
        let config = Config::new("k", "p").with_base_url("https://event.marketap.io/");
        assert_eq!(
            config.checked_base_url().unwrap(),
            "https://event.marketap.io"
        );
    }
}
