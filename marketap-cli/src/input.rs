//! Opening the input: a file or stdin, gzip detected by its magic bytes
//! whatever the name, refused when it is a directory, empty or binary; the
//! count of raw bytes read (for the ETA); the format, from the name or the
//! first byte; and the file's [`Identity`] (size and a hash of its head),
//! which a checkpoint records so that a resume is only ever of the same
//! file.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use flate2::bufread::MultiGzDecoder;
use serde::{Deserialize, Serialize};

use crate::{
    args::Format,
    encoding::{Resolved, SNIFF, TextEncoding, first_invalid, hint},
    error::CliError,
    prefix::Newline,
};

/// Bytes of the file's head that its identity hashes.
const HEAD_BYTES: u64 = 64 * 1024;
/// The read buffer.
const BUFFER: usize = 256 * 1024;
/// gzip's magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Which file a checkpoint is for: its size and an FNV-1a hash of its
/// first 64 KiB, as stored on disk (compressed, if it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The file's size in bytes.
    pub size: u64,
    /// The hash of its head, in hex.
    pub head_hash: u64,
}

/// An opened input.
pub struct Input {
    /// The file as given, or `stdin`.
    pub label: String,
    /// The file, unless it is stdin.
    pub path: Option<PathBuf>,
    /// The content, decompressed.
    pub reader: Box<dyn BufRead + Send>,
    /// The file's size on disk, when known.
    pub size: Option<u64>,
    /// Raw bytes read from the file or stdin so far.
    pub read_bytes: Arc<AtomicU64>,
    /// The file's identity; none for stdin.
    pub identity: Option<Identity>,
    /// Whether it is gzip-compressed.
    pub gzip: bool,
    /// The encoding it is read in.
    pub encoding: Resolved,
}

/// What the first byte, or the name, says the content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// One item per line.
    Lines,
    /// CSV with a header.
    Csv,
}

impl Input {
    /// Opens `spec` (a path, or `-` for stdin) in `encoding` for a command
    /// that will `verb` it. Refuses a directory, an empty input and a
    /// binary one, and one read as UTF-8 that looks like another encoding.
    pub fn open(spec: &str, verb: &'static str, encoding: TextEncoding) -> Result<Self, CliError> {
        let read_bytes = Arc::new(AtomicU64::new(0));
        let (label, path, raw, size, identity): (_, _, Box<dyn Read + Send>, _, _) = if spec == "-"
        {
            ("stdin".to_owned(), None, Box::new(io::stdin()), None, None)
        } else {
            let path = PathBuf::from(spec);
            let metadata = std::fs::metadata(&path).map_err(|e| CliError::file(&path, e))?;
            if metadata.is_dir() {
                return Err(CliError::Directory { path });
            }
            let identity = identify(&path)?;
            let file = File::open(&path).map_err(|e| CliError::file(&path, e))?;
            (
                spec.to_owned(),
                Some(path),
                Box::new(file),
                Some(metadata.len()),
                Some(identity),
            )
        };
        let counted = Counting {
            inner: raw,
            read: read_bytes.clone(),
        };
        let mut buffered = BufReader::with_capacity(BUFFER, counted);
        let head = buffered.fill_buf().map_err(|e| read_error(&label, e))?;
        let gzip = head.starts_with(&GZIP_MAGIC);
        let mut reader: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(
                BUFFER,
                MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
        let head = reader.fill_buf().map_err(|e| read_error(&label, e))?;
        let head = &head[..head.len().min(SNIFF)];
        let encoding = Resolved::new(encoding, head);
        if encoding.is_utf8() {
            let nul = head.iter().position(|&b| b == 0);
            if let Some(hint) = hint(head) {
                let problem = match (nul, first_invalid(head)) {
                    (Some(_), _) => Some("it holds NUL bytes".to_owned()),
                    (None, Some(offset)) => Some(format!("byte {offset} is not valid UTF-8")),
                    (None, None) => None,
                };
                if let Some(problem) = problem {
                    return Err(CliError::Encoding {
                        label,
                        problem,
                        hint,
                    });
                }
            }
        } else {
            reader = encoding.reader(reader);
        }
        let content = reader.fill_buf().map_err(|e| read_error(&label, e))?;
        if content.is_empty() {
            return Err(CliError::Empty { label, verb });
        }
        if let Some(offset) = content.iter().position(|&b| b == 0) {
            return Err(CliError::Binary { label, offset });
        }
        Ok(Self {
            label,
            path,
            reader,
            size,
            read_bytes,
            identity,
            gzip,
            encoding,
        })
    }

    /// The file a checkpoint follows, and how its lines end: none for
    /// stdin and for compressed input, whose offsets are not lines.
    pub fn prefix_source(&self) -> Option<(&Path, Newline)> {
        match &self.path {
            Some(path) if !self.gzip => Some((path.as_path(), self.encoding.newline())),
            _ => None,
        }
    }

    /// The format to read: as asked, else from the name (`.csv`; `.ndjson`,
    /// `.jsonl`, `.json`; `.gz` stripped first), else for items from the
    /// first non-blank byte (`{` or `[` is NDJSON) and for ids one per line.
    pub fn content(&mut self, format: Format, ids: bool) -> Content {
        match format {
            Format::Csv => return Content::Csv,
            Format::Ndjson => return Content::Lines,
            Format::Auto => {}
        }
        if let Some(path) = &self.path {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            let name = name.strip_suffix(".gz").unwrap_or(&name);
            if name.ends_with(".csv") {
                return Content::Csv;
            }
            if [".ndjson", ".jsonl", ".json", ".txt"]
                .iter()
                .any(|ext| name.ends_with(ext))
            {
                return Content::Lines;
            }
        }
        if ids {
            return Content::Lines;
        }
        let first = self
            .reader
            .fill_buf()
            .ok()
            .and_then(|head| head.iter().copied().find(|b| !b.is_ascii_whitespace()));
        match first {
            Some(b'{' | b'[') => Content::Lines,
            _ => Content::Csv,
        }
    }

    /// The content reader, leaving an empty one in its place.
    pub fn take_reader(&mut self) -> Box<dyn BufRead + Send> {
        std::mem::replace(&mut self.reader, Box::new(io::empty()))
    }

    /// A file beside the input named `<input><suffix>`, or `<stdin-name>`
    /// in the current directory for stdin.
    pub fn beside(&self, suffix: &str) -> PathBuf {
        match &self.path {
            Some(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(suffix);
                PathBuf::from(name)
            }
            None => PathBuf::from(format!("marketap-stdin{suffix}")),
        }
    }
}

fn read_error(label: &str, error: io::Error) -> CliError {
    CliError::file(label, describe_read_error(error))
}

/// A read error with a clearer message for the usual gzip failures.
pub fn describe_read_error(error: io::Error) -> io::Error {
    let message = match error.kind() {
        io::ErrorKind::UnexpectedEof => "the gzip data is truncated (the file ends mid-stream)",
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
            return io::Error::new(
                error.kind(),
                format!("the data is corrupt or not what it claims to be: {error}"),
            );
        }
        _ => return error,
    };
    io::Error::new(error.kind(), message)
}

/// The identity of the file at `path`.
pub fn identify(path: &Path) -> Result<Identity, CliError> {
    let file = File::open(path).map_err(|e| CliError::file(path, e))?;
    let size = file.metadata().map_err(|e| CliError::file(path, e))?.len();
    let mut head = Vec::new();
    file.take(HEAD_BYTES)
        .read_to_end(&mut head)
        .map_err(|e| CliError::file(path, e))?;
    Ok(Identity {
        size,
        head_hash: fnv1a(&head),
    })
}

/// FNV-1a, 64 bits: stable across versions and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Counts the bytes read through it.
struct Counting {
    inner: Box<dyn Read + Send>,
    read: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_its_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
