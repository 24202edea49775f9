//! The spool's storage thread: it owns the files, and the async side talks
//! to it through an inbox, so no Tokio worker waits for the disk.
//!
//! - **Group commit.** The thread takes every append waiting in the
//!   inbox, writes them with one `write` (and `fsync`s, with
//!   [`SyncPolicy::Always`]), then wakes all their callers together. While
//!   several callers append at once, it waits for as many as the last
//!   group held, or for [`LINGER`], and is woken once per group, not once
//!   per append. The
//!   interval policy's `fsync`s run on a syncer thread of their own, so
//!   appends go on while one waits for the disk. A write that fails is cut
//!   back off the file, so nothing half-written stays, and every caller of
//!   the group gets the error.
//! - **Reading back.** Records are read lazily, oldest first, at most as
//!   many as asked for; a sealed segment is read whole (segments are small),
//!   the one being written from where the reader left off.
//! - **Held records.** An append may ask to be *held*: its caller keeps the
//!   item in memory and delivers it itself, so it is never read back while
//!   this spool is open (it counts as handed out from the moment it is
//!   written). The thread agrees within the same window as the reader, and
//!   when the reader has caught up it simply moves past the record, so a
//!   spool that keeps up with its callers is written and never read.
//! - **Acknowledgement.** A record handed out stays in the spool until it is
//!   acknowledged. The ledger stores the lowest sequence number not yet
//!   acknowledged, with its CRC, in 12 bytes overwritten in place on every
//!   acknowledgement (one small write into one sector: a crashed process
//!   leaves the old value or the new one, and a torn one fails its CRC,
//!   which means "deliver everything again", never a loss); segments
//!   wholly below it are deleted. After a crash, records at or
//!   above the ledger's number are delivered again: at most the records
//!   handed out and not yet acknowledged when the ledger was last written.
//! - **Opening.** The lock file makes the opener the only owner. Every
//!   segment is checked record by record: a damaged region is logged with
//!   its byte range, counted, copied into `corrupt/`, and the segment is
//!   rewritten with its good records, so the next opening finds it clean.

use std::{
    collections::{BTreeMap, VecDeque},
    fs::{self, File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{Semaphore, oneshot, watch};

use super::{
    CorruptRange, Inspection, SpoolConfig, SpoolError, SyncPolicy,
    format::{self, Entry, Header},
};
use crate::lock::lock;

/// The longest the storage thread waits for more appends once one came,
/// when the last group held more than one: short beside a disk's write, and
/// well within what `track` may take. It stops waiting as soon as as many
/// have come as the last group held.
const LINGER: Duration = Duration::from_micros(200);
const LOCK_FILE: &str = "spool.lock";
const LEDGER_FILE: &str = "ledger";
const CORRUPT_DIR: &str = "corrupt";
const SEGMENT_EXT: &str = "seg";

/// A record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Its place in the spool, to acknowledge it by.
    pub seq: u64,
    /// The kind tag given to [`Spool::append`].
    pub kind: u8,
    /// When it was appended.
    pub enqueued_at: SystemTime,
    /// The body given to [`Spool::append`].
    pub body: Vec<u8>,
}

/// The spool's counters now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SpoolStats {
    /// Records not yet acknowledged.
    pub items: u64,
    /// Their bytes, framing included.
    pub bytes: u64,
    /// Damaged regions found when opening.
    pub corrupted_ranges: u64,
    /// Their bytes.
    pub corrupted_bytes: u64,
    /// Group commits that failed (each caller got the error).
    pub write_errors: u64,
    /// Records found when opening (0 until [`Spool::opened`]).
    pub recovered: u64,
    /// Group commits written: one `write` each.
    pub commits: u64,
}

#[derive(Default)]
struct Counters {
    items: AtomicU64,
    bytes: AtomicU64,
    corrupted_ranges: AtomicU64,
    corrupted_bytes: AtomicU64,
    write_errors: AtomicU64,
    recovered: AtomicU64,
    commits: AtomicU64,
}

/// A handle on an open spool; clones share it. The storage thread closes
/// the files (a last sync, the ledger, the lock) when the last handle is
/// dropped or [`close`](Spool::close) is called.
#[derive(Clone)]
pub(crate) struct Spool {
    shared: Arc<Shared>,
    /// Held by the handles only: the thread ends when the last is dropped.
    sender: Arc<Sender>,
}

/// The handles' side of the inbox: dropping the last handle drops it,
/// which tells the thread to finish.
struct Sender(Arc<Inbox>);

impl Drop for Sender {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.disconnected = true;
        drop(state);
        self.0.ready.notify_one();
    }
}

/// What the handles ask of the storage thread, and the condition variable
/// it waits on.
struct Inbox {
    state: Mutex<InboxState>,
    ready: Condvar,
    /// The longest wait for a group to fill: [`LINGER`].
    linger: Duration,
}

#[derive(Default)]
struct InboxState {
    appends: Vec<Waiting>,
    commands: Vec<Command>,
    /// While the thread waits: how many appends wake it (a command always
    /// does). Zero while it works: nobody needs to wake it.
    wake_at: usize,
    /// The last handle is gone.
    disconnected: bool,
}

impl Inbox {
    fn new(linger: Duration) -> Self {
        Self {
            state: Mutex::default(),
            ready: Condvar::new(),
            linger,
        }
    }

    /// Adds an append, and wakes the thread if it waits for this many.
    fn append(&self, waiting: Waiting) -> Result<(), Waiting> {
        self.post(waiting, |state, waiting| {
            state.appends.push(waiting);
            state.appends.len() >= state.wake_at
        })
    }

    /// Adds a command, and wakes the thread if it waits.
    fn command(&self, command: Command) -> Result<(), Command> {
        self.post(command, |state, command| {
            state.commands.push(command);
            true
        })
    }

    /// Puts `message` in with `push`, which says whether it is what a
    /// waiting thread waits for; wakes the thread if it waits and it is.
    /// Hands `message` back once the last handle is gone.
    fn post<M>(&self, message: M, push: impl FnOnce(&mut InboxState, M) -> bool) -> Result<(), M> {
        let mut state = lock(&self.state);
        if state.disconnected {
            return Err(message);
        }
        let waited_for = push(&mut state, message);
        let wake = state.wake_at != 0 && waited_for;
        if wake {
            state.wake_at = 0;
        }
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// The storage thread's wait: for anything, up to `wait`; then, when
    /// appends came and the `last` group held more than one, for as many
    /// appends as it held, up to its linger, so that callers appending at
    /// once share one write and this thread is woken once for them all.
    /// Moves what came into `group` and `commands`; whether the last handle
    /// is gone.
    fn take(
        &self,
        wait: Duration,
        last: usize,
        group: &mut Vec<Waiting>,
        commands: &mut Vec<Command>,
    ) -> bool {
        let mut state = lock(&self.state);
        let idle = |state: &InboxState| {
            state.appends.is_empty() && state.commands.is_empty() && !state.disconnected
        };
        state = self.wait_while(state, wait, 1, idle);
        if last > 1 && !state.appends.is_empty() {
            let short = |state: &InboxState| {
                state.appends.len() < last && state.commands.is_empty() && !state.disconnected
            };
            state = self.wait_while(state, self.linger, last, short);
        }
        std::mem::swap(group, &mut state.appends);
        commands.append(&mut state.commands);
        state.disconnected
    }

    /// Waits up to `wait` while `waiting` holds, to be woken by the
    /// `wake_at`th append or any command.
    fn wait_while<'a>(
        &self,
        mut state: MutexGuard<'a, InboxState>,
        wait: Duration,
        wake_at: usize,
        waiting: impl Fn(&InboxState) -> bool,
    ) -> MutexGuard<'a, InboxState> {
        let deadline = Instant::now() + wait;
        while waiting(&state) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            state.wake_at = wake_at;
            state = match self.ready.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        state.wake_at = 0;
        state
    }
}

struct Shared {
    /// Free bytes under the cap: an append takes its record's size, an
    /// acknowledgement gives it back.
    room: Semaphore,
    /// Bytes held past the cap when the spool was opened with a smaller
    /// one: acknowledgements pay this back before they free room.
    debt: Mutex<u64>,
    counters: Counters,
    path: PathBuf,
    /// True once the storage thread has checked every record.
    opened: watch::Sender<bool>,
}

/// A record written by [`Spool::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    /// Its place in the spool, to acknowledge it by.
    pub seq: u64,
    /// When it was written.
    pub enqueued_at: SystemTime,
    /// The body given to [`Spool::append`], back to its caller when the
    /// record is *held*: asked for, and within the reader's window. A held
    /// record is never read back while the spool is open; the caller
    /// delivers it (the body is its JSON, to send) and acknowledges it.
    pub body: Option<Vec<u8>>,
}

type Reply = oneshot::Sender<Result<Written, SpoolError>>;

/// An append waiting for its group commit.
struct Waiting {
    kind: u8,
    body: Vec<u8>,
    hold: bool,
    reply: Reply,
}

enum Command {
    Read {
        max: usize,
        reply: oneshot::Sender<Vec<Stored>>,
    },
    Ack(Vec<u64>),
    Close(oneshot::Sender<()>),
}

impl Spool {
    /// Opens (or creates) the spool at `config.path()` and starts its
    /// storage thread. What must fail at once fails here, on the caller's
    /// thread, reading only a few bytes per file: another owner (the lock),
    /// a segment of another format version, a directory that cannot be
    /// written. Checking every record, setting damage aside and counting
    /// what is left happen on the storage thread, before it serves the
    /// first command, so no runtime worker reads the whole spool; see
    /// [`opened`](Self::opened).
    ///
    /// The reader hands out records at most `window` sequence numbers past
    /// the oldest one not yet acknowledged (the ingestor's capacity), which
    /// bounds what a crash delivers twice.
    pub(crate) fn open(config: &SpoolConfig, window: u64) -> Result<Spool, SpoolError> {
        let store = Store::open(config, window)?;
        let max = usize::try_from(config.max_bytes()).unwrap_or(usize::MAX);
        let (opened, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            room: Semaphore::new(max.min(Semaphore::MAX_PERMITS)),
            debt: Mutex::new(0),
            counters: Counters::default(),
            path: config.path().to_owned(),
            opened,
        });
        let inbox = Arc::new(Inbox::new(LINGER));
        let thread_shared = shared.clone();
        let thread_inbox = inbox.clone();
        std::thread::Builder::new()
            .name("marketap-spool".into())
            .spawn(move || store.run(&thread_inbox, &thread_shared))
            .map_err(|error| SpoolError::io("start a thread for", config.path(), error))?;
        Ok(Spool {
            shared,
            sender: Arc::new(Sender(inbox)),
        })
    }

    /// Waits until the storage thread has checked the spool's records: from
    /// then on [`stats`](Self::stats) counts what it held.
    pub(crate) async fn opened(&self) {
        let mut opened = self.shared.opened.subscribe();
        // An error means the thread is gone: nothing more to wait for.
        let _ = opened.wait_for(|opened| *opened).await;
    }

    fn send(&self, command: Command) -> Result<(), Command> {
        self.sender.0.command(command)
    }

    /// Writes a record: waits while the spool is at its byte cap, then
    /// until the group commit that holds it is written (and synced, with
    /// [`SyncPolicy::Always`]). With `hold`, asks for the record to be
    /// held by the caller ([`Written::body`]).
    pub(crate) async fn append(
        &self,
        kind: u8,
        body: Vec<u8>,
        hold: bool,
    ) -> Result<Written, SpoolError> {
        let size = record_permits(body.len());
        self.shared
            .room
            .acquire_many(size)
            .await
            .map_err(|_| SpoolError::Closed)?
            .forget();
        self.commit(kind, body, hold, size).await
    }

    /// Writes a record if there is room under the byte cap now; hands the
    /// body back if not. The returned future ends when the write does.
    pub(crate) fn try_append(
        &self,
        kind: u8,
        body: Vec<u8>,
        hold: bool,
    ) -> Result<impl Future<Output = Result<Written, SpoolError>> + Send + 'static, Vec<u8>> {
        let size = record_permits(body.len());
        match self.shared.room.try_acquire_many(size) {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(body),
        }
        let spool = self.clone();
        Ok(async move { spool.commit(kind, body, hold, size).await })
    }

    async fn commit(
        &self,
        kind: u8,
        body: Vec<u8>,
        hold: bool,
        size: u32,
    ) -> Result<Written, SpoolError> {
        let (reply, written) = oneshot::channel();
        let waiting = Waiting {
            kind,
            body,
            hold,
            reply,
        };
        let result = match self.sender.0.append(waiting) {
            Ok(()) => written.await.unwrap_or(Err(SpoolError::Closed)),
            Err(_) => Err(SpoolError::Closed),
        };
        if result.is_err() {
            self.shared.room.add_permits(size as usize);
        }
        result
    }

    /// The next records not yet handed out, oldest first, at most `max`;
    /// waits until there is one. Empty once the spool is closed.
    pub(crate) async fn read(&self, max: usize) -> Vec<Stored> {
        let (reply, records) = oneshot::channel();
        if self.send(Command::Read { max, reply }).is_err() {
            return Vec::new();
        }
        records.await.unwrap_or_default()
    }

    /// Removes delivered (or finally failed) records and frees their room.
    pub(crate) fn ack(&self, seqs: Vec<u64>) {
        if !seqs.is_empty() {
            let _ = self.send(Command::Ack(seqs));
        }
    }

    /// Syncs, writes the ledger and releases the lock; appends and reads
    /// after it fail. Waits for the storage thread to finish.
    pub(crate) async fn close(&self) {
        let (reply, closed) = oneshot::channel();
        if self.send(Command::Close(reply)).is_ok() {
            let _ = closed.await;
        }
    }

    pub(crate) fn stats(&self) -> SpoolStats {
        let c = &self.shared.counters;
        SpoolStats {
            items: c.items.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            corrupted_ranges: c.corrupted_ranges.load(Ordering::Relaxed),
            corrupted_bytes: c.corrupted_bytes.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            recovered: c.recovered.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
        }
    }

    /// The spool's directory.
    pub(crate) fn path(&self) -> &Path {
        &self.shared.path
    }
}

fn record_permits(body_len: usize) -> u32 {
    u32::try_from(format::record_len(body_len)).unwrap_or(u32::MAX)
}

impl Shared {
    /// Gives acknowledged bytes back to the room, after any debt.
    fn free(&self, bytes: u64) {
        let mut debt = lock(&self.debt);
        let paid = bytes.min(*debt);
        *debt -= paid;
        drop(debt);
        let freed = usize::try_from(bytes - paid).unwrap_or(usize::MAX);
        if freed > 0 {
            self.room.add_permits(freed);
        }
    }
}

/// A group of records just written: the first one's sequence number, when,
/// and whether the reader had read everything before it.
struct GroupWritten {
    first: u64,
    at: SystemTime,
    caught_up: bool,
}

/// A segment file (named by the sequence number of its first record).
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Bytes in the file, header included.
    len: u64,
    /// The last sequence number in it, if any record is.
    last: Option<u64>,
}

/// Where the reader is: the segment index in `segments` and the offset.
struct Cursor {
    segment: usize,
    offset: u64,
    /// A sealed segment's bytes, read whole when the reader reaches it.
    loaded: Option<Vec<u8>>,
}

/// The storage thread's state.
struct Store {
    dir: PathBuf,
    sync: SyncPolicy,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    /// The last segment's open file, for appending; `None` after a failed
    /// rotation, until the next append makes one.
    active: Option<File>,
    next_seq: u64,
    cursor: Cursor,
    /// Records handed out (or held) and not acknowledged, with their sizes.
    handed_out: BTreeMap<u64, u64>,
    /// Held records past the reader's cursor, ascending: it skips them.
    held_ahead: VecDeque<u64>,
    /// The sequence number after the last record read (handed out or
    /// skipped as acknowledged before).
    read_upto: u64,
    /// How far past the oldest unacknowledged record the reader may go:
    /// this bounds what a crash sends twice.
    window: u64,
    /// Acknowledged below this.
    watermark: u64,
    ledger_written: u64,
    /// The ledger file, open for overwriting; `None` until first written.
    ledger: Option<File>,
    dirty: bool,
    last_sync: Instant,
    live_items: u64,
    live_bytes: u64,
    corrupted: Vec<CorruptRange>,
    pending_read: Option<(usize, oneshot::Sender<Vec<Stored>>)>,
    /// Segments found when opening, checked by the storage thread first.
    to_recover: Vec<PathBuf>,
    /// Runs the interval policy's syncs.
    syncer: Syncer,
    _lock: File,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.{SEGMENT_EXT}")
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SpoolError + 'a {
    move |error| SpoolError::io(action, path, error)
}

/// Takes the spool's lock file. A lock held elsewhere is tried again for
/// up to 200 ms: a process being spawned in the moment a spool closes
/// holds a copy of its lock until it execs.
fn take_lock(dir: &Path) -> Result<File, SpoolError> {
    fs::create_dir_all(dir).map_err(io("create the directory", dir))?;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("open", &path))?;
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            Ok(true) => return Ok(file),
            Ok(false) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(SpoolError::io("lock", &path, error)),
        }
        if Instant::now() >= deadline {
            return Err(SpoolError::Locked {
                path: dir.to_owned(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The segment files of `dir`, by first sequence number.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io("list", dir))? {
        let path = entry.map_err(io("list", dir))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXT) {
            continue;
        }
        if let Some(first) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
        {
            found.push((first, path));
        }
    }
    found.sort();
    Ok(found)
}

fn read_ledger(dir: &Path) -> u64 {
    let Ok(bytes) = fs::read(dir.join(LEDGER_FILE)) else {
        return 0;
    };
    // The watermark and its CRC; a damaged ledger means "resend all".
    if bytes.len() == 12 {
        let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..8]) == crc {
            return u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        }
    }
    tracing::error!(
        path = %dir.join(LEDGER_FILE).display(),
        "marketap spool: the ledger is damaged; every record in the spool will be delivered again"
    );
    0
}

fn write_atomically(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    if sync {
        file.sync_data()?;
    }
    drop(file);
    fs::rename(&temp, path)
}

/// What checking one segment found.
struct Checked {
    items: u64,
    bytes: u64,
    last: Option<u64>,
    damaged: Vec<(u64, u64)>,
}

/// Checks a segment's bytes: counts its records at or above `watermark`
/// and finds its damaged regions.
fn check(bytes: &[u8], watermark: u64) -> Checked {
    let mut checked = Checked {
        items: 0,
        bytes: 0,
        last: None,
        damaged: Vec::new(),
    };
    let body = &bytes[format::SEGMENT_HEADER..];
    for entry in format::Reader::new(body, 0) {
        match entry {
            Entry::Record { record, .. } => {
                checked.last = Some(record.seq);
                if record.seq >= watermark {
                    checked.items += 1;
                    checked.bytes += format::record_len(record.body.len());
                }
            }
            Entry::Damaged { start, end } => {
                let at = format::SEGMENT_HEADER as u64;
                checked.damaged.push((at + start as u64, at + end as u64));
            }
        }
    }
    checked
}

impl Store {
    fn open(config: &SpoolConfig, window: u64) -> Result<Store, SpoolError> {
        let dir = config.path().to_owned();
        let lock_file = take_lock(&dir)?;
        let watermark = read_ledger(&dir);
        let listed = list_segments(&dir)?;
        // A segment of another version stops everything before any change.
        for (_, path) in &listed {
            let mut header = [0; format::SEGMENT_HEADER];
            let mut file = File::open(path).map_err(io("open", path))?;
            let n = read_up_to(&mut file, &mut header).map_err(io("read", path))?;
            if let Header::Version(found) = format::read_header(&header[..n]) {
                return Err(SpoolError::Version {
                    path: path.clone(),
                    found,
                    supported: format::FORMAT_VERSION,
                });
            }
        }
        let store = Store {
            dir: dir.clone(),
            sync: config.sync(),
            segment_bytes: config
                .segment_bytes()
                .max(format::SEGMENT_HEADER as u64 + 1),
            segments: VecDeque::new(),
            active: None,
            next_seq: watermark,
            cursor: Cursor {
                segment: 0,
                offset: format::SEGMENT_HEADER as u64,
                loaded: None,
            },
            handed_out: BTreeMap::new(),
            held_ahead: VecDeque::new(),
            read_upto: watermark,
            window: window.max(1),
            watermark,
            ledger_written: watermark,
            ledger: None,
            dirty: false,
            last_sync: Instant::now(),
            live_items: 0,
            live_bytes: 0,
            corrupted: Vec::new(),
            pending_read: None,
            to_recover: listed.into_iter().map(|(_, path)| path).collect(),
            syncer: Syncer::default(),
            _lock: lock_file,
        };
        Ok(store)
    }

    /// Checks every segment found when opening, starts the segment for
    /// appends, and publishes the counts: the storage thread's first work.
    fn recover_all(&mut self, shared: &Shared) {
        for path in std::mem::take(&mut self.to_recover) {
            if let Err(error) = self.recover(path) {
                tracing::error!(
                    error = %crate::ErrorChain(&error),
                    "marketap spool: could not check a segment; it is left on disk as it is, and this ingestor does not deliver it"
                );
            }
        }
        if let Err(error) = self.start_segment() {
            tracing::error!(error = %crate::ErrorChain(&error), "marketap spool: could not start a segment; the next write tries again");
        }
        let counters = &shared.counters;
        counters.items.store(self.live_items, Ordering::Relaxed);
        counters.bytes.store(self.live_bytes, Ordering::Relaxed);
        counters.recovered.store(self.live_items, Ordering::Relaxed);
        counters
            .corrupted_ranges
            .store(self.corrupted.len() as u64, Ordering::Relaxed);
        counters.corrupted_bytes.store(
            self.corrupted.iter().map(|r| r.end - r.start).sum(),
            Ordering::Relaxed,
        );
        // What the spool holds takes its room; past the cap, a debt that
        // acknowledgements pay back first.
        let live = usize::try_from(self.live_bytes).unwrap_or(usize::MAX);
        let taken = shared.room.forget_permits(live);
        *lock(&shared.debt) = (live - taken) as u64;
        shared.opened.send_replace(true);
    }

    /// Checks one existing segment: keeps it if it has records to deliver,
    /// sets its damage aside and rewrites it without, deletes it if it has
    /// none left.
    fn recover(&mut self, path: PathBuf) -> Result<(), SpoolError> {
        let bytes = fs::read(&path).map_err(io("read", &path))?;
        let checked = if format::read_header(&bytes) == Header::Current {
            check(&bytes, self.watermark)
        } else {
            // A header too short or not ours: the whole file is damage.
            Checked {
                items: 0,
                bytes: 0,
                last: None,
                damaged: vec![(0, bytes.len() as u64)],
            }
        };
        if let Some(last) = checked.last {
            self.next_seq = self.next_seq.max(last + 1);
        }
        if !checked.damaged.is_empty() {
            self.set_aside(&path, &bytes, &checked.damaged)?;
            if checked.items > 0 {
                self.rewrite(&path, &bytes)?;
            }
        }
        if checked.items == 0 {
            fs::remove_file(&path).map_err(io("remove", &path))?;
            return Ok(());
        }
        self.live_items += checked.items;
        self.live_bytes += checked.bytes;
        let len = fs::metadata(&path).map_err(io("read", &path))?.len();
        self.segments.push_back(Segment {
            path,
            len,
            last: checked.last,
        });
        Ok(())
    }

    /// Logs each damaged region and copies its bytes into `corrupt/`.
    fn set_aside(
        &mut self,
        path: &Path,
        bytes: &[u8],
        damaged: &[(u64, u64)],
    ) -> Result<(), SpoolError> {
        let corrupt = self.dir.join(CORRUPT_DIR);
        fs::create_dir_all(&corrupt).map_err(io("create the directory", &corrupt))?;
        let stem = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("segment");
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for &(start, end) in damaged {
            let copy = corrupt.join(format!("{stem}.{start}-{end}.{stamp}.bin"));
            let region = &bytes[start as usize..end as usize];
            let set_aside = match write_atomically(&copy, region, true) {
                Ok(()) => Some(copy),
                Err(error) => {
                    tracing::error!(path = %copy.display(), %error, "marketap spool: could not copy a damaged region aside");
                    None
                }
            };
            tracing::error!(
                file = %path.display(),
                start,
                end,
                set_aside = ?set_aside,
                "marketap spool: a damaged region (a torn write, or the disk changed the bytes); its records are lost, every good record around it is kept"
            );
            self.corrupted.push(CorruptRange {
                file: path.to_owned(),
                start,
                end,
                set_aside,
            });
        }
        Ok(())
    }

    /// Rewrites a damaged segment with only its good records.
    fn rewrite(&self, path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
        let mut out = format::segment_header().to_vec();
        for entry in format::Reader::new(&bytes[format::SEGMENT_HEADER..], 0) {
            if let Entry::Record { record, .. } = entry {
                format::encode(
                    &mut out,
                    record.seq,
                    record.enqueued_at,
                    record.kind,
                    record.body,
                );
            }
        }
        write_atomically(path, &out, true).map_err(io("rewrite", path))?;
        sync_dir(&self.dir);
        Ok(())
    }

    /// Starts a new segment for appends, named by the next sequence number.
    fn start_segment(&mut self) -> Result<(), SpoolError> {
        let path = self.dir.join(segment_name(self.next_seq));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io("create", &path))?;
        let header = format::segment_header();
        if let Err(error) = file.write_all(&header).and_then(|()| file.sync_data()) {
            let _ = fs::remove_file(&path);
            return Err(SpoolError::io("write to", &path, error));
        }
        sync_dir(&self.dir);
        self.segments.push_back(Segment {
            path,
            len: header.len() as u64,
            last: None,
        });
        self.active = Some(file);
        Ok(())
    }

    fn run(mut self, inbox: &Inbox, shared: &Shared) {
        self.recover_all(shared);
        let (mut group, mut commands) = (Vec::new(), Vec::new());
        let mut last_group = 0;
        loop {
            let wait = match self.sync {
                SyncPolicy::Interval(interval) if self.dirty => {
                    interval.saturating_sub(self.last_sync.elapsed())
                }
                _ => Duration::from_secs(3600),
            };
            let disconnected = inbox.take(wait, last_group, &mut group, &mut commands);
            let mut closing = None;
            let mut acks = Vec::new();
            for command in commands.drain(..) {
                match command {
                    Command::Read { max, reply } => self.pending_read = Some((max, reply)),
                    Command::Ack(seqs) => acks.extend(seqs),
                    Command::Close(reply) => closing = Some(reply),
                }
            }
            last_group = group.len();
            if !group.is_empty() {
                self.commit(&mut group, shared);
            }
            if !acks.is_empty() {
                self.ack(&acks, shared);
            }
            self.serve_read(shared);
            if let SyncPolicy::Interval(interval) = self.sync
                && self.last_sync.elapsed() >= interval
            {
                self.sync_soon();
            }
            if let Some(reply) = closing {
                self.finish();
                // The lock goes with the store: release it before the
                // caller of `close` may open the spool again.
                drop(self);
                let _ = reply.send(());
                return;
            }
            if disconnected {
                break;
            }
        }
        self.finish();
    }

    /// Writes a group of appends with one write, then answers them all.
    fn commit(&mut self, group: &mut Vec<Waiting>, shared: &Shared) {
        let counters = &shared.counters;
        match self.write_group(group) {
            Ok(written) => {
                let bytes: u64 = group
                    .iter()
                    .map(|waiting| format::record_len(waiting.body.len()))
                    .sum();
                self.live_items += group.len() as u64;
                self.live_bytes += bytes;
                counters
                    .items
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                counters.bytes.fetch_add(bytes, Ordering::Relaxed);
                counters.commits.fetch_add(1, Ordering::Relaxed);
                let (first, at) = (written.first, written.at);
                let held = self.hold(group, written);
                for ((seq, waiting), held) in (first..).zip(group.drain(..)).zip(held) {
                    let written = Written {
                        seq,
                        enqueued_at: at,
                        body: held.then_some(waiting.body),
                    };
                    let _ = waiting.reply.send(Ok(written));
                }
            }
            Err(error) => {
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    items = group.len(),
                    error = %crate::ErrorChain(&error),
                    "marketap spool: a write failed; its callers get their items back"
                );
                for waiting in group.drain(..) {
                    let _ = waiting.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Settles which records of a group just written (the first at
    /// `first`, the cursor where the group starts when `caught_up`) are
    /// held by their callers: those that asked, within the reader's window.
    /// While the reader is caught up, it moves past them; past the first
    /// record it must read, it skips them when it gets there. Whether each
    /// is held, in order.
    fn hold(&mut self, group: &[Waiting], written: GroupWritten) -> Vec<bool> {
        let GroupWritten {
            first,
            mut caught_up,
            ..
        } = written;
        let mut answers = Vec::with_capacity(group.len());
        for (seq, waiting) in (first..).zip(group) {
            let size = format::record_len(waiting.body.len());
            let held = waiting.hold && seq < self.next_unacked().saturating_add(self.window);
            if held {
                self.handed_out.insert(seq, size);
                if caught_up {
                    self.cursor.offset += size;
                    self.read_upto = seq + 1;
                } else {
                    self.held_ahead.push_back(seq);
                }
            } else {
                caught_up = false;
            }
            answers.push(held);
        }
        answers
    }

    /// Whether the reader has read everything written: its cursor at the
    /// end of the active segment (moved past any sealed one it finished).
    fn caught_up(&mut self) -> bool {
        self.pass_finished_segments();
        let last = self.segments.len().saturating_sub(1);
        if self.cursor.segment != last || self.cursor.offset != self.segments[last].len {
            return false;
        }
        // Every record on disk was passed: any sequence number in between
        // is not there (acknowledged before opening, or lost to damage).
        self.read_upto = self.next_seq;
        self.held_ahead.clear();
        true
    }

    /// Moves the cursor past every sealed segment it has read to the end.
    fn pass_finished_segments(&mut self) {
        let last = self.segments.len().saturating_sub(1);
        while self.cursor.segment < last
            && self.cursor.offset >= self.segments[self.cursor.segment].len
        {
            self.cursor = Cursor {
                segment: self.cursor.segment + 1,
                offset: format::SEGMENT_HEADER as u64,
                loaded: None,
            };
        }
    }

    fn write_group(&mut self, group: &[Waiting]) -> Result<GroupWritten, SpoolError> {
        if self.active.is_none() {
            self.start_segment()?;
        }
        let caught_up = self.caught_up();
        let now = SystemTime::now();
        let mut out = Vec::with_capacity(
            group
                .iter()
                .map(|waiting| format::record_len(waiting.body.len()) as usize)
                .sum(),
        );
        let first = self.next_seq;
        for (seq, waiting) in (first..).zip(group) {
            format::encode(&mut out, seq, now, waiting.kind, &waiting.body);
        }
        let segment = self.segments.back_mut().expect("an active segment");
        let file = self.active.as_mut().expect("an active segment");
        let written = file.write_all(&out).and_then(|()| match self.sync {
            SyncPolicy::Always => file.sync_data(),
            SyncPolicy::Interval(_) => Ok(()),
        });
        if let Err(error) = written {
            // Cut the partial write back off, so nothing half-written stays.
            if let Err(cut) = file
                .set_len(segment.len)
                .and_then(|()| file.seek(SeekFrom::Start(segment.len)).map(drop))
            {
                tracing::error!(path = %segment.path.display(), error = %cut, "marketap spool: could not cut a failed write back off; the reader will skip it as damage");
                self.active = None;
            }
            return Err(SpoolError::io("write to", &segment.path, error));
        }
        segment.len += out.len() as u64;
        segment.last = Some(first + group.len() as u64 - 1);
        self.next_seq = first + group.len() as u64;
        match self.sync {
            SyncPolicy::Always => self.last_sync = Instant::now(),
            SyncPolicy::Interval(_) => self.dirty = true,
        }
        let written = GroupWritten {
            first,
            at: now,
            caught_up,
        };
        if segment.len >= self.segment_bytes {
            self.sync_soon();
            self.active = None;
            if let Err(error) = self.start_segment() {
                tracing::error!(error = %crate::ErrorChain(&error), "marketap spool: could not start a new segment; the next write tries again");
            }
        }
        Ok(written)
    }

    /// Has what was written so far synced by the syncer thread, without
    /// waiting for it (only the interval policy leaves anything unsynced),
    /// and writes the ledger.
    fn sync_soon(&mut self) {
        if self.dirty
            && let (Some(file), Some(segment)) = (&self.active, self.segments.back())
        {
            self.syncer.sync(&segment.path, file);
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        self.write_ledger();
    }

    fn write_ledger(&mut self) {
        if self.watermark == self.ledger_written {
            return;
        }
        let mut bytes = self.watermark.to_le_bytes().to_vec();
        bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        let path = self.dir.join(LEDGER_FILE);
        // Overwritten in place: a create and a rename per acknowledgement
        // cost milliseconds on a busy disk, and the storage thread's
        // appends wait meanwhile.
        let written = match &mut self.ledger {
            Some(file) => Ok(file),
            None => OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map(|file| self.ledger.insert(file)),
        }
        .and_then(|file| {
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&bytes)
        });
        match written {
            Ok(()) => self.ledger_written = self.watermark,
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "marketap spool: could not write the ledger; delivered records may be sent again after a restart")
            }
        }
        self.delete_finished();
    }

    /// Deletes sealed segments wholly below the ledger's watermark.
    fn delete_finished(&mut self) {
        while self.segments.len() > 1 && self.cursor.segment > 0 {
            let segment = &self.segments[0];
            let finished = segment.last.is_none_or(|last| last < self.ledger_written);
            if !finished {
                break;
            }
            if let Err(error) = fs::remove_file(&segment.path) {
                tracing::error!(path = %segment.path.display(), %error, "marketap spool: could not delete a delivered segment");
                break;
            }
            self.segments.pop_front();
            self.cursor.segment -= 1;
        }
    }

    fn ack(&mut self, seqs: &[u64], shared: &Shared) {
        let (mut items, mut bytes) = (0, 0);
        for seq in seqs {
            if let Some(size) = self.handed_out.remove(seq) {
                items += 1;
                bytes += size;
            }
        }
        self.live_items -= items;
        self.live_bytes -= bytes;
        shared.counters.items.fetch_sub(items, Ordering::Relaxed);
        shared.counters.bytes.fetch_sub(bytes, Ordering::Relaxed);
        shared.free(bytes);
        self.watermark = self.next_unacked();
        // Written on every acknowledgement (no fsync: a rename survives a
        // process crash), so a restart resends at most the window.
        self.write_ledger();
    }

    /// The lowest sequence number not yet acknowledged: the oldest record
    /// handed out (or held), or else the next one to read.
    fn next_unacked(&self) -> u64 {
        self.handed_out
            .keys()
            .next()
            .map_or(self.read_upto, |&oldest| oldest.min(self.read_upto))
    }

    fn serve_read(&mut self, shared: &Shared) {
        let Some((max, reply)) = self.pending_read.take() else {
            return;
        };
        if reply.is_closed() {
            return;
        }
        let records = self.read(max, shared);
        if records.is_empty() {
            self.pending_read = Some((max, reply));
        } else {
            // If the reader went away (its ingestor stopped), the records
            // stay handed out and unacknowledged: the next opening
            // delivers them.
            let _ = reply.send(records);
        }
    }

    /// Reads up to `max` records from the cursor on.
    fn read(&mut self, max: usize, shared: &Shared) -> Vec<Stored> {
        let mut records = Vec::new();
        while records.len() < max
            && self.cursor.segment < self.segments.len()
            && self.read_upto < self.next_unacked().saturating_add(self.window)
        {
            self.pass_finished_segments();
            let last = self.cursor.segment + 1 == self.segments.len();
            if self.cursor.offset >= self.segments[self.cursor.segment].len {
                // The end of the active segment: nothing more to read.
                break;
            }
            let (bytes, base) = match self.load(last) {
                Ok(loaded) => loaded,
                Err(error) => {
                    tracing::error!(error = %crate::ErrorChain(&error), "marketap spool: could not read a segment; trying again later");
                    break;
                }
            };
            let start = (self.cursor.offset - base) as usize;
            let mut reader = format::Reader::new(&bytes, start);
            for entry in reader.by_ref() {
                match entry {
                    Entry::Record { record, .. } => {
                        if record.seq < self.read_upto {
                            continue;
                        }
                        self.read_upto = record.seq + 1;
                        // Held records the reader never met were lost to
                        // damage; the one it meets now, its caller delivers.
                        while self
                            .held_ahead
                            .front()
                            .is_some_and(|&held| held < record.seq)
                        {
                            self.held_ahead.pop_front();
                        }
                        if self.held_ahead.front() == Some(&record.seq) {
                            self.held_ahead.pop_front();
                            continue;
                        }
                        self.handed_out
                            .insert(record.seq, format::record_len(record.body.len()));
                        records.push(Stored {
                            seq: record.seq,
                            kind: record.kind,
                            enqueued_at: record.enqueued_at,
                            body: record.body.to_vec(),
                        });
                        if records.len() == max
                            || self.read_upto >= self.next_unacked().saturating_add(self.window)
                        {
                            break;
                        }
                    }
                    Entry::Damaged { start, end } => {
                        // Damage after opening: the disk changed the bytes.
                        shared
                            .counters
                            .corrupted_ranges
                            .fetch_add(1, Ordering::Relaxed);
                        shared
                            .counters
                            .corrupted_bytes
                            .fetch_add((end - start) as u64, Ordering::Relaxed);
                        tracing::error!(file = %self.segments[self.cursor.segment].path.display(), start = base + start as u64, end = base + end as u64, "marketap spool: a damaged region found while reading; skipped");
                    }
                }
            }
            self.cursor.offset = base + reader.offset() as u64;
            if !last {
                self.cursor.loaded = Some(bytes);
            }
        }
        records
    }

    /// The bytes to read from at the cursor, and the file offset they
    /// start at: a sealed segment whole, the active one from the cursor.
    fn load(&mut self, active: bool) -> Result<(Vec<u8>, u64), SpoolError> {
        let segment = &self.segments[self.cursor.segment];
        if !active {
            if let Some(bytes) = self.cursor.loaded.take() {
                return Ok((bytes, 0));
            }
            let bytes = fs::read(&segment.path).map_err(io("read", &segment.path))?;
            return Ok((bytes, 0));
        }
        let mut file = File::open(&segment.path).map_err(io("open", &segment.path))?;
        file.seek(SeekFrom::Start(self.cursor.offset))
            .map_err(io("read", &segment.path))?;
        let mut bytes = vec![0; (segment.len - self.cursor.offset) as usize];
        file.read_exact(&mut bytes)
            .map_err(io("read", &segment.path))?;
        Ok((bytes, self.cursor.offset))
    }

    /// The last syncs and ledger, then the lock goes with the store.
    fn finish(&mut self) {
        self.syncer.finish();
        if let (Some(file), Some(segment)) = (&self.active, self.segments.back()) {
            sync_segment(&segment.path, file);
        }
        self.dirty = false;
        self.write_ledger();
        if let Some((_, reply)) = self.pending_read.take() {
            let _ = reply.send(Vec::new());
        }
    }
}

/// The interval policy's `fsync`s, on a thread of their own: an `fsync`
/// waits for everything written since the last one to reach the disk,
/// hundreds of milliseconds on a busy one, and appends written meanwhile
/// must not wait with it. Started with the first sync asked for.
#[derive(Default)]
struct Syncer {
    jobs: Option<mpsc::Sender<(PathBuf, File)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// Has `file` (the segment at `path`) synced soon. Where no thread can
    /// take it, syncs here.
    fn sync(&mut self, path: &Path, file: &File) {
        let file = match file.try_clone() {
            Ok(file) => file,
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "marketap spool: could not hand a segment to the syncer; syncing it on the storage thread");
                return sync_segment(path, file);
            }
        };
        if self.jobs.is_none() {
            let (jobs, receiver) = mpsc::channel();
            match std::thread::Builder::new()
                .name("marketap-spool-sync".into())
                .spawn(move || sync_all_of(&receiver))
            {
                Ok(thread) => (self.jobs, self.thread) = (Some(jobs), Some(thread)),
                Err(error) => {
                    tracing::error!(%error, "marketap spool: could not start the syncer thread; syncing on the storage thread");
                    return sync_segment(path, &file);
                }
            }
        }
        let jobs = self.jobs.as_ref().expect("started above");
        if let Err(mpsc::SendError((path, file))) = jobs.send((path.to_owned(), file)) {
            sync_segment(&path, &file);
        }
    }

    /// Waits for every sync asked for to be done.
    fn finish(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The syncer thread: syncs each segment asked for, once for all the asks
/// that queued up while it waited for the disk.
fn sync_all_of(jobs: &mpsc::Receiver<(PathBuf, File)>) {
    while let Ok(first) = jobs.recv() {
        let mut due = vec![first];
        for (path, file) in jobs.try_iter() {
            if !due.iter().any(|(queued, _)| *queued == path) {
                due.push((path, file));
            }
        }
        for (path, file) in &due {
            #[cfg(test)]
            sync_gate::pass(path);
            sync_segment(path, file);
        }
    }
}

fn sync_segment(path: &Path, file: &File) {
    if let Err(error) = file.sync_data() {
        tracing::error!(path = %path.display(), %error, "marketap spool: fsync failed");
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            read => n += read,
        }
    }
    Ok(n)
}

/// Makes a new or renamed file's name durable (a no-op where directories
/// cannot be opened).
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// [`super::inspect`]: reads the spool under its lock, changing nothing.
pub(super) fn inspect(dir: &Path) -> Result<Inspection, SpoolError> {
    if !dir.is_dir() {
        return Err(SpoolError::io(
            "open",
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no spool directory here"),
        ));
    }
    let _lock = take_lock(dir)?;
    let watermark = read_ledger(dir);
    let mut inspection = Inspection {
        items: 0,
        bytes: 0,
        oldest: None,
        newest: None,
        corrupted: Vec::new(),
    };
    for (_, path) in list_segments(dir)? {
        let bytes = fs::read(&path).map_err(io("read", &path))?;
        match format::read_header(&bytes) {
            Header::Version(found) => {
                return Err(SpoolError::Version {
                    path,
                    found,
                    supported: format::FORMAT_VERSION,
                });
            }
            Header::Damaged => {
                inspection.corrupted.push(CorruptRange {
                    file: path,
                    start: 0,
                    end: bytes.len() as u64,
                    set_aside: None,
                });
                continue;
            }
            Header::Current => {}
        }
        for entry in format::Reader::new(&bytes[format::SEGMENT_HEADER..], 0) {
            match entry {
                Entry::Record { record, .. } if record.seq >= watermark => {
                    inspection.items += 1;
                    inspection.bytes += format::record_len(record.body.len());
                    let at = record.enqueued_at;
                    inspection.oldest = Some(inspection.oldest.map_or(at, |o| o.min(at)));
                    inspection.newest = Some(inspection.newest.map_or(at, |n| n.max(at)));
                }
                Entry::Record { .. } => {}
                Entry::Damaged { start, end } => {
                    let at = format::SEGMENT_HEADER as u64;
                    inspection.corrupted.push(CorruptRange {
                        file: path.clone(),
                        start: at + start as u64,
                        end: at + end as u64,
                        set_aside: None,
                    });
                }
            }
        }
    }
    Ok(inspection)
}

/// A test's slow disk: the syncer's syncs of segments under a shut
/// directory wait until it is opened again.
#[cfg(test)]
pub(super) mod sync_gate {
    use std::{
        path::{Path, PathBuf},
        sync::{Condvar, Mutex},
        time::Duration,
    };

    /// Shut directories, each with the syncs waiting under it.
    static SHUT: Mutex<Vec<(PathBuf, usize)>> = Mutex::new(Vec::new());
    static CHANGED: Condvar = Condvar::new();

    pub(crate) fn shut(dir: &Path) {
        SHUT.lock().unwrap().push((dir.to_owned(), 0));
    }

    pub(crate) fn open(dir: &Path) {
        SHUT.lock().unwrap().retain(|(shut, _)| shut != dir);
        CHANGED.notify_all();
    }

    /// Syncs waiting under `dir` now.
    pub(crate) fn waiting(dir: &Path) -> usize {
        let shut = SHUT.lock().unwrap();
        shut.iter().find(|(d, _)| d == dir).map_or(0, |(_, n)| *n)
    }

    /// Waits while `path`'s directory is shut (at most 30 s, so a broken
    /// test fails rather than hangs).
    pub(super) fn pass(path: &Path) {
        let under = |dir: &PathBuf| path.starts_with(dir);
        let mut shut = SHUT.lock().unwrap();
        let Some((_, waiting)) = shut.iter_mut().find(|(dir, _)| under(dir)) else {
            return;
        };
        *waiting += 1;
        let _open = CHANGED
            .wait_timeout_while(shut, Duration::from_secs(30), |shut| {
                shut.iter().any(|(dir, _)| under(dir))
            })
            .unwrap();
    }
}

#[cfg(test)]
mod inbox_tests {
    use super::*;

    fn inbox() -> Inbox {
        Inbox::new(LINGER)
    }

    fn append(inbox: &Inbox) {
        let (reply, _) = oneshot::channel();
        let waiting = Waiting {
            kind: 0,
            body: b"{}".to_vec(),
            hold: false,
            reply,
        };
        assert!(inbox.append(waiting).is_ok());
    }

    /// The thread sleeps while nothing comes, for as long as it was told
    /// to (the interval policy's next sync), rather than spinning.
    #[test]
    fn an_empty_inbox_waits_for_its_whole_wait() {
        let inbox = inbox();
        let (mut group, mut commands) = (Vec::new(), Vec::new());
        let started = Instant::now();
        let wait = Duration::from_millis(20);
        assert!(!inbox.take(wait, 0, &mut group, &mut commands));
        assert!(started.elapsed() >= wait);
        assert!(group.is_empty() && commands.is_empty());
    }

    /// After a group of four, one append alone waits out the linger for
    /// the other three before it is written; with nothing more coming, it
    /// is written alone.
    #[test]
    fn one_append_after_a_group_of_four_waits_for_the_rest() {
        let inbox = inbox();
        append(&inbox);
        let (mut group, mut commands) = (Vec::new(), Vec::new());
        let started = Instant::now();
        inbox.take(Duration::from_secs(1), 4, &mut group, &mut commands);
        assert!(started.elapsed() >= LINGER);
        assert_eq!(group.len(), 1);
    }

    /// A group already complete, or a caller appending alone (a last
    /// group of one), is taken at once; a command ends the wait too.
    #[test]
    fn what_is_there_is_taken_without_a_linger_when_nothing_more_is_due() {
        let inbox = inbox();
        for _ in 0..4 {
            append(&inbox);
        }
        let (mut group, mut commands) = (Vec::new(), Vec::new());
        inbox.take(Duration::from_secs(1), 4, &mut group, &mut commands);
        assert_eq!(group.len(), 4);
        group.clear();
        append(&inbox);
        inbox.take(Duration::from_secs(1), 1, &mut group, &mut commands);
        assert_eq!(group.len(), 1);
        group.clear();
        append(&inbox);
        assert!(inbox.command(Command::Ack(vec![0])).is_ok());
        inbox.take(Duration::from_secs(1), 4, &mut group, &mut commands);
        assert_eq!((group.len(), commands.len()), (1, 1));
    }

    /// The append that completes a group wakes the thread waiting for it,
    /// long before its linger ends: a second thread appends three more
    /// while the first waits, and the group holds all four.
    #[test]
    fn the_append_that_completes_the_group_wakes_the_thread() {
        let linger = Duration::from_secs(5);
        let inbox = Arc::new(Inbox::new(linger));
        append(&inbox);
        let appender = {
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                // Until the thread waits for the group (a test that fails,
                // rather than hangs, if it never does).
                let deadline = Instant::now() + Duration::from_secs(2);
                while lock(&inbox.state).wake_at != 4 {
                    assert!(Instant::now() < deadline, "the thread never waited");
                    std::thread::sleep(Duration::from_millis(1));
                }
                for _ in 0..3 {
                    append(&inbox);
                }
            })
        };
        let (mut group, mut commands) = (Vec::new(), Vec::new());
        let started = Instant::now();
        inbox.take(linger, 4, &mut group, &mut commands);
        appender.join().unwrap();
        assert_eq!(group.len(), 4);
        assert!(started.elapsed() < linger);
    }
}
