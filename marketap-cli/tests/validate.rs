//! `marketap validate` (its output and exit codes) and the bad-input table:
//! each kind of bad input gets a clear message, with its line where there
//! is one, and the right exit code, from `validate` and from `import`.

mod support;

use std::path::Path;

use support::{Server, event_line, gzip, marketap, run, temp_dir, write};

#[test]
fn validate_counts_valid_items_and_problems_and_lists_the_first_with_their_line() {
    let dir = temp_dir("validate");
    let mut lines: Vec<String> = (0..30).map(event_line).collect();
    lines[3] = "{oops".into();
    lines[9] =
        r#"{"user_id":"u9","event_name":"mkt_login","timestamp":"2025-01-17T05:39:22"}"#.into();
    for line in &mut lines[10..28] {
        *line = r#"{"user_id":"","event_name":"e"}"#.into();
    }
    let input = write(&dir, "events.ndjson", lines.join("\n"));
    let file = input.to_str().unwrap();

    // No credentials are needed, and nothing is sent.
    let out = run(marketap(&dir, None, &["validate", "events", file]));
    assert_eq!(out.code, Some(1), "{out:?}");
    let text = &out.stdout;
    assert!(text.contains("10 valid events, 20 invalid lines"), "{text}");
    assert!(text.contains("18  empty required field"), "{text}");
    assert!(text.contains("1  not JSON"), "{text}");
    assert!(text.contains("1  timestamp without offset"), "{text}");
    assert!(text.contains("first 20 problems:"), "{text}");
    assert!(text.contains("line 4: not valid JSON"), "{text}");
    assert!(text.contains("line 10: invalid `timestamp`"), "{text}");
    assert!(!text.contains("line 29"), "only the first 20: {text}");

    let out = run(marketap(
        &dir,
        None,
        &["validate", "events", file, "--output", "json"],
    ));
    let report = out.json();
    assert_eq!(
        (report["valid"].as_u64(), report["invalid"].as_u64()),
        (Some(10), Some(20))
    );
    assert_eq!(report["problems_by_kind"]["not JSON"], 1);
    assert_eq!(report["first_problems"].as_array().unwrap().len(), 20);
    assert_eq!(report["first_problems"][0]["line"], 4);

    // CSV problems name their column.
    let csv = write(
        &dir,
        "e.csv",
        "user_id,event_name,price\nu1,e,abc\nu2,e,3\n",
    );
    let out = run(marketap(
        &dir,
        None,
        &[
            "validate",
            "events",
            csv.to_str().unwrap(),
            "--type",
            "price=number",
        ],
    ));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout
            .contains("line 2, column `price`: column `price`: \"abc\" is not a number"),
        "{out:?}"
    );

    let good = write(&dir, "good.ndjson", event_line(1));
    let out = run(marketap(
        &dir,
        None,
        &["validate", "events", good.to_str().unwrap()],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("1 valid events, 0 invalid lines"),
        "{out:?}"
    );
}

/// One row of the table: the input, the exit code, and what the message
/// must say (on stdout or stderr).
struct Case {
    name: &'static str,
    file: &'static str,
    exit: i32,
    /// The line named, where there is one.
    line: Option<u64>,
    says: &'static str,
}

fn make_inputs(dir: &Path) {
    write(dir, "empty.ndjson", "");
    write(
        dir,
        "binary.bin",
        [0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0],
    );
    let full = gzip(
        (0..2000)
            .map(|i| event_line(i) + "\n")
            .collect::<String>()
            .as_bytes(),
    );
    write(dir, "truncated.ndjson.gz", &full[..full.len() / 2]);
    write(
        dir,
        "not-json.ndjson",
        format!("{}\n{{\"user_id\": \n", event_line(1)),
    );
    write(
        dir,
        "array.ndjson",
        "[{\"user_id\":\"u1\",\"event_name\":\"e\"}]\n",
    );
    write(dir, "no-column.csv", "user_id,name\nu1,e\n");
    write(
        dir,
        "too-many.csv",
        "user_id,event_name,note\nu1,e,x\nu2,e,x,extra\n",
    );
    let mut utf8 = event_line(1).into_bytes();
    utf8.extend_from_slice(b"\n{\"user_id\":\"u\xff\",\"event_name\":\"e\"}\n");
    write(dir, "latin1.ndjson", utf8);
    let long = format!(
        "{}\n{{\"user_id\":\"u\",\"event_name\":\"e\",\"properties\":{{\"x\":\"{}\"}}}}\n{}\n",
        event_line(1),
        "a".repeat(10 * 1024 * 1024),
        event_line(3)
    );
    write(dir, "long.ndjson", long);
    std::fs::create_dir_all(dir.join("a-directory")).unwrap();
}

const CASES: &[Case] = &[
    Case {
        name: "a missing file",
        file: "missing.ndjson",
        exit: 2,
        line: None,
        says: "missing.ndjson: No such file",
    },
    Case {
        name: "a directory",
        file: "a-directory",
        exit: 2,
        line: None,
        says: "is a directory",
    },
    Case {
        name: "an empty file",
        file: "empty.ndjson",
        exit: 2,
        line: None,
        says: "is empty: nothing to",
    },
    Case {
        name: "a binary file",
        file: "binary.bin",
        exit: 2,
        line: None,
        says: "looks binary (a NUL byte at byte 7",
    },
    Case {
        name: "a truncated gzip",
        file: "truncated.ndjson.gz",
        exit: 1,
        line: None,
        says: "the gzip data is truncated",
    },
    Case {
        name: "a line that is not JSON",
        file: "not-json.ndjson",
        exit: 1,
        line: Some(2),
        says: "not valid JSON: EOF while parsing",
    },
    Case {
        name: "a JSON array",
        file: "array.ndjson",
        exit: 1,
        line: Some(1),
        says: "expected a JSON object, got an array",
    },
    Case {
        name: "a CSV without a required column",
        file: "no-column.csv",
        exit: 2,
        line: None,
        says: "has no `event_name` column",
    },
    Case {
        name: "a CSV row with too many cells",
        file: "too-many.csv",
        exit: 1,
        line: Some(3),
        says: "4 cells, but the header has 3",
    },
    Case {
        name: "invalid UTF-8",
        file: "latin1.ndjson",
        exit: 1,
        line: Some(2),
        says: "not valid UTF-8 (byte 13",
    },
    Case {
        name: "a 10 MB line",
        file: "long.ndjson",
        exit: 1,
        line: Some(2),
        says: "the line is 10485814 bytes long",
    },
];

#[test]
fn bad_input_gets_a_clear_message_and_the_right_exit_code() {
    let dir = temp_dir("bad-input");
    make_inputs(&dir);
    let server = Server::accepting();
    for case in CASES {
        let out = run(marketap(&dir, None, &["validate", "events", case.file]));
        let said = format!("{}{}", out.stdout, out.stderr);
        assert_eq!(
            out.code,
            Some(case.exit),
            "validate, {}: {out:?}",
            case.name
        );
        assert!(said.contains(case.says), "validate, {}: {said}", case.name);
        if let Some(line) = case.line {
            let place = format!("line {line}");
            assert!(
                said.contains(&place),
                "validate names the line, {}: {said}",
                case.name
            );
        }

        let out = run(marketap(
            &dir,
            Some(&server),
            &["import", "events", case.file, "--output", "json"],
        ));
        assert_eq!(out.code, Some(case.exit), "import, {}: {out:?}", case.name);
        if case.exit == 2 {
            assert!(
                out.stderr.contains(case.says),
                "import, {}: {out:?}",
                case.name
            );
            assert!(out.stdout.is_empty(), "import, {}: {out:?}", case.name);
        } else {
            let summary = out.json();
            let rejects = summary["rejects_file"]
                .as_str()
                .map(|file| std::fs::read_to_string(dir.join(file)));
            let said = format!("{}{summary}{:?}", out.stderr, rejects);
            assert!(said.contains(case.says), "import, {}: {said}", case.name);
            if let Some(line) = case.line {
                let place = format!(r#"\"line\":{line},"#);
                assert!(
                    said.contains(&place),
                    "the rejects file names the line, {}: {said}",
                    case.name
                );
            }
        }
    }
    // The truncated gzip's message names where reading stopped; lines
    // before it were sent.
    let out = run(marketap(
        &dir,
        None,
        &["validate", "events", "truncated.ndjson.gz"],
    ));
    assert!(out.stdout.contains("reading stopped at line"), "{out:?}");
    let items = server.items();
    assert!(
        items.len() > 100,
        "what was read of the truncated gzip was sent"
    );
}
