//! Reading an Anthropic Messages answer: text blocks, `tool_use` blocks,
//! the stop reason and usage (cache reads included); other blocks (thinking)
//! are kept as Anthropic-only parts.

use super::error::error;
use super::request::json_tool;
use crate::json::decode;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use staunch_core::{
    ChatRequest, ChatResponse, Content, ContentPart, Dialect, ErrorKind, FinishReason, LlmError,
    ToolCall, Usage,
};

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize, Default)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub(crate) input_tokens: u64,
    #[serde(default)]
    pub(crate) output_tokens: u64,
    #[serde(default)]
    pub(crate) cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Anthropic counts cached input apart from `input_tokens`; the neutral
    /// input count includes it.
    pub(crate) fn usage(&self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let written = self.cache_creation_input_tokens.unwrap_or(0);
        Usage::new(
            self.input_tokens
                .saturating_add(read)
                .saturating_add(written),
            self.output_tokens,
        )
        .with_cached_input(read)
    }
}

/// Reads a response: a 2xx body becomes a [`ChatResponse`] (a `refusal`
/// stop reason becomes a `ContentFiltered` error), anything else an
/// [`LlmError`] classified from the error type, status and headers. Never
/// panics, whatever the bytes.
pub fn parse(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<ChatResponse, LlmError> {
    parse_answer(None, status, headers, body)
}

/// [`parse`] for the answer to `request`: when the request asked for a JSON
/// output format (sent as a forced tool), that tool's input is the answer's
/// text.
pub fn parse_for(
    request: &ChatRequest,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ChatResponse, LlmError> {
    parse_answer(
        json_tool(request).map(|(name, _)| name),
        status,
        headers,
        body,
    )
}

fn parse_answer(
    json_tool: Option<&str>,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ChatResponse, LlmError> {
    if !(200..300).contains(&status) {
        return Err(error(status, headers, body));
    }
    let message: Message = decode("Anthropic", body)?;
    let usage = message
        .usage
        .as_ref()
        .map(WireUsage::usage)
        .unwrap_or_default();
    let reason = message.stop_reason.unwrap_or_else(|| "end_turn".to_owned());
    if reason == "refusal" {
        return Err(LlmError::new(
            ErrorKind::ContentFiltered,
            "the model refused to answer (stop_reason: refusal)",
        )
        // No error body: the wire's own word for it is the stop reason.
        .with_code("refusal")
        .with_status(status)
        .with_spent(usage));
    }
    let mut finish = match reason.as_str() {
        "model_context_window_exceeded" => FinishReason::Length,
        _ => FinishReason::from(reason),
    };
    let (mut text, mut calls, mut others) = (String::new(), Vec::new(), Vec::new());
    for block in message.content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(t) = block.get("text").and_then(Value::as_str) {
                    text.push_str(t);
                }
            }
            Some("tool_use") => {
                let field = |name: &str| {
                    block
                        .get(name)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                let input = block.get("input").cloned().unwrap_or(Value::Null);
                let (id, name) = (field("id"), field("name"));
                if json_tool == Some(name.as_str()) {
                    // The forced tool of a JSON output format: its input is the answer.
                    text = input.to_string();
                    finish = FinishReason::Stop;
                    continue;
                }
                let arguments = match input {
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                calls.push(ToolCall::new(id, name, arguments));
            }
            _ => others.push(ContentPart::Opaque {
                dialect: Dialect::Anthropic,
                part: block,
            }),
        }
    }
    let content = if others.is_empty() {
        Content::Text(text)
    } else {
        let mut parts = others;
        if !text.is_empty() {
            parts.push(ContentPart::Text { text });
        }
        Content::Parts(parts)
    };
    let mut response = ChatResponse::new(message.model, String::new())
        .with_id(message.id)
        .with_usage(usage)
        .with_finish_reason(finish);
    response.message.content = content;
    response.message.tool_calls = calls;
    Ok(response)
}
