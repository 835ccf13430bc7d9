//! OpenAI embeddings (`POST {base_url}/embeddings`), as OpenAI and the
//! servers that copy it (vLLM, TEI, Ollama, LM Studio) speak it: the request
//! body serialized straight from a borrowed [`EmbeddingRequest`], and the
//! answer read into an [`EmbeddingResponse`] in input order, its vectors
//! decoded from JSON numbers or base64 (little-endian `f32`s).

use super::error::error;
use crate::dialect::conversation::invalid;
use crate::json::decode;
use base64::Engine as _;
use http::HeaderMap;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use staunch_core::{
    Dialect, Embedding, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, ErrorKind, LlmError,
    Usage,
};
use std::fmt;

/// The body bytes for `request`: `model`, `input` (always an array: of
/// strings, or of token arrays), `dimensions` and `encoding_format` when
/// set, then the OpenAI-dialect extras (a key there replaces the typed
/// field of that name). An empty batch or `dimensions: 0` is refused
/// before the wire (`InvalidRequest`).
///
/// ```
/// use staunch_core::{EmbeddingRequest, EncodingFormat};
/// use staunch_providers::openai::wire::encode_embeddings;
///
/// let request = EmbeddingRequest::new("text-embedding-3-small", ["a", "b"])
///     .with_dimensions(256)
///     .with_encoding_format(EncodingFormat::Base64);
/// let body: serde_json::Value = serde_json::from_slice(&encode_embeddings(&request)?)?;
/// assert_eq!(body, serde_json::json!({
///     "model": "text-embedding-3-small",
///     "input": ["a", "b"],
///     "dimensions": 256,
///     "encoding_format": "base64"
/// }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encode_embeddings(request: &EmbeddingRequest) -> Result<Vec<u8>, LlmError> {
    if request.input.is_empty() {
        return Err(invalid(
            "an embeddings request needs at least one input; nothing was sent",
        ));
    }
    if request.dimensions == Some(0) {
        return Err(invalid(
            "an embeddings request cannot ask for 0 dimensions; nothing was sent",
        ));
    }
    let input = match &*request.input {
        EmbeddingInput::Text(texts) => crate::json::estimate_strings(texts),
        // Up to six digits and a comma per token id, brackets per array.
        EmbeddingInput::Tokens(arrays) => arrays.iter().map(|a| a.len() * 7 + 2).sum(),
        _ => 64,
    };
    let estimate = 96
        + request.model.len()
        + input
        + crate::json::estimate_map(request.extra.get(Dialect::OpenAi));
    crate::json::encode(&Body(request), estimate + estimate / 32)
        .map_err(|e| invalid("could not encode the embeddings request for OpenAI").with_source(e))
}

/// An OpenAI embeddings body borrowed from an [`EmbeddingRequest`].
struct Body<'a>(&'a EmbeddingRequest);

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let extra = r.extra.get(Dialect::OpenAi);
        let typed = |key: &str| !extra.contains_key(key);
        let mut map = serializer.serialize_map(None)?;
        if typed("model") {
            map.serialize_entry("model", &r.model)?;
        }
        if typed("input") {
            map.serialize_entry("input", &*r.input)?;
        }
        if let Some(d) = r.dimensions.filter(|_| typed("dimensions")) {
            map.serialize_entry("dimensions", &d)?;
        }
        if let Some(f) = r.encoding_format.filter(|_| typed("encoding_format")) {
            map.serialize_entry("encoding_format", f.as_str())?;
        }
        for (k, v) in extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    model: String,
    data: Vec<Item>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Item {
    /// Missing on a few compatible servers: the item's position then.
    #[serde(default)]
    index: Option<usize>,
    embedding: Vector,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

/// A vector as the wire carries it: an array of numbers, or base64 of
/// little-endian `f32`s; read straight into `f32`s either way.
struct Vector(Vec<f32>);

impl<'de> Deserialize<'de> for Vector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vector;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of numbers or a base64 string")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vector, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(x) = seq.next_element::<f32>()? {
                    out.push(x);
                }
                Ok(Vector(out))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Vector, E> {
                decode_base64(text).map(Vector).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The `f32`s of a base64 vector (standard alphabet, little-endian).
fn decode_base64(text: &str) -> Result<Vec<f32>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("a vector is not valid base64: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "a base64 vector of {} bytes is not a whole number of 4-byte floats",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn malformed(why: String, usage: Usage) -> LlmError {
    LlmError::new(ErrorKind::MalformedResponse, why).with_spent(usage)
}

/// Reads the answer to `request`: a 2xx body becomes an
/// [`EmbeddingResponse`] with one vector per input, sorted by `index`;
/// anything else an [`LlmError`] classified as for chat (429 with
/// `Retry-After` and the rate-limit headers, a 400 "maximum context length"
/// or "input too long" as `ContextLengthExceeded`, …). Vectors arrive as
/// JSON numbers or base64 and are `f32`s either way.
///
/// An answer that cannot be trusted is a `MalformedResponse` (carrying the
/// tokens it was billed), never a silently wrong batch: a missing, repeated
/// or out-of-range `index`, more or fewer vectors than inputs, vectors of
/// different lengths, a length other than the `dimensions` asked for, a
/// value that is not a finite number. Never panics, whatever the bytes.
///
/// ```
/// use http::HeaderMap;
/// use staunch_core::EmbeddingRequest;
/// use staunch_providers::openai::wire::parse_embeddings;
///
/// let request = EmbeddingRequest::new("m", ["a", "b"]);
/// // "AACAPwAAAAA=" is base64 of the little-endian f32s [1.0, 0.0].
/// let body = br#"{"object": "list", "model": "m",
///     "data": [{"index": 1, "embedding": "AACAPwAAAAA="}, {"index": 0, "embedding": [0.6, 0.8]}],
///     "usage": {"prompt_tokens": 2, "total_tokens": 2}}"#;
/// let answer = parse_embeddings(&request, 200, &HeaderMap::new(), body)?;
/// assert_eq!(answer.vector(0), Some(&[0.6f32, 0.8][..]));
/// assert_eq!(answer.vector(1), Some(&[1.0f32, 0.0][..]));
/// assert_eq!(answer.usage.input_tokens, 2);
/// # Ok::<(), staunch_core::LlmError>(())
/// ```
pub fn parse_embeddings(
    request: &EmbeddingRequest,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<EmbeddingResponse, LlmError> {
    if !(200..300).contains(&status) {
        return Err(error(status, headers, body));
    }
    let list: List = decode("OpenAI embeddings", body)?;
    let usage = list.usage.as_ref().map_or_else(Usage::default, |u| {
        Usage::new(u.prompt_tokens.or(u.total_tokens).unwrap_or(0), 0)
    });
    let inputs = request.input.len();
    if list.data.len() != inputs {
        return Err(malformed(
            format!(
                "the embeddings answer has {} vectors for {inputs} inputs",
                list.data.len()
            ),
            usage,
        ));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; inputs];
    for (position, item) in list.data.into_iter().enumerate() {
        let index = item.index.unwrap_or(position);
        match slots.get_mut(index) {
            Some(slot @ None) => *slot = Some(item.embedding.0),
            Some(Some(_)) => {
                return Err(malformed(
                    format!("the embeddings answer has index {index} twice"),
                    usage,
                ));
            }
            None => {
                return Err(malformed(
                    format!("the embeddings answer has index {index} for {inputs} inputs"),
                    usage,
                ));
            }
        }
    }
    let mut data = Vec::with_capacity(inputs);
    let mut width = None;
    for (index, slot) in slots.into_iter().enumerate() {
        // Every slot is filled: as many items as slots, none twice.
        let Some(vector) = slot else {
            return Err(malformed(
                format!("the embeddings answer has no vector for input {index}"),
                usage,
            ));
        };
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(malformed(
                format!(
                    "vector {index} of the embeddings answer holds a value that is not a finite number"
                ),
                usage,
            ));
        }
        let want = *width.get_or_insert(vector.len());
        if vector.len() != want {
            return Err(malformed(
                format!(
                    "the embeddings answer mixes vector lengths ({want} and {} at input {index})",
                    vector.len()
                ),
                usage,
            ));
        }
        data.push(Embedding::new(index, vector));
    }
    if let (Some(asked), Some(got)) = (request.dimensions, width)
        && u64::from(asked) != got as u64
    {
        return Err(malformed(
            format!(
                "asked for {asked} dimensions, the embeddings answer has {got} (does the model support `dimensions`?)"
            ),
            usage,
        ));
    }
    Ok(EmbeddingResponse::new(list.model, data).with_usage(usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use staunch_core::EncodingFormat;

    fn parse(request: &EmbeddingRequest, body: &str) -> Result<EmbeddingResponse, LlmError> {
        parse_embeddings(request, 200, &HeaderMap::new(), body.as_bytes())
    }

    fn b64(values: &[f32]) -> String {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn the_body_carries_the_options_and_the_extras_win() {
        let request = EmbeddingRequest::new("m", vec![vec![1u32, 2], vec![3]])
            .with_encoding_format(EncodingFormat::Float)
            .with_extra(Dialect::OpenAi, "user", "u-1")
            .with_extra(Dialect::OpenAi, "model", "override")
            .with_extra(Dialect::Anthropic, "ignored", true);
        let body: serde_json::Value =
            serde_json::from_slice(&encode_embeddings(&request).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model": "override", "input": [[1, 2], [3]], "encoding_format": "float", "user": "u-1"})
        );
    }

    #[test]
    fn requests_no_server_would_take_are_refused_before_the_wire() {
        let empty = EmbeddingRequest::new("m", Vec::<String>::new());
        let e = encode_embeddings(&empty).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e.message.contains("at least one input"), "{}", e.message);
        let zero = EmbeddingRequest::new("m", "a").with_dimensions(0);
        assert_eq!(
            encode_embeddings(&zero).unwrap_err().kind,
            ErrorKind::InvalidRequest
        );
    }

    #[test]
    fn floats_and_base64_read_alike_in_input_order() {
        let request = EmbeddingRequest::new("m", ["a", "b", "c"]);
        let body = format!(
            r#"{{"model": "m-2", "data": [
                {{"index": 2, "embedding": "{}"}},
                {{"index": 0, "embedding": [0.25, -1.5]}},
                {{"index": 1, "embedding": "{}"}}
            ], "usage": {{"prompt_tokens": 3, "total_tokens": 3}}}}"#,
            b64(&[3.0, 4.0]),
            b64(&[f32::MIN_POSITIVE, -0.0])
        );
        let answer = parse(&request, &body).unwrap();
        assert_eq!(answer.model, "m-2");
        assert_eq!(
            answer.vectors().collect::<Vec<_>>(),
            [&[0.25, -1.5][..], &[f32::MIN_POSITIVE, -0.0], &[3.0, 4.0]]
        );
        assert!(answer.data.iter().enumerate().all(|(i, e)| e.index == i));
        assert_eq!(answer.usage, Usage::new(3, 0));
    }

    #[test]
    fn missing_indices_mean_positions_and_usage_may_be_absent() {
        let request = EmbeddingRequest::new("m", ["a", "b"]);
        let answer = parse(
            &request,
            r#"{"data": [{"embedding": [1]}, {"embedding": [2]}]}"#,
        )
        .unwrap();
        assert_eq!(answer.vector(1), Some(&[2.0][..]));
        assert_eq!(answer.usage, Usage::default());
        let total_only = parse(
            &request,
            r#"{"data": [{"embedding": [1]}, {"embedding": [2]}], "usage": {"total_tokens": 9}}"#,
        )
        .unwrap();
        assert_eq!(total_only.usage.input_tokens, 9);
    }

    #[test]
    fn an_untrustworthy_batch_is_malformed_with_its_spend() {
        let two = EmbeddingRequest::new("m", ["a", "b"]);
        let usage = r#""usage": {"prompt_tokens": 5}"#;
        for (body, says) in [
            (
                format!(r#"{{"data": [{{"index": 0, "embedding": [1]}}], {usage}}}"#),
                "1 vectors for 2 inputs",
            ),
            (
                format!(
                    r#"{{"data": [{{"index": 0, "embedding": [1]}}, {{"index": 0, "embedding": [1]}}], {usage}}}"#
                ),
                "index 0 twice",
            ),
            (
                format!(
                    r#"{{"data": [{{"index": 0, "embedding": [1]}}, {{"index": 7, "embedding": [1]}}], {usage}}}"#
                ),
                "index 7 for 2 inputs",
            ),
            (
                format!(
                    r#"{{"data": [{{"index": 0, "embedding": [1]}}, {{"index": 1, "embedding": [1, 2]}}], {usage}}}"#
                ),
                "mixes vector lengths",
            ),
            (
                format!(
                    r#"{{"data": [{{"index": 0, "embedding": [1]}}, {{"index": 1, "embedding": "{}"}}], {usage}}}"#,
                    b64(&[f32::NAN])
                ),
                "not a finite number",
            ),
        ] {
            let e = parse(&two, &body).unwrap_err();
            assert_eq!(e.kind, ErrorKind::MalformedResponse, "{body}");
            assert!(e.message.contains(says), "{says}: {}", e.message);
            assert_eq!(e.total_spent(), Usage::new(5, 0), "{body}");
        }
        let asked = EmbeddingRequest::new("m", "a").with_dimensions(4);
        let e = parse(&asked, r#"{"data": [{"embedding": [1, 2]}]}"#).unwrap_err();
        assert!(
            e.message.contains("asked for 4 dimensions"),
            "{}",
            e.message
        );
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let one = EmbeddingRequest::new("m", "a");
        for (body, kind) in [
            ("", ErrorKind::TruncatedResponse),
            (
                r#"{"data": [{"embedding": [1,"#,
                ErrorKind::TruncatedResponse,
            ),
            ("<html>", ErrorKind::MalformedResponse),
            (
                r#"{"data": [{"embedding": "!!!"}]}"#,
                ErrorKind::MalformedResponse,
            ),
            (
                r#"{"data": [{"embedding": "AAA="}]}"#,
                ErrorKind::MalformedResponse,
            ),
            (
                r#"{"data": [{"embedding": ["x"]}]}"#,
                ErrorKind::MalformedResponse,
            ),
            (
                r#"{"data": [{"embedding": null}]}"#,
                ErrorKind::MalformedResponse,
            ),
            (
                r#"{"data": [{"index": -1, "embedding": [1]}]}"#,
                ErrorKind::MalformedResponse,
            ),
            (r#"{"data": {}}"#, ErrorKind::MalformedResponse),
            (r#"{"object": "list"}"#, ErrorKind::MalformedResponse),
        ] {
            let e = parse(&one, body).unwrap_err();
            assert_eq!(e.kind, kind, "{body}: {}", e.message);
        }
    }

    #[test]
    fn errors_are_classified_as_for_chat() {
        let one = EmbeddingRequest::new("m", "a");
        let too_long = br#"{"error": {"message": "This model's maximum context length is 8192 tokens, however you requested 9000 tokens (9000 in your prompt; 0 for the completion). Please reduce your prompt; or completion length.", "type": "invalid_request_error", "param": null, "code": null}}"#;
        let e = parse_embeddings(&one, 400, &HeaderMap::new(), too_long).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
        let tei = br#"{"error": "Input validation error: `inputs` must have less than 512 tokens. Given: 600", "error_type": "validation"}"#;
        let e = parse_embeddings(&one, 413, &HeaderMap::new(), tei).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ContextLengthExceeded, "{}", e.message);
        let plain = br#"{"error": {"message": "input too long", "type": "invalid_request_error"}}"#;
        let e = parse_embeddings(&one, 400, &HeaderMap::new(), plain).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", http::HeaderValue::from_static("2"));
        let e = parse_embeddings(&one, 429, &headers, b"{}").unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(2)));
    }
}
