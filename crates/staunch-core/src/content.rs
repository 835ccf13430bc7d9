//! What a message says: text, or a list of parts (text, images, and parts
//! only one provider dialect understands).

use crate::Dialect;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

/// The content of a message: plain text (the common case, one `String`), or
/// an ordered list of [`ContentPart`]s.
///
/// It serializes as the providers do: a JSON string, or an array of parts.
///
/// ```
/// use staunch_core::{Content, ContentPart};
/// let plain = Content::from("Describe this picture.");
/// let parts = Content::Parts(vec![
///     ContentPart::text("Describe this picture."),
///     ContentPart::image_url("https://example.com/cat.png"),
/// ]);
/// assert_eq!(plain.text(), "Describe this picture.");
/// assert_eq!(parts.text(), "Describe this picture.");
/// assert!(parts.has_images());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// An ordered list of parts.
    Parts(Vec<ContentPart>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Text(String::new())
    }
}

impl From<String> for Content {
    fn from(text: String) -> Self {
        Content::Text(text)
    }
}

impl From<&str> for Content {
    fn from(text: &str) -> Self {
        Content::Text(text.to_owned())
    }
}

impl From<Vec<ContentPart>> for Content {
    fn from(parts: Vec<ContentPart>) -> Self {
        Content::Parts(parts)
    }
}

impl Content {
    /// The text of the content: the text itself, or the text parts joined
    /// (images and opaque parts contribute nothing).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Content::Text(text) => Cow::Borrowed(text),
            Content::Parts(parts) => {
                let mut texts = parts.iter().filter_map(ContentPart::as_text);
                match (texts.next(), texts.next()) {
                    (None, _) => Cow::Borrowed(""),
                    (Some(one), None) => Cow::Borrowed(one),
                    (Some(first), Some(second)) => {
                        let mut joined = String::from(first);
                        joined.push_str(second);
                        texts.for_each(|t| joined.push_str(t));
                        Cow::Owned(joined)
                    }
                }
            }
        }
    }

    /// True when there is no text and no part.
    pub fn is_empty(&self) -> bool {
        match self {
            Content::Text(text) => text.is_empty(),
            Content::Parts(parts) => parts.is_empty(),
        }
    }

    /// The parts, a plain text being one text part.
    pub fn parts(&self) -> PartsIter<'_> {
        match self {
            Content::Text(text) => PartsIter::Text(Some(text)),
            Content::Parts(parts) => PartsIter::Parts(parts.iter()),
        }
    }

    /// True when any part is an image.
    pub fn has_images(&self) -> bool {
        matches!(self, Content::Parts(parts) if parts.iter().any(ContentPart::is_image))
    }

    /// Bytes of text and data, for size estimates.
    pub fn byte_len(&self) -> usize {
        match self {
            Content::Text(text) => text.len(),
            Content::Parts(parts) => parts.iter().map(ContentPart::byte_len).sum(),
        }
    }
}

/// A borrowed view of one part of a [`Content`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum PartRef<'a> {
    /// Text.
    Text(&'a str),
    /// Any other part.
    Part(&'a ContentPart),
}

/// The iterator of [`Content::parts`].
#[derive(Clone, Debug)]
pub enum PartsIter<'a> {
    #[doc(hidden)]
    Text(Option<&'a str>),
    #[doc(hidden)]
    Parts(std::slice::Iter<'a, ContentPart>),
}

impl<'a> Iterator for PartsIter<'a> {
    type Item = PartRef<'a>;

    fn next(&mut self) -> Option<PartRef<'a>> {
        match self {
            PartsIter::Text(text) => text.take().map(PartRef::Text),
            PartsIter::Parts(parts) => parts.next().map(|p| match p {
                ContentPart::Text { text } => PartRef::Text(text),
                other => PartRef::Part(other),
            }),
        }
    }
}

/// One part of a message's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image at a URL (`https:` or a `data:` URL).
    ImageUrl {
        /// Where the image is.
        url: String,
        /// OpenAI's `detail` (`low`, `high`, `auto`), when set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// An image carried inline, base64-encoded.
    ImageBase64 {
        /// Its media type (`image/png`, `image/jpeg`, `image/gif`, `image/webp`).
        media_type: String,
        /// The base64 data, without a `data:` prefix.
        data: String,
    },
    /// A part only one provider dialect understands (an OpenAI `input_audio`
    /// or `file` part, an Anthropic `document` or `thinking` block), kept
    /// intact: it is sent as it is to targets of that dialect, and a target
    /// of another dialect refuses the request before the wire.
    Opaque {
        /// The dialect it came from.
        dialect: Dialect,
        /// The part, exactly as that dialect wrote it.
        part: Value,
    },
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }

    /// An image at `url`.
    pub fn image_url(url: impl Into<String>) -> Self {
        ContentPart::ImageUrl {
            url: url.into(),
            detail: None,
        }
    }

    /// An inline image.
    pub fn image_base64(media_type: impl Into<String>, data: impl Into<String>) -> Self {
        ContentPart::ImageBase64 {
            media_type: media_type.into(),
            data: data.into(),
        }
    }

    /// The text of a text part.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            ContentPart::Text { text } => Some(text),
            _ => None,
        }
    }

    /// True for images.
    pub fn is_image(&self) -> bool {
        matches!(
            self,
            ContentPart::ImageUrl { .. } | ContentPart::ImageBase64 { .. }
        )
    }

    /// Bytes of text or data in the part.
    pub fn byte_len(&self) -> usize {
        match self {
            ContentPart::Text { text } => text.len(),
            ContentPart::ImageUrl { url, .. } => url.len(),
            ContentPart::ImageBase64 { data, .. } => data.len(),
            ContentPart::Opaque { part, .. } => part.to_string().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_serializes_as_a_string_or_an_array() {
        let text = Content::from("hi");
        assert_eq!(serde_json::to_value(&text).unwrap(), "hi");
        let parts = Content::Parts(vec![
            ContentPart::text("look"),
            ContentPart::image_base64("image/png", "iVBORw0KGgo="),
        ]);
        let json = serde_json::to_value(&parts).unwrap();
        assert_eq!(json[0]["type"], "text");
        assert_eq!(json[1]["type"], "image_base64");
        let back: Content = serde_json::from_value(json).unwrap();
        assert_eq!(back, parts);
    }

    #[test]
    fn an_unknown_part_type_is_an_error() {
        let err = serde_json::from_str::<Content>(r#"[{"type": "hologram"}]"#).unwrap_err();
        assert!(err.to_string().contains("did not match"), "{err}");
    }

    #[test]
    fn parts_iterate_text_and_others() {
        let c = Content::Parts(vec![
            ContentPart::text("a"),
            ContentPart::image_url("u"),
            ContentPart::text("b"),
        ]);
        assert_eq!(c.text(), "ab");
        assert_eq!(c.parts().count(), 3);
        assert_eq!(Content::from("x").parts().next(), Some(PartRef::Text("x")));
    }
}
