//! Values made from a JSON Schema: one that is valid for it, and ones that
//! break it on purpose. The mock answers tool calls and structured-output
//! requests with these; they are public so tests can build the same values.
//!
//! The generator understands the subset of JSON Schema that tool and
//! response-format schemas use: `type` (a name or a list, `null` skipped
//! when there is another), `properties`, `required`, `additionalProperties`,
//! `items`, `prefixItems`, `minItems`/`maxItems`, `enum`, `const`,
//! `anyOf`/`oneOf` (the first alternative that is not `null`), `allOf`
//! (merged), `$ref` to `#/...` (`$defs`, `definitions`), `minimum`,
//! `maximum`, `exclusiveMinimum`/`exclusiveMaximum` (numbers, or draft-4
//! booleans), `multipleOf`, `minLength`/`maxLength` and common string
//! `format`s. It does not satisfy `pattern`, `uniqueItems` with more than
//! one item, `not`, or `if`/`then`. Everything is deterministic: the same
//! schema always gives the same value.
//!
//! ```
//! use serde_json::json;
//!
//! let schema = json!({
//!     "type": "object",
//!     "properties": {
//!         "city": {"type": "string"},
//!         "days": {"type": "integer", "minimum": 3, "maximum": 10},
//!         "unit": {"enum": ["celsius", "fahrenheit"]}
//!     },
//!     "required": ["city", "days"]
//! });
//! assert_eq!(
//!     staunch_mock::schema::example(&schema),
//!     json!({"city": "example", "days": 3, "unit": "celsius"})
//! );
//! // The first required property gets a value of the wrong type.
//! assert_eq!(
//!     staunch_mock::schema::violation(&schema),
//!     Some(json!({"city": 12345, "days": 3, "unit": "celsius"}))
//! );
//! ```

use serde_json::{Map, Value, json};
use std::borrow::Cow;

/// Beyond this depth an object keeps only its required properties and an
/// array only its `minItems`, so recursive schemas end.
const OPTIONAL_DEPTH: usize = 8;
/// Beyond this depth the generator gives up with `null`.
const MAX_DEPTH: usize = 32;
/// `$ref` hops followed at most.
const MAX_REFS: usize = 16;

/// A value valid for `schema` (see the [module docs](self) for the subset
/// understood): every property present (required ones always, optional
/// ones down to a depth of 8), strings `"example"` (or a sample of their
/// `format`) within their length bounds, numbers 1 moved into their bounds,
/// the first `enum` value, arrays of one item (or `minItems`), `true`.
/// A schema that constrains nothing gives `"example"`.
pub fn example(schema: &Value) -> Value {
    Gen { root: schema }.example(schema, 0)
}

/// A value that is valid JSON but breaks `schema`, or `None` when nothing
/// breaks it (`{}`, `true`). For an object schema: the valid example with
/// its first required property (else its first property) given a value of
/// the wrong type; else with a required property left out; else, if
/// `additionalProperties` is `false`, with an extra property; else a value
/// that is not an object. For any other schema: a value of the wrong type.
pub fn violation(schema: &Value) -> Option<Value> {
    let g = Gen { root: schema };
    let s = g.flatten(schema, 0);
    if g.kind(&s) != Some("object") {
        return g.wrong_value(&s);
    }
    let mut out = match g.example(&s, 0) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let properties = s.get("properties").and_then(Value::as_object);
    let required = required(&s);
    let candidates = required.iter().copied().chain(
        properties
            .into_iter()
            .flat_map(|p| p.keys().map(String::as_str)),
    );
    for name in candidates {
        let property = properties
            .and_then(|p| p.get(name))
            .unwrap_or(&Value::Bool(true));
        if let Some(bad) = g.wrong_value(&g.flatten(property, 0)) {
            out.insert(name.to_owned(), bad);
            return Some(Value::Object(out));
        }
    }
    if let Some(name) = required.first() {
        out.remove(*name);
        return Some(Value::Object(out));
    }
    if s.get("additionalProperties") == Some(&Value::Bool(false)) {
        out.insert("unexpected_property".to_owned(), json!("example"));
        return Some(Value::Object(out));
    }
    g.wrong_value(&s)
}

/// The valid example of an object `schema` with all its required
/// properties left out, or `None` when it requires none.
pub fn without_required(schema: &Value) -> Option<Value> {
    let g = Gen { root: schema };
    let s = g.flatten(schema, 0);
    let required = required(&s);
    if g.kind(&s) != Some("object") || required.is_empty() {
        return None;
    }
    let mut out = g.example(&s, 0);
    if let Value::Object(map) = &mut out {
        for name in required {
            map.remove(name);
        }
    }
    Some(out)
}

fn required(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The JSON type name of `value` (`integer` for whole numbers).
fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

struct Gen<'r> {
    root: &'r Value,
}

impl<'r> Gen<'r> {
    /// `schema` with its `$ref`s followed and its `allOf` merged in.
    fn flatten<'a>(&self, schema: &'a Value, depth: usize) -> Cow<'a, Value>
    where
        'r: 'a,
    {
        let mut s: &'a Value = schema;
        for _ in 0..MAX_REFS {
            let Some(target) = s.get("$ref").and_then(Value::as_str) else {
                break;
            };
            match target.strip_prefix('#').map(|p| self.root.pointer(p)) {
                Some(Some(found)) => s = found,
                _ => return Cow::Owned(Value::Bool(true)),
            }
        }
        let Some(parts) = s.get("allOf").and_then(Value::as_array) else {
            return Cow::Borrowed(s);
        };
        if depth > MAX_DEPTH {
            return Cow::Borrowed(s);
        }
        let mut merged = s.as_object().cloned().unwrap_or_default();
        merged.remove("allOf");
        for part in parts {
            let part = self.flatten(part, depth + 1);
            let Some(part) = part.as_object() else {
                continue;
            };
            for (key, value) in part {
                match (key.as_str(), merged.get_mut(key), value) {
                    ("properties", Some(Value::Object(mine)), Value::Object(theirs)) => {
                        for (k, v) in theirs {
                            mine.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    ("required", Some(Value::Array(mine)), Value::Array(theirs)) => {
                        for v in theirs {
                            if !mine.contains(v) {
                                mine.push(v.clone());
                            }
                        }
                    }
                    (_, Some(_), _) => {}
                    (_, None, _) => {
                        merged.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        Cow::Owned(Value::Object(merged))
    }

    /// The type the example will have: `type` (the first that is not
    /// `null`), else guessed from the keywords; `None` when nothing says.
    fn kind<'a>(&self, s: &'a Value) -> Option<&'a str> {
        match s.get("type") {
            Some(Value::String(t)) => return Some(t),
            Some(Value::Array(types)) => {
                let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
                return names
                    .iter()
                    .find(|t| **t != "null")
                    .or(names.first())
                    .copied();
            }
            _ => {}
        }
        let has = |keys: &[&str]| keys.iter().any(|k| s.get(*k).is_some());
        if has(&["properties", "required", "additionalProperties"]) {
            Some("object")
        } else if has(&["items", "prefixItems", "minItems", "maxItems"]) {
            Some("array")
        } else if has(&[
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "multipleOf",
        ]) {
            Some("number")
        } else if has(&["minLength", "maxLength", "pattern", "format"]) {
            Some("string")
        } else {
            None
        }
    }

    fn example(&self, schema: &Value, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        let s = self.flatten(schema, depth);
        let s = s.as_ref();
        if let Some(c) = s.get("const") {
            return c.clone();
        }
        if let Some(first) = s
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|e| e.iter().find(|v| !v.is_null()).or(e.first()))
        {
            return first.clone();
        }
        let alternatives = s
            .get("anyOf")
            .or_else(|| s.get("oneOf"))
            .and_then(Value::as_array);
        if s.get("type").is_none()
            && let Some(alternatives) = alternatives
            && let Some(first) = alternatives
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .or(alternatives.first())
        {
            return self.example(first, depth + 1);
        }
        match self.kind(s) {
            Some("object") => self.object(s, depth),
            Some("array") => self.array(s, depth),
            Some("integer") => integer(s),
            Some("number") => number(s),
            Some("boolean") => Value::Bool(true),
            Some("null") => Value::Null,
            _ => string(s),
        }
    }

    fn object(&self, s: &Value, depth: usize) -> Value {
        let required = required(s);
        let mut out = Map::new();
        if let Some(properties) = s.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                if depth < OPTIONAL_DEPTH || required.contains(&name.as_str()) {
                    out.insert(name.clone(), self.example(property, depth + 1));
                }
            }
        }
        let extra = match s.get("additionalProperties") {
            Some(schema @ Value::Object(_)) => schema,
            _ => &Value::Bool(true),
        };
        for name in required {
            if !out.contains_key(name) {
                out.insert(name.to_owned(), self.example(extra, depth + 1));
            }
        }
        Value::Object(out)
    }

    fn array(&self, s: &Value, depth: usize) -> Value {
        let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = s
            .get("maxItems")
            .and_then(Value::as_u64)
            .map(|m| m as usize);
        let wanted = if depth < OPTIONAL_DEPTH {
            min.max(1)
        } else {
            min
        };
        let n = max.map_or(wanted, |max| wanted.min(max));
        // `prefixItems` (or draft-4 `items` as a list) fixes the first items.
        let prefix: &[Value] = match (s.get("prefixItems"), s.get("items")) {
            (Some(Value::Array(p)), _) | (None, Some(Value::Array(p))) => p,
            _ => &[],
        };
        let rest = match s.get("items") {
            Some(items @ (Value::Object(_) | Value::Bool(_))) => items,
            _ => &Value::Bool(true),
        };
        let n = n.max(prefix.len().min(max.unwrap_or(usize::MAX)));
        (0..n)
            .map(|i| self.example(prefix.get(i).unwrap_or(rest), depth + 1))
            .collect()
    }

    /// A value whose type (or `enum`/`const`) `s` refuses, or `None` if it
    /// refuses none of the candidates.
    fn wrong_value(&self, s: &Value) -> Option<Value> {
        [
            json!(12345),
            json!("not a valid value"),
            json!(true),
            json!([]),
            json!({}),
        ]
        .into_iter()
        .find(|candidate| !self.accepts_kind(s, candidate, 0))
    }

    /// Whether `value` passes `s`'s `type`, `enum`, `const` and `anyOf` /
    /// `oneOf` (nothing deeper).
    fn accepts_kind(&self, s: &Value, value: &Value, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return true;
        }
        let s = self.flatten(s, depth);
        if let Value::Bool(b) = s.as_ref() {
            return *b;
        }
        if let Some(c) = s.get("const") {
            return c == value;
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            return e.contains(value);
        }
        if let Some(alternatives) = s
            .get("anyOf")
            .or_else(|| s.get("oneOf"))
            .and_then(Value::as_array)
            && !alternatives
                .iter()
                .any(|a| self.accepts_kind(a, value, depth + 1))
        {
            return false;
        }
        let actual = type_of(value);
        let fits = |t: &str| t == actual || (t == "number" && actual == "integer");
        match s.get("type") {
            Some(Value::String(t)) => fits(t),
            Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).any(fits),
            _ => true,
        }
    }
}

/// A bound: its value and whether it is exclusive.
fn bound(s: &Value, inclusive: &str, exclusive: &str) -> Option<(f64, bool)> {
    if let Some(x) = s.get(exclusive).and_then(Value::as_f64) {
        return Some((x, true));
    }
    let x = s.get(inclusive).and_then(Value::as_f64)?;
    // Draft 4: `exclusiveMinimum: true` makes `minimum` exclusive.
    Some((x, s.get(exclusive) == Some(&Value::Bool(true))))
}

fn integer(s: &Value) -> Value {
    let lo = bound(s, "minimum", "exclusiveMinimum").map(|(x, excl)| {
        if excl {
            x.floor() as i64 + 1
        } else {
            x.ceil() as i64
        }
    });
    let hi = bound(s, "maximum", "exclusiveMaximum").map(|(x, excl)| {
        if excl {
            x.ceil() as i64 - 1
        } else {
            x.floor() as i64
        }
    });
    let mut v: i64 = 1;
    if let Some(lo) = lo {
        v = v.max(lo);
    }
    if let Some(hi) = hi {
        v = v.min(hi);
    }
    if let Some(m) = s
        .get("multipleOf")
        .and_then(Value::as_f64)
        .map(|m| m as i64)
        .filter(|m| *m > 0)
    {
        v = v.div_euclid(m) * m;
        if lo.is_some_and(|lo| v < lo) {
            v += m;
        }
    }
    json!(v)
}

fn number(s: &Value) -> Value {
    let lo = bound(s, "minimum", "exclusiveMinimum");
    let hi = bound(s, "maximum", "exclusiveMaximum");
    let below = |v: f64| lo.is_some_and(|(x, excl)| v < x || (excl && v <= x));
    let above = |v: f64| hi.is_some_and(|(x, excl)| v > x || (excl && v >= x));
    let mut v = 1.0;
    if below(v) || above(v) {
        v = match (lo, hi) {
            (Some((lo, _)), Some((hi, _))) => (lo + hi) / 2.0,
            (Some((lo, excl)), None) => lo + if excl { 1.0 } else { 0.0 },
            (None, Some((hi, excl))) => hi - if excl { 1.0 } else { 0.0 },
            (None, None) => v,
        };
    }
    if let Some(m) = s
        .get("multipleOf")
        .and_then(Value::as_f64)
        .filter(|m| *m > 0.0)
    {
        let down = (v / m).floor() * m;
        v = if below(down) { down + m } else { down };
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

fn string(s: &Value) -> Value {
    let base = match s.get("format").and_then(Value::as_str) {
        Some("date-time") => "2024-01-01T00:00:00Z",
        Some("date") => "2024-01-01",
        Some("time") => "12:00:00",
        Some("email") => "mock@example.com",
        Some("uri" | "url" | "iri") => "https://example.com/",
        Some("hostname") => "example.com",
        Some("ipv4") => "192.0.2.1",
        Some("ipv6") => "2001:db8::1",
        Some("uuid") => "00000000-0000-4000-8000-000000000000",
        _ => "example",
    };
    let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max = s
        .get("maxLength")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |m| m as usize);
    let mut text: String = base.chars().take(max).collect();
    let len = text.chars().count();
    if len < min {
        text.extend(std::iter::repeat_n('x', min - len));
    }
    Value::String(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small validator for the same subset, to check the generator.
    fn valid(root: &Value, schema: &Value, value: &Value) -> Result<(), String> {
        let g = Gen { root };
        let s = g.flatten(schema, 0);
        let s = s.as_ref();
        if !g.accepts_kind(s, value, 0) {
            return Err(format!("{value} is not of the kind of {s}"));
        }
        if let Some(alternatives) = s
            .get("anyOf")
            .or_else(|| s.get("oneOf"))
            .and_then(Value::as_array)
            && !alternatives.iter().any(|a| valid(root, a, value).is_ok())
        {
            return Err(format!("{value} matches no alternative of {s}"));
        }
        match value {
            Value::Object(map) => {
                for name in required(s) {
                    if !map.contains_key(name) {
                        return Err(format!("{name} is missing from {value}"));
                    }
                }
                let properties = s.get("properties").and_then(Value::as_object);
                for (k, v) in map {
                    match properties.and_then(|p| p.get(k)) {
                        Some(p) => valid(root, p, v)?,
                        None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                            return Err(format!("{k} is not allowed"));
                        }
                        None => {}
                    }
                }
            }
            Value::Array(items) => {
                let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0);
                let max = s
                    .get("maxItems")
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::MAX);
                if !(min..=max).contains(&(items.len() as u64)) {
                    return Err(format!("{} items", items.len()));
                }
                let prefix = s.get("prefixItems").and_then(Value::as_array);
                for (i, item) in items.iter().enumerate() {
                    if let Some(p) = prefix.and_then(|p| p.get(i)).or(s.get("items")) {
                        valid(root, p, item)?;
                    }
                }
            }
            Value::Number(n) => {
                let v = n.as_f64().unwrap();
                if let Some((lo, excl)) = bound(s, "minimum", "exclusiveMinimum")
                    && (v < lo || (excl && v <= lo))
                {
                    return Err(format!("{v} is below {lo}"));
                }
                if let Some((hi, excl)) = bound(s, "maximum", "exclusiveMaximum")
                    && (v > hi || (excl && v >= hi))
                {
                    return Err(format!("{v} is above {hi}"));
                }
                if let Some(m) = s.get("multipleOf").and_then(Value::as_f64)
                    && (v / m).fract() != 0.0
                {
                    return Err(format!("{v} is not a multiple of {m}"));
                }
            }
            Value::String(text) => {
                let len = text.chars().count() as u64;
                let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0);
                let max = s
                    .get("maxLength")
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::MAX);
                if !(min..=max).contains(&len) {
                    return Err(format!("{text:?} has {len} characters"));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn check(schema: &Value) -> Value {
        let value = example(schema);
        valid(schema, schema, &value).unwrap_or_else(|e| panic!("{schema}: {e}"));
        assert_eq!(example(schema), value, "deterministic");
        value
    }

    #[test]
    fn scalars_within_their_bounds() {
        assert_eq!(check(&json!({"type": "string"})), json!("example"));
        assert_eq!(
            check(&json!({"type": "string", "minLength": 10})),
            json!("examplexxx")
        );
        assert_eq!(
            check(&json!({"type": "string", "maxLength": 3})),
            json!("exa")
        );
        assert_eq!(
            check(&json!({"type": "string", "format": "date-time"})),
            json!("2024-01-01T00:00:00Z")
        );
        assert_eq!(check(&json!({"type": "integer"})), json!(1));
        assert_eq!(
            check(&json!({"type": "integer", "minimum": 5, "maximum": 9})),
            json!(5)
        );
        assert_eq!(check(&json!({"type": "integer", "maximum": -3})), json!(-3));
        assert_eq!(
            check(&json!({"type": "integer", "exclusiveMinimum": 1})),
            json!(2)
        );
        assert_eq!(
            check(&json!({"type": "integer", "minimum": 4, "multipleOf": 3})),
            json!(6)
        );
        assert_eq!(
            check(&json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5})),
            json!(0.25)
        );
        assert_eq!(
            check(
                &json!({"type": "number", "minimum": 10, "exclusiveMaximum": true, "maximum": 20})
            ),
            json!(15)
        );
        assert_eq!(check(&json!({"type": "boolean"})), json!(true));
        assert_eq!(check(&json!({"type": "null"})), json!(null));
        assert_eq!(check(&json!({"type": ["null", "integer"]})), json!(1));
        assert_eq!(check(&json!({"enum": ["b", "a"]})), json!("b"));
        assert_eq!(check(&json!({"const": 42})), json!(42));
        assert_eq!(check(&json!({})), json!("example"));
    }

    #[test]
    fn objects_and_arrays_nest_with_required_fields_present() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "address": {
                    "type": "object",
                    "properties": {"zip": {"type": "string", "maxLength": 5}},
                    "required": ["zip", "country"]
                },
                "scores": {"type": "array", "items": {"type": "number", "minimum": 2.5}, "maxItems": 0}
            },
            "required": ["name", "address"],
            "additionalProperties": false
        });
        assert_eq!(
            check(&schema),
            json!({
                "name": "example",
                "tags": ["example", "example"],
                "address": {"zip": "examp", "country": "example"},
                "scores": []
            })
        );
        assert_eq!(
            check(
                &json!({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}]})
            ),
            json!([1, true])
        );
        assert_eq!(check(&json!({"type": "object"})), json!({}));
    }

    #[test]
    fn refs_all_of_and_any_of() {
        let schema = json!({
            "$defs": {
                "Step": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
                "Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}
            },
            "type": "object",
            "properties": {
                "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}},
                "maybe": {"anyOf": [{"type": "null"}, {"type": "string", "format": "email"}]},
                "both": {"allOf": [
                    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}
                ]},
                "tree": {"$ref": "#/$defs/Node"}
            },
            "required": ["steps", "maybe", "both", "tree"]
        });
        let value = check(&schema);
        assert_eq!(value["steps"], json!([{"n": 1}]));
        assert_eq!(value["maybe"], json!("mock@example.com"));
        assert_eq!(value["both"], json!({"a": 1, "b": true}));
        // A recursive schema ends: optional properties stop at a depth.
        let mut depth = 0;
        let mut node = &value["tree"];
        while let Some(child) = node.get("child") {
            node = child;
            depth += 1;
        }
        assert!(depth < OPTIONAL_DEPTH, "{depth}");
    }

    #[test]
    fn violations_are_json_that_the_schema_refuses() {
        let schema = json!({
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["days"]
        });
        let bad = violation(&schema).unwrap();
        assert_eq!(bad, json!({"city": "example", "days": "not a valid value"}));
        assert!(valid(&schema, &schema, &bad).is_err());

        // A property that accepts anything can't be mistyped: leave it out.
        let loose = json!({"type": "object", "properties": {"any": {}}, "required": ["any"]});
        assert_eq!(violation(&loose), Some(json!({})));
        let closed = json!({"type": "object", "additionalProperties": false});
        let bad = violation(&closed).unwrap();
        assert!(valid(&closed, &closed, &bad).is_err(), "{bad}");
        assert_eq!(violation(&json!({"type": "object"})), Some(json!(12345)));
        assert_eq!(violation(&json!({"enum": ["a"]})), Some(json!(12345)));
        assert_eq!(
            violation(&json!({"type": "number"})),
            Some(json!("not a valid value"))
        );
        assert_eq!(violation(&json!({})), None);
        assert_eq!(violation(&json!(true)), None);

        assert_eq!(without_required(&schema), Some(json!({"city": "example"})));
        assert_eq!(without_required(&json!({"type": "object"})), None);
    }
}
