//! The checks themselves, and a cache of compiled JSON Schemas.

use serde_json::Value;
use staunch_core::{ChatRequest, ChatResponse, ResponseFormat};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

/// Why an answer was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidReason {
    /// A tool call names a tool the request did not offer.
    UnknownTool,
    /// A tool call's arguments are not a JSON object.
    ToolArgumentsNotJson,
    /// A tool call's arguments break the tool's schema.
    ToolArgumentsSchema,
    /// A JSON answer is not JSON (or not an object, for `json_object`).
    AnswerNotJson,
    /// A `json_schema` answer breaks its schema.
    AnswerSchema,
    /// A check of your own rejected it.
    Custom,
}

impl InvalidReason {
    /// The metric label.
    pub const fn as_str(&self) -> &'static str {
        match self {
            InvalidReason::UnknownTool => "unknown_tool",
            InvalidReason::ToolArgumentsNotJson => "tool_arguments_not_json",
            InvalidReason::ToolArgumentsSchema => "tool_arguments_schema",
            InvalidReason::AnswerNotJson => "answer_not_json",
            InvalidReason::AnswerSchema => "answer_schema",
            InvalidReason::Custom => "custom",
        }
    }
}

/// A rejected answer: the reason and a description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Why.
    pub reason: InvalidReason,
    /// What exactly was wrong.
    pub detail: String,
}

impl Invalid {
    fn new(reason: InvalidReason, detail: impl Into<String>) -> Self {
        Invalid {
            reason,
            detail: detail.into(),
        }
    }

    pub(super) fn custom(detail: String) -> Self {
        Invalid::new(InvalidReason::Custom, detail)
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.detail, self.reason.as_str())
    }
}

/// Checks every tool call against the offered tools.
pub(super) fn tool_calls(request: &ChatRequest, answer: &ChatResponse) -> Result<(), Invalid> {
    for call in answer.calls() {
        let Some(tool) = request.tool(&call.name) else {
            return Err(Invalid::new(
                InvalidReason::UnknownTool,
                format!(
                    "tool call {:?} names {:?}, which the request did not offer",
                    call.id, call.name
                ),
            ));
        };
        let arguments = match call.arguments_json() {
            Ok(value @ Value::Object(_)) => value,
            Ok(_) => {
                return Err(Invalid::new(
                    InvalidReason::ToolArgumentsNotJson,
                    format!(
                        "the arguments of tool call {:?} are not a JSON object",
                        call.id
                    ),
                ));
            }
            Err(e) => {
                return Err(Invalid::new(
                    InvalidReason::ToolArgumentsNotJson,
                    format!("the arguments of tool call {:?} are not JSON: {e}", call.id),
                ));
            }
        };
        matches_schema(&tool.parameters, &arguments).map_err(|detail| {
            Invalid::new(
                InvalidReason::ToolArgumentsSchema,
                format!(
                    "the arguments of tool call {:?} ({}) break its schema: {detail}",
                    call.id, call.name
                ),
            )
        })?;
    }
    Ok(())
}

/// Checks a JSON answer against the requested format.
pub(super) fn json_output(request: &ChatRequest, answer: &ChatResponse) -> Result<(), Invalid> {
    let schema = match &request.response_format {
        Some(ResponseFormat::JsonSchema { schema, .. }) => Some(schema),
        Some(ResponseFormat::JsonObject) => None,
        _ => return Ok(()),
    };
    // An answer that calls tools instead carries no JSON text.
    if !answer.calls().is_empty() {
        return Ok(());
    }
    let text = answer.text();
    let value: Value = serde_json::from_str(text.trim()).map_err(|e| {
        Invalid::new(
            InvalidReason::AnswerNotJson,
            format!("the answer is not JSON: {e}"),
        )
    })?;
    match schema {
        None if !value.is_object() => Err(Invalid::new(
            InvalidReason::AnswerNotJson,
            "the answer is JSON but not an object",
        )),
        None => Ok(()),
        Some(schema) => matches_schema(schema, &value).map_err(|detail| {
            Invalid::new(
                InvalidReason::AnswerSchema,
                format!("the answer breaks its schema: {detail}"),
            )
        }),
    }
}

/// Compiled validators, by the schema's text: an agent sends the same few
/// schemas with every request. Bounded: cleared when it passes 256 entries.
fn cache() -> &'static Mutex<HashMap<String, Arc<jsonschema::Validator>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

const CACHE_LIMIT: usize = 256;

fn validator(schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
    let key = schema.to_string();
    let mut cache = cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = cache.get(&key) {
        return Ok(v.clone());
    }
    let compiled = Arc::new(
        jsonschema::validator_for(schema).map_err(|e| format!("the schema is not valid: {e}"))?,
    );
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(key, compiled.clone());
    Ok(compiled)
}

fn matches_schema(schema: &Value, instance: &Value) -> Result<(), String> {
    let validator = validator(schema)?;
    validator.validate(instance).map_err(|e| {
        let path = e.instance_path().to_string();
        if path.is_empty() {
            e.to_string()
        } else {
            format!("at {path}: {e}")
        }
    })
}
