//! `marketap spool`: a spool the library left behind (see
//! `marketap_ext::spool`). `inspect` says what it holds without changing
//! it; `drain` delivers it.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use marketap_ext::spool::{self, Inspection};
use serde::Serialize;

use crate::{args::Output, error::CliError};

/// What `inspect` prints with `--output json`.
#[derive(Debug, Serialize)]
struct Inspected<'a> {
    spool: &'a Path,
    items: u64,
    bytes: u64,
    oldest: Option<String>,
    newest: Option<String>,
    corrupted: Vec<Corrupted<'a>>,
}

#[derive(Debug, Serialize)]
struct Corrupted<'a> {
    file: &'a Path,
    start: u64,
    end: u64,
}

fn time(at: Option<std::time::SystemTime>) -> Option<String> {
    at.map(|at| DateTime::<Utc>::from(at).to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// `marketap spool inspect PATH`: prints the spool's item count, bytes,
/// oldest and newest times and damaged ranges. Exit 0; a spool in use, of
/// another format version or not there is an error (exit 2).
pub fn inspect(path: &Path, output: Output) -> Result<u8, CliError> {
    let seen: Inspection = spool::inspect(path).map_err(|source| CliError::Spool {
        path: path.to_owned(),
        source,
    })?;
    let inspected = Inspected {
        spool: path,
        items: seen.items,
        bytes: seen.bytes,
        oldest: time(seen.oldest),
        newest: time(seen.newest),
        corrupted: seen
            .corrupted
            .iter()
            .map(|range| Corrupted {
                file: &range.file,
                start: range.start,
                end: range.end,
            })
            .collect(),
    };
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string(&inspected).expect("plain data serializes")
        ),
        Output::Text => {
            println!(
                "spool {}: {} items, {} bytes",
                path.display(),
                inspected.items,
                inspected.bytes
            );
            if let (Some(oldest), Some(newest)) = (&inspected.oldest, &inspected.newest) {
                println!("oldest {oldest}, newest {newest}");
            }
            if seen.corrupted.is_empty() {
                println!("no damaged ranges");
            }
            for range in &seen.corrupted {
                println!("damaged: {range} (its records are lost; the next opening sets it aside)");
            }
        }
    }
    Ok(0)
}
