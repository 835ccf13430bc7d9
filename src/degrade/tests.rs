use super::*;
use crate::test_support::{Scripted, Step, fail, request};
use staunch_core::{ChatRequest, ChatResponse, ErrorKind, Message, QualityTier, Usage};
use std::time::Duration;
use tower::ServiceExt;

fn with_usage(kind: ErrorKind, spent: Usage) -> Step {
    Step::Fail {
        kind,
        status: Some(503),
        retry_after: None,
        should_retry: None,
        spent,
    }
}

/// The cache on, as the tests of cached answers need it (it is off by default).
fn cached() -> DegradeConfig {
    DegradeConfig::new().cache(Duration::from_secs(600), 10_000)
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_answered_from_the_cache() {
    let fake = Scripted::scripted([
        Step::Answer,
        with_usage(ErrorKind::Overloaded, Usage::new(7, 0)),
    ]);
    let service = Degrade::new(fake.clone(), cached());

    let first = service.clone().oneshot(request()).await.unwrap();
    assert_eq!(first.meta.tier, QualityTier::Full);
    assert_eq!(service.cached_answers(), 1);

    tokio::time::advance(Duration::from_secs(42)).await;
    let second = service.clone().oneshot(request()).await.unwrap();
    assert_eq!(fake.calls(), 2, "the stack was asked first");
    assert_eq!(second.meta.tier, QualityTier::Cached);
    assert_eq!(second.text(), first.text());
    assert_eq!(
        second.usage,
        Usage::default(),
        "a cached answer bills nothing"
    );
    assert_eq!(second.meta.failed_usage, Usage::new(7, 0));
    assert_eq!(second.meta.attempts, 1);
    let warning = second.meta.warning.clone().unwrap();
    assert!(
        warning.contains("42s ago") && warning.contains("overloaded"),
        "{warning}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_different_request_is_never_served_anothers_answer() {
    let fake = Scripted::scripted([Step::Answer, fail(ErrorKind::Server)]);
    let service = Degrade::new(fake, cached());
    service.clone().oneshot(request()).await.unwrap();
    // Same prefix, one more character at the end of the last message.
    let other = ChatRequest::new("gpt-4o", vec![Message::user("hello!")]);
    let err = service.oneshot(other).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Server);
}

#[tokio::test(start_paused = true)]
async fn then_the_static_answer_then_the_error() {
    let fake = Scripted::scripted([fail(ErrorKind::RateLimited)]);
    let with_static = Degrade::new(
        fake.clone(),
        DegradeConfig::new().static_answer("busy, try later"),
    );
    let answer = with_static.oneshot(request()).await.unwrap();
    assert_eq!(answer.meta.tier, QualityTier::Static);
    assert_eq!(answer.text(), "busy, try later");
    assert_eq!(answer.model, "gpt-4o");
    assert_eq!(answer.meta.provider.as_deref(), Some("staunch"));
    assert!(
        answer
            .meta
            .warning
            .as_deref()
            .unwrap()
            .contains("rate_limited")
    );

    let without = Degrade::new(fake.clone(), cached());
    let err = without.oneshot(request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited);
}

#[tokio::test(start_paused = true)]
async fn a_static_answer_can_be_built_from_the_request() {
    let fake = Scripted::scripted([fail(ErrorKind::Timeout)]);
    let service = Degrade::new(
        fake,
        DegradeConfig::new().static_answer_with(|r: &ChatRequest| {
            ChatResponse::new(
                r.model.clone(),
                format!("{} messages received", r.messages.len()),
            )
        }),
    );
    let answer = service.oneshot(request()).await.unwrap();
    assert_eq!(answer.text(), "1 messages received");
}

#[tokio::test(start_paused = true)]
async fn fatal_errors_are_never_degraded() {
    let fake = Scripted::scripted([
        Step::Answer,
        fail(ErrorKind::InvalidRequest),
        fail(ErrorKind::BudgetExhausted),
    ]);
    let service = Degrade::new(fake, DegradeConfig::new().static_answer("x"));
    service.clone().oneshot(request()).await.unwrap();
    for kind in [ErrorKind::InvalidRequest, ErrorKind::BudgetExhausted] {
        let err = service.clone().oneshot(request()).await.unwrap_err();
        assert_eq!(err.kind, kind);
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_can_opt_out() {
    let fake = Scripted::scripted([Step::Answer, fail(ErrorKind::Overloaded)]);
    let service = Degrade::new(fake, DegradeConfig::new().static_answer("x"));
    let marked = || request().with_extension(NoDegrade);
    service.clone().oneshot(marked()).await.unwrap();
    assert_eq!(
        service.cached_answers(),
        0,
        "an opted-out answer is not cached"
    );
    let err = service.clone().oneshot(marked()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Overloaded);
}

#[tokio::test(start_paused = true)]
async fn cached_answers_expire_after_the_ttl() {
    let fake = Scripted::scripted([Step::Answer, fail(ErrorKind::Overloaded)]);
    let service = Degrade::new(
        fake,
        DegradeConfig::new().cache_ttl(Duration::from_secs(60)),
    );
    service.clone().oneshot(request()).await.unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(
        service.clone().oneshot(request()).await.unwrap().meta.tier,
        QualityTier::Cached
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(service.clone().oneshot(request()).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn only_model_answers_are_cached() {
    let mut canned = ChatResponse::new("gpt-4o", "canned");
    canned.meta.tier = QualityTier::Static;
    let inner = tower::service_fn(move |_: ChatRequest| {
        let canned = canned.clone();
        async move { Ok::<_, staunch_core::LlmError>(canned) }
    });
    let service = Degrade::new(inner, cached());
    service.clone().oneshot(request()).await.unwrap();
    assert_eq!(service.cached_answers(), 0);

    let mut backup = ChatResponse::new("gpt-4o-mini", "from the backup");
    backup.meta.tier = QualityTier::Reduced;
    let inner = tower::service_fn(move |_: ChatRequest| {
        let backup = backup.clone();
        async move { Ok::<_, staunch_core::LlmError>(backup) }
    });
    let service = Degrade::new(inner, cached());
    service.clone().oneshot(request()).await.unwrap();
    assert_eq!(
        service.cached_answers(),
        1,
        "a fallback's answer is a model's answer"
    );
}

#[tokio::test(start_paused = true)]
async fn the_cache_is_bounded_and_can_be_cleared() {
    let fake = Scripted::scripted([Step::Answer]);
    let service = Degrade::new(fake, DegradeConfig::new().cache_capacity(2));
    for i in 0..20 {
        let req = ChatRequest::new("gpt-4o", vec![Message::user(format!("question {i}"))]);
        service.clone().oneshot(req).await.unwrap();
    }
    assert!(
        service.cached_answers() <= 2,
        "{}",
        service.cached_answers()
    );
    service.clear_cache();
    assert_eq!(service.cached_answers(), 0);
}

#[tokio::test(start_paused = true)]
async fn no_static_answer_for_failures_a_retry_would_repeat() {
    for kind in [ErrorKind::ContextLengthExceeded, ErrorKind::ContentFiltered] {
        let fake = Scripted::scripted([fail(kind)]);
        let service = Degrade::new(fake, DegradeConfig::new().static_answer("later"));
        assert_eq!(service.oneshot(request()).await.unwrap_err().kind, kind);
    }
    // The identical request answered before is still served from the cache.
    let fake = Scripted::scripted([Step::Answer, fail(ErrorKind::ContentFiltered)]);
    let service = Degrade::new(fake, cached().static_answer("later"));
    service.clone().oneshot(request()).await.unwrap();
    let cached = service.oneshot(request()).await.unwrap();
    assert_eq!(cached.meta.tier, QualityTier::Cached);
}

#[tokio::test(start_paused = true)]
async fn the_cache_is_off_by_default() {
    let fake = Scripted::scripted([Step::Answer, fail(ErrorKind::Overloaded)]);
    let service = Degrade::new(fake, DegradeConfig::new());
    service.clone().oneshot(request()).await.unwrap();
    assert_eq!(service.cached_answers(), 0);
    let err = service.oneshot(request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Overloaded, "nothing cached to serve");
}
