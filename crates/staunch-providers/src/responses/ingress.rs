//! The ingress side of the Responses dialect: a `POST /v1/responses`
//! request from a client (the official SDKs, the OpenAI Agents SDK) read
//! into the neutral model, and a neutral answer written back as a Response
//! object, whole or as the typed stream events the SDKs read.
//!
//! The gateway keeps no state: a request that refers to stored state
//! (`store: true`, `previous_response_id`, `conversation`, `background`,
//! an `item_reference`) is refused with a message saying to send the whole
//! conversation with `store: false`.

use super::request::Format;
use super::response_object::{
    ItemId, ResponseObject, push_call_item, push_message_item, push_text_part, status,
    write_response,
};
use crate::openai::ingress::field;
use crate::openai::wire::IngressError;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use staunch_core::{
    ChatRequest, ChatResponse, Content, ContentPart, Dialect, ErrorKind, Extras, FinishReason,
    LlmError, Message, ResponseFormat, Role, StreamEvent, ToolCall, ToolChoice, ToolDefinition,
    Usage,
};
use std::collections::HashSet;
use std::sync::Arc;

/// This dialect.
const DIALECT: Dialect = Dialect::OpenAiResponses;

/// Why a stateful request is refused.
const STATELESS: &str = "this gateway keeps no state between requests: send the whole \
    conversation in `input` with `store: false` (function calls and their outputs included)";

/// What a Response object repeats of its request (its `instructions`,
/// `tools`, `tool_choice`, `text`, `temperature`, `metadata`...), taken
/// from the request when it was read.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ResponsesOptions {
    /// The request's settings, by their Response field names.
    echo: Map<String, Value>,
}

impl ResponsesOptions {
    /// The settings a Response repeats, by field name.
    pub fn echo(&self) -> &Map<String, Value> {
        &self.echo
    }
}

/// A Responses request read from a client.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Decoded {
    /// The neutral request (its `stream` as the client asked); fields only
    /// the Responses API understands are in its Responses extras.
    pub request: ChatRequest,
    /// What the answer repeats of the request.
    pub options: ResponsesOptions,
}

#[derive(Deserialize)]
struct InRequest {
    model: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    instructions: Option<Value>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    text: Option<Value>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    store: Option<bool>,
    #[serde(default)]
    background: Option<bool>,
    #[serde(default)]
    previous_response_id: Option<Value>,
    #[serde(default)]
    conversation: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Request fields a Response repeats as they were sent.
const ECHOED: [&str; 8] = [
    "metadata",
    "reasoning",
    "truncation",
    "user",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "top_logprobs",
];

/// Reads a Responses request body into the neutral model: `instructions`
/// (a system message first), `input` as text or items (messages,
/// `function_call`s, which merge into the assistant message before them,
/// `function_call_output`s; `reasoning` items are skipped), function
/// tools, tool choice, `text.format`, the sampling settings and `stream`;
/// any other field is kept as a Responses extra. Never panics; a bad body,
/// a tool other than a function, or a request that needs stored state is
/// an [`IngressError`] naming what is wrong.
///
/// ```
/// use staunch_core::{Dialect, Role};
/// use staunch_providers::responses::wire::decode_request;
/// let body = br#"{"model": "gpt-4.1", "instructions": "Be brief.", "store": false,
///   "input": [{"role": "user", "content": "Weather in Paris?"},
///             {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
///             {"type": "function_call_output", "call_id": "call_1", "output": "21 C"}],
///   "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": false}],
///   "include": []}"#;
/// let decoded = decode_request(body).unwrap();
/// let roles: Vec<Role> = decoded.request.messages.iter().map(|m| m.role).collect();
/// assert_eq!(roles, [Role::System, Role::User, Role::Assistant, Role::Tool]);
/// assert_eq!(decoded.request.extra.get(Dialect::OpenAiResponses)["include"], serde_json::json!([]));
/// ```
pub fn decode_request(body: &[u8]) -> Result<Decoded, IngressError> {
    let raw: InRequest = IngressError::parse(body)?;
    if raw.store == Some(true) {
        return Err(field("store", STATELESS));
    }
    if raw
        .previous_response_id
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return Err(field("previous_response_id", STATELESS));
    }
    if raw.conversation.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(field("conversation", STATELESS));
    }
    if raw.background == Some(true) {
        return Err(field(
            "background",
            "background responses need stored state, which this gateway does not keep: \
             send the request without `background`",
        ));
    }
    let mut messages = Vec::new();
    let instructions = match raw.instructions {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            if !text.is_empty() {
                messages.push(Message::system(text.as_str()));
            }
            Some(Value::String(text))
        }
        Some(Value::Array(items)) => {
            read_items("instructions", &items, &mut messages)?;
            Some(Value::Array(items))
        }
        Some(_) => {
            return Err(field(
                "instructions",
                "expected a string (or a list of input items)",
            ));
        }
    };
    match raw.input {
        Some(Value::String(text)) => messages.push(Message::user(text)),
        Some(Value::Array(items)) => read_items("input", &items, &mut messages)?,
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(field("input", "expected a string or a list of input items"));
        }
    }
    if messages.is_empty() {
        return Err(field(
            "input",
            "at least one input item (or `instructions`) is required",
        ));
    }
    let tools = match raw.tools {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) => tools
            .iter()
            .enumerate()
            .map(|(i, t)| tool(i, t))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(field("tools", "expected a list of tools")),
    };
    let tool_choice = match raw.tool_choice {
        None | Some(Value::Null) => None,
        Some(choice) => Some(tool_choice(&choice)?),
    };
    let mut rest = raw.rest;
    let mut text_settings = Map::new();
    let response_format = match raw.text {
        None | Some(Value::Null) => None,
        Some(Value::Object(mut text)) => {
            let format = match text.remove("format") {
                None | Some(Value::Null) => None,
                Some(format) => Some(response_format(&format)?),
            };
            text_settings = text;
            format
        }
        Some(_) => return Err(field("text", "expected an object")),
    };
    let mut echo = Map::new();
    echo.insert("instructions".into(), instructions.unwrap_or(Value::Null));
    for key in ECHOED {
        if let Some(v) = rest.get(key) {
            echo.insert(key.into(), v.clone());
        }
    }
    echo.insert("max_output_tokens".into(), json!(raw.max_output_tokens));
    echo.insert("temperature".into(), number(raw.temperature));
    echo.insert("top_p".into(), number(raw.top_p));
    echo.insert(
        "parallel_tool_calls".into(),
        json!(raw.parallel_tool_calls.unwrap_or(true)),
    );
    echo.insert("tools".into(), tools_json(&tools));
    echo.insert(
        "tool_choice".into(),
        choice_json(tool_choice.as_ref().unwrap_or(&ToolChoice::Auto)),
    );
    let mut text_echo = text_settings.clone();
    text_echo.insert(
        "format".into(),
        serde_json::to_value(Format(
            response_format.as_ref().unwrap_or(&ResponseFormat::Text),
        ))
        .unwrap_or(Value::Null),
    );
    echo.insert("text".into(), Value::Object(text_echo));
    if !text_settings.is_empty() {
        rest.insert("text".into(), Value::Object(text_settings));
    }

    let mut request = ChatRequest::new(raw.model, messages).with_tools(tools);
    request.max_tokens = raw.max_output_tokens;
    request.temperature = raw.temperature;
    request.top_p = raw.top_p;
    request.tool_choice = tool_choice;
    request.parallel_tool_calls = raw.parallel_tool_calls;
    request.response_format = response_format;
    let mut extras = Extras::default();
    extras.set(DIALECT, rest);
    request.extra = Arc::new(extras);
    Ok(Decoded {
        request: request.with_stream(raw.stream.unwrap_or(false)),
        options: ResponsesOptions { echo },
    })
}

/// A setting read as `f32`, written back as the client wrote it (`0.3`,
/// not `0.30000001192092896`).
fn number(value: Option<f32>) -> Value {
    value
        .and_then(|v| v.to_string().parse::<f64>().ok())
        .map_or(Value::Null, Value::from)
}

/// Reads a list of input items into `out`.
fn read_items(name: &str, items: &[Value], out: &mut Vec<Message>) -> Result<(), IngressError> {
    // The ids of the calls made so far, so that an output finds its call
    // without a scan of every message before it (that scan made a body of
    // many calls and outputs quadratic: 20,000 of each took seconds).
    let mut made: HashSet<String> = out
        .iter()
        .flat_map(|m| m.tool_calls.iter().map(|c| c.id.clone()))
        .collect();
    for (i, item) in items.iter().enumerate() {
        let at = |field: &str| format!("{name}[{i}].{field}");
        let Value::Object(item) = item else {
            return Err(field(
                format!("{name}[{i}]"),
                "an input item must be an object",
            ));
        };
        let kind = match item.get("type") {
            None => None,
            Some(Value::String(kind)) => Some(kind.as_str()),
            Some(_) => return Err(field(at("type"), "expected a string")),
        };
        match kind {
            None | Some("message") => out.push(message(&at, item)?),
            Some("function_call") => {
                let call = ToolCall::new(
                    required(item, "call_id", &at)?,
                    required(item, "name", &at)?,
                    match item.get("arguments") {
                        Some(Value::String(s)) => s.clone(),
                        None | Some(Value::Null) => String::new(),
                        Some(other @ Value::Object(_)) => other.to_string(),
                        Some(_) => {
                            return Err(field(
                                at("arguments"),
                                "expected the arguments' JSON text",
                            ));
                        }
                    },
                );
                made.insert(call.id.clone());
                // Calls made in one turn belong to the assistant message
                // before them (its text, or the calls before them).
                match out.last_mut() {
                    Some(last) if last.role == Role::Assistant => last.tool_calls.push(call),
                    _ => out.push(Message::assistant_tool_calls("", vec![call])),
                }
            }
            Some("function_call_output") => {
                let call_id = required(item, "call_id", &at)?;
                if !made.contains(&call_id) {
                    return Err(field(
                        at("call_id"),
                        format!(
                            "the output of call {call_id:?} answers no function_call before it; {STATELESS}"
                        ),
                    ));
                }
                let content = match item.get("output") {
                    Some(Value::String(text)) => Content::Text(text.clone()),
                    Some(Value::Array(parts)) => parts_content(&at("output"), parts, false)?,
                    _ => {
                        return Err(field(
                            at("output"),
                            "expected a string or a list of content parts",
                        ));
                    }
                };
                out.push(Message::tool_result(call_id, content));
            }
            // Reasoning is the model's own; other providers can't read it.
            Some("reasoning") => {}
            Some("item_reference") => return Err(field(at("type"), STATELESS)),
            Some(other) => {
                return Err(field(
                    at("type"),
                    format!(
                        "{other:?} items are not supported: this gateway serves messages and \
                         function tools (message, function_call, function_call_output and \
                         reasoning items)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A required, non-empty string field of an item.
fn required(
    item: &Map<String, Value>,
    name: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<String, IngressError> {
    match item.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(field(at(name), "a non-empty string is required")),
    }
}

fn message(
    at: &dyn Fn(&str) -> String,
    item: &Map<String, Value>,
) -> Result<Message, IngressError> {
    let role = match item.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("system") => Role::System,
        Some("developer") => Role::Developer,
        Some("assistant") => Role::Assistant,
        Some(other) => {
            return Err(field(
                at("role"),
                format!("expected user, system, developer or assistant, not {other:?}"),
            ));
        }
        None => return Err(field(at("role"), "a message needs a role")),
    };
    let content = match item.get("content") {
        Some(Value::String(text)) => Content::Text(text.clone()),
        Some(Value::Array(parts)) => parts_content(&at("content"), parts, role == Role::Assistant)?,
        _ => {
            return Err(field(
                at("content"),
                "expected a string or a list of content parts",
            ));
        }
    };
    Ok(Message::new(role, content))
}

/// Content parts: text (`input_text`, `output_text`, a `refusal`), images
/// by URL or `data:` URL; files, audio and images by file id kept as
/// Responses-only parts. One text part is plain text.
fn parts_content(at: &str, parts: &[Value], assistant: bool) -> Result<Content, IngressError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let Value::Object(p) = part else {
            return Err(field(
                format!("{at}[{j}]"),
                "a content part must be an object",
            ));
        };
        let at = |name: &str| format!("{at}[{j}].{name}");
        let text = |name: &str| match p.get(name) {
            Some(Value::String(s)) => Ok(ContentPart::text(s.as_str())),
            _ => Err(field(at(name), "a string is required")),
        };
        let kind = p.get("type").and_then(Value::as_str).unwrap_or_default();
        out.push(match kind {
            "input_text" | "output_text" | "text" => text("text")?,
            "refusal" if assistant => text("refusal")?,
            "input_image" => match p.get("image_url") {
                Some(Value::String(url)) => {
                    let detail = p
                        .get("detail")
                        .and_then(Value::as_str)
                        .filter(|d| *d != "auto")
                        .map(str::to_owned);
                    match crate::dialect::conversation::parse_data_url(url) {
                        Some((media_type, data)) if detail.is_none() => {
                            ContentPart::image_base64(media_type, data)
                        }
                        _ => ContentPart::ImageUrl {
                            url: url.clone(),
                            detail,
                        },
                    }
                }
                None | Some(Value::Null) if p.get("file_id").is_some_and(Value::is_string) => {
                    ContentPart::Opaque {
                        dialect: DIALECT,
                        part: part.clone(),
                    }
                }
                _ => {
                    return Err(field(
                        at("image_url"),
                        "an image needs an `image_url` (or a `file_id`)",
                    ));
                }
            },
            "input_file" | "input_audio" => ContentPart::Opaque {
                dialect: DIALECT,
                part: part.clone(),
            },
            "" => return Err(field(at("type"), "every content part needs a type")),
            other => {
                return Err(field(
                    at("type"),
                    format!("{other:?} content parts are not supported here"),
                ));
            }
        });
    }
    Ok(match out.as_slice() {
        [ContentPart::Text { text }] => Content::Text(text.clone()),
        _ => Content::Parts(out),
    })
}

fn tool(i: usize, t: &Value) -> Result<ToolDefinition, IngressError> {
    let at = |name: &str| format!("tools[{i}].{name}");
    let Value::Object(t) = t else {
        return Err(field(format!("tools[{i}]"), "a tool must be an object"));
    };
    match t.get("type").and_then(Value::as_str) {
        Some("function") => {}
        Some(other) => {
            return Err(field(
                at("type"),
                format!(
                    "{other:?} tools are not supported: this gateway serves function tools only \
                     (hosted tools such as web_search or file_search run inside OpenAI)"
                ),
            ));
        }
        None => return Err(field(at("type"), "a tool needs a type")),
    }
    let name = match t.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        _ => return Err(field(at("name"), "a function tool needs a name")),
    };
    let parameters = match t.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(field(at("parameters"), "expected a JSON Schema object")),
    };
    let mut tool = ToolDefinition::new(name, parameters);
    tool.description = match t.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => return Err(field(at("description"), "expected a string")),
    };
    tool.strict = match t.get("strict") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(field(at("strict"), "expected true or false")),
    };
    Ok(tool)
}

fn tool_choice(choice: &Value) -> Result<ToolChoice, IngressError> {
    match choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(field(
                "tool_choice",
                format!("expected auto, none, required or a function, not {other:?}"),
            )),
        },
        Value::Object(c) => match c.get("type").and_then(Value::as_str) {
            Some("function") => match c.get("name") {
                Some(Value::String(name)) if !name.is_empty() => Ok(ToolChoice::Tool(name.clone())),
                _ => Err(field("tool_choice.name", "a function choice needs a name")),
            },
            Some(other) => Err(field(
                "tool_choice.type",
                format!("only a function can be chosen here, not {other:?}"),
            )),
            None => Err(field("tool_choice.type", "a tool choice needs a type")),
        },
        _ => Err(field(
            "tool_choice",
            "expected auto, none, required or a function",
        )),
    }
}

fn response_format(format: &Value) -> Result<ResponseFormat, IngressError> {
    let Value::Object(f) = format else {
        return Err(field("text.format", "expected an object"));
    };
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let name = match f.get("name") {
                Some(Value::String(name)) if !name.is_empty() => name.clone(),
                _ => {
                    return Err(field(
                        "text.format.name",
                        "a JSON Schema format needs a name",
                    ));
                }
            };
            let schema = match f.get("schema") {
                Some(s @ Value::Object(_)) => s.clone(),
                _ => return Err(field("text.format.schema", "expected a JSON Schema object")),
            };
            let strict = match f.get("strict") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(_) => return Err(field("text.format.strict", "expected true or false")),
            };
            Ok(ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            })
        }
        Some(other) => Err(field(
            "text.format.type",
            format!("expected text, json_object or json_schema, not {other:?}"),
        )),
        None => Err(field("text.format.type", "a format needs a type")),
    }
}

/// Function tools as a Response lists them.
fn tools_json(tools: &[ToolDefinition]) -> Value {
    tools
        .iter()
        .map(|t| {
            json!({"type": "function", "name": t.name, "description": t.description,
                   "parameters": t.parameters, "strict": t.strict})
        })
        .collect()
}

fn choice_json(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Tool(name) => json!({"type": "function", "name": name}),
        _ => json!("auto"),
    }
}

/// A Response's id: the answer's own when it is one (`resp_…`), else one
/// made from it.
pub(crate) fn response_id(id: &str) -> String {
    if id.starts_with("resp_") {
        id.to_owned()
    } else {
        format!("resp_{id}")
    }
}

/// The part of a response id that names its items (`msg_…`, `fc_…`).
pub(super) fn id_suffix(id: &str) -> &str {
    id.strip_prefix("resp_").unwrap_or(id)
}

/// Writes `response` as a Response object: a `message` item with the text
/// (and the refusal) and a `function_call` item per tool call; status
/// `completed`, or `incomplete` with its reason for a token limit or a
/// content filter; the usage (cached and reasoning tokens included); the
/// request's settings from `options`; `model` the model that answered.
pub fn encode_response(
    response: &ChatResponse,
    options: &ResponsesOptions,
    created_at: u64,
) -> Vec<u8> {
    let id = response_id(&crate::ingress::answer_id(response, "resp_"));
    let suffix = id_suffix(&id);
    let text = response.text();
    let calls = &response.message.tool_calls;
    let carried = text.len()
        + response.refusal.as_ref().map_or(0, String::len)
        + crate::json::calls_len(calls, 160);
    let mut output = Vec::with_capacity(160 + carried + carried / 8);
    output.push(b'[');
    let with_text = !text.is_empty() && response.refusal.as_deref() != Some(&*text);
    if with_text || response.refusal.is_some() || calls.is_empty() {
        push_message_item(
            &mut output,
            ItemId {
                prefix: "msg_",
                name: suffix,
                index: None,
            },
            "completed",
            with_text.then_some(&*text),
            response.refusal.as_deref(),
        );
    }
    for (i, call) in calls.iter().enumerate() {
        if output.len() > 1 {
            output.push(b',');
        }
        push_call_item(
            &mut output,
            ItemId {
                prefix: "fc_",
                name: suffix,
                index: Some(i),
            },
            "completed",
            &call.id,
            &call.name,
            &call.arguments,
        );
    }
    output.push(b']');
    let (status, incomplete_details) = status(&response.finish_reason);
    let mut out = Vec::new();
    write_response(
        &mut out,
        &ResponseObject {
            id: &id,
            created_at,
            model: response.answered_model(),
            status,
            incomplete_details,
            error: None,
            output: &output,
            usage: Some(&response.usage),
            options,
        },
    );
    out
}

/// One output item of a streamed answer.
#[derive(Debug)]
enum Item {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        /// The neutral call index.
        index: u32,
    },
}

/// Writes a streamed answer as the Responses API's typed events, the way
/// the official SDKs read them: `response.created`, `response.in_progress`,
/// then per output item `response.output_item.added`, its deltas
/// (`response.content_part.added` and `response.output_text.delta` for
/// text, `response.function_call_arguments.delta` for a call), its `.done`
/// events and `response.output_item.done`; at the end
/// `response.completed` (or `response.incomplete`) with the whole Response.
/// Every event is `event: <type>` with `type` and a `sequence_number`
/// counting from 0 in its data. A failure after the commit point is a
/// `response.failed` event, and nothing follows it.
///
/// Each event is written straight into its frame, keys as fixed text in
/// the order a `serde_json::Value` object keeps them (sorted); its Response
/// and items through the same writers as a whole answer's.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    created_at: u64,
    options: ResponsesOptions,
    sequence: u64,
    started: bool,
    items: Vec<Item>,
    /// The item whose deltas are being written.
    open: Option<usize>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    /// A terminal event went out.
    ended: bool,
}

/// Opens an event's frame: its `event:` line and its data's `{`.
fn head(out: &mut Vec<u8>, kind: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: {");
}

/// Writes the event's `sequence_number`, then counts it.
fn push_sequence(out: &mut Vec<u8>, sequence: &mut u64) {
    out.extend_from_slice(b"\"sequence_number\":");
    crate::json::push_u64(out, *sequence);
    *sequence += 1;
}

/// Closes an event's frame: its `type`, the data's `}` and the blank line.
fn tail(out: &mut Vec<u8>, kind: &str) {
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\"}\n\n");
}

/// Writes `item` as a Response lists it, with `status`; a message with its
/// text part when `with_content`, else with none (as when announced).
fn push_item(out: &mut Vec<u8>, item: &Item, status: &str, with_content: bool) {
    match item {
        Item::Message { id, text } => push_message_item(
            out,
            ItemId::whole(id),
            status,
            with_content.then_some(text.as_str()),
            None,
        ),
        Item::Call {
            id,
            call_id,
            name,
            arguments,
            ..
        } => push_call_item(out, ItemId::whole(id), status, call_id, name, arguments),
    }
}

impl StreamEncoder {
    /// An encoder for a response `id` (`resp_…`; another id is prefixed)
    /// from `model`, repeating the request's settings from `options`.
    pub fn new(
        id: impl Into<String>,
        model: impl Into<String>,
        created_at: u64,
        options: ResponsesOptions,
    ) -> Self {
        StreamEncoder {
            id: response_id(&id.into()),
            model: model.into(),
            created_at,
            options,
            sequence: 0,
            started: false,
            items: Vec::new(),
            open: None,
            usage: None,
            finish: None,
            ended: false,
        }
    }

    /// The items so far, as the JSON text of a Response's `output`: the
    /// open one with `done_status`, the others `completed`.
    fn output(&self, done_status: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            2 + self
                .items
                .iter()
                .map(|item| match item {
                    Item::Message { id, text } => id.len() + text.len() + 160,
                    Item::Call {
                        id,
                        call_id,
                        name,
                        arguments,
                        ..
                    } => id.len() + call_id.len() + name.len() + arguments.len() + 120,
                })
                .sum::<usize>(),
        );
        out.push(b'[');
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let status = if self.open == Some(i) {
                done_status
            } else {
                "completed"
            };
            push_item(&mut out, item, status, true);
        }
        out.push(b']');
        out
    }

    /// The Response with `status` (its usage once no longer in progress),
    /// as JSON text.
    fn response(
        &self,
        status: &str,
        incomplete_details: &'static [u8],
        error: Option<(&'static str, &str)>,
        output: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        write_response(
            &mut out,
            &ResponseObject {
                id: &self.id,
                created_at: self.created_at,
                model: &self.model,
                status,
                incomplete_details,
                error,
                output,
                usage: if status == "in_progress" {
                    None
                } else {
                    self.usage.as_ref()
                },
                options: &self.options,
            },
        );
        out
    }

    /// Writes an event that carries a Response: `response.created`,
    /// `response.completed`, ….
    fn emit_response(&mut self, out: &mut Vec<u8>, kind: &str, response: &[u8]) {
        out.reserve(response.len() + 2 * kind.len() + 64);
        head(out, kind);
        out.extend_from_slice(b"\"response\":");
        out.extend_from_slice(response);
        out.push(b',');
        push_sequence(out, &mut self.sequence);
        tail(out, kind);
    }

    /// Writes `response.output_item.added` (`done` false: the item in
    /// progress, without content) or `response.output_item.done` for the
    /// item at `at`.
    fn emit_item(&mut self, out: &mut Vec<u8>, at: usize, done: bool) {
        let Some(item) = self.items.get(at) else {
            return;
        };
        let kind = if done {
            "response.output_item.done"
        } else {
            "response.output_item.added"
        };
        head(out, kind);
        out.extend_from_slice(b"\"item\":");
        let status = if done { "completed" } else { "in_progress" };
        push_item(out, item, status, done);
        out.extend_from_slice(b",\"output_index\":");
        crate::json::push_u64(out, at as u64);
        out.push(b',');
        push_sequence(out, &mut self.sequence);
        tail(out, kind);
    }

    /// Writes `response.content_part.added` (`done` false; its part's
    /// `text` is empty) or `response.content_part.done` (the whole `text`)
    /// for message `id` at `at`.
    fn emit_part(
        out: &mut Vec<u8>,
        sequence: &mut u64,
        done: bool,
        id: &str,
        at: usize,
        text: &str,
    ) {
        let kind = if done {
            "response.content_part.done"
        } else {
            "response.content_part.added"
        };
        head(out, kind);
        out.extend_from_slice(b"\"content_index\":0,\"item_id\":");
        crate::json::push_json_str(out, id);
        out.extend_from_slice(b",\"output_index\":");
        crate::json::push_u64(out, at as u64);
        out.extend_from_slice(b",\"part\":");
        push_text_part(out, text);
        out.push(b',');
        push_sequence(out, sequence);
        tail(out, kind);
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.response("in_progress", b"null", None, b"[]");
        self.emit_response(out, "response.created", &response);
        self.emit_response(out, "response.in_progress", &response);
    }

    /// Ends the open item: its `.done` events.
    fn close(&mut self, out: &mut Vec<u8>) {
        use crate::json::{push_json_str, push_u64};
        let Some(at) = self.open.take() else {
            return;
        };
        match self.items.get(at) {
            Some(Item::Message { id, text }) => {
                let kind = "response.output_text.done";
                head(out, kind);
                out.extend_from_slice(b"\"content_index\":0,\"item_id\":");
                push_json_str(out, id);
                out.extend_from_slice(b",\"logprobs\":[],\"output_index\":");
                push_u64(out, at as u64);
                out.push(b',');
                push_sequence(out, &mut self.sequence);
                out.extend_from_slice(b",\"text\":");
                push_json_str(out, text);
                tail(out, kind);
                Self::emit_part(out, &mut self.sequence, true, id, at, text);
            }
            Some(Item::Call {
                id,
                name,
                arguments,
                ..
            }) => {
                let kind = "response.function_call_arguments.done";
                head(out, kind);
                out.extend_from_slice(b"\"arguments\":");
                push_json_str(out, arguments);
                out.extend_from_slice(b",\"item_id\":");
                push_json_str(out, id);
                out.extend_from_slice(b",\"name\":");
                push_json_str(out, name);
                out.extend_from_slice(b",\"output_index\":");
                push_u64(out, at as u64);
                out.push(b',');
                push_sequence(out, &mut self.sequence);
                tail(out, kind);
            }
            None => return,
        }
        self.emit_item(out, at, true);
    }

    /// Opens a new item and announces it.
    fn open(&mut self, out: &mut Vec<u8>, item: Item) -> usize {
        self.close(out);
        let at = self.items.len();
        self.items.push(item);
        self.open = Some(at);
        self.emit_item(out, at, false);
        if let Some(Item::Message { id, .. }) = self.items.get(at) {
            Self::emit_part(out, &mut self.sequence, false, id, at, "");
        }
        at
    }

    fn item_id(&self, prefix: &str) -> String {
        format!("{prefix}_{}_{}", id_suffix(&self.id), self.items.len())
    }

    /// The bytes of one event (possibly none, possibly several SSE events).
    pub fn encode(&mut self, event: &StreamEvent) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        match event {
            StreamEvent::TextDelta(text) if !text.is_empty() => {
                self.start(&mut out);
                let open_message = self
                    .open
                    .filter(|&at| matches!(self.items.get(at), Some(Item::Message { .. })));
                let at = match open_message {
                    Some(at) => at,
                    None => {
                        let id = self.item_id("msg");
                        self.open(
                            &mut out,
                            Item::Message {
                                id,
                                text: String::new(),
                            },
                        )
                    }
                };
                let Some(Item::Message { id, text: so_far }) = self.items.get_mut(at) else {
                    return out;
                };
                so_far.push_str(text);
                write_delta(&mut out, &mut self.sequence, Delta::Text, id, at, text);
            }
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                self.start(&mut out);
                let known = self
                    .items
                    .iter()
                    .position(|item| matches!(item, Item::Call { index: i, .. } if i == index));
                let at = match known {
                    Some(at) => at,
                    None => {
                        let item_id = self.item_id("fc");
                        let call_id = id
                            .clone()
                            .unwrap_or_else(|| format!("call_{}_{index}", id_suffix(&self.id)));
                        self.open(
                            &mut out,
                            Item::Call {
                                id: item_id,
                                call_id,
                                name: name.clone().unwrap_or_default(),
                                arguments: String::new(),
                                index: *index,
                            },
                        )
                    }
                };
                if arguments.is_empty() {
                    return out;
                }
                let Some(Item::Call {
                    id,
                    arguments: so_far,
                    ..
                }) = self.items.get_mut(at)
                else {
                    return out;
                };
                so_far.push_str(arguments);
                write_delta(
                    &mut out,
                    &mut self.sequence,
                    Delta::Arguments,
                    id,
                    at,
                    arguments,
                );
            }
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            StreamEvent::Finish(reason) => self.finish = Some(reason.clone()),
            _ => {}
        }
        out
    }

    /// The end of a complete stream: the open item closed, then
    /// `response.completed` (`response.incomplete` for a token limit or a
    /// content filter) with the whole Response and its usage.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        self.start(&mut out);
        self.close(&mut out);
        self.ended = true;
        let (status, incomplete_details) =
            status(self.finish.as_ref().unwrap_or(&FinishReason::Stop));
        let response = self.response(status, incomplete_details, None, &self.output("completed"));
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit_response(&mut out, kind, &response);
        out
    }

    /// A failure after the commit point: `response.failed`, whose Response
    /// has `status: "failed"`, the error and the output so far. Nothing
    /// follows it, so no client takes the stream for complete.
    pub fn error(&mut self, error: &LlmError) -> Vec<u8> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        self.start(&mut out);
        self.ended = true;
        let code = match error.kind {
            ErrorKind::RateLimited | ErrorKind::QuotaExhausted => "rate_limit_exceeded",
            ErrorKind::ContentFiltered => "invalid_prompt",
            _ => "server_error",
        };
        let message = error.to_string();
        let response = self.response(
            "failed",
            b"null",
            Some((code, &message)),
            &self.output("incomplete"),
        );
        self.emit_response(&mut out, "response.failed", &response);
        out
    }
}

/// The two events a token can be: a message's text, a call's arguments.
#[derive(Clone, Copy, Debug)]
enum Delta {
    Text,
    Arguments,
}

impl Delta {
    fn kind(self) -> &'static str {
        match self {
            Delta::Text => "response.output_text.delta",
            Delta::Arguments => "response.function_call_arguments.delta",
        }
    }
}

/// Writes one token's delta event for item `item_id` at `output_index`
/// `at`, numbered `sequence` (then counted on): straight into the frame,
/// its bytes those of [`StreamEncoder::emit`]'s for the same data (keys
/// sorted), with no map or string made per key per token.
fn write_delta(
    out: &mut Vec<u8>,
    sequence: &mut u64,
    delta: Delta,
    item_id: &str,
    at: usize,
    text: &str,
) {
    use crate::json::{push_json_str, push_u64};
    let kind = delta.kind();
    out.reserve(2 * kind.len() + 120 + item_id.len() + text.len() + text.len() / 8);
    head(out, kind);
    if let Delta::Text = delta {
        out.extend_from_slice(b"\"content_index\":0,");
    }
    out.extend_from_slice(b"\"delta\":");
    push_json_str(out, text);
    out.extend_from_slice(b",\"item_id\":");
    push_json_str(out, item_id);
    if let Delta::Text = delta {
        out.extend_from_slice(b",\"logprobs\":[]");
    }
    out.extend_from_slice(b",\"output_index\":");
    push_u64(out, at as u64);
    out.push(b',');
    push_sequence(out, sequence);
    tail(out, kind);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: Value) -> Result<Decoded, IngressError> {
        decode_request(body.to_string().as_bytes())
    }

    fn error_field(body: Value) -> (String, String) {
        match decode(body) {
            Err(IngressError::Field { field, message }) => (field, message),
            other => panic!("{other:?}"),
        }
    }

    /// What `client.responses.create(model=..., input=..., instructions=...)`
    /// of the official Python SDK sends.
    #[test]
    fn the_python_sdks_simple_call() {
        let d = decode(json!({"model": "gpt-4.1", "input": "Tell me a joke",
                              "instructions": "You are a comedian."}))
        .expect("decodes");
        assert_eq!(d.request.model, "gpt-4.1");
        assert_eq!(
            &*d.request.messages,
            [
                Message::system("You are a comedian."),
                Message::user("Tell me a joke")
            ]
        );
        assert!(!d.request.stream);
        assert!(d.request.extra.get(DIALECT).is_empty());
        assert_eq!(d.options.echo()["instructions"], "You are a comedian.");
        assert_eq!(d.options.echo()["tool_choice"], "auto");
    }

    /// The second turn of `Runner.run` (openai-agents 0.24, openai 3.63)
    /// with one function tool, as it was sent: `store` left out, `include`
    /// empty, the model's function call sent back with its id and status.
    #[test]
    fn the_agents_sdks_body_as_sent() {
        let body = br#"{"model": "gpt-4.1", "include": [], "input": [{"content": "What's the weather in Tokyo?", "role": "user"}, {"arguments": "{\"city\":\"Tokyo\"}", "call_id": "call_1", "name": "get_weather", "type": "function_call", "id": "fc_c1_0", "status": "completed"}, {"call_id": "call_1", "output": "sunny in Tokyo", "type": "function_call_output"}], "instructions": "You are a helpful agent.", "tools": [{"name": "get_weather", "parameters": {"properties": {"city": {"title": "City", "type": "string"}}, "required": ["city"], "title": "get_weather_args", "type": "object", "additionalProperties": false}, "strict": true, "type": "function", "description": "Get the weather."}]}"#;
        let d = decode_request(body).expect("decodes");
        let r = &d.request;
        assert!(!r.stream);
        assert_eq!(
            &*r.messages,
            [
                Message::system("You are a helpful agent."),
                Message::user("What's the weather in Tokyo?"),
                Message::assistant_tool_calls(
                    "",
                    vec![ToolCall::new(
                        "call_1",
                        "get_weather",
                        "{\"city\":\"Tokyo\"}"
                    )]
                ),
                Message::tool_result("call_1", "sunny in Tokyo"),
            ]
        );
        assert_eq!(r.tools[0].strict, Some(true));
        assert_eq!(r.extra.get(DIALECT)["include"], json!([]));
        crate::anthropic::wire::check(r).expect("any target can take it");
    }

    /// The second turn of an Agents SDK run with one function tool: the
    /// model's output items sent back as they came, then the tool's output.
    #[test]
    fn the_agents_sdks_tool_turn() {
        let body = json!({
            "instructions": "You are a helpful agent.",
            "model": "gpt-4.1",
            "input": [
                {"content": "What's the weather in Tokyo?", "role": "user"},
                {"id": "rs_1", "summary": [], "type": "reasoning", "encrypted_content": "gAAA"},
                {"id": "msg_1", "content": [{"annotations": [], "text": "Let me check.", "type": "output_text", "logprobs": []}],
                 "role": "assistant", "status": "completed", "type": "message"},
                {"arguments": "{\"city\":\"Tokyo\"}", "call_id": "call_abc", "name": "get_weather",
                 "type": "function_call", "id": "fc_1", "status": "completed"},
                {"arguments": "{\"city\":\"Osaka\"}", "call_id": "call_def", "name": "get_weather",
                 "type": "function_call", "id": "fc_2", "status": "completed"},
                {"call_id": "call_abc", "output": "sunny", "type": "function_call_output"},
                {"call_id": "call_def", "output": [{"type": "input_text", "text": "rain"}], "type": "function_call_output"}
            ],
            "include": [],
            "tools": [{"name": "get_weather", "parameters": {"properties": {"city": {"title": "City", "type": "string"}},
                       "required": ["city"], "title": "get_weather_args", "type": "object", "additionalProperties": false},
                       "strict": true, "type": "function", "description": "Get the weather."}],
            "stream": true,
            "parallel_tool_calls": false,
            "tool_choice": "required",
            "top_p": 0.5,
            "truncation": "auto",
            "prompt_cache_key": "k1",
            "metadata": {"run": "1"}
        });
        let d = decode(body).expect("decodes");
        let r = &d.request;
        assert!(r.stream);
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::Tool
            ]
        );
        assert_eq!(r.messages[2].text(), "Let me check.");
        assert_eq!(
            r.messages[2].tool_calls,
            [
                ToolCall::new("call_abc", "get_weather", "{\"city\":\"Tokyo\"}"),
                ToolCall::new("call_def", "get_weather", "{\"city\":\"Osaka\"}"),
            ]
        );
        assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("call_abc"));
        assert_eq!(r.messages[3].text(), "sunny");
        assert_eq!(r.messages[4].text(), "rain");
        assert_eq!(r.tools[0].name, "get_weather");
        assert_eq!(r.tools[0].strict, Some(true));
        assert_eq!(r.tools[0].description.as_deref(), Some("Get the weather."));
        assert_eq!(r.tool_choice, Some(ToolChoice::Required));
        assert_eq!(r.parallel_tool_calls, Some(false));
        assert_eq!(r.top_p, Some(0.5));
        let extra = r.extra.get(DIALECT);
        for key in ["include", "truncation", "prompt_cache_key", "metadata"] {
            assert!(extra.contains_key(key), "{key}");
        }
        let echo = d.options.echo();
        assert_eq!(echo["metadata"], json!({"run": "1"}));
        assert_eq!(echo["parallel_tool_calls"], false);
        assert_eq!(echo["tools"][0]["strict"], true);
        // The neutral request is one any target can take.
        crate::openai::wire::check(r).expect("a valid conversation");
        crate::anthropic::wire::check(r).expect("a valid conversation");
    }

    #[test]
    fn store_and_stored_state() {
        let base = || json!({"model": "m", "input": "hi"});
        for store in [json!(false), Value::Null] {
            let mut body = base();
            body["store"] = store;
            decode(body).expect("no state asked for");
        }
        decode(base()).expect("store left out");
        let mut body = base();
        body["previous_response_id"] = Value::Null;
        decode(body).expect("a null previous_response_id");

        for (key, value) in [
            ("store", json!(true)),
            ("previous_response_id", json!("resp_123")),
            ("conversation", json!("conv_1")),
            ("conversation", json!({"id": "conv_1"})),
        ] {
            let mut body = base();
            body[key] = value;
            let (field, message) = error_field(body);
            assert_eq!(field, key);
            assert!(message.contains("keeps no state"), "{message}");
            assert!(message.contains("store: false"), "{message}");
        }
        let mut body = base();
        body["background"] = json!(true);
        assert_eq!(error_field(body).0, "background");
        let body = json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]});
        assert_eq!(error_field(body).0, "input[0].type");
    }

    #[test]
    fn formats_choices_and_parts() {
        let d = decode(json!({"model": "m", "input": [
                {"type": "message", "role": "developer", "content": "Answer in JSON."},
                {"role": "user", "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"},
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "high"},
                    {"type": "input_image", "file_id": "file-1", "detail": "auto"},
                    {"type": "input_file", "file_id": "file-2"}]},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}],
            "text": {"format": {"type": "json_schema", "name": "thing", "schema": {"type": "object"}, "strict": true},
                     "verbosity": "low"},
            "tool_choice": {"type": "function", "name": "f"},
            "max_output_tokens": 50, "temperature": 0.2}))
        .expect("decodes");
        let r = &d.request;
        assert_eq!(r.messages[0].role, Role::Developer);
        let Content::Parts(parts) = &r.messages[1].content else {
            panic!("parts")
        };
        assert_eq!(parts[1], ContentPart::image_base64("image/png", "AAAA"));
        assert_eq!(
            parts[2],
            ContentPart::ImageUrl {
                url: "https://x/y.png".into(),
                detail: Some("high".into())
            }
        );
        assert!(matches!(&parts[3], ContentPart::Opaque { dialect, .. } if *dialect == DIALECT));
        assert!(matches!(&parts[4], ContentPart::Opaque { dialect, .. } if *dialect == DIALECT));
        assert_eq!(r.messages[2].text(), "No.");
        assert_eq!(
            r.response_format,
            Some(ResponseFormat::json_schema("thing", json!({"type": "object"})).with_strict(true))
        );
        assert_eq!(r.extra.get(DIALECT)["text"], json!({"verbosity": "low"}));
        assert_eq!(r.tool_choice, Some(ToolChoice::Tool("f".into())));
        assert_eq!(r.max_tokens, Some(50));
        assert_eq!(
            d.options.echo()["text"],
            json!({"format": {"type": "json_schema", "name": "thing", "schema": {"type": "object"}, "strict": true},
                   "verbosity": "low"})
        );
        for (format, want) in [
            (json!({"type": "text"}), ResponseFormat::Text),
            (json!({"type": "json_object"}), ResponseFormat::JsonObject),
        ] {
            let d = decode(json!({"model": "m", "input": "x", "text": {"format": format}}))
                .expect("decodes");
            assert_eq!(d.request.response_format, Some(want));
        }
    }

    /// Every output finds its call in constant time: 20,000 calls and
    /// 20,000 outputs of the last one (2.3 MB, under the gateway's default
    /// body limit) took 5.8 s of a debug build when each output scanned
    /// every message before it (found by `tests/parsers_fuzz.rs`).
    #[test]
    fn many_calls_and_outputs_are_read_in_linear_time() {
        let n = 20_000;
        let mut input: Vec<Value> = (0..n)
            .map(|i| json!({"type": "function_call", "call_id": format!("c{i}"), "name": "f"}))
            .collect();
        input.extend((0..n).map(|_| {
            json!({"type": "function_call_output", "call_id": format!("c{}", n - 1), "output": ""})
        }));
        let started = std::time::Instant::now();
        let d = decode(json!({"model": "m", "input": input})).expect("decodes");
        let elapsed = started.elapsed();
        assert_eq!(d.request.messages.len(), 1 + n);
        assert_eq!(d.request.messages[0].tool_calls.len(), n);
        // About 0.25 s unloaded; the scan took 5.8 s here.
        assert!(elapsed < std::time::Duration::from_secs(3), "{elapsed:?}");
        // A call made in `instructions` is answered in `input`, as before.
        let d = decode(json!({"model": "m",
            "instructions": [{"type": "function_call", "call_id": "c0", "name": "f"}],
            "input": [{"type": "function_call_output", "call_id": "c0", "output": "x"}]}))
        .expect("decodes");
        assert_eq!(d.request.messages[1].tool_call_id.as_deref(), Some("c0"));
    }

    #[test]
    fn every_bad_input_is_a_clear_error() {
        let cases = [
            (json!({"model": "m", "input": 7}), "input"),
            (json!({"model": "m"}), "input"),
            (json!({"model": "m", "input": []}), "input"),
            (json!({"model": "m", "input": [7]}), "input[0]"),
            (
                json!({"model": "m", "input": [{"type": 1}]}),
                "input[0].type",
            ),
            (
                json!({"model": "m", "input": [{"type": "web_search_call", "id": "ws_1"}]}),
                "input[0].type",
            ),
            (
                json!({"model": "m", "input": [{"content": "x"}]}),
                "input[0].role",
            ),
            (
                json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}),
                "input[0].role",
            ),
            (
                json!({"model": "m", "input": [{"role": "user"}]}),
                "input[0].content",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [7]}]}),
                "input[0].content[0]",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"text": "x"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}),
                "input[0].content[0].text",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_video"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]}),
                "input[0].content[0].image_url",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "refusal", "refusal": "x"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
                "input[0].call_id",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]}),
                "input[0].name",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": 3}]}),
                "input[0].arguments",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}),
                "input[0].call_id",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f"},
                                            {"type": "function_call_output", "call_id": "c"}]}),
                "input[1].output",
            ),
            (
                json!({"model": "m", "input": "x", "instructions": 7}),
                "instructions",
            ),
            (json!({"model": "m", "input": "x", "tools": {}}), "tools"),
            (
                json!({"model": "m", "input": "x", "tools": [7]}),
                "tools[0]",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "web_search_preview"}]}),
                "tools[0].type",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"name": "f"}]}),
                "tools[0].type",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
                "tools[0].name",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f", "parameters": "x"}]}),
                "tools[0].parameters",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f", "strict": "yes"}]}),
                "tools[0].strict",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f", "description": 1}]}),
                "tools[0].description",
            ),
            (
                json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
                "tool_choice",
            ),
            (
                json!({"model": "m", "input": "x", "tool_choice": 1}),
                "tool_choice",
            ),
            (
                json!({"model": "m", "input": "x", "tool_choice": {"type": "file_search"}}),
                "tool_choice.type",
            ),
            (
                json!({"model": "m", "input": "x", "tool_choice": {"type": "function"}}),
                "tool_choice.name",
            ),
            (
                json!({"model": "m", "input": "x", "tool_choice": {}}),
                "tool_choice.type",
            ),
            (json!({"model": "m", "input": "x", "text": "json"}), "text"),
            (
                json!({"model": "m", "input": "x", "text": {"format": "json"}}),
                "text.format",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"format": {}}}),
                "text.format.type",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}}),
                "text.format.type",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}),
                "text.format.name",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}),
                "text.format.schema",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n", "schema": {}, "strict": 1}}}),
                "text.format.strict",
            ),
        ];
        for (body, want) in cases {
            let (field, message) = error_field(body.clone());
            assert_eq!(field, want, "{body}: {message}");
            assert!(!message.is_empty());
        }
        let (_, message) =
            error_field(json!({"model": "m", "input": "x", "tools": [{"type": "file_search"}]}));
        assert!(
            message.contains("file_search") && message.contains("function tools only"),
            "{message}"
        );

        // Not JSON, not a request, wrong types: errors, never panics.
        for body in [
            &b""[..],
            b"{",
            b"[]",
            b"null",
            b"\xff",
            br#"{"input": "x"}"#,
            br#"{"model": 1, "input": "x"}"#,
            br#"{"model": "m", "input": "x", "temperature": "hot"}"#,
            br#"{"model": "m", "input": "x", "max_output_tokens": -1}"#,
            br#"{"model": "m", "input": "x", "stream": "yes"}"#,
        ] {
            assert!(
                decode_request(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    fn whole(answer: &ChatResponse) -> Value {
        serde_json::from_slice(&encode_response(
            answer,
            &ResponsesOptions::default(),
            1_700_000_000,
        ))
        .expect("JSON")
    }

    /// The fields the SDKs' `Response` model requires, and those its
    /// `Optional` fields default from.
    fn assert_response_shape(r: &Value) {
        for key in [
            "id",
            "created_at",
            "model",
            "object",
            "output",
            "parallel_tool_calls",
            "tool_choice",
            "tools",
            "error",
            "incomplete_details",
            "instructions",
            "metadata",
            "temperature",
            "top_p",
            "status",
            "text",
            "usage",
        ] {
            assert!(r.get(key).is_some(), "{key} missing from {r}");
        }
        assert_eq!(r["object"], "response");
        assert!(
            r["id"].as_str().is_some_and(|id| id.starts_with("resp_")),
            "{r}"
        );
        assert!(r["output"].is_array());
        assert!(r["tools"].is_array());
        assert!(r["parallel_tool_calls"].is_boolean());
    }

    #[test]
    fn a_text_answer_as_a_response_object() {
        let answer = ChatResponse::new("gpt-4.1-2025-04-14", "Hello!")
            .with_id("chatcmpl-9")
            .with_usage(Usage::new(20, 5).with_cached_input(8).with_reasoning(2));
        let r = whole(&answer);
        assert_response_shape(&r);
        assert_eq!(r["id"], "resp_chatcmpl-9");
        assert_eq!(r["status"], "completed");
        assert_eq!(r["error"], Value::Null);
        assert_eq!(r["incomplete_details"], Value::Null);
        assert_eq!(r["created_at"], 1_700_000_000);
        assert_eq!(
            r["output"],
            json!([{"id": "msg_chatcmpl-9", "type": "message", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}]}])
        );
        assert_eq!(
            r["usage"],
            json!({"input_tokens": 20, "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
                   "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 25})
        );
    }

    #[test]
    fn tool_calls_limits_and_refusals_as_response_objects() {
        let answer = ChatResponse::tool_calls(
            "m",
            vec![
                ToolCall::new("call_1", "get_weather", "{\"city\":\"Paris\"}"),
                ToolCall::new("toolu_2", "now", "{}"),
            ],
        )
        .with_id("resp_abc");
        let r = whole(&answer);
        assert_response_shape(&r);
        assert_eq!(r["id"], "resp_abc");
        assert_eq!(
            r["output"],
            json!([
                {"id": "fc_abc_0", "type": "function_call", "status": "completed", "call_id": "call_1",
                 "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"id": "fc_abc_1", "type": "function_call", "status": "completed", "call_id": "toolu_2",
                 "name": "now", "arguments": "{}"},
            ])
        );

        let cut = ChatResponse::new("m", "Once upon").with_finish_reason(FinishReason::Length);
        let r = whole(&cut);
        assert_eq!(r["status"], "incomplete");
        assert_eq!(
            r["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        let filtered = ChatResponse::new("m", "").with_finish_reason(FinishReason::ContentFilter);
        assert_eq!(
            whole(&filtered)["incomplete_details"],
            json!({"reason": "content_filter"})
        );

        let mut refused = ChatResponse::new("m", "I can't.");
        refused.refusal = Some("I can't.".into());
        let r = whole(&refused);
        assert_eq!(
            r["output"][0]["content"],
            json!([{"type": "refusal", "refusal": "I can't."}])
        );
        // An empty answer still has its message.
        let r = whole(&ChatResponse::new("m", ""));
        assert_eq!(r["output"][0]["content"], json!([]));
    }

    #[test]
    fn a_response_repeats_its_request() {
        let d = decode(json!({"model": "m", "input": "x", "instructions": "Be kind.", "temperature": 0.5,
                              "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": false}],
                              "tool_choice": "none", "metadata": {"a": "b"}, "max_output_tokens": 9,
                              "reasoning": {"effort": "low"}, "user": "u1"}))
        .expect("decodes");
        let r: Value = serde_json::from_slice(&encode_response(
            &ChatResponse::new("m", "ok"),
            &d.options,
            1,
        ))
        .expect("JSON");
        assert_response_shape(&r);
        assert_eq!(r["instructions"], "Be kind.");
        assert_eq!(r["temperature"], 0.5);
        assert_eq!(r["tool_choice"], "none");
        assert_eq!(
            r["tools"],
            json!([{"type": "function", "name": "f", "description": null,
                                        "parameters": {"type": "object"}, "strict": false}])
        );
        assert_eq!(r["metadata"], json!({"a": "b"}));
        assert_eq!(r["max_output_tokens"], 9);
        assert_eq!(r["reasoning"], json!({"effort": "low"}));
        assert_eq!(r["user"], "u1");
        assert_eq!(r["text"], json!({"format": {"type": "text"}}));
        assert_eq!(r["store"], false);
    }

    /// The events of an encoded stream: (SSE event name, data).
    fn sse(bytes: &[u8]) -> Vec<(String, Value)> {
        let mut d = crate::sse::SseDecoder::new(1 << 20);
        d.push(bytes).expect("within the bound");
        assert!(!d.has_partial());
        std::iter::from_fn(|| d.next_frame())
            .map(|f| {
                let data: Value = serde_json::from_str(&f.data).expect("JSON");
                (f.event.unwrap_or_default(), data)
            })
            .collect()
    }

    fn run(events: &[StreamEvent], end: Option<&LlmError>) -> Vec<(String, Value)> {
        let mut e = StreamEncoder::new("resp_1", "gpt-4.1", 7, ResponsesOptions::default());
        let mut out = Vec::new();
        for event in events {
            out.extend(e.encode(event));
        }
        match end {
            None => out.extend(e.finish()),
            Some(error) => out.extend(e.error(error)),
        }
        let events = sse(&out);
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], name.as_str(), "the event names its type");
            assert_eq!(data["sequence_number"], i, "sequence numbers count from 0");
        }
        events
    }

    fn names(events: &[(String, Value)]) -> Vec<&str> {
        events.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn a_text_stream() {
        let events = run(
            &[
                StreamEvent::TextDelta("Hel".into()),
                StreamEvent::TextDelta("lo".into()),
                StreamEvent::Finish(FinishReason::Stop),
                StreamEvent::Usage(Usage::new(10, 2)),
            ],
            None,
        );
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_eq!(events[0].1["response"]["status"], "in_progress");
        assert_eq!(events[0].1["response"]["output"], json!([]));
        assert_response_shape(&events[0].1["response"]);
        assert_eq!(events[2].1["item"]["content"], json!([]));
        assert_eq!(events[2].1["output_index"], 0);
        let item_id = events[2].1["item"]["id"].clone();
        assert_eq!(events[3].1["item_id"], item_id);
        assert_eq!(events[4].1["delta"], "Hel");
        assert_eq!(events[4].1["content_index"], 0);
        assert_eq!(events[4].1["logprobs"], json!([]));
        assert_eq!(events[6].1["text"], "Hello");
        assert_eq!(events[7].1["part"]["text"], "Hello");
        assert_eq!(events[8].1["item"]["status"], "completed");
        let done = &events[9].1["response"];
        assert_response_shape(done);
        assert_eq!(done["status"], "completed");
        assert_eq!(done["id"], "resp_1");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["usage"]["total_tokens"], 12);
    }

    #[test]
    fn a_tool_call_stream() {
        let call =
            |index, id: Option<&str>, name: Option<&str>, args: &str| StreamEvent::ToolCallDelta {
                index,
                id: id.map(str::to_owned),
                name: name.map(str::to_owned),
                arguments: args.into(),
            };
        let events = run(
            &[
                StreamEvent::TextDelta("Checking.".into()),
                call(0, Some("call_a"), Some("get_weather"), ""),
                call(0, None, None, "{\"city\":"),
                call(0, None, None, "\"Paris\"}"),
                call(1, Some("call_b"), Some("now"), "{}"),
                StreamEvent::Finish(FinishReason::ToolCalls),
            ],
            None,
        );
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let added = &events[8].1;
        assert_eq!(added["output_index"], 1);
        assert_eq!(added["item"]["type"], "function_call");
        assert_eq!(added["item"]["call_id"], "call_a");
        assert_eq!(added["item"]["arguments"], "");
        assert_eq!(events[9].1["item_id"], added["item"]["id"]);
        assert_eq!(events[11].1["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(events[11].1["name"], "get_weather");
        let done = &events[17].1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"].as_array().map(Vec::len), Some(3));
        assert_eq!(done["output"][2]["call_id"], "call_b");
        assert_eq!(done["output"][2]["arguments"], "{}");
    }

    #[test]
    fn a_failure_after_the_commit_point() {
        let events = run(
            &[StreamEvent::TextDelta("Hel".into())],
            Some(&LlmError::new(ErrorKind::Timeout, "the stream stalled")),
        );
        let names = names(&events);
        assert_eq!(names.last(), Some(&"response.failed"));
        assert!(!names.contains(&"response.completed"));
        assert!(!names.contains(&"response.output_item.done"));
        let failed = &events[events.len() - 1].1["response"];
        assert_response_shape(failed);
        assert_eq!(failed["status"], "failed");
        assert_eq!(failed["error"]["code"], "server_error");
        assert!(
            failed["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("stalled"))
        );
        assert_eq!(failed["output"][0]["status"], "incomplete");
        assert_eq!(failed["output"][0]["content"][0]["text"], "Hel");

        let events = run(&[], Some(&LlmError::new(ErrorKind::RateLimited, "429")));
        assert_eq!(
            names_of(&events),
            [
                "response.created",
                "response.in_progress",
                "response.failed"
            ]
        );
        assert_eq!(
            events[2].1["response"]["error"]["code"],
            "rate_limit_exceeded"
        );

        // Nothing follows a terminal event.
        let mut e = StreamEncoder::new("x", "m", 0, ResponsesOptions::default());
        assert!(!e.error(&LlmError::new(ErrorKind::Server, "x")).is_empty());
        assert!(e.encode(&StreamEvent::TextDelta("late".into())).is_empty());
        assert!(e.finish().is_empty());
    }

    fn names_of(events: &[(String, Value)]) -> Vec<&str> {
        names(events)
    }

    #[test]
    fn an_incomplete_stream_and_an_empty_one() {
        let events = run(
            &[
                StreamEvent::TextDelta("Once".into()),
                StreamEvent::Finish(FinishReason::Length),
            ],
            None,
        );
        let last = &events[events.len() - 1];
        assert_eq!(last.0, "response.incomplete");
        assert_eq!(
            last.1["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        let events = run(&[StreamEvent::Finish(FinishReason::Stop)], None);
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.completed"
            ]
        );
        // The id is a Response id whatever the provider called it.
        let mut e = StreamEncoder::new("msg_01X", "m", 0, ResponsesOptions::default());
        let events = sse(&e.finish());
        assert_eq!(events[0].1["response"]["id"], "resp_msg_01X");
    }
}

#[cfg(test)]
mod delta_tests {
    use super::super::value_oracle::ValueStreamEncoder;
    use super::*;
    use crate::test_strategies::json_text;
    use proptest::prelude::*;

    /// A delta event built as a value and written by `emit`, as the
    /// encoder wrote every token's event before: the oracle.
    fn through_a_value(
        delta: Delta,
        item_id: &str,
        at: usize,
        text: &str,
        sequence: u64,
    ) -> Vec<u8> {
        let mut encoder =
            ValueStreamEncoder::new("resp_1", "gpt-4o", 0, ResponsesOptions::default());
        encoder.sequence = sequence;
        let data = match delta {
            Delta::Text => json!({"item_id": item_id, "output_index": at, "content_index": 0,
                                  "delta": text, "logprobs": []}),
            Delta::Arguments => json!({"item_id": item_id, "output_index": at, "delta": text}),
        };
        let mut out = Vec::new();
        encoder.emit(&mut out, delta.kind(), data);
        assert_eq!(encoder.sequence, sequence + 1);
        out
    }

    proptest! {
        #[test]
        fn a_token_s_event_written_by_hand_is_what_the_value_wrote(
            text in json_text(),
            item_id in json_text(),
            at in prop_oneof![Just(0usize), any::<u32>().prop_map(|n| n as usize)],
            sequence in prop_oneof![Just(0u64), Just(u64::MAX - 1), any::<u64>().prop_map(|n| n / 2)],
            arguments in any::<bool>(),
        ) {
            let delta = if arguments { Delta::Arguments } else { Delta::Text };
            let mut mine = Vec::new();
            let mut next = sequence;
            write_delta(&mut mine, &mut next, delta, &item_id, at, &text);
            prop_assert_eq!(next, sequence + 1);
            let oracle = through_a_value(delta, &item_id, at, &text, sequence);
            prop_assert_eq!(String::from_utf8_lossy(&mine), String::from_utf8_lossy(&oracle));
        }
    }
}

#[cfg(test)]
mod answer_tests {
    use super::super::value_oracle::{call_item, message_item, response_json, status, text_part};
    use super::*;
    use crate::test_strategies::{chat_answer, json_text, same_output};
    use proptest::prelude::*;
    use staunch_core::Content;

    /// The Response built as a value and serialized, as the encoder did
    /// before it wrote the bytes itself: the oracle.
    fn through_a_value(
        response: &ChatResponse,
        options: &ResponsesOptions,
        created_at: u64,
    ) -> Vec<u8> {
        let id = response_id(&crate::ingress::answer_id(response, "resp_"));
        let suffix = id_suffix(&id);
        let mut output = Vec::with_capacity(1 + response.message.tool_calls.len());
        let text = response.text();
        let mut content = Vec::new();
        if !text.is_empty() && response.refusal.as_deref() != Some(&*text) {
            content.push(text_part(&text));
        }
        if let Some(refusal) = &response.refusal {
            content.push(json!({"type": "refusal", "refusal": refusal}));
        }
        if !content.is_empty() || response.message.tool_calls.is_empty() {
            output.push(message_item(&format!("msg_{suffix}"), "completed", content));
        }
        for (i, c) in response.message.tool_calls.iter().enumerate() {
            output.push(call_item(
                &format!("fc_{suffix}_{i}"),
                "completed",
                &c.id,
                &c.name,
                &c.arguments,
            ));
        }
        let (status, details) = status(&response.finish_reason);
        let body = response_json(
            &id,
            created_at,
            response.answered_model(),
            status,
            details,
            Value::Null,
            output,
            Some(&response.usage),
            options,
        );
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// A request's settings as a Response repeats them: the usual names,
    /// names the answer's own fields take back, and any other name.
    pub(super) fn echo() -> impl Strategy<Value = Map<String, Value>> {
        let key = prop_oneof![
            prop::sample::select(vec![
                "instructions",
                "metadata",
                "tools",
                "temperature",
                "text",
                "top_p",
                "include",
                "prompt_cache_key",
                "model",
                "id",
                "usage",
                "status",
                "a",
                "zz",
            ])
            .prop_map(str::to_owned),
            json_text(),
        ];
        let value = prop_oneof![
            Just(Value::Null),
            json_text().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (json_text(), any::<bool>()).prop_map(|(k, b)| json!({k: b, "list": [1, null]})),
        ];
        proptest::collection::btree_map(key, value, 0..6).prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #[test]
        fn written_by_hand_it_is_byte_for_byte_the_value_s(
            response in chat_answer(json_text().prop_map(Content::Text)),
            echo in echo(),
            created_at in any::<u64>(),
        ) {
            // An answer with no id gets a fresh one at each writing.
            let mut response = response;
            if response.id.is_empty() {
                response.id = "chatcmpl-1".to_owned();
            }
            let options = ResponsesOptions { echo };
            same_output::<()>(
                Ok(encode_response(&response, &options, created_at)),
                Ok(through_a_value(&response, &options, created_at)),
            )?;
        }
    }
}

#[cfg(test)]
mod stream_tests {
    use super::super::value_oracle::ValueStreamEncoder;
    use super::*;
    use crate::test_strategies::{finish_reason, json_text, tool_arguments};
    use proptest::prelude::*;

    /// What a stream can bring: text (some of it empty), call deltas of a
    /// few calls (first with an id and a name or not), usage, a finish
    /// reason, a continuation.
    fn event() -> impl Strategy<Value = StreamEvent> {
        let usage = (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
            |(input, output, cached, reasoning)| {
                let mut usage = Usage::new(u64::from(input), u64::from(output));
                usage.cached_input_tokens = u64::from(cached);
                usage.reasoning_tokens = u64::from(reasoning);
                usage
            },
        );
        prop_oneof![
            4 => json_text().prop_map(StreamEvent::TextDelta),
            1 => Just(StreamEvent::TextDelta(String::new())),
            4 => (
                0..3u32,
                proptest::option::of(json_text()),
                proptest::option::of(json_text()),
                prop_oneof![tool_arguments(), json_text(), Just(String::new())],
            )
                .prop_map(|(index, id, name, arguments)| StreamEvent::ToolCallDelta {
                    index,
                    id,
                    name,
                    arguments,
                }),
            1 => usage.prop_map(StreamEvent::Usage),
            1 => finish_reason().prop_map(StreamEvent::Finish),
            1 => json_text().prop_map(|target| StreamEvent::Continued { target }),
        ]
    }

    /// How a stream ends: complete, with an error of some kind, or cut
    /// (nothing written at the end).
    fn ending() -> impl Strategy<Value = Option<Option<(ErrorKind, String)>>> {
        prop_oneof![
            Just(Some(None)),
            Just(None),
            (
                prop::sample::select(vec![
                    ErrorKind::RateLimited,
                    ErrorKind::QuotaExhausted,
                    ErrorKind::ContentFiltered,
                    ErrorKind::Timeout,
                    ErrorKind::TruncatedResponse,
                ]),
                json_text(),
            )
                .prop_map(|error| Some(Some(error))),
        ]
    }

    proptest! {
        #[test]
        fn every_event_written_by_hand_is_byte_for_byte_the_value_s(
            id in prop_oneof![Just("resp_1".to_owned()), json_text()],
            model in json_text(),
            created_at in any::<u64>(),
            echo in super::answer_tests::echo(),
            events in proptest::collection::vec(event(), 0..12),
            ending in ending(),
        ) {
            let options = ResponsesOptions { echo };
            let mut mine = StreamEncoder::new(id.clone(), model.clone(), created_at, options.clone());
            let mut oracle = ValueStreamEncoder::new(id, model, created_at, options);
            let same = |mine: Vec<u8>, oracle: Vec<u8>| {
                prop_assert_eq!(String::from_utf8_lossy(&mine), String::from_utf8_lossy(&oracle));
                Ok(())
            };
            for event in &events {
                same(mine.encode(event), oracle.encode(event))?;
            }
            match ending {
                Some(None) => same(mine.finish(), oracle.finish())?,
                Some(Some((kind, message))) => {
                    let error = LlmError::new(kind, message);
                    same(mine.error(&error), oracle.error(&error))?;
                }
                None => {}
            }
            // After the end, nothing more; a cut stream still ends.
            for event in events.iter().take(2) {
                same(mine.encode(event), oracle.encode(event))?;
            }
            same(mine.finish(), oracle.finish())?;
        }
    }
}
