//! Gemini `generateContent` behind the ingress seam.

use super::ingress::{self, StreamEncoder};
use crate::ingress::{ChatIngress, Endpoint, ErrorShape, Inbound, StreamEncode, answer_id};
use crate::openai::wire::IngressError;
use serde_json::Value;
use staunch_core::{ChatResponse, Dialect, LlmError, StreamEvent};

/// Gemini clients (`POST /v1beta/models/{model}:generateContent` and
/// `:streamGenerateContent?alt=sse`): the model and the streaming come
/// from the URL, as an [`Endpoint`].
#[derive(Clone, Copy, Debug, Default)]
pub struct GeminiContent;

impl ErrorShape for GeminiContent {
    /// Gemini's body: `code` is the HTTP status, `status` its name
    /// (`INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`, …), and the
    /// machine-readable code the reason of a `google.rpc.ErrorInfo` detail.
    fn error_body(&self, status: u16, code: &str, message: &str, _: bool) -> Value {
        ingress::error_body(status, code, message)
    }

    fn refusal_code(&self) -> &'static str {
        "SAFETY"
    }

    fn is_generic_code(&self, code: &str) -> bool {
        code == "INVALID_ARGUMENT"
    }
}

impl ChatIngress for GeminiContent {
    type Options = ();
    const DIALECT: Dialect = Dialect::Gemini;

    fn decode(&self, body: &[u8], endpoint: &Endpoint<'_>) -> Result<Inbound<()>, IngressError> {
        let decoded = ingress::decode_request(body, endpoint)?;
        Ok(Inbound::new(
            decoded.request.with_stream(decoded.stream),
            (),
        ))
    }

    fn encode(&self, answer: &ChatResponse, _: &()) -> Result<Vec<u8>, IngressError> {
        ingress::encode_response(answer)
    }

    fn stream(&self, answer: &ChatResponse, _: &()) -> Box<dyn StreamEncode> {
        Box::new(StreamEncoder::new(
            answer_id(answer, "staunch-"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use staunch_core::{FinishReason, Usage};

    #[test]
    fn the_seam_reads_the_url_and_words_errors_as_gemini() {
        let body = br#"{"contents": [{"parts": [{"text": "hi"}]}]}"#;
        let inbound = GeminiContent
            .decode(body, &Endpoint::new(Some("gemini-2.5-flash"), true))
            .unwrap();
        assert_eq!(inbound.request.model, "gemini-2.5-flash");
        assert!(inbound.request.stream);
        let e = GeminiContent
            .decode(body, &Endpoint::default())
            .unwrap_err();
        assert_eq!(e.field(), Some("model"));
        assert_eq!(
            GeminiContent.error_body(429, "rate_limited", "slow down", false),
            json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": "rate_limited", "domain": "staunch"}]}})
        );
        for (status, name) in [
            (400, "INVALID_ARGUMENT"),
            (401, "UNAUTHENTICATED"),
            (403, "PERMISSION_DENIED"),
            (404, "NOT_FOUND"),
            (413, "INVALID_ARGUMENT"),
            (500, "INTERNAL"),
            (502, "INTERNAL"),
            (503, "UNAVAILABLE"),
            (504, "DEADLINE_EXCEEDED"),
        ] {
            assert_eq!(
                GeminiContent.error_body(status, "c", "m", true)["error"]["status"],
                name
            );
        }
        assert_eq!(GeminiContent.refusal_code(), "SAFETY");
        assert_eq!(GeminiContent.overloaded_status(), 503);
        assert_eq!(GeminiContent.stream_content_type(), "text/event-stream");
    }

    #[test]
    fn the_seam_streams_and_encodes() {
        let answer = ChatResponse::new("gemini-2.5-flash", "").with_id("r7");
        let mut s = GeminiContent.stream(&answer, &());
        let text = s.event(&StreamEvent::TextDelta("hi".into())).unwrap();
        assert!(text.starts_with(b"data: {"));
        assert!(text.ends_with(b"\n\n"));
        assert!(s.event(&StreamEvent::Usage(Usage::new(1, 1))).is_none());
        assert!(s.event(&StreamEvent::Finish(FinishReason::Stop)).is_none());
        let end = String::from_utf8(s.finish()).unwrap();
        assert!(end.contains(r#""finishReason":"STOP""#), "{end}");
        assert!(end.contains(r#""responseId":"r7""#), "{end}");
        let whole = GeminiContent
            .encode(&ChatResponse::new("m", "x"), &())
            .unwrap();
        let whole: Value = serde_json::from_slice(&whole).unwrap();
        assert_eq!(whole["candidates"][0]["content"]["parts"][0]["text"], "x");
    }
}
