//! Reading an OpenAI Chat Completions answer: text, tool calls, refusal,
//! finish reason and usage (cached and reasoning tokens included).

use super::error::error;
use crate::json::decode;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use staunch_core::{ChatResponse, ErrorKind, FinishReason, LlmError, ToolCall, Usage};

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireCall>>,
}

#[derive(Deserialize)]
pub(crate) struct WireCall {
    #[serde(default)]
    pub(crate) id: String,
    pub(crate) function: WireFunction,
}

#[derive(Deserialize)]
pub(crate) struct WireFunction {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) arguments: Option<Value>,
}

impl WireCall {
    /// The neutral call: arguments kept as the JSON text the model wrote (a
    /// server that sends an object instead of a string gets it written out).
    pub(crate) fn into_call(self) -> ToolCall {
        let arguments = match self.function.arguments {
            Some(Value::String(text)) => text,
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        ToolCall::new(self.id, self.function.name, arguments)
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub(crate) prompt_tokens: u64,
    #[serde(default)]
    pub(crate) completion_tokens: u64,
    #[serde(default)]
    pub(crate) prompt_tokens_details: Option<Details>,
    #[serde(default)]
    pub(crate) completion_tokens_details: Option<Details>,
}

#[derive(Deserialize, Default)]
pub(crate) struct Details {
    #[serde(default)]
    pub(crate) cached_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) reasoning_tokens: Option<u64>,
}

impl WireUsage {
    pub(crate) fn usage(&self) -> Usage {
        let cached = self
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0);
        let reasoning = self
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0);
        Usage::new(self.prompt_tokens, self.completion_tokens)
            .with_cached_input(cached)
            .with_reasoning(reasoning)
    }
}

/// The text of a message's `content`: a string, or the text parts of an
/// array (some compatible servers answer with parts).
fn content_text(content: Option<Value>) -> String {
    match content {
        Some(Value::String(text)) => text,
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Reads a response: a 2xx body becomes a [`ChatResponse`] (or a
/// `ContentFiltered` error when the provider filtered the answer), anything
/// else an [`LlmError`] classified from status, body and headers. Never
/// panics, whatever the bytes.
pub fn parse(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<ChatResponse, LlmError> {
    if !(200..300).contains(&status) {
        return Err(error(status, headers, body));
    }
    let completion: Completion = decode("OpenAI", body)?;
    let usage = completion
        .usage
        .as_ref()
        .map(WireUsage::usage)
        .unwrap_or_default();
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err(LlmError::new(
            ErrorKind::MalformedResponse,
            "the OpenAI response has no choices",
        )
        .with_spent(usage));
    };
    let calls: Vec<ToolCall> = choice
        .message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(WireCall::into_call)
        .collect();
    let finish = match choice.finish_reason.map(FinishReason::from) {
        Some(reason) => reason,
        None if !calls.is_empty() => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    };
    if finish == FinishReason::ContentFilter {
        return Err(LlmError::new(
            ErrorKind::ContentFiltered,
            "the answer was stopped by the content filter (finish_reason: content_filter)",
        )
        // No error body: the wire's own word for it is the finish reason.
        .with_code("content_filter")
        .with_status(status)
        .with_spent(usage));
    }
    let refusal = choice.message.refusal;
    let mut text = content_text(choice.message.content);
    if text.is_empty()
        && let Some(r) = &refusal
    {
        // The refusal is the model's answer to show.
        text.clone_from(r);
    }
    let mut response = ChatResponse::new(completion.model, text)
        .with_id(completion.id)
        .with_usage(usage)
        .with_finish_reason(finish);
    response.message.tool_calls = calls;
    response.refusal = refusal;
    Ok(response)
}
