//! Clipping text a client sent before it goes into a message, a log line or a column: a name of
//! 16 KiB must not become 16 KiB of log per failed request. And the one way times are written
//! for machines (token answers, log fields, the decision trail): RFC 3339.

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub fn clip(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// At most `max` bytes of `text` with control characters (a terminal's escape sequences among
/// them) and invisible formatting characters (bidirectional overrides, zero-width characters)
/// replaced by `?`: for a column that an operator's terminal will show, which must show what
/// is there and nothing that hides or reorders it.
pub fn for_column(text: &str, max: usize) -> String {
    clip(text, max).chars().map(|c| if is_hidden(c) { '?' } else { c }).collect()
}

/// Control characters, and the Unicode format characters that change how text around them
/// shows without showing themselves.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// `text` for a message or log line: at most 80 bytes, with `...` when it was cut.
pub fn for_message(text: &str) -> String {
    const MAX: usize = 80;
    match clip(text, MAX) {
        whole if whole.len() == text.len() => whole.to_string(),
        cut => format!("{cut}..."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_whole_characters() {
        assert_eq!(clip("héllo", 2), "h", "é is two bytes and does not fit");
        assert_eq!(clip("abc", 80), "abc");
        assert_eq!(for_message(&"a".repeat(100)), format!("{}...", "a".repeat(80)));
        assert_eq!(for_message("short"), "short");
    }
}
