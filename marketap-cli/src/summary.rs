//! What a command did, printed at the end: a few lines for people, or one
//! JSON object (`--output json`) for scripts, with the exit code it ends
//! with.

use std::{
    io::{self, Write},
    path::PathBuf,
};

use serde::Serialize;

use crate::{args::Output, error::Exit};

/// The end of `import`, `delete` or `resend`.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// The command, e.g. `import events`.
    pub command: String,
    /// The input as given, or `stdin`.
    pub input: String,
    /// The line this run started from, when it resumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_from_line: Option<u64>,
    /// The checkpoint said the input was done before: nothing was sent.
    pub already_complete: bool,
    /// Valid items read.
    pub items: u64,
    /// Items the server accepted.
    pub accepted: u64,
    /// Lines that were not items (in the rejects file).
    pub rejected: u64,
    /// Items in requests that finally failed (in the dead-letter file).
    pub failed: u64,
    /// Items read but not delivered (interrupted, or after a 401): a rerun
    /// sends them.
    pub not_sent: u64,
    /// Requests sent.
    pub requests: u64,
    /// Retries over all requests.
    pub retries: u64,
    /// Items the server refused on their own (400) once their request was
    /// split to find them: each is a letter of its own in the dead-letter
    /// file.
    pub isolated: u64,
    /// Requests sent to isolate them (two a split; see `--no-isolate`).
    pub isolation_requests: u64,
    /// Responses that throttled (429 and 503), over all attempts.
    pub throttled: u64,
    /// The send rate learned from them, in requests per second: a little
    /// under what Marketap allowed (see `--max-rps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned_rate: Option<f64>,
    /// The rejects file, if anything was written to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejects_file: Option<PathBuf>,
    /// The dead-letter file, if anything was written to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_file: Option<PathBuf>,
    /// The checkpoint file, if it is on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_file: Option<PathBuf>,
    /// The line the checkpoint on disk holds: a rerun starts there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_line: Option<u64>,
    /// Why the checkpoint could not be updated at the end, if it could not:
    /// the file (if any) holds an earlier line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_error: Option<String>,
    /// Why the run stopped before the end of its input, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Wall-clock seconds.
    pub elapsed_secs: f64,
    /// Items read per second.
    pub items_per_sec: f64,
    /// The exit code.
    pub exit_code: u8,
}

impl Summary {
    /// Prints it to stdout as `output` says, whole or not at all.
    pub fn print(&self, output: Output) {
        let text = match output {
            Output::Json => {
                let mut json = serde_json::to_string(self).expect("a summary serialises");
                json.push('\n');
                json
            }
            Output::Text => self.text(),
        };
        print_whole(text.as_bytes());
    }

    /// The lines for people.
    pub fn text(&self) -> String {
        let mut text = String::new();
        let mut line = |s: String| {
            text.push_str(&s);
            text.push('\n');
        };
        if self.already_complete {
            line(format!(
                "{}: {} was imported completely before (checkpoint {}); nothing sent. Pass \
                 --restart to import it again.",
                self.command,
                self.input,
                self.checkpoint_file
                    .as_ref()
                    .map_or_else(String::new, |p| p.display().to_string())
            ));
            return text;
        }
        let resumed = self
            .resumed_from_line
            .map_or_else(String::new, |l| format!(", resumed from line {l}"));
        line(format!(
            "{} {}{resumed}: {} accepted, {} rejected, {} failed, {} not sent, in {} requests \
             ({} retries), {:.1} s, {:.0} items/s",
            self.command,
            self.input,
            self.accepted,
            self.rejected,
            self.failed,
            self.not_sent,
            self.requests,
            self.retries,
            self.elapsed_secs,
            self.items_per_sec,
        ));
        if self.isolation_requests > 0 {
            line(format!(
                "isolated: {} items refused alone with 400, found in {} more requests (the rest of their requests was accepted)",
                self.isolated, self.isolation_requests
            ));
        }
        if self.throttled > 0 {
            line(self.throttling());
        }
        if let Some(stopped) = &self.stopped {
            line(format!("stopped early: {stopped}"));
        }
        if let Some(path) = &self.rejects_file {
            line(format!(
                "rejected lines: {} (line, error and raw line)",
                path.display()
            ));
        }
        if let Some(path) = &self.dead_letter_file {
            line(format!(
                "failed requests: {} (send them again with `marketap resend {}`)",
                path.display(),
                path.display()
            ));
        }
        match (
            &self.checkpoint_file,
            self.checkpoint_line,
            &self.checkpoint_error,
        ) {
            (Some(path), Some(at), None) => {
                line(format!("checkpoint: {} (line {at})", path.display()));
            }
            (Some(path), Some(at), Some(error)) => line(format!(
                "checkpoint not updated: {error}; {} still holds line {at}: a rerun starts there",
                path.display()
            )),
            (_, _, Some(error)) => line(format!(
                "no checkpoint written: {error}; a rerun starts from line 1"
            )),
            _ => {}
        }
        if self.stopped.is_some()
            && let Some(at) = self.checkpoint_line
        {
            line(format!(
                "to continue: run the same command again; it resumes from line {at}"
            ));
        }
        line(format!("exit code {}", self.exit_code));
        text
    }

    /// What throttling said: how often, and the rate to pass next time.
    fn throttling(&self) -> String {
        let times = format!(
            "throttled {} time{} (429 or 503)",
            self.throttled,
            if self.throttled == 1 { "" } else { "s" }
        );
        match self.learned_rate {
            Some(rate) => format!(
                "{times}: Marketap allowed about {rate:.1} requests/s; next time pass --max-rps {}",
                suggested_cap(rate)
            ),
            None => times,
        }
    }

    /// Sets the exit code from what happened.
    pub fn exit(&mut self, exit: Exit) -> Exit {
        self.exit_code = exit.code();
        exit
    }
}

/// The `--max-rps` to suggest for a learned `rate`: its whole part, at
/// least 1.
fn suggested_cap(rate: f64) -> u64 {
    if rate.is_finite() && rate >= 1.0 {
        rate as u64
    } else {
        1
    }
}

/// Writes `text` to stdout in one piece. When stdout is a file and the
/// write fails (a full disk), the file is cut back to where it was, so it
/// never holds a torn summary; the failure is said on stderr.
pub fn print_whole(text: &[u8]) {
    let mut out = io::stdout().lock();
    #[cfg(unix)]
    let file = {
        use std::os::fd::AsFd;
        out.as_fd()
            .try_clone_to_owned()
            .ok()
            .map(std::fs::File::from)
            .filter(|f| f.metadata().is_ok_and(|m| m.is_file()))
    };
    #[cfg(not(unix))]
    let file: Option<std::fs::File> = None;
    let before = file
        .as_ref()
        .and_then(|f| f.metadata().ok())
        .map(|m| m.len());
    if let Err(error) = out.write_all(text).and_then(|()| out.flush()) {
        if let (Some(file), Some(before)) = (&file, before) {
            let _ = file.set_len(before);
        }
        eprintln!("marketap: could not write the summary to stdout: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_run_suggests_the_rate_it_learned_as_a_cap() {
        let mut summary = Summary {
            command: "import events".into(),
            input: "e.ndjson".into(),
            ..Summary::default()
        };
        assert!(!summary.text().contains("throttled"), "not throttled");
        summary.throttled = 1;
        assert!(
            summary.text().contains("\nthrottled 1 time (429 or 503)\n"),
            "{}",
            summary.text()
        );
        summary.throttled = 12;
        summary.learned_rate = Some(19.63);
        let text = summary.text();
        assert!(
            text.contains(
                "throttled 12 times (429 or 503): Marketap allowed about 19.6 requests/s; \
                 next time pass --max-rps 19\n"
            ),
            "{text}"
        );
        let json: serde_json::Value = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["throttled"], 12);
        assert_eq!(json["learned_rate"], 19.63);
        summary.learned_rate = None;
        let json: serde_json::Value = serde_json::to_value(&summary).unwrap();
        assert!(json.get("learned_rate").is_none(), "{json}");
    }

    #[test]
    fn the_isolation_line_reads_as_one_sentence() {
        let summary = Summary {
            isolated: 2,
            isolation_requests: 6,
            ..Summary::default()
        };
        let text = summary.text();
        assert!(
            text.contains(
                "\nisolated: 2 items refused alone with 400, found in 6 more requests (the rest of their requests was accepted)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_cap_suggested_is_the_whole_part_and_at_least_one() {
        assert_eq!(suggested_cap(19.99), 19);
        assert_eq!(suggested_cap(20.0), 20);
        assert_eq!(suggested_cap(1.0), 1);
        assert_eq!(suggested_cap(0.4), 1);
        assert_eq!(suggested_cap(f64::INFINITY), 1);
        assert_eq!(suggested_cap(f64::NAN), 1);
    }
}
