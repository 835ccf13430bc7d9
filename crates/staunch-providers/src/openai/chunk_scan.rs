//! The usual stream chunk, read by a scan of its text.
//!
//! A chunk with one choice whose delta carries text (or a finish reason)
//! is most frames of a stream. [`common`] reads those in one pass over
//! the text, with no deserializer in between: the keys it needs are found
//! by comparing bytes, the values it skips are checked as JSON as they are
//! passed, and the strings it keeps are borrowed when they have no
//! escapes. Whatever it is not sure of (a usage object, a key with an
//! escape, a number with an exponent, a value nested deep, anything that
//! is not plain JSON), it does not read: it answers `None`, and the
//! caller reads the frame as before ([`super::chunk::read`]'s
//! deserializer, then the value path). So when it answers, it answers
//! what those would have (tests compare them on generated frames).

use super::chunk::Common;
use std::borrow::Cow;

/// Nesting a skipped value may have before the scan leaves the frame to
/// the deserializer (which has a limit of its own).
const MAX_DEPTH: u32 = 32;

/// Digits a skipped number may have before the scan leaves the frame to
/// the deserializer: a longer one may be out of a float's range, which
/// the value path refuses.
const MAX_DIGITS: usize = 30;

/// `data` read as a common chunk, when the scan is sure of it.
pub(super) fn common(data: &str) -> Option<Common<'_>> {
    let mut scan = Scan {
        text: data,
        at: 0,
        depth: 0,
    };
    let chunk = scan.chunk()?;
    scan.ws();
    if scan.at != data.len() {
        return None;
    }
    // A chunk without choices is common only with a usage, which the scan
    // leaves to the deserializer.
    let first: Option<Common<'_>> = chunk.choices?;
    Some(first.unwrap_or_default())
}

/// The bytes a string's plain run stops at: its end, an escape, or a
/// control character (which must have been escaped).
static STOPS_A_STRING: [bool; 256] = {
    let mut stops = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        stops[b] = true;
        b += 1;
    }
    stops[b'"' as usize] = true;
    stops[b'\\' as usize] = true;
    stops
};

struct Scan<'a> {
    text: &'a str,
    at: usize,
    depth: u32,
}

/// A field read at most once: `None` not seen, `Some(None)` null.
type Once<T> = Option<Option<T>>;

/// A delta's text and refusal text.
type Texts<'a> = (Option<Cow<'a, str>>, Option<Cow<'a, str>>);

struct Chunk<'a> {
    /// `None`: no choices (or null); else what the first choice of index 0
    /// (or none) says, if there is one.
    choices: Option<Option<Common<'a>>>,
}

impl<'a> Scan<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, not taken.
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes().get(self.at).copied()
    }

    /// Takes `byte`, after whitespace.
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Takes `word` (a literal), after whitespace.
    fn word(&mut self, word: &str) -> Option<()> {
        self.ws();
        let rest = self.bytes().get(self.at..)?;
        rest.starts_with(word.as_bytes())
            .then(|| self.at += word.len())
    }

    /// Takes `null` if it comes next: `Some(true)`.
    fn null(&mut self) -> Option<bool> {
        if self.peek()? == b'n' {
            self.word("null")?;
            return Some(true);
        }
        Some(false)
    }

    /// Walks an object: `each` is called with every key (without escapes)
    /// when the scan is at its value, and must take the value.
    fn object(&mut self, mut each: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.items(b'{', b'}', |scan| {
            let Cow::Borrowed(key) = scan.string()? else {
                // A key with escapes: the deserializer reads those.
                return None;
            };
            scan.eat(b':')?;
            each(scan, key)
        })
    }

    /// Walks an array, `each` taking every element.
    fn array(&mut self, each: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.items(b'[', b']', each)
    }

    /// Walks what `open` and `close` enclose, `each` taking every item and
    /// a comma between two.
    fn items(
        &mut self,
        open: u8,
        close: u8,
        mut each: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            each(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b if b == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string, borrowed when it has no escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let bytes = self.bytes();
        let start = self.at;
        // The strings of a chunk are short: a byte at a time, one table
        // lookup each, beats a vectorised search and its setup.
        let mut end = start;
        while let Some(&b) = bytes.get(end) {
            if STOPS_A_STRING[usize::from(b)] {
                break;
            }
            end += 1;
        }
        match bytes.get(end)? {
            b'"' => {
                self.at = end + 1;
                self.text.get(start..end).map(Cow::Borrowed)
            }
            b'\\' => {
                self.at = end;
                self.escaped(start).map(Cow::Owned)
            }
            // A control character, which JSON has escaped.
            _ => None,
        }
    }

    /// The rest of a string from `start`, where the scan is at its first
    /// escape.
    fn escaped(&mut self, start: usize) -> Option<String> {
        let mut out = String::with_capacity(self.at - start + 16);
        let mut run = start;
        loop {
            let byte = *self.bytes().get(self.at)?;
            match byte {
                b'"' | b'\\' => {
                    out.push_str(self.text.get(run..self.at)?);
                    self.at += 1;
                    if byte == b'"' {
                        return Some(out);
                    }
                    let escape = *self.bytes().get(self.at)?;
                    self.at += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode()?),
                        _ => return None,
                    }
                    run = self.at;
                }
                0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
    }

    /// The character of a `\u` escape (the scan is past the `u`), a
    /// surrogate pair's when it is one; a lone surrogate is not read.
    fn unicode(&mut self) -> Option<char> {
        let high = self.hex4()?;
        let code = match high {
            0xd800..=0xdbff => {
                if self.bytes().get(self.at..self.at + 2)? != b"\\u" {
                    return None;
                }
                self.at += 2;
                let low = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&low) {
                    return None;
                }
                0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)
            }
            0xdc00..=0xdfff => return None,
            _ => high,
        };
        char::from_u32(code)
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes().get(self.at..self.at + 4)?;
        let mut value = 0;
        for &d in digits {
            value = value * 16 + char::from(d).to_digit(16)?;
        }
        self.at += 4;
        Some(value)
    }

    /// A whole number that fits a `u64`, as the deserializer reads one
    /// (no sign, fraction or exponent: those are left to it).
    fn whole(&mut self) -> Option<u64> {
        self.ws();
        let start = self.at;
        let mut value: u64 = 0;
        while let Some(&d @ b'0'..=b'9') = self.bytes().get(self.at) {
            value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        let leading_zero = digits > 1 && self.bytes()[start] == b'0';
        let more = matches!(self.bytes().get(self.at), Some(b'.' | b'e' | b'E'));
        (digits > 0 && !leading_zero && !more).then_some(value)
    }

    /// Passes over any value, checking it is JSON; nothing deep or out of
    /// the ordinary (see [`MAX_DEPTH`], [`MAX_DIGITS`]).
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return None;
                }
                let done = if self.peek()? == b'{' {
                    self.object(|scan, _| scan.skip())
                } else {
                    self.array(Scan::skip)
                };
                self.depth -= 1;
                done
            }
            b't' => self.word("true"),
            b'f' => self.word("false"),
            b'n' => self.word("null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// Passes over a number of JSON's grammar with no exponent, and not
    /// too long.
    fn number(&mut self) -> Option<()> {
        self.ws();
        let start = self.at;
        if self.bytes().get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let digits = |scan: &mut Self| {
            let from = scan.at;
            while let Some(b'0'..=b'9') = scan.bytes().get(scan.at) {
                scan.at += 1;
            }
            scan.at - from
        };
        let int_start = self.at;
        let int = digits(self);
        if int == 0 || (int > 1 && self.bytes()[int_start] == b'0') {
            return None;
        }
        if self.bytes().get(self.at) == Some(&b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        let exponent = matches!(self.bytes().get(self.at), Some(b'e' | b'E'));
        (!exponent && self.at - start <= MAX_DIGITS).then_some(())
    }

    /// A string or null; anything else is not read.
    fn text_or_null(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null()? {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// The chunk object.
    fn chunk(&mut self) -> Option<Chunk<'a>> {
        let mut choices: Once<Option<Common<'a>>> = None;
        let (mut usage_seen, mut object_seen) = (false, false);
        self.object(|scan, key| match key {
            "choices" => {
                if choices.is_some() {
                    return None;
                }
                choices = Some(if scan.null()? {
                    None
                } else {
                    Some(scan.choices()?)
                });
                Some(())
            }
            // A usage, or an error, is read by the deserializer (a null
            // one is as good as none; a usage only once).
            "usage" => {
                if std::mem::replace(&mut usage_seen, true) {
                    return None;
                }
                scan.null()?.then_some(())
            }
            "error" => scan.null()?.then_some(()),
            "object" => {
                if std::mem::replace(&mut object_seen, true) {
                    return None;
                }
                match scan.text_or_null()? {
                    Some(object) if object == "error" => None,
                    _ => Some(()),
                }
            }
            _ => scan.skip(),
        })?;
        Some(Chunk {
            choices: choices.flatten(),
        })
    }

    /// The choices array: what its first choice of index 0 (or none)
    /// says, `None` inside when it has none.
    fn choices(&mut self) -> Option<Option<Common<'a>>> {
        let mut first = None;
        self.array(|scan| {
            let choice = scan.choice()?;
            if first.is_none() && matches!(choice.0, None | Some(0)) {
                first = Some(choice.1);
            }
            Some(())
        })?;
        Some(first)
    }

    /// One choice: its index and what it says.
    fn choice(&mut self) -> Option<(Option<u64>, Common<'a>)> {
        let mut index: Once<u64> = None;
        let mut delta: Once<Texts<'a>> = None;
        let mut finish: Once<Cow<'a, str>> = None;
        self.object(|scan, key| {
            let slot_taken = match key {
                "index" => index.is_some(),
                "delta" => delta.is_some(),
                "finish_reason" => finish.is_some(),
                _ => return scan.skip(),
            };
            if slot_taken {
                return None;
            }
            let null = scan.null()?;
            match key {
                "index" => index = Some(if null { None } else { Some(scan.whole()?) }),
                "delta" => delta = Some(if null { None } else { Some(scan.delta()?) }),
                _ => finish = Some(if null { None } else { Some(scan.string()?) }),
            }
            Some(())
        })?;
        let (content, refusal) = delta.flatten().unwrap_or_default();
        Some((
            index.flatten(),
            Common {
                content: content.filter(|t| !t.is_empty()),
                refusal: refusal.filter(|t| !t.is_empty()),
                usage: None,
                finish: finish.flatten(),
            },
        ))
    }

    /// A delta: its text and refusal text.
    fn delta(&mut self) -> Option<Texts<'a>> {
        let mut content: Once<Cow<'a, str>> = None;
        let mut refusal: Once<Cow<'a, str>> = None;
        self.object(|scan, key| {
            let slot = match key {
                "content" => &mut content,
                "refusal" => &mut refusal,
                // Tool-call pieces are read by the value path.
                "tool_calls" => return scan.null()?.then_some(()),
                _ => return scan.skip(),
            };
            if slot.is_some() {
                return None;
            }
            *slot = Some(scan.text_or_null()?);
            Some(())
        })?;
        Some((content.flatten(), refusal.flatten()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::chunk::deserialized;
    use proptest::prelude::*;

    /// A stream chunk as OpenAI and the mock write them.
    fn usual(delta: &str, finish: &str) -> String {
        format!(
            r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","system_fingerprint":null,"choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]}}"#
        )
    }

    #[test]
    fn the_usual_chunks_are_scanned_as_the_deserializer_reads_them() {
        for text in [
            usual(r#"{"role":"assistant","content":""}"#, "null"),
            usual(r#"{"content":"Hello"}"#, "null"),
            usual(r#"{"content":" wor\"ld\n\u00e9\ud83d\ude00 \/ \\ \t"}"#, "null"),
            usual(r#"{"refusal":"no"}"#, "null"),
            usual("{}", r#""stop""#),
            usual(r#"{"content":null,"tool_calls":null}"#, r#""length""#),
            // Spaced out, keys in another order, other choices around.
            r#" { "choices" : [ { "index" : 1 , "delta" : { "content" : "b" } } , { "delta" : { "content" : "a" } , "index" : 0 } ] , "usage" : null , "created" : -1.5 , "x" : [ true , false , { } , [ ] ] } "#.to_owned(),
            r#"{"choices":[]}"#.to_owned(),
            r#"{"choices":[{"index":1,"delta":{"content":"other"}}]}"#.to_owned(),
        ] {
            let scanned = common(&text);
            assert!(scanned.is_some(), "{text}");
            assert_eq!(scanned, deserialized(&text), "{text}");
        }
        let text = usual(r#"{"content":"a\nb"}"#, "null");
        let escaped = common(&text).unwrap();
        assert_eq!(escaped.content.as_deref(), Some("a\nb"));
        let text = usual(r#"{"content":"ab"}"#, "null");
        let plain = common(&text).unwrap();
        assert!(matches!(plain.content, Some(Cow::Borrowed("ab"))));
    }

    #[test]
    fn what_the_scan_is_not_sure_of_it_leaves() {
        for text in [
            // Left to the deserializer, which reads them.
            r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
            r#"{"choi\u0063es":[{"index":0,"delta":{"content":"a"}}]}"#,
            r#"{"created":1e9,"choices":[]}"#,
            r#"{"created":123456789012345678901234567890123,"choices":[]}"#,
            r#"{"choices":[{"index":-0,"delta":{"content":"a"}}]}"#,
            // Not common at all.
            r#"{"error":{"message":"no"},"choices":[]}"#,
            r#"{"object":"error","choices":[]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[]}}]}"#,
            r#"{"id":"x"}"#,
            r#"{"choices":null}"#,
            // Not JSON, or not this JSON.
            r#"{"choices":[],}"#,
            r#"{"choices":[] "x":1}"#,
            r#"{"choices":[]} x"#,
            r#"{"choices":[],"x":01}"#,
            r#"{"choices":[],"x":1.}"#,
            r#"{"choices":[],"x":nul}"#,
            r#"{"choices":[],"x":"\q"}"#,
            r#"{"choices":[],"x":"\ud800"}"#,
            r#"{"choices":[],"x":"tab	inside"}"#,
            r#"{"choices":[],"choices":[]}"#,
            r#"{"choices":[],"usage":null,"usage":null}"#,
            r#"{"choices":[{"index":0,"index":0}]}"#,
            r#"{"choices":[{"index":0.0}]}"#,
            r#"{"choices":[{"delta":"text"}]}"#,
            r#"{"choices":[{"finish_reason":1}]}"#,
            r#"[{"choices":[]}]"#,
            "",
        ] {
            assert_eq!(common(text), None, "{text}");
        }
        let deep = format!(
            r#"{{"choices":[],"x":{}{}}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        assert_eq!(common(&deep), None);
    }

    /// JSON text of a chunk's parts, spaced at random, with values of
    /// every kind where the usual ones go.
    fn spaced(parts: Vec<(String, String)>, gaps: Vec<&'static str>) -> String {
        let gap = |i: usize| gaps[i % gaps.len()];
        let mut out = format!("{}{{", gap(0));
        for (i, (key, value)) in parts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "{}{key}{}:{}{value}{}",
                gap(i + 1),
                gap(i + 2),
                gap(i + 3),
                gap(i + 4)
            ));
        }
        out.push_str(&format!("}}{}", gap(parts.len() + 5)));
        out
    }

    /// A JSON string, escaped every way JSON allows, now and then one
    /// that is not JSON.
    fn string() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
            4 => "[a-z ]{0,6}".prop_map(|s| format!("\"{s}\"")),
            2 => prop::sample::select(vec![
                r#""a\nb""#, r#""\u00e9\ud83d\ude00""#, r#""\/\b\f\r\t""#, r#""stop""#,
                r#""error""#, r#""""#, r#""\u0000""#,
            ])
            .prop_map(str::to_owned),
            1 => prop::sample::select(vec![r#""\ud800""#, r#""\udc00x""#, r#""\x""#, "\"a\u{1}\""])
                .prop_map(str::to_owned),
        ]
    }

    /// A JSON value of any kind, now and then one that is not JSON.
    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => string(),
            6 => prop::sample::select(vec![
                "null", "true", "false", "0", "1", "-0", "-1", "1.5", "1e3", "2E-2",
                "18446744073709551615", "18446744073709551616", "[]", "{}", "[null,1]",
                r#"{"a":[1,{"b":"c"}]}"#,
            ])
            .prop_map(str::to_owned),
            1 => prop::sample::select(vec!["01", "1.", "nul", "-", "+1", "'a'", "[1,]", "{\"a\"}"])
                .prop_map(str::to_owned),
        ]
    }

    /// An object of `fields` (each left out when `None`) and `extra` ones,
    /// in a shuffled order, spaced by `gaps`.
    fn object_of(
        fields: Vec<(&'static str, Option<String>)>,
        extra: Vec<(&'static str, String)>,
        gaps: Vec<&'static str>,
        turn: usize,
    ) -> String {
        let mut parts: Vec<(String, String)> = fields
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .chain(extra.into_iter().map(|(k, v)| (k.to_owned(), v)))
            .collect();
        if !parts.is_empty() {
            let turn = turn % parts.len();
            parts.rotate_left(turn);
        }
        spaced(parts, gaps)
    }

    fn gaps() -> impl Strategy<Value = Vec<&'static str>> {
        prop::collection::vec(
            prop::sample::select(vec!["", "", " ", "\n\t", "\r\n "]),
            1..5,
        )
    }

    fn delta() -> impl Strategy<Value = String> {
        let text = prop_oneof![4 => string(), 1 => scalar()];
        let extra_keys = prop::sample::select(vec![
            "\"role\"",
            "\"tool_calls\"",
            "\"c\\u006fntent\"",
            "\"content\"",
        ]);
        (
            prop::option::of(text.clone()),
            prop::option::weighted(0.2, text),
            prop::collection::vec((extra_keys, scalar()), 0..2),
            gaps(),
            any::<usize>(),
        )
            .prop_map(|(content, refusal, extra, gaps, turn)| {
                object_of(
                    vec![("\"content\"", content), ("\"refusal\"", refusal)],
                    extra,
                    gaps,
                    turn,
                )
            })
    }

    fn choice() -> impl Strategy<Value = String> {
        let index =
            prop_oneof![4 => Just("0".to_owned()), 1 => Just("1".to_owned()), 1 => scalar()];
        let delta = prop_oneof![4 => delta(), 1 => scalar()];
        let finish = prop_oneof![
            3 => Just("null".to_owned()),
            2 => prop::sample::select(vec!["\"stop\"", "\"length\"", "\"content_filter\""]).prop_map(str::to_owned),
            1 => scalar(),
        ];
        let extra_keys = prop::sample::select(vec!["\"logprobs\"", "\"index\"", "\"delta\""]);
        (
            prop::option::weighted(0.9, index),
            prop::option::weighted(0.9, delta),
            prop::option::weighted(0.8, finish),
            prop::collection::vec((extra_keys, scalar()), 0..2),
            gaps(),
            any::<usize>(),
        )
            .prop_map(|(index, delta, finish, extra, gaps, turn)| {
                object_of(
                    vec![
                        ("\"index\"", index),
                        ("\"delta\"", delta),
                        ("\"finish_reason\"", finish),
                    ],
                    extra,
                    gaps,
                    turn,
                )
            })
    }

    fn chunk() -> impl Strategy<Value = String> {
        let choices = prop_oneof![
            6 => prop::collection::vec(prop_oneof![6 => choice(), 1 => scalar()], 0..3)
                .prop_map(|c| format!("[{}]", c.join(","))),
            1 => scalar(),
        ];
        let extra_keys = prop_oneof![
            6 => prop::sample::select(vec!["\"id\"", "\"model\"", "\"created\"", "\"system_fingerprint\""]),
            1 => prop::sample::select(vec!["\"usage\"", "\"object\"", "\"error\"", "\"choices\""]),
        ];
        let extra_value = prop_oneof![
            4 => scalar(),
            1 => Just("null".to_owned()),
            1 => Just(r#"{"prompt_tokens":3,"completion_tokens":4}"#.to_owned()),
            1 => Just("\"chat.completion.chunk\"".to_owned()),
        ];
        (
            prop::option::weighted(0.9, choices),
            prop::collection::vec((extra_keys, extra_value), 0..4),
            gaps(),
            any::<usize>(),
        )
            .prop_map(|(choices, extra, gaps, turn)| {
                object_of(vec![("\"choices\"", choices)], extra, gaps, turn)
            })
    }

    /// `text` with one byte taken out or put in (kept UTF-8): most such
    /// texts are not JSON.
    fn mutated() -> impl Strategy<Value = String> {
        (
            chunk(),
            any::<prop::sample::Index>(),
            prop::sample::select(vec!["", ",", "\"", "}", "]", "\\", "0", "\u{1}"]),
        )
            .prop_map(|(text, at, put)| {
                let mut at = at.index(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let mut out = text.clone();
                if put.is_empty() {
                    if let Some(c) = out[at..].chars().next() {
                        out.replace_range(at..at + c.len_utf8(), "");
                    }
                } else {
                    out.insert_str(at, put);
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// When the scan answers, the deserializer answers the same.
        #[test]
        fn a_scanned_chunk_reads_as_the_deserializer_reads_it(text in prop_oneof![chunk(), mutated()]) {
            if let Some(scanned) = common(&text) {
                prop_assert_eq!(Some(scanned), deserialized(&text), "{}", text);
            }
        }
    }

    #[test]
    fn generated_chunks_often_take_the_scan() {
        // So that the property compares the scan with the deserializer on
        // frames of every kind, not on refusals alone.
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut scanned, mut read, cases) = (0, 0, 2000);
        for _ in 0..cases {
            let text =
                proptest::strategy::ValueTree::current(&chunk().new_tree(&mut runner).unwrap());
            scanned += usize::from(common(&text).is_some());
            read += usize::from(deserialized(&text).is_some());
        }
        assert!(scanned * 10 >= cases, "only {scanned} of {cases} scanned");
        assert!(
            scanned < read,
            "the deserializer reads more ({read}) than the scan ({scanned})"
        );
    }
}
