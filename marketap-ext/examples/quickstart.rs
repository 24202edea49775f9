//! The main job, end to end: purchases (more than one request's worth) and
//! member profiles, made with the typed commerce builders, devices, one
//! deletion and a bulk deletion, then the background ingestor. Prints what it sent and the outcome of each; exits non-zero if
//! anything failed (a wrong key included).
//!
//! With `MARKETAP_API_KEY` and `MARKETAP_PROJECT_ID` set it talks to
//! `MARKETAP_BASE_URL` (default: production). Otherwise it starts an
//! embedded mock server, generated from the same spec, and says so.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use std::{process::ExitCode, time::Duration};

use chrono::NaiveDate;
use marketap_ext::{
    Device, Event, IngestorConfig, Marketap, Platform, Product, UserProfile,
    taxonomy::{event, user_property::Gender},
};

mod support;

#[tokio::main]
async fn main() -> ExitCode {
    // Keep the mock alive for the whole run.
    let (config, mock) = support::config_or_mock();
    let client = match Marketap::new(config) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    if mock.is_none() {
        // Printed once the configuration is checked: a base URL holding
        // credentials is refused, so none can be shown here.
        println!("Sending to {client:?}.");
    }
    match run(client).await {
        Ok(true) => {
            println!("\nEverything was accepted.");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("\nSome items were not accepted (see above).");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(client: Marketap) -> Result<bool, Box<dyn std::error::Error>> {
    let mut all_ok = true;

    // 2,500 purchases of two line items: three requests (1,000 + 1,000 +
    // 500), four in flight.
    let events = (0..2_500).map(|i| {
        let sneakers = Product::new("sku-1")
            .name("Sneakers")
            .category1("Shoes")
            .price(59_000.0)
            .quantity(1);
        let socks = Product::new("sku-2")
            .name("Socks")
            .price(3_000.0)
            .quantity(1 + i % 3);
        let revenue = 59_000.0 + 3_000.0 * f64::from(1 + i % 3);
        Event::purchase(
            format!("quickstart-user-{}", i % 50),
            format!("order-{i}"),
            revenue,
            [sneakers, socks],
        )
        .timestamp("2025-01-17T05:39:22+09:00")
        .build()
    });
    let report = client
        .send_events(events.collect::<Result<Vec<_>, _>>()?)
        .await;
    all_ok &= show("events: 2,500 purchases of two line items", &report);

    let profiles = (0..50).map(|i| {
        UserProfile::builder(format!("quickstart-user-{i}"))
            .email(format!("user{i}@example.com"))
            .email_opt_in(true)
            .grade("gold")
            .gender(Gender::Unknown)
            .birth(NaiveDate::from_ymd_opt(1990, 1, 1 + i % 28).expect("a day of January"))
            .build()
    });
    let report = client
        .update_profiles(profiles.collect::<Result<Vec<_>, _>>()?)
        .await;
    all_ok &= show("profiles: 50 users", &report);

    let devices = [
        Device::builder("fcm-token-quickstart", Platform::Android)
            .user_id("quickstart-user-1")
            .opt_in(true)
            .build()?,
        Device::builder("apns-token-quickstart", Platform::Ios)
            .user_id("quickstart-user-2")
            .build()?,
    ];
    let report = client.update_devices(devices).await;
    all_ok &= show("devices: 2 push tokens", &report);

    match client.delete_user("quickstart-user-49").await {
        Ok(()) => println!("deletion: quickstart-user-49: accepted"),
        Err(error) => {
            println!("deletion: quickstart-user-49: FAILED: {error}");
            all_ok = false;
        }
    }

    let report = client
        .delete_users(["quickstart-user-47", "quickstart-user-48"])
        .await?;
    all_ok &= show("bulk deletion: 2 users", &report);

    // A web service enqueues without waiting on the network, then shuts
    // down cleanly, getting back anything that was not delivered.
    let ingestor = client.ingestor(IngestorConfig::default())?;
    for i in 0..100 {
        ingestor
            .track(Event::builder(format!("quickstart-user-{i}"), event::PAGE_VIEW).build()?)
            .await?;
    }
    let report = ingestor.shutdown(Duration::from_secs(10)).await;
    let undelivered = report.undelivered_items();
    println!(
        "ingestor: 100 page views: {} delivered, {undelivered} undelivered{}",
        report.delivered,
        report
            .undelivered
            .first()
            .map(|u| format!(" ({})", u.error()))
            .unwrap_or_default()
    );
    all_ok &= undelivered == 0;

    Ok(all_ok)
}

fn show<T>(what: &str, report: &marketap_ext::BatchReport<T>) -> bool {
    let verdict = if report.is_success() { "ok" } else { "FAILED" };
    println!("{what}: {report}: {verdict}");
    report.is_success()
}
