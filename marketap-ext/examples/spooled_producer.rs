//! A producer that survives `kill -9`: it tracks `N` page views through an
//! ingestor with a durable spool, printing `tracked {i}` once each `track`
//! has returned `Ok` (from then on the event is on disk), then flushes and
//! shuts down, printing the report. With `N=0` it only delivers what the
//! spool holds. The spool's kill test (`tests/spool_kill.rs`) runs it.
//!
//! Reads `MARKETAP_API_KEY`, `MARKETAP_PROJECT_ID` and `MARKETAP_BASE_URL`
//! as the quickstart does (an embedded mock server when they are unset),
//! plus `SPOOL_PATH` (default `marketap-spool`), `N` (default 1000),
//! `SPOOL_SYNC` (`interval`, the default, or `always`) and
//! `RETRY_THROTTLED_WAIT_MS` (how long one request keeps retrying 429s and
//! 503s before the spool's own, unbounded retries take over; default the
//! client's 10 minutes).
//!
//! ```sh
//! SPOOL_PATH=/tmp/marketap-spool N=1000 cargo run --example spooled_producer
//! ```

use std::{io::Write, process::ExitCode, time::Duration};

use marketap_ext::{
    Event, IngestorConfig, Marketap, RetryConfig,
    spool::{SpoolConfig, SyncPolicy},
    taxonomy::event,
};

mod support;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", marketap_ext::ErrorChain(&*error));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Keep the mock alive for the whole run.
    let (config, _mock) = support::config_or_mock();
    let path = std::env::var("SPOOL_PATH").unwrap_or_else(|_| "marketap-spool".to_owned());
    let n: u64 = match std::env::var("N") {
        Ok(n) => n
            .parse()
            .map_err(|_| format!("N must be a number, not {n:?}"))?,
        Err(_) => 1000,
    };
    let sync = match std::env::var("SPOOL_SYNC").as_deref() {
        Ok("always") => SyncPolicy::Always,
        Ok("interval") | Err(_) => SyncPolicy::default(),
        Ok(other) => {
            return Err(format!("SPOOL_SYNC must be interval or always, not {other:?}").into());
        }
    };

    let config = match std::env::var("RETRY_THROTTLED_WAIT_MS") {
        Ok(ms) => {
            let ms = ms
                .parse()
                .map_err(|_| format!("RETRY_THROTTLED_WAIT_MS must be a number, not {ms:?}"))?;
            config.with_retry(
                RetryConfig::default().with_max_throttled_wait(Duration::from_millis(ms)),
            )
        }
        Err(_) => config,
    };

    let client = Marketap::new(config)?;
    let ingestor = client
        .ingestor(IngestorConfig::default().with_spool(SpoolConfig::new(&path).with_sync(sync)))?;
    let mut stdout = std::io::stdout();
    for i in 0..n {
        let page_view = Event::builder(format!("u{i}"), event::PAGE_VIEW)
            .property("seq", i)
            .build()?;
        ingestor.track(page_view).await?;
        // From here on, the event is in the spool: a kill loses nothing.
        // A full stdout pipe blocks this write; the runtime's other work
        // (delivery) goes on meanwhile.
        tokio::task::block_in_place(|| {
            writeln!(stdout, "tracked {i}")?;
            stdout.flush()
        })?;
    }

    // Everything tracked (and whatever the spool held) is delivered, has
    // failed, or waits in the spool for a retry.
    let failed = ingestor.flush().await;
    let report = ingestor.shutdown(Duration::from_secs(10)).await;
    println!(
        "report: delivered {}, undelivered {}, left in the spool {}, unreported {}",
        report.delivered,
        failed.iter().map(|u| u.len()).sum::<usize>() + report.undelivered_items(),
        report.spooled,
        report.unreported,
    );
    for undelivered in failed.iter().chain(&report.undelivered) {
        println!("  {} items: {}", undelivered.len(), undelivered.error());
    }
    Ok(())
}
