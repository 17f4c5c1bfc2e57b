//! Strict validation of raw Kubernetes objects that tandem copies into pods
//! (configured sidecars, their volumes): what the API server would refuse.
//!
//! `k8s-openapi`'s types check the type of every known field but silently drop
//! unknown ones, so a typo (`imagePullPolcy`, `resorces`) would pass and the API
//! server would then refuse the pod (kubectl's strict field validation) or ignore
//! the setting. Here the raw JSON is compared with a round trip through the typed
//! struct: any key that does not survive is unknown. On top come the checks the
//! types can't express: quantities (`cpu: lots`), enums (`imagePullPolicy`,
//! `protocol`, …), port ranges, names. The raw value is never changed: it is what
//! gets injected.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::dns1123_label_problem;

/// One problem, at a field written as users write it (`resources.limits.cpu`,
/// `ports[0].protocol`; empty for the object itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field, relative to the object validated.
    pub field: String,
    /// What is wrong with it, and what would be right.
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.problem)
        } else if self.problem.starts_with("is ") || self.problem.starts_with("must ") {
            write!(f, "{} {}", self.field, self.problem)
        } else {
            write!(f, "{}: {}", self.field, self.problem)
        }
    }
}

/// Joins problems into one line: `a: x; b: y`.
pub fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The top-level fields of a `core/v1` Container (for "did you mean" hints).
const CONTAINER_FIELDS: &[&str] = &[
    "args",
    "command",
    "env",
    "envFrom",
    "image",
    "imagePullPolicy",
    "lifecycle",
    "livenessProbe",
    "name",
    "ports",
    "readinessProbe",
    "resizePolicy",
    "resources",
    "restartPolicy",
    "restartPolicyRules",
    "securityContext",
    "startupProbe",
    "stdin",
    "stdinOnce",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "tty",
    "volumeDevices",
    "volumeMounts",
    "workingDir",
];

/// Checks a raw `core/v1` Container strictly: an object, every field known and of
/// the right type, quantities and enums valid, a DNS-1123 name and an image.
/// Every problem found is returned, each naming its field.
pub fn validate_container(c: &Value) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    if !c.is_object() {
        errs.push(err("", "must be a Container object (a mapping)"));
        return Err(errs);
    }
    strict::<k8s_openapi::api::core::v1::Container>(c, CONTAINER_FIELDS, &mut errs);
    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
    if let Some(problem) = dns1123_label_problem(name) {
        errs.push(err("name", format!("{name:?} {problem}")));
    }
    match c.get("image").and_then(Value::as_str) {
        Some(image) if !image.trim().is_empty() => {}
        _ => errs.push(err("image", "is required")),
    }
    container_semantics(c, &mut errs);
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Checks a raw `core/v1` Volume strictly: an object, every field known and of the
/// right type (names and reserved names are the caller's business).
pub fn validate_volume(v: &Value) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    if !v.is_object() {
        errs.push(err("", "must be a Volume object (a mapping)"));
        return Err(errs);
    }
    strict::<k8s_openapi::api::core::v1::Volume>(v, &[], &mut errs);
    if let Some(q) = v.pointer("/emptyDir/sizeLimit") {
        check_quantity("emptyDir.sizeLimit", q, &mut errs);
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Typed decoding (types of known fields) plus the round-trip comparison (unknown fields).
fn strict<T: DeserializeOwned + Serialize>(
    raw: &Value,
    top: &[&'static str],
    errs: &mut Vec<FieldError>,
) {
    let typed: T = match serde_path_to_error::deserialize(raw) {
        Ok(t) => t,
        Err(e) => {
            let path = e.path().to_string();
            let field = if path == "." { String::new() } else { path };
            errs.push(err(field, e.inner().to_string()));
            return;
        }
    };
    let back = match serde_json::to_value(&typed) {
        Ok(v) => v,
        Err(e) => {
            errs.push(err("", format!("cannot be re-encoded: {e}")));
            return;
        }
    };
    unknown_fields(raw, &back, "", top, errs);
}

fn child(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

/// Every key of `raw` that did not survive the typed round trip `back`.
fn unknown_fields(
    raw: &Value,
    back: &Value,
    at: &str,
    top: &[&'static str],
    errs: &mut Vec<FieldError>,
) {
    match (raw, back) {
        (Value::Object(r), Value::Object(b)) => {
            for (k, v) in r {
                match b.get(k) {
                    Some(bv) => unknown_fields(v, bv, &child(at, k), &[], errs),
                    // `field: null` is "not set", as the API server reads it.
                    None if v.is_null() => {}
                    None => {
                        let hint = suggestion(k, top)
                            .map(|s| format!(" (did you mean {s}?)"))
                            .unwrap_or_default();
                        errs.push(err(
                            child(at, k),
                            format!(
                                "unknown field{hint}; the API server refuses it (strict field \
                                 validation) or ignores it"
                            ),
                        ));
                    }
                }
            }
        }
        (Value::Array(r), Value::Array(b)) => {
            for (i, (rv, bv)) in r.iter().zip(b).enumerate() {
                unknown_fields(rv, bv, &format!("{at}[{i}]"), &[], errs);
            }
        }
        _ => {}
    }
}

/// The known field closest to `key` (edit distance at most 2), if any.
fn suggestion(key: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|k| {
            (
                distance(&key.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn check_enum(field: &str, v: Option<&Value>, allowed: &[&str], errs: &mut Vec<FieldError>) {
    let Some(v) = v else { return };
    if v.is_null() {
        return;
    }
    match v.as_str() {
        Some(s) if allowed.contains(&s) => {}
        _ => errs.push(err(
            field,
            format!("{v} is not one of {}", allowed.join(", ")),
        )),
    }
}

/// A Kubernetes quantity: `250m`, `1.5`, `128Mi`, `2G`, `1e3` (sign, digits with
/// at most one point, then a binary-SI, decimal-SI or exponent suffix).
pub fn is_quantity(text: &str) -> bool {
    let s = text.strip_prefix(['+', '-']).unwrap_or(text);
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(end);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 {
        return false;
    }
    match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti"
        | "Pi" | "Ei" => true,
        s => s
            .strip_prefix(['e', 'E'])
            .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
            .is_some_and(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())),
    }
}

fn check_quantity(field: &str, v: &Value, errs: &mut Vec<FieldError>) {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return, // the typed decoding already complained
    };
    if !is_quantity(&text) {
        errs.push(err(
            field,
            format!("{text:?} is not a quantity (e.g. 250m, 0.5, 128Mi, 1Gi)"),
        ));
    } else if text.starts_with('-') {
        errs.push(err(field, format!("{text:?} must not be negative")));
    }
}

fn check_probe(field: &str, p: Option<&Value>, errs: &mut Vec<FieldError>) {
    let Some(p) = p else { return };
    check_enum(
        &format!("{field}.httpGet.scheme"),
        p.pointer("/httpGet/scheme"),
        &["HTTP", "HTTPS"],
        errs,
    );
    for k in ["httpGet", "tcpSocket", "grpc"] {
        if let Some(port) = p.get(k).and_then(|h| h.get("port")) {
            check_port_ref(&format!("{field}.{k}.port"), port, errs);
        }
    }
}

fn check_port_ref(field: &str, v: &Value, errs: &mut Vec<FieldError>) {
    match v {
        Value::Number(n) if n.as_u64().is_some_and(|p| (1..=65535).contains(&p)) => {}
        Value::Number(n) => errs.push(err(field, format!("{n} is not a port (1-65535)"))),
        Value::String(s) if port_name_problem(s).is_none() => {}
        Value::String(s) if s.parse::<u64>().is_ok() => {}
        Value::String(s) => errs.push(err(
            field,
            format!("{s:?} is neither a port number nor a port name"),
        )),
        _ => {}
    }
}

/// Why `s` is not an IANA service name (a container port name), if it isn't.
fn port_name_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() || s.len() > 15 {
        return Some("must be 1 to 15 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || s.starts_with('-')
        || s.ends_with('-')
        || s.contains("--")
        || !s.bytes().any(|b| b.is_ascii_lowercase())
    {
        return Some(
            "must be lowercase letters, digits and single '-' (not at either end), with at least one letter",
        );
    }
    None
}

fn check_lifecycle(c: &Value, errs: &mut Vec<FieldError>) {
    for hook in ["postStart", "preStop"] {
        let Some(h) = c.pointer(&format!("/lifecycle/{hook}")) else {
            continue;
        };
        check_enum(
            &format!("lifecycle.{hook}.httpGet.scheme"),
            h.pointer("/httpGet/scheme"),
            &["HTTP", "HTTPS"],
            errs,
        );
    }
}

/// What the typed decoding can't see: enums, quantities, ports, mounts.
fn container_semantics(c: &Value, errs: &mut Vec<FieldError>) {
    check_enum(
        "imagePullPolicy",
        c.get("imagePullPolicy"),
        &["Always", "IfNotPresent", "Never"],
        errs,
    );
    check_enum(
        "terminationMessagePolicy",
        c.get("terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
        errs,
    );
    // tandem sets restartPolicy itself; a sidecar may only say Always.
    check_enum("restartPolicy", c.get("restartPolicy"), &["Always"], errs);
    for kind in ["limits", "requests"] {
        let Some(map) = c
            .get("resources")
            .and_then(|r| r.get(kind))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (name, q) in map {
            check_quantity(&format!("resources.{kind}.{name}"), q, errs);
        }
    }
    if let Some(ports) = c.get("ports").and_then(Value::as_array) {
        let mut names = std::collections::HashSet::new();
        for (i, p) in ports.iter().enumerate() {
            let at = format!("ports[{i}]");
            match p.get("containerPort") {
                Some(Value::Number(n)) if n.as_u64().is_some_and(|x| (1..=65535).contains(&x)) => {}
                Some(v) if !v.is_null() => errs.push(err(
                    format!("{at}.containerPort"),
                    format!("{v} is not a port (1-65535)"),
                )),
                _ => errs.push(err(format!("{at}.containerPort"), "is required")),
            }
            if let Some(Value::Number(n)) = p.get("hostPort")
                && n.as_u64().is_none_or(|x| x > 65535)
            {
                errs.push(err(
                    format!("{at}.hostPort"),
                    format!("{n} is not a port (0-65535)"),
                ));
            }
            check_enum(
                &format!("{at}.protocol"),
                p.get("protocol"),
                &["TCP", "UDP", "SCTP"],
                errs,
            );
            if let Some(name) = p.get("name").and_then(Value::as_str) {
                if let Some(problem) = port_name_problem(name) {
                    errs.push(err(format!("{at}.name"), format!("{name:?} {problem}")));
                } else if !names.insert(name) {
                    errs.push(err(
                        format!("{at}.name"),
                        format!("{name:?} is used by another port"),
                    ));
                }
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        check_probe(probe, c.get(probe), errs);
    }
    check_lifecycle(c, errs);
    if let Some(mounts) = c.get("volumeMounts").and_then(Value::as_array) {
        for (i, m) in mounts.iter().enumerate() {
            for key in ["name", "mountPath"] {
                if m.get(key).and_then(Value::as_str).is_none_or(str::is_empty) {
                    errs.push(err(format!("volumeMounts[{i}].{key}"), "is required"));
                }
            }
            check_enum(
                &format!("volumeMounts[{i}].mountPropagation"),
                m.get("mountPropagation"),
                &["None", "HostToContainer", "Bidirectional"],
                errs,
            );
        }
    }
    if let Some(env) = c.get("env").and_then(Value::as_array) {
        for (i, e) in env.iter().enumerate() {
            if e.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errs.push(err(format!("env[{i}].name"), "is required"));
            }
        }
    }
    if let Some(rp) = c.get("resizePolicy").and_then(Value::as_array) {
        for (i, p) in rp.iter().enumerate() {
            check_enum(
                &format!("resizePolicy[{i}].resourceName"),
                p.get("resourceName"),
                &["cpu", "memory"],
                errs,
            );
            check_enum(
                &format!("resizePolicy[{i}].restartPolicy"),
                p.get("restartPolicy"),
                &["NotRequired", "RestartContainer"],
                errs,
            );
        }
    }
    if let Some(sc) = c.get("securityContext") {
        check_enum(
            "securityContext.procMount",
            sc.get("procMount"),
            &["Default", "Unmasked"],
            errs,
        );
        for (at, p) in [
            (
                "securityContext.seccompProfile.type",
                "/seccompProfile/type",
            ),
            (
                "securityContext.appArmorProfile.type",
                "/appArmorProfile/type",
            ),
        ] {
            check_enum(
                at,
                sc.pointer(p),
                &["RuntimeDefault", "Unconfined", "Localhost"],
                errs,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(c: Value) -> Vec<String> {
        match validate_container(&c) {
            Ok(()) => Vec::new(),
            Err(es) => es.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_full_valid_container_passes() {
        let c = json!({
            "name": "proxy", "image": "envoy:1", "imagePullPolicy": "IfNotPresent",
            "command": ["envoy"], "args": ["-c", "x"],
            "env": [{"name": "A", "value": "1"},
                    {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "ports": [{"name": "admin", "containerPort": 9901, "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi", "example.com/gpu": 1},
                          "requests": {"cpu": 0.1, "memory": "64Mi", "ephemeral-storage": "1e3"}},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "admin", "scheme": "HTTP"}},
            "startupProbe": {"tcpSocket": {"port": 9901}, "periodSeconds": 1},
            "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
            "securityContext": {"runAsNonRoot": true, "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "volumeMounts": [{"name": "v", "mountPath": "/v", "readOnly": true}],
            "restartPolicy": "Always",
            "unset": null,
        });
        assert_eq!(problems(c), Vec::<String>::new());
    }

    #[test]
    fn unknown_fields_are_named_at_any_depth() {
        let p = problems(
            json!({"name": "p", "image": "x", "imagePullPolcy": "Always",
            "resorces": {"limits": {"cpu": "1"}}}),
        );
        assert!(
            p.iter()
                .any(|e| e
                    .starts_with("imagePullPolcy: unknown field (did you mean imagePullPolicy?)")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|e| e.starts_with("resorces: unknown field (did you mean resources?)")),
            "{p:?}"
        );
        let p = problems(json!({"name": "p", "image": "x",
            "ports": [{"containerPort": 80, "protcol": "TCP"}],
            "securityContext": {"runAsUser": 1, "privileged": false, "capabilites": {}}}));
        assert!(
            p.iter()
                .any(|e| e.starts_with("ports[0].protcol: unknown field")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|e| e.starts_with("securityContext.capabilites: unknown field")),
            "{p:?}"
        );
    }

    #[test]
    fn bad_quantities_enums_and_ports_are_named() {
        let cases = [
            (
                json!({"resources": {"limits": {"cpu": "lots"}}}),
                "resources.limits.cpu: \"lots\" is not a quantity",
            ),
            (
                json!({"resources": {"requests": {"memory": "-1Mi"}}}),
                "resources.requests.memory: \"-1Mi\" must not be negative",
            ),
            (
                json!({"imagePullPolicy": "Sometimes"}),
                "imagePullPolicy: \"Sometimes\" is not one of Always, IfNotPresent, Never",
            ),
            (
                json!({"ports": [{"containerPort": 80, "protocol": "tcp"}]}),
                "ports[0].protocol",
            ),
            (
                json!({"ports": [{"containerPort": 70000}]}),
                "ports[0].containerPort: 70000 is not a port",
            ),
            (
                json!({"ports": [{"name": "x"}]}),
                "ports[0].containerPort is required",
            ),
            (
                json!({"ports": [{"containerPort": 1, "name": "a_very_long_port_name"}]}),
                "ports[0].name",
            ),
            (json!({"restartPolicy": "Never"}), "restartPolicy"),
            (
                json!({"terminationMessagePolicy": "Files"}),
                "terminationMessagePolicy",
            ),
            (
                json!({"readinessProbe": {"httpGet": {"port": 0}}}),
                "readinessProbe.httpGet.port",
            ),
            (
                json!({"volumeMounts": [{"name": "v"}]}),
                "volumeMounts[0].mountPath is required",
            ),
            (json!({"env": [{"value": "1"}]}), "env[0].name"),
            (json!({"ports": 80}), "ports: invalid type"),
            (
                json!({"resources": {"limits": {"cpu": {"a": 1}}}}),
                "resources.limits.cpu",
            ),
        ];
        for (extra, want) in cases {
            let mut c = json!({"name": "p", "image": "x"});
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            let p = problems(c);
            assert!(p.iter().any(|e| e.contains(want)), "{want}: {p:?}");
        }
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let p = problems(json!({"name": "Bad_Name", "imagePullPolcy": "Always",
            "resources": {"limits": {"cpu": "lots"}}}));
        assert_eq!(p.len(), 4, "{p:?}");
    }

    #[test]
    fn quantities() {
        for ok in [
            "1", "0.5", ".5", "250m", "128Mi", "1Gi", "1e3", "1E-3", "+1", "2k", "1.5G",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in [
            "", "lots", "1..2", "m", "1mi", "1KiB", "1e", "1 Mi", "Mi1", ".",
        ] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn volumes() {
        assert!(validate_volume(&json!({"name": "v", "emptyDir": {"medium": "Memory"}})).is_ok());
        let e = validate_volume(&json!({"name": "v", "emptyDri": {}})).unwrap_err();
        assert_eq!(e[0].field, "emptyDri");
        let e =
            validate_volume(&json!({"name": "v", "emptyDir": {"sizeLimit": "big"}})).unwrap_err();
        assert_eq!(e[0].field, "emptyDir.sizeLimit");
        let e = validate_volume(&json!({"name": "v", "configMap": {"name": 3}})).unwrap_err();
        assert_eq!(e[0].field, "configMap.name", "{e:?}");
    }
}
