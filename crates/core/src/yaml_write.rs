//! Writing a JSON value as block-style YAML that kubectl reads back as the same value.
//!
//! Strings stay plain where that is unambiguous; a string that kubectl's reader
//! ([`crate::kyaml`]) would type as something else (`"on"`, `"y"`, `"0755"`, `"1e3"`,
//! `"~"`), or that isn't a valid plain scalar (`": "`, `" #"`, a leading indicator or
//! space), is double-quoted with only the escapes `yaml.v2` knows. Multi-line strings are
//! literal blocks (`|`, `|-`) when that is exact, else double-quoted.

use serde_json::{Map, Value};

use crate::kyaml::{Scalar, resolve};

/// Appends `value` as a YAML document (no `---`), ending in a newline.
pub fn write_document(out: &mut String, value: &Value) {
    match value {
        Value::Object(m) if !m.is_empty() => write_map(out, m, 0, false),
        Value::Array(a) if !a.is_empty() => write_seq(out, a, 0, false),
        other => {
            write_inline(out, other);
            out.push('\n');
        }
    }
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

/// A scalar or an empty collection, on the current line.
fn write_inline(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_str(out, s, 0),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        _ => false,
    }
}

/// A mapping at column `n`; with `inline`, the first key goes on the current line (after
/// `- `).
fn write_map(out: &mut String, m: &Map<String, Value>, n: usize, inline: bool) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 || !inline {
            indent(out, n);
        }
        write_key(out, k);
        out.push(':');
        match v {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                write_map(out, inner, n + 2, false);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                write_seq(out, items, n, false);
            }
            Value::String(s) if literal_ok(s) => {
                out.push(' ');
                write_literal(out, s, n + 2);
            }
            other => {
                out.push(' ');
                write_inline(out, other);
                out.push('\n');
            }
        }
    }
}

/// A sequence whose dashes are at column `n`.
fn write_seq(out: &mut String, items: &[Value], n: usize, inline: bool) {
    for (i, v) in items.iter().enumerate() {
        if i > 0 || !inline {
            indent(out, n);
        }
        out.push_str("- ");
        match v {
            Value::Object(m) if is_block(v) => write_map(out, m, n + 2, true),
            Value::Array(a) if is_block(v) => write_seq(out, a, n + 2, true),
            Value::String(s) if literal_ok(s) => write_literal(out, s, n + 2),
            other => {
                write_inline(out, other);
                out.push('\n');
            }
        }
    }
}

fn write_key(out: &mut String, k: &str) {
    if k.len() > 1000 {
        // libyaml limits implicit keys to 1024 characters: use an explicit key.
        out.push_str("? ");
        write_double_quoted(out, k);
        out.push('\n');
        return;
    }
    write_str(out, k, 0);
}

fn write_str(out: &mut String, s: &str, _n: usize) {
    if plain_ok(s) {
        out.push_str(s);
    } else {
        write_double_quoted(out, s);
    }
}

/// Characters libyaml reads in a document (its `is_printable`), minus line breaks.
fn printable(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{7E}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
        && !matches!(c, '\u{FEFF}' | '\u{2028}' | '\u{2029}')
}

/// Whether `s` can be written as a plain scalar and read back as the same string.
pub(crate) fn plain_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    if resolve(s) != Scalar::Str || s == "<<" {
        return false;
    }
    if first == b' ' || last == b' ' || last == b':' {
        return false;
    }
    match first {
        b'?' | b':' | b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|'
        | b'>' | b'\'' | b'"' | b'%' | b'@' | b'`' => return false,
        // `-x` is plain; `-`, `- x` and `---` are not.
        b'-' if b.len() == 1 || b[1] == b' ' || s.starts_with("---") => return false,
        b'.' if s.starts_with("...") => return false,
        _ => {}
    }
    if s.contains(": ") || s.contains(" #") {
        return false;
    }
    s.chars().all(printable)
}

/// Whether `s` is written exactly as a literal block (`|` or `|-`).
fn literal_ok(s: &str) -> bool {
    let body = s.strip_suffix('\n').unwrap_or(s);
    body.contains('\n')
        && !body.ends_with('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && body
            .chars()
            .all(|c| c == '\n' || c == '\t' || printable(c))
        // A line of only blanks right before the end would be read as trailing.
        && !body.lines().last().is_some_and(|l| l.trim().is_empty())
}

fn write_literal(out: &mut String, s: &str, n: usize) {
    let (body, header) = match s.strip_suffix('\n') {
        Some(body) => (body, "|\n"),
        None => (s, "|-\n"),
    };
    out.push_str(header);
    for line in body.split('\n') {
        if !line.is_empty() {
            indent(out, n);
            out.push_str(line);
        }
        out.push('\n');
    }
}

fn write_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if printable(c) => out.push(c),
            c if (c as u32) <= 0xFF => out.push_str(&format!("\\x{:02X}", c as u32)),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kyaml::read_first_document;
    use serde_json::json;

    fn round_trip(v: &Value) {
        let mut text = String::new();
        write_document(&mut text, v);
        let back = read_first_document(&text, 0)
            .unwrap_or_else(|e| panic!("{e:?} reading:\n{text}"))
            .map(|(v, _)| v)
            .unwrap_or(Value::Null);
        assert_eq!(&back, v, "written as:\n{text}");
    }

    #[test]
    fn block_style() {
        let mut out = String::new();
        write_document(
            &mut out,
            &json!({"a": {"b": [1, {"c": "d", "e": []}, [2, 3]], "f": {}}, "g": "x\ny\n", "h": "x\ny"}),
        );
        assert_eq!(
            out,
            "a:\n  b:\n  - 1\n  - c: d\n    e: []\n  - - 2\n    - 3\n  f: {}\ng: |\n  x\n  y\nh: |-\n  x\n  y\n"
        );
    }

    #[test]
    fn strings_and_keys_round_trip() {
        let tricky = [
            "on",
            "y",
            "0x10",
            "010",
            "1__0",
            "<<",
            "-",
            "-x",
            "--flag=1",
            "---",
            "...",
            "a: b",
            "a:",
            "a #b",
            "a#b",
            "x\n\ny\n",
            "\n lead",
            "x\n\n",
            "tail\n ",
            "\u{85}",
            "\u{2028}",
            "\u{feff}x",
            "\u{1}",
            "\u{7f}",
            "\u{9f}",
            "é",
            "😀",
            "\t",
            "a\tb",
            "a\r\nb",
            ".5",
            "1e3",
            "08",
            "2001-12-14",
            "12:30",
            "[x]",
            "{x}",
            "a,b",
            "%",
            "@",
            "`",
            "'",
            "\"",
            "\\",
            "=",
            "null",
            "~",
            "",
            " ",
            "true",
            "Yes",
            "0o17",
            "+1",
            ".inf",
        ];
        for s in tricky {
            round_trip(&json!({ s: s, "list": [s, {s: [s]}] }));
        }
        round_trip(&json!({"k".repeat(1100): 1}));
    }
}
