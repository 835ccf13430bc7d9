//! Tool calls, tool results and structured output in both dialects, over
//! real HTTP on loopback: the mock calls the first tool with arguments valid
//! for its schema, quotes tool results, answers JSON that matches a schema,
//! and breaks all of these on demand (`bad_tool_arguments`,
//! `schema_violation`).

use serde_json::{Value, json};
use staunch_mock::{Fault, MockServer, Route, Scenario};
use std::io::{Read, Write};

/// Posts `body` as JSON over a fresh HTTP/1.1 connection and returns the
/// status and the JSON body (`null` if not JSON). The blocking socket runs
/// on the blocking pool while the server runs on the runtime.
async fn post(server: &MockServer, path: &'static str, body: Value) -> (u16, Value) {
    let addr = server.addr();
    tokio::task::spawn_blocking(move || {
        let body = body.to_string();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        let reply = String::from_utf8(reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        let status = head[9..12].parse().unwrap();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

async fn openai(server: &MockServer, body: Value) -> (u16, Value) {
    post(server, "/v1/chat/completions", body).await
}

async fn anthropic(server: &MockServer, body: Value) -> (u16, Value) {
    post(server, "/v1/messages", body).await
}

async fn server(openai: Vec<Fault>, anthropic: Vec<Fault>) -> MockServer {
    let mut scenario = Scenario::default();
    scenario.openai.script = openai;
    scenario.anthropic.script = anthropic;
    MockServer::start(scenario).await.unwrap()
}

/// The weather tool's parameters: the property types, bounds and enum the
/// checks below verify by hand.
fn weather_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "the city"},
            "days": {"type": "integer", "minimum": 2, "maximum": 7},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "detail": {
                "type": "object",
                "properties": {"hourly": {"type": "boolean"}},
                "required": ["hourly"]
            }
        },
        "required": ["city", "days"]
    })
}

/// Checks that `args` is valid for [`weather_schema`].
fn assert_weather(args: &Value) {
    assert!(args["city"].is_string(), "{args}");
    let days = args["days"].as_i64().unwrap_or_else(|| panic!("{args}"));
    assert!((2..=7).contains(&days), "{args}");
    if let Some(unit) = args.get("unit") {
        assert!(unit == "celsius" || unit == "fahrenheit", "{args}");
    }
    if let Some(detail) = args.get("detail") {
        assert!(detail["hourly"].is_boolean(), "{args}");
    }
}

fn openai_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": weather_schema(), "strict": false}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
    ])
}

fn anthropic_tools() -> Value {
    json!([
        {"name": "get_weather", "description": "Weather", "input_schema": weather_schema()},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}
    ])
}

fn openai_ask(extra: Value) -> Value {
    let mut body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]}
        ],
        "tools": openai_tools()
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn anthropic_ask(extra: Value) -> Value {
    let mut body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": anthropic_tools()
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The OpenAI tool call of an answer: its id, name and arguments text.
fn openai_call(answer: &Value) -> (String, String, String) {
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{answer}");
    assert!(choice["message"]["content"].is_null(), "{answer}");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{answer}");
    assert_eq!(calls[0]["type"], "function");
    let arguments = calls[0]["function"]["arguments"]
        .as_str()
        .unwrap_or_else(|| panic!("arguments are a JSON string: {answer}"));
    (
        calls[0]["id"].as_str().unwrap().to_owned(),
        calls[0]["function"]["name"].as_str().unwrap().to_owned(),
        arguments.to_owned(),
    )
}

/// The Anthropic tool use of an answer: its id, name and input.
fn anthropic_call(answer: &Value) -> (String, String, Value) {
    assert_eq!(answer["stop_reason"], "tool_use", "{answer}");
    let content = answer["content"].as_array().unwrap();
    assert_eq!(content.len(), 1, "{answer}");
    assert_eq!(content[0]["type"], "tool_use");
    assert!(content[0]["input"].is_object(), "{answer}");
    (
        content[0]["id"].as_str().unwrap().to_owned(),
        content[0]["name"].as_str().unwrap().to_owned(),
        content[0]["input"].clone(),
    )
}

fn openai_text(answer: &Value) -> &str {
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    answer["choices"][0]["message"]["content"].as_str().unwrap()
}

fn anthropic_text(answer: &Value) -> &str {
    assert_eq!(answer["stop_reason"], "end_turn", "{answer}");
    assert_eq!(answer["content"][0]["type"], "text", "{answer}");
    answer["content"][0]["text"].as_str().unwrap()
}

#[tokio::test]
async fn openai_calls_the_first_tool_with_arguments_valid_for_its_schema() {
    let server = server(vec![], vec![]).await;
    let (status, answer) = openai(&server, openai_ask(json!({}))).await;
    assert_eq!(status, 200, "{answer}");
    let (id, name, arguments) = openai_call(&answer);
    assert_eq!(name, "get_weather");
    assert!(id.starts_with("call_"), "{id}");
    assert_weather(&serde_json::from_str(&arguments).unwrap());
    assert!(answer["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // `required` calls too; a named function is the one called; ids differ.
    let (_, again) = openai(&server, openai_ask(json!({"tool_choice": "required"}))).await;
    let (other_id, name, _) = openai_call(&again);
    assert_eq!(name, "get_weather");
    assert_ne!(other_id, id, "ids are unique per response");
    let forced = json!({"tool_choice": {"type": "function", "function": {"name": "get_time"}}});
    let (_, named) = openai(&server, openai_ask(forced)).await;
    let (_, name, arguments) = openai_call(&named);
    assert_eq!(name, "get_time");
    let arguments: Value = serde_json::from_str(&arguments).unwrap();
    assert!(arguments["zone"].is_string(), "{arguments}");

    // `none` answers text, and text parts of the user's content are read.
    let (_, text) = openai(&server, openai_ask(json!({"tool_choice": "none"}))).await;
    assert_eq!(openai_text(&text), "mock answer to: Weather in Paris?");

    // A function that is not among the tools is refused as OpenAI does.
    let unknown = json!({"tool_choice": {"type": "function", "function": {"name": "nope"}}});
    let (status, error) = openai(&server, openai_ask(unknown)).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn openai_quotes_the_tool_result() {
    let server = server(vec![], vec![]).await;
    let body = openai_ask(json!({"messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"days\":2}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C and sunny"}
    ]}));
    let (status, answer) = openai(&server, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(openai_text(&answer), "Tool result: 18°C and sunny");
    assert!(answer["choices"][0]["message"].get("tool_calls").is_none());
}

#[tokio::test]
async fn openai_json_schema_answers_match_and_json_object_is_an_object() {
    let server = server(vec![], vec![]).await;
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 18},
            "tags": {"type": "array", "items": {"type": "string"}},
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "zip": {"type": ["string", "null"]}},
                "required": ["street", "zip"],
                "additionalProperties": false
            }
        },
        "required": ["name", "age", "tags", "address"],
        "additionalProperties": false
    });
    let body = json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Who?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": true}}
    });
    let (status, answer) = openai(&server, body).await;
    assert_eq!(status, 200, "{answer}");
    let person: Value = serde_json::from_str(openai_text(&answer)).unwrap();
    let fields: Vec<&String> = person.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["address", "age", "name", "tags"], "{person}");
    assert!(person["name"].is_string(), "{person}");
    assert!(person["age"].as_i64().is_some_and(|a| a >= 18), "{person}");
    let tags = person["tags"].as_array().unwrap();
    assert!(tags.iter().all(Value::is_string), "{person}");
    assert!(person["address"]["street"].is_string(), "{person}");
    assert!(person["address"]["zip"].is_string(), "{person}");
    assert_eq!(person["address"].as_object().unwrap().len(), 2);

    let body = json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Who?"}],
        "response_format": {"type": "json_object"}
    });
    let (_, answer) = openai(&server, body).await;
    let object: Value = serde_json::from_str(openai_text(&answer)).unwrap();
    assert_eq!(object, json!({"answer": "mock answer to: Who?"}));
}

#[tokio::test]
async fn openai_bad_tool_arguments_are_not_json_and_need_tools() {
    let server = server(
        vec![Fault::BadToolArguments, Fault::BadToolArguments],
        vec![],
    )
    .await;
    let (status, answer) = openai(&server, openai_ask(json!({}))).await;
    assert_eq!(status, 200, "{answer}");
    let (_, name, arguments) = openai_call(&answer);
    assert_eq!(name, "get_weather");
    assert!(
        serde_json::from_str::<Value>(&arguments).is_err(),
        "not JSON: {arguments}"
    );
    assert!(arguments.starts_with('{'), "{arguments}");

    // Without tools the fault does not apply: a normal answer.
    let plain = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let (status, answer) = openai(&server, plain).await;
    assert_eq!((status, openai_text(&answer)), (200, "mock answer to: hi"));
    assert_eq!(server.stats().served("bad_tool_arguments"), 2);
}

#[tokio::test]
async fn openai_schema_violations_are_json_that_breaks_the_schema() {
    let server = server(vec![Fault::SchemaViolation; 3], vec![]).await;
    let (_, answer) = openai(&server, openai_ask(json!({}))).await;
    let (_, _, arguments) = openai_call(&answer);
    let arguments: Value = serde_json::from_str(&arguments).expect("valid JSON");
    assert!(
        !arguments["city"].is_string(),
        "the first required property has the wrong type: {arguments}"
    );

    let body = json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Who?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["age", "name"]
        }}}
    });
    let (_, answer) = openai(&server, body).await;
    let person: Value = serde_json::from_str(openai_text(&answer)).expect("valid JSON");
    assert!(person["name"].is_string(), "{person}");
    assert!(
        person.get("age").is_some_and(|age| !age.is_i64()),
        "{person}"
    );

    let plain = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let (_, answer) = openai(&server, plain).await;
    assert_eq!(openai_text(&answer), "mock answer to: hi");
}

#[tokio::test]
async fn anthropic_calls_the_first_tool_with_an_input_valid_for_its_schema() {
    let server = server(vec![], vec![]).await;
    let (status, answer) = anthropic(&server, anthropic_ask(json!({}))).await;
    assert_eq!(status, 200, "{answer}");
    let (id, name, input) = anthropic_call(&answer);
    assert_eq!(name, "get_weather");
    assert!(id.starts_with("toolu_"), "{id}");
    assert_weather(&input);
    assert!(answer["usage"]["output_tokens"].as_u64().unwrap() > 0);

    let (_, again) = anthropic(
        &server,
        anthropic_ask(json!({"tool_choice": {"type": "any"}})),
    )
    .await;
    let (other_id, name, _) = anthropic_call(&again);
    assert_eq!(name, "get_weather");
    assert_ne!(other_id, id, "ids are unique per response");

    let (_, none) = anthropic(
        &server,
        anthropic_ask(json!({"tool_choice": {"type": "none"}})),
    )
    .await;
    assert_eq!(anthropic_text(&none), "mock answer to: Weather in Paris?");

    let unknown = json!({"tool_choice": {"type": "tool", "name": "nope"}});
    let (status, error) = anthropic(&server, anthropic_ask(unknown)).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn anthropic_quotes_the_tool_result() {
    let server = server(vec![], vec![]).await;
    let history = |content: Value| {
        anthropic_ask(json!({"messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris", "days": 2}}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": content}]}
        ]}))
    };
    let (status, answer) = anthropic(&server, history(json!("18°C and sunny"))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(anthropic_text(&answer), "Tool result: 18°C and sunny");
    let blocks = json!([{"type": "text", "text": "18°C and sunny"}]);
    let (_, answer) = anthropic(&server, history(blocks)).await;
    assert_eq!(anthropic_text(&answer), "Tool result: 18°C and sunny");
}

#[tokio::test]
async fn anthropic_a_forced_tool_is_the_json_answer_and_matches_its_schema() {
    let server = server(vec![], vec![]).await;
    // What a client sends for a JSON Schema output format.
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Who?"}],
        "tools": [{"name": "person", "description": "Answer with this tool; its input is the answer.", "input_schema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "age": {"type": "integer", "minimum": 18},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1}
            },
            "required": ["name", "age", "tags"]
        }}],
        "tool_choice": {"type": "tool", "name": "person"}
    });
    let (status, answer) = anthropic(&server, body).await;
    assert_eq!(status, 200, "{answer}");
    let (_, name, person) = anthropic_call(&answer);
    assert_eq!(name, "person");
    assert!(
        person["name"].as_str().is_some_and(|n| !n.is_empty()),
        "{person}"
    );
    assert!(person["age"].as_i64().is_some_and(|a| a >= 18), "{person}");
    let tags = person["tags"].as_array().unwrap();
    assert!(
        !tags.is_empty() && tags.iter().all(Value::is_string),
        "{person}"
    );

    // The forced tool of a `json_object` format gets an object.
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Anything"}],
        "tools": [{"name": "json_answer", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "json_answer"}
    });
    let (_, answer) = anthropic(&server, body).await;
    let (_, name, input) = anthropic_call(&answer);
    assert_eq!((name.as_str(), input), ("json_answer", json!({})));
}

#[tokio::test]
async fn anthropic_bad_tool_arguments_leave_out_required_properties_and_need_tools() {
    let server = server(vec![], vec![Fault::BadToolArguments; 2]).await;
    let (status, answer) = anthropic(&server, anthropic_ask(json!({}))).await;
    assert_eq!(status, 200, "{answer}");
    let (_, name, input) = anthropic_call(&answer);
    assert_eq!(name, "get_weather");
    assert!(
        input.get("city").is_none() && input.get("days").is_none(),
        "the required properties are missing: {input}"
    );

    let plain = json!({"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let (status, answer) = anthropic(&server, plain).await;
    assert_eq!(
        (status, anthropic_text(&answer)),
        (200, "mock answer to: hi")
    );
    let stats = server.stats();
    assert_eq!(
        (
            stats.served("bad_tool_arguments"),
            stats.requests_to(Route::Anthropic)
        ),
        (2, 2)
    );
}

#[tokio::test]
async fn anthropic_schema_violations_break_the_input_schema() {
    let server = server(vec![], vec![Fault::SchemaViolation; 2]).await;
    let (_, answer) = anthropic(&server, anthropic_ask(json!({}))).await;
    let (_, _, input) = anthropic_call(&answer);
    assert!(
        input.get("city").is_some_and(|c| !c.is_string()),
        "the first required property has the wrong type: {input}"
    );
    assert!(input["days"].is_i64(), "{input}");

    // A forced tool (a JSON format) whose schema constrains nothing an
    // object can break gets a valid input.
    let body = json!({
        "model": "claude",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Anything"}],
        "tools": [{"name": "json_answer", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "json_answer"}
    });
    let (_, answer) = anthropic(&server, body).await;
    assert_eq!(anthropic_call(&answer).2, json!({}));
}

#[test]
fn the_new_faults_load_from_scenario_files() {
    let scenario: Scenario = toml::from_str(
        r#"
        [openai]
        script = [{ type = "bad_tool_arguments" }, { type = "schema_violation" }]
        [anthropic]
        random = [{ probability = 0.5, fault = { type = "schema_violation" } }]
        "#,
    )
    .unwrap();
    assert_eq!(
        scenario.openai.script,
        [Fault::BadToolArguments, Fault::SchemaViolation]
    );
    assert_eq!(
        scenario.anthropic.random[0].fault.name(),
        "schema_violation"
    );
    assert_eq!(Fault::BadToolArguments.name(), "bad_tool_arguments");
}
