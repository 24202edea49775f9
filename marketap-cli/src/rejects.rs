//! The rejects file: one JSON object per rejected line, created (readable
//! by its owner only: it holds the input's data) on the first reject and
//! emptied first unless resuming. Lines are buffered and written at each
//! handover; a write that fails (a full disk) is cut back to its last
//! whole line, so the file never ends in a torn line, and the writer says
//! which rejects did not reach the disk so that the checkpoint stays
//! before the first of them. Only lines on disk are counted.

use std::{
    fs::File,
    io::{self, Write},
    path::{Path, PathBuf},
};

use crate::records::Reject;

/// Buffered rejects written at once, at most (then the buffer is flushed
/// before the next handover).
const BUFFERED: usize = 256 * 1024;

/// Rejects that could not be written.
#[derive(Debug)]
pub struct Lost {
    /// The line of the first reject that is not on disk.
    pub line: u64,
    /// Why.
    pub error: io::Error,
}

/// The rejects file.
pub struct Rejects {
    path: PathBuf,
    file: Option<File>,
    /// Empty the file when opening it (a fresh start).
    truncate: bool,
    /// Whether this run created or emptied the file.
    created: bool,
    /// Lines not yet written.
    buffer: Vec<u8>,
    /// Each buffered line's input line, and where it ends in `buffer`.
    pending: Vec<(u64, usize)>,
    /// Bytes of whole lines in the file.
    on_disk: u64,
    /// Lines this run wrote whole.
    written: u64,
}

impl Rejects {
    /// The rejects file at `path`, emptied on the first reject if `truncate`.
    pub fn new(path: PathBuf, truncate: bool) -> Self {
        Self {
            path,
            file: None,
            truncate,
            created: false,
            buffer: Vec::new(),
            pending: Vec::new(),
            on_disk: 0,
            written: 0,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines this run wrote whole, on disk.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Buffers `reject`; writes the buffer if it grew large.
    pub fn push(&mut self, reject: &Reject) -> Result<(), Lost> {
        let start = self.buffer.len();
        if let Err(error) = serde_json::to_writer(&mut self.buffer, &reject.to_line()) {
            self.buffer.truncate(start);
            return Err(Lost {
                line: reject.line,
                error: error.into(),
            });
        }
        self.buffer.push(b'\n');
        self.pending.push((reject.line, self.buffer.len()));
        if self.buffer.len() >= BUFFERED {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is buffered. On failure the file keeps the whole lines
    /// that fit and nothing more, and the error names the first line lost.
    pub fn flush(&mut self) -> Result<(), Lost> {
        let Some(&(first, _)) = self.pending.first() else {
            return Ok(());
        };
        if self.file.is_none() {
            match self.open() {
                Ok(file) => self.file = Some(file),
                Err(error) => {
                    self.buffer.clear();
                    self.pending.clear();
                    return Err(Lost { line: first, error });
                }
            }
        }
        let Some(file) = self.file.as_mut() else {
            unreachable!("opened above")
        };
        let mut done = 0;
        let mut failure = None;
        while done < self.buffer.len() {
            match file.write(&self.buffer[done..]) {
                Ok(0) => {
                    failure = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let whole = self
            .pending
            .iter()
            .take_while(|(_, end)| *end <= done)
            .count();
        let kept = whole.checked_sub(1).map_or(0, |last| self.pending[last].1);
        let result = match failure {
            None => Ok(()),
            Some(error) => {
                if kept < done
                    && let Err(cut) = file.set_len(self.on_disk + kept as u64)
                {
                    eprintln!(
                        "marketap: {}: could not cut a partly written line ({cut}); the file may \
                         end in a torn line",
                        self.path.display()
                    );
                }
                Err(Lost {
                    line: self.pending[whole].0,
                    error,
                })
            }
        };
        self.on_disk += kept as u64;
        self.written += whole as u64;
        self.buffer.clear();
        self.pending.clear();
        result
    }

    /// Ends the file: a file this run created and left empty is removed,
    /// so that it is whole or absent.
    pub fn close(mut self) {
        if let Some(file) = self.file.take() {
            drop(file);
            if self.created && self.on_disk == 0 {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }

    fn open(&mut self) -> io::Result<File> {
        let existed = self.path.exists();
        let mut options = std::fs::OpenOptions::new();
        // Appending, so that a cut-back file is written at its new end.
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&self.path)?;
        if self.truncate {
            file.set_len(0)?;
        }
        self.created = self.truncate || !existed;
        self.on_disk = file.metadata()?.len();
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::LineError;

    fn reject(line: u64) -> Reject {
        Reject {
            line,
            column: None,
            error: LineError::NotAnObject { found: "null" },
            raw: "null".to_owned(),
            raw_truncated: false,
        }
    }

    #[test]
    fn lines_are_written_at_flush_and_counted_when_on_disk() {
        let dir = std::env::temp_dir().join(format!("marketap-rejects-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.ndjson");
        let mut rejects = Rejects::new(path.clone(), true);
        rejects.push(&reject(3)).unwrap();
        rejects.push(&reject(7)).unwrap();
        assert_eq!(rejects.written(), 0);
        rejects.flush().unwrap();
        assert_eq!(rejects.written(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        rejects.close();
        assert!(path.exists());

        // Nothing written: the file this run emptied is removed.
        let mut empty = Rejects::new(path.clone(), true);
        empty.flush().unwrap();
        empty.close();
        assert!(path.exists(), "never opened, left as it was");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_cannot_be_opened_loses_the_first_buffered_line() {
        let path = std::env::temp_dir()
            .join(format!("marketap-no-such-dir-{}", std::process::id()))
            .join("r.ndjson");
        let mut rejects = Rejects::new(path, true);
        rejects.push(&reject(5)).unwrap();
        rejects.push(&reject(9)).unwrap();
        let lost = rejects.flush().unwrap_err();
        assert_eq!(lost.line, 5);
        assert_eq!(rejects.written(), 0);
    }
}
