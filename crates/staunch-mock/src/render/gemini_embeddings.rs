//! Gemini embeddings (`POST /v1beta/models/{model}:batchEmbedContents` and
//! `:embedContent`): reading each request's `content` and
//! `outputDimensionality`, and writing the same deterministic unit vectors
//! as the OpenAI embeddings route ([`super::embeddings`]) for the same
//! model and text, with Google's error bodies.
//!
//! A body with `requests` is a batch (`{"embeddings": [{"values"}]}`), any
//! other a single `EmbedContentRequest` (`{"embedding": {"values"}}`);
//! Gemini reports no token usage for embeddings, and neither does this.

use super::embeddings::{Input, MAX_DIMENSIONS, vector};
use super::stream::Events;
use super::{Call, Dialect, ErrorParts, Failure, Options};
use crate::scenario::Fault;
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

/// Gemini's most requests in one `batchEmbedContents` call.
pub(crate) const MAX_BATCH: usize = 100;

/// `POST /v1beta/models/{model}:batchEmbedContents` and `:embedContent`
/// (also under `/v1/`): never streamed, its errors Google's.
pub(crate) struct GeminiEmbeddings;

/// The model of an embeddings path `/v1beta/models/{model}:{method}`.
fn model(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.rsplit_once(':')?;
    let ours = matches!(method, "batchEmbedContents" | "embedContent");
    (ours && !model.is_empty() && !model.contains('/')).then_some(model)
}

impl Dialect for GeminiEmbeddings {
    fn provider(&self) -> &'static str {
        "gemini"
    }

    fn serves(&self, method: &Method, path: &str) -> bool {
        method == Method::POST && model(path).is_some()
    }

    fn call<'a>(&self, path: &'a str, body: &'a Value) -> Call<'a> {
        Call {
            body,
            model: model(path).unwrap_or("mock"),
            stream: false,
        }
    }

    fn prompt_tokens(&self, body: &Value) -> u64 {
        texts(body).iter().map(|t| tokens(t)).sum()
    }

    /// An embeddings request overflows when one of its inputs does.
    fn overflow_tokens(&self, body: &Value) -> u64 {
        texts(body).iter().map(|t| tokens(t)).max().unwrap_or(0)
    }

    /// Google's errors say when to retry in a `RetryInfo` detail.
    fn sends_retry_after(&self) -> bool {
        false
    }

    fn answer<'a>(
        &self,
        call: &Call<'a>,
        _fault: &Fault,
        _n: u64,
        options: &Options,
    ) -> Result<Value, Failure<'a>> {
        answer(call.body, call.model, options)
    }

    fn events<'a>(
        &self,
        _call: &Call<'a>,
        _fault: &Fault,
        _n: u64,
        _options: &Options,
    ) -> Result<Events, Failure<'a>> {
        Err(Failure::Invalid("embeddings are not streamed".to_owned()))
    }

    fn error(&self, failure: &Failure<'_>, n: u64) -> ErrorParts {
        super::gemini::Gemini.error(failure, n)
    }

    fn error_event(&self, failure: &Failure<'_>, n: u64, seq: usize) -> Bytes {
        super::gemini::Gemini.error_event(failure, n, seq)
    }
}

/// A field by its JSON name or its proto name (both are accepted).
fn field<'v>(value: &'v Value, camel: &str, snake: &str) -> Option<&'v Value> {
    value.get(camel).or_else(|| value.get(snake))
}

/// About four bytes of text per token, rounded up.
fn tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// The single requests of `body`: its `requests`, or the body itself.
fn requests(body: &Value) -> Vec<&Value> {
    match body.get("requests") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(_) => Vec::new(),
        None => vec![body],
    }
}

/// The text of a request's `content` (its `text` parts, joined), if it
/// has any.
fn text(request: &Value) -> Option<String> {
    let parts = request.get("content")?.get("parts")?.as_array()?;
    let text: String = parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    (!text.is_empty()).then_some(text)
}

/// The texts of every request of `body` that has one.
fn texts(body: &Value) -> Vec<String> {
    requests(body).into_iter().filter_map(text).collect()
}

fn invalid(message: impl Into<String>) -> Failure<'static> {
    Failure::Invalid(message.into())
}

/// The answer to an embeddings `body` on the path's `model`: one unit
/// vector per request, in order, of its `outputDimensionality` numbers
/// (else the scenario's length); or Google's 400 `INVALID_ARGUMENT` for a
/// request it refuses: `requests` that is not a non-empty array or holds
/// more than 100 (or the scenario's `embedding_max_inputs`, if fewer), a
/// request without text, a request naming another model than the path's,
/// an `outputDimensionality` that is not a whole number from 1 to 8192.
pub(crate) fn answer<'a>(
    body: &'a Value,
    model: &'a str,
    options: &Options,
) -> Result<Value, Failure<'a>> {
    let batch = body.get("requests").is_some();
    let requests = requests(body);
    if requests.is_empty() {
        return Err(invalid(
            "* BatchEmbedContentsRequest.requests: contents is not specified",
        ));
    }
    let limit = options.embeddings.max_inputs.min(MAX_BATCH);
    if requests.len() > limit {
        return Err(invalid(format!(
            "* BatchEmbedContentsRequest.requests: at most {limit} requests can be in one batch"
        )));
    }
    let mut embeddings = Vec::with_capacity(requests.len());
    for (i, request) in requests.into_iter().enumerate() {
        let Some(text) = text(request) else {
            return Err(invalid(format!(
                "* BatchEmbedContentsRequest.requests[{i}].content: contents is not specified"
            )));
        };
        if let Some(named) = request.get("model").and_then(Value::as_str)
            && named.strip_prefix("models/").unwrap_or(named) != model
        {
            return Err(invalid(format!(
                "* BatchEmbedContentsRequest.requests[{i}].model: the model ({named}) must be the batch's (models/{model})"
            )));
        }
        let dimensions = match field(request, "outputDimensionality", "output_dimensionality") {
            None | Some(Value::Null) => u64::from(options.embeddings.dimensions),
            Some(d) => match d.as_u64() {
                Some(n @ 1..=MAX_DIMENSIONS) => n,
                _ => {
                    return Err(invalid(format!(
                        "* BatchEmbedContentsRequest.requests[{i}].output_dimensionality: \
                         {d} is not a whole number from 1 to {MAX_DIMENSIONS}"
                    )));
                }
            },
        } as usize;
        let values = vector(model, &Input::Text(&text), dimensions);
        embeddings.push(json!({"values": values}));
    }
    Ok(if batch {
        json!({"embeddings": embeddings})
    } else {
        json!({"embedding": embeddings.pop().unwrap_or_default()})
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::embeddings::Settings;

    fn options(max_inputs: usize) -> Options {
        Options {
            token_ms: 0,
            reject_prefill: false,
            embeddings: Settings {
                dimensions: 16,
                max_inputs,
            },
            context_window: None,
        }
    }

    fn one(text: &str) -> Value {
        json!({"model": "models/m", "content": {"parts": [{"text": text}]}})
    }

    #[test]
    fn paths_name_the_model() {
        assert_eq!(model("/v1beta/models/m-1:batchEmbedContents"), Some("m-1"));
        assert_eq!(model("/v1/models/m:embedContent"), Some("m"));
        assert_eq!(model("/v1beta/models/m:generateContent"), None);
        assert_eq!(model("/v1beta/models/:embedContent"), None);
    }

    #[test]
    fn a_batch_and_a_single_request_get_the_same_vectors() {
        let batch = json!({"requests": [one("a"), one("bb")]});
        let answer = answer(&batch, "m", &options(100)).unwrap_or_default();
        let single = super::answer(&one("bb"), "m", &options(100)).unwrap_or_default();
        assert_eq!(answer["embeddings"][1], single["embedding"]);
        assert_eq!(
            answer["embeddings"][0]["values"].as_array().unwrap().len(),
            16
        );
        assert_ne!(answer["embeddings"][0], answer["embeddings"][1]);
        let short = json!({"requests": [with_dimensions(one("a"), 4)]});
        let short = super::answer(&short, "m", &options(100)).unwrap_or_default();
        assert_eq!(
            short["embeddings"][0]["values"].as_array().unwrap().len(),
            4
        );
    }

    fn with_dimensions(mut request: Value, d: u64) -> Value {
        request["outputDimensionality"] = json!(d);
        request
    }

    #[test]
    fn bad_requests_are_googles_400() {
        let many = json!({"requests": vec![one("a"); 101]});
        for (body, limit) in [
            (json!({"requests": []}), 100),
            (json!({"requests": {}}), 100),
            (json!({}), 100),
            (json!({"requests": [{"content": {"parts": []}}]}), 100),
            (
                json!({"requests": [{"model": "models/other", "content": {"parts": [{"text": "a"}]}}]}),
                100,
            ),
            (json!({"requests": [with_dimensions(one("a"), 0)]}), 100),
            (json!({"requests": [with_dimensions(one("a"), 9000)]}), 100),
            (many, 2048),
            (json!({"requests": [one("a"), one("b")]}), 1),
        ] {
            assert!(
                matches!(
                    answer(&body, "m", &options(limit)),
                    Err(Failure::Invalid(_))
                ),
                "{body}"
            );
        }
    }
}
