//! The layers straight over a raw HTTP client: no staunch client at all.
//!
//! A team that already has a tower HTTP client to its provider (hyper-util's
//! client, a tower-http stack with tracing, decompression, auth, a proxy
//! connector) keeps it. [`HttpCall`] is an `http::Request<Bytes>` as a
//! staunch [`Call`](staunch_core::Call), [`HttpAnswer`] an
//! `http::Response` as its [`Answer`](staunch_core::Answer), and
//! [`ClassifyHttpLayer`], innermost, turns the client's non-2xx answers into
//! [`LlmError`](staunch_core::LlmError)s classified exactly as staunch's own
//! clients classify them (one classifier, in staunch-core:
//! [`classify_http`](staunch_core::classify_http)). Then the layers stack as
//! over any staunch client:
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
//! use staunch::http_call::{ClassifyHttpLayer, HttpCall};
//! use staunch::quota::{QuotaConfig, QuotaLayer};
//! use staunch::retry::{RetryConfig, RetryLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # async fn run() -> Result<(), staunch::core::LlmError> {
//! let users_http_client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let stack = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryConfig::new().max_retries(3)))
//!     .layer(CircuitBreakerLayer::new(CircuitBreakerConfig::new("openai")).expect("valid"))
//!     .layer(QuotaLayer::new(QuotaConfig::new("openai").requests_per_minute(500)).expect("valid"))
//!     .layer(ClassifyHttpLayer::new())
//!     .service(users_http_client);
//! let request = http::Request::post("http://localhost:8080/v1/chat/completions")
//!     .header("content-type", "application/json")
//!     .body(Bytes::from_static(br#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}"#))
//!     .expect("a request");
//! let answer = stack.oneshot(HttpCall::new(request)?).await?;
//! println!("{} after {} attempts", answer.status(), staunch::core::Answer::meta(&answer).attempts);
//! # Ok(()) }
//! ```
//!
//! # Which layers apply at this level
//!
//! | layer | over `HttpCall` | why |
//! |---|---|---|
//! | [`RetryLayer`](crate::retry::RetryLayer) | yes | the body is replayed identically; `Retry-After` (seconds, HTTP date), `retry-after-ms` and `x-should-retry` honoured; a context-window 400 or a quota 429 is not retried |
//! | [`CircuitBreakerLayer`](crate::circuit_breaker::CircuitBreakerLayer) | yes | counts provider-side failures by their class, as over a staunch client |
//! | [`QuotaLayer`](crate::quota::QuotaLayer) | yes | requests exactly; tokens by the body's size over four (an overestimate), reconciled with a JSON answer's `usage`; learns the providers' rate-limit headers from answers and 429s |
//! | [`TargetBuilder`](crate::TargetBuilder) | yes | breaker, retry and attempt timeout in one call (chat's 30 s) |
//! | [`InstrumentLayer`](crate::observe::InstrumentLayer) | yes | the span and metrics name the operation `chat` (see [`HttpCall`]'s `Call` impl) and the body's model |
//! | tower's timeout, rate limit, concurrency limit, load shed, hedge | yes | they take any request |
//! | [`Fallback`](crate::fallback::Fallback) | within one dialect | targets are `Service<HttpCall>`s (another key, region or compatible server), a target's model rewrites the body's `model`; across dialects (OpenAI to Anthropic) needs the typed [`ChatRequest`](staunch_core::ChatRequest): a staunch client is a `Service<ChatRequest>`, so it does not compile as a `Target<HttpCall>` |
//! | [`DegradeLayer`](crate::degrade::DegradeLayer) | **no** (compile error) | its cache key is the request's [`Fingerprint`](crate::fingerprint::Fingerprint) and it keeps answers (`Clone`); `HttpCall` implements neither: a key over raw bytes would miss equal requests, and a stream cannot be kept |
//! | [`BudgetLayer`](crate::budget::BudgetLayer) | buffered answers only | caps by the byte estimate and bills a JSON answer's `usage`; a streamed answer's usage is unknown (zero), so a budget over streams needs the typed request, whose streams are counted as they go |
//! | [`ValidateLayer`](crate::validate::ValidateLayer) | no checks | its checks read a chat answer's tool calls and structured output; an `HttpAnswer` has none, so every answer passes: use the typed request to validate |
//! | [`SplitBatchLayer`](crate::batch::SplitBatchLayer) | no splits | a raw body is not a batch staunch can split; an `HttpCall` is never split |
//!
//! The last three compile because those layers are generic over every
//! [`Call`](staunch_core::Call); only the degrade layer requires a trait
//! (`Fingerprint`) that `HttpCall` does not implement, so that misuse is
//! caught by the compiler.
//!
//! # What the classifier does
//!
//! - a 2xx JSON answer is buffered (at most
//!   [`DEFAULT_MAX_ANSWER_BYTES`], configurable) and its `usage` read; a
//!   `text/event-stream` answer (or a stream call's non-JSON answer) is
//!   handed up at its headers, the commit point, body unread;
//! - a non-2xx answer reads at most 64 KiB of its body, classifies it with
//!   [`classify_http::any`](staunch_core::classify_http::any) (status,
//!   OpenAI `error.code`/`error.type`, Anthropic `error.type` such as
//!   `overloaded_error`, Gemini `RESOURCE_EXHAUSTED` with `RetryInfo`, the
//!   wait headers, `x-should-retry`, the rate-limit headers), masks anything
//!   shaped like a credential in the message, and fails with that error;
//! - a client error is the `LlmError` it wraps, a tower timeout `Timeout`,
//!   anything else `Network` (transient).

mod answer;
mod call;
mod classify;

pub use answer::{HttpAnswer, HttpAnswerBody};
pub use call::{DEFAULT_MAX_BODY_BYTES, HttpCall};
pub use classify::{
    ClassifyHttp, ClassifyHttpLayer, DEFAULT_MAX_ANSWER_BYTES, ResponseFuture, classify_http,
};

#[cfg(test)]
mod tests;
