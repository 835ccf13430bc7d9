//! The Responses request body (`POST /v1/responses`), serialized straight
//! from a borrowed [`ChatRequest`] with no JSON tree in between.
//!
//! The neutral conversation maps to Responses input items: leading system
//! and developer messages become `instructions`, other messages `message`
//! items, an assistant's tool calls `function_call` items after its text,
//! tool results `function_call_output` items. The body always says
//! `store: false`: every request carries its whole conversation.

use crate::dialect::conversation::{self, unsupported};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;
use staunch_core::{
    ChatRequest, Content, ContentPart, Dialect, LlmError, Message, PartRef, ResponseFormat, Role,
    ToolCall, ToolChoice, ToolDefinition,
};
use std::fmt;

/// This dialect.
const DIALECT: Dialect = Dialect::OpenAiResponses;

/// The largest image OpenAI accepts, in bytes (20 MB).
const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;

/// The request body for `request`: the neutral fields, then the
/// Responses-dialect extras (which override them; an extra `text` object
/// is merged with the typed output format). It borrows the request and
/// serializes straight into the output; [`encode_request`] is what the
/// client sends.
pub fn request_body(request: &ChatRequest) -> RequestBody<'_> {
    RequestBody { request }
}

/// Checks that the Responses API can express `request`: tool results
/// answer earlier calls, no part of another dialect, no stop sequences
/// (the API has none), no image in an assistant message, no image over
/// 20 MB. The error is `InvalidRequest` for a conversation no provider
/// would take, `FeatureUnsupported` for what only this dialect can't
/// express.
pub fn check(request: &ChatRequest) -> Result<(), LlmError> {
    conversation::check(request, DIALECT)?;
    if !request.stop.is_empty() {
        return Err(unsupported(DIALECT, "stop sequences"));
    }
    for (i, m) in request.messages.iter().enumerate() {
        if let Content::Parts(parts) = &m.content {
            for part in parts {
                if part.is_image() && m.role == Role::Assistant {
                    return Err(unsupported(
                        DIALECT,
                        format!("an image in an assistant message (message {i})"),
                    ));
                }
                if let ContentPart::ImageBase64 { data, .. } = part
                    && data.len() / 4 * 3 > MAX_IMAGE_BYTES
                {
                    return Err(unsupported(
                        DIALECT,
                        format!("an image larger than 20 MB (message {i})"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The body bytes for `request`, checked ([`check`]) and serialized into
/// one buffer sized from a cheap estimate of the output.
pub fn encode_request(request: &ChatRequest) -> Result<Vec<u8>, LlmError> {
    check(request)?;
    let estimate = crate::json::estimate_request(
        request,
        DIALECT,
        // `{"type":"message","role":"assistant","content":"…"},` is about
        // 50 bytes around the text; calls and results add their own.
        |m| {
            m.content.byte_len()
                + 50
                + m.tool_call_id.as_ref().map_or(0, |id| id.len() + 60)
                + crate::json::calls_len(&m.tool_calls, 64)
        },
        80,
    );
    crate::json::encode(&request_body(request), estimate).map_err(|e| {
        conversation::invalid("could not encode the request for the OpenAI Responses API")
            .with_source(e)
    })
}

/// A Responses request body borrowed from a [`ChatRequest`]; see
/// [`request_body`].
pub struct RequestBody<'a> {
    request: &'a ChatRequest,
}

/// How many leading messages fold into `instructions`: system and
/// developer messages of text only.
fn instruction_count(messages: &[Message]) -> usize {
    messages
        .iter()
        .take_while(|m| {
            matches!(m.role, Role::System | Role::Developer)
                && m.tool_calls.is_empty()
                && m.content.parts().all(|p| matches!(p, PartRef::Text(_)))
        })
        .count()
}

impl Serialize for RequestBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.request;
        let extra = r.extra.get(DIALECT);
        // A key in the Responses extras replaces the typed field of that name.
        let typed = |key: &str| !extra.contains_key(key);
        let lead = if typed("instructions") {
            instruction_count(&r.messages)
        } else {
            0
        };
        let mut map = serializer.serialize_map(None)?;
        if typed("model") {
            map.serialize_entry("model", &r.model)?;
        }
        if lead > 0 {
            map.serialize_entry("instructions", &Instructions(&r.messages[..lead]))?;
        }
        if typed("input") {
            map.serialize_entry("input", &Items(&r.messages[lead..]))?;
        }
        if let Some(n) = r.max_tokens.filter(|_| typed("max_output_tokens")) {
            map.serialize_entry("max_output_tokens", &n)?;
        }
        if let Some(t) = r.temperature.filter(|_| typed("temperature")) {
            map.serialize_entry("temperature", &t)?;
        }
        if let Some(p) = r.top_p.filter(|_| typed("top_p")) {
            map.serialize_entry("top_p", &p)?;
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
        // The typed format and the extras' `text` settings (`verbosity`)
        // share one object.
        let extra_text = extra.get("text").and_then(Value::as_object);
        if r.response_format.is_some() || extra_text.is_some() {
            map.serialize_entry(
                "text",
                &Text {
                    format: r.response_format.as_ref(),
                    extra: extra_text,
                },
            )?;
        }
        if r.stream && typed("stream") {
            map.serialize_entry("stream", &true)?;
        }
        if typed("store") {
            map.serialize_entry("store", &false)?;
        }
        for (k, v) in extra {
            if k == "text" && extra_text.is_some() {
                continue;
            }
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Leading system and developer messages as one `instructions` text, one
/// message per paragraph.
struct Instructions<'a>(&'a [Message]);

impl fmt::Display for Instructions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            f.write_str(&m.content.text())?;
        }
        Ok(())
    }
}

impl Serialize for Instructions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The conversation as input items: one message may become several
/// (an assistant's text and each of its calls).
struct Items<'a>(&'a [Message]);

impl Serialize for Items<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for m in self.0 {
            match m.role {
                Role::Tool => seq.serialize_element(&Output(m))?,
                Role::Assistant => {
                    if !m.content.is_empty() || m.tool_calls.is_empty() {
                        seq.serialize_element(&InMessage(m))?;
                    }
                    for call in &m.tool_calls {
                        seq.serialize_element(&Call(call))?;
                    }
                }
                _ => seq.serialize_element(&InMessage(m))?,
            }
        }
        seq.end()
    }
}

/// A `message` item.
struct InMessage<'a>(&'a Message);

impl Serialize for InMessage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("type", "message")?;
        map.serialize_entry("role", m.role.as_str())?;
        map.serialize_entry(
            "content",
            &Parts {
                content: &m.content,
                assistant: m.role == Role::Assistant,
                error: false,
            },
        )?;
        map.end()
    }
}

/// A message's content: a string, or its parts (`input_text` and
/// `input_image`; `output_text` in an assistant message).
struct Parts<'a> {
    content: &'a Content,
    assistant: bool,
    /// A failed tool's result: the text says so first.
    error: bool,
}

impl Serialize for Parts<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let parts = match self.content {
            Content::Parts(parts) if !self.simple() => parts,
            // Text alone (or text parts only) is a plain string.
            content => {
                return if self.error {
                    serializer.collect_str(&ErrorText(content))
                } else {
                    serializer.serialize_str(&content.text())
                };
            }
        };
        let mut seq = serializer.serialize_seq(None)?;
        if self.error {
            seq.serialize_element(&TextPart {
                kind: "input_text",
                text: "Error:",
            })?;
        }
        for part in parts {
            match part {
                ContentPart::Text { text } if self.assistant => {
                    seq.serialize_element(&OutputText { text })?;
                }
                ContentPart::Text { text } => seq.serialize_element(&TextPart {
                    kind: "input_text",
                    text,
                })?,
                ContentPart::ImageUrl { url, detail } => seq.serialize_element(&Image {
                    url,
                    detail: detail.as_deref(),
                })?,
                ContentPart::ImageBase64 { media_type, data } => seq.serialize_element(&Image {
                    url: DataUrl { media_type, data },
                    detail: None,
                })?,
                ContentPart::Opaque { part, .. } => seq.serialize_element(part)?,
                // A part added to the neutral model later: refused by
                // `check` before it could get here; left out rather than
                // guessed.
                _ => {}
            }
        }
        seq.end()
    }
}

impl Parts<'_> {
    /// Text parts only: written as one string.
    fn simple(&self) -> bool {
        self.content.parts().all(|p| matches!(p, PartRef::Text(_)))
    }
}

/// A failed tool's text, marked as an error for the model (the Responses
/// API has no error flag on a function's output).
struct ErrorText<'a>(&'a Content);

impl fmt::Display for ErrorText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error: {}", self.0.text())
    }
}

#[derive(Serialize)]
struct TextPart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

struct OutputText<'a> {
    text: &'a str,
}

impl Serialize for OutputText<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("type", "output_text")?;
        map.serialize_entry("text", self.text)?;
        map.serialize_entry("annotations", &[(); 0])?;
        map.end()
    }
}

struct Image<'a, U> {
    url: U,
    detail: Option<&'a str>,
}

impl<U: Serialize> Serialize for Image<'_, U> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("type", "input_image")?;
        map.serialize_entry("image_url", &self.url)?;
        map.serialize_entry("detail", self.detail.unwrap_or("auto"))?;
        map.end()
    }
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

/// A `function_call` item.
struct Call<'a>(&'a ToolCall);

impl Serialize for Call<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("type", "function_call")?;
        map.serialize_entry("call_id", &c.id)?;
        map.serialize_entry("name", &c.name)?;
        // An empty argument string is no arguments.
        let arguments = if c.arguments.trim().is_empty() {
            "{}"
        } else {
            &c.arguments
        };
        map.serialize_entry("arguments", arguments)?;
        map.end()
    }
}

/// A `function_call_output` item.
struct Output<'a>(&'a Message);

impl Serialize for Output<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("type", "function_call_output")?;
        map.serialize_entry("call_id", m.tool_call_id.as_deref().unwrap_or_default())?;
        map.serialize_entry(
            "output",
            &Parts {
                content: &m.content,
                assistant: false,
                error: m.is_error,
            },
        )?;
        map.end()
    }
}

struct Tools<'a>(&'a [ToolDefinition]);

impl Serialize for Tools<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Tool<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a str>,
            parameters: &'a Value,
            // The Responses API makes a function strict unless told
            // otherwise; the neutral default is not strict.
            strict: bool,
        }
        serializer.collect_seq(self.0.iter().map(|t| Tool {
            kind: "function",
            name: &t.name,
            description: t.description.as_deref(),
            parameters: &t.parameters,
            strict: t.strict.unwrap_or(false),
        }))
    }
}

struct Choice<'a>(&'a ToolChoice);

impl Serialize for Choice<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ToolChoice::None => serializer.serialize_str("none"),
            ToolChoice::Required => serializer.serialize_str("required"),
            ToolChoice::Tool(name) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("type", "function")?;
                map.serialize_entry("name", name)?;
                map.end()
            }
            _ => serializer.serialize_str("auto"),
        }
    }
}

/// The `text` object: the output format and any extra settings.
struct Text<'a> {
    format: Option<&'a ResponseFormat>,
    extra: Option<&'a serde_json::Map<String, Value>>,
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(format) = self.format {
            map.serialize_entry("format", &Format(format))?;
        }
        for (k, v) in self.extra.into_iter().flatten() {
            if k == "format" && self.format.is_some() {
                continue;
            }
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// An output format as the Responses API names it (flat, unlike Chat
/// Completions' nested `json_schema`).
pub(crate) struct Format<'a>(pub(crate) &'a ResponseFormat);

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
                map.serialize_entry("type", "json_schema")?;
                map.serialize_entry("name", name)?;
                map.serialize_entry("schema", schema)?;
                if let Some(strict) = strict {
                    map.serialize_entry("strict", strict)?;
                }
            }
            _ => map.serialize_entry("type", "text")?,
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use staunch_core::ErrorKind;

    fn body(request: &ChatRequest) -> Value {
        serde_json::from_slice(&encode_request(request).expect("encodes")).expect("JSON")
    }

    fn weather() -> ToolDefinition {
        ToolDefinition::new(
            "get_weather",
            json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        )
        .with_description("Weather in a city")
    }

    #[test]
    fn a_whole_conversation_becomes_instructions_and_items() {
        let call = ToolCall::new("call_1", "get_weather", r#"{"city":"Paris"}"#);
        let request = ChatRequest::new(
            "gpt-4.1",
            vec![
                Message::system("Be brief."),
                Message::developer("Use metric units."),
                Message::user("Weather in Paris?"),
                Message::assistant_tool_calls("Let me look.", vec![call]),
                Message::tool_result("call_1", r#"{"celsius": 21}"#),
                Message::assistant("21 °C."),
                Message::user_parts([
                    ContentPart::text("And this?"),
                    ContentPart::image_base64("image/png", "iVBORw0KGgo="),
                    ContentPart::ImageUrl {
                        url: "https://x/y.png".into(),
                        detail: Some("low".into()),
                    },
                ]),
            ],
        )
        .with_max_tokens(100)
        .with_temperature(0.5)
        .with_top_p(0.9)
        .with_tools([weather()])
        .with_tool_choice(ToolChoice::Tool("get_weather".into()))
        .with_parallel_tool_calls(false)
        .with_stream(true);
        let b = body(&request);
        assert_eq!(
            b,
            json!({
                "model": "gpt-4.1",
                "instructions": "Be brief.\n\nUse metric units.",
                "input": [
                    {"type": "message", "role": "user", "content": "Weather in Paris?"},
                    {"type": "message", "role": "assistant", "content": "Let me look."},
                    {"type": "function_call", "call_id": "call_1", "name": "get_weather",
                     "arguments": "{\"city\":\"Paris\"}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "{\"celsius\": 21}"},
                    {"type": "message", "role": "assistant", "content": "21 °C."},
                    {"type": "message", "role": "user", "content": [
                        {"type": "input_text", "text": "And this?"},
                        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"},
                        {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
                    ]},
                ],
                "max_output_tokens": 100,
                "temperature": 0.5,
                "top_p": 0.9,
                "tools": [{"type": "function", "name": "get_weather", "description": "Weather in a city",
                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                           "strict": false}],
                "tool_choice": {"type": "function", "name": "get_weather"},
                "parallel_tool_calls": false,
                "stream": true,
                "store": false,
            })
        );
    }

    #[test]
    fn a_system_message_after_the_start_stays_an_item() {
        let request = ChatRequest::new(
            "m",
            vec![Message::user("hi"), Message::system("Now be formal.")],
        );
        let b = body(&request);
        assert!(b.get("instructions").is_none());
        assert_eq!(b["input"][1]["role"], "system");
    }

    #[test]
    fn tool_calls_alone_and_failed_tools() {
        let calls = vec![
            ToolCall::new("c1", "a", ""),
            ToolCall::new("c2", "b", r#"{"x":1}"#),
        ];
        let request = ChatRequest::new(
            "m",
            vec![
                Message::user("go"),
                Message::assistant_tool_calls("", calls),
                Message::tool_error("c1", "boom"),
                Message::tool_result(
                    "c2",
                    Content::Parts(vec![
                        ContentPart::text("see"),
                        ContentPart::image_url("https://x/i.png"),
                    ]),
                ),
            ],
        );
        let input = body(&request)["input"].clone();
        assert_eq!(input.as_array().map(Vec::len), Some(5));
        assert_eq!(input[1]["type"], "function_call");
        assert_eq!(input[1]["arguments"], "{}");
        assert_eq!(input[2]["call_id"], "c2");
        assert_eq!(input[3]["output"], "Error: boom");
        assert_eq!(
            input[4]["output"],
            json!([{"type": "input_text", "text": "see"},
                   {"type": "input_image", "image_url": "https://x/i.png", "detail": "auto"}])
        );
    }

    #[test]
    fn formats_and_extras() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let request = ChatRequest::new("m", vec![Message::user("x")])
            .with_response_format(
                ResponseFormat::json_schema("answer", schema.clone()).with_strict(true),
            )
            .with_extra(DIALECT, "text", json!({"verbosity": "low"}))
            .with_extra(DIALECT, "reasoning", json!({"effort": "low"}))
            .with_extra(DIALECT, "store", true)
            .with_extra(Dialect::OpenAi, "seed", 7);
        let b = body(&request);
        assert_eq!(
            b["text"],
            json!({"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": true},
                   "verbosity": "low"})
        );
        assert_eq!(b["reasoning"], json!({"effort": "low"}));
        assert_eq!(b["store"], true, "an extra replaces the typed field");
        assert!(b.get("seed").is_none(), "another dialect's extras stay out");
        let request = ChatRequest::new("m", vec![Message::user("x")])
            .with_response_format(ResponseFormat::JsonObject);
        assert_eq!(
            body(&request)["text"],
            json!({"format": {"type": "json_object"}})
        );
        // Text is the default and is written as it was asked.
        let request = ChatRequest::new("m", vec![Message::user("x")])
            .with_response_format(ResponseFormat::Text);
        assert_eq!(body(&request)["text"], json!({"format": {"type": "text"}}));
    }

    #[test]
    fn what_the_api_cannot_express_is_refused_before_the_wire() {
        let stop = ChatRequest::new("m", vec![Message::user("x")]).with_stop(["\n"]);
        let e = encode_request(&stop).unwrap_err();
        assert_eq!(e.kind, ErrorKind::FeatureUnsupported);
        assert!(e.message.contains("stop sequences"), "{}", e.message);

        let image = ChatRequest::new(
            "m",
            vec![
                Message::user("x"),
                Message::new(
                    Role::Assistant,
                    Content::Parts(vec![ContentPart::image_url("https://x")]),
                ),
            ],
        );
        let e = encode_request(&image).unwrap_err();
        assert_eq!(e.kind, ErrorKind::FeatureUnsupported);
        assert!(e.message.contains("assistant"), "{}", e.message);

        let anthropic_part = ChatRequest::new(
            "m",
            vec![Message::user_parts([ContentPart::Opaque {
                dialect: Dialect::Anthropic,
                part: json!({"type": "document"}),
            }])],
        );
        let e = encode_request(&anthropic_part).unwrap_err();
        assert_eq!(e.kind, ErrorKind::FeatureUnsupported);
        assert!(e.message.contains("document"), "{}", e.message);

        let orphan = ChatRequest::new(
            "m",
            vec![Message::user("x"), Message::tool_result("nope", "r")],
        );
        assert_eq!(
            encode_request(&orphan).unwrap_err().kind,
            ErrorKind::InvalidRequest
        );
    }

    #[test]
    fn own_opaque_parts_pass_through() {
        let file = json!({"type": "input_file", "file_id": "file-1"});
        let request = ChatRequest::new(
            "m",
            vec![Message::user_parts([
                ContentPart::text("read"),
                ContentPart::Opaque {
                    dialect: DIALECT,
                    part: file.clone(),
                },
            ])],
        );
        assert_eq!(body(&request)["input"][0]["content"][1], file);
    }

    #[test]
    fn an_instructions_extra_keeps_every_message_an_item() {
        let request = ChatRequest::new("m", vec![Message::system("s"), Message::user("u")])
            .with_extra(DIALECT, "instructions", "own");
        let b = body(&request);
        assert_eq!(b["instructions"], "own");
        assert_eq!(b["input"][0]["role"], "system");
    }
}
