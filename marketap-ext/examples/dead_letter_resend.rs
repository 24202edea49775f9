//! Resending dead letters: read a dead-letter file (written by an
//! ingestor's `with_dead_letter_path`) with `dead_letter::read`, resend
//! each letter with `client.resend(&letter)`, and keep the letters that
//! still fail, so a later run can try them again.
//!
//! Letters that fail again go to `<file>.retry`, which then replaces the
//! file; if a line of the file could not be read at all, the file is left
//! as it is (nothing is lost) and the retry file is kept beside it.
//!
//! With `MARKETAP_API_KEY` and `MARKETAP_PROJECT_ID` set it resends the
//! file named by its first argument. Otherwise it uses an embedded mock: it
//! first makes a dead-letter file (an ingestor against a server that
//! answers 503), then resends it to the mock, which still refuses one
//! user's events, so one letter is kept.
//!
//! ```sh
//! cargo run --example dead_letter_resend -- failed.ndjson
//! cargo run --example dead_letter_resend
//! ```

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use httpmock::Method::POST;
use marketap_ext::{
    Config, ErrorChain, Event, IngestorConfig, Marketap, RetryConfig,
    dead_letter::{self, Writer},
    taxonomy::event,
};

mod support;

const STILL_FAILING: &str = "still-failing-user";

#[tokio::main]
async fn main() -> ExitCode {
    let (config, mock) = support::config_or_mock_with(|server| {
        // Tried first: this user's events are still refused.
        server.mock(|when, then| {
            when.method(POST).body_includes(STILL_FAILING);
            then.status(400).json_body(serde_json::json!({
                "code": 400, "message": "this user is still refused"
            }));
        });
    });
    match (&mock, std::env::args_os().nth(1)) {
        (Some(_), _) => match demo(config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&*error),
        },
        (None, Some(path)) => match resend_file(config, Path::new(&path)).await {
            Ok(0) => ExitCode::SUCCESS,
            Ok(kept) => {
                println!("{kept} letter(s) still fail; run again later");
                ExitCode::FAILURE
            }
            Err(error) => fail(&*error),
        },
        (None, None) => fail(&*Box::<dyn std::error::Error>::from(
            "name the dead-letter file to resend",
        )),
    }
}

fn fail(error: &(dyn std::error::Error + 'static)) -> ExitCode {
    eprintln!("error: {}", ErrorChain(error));
    ExitCode::FAILURE
}

/// The demo: makes a file of three letters, resends it (one is still
/// refused, as planned), and removes what it made.
async fn demo(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let path = make_demo_file().await?;
    let kept = resend_file(config, &path).await?;
    let _ = fs::remove_file(&path);
    if kept == 1 {
        println!("demo: the one letter kept is the one the mock still refuses");
        Ok(())
    } else {
        Err(format!("demo: expected 1 letter kept, got {kept}").into())
    }
}

/// Resends every letter of `path`; returns how many are kept.
async fn resend_file(config: Config, path: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    let client = Marketap::new(config)?;
    let retry_path = with_suffix(path, ".retry");
    let mut retry = Writer::new(&retry_path);
    let (mut resent, mut kept, mut unreadable) = (0, 0, 0);
    for letter in dead_letter::read(path)? {
        let letter = match letter {
            Ok(letter) => letter,
            Err(bad_line) => {
                eprintln!("cannot read {}: {bad_line}", path.display());
                unreadable += 1;
                continue;
            }
        };
        match client.resend(&letter).await {
            Ok(items) => resent += items,
            Err(error) => {
                println!("still failing: {}", ErrorChain(&error));
                retry.append(&letter)?;
                kept += 1;
            }
        }
    }
    retry.sync()?;
    println!("{resent} items resent, {kept} letter(s) kept, {unreadable} line(s) unreadable");
    if unreadable > 0 {
        println!(
            "{} is left as it is; kept letters are in {}",
            path.display(),
            retry_path.display()
        );
    } else if kept > 0 {
        fs::rename(&retry_path, path)?;
        println!("{} now holds the letters kept", path.display());
    } else {
        fs::remove_file(path)?;
        let _ = fs::remove_file(&retry_path);
        println!("{} is empty: removed", path.display());
    }
    Ok(kept)
}

/// Makes a dead-letter file for the demo: an ingestor sends to a server
/// that answers 503 to everything, so each request ends in the file.
async fn make_demo_file() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!(
        "marketap-dead-letters-{}.ndjson",
        std::process::id()
    ));
    let down = httpmock::MockServer::start_async().await;
    down.mock_async(|_, then| {
        then.status(503);
    })
    .await;
    let client = Marketap::new(
        Config::new(support::MOCK_KEY, support::MOCK_PROJECT)
            .with_base_url(down.base_url())
            .with_retry(RetryConfig::default().with_max_attempts(1)),
    )?;
    let ingestor = client.ingestor(IngestorConfig::default().with_dead_letter_path(&path))?;
    let mut failed = 0;
    for user in ["user-1", "user-2", STILL_FAILING] {
        // One event at a time, each its own request, so each is a letter.
        ingestor
            .track(Event::builder(user, event::LOGIN).build()?)
            .await?;
        failed += ingestor
            .flush()
            .await
            .iter()
            .map(|u| u.len())
            .sum::<usize>();
    }
    let report = ingestor.shutdown(Duration::from_secs(10)).await;
    failed += report.undelivered_items();
    println!(
        "demo: {failed} items failed against a server that was down; written to {}",
        path.display()
    );
    Ok(path)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
