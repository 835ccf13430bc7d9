use super::*;
use crate::fallback::{Fallback, Target};
use crate::test_support::Scripted;
use serde_json::json;
use staunch_core::{
    ChatRequest, ChatResponse, ErrorKind, Message, QualityTier, ResponseFormat, ToolCall,
    ToolDefinition, Usage,
};
use staunch_test::reply;
use tower::{Layer, ServiceExt};

/// A model that plays a script of answers (the last repeats) and counts calls.
fn model(answers: impl IntoIterator<Item = ChatResponse>) -> Scripted {
    Scripted::scripted(answers.into_iter().map(reply))
}

fn weather() -> ToolDefinition {
    ToolDefinition::new(
        "get_weather",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    )
}

fn calling(arguments: &str) -> ChatResponse {
    ChatResponse::tool_calls("m", vec![ToolCall::new("call_1", "get_weather", arguments)])
        .with_usage(Usage::new(10, 5))
}

fn ask() -> ChatRequest {
    ChatRequest::new("m", vec![Message::user("Weather in Paris?")]).with_tools([weather()])
}

#[tokio::test]
async fn arguments_that_are_not_json_are_asked_again_then_refused_with_their_tokens() {
    let model = model([calling(r#"{"city": "#)]);
    let service = ValidateLayer::new(ValidateConfig::new().retries(1)).layer(model.clone());
    let err = service.oneshot(ask()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ValidationFailed);
    assert_eq!(err.class(), staunch_core::ErrorClass::Unavailable);
    assert!(err.message.contains("not JSON"), "{}", err.message);
    assert_eq!(model.calls(), 2, "asked once more");
    assert_eq!(err.attempts, 2);
    assert_eq!(
        err.spent,
        Usage::new(20, 10),
        "both rejected answers were billed"
    );
}

#[tokio::test]
async fn a_second_ask_that_passes_is_the_answer() {
    let model = model([calling("{}"), calling(r#"{"city": "Paris"}"#)]);
    let service = ValidateLayer::new(ValidateConfig::new()).layer(model.clone());
    let answer = service.oneshot(ask()).await.unwrap();
    assert_eq!(answer.calls()[0].arguments_json().unwrap()["city"], "Paris");
    assert_eq!(answer.meta.attempts, 2);
    assert_eq!(answer.meta.failed_usage, Usage::new(10, 5));
}

#[tokio::test]
async fn schema_breaks_and_unknown_tools_are_named() {
    for (arguments, name, want) in [
        (r#"{"city": 7}"#, "get_weather", "break its schema"),
        (r#"{"city": "Paris"}"#, "get_time", "did not offer"),
        ("[1, 2]", "get_weather", "not a JSON object"),
    ] {
        let answer = ChatResponse::tool_calls("m", vec![ToolCall::new("c", name, arguments)]);
        let service =
            ValidateLayer::new(ValidateConfig::new().retries(0)).layer(model([answer]).clone());
        let err = service.oneshot(ask()).await.unwrap_err();
        assert!(err.message.contains(want), "{arguments}: {}", err.message);
    }
}

#[tokio::test]
async fn json_answers_follow_their_format() {
    let schema =
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
    let asked = |format: ResponseFormat| {
        ChatRequest::new("m", vec![Message::user("n?")]).with_response_format(format)
    };
    for (format, text, ok) in [
        (
            ResponseFormat::json_schema("n", schema.clone()),
            r#"{"n": 3}"#,
            true,
        ),
        (
            ResponseFormat::json_schema("n", schema.clone()),
            r#"{"n": "3"}"#,
            false,
        ),
        (
            ResponseFormat::json_schema("n", schema.clone()),
            "The answer is 3.",
            false,
        ),
        (ResponseFormat::JsonObject, r#" {"anything": true} "#, true),
        (ResponseFormat::JsonObject, "[1]", false),
        (ResponseFormat::Text, "prose is fine", true),
    ] {
        let service = ValidateLayer::new(ValidateConfig::new().retries(0))
            .layer(model([ChatResponse::new("m", text)]).clone());
        let result = service.oneshot(asked(format)).await;
        assert_eq!(result.is_ok(), ok, "{text}: {result:?}");
    }
}

#[tokio::test]
async fn checks_of_your_own_run_after_the_built_in_ones() {
    let config = ValidateConfig::new().retries(0).check(|_, answer| {
        if answer.text().contains("As an AI") {
            Err("boilerplate".to_owned())
        } else {
            Ok(())
        }
    });
    let service = ValidateLayer::new(config)
        .layer(model([ChatResponse::new("m", "As an AI, I cannot")]).clone());
    let err = service
        .oneshot(ChatRequest::new("m", vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert!(
        err.message.contains("boilerplate (custom)"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_failed_check_hands_the_request_to_the_next_target() {
    let drifting = model([calling("not json")]);
    let good = model([calling(r#"{"city": "Paris"}"#)]);
    let validate = ValidateLayer::new(ValidateConfig::new().retries(1));
    let chain = Fallback::new([
        Target::new("a", validate.layer(drifting.clone())),
        Target::new("b", validate.layer(good.clone())),
    ])
    .unwrap();
    let answer = chain.oneshot(ask()).await.unwrap();
    assert_eq!(answer.meta.target.as_deref(), Some("b"));
    assert_eq!(answer.meta.tier, QualityTier::Reduced);
    assert_eq!(answer.meta.attempts, 3, "two asks of a, one of b");
    assert_eq!(answer.meta.failed_usage, Usage::new(20, 10));
    assert_eq!((drifting.calls(), good.calls()), (2, 1));
}

#[test]
fn failures_are_counted_by_reason() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ((), recorded) = staunch_test::metrics::capture(|| {
        runtime.block_on(async {
            let model = model([calling("{}"), calling("nope"), calling(r#"{"city":"x"}"#)]);
            let service = ValidateLayer::new(ValidateConfig::new().retries(2)).layer(model.clone());
            service.oneshot(ask()).await.unwrap();
        })
    });
    let mut got = recorded.series(crate::metrics::VALIDATION_FAILURES);
    got.sort();
    assert_eq!(
        got,
        [
            (vec!["reason=tool_arguments_not_json".to_owned()], 1),
            (vec!["reason=tool_arguments_schema".to_owned()], 1)
        ]
    );
}
