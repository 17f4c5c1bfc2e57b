//! YAML read the way `kubectl` reads it: libyaml's syntax (through `libyaml-safer`, a
//! safe Rust port of libyaml; Go's `yaml.v2`, which kubectl uses through
//! `sigs.k8s.io/yaml`, is itself a port of libyaml) and `yaml.v2`'s YAML 1.1 typing,
//! then `sigs.k8s.io/yaml`'s conversion to JSON, straight into [`serde_json::Value`].
//!
//! What that means, checked against `sigs.k8s.io/yaml` v1.6.0 (`YAMLToJSON`):
//! - plain scalars: `y`/`yes`/`on`/`true` (any of three casings) are `true`, the `n`/`no`/
//!   `off`/`false` family `false`, `~`/`null`/empty `null`; integers in Go's syntax with `_`
//!   ignored (`1__0` is 10, `0755` and `0o755` are octal, `0x1F` hex, `0b101` binary); floats
//!   `1e3`, `.5`, `08` (not octal, so a float); `.inf`/`.nan` are refused (JSON has no such
//!   numbers); everything else, timestamps included, is a string;
//! - mapping keys are typed the same way, then written as JSON strings (`on` → `"true"`,
//!   `0x10` → `"16"`, `010` → `"8"`, `1e6` → `"1e+06"`); a repeated key (also one that only
//!   becomes equal after typing) is accepted and the **last value wins**, in the position of
//!   the first; null, collection and out-of-range integer keys are refused;
//! - `<<` merges, with yaml.v2's order (a merge overrides keys set before it; in a list of
//!   merged maps the earlier map wins); anchors and aliases;
//! - tags: `!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!binary` (base64-decoded)
//!   and `!!timestamp` as yaml.v2 reads them; other tags (`!Ref`) are ignored;
//! - integral floats are written as integers (`1.0` → `1`), as Go's JSON encoder does.

use std::collections::HashMap;

use libyaml_safer::{Event, EventData, Parser, ScalarStyle};
use serde_json::{Map, Value};

/// Text that kubectl would not read, with the 1-based line (within the text given) where
/// known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// What is wrong, with line and column where known.
    pub message: String,
    /// 1-based line of the problem.
    pub line: Option<usize>,
}

/// Expanding aliases can turn a small text into a huge value ("billion laughs"): this
/// many nodes copied through aliases per document is the most accepted.
const MAX_ALIAS_NODES: usize = 1_000_000;

/// Reads the first YAML document of `text` (kubectl reads only the first document of a
/// chunk between `---` separators). `None` for a text with no document or a `null` one.
/// Also returns the 1-based line where the document's content starts. `lines_before` is
/// how many lines of the stream precede `text` (lines in results and messages count from
/// the stream's start).
pub fn read_first_document(
    text: &str,
    lines_before: usize,
) -> Result<Option<(Value, usize)>, ReadError> {
    let mut bytes = text.as_bytes();
    let mut parser = Parser::new();
    parser.set_input_string(&mut bytes);
    let mut b = Builder {
        lines_before,
        ..Builder::default()
    };
    loop {
        let event = parser
            .parse()
            .map_err(|e| syntax_error(&e, lines_before, text.len()))?;
        match b.event(event)? {
            Step::More => {}
            Step::Document(v) => {
                return Ok(v.filter(|v| !v.is_null()).map(|v| (v, b.first_line)));
            }
            Step::End => return Ok(None),
        }
    }
}

fn syntax_error(e: &libyaml_safer::Error, lines_before: usize, len: usize) -> ReadError {
    // A problem found at the end of the text (an unclosed `[`) is better pointed at by
    // where the construct started.
    let at_end = e.problem_mark().is_some_and(|m| m.index as usize >= len);
    let mark = match e.context_mark() {
        Some(c) if at_end && e.context().is_some_and(|c| !c.is_empty()) => Some(c),
        _ => e.problem_mark(),
    };
    let line = mark.map(|m| m.line as usize + 1 + lines_before);
    let mut message = String::new();
    if let (Some(m), Some(line)) = (mark, line) {
        message.push_str(&format!("line {line} column {}: ", m.column + 1));
    }
    message.push_str(e.problem());
    if let (Some(context), Some(m)) = (e.context(), e.context_mark())
        && !context.is_empty()
    {
        message.push_str(&format!(
            " ({context} at line {})",
            m.line as usize + 1 + lines_before
        ));
    }
    ReadError { message, line }
}

fn error_at(line: usize, message: impl Into<String>) -> ReadError {
    let message = message.into();
    ReadError {
        message: format!("line {line}: {message}"),
        line: Some(line),
    }
}

enum Step {
    More,
    Document(Option<Value>),
    End,
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: Option<String>,
    },
    Map {
        map: Map<String, Value>,
        anchor: Option<String>,
        /// The key read, waiting for its value (`None` for a merge key).
        key: Option<Option<String>>,
        /// Line of that key, for messages.
        key_line: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<String, Value>,
    root: Option<Value>,
    seen_root: bool,
    alias_nodes: usize,
    first_line: usize,
    lines_before: usize,
}

/// A scalar as yaml.v2 types it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str,
}

impl Builder {
    fn event(&mut self, event: Event) -> Result<Step, ReadError> {
        let line = event.start_mark.line as usize + 1 + self.lines_before;
        match event.data {
            EventData::StreamStart { .. } | EventData::DocumentStart { .. } => Ok(Step::More),
            EventData::DocumentEnd { .. } => Ok(Step::Document(self.root.take())),
            EventData::StreamEnd => Ok(Step::End),
            EventData::Alias { anchor } => {
                let v = self.anchors.get(&anchor).cloned().ok_or_else(|| {
                    error_at(line, format!("unknown anchor '{anchor}' referenced"))
                })?;
                self.alias_nodes += count_nodes(&v);
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(error_at(
                        line,
                        "aliases expand to more than 1,000,000 nodes (an alias bomb?)",
                    ));
                }
                self.node(v, None, line)
            }
            EventData::Scalar {
                anchor,
                tag,
                value,
                style,
                ..
            } => {
                let plain = style == ScalarStyle::Plain;
                if plain && tag.is_none() && value == "<<" && self.expects_key() {
                    // A merge key: the value that follows is merged into the mapping.
                    if let Some(Frame::Map { key, key_line, .. }) = self.stack.last_mut() {
                        *key = Some(None);
                        *key_line = line;
                    }
                    return Ok(Step::More);
                }
                let typed =
                    type_scalar(&value, tag.as_deref(), plain).map_err(|m| error_at(line, m))?;
                let text = match tag.as_deref() {
                    Some("tag:yaml.org,2002:binary") => {
                        decode_base64(&value).map_err(|m| error_at(line, m))?
                    }
                    _ => value,
                };
                if self.expects_key() {
                    let key = scalar_key(typed, text).map_err(|m| error_at(line, m))?;
                    return self.key(key, anchor, line);
                }
                let v = scalar_value(typed, text).map_err(|m| error_at(line, m))?;
                self.node(v, anchor, line)
            }
            EventData::SequenceStart { anchor, .. } => {
                self.open(line)?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                });
                Ok(Step::More)
            }
            EventData::MappingStart { anchor, .. } => {
                self.open(line)?;
                self.stack.push(Frame::Map {
                    map: Map::new(),
                    anchor,
                    key: None,
                    key_line: line,
                });
                Ok(Step::More)
            }
            EventData::SequenceEnd | EventData::MappingEnd => {
                let (v, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { items, anchor }) => (Value::Array(items), anchor),
                    Some(Frame::Map { map, anchor, .. }) => (Value::Object(map), anchor),
                    None => return Err(error_at(line, "unbalanced collection end")),
                };
                self.place(v, anchor, line)
            }
        }
    }

    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    /// A collection starts: it may not be a mapping key.
    fn open(&mut self, line: usize) -> Result<(), ReadError> {
        if self.stack.is_empty() && self.first_line == 0 {
            self.first_line = line;
        }
        if self.expects_key() {
            return Err(error_at(
                line,
                "a mapping key must be a scalar (kubectl refuses list and mapping keys)",
            ));
        }
        Ok(())
    }

    /// A scalar key was read.
    fn key(&mut self, k: String, anchor: Option<String>, line: usize) -> Result<Step, ReadError> {
        if let Some(a) = anchor {
            self.anchors.insert(a, Value::String(k.clone()));
        }
        if let Some(Frame::Map { key, key_line, .. }) = self.stack.last_mut() {
            *key = Some(Some(k));
            *key_line = line;
        }
        Ok(Step::More)
    }

    /// A value from an alias or a scalar.
    fn node(&mut self, v: Value, anchor: Option<String>, line: usize) -> Result<Step, ReadError> {
        if self.stack.is_empty() && self.first_line == 0 {
            self.first_line = line;
        }
        if self.expects_key() {
            let k = key_string(&v).map_err(|m| error_at(line, m))?;
            return self.key(k, anchor, line);
        }
        self.place(v, anchor, line)
    }

    /// Puts a finished value where it belongs.
    fn place(&mut self, v: Value, anchor: Option<String>, line: usize) -> Result<Step, ReadError> {
        if let Some(a) = anchor {
            self.anchors.insert(a, v.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.seen_root {
                    return Err(error_at(line, "more than one root node"));
                }
                self.seen_root = true;
                self.root = Some(v);
            }
            Some(Frame::Seq { items, .. }) => items.push(v),
            Some(Frame::Map { map, key, .. }) => match key.take() {
                Some(Some(k)) => {
                    // Last wins, as yaml.v2 decoding into a Go map.
                    map.insert(k, v);
                }
                Some(None) => merge(map, v, line)?,
                None => {
                    return Err(error_at(
                        line,
                        "a mapping key must be a scalar (kubectl refuses list and mapping keys)",
                    ));
                }
            },
        }
        Ok(Step::More)
    }
}

/// `<<: value`, as yaml.v2 does it: a mapping's keys are set (overriding keys set
/// before); a list of mappings is merged last to first, so the first one wins.
fn merge(into: &mut Map<String, Value>, v: Value, line: usize) -> Result<(), ReadError> {
    let bad = || {
        error_at(
            line,
            "map merge requires a mapping or a list of mappings as its value",
        )
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                into.insert(k, v);
            }
        }
        Value::Array(items) => {
            for item in items.into_iter().rev() {
                let Value::Object(m) = item else {
                    return Err(bad());
                };
                for (k, v) in m {
                    into.insert(k, v);
                }
            }
        }
        _ => return Err(bad()),
    }
    Ok(())
}

fn count_nodes(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Object(m) => 1 + m.values().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

/// The JSON key kubectl makes of a typed key (`sigs.k8s.io/yaml`'s conversion).
fn key_string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i.to_string())
            } else if n.is_u64() {
                Err(format!(
                    "mapping key {n} is out of range (kubectl refuses integer keys above 2^63-1)"
                ))
            } else {
                Ok(go_float32_g(n.as_f64().unwrap_or(0.0)))
            }
        }
        Value::Null => Err("a mapping key may not be null (kubectl refuses it)".into()),
        Value::Array(_) | Value::Object(_) => {
            Err("a mapping key must be a scalar (kubectl refuses list and mapping keys)".into())
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)`, as `sigs.k8s.io/yaml` writes float keys.
pub(crate) fn go_float32_g(f: f64) -> String {
    let x = f as f32;
    if x.is_nan() {
        return ".nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Shortest digits that read back as the same f32, as Go's shortest formatting.
    let e = format!("{:e}", x.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if x < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    } else if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        format!("{sign}0.{zeros}{digits}")
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            format!("{sign}{digits}{}", "0".repeat(point - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..point], &digits[point..])
        }
    }
}

const TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// Types a scalar the way yaml.v2 does (`Scalar::Str` for every kind of string).
fn type_scalar(text: &str, tag: Option<&str>, plain: bool) -> Result<Scalar, String> {
    let tag = tag.map(|t| t.strip_prefix(TAG_PREFIX).map_or(t, |short| short));
    match tag {
        Some("str" | "binary" | "timestamp") => Ok(Scalar::Str),
        Some(t @ ("int" | "float" | "bool" | "null")) => {
            let s = resolve(text);
            let ok = matches!(
                (t, s),
                ("int", Scalar::Int(_) | Scalar::Uint(_))
                    | ("float", Scalar::Float(_) | Scalar::Int(_) | Scalar::Uint(_))
                    | ("bool", Scalar::Bool(_))
                    | ("null", Scalar::Null)
            );
            if ok {
                Ok(s)
            } else {
                Err(format!("cannot read {text:?} as a !!{t}"))
            }
        }
        // Quoted and block scalars are strings; other tags are ignored, as yaml.v2 does
        // when decoding into an untyped value.
        _ if !plain => Ok(Scalar::Str),
        _ => Ok(resolve(text)),
    }
}

/// The JSON value `sigs.k8s.io/yaml` makes of a typed scalar.
fn scalar_value(s: Scalar, text: String) -> Result<Value, String> {
    Ok(match s {
        Scalar::Str => Value::String(text),
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Int(i) => Value::from(i),
        Scalar::Uint(u) => Value::from(u),
        Scalar::Float(f) => {
            if !f.is_finite() {
                return Err(format!(
                    "{text} is not a number JSON can hold (kubectl refuses it too); quote it if it is meant as a string"
                ));
            }
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                Value::from(f as i64)
            } else {
                serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
            }
        }
    })
}

/// The JSON key `sigs.k8s.io/yaml` makes of a typed scalar key.
fn scalar_key(s: Scalar, text: String) -> Result<String, String> {
    match s {
        Scalar::Str => Ok(text),
        Scalar::Bool(b) => Ok(b.to_string()),
        Scalar::Int(i) => Ok(i.to_string()),
        Scalar::Float(f) => Ok(go_float32_g(f)),
        Scalar::Uint(u) => Err(format!(
            "mapping key {u} is out of range (kubectl refuses integer keys above 2^63-1)"
        )),
        Scalar::Null => Err("a mapping key may not be null (kubectl refuses it)".into()),
    }
}

/// yaml.v2's `resolve` for a plain scalar.
pub(crate) fn resolve(s: &str) -> Scalar {
    let Some(&first) = s.as_bytes().first() else {
        return Scalar::Null;
    };
    match first {
        b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~' => match s {
            "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
                Scalar::Bool(true)
            }
            "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off"
            | "OFF" => Scalar::Bool(false),
            "~" | "null" | "Null" | "NULL" => Scalar::Null,
            _ => Scalar::Str,
        },
        b'.' => match s {
            ".nan" | ".NaN" | ".NAN" => Scalar::Float(f64::NAN),
            ".inf" | ".Inf" | ".INF" => Scalar::Float(f64::INFINITY),
            _ => go_parse_float(s).map_or(Scalar::Str, Scalar::Float),
        },
        b'+' | b'-' | b'0'..=b'9' => {
            match s {
                "+.inf" | "+.Inf" | "+.INF" => return Scalar::Float(f64::INFINITY),
                "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
                _ => {}
            }
            let plain: std::borrow::Cow<'_, str> = if s.contains('_') {
                s.replace('_', "").into()
            } else {
                s.into()
            };
            if let Some(n) = go_parse_int(&plain) {
                return n;
            }
            if yaml_style_float(&plain)
                && let Ok(f) = plain.parse::<f64>()
                && f.is_finite()
            {
                return Scalar::Float(f);
            }
            Scalar::Str
        }
        _ => Scalar::Str,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint(s, 0, 64)` (no underscores left).
fn go_parse_int(s: &str) -> Option<Scalar> {
    let (neg, signed, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, true, &s[1..]),
        Some(b'+') => (false, true, &s[1..]),
        _ => (false, false, s),
    };
    let b = rest.as_bytes();
    let (base, digits) = if b.first() == Some(&b'0') && b.len() >= 3 {
        match b[1] {
            b'x' | b'X' => (16, &rest[2..]),
            b'o' | b'O' => (8, &rest[2..]),
            b'b' | b'B' => (2, &rest[2..]),
            _ => (8, &rest[1..]),
        }
    } else if b.first() == Some(&b'0') {
        (8, &rest[1..])
    } else {
        (10, rest)
    };
    if digits.starts_with(['+', '-']) {
        return None;
    }
    let mag = if digits.is_empty() {
        if base == 8 && !rest.is_empty() {
            0
        } else {
            return None;
        }
    } else {
        u64::from_str_radix(digits, base).ok()?
    };
    if neg {
        if mag <= 1 << 63 {
            Some(Scalar::Int((mag as i64).wrapping_neg()))
        } else {
            None
        }
    } else if mag <= i64::MAX as u64 {
        Some(Scalar::Int(mag as i64))
    } else if !signed {
        Some(Scalar::Uint(mag))
    } else {
        None
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`, yaml.v2's float syntax.
fn yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat(s, 64)` for a scalar starting with `.` (underscores only
/// between digits; a result out of range is an error).
fn go_parse_float(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let before = i > 0 && b[i - 1].is_ascii_digit();
            let after = b.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !before || !after {
                return None;
            }
        }
    }
    let cleaned = s.replace('_', "");
    if !yaml_style_float(&cleaned) {
        return None;
    }
    cleaned.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn decode_base64(text: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return Err(format!("!!binary value is not base64 ({:?})", c as char)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> Value {
        read_first_document(text, 0).unwrap().unwrap().0
    }

    fn err(text: &str) -> String {
        read_first_document(text, 0).unwrap_err().message
    }

    /// Each expected value below is what `sigs.k8s.io/yaml` v1.6.0 (`YAMLToJSON`, as
    /// kubectl reads a document) printed for the same text.
    #[test]
    fn keys_are_typed_like_kubectl() {
        let v = read(
            "data: {on: a, y: b, 0x10: c, 010: d, 1.5: e, 1e3: f, 1e6: g, 123456789.0: h, 0o17: j, true: k, 1__0: l, .5: m, -0: n, +5: o, 2001-12-14: p}\n",
        );
        assert_eq!(
            v,
            json!({"data": {"true": "k", "16": "c", "8": "d", "1.5": "e", "1000": "f",
                "1e+06": "g", "1.2345679e+08": "h", "15": "j", "10": "l", "0.5": "m",
                "0": false, "5": "o", "2001-12-14": "p"}})
        );
        // The issue's own example: last wins among keys that type the same.
        let v = read("data: {on: a, y: b, 0x10: c, 010: d}\n");
        assert_eq!(v, json!({"data": {"true": "b", "16": "c", "8": "d"}}));
        // A float key that equals an int key collides after conversion too (kubectl's
        // pick between them depends on Go's map order; here the last wins).
        assert_eq!(read("{010: d, 08: i}\n"), json!({"8": "i"}));
    }

    #[test]
    fn values_are_typed_like_kubectl() {
        let v = read(
            "v: [1__0, 08, 0o17, 1e3, 1.0, +.5, 12345678901234567890, 0b101, 1_000.5, ._5, .5_5, 0x_1F, 1e400, 2001-12-14, \"y\", y, ~, \"\", 1., -0x10, +0x10, 0x, 0755, -9223372036854775808]\n",
        );
        assert_eq!(
            v,
            json!({"v": [10, 8, 15, 1000, 1, 0.5, 12345678901234567890u64, 5, 1000.5, "._5",
                0.55, 31, "1e400", "2001-12-14", "y", true, null, "", 1, -16, 16, "0x", 493,
                i64::MIN]})
        );
    }

    #[test]
    fn repeated_keys_last_wins() {
        assert_eq!(
            read("a: 1\na: 2\nb: {c: 1, c: 2}\n"),
            json!({"a": 2, "b": {"c": 2}})
        );
        // A PersistentVolumeClaim as found in the wild.
        let v = read(
            "kind: PersistentVolumeClaim\nspec:\n  storageClassName: slow\n  accessModes: [ReadWriteOnce]\n  storageClassName: fast\n",
        );
        assert_eq!(v["spec"]["storageClassName"], "fast");
    }

    #[test]
    fn merges_and_aliases_like_yaml_v2() {
        assert_eq!(
            read("a: 1\n<<: {a: 2, b: 3}\nc: 4\n"),
            json!({"a": 2, "b": 3, "c": 4})
        );
        assert_eq!(
            read("x: &x {a: 1, b: 2}\ny: &y {b: 3, c: 4}\nz:\n  <<: [*x, *y]\n  c: 5\n"),
            json!({"x": {"a": 1, "b": 2}, "true": {"b": 3, "c": 4}, "z": {"a": 1, "b": 2, "c": 5}})
        );
        assert_eq!(
            read("a: &a [1,2]\nb: *a\nc: {<<: {x: 1}}\nd: {\"<<\": {x: 1}}\n"),
            json!({"a": [1, 2], "b": [1, 2], "c": {"x": 1}, "d": {"<<": {"x": 1}}})
        );
    }

    #[test]
    fn tags_like_yaml_v2() {
        assert_eq!(
            read(
                "k: !!int \"12\"\nl: !!str 12\nm: !foo bar\na: !!binary aGVsbG8=\nb: !!float 1\nc: !!timestamp 2001-12-14\n"
            ),
            json!({"k": 12, "l": "12", "m": "bar", "a": "hello", "b": 1, "c": "2001-12-14"})
        );
        assert!(err("k: !!int abc\n").contains("!!int"));
    }

    #[test]
    fn refused_like_kubectl() {
        assert!(err("k: .nan\n").contains("JSON"), "{}", err("k: .nan\n"));
        assert!(err("? [a]\n: 1\n").contains("scalar"));
        assert!(err("~: 1\n").contains("null"));
        assert!(err("18446744073709551615: 1\n").contains("out of range"));
        assert!(err("a: *nope\n").contains("nope"));
        let e = read_first_document("a: 1\nb: [1, 2\n", 0).unwrap_err();
        assert_eq!(e.line, Some(2), "{e:?}");
    }

    #[test]
    fn only_the_first_document_of_a_chunk() {
        assert_eq!(read("a: 1\n...\nb: 2\n"), json!({"a": 1}));
        assert_eq!(read_first_document("# only a comment\n", 0).unwrap(), None);
        assert_eq!(read_first_document("~\n", 0).unwrap(), None);
        assert_eq!(
            read_first_document("# c\n\nkind: Pod\n", 10).unwrap(),
            Some((json!({"kind": "Pod"}), 13))
        );
    }

    #[test]
    fn float_keys_format_like_go() {
        for (f, want) in [
            (1000.0, "1000"),
            (1e6, "1e+06"),
            (1.5e10, "1.5e+10"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456.0, "123456"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
        ] {
            assert_eq!(go_float32_g(f), want, "{f}");
        }
    }
}
