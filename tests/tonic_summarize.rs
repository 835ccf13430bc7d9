//! Drop-in, part 3 (issue 31): a tonic `Summarize` service whose handler
//! calls an LLM through a staunch stack, driven by tonic's client over
//! loopback against the mock's fault scripts: the answer through a 429
//! and a failed primary, the call's `grpc-timeout` as staunch's deadline,
//! and staunch's errors as the gRPC statuses a client acts on.

#[path = "../examples/tonic_summarize/service.rs"]
mod service;

use service::{SUMMARIZE, SummarizeReply, SummarizeRequest, Summarizer};
use staunch::TargetBuilder;
use staunch::fallback::Fallback;
use staunch::retry::{NoJitter, RetryConfig};
use staunch_mock::{Fault, MockServer, Scenario};
use staunch_providers::{Anthropic, AnthropicConfig, ApiKey, OpenAi, OpenAiConfig};
use std::time::{Duration, Instant};
use tower::util::BoxCloneSyncService;

/// The service over the mock (OpenAI first, Anthropic second, each
/// retried twice), on a free loopback port; its channel.
async fn start(
    openai: Vec<Fault>,
    anthropic: Vec<Fault>,
) -> (tonic::transport::Channel, MockServer) {
    let mut scenario = Scenario::default();
    scenario.openai.script = openai;
    scenario.anthropic.script = anthropic;
    let mock = MockServer::start(scenario).await.expect("a mock");
    let retry = || RetryConfig::new().no_budget().jitter(NoJitter);
    let openai = OpenAi::new(
        OpenAiConfig::new()
            .base_url(mock.openai_base_url())
            .api_key(ApiKey::new("sk-mock")),
    )
    .expect("a client");
    let anthropic = Anthropic::new(
        AnthropicConfig::new()
            .base_url(mock.anthropic_base_url())
            .api_key(ApiKey::new("sk-ant-mock")),
    )
    .expect("a client");
    let (openai, _) = TargetBuilder::new("openai", openai)
        .model("gpt-4o")
        .retry(retry())
        .build()
        .unwrap();
    let (anthropic, _) = TargetBuilder::new("anthropic", anthropic)
        .model("claude-sonnet-4-5")
        .retry(retry())
        .build()
        .unwrap();
    let stack = BoxCloneSyncService::new(Fallback::new([openai, anthropic]).unwrap());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Summarizer::new(stack))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("a channel");
    (channel, mock)
}

async fn summarize(
    channel: &tonic::transport::Channel,
    text: &str,
    timeout: Option<Duration>,
) -> Result<SummarizeReply, tonic::Status> {
    let mut client = tonic::client::Grpc::new(channel.clone());
    client.ready().await.expect("ready");
    let mut request = tonic::Request::new(SummarizeRequest { text: text.into() });
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    client
        .unary(
            request,
            http::uri::PathAndQuery::from_static(SUMMARIZE),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn tonic_summarize_answers_through_a_429_and_a_failed_primary() {
    let (channel, _mock) = start(vec![Fault::RateLimit { retry_after: 0.1 }], vec![]).await;
    let reply = summarize(&channel, "The quick brown fox.", None)
        .await
        .unwrap();
    assert!(!reply.summary.is_empty());
    assert_eq!(reply.model, "gpt-4o");
    assert_eq!((reply.attempts, reply.tier.as_str()), (2, "full"));

    let (channel, _mock) = start(vec![Fault::ServerError; 3], vec![]).await;
    let reply = summarize(&channel, "The quick brown fox.", None)
        .await
        .unwrap();
    assert_eq!(reply.model, "claude-sonnet-4-5");
    assert_eq!((reply.attempts, reply.tier.as_str()), (4, "reduced"));
}

/// The client's `grpc-timeout` bounds the whole call, retries and fallback
/// included: both targets hang, and the client gets DEADLINE_EXCEEDED at
/// its timeout, not at the targets' attempt timeouts.
#[tokio::test]
async fn tonic_the_calls_timeout_is_staunchs_deadline() {
    let (channel, _mock) = start(vec![Fault::Hang], vec![Fault::Hang]).await;
    let started = Instant::now();
    let status = summarize(&channel, "anything", Some(Duration::from_millis(800)))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        took < Duration::from_secs(3),
        "answered after {took:?}, not at a 30 s attempt timeout"
    );
}

/// Errors become the statuses a gRPC client acts on: a prompt too long for
/// every model is INVALID_ARGUMENT (not retried), and everything
/// overloaded is UNAVAILABLE with the wait in `retry-after-ms`.
#[tokio::test]
async fn tonic_errors_map_to_the_codes_clients_expect() {
    let (channel, _mock) = start(vec![Fault::ContextOverflow], vec![Fault::ContextOverflow]).await;
    let status = summarize(&channel, "too long", None).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    let busy = || Fault::Overloaded {
        retry_after: Some(1.0),
    };
    let (channel, _mock) = start(vec![busy(); 3], vec![busy(); 3]).await;
    let status = summarize(&channel, "anything", None).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("retry-after-ms")
            .map(|v| v.to_str().unwrap_or("")),
        Some("1000")
    );
    assert_eq!(retry_delay(&status), Some(Duration::from_secs(1)));
}

/// Rate limited everywhere for longer than the retry layer waits: the
/// client gets RESOURCE_EXHAUSTED at once, with the provider's wait as a
/// `google.rpc.RetryInfo` in the status details (decoded here with prost,
/// independently of staunch's encoder).
#[tokio::test]
async fn tonic_rate_limited_everywhere_is_resource_exhausted_with_retry_info() {
    let limited = || Fault::RateLimit { retry_after: 90.0 };
    let (channel, mock) = start(vec![limited()], vec![limited()]).await;
    let started = Instant::now();
    let status = summarize(&channel, "anything", None).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "not waited out");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(retry_delay(&status), Some(Duration::from_secs(90)));
    let stats = mock.stats();
    assert_eq!(
        (
            stats.requests_to(staunch_mock::Route::OpenAi),
            stats.requests_to(staunch_mock::Route::Anthropic)
        ),
        (1, 1),
        "each asked once"
    );
}

/// A refusal by every model (the content filter) is FAILED_PRECONDITION:
/// asking again as it is will not help, the content must change.
#[tokio::test]
async fn tonic_a_refusal_everywhere_is_failed_precondition() {
    let (channel, _mock) = start(vec![Fault::ContentFilter], vec![Fault::ContentFilter]).await;
    let status = summarize(&channel, "something refused", None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(status.details().is_empty(), "nothing to wait for");
}

/// `google.rpc.Status`, `google.protobuf.Any`, `google.rpc.RetryInfo` and
/// `google.protobuf.Duration`, as their protos define them.
mod rpc {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<Duration>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// The `RetryInfo` delay in a status's details, if it has one; the
/// details' code and message must be the status's own.
fn retry_delay(status: &tonic::Status) -> Option<Duration> {
    use prost::Message;
    if status.details().is_empty() {
        return None;
    }
    let decoded = rpc::Status::decode(status.details()).expect("a google.rpc.Status");
    assert_eq!(decoded.code, i32::from(status.code()));
    assert_eq!(decoded.message, status.message());
    let any = decoded
        .details
        .iter()
        .find(|d| d.type_url == "type.googleapis.com/google.rpc.RetryInfo")?;
    let info = rpc::RetryInfo::decode(&any.value[..]).expect("a RetryInfo");
    let delay = info.retry_delay?;
    Some(Duration::new(
        u64::try_from(delay.seconds).expect("not negative"),
        u32::try_from(delay.nanos).expect("not negative"),
    ))
}
