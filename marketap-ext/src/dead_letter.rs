//! The dead-letter file: requests whose items were finally not delivered,
//! one JSON object per line (NDJSON), each holding the request body in the
//! API's own shape. A [`Writer`] appends them (the ingestor's
//! `dead_letter_path` and importers of your own use the same one), and a
//! later run can [`read`] them and
//! [`Marketap::resend`](crate::Marketap::resend) them.
//!
//! A line looks like
//! `{"operation":"collect_bulk_user_events","error":"…","status":503,"attempts":5,"body":{"events":[…]}}`.
//!
//! The file holds personal data, so it is created readable by its owner
//! only (mode 0600 on Unix). A letter is written whole or not at all: on a
//! failed write (a full disk) the file is cut back to its last complete
//! line, so two letters never run together. The reader gives each line's
//! result on its own: one bad line never hides the good ones.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use crate::{
    config::Connection,
    delivery::Delivery,
    delivery::cancel::Cancel,
    error::{Error, ErrorChain, ValidationError},
    model::item::{Device, Event, UserDeletion, UserProfile},
    model::kind::{Item, Operation, Undelivered},
};

/// One failed request, as written to the dead-letter file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The operation that takes the items.
    pub operation: Operation,
    /// Why it failed.
    pub error: String,
    /// The HTTP status, if the server answered.
    pub status: Option<u16>,
    /// How many times it was sent.
    pub attempts: u32,
    /// The request body, as the API takes it: `{"events": [...]}`,
    /// `{"profiles": [...]}` or `{"user_ids": [...]}`.
    pub body: serde_json::Value,
}

impl DeadLetter {
    /// The letter for a failed request.
    pub fn new(undelivered: &Undelivered) -> serde_json::Result<Self> {
        let batch = undelivered.batch();
        let mut body = serde_json::Map::new();
        body.insert(batch.field().to_owned(), batch.items_json()?);
        Ok(Self {
            operation: batch.operation(),
            error: ErrorChain(batch.error()).to_string(),
            status: batch.error().status(),
            attempts: batch.attempts(),
            body: body.into(),
        })
    }

    /// The letter's items, checked as a builder would check them (the
    /// reserved check included): the file may have been edited.
    pub fn items<T: Item>(&self) -> Result<Vec<T>, ValidationError> {
        self.checked_items(true)
    }

    /// [`items`](Self::items), with the reserved check on or off.
    fn checked_items<T: Item>(&self, reserved_check: bool) -> Result<Vec<T>, ValidationError> {
        let items =
            T::from_letter(self.body.clone()).map_err(|e| ValidationError::Unserializable {
                field: "body".into(),
                reason: e.to_string(),
            })?;
        items
            .into_iter()
            .map(|item| item.validate(reserved_check))
            .collect()
    }

    /// Sends the items again, as one request of the letter's kind, checked
    /// with the connection's reserved-check setting.
    pub(crate) async fn resend(&self, connection: Arc<Connection>) -> Result<usize, Error> {
        let reserved_check = connection.reserved_check;
        let delivery = Delivery::new(connection, Cancel::never());
        match self.operation {
            Operation::CollectBulkUserEvents => {
                self.resend_as::<Event>(delivery, reserved_check).await
            }
            Operation::UpdateBulkUserProfiles => {
                self.resend_as::<UserProfile>(delivery, reserved_check)
                    .await
            }
            Operation::UpdateBulkDeviceProfiles => {
                self.resend_as::<Device>(delivery, reserved_check).await
            }
            Operation::RequestUserProfileDeletion | Operation::RequestBulkUserProfileDeletion => {
                self.resend_as::<UserDeletion>(delivery, reserved_check)
                    .await
            }
        }
    }

    async fn resend_as<T: Item>(
        &self,
        delivery: Delivery,
        reserved_check: bool,
    ) -> Result<usize, Error> {
        let items = self.checked_items::<T>(reserved_check)?;
        delivery
            .send_exactly(items)
            .await
            .map(|accepted| accepted.items)
            .map_err(|failed| failed.error)
    }
}

/// A line of a dead-letter file that is not a [`DeadLetter`].
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LetterError {
    /// The line's number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Opens a dead-letter file for reading, one letter per line.
///
/// ```no_run
/// # async fn run(client: marketap_ext::Marketap) -> std::io::Result<()> {
/// for letter in marketap_ext::dead_letter::read("failed.ndjson")? {
///     match letter {
///         Ok(letter) => match client.resend(&letter).await {
///             Ok(accepted) => println!("resent {accepted} items"),
///             Err(error) => eprintln!("still failing: {error}"),
///         },
///         Err(bad_line) => eprintln!("skipped {bad_line}"),
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub fn read(path: impl AsRef<Path>) -> io::Result<Letters> {
    Ok(Letters {
        lines: BufReader::new(File::open(path)?),
        line: 0,
        failed: false,
    })
}

/// The letters of a dead-letter file, read lazily: each non-blank line is
/// a [`DeadLetter`] or a [`LetterError`] naming the line.
#[derive(Debug)]
pub struct Letters {
    lines: BufReader<File>,
    line: usize,
    /// Reading failed: the rest of the file cannot be read.
    failed: bool,
}

impl Iterator for Letters {
    type Item = Result<DeadLetter, LetterError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut bytes = Vec::new();
        while !self.failed {
            bytes.clear();
            self.line += 1;
            let error = |reason: String| LetterError {
                line: self.line,
                reason,
            };
            match self.lines.read_until(b'\n', &mut bytes) {
                Ok(0) => return None,
                Ok(_) if bytes.trim_ascii().is_empty() => continue,
                Ok(_) => {
                    return Some(serde_json::from_slice(&bytes).map_err(|e| error(e.to_string())));
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(error(format!("could not read the file: {e}"))));
                }
            }
        }
        None
    }
}

/// The file a writer appends to: a real file, or a fake one in tests.
trait LetterFile: Write {
    fn len(&self) -> io::Result<u64>;
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    fn sync(&mut self) -> io::Result<()>;
}

impl LetterFile for File {
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

/// Appends `line` whole, or cuts the file back to where it was.
fn append_whole(file: &mut impl LetterFile, line: &[u8]) -> io::Result<()> {
    let before = file.len()?;
    if let Err(error) = file.write_all(line).and_then(|()| file.flush()) {
        if let Err(cut) = file.truncate(before) {
            tracing::error!(%cut, "could not cut a partly written dead letter; the file may hold a broken line");
        }
        return Err(error);
    }
    Ok(())
}

/// Appends dead letters to a file, one per line, creating it (readable by
/// its owner only) on the first letter, so a run where nothing fails leaves
/// no file. A letter is written whole or not at all.
///
/// ```no_run
/// use marketap_ext::dead_letter::{DeadLetter, Writer};
/// # fn run(failed: marketap_ext::FailedBatch<marketap_ext::Event>) -> std::io::Result<()> {
/// let mut writer = Writer::new("failed.ndjson");
/// writer.append(&DeadLetter::new(&failed.into())?)?;
/// writer.sync()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    file: Option<File>,
    letters: u64,
    /// Test seam: runs before each letter is written, to make the disk slow.
    #[cfg(test)]
    before_write: Option<BeforeWrite>,
}

/// A test's hook run before each letter is written.
#[cfg(test)]
pub(crate) struct BeforeWrite(Box<dyn Fn() + Send + Sync>);

#[cfg(test)]
impl std::fmt::Debug for BeforeWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeWrite")
    }
}

impl Writer {
    /// A writer appending to `path`. Nothing is opened yet.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file: None,
            letters: 0,
            #[cfg(test)]
            before_write: None,
        }
    }

    /// Runs `hook` before each letter is written: a test's slow disk.
    #[cfg(test)]
    pub(crate) fn before_each_write(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.before_write = Some(BeforeWrite(Box::new(hook)));
        self
    }

    /// The file it appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many letters this writer has appended.
    pub fn letters(&self) -> u64 {
        self.letters
    }

    /// Appends one letter, whole or not at all: after a failed write the
    /// file is cut back to its last complete line. The line is in the
    /// kernel's hands when this returns (it survives the process being
    /// killed); [`sync`](Self::sync) makes it durable.
    pub fn append(&mut self, letter: &DeadLetter) -> io::Result<()> {
        let mut line = serde_json::to_vec(letter)?;
        line.push(b'\n');
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(open_private(&self.path)?),
        };
        #[cfg(test)]
        if let Some(BeforeWrite(hook)) = &self.before_write {
            hook();
        }
        append_whole(file, &line)?;
        self.letters += 1;
        Ok(())
    }

    /// Makes what was written durable (nothing to do before the first
    /// letter).
    pub fn sync(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(file) => LetterFile::sync(file),
            None => Ok(()),
        }
    }
}

/// Opens `path` for appending, creating it readable by its owner only.
fn open_private(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::FailedBatch;

    /// A file that takes `room` bytes, then fails like a full disk.
    struct FullDisk {
        data: Vec<u8>,
        room: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room.saturating_sub(self.data.len()));
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl LetterFile for FullDisk {
        fn len(&self) -> io::Result<u64> {
            Ok(self.data.len() as u64)
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.data.truncate(len as usize);
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_real_file_reports_its_length_and_is_cut_back() {
        let path = std::env::temp_dir().join(format!("marketap-letterfile-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut file = open_private(&path).unwrap();
        append_whole(&mut file, b"{\"a\":1}\n").unwrap();
        append_whole(&mut file, b"{\"b\":2}\n").unwrap();
        assert_eq!(LetterFile::len(&file).unwrap(), 16);
        LetterFile::truncate(&mut file, 8).unwrap();
        LetterFile::sync(&mut file).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_letter_that_does_not_fit_leaves_no_partial_line() {
        let mut disk = FullDisk {
            data: Vec::new(),
            room: 30,
        };
        append_whole(&mut disk, b"{\"first\":1}\n").unwrap();
        let error = append_whole(&mut disk, b"{\"second\":\"too long to fit\"}\n").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        assert_eq!(
            disk.data, b"{\"first\":1}\n",
            "cut back to the last whole line"
        );
        append_whole(&mut disk, b"{\"third\":3}\n").unwrap();
        assert_eq!(disk.data, b"{\"first\":1}\n{\"third\":3}\n");
    }

    fn letter(events: usize) -> Undelivered {
        Undelivered::Events(FailedBatch {
            items: (0..events)
                .map(|i| Event::builder(format!("u{i}"), "e").build().unwrap())
                .collect(),
            error: Error::Cancelled,
            attempts: 0,
        })
    }

    #[test]
    fn the_writer_creates_its_file_on_the_first_letter_private_to_its_owner() {
        let path = std::env::temp_dir().join(format!("marketap-writer-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut writer = Writer::new(&path);
        writer.sync().unwrap();
        assert!(!path.exists(), "no letter, no file");
        let first = DeadLetter::new(&letter(2)).unwrap();
        writer.append(&first).unwrap();
        writer
            .append(&DeadLetter::new(&letter(1)).unwrap())
            .unwrap();
        writer.sync().unwrap();
        assert_eq!((writer.letters(), writer.path()), (2, path.as_path()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let letters: Vec<_> = read(&path).unwrap().map(Result::unwrap).collect();
        assert_eq!(letters.len(), 2);
        assert_eq!(letters[0], first);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_letter_carries_its_operation_and_body_in_the_api_shape() {
        let letter = DeadLetter::new(&letter(2)).unwrap();
        assert_eq!(letter.operation, Operation::CollectBulkUserEvents);
        assert_eq!(letter.attempts, 0);
        assert_eq!(letter.status, None);
        assert_eq!(letter.body["events"][1]["user_id"], "u1");
        let items: Vec<Event> = letter.items().unwrap();
        assert_eq!(items.len(), 2);
        // The wrong kind is a clear error, not a panic.
        assert!(letter.items::<Device>().is_err());
    }
}
