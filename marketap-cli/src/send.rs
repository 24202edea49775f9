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
    fs::File,
    io::{self, BufWriter, Write},
    path::PathBuf,
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
    records::{Next, Records, Reject},
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
    rejects_written: u64,
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

/// The checkpoint for `job`, and where to start.
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
    match path {
        Some((path, identity)) => {
            let (checkpoint, start) =
                Checkpoint::open(path, command, &input.label, identity, args.restart)?;
            Ok((Some(checkpoint), start))
        }
        None => Ok((None, Start::Fresh)),
    }
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
        checkpoint_file: checkpoint.as_ref().map(|c| c.path().to_owned()),
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
    let rejects_path = args
        .rejects
        .clone()
        .unwrap_or_else(|| input.beside(".rejects.ndjson"));
    let dead_letter_path = args
        .dead_letter
        .clone()
        .unwrap_or_else(|| input.beside(".dead-letter.ndjson"));

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
                            eprintln!("marketap: {error}; stopping");
                            stop_reading();
                            problem = Some(error.to_string());
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
    drop(outcomes);
    progress.finish();
    let report = read_report
        .recv_timeout(Duration::from_secs(2))
        .unwrap_or(ReadReport {
            end: ReadEnd::Halted,
            rejects_written: 0,
        });
    if let Err(error) = dead_letters.sync() {
        eprintln!("marketap: {}: {error}", dead_letter_path.display());
    }

    summary.items = counts.items.load(Relaxed);
    summary.rejected = counts.rejected.load(Relaxed);
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
            eprintln!("marketap: {error}");
            problem.get_or_insert(error.to_string());
        }
        summary.checkpoint_line = Some(checkpoint.line());
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
    summary.failed += count as u64;
    let written = DeadLetter::new(&Undelivered::from(failed))
        .map_err(io::Error::from)
        .and_then(|letter| dead_letters.append(&letter));
    match written {
        Ok(()) => Settled::Done(offset, count),
        Err(error) => Settled::LetterFailed(format!(
            "{}: could not write a dead letter: {error}",
            dead_letters.path().display()
        )),
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
                if let Err(error) = rejects.write(&reject) {
                    end = Some(ReadEnd::Rejects(format!(
                        "{}: could not write a rejected line: {error}",
                        rejects.path.display()
                    )));
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
        if batch.len() >= HANDOVER || end.is_some() {
            if let Err(error) = rejects.flush() {
                end = Some(ReadEnd::Rejects(format!(
                    "{}: could not write a rejected line: {error}",
                    rejects.path.display()
                )));
                break;
            }
            // A failed read covers nothing past the last whole record.
            batch.push(Msg::ReadTo(records.next_line()));
            let full = std::mem::replace(&mut batch, Vec::with_capacity(HANDOVER + 1));
            if handover.blocking_send(full).is_err() {
                end.get_or_insert(ReadEnd::Halted);
            }
        }
    }
    ReadReport {
        end: end.unwrap_or(ReadEnd::Halted),
        rejects_written: rejects.written,
    }
}

/// The rejects file: created (readable by its owner only: it holds the
/// input's data) on the first reject, emptied first unless resuming.
struct Rejects {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    truncate: bool,
    written: u64,
}

impl Rejects {
    fn new(path: PathBuf, truncate: bool) -> Self {
        Self {
            path,
            file: None,
            truncate,
            written: 0,
        }
    }

    fn write(&mut self, reject: &Reject) -> io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let mut options = std::fs::OpenOptions::new();
                options.create(true);
                if self.truncate {
                    options.write(true).truncate(true);
                } else {
                    options.append(true);
                }
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                self.file.insert(BufWriter::new(options.open(&self.path)?))
            }
        };
        serde_json::to_writer(&mut *file, &reject.to_line())?;
        file.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}
