//! The OpenAI Responses API behind the ingress seam.

use super::ingress::{StreamEncoder, decode_request, encode_response, response_id};
use crate::ingress::{ChatIngress, Endpoint, ErrorShape, Inbound, StreamEncode, answer_id};
use crate::openai::wire::IngressError;
use serde_json::Value;
use staunch_core::{ChatResponse, Dialect, LlmError, StreamEvent};

pub use super::ingress::ResponsesOptions;

/// OpenAI Responses API clients (`POST /v1/responses`): the official SDKs'
/// `client.responses.create(...)`, streamed or not, and the OpenAI Agents
/// SDK. The gateway keeps no state, so requests must carry their whole
/// conversation (`store: false`, no `previous_response_id`). Errors have
/// OpenAI's body, as the Responses API's own do.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenAiResponsesApi;

impl ErrorShape for OpenAiResponsesApi {
    fn error_body(&self, status: u16, code: &str, message: &str, _: bool) -> Value {
        crate::openai::ingress_seam::error_body(status, code, message)
    }

    fn is_generic_code(&self, code: &str) -> bool {
        code == "invalid_request_error"
    }
}

impl ChatIngress for OpenAiResponsesApi {
    type Options = ResponsesOptions;
    const DIALECT: Dialect = Dialect::OpenAiResponses;

    fn decode(
        &self,
        body: &[u8],
        _: &Endpoint<'_>,
    ) -> Result<Inbound<ResponsesOptions>, IngressError> {
        let decoded = decode_request(body)?;
        Ok(Inbound::new(decoded.request, decoded.options))
    }

    fn encode(
        &self,
        answer: &ChatResponse,
        options: &ResponsesOptions,
    ) -> Result<Vec<u8>, IngressError> {
        Ok(encode_response(answer, options, crate::ingress::unix_now()))
    }

    fn stream(&self, answer: &ChatResponse, options: &ResponsesOptions) -> Box<dyn StreamEncode> {
        Box::new(StreamEncoder::new(
            response_id(&answer_id(answer, "resp_")),
            answer.answered_model(),
            crate::ingress::unix_now(),
            options.clone(),
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
    use staunch_core::ErrorKind;

    #[test]
    fn errors_have_openais_body() {
        let body = OpenAiResponsesApi.error_body(400, "invalid_request_error", "store: no", false);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["message"], "store: no");
        assert_eq!(body["error"]["code"], "invalid_request_error");
        assert!(OpenAiResponsesApi.is_generic_code("invalid_request_error"));
        assert_eq!(OpenAiResponsesApi.overloaded_status(), 503);
        assert_eq!(OpenAiResponsesApi.refusal_code(), "content_filter");
    }

    #[test]
    fn the_seam_reads_writes_and_streams() {
        let body = br#"{"model": "gpt-4.1", "input": "hi", "stream": true, "temperature": 0.3}"#;
        let inbound = OpenAiResponsesApi
            .decode(body, &Endpoint::default())
            .expect("decodes");
        assert!(inbound.request.stream);
        assert_eq!(inbound.options.echo()["temperature"], 0.3);

        let answer = ChatResponse::new("gpt-4.1", "Hello");
        let whole: Value = serde_json::from_slice(
            &OpenAiResponsesApi
                .encode(&answer, &inbound.options)
                .expect("encodes"),
        )
        .expect("JSON");
        assert_eq!(whole["object"], "response");
        assert!(
            whole["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("resp_"))
        );

        let mut stream = OpenAiResponsesApi.stream(&answer, &inbound.options);
        let first = stream
            .event(&StreamEvent::TextDelta("Hel".into()))
            .expect("bytes");
        let text = String::from_utf8_lossy(&first);
        assert!(text.starts_with("event: response.created\n"), "{text}");
        assert!(
            stream
                .event(&StreamEvent::Usage(Default::default()))
                .is_none()
        );
        let failed = stream.fail(&LlmError::new(ErrorKind::Timeout, "stalled"));
        let text = String::from_utf8_lossy(&failed);
        assert!(text.starts_with("event: response.failed\n"), "{text}");
        assert!(stream.finish().is_empty(), "nothing follows a failure");
        assert_eq!(
            OpenAiResponsesApi.stream_content_type(),
            "text/event-stream"
        );
    }
}
