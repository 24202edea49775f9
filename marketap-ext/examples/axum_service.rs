//! The background ingestor inside a web service (hyper, the HTTP library
//! under axum; an axum handler would call the ingestor the same way), with
//! a graceful shutdown: on SIGTERM or Ctrl-C it stops accepting
//! connections, lets the requests being served finish, then calls
//! `ingestor.shutdown(deadline)` and reports what was not delivered.
//!
//! Handlers only enqueue (`track`), which never touches the network; the
//! ingestor sends in batches in the background.
//!
//! - `POST /login?user=ID`: tracks a login; 202, or 503 with the reason if
//!   the ingestor cannot take it.
//! - `GET /metrics`: the ingestor's counters.
//!
//! With `MARKETAP_API_KEY` and `MARKETAP_PROJECT_ID` set it sends to the
//! real API and serves on `127.0.0.1:3000` (or `$PORT`) until stopped.
//! Otherwise it uses an embedded mock, serves on a free loopback port, sends
//! a few requests to itself, and then shuts down by itself.
//!
//! ```sh
//! cargo run --example axum_service
//! ```

use std::{convert::Infallible, net::SocketAddr, process::ExitCode, time::Duration};

use hyper::{Method, Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use marketap_ext::{Event, Ingestor, IngestorConfig, Marketap, taxonomy::event};
use tokio::{net::TcpListener, sync::watch};
use tokio_util::task::TaskTracker;

mod support;

/// How long the ingestor gets to deliver what it holds at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {}", marketap_ext::ErrorChain(&*error));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let (config, mock) = support::config_or_mock();
    let client = Marketap::new(config)?;
    let ingestor = client.ingestor(IngestorConfig::default())?;

    let port = match (&mock, std::env::var("PORT")) {
        (None, Ok(port)) => port.parse()?,
        (None, Err(_)) => 3000,
        (Some(_), _) => 0,
    };
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let address = listener.local_addr()?;
    println!("serving on http://{address}");

    // Set once, when the service is to stop.
    let (stop, stopping) = watch::channel(false);
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        println!("signal: shutting down");
        on_signal.send_replace(true);
    });
    if mock.is_some() {
        // Without credentials: be our own client, then stop.
        tokio::spawn(async move {
            if let Err(error) = call_ourselves(address).await {
                eprintln!("self-test failed: {error}");
            }
            stop.send_replace(true);
        });
    }

    let connections = serve(listener, &ingestor, stopping).await;
    // Requests being served finish; new connections are not accepted.
    connections.close();
    connections.wait().await;

    let report = ingestor.shutdown(DRAIN).await;
    println!(
        "ingestor: {} delivered, {} undelivered{}",
        report.delivered,
        report.undelivered_items(),
        if report.deadline_passed {
            " (the deadline passed)"
        } else {
            ""
        }
    );
    for undelivered in &report.undelivered {
        println!(
            "  not delivered: {} item(s) of {}: {}",
            undelivered.len(),
            undelivered.operation().as_str(),
            marketap_ext::ErrorChain(undelivered.error())
        );
    }
    Ok(report.undelivered_items() == 0)
}

/// Accepts connections until `stopping`; returns the connections still
/// being served, each told to finish gracefully.
async fn serve(
    listener: TcpListener,
    ingestor: &Ingestor,
    mut stopping: watch::Receiver<bool>,
) -> TaskTracker {
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    eprintln!("accept: {error}");
                    continue;
                }
            },
            () = stopped(&mut stopping) => return connections,
        };
        let ingestor = ingestor.clone();
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| handle(ingestor.clone(), request));
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = stopped(&mut stopping) => {
                    // Finish the request in progress, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                eprintln!("connection: {error}");
            }
        });
    }
}

/// Returns once the service is to stop (or nothing can say so any more).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    // The guard it returns is dropped here, not held across an await.
    let _ = stopping.wait_for(|stop| *stop).await;
}

async fn handle(
    ingestor: Ingestor,
    request: Request<Incoming>,
) -> Result<Response<String>, Infallible> {
    let reply = |status: StatusCode, body: String| {
        let mut response = Response::new(body);
        *response.status_mut() = status;
        Ok(response)
    };
    match (request.method(), request.uri().path()) {
        (&Method::POST, "/login") => {
            let user = request
                .uri()
                .query()
                .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("user=")));
            let Some(user) = user else {
                return reply(StatusCode::BAD_REQUEST, "user= is required\n".into());
            };
            let event = match Event::builder(user, event::LOGIN).build() {
                Ok(event) => event,
                Err(error) => return reply(StatusCode::BAD_REQUEST, format!("{error}\n")),
            };
            // Waits only while the queue is full (backpressure).
            match ingestor.track(event).await {
                Ok(()) => reply(StatusCode::ACCEPTED, "tracked\n".into()),
                Err(error) => reply(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
            }
        }
        (&Method::GET, "/metrics") => reply(StatusCode::OK, format!("{:?}\n", ingestor.metrics())),
        _ => reply(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// SIGTERM (what a process manager sends) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// The demo's traffic: a few logins and a look at the metrics, over
/// loopback.
async fn call_ourselves(address: SocketAddr) -> Result<(), reqwest::Error> {
    let http = reqwest::Client::new();
    for user in ["service-user-1", "service-user-2", "service-user-3"] {
        let response = http
            .post(format!("http://{address}/login?user={user}"))
            .send()
            .await?;
        println!("POST /login?user={user}: {}", response.status());
    }
    let metrics = http
        .get(format!("http://{address}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    print!("GET /metrics: {metrics}");
    Ok(())
}
