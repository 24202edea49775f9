//! `marketap spool`: a spool the library left behind (see
//! `marketap_ext::spool`). `inspect` says what it holds without changing
//! it; `drain` delivers it.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use chrono::{DateTime, SecondsFormat, Utc};
use marketap_ext::{
    IngestorConfig, Marketap,
    spool::{self, Inspection, SpoolConfig},
};
use serde::Serialize;

use crate::{
    args::Output,
    error::{CliError, Exit},
    progress::{Counts, Progress, TICK},
    signals::Signals,
    summary::Summary,
};

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

/// What `drain` needs from the command line.
pub struct Drain<'a> {
    /// The spool's directory.
    pub path: &'a Path,
    /// Where requests that finally fail go.
    pub dead_letter: PathBuf,
    /// The client, with the key and project.
    pub client: Marketap,
    /// Stop after this long with what is left still in the spool.
    pub max_time: Option<Duration>,
    /// How long requests in flight may take to finish at the end.
    pub drain_timeout: Duration,
    /// No progress output.
    pub quiet: bool,
}

/// `marketap spool drain PATH`: delivers what the spool holds through an
/// ingestor opened on it, with progress, a summary, dead letters and the
/// usual exit codes: 0 when the spool is empty and everything was
/// accepted; 1 when some items failed (in the dead-letter file) or
/// `--max-time` passed with items left in the spool; 3 at a 401 (the items
/// stay in the spool); 130 when interrupted (the rest stays in the spool).
pub async fn drain(job: Drain<'_>) -> Result<Summary, CliError> {
    let Drain {
        path,
        dead_letter,
        client,
        max_time,
        drain_timeout,
        quiet,
    } = job;
    let started = Instant::now();
    let before = spool::inspect(path).map_err(|source| CliError::Spool {
        path: path.to_owned(),
        source,
    })?;
    let config = IngestorConfig::default()
        .with_spool(SpoolConfig::new(path))
        .with_dead_letter_path(&dead_letter);
    let ingestor = client.ingestor(config)?;
    let mut signals = Signals::new().map_err(|e| CliError::file("the signal handlers", e))?;
    let mut progress = Progress::new(quiet, Some(before.bytes));
    let mut summary = Summary {
        command: "spool drain".to_owned(),
        input: path.display().to_string(),
        items: before.items,
        ..Summary::default()
    };
    let exit = loop {
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = signals.next() => {
                summary.stopped = Some("interrupted".to_owned());
                break Exit::Interrupted;
            }
        }
        let metrics = ingestor.metrics();
        progress.update(Counts {
            bytes: before.bytes.saturating_sub(metrics.spooled_bytes),
            items: before.items,
            accepted: metrics.delivered,
            rejected: 0,
            failed: metrics.failed,
        });
        if metrics.spool_unauthorized > 0 {
            summary.stopped = Some(
                "the server refused the API key or project (401); the items stay in the spool"
                    .to_owned(),
            );
            break Exit::Unauthorized;
        }
        // Until the ingestor has checked the spool's records (on its
        // storage thread), `spooled` counts none of them: what `inspect`
        // found must be accounted for too.
        if metrics.spooled == 0 && metrics.delivered + metrics.failed >= before.items {
            break if metrics.failed > 0 {
                Exit::Partial
            } else {
                Exit::Success
            };
        }
        if max_time.is_some_and(|max| started.elapsed() >= max) {
            summary.stopped = Some(format!(
                "--max-time passed with {} items still in the spool ({} failing for now)",
                metrics.spooled, metrics.spool_waiting
            ));
            break Exit::Partial;
        }
    };
    progress.finish();
    let report = ingestor.shutdown(drain_timeout).await;
    let metrics = ingestor.metrics();
    summary.accepted = report.delivered;
    summary.failed = metrics.failed;
    summary.not_sent = report.spooled;
    summary.retries = metrics.retried;
    summary.isolated = metrics.isolated;
    summary.isolation_requests = metrics.isolation_requests;
    if metrics.failed > 0 {
        summary.dead_letter_file = Some(dead_letter);
    }
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    summary.items_per_sec = report.delivered as f64 / summary.elapsed_secs.max(1e-9);
    let exit = if exit == Exit::Success && report.spooled > 0 {
        Exit::Partial
    } else {
        exit
    };
    summary.exit(exit);
    Ok(summary)
}
