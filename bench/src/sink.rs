//! The loopback sink: an HTTP/1.1 server standing in for Marketap. It
//! reads each whole request body, parses it as JSON, counts the items and
//! answers `202` (or, when [`Answer::Refuse`], `400` with the API's error
//! JSON), optionally after a delay. `GET /stats` reports the counts;
//! `POST /reset` zeroes them.
//!
//! It runs in a process of its own ([`SinkProcess`]) so its CPU time and
//! memory are never charged to a contender; contenders talk to it through
//! [`SinkClient`]. Every address is loopback: the sink binds 127.0.0.1, and
//! [`loopback_url`] refuses any other sink address.

use std::{
    convert::Infallible,
    io::{self, BufRead, BufReader, Read, Write},
    net::Ipv4Addr,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize, de::IgnoredAny};
use tokio::net::TcpListener;

use crate::{
    BoxError,
    events::{API_KEY, PROJECT_ID},
};

/// Where events are posted.
pub const EVENTS_PATH: &str = "/v1/api/events";

/// The body of a refusal: the API's error JSON.
const REFUSAL: &str = r#"{"code":4000,"message":"refused by the benchmark sink"}"#;

/// How the sink answers a well-formed request, once it has counted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `202 Accepted`.
    Accept,
    /// `400 Bad Request` with [`REFUSAL`]: not retried, and unlike a `401`
    /// it does not stop an ingestor, so every request keeps failing.
    Refuse,
    /// `503 Service Unavailable`: an outage, which a spooled ingestor
    /// waits out with its items in the spool.
    Unavailable,
}

/// `url`, normalised and without a trailing `/`, if it is `http://` to a loopback IP
/// address (127.0.0.0/8 or ::1); an error otherwise. Host names are
/// refused too, `localhost` included: what they resolve to is not the
/// benchmark's to check.
pub fn loopback_url(url: &str) -> Result<String, BoxError> {
    let refuse = |why: &str| {
        format!(
            "--url: {why}; the benchmark sends only to a loopback sink, \
             http://127.0.0.1:<port> (any of 127.0.0.0/8) or http://[::1]:<port>"
        )
    };
    let parsed = url::Url::parse(url).map_err(|e| refuse(&format!("not a URL ({e})")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(_)) | None => false,
    };
    if !loopback {
        let host = parsed.host_str().unwrap_or("no host");
        return Err(refuse(&format!("`{host}` is not a loopback address")).into());
    }
    if parsed.scheme() != "http" {
        return Err(refuse(&format!("scheme `{}`", parsed.scheme())).into());
    }
    if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(refuse("a path, query or fragment").into());
    }
    // What was checked is what is used.
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// What the sink has received since the last reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests accepted.
    pub requests: u64,
    /// Items in them.
    pub items: u64,
    /// Bytes of their bodies.
    pub bytes: u64,
}

impl Stats {
    /// An error unless exactly `n` items arrived.
    pub fn expect_items(&self, n: usize) -> Result<(), BoxError> {
        if self.items == n as u64 {
            Ok(())
        } else {
            Err(format!(
                "the sink received {} items in {} requests; expected exactly {n}",
                self.items, self.requests
            )
            .into())
        }
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    items: AtomicU64,
    bytes: AtomicU64,
}

/// A request body: the list is parsed item by item, but nothing is kept.
#[derive(Deserialize)]
struct Batch {
    events: Vec<IgnoredAny>,
}

/// Serves on an ephemeral loopback port, printed as the first line of
/// stdout, until stdin closes (the orchestrator exits or drops the sink).
pub fn serve(delay: Duration, answer: Answer) -> Result<(), BoxError> {
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        std::process::exit(0);
    });
    crate::runtime()?.block_on(async move {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{}", listener.local_addr()?.port())?;
        stdout.flush()?;
        drop(stdout);
        let counters = Arc::new(Counters::default());
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let counters = counters.clone();
            tokio::spawn(async move {
                let service = service_fn(|request| handle(request, &counters, delay, answer));
                // A client closing its connection is not the sink's problem.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn handle(
    request: Request<Incoming>,
    counters: &Counters,
    delay: Duration,
    answer: Answer,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&Method::POST, EVENTS_PATH) => ingest(request, counters, delay, answer).await,
        (&Method::GET, "/stats") => {
            let stats = Stats {
                requests: counters.requests.load(Relaxed),
                items: counters.items.load(Relaxed),
                bytes: counters.bytes.load(Relaxed),
            };
            let json = serde_json::to_vec(&stats).expect("plain numbers serialize");
            reply(StatusCode::OK, json)
        }
        (&Method::POST, "/reset") => {
            for counter in [&counters.requests, &counters.items, &counters.bytes] {
                counter.store(0, Relaxed);
            }
            reply(StatusCode::NO_CONTENT, Vec::new())
        }
        _ => reply(StatusCode::NOT_FOUND, Vec::new()),
    };
    Ok(response)
}

/// Checks the query and key, reads and parses the whole body, counts it,
/// waits `delay`, and answers as `answer` says.
async fn ingest(
    request: Request<Incoming>,
    counters: &Counters,
    delay: Duration,
    answer: Answer,
) -> Response<Full<Bytes>> {
    let expected_query = format!("project_id={PROJECT_ID}");
    let expected_auth = format!("Bearer {API_KEY}");
    if request.uri().query() != Some(expected_query.as_str()) {
        return reply(
            StatusCode::BAD_REQUEST,
            b"wrong or missing project_id".to_vec(),
        );
    }
    if request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        != Some(expected_auth.as_bytes())
    {
        return reply(StatusCode::UNAUTHORIZED, Vec::new());
    }
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
    };
    let batch: Batch = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
    };
    counters.requests.fetch_add(1, Relaxed);
    counters.items.fetch_add(batch.events.len() as u64, Relaxed);
    counters.bytes.fetch_add(body.len() as u64, Relaxed);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match answer {
        Answer::Accept => reply(StatusCode::ACCEPTED, Vec::new()),
        Answer::Unavailable => reply(StatusCode::SERVICE_UNAVAILABLE, Vec::new()),
        Answer::Refuse => {
            let mut response = reply(StatusCode::BAD_REQUEST, REFUSAL.as_bytes().to_vec());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
    }
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// A sink running as a child of this process; stopped on drop.
pub struct SinkProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl SinkProcess {
    /// Starts `marketap-bench sink --delay-ms <delay> [--refuse |
    /// --unavailable]` and waits for its port.
    pub fn start(delay: Duration, answer: Answer) -> Result<Self, BoxError> {
        let delay_ms = delay.as_millis().to_string();
        let mut args = vec!["sink", "--delay-ms", &delay_ms];
        match answer {
            Answer::Accept => {}
            Answer::Refuse => args.push("--refuse"),
            Answer::Unavailable => args.push("--unavailable"),
        }
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout is piped");
        BufReader::new(stdout.take(64)).read_line(&mut line)?;
        let port: u16 = match line.trim().parse() {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the sink did not print its port (got {line:?})").into());
            }
        };
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        // Closing stdin stops it; killing it (by its own id) makes sure.
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A contender's view of the sink: reset before the run, stats after.
pub struct SinkClient {
    http: reqwest::Client,
    base: String,
}

impl SinkClient {
    /// A client of the sink at `base`, which must be loopback.
    pub fn new(base: &str) -> Result<Self, BoxError> {
        Ok(Self {
            http: reqwest::Client::builder().build()?,
            base: loopback_url(base)?,
        })
    }

    pub async fn reset(&self) -> Result<(), BoxError> {
        let url = format!("{}/reset", self.base);
        self.http.post(url).send().await?.error_for_status()?;
        Ok(())
    }

    pub async fn stats(&self) -> Result<Stats, BoxError> {
        let url = format!("{}/stats", self.base);
        let response = self.http.get(url).send().await?.error_for_status()?;
        Ok(serde_json::from_slice(&response.bytes().await?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::loopback_url;

    #[test]
    fn only_loopback_sinks_are_accepted() {
        for (url, expected) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("http://127.1.2.3:9", "http://127.1.2.3:9"),
            ("http://127.1:9", "http://127.0.0.1:9"),
            ("http://[::1]:8080", "http://[::1]:8080"),
        ] {
            assert_eq!(loopback_url(url).unwrap(), expected, "{url}");
        }
        for url in [
            "http://10.0.0.1:8080",
            "http://0.0.0.0:8080",
            "http://192.168.1.10",
            "http://localhost:8080",
            "http://example.com",
            "http://[::ffff:127.0.0.1]:80",
            "http://[2001:db8::1]:80",
            "https://127.0.0.1:8443",
            "http://127.0.0.1:8080/v1",
            "http://127.0.0.1:8080/?a=b",
            "127.0.0.1:8080",
            "",
        ] {
            let error = loopback_url(url).unwrap_err().to_string();
            assert!(error.contains("loopback"), "{url}: {error}");
        }
    }
}
