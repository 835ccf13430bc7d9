//! Proptest strategies the dialects' encoder tests share: text that needs
//! escaping, tool arguments, finish reasons and whole answers.

use proptest::prelude::*;
use serde_json::json;
use staunch_core::{ChatResponse, Content, FinishReason, ToolCall, Usage};

/// Strings that need escaping, non-ASCII ones, plain ones and none.
pub(crate) fn json_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z ]{1,12}",
        any::<String>(),
        "[\"\\\\\n\t\u{0}\u{1f}\u{7f}é日🦀\u{2028}a]{0,10}",
    ]
}

/// A tool call's arguments: objects (nested, escaped), and now and then
/// text that is no object.
pub(crate) fn tool_arguments() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (json_text(), json_text(), any::<i64>()).prop_map(|(k, v, n)| {
            json!({k: v, "n": n, "nested": {"list": [1, "two", null]}}).to_string()
        }),
        1 => Just(String::new()),
        1 => prop::sample::select(vec!["[1]", "\"text\"", "{not json"]).prop_map(str::to_owned),
    ]
}

/// Every finish reason, and reasons of other names.
pub(crate) fn finish_reason() -> impl Strategy<Value = FinishReason> {
    prop_oneof![
        Just(FinishReason::Stop),
        Just(FinishReason::Length),
        Just(FinishReason::ToolCalls),
        Just(FinishReason::ContentFilter),
        Just(FinishReason::Other("RECITATION".to_owned())),
        json_text().prop_map(FinishReason::Other),
    ]
}

/// A whole answer with `content`: any id and model (and sometimes another
/// model that answered), a refusal or none, up to two tool calls, any
/// finish reason and usage, cached and reasoning tokens included.
pub(crate) fn chat_answer(
    content: impl Strategy<Value = Content>,
) -> impl Strategy<Value = ChatResponse> {
    let calls = proptest::collection::vec((json_text(), json_text(), tool_arguments()), 0..3);
    let counts = prop_oneof![Just(0u32), any::<u32>()];
    (
        (json_text(), proptest::option::of(json_text()), content),
        (json_text(), proptest::option::of(json_text()), calls),
        finish_reason(),
        (any::<u32>(), any::<u32>(), counts.clone(), counts),
    )
        .prop_map(
            |((model, answered, content), (id, refusal, calls), finish, tokens)| {
                let mut response = ChatResponse::new(model, "");
                response.message.content = content;
                response.id = id;
                response.refusal = refusal;
                response.finish_reason = finish;
                response.message.tool_calls = calls
                    .into_iter()
                    .map(|(id, name, arguments)| ToolCall::new(id, name, arguments))
                    .collect();
                let mut usage = Usage::new(u64::from(tokens.0), u64::from(tokens.1));
                usage.cached_input_tokens = u64::from(tokens.2);
                usage.reasoning_tokens = u64::from(tokens.3);
                response.usage = usage;
                response.meta.model = answered.map(Into::into);
                response
            },
        )
}

/// Fails the case unless the two encoders wrote the same bytes, or both
/// refused the answer.
pub(crate) fn same_output<E: std::fmt::Debug>(
    mine: Result<Vec<u8>, E>,
    oracle: Result<Vec<u8>, E>,
) -> Result<(), TestCaseError> {
    match (mine, oracle) {
        (Ok(mine), Ok(oracle)) => {
            prop_assert_eq!(
                String::from_utf8_lossy(&mine),
                String::from_utf8_lossy(&oracle)
            );
            Ok(())
        }
        (Err(_), Err(_)) => Ok(()),
        (mine, oracle) => Err(TestCaseError::fail(format!(
            "one failed, the other did not: {:?} / {:?}",
            mine.map(|b| String::from_utf8_lossy(&b).into_owned()),
            oracle.map(|b| String::from_utf8_lossy(&b).into_owned())
        ))),
    }
}
