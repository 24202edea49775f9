//! Resume: an import killed with SIGKILL partway and run again delivers
//! every line at least once, skips none, and sends at most one in-flight
//! window twice; Ctrl-C drains the requests in flight within the deadline,
//! writes the checkpoint and exits 130.

mod support;

use std::{
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use serde::Deserialize;
use support::{Request, Server, event_line, marketap, run, temp_dir, write};

/// The `n` of each event a request carried.
fn numbers(request: &Request) -> Vec<usize> {
    #[derive(Deserialize)]
    struct Body {
        events: Vec<Event>,
    }
    #[derive(Deserialize)]
    struct Event {
        properties: Properties,
    }
    #[derive(Deserialize)]
    struct Properties {
        n: usize,
    }
    let body: Body = serde_json::from_slice(&request.body).unwrap();
    body.events.into_iter().map(|e| e.properties.n).collect()
}

/// How many times the server saw each of the `n` lines.
fn seen(server: &Server, n: usize) -> Vec<u32> {
    let mut seen = vec![0; n];
    for request in server.requests() {
        for i in numbers(&request) {
            seen[i] += 1;
        }
    }
    seen
}

fn input(dir: &Path, n: usize) -> String {
    let text: String = (0..n).map(|i| event_line(i) + "\n").collect();
    write(dir, "events.ndjson", text)
        .to_str()
        .unwrap()
        .to_owned()
}

/// Waits until the server has `requests` requests, while `child` runs.
fn wait_for(server: &Server, requests: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.requests().len() < requests {
        assert!(child.try_wait().unwrap().is_none(), "it ended too soon");
        assert!(Instant::now() < deadline, "the server saw too few requests");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn killed_partway_then_run_again_every_line_arrives_and_at_most_one_window_twice() {
    const N: usize = 200_000;
    const WINDOW: usize = 4 * 1000; // --in-flight 4 x --batch-size 1000, the defaults
    let dir = temp_dir("kill");
    let server = Server::start(|_| (202, Duration::from_millis(40)));
    let file = input(&dir, N);
    let args = ["import", "events", file.as_str(), "-q", "--output", "json"];

    let mut child = marketap(&dir, Some(&server), &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&server, 60, &mut child);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = server.requests().len();
    let checkpoint: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("events.ndjson.checkpoint")).unwrap(),
    )
    .unwrap();
    let line = checkpoint["line"].as_u64().unwrap();
    assert!(line > 1 && line <= N as u64, "{checkpoint}");

    let out = run(marketap(&dir, Some(&server), &args));
    assert_eq!(out.code, Some(0), "{out:?}");
    let summary = out.json();
    assert_eq!(summary["resumed_from_line"], line);
    assert_eq!(summary["accepted"].as_u64(), Some(N as u64 + 1 - line));

    let seen = seen(&server, N);
    let missing = seen.iter().filter(|&&count| count == 0).count();
    let duplicates: u32 = seen.iter().map(|&count| count.saturating_sub(1)).sum();
    println!(
        "kill and resume: killed after {before} requests had reached the server; resumed from \
         line {line}; {missing} lines missing, {duplicates} lines sent twice (bound: one \
         in-flight window, {WINDOW})"
    );
    assert_eq!(missing, 0, "no line is skipped");
    assert!(duplicates as usize <= WINDOW, "{duplicates} duplicates");
}

/// Sends SIGINT to `child`, as Ctrl-C does.
fn interrupt(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn ctrl_c_drains_the_requests_in_flight_writes_the_checkpoint_and_exits_130() {
    const N: usize = 20_000;
    let dir = temp_dir("ctrl-c");
    let server = Server::start(|_| (202, Duration::from_millis(300)));
    let file = input(&dir, N);
    let args = [
        "import",
        "events",
        file.as_str(),
        "--output",
        "json",
        "--batch-size",
        "500",
    ];

    let mut child = marketap(&dir, Some(&server), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&server, 3, &mut child);
    let interrupted = Instant::now();
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let took = interrupted.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted: reading stopped"), "{stderr}");
    assert!(took < Duration::from_secs(5), "drained in {took:?}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["stopped"], "interrupted");
    // The requests in flight were answered within the deadline: accepted.
    let accepted = summary["accepted"].as_u64().unwrap();
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["checkpoint_line"].as_u64(), Some(accepted + 1));
    assert!(accepted >= 500 && accepted < N as u64, "{summary}");

    let out = run(marketap(&dir, Some(&server), &args));
    assert_eq!(out.code, Some(0), "{out:?}");
    let seen = seen(&server, N);
    assert!(
        seen.iter().all(|&count| count == 1),
        "each line once: drained, not abandoned"
    );
}

#[test]
fn the_drain_deadline_gives_up_on_a_server_that_does_not_answer() {
    const N: usize = 5_000;
    let dir = temp_dir("drain-deadline");
    let server = Server::start(|_| (202, Duration::from_secs(30)));
    let file = input(&dir, N);
    let args = [
        "import",
        "events",
        file.as_str(),
        "--output",
        "json",
        "--batch-size",
        "500",
        "--drain-timeout",
        "0.3",
    ];
    let mut child = marketap(&dir, Some(&server), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&server, 1, &mut child);
    let interrupted = Instant::now();
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let took = interrupted.elapsed();
    assert_eq!(out.status.code(), Some(130));
    assert!(took < Duration::from_secs(3), "gave up in {took:?}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["accepted"], 0);
    assert!(summary["not_sent"].as_u64().unwrap() >= 500, "{summary}");
    assert_eq!(summary["checkpoint_line"], 1, "nothing is done");
    assert!(
        !dir.join("events.ndjson.dead-letter.ndjson").exists(),
        "abandoned is not failed"
    );
}

#[test]
fn a_drain_timeout_that_is_not_a_number_of_seconds_is_refused_before_sending() {
    let dir = temp_dir("drain-nan");
    let server = Server::accepting();
    let file = input(&dir, 10);
    for bad in ["NaN", "inf", "-1"] {
        let option = format!("--drain-timeout={bad}");
        let out = run(marketap(
            &dir,
            Some(&server),
            &["import", "events", file.as_str(), &option],
        ));
        assert_eq!(out.code, Some(2), "{bad}: {out:?}");
        assert!(out.stderr.contains("--drain-timeout"), "{bad}: {out:?}");
    }
    assert!(server.requests().is_empty());
}

/// Appends `lines` event lines, from `from`, to `file`.
fn append(file: &str, from: usize, lines: usize) {
    use std::io::Write;
    let text: String = (from..from + lines).map(|i| event_line(i) + "\n").collect();
    let mut out = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    out.write_all(text.as_bytes()).unwrap();
}

#[test]
fn an_export_that_grew_sends_only_its_new_lines() {
    let dir = temp_dir("grew");
    let server = Server::accepting();
    let file = input(&dir, 5000);
    let args = ["import", "events", file.as_str(), "--output", "json", "-q"];
    let out = run(marketap(&dir, Some(&server), &args));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["accepted"], 5000);

    append(&file, 5000, 3000);
    let out = run(marketap(&dir, Some(&server), &args));
    assert_eq!(out.code, Some(0), "{out:?}");
    let summary = out.json();
    assert_eq!(summary["resumed_from_line"], 5001, "{summary}");
    assert_eq!(summary["accepted"], 3000, "{summary}");
    assert!(
        seen(&server, 8000).iter().all(|&n| n == 1),
        "each line once"
    );

    let out = run(marketap(&dir, Some(&server), &args));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["already_complete"], true);
    assert_eq!(server.items().len(), 8000);
}

#[test]
fn a_last_line_without_a_newline_is_read_again_when_the_file_grows() {
    let dir = temp_dir("grew-mid-line");
    let server = Server::accepting();
    let text: String = (0..10).map(event_line).collect::<Vec<_>>().join("\n");
    let file = write(&dir, "events.ndjson", text);
    let file = file.to_str().unwrap();
    let args = ["import", "events", file, "--output", "json", "-q"];
    assert_eq!(run(marketap(&dir, Some(&server), &args)).code, Some(0));
    let mut grown = std::fs::read_to_string(file).unwrap();
    grown.push('\n');
    std::fs::write(file, grown).unwrap();
    append(file, 10, 5);
    let out = run(marketap(&dir, Some(&server), &args));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["resumed_from_line"], 10);
    let seen = seen(&server, 15);
    assert_eq!(seen[9], 2, "the line that had no newline is sent again");
    assert!(
        seen.iter().enumerate().all(|(i, &n)| i == 9 || n == 1),
        "{seen:?}"
    );
}

#[test]
fn an_export_whose_prefix_changed_is_refused() {
    let dir = temp_dir("changed");
    let server = Server::accepting();
    let file = input(&dir, 100);
    let args = ["import", "events", file.as_str(), "-q"];
    assert_eq!(run(marketap(&dir, Some(&server), &args)).code, Some(0));
    let changed = std::fs::read_to_string(&file)
        .unwrap()
        .replacen("\"u9\"", "\"x9\"", 1);
    std::fs::write(&file, changed).unwrap();
    append(&file, 100, 10);
    let out = run(marketap(&dir, Some(&server), &args));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("changed before line 101") && out.stderr.contains("--restart"),
        "{out:?}"
    );
    assert_eq!(server.items().len(), 100, "nothing more sent");
}

#[test]
fn gzip_input_resumes_only_when_unchanged() {
    let dir = temp_dir("gzip-resume");
    let server = Server::accepting();
    let text: String = (0..100).map(|i| event_line(i) + "\n").collect();
    let file = write(&dir, "events.ndjson.gz", support::gzip(text.as_bytes()));
    let file = file.to_str().unwrap();
    let args = ["import", "events", file, "--output", "json", "-q"];
    assert_eq!(run(marketap(&dir, Some(&server), &args)).code, Some(0));
    let out = run(marketap(&dir, Some(&server), &args));
    assert_eq!(out.json()["already_complete"], true, "{out:?}");

    // Another gzip member appended: read as one stream, but not resumed.
    let more: String = (100..150).map(|i| event_line(i) + "\n").collect();
    let mut bytes = std::fs::read(file).unwrap();
    bytes.extend(support::gzip(more.as_bytes()));
    std::fs::write(file, bytes).unwrap();
    let out = run(marketap(&dir, Some(&server), &args));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("compressed input resumes only when the file is unchanged"),
        "{out:?}"
    );
    assert_eq!(server.items().len(), 100);
}
