//! `--timestamp-format`: how `timestamp` values are read. `rfc3339` (the
//! default: RFC 3339 / ISO 8601 with an offset, or without one in
//! `--timezone`), `unix` and `unix-ms` (database dumps: a number, in NDJSON
//! as a JSON number or a string), or a chrono `strftime` pattern for what
//! spreadsheets export (`%Y.%m.%d %H:%M` reads `2024.11.02 14:03`; missing
//! seconds are 0). A pattern without `%z` reads wall-clock times in
//! `--timezone`. Every value then goes through the library's own checks
//! (the years the wire takes, no leap second).

use chrono::{
    DateTime, LocalResult, TimeZone, Utc,
    format::{Item, Parsed, StrftimeItems},
};
use chrono_tz::Tz;
use marketap_ext::{
    ValidationError,
    timestamp::{Timestamp, TimestampError},
};

use crate::{error::CliError, records::LineError};

/// How `timestamp` values are read.
#[derive(Debug, Clone, Copy, Default)]
pub enum TimeFormat {
    /// RFC 3339 with an offset (or without one, in `--timezone`).
    #[default]
    Rfc3339,
    /// Seconds since 1970-01-01T00:00:00Z, maybe with a fraction.
    Unix,
    /// Milliseconds since 1970-01-01T00:00:00Z.
    UnixMs,
    /// A chrono `strftime` pattern.
    Pattern {
        /// The pattern as given.
        text: &'static str,
        /// The pattern, parsed once.
        items: &'static [Item<'static>],
    },
}

impl TimeFormat {
    /// The `--timestamp-format` value `value`.
    pub fn parse(value: &str) -> Result<Self, CliError> {
        match value {
            "rfc3339" | "iso8601" => return Ok(TimeFormat::Rfc3339),
            "unix" => return Ok(TimeFormat::Unix),
            "unix-ms" => return Ok(TimeFormat::UnixMs),
            _ => {}
        }
        let refused = |reason: &str| CliError::option("--timestamp-format", value, reason);
        if !value.contains('%') {
            return Err(refused(
                "expected rfc3339, unix, unix-ms or a strftime pattern such as \
                 \"%Y.%m.%d %H:%M\"",
            ));
        }
        let items = StrftimeItems::new(value)
            .parse_to_owned()
            .map_err(|e| refused(&format!("not a strftime pattern: {e}")))?;
        // Parsed once for the whole run; the process keeps it to its end.
        Ok(TimeFormat::Pattern {
            text: Box::leak(value.to_owned().into_boxed_str()),
            items: Box::leak(items.into_boxed_slice()),
        })
    }

    /// The format as given, for messages.
    pub fn describe(&self) -> &'static str {
        match self {
            TimeFormat::Rfc3339 => "rfc3339",
            TimeFormat::Unix => "unix",
            TimeFormat::UnixMs => "unix-ms",
            TimeFormat::Pattern { text, .. } => text,
        }
    }

    /// `value` as an instant, offsetless values read in `zone`.
    pub fn read(&self, value: &str, zone: Option<&Tz>) -> Result<DateTime<Utc>, LineError> {
        let checked = |result: Result<Timestamp, TimestampError>| {
            result.map(Timestamp::into_datetime).map_err(|source| {
                LineError::from(ValidationError::Timestamp {
                    field: "timestamp",
                    source,
                })
            })
        };
        let mismatch = |reason: String| LineError::TimestampFormat {
            value: shown(value),
            format: self.describe(),
            reason,
        };
        match self {
            TimeFormat::Rfc3339 => checked(match zone {
                Some(zone) => Timestamp::parse_in(value, zone),
                None => Timestamp::parse(value),
            }),
            TimeFormat::Unix => {
                let text = value.trim();
                let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
                let secs = whole.parse::<i64>();
                let nanos = format!("{fraction:0<9}");
                match (
                    secs,
                    fraction.bytes().all(|b| b.is_ascii_digit()) && fraction.len() <= 9,
                ) {
                    (Ok(secs), true) => {
                        let nanos: i64 = nanos.parse().unwrap_or(0);
                        let nanos = if whole.starts_with('-') {
                            -nanos
                        } else {
                            nanos
                        };
                        let whole = checked(Timestamp::from_unix_seconds(secs))?;
                        Ok(whole + chrono::Duration::nanoseconds(nanos))
                    }
                    _ => Err(mismatch("not a number of seconds".to_owned())),
                }
            }
            TimeFormat::UnixMs => match value.trim().parse::<i64>() {
                Ok(millis) => checked(Timestamp::from_unix_millis(millis)),
                Err(_) => Err(mismatch("not a whole number of milliseconds".to_owned())),
            },
            TimeFormat::Pattern { items, .. } => {
                let mut parsed = Parsed::new();
                chrono::format::parse(&mut parsed, value, items.iter())
                    .map_err(|e| mismatch(e.to_string()))?;
                if parsed.offset().is_some() {
                    let instant = parsed.to_datetime().map_err(|e| mismatch(e.to_string()))?;
                    return checked(Timestamp::try_from(instant));
                }
                let local = parsed
                    .to_naive_datetime_with_offset(0)
                    .map_err(|e| mismatch(e.to_string()))?;
                let Some(zone) = zone else {
                    return checked(Err(TimestampError::MissingOffset {
                        input: shown(value),
                    }));
                };
                checked(match zone.from_local_datetime(&local) {
                    LocalResult::Single(instant) => Timestamp::try_from(instant),
                    LocalResult::Ambiguous(a, b) => {
                        let (a, b) = (Timestamp::try_from(a), Timestamp::try_from(b));
                        match (a, b) {
                            (Ok(a), Ok(b)) => Err(TimestampError::AmbiguousLocalTime {
                                input: shown(value),
                                earliest: a.min(b),
                                latest: a.max(b),
                            }),
                            (Err(e), _) | (_, Err(e)) => Err(e),
                        }
                    }
                    LocalResult::None => Err(TimestampError::NonexistentLocalTime {
                        input: shown(value),
                    }),
                })
            }
        }
    }
}

/// A value cut to a readable length, control characters escaped.
fn shown(value: &str) -> String {
    let mut shown: String = value
        .chars()
        .take(100)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().count() > 100 {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(format: &str, value: &str) -> Result<String, String> {
        TimeFormat::parse(format)
            .unwrap()
            .read(value, Some(&chrono_tz::Asia::Seoul))
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn each_format_reads_what_stores_export() {
        assert_eq!(read("unix", "1730520180").unwrap(), "2024-11-02T04:03:00Z");
        assert_eq!(
            read("unix", "1730520180.25").unwrap(),
            "2024-11-02T04:03:00.250Z"
        );
        assert_eq!(
            read("unix-ms", "1730520180000").unwrap(),
            "2024-11-02T04:03:00Z"
        );
        assert_eq!(
            read("%Y.%m.%d %H:%M", "2024.11.02 14:03").unwrap(),
            "2024-11-02T05:03:00Z"
        );
        assert_eq!(
            read("%Y/%m/%d %H:%M:%S", "2024/11/02 14:03:11").unwrap(),
            "2024-11-02T05:03:11Z"
        );
        assert_eq!(
            read("%Y-%m-%d %H:%M %z", "2024-11-02 14:03 +0000").unwrap(),
            "2024-11-02T14:03:00Z"
        );
        assert_eq!(
            read("rfc3339", "2024-11-02T14:03:00").unwrap(),
            "2024-11-02T05:03:00Z"
        );
        let mismatch = read("%Y.%m.%d %H:%M", "2024-11-02 14:03").unwrap_err();
        assert!(mismatch.contains("%Y.%m.%d %H:%M"), "{mismatch}");
        assert!(read("unix", "soon").is_err());
        assert!(read("unix", "99999999999999").is_err(), "out of range");
        for bad in ["seconds", "%Q"] {
            assert!(TimeFormat::parse(bad).is_err(), "{bad}");
        }
        let naive = TimeFormat::parse("%Y.%m.%d %H:%M")
            .unwrap()
            .read("2024.11.02 14:03", None)
            .unwrap_err();
        assert_eq!(naive.kind(), "timestamp without offset");
    }
}
