//! The provider-neutral embeddings request and response.
//!
//! An [`EmbeddingRequest`] asks a model for one vector per input of a batch
//! (strings, or token arrays); an [`EmbeddingResponse`] holds the vectors
//! in input order, the tokens billed, and the same [`ResponseMeta`] a chat
//! answer carries (who answered, attempts, tier, latency).
//!
//! ```
//! use staunch_core::{Embedding, EmbeddingRequest, EmbeddingResponse, EncodingFormat, Usage};
//!
//! let request = EmbeddingRequest::new("text-embedding-3-small", ["first passage", "second"])
//!     .with_dimensions(256)
//!     .with_encoding_format(EncodingFormat::Base64);
//! assert_eq!(request.input.len(), 2);
//!
//! let answer = EmbeddingResponse::new(
//!     "text-embedding-3-small",
//!     vec![Embedding::new(0, vec![0.6, 0.8]), Embedding::new(1, vec![1.0, 0.0])],
//! )
//! .with_usage(Usage::new(5, 0));
//! assert_eq!(answer.vector(1), Some(&[1.0, 0.0][..]));
//! assert_eq!(answer.dimensions(), Some(2));
//! ```

use crate::{Allowance, Dialect, Extensions, Extras, ResponseMeta, Usage};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use tokio::time::Instant;

/// The inputs of an embeddings request: a batch of strings or a batch of
/// token arrays (token ids of the model's tokenizer), one vector per item.
/// A single string is a batch of one.
///
/// It serializes as the OpenAI wire does (`["a", "b"]`, `[[1, 2], [3]]`) and
/// reads every shape OpenAI accepts: a string, an array of strings, an
/// array of token ids (one input), an array of token arrays.
///
/// ```
/// use staunch_core::EmbeddingInput;
///
/// let one: EmbeddingInput = "hello".into();
/// assert_eq!(one, EmbeddingInput::Text(vec!["hello".to_owned()]));
/// let tokens: EmbeddingInput = vec![vec![9906u32, 1917], vec![15339]].into();
/// assert_eq!(tokens.len(), 2);
///
/// let read: EmbeddingInput = serde_json::from_str(r#"[1, 2, 3]"#).unwrap();
/// assert_eq!(read, EmbeddingInput::Tokens(vec![vec![1, 2, 3]]));
/// assert!(serde_json::from_str::<EmbeddingInput>(r#"[1, "mixed"]"#).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum EmbeddingInput {
    /// Texts, one vector each.
    Text(Vec<String>),
    /// Token arrays, one vector each.
    Tokens(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// How many inputs (and so vectors) the batch holds.
    pub fn len(&self) -> usize {
        match self {
            EmbeddingInput::Text(texts) => texts.len(),
            EmbeddingInput::Tokens(arrays) => arrays.len(),
        }
    }

    /// True for an empty batch (which providers refuse).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The texts, for a batch of strings.
    pub fn texts(&self) -> Option<&[String]> {
        match self {
            EmbeddingInput::Text(texts) => Some(texts),
            EmbeddingInput::Tokens(_) => None,
        }
    }

    /// The token arrays, for a batch of token arrays.
    pub fn tokens(&self) -> Option<&[Vec<u32>]> {
        match self {
            EmbeddingInput::Tokens(arrays) => Some(arrays),
            EmbeddingInput::Text(_) => None,
        }
    }

    /// The estimated tokens of each input, in order: for a text, about
    /// four bytes per token (the estimate [`ChatRequest`](crate::ChatRequest)
    /// uses for message text); for a token array, its length.
    pub fn estimated_tokens(&self) -> impl Iterator<Item = u64> + '_ {
        let (texts, arrays) = match self {
            EmbeddingInput::Text(texts) => (&texts[..], &[][..]),
            EmbeddingInput::Tokens(arrays) => (&[][..], &arrays[..]),
        };
        texts
            .iter()
            .map(|t| text_tokens(t.len()))
            .chain(arrays.iter().map(|a| a.len() as u64))
    }
}

/// About four bytes of text per token, rounded up: the estimate of
/// [`ChatRequest::estimated_input_tokens`](crate::ChatRequest::estimated_input_tokens)
/// for a message's text.
fn text_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

impl<'de> Deserialize<'de> for EmbeddingInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            One(String),
            Texts(Vec<String>),
            Tokens(Vec<u32>),
            Arrays(Vec<Vec<u32>>),
        }
        let wire = Wire::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "input must be a string, an array of strings, an array of token ids \
                 or an array of token-id arrays",
            )
        })?;
        Ok(match wire {
            Wire::One(text) => EmbeddingInput::Text(vec![text]),
            Wire::Texts(texts) => EmbeddingInput::Text(texts),
            // `[]` reads as an empty batch of texts (the first shape that fits).
            Wire::Tokens(ids) => EmbeddingInput::Tokens(vec![ids]),
            Wire::Arrays(arrays) => EmbeddingInput::Tokens(arrays),
        })
    }
}

impl From<&str> for EmbeddingInput {
    fn from(text: &str) -> Self {
        EmbeddingInput::Text(vec![text.to_owned()])
    }
}

impl From<String> for EmbeddingInput {
    fn from(text: String) -> Self {
        EmbeddingInput::Text(vec![text])
    }
}

impl From<Vec<String>> for EmbeddingInput {
    fn from(texts: Vec<String>) -> Self {
        EmbeddingInput::Text(texts)
    }
}

impl From<Vec<&str>> for EmbeddingInput {
    fn from(texts: Vec<&str>) -> Self {
        EmbeddingInput::Text(texts.into_iter().map(str::to_owned).collect())
    }
}

impl From<&[&str]> for EmbeddingInput {
    fn from(texts: &[&str]) -> Self {
        EmbeddingInput::Text(texts.iter().map(|t| (*t).to_owned()).collect())
    }
}

impl<const N: usize> From<[&str; N]> for EmbeddingInput {
    fn from(texts: [&str; N]) -> Self {
        EmbeddingInput::Text(texts.iter().map(|t| (*t).to_owned()).collect())
    }
}

impl From<Vec<u32>> for EmbeddingInput {
    /// One input given as token ids.
    fn from(ids: Vec<u32>) -> Self {
        EmbeddingInput::Tokens(vec![ids])
    }
}

impl From<Vec<Vec<u32>>> for EmbeddingInput {
    fn from(arrays: Vec<Vec<u32>>) -> Self {
        EmbeddingInput::Tokens(arrays)
    }
}

/// How the provider should encode the vectors on the wire. Either way the
/// [`EmbeddingResponse`] holds `f32`s: a client decodes base64 answers
/// (little-endian `f32`s) into floats. Base64 answers are about a quarter
/// the size of JSON numbers and quicker to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EncodingFormat {
    /// JSON arrays of numbers (`"float"`).
    #[default]
    Float,
    /// Base64 of the little-endian `f32`s (`"base64"`).
    Base64,
}

impl EncodingFormat {
    /// The wire name: `float` or `base64`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            EncodingFormat::Float => "float",
            EncodingFormat::Base64 => "base64",
        }
    }
}

impl fmt::Display for EncodingFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An embeddings request, independent of any provider's wire format.
///
/// Like a [`ChatRequest`](crate::ChatRequest), it is one pointer to its
/// fields ([`EmbeddingRequestParts`], read and written through `Deref`),
/// shared between clones and copied on write, so moving it through the
/// layers and cloning it for every attempt cost the same whatever the
/// batch's size; within the fields, the input and the provider extras are
/// shared behind [`Arc`]s of their own. Per-request metadata for the layers (a
/// deadline, a degradation opt-out) travels in
/// [`extensions`](EmbeddingRequestParts::extensions), as in `http::Request`; it is not
/// serialized. The request has the same clock as a
/// [`ChatRequest`](crate::ChatRequest): [`start_clock`](Self::start_clock),
/// [`started`](Self::started).
///
/// ```
/// use staunch_core::{Dialect, EmbeddingRequest, EncodingFormat};
///
/// let request = EmbeddingRequest::new("text-embedding-3-large", vec!["a", "bb"])
///     .with_dimensions(1024)
///     .with_encoding_format(EncodingFormat::Float)
///     .with_extra(Dialect::OpenAi, "user", "user-42");
/// let attempt = request.clone();
/// assert!(std::sync::Arc::ptr_eq(&request.input, &attempt.input));
/// assert_eq!(request.dimensions, Some(1024));
/// assert_eq!(request.extra.get(Dialect::OpenAi)["user"], "user-42");
/// assert_eq!(std::mem::size_of::<EmbeddingRequest>(), 8);
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmbeddingRequest {
    parts: Arc<EmbeddingRequestParts>,
}

/// The fields of an [`EmbeddingRequest`].
#[derive(Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EmbeddingRequestParts {
    /// The model to ask. Fallback targets may rewrite it.
    pub model: String,
    /// The batch to embed, shared between clones.
    pub input: Arc<EmbeddingInput>,
    /// The vectors' size, for models that can shorten them (OpenAI's
    /// `text-embedding-3-*`); `None`: the model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// How the vectors travel on the wire; `None`: the provider's default
    /// (float), and nothing is sent, for servers that do not know the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    /// Provider options passed through to one dialect's wire body as they
    /// are (OpenAI's `user`, a server's `truncate`, …).
    #[serde(default, skip_serializing_if = "extras_are_empty")]
    pub extra: Arc<Extras>,
    /// Per-request metadata for the layers; not serialized. Clones of the
    /// request share it until one of them writes to it.
    #[serde(skip)]
    pub extensions: Extensions,
    /// When the first layer that spans attempts took the request; see
    /// [`EmbeddingRequest::start_clock`].
    #[serde(skip)]
    started: Option<Instant>,
    /// What a budget above lets the request spend; see
    /// [`EmbeddingRequest::allowance`].
    #[serde(skip)]
    allowance: Option<Allowance>,
}

fn extras_are_empty(m: &Arc<Extras>) -> bool {
    m.is_empty()
}

impl std::ops::Deref for EmbeddingRequest {
    type Target = EmbeddingRequestParts;
    #[inline]
    fn deref(&self) -> &EmbeddingRequestParts {
        &self.parts
    }
}

/// Copy-on-write: the fields are copied first if a clone shares them.
impl std::ops::DerefMut for EmbeddingRequest {
    #[inline]
    fn deref_mut(&mut self) -> &mut EmbeddingRequestParts {
        Arc::make_mut(&mut self.parts)
    }
}

impl From<EmbeddingRequestParts> for EmbeddingRequest {
    fn from(parts: EmbeddingRequestParts) -> Self {
        EmbeddingRequest {
            parts: Arc::new(parts),
        }
    }
}

impl EmbeddingRequest {
    /// A request for `model` to embed `input` (a string, strings, token
    /// arrays: anything that makes an [`EmbeddingInput`]), every option
    /// unset.
    pub fn new(model: impl Into<String>, input: impl Into<EmbeddingInput>) -> Self {
        EmbeddingRequest::from(EmbeddingRequestParts {
            model: model.into(),
            input: Arc::new(input.into()),
            dimensions: None,
            encoding_format: None,
            extra: Arc::default(),
            extensions: Extensions::new(),
            started: None,
            allowance: None,
        })
    }

    /// The request's fields, by value (copied if a clone shares them).
    pub fn into_parts(self) -> EmbeddingRequestParts {
        Arc::unwrap_or_clone(self.parts)
    }

    /// The instant the request's clock started: when the first layer that
    /// spans attempts or the client took it. Clones share it, so every
    /// attempt and every fallback target of one request measures from the
    /// same start. The clock is tokio's, so paused-time tests move it.
    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    /// Starts the request's clock if nothing has yet, and returns its start
    /// (as [`ChatRequest::start_clock`](crate::ChatRequest::start_clock)).
    ///
    /// ```
    /// use staunch_core::EmbeddingRequest;
    ///
    /// let mut request = EmbeddingRequest::new("text-embedding-3-small", "hi");
    /// assert_eq!(request.started(), None);
    /// let start = request.start_clock();
    /// let mut attempt = request.clone();
    /// assert_eq!(attempt.start_clock(), start, "a clone keeps the start");
    /// ```
    #[inline]
    pub fn start_clock(&mut self) -> Instant {
        match self.started {
            Some(started) => started,
            None => *self.started.insert(Instant::now()),
        }
    }

    /// The tokens the request may still spend, as a budget above set them
    /// ([`Allowance`]); `None` without a per-request cap. Clones share it
    /// until one of them sets its own.
    pub fn allowance(&self) -> Option<Allowance> {
        self.allowance
    }

    /// Sets the request's [`Allowance`], or clears it with `None`. The
    /// request carries it in a place of its own: nothing is allocated.
    pub fn set_allowance(&mut self, allowance: Option<Allowance>) {
        if self.allowance != allowance {
            self.allowance = allowance;
        }
    }

    /// A clone of the request that asks `model` instead: what a fallback
    /// target with a model of its own sends. It shares the input.
    ///
    /// ```
    /// use staunch_core::EmbeddingRequest;
    ///
    /// let request = EmbeddingRequest::new("text-embedding-3-small", ["a", "b"]);
    /// let other = request.clone_for_model("nomic-embed-text");
    /// assert_eq!(other.model, "nomic-embed-text");
    /// assert!(std::sync::Arc::ptr_eq(&other.input, &request.input));
    /// // Asking the same model is a plain clone: the fields stay shared.
    /// assert!(std::ptr::eq(&*request.clone_for_model("text-embedding-3-small"), &*request));
    /// ```
    pub fn clone_for_model(&self, model: &str) -> EmbeddingRequest {
        if self.model == model {
            return self.clone();
        }
        EmbeddingRequest::from(EmbeddingRequestParts {
            model: model.to_owned(),
            input: self.input.clone(),
            dimensions: self.dimensions,
            encoding_format: self.encoding_format,
            extra: self.extra.clone(),
            extensions: self.extensions.clone(),
            started: self.started,
            allowance: self.allowance,
        })
    }

    /// Sets the model.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Asks for vectors of `dimensions` numbers.
    pub fn with_dimensions(mut self, dimensions: u32) -> Self {
        self.dimensions = Some(dimensions);
        self
    }

    /// Sets how the vectors travel on the wire.
    pub fn with_encoding_format(mut self, format: EncodingFormat) -> Self {
        self.encoding_format = Some(format);
        self
    }

    /// Adds a provider option to the wire body of `dialect`'s targets only
    /// (copy-on-write if shared).
    pub fn with_extra(
        mut self,
        dialect: Dialect,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) -> Self {
        Arc::make_mut(&mut self.extra).insert(dialect, key, value);
        self
    }

    /// Inserts per-request metadata for the layers.
    pub fn with_extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// A cheap estimate of the input's size in tokens: for texts, about
    /// four bytes per token (the estimate
    /// [`ChatRequest::estimated_input_tokens`](crate::ChatRequest::estimated_input_tokens)
    /// uses for text, without a message's framing); for token arrays, their
    /// lengths. Meant for routing, budgets and quotas, not billing.
    ///
    /// ```
    /// use staunch_core::EmbeddingRequest;
    ///
    /// let texts = EmbeddingRequest::new("m", ["12345678", "1"]);
    /// assert_eq!(texts.estimated_input_tokens(), 2 + 1);
    /// let tokens = EmbeddingRequest::new("m", vec![vec![1u32, 2, 3], vec![4]]);
    /// assert_eq!(tokens.estimated_input_tokens(), 4);
    /// ```
    pub fn estimated_input_tokens(&self) -> u64 {
        self.input.estimated_tokens().sum()
    }
}

/// Keys in `extra` whose values are never printed.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["key", "token", "secret", "password", "authorization"]
        .iter()
        .any(|s| key.contains(s))
}

impl fmt::Debug for EmbeddingRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.parts, f)
    }
}

/// Printed as `EmbeddingRequest`.
impl fmt::Debug for EmbeddingRequestParts {
    /// The model, the options and the batch's shape (kind and size, not its
    /// texts: a batch may be thousands of documents); secret-looking extras
    /// print as `[redacted]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Input<'a>(&'a EmbeddingInput);
        impl fmt::Debug for Input<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    EmbeddingInput::Text(t) => write!(f, "{} texts", t.len()),
                    EmbeddingInput::Tokens(t) => write!(f, "{} token arrays", t.len()),
                }
            }
        }
        struct Extra<'a>(&'a Extras);
        impl fmt::Debug for Extra<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut map = f.debug_map();
                for (dialect, k, v) in self.0.iter() {
                    let key = format!("{dialect}.{k}");
                    if is_secret_key(k) {
                        map.entry(&key, &"[redacted]");
                    } else {
                        map.entry(&key, v);
                    }
                }
                map.finish()
            }
        }
        f.debug_struct("EmbeddingRequest")
            .field("model", &self.model)
            .field("input", &Input(&self.input))
            .field("dimensions", &self.dimensions)
            .field("encoding_format", &self.encoding_format)
            .field("extra", &Extra(&self.extra))
            .finish_non_exhaustive()
    }
}

/// One vector of an [`EmbeddingResponse`]: the position of its input in
/// the request's batch, and the numbers.
///
/// ```
/// use staunch_core::Embedding;
/// let e = Embedding::new(3, vec![0.0, 1.0]).with_input_tokens(7);
/// assert_eq!((e.index, e.vector.len(), e.input_tokens), (3, 2, Some(7)));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Embedding {
    /// The position of its input in the request's batch.
    pub index: usize,
    /// The vector, as `f32`s whatever the wire encoding was.
    pub vector: Vec<f32>,
    /// The tokens its input was billed, when the provider says per input
    /// (OpenAI does not: it reports the batch's total only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
}

impl Embedding {
    /// The vector of input `index`.
    pub fn new(index: usize, vector: Vec<f32>) -> Self {
        Embedding {
            index,
            vector,
            input_tokens: None,
        }
    }

    /// Sets the tokens its input was billed.
    pub fn with_input_tokens(mut self, tokens: u64) -> Self {
        self.input_tokens = Some(tokens);
        self
    }
}

/// The answer to an [`EmbeddingRequest`]: one [`Embedding`] per input, in
/// input order (`data[i].index == i`; clients sort a provider's answer and
/// refuse one that misses or repeats an index), the tokens billed, and how
/// the answer was produced.
///
/// ```
/// use staunch_core::{Embedding, EmbeddingResponse, QualityTier, Usage};
///
/// let mut answer = EmbeddingResponse::new("text-embedding-3-small", vec![Embedding::new(0, vec![1.0])])
///     .with_usage(Usage::new(3, 0));
/// answer.meta.answered_by("openai", "text-embedding-3-small");
/// assert_eq!(answer.meta.tier, QualityTier::Full);
/// assert_eq!(answer.total_usage(), Usage::new(3, 0));
/// assert_eq!(answer.vectors().count(), 1);
/// assert_eq!(std::mem::size_of::<EmbeddingResponse>(), 8);
/// ```
///
/// Like a [`ChatResponse`](crate::ChatResponse), it is one pointer to its
/// fields ([`EmbeddingResponseParts`], through `Deref`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmbeddingResponse {
    parts: Box<EmbeddingResponseParts>,
}

/// The fields of an [`EmbeddingResponse`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EmbeddingResponseParts {
    /// The model as the provider reported it.
    pub model: String,
    /// The vectors, in input order.
    pub data: Vec<Embedding>,
    /// Tokens billed for this answer (all input: embeddings write none).
    pub usage: Usage,
    /// How the answer was produced: the same meta a chat answer carries.
    #[serde(default)]
    pub meta: ResponseMeta,
}

impl std::ops::Deref for EmbeddingResponse {
    type Target = EmbeddingResponseParts;
    #[inline]
    fn deref(&self) -> &EmbeddingResponseParts {
        &self.parts
    }
}

impl std::ops::DerefMut for EmbeddingResponse {
    #[inline]
    fn deref_mut(&mut self) -> &mut EmbeddingResponseParts {
        &mut self.parts
    }
}

impl fmt::Debug for EmbeddingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.parts, f)
    }
}

impl From<EmbeddingResponseParts> for EmbeddingResponse {
    fn from(parts: EmbeddingResponseParts) -> Self {
        EmbeddingResponse {
            parts: Box::new(parts),
        }
    }
}

impl EmbeddingResponse {
    /// An answer from `model` with `data` (already in input order).
    pub fn new(model: impl Into<String>, data: Vec<Embedding>) -> Self {
        EmbeddingResponse::from(EmbeddingResponseParts {
            model: model.into(),
            data,
            usage: Usage::default(),
            meta: ResponseMeta::default(),
        })
    }

    /// The answer's fields, by value.
    pub fn into_parts(self) -> EmbeddingResponseParts {
        *self.parts
    }

    /// Sets the usage.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    /// Sets the metadata.
    pub fn with_meta(mut self, meta: ResponseMeta) -> Self {
        self.meta = meta;
        self
    }

    /// The vector of input `index`.
    pub fn vector(&self, index: usize) -> Option<&[f32]> {
        self.data.get(index).map(|e| &e.vector[..])
    }

    /// The vectors, in input order.
    pub fn vectors(&self) -> impl ExactSizeIterator<Item = &[f32]> {
        self.data.iter().map(|e| &e.vector[..])
    }

    /// The length of the vectors (of the first; `None` for no vector).
    pub fn dimensions(&self) -> Option<usize> {
        self.data.first().map(|e| e.vector.len())
    }

    /// Tokens billed for this answer and every failed attempt before it.
    pub fn total_usage(&self) -> Usage {
        self.usage + self.meta.failed_usage
    }

    /// The model that answered: the one its meta names (the model asked at
    /// the target that answered), else the model the provider reported.
    pub fn answered_model(&self) -> &str {
        self.meta.model.as_deref().unwrap_or(&self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_shares_input_and_extras() {
        let a = EmbeddingRequest::new("m", vec!["x".repeat(10_000); 100]).with_extra(
            Dialect::OpenAi,
            "user",
            "u",
        );
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.input, &b.input));
        assert!(Arc::ptr_eq(&a.extra, &b.extra));
        let c = a.clone_for_model("n");
        assert!(Arc::ptr_eq(&a.input, &c.input));
        assert_eq!(c.model, "n");
    }

    #[test]
    fn clone_for_model_keeps_options_extensions_and_clock() {
        let mut a = EmbeddingRequest::new("m", "x")
            .with_dimensions(64)
            .with_encoding_format(EncodingFormat::Base64)
            .with_extension(7u8);
        let start = a.start_clock();
        let b = a.clone_for_model("n");
        assert_eq!(b.dimensions, Some(64));
        assert_eq!(b.encoding_format, Some(EncodingFormat::Base64));
        assert_eq!(b.extensions.get::<u8>(), Some(&7));
        assert_eq!(b.started(), Some(start));
    }

    #[test]
    fn every_openai_input_shape_reads() {
        let read = |s: &str| serde_json::from_str::<EmbeddingInput>(s);
        assert_eq!(read(r#""a""#).unwrap(), EmbeddingInput::from("a"));
        assert_eq!(
            read(r#"["a","b"]"#).unwrap(),
            EmbeddingInput::from(["a", "b"])
        );
        assert_eq!(
            read("[1,2]").unwrap(),
            EmbeddingInput::Tokens(vec![vec![1, 2]])
        );
        assert_eq!(
            read("[[1],[2,3]]").unwrap(),
            EmbeddingInput::Tokens(vec![vec![1], vec![2, 3]])
        );
        assert!(read("[]").unwrap().is_empty());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            "1",
            "null",
            "{}",
            r#"[1, "a"]"#,
            "[-1]",
            "[[1], 2]",
            "[4294967296]",
            r#"[["a"]]"#,
            "[1.5]",
        ] {
            let err = serde_json::from_str::<EmbeddingInput>(bad).unwrap_err();
            assert!(err.to_string().contains("input must be"), "{bad}: {err}");
        }
        assert!(serde_json::from_str::<EmbeddingRequest>(r#"{"input": "a"}"#).is_err());
        assert!(
            serde_json::from_str::<EmbeddingRequest>(
                r#"{"model": "m", "input": "a", "encoding_format": "int8"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn serde_round_trip_skips_unset_fields() {
        let req = EmbeddingRequest::new("m", ["a", "b"]).with_dimensions(8);
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"model": "m", "input": ["a", "b"], "dimensions": 8})
        );
        let back: EmbeddingRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back.input, req.input);
        assert_eq!(back.dimensions, Some(8));
        assert_eq!(back.encoding_format, None);

        let tokens = EmbeddingRequest::new("m", vec![vec![1u32, 2]])
            .with_encoding_format(EncodingFormat::Base64);
        assert_eq!(
            serde_json::to_value(&tokens).unwrap(),
            serde_json::json!({"model": "m", "input": [[1, 2]], "encoding_format": "base64"})
        );
    }

    #[test]
    fn token_estimate_matches_the_chat_estimator_for_text() {
        let text = "word ".repeat(1000);
        let chat = crate::ChatRequest::new("m", vec![crate::Message::user(text.clone())]);
        let embed = EmbeddingRequest::new("m", text);
        // The chat estimate adds four tokens of framing per message.
        assert_eq!(
            embed.estimated_input_tokens() + 4,
            chat.estimated_input_tokens()
        );
        let tokens = EmbeddingRequest::new("m", vec![vec![0u32; 10], vec![0; 5]]);
        assert_eq!(tokens.estimated_input_tokens(), 15);
        assert_eq!(tokens.input.estimated_tokens().collect::<Vec<_>>(), [10, 5]);
    }

    #[test]
    fn debug_hides_texts_and_secret_extras() {
        let req = EmbeddingRequest::new("m", ["private document"])
            .with_extra(Dialect::OpenAi, "api_key", "sk-live")
            .with_extra(Dialect::OpenAi, "user", "u-1");
        let shown = format!("{req:?}");
        assert!(!shown.contains("sk-live"), "{shown}");
        assert!(!shown.contains("private document"), "{shown}");
        assert!(
            shown.contains("1 texts") && shown.contains("[redacted]") && shown.contains("u-1"),
            "{shown}"
        );
    }

    #[test]
    fn response_round_trips_and_reports_usage() {
        let mut r = EmbeddingResponse::new(
            "m",
            vec![
                Embedding::new(0, vec![0.5, -0.5]),
                Embedding::new(1, vec![1.0, 0.0]).with_input_tokens(2),
            ],
        )
        .with_usage(Usage::new(4, 0));
        r.meta.absorb_failed_attempts(1, Usage::new(4, 0));
        let back: EmbeddingResponse =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.total_usage(), Usage::new(8, 0));
        assert_eq!(back.dimensions(), Some(2));
        assert_eq!(back.vector(2), None);
        assert_eq!(back.answered_model(), "m");
        r.meta.answered_by("openai", "text-embedding-3-small");
        assert_eq!(r.answered_model(), "text-embedding-3-small");
    }
}
