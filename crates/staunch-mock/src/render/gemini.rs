//! The Google Gemini dialect (`POST /v1beta/models/{model}:generateContent`
//! and `:streamGenerateContent`): reading a request's `contents`, function
//! declarations, `toolConfig` and `generationConfig`, and writing
//! `GenerateContentResponse`s (text, `functionCall` parts, safety stops, a
//! `maxOutputTokens` cut), their server-sent stream and Google's error
//! bodies.
//!
//! The model is the path's; the method says whether to stream (the answer
//! is server-sent events, `alt=sse` or not). Gemini's schemas are an
//! OpenAPI subset (`"type": "OBJECT"`, `nullable`): they are read as the
//! JSON Schema they mean; `parametersJsonSchema` and `responseJsonSchema`
//! are JSON Schema already.

use super::stream::{Events, pieces, sse};
use super::{
    Arguments, Ask, Call, Dialect, ErrorParts, Failure, Format, Options, Reply, Tool, ToolChoice,
    clip, completion_tokens, seconds,
};
use crate::scenario::Fault;
use bytes::Bytes;
use http::Method;
use serde_json::{Map, Value, json};
use std::borrow::Cow;

/// `POST /v1beta/models/{model}:generateContent` and
/// `:streamGenerateContent` (also under `/v1/`).
pub(crate) struct Gemini;

/// The token limit a context-overflow error names when the scenario sets
/// no window for the model (Gemini's 1M-token window).
const DEFAULT_LIMIT: u64 = 1_048_576;

/// The model and whether the method streams, from a path
/// `/v1beta/models/{model}:{method}`.
fn method(path: &str) -> Option<(&str, bool)> {
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.rsplit_once(':')?;
    if model.is_empty() || model.contains('/') {
        return None;
    }
    match method {
        "generateContent" => Some((model, false)),
        "streamGenerateContent" => Some((model, true)),
        _ => None,
    }
}

impl Dialect for Gemini {
    fn provider(&self) -> &'static str {
        "gemini"
    }

    fn serves(&self, method: &Method, path: &str) -> bool {
        method == Method::POST && self::method(path).is_some()
    }

    fn call<'a>(&self, path: &'a str, body: &'a Value) -> Call<'a> {
        let (model, stream) = method(path).unwrap_or(("mock", false));
        Call {
            body,
            model,
            stream,
        }
    }

    fn prompt_tokens(&self, body: &Value) -> u64 {
        prompt_tokens(body)
    }

    /// Google's errors say when to retry in a `RetryInfo` detail, not a
    /// header.
    fn sends_retry_after(&self) -> bool {
        false
    }

    fn answer<'a>(
        &self,
        call: &Call<'a>,
        fault: &Fault,
        n: u64,
        options: &Options,
    ) -> Result<Value, Failure<'a>> {
        let answer = Answer::new(call, fault, options)?;
        let candidate = match &answer.reply {
            Reply::Text(text) => json!({
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": answer.finish,
                "index": 0
            }),
            Reply::Filtered => filtered(),
            Reply::Call { name, arguments } => json!({
                "content": {"role": "model", "parts": [function_call(name, arguments)]},
                "finishReason": answer.finish,
                "index": 0
            }),
        };
        Ok(json!({
            "candidates": [candidate],
            "usageMetadata": answer.usage(),
            "modelVersion": call.model,
            "responseId": format!("mock_{n}")
        }))
    }

    /// One chunk per piece of text, or one with the whole `functionCall`
    /// (Gemini does not stream arguments); then the chunk with the
    /// `finishReason` and `usageMetadata`, which is the stream's last: there
    /// is no `[DONE]`, so `no_terminator` leaves that chunk out.
    fn events<'a>(
        &self,
        call: &Call<'a>,
        fault: &Fault,
        n: u64,
        options: &Options,
    ) -> Result<Events, Failure<'a>> {
        let answer = Answer::new(call, fault, options)?;
        let id = format!("mock_{n}");
        let chunk = |candidate: Value, usage: Option<Value>| {
            let mut chunk = json!({
                "candidates": [candidate],
                "modelVersion": call.model,
                "responseId": id
            });
            if let Some(usage) = usage {
                chunk["usageMetadata"] = usage;
            }
            sse(None, &chunk.to_string())
        };
        let (content, last) = match &answer.reply {
            Reply::Text(text) => (
                pieces(text)
                    .into_iter()
                    .map(|piece| {
                        let content = json!({"role": "model", "parts": [{"text": piece}]});
                        chunk(json!({"content": content, "index": 0}), None)
                    })
                    .collect(),
                json!({
                    "content": {"role": "model", "parts": [{"text": ""}]},
                    "finishReason": answer.finish,
                    "index": 0
                }),
            ),
            Reply::Filtered => (Vec::new(), filtered()),
            Reply::Call { name, arguments } => {
                let content = json!({"role": "model", "parts": [function_call(name, arguments)]});
                (
                    vec![chunk(json!({"content": content, "index": 0}), None)],
                    json!({"finishReason": answer.finish, "index": 0}),
                )
            }
        };
        Ok(Events {
            head: Vec::new(),
            content,
            tail: Vec::new(),
            terminator: chunk(last, Some(answer.usage())),
            malformed: Bytes::from(format!(
                "data: {{\"candidates\": [{{\"content\": {{\"role\": \"model\", \"parts\": [{{\"te\", \"responseId\": \"{id}\n\n"
            )),
        })
    }

    fn error(&self, failure: &Failure<'_>, _n: u64) -> ErrorParts {
        error(failure)
    }

    /// `data: {"error": {...}}`, the body of the error response.
    fn error_event(&self, failure: &Failure<'_>, _n: u64, _seq: usize) -> Bytes {
        sse(None, &error(failure).1.to_string())
    }
}

/// A field by its JSON name (`lowerCamelCase`) or its proto name
/// (`snake_case`), which Google's JSON parser accepts as well.
fn field<'v>(value: &'v Value, camel: &str, snake: &str) -> Option<&'v Value> {
    value.get(camel).or_else(|| value.get(snake))
}

/// A content's parts.
fn parts(content: &Value) -> &[Value] {
    content
        .get("parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A content's role (`user` when it names none).
fn role(content: &Value) -> &str {
    content
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("user")
}

/// The text of a content's `text` parts.
fn text(content: &Value) -> String {
    parts(content)
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect()
}

/// A `functionResponse`'s result as text: its `response`'s `output` (or
/// `result`) when that is text, else the `response` as JSON.
fn result_text(function_response: &Value) -> String {
    let response = &function_response["response"];
    match response.get("output").or_else(|| response.get("result")) {
        Some(Value::String(text)) => text.clone(),
        _ => response.to_string(),
    }
}

/// An OpenAPI-subset schema as the JSON Schema it means: type names in
/// lower case, `nullable: true` as a `null` type.
fn json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            let nullable = map.get("nullable") == Some(&Value::Bool(true));
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("type", Value::String(kind)) => {
                        let kind = Value::String(kind.to_ascii_lowercase());
                        let kind = if nullable {
                            json!([kind, "null"])
                        } else {
                            kind
                        };
                        out.insert(key.clone(), kind);
                    }
                    ("nullable", Value::Bool(_)) => {}
                    _ => {
                        out.insert(key.clone(), json_schema(value));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

/// A JSON Schema given as `json` (taken as it is) or as an OpenAPI-subset
/// `openapi` one.
fn schema<'a>(json: Option<&'a Value>, openapi: Option<&'a Value>) -> Option<Cow<'a, Value>> {
    json.map(Cow::Borrowed)
        .or_else(|| openapi.map(|s| Cow::Owned(json_schema(s))))
}

/// Reads what a request asks for: `contents` ending with a user turn,
/// which may carry `functionResponse` parts (the tool results); a trailing
/// `model` turn with text and no `functionCall` is a prefill;
/// `tools[].functionDeclarations`; `toolConfig.functionCallingConfig`
/// (`mode` `NONE`, `ANY` (the first of `allowedFunctionNames`, if any),
/// else auto); `generationConfig.responseMimeType` `application/json` with
/// `responseJsonSchema` or `responseSchema` (without either: a JSON
/// object).
fn read<'a>(call: &Call<'a>) -> Ask<'a> {
    let body = call.body;
    let contents = body
        .get("contents")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let last = contents.last();
    let results: Vec<String> = last
        .filter(|c| role(c) != "model")
        .map(|c| {
            parts(c)
                .iter()
                .filter_map(|p| field(p, "functionResponse", "function_response"))
                .map(result_text)
                .collect()
        })
        .unwrap_or_default();
    let user_text = contents
        .iter()
        .rev()
        .filter(|c| role(c) == "user")
        .map(text)
        .find(|t| !t.is_empty())
        .map(|t| clip(&t, 48))
        .unwrap_or_default();
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| field(t, "functionDeclarations", "function_declarations"))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|d| {
            Some(Tool {
                name: d.get("name")?.as_str()?,
                schema: schema(
                    field(d, "parametersJsonSchema", "parameters_json_schema"),
                    d.get("parameters"),
                ),
            })
        })
        .collect();
    let config = field(body, "toolConfig", "tool_config")
        .and_then(|c| field(c, "functionCallingConfig", "function_calling_config"));
    let mode = config
        .and_then(|c| c.get("mode"))
        .and_then(Value::as_str)
        .unwrap_or("AUTO");
    let allowed = config
        .and_then(|c| field(c, "allowedFunctionNames", "allowed_function_names"))
        .and_then(|names| names.get(0))
        .and_then(Value::as_str);
    let choice = if mode.eq_ignore_ascii_case("none") {
        ToolChoice::None
    } else if mode.eq_ignore_ascii_case("any") {
        allowed.map_or(ToolChoice::Any, ToolChoice::Named)
    } else {
        ToolChoice::Auto
    };
    let generation = field(body, "generationConfig", "generation_config");
    let json = generation
        .and_then(|g| field(g, "responseMimeType", "response_mime_type"))
        .and_then(Value::as_str)
        == Some("application/json");
    let format = match generation {
        Some(g) if json => match schema(
            field(g, "responseJsonSchema", "response_json_schema"),
            field(g, "responseSchema", "response_schema"),
        ) {
            Some(schema) => Format::JsonSchema(schema),
            None => Format::JsonObject,
        },
        _ => Format::Text,
    };
    let prefill = last
        .filter(|c| role(c) == "model")
        .filter(|c| {
            !parts(c)
                .iter()
                .any(|p| field(p, "functionCall", "function_call").is_some())
        })
        .map(text)
        .filter(|t| !t.is_empty());
    Ask {
        model: call.model,
        user_text,
        last_is_user: last.is_some_and(|c| role(c) == "user") && results.is_empty(),
        tool_results: (!results.is_empty()).then_some(results),
        tools,
        choice,
        format,
        prefill,
        reject_prefill: false,
    }
}

/// About four bytes of text per token plus framing, for each turn (its
/// text, call arguments and function responses) and the system
/// instruction.
fn prompt_tokens(body: &Value) -> u64 {
    let turn = |content: &Value| {
        let bytes: usize = parts(content)
            .iter()
            .map(|p| {
                p.get("text").and_then(Value::as_str).map_or(0, str::len)
                    + field(p, "functionCall", "function_call")
                        .map_or(0, |c| c["args"].to_string().len())
                    + field(p, "functionResponse", "function_response")
                        .map_or(0, |r| r["response"].to_string().len())
            })
            .sum();
        (bytes as u64).div_ceil(4) + 4
    };
    let system = field(body, "systemInstruction", "system_instruction").map_or(0, turn);
    let contents: u64 = body
        .get("contents")
        .and_then(Value::as_array)
        .map_or(0, |c| c.iter().map(turn).sum());
    system + contents
}

/// A `functionCall` part.
fn function_call(name: &str, arguments: &Arguments) -> Value {
    let args = match arguments {
        Arguments::Json(value) => value.clone(),
        Arguments::Text(text) => Value::String(text.clone()),
    };
    json!({"functionCall": {"name": name, "args": args}})
}

/// A candidate the safety filter stopped: no content.
fn filtered() -> Value {
    json!({
        "finishReason": "SAFETY",
        "index": 0,
        "safetyRatings": [
            {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true},
            {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
            {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"}
        ]
    })
}

/// The first `max` words of `text` (with the whitespace between them),
/// if it has more.
fn first_words(text: &str, max: usize) -> Option<&str> {
    if text.split_whitespace().count() <= max {
        return None;
    }
    let mut words = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if !c.is_whitespace() {
            if !in_word && words == max {
                return Some(text[..i].trim_end());
            }
            if !in_word {
                words += 1;
            }
        }
        in_word = !c.is_whitespace();
    }
    None
}

/// What a request gets: the reply, its finish reason, its usage.
struct Answer {
    reply: Reply,
    finish: &'static str,
    prompt: u64,
}

impl Answer {
    /// The reply to `call` under `fault`; a text longer than
    /// `generationConfig.maxOutputTokens` words is cut there, with
    /// `finishReason: MAX_TOKENS`.
    fn new<'a>(call: &Call<'a>, fault: &Fault, options: &Options) -> Result<Answer, Failure<'a>> {
        let reply = read(call).under(options).reply(fault, true)?;
        let max = field(call.body, "generationConfig", "generation_config")
            .and_then(|g| field(g, "maxOutputTokens", "max_output_tokens"))
            .and_then(Value::as_u64);
        let (reply, finish) = match reply {
            Reply::Text(text) => {
                match max.and_then(|max| first_words(&text, usize::try_from(max).ok()?)) {
                    Some(cut) => (Reply::Text(cut.to_owned()), "MAX_TOKENS"),
                    None => (Reply::Text(text), "STOP"),
                }
            }
            Reply::Filtered => (Reply::Filtered, "SAFETY"),
            call @ Reply::Call { .. } => (call, "STOP"),
        };
        Ok(Answer {
            reply,
            finish,
            prompt: prompt_tokens(call.body),
        })
    }

    fn usage(&self) -> Value {
        let completion = completion_tokens(&self.reply);
        json!({
            "promptTokenCount": self.prompt,
            "candidatesTokenCount": completion,
            "totalTokenCount": self.prompt + completion
        })
    }
}

/// `{"error": {"code", "message", "status", "details"?}}`.
fn body(code: u16, status: &str, message: &str, details: Vec<Value>) -> Value {
    let mut error = json!({"code": code, "message": message, "status": status});
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    json!({"error": error})
}

/// A `QuotaFailure` detail: the quota `id` (per minute or per day) of
/// `value` requests, for `model` if known.
fn quota_failure(id: &str, value: &str, model: Option<&str>) -> Value {
    let mut dimensions = json!({"location": "global"});
    if let Some(model) = model {
        dimensions["model"] = json!(model);
    }
    json!({
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
            "quotaId": id,
            "quotaDimensions": dimensions,
            "quotaValue": value
        }]
    })
}

/// A `RetryInfo` detail: `retryDelay` as a protobuf duration (`"2s"`).
fn retry_info(retry_after: f64) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": format!("{}s", seconds(retry_after))
    })
}

const QUOTA_MESSAGE: &str = "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.";

/// Status, body and headers of `failure`: a rate limit is 429
/// `RESOURCE_EXHAUSTED` with a per-minute `QuotaFailure` and a
/// `RetryInfo`; a quota 429 `RESOURCE_EXHAUSTED` with a per-day
/// `QuotaFailure` and no `RetryInfo`; overloaded 503 `UNAVAILABLE`; server
/// 500 `INTERNAL`; unauthorized 401 `UNAUTHENTICATED` (`API_KEY_INVALID`);
/// context overflow and refused requests 400 `INVALID_ARGUMENT`.
fn error(failure: &Failure<'_>) -> ErrorParts {
    let (status, body) = match failure {
        Failure::RateLimit { retry_after, model } => (
            429,
            body(
                429,
                "RESOURCE_EXHAUSTED",
                &format!(
                    "{QUOTA_MESSAGE} Please retry in {}s.",
                    seconds(*retry_after)
                ),
                vec![
                    quota_failure(
                        "GenerateRequestsPerMinutePerProjectPerModel",
                        "60",
                        Some(model),
                    ),
                    retry_info(*retry_after),
                ],
            ),
        ),
        Failure::Quota => (
            429,
            body(
                429,
                "RESOURCE_EXHAUSTED",
                QUOTA_MESSAGE,
                vec![quota_failure(
                    "GenerateRequestsPerDayPerProjectPerModel",
                    "1500",
                    None,
                )],
            ),
        ),
        Failure::Overloaded { retry_after } => (
            503,
            body(
                503,
                "UNAVAILABLE",
                "The model is overloaded. Please try again later.",
                retry_after.map(retry_info).into_iter().collect(),
            ),
        ),
        Failure::Server => (
            500,
            body(
                500,
                "INTERNAL",
                "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
                Vec::new(),
            ),
        ),
        Failure::Unauthorized => (
            401,
            body(
                401,
                "UNAUTHENTICATED",
                "API key not valid. Please pass a valid API key.",
                vec![json!({
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"}
                })],
            ),
        ),
        Failure::ContextOverflow { tokens, limit } => {
            // Without a window for the model, Gemini's 1M, and a count
            // past it so the message holds.
            let limit = limit.unwrap_or(DEFAULT_LIMIT);
            let tokens = (*tokens).max(limit + 1);
            (
                400,
                body(
                    400,
                    "INVALID_ARGUMENT",
                    &format!(
                        "The input token count ({tokens}) exceeds the maximum number of tokens allowed ({limit})."
                    ),
                    Vec::new(),
                ),
            )
        }
        Failure::Invalid(message) => (400, body(400, "INVALID_ARGUMENT", message, Vec::new())),
    };
    (status, body, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_model_and_the_method() {
        assert_eq!(
            method("/v1beta/models/gemini-2.5-flash:generateContent"),
            Some(("gemini-2.5-flash", false))
        );
        assert_eq!(
            method("/v1/models/gemini-2.0-flash-001:streamGenerateContent"),
            Some(("gemini-2.0-flash-001", true))
        );
        assert_eq!(method("/v1beta/models/gemini:countTokens"), None);
        assert_eq!(method("/v1beta/models/:generateContent"), None);
        assert_eq!(method("/v1beta/tunedModels/x:generateContent"), None);
    }

    #[test]
    fn openapi_schemas_read_as_json_schema() {
        let openapi = json!({
            "type": "OBJECT",
            "properties": {
                "city": {"type": "STRING"},
                "days": {"type": "INTEGER", "nullable": true},
                "type": {"type": "STRING", "enum": ["a", "b"]}
            },
            "required": ["city"]
        });
        assert_eq!(
            json_schema(&openapi),
            json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": ["integer", "null"]},
                    "type": {"type": "string", "enum": ["a", "b"]}
                },
                "required": ["city"]
            })
        );
    }

    #[test]
    fn first_words_cut_after_whole_words() {
        assert_eq!(first_words("one two  three four", 2), Some("one two"));
        assert_eq!(first_words("  one two", 1), Some("  one"));
        assert_eq!(first_words("one two", 2), None);
        assert_eq!(first_words("one two", 0), Some(""));
    }
}
