//! Embeddings through the recommended stack, the same layers as chat:
//! instrument, degrade (its cache), budget, a fallback chain of targets
//! built with their breaker, retry and attempt timeout, over the real
//! OpenAI client and the mock on loopback, on paused time.

use staunch::TargetBuilder;
use staunch::budget::{BudgetConfig, BudgetLayer};
use staunch::core::{EmbeddingRequest, EmbeddingResponse, ErrorKind, LlmError, QualityTier};
use staunch::degrade::{DegradeConfig, DegradeLayer};
use staunch::fallback::{Fallback, InvalidChain};
use staunch::observe::InstrumentLayer;
use staunch::retry::{NoJitter, RetryConfig};
use staunch_mock::{Fault, MockServer, Route, RouteScenario, Scenario};
use staunch_providers::{ApiKey, OpenAi, OpenAiConfig};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

type Stack = BoxCloneSyncService<EmbeddingRequest, EmbeddingResponse, LlmError>;

async fn mock(script: Vec<Fault>) -> MockServer {
    let scenario = Scenario {
        embeddings: RouteScenario {
            script,
            ..RouteScenario::default()
        },
        ..Scenario::default()
    };
    MockServer::start(scenario).await.expect("mock server")
}

fn client(mock: &MockServer) -> OpenAi {
    OpenAi::new(
        OpenAiConfig::new()
            .base_url(mock.openai_base_url())
            .api_key(ApiKey::new("sk-test")),
    )
    .expect("a client")
}

/// Two targets of the same model family and dimensions (a primary and a
/// second key, say), under a cache and a per-request token cap.
fn stack(mock: &MockServer) -> Stack {
    let target = |name: &str| {
        TargetBuilder::<_, EmbeddingRequest>::for_call(name, client(mock))
            .model("text-embedding-3-small")
            .retry(
                RetryConfig::new()
                    .no_budget()
                    .max_retries(2)
                    .jitter(NoJitter),
            )
            .build()
            .expect("a target")
            .0
    };
    let chain = Fallback::new([target("primary"), target("second-key")]).expect("a chain");
    let service = ServiceBuilder::new()
        .layer(InstrumentLayer::new())
        .layer(DegradeLayer::new(
            DegradeConfig::new().cache(Duration::from_secs(600), 100),
        ))
        .layer(BudgetLayer::new(BudgetConfig::new().per_request_tokens(1_000)).expect("a budget"))
        .service(chain);
    BoxCloneSyncService::new(service)
}

fn ask() -> EmbeddingRequest {
    EmbeddingRequest::new("embed", ["alpha", "beta", "gamma"])
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_batch_is_retried_and_answered_in_order() {
    let mock = mock(vec![Fault::RateLimit { retry_after: 1.0 }]).await;
    let answer = stack(&mock).oneshot(ask()).await.unwrap();
    assert_eq!(answer.data.len(), 3);
    for (i, embedding) in answer.data.iter().enumerate() {
        assert_eq!(embedding.index, i);
        assert_eq!(embedding.vector.len(), 16);
    }
    assert_eq!(answer.meta.attempts, 2, "one 429, then the answer");
    assert_eq!(answer.meta.target.as_deref(), Some("primary"));
    assert_eq!(answer.answered_model(), "text-embedding-3-small");
    assert_eq!(answer.meta.tier, QualityTier::Full);
    assert!(answer.usage.input_tokens > 0);
    assert_eq!(mock.stats().requests_to(Route::Embeddings), 2);
}

/// An embedding attempt has its own default timeout, 10 s: a hung primary
/// is left after one, and the next target answers.
#[tokio::test(start_paused = true)]
async fn a_hung_embedding_attempt_falls_over_after_its_ten_seconds() {
    let mock = mock(vec![Fault::Hang]).await;
    let started = Instant::now();
    let answer = stack(&mock).oneshot(ask()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(answer.meta.target.as_deref(), Some("second-key"));
    assert_eq!(answer.meta.tier, QualityTier::Reduced);
    assert_eq!(answer.data.len(), 3);
}

/// Embeddings are deterministic: the cache serves the same batch while every
/// target is down, and never a different batch.
#[tokio::test(start_paused = true)]
async fn the_cache_serves_the_same_batch_when_every_target_is_down() {
    let mock = mock(vec![]).await;
    let stack = stack(&mock);
    let fresh = stack.clone().oneshot(ask()).await.unwrap();

    let mut scenario = mock.scenario();
    scenario.embeddings.script = vec![Fault::ServerError; 20];
    mock.set_scenario(scenario);
    let cached = stack.clone().oneshot(ask()).await.unwrap();
    assert_eq!(cached.meta.tier, QualityTier::Cached);
    assert_eq!(cached.data, fresh.data, "the same vectors");
    assert!(cached.usage.is_zero(), "a cached answer bills nothing");

    let other = EmbeddingRequest::new("embed", ["alpha", "beta"]);
    let err = stack.clone().oneshot(other).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Server);
}

/// A batch larger than the target takes (the mock, like OpenAI, refuses
/// more inputs than its limit with a 400) is sent in parts that fit, each
/// retried on its own, and answered in input order.
#[tokio::test(start_paused = true)]
async fn a_batch_over_the_targets_limit_is_split_and_answered_in_order() {
    let mock = mock(vec![Fault::Ok, Fault::RateLimit { retry_after: 1.0 }]).await;
    let mut scenario = mock.scenario();
    scenario.embedding_max_inputs = 2;
    mock.set_scenario(scenario);
    let texts: Vec<String> = (0..5).map(|i| format!("input {i}")).collect();
    let whole = || EmbeddingRequest::new("embed", texts.clone());

    // Unsplit, the target refuses the batch.
    let (unsplit, _) = TargetBuilder::<_, EmbeddingRequest>::for_call("primary", client(&mock))
        .build()
        .unwrap();
    let err = Fallback::new([unsplit])
        .unwrap()
        .oneshot(whole())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest, "{err}");

    let (split, _) = TargetBuilder::<_, EmbeddingRequest>::for_call("primary", client(&mock))
        .split_batches(2, 300_000)
        .retry(RetryConfig::new().no_budget().jitter(NoJitter))
        .build()
        .unwrap();
    let answer = Fallback::new([split])
        .unwrap()
        .oneshot(whole())
        .await
        .unwrap();
    let indices: Vec<usize> = answer.data.iter().map(|e| e.index).collect();
    assert_eq!(indices, [0, 1, 2, 3, 4]);
    // Each vector is the one the input gets alone.
    for (i, text) in texts.iter().enumerate() {
        let alone = client(&mock)
            .oneshot(EmbeddingRequest::new("embed", vec![text.clone()]))
            .await
            .unwrap();
        assert_eq!(answer.data[i].vector, alone.data[0].vector, "input {i}");
    }
    // Three parts, and the second part's 429 was retried on its own: the
    // refused batch above took the script's first step.
    assert_eq!(answer.meta.attempts, 4);
}

/// Vectors from two models are not comparable: a chain that would answer
/// one caller from either is refused when it is built, unless the targets
/// declare one vector space.
#[tokio::test]
async fn a_chain_mixing_vector_spaces_is_refused_at_build_time() {
    let mock = mock(vec![]).await;
    let target = |name: &str, model: &str| {
        TargetBuilder::<_, EmbeddingRequest>::for_call(name, client(&mock)).model(model)
    };
    let small = target("a", "text-embedding-3-small").build().unwrap().0;
    let large = target("b", "text-embedding-3-large").build().unwrap().0;
    let err = Fallback::new([small.clone(), large]).unwrap_err();
    assert!(
        matches!(&err, InvalidChain::MixedVectorSpaces { first, other, .. } if first == "a" && other == "b"),
        "{err}"
    );
    assert!(err.to_string().contains("text-embedding-3-large"), "{err}");

    // The same model at another vendor, declared compatible.
    let a = target("a", "text-embedding-3-small")
        .vector_space("openai-3-small")
        .build()
        .unwrap()
        .0;
    let b = target("azure", "my-deployment")
        .vector_space("openai-3-small")
        .build()
        .unwrap()
        .0;
    assert!(Fallback::new([a, b]).is_ok());
    // Chat chains have no such rule.
    let chat =
        |name: &str, model: &str| staunch::fallback::Target::new(name, client(&mock)).model(model);
    assert!(Fallback::new([chat("a", "gpt-4o"), chat("b", "claude")]).is_ok());
    let _ = small;
}

#[tokio::test(start_paused = true)]
async fn a_batch_over_the_token_cap_is_refused_before_any_call() {
    let mock = mock(vec![]).await;
    let big = EmbeddingRequest::new("embed", vec!["word ".repeat(2_000)]);
    let err = stack(&mock).oneshot(big).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BudgetExhausted);
    assert_eq!(mock.stats().requests_to(Route::Embeddings), 0);
}
