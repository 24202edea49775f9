//! The spool's fault table: each test damages or refuses the storage in
//! one way and names what happened to every record. A full disk and a
//! read-only one are in `tests/spool.rs`, through the ingestor.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{Spool, SpoolConfig, SpoolError, Stored, SyncPolicy, format, inspect};

fn body(i: u64) -> Vec<u8> {
    format!(r#"{{"user_id":"u{i}","event_name":"mkt_page_view","properties":{{"seq":{i}}}}}"#)
        .into_bytes()
}

/// An opened spool, once its storage thread has checked its records.
async fn opened(spool: Result<Spool, SpoolError>) -> Spool {
    let spool = spool.unwrap();
    spool.opened().await;
    spool
}

fn config(dir: &Path) -> SpoolConfig {
    SpoolConfig::new(dir)
}

async fn append_all(spool: &Spool, range: std::ops::Range<u64>) {
    for i in range {
        spool.append(0, body(i), false).await.expect("written");
    }
}

/// Reads everything the spool hands out now, without acknowledging.
async fn read_now(spool: &Spool) -> Vec<Stored> {
    let mut all = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(200), spool.read(1000)).await {
            Ok(records) if !records.is_empty() => all.extend(records),
            _ => return all,
        }
    }
}

/// The `seq` property of each record's body: which items came back.
fn items(records: &[Stored]) -> Vec<u64> {
    records
        .iter()
        .map(|r| {
            let value: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
            value["properties"]["seq"].as_u64().expect("seq")
        })
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    found.sort();
    found
}

/// The file offset of record `i` in a segment holding records 0.. of
/// [`body`] (whose lengths vary with the digits of `i`).
fn offset_of(i: u64) -> u64 {
    format::SEGMENT_HEADER as u64
        + (0..i)
            .map(|j| format::record_len(body(j).len()))
            .sum::<u64>()
}

/// Writes records `0..n` into a fresh spool and closes it.
async fn spool_of(dir: &Path, n: u64) {
    let spool = opened(Spool::open(&config(dir), 1_000_000)).await;
    append_all(&spool, 0..n).await;
    spool.close().await;
}

#[tokio::test]
async fn records_come_back_oldest_first_and_leave_once_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    append_all(&spool, 0..100).await;
    assert_eq!(spool.stats().items, 100);
    let read = read_now(&spool).await;
    assert_eq!(items(&read), (0..100).collect::<Vec<_>>());
    assert!(read.windows(2).all(|w| w[0].seq < w[1].seq));
    // Handed out but not acknowledged: still in the spool.
    assert_eq!(spool.stats().items, 100);
    spool.ack(read.iter().map(|r| r.seq).collect());
    spool.close().await;

    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    assert_eq!(spool.stats().items, 0);
    assert!(read_now(&spool).await.is_empty());
}

#[tokio::test]
async fn a_reopened_spool_delivers_what_was_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    append_all(&spool, 0..10).await;
    let read = read_now(&spool).await;
    // 0..4 delivered; 4..10 handed out, their requests never finished.
    spool.ack(read[..4].iter().map(|r| r.seq).collect());
    spool.close().await;

    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    assert_eq!(spool.stats().items, 6);
    append_all(&spool, 10..12).await;
    assert_eq!(items(&read_now(&spool).await), (4..12).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_reader_stays_within_its_window_of_the_oldest_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let spool = opened(Spool::open(&config(dir.path()), 3)).await;
    append_all(&spool, 0..10).await;
    let first = read_now(&spool).await;
    assert_eq!(items(&first), [0, 1, 2]);
    // Acknowledging a newer one does not move the window: 0 is still out.
    spool.ack(vec![first[2].seq]);
    assert!(read_now(&spool).await.is_empty());
    spool.ack(vec![first[0].seq]);
    assert_eq!(items(&read_now(&spool).await), [3]);
}

#[tokio::test]
async fn finished_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let small = config(dir.path()).with_segment_bytes(1_000);
    let spool = opened(Spool::open(&small, 1_000)).await;
    append_all(&spool, 0..50).await;
    assert!(
        segments(dir.path()).len() >= 4,
        "{:?}",
        segments(dir.path())
    );
    let read = read_now(&spool).await;
    assert_eq!(items(&read), (0..50).collect::<Vec<_>>());
    spool.ack(read.iter().map(|r| r.seq).collect());
    spool.close().await;
    // Only the segment being written when it closed is left.
    assert_eq!(segments(dir.path()).len(), 1);
}

#[tokio::test]
async fn a_torn_tail_loses_only_the_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    spool_of(dir.path(), 10).await;
    let segment = &segments(dir.path())[0];
    let len = fs::metadata(segment).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .unwrap()
        .set_len(len - 5)
        .unwrap();

    let seen = inspect(dir.path()).unwrap();
    assert_eq!(seen.items, 9);
    assert_eq!(seen.corrupted.len(), 1);
    assert_eq!(
        (seen.corrupted[0].start, seen.corrupted[0].end),
        (offset_of(9), len - 5)
    );

    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    let stats = spool.stats();
    assert_eq!((stats.items, stats.corrupted_ranges), (9, 1));
    assert_eq!(stats.corrupted_bytes, len - 5 - offset_of(9));
    assert_eq!(items(&read_now(&spool).await), (0..9).collect::<Vec<_>>());
    spool.close().await;
    // Set aside, and the segment rewritten: the next opening finds it clean.
    let aside: Vec<_> = fs::read_dir(dir.path().join("corrupt")).unwrap().collect();
    assert_eq!(aside.len(), 1);
    assert!(inspect(dir.path()).unwrap().corrupted.is_empty());
}

#[tokio::test]
async fn a_flipped_byte_loses_only_its_record() {
    let dir = tempfile::tempdir().unwrap();
    spool_of(dir.path(), 10).await;
    let segment = &segments(dir.path())[0];
    let mut bytes = fs::read(segment).unwrap();
    let at = offset_of(4) as usize + format::RECORD_HEADER + 5;
    bytes[at] ^= 0x01;
    fs::write(segment, &bytes).unwrap();

    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    assert_eq!(spool.stats().corrupted_ranges, 1);
    assert_eq!(spool.stats().corrupted_bytes, offset_of(5) - offset_of(4));
    assert_eq!(items(&read_now(&spool).await), [0, 1, 2, 3, 5, 6, 7, 8, 9]);
    spool.close().await;
    let aside = fs::read_dir(dir.path().join("corrupt"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        fs::read(aside).unwrap(),
        bytes[offset_of(4) as usize..offset_of(5) as usize]
    );
}

#[tokio::test]
async fn a_zero_filled_region_loses_only_the_records_it_touches() {
    let dir = tempfile::tempdir().unwrap();
    spool_of(dir.path(), 20).await;
    let segment = &segments(dir.path())[0];
    let mut bytes = fs::read(segment).unwrap();
    // From inside record 5 to inside record 8.
    bytes[offset_of(5) as usize + 3..offset_of(8) as usize + 3].fill(0);
    fs::write(segment, &bytes).unwrap();

    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    let expected: Vec<u64> = (0..5).chain(9..20).collect();
    assert_eq!(items(&read_now(&spool).await), expected);
    assert_eq!(spool.stats().corrupted_ranges, 1);
    assert_eq!(spool.stats().corrupted_bytes, offset_of(9) - offset_of(5));
}

#[tokio::test]
async fn a_truncated_header_sets_its_segment_aside_and_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let small = config(dir.path()).with_segment_bytes(1_000);
    let spool = opened(Spool::open(&small, 1_000_000)).await;
    append_all(&spool, 0..30).await;
    spool.close().await;
    let all = segments(dir.path());
    assert!(all.len() >= 3);
    // The second segment: which records it held.
    let lost: Vec<u64> = {
        let bytes = fs::read(&all[1]).unwrap();
        format::Reader::new(&bytes[format::SEGMENT_HEADER..], 0)
            .map(|entry| match entry {
                format::Entry::Record { record, .. } => record.seq,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    fs::OpenOptions::new()
        .write(true)
        .open(&all[1])
        .unwrap()
        .set_len(10)
        .unwrap();

    let spool = opened(Spool::open(&small, 1_000_000)).await;
    let expected: Vec<u64> = (0..30).filter(|i| !lost.contains(i)).collect();
    assert!(!lost.is_empty());
    assert_eq!(items(&read_now(&spool).await), expected);
    assert_eq!(spool.stats().corrupted_ranges, 1);
    assert_eq!(spool.stats().corrupted_bytes, 10);
}

#[tokio::test]
async fn a_future_format_version_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    spool_of(dir.path(), 3).await;
    let segment = &segments(dir.path())[0];
    let mut bytes = fs::read(segment).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    fs::write(segment, &bytes).unwrap();

    let error = Spool::open(&config(dir.path()), 1_000).err().unwrap();
    assert!(
        matches!(
            error,
            SpoolError::Version {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("format version 2"), "{error}");
    assert_eq!(fs::read(segment).unwrap(), bytes, "nothing changed");
    assert!(matches!(
        inspect(dir.path()),
        Err(SpoolError::Version { .. })
    ));
}

#[tokio::test]
async fn a_second_opener_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    let error = Spool::open(&config(dir.path()), 1_000).err().unwrap();
    assert!(matches!(error, SpoolError::Locked { .. }), "{error:?}");
    assert!(error.to_string().contains("in use"), "{error}");
    assert!(matches!(
        inspect(dir.path()),
        Err(SpoolError::Locked { .. })
    ));
    spool.close().await;
    // Released on close.
    Spool::open(&config(dir.path()), 1_000)
        .unwrap()
        .close()
        .await;
}

#[tokio::test]
async fn an_unusable_directory_is_an_error_when_opening() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, b"not a directory").unwrap();
    let error = Spool::open(&config(&file.join("spool")), 1_000)
        .err()
        .unwrap();
    assert!(matches!(error, SpoolError::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("a-file"), "{error}");
}

#[tokio::test]
async fn past_the_byte_cap_try_append_hands_the_item_back_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let capped = config(dir.path()).with_max_bytes(1 << 20);
    let spool = opened(Spool::open(&capped, 1_000_000)).await;
    let big = vec![b'x'; 100_000];
    let mut written = 0;
    loop {
        match spool.try_append(1, big.clone(), false) {
            Ok(write) => {
                write.await.unwrap();
                written += 1;
            }
            Err(back) => {
                assert_eq!(back, big, "the body comes back whole");
                break;
            }
        }
    }
    assert_eq!(
        written, 10,
        "1 MiB holds ten 100 kB records and their framing"
    );
    // A waiting append goes on once a record is acknowledged.
    let waiting = tokio::spawn({
        let spool = spool.clone();
        let big = big.clone();
        async move { spool.append(1, big, false).await }
    });
    let first = spool.read(1).await;
    spool.ack(vec![first[0].seq]);
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("room came back")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_always_policy_writes_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let always = config(dir.path()).with_sync(SyncPolicy::Always);
    let spool = opened(Spool::open(&always, 1_000)).await;
    let writes: Vec<_> = (0..50)
        .map(|i| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.append(0, body(i), false).await })
        })
        .collect();
    for write in writes {
        write.await.unwrap().unwrap();
    }
    spool.close().await;
    let spool = opened(Spool::open(&always, 1_000)).await;
    let mut seen = items(&read_now(&spool).await);
    seen.sort();
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_spool_and_keeps_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    append_all(&spool, 0..5).await;
    let copy = spool.clone();
    drop(spool);
    copy.append(0, body(5), false)
        .await
        .expect("a clone keeps it open");
    drop(copy);
    // The storage thread ends and releases the lock without a close().
    let spool = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || loop {
            match Spool::open(&config(&dir), 1_000) {
                Err(SpoolError::Locked { .. }) => continue,
                other => return other.unwrap(),
            }
        }
    })
    .await
    .unwrap();
    // Checking the records (and syncing the new segment) can take longer
    // than read_now's wait on a busy disk: read once they are checked.
    spool.opened().await;
    assert_eq!(items(&read_now(&spool).await), (0..6).collect::<Vec<_>>());
}

/// Every error that can hold a spool error stays unwind-safe, as the
/// released ones were (cargo semver-checks caught an `io::Error` inside).
#[test]
fn errors_holding_a_spool_error_stay_unwind_safe() {
    fn unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe + Send + Sync>() {}
    unwind_safe::<SpoolError>();
    unwind_safe::<crate::ConfigError>();
    unwind_safe::<crate::EnqueueError<crate::Event>>();
}

/// Writes record `i`, asking for it to be held; whether it is.
async fn append_held(spool: &Spool, i: u64) -> (u64, bool) {
    let written = spool.append(0, body(i), true).await.expect("written");
    (written.seq, written.body.is_some())
}

#[tokio::test]
async fn held_records_are_never_read_back_while_open_and_come_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    // The reader has caught up: held records are passed over as written.
    let (first, held) = append_held(&spool, 0).await;
    assert!(held);
    append_all(&spool, 1..3).await;
    // Behind the two unread records, held ones are skipped when reached.
    let (_, held) = append_held(&spool, 3).await;
    assert!(held);
    append_all(&spool, 4..5).await;
    assert_eq!(items(&read_now(&spool).await), [1, 2, 4]);
    // Only the first held record is acknowledged: the other one is still
    // the caller's, and the spool keeps it.
    spool.ack(vec![first]);
    spool.close().await;

    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    assert_eq!(items(&read_now(&spool).await), [1, 2, 3, 4]);
}

#[tokio::test]
async fn a_held_record_counts_as_unacknowledged_for_the_window_and_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let spool = opened(Spool::open(&config(dir.path()), 3)).await;
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(append_held(&spool, i).await);
    }
    // A window of 3 past the oldest unacknowledged record: the fourth is
    // not held, and the reader hands it out only once room is made.
    assert_eq!(
        held.iter().map(|h| h.1).collect::<Vec<_>>(),
        [true, true, true, false]
    );
    assert!(read_now(&spool).await.is_empty());
    spool.ack(vec![held[0].0]);
    assert_eq!(items(&read_now(&spool).await), [3]);
    spool.close().await;
    // Records 1 and 2 were held and never acknowledged: they come back;
    // record 0 was acknowledged and does not.
    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    assert_eq!(items(&read_now(&spool).await), [1, 2, 3]);
}

#[tokio::test]
async fn a_spool_that_keeps_up_is_written_and_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let spool = opened(Spool::open(
        &config(dir.path()).with_segment_bytes(400),
        1_000,
    ))
    .await;
    for i in 0..50 {
        let (seq, held) = append_held(&spool, i).await;
        assert!(held, "record {i} is held");
        spool.ack(vec![seq]);
    }
    assert!(read_now(&spool).await.is_empty());
    assert_eq!(spool.stats().items, 0);
    // Each sealed segment was deleted once its records were acknowledged.
    assert!(
        segments(dir.path()).len() <= 2,
        "{:?}",
        segments(dir.path())
    );
    spool.close().await;
    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    assert!(read_now(&spool).await.is_empty());
}

#[tokio::test]
async fn a_damaged_ledger_sends_everything_again_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    append_all(&spool, 0..6).await;
    let read = read_now(&spool).await;
    spool.ack(read[..4].iter().map(|r| r.seq).collect());
    spool.close().await;
    // The ledger is 12 bytes (the watermark and its CRC), overwritten in
    // place: after four acknowledgements it says 4.
    let ledger = dir.path().join("ledger");
    let bytes = fs::read(&ledger).unwrap();
    assert_eq!(bytes.len(), 12);
    assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()), 4);
    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    assert_eq!(items(&read_now(&spool).await), [4, 5]);
    spool.close().await;

    // A torn or flipped ledger fails its CRC: everything comes back.
    let mut torn = fs::read(&ledger).unwrap();
    torn[0] ^= 0xff;
    fs::write(&ledger, torn).unwrap();
    let spool = opened(Spool::open(&config(dir.path()), 1_000)).await;
    assert_eq!(items(&read_now(&spool).await), [0, 1, 2, 3, 4, 5]);
}

/// The interval policy's `fsync` runs on a thread of its own: appends go
/// on while it waits for a slow disk (a shut gate here), and closing waits
/// for it.
#[tokio::test]
async fn appends_go_on_while_an_interval_sync_waits_for_the_disk() {
    use super::store::sync_gate;
    let dir = tempfile::tempdir().unwrap();
    sync_gate::shut(dir.path());
    let every_ms = config(dir.path()).with_sync(SyncPolicy::Interval(Duration::from_millis(1)));
    let spool = opened(Spool::open(&every_ms, 1_000)).await;
    append_all(&spool, 0..1).await;
    let stuck = tokio::time::timeout(Duration::from_secs(10), async {
        while sync_gate::waiting(dir.path()) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    stuck.await.expect("the first write's sync is asked for");
    tokio::time::timeout(Duration::from_secs(10), append_all(&spool, 1..100))
        .await
        .expect("appends do not wait for a sync stuck on the disk");
    assert_eq!(spool.stats().items, 100);
    sync_gate::open(dir.path());
    spool.close().await;

    let spool = opened(Spool::open(&every_ms, 1_000)).await;
    assert_eq!(items(&read_now(&spool).await), (0..100).collect::<Vec<_>>());
}

/// Callers appending at once share writes: the storage thread waits for
/// as many as the last group held, so 64 callers appending 20 records each
/// take far fewer writes than records, and every record is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_appending_at_once_share_their_writes() {
    let dir = tempfile::tempdir().unwrap();
    let spool = opened(Spool::open(&config(dir.path()), 1 << 20)).await;
    let (callers, each) = (64, 20);
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let spool = spool.clone();
            tokio::spawn(async move {
                append_all(&spool, caller * each..(caller + 1) * each).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = spool.stats();
    assert_eq!(stats.items, callers * each);
    assert!(
        stats.commits <= callers * each / 8,
        "{} writes for {} records",
        stats.commits,
        callers * each
    );
    let mut read = items(&read_now(&spool).await);
    read.sort_unstable();
    assert_eq!(read, (0..callers * each).collect::<Vec<_>>());
}
