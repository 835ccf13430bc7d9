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
// Completions), `anthropic::wire::decode_request` (Messages), and Gemini's
// `generateContent` and the Responses API read through the ingress seam
// the gateway uses (`ChatIngress::decode`, Gemini's model named by the
// URL's `Endpoint`); the providers' wire modules have no embeddings
// ingress decoder yet. The SSE parsers are private to the crate, so they
// are driven where they are used: the four streaming clients read a
// streamed answer from a raw loopback server that sends the bytes under
// test.

use staunch_core::{ChatRequest, ErrorClass, ErrorKind, LlmError, Message, StreamEvent};
use staunch_providers::ingress::{ChatIngress, Endpoint, GeminiContent, OpenAiResponsesApi};
use staunch_providers::openai::wire::IngressError;
use staunch_providers::{
    Anthropic, AnthropicConfig, ApiKey, Gemini, GeminiConfig, HttpOptions, OpenAi, OpenAiConfig,
    OpenAiResponses, OpenAiResponsesConfig,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One ingress decoder: its name, and what it made of a body (`None` when
/// it read the body as a request).
type Decoder = (&'static str, fn(&[u8]) -> Option<IngressError>);

/// The model a Gemini request's URL names
/// (`/v1beta/models/gemini-2.5-flash:generateContent`).
const GEMINI_MODEL: &str = "gemini-2.5-flash";

const DECODERS: [Decoder; 4] = [
    ("openai", |b| openai::wire::decode_request(b).err()),
    ("anthropic", |b| anthropic::wire::decode_request(b).err()),
    ("gemini", |b| {
        GeminiContent
            .decode(b, &Endpoint::new(Some(GEMINI_MODEL), false))
            .err()
    }),
    ("responses", |b| {
        OpenAiResponsesApi.decode(b, &Endpoint::default()).err()
    }),
];

/// The index of the decoder called `name` in [`DECODERS`].
fn decoder(name: &str) -> usize {
    DECODERS
        .iter()
        .position(|(n, _)| *n == name)
        .expect("a decoder of that name")
}

/// Decodes `body` with every decoder and checks the class of the error:
/// valid JSON of the wrong shape is `Body` or a `Field` naming the field,
/// never `Json`; a body that is not JSON (syntax, cut, invalid UTF-8,
/// nested past the parser's limit) is `Json`, or `Body` when the parser
/// met a value of the wrong type before the flaw (serde reads in one pass),
/// never accepted and never a `Field` error. Every message is non-empty and
/// bounded by the body (it may quote a piece of it, never more). Returns
/// which decoders accepted it.
fn check_ingress(body: &[u8]) -> [bool; DECODERS.len()] {
    let is_json = serde_json::from_slice::<Value>(body).is_ok();
    // UTF-8 JSON, lone surrogate escapes allowed (serde skips the strings of
    // fields a decoder does not read unchecked; `Value` refuses them).
    let structural = std::str::from_utf8(body).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
    let mut accepted = [false; DECODERS.len()];
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

/// Valid requests in every shape, each with the name of its decoder, with
/// every feature the decoders read.
fn valid_requests() -> Vec<(&'static str, Value)> {
    vec![
        (
            "openai",
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
        ),
        (
            "openai",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 16, "stop": "END", "tool_choice": "auto", "parallel_tool_calls": false,
            "response_format": {"type": "json_object"}}),
        ),
        (
            "anthropic",
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
        ),
        (
            "anthropic",
            json!({"model": "claude-haiku-4-5", "max_tokens": 8, "system": "short",
            "messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": "any"}}),
        ),
        // google-genai's camelCase: a system instruction, an image, a
        // function call (with its id and thought signature) and its
        // response, a declared tool, a forced choice, JSON output and
        // fields kept as Gemini extras.
        (
            "gemini",
            json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [
                    {"text": "Weather in Paris?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
                    {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/a.jpg"}}]},
                {"role": "model", "parts": [
                    {"text": "Let me look."},
                    {"functionCall": {"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}},
                     "thoughtSignature": "c2ln"}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"id": "call_1", "name": "get_weather", "response": {"output": "21 C"}}}]},
                {"role": "model", "parts": [
                    {"text": "thinking", "thought": true},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Lyon"}}}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"error": "no station"}}}]}],
            "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "d",
                "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            "generationConfig": {"maxOutputTokens": 64, "temperature": 0.5, "topP": 0.9,
                "stopSequences": ["\n"], "candidateCount": 1, "responseMimeType": "application/json",
                "responseSchema": {"type": "OBJECT"}, "thinkingConfig": {"thinkingBudget": 0}},
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]}),
        ),
        // The proto names (snake_case), a content without a role.
        (
            "gemini",
            json!({
            "system_instruction": {"parts": [{"text": "short"}]},
            "contents": [{"parts": [{"text": "hi"}]}],
            "tools": [{"function_declarations": [{"name": "f", "parameters_json_schema": {"type": "object"}}]}],
            "tool_config": {"function_calling_config": {"mode": "NONE"}},
            "generation_config": {"max_output_tokens": 8, "response_mime_type": "application/json",
                "response_json_schema": {"type": "object"}}}),
        ),
        // Instructions, every kind of input item, a function tool, a forced
        // choice, `text.format` and fields kept as Responses extras.
        (
            "responses",
            json!({"model": "gpt-4.1", "instructions": "Be brief.", "store": false,
            "input": [
                {"role": "user", "content": [
                    {"type": "input_text", "text": "What is in this picture?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0K"},
                    {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"}]},
                {"type": "message", "role": "assistant", "content": [
                    {"type": "output_text", "text": "Let me look.", "annotations": []}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "look",
                 "arguments": "{\"x\":1}", "status": "completed"},
                {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
                {"role": "developer", "content": "Answer in French."}],
            "tools": [{"type": "function", "name": "look", "description": "d",
                "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}, "strict": true}],
            "tool_choice": {"type": "function", "name": "look"},
            "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}, "strict": true},
                "verbosity": "low"},
            "max_output_tokens": 64, "temperature": 0.5, "top_p": 0.9, "parallel_tool_calls": false,
            "stream": true, "metadata": {"user_id": "u1"}, "include": ["reasoning.encrypted_content"],
            "reasoning": {"effort": "low"}}),
        ),
        (
            "responses",
            json!({"model": "gpt-4.1-mini", "input": "hi", "tool_choice": "auto",
            "text": {"format": {"type": "json_object"}}, "previous_response_id": null, "background": false}),
        ),
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
            // Gemini's and the Responses API's.
            json!("model"),
            json!("ANY"),
            json!("NONE"),
            json!("STOP"),
            json!("MAX_TOKENS"),
            json!("application/json"),
            json!("image/png"),
            json!("message"),
            json!("input_text"),
            json!("output_text"),
            json!("input_image"),
            json!("function_call"),
            json!("function_call_output"),
            json!("reasoning"),
            json!("call_1"),
            json!("response.completed"),
            json!("response.output_item.added"),
            json!("response.incomplete"),
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
                "parts",
                "contents",
                "functionCall",
                "functionResponse",
                "args",
                "response",
                "inlineData",
                "thought",
                "generationConfig",
                "finishReason",
                "candidates",
                "input",
                "instructions",
                "call_id",
                "output",
                "format",
                "store",
                "previous_response_id",
                "delta",
                "output_index",
                "item",
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
        base in any::<prop::sample::Index>(),
        edits in edits(),
        bytes in bytes_edit(),
    ) {
        let mut requests = valid_requests();
        let (_, mut request) = requests.swap_remove(base.index(requests.len()));
        for edit in &edits {
            apply(&mut request, edit);
        }
        let body = damage(serde_json::to_vec(&request).unwrap(), &bytes);
        check_ingress(&body);
    }
}

#[test]
fn the_valid_requests_are_accepted_by_their_own_decoder() {
    for (i, (name, request)) in valid_requests().iter().enumerate() {
        let body = serde_json::to_vec(request).unwrap();
        let accepted = check_ingress(&body);
        if !accepted[decoder(name)] {
            let (_, decode) = DECODERS[decoder(name)];
            panic!("request {i} refused by {name}: {:?}", decode(&body));
        }
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
    let gemini_body = format!(
        r#"{{"contents": [{{"parts": [{{"text": "x"}}]}}], "generationConfig": {{"responseMimeType": "application/json", "responseSchema": {schema}}}}}"#
    );
    assert!(DECODERS[decoder("gemini")].1(gemini_body.as_bytes()).is_none());
    let responses_body = format!(r#"{{"model": "m", "input": "x", "metadata": {schema}}}"#);
    assert!(DECODERS[decoder("responses")].1(responses_body.as_bytes()).is_none());

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

    // 10,000 turns in Gemini's and the Responses API's shapes.
    let contents: Vec<Value> = (0..10_000)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "model" }, "parts": [{"text": format!("m{i}")}]}))
        .collect();
    let body = serde_json::to_vec(&json!({"contents": contents})).unwrap();
    let started = Instant::now();
    let inbound = GeminiContent
        .decode(&body, &Endpoint::new(Some(GEMINI_MODEL), false))
        .unwrap();
    assert_eq!(inbound.request.messages.len(), 10_000);
    let input: Vec<Value> = (0..10_000)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("m{i}")}))
        .collect();
    let body = serde_json::to_vec(&json!({"model": "m", "input": input})).unwrap();
    let inbound = OpenAiResponsesApi
        .decode(&body, &Endpoint::default())
        .unwrap();
    assert_eq!(inbound.request.messages.len(), 10_000);
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

/// The four streaming clients against `server`, in the order of the valid
/// streams of [`valid_streams`], with short stream timeouts (the server
/// closes every answer, so they never have to fire).
fn stream_clients(server: &RawServer) -> [(&'static str, Client); 4] {
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
                        .base_url(&base)
                        .api_key(ApiKey::new("sk-ant-test"))
                        .http(http()),
                )
                .unwrap(),
            ),
        ),
        (
            "gemini",
            Client::new(
                Gemini::new(
                    GeminiConfig::new()
                        .base_url(&base)
                        .api_key(ApiKey::new("AIza-test"))
                        .http(http()),
                )
                .unwrap(),
            ),
        ),
        (
            "responses",
            Client::new(
                OpenAiResponses::new(
                    OpenAiResponsesConfig::new()
                        .base_url(format!("{base}/v1"))
                        .api_key(ApiKey::new("sk-test"))
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

/// Serves `bytes` as a streamed answer to every client and checks what
/// each caller got: within the bound, a stream that ends cleanly only when
/// it finished, and every error a provider-side one (never `Fatal`: the
/// request was fine), tagged with the client's provider. With `garbage`
/// (bytes that are not a stream of the dialect) a refusal is a truncated
/// or malformed response.
fn check_stream(
    rt: &tokio::runtime::Runtime,
    server: &RawServer,
    clients: &[(&'static str, Client)],
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

/// A valid Gemini stream (`:streamGenerateContent?alt=sse`): untyped
/// `data:` frames, each a `GenerateContentResponse`: text, a whole function
/// call with its thought signature, and the finish with the usage; no
/// terminator line.
fn gemini_stream() -> Vec<(Option<&'static str>, Value)> {
    let chunk = |parts: Value, finish: Option<&str>, usage: Value| {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        (
            None,
            json!({"candidates": [candidate], "usageMetadata": usage,
                   "modelVersion": "gemini-2.5-flash", "responseId": "resp_1"}),
        )
    };
    let early = json!({"promptTokenCount": 5, "totalTokenCount": 5});
    vec![
        chunk(json!([{"text": "Hello"}]), None, early.clone()),
        chunk(json!([{"text": " there"}]), None, early.clone()),
        chunk(
            json!([{"functionCall": {"name": "look", "args": {"x": 1}}, "thoughtSignature": "c2ln"}]),
            None,
            early,
        ),
        chunk(
            json!([{"text": ""}]),
            Some("STOP"),
            json!({"promptTokenCount": 5, "candidatesTokenCount": 7, "totalTokenCount": 12}),
        ),
    ]
}

/// A valid Responses stream: typed `event:` and `data:` frames, numbered,
/// for a message's text in two deltas and a function call whose arguments
/// come in two deltas, ending with `response.completed`.
fn responses_stream() -> Vec<(Option<&'static str>, Value)> {
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_1", "object": "response", "created_at": 1, "status": status,
               "model": "gpt-4.1", "output": output, "usage": usage})
    };
    let message = |status: &str, text: &str| {
        json!({"type": "message", "id": "msg_1", "status": status, "role": "assistant",
               "content": if text.is_empty() { json!([]) } else {
                   json!([{"type": "output_text", "text": text, "annotations": []}]) }})
    };
    let call = |status: &str, arguments: &str| {
        json!({"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "look",
               "arguments": arguments, "status": status})
    };
    let events = vec![
        (
            "response.created",
            json!({"response": response("in_progress", json!([]), Value::Null)}),
        ),
        (
            "response.in_progress",
            json!({"response": response("in_progress", json!([]), Value::Null)}),
        ),
        (
            "response.output_item.added",
            json!({"output_index": 0, "item": message("in_progress", "")}),
        ),
        (
            "response.content_part.added",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
        (
            "response.output_text.delta",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hello"}),
        ),
        (
            "response.output_text.delta",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": " there"}),
        ),
        (
            "response.output_text.done",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "text": "Hello there"}),
        ),
        (
            "response.content_part.done",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0,
                   "part": {"type": "output_text", "text": "Hello there", "annotations": []}}),
        ),
        (
            "response.output_item.done",
            json!({"output_index": 0, "item": message("completed", "Hello there")}),
        ),
        (
            "response.output_item.added",
            json!({"output_index": 1, "item": call("in_progress", "")}),
        ),
        (
            "response.function_call_arguments.delta",
            json!({"item_id": "fc_1", "output_index": 1, "delta": "{\"x\":"}),
        ),
        (
            "response.function_call_arguments.delta",
            json!({"item_id": "fc_1", "output_index": 1, "delta": "1}"}),
        ),
        (
            "response.function_call_arguments.done",
            json!({"item_id": "fc_1", "output_index": 1, "arguments": "{\"x\":1}"}),
        ),
        (
            "response.output_item.done",
            json!({"output_index": 1, "item": call("completed", "{\"x\":1}")}),
        ),
        (
            "response.completed",
            json!({"response": response(
                "completed",
                json!([message("completed", "Hello there"), call("completed", "{\"x\":1}")]),
                json!({"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0},
                       "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0},
                       "total_tokens": 12}),
            )}),
        ),
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, (name, mut data))| {
            data["type"] = json!(name);
            data["sequence_number"] = json!(i);
            (Some(name), data)
        })
        .collect()
}

/// The valid streams, in the order of [`stream_clients`].
fn valid_streams() -> [Vec<(Option<&'static str>, Value)>; 4] {
    [
        openai_stream(),
        anthropic_stream(),
        gemini_stream(),
        responses_stream(),
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
        &[(&'static str, Client)],
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
        for (i, frames) in valid_streams().iter().enumerate() {
            *server.body.lock().unwrap() = sse_text(frames);
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
            any::<prop::sample::Index>(),
            edits(),
            0u8..4,
            any::<prop::sample::Index>(),
            bytes_edit(),
        ),
        |rt, server, clients, (shape, edits, frame_op, at, bytes)| {
            let mut streams = valid_streams();
            let mut frames = std::mem::take(&mut streams[shape.index(streams.len())]);
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
/// `ingress_structure_aware_mutations`). Gemini's and the Responses
/// decoders read roles as strings or JSON values, not serde enums: the
/// same wrong types in their bodies are a shape error or a field error
/// naming the role, never "not JSON".
#[test]
fn a_wrong_type_where_an_enum_goes_is_a_shape_error() {
    for body in [
        &br#"{"model": "m", "max_tokens": 1, "messages": [{"role": 7, "content": "x"}]}"#[..],
        br#"{"model": "m", "max_tokens": 1, "messages": [[null, 4]]}"#,
        br#"{"model": "m", "max_tokens": 1, "messages": [{"role": null, "content": "x"}]}"#,
    ] {
        for (name, decode) in &DECODERS[..2] {
            let error = decode(body).expect("refused");
            assert!(matches!(error, IngressError::Body(_)), "{name}: {error}");
        }
    }
    for (name, body, field) in [
        (
            "gemini",
            &br#"{"contents": [{"role": 7, "parts": [{"text": "x"}]}]}"#[..],
            None,
        ),
        ("gemini", br#"{"contents": [[null, 4]]}"#, None),
        (
            "gemini",
            br#"{"contents": [{"role": "system", "parts": [{"text": "x"}]}]}"#,
            Some("contents[0].role"),
        ),
        (
            "responses",
            br#"{"model": "m", "input": [{"role": 7, "content": "x"}]}"#,
            Some("input[0].role"),
        ),
        (
            "responses",
            br#"{"model": "m", "input": [[null, 4]]}"#,
            Some("input[0]"),
        ),
        (
            "responses",
            br#"{"model": "m", "input": [{"role": null, "content": "x"}]}"#,
            Some("input[0].role"),
        ),
        (
            "responses",
            br#"{"model": "m", "input": [{"type": 7, "role": "user", "content": "x"}]}"#,
            Some("input[0].type"),
        ),
    ] {
        let (_, decode) = DECODERS[decoder(name)];
        let error = decode(body).expect("refused");
        match field {
            None => assert!(matches!(error, IngressError::Body(_)), "{name}: {error}"),
            Some(field) => assert_eq!(error.field(), Some(field), "{name}: {error}"),
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
    let gemini_body = b"{\"contents\": [{\"parts\": [{\"text\": \"hi\"}]}], \"safetySettings\": [{\"category\": \"\xff\"}]}";
    let responses_body =
        b"{\"model\": \"m\", \"input\": \"hi\", \"metadata\": {\"k\": \"\xed\xa0\x80\"}}";
    for (name, body) in [("gemini", &gemini_body[..]), ("responses", responses_body)] {
        let (_, decode) = DECODERS[decoder(name)];
        let error = decode(body).expect("refused");
        assert!(matches!(error, IngressError::Json(_)), "{name}: {error}");
    }
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

/// A tool history of 10,000 calls and 10,000 results in every shape
/// (about 1.2 MB each, under the gateway's 2 MB default body limit), the
/// results answering the last call or the calls in order: each decoder
/// reads it within the bound of `check_ingress`. Gemini's and the
/// Responses decoders matched each result by a scan of every call before
/// it, and took 3.9 s and 2.8 s here (20 s and 5.8 s at 20,000).
#[test]
fn a_long_tool_history_is_read_in_linear_time() {
    let n = 10_000;
    let last = format!("c{}", n - 1);
    let mut input: Vec<Value> = (0..n)
        .map(|i| json!({"type": "function_call", "call_id": format!("c{i}"), "name": "f"}))
        .collect();
    input.extend(
        (0..n).map(|_| json!({"type": "function_call_output", "call_id": last, "output": ""})),
    );
    let gemini_calls: Vec<Value> = (0..n)
        .map(|i| json!({"functionCall": {"name": "f", "id": format!("c{i}")}}))
        .collect();
    let gemini_results: Vec<Value> = (0..n)
        .map(|_| json!({"functionResponse": {"name": "f"}}))
        .collect();
    let openai_calls: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("c{i}"), "type": "function", "function": {"name": "f", "arguments": "{}"}}))
        .collect();
    let mut messages = vec![
        json!({"role": "user", "content": "x"}),
        json!({"role": "assistant", "tool_calls": openai_calls}),
    ];
    messages.extend((0..n).map(|_| json!({"role": "tool", "tool_call_id": last, "content": ""})));
    let anthropic_calls: Vec<Value> = (0..n)
        .map(|i| json!({"type": "tool_use", "id": format!("c{i}"), "name": "f", "input": {}}))
        .collect();
    let anthropic_results: Vec<Value> = (0..n)
        .map(|i| json!({"type": "tool_result", "tool_use_id": format!("c{i}"), "content": ""}))
        .collect();
    for (name, body) in [
        ("openai", json!({"model": "m", "messages": messages})),
        (
            "anthropic",
            json!({"model": "m", "max_tokens": 1, "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": anthropic_calls},
                {"role": "user", "content": anthropic_results}]}),
        ),
        (
            "gemini",
            json!({"contents": [
                {"role": "user", "parts": [{"text": "x"}]},
                {"role": "model", "parts": gemini_calls},
                {"role": "user", "parts": gemini_results}]}),
        ),
        ("responses", json!({"model": "m", "input": input})),
    ] {
        let body = serde_json::to_vec(&body).unwrap();
        assert!(check_ingress(&body)[decoder(name)], "{name} refused it");
    }
}
