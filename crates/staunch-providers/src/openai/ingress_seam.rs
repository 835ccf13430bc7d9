//! OpenAI Chat Completions behind the ingress seam.

use crate::ingress::{ChatIngress, Endpoint, ErrorShape, Inbound, StreamEncode, answer_id};
use crate::openai::wire::{self, IngressError};
use serde_json::{Value, json};
use staunch_core::{ChatResponse, Dialect, LlmError, StreamEvent};

/// OpenAI Chat Completions clients (`POST /v1/chat/completions`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenAiChat;

/// What a Chat Completions answer remembers of its request.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct ChatOptions {
    /// The client asked for usage in the stream (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// OpenAI's error `type` for a status.
pub(crate) fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// OpenAI's error body, which every OpenAI-compatible SDK parses.
pub(crate) fn error_body(status: u16, code: &str, message: &str) -> Value {
    json!({"error": {"message": message, "type": error_type(status), "param": null, "code": code}})
}

impl ErrorShape for OpenAiChat {
    fn error_body(&self, status: u16, code: &str, message: &str, _: bool) -> Value {
        error_body(status, code, message)
    }

    fn is_generic_code(&self, code: &str) -> bool {
        code == "invalid_request_error"
    }
}

impl ChatIngress for OpenAiChat {
    type Options = ChatOptions;
    const DIALECT: Dialect = Dialect::OpenAi;

    fn decode(&self, body: &[u8], _: &Endpoint<'_>) -> Result<Inbound<ChatOptions>, IngressError> {
        let decoded = wire::decode_request(body)?;
        let options = ChatOptions {
            include_usage: decoded.include_usage,
        };
        Ok(Inbound::new(
            decoded.request.with_stream(decoded.stream),
            options,
        ))
    }

    fn encode(&self, answer: &ChatResponse, _: &ChatOptions) -> Result<Vec<u8>, IngressError> {
        Ok(wire::encode_response(answer, crate::ingress::unix_now()))
    }

    fn stream(&self, answer: &ChatResponse, options: &ChatOptions) -> Box<dyn StreamEncode> {
        Box::new(Chunks {
            id: answer_id(answer, "chatcmpl-"),
            model: answer.answered_model().to_owned(),
            created: crate::ingress::unix_now(),
            first: true,
            include_usage: options.include_usage,
        })
    }
}

/// Chat Completions chunks, ending with `data: [DONE]`.
struct Chunks {
    id: String,
    model: String,
    created: u64,
    first: bool,
    include_usage: bool,
}

impl StreamEncode for Chunks {
    fn event(&mut self, event: &StreamEvent) -> Option<Vec<u8>> {
        let chunk = wire::encode_chunk(
            event,
            &self.id,
            &self.model,
            self.created,
            self.first,
            self.include_usage,
        );
        if chunk.is_some() {
            self.first = false;
        }
        chunk
    }

    fn finish(&mut self) -> Vec<u8> {
        wire::STREAM_DONE.to_vec()
    }

    fn fail(&mut self, error: &LlmError) -> Vec<u8> {
        wire::encode_stream_error(error)
    }
}
