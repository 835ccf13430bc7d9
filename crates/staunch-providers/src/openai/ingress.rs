//! The ingress side of the OpenAI dialect: a Chat Completions request from
//! a client read into the neutral model, and a neutral answer written back
//! in the shape the official SDKs parse.

use super::answer::WireCall;
use crate::dialect::conversation::parse_data_url;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use staunch_core::{
    ChatRequest, ChatResponse, Content, ContentPart, Dialect, Extras, FinishReason, Message,
    ResponseFormat, Role, ToolChoice, ToolDefinition,
};
use std::sync::Arc;

/// A client's request that can't be read, with what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IngressError {
    /// The body is not JSON (the message names the line and the column).
    #[error("the request body is not valid JSON: {0}")]
    Json(String),
    /// The body is JSON but not the shape of a request (a missing field, a
    /// wrong type; the message names the field, the line and the column).
    #[error("invalid request body: {0}")]
    Body(String),
    /// A field has a value this gateway can't serve.
    #[error("{field}: {message}")]
    Field {
        /// The field, as a JSON path (`messages[2].content[0].type`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl IngressError {
    /// Reads `body` as `T`: JSON is UTF-8 (RFC 8259), checked over the
    /// whole body first, since serde skips the strings of fields it does
    /// not read without checking them. serde_json reports some type errors
    /// as syntax errors (a number or `null` where an enum is expected is
    /// "expected value"), so a syntax error in a body that is JSON after
    /// all is a shape error, not "not valid JSON".
    pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Self> {
        let text = std::str::from_utf8(body)
            .map_err(|e| IngressError::Json(format!("the body is not UTF-8: {e}")))?;
        serde_json::from_str(text).map_err(|error| {
            if error.is_data()
                || (error.is_syntax()
                    && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
            {
                IngressError::Body(error.to_string())
            } else {
                IngressError::Json(error.to_string())
            }
        })
    }

    /// The field at fault, when one is known.
    pub fn field(&self) -> Option<&str> {
        match self {
            IngressError::Field { field, .. } => Some(field),
            IngressError::Body(_) | IngressError::Json(_) => None,
        }
    }
}

/// A Chat Completions request read from a client.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Decoded {
    /// The neutral request; fields only OpenAI understands are in its
    /// OpenAI extras.
    pub request: ChatRequest,
    /// The client asked for a stream (`stream: true`).
    pub stream: bool,
    /// The client asked for usage in the stream (`stream_options.include_usage`).
    pub include_usage: bool,
}

#[derive(Deserialize)]
struct InRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    tools: Option<Vec<InTool>>,
    #[serde(default)]
    tool_choice: Option<InChoice>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    response_format: Option<InFormat>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct InMessage {
    role: Role,
    #[serde(default)]
    content: Option<InContent>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InContent {
    Text(String),
    Parts(Vec<Map<String, Value>>),
}

#[derive(Deserialize)]
struct InTool {
    #[serde(rename = "type")]
    kind: String,
    function: InFunction,
}

#[derive(Deserialize)]
struct InFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InChoice {
    Mode(String),
    Named { function: NamedFunction },
}

#[derive(Deserialize)]
struct NamedFunction {
    name: String,
}

#[derive(Deserialize)]
struct InFormat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    json_schema: Option<InSchema>,
}

#[derive(Deserialize)]
struct InSchema {
    name: String,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

/// An [`IngressError::Field`]: `message` about `field`. Both dialects'
/// readers name the field at fault with it.
pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> IngressError {
    IngressError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// Reads a Chat Completions request body into the neutral model: roles
/// (`developer` included), content as text or parts (text, images by URL or
/// `data:` URL, any other part kept as an OpenAI-only part), tools, tool
/// choice, tool calls and results, `response_format`; any other field is
/// kept as an OpenAI extra. Never panics; a bad body is an [`IngressError`]
/// naming what is wrong.
///
/// ```
/// use staunch_core::Dialect;
/// use staunch_providers::openai::wire::decode_request;
/// let body = br#"{"model": "gpt-4o", "messages": [
///     {"role": "developer", "content": "Be brief."},
///     {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]}
/// ], "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
///    "seed": 7}"#;
/// let decoded = decode_request(body).unwrap();
/// assert_eq!(decoded.request.tools[0].name, "get_weather");
/// assert_eq!(decoded.request.extra.get(Dialect::OpenAi)["seed"], 7);
/// ```
pub fn decode_request(body: &[u8]) -> Result<Decoded, IngressError> {
    let raw: InRequest = IngressError::parse(body)?;
    if raw.n.is_some_and(|n| n != 1) {
        return Err(field("n", "only one choice (n = 1) is supported"));
    }
    if raw.messages.is_empty() {
        return Err(field("messages", "at least one message is required"));
    }
    let messages = raw
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tools = Vec::new();
    for (i, t) in raw.tools.unwrap_or_default().into_iter().enumerate() {
        if t.kind != "function" {
            return Err(field(
                format!("tools[{i}].type"),
                format!("only function tools are supported, not {:?}", t.kind),
            ));
        }
        let parameters = t
            .function
            .parameters
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        let mut tool = ToolDefinition::new(t.function.name, parameters);
        tool.description = t.function.description;
        tool.strict = t.function.strict;
        tools.push(tool);
    }
    let tool_choice = match raw.tool_choice {
        None => None,
        Some(InChoice::Mode(mode)) => Some(match mode.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(field(
                    "tool_choice",
                    format!("expected auto, none, required or a function, not {other:?}"),
                ));
            }
        }),
        Some(InChoice::Named { function }) => Some(ToolChoice::Tool(function.name)),
    };
    let response_format = match raw.response_format {
        None => None,
        Some(f) => Some(match (f.kind.as_str(), f.json_schema) {
            ("text", _) => ResponseFormat::Text,
            ("json_object", _) => ResponseFormat::JsonObject,
            ("json_schema", Some(s)) => ResponseFormat::JsonSchema {
                name: s.name,
                schema: s.schema.unwrap_or_else(|| json!({})),
                strict: s.strict,
            },
            ("json_schema", None) => {
                return Err(field("response_format.json_schema", "missing"));
            }
            (other, _) => {
                return Err(field(
                    "response_format.type",
                    format!("expected text, json_object or json_schema, not {other:?}"),
                ));
            }
        }),
    };
    let mut request = ChatRequest::new(raw.model, messages).with_tools(tools);
    request.max_tokens = raw.max_completion_tokens.or(raw.max_tokens);
    request.temperature = raw.temperature;
    request.top_p = raw.top_p;
    request.stop = match raw.stop {
        None => Arc::from([]),
        Some(Stop::One(s)) => Arc::from([s]),
        Some(Stop::Many(v)) => v.into(),
    };
    request.tool_choice = tool_choice;
    request.parallel_tool_calls = raw.parallel_tool_calls;
    request.response_format = response_format;
    let mut extras = Extras::default();
    extras.set(Dialect::OpenAi, raw.rest);
    request.extra = Arc::new(extras);
    Ok(Decoded {
        request,
        stream: raw.stream.unwrap_or(false),
        include_usage: raw.stream_options.is_some_and(|o| o.include_usage),
    })
}

fn message(i: usize, m: InMessage) -> Result<Message, IngressError> {
    let content = match m.content {
        None => Content::default(),
        Some(InContent::Text(text)) => Content::Text(text),
        Some(InContent::Parts(parts)) => Content::Parts(
            parts
                .into_iter()
                .enumerate()
                .map(|(j, p)| part(i, j, p))
                .collect::<Result<_, _>>()?,
        ),
    };
    let mut message = Message::new(m.role, content);
    message.name = m.name;
    message.tool_calls = m
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(WireCall::into_call)
        .collect();
    message.tool_call_id = m.tool_call_id;
    if m.role == Role::Tool && message.tool_call_id.is_none() {
        return Err(field(
            format!("messages[{i}].tool_call_id"),
            "a tool message needs the id of the call it answers",
        ));
    }
    Ok(message)
}

fn part(i: usize, j: usize, mut p: Map<String, Value>) -> Result<ContentPart, IngressError> {
    let at = |name: &str| format!("messages[{i}].content[{j}].{name}");
    let kind = p.get("type").and_then(Value::as_str).unwrap_or_default();
    // The parts we model take exactly their documented fields: anything
    // else is a mistake the client should hear about, not drop silently.
    let allowed: &[&str] = match kind {
        "text" => &["type", "text"],
        "image_url" => &["type", "image_url"],
        _ => &[],
    };
    if !allowed.is_empty()
        && let Some(unknown) = p.keys().find(|k| !allowed.contains(&k.as_str()))
    {
        return Err(field(
            at(unknown),
            format!("unknown field in a {kind} part"),
        ));
    }
    match kind {
        "text" => match p.remove("text") {
            Some(Value::String(text)) => Ok(ContentPart::Text { text }),
            _ => Err(field(at("text"), "a text part needs a string `text`")),
        },
        "image_url" => {
            let image = p.get("image_url");
            let url = image
                .and_then(|i| i.get("url"))
                .and_then(Value::as_str)
                .ok_or_else(|| field(at("image_url.url"), "an image part needs a url"))?;
            let detail = image
                .and_then(|i| i.get("detail"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            Ok(match parse_data_url(url) {
                Some((media_type, data)) if detail.is_none() => {
                    ContentPart::image_base64(media_type, data)
                }
                _ => ContentPart::ImageUrl {
                    url: url.to_owned(),
                    detail,
                },
            })
        }
        "" => Err(field(at("type"), "every content part needs a type")),
        _ => Ok(ContentPart::Opaque {
            dialect: Dialect::OpenAi,
            part: Value::Object(p),
        }),
    }
}

/// Writes `response` as a Chat Completions answer: the text, the tool calls,
/// the refusal, the finish reason and the usage (cached and reasoning
/// tokens included), with `model` the model that actually answered.
///
/// Written straight into one buffer with its keys as fixed text, in the
/// order serde writes the answer's fields (sorted, as a
/// `serde_json::Value` object keeps them), so the bytes are those of the
/// answer serialized through serde: only the strings carried over from the
/// answer are escaped, not the two dozen keys of every answer.
pub fn encode_response(response: &ChatResponse, created: u64) -> Vec<u8> {
    let text = response.text();
    let calls = &response.message.tool_calls;
    let id = if response.id.is_empty() {
        "chatcmpl-staunch"
    } else {
        &response.id
    };
    let model = response.answered_model();
    // Sized for the whole answer: the fixed keys and numbers (about 330
    // bytes), what is carried over, an eighth more for escapes.
    let carried = text.len()
        + id.len()
        + model.len()
        + response.refusal.as_ref().map_or(0, String::len)
        + crate::json::calls_len(calls, 80);
    let mut out = Vec::with_capacity(360 + carried + carried / 8);
    out.extend_from_slice(b"{\"choices\":[{\"finish_reason\":\"");
    out.extend_from_slice(finish_reason(&response.finish_reason).as_bytes());
    out.extend_from_slice(b"\",\"index\":0,\"logprobs\":null,\"message\":{\"content\":");
    if !text.is_empty() || calls.is_empty() {
        json_str(&mut out, &text);
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"refusal\":");
    match &response.refusal {
        Some(refusal) => json_str(&mut out, refusal),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"role\":\"assistant\"");
    if !calls.is_empty() {
        out.extend_from_slice(b",\"tool_calls\":[");
        for (i, call) in calls.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"function\":{\"arguments\":");
            json_str(&mut out, &call.arguments);
            out.extend_from_slice(b",\"name\":");
            json_str(&mut out, &call.name);
            out.extend_from_slice(b"},\"id\":");
            json_str(&mut out, &call.id);
            out.extend_from_slice(b",\"type\":\"function\"}");
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}}],\"created\":");
    crate::json::push_u64(&mut out, created);
    out.extend_from_slice(b",\"id\":");
    json_str(&mut out, id);
    out.extend_from_slice(b",\"model\":");
    json_str(&mut out, model);
    out.extend_from_slice(b",\"object\":\"chat.completion\",\"usage\":");
    push_usage(&mut out, &response.usage);
    out.push(b'}');
    out
}

/// Appends a usage object as Chat Completions writes it (the bytes serde
/// writes for the tests' `UsageOut`): cached and reasoning tokens in their
/// detail objects, the keys sorted.
fn push_usage(out: &mut Vec<u8>, usage: &staunch_core::Usage) {
    use crate::json::push_u64;
    out.extend_from_slice(b"{\"completion_tokens\":");
    push_u64(out, usage.output_tokens);
    out.extend_from_slice(b",\"completion_tokens_details\":{\"reasoning_tokens\":");
    push_u64(out, usage.reasoning_tokens);
    out.extend_from_slice(b"},\"prompt_tokens\":");
    push_u64(out, usage.input_tokens);
    out.extend_from_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
    push_u64(out, usage.cached_input_tokens);
    out.extend_from_slice(b"},\"total_tokens\":");
    push_u64(out, usage.total());
    out.push(b'}');
}

/// A finish reason as Chat Completions names it; reasons it has no name
/// for are `stop`.
fn finish_reason(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        _ => "stop",
    }
}

/// Writes one event of a streamed answer as a Chat Completions chunk, the
/// way the official SDKs read them: `data: {chunk}` and a blank line. The
/// first call for a stream should pass `first: true` (its delta carries the
/// role). A usage event is written only when the client asked for it
/// (`include_usage`), as a chunk with no choices; other events always.
pub fn encode_chunk(
    event: &staunch_core::StreamEvent,
    id: &str,
    model: &str,
    created: u64,
    first: bool,
    include_usage: bool,
) -> Option<Vec<u8>> {
    use staunch_core::StreamEvent;
    use std::io::Write as _;
    // Written straight into the frame, with the keys in the order a
    // `serde_json::Value` keeps them (sorted), so the bytes are those of
    // the chunk built as a value: no map or string per key per token.
    // The frame's fixed text is about 200 bytes; room for the event's
    // strings and an eighth more for escapes, so that writing an ordinary
    // chunk does not grow the buffer (text made mostly of characters that
    // need escaping still can).
    let carried = match event {
        StreamEvent::TextDelta(text) => text.len(),
        StreamEvent::ToolCallDelta {
            id: call_id,
            name,
            arguments,
            ..
        } => {
            arguments.len()
                + call_id.as_ref().map_or(0, String::len)
                + name.as_ref().map_or(0, String::len)
        }
        _ => 0,
    };
    let mut out = Vec::with_capacity(256 + id.len() + model.len() + carried + carried / 8);
    out.extend_from_slice(b"data: {\"choices\":[");
    let role = if first { ",\"role\":\"assistant\"" } else { "" };
    match event {
        StreamEvent::TextDelta(text) => {
            out.extend_from_slice(b"{\"delta\":{\"content\":");
            json_str(&mut out, text);
            out.extend_from_slice(role.as_bytes());
            out.extend_from_slice(b"},\"finish_reason\":null");
        }
        StreamEvent::ToolCallDelta {
            index,
            id: call_id,
            name,
            arguments,
        } => {
            out.extend_from_slice(b"{\"delta\":{");
            if first {
                out.extend_from_slice(b"\"role\":\"assistant\",");
            }
            out.extend_from_slice(b"\"tool_calls\":[{\"function\":{\"arguments\":");
            json_str(&mut out, arguments);
            if let Some(name) = name {
                out.extend_from_slice(b",\"name\":");
                json_str(&mut out, name);
            }
            out.push(b'}');
            if let Some(call_id) = call_id {
                out.extend_from_slice(b",\"id\":");
                json_str(&mut out, call_id);
            }
            out.extend_from_slice(b",\"index\":");
            let _ = write!(out, "{index}");
            if call_id.is_some() {
                out.extend_from_slice(b",\"type\":\"function\"");
            }
            out.extend_from_slice(b"}]},\"finish_reason\":null");
        }
        StreamEvent::Finish(reason) => {
            out.extend_from_slice(b"{\"delta\":{");
            out.extend_from_slice(role.trim_start_matches(',').as_bytes());
            out.extend_from_slice(b"},\"finish_reason\":\"");
            out.extend_from_slice(finish_reason(reason).as_bytes());
            out.push(b'"');
        }
        StreamEvent::Usage(_) if include_usage => {}
        _ => return None,
    }
    if !matches!(event, StreamEvent::Usage(_)) {
        out.extend_from_slice(b",\"index\":0,\"logprobs\":null}");
    }
    out.extend_from_slice(b"],\"created\":");
    let _ = write!(out, "{created}");
    out.extend_from_slice(b",\"id\":");
    json_str(&mut out, id);
    out.extend_from_slice(b",\"model\":");
    json_str(&mut out, model);
    out.extend_from_slice(b",\"object\":\"chat.completion.chunk\"");
    if let StreamEvent::Usage(usage) = event {
        out.extend_from_slice(b",\"usage\":");
        push_usage(&mut out, usage);
    }
    out.extend_from_slice(b"}\n\n");
    Some(out)
}

/// Appends `text` as a JSON string, escaped as serde_json escapes it.
fn json_str(out: &mut Vec<u8>, text: &str) {
    crate::json::push_json_str(out, text);
}

/// A stream's in-band error, as OpenAI-compatible servers send one after
/// the stream began: `data: {"error": {...}}`. The connection should then
/// close without `[DONE]`, so that a client never takes the stream for
/// complete.
pub fn encode_stream_error(error: &staunch_core::LlmError) -> Vec<u8> {
    sse_data(&json!({"error": {
        "message": error.to_string(),
        "type": "staunch_error",
        "param": null,
        "code": error.kind.as_str(),
    }}))
}

/// The end of a complete stream: `data: [DONE]`.
pub const STREAM_DONE: &[u8] = b"data: [DONE]\n\n";

fn sse_data(value: &Value) -> Vec<u8> {
    let mut out = b"data: ".to_vec();
    // Serializing a JSON value can't fail.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    out
}

#[cfg(test)]
mod response_tests {
    use super::*;
    use crate::test_strategies::{chat_answer, json_text};
    use proptest::prelude::*;
    use staunch_core::{Content, Usage};

    /// The answer serialized through serde's derive, as the encoder did
    /// before it wrote the bytes itself: the oracle.
    fn through_serde(response: &ChatResponse, created: u64) -> Vec<u8> {
        let calls: Vec<CallOut<'_>> = response
            .message
            .tool_calls
            .iter()
            .map(|c| CallOut {
                function: FunctionOut {
                    arguments: &c.arguments,
                    name: &c.name,
                },
                id: &c.id,
                kind: "function",
            })
            .collect();
        let text = response.text();
        let body = CompletionOut {
            choices: [ChoiceOut {
                finish_reason: finish_reason(&response.finish_reason),
                index: 0,
                logprobs: (),
                message: MessageOut {
                    content: (!text.is_empty() || calls.is_empty()).then_some(text.as_ref()),
                    refusal: response.refusal.as_deref(),
                    role: "assistant",
                    tool_calls: calls,
                },
            }],
            created,
            id: if response.id.is_empty() {
                "chatcmpl-staunch"
            } else {
                &response.id
            },
            model: response.answered_model(),
            object: "chat.completion",
            usage: UsageOut::from(&response.usage),
        };
        serde_json::to_vec(&body).expect("an answer serializes")
    }

    // A completion as Chat Completions writes it, serialized straight from the
    // answer's borrowed parts. The fields are in the order the wire has always
    // had them (alphabetical, as a `serde_json::Value` object writes them).

    #[derive(serde::Serialize)]
    struct CompletionOut<'a> {
        choices: [ChoiceOut<'a>; 1],
        created: u64,
        id: &'a str,
        model: &'a str,
        object: &'static str,
        usage: UsageOut,
    }

    #[derive(serde::Serialize)]
    struct ChoiceOut<'a> {
        finish_reason: &'static str,
        index: u32,
        // Always `null`.
        logprobs: (),
        message: MessageOut<'a>,
    }

    #[derive(serde::Serialize)]
    struct MessageOut<'a> {
        content: Option<&'a str>,
        refusal: Option<&'a str>,
        role: &'static str,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<CallOut<'a>>,
    }

    #[derive(serde::Serialize)]
    struct CallOut<'a> {
        function: FunctionOut<'a>,
        id: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    }

    #[derive(serde::Serialize)]
    struct FunctionOut<'a> {
        arguments: &'a str,
        name: &'a str,
    }

    #[derive(serde::Serialize)]
    struct UsageOut {
        completion_tokens: u64,
        completion_tokens_details: ReasoningOut,
        prompt_tokens: u64,
        prompt_tokens_details: CachedOut,
        total_tokens: u64,
    }

    #[derive(serde::Serialize)]
    struct ReasoningOut {
        reasoning_tokens: u64,
    }

    #[derive(serde::Serialize)]
    struct CachedOut {
        cached_tokens: u64,
    }

    impl From<&staunch_core::Usage> for UsageOut {
        fn from(usage: &staunch_core::Usage) -> Self {
            UsageOut {
                completion_tokens: usage.output_tokens,
                completion_tokens_details: ReasoningOut {
                    reasoning_tokens: usage.reasoning_tokens,
                },
                prompt_tokens: usage.input_tokens,
                prompt_tokens_details: CachedOut {
                    cached_tokens: usage.cached_input_tokens,
                },
                total_tokens: usage.total(),
            }
        }
    }

    /// A usage object as Chat Completions writes it, cached and reasoning
    /// tokens in their detail objects.
    pub(super) fn usage_json(usage: &staunch_core::Usage) -> Value {
        serde_json::to_value(UsageOut::from(usage)).unwrap_or(Value::Null)
    }

    proptest! {
        #[test]
        fn written_by_hand_it_is_byte_for_byte_what_serde_writes(
            response in chat_answer(json_text().prop_map(Content::Text)),
            created in prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
        ) {
            let mine = encode_response(&response, created);
            let oracle = through_serde(&response, created);
            prop_assert_eq!(String::from_utf8_lossy(&mine), String::from_utf8_lossy(&oracle));
        }
    }

    #[test]
    fn a_plain_answer_reads_as_chat_completions_json() {
        let mut response = ChatResponse::new("gpt-4o", "hi \"there\"");
        response.usage = Usage::new(12, 3);
        let body: Value = serde_json::from_slice(&encode_response(&response, 7)).expect("JSON");
        assert_eq!(body["choices"][0]["message"]["content"], "hi \"there\"");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["created"], 7);
        assert_eq!(body["id"], "chatcmpl-staunch");
        assert_eq!(body["usage"]["total_tokens"], 15);
        assert!(body["choices"][0]["message"].get("tool_calls").is_none());
    }
}

#[cfg(test)]
mod chunk_tests {
    use super::response_tests::usage_json;
    use super::*;
    use staunch_core::{StreamEvent, Usage};

    /// The chunk built as a `serde_json::Value` and serialized, as the
    /// encoder did before it wrote the bytes itself: the oracle.
    fn through_a_value(
        event: &StreamEvent,
        id: &str,
        model: &str,
        created: u64,
        first: bool,
        include_usage: bool,
    ) -> Option<Vec<u8>> {
        let choice = |delta: Value, finish: Value| {
            json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        };
        let with_role = |mut delta: Value| {
            if first {
                delta["role"] = Value::from("assistant");
            }
            delta
        };
        let chunk = match event {
            StreamEvent::TextDelta(text) => {
                choice(with_role(json!({"content": text})), Value::Null)
            }
            StreamEvent::ToolCallDelta {
                index,
                id: call_id,
                name,
                arguments,
            } => {
                let mut call = json!({"index": index, "function": {"arguments": arguments}});
                if let Some(call_id) = call_id {
                    call["id"] = Value::from(call_id.as_str());
                    call["type"] = Value::from("function");
                }
                if let Some(name) = name {
                    call["function"]["name"] = Value::from(name.as_str());
                }
                choice(with_role(json!({"tool_calls": [call]})), Value::Null)
            }
            StreamEvent::Finish(reason) => {
                choice(with_role(json!({})), Value::from(finish_reason(reason)))
            }
            StreamEvent::Usage(usage) if include_usage => json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [],
                "usage": usage_json(usage),
            }),
            _ => return None,
        };
        let mut out = b"data: ".to_vec();
        serde_json::to_writer(&mut out, &chunk).unwrap();
        out.extend_from_slice(b"\n\n");
        Some(out)
    }

    #[test]
    fn chunks_are_written_byte_for_byte_as_through_a_value() {
        let texts = [
            "",
            "hi",
            "a \"quoted\" word\\ and a back\\slash",
            "new\nline, tab\t, nul \u{0} and \u{1f} bell \u{7}",
            "non-ASCII: héllo, 日本語, emoji 🦀, U+2028 \u{2028}",
            "</script><!-- html -->",
        ];
        let mut usage = Usage::new(12, 34);
        usage.cached_input_tokens = 5;
        usage.reasoning_tokens = 7;
        let mut events: Vec<StreamEvent> = texts
            .iter()
            .map(|t| StreamEvent::TextDelta((*t).to_owned()))
            .collect();
        for (i, text) in texts.iter().enumerate() {
            let some = |s: &str| (i % 2 == 0).then(|| s.to_owned());
            events.push(StreamEvent::ToolCallDelta {
                index: u32::try_from(i).unwrap() * 1000,
                id: some("call_\"1\""),
                name: (i % 3 == 0).then(|| (*text).to_owned()),
                arguments: format!("{{\"q\": {text:?}}}"),
            });
        }
        events.extend([
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::Finish(FinishReason::Length),
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::Finish(FinishReason::ContentFilter),
            StreamEvent::Finish(FinishReason::Other("odd".to_owned())),
            StreamEvent::Usage(Usage::new(0, 0)),
            StreamEvent::Usage(usage),
            StreamEvent::Continued {
                target: "spare".to_owned(),
            },
        ]);
        let mut compared = 0;
        for event in &events {
            for (id, model) in [
                ("chatcmpl-1", "gpt-4o-mini"),
                ("", ""),
                ("id \"with\" quotes\n", "modèle/日本"),
            ] {
                for created in [0, 1_733_500_000, u64::MAX] {
                    for first in [true, false] {
                        for include_usage in [true, false] {
                            let mine =
                                encode_chunk(event, id, model, created, first, include_usage);
                            let oracle =
                                through_a_value(event, id, model, created, first, include_usage);
                            assert_eq!(
                                mine.as_deref().map(String::from_utf8_lossy),
                                oracle.as_deref().map(String::from_utf8_lossy),
                                "{event:?} id={id:?} model={model:?} first={first} usage={include_usage}"
                            );
                            compared += usize::from(mine.is_some());
                        }
                    }
                }
            }
        }
        assert!(compared > 500, "only {compared} chunks compared");
    }
}
