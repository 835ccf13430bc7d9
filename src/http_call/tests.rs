use super::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use staunch_core::{Answer, Call, ErrorClass, ErrorKind, LlmError};
use tower::{ServiceExt, service_fn};

fn post(body: &'static [u8]) -> http::Request<Bytes> {
    http::Request::post("http://api.example/v1/chat/completions")
        .header("authorization", "Bearer sk-test")
        .body(Bytes::from_static(body))
        .expect("a request")
}

#[test]
fn drop_in_call_reads_the_body_once_and_bounds_it() {
    let call = HttpCall::new(post(
        br#"{"model": "gpt-4o", "stream": true, "max_completion_tokens": 9, "messages": []}"#,
    ))
    .expect("a call");
    assert_eq!(call.model(), "gpt-4o");
    assert!(call.is_stream());
    assert_eq!(call.max_output_tokens(), Some(9));
    assert_eq!(
        call.estimated_input_tokens(),
        (call.body().len() as u64).div_ceil(4)
    );
    // A clone shares the body: retries cost no copy.
    let attempt = call.clone();
    assert_eq!(attempt.body().as_ptr(), call.body().as_ptr());
    let sent: http::Request<Full<Bytes>> = attempt.to_request();
    assert_eq!(sent.headers()["authorization"], "Bearer sk-test");
    // A fallback's model rewrites the body.
    let other = call.clone_for_model("gpt-4o-mini");
    assert_eq!(other.model(), "gpt-4o-mini");
    let body: serde_json::Value = serde_json::from_slice(other.body()).expect("json");
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["max_completion_tokens"], 9);

    let refused = HttpCall::with_limit(post(&[b' '; 100]), 99).expect_err("too large");
    assert_eq!(refused.kind, ErrorKind::InvalidRequest);
    assert!(
        refused
            .message
            .contains("100 bytes, over the 99-byte limit"),
        "{}",
        refused.message
    );
    // Gemini names the model in the path.
    let gemini = http::Request::post(
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    )
    .body(Bytes::from_static(b"{}"))
    .expect("a request");
    let gemini = HttpCall::new(gemini).expect("a call");
    assert_eq!(gemini.model(), "gemini-2.5-flash");
    assert!(gemini.is_stream());
    assert!(!format!("{gemini:?}").contains("sk-test"));
}

#[tokio::test]
async fn drop_in_buffer_reads_a_streamed_request_within_its_bound() {
    let request = http::Request::post("http://h/v1/messages")
        .body(Full::new(Bytes::from_static(br#"{"model": "claude"}"#)))
        .expect("a request");
    let call = HttpCall::buffer(request, 1024).await.expect("buffered");
    assert_eq!(call.model(), "claude");
    let request = http::Request::post("http://h/v1/messages")
        .body(Full::new(Bytes::from(vec![b'x'; 2048])))
        .expect("a request");
    let refused = HttpCall::buffer(request, 1024)
        .await
        .expect_err("too large");
    assert_eq!(refused.kind, ErrorKind::InvalidRequest);
}

fn answering(
    status: u16,
    content_type: &'static str,
    body: &'static str,
) -> ClassifyHttp<
    impl tower::Service<
        http::Request<Full<Bytes>>,
        Response = http::Response<Full<Bytes>>,
        Error = std::convert::Infallible,
        Future = impl Send + 'static,
    > + Clone,
> {
    classify_http(service_fn(
        move |_: http::Request<Full<Bytes>>| async move {
            Ok(http::Response::builder()
                .status(status)
                .header("content-type", content_type)
                .header("x-ratelimit-remaining-requests", "7")
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .expect("a response"))
        },
    ))
}

#[tokio::test]
async fn drop_in_classify_reads_usage_and_classifies_errors() {
    let call = || HttpCall::new(post(br#"{"model": "gpt-4o"}"#)).expect("a call");
    let ok = answering(
        200,
        "application/json",
        r#"{"model": "gpt-4o-2024-08-06", "usage": {"prompt_tokens": 11, "completion_tokens": 5}}"#,
    );
    let answer = ok.oneshot(call()).await.expect("an answer");
    assert_eq!(answer.usage().input_tokens, 11);
    assert_eq!(answer.usage().output_tokens, 5);
    assert!(!answer.is_streaming());
    assert_eq!(answer.meta().provider.as_deref(), Some("api.example"));
    assert!(
        answer.meta().rate_limit_headers.is_some(),
        "for the quota to learn"
    );
    let body = answer
        .into_response()
        .into_body()
        .collect()
        .await
        .expect("body");
    assert!(body.to_bytes().starts_with(b"{\"model\""));

    let stream = answering(200, "text/event-stream", "data: {}\n\n");
    let answer = stream.oneshot(call()).await.expect("an answer");
    assert!(answer.is_streaming(), "committed at its headers");
    assert_eq!(answer.usage(), staunch_core::Usage::default());

    let overflow = answering(
        400,
        "application/json",
        r#"{"error": {"message": "This model's maximum context length is 128000 tokens.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}"#,
    );
    let error: LlmError = overflow.oneshot(call()).await.expect_err("an error");
    assert_eq!(error.kind, ErrorKind::ContextLengthExceeded);
    assert_eq!(error.model.as_deref(), Some("gpt-4o"));

    let secret = answering(
        401,
        "application/json",
        r#"{"error": {"message": "Incorrect API key provided: sk-proj-AbCdEfGh0123456789xyz", "type": "invalid_request_error", "code": "invalid_api_key"}}"#,
    );
    let error = secret.oneshot(call()).await.expect_err("an error");
    assert_eq!(error.kind, ErrorKind::Authentication);
    assert_eq!(error.class(), ErrorClass::Unavailable);
    assert!(
        !error.message.contains("AbCdEfGh0123456789"),
        "{}",
        error.message
    );
}

/// A client that never answers, or sends an error's headers and never its
/// body: the call's deadline still ends the attempt, with the deadline's
/// error.
#[tokio::test(start_paused = true)]
async fn drop_in_classify_bounds_a_hanging_client_by_the_calls_deadline() {
    use crate::Deadline;
    use std::time::Duration;
    use tokio::time::Instant;

    let with_deadline = || {
        let mut call = HttpCall::new(post(br#"{"model": "gpt-4o"}"#)).expect("a call");
        call.extensions_mut()
            .insert(Deadline::after(Duration::from_secs(2)));
        call
    };
    let hang = classify_http(service_fn(|_: http::Request<Full<Bytes>>| async {
        std::future::pending::<Result<http::Response<Full<Bytes>>, std::convert::Infallible>>()
            .await
    }));
    let started = Instant::now();
    let error = hang.oneshot(with_deadline()).await.expect_err("cut");
    assert!(error.is_deadline_exceeded(), "{error}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));

    let silent_error_body = classify_http(service_fn(|_: http::Request<Full<Bytes>>| async {
        let never = http_body_util::StreamBody::new(never_a_frame());
        Ok::<_, std::convert::Infallible>(
            http::Response::builder()
                .status(429)
                .body(never)
                .expect("a response"),
        )
    }));
    let started = Instant::now();
    let error = silent_error_body
        .oneshot(with_deadline())
        .await
        .expect_err("cut");
    assert!(error.is_deadline_exceeded(), "{error}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

/// A stream of body frames that never yields one.
fn never_a_frame()
-> impl futures_core::Stream<Item = Result<http_body::Frame<Bytes>, std::convert::Infallible>>
+ Send
+ 'static {
    struct Never;
    impl futures_core::Stream for Never {
        type Item = Result<http_body::Frame<Bytes>, std::convert::Infallible>;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Pending
        }
    }
    Never
}

#[test]
fn a_call_without_a_place_of_its_own_keeps_its_allowance_in_its_extensions() {
    // `HttpCall` takes `Call`'s default allowance methods, as a user's own
    // call type would.
    let mut call = HttpCall::new(post(br#"{"model": "gpt-4o"}"#)).expect("a call");
    assert_eq!(call.allowance(), None);
    let cap = crate::Allowance::new(1_000, 100);
    call.set_allowance(Some(cap));
    assert_eq!(call.allowance(), Some(cap));
    assert_eq!(call.extensions().get::<crate::Allowance>(), Some(&cap));
    call.set_allowance(None);
    assert_eq!(call.allowance(), None);
    assert!(call.extensions().get::<crate::Allowance>().is_none());
}
