//! Answers and faults in each provider's wire format: what to answer is
//! decided here from a neutral reading of the request ([`Ask`]); each
//! dialect's module reads its request body into that and writes the answers
//! and errors in its own format, behind the [`Dialect`] trait. A route is a
//! dialect ([`Route::dialect`](crate::state::Route)): what is here never
//! names one.

pub(crate) mod anthropic;
pub(crate) mod embeddings;
pub(crate) mod gemini;
pub(crate) mod gemini_embeddings;
pub(crate) mod openai;
pub(crate) mod responses;
mod stream;

use crate::scenario::{Fault, StreamErrorKind};
use crate::schema;
use crate::state::estimate_tokens;
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use stream::{Events, Step};

/// A response body: whole, one that stops halfway with an error (hyper
/// then closes the connection mid-body), or a stream of events sent over
/// time.
pub(crate) enum MockBody {
    Whole(Option<Bytes>),
    /// Goes through its steps: data frames, waits between them, and maybe
    /// a stall (pending for ever) or a cut (an error) at the end.
    Stream {
        steps: VecDeque<Step>,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    },
    /// Sends its data, pauses so the headers and data reach the client,
    /// then fails.
    Truncated {
        data: Option<Bytes>,
        pause: Pin<Box<tokio::time::Sleep>>,
    },
}

impl MockBody {
    pub(crate) fn truncated(data: Bytes) -> Self {
        MockBody::Truncated {
            data: Some(data),
            pause: Box::pin(tokio::time::sleep(std::time::Duration::from_millis(20))),
        }
    }
}

/// The error a truncated body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the mock cut this body short on purpose")]
pub(crate) struct CutShort;

impl Body for MockBody {
    type Data = Bytes;
    type Error = CutShort;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CutShort>>> {
        match self.get_mut() {
            MockBody::Whole(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            MockBody::Truncated { data, pause } => match data.take() {
                Some(d) => Poll::Ready(Some(Ok(Frame::data(d)))),
                None => pause.as_mut().poll(cx).map(|()| Some(Err(CutShort))),
            },
            MockBody::Stream { steps, sleep } => loop {
                if let Some(s) = sleep {
                    ready!(s.as_mut().poll(cx));
                    *sleep = None;
                }
                match steps.pop_front() {
                    None => return Poll::Ready(None),
                    Some(Step::Data(d)) => return Poll::Ready(Some(Ok(Frame::data(d)))),
                    Some(Step::Wait(d)) if d.is_zero() => {}
                    Some(Step::Wait(d)) => *sleep = Some(Box::pin(tokio::time::sleep(d))),
                    Some(Step::Stall) => {
                        // Never woken: the body stays open until the
                        // connection is dropped.
                        steps.push_front(Step::Stall);
                        return Poll::Pending;
                    }
                    Some(Step::Cut) => return Poll::Ready(Some(Err(CutShort))),
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Whole(data) => data.is_none(),
            MockBody::Truncated { .. } => false,
            MockBody::Stream { steps, sleep } => steps.is_empty() && sleep.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Whole(Some(d)) => SizeHint::with_exact(d.len() as u64),
            _ => SizeHint::default(),
        }
    }
}

pub(crate) fn json_response(
    status: u16,
    body: &Value,
    headers: &[(&str, String)],
) -> Response<MockBody> {
    raw_response(
        status,
        Bytes::from(body.to_string()),
        "application/json",
        headers,
    )
}

pub(crate) fn raw_response(
    status: u16,
    body: Bytes,
    content_type: &'static str,
    headers: &[(&str, String)],
) -> Response<MockBody> {
    let mut response = Response::new(MockBody::Whole(Some(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::try_from(*name),
            HeaderValue::try_from(value.as_str()),
        ) {
            h.insert(name, value);
        }
    }
    response
}

/// The route's settings a rendering needs.
pub(crate) struct Options {
    /// Milliseconds before each streamed content event.
    pub(crate) token_ms: u64,
    /// Refuse an assistant prefill with a 400.
    pub(crate) reject_prefill: bool,
    /// The embeddings route's vector length and batch limit.
    pub(crate) embeddings: embeddings::Settings,
    /// The context window of the request's model, if the scenario sets one.
    pub(crate) context_window: Option<u64>,
}

/// A request as its route reads it: the body, and the model and whether
/// to stream, which the body says in most dialects and the path in some.
pub(crate) struct Call<'a> {
    pub(crate) body: &'a Value,
    /// The model asked for (`mock` if none is named).
    pub(crate) model: &'a str,
    /// Whether the answer is streamed.
    pub(crate) stream: bool,
}

impl<'a> Call<'a> {
    /// A request naming its model in `model` and streaming with
    /// `"stream": true`.
    pub(crate) fn from_body(body: &'a Value) -> Self {
        Call {
            body,
            model: model(body),
            stream: wants_stream(body),
        }
    }
}

/// The status, JSON body and headers (besides the request id and
/// `retry-after`) of an error response.
pub(crate) type ErrorParts = (u16, Value, Vec<(&'static str, String)>);

/// One provider API the mock serves: which requests are its, how it reads
/// them, and how it writes answers, streams and errors. A new dialect is a
/// module implementing this and one line of `routes!` (`src/state.rs`).
pub(crate) trait Dialect: Sync {
    /// The provider whose API this copies (an outage's `routes` may name
    /// it to cover all its routes).
    fn provider(&self) -> &'static str;

    /// Whether `method path` (the path without its query) is this route's.
    fn serves(&self, method: &Method, path: &str) -> bool;

    /// The request at `path` with the parsed `body`.
    fn call<'a>(&self, path: &'a str, body: &'a Value) -> Call<'a> {
        let _ = path;
        Call::from_body(body)
    }

    /// A rough count of the prompt's tokens (the usage it reports).
    fn prompt_tokens(&self, body: &Value) -> u64 {
        estimate_tokens(body)
    }

    /// The tokens compared with the model's context window.
    fn overflow_tokens(&self, body: &Value) -> u64 {
        self.prompt_tokens(body)
    }

    /// The header carrying the request id.
    fn request_id(&self) -> &'static str {
        "x-request-id"
    }

    /// Whether rate limits and overloads carry a `retry-after` header.
    fn sends_retry_after(&self) -> bool {
        true
    }

    /// The answer (`200`'s JSON) to `call` under an answer `fault`, or the
    /// failure the provider answers a request it refuses with.
    fn answer<'a>(
        &self,
        call: &Call<'a>,
        fault: &Fault,
        n: u64,
        options: &Options,
    ) -> Result<Value, Failure<'a>>;

    /// The streamed answer's events.
    fn events<'a>(
        &self,
        call: &Call<'a>,
        fault: &Fault,
        n: u64,
        options: &Options,
    ) -> Result<Events, Failure<'a>>;

    /// The error response's parts for `failure`.
    fn error(&self, failure: &Failure<'_>, n: u64) -> ErrorParts;

    /// The in-band error event for `failure`, the stream's event number
    /// `seq` (counting from 0).
    fn error_event(&self, failure: &Failure<'_>, n: u64, seq: usize) -> Bytes;
}

/// What a request asks for, read from its body by its dialect's module.
pub(crate) struct Ask<'a> {
    pub(crate) model: &'a str,
    /// The text of the last user message (the first 48 characters).
    pub(crate) user_text: String,
    /// Whether the conversation ends with tool results: their contents.
    pub(crate) tool_results: Option<Vec<String>>,
    /// Whether the conversation ends with a user message.
    pub(crate) last_is_user: bool,
    pub(crate) tools: Vec<Tool<'a>>,
    pub(crate) choice: ToolChoice<'a>,
    pub(crate) format: Format<'a>,
    /// The text of a trailing assistant turn (an assistant prefill the
    /// answer continues), if any.
    pub(crate) prefill: Option<String>,
    /// Whether a prefill is refused (the route's `reject_prefill`).
    pub(crate) reject_prefill: bool,
}

/// A tool the request offers.
pub(crate) struct Tool<'a> {
    pub(crate) name: &'a str,
    /// Its JSON Schema (`None`: no parameters).
    pub(crate) schema: Option<Cow<'a, Value>>,
}

/// Which tool the request lets or makes the model call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ToolChoice<'a> {
    /// A tool when the user just spoke (the default).
    Auto,
    /// Never a tool.
    None,
    /// Always a tool: the first (OpenAI `required`, Anthropic `any`).
    Any,
    /// Always this tool.
    Named(&'a str),
}

/// The answer format asked for (OpenAI `response_format`; Anthropic sends
/// a JSON format as a forced tool instead).
pub(crate) enum Format<'a> {
    Text,
    JsonObject,
    JsonSchema(Cow<'a, Value>),
}

/// What the mock answers, before it is written in a dialect.
pub(crate) enum Reply {
    /// Text (a JSON answer is text too).
    Text(String),
    /// The content filter stopped the answer.
    Filtered,
    /// A call to a tool.
    Call { name: String, arguments: Arguments },
}

/// A tool call's arguments.
pub(crate) enum Arguments {
    /// A JSON value (an object unless a fault broke it).
    Json(Value),
    /// Text that is not JSON (a fault; only OpenAI carries arguments as text).
    Text(String),
}

impl Arguments {
    /// The arguments as OpenAI sends them: JSON text.
    pub(crate) fn text(&self) -> String {
        match self {
            Arguments::Json(v) => v.to_string(),
            Arguments::Text(t) => t.clone(),
        }
    }
}

/// A failure answered with the provider's error body.
pub(crate) enum Failure<'a> {
    RateLimit {
        retry_after: f64,
        model: &'a str,
    },
    Overloaded {
        retry_after: Option<f64>,
    },
    Server,
    Quota,
    Unauthorized,
    ContextOverflow {
        tokens: u64,
        /// The model's window, when the scenario sets one.
        limit: Option<u64>,
    },
    /// A request the provider would refuse (400 `invalid_request_error`).
    Invalid(String),
}

/// How an answer fault corrupts a tool call or JSON answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Corrupt {
    None,
    Arguments,
    Schema,
}

/// Tool results are quoted up to this many characters each.
const QUOTE_CHARS: usize = 500;

/// The first `max` characters of `text`.
pub(crate) fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The text of a content: a string, or the `text` of its parts (a tool
/// result's nested `content` included).
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.clone()),
                _ => p
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| p.get("content").map(content_text)),
            })
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// The text of the last `user` message of `messages`, clipped to 48
/// characters.
pub(crate) fn last_user_text(body: &Value) -> String {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content"))
        .map(|c| clip(&content_text(c), 48))
        .unwrap_or_default()
}

impl<'a> Ask<'a> {
    /// This ask under the route's `options` (whether it refuses prefills).
    pub(crate) fn under(mut self, options: &Options) -> Self {
        self.reject_prefill = options.reject_prefill;
        self
    }

    /// The tool to call, if any: a forced choice always calls; `auto` calls
    /// the first tool when the user spoke last. A forced name that is not
    /// among the tools is the provider's 400.
    fn tool(&self) -> Result<Option<&Tool<'a>>, Failure<'a>> {
        if self.tools.is_empty() {
            return Ok(None);
        }
        match self.choice {
            ToolChoice::None => Ok(None),
            ToolChoice::Auto if !self.last_is_user => Ok(None),
            ToolChoice::Auto | ToolChoice::Any => Ok(self.tools.first()),
            ToolChoice::Named(name) => match self.tools.iter().find(|t| t.name == name) {
                Some(tool) => Ok(Some(tool)),
                None => Err(Failure::Invalid(format!(
                    "tool_choice names the tool {name:?}, which is not among the request's tools"
                ))),
            },
        }
    }

    /// The answer's text: the tool results quoted when the conversation
    /// ends with them, else the usual echo of the user.
    fn text(&self) -> String {
        match &self.tool_results {
            Some(results) => results
                .iter()
                .map(|r| format!("Tool result: {}", clip(r, QUOTE_CHARS)))
                .collect::<Vec<_>>()
                .join("\n"),
            None => format!("mock answer to: {}", self.user_text),
        }
    }

    /// What to answer, given the answer fault (`Ok` and the like, a content
    /// filter, or a corruption of the tool call or JSON answer). `objects`:
    /// tool arguments must stay a JSON object (Anthropic's `input`).
    pub(crate) fn reply(&self, fault: &Fault, objects: bool) -> Result<Reply, Failure<'a>> {
        if self.reject_prefill && self.prefill.is_some() {
            return Err(Failure::Invalid("prefill is not supported".to_owned()));
        }
        let corrupt = match fault {
            Fault::ContentFilter => return Ok(Reply::Filtered),
            Fault::BadToolArguments => Corrupt::Arguments,
            Fault::SchemaViolation => Corrupt::Schema,
            _ => Corrupt::None,
        };
        if let Some(tool) = self.tool()? {
            let empty = json!({"type": "object"});
            let schema = tool.schema.as_deref().unwrap_or(&empty);
            return Ok(Reply::Call {
                name: tool.name.to_owned(),
                arguments: arguments(schema, corrupt, objects),
            });
        }
        let text = match &self.format {
            Format::Text => self.text(),
            Format::JsonObject => match corrupt {
                // Valid JSON, but not the object asked for.
                Corrupt::Schema => json!([self.text()]).to_string(),
                _ => json!({"answer": self.text()}).to_string(),
            },
            Format::JsonSchema(schema) => {
                let broken = match corrupt {
                    Corrupt::Schema => schema::violation(schema),
                    _ => None,
                };
                broken
                    .unwrap_or_else(|| schema::example(schema))
                    .to_string()
            }
        };
        // An assistant prefill that begins the answer: only the rest.
        let text = match &self.prefill {
            Some(prefill) => match text.strip_prefix(prefill.as_str()) {
                Some(rest) => rest.to_owned(),
                None => text,
            },
            None => text,
        };
        Ok(Reply::Text(text))
    }
}

/// A call's arguments for `schema`, corrupted as asked when the schema
/// can be broken (else valid).
fn arguments(schema: &Value, corrupt: Corrupt, objects: bool) -> Arguments {
    let valid = || schema::example(schema);
    let object = |v: &Value| !objects || v.is_object();
    match corrupt {
        Corrupt::None => Arguments::Json(valid()),
        Corrupt::Arguments if !objects => {
            // A JSON object cut short is never JSON.
            let text = valid().to_string();
            let mut cut = text.len() / 2;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            Arguments::Text(text[..cut].to_owned())
        }
        Corrupt::Arguments => Arguments::Json(
            schema::without_required(schema)
                .or_else(|| schema::violation(schema).filter(object))
                .unwrap_or_else(valid),
        ),
        Corrupt::Schema => Arguments::Json(
            schema::violation(schema)
                .filter(object)
                .unwrap_or_else(valid),
        ),
    }
}

/// A rough count of an answer's tokens.
pub(crate) fn completion_tokens(reply: &Reply) -> u64 {
    match reply {
        Reply::Text(text) => text.split_whitespace().count() as u64,
        Reply::Filtered => 0,
        Reply::Call { name, arguments } => {
            ((name.len() + arguments.text().len()) as u64).div_ceil(4) + 4
        }
    }
}

fn seconds(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

/// The request's model, `mock` if it names none.
fn model(body: &Value) -> &str {
    body.get("model").and_then(Value::as_str).unwrap_or("mock")
}

/// The rate-limit message both dialects send.
pub(crate) fn rate_limit_message(model: &str, retry_after: f64) -> String {
    format!(
        "Rate limit reached for {model} on requests per min (RPM): Limit 60, Used 60, Requested 1. Please try again in {}s.",
        seconds(retry_after)
    )
}

/// Whether `body` asks for a streamed answer (`"stream": true`).
pub(crate) fn wants_stream(body: &Value) -> bool {
    body.get("stream").and_then(Value::as_bool) == Some(true)
}

/// The in-band error event of `kind` in `dialect`, event number `seq`.
fn error_event(
    dialect: &dyn Dialect,
    kind: StreamErrorKind,
    call: &Call<'_>,
    n: u64,
    seq: usize,
) -> Bytes {
    let failure = match kind {
        StreamErrorKind::Overloaded => Failure::Overloaded { retry_after: None },
        StreamErrorKind::Server => Failure::Server,
        StreamErrorKind::RateLimit => Failure::RateLimit {
            retry_after: 1.0,
            model: call.model,
        },
    };
    dialect.error_event(&failure, n, seq)
}

/// A 200 event stream going through `steps`.
fn stream_response(dialect: &dyn Dialect, steps: VecDeque<Step>, n: u64) -> Response<MockBody> {
    let mut response = Response::new(MockBody::Stream { steps, sleep: None });
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    let (name, id) = id_header(dialect, n);
    if let Ok(id) = HeaderValue::try_from(id) {
        h.insert(name, id);
    }
    response
}

/// The streamed answer to `call` under `fault` (a normal answer, a stream
/// fault, or an answer fault such as a content filter), or the error the
/// provider answers a request it refuses with (before any byte of the
/// stream).
fn streamed(
    dialect: &dyn Dialect,
    call: &Call<'_>,
    fault: &Fault,
    n: u64,
    options: &Options,
) -> Response<MockBody> {
    if *fault == Fault::ErrorFirstFrame {
        let error = error_event(dialect, StreamErrorKind::Overloaded, call, n, 0);
        return stream_response(dialect, stream::error_first(error), n);
    }
    match dialect.events(call, fault, n, options) {
        Ok(events) => {
            let steps = stream::plan(events, fault, options.token_ms, |kind, seq| {
                error_event(dialect, kind, call, n, seq)
            });
            stream_response(dialect, steps, n)
        }
        Err(failure) => error(dialect, &failure, n),
    }
}

/// The error response for `failure` in `dialect`.
pub(crate) fn error(dialect: &dyn Dialect, failure: &Failure<'_>, n: u64) -> Response<MockBody> {
    let (status, body, mut headers) = dialect.error(failure, n);
    headers.insert(0, id_header(dialect, n));
    if let Failure::RateLimit { retry_after, .. }
    | Failure::Overloaded {
        retry_after: Some(retry_after),
    } = failure
        && dialect.sends_retry_after()
    {
        headers.push(("retry-after", seconds(*retry_after)));
    }
    json_response(status, &body, &headers)
}

/// The request-id header of `dialect`.
fn id_header(dialect: &dyn Dialect, n: u64) -> (&'static str, String) {
    (dialect.request_id(), format!("req_mock_{n}"))
}

/// The response for `fault` to `call` in `dialect`; `None` for faults that
/// have no response (hang, reset, handled by the caller).
pub(crate) fn render(
    dialect: &dyn Dialect,
    fault: &Fault,
    call: &Call<'_>,
    n: u64,
    options: &Options,
) -> Option<Response<MockBody>> {
    let id = id_header(dialect, n);
    let fail = |failure: Failure<'_>| Some(error(dialect, &failure, n));
    match fault {
        Fault::Ok
        | Fault::Latency { .. }
        | Fault::ContentFilter
        | Fault::BadToolArguments
        | Fault::SchemaViolation
        | Fault::SlowFirstToken { .. }
        | Fault::StallAfter { .. }
        | Fault::CutAfter { .. }
        | Fault::MalformedEventAt { .. }
        | Fault::NoTerminator
        | Fault::ErrorEventAt { .. }
        | Fault::ErrorFirstFrame => Some(if call.stream {
            streamed(dialect, call, fault, n, options)
        } else {
            // Stream faults leave an answer that is not streamed alone.
            let fault = if fault.is_stream_fault() {
                &Fault::Ok
            } else {
                fault
            };
            match dialect.answer(call, fault, n, options) {
                Ok(answer) => json_response(200, &answer, &[id]),
                Err(failure) => error(dialect, &failure, n),
            }
        }),
        Fault::RateLimit { retry_after } => fail(Failure::RateLimit {
            retry_after: *retry_after,
            model: call.model,
        }),
        Fault::Overloaded { retry_after } => fail(Failure::Overloaded {
            retry_after: *retry_after,
        }),
        Fault::ServerError => fail(Failure::Server),
        Fault::BadGateway => Some(raw_response(
            502,
            Bytes::from_static(b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
            "text/html",
            &[],
        )),
        Fault::Quota => fail(Failure::Quota),
        Fault::Unauthorized => fail(Failure::Unauthorized),
        Fault::ContextOverflow => fail(Failure::ContextOverflow {
            tokens: dialect.prompt_tokens(call.body),
            limit: options.context_window,
        }),
        Fault::Malformed => Some(raw_response(
            200,
            Bytes::from_static(b"<html>upstream returned something that is not JSON</html>"),
            "text/html",
            &[id],
        )),
        Fault::CutJson => {
            let whole = match dialect.answer(call, &Fault::Ok, n, options) {
                Ok(answer) => answer.to_string(),
                Err(failure) => return fail(failure),
            };
            let half = Bytes::from(whole[..whole.len() / 2].to_owned());
            Some(raw_response(200, half, "application/json", &[id]))
        }
        Fault::Truncated => {
            let whole = match dialect.answer(call, &Fault::Ok, n, options) {
                Ok(answer) => answer.to_string(),
                Err(failure) => return fail(failure),
            };
            let mut response = Response::new(MockBody::truncated(Bytes::from(
                whole[..whole.len() / 2].to_owned(),
            )));
            let h = response.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(v) = HeaderValue::try_from(whole.len().to_string()) {
                h.insert(http::header::CONTENT_LENGTH, v);
            }
            Some(response)
        }
        Fault::Status {
            status,
            body,
            headers,
        } => {
            let extra: Vec<(&str, String)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            Some(raw_response(
                *status,
                Bytes::from(body.clone()),
                "application/json",
                &extra,
            ))
        }
        Fault::Hang | Fault::Reset => None,
    }
}

/// The error the service returns to make hyper drop the connection.
#[derive(Debug, thiserror::Error)]
#[error("the mock reset this connection on purpose")]
pub(crate) struct ResetOnPurpose;
