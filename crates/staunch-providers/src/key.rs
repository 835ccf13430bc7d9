//! API keys that never print, and the masking of a client's own secrets
//! out of everything it reports.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// An API key. Its `Debug` and `Display` never show it; it leaves the
/// process only in the request header its provider expects.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A key from its text.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The key in environment variable `var`, if set and not blank.
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var)
            .ok()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .map(ApiKey)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What replaces a secret.
pub(crate) const MASK: &str = "[redacted]";

/// A secret shorter than this is masked only where it appears whole; a
/// prefix or suffix of a secret is masked when it is longer than it.
const WINDOW: usize = 8;

/// A secret shorter than this is not masked at all: it can't be a key, and
/// masking it would eat ordinary words.
const MIN_SECRET: usize = 4;

/// Masks a client's exact secrets (its key, the values of its custom
/// headers and query parameters) out of text, including any prefix or
/// suffix of a secret longer than 8 characters (providers echo partly
/// masked keys: `sk-proj-abc***wxyz`).
///
/// Built once with the client; only the error path runs it.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    /// Longest first, so that a secret containing another is masked whole.
    secrets: Arc<[Box<str>]>,
}

impl Redactor {
    /// A redactor for `secrets` (and their percent-decoded forms); blanks
    /// and secrets shorter than 4 characters are ignored.
    pub(crate) fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut all: Vec<Box<str>> = Vec::new();
        for secret in secrets {
            let secret = secret.trim();
            for form in [Cow::Borrowed(secret), percent_decode(secret)] {
                if form.chars().count() >= MIN_SECRET && !all.iter().any(|s| **s == *form) {
                    all.push(form.into_owned().into_boxed_str());
                }
            }
        }
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor {
            secrets: all.into(),
        }
    }

    /// Whether there is nothing to mask.
    pub(crate) fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret, and every prefix or suffix of one longer
    /// than 8 characters, replaced by `[redacted]`.
    pub(crate) fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut text = Cow::Borrowed(text);
        if self.is_empty() || text.is_empty() {
            return text;
        }
        for secret in self.secrets.iter() {
            if let Cow::Owned(masked) = mask_one(&text, secret) {
                text = Cow::Owned(masked);
            }
        }
        text
    }

    /// Masks `text` in place.
    pub(crate) fn redact_in_place(&self, text: &mut String) {
        if let Cow::Owned(masked) = self.redact(text) {
            *text = masked;
        }
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

/// Byte ranges of `text` to mask for one secret.
fn spans(text: &str, secret: &str) -> Vec<(usize, usize)> {
    let (t, s) = (text.as_bytes(), secret.as_bytes());
    let mut found = Vec::new();
    // The whole secret, wherever it is.
    found.extend(text.match_indices(secret).map(|(at, m)| (at, at + m.len())));
    if s.len() > WINDOW {
        // A prefix longer than the window starts with the secret's first
        // WINDOW + 1 bytes: find those, then extend as far as it matches.
        let head = &s[..=WINDOW];
        let mut at = 0;
        while let Some(i) = find(&t[at..], head) {
            let start = at + i;
            let len = t[start..].iter().zip(s).take_while(|(a, b)| a == b).count();
            found.push((start, start + len));
            at = start + 1;
        }
        // A suffix ends with the secret's last WINDOW + 1 bytes.
        let tail = &s[s.len() - WINDOW - 1..];
        let mut at = 0;
        while let Some(i) = find(&t[at..], tail) {
            let end = at + i + tail.len();
            let len = t[..end]
                .iter()
                .rev()
                .zip(s.iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            found.push((end - len, end));
            at = at + i + 1;
        }
    }
    found
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn mask_one<'t>(text: &'t str, secret: &str) -> Cow<'t, str> {
    let mut found = spans(text, secret);
    if found.is_empty() {
        return Cow::Borrowed(text);
    }
    found.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut first = true;
    for (start, end) in found {
        // Widen to character boundaries (a secret may end mid-character
        // where it matched only part of the text's character).
        let start = floor_char(text, start.max(copied));
        let end = ceil_char(text, end);
        if end <= copied {
            continue;
        }
        // Overlapping or adjacent matches make one mask.
        if first || start > copied {
            out.push_str(&text[copied..start]);
            out.push_str(MASK);
        }
        first = false;
        copied = end;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

fn floor_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// `%XX` sequences decoded (and `+` read as a space), when that changes
/// anything and makes valid UTF-8.
fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return Cow::Borrowed(text);
    }
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_or(Cow::Borrowed(text), Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::{ApiKey, Redactor};

    #[test]
    fn a_key_never_prints() {
        let key = ApiKey::new("sk-live-123456");
        assert_eq!(format!("{key:?}"), "ApiKey([redacted])");
        assert_eq!(format!("{key}"), "[redacted]");
        assert_eq!(key.expose(), "sk-live-123456");
    }

    #[test]
    fn the_exact_key_and_its_long_ends_are_masked() {
        let key = "3f9c2b7e1d4a8f6e0b5c9d2a7e4f1b8c";
        let r = Redactor::new([key]);
        assert_eq!(r.redact(&format!("bad {key}.")), "bad [redacted].");
        assert_eq!(
            r.redact(&format!("got {}***{}!", &key[..10], &key[22..])),
            "got [redacted]***[redacted]!"
        );
        // Nine characters of either end are masked; eight are not.
        assert_eq!(r.redact(&key[..9]), "[redacted]");
        assert_eq!(r.redact(&key[23..]), "[redacted]");
        assert_eq!(r.redact(&key[..8]), &key[..8]);
        assert_eq!(r.redact(&format!("{key}{key}")), "[redacted]");
        assert_eq!(r.redact("nothing here"), "nothing here");
        assert!(matches!(r.redact("nothing"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn short_blank_and_encoded_secrets() {
        let r = Redactor::new(["", "ab", "  ", "a%2Fb+c%3D"]);
        assert_eq!(r.redact("ab a%2Fb+c%3D a/b c="), "ab [redacted] [redacted]");
        let r = Redactor::new(["abcd"]);
        assert_eq!(r.redact("xabcdx é abcd"), "x[redacted]x é [redacted]");
        assert!(Redactor::new(["x"]).is_empty());
    }

    #[test]
    fn multibyte_secrets_keep_text_valid() {
        let secret = "ключ-секрет-12345";
        let r = Redactor::new([secret]);
        assert_eq!(r.redact(&format!("«{secret}»")), "«[redacted]»");
        assert_eq!(r.redact("«ключ-секрет»"), "«[redacted]»");
    }
}
