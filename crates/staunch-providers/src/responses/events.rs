//! Reading a Responses stream (`stream: true`): typed server-sent events,
//! each with its `type` in the data. Text deltas and function-call items
//! and argument deltas become neutral events; `response.completed` (or
//! `response.incomplete`) carries the usage and ends the answer; a
//! `response.failed` or `error` event is a classified error. Only a
//! terminal event finishes the answer, so a stream cut before
//! `response.completed` never ends cleanly.

use super::answer::{filtered, incomplete_finish, incomplete_reason, usage_of};
use super::error::in_body;
use crate::json::snippet;
use crate::sse::{SseFrame, Step};
use serde_json::{Map, Value};
use staunch_core::{FinishReason, StreamEvent};
use std::collections::HashMap;

/// Function calls one answer may hold: more are malformed, so what the
/// parser keeps stays bounded.
const MAX_TOOL_CALLS: u32 = 4096;

/// One function-call item of the stream.
#[derive(Debug)]
struct CallItem {
    /// Its neutral call index.
    index: u32,
    /// Argument text was streamed for it.
    streamed: bool,
}

/// The state of one stream: which output items are function calls.
#[derive(Debug, Default)]
pub(crate) struct ResponsesEvents {
    /// Function-call items by output index.
    calls: HashMap<u64, CallItem>,
    /// Function-call items by item id (argument deltas name both).
    ids: HashMap<String, u64>,
}

impl ResponsesEvents {
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
        let value: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(_) if frame.event.as_deref() == Some("error") => {
                return Step::Error(in_body(None));
            }
            Err(e) => {
                return Step::Malformed(format!(
                    "a Responses stream event is not JSON ({e}): {}",
                    snippet(data.as_bytes())
                ));
            }
        };
        let Value::Object(event) = &value else {
            return Step::Malformed(format!(
                "a Responses stream event is not a JSON object: {}",
                snippet(data.as_bytes())
            ));
        };
        // A compatible server's `{"error": {...}}` frame.
        if let Some(err @ Value::Object(_)) = event.get("error") {
            return Step::Error(in_body(Some(err)));
        }
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .or(frame.event.as_deref())
            .unwrap_or_default();
        match self.event(kind, event) {
            Ok(step) => step,
            Err(why) => Step::Malformed(format!("a Responses {kind} event is bad: {why}")),
        }
    }

    fn event(&mut self, kind: &str, event: &Map<String, Value>) -> Result<Step, String> {
        let text = |name: &str| -> Result<&str, String> {
            event
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("no `{name}` text"))
        };
        Ok(match kind {
            "response.output_text.delta" | "response.refusal.delta" => {
                events(text("delta").map(|d| {
                    (!d.is_empty())
                        .then(|| StreamEvent::TextDelta(d.to_owned()))
                        .into_iter()
                        .collect()
                })?)
            }
            "response.output_item.added" => {
                let (item, at) = item(event)?;
                if item.get("type").and_then(Value::as_str) != Some("function_call") {
                    return Ok(Step::Ignore);
                }
                events(self.call_item(item, at)?)
            }
            "response.function_call_arguments.delta" => {
                let at = self.call_index(event)?;
                let delta = text("delta")?;
                let Some(call) = self.calls.get_mut(&at) else {
                    return Err(format!("no function call at output index {at}"));
                };
                call.streamed = true;
                events(piece(call.index, delta.to_owned()))
            }
            "response.output_item.done" => {
                let (item, at) = item(event)?;
                if item.get("type").and_then(Value::as_str) != Some("function_call") {
                    return Ok(Step::Ignore);
                }
                match self.calls.get_mut(&at) {
                    // A call whose arguments came whole, not as deltas.
                    Some(call) if !call.streamed => {
                        call.streamed = true;
                        events(piece(call.index, arguments(item)))
                    }
                    Some(_) => Step::Ignore,
                    // A call announced only when done.
                    None => events(self.call_item(item, at)?),
                }
            }
            "response.completed" => {
                let response = event.get("response");
                let finish = if self.calls.is_empty() {
                    FinishReason::Stop
                } else {
                    FinishReason::ToolCalls
                };
                let mut out: Vec<StreamEvent> = usage_of(response)?
                    .map(StreamEvent::Usage)
                    .into_iter()
                    .collect();
                out.push(StreamEvent::Finish(finish));
                Step::Events(out)
            }
            "response.incomplete" => {
                let response = event.get("response");
                let usage = usage_of(response)?;
                let reason = incomplete_reason(response.and_then(|r| r.get("incomplete_details")));
                if reason == Some("content_filter") {
                    return Ok(Step::Error(filtered(usage.unwrap_or_default())));
                }
                let mut out: Vec<StreamEvent> = usage.map(StreamEvent::Usage).into_iter().collect();
                out.push(StreamEvent::Finish(incomplete_finish(reason)));
                Step::Events(out)
            }
            "response.failed" => {
                let response = event.get("response");
                let error = in_body(response.and_then(|r| r.get("error")));
                Step::Error(match usage_of(response) {
                    Ok(Some(usage)) => error.with_spent(usage),
                    _ => error,
                })
            }
            "error" | "response.error" => Step::Error(in_body(Some(&Value::Object(event.clone())))),
            // Lifecycle, content parts, `.done` events repeating what the
            // deltas said, reasoning and hosted tools: nothing new.
            _ => Step::Ignore,
        })
    }

    /// Registers a function-call item at output index `at`: its first
    /// neutral piece (id, name and any arguments it already has).
    fn call_item(
        &mut self,
        item: &Map<String, Value>,
        at: u64,
    ) -> Result<Vec<StreamEvent>, String> {
        if self.calls.contains_key(&at) {
            return Err(format!("output index {at} announced twice"));
        }
        let index = u32::try_from(self.calls.len()).unwrap_or(u32::MAX);
        if index >= MAX_TOOL_CALLS {
            return Err(format!("more than {MAX_TOOL_CALLS} function calls"));
        }
        let call_id = item
            .get("call_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("a function call item has no call_id")?;
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("a function call item has no name")?;
        let arguments = arguments(item);
        if let Some(id) = item.get("id").and_then(Value::as_str) {
            self.ids.insert(id.to_owned(), at);
        }
        self.calls.insert(
            at,
            CallItem {
                index,
                streamed: !arguments.is_empty(),
            },
        );
        Ok(vec![StreamEvent::ToolCallDelta {
            index,
            id: Some(call_id.to_owned()),
            name: Some(name.to_owned()),
            arguments,
        }])
    }

    /// The output index an argument delta belongs to: its `output_index`,
    /// else its `item_id`'s.
    fn call_index(&self, event: &Map<String, Value>) -> Result<u64, String> {
        if let Some(at) = event.get("output_index").and_then(Value::as_u64) {
            return Ok(at);
        }
        event
            .get("item_id")
            .and_then(Value::as_str)
            .and_then(|id| self.ids.get(id).copied())
            .ok_or_else(|| "no output_index or known item_id".to_owned())
    }
}

/// A frame's events, or nothing to pass on.
fn events(events: Vec<StreamEvent>) -> Step {
    if events.is_empty() {
        Step::Ignore
    } else {
        Step::Events(events)
    }
}

/// A piece of arguments for call `index`, if there is any text.
fn piece(index: u32, arguments: String) -> Vec<StreamEvent> {
    if arguments.is_empty() {
        return Vec::new();
    }
    vec![StreamEvent::ToolCallDelta {
        index,
        id: None,
        name: None,
        arguments,
    }]
}

/// An item event's item and output index.
fn item(event: &Map<String, Value>) -> Result<(&Map<String, Value>, u64), String> {
    let item = event
        .get("item")
        .and_then(Value::as_object)
        .ok_or("no `item` object")?;
    let at = event
        .get("output_index")
        .and_then(Value::as_u64)
        .ok_or("no `output_index`")?;
    Ok((item, at))
}

/// A function-call item's arguments as text.
fn arguments(item: &Map<String, Value>) -> String {
    match item.get("arguments") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;
    use serde_json::json;
    use staunch_core::{ErrorKind, LlmError, StreamAccumulator, ToolCall, Usage};

    /// Decodes a whole SSE body.
    fn frames(body: &str) -> Vec<SseFrame> {
        let mut d = SseDecoder::new(1 << 16);
        d.push(body.as_bytes()).unwrap();
        assert!(!d.has_partial());
        std::iter::from_fn(|| d.next_frame()).collect()
    }

    fn sse(events: &[Value]) -> String {
        events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
            .collect()
    }

    /// The neutral events of a stream, and its error if it ended in one.
    fn run(events: &[Value]) -> (Vec<StreamEvent>, Option<LlmError>) {
        let mut p = ResponsesEvents::new();
        let mut out = Vec::new();
        for frame in frames(&sse(events)) {
            match p.parse(&frame) {
                Step::Events(e) => {
                    assert!(!e.is_empty());
                    out.extend(e);
                }
                Step::Ignore => {}
                Step::Error(e) => return (out, Some(e)),
                other => panic!("{other:?} for {frame:?}"),
            }
        }
        (out, None)
    }

    fn response(status: &str, extra: Value) -> Value {
        let mut r = json!({"id": "resp_1", "object": "response", "created_at": 1, "status": status,
                           "model": "gpt-4.1", "output": [], "usage": null});
        if let (Some(r), Value::Object(extra)) = (r.as_object_mut(), extra) {
            r.extend(extra);
        }
        r
    }

    fn usage() -> Value {
        json!({"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0},
               "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 0},
               "total_tokens": 16})
    }

    #[test]
    fn a_text_stream() {
        let msg = json!({"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []});
        let part = json!({"type": "output_text", "text": "", "annotations": []});
        let (events, error) = run(&[
            json!({"type": "response.created", "sequence_number": 0, "response": response("in_progress", json!({}))}),
            json!({"type": "response.in_progress", "sequence_number": 1, "response": response("in_progress", json!({}))}),
            json!({"type": "response.output_item.added", "sequence_number": 2, "output_index": 0, "item": msg}),
            json!({"type": "response.content_part.added", "sequence_number": 3, "item_id": "msg_1", "output_index": 0, "content_index": 0, "part": part}),
            json!({"type": "response.output_text.delta", "sequence_number": 4, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hi", "logprobs": []}),
            json!({"type": "response.output_text.delta", "sequence_number": 5, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": " there", "logprobs": []}),
            json!({"type": "response.output_text.done", "sequence_number": 6, "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": "Hi there", "logprobs": []}),
            json!({"type": "response.completed", "sequence_number": 7, "response": response("completed", json!({"usage": usage()}))}),
        ]);
        assert!(error.is_none());
        assert_eq!(
            events,
            [
                StreamEvent::TextDelta("Hi".into()),
                StreamEvent::TextDelta(" there".into()),
                StreamEvent::Usage(Usage::new(12, 4)),
                StreamEvent::Finish(FinishReason::Stop),
            ]
        );
    }

    #[test]
    fn a_tool_call_stream() {
        let fc = |status: &str, args: &str| {
            json!({"id": "fc_1", "type": "function_call", "status": status, "call_id": "call_A",
                   "name": "get_weather", "arguments": args})
        };
        let (events, error) = run(&[
            json!({"type": "response.created", "sequence_number": 0, "response": response("in_progress", json!({}))}),
            json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": fc("in_progress", "")}),
            json!({"type": "response.function_call_arguments.delta", "sequence_number": 2, "item_id": "fc_1", "output_index": 0, "delta": "{\"city\":"}),
            json!({"type": "response.function_call_arguments.delta", "sequence_number": 3, "item_id": "fc_1", "delta": "\"Paris\"}"}),
            json!({"type": "response.function_call_arguments.done", "sequence_number": 4, "item_id": "fc_1", "output_index": 0, "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}),
            json!({"type": "response.output_item.done", "sequence_number": 5, "output_index": 0, "item": fc("completed", "{\"city\":\"Paris\"}")}),
            // A second call that arrives whole.
            json!({"type": "response.output_item.done", "sequence_number": 6, "output_index": 1,
                   "item": {"id": "fc_2", "type": "function_call", "call_id": "call_B", "name": "now", "arguments": "{}"}}),
            json!({"type": "response.completed", "sequence_number": 7, "response": response("completed", json!({"usage": usage()}))}),
        ]);
        assert!(error.is_none());
        let mut acc = StreamAccumulator::new();
        events.iter().for_each(|e| acc.push(e));
        assert_eq!(
            acc.calls(),
            [
                ToolCall::new("call_A", "get_weather", "{\"city\":\"Paris\"}"),
                ToolCall::new("call_B", "now", "{}"),
            ]
        );
        assert_eq!(acc.finish(), Some(&FinishReason::ToolCalls));
    }

    #[test]
    fn terminal_failures_are_classified_errors() {
        let (_, error) = run(&[
            json!({"type": "response.output_text.delta", "sequence_number": 4, "item_id": "m", "output_index": 0, "content_index": 0, "delta": "Hi"}),
            json!({"type": "response.failed", "sequence_number": 5, "response": response("failed",
                json!({"error": {"code": "server_error", "message": "The model crashed"}}))}),
        ]);
        let error = error.expect("an error");
        assert_eq!(error.kind, ErrorKind::Server);
        assert_eq!(error.message, "The model crashed");

        let (_, error) = run(&[json!({"type": "error", "sequence_number": 1,
            "code": "rate_limit_exceeded", "message": "Rate limit reached", "param": null})]);
        assert_eq!(error.expect("an error").kind, ErrorKind::RateLimited);

        let (_, error) = run(
            &[json!({"type": "response.incomplete", "sequence_number": 9,
            "response": response("incomplete", json!({"incomplete_details": {"reason": "content_filter"}, "usage": usage()}))})],
        );
        let error = error.expect("an error");
        assert_eq!(error.kind, ErrorKind::ContentFiltered);
        assert_eq!(error.spent.input_tokens, 12);

        let (events, error) = run(
            &[json!({"type": "response.incomplete", "sequence_number": 9,
            "response": response("incomplete", json!({"incomplete_details": {"reason": "max_output_tokens"}}))})],
        );
        assert!(error.is_none());
        assert_eq!(events, [StreamEvent::Finish(FinishReason::Length)]);

        let (_, error) = run(&[
            json!({"error": {"message": "overloaded", "type": "server_error", "code": null}}),
        ]);
        assert_eq!(error.expect("an error").kind, ErrorKind::Overloaded);
    }

    #[test]
    fn bad_frames_are_malformed_never_panics() {
        let mut p = ResponsesEvents::new();
        for data in [
            "not json",
            "[1]",
            r#"{"type": "response.output_text.delta"}"#,
            r#"{"type": "response.output_text.delta", "delta": 7}"#,
            r#"{"type": "response.output_item.added", "output_index": 0}"#,
            r#"{"type": "response.output_item.added", "output_index": 0, "item": {"type": "function_call"}}"#,
            r#"{"type": "response.function_call_arguments.delta", "output_index": 3, "delta": "x"}"#,
            r#"{"type": "response.function_call_arguments.delta", "delta": "x"}"#,
            r#"{"type": "response.completed", "response": {"usage": {"input_tokens": "many"}}}"#,
        ] {
            assert!(
                matches!(p.parse(&SseFrame::data(data)), Step::Malformed(_)),
                "{data}"
            );
        }
        assert!(matches!(
            p.parse(&SseFrame::named("error", "oops")),
            Step::Error(_)
        ));
        assert!(matches!(p.parse(&SseFrame::data("[DONE]")), Step::Done));
        assert!(matches!(
            p.parse(&SseFrame::data(
                r#"{"type": "response.reasoning_summary_text.delta", "delta": "x"}"#
            )),
            Step::Ignore
        ));
        let added = r#"{"type": "response.output_item.added", "output_index": 0, "item": {"type": "function_call", "call_id": "c", "name": "n"}}"#;
        assert!(matches!(p.parse(&SseFrame::data(added)), Step::Events(_)));
        assert!(matches!(
            p.parse(&SseFrame::data(added)),
            Step::Malformed(_)
        ));
    }

    #[test]
    fn a_stream_without_its_terminal_event_has_no_finish() {
        let (events, error) = run(&[
            json!({"type": "response.created", "sequence_number": 0, "response": response("in_progress", json!({}))}),
            json!({"type": "response.output_text.delta", "sequence_number": 1, "item_id": "m", "output_index": 0, "content_index": 0, "delta": "Hi"}),
        ]);
        assert!(error.is_none());
        assert!(
            !events.iter().any(|e| matches!(e, StreamEvent::Finish(_))),
            "the stream layer ends it as truncated"
        );
    }
}
