//! The wire parsers take anything: arbitrary bytes, arbitrary JSON, valid
//! bodies cut anywhere. They never panic and always answer with a response
//! or an error.

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::{Value, json};
use staunch_providers::{anthropic, headers, openai};

fn statuses() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(200u16),
        Just(400),
        Just(401),
        Just(429),
        Just(500),
        Just(529),
        100u16..600
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z_ ]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop::sample::select(vec![
            "error",
            "type",
            "message",
            "code",
            "choices",
            "message",
            "content",
            "usage",
            "finish_reason",
            "stop_reason",
            "text",
            "prompt_tokens",
            "input_tokens",
            "details",
            "innererror",
            "model",
            "id",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..5).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

fn header_values() -> impl Strategy<Value = HeaderMap> {
    ("[ -~]{0,30}", "[ -~]{0,10}", "[ -~]{0,8}").prop_map(|(a, b, c)| {
        let mut h = HeaderMap::new();
        for (name, v) in [
            ("retry-after", a),
            ("retry-after-ms", b),
            ("x-should-retry", c),
        ] {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(name, v);
            }
        }
        h
    })
}

fn both(status: u16, headers: &HeaderMap, body: &[u8]) {
    for parse in [openai::wire::parse, anthropic::wire::parse] {
        match parse(status, headers, body) {
            Ok(response) => assert!(
                (200..300).contains(&status),
                "a {status} became a response: {response:?}"
            ),
            Err(error) => {
                if (200..300).contains(&status) {
                    assert!(error.status.is_none() || error.status == Some(status));
                } else {
                    assert_eq!(error.status, Some(status));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(status in statuses(), headers in header_values(), body in prop::collection::vec(any::<u8>(), 0..512)) {
        both(status, &headers, &body);
    }

    #[test]
    fn arbitrary_json(status in statuses(), headers in header_values(), body in json_value()) {
        both(status, &headers, body.to_string().as_bytes());
    }

    #[test]
    fn valid_bodies_cut_anywhere(cut in 0usize..400, status in prop_oneof![Just(200u16), Just(429), Just(529)]) {
        let bodies = [
            json!({"id": "chatcmpl-1", "model": "gpt-4o", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello there"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}),
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [{"type": "text", "text": "hello there"}], "stop_reason": "end_turn", "usage": {"input_tokens": 9, "output_tokens": 2}}),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ];
        for body in bodies {
            let text = body.to_string();
            let end = cut.min(text.len());
            both(status, &HeaderMap::new(), &text.as_bytes()[..end]);
        }
    }

    #[test]
    fn header_parsing_never_panics(headers in header_values()) {
        let _ = headers::retry_after(&headers);
        let _ = headers::should_retry(&headers);
        let _ = headers::request_id(&headers);
    }
}

#[test]
fn a_cut_success_body_is_a_truncated_response() {
    let body = br#"{"id": "chatcmpl-1", "model": "gpt-4o", "choices": [{"index": 0, "message": {"role": "assi"#;
    let err = openai::wire::parse(200, &HeaderMap::new(), body).unwrap_err();
    assert_eq!(err.kind, staunch_core::ErrorKind::TruncatedResponse);
    let err = anthropic::wire::parse(200, &HeaderMap::new(), &body[..20]).unwrap_err();
    assert_eq!(err.kind, staunch_core::ErrorKind::TruncatedResponse);
}

// ---------------------------------------------------------------------------
// Bad input at the edge (issue 27): the gateway's ingress decoders and the
// streaming client's SSE parser on arbitrary bytes and on structure-aware
// mutations of valid input. Never a panic, never a hang, and an error in
// the right class.
//
// The ingress decoders are `openai::wire::decode_request` (Chat
// Completions) and `anthropic::wire::decode_request` (Messages); the
// providers' wire modules have no embeddings ingress decoder yet. The SSE
// parser is private to the crate, so it is driven where it is used: the
// clients read a streamed answer from a raw loopback server that sends the
// bytes under test.

use staunch_core::{ChatRequest, ErrorClass, ErrorKind, LlmError, Message, StreamEvent};
use staunch_providers::openai::wire::IngressError;
use staunch_providers::{Anthropic, AnthropicConfig, ApiKey, HttpOptions, OpenAi, OpenAiConfig};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One ingress decoder: its name, and what it made of a body (`None` when
/// it read the body as a request).
type Decoder = (&'static str, fn(&[u8]) -> Option<IngressError>);

const DECODERS: [Decoder; 2] = [
    ("openai", |b| openai::wire::decode_request(b).err()),
    ("anthropic", |b| anthropic::wire::decode_request(b).err()),
];

/// Decodes `body` with every decoder and checks the class of the error:
/// valid JSON of the wrong shape is `Body` or a `Field` naming the field,
/// never `Json`; a body that is not JSON (syntax, cut, invalid UTF-8,
/// nested past the parser's limit) is `Json`, or `Body` when the parser
/// met a value of the wrong type before the flaw (serde reads in one pass),
/// never accepted and never a `Field` error. Every message is non-empty and
/// bounded by the body (it may quote a piece of it, never more). Returns
/// which decoders accepted it.
fn check_ingress(body: &[u8]) -> [bool; 2] {
    let is_json = serde_json::from_slice::<Value>(body).is_ok();
    // UTF-8 JSON, lone surrogate escapes allowed (serde skips the strings of
    // fields a decoder does not read unchecked; `Value` refuses them).
    let structural = std::str::from_utf8(body).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
    let mut accepted = [false; 2];
    for (i, (name, decode)) in DECODERS.iter().enumerate() {
        let started = Instant::now();
        let outcome = decode(body);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{name}: {} bytes took {:?}",
            body.len(),
            started.elapsed()
        );
        let Some(error) = outcome else {
            assert!(
                structural,
                "{name} accepted a body that is not JSON: {}",
                String::from_utf8_lossy(&body[..body.len().min(3000)])
            );
            accepted[i] = true;
            continue;
        };
        let message = error.to_string();
        assert!(!message.is_empty(), "{name}: an empty error");
        assert!(
            message.len() <= body.len() + 256,
            "{name}: a {}-byte error for a {}-byte body",
            message.len(),
            body.len()
        );
        match &error {
            IngressError::Json(_) => {
                assert!(
                    !is_json,
                    "{name}: valid JSON called not JSON: {message}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(3000)])
                )
            }
            IngressError::Body(_) => {}
            IngressError::Field { field, .. } => {
                assert!(
                    structural,
                    "{name}: not JSON called a field error: {message}"
                );
                assert!(!field.is_empty(), "{name}: a field error names no field");
            }
            other => panic!("{name}: an unexpected error variant: {other:?}"),
        }
    }
    accepted
}

/// Valid requests in both shapes, with every feature the decoders read.
fn valid_requests() -> Vec<Value> {
    vec![
        json!({"model": "gpt-4o", "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K", "detail": "low"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}],
            "tools": [{"type": "function", "function": {"name": "look", "description": "d",
                "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}, "strict": true}}],
            "tool_choice": {"type": "function", "function": {"name": "look"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": true}},
            "max_completion_tokens": 64, "temperature": 0.5, "top_p": 0.9, "stop": ["\n"],
            "stream": true, "stream_options": {"include_usage": true}, "n": 1, "seed": 7}),
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 16, "stop": "END", "tool_choice": "auto", "parallel_tool_calls": false,
            "response_format": {"type": "json_object"}}),
        json!({"model": "claude-sonnet-4-5", "max_tokens": 256,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in Paris?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "21 C"}], "is_error": false}]}],
            "tools": [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
            "temperature": 0.2, "top_p": 0.8, "stop_sequences": ["\n\n"], "stream": true,
            "metadata": {"user_id": "u1"}}),
        json!({"model": "claude-haiku-4-5", "max_tokens": 8, "system": "short",
            "messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": "any"}}),
    ]
}

/// The JSON pointers of every value in `value` (the root is `""`).
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Values a mutation puts in: every JSON type, the numbers at the edges of
/// the integer types, and strings that are some field's valid value.
fn edge_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_value(),
        prop::sample::select(vec![
            json!(0),
            json!(-1),
            json!(u32::MAX),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1e308),
            json!(-0.5),
            json!(""),
            json!([]),
            json!({}),
            json!("user"),
            json!("assistant"),
            json!("tool"),
            json!("system"),
            json!("developer"),
            json!("function"),
            json!("text"),
            json!("image_url"),
            json!("image"),
            json!("tool_use"),
            json!("tool_result"),
            json!("json_schema"),
            json!("none"),
            json!("data:image/png;base64,"),
            json!("data:;base64"),
            json!("\u{0}\u{feff}é🌍"),
        ]),
    ]
}

/// One structure-aware edit: `at` picks the value, `op` what happens to it.
#[derive(Clone, Debug)]
struct Edit {
    at: prop::sample::Index,
    op: u8,
    value: Value,
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        (any::<prop::sample::Index>(), 0u8..7, edge_value()).prop_map(|(at, op, value)| Edit {
            at,
            op,
            value,
        }),
        1..5,
    )
}

/// Applies `edit` to `root`: replace a value (any, or a number by a
/// number), remove it, add a field next to it, repeat an array's item, or
/// wrap it in an array or an object.
fn apply(root: &mut Value, edit: &Edit) {
    let mut all = Vec::new();
    pointers(root, String::new(), &mut all);
    let numbers: Vec<String> = all
        .iter()
        .filter(|p| root.pointer(p).is_some_and(Value::is_number))
        .cloned()
        .collect();
    let path = if edit.op == 1 && !numbers.is_empty() {
        edit.at.get(&numbers).clone()
    } else {
        edit.at.get(&all).clone()
    };
    let (parent, last) = match path.rfind('/') {
        Some(slash) => (path[..slash].to_owned(), Some(path[slash + 1..].to_owned())),
        None => (String::new(), None),
    };
    let Some(target) = root.pointer_mut(&path) else {
        return;
    };
    match edit.op {
        0 | 1 => *target = edit.value.clone(),
        2 => {
            // Remove the value from its parent.
            let last = last.map(|l| l.replace("~1", "/").replace("~0", "~"));
            match (root.pointer_mut(&parent), last) {
                (Some(Value::Object(map)), Some(key)) => {
                    map.remove(&key);
                }
                (Some(Value::Array(items)), Some(i)) => {
                    if let Ok(i) = i.parse::<usize>()
                        && i < items.len()
                    {
                        items.remove(i);
                    }
                }
                _ => *root = Value::Null,
            }
        }
        3 => {
            // A field next to it, with a name the decoders know.
            let names = [
                "role",
                "content",
                "type",
                "text",
                "tool_calls",
                "tool_call_id",
                "id",
                "name",
                "input",
                "function",
                "arguments",
                "image_url",
                "url",
                "source",
                "messages",
                "max_tokens",
                "tools",
                "system",
                "unknown",
            ];
            let name = names[edit.at.index(names.len())];
            if let Value::Object(map) = target {
                map.insert(name.to_owned(), edit.value.clone());
            } else if let Some(Value::Object(map)) = root.pointer_mut(&parent) {
                map.insert(name.to_owned(), edit.value.clone());
            }
        }
        4 => {
            if let Value::Array(items) = target
                && let Some(first) = items.first().cloned()
            {
                items.extend(std::iter::repeat_n(first, 3));
            }
        }
        5 => *target = Value::Array(vec![target.take()]),
        _ => *target = json!({ "x": target.take() }),
    }
}

/// Byte-level damage after the structural edits: none, a cut, a flipped
/// byte, or bytes inserted (invalid UTF-8 among them).
fn bytes_edit() -> impl Strategy<Value = (u8, prop::sample::Index, Vec<u8>)> {
    (
        0u8..4,
        any::<prop::sample::Index>(),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 1..4),
            Just(b"\xff".to_vec()),
            Just(b"\xed\xa0\x80".to_vec()),
            Just(b"\\ud800".to_vec()),
            Just(b"[".to_vec()),
        ],
    )
}

fn damage(mut bytes: Vec<u8>, (kind, at, insert): &(u8, prop::sample::Index, Vec<u8>)) -> Vec<u8> {
    let i = at.index(bytes.len() + 1);
    match kind {
        1 => bytes.truncate(i),
        2 if i < bytes.len() => bytes[i] ^= 0x5a,
        3 => {
            bytes.splice(i..i, insert.iter().copied());
        }
        _ => {}
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn ingress_arbitrary_bytes(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        "[ -~]{0,256}".prop_map(String::into_bytes),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ]) {
        check_ingress(&body);
    }

    #[test]
    fn ingress_structure_aware_mutations(
        base in 0usize..4,
        edits in edits(),
        bytes in bytes_edit(),
    ) {
        let mut request = valid_requests().swap_remove(base);
        for edit in &edits {
            apply(&mut request, edit);
        }
        let body = damage(serde_json::to_vec(&request).unwrap(), &bytes);
        check_ingress(&body);
    }
}

#[test]
fn the_valid_requests_are_accepted_by_their_own_decoder() {
    for (i, request) in valid_requests().iter().enumerate() {
        let accepted = check_ingress(&serde_json::to_vec(request).unwrap());
        let own = usize::from(i >= 2);
        assert!(accepted[own], "request {i} refused by its own decoder");
    }
}

/// Bodies at the edge of size and depth, each decoded within the bound.
#[test]
fn ingress_big_and_deep_bodies_are_bounded() {
    // 100,000 levels: no stack overflow. Where the nesting is a value the
    // decoders keep as JSON (an extra field) the parser's recursion limit
    // (128) stops it, and the error says so. Elsewhere serde meets a value
    // of the wrong type first (`messages` is a list of objects, the body an
    // object). Either is `Json` or `Body`: a 400 at the gateway.
    let deep = |open: &str, close: &str, n: usize| format!("{}{}", open.repeat(n), close.repeat(n));
    let cases = [
        (deep("[", "]", 100_000), false),
        (deep("{\"a\":", "}", 100_000), false),
        ("[".repeat(100_000), false),
        (
            format!(
                r#"{{"model": "m", "max_tokens": 1, "messages": {}}}"#,
                deep("[", "]", 100_000)
            ),
            false,
        ),
        (
            format!(
                r#"{{"model": "m", "max_tokens": 1, "messages": [{{"role": "user", "content": "x"}}], "extra": {}}}"#,
                deep("[", "]", 100_000)
            ),
            true,
        ),
        (
            format!(
                r#"{{"model": "m", "max_tokens": 1, "messages": [{{"role": "user", "content": "x"}}], "extra": {}}}"#,
                deep("{\"a\":", "}", 100_000)
            ),
            true,
        ),
    ];
    for (body, at_the_limit) in &cases {
        for (name, decode) in DECODERS {
            let error = decode(body.as_bytes()).expect("refused");
            if *at_the_limit {
                assert!(
                    matches!(&error, IngressError::Json(m) | IngressError::Body(m)
                        if m.contains("recursion limit exceeded")),
                    "{name}: {error}"
                );
            } else {
                assert!(
                    matches!(error, IngressError::Json(_) | IngressError::Body(_)),
                    "{name}: {error}"
                );
            }
        }
    }
    // Nesting the parser allows (120 levels) inside a field the decoders
    // keep as JSON is read.
    let schema = format!("{}1{}", "{\"a\":".repeat(120), "}".repeat(120));
    let openai_body = format!(
        r#"{{"model": "m", "messages": [{{"role": "user", "content": "x"}}], "seed": {schema}}}"#
    );
    assert!(openai::wire::decode_request(openai_body.as_bytes()).is_ok());

    // 10,000 messages, both shapes: read in linear time.
    let turns: Vec<Value> = (0..10_000)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("m{i}")}))
        .collect();
    let body =
        serde_json::to_vec(&json!({"model": "m", "max_tokens": 8, "messages": turns})).unwrap();
    let started = Instant::now();
    let decoded = openai::wire::decode_request(&body).unwrap();
    assert_eq!(decoded.request.messages.len(), 10_000);
    let decoded = anthropic::wire::decode_request(&body).unwrap();
    assert_eq!(decoded.request.messages.len(), 10_000);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    check_ingress(&body);

    // Invalid UTF-8 in a string, in a key, and outside any string.
    for body in [
        &b"{\"model\": \"\xff\xfe\", \"max_tokens\": 1, \"messages\": []}"[..],
        b"{\"\xc3\x28\": 1}",
        b"\xef\xbb\xbf{}",
        b"{\"model\": \"\xed\xa0\x80\"}",
    ] {
        for (name, decode) in DECODERS {
            let error = decode(body).expect("refused");
            assert!(matches!(error, IngressError::Json(_)), "{name}: {error}");
        }
    }
}

/// A raw HTTP/1.1 server on loopback that answers every request with
/// `200 text/event-stream` and the bytes in its slot, then closes.
struct RawServer {
    addr: std::net::SocketAddr,
    body: Arc<Mutex<Vec<u8>>>,
}

impl RawServer {
    async fn start() -> RawServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(Vec::new()));
        let slot = body.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let answer = slot.lock().unwrap().clone();
                tokio::spawn(async move {
                    // Read the request (head and content-length body) first.
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length: usize = text[..end]
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            if request.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&answer).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        RawServer { addr, body }
    }
}

type Client = tower::util::BoxCloneSyncService<ChatRequest, staunch_core::ChatResponse, LlmError>;

/// Both clients against `server`, with short stream timeouts (the server
/// closes every answer, so they never have to fire).
fn stream_clients(server: &RawServer) -> [(&'static str, Client); 2] {
    let http = || {
        HttpOptions::new()
            .connect_timeout(Duration::from_secs(2))
            .first_token_timeout(Duration::from_secs(3))
            .idle_timeout(Duration::from_secs(3))
            .max_event_bytes(64 * 1024)
    };
    let base = format!("http://{}", server.addr);
    [
        (
            "openai",
            Client::new(
                OpenAi::new(
                    OpenAiConfig::new()
                        .base_url(format!("{base}/v1"))
                        .api_key(ApiKey::new("sk-test"))
                        .http(http()),
                )
                .unwrap(),
            ),
        ),
        (
            "anthropic",
            Client::new(
                Anthropic::new(
                    AnthropicConfig::new()
                        .base_url(base)
                        .api_key(ApiKey::new("sk-ant-test"))
                        .http(http()),
                )
                .unwrap(),
            ),
        ),
    ]
}

/// What a streamed call over `bytes` gave the caller.
#[derive(Debug)]
enum Streamed {
    /// An error before the commit point.
    Refused(LlmError),
    /// Committed; the events, and the error that ended the stream if any.
    Committed {
        events: usize,
        finished: bool,
        error: Option<LlmError>,
    },
}

async fn stream_once(client: &Client) -> Streamed {
    use tower::ServiceExt;
    let request = ChatRequest::new("m", vec![Message::user("hi")])
        .with_max_tokens(16)
        .with_stream(true);
    let mut answer = match client.clone().oneshot(request).await {
        Ok(answer) => answer,
        Err(error) => return Streamed::Refused(error),
    };
    let Some(mut stream) = answer.take_stream() else {
        // Not a stream: the answer was whole.
        return Streamed::Committed {
            events: 0,
            finished: true,
            error: None,
        };
    };
    let (mut events, mut finished, mut error) = (0, false, None);
    while let Some(item) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        match item {
            Ok(event) => {
                events += 1;
                finished |= matches!(event, StreamEvent::Finish(_));
                assert!(events < 100_000, "a stream without end");
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    Streamed::Committed {
        events,
        finished,
        error,
    }
}

/// Serves `bytes` as a streamed answer to both clients and checks what
/// each caller got: within the bound, a stream that ends cleanly only when
/// it finished, and every error a provider-side one (never `Fatal`: the
/// request was fine), tagged with the client's provider. With `garbage`
/// (bytes that are not a stream of the dialect) a refusal is a truncated
/// or malformed response.
fn check_stream(
    rt: &tokio::runtime::Runtime,
    server: &RawServer,
    clients: &[(&'static str, Client); 2],
    bytes: &[u8],
    garbage: bool,
) -> Result<(), TestCaseError> {
    *server.body.lock().unwrap() = bytes.to_vec();
    for (name, client) in clients {
        let outcome = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(20), stream_once(client)).await
            })
            .map_err(|_| TestCaseError::fail(format!("{name}: no end within 20 s")))?;
        let error = match &outcome {
            Streamed::Refused(e) => Some(e),
            Streamed::Committed {
                finished, error, ..
            } => {
                prop_assert!(
                    *finished || error.is_some(),
                    "{name}: a stream ended cleanly without finishing: {outcome:?}"
                );
                error.as_ref()
            }
        };
        if let Some(e) = error {
            prop_assert_ne!(e.class(), ErrorClass::Fatal, "{}: {:?}", name, e);
            if garbage && let Streamed::Refused(e) = &outcome {
                prop_assert!(
                    matches!(
                        e.kind,
                        ErrorKind::TruncatedResponse | ErrorKind::MalformedResponse
                    ),
                    "{name}: garbage refused as {:?}: {e}",
                    e.kind
                );
            }
        }
    }
    Ok(())
}

/// A valid OpenAI stream: text, a tool call in two pieces, the finish,
/// usage and `[DONE]`.
fn openai_stream() -> Vec<(Option<&'static str>, Value)> {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    vec![
        (
            None,
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        ),
        (None, chunk(json!({"content": "Hello"}), Value::Null)),
        (None, chunk(json!({"content": " there"}), Value::Null)),
        (
            None,
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                             "function": {"name": "look", "arguments": ""}}]}),
                Value::Null,
            ),
        ),
        (
            None,
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\":1}"}}]}),
                Value::Null,
            ),
        ),
        (None, chunk(json!({}), json!("tool_calls"))),
        (
            None,
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                      "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}),
        ),
        (None, json!("[DONE]")),
    ]
}

/// A valid Anthropic stream: a ping, text, a tool call, the stop.
fn anthropic_stream() -> Vec<(Option<&'static str>, Value)> {
    let e = |name: &'static str, data: Value| (Some(name), data);
    vec![
        e(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "model": "claude", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ),
        e("ping", json!({"type": "ping"})),
        e(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        e(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "Hello"}}),
        ),
        e(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        e(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {}}}),
        ),
        e(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "{\"x\":1}"}}),
        ),
        e(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ),
        e(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 7}}),
        ),
        e("message_stop", json!({"type": "message_stop"})),
    ]
}

/// `frames` written as SSE (`[DONE]` as the bare string it is).
fn sse_text(frames: &[(Option<&str>, Value)]) -> Vec<u8> {
    let mut out = String::new();
    for (event, data) in frames {
        if let Some(event) = event {
            out.push_str(&format!("event: {event}\n"));
        }
        match data {
            Value::String(s) => out.push_str(&format!("data: {s}\n\n")),
            other => out.push_str(&format!("data: {other}\n\n")),
        }
    }
    out.into_bytes()
}

/// Runs `cases` cases of `strategy` through `check` with one runtime and
/// one raw server (proptest's macro wants a synchronous body).
fn run_streams<S: Strategy>(
    cases: u32,
    strategy: S,
    check: impl Fn(
        &tokio::runtime::Runtime,
        &RawServer,
        &[(&'static str, Client); 2],
        S::Value,
    ) -> Result<(), TestCaseError>,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(RawServer::start());
    let clients = rt.block_on(async { stream_clients(&server) });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |value| check(&rt, &server, &clients, value))
        .unwrap();
}

#[test]
fn the_valid_streams_finish() {
    run_streams(1, Just(()), |rt, server, clients, ()| {
        for (i, bytes) in [sse_text(&openai_stream()), sse_text(&anthropic_stream())]
            .into_iter()
            .enumerate()
        {
            *server.body.lock().unwrap() = bytes;
            let got = rt.block_on(stream_once(&clients[i].1));
            prop_assert!(
                matches!(got, Streamed::Committed { finished: true, error: None, events } if events >= 4),
                "{}: {got:?}",
                clients[i].0
            );
        }
        Ok(())
    });
}

#[test]
fn sse_arbitrary_bytes() {
    run_streams(
        48,
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..1024),
            "[ -~\n\r]{0,512}".prop_map(String::into_bytes),
            // SSE-shaped lines around arbitrary data.
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "data: ", "data:", "event: ", ": ", "id: ", "", "retry: "
                    ]),
                    "[ -~]{0,40}",
                    prop::sample::select(vec!["\n", "\r\n", "\r", "\n\n"]),
                ),
                0..30,
            )
            .prop_map(|lines| lines
                .into_iter()
                .map(|(a, b, c)| format!("{a}{b}{c}"))
                .collect::<String>()
                .into_bytes()),
        ],
        |rt, server, clients, bytes| check_stream(rt, server, clients, &bytes, true),
    );
}

#[test]
fn sse_structure_aware_mutations() {
    run_streams(
        64,
        (
            any::<bool>(),
            edits(),
            0u8..4,
            any::<prop::sample::Index>(),
            bytes_edit(),
        ),
        |rt, server, clients, (anthropic_shape, edits, frame_op, at, bytes)| {
            let mut frames = if anthropic_shape {
                anthropic_stream()
            } else {
                openai_stream()
            };
            // Edit the frames' JSON as one document, then maybe drop,
            // repeat or swap a frame.
            let mut doc = Value::Array(frames.iter().map(|(_, v)| v.clone()).collect());
            for edit in &edits {
                apply(&mut doc, edit);
            }
            if let Value::Array(values) = doc {
                frames = frames
                    .iter()
                    .zip(values.into_iter().chain(std::iter::repeat(Value::Null)))
                    .map(|((event, _), v)| (*event, v))
                    .collect();
            }
            let i = at.index(frames.len());
            match frame_op {
                1 => {
                    frames.remove(i);
                }
                2 => frames.insert(i, frames[i].clone()),
                3 => {
                    let next = (i + 1) % frames.len();
                    frames.swap(i, next);
                }
                _ => {}
            }
            let bytes = damage(sse_text(&frames), &bytes);
            check_stream(rt, server, clients, &bytes, false)
        },
    );
}

/// serde_json reports a number or `null` where an enum is expected as a
/// syntax error ("expected value"); the decoders call it what it is, a
/// body of the wrong shape, not a body that is not JSON (found by
/// `ingress_structure_aware_mutations`).
#[test]
fn a_wrong_type_where_an_enum_goes_is_a_shape_error() {
    for body in [
        &br#"{"model": "m", "max_tokens": 1, "messages": [{"role": 7, "content": "x"}]}"#[..],
        br#"{"model": "m", "max_tokens": 1, "messages": [[null, 4]]}"#,
        br#"{"model": "m", "max_tokens": 1, "messages": [{"role": null, "content": "x"}]}"#,
    ] {
        for (name, decode) in DECODERS {
            let error = decode(body).expect("refused");
            assert!(matches!(error, IngressError::Body(_)), "{name}: {error}");
        }
    }
}

/// JSON is UTF-8 (RFC 8259 §8.1): invalid UTF-8 anywhere in a body is
/// refused as not JSON, also inside a field the decoders do not read
/// (serde skips those strings without checking them; found by
/// `ingress_structure_aware_mutations`).
#[test]
fn invalid_utf8_in_an_ignored_field_is_refused() {
    let openai_body = b"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stream_options\": {\"include_usage\": true, \"x\": \"\xff\"}}";
    let anthropic_body = b"{\"model\": \"m\", \"max_tokens\": 1, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tools\": [{\"name\": \"t\", \"x\": \"\xc3\x28\"}]}";
    let error = openai::wire::decode_request(openai_body).expect_err("refused");
    assert!(matches!(error, IngressError::Json(_)), "{error}");
    let error = anthropic::wire::decode_request(anthropic_body).expect_err("refused");
    assert!(matches!(error, IngressError::Json(_)), "{error}");
}

/// A tool-call piece whose `index` is far past any real answer's (a
/// mutation of `sse_structure_aware_mutations` can write one) is a
/// malformed event, skipped like any other, and never reaches the
/// accumulator: with an index of 4,294,967,295 it would fill in ~300 GB
/// of empty calls before it. 1,000,000 (72 MB of empty calls) proves the
/// bound without risking the machine if it is ever lost.
#[test]
fn a_huge_tool_call_index_is_malformed_not_an_allocation() {
    use tower::ServiceExt;
    run_streams(1, Just(()), |rt, server, clients, ()| {
        let mut frames = openai_stream();
        frames[3].1["choices"][0]["delta"]["tool_calls"][0]["index"] = json!(1_000_000);
        *server.body.lock().unwrap() = sse_text(&frames);
        let request = ChatRequest::new("m", vec![Message::user("hi")])
            .with_max_tokens(16)
            .with_stream(true);
        let indexes = rt.block_on(async {
            let mut answer = clients[0].1.clone().oneshot(request).await.unwrap();
            let mut stream = answer.take_stream().unwrap();
            let mut indexes = Vec::new();
            while let Some(item) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
                if let Ok(StreamEvent::ToolCallDelta { index, .. }) = item {
                    indexes.push(index);
                }
            }
            indexes
        });
        prop_assert!(indexes.iter().all(|&i| i < 4096), "{indexes:?}");
        Ok(())
    });
}
