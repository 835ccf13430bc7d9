//! The HTTP server.

use crate::render::{Failure, MockBody, Options, ResetOnPurpose, error, json_response, render};
use crate::scenario::{Fault, Scenario};
use crate::state::{MockStats, RecordLimits, Route, State};
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Request bodies larger than this are refused with 413.
const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// A running mock server. It stops when [`shutdown`](Self::shutdown) is
/// called or the value is dropped, closing every connection (hanging ones
/// included).
///
/// ```
/// use staunch_mock::{Fault, MockServer, Route, Scenario};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// let mut scenario = Scenario::default();
/// scenario.openai.script = vec![Fault::RateLimit { retry_after: 1.0 }, Fault::Ok];
/// let server = MockServer::start(scenario).await?;
/// println!("OpenAI-compatible base URL: {}", server.openai_base_url());
/// assert_eq!(server.stats().requests_to(Route::OpenAi), 0);
/// # Ok(()) }
/// ```
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl MockServer {
    /// Starts a server on `127.0.0.1` on a free port.
    pub async fn start(scenario: Scenario) -> std::io::Result<MockServer> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), scenario).await
    }

    /// Starts a server on `addr`.
    pub async fn start_on(addr: SocketAddr, scenario: Scenario) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(scenario));
        let task = tokio::spawn(accept(listener, state.clone()));
        Ok(MockServer { addr, state, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL for an OpenAI client (`…/v1`).
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// The base URL for an Anthropic client.
    pub fn anthropic_base_url(&self) -> String {
        self.url()
    }

    /// The base URL for a Gemini client (`google-genai`'s `base_url`): the
    /// root, under which it asks `/v1beta/models/{model}:generateContent`.
    pub fn gemini_base_url(&self) -> String {
        self.url()
    }

    /// Replaces the scenario (request counts go on).
    pub fn set_scenario(&self, scenario: Scenario) {
        self.state.set_scenario(scenario);
    }

    /// The scenario in force.
    pub fn scenario(&self) -> Scenario {
        self.state.scenario()
    }

    /// What it has seen: counts of everything, and the newest requests
    /// within the [`RecordLimits`].
    pub fn stats(&self) -> MockStats {
        self.state.stats()
    }

    /// Bounds what the request record keeps (evicting the oldest requests
    /// at once if it holds more).
    pub fn set_record_limits(&self, limits: RecordLimits) {
        self.state.set_limits(limits);
    }

    /// The request record's bounds.
    pub fn record_limits(&self) -> RecordLimits {
        self.state.limits()
    }

    /// Forgets what it has seen, restarts the clock (outage windows), and
    /// reseeds the random draws.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stops the server and closes every connection.
    pub fn shutdown(self) {}
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut connections = tokio::task::JoinSet::new();
    let served = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(target: "staunch_mock", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        let max_streams = state.connected();
        let (state, served) = (state.clone(), served.clone());
        connections.spawn(async move {
            let service = service_fn(move |request| handle(request, state.clone(), served.clone()));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http2().max_concurrent_streams(max_streams);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
    served: Arc<AtomicU64>,
) -> Result<Response<MockBody>, ResetOnPurpose> {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let Some(route) = Route::serving(&method, &path) else {
        return Ok(control(request, &method, &path, &state).await);
    };
    let dialect = route.dialect();
    let headers = recorded_headers(request.headers());
    let body = match read_body(request).await {
        Ok(bytes) => bytes,
        Err(status) => {
            let message = if status == 413 {
                "request body too large"
            } else {
                "could not read the request body"
            };
            return Ok(json_response(
                status,
                &json!({"error": {"message": message, "type": "invalid_request_error"}}),
                &[],
            ));
        }
    };
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        state.admit(route, "", &Value::Null, &body, headers);
        let failure = Failure::Invalid("the request body is not valid JSON".to_owned());
        return Ok(error(dialect, &failure, 0));
    };
    let call = dialect.call(&path, &json);
    let admitted = state.admit(route, call.model, &json, &body, headers);
    drop(body);
    let n = served.fetch_add(1, Ordering::Relaxed) + 1;
    let extra = match &admitted.fault {
        Fault::Latency { ms } => *ms,
        // A streamed answer delays its first content event instead.
        Fault::SlowFirstToken { ms } if !call.stream => *ms,
        _ => 0,
    };
    let latency = admitted.latency_ms + extra;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let options = Options {
        token_ms: admitted.token_ms,
        reject_prefill: admitted.reject_prefill,
        embeddings: crate::render::embeddings::Settings {
            dimensions: admitted.embedding_dimensions,
            max_inputs: admitted.embedding_max_inputs,
        },
        context_window: admitted.context_window,
    };
    match admitted.fault {
        Fault::Hang => std::future::pending().await,
        Fault::Reset => Err(ResetOnPurpose),
        other => Ok(
            render(dialect, &other, &call, n, &options).unwrap_or_else(|| {
                json_response(
                    500,
                    &json!({"error": {"message": "unrenderable fault"}}),
                    &[],
                )
            }),
        ),
    }
}

/// The control endpoints (`/_mock/…`), and 404 for anything else.
async fn control(
    request: Request<Incoming>,
    method: &Method,
    path: &str,
    state: &State,
) -> Response<MockBody> {
    match (method, path) {
        (&Method::GET, "/_mock/stats") => {
            let stats = serde_json::to_value(state.stats()).unwrap_or(Value::Null);
            json_response(200, &stats, &[])
        }
        (&Method::GET, "/_mock/scenario") => {
            let scenario = serde_json::to_value(state.scenario()).unwrap_or(Value::Null);
            json_response(200, &scenario, &[])
        }
        (&Method::POST, "/_mock/reset") => {
            state.reset();
            json_response(200, &json!({"reset": true}), &[])
        }
        (&Method::POST, "/_mock/scenario") => {
            let body = read_body(request).await;
            let parsed = body.ok().and_then(|b| {
                serde_json::from_slice::<Scenario>(&b)
                    .map_err(|e| e.to_string())
                    .ok()
            });
            match parsed.map(|s| s.validate().map(|()| s)) {
                Some(Ok(scenario)) => {
                    state.set_scenario(scenario);
                    json_response(200, &json!({"scenario": "replaced"}), &[])
                }
                Some(Err(message)) => json_response(400, &json!({"error": message}), &[]),
                None => json_response(
                    400,
                    &json!({"error": "the body is not a scenario in JSON"}),
                    &[],
                ),
            }
        }
        _ => json_response(
            404,
            &json!({"error": {"message": format!("no route for {method} {path}"), "type": "not_found_error"}}),
            &[],
        ),
    }
}

/// The headers to record, credentials masked.
fn recorded_headers(headers: &http::HeaderMap) -> std::collections::BTreeMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| {
            let shown = match name.as_str() {
                "authorization" | "x-api-key" | "api-key" | "x-goog-api-key" => {
                    "[present]".to_owned()
                }
                _ => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            };
            (name.as_str().to_owned(), shown)
        })
        .collect()
}

/// Reads a request body within [`MAX_REQUEST_BYTES`]; the status to answer
/// on failure.
async fn read_body(request: Request<Incoming>) -> Result<Bytes, u16> {
    match Limited::new(request.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(413),
        Err(_) => Err(400),
    }
}
