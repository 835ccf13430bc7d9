//! The OpenAI Chat Completions request body, serialized straight from a
//! borrowed [`ChatRequest`] with no JSON tree in between.

use crate::dialect::conversation::{self, unsupported};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use staunch_core::{
    ChatRequest, Content, ContentPart, Dialect, LlmError, Message, ResponseFormat, Role, ToolCall,
    ToolChoice, ToolDefinition,
};
use std::fmt;

/// The largest image OpenAI accepts, in bytes (20 MB).
const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;

/// The request body for `request`: the neutral fields, then the
/// OpenAI-dialect extras (which override them, e.g. `max_completion_tokens`).
/// It borrows the request and serializes straight into the output;
/// [`encode_request`] is what the client sends.
pub fn request_body(request: &ChatRequest) -> RequestBody<'_> {
    RequestBody { request }
}

/// Checks that OpenAI can express `request`: tool results answer earlier
/// calls, no Anthropic-only part, no image in a tool result or an assistant
/// message, no image over 20 MB. The error is `InvalidRequest` for a
/// conversation no provider would take, `FeatureUnsupported` for what only
/// this dialect can't express.
pub fn check(request: &ChatRequest) -> Result<(), LlmError> {
    conversation::check(request, Dialect::OpenAi)?;
    for (i, m) in request.messages.iter().enumerate() {
        if let Content::Parts(parts) = &m.content {
            for part in parts {
                if part.is_image() && matches!(m.role, Role::Tool | Role::Assistant) {
                    return Err(unsupported(
                        Dialect::OpenAi,
                        format!("an image in a {} message (message {i})", m.role),
                    ));
                }
                if let ContentPart::ImageBase64 { data, .. } = part
                    && data.len() / 4 * 3 > MAX_IMAGE_BYTES
                {
                    return Err(unsupported(
                        Dialect::OpenAi,
                        format!("an image larger than 20 MB (message {i})"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The body bytes for `request`, checked ([`check`]) and serialized into
/// one buffer sized from a cheap estimate of the output (so memory stays
/// about the body's size, whatever the conversation's length).
pub fn encode_request(request: &ChatRequest) -> Result<Vec<u8>, LlmError> {
    check(request)?;
    let estimate = crate::json::estimate_request(
        request,
        Dialect::OpenAi,
        |m| {
            m.role.as_str().len()
                + 25
                + m.content.byte_len()
                + m.name.as_ref().map_or(0, |n| n.len() + 10)
                + m.tool_call_id.as_ref().map_or(0, |n| n.len() + 18)
                + crate::json::calls_len(&m.tool_calls, 64)
        },
        80,
    );
    crate::json::encode(&request_body(request), estimate).map_err(|e| {
        conversation::invalid("could not encode the request for OpenAI").with_source(e)
    })
}

/// An OpenAI request body borrowed from a [`ChatRequest`]; see
/// [`request_body`].
pub struct RequestBody<'a> {
    request: &'a ChatRequest,
}

impl Serialize for RequestBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.request;
        let extra = r.extra.get(Dialect::OpenAi);
        // A key in the OpenAI extras replaces the typed field of that name.
        let typed = |key: &str| !extra.contains_key(key);
        let mut map = serializer.serialize_map(None)?;
        if typed("model") {
            map.serialize_entry("model", &r.model)?;
        }
        if typed("messages") {
            map.serialize_entry("messages", &Messages(&r.messages))?;
        }
        if let Some(n) = r.max_tokens.filter(|_| typed("max_tokens")) {
            map.serialize_entry("max_tokens", &n)?;
        }
        if let Some(t) = r.temperature.filter(|_| typed("temperature")) {
            map.serialize_entry("temperature", &t)?;
        }
        if let Some(p) = r.top_p.filter(|_| typed("top_p")) {
            map.serialize_entry("top_p", &p)?;
        }
        if !r.stop.is_empty() && typed("stop") {
            map.serialize_entry("stop", &*r.stop)?;
        }
        if !r.tools.is_empty() && typed("tools") {
            map.serialize_entry("tools", &Tools(&r.tools))?;
        }
        if let Some(choice) = r.tool_choice.as_ref().filter(|_| typed("tool_choice")) {
            map.serialize_entry("tool_choice", &Choice(choice))?;
        }
        if let Some(p) = r
            .parallel_tool_calls
            .filter(|_| typed("parallel_tool_calls"))
        {
            map.serialize_entry("parallel_tool_calls", &p)?;
        }
        if let Some(format) = r
            .response_format
            .as_ref()
            .filter(|_| typed("response_format"))
        {
            map.serialize_entry("response_format", &Format(format))?;
        }
        if r.stream && typed("stream") {
            map.serialize_entry("stream", &true)?;
            if typed("stream_options") {
                #[derive(Serialize)]
                struct StreamOptions {
                    include_usage: bool,
                }
                map.serialize_entry(
                    "stream_options",
                    &StreamOptions {
                        include_usage: true,
                    },
                )?;
            }
        }
        for (k, v) in extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

struct Messages<'a>(&'a [Message]);

impl Serialize for Messages<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(OutMessage))
    }
}

struct OutMessage<'a>(&'a Message);

impl Serialize for OutMessage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("role", m.role.as_str())?;
        match m.role {
            // OpenAI has no error flag on tool results: the content says it.
            Role::Tool if m.is_error => {
                map.serialize_entry("content", &ErrorText(&m.content))?;
            }
            // A message that only calls tools has null content.
            Role::Assistant if m.content.is_empty() && !m.tool_calls.is_empty() => {
                map.serialize_entry("content", &())?;
            }
            _ => map.serialize_entry("content", &OutContent(&m.content))?,
        }
        if let Some(name) = &m.name {
            map.serialize_entry("name", name)?;
        }
        if !m.tool_calls.is_empty() {
            map.serialize_entry("tool_calls", &Calls(&m.tool_calls))?;
        }
        if let Some(id) = &m.tool_call_id {
            map.serialize_entry("tool_call_id", id)?;
        }
        map.end()
    }
}

/// A failed tool's content, marked as an error for the model.
struct ErrorText<'a>(&'a Content);

impl fmt::Display for ErrorText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error: {}", self.0.text())
    }
}

impl Serialize for ErrorText<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct OutContent<'a>(&'a Content);

impl Serialize for OutContent<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Content::Text(text) => serializer.serialize_str(text),
            Content::Parts(parts) => {
                let mut seq = serializer.serialize_seq(Some(parts.len()))?;
                for part in parts {
                    seq.serialize_element(&OutPart(part))?;
                }
                seq.end()
            }
        }
    }
}

struct OutPart<'a>(&'a ContentPart);

impl Serialize for OutPart<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ContentPart::Text { text } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("type", "text")?;
                map.serialize_entry("text", text)?;
                map.end()
            }
            ContentPart::ImageUrl { url, detail } => image(serializer, url, detail.as_deref()),
            ContentPart::ImageBase64 { media_type, data } => {
                image(serializer, DataUrl { media_type, data }, None)
            }
            ContentPart::Opaque { part, .. } => part.serialize(serializer),
            // A part added to the neutral model later: refused by `check`
            // before it could get here; written as nothing rather than guessed.
            _ => serializer.serialize_unit(),
        }
    }
}

fn image<S: Serializer, U: Serialize>(
    serializer: S,
    url: U,
    detail: Option<&str>,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct ImageUrl<'a, U> {
        url: U,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<&'a str>,
    }
    let mut map = serializer.serialize_map(Some(2))?;
    map.serialize_entry("type", "image_url")?;
    map.serialize_entry("image_url", &ImageUrl { url, detail })?;
    map.end()
}

/// A `data:` URL written from its media type and base64 data without being
/// built first.
struct DataUrl<'a> {
    media_type: &'a str,
    data: &'a str,
}

impl fmt::Display for DataUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "data:{};base64,{}", self.media_type, self.data)
    }
}

impl Serialize for DataUrl<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct Calls<'a>(&'a [ToolCall]);

impl Serialize for Calls<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Function<'a> {
            name: &'a str,
            arguments: &'a str,
        }
        #[derive(Serialize)]
        struct Call<'a> {
            id: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
            function: Function<'a>,
        }
        serializer.collect_seq(self.0.iter().map(|c| Call {
            id: &c.id,
            kind: "function",
            function: Function {
                name: &c.name,
                // An empty argument string is no arguments.
                arguments: if c.arguments.trim().is_empty() {
                    "{}"
                } else {
                    &c.arguments
                },
            },
        }))
    }
}

struct Tools<'a>(&'a [ToolDefinition]);

impl Serialize for Tools<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Function<'a> {
            name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a str>,
            parameters: &'a serde_json::Value,
            #[serde(skip_serializing_if = "Option::is_none")]
            strict: Option<bool>,
        }
        #[derive(Serialize)]
        struct Tool<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            function: Function<'a>,
        }
        serializer.collect_seq(self.0.iter().map(|t| Tool {
            kind: "function",
            function: Function {
                name: &t.name,
                description: t.description.as_deref(),
                parameters: &t.parameters,
                strict: t.strict,
            },
        }))
    }
}

struct Choice<'a>(&'a ToolChoice);

impl Serialize for Choice<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ToolChoice::Auto => serializer.serialize_str("auto"),
            ToolChoice::None => serializer.serialize_str("none"),
            ToolChoice::Required => serializer.serialize_str("required"),
            ToolChoice::Tool(name) => {
                #[derive(Serialize)]
                struct Name<'a> {
                    name: &'a str,
                }
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("type", "function")?;
                map.serialize_entry("function", &Name { name })?;
                map.end()
            }
            _ => serializer.serialize_str("auto"),
        }
    }
}

struct Format<'a>(&'a ResponseFormat);

impl Serialize for Format<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self.0 {
            ResponseFormat::JsonObject => map.serialize_entry("type", "json_object")?,
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => {
                #[derive(Serialize)]
                struct Schema<'a> {
                    name: &'a str,
                    schema: &'a serde_json::Value,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    strict: Option<bool>,
                }
                map.serialize_entry("type", "json_schema")?;
                map.serialize_entry(
                    "json_schema",
                    &Schema {
                        name,
                        schema,
                        strict: *strict,
                    },
                )?;
            }
            _ => map.serialize_entry("type", "text")?,
        }
        map.end()
    }
}
