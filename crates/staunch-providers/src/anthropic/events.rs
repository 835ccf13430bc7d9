//! Reading an Anthropic Messages stream: `message_start`, the
//! `content_block_*` events, `message_delta`, `message_stop`, `ping` and
//! `error`, into neutral events. Event types Anthropic adds later are
//! ignored, as its documentation asks of clients.
#![allow(dead_code)] // wired by the streaming client

use super::answer::WireUsage;
use super::error::error;
use crate::json::snippet;
use crate::sse::{SseFrame, Step};
use http::HeaderMap;
use serde_json::Value;
use staunch_core::{ErrorKind, FinishReason, LlmError, StreamEvent, Usage};

/// The status of a streamed answer: errors in its body came with it.
const STREAM_STATUS: u16 = 200;

/// At most this many `tool_use` blocks in one answer: the state stays bounded.
const MAX_TOOL_BLOCKS: usize = 4096;

/// The state of one stream: the usage `message_start` gave, and which
/// content blocks are tool calls.
#[derive(Debug, Default)]
pub(crate) struct AnthropicEvents {
    /// Usage from `message_start` (input and cache counts), updated by
    /// `message_delta` (cumulative counts).
    usage: UsageSoFar,
    /// `(block index, call index)` of the `tool_use` blocks so far.
    tools: Vec<(u64, u32)>,
    /// The forced tool of a JSON output format, whose input is the answer's text.
    json_tool: Option<String>,
    /// The block that is the forced JSON tool's call.
    json_block: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct UsageSoFar {
    input: u64,
    output: u64,
    cache_read: Option<u64>,
    cache_creation: Option<u64>,
}

impl UsageSoFar {
    /// Takes the counts `usage` has (Anthropic sends only some in some events).
    fn update(&mut self, usage: &Value) {
        let count = |name: &str| usage.get(name).and_then(Value::as_u64);
        if let Some(n) = count("input_tokens") {
            self.input = n;
        }
        if let Some(n) = count("output_tokens") {
            self.output = n;
        }
        if let Some(n) = count("cache_read_input_tokens") {
            self.cache_read = Some(n);
        }
        if let Some(n) = count("cache_creation_input_tokens") {
            self.cache_creation = Some(n);
        }
    }

    fn usage(&self) -> Usage {
        WireUsage {
            input_tokens: self.input,
            output_tokens: self.output,
            cache_read_input_tokens: self.cache_read,
            cache_creation_input_tokens: self.cache_creation,
        }
        .usage()
    }
}

impl AnthropicEvents {
    /// The parser of a new stream.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The parser of a stream whose request asked for a JSON output format
    /// (sent as the forced tool `name`, see `request::json_tool`): that
    /// tool's input is streamed as text, as [`parse_for`](super::wire::parse_for)
    /// reads it from a whole answer.
    pub(crate) fn with_json_tool(name: impl Into<String>) -> Self {
        AnthropicEvents {
            json_tool: Some(name.into()),
            ..Self::default()
        }
    }

    /// Reads one frame. Never panics.
    pub(crate) fn parse(&mut self, frame: &SseFrame) -> Step {
        let value: Value = match serde_json::from_str(&frame.data) {
            Ok(Value::Object(map)) => Value::Object(map),
            Ok(_) => {
                return Step::Malformed(format!(
                    "an Anthropic stream event is not a JSON object: {}",
                    snippet(frame.data.as_bytes())
                ));
            }
            Err(e) => {
                return Step::Malformed(format!(
                    "an Anthropic stream event is not JSON ({e}): {}",
                    snippet(frame.data.as_bytes())
                ));
            }
        };
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .or(frame.event.as_deref())
            .unwrap_or_default();
        match kind {
            "message_start" => {
                if let Some(usage) = value.get("message").and_then(|m| m.get("usage")) {
                    self.usage.update(usage);
                }
                Step::Ignore
            }
            "content_block_start" => self.block_start(&value),
            "content_block_delta" => self.block_delta(&value),
            "message_delta" => self.message_delta(&value),
            "message_stop" => Step::Done,
            "error" => {
                // Classified by `error.type`; an unknown type mid-stream is a
                // server failure, not a bad request.
                let mut error = error(500, &HeaderMap::new(), frame.data.as_bytes());
                error.status = Some(STREAM_STATUS);
                Step::Error(error)
            }
            // ping, content_block_stop, and event types to come.
            _ => Step::Ignore,
        }
    }

    fn block_start(&mut self, value: &Value) -> Step {
        let (Some(index), Some(block)) = (
            value.get("index").and_then(Value::as_u64),
            value.get("content_block").filter(|b| b.is_object()),
        ) else {
            return Step::Malformed(
                "an Anthropic content_block_start has no index or block".to_owned(),
            );
        };
        match block.get("type").and_then(Value::as_str) {
            Some("text") => match block.get("text").and_then(Value::as_str) {
                Some(text) if !text.is_empty() => {
                    Step::Events(vec![StreamEvent::TextDelta(text.to_owned())])
                }
                _ => Step::Ignore,
            },
            Some("tool_use") => {
                let field = |name: &str| {
                    block
                        .get(name)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                let (id, name) = (field("id"), field("name"));
                // Anthropic starts with `input: {}` and streams the JSON text;
                // a server that sends the whole input up front is taken at its word.
                let arguments = match block.get("input") {
                    Some(Value::Object(map)) if !map.is_empty() => {
                        Value::Object(map.clone()).to_string()
                    }
                    _ => String::new(),
                };
                if self.json_tool.as_deref() == Some(name.as_str()) && self.json_block.is_none() {
                    self.json_block = Some(index);
                    return if arguments.is_empty() {
                        Step::Ignore
                    } else {
                        Step::Events(vec![StreamEvent::TextDelta(arguments)])
                    };
                }
                if self.tools.iter().any(|&(block, _)| block == index) {
                    return Step::Malformed(format!(
                        "Anthropic content block {index} started twice"
                    ));
                }
                if self.tools.len() >= MAX_TOOL_BLOCKS {
                    return Step::Malformed(format!(
                        "more than {MAX_TOOL_BLOCKS} tool calls in one Anthropic answer"
                    ));
                }
                let call = self.tools.len() as u32;
                self.tools.push((index, call));
                Step::Events(vec![StreamEvent::ToolCallDelta {
                    index: call,
                    id: (!id.is_empty()).then_some(id),
                    name: (!name.is_empty()).then_some(name),
                    arguments,
                }])
            }
            // thinking, redacted_thinking, server tools and their results.
            _ => Step::Ignore,
        }
    }

    fn block_delta(&mut self, value: &Value) -> Step {
        let (Some(index), Some(delta)) = (
            value.get("index").and_then(Value::as_u64),
            value.get("delta").filter(|d| d.is_object()),
        ) else {
            return Step::Malformed(
                "an Anthropic content_block_delta has no index or delta".to_owned(),
            );
        };
        let text = |name: &str| delta.get(name).and_then(Value::as_str);
        match text("type") {
            Some("text_delta") => match text("text") {
                Some("") => Step::Ignore,
                Some(t) => Step::Events(vec![StreamEvent::TextDelta(t.to_owned())]),
                None => Step::Malformed("an Anthropic text_delta has no text".to_owned()),
            },
            Some("input_json_delta") => {
                let Some(json) = text("partial_json") else {
                    return Step::Malformed(
                        "an Anthropic input_json_delta has no partial_json".to_owned(),
                    );
                };
                if self.json_block == Some(index) {
                    return if json.is_empty() {
                        Step::Ignore
                    } else {
                        Step::Events(vec![StreamEvent::TextDelta(json.to_owned())])
                    };
                }
                match self.tools.iter().find(|&&(block, _)| block == index) {
                    Some(&(_, call)) => Step::Events(vec![StreamEvent::ToolCallDelta {
                        index: call,
                        id: None,
                        name: None,
                        arguments: json.to_owned(),
                    }]),
                    // The input of a block that is not a client tool call
                    // (a server tool's): not for the caller.
                    None => Step::Ignore,
                }
            }
            // thinking_delta, signature_delta, citations_delta, and types to come.
            _ => Step::Ignore,
        }
    }

    fn message_delta(&mut self, value: &Value) -> Step {
        if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
            self.usage.update(usage);
        }
        let usage = self.usage.usage();
        let mut events = vec![StreamEvent::Usage(usage)];
        match value.get("delta").and_then(|d| d.get("stop_reason")) {
            None | Some(Value::Null) => {}
            Some(Value::String(reason)) => {
                let finish = match reason.as_str() {
                    "refusal" => {
                        return Step::Error(
                            LlmError::new(
                                ErrorKind::ContentFiltered,
                                "the model refused to answer (stop_reason: refusal)",
                            )
                            .with_code("refusal")
                            .with_status(STREAM_STATUS)
                            .with_spent(usage),
                        );
                    }
                    "model_context_window_exceeded" => FinishReason::Length,
                    // The forced JSON tool's call is the answer, not a tool call.
                    "tool_use" if self.json_block.is_some() && self.tools.is_empty() => {
                        FinishReason::Stop
                    }
                    _ => FinishReason::from(reason.clone()),
                };
                events.push(StreamEvent::Finish(finish));
            }
            Some(_) => {
                return Step::Malformed("an Anthropic stop_reason is not a string".to_owned());
            }
        }
        Step::Events(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;
    use proptest::prelude::*;
    use serde_json::json;
    use staunch_core::StreamAccumulator;

    /// An SSE body of `(event, data)` pairs, as Anthropic sends them.
    fn body(events: &[(&str, Value)]) -> String {
        events
            .iter()
            .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
            .collect()
    }

    /// Decodes `body` and parses it to its end; the events and whether
    /// `message_stop` came.
    fn run(parser: &mut AnthropicEvents, body: &str) -> (Vec<StreamEvent>, bool) {
        let mut d = SseDecoder::new(1 << 16);
        d.push(body.as_bytes()).unwrap();
        assert!(!d.has_partial());
        let mut out = Vec::new();
        while let Some(frame) = d.next_frame() {
            match parser.parse(&frame) {
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

    fn message_start(usage: Value) -> (&'static str, Value) {
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
                "type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-1-20250805",
                "stop_reason": null, "stop_sequence": null, "usage": usage}}),
        )
    }

    fn text_delta(index: u32, text: &str) -> (&'static str, Value) {
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
        )
    }

    fn json_delta(index: u32, json: &str) -> (&'static str, Value) {
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": json}}),
        )
    }

    fn stop(index: u32) -> (&'static str, Value) {
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        )
    }

    fn message_delta(reason: &str, usage: Value) -> (&'static str, Value) {
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null}, "usage": usage}),
        )
    }

    fn message_stop() -> (&'static str, Value) {
        ("message_stop", json!({"type": "message_stop"}))
    }

    fn ping() -> (&'static str, Value) {
        ("ping", json!({"type": "ping"}))
    }

    fn parse(event: &str, data: &str) -> Step {
        AnthropicEvents::new().parse(&SseFrame::named(event, data))
    }

    #[test]
    fn a_text_stream_with_cached_usage() {
        let stream = body(&[
            message_start(json!({"input_tokens": 25, "output_tokens": 1,
                "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000})),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ping(),
            text_delta(0, "Hello"),
            text_delta(0, "!"),
            stop(0),
            message_delta("end_turn", json!({"output_tokens": 15})),
            message_stop(),
        ]);
        let (events, done) = run(&mut AnthropicEvents::new(), &stream);
        assert!(done);
        assert_eq!(
            events,
            [
                StreamEvent::TextDelta("Hello".into()),
                StreamEvent::TextDelta("!".into()),
                StreamEvent::Usage(Usage::new(25 + 100 + 2000, 15).with_cached_input(2000)),
                StreamEvent::Finish(FinishReason::Stop),
            ]
        );
    }

    #[test]
    fn message_delta_counts_are_cumulative_and_win() {
        let stream = body(&[
            message_start(json!({"input_tokens": 10, "output_tokens": 1})),
            text_delta(0, "x"),
            message_delta(
                "max_tokens",
                json!({"input_tokens": 12, "output_tokens": 30, "cache_read_input_tokens": 4}),
            ),
        ]);
        let (events, done) = run(&mut AnthropicEvents::new(), &stream);
        assert!(!done);
        assert_eq!(
            events[1..],
            [
                StreamEvent::Usage(Usage::new(16, 30).with_cached_input(4)),
                StreamEvent::Finish(FinishReason::Length),
            ]
        );
    }

    #[test]
    fn a_tool_call_stream_in_fragments() {
        let stream = body(&[
            message_start(json!({"input_tokens": 472, "output_tokens": 2})),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            text_delta(0, "Okay, let's check the weather for San Francisco, CA:"),
            stop(0),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use",
                    "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}}),
            ),
            json_delta(1, ""),
            json_delta(1, "{\"location\":"),
            json_delta(1, " \"San Fra"),
            json_delta(1, "ncisco, CA\""),
            json_delta(1, ", \"unit\": \"fah"),
            json_delta(1, "renheit\"}"),
            stop(1),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use",
                    "id": "toolu_02", "name": "get_time", "input": {}}}),
            ),
            json_delta(2, "{}"),
            stop(2),
            message_delta("tool_use", json!({"output_tokens": 89})),
            message_stop(),
        ]);
        let (events, done) = run(&mut AnthropicEvents::new(), &stream);
        assert!(done);
        assert_eq!(
            events[1],
            StreamEvent::ToolCallDelta {
                index: 0,
                id: Some("toolu_01T1x1fJ34qAmk2tNTrN7Up6".into()),
                name: Some("get_weather".into()),
                arguments: String::new(),
            }
        );
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Finish(FinishReason::ToolCalls))
        );
        let mut acc = StreamAccumulator::new();
        events.iter().for_each(|e| acc.push(e));
        assert_eq!(
            acc.text(),
            "Okay, let's check the weather for San Francisco, CA:"
        );
        let calls = acc.calls();
        assert_eq!(
            calls.len(),
            2,
            "numbered by tool_use block, not content block"
        );
        assert_eq!(calls[0].name, "get_weather");
        let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
        assert_eq!(
            args,
            json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
        );
        assert_eq!(
            (calls[1].id.as_str(), calls[1].arguments.as_str()),
            ("toolu_02", "{}")
        );
        assert_eq!(acc.usage(), Some(Usage::new(472, 89)));
    }

    #[test]
    fn thinking_and_server_tools_are_ignored() {
        let stream = body(&[
            message_start(json!({"input_tokens": 5, "output_tokens": 1})),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me think"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}}),
            ),
            stop(0),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}}),
            ),
            json_delta(1, "{\"query\": \"weather\"}"),
            stop(1),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": "Sunny"}}),
            ),
            (
                "future_event",
                json!({"type": "future_event", "anything": [1, 2]}),
            ),
            stop(2),
            message_delta("end_turn", json!({"output_tokens": 9})),
            message_stop(),
        ]);
        let (events, done) = run(&mut AnthropicEvents::new(), &stream);
        assert!(done);
        assert_eq!(
            events,
            [
                StreamEvent::TextDelta("Sunny".into()),
                StreamEvent::Usage(Usage::new(5, 9)),
                StreamEvent::Finish(FinishReason::Stop),
            ]
        );
    }

    #[test]
    fn the_json_output_tool_streams_as_text() {
        let stream = body(&[
            message_start(json!({"input_tokens": 5, "output_tokens": 1})),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "json_answer", "input": {}}}),
            ),
            json_delta(0, "{\"a\":"),
            json_delta(0, " 1}"),
            message_delta("tool_use", json!({"output_tokens": 9})),
            message_stop(),
        ]);
        let (events, _) = run(&mut AnthropicEvents::with_json_tool("json_answer"), &stream);
        let mut acc = StreamAccumulator::new();
        events.iter().for_each(|e| acc.push(e));
        assert_eq!(acc.text(), "{\"a\": 1}");
        assert!(!acc.has_tool_calls());
        assert_eq!(acc.finish(), Some(&FinishReason::Stop));
    }

    #[test]
    fn stop_reasons() {
        for (reason, finish) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("model_context_window_exceeded", FinishReason::Length),
            ("tool_use", FinishReason::ToolCalls),
            ("pause_turn", FinishReason::Other("pause_turn".into())),
        ] {
            let (_, data) = message_delta(reason, json!({"output_tokens": 3}));
            match parse("message_delta", &data.to_string()) {
                Step::Events(e) => assert_eq!(
                    e,
                    [
                        StreamEvent::Usage(Usage::new(0, 3)),
                        StreamEvent::Finish(finish)
                    ]
                ),
                other => panic!("{other:?}"),
            }
        }
        let mut p = AnthropicEvents::new();
        let (_, start) = message_start(json!({"input_tokens": 7, "output_tokens": 1}));
        assert!(matches!(
            p.parse(&SseFrame::named("message_start", start.to_string())),
            Step::Ignore
        ));
        let (_, data) = message_delta("refusal", json!({"output_tokens": 4}));
        match p.parse(&SseFrame::named("message_delta", data.to_string())) {
            Step::Error(e) => {
                assert_eq!(e.kind, ErrorKind::ContentFiltered);
                assert_eq!(e.spent, Usage::new(7, 4));
                assert_eq!(e.code.as_deref(), Some("refusal"));
            }
            other => panic!("{other:?}"),
        }
        // A usage-only delta.
        match parse(
            "message_delta",
            r#"{"type": "message_delta", "delta": {}, "usage": {"output_tokens": 2}}"#,
        ) {
            Step::Events(e) => assert_eq!(e, [StreamEvent::Usage(Usage::new(0, 2))]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ping_stop_and_unknown_events() {
        assert!(matches!(parse("ping", r#"{"type": "ping"}"#), Step::Ignore));
        assert!(matches!(
            parse(
                "content_block_stop",
                r#"{"type": "content_block_stop", "index": 0}"#
            ),
            Step::Ignore
        ));
        assert!(matches!(
            parse("message_stop", r#"{"type": "message_stop"}"#),
            Step::Done
        ));
        assert!(matches!(
            parse("brand_new", r#"{"type": "brand_new"}"#),
            Step::Ignore
        ));
        // The event name serves when the data has no type.
        assert!(matches!(parse("message_stop", "{}"), Step::Done));
    }

    #[test]
    fn error_events_are_classified_like_error_bodies() {
        for (kind_field, kind) in [
            ("overloaded_error", ErrorKind::Overloaded),
            ("api_error", ErrorKind::Server),
            ("rate_limit_error", ErrorKind::RateLimited),
            ("timeout_error", ErrorKind::Timeout),
            ("billing_error", ErrorKind::QuotaExhausted),
            ("invalid_request_error", ErrorKind::InvalidRequest),
            ("some_future_error", ErrorKind::Server),
        ] {
            let data =
                json!({"type": "error", "error": {"type": kind_field, "message": "Overloaded"}});
            match parse("error", &data.to_string()) {
                Step::Error(e) => {
                    assert_eq!(e.kind, kind, "{kind_field}");
                    assert_eq!(e.status, Some(200));
                    assert_eq!(e.message, "Overloaded");
                }
                other => panic!("{other:?}"),
            }
        }
        let data = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"});
        let Step::Error(e) = parse("error", &data.to_string()) else {
            panic!()
        };
        assert_eq!(
            e.request_id.as_deref(),
            Some("req_011CSHoEeqs5C35K2UUqR7Fy")
        );
    }

    #[test]
    fn malformed_events() {
        for (event, data) in [
            ("message_start", ""),
            ("ping", "not json"),
            ("content_block_delta", "{\"type\": \"content_block_delta\""),
            ("message_delta", "[]"),
            ("message_delta", "null"),
            (
                "content_block_start",
                r#"{"type": "content_block_start", "index": 0}"#,
            ),
            (
                "content_block_start",
                r#"{"type": "content_block_start", "index": "0", "content_block": {"type": "text"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type": "content_block_delta", "index": 0, "delta": "x"}"#,
            ),
            (
                "content_block_delta",
                r#"{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": 1}}"#,
            ),
            (
                "message_delta",
                r#"{"type": "message_delta", "delta": {"stop_reason": 1}}"#,
            ),
        ] {
            assert!(
                matches!(parse(event, data), Step::Malformed(_)),
                "{event} {data}"
            );
        }
        let mut p = AnthropicEvents::new();
        let start = r#"{"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}"#;
        assert!(matches!(
            p.parse(&SseFrame::named("content_block_start", start)),
            Step::Events(_)
        ));
        assert!(matches!(
            p.parse(&SseFrame::named("content_block_start", start)),
            Step::Malformed(_)
        ));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (0u64..8).prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            prop::sample::select(vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
                "ping",
                "error",
                "text",
                "tool_use",
                "text_delta",
                "input_json_delta",
                "thinking_delta",
                "end_turn",
                "refusal",
                "tool_use",
                "overloaded_error",
                "json_answer",
            ])
            .prop_map(|s| json!(s)),
            "[a-z_ {}\":]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            let keys = prop::sample::select(vec![
                "type",
                "index",
                "message",
                "usage",
                "content_block",
                "delta",
                "text",
                "id",
                "name",
                "input",
                "partial_json",
                "stop_reason",
                "input_tokens",
                "output_tokens",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
                "error",
                "request_id",
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

        /// Any frames, JSON-shaped or not, in any sequence: an answer, never a panic.
        #[test]
        fn never_panics(
            json_tool in any::<bool>(),
            frames in prop::collection::vec(
                (
                    prop::option::of(prop::sample::select(vec!["error", "ping", "message_delta", "x"])),
                    prop_oneof![json_value().prop_map(|v| v.to_string()), any::<String>()],
                ),
                1..10,
            )
        ) {
            let mut p = if json_tool {
                AnthropicEvents::with_json_tool("json_answer")
            } else {
                AnthropicEvents::new()
            };
            for (event, data) in frames {
                let frame = SseFrame { event: event.map(str::to_owned), data };
                if let Step::Events(e) = p.parse(&frame) {
                    prop_assert!(!e.is_empty());
                }
            }
        }
    }
}
