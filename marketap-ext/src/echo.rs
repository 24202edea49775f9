//! [`echo`]: how an error shows a value the caller (or the server) gave it. Every error
//! message that repeats a user value goes through this one helper, so all of them cut and
//! escape the same way. It sits below both `error` and `timestamp` so neither reaches into the
//! other.

use std::fmt::Write as _;

/// Echoed values are cut to this many characters, so a 10 MB string does
/// not end up in a log line.
const MAX_ECHO_CHARS: usize = 100;

/// `value`, safe to put in a log line: cut to [`MAX_ECHO_CHARS`] characters, with
/// `… (N bytes in all)` appended when cut, and every character that could break or reorder the
/// line escaped the way `{:?}` writes it (`\n`, `\0`, `\u{1b}`, `\u{202e}`). Everything else,
/// Korean text, accents, quotes and backslashes included, is kept as is.
///
/// The result is already escaped: messages show it in plain double quotes (`"{value}"`), never
/// with `{:?}`, which would escape it a second time.
pub(crate) fn echo(value: &str) -> String {
    let (shown, cut) = match value.char_indices().nth(MAX_ECHO_CHARS) {
        None => (value, false),
        Some((end, _)) => (&value[..end], true),
    };
    let mut out = String::with_capacity(shown.len() + 24);
    for c in shown.chars() {
        if garbles_a_log_line(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if cut {
        // Writing to a String cannot fail.
        let _ = write!(out, "… ({} bytes in all)", value.len());
    }
    out
}

/// Control characters (C0, DEL, C1: newline, NUL, ESC, …), the Unicode line and paragraph
/// separators, and the bidirectional marks and controls that make a viewer show text out of
/// order.
fn garbles_a_log_line(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'..='\u{2029}' // line and paragraph separators
                | '\u{200e}'..='\u{200f}' // left-to-right and right-to-left marks
                | '\u{202a}'..='\u{202e}' // embeddings and overrides
                | '\u{2066}'..='\u{2069}' // isolates
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_kept() {
        assert_eq!(echo(""), "");
        assert_eq!(echo("user-42"), "user-42");
        let at_cap = "y".repeat(MAX_ECHO_CHARS);
        assert_eq!(echo(&at_cap), at_cap);
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let long = "x".repeat(10_000);
        assert_eq!(
            echo(&long),
            format!("{}… (10000 bytes in all)", "x".repeat(MAX_ECHO_CHARS))
        );
        let wide = "가".repeat(500);
        assert_eq!(
            echo(&wide),
            format!("{}… (1500 bytes in all)", "가".repeat(MAX_ECHO_CHARS))
        );
    }

    #[test]
    fn what_could_forge_or_garble_a_log_line_is_escaped() {
        let cases = [
            ("a\nb", r"a\nb"),
            ("a\r\nb", r"a\r\nb"),
            ("tab\there", r"tab\there"),
            ("nul\0", r"nul\0"),
            ("\u{1b}[31mred\u{1b}[0m", r"\u{1b}[31mred\u{1b}[0m"),
            ("del\u{7f}", r"del\u{7f}"),
            ("c1\u{85}", r"c1\u{85}"),
            ("line\u{2028}sep", r"line\u{2028}sep"),
            ("para\u{2029}sep", r"para\u{2029}sep"),
            ("evil\u{202e}txt.exe", r"evil\u{202e}txt.exe"),
            ("iso\u{2066}late\u{2069}", r"iso\u{2066}late\u{2069}"),
        ];
        for (raw, shown) in cases {
            assert_eq!(echo(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn readable_text_is_kept_as_is() {
        for raw in [
            "김민지",
            "café",
            "cafe\u{301}",
            "emoji 🎉",
            r#"quotes " and ' and \ backslash"#,
            "space and\u{a0}nbsp",
        ] {
            assert_eq!(echo(raw), raw);
        }
    }

    #[test]
    fn the_cut_counts_input_characters_and_never_splits_an_escape() {
        let long = "\n".repeat(500);
        let shown = echo(&long);
        assert_eq!(
            shown,
            format!("{}… (500 bytes in all)", r"\n".repeat(MAX_ECHO_CHARS))
        );
        assert!(!shown.contains('\n'));
    }
}
