//! The Gemini `generateContent` request body, serialized straight from a
//! borrowed [`ChatRequest`]: system and developer messages become
//! `systemInstruction`, the rest `contents` of `user` and `model` turns
//! (consecutive messages of one side merged into one turn), tool calls
//! `functionCall` parts, tool results `functionResponse` parts of a `user`
//! turn (named after the call they answer), tools `functionDeclarations`,
//! and the sampling settings and output format `generationConfig`.

use crate::dialect::conversation::{self, parse_data_url, unsupported};
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use staunch_core::{
    ChatRequest, Content, ContentPart, Dialect, LlmError, Message, PartRef, ResponseFormat, Role,
    ToolChoice, ToolDefinition,
};
use std::collections::HashMap;

/// The largest inline request Gemini accepts, in bytes (20 MB).
const MAX_INLINE_BYTES: usize = 20 * 1024 * 1024;

/// The most stop sequences Gemini takes.
const MAX_STOP_SEQUENCES: usize = 5;

/// The thought signature Gemini documents for a function call it did not
/// sign itself (a conversation from another model, or one whose signature
/// the neutral model does not carry): Gemini 3 refuses a replayed
/// function call without one.
pub(crate) const UNSIGNED: &str = "skip_thought_signature_validator";

/// The request body for `request`: the neutral fields, then the
/// Gemini-dialect extras (a top-level key replaces the typed field of that
/// name; the keys of a `generationConfig` object are merged into the typed
/// `generationConfig`). It borrows the request and serializes straight into
/// the output; [`encode_request`] is what the client sends.
pub fn request_body(request: &ChatRequest) -> RequestBody<'_> {
    RequestBody { request }
}

/// A Gemini request body borrowed from a [`ChatRequest`]; see
/// [`request_body`].
pub struct RequestBody<'a> {
    request: &'a ChatRequest,
}

/// The media type of an image Gemini should fetch from `url`, told by the
/// file's extension (Gemini needs it for a URL it does not host). Files
/// uploaded to the Gemini Files API need none.
pub(crate) fn url_media_type(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let extension = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => return None,
    })
}

/// True for a URL of a file in the Gemini Files API (its type is known
/// there).
fn is_gemini_file(url: &str) -> bool {
    url.starts_with("https://generativelanguage.googleapis.com/")
}

/// The arguments of a tool call as a JSON object (empty text is `{}`), or
/// `None` when they are not one.
pub(crate) fn arguments(text: &str) -> Option<Map<String, Value>> {
    let text = text.trim();
    if text.is_empty() {
        return Some(Map::new());
    }
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Checks that Gemini can express `request`: tool results answer earlier
/// calls, no part of another dialect, tool-call arguments are JSON objects,
/// no image in a tool result, images by URL are ones Gemini can fetch, at
/// most 5 stop sequences, parallel tool calls not turned off, and a JSON
/// output format without tools. The error is `InvalidRequest` for a
/// conversation no provider would take, `FeatureUnsupported` for what only
/// Gemini can't express; nothing is sent either way.
pub fn check(request: &ChatRequest) -> Result<(), LlmError> {
    conversation::check(request, Dialect::Gemini)?;
    let mut inline = 0usize;
    for (i, m) in request.messages.iter().enumerate() {
        for call in &m.tool_calls {
            if arguments(&call.arguments).is_none() {
                return Err(unsupported(
                    Dialect::Gemini,
                    format!(
                        "tool call arguments that are not a JSON object (message {i}, call {:?})",
                        call.id
                    ),
                ));
            }
        }
        let Content::Parts(parts) = &m.content else {
            continue;
        };
        for part in parts {
            if part.is_image() && m.role == Role::Tool {
                return Err(unsupported(
                    Dialect::Gemini,
                    format!("an image in a tool result (message {i})"),
                ));
            }
            match part {
                ContentPart::Text { .. } | ContentPart::Opaque { .. } => {}
                ContentPart::ImageBase64 { data, .. } => inline += data.len() / 4 * 3,
                ContentPart::ImageUrl { url, .. } => match parse_data_url(url) {
                    Some((_, data)) => inline += data.len() / 4 * 3,
                    None if !(url.starts_with("https://") || url.starts_with("http://")) => {
                        return Err(unsupported(
                            Dialect::Gemini,
                            format!("an image URL that is neither http(s) nor data (message {i})"),
                        ));
                    }
                    None if url_media_type(url).is_none() && !is_gemini_file(url) => {
                        return Err(unsupported(
                            Dialect::Gemini,
                            format!(
                                "an image URL without a known image file extension (message {i}); send the image as data"
                            ),
                        ));
                    }
                    None => {}
                },
                _ => {
                    return Err(unsupported(
                        Dialect::Gemini,
                        format!("a content part of a kind it does not know (message {i})"),
                    ));
                }
            }
        }
    }
    if inline > MAX_INLINE_BYTES {
        return Err(unsupported(
            Dialect::Gemini,
            "more than 20 MB of inline images in one request",
        ));
    }
    if request.stop.len() > MAX_STOP_SEQUENCES {
        return Err(unsupported(
            Dialect::Gemini,
            format!(
                "{} stop sequences (at most {MAX_STOP_SEQUENCES})",
                request.stop.len()
            ),
        ));
    }
    if !request.tools.is_empty() && request.parallel_tool_calls == Some(false) {
        return Err(unsupported(
            Dialect::Gemini,
            "turning parallel tool calls off",
        ));
    }
    if request
        .response_format
        .as_ref()
        .is_some_and(ResponseFormat::is_json)
        && !request.tools.is_empty()
    {
        return Err(unsupported(
            Dialect::Gemini,
            "a JSON output format together with tools",
        ));
    }
    Ok(())
}

/// The body bytes for `request`, checked ([`check`]) and serialized into
/// one buffer sized from a cheap estimate of the output.
pub fn encode_request(request: &ChatRequest) -> Result<Vec<u8>, LlmError> {
    check(request)?;
    let estimate = crate::json::estimate_request(
        request,
        Dialect::Gemini,
        // `{"role":"model","parts":[{"text":"…"}]},` is about 40 bytes
        // around the text; calls and results add their own.
        |m| {
            m.content.byte_len()
                + 40
                + m.tool_call_id.as_ref().map_or(0, |_| 64)
                + m.tool_calls
                    .iter()
                    .map(|c| c.name.len() + c.arguments.len() + 96)
                    .sum::<usize>()
        },
        64,
    );
    crate::json::encode(&request_body(request), estimate).map_err(|e| {
        conversation::invalid("could not encode the request for Gemini").with_source(e)
    })
}

fn is_system(m: &Message) -> bool {
    matches!(m.role, Role::System | Role::Developer)
}

/// `user` or `model`: tool results are the user's side.
fn side(m: &Message) -> &'static str {
    if m.role == Role::Assistant {
        "model"
    } else {
        "user"
    }
}

impl Serialize for RequestBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.request;
        let extra = r.extra.get(Dialect::Gemini);
        let typed = |key: &str| !extra.contains_key(key);
        // A `generationConfig` object in the extras is merged into ours.
        let extra_config = match extra.get("generationConfig") {
            Some(Value::Object(map)) => Some(map),
            _ => None,
        };
        let mut map = serializer.serialize_map(None)?;
        if typed("systemInstruction") && r.messages.iter().any(is_system) {
            map.serialize_entry("systemInstruction", &System(&r.messages))?;
        }
        if typed("contents") {
            map.serialize_entry("contents", &Contents(&r.messages))?;
        }
        if typed("tools") && !r.tools.is_empty() {
            map.serialize_entry("tools", &[Declarations(&r.tools)])?;
        }
        if typed("toolConfig")
            && !r.tools.is_empty()
            && let Some(choice) = &r.tool_choice
        {
            map.serialize_entry("toolConfig", &ToolConfig(choice))?;
        }
        let config = GenerationConfig {
            request: r,
            extra: extra_config,
        };
        if (typed("generationConfig") || extra_config.is_some()) && !config.is_empty() {
            map.serialize_entry("generationConfig", &config)?;
        }
        for (k, v) in extra {
            if k == "generationConfig" && extra_config.is_some() {
                continue;
            }
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The system and developer messages, one text part each.
struct System<'a>(&'a [Message]);

impl Serialize for System<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Parts<'a>(&'a [Message]);
        impl Serialize for Parts<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(
                    self.0
                        .iter()
                        .filter(|m| is_system(m))
                        .map(|m| Text(m.content.text())),
                )
            }
        }
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("parts", &Parts(self.0))?;
        map.end()
    }
}

struct Text<T>(T);

impl<T: AsRef<str>> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("text", self.0.as_ref())?;
        map.end()
    }
}

/// The conversation without its system messages, as turns: a run of
/// messages of one side is one turn. A turn with nothing to say (an empty
/// assistant message) is left out: Gemini refuses a turn without parts.
struct Contents<'a>(&'a [Message]);

impl Serialize for Contents<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let messages = self.0;
        // The tool each result answers: the latest earlier call with its id.
        let mut calls: HashMap<&str, &str> = HashMap::new();
        let mut names: Vec<&str> = Vec::with_capacity(messages.len());
        for m in messages {
            for call in &m.tool_calls {
                calls.insert(&call.id, &call.name);
            }
            let name = m
                .tool_call_id
                .as_deref()
                .filter(|_| m.role == Role::Tool)
                .and_then(|id| calls.get(id).copied())
                .unwrap_or_default();
            names.push(name);
        }
        let mut seq = serializer.serialize_seq(None)?;
        let mut start = 0;
        while let Some(first) = messages[start..].iter().position(|m| !is_system(m)) {
            let from = start + first;
            let role = side(&messages[from]);
            let to = messages[from..]
                .iter()
                .position(|m| !is_system(m) && side(m) != role)
                .map_or(messages.len(), |n| from + n);
            let turn = Turn {
                role,
                messages: &messages[from..to],
                names: &names[from..to],
            };
            if turn.has_parts() {
                seq.serialize_element(&turn)?;
            }
            start = to;
        }
        seq.end()
    }
}

struct Turn<'a> {
    role: &'static str,
    // The turn's messages (system ones among them are skipped) and, for
    // each tool result, the name of the tool it answers.
    messages: &'a [Message],
    names: &'a [&'a str],
}

impl Turn<'_> {
    fn has_parts(&self) -> bool {
        self.messages.iter().any(|m| {
            !is_system(m)
                && (m.role == Role::Tool
                    || !m.tool_calls.is_empty()
                    || m.content.parts().any(|p| p != PartRef::Text("")))
        })
    }
}

impl Serialize for Turn<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("role", self.role)?;
        map.serialize_entry("parts", &Parts(self))?;
        map.end()
    }
}

struct Parts<'a>(&'a Turn<'a>);

impl Serialize for Parts<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let turn = self.0;
        let mut seq = serializer.serialize_seq(None)?;
        let mut signed = false;
        for (m, name) in turn.messages.iter().zip(turn.names) {
            if is_system(m) {
                continue;
            }
            if m.role == Role::Tool {
                seq.serialize_element(&FunctionResponse { message: m, name })?;
                continue;
            }
            for part in m.content.parts() {
                match part {
                    PartRef::Text("") => {}
                    PartRef::Text(text) => seq.serialize_element(&Text(text))?,
                    PartRef::Part(part) => seq.serialize_element(&OutPart(part))?,
                    _ => {}
                }
            }
            for call in &m.tool_calls {
                // The first call of a turn carries its signature, as
                // Gemini's own parallel calls do.
                seq.serialize_element(&FunctionCall {
                    name: &call.name,
                    arguments: &call.arguments,
                    signature: !std::mem::replace(&mut signed, true),
                })?;
            }
        }
        seq.end()
    }
}

struct OutPart<'a>(&'a ContentPart);

impl Serialize for OutPart<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Inline<'a> {
            mime_type: &'a str,
            data: &'a str,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct File<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            mime_type: Option<&'a str>,
            file_uri: &'a str,
        }
        if let ContentPart::Opaque { part, .. } = self.0 {
            return part.serialize(serializer);
        }
        let mut map = serializer.serialize_map(Some(1))?;
        match self.0 {
            ContentPart::Text { text } => map.serialize_entry("text", text)?,
            ContentPart::ImageBase64 { media_type, data } => map.serialize_entry(
                "inlineData",
                &Inline {
                    mime_type: media_type,
                    data,
                },
            )?,
            ContentPart::ImageUrl { url, .. } => match parse_data_url(url) {
                Some((mime_type, data)) => {
                    map.serialize_entry("inlineData", &Inline { mime_type, data })?
                }
                None => map.serialize_entry(
                    "fileData",
                    &File {
                        mime_type: url_media_type(url),
                        file_uri: url,
                    },
                )?,
            },
            // A part added to the neutral model later is refused by `check`.
            _ => return Err(S::Error::custom("a content part Gemini can't express")),
        }
        map.end()
    }
}

struct FunctionCall<'a> {
    name: &'a str,
    arguments: &'a str,
    signature: bool,
}

impl Serialize for FunctionCall<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Call<'a> {
            name: &'a str,
            args: Map<String, Value>,
        }
        let args = arguments(self.arguments)
            .ok_or_else(|| S::Error::custom("tool call arguments are not a JSON object"))?;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(
            "functionCall",
            &Call {
                name: self.name,
                args,
            },
        )?;
        if self.signature {
            map.serialize_entry("thoughtSignature", UNSIGNED)?;
        }
        map.end()
    }
}

/// The `response` object of a tool result: a result whose text is a JSON
/// object is that object; any other text is `{"output": text}`, a failed
/// tool's `{"error": …}`, as Gemini's documentation words them.
pub(crate) fn tool_response(message: &Message) -> Value {
    let text = message.content.text();
    let parsed = match serde_json::from_str::<Value>(text.trim()) {
        Ok(object @ Value::Object(_)) => Some(object),
        _ => None,
    };
    let key = if message.is_error { "error" } else { "output" };
    match parsed {
        Some(object) if !message.is_error => object,
        Some(object) => Value::Object(Map::from_iter([(key.to_owned(), object)])),
        None => Value::Object(Map::from_iter([(
            key.to_owned(),
            Value::String(text.into_owned()),
        )])),
    }
}

struct FunctionResponse<'a> {
    message: &'a Message,
    name: &'a str,
}

impl Serialize for FunctionResponse<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Response<'a> {
            name: &'a str,
            response: Value,
        }
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(
            "functionResponse",
            &Response {
                name: self.name,
                response: tool_response(self.message),
            },
        )?;
        map.end()
    }
}

/// `[{"functionDeclarations": [...]}]`'s one element. The schema goes as
/// `parametersJsonSchema`, which takes JSON Schema as the other dialects
/// write it (`parameters` takes only an OpenAPI subset).
struct Declarations<'a>(&'a [ToolDefinition]);

impl Serialize for Declarations<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Declaration<'a> {
            name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a str>,
            parameters_json_schema: &'a Value,
        }
        struct List<'a>(&'a [ToolDefinition]);
        impl Serialize for List<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter().map(|t| Declaration {
                    name: &t.name,
                    description: t.description.as_deref(),
                    parameters_json_schema: &t.parameters,
                }))
            }
        }
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("functionDeclarations", &List(self.0))?;
        map.end()
    }
}

struct ToolConfig<'a>(&'a ToolChoice);

impl Serialize for ToolConfig<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Calling<'a> {
            mode: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            allowed_function_names: Option<[&'a str; 1]>,
        }
        let calling = match self.0 {
            ToolChoice::None => Calling {
                mode: "NONE",
                allowed_function_names: None,
            },
            ToolChoice::Required => Calling {
                mode: "ANY",
                allowed_function_names: None,
            },
            ToolChoice::Tool(name) => Calling {
                mode: "ANY",
                allowed_function_names: Some([name]),
            },
            _ => Calling {
                mode: "AUTO",
                allowed_function_names: None,
            },
        };
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("functionCallingConfig", &calling)?;
        map.end()
    }
}

/// The typed `generationConfig` fields, with the extras' keys merged in (a
/// key there replaces the typed field of that name).
struct GenerationConfig<'a> {
    request: &'a ChatRequest,
    extra: Option<&'a Map<String, Value>>,
}

impl GenerationConfig<'_> {
    fn typed(&self, key: &str) -> bool {
        !self.extra.is_some_and(|e| e.contains_key(key))
    }

    fn is_empty(&self) -> bool {
        let r = self.request;
        r.max_tokens.is_none()
            && r.temperature.is_none()
            && r.top_p.is_none()
            && r.stop.is_empty()
            && !r
                .response_format
                .as_ref()
                .is_some_and(ResponseFormat::is_json)
            && self.extra.is_none_or(Map::is_empty)
    }
}

impl Serialize for GenerationConfig<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.request;
        let mut map = serializer.serialize_map(None)?;
        if let Some(n) = r.max_tokens.filter(|_| self.typed("maxOutputTokens")) {
            map.serialize_entry("maxOutputTokens", &n)?;
        }
        if let Some(t) = r.temperature.filter(|_| self.typed("temperature")) {
            map.serialize_entry("temperature", &t)?;
        }
        if let Some(p) = r.top_p.filter(|_| self.typed("topP")) {
            map.serialize_entry("topP", &p)?;
        }
        if !r.stop.is_empty() && self.typed("stopSequences") {
            map.serialize_entry("stopSequences", &*r.stop)?;
        }
        match &r.response_format {
            Some(ResponseFormat::JsonObject) if self.typed("responseMimeType") => {
                map.serialize_entry("responseMimeType", "application/json")?;
            }
            Some(ResponseFormat::JsonSchema { schema, .. }) => {
                if self.typed("responseMimeType") {
                    map.serialize_entry("responseMimeType", "application/json")?;
                }
                if self.typed("responseJsonSchema") && self.typed("responseSchema") {
                    map.serialize_entry("responseJsonSchema", schema)?;
                }
            }
            _ => {}
        }
        for (k, v) in self.extra.into_iter().flatten() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use staunch_core::{ErrorKind, ToolCall};

    fn body(request: &ChatRequest) -> Value {
        serde_json::from_slice(&encode_request(request).expect("encodes")).expect("JSON")
    }

    fn weather() -> ToolDefinition {
        ToolDefinition::new(
            "get_weather",
            json!({"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": false}),
        )
        .with_description("Current weather")
    }

    #[test]
    fn a_plain_conversation() {
        let request = ChatRequest::new(
            "gemini-2.5-flash",
            vec![
                Message::system("Be brief."),
                Message::developer("Answer in French."),
                Message::user("Hi"),
                Message::assistant("Salut"),
                Message::user("Weather?"),
            ],
        )
        .with_max_tokens(64)
        .with_temperature(0.5)
        .with_top_p(0.9)
        .with_stop(["END"]);
        assert_eq!(
            body(&request),
            json!({
                "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "Hi"}]},
                    {"role": "model", "parts": [{"text": "Salut"}]},
                    {"role": "user", "parts": [{"text": "Weather?"}]},
                ],
                "generationConfig": {"maxOutputTokens": 64, "temperature": 0.5, "topP": 0.9,
                                     "stopSequences": ["END"]},
            })
        );
    }

    /// An OpenAI-shaped conversation (parallel calls, their results, a
    /// follow-up) keeps its tool history on Gemini.
    #[test]
    fn a_cross_dialect_tool_history() {
        let request = ChatRequest::new(
            "gemini-2.5-pro",
            vec![
                Message::user("Weather in Paris and Rome?"),
                Message::assistant_tool_calls(
                    "Checking.",
                    vec![
                        ToolCall::new("call_abc", "get_weather", r#"{"city":"Paris"}"#),
                        ToolCall::new("call_def", "get_weather", r#"{"city": "Rome"}"#),
                    ],
                ),
                Message::tool_result("call_abc", r#"{"temp": 21}"#),
                Message::tool_error("call_def", "service down"),
                Message::user("And tomorrow?"),
                Message::assistant_tool_calls("", vec![ToolCall::new("toolu_1", "get_time", "")]),
                Message::tool_result("toolu_1", "noon"),
            ],
        )
        .with_tools([weather()])
        .with_tool_choice(ToolChoice::Tool("get_weather".into()));
        let b = body(&request);
        assert_eq!(
            b["contents"],
            json!([
                {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
                {"role": "model", "parts": [
                    {"text": "Checking."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                     "thoughtSignature": UNSIGNED},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "get_weather", "response": {"error": "service down"}}},
                    {"text": "And tomorrow?"},
                ]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "get_time", "args": {}}, "thoughtSignature": UNSIGNED},
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_time", "response": {"output": "noon"}}},
                ]},
            ])
        );
        assert_eq!(
            b["tools"],
            json!([{"functionDeclarations": [{"name": "get_weather", "description": "Current weather",
                "parametersJsonSchema": weather().parameters}]}])
        );
        assert_eq!(
            b["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
        );
        assert!(b.get("generationConfig").is_none());
    }

    #[test]
    fn tool_choices() {
        for (choice, want) in [
            (ToolChoice::Auto, json!({"mode": "AUTO"})),
            (ToolChoice::None, json!({"mode": "NONE"})),
            (ToolChoice::Required, json!({"mode": "ANY"})),
        ] {
            let request = ChatRequest::new("g", vec![Message::user("x")])
                .with_tools([weather()])
                .with_tool_choice(choice);
            assert_eq!(body(&request)["toolConfig"]["functionCallingConfig"], want);
        }
        // A choice without tools says nothing.
        let request =
            ChatRequest::new("g", vec![Message::user("x")]).with_tool_choice(ToolChoice::Required);
        assert!(body(&request).get("toolConfig").is_none());
    }

    #[test]
    fn images() {
        let request = ChatRequest::new(
            "g",
            vec![Message::user_parts([
                ContentPart::text("What is this?"),
                ContentPart::image_base64("image/png", "iVBORw0KGgo="),
                ContentPart::image_url("data:image/jpeg;base64,/9j/4AAQ"),
                ContentPart::image_url("https://example.com/cat.JPG?size=2"),
                ContentPart::image_url(
                    "https://generativelanguage.googleapis.com/v1beta/files/abc",
                ),
            ])],
        );
        assert_eq!(
            body(&request)["contents"][0]["parts"],
            json!([
                {"text": "What is this?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.JPG?size=2"}},
                {"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
            ])
        );
    }

    #[test]
    fn json_formats_and_extras() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let mut request = ChatRequest::new("g", vec![Message::user("x")])
            .with_response_format(ResponseFormat::json_schema("answer", schema.clone()))
            .with_max_tokens(10);
        let mut extras = staunch_core::Extras::default();
        extras.insert(
            Dialect::Gemini,
            "safetySettings",
            json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]),
        );
        extras.insert(
            Dialect::Gemini,
            "generationConfig",
            json!({"topK": 40, "maxOutputTokens": 99, "thinkingConfig": {"thinkingBudget": 0}}),
        );
        extras.insert(Dialect::OpenAi, "seed", 7);
        request.extra = std::sync::Arc::new(extras);
        let b = body(&request);
        assert_eq!(
            b["generationConfig"],
            json!({"responseMimeType": "application/json", "responseJsonSchema": schema,
                   "topK": 40, "maxOutputTokens": 99, "thinkingConfig": {"thinkingBudget": 0}})
        );
        assert_eq!(b["safetySettings"][0]["threshold"], "BLOCK_NONE");
        assert!(b.get("seed").is_none());
        let request = ChatRequest::new("g", vec![Message::user("x")])
            .with_response_format(ResponseFormat::JsonObject);
        assert_eq!(
            body(&request)["generationConfig"],
            json!({"responseMimeType": "application/json"})
        );
    }

    #[test]
    fn what_gemini_cannot_express_is_refused_before_the_wire() {
        let refused = |request: ChatRequest, needle: &str| {
            let e = encode_request(&request).expect_err(needle);
            assert_eq!(e.kind, ErrorKind::FeatureUnsupported, "{e}");
            assert!(e.message.contains(needle), "{e}");
            assert!(e.message.contains("gemini"), "{e}");
        };
        let user = || Message::user("x");
        refused(
            ChatRequest::new(
                "g",
                vec![
                    user(),
                    Message::assistant_tool_calls("", vec![ToolCall::new("c", "f", "[1, 2]")]),
                ],
            ),
            "not a JSON object",
        );
        refused(
            ChatRequest::new(
                "g",
                vec![
                    user(),
                    Message::assistant_tool_calls("", vec![ToolCall::new("c", "f", "{bad")]),
                ],
            ),
            "not a JSON object",
        );
        refused(
            ChatRequest::new(
                "g",
                vec![Message::user_parts([ContentPart::image_url(
                    "https://example.com/image",
                )])],
            ),
            "file extension",
        );
        refused(
            ChatRequest::new(
                "g",
                vec![Message::user_parts([ContentPart::image_url(
                    "gs://bucket/a.png",
                )])],
            ),
            "neither http(s) nor data",
        );
        refused(
            ChatRequest::new(
                "g",
                vec![Message::user_parts([ContentPart::Opaque {
                    dialect: Dialect::Anthropic,
                    part: json!({"type": "document"}),
                }])],
            ),
            "`document`",
        );
        refused(
            ChatRequest::new("g", vec![user()]).with_stop(["a", "b", "c", "d", "e", "f"]),
            "stop sequences",
        );
        refused(
            ChatRequest::new("g", vec![user()])
                .with_tools([weather()])
                .with_parallel_tool_calls(false),
            "parallel",
        );
        refused(
            ChatRequest::new("g", vec![user()])
                .with_tools([weather()])
                .with_response_format(ResponseFormat::JsonObject),
            "JSON output format",
        );
        let mut result = Message::tool_result("c", "");
        result.content = Content::Parts(vec![ContentPart::image_base64("image/png", "AAAA")]);
        refused(
            ChatRequest::new(
                "g",
                vec![
                    user(),
                    Message::assistant_tool_calls("", vec![ToolCall::new("c", "f", "{}")]),
                    result,
                ],
            ),
            "tool result",
        );
        // A result that answers no call is no request at all.
        let e = encode_request(&ChatRequest::new(
            "g",
            vec![user(), Message::tool_result("nope", "x")],
        ))
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
    }

    #[test]
    fn own_opaque_parts_pass_and_empty_turns_are_left_out() {
        let request = ChatRequest::new(
            "g",
            vec![
                Message::user_parts([ContentPart::Opaque {
                    dialect: Dialect::Gemini,
                    part: json!({"executableCode": {"language": "PYTHON", "code": "print(1)"}}),
                }]),
                Message::assistant(""),
                Message::user("go on"),
            ],
        );
        assert_eq!(
            body(&request)["contents"],
            json!([
                {"role": "user", "parts": [{"executableCode": {"language": "PYTHON", "code": "print(1)"}}]},
                {"role": "user", "parts": [{"text": "go on"}]},
            ])
        );
    }

    #[test]
    fn extras_replace_typed_fields() {
        let request = ChatRequest::new("g", vec![Message::user("x")])
            .with_max_tokens(5)
            .with_extra(Dialect::Gemini, "generationConfig", json!("raw"));
        let b = body(&request);
        assert_eq!(b["generationConfig"], "raw");
    }
}
