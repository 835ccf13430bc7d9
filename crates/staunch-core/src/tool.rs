//! Tools an agent offers the model, the model's calls to them, and the
//! output format it must answer in.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A tool the model may call: a name, what it does, and the JSON Schema of
/// its arguments.
///
/// ```
/// use serde_json::json;
/// use staunch_core::ToolDefinition;
/// let weather = ToolDefinition::new(
///     "get_weather",
///     json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
/// )
/// .with_description("Current weather in a city")
/// .strict(true);
/// assert_eq!(weather.name, "get_weather");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolDefinition {
    /// The tool's name, as the model calls it.
    pub name: String,
    /// What the tool does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema of its arguments (an `object` schema).
    pub parameters: Value,
    /// Whether the provider must follow the schema exactly (OpenAI's
    /// `strict`), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

impl ToolDefinition {
    /// A tool called `name` whose arguments follow `parameters`.
    pub fn new(name: impl Into<String>, parameters: Value) -> Self {
        ToolDefinition {
            name: name.into(),
            description: None,
            parameters,
            strict: None,
        }
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the strict flag.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = Some(strict);
        self
    }
}

/// Whether and which tool the model must call.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ToolChoice {
    /// The model decides (the default when tools are given).
    Auto,
    /// No tool call.
    None,
    /// At least one tool call (OpenAI's `required`, Anthropic's `any`).
    Required,
    /// A call to this tool.
    Tool(String),
}

/// A call the model made to a tool: an id to answer it by, the tool's name
/// and its arguments as JSON text (exactly as the model wrote them, so that
/// a call that is not valid JSON reaches validation intact).
///
/// ```
/// use staunch_core::ToolCall;
/// let call = ToolCall::new("call_1", "get_weather", r#"{"city":"Paris"}"#);
/// assert_eq!(call.arguments_json().unwrap()["city"], "Paris");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolCall {
    /// The call's id; a tool result answers it by this id.
    pub id: String,
    /// The tool called.
    pub name: String,
    /// The arguments, as JSON text.
    pub arguments: String,
}

impl ToolCall {
    /// A call of tool `name` with `arguments` (JSON text), answered by `id`.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    /// The arguments parsed as JSON (empty text is `{}`).
    pub fn arguments_json(&self) -> Result<Value, serde_json::Error> {
        if self.arguments.trim().is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_str(&self.arguments)
    }
}

/// The format the answer must take.
///
/// ```
/// use serde_json::json;
/// use staunch_core::ResponseFormat;
/// let format = ResponseFormat::json_schema("person", json!({"type": "object"})).with_strict(true);
/// assert!(format.is_json());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON that follows a schema.
    JsonSchema {
        /// The schema's name.
        name: String,
        /// The JSON Schema.
        schema: Value,
        /// Whether the provider must follow it exactly, when set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

impl ResponseFormat {
    /// JSON following `schema`, named `name`.
    pub fn json_schema(name: impl Into<String>, schema: Value) -> Self {
        ResponseFormat::JsonSchema {
            name: name.into(),
            schema,
            strict: None,
        }
    }

    /// Sets the strict flag of a JSON Schema format (others are unchanged).
    pub fn with_strict(mut self, on: bool) -> Self {
        if let ResponseFormat::JsonSchema { strict, .. } = &mut self {
            *strict = Some(on);
        }
        self
    }

    /// True for the JSON formats.
    pub fn is_json(&self) -> bool {
        !matches!(self, ResponseFormat::Text)
    }
}
