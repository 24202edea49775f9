//! A durable spool for the [`Ingestor`](crate::Ingestor): items are written
//! to disk before `track` returns, so a killed process or a long outage
//! loses nothing the caller was told was taken.
//!
//! Opt in with [`IngestorConfig::with_spool`](crate::IngestorConfig::with_spool).
//! The files are this crate's own log format (see the `format` module): segment
//! files of length-prefixed, CRC-32-checked records, and a small ledger
//! naming the oldest record not yet delivered.
//!
//! - `format`: the bytes on disk, and the reader that finds every good
//!   record around a damaged region.
//! - `store`: the thread that owns the files: group commits, the sync
//!   policy, acknowledgements, the ledger and the deletion of finished
//!   segments. No Tokio worker ever waits for the disk.
//!
//! What each [`SyncPolicy`] survives, the duplicate bound and the disk
//! bound are in the README's "Durability" section.

mod format;
mod store;

use std::{
    fmt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

pub use format::FORMAT_VERSION;
pub(crate) use store::{Spool, Stored, Written};

use crate::error::ConfigError;

/// The default cap on the bytes a spool holds: 1 GiB.
pub const DEFAULT_MAX_SPOOL_BYTES: u64 = 1 << 30;
/// The default age past which an item that still cannot be delivered goes
/// where failures go: 7 days.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// When the spool calls `fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// `track` returns once the item is written to the file (in the
    /// operating system's cache, out of the process); an `fsync` follows
    /// within this interval. Survives a process crash; a host crash or
    /// power loss may lose the items of the last interval. The default,
    /// every 200 ms.
    Interval(Duration),
    /// `track` returns once the item's write is `fsync`ed. Survives a host
    /// crash too, at the cost of one `fsync` per group commit.
    Always,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy::Interval(Duration::from_millis(200))
    }
}

/// Where and how an [`Ingestor`](crate::Ingestor) spools its items.
///
/// ```
/// use std::time::Duration;
/// use marketap_ext::spool::{SpoolConfig, SyncPolicy};
///
/// let spool = SpoolConfig::new("/var/lib/my-service/marketap-spool")
///     .with_sync(SyncPolicy::Always)
///     .with_max_bytes(256 << 20)
///     .with_max_age(Duration::from_secs(3 * 24 * 3600));
/// assert_eq!(spool.max_bytes(), 256 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    path: PathBuf,
    sync: SyncPolicy,
    max_bytes: u64,
    max_age: Duration,
    segment_bytes: u64,
}

impl SpoolConfig {
    /// A spool in the directory `path` (created if missing), with the
    /// default policy, byte cap and age.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            sync: SyncPolicy::default(),
            max_bytes: DEFAULT_MAX_SPOOL_BYTES,
            max_age: DEFAULT_MAX_AGE,
            segment_bytes: 64 << 20,
        }
    }

    /// When to `fsync`. Default [`SyncPolicy::Interval`] of 200 ms.
    pub fn with_sync(mut self, sync: SyncPolicy) -> Self {
        self.sync = sync;
        self
    }

    /// Bytes the spool may hold, records and their framing, before `track`
    /// waits and `try_track` hands the item back: 1 MiB to 1 TiB. Default
    /// [`DEFAULT_MAX_SPOOL_BYTES`]. Nothing is ever dropped to make room.
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// How long an item that keeps failing with a transient error (429,
    /// 5xx, a timeout, a refused connection, a 401) stays in the spool
    /// before it goes where failures go: 1 s to 365 days. Default
    /// [`DEFAULT_MAX_AGE`].
    pub fn with_max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Bytes per segment file before a new one is started (tests use small
    /// segments to cover the deletion of finished ones).
    #[doc(hidden)]
    pub fn with_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// The spool's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When the spool calls `fsync`.
    pub fn sync(&self) -> SyncPolicy {
        self.sync
    }

    /// Bytes the spool may hold.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// How long an item may keep failing before it goes where failures go.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    pub(crate) fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !((1 << 20)..=(1 << 40)).contains(&self.max_bytes) {
            return Err(ConfigError::invalid(
                "spool.max_bytes",
                self.max_bytes,
                "must be 1 MiB to 1 TiB",
            ));
        }
        if self.max_age < Duration::from_secs(1) || self.max_age > Duration::from_secs(365 * 86_400)
        {
            return Err(ConfigError::invalid(
                "spool.max_age",
                format!("{:?}", self.max_age),
                "must be 1 s to 365 days",
            ));
        }
        if let SyncPolicy::Interval(interval) = self.sync
            && (interval < Duration::from_millis(1) || interval > Duration::from_secs(60))
        {
            return Err(ConfigError::invalid(
                "spool.sync",
                format!("{interval:?}"),
                "the interval must be 1 ms to 60 s",
            ));
        }
        Ok(())
    }
}

/// A spool could not be opened, read or written.
///
/// Cloneable so that every caller of one failed group commit gets it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// Another ingestor or process holds the spool.
    #[error("the spool {path} is in use by another ingestor or process (its lock file is held)")]
    Locked {
        /// The spool's directory.
        path: PathBuf,
    },
    /// The spool was written by a format this version cannot read.
    #[error(
        "the spool file {path} has format version {found}; this version of marketap-ext reads version {supported}"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The version this crate reads and writes.
        supported: u32,
    },
    /// Reading, writing or syncing a file failed (the disk is full, the
    /// directory is not writable, ...). Nothing was half-written: a failed
    /// write is cut back off the file.
    #[error("could not {action} {path}")]
    Io {
        /// What was being done, e.g. `write to`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: IoCause,
    },
    /// The spool's storage thread is gone (the ingestor shut down).
    #[error("the spool is closed")]
    Closed,
}

impl SpoolError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        SpoolError::Io {
            action,
            path: path.to_owned(),
            source: IoCause::from(source),
        }
    }
}

/// What the operating system said when a spool file could not be read or
/// written: the kind and message of the `std::io::Error`.
///
/// Kept as plain data rather than the `io::Error` itself, so that
/// [`SpoolError`] (and every error holding it) stays `Clone`, comparable
/// and unwind-safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct IoCause {
    kind: std::io::ErrorKind,
    message: String,
}

impl IoCause {
    /// The kind, e.g. `StorageFull` for a full disk.
    pub fn kind(&self) -> std::io::ErrorKind {
        self.kind
    }
}

impl From<std::io::Error> for IoCause {
    fn from(error: std::io::Error) -> Self {
        Self {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

/// A damaged region of a spool file: its records could not be read, and
/// its bytes were copied aside (see [`Inspection::corrupted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CorruptRange {
    /// The segment file.
    pub file: PathBuf,
    /// The first damaged byte's offset.
    pub start: u64,
    /// The offset just past the damaged bytes.
    pub end: u64,
    /// Where the bytes were copied, when they were.
    pub set_aside: Option<PathBuf>,
}

impl fmt::Display for CorruptRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes {}..{}",
            self.file.display(),
            self.start,
            self.end
        )
    }
}

/// What a spool holds, as [`inspect`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inspection {
    /// Records not yet delivered.
    pub items: u64,
    /// Their bytes, framing included.
    pub bytes: u64,
    /// When the oldest of them was enqueued.
    pub oldest: Option<SystemTime>,
    /// When the newest of them was enqueued.
    pub newest: Option<SystemTime>,
    /// Damaged regions found.
    pub corrupted: Vec<CorruptRange>,
}

/// Reads what the spool at `path` holds without changing it. Fails with
/// [`SpoolError::Locked`] while an ingestor has it open.
pub fn inspect(path: impl AsRef<Path>) -> Result<Inspection, SpoolError> {
    store::inspect(path.as_ref())
}

#[cfg(test)]
mod tests;
