//! [`echo`]: how an error shows a value the caller (or the server) gave it. Every error
//! message that repeats a user value goes through this one helper, so all of them cut
//! the same way. It sits below both `error` and `timestamp` so neither reaches into the other.

/// Echoed values are cut to this many characters, so a 10 MB string does
/// not end up in a log line.
pub(crate) const MAX_ECHO_CHARS: usize = 100;

/// `value`, cut to [`MAX_ECHO_CHARS`] characters, with `… (N bytes in all)` appended when cut.
pub(crate) fn echo(value: &str) -> String {
    match value.char_indices().nth(MAX_ECHO_CHARS) {
        None => value.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes in all)", &value[..cut], value.len()),
    }
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
}
