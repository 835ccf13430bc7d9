//! Masking of credentials that may appear in provider messages.

use std::borrow::Cow;

/// Prefixes of tokens that are credentials (OpenAI `sk-…`/`sk-proj-…`,
/// Anthropic `sk-ant-…`, bearer tokens).
const SECRET_PREFIXES: [&str; 2] = ["sk-", "Bearer "];

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | '+' | '/' | '=')
}

/// Returns `text` with anything that looks like an API key or bearer token
/// replaced by `[redacted]`.
///
/// Providers echo (partly masked) keys in authentication errors; staunch
/// applies this to every provider message it displays so that no key reaches
/// a log line or an error report.
///
/// ```
/// use staunch_core::redact_secrets;
/// assert_eq!(
///     redact_secrets("Incorrect API key provided: sk-proj-abc***xyz. See docs"),
///     "Incorrect API key provided: sk-[redacted]. See docs"
/// );
/// assert_eq!(redact_secrets("no secret here"), "no secret here");
/// ```
pub fn redact_secrets(text: &str) -> Cow<'_, str> {
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
            out.push_str("[redacted]");
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
    fn leaves_words_that_merely_contain_the_prefix() {
        assert_eq!(redact_secrets("task-sk-list"), "task-sk-list");
        assert_eq!(redact_secrets("risk- averse"), "risk- averse");
        assert_eq!(redact_secrets("ends with sk-"), "ends with sk-");
    }

    #[test]
    fn multibyte_text_is_kept() {
        assert_eq!(redact_secrets("clé sk-é"), "clé sk-é");
        assert_eq!(redact_secrets("ключ sk-abc, ok"), "ключ sk-[redacted], ok");
    }
}
