//! OpenAI embeddings (`POST /v1/embeddings`): reading a request's `input`,
//! `dimensions` and `encoding_format`, and writing deterministic vectors.
//!
//! Each vector is drawn from a generator seeded by a hash of the model and
//! the input, then scaled to unit length: the same input and model always
//! get the same vector, different inputs (almost surely) different ones.
//! The numbers come in the same order whatever `dimensions` says, so a
//! shortened vector is the start of the full one, scaled to unit length
//! again, as OpenAI's `text-embedding-3` vectors are.

use super::stream::Events;
use super::{Call, Dialect, ErrorParts, Failure, Options};
use crate::scenario::Fault;
use base64::Engine as _;
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

/// `POST /v1/embeddings`: OpenAI's, never streamed (`stream` is ignored),
/// its errors OpenAI's.
pub(crate) struct Embeddings;

impl Dialect for Embeddings {
    fn provider(&self) -> &'static str {
        "openai"
    }

    fn serves(&self, method: &Method, path: &str) -> bool {
        method == Method::POST && path == "/v1/embeddings"
    }

    fn call<'a>(&self, _path: &'a str, body: &'a Value) -> Call<'a> {
        Call {
            stream: false,
            ..Call::from_body(body)
        }
    }

    fn prompt_tokens(&self, body: &Value) -> u64 {
        input_tokens(body).iter().sum()
    }

    /// An embeddings request overflows when one of its inputs does.
    fn overflow_tokens(&self, body: &Value) -> u64 {
        input_tokens(body).into_iter().max().unwrap_or(0)
    }

    fn answer<'a>(
        &self,
        call: &Call<'a>,
        _fault: &Fault,
        _n: u64,
        options: &Options,
    ) -> Result<Value, Failure<'a>> {
        answer(call.body, call.model, &options.embeddings)
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

    fn error(&self, failure: &Failure<'_>, _n: u64) -> ErrorParts {
        super::openai::error(failure)
    }

    fn error_event(&self, failure: &Failure<'_>, n: u64, seq: usize) -> Bytes {
        super::openai::Chat.error_event(failure, n, seq)
    }
}

/// The settings of the embeddings route.
pub(crate) struct Settings {
    /// The vectors' length when the request sets no `dimensions`.
    pub(crate) dimensions: u32,
    /// The most inputs one request may carry.
    pub(crate) max_inputs: usize,
}

/// The largest `dimensions` the mock answers (OpenAI's largest model has
/// 3072); more is the provider's 400.
pub(crate) const MAX_DIMENSIONS: u64 = 8192;

/// One input: a text or token ids.
pub(crate) enum Input<'a> {
    Text(&'a str),
    Tokens(Vec<u32>),
}

impl Input<'_> {
    /// Its estimated tokens: four bytes of text per token (rounded up), or
    /// the number of ids.
    fn tokens(&self) -> u64 {
        match self {
            Input::Text(t) => (t.len() as u64).div_ceil(4),
            Input::Tokens(ids) => ids.len() as u64,
        }
    }
}

/// OpenAI's answer to an `input` it can't read.
fn invalid_input() -> Failure<'static> {
    Failure::Invalid(
        "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
            .to_owned(),
    )
}

/// Token ids: an array of non-negative integers that fit in 32 bits.
fn token_ids(items: &[Value]) -> Option<Vec<u32>> {
    items
        .iter()
        .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect()
}

/// The inputs of `body`: a string, an array of strings, an array of token
/// ids (one input) or an array of token arrays; never empty.
fn inputs(body: &Value) -> Result<Vec<Input<'_>>, Failure<'static>> {
    let inputs = match body.get("input") {
        Some(Value::String(text)) => vec![Input::Text(text)],
        Some(Value::Array(items)) if items.is_empty() => return Err(invalid_input()),
        Some(Value::Array(items)) => match &items[0] {
            Value::String(_) => items
                .iter()
                .map(|v| v.as_str().map(Input::Text))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(invalid_input)?,
            Value::Number(_) => vec![Input::Tokens(token_ids(items).ok_or_else(invalid_input)?)],
            Value::Array(_) => items
                .iter()
                .map(|v| v.as_array().and_then(|a| token_ids(a)).map(Input::Tokens))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(invalid_input)?,
            _ => return Err(invalid_input()),
        },
        _ => return Err(invalid_input()),
    };
    Ok(inputs)
}

/// The estimated tokens of each input of an embeddings `body` (empty if
/// its `input` can't be read): what the context windows are checked
/// against, input by input.
pub(crate) fn input_tokens(body: &Value) -> Vec<u64> {
    inputs(body)
        .map(|inputs| inputs.iter().map(Input::tokens).collect())
        .unwrap_or_default()
}

/// FNV-1a, 64 bits.
fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The next number of a SplitMix64 generator at `state`.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The unit vector of `dimensions` numbers for `input` under `model`.
pub(crate) fn vector(model: &str, input: &Input<'_>, dimensions: usize) -> Vec<f32> {
    let mut seed = fnv(0xcbf2_9ce4_8422_2325, model.as_bytes());
    seed = match input {
        Input::Text(text) => fnv(fnv(seed, b"\0text\0"), text.as_bytes()),
        Input::Tokens(ids) => ids
            .iter()
            .fold(fnv(seed, b"\0tokens\0"), |h, id| fnv(h, &id.to_le_bytes())),
    };
    let mut values: Vec<f64> = (0..dimensions)
        .map(|_| (splitmix(&mut seed) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect();
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 0.0 {
        values.iter_mut().for_each(|v| *v /= norm);
    }
    values.into_iter().map(|v| v as f32).collect()
}

/// The answer to an embeddings `body` (the model's name from `model`):
/// `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
/// "model", "usage": {"prompt_tokens", "total_tokens"}}`, one vector per
/// input in input order, as JSON numbers or (with `encoding_format:
/// "base64"`) base64 of the little-endian `f32`s; or the provider's 400 for
/// a request it refuses: an unreadable or empty `input`, more inputs than
/// `settings.max_inputs`, `dimensions` that is not a whole number from 1 to
/// 8192, an `encoding_format` other than `float` or `base64`.
pub(crate) fn answer<'a>(
    body: &'a Value,
    model: &'a str,
    settings: &Settings,
) -> Result<Value, Failure<'a>> {
    let inputs = inputs(body)?;
    if inputs.len() > settings.max_inputs {
        return Err(Failure::Invalid(format!(
            "Too many inputs. The max number of inputs is {}. We recommend splitting your request into smaller chunks.",
            settings.max_inputs
        )));
    }
    let dimensions = match body.get("dimensions") {
        None | Some(Value::Null) => u64::from(settings.dimensions),
        Some(d) => match d.as_u64() {
            Some(n @ 1..=MAX_DIMENSIONS) => n,
            _ => {
                return Err(Failure::Invalid(format!(
                    "Invalid value for 'dimensions': {d}. It must be an integer from 1 to {MAX_DIMENSIONS}."
                )));
            }
        },
    } as usize;
    let base64 = match body.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(other) => {
            return Err(Failure::Invalid(format!(
                "Invalid value for 'encoding_format': {other}. Supported values are: 'float' and 'base64'."
            )));
        }
    };
    let prompt: u64 = inputs.iter().map(Input::tokens).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let numbers = vector(model, input, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = numbers.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(numbers)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: Settings = Settings {
        dimensions: 16,
        max_inputs: 4,
    };

    #[test]
    fn vectors_are_unit_length_deterministic_and_shorten_by_prefix() {
        let a = vector("m", &Input::Text("hello"), 16);
        assert_eq!(a, vector("m", &Input::Text("hello"), 16));
        assert_ne!(a, vector("m", &Input::Text("hello!"), 16));
        assert_ne!(a, vector("n", &Input::Text("hello"), 16));
        assert_ne!(a, vector("m", &Input::Tokens(vec![1]), 16));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        let short = vector("m", &Input::Text("hello"), 4);
        let ratio = a[0] / short[0];
        assert!(
            a[..4]
                .iter()
                .zip(&short)
                .all(|(x, y)| (x / y - ratio).abs() < 1e-4)
        );
    }

    #[test]
    fn bad_requests_are_the_providers_400() {
        for body in [
            json!({"model": "m"}),
            json!({"model": "m", "input": []}),
            json!({"model": "m", "input": 7}),
            json!({"model": "m", "input": ["a", 1]}),
            json!({"model": "m", "input": [1, -2]}),
            json!({"model": "m", "input": [[1], "a"]}),
            json!({"model": "m", "input": [4294967296u64]}),
            json!({"model": "m", "input": [{}]}),
            json!({"model": "m", "input": ["a", "b", "c", "d", "e"]}),
            json!({"model": "m", "input": "a", "dimensions": 0}),
            json!({"model": "m", "input": "a", "dimensions": "8"}),
            json!({"model": "m", "input": "a", "dimensions": 100_000}),
            json!({"model": "m", "input": "a", "encoding_format": "int8"}),
        ] {
            assert!(
                matches!(answer(&body, "m", &SETTINGS), Err(Failure::Invalid(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn usage_counts_text_and_tokens() {
        let body = json!({"input": ["12345", "1"]});
        let a = answer(&body, "m", &SETTINGS).unwrap_or_default();
        assert_eq!(a["usage"]["prompt_tokens"], 3);
        assert_eq!(input_tokens(&json!({"input": [[1, 2, 3]]})), [3]);
        assert!(input_tokens(&json!({"input": 5})).is_empty());
    }
}
