//! Reading an OpenAI Chat Completions stream (`stream: true`, with
//! `stream_options.include_usage`): each `chat.completion.chunk` frame
//! becomes neutral events, `[DONE]` ends the stream, an `{"error": ..}`
//! frame is classified like an error body.
#![allow(dead_code)] // wired by the streaming client

use super::answer::WireUsage;
use super::error::error;
use crate::json::snippet;
use crate::sse::{SseFrame, Step};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use staunch_core::{ErrorKind, FinishReason, LlmError, StreamEvent, Usage};

/// The status of a streamed answer: errors in its body came with it.
const STREAM_STATUS: u16 = 200;

/// Tool calls one answer may hold: a piece's `index` at or past it is
/// malformed, so the calls assembled from the stream stay bounded (an index
/// of 4,294,967,295 would otherwise have the stream's accumulator fill in
/// every call before it), as `MAX_TOOL_BLOCKS` bounds Anthropic's.
const MAX_TOOL_CALLS: u32 = 4096;

/// The state of one stream: the tool-call index to give the pieces of
/// servers that leave `index` out.
#[derive(Debug, Default)]
pub(crate) struct OpenAiEvents {
    /// The call the last piece belonged to.
    last_call: Option<u32>,
    /// One past the highest call index seen.
    next_call: u32,
}

impl OpenAiEvents {
    /// The parser of a new stream.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Reads one frame. Never panics.
    pub(crate) fn parse(&mut self, frame: &SseFrame) -> Step {
        let data = frame.data.trim();
        if data == "[DONE]" {
            return Step::Done;
        }
        if frame.event.as_deref() != Some("error")
            && let Some(common) = super::chunk::read(data)
        {
            let mut events = Vec::new();
            for text in [common.content, common.refusal].into_iter().flatten() {
                events.push(StreamEvent::TextDelta(text.into_owned()));
            }
            return chunk_step(events, common.usage, common.finish.map(String::from));
        }
        self.parse_value(frame, data)
    }

    /// Reads one frame through a `serde_json::Value`: every frame the
    /// common-chunk reader leaves, with the same meaning for the rest.
    fn parse_value(&mut self, frame: &SseFrame, data: &str) -> Step {
        let value: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(_) if frame.event.as_deref() == Some("error") => {
                return Step::Error(stream_error(data.as_bytes(), &Value::Null));
            }
            Err(e) => {
                return Step::Malformed(format!(
                    "an OpenAI stream frame is not JSON ({e}): {}",
                    snippet(data.as_bytes())
                ));
            }
        };
        let Value::Object(chunk) = &value else {
            return Step::Malformed(format!(
                "an OpenAI stream frame is not a JSON object: {}",
                snippet(data.as_bytes())
            ));
        };
        let err = chunk.get("error").filter(|e| !e.is_null());
        if err.is_some()
            || chunk.get("object").and_then(Value::as_str) == Some("error")
            || frame.event.as_deref() == Some("error")
        {
            return Step::Error(stream_error(data.as_bytes(), err.unwrap_or(&value)));
        }
        let usage = match chunk.get("usage") {
            None | Some(Value::Null) => None,
            Some(u) => match WireUsage::deserialize(u) {
                Ok(u) => Some(u.usage()),
                Err(e) => return Step::Malformed(format!("an OpenAI stream usage is bad: {e}")),
            },
        };
        let choices = match chunk.get("choices") {
            Some(Value::Array(choices)) => choices.as_slice(),
            None | Some(Value::Null) if usage.is_some() => &[],
            _ => {
                return Step::Malformed(format!(
                    "an OpenAI stream chunk has no choices: {}",
                    snippet(data.as_bytes())
                ));
            }
        };
        let mut events = Vec::new();
        let mut finish = None;
        // The first choice only (`n` > 1 is not streamed to one caller).
        let first = choices.iter().find(|c| match c.get("index") {
            None | Some(Value::Null) => true,
            Some(i) => i.as_u64() == Some(0),
        });
        if let Some(choice) = first {
            if !choice.is_object() {
                return Step::Malformed("an OpenAI stream choice is not an object".to_owned());
            }
            match choice.get("delta") {
                None | Some(Value::Null) => {}
                Some(delta @ Value::Object(_)) => {
                    if let Err(m) = self.delta(delta, &mut events) {
                        return Step::Malformed(m);
                    }
                }
                Some(_) => {
                    return Step::Malformed("an OpenAI stream delta is not an object".to_owned());
                }
            }
            match choice.get("finish_reason") {
                None | Some(Value::Null) => {}
                Some(Value::String(reason)) => finish = Some(reason.clone()),
                Some(_) => {
                    return Step::Malformed("an OpenAI finish_reason is not a string".to_owned());
                }
            }
        }
        chunk_step(events, usage, finish)
    }

    /// The events of one `delta`: text, refusal text, tool-call pieces.
    fn delta(&mut self, delta: &Value, events: &mut Vec<StreamEvent>) -> Result<(), String> {
        for field in ["content", "refusal"] {
            match delta.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::String(text)) => {
                    if !text.is_empty() {
                        events.push(StreamEvent::TextDelta(text.clone()));
                    }
                }
                // Some compatible servers send content parts.
                Some(Value::Array(parts)) => {
                    let text: String = parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect();
                    if !text.is_empty() {
                        events.push(StreamEvent::TextDelta(text));
                    }
                }
                Some(_) => return Err(format!("an OpenAI stream delta's {field} is not text")),
            }
        }
        match delta.get("tool_calls") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Array(calls)) => {
                for call in calls {
                    if !call.is_object() {
                        return Err("an OpenAI stream tool call is not an object".to_owned());
                    }
                    self.call(call, events)?;
                }
                Ok(())
            }
            Some(_) => Err("an OpenAI stream delta's tool_calls is not a list".to_owned()),
        }
    }

    fn call(&mut self, call: &Value, events: &mut Vec<StreamEvent>) -> Result<(), String> {
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let id = text(call.get("id"));
        let function = call.get("function");
        let name = text(function.and_then(|f| f.get("name")));
        let arguments = match function.and_then(|f| f.get("arguments")) {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => String::new(),
            Some(other) => other.to_string(),
        };
        let explicit = call
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok());
        let index = match (explicit, self.last_call) {
            (Some(i), _) => i,
            // No index: a piece with an id starts a call, one without
            // continues the last.
            (None, Some(last)) if id.is_none() => last,
            (None, _) => self.next_call,
        };
        if index >= MAX_TOOL_CALLS {
            return Err(format!(
                "an OpenAI stream tool call has index {index}, past {MAX_TOOL_CALLS} calls"
            ));
        }
        self.last_call = Some(index);
        self.next_call = self.next_call.max(index.saturating_add(1));
        if id.is_none() && name.is_none() && arguments.is_empty() {
            return Ok(());
        }
        events.push(StreamEvent::ToolCallDelta {
            index,
            id,
            name,
            arguments,
        });
        Ok(())
    }
}

/// The step of a chunk whose delta gave `events`: its usage, then its
/// finish reason (or the error a finish reason stands for).
fn chunk_step(mut events: Vec<StreamEvent>, usage: Option<Usage>, finish: Option<String>) -> Step {
    if let Some(usage) = usage {
        events.push(StreamEvent::Usage(usage));
    }
    if let Some(reason) = finish {
        match FinishReason::from(reason) {
            FinishReason::ContentFilter => {
                let error = LlmError::new(
                    ErrorKind::ContentFiltered,
                    "the answer was stopped by the content filter (finish_reason: content_filter)",
                )
                .with_code("content_filter")
                .with_status(STREAM_STATUS)
                .with_spent(usage.unwrap_or_default());
                return Step::Error(error);
            }
            FinishReason::Other(r) if r == "error" => {
                // OpenRouter and others end a failed stream so.
                let error = LlmError::new(
                    ErrorKind::Server,
                    "the stream ended with finish_reason: error",
                )
                .with_status(STREAM_STATUS);
                return Step::Error(error);
            }
            reason => events.push(StreamEvent::Finish(reason)),
        }
    }
    if events.is_empty() {
        Step::Ignore
    } else {
        Step::Events(events)
    }
}

/// The status an error's `code` or `type` stands for, so that the error
/// body classifier sees a mid-stream error as it would see the same error
/// sent with its status; an unknown error is a server failure.
fn status_of(err: &Value) -> u16 {
    let field = |name: &str| err.get(name);
    if let Some(code) = field("code").and_then(Value::as_u64)
        && (400..600).contains(&code)
    {
        return code as u16;
    }
    for name in ["code", "type"] {
        let Some(text) = field(name).and_then(Value::as_str) else {
            continue;
        };
        let status = match text.to_ascii_lowercase().as_str() {
            "rate_limit_exceeded"
            | "rate_limit_error"
            | "requests"
            | "tokens"
            | "insufficient_quota"
            | "credit_balance_exhausted" => 429,
            "server_overloaded"
            | "overloaded"
            | "overloaded_error"
            | "service_unavailable"
            | "engine_overloaded" => 503,
            "timeout" | "timeout_error" | "request_timeout" => 408,
            "invalid_request_error"
            | "context_length_exceeded"
            | "content_filter"
            | "content_policy_violation"
            | "invalid_prompt"
            | "badrequesterror" => 400,
            "authentication_error" | "invalid_api_key" => 401,
            "permission_error" | "permission_denied" => 403,
            "not_found_error" | "model_not_found" => 404,
            "server_error" | "api_error" | "internal_error" | "internal_server_error" => 500,
            _ => continue,
        };
        return status;
    }
    500
}

/// A mid-stream error: `body` is the frame's data, `err` its error object.
fn stream_error(body: &[u8], err: &Value) -> LlmError {
    let mut error = error(status_of(err), &HeaderMap::new(), body);
    error.status = Some(STREAM_STATUS);
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;
    use proptest::prelude::*;
    use serde_json::json;
    use staunch_core::{StreamAccumulator, Usage};

    /// Frames the common-chunk reader takes and frames it must leave to
    /// the value path, each with what the value path makes of it.
    const FRAMES: &[&str] = &[
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"esc\"aped \u00e9 \n"},"finish_reason":null}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":""},"finish_reason":null}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}],"usage":null}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"content_filter"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"error"}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"something_new"}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}"#,
        r#"{"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
        r#"{"choices":null,"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
        r#"{"choices":[{"delta":{"content":"no index"}}]}"#,
        r#"{"choices":[{"index":null,"delta":{"content":"null index"}}]}"#,
        r#"{"choices":[{"index":1,"delta":{"content":"second"}},{"index":0,"delta":{"content":"first"}}]}"#,
        r#"{"choices":[{"index":1,"delta":{"content":"only the second"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"refusal":"no"},"finish_reason":null}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"a","refusal":"b"}}]}"#,
        r#"{"choices":[{"index":0,"delta":null,"finish_reason":null}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":null,"tool_calls":null}}]}"#,
        r#"{"error":null,"choices":[{"index":0,"delta":{"content":"x"}}]}"#,
        r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"x"}}],"system_fingerprint":"fp","service_tier":"default","obfuscation":"abc"}"#,
        // Left to the value path:
        r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
        r#"{"object":"error","message":"bad","code":429}"#,
        r#"{"object":5,"choices":[{"index":0,"delta":{"content":"x"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":"{}"}}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":[{"type":"text","text":"part"}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":5}}]}"#,
        r#"{"choices":[{"index":0,"delta":"text"}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":7}]}"#,
        r#"{"choices":[{"index":-1,"delta":{"content":"x"}}]}"#,
        r#"{"choices":[{"index":0.5,"delta":{"content":"x"}}]}"#,
        r#"{"choices":[{"index":"0","delta":{"content":"x"}}]}"#,
        r#"{"choices":[[0,{"content":"list"},null]]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"x"}},5]}"#,
        r#"{"choices":{"index":0}}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"a","content":"b"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"x"}}],"choices":[]}"#,
        r#"{"error":{"message":"m"},"error":null,"choices":[]}"#,
        r#"{"usage":{"prompt_tokens":"many"},"choices":[]}"#,
        r#"{"usage":[1,2],"choices":[]}"#,
        r#"{"id":"no choices"}"#,
        r#"[{"choices":[]}]"#,
        "null",
        "not json",
        r#"{"choices":[]} trailing"#,
    ];

    #[test]
    fn the_common_chunk_reader_means_what_the_value_path_means() {
        let mut fast_taken = 0;
        for data in FRAMES {
            for event in [None, Some("message"), Some("error")] {
                let frame = SseFrame {
                    event: event.map(str::to_owned),
                    data: (*data).to_owned(),
                };
                let both = OpenAiEvents::new().parse(&frame);
                let by_value = OpenAiEvents::new().parse_value(&frame, frame.data.trim());
                assert_eq!(
                    format!("{both:?}"),
                    format!("{by_value:?}"),
                    "{data} (event {event:?})"
                );
                fast_taken += usize::from(
                    event != Some("error") && crate::openai::chunk::read(data).is_some(),
                );
            }
        }
        // The 21 frames before "Left to the value path" are common, under two
        // event names each; after them, only the usage given as a list
        // (which the derived usage reads by position on both paths).
        assert_eq!(fast_taken, 44);
        assert!(crate::openai::chunk::read(r#"{"usage":[1,2],"choices":[]}"#).is_some());
    }

    fn events(frames: &[SseFrame]) -> (Vec<StreamEvent>, bool) {
        let mut p = OpenAiEvents::new();
        let mut out = Vec::new();
        for frame in frames {
            match p.parse(frame) {
                Step::Events(e) => {
                    assert!(!e.is_empty());
                    out.extend(e);
                }
                Step::Done => return (out, true),
                Step::Ignore => {}
                other => panic!("{other:?} for {frame:?}"),
            }
        }
        (out, false)
    }

    /// Decodes a whole SSE body.
    fn frames(body: &str) -> Vec<SseFrame> {
        let mut d = SseDecoder::new(1 << 16);
        d.push(body.as_bytes()).unwrap();
        assert!(!d.has_partial());
        std::iter::from_fn(|| d.next_frame()).collect()
    }

    fn chunk(delta: Value, finish: Value) -> String {
        json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
               "model": "gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb",
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
               "usage": null})
        .to_string()
    }

    fn step(data: &str) -> Step {
        OpenAiEvents::new().parse(&SseFrame::data(data))
    }

    fn error_of(data: &str) -> LlmError {
        match step(data) {
            Step::Error(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_text_stream_with_usage() {
        let usage = json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
            "model": "gpt-4o-mini", "choices": [],
            "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                      "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0}}});
        let body = [
            chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                Value::Null,
            ),
            chunk(json!({"content": "Hello"}), Value::Null),
            chunk(json!({"content": "!"}), Value::Null),
            chunk(json!({"content": " How can I help?"}), Value::Null),
            chunk(json!({}), json!("stop")),
            usage.to_string(),
            "[DONE]".to_owned(),
        ]
        .iter()
        .map(|d| format!("data: {d}\n\n"))
        .collect::<String>();
        let (events, done) = events(&frames(&body));
        assert!(done);
        assert_eq!(
            events,
            [
                StreamEvent::TextDelta("Hello".into()),
                StreamEvent::TextDelta("!".into()),
                StreamEvent::TextDelta(" How can I help?".into()),
                StreamEvent::Finish(FinishReason::Stop),
                StreamEvent::Usage(Usage::new(19, 10).with_cached_input(8).with_reasoning(2)),
            ]
        );
    }

    #[test]
    fn a_tool_call_stream_in_fragments() {
        let call = |index: u32, id: Option<&str>, name: Option<&str>, args: &str| {
            let mut c = json!({"index": index, "function": {"arguments": args}});
            if let (Some(id), Some(name)) = (id, name) {
                c = json!({"index": index, "id": id, "type": "function",
                           "function": {"name": name, "arguments": args}});
            }
            chunk(json!({"tool_calls": [c]}), Value::Null)
        };
        let data = [
            chunk(json!({"role": "assistant", "content": null}), Value::Null),
            call(0, Some("call_abc"), Some("get_weather"), ""),
            call(0, None, None, "{\"loc"),
            call(0, None, None, "ation\": \"Par"),
            call(0, None, None, "is, France\"}"),
            call(1, Some("call_def"), Some("get_time"), "{\"tz\""),
            call(1, None, None, ": \"CET\"}"),
            chunk(json!({}), json!("tool_calls")),
            "[DONE]".to_owned(),
        ];
        let frames: Vec<SseFrame> = data.iter().map(SseFrame::data).collect();
        let (events, done) = events(&frames);
        assert!(done);
        assert_eq!(
            events[0],
            StreamEvent::ToolCallDelta {
                index: 0,
                id: Some("call_abc".into()),
                name: Some("get_weather".into()),
                arguments: String::new()
            }
        );
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Finish(FinishReason::ToolCalls))
        );
        let mut acc = StreamAccumulator::new();
        events.iter().for_each(|e| acc.push(e));
        let calls = acc.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].name.as_str()),
            ("call_abc", "get_weather")
        );
        assert_eq!(
            (calls[1].id.as_str(), calls[1].name.as_str()),
            ("call_def", "get_time")
        );
        let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
        assert_eq!(args, json!({"location": "Paris, France"}));
        let args: Value = serde_json::from_str(&calls[1].arguments).unwrap();
        assert_eq!(args, json!({"tz": "CET"}));
    }

    #[test]
    fn tool_calls_without_an_index() {
        // Servers that leave `index` out: an id starts a call.
        let mut p = OpenAiEvents::new();
        let data = chunk(
            json!({"tool_calls": [
                {"id": "a", "function": {"name": "f", "arguments": {"x": 1}}},
                {"id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
            json!("tool_calls"),
        );
        let Step::Events(events) = p.parse(&SseFrame::data(data)) else {
            panic!()
        };
        let indexes: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallDelta { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        assert_eq!(indexes, [0, 1]);
        assert!(
            matches!(&events[0], StreamEvent::ToolCallDelta { arguments, .. } if arguments == r#"{"x":1}"#)
        );
        let more = chunk(
            json!({"tool_calls": [{"function": {"arguments": "more"}}]}),
            Value::Null,
        );
        let Step::Events(events) = p.parse(&SseFrame::data(more)) else {
            panic!()
        };
        assert!(matches!(
            events[0],
            StreamEvent::ToolCallDelta { index: 1, .. }
        ));
    }

    #[test]
    fn finish_reasons() {
        for (reason, finish) in [
            ("stop", FinishReason::Stop),
            ("length", FinishReason::Length),
            ("tool_calls", FinishReason::ToolCalls),
            ("function_call", FinishReason::ToolCalls),
            ("eos", FinishReason::Other("eos".into())),
        ] {
            match step(&chunk(json!({}), json!(reason))) {
                Step::Events(e) => assert_eq!(e, [StreamEvent::Finish(finish)]),
                other => panic!("{other:?}"),
            }
        }
        let e = error_of(&chunk(json!({}), json!("content_filter")));
        assert_eq!(e.kind, ErrorKind::ContentFiltered);
        assert_eq!(e.code.as_deref(), Some("content_filter"));
        assert_eq!(e.status, Some(200));
        assert_eq!(
            error_of(&chunk(json!({}), json!("error"))).kind,
            ErrorKind::Server
        );
        // Text and finish in one chunk (Ollama, vLLM): text first.
        match step(&chunk(json!({"content": "end"}), json!("stop"))) {
            Step::Events(e) => assert_eq!(
                e,
                [
                    StreamEvent::TextDelta("end".into()),
                    StreamEvent::Finish(FinishReason::Stop)
                ]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusals_are_text() {
        match step(&chunk(
            json!({"refusal": "I can't help with that."}),
            Value::Null,
        )) {
            Step::Events(e) => assert_eq!(
                e,
                [StreamEvent::TextDelta("I can't help with that.".into())]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn chunks_with_nothing_to_say_are_ignored() {
        for data in [
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"reasoning_content": "hmm"}), Value::Null),
            // Azure's first chunk: prompt filter results, no choices.
            json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                   "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]})
            .to_string(),
            // A second choice (n > 1) is not this caller's.
            json!({"choices": [{"index": 1, "delta": {"content": "other"}, "finish_reason": null}]})
                .to_string(),
        ] {
            assert!(matches!(step(&data), Step::Ignore), "{data}");
        }
        assert!(matches!(step(" [DONE] "), Step::Done));
    }

    #[test]
    fn error_frames_are_classified_like_error_bodies() {
        for (body, kind) in [
            (
                json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}),
                ErrorKind::Server,
            ),
            (
                json!({"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "code": "rate_limit_exceeded"}}),
                ErrorKind::RateLimited,
            ),
            (
                json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}),
                ErrorKind::QuotaExhausted,
            ),
            (
                json!({"error": {"message": "This model's maximum context length is 8192 tokens", "type": "invalid_request_error", "code": "context_length_exceeded"}}),
                ErrorKind::ContextLengthExceeded,
            ),
            // OpenRouter: a numeric code next to the choices.
            (
                json!({"id": "gen-1", "object": "chat.completion.chunk", "error": {"code": 502, "message": "Provider returned error"},
                       "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]}),
                ErrorKind::Server,
            ),
            (
                json!({"error": {"code": "server_error", "message": "Provider disconnected"}}),
                ErrorKind::Server,
            ),
            // Older vLLM: a flat error object.
            (
                json!({"object": "error", "message": "overloaded", "type": "ServiceUnavailable", "code": 503}),
                ErrorKind::Overloaded,
            ),
            (
                json!({"error": {"message": "something odd"}}),
                ErrorKind::Server,
            ),
            (json!({"error": "plain text"}), ErrorKind::Server),
        ] {
            let e = error_of(&body.to_string());
            assert_eq!(e.kind, kind, "{body}");
            assert_eq!(e.status, Some(200));
            assert!(!e.message.is_empty());
        }
        let e = error_of(
            r#"{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}"#,
        );
        assert_eq!(e.message, "Rate limit reached");
        // An `event: error` frame whose data is not JSON.
        match OpenAiEvents::new().parse(&SseFrame::named("error", "upstream went away")) {
            Step::Error(e) => {
                assert_eq!(e.kind, ErrorKind::Server);
                assert_eq!(e.message, "upstream went away");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_frames() {
        for data in [
            "",
            "not json",
            "{\"choices\": [",
            "[1, 2]",
            "\"text\"",
            "{}",
            r#"{"id": "x"}"#,
            r#"{"choices": {}}"#,
            r#"{"choices": [1]}"#,
            r#"{"choices": [{"index": 0, "delta": "text"}]}"#,
            r#"{"choices": [{"index": 0, "delta": {"content": 5}}]}"#,
            r#"{"choices": [{"index": 0, "delta": {"tool_calls": {}}}]}"#,
            r#"{"choices": [{"index": 0, "delta": {"tool_calls": ["x"]}}]}"#,
            r#"{"choices": [{"index": 0, "delta": {}, "finish_reason": 1}]}"#,
            r#"{"choices": [], "usage": {"prompt_tokens": -1}}"#,
            r#"{"choices": [], "usage": "lots"}"#,
        ] {
            assert!(matches!(step(data), Step::Malformed(_)), "{data:?}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            (-1e9f64..1e9).prop_map(|f| json!(f)),
            prop::sample::select(vec![
                "stop",
                "length",
                "tool_calls",
                "content_filter",
                "error",
                "[DONE]",
                "server_error",
                "requests"
            ])
            .prop_map(|s| json!(s)),
            "[a-z_ {}\":]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            let keys = prop::sample::select(vec![
                "choices",
                "index",
                "delta",
                "content",
                "refusal",
                "tool_calls",
                "id",
                "function",
                "name",
                "arguments",
                "finish_reason",
                "usage",
                "prompt_tokens",
                "completion_tokens",
                "prompt_tokens_details",
                "cached_tokens",
                "error",
                "message",
                "type",
                "code",
                "object",
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..6).prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Any frame, JSON-shaped or not, in any sequence: an answer, never a panic.
        #[test]
        fn never_panics(
            frames in prop::collection::vec(
                (
                    prop::option::of(prop::sample::select(vec!["error", "message", "x"])),
                    prop_oneof![
                        json_value().prop_map(|v| v.to_string()),
                        any::<String>(),
                        Just("[DONE]".to_owned()),
                    ],
                ),
                1..8,
            )
        ) {
            let mut p = OpenAiEvents::new();
            for (event, data) in frames {
                let frame = SseFrame { event: event.map(str::to_owned), data };
                if let Step::Events(e) = p.parse(&frame) {
                    prop_assert!(!e.is_empty());
                }
            }
        }

        /// Chunk-shaped frames with any values where the usual ones go, and
        /// any JSON at all: reading the common chunk directly never changes
        /// what a frame means.
        #[test]
        fn the_common_chunk_reader_never_changes_a_frames_meaning(
            value in prop_oneof![chunk_like(), json_value()],
            event in prop::option::of(prop::sample::select(vec!["error", "message"])),
        ) {
            let frame = SseFrame { event: event.map(str::to_owned), data: value.to_string() };
            let both = OpenAiEvents::new().parse(&frame);
            let by_value = OpenAiEvents::new().parse_value(&frame, frame.data.trim());
            prop_assert_eq!(format!("{both:?}"), format!("{by_value:?}"));
        }
    }

    #[test]
    fn chunk_like_frames_often_take_the_common_path() {
        // So that the property above compares the two paths, not the value
        // path with itself.
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = chunk_like();
        let (mut taken, cases) = (0, 1000);
        for _ in 0..cases {
            let value =
                proptest::strategy::ValueTree::current(&strategy.new_tree(&mut runner).unwrap());
            taken += usize::from(crate::openai::chunk::read(&value.to_string()).is_some());
        }
        assert!(
            taken * 10 >= cases,
            "only {taken} of {cases} took the common path"
        );
        assert!(taken < cases, "every frame took the common path");
    }

    /// A chunk object whose fields are each left out, null, of the usual
    /// type or of another.
    fn chunk_like() -> impl Strategy<Value = Value> {
        let text = prop_oneof![
            "[a-z \"\\\n\u{e9}]{0,8}".prop_map(Value::String),
            json_value(),
        ];
        let field = |v: BoxedStrategy<Value>| prop::option::of(v);
        let delta = (
            field(text.clone().boxed()),
            field(text.clone().boxed()),
            field(json_value().boxed()),
        )
            .prop_map(|(content, refusal, other)| {
                let mut d = serde_json::Map::new();
                content.map(|v| d.insert("content".into(), v));
                refusal.map(|v| d.insert("refusal".into(), v));
                other.map(|v| d.insert("role".into(), v));
                Value::Object(d)
            });
        let index = prop_oneof![Just(json!(0)), Just(json!(1)), json_value()];
        let finish = prop_oneof![
            prop::sample::select(vec!["stop", "length", "content_filter", "error", "odd"])
                .prop_map(|s| json!(s)),
            json_value(),
        ];
        let choice = (
            field(index.boxed()),
            field(prop_oneof![delta, json_value()].boxed()),
            field(finish.boxed()),
        )
            .prop_map(|(index, delta, finish)| {
                let mut c = serde_json::Map::new();
                index.map(|v| c.insert("index".into(), v));
                delta.map(|v| c.insert("delta".into(), v));
                finish.map(|v| c.insert("finish_reason".into(), v));
                Value::Object(c)
            });
        let usage = prop_oneof![
            (any::<u32>(), any::<u32>())
                .prop_map(|(p, c)| json!({"prompt_tokens": p, "completion_tokens": c})),
            json_value(),
        ];
        (
            field(
                prop::collection::vec(prop_oneof![choice, json_value()], 0..3)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
            field(usage.boxed()),
            field(json_value().boxed()),
            field(
                prop_oneof![
                    Just(json!("chat.completion.chunk")),
                    Just(json!("error")),
                    json_value()
                ]
                .boxed(),
            ),
        )
            .prop_map(|(choices, usage, error, object)| {
                let mut chunk = serde_json::Map::new();
                choices.map(|v| chunk.insert("choices".into(), v));
                usage.map(|v| chunk.insert("usage".into(), v));
                error.map(|v| chunk.insert("error".into(), v));
                object.map(|v| chunk.insert("object".into(), v));
                chunk.insert("id".into(), json!("chatcmpl-1"));
                Value::Object(chunk)
            })
    }
}
