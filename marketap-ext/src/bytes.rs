//! Byte scans a word at a time, for the checks every item pays for on the
//! caller's thread: whether a string holds any byte that JSON escapes,
//! any that may start a control character, or any that is not printable
//! ASCII. Most strings (ids, names, property keys) hold none, so the answer
//! is found in a few steps of eight bytes, without a call.

/// `0x01` in every byte.
const ONES: u64 = u64::from_le_bytes([0x01; 8]);
/// `0x80` in every byte.
const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);

/// The high bit of each byte of `word` below `n` (at most 0x80) is set in
/// the result, and no high bit is set unless some byte is below `n`
/// ("Bit Twiddling Hacks", `hasless`: a borrow may mark a byte falsely, but
/// only one that comes after a byte that matched).
const fn below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES * n as u64) & !word & HIGHS
}

/// As [`below`], for bytes equal to `byte`.
const fn equal(word: u64, byte: u8) -> u64 {
    below(word ^ (ONES * byte as u64), 1)
}

/// Whether any byte of `word` is one serde_json escapes in a string: a
/// quote, a backslash, or a control character below 0x20.
pub(crate) const fn escapes(word: u64) -> bool {
    below(word, 0x20) | equal(word, b'"') | equal(word, b'\\') != 0
}

/// Whether any byte of `word` is below 0x20, DEL (0x7F), or 0xC2, which
/// starts U+0080 to U+00BF in UTF-8 (U+0080 to U+009F are control
/// characters).
pub(crate) const fn may_be_control(word: u64) -> bool {
    below(word, 0x20) | equal(word, 0x7f) | equal(word, 0xc2) != 0
}

/// Whether any byte of `word` is one [`escapes`] finds, or DEL (0x7F) or
/// above: not printable ASCII. An id with none of them holds no control
/// character and is written as it is: one scan both checks it and counts
/// it (any other id is checked in full).
pub(crate) const fn escapes_or_not_ascii(word: u64) -> bool {
    // A byte from 0x7F up has its high bit set, or gets it by adding one.
    // Adding one carries into the next byte only from 0xFF, itself found.
    let not_ascii = (word | word.wrapping_add(ONES)) & HIGHS;
    below(word, 0x20) | equal(word, b'"') | equal(word, b'\\') | not_ascii != 0
}

/// Whether `found` holds for some word of `bytes`. Words may overlap (the
/// last one ends at the last byte; so may the two halves of a string of
/// four to seven bytes); fewer than four bytes are padded with `a`, which
/// neither test above finds.
#[inline]
pub(crate) fn any_word(bytes: &[u8], found: impl Fn(u64) -> bool) -> bool {
    let (words, rest) = bytes.as_chunks::<8>();
    if words.is_empty() {
        return found(short_word(rest));
    }
    if words.iter().any(|word| found(u64::from_le_bytes(*word))) {
        return true;
    }
    match bytes.last_chunk::<8>() {
        Some(last) if !rest.is_empty() => found(u64::from_le_bytes(*last)),
        _ => false,
    }
}

/// Fewer than eight bytes as one word: two overlapping halves from four
/// bytes on, else the bytes one by one over `a`s.
#[inline]
fn short_word(bytes: &[u8]) -> u64 {
    if let (Some(first), Some(last)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        return u64::from(u32::from_le_bytes(*first)) | u64::from(u32::from_le_bytes(*last)) << 32;
    }
    let mut word = u64::from_le_bytes([b'a'; 8]);
    for (index, byte) in bytes.iter().enumerate() {
        let shift = 8 * index;
        word = word & !(0xff << shift) | u64::from(*byte) << shift;
    }
    word
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn escapes_by_byte(bytes: &[u8]) -> bool {
        bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
    }

    fn control_by_byte(bytes: &[u8]) -> bool {
        bytes.iter().any(|&b| b < 0x20 || b == 0x7f || b == 0xc2)
    }

    fn escapes_or_not_ascii_by_byte(bytes: &[u8]) -> bool {
        escapes_by_byte(bytes) || bytes.iter().any(|&b| b >= 0x7f)
    }

    #[test]
    fn each_byte_at_each_place_of_every_length() {
        for len in 0..20 {
            for at in 0..len {
                for byte in 0..=255_u8 {
                    let mut bytes = vec![b'x'; len];
                    bytes[at] = byte;
                    assert_eq!(
                        any_word(&bytes, escapes),
                        escapes_by_byte(&bytes),
                        "{bytes:?}"
                    );
                    assert_eq!(
                        any_word(&bytes, may_be_control),
                        control_by_byte(&bytes),
                        "{bytes:?}"
                    );
                    assert_eq!(
                        any_word(&bytes, escapes_or_not_ascii),
                        escapes_or_not_ascii_by_byte(&bytes),
                        "{bytes:?}"
                    );
                }
            }
            let plain = vec![b'x'; len];
            assert!(!any_word(&plain, escapes));
            assert!(!any_word(&plain, may_be_control));
            assert!(!any_word(&plain, escapes_or_not_ascii));
        }
    }

    proptest! {
        #[test]
        fn words_agree_with_bytes(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(any_word(&bytes, escapes), escapes_by_byte(&bytes));
            prop_assert_eq!(any_word(&bytes, may_be_control), control_by_byte(&bytes));
            prop_assert_eq!(
                any_word(&bytes, escapes_or_not_ascii),
                escapes_or_not_ascii_by_byte(&bytes)
            );
        }
    }
}
