//! The doctor's verdicts, one function per check. Pure: each takes what was read from
//! the cluster (or the error that reading gave) and returns a [`Check`].

use std::collections::BTreeMap;

use serde_json::Value;
use tandem_core::KubeVersion;
use tandem_core::compat::{self, ApiServerBehaviour, KubeletBehaviour, LOCKED_ON_MINOR};
use tandem_core::knowledge::NodeFacts;
use tandem_core::metrics_text::GateReading;
use tandem_core::names::{INJECT_LABEL, MIRROR_POD_ANNOTATION, NODE_LABEL, STATUS_ANNOTATION};
use tandem_core::status::InjectionStatus;
use tandem_core::verify;
use tandem_kube::KubeError;
use tandem_kube::nodes::{NodeGate, proxy_access};

use crate::report::{Check, Item, Status};
use crate::resources::is_native_sidecar;

/// Title of check 1.
pub const APISERVER_VERSION_TITLE: &str = "API server is at 1.29 or later";
/// Title of check 2.
pub const APISERVER_GATE_TITLE: &str = "API server has the SidecarContainers feature gate on";
/// Title of check 3.
pub const NODES_TITLE: &str = "Every node can run native sidecars";
/// Title of check 5.
pub const STUCK_TITLE: &str = "No pod is stuck in Init because of a native sidecar";
/// Title of the missed-injections check.
pub const MISSED_TITLE: &str = "Every pod in an opted-in namespace was injected";

/// Check 1: the API server's version.
pub fn apiserver_version(res: &Result<KubeVersion, KubeError>) -> Check {
    let id = "apiserver-version";
    let v = match res {
        Err(e) => return Check::from_error(id, APISERVER_VERSION_TITLE, e),
        Ok(v) => v,
    };
    if v.at_least(1, 29) {
        Check::new(
            id,
            APISERVER_VERSION_TITLE,
            Status::Pass,
            format!("API server {v}"),
        )
        .evidence(format!("GET /version: {v}"))
    } else {
        let verdict = compat::apiserver(Some(v), None);
        Check::new(
            id,
            APISERVER_VERSION_TITLE,
            Status::Fail,
            format!("API server {v} is older than 1.29: {}", verdict.why),
        )
        .evidence(format!("GET /version: {v}"))
        .hint("upgrade the control plane to 1.29 or later before adopting native sidecars; until then inject with --mode legacy")
    }
}

/// Check 2: the API server's `SidecarContainers` gate, from its `/metrics`.
pub fn apiserver_gate(
    version: Option<&KubeVersion>,
    res: &Result<Option<GateReading>, KubeError>,
) -> Check {
    let id = "apiserver-gate";
    match res {
        Err(e) => {
            let mut c = Check::from_error(id, APISERVER_GATE_TITLE, e);
            if let Some(v) = version {
                let verdict = compat::apiserver(Some(v), None);
                c.evidence.push(format!("without the metric, the version alone says: {}", verdict.why));
                if v.minor >= LOCKED_ON_MINOR && v.major == 1 {
                    // The gate can't be off at 1.33+: the metric is not needed.
                    c.status = Status::Pass;
                    c.summary = format!("API server {v}: native sidecars are GA and the gate is locked on");
                    c.hint = None;
                    c.permission = None;
                }
            }
            c
        }
        Ok(Some(reading)) if reading.enabled => Check::new(id, APISERVER_GATE_TITLE, Status::Pass, "the gate is on")
            .evidence(format!("GET /metrics: {}", reading.line)),
        Ok(Some(reading)) => Check::new(
            id,
            APISERVER_GATE_TITLE,
            Status::Fail,
            "the SidecarContainers gate is off: the API server drops restartPolicy from init containers, so native sidecars become plain init containers (and probes on them make pod creation fail)",
        )
        .evidence(format!("GET /metrics: {}", reading.line))
        .hint("remove SidecarContainers=false from kube-apiserver's --feature-gates (and from the scheduler's and kubelets'), or inject with --mode legacy until then"),
        Ok(None) => match version {
            Some(v) if v.major == 1 && v.minor >= LOCKED_ON_MINOR => Check::new(
                id,
                APISERVER_GATE_TITLE,
                Status::Pass,
                format!("API server {v}: native sidecars are GA; the gate's series is gone or locked on"),
            )
            .evidence("GET /metrics: no kubernetes_feature_enabled series for SidecarContainers"),
            Some(v) if !v.at_least(1, 28) => Check::new(
                id,
                APISERVER_GATE_TITLE,
                Status::Fail,
                format!("API server {v} predates the SidecarContainers gate: it drops restartPolicy from init containers"),
            )
            .hint("upgrade the control plane to 1.29 or later"),
            _ => Check::new(
                id,
                APISERVER_GATE_TITLE,
                Status::Warn,
                "the API server's /metrics has no SidecarContainers series, so the gate can't be confirmed; it is at its default",
            )
            .evidence("GET /metrics: no kubernetes_feature_enabled series for SidecarContainers"),
        },
    }
}

/// Whether a node's gate metric can change the verdict: only kubelets that know the
/// field and where the gate is not locked on yet (1.28 to 1.32), or of unknown version.
pub fn metric_matters(kubelet: Option<&KubeVersion>) -> bool {
    match kubelet {
        None => true,
        Some(v) => v.major == 1 && v.minor >= compat::FIELD_MINOR && v.minor < LOCKED_ON_MINOR,
    }
}

/// What the doctor saw of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeObservation {
    /// The facts from the Node object (version, labels; `gate` from our label).
    pub facts: NodeFacts,
    /// The metric, when it was read (`None`: not read, because it can't matter or was
    /// turned off).
    pub metric: Option<NodeGate>,
    /// Whether the node is Ready.
    pub ready: bool,
}

impl NodeObservation {
    /// The verdict: the metric when read, else the label `label-nodes` derived from it,
    /// else the version's default.
    /// The explanation says where the gate reading came from: the metric, or the label.
    pub fn verdict(&self) -> compat::Verdict<KubeletBehaviour> {
        let metric = self.metric.as_ref().and_then(NodeGate::enabled);
        let mut verdict = compat::kubelet(self.facts.kubelet.as_ref(), metric.or(self.facts.gate));
        if metric.is_none()
            && let Some(on) = self.facts.gate
        {
            let source = format!("node label {NODE_LABEL}={on}, set by label-nodes");
            verdict.why = if verdict.why.contains("(metric)") {
                verdict.why.replace("(metric)", &format!("({source})"))
            } else {
                format!("{} ({source})", verdict.why)
            };
        }
        verdict
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Check 3: every node, grouped by kubelet version and verdict.
pub fn nodes(res: &Result<Vec<NodeObservation>, KubeError>, selector: Option<&str>) -> Check {
    let id = "nodes";
    let obs = match res {
        Err(e) => return Check::from_error(id, NODES_TITLE, e),
        Ok(o) => o,
    };
    if obs.is_empty() {
        return Check::new(
            id,
            NODES_TITLE,
            Status::Warn,
            match selector {
                Some(s) => format!("no node matches {s:?}"),
                None => "the cluster has no nodes".into(),
            },
        );
    }
    // Group by verdict, then version.
    let mut groups: BTreeMap<(KubeletBehaviour, String), Vec<&NodeObservation>> = BTreeMap::new();
    for o in obs {
        let version = o
            .facts
            .kubelet
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "version unknown".into());
        groups
            .entry((o.verdict().behaviour, version))
            .or_default()
            .push(o);
    }
    let mut c = Check::new(id, NODES_TITLE, Status::Pass, String::new());
    let (mut runs, mut breaks, mut unknown) = (0, 0, 0);
    for ((behaviour, version), members) in &groups {
        let status = match behaviour {
            KubeletBehaviour::RunsSidecars => {
                runs += members.len();
                Status::Pass
            }
            KubeletBehaviour::IgnoresField | KubeletBehaviour::RejectsPod => {
                breaks += members.len();
                Status::Fail
            }
            KubeletBehaviour::Unknown => {
                unknown += members.len();
                Status::Warn
            }
        };
        let why = members[0].verdict().why;
        let metric_line = members
            .iter()
            .find_map(|m| match &m.metric {
                Some(NodeGate::Read { reading }) => Some(reading.line.clone()),
                _ => None,
            })
            .map(|l| format!(" (metric: {l})"))
            .unwrap_or_default();
        c.items.push(Item {
            status,
            subject: format!(
                "kubelet {version} ({})",
                plural(members.len(), "node", "nodes")
            ),
            detail: format!("{behaviour}: {why}{metric_line}"),
            nodes: members.iter().map(|m| m.facts.name.clone()).collect(),
        });
    }
    // Metrics that could not be read, where they would matter.
    let mut unread: BTreeMap<&'static str, (Vec<String>, String)> = BTreeMap::new();
    let mut forbidden = false;
    for o in obs {
        let (what, example) = match &o.metric {
            Some(NodeGate::Timeout) => ("timed out", String::new()),
            Some(NodeGate::Failed { message }) => ("unreachable", message.clone()),
            Some(NodeGate::Forbidden) => {
                forbidden = true;
                continue;
            }
            _ => continue,
        };
        let entry = unread.entry(what).or_default();
        entry.0.push(o.facts.name.clone());
        if entry.1.is_empty() {
            entry.1 = example;
        }
    }
    for (what, (names, example)) in unread {
        let example = if example.is_empty() {
            String::new()
        } else {
            format!(" (first error: {example})")
        };
        c.items.push(Item {
            status: Status::Warn,
            subject: format!("metric {what} on {}", plural(names.len(), "node", "nodes")),
            detail: format!(
                "the kubelet's SidecarContainers metric could not be read through the API server's node proxy; the version decides (gate at its default){example}"
            ),
            nodes: names,
        });
    }
    let not_ready: Vec<String> = obs
        .iter()
        .filter(|o| !o.ready)
        .map(|o| o.facts.name.clone())
        .collect();
    if !not_ready.is_empty() {
        c.items.push(Item {
            status: Status::Warn,
            subject: format!("{} not Ready", plural(not_ready.len(), "node", "nodes")),
            detail: "dead or unreachable kubelets; pods placed there won't start".into(),
            nodes: not_ready,
        });
    }
    if forbidden {
        c.permission = Some(proxy_access());
        c.evidence.push(format!(
            "node metrics not read: permission to {} is missing; versions (and tandem.dev/native-sidecars labels) decide",
            proxy_access()
        ));
    }
    c.summary = format!(
        "{}: {} native sidecars{}{}",
        plural(obs.len(), "node", "nodes"),
        plural(runs, "runs", "run"),
        if breaks > 0 {
            format!(", {breaks} can't")
        } else {
            String::new()
        },
        if unknown > 0 {
            format!(", {unknown} unknown")
        } else {
            String::new()
        },
    );
    c.status = if breaks > 0 {
        Status::Fail
    } else if c.items.iter().any(|i| i.status == Status::Warn) {
        Status::Warn
    } else {
        Status::Pass
    };
    if breaks > 0 {
        c.hint = Some(
            "upgrade those kubelets to 1.29+ (or turn their SidecarContainers gate on), or keep native sidecars off them: run `tandem label-nodes` and inject with --mode affinity or auto".into(),
        );
    }
    c
}

/// Names of the native sidecars (init containers with `restartPolicy: Always`) of a pod.
fn native_sidecars(pod: &Value) -> Vec<String> {
    pod.pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| is_native_sidecar(c))
        .map(|c| {
            c.get("name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)")
                .to_string()
        })
        .collect()
}

fn pod_name(pod: &Value) -> String {
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    if ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}/{name}")
    }
}

fn text_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Check 5: pods in initialization (or rejected) whose native sidecar is on a node that
/// can't run it. `nodes` by name.
pub fn stuck_pods(
    res: &Result<Vec<Value>, KubeError>,
    nodes: &BTreeMap<String, NodeObservation>,
) -> Check {
    let id = "stuck-pods";
    let pods = match res {
        Err(e) => return Check::from_error(id, STUCK_TITLE, e),
        Ok(p) => p,
    };
    let mut c = Check::new(id, STUCK_TITLE, Status::Pass, String::new());
    let mut with_sidecars = 0;
    for pod in pods {
        let sidecars = native_sidecars(pod);
        if sidecars.is_empty() {
            continue;
        }
        with_sidecars += 1;
        let phase = text_at(pod, "/status/phase");
        let reason = text_at(pod, "/status/reason");
        let message = text_at(pod, "/status/message");
        let node = text_at(pod, "/spec/nodeName");
        let rejected = phase == "Failed"
            && (reason.contains("InitContainerRestartPolicyForbidden")
                || message.contains("InitContainerRestartPolicyForbidden"));
        if node.is_empty() || !(phase == "Pending" || rejected) {
            continue;
        }
        let names = sidecars
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sentence = match nodes.get(node) {
            Some(o) => {
                let verdict = o.verdict();
                match verdict.behaviour {
                    KubeletBehaviour::IgnoresField => format!(
                        "stuck in Init: its native sidecar {names} landed on node {node}, whose {}",
                        verdict.why
                    ),
                    KubeletBehaviour::RejectsPod => format!(
                        "{}: its native sidecar {names} landed on node {node}, whose {}",
                        if rejected { "rejected" } else { "cannot start" },
                        verdict.why
                    ),
                    KubeletBehaviour::Unknown if rejected => format!(
                        "rejected by node {node} (InitContainerRestartPolicyForbidden): its kubelet has the SidecarContainers gate off"
                    ),
                    _ if rejected => format!(
                        "rejected by node {node} (InitContainerRestartPolicyForbidden), although its kubelet version should run native sidecars: its SidecarContainers gate is off"
                    ),
                    _ => continue,
                }
            }
            None if rejected => {
                format!("rejected by node {node} (InitContainerRestartPolicyForbidden): {message}")
            }
            None => continue,
        };
        c.items.push(Item::new(
            Status::Fail,
            format!("pod {}", pod_name(pod)),
            sentence,
        ));
    }
    if c.items.is_empty() {
        c.summary = format!(
            "{} checked, {} with native sidecars, none stuck",
            plural(pods.len(), "unfinished pod", "unfinished pods"),
            with_sidecars
        );
    } else {
        c.status = Status::Fail;
        c.summary = format!(
            "{} stuck because of a native sidecar",
            plural(c.items.len(), "pod is", "pods are")
        );
        c.hint = Some(
            "delete them so that they are rescheduled, and keep native sidecars off such nodes: `tandem label-nodes` plus --mode affinity or auto".into(),
        );
    }
    c
}

/// `Kind name` of a pod's controller (or `Pod name` for bare pods).
fn owner(pod: &Value) -> String {
    let ns = text_at(pod, "/metadata/namespace");
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                .or_else(|| refs.first())
        })
        .map(|r| format!("{} {ns}/{}", text_at(r, "/kind"), text_at(r, "/name")))
        .unwrap_or_else(|| format!("Pod {}", pod_name(pod)))
}

/// The missed-injections check: pods in opted-in namespaces without `tandem.dev/status`
/// (created while the webhook was down under `failurePolicy: Ignore`), and pods whose
/// stored spec contradicts their `tandem.dev/status` (a webhook after tandem stripped
/// `restartPolicy: Always`, or the API server dropped it), by owner.
pub fn missed_injections(
    namespaces: &Result<Vec<Value>, KubeError>,
    pods: &Result<Vec<Value>, KubeError>,
) -> Check {
    let id = "missed-injections";
    let namespaces = match namespaces {
        Err(e) => return Check::from_error(id, MISSED_TITLE, e),
        Ok(n) => n,
    };
    let opted: Vec<&str> = namespaces
        .iter()
        .filter(|n| {
            n.pointer("/metadata/labels")
                .and_then(|l| l.get(INJECT_LABEL))
                .and_then(Value::as_str)
                == Some("enabled")
        })
        .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    if opted.is_empty() {
        return Check::new(
            id,
            MISSED_TITLE,
            Status::Pass,
            format!("no namespace is labelled {INJECT_LABEL}=enabled"),
        );
    }
    let pods = match pods {
        Err(e) => return Check::from_error(id, MISSED_TITLE, e),
        Ok(p) => p,
    };
    let mut by_owner: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut contradicting: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut checked = 0;
    for pod in pods {
        let ns = text_at(pod, "/metadata/namespace");
        if !opted.contains(&ns) {
            continue;
        }
        let phase = text_at(pod, "/status/phase");
        if matches!(phase, "Succeeded" | "Failed") {
            continue;
        }
        let annotations = pod.pointer("/metadata/annotations");
        if annotations
            .and_then(|a| a.get(MIRROR_POD_ANNOTATION))
            .is_some()
        {
            continue;
        }
        if pod
            .pointer("/metadata/labels")
            .and_then(|l| l.get(INJECT_LABEL))
            .and_then(Value::as_str)
            == Some("disabled")
        {
            continue;
        }
        checked += 1;
        match InjectionStatus::of_pod(pod) {
            None => by_owner.entry(owner(pod)).or_default().push(pod_name(pod)),
            Some(Err(e)) => contradicting
                .entry((owner(pod), e.to_string()))
                .or_default()
                .push(pod_name(pod)),
            Some(Ok(status)) => {
                let findings = verify::check(pod, &status, None);
                if !findings.is_empty() {
                    // Group by what was lost, without the pod-specific indexes.
                    let what = format!(
                        "{STATUS_ANNOTATION} says mode {} but the stored spec contradicts it: {} lost {}",
                        status.mode.as_str(),
                        {
                            let names = verify::sidecars(&findings);
                            if names.is_empty() {
                                "the pod".to_string()
                            } else {
                                format!(
                                    "sidecar {}",
                                    names
                                        .iter()
                                        .map(|n| format!("{n:?}"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )
                            }
                        },
                        verify::fields(&findings).join(", ")
                    );
                    contradicting
                        .entry((owner(pod), what))
                        .or_default()
                        .push(pod_name(pod));
                }
            }
        }
    }
    let mut c = Check::new(id, MISSED_TITLE, Status::Pass, String::new());
    for ((owner, what), pods) in &contradicting {
        c.items.push(Item::new(
            Status::Fail,
            format!("{owner} ({})", plural(pods.len(), "pod", "pods")),
            format!("{what}: a mutating webhook after tandem stripped it (or the API server dropped restartPolicy); find it with `tandem doctor -n NAMESPACE`"),
        ));
        c.evidence.extend(
            pods.iter()
                .take(3)
                .map(|p| format!("pod {p} ({owner}): {what}")),
        );
    }
    for (owner, pods) in &by_owner {
        let mut item = Item::new(
            Status::Fail,
            format!("{owner} ({})", plural(pods.len(), "pod", "pods")),
            format!(
                "no {STATUS_ANNOTATION} annotation: created while the webhook was down or skipped them (failurePolicy: Ignore)"
            ),
        );
        item.nodes = Vec::new();
        c.items.push(item);
        c.evidence
            .extend(pods.iter().take(3).map(|p| format!("pod {p} ({owner})")));
    }
    let missed: usize = by_owner.values().map(Vec::len).sum();
    let stripped: usize = contradicting.values().map(Vec::len).sum();
    if stripped > 0 {
        c.status = Status::Fail;
        c.summary = format!(
            "{} in opted-in namespaces {} their {STATUS_ANNOTATION}: what tandem injected was changed after it",
            plural(stripped, "pod", "pods"),
            if stripped == 1 {
                "contradicts"
            } else {
                "contradict"
            }
        );
        if missed > 0 {
            c.summary.push_str(&format!(
                "; {} run without their sidecars",
                plural(missed, "pod", "pods")
            ));
        }
        c.hint = Some("find the webhook that strips the field with `tandem doctor -n NAMESPACE` (the dry-run probe names it) and fix or exclude it; tandem's webhook repairs, falls back or denies such pods at admission (onStripped)".into());
    } else if missed == 0 {
        c.summary = format!(
            "{} in {} opted-in {}, all injected",
            plural(checked, "pod", "pods"),
            opted.len(),
            if opted.len() == 1 {
                "namespace"
            } else {
                "namespaces"
            }
        );
    } else {
        c.status = Status::Fail;
        c.summary = format!(
            "{} in opted-in namespaces run without their sidecars",
            plural(missed, "pod", "pods")
        );
        c.hint = Some("restart them once the webhook is up (e.g. `kubectl rollout restart deployment/NAME -n NS`; delete bare pods); consider failurePolicy: Fail for the webhook".into());
    }
    c
}

/// Whether the API server drops the field (for the webhook check's verdict).
pub fn apiserver_drops(version: Option<&KubeVersion>, gate: Option<bool>) -> Option<String> {
    let v = compat::apiserver(version, gate);
    (v.behaviour == ApiServerBehaviour::DropsField).then_some(v.why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tandem_kube::Access;

    fn v(s: &str) -> KubeVersion {
        KubeVersion::parse(s).unwrap()
    }

    fn reading(on: bool) -> GateReading {
        GateReading {
            enabled: on,
            stage: "BETA".into(),
            line: format!(
                "kubernetes_feature_enabled{{name=\"SidecarContainers\",stage=\"BETA\"}} {}",
                u8::from(on)
            ),
        }
    }

    fn forbidden(verb: &str, res: &str) -> KubeError {
        KubeError::Forbidden {
            access: Access::new(verb, res),
            message: "no".into(),
        }
    }

    #[test]
    fn apiserver_version_check() {
        assert_eq!(apiserver_version(&Ok(v("v1.29.0"))).status, Status::Pass);
        let c = apiserver_version(&Ok(v("v1.28.9")));
        assert_eq!(c.status, Status::Fail);
        assert!(c.summary.contains("older than 1.29"));
        let c = apiserver_version(&Err(forbidden("get", "/version")));
        assert_eq!(c.status, Status::Error);
        assert_eq!(c.permission.unwrap().resource, "/version");
    }

    #[test]
    fn apiserver_gate_check() {
        let c = apiserver_gate(Some(&v("v1.31.0")), &Ok(Some(reading(false))));
        assert_eq!(c.status, Status::Fail);
        assert!(c.evidence[0].contains("SidecarContainers") && c.evidence[0].ends_with(" 0"));
        assert!(c.hint.unwrap().contains("SidecarContainers=false"));
        assert_eq!(
            apiserver_gate(Some(&v("v1.31.0")), &Ok(Some(reading(true)))).status,
            Status::Pass
        );
        assert_eq!(
            apiserver_gate(Some(&v("v1.36.0")), &Ok(None)).status,
            Status::Pass
        );
        assert_eq!(
            apiserver_gate(Some(&v("v1.30.0")), &Ok(None)).status,
            Status::Warn
        );
        assert_eq!(
            apiserver_gate(Some(&v("v1.27.0")), &Ok(None)).status,
            Status::Fail
        );
        // No permission for /metrics: an error, unless the gate is locked on anyway.
        let c = apiserver_gate(Some(&v("v1.30.0")), &Err(forbidden("get", "/metrics")));
        assert_eq!(c.status, Status::Error);
        assert_eq!(c.permission.unwrap().resource, "/metrics");
        assert_eq!(
            apiserver_gate(Some(&v("v1.34.0")), &Err(forbidden("get", "/metrics"))).status,
            Status::Pass
        );
    }

    fn node(name: &str, version: &str, metric: Option<NodeGate>) -> NodeObservation {
        let mut facts = NodeFacts::from_version(v(version));
        facts.name = name.into();
        NodeObservation {
            facts,
            metric,
            ready: true,
        }
    }

    #[test]
    fn nodes_are_grouped_by_version() {
        let mut obs: Vec<NodeObservation> = (0..1000)
            .map(|i| node(&format!("new-{i}"), "v1.33.2", None))
            .collect();
        obs.push(node("old-1", "v1.27.9", None));
        obs.push(node("old-2", "v1.27.9", None));
        obs.push(node("mid-1", "v1.28.3", Some(NodeGate::Absent)));
        let c = nodes(&Ok(obs), None);
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.summary, "1003 nodes: 1000 run native sidecars, 3 can't");
        assert_eq!(c.items.len(), 3);
        let old = c
            .items
            .iter()
            .find(|i| i.subject.starts_with("kubelet v1.27.9"))
            .unwrap();
        assert_eq!(old.nodes, ["old-1", "old-2"]);
        assert_eq!(old.status, Status::Fail);
        assert!(old.detail.contains("ignores-field"), "{}", old.detail);
        assert!(
            c.items
                .iter()
                .any(|i| i.subject == "kubelet v1.28.3 (1 node)" && i.detail.contains("rejects"))
        );
    }

    #[test]
    fn a_verdict_from_the_node_label_says_so() {
        // issue 15: a gate read from the tandem.dev/native-sidecars label was called "(metric)".
        let mut labelled = node("l", "v1.28.3", None);
        labelled.facts.gate = Some(true);
        let why = labelled.verdict().why;
        assert!(!why.contains("(metric)"), "{why}");
        assert!(
            why.contains("node label tandem.dev/native-sidecars=true"),
            "{why}"
        );
        let c = nodes(&Ok(vec![labelled.clone()]), None);
        assert!(c.items[0].detail.contains("node label"), "{:?}", c.items);
        // A metric that was read still says metric, even where a label exists.
        labelled.metric = Some(NodeGate::Read {
            reading: reading(true),
        });
        let why = labelled.verdict().why;
        assert!(
            why.contains("(metric)") && !why.contains("node label"),
            "{why}"
        );
    }

    #[test]
    fn node_metrics_decide_and_degrade() {
        let on = node(
            "a",
            "v1.28.3",
            Some(NodeGate::Read {
                reading: reading(true),
            }),
        );
        let off = node(
            "b",
            "v1.30.1",
            Some(NodeGate::Read {
                reading: reading(false),
            }),
        );
        let c = nodes(&Ok(vec![on.clone()]), None);
        assert_eq!(c.status, Status::Pass, "{c:?}");
        assert!(
            c.items[0]
                .detail
                .contains("metric: kubernetes_feature_enabled")
        );
        assert_eq!(nodes(&Ok(vec![off]), None).status, Status::Fail);
        // Slow nodes and no permission: warnings with the nodes and the permission named.
        let slow = node("slow", "v1.30.1", Some(NodeGate::Timeout));
        let dead = NodeObservation {
            ready: false,
            ..node("dead", "v1.34.0", None)
        };
        let c = nodes(&Ok(vec![on, slow, dead]), None);
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.items
                .iter()
                .any(|i| i.subject == "metric timed out on 1 node" && i.nodes == ["slow"])
        );
        assert!(c.items.iter().any(|i| i.subject == "1 node not Ready"));
        let failed = node(
            "f",
            "v1.31.0",
            Some(NodeGate::Failed {
                message: "address not allowed".into(),
            }),
        );
        let c = nodes(&Ok(vec![failed]), None);
        assert!(
            c.items
                .iter()
                .any(|i| i.detail.ends_with("(first error: address not allowed)")),
            "{c:?}"
        );
        let c = nodes(
            &Ok(vec![node("x", "v1.30.1", Some(NodeGate::Forbidden))]),
            None,
        );
        assert_eq!(c.permission.unwrap().resource, "nodes/proxy");
        assert_eq!(c.status, Status::Pass);
        assert_eq!(nodes(&Ok(vec![]), Some("pool=x")).status, Status::Warn);
        assert_eq!(
            nodes(&Err(forbidden("list", "nodes")), None).status,
            Status::Error
        );
        assert!(metric_matters(Some(&v("v1.30.0"))));
        assert!(!metric_matters(Some(&v("v1.33.0"))));
        assert!(!metric_matters(Some(&v("v1.27.0"))));
        assert!(metric_matters(None));
    }

    fn pod(name: &str, node: &str, phase: &str, sidecar: bool) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "shop"},
            "spec": {"nodeName": node, "initContainers": [], "containers": [{"name": "app"}]},
            "status": {"phase": phase}});
        if sidecar {
            p["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
        }
        p
    }

    #[test]
    fn stuck_pods_are_explained() {
        let nodes_by_name: BTreeMap<String, NodeObservation> = [
            node("old", "v1.27.9", None),
            node("mid", "v1.28.3", None),
            node("new", "v1.33.0", None),
        ]
        .into_iter()
        .map(|o| (o.facts.name.clone(), o))
        .collect();
        let mut rejected = pod("r", "mid", "Failed", true);
        rejected["status"]["reason"] = json!("InitContainerRestartPolicyForbidden");
        let pods = vec![
            pod("stuck", "old", "Pending", true),
            pod("fine", "new", "Pending", true),
            pod("plain", "old", "Pending", false),
            rejected,
            pod("unscheduled", "", "Pending", true),
        ];
        let c = stuck_pods(&Ok(pods), &nodes_by_name);
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.items.len(), 2, "{:?}", c.items);
        assert_eq!(c.items[0].subject, "pod shop/stuck");
        assert!(c.items[0].detail.starts_with("stuck in Init: its native sidecar \"proxy\" landed on node old, whose kubelet v1.27.9"), "{}", c.items[0].detail);
        assert!(
            c.items[1].detail.starts_with("rejected"),
            "{}",
            c.items[1].detail
        );
        let ok = stuck_pods(
            &Ok(vec![pod("fine", "new", "Pending", true)]),
            &nodes_by_name,
        );
        assert_eq!(ok.status, Status::Pass);
        assert_eq!(
            ok.summary,
            "1 unfinished pod checked, 1 with native sidecars, none stuck"
        );
    }

    #[test]
    fn missed_injections_by_owner() {
        let nss = Ok(vec![
            json!({"metadata": {"name": "shop", "labels": {INJECT_LABEL: "enabled"}}}),
            json!({"metadata": {"name": "other"}}),
        ]);
        let owned = |name: &str, rs: &str| {
            json!({"metadata": {"name": name, "namespace": "shop",
            "ownerReferences": [{"kind": "ReplicaSet", "name": rs, "controller": true}]}, "status": {"phase": "Running"}})
        };
        let mut injected = owned("ok", "web-1");
        injected["metadata"]["annotations"] =
            json!({STATUS_ANNOTATION: r#"{"mode":"native","sidecars":["proxy"]}"#});
        injected["spec"] = json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "app"}]});
        let mut stripped = injected.clone();
        stripped["metadata"]["name"] = json!("stripped");
        stripped["metadata"]["ownerReferences"][0]["name"] = json!("web-2");
        stripped["spec"]["initContainers"][0]
            .as_object_mut()
            .unwrap()
            .remove("restartPolicy");
        let mut opted_out = owned("out", "web-1");
        opted_out["metadata"]["labels"] = json!({INJECT_LABEL: "disabled"});
        let pods = Ok(vec![
            owned("a", "web-1"),
            owned("b", "web-1"),
            injected.clone(),
            opted_out.clone(),
            json!({"metadata": {"name": "bare", "namespace": "shop"}, "status": {"phase": "Pending"}}),
            json!({"metadata": {"name": "elsewhere", "namespace": "other"}}),
        ]);
        let c = missed_injections(&nss, &pods);
        assert_eq!(c.status, Status::Fail);
        assert_eq!(
            c.summary,
            "3 pods in opted-in namespaces run without their sidecars"
        );
        assert_eq!(c.items[0].subject, "Pod shop/bare (1 pod)");
        assert_eq!(c.items[1].subject, "ReplicaSet shop/web-1 (2 pods)");
        // The stored spec is compared with the annotation, not trusted.
        let c = missed_injections(&nss, &Ok(vec![injected.clone(), stripped.clone()]));
        assert_eq!(c.status, Status::Fail);
        assert_eq!(
            c.summary,
            "1 pod in opted-in namespaces contradicts their tandem.dev/status: what tandem injected was changed after it"
        );
        assert_eq!(c.items.len(), 1);
        assert_eq!(c.items[0].subject, "ReplicaSet shop/web-2 (1 pod)");
        assert!(
            c.items[0].detail.starts_with("tandem.dev/status says mode native but the stored spec contradicts it: sidecar \"proxy\" lost restartPolicy"),
            "{}",
            c.items[0].detail
        );
        assert_eq!(
            missed_injections(&nss, &Ok(vec![injected.clone()])).status,
            Status::Pass
        );
        let none = missed_injections(&Ok(vec![]), &Err(forbidden("list", "pods")));
        assert_eq!(none.status, Status::Pass);
        assert_eq!(
            missed_injections(&nss, &Err(forbidden("list", "pods"))).status,
            Status::Error
        );
    }
}
