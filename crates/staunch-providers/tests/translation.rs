//! Translation between the dialects and the neutral model, both ways: every
//! item of an agent's conversation (tools, tool calls, tool results, images,
//! developer messages, JSON output) survives OpenAI -> neutral -> Anthropic
//! -> neutral, and what a dialect can't express is refused before the wire.

use http::HeaderMap;
use proptest::prelude::*;
use serde_json::{Value, json};
use staunch_core::{
    ChatRequest, ContentPart, Dialect, ErrorKind, FinishReason, Message, ResponseFormat, Role,
    ToolCall, ToolChoice, ToolDefinition,
};
use staunch_providers::{anthropic, openai};

fn body(bytes: Vec<u8>) -> Value {
    serde_json::from_slice(&bytes).expect("valid JSON")
}

/// An agent's request as OpenAI documents it: developer message, tools,
/// an assistant turn with two parallel calls, their results, an image.
fn openai_agent_request() -> Value {
    json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "developer", "content": "You are a weather bot."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is the weather in Paris and Oslo? Here is a map."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_def", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_abc", "content": "{\"celsius\": 21}"},
            {"role": "tool", "tool_call_id": "call_def", "content": "{\"celsius\": 4}"}
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "strict": true
        }}],
        "tool_choice": "auto",
        "parallel_tool_calls": true,
        "max_tokens": 300,
        "seed": 11
    })
}

#[test]
fn an_openai_agent_request_round_trips_through_the_neutral_model() {
    let original = openai_agent_request();
    let decoded = openai::wire::decode_request(original.to_string().as_bytes()).unwrap();
    let request = &decoded.request;
    assert_eq!(request.messages[0].role, Role::Developer);
    assert!(request.messages[1].content.has_images());
    assert_eq!(request.messages[2].tool_calls.len(), 2);
    assert_eq!(
        request.messages[3].tool_call_id.as_deref(),
        Some("call_abc")
    );
    assert_eq!(request.tools[0].strict, Some(true));
    assert_eq!(request.extra.get(Dialect::OpenAi)["seed"], 11);

    let again = body(openai::wire::encode_request(request).unwrap());
    assert_eq!(again["messages"][0], original["messages"][0]);
    assert_eq!(again["messages"][2], original["messages"][2]);
    assert_eq!(again["messages"][3], original["messages"][3]);
    assert_eq!(
        again["messages"][1]["content"][1],
        original["messages"][1]["content"][1]
    );
    assert_eq!(again["tools"], original["tools"]);
    assert_eq!(again["tool_choice"], "auto");
    assert_eq!(again["seed"], 11);
}

#[test]
fn the_same_conversation_continues_on_anthropic_with_its_tool_history() {
    let decoded =
        openai::wire::decode_request(openai_agent_request().to_string().as_bytes()).unwrap();
    let wire = body(anthropic::wire::encode_request(&decoded.request, 1024).unwrap());
    assert_eq!(wire["system"], "You are a weather bot.");
    assert!(
        wire.get("seed").is_none(),
        "an OpenAI extra never reaches Anthropic"
    );
    let turns = wire["messages"].as_array().unwrap();
    assert_eq!(
        turns
            .iter()
            .map(|t| t["role"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["user", "assistant", "user"],
        "alternating turns"
    );
    assert_eq!(turns[0]["content"][1]["type"], "image");
    assert_eq!(turns[0]["content"][1]["source"]["type"], "base64");
    assert_eq!(turns[0]["content"][1]["source"]["media_type"], "image/png");
    assert_eq!(
        turns[1]["content"],
        json!([
            {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_def", "name": "get_weather", "input": {"city": "Oslo"}}
        ])
    );
    assert_eq!(
        turns[2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "call_abc", "content": "{\"celsius\": 21}"},
            {"type": "tool_result", "tool_use_id": "call_def", "content": "{\"celsius\": 4}"}
        ]),
        "both results in one user turn"
    );
    assert_eq!(
        wire["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );
    assert_eq!(wire["tool_choice"], json!({"type": "auto"}));

    // And back: Anthropic's shape reads into the same neutral conversation.
    let back = anthropic::wire::decode_request(wire.to_string().as_bytes()).unwrap();
    let calls: Vec<&ToolCall> = back
        .request
        .messages
        .iter()
        .flat_map(|m| &m.tool_calls)
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].id.as_str(), calls[1].id.as_str()),
        ("call_abc", "call_def")
    );
    let results: Vec<&str> = back
        .request
        .messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .filter_map(|m| m.tool_call_id.as_deref())
        .collect();
    assert_eq!(results, ["call_abc", "call_def"]);
}

#[test]
fn an_anthropic_agent_request_round_trips() {
    let original = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "rain", "is_error": true}
            ]}
        ],
        "tools": [{"name": "get_weather", "description": "Current weather",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "top_k": 5
    });
    let decoded = anthropic::wire::decode_request(original.to_string().as_bytes()).unwrap();
    let r = &decoded.request;
    assert_eq!(r.tool_choice, Some(ToolChoice::Required));
    assert_eq!(r.parallel_tool_calls, Some(false));
    assert!(
        r.messages
            .iter()
            .any(|m| m.role == Role::Tool && m.is_error)
    );
    let again = body(anthropic::wire::encode_request(r, 4096).unwrap());
    assert_eq!(again["messages"], original["messages"]);
    assert_eq!(again["tools"], original["tools"]);
    assert_eq!(again["tool_choice"], original["tool_choice"]);
    assert_eq!(again["top_k"], 5);

    // On OpenAI: tool_choice required, the error flag said in the content.
    let openai = body(openai::wire::encode_request(r).unwrap());
    assert_eq!(openai["tool_choice"], "required");
    assert_eq!(openai["parallel_tool_calls"], false);
    assert!(
        openai.get("top_k").is_none(),
        "an Anthropic extra never reaches OpenAI"
    );
    let tool = &openai["messages"][3];
    assert_eq!(tool["role"], "tool");
    assert_eq!(tool["content"], "Error: rain");
    assert_eq!(openai["messages"][2]["content"], "Let me check.");
    assert_eq!(
        openai["messages"][2]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
}

#[test]
fn answers_with_tool_calls_read_and_write_in_both_dialects() {
    let openai_answer = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
        "usage": {"prompt_tokens": 80, "completion_tokens": 20, "total_tokens": 100,
                  "prompt_tokens_details": {"cached_tokens": 64},
                  "completion_tokens_details": {"reasoning_tokens": 5}}
    });
    let parsed =
        openai::wire::parse(200, &HeaderMap::new(), openai_answer.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        parsed.calls(),
        [ToolCall::new(
            "call_1",
            "get_weather",
            "{\"city\":\"Paris\"}"
        )]
    );
    assert_eq!(
        (
            parsed.usage.cached_input_tokens,
            parsed.usage.reasoning_tokens
        ),
        (64, 5)
    );

    // Written for an Anthropic client, read back by the Anthropic parser.
    let as_anthropic = anthropic::wire::encode_response(&parsed).unwrap();
    let back = anthropic::wire::parse(200, &HeaderMap::new(), &as_anthropic).unwrap();
    assert_eq!(back.calls()[0].id, "call_1");
    assert_eq!(
        back.calls()[0].arguments_json().unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(back.finish_reason, FinishReason::ToolCalls);
    assert_eq!(back.usage.input_tokens, 80);
    assert_eq!(back.usage.cached_input_tokens, 64);

    // And for an OpenAI client.
    let as_openai = openai::wire::encode_response(&back, 1);
    let again = openai::wire::parse(200, &HeaderMap::new(), &as_openai).unwrap();
    assert_eq!(again.calls()[0].name, "get_weather");
    assert_eq!(again.finish_reason, FinishReason::ToolCalls);
}

#[test]
fn json_schema_output_is_expressed_the_way_each_dialect_can() {
    let schema =
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
    let request = ChatRequest::new("m", vec![Message::user("pick a number")]).with_response_format(
        ResponseFormat::json_schema("number", schema.clone()).with_strict(true),
    );
    let openai = body(openai::wire::encode_request(&request).unwrap());
    assert_eq!(openai["response_format"]["type"], "json_schema");
    assert_eq!(openai["response_format"]["json_schema"]["schema"], schema);
    assert_eq!(openai["response_format"]["json_schema"]["strict"], true);

    // Anthropic: a forced tool whose input is the answer.
    let wire = body(anthropic::wire::encode_request(&request, 100).unwrap());
    assert_eq!(wire["tools"][0]["name"], "number");
    assert_eq!(wire["tools"][0]["input_schema"], schema);
    assert_eq!(
        wire["tool_choice"],
        json!({"type": "tool", "name": "number"})
    );
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "number", "input": {"n": 7}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 5}});
    let parsed = anthropic::wire::parse_for(
        &request,
        200,
        &HeaderMap::new(),
        answer.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&parsed.text()).unwrap(),
        json!({"n": 7})
    );
    assert!(parsed.calls().is_empty());
    assert_eq!(parsed.finish_reason, FinishReason::Stop);
}

#[test]
fn what_a_dialect_cannot_express_is_refused_before_the_wire() {
    let call = ToolCall::new("c1", "t", "this is not json");
    let not_json = ChatRequest::new(
        "m",
        vec![
            Message::user("go"),
            Message::assistant_tool_calls("", vec![call]),
            Message::tool_result("c1", "done"),
        ],
    );
    let err = anthropic::wire::encode_request(&not_json, 100).unwrap_err();
    assert_eq!(err.kind, ErrorKind::FeatureUnsupported);
    assert!(err.message.contains("not a JSON object"), "{}", err.message);
    // OpenAI carries arguments as text: it can.
    openai::wire::encode_request(&not_json).unwrap();

    let audio = ContentPart::Opaque {
        dialect: Dialect::OpenAi,
        part: json!({"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}),
    };
    let request = ChatRequest::new("m", vec![Message::user_parts([audio])]);
    let err = anthropic::wire::encode_request(&request, 100).unwrap_err();
    assert_eq!(err.kind, ErrorKind::FeatureUnsupported);
    assert!(err.message.contains("input_audio"), "{}", err.message);
    assert!(openai::wire::encode_request(&request).is_ok());

    let huge = "A".repeat(8 * 1024 * 1024);
    let request = ChatRequest::new(
        "m",
        vec![Message::user_parts([ContentPart::image_base64(
            "image/png",
            huge,
        )])],
    );
    let err = anthropic::wire::encode_request(&request, 100).unwrap_err();
    assert!(err.message.contains("larger than 5 MB"), "{}", err.message);

    let tools_and_schema = ChatRequest::new("m", vec![Message::user("x")])
        .with_tools([ToolDefinition::new("t", json!({"type": "object"}))])
        .with_response_format(ResponseFormat::JsonObject);
    let err = anthropic::wire::encode_request(&tools_and_schema, 100).unwrap_err();
    assert!(
        err.message.contains("together with tools"),
        "{}",
        err.message
    );
}

#[test]
fn a_conversation_no_provider_would_take_is_invalid_in_both() {
    let orphan = ChatRequest::new(
        "m",
        vec![Message::user("x"), Message::tool_result("nope", "1")],
    );
    for err in [
        openai::wire::encode_request(&orphan).unwrap_err(),
        anthropic::wire::encode_request(&orphan, 100).unwrap_err(),
    ] {
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(
            err.message.contains("answers no earlier tool call"),
            "{}",
            err.message
        );
    }
}

#[test]
fn bad_ingress_bodies_are_clear_errors() {
    for (body, want) in [
        (&b"{not json"[..], "not valid JSON"),
        (br#"{"model": "m"}"#, "missing field `messages`"),
        (
            br#"{"model": "m", "messages": [{"role": "wizard", "content": "x"}]}"#,
            "wizard",
        ),
        (
            br#"{"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]}"#,
            "type",
        ),
        (
            br#"{"model": "m", "messages": [{"role": "tool", "content": "x"}]}"#,
            "tool_call_id",
        ),
        (br#"{"model": "m", "messages": [], "n": 3}"#, "n = 1"),
        (
            br#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}"#,
            "sometimes",
        ),
        (br#"{"model": "m", "messages": []}"#, "at least one message"),
        (
            br#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache": 1}]}]}"#,
            "unknown field",
        ),
        (b"\xff\xfe", "not valid JSON"),
    ] {
        let err = openai::wire::decode_request(body).unwrap_err();
        assert!(err.to_string().contains(want), "{want}: {err}");
    }
    let err = anthropic::wire::decode_request(br#"{"model": "m", "messages": []}"#).unwrap_err();
    assert!(err.to_string().contains("max_tokens"), "{err}");
}

fn arb_json_object() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-zA-Z0-9 \"\\\\é]{0,12}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map("[a-z_]{1,8}", value, 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

prop_compose! {
    fn arb_call()(id in "[a-zA-Z0-9_-]{1,24}", name in "[a-zA-Z_][a-zA-Z0-9_-]{0,20}", args in arb_json_object()) -> ToolCall {
        ToolCall::new(id, name, args.to_string())
    }
}

proptest! {
    /// OpenAI -> neutral -> Anthropic -> neutral keeps every tool call's id,
    /// name and arguments, and every result's call id.
    #[test]
    fn tool_history_survives_a_change_of_dialect(rounds in prop::collection::vec(prop::collection::vec(arb_call(), 1..4), 1..4)) {
        let mut messages = vec![Message::user("start")];
        let mut seen = std::collections::HashSet::new();
        for calls in &rounds {
            let calls: Vec<ToolCall> = calls.iter().filter(|c| seen.insert(c.id.clone())).cloned().collect();
            if calls.is_empty() { continue; }
            let ids: Vec<String> = calls.iter().map(|c| c.id.clone()).collect();
            messages.push(Message::assistant_tool_calls("", calls));
            for id in ids {
                messages.push(Message::tool_result(id.clone(), format!("result of {id}")));
            }
        }
        let original = ChatRequest::new("m", messages);
        let openai_body = openai::wire::encode_request(&original).unwrap();
        let neutral = openai::wire::decode_request(&openai_body).unwrap().request;
        let anthropic_body = anthropic::wire::encode_request(&neutral, 100).unwrap();
        let back = anthropic::wire::decode_request(&anthropic_body).unwrap().request;

        let calls = |r: &ChatRequest| -> Vec<(String, String, Value)> {
            r.messages.iter().flat_map(|m| &m.tool_calls)
                .map(|c| (c.id.clone(), c.name.clone(), c.arguments_json().unwrap()))
                .collect()
        };
        let results = |r: &ChatRequest| -> Vec<(String, String)> {
            r.messages.iter().filter(|m| m.role == Role::Tool)
                .map(|m| (m.tool_call_id.clone().unwrap(), m.text().into_owned()))
                .collect()
        };
        prop_assert_eq!(calls(&back), calls(&original));
        prop_assert_eq!(results(&back), results(&original));
    }
}

#[test]
fn system_messages_mid_conversation_are_lifted_and_turns_still_alternate() {
    let request = ChatRequest::new(
        "m",
        vec![
            Message::user("a"),
            Message::system("be brief"),
            Message::user("b"),
            Message::developer("no emoji"),
            Message::assistant("c"),
        ],
    );
    let wire = body(anthropic::wire::encode_request(&request, 10).unwrap());
    assert_eq!(wire["system"], "be brief\n\nno emoji");
    assert_eq!(
        wire["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
        ])
    );
}
