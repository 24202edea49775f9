//! The input, record by record: one line (NDJSON, or one id per line) or
//! one CSV row at a time, each an item of a [`Kind`] or a [`Reject`] naming
//! its line (and CSV column) and why. Lines are read in bounded memory: a
//! line longer than [`MAX_LINE`] is skipped to its end, never held. A
//! resume starts at a line, skipping what is before it without parsing it.

use std::{io::BufRead, marker::PhantomData};

use csv::ByteRecord;
use marketap_ext::{ErrorChain, MAX_ITEM_BYTES, ValidationError, timestamp::TimestampError};
use serde::Serialize;

use crate::{
    error::CliError,
    input::{Content, describe_read_error},
    kinds::{Kind, Reading},
    table::{Layout, Mapping, Row},
};

/// The longest line read: twice the largest item, for JSON with spaces.
pub const MAX_LINE: usize = 2 * MAX_ITEM_BYTES;
/// The most of a rejected line kept in the rejects file.
const MAX_RAW: usize = 16 * 1024;

/// What is wrong with one line. It does not stop the run.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Not UTF-8, or (another `--encoding`) bytes that do not decode.
    #[error("{}", not_text(encoding, *offset))]
    NotUtf8 {
        /// Where the first invalid byte is (in the decoded line, for
        /// another encoding).
        offset: usize,
        /// The input's encoding.
        encoding: &'static str,
    },
    /// Too long to be one item.
    #[error(
        "the line is {bytes} bytes long; the most read is {max} (one item may be at most {} bytes of JSON)",
        MAX_ITEM_BYTES
    )]
    TooLong {
        /// Its length.
        bytes: u64,
        /// [`MAX_LINE`].
        max: usize,
    },
    /// Not JSON.
    #[error("not valid JSON: {message} (column {column})")]
    NotJson {
        /// serde_json's message, without its position.
        message: String,
        /// Where in the line.
        column: usize,
    },
    /// JSON, but not an object.
    #[error("expected a JSON object, got {found}")]
    NotAnObject {
        /// What it is.
        found: &'static str,
    },
    /// An object, but not of the kind's shape.
    #[error("not the API's shape for {kind}: {message} (column {column})")]
    Shape {
        /// `events`, `profiles` or `devices`.
        kind: &'static str,
        /// serde_json's message, e.g. a missing field.
        message: String,
        /// Where in the line.
        column: usize,
    },
    /// A CSV row with more cells than the header.
    #[error("{cells} cells, but the header has {header}")]
    CellCount {
        /// The row's cells.
        cells: usize,
        /// The header's columns.
        header: usize,
    },
    /// A CSV cell that is not of its `--type`.
    #[error("column `{column}`: {reason}")]
    Cell {
        /// The column.
        column: String,
        /// Why.
        reason: String,
    },
    /// A timestamp not in `--timestamp-format`.
    #[error("timestamp \"{value}\" does not match --timestamp-format `{format}`: {reason}")]
    TimestampFormat {
        /// The value, cut to 100 characters, control characters escaped.
        value: String,
        /// The format tried.
        format: &'static str,
        /// chrono's reason.
        reason: String,
    },
    /// A CSV row the csv reader refused.
    #[error("invalid CSV: {0}")]
    Csv(String),
    /// The library's check refused the item. The message holds its whole
    /// chain (a timestamp's reason included), for the rejects file.
    #[error("{}{}", ErrorChain(error), hint(error))]
    Item {
        /// The library's error.
        error: ValidationError,
    },
}

impl From<ValidationError> for LineError {
    fn from(error: ValidationError) -> Self {
        LineError::Item { error }
    }
}

/// The message for bytes that are not text in `encoding`.
fn not_text(encoding: &str, offset: usize) -> String {
    if encoding == "UTF-8" {
        format!(
            "not valid UTF-8 (byte {offset} of the line); if the file is in another encoding, \
             pass --encoding (cp949, utf-16le, utf-16be or auto)"
        )
    } else {
        format!("bytes that are not valid {encoding} (at byte {offset} of the decoded line)")
    }
}

/// What to do about a timestamp without an offset.
fn hint(error: &ValidationError) -> &'static str {
    match error {
        ValidationError::Timestamp {
            source: TimestampError::MissingOffset { .. },
            ..
        } => " (on the command line: state the zone with --timezone, e.g. --timezone Asia/Seoul)",
        _ => "",
    }
}

impl LineError {
    /// The kind of problem, for the counts `validate` prints.
    pub fn kind(&self) -> &'static str {
        match self {
            LineError::NotUtf8 { encoding, .. } if *encoding == "UTF-8" => "not UTF-8",
            LineError::NotUtf8 { .. } => "not valid in its --encoding",
            LineError::TooLong { .. } => "line too long",
            LineError::NotJson { .. } => "not JSON",
            LineError::NotAnObject { .. } => "not a JSON object",
            LineError::Shape { .. } => "wrong fields",
            LineError::CellCount { .. } => "too many CSV cells",
            LineError::Cell { .. } => "cell not of its --type",
            LineError::Csv(_) => "invalid CSV",
            LineError::TimestampFormat { .. } => "timestamp not in --timestamp-format",
            LineError::Item { error } => match error {
                ValidationError::Empty { .. } => "empty required field",
                ValidationError::ControlCharacter { .. } => "control character in an id",
                ValidationError::Timestamp { source, .. } => match source {
                    TimestampError::MissingOffset { .. } => "timestamp without offset",
                    TimestampError::NonexistentLocalTime { .. }
                    | TimestampError::AmbiguousLocalTime { .. } => {
                        "local time skipped or repeated by DST"
                    }
                    _ => "invalid timestamp",
                },
                ValidationError::NotReserved { .. } => "unknown mkt_ name",
                ValidationError::WrongType { .. } => "reserved name of the wrong type",
                ValidationError::SdkOnlyEvent { .. } => "event only the mobile SDKs send",
                ValidationError::TooLarge { .. } => "item too large",
                ValidationError::TooDeep { .. } => "nested too deep",
                ValidationError::NonFiniteNumber { .. } => "NaN or infinity",
                _ => "invalid item",
            },
        }
    }

    /// The field or property at fault, to find its CSV column.
    fn field(&self) -> Option<&str> {
        let error = match self {
            LineError::Item { error } => error,
            LineError::TimestampFormat { .. } => return Some("timestamp"),
            _ => return None,
        };
        let field = match error {
            ValidationError::Empty { field, .. }
            | ValidationError::ControlCharacter { field, .. }
            | ValidationError::Timestamp { field, .. } => *field,
            ValidationError::NotReserved { field, .. }
            | ValidationError::WrongType { field, .. }
            | ValidationError::TooLarge { field, .. }
            | ValidationError::TooDeep { field, .. }
            | ValidationError::NonFiniteNumber { field, .. } => field.as_str(),
            _ => return None,
        };
        let name = field.strip_prefix("properties.").unwrap_or(field);
        Some(name.split(['.', '[']).next().unwrap_or(name))
    }
}

/// A line that is not an item.
#[derive(Debug)]
pub struct Reject {
    /// Its line, from 1 (for CSV, where its row starts).
    pub line: u64,
    /// The CSV column at fault, when one is.
    pub column: Option<String>,
    /// What is wrong.
    pub error: LineError,
    /// The line as read (invalid UTF-8 replaced), cut to 16 KiB.
    pub raw: String,
    /// Whether `raw` was cut.
    pub raw_truncated: bool,
}

/// A reject as the rejects file holds it: one JSON object per line.
#[derive(Serialize)]
pub struct RejectLine<'a> {
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<&'a str>,
    kind: &'static str,
    error: String,
    raw: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    raw_truncated: bool,
}

impl Reject {
    /// Its line in the rejects file.
    pub fn to_line(&self) -> RejectLine<'_> {
        RejectLine {
            line: self.line,
            column: self.column.as_deref(),
            kind: self.error.kind(),
            error: self.error.to_string(),
            raw: &self.raw,
            raw_truncated: self.raw_truncated,
        }
    }
}

/// The next record.
pub enum Next<T> {
    /// An item, and the line it starts on.
    Item(u64, T),
    /// A line that is not one.
    Reject(Reject),
    /// The end of the input.
    End,
    /// The input could not be read further.
    Failed {
        /// The line where reading stopped.
        line: u64,
        /// Why.
        error: std::io::Error,
    },
}

/// The records of an input, as items of `T`.
pub struct Records<T> {
    source: Source,
    reading: Reading,
    /// Records starting before this line are skipped (a resume).
    start_line: u64,
    kind: PhantomData<fn() -> T>,
}

enum Source {
    Lines {
        reader: Box<dyn BufRead + Send>,
        /// The last line read.
        line: u64,
        buffer: Vec<u8>,
    },
    Csv {
        reader: Box<csv::Reader<Box<dyn BufRead + Send>>>,
        layout: Layout,
        record: ByteRecord,
    },
}

impl<T: Kind> Records<T> {
    /// Reads `reader` as `content`; for CSV, reads the header now.
    pub fn new(
        reader: Box<dyn BufRead + Send>,
        content: Content,
        mapping: &Mapping,
        reading: Reading,
        start_line: u64,
        label: &str,
    ) -> Result<Self, CliError> {
        let source = match content {
            Content::Lines => Source::Lines {
                reader,
                line: 0,
                buffer: Vec::new(),
            },
            Content::Csv => {
                // Records end at `\n` only, so that a CRLF file's line
                // numbers count each line once (with CRLF as terminator the
                // csv reader counts a record's `\n` with the next record's
                // line); the `\r` left on the last cell is removed.
                let mut reader = csv::ReaderBuilder::new()
                    .flexible(true)
                    .has_headers(true)
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_reader(reader);
                let header = reader.byte_headers().map_err(|e| CliError::Header {
                    label: label.to_owned(),
                    reason: format!("cannot be read: {e}"),
                })?;
                let header = header
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        let name = std::str::from_utf8(name).map_err(|_| CliError::Header {
                            label: label.to_owned(),
                            reason: format!(
                                "column {} is not valid {}{}",
                                i + 1,
                                reading.encoding,
                                if reading.encoding == "UTF-8" {
                                    "; if the file is in another encoding, pass --encoding \
                                     (cp949, utf-16le, utf-16be or auto)"
                                } else {
                                    ""
                                }
                            ),
                        })?;
                        Ok(name.trim_start_matches('\u{feff}').trim().to_owned())
                    })
                    .collect::<Result<Vec<_>, CliError>>()?;
                if header.iter().all(String::is_empty) {
                    return Err(CliError::Header {
                        label: label.to_owned(),
                        reason: "is empty: the first line must name the columns".to_owned(),
                    });
                }
                let layout = Layout::new(
                    &header,
                    mapping,
                    T::FIELDS,
                    T::REQUIRED,
                    T::FIELD_TYPES,
                    T::OTHERS,
                    label,
                )?;
                Source::Csv {
                    reader: Box::new(reader),
                    layout,
                    record: ByteRecord::new(),
                }
            }
        };
        Ok(Self {
            source,
            reading,
            start_line,
            kind: PhantomData,
        })
    }

    /// The line the next record starts on (or would).
    pub fn next_line(&self) -> u64 {
        match &self.source {
            Source::Lines { line, .. } => line + 1,
            Source::Csv { reader, .. } => reader.position().line(),
        }
    }

    /// The next record: an item, a reject, the end, or a read failure.
    pub fn next(&mut self) -> Next<T> {
        loop {
            let reading = &self.reading;
            match &mut self.source {
                Source::Lines {
                    reader,
                    line,
                    buffer,
                } => {
                    let length = match read_line(reader, buffer) {
                        Ok(Some(length)) => length,
                        Ok(None) => return Next::End,
                        Err(error) => {
                            return Next::Failed {
                                line: *line + 1,
                                error: describe_read_error(error),
                            };
                        }
                    };
                    *line += 1;
                    if *line < self.start_line {
                        continue;
                    }
                    if *line == 1 && buffer.starts_with(b"\xef\xbb\xbf") {
                        buffer.drain(..3);
                    }
                    if length <= MAX_LINE as u64 && buffer.trim_ascii().is_empty() {
                        continue;
                    }
                    let reject = |error: LineError| {
                        let raw_len = buffer.len().min(MAX_RAW);
                        Next::Reject(Reject {
                            line: *line,
                            column: None,
                            error,
                            raw: String::from_utf8_lossy(&buffer[..raw_len]).into_owned(),
                            raw_truncated: length > raw_len as u64,
                        })
                    };
                    if length > MAX_LINE as u64 {
                        return reject(LineError::TooLong {
                            bytes: length,
                            max: MAX_LINE,
                        });
                    }
                    let text = match std::str::from_utf8(buffer) {
                        Ok(text) => text,
                        Err(e) => {
                            return reject(LineError::NotUtf8 {
                                offset: e.valid_up_to(),
                                encoding: reading.encoding,
                            });
                        }
                    };
                    return match T::from_line(text, reading) {
                        Ok(item) => Next::Item(*line, item),
                        Err(error) => reject(error),
                    };
                }
                Source::Csv {
                    reader,
                    layout,
                    record,
                } => {
                    let read = reader.read_byte_record(record);
                    let line = record
                        .position()
                        .map_or_else(|| reader.position().line(), |p| p.line());
                    match read {
                        Ok(false) => return Next::End,
                        Ok(true) => {}
                        Err(error) => {
                            if let csv::ErrorKind::Io(_) = error.kind() {
                                let csv::ErrorKind::Io(io) = error.into_kind() else {
                                    unreachable!("checked above")
                                };
                                return Next::Failed {
                                    line,
                                    error: describe_read_error(io),
                                };
                            }
                            return Next::Reject(Reject {
                                line,
                                column: None,
                                error: LineError::Csv(error.to_string()),
                                raw: String::new(),
                                raw_truncated: false,
                            });
                        }
                    }
                    if line < self.start_line {
                        continue;
                    }
                    // A blank line of a CRLF file: skipped, as a blank line is.
                    if record.len() == 1 && record[0] == *b"\r" {
                        continue;
                    }
                    return match csv_item::<T>(record, layout, reading) {
                        Ok(item) => Next::Item(line, item),
                        Err(error) => {
                            let column = match &error {
                                LineError::Cell { column, .. } => Some(column.clone()),
                                other => other
                                    .field()
                                    .and_then(|f| layout.column_of(f))
                                    .map(str::to_owned),
                            };
                            let raw = csv_raw(record);
                            let raw_truncated = raw.len() > MAX_RAW;
                            let raw = if raw_truncated {
                                let mut end = MAX_RAW;
                                while !raw.is_char_boundary(end) {
                                    end -= 1;
                                }
                                raw[..end].to_owned()
                            } else {
                                raw
                            };
                            Next::Reject(Reject {
                                line,
                                column,
                                error,
                                raw,
                                raw_truncated,
                            })
                        }
                    };
                }
            }
        }
    }
}

/// One CSV row as an item.
fn csv_item<T: Kind>(
    record: &ByteRecord,
    layout: &Layout,
    reading: &Reading,
) -> Result<T, LineError> {
    let bytes = record.as_slice().len();
    if bytes > MAX_LINE {
        return Err(LineError::TooLong {
            bytes: bytes as u64,
            max: MAX_LINE,
        });
    }
    if record.len() > layout.width() {
        return Err(LineError::CellCount {
            cells: record.len(),
            header: layout.width(),
        });
    }
    let mut cells = Vec::with_capacity(layout.width());
    let mut offset = 0;
    let last = record.len().saturating_sub(1);
    for (i, field) in record.iter().enumerate() {
        let field = if i == last {
            field.strip_suffix(b"\r").unwrap_or(field)
        } else {
            field
        };
        let cell = std::str::from_utf8(field).map_err(|e| LineError::NotUtf8 {
            offset: offset + e.valid_up_to(),
            encoding: reading.encoding,
        })?;
        offset += field.len() + 1;
        cells.push(cell);
    }
    // A short row: the missing cells are empty.
    cells.resize(layout.width(), "");
    T::from_row(
        &Row {
            layout,
            cells: &cells,
        },
        reading,
    )
}

/// A row as CSV text again, for the rejects file.
fn csv_raw(record: &ByteRecord) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let last = record.len().saturating_sub(1);
    let _ = writer.write_record(record.iter().enumerate().map(|(i, f)| {
        if i == last {
            f.strip_suffix(b"\r").unwrap_or(f)
        } else {
            f
        }
    }));
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8_lossy(bytes.strip_suffix(b"\n").unwrap_or(&bytes)).into_owned()
}

/// Reads one line into `buffer` (without its `\n` or `\r\n`), keeping at
/// most [`MAX_LINE`] bytes of it. Returns the line's whole length, or
/// `None` at the end of the input.
fn read_line(reader: &mut dyn BufRead, buffer: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
    buffer.clear();
    let mut length = 0_u64;
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        any = true;
        let newline = memchr::memchr(b'\n', available);
        let chunk = &available[..newline.unwrap_or(available.len())];
        let room = MAX_LINE.saturating_sub(buffer.len());
        buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        length += chunk.len() as u64;
        let used = newline.map_or(available.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if length <= MAX_LINE as u64 && buffer.last() == Some(&b'\r') {
        buffer.pop();
        length -= 1;
    }
    Ok(Some(length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_measured_but_not_held() {
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("a\r\n{long}\nb");
        let mut reader = std::io::Cursor::new(input.into_bytes());
        let mut buffer = Vec::new();
        assert_eq!(read_line(&mut reader, &mut buffer).unwrap(), Some(1));
        assert_eq!(buffer, b"a");
        assert_eq!(
            read_line(&mut reader, &mut buffer).unwrap(),
            Some(MAX_LINE as u64 + 10)
        );
        assert_eq!(buffer.len(), MAX_LINE);
        assert_eq!(read_line(&mut reader, &mut buffer).unwrap(), Some(1));
        assert_eq!(buffer, b"b");
        assert_eq!(read_line(&mut reader, &mut buffer).unwrap(), None);
    }
}
