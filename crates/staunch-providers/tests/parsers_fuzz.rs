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
