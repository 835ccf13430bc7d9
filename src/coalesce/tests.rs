use super::*;
use staunch_core::{
    ChatRequest, ChatResponse, Embedding, EmbeddingRequest, EmbeddingResponse, ErrorKind, LlmError,
    Message,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::{Layer, ServiceExt, service_fn};

fn counting_embedder(
    calls: Arc<AtomicUsize>,
    fail: bool,
) -> impl tower_service::Service<
    EmbeddingRequest,
    Response = EmbeddingResponse,
    Error = LlmError,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |r: EmbeddingRequest| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if fail {
                return Err(LlmError::new(ErrorKind::Overloaded, "busy").with_status(503));
            }
            Ok(EmbeddingResponse::new(
                &r.model,
                vec![Embedding::new(0, vec![r.input.len() as f32])],
            ))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn identical_embeddings_in_flight_share_one_call_and_different_ones_do_not() {
    let calls = Arc::new(AtomicUsize::new(0));
    let service = CoalesceLayer::new().layer(counting_embedder(calls.clone(), false));
    let ask = |text: &'static str| service.clone().oneshot(EmbeddingRequest::new("e", [text]));
    let (a, b, c) = tokio::join!(ask("same"), ask("same"), ask("other"));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one call per distinct input"
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert!(a.meta.shared && b.meta.shared);
    assert!(!c.meta.shared, "asked alone");
    assert_eq!(a.data, b.data);
    // Done: the next identical call goes upstream again.
    ask("same").await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn every_caller_gets_the_error() {
    let calls = Arc::new(AtomicUsize::new(0));
    let service = CoalesceLayer::new().layer(counting_embedder(calls.clone(), true));
    let ask = || service.clone().oneshot(EmbeddingRequest::new("e", ["x"]));
    let (a, b) = tokio::join!(ask(), ask());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    for result in [a, b] {
        let error = result.unwrap_err();
        assert_eq!(
            (error.kind, error.status),
            (ErrorKind::Overloaded, Some(503))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_does_not_cancel_the_others() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = CoalesceLayer::new();
    let service = layer.layer(counting_embedder(calls.clone(), false));
    let first = service.clone().oneshot(EmbeddingRequest::new("e", ["x"]));
    let second = service.clone().oneshot(EmbeddingRequest::new("e", ["x"]));
    // The first caller (whose call started the upstream one) gives up.
    let gave_up = tokio::time::timeout(Duration::from_millis(100), first).await;
    assert!(gave_up.is_err());
    let answer = second.await.unwrap();
    assert_eq!(answer.data.len(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(layer.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn chat_is_shared_only_when_the_rule_says_so_and_never_streamed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let provider = service_fn(move |r: ChatRequest| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, LlmError>(ChatResponse::new(&r.model, "4"))
        }
    });
    let ask = |t: f32| ChatRequest::new("m", vec![Message::user("2+2?")]).with_temperature(t);

    let plain = CoalesceLayer::new().layer(provider.clone());
    let (a, b) = tokio::join!(
        plain.clone().oneshot(ask(0.0)),
        plain.clone().oneshot(ask(0.0))
    );
    assert!(!a.unwrap().meta.shared && !b.unwrap().meta.shared);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "chat is not shared by default"
    );

    let greedy = CoalesceLayer::new()
        .chat_when(|r| r.temperature == Some(0.0))
        .layer(provider);
    let (a, b) = tokio::join!(
        greedy.clone().oneshot(ask(0.0)),
        greedy.clone().oneshot(ask(0.0))
    );
    assert!(a.unwrap().meta.shared && b.unwrap().meta.shared);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let (a, b) = tokio::join!(
        greedy.clone().oneshot(ask(0.7)),
        greedy.clone().oneshot(ask(0.7))
    );
    assert!(!a.unwrap().meta.shared && !b.unwrap().meta.shared);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "sampled answers are not shared"
    );
    let (a, b) = tokio::join!(
        greedy.clone().oneshot(ask(0.0).with_stream(true)),
        greedy.clone().oneshot(ask(0.0).with_stream(true))
    );
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 7, "streams are never shared");
}
