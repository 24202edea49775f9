//! Sending an input, for `import` and `delete`: a reader thread reads,
//! checks and hands over records (writing rejects as it goes), and the
//! main task feeds the items to [`Marketap::deliver_until`], one outcome
//! per request. Accepted requests are done; failed ones go to the
//! dead-letter file and are done too; after each outcome the checkpoint
//! moves to the lowest line not yet done ([`Tracker`]). A 401 stops
//! reading at once. The first Ctrl-C (or SIGTERM) stops reading and gives
//! the requests in flight `--drain-timeout` to finish, the second gives up
//! on them; the checkpoint is written either way.

use std::{
    cell::{Cell, RefCell},
    io,
    path::{Path, PathBuf},
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        mpsc as std_mpsc,
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use marketap_ext::{
    Error, Marketap, RequestOutcome, Stop, Undelivered,
    dead_letter::{DeadLetter, Writer},
};
use tokio::sync::{Notify, mpsc};

use crate::{
    args::SendArgs,
    checkpoint::{Checkpoint, Start},
    error::{CliError, Exit},
    input::Input,
    kinds::Kind,
    progress::{Counts, Progress, TICK},
    records::{Next, Records},
    rejects::Rejects,
    signals::Signals,
    summary::Summary,
    tracker::Tracker,
};

/// Records the reader hands over at once.
const HANDOVER: usize = 256;
/// Handovers waiting in the channel, at most.
const CHANNEL: usize = 4;

/// What the reader hands to the main task, in input order.
enum Msg<T> {
    /// An item and its line.
    Item(u64, T),
    /// Every line before this one was read and handed over; its rejects
    /// are written.
    ReadTo(u64),
}

/// Why the reader stopped.
#[derive(Debug)]
enum ReadEnd {
    /// The end of the input.
    End,
    /// It was told to stop (Ctrl-C, a 401), or nobody took its items.
    Halted,
    /// `--max-errors` invalid lines.
    MaxErrors(u64),
    /// The input could not be read further.
    Failed { line: u64, error: String },
    /// The rejects file could not be written.
    Rejects(String),
}

/// What the reader did.
struct ReadReport {
    end: ReadEnd,
    /// Rejects on disk.
    rejects_written: u64,
    /// Items read but not handed over, after a reject that was lost.
    not_sent: u64,
}

/// Counts the reader keeps, read by the progress display.
#[derive(Default)]
struct ReadCounts {
    items: AtomicU64,
    rejected: AtomicU64,
}

/// One sending run.
pub struct Job<'a> {
    /// `import events`, `delete users`...
    pub command: &'a str,
    /// The opened input.
    pub input: Input,
    /// How to send, and where failures go.
    pub args: &'a SendArgs,
    /// The client.
    pub client: Marketap,
    /// No progress output.
    pub quiet: bool,
}

/// Where the rejects and the dead letters of `input` go.
fn outputs(input: &Input, args: &SendArgs) -> (PathBuf, PathBuf) {
    let rejects = args
        .rejects
        .clone()
        .unwrap_or_else(|| input.beside(".rejects.ndjson"));
    let dead_letters = args
        .dead_letter
        .clone()
        .unwrap_or_else(|| input.beside(".dead-letter.ndjson"));
    (rejects, dead_letters)
}

/// Checks that `path` can be written without writing it: an existing
/// file opens for appending, and a missing one can be created in its
/// directory (it is created and removed at once).
pub fn probe(path: &Path) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => Err(io::Error::other("it is a directory")),
        Ok(_) => std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            std::fs::remove_file(path)
        }
        Err(error) => Err(error),
    }
}

/// Before the first request: every file the run may write can be written.
fn preflight(
    input: &Input,
    args: &SendArgs,
    checkpoint: Option<&Checkpoint>,
) -> Result<(), CliError> {
    let (rejects, dead_letters) = outputs(input, args);
    let mut paths = vec![
        ("rejects file", rejects),
        ("dead-letter file", dead_letters),
    ];
    if let Some(checkpoint) = checkpoint {
        paths.push(("checkpoint", checkpoint.temp_path()));
    }
    for (what, path) in paths {
        probe(&path).map_err(|source| CliError::Unwritable { what, path, source })?;
    }
    Ok(())
}

/// The checkpoint for `job`, and where to start, once every file the run
/// may write is known to be writable.
pub fn checkpoint(
    input: &Input,
    args: &SendArgs,
    command: &str,
) -> Result<(Option<Checkpoint>, Start), CliError> {
    let path = match (&args.checkpoint, input.identity) {
        (Some(path), None) => {
            return Err(CliError::option(
                "--checkpoint",
                &path.display().to_string(),
                "stdin cannot be resumed; give the input as a file",
            ));
        }
        (Some(path), Some(identity)) => Some((path.clone(), identity)),
        (None, Some(identity)) => Some((input.beside(".checkpoint"), identity)),
        (None, None) => None,
    };
    let (checkpoint, start) = match path {
        Some((path, identity)) => {
            let (checkpoint, start) = Checkpoint::open(
                path,
                command,
                &input.label,
                identity,
                args.restart,
                input.prefix_source(),
            )?;
            (Some(checkpoint), start)
        }
        None => (None, Start::Fresh),
    };
    preflight(input, args, checkpoint.as_ref())?;
    Ok((checkpoint, start))
}

/// Sends every record of `records` (read from `job.input`, which it
/// started at `start`), and says how it went.
pub async fn run<T: Kind>(
    job: Job<'_>,
    records: Records<T>,
    mut checkpoint: Option<Checkpoint>,
    start: Start,
) -> Result<Summary, CliError> {
    let started = Instant::now();
    let Job {
        command,
        input,
        args,
        client,
        quiet,
    } = job;
    let mut summary = Summary {
        command: command.to_owned(),
        input: input.label.clone(),
        checkpoint_file: checkpoint
            .as_ref()
            .filter(|c| c.on_disk().is_some())
            .map(|c| c.path().to_owned()),
        ..Summary::default()
    };
    if start == Start::Complete {
        summary.already_complete = true;
        summary.exit(Exit::Success);
        return Ok(summary);
    }
    if let Start::Resume(line) = start {
        summary.resumed_from_line = Some(line);
    }
    let (rejects_path, dead_letter_path) = outputs(&input, args);
    // The checkpoint is written before the first request: a checkpoint
    // that cannot be written is found now, not after the input is sent,
    // and a restart leaves no stale one behind.
    if let Some(checkpoint) = &mut checkpoint {
        checkpoint
            .save(start.line(), false)
            .map_err(|source| CliError::Unwritable {
                what: "checkpoint",
                path: checkpoint.path().to_owned(),
                source,
            })?;
    }

    let halt_reading = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(ReadCounts::default());
    let (handover, received) = mpsc::channel::<Vec<Msg<T>>>(CHANNEL);
    let (report_to, read_report) = std_mpsc::channel();
    {
        let rejects = Rejects::new(rejects_path.clone(), start == Start::Fresh);
        let halt = halt_reading.clone();
        let counts = counts.clone();
        let max_errors = args.max_errors;
        std::thread::Builder::new()
            .name("marketap-reader".into())
            .spawn(move || {
                let report = read(records, handover, rejects, &halt, &counts, max_errors);
                let _ = report_to.send(report);
            })
            .map_err(|e| CliError::file("a reader thread", e))?;
    }

    let window = args.in_flight * args.batch_size;
    let tracker = Rc::new(RefCell::new(Tracker::new(start.line(), window)));
    let room = Rc::new(Notify::new());
    let halt = Rc::new(Cell::new(false));
    let items = feed(received, tracker.clone(), room.clone(), halt.clone());
    let stop = Stop::new();
    let mut outcomes = Box::pin(client.deliver_until(items, &stop));
    let mut signals = Signals::new().map_err(|e| CliError::file("signal handlers", e))?;
    let mut progress = Progress::new(quiet, input.size);
    let mut tick = tokio::time::interval(TICK);
    let mut dead_letters = Writer::new(&dead_letter_path);
    let dead_letters_existed = dead_letter_path.exists();
    let drain = Duration::try_from_secs_f64(args.drain_timeout).unwrap_or(Duration::MAX);

    let mut interrupted = false;
    let mut unauthorized: Option<String> = None;
    let mut problem: Option<String> = None;
    let mut saved_line = start.line();
    let stop_reading = || {
        halt.set(true);
        halt_reading.store(true, Relaxed);
        room.notify_one();
    };
    loop {
        tokio::select! {
            biased;
            outcome = outcomes.next() => {
                let Some(outcome) = outcome else { break };
                let done = settle(outcome, &mut summary, &mut dead_letters);
                match done {
                    Settled::Done(offset, count) => tracker.borrow_mut().complete(offset, count),
                    Settled::NotDone => {}
                    Settled::Unauthorized(error) => {
                        if unauthorized.is_none() {
                            stop_reading();
                            unauthorized = Some(error);
                        }
                    }
                    Settled::LetterFailed(error) => {
                        if problem.is_none() {
                            eprintln!("marketap: {error}; stopping (the checkpoint stays before these items)");
                            stop_reading();
                            problem = Some(error);
                        }
                    }
                }
                room.notify_one();
                let line = tracker.borrow().checkpoint();
                if line > saved_line
                    && let Some(checkpoint) = &mut checkpoint
                {
                    if let Err(error) = checkpoint.save(line, false) {
                        if problem.is_none() {
                            let error = format!(
                                "{}: could not update the checkpoint: {error}",
                                checkpoint.path().display()
                            );
                            eprintln!("marketap: {error}; stopping");
                            stop_reading();
                            problem = Some(error);
                        }
                    } else {
                        saved_line = line;
                    }
                }
            }
            () = signals.next() => {
                if interrupted {
                    eprintln!("marketap: giving up on the requests in flight");
                    stop.drain(Duration::ZERO);
                } else {
                    interrupted = true;
                    stop_reading();
                    stop.drain(drain);
                    eprintln!(
                        "marketap: interrupted: reading stopped; waiting up to {drain:?} for \
                         {} items in flight (Ctrl-C again to stop at once)",
                        tracker.borrow().in_flight()
                    );
                }
            }
            _ = tick.tick() => progress.update(Counts {
                bytes: input.read_bytes.load(Relaxed),
                items: counts.items.load(Relaxed),
                accepted: summary.accepted,
                rejected: counts.rejected.load(Relaxed),
                failed: summary.failed,
            }),
        }
    }
    let stats = outcomes.stats();
    summary.isolated = stats.isolated;
    summary.isolation_requests = stats.isolation_requests;
    summary.throttled = stats.throttled;
    summary.learned_rate = outcomes.learned_rate();
    drop(outcomes);
    progress.finish();
    let report = read_report
        .recv_timeout(Duration::from_secs(2))
        .unwrap_or(ReadReport {
            end: ReadEnd::Halted,
            rejects_written: 0,
            not_sent: 0,
        });
    if let Err(error) = dead_letters.sync() {
        eprintln!("marketap: {}: {error}", dead_letter_path.display());
    }
    // A first letter that did not fit is cut back to nothing: the file
    // this run created goes too, so that it is whole or absent.
    if dead_letters.letters() == 0
        && !dead_letters_existed
        && std::fs::metadata(&dead_letter_path).is_ok_and(|m| m.len() == 0)
    {
        let _ = std::fs::remove_file(&dead_letter_path);
    }

    summary.items = counts.items.load(Relaxed);
    // Only what is on disk: a reject that was not written is read again
    // by a rerun, from the checkpoint that stays before it.
    summary.rejected = report.rejects_written;
    summary.not_sent += report.not_sent;
    summary.rejects_file = (report.rejects_written > 0).then_some(rejects_path);
    summary.dead_letter_file = (dead_letters.letters() > 0).then_some(dead_letter_path);
    let tracker = tracker.borrow();
    let complete = matches!(report.end, ReadEnd::End)
        && !interrupted
        && unauthorized.is_none()
        && problem.is_none()
        && tracker.in_flight() == 0;
    if let Some(checkpoint) = &mut checkpoint {
        let line = tracker.checkpoint();
        if let Err(error) = checkpoint.save(line, complete) {
            let error = format!(
                "{}: could not update the checkpoint: {error}",
                checkpoint.path().display()
            );
            eprintln!("marketap: {error}");
            problem.get_or_insert(error);
        }
        // Only a file that is there, and the line it holds.
        summary.checkpoint_line = checkpoint.on_disk();
        summary.checkpoint_file = checkpoint.on_disk().map(|_| checkpoint.path().to_owned());
        summary.checkpoint_error = checkpoint.failure().map(str::to_owned);
    }
    let elapsed = started.elapsed().as_secs_f64();
    summary.elapsed_secs = elapsed;
    summary.items_per_sec = summary.items as f64 / elapsed.max(1e-6);

    let resume_hint = summary.checkpoint_line.map_or_else(String::new, |line| {
        format!("; run it again to resume from line {line}")
    });
    let exit = if let Some(error) = unauthorized {
        eprintln!(
            "marketap: the API key or project was not accepted ({error}); nothing more was \
             sent. Check MARKETAP_API_KEY (or --api-key-file) and the project{resume_hint}"
        );
        summary.stopped = Some(format!("unauthorized: {error}"));
        Exit::Unauthorized
    } else if interrupted {
        summary.stopped = Some("interrupted".to_owned());
        Exit::Interrupted
    } else {
        match report.end {
            ReadEnd::End | ReadEnd::Halted => {}
            ReadEnd::MaxErrors(n) => {
                summary.stopped = Some(format!("{n} invalid lines (--max-errors)"));
            }
            ReadEnd::Failed { line, error } => {
                eprintln!(
                    "marketap: {}: reading stopped at line {line}: {error}",
                    input.label
                );
                summary.stopped = Some(format!("reading stopped at line {line}: {error}"));
            }
            ReadEnd::Rejects(error) => {
                eprintln!("marketap: {error}");
                summary.stopped = Some(error);
            }
        }
        if let Some(problem) = problem {
            summary.stopped.get_or_insert(problem);
        }
        if summary.stopped.is_some() || summary.rejected > 0 || summary.failed > 0 {
            Exit::Partial
        } else {
            Exit::Success
        }
    };
    summary.exit(exit);
    Ok(summary)
}

/// What an outcome means for its items.
enum Settled {
    /// They are done: accepted, or in the dead-letter file.
    Done(u64, usize),
    /// Not done: a rerun sends them.
    NotDone,
    /// A 401.
    Unauthorized(String),
    /// Failed, and the dead letter could not be written.
    LetterFailed(String),
}

/// Counts an outcome and writes its dead letter if it failed.
fn settle<T: Kind>(
    outcome: RequestOutcome<T>,
    summary: &mut Summary,
    dead_letters: &mut Writer,
) -> Settled {
    let (offset, count) = (outcome.offset, outcome.items());
    let attempts = match &outcome.result {
        Ok(accepted) => accepted.attempts,
        Err(failed) => failed.attempts,
    };
    summary.requests += u64::from(attempts > 0);
    summary.retries += u64::from(attempts.saturating_sub(1));
    let failed = match outcome.result {
        Ok(_) => {
            summary.accepted += count as u64;
            return Settled::Done(offset, count);
        }
        Err(failed) => failed,
    };
    match &failed.error {
        Error::Unauthorized { .. } => {
            summary.not_sent += count as u64;
            return Settled::Unauthorized(failed.error.to_string());
        }
        Error::Cancelled => {
            summary.not_sent += count as u64;
            return Settled::NotDone;
        }
        _ => {}
    }
    let written = DeadLetter::new(&Undelivered::from(failed))
        .map_err(io::Error::from)
        .and_then(|letter| dead_letters.append(&letter));
    // Counted as failed only once the letter is on disk; otherwise a rerun
    // sends the items again.
    match written {
        Ok(()) => {
            summary.failed += count as u64;
            Settled::Done(offset, count)
        }
        Err(error) => {
            summary.not_sent += count as u64;
            Settled::LetterFailed(format!(
                "{}: could not write a dead letter: {error}",
                dead_letters.path().display()
            ))
        }
    }
}

/// The items the reader hands over, as a stream, recording each item's
/// line in `tracker` and never running more than its window ahead of the
/// checkpoint. Ends when the reader does, or at once on `halt`.
fn feed<T: Kind>(
    received: mpsc::Receiver<Vec<Msg<T>>>,
    tracker: Rc<RefCell<Tracker>>,
    room: Rc<Notify>,
    halt: Rc<Cell<bool>>,
) -> impl futures::Stream<Item = T> {
    struct Feed<T> {
        received: mpsc::Receiver<Vec<Msg<T>>>,
        buffered: std::vec::IntoIter<Msg<T>>,
        tracker: Rc<RefCell<Tracker>>,
        room: Rc<Notify>,
        halt: Rc<Cell<bool>>,
    }
    let feed = Feed {
        received,
        buffered: Vec::new().into_iter(),
        tracker,
        room,
        halt,
    };
    stream::unfold(feed, |mut feed| async move {
        loop {
            if feed.halt.get() {
                return None;
            }
            let full = feed.tracker.borrow().is_full();
            if full {
                feed.room.notified().await;
                continue;
            }
            match feed.buffered.next() {
                Some(Msg::Item(line, item)) => {
                    feed.tracker.borrow_mut().push(line);
                    return Some((item, feed));
                }
                Some(Msg::ReadTo(line)) => feed.tracker.borrow_mut().read_to(line),
                None => match feed.received.recv().await {
                    Some(batch) => feed.buffered = batch.into_iter(),
                    None => return None,
                },
            }
        }
    })
}

/// The reader thread: reads records, writes rejects, hands items over.
/// A reject that cannot be written stops reading: the items after it are
/// not handed over and the read mark stays on its line, so that the
/// checkpoint never passes a line that is neither sent nor on disk.
fn read<T: Kind>(
    mut records: Records<T>,
    handover: mpsc::Sender<Vec<Msg<T>>>,
    mut rejects: Rejects,
    halt: &AtomicBool,
    counts: &ReadCounts,
    max_errors: Option<u64>,
) -> ReadReport {
    let mut batch = Vec::with_capacity(HANDOVER + 1);
    let mut end = None;
    let mut lost = None;
    let mut dropped = 0;
    while end.is_none() {
        if halt.load(Relaxed) {
            end = Some(ReadEnd::Halted);
            break;
        }
        match records.next() {
            Next::Item(line, item) => {
                counts.items.fetch_add(1, Relaxed);
                batch.push(Msg::Item(line, item));
            }
            Next::Reject(reject) => {
                let rejected = counts.rejected.fetch_add(1, Relaxed) + 1;
                if let Err(error) = rejects.push(&reject) {
                    lost = Some(error);
                } else if max_errors.is_some_and(|max| rejected >= max) {
                    end = Some(ReadEnd::MaxErrors(rejected));
                }
            }
            Next::End => end = Some(ReadEnd::End),
            Next::Failed { line, error } => {
                end = Some(ReadEnd::Failed {
                    line,
                    error: error.to_string(),
                })
            }
        }
        if batch.len() >= HANDOVER || end.is_some() || lost.is_some() {
            if lost.is_none()
                && let Err(error) = rejects.flush()
            {
                lost = Some(error);
            }
            let read_to = match &lost {
                None => records.next_line(),
                Some(lost) => {
                    let before = batch.len();
                    batch.retain(|msg| matches!(msg, Msg::Item(line, _) if *line < lost.line));
                    dropped += (before - batch.len()) as u64;
                    end = Some(ReadEnd::Rejects(format!(
                        "{}: could not write a rejected line: {}",
                        rejects.path().display(),
                        lost.error
                    )));
                    lost.line
                }
            };
            batch.push(Msg::ReadTo(read_to));
            let full = std::mem::replace(&mut batch, Vec::with_capacity(HANDOVER + 1));
            if handover.blocking_send(full).is_err() {
                end.get_or_insert(ReadEnd::Halted);
            }
        }
    }
    counts.items.fetch_sub(dropped, Relaxed);
    let rejects_written = rejects.written();
    rejects.close();
    ReadReport {
        end: end.unwrap_or(ReadEnd::Halted),
        rejects_written,
        not_sent: dropped,
    }
}
