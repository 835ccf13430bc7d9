//! A small agent over the mock: a loop of model calls and tool calls, two
//! providers behind a fallback chain, a flaky tool behind its own breaker
//! and retry. Midway the primary model goes down, and the conversation,
//! tool history included, continues on the other provider.
//!
//! ```sh
//! cargo run --example agent
//! ```

use serde_json::json;
use staunch::TargetBuilder;
use staunch::circuit_breaker::{BreakerError, CircuitBreakerConfig, CircuitBreakerLayer};
use staunch::core::{ChatRequest, ErrorClass, Message, ToolCall, ToolDefinition};
use staunch::fallback::Fallback;
use staunch::retry::{AnyRetryPolicy, RetryConfig};
use staunch::validate::ValidateConfig;
use staunch_mock::{Fault, MockServer, Scenario};
use staunch_providers::{Anthropic, AnthropicConfig, ApiKey, OpenAi, OpenAiConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// The weather API's errors.
#[derive(Debug)]
enum WeatherError {
    /// 503: try again.
    Busy,
    /// A malformed call: the model's (the caller's) mistake.
    BadArguments(String),
}

impl std::fmt::Display for WeatherError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeatherError::Busy => f.write_str("the weather API is busy"),
            WeatherError::BadArguments(why) => write!(f, "bad arguments: {why}"),
        }
    }
}

type Weather = BoxCloneSyncService<ToolCall, String, BreakerError<WeatherError>>;

/// The tool: a weather API that is busy on every third call, behind its own
/// breaker and retry.
fn weather_tool() -> Result<Weather, Box<dyn std::error::Error>> {
    let calls = Arc::new(AtomicU32::new(0));
    let api = service_fn(move |call: ToolCall| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if n % 3 == 1 {
                return Err(WeatherError::Busy);
            }
            let arguments = call
                .arguments_json()
                .map_err(|e| WeatherError::BadArguments(e.to_string()))?;
            let city = arguments["city"].as_str().unwrap_or("somewhere").to_owned();
            Ok(format!(
                "{{\"city\": \"{city}\", \"celsius\": {}}}",
                12 + n % 9
            ))
        }
    });
    let classify = |e: &WeatherError| match e {
        WeatherError::Busy => ErrorClass::Transient,
        WeatherError::BadArguments(_) => ErrorClass::Fatal,
    };
    let breaker = CircuitBreakerLayer::new(CircuitBreakerConfig::new("weather-api"))?;
    let retry = AnyRetryPolicy::new(
        RetryConfig::new()
            .base_delay(Duration::from_millis(20))
            .max_delay(Duration::from_millis(100)),
        classify,
    );
    let tool = ServiceBuilder::new()
        .layer(breaker.for_any(move |e: &WeatherError| classify(e)))
        .layer(retry.layer())
        .service(api);
    Ok(BoxCloneSyncService::new(tool))
}

fn get_weather() -> ToolDefinition {
    ToolDefinition::new(
        "get_weather",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    )
    .with_description("The current weather in a city")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mock = MockServer::start(Scenario::default()).await?;
    let openai = OpenAi::new(
        OpenAiConfig::new()
            .base_url(mock.openai_base_url())
            .no_api_key(),
    )?;
    let anthropic = Anthropic::new(
        AnthropicConfig::new()
            .base_url(mock.anthropic_base_url())
            .api_key(ApiKey::new("mock-key")),
    )?;
    let (primary, _) = TargetBuilder::new("openai", openai)
        .model("gpt-4o")
        .retry(RetryConfig::new().max_retries(1))
        .validate(ValidateConfig::new())
        .build()?;
    let (backup, _) = TargetBuilder::new("anthropic", anthropic)
        .model("claude-sonnet-4-5")
        .validate(ValidateConfig::new())
        .build()?;
    let model = Fallback::new([primary, backup])?;
    let tool = weather_tool()?;

    let mut conversation = vec![Message::developer(
        "You are a travel assistant. Use get_weather for every city asked about.",
    )];
    let questions = ["Paris", "Oslo", "Lima", "Kyoto"];
    println!("turn  model               tier     tool outcome");
    let mut turn = 0;
    for (i, city) in questions.iter().enumerate() {
        if i == 2 {
            // Midway, the primary's key is revoked.
            let mut down = mock.scenario();
            down.openai.script = vec![Fault::Unauthorized; 100];
            mock.set_scenario(down);
            mock.reset();
            println!("----  openai goes down");
        }
        conversation.push(Message::user(format!("What is the weather in {city}?")));
        // The agent loop: call the model until it answers without tools.
        loop {
            turn += 1;
            let request = ChatRequest::new("travel-agent", conversation.clone())
                .with_tools([get_weather()])
                .with_max_tokens(256);
            let answer = model.clone().oneshot(request).await?;
            let meta = &answer.meta;
            let who = answer.answered_model().to_owned();
            conversation.push(answer.message.clone());
            if answer.calls().is_empty() {
                println!(
                    "{turn:>4}  {who:<18}  {:<7}  answered: {}",
                    meta.tier.as_str(),
                    answer.text()
                );
                break;
            }
            for call in answer.calls() {
                let outcome = match tool.clone().oneshot(call.clone()).await {
                    Ok(result) => {
                        conversation.push(Message::tool_result(&call.id, result.clone()));
                        format!("{} -> {result}", call.name)
                    }
                    Err(error) => {
                        conversation.push(Message::tool_error(&call.id, error.to_string()));
                        format!("{} failed: {error}", call.name)
                    }
                };
                println!("{turn:>4}  {who:<18}  {:<7}  {outcome}", meta.tier.as_str());
            }
        }
    }
    let stats = mock.stats();
    println!(
        "\n{} messages in the conversation; requests on the wire since the outage: openai {}, anthropic {}",
        conversation.len(),
        stats.requests_to(staunch_mock::Route::OpenAi),
        stats.requests_to(staunch_mock::Route::Anthropic)
    );
    Ok(())
}
