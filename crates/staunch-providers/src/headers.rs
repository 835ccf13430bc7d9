//! What providers say in response headers: how long to wait, whether to
//! retry, which request it was.

use http::HeaderMap;
use std::time::{Duration, SystemTime};

/// [`retry_after`] with an explicit "now", for dates: parsed by
/// staunch-core, the one parser of the providers' times.
pub use staunch_core::wire_time::retry_after_at;

/// The wait a provider asks for: `retry-after-ms` (milliseconds, OpenAI
/// and Azure), else `retry-after` as (fractional) seconds or an HTTP date.
/// Negative, non-finite or unparsable values are ignored; a date in the
/// past means no wait. See [`retry_after_at`] for the rules.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

/// The server's `x-should-retry` instruction (staunch-core's one reader).
pub use staunch_core::classify_http::should_retry;

/// The provider's request id (`x-request-id`, or Anthropic's `request-id`),
/// at most 200 characters, with anything shaped like a credential masked
/// (staunch-core's one reader).
pub use staunch_core::classify_http::request_id;

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_reads_the_headers() {
        // Every form is tested next to the parser, in staunch-core.
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
    }

    #[test]
    fn should_retry_and_request_id() {
        assert_eq!(
            should_retry(&headers(&[("x-should-retry", "true")])),
            Some(true)
        );
        assert_eq!(
            should_retry(&headers(&[("x-should-retry", "FALSE")])),
            Some(false)
        );
        assert_eq!(should_retry(&headers(&[("x-should-retry", "maybe")])), None);
        assert_eq!(
            request_id(&headers(&[("request-id", "req_1")])).as_deref(),
            Some("req_1")
        );
        assert_eq!(
            request_id(&headers(&[("x-request-id", "abc")])).as_deref(),
            Some("abc")
        );
        assert_eq!(
            request_id(&headers(&[("x-request-id", "req api_key=3f9c2b7e")])).as_deref(),
            Some("req api_key=[redacted]")
        );
    }
}

/// The rate-limit headers of an answer (OpenAI's `x-ratelimit-*`,
/// Anthropic's `anthropic-ratelimit-*`, `retry-after`, `retry-after-ms`),
/// for a quota layer; `None` when there are none (staunch-core's one reader).
pub use staunch_core::classify_http::rate_limit_headers as rate_limit;

#[cfg(test)]
mod rate_limit_tests {
    use super::*;

    #[test]
    fn only_the_rate_limit_headers_are_kept() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining-tokens", "10".parse().unwrap());
        h.insert(
            "anthropic-ratelimit-requests-reset",
            "2026-01-01T00:00:00Z".parse().unwrap(),
        );
        h.insert("retry-after", "3".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        let kept = rate_limit(&h).unwrap();
        assert_eq!(kept.len(), 3);
        assert!(!kept.contains_key("content-type"));
        assert!(rate_limit(&HeaderMap::new()).is_none());
    }
}
