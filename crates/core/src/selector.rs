//! Kubernetes label selectors (`matchLabels` + `matchExpressions`), parsed once and
//! matched many times, with the API server's rules for what a valid selector is.
//!
//! Used by sidecar objects (`spec.podSelector`, `spec.namespaceSelector`). A selector
//! that doesn't parse makes its object unusable (reported in its status), never a panic.

use std::collections::BTreeMap;

use serde_json::Value;

/// One `matchExpressions` requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `In`: the label is present with one of the values.
    In(String, Vec<String>),
    /// `NotIn`: the label is absent, or present with none of the values.
    NotIn(String, Vec<String>),
    /// `Exists`: the label is present.
    Exists(String),
    /// `DoesNotExist`: the label is absent.
    DoesNotExist(String),
}

/// A parsed label selector. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    /// Every requirement must hold (`matchLabels` become `In` with one value).
    pub requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches every set of labels (`{}`).
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses a `metav1.LabelSelector` from raw JSON; the error says which field is wrong.
    pub fn parse(v: &Value) -> Result<Self, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "must be a label selector object".to_string())?;
        let mut requirements = Vec::new();
        for key in obj.keys() {
            if key != "matchLabels" && key != "matchExpressions" {
                return Err(format!(
                    "unknown field {key:?} (a label selector has matchLabels and matchExpressions)"
                ));
            }
        }
        if let Some(labels) = obj.get("matchLabels").filter(|l| !l.is_null()) {
            let labels = labels
                .as_object()
                .ok_or_else(|| "matchLabels must be a map of label keys to values".to_string())?;
            for (k, val) in labels {
                let val = val
                    .as_str()
                    .ok_or_else(|| format!("matchLabels.{k}: must be a string"))?;
                label_key_problem(k)
                    .map_or(Ok(()), |p| Err(format!("matchLabels: key {k:?} {p}")))?;
                label_value_problem(val).map_or(Ok(()), |p| {
                    Err(format!("matchLabels.{k}: value {val:?} {p}"))
                })?;
                requirements.push(Requirement::In(k.clone(), vec![val.to_string()]));
            }
        }
        if let Some(exprs) = obj.get("matchExpressions").filter(|l| !l.is_null()) {
            let exprs = exprs
                .as_array()
                .ok_or_else(|| "matchExpressions must be a list".to_string())?;
            for (i, e) in exprs.iter().enumerate() {
                requirements
                    .push(parse_expression(e).map_err(|p| format!("matchExpressions[{i}]: {p}"))?);
            }
        }
        Ok(Self { requirements })
    }

    /// True when `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

fn parse_expression(e: &Value) -> Result<Requirement, String> {
    let key = e
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| "key is required".to_string())?;
    if let Some(p) = label_key_problem(key) {
        return Err(format!("key {key:?} {p}"));
    }
    let op = e
        .get("operator")
        .and_then(Value::as_str)
        .ok_or_else(|| "operator is required".to_string())?;
    let values: Vec<String> = match e.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(vs)) => vs
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "values must be strings".to_string())
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("values must be a list of strings".into()),
    };
    for v in &values {
        if let Some(p) = label_value_problem(v) {
            return Err(format!("value {v:?} {p}"));
        }
    }
    let key = key.to_string();
    match op {
        "In" | "NotIn" if values.is_empty() => {
            Err(format!("operator {op} needs at least one value"))
        }
        "In" => Ok(Requirement::In(key, values)),
        "NotIn" => Ok(Requirement::NotIn(key, values)),
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            Err(format!("operator {op} takes no values"))
        }
        "Exists" => Ok(Requirement::Exists(key)),
        "DoesNotExist" => Ok(Requirement::DoesNotExist(key)),
        other => Err(format!(
            "operator {other:?} is not one of In, NotIn, Exists, DoesNotExist"
        )),
    }
}

/// Why `key` is not a valid label key (`[prefix/]name`), or `None`.
pub fn label_key_problem(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty()
            || p.len() > 253
            || !p
                .split('.')
                .all(|l| crate::config::dns1123_label_problem(l).is_none()))
    {
        return Some("has a prefix that is not a DNS subdomain");
    }
    if name.is_empty() || name.len() > 63 {
        return Some("must have a name of 1 to 63 characters");
    }
    if !qualified_chars(name) {
        return Some(
            "must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",
        );
    }
    None
}

/// Why `v` is not a valid label value, or `None`.
pub fn label_value_problem(v: &str) -> Option<&'static str> {
    if v.is_empty() {
        return None;
    }
    if v.len() > 63 {
        return Some("is longer than 63 characters");
    }
    if !qualified_chars(v) {
        return Some(
            "must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",
        );
    }
    None
}

fn qualified_chars(s: &str) -> bool {
    let b = s.as_bytes();
    let ends = |c: &u8| c.is_ascii_alphanumeric();
    b.first().is_some_and(ends)
        && b.last().is_some_and(ends)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The labels of an object's `metadata.labels` (non-string values ignored).
pub fn labels_of(meta: Option<&Value>) -> BTreeMap<String, String> {
    meta.and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matching() {
        let s = Selector::parse(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "team", "operator": "NotIn", "values": ["x"]},
                {"key": "example.com/zone", "operator": "Exists"}
            ]
        }))
        .unwrap();
        let ok = labels(&[("app", "web"), ("tier", "a"), ("example.com/zone", "z")]);
        assert!(s.matches(&ok));
        let mut bad = ok.clone();
        bad.insert("legacy".into(), "".into());
        assert!(!s.matches(&bad));
        let mut bad = ok.clone();
        bad.insert("team".into(), "x".into());
        assert!(!s.matches(&bad));
        let mut bad = ok.clone();
        bad.remove("example.com/zone");
        assert!(!s.matches(&bad));
        assert!(
            Selector::parse(&json!({}))
                .unwrap()
                .matches(&BTreeMap::new())
        );
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        let cases = [
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Foo", "values": ["x"]}]}),
                "Foo",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
                "at least one value",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "no values",
            ),
            (
                json!({"matchExpressions": [{"key": "-a", "operator": "Exists"}]}),
                "key \"-a\"",
            ),
            (json!({"matchLabels": {"a": "b c"}}), "value \"b c\""),
            (json!({"matchLabels": {"a": 1}}), "must be a string"),
            (json!({"matchLabel": {"a": "b"}}), "unknown field"),
            (json!("app=web"), "label selector object"),
        ];
        for (v, want) in cases {
            let err = Selector::parse(&v).unwrap_err();
            assert!(err.contains(want), "{v}: {err}");
        }
    }

    #[test]
    fn label_keys() {
        for ok in [
            "a",
            "app.kubernetes.io/name",
            "tandem.dev/inject",
            "A_b.c-1",
        ] {
            assert!(label_key_problem(ok).is_none(), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "-a",
            "a/b/c",
            "UPPER.example/a",
            &"a".repeat(64),
        ] {
            assert!(label_key_problem(bad).is_some(), "{bad}");
        }
    }
}
