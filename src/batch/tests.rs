use super::*;
use staunch_core::{
    ChatRequest, ChatResponse, Embedding, EmbeddingRequest, EmbeddingResponse, ErrorKind, LlmError,
    Message, Usage,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::{ServiceExt, service_fn};

/// A server that takes at most `max` inputs, bills 1 token per input, and
/// fails its `fail_at`th request (0: never).
fn server(
    max: usize,
    fail_at: usize,
) -> (
    impl tower_service::Service<
        EmbeddingRequest,
        Response = EmbeddingResponse,
        Error = LlmError,
        Future = impl Send,
    > + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let service = service_fn(move |r: EmbeddingRequest| {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n == fail_at {
                return Err(LlmError::new(ErrorKind::Server, "boom").with_status(500));
            }
            if r.input.len() > max {
                return Err(LlmError::new(ErrorKind::InvalidRequest, "too many inputs"));
            }
            let texts = r.input.texts().unwrap_or_default();
            let data = texts
                .iter()
                .enumerate()
                .map(|(i, t)| Embedding::new(i, vec![t.len() as f32]))
                .collect();
            let usage = Usage::new(texts.len() as u64, 0);
            Ok(EmbeddingResponse::new(&r.model, data).with_usage(usage))
        }
    });
    (service, calls)
}

fn batch(n: usize) -> EmbeddingRequest {
    let texts: Vec<String> = (0..n).map(|i| "x".repeat(i + 1)).collect();
    EmbeddingRequest::new("e", texts)
}

#[tokio::test]
async fn a_batch_over_the_limit_is_sent_in_parts_and_joined_in_order() {
    let (server, calls) = server(3, 0);
    let answer = SplitBatch::new(server, 3, u64::MAX)
        .oneshot(batch(8))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let lengths: Vec<f32> = answer.data.iter().map(|e| e.vector[0]).collect();
    assert_eq!(lengths, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let indices: Vec<usize> = answer.data.iter().map(|e| e.index).collect();
    assert_eq!(indices, (0..8).collect::<Vec<_>>());
    assert_eq!(answer.usage, Usage::new(8, 0), "every part billed");
    assert_eq!(answer.meta.attempts, 3);
}

#[tokio::test]
async fn a_batch_that_fits_passes_through_as_one_request() {
    let (server, calls) = server(3, 0);
    let answer = SplitBatch::new(server, 3, u64::MAX)
        .oneshot(batch(3))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(answer.data.len(), 3);
}

#[tokio::test]
async fn a_failed_part_fails_the_batch_with_what_the_others_spent() {
    let (server, calls) = server(2, 2);
    let err = SplitBatch::new(server, 2, u64::MAX)
        .oneshot(batch(6))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Server);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no part after the failure");
    assert_eq!(err.attempts, 2, "the part answered and the one that failed");
    assert_eq!(err.spent, Usage::new(2, 0));
}

#[tokio::test]
async fn chat_passes_through() {
    let echo =
        service_fn(
            |r: ChatRequest| async move { Ok::<_, LlmError>(ChatResponse::new(&r.model, "hi")) },
        );
    let answer = SplitBatch::new(echo, 1, 1)
        .oneshot(ChatRequest::new(
            "m",
            vec![Message::user("a long question")],
        ))
        .await
        .unwrap();
    assert_eq!(answer.text(), "hi");
}
