//! The ingress seam: what a gateway needs of a dialect to serve its
//! clients. A dialect reads a client's request into the neutral
//! [`ChatRequest`], writes a neutral answer back (whole or as a stream of
//! events) and words errors the way that dialect's SDKs parse them.
//!
//! A gateway is written once over [`ChatIngress`]; every dialect that
//! implements it ([`OpenAiChat`], [`OpenAiResponsesApi`],
//! [`AnthropicMessages`]) is served by every provider behind it.
//! [`GeminiContent`] serves Gemini clients too, reading the model and the
//! streaming from the URL ([`Endpoint`]).
//!
//! ```
//! use staunch_providers::ingress::{ChatIngress, Endpoint, OpenAiChat};
//!
//! let body = br#"{"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
//! let inbound = OpenAiChat.decode(body, &Endpoint::default()).unwrap();
//! assert_eq!(inbound.request.model, "gpt-4o");
//! assert!(inbound.request.stream);
//! ```

use crate::openai::wire::IngressError;
use serde_json::Value;
use staunch_core::{ChatRequest, ChatResponse, Dialect, LlmError, StreamEvent, ToolCall};

pub use crate::anthropic::ingress_seam::AnthropicMessages;
pub use crate::gemini::ingress_seam::GeminiContent;
/// Appends a string as JSON, byte for byte as serde_json writes it, with
/// the strings that need no escape (most of them) copied whole: for a
/// gateway writing JSON of its own (its log lines, say).
pub use crate::json::push_json_str;
pub use crate::openai::ingress_seam::{ChatOptions, OpenAiChat};
pub use crate::responses::ingress_seam::{OpenAiResponsesApi, ResponsesOptions};

/// What the request's URL says, for dialects that put part of the request
/// there (Gemini names the model and the streaming in its path).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Endpoint<'a> {
    /// The model named in the path, if any.
    pub model: Option<&'a str>,
    /// Whether the path asks for a stream (Gemini's `:streamGenerateContent`).
    pub stream: bool,
}

impl<'a> Endpoint<'a> {
    /// An endpoint naming `model`, streamed or not.
    pub fn new(model: Option<&'a str>, stream: bool) -> Self {
        Endpoint { model, stream }
    }
}

/// A client's request, read: the neutral request (its `stream` set as the
/// client asked) and what the answer's encoding needs to remember.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Inbound<O> {
    /// The neutral request.
    pub request: ChatRequest,
    /// The dialect's own settings for the answer (OpenAI's
    /// `stream_options.include_usage`, say).
    pub options: O,
}

impl<O> Inbound<O> {
    /// A request with its answer's settings.
    pub fn new(request: ChatRequest, options: O) -> Self {
        Inbound { request, options }
    }
}

/// Writes one streamed answer in a client's dialect, event by event.
///
/// After the commit point a failure goes out in-band and the stream ends
/// without its terminator, so that no client takes a broken stream for a
/// complete one.
pub trait StreamEncode: Send + 'static {
    /// The bytes for one event, or `None` when the dialect writes nothing
    /// for it.
    fn event(&mut self, event: &StreamEvent) -> Option<Vec<u8>>;
    /// The bytes that end a complete stream.
    fn finish(&mut self) -> Vec<u8>;
    /// The bytes that report a failure after the commit point; nothing
    /// follows them.
    fn fail(&mut self, error: &LlmError) -> Vec<u8>;
}

/// How a dialect words an error, for its clients' SDKs to parse.
pub trait ErrorShape: Send + Sync + 'static {
    /// The error body for `status`, with a machine-readable `code` and a
    /// human `message`. `provider_code` is set when the error passes a
    /// provider's own code through (a refusal, a prompt too long).
    fn error_body(&self, status: u16, code: &str, message: &str, provider_code: bool) -> Value;

    /// The status an overloaded upstream is answered with (Anthropic's
    /// clients know 529; the others 503).
    fn overloaded_status(&self) -> u16 {
        503
    }

    /// The word this dialect's clients use for an answer the model refused
    /// (`content_filter` for OpenAI, `refusal` for Anthropic, `SAFETY` for
    /// Gemini).
    fn refusal_code(&self) -> &'static str {
        "content_filter"
    }

    /// Whether a provider code spelled `code` is this dialect's generic
    /// word for a bad request and says nothing more (OpenAI's
    /// `invalid_request_error` is its error *type*).
    fn is_generic_code(&self, code: &str) -> bool {
        let _ = code;
        false
    }
}

/// The ingress side of one dialect: a client's request read into the
/// neutral model, the neutral answer written back.
pub trait ChatIngress: ErrorShape + Copy {
    /// What the answer's encoding needs to remember of the request.
    type Options: Send + Sync + 'static;

    /// The dialect.
    const DIALECT: Dialect;

    /// Reads a client's request body (and what its URL says), or says what
    /// is wrong with it. Never panics.
    fn decode(
        &self,
        body: &[u8],
        endpoint: &Endpoint<'_>,
    ) -> Result<Inbound<Self::Options>, IngressError>;

    /// A whole answer's body, or why this dialect can't express it.
    fn encode(
        &self,
        answer: &ChatResponse,
        options: &Self::Options,
    ) -> Result<Vec<u8>, IngressError>;

    /// The encoder of `answer`'s stream (its events are taken separately).
    fn stream(&self, answer: &ChatResponse, options: &Self::Options) -> Box<dyn StreamEncode>;

    /// The `Content-Type` of a streamed answer.
    fn stream_content_type(&self) -> &'static str {
        "text/event-stream"
    }
}

/// The id a streamed answer's events repeat: the answer's own, or a fresh
/// one starting with `prefix` where the provider gave none.
pub fn answer_id(answer: &ChatResponse, prefix: &str) -> String {
    if answer.id.is_empty() {
        format!("{prefix}{}", unique())
    } else {
        answer.id.clone()
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A string unique in this process.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{nanos:x}{:06x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One server-sent event: `event: NAME` (when named) and `data: JSON`.
/// A tool call's arguments as the JSON object a Messages or Gemini answer
/// carries, or why they are not one (an answer from another dialect, which
/// a client of these could not read).
pub(crate) fn object_arguments(call: &ToolCall) -> Result<Value, String> {
    match call.arguments_json() {
        Ok(arguments @ Value::Object(_)) => Ok(arguments),
        _ => Err(format!(
            "the arguments of tool call {:?} are not a JSON object",
            call.id
        )),
    }
}

pub(crate) fn sse_event(name: Option<&str>, data: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    // Serializing a JSON value can't fail.
    let _ = serde_json::to_writer(&mut out, data);
    out.extend_from_slice(b"\n\n");
    out
}
