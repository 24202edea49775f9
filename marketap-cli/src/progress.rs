//! Progress while sending: an indicatif bar on a terminal (bytes read
//! against the file's size for the ETA, with items/s, accepted, rejected
//! and failed), a plain line every few seconds when stderr is not a
//! terminal, or nothing with `--quiet`. Always on stderr, so stdout holds
//! only the summary.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// How often the display is refreshed.
pub const TICK: Duration = Duration::from_millis(200);

/// The counts shown.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Raw bytes read of the input.
    pub bytes: u64,
    /// Valid items read.
    pub items: u64,
    /// Items accepted.
    pub accepted: u64,
    /// Lines rejected.
    pub rejected: u64,
    /// Items failed.
    pub failed: u64,
}

/// Where progress goes.
pub enum Progress {
    /// A bar on a terminal.
    Bar(ProgressBar, Instant),
    /// A line every few seconds.
    Plain {
        /// When the run started.
        started: Instant,
        /// When the last line was printed.
        last: Instant,
        /// The input's size.
        total: Option<u64>,
    },
    /// Nothing.
    Quiet,
}

impl Progress {
    /// Progress for an input of `total` bytes (if known).
    pub fn new(quiet: bool, total: Option<u64>) -> Self {
        let now = Instant::now();
        if quiet {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Plain {
                started: now,
                last: now,
                total,
            };
        }
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let template = if total.is_some() {
            "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} ETA {eta} {msg}"
        } else {
            "{elapsed_precise} {spinner} {bytes} {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress::Bar(bar, now)
    }

    /// Shows `counts`.
    pub fn update(&mut self, counts: Counts) {
        match self {
            Progress::Bar(bar, started) => {
                bar.set_position(counts.bytes);
                bar.set_message(message(counts, started.elapsed()));
            }
            Progress::Plain {
                started,
                last,
                total,
            } => {
                if last.elapsed() < PLAIN_EVERY {
                    return;
                }
                *last = Instant::now();
                let share = total.filter(|t| *t > 0).map_or_else(String::new, |t| {
                    format!("{:.0}% read, ", counts.bytes as f64 * 100.0 / t as f64)
                });
                eprintln!("{share}{}", message(counts, started.elapsed()));
            }
            Progress::Quiet => {}
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Progress::Bar(bar, _) = self {
            bar.finish_and_clear();
        }
    }
}

fn message(counts: Counts, elapsed: Duration) -> String {
    let rate = counts.items as f64 / elapsed.as_secs_f64().max(1e-3);
    format!(
        "{:.0} items/s, {} accepted, {} rejected, {} failed",
        rate, counts.accepted, counts.rejected, counts.failed
    )
}
