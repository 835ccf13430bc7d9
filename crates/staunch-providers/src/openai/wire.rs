//! OpenAI Chat Completions wire format, both ways: the request body and
//! its checks, the answer, the error, and the ingress side (a request read
//! from a client, an answer written to it); and the embeddings request and
//! answer, both ways too.

pub use super::answer::parse;
pub use super::embeddings::{
    decode_embeddings_request, encode_embeddings, encode_embeddings_response, parse_embeddings,
};
pub use super::error::error;
pub use super::ingress::{
    Decoded, IngressError, STREAM_DONE, decode_request, encode_chunk, encode_response,
    encode_stream_error,
};
pub use super::request::{RequestBody, check, encode_request, request_body};
