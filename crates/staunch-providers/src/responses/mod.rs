//! The OpenAI Responses API (`POST /v1/responses`), both ways: a client
//! ([`OpenAiResponses`]) and the ingress a gateway serves its SDKs with
//! ([`OpenAiResponsesApi`](crate::ingress::OpenAiResponsesApi)).
//!
//! The neutral conversation maps to Responses input items and back:
//! leading system messages are `instructions`, an assistant's tool calls
//! are `function_call` items, tool results `function_call_output` items.
//! Both sides are stateless: the client always sends `store: false` and
//! the whole conversation; the ingress refuses `store: true`,
//! `previous_response_id` and `conversation`, which need state kept
//! between requests. What the Responses API cannot express (stop
//! sequences, another dialect's content parts) is refused before anything
//! is sent.
//!
//! A conversation with tool history, read from a Chat Completions client
//! and written for the Responses API:
//!
//! ```
//! use staunch_providers::{openai, responses};
//!
//! let chat = br#"{"model": "gpt-4.1", "messages": [
//!     {"role": "system", "content": "Be brief."},
//!     {"role": "user", "content": "Weather in Paris?"},
//!     {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
//!         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
//!     {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}]}"#;
//! let request = openai::wire::decode_request(chat).unwrap().request;
//! let body: serde_json::Value =
//!     serde_json::from_slice(&responses::wire::encode_request(&request).unwrap()).unwrap();
//! assert_eq!(body["instructions"], "Be brief.");
//! assert_eq!(body["input"][1]["type"], "function_call");
//! assert_eq!(body["input"][2]["type"], "function_call_output");
//! assert_eq!(body["store"], false);
//! ```

mod answer;
mod error;
mod events;
pub(crate) mod ingress;
pub(crate) mod ingress_seam;
mod request;
mod response_object;
#[cfg(test)]
mod value_oracle;
pub mod wire;

use crate::ConfigError;
use crate::client::{Auth, Core, HeadersDebug, Masked, endpoint, redact_query, redact_url};
use crate::key::ApiKey;
use crate::transport::HttpOptions;
use staunch_core::{ChatRequest, ChatResponse, Dialect, LlmError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Settings of an [`OpenAiResponses`] client.
///
/// | setting | default |
/// |---|---|
/// | `provider` (name in responses, errors, metrics) | `openai` |
/// | `base_url` | `https://api.openai.com/v1` |
/// | `path` | `/responses` |
/// | `api_key` | `OPENAI_API_KEY` from the environment, sent as `Authorization: Bearer` |
/// | `query` | none (Azure: `api-version=…`) |
/// | `header` | none (e.g. `OpenAI-Organization`) |
/// | `http` | [`HttpOptions`] defaults |
///
/// Its `Debug` output shows no secret: the key, custom header values and
/// query values print as `[redacted]`.
#[derive(Clone)]
pub struct OpenAiResponsesConfig {
    provider: String,
    base_url: String,
    path: String,
    api_key: Option<ApiKey>,
    query: Option<String>,
    headers: Vec<(String, String)>,
    http: HttpOptions,
}

impl std::fmt::Debug for OpenAiResponsesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiResponsesConfig")
            .field("provider", &self.provider)
            .field("base_url", &Masked(redact_url(&self.base_url)))
            .field("path", &Masked(redact_url(&self.path)))
            .field("api_key", &self.api_key)
            .field(
                "query",
                &self.query.as_deref().map(|q| Masked(redact_query(q))),
            )
            .field("headers", &HeadersDebug(&self.headers))
            .field("http", &self.http)
            .finish()
    }
}

impl Default for OpenAiResponsesConfig {
    fn default() -> Self {
        OpenAiResponsesConfig {
            provider: "openai".to_owned(),
            base_url: "https://api.openai.com/v1".to_owned(),
            path: "/responses".to_owned(),
            api_key: ApiKey::from_env("OPENAI_API_KEY"),
            query: None,
            headers: Vec::new(),
            http: HttpOptions::default(),
        }
    }
}

impl OpenAiResponsesConfig {
    /// The defaults of the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// The provider's name in responses, errors and metrics.
    pub fn provider(mut self, name: impl Into<String>) -> Self {
        self.provider = name.into();
        self
    }

    /// The server's base URL (up to and including `/v1`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The path of the Responses endpoint under the base URL.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The API key (instead of the environment's), sent as a Bearer token.
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }

    /// Sends no key (local servers).
    pub fn no_api_key(mut self) -> Self {
        self.api_key = None;
        self
    }

    /// A query string added to every request. Its values count as secrets:
    /// they are masked out of errors and `Debug` output (except
    /// `api-version`).
    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// A header sent with every request. Its value counts as a secret (a
    /// key may travel in it): it is sent marked sensitive and masked out of
    /// errors and `Debug` output.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Connection and size limits.
    pub fn http(mut self, options: HttpOptions) -> Self {
        self.http = options;
        self
    }
}

/// An OpenAI Responses API client: a cloneable
/// `Service<ChatRequest, Response = ChatResponse, Error = LlmError>` on a
/// pooled hyper client with rustls. Clones share the connection pool.
///
/// Every request is sent whole with `store: false` (no state is kept at
/// OpenAI); the request's Responses extras (`reasoning`, `include`,
/// `text.verbosity`, ...) go in the body's top level. Failures are
/// [`LlmError`]s classified from the status, OpenAI's error body and the
/// headers; an answer the content filter stopped is a `ContentFiltered`
/// error, a `failed` one an error classified from its code; a streamed
/// answer ends cleanly only with `response.completed`. The key never
/// appears in `Debug` output, errors or spans.
///
/// ```no_run
/// use staunch_core::{ChatRequest, Message};
/// use staunch_providers::{OpenAiResponses, OpenAiResponsesConfig};
/// use tower::ServiceExt;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = OpenAiResponses::new(OpenAiResponsesConfig::new())?;
/// let answer = client
///     .oneshot(ChatRequest::new("gpt-4.1-mini", vec![Message::user("Say hi")]))
///     .await?;
/// println!("{}", answer.text());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct OpenAiResponses {
    core: Arc<Core>,
}

impl OpenAiResponses {
    /// A client for `config`, or why the config can't work (a bad URL or
    /// header).
    pub fn new(config: OpenAiResponsesConfig) -> Result<Self, ConfigError> {
        let uri = endpoint(&config.base_url, &config.path, config.query.as_deref())?;
        let core = Core::new(
            config.provider,
            uri,
            config.api_key.as_ref(),
            &Auth::Bearer,
            &config.headers,
            config.http,
        )?;
        Ok(OpenAiResponses {
            core: Arc::new(core),
        })
    }
}

impl Service<ChatRequest> for OpenAiResponses {
    type Response = ChatResponse;
    type Error = LlmError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, LlmError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let core = self.core.clone();
        Box::pin(async move { core.call(&ResponsesWire, request).await })
    }
}

/// The Responses dialect behind the client seam.
struct ResponsesWire;

impl crate::dialect::Wire for ResponsesWire {
    const DIALECT: Dialect = Dialect::OpenAiResponses;

    fn encode(&self, request: &ChatRequest) -> Result<Vec<u8>, LlmError> {
        wire::encode_request(request)
    }

    fn parse(
        &self,
        _request: &ChatRequest,
        status: u16,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<ChatResponse, LlmError> {
        wire::parse(status, headers, body)
    }

    fn events(&self, _request: &ChatRequest) -> Box<dyn crate::dialect::EventParser> {
        Box::new(events::ResponsesEvents::new())
    }
}

impl crate::dialect::EventParser for events::ResponsesEvents {
    fn parse(&mut self, frame: &crate::sse::SseFrame) -> crate::sse::Step {
        events::ResponsesEvents::parse(self, frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::Wire;
    use crate::sse::{SseFrame, Step};
    use http::HeaderMap;
    use serde_json::{Value, json};
    use staunch_core::{ErrorKind, Message, Role, StreamEvent, ToolCall};
    use tower_service::Service;

    #[test]
    fn the_config_hides_its_secrets_and_builds_a_client() {
        let config = OpenAiResponsesConfig::new()
            .api_key(ApiKey::new("sk-test-0123456789abcdef"))
            .header("OpenAI-Organization", "org-SECRET123")
            .query("key=QUERYSECRET")
            .provider("openai-eu")
            .base_url("https://eu.api.openai.com/v1")
            .path("/responses");
        let debug = format!("{config:?}");
        for secret in ["sk-test-0123456789abcdef", "org-SECRET123", "QUERYSECRET"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        let client = OpenAiResponses::new(config).expect("a client");
        let debug = format!("{client:?}");
        assert!(debug.contains("eu.api.openai.com/v1/responses"), "{debug}");
        assert!(!debug.contains("QUERYSECRET"), "{debug}");
        assert!(matches!(
            OpenAiResponses::new(OpenAiResponsesConfig::new().base_url("not a url")),
            Err(ConfigError::Url(_))
        ));
    }

    #[test]
    fn the_wire_seam_encodes_parses_and_streams() {
        let request = ChatRequest::new("gpt-4.1", vec![Message::user("hi")]);
        let body: Value = serde_json::from_slice(&ResponsesWire.encode(&request).expect("encodes"))
            .expect("JSON");
        assert_eq!(body["input"][0]["content"], "hi");
        let answer = ResponsesWire
            .parse(
                &request,
                200,
                &HeaderMap::new(),
                br#"{"id": "resp_1", "model": "gpt-4.1", "status": "completed",
                     "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hello"}]}]}"#,
            )
            .expect("an answer");
        assert_eq!(answer.text(), "Hello");
        let mut events = ResponsesWire.events(&request);
        let step = events.parse(&SseFrame::named(
            "response.output_text.delta",
            r#"{"type": "response.output_text.delta", "delta": "He", "output_index": 0, "content_index": 0, "item_id": "m"}"#,
        ));
        assert!(
            matches!(&step, Step::Events(e) if e == &[StreamEvent::TextDelta("He".into())]),
            "{step:?}"
        );
    }

    #[test]
    fn tool_history_from_an_anthropic_client_becomes_input_items() {
        let body = br#"{"model": "claude-sonnet-4-5", "max_tokens": 100, "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21 C"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": true}]}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]}"#;
        let request = crate::anthropic::wire::decode_request(body)
            .expect("decodes")
            .request;
        let body: Value = serde_json::from_slice(&wire::encode_request(&request).expect("encodes"))
            .expect("JSON");
        assert_eq!(body["instructions"], "Be brief.");
        assert_eq!(
            body["input"],
            json!([
                {"type": "message", "role": "user", "content": "Weather in Paris and Rome?"},
                {"type": "message", "role": "assistant", "content": "Checking."},
                {"type": "function_call", "call_id": "toolu_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "toolu_2", "name": "get_weather", "arguments": "{\"city\":\"Rome\"}"},
                {"type": "function_call_output", "call_id": "toolu_1", "output": "21 C"},
                {"type": "function_call_output", "call_id": "toolu_2", "output": "Error: boom"},
            ])
        );
        assert_eq!(body["tools"][0]["name"], "get_weather");
    }

    #[test]
    fn a_responses_conversation_round_trips_through_the_neutral_model() {
        let body = br#"{"model": "gpt-4.1", "instructions": "Be brief.", "store": false,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
            "reasoning": {"effort": "low"}, "include": ["reasoning.encrypted_content"]}"#;
        let request = wire::decode_request(body).expect("decodes").request;
        assert_eq!(request.messages[2].role, Role::Assistant);
        assert_eq!(
            request.messages[2].tool_calls,
            [ToolCall::new("call_1", "get_weather", "{}")]
        );
        let out: Value = serde_json::from_slice(&wire::encode_request(&request).expect("encodes"))
            .expect("JSON");
        assert_eq!(
            out,
            json!({"model": "gpt-4.1", "instructions": "Be brief.",
                   "input": [
                       {"type": "message", "role": "user", "content": "Weather?"},
                       {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
                       {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
                   "store": false,
                   "reasoning": {"effort": "low"}, "include": ["reasoning.encrypted_content"]})
        );
        // And for a Chat Completions target, the same history in its shape.
        let chat: Value = serde_json::from_slice(
            &crate::openai::wire::encode_request(&request).expect("encodes"),
        )
        .expect("JSON");
        assert_eq!(chat["messages"][2]["tool_calls"][0]["id"], "call_1");
        assert_eq!(chat["messages"][3]["tool_call_id"], "call_1");
        assert!(
            chat.get("reasoning").is_none(),
            "extras stay in their dialect"
        );
    }

    /// Serves one HTTP answer (`content_type`, `body`, then EOF) on a
    /// loopback port; the request's body comes back through the handle.
    async fn serve(
        content_type: &'static str,
        body: String,
    ) -> (String, tokio::task::JoinHandle<Value>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("an address");
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("a connection");
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            let request = loop {
                let n = socket.read(&mut chunk).await.expect("a request");
                got.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if rest.len() >= length || n == 0 {
                        break rest.to_owned();
                    }
                }
                if n == 0 {
                    break String::new();
                }
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n"
            );
            socket.write_all(head.as_bytes()).await.expect("written");
            socket.write_all(body.as_bytes()).await.expect("written");
            socket.shutdown().await.expect("closed");
            serde_json::from_str(&request).unwrap_or(Value::Null)
        });
        (format!("http://{addr}/v1"), task)
    }

    fn client(base_url: &str) -> OpenAiResponses {
        OpenAiResponses::new(
            OpenAiResponsesConfig::new()
                .base_url(base_url)
                .api_key(ApiKey::new("sk-test-key-0123456789")),
        )
        .expect("a client")
    }

    fn sse(events: &[Value]) -> String {
        events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
            .collect()
    }

    /// Every item of a streamed answer's stream.
    async fn drain(mut answer: ChatResponse) -> Vec<Result<StreamEvent, LlmError>> {
        let mut stream = answer.take_stream().expect("a stream");
        let mut items = Vec::new();
        while let Some(item) =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(stream.as_mut(), cx)).await
        {
            items.push(item);
        }
        items
    }

    fn delta(text: &str, n: u64) -> Value {
        json!({"type": "response.output_text.delta", "sequence_number": n, "item_id": "msg_1",
               "output_index": 0, "content_index": 0, "delta": text, "logprobs": []})
    }

    #[tokio::test]
    async fn a_call_over_http() {
        let answer = json!({"id": "resp_1", "object": "response", "status": "completed", "model": "gpt-4.1",
            "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": "Hi!", "annotations": []}]}],
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}});
        let (url, request) = serve("application/json", answer.to_string()).await;
        let mut service = client(&url);
        let got = service
            .call(ChatRequest::new(
                "gpt-4.1",
                vec![Message::system("Be brief."), Message::user("hi")],
            ))
            .await
            .expect("an answer");
        assert_eq!(got.text(), "Hi!");
        assert_eq!(got.usage.total(), 5);
        assert_eq!(got.meta.provider.as_deref(), Some("openai"));
        let sent = request.await.expect("the request");
        assert_eq!(sent["store"], false);
        assert_eq!(sent["instructions"], "Be brief.");
        assert!(sent.get("stream").is_none());
    }

    #[tokio::test]
    async fn a_stream_over_http_ends_only_with_its_terminal_event() {
        let completed = json!({"type": "response.completed", "sequence_number": 9, "response": {
            "id": "resp_1", "object": "response", "status": "completed", "model": "gpt-4.1", "output": [],
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}});
        let created = json!({"type": "response.created", "sequence_number": 0,
            "response": {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}});

        // Complete.
        let body = sse(&[created.clone(), delta("Hel", 1), delta("lo", 2), completed]);
        let (url, request) = serve("text/event-stream", body).await;
        let answer = client(&url)
            .call(ChatRequest::new("gpt-4.1", vec![Message::user("hi")]).with_stream(true))
            .await
            .expect("committed");
        let items = drain(answer).await;
        assert!(items.iter().all(Result::is_ok), "{items:?}");
        assert_eq!(
            items.last().and_then(|i| i.as_ref().ok()),
            Some(&StreamEvent::Finish(staunch_core::FinishReason::Stop))
        );
        assert_eq!(request.await.expect("the request")["stream"], true);

        // Cut after content, before `response.completed`.
        let (url, _) = serve(
            "text/event-stream",
            sse(&[created.clone(), delta("Hel", 1)]),
        )
        .await;
        let answer = client(&url)
            .call(ChatRequest::new("gpt-4.1", vec![Message::user("hi")]).with_stream(true))
            .await
            .expect("committed");
        let items = drain(answer).await;
        let last = items.last().expect("items");
        assert_eq!(
            last.as_ref().map_err(|e| e.kind).unwrap_err(),
            ErrorKind::TruncatedResponse,
            "{items:?}"
        );

        // Failed after content.
        let failed = json!({"type": "response.failed", "sequence_number": 2, "response": {
            "id": "resp_1", "object": "response", "status": "failed", "output": [],
            "error": {"code": "server_error", "message": "The model failed"}}});
        let (url, _) = serve(
            "text/event-stream",
            sse(&[created.clone(), delta("Hel", 1), failed]),
        )
        .await;
        let answer = client(&url)
            .call(ChatRequest::new("gpt-4.1", vec![Message::user("hi")]).with_stream(true))
            .await
            .expect("committed");
        let items = drain(answer).await;
        let error = items
            .last()
            .and_then(|i| i.as_ref().err())
            .expect("an error");
        assert_eq!(error.kind, ErrorKind::Server);
        assert_eq!(error.message, "The model failed");

        // An error before any content is an ordinary error of the call.
        let error_event = json!({"type": "error", "sequence_number": 1, "code": "rate_limit_exceeded",
                                 "message": "Rate limit reached", "param": null});
        let (url, _) = serve("text/event-stream", sse(&[created, error_event])).await;
        let error = client(&url)
            .call(ChatRequest::new("gpt-4.1", vec![Message::user("hi")]).with_stream(true))
            .await
            .expect_err("before the commit point");
        assert_eq!(error.kind, ErrorKind::RateLimited);
    }

    #[test]
    fn a_refused_request_names_the_feature() {
        let request = ChatRequest::new("m", vec![Message::user("x")]).with_stop(["END"]);
        let e = ResponsesWire.encode(&request).unwrap_err();
        assert_eq!(e.kind, ErrorKind::FeatureUnsupported);
        assert!(e.message.contains("openai-responses"), "{}", e.message);
    }
}
