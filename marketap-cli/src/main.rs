//! `marketap`: the command line for Marketap. Bulk import of events,
//! profiles and devices from NDJSON or CSV (gzip or not) with resume,
//! validation without sending, deletion of users with a confirmation, and
//! resend of dead letters. It is built on `marketap-ext`'s public API only.
//!
//! - [`args`]: the command line; [`error`]: what stops a command, and the
//!   exit codes.
//! - [`input`]: opening the input, in its [`encoding`]; [`records`]:
//!   reading it record by record; [`kinds`]: what each kind of item reads;
//!   [`table`]: CSV columns; [`timeformat`]: how timestamps are written.
//! - [`send`]: reading and sending with a checkpoint ([`checkpoint`], which
//!   follows the input's [`prefix`], and [`tracker`]), the [`rejects`]
//!   file, progress ([`progress`]), signals ([`signals`]) and the
//!   [`summary`].
//! - [`validate`], [`confirm`] (for `delete users`), [`resend`], [`spool`].

#![warn(missing_docs)]

mod args;
mod checkpoint;
mod confirm;
mod credentials;
mod encoding;
mod error;
mod input;
mod kinds;
mod prefix;
mod progress;
mod records;
mod rejects;
mod resend;
mod send;
mod signals;
mod spool;
mod summary;
mod table;
mod timeformat;
mod tracker;
mod validate;

use std::{process::ExitCode, time::Duration};

use chrono_tz::Tz;
use clap::Parser;
use marketap_ext::{BatchConfig, Device, Event, RateLimit, UserDeletion, UserProfile};

use crate::{
    args::{Cli, Command, InputArgs, ItemArgs, ItemKind, SendArgs, SpoolAction},
    checkpoint::Start,
    credentials::Sending,
    error::{CliError, Exit},
    input::{Content, Input},
    kinds::{Kind, Reading},
    records::{Next, Records},
    table::Mapping,
    timeformat::TimeFormat,
};

/// The reader thread allocates every item and the sending task frees it:
/// glibc's allocator takes a lock for each such free, mimalloc does not.
/// Its v2 line (the `v2` feature): v3 kept 8 to 20 MiB more of freed memory
/// for a while, varying from run to run, so peak RSS did not stay flat.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("marketap: error: {}", marketap_ext::ErrorChain(&error));
            Exit::Usage.into()
        }
    }
}

/// Runs the command; its exit code.
fn run(cli: &Cli) -> Result<u8, CliError> {
    match &cli.command {
        Command::Validate { kind, input, items } => {
            let (mapping, mut reading) = item_options(input, items)?;
            let (mut opened, content) = open(input, "validate", false)?;
            reading.encoding = opened.encoding.name();
            let reader = opened.take_reader();
            let label = opened.label.as_str();
            let report = match kind {
                ItemKind::Events => validate::run(
                    Records::<Event>::new(reader, content, &mapping, reading, 1, label)?,
                    label,
                    &reading,
                ),
                ItemKind::Profiles => validate::run(
                    Records::<UserProfile>::new(reader, content, &mapping, reading, 1, label)?,
                    label,
                    &reading,
                ),
                ItemKind::Devices => validate::run(
                    Records::<Device>::new(reader, content, &mapping, reading, 1, label)?,
                    label,
                    &reading,
                ),
            };
            report.print(cli.output);
            Ok(report.exit_code)
        }
        Command::Import {
            kind,
            input,
            items,
            send,
        } => {
            let (mapping, reading) = item_options(input, items)?;
            let client = credentials::client(&send.credentials, sending(send))?;
            let opened = open(input, "import", false)?;
            let job = Plan {
                cli,
                send,
                client,
                mapping,
                reading,
            };
            match kind {
                ItemKind::Events => job.run::<Event>("import events", opened),
                ItemKind::Profiles => job.run::<UserProfile>("import profiles", opened),
                ItemKind::Devices => job.run::<Device>("import devices", opened),
            }
        }
        Command::Delete {
            what: _,
            input,
            send,
            yes,
        } => {
            let mapping = Mapping::parse(&input.columns, &[])?;
            let client = credentials::client(&send.credentials, sending(send))?;
            let command = "delete users";
            if !yes {
                if input.file == "-" {
                    return Err(CliError::Unconfirmed {
                        reason: "the ids come from stdin, so they cannot be counted first and \
                                 stdin cannot answer; pass --yes to confirm",
                    });
                }
                confirm::can_ask()?;
                let (mut counting, content) = open(input, "delete", true)?;
                let (_, start) = send::checkpoint(&counting, send, command)?;
                if start != Start::Complete {
                    let reader = counting.take_reader();
                    let records = Records::<UserDeletion>::new(
                        reader,
                        content,
                        &mapping,
                        Reading {
                            encoding: counting.encoding.name(),
                            ..Reading::default()
                        },
                        start.line(),
                        &counting.label,
                    )?;
                    let (count, rejected) = count(records);
                    if !confirm::deletion(count, client.project_id(), &counting.label, rejected)? {
                        eprintln!("marketap: declined: nothing was deleted");
                        return Ok(Exit::Partial.code());
                    }
                }
            }
            let job = Plan {
                cli,
                send,
                client,
                mapping,
                reading: Reading::default(),
            };
            job.run::<UserDeletion>(command, open(input, "delete", true)?)
        }
        Command::Resend {
            file,
            dead_letter,
            credentials,
            in_flight,
            no_reserved_check,
        } => {
            let sending = Sending {
                skip_reserved_check: *no_reserved_check,
                ..Sending::default()
            };
            let client = credentials::client(credentials, sending)?;
            let remaining = dead_letter.clone().unwrap_or_else(|| {
                let mut name = file.as_os_str().to_owned();
                name.push(".remaining.ndjson");
                name.into()
            });
            let summary =
                runtime()?.block_on(resend::run(file.clone(), remaining, client, *in_flight))?;
            summary.print(cli.output);
            Ok(summary.exit_code)
        }
        Command::Spool { action } => match action {
            SpoolAction::Inspect { path } => spool::inspect(path, cli.output),
            SpoolAction::Drain {
                path,
                credentials,
                dead_letter,
                max_time,
                drain_timeout,
            } => {
                let client = credentials::client(credentials, Sending::default())?;
                let dead_letter = dead_letter.clone().unwrap_or_else(|| {
                    let mut name = path.as_os_str().to_owned();
                    name.push(".dead-letter.ndjson");
                    name.into()
                });
                let seconds = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX);
                let job = spool::Drain {
                    path,
                    dead_letter,
                    client,
                    max_time: max_time.map(seconds),
                    drain_timeout: seconds(*drain_timeout),
                    quiet: cli.quiet,
                };
                let summary = runtime()?.block_on(spool::drain(job))?;
                summary.print(cli.output);
                Ok(summary.exit_code)
            }
        },
    }
}

/// What a sending command needs besides its input.
struct Plan<'a> {
    cli: &'a Cli,
    send: &'a SendArgs,
    client: marketap_ext::Marketap,
    mapping: Mapping,
    reading: Reading,
}

impl Plan<'_> {
    /// Sends `input`, read as `content`, as items of `T`, printing the
    /// summary.
    fn run<T: Kind>(
        self,
        command: &str,
        (mut input, content): (Input, Content),
    ) -> Result<u8, CliError> {
        let (checkpoint, start) = send::checkpoint(&input, self.send, command)?;
        let reader = input.take_reader();
        let reading = Reading {
            encoding: input.encoding.name(),
            ..self.reading
        };
        let records = Records::<T>::new(
            reader,
            content,
            &self.mapping,
            reading,
            start.line(),
            &input.label,
        )?;
        let job = send::Job {
            command,
            input,
            args: self.send,
            client: self.client,
            quiet: self.cli.quiet,
        };
        let summary = runtime()?.block_on(send::run(job, records, checkpoint, start))?;
        summary.print(self.cli.output);
        Ok(summary.exit_code)
    }
}

/// Opens the input for a command that will `verb` it, and the format to
/// read it as (`ids`: one id per line unless it says otherwise).
fn open(input: &InputArgs, verb: &'static str, ids: bool) -> Result<(Input, Content), CliError> {
    let mut opened = Input::open(&input.file, verb, input.encoding)?;
    let content = opened.content(input.format, ids);
    Ok((opened, content))
}

/// Counts the valid and the invalid records.
fn count<T: Kind>(mut records: Records<T>) -> (u64, u64) {
    let (mut valid, mut invalid) = (0, 0);
    loop {
        match records.next() {
            Next::Item(..) => valid += 1,
            Next::Reject(_) => invalid += 1,
            Next::End | Next::Failed { .. } => return (valid, invalid),
        }
    }
}

/// The `--column`, `--type`, `--timezone` and `--no-reserved-check` options, read.
fn item_options(input: &InputArgs, items: &ItemArgs) -> Result<(Mapping, Reading), CliError> {
    let mapping = Mapping::parse(&input.columns, &items.types)?;
    let zone = items
        .timezone
        .as_deref()
        .map(|name| {
            name.parse::<Tz>().map_err(|_| {
                CliError::option(
                    "--timezone",
                    name,
                    "not a time zone; use an IANA name such as Asia/Seoul or UTC",
                )
            })
        })
        .transpose()?;
    let reading = Reading {
        zone,
        reserved_check: !items.no_reserved_check,
        time: TimeFormat::parse(&items.timestamp_format)?,
        ..Reading::default()
    };
    Ok((mapping, reading))
}

/// How `send` asks requests to be cut and retried.
fn sending(send: &SendArgs) -> Sending {
    Sending {
        batch: BatchConfig::default()
            .with_max_batch_size(send.batch_size)
            .with_max_in_flight(send.in_flight)
            .with_isolate_bad_requests(!send.no_isolate),
        max_attempts: Some(send.max_attempts),
        rate: rate_limit(send),
        ..Sending::default()
    }
}

/// The caps `--max-rps` and `--max-items-per-second` set.
fn rate_limit(send: &SendArgs) -> RateLimit {
    let mut rate = RateLimit::default();
    if let Some(requests) = send.max_rps {
        rate = rate.with_max_requests_per_second(requests);
    }
    if let Some(items) = send.max_items_per_second {
        rate = rate.with_max_items_per_second(items);
    }
    rate
}

/// The runtime every sending command runs on.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::file("the async runtime", e))
}
