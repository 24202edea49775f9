//! What the command-line tests share: a small HTTP/1.1 server on loopback
//! standing in for Marketap (it records every request, then answers as a
//! handler says, optionally after a delay), a temp directory per test, and
//! running the real `marketap` binary with a time limit.
#![allow(dead_code)] // Each test binary uses a different part.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The key the tests use.
pub const KEY: &str = "test-key";
/// The project the tests use.
pub const PROJECT: &str = "proj";

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The path, without the query.
    pub path: String,
    /// The query.
    pub query: String,
    /// The `authorization` header.
    pub auth: Option<String>,
    /// The body.
    pub body: Vec<u8>,
    /// Requests being handled when this one arrived, this one included.
    pub in_flight: usize,
}

impl Request {
    /// The body's items (`events`, `profiles` or `user_ids`), or the body.
    pub fn items(&self) -> Vec<Value> {
        let body: Value = serde_json::from_slice(&self.body).expect("JSON body");
        for field in ["events", "profiles", "user_ids"] {
            if let Some(items) = body.get(field).and_then(Value::as_array) {
                return items.clone();
            }
        }
        vec![body]
    }
}

/// How the server answers: a status, after a delay. A 429 asks to wait a
/// second (`Retry-After: 1`), as gateways do.
pub type Handler = dyn Fn(&Request) -> (u16, Duration) + Send + Sync;

/// The server; it stops when dropped.
pub struct Server {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// A server answering each request as `handler` says.
    pub fn start(handler: impl Fn(&Request) -> (u16, Duration) + Send + Sync + 'static) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        let in_flight = Arc::new(AtomicUsize::new(0));
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // The head and body go in two writes: without this, Nagle
                // holds the body until the client's delayed ACK, 40 ms.
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(
                    stream,
                    recorded.clone(),
                    handler.clone(),
                    in_flight.clone(),
                ));
            }
        });
        Self {
            runtime: Some(runtime),
            addr,
            requests,
        }
    }

    /// A server that accepts everything at once (202).
    pub fn accepting() -> Self {
        Self::start(|_| (202, Duration::ZERO))
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Every item of every request so far, in arrival order.
    pub fn items(&self) -> Vec<Value> {
        self.requests().iter().flat_map(Request::items).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    requests: Arc<Mutex<Vec<Request>>>,
    handler: Arc<Handler>,
    in_flight: Arc<AtomicUsize>,
) {
    let mut buffer = Vec::new();
    while let Some(mut request) = read_request(&mut stream, &mut buffer).await {
        request.in_flight = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        requests.lock().unwrap().push(request.clone());
        let (status, delay) = handler(&request);
        tokio::time::sleep(delay).await;
        in_flight.fetch_sub(1, Ordering::SeqCst);
        let retry_after = if status == 429 {
            "retry-after: 1\r\n"
        } else {
            ""
        };
        let body = if status >= 400 {
            format!(r#"{{"code":{status}0,"message":"refused by the test server"}}"#)
        } else {
            String::new()
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{retry_after}content-length: {}\r\n\r\n",
            body.len()
        );
        if stream.write_all(head.as_bytes()).await.is_err()
            || stream.write_all(body.as_bytes()).await.is_err()
        {
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
        let mut chunk = [0u8; 64 * 1024];
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body_start = header_end + 4;
    while buffer.len() < body_start + length {
        let mut chunk = [0u8; 64 * 1024];
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[body_start..body_start + length].to_vec();
    buffer.drain(..body_start + length);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Some(Request {
        path: path.to_owned(),
        query: query.to_owned(),
        auth: header("authorization"),
        body,
        in_flight: 0,
    })
}

/// A fresh, empty directory for one test.
pub fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("marketap-cli-tests")
        .join(format!("{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `marketap` with `args`, run in `dir`, with credentials for `server`
/// (none without one).
pub fn marketap(dir: &Path, server: Option<&Server>, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_marketap"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("MARKETAP_API_KEY")
        .env_remove("MARKETAP_PROJECT_ID")
        .env_remove("MARKETAP_BASE_URL")
        .stdin(Stdio::null());
    if let Some(server) = server {
        command
            .env("MARKETAP_API_KEY", KEY)
            .env("MARKETAP_PROJECT_ID", PROJECT)
            .env("MARKETAP_BASE_URL", server.url());
    }
    command
}

/// How a run ended.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

impl Run {
    /// stdout as the JSON summary (`--output json`).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// Runs `command` with `stdin` as its input, for at most a minute.
pub fn run_with(mut command: Command, stdin: Option<&[u8]>) -> Run {
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("marketap ran for more than a minute");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `command`, for at most a minute.
pub fn run(command: Command) -> Run {
    run_with(command, None)
}

/// Writes `text` to `dir/name`; its path.
pub fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `text`, gzip-compressed.
pub fn gzip(text: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text).unwrap();
    encoder.finish().unwrap()
}

/// An NDJSON event line for user `u{i}` carrying `i` as property `n`.
pub fn event_line(i: usize) -> String {
    format!(
        r#"{{"user_id":"u{i}","event_name":"mkt_page_view","properties":{{"n":{i}}},"timestamp":"2025-01-17T05:39:22Z"}}"#
    )
}
