//! OpenAI embeddings (`POST {base_url}/embeddings`), as OpenAI and the
//! servers that copy it (vLLM, TEI, Ollama, LM Studio) speak it: the request
//! body serialized straight from a borrowed [`EmbeddingRequest`], and the
//! answer read into an [`EmbeddingResponse`] in input order, its vectors
//! decoded from JSON numbers or base64 (little-endian `f32`s).
//!
//! And the ingress side, for a server that speaks it to its own clients: a
//! client's request body read into an [`EmbeddingRequest`]
//! ([`decode_embeddings_request`]) and an answer written back in OpenAI's
//! shape ([`encode_embeddings_response`]).

use super::error::error;
use super::ingress::{IngressError, field};
use crate::dialect::conversation::invalid;
use crate::dialect::vectors::{checked, malformed};
use crate::json::decode;
use base64::Engine as _;
use http::HeaderMap;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use staunch_core::{
    Dialect, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EncodingFormat, Extras, LlmError,
    Usage,
};
use std::fmt;
use std::sync::Arc;

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
    // Every slot is filled: as many items as slots, none twice.
    let mut vectors = Vec::with_capacity(inputs);
    for (index, slot) in slots.into_iter().enumerate() {
        let Some(vector) = slot else {
            return Err(malformed(
                format!("the embeddings answer has no vector for input {index}"),
                usage,
            ));
        };
        vectors.push(vector);
    }
    let data = checked(
        request,
        vectors,
        "the embeddings answer",
        "`dimensions`",
        usage,
    )?;
    Ok(EmbeddingResponse::new(list.model, data).with_usage(usage))
}

/// An embeddings request body as a client sends it: the typed fields, and
/// any other field kept for the OpenAI wire as it is.
#[derive(Deserialize)]
struct InEmbeddings {
    model: String,
    input: EmbeddingInput,
    #[serde(default)]
    dimensions: Option<u32>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Reads a client's embeddings request body (OpenAI's `POST /v1/embeddings`)
/// into the neutral request: `model`; `input` as a string, an array of
/// strings, an array of token ids or an array of token-id arrays;
/// `dimensions`; `encoding_format` (`"float"` or `"base64"`); any other
/// field (`user`, a server's own options) kept as an OpenAI extra, passed
/// through to OpenAI-dialect targets as it is.
///
/// Refused with an [`IngressError`] naming what is wrong, before any
/// upstream is asked: a body that is not JSON, a missing `model` or
/// `input`, an input of another shape, an empty batch, `dimensions: 0`, an
/// `encoding_format` other than `float` or `base64`. Never panics.
///
/// ```
/// use staunch_core::{Dialect, EmbeddingInput, EncodingFormat};
/// use staunch_providers::openai::wire::decode_embeddings_request;
///
/// let body = br#"{"model": "text-embedding-3-small", "input": ["a", "b"],
///     "dimensions": 256, "encoding_format": "base64", "user": "u-1"}"#;
/// let request = decode_embeddings_request(body)?;
/// assert_eq!(*request.input, EmbeddingInput::from(["a", "b"]));
/// assert_eq!(request.dimensions, Some(256));
/// assert_eq!(request.encoding_format, Some(EncodingFormat::Base64));
/// assert_eq!(request.extra.get(Dialect::OpenAi)["user"], "u-1");
///
/// let empty = decode_embeddings_request(br#"{"model": "m", "input": []}"#).unwrap_err();
/// assert_eq!(empty.field(), Some("input"));
/// # Ok::<(), staunch_providers::openai::wire::IngressError>(())
/// ```
pub fn decode_embeddings_request(body: &[u8]) -> Result<EmbeddingRequest, IngressError> {
    let raw: InEmbeddings = serde_json::from_slice(body).map_err(|e| {
        // JSON of the wrong shape names the field; anything else is not JSON.
        if serde_json::from_slice::<de::IgnoredAny>(body).is_ok() {
            IngressError::Body(e.to_string())
        } else {
            IngressError::Json(e.to_string())
        }
    })?;
    if raw.model.is_empty() {
        return Err(field("model", "a model name is required"));
    }
    if raw.input.is_empty() {
        return Err(field("input", "at least one input is required"));
    }
    if raw.dimensions == Some(0) {
        return Err(field("dimensions", "must be at least 1"));
    }
    let encoding_format = match raw.encoding_format.as_deref() {
        None => None,
        Some("float") => Some(EncodingFormat::Float),
        Some("base64") => Some(EncodingFormat::Base64),
        Some(other) => {
            return Err(field(
                "encoding_format",
                format!("expected \"float\" or \"base64\", not {other:?}"),
            ));
        }
    };
    let mut request = EmbeddingRequest::new(raw.model, raw.input);
    request.dimensions = raw.dimensions;
    request.encoding_format = encoding_format;
    if !raw.rest.is_empty() {
        let mut extras = Extras::default();
        extras.set(Dialect::OpenAi, raw.rest);
        request.extra = Arc::new(extras);
    }
    Ok(request)
}

/// Writes `response` as OpenAI writes an embeddings answer, which the
/// official SDKs parse: `{"object": "list", "data": [{"object":
/// "embedding", "index", "embedding"}], "model", "usage": {"prompt_tokens",
/// "total_tokens"}}`, one item per input in input order, each vector a JSON
/// array of numbers or, for [`EncodingFormat::Base64`], the base64 of its
/// little-endian `f32`s. `model` is the model that answered.
///
/// ```
/// use staunch_core::{Embedding, EmbeddingResponse, EncodingFormat, Usage};
/// use staunch_providers::openai::wire::encode_embeddings_response;
///
/// let answer = EmbeddingResponse::new("m", vec![Embedding::new(0, vec![1.0, 0.0])])
///     .with_usage(Usage::new(2, 0));
/// let body: serde_json::Value =
///     serde_json::from_slice(&encode_embeddings_response(&answer, EncodingFormat::Base64))?;
/// assert_eq!(body, serde_json::json!({
///     "object": "list",
///     "data": [{"object": "embedding", "index": 0, "embedding": "AACAPwAAAAA="}],
///     "model": "m",
///     "usage": {"prompt_tokens": 2, "total_tokens": 2}
/// }));
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn encode_embeddings_response(response: &EmbeddingResponse, format: EncodingFormat) -> Vec<u8> {
    let base64 = format == EncodingFormat::Base64;
    let body = ListOut {
        object: "list",
        data: response
            .data
            .iter()
            .map(|e| ItemOut {
                object: "embedding",
                index: e.index,
                embedding: VectorOut {
                    values: &e.vector,
                    base64,
                },
            })
            .collect(),
        model: response.answered_model(),
        usage: UsageOut {
            prompt_tokens: response.usage.input_tokens,
            total_tokens: response.usage.total(),
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

// An embeddings answer as OpenAI writes it, serialized straight from the
// answer's borrowed vectors.

#[derive(Serialize)]
struct ListOut<'a> {
    object: &'static str,
    data: Vec<ItemOut<'a>>,
    model: &'a str,
    usage: UsageOut,
}

#[derive(Serialize)]
struct ItemOut<'a> {
    object: &'static str,
    index: usize,
    embedding: VectorOut<'a>,
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// A vector as numbers, or as base64 of its little-endian `f32`s.
struct VectorOut<'a> {
    values: &'a [f32],
    base64: bool,
}

impl Serialize for VectorOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.base64 {
            let bytes: Vec<u8> = self.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            self.values.serialize(serializer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use staunch_core::EncodingFormat;
    use staunch_core::{Embedding, ErrorKind};

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

    #[test]
    fn a_client_request_reads_every_input_shape_and_keeps_the_extras() {
        for (input, want) in [
            (r#""one""#, EmbeddingInput::from("one")),
            (r#"["a", "b"]"#, EmbeddingInput::from(["a", "b"])),
            ("[1, 2]", EmbeddingInput::Tokens(vec![vec![1, 2]])),
            (
                "[[1], [2, 3]]",
                EmbeddingInput::Tokens(vec![vec![1], vec![2, 3]]),
            ),
        ] {
            let body =
                format!(r#"{{"model": "m", "input": {input}, "user": "u", "truncate": true}}"#);
            let request = decode_embeddings_request(body.as_bytes()).unwrap();
            assert_eq!(*request.input, want, "{input}");
            assert_eq!(request.encoding_format, None);
            assert_eq!(request.dimensions, None);
            assert_eq!(request.extra.get(Dialect::OpenAi)["user"], "u");
            assert_eq!(request.extra.get(Dialect::OpenAi)["truncate"], true);
            assert!(!request.extra.get(Dialect::OpenAi).contains_key("input"));
        }
        let float = decode_embeddings_request(
            br#"{"model": "m", "input": "a", "encoding_format": "float", "dimensions": null}"#,
        )
        .unwrap();
        assert_eq!(float.encoding_format, Some(EncodingFormat::Float));
        assert!(float.extra.is_empty());
    }

    #[test]
    fn a_bad_client_request_names_what_is_wrong() {
        for (body, says) in [
            ("{", "not valid JSON"),
            ("[]", "invalid request body"),
            (r#"{"input": "a"}"#, "model"),
            (r#"{"model": "m"}"#, "input"),
            (r#"{"model": "m", "input": 7}"#, "input must be"),
            (r#"{"model": "m", "input": [1, "a"]}"#, "input must be"),
            (r#"{"model": "m", "input": []}"#, "input: at least one"),
            (r#"{"model": "", "input": "a"}"#, "model: a model name"),
            (
                r#"{"model": "m", "input": "a", "dimensions": 0}"#,
                "dimensions: must be",
            ),
            (
                r#"{"model": "m", "input": "a", "dimensions": -3}"#,
                "invalid request body",
            ),
            (
                r#"{"model": "m", "input": "a", "encoding_format": "int8"}"#,
                "encoding_format: expected",
            ),
        ] {
            let e = decode_embeddings_request(body.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn an_answer_written_as_base64_or_floats_reads_back_the_same() {
        let request = EmbeddingRequest::new("m", ["a", "b"]);
        let answer = EmbeddingResponse::new(
            "m",
            vec![
                Embedding::new(0, vec![0.25, -1.5, f32::MIN_POSITIVE]),
                Embedding::new(1, vec![3.0, 4.0, -0.0]),
            ],
        )
        .with_usage(Usage::new(7, 0));
        for format in [EncodingFormat::Float, EncodingFormat::Base64] {
            let body = encode_embeddings_response(&answer, format);
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["object"], "list");
            assert_eq!(json["data"][1]["object"], "embedding");
            assert_eq!(json["data"][1]["index"], 1);
            assert_eq!(
                json["usage"],
                serde_json::json!({"prompt_tokens": 7, "total_tokens": 7})
            );
            assert_eq!(
                json["data"][0]["embedding"].is_string(),
                format == EncodingFormat::Base64
            );
            let back = parse(&request, std::str::from_utf8(&body).unwrap()).unwrap();
            assert_eq!(back.data, answer.data, "{format}");
            assert_eq!(back.usage, answer.usage);
        }
    }
}
