//! The input's text encoding (`--encoding`): UTF-8 by default, read as it
//! is (a byte-order mark allowed, no transcoding pass); CP949 (Korean
//! Excel's "CSV (쉼표로 분리)", EUC-KR's superset) and UTF-16 ("유니코드
//! 텍스트") through `encoding_rs`'s WHATWG decoders, streamed by
//! [`Decoding`]; or `auto`, from a byte-order mark, else UTF-8 if the head
//! is UTF-8, else CP949 if it decodes as CP949. A UTF-8 input that is not
//! UTF-8 but reads as CP949 or UTF-16 is refused with the option that reads
//! it ([`hint`]). Bytes that do not decode become one invalid UTF-8 byte
//! each, so that the line holding them is rejected, never silently
//! altered.

use std::io::{self, BufRead, Read};

use clap::ValueEnum;
use encoding_rs::{Decoder, DecoderResult, EUC_KR, Encoding, UTF_8, UTF_16BE, UTF_16LE};

use crate::prefix::Newline;

/// Bytes of the head that `auto` and the hint look at.
pub const SNIFF: usize = 64 * 1024;
/// Decoded bytes produced at once.
const DECODED: usize = 64 * 1024;

/// `--encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TextEncoding {
    /// UTF-8, with or without a byte-order mark (read as it is).
    #[value(name = "utf-8", alias = "utf8")]
    Utf8,
    /// CP949 (Windows-949, Korean Excel's CSV): EUC-KR and its extensions.
    Cp949,
    /// The same decoder as cp949 (the WHATWG EUC-KR is CP949).
    EucKr,
    /// UTF-16, little-endian (Windows' "Unicode text").
    #[value(name = "utf-16le")]
    Utf16le,
    /// UTF-16, big-endian.
    #[value(name = "utf-16be")]
    Utf16be,
    /// A byte-order mark, else UTF-8 if the first 64 KiB are UTF-8, else CP949.
    Auto,
}

/// The encoding an input is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved(&'static Encoding);

impl Resolved {
    /// `asked`, for an input whose content starts with `head`.
    pub fn new(asked: TextEncoding, head: &[u8]) -> Self {
        Resolved(match asked {
            TextEncoding::Utf8 => UTF_8,
            TextEncoding::Cp949 | TextEncoding::EucKr => EUC_KR,
            TextEncoding::Utf16le => UTF_16LE,
            TextEncoding::Utf16be => UTF_16BE,
            TextEncoding::Auto => match Encoding::for_bom(head) {
                Some((encoding, _)) => encoding,
                None if is_utf8(head) => UTF_8,
                None if decodes(EUC_KR, head) => EUC_KR,
                None => UTF_8,
            },
        })
    }

    /// Whether it is UTF-8: no decoding.
    pub fn is_utf8(self) -> bool {
        self.0 == UTF_8
    }

    /// Its name, for messages.
    pub fn name(self) -> &'static str {
        match self.0 {
            e if e == EUC_KR => "CP949",
            e => e.name(),
        }
    }

    /// How its lines end.
    pub fn newline(self) -> Newline {
        match self.0 {
            e if e == UTF_16LE => Newline::Utf16Le,
            e if e == UTF_16BE => Newline::Utf16Be,
            _ => Newline::Byte,
        }
    }

    /// `reader`'s content decoded to UTF-8, unless it is UTF-8 already.
    pub fn reader(self, reader: Box<dyn BufRead + Send>) -> Box<dyn BufRead + Send> {
        if self.is_utf8() {
            reader
        } else {
            Box::new(Decoding::new(reader, self.0))
        }
    }
}

/// Whether `head` is UTF-8, but for a character cut at its end.
fn is_utf8(head: &[u8]) -> bool {
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

/// Whether `head` decodes in `encoding` without a malformed sequence (but
/// for one cut at its end).
fn decodes(encoding: &'static Encoding, head: &[u8]) -> bool {
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let mut out = vec![0; head.len() * 3 + 16];
    let (result, _, _) = decoder.decode_to_utf8_without_replacement(head, &mut out, false);
    result == DecoderResult::InputEmpty
}

/// For content read as UTF-8 that starts with `head`: what it more likely
/// is and the option that reads it, when it is not UTF-8.
pub fn hint(head: &[u8]) -> Option<&'static str> {
    let head = &head[..head.len().min(SNIFF)];
    match Encoding::for_bom(head) {
        Some((e, _)) if e == UTF_16LE => {
            return Some(
                "it looks like UTF-16LE with a byte-order mark (Windows' Unicode text); pass \
                 --encoding utf-16le (or --encoding auto)",
            );
        }
        Some((e, _)) if e == UTF_16BE => {
            return Some(
                "it looks like UTF-16BE with a byte-order mark; pass --encoding utf-16be (or \
                 --encoding auto)",
            );
        }
        Some(_) => return None,
        None => {}
    }
    let sample = &head[..head.len().min(4096) & !1];
    let zeros = |parity: usize| {
        sample
            .iter()
            .skip(parity)
            .step_by(2)
            .filter(|&&b| b == 0)
            .count()
    };
    let half = sample.len() / 2;
    if half >= 4 {
        let (even, odd) = (zeros(0), zeros(1));
        if odd * 2 > half && even * 8 < half {
            return Some("it looks like UTF-16LE; pass --encoding utf-16le");
        }
        if even * 2 > half && odd * 8 < half {
            return Some("it looks like UTF-16BE; pass --encoding utf-16be");
        }
    }
    if !is_utf8(head) && decodes(EUC_KR, head) {
        return Some(
            "it looks like CP949 (Korean Excel's CSV); pass --encoding cp949 (or --encoding auto)",
        );
    }
    None
}

/// Where the first byte that is not UTF-8 is in `head`, if one is.
pub fn first_invalid(head: &[u8]) -> Option<usize> {
    match std::str::from_utf8(head) {
        Err(e) if e.error_len().is_some() => Some(e.valid_up_to()),
        _ => None,
    }
}

/// A reader's content decoded from an encoding to UTF-8, streamed. A
/// byte-order mark of that encoding is removed; a malformed sequence
/// becomes the byte 0xFF (never valid UTF-8), so its line is rejected.
pub struct Decoding<R> {
    inner: R,
    decoder: Decoder,
    out: Box<[u8]>,
    start: usize,
    end: usize,
    done: bool,
}

impl<R: BufRead> Decoding<R> {
    /// Decodes `inner` from `encoding`.
    pub fn new(inner: R, encoding: &'static Encoding) -> Self {
        Self {
            inner,
            decoder: encoding.new_decoder_with_bom_removal(),
            out: vec![0; DECODED].into_boxed_slice(),
            start: 0,
            end: 0,
            done: false,
        }
    }

    fn decode_more(&mut self) -> io::Result<()> {
        self.start = 0;
        self.end = 0;
        let src = self.inner.fill_buf()?;
        let last = src.is_empty();
        // One byte is kept for the 0xFF of a malformed sequence.
        let room = self.out.len() - 1;
        let (result, read, written) =
            self.decoder
                .decode_to_utf8_without_replacement(src, &mut self.out[..room], last);
        self.inner.consume(read);
        self.end = written;
        match result {
            DecoderResult::InputEmpty => self.done = last,
            DecoderResult::OutputFull => {}
            DecoderResult::Malformed(..) => {
                self.out[self.end] = 0xFF;
                self.end += 1;
            }
        }
        Ok(())
    }
}

impl<R: BufRead> Read for Decoding<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Decoding<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.start == self.end && !self.done {
            self.decode_more()?;
        }
        Ok(&self.out[self.start..self.end])
    }

    fn consume(&mut self, amount: usize) {
        self.start = (self.start + amount).min(self.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(bytes: &[u8], encoding: &'static Encoding) -> Vec<u8> {
        let mut out = Vec::new();
        // A one-byte buffer below: sequences cut at every place.
        let inner = io::BufReader::with_capacity(1, bytes);
        Decoding::new(inner, encoding)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn cp949_and_utf16_decode_streamed_and_bad_bytes_stay_invalid() {
        let (cp949, _, _) = EUC_KR.encode("회원번호,주문일시\n");
        assert_eq!(decoded(&cp949, EUC_KR), "회원번호,주문일시\n".as_bytes());
        let mut bad = cp949.to_vec();
        bad.insert(2, 0xFF);
        assert!(std::str::from_utf8(&decoded(&bad, EUC_KR)).is_err());
        let le: Vec<u8> = "\u{feff}가,b\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(decoded(&le, UTF_16LE), "가,b\n".as_bytes());
    }

    #[test]
    fn auto_reads_a_bom_else_utf8_else_cp949_and_the_hint_names_the_option() {
        let (cp949, _, _) = EUC_KR.encode("회원번호,주문일시\n");
        assert_eq!(Resolved::new(TextEncoding::Auto, &cp949).name(), "CP949");
        assert!(Resolved::new(TextEncoding::Auto, "회원번호".as_bytes()).is_utf8());
        assert_eq!(
            Resolved::new(TextEncoding::Auto, b"\xff\xfea\x00").name(),
            "UTF-16LE"
        );
        assert!(hint(&cp949).unwrap().contains("--encoding cp949"));
        assert!(
            hint(b"\xff\xfea\x00")
                .unwrap()
                .contains("--encoding utf-16le")
        );
        let le: Vec<u8> = "user_id,event_name\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(hint(&le).unwrap().contains("utf-16le"));
        assert_eq!(hint("회원번호".as_bytes()), None);
        assert_eq!(hint(b"caf\xe9 au lait"), None, "neither UTF-8 nor CP949");
    }
}
