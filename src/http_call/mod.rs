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
//! | [`TargetBuilder`](crate::TargetBuilder) | yes | breaker, retry, quota and attempt timeout in one call (chat's 30 s); its `validate` and `split_batches` do not compile for an `HttpCall` (see below) |
//! | [`InstrumentLayer`](crate::observe::InstrumentLayer) | yes | the span and metrics name the operation `chat` (see [`HttpCall`]'s `Call` impl) and the body's model |
//! | tower's timeout, rate limit, concurrency limit, load shed, hedge | yes | they take any request |
//! | [`Fallback`](crate::fallback::Fallback) | within one dialect | targets are `Service<HttpCall>`s (another key, region or compatible server), a target's model rewrites the body's `model`; across dialects (OpenAI to Anthropic) needs the typed [`ChatRequest`](staunch_core::ChatRequest): a staunch client is a `Service<ChatRequest>`, so it does not compile as a `Target<HttpCall>` |
//! | [`BudgetLayer`](crate::budget::BudgetLayer) | buffered answers | it does real work: it caps a call by the body's byte estimate (size over four, plus the output cap) before sending, and bills a JSON answer's `usage` afterwards; a streamed answer's usage is unknown (zero), so once it is committed it is billed nothing (its reservation is released): a budget that must count streamed tokens needs the typed request, whose streams are counted as they go |
//! | [`DegradeLayer`](crate::degrade::DegradeLayer) | **no**: compile error | its cache key is the request's [`Fingerprint`](crate::fingerprint::Fingerprint) and it keeps answers (`Clone`); `HttpCall` implements neither: a key over raw bytes would miss equal requests, and a stream cannot be kept |
//! | [`ValidateLayer`](crate::validate::ValidateLayer) | **no**: compile error | its checks read the request's tools and output format and the chat answer's tool calls; a raw body exposes none, so it would pass every answer unchecked. It requires a [`TypedCall`](staunch_core::TypedCall), which `HttpCall` is not |
//! | [`SplitBatchLayer`](crate::batch::SplitBatchLayer) | **no**: compile error | a raw body is not a batch staunch can split, so it would send every call whole; it requires a [`TypedCall`](staunch_core::TypedCall) too |
//!
//! The three refusals are errors when the stack is compiled, not requests
//! that pass through a layer that does nothing. A validate layer over the
//! raw client:
//!
//! ```compile_fail,E0277
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! use staunch::http_call::{ClassifyHttpLayer, HttpCall};
//! use staunch::validate::{ValidateConfig, ValidateLayer};
//! use tower::ServiceBuilder;
//!
//! # let users_http_client = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//! # });
//! fn serve<S: tower::Service<HttpCall>>(_: S) {}
//! let stack = ServiceBuilder::new()
//!     .layer(ValidateLayer::new(ValidateConfig::new()))
//!     .layer(ClassifyHttpLayer::new())
//!     .service(users_http_client);
//! serve(stack); // `HttpCall` is not a typed call: this layer reads the request's content
//! ```
//!
//! A batch splitter over it:
//!
//! ```compile_fail,E0277
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! use staunch::batch::SplitBatchLayer;
//! use staunch::http_call::{ClassifyHttpLayer, HttpCall};
//! use tower::ServiceBuilder;
//!
//! # let users_http_client = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//! # });
//! fn serve<S: tower::Service<HttpCall>>(_: S) {}
//! let stack = ServiceBuilder::new()
//!     .layer(SplitBatchLayer::new(16, 8_000))
//!     .layer(ClassifyHttpLayer::new())
//!     .service(users_http_client);
//! serve(stack); // `HttpCall` is not a typed call
//! ```
//!
//! A degrade layer over it:
//!
//! ```compile_fail,E0277
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! use staunch::degrade::{DegradeConfig, DegradeLayer};
//! use staunch::http_call::{ClassifyHttpLayer, HttpCall};
//! use tower::ServiceBuilder;
//!
//! # let users_http_client = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//! # });
//! fn serve<S: tower::Service<HttpCall>>(_: S) {}
//! let stack = ServiceBuilder::new()
//!     .layer(DegradeLayer::new(DegradeConfig::new().static_answer("later")))
//!     .layer(ClassifyHttpLayer::new())
//!     .service(users_http_client);
//! serve(stack); // `HttpCall: Fingerprint` is not satisfied, nor `HttpAnswer: Clone`
//! ```
//!
//! And a target built with validation:
//!
//! ```compile_fail,E0277
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! use staunch::TargetBuilder;
//! use staunch::http_call::{HttpCall, classify_http};
//! use staunch::validate::ValidateConfig;
//!
//! # let users_http_client = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//! # });
//! let target = TargetBuilder::<_, HttpCall>::for_call("openai", classify_http(users_http_client))
//!     .validate(ValidateConfig::new()) // `HttpCall` is not a typed call
//!     .build();
//! ```
//!
//! The same target without it builds, as every other row marked yes:
//!
//! ```
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! use staunch::TargetBuilder;
//! use staunch::http_call::{HttpCall, classify_http};
//!
//! # let users_http_client = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//! # });
//! let (target, _breaker) = TargetBuilder::<_, HttpCall>::for_call("openai", classify_http(users_http_client))
//!     .build()
//!     .expect("a valid breaker");
//! # let _ = target;
//! ```
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
//!   anything else `Network` (transient);
//! - a [`Deadline`](crate::Deadline) in the call's extensions (a gRPC
//!   call's `grpc-timeout`, say) bounds each attempt up to its answer (a
//!   JSON body or an error's body included, a stream up to its headers),
//!   which then fails as the deadline's error; the rest of a stream is the
//!   caller's to bound.

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
