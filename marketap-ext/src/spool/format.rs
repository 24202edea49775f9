//! The bytes of a spool segment file, and the reader that gets every good
//! record out of one, damaged or not.
//!
//! A segment starts with a 16-byte header: the magic `MKTSPOOL`, the
//! format version (u32, little endian) and four reserved bytes. Records
//! follow, each:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `MKR1` |
//! | 4 | body length (u32 LE) |
//! | 4 | CRC-32 of everything after it: seq, time, kind, body |
//! | 8 | sequence number (u64 LE), one more than the record before |
//! | 8 | enqueued at, milliseconds since the Unix epoch (u64 LE) |
//! | 1 | kind |
//! | n | body: the item's JSON as the API takes it |
//!
//! A record whose magic, length or CRC does not hold is damage: the reader
//! reports the damaged byte range and resumes at the next offset where a
//! whole record checks out, so every good record before and after a torn
//! tail, a flipped byte or a zeroed region is kept. The scan always moves
//! forward, so it ends on any input.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The segment format this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

pub(super) const SEGMENT_MAGIC: &[u8; 8] = b"MKTSPOOL";
pub(super) const SEGMENT_HEADER: usize = 16;
const RECORD_MAGIC: &[u8; 4] = b"MKR1";
/// Magic, length, CRC, seq, time, kind.
pub(super) const RECORD_HEADER: usize = 4 + 4 + 4 + 8 + 8 + 1;
/// Bodies past this are damage: no item is near it (the API takes 1 MB).
pub(super) const MAX_BODY: usize = 64 << 20;

/// A segment file's header.
pub(super) fn segment_header() -> [u8; SEGMENT_HEADER] {
    let mut header = [0; SEGMENT_HEADER];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// What a segment's first bytes say.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Header {
    /// A header of this version.
    Current,
    /// A header of another version.
    Version(u32),
    /// Too short or not a spool segment.
    Damaged,
}

pub(super) fn read_header(bytes: &[u8]) -> Header {
    if bytes.len() < SEGMENT_HEADER || &bytes[..8] != SEGMENT_MAGIC {
        return Header::Damaged;
    }
    match u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) {
        FORMAT_VERSION => Header::Current,
        other => Header::Version(other),
    }
}

/// Appends one record to `out`.
pub(super) fn encode(out: &mut Vec<u8>, seq: u64, enqueued_at: SystemTime, kind: u8, body: &[u8]) {
    let millis = enqueued_at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    });
    let len = u32::try_from(body.len()).expect("a body under 4 GiB");
    let start = out.len();
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&millis.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out[start + 12..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// The size of a record with a `body_len`-byte body.
pub(super) fn record_len(body_len: usize) -> u64 {
    (RECORD_HEADER + body_len) as u64
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decoded<'a> {
    pub seq: u64,
    pub enqueued_at: SystemTime,
    pub kind: u8,
    pub body: &'a [u8],
}

/// What the reader found next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Entry<'a> {
    /// A whole record at `offset`.
    Record { offset: usize, record: Decoded<'a> },
    /// Bytes `start..end` hold no readable record.
    Damaged { start: usize, end: usize },
}

/// Decodes the record at the start of `bytes`, if a whole, good one is
/// there.
fn decode(bytes: &[u8]) -> Option<(Decoded<'_>, usize)> {
    if bytes.len() < RECORD_HEADER || &bytes[..4] != RECORD_MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().ok()?) as usize;
    if len > MAX_BODY || bytes.len() < RECORD_HEADER + len {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
    let end = RECORD_HEADER + len;
    if crc32fast::hash(&bytes[12..end]) != crc {
        return None;
    }
    let seq = u64::from_le_bytes(bytes[12..20].try_into().ok()?);
    let millis = u64::from_le_bytes(bytes[20..28].try_into().ok()?);
    let record = Decoded {
        seq,
        enqueued_at: UNIX_EPOCH + Duration::from_millis(millis),
        kind: bytes[28],
        body: &bytes[RECORD_HEADER..end],
    };
    Some((record, end))
}

/// Reads records from a segment's bytes (after its header), from `offset`
/// on. Damage comes out as one [`Entry::Damaged`] per damaged region.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8], offset: usize) -> Self {
        Self { bytes, offset }
    }

    /// Where the next entry starts.
    pub(super) fn offset(&self) -> usize {
        self.offset
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        let start = self.offset;
        if start >= self.bytes.len() {
            return None;
        }
        if let Some((record, len)) = decode(&self.bytes[start..]) {
            self.offset = start + len;
            return Some(Entry::Record {
                offset: start,
                record,
            });
        }
        // Damage: resume at the next offset where a whole record checks
        // out, or at the end. Each step moves forward, so this ends.
        let mut next = start + 1;
        while next < self.bytes.len() {
            if self.bytes[next..].starts_with(RECORD_MAGIC) && decode(&self.bytes[next..]).is_some()
            {
                break;
            }
            next += 1;
        }
        self.offset = next;
        Some(Entry::Damaged { start, end: next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for seq in 0..n {
            let body = format!("{{\"user_id\":\"u{seq}\"}}");
            encode(
                &mut out,
                seq,
                UNIX_EPOCH + Duration::from_millis(seq * 1000),
                0,
                body.as_bytes(),
            );
        }
        out
    }

    fn read(bytes: &[u8]) -> (Vec<u64>, Vec<(usize, usize)>) {
        let (mut seqs, mut damaged) = (Vec::new(), Vec::new());
        for entry in Reader::new(bytes, 0) {
            match entry {
                Entry::Record { record, .. } => seqs.push(record.seq),
                Entry::Damaged { start, end } => damaged.push((start, end)),
            }
        }
        (seqs, damaged)
    }

    #[test]
    fn records_read_back_as_written() {
        let mut out = Vec::new();
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        encode(&mut out, 7, at, 2, b"{\"a\":1}");
        assert_eq!(out.len() as u64, record_len(7));
        let entries: Vec<_> = Reader::new(&out, 0).collect();
        assert_eq!(
            entries,
            [Entry::Record {
                offset: 0,
                record: Decoded {
                    seq: 7,
                    enqueued_at: at,
                    kind: 2,
                    body: b"{\"a\":1}"
                }
            }]
        );
    }

    #[test]
    fn a_torn_tail_is_one_damaged_range_after_every_good_record() {
        let whole = records(3);
        let torn = &whole[..whole.len() - 5];
        let last = whole.len() - record_len(r#"{"user_id":"u2"}"#.len()) as usize;
        assert_eq!(read(torn), (vec![0, 1], vec![(last, torn.len())]));
    }

    #[test]
    fn a_flipped_byte_loses_only_its_record() {
        let mut bytes = records(5);
        let second = record_len(r#"{"user_id":"u0"}"#.len()) as usize;
        let third = second * 2;
        bytes[second + RECORD_HEADER + 3] ^= 0x20;
        assert_eq!(read(&bytes), (vec![0, 2, 3, 4], vec![(second, third)]));
    }

    #[test]
    fn a_zeroed_region_loses_only_the_records_it_touches() {
        let mut bytes = records(6);
        let one = record_len(r#"{"user_id":"u0"}"#.len()) as usize;
        // From the middle of record 1 to the middle of record 3.
        bytes[one + 10..3 * one + 10].fill(0);
        assert_eq!(read(&bytes), (vec![0, 4, 5], vec![(one, 4 * one)]));
    }

    #[test]
    fn garbage_ends_in_one_range_and_never_panics() {
        let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(read(&garbage), (vec![], vec![(0, garbage.len())]));
        // A magic with an absurd length, and a truncated header.
        let mut bytes = b"MKR1\xff\xff\xff\xff".to_vec();
        bytes.extend(records(1));
        bytes.extend_from_slice(b"MKR1\x01");
        let (seqs, damaged) = read(&bytes);
        assert_eq!(seqs, [0]);
        assert_eq!(damaged.len(), 2);
    }

    #[test]
    fn headers_say_their_version() {
        let header = segment_header();
        assert_eq!(read_header(&header), Header::Current);
        let mut future = header;
        future[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(read_header(&future), Header::Version(2));
        assert_eq!(read_header(&header[..10]), Header::Damaged);
        assert_eq!(read_header(b"NOTSPOOL\x01\0\0\0\0\0\0\0"), Header::Damaged);
    }
}
