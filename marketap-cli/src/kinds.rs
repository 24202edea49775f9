//! Everything kind-specific about reading, in one trait: [`Kind`] says, for
//! events, profiles, devices and deletions, how one NDJSON line (or one id
//! per line) and one CSV row become the library's item, and which CSV
//! columns are fields. Each item then goes through the library's own
//! builder (or `UserDeletion::new`), so the command line checks exactly
//! what the library checks, the reserved names included unless
//! `--no-reserved-check` says otherwise ([`Reading`]).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use marketap_ext::{
    Device, Event, EventBuilder, Item, UserDeletion, UserProfile, UserProfileBuilder, api::types,
};
use serde::{Deserialize, Deserializer, de};
use serde_json::{Map, Value};

use crate::{
    records::LineError,
    table::{CellType, Row},
    timeformat::TimeFormat,
};

/// What a CSV column that is not one of a kind's fields becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherColumns {
    /// A property (events, profiles).
    Properties,
    /// Nothing (deletions read one column).
    Ignored,
    /// An error (devices have no properties).
    Refused,
}

/// How lines become items, as the options say.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// The zone of timestamps without an offset (`--timezone`).
    pub zone: Option<Tz>,
    /// Whether `mkt_` names are checked (off with `--no-reserved-check`).
    pub reserved_check: bool,
    /// The input's encoding, for messages (`UTF-8`, `CP949`...).
    pub encoding: &'static str,
    /// How `timestamp` values are read (`--timestamp-format`).
    pub time: TimeFormat,
}

impl Default for Reading {
    fn default() -> Self {
        Self {
            zone: None,
            reserved_check: true,
            encoding: "UTF-8",
            time: TimeFormat::Rfc3339,
        }
    }
}

impl Reading {
    fn event(&self, raw: types::CreateEventReq) -> Result<Event, LineError> {
        let builder = EventBuilder::from(raw);
        let builder = if self.reserved_check {
            builder
        } else {
            builder.skip_reserved_check()
        };
        builder.build().map_err(LineError::from)
    }

    fn profile(&self, raw: types::BulkUserProfile) -> Result<UserProfile, LineError> {
        let builder = UserProfileBuilder::from(raw);
        let builder = if self.reserved_check {
            builder
        } else {
            builder.skip_reserved_check()
        };
        builder.build().map_err(LineError::from)
    }
}

/// One kind of item, as the command line reads it.
pub trait Kind: Item {
    /// The plural, as the command line says it: `events`.
    const LABEL: &'static str;
    /// The wire fields a CSV column can hold.
    const FIELDS: &'static [&'static str];
    /// The fields a CSV header must have.
    const REQUIRED: &'static [&'static str];
    /// What other columns become.
    const OTHERS: OtherColumns;
    /// The fields read as a type other than a string.
    const FIELD_TYPES: &'static [(&'static str, CellType)] = &[];

    /// The item on one line (the wire shape as JSON; for deletions, an id).
    fn from_line(line: &str, reading: &Reading) -> Result<Self, LineError>;

    /// The item in one CSV row.
    fn from_row(row: &Row<'_>, reading: &Reading) -> Result<Self, LineError>;
}

/// An event line, as the API takes it: unknown fields are errors, so a
/// misspelt field is never dropped silently.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine {
    user_id: String,
    event_name: String,
    #[serde(default)]
    properties: Map<String, Value>,
    #[serde(default, deserialize_with = "text_or_number")]
    timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileLine {
    user_id: String,
    #[serde(default)]
    properties: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceLine {
    device: DeviceFields,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceFields {
    token: String,
    platform: String,
    #[serde(default)]
    opt_in: Option<bool>,
}

impl Kind for Event {
    const LABEL: &'static str = "events";
    const FIELDS: &'static [&'static str] = &["user_id", "event_name", "timestamp"];
    const REQUIRED: &'static [&'static str] = &["user_id", "event_name"];
    const OTHERS: OtherColumns = OtherColumns::Properties;

    fn from_line(line: &str, reading: &Reading) -> Result<Self, LineError> {
        let line: EventLine = parse_json(line, Self::LABEL)?;
        let raw = types::CreateEventReq {
            user_id: line.user_id,
            event_name: line.event_name,
            properties: line.properties,
            timestamp: timestamp(line.timestamp.as_deref(), reading)?,
        };
        reading.event(raw)
    }

    fn from_row(row: &Row<'_>, reading: &Reading) -> Result<Self, LineError> {
        let raw = types::CreateEventReq {
            user_id: row.field("user_id").unwrap_or_default().to_owned(),
            event_name: row.field("event_name").unwrap_or_default().to_owned(),
            properties: row.properties()?,
            timestamp: timestamp(row.field("timestamp"), reading)?,
        };
        reading.event(raw)
    }
}

impl Kind for UserProfile {
    const LABEL: &'static str = "profiles";
    const FIELDS: &'static [&'static str] = &["user_id"];
    const REQUIRED: &'static [&'static str] = &["user_id"];
    const OTHERS: OtherColumns = OtherColumns::Properties;

    fn from_line(line: &str, reading: &Reading) -> Result<Self, LineError> {
        let line: ProfileLine = parse_json(line, Self::LABEL)?;
        let raw = types::BulkUserProfile {
            user_id: line.user_id,
            properties: line.properties,
        };
        reading.profile(raw)
    }

    fn from_row(row: &Row<'_>, reading: &Reading) -> Result<Self, LineError> {
        let raw = types::BulkUserProfile {
            user_id: row.field("user_id").unwrap_or_default().to_owned(),
            properties: row.properties()?,
        };
        reading.profile(raw)
    }
}

impl Kind for Device {
    const LABEL: &'static str = "devices";
    const FIELDS: &'static [&'static str] =
        &["token", "platform", "opt_in", "user_id", "timestamp"];
    const REQUIRED: &'static [&'static str] = &["token", "platform"];
    const OTHERS: OtherColumns = OtherColumns::Refused;
    const FIELD_TYPES: &'static [(&'static str, CellType)] = &[("opt_in", CellType::Bool)];

    fn from_line(line: &str, reading: &Reading) -> Result<Self, LineError> {
        let line: DeviceLine = parse_json(line, Self::LABEL)?;
        let raw = types::UpdateDeviceProfileReq {
            device: types::ClientDevice {
                token: line.device.token,
                platform: line.device.platform,
                opt_in: line.device.opt_in,
            },
            user_id: line.user_id,
            timestamp: timestamp(line.timestamp.as_deref(), reading)?,
        };
        Device::from_raw(raw).map_err(LineError::from)
    }

    fn from_row(row: &Row<'_>, reading: &Reading) -> Result<Self, LineError> {
        let opt_in = match row.typed_field("opt_in")? {
            Some(Value::Bool(opt_in)) => Some(opt_in),
            _ => None,
        };
        let raw = types::UpdateDeviceProfileReq {
            device: types::ClientDevice {
                token: row.field("token").unwrap_or_default().to_owned(),
                platform: row.field("platform").unwrap_or_default().to_owned(),
                opt_in,
            },
            user_id: row.field("user_id").map(str::to_owned),
            timestamp: timestamp(row.field("timestamp"), reading)?,
        };
        Device::from_raw(raw).map_err(LineError::from)
    }
}

impl Kind for UserDeletion {
    const LABEL: &'static str = "users";
    const FIELDS: &'static [&'static str] = &["user_id"];
    const REQUIRED: &'static [&'static str] = &["user_id"];
    const OTHERS: OtherColumns = OtherColumns::Ignored;

    fn from_line(line: &str, _: &Reading) -> Result<Self, LineError> {
        UserDeletion::new(line.trim()).map_err(LineError::from)
    }

    fn from_row(row: &Row<'_>, _: &Reading) -> Result<Self, LineError> {
        UserDeletion::new(row.field("user_id").unwrap_or_default()).map_err(LineError::from)
    }
}

/// A line's JSON as `T`, with the line's own kind of failure.
fn parse_json<'a, T: Deserialize<'a>>(line: &'a str, kind: &'static str) -> Result<T, LineError> {
    match line.trim_start().as_bytes().first() {
        Some(b'{') => {}
        Some(b'[') => return Err(LineError::NotAnObject { found: "an array" }),
        Some(b'"') => return Err(LineError::NotAnObject { found: "a string" }),
        Some(b'0'..=b'9' | b'-') => return Err(LineError::NotAnObject { found: "a number" }),
        Some(b't' | b'f') if serde_json::from_str::<bool>(line.trim()).is_ok() => {
            return Err(LineError::NotAnObject { found: "a boolean" });
        }
        Some(b'n') if line.trim() == "null" => {
            return Err(LineError::NotAnObject { found: "null" });
        }
        _ => {}
    }
    serde_json::from_str(line).map_err(|error| {
        let column = error.column();
        let message = error.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(message, _)| message)
            .to_owned();
        if error.is_data() {
            LineError::Shape {
                kind,
                message,
                column,
            }
        } else {
            LineError::NotJson { message, column }
        }
    })
}

/// A `timestamp` value, read as `--timestamp-format` says.
fn timestamp(value: Option<&str>, reading: &Reading) -> Result<Option<DateTime<Utc>>, LineError> {
    value
        .map(|value| reading.time.read(value, reading.zone.as_ref()))
        .transpose()
}

/// A JSON string, or a number (a Unix time) as its text.
fn text_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct Text;
    impl<'de> de::Visitor<'de> for Text {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a timestamp: a string, or a number of seconds or milliseconds")
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(Some(value.to_owned()))
        }
        fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
            Ok(Some(value))
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
            Ok(Some(value.to_string()))
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
            Ok(Some(value.to_string()))
        }
        fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
            Ok(Some(value.to_string()))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Text)
        }
    }
    deserializer.deserialize_option(Text)
}
