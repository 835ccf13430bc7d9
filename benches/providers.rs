//! The OpenAI client against the mock server on loopback, next to a raw
//! hyper client sending the same body, in one run: latency of sequential
//! requests, and time per request with 32 in flight (its inverse is the
//! throughput).
//!
//! The raw client builds the request by hand from pre-encoded bytes and
//! reads the body without parsing it; the difference is what the OpenAI
//! client adds: encoding the request, parsing and classifying the answer,
//! and its bookkeeping.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use staunch::core::{ChatRequest, Message};
use staunch_mock::{MockServer, Scenario};
use staunch_providers::{OpenAi, OpenAiConfig};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const IN_FLIGHT: u64 = 32;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime
        .block_on(MockServer::start(Scenario::default()))
        .expect("mock server");
    let request = ChatRequest::new(
        "gpt-4o",
        vec![Message::system("Be brief."), Message::user("What is 2+2?")],
    )
    .with_max_tokens(32);
    let ours = {
        let _guard = runtime.enter();
        OpenAi::new(
            OpenAiConfig::new()
                .base_url(server.openai_base_url())
                .no_api_key(),
        )
        .expect("client")
    };
    let raw: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("{}/chat/completions", server.openai_base_url())
        .parse()
        .expect("uri");
    let body = Bytes::from(
        serde_json::to_vec(&staunch_providers::openai::wire::request_body(&request)).expect("json"),
    );

    let raw_call = {
        let (raw, uri, body) = (raw.clone(), uri.clone(), body.clone());
        move || {
            let (raw, uri, body) = (raw.clone(), uri.clone(), body.clone());
            async move {
                let req = http::Request::post(uri)
                    .header("content-type", "application/json")
                    .body(Full::new(body))
                    .expect("request");
                let response = raw.request(req).await.expect("raw response");
                assert_eq!(response.status(), 200);
                response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes()
            }
        }
    };
    let ours_call = {
        let (ours, request) = (ours.clone(), request.clone());
        move || {
            let (ours, request) = (ours.clone(), request.clone());
            async move { ours.oneshot(request).await.expect("answer") }
        }
    };

    let mut group = c.benchmark_group("openai_over_loopback");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("raw_hyper_sequential", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(raw_call().await);
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("staunch_openai_sequential", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(ours_call().await);
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("raw_hyper_32_in_flight", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..iters {
                    if i >= IN_FLIGHT {
                        tasks.join_next().await;
                    }
                    tasks.spawn(raw_call());
                }
                while tasks.join_next().await.is_some() {}
                start.elapsed()
            })
        })
    });
    group.bench_function("staunch_openai_32_in_flight", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..iters {
                    if i >= IN_FLIGHT {
                        tasks.join_next().await;
                    }
                    tasks.spawn(ours_call());
                }
                while tasks.join_next().await.is_some() {}
                start.elapsed()
            })
        })
    });
    group.finish();
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
