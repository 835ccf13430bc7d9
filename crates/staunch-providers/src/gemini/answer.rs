//! Reading a Gemini `GenerateContentResponse`: the first candidate's text
//! and `functionCall` parts, its finish reason, the prompt's block reason,
//! usage, the model version and the response id. A stream's chunks have the
//! same shape, so the stream reader shares what is here.

use super::error::error;
use crate::json::decode;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use staunch_core::{
    ChatResponse, Content, ContentPart, Dialect, ErrorKind, FinishReason, LlmError, ToolCall, Usage,
};

/// One `GenerateContentResponse` (a whole answer, or one chunk of a stream).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Chunk {
    #[serde(default)]
    pub(crate) candidates: Option<Vec<Candidate>>,
    #[serde(default)]
    pub(crate) prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub(crate) usage_metadata: Option<WireUsage>,
    #[serde(default)]
    pub(crate) model_version: Option<String>,
    #[serde(default)]
    pub(crate) response_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Candidate {
    #[serde(default)]
    pub(crate) content: Option<WireContent>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
    #[serde(default)]
    pub(crate) index: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct WireContent {
    #[serde(default)]
    pub(crate) parts: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PromptFeedback {
    #[serde(default)]
    pub(crate) block_reason: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub(crate) prompt_token_count: Option<u64>,
    #[serde(default)]
    pub(crate) candidates_token_count: Option<u64>,
    #[serde(default)]
    pub(crate) total_token_count: Option<u64>,
    #[serde(default)]
    pub(crate) cached_content_token_count: Option<u64>,
    #[serde(default)]
    pub(crate) thoughts_token_count: Option<u64>,
    #[serde(default)]
    pub(crate) tool_use_prompt_token_count: Option<u64>,
}

impl WireUsage {
    /// Gemini counts thinking apart from `candidatesTokenCount`; the neutral
    /// output count includes it (as reasoning tokens), and the input count
    /// includes the prompt of server-side tools.
    pub(crate) fn usage(&self) -> Usage {
        let input = self
            .prompt_token_count
            .unwrap_or(0)
            .saturating_add(self.tool_use_prompt_token_count.unwrap_or(0));
        let thoughts = self.thoughts_token_count.unwrap_or(0);
        let output = match (self.candidates_token_count, self.total_token_count) {
            (Some(n), _) => n.saturating_add(thoughts),
            // Only a total: the rest of it is the output.
            (None, Some(total)) => total.saturating_sub(input),
            (None, None) => thoughts,
        };
        Usage::new(input, output)
            .with_cached_input(self.cached_content_token_count.unwrap_or(0))
            .with_reasoning(thoughts)
    }
}

impl Chunk {
    /// The first candidate (the one with index 0, or the first given).
    pub(crate) fn first(&self) -> Option<&Candidate> {
        let candidates = self.candidates.as_deref()?;
        candidates
            .iter()
            .find(|c| c.index.unwrap_or(0) == 0)
            .or(candidates.first())
    }

    /// The usage, when the chunk has any.
    pub(crate) fn usage(&self) -> Option<Usage> {
        self.usage_metadata.as_ref().map(WireUsage::usage)
    }
}

/// The finish reasons that mean the provider's policy stopped the answer.
pub(crate) fn is_refusal(reason: &str) -> bool {
    matches!(
        reason,
        "SAFETY"
            | "RECITATION"
            | "PROHIBITED_CONTENT"
            | "BLOCKLIST"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION"
    )
}

/// A refused answer or prompt: `ContentFiltered`, its code the reason.
pub(crate) fn refusal(what: &str, reason: &str, status: u16, spent: Usage) -> LlmError {
    LlmError::new(
        ErrorKind::ContentFiltered,
        format!("the {what} was blocked by Gemini's safety filters ({reason})"),
    )
    // No error body: the wire's own word for it is the reason.
    .with_code(reason)
    .with_status(status)
    .with_spent(spent)
}

/// The neutral finish reason of a Gemini one (not a refusal); `calls` says
/// whether the answer called tools (Gemini says `STOP` then).
pub(crate) fn finish_reason(reason: &str, calls: bool) -> FinishReason {
    match reason {
        "STOP" | "FINISH_REASON_UNSPECIFIED" if calls => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// The id of the `n`th call of an answer: Gemini's own when it gave one,
/// else `call_<answer>_<n>`, stable for one answer and unique across the
/// answers of a conversation (an id of at most 40 characters of
/// `[A-Za-z0-9_-]`, which every dialect accepts).
pub(crate) fn call_id(given: Option<&str>, answer: &str, n: u32) -> String {
    if let Some(id) = given.filter(|id| !id.is_empty()) {
        return id.to_owned();
    }
    let answer: String = answer
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(24)
        .collect();
    if answer.is_empty() {
        format!("call_{n}")
    } else {
        format!("call_{answer}_{n}")
    }
}

/// A `functionCall` part's name, arguments (JSON text) and id, if it is one.
pub(crate) fn function_call(part: &Value) -> Option<(&str, String, Option<&str>)> {
    let call = part.get("functionCall")?;
    let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
    let arguments = match call.get("args") {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(args) => args.to_string(),
    };
    Some((name, arguments, call.get("id").and_then(Value::as_str)))
}

/// A text part's text (not a thought summary's), if it is one.
pub(crate) fn part_text(part: &Value) -> Option<&str> {
    if part.get("thought").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    part.get("text").and_then(Value::as_str)
}

/// True for a part that carries only a thought (a summary or a signature
/// on an empty text): nothing for the caller.
fn is_thought(part: &Value) -> bool {
    part.get("thought").and_then(Value::as_bool) == Some(true)
        || (part.get("text").and_then(Value::as_str) == Some("")
            && part
                .as_object()
                .is_some_and(|p| p.keys().all(|k| k == "text" || k == "thoughtSignature")))
}

/// Reads a response: a 2xx body becomes a [`ChatResponse`] (a safety stop
/// or a blocked prompt becomes a `ContentFiltered` error), anything else an
/// [`LlmError`] classified from the error status, the HTTP status and the
/// headers. Never panics, whatever the bytes.
pub fn parse(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<ChatResponse, LlmError> {
    if !(200..300).contains(&status) {
        return Err(error(status, headers, body));
    }
    let chunk: Chunk = decode("Gemini", body)?;
    let usage = chunk.usage().unwrap_or_default();
    let Some(candidate) = chunk.first() else {
        if let Some(reason) = chunk
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_deref())
        {
            return Err(refusal("prompt", reason, status, usage));
        }
        return Err(LlmError::new(
            ErrorKind::MalformedResponse,
            "the Gemini response has no candidates",
        )
        .with_spent(usage));
    };
    let reason = candidate.finish_reason.as_deref().unwrap_or("STOP");
    if is_refusal(reason) {
        return Err(refusal("answer", reason, status, usage));
    }
    let answer = chunk.response_id.as_deref().unwrap_or_default();
    let (mut text, mut calls, mut others) = (String::new(), Vec::new(), Vec::new());
    let parts = candidate
        .content
        .as_ref()
        .and_then(|c| c.parts.as_deref())
        .unwrap_or_default();
    for part in parts {
        if let Some((name, arguments, id)) = function_call(part) {
            let id = call_id(id, answer, calls.len() as u32);
            calls.push(ToolCall::new(id, name, arguments));
        } else if let Some(t) = part_text(part) {
            text.push_str(t);
        } else if !is_thought(part) {
            // Code execution, inline data and parts to come: Gemini's own.
            others.push(ContentPart::Opaque {
                dialect: Dialect::Gemini,
                part: part.clone(),
            });
        }
    }
    let content = if others.is_empty() {
        Content::Text(text)
    } else {
        let mut parts = others;
        if !text.is_empty() {
            parts.insert(0, ContentPart::Text { text });
        }
        Content::Parts(parts)
    };
    let finish = finish_reason(reason, !calls.is_empty());
    let mut response = ChatResponse::new(chunk.model_version.unwrap_or_default(), String::new())
        .with_id(chunk.response_id.unwrap_or_default())
        .with_usage(usage)
        .with_finish_reason(finish);
    response.message.content = content;
    response.message.tool_calls = calls;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(body: Value) -> Result<ChatResponse, LlmError> {
        parse(200, &HeaderMap::new(), body.to_string().as_bytes())
    }

    #[test]
    fn text_usage_model_and_id() {
        let r = ok(json!({
            "candidates": [{"content": {"parts": [{"text": "Hello"}, {"text": " there"}], "role": "model"},
                            "finishReason": "STOP", "index": 0,
                            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 40,
                              "cachedContentTokenCount": 4, "thoughtsTokenCount": 23},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "mKqLaOiSD6u1qtsP7K3B0Ac"
        }))
        .unwrap();
        assert_eq!(r.text(), "Hello there");
        assert_eq!(r.model, "gemini-2.5-flash");
        assert_eq!(r.id, "mKqLaOiSD6u1qtsP7K3B0Ac");
        assert_eq!(r.finish_reason, FinishReason::Stop);
        assert_eq!(
            r.usage,
            Usage::new(12, 28).with_cached_input(4).with_reasoning(23)
        );
    }

    #[test]
    fn function_calls_get_stable_unique_ids() {
        let body = json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                 "thoughtSignature": "CiQB0e2Kb1"},
                {"functionCall": {"name": "get_time"}},
                {"functionCall": {"name": "own_id", "args": {}, "id": "fc_7"}},
            ]}, "finishReason": "STOP"}],
            "responseId": "abc/DEF+123"
        });
        let r = ok(body.clone()).unwrap();
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        let calls = r.calls();
        assert_eq!(
            calls
                .iter()
                .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
                .collect::<Vec<_>>(),
            [
                ("call_abcDEF123_0", "get_weather", r#"{"city":"Paris"}"#),
                ("call_abcDEF123_1", "get_time", "{}"),
                ("fc_7", "own_id", "{}"),
            ]
        );
        assert_eq!(ok(body).unwrap().calls(), calls, "stable");
        assert_eq!(call_id(None, "", 3), "call_3");
        assert!(call_id(None, &"x".repeat(100), 4096).len() <= 40);
    }

    #[test]
    fn safety_stops_and_blocked_prompts_are_refusals() {
        for reason in [
            "SAFETY",
            "RECITATION",
            "PROHIBITED_CONTENT",
            "BLOCKLIST",
            "SPII",
        ] {
            let e = ok(
                json!({"candidates": [{"content": {"parts": []}, "finishReason": reason}],
                              "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 0}}),
            )
            .unwrap_err();
            assert_eq!(e.kind, ErrorKind::ContentFiltered, "{reason}");
            assert_eq!(e.code.as_deref(), Some(reason));
            assert_eq!(e.spent, Usage::new(7, 0));
        }
        let e = ok(
            json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                          "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ContentFiltered);
        assert_eq!(e.code.as_deref(), Some("PROHIBITED_CONTENT"));
        assert!(e.message.contains("prompt"));
    }

    #[test]
    fn other_finishes_thoughts_and_own_parts() {
        let r = ok(json!({"candidates": [{"content": {"parts": [
            {"text": "thinking…", "thought": true},
            {"text": "x"},
            {"executableCode": {"language": "PYTHON", "code": "1+1"}},
            {"text": "", "thoughtSignature": "sig"},
        ]}, "finishReason": "MAX_TOKENS"}]}))
        .unwrap();
        assert_eq!(r.finish_reason, FinishReason::Length);
        assert_eq!(r.text(), "x");
        let Content::Parts(parts) = &r.message.content else {
            panic!("{:?}", r.message.content)
        };
        assert_eq!(parts.len(), 2);
        let r = ok(json!({"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL"}]})).unwrap();
        assert_eq!(
            r.finish_reason,
            FinishReason::Other("MALFORMED_FUNCTION_CALL".into())
        );
        assert_eq!(r.text(), "");
    }

    #[test]
    fn errors_and_bad_bodies() {
        let e = parse(
            503,
            &HeaderMap::new(),
            br#"{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Overloaded);
        let e = ok(json!({"candidates": []})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MalformedResponse);
        let e = parse(200, &HeaderMap::new(), br#"{"candidates": [{"content": "#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TruncatedResponse);
        for bad in [
            &b"[]"[..],
            b"null",
            b"\xff",
            br#"{"candidates": 3}"#,
            br#"{"usageMetadata": {"promptTokenCount": -1}}"#,
        ] {
            assert!(parse(200, &HeaderMap::new(), bad).is_err());
        }
    }
}
