//! Gemini embeddings (`POST {base}/{version}/models/{model}:batchEmbedContents`):
//! the request body serialized straight from a borrowed
//! [`EmbeddingRequest`], one `EmbedContentRequest` per input, and the
//! answer read into an [`EmbeddingResponse`] in input order.
//!
//! Gemini embeds text only and reports no tokens for embeddings: the usage
//! of an answer is the request's own estimate
//! ([`EmbeddingRequest::estimated_input_tokens`], about four bytes of text
//! per token), unless the answer carries a `usageMetadata` of its own.

use super::error::error;
use super::model_path;
use crate::dialect::conversation::{invalid, unsupported};
use crate::dialect::vectors::{checked, malformed};
use crate::json::decode;
use http::HeaderMap;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use staunch_core::{Dialect, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, LlmError, Usage};

/// The most inputs one `batchEmbedContents` call may carry (Gemini
/// answers a larger batch with a 400 `INVALID_ARGUMENT`). A gateway target
/// of a Gemini provider splits larger batches with `max_batch_inputs`.
pub const MAX_BATCH_INPUTS: usize = 100;

/// The body bytes for `request`: `{"requests": [{"model": "models/{model}",
/// "content": {"parts": [{"text": ...}]}, "outputDimensionality"}]}`, one
/// request per input text, each carrying the Gemini-dialect extras
/// (`taskType`, `title`, …; a key there replaces the typed field of that
/// name).
///
/// Refused before the wire: an empty batch or `dimensions: 0`
/// (`InvalidRequest`), a model name that can't go in a Gemini URL
/// (`InvalidRequest`), token-id inputs, which Gemini can't express
/// (`FeatureUnsupported`: the chain moves on to a target that can).
/// `encoding_format` is not sent: Gemini answers floats, and a gateway
/// writes base64 from them for a client that asked for it.
///
/// ```
/// use staunch_core::{Dialect, EmbeddingRequest};
/// use staunch_providers::gemini::wire::encode_embeddings;
///
/// let request = EmbeddingRequest::new("gemini-embedding-001", ["a", "b"])
///     .with_dimensions(256)
///     .with_extra(Dialect::Gemini, "taskType", "RETRIEVAL_QUERY");
/// let body: serde_json::Value = serde_json::from_slice(&encode_embeddings(&request)?)?;
/// assert_eq!(body["requests"][1], serde_json::json!({
///     "model": "models/gemini-embedding-001",
///     "content": {"parts": [{"text": "b"}]},
///     "outputDimensionality": 256,
///     "taskType": "RETRIEVAL_QUERY"
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
    let texts = match &*request.input {
        EmbeddingInput::Text(texts) => texts,
        _ => {
            return Err(unsupported(
                Dialect::Gemini,
                "embedding inputs given as token ids (Gemini embeds text only)",
            ));
        }
    };
    let model = model_path(&request.model)?;
    let extra = request.extra.get(Dialect::Gemini);
    // Per input: its text, the model, the options and the extras.
    let each = 64 + model.len() + crate::json::estimate_map(extra);
    let estimate = 16 + crate::json::estimate_strings(texts) + texts.len() * each;
    let body = Body {
        texts,
        model: &model,
        dimensions: request.dimensions,
        extra,
    };
    crate::json::encode(&body, estimate + estimate / 32)
        .map_err(|e| invalid("could not encode the embeddings request for Gemini").with_source(e))
}

/// A `batchEmbedContents` body borrowed from an [`EmbeddingRequest`].
struct Body<'a> {
    texts: &'a [String],
    model: &'a str,
    dimensions: Option<u32>,
    extra: &'a Map<String, Value>,
}

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Requests<'b>(&'b Body<'b>);
        impl Serialize for Requests<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.texts.len()))?;
                for text in self.0.texts {
                    seq.serialize_element(&One { body: self.0, text })?;
                }
                seq.end()
            }
        }
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("requests", &Requests(self))?;
        map.end()
    }
}

/// One `EmbedContentRequest` of the batch.
struct One<'a> {
    body: &'a Body<'a>,
    text: &'a str,
}

/// `{"parts": [{"text": ...}]}`.
struct Content<'a>(&'a str);

impl Serialize for Content<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Part<'a> {
            text: &'a str,
        }
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("parts", &[Part { text: self.0 }])?;
        map.end()
    }
}

impl Serialize for One<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let b = self.body;
        let typed = |key: &str| !b.extra.contains_key(key);
        let mut map = serializer.serialize_map(None)?;
        if typed("model") {
            map.serialize_entry("model", b.model)?;
        }
        if typed("content") {
            map.serialize_entry("content", &Content(self.text))?;
        }
        if let Some(d) = b.dimensions.filter(|_| typed("outputDimensionality")) {
            map.serialize_entry("outputDimensionality", &d)?;
        }
        for (k, v) in b.extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(Deserialize)]
struct Batch {
    embeddings: Vec<Values>,
    #[serde(default, rename = "usageMetadata")]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Values {
    values: Vec<f32>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default, rename = "promptTokenCount")]
    prompt: Option<u64>,
    #[serde(default, rename = "totalTokenCount")]
    total: Option<u64>,
}

/// Reads the answer to `request`: a 2xx `{"embeddings": [{"values":
/// [...]}]}` becomes an [`EmbeddingResponse`] with one vector per input,
/// in input order (Gemini answers in the order asked); anything else an
/// [`LlmError`] classified by Google's `error.status`
/// ([`staunch_core::classify_http::gemini`]: `RESOURCE_EXHAUSTED` is
/// `RateLimited` with the `RetryInfo` delay, or `QuotaExhausted` for a
/// per-day quota; `UNAVAILABLE` is `Overloaded`, …).
///
/// The usage is the request's estimate of its input tokens, since Gemini
/// reports none for embeddings (a `usageMetadata`, if an answer carries
/// one, is taken instead). An answer that cannot be trusted is a
/// `MalformedResponse` carrying that usage, never a silently wrong batch:
/// more or fewer vectors than inputs, vectors of different lengths, a
/// length other than the `dimensions` asked for, a value that is not a
/// finite `f32`. Never panics, whatever the bytes.
///
/// ```
/// use http::HeaderMap;
/// use staunch_core::EmbeddingRequest;
/// use staunch_providers::gemini::wire::parse_embeddings;
///
/// let request = EmbeddingRequest::new("gemini-embedding-001", ["12345678", "b"]);
/// let body = br#"{"embeddings": [{"values": [0.6, 0.8]}, {"values": [1.0, 0.0]}]}"#;
/// let answer = parse_embeddings(&request, 200, &HeaderMap::new(), body)?;
/// assert_eq!(answer.vector(1), Some(&[1.0f32, 0.0][..]));
/// assert_eq!(answer.usage.input_tokens, 2 + 1, "estimated: Gemini counts none");
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
    let estimate = Usage::new(request.estimated_input_tokens(), 0);
    let batch: Batch = decode("Gemini embeddings", body).map_err(|e| e.with_spent(estimate))?;
    let usage = batch
        .usage
        .and_then(|u| u.prompt.or(u.total))
        .map_or(estimate, |tokens| Usage::new(tokens, 0));
    let inputs = request.input.len();
    if batch.embeddings.len() != inputs {
        return Err(malformed(
            format!(
                "the Gemini embeddings answer has {} vectors for {inputs} inputs",
                batch.embeddings.len()
            ),
            usage,
        ));
    }
    let vectors = batch.embeddings.into_iter().map(|v| v.values);
    let data = checked(
        request,
        vectors,
        "the Gemini embeddings answer",
        "outputDimensionality",
        usage,
    )?;
    Ok(EmbeddingResponse::new(request.model.clone(), data).with_usage(usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use staunch_core::EncodingFormat;
    use staunch_core::ErrorKind;

    fn parse(request: &EmbeddingRequest, body: &str) -> Result<EmbeddingResponse, LlmError> {
        parse_embeddings(request, 200, &HeaderMap::new(), body.as_bytes())
    }

    fn encoded(request: &EmbeddingRequest) -> Value {
        serde_json::from_slice(&encode_embeddings(request).unwrap()).unwrap()
    }

    #[test]
    fn one_request_per_text_with_the_options_and_the_extras() {
        let request = EmbeddingRequest::new("models/gemini-embedding-001", ["a", "b \"c\""])
            .with_dimensions(8)
            .with_encoding_format(EncodingFormat::Base64)
            .with_extra(Dialect::Gemini, "taskType", "RETRIEVAL_DOCUMENT")
            .with_extra(Dialect::Gemini, "title", "Doc")
            .with_extra(Dialect::OpenAi, "user", "not for Gemini");
        let each = |text: &str| {
            json!({
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": text}]},
                "outputDimensionality": 8,
                "taskType": "RETRIEVAL_DOCUMENT",
                "title": "Doc"
            })
        };
        assert_eq!(
            encoded(&request),
            json!({"requests": [each("a"), each("b \"c\"")]})
        );
        let plain = EmbeddingRequest::new("text-embedding-004", "x").with_extra(
            Dialect::Gemini,
            "outputDimensionality",
            3,
        );
        assert_eq!(
            encoded(&plain),
            json!({"requests": [{
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "x"}]},
                "outputDimensionality": 3
            }]})
        );
    }

    #[test]
    fn what_gemini_cannot_take_is_refused_before_the_wire() {
        let tokens = EmbeddingRequest::new("gemini-embedding-001", vec![vec![1u32, 2]]);
        let e = encode_embeddings(&tokens).unwrap_err();
        assert_eq!(e.kind, ErrorKind::FeatureUnsupported);
        assert!(e.message.contains("token ids"), "{}", e.message);
        let empty = EmbeddingRequest::new("m", Vec::<String>::new());
        assert_eq!(
            encode_embeddings(&empty).unwrap_err().kind,
            ErrorKind::InvalidRequest
        );
        let zero = EmbeddingRequest::new("m", "a").with_dimensions(0);
        assert_eq!(
            encode_embeddings(&zero).unwrap_err().kind,
            ErrorKind::InvalidRequest
        );
        let path = EmbeddingRequest::new("../files", "a");
        let e = encode_embeddings(&path).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e.message.contains("Gemini URL"), "{}", e.message);
    }

    #[test]
    fn vectors_come_in_input_order_with_the_estimated_usage() {
        let request = EmbeddingRequest::new("gemini-embedding-001", ["12345", "1", "abc"]);
        let answer = parse(
            &request,
            r#"{"embeddings": [{"values": [0.25, -1.5]}, {"values": [1, 0]}, {"values": [3e-3, 4]}]}"#,
        )
        .unwrap();
        assert_eq!(answer.model, "gemini-embedding-001");
        assert_eq!(
            answer.vectors().collect::<Vec<_>>(),
            [&[0.25, -1.5][..], &[1.0, 0.0], &[3e-3, 4.0]]
        );
        assert!(answer.data.iter().enumerate().all(|(i, e)| e.index == i));
        assert_eq!(answer.usage, Usage::new(2 + 1 + 1, 0));
        let counted = parse(
            &request,
            r#"{"embeddings": [{"values": [1]}, {"values": [1]}, {"values": [1]}],
                "usageMetadata": {"promptTokenCount": 9}}"#,
        )
        .unwrap();
        assert_eq!(counted.usage, Usage::new(9, 0));
        let asked = EmbeddingRequest::new("m", "a").with_dimensions(2);
        assert_eq!(
            parse(&asked, r#"{"embeddings": [{"values": [1, 2]}]}"#)
                .unwrap()
                .dimensions(),
            Some(2)
        );
    }

    #[test]
    fn an_untrustworthy_batch_is_malformed_with_its_estimate() {
        let two = EmbeddingRequest::new("m", ["12345678", "1234"]);
        for (body, says) in [
            (
                r#"{"embeddings": [{"values": [1]}]}"#,
                "1 vectors for 2 inputs",
            ),
            (
                r#"{"embeddings": [{"values": [1]}, {"values": [1]}, {"values": [1]}]}"#,
                "3 vectors for 2 inputs",
            ),
            (
                r#"{"embeddings": [{"values": [1]}, {"values": [1, 2]}]}"#,
                "mixes vector lengths",
            ),
            (
                r#"{"embeddings": [{"values": [1]}, {"values": [1e39]}]}"#,
                "not a finite number",
            ),
        ] {
            let e = parse(&two, body).unwrap_err();
            assert_eq!(e.kind, ErrorKind::MalformedResponse, "{body}");
            // A float too large for an f32 is refused by the JSON reader
            // itself or by the finiteness check, depending on serde_json's
            // features in the build: a clear error either way.
            let out_of_range = says == "not a finite number" && e.message.contains("out of range");
            assert!(
                e.message.contains(says) || out_of_range,
                "{says}: {}",
                e.message
            );
            assert_eq!(e.total_spent(), Usage::new(3, 0), "{body}");
        }
        let asked = EmbeddingRequest::new("m", "a").with_dimensions(4);
        let e = parse(&asked, r#"{"embeddings": [{"values": [1, 2]}]}"#).unwrap_err();
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
                r#"{"embeddings": [{"values": [1,"#,
                ErrorKind::TruncatedResponse,
            ),
            ("<html>", ErrorKind::MalformedResponse),
            (r#"{"embeddings": {}}"#, ErrorKind::MalformedResponse),
            (
                r#"{"embeddings": [{"values": ["x"]}]}"#,
                ErrorKind::MalformedResponse,
            ),
            (
                r#"{"embeddings": [{"values": null}]}"#,
                ErrorKind::MalformedResponse,
            ),
            (r#"{"embeddings": [{}]}"#, ErrorKind::MalformedResponse),
            (
                r#"{"embedding": {"values": [1]}}"#,
                ErrorKind::MalformedResponse,
            ),
            ("[]", ErrorKind::MalformedResponse),
        ] {
            let e = parse(&one, body).unwrap_err();
            assert_eq!(e.kind, kind, "{body}: {}", e.message);
        }
    }

    #[test]
    fn errors_are_googles() {
        let one = EmbeddingRequest::new("m", "a");
        let limited = br#"{"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
            "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]}}"#;
        let e = parse_embeddings(&one, 429, &HeaderMap::new(), limited).unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(3)));
        let too_many = br#"{"error": {"code": 400, "message": "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch", "status": "INVALID_ARGUMENT"}}"#;
        let e = parse_embeddings(&one, 400, &HeaderMap::new(), too_many).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        let missing = br#"{"error": {"code": 404, "message": "models/nope is not found for API version v1beta", "status": "NOT_FOUND"}}"#;
        let e = parse_embeddings(&one, 404, &HeaderMap::new(), missing).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ModelNotFound);
    }
}
