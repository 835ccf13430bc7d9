//! The Anthropic Messages request body, serialized straight from a borrowed
//! [`ChatRequest`]: system and developer messages become the top-level
//! `system`, consecutive turns of one role are merged, tool results become
//! `tool_result` blocks of a user turn, tool calls `tool_use` blocks, and a
//! JSON output format a forced tool whose input is the answer.

use crate::dialect::conversation::{self, parse_data_url, unsupported};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use staunch_core::{
    ChatRequest, Content, ContentPart, Dialect, LlmError, Message, PartRef, ResponseFormat, Role,
    ToolChoice, ToolDefinition,
};
use std::fmt;

/// The largest image Anthropic accepts, in bytes (5 MB).
const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;

/// The name of the forced tool that carries a `json_object` answer.
pub(crate) const JSON_TOOL: &str = "json_answer";

/// The request body for `request`; `max_tokens`, which the API requires,
/// defaults to `default_max_tokens`, and the Anthropic-dialect extras
/// override the typed fields. It borrows the request and serializes straight
/// into the output; [`encode_request`] is what the client sends.
pub fn request_body(request: &ChatRequest, default_max_tokens: u32) -> RequestBody<'_> {
    RequestBody {
        request,
        default_max_tokens,
    }
}

/// The tool that carries a JSON answer, when the request asks for one: its
/// name and its input schema.
pub(crate) fn json_tool(request: &ChatRequest) -> Option<(&str, JsonSchema<'_>)> {
    match request.response_format.as_ref()? {
        ResponseFormat::JsonSchema { name, schema, .. } => {
            Some((name.as_str(), JsonSchema::Given(schema)))
        }
        ResponseFormat::JsonObject => Some((JSON_TOOL, JsonSchema::AnyObject)),
        _ => None,
    }
}

/// The input schema of the JSON answer tool.
pub(crate) enum JsonSchema<'a> {
    Given(&'a serde_json::Value),
    AnyObject,
}

impl Serialize for JsonSchema<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            JsonSchema::Given(schema) => schema.serialize(serializer),
            JsonSchema::AnyObject => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("type", "object")?;
                map.end()
            }
        }
    }
}

/// Checks that Anthropic can express `request`: tool results answer earlier
/// calls, no OpenAI-only part, tool-call arguments are JSON objects, no image
/// in an assistant message or over 5 MB, and a JSON output format comes
/// without tools of its own.
pub fn check(request: &ChatRequest) -> Result<(), LlmError> {
    conversation::check(request, Dialect::Anthropic)?;
    for (i, m) in request.messages.iter().enumerate() {
        for call in &m.tool_calls {
            if !arguments(&call.arguments).is_some_and(|raw| raw.get().starts_with('{')) {
                return Err(unsupported(
                    Dialect::Anthropic,
                    format!(
                        "tool call arguments that are not a JSON object (message {i}, call {:?})",
                        call.id
                    ),
                ));
            }
        }
        if let Content::Parts(parts) = &m.content {
            for part in parts {
                if part.is_image() && m.role == Role::Assistant {
                    return Err(unsupported(
                        Dialect::Anthropic,
                        format!("an image in an assistant message (message {i})"),
                    ));
                }
                let data = match part {
                    ContentPart::ImageBase64 { data, .. } => Some(data.as_str()),
                    ContentPart::ImageUrl { url, .. } => parse_data_url(url).map(|(_, d)| d),
                    _ => None,
                };
                if data.is_some_and(|d| d.len() / 4 * 3 > MAX_IMAGE_BYTES) {
                    return Err(unsupported(
                        Dialect::Anthropic,
                        format!("an image larger than 5 MB (message {i})"),
                    ));
                }
            }
        }
    }
    if json_tool(request).is_some() && !request.tools.is_empty() {
        return Err(unsupported(
            Dialect::Anthropic,
            "a JSON output format together with tools",
        ));
    }
    Ok(())
}

/// The arguments of a tool call as raw JSON (empty text is `{}`), or `None`
/// when they are not JSON.
fn arguments(text: &str) -> Option<&RawValue> {
    let text = text.trim();
    if text.is_empty() {
        return serde_json::from_str("{}").ok();
    }
    serde_json::from_str(text).ok()
}

/// The body bytes for `request`, checked ([`check`]) and serialized into
/// one buffer sized from a cheap estimate of the output.
pub fn encode_request(request: &ChatRequest, default_max_tokens: u32) -> Result<Vec<u8>, LlmError> {
    check(request)?;
    let estimate = crate::json::estimate_request(
        request,
        Dialect::Anthropic,
        // `{"role":"assistant","content":"…"},` is about 34 bytes around
        // the text; blocks and tool results add their own below.
        |m| {
            m.content.byte_len()
                + 34
                + m.tool_call_id.as_ref().map_or(0, |id| id.len() + 48)
                + crate::json::calls_len(&m.tool_calls, 48)
        },
        48,
    );
    crate::json::encode(&request_body(request, default_max_tokens), estimate).map_err(|e| {
        conversation::invalid("could not encode the request for Anthropic").with_source(e)
    })
}

/// An Anthropic request body borrowed from a [`ChatRequest`]; see
/// [`request_body`].
pub struct RequestBody<'a> {
    request: &'a ChatRequest,
    default_max_tokens: u32,
}

fn is_system(m: &Message) -> bool {
    matches!(m.role, Role::System | Role::Developer)
}

impl Serialize for RequestBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.request;
        let extra = r.extra.get(Dialect::Anthropic);
        // A key in the Anthropic extras replaces the typed field of that name.
        let typed = |key: &str| !extra.contains_key(key);
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
        if typed("system") && r.messages.iter().any(is_system) {
            map.serialize_entry("system", &SystemText(&r.messages))?;
        }
        if typed("messages") {
            map.serialize_entry("messages", &Turns(&r.messages))?;
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
        let json = json_tool(r);
        if typed("tools") {
            if let Some((name, schema)) = &json {
                map.serialize_entry("tools", &[JsonTool { name, schema }])?;
            } else if !r.tools.is_empty() {
                map.serialize_entry("tools", &Tools(&r.tools))?;
            }
        }
        if typed("tool_choice") {
            if let Some((name, _)) = &json {
                map.serialize_entry("tool_choice", &Choice::Tool(name, None))?;
            } else if !r.tools.is_empty()
                && let Some(choice) = Choice::of(r.tool_choice.as_ref(), r.parallel_tool_calls)
            {
                map.serialize_entry("tool_choice", &choice)?;
            }
        }
        if r.stream && typed("stream") {
            map.serialize_entry("stream", &true)?;
        }
        for (k, v) in extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The system and developer messages' text joined by blank lines, written
/// as one JSON string without building it first.
struct SystemText<'a>(&'a [Message]);

impl fmt::Display for SystemText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.0.iter().filter(|m| is_system(m)).enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            f.write_str(&m.content.text())?;
        }
        Ok(())
    }
}

impl Serialize for SystemText<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The conversation without its system messages, as alternating turns:
/// consecutive messages of one side (tool results are the user's side) are
/// merged into one turn of content blocks.
struct Turns<'a>(&'a [Message]);

fn side(m: &Message) -> &'static str {
    if m.role == Role::Assistant {
        "assistant"
    } else {
        "user"
    }
}

impl Serialize for Turns<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A turn is a run of messages of one side; system messages (lifted
        // to `system`) inside a run are skipped, without collecting the
        // conversation into a second list.
        let messages = self.0;
        let mut seq = serializer.serialize_seq(None)?;
        let mut start = 0;
        while let Some(first) = messages[start..].iter().position(|m| !is_system(m)) {
            let start_at = start + first;
            let role = side(&messages[start_at]);
            let end = messages[start_at..]
                .iter()
                .position(|m| !is_system(m) && side(m) != role)
                .map_or(messages.len(), |n| start_at + n);
            seq.serialize_element(&Turn {
                role,
                messages: &messages[start_at..end],
            })?;
            start = end;
        }
        seq.end()
    }
}

struct Turn<'a> {
    role: &'static str,
    // The turn's messages, system ones among them skipped.
    messages: &'a [Message],
}

impl Serialize for Turn<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("role", self.role)?;
        // One plain user or assistant text stays a string.
        let mut turn = self.messages.iter().filter(|m| !is_system(m));
        if let (Some(m), None) = (turn.next(), turn.next())
            && m.tool_calls.is_empty()
            && m.role != Role::Tool
            && let Content::Text(text) = &m.content
        {
            map.serialize_entry("content", text)?;
            return map.end();
        }
        map.serialize_entry("content", &Blocks(self.messages))?;
        map.end()
    }
}

/// A turn's content blocks. Tool results come first in a user turn, as
/// Anthropic requires.
struct Blocks<'a>(&'a [Message]);

impl Serialize for Blocks<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for m in self.0.iter().filter(|m| m.role == Role::Tool) {
            seq.serialize_element(&ToolResult(m))?;
        }
        for m in self
            .0
            .iter()
            .filter(|m| m.role != Role::Tool && !is_system(m))
        {
            content_blocks(&mut seq, &m.content)?;
            for call in &m.tool_calls {
                seq.serialize_element(&ToolUse(call))?;
            }
        }
        seq.end()
    }
}

/// Writes a content's parts as blocks (empty text is left out: Anthropic
/// refuses empty text blocks).
fn content_blocks<S: SerializeSeq>(seq: &mut S, content: &Content) -> Result<(), S::Error> {
    for part in content.parts() {
        match part {
            PartRef::Text("") => {}
            PartRef::Text(text) => seq.serialize_element(&TextBlock(text))?,
            PartRef::Part(part) => seq.serialize_element(&Block(part))?,
            _ => {}
        }
    }
    Ok(())
}

/// A content as a list of blocks.
struct ContentBlocks<'a>(&'a Content);

impl Serialize for ContentBlocks<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        content_blocks(&mut seq, self.0)?;
        seq.end()
    }
}

struct TextBlock<'a>(&'a str);

impl Serialize for TextBlock<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("type", "text")?;
        map.serialize_entry("text", self.0)?;
        map.end()
    }
}

struct Block<'a>(&'a ContentPart);

impl Serialize for Block<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Source<'a> {
            Base64 { media_type: &'a str, data: &'a str },
            Url { url: &'a str },
        }
        let source = match self.0 {
            ContentPart::Text { text } => return TextBlock(text).serialize(serializer),
            ContentPart::Opaque { part, .. } => return part.serialize(serializer),
            ContentPart::ImageBase64 { media_type, data } => Source::Base64 { media_type, data },
            ContentPart::ImageUrl { url, .. } => match parse_data_url(url) {
                Some((media_type, data)) => Source::Base64 { media_type, data },
                None => Source::Url { url },
            },
            // A part added to the neutral model later is refused by `check`.
            _ => return serializer.serialize_unit(),
        };
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("type", "image")?;
        map.serialize_entry("source", &source)?;
        map.end()
    }
}

struct ToolUse<'a>(&'a staunch_core::ToolCall);

impl Serialize for ToolUse<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let input = arguments(&self.0.arguments)
            .ok_or_else(|| serde::ser::Error::custom("tool call arguments are not JSON"))?;
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("type", "tool_use")?;
        map.serialize_entry("id", &self.0.id)?;
        map.serialize_entry("name", &self.0.name)?;
        map.serialize_entry("input", input)?;
        map.end()
    }
}

struct ToolResult<'a>(&'a Message);

impl Serialize for ToolResult<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", "tool_result")?;
        map.serialize_entry("tool_use_id", m.tool_call_id.as_deref().unwrap_or_default())?;
        match &m.content {
            Content::Text(text) => map.serialize_entry("content", text)?,
            Content::Parts(_) => map.serialize_entry("content", &ContentBlocks(&m.content))?,
        }
        if m.is_error {
            map.serialize_entry("is_error", &true)?;
        }
        map.end()
    }
}

struct Tools<'a>(&'a [ToolDefinition]);

impl Serialize for Tools<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Tool<'a> {
            name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a str>,
            input_schema: &'a serde_json::Value,
        }
        serializer.collect_seq(self.0.iter().map(|t| Tool {
            name: &t.name,
            description: t.description.as_deref(),
            input_schema: &t.parameters,
        }))
    }
}

struct JsonTool<'a> {
    name: &'a str,
    schema: &'a JsonSchema<'a>,
}

impl Serialize for JsonTool<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("name", self.name)?;
        map.serialize_entry(
            "description",
            "Answer with this tool; its input is the answer.",
        )?;
        map.serialize_entry("input_schema", self.schema)?;
        map.end()
    }
}

/// Anthropic's `tool_choice`: `disable_parallel_tool_use` rides inside it.
enum Choice<'a> {
    Mode(&'static str, Option<bool>),
    Tool(&'a str, Option<bool>),
}

impl<'a> Choice<'a> {
    fn of(choice: Option<&'a ToolChoice>, parallel: Option<bool>) -> Option<Self> {
        let no_parallel = parallel.map(|p| !p);
        Some(match choice {
            None if no_parallel.is_none() => return None,
            None | Some(ToolChoice::Auto) => Choice::Mode("auto", no_parallel),
            Some(ToolChoice::None) => Choice::Mode("none", None),
            Some(ToolChoice::Required) => Choice::Mode("any", no_parallel),
            Some(ToolChoice::Tool(name)) => Choice::Tool(name, no_parallel),
            Some(_) => Choice::Mode("auto", no_parallel),
        })
    }
}

impl Serialize for Choice<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        let disable = match self {
            Choice::Mode(mode, disable) => {
                map.serialize_entry("type", mode)?;
                disable
            }
            Choice::Tool(name, disable) => {
                map.serialize_entry("type", "tool")?;
                map.serialize_entry("name", name)?;
                disable
            }
        };
        if let Some(true) = disable {
            map.serialize_entry("disable_parallel_tool_use", &true)?;
        }
        map.end()
    }
}
