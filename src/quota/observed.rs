//! What a provider says about its limits: the rate-limit headers.

use http::HeaderMap;
use staunch_core::wire_time;
use std::time::{Duration, SystemTime};
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
/// The times are parsed by [`staunch_core::wire_time`], the same code the
/// provider clients use for `retry-after`.
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
                    .and_then(wire_time::go_duration)
                    .and_then(in_),
            })
        };
        let anthropic = |kind: &str| {
            let remaining = count(&format!("anthropic-ratelimit-{kind}-remaining"))?;
            Some(Remaining {
                limit: count(&format!("anthropic-ratelimit-{kind}-limit")),
                remaining,
                resets_at: text(&format!("anthropic-ratelimit-{kind}-reset"))
                    .and_then(wire_time::rfc3339)
                    .and_then(at),
            })
        };

        Observed {
            requests: openai("requests").or_else(|| anthropic("requests")),
            tokens: openai("tokens")
                .or_else(|| anthropic("tokens"))
                .or_else(|| anthropic("input-tokens")),
            retry_after: wire_time::retry_after_at(headers, wall),
        }
    }
}

fn later(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::UNIX_EPOCH;

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
