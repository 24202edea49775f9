//! Bad input across the public API: each case gets a typed error that names
//! the field (and the value, where it can be shown), and nothing reaches
//! the server.

mod support;

use std::time::Duration;

use marketap_ext::{
    BatchConfig, Config, ConfigError, Device, Error, ErrorChain, Event, IngestorConfig, Marketap,
    Platform, RetryConfig, UserProfile, ValidationError, timestamp::TimestampError,
};
use serde::Serialize;
use serde_json::json;
use support::{Reply, TestServer};

#[derive(Serialize)]
struct Item {
    price: f64,
}

/// One bad input: what it is, what it produced, and what the message
/// must mention.
struct Case {
    what: &'static str,
    error: Box<dyn std::error::Error>,
    mentions: &'static [&'static str],
}

/// A case whose error is a [`ValidationError`] (bad input) or a
/// [`ConfigError`] (a bad setting); its whole chain must mention each of
/// `mentions`.
fn case<E: std::error::Error + 'static>(
    what: &'static str,
    result: Result<impl std::fmt::Debug, E>,
    mentions: &'static [&'static str],
) -> Case {
    Case {
        what,
        error: Box::new(result.expect_err(what)),
        mentions,
    }
}

fn config(server: &TestServer) -> Config {
    Config::new("test-key", "proj").with_base_url(server.url())
}

#[tokio::test]
async fn bad_input_gets_a_typed_error_naming_the_field_and_nothing_is_sent() {
    let server = TestServer::start(|_| Reply::accepted()).await;
    let client = Marketap::new(config(&server)).unwrap();
    let huge = "x".repeat(10 * 1024 * 1024);

    let cases = vec![
        case(
            "empty user_id",
            Event::builder("", "mkt_login").build(),
            &["user_id"],
        ),
        case(
            "blank event_name",
            Event::builder("u1", "  ").build(),
            &["event_name", "\"  \""],
        ),
        case(
            "empty profile user_id",
            UserProfile::builder("").build(),
            &["user_id"],
        ),
        case(
            "empty device token",
            Device::builder("", Platform::Ios).build(),
            &["token"],
        ),
        case(
            "empty device user_id",
            Device::builder("t", Platform::Web).user_id("").build(),
            &["user_id"],
        ),
        case(
            "properties as an array",
            Event::builder("u1", "e").properties(json!([1, 2])).build(),
            &["properties", "array", "[1,2]"],
        ),
        case(
            "properties as a string",
            UserProfile::builder("u1").properties("hello").build(),
            &["properties", "string", "hello"],
        ),
        case(
            "NaN property",
            Event::builder("u1", "e")
                .property("price", f64::NAN)
                .build(),
            &["properties.price", "NaN"],
        ),
        case(
            "infinity deep in properties",
            Event::builder("u1", "e")
                .property(
                    "items",
                    vec![
                        Item { price: 1.0 },
                        Item {
                            price: f64::INFINITY,
                        },
                    ],
                )
                .build(),
            &["properties.items[1].price", "inf"],
        ),
        case(
            "empty property name",
            Event::builder("u1", "e").property("", 1).build(),
            &["property name"],
        ),
        case(
            "10 MB property value",
            Event::builder("u1", "e").property("blob", &huge).build(),
            &["event", "bytes", "1048576"],
        ),
        case(
            "10 MB profile property",
            UserProfile::builder("u1").property("blob", &huge).build(),
            &["profile", "1048576"],
        ),
        case(
            "timestamp without offset",
            Event::builder("u1", "e")
                .timestamp("2025-01-17T05:39:22")
                .build(),
            &["timestamp", "2025-01-17T05:39:22", "offset"],
        ),
        case(
            "garbage timestamp",
            Device::builder("t", Platform::Android)
                .timestamp("yesterday")
                .build(),
            &["timestamp", "yesterday"],
        ),
        case(
            "empty deletion list",
            client.delete_users(Vec::<String>::new()).await,
            &["user_ids"],
        ),
        case(
            "blank id in deletion list",
            client.delete_users(["u1", ""]).await,
            &["user_id"],
        ),
        case(
            "base URL without scheme",
            Marketap::new(Config::new("k", "p").with_base_url("event.marketap.io")),
            &["base_url", "event.marketap.io"],
        ),
        case(
            "base URL with another scheme",
            Marketap::new(Config::new("k", "p").with_base_url("ftp://event.marketap.io")),
            &["base_url", "ftp"],
        ),
        case(
            "plain http to a remote host",
            Marketap::new(Config::new("k", "p").with_base_url("http://event.marketap.io")),
            &[
                "base_url",
                "http://event.marketap.io",
                "allow_insecure_http",
            ],
        ),
        case(
            "empty project id",
            Marketap::new(Config::new("k", "")),
            &["project_id"],
        ),
        case(
            "API key with a newline",
            Marketap::new(Config::new("secret\nkey", "p")),
            &["api_key", "not shown"],
        ),
        case(
            "empty API key",
            Marketap::new(Config::new("", "p")),
            &["api_key"],
        ),
        case(
            "zero batch size",
            Marketap::new(
                config(&server).with_batch(
                    BatchConfig::default()
                        .with_max_batch_size(0)
                        .with_max_in_flight(4),
                ),
            ),
            &["batch.max_batch_size", "0"],
        ),
        case(
            "batch size over the API limit",
            Marketap::new(
                config(&server).with_batch(
                    BatchConfig::default()
                        .with_max_batch_size(5000)
                        .with_max_in_flight(4),
                ),
            ),
            &["batch.max_batch_size", "5000", "1000"],
        ),
        case(
            "zero requests in flight",
            Marketap::new(
                config(&server).with_batch(
                    BatchConfig::default()
                        .with_max_batch_size(10)
                        .with_max_in_flight(0),
                ),
            ),
            &["batch.max_in_flight"],
        ),
        case(
            "zero attempts",
            Marketap::new(config(&server).with_retry(RetryConfig::default().with_max_attempts(0))),
            &["retry.max_attempts", "0"],
        ),
        case(
            "absurd attempts",
            Marketap::new(
                config(&server).with_retry(RetryConfig::default().with_max_attempts(1_000_000)),
            ),
            &["retry.max_attempts", "1000000"],
        ),
        case(
            "zero request timeout",
            Marketap::new(config(&server).with_request_timeout(Duration::ZERO)),
            &["request_timeout", "0ns"],
        ),
        case(
            "absurd connect timeout",
            Marketap::new(config(&server).with_connect_timeout(Duration::from_secs(86_400))),
            &["connect_timeout", "86400s"],
        ),
        case(
            "zero queue capacity",
            client.ingestor(IngestorConfig::default().with_capacity(0)),
            &["ingestor.capacity", "0"],
        ),
        case(
            "zero flush interval",
            client.ingestor(IngestorConfig::default().with_flush_interval(Duration::ZERO)),
            &["ingestor.flush_interval"],
        ),
        case(
            "base URL with a user and password",
            Marketap::new(
                Config::new("k", "p").with_base_url("https://user:secret@event.marketap.io/v1"),
            ),
            &[
                "base_url",
                "\"https://***@event.marketap.io/v1\"",
                "credentials",
            ],
        ),
        case(
            "unparsable base URL with a user and password",
            Marketap::new(Config::new("k", "p").with_base_url("https://user:secret@[::1")),
            &["base_url", "\"https://***@[::1\""],
        ),
        case(
            "base URL with credentials but no scheme",
            Marketap::new(Config::new("k", "p").with_base_url("user:secret@event.marketap.io")),
            &["base_url", "\"***@event.marketap.io\""],
        ),
        case(
            "base URL with a password longer than the echo",
            Marketap::new(Config::new("k", "p").with_base_url(format!(
                "https://user:{}@event.marketap.io",
                "secret".repeat(40)
            ))),
            &["base_url", "\"https://***@event.marketap.io\""],
        ),
        case(
            "user_id that is only a line break",
            Event::builder("\r\n", "mkt_login").build(),
            &["user_id", r#""\r\n""#],
        ),
    ];
    assert!(cases.len() >= 15);

    for Case {
        what,
        error,
        mentions,
    } in &cases
    {
        let message = ErrorChain(error.as_ref()).to_string();
        println!("{what}: {message}");
        for needle in *mentions {
            assert!(
                message.contains(needle),
                "{what}: {message:?} does not mention {needle:?}"
            );
        }
        assert!(!message.contains("secret"), "{what}: the key was echoed");
        assert!(
            !message.contains(char::is_control),
            "{what}: a control character reached the message: {message:?}"
        );
        assert!(
            message.len() < 600,
            "{what}: message not cut: {} bytes",
            message.len()
        );
    }

    // The typed variants, for a few that callers match on.
    let validation = |i: usize| cases[i].error.downcast_ref::<ValidationError>().unwrap();
    assert!(matches!(
        validation(7),
        ValidationError::NonFiniteNumber { .. }
    ));
    assert!(
        matches!(validation(10), ValidationError::TooLarge { bytes, max: 1_048_576, .. } if *bytes > 10_000_000)
    );
    assert!(matches!(
        validation(12),
        ValidationError::Timestamp {
            field: "timestamp",
            source: TimestampError::MissingOffset { .. }
        }
    ));
    assert!(matches!(
        cases[20].error.downcast_ref::<ConfigError>(),
        Some(ConfigError::InvalidApiKey)
    ));

    // One call that sends exactly one request refuses over 1,000 items and
    // hands them all back.
    let events: Vec<Event> = (0..1001)
        .map(|i| Event::builder(format!("u{i}"), "e").build().unwrap())
        .collect();
    let failed = client.send_batch(events).await.unwrap_err();
    assert!(matches!(
        failed.error,
        Error::Validation(ValidationError::TooManyItems { count: 1001, .. })
    ));
    assert_eq!(failed.items.len(), 1001);

    assert!(server.requests().is_empty(), "bad input reached the server");
}

#[test]
fn loopback_http_is_fine_and_remote_http_needs_an_explicit_opt_in() {
    for url in [
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:9",
        "https://event.marketap.io/",
    ] {
        Marketap::new(Config::new("k", "p").with_base_url(url))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    Marketap::new(
        Config::new("k", "p")
            .with_base_url("http://10.0.0.5")
            .allow_insecure_http(),
    )
    .unwrap();
}

#[test]
fn raw_items_with_a_timestamp_the_wire_cannot_carry_are_refused() {
    use chrono::{NaiveDate, TimeZone, Utc};
    use marketap_ext::api::types;

    let year_10000 = Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap();
    let leap_second = NaiveDate::from_ymd_opt(2016, 12, 31)
        .unwrap()
        .and_hms_nano_opt(23, 59, 59, 1_000_000_000)
        .unwrap()
        .and_utc();
    let event = |timestamp| types::CreateEventReq {
        user_id: "u1".into(),
        event_name: "mkt_login".into(),
        properties: Default::default(),
        timestamp: Some(timestamp),
    };
    let device = |timestamp| types::UpdateDeviceProfileReq {
        device: types::ClientDevice {
            token: "t".into(),
            platform: "IOS".into(),
            opt_in: None,
        },
        user_id: None,
        timestamp: Some(timestamp),
    };

    let error = Event::from_raw(event(year_10000)).unwrap_err();
    assert!(
        matches!(
            &error,
            ValidationError::Timestamp {
                field: "timestamp",
                source: TimestampError::OutOfRange { value },
            } if value == "+10000-01-01T00:00:00Z"
        ),
        "{error:?}"
    );
    assert_eq!(
        ErrorChain(&error).to_string(),
        "invalid `timestamp`: timestamp out of range: +10000-01-01T00:00:00Z; \
         the API takes years 0000 to 9999 in UTC"
    );
    assert!(matches!(
        Event::from_raw(event(leap_second)),
        Err(ValidationError::Timestamp {
            field: "timestamp",
            source: TimestampError::LeapSecond { .. },
        })
    ));
    assert!(matches!(
        Device::from_raw(device(year_10000)),
        Err(ValidationError::Timestamp {
            field: "timestamp",
            source: TimestampError::OutOfRange { .. },
        })
    ));
    assert!(matches!(
        Device::from_raw(device(leap_second)),
        Err(ValidationError::Timestamp {
            field: "timestamp",
            source: TimestampError::LeapSecond { .. },
        })
    ));

    // The last instant the wire takes is fine, and reads back unchanged.
    let last = NaiveDate::from_ymd_opt(9999, 12, 31)
        .unwrap()
        .and_hms_nano_opt(23, 59, 59, 999_999_999)
        .unwrap()
        .and_utc();
    let event = Event::from_raw(event(last)).unwrap();
    assert_eq!(
        event.timestamp().unwrap().to_string(),
        "9999-12-31T23:59:59.999999999Z"
    );
    Device::from_raw(device(last)).unwrap();
}
