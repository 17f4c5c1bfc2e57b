//! Manifests as text: multi-document YAML (or JSON) in, YAML or JSON out.
//!
//! Reading follows what `kubectl` does: the stream is cut into documents at `---` lines
//! (apimachinery's `YAMLReader`: a line that starts with `---` followed only by blanks or a
//! comment; anything else after `---` is an error), a stream whose first character is `{`
//! is read as a stream of JSON objects, and each document is read by [`crate::kyaml`]
//! (YAML 1.1 typing of values *and* keys, repeated keys last-wins). Empty documents are
//! skipped. [`DocumentReader`] does this one document at a time from any `BufRead`, so a
//! caller can stream inputs of any size. Writing ([`crate::yaml_write`]) quotes every
//! string that would read back as another type (`"y"`, `"on"`, `"0755"`, `"1e3"`).

use std::collections::VecDeque;
use std::io::BufRead;

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
    /// What is wrong, with line and column where known, and what to do.
    pub message: String,
    /// 1-based line of the error, where known.
    pub line: Option<usize>,
}

fn options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    // YAML 1.1 as Kubernetes reads it: 0755 is octal 493.
    o.legacy_octal_numbers = true;
    o
}

/// Reads one YAML (or JSON) value into a typed struct (tandem's config).
pub fn from_yaml_str<T: DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| ParseError {
        line: e.location().map(|l| l.line() as usize),
        message: e.to_string().trim_start_matches("error: ").to_string(),
    })
}

/// Reads a multi-document YAML stream (JSON is YAML too) into raw documents, as kubectl
/// would. Empty documents (only `---`, comments or blanks) are skipped.
pub fn parse_stream(text: &str) -> Result<Vec<Document>, ParseError> {
    DocumentReader::new(text.as_bytes()).collect()
}

/// Where a JSON stream is being read.
enum Mode<R: BufRead> {
    /// Not yet known (nothing read).
    Start(R),
    /// YAML, cut at `---` lines.
    Yaml(R),
    /// A stream of JSON values (the input started with `{`).
    Json(serde_json::StreamDeserializer<'static, serde_json::de::IoRead<R>, Value>),
    /// Finished, or failed on a read error.
    Done,
}

/// Reads a manifest stream one document at a time, holding only the current document.
///
/// After a document that can't be read, it goes on with the next one (each document is
/// read on its own, as kubectl does); callers that stop at the first error just stop.
pub struct DocumentReader<R: BufRead> {
    mode: Mode<R>,
    /// Lines read so far (YAML).
    line: usize,
    /// Documents returned so far.
    index: usize,
    chunk: Vec<u8>,
    line_buf: Vec<u8>,
    ready: VecDeque<Result<Document, ParseError>>,
}

impl<R: BufRead> DocumentReader<R> {
    /// A reader over `input`.
    pub fn new(input: R) -> Self {
        Self {
            mode: Mode::Start(input),
            line: 0,
            index: 0,
            chunk: Vec::new(),
            line_buf: Vec::new(),
            ready: VecDeque::new(),
        }
    }

    /// Decides between YAML and a JSON stream, as kubectl's `YAMLOrJSONDecoder` does
    /// (JSON when the first non-blank character is `{`).
    fn start(&mut self, mut input: R) -> Result<Mode<R>, ParseError> {
        loop {
            let buf = input.fill_buf().map_err(read_error)?;
            if buf.is_empty() {
                return Ok(Mode::Yaml(input));
            }
            let first = buf.iter().position(|b| !b.is_ascii_whitespace());
            match first {
                None => {
                    // Only blanks so far: keep them for YAML's line count.
                    let n = buf.len();
                    self.chunk.extend_from_slice(buf);
                    input.consume(n);
                }
                Some(i) if buf[i] == b'{' => {
                    self.chunk.clear();
                    let de = serde_json::Deserializer::from_reader(input);
                    return Ok(Mode::Json(de.into_iter()));
                }
                Some(_) => return Ok(Mode::Yaml(input)),
            }
        }
    }

    /// Reads the next chunk between `---` lines and queues its document.
    fn next_yaml_chunk(&mut self, input: &mut R) -> Result<bool, ParseError> {
        let mut first_line = self.line - self.chunk.iter().filter(|&&b| b == b'\n').count();
        loop {
            self.line_buf.clear();
            let n = input
                .read_until(b'\n', &mut self.line_buf)
                .map_err(read_error)?;
            if n == 0 {
                if self.chunk.is_empty() {
                    return Ok(false);
                }
                self.finish_chunk(first_line);
                return Ok(true);
            }
            self.line += 1;
            if let Some(rest) = self.line_buf.strip_prefix(b"---") {
                let rest = String::from_utf8_lossy(rest);
                let rest = rest.trim();
                if !rest.is_empty() && !rest.starts_with('#') {
                    let line = self.line;
                    let rest = rest.to_string();
                    if !self.chunk.is_empty() {
                        self.finish_chunk(first_line);
                    }
                    self.ready.push_back(Err(ParseError {
                        message: format!(
                            "line {line}: invalid YAML document separator: {rest} (kubectl accepts only a comment after ---)"
                        ),
                        line: Some(line),
                    }));
                    return Ok(true);
                }
                if !self.chunk.is_empty() {
                    self.finish_chunk(first_line);
                    return Ok(true);
                }
                // A separator with nothing before it: the chunk starts after it.
                first_line = self.line;
                continue;
            }
            self.chunk.extend_from_slice(&self.line_buf);
        }
    }

    /// Reads the chunk collected (whose first line is the stream's line `first_line + 1`).
    fn finish_chunk(&mut self, first_line: usize) {
        let chunk = std::mem::take(&mut self.chunk);
        let result = match std::str::from_utf8(&chunk) {
            Err(e) => {
                let line = first_line
                    + 1
                    + chunk[..e.valid_up_to()]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count();
                Err(ParseError {
                    message: format!("line {line}: not UTF-8 text (kubectl reads UTF-8 manifests)"),
                    line: Some(line),
                })
            }
            Ok(text) => {
                let text = text.strip_prefix('\u{feff}').unwrap_or(text);
                match crate::kyaml::read_first_document(text, first_line) {
                    Ok(None) => Ok(None),
                    Ok(Some((value, line))) => Ok(Some((value, line))),
                    Err(e) => Err(ParseError {
                        message: explain_template(&e.message, text, first_line),
                        line: e.line,
                    }),
                }
            }
        };
        self.chunk = chunk;
        self.chunk.clear();
        match result {
            Ok(None) => {}
            Ok(Some((value, line))) => {
                self.index += 1;
                self.ready.push_back(Ok(Document {
                    index: self.index,
                    line: Some(line),
                    value,
                }));
            }
            Err(e) => self.ready.push_back(Err(e)),
        }
    }
}

fn read_error(e: std::io::Error) -> ParseError {
    ParseError {
        message: format!("cannot read: {e}"),
        line: None,
    }
}

/// Adds "this looks like an unrendered template" to an error in a text that has `{{`.
fn explain_template(message: &str, text: &str, first_line: usize) -> String {
    match text.lines().position(|l| l.contains("{{")) {
        Some(i) => format!(
            "{message}; this looks like an unrendered Helm/Go template (`{{{{` on line {}): render it first (e.g. `helm template`) and inject the output",
            first_line + i + 1
        ),
        None => message.to_string(),
    }
}

impl<R: BufRead> Iterator for DocumentReader<R> {
    type Item = Result<Document, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            match std::mem::replace(&mut self.mode, Mode::Done) {
                Mode::Done => return None,
                Mode::Start(input) => match self.start(input) {
                    Ok(mode) => {
                        // Blank lines consumed while sniffing count as lines of the stream.
                        self.line = self.chunk.iter().filter(|&&b| b == b'\n').count();
                        self.mode = mode;
                    }
                    Err(e) => return Some(Err(e)),
                },
                Mode::Yaml(mut input) => match self.next_yaml_chunk(&mut input) {
                    Ok(true) => self.mode = Mode::Yaml(input),
                    Ok(false) => return None,
                    Err(e) => return Some(Err(e)),
                },
                Mode::Json(mut stream) => match stream.next() {
                    None => return None,
                    Some(Err(e)) => {
                        return Some(Err(ParseError {
                            message: format!("line {}: {e}", e.line()),
                            line: Some(e.line()),
                        }));
                    }
                    Some(Ok(mut value)) => {
                        self.mode = Mode::Json(stream);
                        if value.is_null() {
                            continue;
                        }
                        normalize_numbers(&mut value);
                        self.index += 1;
                        return Some(Ok(Document {
                            index: self.index,
                            line: None,
                            value,
                        }));
                    }
                },
            }
        }
    }
}

/// Integral floats become integers, as Go's JSON encoder writes them (`1.0` is `1` to
/// the API server).
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
    let mut out = String::new();
    crate::yaml_write::write_document(&mut out, value);
    out
}

/// Appends one value as a YAML document (no `---`) to `out`.
pub fn write_yaml(out: &mut String, value: &Value) {
    crate::yaml_write::write_document(out, value);
}

/// Writes documents as one YAML stream.
pub fn to_yaml_stream<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        crate::yaml_write::write_document(&mut out, v);
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
    fn documents_are_cut_like_kubectl() {
        // `---` with a comment separates; CRLF and a BOM are fine; a bad document does
        // not stop the next one; `--- x` is refused as kubectl refuses it.
        let text = "\u{feff}a: 1\r\n--- # next\r\nb: [1\n---\nc: 3\n--- {d: 4}\ne: 5\n";
        let items: Vec<_> = DocumentReader::new(text.as_bytes()).collect();
        assert_eq!(items.len(), 5, "{items:?}");
        assert_eq!(items[0].as_ref().unwrap().value, json!({"a": 1}));
        assert_eq!(items[1].as_ref().unwrap_err().line, Some(3));
        let c = items[2].as_ref().unwrap();
        assert_eq!((c.index, c.line, &c.value), (2, Some(5), &json!({"c": 3})));
        let e = items[3].as_ref().unwrap_err();
        assert!(e.message.contains("separator"), "{e}");
        assert_eq!(items[4].as_ref().unwrap().value, json!({"e": 5}));
        // A stream that starts with `{` is a stream of JSON objects, as for kubectl.
        let docs = parse_stream("\n {\"a\": 1.0}\n{\"b\": 2}{\"c\": null}").unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].value, json!({"a": 1}));
    }

    #[test]
    fn templates_are_named() {
        let err = parse_stream("a: 1\n---\nkind: Deployment\nspec:\n  replicas: {{ .Values.n }}\n")
            .unwrap_err();
        assert!(
            err.message
                .contains("unrendered Helm/Go template (`{{` on line 5)"),
            "{err}"
        );
    }

    #[test]
    fn stream_output() {
        let out = to_yaml_stream([&json!({"a": 1}), &json!({"b": "on"})]);
        assert_eq!(out, "a: 1\n---\nb: \"on\"\n");
    }
}
