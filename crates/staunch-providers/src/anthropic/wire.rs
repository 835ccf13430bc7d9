//! Anthropic Messages wire format, both ways.

use crate::json::{decode, lower, snippet};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use staunch_core::{ChatRequest, ChatResponse, ErrorKind, FinishReason, LlmError, Role, Usage};

/// The request body for `request`. System messages become the top-level
/// `system` field; tool results are sent as user turns; `max_tokens`, which
/// the API requires, defaults to `default_max_tokens`.
pub fn request_body(request: &ChatRequest, default_max_tokens: u32) -> Value {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let messages: Vec<Value> = request
        .messages
        .iter()
        .filter(|m| m.role != Role::System)
        .map(|m| {
            let role = if m.role == Role::Assistant {
                "assistant"
            } else {
                "user"
            };
            json!({"role": role, "content": m.content})
        })
        .collect();
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert(
        "max_tokens".into(),
        json!(request.max_tokens.unwrap_or(default_max_tokens)),
    );
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert("messages".into(), Value::Array(messages));
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = request.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if !request.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(request.stop));
    }
    for (k, v) in request.extra.iter() {
        body.insert(k.clone(), v.clone());
    }
    Value::Object(body)
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

/// Reads a response: a 2xx body becomes a [`ChatResponse`] (a `refusal`
/// stop reason becomes a `ContentFiltered` error), anything else an
/// [`LlmError`] classified from the error type, status and headers. Never
/// panics, whatever the bytes.
pub fn parse(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<ChatResponse, LlmError> {
    if !(200..300).contains(&status) {
        return Err(error(status, headers, body));
    }
    let message: Message = decode("Anthropic", body)?;
    let usage = message
        .usage
        .map(|u| {
            let cached =
                u.cache_creation_input_tokens.unwrap_or(0) + u.cache_read_input_tokens.unwrap_or(0);
            Usage::new(u.input_tokens.saturating_add(cached), u.output_tokens)
        })
        .unwrap_or_default();
    let reason = message.stop_reason.unwrap_or_else(|| "end_turn".to_owned());
    if reason == "refusal" {
        return Err(LlmError::new(
            ErrorKind::ContentFiltered,
            "the model refused to answer (stop_reason: refusal)",
        )
        .with_status(status)
        .with_spent(usage));
    }
    let finish = match reason.as_str() {
        "model_context_window_exceeded" => FinishReason::Length,
        _ => FinishReason::from(reason),
    };
    let text: String = message
        .content
        .iter()
        .filter(|b| b.kind == "text")
        .filter_map(|b| b.text.as_deref())
        .collect();
    Ok(ChatResponse::new(message.model, text)
        .with_id(message.id)
        .with_usage(usage)
        .with_finish_reason(finish))
}

/// Classifies a non-2xx response, by the body's `error.type` first (it is
/// what Anthropic documents), then by the status.
pub fn error(status: u16, headers: &HeaderMap, body: &[u8]) -> LlmError {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let err = value.as_ref().and_then(|v| v.get("error"));
    let field = |name: &str| {
        err.and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (kind_field, message) = (field("type"), field("message"));
    let spend_limit = err
        .and_then(|e| e.get("details"))
        .and_then(|d| d.get("error_code"))
        .and_then(Value::as_str)
        == Some("enforced_spend_limit_reached");
    let message = if !message.is_empty() {
        message
    } else if body.is_empty() {
        format!("HTTP {status} with an empty body")
    } else if kind_field.is_empty() {
        snippet(body)
    } else {
        kind_field.clone()
    };
    let lowered = lower(&message);
    let kind = match kind_field.as_str() {
        "invalid_request_error"
            if lowered.contains("prompt is too long") || lowered.contains("context window") =>
        {
            ErrorKind::ContextLengthExceeded
        }
        "invalid_request_error" | "request_too_large" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Authentication,
        "billing_error" => ErrorKind::QuotaExhausted,
        "permission_error" => ErrorKind::PermissionDenied,
        "not_found_error" => ErrorKind::ModelNotFound,
        "rate_limit_error" if spend_limit => ErrorKind::QuotaExhausted,
        "rate_limit_error" => ErrorKind::RateLimited,
        "api_error" => ErrorKind::Server,
        "timeout_error" => ErrorKind::Timeout,
        "overloaded_error" => ErrorKind::Overloaded,
        _ if status == 504 => ErrorKind::Timeout,
        _ => ErrorKind::from_status(status),
    };
    let mut error = LlmError::new(kind, message).with_status(status);
    error.retry_after = crate::headers::retry_after(headers);
    error.should_retry = crate::headers::should_retry(headers);
    error.request_id = crate::headers::request_id(headers).or_else(|| {
        value
            .as_ref()
            .and_then(|v| v.get("request_id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    error
}
