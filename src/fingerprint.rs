//! A stable fingerprint of the whole request: the degrade layer's cache key,
//! and the key of any coalescing or caching layer.

use serde_json::Value;
use staunch_core::{ChatRequest, Content, ContentPart, EmbeddingRequest, Extras, ResponseFormat};
use std::hash::Hash;
use xxhash_rust::xxh3::Xxh3;

/// A 128-bit XXH3 fingerprint of everything that shapes the answer: the model,
/// every message (role, name, full content), the sampling parameters, the
/// stop sequences and the provider extras (objects hashed with sorted keys,
/// so insertion order does not matter). Extensions are not part of it.
///
/// Two requests that differ anywhere, including deep inside the last
/// message, get different keys (up to a 2^-128 collision chance); the same
/// request gets the same key, in any process (XXH3 is a fixed function).
///
/// ```
/// use staunch::core::{ChatRequest, Message};
/// use staunch::fingerprint::fingerprint;
/// let a = ChatRequest::new("gpt-4o", vec![Message::user("hi")]);
/// let b = ChatRequest::new("gpt-4o", vec![Message::user("hi!")]);
/// assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
/// assert_ne!(fingerprint(&a), fingerprint(&b));
/// ```
pub fn fingerprint(request: &ChatRequest) -> u128 {
    Fingerprint::fingerprint(request)
}

/// A call that has a stable fingerprint of everything that shapes its
/// answer: the key of the degrade layer's cache (and of any coalescing
/// layer). Calls of different operations never share a key.
pub trait Fingerprint {
    /// A 128-bit XXH3 fingerprint, the same in any process.
    fn fingerprint(&self) -> u128;
}

impl Fingerprint for ChatRequest {
    fn fingerprint(&self) -> u128 {
        // One pass of XXH3-128: fast on long prompts, and a full 128 bits.
        let mut hasher = Xxh3::new();
        "chat".hash(&mut hasher);
        hash_request(self, &mut hasher);
        hasher.digest128()
    }
}

/// The model, every input (texts or token arrays, in order), the
/// dimensions asked for and the provider extras. The encoding is left out:
/// the vectors are the same, and the answer holds them as floats either way.
impl Fingerprint for EmbeddingRequest {
    fn fingerprint(&self) -> u128 {
        let mut h = Xxh3::new();
        "embeddings".hash(&mut h);
        self.model.hash(&mut h);
        self.input.hash(&mut h);
        self.dimensions.hash(&mut h);
        hash_extras(&self.extra, &mut h);
        h.digest128()
    }
}

fn hash_request(request: &ChatRequest, h: &mut Xxh3) {
    request.model.hash(h);
    request.messages.len().hash(h);
    for m in request.messages.iter() {
        m.role.hash(h);
        m.name.hash(h);
        hash_content(&m.content, h);
        m.tool_calls.hash(h);
        m.tool_call_id.hash(h);
        m.is_error.hash(h);
    }
    request.max_tokens.hash(h);
    request.temperature.map(f32::to_bits).hash(h);
    request.top_p.map(f32::to_bits).hash(h);
    request.stop.hash(h);
    request.tools.len().hash(h);
    for tool in request.tools.iter() {
        tool.name.hash(h);
        tool.description.hash(h);
        hash_value(&tool.parameters, h);
        tool.strict.hash(h);
    }
    request.tool_choice.hash(h);
    request.parallel_tool_calls.hash(h);
    match &request.response_format {
        None => 0u8.hash(h),
        Some(ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        }) => {
            (1u8, name, strict).hash(h);
            hash_value(schema, h);
        }
        Some(other) => (2u8, other.is_json()).hash(h),
    }
    hash_extras(&request.extra, h);
}

/// Every dialect's extras (each dialect that has any, whichever dialects
/// exist), objects with sorted keys.
fn hash_extras(extras: &Extras, h: &mut Xxh3) {
    for (dialect, extra) in extras.dialects() {
        (dialect, extra.len()).hash(h);
        let mut keys: Vec<&String> = extra.keys().collect();
        keys.sort_unstable();
        for k in keys {
            k.hash(h);
            hash_value(&extra[k], h);
        }
    }
}

fn hash_content(content: &Content, h: &mut Xxh3) {
    match content {
        Content::Text(text) => (0u8, text).hash(h),
        Content::Parts(parts) => {
            (1u8, parts.len()).hash(h);
            for part in parts {
                match part {
                    ContentPart::Text { text } => (0u8, text).hash(h),
                    ContentPart::ImageUrl { url, detail } => (1u8, url, detail).hash(h),
                    ContentPart::ImageBase64 { media_type, data } => {
                        (2u8, media_type, data).hash(h)
                    }
                    ContentPart::Opaque { dialect, part } => {
                        (3u8, dialect).hash(h);
                        hash_value(part, h);
                    }
                    _ => 4u8.hash(h),
                }
            }
        }
    }
}

fn hash_value(value: &Value, h: &mut Xxh3) {
    match value {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => (2u8, n.to_string()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(items) => {
            (4u8, items.len()).hash(h);
            for item in items {
                hash_value(item, h);
            }
        }
        Value::Object(map) => {
            (5u8, map.len()).hash(h);
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            for k in keys {
                k.hash(h);
                hash_value(&map[k], h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fingerprint;
    use serde_json::json;
    use staunch_core::{ChatRequest, Dialect, Message};

    fn base() -> ChatRequest {
        ChatRequest::new(
            "gpt-4o",
            vec![
                Message::system("be brief"),
                Message::user("long question ".repeat(50)),
            ],
        )
    }

    #[test]
    fn equal_requests_share_a_key() {
        assert_eq!(fingerprint(&base()), fingerprint(&base()));
        assert_eq!(
            fingerprint(&base().with_extra(Dialect::OpenAi, "a", 1).with_extra(
                Dialect::OpenAi,
                "b",
                json!({"x": 1, "y": 2})
            )),
            fingerprint(
                &base()
                    .with_extra(Dialect::OpenAi, "b", json!({"y": 2, "x": 1}))
                    .with_extra(Dialect::OpenAi, "a", 1)
            ),
            "extras are hashed in key order"
        );
    }

    #[test]
    fn any_difference_changes_the_key() {
        let mut tail = base();
        let mut messages = tail.messages.to_vec();
        let last = messages.last_mut().unwrap();
        last.content = format!("{}!", last.content.text()).into();
        tail.messages = messages.into();
        let variants = [
            base().with_model("gpt-4o-mini"),
            tail,
            base().with_max_tokens(10),
            base().with_temperature(0.0),
            base().with_temperature(-0.0),
            base().with_top_p(0.9),
            base().with_stop(["END"]),
            base().with_extra(Dialect::OpenAi, "seed", 1),
            base().with_extra(Dialect::OpenAi, "seed", "1"),
            base().with_extra(Dialect::Anthropic, "seed", 1),
            // Every dialect's extras are in the key, not a listed few.
            base().with_extra(Dialect::Gemini, "seed", 1),
            base().with_extra(Dialect::OpenAiResponses, "seed", 1),
            base().with_tools([staunch_core::ToolDefinition::new(
                "t",
                json!({"type": "object"}),
            )]),
            base().with_tool_choice(staunch_core::ToolChoice::Required),
            base().with_response_format(staunch_core::ResponseFormat::JsonObject),
            ChatRequest::new(
                "gpt-4o",
                vec![
                    Message::system("be brief"),
                    Message::user_parts([staunch_core::ContentPart::text(
                        "long question ".repeat(50),
                    )]),
                ],
            ),
            ChatRequest::new(
                "gpt-4o",
                vec![
                    Message::user("be brief"),
                    Message::user("long question ".repeat(50)),
                ],
            ),
            ChatRequest::new(
                "gpt-4o",
                vec![
                    Message::system("be brief").with_name("x"),
                    Message::user("long question ".repeat(50)),
                ],
            ),
        ];
        let mut keys: Vec<u128> = variants.iter().map(fingerprint).collect();
        keys.push(fingerprint(&base()));
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n, "every variant has its own key");
    }

    #[test]
    fn extensions_do_not_matter() {
        assert_eq!(
            fingerprint(&base().with_extension(7u32)),
            fingerprint(&base())
        );
    }
}
