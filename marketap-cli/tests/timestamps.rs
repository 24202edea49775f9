//! `--timestamp-format`, run as the real binary: Unix seconds and
//! milliseconds (as CSV text and as JSON numbers), strftime patterns as
//! spreadsheets export them (with `--timezone`, or with `%z`), and a value
//! that does not match, named with its line and the pattern tried.

mod support;

use serde_json::Value;
use support::{Server, marketap, run, temp_dir, write};

/// Imports `text` (as `name`) with `args`; the timestamps that arrived.
fn timestamps(name: &str, text: &str, args: &[&str]) -> Vec<Value> {
    let dir = temp_dir(&format!("ts-{}", name.replace('.', "-")));
    let server = Server::accepting();
    let input = write(&dir, name, text);
    let mut all = vec!["import", "events", input.to_str().unwrap()];
    all.extend(args);
    let out = run(marketap(&dir, Some(&server), &all));
    assert_eq!(out.code, Some(0), "{name} {args:?}: {out:?}");
    server
        .items()
        .iter()
        .map(|i| i["timestamp"].clone())
        .collect()
}

#[test]
fn each_timestamp_format_reads_what_stores_export() {
    let at = "2024-11-02T05:03:00Z";
    let csv = |value: &str| format!("user_id,event_name,timestamp\nu1,mkt_login,{value}\n");
    assert_eq!(
        timestamps(
            "unix.csv",
            &csv("1730523780"),
            &["--timestamp-format", "unix"]
        ),
        [at]
    );
    let ndjson = r#"{"user_id":"u1","event_name":"mkt_login","timestamp":1730523780000}"#;
    assert_eq!(
        timestamps("ms.ndjson", ndjson, &["--timestamp-format", "unix-ms"]),
        [at]
    );
    let seoul = ["--timezone", "Asia/Seoul", "--timestamp-format"];
    for (value, pattern) in [
        ("2024-11-02 14:03", "%Y-%m-%d %H:%M"),
        ("2024/11/02 14:03:00", "%Y/%m/%d %H:%M:%S"),
        ("2024.11.02 14:03", "%Y.%m.%d %H:%M"),
    ] {
        let mut args = seoul.to_vec();
        args.push(pattern);
        assert_eq!(
            timestamps("pattern.csv", &csv(value), &args),
            [at],
            "{pattern}"
        );
    }
    assert_eq!(
        timestamps(
            "offset.csv",
            &csv("2024.11.02 14:03 +0900"),
            &["--timestamp-format", "%Y.%m.%d %H:%M %z"]
        ),
        [at]
    );
    // The default is unchanged: RFC 3339.
    assert_eq!(
        timestamps("rfc.csv", &csv("2024-11-02T14:03:00+09:00"), &[]),
        [at]
    );
}

#[test]
fn a_timestamp_not_in_the_format_is_named_with_its_line_and_the_pattern() {
    let dir = temp_dir("ts-mismatch");
    let csv = "user_id,주문일시,event_name\n\
               u1,2024.11.02 14:03,mkt_login\n\
               u2,2024-11-02 14:03,mkt_login\n\
               u3,2024.11.02 14:05,mkt_login\n";
    let input = write(&dir, "orders.csv", csv);
    let args = [
        "validate",
        "events",
        input.to_str().unwrap(),
        "--column",
        "timestamp=주문일시",
        "--timestamp-format",
        "%Y.%m.%d %H:%M",
        "--timezone",
        "Asia/Seoul",
    ];
    let out = run(marketap(&dir, None, &args));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout.contains("line 3, column `주문일시`: timestamp \"2024-11-02 14:03\" does not match --timestamp-format `%Y.%m.%d %H:%M`"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(
            "timestamps were read with --timestamp-format `%Y.%m.%d %H:%M` in Asia/Seoul"
        ),
        "{out:?}"
    );
    let mut json = args.to_vec();
    json.extend(["--output", "json"]);
    let report = run(marketap(&dir, None, &json)).json();
    assert_eq!(report["valid"], 2);
    assert_eq!(
        report["problems_by_kind"]["timestamp not in --timestamp-format"],
        1
    );
    assert_eq!(report["first_problems"][0]["line"], 3);
    assert_eq!(report["timestamp_format"], "%Y.%m.%d %H:%M");
}
