//! The seam between the clients and the wire formats: what every dialect
//! provides (the request body with its checks, the answer, the error), and
//! the checks every dialect shares. A new provider is one folder that
//! implements [`Wire`] and a config that names its endpoint.

pub(crate) mod conversation;
pub(crate) mod vectors;

use crate::sse::{SseFrame, Step};
use http::{HeaderMap, Uri};
use staunch_core::{ChatRequest, ChatResponse, Dialect, LlmError};

/// Reads one dialect's stream events, keeping what it must between them
/// (tool-call indices, input tokens).
pub(crate) trait EventParser: Send + 'static {
    /// What one server-sent event means.
    fn parse(&mut self, frame: &SseFrame) -> Step;
}

/// One provider dialect, as the client core drives it.
pub(crate) trait Wire: Send + Sync + 'static {
    /// The dialect.
    const DIALECT: Dialect;

    /// The request body, or why this dialect cannot express the request
    /// (an `Unavailable` error naming the feature, before anything is sent).
    fn encode(&self, request: &ChatRequest) -> Result<Vec<u8>, LlmError>;

    /// Reads the answer (or the error) of `request`.
    fn parse(
        &self,
        request: &ChatRequest,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<ChatResponse, LlmError>;

    /// A reader of this dialect's stream events, for the answer to `request`.
    fn events(&self, request: &ChatRequest) -> Box<dyn EventParser>;

    /// The URL to POST `request` to, for dialects that put part of the
    /// request there (Gemini names the model and the streaming in the
    /// path): `Some` replaces the client's fixed `base`; `None` (the
    /// default) keeps it. An error refuses the request before the wire.
    fn uri(&self, base: &Uri, request: &ChatRequest) -> Result<Option<Uri>, LlmError> {
        let _ = (base, request);
        Ok(None)
    }
}
