//! Anthropic Messages wire format, both ways.

use crate::json::{decode, lower, snippet};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use staunch_core::{ChatRequest, ChatResponse, ErrorKind, FinishReason, LlmError, Role, Usage};

/// The request body for `request`. System messages become the top-level
/// `system` field; tool results are sent as user turns; `max_tokens`, which
/// the API requires, defaults to `default_max_tokens`; the provider extras
/// override the typed fields. It borrows the request and serializes
/// straight into the output, with no JSON tree in between;
/// [`encode_request`] is what the client sends.
pub fn request_body(request: &ChatRequest, default_max_tokens: u32) -> RequestBody<'_> {
    RequestBody {
        request,
        default_max_tokens,
    }
}

/// The body bytes for `request`, serialized into one buffer sized from a
/// cheap estimate of the output (so memory stays about the body's size,
/// whatever the conversation's length).
pub fn encode_request(
    request: &ChatRequest,
    default_max_tokens: u32,
) -> Result<Vec<u8>, serde_json::Error> {
    // `{"role":"user","content":"…"},` before escaping (system text once).
    let messages: usize = request.messages.iter().map(|m| m.content.len() + 34).sum();
    let estimate = 128
        + request.model.len()
        + messages
        + crate::json::estimate_strings(&request.stop)
        + crate::json::estimate_map(&request.extra);
    // A little room for escapes, so a typical body never reallocates.
    crate::json::encode(
        &request_body(request, default_max_tokens),
        estimate + estimate / 32,
    )
}

/// An Anthropic request body borrowed from a [`ChatRequest`]; see
/// [`request_body`].
pub struct RequestBody<'a> {
    request: &'a ChatRequest,
    default_max_tokens: u32,
}

impl serde::Serialize for RequestBody<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.request;
        // A key in `extra` replaces the typed field of the same name.
        let typed = |key: &str| !r.extra.contains_key(key);
        let mut map = serializer.serialize_map(None)?;
        if typed("model") {
            map.serialize_entry("model", &r.model)?;
        }
        if typed("max_tokens") {
            map.serialize_entry(
                "max_tokens",
                &r.max_tokens.unwrap_or(self.default_max_tokens),
            )?;
        }
        if typed("system") && r.messages.iter().any(|m| m.role == Role::System) {
            map.serialize_entry("system", &SystemText(&r.messages))?;
        }
        if typed("messages") {
            map.serialize_entry("messages", &WireMessages(&r.messages))?;
        }
        if let Some(t) = r.temperature.filter(|_| typed("temperature")) {
            map.serialize_entry("temperature", &t)?;
        }
        if let Some(p) = r.top_p.filter(|_| typed("top_p")) {
            map.serialize_entry("top_p", &p)?;
        }
        if !r.stop.is_empty() && typed("stop_sequences") {
            map.serialize_entry("stop_sequences", &*r.stop)?;
        }
        for (k, v) in r.extra.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The system messages joined by blank lines, written as one JSON string
/// without building it first.
struct SystemText<'a>(&'a [staunch_core::Message]);

impl std::fmt::Display for SystemText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let system = self.0.iter().filter(|m| m.role == Role::System);
        for (i, m) in system.enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            f.write_str(&m.content)?;
        }
        Ok(())
    }
}

impl serde::Serialize for SystemText<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The conversation without its system messages: assistant turns stay
/// assistant, everything else (tool results included) is a user turn.
struct WireMessages<'a>(&'a [staunch_core::Message]);

#[derive(serde::Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: &'a str,
}

impl serde::Serialize for WireMessages<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let turns = self.0.iter().filter(|m| m.role != Role::System);
        serializer.collect_seq(turns.map(|m| OutMessage {
            role: if m.role == Role::Assistant {
                "assistant"
            } else {
                "user"
            },
            content: &m.content,
        }))
    }
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
            .map(|id| staunch_core::redact_secrets(id).into_owned())
    });
    error
}
