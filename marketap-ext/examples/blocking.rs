//! The blocking client in a plain `fn main`, with no async runtime of your
//! own: events, a deletion, and the background ingestor, each call
//! returning once it is done. The client drives the async one on a runtime
//! thread of its own (feature `blocking`).
//!
//! With `MARKETAP_API_KEY` and `MARKETAP_PROJECT_ID` set it talks to
//! `MARKETAP_BASE_URL` (default: production). Otherwise it starts an
//! embedded mock server, and says so.
//!
//! ```sh
//! cargo run --example blocking --features blocking
//! ```
//!
//! (Inside this repository the feature is on for examples already, so
//! `cargo run --example blocking` works too.)

use std::{process::ExitCode, time::Duration};

use marketap_ext::{Event, IngestorConfig, blocking::Marketap, taxonomy::event};

mod support;

fn main() -> ExitCode {
    // Keep the mock alive for the whole run.
    let (config, _mock) = support::config_or_mock();
    match run(Marketap::new(config)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("Some items were not accepted (see above).");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {}", marketap_ext::ErrorChain(&*error));
            ExitCode::FAILURE
        }
    }
}

fn run(
    client: Result<Marketap, marketap_ext::ConfigError>,
) -> Result<bool, Box<dyn std::error::Error>> {
    let client = client?;

    let logins = (0..10)
        .map(|i| Event::builder(format!("blocking-user-{i}"), event::LOGIN).build())
        .collect::<Result<Vec<_>, _>>()?;
    // `?` on the call: an error only if called inside an async context.
    let report = client.send_events(logins)?;
    println!("events: 10 logins: {report}");
    let mut all_ok = report.is_success();

    match client.delete_user("blocking-user-9") {
        Ok(()) => println!("deletion: blocking-user-9: accepted"),
        Err(error) => {
            println!("deletion: blocking-user-9: FAILED: {error}");
            all_ok = false;
        }
    }

    let ingestor = client.ingestor(IngestorConfig::default())?;
    for i in 0..100 {
        ingestor.track(Event::builder(format!("blocking-user-{i}"), event::PAGE_VIEW).build()?)?;
    }
    let report = ingestor.shutdown(Duration::from_secs(10))?;
    println!(
        "ingestor: 100 page views: {} delivered, {} undelivered",
        report.delivered,
        report.undelivered_items()
    );
    all_ok &= report.undelivered_items() == 0;
    Ok(all_ok)
    // The client, the last handle, is dropped here: its runtime thread ends.
}
