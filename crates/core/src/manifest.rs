//! Manifests as text: multi-document YAML (or JSON) in, YAML or JSON out.
//!
//! Reading follows what `kubectl` does (Kubernetes reads YAML 1.1 through
//! `sigs.k8s.io/yaml`): `0755` is octal, `yes`/`on` are booleans, `1e3` is a number,
//! empty documents are skipped. Writing quotes every string that would otherwise
//! read back as another type (`"y"`, `"on"`, `"0755"`, `"1e3"`).

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A parse error's message with the source's name in place of `<input>`.
pub fn name_source(message: &str, source: &str) -> String {
    message.replace("--> <input>", &format!("--> {source}"))
}

/// One document of a manifest stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 1-based position among the stream's non-empty documents.
    pub index: usize,
    /// 1-based line where the document starts, where known.
    pub line: Option<usize>,
    /// The document, as raw JSON.
    pub value: Value,
}

/// Text that isn't a YAML stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// The parser's message (with line, column and a snippet where it gives them).
    pub message: String,
    /// 1-based line of the error, where the parser gives one.
    pub line: Option<usize>,
}

fn options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    // YAML 1.1 as Kubernetes reads it: 0755 is octal 493.
    o.legacy_octal_numbers = true;
    // The default budget guards configs (1,024 documents, 250,000 nodes); manifests
    // of a large repository are bigger. Alias-bomb limits stay as they are.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 10_000_000;
    budget.max_nodes = usize::MAX / 2;
    budget.max_events = usize::MAX / 2;
    budget.max_total_scalar_bytes = 4 << 30;
    budget.max_depth = 512;
    o.budget = Some(budget);
    o
}

/// Reads one YAML (or JSON) value, Kubernetes-style.
pub fn from_yaml_str<T: DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    serde_saphyr::from_str_with_options(text, options()).map_err(parse_error)
}

fn parse_error(e: serde_saphyr::Error) -> ParseError {
    ParseError {
        line: e.location().map(|l| l.line() as usize),
        message: e.to_string().trim_start_matches("error: ").to_string(),
    }
}

/// Reads a multi-document YAML stream (JSON is YAML too) into raw documents.
/// Empty documents (only `---`, comments or blanks) are skipped, as kubectl does.
pub fn parse_stream(text: &str) -> Result<Vec<Document>, ParseError> {
    let values: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, options()).map_err(parse_error)?;
    let mut values: Vec<Value> = values.into_iter().filter(|v| !v.is_null()).collect();
    for v in &mut values {
        normalize_numbers(v);
    }
    let starts = document_starts(text);
    let lines_known = starts.len() == values.len();
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, value)| Document {
            index: i + 1,
            line: lines_known.then(|| starts[i]),
            value,
        })
        .collect())
}

/// Integral floats become integers, as Go's YAML-to-JSON conversion writes them
/// (`1e3` and `1.0` are `1000` and `1` to the API server).
fn normalize_numbers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(map) => map.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

/// First content line of each non-empty document, found by scanning for `---`
/// separators. Used only to point messages at a line.
fn document_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut current: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let is_separator =
            line == "---" || line.starts_with("--- ") || line.starts_with("---\t") || line == "...";
        if is_separator {
            if let Some(start) = current.take() {
                starts.push(start);
            }
            continue;
        }
        let trimmed = line.trim();
        if current.is_none() && !trimmed.is_empty() && !trimmed.starts_with('#') {
            current = Some(i + 1);
        }
    }
    if let Some(start) = current {
        starts.push(start);
    }
    starts
}

/// Output formats for manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML, documents separated by `---`.
    Yaml,
    /// JSON.
    Json,
}

/// Writes one value as YAML, quoting strings that would read back as another type.
pub fn to_yaml(value: &Value) -> String {
    // serde-saphyr quotes ambiguous scalars itself; the tests below pin that down.
    serde_saphyr::to_string(value).unwrap_or_else(|e| {
        // Serializing a serde_json::Value can't fail: every map key is a string.
        unreachable!("YAML serialization of a JSON value failed: {e}")
    })
}

/// Writes documents as one YAML stream.
pub fn to_yaml_stream<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&to_yaml(v));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_like_kubectl() {
        let docs = parse_stream(
            "a: y\nb: \"y\"\nc: on\nd: 0755\ne: 1e3\nf: \"0755\"\ng: 1.0\nh: 12345678901234567890\n",
        )
        .unwrap();
        assert_eq!(
            docs[0].value,
            json!({"a": true, "b": "y", "c": true, "d": 493, "e": 1000, "f": "0755", "g": 1,
                   "h": 12345678901234567890u64})
        );
    }

    #[test]
    fn ambiguous_strings_survive_a_round_trip() {
        let tricky = [
            "y",
            "Y",
            "n",
            "yes",
            "No",
            "on",
            "OFF",
            "true",
            "null",
            "~",
            "0755",
            "1e3",
            "0x1F",
            "1_000",
            ".5",
            "-",
            "- x",
            "a: b",
            "#c",
            "",
            " lead",
            "trail ",
            "@at",
            "*star",
            "&amp",
            "!bang",
            "%p",
            "`t",
            "{x}",
            "[x]",
            "12:30",
            "1.0",
            ".inf",
            ".nan",
            "0o17",
            "multi\nline",
            "tab\there",
            "\"q\"",
            "'s'",
        ];
        for s in tricky {
            let v = json!({ "k": s, "list": [s] });
            let text = to_yaml(&v);
            let back = parse_stream(&text).unwrap();
            assert_eq!(back[0].value, v, "{s:?} written as:\n{text}");
        }
    }

    #[test]
    fn multi_document_with_empty_documents_and_lines() {
        let text = "# head\n---\na: 1\n---\n---\n# only a comment\n---\nb: 2\nc: 3\n...\n";
        let docs = parse_stream(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].index, docs[0].line), (1, Some(3)));
        assert_eq!((docs[1].index, docs[1].line), (2, Some(8)));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse_stream("a: 1\n---\nb: [1, 2\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("line 3"), "{err}");
    }

    #[test]
    fn large_streams_are_read() {
        let text: String = (0..3000)
            .map(|i| format!("---\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n"))
            .collect();
        assert_eq!(parse_stream(&text).unwrap().len(), 3000);
    }

    #[test]
    fn json_input_is_read() {
        let docs = parse_stream(r#"{"kind": "Pod", "spec": {"containers": []}}"#).unwrap();
        assert_eq!(docs[0].value["kind"], "Pod");
    }

    #[test]
    fn stream_output() {
        let out = to_yaml_stream([&json!({"a": 1}), &json!({"b": "on"})]);
        assert_eq!(out, "a: 1\n---\nb: \"on\"\n");
    }
}
