//! `marketap import`, `delete users` and `resend`, run as the real binary
//! against a loopback server: NDJSON and CSV (gzip, renamed and typed
//! columns, naive timestamps with and without `--timezone`), the rejects
//! file, dead letters and their resend, the 401 exit code, credentials, and
//! the deletion's confirmation.

mod support;

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::{KEY, Server, event_line, gzip, marketap, run, run_with, temp_dir, write};

#[test]
fn ndjson_events_go_out_in_the_wire_shape_and_a_finished_file_is_not_sent_twice() {
    let dir = temp_dir("ndjson");
    let server = Server::accepting();
    let mut text: String = (0..2500).map(|i| event_line(i) + "\n").collect();
    text.insert(0, '\n'); // a blank first line is skipped, not rejected
    let input = write(&dir, "events.ndjson", &text);
    let file = input.to_str().unwrap();

    let out = run(marketap(
        &dir,
        Some(&server),
        &["import", "events", file, "--output", "json"],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    let summary = out.json();
    assert_eq!(summary["accepted"], 2500);
    assert_eq!(summary["rejected"], 0);
    assert_eq!(summary["requests"], 3);
    assert_eq!(summary["checkpoint_line"], 2502);
    let requests = server.requests();
    assert!(requests.iter().all(|r| r.path == "/v1/api/events"
        && r.query == "project_id=proj"
        && r.auth.as_deref() == Some(&format!("Bearer {KEY}"))));
    let mut items = server.items();
    items.sort_by_key(|item| item["properties"]["n"].as_u64());
    assert_eq!(items.len(), 2500);
    assert_eq!(
        items[7],
        json!({"user_id": "u7", "event_name": "mkt_page_view", "properties": {"n": 7}, "timestamp": "2025-01-17T05:39:22Z"})
    );

    let again = run(marketap(&dir, Some(&server), &["import", "events", file]));
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(
        again.stdout.contains("imported completely before"),
        "{again:?}"
    );
    assert_eq!(server.requests().len(), 3, "nothing sent twice");

    let restarted = run(marketap(
        &dir,
        Some(&server),
        &["import", "events", file, "--restart", "-q"],
    ));
    assert_eq!(restarted.code, Some(0), "{restarted:?}");
    assert_eq!(server.items().len(), 5000);
}

#[test]
fn gzip_csv_with_renamed_and_typed_columns() {
    let dir = temp_dir("csv");
    let server = Server::accepting();
    let csv = "\u{feff}member_no,event_name,price,is_member,tags,timestamp,note\n\
               m-1,mkt_page_view,19.5,yes,\"[\"\"a\"\",1]\",2025-01-17T14:39:22+09:00,hello\n\
               m-2,mkt_login,,no,,,\n";
    // gzip is found by its first bytes, not by the name; CSV by the first byte.
    let input = write(&dir, "export.dat", gzip(csv.as_bytes()));
    let out = run(marketap(
        &dir,
        Some(&server),
        &[
            "import",
            "events",
            input.to_str().unwrap(),
            "--column",
            "user_id=member_no",
            "--type",
            "price=number",
            "--type",
            "is_member=bool",
            "--type",
            "tags=json",
            "--output",
            "json",
        ],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["accepted"], 2);
    assert_eq!(
        server.items(),
        vec![
            json!({
                "user_id": "m-1", "event_name": "mkt_page_view",
                "properties": {"price": 19.5, "is_member": true, "tags": ["a", 1], "note": "hello"},
                "timestamp": "2025-01-17T05:39:22Z"
            }),
            // Empty cells are left out.
            json!({"user_id": "m-2", "event_name": "mkt_login", "properties": {"is_member": false}}),
        ]
    );
}

#[test]
fn naive_timestamps_need_a_zone_and_a_dst_gap_is_an_error() {
    let dir = temp_dir("zone");
    let server = Server::accepting();
    let csv = "user_id,event_name,timestamp\n\
               u1,mkt_login,2025-01-17 14:39:22\n\
               u2,mkt_login,2025-03-09T02:30:00\n";
    let input = write(&dir, "logins.csv", csv);
    let file = input.to_str().unwrap();

    // Without a zone, both lines are refused, naming line and column.
    let out = run(marketap(
        &dir,
        Some(&server),
        &["import", "events", file, "--output", "json"],
    ));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.json()["rejected"], 2);
    assert!(server.requests().is_empty());
    let rejects = std::fs::read_to_string(dir.join("logins.csv.rejects.ndjson")).unwrap();
    let first: Value = serde_json::from_str(rejects.lines().next().unwrap()).unwrap();
    assert_eq!(first["line"], 2);
    assert_eq!(first["column"], "timestamp");
    assert_eq!(first["kind"], "timestamp without offset");
    assert!(
        first["error"].as_str().unwrap().contains("--timezone"),
        "{first}"
    );

    // Seoul has no DST: both are read there.
    let seoul = run(marketap(
        &dir,
        Some(&server),
        &[
            "import",
            "events",
            file,
            "--restart",
            "--timezone",
            "Asia/Seoul",
            "-q",
        ],
    ));
    assert_eq!(seoul.code, Some(0), "{seoul:?}");
    let stamps: Vec<Value> = server
        .items()
        .iter()
        .map(|e| e["timestamp"].clone())
        .collect();
    assert_eq!(
        stamps,
        [json!("2025-01-17T05:39:22Z"), json!("2025-03-08T17:30:00Z")]
    );

    // New York skips 02:30 on 2025-03-09: an error, never a guess.
    let new_york = run(marketap(
        &dir,
        Some(&server),
        &[
            "import",
            "events",
            file,
            "--restart",
            "--timezone",
            "America/New_York",
            "-q",
        ],
    ));
    assert_eq!(new_york.code, Some(1), "{new_york:?}");
    let rejects = std::fs::read_to_string(dir.join("logins.csv.rejects.ndjson")).unwrap();
    assert_eq!(rejects.lines().count(), 1, "{rejects}");
    assert!(
        rejects.contains(r#""line":3"#) && rejects.contains("does not exist"),
        "{rejects}"
    );

    // The same holds for NDJSON.
    let ndjson = write(
        &dir,
        "naive.ndjson",
        r#"{"user_id":"u1","event_name":"mkt_login","timestamp":"2025-01-17T14:39:22"}"#,
    );
    let out = run(marketap(
        &dir,
        Some(&server),
        &[
            "import",
            "events",
            ndjson.to_str().unwrap(),
            "--timezone",
            "Asia/Seoul",
            "-q",
        ],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        server.items().last().unwrap()["timestamp"],
        "2025-01-17T05:39:22Z"
    );
}

#[test]
fn invalid_lines_go_to_the_rejects_file_and_the_rest_is_sent() {
    let dir = temp_dir("rejects");
    let server = Server::accepting();
    let text = [
        event_line(1),
        "{not json".to_owned(),
        event_line(3),
        r#"{"user_id":"u4","event_name":"mkt_purchase","properties":{"mkt_revenu":10}}"#.to_owned(),
        r#"{"user_id":"u5","event_name":"x","extra":1}"#.to_owned(),
    ]
    .join("\n");
    let input = write(&dir, "mixed.ndjson", text);
    let rejects = dir.join("bad.ndjson");
    let out = run(marketap(
        &dir,
        Some(&server),
        &[
            "import",
            "events",
            input.to_str().unwrap(),
            "--rejects",
            rejects.to_str().unwrap(),
        ],
    ));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("2 accepted, 3 rejected"), "{out:?}");
    assert!(
        out.stdout.contains(rejects.to_str().unwrap()),
        "the summary names the file"
    );
    assert_eq!(server.items().len(), 2);
    let lines: Vec<Value> = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        (lines[0]["line"].as_u64(), lines[0]["kind"].as_str()),
        (Some(2), Some("not JSON"))
    );
    assert_eq!(lines[0]["raw"], "{not json");
    assert_eq!(lines[1]["line"], 4);
    assert!(
        lines[1]["error"]
            .as_str()
            .unwrap()
            .contains("did you mean \"mkt_revenue\""),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2]["line"], 5);
    assert!(
        lines[2]["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `extra`"),
        "{}",
        lines[2]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&rejects).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "it holds the input's data");
    }

    // --max-errors stops reading.
    let out = run(marketap(
        &dir,
        Some(&server),
        &[
            "import",
            "events",
            input.to_str().unwrap(),
            "--restart",
            "--max-errors",
            "1",
            "--output",
            "json",
        ],
    ));
    assert_eq!(out.code, Some(1), "{out:?}");
    let summary = out.json();
    assert_eq!(summary["rejected"], 1);
    assert_eq!(summary["accepted"], 1);
    assert!(
        summary["stopped"]
            .as_str()
            .unwrap()
            .contains("--max-errors"),
        "{summary}"
    );
}

#[test]
fn a_401_stops_the_run_with_exit_code_3() {
    let dir = temp_dir("unauthorized");
    let server = Server::start(|_| (401, Duration::ZERO));
    let text: String = (0..5000).map(|i| event_line(i) + "\n").collect();
    let input = write(&dir, "events.ndjson", text);
    let out = run(marketap(
        &dir,
        Some(&server),
        &[
            "import",
            "events",
            input.to_str().unwrap(),
            "--batch-size",
            "100",
            "--output",
            "json",
        ],
    ));
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(
        out.stderr.contains("API key or project was not accepted"),
        "{out:?}"
    );
    assert!(
        !out.stderr.contains(KEY) && !out.stdout.contains(KEY),
        "the key is never shown"
    );
    assert_eq!(server.requests().len(), 1, "the first 401 stops everything");
    let summary = out.json();
    assert_eq!(summary["accepted"], 0);
    assert_eq!(summary["checkpoint_line"], 1);
    assert!(
        !dir.join("events.ndjson.dead-letter.ndjson").exists(),
        "a wrong key is not a dead letter"
    );
}

#[test]
fn failed_requests_become_dead_letters_that_resend_delivers() {
    let dir = temp_dir("dead-letters");
    let refuse = Arc::new(AtomicBool::new(true));
    let server = {
        let refuse = refuse.clone();
        Server::start(move |_| {
            let status = if refuse.load(Ordering::SeqCst) {
                400
            } else {
                202
            };
            (status, Duration::ZERO)
        })
    };
    let text: String = (0..250).map(|i| event_line(i) + "\n").collect();
    let input = write(&dir, "events.ndjson", text);
    let out = run(marketap(
        &dir,
        Some(&server),
        &[
            "import",
            "events",
            input.to_str().unwrap(),
            "--batch-size",
            "100",
            "--no-isolate",
            "--output",
            "json",
        ],
    ));
    assert_eq!(out.code, Some(1), "{out:?}");
    let summary = out.json();
    assert_eq!(summary["failed"], 250);
    let letters = dir.join("events.ndjson.dead-letter.ndjson");
    assert_eq!(summary["dead_letter_file"], letters.to_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(&letters).unwrap().lines().count(),
        3
    );
    assert_eq!(
        summary["checkpoint_line"], 251,
        "dead-lettered lines are done"
    );

    // Still refused: the letters go to the remaining file, untouched input.
    let out = run(marketap(
        &dir,
        Some(&server),
        &["resend", letters.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.code, Some(1), "{out:?}");
    let remaining = dir.join("events.ndjson.dead-letter.ndjson.remaining.ndjson");
    assert_eq!(out.json()["dead_letter_file"], remaining.to_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(&remaining).unwrap().lines().count(),
        3
    );

    refuse.store(false, Ordering::SeqCst);
    let before = server.items().len();
    let out = run(marketap(
        &dir,
        Some(&server),
        &["resend", letters.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["accepted"], 250);
    let mut resent: Vec<u64> = server.items()[before..]
        .iter()
        .map(|e| e["properties"]["n"].as_u64().unwrap())
        .collect();
    resent.sort_unstable();
    assert_eq!(resent, (0..250).collect::<Vec<u64>>());
}

#[test]
fn profiles_and_devices_go_to_their_endpoints() {
    let dir = temp_dir("kinds");
    let server = Server::accepting();
    let profiles = write(
        &dir,
        "profiles.jsonl",
        r#"{"user_id":"u1","properties":{"mkt_email":"a@example.com","mkt_email_opt_in":true}}"#,
    );
    let out = run(marketap(
        &dir,
        Some(&server),
        &["import", "profiles", profiles.to_str().unwrap(), "-q"],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    let devices = write(
        &dir,
        "devices.csv",
        "token,platform,opt_in,user_id\nfcm-1,ANDROID,true,u1\napns-2,IOS,,\n",
    );
    let out = run(marketap(
        &dir,
        Some(&server),
        &["import", "devices", devices.to_str().unwrap(), "-q"],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    let requests = server.requests();
    assert_eq!(requests[0].path, "/v1/api/profile/user");
    assert_eq!(requests[1].path, "/v1/api/profile/user/device/bulk");
    assert_eq!(
        requests[1].items(),
        vec![
            json!({"device": {"token": "fcm-1", "platform": "ANDROID", "opt_in": true}, "user_id": "u1"}),
            json!({"device": {"token": "apns-2", "platform": "IOS"}}),
        ]
    );
    // Devices have no properties: another column is refused, naming it.
    let extra = write(&dir, "devices2.csv", "token,platform,color\nt,IOS,red\n");
    let out = run(marketap(
        &dir,
        Some(&server),
        &["import", "devices", extra.to_str().unwrap()],
    ));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("`color`"), "{out:?}");
}

#[test]
fn credentials_come_from_the_environment_or_a_key_file() {
    let dir = temp_dir("credentials");
    let server = Server::accepting();
    let input = write(&dir, "events.ndjson", event_line(1));
    let file = input.to_str().unwrap();

    let out = run(marketap(&dir, None, &["import", "events", file]));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("MARKETAP_API_KEY") && out.stderr.contains("--api-key-file"),
        "{out:?}"
    );

    let key = write(&dir, "key.txt", format!("{KEY}\n"));
    let mut command = marketap(
        &dir,
        None,
        &[
            "import",
            "events",
            file,
            "--api-key-file",
            key.to_str().unwrap(),
            "-q",
        ],
    );
    command.env("MARKETAP_BASE_URL", server.url());
    let out = run(command);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("MARKETAP_PROJECT_ID") && out.stderr.contains("--project"),
        "{out:?}"
    );

    let mut command = marketap(
        &dir,
        None,
        &[
            "import",
            "events",
            file,
            "--api-key-file",
            key.to_str().unwrap(),
            "--project",
            "proj",
            "-q",
        ],
    );
    command.env("MARKETAP_BASE_URL", server.url());
    let out = run(command);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        server.requests()[0].auth.as_deref(),
        Some("Bearer test-key")
    );
}

#[test]
fn deleting_users_asks_first_unless_yes() {
    let dir = temp_dir("delete");
    let server = Server::accepting();
    let ids = write(&dir, "ids.txt", "u1\n\nu2\n u3 \n");
    let file = ids.to_str().unwrap();

    // No terminal to ask on: refused, nothing sent.
    let out = run(marketap(&dir, Some(&server), &["delete", "users", file]));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--yes"), "{out:?}");
    let out = run_with(
        marketap(&dir, Some(&server), &["delete", "users", "-"]),
        Some(b"u1\n"),
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(server.requests().is_empty());

    // A terminal: `script` gives the command one, and types the answer.
    let answer = |reply: &[u8], args: &str| {
        let command_line = format!("{} delete users {args}", env!("CARGO_BIN_EXE_marketap"));
        let mut script = std::process::Command::new("script");
        script
            .args(["-qec", &command_line, "/dev/null"])
            .current_dir(&dir)
            .env("MARKETAP_API_KEY", KEY)
            .env("MARKETAP_PROJECT_ID", "proj")
            .env("MARKETAP_BASE_URL", server.url());
        run_with(script, Some(reply))
    };
    let declined = answer(b"no\n", file);
    assert_eq!(declined.code, Some(1), "{declined:?}");
    assert!(
        declined
            .stdout
            .contains("deletion of 3 users of project proj"),
        "{declined:?}"
    );
    assert!(declined.stdout.contains("cannot be undone"), "{declined:?}");
    assert!(server.requests().is_empty(), "declined: nothing sent");

    let confirmed = answer(b"yes\n", file);
    assert_eq!(confirmed.code, Some(0), "{confirmed:?}");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/api/profile/user/deletion-job/bulk");
    assert_eq!(
        requests[0].items(),
        vec![json!("u1"), json!("u2"), json!("u3")]
    );

    // --yes: no question; a CSV column works too.
    let members = write(&dir, "members.csv", "name,member_no\nKim,m-9\n");
    let out = run(marketap(
        &dir,
        Some(&server),
        &[
            "delete",
            "users",
            members.to_str().unwrap(),
            "--column",
            "user_id=member_no",
            "--yes",
            "-q",
        ],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    let last = server.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/api/profile/user/deletion-job");
    assert_eq!(last.body, br#"{"user_id":"m-9"}"#);
}

#[test]
fn no_reserved_check_takes_unknown_mkt_names_as_they_are() {
    let dir = temp_dir("no-reserved-check");
    let server = Server::accepting();
    let line = r#"{"user_id":"u1","event_name":"mkt_purchase","properties":{"mkt_new_field":1}}"#;
    let input = write(&dir, "events.ndjson", format!("{line}\n"));
    let file = input.to_str().unwrap();

    // By default the unknown reserved name is a problem of its line.
    let out = run(marketap(&dir, None, &["validate", "events", file]));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("mkt_new_field"), "{out:?}");
    let out = run(marketap(
        &dir,
        None,
        &["validate", "events", file, "--no-reserved-check"],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");

    // Import sends it unchanged; every other check still runs.
    let out = run(marketap(
        &dir,
        Some(&server),
        &["import", "events", file, "--no-reserved-check", "-q"],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(server.items()[0]["properties"]["mkt_new_field"], 1);
    let blank = write(&dir, "blank.ndjson", r#"{"user_id":" ","event_name":"e"}"#);
    let out = run(marketap(
        &dir,
        None,
        &[
            "validate",
            "events",
            blank.to_str().unwrap(),
            "--no-reserved-check",
        ],
    ));
    assert_eq!(out.code, Some(1), "{out:?}");

    // Resend: a letter holding the name is refused unless the check is off.
    let letters = write(
        &dir,
        "letters.ndjson",
        format!(
            "{{\"operation\":\"collect_bulk_user_events\",\"error\":\"HTTP 503\",\"status\":503,\"attempts\":5,\"body\":{{\"events\":[{line}]}}}}\n"
        ),
    );
    let letters = letters.to_str().unwrap();
    let out = run(marketap(&dir, Some(&server), &["resend", letters, "-q"]));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(server.items().len(), 1, "nothing more sent");
    let out = run(marketap(
        &dir,
        Some(&server),
        &["resend", letters, "--no-reserved-check", "-q"],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(server.items().len(), 2);
}

#[test]
fn one_bad_item_is_isolated_and_dead_lettered_alone() {
    let dir = temp_dir("isolation");
    let server = Server::start(|request| {
        let poisoned = request.items().iter().any(|e| e["user_id"] == "u1234");
        (if poisoned { 400 } else { 202 }, Duration::ZERO)
    });
    let text: String = (0..2000).map(|i| event_line(i) + "\n").collect();
    let input = write(&dir, "events.ndjson", text);
    let import = |extra: &[&str]| {
        let mut args = vec!["import", "events", input.to_str().unwrap(), "--restart"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--output", "json"]);
        run(marketap(&dir, Some(&server), &args))
    };

    let out = import(&[]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let summary = out.json();
    assert_eq!(summary["accepted"], 1999, "{summary}");
    assert_eq!(summary["failed"], 1);
    assert_eq!(summary["isolated"], 1);
    let extra = summary["isolation_requests"].as_u64().unwrap();
    assert!(
        (18..=20).contains(&extra),
        "{extra} requests to isolate one in 1,000"
    );
    let letters = dir.join("events.ndjson.dead-letter.ndjson");
    let letters = std::fs::read_to_string(&letters).unwrap();
    assert_eq!(letters.lines().count(), 1, "one letter, for the one item");
    let letter: serde_json::Value = serde_json::from_str(letters.trim()).unwrap();
    assert_eq!(letter["body"]["events"].as_array().unwrap().len(), 1);
    assert_eq!(letter["body"]["events"][0]["user_id"], "u1234");

    // Resending the letter leaves only the bad item: every good one was
    // accepted by the import already.
    let letters_path = dir.join("events.ndjson.dead-letter.ndjson");
    let out = run(marketap(
        &dir,
        Some(&server),
        &["resend", letters_path.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.json()["accepted"], 0);
    let remaining = dir.join("events.ndjson.dead-letter.ndjson.remaining.ndjson");
    let remaining = std::fs::read_to_string(remaining).unwrap();
    assert_eq!(remaining.lines().count(), 1);
    assert!(remaining.contains(r#""user_id":"u1234""#), "{remaining}");
    let mut accepted: Vec<String> = server
        .requests()
        .iter()
        .map(|request| request.items())
        .filter(|items| !items.iter().any(|e| e["user_id"] == "u1234"))
        .flatten()
        .map(|e| e["user_id"].as_str().unwrap().to_owned())
        .collect();
    accepted.sort_unstable();
    let count = accepted.len();
    accepted.dedup();
    assert_eq!(
        (accepted.len(), count),
        (1999, 1999),
        "every good item accepted, once (the --no-isolate run below comes after)"
    );

    // Opted out: the whole request of 1,000 fails with its one bad item.
    let out = import(&["--no-isolate"]);
    let summary = out.json();
    assert_eq!(summary["accepted"], 1000, "{summary}");
    assert_eq!(summary["failed"], 1000);
    assert_eq!(summary["isolation_requests"], 0);
}

/// A server allowing `per_second` accepted requests in any rolling second
/// (refusals not counted) and 3 in flight, answering 429 with
/// `Retry-After: 1` beyond either; each request takes 20 ms. Each
/// request's arrival, and whether it was refused, is logged in `arrivals`.
fn sliding_window_server(per_second: usize, arrivals: Arrivals) -> Server {
    let accepted_at = Mutex::new(VecDeque::<Instant>::new());
    Server::start(move |request| {
        let now = Instant::now();
        let mut accepted_at = accepted_at.lock().unwrap();
        while accepted_at
            .front()
            .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1))
        {
            accepted_at.pop_front();
        }
        let refused = request.in_flight > 3 || accepted_at.len() >= per_second;
        arrivals.lock().unwrap().push((now, refused));
        if refused {
            return (429, Duration::ZERO);
        }
        accepted_at.push_back(now);
        (202, Duration::from_millis(20))
    })
}

/// When each request reached a test server, and whether it was refused.
type Arrivals = Arc<Mutex<Vec<(Instant, bool)>>>;

/// The share of a server's requests answered 429 (by the items it saw
/// twice, a request being resent whole).
fn refused_share(server: &Server, accepted: usize) -> f64 {
    let requests = server.requests().len();
    (requests - accepted) as f64 / requests as f64
}

#[test]
fn an_import_with_default_flags_is_polite_to_a_sliding_window() {
    // Issue 15: 11 of 101 requests were answered 429 before the learned
    // rate. 30,000 events in requests of 1,000 take 1.5 s at 20 a second:
    // the whole run is the warm-up (a debug build reads about 17 requests'
    // worth a second, and is not throttled at all), so this bounds what
    // the first 429s cost, and everything must arrive.
    let dir = temp_dir("sliding-window");
    let server = sliding_window_server(20, Arrivals::default());
    let text: String = (0..30_000).map(|i| event_line(i) + "\n").collect();
    let input = write(&dir, "events.ndjson", text);
    let out = run(marketap(
        &dir,
        Some(&server),
        &[
            "import",
            "events",
            input.to_str().unwrap(),
            "--output",
            "json",
        ],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    let summary = out.json();
    assert_eq!(summary["accepted"], 30_000, "{summary}");
    assert_eq!(summary["requests"], 30, "{summary}");
    let share = refused_share(&server, 30);
    println!(
        "marketap import, defaults: {} requests, {:.1}% answered 429; {summary}",
        server.requests().len(),
        share * 100.0
    );
    assert_eq!(summary["throttled"], server.requests().len() as u64 - 30);
    assert!(share < 0.2, "{:.1}% answered 429", share * 100.0);
}

#[test]
fn an_import_with_default_flags_keeps_to_a_sliding_window_after_warm_up() {
    // Issue 15's targets for `marketap import` with default flags (requests
    // of 1,000 events, 4 in flight): after a warm-up of 5 s, under 5% of
    // requests answered 429 (asserted) and 85% of the hidden limit
    // (printed: it is timing). The limit is 10 requests a second, which a
    // debug build can about keep up with at 1,000 events a request (at 20
    // a second the build, not the server, would be the limit); 140
    // requests take 14 s.
    const PER_SECOND: usize = 10;
    const WARM_UP: Duration = Duration::from_secs(5);
    let dir = temp_dir("sliding-window-steady");
    let arrivals = Arrivals::default();
    let server = sliding_window_server(PER_SECOND, arrivals.clone());
    let text: String = (0..140_000).map(|i| event_line(i) + "\n").collect();
    let input = write(&dir, "events.ndjson", text);
    let out = run(marketap(
        &dir,
        Some(&server),
        &[
            "import",
            "events",
            input.to_str().unwrap(),
            "--output",
            "json",
        ],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    let summary = out.json();
    assert_eq!(summary["accepted"], 140_000, "{summary}");
    let arrivals = arrivals.lock().unwrap();
    let first = arrivals.first().expect("requests came").0;
    let after: Vec<(Duration, bool)> = arrivals
        .iter()
        .map(|(at, refused)| (at.duration_since(first), *refused))
        .filter(|(at, _)| *at >= WARM_UP)
        .collect();
    let refused_after = after.iter().filter(|(_, refused)| *refused).count();
    let share_after = refused_after as f64 / after.len().max(1) as f64;
    let last = after.last().map_or(WARM_UP, |(at, _)| *at);
    let steady = last.saturating_sub(WARM_UP).as_secs_f64();
    let throughput = (after.len() - refused_after) as f64 / (PER_SECOND as f64 * steady.max(1.0));
    println!(
        "marketap import, defaults, sliding window of {PER_SECOND}/s: {} requests, {} answered 429; \
         after {WARM_UP:?}: {:.1}% answered 429, {:.0}% of the limit over {steady:.1}s; \
         learned {}",
        arrivals.len(),
        arrivals.iter().filter(|(_, refused)| *refused).count(),
        share_after * 100.0,
        throughput * 100.0,
        summary["learned_rate"],
    );
    assert!(
        after.len() >= 20,
        "{} requests after the warm-up: the run must outlast it",
        after.len()
    );
    assert!(
        share_after < 0.05,
        "{:.1}% answered 429 after the warm-up",
        share_after * 100.0
    );
}

#[test]
fn a_throttled_import_suggests_a_cap_that_then_holds() {
    // 5 requests a second: 30 requests of 100 events take 6 s, long enough
    // for the client to learn the rate from a whole second of requests.
    let dir = temp_dir("max-rps");
    let server = sliding_window_server(5, Arrivals::default());
    let text: String = (0..3_000).map(|i| event_line(i) + "\n").collect();
    let input = write(&dir, "events.ndjson", text);
    let import = |extra: &[&str]| {
        let mut args = vec![
            "import",
            "events",
            input.to_str().unwrap(),
            "--restart",
            "--batch-size",
            "100",
        ];
        args.extend_from_slice(extra);
        run(marketap(&dir, Some(&server), &args))
    };
    let out = import(&["--output", "json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let summary = out.json();
    assert_eq!(summary["accepted"], 3_000, "{summary}");
    assert!(summary["throttled"].as_u64().unwrap() > 0, "{summary}");
    let rate = summary["learned_rate"].as_f64().expect("a learned rate");
    assert!((3.0..=5.0).contains(&rate), "{summary}");
    let before = server.requests().len();

    // The text says it, and the cap it suggests.
    let out = import(&[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("Marketap allowed about ")
            && out.stdout.contains("requests/s; next time pass --max-rps "),
        "{}",
        out.stdout
    );

    // With the cap, the server refuses nothing (once the window holds
    // none of the last run's requests).
    std::thread::sleep(Duration::from_millis(1100));
    let before_capped = server.requests().len();
    let out = import(&["--max-rps", "4", "--output", "json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let summary = out.json();
    assert_eq!(summary["accepted"], 3_000, "{summary}");
    assert_eq!(summary["throttled"], 0, "{summary}");
    assert!(summary.get("learned_rate").is_none(), "{summary}");
    assert_eq!(server.requests().len() - before_capped, 30);
    assert!(before > 30);
}

#[test]
fn a_rate_cap_of_zero_is_refused_by_name() {
    let dir = temp_dir("max-rps-zero");
    let input = write(&dir, "events.ndjson", event_line(1) + "\n");
    for flag in ["--max-rps", "--max-items-per-second"] {
        let out = run(marketap(
            &dir,
            None,
            &["import", "events", input.to_str().unwrap(), flag, "0"],
        ));
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(out.stderr.contains(flag), "{}", out.stderr);
    }
}
