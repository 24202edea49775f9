//! The command line as clap reads it: the four commands, the options they
//! share (input, sending, output), and the exit codes printed in `--help`.
//! Nothing here opens a file or reads the environment.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::encoding::TextEncoding;

/// The exit codes, as `--help` prints them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0    everything was accepted (validate: every line is valid)
  1    some lines were rejected, some requests failed (see the dead-letter file), the input
       could not be read to its end, or a deletion was declined
  2    usage or configuration error (bad option, missing credential, unreadable or empty input,
       a checkpoint, rejects or dead-letter path that cannot be written): nothing was sent
  3    unauthorized: the API key or project was not accepted (the run stops at the first 401)
  130  interrupted (Ctrl-C): requests in flight were drained and the checkpoint written

Credentials: MARKETAP_API_KEY (or --api-key-file), MARKETAP_PROJECT_ID (or --project),
and optionally MARKETAP_BASE_URL.";

/// An example for `import` and `validate --help`: a Korean Excel export.
pub const KOREAN_EXCEL: &str = "\
Example: a CSV saved by Korean Excel (CP949) with Korean headers and times like
`2024.11.02 14:03` in Seoul. Validate first (nothing is sent), then import:
  marketap validate events 주문내역.csv --encoding cp949 \\
      --column user_id=회원번호 --column event_name=이벤트 --column timestamp=주문일시 \\
      --timestamp-format '%Y.%m.%d %H:%M' --timezone Asia/Seoul
  marketap import events 주문내역.csv --encoding cp949 \\
      --column user_id=회원번호 --column event_name=이벤트 --column timestamp=주문일시 \\
      --timestamp-format '%Y.%m.%d %H:%M' --timezone Asia/Seoul";

/// `marketap`: bulk import, validation, deletion and resend for Marketap.
#[derive(Debug, Parser)]
#[command(name = "marketap", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// No progress output (errors and the summary still print).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// How to print the summary: text, or one JSON object for scripts.
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send events, profiles or devices from an NDJSON or CSV file (or `-` for stdin), with
    /// resume.
    #[command(after_help = KOREAN_EXCEL)]
    Import {
        /// What the file holds.
        #[arg(value_enum)]
        kind: ItemKind,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        items: ItemArgs,
        #[command(flatten)]
        send: SendArgs,
    },
    /// Read and check a file as `import` would; nothing is sent and no credentials are needed.
    #[command(after_help = KOREAN_EXCEL)]
    Validate {
        /// What the file holds.
        #[arg(value_enum)]
        kind: ItemKind,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        items: ItemArgs,
    },
    /// Request deletion of users: one id per line, or a CSV column (`user_id`, or `--column`).
    /// Deletion cannot be undone: it asks first, unless `--yes`.
    Delete {
        /// What to delete.
        #[arg(value_enum)]
        what: DeleteWhat,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        send: SendArgs,
        /// Do not ask: needed when stdin is not a terminal.
        #[arg(long)]
        yes: bool,
    },
    /// Send the letters of a dead-letter file again (written by `import` or by the library).
    Resend {
        /// The dead-letter file.
        file: PathBuf,
        /// Where letters that fail again (or are not sent) go [default: FILE.remaining.ndjson].
        #[arg(long, value_name = "FILE")]
        dead_letter: Option<PathBuf>,
        #[command(flatten)]
        credentials: CredentialArgs,
        /// Letters sent at once.
        #[arg(long, default_value_t = 4, value_name = "N")]
        in_flight: usize,
        /// Send `mkt_` names as they are, unchecked against Marketap's reserved names and types.
        #[arg(long)]
        no_reserved_check: bool,
    },
    /// A spool the library left behind (`IngestorConfig::with_spool`): see what it holds, or
    /// deliver it.
    Spool {
        #[command(subcommand)]
        action: SpoolAction,
    },
}

/// What `spool` does.
#[derive(Debug, Subcommand)]
pub enum SpoolAction {
    /// Print the items, bytes, oldest and newest times and damaged ranges; changes nothing.
    Inspect {
        /// The spool's directory.
        path: PathBuf,
    },
    /// Deliver what the spool holds, with progress and a summary; what finally fails goes to a
    /// dead-letter file. Transient failures (429, 5xx, timeouts) are retried while it runs.
    Drain {
        /// The spool's directory.
        path: PathBuf,
        #[command(flatten)]
        credentials: CredentialArgs,
        /// Where requests that finally fail go [default: PATH.dead-letter.ndjson].
        #[arg(long, value_name = "FILE")]
        dead_letter: Option<PathBuf>,
        /// Stop after this many seconds, leaving what is not delivered in the spool [default:
        /// until the spool is empty].
        #[arg(long, value_name = "SECS", value_parser = seconds)]
        max_time: Option<f64>,
        /// At the end, how long requests in flight may take to finish, in seconds.
        #[arg(long, default_value_t = 10.0, value_name = "SECS", value_parser = seconds)]
        drain_timeout: f64,
    },
}

/// What `import` and `validate` read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ItemKind {
    /// Events: `user_id`, `event_name`, `timestamp`, properties.
    Events,
    /// User profiles: `user_id`, properties.
    Profiles,
    /// Device push tokens: `token`, `platform`, `opt_in`, `user_id`, `timestamp`.
    Devices,
}

/// What `delete` deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeleteWhat {
    /// User profiles, by user id.
    Users,
}

/// The input file and how to read it.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// The input file, plain or gzip (detected by its first bytes), or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: String,
    /// The input's format [default: from the name (.csv, .ndjson, .jsonl), else from the first
    /// byte].
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// The input's text encoding: `utf-8` (a byte-order mark allowed), `cp949` (Korean Excel's
    /// CSV; `euc-kr` is the same), `utf-16le`, `utf-16be`, or `auto` (a byte-order mark, else
    /// UTF-8 if the first 64 KiB are, else CP949).
    #[arg(long, value_enum, default_value_t = TextEncoding::Utf8, value_name = "ENCODING", hide_possible_values = true)]
    pub encoding: TextEncoding,
    /// Read a field or property from a CSV column of another name, e.g.
    /// `--column user_id=member_no` (repeatable).
    #[arg(long = "column", value_name = "FIELD=COLUMN")]
    pub columns: Vec<String>,
}

/// How CSV cells and timestamps become values.
#[derive(Debug, Args)]
pub struct ItemArgs {
    /// The type of a CSV property, e.g. `--type price=number` (repeatable); `string` (the
    /// default), `number`, `bool` or `json`.
    #[arg(long = "type", value_name = "NAME=TYPE")]
    pub types: Vec<String>,
    /// The zone of timestamps without an offset, e.g. `Asia/Seoul`. Without it such a
    /// timestamp is an error; a local time a DST change skips or repeats always is.
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
    /// How timestamps are written: `rfc3339` (ISO 8601), `unix` (seconds), `unix-ms`, or a
    /// strftime pattern such as `%Y.%m.%d %H:%M` (for `2024.11.02 14:03`; without `%z`, the
    /// times are read in --timezone).
    #[arg(long, default_value = "rfc3339", value_name = "FORMAT")]
    pub timestamp_format: String,
    /// Take `mkt_` names as they are, unchecked against Marketap's reserved names and types
    /// (for a name Marketap reserves that this tool does not know yet). Every other check runs.
    #[arg(long)]
    pub no_reserved_check: bool,
}

/// Where the key and project come from.
#[derive(Debug, Args)]
pub struct CredentialArgs {
    /// The project id [default: $MARKETAP_PROJECT_ID].
    #[arg(long, value_name = "ID")]
    pub project: Option<String>,
    /// A file holding the API key [default: $MARKETAP_API_KEY]. There is no flag for the key
    /// itself: it would show in the process list.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
}

/// How a sending command sends, and where it keeps what did not go.
#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub credentials: CredentialArgs,
    /// Where invalid lines go, as NDJSON: line, column, error, raw line [default:
    /// FILE.rejects.ndjson].
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// Where requests that finally failed go, for `marketap resend` [default:
    /// FILE.dead-letter.ndjson].
    #[arg(long, value_name = "FILE")]
    pub dead_letter: Option<PathBuf>,
    /// The checkpoint to resume from and update [default: FILE.checkpoint; none for stdin].
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Ignore the checkpoint and start from the first line.
    #[arg(long)]
    pub restart: bool,
    /// Stop reading after this many invalid lines.
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,
    /// Items per request (1 to 1000).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub batch_size: usize,
    /// Requests in flight at once, at most (1 to 64).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub in_flight: usize,
    /// Attempts per request, retries included.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_attempts: u32,
    /// Requests per second, at most [default: no cap; the rate is learned
    /// from 429s, and a throttled run's summary suggests a cap].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rps: Option<u32>,
    /// Items per second, at most [default: no cap].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_items_per_second: Option<u32>,
    /// Fail a request the server refuses with 400 whole, instead of splitting
    /// it to find the items refused (so only those go to the dead letters).
    #[arg(long)]
    pub no_isolate: bool,
    /// On Ctrl-C, how long requests in flight may take to finish, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECS", value_parser = seconds)]
    pub drain_timeout: f64,
}

/// The input's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// From the file name, else from the first byte (`{` or `[`: NDJSON, else CSV).
    Auto,
    /// One item per line in the API's wire shape (`delete users`: one id per line).
    Ndjson,
    /// CSV with a header row.
    Csv,
}

/// How the summary is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Lines for people.
    Text,
    /// One JSON object.
    Json,
}

/// A number of seconds: finite and not negative (`NaN`, `inf` and `-1` are
/// refused rather than read as "no deadline").
fn seconds(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs),
        _ => Err(format!(
            "`{value}` is not a number of seconds (a finite number, 0 or more, e.g. 10 or 2.5)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_finite_and_not_negative() {
        assert_eq!(seconds("2.5"), Ok(2.5));
        assert_eq!(seconds("0"), Ok(0.0));
        for bad in ["NaN", "nan", "inf", "-inf", "-1", "", "ten"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }
}
