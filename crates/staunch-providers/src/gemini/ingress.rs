//! The ingress side of the Gemini dialect: a `generateContent` request from
//! a client (google-genai, or anything speaking the REST API) read into the
//! neutral model, and a neutral answer written back as a
//! `GenerateContentResponse`, whole or as a stream of them.

use super::answer::call_id;
use crate::ingress::Endpoint;
use crate::openai::ingress::field;
use crate::openai::wire::IngressError;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use staunch_core::{
    ChatRequest, ChatResponse, Content, ContentPart, Dialect, ErrorKind, Extras, FinishReason,
    LlmError, Message, ResponseFormat, Role, StreamEvent, ToolCall, ToolChoice, ToolDefinition,
    Usage,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A `generateContent` request read from a client.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Decoded {
    /// The neutral request (the model from the URL); fields only Gemini
    /// understands are in its Gemini extras.
    pub request: ChatRequest,
    /// The client asked for a stream (`:streamGenerateContent`).
    pub stream: bool,
}

// google-genai sends camelCase over REST; snake_case (the proto names, which
// the API accepts too) is read as well.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InRequest {
    contents: Vec<InContent>,
    #[serde(default, alias = "system_instruction")]
    system_instruction: Option<InContent>,
    #[serde(default)]
    tools: Option<Vec<Map<String, Value>>>,
    #[serde(default, alias = "tool_config")]
    tool_config: Option<InToolConfig>,
    #[serde(default, alias = "generation_config")]
    generation_config: Option<Map<String, Value>>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
struct InContent {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    parts: Vec<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InToolConfig {
    #[serde(default, alias = "function_calling_config")]
    function_calling_config: Option<InCalling>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InCalling {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default, alias = "allowed_function_names")]
    allowed_function_names: Option<Vec<String>>,
}

/// A key of an object, by its camelCase name or its snake_case alias.
fn take(map: &mut Map<String, Value>, camel: &str, snake: &str) -> Option<Value> {
    map.remove(camel).or_else(|| map.remove(snake))
}

fn get<'a>(map: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    map.get(camel).or_else(|| map.get(snake))
}

/// A call made in the conversation, for tool results to answer.
struct Call {
    id: String,
    name: String,
    turn: usize,
}

/// The calls made in the conversation, in order (so by turn), with the
/// first of each id and the unanswered ones of each name, so that a result
/// finds its call without a scan of every call before it (that scan made a
/// body of many calls and results quadratic: 20,000 of each took 20 s).
#[derive(Default)]
struct Made {
    calls: Vec<Call>,
    by_id: HashMap<String, usize>,
    unanswered: HashMap<String, BTreeSet<usize>>,
}

impl Made {
    fn push(&mut self, id: String, name: &str, turn: usize) {
        let index = self.calls.len();
        self.by_id.entry(id.clone()).or_insert(index);
        self.unanswered
            .entry(name.to_owned())
            .or_default()
            .insert(index);
        self.calls.push(Call {
            id,
            name: name.to_owned(),
            turn,
        });
    }

    /// The call a result for `name` answers, marked answered: the first
    /// call of the result's `id`, else the earliest unanswered call of
    /// `name` in the latest turn that made one.
    fn answer(&mut self, name: &str, id: Option<&str>) -> Option<&Call> {
        let index = match id.and_then(|id| self.by_id.get(id)) {
            Some(&index) => index,
            None => {
                let pending = self.unanswered.get(name)?;
                let latest = self.calls[*pending.last()?].turn;
                let first = self.calls.partition_point(|c| c.turn < latest);
                *pending.range(first..).next()?
            }
        };
        let call = &self.calls[index];
        if let Some(pending) = self.unanswered.get_mut(&call.name) {
            pending.remove(&index);
        }
        Some(call)
    }
}

/// Reads a `generateContent` request body into the neutral model. The model
/// comes from the URL (`endpoint.model`, required) and so does the stream
/// (`endpoint.stream`). `systemInstruction` becomes a system message;
/// `contents` user and assistant messages: text and image parts, other
/// parts kept as Gemini-only parts, `functionCall` parts the assistant's
/// tool calls (with the call's own `id`, or a synthesized one), and
/// `functionResponse` parts tool results answering the call of that `id`,
/// else the earliest unanswered call of that name in the latest turn that
/// made one. Tools, tool choice and `generationConfig` map to the neutral
/// fields; any other field (`safetySettings`, the rest of
/// `generationConfig`) is kept as a Gemini extra. Never panics; a bad body
/// is an [`IngressError`] naming what is wrong.
///
/// ```
/// use staunch_providers::gemini::wire::decode_request;
/// use staunch_providers::ingress::Endpoint;
/// let body = br#"{"systemInstruction": {"parts": [{"text": "Be brief."}]},
///   "contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]},
///                {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
///                {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]}]}"#;
/// let decoded = decode_request(body, &Endpoint::new(Some("gemini-2.5-flash"), false)).unwrap();
/// let messages = &decoded.request.messages;
/// assert_eq!(decoded.request.model, "gemini-2.5-flash");
/// assert_eq!(messages[3].tool_call_id.as_deref(), Some(messages[2].tool_calls[0].id.as_str()));
/// ```
pub fn decode_request(body: &[u8], endpoint: &Endpoint<'_>) -> Result<Decoded, IngressError> {
    let model = endpoint
        .model
        .map(|m| m.strip_prefix("models/").unwrap_or(m))
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            field(
                "model",
                "the URL names no model (/v1beta/models/{model}:generateContent)",
            )
        })?;
    let mut raw: InRequest = IngressError::parse(body)?;
    if raw.contents.is_empty() {
        return Err(field("contents", "at least one content is required"));
    }
    // The model is the URL's; a copy in the body says nothing more.
    raw.rest.remove("model");
    let mut messages = Vec::with_capacity(raw.contents.len() + 1);
    if let Some(system) = raw.system_instruction {
        let mut text = Vec::new();
        for (j, part) in system.parts.iter().enumerate() {
            match part.get("text") {
                Some(Value::String(t)) => text.push(t.as_str()),
                _ => {
                    return Err(field(
                        format!("systemInstruction.parts[{j}]"),
                        "a system instruction holds text parts only",
                    ));
                }
            }
        }
        messages.push(Message::system(text.join("\n\n")));
    }
    let mut made = Made::default();
    for (i, content) in raw.contents.into_iter().enumerate() {
        turn(i, content, &mut made, &mut messages)?;
    }
    let mut request = ChatRequest::new(model, messages);
    let mut extra = raw.rest;
    request.tools = tools(raw.tools.unwrap_or_default())?.into();
    if let Some(config) = raw.tool_config {
        request.tool_choice = tool_choice(config)?;
    }
    if let Some(config) = raw.generation_config {
        let rest = generation_config(config, &mut request)?;
        if !rest.is_empty() {
            extra.insert("generationConfig".to_owned(), Value::Object(rest));
        }
    }
    let mut extras = Extras::default();
    extras.set(Dialect::Gemini, extra);
    request.extra = Arc::new(extras);
    Ok(Decoded {
        request: request.with_stream(endpoint.stream),
        stream: endpoint.stream,
    })
}

/// One content: a `model` turn is an assistant message with its calls; a
/// `user` turn's `functionResponse` parts are tool messages (first, in
/// order), the rest one user message.
fn turn(
    i: usize,
    content: InContent,
    made: &mut Made,
    out: &mut Vec<Message>,
) -> Result<(), IngressError> {
    let role = match content.role.as_deref() {
        // Gemini takes a content without a role as the user's, and its
        // older `function` role carried function responses.
        None | Some("user" | "function" | "tool") => Role::User,
        Some("model") => Role::Assistant,
        Some(other) => {
            return Err(field(
                format!("contents[{i}].role"),
                format!("expected user or model, not {other:?}"),
            ));
        }
    };
    if content.parts.is_empty() {
        return Err(field(
            format!("contents[{i}].parts"),
            "a content needs at least one part",
        ));
    }
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for (j, part) in content.parts.into_iter().enumerate() {
        let at = |name: &str| format!("contents[{i}].parts[{j}].{name}");
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            continue; // A thought summary sent back: not part of the conversation.
        }
        if let Some(call) = get(&part, "functionCall", "function_call") {
            if role != Role::Assistant {
                return Err(field(
                    at("functionCall"),
                    "only a model turn makes function calls",
                ));
            }
            let name = call
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| field(at("functionCall.name"), "missing"))?;
            let args = match call.get("args") {
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(args @ Value::Object(_)) => args.clone(),
                Some(_) => return Err(field(at("functionCall.args"), "expected an object")),
            };
            let given = call.get("id").and_then(Value::as_str);
            let id = call_id(given, &format!("{i}"), j as u32);
            made.push(id.clone(), name, i);
            calls.push(ToolCall::new(id, name, args.to_string()));
        } else if let Some(response) = get(&part, "functionResponse", "function_response") {
            if role != Role::User {
                return Err(field(
                    at("functionResponse"),
                    "only a user turn answers function calls",
                ));
            }
            out.push(
                tool_result(response, made).map_err(|why| field(at("functionResponse"), why))?,
            );
        } else if let Some(text) = part.get("text") {
            match text {
                Value::String(t) if t.is_empty() => {}
                Value::String(t) => parts.push(ContentPart::text(t.as_str())),
                _ => return Err(field(at("text"), "expected a string")),
            }
        } else if let Some(data) = get(&part, "inlineData", "inline_data") {
            let text = |camel: &str, snake: &str| {
                data.get(camel)
                    .or_else(|| data.get(snake))
                    .and_then(Value::as_str)
            };
            let (Some(mime), Some(bytes)) = (text("mimeType", "mime_type"), text("data", "data"))
            else {
                return Err(field(at("inlineData"), "needs a mimeType and data"));
            };
            parts.push(if mime.starts_with("image/") {
                ContentPart::image_base64(mime, bytes)
            } else {
                opaque(part)
            });
        } else if let Some(file) = get(&part, "fileData", "file_data") {
            let text = |camel: &str, snake: &str| {
                file.get(camel)
                    .or_else(|| file.get(snake))
                    .and_then(Value::as_str)
            };
            let Some(uri) = text("fileUri", "file_uri") else {
                return Err(field(at("fileData.fileUri"), "missing"));
            };
            let image = text("mimeType", "mime_type").is_some_and(|m| m.starts_with("image/"));
            let web = uri.starts_with("https://") || uri.starts_with("http://");
            parts.push(if image && web {
                ContentPart::image_url(uri)
            } else {
                opaque(part)
            });
        } else if part
            .keys()
            .all(|k| k == "thoughtSignature" || k == "thought_signature")
        {
            return Err(field(
                format!("contents[{i}].parts[{j}]"),
                "a part needs one of text, inlineData, fileData, functionCall, functionResponse",
            ));
        } else {
            // Code execution and parts to come: Gemini's own.
            parts.push(opaque(part));
        }
    }
    if parts.is_empty() && calls.is_empty() {
        return Ok(()); // Function responses only, or nothing but thoughts.
    }
    let content = match parts.as_slice() {
        [] => Content::default(),
        [ContentPart::Text { text }] => Content::Text(text.clone()),
        _ => Content::Parts(parts),
    };
    let mut message = Message::new(role, content);
    message.tool_calls = calls;
    out.push(message);
    Ok(())
}

fn opaque(part: Map<String, Value>) -> ContentPart {
    ContentPart::Opaque {
        dialect: Dialect::Gemini,
        part: Value::Object(part),
    }
}

/// A `functionResponse` as a tool message answering the call it names.
fn tool_result(response: &Value, made: &mut Made) -> Result<Message, String> {
    let name = response
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("needs the name of the function it answers")?;
    let given = response.get("id").and_then(Value::as_str);
    let call = made
        .answer(name, given)
        .ok_or_else(|| format!("answers no earlier functionCall of {name:?}"))?;
    let (content, is_error) = match response.get("response") {
        None | Some(Value::Null) => (String::new(), false),
        Some(Value::Object(map)) if map.len() == 1 => match map.iter().next() {
            Some((key, Value::String(text))) if key == "output" => (text.clone(), false),
            Some((key, value)) if key == "error" => match value {
                Value::String(text) => (text.clone(), true),
                other => (other.to_string(), true),
            },
            _ => (Value::Object(map.clone()).to_string(), false),
        },
        Some(other) => (other.to_string(), false),
    };
    let mut message = Message::tool_result(call.id.clone(), content);
    message.is_error = is_error;
    Ok(message)
}

/// The function declarations of every tool; other tools (search, code
/// execution) have no neutral form and are refused.
fn tools(tools: Vec<Map<String, Value>>) -> Result<Vec<ToolDefinition>, IngressError> {
    let mut out = Vec::new();
    for (i, mut tool) in tools.into_iter().enumerate() {
        let declarations = match take(&mut tool, "functionDeclarations", "function_declarations") {
            None => Vec::new(),
            Some(Value::Array(list)) => list,
            Some(_) => {
                return Err(field(
                    format!("tools[{i}].functionDeclarations"),
                    "expected a list",
                ));
            }
        };
        if let Some(other) = tool.keys().next() {
            return Err(field(
                format!("tools[{i}].{other}"),
                "only functionDeclarations tools are supported",
            ));
        }
        for (j, declaration) in declarations.into_iter().enumerate() {
            let at = |name: &str| format!("tools[{i}].functionDeclarations[{j}].{name}");
            let Value::Object(mut d) = declaration else {
                return Err(field(at("name"), "a declaration is an object"));
            };
            let name = match d.remove("name") {
                Some(Value::String(name)) if !name.is_empty() => name,
                _ => return Err(field(at("name"), "missing")),
            };
            let parameters = match (
                take(&mut d, "parametersJsonSchema", "parameters_json_schema"),
                d.remove("parameters"),
            ) {
                (Some(schema), _) => schema,
                (None, Some(mut schema)) => {
                    lower_types(&mut schema);
                    schema
                }
                (None, None) => json!({"type": "object", "properties": {}}),
            };
            let mut tool = ToolDefinition::new(name, parameters);
            tool.description = d
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned);
            out.push(tool);
        }
    }
    Ok(out)
}

/// An OpenAPI schema as Gemini's `parameters` and `responseSchema` take it
/// (`"type": "OBJECT"`), in JSON Schema's spelling (`"object"`).
fn lower_types(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(t) if key == "type" => *t = t.to_ascii_lowercase(),
                    // `properties` maps names to schemas; the rest hold schemas.
                    _ => lower_types(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(lower_types),
        _ => {}
    }
}

fn tool_choice(config: InToolConfig) -> Result<Option<ToolChoice>, IngressError> {
    let Some(calling) = config.function_calling_config else {
        return Ok(None);
    };
    let names = calling.allowed_function_names.unwrap_or_default();
    let at = "toolConfig.functionCallingConfig";
    Ok(Some(
        match (calling.mode.as_deref().unwrap_or("AUTO"), names.as_slice()) {
            ("AUTO" | "MODE_UNSPECIFIED", []) => ToolChoice::Auto,
            ("NONE", []) => ToolChoice::None,
            ("ANY", []) => ToolChoice::Required,
            ("ANY", [one]) => ToolChoice::Tool(one.clone()),
            ("ANY", _) => {
                return Err(field(
                    format!("{at}.allowedFunctionNames"),
                    "at most one allowed function name is supported",
                ));
            }
            ("AUTO" | "NONE" | "MODE_UNSPECIFIED", _) => {
                return Err(field(
                    format!("{at}.allowedFunctionNames"),
                    "allowed function names go with mode ANY only",
                ));
            }
            (other, _) => {
                return Err(field(
                    format!("{at}.mode"),
                    format!("expected AUTO, ANY or NONE, not {other:?}"),
                ));
            }
        },
    ))
}

/// Takes the neutral fields out of `generationConfig` into `request`; what
/// is left stays a Gemini extra.
fn generation_config(
    mut config: Map<String, Value>,
    request: &mut ChatRequest,
) -> Result<Map<String, Value>, IngressError> {
    let at = |name: &str| format!("generationConfig.{name}");
    let number = |value: Option<Value>, name: &str| -> Result<Option<f64>, IngressError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(field(at(name), "expected a number")),
        }
    };
    if let Some(n) = number(
        take(&mut config, "candidateCount", "candidate_count"),
        "candidateCount",
    )? && n != 1.0
    {
        return Err(field(
            at("candidateCount"),
            "only one candidate is supported",
        ));
    }
    if let Some(n) = number(
        take(&mut config, "maxOutputTokens", "max_output_tokens"),
        "maxOutputTokens",
    )? {
        if !(n >= 0.0 && n <= f64::from(u32::MAX) && n.fract() == 0.0) {
            return Err(field(
                at("maxOutputTokens"),
                "expected a whole number of tokens",
            ));
        }
        request.max_tokens = Some(n as u32);
    }
    request.temperature = number(
        take(&mut config, "temperature", "temperature"),
        "temperature",
    )?
    .map(|t| t as f32);
    request.top_p = number(take(&mut config, "topP", "top_p"), "topP")?.map(|p| p as f32);
    match take(&mut config, "stopSequences", "stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            let stop = list
                .into_iter()
                .map(|s| match s {
                    Value::String(s) => Ok(s),
                    _ => Err(field(at("stopSequences"), "expected strings")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            request.stop = stop.into();
        }
        Some(_) => return Err(field(at("stopSequences"), "expected a list of strings")),
    }
    let json = get(&config, "responseMimeType", "response_mime_type").and_then(Value::as_str)
        == Some("application/json");
    if json {
        take(&mut config, "responseMimeType", "response_mime_type");
        let schema = match (
            take(&mut config, "responseJsonSchema", "response_json_schema"),
            take(&mut config, "responseSchema", "response_schema"),
        ) {
            (Some(schema), _) => Some(schema),
            (None, Some(mut schema)) => {
                lower_types(&mut schema);
                Some(schema)
            }
            (None, None) => None,
        };
        request.response_format = Some(match schema {
            Some(schema) => ResponseFormat::json_schema("response", schema),
            None => ResponseFormat::JsonObject,
        });
    }
    Ok(config)
}

/// Gemini's name for a finish reason; reasons it has no name for are
/// `OTHER`, and tool calls end with `STOP` as Gemini's own do.
fn finish_reason(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::Stop | FinishReason::ToolCalls => "STOP",
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
        FinishReason::Other(other)
            if !other.is_empty() && other.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') =>
        {
            other
        }
        _ => "OTHER",
    }
}

/// A usage object as Gemini writes it: thinking apart from the candidates'
/// tokens.
fn usage_json(usage: &Usage) -> Value {
    let thoughts = usage.reasoning_tokens.min(usage.output_tokens);
    let mut out = json!({
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": usage.output_tokens - thoughts,
        "totalTokenCount": usage.total(),
    });
    if usage.cached_input_tokens > 0 {
        out["cachedContentTokenCount"] = json!(usage.cached_input_tokens);
    }
    if thoughts > 0 {
        out["thoughtsTokenCount"] = json!(thoughts);
    }
    out
}

/// A `functionCall` part, or why the call's arguments can't be one.
fn call_part(call: &ToolCall) -> Result<Value, String> {
    crate::ingress::object_arguments(call)
        .map(|args| json!({"functionCall": {"id": call.id, "name": call.name, "args": args}}))
}

/// Writes `response` as a `GenerateContentResponse`: the first candidate's
/// `model` content (text, Gemini-only parts, `functionCall` parts with the
/// call's id), the finish reason (`SAFETY` for a refusal), the usage, the
/// model that actually answered and the id. Fails when a tool call's
/// arguments are not a JSON object (an answer from another dialect that
/// Gemini clients could not read).
///
/// ```
/// use staunch_core::{ChatResponse, Usage};
/// use staunch_providers::gemini::wire::encode_response;
/// let answer = ChatResponse::new("gemini-2.5-flash", "Hi!").with_usage(Usage::new(3, 2));
/// let body: serde_json::Value = serde_json::from_slice(&encode_response(&answer).unwrap()).unwrap();
/// assert_eq!(body["candidates"][0]["content"]["parts"][0]["text"], "Hi!");
/// assert_eq!(body["candidates"][0]["finishReason"], "STOP");
/// assert_eq!(body["usageMetadata"]["totalTokenCount"], 5);
/// ```
pub fn encode_response(response: &ChatResponse) -> Result<Vec<u8>, IngressError> {
    use crate::json::{push_json_str, push_u64};
    // Every tool call's arguments as an object first: a call that has none
    // fails the answer before anything is written.
    let args = response
        .message
        .tool_calls
        .iter()
        .map(|call| {
            crate::ingress::object_arguments(call).map_err(|why| field("tool_calls.arguments", why))
        })
        .collect::<Result<Vec<Value>, IngressError>>()?;
    let finish = if response.refusal.is_some() && response.message.content.is_empty() {
        "SAFETY"
    } else {
        finish_reason(&response.finish_reason)
    };
    let id = if response.id.is_empty() {
        "staunch"
    } else {
        &response.id
    };
    let model = response.answered_model();
    // Written straight into one buffer, its keys as fixed text in the
    // order a `serde_json::Value` object keeps them (sorted), so the bytes
    // are those of the answer built as a value; only what the answer
    // carries is escaped. Sized for the fixed text (about 220 bytes), what
    // is carried over and an eighth more for escapes.
    let calls = &response.message.tool_calls;
    let carried = response.message.content.byte_len()
        + id.len()
        + model.len()
        + crate::json::calls_len(calls, 64);
    let mut out = Vec::with_capacity(256 + carried + carried / 8);
    out.extend_from_slice(b"{\"candidates\":[{\"content\":{\"parts\":[");
    let mut parts = 0;
    let mut next_part = |out: &mut Vec<u8>| {
        if parts > 0 {
            out.push(b',');
        }
        parts += 1;
    };
    for part in response.message.content.parts() {
        match part {
            staunch_core::PartRef::Text("") => {}
            staunch_core::PartRef::Text(text) => {
                next_part(&mut out);
                out.extend_from_slice(b"{\"text\":");
                push_json_str(&mut out, text);
                out.push(b'}');
            }
            staunch_core::PartRef::Part(ContentPart::Opaque {
                dialect: Dialect::Gemini,
                part,
            }) => {
                next_part(&mut out);
                // A JSON value written into a vector can't fail.
                let _ = serde_json::to_writer(&mut out, part);
            }
            // Images and other dialects' parts: not in a Gemini answer.
            _ => {}
        }
    }
    for (call, args) in calls.iter().zip(&args) {
        next_part(&mut out);
        out.extend_from_slice(b"{\"functionCall\":{\"args\":");
        let _ = serde_json::to_writer(&mut out, args);
        out.extend_from_slice(b",\"id\":");
        push_json_str(&mut out, &call.id);
        out.extend_from_slice(b",\"name\":");
        push_json_str(&mut out, &call.name);
        out.extend_from_slice(b"}}");
    }
    if parts == 0 {
        out.extend_from_slice(b"{\"text\":\"\"}");
    }
    out.extend_from_slice(b"],\"role\":\"model\"},\"finishReason\":");
    push_json_str(&mut out, finish);
    out.extend_from_slice(b",\"index\":0}],\"modelVersion\":");
    push_json_str(&mut out, model);
    out.extend_from_slice(b",\"responseId\":");
    push_json_str(&mut out, id);
    out.extend_from_slice(b",\"usageMetadata\":{");
    let usage = &response.usage;
    let thoughts = usage.reasoning_tokens.min(usage.output_tokens);
    if usage.cached_input_tokens > 0 {
        out.extend_from_slice(b"\"cachedContentTokenCount\":");
        push_u64(&mut out, usage.cached_input_tokens);
        out.push(b',');
    }
    out.extend_from_slice(b"\"candidatesTokenCount\":");
    push_u64(&mut out, usage.output_tokens - thoughts);
    out.extend_from_slice(b",\"promptTokenCount\":");
    push_u64(&mut out, usage.input_tokens);
    if thoughts > 0 {
        out.extend_from_slice(b",\"thoughtsTokenCount\":");
        push_u64(&mut out, thoughts);
    }
    out.extend_from_slice(b",\"totalTokenCount\":");
    push_u64(&mut out, usage.total());
    out.extend_from_slice(b"}}");
    Ok(out)
}

/// Gemini's `status` for an HTTP status.
pub(crate) fn status_name(status: u16) -> &'static str {
    match status {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 | 529 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        400..=499 => "INVALID_ARGUMENT",
        _ => "INTERNAL",
    }
}

/// Gemini's error body, as google-genai parses it: `code` (the HTTP
/// status), `message`, `status`, and the machine-readable code as a
/// `google.rpc.ErrorInfo` reason.
pub(crate) fn error_body(status: u16, code: &str, message: &str) -> Value {
    json!({"error": {"code": status, "message": message, "status": status_name(status),
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": code, "domain": "staunch"}]}})
}

/// The HTTP status an error stands for, for an in-band stream error.
fn status_of(error: &LlmError) -> u16 {
    match error.kind {
        ErrorKind::RateLimited | ErrorKind::QuotaExhausted | ErrorKind::BudgetExhausted => 429,
        ErrorKind::Overloaded | ErrorKind::CircuitOpen => 503,
        ErrorKind::Timeout => 504,
        ErrorKind::Authentication => 401,
        ErrorKind::PermissionDenied => 403,
        ErrorKind::ModelNotFound => 404,
        ErrorKind::Cancelled => 499,
        ErrorKind::InvalidRequest
        | ErrorKind::ContextLengthExceeded
        | ErrorKind::ContentFiltered
        | ErrorKind::RequestTooLarge
        | ErrorKind::ValidationFailed
        | ErrorKind::FeatureUnsupported => 400,
        _ => 500,
    }
}

/// A stream's in-band error after the commit point, as Gemini sends one:
/// `data: {"error": {...}}` (google-genai raises on it). Nothing follows
/// it, so no client takes the stream for complete.
pub fn encode_stream_error(error: &LlmError) -> Vec<u8> {
    let body = error_body(status_of(error), error.kind.as_str(), &error.to_string());
    crate::ingress::sse_event(None, &body)
}

/// Writes a streamed answer as Gemini's server-sent events, the way
/// google-genai reads them: one `data: {GenerateContentResponse}` per text
/// event; tool calls (whose arguments may come in pieces) gathered and
/// written whole, as Gemini sends them, in the last chunk, which carries
/// the finish reason and the usage. There is no terminator line: the last
/// chunk's finish reason says the stream is complete.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    calls: Vec<ToolCall>,
    usage: Usage,
    finish: Option<FinishReason>,
    failed: bool,
}

impl StreamEncoder {
    /// An encoder for answer `id` from `model`.
    pub fn new(id: impl Into<String>, model: impl Into<String>) -> Self {
        StreamEncoder {
            id: id.into(),
            model: model.into(),
            calls: Vec::new(),
            usage: Usage::default(),
            finish: None,
            failed: false,
        }
    }

    fn chunk(&self, parts: Vec<Value>, finish: Option<&str>, usage: bool) -> Vec<u8> {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        let mut chunk = json!({"candidates": [candidate], "modelVersion": self.model,
                               "responseId": self.id});
        if usage {
            chunk["usageMetadata"] = usage_json(&self.usage);
        }
        crate::ingress::sse_event(None, &chunk)
    }

    /// A chunk of text, the one chunk of every token: written straight
    /// into the frame, its bytes those of [`chunk`](Self::chunk)'s for one
    /// text part (keys sorted), with no map or string made per key per
    /// token.
    fn text_chunk(&self, text: &str) -> Vec<u8> {
        use crate::json::push_json_str;
        let carried = text.len() + self.model.len() + self.id.len();
        let mut out = Vec::with_capacity(128 + carried + carried / 8);
        out.extend_from_slice(b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":");
        push_json_str(&mut out, text);
        out.extend_from_slice(b"}],\"role\":\"model\"},\"index\":0}],\"modelVersion\":");
        push_json_str(&mut out, &self.model);
        out.extend_from_slice(b",\"responseId\":");
        push_json_str(&mut out, &self.id);
        out.extend_from_slice(b"}\n\n");
        out
    }

    /// The bytes of one event (none for the events Gemini says at the end).
    pub fn encode(&mut self, event: &StreamEvent) -> Vec<u8> {
        if self.failed {
            return Vec::new();
        }
        match event {
            StreamEvent::TextDelta(text) if !text.is_empty() => self.text_chunk(text),
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                let index = *index as usize;
                // Bounded as the stream readers bound it.
                if index >= 4096 {
                    return Vec::new();
                }
                while self.calls.len() <= index {
                    self.calls.push(ToolCall::new("", "", ""));
                }
                let call = &mut self.calls[index];
                if let Some(id) = id {
                    call.id.clone_from(id);
                }
                if let Some(name) = name {
                    call.name.clone_from(name);
                }
                call.arguments.push_str(arguments);
                Vec::new()
            }
            StreamEvent::Usage(usage) => {
                self.usage = *usage;
                Vec::new()
            }
            StreamEvent::Finish(reason) => {
                self.finish = Some(reason.clone());
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// The end of a complete stream: the gathered calls, the finish reason
    /// and the usage in one last chunk. A call whose arguments are not a
    /// JSON object can't be written: the stream ends with an error instead.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.failed {
            return Vec::new();
        }
        let mut parts = Vec::with_capacity(self.calls.len());
        for call in std::mem::take(&mut self.calls) {
            match call_part(&call) {
                Ok(part) => parts.push(part),
                Err(why) => {
                    let error = LlmError::new(ErrorKind::MalformedResponse, why);
                    return self.error(&error);
                }
            }
        }
        if parts.is_empty() {
            parts.push(json!({"text": ""}));
        }
        let finish = finish_reason(self.finish.as_ref().unwrap_or(&FinishReason::Stop)).to_owned();
        self.chunk(parts, Some(&finish), true)
    }

    /// A failure after the commit point: an in-band error frame; nothing
    /// follows it.
    pub fn error(&mut self, error: &LlmError) -> Vec<u8> {
        self.failed = true;
        encode_stream_error(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;

    fn endpoint() -> Endpoint<'static> {
        Endpoint::new(Some("gemini-2.5-flash"), false)
    }

    fn decode(body: Value) -> Result<Decoded, IngressError> {
        decode_request(body.to_string().as_bytes(), &endpoint())
    }

    fn frames(bytes: &[u8]) -> Vec<Value> {
        let mut d = SseDecoder::new(1 << 20);
        d.push(bytes).unwrap();
        assert!(!d.has_partial());
        std::iter::from_fn(|| d.next_frame())
            .map(|f| {
                assert!(f.event.is_none());
                serde_json::from_str(&f.data).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_full_request() {
        let decoded = decode_request(
            json!({
                "systemInstruction": {"role": "user", "parts": [{"text": "Be brief."}, {"text": "French."}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "What is this?"},
                        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/a.jpg"}},
                        {"fileData": {"mimeType": "application/pdf", "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/x"}}]},
                    {"role": "model", "parts": [{"text": "hmm", "thought": true}, {"text": "A cat."}]},
                ],
                "tools": [{"functionDeclarations": [
                    {"name": "get_weather", "description": "Weather", "parameters": {"type": "OBJECT",
                        "properties": {"city": {"type": "STRING"}, "type": {"type": "STRING"}}, "required": ["city"]}},
                    {"name": "ping"},
                    {"name": "lookup", "parametersJsonSchema": {"type": "object", "additionalProperties": false}}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["ping"]}},
                "generationConfig": {"maxOutputTokens": 100, "temperature": 0.2, "topP": 0.5, "topK": 40,
                                     "stopSequences": ["END"], "thinkingConfig": {"thinkingBudget": 0}},
                "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            })
            .to_string()
            .as_bytes(),
            &Endpoint::new(Some("models/gemini-2.5-pro"), true),
        )
        .unwrap();
        assert!(decoded.stream);
        let r = &decoded.request;
        assert!(r.stream);
        assert_eq!(r.model, "gemini-2.5-pro");
        assert_eq!(r.messages[0], Message::system("Be brief.\n\nFrench."));
        let Content::Parts(parts) = &r.messages[1].content else {
            panic!()
        };
        assert_eq!(
            parts[1],
            ContentPart::image_base64("image/png", "iVBORw0KGgo=")
        );
        assert_eq!(
            parts[2],
            ContentPart::image_url("https://example.com/a.jpg")
        );
        assert!(matches!(
            &parts[3],
            ContentPart::Opaque {
                dialect: Dialect::Gemini,
                ..
            }
        ));
        assert_eq!(r.messages[2], Message::assistant("A cat."));
        assert_eq!(r.tools.len(), 3);
        assert_eq!(
            r.tools[0].parameters,
            json!({"type": "object", "properties": {"city": {"type": "string"}, "type": {"type": "string"}},
                   "required": ["city"]})
        );
        assert_eq!(r.tools[1].parameters["type"], "object");
        assert_eq!(r.tools[2].parameters["additionalProperties"], false);
        assert_eq!(r.tool_choice, Some(ToolChoice::Tool("ping".into())));
        assert_eq!(
            (r.max_tokens, r.temperature, r.top_p),
            (Some(100), Some(0.2), Some(0.5))
        );
        assert_eq!(&*r.stop, ["END".to_owned()]);
        let extra = r.extra.get(Dialect::Gemini);
        assert_eq!(
            extra["generationConfig"],
            json!({"topK": 40, "thinkingConfig": {"thinkingBudget": 0}})
        );
        assert_eq!(extra["safetySettings"][0]["threshold"], "BLOCK_NONE");
    }

    #[test]
    fn snake_case_and_json_output() {
        let decoded = decode(json!({
            "contents": [{"parts": [{"text": "hi"}]}],
            "system_instruction": {"parts": [{"text": "s"}]},
            "generation_config": {"response_mime_type": "application/json",
                                  "response_schema": {"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}}},
            "tool_config": {"function_calling_config": {"mode": "NONE"}},
        }))
        .unwrap();
        let r = &decoded.request;
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(
            r.response_format,
            Some(ResponseFormat::json_schema(
                "response",
                json!({"type": "object", "properties": {"a": {"type": "integer"}}})
            ))
        );
        assert_eq!(r.tool_choice, Some(ToolChoice::None));
        assert!(r.extra.get(Dialect::Gemini).is_empty());
        let decoded = decode(json!({"contents": [{"parts": [{"text": "hi"}]}],
            "generationConfig": {"responseMimeType": "application/json"}}))
        .unwrap();
        assert_eq!(
            decoded.request.response_format,
            Some(ResponseFormat::JsonObject)
        );
    }

    /// A Gemini tool conversation decodes to the neutral model, encodes back
    /// to the same Gemini contents, and the neutral ids line up.
    #[test]
    fn a_tool_history_round_trips() {
        let contents = json!([
            {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                {"functionResponse": {"name": "get_weather", "response": {"error": "down"}}}]},
            {"role": "model", "parts": [{"text": "Paris is 21."},
                {"functionCall": {"id": "fc_1", "name": "get_time", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"id": "fc_1", "name": "get_time", "response": {"output": "noon"}}},
                                       {"text": "Thanks"}]},
        ]);
        let decoded = decode(json!({"contents": contents})).unwrap();
        let m = &decoded.request.messages;
        assert_eq!(m.len(), 7);
        let calls = &m[1].tool_calls;
        assert_eq!(calls.len(), 2);
        assert_ne!(calls[0].id, calls[1].id);
        assert_eq!(m[2].tool_call_id.as_deref(), Some(calls[0].id.as_str()));
        assert_eq!(m[2].text(), r#"{"temp":21}"#);
        assert_eq!(m[3].tool_call_id.as_deref(), Some(calls[1].id.as_str()));
        assert!(m[3].is_error);
        assert_eq!(m[3].text(), "down");
        assert_eq!(m[4].tool_calls[0].id, "fc_1");
        assert_eq!(m[5].tool_call_id.as_deref(), Some("fc_1"));
        assert_eq!(m[5].text(), "noon");
        assert_eq!(m[6], Message::user("Thanks"));
        // And back to Gemini: the same contents (plus the replay signature).
        let body: Value =
            serde_json::from_slice(&super::super::wire::encode_request(&decoded.request).unwrap())
                .unwrap();
        let mut want = contents;
        want[1]["parts"][0]["thoughtSignature"] = json!(super::super::request::UNSIGNED);
        want[3]["parts"][1]["thoughtSignature"] = json!(super::super::request::UNSIGNED);
        want[3]["parts"][1]["functionCall"]
            .as_object_mut()
            .unwrap()
            .remove("id");
        want[4]["parts"][0]["functionResponse"]
            .as_object_mut()
            .unwrap()
            .remove("id");
        assert_eq!(body["contents"], want);
        // And to OpenAI, whose check the neutral ids pass.
        assert!(crate::openai::wire::encode_request(&decoded.request).is_ok());
        assert!(crate::anthropic::wire::encode_request(&decoded.request, 100).is_ok());
    }

    /// Every result finds its call in logarithmic time: 20,000 calls and
    /// 20,000 results by name (1.5 MB, under the gateway's default body
    /// limit) took 20 s of a debug build when each result scanned every
    /// call (found by `tests/parsers_fuzz.rs`). The matching is as before:
    /// by id, else the earliest unanswered call of the name in the latest
    /// turn that has one.
    #[test]
    fn many_calls_and_results_are_matched_in_linear_time() {
        let n = 20_000;
        let calls: Vec<Value> = (0..n)
            .map(|i| json!({"functionCall": {"name": "f", "id": format!("c{i}")}}))
            .collect();
        let results: Vec<Value> = (0..n)
            .map(|_| json!({"functionResponse": {"name": "f"}}))
            .collect();
        let started = std::time::Instant::now();
        let decoded = decode(json!({"contents": [{"role": "model", "parts": calls},
                                                 {"role": "user", "parts": results}]}))
        .unwrap();
        let elapsed = started.elapsed();
        let m = &decoded.request.messages;
        assert_eq!(m.len(), 1 + n);
        assert_eq!(m[1].tool_call_id.as_deref(), Some("c0"));
        assert_eq!(
            m[n].tool_call_id.as_deref(),
            Some(format!("c{}", n - 1).as_str())
        );
        // About 0.25 s unloaded; the scan took 20 s here.
        assert!(elapsed < std::time::Duration::from_secs(3), "{elapsed:?}");

        let call = |id: &str| json!({"functionCall": {"name": "f", "id": id}});
        let result = |id: Option<&str>| match id {
            Some(id) => json!({"functionResponse": {"name": "f", "id": id}}),
            None => json!({"functionResponse": {"name": "f"}}),
        };
        let decoded = decode(json!({"contents": [
            {"role": "model", "parts": [call("a")]},
            {"role": "user", "parts": [{"text": "go on"}]},
            {"role": "model", "parts": [call("b"), call("c")]},
            {"role": "user", "parts": [result(None), result(Some("b")), result(None), result(None)]}]}))
        .unwrap();
        let answered: Vec<_> = decoded.request.messages[3..]
            .iter()
            .map(|m| m.tool_call_id.as_deref().unwrap())
            .collect();
        // The latest turn's first, by id (even an answered call), the
        // latest turn's next, then the earlier turn's.
        assert_eq!(answered, ["b", "b", "c", "a"]);
        let e = decode(json!({"contents": [
            {"role": "model", "parts": [call("a")]},
            {"role": "user", "parts": [result(None), result(None)]}]}))
        .unwrap_err();
        assert_eq!(e.field(), Some("contents[1].parts[1].functionResponse"));
    }

    #[test]
    fn every_bad_input_is_a_clear_error() {
        let no_model = decode_request(
            br#"{"contents": [{"parts": [{"text": "x"}]}]}"#,
            &Endpoint::default(),
        )
        .unwrap_err();
        assert_eq!(no_model.field(), Some("model"));
        for (body, at) in [
            (json!({"contents": []}), Some("contents")),
            (
                json!({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}),
                Some("contents[0].role"),
            ),
            (
                json!({"contents": [{"role": "user", "parts": []}]}),
                Some("contents[0].parts"),
            ),
            (
                json!({"contents": [{"parts": [{"text": 5}]}]}),
                Some("contents[0].parts[0].text"),
            ),
            (
                json!({"contents": [{"parts": [{}]}]}),
                Some("contents[0].parts[0]"),
            ),
            (
                json!({"contents": [{"parts": [{"inlineData": {"data": "x"}}]}]}),
                Some("contents[0].parts[0].inlineData"),
            ),
            (
                json!({"contents": [{"parts": [{"fileData": {}}]}]}),
                Some("contents[0].parts[0].fileData.fileUri"),
            ),
            (
                json!({"contents": [{"parts": [{"functionCall": {"name": "f"}}]}]}),
                Some("contents[0].parts[0].functionCall"),
            ),
            (
                json!({"contents": [{"role": "model", "parts": [{"functionCall": {"args": {}}}]}]}),
                Some("contents[0].parts[0].functionCall.name"),
            ),
            (
                json!({"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": [1]}}]}]}),
                Some("contents[0].parts[0].functionCall.args"),
            ),
            (
                json!({"contents": [{"parts": [{"functionResponse": {"name": "f", "response": {}}}]}]}),
                Some("contents[0].parts[0].functionResponse"),
            ),
            (
                json!({"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f"}}]},
                                 {"role": "model", "parts": [{"functionResponse": {"name": "f"}}]}]}),
                Some("contents[1].parts[0].functionResponse"),
            ),
            (
                json!({"contents": [{"parts": [{"functionResponse": {"response": {}}}]}]}),
                Some("contents[0].parts[0].functionResponse"),
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "systemInstruction": {"parts": [{"inlineData": {}}]}}),
                Some("systemInstruction.parts[0]"),
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]}),
                Some("tools[0].googleSearch"),
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{"description": "d"}]}]}),
                Some("tools[0].functionDeclarations[0].name"),
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [7]}]}),
                Some("tools[0].functionDeclarations[0].name"),
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": {}}]}),
                Some("tools[0].functionDeclarations"),
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["a", "b"]}}}),
                Some("toolConfig.functionCallingConfig.allowedFunctionNames"),
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["a"]}}}),
                Some("toolConfig.functionCallingConfig.allowedFunctionNames"),
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "toolConfig": {"functionCallingConfig": {"mode": "VALIDATED"}}}),
                Some("toolConfig.functionCallingConfig.mode"),
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 2}}),
                Some("generationConfig.candidateCount"),
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": -1}}),
                Some("generationConfig.maxOutputTokens"),
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": 1.5}}),
                Some("generationConfig.maxOutputTokens"),
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": "hot"}}),
                Some("generationConfig.temperature"),
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"stopSequences": "END"}}),
                Some("generationConfig.stopSequences"),
            ),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"stopSequences": [1]}}),
                Some("generationConfig.stopSequences"),
            ),
            (json!({"contents": "x"}), None),
            (json!({"contents": [{"parts": "x"}]}), None),
            (json!({"contents": [{"role": 5, "parts": []}]}), None),
            (
                json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": 5}),
                None,
            ),
            (json!([1]), None),
            (json!(null), None),
        ] {
            let e = decode(body.clone()).expect_err(&body.to_string());
            assert_eq!(e.field(), at, "{body}: {e}");
        }
        for raw in [
            &b""[..],
            b"{",
            b"\xff\xfe",
            b"{\"contents\": [{\"parts\": [{\"text\": \"\xff\"}]}]}",
        ] {
            assert!(
                matches!(decode_request(raw, &endpoint()), Err(IngressError::Json(_))),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn an_answer_encodes_as_gemini_writes_it() {
        let mut answer = ChatResponse::tool_calls(
            "gemini-2.5-flash-001",
            vec![ToolCall::new(
                "call_1",
                "get_weather",
                r#"{"city":"Paris"}"#,
            )],
        )
        .with_id("r1")
        .with_usage(Usage::new(10, 7).with_cached_input(2).with_reasoning(3));
        answer.message.content = Content::Text("Let me check.".into());
        let body: Value = serde_json::from_slice(&encode_response(&answer).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "candidates": [{"content": {"role": "model", "parts": [
                    {"text": "Let me check."},
                    {"functionCall": {"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}}}]},
                    "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4, "totalTokenCount": 17,
                                  "cachedContentTokenCount": 2, "thoughtsTokenCount": 3},
                "modelVersion": "gemini-2.5-flash-001",
                "responseId": "r1",
            })
        );
        // It reads back as the same answer.
        let back = super::super::wire::parse(
            200,
            &http::HeaderMap::new(),
            &encode_response(&answer).unwrap(),
        )
        .unwrap();
        assert_eq!(back.calls(), answer.calls());
        assert_eq!(back.usage, answer.usage);
        assert_eq!(back.finish_reason, FinishReason::ToolCalls);

        for (reason, want) in [
            (FinishReason::Length, "MAX_TOKENS"),
            (FinishReason::ContentFilter, "SAFETY"),
            (FinishReason::Other("RECITATION".into()), "RECITATION"),
            (FinishReason::Other("pause_turn".into()), "OTHER"),
        ] {
            let answer = ChatResponse::new("m", "").with_finish_reason(reason);
            let body: Value = serde_json::from_slice(&encode_response(&answer).unwrap()).unwrap();
            assert_eq!(body["candidates"][0]["finishReason"], want);
            assert_eq!(
                body["candidates"][0]["content"]["parts"],
                json!([{"text": ""}])
            );
        }
        let mut refused = ChatResponse::new("m", "");
        refused.refusal = Some("I can't help with that.".into());
        let body: Value = serde_json::from_slice(&encode_response(&refused).unwrap()).unwrap();
        assert_eq!(body["candidates"][0]["finishReason"], "SAFETY");
        let bad = ChatResponse::tool_calls("m", vec![ToolCall::new("c", "f", "[1]")]);
        assert!(encode_response(&bad).is_err());
    }

    #[test]
    fn a_stream_encodes_as_gemini_streams() {
        let mut s = StreamEncoder::new("r1", "gemini-2.5-flash");
        let mut out = s.encode(&StreamEvent::TextDelta("Hel".into()));
        out.extend(s.encode(&StreamEvent::TextDelta("lo".into())));
        for event in [
            StreamEvent::ToolCallDelta {
                index: 0,
                id: Some("call_a".into()),
                name: Some("f".into()),
                arguments: "{\"x\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: " 1}".into(),
            },
            StreamEvent::Usage(Usage::new(5, 9)),
            StreamEvent::Finish(FinishReason::ToolCalls),
        ] {
            assert!(s.encode(&event).is_empty());
        }
        out.extend(s.finish());
        let chunks = frames(&out);
        assert_eq!(chunks.len(), 3);
        assert_eq!(
            chunks[0]["candidates"][0]["content"]["parts"][0]["text"],
            "Hel"
        );
        assert_eq!(chunks[0]["responseId"], "r1");
        assert!(chunks[0]["candidates"][0].get("finishReason").is_none());
        assert_eq!(chunks[2]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            chunks[2]["candidates"][0]["content"]["parts"][0]["functionCall"],
            json!({"id": "call_a", "name": "f", "args": {"x": 1}})
        );
        assert_eq!(chunks[2]["usageMetadata"]["totalTokenCount"], 14);
        // Gemini's own stream reader takes it for a complete answer.
        let mut p = super::super::events::GeminiEvents::new();
        let mut acc = staunch_core::StreamAccumulator::new();
        for chunk in &chunks {
            if let crate::sse::Step::Events(events) =
                p.parse(&crate::sse::SseFrame::data(chunk.to_string()))
            {
                events.iter().for_each(|e| acc.push(e));
            }
        }
        assert_eq!(acc.text(), "Hello");
        assert_eq!(acc.calls()[0].arguments, r#"{"x":1}"#);
        assert_eq!(acc.finish(), Some(&FinishReason::ToolCalls));
    }

    #[test]
    fn a_stream_failure_is_an_in_band_error() {
        let mut s = StreamEncoder::new("r1", "m");
        let _ = s.encode(&StreamEvent::TextDelta("a".into()));
        let out = s.error(&LlmError::new(ErrorKind::Overloaded, "upstream overloaded"));
        let chunks = frames(&out);
        assert_eq!(chunks[0]["error"]["code"], 503);
        assert_eq!(chunks[0]["error"]["status"], "UNAVAILABLE");
        assert!(
            chunks[0]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("upstream overloaded")
        );
        assert!(s.finish().is_empty());
        assert!(s.encode(&StreamEvent::TextDelta("b".into())).is_empty());
        // It reads back as the error it was.
        let step = super::super::events::GeminiEvents::new()
            .parse(&crate::sse::SseFrame::data(chunks[0].to_string()));
        let crate::sse::Step::Error(e) = step else {
            panic!("{step:?}")
        };
        assert_eq!(e.kind, ErrorKind::Overloaded);
        // Arguments that are no object end the stream with an error too.
        let mut s = StreamEncoder::new("r1", "m");
        let _ = s.encode(&StreamEvent::ToolCallDelta {
            index: 0,
            id: Some("c".into()),
            name: Some("f".into()),
            arguments: "nope".into(),
        });
        let chunks = frames(&s.finish());
        assert!(chunks[0].get("error").is_some());
    }
}

#[cfg(test)]
mod text_chunk_tests {
    use super::*;
    use crate::test_strategies::json_text;
    use proptest::prelude::*;

    proptest! {
        /// The chunk of a token written by hand is the one built as a
        /// value, as the encoder wrote every token's chunk before.
        #[test]
        fn a_token_s_chunk_written_by_hand_is_what_the_value_wrote(
            token in json_text(),
            id in json_text(),
            model in json_text(),
        ) {
            let encoder = StreamEncoder::new(id, model);
            let mine = encoder.text_chunk(&token);
            let oracle = encoder.chunk(vec![json!({"text": token})], None, false);
            prop_assert_eq!(String::from_utf8_lossy(&mine), String::from_utf8_lossy(&oracle));
        }
    }
}

#[cfg(test)]
mod answer_tests {
    use super::*;
    use crate::test_strategies::{chat_answer, json_text, same_output};
    use proptest::prelude::*;

    /// The answer built as a value and serialized, as the encoder did
    /// before it wrote the bytes itself: the oracle.
    fn through_a_value(response: &ChatResponse) -> Result<Vec<u8>, IngressError> {
        let mut parts = Vec::new();
        for part in response.message.content.parts() {
            match part {
                staunch_core::PartRef::Text("") => {}
                staunch_core::PartRef::Text(text) => parts.push(json!({"text": text})),
                staunch_core::PartRef::Part(ContentPart::Opaque {
                    dialect: Dialect::Gemini,
                    part,
                }) => parts.push(part.clone()),
                // Images and other dialects' parts: not in a Gemini answer.
                _ => {}
            }
        }
        for call in &response.message.tool_calls {
            parts.push(call_part(call).map_err(|why| field("tool_calls.arguments", why))?);
        }
        if parts.is_empty() {
            parts.push(json!({"text": ""}));
        }
        let finish = if response.refusal.is_some() && response.message.content.is_empty() {
            "SAFETY"
        } else {
            finish_reason(&response.finish_reason)
        };
        let id = if response.id.is_empty() {
            "staunch"
        } else {
            &response.id
        };
        let body = json!({
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
            "usageMetadata": usage_json(&response.usage),
            "modelVersion": response.answered_model(),
            "responseId": id,
        });
        Ok(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// A content part: text, a Gemini part kept as it came, or a part no
    /// Gemini answer has (an image, another dialect's part).
    fn part() -> impl Strategy<Value = ContentPart> {
        prop_oneof![
            3 => json_text().prop_map(|text| ContentPart::Text { text }),
            1 => (json_text(), any::<i32>()).prop_map(|(t, n)| ContentPart::Opaque {
                dialect: Dialect::Gemini,
                part: json!({"thought": true, "text": t, "thoughtSignature": n.to_string()}),
            }),
            1 => json_text().prop_map(|url| ContentPart::ImageUrl { url, detail: None }),
            1 => Just(ContentPart::Opaque {
                dialect: Dialect::Anthropic,
                part: json!({"type": "thinking"}),
            }),
        ]
    }

    fn content() -> impl Strategy<Value = Content> {
        prop_oneof![
            json_text().prop_map(Content::Text),
            proptest::collection::vec(part(), 0..4).prop_map(Content::Parts),
        ]
    }

    proptest! {
        #[test]
        fn written_by_hand_it_is_byte_for_byte_the_value_s(response in chat_answer(content())) {
            same_output(encode_response(&response), through_a_value(&response))?;
        }
    }
}
