//! Times as providers write them in response headers: the one place that
//! parses them, for the provider clients and the quota layer alike.
//!
//! | form | where | parser |
//! |---|---|---|
//! | a Go duration: `1s`, `6m0s`, `20ms`, `1h2m3.5s` | OpenAI's `x-ratelimit-reset-*` | [`go_duration`] |
//! | an RFC 3339 instant: `2025-01-01T12:00:30Z` | Anthropic's `anthropic-ratelimit-*-reset` | [`rfc3339`] |
//! | an HTTP date: `Sun, 06 Nov 1994 08:49:37 GMT` | `retry-after` | [`http_date`] |
//! | decimal seconds: `2`, `1.5` | `retry-after` | [`seconds`] |
//! | `retry-after-ms`, else `retry-after` | both providers | [`retry_after_at`] |
//!
//! Every parser returns `None` for what it cannot read (garbage, a
//! negative value, a value too large for [`Duration`] or [`SystemTime`],
//! an empty string); none of them panics.
//!
//! ```
//! use staunch_core::wire_time;
//! use std::time::{Duration, UNIX_EPOCH};
//!
//! assert_eq!(wire_time::go_duration("6m0s"), Some(Duration::from_secs(360)));
//! assert_eq!(
//!     wire_time::rfc3339("1970-01-01T00:01:00Z"),
//!     Some(UNIX_EPOCH + Duration::from_secs(60))
//! );
//! assert_eq!(wire_time::go_duration("-1s"), None);
//! ```

use http::HeaderMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A Go duration (Go's `time.Duration.String()`), as OpenAI writes its
/// resets: decimal numbers, each with a unit `h`, `m`, `s`, `ms`, `us`
/// (`µs`), `ns` (`6m0s`, `1.5s`, `20ms`, `.5s`), or a bare `0`. Negative
/// or overflowing durations are `None`.
///
/// jiff's "friendly" duration parser reads this form (and a little more:
/// spaces between units, long unit names); only Go's bare `0` and a
/// fraction without a leading digit (`.5s`) are handled here before it.
pub fn go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    // Go writes no sign for positive durations; a negative one is no wait
    // at all, and `+` is not Go's either.
    if text.starts_with(['-', '+']) {
        return None;
    }
    let parser = jiff::fmt::friendly::SpanParser::new();
    let parsed = match text.strip_prefix('.') {
        // `.5s` is Go's way of writing `0.5s`.
        Some(_) => parser.parse_duration(format!("0{text}")),
        None => parser.parse_duration(text),
    };
    Duration::try_from(parsed.ok()?).ok()
}

/// An RFC 3339 date-time, as Anthropic writes its resets:
/// `2025-01-01T12:00:30Z`, with optional fractional seconds and a `Z` or
/// `±hh:mm` offset. A date-time without an offset is `None`.
pub fn rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    // RFC 3339 writes an offset as `±hh:mm`; jiff's parser would also take
    // ISO 8601's `±hhmm` and `±hh`.
    let tail = text.rsplit(['+', '-']).next()?;
    let offset_is_rfc3339 =
        text.ends_with(['Z', 'z']) || matches!(tail.as_bytes(), [_, _, b':', _, _]);
    if !offset_is_rfc3339 {
        return None;
    }
    let at: jiff::Timestamp = text.parse().ok()?;
    // Checked, not `SystemTime::from`: a platform's `SystemTime` may not
    // reach every year jiff reads (0001 to 9999).
    let since_epoch = at.as_duration();
    if since_epoch.is_negative() {
        UNIX_EPOCH.checked_sub(since_epoch.unsigned_abs())
    } else {
        UNIX_EPOCH.checked_add(since_epoch.unsigned_abs())
    }
}

/// An HTTP date (RFC 9110's IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`;
/// the obsolete RFC 850 and asctime forms too), through `httpdate`.
pub fn http_date(text: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(text.trim()).ok()
}

/// A non-negative number of seconds, possibly fractional (`2`, `1.5`), as
/// `retry-after` carries it. Negative, non-finite and unreadable values are
/// `None`; values beyond about 31 years are capped there, so a caller's own
/// limit still sees them as too long.
pub fn seconds(text: &str) -> Option<Duration> {
    let secs = text.trim().parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(MAX_SECS)))
}

/// The longest wait [`seconds`] and [`retry_after_at`] return, in seconds
/// (about 31 years).
const MAX_SECS: f64 = 1e9;

/// The wait a provider asks for: `retry-after-ms` (milliseconds, OpenAI
/// and Azure), else `retry-after` as [`seconds`] or an [`http_date`]
/// (measured from `now`; a date in the past means no wait). An unreadable
/// or negative `retry-after-ms` falls back to `retry-after`; values beyond
/// about 31 years are capped there.
pub fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(
            ms.min(MAX_SECS * 1_000.0) / 1_000.0,
        ));
    }
    let value = text("retry-after")?.trim();
    if value.parse::<f64>().is_ok() {
        return seconds(value);
    }
    Some(
        http_date(value)?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("1s", Some(secs(1))),
            ("6m0s", Some(secs(360))),
            ("20ms", Some(ms(20))),
            ("0s", Some(Duration::ZERO)),
            ("0", Some(Duration::ZERO)),
            (" 1s ", Some(secs(1))),
            ("1.5s", Some(ms(1_500))),
            ("1m30.5s", Some(ms(90_500))),
            ("2m30.25s", Some(ms(150_250))),
            ("1h2m3s", Some(secs(3_723))),
            ("1h2m3.5s", Some(ms(3_723_500))),
            ("7.66s", Some(ms(7_660))),
            ("150us", Some(Duration::from_micros(150))),
            ("150µs", Some(Duration::from_micros(150))),
            ("42ns", Some(Duration::from_nanos(42))),
            (".5s", Some(ms(500))),
        ] {
            assert_eq!(go_duration(text), want, "{text:?}");
        }
    }

    #[test]
    fn bad_go_durations_are_none() {
        for bad in [
            "",
            " ",
            "s",
            "5",
            "5x",
            "-1s",
            "+1s",
            "-0.5s",
            "1.2.3s",
            ".s",
            "..5s",
            "1s ago",
            "99999999999999999999999h",
            "9223372036854775807h",
            "soon",
            "１s",
        ] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_instants() {
        let epoch = |s: u64| Some(UNIX_EPOCH + secs(s));
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), epoch(0));
        // 2025-01-01T12:00:30Z is 1,735,732,830 s after the epoch.
        assert_eq!(rfc3339("2025-01-01T12:00:30Z"), epoch(1_735_732_830));
        assert_eq!(rfc3339("2025-01-01T14:00:30+02:00"), epoch(1_735_732_830));
        assert_eq!(rfc3339("2025-01-01T11:30:30-00:30"), epoch(1_735_732_830));
        assert_eq!(
            rfc3339("2025-01-01T12:00:30.25Z"),
            Some(UNIX_EPOCH + Duration::from_millis(1_735_732_830_250))
        );
        assert_eq!(rfc3339("2024-02-29T00:00:00Z"), epoch(1_709_164_800));
        // Before the epoch is still a time.
        assert_eq!(
            rfc3339("1969-12-31T23:59:59Z"),
            UNIX_EPOCH.checked_sub(secs(1))
        );
    }

    #[test]
    fn bad_rfc3339_is_none() {
        for bad in [
            "",
            "Z",
            "+02:00",
            "garbage",
            "2025-01-01",
            "2025-01-01T12:00:30",
            "2025-13-01T12:00:30Z",
            "2025-02-29T12:00:30Z",
            "2025-01-01T24:00:00Z",
            "2025-01-01T12:00:30.Z",
            "2025-01-01T12:00:30+0200",
            "2025-01-01T12:00:30+02",
            "2025-01-01T12:00:30Zjunk",
            "１２３４-01-01T12:00:30Z",
            "99999-01-01T12:00:30Z",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn http_dates() {
        // RFC 9110's example: 784,111,777 s after the epoch.
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(UNIX_EPOCH + secs(784_111_777))
        );
        for bad in [
            "",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 99999 08:49:37 GMT",
        ] {
            assert_eq!(http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn seconds_forms_and_garbage() {
        assert_eq!(seconds("2"), Some(secs(2)));
        assert_eq!(seconds("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(seconds("1e300"), Some(secs(1_000_000_000)));
        for bad in ["", "-1", "NaN", "inf", "-inf", "soon", "1s"] {
            assert_eq!(seconds(bad), None, "{bad:?}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("a test value"));
        }
        map
    }

    #[test]
    fn every_retry_after_form() {
        let now = UNIX_EPOCH + secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let at = |pairs: &[(&'static str, &str)]| retry_after_at(&headers(pairs), now);
        assert_eq!(at(&[("retry-after", "2")]), Some(secs(2)));
        assert_eq!(at(&[("retry-after", " 2 ")]), Some(secs(2)));
        assert_eq!(
            at(&[("retry-after", "1.5")]),
            Some(Duration::from_millis(1_500))
        );
        assert_eq!(
            at(&[("retry-after", "Sun, 06 Nov 1994 08:49:57 GMT")]),
            Some(secs(20))
        );
        assert_eq!(
            at(&[("retry-after", "Sun, 06 Nov 1994 08:40:00 GMT")]),
            Some(Duration::ZERO)
        );
        assert_eq!(
            at(&[("retry-after-ms", "250"), ("retry-after", "9")]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            at(&[("retry-after-ms", "nope"), ("retry-after", "9")]),
            Some(secs(9))
        );
        assert_eq!(
            at(&[("retry-after-ms", "-5"), ("retry-after", "9")]),
            Some(secs(9))
        );
        assert_eq!(
            at(&[("retry-after-ms", "1e300")]),
            Some(secs(1_000_000_000))
        );
        assert_eq!(at(&[("retry-after", "1e300")]), Some(secs(1_000_000_000)));
        for bad in ["-1", "NaN", "inf", "soon", ""] {
            assert_eq!(at(&[("retry-after", bad)]), None, "{bad:?}");
        }
        assert_eq!(at(&[("retry-after-ms", "-1")]), None);
        assert_eq!(at(&[]), None);
    }
}
