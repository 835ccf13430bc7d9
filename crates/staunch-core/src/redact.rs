//! Masking of credentials that may appear in provider messages.
//!
//! This is the second net: a client masks its own exact key (and the values
//! of its custom headers and query parameters) out of everything it puts
//! into an error before the error exists. What is masked here is whatever
//! *looks* like a credential: `sk-…`, `Bearer …` and `Basic …` tokens, and
//! the values of `name=value`, `name: value` and `"name": "value"` pairs
//! whose name says they are secret (`api_key`, `x-api-key`, `key`, `token`,
//! `access_token`, `secret`, `password`, …), case-insensitively.

use std::borrow::Cow;

/// Prefixes of tokens that are credentials (OpenAI `sk-…`/`sk-proj-…`,
/// Anthropic `sk-ant-…`, bearer tokens, basic credentials).
const SECRET_PREFIXES: [&str; 3] = ["sk-", "Bearer ", "Basic "];

/// What replaces a secret.
const MASK: &str = "[redacted]";

/// Names (lower case, `-` read as `_`) whose value is a secret.
const SECRET_NAMES: [&str; 20] = [
    "key",
    "apikey",
    "api_key",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth_token",
    "bearer",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "pwd",
    "credential",
    "credentials",
    "signature",
    "sig",
    "session",
    "x_api_key",
];

/// Name endings whose value is a secret (`x-goog-api-key`,
/// `ocp-apim-subscription-key`, `github_token`, …).
const SECRET_SUFFIXES: [&str; 6] = [
    "_key",
    "apikey",
    "_token",
    "_secret",
    "_password",
    "_credential",
];

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | '+' | '/' | '=')
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')
}

/// Ends an unquoted value.
fn ends_value(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '&' | ','
                | ';'
                | '"'
                | '\''
                | '\\'
                | '<'
                | '>'
                | '('
                | ')'
                | '['
                | ']'
                | '{'
                | '}'
                | '|'
        )
}

/// How sure a name is to introduce a secret.
#[derive(PartialEq)]
enum Name {
    /// Not a secret's name.
    No,
    /// A specific name (`api_key`, `access_token`): its value is masked.
    Sure,
    /// A generic word (`key`, `token`) that prose also uses before a
    /// colon: its value is masked when it looks like a credential.
    Generic,
}

fn classify_name(name: &str, before: &str) -> Name {
    let n = name.to_ascii_lowercase().replace('-', "_");
    // OpenAI: "Incorrect API key provided: <key>".
    if n == "provided" && before.trim_end().to_ascii_lowercase().ends_with("key") {
        return Name::Sure;
    }
    if n == "key" || n == "token" {
        return Name::Generic;
    }
    if SECRET_NAMES.contains(&n.as_str()) || SECRET_SUFFIXES.iter().any(|s| n.ends_with(s)) {
        Name::Sure
    } else {
        Name::No
    }
}

fn looks_like_credential(value: &str) -> bool {
    value.len() >= 8 && (value.len() >= 20 || value.bytes().any(|b| b.is_ascii_digit()))
}

/// Writes the mask for `value`, keeping a recognisable prefix and a
/// sentence-ending dot.
fn push_mask(out: &mut String, value: &str) {
    if value.starts_with("sk-") {
        out.push_str("sk-");
    }
    out.push_str(MASK);
    if value.ends_with('.') {
        out.push('.');
    }
}

/// Masks the values of secret-named `name=value`, `name: value` and
/// `"name": "value"` pairs.
fn redact_pairs(text: &str) -> Cow<'_, str> {
    if !text.contains(['=', ':']) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let sep = bytes[i];
        if sep != b'=' && sep != b':' {
            i += 1;
            continue;
        }
        // The name: identifier bytes before the separator, optionally
        // quoted (`"api_key"`, `\"api_key\"`) and followed by blanks.
        let mut j = i;
        while j > copied && matches!(bytes[j - 1], b' ' | b'\t') {
            j -= 1;
        }
        if j > copied && matches!(bytes[j - 1], b'"' | b'\'') {
            j -= 1;
            if j > copied && bytes[j - 1] == b'\\' {
                j -= 1;
            }
        }
        let name_end = j;
        while j > copied && is_name_byte(bytes[j - 1]) {
            j -= 1;
        }
        let name = &text[j..name_end];
        let class = if name.is_empty() {
            Name::No
        } else {
            classify_name(name, &text[..j])
        };
        if class == Name::No {
            i += 1;
            continue;
        }
        // The value: blanks, then a quoted string or a run of token
        // characters.
        let mut k = i + 1;
        while k < bytes.len() && matches!(bytes[k], b' ' | b'\t') {
            k += 1;
        }
        let escaped =
            bytes.get(k) == Some(&b'\\') && matches!(bytes.get(k + 1), Some(b'"' | b'\''));
        if escaped {
            k += 1;
        }
        let quote = bytes.get(k).copied().filter(|b| matches!(b, b'"' | b'\''));
        let start = k + usize::from(quote.is_some());
        let rest = &text[start..];
        let len = match quote {
            Some(q) => rest.find(q as char).map_or(rest.len(), |e| {
                // `\"…\"`: the value stops before the backslash.
                if escaped && e > 0 && rest.as_bytes()[e - 1] == b'\\' {
                    e - 1
                } else {
                    e
                }
            }),
            None => rest.find(ends_value).unwrap_or(rest.len()),
        };
        let value = &rest[..len];
        let end = start + len;
        let bare = value.trim_end_matches('.');
        let wanted = !value.is_empty()
            && !value.starts_with(MASK)
            && !value.starts_with("sk-[")
            && !matches!(value, "Bearer" | "Basic")
            && (class == Name::Sure || sep == b'=' || looks_like_credential(bare));
        if !wanted {
            i += 1;
            continue;
        }
        out.push_str(&text[copied..start]);
        if quote.is_some() {
            out.push_str(MASK);
        } else {
            push_mask(&mut out, value);
        }
        copied = end;
        i = end.max(i + 1);
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Masks tokens that start with a credential prefix (`sk-`, `Bearer `).
fn redact_prefixed(text: &str) -> Cow<'_, str> {
    if !SECRET_PREFIXES.iter().any(|p| text.contains(p)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, prefix)) = SECRET_PREFIXES
        .iter()
        .filter_map(|p| rest.find(p).map(|at| (at, *p)))
        .min_by_key(|(at, _)| *at)
    {
        let before = rest[..at].chars().next_back().or(out.chars().next_back());
        let starts_word = before.is_none_or(|c| !is_token_char(c));
        out.push_str(&rest[..at]);
        let after = &rest[at + prefix.len()..];
        let token_len = after
            .char_indices()
            .find(|(_, c)| !is_token_char(*c))
            .map_or(after.len(), |(i, _)| i);
        if starts_word && token_len > 0 {
            out.push_str(prefix);
            out.push_str(MASK);
            // A trailing '.' ends the sentence rather than the key.
            let token = &after[..token_len];
            let kept_dot = token.ends_with('.');
            if kept_dot {
                out.push('.');
            }
            rest = &after[token_len..];
        } else {
            out.push_str(prefix);
            rest = after;
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Returns `text` with anything that looks like an API key or bearer token
/// replaced by `[redacted]`.
///
/// Providers echo (partly masked) keys in authentication errors; staunch
/// applies this to every provider message it displays so that no key reaches
/// a log line or an error report. It is a second net: the clients mask
/// their exact keys first, which also catches keys of no known shape.
///
/// ```
/// use staunch_core::redact_secrets;
/// assert_eq!(
///     redact_secrets("Incorrect API key provided: sk-proj-abc***xyz. See docs"),
///     "Incorrect API key provided: sk-[redacted]. See docs"
/// );
/// assert_eq!(
///     redact_secrets(r#"bad request ?api_key=abc123&x=1 {"Access_Token": "tok"}"#),
///     r#"bad request ?api_key=[redacted]&x=1 {"Access_Token": "[redacted]"}"#
/// );
/// assert_eq!(redact_secrets("no secret here"), "no secret here");
/// ```
pub fn redact_secrets(text: &str) -> Cow<'_, str> {
    match redact_pairs(text) {
        Cow::Borrowed(text) => redact_prefixed(text),
        Cow::Owned(text) => Cow::Owned(redact_prefixed(&text).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_secrets;

    #[test]
    fn masks_every_key_shape() {
        assert_eq!(redact_secrets("sk-ant-api03-AbC_d-9"), "sk-[redacted]");
        assert_eq!(
            redact_secrets("Authorization: Bearer eyJhbGciOi.x.y end"),
            "Authorization: Bearer [redacted] end"
        );
        assert_eq!(
            redact_secrets("a sk-1 and sk-2"),
            "a sk-[redacted] and sk-[redacted]"
        );
    }

    #[test]
    fn masks_named_values() {
        let cases = [
            (
                "url ?key=3f9c2b7e1d4a&alt=json",
                "url ?key=[redacted]&alt=json",
            ),
            ("api_key=abc.", "api_key=[redacted]."),
            ("API-KEY=abc def", "API-KEY=[redacted] def"),
            ("X-Api-Key: 3f9c2b7e1d4a8f6e", "X-Api-Key: [redacted]"),
            ("x-api-key=zz", "x-api-key=[redacted]"),
            (
                r#"{"api_key": "3f9c2b7e", "model": "m"}"#,
                r#"{"api_key": "[redacted]", "model": "m"}"#,
            ),
            (
                r#"{\"api_key\": \"3f9c2b7e\"}"#,
                r#"{\"api_key\": \"[redacted]\"}"#,
            ),
            (
                "token=abc&access_token=def",
                "token=[redacted]&access_token=[redacted]",
            ),
            ("refresh_token = 'q w'", "refresh_token = '[redacted]'"),
            (
                "Incorrect API key provided: 3f9c2b7e1d4a. You can find",
                "Incorrect API key provided: [redacted]. You can find",
            ),
            ("api_key=sk-proj-abc", "api_key=sk-[redacted]"),
            (
                "Authorization: Basic dXNlcjpwYXNz",
                "Authorization: Basic [redacted]",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(redact_secrets(text), want, "{text}");
        }
    }

    #[test]
    fn leaves_prose_and_other_pairs() {
        for text in [
            "missing key: messages",
            "the key: is required",
            "model=gpt-4o temperature: 2",
            "ratio 1:2 at 10:30",
            "keyboard=qwerty",
            "",
            "=:=:",
        ] {
            assert_eq!(redact_secrets(text), text);
        }
    }

    #[test]
    fn leaves_words_that_merely_contain_the_prefix() {
        assert_eq!(redact_secrets("task-sk-list"), "task-sk-list");
        assert_eq!(redact_secrets("risk- averse"), "risk- averse");
        assert_eq!(redact_secrets("ends with sk-"), "ends with sk-");
    }

    #[test]
    fn multibyte_text_is_kept() {
        assert_eq!(redact_secrets("clé sk-é"), "clé sk-é");
        assert_eq!(redact_secrets("ключ sk-abc, ok"), "ключ sk-[redacted], ok");
        assert_eq!(
            redact_secrets("clé=é ключ: значение1234"),
            "clé=é ключ: значение1234"
        );
        assert_eq!(redact_secrets("key=ключ, ok"), "key=[redacted], ok");
    }
}
