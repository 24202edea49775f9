//! The Marketap client to use: send events, user profiles, device push
//! tokens and deletion requests from a server to Marketap.
//!
//! A thin hand-written layer over the generated [`marketap_api`] client:
//! - [`Marketap`]: configured once ([`Config`], or [`Marketap::from_env`]);
//!   the API key and project id go on every request.
//! - [`Event`], [`UserProfile`], [`Device`], [`UserDeletion`]: validated
//!   items, built with builders, checked before anything goes on the wire.
//! - Batch calls ([`Marketap::send_events`], [`Marketap::update_profiles`],
//!   [`Marketap::update_devices`], [`Marketap::delete_users`],
//!   [`Marketap::send_stream`], and [`Marketap::deliver`] for an outcome
//!   per request, [`Marketap::deliver_until`] with a [`Stop`] to end it in
//!   time) split any number of items into requests of at most
//!   1,000, keep a bounded number in flight, retry what is worth retrying
//!   ([`RetryConfig`]) and report every item that was not accepted
//!   ([`BatchReport`]).
//! - [`Timestamp`]: one instant from chrono, `SystemTime`, Unix time or
//!   ISO 8601 with an offset; a string without one is refused, never
//!   guessed.
//! - [`Ingestor`]: background ingestion for web services. Enqueueing never
//!   touches the network; a bounded queue pushes back instead of dropping;
//!   every failed item goes to `on_failure` or a report (up to a bound,
//!   past which it is logged and counted), and to a [`dead_letter`] file
//!   when one is set; [`Ingestor::shutdown`] drains within a deadline.
//! - [`blocking`] (feature `blocking`): the same client for code without an
//!   async runtime, driven by a runtime thread of its own, as
//!   `reqwest::blocking` is.
//! - [`taxonomy`]: Marketap's reserved `mkt_` names and the type of each
//!   one's value. Builders check every `mkt_` name they are given against it
//!   (on by default; [`Config::with_reserved_check`] and
//!   `skip_reserved_check()` switch it off).
//! - The commerce model, typed: [`Product`] and [`Coupon`], [`Event::purchase`]
//!   and the other commerce events, and typed member properties on
//!   [`UserProfileBuilder`]. [`TrackEvent`] and [`TrackingPlan`] for events
//!   of your own.
//!
//! ```no_run
//! use marketap_ext::{Event, Marketap, taxonomy::event};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Marketap::from_env()?;
//! let login = Event::builder("user-42", event::LOGIN).build()?;
//! let report = client.send_events([login]).await.into_result()?;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```
//!
//! Delivery is at least once: a request retried after a lost response may
//! be counted twice, because the API has no de-duplication id.
//!
//! # Features
//! - `rustls` (default): TLS through rustls.
//! - `native-tls`: TLS through the platform's library (OpenSSL on Linux).
//! - `custom-http-client`: no TLS of this crate's own, for when you pass your
//!   own `reqwest::Client` to [`Config::with_http_client`] (TLS then comes
//!   from your own reqwest features). Without a client of your own,
//!   [`Marketap::new`] refuses an `https` base URL (the client this crate
//!   would build could not speak it) instead of failing at the first request.
//!
//!   One of these three must be on: with none, the crate does not compile,
//!   rather than build a client that cannot speak HTTPS.
//! - `tracking-plan` (default): [`TrackEvent`], [`Event::typed`] and
//!   [`TrackingPlan`], and `schemars::JsonSchema` on the wire types in
//!   [`api::types`]. It pulls in `schemars`; without it
//!   (`default-features = false, features = ["rustls"]`) the build is smaller.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(any(
    feature = "rustls",
    feature = "native-tls",
    feature = "custom-http-client"
)))]
compile_error!(
    "marketap-ext needs a TLS feature: `rustls` (the default) or `native-tls`; or \
     `custom-http-client` if you pass your own reqwest::Client with Config::with_http_client"
);

#[cfg(any(feature = "blocking", doc))]
pub mod blocking;
mod bytes;
mod client;
mod config;
pub mod dead_letter;
mod delivery;
mod echo;
mod error;
mod ingest;
mod lock;
mod model;
/// The tracing recorder the integration tests use too.
#[cfg(test)]
#[path = "../tests/support/recorded.rs"]
mod recorded;
mod report;
pub mod spool;

pub use client::{Deliveries, Marketap};
pub use config::{
    ApiKey, BatchConfig, Config, DEFAULT_BASE_URL, DEFAULT_MAX_ISOLATION_SPLITS,
    DEFAULT_MAX_REQUEST_BYTES, MAX_BATCH_SIZE, USER_AGENT,
};
pub use delivery::cancel::Stop;
pub use delivery::retry::RetryConfig;
pub use delivery::throttle::RateLimit;
pub use error::{ConfigError, Error, ErrorChain, ValidationError};
pub use ingest::{
    EnqueueError, FailureCallback, Ingestor, IngestorConfig, Metrics, ShutdownReport,
};
pub use marketap_api as api;
pub use model::commerce::{Coupon, Product};
pub use model::item::{
    Device, DeviceBuilder, Event, EventBuilder, Platform, UserDeletion, UserProfile,
    UserProfileBuilder,
};
pub use model::kind::{Item, Operation, Undelivered};
pub use model::properties::{MAX_DEPTH, MAX_ITEM_BYTES};
pub use model::timestamp::{IntoTimestamp, Timestamp};
#[cfg(feature = "tracking-plan")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracking-plan")))]
pub use model::typed::{TrackEvent, TrackingPlan};
pub use model::{taxonomy, timestamp};
pub use report::{Accepted, BatchError, BatchReport, DeliveryStats, FailedBatch, RequestOutcome};

/// The README's examples, compiled and run as doctests (with the default
/// features, which the README shows).
#[cfg(all(doctest, feature = "tracking-plan"))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// The Korean README's examples: the same code as the README's (`cargo xtask check` keeps the
/// blocks byte-identical), compiled and run here too so neither file can hold code that no
/// longer builds. Like the line above, this reads outside the crate's directory; only doctests
/// read it, so building or packaging `marketap-ext` never does.
#[cfg(doctest)]
#[doc = include_str!("../../README.ko.md")]
struct ReadmeKoDoctests;
