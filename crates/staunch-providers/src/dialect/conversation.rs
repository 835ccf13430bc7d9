//! Checks of a conversation that hold in every dialect, made before any
//! body is built: a bad conversation is a clear error and nothing is sent.

use staunch_core::{ChatRequest, Content, ContentPart, Dialect, ErrorKind, LlmError, Role};
use std::collections::HashSet;

/// An error for a request feature `dialect` cannot express: `Unavailable`
/// (the chain moves on to a target that can), naming the feature.
pub(crate) fn unsupported(dialect: Dialect, feature: impl std::fmt::Display) -> LlmError {
    LlmError::new(
        ErrorKind::FeatureUnsupported,
        format!("the {dialect} dialect cannot express {feature}; nothing was sent"),
    )
}

/// An error for a conversation no provider would accept: `InvalidRequest`.
pub(crate) fn invalid(why: impl Into<String>) -> LlmError {
    LlmError::new(ErrorKind::InvalidRequest, why)
}

/// Checks what every dialect needs: each tool result answers a call made
/// earlier in the conversation, tool calls and results carry ids, and
/// opaque parts of another dialect are refused.
pub(crate) fn check(request: &ChatRequest, dialect: Dialect) -> Result<(), LlmError> {
    let mut calls: HashSet<&str> = HashSet::new();
    for (i, message) in request.messages.iter().enumerate() {
        for call in &message.tool_calls {
            if message.role != Role::Assistant {
                return Err(invalid(format!(
                    "message {i}: only assistant messages carry tool calls"
                )));
            }
            if call.id.is_empty() || call.name.is_empty() {
                return Err(invalid(format!(
                    "message {i}: a tool call needs an id and a name"
                )));
            }
            calls.insert(&call.id);
        }
        if message.role == Role::Tool {
            let Some(id) = message.tool_call_id.as_deref() else {
                return Err(invalid(format!(
                    "message {i}: a tool result needs the id of the call it answers"
                )));
            };
            if !calls.contains(id) {
                return Err(invalid(format!(
                    "message {i}: the tool result for call {id:?} answers no earlier tool call"
                )));
            }
        }
        if let Content::Parts(parts) = &message.content {
            for part in parts {
                if let ContentPart::Opaque { dialect: own, part } = part
                    && *own != dialect
                {
                    let kind = part.get("type").and_then(|t| t.as_str()).unwrap_or("?");
                    return Err(unsupported(
                        dialect,
                        format!("a {own} `{kind}` content part (message {i})"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Splits a `data:` URL into its media type and base64 data.
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}
