//! An agent's conversation, tool history included, moves from OpenAI to
//! Anthropic when the primary goes down mid-way: over loopback, through the
//! real clients and the mock, checking what reached the second provider's
//! wire.

mod support;

use serde_json::json;
use staunch::TargetBuilder;
use staunch::core::{ChatRequest, ErrorKind, FinishReason, Message, ToolDefinition};
use staunch::fallback::Fallback;
use staunch::retry::RetryConfig;
use staunch::validate::ValidateConfig;
use staunch_mock::{Fault, Route};
use support::wire::{anthropic, openai, server};
use tower::ServiceExt;

fn weather() -> ToolDefinition {
    ToolDefinition::new(
        "get_weather",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    )
    .with_description("Current weather in a city")
}

#[tokio::test]
async fn a_conversation_with_tool_history_continues_on_the_other_provider() {
    let mock = server(vec![], vec![]).await;
    let (primary, _) = TargetBuilder::new("openai", openai(&mock))
        .model("gpt-4o")
        .retry(RetryConfig::new().max_retries(0))
        .validate(ValidateConfig::new())
        .build()
        .unwrap();
    let (backup, _) = TargetBuilder::new("anthropic", anthropic(&mock))
        .model("claude-sonnet-4-5")
        .validate(ValidateConfig::new())
        .build()
        .unwrap();
    let agent = Fallback::new([primary, backup]).unwrap();

    // Turn 1, on OpenAI: the model calls the tool.
    let mut conversation = vec![
        Message::developer("You answer questions about the weather."),
        Message::user("What is the weather in Paris?"),
    ];
    let ask = |messages: &[Message]| {
        ChatRequest::new("weather-agent", messages.to_vec())
            .with_tools([weather()])
            .with_max_tokens(200)
    };
    let first = agent.clone().oneshot(ask(&conversation)).await.unwrap();
    assert_eq!(first.meta.target.as_deref(), Some("openai"));
    assert_eq!(first.finish_reason, FinishReason::ToolCalls);
    let call = first.calls()[0].clone();
    assert_eq!(call.name, "get_weather");
    assert!(call.arguments_json().unwrap()["city"].is_string());

    // The agent runs its tool and answers the call.
    conversation.push(first.message.clone());
    conversation.push(Message::tool_result(&call.id, "18 C and sunny"));

    // Turn 2: OpenAI is down; the conversation continues on Anthropic.
    let mut down = mock.scenario();
    down.openai.script = vec![Fault::Unauthorized];
    mock.set_scenario(down);
    mock.reset(); // the script counts requests from here
    let second = agent.clone().oneshot(ask(&conversation)).await.unwrap();
    assert_eq!(second.meta.target.as_deref(), Some("anthropic"));
    assert_eq!(second.meta.fallback_depth, 1);
    assert!(
        second.text().contains("18 C and sunny"),
        "{}",
        second.text()
    );

    // What reached Anthropic's wire: the same call, by its id, as a
    // tool_use block, and its result as a tool_result block.
    let stats = mock.stats();
    let sent = stats
        .recent
        .iter()
        .rev()
        .find(|r| r.route == Route::Anthropic)
        .expect("a request reached Anthropic");
    let body = &sent.body;
    assert_eq!(body["system"], "You answer questions about the weather.");
    assert_eq!(body["messages"][0]["role"], "user");
    let assistant = &body["messages"][1];
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(assistant["content"][0]["type"], "tool_use");
    assert_eq!(assistant["content"][0]["id"], call.id.as_str());
    assert_eq!(assistant["content"][0]["name"], "get_weather");
    assert_eq!(
        assistant["content"][0]["input"],
        call.arguments_json().unwrap()
    );
    let result = &body["messages"][2];
    assert_eq!(result["role"], "user");
    assert_eq!(result["content"][0]["type"], "tool_result");
    assert_eq!(result["content"][0]["tool_use_id"], call.id.as_str());
    assert_eq!(result["content"][0]["content"], "18 C and sunny");
    assert_eq!(body["tools"][0]["name"], "get_weather");
}

#[tokio::test]
async fn broken_tool_arguments_are_caught_and_another_target_answers() {
    let mock = server(vec![Fault::BadToolArguments], vec![]).await;
    let (primary, _) = TargetBuilder::new("openai", openai(&mock))
        .validate(ValidateConfig::new().retries(0))
        .build()
        .unwrap();
    let (backup, _) = TargetBuilder::new("anthropic", anthropic(&mock))
        .model("claude-sonnet-4-5")
        .validate(ValidateConfig::new())
        .build()
        .unwrap();
    let request = ChatRequest::new("gpt-4o", vec![Message::user("Weather in Oslo?")])
        .with_tools([weather()])
        .with_max_tokens(100);
    let answer = Fallback::new([primary, backup])
        .unwrap()
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(answer.meta.target.as_deref(), Some("anthropic"));
    assert!(answer.calls()[0].arguments_json().unwrap()["city"].is_string());
    assert_eq!(mock.stats().served("bad_tool_arguments"), 1);

    // Alone, the primary's broken answer is a clear ValidationFailed.
    let (alone, _) = TargetBuilder::new("openai", openai(&mock))
        .validate(ValidateConfig::new().retries(0))
        .build()
        .unwrap();
    let mut broken = mock.scenario();
    broken.openai.script = vec![Fault::BadToolArguments];
    mock.set_scenario(broken);
    mock.reset();
    let request = ChatRequest::new("gpt-4o", vec![Message::user("Weather?")])
        .with_tools([weather()])
        .with_max_tokens(100);
    let err = Fallback::new([alone])
        .unwrap()
        .oneshot(request)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ValidationFailed);
    assert!(err.message.contains("not JSON"), "{}", err.message);
}
