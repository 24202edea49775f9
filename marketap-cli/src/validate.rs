//! `marketap validate`: reads the input exactly as `import` would and
//! reports, without sending anything: how many items are valid, how many
//! lines have each kind of problem, and the first problems with their line
//! (and CSV column).

use std::{collections::BTreeMap, io::Write};

use serde::Serialize;

use crate::{
    args::Output,
    error::Exit,
    kinds::{Kind, Reading},
    records::{Next, Records},
};

/// Problems listed, at most.
const SHOWN: usize = 20;

/// One problem, as listed.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// Its line.
    pub line: u64,
    /// The CSV column at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The kind of problem.
    pub kind: &'static str,
    /// What is wrong.
    pub error: String,
}

/// What `validate` found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The input as given.
    pub input: String,
    /// What it was read as, e.g. `events`.
    pub kind: &'static str,
    /// Valid items.
    pub valid: u64,
    /// Lines that are not valid items.
    pub invalid: u64,
    /// Invalid lines per kind of problem.
    pub problems_by_kind: BTreeMap<&'static str, u64>,
    /// The first problems.
    pub first_problems: Vec<Problem>,
    /// How timestamps were read: `--timestamp-format`.
    pub timestamp_format: &'static str,
    /// The zone of timestamps without an offset, if one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Why reading stopped before the end, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_error: Option<String>,
    /// The exit code.
    pub exit_code: u8,
}

/// Reads every record of `records` (read as `reading` says) and reports.
pub fn run<T: Kind>(mut records: Records<T>, input: &str, reading: &Reading) -> Report {
    let mut report = Report {
        input: input.to_owned(),
        kind: T::LABEL,
        timestamp_format: reading.time.describe(),
        timezone: reading.zone.map(|zone| zone.name().to_owned()),
        ..Report::default()
    };
    loop {
        match records.next() {
            Next::Item(..) => report.valid += 1,
            Next::Reject(reject) => {
                report.invalid += 1;
                *report
                    .problems_by_kind
                    .entry(reject.error.kind())
                    .or_default() += 1;
                if report.first_problems.len() < SHOWN {
                    report.first_problems.push(Problem {
                        line: reject.line,
                        column: reject.column,
                        kind: reject.error.kind(),
                        error: reject.error.to_string(),
                    });
                }
            }
            Next::End => break,
            Next::Failed { line, error } => {
                report.read_error = Some(format!("reading stopped at line {line}: {error}"));
                break;
            }
        }
    }
    let exit = if report.invalid == 0 && report.read_error.is_none() {
        Exit::Success
    } else {
        Exit::Partial
    };
    report.exit_code = exit.code();
    report
}

impl Report {
    /// Prints it to stdout.
    pub fn print(&self, output: Output) {
        crate::summary::print_whole(&self.printed(output));
    }

    /// What [`print`](Self::print) prints.
    fn printed(&self, output: Output) -> Vec<u8> {
        let mut out = Vec::new();
        if output == Output::Json {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string(self).expect("a report serialises")
            );
            return out;
        }
        let _ = writeln!(
            out,
            "{}: {} valid {}, {} invalid lines",
            self.input, self.valid, self.kind, self.invalid
        );
        if let Some(error) = &self.read_error {
            let _ = writeln!(out, "{error}");
        }
        if !self.problems_by_kind.is_empty() {
            let _ = writeln!(out, "problems by kind:");
            let mut kinds: Vec<_> = self.problems_by_kind.iter().collect();
            kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (kind, count) in kinds {
                let _ = writeln!(out, "  {count:>8}  {kind}");
            }
            if self
                .problems_by_kind
                .keys()
                .any(|k| k.contains("timestamp"))
            {
                let zone = self.timezone.as_ref().map_or_else(
                    || ", without --timezone".to_owned(),
                    |zone| format!(" in {zone}"),
                );
                let _ = writeln!(
                    out,
                    "timestamps were read with --timestamp-format `{}`{zone}",
                    self.timestamp_format
                );
            }
            let _ = writeln!(
                out,
                "first {} problems:",
                self.first_problems.len().min(SHOWN)
            );
            for problem in &self.first_problems {
                let place = match &problem.column {
                    Some(column) => format!("line {}, column `{column}`", problem.line),
                    None => format!("line {}", problem.line),
                };
                let _ = writeln!(out, "  {place}: {}", problem.error);
            }
        }
        out
    }
}
