//! Anthropic Messages wire format, both ways: the request body and its
//! checks, the answer, the error, and the ingress side (a request read from
//! a client, an answer written to it).

pub use super::answer::{parse, parse_for};
pub use super::error::error;
pub use super::ingress::{Decoded, StreamEncoder, decode_request, encode_response};
pub use super::request::{RequestBody, check, encode_request, request_body};
pub use crate::openai::wire::IngressError;
