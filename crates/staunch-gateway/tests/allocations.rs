//! Heap allocations per request through the gateway's router, with the
//! JSON access log on (written through the log writer to a sink) and the
//! embedded mock answering in-process: the figure issue 33 asks to bring
//! down, printed, and bounded so that it does not creep back up. Its own
//! test binary: the allocator counts the whole process.

use axum::body::Body;
use http_body_util::BodyExt;
use staunch_gateway::config::Config;
use staunch_gateway::json_log::JsonLog;
use staunch_gateway::log_writer::LogWriter;
use staunch_gateway::{Gateway, router};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use tower::ServiceExt;
use tracing_subscriber::prelude::*;

/// The system allocator, counting the calls that hand out memory.
struct CallCounter;

static CALLS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to `System` as it came; the counters beside
// it are atomics and never allocate.
unsafe impl GlobalAlloc for CallCounter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static HEAP: CallCounter = CallCounter;

const CHAT: &str =
    r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}"#;

#[tokio::test(flavor = "current_thread")]
async fn allocations_per_chat_request() {
    let gateway = Gateway::build(Config::mock()).await.unwrap();
    let app = router(gateway);
    let send = |n: usize| {
        let app = app.clone();
        async move {
            let body = CHAT.replace("hi", &format!("hi {n}"));
            let request = http::Request::post("/v1/chat/completions")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
            let response = app.oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.unwrap();
        }
    };
    // Per request, the test's own request and body included: after a
    // warm-up, the mean over `N`.
    const N: u64 = 500;
    let measure = |first: usize| {
        let send = &send;
        async move {
            for n in first..first + 100 {
                send(n).await;
            }
            let (calls, bytes) = (CALLS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
            for n in first + 100..first + 100 + N as usize {
                send(n).await;
            }
            (
                (CALLS.load(Ordering::Relaxed) - calls) / N,
                (BYTES.load(Ordering::Relaxed) - bytes) / N,
            )
        }
    };

    let (quiet_calls, quiet_bytes) = measure(0).await;
    let (logs, _guard) = LogWriter::new(std::io::sink(), 1 << 20).unwrap();
    // The gateway's JSON log, as the binary sets it up.
    let subscriber = tracing_subscriber::registry()
        .with(JsonLog::new(logs.clone()))
        .with(tracing_subscriber::EnvFilter::new("info"));
    let (calls, bytes) = {
        let _default = tracing::subscriber::set_default(subscriber);
        measure(10_000).await
    };
    // tracing-subscriber's JSON formatter, which wrote the same lines before.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(logs)
        .json()
        .finish();
    let (fmt_calls, fmt_bytes) = {
        let _default = tracing::subscriber::set_default(subscriber);
        measure(20_000).await
    };
    eprintln!(
        "per chat request: {calls} allocations ({bytes} bytes) with the JSON access log, \
         {fmt_calls} ({fmt_bytes} bytes) with tracing-subscriber's JSON formatter instead, \
         {quiet_calls} ({quiet_bytes} bytes) without a subscriber"
    );
    assert!(calls < fmt_calls, "{calls} allocations per request");
    // The log's own: its spans' fields and nothing else (8 when written).
    assert!(
        calls <= quiet_calls + 16,
        "the JSON log takes {} allocations per request",
        calls.saturating_sub(quiet_calls)
    );
    assert!(calls < 1_000, "{calls} allocations per request");
    assert!(quiet_calls < 600, "{quiet_calls} allocations per request");
}
