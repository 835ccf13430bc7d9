//! What the benches share: a provider that answers at once, one way of
//! driving a call, and reading back this run's medians. Not every bench
//! uses every piece.
#![allow(dead_code)]

use staunch::core::{ChatRequest, ChatResponse, Message, Usage};
use staunch_test::FakeProvider;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use tower::Service;

/// The provider of every bench: the workspace's one fake provider,
/// answering at once with a clone of one answer and recording nothing.
/// Like real clients it is cheap to clone (an `Arc` inside): tower's retry
/// clones it per call.
pub fn in_memory() -> FakeProvider {
    FakeProvider::answering(
        ChatResponse::new("gpt-4o-2024-08-06", "hi").with_usage(Usage::new(12, 1)),
    )
}

/// The request every bench sends.
pub fn request() -> ChatRequest {
    ChatRequest::new(
        "gpt-4o",
        vec![Message::system("You are terse."), Message::user("Say hi")],
    )
    .with_max_tokens(16)
}

/// A copy of `request` that shares none of its `Arc`s: what a second
/// thread sends in a contended bench. Two threads cloning one request
/// would both write its messages' and tools' reference counts at every
/// call, and measure that instead of the layers (real requests are each
/// their own).
pub fn own_copy(request: &ChatRequest) -> ChatRequest {
    let mut copy = request.clone();
    copy.messages = request.messages.to_vec().into();
    copy.stop = request.stop.to_vec().into();
    copy.tools = request.tools.to_vec().into();
    copy.extra = std::sync::Arc::new((*request.extra).clone());
    copy.extensions = Default::default();
    copy
}

/// One call: `poll_ready`, `call`, and polls of the response future with a
/// no-op waker until it is ready. Every staunch layer here is ready at
/// once; a service that answers `Pending` (a peer whose lock is contended)
/// is polled again at once, so contention is charged to whoever causes it.
pub fn call_once<S>(service: &mut S, request: &ChatRequest) -> ChatResponse
where
    S: Service<ChatRequest, Response = ChatResponse>,
{
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => break,
            Poll::Ready(Err(_)) => panic!("the success path was refused"),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
    let mut future = pin!(service.call(request.clone()));
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(response)) => return response,
            Poll::Ready(Err(_)) => panic!("the success path failed"),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
}

/// Where criterion keeps its estimates (its own rule: `CRITERION_HOME`,
/// else `$CARGO_TARGET_DIR/criterion`, else `target/criterion`).
fn criterion_home() -> std::path::PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| "target".into(), std::path::PathBuf::from);
    target.join("criterion")
}

/// The median of `group`/`id` in this run (estimates written after
/// `started`), in nanoseconds; `None` for a variant this run filtered out.
pub fn fresh_median(group: &str, id: &str, started: std::time::SystemTime) -> Option<f64> {
    let path = criterion_home()
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json");
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= started);
    if !fresh {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}
