//! A small HTTP/1.1 server on loopback for tests that need what httpmock
//! cannot do: count requests in flight, answer slowly, reset a connection
//! mid-request, or never answer. Each request goes to a handler that picks
//! a [`Reply`]; every request is recorded.
#![allow(dead_code)] // Each test binary uses a different part.

pub mod recorded;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use marketap_ext::{Event, Undelivered};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, e.g. `/v1/api/events?project_id=p`.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Requests being handled when this one arrived, this one included.
    pub in_flight: usize,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The items of a bulk body (`events`, `profiles` or `user_ids`).
    pub fn items(&self) -> Vec<Value> {
        let body = self.json();
        for field in ["events", "profiles", "user_ids"] {
            if let Some(items) = body.get(field).and_then(Value::as_array) {
                return items.clone();
            }
        }
        vec![body]
    }
}

/// What the server does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer with a status, extra headers and a body, after a delay.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
        delay: Duration,
    },
    /// Close the connection with a TCP reset instead of answering.
    Reset,
    /// Never answer (until the client gives up).
    Stall,
    /// Send the status line and headers of a response with a body, then
    /// `then` instead of the body.
    HeadOnly { status: u16, then: Box<Reply> },
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply::Respond {
            status,
            headers: vec![],
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn accepted() -> Self {
        Self::status(202)
    }

    pub fn error(status: u16, code: i64, message: &str) -> Self {
        Reply::Respond {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::json!({ "code": code, "message": message }).to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let Reply::Respond { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }

    pub fn after(mut self, wait: Duration) -> Self {
        if let Reply::Respond { delay, .. } = &mut self {
            *delay = wait;
        }
        self
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

struct State {
    handler: Box<Handler>,
    requests: Mutex<Vec<Request>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// The server; it stops when dropped with the test's runtime.
pub struct TestServer {
    addr: std::net::SocketAddr,
    state: Arc<State>,
}

impl TestServer {
    pub async fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            handler: Box::new(handler),
            requests: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let accepting = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // The head and body go in two writes: without this, Nagle
                // holds the body until the client's delayed ACK, 40 ms.
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, accepting.clone()));
            }
        });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The most requests that were being handled at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let mut buffer = Vec::new();
    while let Some(mut request) = read_request(&mut stream, &mut buffer).await {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        request.in_flight = now;
        state.requests.lock().unwrap().push(request.clone());
        let reply = (state.handler)(&request);
        let keep_open = match reply {
            Reply::Respond {
                status,
                headers,
                body,
                delay,
            } => {
                tokio::time::sleep(delay).await;
                let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                stream.write_all(head.as_bytes()).await.is_ok()
                    && stream.write_all(body.as_bytes()).await.is_ok()
            }
            Reply::Reset => {
                let _ = stream.set_zero_linger();
                false
            }
            Reply::HeadOnly { status, then } => {
                let head = format!("HTTP/1.1 {status} X\r\ncontent-length: 100\r\n\r\npartial");
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.flush().await;
                match *then {
                    Reply::Stall => {
                        let mut sink = [0u8; 1024];
                        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    }
                    _ => {
                        let _ = stream.set_zero_linger();
                    }
                }
                false
            }
            Reply::Stall => {
                // Hold the connection until the client closes it.
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                false
            }
        };
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !keep_open {
            return;
        }
    }
}

/// Reads one request (headers and a `content-length` body).
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    let header_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let body_start = header_end + 4;
    while buffer.len() < body_start + length {
        let mut chunk = [0u8; 64 * 1024];
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[body_start..body_start + length].to_vec();
    buffer.drain(..body_start + length);
    Some(Request {
        method,
        target,
        headers,
        body,
        in_flight: 0,
    })
}

/// A page view carrying `id` in its properties, so tests can follow it.
pub fn event(id: usize) -> Event {
    Event::builder(format!("user-{id}"), "mkt_page_view")
        .property("id", id)
        .build()
        .unwrap()
}

/// The ids of the events a request carried.
pub fn ids(request: &Request) -> Vec<u64> {
    request
        .items()
        .iter()
        .map(|e| e["properties"]["id"].as_u64().unwrap())
        .collect()
}

/// The ids of undelivered events.
pub fn undelivered_ids(undelivered: &Undelivered) -> Vec<u64> {
    match undelivered {
        Undelivered::Events(batch) => batch
            .items
            .iter()
            .map(|e| e.properties()["id"].as_u64().unwrap())
            .collect(),
        other => panic!("only events were sent: {other:?}"),
    }
}
