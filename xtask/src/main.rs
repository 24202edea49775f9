//! `cargo xtask`: repository chores that are not part of the published crates.
//!
//! Arguments are matched by hand (no clap) to keep the tool small; each subcommand is one
//! function returning the process exit code.

#![allow(
    clippy::result_large_err,
    reason = "an error ends the process, so its size on the cold path does not matter"
)]

mod limiter_plot;
mod merge;
mod msrv;
mod overlay;
mod readme;
mod spec_io;

use std::process::ExitCode;

use similar::TextDiff;

use crate::merge::{MergeError, Summary};
use crate::spec_io::OUTPUT;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  merge   merge openapi/sources/*.json and openapi/overlay.json into openapi/marketap.json
  check   exit 1 with a diff if openapi/marketap.json is not what `merge` would write,
          or if README.ko.md's headings or code blocks differ from README.md's
  readme-sync
          copy README.md's code blocks into README.ko.md (where the two have the same
          headings and the same number of blocks under each); the prose stays as it is
  msrv    exit 1 listing every locked dependency whose rust-version is newer than ours
          (the workspace's); CI runs it as a step of its own, beside clippy's
          incompatible_msrv lint
  bench   build marketap-cli and marketap-bench in release mode and run the benchmark
          (throughput, CPU, memory, enqueue latency against a loopback sink);
          `cargo xtask bench --help` lists its options
  limiter-plot [CSV]
          run marketap-ext's limiter table test (or read the CSV it wrote with
          MARKETAP_LIMITER_CSV set) and draw the requests accepted a second against
          each hidden limit into docs/limiters.svg, for the README
  help    print this message
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result: Result<ExitCode, Box<dyn std::error::Error>> = match args.as_slice() {
        ["merge"] => merge().map_err(Into::into),
        ["check"] => check().map_err(Into::into),
        ["readme-sync"] => readme_sync().map_err(Into::into),
        ["msrv"] => msrv::run().map_err(Into::into),
        ["bench", args @ ..] => bench(args).map_err(Into::into),
        ["limiter-plot"] => limiter_plot::run(&spec_io::repo_root(), None)
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        ["limiter-plot", csv] => {
            limiter_plot::run(&spec_io::repo_root(), Some(std::path::Path::new(csv)))
                .map(|()| ExitCode::SUCCESS)
                .map_err(Into::into)
        }
        // Further subcommands get an arm here.
        [] | ["help" | "--help" | "-h"] => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprint!(
                "error: unexpected arguments `{}`\n\n{USAGE}",
                args.join(" ")
            );
            return ExitCode::from(2);
        }
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error}");
        ExitCode::FAILURE
    })
}

fn merge() -> Result<ExitCode, MergeError> {
    let root = spec_io::repo_root();
    let generated = spec_io::generate(&root)?;
    spec_io::write_output(&root, &generated.text)?;
    println!("wrote {OUTPUT}: {}", Summary::of(&generated.document));
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask bench [args]`: `cargo build --release -p marketap-cli` (its `cli` contender
/// runs the `marketap` binary), then `cargo run --release -p marketap-bench -- args`, from the
/// repository root, with its exit code. Release, or the figures mean nothing.
fn bench(args: &[&str]) -> Result<ExitCode, MergeError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = std::process::Command::new(&cargo)
        .current_dir(spec_io::repo_root())
        .args(["build", "--release", "--package", "marketap-cli"])
        .status();
    match built {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln!("error: building marketap-cli failed: {status}");
            return Ok(ExitCode::FAILURE);
        }
        Err(error) => {
            eprintln!("error: cannot run cargo: {error}");
            return Ok(ExitCode::FAILURE);
        }
    }
    let status = std::process::Command::new(cargo)
        .current_dir(spec_io::repo_root())
        .args(["run", "--release", "--package", "marketap-bench", "--"])
        .args(args)
        .status();
    Ok(match status {
        Ok(status) => status
            .code()
            .and_then(|code| u8::try_from(code).ok())
            .map_or(ExitCode::FAILURE, ExitCode::from),
        Err(error) => {
            eprintln!("error: cannot run cargo: {error}");
            ExitCode::FAILURE
        }
    })
}

/// `cargo xtask check`: the merged spec, then the Korean README. Both run, so one run shows
/// every problem.
fn check() -> Result<ExitCode, MergeError> {
    let spec = check_spec()?;
    let readme = readme::check(&spec_io::repo_root())?;
    Ok(if spec && readme {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn readme_sync() -> Result<ExitCode, MergeError> {
    Ok(if readme::sync(&spec_io::repo_root())? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Whether `openapi/marketap.json` is what `merge` would write; prints a diff when not.
fn check_spec() -> Result<bool, MergeError> {
    let root = spec_io::repo_root();
    let fresh = spec_io::generate(&root)?.text;
    let committed = spec_io::read_output(&root)?;
    if committed.as_deref() == Some(fresh.as_str()) {
        println!("{OUTPUT} is up to date");
        return Ok(true);
    }
    if committed.is_none() {
        println!("{OUTPUT} is missing");
    }
    let diff = TextDiff::from_lines(committed.as_deref().unwrap_or(""), &fresh);
    let header = (
        "openapi/marketap.json (committed)",
        "cargo xtask merge (now)",
    );
    print!("{}", diff.unified_diff().header(header.0, header.1));
    eprintln!("error: {OUTPUT} is out of date; run `cargo xtask merge` and commit the result");
    Ok(false)
}
