//! Lifetimes on the command line (`--expires 30d`, `never`) and times in listings.

use anyhow::bail;

/// When a credential created now with `--expires text` ends: `None` for `never`, else
/// [`parse_duration`] from `now`.
pub fn parse_expiry(text: &str, now: i64) -> anyhow::Result<Option<i64>> {
    if text.trim().eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let seconds = parse_duration(text, "expiry", ", or never")?;
    Ok(Some(now + seconds))
}

/// A length of time in seconds: a number with a unit `s`, `m`, `h`, `d`, `w` or `y`; a bare
/// number is days; at most 100 years. `what` and `alternative` complete the error message.
pub fn parse_duration(text: &str, what: &str, alternative: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(split) => text.split_at(split),
        None => (text, "d"),
    };
    let seconds_per_unit: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        "y" => 365 * 86400,
        _ => bail!("invalid {what} {text:?}: use a number with s, m, h, d, w or y (30d){alternative}"),
    };
    let count: i64 = match digits.parse() {
        Ok(count) if count > 0 => count,
        _ => bail!("invalid {what} {text:?}: use a positive number with a unit (30d){alternative}"),
    };
    let seconds = count.saturating_mul(seconds_per_unit);
    if seconds > 100 * 365 * 86400 {
        bail!("{what} {text:?} is more than 100 years");
    }
    Ok(seconds)
}

/// `2025-01-31 17:00 UTC`, or `never`.
pub fn format_time(secs: Option<i64>) -> String {
    let Some(secs) = secs else { return "never".to_string() };
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// An expiry for listings: the time, marked when it has passed.
pub fn format_expiry(expires_at: Option<i64>, now: i64) -> String {
    match expires_at {
        Some(at) if at <= now => format!("{} (expired)", format_time(Some(at))),
        other => format_time(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_in_units_or_never() {
        assert_eq!(parse_expiry("30d", 1000).unwrap(), Some(1000 + 30 * 86400));
        assert_eq!(parse_expiry("30", 0).unwrap(), Some(30 * 86400));
        assert_eq!(parse_expiry("5s", 10).unwrap(), Some(15));
        assert_eq!(parse_expiry("2w", 0).unwrap(), Some(14 * 86400));
        assert_eq!(parse_expiry("never", 0).unwrap(), None);
        for bad in ["", "0d", "-1d", "30x", "d", "1000y", "99999999999999999999d"] {
            assert!(parse_expiry(bad, 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(format_time(Some(0)), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(None), "never");
        assert_eq!(format_expiry(Some(0), 1), "1970-01-01 00:00 UTC (expired)");
        assert_eq!(format_expiry(Some(60), 1), "1970-01-01 00:01 UTC");
    }
}
