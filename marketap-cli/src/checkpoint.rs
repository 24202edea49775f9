//! The checkpoint file: the line below which every record of the input is
//! done (accepted, rejected or dead-lettered), and which file that is, so
//! that a rerun continues there and only on the same file. For a plain
//! file that is its [`Prefix`]: the byte offset of that line and a hash of
//! every byte before it. A file whose prefix is unchanged resumes whatever
//! its size now (an append-only export that grew sends only its new
//! lines); one whose prefix changed is refused. Compressed input has no
//! prefix: it resumes only when its [`Identity`] (size and head hash) is
//! unchanged. The file is replaced atomically (a temp file, then a
//! rename), so a kill at any moment leaves the old checkpoint or the new
//! one, never half of one.

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    error::CliError,
    input::Identity,
    prefix::{Newline, Prefix},
};

/// The format's version: 2 added the prefix; 1 is still read.
const VERSION: u32 = 2;

/// Where the checkpoint's line starts in a plain file, and the hash of
/// what is before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct SavedPrefix {
    /// The byte offset of the line in the file.
    offset: u64,
    /// The CRC-32 of the bytes before it.
    crc32: u32,
    /// The file ended before the line, in a last line without a newline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    mid_line: bool,
}

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Saved {
    version: u32,
    /// The command, e.g. `import events`.
    command: String,
    /// The input as given.
    input: String,
    identity: Identity,
    /// Every record starting before this line is done.
    line: u64,
    /// Whether the whole input is done.
    complete: bool,
    /// For a plain file: where `line` starts, and the hash before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<SavedPrefix>,
}

/// Where a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From the first line.
    Fresh,
    /// From this line, the rest being done.
    Resume(u64),
    /// Nothing: the input was done before.
    Complete,
}

impl Start {
    /// The first line to read.
    pub fn line(self) -> u64 {
        match self {
            Start::Fresh | Start::Complete => 1,
            Start::Resume(line) => line,
        }
    }
}

/// A checkpoint file for one input.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    saved: Saved,
    /// The line the file on disk holds for this input, if it holds one.
    on_disk: Option<u64>,
    /// Why the last save failed, if it did.
    failure: Option<String>,
    /// The input followed up to the line saved; none for compressed input.
    follower: Option<Prefix>,
}

impl Checkpoint {
    /// The checkpoint at `path` for `command` on the input `label` of
    /// `identity`, read from `source` (the file and how its lines end;
    /// none when it is compressed): where to start, from the file unless
    /// `restart`. A checkpoint of another command, or of a file whose
    /// prefix changed, is an error.
    pub fn open(
        path: PathBuf,
        command: &str,
        label: &str,
        identity: Identity,
        restart: bool,
        source: Option<(&Path, Newline)>,
    ) -> Result<(Self, Start), CliError> {
        let fresh = Saved {
            version: VERSION,
            command: command.to_owned(),
            input: label.to_owned(),
            identity,
            line: 1,
            complete: false,
            prefix: None,
        };
        let error = |reason: String| CliError::Checkpoint {
            path: path.clone(),
            reason,
        };
        let follow = || {
            source
                .map(|(file, newline)| Prefix::open(file, newline))
                .transpose()
                .map_err(|e| CliError::file(source.map_or(Path::new(label), |s| s.0), e))
        };
        let mut checkpoint = Self {
            path: path.clone(),
            saved: fresh.clone(),
            on_disk: None,
            failure: None,
            follower: follow()?,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(_) if restart => None,
            Ok(text) => Some(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(error(format!("{e}; pass --restart to start over"))),
        };
        let Some(text) = text else {
            return Ok((checkpoint, Start::Fresh));
        };
        let saved: Saved = serde_json::from_str(&text).map_err(|e| {
            error(format!(
                "is not a marketap checkpoint ({e}); delete it or pass --restart"
            ))
        })?;
        if !(1..=VERSION).contains(&saved.version) || saved.command != command {
            return Err(error(format!(
                "was written by `marketap {}` (format {}), not `marketap {command}`; pass \
                 --restart to start over, or give another --checkpoint",
                saved.command, saved.version
            )));
        }
        let mut line = saved.line;
        let mut complete = saved.complete;
        match (saved.prefix, checkpoint.follower.as_mut()) {
            (Some(prefix), Some(follower)) => {
                let io_error = |e: io::Error| error(format!("the input cannot be read: {e}"));
                if !follower
                    .skip_to(prefix.offset, line, prefix.mid_line)
                    .map_err(io_error)?
                {
                    return Err(error(format!(
                        "was written when the file held at least {} bytes (up to line {line}); \
                         it has {} now: it was cut or replaced. Pass --restart to import it \
                         from the start",
                        prefix.offset, identity.size
                    )));
                }
                let now = follower.mark().crc32;
                if now != prefix.crc32 {
                    return Err(error(format!(
                        "was written for another file, or the file changed before line {line}: \
                         its first {} bytes, which the checkpoint covers, hash to CRC-32 \
                         {now:08x} now and {:08x} then (a file that only grew at its end \
                         resumes); pass --restart to import it from the start",
                        prefix.offset, prefix.crc32
                    )));
                }
                let grown = identity.size > prefix.offset;
                if grown {
                    complete = false;
                    if prefix.mid_line {
                        // Its last line had no newline then and may have
                        // grown since: it is read again.
                        line -= 1;
                        checkpoint.follower = follow()?;
                    }
                }
            }
            (prefix, _) => {
                if saved.identity != identity {
                    let compressed = if source.is_none() && prefix.is_none() {
                        " (compressed input resumes only when the file is unchanged)"
                    } else {
                        ""
                    };
                    return Err(error(format!(
                        "was written for another file, or the file changed since (then {} \
                         bytes, head hash {:016x}; now {} bytes, head hash {:016x}){compressed}; \
                         pass --restart to import it from the start",
                        saved.identity.size,
                        saved.identity.head_hash,
                        identity.size,
                        identity.head_hash
                    )));
                }
                if prefix.is_some() != source.is_some() {
                    // Compressed then and plain now, or the other way: read
                    // from the start to follow it.
                    checkpoint.follower = follow()?;
                }
            }
        }
        let start = if complete {
            Start::Complete
        } else if line <= 1 {
            Start::Fresh
        } else {
            Start::Resume(line)
        };
        checkpoint.saved = Saved { line, ..fresh };
        checkpoint.on_disk = Some(saved.line);
        Ok((checkpoint, start))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The line the file on disk holds, if it holds one for this input:
    /// where a rerun starts.
    pub fn on_disk(&self) -> Option<u64> {
        self.on_disk
    }

    /// Why the last save failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// The temp file a save writes first.
    pub fn temp_path(&self) -> PathBuf {
        let mut temp = self.path.as_os_str().to_owned();
        temp.push(".tmp");
        PathBuf::from(temp)
    }

    /// Records that everything before `line` is done (and, if `complete`,
    /// everything): a temp file beside it, then a rename. A failed save
    /// leaves the file as it was and removes the temp file.
    pub fn save(&mut self, line: u64, complete: bool) -> io::Result<()> {
        let prefix = match &mut self.follower {
            Some(follower) => {
                let mark = follower.advance_to(line)?;
                Some(SavedPrefix {
                    offset: mark.offset,
                    crc32: mark.crc32,
                    mid_line: mark.mid_line,
                })
            }
            None => None,
        };
        let saved = Saved {
            line,
            complete,
            prefix,
            ..self.saved.clone()
        };
        let temp = self.temp_path();
        let write = || -> io::Result<()> {
            let mut text = serde_json::to_vec(&saved)?;
            text.push(b'\n');
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&text)?;
            drop(file);
            std::fs::rename(&temp, &self.path)
        };
        match write() {
            Ok(()) => {
                self.saved = saved;
                self.on_disk = Some(line);
                self.failure = None;
                Ok(())
            }
            Err(error) => {
                let _ = std::fs::remove_file(&temp);
                self.failure = Some(error.to_string());
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_resumes_only_the_same_command_on_the_same_file() {
        let dir = std::env::temp_dir().join(format!("marketap-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.checkpoint");
        let _ = std::fs::remove_file(&path);
        let id = Identity {
            size: 10,
            head_hash: 7,
        };
        let (mut checkpoint, start) =
            Checkpoint::open(path.clone(), "import events", "in", id, false, None).unwrap();
        assert_eq!(start, Start::Fresh);
        checkpoint.save(42, false).unwrap();
        let (_, start) =
            Checkpoint::open(path.clone(), "import events", "in", id, false, None).unwrap();
        assert_eq!(start, Start::Resume(42));
        let (_, start) =
            Checkpoint::open(path.clone(), "import events", "in", id, true, None).unwrap();
        assert_eq!(start, Start::Fresh);
        let other = Identity { size: 11, ..id };
        let error = Checkpoint::open(path.clone(), "import events", "in", other, false, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("--restart"), "{error}");
        assert!(Checkpoint::open(path.clone(), "import profiles", "in", id, false, None).is_err());
        checkpoint.save(50, true).unwrap();
        let (_, start) =
            Checkpoint::open(path.clone(), "import events", "in", id, false, None).unwrap();
        assert_eq!(start, Start::Complete);
        std::fs::write(&path, "garbage").unwrap();
        assert!(Checkpoint::open(path.clone(), "import events", "in", id, false, None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
