//! Gemini `generateContent` wire format, both ways: the request body and
//! its checks, the answer, the error, and the ingress side (a request read
//! from a client, an answer written to it); and the `batchEmbedContents`
//! request and answer.
//!
//! ```
//! use http::HeaderMap;
//! use staunch_core::{ChatRequest, ErrorKind, Message};
//! use staunch_providers::gemini::wire;
//!
//! let request = ChatRequest::new("gemini-2.5-flash", vec![Message::system("Be brief."), Message::user("Hi")]);
//! let body: serde_json::Value = serde_json::from_slice(&wire::encode_request(&request).unwrap()).unwrap();
//! assert_eq!(body["systemInstruction"]["parts"][0]["text"], "Be brief.");
//! assert_eq!(body["contents"][0]["role"], "user");
//!
//! let answer = br#"{"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello!"}]}, "finishReason": "STOP"}],
//!                   "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2}, "modelVersion": "gemini-2.5-flash"}"#;
//! assert_eq!(wire::parse(200, &HeaderMap::new(), answer).unwrap().text(), "Hello!");
//!
//! let refused = br#"{"candidates": [{"content": {"parts": []}, "finishReason": "SAFETY"}]}"#;
//! assert_eq!(wire::parse(200, &HeaderMap::new(), refused).unwrap_err().kind, ErrorKind::ContentFiltered);
//!
//! let limited = br#"{"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED",
//!   "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "20s"}]}}"#;
//! let err = wire::parse(429, &HeaderMap::new(), limited).unwrap_err();
//! assert_eq!(err.kind, ErrorKind::RateLimited);
//! assert_eq!(err.retry_after, Some(std::time::Duration::from_secs(20)));
//! ```

pub use super::answer::parse;
pub use super::embeddings::{MAX_BATCH_INPUTS, encode_embeddings, parse_embeddings};
pub use super::error::error;
pub use super::ingress::{
    Decoded, StreamEncoder, decode_request, encode_response, encode_stream_error,
};
pub use super::request::{RequestBody, check, encode_request, request_body};
pub use crate::openai::wire::IngressError;
