//! JSON decoding shared by the wire formats.

use serde::de::DeserializeOwned;
use staunch_core::{ErrorKind, LlmError};

/// Decodes a success body: a body that stops mid-document is a truncated
/// response (transient: the next attempt may arrive whole); anything else
/// that is not the expected shape is a malformed one.
pub(crate) fn decode<T: DeserializeOwned>(provider: &str, body: &[u8]) -> Result<T, LlmError> {
    // The body checked as UTF-8 once, in one pass: from bytes, serde_json
    // checks each string it reads on its own, a call per string. A body
    // that is not UTF-8 throughout is read from its bytes as before (the
    // strings it skips are not checked there).
    let read = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    };
    read.map_err(|e| {
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

/// Appends `text` as a JSON string, byte for byte as serde_json writes it.
///
/// Most strings on the hot path (a token of text, an id, a model name)
/// need no escaping at all: those are found eight bytes at a time and
/// copied whole, instead of passing serde_json's escaper byte by byte.
/// Anything with a byte to escape goes through serde_json itself.
pub fn push_json_str(out: &mut Vec<u8>, text: &str) {
    if needs_escape(text.as_bytes()) {
        // Writing a string into a vector can't fail.
        let _ = serde_json::to_writer(&mut *out, text);
    } else {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// The bytes tool `calls` take in a body: their ids', names' and
/// arguments' text, plus `per_call` for each call's keys and quotes. For
/// sizing a buffer before writing into it.
pub(crate) fn calls_len(calls: &[staunch_core::ToolCall], per_call: usize) -> usize {
    calls
        .iter()
        .map(|c| c.id.len() + c.name.len() + c.arguments.len() + per_call)
        .sum()
}

/// Appends `n` in decimal, as serde_json writes an integer.
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Whether a JSON string of `bytes` needs an escape: a control byte (below
/// 0x20), a `"` or a `\`. Every byte of UTF-8 text other than those is
/// written as it is.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // Some byte of `w` is zero: (w - 1 per byte) & !w & 0x80 per byte,
    // which is exact as a yes or no; for "below n" (n at most 0x80),
    // subtract n per byte instead.
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS != 0;
    let quote = ONES * u64::from(b'"');
    let backslash = ONES * u64::from(b'\\');
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut eight = [0; 8];
        eight.copy_from_slice(word);
        let w = u64::from_le_bytes(eight);
        if below(w, 0x20) || below(w ^ quote, 1) || below(w ^ backslash, 1) {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod push_json_str_tests {
    use super::*;
    use proptest::prelude::*;

    fn pushed(text: &str) -> Vec<u8> {
        let mut out = b"x".to_vec();
        push_json_str(&mut out, text);
        out
    }

    fn serde(text: &str) -> Vec<u8> {
        let mut out = b"x".to_vec();
        serde_json::to_writer(&mut out, text).unwrap();
        out
    }

    #[test]
    fn every_escape_at_every_position_of_a_word() {
        let specials = [
            '"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1f}', '\u{7f}', 'é', '€', '😀',
        ];
        for len in 0..20 {
            for at in 0..len {
                for &c in &specials {
                    let text: String = (0..len).map(|i| if i == at { c } else { 'a' }).collect();
                    assert_eq!(pushed(&text), serde(&text), "{text:?}");
                }
            }
        }
        assert_eq!(pushed(""), b"x\"\"");
        assert_eq!(
            pushed("plain text, no escapes"),
            b"x\"plain text, no escapes\""
        );
    }

    #[test]
    fn bytes_just_around_the_bounds_are_judged_right() {
        for b in 0u8..0x80 {
            let text = format!("abcdefg{}", b as char);
            assert_eq!(
                needs_escape(text.as_bytes()),
                b < 0x20 || b == b'"' || b == b'\\',
                "{b:#x}"
            );
            let text = format!("{}abcdefghijklmno", b as char);
            assert_eq!(
                needs_escape(text.as_bytes()),
                b < 0x20 || b == b'"' || b == b'\\',
                "{b:#x}"
            );
        }
    }

    proptest! {
        #[test]
        fn writes_what_serde_json_writes(text in any::<String>()) {
            prop_assert_eq!(pushed(&text), serde(&text));
        }

        #[test]
        fn writes_what_serde_json_writes_for_mostly_ascii(text in "[ -~\\t\\n\"\\\\é]{0,40}") {
            prop_assert_eq!(pushed(&text), serde(&text));
        }
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Read {
        text: String,
    }

    fn read(body: &[u8]) -> Result<Read, LlmError> {
        decode("Test", body)
    }

    #[test]
    fn bodies_read_the_same_from_text_as_from_bytes() {
        let ok = Read {
            text: "é \"q\" ☃".to_owned(),
        };
        assert_eq!(
            read(br#"{"text":"\u00e9 \"q\" \u2603","other":[1,2]}"#).unwrap(),
            ok
        );
        assert_eq!(read("{\"text\":\"é \\\"q\\\" ☃\"}".as_bytes()).unwrap(), ok);
        // Cut short: truncated, whatever the bytes.
        let cut = read(br#"{"text":"abc"#).unwrap_err();
        assert_eq!(cut.kind, ErrorKind::TruncatedResponse, "{cut}");
        // Not UTF-8 in a string the answer skips: read as before, from its
        // bytes (serde_json checks only the strings it reads).
        let mut skipped = br#"{"other":"x"#.to_vec();
        skipped.push(0xff);
        skipped.extend_from_slice(br#"","text":"kept"}"#);
        assert_eq!(read(&skipped).unwrap().text, "kept");
        // Not UTF-8 in a string it reads: malformed, and the message says
        // what the parser saw.
        let mut bad = br#"{"text":"x"#.to_vec();
        bad.push(0xff);
        bad.extend_from_slice(br#""}"#);
        let bad = read(&bad).unwrap_err();
        assert_eq!(bad.kind, ErrorKind::MalformedResponse, "{bad}");
        assert!(
            bad.message.contains("could not read the Test response"),
            "{bad}"
        );
        assert!(bad.message.contains("invalid unicode"), "{bad}");
        // Not JSON at all.
        let junk = read(b"<html>").unwrap_err();
        assert_eq!(junk.kind, ErrorKind::MalformedResponse, "{junk}");
    }
}
