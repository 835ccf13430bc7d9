//! A `Summarize` gRPC service whose handler asks an LLM through a staunch
//! stack. The messages are plain Rust types deriving `prost::Message`, and
//! the service is written against tonic's server API, so building it needs
//! no `protoc`. The proto it speaks:
//!
//! ```text
//! package staunch;
//! service Summarizer { rpc Summarize(SummarizeRequest) returns (SummarizeReply); }
//! message SummarizeRequest { string text = 1; }
//! message SummarizeReply { string summary = 1; string model = 2; uint32 attempts = 3; string tier = 4; }
//! ```

use staunch::core::{ChatRequest, ChatResponse, LlmError, Message};
use staunch::grpc;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

/// The LLM stack the handler calls.
pub type Stack = BoxCloneSyncService<ChatRequest, ChatResponse, LlmError>;

/// The RPC's path.
pub const SUMMARIZE: &str = "/staunch.Summarizer/Summarize";

/// `SummarizeRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummarizeRequest {
    /// The text to summarize.
    #[prost(string, tag = "1")]
    pub text: String,
}

/// `SummarizeReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummarizeReply {
    /// The summary.
    #[prost(string, tag = "1")]
    pub summary: String,
    /// The model that answered.
    #[prost(string, tag = "2")]
    pub model: String,
    /// Calls staunch made for it.
    #[prost(uint32, tag = "3")]
    pub attempts: u32,
    /// The answer's quality tier (`full`, `reduced`, `cached`, `static`).
    #[prost(string, tag = "4")]
    pub tier: String,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The gRPC service: routes `Summarize` to its handler.
#[derive(Clone)]
pub struct Summarizer {
    stack: Stack,
}

impl Summarizer {
    /// The service over `stack`.
    pub fn new(stack: Stack) -> Self {
        Summarizer { stack }
    }
}

impl tonic::server::NamedService for Summarizer {
    const NAME: &'static str = "staunch.Summarizer";
}

impl tower::Service<http::Request<tonic::body::Body>> for Summarizer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != SUMMARIZE {
            return Box::pin(async {
                Ok(tonic::Status::unimplemented("no such method").into_http())
            });
        }
        let handler = Handler {
            stack: self.stack.clone(),
        };
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(handler, request).await)
        })
    }
}

/// The `Summarize` handler: the call's timeout becomes the stack's deadline,
/// and staunch's errors the gRPC statuses.
struct Handler {
    stack: Stack,
}

impl tonic::server::UnaryService<SummarizeRequest> for Handler {
    type Response = SummarizeReply;
    type Future = BoxFuture<Result<tonic::Response<SummarizeReply>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<SummarizeRequest>) -> Self::Future {
        let deadline = grpc::deadline(&request);
        let stack = self.stack.clone();
        Box::pin(async move {
            let text = request.into_inner().text;
            let mut ask = ChatRequest::new(
                "gpt-4o",
                vec![
                    Message::system("Summarize the user's text in one sentence."),
                    Message::user(text),
                ],
            )
            .with_max_tokens(128);
            if let Some(deadline) = deadline {
                ask = ask.with_extension(deadline);
            }
            let answer = stack.oneshot(ask).await.map_err(|e| grpc::status(&e))?;
            Ok(tonic::Response::new(SummarizeReply {
                summary: answer.text().into_owned(),
                model: answer.answered_model().to_owned(),
                attempts: answer.meta.attempts,
                tier: answer.meta.tier.as_str().to_owned(),
            }))
        })
    }
}
