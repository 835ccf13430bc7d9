//! Anthropic Messages behind the ingress seam.

use crate::anthropic::wire::{self, StreamEncoder};
use crate::ingress::{ChatIngress, Endpoint, ErrorShape, Inbound, StreamEncode, answer_id};
use crate::openai::wire::IngressError;
use serde_json::{Value, json};
use staunch_core::{ChatResponse, Dialect, LlmError, StreamEvent};

/// Anthropic Messages clients (`POST /v1/messages`).
#[derive(Clone, Copy, Debug, Default)]
pub struct AnthropicMessages;

/// Anthropic's error `type` for a status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

impl ErrorShape for AnthropicMessages {
    /// Anthropic's body has no code of its own: a provider's code goes in
    /// `details.error_code`, where Anthropic puts its finer codes.
    fn error_body(&self, status: u16, code: &str, message: &str, provider_code: bool) -> Value {
        let mut error = json!({"type": error_type(status), "message": message});
        if provider_code {
            error["details"] = json!({"error_code": code});
        }
        json!({"type": "error", "error": error})
    }

    fn overloaded_status(&self) -> u16 {
        529
    }

    fn refusal_code(&self) -> &'static str {
        "refusal"
    }
}

impl ChatIngress for AnthropicMessages {
    type Options = ();
    const DIALECT: Dialect = Dialect::Anthropic;

    fn decode(&self, body: &[u8], _: &Endpoint<'_>) -> Result<Inbound<()>, IngressError> {
        let decoded = wire::decode_request(body)?;
        Ok(Inbound::new(
            decoded.request.with_stream(decoded.stream),
            (),
        ))
    }

    fn encode(&self, answer: &ChatResponse, _: &()) -> Result<Vec<u8>, IngressError> {
        wire::encode_response(answer)
    }

    fn stream(&self, answer: &ChatResponse, _: &()) -> Box<dyn StreamEncode> {
        Box::new(StreamEncoder::new(
            answer_id(answer, "msg_"),
            answer.answered_model(),
        ))
    }
}

impl StreamEncode for StreamEncoder {
    fn event(&mut self, event: &StreamEvent) -> Option<Vec<u8>> {
        let bytes = self.encode(event);
        (!bytes.is_empty()).then_some(bytes)
    }

    fn finish(&mut self) -> Vec<u8> {
        StreamEncoder::finish(self)
    }

    fn fail(&mut self, error: &LlmError) -> Vec<u8> {
        self.error(error)
    }
}
