//! What a provider says about its limits: the rate-limit headers.

use http::HeaderMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// What one answer's rate-limit headers said: the requests and tokens left
/// at the provider, when each bucket is full again, and a `Retry-After`.
///
/// Feed it to [`QuotaHandle::observe`](super::QuotaHandle::observe): until
/// a reset instant, the quota admits no more than the provider said was
/// left (so it pauses before the provider would refuse), and a
/// `retry_after` pauses admissions for that long.
///
/// Read by [`Observed::from_headers`]:
///
/// | provider | remaining | limit | reset | format of the reset |
/// |---|---|---|---|---|
/// | OpenAI | `x-ratelimit-remaining-requests`, `-tokens` | `x-ratelimit-limit-requests`, `-tokens` | `x-ratelimit-reset-requests`, `-tokens` | a duration: `1s`, `6m0s`, `20ms`, `1h2m3.5s` |
/// | Anthropic | `anthropic-ratelimit-requests-remaining`, `-tokens-remaining` | `…-requests-limit`, `…-tokens-limit` | `…-requests-reset`, `…-tokens-reset` | an RFC 3339 instant: `2025-01-01T12:00:30Z` |
/// | both | | | `retry-after-ms`, else `retry-after` | milliseconds; seconds or an HTTP date |
///
/// For Anthropic, the `tokens` headers (the most restrictive token limit in
/// effect) are used; without them, the `input-tokens` ones. A count
/// without a reset instant is kept in the fields but not enforced (it
/// would never lapse).
///
/// ```
/// use http::HeaderMap;
/// use staunch::quota::Observed;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let mut headers = HeaderMap::new();
/// headers.insert("x-ratelimit-limit-requests", "60".parse().unwrap());
/// headers.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
/// headers.insert("x-ratelimit-reset-requests", "1s".parse().unwrap());
/// headers.insert("x-ratelimit-remaining-tokens", "149984".parse().unwrap());
/// headers.insert("x-ratelimit-reset-tokens", "6m0s".parse().unwrap());
/// let seen = Observed::from_headers(&headers);
/// let requests = seen.requests.expect("sent");
/// assert_eq!((requests.limit, requests.remaining), (Some(60), 0));
/// assert_eq!(requests.resets_at, Some(tokio::time::Instant::now() + Duration::from_secs(1)));
/// assert_eq!(seen.tokens.expect("sent").remaining, 149_984);
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Observed {
    /// Requests left at the provider.
    pub requests: Option<Remaining>,
    /// Tokens left at the provider.
    pub tokens: Option<Remaining>,
    /// How long the provider asked to wait (`retry-after-ms`, `retry-after`).
    pub retry_after: Option<Duration>,
}

/// One of a provider's buckets, as its headers described it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Remaining {
    /// The bucket's size, when sent.
    pub limit: Option<u64>,
    /// What is left in it.
    pub remaining: u64,
    /// When it is full again, when sent.
    pub resets_at: Option<Instant>,
}

impl Remaining {
    /// `remaining` left, full again at `resets_at`.
    pub fn new(remaining: u64, resets_at: Instant) -> Self {
        Remaining {
            limit: None,
            remaining,
            resets_at: Some(resets_at),
        }
    }

    /// Sets the bucket's size.
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }
}

impl Observed {
    /// Nothing observed.
    pub fn new() -> Self {
        Self::default()
    }

    /// `remaining` requests left, full again `resets_in` from now.
    pub fn requests(mut self, remaining: u64, resets_in: Duration) -> Self {
        self.requests = Some(Remaining::new(remaining, later(resets_in)));
        self
    }

    /// `remaining` tokens left, full again `resets_in` from now.
    pub fn tokens(mut self, remaining: u64, resets_in: Duration) -> Self {
        self.tokens = Some(Remaining::new(remaining, later(resets_in)));
        self
    }

    /// A `Retry-After` of `wait`.
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// True when the headers said nothing about limits.
    pub fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none() && self.retry_after.is_none()
    }

    /// Reads OpenAI's and Anthropic's rate-limit headers (see the table
    /// above), with reset instants on tokio's clock. Unreadable values are
    /// skipped.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::from_headers_at(headers, Instant::now(), SystemTime::now())
    }

    /// [`from_headers`](Self::from_headers) with the current instant and
    /// wall-clock time given: a pure function of its inputs.
    pub fn from_headers_at(headers: &HeaderMap, now: Instant, wall: SystemTime) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let count = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
        let in_ = |wait: Duration| now.checked_add(wait);
        let at = |when: SystemTime| in_(when.duration_since(wall).unwrap_or(Duration::ZERO));

        let openai = |kind: &str| {
            let remaining = count(&format!("x-ratelimit-remaining-{kind}"))?;
            Some(Remaining {
                limit: count(&format!("x-ratelimit-limit-{kind}")),
                remaining,
                resets_at: text(&format!("x-ratelimit-reset-{kind}"))
                    .and_then(parse_duration)
                    .and_then(in_),
            })
        };
        let anthropic = |kind: &str| {
            let remaining = count(&format!("anthropic-ratelimit-{kind}-remaining"))?;
            Some(Remaining {
                limit: count(&format!("anthropic-ratelimit-{kind}-limit")),
                remaining,
                resets_at: text(&format!("anthropic-ratelimit-{kind}-reset"))
                    .and_then(parse_rfc3339)
                    .and_then(at),
            })
        };

        let retry_after = match text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
            Some(ms) => Duration::try_from_secs_f64(ms / 1_000.0).ok(),
            None => text("retry-after").and_then(|v| match v.parse::<f64>() {
                Ok(secs) => Duration::try_from_secs_f64(secs).ok(),
                Err(_) => parse_http_date(v).map(|t| t.duration_since(wall).unwrap_or_default()),
            }),
        };
        Observed {
            requests: openai("requests").or_else(|| anthropic("requests")),
            tokens: openai("tokens")
                .or_else(|| anthropic("tokens"))
                .or_else(|| anthropic("input-tokens")),
            retry_after,
        }
    }
}

fn later(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// A Go duration, as OpenAI writes its resets: a sequence of decimal
/// numbers with units `h`, `m`, `s`, `ms`, `us` (`µs`), `ns` (`6m0s`,
/// `1.5s`, `20ms`), or a bare `0`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" | "μs" => 1_000,
            "ns" => 1,
            _ => return None,
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut part = whole.checked_mul(scale)?;
        // Digits past nanosecond precision are dropped.
        let mut unit_scale = scale;
        for digit in fraction.bytes() {
            if !digit.is_ascii_digit() {
                return None;
            }
            unit_scale /= 10;
            part += u128::from(digit - b'0') * unit_scale;
        }
        total = total.checked_add(part)?;
        rest = tail;
    }
    let secs = u64::try_from(total / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// A civil UTC time as a `SystemTime`; `None` for an impossible one.
fn civil(
    year: i64,
    month: u32,
    day: u32,
    h: u32,
    m: u32,
    s: u32,
    offset_secs: i64,
) -> Option<SystemTime> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(h) * 3_600
        + i64::from(m) * 60
        + i64::from(s)
        - offset_secs;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

fn number(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    bytes.iter().try_fold(0u32, |n, d| {
        n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// An RFC 3339 date-time, as Anthropic writes its resets:
/// `2025-01-01T12:00:30Z`, with optional fractional seconds and a `Z` or
/// `±hh:mm` offset.
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.trim().as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = i64::from(number(&b[0..4])?);
    let (month, day) = (number(&b[5..7])?, number(&b[8..10])?);
    let (h, m, s) = (
        number(&b[11..13])?,
        number(&b[14..16])?,
        number(&b[17..19])?,
    );
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
            let hours = i64::from(number(&[*oh1, *oh2])?);
            let minutes = i64::from(number(&[*om1, *om2])?);
            let secs = hours * 3_600 + minutes * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    civil(year, month, day, h, m, s, offset).map(|t| t + Duration::from_nanos(u64::from(nanos)))
}

/// An HTTP date in the IMF-fixdate form every server must send
/// (`Sun, 06 Nov 1994 08:49:57 GMT`).
pub(crate) fn parse_http_date(text: &str) -> Option<SystemTime> {
    let mut parts = text.split_ascii_whitespace();
    let _weekday = parts.next()?;
    let day = number(parts.next()?.as_bytes())?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year = i64::from(number(parts.next()?.as_bytes())?);
    let mut clock = parts.next()?.split(':');
    let h = number(clock.next()?.as_bytes())?;
    let m = number(clock.next()?.as_bytes())?;
    let s = number(clock.next()?.as_bytes())?;
    if clock.next().is_some() || parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    civil(year, month, day, h, m, s, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn openai_reset_durations() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("1s", Some(secs(1))),
            ("6m0s", Some(secs(360))),
            ("20ms", Some(ms(20))),
            ("0s", Some(Duration::ZERO)),
            ("0", Some(Duration::ZERO)),
            ("1.5s", Some(ms(1_500))),
            ("2m30.25s", Some(ms(150_250))),
            ("1h2m3s", Some(secs(3_723))),
            ("7.66s", Some(ms(7_660))),
            ("150us", Some(Duration::from_micros(150))),
            ("150µs", Some(Duration::from_micros(150))),
            ("42ns", Some(Duration::from_nanos(42))),
            (".5s", Some(ms(500))),
            ("", None),
            ("s", None),
            ("5", None),
            ("5x", None),
            ("-1s", None),
            ("1.2.3s", None),
            ("99999999999999999999999h", None),
        ] {
            assert_eq!(parse_duration(text), want, "{text:?}");
        }
    }

    #[test]
    fn anthropic_reset_instants() {
        let epoch = |s: u64| Some(UNIX_EPOCH + secs(s));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), epoch(0));
        // 2025-01-01T12:00:30Z is 1,735,732,830 s after the epoch.
        assert_eq!(parse_rfc3339("2025-01-01T12:00:30Z"), epoch(1_735_732_830));
        assert_eq!(
            parse_rfc3339("2025-01-01T14:00:30+02:00"),
            epoch(1_735_732_830)
        );
        assert_eq!(
            parse_rfc3339("2025-01-01T11:30:30-00:30"),
            epoch(1_735_732_830)
        );
        assert_eq!(
            parse_rfc3339("2025-01-01T12:00:30.25Z"),
            Some(UNIX_EPOCH + Duration::from_millis(1_735_732_830_250))
        );
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), epoch(1_709_164_800));
        for bad in [
            "",
            "2025-01-01",
            "2025-01-01T12:00:30",
            "2025-13-01T12:00:30Z",
            "2025-02-29T12:00:30Z",
            "2025-01-01T24:00:00Z",
            "2025-01-01T12:00:30.Z",
            "2025-01-01T12:00:30+0200",
            "2025-01-01T12:00:30Zjunk",
            "１２３４-01-01T12:00:30Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn http_dates() {
        // RFC 9110's example: 784,111,777 s after the epoch.
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(UNIX_EPOCH + secs(784_111_777))
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn openai_headers() {
        // OpenAI's documented example.
        let now = Instant::now();
        let seen = Observed::from_headers_at(
            &headers(&[
                ("x-ratelimit-limit-requests", "60"),
                ("x-ratelimit-limit-tokens", "150000"),
                ("x-ratelimit-remaining-requests", "59"),
                ("x-ratelimit-remaining-tokens", "149984"),
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ]),
            now,
            SystemTime::now(),
        );
        assert_eq!(
            seen.requests,
            Some(Remaining::new(59, now + secs(1)).with_limit(60))
        );
        assert_eq!(
            seen.tokens,
            Some(Remaining::new(149_984, now + secs(360)).with_limit(150_000))
        );
        assert_eq!(seen.retry_after, None);
    }

    #[tokio::test(start_paused = true)]
    async fn anthropic_headers() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + secs(1_735_732_800); // 2025-01-01T12:00:00Z
        let seen = Observed::from_headers_at(
            &headers(&[
                ("anthropic-ratelimit-requests-limit", "50"),
                ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", "2025-01-01T12:00:30Z"),
                ("anthropic-ratelimit-tokens-limit", "80000"),
                ("anthropic-ratelimit-tokens-remaining", "12000"),
                ("anthropic-ratelimit-tokens-reset", "2025-01-01T12:00:06.5Z"),
                ("anthropic-ratelimit-input-tokens-remaining", "1"),
                ("retry-after", "30"),
            ]),
            now,
            wall,
        );
        assert_eq!(
            seen.requests,
            Some(Remaining::new(0, now + secs(30)).with_limit(50))
        );
        assert_eq!(
            seen.tokens,
            Some(Remaining::new(12_000, now + Duration::from_millis(6_500)).with_limit(80_000))
        );
        assert_eq!(seen.retry_after, Some(secs(30)));

        // Without the combined token headers, the input-token ones; a reset
        // already past is now.
        let seen = Observed::from_headers_at(
            &headers(&[
                ("anthropic-ratelimit-input-tokens-remaining", "700"),
                (
                    "anthropic-ratelimit-input-tokens-reset",
                    "2025-01-01T11:59:00Z",
                ),
            ]),
            now,
            wall,
        );
        assert_eq!(seen.tokens, Some(Remaining::new(700, now)));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_forms_and_garbage() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + secs(784_111_770);
        let at =
            |pairs: &[(&'static str, &str)]| Observed::from_headers_at(&headers(pairs), now, wall);
        assert_eq!(at(&[("retry-after", "2")]).retry_after, Some(secs(2)));
        assert_eq!(
            at(&[("retry-after", "0.5")]).retry_after,
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            at(&[("retry-after-ms", "250"), ("retry-after", "9")]).retry_after,
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            at(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]).retry_after,
            Some(secs(7))
        );
        assert_eq!(at(&[("retry-after", "-1")]).retry_after, None);
        assert_eq!(at(&[("retry-after", "soon")]).retry_after, None);
        let junk = at(&[
            ("x-ratelimit-remaining-requests", "many"),
            ("x-ratelimit-remaining-tokens", "-5"),
            (
                "anthropic-ratelimit-requests-remaining",
                "18446744073709551616",
            ),
        ]);
        assert!(junk.is_empty(), "{junk:?}");
        // A count whose reset is unreadable is kept, without an instant.
        let seen = at(&[
            ("x-ratelimit-remaining-requests", "3"),
            ("x-ratelimit-reset-requests", "soon"),
        ]);
        assert_eq!(
            seen.requests,
            Some(Remaining {
                limit: None,
                remaining: 3,
                resets_at: None
            })
        );
    }
}
