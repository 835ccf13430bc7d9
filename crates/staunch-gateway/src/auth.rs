//! Client keys: sent as `Authorization: Bearer` (OpenAI clients),
//! `x-api-key` (Anthropic clients) or `x-goog-api-key` (google-genai
//! clients), stored as SHA-256 hashes and compared in constant time. A key
//! in the URL (Gemini's `?key=`) is not accepted: URLs end up in logs.

use crate::build::{KeyEntry, Running, key_hash};
use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// The outcome of checking a request's key.
pub(crate) enum Access<'a> {
    /// No key is required (loopback with no keys configured).
    Open,
    /// A known key.
    Key(&'a KeyEntry),
    /// No key, or an unknown one.
    Denied,
}

/// The key a client sent, in any of the APIs' headers.
fn presented(headers: &HeaderMap) -> Option<&str> {
    for name in ["x-api-key", "x-goog-api-key"] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            return Some(value.trim());
        }
    }
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(key.trim())
}

/// Equal bytes, in time that does not depend on where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.as_slice().ct_eq(b.as_slice()).into()
}

pub(crate) fn check<'a>(running: &'a Running, headers: &HeaderMap) -> Access<'a> {
    if running.keys.is_empty() {
        return Access::Open;
    }
    let Some(key) = presented(headers) else {
        return Access::Denied;
    };
    let hash = key_hash(key);
    // Compare against every stored hash so the time does not say which.
    let mut found = None;
    for (stored, entry) in &running.keys {
        if same(stored, &hash) {
            found = Some(entry);
        }
    }
    found.map_or(Access::Denied, Access::Key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_either_header() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer  sk-1 ".parse().unwrap());
        assert_eq!(presented(&h), Some("sk-1"));
        h.insert("x-api-key", "sk-2".parse().unwrap());
        assert_eq!(presented(&h), Some("sk-2"));
        let mut google = HeaderMap::new();
        google.insert("x-goog-api-key", "AIza-3".parse().unwrap());
        assert_eq!(presented(&google), Some("AIza-3"));
        let mut basic = HeaderMap::new();
        basic.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented(&basic), None);
    }

    #[test]
    fn hashes_compare_whole() {
        let a = key_hash("a");
        let mut b = a;
        assert!(same(&a, &b));
        b[31] ^= 1;
        assert!(!same(&a, &b));
    }
}
