//! The usual Chat Completions stream chunk, read without a value tree.
//!
//! Nearly every frame of a stream is one choice whose delta carries a
//! piece of text, or the finish reason, or the usage: this reads those
//! straight from the frame's text, borrowing the strings it can, and
//! ignoring the fields nobody reads (`id`, `model`, `system_fingerprint`,
//! `logprobs`, ...). Anything else (an error, tool calls, content parts, a
//! key given twice, a value of an unexpected type, a list where an object
//! belongs) is not read here at all: [`read`] answers `None` and the
//! caller reads the frame through a `serde_json::Value` as before, so what
//! a frame means never depends on which path read it.

use super::answer::WireUsage;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use staunch_core::Usage;
use std::borrow::Cow;
use std::fmt;

/// What the common chunk says, in the order the events go out.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Common<'a> {
    /// The first choice's text and refusal text, when not empty.
    pub(super) content: Option<Cow<'a, str>>,
    pub(super) refusal: Option<Cow<'a, str>>,
    pub(super) usage: Option<Usage>,
    pub(super) finish: Option<Cow<'a, str>>,
}

/// `data`, when it is a common chunk; `None` for anything else.
///
/// Most frames are read by a scan of their text
/// ([`super::chunk_scan::common`]); what it leaves (usage chunks, keys with
/// escapes, ...) by the deserializer here.
pub(super) fn read(data: &str) -> Option<Common<'_>> {
    super::chunk_scan::common(data).or_else(|| deserialized(data))
}

/// `data`, when it is a common chunk, read by a deserializer.
pub(super) fn deserialized(data: &str) -> Option<Common<'_>> {
    let chunk: Chunk<'_> = serde_json::from_str(data).ok()?;
    let choices = match chunk.choices {
        Some(choices) => choices,
        // Without choices, only a usage chunk is common.
        None if chunk.usage.is_some() => Vec::new(),
        None => return None,
    };
    let mut common = Common {
        usage: chunk.usage.map(|u| u.usage()),
        ..Common::default()
    };
    // The first choice only, as the value path reads it.
    if let Some(choice) = choices
        .into_iter()
        .find(|c| matches!(c.index, None | Some(0)))
    {
        if let Some(delta) = choice.delta {
            common.content = delta.content.filter(|t| !t.is_empty());
            common.refusal = delta.refusal.filter(|t| !t.is_empty());
        }
        common.finish = choice.finish_reason.map(|t| t.0);
    }
    Some(common)
}

/// A string, borrowed from the frame when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// Sets `slot` from the map's next value; a key given twice is not common.
fn once<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    slot: &mut Option<Option<T>>,
    map: &mut A,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::custom("a key given twice"));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// Implements `Deserialize` for a struct read from a JSON object only (a
/// derived one would also take a list, by position).
macro_rules! object_only {
    ($name:ident, $what:literal, |$map:ident| $body:block) => {
        impl<'de> Deserialize<'de> for $name<'de> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct ObjectVisitor;
                impl<'de> Visitor<'de> for ObjectVisitor {
                    type Value = $name<'de>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut $map: A,
                    ) -> Result<Self::Value, A::Error> {
                        $body
                    }
                }
                d.deserialize_map(ObjectVisitor)
            }
        }
    };
}

struct Chunk<'a> {
    choices: Option<Vec<Choice<'a>>>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ChunkKey {
    Choices,
    Usage,
    Error,
    Object,
    #[serde(other)]
    Other,
}

object_only!(Chunk, "a chunk object", |map| {
    let (mut choices, mut usage, mut object) = (None, None, None);
    while let Some(key) = map.next_key::<ChunkKey>()? {
        match key {
            ChunkKey::Choices => once(&mut choices, &mut map)?,
            ChunkKey::Usage => once(&mut usage, &mut map)?,
            ChunkKey::Object => once::<Text<'_>, _>(&mut object, &mut map)?,
            // An error object is read by the value path.
            ChunkKey::Error => {
                if map.next_value::<Option<IgnoredAny>>()?.is_some() {
                    return Err(de::Error::custom("an error"));
                }
            }
            ChunkKey::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    if matches!(&object, Some(Some(Text(o))) if o == "error") {
        return Err(de::Error::custom("an error"));
    }
    Ok(Chunk {
        choices: choices.flatten(),
        usage: usage.flatten(),
    })
});

struct Choice<'a> {
    index: Option<u64>,
    delta: Option<Delta<'a>>,
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ChoiceKey {
    Index,
    Delta,
    FinishReason,
    #[serde(other)]
    Other,
}

object_only!(Choice, "a choice object", |map| {
    let (mut index, mut delta, mut finish_reason) = (None, None, None);
    while let Some(key) = map.next_key::<ChoiceKey>()? {
        match key {
            ChoiceKey::Index => once(&mut index, &mut map)?,
            ChoiceKey::Delta => once(&mut delta, &mut map)?,
            ChoiceKey::FinishReason => once(&mut finish_reason, &mut map)?,
            ChoiceKey::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(Choice {
        index: index.flatten(),
        delta: delta.flatten(),
        finish_reason: finish_reason.flatten(),
    })
});

struct Delta<'a> {
    content: Option<Cow<'a, str>>,
    refusal: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum DeltaKey {
    Content,
    Refusal,
    ToolCalls,
    #[serde(other)]
    Other,
}

object_only!(Delta, "a delta object", |map| {
    let (mut content, mut refusal) = (None::<Option<Text<'_>>>, None::<Option<Text<'_>>>);
    while let Some(key) = map.next_key::<DeltaKey>()? {
        match key {
            DeltaKey::Content => once(&mut content, &mut map)?,
            DeltaKey::Refusal => once(&mut refusal, &mut map)?,
            // Tool-call pieces are read by the value path.
            DeltaKey::ToolCalls => {
                if map.next_value::<Option<IgnoredAny>>()?.is_some() {
                    return Err(de::Error::custom("tool calls"));
                }
            }
            DeltaKey::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(Delta {
        content: content.flatten().map(|t| t.0),
        refusal: refusal.flatten().map(|t| t.0),
    })
});
