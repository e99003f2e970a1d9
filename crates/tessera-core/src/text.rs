//! Small helpers for text that goes into error descriptions and traces.

use crate::model::Timestamp;

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
}
