//! `--encoding`, run as the real binary against a loopback server: a CP949
//! CSV as Korean Excel saves it (Korean headers and values) arrives with
//! its Korean intact, UTF-16 with a byte-order mark is read, and a file
//! that is not UTF-8 is refused with the option that reads it.

mod support;

use encoding_rs::EUC_KR;
use serde_json::json;
use support::{Server, marketap, run, temp_dir, write};

/// `text` as Korean Excel saves "CSV (쉼표로 분리)": CP949, CRLF.
fn cp949(text: &str) -> Vec<u8> {
    let crlf = text.replace('\n', "\r\n");
    let (bytes, _, unmappable) = EUC_KR.encode(&crlf);
    assert!(!unmappable);
    bytes.into_owned()
}

const KOREAN_CSV: &str = "회원번호,이벤트,주문일시,상품명,수량\n\
                          회원-001,mkt_purchase,2024-11-02T14:03:00+09:00,김치찌개 2인분,2\n\
                          회원-002,mkt_purchase,2024-11-02T15:10:00+09:00,떡볶이,1\n";

#[test]
fn a_cp949_csv_with_korean_headers_arrives_with_its_korean_intact() {
    let dir = temp_dir("cp949");
    let server = Server::accepting();
    let input = write(&dir, "주문.csv", cp949(KOREAN_CSV));
    let file = input.to_str().unwrap();
    let mapping = [
        "--column",
        "user_id=회원번호",
        "--column",
        "event_name=이벤트",
        "--column",
        "timestamp=주문일시",
        "--type",
        "수량=number",
    ];
    for encoding in ["cp949", "euc-kr", "auto"] {
        let mut args = vec!["import", "events", file, "--restart", "--output", "json"];
        args.extend(["--encoding", encoding]);
        args.extend(mapping);
        let out = run(marketap(&dir, Some(&server), &args));
        assert_eq!(out.code, Some(0), "{encoding}: {out:?}");
        assert_eq!(out.json()["accepted"], 2, "{encoding}");
    }
    let items = server.items();
    assert_eq!(items.len(), 6);
    assert_eq!(
        items[0],
        json!({
            "user_id": "회원-001", "event_name": "mkt_purchase",
            "properties": {"상품명": "김치찌개 2인분", "수량": 2},
            "timestamp": "2024-11-02T05:03:00Z"
        })
    );
    assert_eq!(items[1]["properties"]["상품명"], "떡볶이");
}

#[test]
fn a_file_that_is_not_utf8_is_refused_with_the_option_that_reads_it() {
    let dir = temp_dir("encoding-hint");
    let server = Server::accepting();
    let input = write(&dir, "주문.csv", cp949(KOREAN_CSV));
    let out = run(marketap(
        &dir,
        Some(&server),
        &["import", "events", input.to_str().unwrap()],
    ));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("looks like CP949 (Korean Excel's CSV)")
            && out.stderr.contains("--encoding cp949"),
        "{out:?}"
    );
    let utf16: Vec<u8> = "\u{feff}user_id,event_name\nu1,mkt_login\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let input = write(&dir, "unicode.csv", utf16);
    let out = run(marketap(
        &dir,
        None,
        &["validate", "events", input.to_str().unwrap()],
    ));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--encoding utf-16le"), "{out:?}");
    assert!(server.requests().is_empty());
}

#[test]
fn utf16_with_a_byte_order_mark_is_read_and_bad_bytes_are_rejected_lines() {
    let dir = temp_dir("utf16");
    let server = Server::accepting();
    let text = "\u{feff}{\"user_id\":\"사용자1\",\"event_name\":\"mkt_login\"}\r\n\
                {\"user_id\":\"사용자2\",\"event_name\":\"mkt_login\"}\r\n";
    let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    for (name, bytes, encoding) in [
        ("le.ndjson", le.clone(), "utf-16le"),
        ("le-auto.ndjson", le, "auto"),
        ("be.ndjson", be, "utf-16be"),
    ] {
        let input = write(&dir, name, bytes);
        let out = run(marketap(
            &dir,
            Some(&server),
            &[
                "import",
                "events",
                input.to_str().unwrap(),
                "--encoding",
                encoding,
            ],
        ));
        assert_eq!(out.code, Some(0), "{name}: {out:?}");
    }
    let users: Vec<_> = server
        .items()
        .iter()
        .map(|i| i["user_id"].clone())
        .collect();
    assert_eq!(users, ["사용자1", "사용자2"].repeat(3));

    // A byte CP949 cannot decode rejects its line, never alters it.
    let mut bytes = cp949(KOREAN_CSV);
    let at = bytes.len() - 4;
    bytes.insert(at, 0xFF);
    let input = write(&dir, "bad.csv", bytes);
    let out = run(marketap(
        &dir,
        None,
        &[
            "validate",
            "events",
            input.to_str().unwrap(),
            "--encoding",
            "cp949",
            "--column",
            "user_id=회원번호",
            "--column",
            "event_name=이벤트",
            "--column",
            "timestamp=주문일시",
            "--output",
            "json",
        ],
    ));
    assert_eq!(out.code, Some(1), "{out:?}");
    let report = out.json();
    assert_eq!(report["valid"], 1, "{report}");
    assert_eq!(
        report["problems_by_kind"]["not valid in its --encoding"], 1,
        "{report}"
    );
}

#[test]
fn help_shows_a_korean_excel_export_read_and_imported() {
    let dir = temp_dir("help");
    for command in ["import", "validate"] {
        let out = run(marketap(&dir, None, &[command, "--help"]));
        assert_eq!(out.code, Some(0), "{out:?}");
        for shown in [
            "--encoding cp949",
            "주문일시",
            "'%Y.%m.%d %H:%M'",
            "2024.11.02 14:03",
        ] {
            assert!(out.stdout.contains(shown), "{command}: {shown}: {out:?}");
        }
    }
}
