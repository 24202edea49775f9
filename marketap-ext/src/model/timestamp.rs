//! Event and device-profile timestamps: [`Timestamp`], one instant in UTC, and the conversions
//! into it from chrono date-times in any zone, [`SystemTime`], Unix seconds or milliseconds and
//! ISO 8601 / RFC 3339 strings. The Marketap page warns that a timestamp without an offset is
//! ambiguous, so this module never guesses a zone: a string without an offset is rejected
//! ([`TimestampError::MissingOffset`]) unless the caller names the zone with
//! [`Timestamp::parse_in`], and a local time that a daylight-saving change skips or repeats is an
//! error rather than a silent pick. On the wire a [`Timestamp`] is always RFC 3339 in UTC with
//! `Z`, e.g. `"2025-01-17T05:39:22Z"`, so every way in refuses what that cannot carry: a year
//! outside 0000 to 9999 in UTC ([`TimestampError::OutOfRange`]) and a leap second
//! ([`TimestampError::LeapSecond`]), either of which would make the server refuse a whole batch.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDateTime, SecondsFormat, TimeZone, Timelike, Utc,
};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

use crate::echo::echo;

/// The years a timestamp on the wire can have, in UTC: RFC 3339 writes exactly four digits.
const WIRE_YEARS: RangeInclusive<i32> = 0..=9999;

/// One instant, held in UTC, as the Marketap API's optional `timestamp` field.
///
/// Build one from anything that names an instant unambiguously: [`Timestamp::now`],
/// a chrono [`DateTime`] in any zone (`TryFrom`), a [`SystemTime`] (`TryFrom`),
/// [`Timestamp::from_unix_seconds`] / [`Timestamp::from_unix_millis`], or an RFC 3339 string
/// with an offset ([`Timestamp::parse`], `FromStr`, `TryFrom<&str>`). Builders take
/// [`impl IntoTimestamp`](IntoTimestamp). Each of them refuses an instant the wire cannot
/// carry: a year outside 0000 to 9999 in UTC, or a leap second.
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

    /// Wraps a `DateTime<Utc>` that [`check_wire`] has already accepted, such as the timestamp
    /// inside a built item.
    pub(crate) fn from_checked(utc: DateTime<Utc>) -> Self {
        debug_assert_eq!(check_wire(&utc), Ok(()));
        Self(utc)
    }

    /// The instant `secs` seconds after (or, if negative, before) 1970-01-01T00:00:00Z.
    ///
    /// # Errors
    ///
    /// [`TimestampError::OutOfRange`] outside the years 0000 to 9999: `secs` must be from
    /// -62,167,219,200 (0000-01-01T00:00:00Z) to 253,402,300,799 (9999-12-31T23:59:59Z).
    pub fn from_unix_seconds(secs: i64) -> Result<Self, TimestampError> {
        on_the_wire(DateTime::from_timestamp(secs, 0), || {
            format!("{secs} Unix seconds")
        })
    }

    /// The instant `millis` milliseconds after (or, if negative, before) 1970-01-01T00:00:00Z.
    ///
    /// # Errors
    ///
    /// [`TimestampError::OutOfRange`] outside the years 0000 to 9999: `millis` must be from
    /// -62,167,219,200,000 (0000-01-01T00:00:00Z) to 253,402,300,799,999
    /// (9999-12-31T23:59:59.999Z).
    pub fn from_unix_millis(millis: i64) -> Result<Self, TimestampError> {
        on_the_wire(DateTime::from_timestamp_millis(millis), || {
            format!("{millis} Unix milliseconds")
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
    /// - [`TimestampError::OutOfRange`] when the offset moves the instant out of the years 0000
    ///   to 9999 in UTC (`0000-01-01T00:00:00+01:00` is in year -1), and
    ///   [`TimestampError::LeapSecond`] for second 60.
    pub fn parse(input: &str) -> Result<Self, TimestampError> {
        if let Ok(dt) = DateTime::parse_from_rfc3339(input) {
            return on_the_wire(Some(dt.with_timezone(&Utc)), || echo(input));
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
    /// - [`TimestampError::OutOfRange`] and [`TimestampError::LeapSecond`] for an instant the
    ///   wire cannot carry, as in [`Timestamp::parse`].
    pub fn parse_in<Tz: TimeZone>(input: &str, zone: &Tz) -> Result<Self, TimestampError> {
        if let Ok(dt) = DateTime::parse_from_rfc3339(input) {
            return on_the_wire(Some(dt.with_timezone(&Utc)), || echo(input));
        }
        let Some(local) = parse_local(input) else {
            return Err(invalid(input));
        };
        let checked = |dt: DateTime<Tz>| on_the_wire(Some(dt.with_timezone(&Utc)), || echo(input));
        match zone.from_local_datetime(&local) {
            LocalResult::Single(dt) => checked(dt),
            LocalResult::Ambiguous(a, b) => {
                let (a, b) = (checked(a)?, checked(b)?);
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

/// `utc` as a [`Timestamp`], if it exists (chrono could represent it) and the wire can carry
/// it. Otherwise the error shows the value as the caller gave it, with its unit or offset, from
/// `shown`, which only runs for an error.
fn on_the_wire(
    utc: Option<DateTime<Utc>>,
    shown: impl FnOnce() -> String,
) -> Result<Timestamp, TimestampError> {
    let Some(utc) = utc else {
        return Err(TimestampError::OutOfRange { value: shown() });
    };
    // The fields of the UTC value itself: `DateTime`'s own accessors first
    // add the (zero) offset, each time.
    let naive = utc.naive_utc();
    if !WIRE_YEARS.contains(&naive.year()) {
        let shown = shown();
        let utc = rfc3339(&utc);
        let value = if shown == utc {
            shown
        } else {
            format!("{shown} ({utc})")
        };
        return Err(TimestampError::OutOfRange { value });
    }
    // chrono holds second 60 as second 59 with a nanosecond of 1,000,000,000 or more.
    if naive.nanosecond() >= 1_000_000_000 {
        return Err(TimestampError::LeapSecond { input: shown() });
    }
    Ok(Timestamp(utc))
}

/// Checks a `DateTime<Utc>` that did not come through a [`Timestamp`], such as one in an item
/// given in its wire type, for what [`Timestamp`]'s own conversions refuse.
pub(crate) fn check_wire(utc: &DateTime<Utc>) -> Result<(), TimestampError> {
    on_the_wire(Some(*utc), || rfc3339(utc)).map(drop)
}

/// `dt` in RFC 3339 with its own offset (`Z` for UTC), for error messages.
fn rfc3339<Tz: TimeZone>(dt: &DateTime<Tz>) -> String {
    dt.fixed_offset()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
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

impl<Tz: TimeZone> TryFrom<DateTime<Tz>> for Timestamp {
    type Error = TimestampError;

    /// The same instant, whatever zone `dt` is displayed in; [`TimestampError::OutOfRange`]
    /// outside the years 0000 to 9999 in UTC, [`TimestampError::LeapSecond`] for second 60.
    fn try_from(dt: DateTime<Tz>) -> Result<Self, Self::Error> {
        on_the_wire(Some(dt.with_timezone(&Utc)), || rfc3339(&dt))
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(ts: Timestamp) -> Self {
        ts.0
    }
}

impl TryFrom<SystemTime> for Timestamp {
    type Error = TimestampError;

    /// The same instant; times before the Unix epoch are fine, times outside the years 0000 to
    /// 9999 in UTC are [`TimestampError::OutOfRange`].
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
        on_the_wire(
            secs.and_then(|s| DateTime::from_timestamp(s, nanos)),
            || match time.duration_since(UNIX_EPOCH) {
                Ok(d) => format!("SystemTime {d:?} after the Unix epoch"),
                Err(e) => format!("SystemTime {:?} before the Unix epoch", e.duration()),
            },
        )
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
        OnTheWire(&self.0).serialize(serializer)
    }
}

/// A UTC date-time serialised exactly as chrono serialises it (RFC 3339,
/// `Z`, 0, 3, 6 or 9 fractional digits), without chrono's trip through
/// `fmt` and serde's `collect_str`, which wrote it a character at a time:
/// 2,400 instructions an event, a third of writing the event. Years
/// outside 0000 to 9999 go through chrono itself.
pub(crate) struct OnTheWire<'a>(pub &'a DateTime<Utc>);

impl OnTheWire<'_> {
    /// The text, in `buf`, unless the year needs chrono.
    fn write(&self, buf: &mut [u8; 30]) -> Option<usize> {
        // As in `on_the_wire`: the UTC fields, without adding an offset.
        let dt = self.0.naive_utc();
        let year = dt.year();
        if !WIRE_YEARS.contains(&year) {
            return None;
        }
        let mut nano = dt.nanosecond();
        let mut second = dt.second();
        if nano >= 1_000_000_000 {
            // A leap second, as chrono writes it: second 60.
            second += 1;
            nano -= 1_000_000_000;
        }
        let fields = [
            (year as u32, 4, b'-'),
            (dt.month(), 2, b'-'),
            (dt.day(), 2, b'T'),
            (dt.hour(), 2, b':'),
            (dt.minute(), 2, b':'),
        ];
        let mut at = 0;
        for (value, width, then) in fields {
            at = put_digits(buf, at, value, width);
            buf[at] = then;
            at += 1;
        }
        at = put_digits(buf, at, second, 2);
        let (fraction, width) = match nano {
            0 => (0, 0),
            n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
            n if n % 1_000 == 0 => (n / 1_000, 6),
            n => (n, 9),
        };
        if width > 0 {
            buf[at] = b'.';
            at = put_digits(buf, at + 1, fraction, width);
        }
        buf[at] = b'Z';
        Some(at + 1)
    }
}

/// Writes `value` as `width` decimal digits at `at`; returns where they end.
fn put_digits(buf: &mut [u8], at: usize, mut value: u32, width: usize) -> usize {
    for place in (at..at + width).rev() {
        buf[place] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    at + width
}

impl Serialize for OnTheWire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0; 30];
        match self.write(&mut buf) {
            Some(len) => serializer
                .serialize_str(std::str::from_utf8(&buf[..len]).expect("ASCII digits and marks")),
            None => self.0.serialize(serializer),
        }
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
        self.try_into()
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

    /// An instant outside the years the wire takes, 0000 to 9999 in UTC (RFC 3339 has
    /// four-digit years), whatever the zone or unit it was given in.
    #[error("timestamp out of range: {value}; the API takes years 0000 to 9999 in UTC")]
    OutOfRange {
        /// The value with its unit or offset, then the instant in UTC when it differs, e.g.
        /// `253402300800 Unix seconds (+10000-01-01T00:00:00Z)`,
        /// `0000-01-01T00:00:00+01:00 (-0001-12-31T23:00:00Z)`.
        value: String,
    },

    /// A leap second (second 60): chrono can hold one, the API cannot take it.
    #[error(
        "timestamp \"{input}\" is a leap second (second 60), which the API does not take; \
         use second 59, or second 00 of the next minute"
    )]
    LeapSecond {
        /// The value as given (a string cut to 100 characters, control characters escaped).
        input: String,
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
    use proptest::prelude::*;
    use std::time::Duration;

    /// The instant `seconds` after the epoch with `nanos` (past 10⁹: a
    /// leap second), as chrono holds it.
    fn instant(seconds: i64, nanos: u32) -> Option<DateTime<Utc>> {
        let second = DateTime::from_timestamp(seconds, 0)?;
        // chrono takes a leap second only at second 59.
        let nanos = if second.second() == 59 {
            nanos
        } else {
            nanos % 1_000_000_000
        };
        second.with_nanosecond(nanos)
    }

    fn same_as_chrono(dt: &DateTime<Utc>) -> Result<(), TestCaseError> {
        let ours = serde_json::to_string(&OnTheWire(dt)).unwrap();
        let chrono = serde_json::to_string(dt).unwrap();
        prop_assert_eq!(ours, chrono);
        Ok(())
    }

    proptest! {
        #[test]
        fn on_the_wire_writes_what_chrono_writes(
            // Years -300 to 12,000: the fast path and chrono's own either side.
            seconds in -71_700_000_000i64..316_500_000_000,
            nanos in prop_oneof![
                Just(0u32),
                (0u32..1000).prop_map(|ms| ms * 1_000_000),
                (0u32..1_000_000).prop_map(|us| us * 1_000),
                0u32..2_000_000_000,
            ],
        ) {
            if let Some(dt) = instant(seconds, nanos) {
                same_as_chrono(&dt)?;
            }
        }
    }

    #[test]
    fn on_the_wire_edges_read_as_chrono_writes_them() {
        let cases = [
            (0, 0),                         // 1970-01-01T00:00:00Z
            (-62_167_219_200, 0),           // 0000-01-01, the first fast year
            (-62_167_219_201, 999_999_999), // -0001: chrono's own
            (253_402_300_799, 999_999_999), // 9999-12-31T23:59:59.999999999Z
            (253_402_300_800, 0),           // +10000: chrono's own
            (1_483_228_799, 1_500_000_000), // a leap second, written as second 60
            (1_737_092_362, 120_000),       // six fractional digits
            (1_737_092_362, 1),             // nine
        ];
        for (seconds, nanos) in cases {
            let dt = instant(seconds, nanos).expect("a valid instant");
            same_as_chrono(&dt).unwrap();
        }
    }

    #[derive(Debug)]
    enum Want {
        Ok(&'static str),
        MissingOffset,
        Invalid,
        OutOfRange,
        LeapSecond,
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
        // The wire takes years 0000 to 9999 in UTC, whatever the offset says.
        ("0000-01-01T00:00:00Z", Want::Ok("0000-01-01T00:00:00Z")),
        ("0000-01-01T01:00:00+01:00", Want::Ok("0000-01-01T00:00:00Z")),
        ("0000-01-01T00:00:00+01:00", Want::OutOfRange),
        ("0000-01-01T00:59:59.999999999+01:00", Want::OutOfRange),
        ("9999-12-31T23:59:59.999999999Z", Want::Ok("9999-12-31T23:59:59.999999999Z")),
        ("9999-12-31T22:59:59.999999999-01:00", Want::Ok("9999-12-31T23:59:59.999999999Z")),
        ("9999-12-31T23:00:00-01:00", Want::OutOfRange),
        ("9999-12-31T23:59:59-01:00", Want::OutOfRange),
        // Leap seconds: chrono reads second 60 (at any minute); the wire cannot take it.
        ("2016-12-31T23:59:60Z", Want::LeapSecond),
        ("2016-12-31T23:59:60.5Z", Want::LeapSecond),
        ("2017-01-01T08:59:60+09:00", Want::LeapSecond),
        ("2025-01-17T05:39:60Z", Want::LeapSecond),
        ("2016-12-31T23:59:59.999999999Z", Want::Ok("2016-12-31T23:59:59.999999999Z")),
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
                | (Want::Invalid, Err(TimestampError::Invalid { input: echoed, .. }))
                | (Want::LeapSecond, Err(TimestampError::LeapSecond { input: echoed })) => {
                    assert_eq!(echoed, &echo(input));
                }
                (Want::OutOfRange, Err(TimestampError::OutOfRange { value })) => {
                    assert!(value.starts_with(&echo(input)), "{value}");
                    let message = got.as_ref().unwrap_err().to_string();
                    assert!(message.contains("years 0000 to 9999"), "{message}");
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
        assert_eq!(Timestamp::try_from(utc), Ok(expected));
        assert_eq!(Timestamp::try_from(kst), Ok(expected));
        assert_eq!(Timestamp::try_from(est), Ok(expected));
        assert_eq!(Timestamp::try_from(seoul), Ok(expected));
        assert_eq!(Timestamp::try_from(new_york), Ok(expected));
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

    /// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the first and last whole seconds the wire
    /// takes, as Unix seconds.
    const FIRST_SECOND: i64 = -62_167_219_200;
    const LAST_SECOND: i64 = 253_402_300_799;

    /// The `value` of an [`TimestampError::OutOfRange`]; panics on anything else.
    fn out_of_range(result: Result<Timestamp, TimestampError>) -> String {
        match result {
            Err(TimestampError::OutOfRange { value }) => value,
            other => panic!("want OutOfRange, got {other:?}"),
        }
    }

    #[test]
    fn unix_time_outside_the_wire_years_is_refused() {
        let seconds = Timestamp::from_unix_seconds;
        let millis = Timestamp::from_unix_millis;
        assert_eq!(
            seconds(FIRST_SECOND).unwrap().to_string(),
            "0000-01-01T00:00:00Z"
        );
        assert_eq!(
            seconds(LAST_SECOND).unwrap().to_string(),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            millis(FIRST_SECOND * 1000).unwrap().to_string(),
            "0000-01-01T00:00:00Z"
        );
        assert_eq!(
            millis(LAST_SECOND * 1000 + 999).unwrap().to_string(),
            "9999-12-31T23:59:59.999Z"
        );

        assert_eq!(
            out_of_range(seconds(FIRST_SECOND - 1)),
            "-62167219201 Unix seconds (-0001-12-31T23:59:59Z)"
        );
        assert_eq!(
            out_of_range(seconds(LAST_SECOND + 1)),
            "253402300800 Unix seconds (+10000-01-01T00:00:00Z)"
        );
        assert_eq!(
            out_of_range(millis(FIRST_SECOND * 1000 - 1)),
            "-62167219200001 Unix milliseconds (-0001-12-31T23:59:59.999Z)"
        );
        assert_eq!(
            out_of_range(millis((LAST_SECOND + 1) * 1000)),
            "253402300800000 Unix milliseconds (+10000-01-01T00:00:00Z)"
        );
        let message = seconds(LAST_SECOND + 1).unwrap_err().to_string();
        assert_eq!(
            message,
            "timestamp out of range: 253402300800 Unix seconds (+10000-01-01T00:00:00Z); \
             the API takes years 0000 to 9999 in UTC"
        );
    }

    #[test]
    fn system_time_outside_the_wire_years_is_refused() {
        let first = UNIX_EPOCH - Duration::from_secs(FIRST_SECOND.unsigned_abs());
        let last = UNIX_EPOCH + Duration::new(LAST_SECOND as u64, 999_999_999);
        assert_eq!(
            Timestamp::try_from(first).unwrap().to_string(),
            "0000-01-01T00:00:00Z"
        );
        assert_eq!(
            last.into_timestamp().unwrap().to_string(),
            "9999-12-31T23:59:59.999999999Z"
        );

        let value = out_of_range(Timestamp::try_from(first - Duration::from_nanos(1)));
        assert!(value.contains("before the Unix epoch"), "{value}");
        assert!(
            value.ends_with("(-0001-12-31T23:59:59.999999999Z)"),
            "{value}"
        );
        let value = out_of_range((last + Duration::from_nanos(1)).into_timestamp());
        assert!(value.contains("after the Unix epoch"), "{value}");
        assert!(value.ends_with("(+10000-01-01T00:00:00Z)"), "{value}");
    }

    #[test]
    fn datetimes_outside_the_wire_years_are_refused_in_any_zone() {
        let plus_one = FixedOffset::east_opt(3600).unwrap();
        let minus_one = FixedOffset::west_opt(3600).unwrap();
        let last_instant = NaiveDate::from_ymd_opt(9999, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 999_999_999)
            .unwrap()
            .and_utc();
        let first_instant = Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap();

        // The edges themselves, in UTC and seen from other zones.
        for ok in [
            first_instant.fixed_offset(),
            first_instant.with_timezone(&plus_one),
            last_instant.fixed_offset(),
            last_instant.with_timezone(&minus_one),
        ] {
            assert!(ok.into_timestamp().is_ok(), "{ok}");
        }
        assert!(first_instant.into_timestamp().is_ok());
        assert!(last_instant.into_timestamp().is_ok());

        // One step past them, however the zone displays it.
        let too_early = first_instant - chrono::TimeDelta::seconds(1);
        let too_late = last_instant + chrono::TimeDelta::nanoseconds(1);
        assert_eq!(Timestamp::try_from(too_late), too_late.into_timestamp());
        assert_eq!(
            out_of_range(too_early.into_timestamp()),
            "-0001-12-31T23:59:59Z"
        );
        assert_eq!(
            out_of_range(too_late.into_timestamp()),
            "+10000-01-01T00:00:00Z"
        );
        // Year 0000 in +01:00 is still year -1 in UTC; year 9999 in -01:00 is 10000.
        let local_year_0 = plus_one.with_ymd_and_hms(0, 1, 1, 0, 30, 0).unwrap();
        assert_eq!(
            out_of_range(local_year_0.into_timestamp()),
            "0000-01-01T00:30:00+01:00 (-0001-12-31T23:30:00Z)"
        );
        let local_year_9999 = minus_one.with_ymd_and_hms(9999, 12, 31, 23, 30, 0).unwrap();
        assert_eq!(
            out_of_range(local_year_9999.into_timestamp()),
            "9999-12-31T23:30:00-01:00 (+10000-01-01T00:30:00Z)"
        );
        // A named zone: Seoul's local mean time in year 0000 is UTC+08:27:52.
        let seoul_year_0 = chrono_tz::Asia::Seoul
            .with_ymd_and_hms(0, 1, 1, 8, 0, 0)
            .unwrap();
        let value = out_of_range(seoul_year_0.into_timestamp());
        assert!(value.ends_with("(-0001-12-31T23:32:08Z)"), "{value}");
    }

    #[test]
    fn parse_in_refuses_what_the_wire_cannot_carry() {
        let plus_one = FixedOffset::east_opt(3600).unwrap();
        let minus_one = FixedOffset::west_opt(3600).unwrap();
        assert_eq!(
            out_of_range(Timestamp::parse_in("0000-01-01T00:30:00", &plus_one)),
            "0000-01-01T00:30:00 (-0001-12-31T23:30:00Z)"
        );
        assert_eq!(
            out_of_range(Timestamp::parse_in("9999-12-31T23:30:00", &minus_one)),
            "9999-12-31T23:30:00 (+10000-01-01T00:30:00Z)"
        );
        assert_eq!(
            Timestamp::parse_in("0000-01-01T01:00:00", &plus_one)
                .unwrap()
                .to_string(),
            "0000-01-01T00:00:00Z"
        );
        // An explicit offset in the input is checked the same way.
        assert!(matches!(
            Timestamp::parse_in("9999-12-31T23:59:59-01:00", &Utc),
            Err(TimestampError::OutOfRange { .. })
        ));
        for zone in [plus_one, minus_one] {
            assert_eq!(
                Timestamp::parse_in("2016-12-31T23:59:60", &zone),
                Err(TimestampError::LeapSecond {
                    input: "2016-12-31T23:59:60".into()
                })
            );
        }
        assert!(matches!(
            Timestamp::parse_in("2016-12-31T23:59:60Z", &plus_one),
            Err(TimestampError::LeapSecond { .. })
        ));
    }

    #[test]
    fn chrono_leap_seconds_are_refused() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        let in_seoul = leap.with_timezone(&FixedOffset::east_opt(9 * 3600).unwrap());
        assert_eq!(
            leap.into_timestamp(),
            Err(TimestampError::LeapSecond {
                input: "2016-12-31T23:59:60.500Z".into()
            })
        );
        let err = in_seoul.into_timestamp().unwrap_err();
        assert_eq!(
            err,
            TimestampError::LeapSecond {
                input: "2017-01-01T08:59:60.500+09:00".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "timestamp \"2017-01-01T08:59:60.500+09:00\" is a leap second (second 60), which \
             the API does not take; use second 59, or second 00 of the next minute"
        );
        // The instant just before it is fine.
        let before = leap - chrono::TimeDelta::milliseconds(501);
        assert_eq!(
            before.into_timestamp().unwrap().to_string(),
            "2016-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn serde_refuses_what_the_wire_cannot_carry() {
        for json in [
            r#""9999-12-31T23:59:59-01:00""#,
            r#""2016-12-31T23:59:60Z""#,
        ] {
            let err = serde_json::from_str::<Timestamp>(json).unwrap_err();
            assert!(
                err.to_string().contains("years 0000 to 9999")
                    || err.to_string().contains("leap second"),
                "{err}"
            );
        }
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
