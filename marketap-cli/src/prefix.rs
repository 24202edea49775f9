//! The prefix of an input file up to a line: the byte offset where that
//! line starts in the file as stored, and a CRC-32 of every byte before
//! it. A checkpoint records both, so that a rerun can tell an export that
//! only grew (its prefix unchanged: resume, whatever its size now) from
//! one that changed (refuse). [`Prefix`] follows the checkpoint through
//! the file on a handle of its own, hashing as it goes, in chunks: nothing
//! is held in memory, and each byte is hashed once.
//!
//! Lines are counted by newlines in the file's own encoding: the byte
//! `\n` (UTF-8, CP949: no multi-byte character contains it), or the
//! 16-bit unit `\n` at an even offset (UTF-16). A compressed file has no
//! prefix: its offsets do not map to lines.

use std::{
    fs::File,
    io::{self, Read},
    path::Path,
};

/// Bytes read at once.
const CHUNK: usize = 64 * 1024;

/// How a line ends in the file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newline {
    /// The byte `\n`.
    Byte,
    /// The unit `0A 00` at an even offset.
    Utf16Le,
    /// The unit `00 0A` at an even offset.
    Utf16Be,
}

impl Newline {
    /// Where the first newline in `bytes` (which start at an even offset
    /// for UTF-16) ends, and how many bytes may be consumed without one.
    fn find(self, bytes: &[u8]) -> Result<usize, usize> {
        match self {
            Newline::Byte => memchr::memchr(b'\n', bytes)
                .map(|i| i + 1)
                .ok_or(bytes.len()),
            Newline::Utf16Le | Newline::Utf16Be => {
                let unit = if self == Newline::Utf16Le {
                    [b'\n', 0]
                } else {
                    [0, b'\n']
                };
                bytes
                    .chunks_exact(2)
                    .position(|pair| pair == unit)
                    .map(|i| 2 * i + 2)
                    .ok_or(bytes.len() & !1)
            }
        }
    }
}

/// Where a line starts in a file, and the hash of what is before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The line.
    pub line: u64,
    /// Its byte offset in the file as stored.
    pub offset: u64,
    /// The CRC-32 of the bytes before `offset`.
    pub crc32: u32,
    /// The file ended before `line`, in the middle of a line without a
    /// newline (its last): `offset` is the end of the file.
    pub mid_line: bool,
}

/// A file followed from its start, line by line.
#[derive(Debug)]
pub struct Prefix {
    file: File,
    newline: Newline,
    hasher: crc32fast::Hasher,
    /// The line that starts at `offset` (or is cut there, at the end).
    line: u64,
    offset: u64,
    /// Whether `offset` is in the middle of a line (the end of the file).
    mid_line: bool,
    buffer: Vec<u8>,
    /// Bytes of `buffer` not yet consumed: `buffer[start..end]`.
    start: usize,
    end: usize,
}

impl Prefix {
    /// The file at `path`, at its first line.
    pub fn open(path: &Path, newline: Newline) -> io::Result<Self> {
        Ok(Self {
            file: File::open(path)?,
            newline,
            hasher: crc32fast::Hasher::new(),
            line: 1,
            offset: 0,
            mid_line: false,
            buffer: vec![0; CHUNK],
            start: 0,
            end: 0,
        })
    }

    /// Where it stands.
    pub fn mark(&self) -> Mark {
        Mark {
            line: self.line,
            offset: self.offset,
            crc32: self.hasher.clone().finalize(),
            mid_line: self.mid_line,
        }
    }

    /// Moves on to where `line` starts, or to the end of the file if it
    /// ends first; where it stands then.
    pub fn advance_to(&mut self, line: u64) -> io::Result<Mark> {
        while self.line < line {
            match self.newline.find(&self.buffer[self.start..self.end]) {
                Ok(through) => {
                    self.consume(through);
                    self.line += 1;
                    self.mid_line = false;
                }
                Err(without) => {
                    if without > 0 {
                        self.consume(without);
                        self.mid_line = true;
                    }
                    if !self.refill()? {
                        // The end of the file (an odd last byte of UTF-16
                        // included): its last line has no newline.
                        let rest = self.end - self.start;
                        if rest > 0 {
                            self.consume(rest);
                            self.mid_line = true;
                        }
                        break;
                    }
                }
            }
        }
        Ok(self.mark())
    }

    /// Hashes the first `offset` bytes, which hold the lines before
    /// `line`; false if the file is shorter.
    pub fn skip_to(&mut self, offset: u64, line: u64, mid_line: bool) -> io::Result<bool> {
        while self.offset < offset {
            if self.start == self.end && !self.refill()? {
                return Ok(false);
            }
            let want = (offset - self.offset).min((self.end - self.start) as u64) as usize;
            self.consume(want);
        }
        self.line = line;
        self.mid_line = mid_line;
        Ok(true)
    }

    fn consume(&mut self, n: usize) {
        self.hasher.update(&self.buffer[self.start..self.start + n]);
        self.start += n;
        self.offset += n as u64;
    }

    /// Reads more, keeping what is not consumed; false at the end.
    fn refill(&mut self) -> io::Result<bool> {
        self.buffer.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        loop {
            match self.file.read(&mut self.buffer[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("marketap-prefix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_line_is_found_by_its_newlines_and_hashed_up_to_its_start() {
        let text = b"first\nsecond\r\nthird";
        let path = file("bytes", text);
        let mut prefix = Prefix::open(&path, Newline::Byte).unwrap();
        let mark = prefix.advance_to(3).unwrap();
        assert_eq!((mark.line, mark.offset, mark.mid_line), (3, 14, false));
        assert_eq!(mark.crc32, crc32fast::hash(&text[..14]));
        // Past the end: the end of the file, mid-line.
        let mark = prefix.advance_to(4).unwrap();
        assert_eq!((mark.offset, mark.mid_line), (text.len() as u64, true));
        assert_eq!(mark.crc32, crc32fast::hash(text));

        // A second follower checks the first one's prefix.
        let mut again = Prefix::open(&path, Newline::Byte).unwrap();
        assert!(again.skip_to(14, 3, false).unwrap());
        assert_eq!(again.mark().crc32, crc32fast::hash(&text[..14]));
        assert!(
            !Prefix::open(&path, Newline::Byte)
                .unwrap()
                .skip_to(99, 9, false)
                .unwrap()
        );
    }

    #[test]
    fn utf16_newlines_are_whole_units_at_even_offsets() {
        // "a\n" then U+0A00 (bytes 00 0A in LE), then "\n", then "b".
        let le: Vec<u8> = "a\n\u{0a00}\nb"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let path = file("le", &le);
        let mut prefix = Prefix::open(&path, Newline::Utf16Le).unwrap();
        assert_eq!(prefix.advance_to(2).unwrap().offset, 4);
        assert_eq!(prefix.advance_to(3).unwrap().offset, 8);
        let be: Vec<u8> = "a\nb".encode_utf16().flat_map(u16::to_be_bytes).collect();
        let path = file("be", &be);
        let mut prefix = Prefix::open(&path, Newline::Utf16Be).unwrap();
        assert_eq!(prefix.advance_to(2).unwrap().offset, 4);
    }
}
