//! The checkpoint file: the line below which every record of the input is
//! done (accepted, rejected or dead-lettered), and which file that is
//! ([`Identity`]), so that a rerun continues there and only on the same
//! file. It is replaced atomically (a temp file, then a rename), so a kill
//! at any moment leaves the old checkpoint or the new one, never half of
//! one.

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{error::CliError, input::Identity};

/// The format's version.
const VERSION: u32 = 1;

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
}

impl Checkpoint {
    /// The checkpoint at `path` for `command` on the input `label` of
    /// `identity`: where to start, from the file unless `restart`. A
    /// checkpoint of another command or another file is an error.
    pub fn open(
        path: PathBuf,
        command: &str,
        label: &str,
        identity: Identity,
        restart: bool,
    ) -> Result<(Self, Start), CliError> {
        let fresh = Saved {
            version: VERSION,
            command: command.to_owned(),
            input: label.to_owned(),
            identity,
            line: 1,
            complete: false,
        };
        let error = |reason: String| CliError::Checkpoint {
            path: path.clone(),
            reason,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(_) if restart => None,
            Ok(text) => Some(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(error(format!("{e}; pass --restart to start over"))),
        };
        let Some(text) = text else {
            return Ok((
                Self {
                    path,
                    saved: fresh,
                    on_disk: None,
                    failure: None,
                },
                Start::Fresh,
            ));
        };
        let saved: Saved = serde_json::from_str(&text).map_err(|e| {
            error(format!(
                "is not a marketap checkpoint ({e}); delete it or pass --restart"
            ))
        })?;
        if saved.version != VERSION || saved.command != command {
            return Err(error(format!(
                "was written by `marketap {}` (format {}), not `marketap {command}`; pass \
                 --restart to start over, or give another --checkpoint",
                saved.command, saved.version
            )));
        }
        if saved.identity != identity {
            return Err(error(format!(
                "was written for another file, or the file changed since (then {} bytes, head \
                 hash {:016x}; now {} bytes, head hash {:016x}); pass --restart to import it \
                 from the start",
                saved.identity.size, saved.identity.head_hash, identity.size, identity.head_hash
            )));
        }
        let start = if saved.complete {
            Start::Complete
        } else if saved.line <= 1 {
            Start::Fresh
        } else {
            Start::Resume(saved.line)
        };
        let line = saved.line;
        Ok((
            Self {
                path,
                saved: Saved { line, ..fresh },
                on_disk: Some(line),
                failure: None,
            },
            start,
        ))
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
        let saved = Saved {
            line,
            complete,
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
            Checkpoint::open(path.clone(), "import events", "in", id, false).unwrap();
        assert_eq!(start, Start::Fresh);
        checkpoint.save(42, false).unwrap();
        let (_, start) = Checkpoint::open(path.clone(), "import events", "in", id, false).unwrap();
        assert_eq!(start, Start::Resume(42));
        let (_, start) = Checkpoint::open(path.clone(), "import events", "in", id, true).unwrap();
        assert_eq!(start, Start::Fresh);
        let other = Identity { size: 11, ..id };
        let error = Checkpoint::open(path.clone(), "import events", "in", other, false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("--restart"), "{error}");
        assert!(Checkpoint::open(path.clone(), "import profiles", "in", id, false).is_err());
        checkpoint.save(50, true).unwrap();
        let (_, start) = Checkpoint::open(path.clone(), "import events", "in", id, false).unwrap();
        assert_eq!(start, Start::Complete);
        std::fs::write(&path, "garbage").unwrap();
        assert!(Checkpoint::open(path.clone(), "import events", "in", id, false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
