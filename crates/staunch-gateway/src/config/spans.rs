//! Field paths, their spans and lines in the TOML document, and serde's
//! errors turned into [`ConfigError`]s that name the line and the field.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::ConfigError;

/// One step of a field path.
#[derive(Debug, Clone)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

pub(super) fn child(path: &[Seg], seg: Seg) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

pub(super) fn key(path: &[Seg], k: &str) -> Vec<Seg> {
    child(path, Seg::Key(k.to_owned()))
}

pub(super) fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// 1-based line of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The span naming `path` in the document: the key's own span (a table
/// header's line, not its body's), an array element's span; for a path
/// that does not exist (a missing field) the nearest ancestor's.
pub(super) fn span_of(root: &DeTable<'_>, path: &[Seg]) -> Option<Range<usize>> {
    let mut best = None;
    let mut table = Some(root);
    let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
    for seg in path {
        let found = match seg {
            Seg::Key(k) => table
                .and_then(|t| t.iter().find(|(key, _)| &**key.get_ref() == k))
                .map(|(key, value)| (key.span(), value)),
            Seg::Index(i) => array
                .and_then(|a| a.get(*i))
                .map(|value| (value.span(), value)),
        };
        let Some((span, value)) = found else {
            break;
        };
        best = Some(span);
        table = None;
        array = None;
        match value.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    best
}

/// The deepest field under `value` (at `path`) whose key or value span
/// holds `offset`: where a serde error points.
fn locate(value: &Spanned<DeValue<'_>>, path: &[Seg], offset: usize) -> Option<Vec<Seg>> {
    fn holds(span: &Range<usize>, offset: usize) -> bool {
        span.contains(&offset) || span.start == offset
    }
    fn walk(
        value: &Spanned<DeValue<'_>>,
        path: &mut Vec<Seg>,
        offset: usize,
        best: &mut Option<(Vec<Seg>, usize)>,
    ) {
        let consider =
            |path: &Vec<Seg>, span: Range<usize>, best: &mut Option<(Vec<Seg>, usize)>| {
                if !holds(&span, offset) {
                    return;
                }
                let better = match best {
                    None => true,
                    Some((p, len)) => {
                        path.len() > p.len() || (path.len() == p.len() && span.len() < *len)
                    }
                };
                if better {
                    *best = Some((path.clone(), span.len()));
                }
            };
        match value.get_ref() {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    path.push(Seg::Key(k.get_ref().to_string()));
                    consider(path, k.span(), best);
                    consider(path, v.span(), best);
                    walk(v, path, offset, best);
                    path.pop();
                }
            }
            DeValue::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    consider(path, v.span(), best);
                    walk(v, path, offset, best);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut best = None;
    walk(value, &mut path.to_vec(), offset, &mut best);
    best.map(|(p, _)| p)
}

pub(super) struct Doc<'a> {
    pub(super) origin: &'a str,
    pub(super) text: &'a str,
}

impl Doc<'_> {
    pub(super) fn error_at(
        &self,
        path: &[Seg],
        span: Option<Range<usize>>,
        message: String,
    ) -> ConfigError {
        ConfigError {
            origin: self.origin.to_owned(),
            line: span.map(|s| line_of(self.text, s.start)),
            field: render(path),
            message,
        }
    }

    /// TOML syntax errors, each with the field being written when the
    /// parser can tell.
    pub(super) fn syntax_errors(&self) -> Vec<ConfigError> {
        let (partial, errors) = DeTable::parse_recoverable(self.text);
        let root = Spanned::new(partial.span(), DeValue::Table(partial.into_inner()));
        let mut out: Vec<ConfigError> = Vec::new();
        for e in errors {
            let span = e.span();
            let line = span.as_ref().map(|s| line_of(self.text, s.start));
            // One error per line: the parser's recovery can report a line's
            // mistake more than once.
            if line.is_some() && out.iter().any(|o| o.line == line) {
                continue;
            }
            let field = span
                .and_then(|s| locate(&root, &[], s.start))
                .map(|p| render(&p))
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| "syntax".to_owned());
            out.push(ConfigError {
                origin: self.origin.to_owned(),
                line,
                field,
                message: format!("invalid TOML: {}", e.message().trim_end()),
            });
        }
        out
    }

    pub(super) fn deserialize<'i, T: Deserialize<'i>>(
        &self,
        value: &Spanned<DeValue<'i>>,
        path: &[Seg],
        errors: &mut Vec<ConfigError>,
    ) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().unwrap_or_else(|| value.span());
                let field = locate(value, path, span.start).unwrap_or_else(|| path.to_vec());
                errors.push(self.error_at(&field, Some(span), polish(e.message())));
                None
            }
        }
    }

    pub(super) fn expect_table<'v, 'i>(
        &self,
        value: &'v Spanned<DeValue<'i>>,
        path: &[Seg],
        errors: &mut Vec<ConfigError>,
    ) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                errors.push(self.error_at(
                    path,
                    Some(value.span()),
                    format!("invalid type: {}, expected a table", other.type_str()),
                ));
                None
            }
        }
    }

    pub(super) fn expect_array<'v, 'i>(
        &self,
        value: &'v Spanned<DeValue<'i>>,
        path: &[Seg],
        errors: &mut Vec<ConfigError>,
    ) -> Option<&'v [Spanned<DeValue<'i>>]> {
        match value.get_ref() {
            DeValue::Array(a) => Some(a),
            other => {
                errors.push(self.error_at(
                    path,
                    Some(value.span()),
                    format!(
                        "invalid type: {}, expected an array of tables ([[{}]])",
                        other.type_str(),
                        render(path)
                    ),
                ));
                None
            }
        }
    }
}

/// serde's messages, in the file's terms.
fn polish(message: &str) -> String {
    message
        .trim_end()
        .replace("expected usize", "expected a non-negative integer")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected u32", "expected a non-negative integer")
        .replace("expected f64", "expected a number")
}
