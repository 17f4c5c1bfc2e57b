//! `tandem lint`'s rules: static analysis of pod specs for sidecar pitfalls. Pure: a
//! document goes in, findings come out. Each finding names the rule, the object, the
//! field and a fix.
//!
//! | id | name | severity |
//! | --- | --- | --- |
//! | TL000 | invalid-manifest | error |
//! | TL001 | job-sidecar-never-completes | error |
//! | TL002 | native-sidecar-unsupported-kubelet | error |
//! | TL003 | probe-on-init-container | error |
//! | TL004 | sidecar-after-init-container | warning |
//! | TL005 | effective-requests | info |
//! | TL006 | bad-quantity | error |
//! | TL007 | invalid-container | error |
//! | TL008 | unusable-sidecar-object | error |

use serde::Serialize;
use serde_json::Value;
use tandem_core::KubeVersion;
use tandem_core::compat::{self, KubeletBehaviour};
use tandem_core::names::{LEGACY_COPY_SUFFIX, NODE_LABEL};
use tandem_core::patch::Path;
use tandem_core::workload;

use crate::resources::{self, is_native_sidecar};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Will break: the pod hangs, never completes, or is rejected.
    Error,
    /// Probably wrong.
    Warning,
    /// Worth knowing.
    Info,
}

impl Severity {
    /// The mark that starts a text line.
    pub fn mark(self) -> &'static str {
        match self {
            Severity::Error => "×",
            Severity::Warning => "‼",
            Severity::Info => "i",
        }
    }
}

/// A lint rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Stable id, `TL001`.
    pub id: &'static str,
    /// Stable name, `job-sidecar-never-completes`.
    pub name: &'static str,
    /// Its severity.
    pub severity: Severity,
    /// One line about what it finds.
    pub summary: &'static str,
}

/// Every rule, in id order.
pub const RULES: &[Rule] = &[
    Rule {
        id: "TL000",
        name: "invalid-manifest",
        severity: Severity::Error,
        summary: "a document that should carry a pod doesn't carry a valid one",
    },
    Rule {
        id: "TL001",
        name: "job-sidecar-never-completes",
        severity: Severity::Error,
        summary: "a Job/CronJob (or run-to-completion Pod) has a regular container that looks like a long-running sidecar, so it never completes",
    },
    Rule {
        id: "TL002",
        name: "native-sidecar-unsupported-kubelet",
        severity: Severity::Error,
        summary: "a native sidecar that a given --kubelet-version leaves hanging in Init or rejects",
    },
    Rule {
        id: "TL003",
        name: "probe-on-init-container",
        severity: Severity::Error,
        summary: "probes or lifecycle hooks on an init container that is not restartable: the API server rejects the pod",
    },
    Rule {
        id: "TL004",
        name: "sidecar-after-init-container",
        severity: Severity::Warning,
        summary: "a native sidecar declared after an init container, which then runs without it",
    },
    Rule {
        id: "TL005",
        name: "effective-requests",
        severity: Severity::Info,
        summary: "the pod's requests with native sidecars counted as the scheduler counts them",
    },
    Rule {
        id: "TL006",
        name: "bad-quantity",
        severity: Severity::Error,
        summary: "a resource quantity that is not valid",
    },
    Rule {
        id: "TL007",
        name: "invalid-container",
        severity: Severity::Error,
        summary: "a container the API server refuses: unknown fields (typos), bad enums, ports or missing required fields",
    },
    Rule {
        id: "TL008",
        name: "unusable-sidecar-object",
        severity: Severity::Error,
        summary: "a Sidecar or ClusterSidecar that the webhook would skip (its status would say Invalid)",
    },
];

fn rule(id: &str) -> Rule {
    RULES
        .iter()
        .copied()
        .find(|r| r.id == id)
        .unwrap_or(RULES[0])
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Rule id (`TL001`).
    pub rule: &'static str,
    /// Rule name (`job-sidecar-never-completes`).
    pub name: &'static str,
    /// Severity.
    pub severity: Severity,
    /// `Kind namespace/name` of the object.
    pub object: String,
    /// The field at fault, as users write it (`spec.template.spec.containers[1]`).
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub fix: String,
    /// Where the object is: `file:line` (set by the caller), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// What the rules need beyond the manifest.
#[derive(Debug, Clone, Default)]
pub struct LintOptions {
    /// Kubelet versions the pods may run on (`--kubelet-version`); TL002 checks each.
    pub kubelet_versions: Vec<KubeVersion>,
}

/// Names and images of well-known long-running sidecars.
const KNOWN_SIDECARS: &[&str] = &[
    "istio-proxy",
    "envoy",
    "linkerd-proxy",
    "cloud-sql-proxy",
    "cloudsql-proxy",
    "vault-agent",
    "fluent-bit",
    "fluentbit",
    "fluentd",
    "filebeat",
    "promtail",
    "vector",
    "otel-collector",
    "opentelemetry-collector",
    "datadog-agent",
    "oauth2-proxy",
    "consul-dataplane",
    "consul-connect",
    "daprd",
    "jaeger-agent",
    "log-shipper",
    "logrotate",
    "kuma-dp",
    "aws-xray-daemon",
    "xray-daemon",
];

/// Why a regular container looks like a long-running sidecar, if it does.
pub fn looks_like_sidecar(c: &Value) -> Option<String> {
    let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
    // The image's repository name without registry, path or tag.
    let repo = image.rsplit('/').next().unwrap_or_default();
    let repo = repo.split(['@', ':']).next().unwrap_or_default();
    let lname = name.to_ascii_lowercase();
    if let Some(k) = KNOWN_SIDECARS
        .iter()
        .find(|k| lname == **k || lname.starts_with(&format!("{k}-")))
    {
        return Some(format!(
            "its name {name:?} is that of a well-known sidecar ({k})"
        ));
    }
    if let Some(k) = KNOWN_SIDECARS
        .iter()
        .find(|k| repo.eq_ignore_ascii_case(k) || repo.starts_with(&format!("{k}-")))
    {
        return Some(format!(
            "its image {image} is a well-known long-running sidecar ({k})"
        ));
    }
    if lname.contains("sidecar") || lname.ends_with("-proxy") || lname.ends_with("-agent") {
        return Some(format!("its name {name:?} says it is a sidecar"));
    }
    None
}

/// True for the copies tandem's universal mode adds (they coordinate and exit).
fn is_tandem_shim(c: &Value, role: &str) -> bool {
    let words: Vec<&str> = ["command", "args"]
        .iter()
        .filter_map(|k| c.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    words.iter().any(|w| w.ends_with("tandem-shim")) && words.contains(&role)
}

/// True when the pod can only be scheduled on nodes labelled
/// `tandem.dev/native-sidecars=true` (what `affinity` mode adds).
pub fn requires_native_label(spec: &Value) -> bool {
    if spec
        .pointer("/nodeSelector")
        .and_then(|s| s.get(NODE_LABEL))
        .and_then(Value::as_str)
        == Some("true")
    {
        return true;
    }
    let Some(terms) = spec
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
    else {
        return false;
    };
    !terms.is_empty()
        && terms.iter().all(|t| {
            t.get("matchExpressions")
                .and_then(Value::as_array)
                .is_some_and(|es| {
                    es.iter().any(|e| {
                        e.get("key").and_then(Value::as_str) == Some(NODE_LABEL)
                            && e.get("operator").and_then(Value::as_str) == Some("In")
                            && e.get("values").and_then(Value::as_array).is_some_and(|vs| {
                                !vs.is_empty() && vs.iter().all(|v| v.as_str() == Some("true"))
                            })
                    })
                })
        })
}

fn container_name(c: &Value) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or("(unnamed)")
}

/// Lints one document (any kind; kinds without a pod give nothing).
pub fn lint_document(doc: &Value, opts: &LintOptions) -> Vec<Finding> {
    let mut out = Vec::new();
    if matches!(
        doc.get("kind").and_then(Value::as_str),
        Some("Sidecar" | "ClusterSidecar")
    ) {
        lint_sidecar_object(doc, opts, &mut out);
        return out;
    }
    match workload::find_pods(doc) {
        Err(e) => out.push(finding(
            "TL000",
            &e.object,
            &e.field,
            e.problem.clone(),
            "fix the manifest so that it has a pod template with at least one container".into(),
        )),
        Ok(pods) => {
            for loc in pods {
                let Some(pod) = loc.base.get(doc) else {
                    continue;
                };
                let Some(spec) = pod.get("spec") else {
                    continue;
                };
                let object = loc.object.clone();
                lint_pod(
                    &object,
                    &loc.kind,
                    &loc.base.join(["spec"]),
                    spec,
                    opts,
                    &mut out,
                );
            }
        }
    }
    out
}

/// A sidecar object: usable at all (TL008), and its containers and init containers
/// through the pod rules (quantities, probes on init containers, kubelet versions), with
/// its containers counted as the native sidecars they become.
fn lint_sidecar_object(doc: &Value, opts: &LintOptions, out: &mut Vec<Finding>) {
    let object = workload::describe(doc);
    if let Err(u) = tandem_core::catalog::SidecarObject::from_value(doc) {
        let (field, message) = match u.message.split_once(": ") {
            Some((f, m)) if f.starts_with("spec") => (f.to_string(), m.to_string()),
            _ => ("spec".to_string(), u.message.clone()),
        };
        out.push(finding(
            "TL008",
            &object,
            &field,
            message,
            "fix the object; the webhook skips it (and refuses pods that request it by name)"
                .into(),
        ));
    }
    let spec = doc.get("spec").cloned().unwrap_or(Value::Null);
    let list = |k: &str| {
        spec.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut inits = list("initContainers");
    inits.extend(list("containers").into_iter().map(|mut c| {
        if let Some(o) = c.as_object_mut() {
            o.insert("restartPolicy".into(), Value::from("Always"));
        }
        c
    }));
    let n_init = list("initContainers").len();
    let pod_spec = serde_json::json!({"initContainers": inits, "containers": []});
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("Sidecar");
    let first = out.len();
    lint_pod(
        &object,
        kind,
        &Path::root().join(["spec"]),
        &pod_spec,
        opts,
        out,
    );
    // Point at the object's own fields: its containers were linted as init containers.
    for f in &mut out[first..] {
        if let Some(rest) = f.field.strip_prefix("spec.initContainers[")
            && let Some((i, tail)) = rest.split_once(']')
            && let Ok(i) = i.parse::<usize>()
            && i >= n_init
        {
            f.field = format!("spec.containers[{}]{tail}", i - n_init);
        }
    }
}

#[cfg(test)]
mod sidecar_object_tests {
    use super::*;

    #[test]
    fn sidecar_objects_are_linted() {
        let doc = serde_json::json!({
            "apiVersion": "tandem.dev/v1alpha1", "kind": "ClusterSidecar",
            "metadata": {"name": "proxy"},
            "spec": {
                "podSelector": {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]},
                "initContainers": [{"name": "init", "image": "i:1"}],
                "containers": [{"name": "proxy", "image": "p:1", "command": ["/p"],
                                "resources": {"requests": {"memory": "64 MiB"}}}]
            }
        });
        let found = lint_document(&doc, &LintOptions::default());
        let tl008 = found.iter().find(|f| f.rule == "TL008").expect("TL008");
        assert_eq!(tl008.field, "spec.podSelector");
        assert!(tl008.message.contains("Equals"), "{}", tl008.message);
        let tl006 = found.iter().find(|f| f.rule == "TL006").expect("TL006");
        assert!(
            tl006.field.starts_with("spec.containers[0]"),
            "{}",
            tl006.field
        );
        assert!(found.iter().all(|f| f.rule != "TL000"), "{found:?}");
    }
}

fn finding(id: &str, object: &str, field: &str, message: String, fix: String) -> Finding {
    let r = rule(id);
    Finding {
        rule: r.id,
        name: r.name,
        severity: r.severity,
        object: object.to_string(),
        field: field.to_string(),
        message,
        fix,
        source: None,
    }
}

/// Lints one pod spec found at `at` in an object of kind `kind`.
pub fn lint_pod(
    object: &str,
    kind: &str,
    at: &Path,
    spec: &Value,
    opts: &LintOptions,
    out: &mut Vec<Finding>,
) {
    let inits: Vec<&Value> = spec
        .get("initContainers")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let containers: Vec<&Value> = spec
        .get("containers")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let restart_policy = spec
        .get("restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or(match kind {
            "Job" | "CronJob" => "Never",
            _ => "Always",
        });
    let field = |list: &str, i: usize| at.join([list.to_string(), i.to_string()]).to_string();

    // TL001: a run-to-completion pod with a regular container that never exits.
    if restart_policy != "Always" && containers.len() > 1 {
        let flagged: Vec<(usize, String)> = containers
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                !is_tandem_shim(c, "legacy") && !container_name(c).ends_with(LEGACY_COPY_SUFFIX)
            })
            .filter_map(|(i, c)| looks_like_sidecar(c).map(|why| (i, why)))
            .collect();
        if flagged.len() < containers.len() {
            let what = match kind {
                "Job" | "CronJob" => format!("a {kind}'s pod"),
                _ => format!("a pod with restartPolicy {restart_policy}"),
            };
            for (i, why) in flagged {
                out.push(finding(
                    "TL001",
                    object,
                    &field("containers", i),
                    format!(
                        "container {:?} is a regular container of {what} and {why}: a sidecar \
                         that never exits keeps the pod Running, so it never completes",
                        container_name(containers[i])
                    ),
                    "make it a native sidecar (move it to initContainers with restartPolicy: \
                     Always; kubelet 1.29+), inject it with `tandem inject --mode universal` for \
                     mixed nodes, or make it exit when the main container does"
                        .into(),
                ));
            }
        }
    }

    // TL002: native sidecars on kubelets that can't run them.
    let sidecars: Vec<usize> = (0..inits.len())
        .filter(|&i| is_native_sidecar(inits[i]))
        .collect();
    if !sidecars.is_empty() && !requires_native_label(spec) {
        for v in &opts.kubelet_versions {
            let verdict = compat::kubelet(Some(v), None);
            let hangs = match verdict.behaviour {
                KubeletBehaviour::IgnoresField => {
                    // tandem's universal native copy exits on its first run: no hang.
                    let stuck: Vec<usize> = sidecars
                        .iter()
                        .copied()
                        .filter(|&i| !is_tandem_shim(inits[i], "native"))
                        .collect();
                    stuck.first().map(|&i| {
                        (i, format!(
                            "on kubelet {v} the native sidecar {:?} is run as a plain init container \
                             that never exits, so the pod stays in Init forever ({})",
                            container_name(inits[i]),
                            verdict.why
                        ))
                    })
                }
                KubeletBehaviour::RejectsPod => Some((
                    sidecars[0],
                    format!(
                        "on kubelet {v} the pod is rejected at admission because of the native \
                     sidecar {:?} ({})",
                        container_name(inits[sidecars[0]]),
                        verdict.why
                    ),
                )),
                KubeletBehaviour::RunsSidecars | KubeletBehaviour::Unknown => None,
            };
            if let Some((i, message)) = hangs {
                out.push(finding(
                    "TL002",
                    object,
                    &field("initContainers", i),
                    message,
                    format!(
                        "keep the pod off such nodes (`tandem inject --mode affinity` requires \
                         {NODE_LABEL}=true, set by `tandem label-nodes`), or inject with \
                         --mode universal or legacy"
                    ),
                ));
            }
        }
    }

    for (i, c) in inits.iter().enumerate() {
        // TL003: probes and hooks on plain init containers.
        if !is_native_sidecar(c) {
            let bad: Vec<&str> = [
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
                "lifecycle",
            ]
            .into_iter()
            .filter(|k| c.get(*k).is_some_and(|v| !v.is_null()))
            .collect();
            if !bad.is_empty() {
                let restart = c.get("restartPolicy").and_then(Value::as_str);
                let extra = match restart {
                    Some(p) => format!(" (its restartPolicy is {p:?}, not \"Always\")"),
                    None => String::new(),
                };
                out.push(finding(
                    "TL003",
                    object,
                    &format!("{}.{}", field("initContainers", i), bad[0]),
                    format!(
                        "init container {:?} is not restartable{extra} but has {}: the API server \
                         rejects the pod (\"may not be set for init containers without \
                         restartPolicy=Always\")",
                        container_name(c),
                        bad.join(", ")
                    ),
                    "remove them, or make it a native sidecar (restartPolicy: Always) if it is \
                     meant to keep running"
                        .into(),
                ));
            }
        }
        // TL004: a sidecar that starts only after other init containers ran without it.
        if is_native_sidecar(c) && !is_tandem_shim(c, "native") {
            let before: Vec<String> = inits[..i]
                .iter()
                .filter(|p| !is_native_sidecar(p))
                .map(|p| format!("{:?}", container_name(p)))
                .collect();
            if !before.is_empty() {
                out.push(finding(
                    "TL004",
                    object,
                    &field("initContainers", i),
                    format!(
                        "native sidecar {:?} is declared after init container{} {}, which run{} \
                         to completion before it starts, without it (no proxy, no secrets, no \
                         log shipping)",
                        container_name(c),
                        if before.len() > 1 { "s" } else { "" },
                        before.join(", "),
                        if before.len() > 1 { "" } else { "s" },
                    ),
                    format!(
                        "move {:?} ahead of them in initContainers (tandem inject puts sidecars \
                         first), unless they must run before it",
                        container_name(c)
                    ),
                ));
            }
        }
    }

    // TL007: containers checked strictly, as tandem checks configured sidecars.
    for (list, items) in [("initContainers", &inits), ("containers", &containers)] {
        for (i, c) in items.iter().enumerate() {
            let Err(errs) = tandem_core::validate::validate_container(c) else {
                continue;
            };
            for e in errs.iter().filter(|e| {
                // Quantities are TL006's; restartPolicy is TL003's (init containers) and
                // has newer meanings on regular containers.
                !(e.field.starts_with("resources.") || e.field == "restartPolicy")
            }) {
                let at = if e.field.is_empty() {
                    field(list, i)
                } else {
                    format!("{}.{}", field(list, i), e.field)
                };
                out.push(finding(
                    "TL007",
                    object,
                    &at,
                    format!("container {:?}: {e}", container_name(c)),
                    "fix the field as the message says (kubectl's strict field validation and \
                     the API server refuse it)"
                        .into(),
                ));
            }
        }
    }

    // TL005 / TL006: effective requests.
    match resources::effective(spec) {
        Err(e) => out.push(finding(
            "TL006",
            object,
            &format!("{at}.{}", e.field),
            e.source.to_string(),
            "write it as Kubernetes does: 250m, 0.5, 128Mi, 1Gi".into(),
        )),
        Ok(eff) if !sidecars.is_empty() && !eff.total.is_empty() => {
            let mut message = format!(
                "the scheduler reserves {} for this pod: the larger of the init phase ({}) and \
                 sidecars plus app containers ({})",
                resources::describe(&eff.total),
                resources::describe(&eff.init_phase),
                resources::describe(&eff.run_phase),
            );
            if eff.naive_sum != eff.total {
                message.push_str(&format!(
                    "; adding every container up would give {}",
                    resources::describe(&eff.naive_sum)
                ));
            }
            if eff.as_plain_init != eff.total {
                message.push_str(&format!(
                    "; counting sidecars as plain init containers would give {}",
                    resources::describe(&eff.as_plain_init)
                ));
            }
            out.push(finding(
                "TL005",
                object,
                &at.to_string(),
                message,
                "size quotas, LimitRanges and node capacity by this figure".into(),
            ));
        }
        Ok(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(s: &str) -> KubeVersion {
        KubeVersion::parse(s).unwrap()
    }

    fn ids(f: &[Finding]) -> Vec<&str> {
        f.iter().map(|f| f.rule).collect()
    }

    fn job(containers: Value) -> Value {
        json!({"kind": "Job", "metadata": {"name": "backup", "namespace": "ops"},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": containers}}}})
    }

    #[test]
    fn job_with_a_sidecar_never_completes() {
        let doc = job(json!([
            {"name": "backup", "image": "backup:1"},
            {"name": "proxy", "image": "docker.io/envoyproxy/envoy:v1.30"}
        ]));
        let f = lint_document(&doc, &LintOptions::default());
        assert_eq!(ids(&f), ["TL001"]);
        assert_eq!(f[0].object, "Job ops/backup");
        assert_eq!(f[0].field, "spec.template.spec.containers[1]");
        assert!(f[0].message.contains("envoy"), "{}", f[0].message);
        assert_eq!(f[0].severity, Severity::Error);
        // CronJob, found by name.
        let cron = json!({"kind": "CronJob", "metadata": {"name": "c"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "main", "image": "x"}, {"name": "istio-proxy", "image": "proxyv2"}]}}}}}});
        let f = lint_document(&cron, &LintOptions::default());
        assert_eq!(ids(&f), ["TL001"]);
        assert_eq!(
            f[0].field,
            "spec.jobTemplate.spec.template.spec.containers[1]"
        );
    }

    #[test]
    fn no_false_alarms_for_jobs() {
        // One container: it is the job itself.
        assert!(
            lint_document(
                &job(json!([{"name": "envoy", "image": "envoy"}])),
                &LintOptions::default()
            )
            .is_empty()
        );
        // Plain containers.
        assert!(
            lint_document(
                &job(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}])),
                &LintOptions::default()
            )
            .is_empty()
        );
        // A Deployment may have long-running sidecars.
        let dep = json!({"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {
            "containers": [{"name": "a", "image": "a"}, {"name": "envoy", "image": "envoy"}]}}}});
        assert!(lint_document(&dep, &LintOptions::default()).is_empty());
        // tandem's universal regular copy knows how to exit.
        let uni = job(json!([{"name": "a", "image": "a"},
            {"name": "proxy-legacy", "image": "envoy", "command": ["/var/run/tandem-bin/tandem-shim", "legacy", "--", "envoy"]}]));
        assert!(lint_document(&uni, &LintOptions::default()).is_empty());
        // A bare pod that runs to completion is checked too.
        let pod = json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"restartPolicy": "OnFailure",
            "containers": [{"name": "a", "image": "a"}, {"name": "log-sidecar", "image": "b"}]}});
        assert_eq!(
            ids(&lint_document(&pod, &LintOptions::default())),
            ["TL001"]
        );
    }

    fn sidecar_pod(extra_init: Option<Value>) -> Value {
        let mut inits = vec![];
        if let Some(e) = extra_init {
            inits.push(e);
        }
        inits.push(json!({"name": "proxy", "image": "envoy", "restartPolicy": "Always"}));
        json!({"kind": "Pod", "metadata": {"name": "web", "namespace": "shop"},
               "spec": {"initContainers": inits, "containers": [{"name": "app", "image": "app"}]}})
    }

    #[test]
    fn native_sidecar_on_old_kubelets() {
        let opts = LintOptions {
            kubelet_versions: vec![v("v1.27.9"), v("v1.28.3"), v("v1.29.0"), v("v1.33.1")],
        };
        let f = lint_document(&sidecar_pod(None), &opts);
        assert_eq!(ids(&f), ["TL002", "TL002"]);
        assert!(
            f[0].message.contains("v1.27.9") && f[0].message.contains("Init forever"),
            "{}",
            f[0].message
        );
        assert!(
            f[1].message.contains("rejected")
                && f[1].message.contains("InitContainerRestartPolicyForbidden")
        );
        assert_eq!(f[0].field, "spec.initContainers[0]");
        // Without versions, nothing is said.
        assert!(lint_document(&sidecar_pod(None), &LintOptions::default()).is_empty());
        // Affinity mode keeps the pod off such nodes.
        let mut pod = sidecar_pod(None);
        pod["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": NODE_LABEL, "operator": "In", "values": ["true"]}]}]}}});
        assert!(lint_document(&pod, &opts).is_empty());
        let mut pod = sidecar_pod(None);
        pod["spec"]["nodeSelector"] = json!({NODE_LABEL: "true"});
        assert!(lint_document(&pod, &opts).is_empty());
        // Universal's native copy exits on old kubelets, but 1.28 still rejects it.
        let mut pod = sidecar_pod(None);
        pod["spec"]["initContainers"][0]["command"] =
            json!(["/var/run/tandem-bin/tandem-shim", "native", "--", "envoy"]);
        assert_eq!(ids(&lint_document(&pod, &opts)), ["TL002"]);
    }

    #[test]
    fn probes_on_plain_init_containers() {
        let pod = sidecar_pod(Some(
            json!({"name": "wait", "image": "busybox", "readinessProbe": {"exec": {"command": ["true"]}}}),
        ));
        let f = lint_document(&pod, &LintOptions::default());
        assert_eq!(ids(&f), ["TL003", "TL004"]);
        assert_eq!(f[0].field, "spec.initContainers[0].readinessProbe");
        // Probes on a native sidecar are fine.
        let mut ok = sidecar_pod(None);
        ok["spec"]["initContainers"][0]["startupProbe"] = json!({"tcpSocket": {"port": 15021}});
        assert!(lint_document(&ok, &LintOptions::default()).is_empty());
        // restartPolicy other than Always doesn't make it restartable.
        let pod = json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "x", "image": "x", "restartPolicy": "OnFailure", "lifecycle": {"preStop": {}}}],
            "containers": [{"name": "a", "image": "a"}]}});
        let f = lint_document(&pod, &LintOptions::default());
        assert_eq!(ids(&f), ["TL003"]);
        assert!(f[0].message.contains("OnFailure"));
    }

    #[test]
    fn sidecar_ordered_after_init_container() {
        let pod = sidecar_pod(Some(json!({"name": "migrate", "image": "m"})));
        let f = lint_document(&pod, &LintOptions::default());
        assert_eq!(ids(&f), ["TL004"]);
        assert_eq!(f[0].field, "spec.initContainers[1]");
        assert!(f[0].message.contains("\"migrate\""));
        assert_eq!(f[0].severity, Severity::Warning);
    }

    #[test]
    fn effective_requests_are_reported() {
        let pod = json!({"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {
            "initContainers": [
                {"name": "proxy", "image": "envoy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
            "containers": [{"name": "app", "image": "a", "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]}}}});
        let f = lint_document(&pod, &LintOptions::default());
        assert_eq!(ids(&f), ["TL005"]);
        assert!(
            f[0].message.contains("cpu 600m, memory 320Mi"),
            "{}",
            f[0].message
        );
        assert!(
            f[0].message
                .contains("plain init containers would give cpu 500m, memory 256Mi"),
            "{}",
            f[0].message
        );
        assert_eq!(f[0].severity, Severity::Info);
        let mut bad = pod.clone();
        bad["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
            json!("lots");
        let f = lint_document(&bad, &LintOptions::default());
        assert_eq!(ids(&f), ["TL006"]);
        assert_eq!(
            f[0].field,
            "spec.template.spec.containers[0].resources.requests.cpu"
        );
    }

    #[test]
    fn invalid_manifests_and_other_kinds() {
        let f = lint_document(
            &json!({"kind": "Deployment", "metadata": {"name": "x"}, "spec": {}}),
            &LintOptions::default(),
        );
        assert_eq!(ids(&f), ["TL000"]);
        assert!(
            lint_document(
                &json!({"kind": "ConfigMap", "data": {}}),
                &LintOptions::default()
            )
            .is_empty()
        );
        let list = json!({"kind": "List", "items": [job(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "fluent/fluent-bit:3"}]))]});
        let f = lint_document(&list, &LintOptions::default());
        assert_eq!(ids(&f), ["TL001"]);
        assert_eq!(f[0].field, "items[0].spec.template.spec.containers[1]");
    }

    #[test]
    fn invalid_containers_are_named_by_field() {
        let doc = json!({"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {"spec": {
            "initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always",
                                "imagePullPolcy": "Always"}],
            "containers": [{"name": "app", "image": "x", "resorces": {"limits": {"cpu": "1"}},
                            "ports": [{"containerPort": 80, "protocol": "tcp"}],
                            "resources": {"limits": {"cpu": "lots"}}}]}}}});
        let f = lint_document(&doc, &LintOptions::default());
        let fields: Vec<(&str, &str)> = f.iter().map(|f| (f.rule, f.field.as_str())).collect();
        assert!(
            fields.contains(&(
                "TL007",
                "spec.template.spec.initContainers[0].imagePullPolcy"
            )),
            "{fields:?}"
        );
        assert!(
            fields.contains(&("TL007", "spec.template.spec.containers[0].resorces")),
            "{fields:?}"
        );
        assert!(
            fields.contains(&(
                "TL007",
                "spec.template.spec.containers[0].ports[0].protocol"
            )),
            "{fields:?}"
        );
        // The bad quantity is TL006's, reported once.
        assert_eq!(
            f.iter().filter(|f| f.message.contains("lots")).count(),
            1,
            "{f:?}"
        );
        assert!(f.iter().any(|f| f.rule == "TL006"), "{fields:?}");
        let typo = f
            .iter()
            .find(|f| f.field.ends_with("imagePullPolcy"))
            .unwrap();
        assert!(
            typo.message.contains("did you mean imagePullPolicy"),
            "{}",
            typo.message
        );
        assert_eq!(typo.severity, Severity::Error);
    }

    #[test]
    fn rules_are_ordered_and_unique() {
        for w in RULES.windows(2) {
            assert!(w[0].id < w[1].id);
        }
        assert_eq!(rule("TL004").name, "sidecar-after-init-container");
    }
}
