//! Reading a Gemini stream (`:streamGenerateContent?alt=sse`): every frame
//! is `data: {GenerateContentResponse}`, with no event names and no
//! terminator line. Text parts become text deltas, a `functionCall` part
//! (always whole in one chunk) one complete tool-call event, the usage of
//! each chunk a usage event, and a `finishReason` the finish; the stream is
//! complete once a finish was seen and the body ends. An `{"error": …}`
//! frame is classified like an error body.

use super::answer::{self, Chunk};
use super::error::{error, status_of};
use crate::json::snippet;
use crate::sse::{SseFrame, Step};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use staunch_core::{StreamEvent, Usage};

/// The status of a streamed answer: errors in its body came with it.
const STREAM_STATUS: u16 = 200;

/// At most this many tool calls in one answer: the state stays bounded.
const MAX_TOOL_CALLS: u32 = 4096;

/// The state of one stream: the calls so far (for their indices and ids),
/// the answer's id, and the last usage passed on.
#[derive(Debug, Default)]
pub(crate) struct GeminiEvents {
    calls: u32,
    response_id: Option<String>,
    usage: Option<Usage>,
}

impl GeminiEvents {
    /// The parser of a new stream.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Reads one frame. Never panics.
    pub(crate) fn parse(&mut self, frame: &SseFrame) -> Step {
        let data = frame.data.trim();
        if data.is_empty() {
            return Step::Ignore;
        }
        let value: Value = match serde_json::from_str(data) {
            Ok(value @ Value::Object(_)) => value,
            Ok(_) => {
                return Step::Malformed(format!(
                    "a Gemini stream chunk is not a JSON object: {}",
                    snippet(data.as_bytes())
                ));
            }
            Err(e) => {
                return Step::Malformed(format!(
                    "a Gemini stream chunk is not JSON ({e}): {}",
                    snippet(data.as_bytes())
                ));
            }
        };
        if let Some(err) = value.get("error").filter(|e| !e.is_null()) {
            let mut error = error(status_of(Some(err)), &HeaderMap::new(), data.as_bytes());
            error.status = Some(STREAM_STATUS);
            if let Some(usage) = self.usage {
                error.spent = usage;
            }
            return Step::Error(error);
        }
        let chunk = match Chunk::deserialize(&value) {
            Ok(chunk) => chunk,
            Err(e) => return Step::Malformed(format!("a Gemini stream chunk is bad: {e}")),
        };
        if self.response_id.is_none() {
            self.response_id.clone_from(&chunk.response_id);
        }
        let mut events = Vec::new();
        let usage = chunk.usage();
        let Some(candidate) = chunk.first() else {
            if let Some(reason) = chunk
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_deref())
            {
                let spent = usage.or(self.usage).unwrap_or_default();
                return Step::Error(answer::refusal("prompt", reason, STREAM_STATUS, spent));
            }
            // A usage-only chunk.
            self.push_usage(usage, &mut events);
            return done(events);
        };
        let parts = candidate
            .content
            .as_ref()
            .and_then(|c| c.parts.as_deref())
            .unwrap_or_default();
        for part in parts {
            if let Some((name, arguments, id)) = answer::function_call(part) {
                if self.calls >= MAX_TOOL_CALLS {
                    return Step::Malformed(format!(
                        "more than {MAX_TOOL_CALLS} tool calls in one Gemini answer"
                    ));
                }
                let index = self.calls;
                self.calls += 1;
                let answer_id = self.response_id.as_deref().unwrap_or_default();
                events.push(StreamEvent::ToolCallDelta {
                    index,
                    id: Some(answer::call_id(id, answer_id, index)),
                    name: Some(name.to_owned()),
                    arguments,
                });
            } else if let Some(text) = answer::part_text(part).filter(|t| !t.is_empty()) {
                events.push(StreamEvent::TextDelta(text.to_owned()));
            }
            // Thoughts, signatures and other parts: nothing for the caller.
        }
        if let Some(reason) = candidate.finish_reason.as_deref() {
            if answer::is_refusal(reason) {
                let spent = usage.or(self.usage).unwrap_or_default();
                return Step::Error(answer::refusal("answer", reason, STREAM_STATUS, spent));
            }
            self.push_usage(usage, &mut events);
            events.push(StreamEvent::Finish(answer::finish_reason(
                reason,
                self.calls > 0,
            )));
        } else {
            self.push_usage(usage, &mut events);
        }
        done(events)
    }

    /// A usage event, when the chunk's usage says something new.
    fn push_usage(&mut self, usage: Option<Usage>, events: &mut Vec<StreamEvent>) {
        if let Some(usage) = usage
            && self.usage != Some(usage)
        {
            self.usage = Some(usage);
            events.push(StreamEvent::Usage(usage));
        }
    }
}

fn done(events: Vec<StreamEvent>) -> Step {
    if events.is_empty() {
        Step::Ignore
    } else {
        Step::Events(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;
    use proptest::prelude::*;
    use serde_json::json;
    use staunch_core::{ErrorKind, FinishReason, StreamAccumulator};

    fn sse(chunks: &[Value]) -> String {
        chunks
            .iter()
            .map(|c| format!("data: {c}\r\n\r\n"))
            .collect()
    }

    /// Decodes `body` and parses every frame; the events, or the first
    /// error.
    fn run(body: &str) -> Result<Vec<StreamEvent>, staunch_core::LlmError> {
        let mut d = SseDecoder::new(1 << 16);
        d.push(body.as_bytes()).unwrap();
        assert!(!d.has_partial());
        let mut p = GeminiEvents::new();
        let mut out = Vec::new();
        while let Some(frame) = d.next_frame() {
            match p.parse(&frame) {
                Step::Events(e) => {
                    assert!(!e.is_empty());
                    out.extend(e);
                }
                Step::Ignore => {}
                Step::Error(e) => return Err(e),
                other => panic!("{other:?} for {frame:?}"),
            }
        }
        Ok(out)
    }

    fn text_chunk(text: &str) -> Value {
        json!({"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}],
               "usageMetadata": {"promptTokenCount": 11, "totalTokenCount": 11},
               "modelVersion": "gemini-2.0-flash", "responseId": "resp1"})
    }

    #[test]
    fn a_text_stream() {
        let events = run(&sse(&[
            text_chunk("The capital"),
            text_chunk(" is"),
            json!({"candidates": [{"content": {"parts": [{"text": " Paris."}], "role": "model"},
                                   "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": 6, "totalTokenCount": 17},
                   "modelVersion": "gemini-2.0-flash", "responseId": "resp1"}),
        ]))
        .unwrap();
        assert_eq!(
            events,
            [
                StreamEvent::TextDelta("The capital".into()),
                StreamEvent::Usage(Usage::new(11, 0)),
                StreamEvent::TextDelta(" is".into()),
                StreamEvent::TextDelta(" Paris.".into()),
                StreamEvent::Usage(Usage::new(11, 6)),
                StreamEvent::Finish(FinishReason::Stop),
            ]
        );
    }

    #[test]
    fn whole_function_calls_and_a_final_signature_chunk() {
        let events = run(&sse(&[
            json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "Cq0B"},
                {"functionCall": {"name": "get_time", "args": {}}}]}}],
                "responseId": "r9"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "", "thoughtSignature": "AY89"}]},
                                   "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 12, "thoughtsTokenCount": 8},
                   "responseId": "r9"}),
        ]))
        .unwrap();
        let mut acc = StreamAccumulator::new();
        events.iter().for_each(|e| acc.push(e));
        assert_eq!(acc.finish(), Some(&FinishReason::ToolCalls));
        let calls = acc.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (
                calls[0].id.as_str(),
                calls[0].name.as_str(),
                calls[0].arguments.as_str()
            ),
            ("call_r9_0", "get_weather", r#"{"city":"Paris"}"#)
        );
        assert_eq!(calls[1].id, "call_r9_1");
        assert_eq!(acc.usage(), Some(Usage::new(30, 20).with_reasoning(8)));
        assert_eq!(acc.text(), "");
    }

    #[test]
    fn a_safety_stop_and_a_blocked_prompt_are_refusals() {
        let e = run(&sse(&[
            text_chunk("Sure, here"),
            json!({"candidates": [{"content": {"parts": []}, "finishReason": "SAFETY"}],
                   "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": 3}}),
        ]))
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ContentFiltered);
        assert_eq!(e.code.as_deref(), Some("SAFETY"));
        assert_eq!(e.spent, Usage::new(11, 3));
        let e = run(&sse(&[
            json!({"promptFeedback": {"blockReason": "SAFETY"}}),
        ]))
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ContentFiltered);
    }

    #[test]
    fn an_error_frame_is_classified() {
        for (err, kind) in [
            (
                json!({"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}),
                ErrorKind::Overloaded,
            ),
            (
                json!({"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}),
                ErrorKind::RateLimited,
            ),
            (
                json!({"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}),
                ErrorKind::Server,
            ),
            (json!({"message": "?"}), ErrorKind::Server),
        ] {
            let e = run(&sse(&[text_chunk("a"), json!({"error": err})])).unwrap_err();
            assert_eq!(e.kind, kind, "{err}");
            assert_eq!(e.status, Some(200));
            assert_eq!(e.spent, Usage::new(11, 0));
        }
    }

    #[test]
    fn a_stream_without_a_finish_has_no_finish_event() {
        // The stream reader ends such a stream with an error (it completes
        // only after a finish): here, no `Finish` and no `Done`.
        let events = run(&sse(&[text_chunk("a"), text_chunk("b")])).unwrap();
        assert!(!events.iter().any(|e| matches!(e, StreamEvent::Finish(_))));
    }

    #[test]
    fn malformed_frames() {
        for data in [
            "not json",
            "[]",
            "7",
            r#"{"candidates": "x"}"#,
            r#"{"candidates": [{"content": {"parts": 3}}]}"#,
        ] {
            assert!(
                matches!(
                    GeminiEvents::new().parse(&SseFrame::data(data)),
                    Step::Malformed(_)
                ),
                "{data}"
            );
        }
        assert!(matches!(
            GeminiEvents::new().parse(&SseFrame::data("  ")),
            Step::Ignore
        ));
        assert!(matches!(
            GeminiEvents::new().parse(&SseFrame::data("{}")),
            Step::Ignore
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any frames: an answer, never a panic.
        #[test]
        fn never_panics(frames in prop::collection::vec(
            prop_oneof![
                any::<String>(),
                "[a-zA-Z{}\\[\\]\":, 0-9]{0,40}",
                prop::sample::select(vec![
                    r#"{"candidates": [{"content": {"parts": [{"functionCall": {"name": 1, "args": [1]}}]}, "finishReason": 7}]}"#.to_owned(),
                    r#"{"candidates": [{"content": {"parts": [{"text": 5}, null, 3]}, "finishReason": "STOP"}]}"#.to_owned(),
                    r#"{"error": 5}"#.to_owned(),
                    r#"{"error": {"code": 99999999999999}}"#.to_owned(),
                    r#"{"usageMetadata": {"promptTokenCount": 18446744073709551615, "toolUsePromptTokenCount": 18446744073709551615}}"#.to_owned(),
                ]),
            ],
            1..8,
        )) {
            let mut p = GeminiEvents::new();
            for data in frames {
                if let Step::Events(e) = p.parse(&SseFrame::data(data)) {
                    prop_assert!(!e.is_empty());
                }
            }
        }
    }
}
