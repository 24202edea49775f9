//! `marketap resend`: sends each letter of a dead-letter file again (one
//! request per letter, a few at once). Letters that fail again, and those
//! not sent because the run stopped (a 401, Ctrl-C), go to another
//! dead-letter file that `resend` takes in turn; the file given is never
//! changed. Lines that are not letters are reported and left where they
//! are.
//!
//! The file is read on a blocking thread, a few letters ahead of the sends
//! (a bounded channel), so a slow disk never stalls the requests in flight.

use std::{cell::Cell, path::PathBuf, time::Instant};

use futures::{StreamExt, stream};
use marketap_ext::{
    Error, Marketap,
    dead_letter::{self, DeadLetter, LetterError, Letters, Writer},
};
use tokio::sync::mpsc;

use crate::{
    error::{CliError, Exit},
    signals::Signals,
    summary::Summary,
};

/// Items in a letter's body.
fn items(letter: &DeadLetter) -> u64 {
    letter
        .body
        .as_object()
        .and_then(|body| body.values().find_map(|v| v.as_array()))
        .map_or(0, |items| items.len() as u64)
}

/// How one letter went.
enum Sent {
    Accepted(usize),
    Failed(DeadLetter, Error),
    Unreadable(LetterError),
    /// Read after the run stopped: not sent.
    Halted(DeadLetter),
}

/// A letter as read: the letter, or the line that is not one.
type Read = Result<DeadLetter, LetterError>;

/// Reads `letters` on a blocking thread, at most `ahead` letters ahead of
/// the receiver. The thread ends at the end of the file, or once the
/// receiver is dropped.
fn read_ahead(letters: Letters, ahead: usize) -> mpsc::Receiver<Read> {
    let (read, receiver) = mpsc::channel(ahead);
    tokio::task::spawn_blocking(move || {
        for letter in letters {
            if read.blocking_send(letter).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Resends the letters of `file`; what still fails goes to `remaining`.
pub async fn run(
    file: PathBuf,
    remaining: PathBuf,
    client: Marketap,
    in_flight: usize,
) -> Result<Summary, CliError> {
    let started = Instant::now();
    let label = file.display().to_string();
    let metadata = std::fs::metadata(&file).map_err(|e| CliError::file(&file, e))?;
    if metadata.is_dir() {
        return Err(CliError::Directory { path: file });
    }
    if metadata.len() == 0 {
        return Err(CliError::Empty {
            label,
            verb: "resend",
        });
    }
    let letters = dead_letter::read(&file).map_err(|e| CliError::file(&file, e))?;
    let mut letters = read_ahead(letters, in_flight.max(1));
    let mut summary = Summary {
        command: "resend".to_owned(),
        input: label.clone(),
        ..Summary::default()
    };
    let mut out = Writer::new(&remaining);
    let mut signals = Signals::new().map_err(|e| CliError::file("signal handlers", e))?;
    let halt = Cell::new(false);
    let mut interrupted = false;
    let mut unauthorized = None;
    let mut write_failure = None;

    {
        let halt = &halt;
        let next_letters = stream::unfold(&mut letters, |letters| async move {
            if halt.get() {
                return None;
            }
            letters.recv().await.map(|letter| (letter, letters))
        });
        let mut sends = std::pin::pin!(
            next_letters
                .map(|letter| {
                    let client = client.clone();
                    async move {
                        match letter {
                            // Received while the run was stopping.
                            Ok(letter) if halt.get() => Sent::Halted(letter),
                            Ok(letter) => match client.resend(&letter).await {
                                Ok(accepted) => Sent::Accepted(accepted),
                                Err(error) => Sent::Failed(letter, error),
                            },
                            Err(bad) => Sent::Unreadable(bad),
                        }
                    }
                })
                .buffer_unordered(in_flight.max(1))
        );
        loop {
            tokio::select! {
                biased;
                sent = sends.next() => {
                    let Some(sent) = sent else { break };
                    match sent {
                        Sent::Accepted(accepted) => {
                            summary.requests += 1;
                            summary.accepted += accepted as u64;
                        }
                        Sent::Failed(mut letter, error) => {
                            let count = items(&letter);
                            if matches!(error, Error::Unauthorized { .. }) {
                                summary.not_sent += count;
                                halt.set(true);
                                unauthorized.get_or_insert(error.to_string());
                            } else {
                                summary.failed += count;
                                letter.error = error.to_string();
                                letter.status = error.status();
                            }
                            summary.requests += u64::from(error.status().is_some());
                            if let Err(e) = out.append(&letter) {
                                write_failure.get_or_insert(e.to_string());
                                halt.set(true);
                            }
                        }
                        Sent::Unreadable(bad) => {
                            summary.rejected += 1;
                            eprintln!("marketap: {label}: {bad} (left in {label})");
                        }
                        Sent::Halted(letter) => {
                            summary.not_sent += items(&letter);
                            if let Err(e) = out.append(&letter) {
                                write_failure.get_or_insert(e.to_string());
                            }
                        }
                    }
                }
                () = signals.next() => {
                    if !interrupted {
                        eprintln!("marketap: interrupted: no more letters are sent; waiting for those in flight");
                    }
                    interrupted = true;
                    halt.set(true);
                }
            }
        }
    }
    // Letters never sent go to the remaining file as they are.
    while let Some(letter) = letters.recv().await {
        match letter {
            Ok(letter) => {
                summary.not_sent += items(&letter);
                if let Err(e) = out.append(&letter) {
                    write_failure.get_or_insert(e.to_string());
                }
            }
            Err(_) => summary.rejected += 1,
        }
    }
    if let Err(e) = out.sync() {
        write_failure.get_or_insert(e.to_string());
    }
    summary.items = summary.accepted + summary.failed + summary.not_sent;
    summary.dead_letter_file = (out.letters() > 0).then_some(remaining.clone());
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    summary.items_per_sec = summary.items as f64 / summary.elapsed_secs.max(1e-6);
    let exit = if let Some(error) = unauthorized {
        eprintln!(
            "marketap: the API key or project was not accepted ({error}); the letters not \
             resent are in {}",
            remaining.display()
        );
        summary.stopped = Some(format!("unauthorized: {error}"));
        Exit::Unauthorized
    } else if interrupted {
        summary.stopped = Some("interrupted".to_owned());
        Exit::Interrupted
    } else if let Some(error) = write_failure {
        eprintln!("marketap: {}: {error}", remaining.display());
        summary.stopped = Some(format!("{}: {error}", remaining.display()));
        Exit::Partial
    } else if summary.failed + summary.rejected + summary.not_sent > 0 {
        Exit::Partial
    } else {
        Exit::Success
    };
    summary.exit(exit);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LETTER: &str = r#"{"operation":"collect_bulk_user_events","error":"x","status":400,"attempts":1,"body":{"events":[{"user_id":"u","event_name":"e"}]}}"#;

    fn file(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("marketap-resend-{name}-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    // One thread: the reader must not need the runtime's worker to go on.
    #[tokio::test(flavor = "current_thread")]
    async fn letters_are_read_ahead_in_order_one_result_per_line() {
        let path = file("order", &format!("{LETTER}\nnot a letter\n{LETTER}\n"));
        let mut read = read_ahead(dead_letter::read(&path).unwrap(), 1);
        let mut lines = Vec::new();
        while let Some(letter) = read.recv().await {
            lines.push(letter.map(|letter| items(&letter)).map_err(|bad| bad.line));
        }
        assert_eq!(lines, [Ok(1), Err(2), Ok(1)]);
        std::fs::remove_file(&path).unwrap();
    }
}
