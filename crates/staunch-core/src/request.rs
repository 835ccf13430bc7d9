//! The provider-neutral chat request.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// Instructions for the model (OpenAI's `system`, Anthropic's top-level `system`).
    System,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

impl Role {
    /// The wire name: `system`, `user`, `assistant` or `tool`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
    /// An optional participant name (or, for [`Role::Tool`], the tool call id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    /// A message from `role` with `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            name: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// Sets the participant name (or tool call id).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// A chat completion request, independent of any provider's wire format.
///
/// Cloning is cheap and does not depend on the conversation's length: the
/// message list, stop sequences and provider extras are shared behind
/// [`Arc`]s, because retry and fallback clone the request for every attempt.
/// Edit a shared list with [`Arc::make_mut`]-style copy-on-write through the
/// `with_*` builders.
///
/// Per-request metadata for the layers (a deadline, a degradation opt-out)
/// travels in [`extensions`](Self::extensions), as in `http::Request`; it is
/// not serialized.
///
/// ```
/// use staunch_core::{ChatRequest, Message};
///
/// let request = ChatRequest::new("claude-sonnet-4-5", vec![Message::user("Summarise this")])
///     .with_max_tokens(256)
///     .with_temperature(0.2)
///     .with_stop(["\n\n"])
///     .with_extra("top_k", 40);
/// assert_eq!(request.messages.len(), 1);
/// assert_eq!(request.extra["top_k"], 40);
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatRequest {
    /// The model to ask. Fallback targets may rewrite it.
    pub model: String,
    /// The conversation, shared between clones.
    pub messages: Arc<[Message]>,
    /// The most tokens the answer may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "slice_is_empty")]
    pub stop: Arc<[String]>,
    /// Provider options passed through to the wire body as they are
    /// (`top_k`, `seed`, `response_format`, …).
    #[serde(default, skip_serializing_if = "map_is_empty")]
    pub extra: Arc<Map<String, Value>>,
    /// Per-request metadata for the layers; not serialized.
    #[serde(skip)]
    pub extensions: http::Extensions,
}

fn slice_is_empty(s: &Arc<[String]>) -> bool {
    s.is_empty()
}

fn map_is_empty(m: &Arc<Map<String, Value>>) -> bool {
    m.is_empty()
}

impl ChatRequest {
    /// A request for `model` with `messages` and every option unset.
    pub fn new(model: impl Into<String>, messages: impl Into<Arc<[Message]>>) -> Self {
        ChatRequest {
            model: model.into(),
            messages: messages.into(),
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: Arc::from([]),
            extra: Arc::default(),
            extensions: http::Extensions::new(),
        }
    }

    /// Sets the model.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Sets the answer's token limit.
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Sets the sampling temperature.
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets nucleus sampling.
    pub fn with_top_p(mut self, top_p: f32) -> Self {
        self.top_p = Some(top_p);
        self
    }

    /// Sets the stop sequences.
    pub fn with_stop<I, S>(mut self, stop: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.stop = stop.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a provider option to the wire body (copy-on-write if shared).
    pub fn with_extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        Arc::make_mut(&mut self.extra).insert(key.into(), value.into());
        self
    }

    /// Inserts per-request metadata for the layers.
    pub fn with_extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// A cheap estimate of the prompt's size in tokens: about four bytes of
    /// text per token plus a few tokens of framing per message. It errs
    /// high for English prose and is meant for routing decisions (does this
    /// fit a context window?), not billing.
    pub fn estimated_input_tokens(&self) -> u64 {
        const PER_MESSAGE: u64 = 4;
        self.messages
            .iter()
            .map(|m| (m.content.len() as u64).div_ceil(4) + PER_MESSAGE)
            .sum()
    }
}

/// Keys in `extra` whose values are never printed.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["key", "token", "secret", "password", "authorization"]
        .iter()
        .any(|s| key.contains(s))
}

impl fmt::Debug for ChatRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Extra<'a>(&'a Map<String, Value>);
        impl fmt::Debug for Extra<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut map = f.debug_map();
                for (k, v) in self.0 {
                    if is_secret_key(k) {
                        map.entry(k, &"[redacted]");
                    } else {
                        map.entry(k, v);
                    }
                }
                map.finish()
            }
        }
        f.debug_struct("ChatRequest")
            .field("model", &self.model)
            .field("messages", &self.messages)
            .field("max_tokens", &self.max_tokens)
            .field("temperature", &self.temperature)
            .field("top_p", &self.top_p)
            .field("stop", &self.stop)
            .field("extra", &Extra(&self.extra))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_shares_messages_and_extras() {
        let a =
            ChatRequest::new("m", vec![Message::user("x".repeat(10_000))]).with_extra("seed", 1);
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.messages, &b.messages));
        assert!(Arc::ptr_eq(&a.extra, &b.extra));
    }

    #[test]
    fn with_extra_copies_on_write() {
        let a = ChatRequest::new("m", vec![]).with_extra("seed", 1);
        let b = a.clone().with_extra("top_k", 5);
        assert_eq!(a.extra.len(), 1);
        assert_eq!(b.extra.len(), 2);
    }

    #[test]
    fn serde_round_trip_skips_unset_fields() {
        let req = ChatRequest::new("gpt-4o", vec![Message::system("s"), Message::user("u")])
            .with_max_tokens(5)
            .with_stop(["END"]);
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "model": "gpt-4o",
                "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                "max_tokens": 5,
                "stop": ["END"]
            })
        );
        let back: ChatRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back.messages, req.messages);
        assert_eq!(back.stop, req.stop);
        assert_eq!(back.max_tokens, Some(5));
        assert_eq!(back.temperature, None);
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        let err = serde_json::from_str::<ChatRequest>(
            r#"{"model": "m", "messages": [{"role": "wizard", "content": ""}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("wizard"), "{err}");
        assert!(serde_json::from_str::<ChatRequest>(r#"{"messages": []}"#).is_err());
    }

    #[test]
    fn debug_hides_secret_extras() {
        let req = ChatRequest::new("m", vec![])
            .with_extra("api_key", "sk-live")
            .with_extra("seed", 7);
        let shown = format!("{req:?}");
        assert!(!shown.contains("sk-live"), "{shown}");
        assert!(
            shown.contains("[redacted]") && shown.contains("seed"),
            "{shown}"
        );
    }

    #[test]
    fn token_estimate_grows_with_text() {
        let short = ChatRequest::new("m", vec![Message::user("hi")]);
        let long = ChatRequest::new("m", vec![Message::user("word ".repeat(1000))]);
        assert_eq!(short.estimated_input_tokens(), 1 + 4);
        assert_eq!(long.estimated_input_tokens(), 1250 + 4);
    }
}
