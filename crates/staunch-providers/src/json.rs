//! JSON decoding shared by the wire formats.

use serde::de::DeserializeOwned;
use staunch_core::{ErrorKind, LlmError};

/// Decodes a success body: a body that stops mid-document is a truncated
/// response (transient: the next attempt may arrive whole); anything else
/// that is not the expected shape is a malformed one.
pub(crate) fn decode<T: DeserializeOwned>(provider: &str, body: &[u8]) -> Result<T, LlmError> {
    serde_json::from_slice(body).map_err(|e| {
        let kind = if e.is_eof() {
            ErrorKind::TruncatedResponse
        } else {
            ErrorKind::MalformedResponse
        };
        LlmError::new(kind, format!("could not read the {provider} response: {e}"))
    })
}

/// The start of a body that is not JSON, for error messages: at most 200
/// characters, control characters replaced.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out.trim().to_owned()
}

/// A lower-case copy for matching provider messages.
pub(crate) fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}
