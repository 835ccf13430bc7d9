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

/// Serializes `value` into one buffer of `estimate` bytes' capacity (it
/// grows only if the estimate was short), with no intermediate JSON tree.
pub(crate) fn encode<T: serde::Serialize + ?Sized>(
    value: &T,
    estimate: usize,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut body = Vec::with_capacity(estimate);
    serde_json::to_writer(&mut body, value)?;
    Ok(body)
}

/// A cheap estimate of a list of strings' JSON size.
pub(crate) fn estimate_strings(strings: &[String]) -> usize {
    strings.iter().map(|s| s.len() + 3).sum::<usize>() + 16
}

/// A cheap estimate of a JSON object's encoded size, without encoding it.
pub(crate) fn estimate_map(map: &serde_json::Map<String, serde_json::Value>) -> usize {
    map.iter()
        .map(|(k, v)| k.len() + 4 + estimate_value(v))
        .sum::<usize>()
        + 2
}

pub(crate) fn estimate_value(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 24,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => items.iter().map(|v| estimate_value(v) + 1).sum::<usize>() + 2,
        Value::Object(map) => estimate_map(map),
    }
}

/// A cheap estimate of a request body's size, for one buffer sized once:
/// the dialect's framing of each message (`per_message`), each tool with
/// `tool_framing` bytes around its name, description and schema, the stop
/// sequences and the dialect's extras, plus a little room for escapes so a
/// typical body never reallocates.
pub(crate) fn estimate_request(
    request: &staunch_core::ChatRequest,
    dialect: staunch_core::Dialect,
    per_message: impl Fn(&staunch_core::Message) -> usize,
    tool_framing: usize,
) -> usize {
    let messages: usize = request.messages.iter().map(per_message).sum();
    let tools: usize = request
        .tools
        .iter()
        .map(|t| {
            t.name.len()
                + t.description.as_ref().map_or(0, String::len)
                + estimate_value(&t.parameters)
                + tool_framing
        })
        .sum();
    let estimate = 160
        + request.model.len()
        + messages
        + tools
        + estimate_strings(&request.stop)
        + estimate_map(request.extra.get(dialect));
    estimate + estimate / 32
}
