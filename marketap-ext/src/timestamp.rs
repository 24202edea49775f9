//! Event and device-profile timestamps: [`Timestamp`], one instant in UTC, and the conversions
//! into it from chrono date-times in any zone, [`SystemTime`], Unix seconds or milliseconds and
//! ISO 8601 / RFC 3339 strings. The Marketap page warns that a timestamp without an offset is
//! ambiguous, so this module never guesses a zone: a string without an offset is rejected
//! ([`TimestampError::MissingOffset`]) unless the caller names the zone with
//! [`Timestamp::parse_in`], and a local time that a daylight-saving change skips or repeats is an
//! error rather than a silent pick. On the wire a [`Timestamp`] is always RFC 3339 in UTC with
//! `Z`, e.g. `"2025-01-17T05:39:22Z"`.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, LocalResult, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

use crate::echo::echo;

/// One instant, held in UTC, as the Marketap API's optional `timestamp` field.
///
/// Build one from anything that names an instant unambiguously: [`Timestamp::now`],
/// a chrono [`DateTime`] in any zone (`From`), a [`SystemTime`] (`TryFrom`),
/// [`Timestamp::from_unix_seconds`] / [`Timestamp::from_unix_millis`], or an RFC 3339 string
/// with an offset ([`Timestamp::parse`], `FromStr`, `TryFrom<&str>`). Builders take
/// [`impl IntoTimestamp`](IntoTimestamp).
///
/// It displays and serializes as RFC 3339 in UTC with `Z` and 0, 3, 6 or 9 fractional digits,
/// as few as represent it exactly:
///
/// ```
/// # use marketap_ext::timestamp::Timestamp;
/// let ts = Timestamp::parse("2025-01-17T14:39:22.5+09:00")?;
/// assert_eq!(ts.to_string(), "2025-01-17T05:39:22.500Z");
/// # Ok::<(), marketap_ext::timestamp::TimestampError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time from the system clock.
    #[must_use]
    pub fn now() -> Self {
        Self(Utc::now())
    }

    /// The instant as a chrono `DateTime<Utc>`.
    #[must_use]
    pub const fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// Consumes the timestamp, returning the chrono `DateTime<Utc>`.
    #[must_use]
    pub const fn into_datetime(self) -> DateTime<Utc> {
        self.0
    }

    /// The instant `secs` seconds after (or, if negative, before) 1970-01-01T00:00:00Z.
    ///
    /// # Errors
    ///
    /// [`TimestampError::OutOfRange`] beyond chrono's range (about ±262,000 years).
    pub fn from_unix_seconds(secs: i64) -> Result<Self, TimestampError> {
        DateTime::from_timestamp(secs, 0)
            .map(Self)
            .ok_or_else(|| TimestampError::OutOfRange {
                value: format!("{secs} Unix seconds"),
            })
    }

    /// The instant `millis` milliseconds after (or, if negative, before) 1970-01-01T00:00:00Z.
    ///
    /// # Errors
    ///
    /// [`TimestampError::OutOfRange`] beyond chrono's range (about ±262,000 years).
    pub fn from_unix_millis(millis: i64) -> Result<Self, TimestampError> {
        DateTime::from_timestamp_millis(millis)
            .map(Self)
            .ok_or_else(|| TimestampError::OutOfRange {
                value: format!("{millis} Unix milliseconds"),
            })
    }

    /// Parses an ISO 8601 date-time that carries its own offset, in RFC 3339 form:
    /// `2025-01-17T05:39:22Z`, `2025-01-17T05:39:22+09:00`, `2025-01-17 05:39:22.123456-05:30`.
    ///
    /// `Z` or `z`, `T`, `t` or a space between date and time, and any number of fractional
    /// digits (nanoseconds are kept, further digits dropped) are accepted. `-00:00` reads as UTC.
    ///
    /// # Errors
    ///
    /// - [`TimestampError::MissingOffset`] for a date-time without an offset, such as
    ///   `2025-01-17T05:39:22`: it names no single instant. Add `Z` or an offset, or say which
    ///   zone it was recorded in with [`Timestamp::parse_in`].
    /// - [`TimestampError::Invalid`] for anything else that is not such a date-time, including
    ///   impossible dates and times (February 30, hour 24, offset `+25:00`), a bare date, and
    ///   leading or trailing whitespace, which is never trimmed.
    pub fn parse(input: &str) -> Result<Self, TimestampError> {
        if let Ok(dt) = DateTime::parse_from_rfc3339(input) {
            return Ok(dt.into());
        }
        if parse_local(input).is_some() {
            return Err(TimestampError::MissingOffset { input: echo(input) });
        }
        Err(invalid(input))
    }

    /// Parses a date-time recorded in `zone`: the caller states the zone, so an input without
    /// an offset (`YYYY-MM-DDTHH:MM:SS[.fraction]`, `T` or a space between date and time) is
    /// read as a wall-clock time there.
    ///
    /// `zone` is any chrono [`TimeZone`]: [`Utc`], a [`chrono::FixedOffset`], or a named zone
    /// such as `chrono_tz::Asia::Seoul`. An input that already has an offset is taken as is;
    /// its explicit offset wins over `zone`.
    ///
    /// ```
    /// # use marketap_ext::timestamp::Timestamp;
    /// use chrono::FixedOffset;
    /// let kst = FixedOffset::east_opt(9 * 3600).unwrap();
    /// let ts = Timestamp::parse_in("2025-01-17T14:39:22", &kst)?;
    /// assert_eq!(ts.to_string(), "2025-01-17T05:39:22Z");
    /// # Ok::<(), marketap_ext::timestamp::TimestampError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`TimestampError::NonexistentLocalTime`] when the wall-clock time does not exist in
    ///   `zone` (it falls in a daylight-saving gap).
    /// - [`TimestampError::AmbiguousLocalTime`] when it occurs twice (a daylight-saving
    ///   overlap); the error carries both candidates and none is picked.
    /// - [`TimestampError::Invalid`] when the input is not a date-time at all, as in
    ///   [`Timestamp::parse`].
    pub fn parse_in<Tz: TimeZone>(input: &str, zone: &Tz) -> Result<Self, TimestampError> {
        if let Ok(dt) = DateTime::parse_from_rfc3339(input) {
            return Ok(dt.into());
        }
        let Some(local) = parse_local(input) else {
            return Err(invalid(input));
        };
        match zone.from_local_datetime(&local) {
            LocalResult::Single(dt) => Ok(dt.into()),
            LocalResult::Ambiguous(a, b) => {
                let (a, b) = (Self::from(a), Self::from(b));
                Err(TimestampError::AmbiguousLocalTime {
                    input: echo(input),
                    earliest: a.min(b),
                    latest: a.max(b),
                })
            }
            LocalResult::None => Err(TimestampError::NonexistentLocalTime { input: echo(input) }),
        }
    }
}

/// Reads an RFC 3339 date-time that lacks only its offset.
///
/// Such a string is exactly one that becomes valid RFC 3339 once `Z` is appended, so chrono's
/// own grammar decides, and both parse paths accept the same dates, times and separators.
fn parse_local(input: &str) -> Option<NaiveDateTime> {
    DateTime::parse_from_rfc3339(&format!("{input}Z"))
        .ok()
        .map(|dt| dt.naive_utc())
}

/// The error for an input that is neither an RFC 3339 date-time nor one missing its offset.
fn invalid(input: &str) -> TimestampError {
    let reason = if input.is_empty() {
        "empty string".to_owned()
    } else if input.trim() != input {
        "leading or trailing whitespace (it is not trimmed)".to_owned()
    } else if input.len() == 10 && parse_local(&format!("{input}T00:00:00")).is_some() {
        "a date without a time of day".to_owned()
    } else {
        match DateTime::parse_from_rfc3339(input) {
            Err(e) => match e.kind() {
                chrono::format::ParseErrorKind::OutOfRange => {
                    "a field is out of range: no such date, time of day or offset".to_owned()
                }
                chrono::format::ParseErrorKind::Invalid => {
                    "unexpected character for an RFC 3339 date-time".to_owned()
                }
                chrono::format::ParseErrorKind::TooShort => "incomplete date-time".to_owned(),
                chrono::format::ParseErrorKind::TooLong => {
                    "unexpected characters after the offset".to_owned()
                }
                _ => e.to_string(),
            },
            // Unreachable: callers only get here after RFC 3339 parsing failed.
            Ok(_) => "not a timestamp".to_owned(),
        }
    };
    TimestampError::Invalid {
        input: echo(input),
        reason,
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with `Z`, e.g. `2025-01-17T05:39:22Z` or `2025-01-17T05:39:22.123Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl<Tz: TimeZone> From<DateTime<Tz>> for Timestamp {
    /// The same instant, whatever zone `dt` is displayed in.
    fn from(dt: DateTime<Tz>) -> Self {
        Self(dt.with_timezone(&Utc))
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(ts: Timestamp) -> Self {
        ts.0
    }
}

impl TryFrom<SystemTime> for Timestamp {
    type Error = TimestampError;

    /// The same instant; times before the Unix epoch are fine, times beyond chrono's range
    /// (about ±262,000 years) are [`TimestampError::OutOfRange`].
    fn try_from(time: SystemTime) -> Result<Self, Self::Error> {
        let (secs, nanos) = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => (i64::try_from(after.as_secs()).ok(), after.subsec_nanos()),
            Err(e) => {
                let before = e.duration();
                let secs = i64::try_from(before.as_secs()).ok();
                // chrono wants a non-negative nanosecond part, so borrow one second.
                match before.subsec_nanos() {
                    0 => (secs.map(|s| -s), 0),
                    n => (secs.and_then(|s| (-s).checked_sub(1)), 1_000_000_000 - n),
                }
            }
        };
        secs.and_then(|s| DateTime::from_timestamp(s, nanos))
            .map(Self)
            .ok_or_else(|| TimestampError::OutOfRange {
                value: match time.duration_since(UNIX_EPOCH) {
                    Ok(d) => format!("SystemTime {d:?} after the Unix epoch"),
                    Err(e) => format!("SystemTime {:?} before the Unix epoch", e.duration()),
                },
            })
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    /// Same as [`Timestamp::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for Timestamp {
    type Error = TimestampError;

    /// Same as [`Timestamp::parse`].
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Timestamp {
    type Error = TimestampError;

    /// Same as [`Timestamp::parse`].
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    /// Through [`Timestamp::parse`]: the string must carry an offset.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;

        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp with an offset, like \"2025-01-17T05:39:22Z\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(TimestampVisitor)
    }
}

/// Conversion into a [`Timestamp`], for builders that take `impl IntoTimestamp`.
///
/// Implemented for [`Timestamp`], chrono [`DateTime`] in any zone, [`SystemTime`], and strings
/// (`&str`, `String`, `&String`, parsed with [`Timestamp::parse`], so they need an offset).
///
/// Deliberately not implemented for integers: a bare number does not say whether it counts
/// seconds or milliseconds. Use [`Timestamp::from_unix_seconds`] or
/// [`Timestamp::from_unix_millis`] and pass the result.
pub trait IntoTimestamp {
    /// Converts `self` into a [`Timestamp`].
    ///
    /// # Errors
    ///
    /// A [`TimestampError`] saying why the value does not name exactly one instant.
    fn into_timestamp(self) -> Result<Timestamp, TimestampError>;
}

impl IntoTimestamp for Timestamp {
    fn into_timestamp(self) -> Result<Timestamp, TimestampError> {
        Ok(self)
    }
}

impl<Tz: TimeZone> IntoTimestamp for DateTime<Tz> {
    fn into_timestamp(self) -> Result<Timestamp, TimestampError> {
        Ok(self.into())
    }
}

impl IntoTimestamp for SystemTime {
    fn into_timestamp(self) -> Result<Timestamp, TimestampError> {
        self.try_into()
    }
}

impl IntoTimestamp for &str {
    fn into_timestamp(self) -> Result<Timestamp, TimestampError> {
        Timestamp::parse(self)
    }
}

impl IntoTimestamp for String {
    fn into_timestamp(self) -> Result<Timestamp, TimestampError> {
        Timestamp::parse(&self)
    }
}

impl IntoTimestamp for &String {
    fn into_timestamp(self) -> Result<Timestamp, TimestampError> {
        Timestamp::parse(self)
    }
}

/// Why a value could not become a [`Timestamp`].
///
/// Every variant names the offending value. Inputs are shown safe for a log line: longer than
/// 100 characters, they are cut and end in `… (N bytes in all)`, and control characters such as
/// a newline are escaped (`\n`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// A date-time without a UTC offset: it names a different instant in every zone.
    #[error(
        "timestamp \"{input}\" has no UTC offset, so the instant it names depends on a time zone \
         that is not stated; add `Z` for UTC or an offset like `+09:00` \
         (e.g. \"2025-01-17T05:39:22Z\", \"2025-01-17T05:39:22+09:00\"), or call \
         `Timestamp::parse_in(input, zone)` with the zone it was recorded in"
    )]
    MissingOffset {
        /// The input, cut to 100 characters, control characters escaped.
        input: String,
    },

    /// Not an ISO 8601 / RFC 3339 date-time, or an impossible one.
    #[error(
        "invalid timestamp \"{input}\": {reason}; expected RFC 3339 with an offset, \
         like \"2025-01-17T05:39:22Z\" or \"2025-01-17T05:39:22+09:00\""
    )]
    Invalid {
        /// The input, cut to 100 characters, control characters escaped.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A number or [`SystemTime`] beyond what chrono can represent (about ±262,000 years).
    #[error("timestamp out of range: {value} is beyond what a timestamp can represent")]
    OutOfRange {
        /// The value with its unit, e.g. `9223372036854775807 Unix seconds`.
        value: String,
    },

    /// A wall-clock time that the given zone skips (a daylight-saving gap).
    #[error(
        "local time \"{input}\" does not exist in the given time zone (clocks skip it, \
         usually at a daylight-saving change); give an explicit offset or a time outside the gap"
    )]
    NonexistentLocalTime {
        /// The input, cut to 100 characters, control characters escaped.
        input: String,
    },

    /// A wall-clock time that occurs twice in the given zone (a daylight-saving overlap).
    #[error(
        "local time \"{input}\" is ambiguous in the given time zone: it occurs twice, at \
         {earliest} and at {latest}; give an explicit offset to choose one"
    )]
    AmbiguousLocalTime {
        /// The input, cut to 100 characters, control characters escaped.
        input: String,
        /// The first of the two instants.
        earliest: Timestamp,
        /// The second of the two instants.
        latest: Timestamp,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, NaiveDate};
    use std::time::Duration;

    #[derive(Debug)]
    enum Want {
        Ok(&'static str),
        MissingOffset,
        Invalid,
    }

    #[rustfmt::skip]
    const CASES: &[(&str, Want)] = &[
        // UTC designators.
        ("2025-01-17T05:39:22Z", Want::Ok("2025-01-17T05:39:22Z")),
        ("2025-01-17T05:39:22z", Want::Ok("2025-01-17T05:39:22Z")),
        ("2025-01-17t05:39:22Z", Want::Ok("2025-01-17T05:39:22Z")),
        ("2025-01-17 05:39:22Z", Want::Ok("2025-01-17T05:39:22Z")),
        ("2025-01-17T05:39:22+00:00", Want::Ok("2025-01-17T05:39:22Z")),
        ("2025-01-17T05:39:22-00:00", Want::Ok("2025-01-17T05:39:22Z")),
        // Offsets: the same instant as the UTC form.
        ("2025-01-17T14:39:22+09:00", Want::Ok("2025-01-17T05:39:22Z")),
        ("2025-01-17T00:39:22-05:00", Want::Ok("2025-01-17T05:39:22Z")),
        ("2025-01-17T11:09:22+05:30", Want::Ok("2025-01-17T05:39:22Z")),
        ("2025-01-17T00:09:22-05:30", Want::Ok("2025-01-17T05:39:22Z")),
        ("2025-01-17T19:39:22+14:00", Want::Ok("2025-01-17T05:39:22Z")),
        ("2025-01-16T17:39:22-12:00", Want::Ok("2025-01-17T05:39:22Z")),
        ("2025-01-01T08:59:59+09:00", Want::Ok("2024-12-31T23:59:59Z")),
        ("1969-12-31T23:59:59Z", Want::Ok("1969-12-31T23:59:59Z")),
        // Leap day.
        ("2024-02-29T12:00:00Z", Want::Ok("2024-02-29T12:00:00Z")),
        ("2023-02-29T12:00:00Z", Want::Invalid),
        ("2025-02-30T00:00:00Z", Want::Invalid),
        // Fractional seconds: kept to the nanosecond, shown in groups of three digits.
        ("2025-01-17T05:39:22.123Z", Want::Ok("2025-01-17T05:39:22.123Z")),
        ("2025-01-17T05:39:22.123456Z", Want::Ok("2025-01-17T05:39:22.123456Z")),
        ("2025-01-17T05:39:22.123456789Z", Want::Ok("2025-01-17T05:39:22.123456789Z")),
        ("2025-01-17T05:39:22.5Z", Want::Ok("2025-01-17T05:39:22.500Z")),
        ("2025-01-17T05:39:22.000Z", Want::Ok("2025-01-17T05:39:22Z")),
        ("2025-01-17T14:39:22.250+09:00", Want::Ok("2025-01-17T05:39:22.250Z")),
        // No offset: ambiguous, never guessed.
        ("2025-01-17T05:39:22", Want::MissingOffset),
        ("2025-01-17T05:39:22.123", Want::MissingOffset),
        ("2025-01-17 05:39:22", Want::MissingOffset),
        // Not a date-time.
        ("2025-01-17", Want::Invalid),
        ("", Want::Invalid),
        (" 2025-01-17T05:39:22Z", Want::Invalid),
        ("2025-01-17T05:39:22Z ", Want::Invalid),
        ("\t2025-01-17T05:39:22Z\n", Want::Invalid),
        ("yesterday", Want::Invalid),
        ("1737092362", Want::Invalid),
        ("2025-01-17T05:39:22+25:00", Want::Invalid),
        ("2025-01-17T05:39:22+09", Want::Invalid),
        ("2025-01-17T14:39:22+0900", Want::Invalid),
        ("2025-01-17T05:39:22ZZ", Want::Invalid),
        ("2025-01-17T24:00:00Z", Want::Invalid),
        ("2025-13-01T00:00:00Z", Want::Invalid),
        ("2025-01-17T05:60:00Z", Want::Invalid),
        ("10000-01-01T00:00:00Z", Want::Invalid),
        ("+10000-01-01T00:00:00Z", Want::Invalid),
        ("2025-1-7T05:39:22Z", Want::Invalid),
    ];

    #[test]
    fn parse_table() {
        assert!(CASES.len() >= 24);
        for (input, want) in CASES {
            let got = Timestamp::parse(input);
            match (want, &got) {
                (Want::Ok(expected), Ok(ts)) => {
                    assert_eq!(&ts.to_string(), expected, "input {input:?}");
                    // The canonical form parses back to the same instant.
                    assert_eq!(
                        Timestamp::parse(expected).as_ref(),
                        Ok(ts),
                        "input {input:?}"
                    );
                }
                (Want::MissingOffset, Err(TimestampError::MissingOffset { input: echoed }))
                | (Want::Invalid, Err(TimestampError::Invalid { input: echoed, .. })) => {
                    assert_eq!(echoed, &echo(input));
                }
                _ => panic!("input {input:?}: want {want:?}, got {got:?}"),
            }
            // Every entry point agrees.
            assert_eq!(input.parse::<Timestamp>(), got, "input {input:?}");
            assert_eq!(Timestamp::try_from(*input), got, "input {input:?}");
            assert_eq!(
                Timestamp::try_from(input.to_string()),
                got,
                "input {input:?}"
            );
            assert_eq!(input.into_timestamp(), got, "input {input:?}");
            assert_eq!(input.to_string().into_timestamp(), got, "input {input:?}");
            assert_eq!(
                (&input.to_string()).into_timestamp(),
                got,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn invalid_reasons_are_specific() {
        let reason = |input: &str| match Timestamp::parse(input) {
            Err(TimestampError::Invalid { reason, .. }) => reason,
            other => panic!("input {input:?}: got {other:?}"),
        };
        assert_eq!(reason(""), "empty string");
        assert!(reason(" 2025-01-17T05:39:22Z").contains("whitespace"));
        assert!(reason("2025-01-17").contains("date without a time"));
        assert!(reason("2023-02-29T12:00:00Z").contains("out of range"));
        assert!(reason("2025-01-17T05:39:22+25:00").contains("out of range"));
    }

    #[test]
    fn fractions_beyond_nanoseconds_are_truncated() {
        let ts = Timestamp::parse("2025-01-17T05:39:22.1234567891Z").unwrap();
        assert_eq!(ts.to_string(), "2025-01-17T05:39:22.123456789Z");
    }

    #[test]
    fn datetimes_in_any_zone_are_the_same_instant() {
        let utc = Utc.with_ymd_and_hms(2025, 1, 17, 5, 39, 22).unwrap();
        let kst = FixedOffset::east_opt(9 * 3600)
            .unwrap()
            .with_ymd_and_hms(2025, 1, 17, 14, 39, 22)
            .unwrap();
        let est = FixedOffset::west_opt(5 * 3600)
            .unwrap()
            .with_ymd_and_hms(2025, 1, 17, 0, 39, 22)
            .unwrap();
        let seoul = chrono_tz::Asia::Seoul
            .with_ymd_and_hms(2025, 1, 17, 14, 39, 22)
            .unwrap();
        let new_york = chrono_tz::America::New_York
            .with_ymd_and_hms(2025, 1, 17, 0, 39, 22)
            .unwrap();

        let expected = Timestamp::parse("2025-01-17T05:39:22Z").unwrap();
        assert_eq!(Timestamp::from(utc), expected);
        assert_eq!(Timestamp::from(kst), expected);
        assert_eq!(Timestamp::from(est), expected);
        assert_eq!(Timestamp::from(seoul), expected);
        assert_eq!(Timestamp::from(new_york), expected);
        assert_eq!(seoul.into_timestamp(), Ok(expected));
        assert_eq!(expected.into_timestamp(), Ok(expected));

        assert_eq!(expected.as_datetime(), utc);
        assert_eq!(expected.into_datetime(), utc);
        assert_eq!(DateTime::<Utc>::from(expected), utc);
    }

    #[test]
    fn system_time_round_trips() {
        for time in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_737_092_362, 123_456_789),
            UNIX_EPOCH - Duration::from_secs(86_400),
            UNIX_EPOCH - Duration::new(1, 250_000_000),
            UNIX_EPOCH - Duration::from_nanos(1),
            SystemTime::now(),
        ] {
            let ts = Timestamp::try_from(time).unwrap();
            assert_eq!(SystemTime::from(ts.into_datetime()), time, "{ts}");
            assert_eq!(time.into_timestamp(), Ok(ts));
        }

        let before = Timestamp::try_from(UNIX_EPOCH - Duration::new(1, 250_000_000)).unwrap();
        assert_eq!(before.to_string(), "1969-12-31T23:59:58.750Z");
    }

    #[test]
    fn system_time_beyond_range_is_an_error() {
        // 10^13 s is about 317,000 years, past chrono's limit but within SystemTime on Unix.
        let far = Duration::from_secs(10_000_000_000_000);
        for time in [UNIX_EPOCH.checked_add(far), UNIX_EPOCH.checked_sub(far)]
            .into_iter()
            .flatten()
        {
            match Timestamp::try_from(time) {
                Err(TimestampError::OutOfRange { value }) => {
                    assert!(value.contains("10000000000000s"), "{value}");
                }
                other => panic!("got {other:?}"),
            }
        }
    }

    #[test]
    fn unix_seconds_and_millis() {
        let epoch = "1970-01-01T00:00:00Z";
        assert_eq!(Timestamp::from_unix_seconds(0).unwrap().to_string(), epoch);
        assert_eq!(Timestamp::from_unix_millis(0).unwrap().to_string(), epoch);
        assert_eq!(
            Timestamp::from_unix_seconds(1_737_092_362).unwrap(),
            Timestamp::parse("2025-01-17T05:39:22Z").unwrap()
        );
        assert_eq!(
            Timestamp::from_unix_millis(1_737_092_362_123).unwrap(),
            Timestamp::parse("2025-01-17T05:39:22.123Z").unwrap()
        );
        assert_eq!(
            Timestamp::from_unix_seconds(-1).unwrap().to_string(),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(
            Timestamp::from_unix_millis(-1).unwrap().to_string(),
            "1969-12-31T23:59:59.999Z"
        );

        for result in [
            Timestamp::from_unix_seconds(i64::MAX),
            Timestamp::from_unix_seconds(i64::MIN),
        ] {
            assert!(matches!(result, Err(TimestampError::OutOfRange { .. })));
        }
        assert_eq!(
            Timestamp::from_unix_seconds(i64::MAX),
            Err(TimestampError::OutOfRange {
                value: format!("{} Unix seconds", i64::MAX)
            })
        );
        assert_eq!(
            Timestamp::from_unix_millis(i64::MAX),
            Err(TimestampError::OutOfRange {
                value: format!("{} Unix milliseconds", i64::MAX)
            })
        );
        assert!(
            Timestamp::from_unix_millis(i64::MAX)
                .unwrap_err()
                .to_string()
                .contains("9223372036854775807 Unix milliseconds")
        );
    }

    #[test]
    fn parse_in_fixed_offset_and_utc() {
        let expected = Timestamp::parse("2025-01-17T05:39:22Z").unwrap();
        let kst = FixedOffset::east_opt(9 * 3600).unwrap();
        assert_eq!(
            Timestamp::parse_in("2025-01-17T14:39:22", &kst),
            Ok(expected)
        );
        assert_eq!(
            Timestamp::parse_in("2025-01-17 14:39:22", &kst),
            Ok(expected)
        );
        assert_eq!(
            Timestamp::parse_in("2025-01-17T05:39:22", &Utc),
            Ok(expected)
        );
        assert_eq!(
            Timestamp::parse_in("2025-01-17T14:39:22.123456", &kst)
                .unwrap()
                .to_string(),
            "2025-01-17T05:39:22.123456Z"
        );
        // An explicit offset in the input wins over the zone argument.
        assert_eq!(
            Timestamp::parse_in("2025-01-17T05:39:22Z", &kst),
            Ok(expected)
        );
        assert_eq!(
            Timestamp::parse_in("2025-01-17T00:39:22-05:00", &kst),
            Ok(expected)
        );
    }

    #[test]
    fn parse_in_named_zone() {
        let expected = Timestamp::parse("2025-01-17T05:39:22Z").unwrap();
        let seoul = chrono_tz::Asia::Seoul;
        assert_eq!(
            Timestamp::parse_in("2025-01-17T14:39:22", &seoul),
            Ok(expected)
        );
        // Summer in New York is UTC-4.
        assert_eq!(
            Timestamp::parse_in("2025-07-01T08:00:00", &chrono_tz::America::New_York)
                .unwrap()
                .to_string(),
            "2025-07-01T12:00:00Z"
        );
    }

    #[test]
    fn parse_in_rejects_what_is_not_a_date_time() {
        let kst = FixedOffset::east_opt(9 * 3600).unwrap();
        for input in [
            "",
            " 2025-01-17T14:39:22",
            "2025-01-17T14:39:22 ",
            "2025-01-17",
            "2023-02-29T12:00:00",
            "2025-01-17T24:00:00",
            "2025-01-17T14:39:22+25:00",
            "garbage",
        ] {
            assert!(
                matches!(
                    Timestamp::parse_in(input, &kst),
                    Err(TimestampError::Invalid { .. })
                ),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn parse_in_dst_gap_is_nonexistent() {
        // On 2025-03-09 New York clocks jump from 02:00 to 03:00.
        let err =
            Timestamp::parse_in("2025-03-09T02:30:00", &chrono_tz::America::New_York).unwrap_err();
        assert_eq!(
            err,
            TimestampError::NonexistentLocalTime {
                input: "2025-03-09T02:30:00".into()
            }
        );
        assert!(err.to_string().contains("2025-03-09T02:30:00"));
    }

    #[test]
    fn parse_in_dst_overlap_is_ambiguous() {
        // On 2025-11-02 New York clocks fall back from 02:00 EDT to 01:00 EST.
        let err =
            Timestamp::parse_in("2025-11-02T01:30:00", &chrono_tz::America::New_York).unwrap_err();
        let TimestampError::AmbiguousLocalTime {
            input,
            earliest,
            latest,
        } = &err
        else {
            panic!("got {err:?}");
        };
        assert_eq!(input, "2025-11-02T01:30:00");
        assert!(earliest < latest);
        assert_eq!(earliest.to_string(), "2025-11-02T05:30:00Z");
        assert_eq!(latest.to_string(), "2025-11-02T06:30:00Z");
        let message = err.to_string();
        assert!(message.contains("2025-11-02T01:30:00"), "{message}");
        assert!(message.contains("2025-11-02T05:30:00Z"), "{message}");
        assert!(message.contains("2025-11-02T06:30:00Z"), "{message}");
    }

    #[test]
    fn serde_round_trip() {
        let ts = Timestamp::parse("2025-01-17T14:39:22.123+09:00").unwrap();
        let json = serde_json::to_string(&ts).unwrap();
        assert_eq!(json, r#""2025-01-17T05:39:22.123Z""#);
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), ts);
        assert_eq!(
            serde_json::from_str::<Timestamp>(r#""2025-01-17T14:39:22.123+09:00""#).unwrap(),
            ts
        );

        // Matches what chrono's own serde writes for the generated API types' DateTime<Utc>.
        let chrono_json = serde_json::to_string(&ts.as_datetime()).unwrap();
        assert_eq!(
            serde_json::from_str::<DateTime<Utc>>(&json).unwrap(),
            serde_json::from_str::<DateTime<Utc>>(&chrono_json).unwrap()
        );

        let err = serde_json::from_str::<Timestamp>(r#""2025-01-17T05:39:22""#).unwrap_err();
        assert!(err.to_string().contains("no UTC offset"), "{err}");
        let err = serde_json::from_str::<Timestamp>("1737092362").unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }

    #[test]
    fn missing_offset_message_explains_the_fixes() {
        let message = Timestamp::parse("2025-01-17T05:39:22")
            .unwrap_err()
            .to_string();
        assert!(message.contains("\"2025-01-17T05:39:22\""), "{message}");
        assert!(message.contains("no UTC offset"), "{message}");
        assert!(message.contains("`Z`"), "{message}");
        assert!(message.contains("+09:00"), "{message}");
        assert!(message.contains("parse_in"), "{message}");
    }

    #[test]
    fn errors_cap_the_echoed_input() {
        // The cut itself is `crate::echo`'s (tested there); every variant goes through it.
        let huge = format!("2025-01-17T05:39:22{}", "x".repeat(10_000));
        let Err(TimestampError::Invalid { input, .. }) = Timestamp::parse(&huge) else {
            panic!("expected Invalid");
        };
        assert_eq!(input, echo(&huge));
        assert!(input.starts_with("2025-01-17T05:39:22xxx"));
        assert!(input.ends_with("… (10019 bytes in all)"), "{input}");
        assert!(Timestamp::parse(&huge).unwrap_err().to_string().len() < 400);

        let wide = "가".repeat(500);
        let Err(TimestampError::Invalid { input, .. }) = Timestamp::parse(&wide) else {
            panic!("expected Invalid");
        };
        assert_eq!(input, echo(&wide));
    }

    #[test]
    fn messages_escape_control_characters_once() {
        let err = Timestamp::parse("\t2025-01-17T05:39:22Z\n").unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(r#"invalid timestamp "\t2025-01-17T05:39:22Z\n": "#),
            "{message}"
        );
        let err = Timestamp::parse("2025-01-17T05:39:22\u{1b}[2K").unwrap_err();
        assert!(err.to_string().contains(r"22\u{1b}[2K"), "{err}");
    }

    #[test]
    fn ordering_follows_the_instant() {
        let earlier = Timestamp::parse("2025-01-17T14:39:22+09:00").unwrap();
        let later = Timestamp::parse("2025-01-17T05:39:23Z").unwrap();
        assert!(earlier < later);
        let naive = NaiveDate::from_ymd_opt(2025, 1, 17)
            .unwrap()
            .and_hms_opt(5, 39, 22)
            .unwrap();
        assert_eq!(earlier.as_datetime().naive_utc(), naive);
    }

    #[test]
    fn now_is_close_to_the_system_clock() {
        let before = Timestamp::try_from(SystemTime::now()).unwrap();
        let now = Timestamp::now();
        let after = Timestamp::try_from(SystemTime::now()).unwrap();
        assert!(before <= now && now <= after);
    }
}
