//! The ingestor's dead-letter file, written on a thread of its own.
//!
//! Writing and syncing a file blocks. On a Tokio worker, a slow disk would
//! stall every task of that worker, the caller's request handlers
//! included; so the [`Writer`] lives on one thread that owns it, fed by a
//! channel, and nothing on the runtime ever waits for the disk without
//! yielding. One thread rather than `spawn_blocking` per letter: letters
//! reach the file in the order they were handed over and a sync follows
//! the letters before it, with no lock; the runtime's blocking pool is
//! left to the caller; and the thread outlives the runtime, so letters
//! handed over while the runtime shuts down are still written.
//!
//! Each job says what to do once it is done: an append hands over whether
//! the letter is in the file, a sync wakes its waiters. What a job holds
//! (the ingestor's room for the letter's items, see
//! [`Failures::hand_over`](super::report::Failures::hand_over)) is dropped
//! once it is done, so the memory of letters waiting for the disk stays
//! within the ingestor's capacity. A panic while writing (a bug in a
//! `tracing` subscriber, say) is caught and logged, the letter counts as
//! not written, and the thread goes on. The thread ends, after a last
//! sync, when the ingestor's last part is dropped.

use std::{
    panic::AssertUnwindSafe,
    path::PathBuf,
    sync::mpsc::{self, Receiver, Sender},
};

use tokio::sync::oneshot;

use crate::{
    dead_letter::{DeadLetter, Writer},
    delivery::panic_message,
};

/// Told whether the letter is in the file, once the write is done.
pub(super) type Then = Box<dyn FnOnce(bool) + Send>;

enum Job {
    Append {
        letter: DeadLetter,
        items: usize,
        then: Then,
    },
    /// Make what was appended durable, then wake the waiters (by dropping
    /// their senders).
    Sync(Vec<oneshot::Sender<()>>),
}

/// A handle on the writing thread; the thread ends when it is dropped.
pub(super) struct Letters {
    path: PathBuf,
    /// None when the thread could not be started.
    jobs: Option<Sender<Job>>,
}

impl Letters {
    /// Starts the thread that owns `writer`.
    pub(super) fn start(writer: Writer) -> Self {
        let path = writer.path().to_owned();
        let (jobs, queue) = mpsc::channel();
        let started = std::thread::Builder::new()
            .name("marketap-dead-letters".to_owned())
            .spawn(move || run(writer, queue));
        let jobs = match started {
            Ok(_) => Some(jobs),
            Err(error) => {
                tracing::error!(
                    path = %path.display(),
                    %error,
                    "could not start the thread that writes the dead-letter file; no letter will be written"
                );
                None
            }
        };
        Self { path, jobs }
    }

    /// Queues `letter` (of `items` items) and returns at once; `then` is
    /// told on the writing thread whether it reached the file.
    pub(super) fn append(&self, letter: DeadLetter, items: usize, then: Then) {
        let job = Job::Append {
            letter,
            items,
            then,
        };
        if let Err(mpsc::SendError(Job::Append { then, .. })) = self.send(job) {
            tracing::error!(
                path = %self.path.display(),
                items,
                "could not write the dead-letter file: its thread is not running"
            );
            then(false);
        }
    }

    /// Makes every letter queued so far durable, then wakes `waiters`; at
    /// once if the thread is gone.
    pub(super) fn sync(&self, waiters: Vec<oneshot::Sender<()>>) {
        // A job that cannot be sent is dropped here, waking its waiters.
        let _ = self.send(Job::Sync(waiters));
    }

    /// [`sync`](Self::sync), waiting for it without blocking.
    pub(super) async fn synced(&self) {
        let (done, waiter) = oneshot::channel();
        self.sync(vec![done]);
        // A dropped sender (the sync is done, or the thread is gone) ends
        // the wait.
        let _ = waiter.await;
    }

    fn send(&self, job: Job) -> Result<(), mpsc::SendError<Job>> {
        match &self.jobs {
            Some(jobs) => jobs.send(job),
            None => Err(mpsc::SendError(job)),
        }
    }
}

/// The thread: every job in turn, until the last handle is dropped.
fn run(mut writer: Writer, queue: Receiver<Job>) {
    for job in queue {
        // A panic in one job (from a `tracing` subscriber, or `then`) must
        // not stop the letters after it.
        let done = std::panic::catch_unwind(AssertUnwindSafe(|| work(&mut writer, job)));
        if let Err(panic) = done {
            let panic = panic_message(&*panic);
            let _ = std::panic::catch_unwind(|| {
                tracing::error!(%panic, "marketap ingestor: the dead-letter thread panicked; it goes on");
            });
        }
    }
    if let Err(error) = writer.sync() {
        tracing::error!(path = %writer.path().display(), %error, "could not sync the dead-letter file");
    }
}

fn work(writer: &mut Writer, job: Job) {
    match job {
        Job::Append {
            letter,
            items,
            then,
        } => {
            let written = std::panic::catch_unwind(AssertUnwindSafe(|| writer.append(&letter)))
                .unwrap_or_else(|panic| {
                    Err(std::io::Error::other(format!(
                        "panicked while writing: {}",
                        panic_message(&*panic)
                    )))
                });
            if let Err(error) = &written {
                tracing::error!(
                    path = %writer.path().display(),
                    items,
                    %error,
                    "could not write the dead-letter file"
                );
            }
            then(written.is_ok());
        }
        Job::Sync(waiters) => {
            if let Err(error) = writer.sync() {
                tracing::error!(path = %writer.path().display(), %error, "could not sync the dead-letter file");
            }
            drop(waiters);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    };

    use super::*;
    use crate::{Error, Event, lock::lock, model::kind::Undelivered, report::FailedBatch};

    fn letter(user: &str) -> DeadLetter {
        DeadLetter::new(&Undelivered::Events(FailedBatch {
            items: vec![Event::builder(user, "e").build().unwrap()],
            error: Error::Cancelled,
            attempts: 0,
        }))
        .unwrap()
    }

    fn temp_path(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "marketap-letters-{name}-{}.ndjson",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        path
    }

    /// What each `then` was told, in order: the letter's user, and
    /// whether it was written.
    type Told = Arc<Mutex<Vec<(String, bool)>>>;

    /// Records what each `then` is told.
    fn recorder() -> (Told, impl Fn(&str) -> Then) {
        let told = Arc::new(Mutex::new(Vec::new()));
        let sink = told.clone();
        let then = move |name: &str| -> Then {
            let (sink, name) = (sink.clone(), name.to_owned());
            Box::new(move |written| lock(&sink).push((name, written)))
        };
        (told, then)
    }

    #[tokio::test]
    async fn letters_are_written_in_order_and_a_sync_waits_for_them() {
        let path = temp_path("order");
        let letters = Letters::start(Writer::new(&path));
        let (told, then) = recorder();
        for user in ["a", "b", "c"] {
            letters.append(letter(user), 1, then(user));
        }
        letters.synced().await;
        let expected: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|user| (user.to_owned(), true))
            .collect();
        assert_eq!(*lock(&told), expected);
        let users: Vec<String> = crate::dead_letter::read(&path)
            .unwrap()
            .map(|letter| letter.unwrap().body["events"][0]["user_id"].to_string())
            .collect();
        assert_eq!(users, [r#""a""#, r#""b""#, r#""c""#]);
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn a_failed_write_is_told_and_a_panic_does_not_stop_the_thread() {
        let path = temp_path("panic");
        let writes = Arc::new(AtomicUsize::new(0));
        let counted = writes.clone();
        let writer = Writer::new(&path).before_each_write(move || {
            if counted.fetch_add(1, SeqCst) == 0 {
                panic!("a bug while writing");
            }
        });
        let letters = Letters::start(writer);
        let (told, then) = recorder();
        letters.append(letter("a"), 1, then("a"));
        letters.append(letter("b"), 1, then("b"));
        letters.synced().await;
        assert_eq!(
            *lock(&told),
            [("a".to_owned(), false), ("b".to_owned(), true)]
        );
        let written: Vec<_> = crate::dead_letter::read(&path).unwrap().collect();
        assert_eq!(written.len(), 1, "only the second letter, whole");
        std::fs::remove_file(&path).unwrap();

        // A file that cannot be opened: each letter is told it failed.
        let directory = Letters::start(Writer::new(std::env::temp_dir()));
        directory.append(letter("c"), 1, then("c"));
        directory.synced().await;
        assert_eq!(lock(&told).last(), Some(&("c".to_owned(), false)));
    }

    #[tokio::test]
    async fn what_a_job_holds_is_dropped_once_it_is_done() {
        let path = temp_path("held");
        let held = Arc::new(());
        let letters = Letters::start(Writer::new(&path));
        let holder = held.clone();
        letters.append(letter("a"), 1, Box::new(move |_| drop(holder)));
        letters.synced().await;
        assert_eq!(Arc::strong_count(&held), 1);
        drop(letters);
        std::fs::remove_file(&path).unwrap();
    }
}
