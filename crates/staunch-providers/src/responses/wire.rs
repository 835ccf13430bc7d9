//! OpenAI Responses API wire format, both ways: the request body and its
//! checks, the answer, the error, and the ingress side (a request read
//! from a client, an answer written to it, whole or as typed events).

pub use super::answer::parse;
pub use super::error::error;
pub use super::ingress::{
    Decoded, ResponsesOptions, StreamEncoder, decode_request, encode_response,
};
pub use super::request::{RequestBody, check, encode_request, request_body};
pub use crate::openai::wire::IngressError;
