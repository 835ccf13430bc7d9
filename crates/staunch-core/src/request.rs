//! The provider-neutral chat request.

use crate::{
    Allowance, Content, ContentPart, Dialect, Extensions, Extras, ResponseFormat, ToolCall,
    ToolChoice, ToolDefinition,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use tokio::time::Instant;

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// Instructions for the model (OpenAI's `system`, Anthropic's top-level `system`).
    System,
    /// Instructions from the application developer (OpenAI's `developer`
    /// role, which newer models prefer to `system`; Anthropic's top-level
    /// `system`).
    Developer,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

impl Role {
    /// The wire name: `system`, `developer`, `user`, `assistant` or `tool`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
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

/// One message of a conversation: its role, its content (text or parts),
/// and for an assistant the tool calls it made, for a tool result the call
/// it answers.
///
/// ```
/// use staunch_core::{Message, Role, ToolCall};
/// let call = ToolCall::new("call_1", "get_weather", r#"{"city":"Paris"}"#);
/// let conversation = [
///     Message::user("Weather in Paris?"),
///     Message::assistant_tool_calls("", vec![call]),
///     Message::tool_result("call_1", r#"{"celsius": 21}"#),
/// ];
/// assert_eq!(conversation[2].role, Role::Tool);
/// assert_eq!(conversation[2].tool_call_id.as_deref(), Some("call_1"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it says.
    #[serde(default)]
    pub content: Content,
    /// An optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tool calls an assistant message made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a [`Role::Tool`] message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For a [`Role::Tool`] message: the tool failed, and the content says how.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_error: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Message {
    /// A message from `role` with `content`.
    pub fn new(role: Role, content: impl Into<Content>) -> Self {
        Message {
            role,
            content: content.into(),
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<Content>) -> Self {
        Self::new(Role::System, content)
    }

    /// A developer message (OpenAI's `developer` role).
    pub fn developer(content: impl Into<Content>) -> Self {
        Self::new(Role::Developer, content)
    }

    /// A user message.
    pub fn user(content: impl Into<Content>) -> Self {
        Self::new(Role::User, content)
    }

    /// A user message of several parts (text and images).
    pub fn user_parts(parts: impl IntoIterator<Item = ContentPart>) -> Self {
        Self::new(Role::User, Content::Parts(parts.into_iter().collect()))
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<Content>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// An assistant message that calls tools (its text may be empty).
    pub fn assistant_tool_calls(text: impl Into<Content>, calls: Vec<ToolCall>) -> Self {
        let mut message = Self::new(Role::Assistant, text);
        message.tool_calls = calls;
        message
    }

    /// The result of tool call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<Content>) -> Self {
        let mut message = Self::new(Role::Tool, content);
        message.tool_call_id = Some(call_id.into());
        message
    }

    /// The failure of tool call `call_id`, described by `content`.
    pub fn tool_error(call_id: impl Into<String>, content: impl Into<Content>) -> Self {
        let mut message = Self::tool_result(call_id, content);
        message.is_error = true;
        message
    }

    /// Sets the participant name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The text of the content ([`Content::text`]).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        self.content.text()
    }
}

/// A chat completion request, independent of any provider's wire format.
///
/// Its fields are those of [`ChatRequestParts`], read and written through
/// `Deref` (`request.model`, `request.max_tokens = Some(64)`). The request
/// itself is one pointer to them, shared between clones: a request moves
/// down through every layer's `call` and into every layer's future, so
/// each move is eight bytes instead of a few hundred, and retry and
/// fallback, which keep a copy of the request for every attempt, clone it
/// by counting a reference. Writing to a request whose fields a clone
/// shares copies them first (copy-on-write), so a clone never sees
/// another's writes. Within the fields, the message list, stop sequences,
/// tools and provider extras are shared behind [`Arc`]s of their own, so
/// that copy does not depend on the conversation's length either. Take the
/// fields out by value with [`into_parts`](ChatRequest::into_parts).
///
/// Per-request metadata for the layers (a deadline, a degradation opt-out)
/// travels in [`extensions`](ChatRequestParts::extensions), as in `http::Request`; it is
/// not serialized.
///
/// Tools, the tool choice and the output format are fields of their own,
/// which every provider dialect maps; [`extra`](ChatRequestParts::extra) carries what
/// only one dialect understands, for that dialect only.
///
/// ```
/// use serde_json::json;
/// use staunch_core::{ChatRequest, Dialect, Message, ToolChoice, ToolDefinition};
///
/// let request = ChatRequest::new("claude-sonnet-4-5", vec![Message::user("Summarise this")])
///     .with_max_tokens(256)
///     .with_temperature(0.2)
///     .with_stop(["\n\n"])
///     .with_tools([ToolDefinition::new("search", json!({"type": "object"}))])
///     .with_tool_choice(ToolChoice::Auto)
///     .with_extra(Dialect::Anthropic, "top_k", 40);
/// assert_eq!(request.messages.len(), 1);
/// assert_eq!(request.extra.get(Dialect::Anthropic)["top_k"], 40);
/// assert!(request.extra.get(Dialect::OpenAi).is_empty());
///
/// let mut other = request.clone();
/// other.max_tokens = Some(64);
/// assert_eq!((request.max_tokens, other.max_tokens), (Some(256), Some(64)));
/// assert_eq!(std::mem::size_of::<ChatRequest>(), 8);
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChatRequest {
    parts: Arc<ChatRequestParts>,
}

/// The fields of a [`ChatRequest`].
#[derive(Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatRequestParts {
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
    /// Tools the model may call, shared between clones.
    #[serde(default, skip_serializing_if = "tools_are_empty")]
    pub tools: Arc<[ToolDefinition]>,
    /// Whether and which tool the model must call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools in one answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// The format the answer must take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Provider options passed through to one dialect's wire body as they
    /// are (OpenAI's `seed`, Anthropic's `top_k`, …).
    #[serde(default, skip_serializing_if = "extras_are_empty")]
    pub extra: Arc<Extras>,
    /// Whether the answer should stream: its future then resolves at the
    /// first content event and its body is a stream of events.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stream: bool,
    /// Per-request metadata for the layers; not serialized. Clones of the
    /// request share it until one of them writes to it.
    #[serde(skip)]
    pub extensions: Extensions,
    /// When the first layer that spans attempts took the request; see
    /// [`ChatRequest::start_clock`].
    #[serde(skip)]
    started: Option<Instant>,
    /// What a budget above lets the request spend; see
    /// [`ChatRequest::allowance`].
    #[serde(skip)]
    allowance: Option<Allowance>,
}

fn slice_is_empty(s: &Arc<[String]>) -> bool {
    s.is_empty()
}

fn extras_are_empty(m: &Arc<Extras>) -> bool {
    m.is_empty()
}

fn tools_are_empty(t: &Arc<[ToolDefinition]>) -> bool {
    t.is_empty()
}

impl std::ops::Deref for ChatRequest {
    type Target = ChatRequestParts;
    #[inline]
    fn deref(&self) -> &ChatRequestParts {
        &self.parts
    }
}

/// Copy-on-write: the fields are copied first if a clone shares them.
impl std::ops::DerefMut for ChatRequest {
    #[inline]
    fn deref_mut(&mut self) -> &mut ChatRequestParts {
        Arc::make_mut(&mut self.parts)
    }
}

impl From<ChatRequestParts> for ChatRequest {
    fn from(parts: ChatRequestParts) -> Self {
        ChatRequest {
            parts: Arc::new(parts),
        }
    }
}

impl ChatRequest {
    /// A request for `model` with `messages` and every option unset.
    pub fn new(model: impl Into<String>, messages: impl Into<Arc<[Message]>>) -> Self {
        ChatRequest::from(ChatRequestParts {
            model: model.into(),
            messages: messages.into(),
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: Arc::from([]),
            tools: Arc::from([]),
            tool_choice: None,
            parallel_tool_calls: None,
            response_format: None,
            stream: false,
            extra: Arc::default(),
            extensions: Extensions::new(),
            started: None,
            allowance: None,
        })
    }

    /// The request's fields, by value (copied if a clone shares them).
    ///
    /// ```
    /// use staunch_core::{ChatRequest, Message};
    /// let parts = ChatRequest::new("gpt-4o", vec![Message::user("Hi")]).into_parts();
    /// assert_eq!(parts.model, "gpt-4o");
    /// assert_eq!(parts.messages.len(), 1);
    /// ```
    pub fn into_parts(self) -> ChatRequestParts {
        Arc::unwrap_or_clone(self.parts)
    }

    /// The instant the request's clock started: when the first layer that
    /// spans attempts (instrument, degrade, budget, fallback, retry) or the
    /// client took it. Clones share it, so every attempt and every fallback target
    /// of one request measures from the same start.
    ///
    /// The clock is tokio's, so paused-time tests move it.
    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    /// Starts the request's clock if nothing has yet, and returns its start.
    ///
    /// [`ResponseMeta::latency`](crate::ResponseMeta::latency) is written once, by
    /// whatever produces the answer (the provider client, a degraded answer),
    /// as the time since this start. So the outermost layer reads the clock
    /// once and the layers inside it not at all.
    ///
    /// ```
    /// use staunch_core::{ChatRequest, Message};
    ///
    /// let mut request = ChatRequest::new("gpt-4o", vec![Message::user("Hi")]);
    /// assert_eq!(request.started(), None);
    /// let start = request.start_clock();
    /// let mut attempt = request.clone();
    /// assert_eq!(attempt.start_clock(), start, "a clone keeps the start");
    /// ```
    #[inline]
    pub fn start_clock(&mut self) -> Instant {
        match self.started {
            Some(started) => started,
            // The only write: a started clock is read without copying a
            // shared request.
            None => *self.started.insert(Instant::now()),
        }
    }

    /// The tokens the request may still spend, as a budget above set them
    /// ([`Allowance`]); `None` without a per-request cap. Clones share it
    /// until one of them sets its own.
    pub fn allowance(&self) -> Option<Allowance> {
        self.allowance
    }

    /// Sets the request's [`Allowance`], or clears it with `None`. The
    /// request carries it in a place of its own: nothing is allocated.
    pub fn set_allowance(&mut self, allowance: Option<Allowance>) {
        if self.allowance != allowance {
            self.allowance = allowance;
        }
    }

    /// A clone of the request that asks `model` instead: what a fallback
    /// target with a model of its own sends. Unlike `clone()` followed by
    /// setting [`model`](ChatRequestParts::model), it does not copy the model name
    /// it replaces.
    ///
    /// ```
    /// use staunch_core::{ChatRequest, Message};
    ///
    /// let request = ChatRequest::new("gpt-4o", vec![Message::user("Hi")]);
    /// let other = request.clone_for_model("claude-sonnet-4-5");
    /// assert_eq!(other.model, "claude-sonnet-4-5");
    /// assert!(std::sync::Arc::ptr_eq(&other.messages, &request.messages));
    /// // Asking the same model is a plain clone: the fields stay shared.
    /// let same = request.clone_for_model("gpt-4o");
    /// assert!(std::ptr::eq(&*same, &*request));
    /// assert!(!std::ptr::eq(&*other, &*request));
    /// ```
    pub fn clone_for_model(&self, model: &str) -> ChatRequest {
        if self.model == model {
            // A target that asks the caller's own model: nothing to
            // rewrite, so the fields stay shared.
            return self.clone();
        }
        ChatRequest::from(ChatRequestParts {
            model: model.to_owned(),
            messages: self.messages.clone(),
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            stop: self.stop.clone(),
            tools: self.tools.clone(),
            tool_choice: self.tool_choice.clone(),
            parallel_tool_calls: self.parallel_tool_calls,
            response_format: self.response_format.clone(),
            stream: self.stream,
            extra: self.extra.clone(),
            extensions: self.extensions.clone(),
            started: self.started,
            allowance: self.allowance,
        })
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

    /// Adds a provider option to the wire body of `dialect`'s targets only
    /// (copy-on-write if shared).
    pub fn with_extra(
        mut self,
        dialect: Dialect,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) -> Self {
        Arc::make_mut(&mut self.extra).insert(dialect, key, value);
        self
    }

    /// Asks for a streamed answer.
    pub fn with_stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// Sets the tools the model may call.
    pub fn with_tools(mut self, tools: impl IntoIterator<Item = ToolDefinition>) -> Self {
        self.tools = tools.into_iter().collect();
        self
    }

    /// Sets the tool choice.
    pub fn with_tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// Allows or forbids several tool calls in one answer.
    pub fn with_parallel_tool_calls(mut self, allowed: bool) -> Self {
        self.parallel_tool_calls = Some(allowed);
        self
    }

    /// Sets the output format.
    pub fn with_response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = Some(format);
        self
    }

    /// The definition of tool `name`, if offered.
    pub fn tool(&self, name: &str) -> Option<&ToolDefinition> {
        self.tools.iter().find(|t| t.name == name)
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
        // An image costs on the order of a thousand tokens at most sizes.
        const PER_IMAGE: u64 = 1_000;
        let messages: u64 = self
            .messages
            .iter()
            .map(|m| {
                let text = (m.content.byte_len() as u64).div_ceil(4);
                let images = match &m.content {
                    Content::Parts(parts) => {
                        parts.iter().filter(|p| p.is_image()).count() as u64 * PER_IMAGE
                    }
                    Content::Text(_) => 0,
                };
                let calls: u64 = m
                    .tool_calls
                    .iter()
                    .map(|c| ((c.name.len() + c.arguments.len()) as u64).div_ceil(4) + PER_MESSAGE)
                    .sum();
                text + images + calls + PER_MESSAGE
            })
            .sum();
        let tools: u64 = self
            .tools
            .iter()
            .map(|t| {
                let schema = t.parameters.to_string().len();
                let description = t.description.as_ref().map_or(0, String::len);
                ((t.name.len() + schema + description) as u64).div_ceil(4)
            })
            .sum();
        messages + tools
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
        fmt::Debug::fmt(&*self.parts, f)
    }
}

/// Printed as `ChatRequest`, with provider extras whose keys look secret
/// redacted.
impl fmt::Debug for ChatRequestParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Extra<'a>(&'a Extras);
        impl fmt::Debug for Extra<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut map = f.debug_map();
                for (dialect, k, v) in self.0.iter() {
                    let key = format!("{dialect}.{k}");
                    if is_secret_key(k) {
                        map.entry(&key, &"[redacted]");
                    } else {
                        map.entry(&key, v);
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
            .field(
                "tools",
                &self.tools.iter().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .field("tool_choice", &self.tool_choice)
            .field(
                "response_format",
                &self.response_format.as_ref().map(|_| "set"),
            )
            .field("extra", &Extra(&self.extra))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_shares_messages_and_extras() {
        let a = ChatRequest::new("m", vec![Message::user("x".repeat(10_000))]).with_extra(
            Dialect::OpenAi,
            "seed",
            1,
        );
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.messages, &b.messages));
        assert!(Arc::ptr_eq(&a.extra, &b.extra));
    }

    #[test]
    fn an_allowance_is_the_requests_own_shared_by_clones_until_one_sets_another() {
        let mut a = ChatRequest::new("m", vec![Message::user("x")]);
        assert_eq!(a.allowance(), None);
        let cap = Allowance::new(1_000, 100);
        a.set_allowance(Some(cap));
        assert_eq!(a.allowance(), Some(cap));
        assert!(
            a.extensions.is_empty(),
            "not in the extensions: no allocation"
        );
        let mut b = a.clone();
        // The same figure again writes nothing, so copies nothing.
        b.set_allowance(Some(cap));
        assert!(std::ptr::eq(&*a, &*b));
        let mut spent = cap;
        spent.set_earlier_targets(400);
        b.set_allowance(Some(spent));
        assert!(!std::ptr::eq(&*a, &*b));
        assert_eq!((a.allowance(), b.allowance()), (Some(cap), Some(spent)));
        assert_eq!(b.clone_for_model("other").allowance(), Some(spent));
        b.set_allowance(None);
        assert_eq!(b.allowance(), None);
    }

    #[test]
    fn clones_share_the_fields_until_one_writes_and_never_see_its_writes() {
        #[derive(Clone, Debug, PartialEq)]
        struct Mark(u32);
        let mut a = ChatRequest::new("m", vec![Message::user("x")]).with_extension(Mark(1));
        let b = a.clone();
        assert!(std::ptr::eq(&*a, &*b), "a clone counts a reference");
        // Reading, and a clock already started, write nothing.
        let started = a.start_clock();
        let mut c = a.clone();
        assert_eq!(c.start_clock(), started);
        assert!(std::ptr::eq(&*a, &*c));
        // A write copies the fields for the writer only.
        c.model = "other".to_owned();
        c.extensions.insert(Mark(2));
        assert!(!std::ptr::eq(&*a, &*c));
        assert_eq!(
            (a.model.as_str(), b.model.as_str(), c.model.as_str()),
            ("m", "m", "other")
        );
        assert_eq!(a.extensions.get::<Mark>(), Some(&Mark(1)));
        assert_eq!(c.extensions.get::<Mark>(), Some(&Mark(2)));
        assert_eq!(b.started(), None, "b was cloned before the clock started");
        assert_eq!(c.started(), Some(started));
        // The copy shares what the fields share.
        assert!(Arc::ptr_eq(&a.messages, &c.messages));
        // A request no clone shares is written in place.
        let before: *const ChatRequestParts = &*c;
        c.max_tokens = Some(5);
        assert!(std::ptr::eq(before, &*c));
        // into_parts takes the fields whether or not they are shared.
        assert_eq!(b.into_parts().model, "m");
        assert_eq!(c.into_parts().max_tokens, Some(5));
    }

    #[test]
    fn with_extra_copies_on_write() {
        let a = ChatRequest::new("m", vec![]).with_extra(Dialect::OpenAi, "seed", 1);
        let b = a.clone().with_extra(Dialect::Anthropic, "top_k", 5);
        assert_eq!(a.extra.iter().count(), 1);
        assert_eq!(b.extra.iter().count(), 2);
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
            .with_extra(Dialect::OpenAi, "api_key", "sk-live")
            .with_extra(Dialect::OpenAi, "seed", 7);
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
