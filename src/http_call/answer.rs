//! [`HttpAnswer`]: an HTTP response as a staunch [`Answer`].

use bytes::Bytes;
use http::Response;
use http::response::Parts;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use staunch_core::{Answer, BoxError, ResponseMeta, Usage};
use std::fmt;

/// The body of an [`HttpAnswer`] once it leaves the stack: a boxed
/// `http_body::Body` of `Bytes` (the buffered JSON, or the live stream).
pub type HttpAnswerBody = UnsyncBoxBody<Bytes, BoxError>;

enum Body {
    Buffered(Bytes),
    Streaming(HttpAnswerBody),
}

/// A provider's 2xx answer, as the staunch layers see it: the
/// `http::Response`, with [`ResponseMeta`] (who answered, attempts,
/// latency, the rate-limit headers) and the tokens billed.
///
/// A JSON answer is buffered by the classifier (bounded): its `usage` is
/// read (OpenAI's `prompt_tokens`/`completion_tokens`, Anthropic's
/// `input_tokens`/`output_tokens`, Gemini's `usageMetadata`) and
/// [`bytes`](Self::bytes) returns it. A streamed answer (`text/event-stream`)
/// commits at its headers: the layers above see it as soon as they arrive,
/// its body is passed on unread, and its usage is unknown (zero).
pub struct HttpAnswer {
    parts: Parts,
    body: Body,
    usage: Usage,
    model: String,
    meta: Box<ResponseMeta>,
}

/// The usage fields of the three dialects, read from a buffered answer.
#[derive(Deserialize, Default)]
struct Tokens {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default, rename = "promptTokenCount")]
    prompt_token_count: Option<u64>,
    #[serde(default, rename = "candidatesTokenCount")]
    candidates_token_count: Option<u64>,
}

#[derive(Deserialize, Default)]
struct Peek {
    #[serde(default)]
    usage: Option<Tokens>,
    #[serde(default, rename = "usageMetadata")]
    usage_metadata: Option<Tokens>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default, rename = "modelVersion")]
    model_version: Option<String>,
}

impl HttpAnswer {
    /// A buffered answer: its usage and model are read from the JSON body
    /// when it is one.
    pub fn buffered(parts: Parts, body: Bytes) -> HttpAnswer {
        let peek: Peek = serde_json::from_slice(&body).unwrap_or_default();
        let usage = peek
            .usage
            .or(peek.usage_metadata)
            .map(|t| {
                Usage::new(
                    t.prompt_tokens
                        .or(t.input_tokens)
                        .or(t.prompt_token_count)
                        .unwrap_or(0),
                    t.completion_tokens
                        .or(t.output_tokens)
                        .or(t.candidates_token_count)
                        .unwrap_or(0),
                )
            })
            .unwrap_or_default();
        HttpAnswer {
            parts,
            body: Body::Buffered(body),
            usage,
            model: peek.model.or(peek.model_version).unwrap_or_default(),
            meta: Box::default(),
        }
    }

    /// A streamed answer, committed at its headers: usage unknown.
    pub fn streaming(parts: Parts, body: HttpAnswerBody) -> HttpAnswer {
        HttpAnswer {
            parts,
            body: Body::Streaming(body),
            usage: Usage::default(),
            model: String::new(),
            meta: Box::default(),
        }
    }

    /// The status.
    pub fn status(&self) -> http::StatusCode {
        self.parts.status
    }

    /// The headers.
    pub fn headers(&self) -> &http::HeaderMap {
        &self.parts.headers
    }

    /// The buffered body; `None` for a stream.
    pub fn bytes(&self) -> Option<&Bytes> {
        match &self.body {
            Body::Buffered(bytes) => Some(bytes),
            Body::Streaming(_) => None,
        }
    }

    /// The response, to hand on (to an axum handler, say), with its body
    /// boxed; the meta and usage stay readable until then.
    pub fn into_response(self) -> Response<HttpAnswerBody> {
        let body = match self.body {
            Body::Buffered(bytes) => Full::new(bytes).map_err(|e| match e {}).boxed_unsync(),
            Body::Streaming(body) => body,
        };
        Response::from_parts(self.parts, body)
    }
}

impl fmt::Debug for HttpAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAnswer")
            .field("status", &self.parts.status)
            .field("streaming", &self.is_streaming())
            .field("usage", &self.usage)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Answer for HttpAnswer {
    #[inline]
    fn meta(&self) -> &ResponseMeta {
        &self.meta
    }

    #[inline]
    fn meta_mut(&mut self) -> &mut ResponseMeta {
        &mut self.meta
    }

    #[inline]
    fn usage(&self) -> Usage {
        self.usage
    }

    #[inline]
    fn set_usage(&mut self, usage: Usage) {
        self.usage = usage;
    }

    #[inline]
    fn is_streaming(&self) -> bool {
        matches!(self.body, Body::Streaming(_))
    }

    fn answered_model(&self) -> &str {
        match self.meta.model.as_deref() {
            Some(model) => model,
            None => &self.model,
        }
    }
}
