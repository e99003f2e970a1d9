//! Small helpers for text that goes into error descriptions and traces.

use std::borrow::Cow;

use crate::model::Timestamp;

/// Whether `c` can rewrite what a terminal or a log viewer shows, so that stored text
/// must never hold it: the controls (Unicode category Cc: C0 with TAB, LF, CR and ESC,
/// DEL, and C1 with CSI), the line and paragraph separators U+2028 and U+2029, and the
/// bidirectional embeddings, overrides and isolates U+202A to U+202E and U+2066 to
/// U+2069. The admin API refuses them in names ([`first_unsafe_char`]); the CLI prints
/// them escaped ([`shown`]).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// The first character of `s` that [`is_unsafe_char`] refuses, with its position
/// (counted in characters from 0).
pub fn first_unsafe_char(s: &str) -> Option<(usize, char)> {
    s.chars().enumerate().find(|(_, c)| is_unsafe_char(*c))
}

/// `s` for a terminal: each character [`is_unsafe_char`] names is written as its escape,
/// `\u{1b}`, so stored text can neither send terminal sequences nor forge lines.
pub fn shown(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Clips caller-supplied text before it is echoed (64 characters at most), so an error
/// description never grows with the input.
pub fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

/// Formats a timestamp as RFC 3339 in UTC, e.g. `2026-11-20T10:00:00Z`.
pub fn rfc3339(t: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// Parses an RFC 3339 date-time into a timestamp.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|d| d.unix_timestamp())
}

/// Joins items as `'a', 'b'`.
pub fn quoted_list<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> String {
    items
        .into_iter()
        .map(|s| format!("'{}'", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_and_dates() {
        assert_eq!(clip("abc"), "abc");
        assert_eq!(clip(&"x".repeat(100)).chars().count(), 65);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(quoted_list(["a", "b"]), "'a', 'b'");
    }

    #[test]
    fn unsafe_characters_are_found_and_shown_escaped() {
        for c in [
            '\u{1b}', '\r', '\n', '\t', '\0', '\u{7f}', '\u{9b}', '\u{2028}', '\u{2029}',
        ] {
            assert!(is_unsafe_char(c), "{c:?}");
        }
        for c in ['\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}'] {
            assert!(is_unsafe_char(c), "{c:?}");
        }
        for c in ['a', ' ', 'é', '名', '\u{200d}', '\u{2065}', '\u{202f}'] {
            assert!(!is_unsafe_char(c), "{c:?}");
        }
        assert_eq!(first_unsafe_char("Pay\u{1b}[31m"), Some((3, '\u{1b}')));
        assert_eq!(first_unsafe_char("Zoë\r\n"), Some((3, '\r')));
        assert_eq!(first_unsafe_char("Zoë Payments"), None);
        assert!(matches!(shown("plain é"), Cow::Borrowed("plain é")));
        assert_eq!(
            shown("a\u{1b}[31mb\r\nc\u{202e}"),
            "a\\u{1b}[31mb\\u{d}\\u{a}c\\u{202e}"
        );
    }
}
