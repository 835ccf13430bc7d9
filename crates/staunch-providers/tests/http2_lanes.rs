//! Over HTTP/2, requests past a connection's stream limit go out on
//! another connection instead of waiting for a stream to end (a streamed
//! answer holds its stream for as long as it streams), and each request
//! gives its place back when its answer is read or dropped.

mod support;

use staunch_core::{ChatRequest, ChatResponse, LlmError};
use staunch_mock::{Fault, MockServer, Route, Scenario};
use staunch_providers::{ApiKey, HttpOptions, OpenAi, OpenAiConfig};
use std::time::Duration;
use support::{KEY, ask};
use tower::ServiceExt;

/// The mock over h2c, serving `per_connection` streams at once on a
/// connection, with `script` for its chat route.
async fn mock(per_connection: u32, script: Vec<Fault>) -> MockServer {
    let mut scenario = Scenario {
        http2_max_streams: per_connection,
        ..Scenario::default()
    };
    scenario.openai.script = script;
    MockServer::start(scenario).await.expect("mock server")
}

fn client(mock: &MockServer, per_connection: usize) -> OpenAi {
    OpenAi::new(
        OpenAiConfig::new()
            .base_url(mock.openai_base_url())
            .api_key(ApiKey::new(KEY))
            .http(
                HttpOptions::new()
                    .http2_prior_knowledge(true)
                    .max_streams_per_connection(per_connection),
            ),
    )
    .expect("valid config")
}

/// Waits until the mock has seen `n` chat requests, or fails saying what
/// it saw.
async fn until_requests(mock: &MockServer, n: u64) {
    let seen = async {
        while mock.stats().requests_to(Route::OpenAi) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), seen)
        .await
        .is_err()
    {
        let stats = mock.stats();
        panic!(
            "the mock saw {} of {n} requests, on {} connections",
            stats.requests_to(Route::OpenAi),
            stats.connections
        );
    }
}

/// A plain request's answer, or a failure if it waits 10 s: a request
/// queued behind open streams would wait for as long as they stream.
async fn answered(client: &OpenAi) -> ChatResponse {
    match tokio::time::timeout(
        Duration::from_secs(10),
        client.clone().oneshot(ask("gpt-4o")),
    )
    .await
    {
        Ok(answer) => answer.expect("an answer"),
        Err(_) => panic!("the request waited behind the open streams"),
    }
}

fn send(
    client: &OpenAi,
    request: ChatRequest,
) -> tokio::task::JoinHandle<Result<ChatResponse, LlmError>> {
    tokio::spawn(client.clone().oneshot(request))
}

#[tokio::test]
async fn requests_past_a_connections_stream_limit_open_another_connection() {
    // Six requests the mock never answers: each holds its stream. The
    // server takes two streams per connection.
    let mock = mock(2, vec![Fault::Hang; 6]).await;
    let client = client(&mock, 2);
    let hung: Vec<_> = (0..6).map(|_| send(&client, ask("gpt-4o"))).collect();
    until_requests(&mock, 6).await;
    assert_eq!(
        mock.stats().connections,
        3,
        "two streams on each of three connections"
    );

    // Cancelled requests give their places back: the next request finds
    // room on the first connection instead of opening a fourth.
    for task in &hung {
        task.abort();
    }
    for task in hung {
        assert!(task.await.unwrap_err().is_cancelled());
    }
    let answer = answered(&client).await;
    assert!(!answer.message.text().is_empty());
    assert_eq!(mock.stats().connections, 3);
}

#[tokio::test]
async fn a_stream_holds_its_place_until_its_body_is_dropped() {
    let stall = Fault::StallAfter { tokens: 1 };
    let mock = mock(2, vec![stall.clone(), stall]).await;
    let client = client(&mock, 2);
    // Two streams whose bodies stay open: their headers are in, their
    // answers are not over.
    let mut open = Vec::new();
    for _ in 0..2 {
        let answer = client
            .clone()
            .oneshot(ask("gpt-4o").with_stream(true))
            .await
            .expect("a stream");
        open.push(answer);
    }
    assert_eq!(mock.stats().connections, 1);

    // The connection's two places are taken while the bodies are open...
    let answer = answered(&client).await;
    assert!(!answer.message.text().is_empty());
    assert_eq!(mock.stats().connections, 2);

    // ...and given back when they are dropped.
    drop(open);
    for _ in 0..3 {
        answered(&client).await;
    }
    assert_eq!(mock.stats().connections, 2);
}

#[tokio::test]
async fn one_connection_carries_as_many_as_its_limit() {
    let mock = mock(200, vec![Fault::Hang; 5]).await;
    let client = client(&mock, 5);
    let hung: Vec<_> = (0..5).map(|_| send(&client, ask("gpt-4o"))).collect();
    until_requests(&mock, 5).await;
    assert_eq!(mock.stats().connections, 1);
    for task in hung {
        task.abort();
    }
}
