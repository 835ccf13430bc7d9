//! Serializing a request costs memory proportional to its body, not a
//! second JSON tree: 60,000 tiny messages (about 1.8 MB of JSON) are
//! encoded through the clients' own encoder under a counting allocator.

use staunch_core::{ChatRequest, Dialect, Message};
use staunch_test::alloc::CountingAllocator;
use std::sync::Mutex;

#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator::new();

/// The tests share the counters: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const MESSAGES: usize = 60_000;

fn big_request() -> ChatRequest {
    let messages: Vec<Message> = (0..MESSAGES)
        .map(|i| {
            if i % 2 == 0 {
                Message::user(format!("{}", i % 10))
            } else {
                Message::assistant(format!("{}", i % 10))
            }
        })
        .collect();
    ChatRequest::new("gpt-4o", messages)
        .with_max_tokens(16)
        .with_stop(["END"])
        .with_extra(Dialect::OpenAi, "seed", 42)
}

/// The peak of extra bytes live while `encode` runs, and the body length.
fn measure(encode: impl FnOnce() -> Vec<u8>) -> (usize, usize) {
    let base = HEAP.live();
    HEAP.reset_peak();
    let body = encode();
    let peak = HEAP.peak() - base;
    let len = body.len();
    // The body must be real JSON with every message in it.
    let value: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
    let sent = value["messages"].as_array().map_or(0, Vec::len);
    assert_eq!(sent, MESSAGES, "every message is in the body");
    drop(value);
    (peak, len)
}

#[test]
fn the_openai_body_is_serialized_without_a_second_tree() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let request = big_request();
    let (peak, len) =
        measure(|| staunch_providers::openai::wire::encode_request(&request).unwrap());
    println!(
        "openai: body {len} bytes, peak extra allocation {peak} bytes ({:.2}x)",
        peak as f64 / len as f64
    );
    assert!(len > 1_000_000, "the body is about 1.8 MB: {len}");
    assert!(peak < 3 * len, "peak {peak} bytes for a {len}-byte body");
}

#[test]
fn the_anthropic_body_is_serialized_without_a_second_tree() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let request = big_request();
    let (peak, len) =
        measure(|| staunch_providers::anthropic::wire::encode_request(&request, 4096).unwrap());
    println!(
        "anthropic: body {len} bytes, peak extra allocation {peak} bytes ({:.2}x)",
        peak as f64 / len as f64
    );
    assert!(len > 1_000_000, "the body is about 1.8 MB: {len}");
    assert!(peak < 3 * len, "peak {peak} bytes for a {len}-byte body");
}

/// The streamed body means what the request says: typed fields, tool call
/// ids, system messages lifted, and extras merged in (replacing a typed
/// field of the same name).
#[test]
fn the_streamed_bodies_carry_every_field_and_the_extras_win() {
    use serde_json::{Value, json};
    use staunch_core::Role;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let call = staunch_core::ToolCall::new("call_1", "answer", r#"{"q":1}"#);
    let request = ChatRequest::new(
        "gpt-4o",
        vec![
            Message::system("Be \"brief\"."),
            Message::system("Use SI units."),
            Message::user("hi").with_name("ann"),
            Message::assistant_tool_calls("", vec![call]),
            Message::tool_result("call_1", "42"),
            Message::assistant("ok"),
        ],
    )
    .with_max_tokens(16)
    .with_temperature(0.5)
    .with_top_p(0.25)
    .with_stop(["END"])
    .with_extra(Dialect::OpenAi, "seed", 42)
    .with_extra(Dialect::OpenAi, "max_tokens", 99)
    .with_extra(Dialect::Anthropic, "top_k", 5);
    assert_eq!(request.messages[4].role, Role::Tool);

    let openai = staunch_providers::openai::wire::encode_request(&request).unwrap();
    let openai: Value = serde_json::from_slice(&openai).unwrap();
    assert_eq!(
        openai,
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Be \"brief\"."},
                {"role": "system", "content": "Use SI units."},
                {"role": "user", "content": "hi", "name": "ann"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "answer", "arguments": "{\"q\":1}"}}
                ]},
                {"role": "tool", "content": "42", "tool_call_id": "call_1"},
                {"role": "assistant", "content": "ok"},
            ],
            "max_tokens": 99,
            "temperature": 0.5,
            "top_p": 0.25,
            "stop": ["END"],
            "seed": 42,
        })
    );

    let anthropic = staunch_providers::anthropic::wire::encode_request(&request, 4096).unwrap();
    let anthropic: Value = serde_json::from_slice(&anthropic).unwrap();
    assert_eq!(
        anthropic,
        json!({
            "model": "gpt-4o",
            "max_tokens": 16,
            "system": "Be \"brief\".\n\nUse SI units.",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "answer", "input": {"q": 1}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "42"}
                ]},
                {"role": "assistant", "content": "ok"},
            ],
            "temperature": 0.5,
            "top_p": 0.25,
            "stop_sequences": ["END"],
            "top_k": 5,
        })
    );

    // Without system messages or a max_tokens, the defaults of old.
    let plain = ChatRequest::new("claude", vec![Message::user("x")]);
    let body = staunch_providers::anthropic::wire::encode_request(&plain, 4096).unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({"model": "claude", "max_tokens": 4096, "messages": [{"role": "user", "content": "x"}]})
    );
    let body = staunch_providers::openai::wire::encode_request(&plain).unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({"model": "claude", "messages": [{"role": "user", "content": "x"}]})
    );
}
