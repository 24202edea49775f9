//! A backfill: send a long history with `deliver_until`, keep a checkpoint
//! file of your own, and resume from it after an interruption.
//!
//! The checkpoint holds the offset of the first item not yet known to be
//! delivered. Outcomes come out of order, so it advances only over a run
//! of consecutive accepted requests; a failed request holds it back, and
//! the next run sends again from there (delivery is at least once). Ctrl-C
//! asks the run to stop: no new items are taken, and what is in flight
//! gets 10 seconds to finish.
//!
//! With `MARKETAP_API_KEY` and `MARKETAP_PROJECT_ID` set it sends to the
//! real API and runs once; run it again to resume. Otherwise it uses an
//! embedded mock and shows both halves: a first run interrupted after its
//! first accepted request, then a second that resumes.
//!
//! ```sh
//! cargo run --example backfill
//! ```

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering::Relaxed},
    time::{Duration, UNIX_EPOCH},
};

use futures::{StreamExt, future, stream};
use marketap_ext::{Event, Marketap, Stop, taxonomy::event};

mod support;

/// How many events the history holds.
const HISTORY: u64 = 5_000;

#[tokio::main]
async fn main() -> ExitCode {
    let (config, mock) = support::config_or_mock();
    let client = match Marketap::new(config) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let checkpoint = std::env::temp_dir().join(format!(
        "marketap-backfill-{}.checkpoint",
        client.project_id()
    ));
    let result = if mock.is_some() {
        // A fresh demo: start from nothing, stop after the first request,
        // then resume.
        let _ = fs::remove_file(&checkpoint);
        match backfill(&client, &checkpoint, true).await {
            Ok(_) => backfill(&client, &checkpoint, false).await,
            Err(error) => Err(error),
        }
    } else {
        backfill(&client, &checkpoint, false).await
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// One run, from the checkpoint on. Returns whether the history is done.
async fn backfill(
    client: &Marketap,
    checkpoint: &Path,
    interrupt_early: bool,
) -> Result<bool, Box<dyn std::error::Error>> {
    let start = read_checkpoint(checkpoint)?;
    println!(
        "run: from offset {start} of {HISTORY} (checkpoint {})",
        checkpoint.display()
    );

    let stop = Stop::new();
    let stopping = AtomicBool::new(false);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    // Items are read lazily from `start`; the stream ends early once the
    // run is asked to stop, so nothing new is taken. Each item must map to
    // one offset: a source with bad rows validates them before this point
    // and keeps its own offsets.
    let history = stream::iter(start..HISTORY)
        .take_while(|_| future::ready(!stopping.load(Relaxed)))
        .map(history_event);
    let mut outcomes = std::pin::pin!(client.deliver_until(history, &stop));

    // Requests that ended, by their first offset, not yet contiguous with
    // the checkpoint: (end offset, accepted).
    let mut ended: BTreeMap<u64, (u64, bool)> = BTreeMap::new();
    let mut next = start;
    let mut failed = 0;
    loop {
        let outcome = tokio::select! {
            outcome = outcomes.next() => outcome,
            _ = &mut ctrl_c, if !stopping.load(Relaxed) => {
                println!("interrupted: finishing what is in flight, within 10 s");
                stopping.store(true, Relaxed);
                stop.drain(Duration::from_secs(10));
                continue;
            }
        };
        let Some(outcome) = outcome else { break };
        let first = start + outcome.offset;
        let accepted = outcome.result.is_ok();
        if let Err(batch) = &outcome.result {
            failed += batch.items.len();
            eprintln!("request at offset {first}: {}", batch.error);
        }
        ended.insert(first, (first + outcome.items() as u64, accepted));
        // Advance over consecutive accepted requests.
        while let Some(&(end, true)) = ended.get(&next) {
            ended.remove(&next);
            next = end;
        }
        write_checkpoint(checkpoint, next)?;
        if interrupt_early && accepted && !stopping.load(Relaxed) {
            println!("(demo) interrupting after the first accepted request");
            stopping.store(true, Relaxed);
            stop.drain(Duration::ZERO);
        }
    }
    let done = next == HISTORY;
    println!(
        "run: checkpoint at {next} of {HISTORY}; {failed} items not delivered{}",
        if done {
            "; the history is done"
        } else {
            "; run again to resume"
        }
    );
    if done {
        fs::remove_file(checkpoint)?;
    }
    Ok(done)
}

/// The history's event at `offset`: in a real backfill, a row of a file
/// or a table, read from an offset.
fn history_event(offset: u64) -> Event {
    Event::builder(format!("backfill-user-{}", offset % 100), event::PAGE_VIEW)
        .property("history_offset", offset)
        .timestamp(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + offset))
        .build()
        .expect("the demo history is valid")
}

fn read_checkpoint(path: &Path) -> io::Result<u64> {
    match fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Replaces the checkpoint whole (write, then rename), so a crash leaves
/// the old one or the new one, never half of one.
fn write_checkpoint(path: &Path, offset: u64) -> io::Result<()> {
    let mut partial = PathBuf::from(path);
    partial.set_extension("partial");
    fs::write(&partial, offset.to_string())?;
    fs::rename(&partial, path)
}
