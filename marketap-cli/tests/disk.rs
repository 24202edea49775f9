//! The files `import` writes, when the disk is against it, run as the real
//! binary against a loopback server: a full disk (a 64 KiB tmpfs, mounted
//! where the test may, skipped with a message where it may not) leaves
//! whole lines only, a summary that counts what is on disk and names only
//! files that exist, and a rerun that skips nothing once space is freed; a
//! path that cannot be written is found before the first request.

mod support;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;
use support::{Server, event_line, marketap, run, temp_dir, write};

/// A small tmpfs, unmounted when dropped (whatever the test did).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `dir`, or says why it cannot.
    fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Gives it `size` of room.
    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success(), "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Each line of a JSON-lines file, parsed: fails on a torn line.
fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} ends in a torn line: {:?}",
        path.display(),
        &text[text.len().saturating_sub(80)..]
    );
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a torn line in {} ({e}): {line}", path.display()))
        })
        .collect()
}

/// An event line without an offset in its timestamp (rejected), padded.
fn naive_line(i: usize) -> String {
    format!(
        r#"{{"user_id":"u{i}","event_name":"mkt_page_view","properties":{{"n":{i},"pad":"{}"}},"timestamp":"2025-01-17T05:39:22"}}"#,
        "x".repeat(150)
    )
}

#[test]
fn a_full_disk_leaves_whole_lines_a_true_summary_and_a_rerun_that_skips_nothing() {
    const N: usize = 3000;
    let dir = temp_dir("disk-full");
    let small = dir.join("small");
    let tmpfs = match Tmpfs::mount(&small, "64k") {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            println!(
                "skipped: cannot mount a tmpfs here ({reason}); run as root to test a full disk"
            );
            return;
        }
    };
    let server = Server::accepting();
    // Every other line is rejected: the rejects fill the disk.
    let text: String = (0..N)
        .map(|i| {
            if i % 2 == 0 {
                event_line(i)
            } else {
                naive_line(i)
            }
        })
        .map(|line| line + "\n")
        .collect();
    let input = write(&dir, "events.ndjson", text);
    let rejects = small.join("rejects.ndjson");
    let checkpoint = small.join("cp");
    let args = [
        "import",
        "events",
        input.to_str().unwrap(),
        "--rejects",
        rejects.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--dead-letter",
        small.join("dead.ndjson").to_str().unwrap(),
        "--batch-size",
        "100",
        "--output",
        "json",
        "-q",
    ]
    .map(str::to_owned);

    let out = run(marketap(
        &dir,
        Some(&server),
        &args.each_ref().map(String::as_str),
    ));
    assert_eq!(out.code, Some(1), "{out:?}");
    let summary = out.json();
    println!("full disk: {summary}");
    assert!(
        summary["stopped"]
            .as_str()
            .is_some_and(|s| s.contains("could not write a rejected line")),
        "{summary}"
    );
    // Whole lines only, and the summary counts exactly those.
    let written = json_lines(&rejects);
    assert!(written.len() < N / 2, "the disk filled up");
    assert_eq!(summary["rejected"], written.len(), "{summary}");
    // No temp file, and the checkpoint named is there and holds its line.
    assert!(!small.join("cp.tmp").exists(), "the temp file is removed");
    match summary["checkpoint_file"].as_str() {
        Some(file) => {
            let saved: Value =
                serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
            assert_eq!(saved["line"], summary["checkpoint_line"], "{summary}");
        }
        None => {
            assert!(!checkpoint.exists());
            assert!(summary["checkpoint_error"].is_string(), "{summary}");
        }
    }

    // Space freed: the same command goes on, and skips nothing.
    tmpfs.resize("8m");
    let again = run(marketap(
        &dir,
        Some(&server),
        &args.each_ref().map(String::as_str),
    ));
    assert_eq!(again.code, Some(1), "{again:?}");
    let summary = again.json();
    assert!(summary.get("stopped").is_none(), "{summary}");
    let mut seen = vec![0_u32; N];
    for item in server.items() {
        seen[item["properties"]["n"].as_u64().unwrap() as usize] += 1;
    }
    let valid = (0..N).step_by(2);
    assert!(valid.clone().all(|i| seen[i] >= 1), "every valid line sent");
    let duplicates: u32 = seen.iter().map(|c| c.saturating_sub(1)).sum();
    assert!(duplicates <= 4 * 100, "{duplicates} sent twice");
    let lines: BTreeSet<u64> = json_lines(&rejects)
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    let invalid: BTreeSet<u64> = (1..N).step_by(2).map(|i| i as u64 + 1).collect();
    assert_eq!(lines, invalid, "every rejected line is in the file");
    drop(tmpfs);
}

#[test]
fn an_unwritable_path_is_found_before_the_first_request() {
    let dir = temp_dir("unwritable");
    let server = Server::start(|_| (202, Duration::ZERO));
    let text: String = (0..3000).map(|i| event_line(i) + "\n").collect();
    let input = write(&dir, "events.ndjson", text);
    let missing = dir.join("no-such-dir");
    for option in ["--checkpoint", "--rejects", "--dead-letter"] {
        let path = missing.join("file");
        let out = run(marketap(
            &dir,
            Some(&server),
            &[
                "import",
                "events",
                input.to_str().unwrap(),
                option,
                path.to_str().unwrap(),
            ],
        ));
        assert_eq!(out.code, Some(2), "{option}: {out:?}");
        assert!(
            out.stderr.contains(path.to_str().unwrap()) && out.stderr.contains("nothing was sent"),
            "{option}: {out:?}"
        );
        assert_eq!(server.requests().len(), 0, "{option}: nothing sent");
    }
    assert!(!dir.join("events.ndjson.checkpoint").exists());
}

#[test]
fn a_dead_letter_that_does_not_fit_leaves_no_file_and_is_not_counted_as_failed() {
    let dir = temp_dir("disk-full-letters");
    let small = dir.join("small");
    let tmpfs = match Tmpfs::mount(&small, "64k") {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            println!(
                "skipped: cannot mount a tmpfs here ({reason}); run as root to test a full disk"
            );
            return;
        }
    };
    // Room for the checkpoint (two pages while it is replaced), not for a
    // letter of 100 events.
    write(&small, "filler", vec![0_u8; 56 * 1024]);
    let server = Server::start(|_| (500, Duration::ZERO));
    let text: String = (0..300).map(|i| event_line(i) + "\n").collect();
    let input = write(&dir, "events.ndjson", text);
    let letters = small.join("dead.ndjson");
    let out = run(marketap(
        &dir,
        Some(&server),
        &[
            "import",
            "events",
            input.to_str().unwrap(),
            "--checkpoint",
            small.join("cp").to_str().unwrap(),
            "--dead-letter",
            letters.to_str().unwrap(),
            "--batch-size",
            "100",
            "--in-flight",
            "1",
            "--max-attempts",
            "1",
            "--output",
            "json",
            "-q",
        ],
    ));
    assert_eq!(out.code, Some(1), "{out:?}");
    let summary = out.json();
    println!("full disk, dead letters: {summary}");
    assert!(!letters.exists(), "whole or absent: {summary}");
    assert_eq!(summary["failed"], 0, "nothing failed is on disk: {summary}");
    assert!(summary.get("dead_letter_file").is_none(), "{summary}");
    assert!(summary["not_sent"].as_u64().unwrap() >= 100, "{summary}");
    assert!(
        summary["stopped"]
            .as_str()
            .is_some_and(|s| s.contains("could not write a dead letter")),
        "{summary}"
    );
    drop(tmpfs);
}
