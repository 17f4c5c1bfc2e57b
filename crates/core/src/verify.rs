//! Does a pod still hold what tandem injected? A later mutating webhook that decodes the
//! Pod with a pre-1.28 schema and encodes it again drops `restartPolicy: Always` from the
//! native sidecar (the seed's central troubleshooting case): the create then fails
//! (`startupProbe: Forbidden`), or the pod is stored with a plain init container that
//! never exits while `tandem.dev/status` still says `native`.
//!
//! [`check`] compares a pod with its [`InjectionStatus`] (and, when the configuration is
//! at hand, the configured sidecars' probes and hooks) and names each loss precisely.
//! [`plan`] turns the findings into what the webhook does by [`StripPolicy`]: a JSON Patch
//! that re-adds what was lost (`repair`), one that moves the sidecars to the regular
//! containers as `legacy` places them (`legacy`), or a denial (`deny`). Pure: the webhook
//! (at reinvocation) and the doctor (on stored pods) are thin edges around it.

use std::fmt;

use json_patch::{PatchOperation, RemoveOperation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{Config, sidecar_name};
use crate::mode::Placement;
use crate::names::{self, LEGACY_COPY_SUFFIX, NODE_LABEL, STATUS_ANNOTATION};
use crate::patch::{PatchBuilder, Path};
use crate::status::InjectionStatus;

/// Pod annotation that chooses the [`StripPolicy`] for one pod (wins over the config's
/// `onStripped`).
pub const ON_STRIPPED_ANNOTATION: &str = "tandem.dev/on-stripped";

/// Fields of a native sidecar that tandem injects and checks (besides `restartPolicy`).
const HANDLER_FIELDS: [&str; 4] = [
    "startupProbe",
    "livenessProbe",
    "readinessProbe",
    "lifecycle",
];

/// What the webhook does with a pod whose spec no longer holds what tandem injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StripPolicy {
    /// Re-add what was removed (JSON Patch), warn, and record an Event.
    #[default]
    Repair,
    /// Move the sidecars to the regular containers, as `legacy` places them, so that the
    /// pod runs on any node; warn and record an Event.
    Legacy,
    /// Deny the create with a message that names the loss and how to find the webhook.
    Deny,
}

impl StripPolicy {
    /// The policy's name as users write it.
    pub fn as_str(self) -> &'static str {
        match self {
            StripPolicy::Repair => "repair",
            StripPolicy::Legacy => "legacy",
            StripPolicy::Deny => "deny",
        }
    }
}

impl std::str::FromStr for StripPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "repair" => Ok(Self::Repair),
            "legacy" => Ok(Self::Legacy),
            "deny" => Ok(Self::Deny),
            other => Err(format!(
                "{other:?} is not a valid value: use repair, legacy or deny"
            )),
        }
    }
}

/// What was lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Loss {
    /// The sidecar's container is gone.
    Container,
    /// A field of the sidecar's container was removed (`restartPolicy`, `startupProbe`, …).
    Field {
        /// The field's name.
        field: String,
    },
    /// `restartPolicy` is there but not `Always`.
    RestartPolicy {
        /// What it is now.
        found: String,
    },
    /// The affinity term `tandem.dev/native-sidecars In [true]` is missing from a
    /// required node selector term (or there is no required term at all).
    AffinityTerm,
}

/// One difference between the pod and what tandem injected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The sidecar concerned (empty for the affinity term, which is the pod's).
    pub sidecar: String,
    /// Where, as users write fields (`spec.initContainers[0].restartPolicy`).
    pub path: String,
    /// What was lost.
    pub loss: Loss,
}

impl Finding {
    /// The lost field's short name (`restartPolicy`, `startupProbe`, `container`,
    /// `affinity`), for metric labels and one-line summaries.
    pub fn field(&self) -> &str {
        match &self.loss {
            Loss::Container => "container",
            Loss::Field { field } => field,
            Loss::RestartPolicy { .. } => "restartPolicy",
            Loss::AffinityTerm => "affinity",
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.loss {
            Loss::Container => write!(f, "sidecar {:?} is gone ({})", self.sidecar, self.path),
            Loss::Field { field } if field == "restartPolicy" => write!(
                f,
                "sidecar {:?} lost restartPolicy: Always ({})",
                self.sidecar, self.path
            ),
            Loss::Field { field } => {
                write!(
                    f,
                    "sidecar {:?} lost its {field} ({})",
                    self.sidecar, self.path
                )
            }
            Loss::RestartPolicy { found } => write!(
                f,
                "sidecar {:?} has restartPolicy {found:?} instead of Always ({})",
                self.sidecar, self.path
            ),
            Loss::AffinityTerm => write!(
                f,
                "the node affinity term {NODE_LABEL} In [true] is gone ({})",
                self.path
            ),
        }
    }
}

fn list<'a>(pod: &'a Value, key: &str) -> &'a [Value] {
    pod.pointer(&format!("/spec/{key}"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn position(pod: &Value, key: &str, name: &str) -> Option<usize> {
    list(pod, key)
        .iter()
        .position(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

fn field_path(key: &str, i: usize, field: Option<&str>) -> String {
    let p = Path::root().join(["spec", key]).join([i]);
    match field {
        Some(f) => p.join([f]).to_string(),
        None => p.to_string(),
    }
}

const REQUIRED_TERMS: [&str; 5] = [
    "spec",
    "affinity",
    "nodeAffinity",
    "requiredDuringSchedulingIgnoredDuringExecution",
    "nodeSelectorTerms",
];

fn capable_requirement() -> Value {
    json!({"key": NODE_LABEL, "operator": "In", "values": ["true"]})
}

fn term_has_requirement(term: &Value) -> bool {
    let req = capable_requirement();
    term.get("matchExpressions")
        .and_then(Value::as_array)
        .is_some_and(|es| es.contains(&req))
}

/// Compares `pod` with what `status` says tandem injected. With `config`, the configured
/// sidecars' probes and hooks are checked too (native and affinity placements: tandem
/// copies them as written). Returns nothing when the pod holds everything.
pub fn check(pod: &Value, status: &InjectionStatus, config: Option<&Config>) -> Vec<Finding> {
    let mut out = Vec::new();
    let configured =
        |name: &str| config.and_then(|c| c.sidecars.iter().find(|s| sidecar_name(s) == name));
    for name in &status.sidecars {
        if status.mode == Placement::Universal {
            let legacy_copy = format!("{name}{LEGACY_COPY_SUFFIX}");
            if position(pod, "containers", &legacy_copy).is_none() {
                out.push(Finding {
                    sidecar: legacy_copy,
                    path: "spec.containers".into(),
                    loss: Loss::Container,
                });
            }
        }
        match status.mode {
            Placement::Native | Placement::Affinity | Placement::Universal => {
                let Some(i) = position(pod, "initContainers", name) else {
                    out.push(Finding {
                        sidecar: name.clone(),
                        path: "spec.initContainers".into(),
                        loss: Loss::Container,
                    });
                    continue;
                };
                let c = &list(pod, "initContainers")[i];
                match c.get("restartPolicy").and_then(Value::as_str) {
                    Some("Always") => {}
                    None => out.push(Finding {
                        sidecar: name.clone(),
                        path: field_path("initContainers", i, Some("restartPolicy")),
                        loss: Loss::Field {
                            field: "restartPolicy".into(),
                        },
                    }),
                    Some(other) => out.push(Finding {
                        sidecar: name.clone(),
                        path: field_path("initContainers", i, Some("restartPolicy")),
                        loss: Loss::RestartPolicy {
                            found: other.into(),
                        },
                    }),
                }
                // Universal's native copy may have had probes taken off on purpose (where
                // the API server may drop the field); only native and affinity copy them
                // as configured.
                if status.mode == Placement::Universal {
                    continue;
                }
                if let Some(s) = configured(name) {
                    for field in HANDLER_FIELDS {
                        if s.get(field).is_some_and(|v| !v.is_null())
                            && c.get(field).is_none_or(Value::is_null)
                        {
                            out.push(Finding {
                                sidecar: name.clone(),
                                path: field_path("initContainers", i, Some(field)),
                                loss: Loss::Field {
                                    field: field.into(),
                                },
                            });
                        }
                    }
                }
            }
            Placement::Legacy => {
                let legacy_copy = format!("{name}{LEGACY_COPY_SUFFIX}");
                if position(pod, "containers", name).is_none()
                    && position(pod, "containers", &legacy_copy).is_none()
                {
                    out.push(Finding {
                        sidecar: name.clone(),
                        path: "spec.containers".into(),
                        loss: Loss::Container,
                    });
                }
            }
        }
    }
    if status.mode == Placement::Affinity {
        let terms = Path::root().join(REQUIRED_TERMS);
        match terms
            .get(pod)
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty())
        {
            None => out.push(Finding {
                sidecar: String::new(),
                path: terms.to_string(),
                loss: Loss::AffinityTerm,
            }),
            Some(ts) => {
                for (i, t) in ts.iter().enumerate() {
                    if !term_has_requirement(t) {
                        out.push(Finding {
                            sidecar: String::new(),
                            path: terms.join([i]).join(["matchExpressions"]).to_string(),
                            loss: Loss::AffinityTerm,
                        });
                    }
                }
            }
        }
    }
    out
}

/// Why a policy can't be carried out; the webhook then denies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CannotAct(pub String);

/// What to do with a pod whose findings are not empty.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Apply this patch (repair, or the move to legacy).
    Patch(Vec<PatchOperation>),
    /// Deny the create.
    Deny,
}

/// The pod's policy: its [`ON_STRIPPED_ANNOTATION`] if valid, else `default`. An
/// invalid annotation value comes back as `Err` (with what to write instead).
pub fn policy_of(pod: &Value, default: StripPolicy) -> Result<StripPolicy, String> {
    match pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .and_then(|a| a.get(ON_STRIPPED_ANNOTATION))
        .and_then(Value::as_str)
    {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|e| format!("annotation {ON_STRIPPED_ANNOTATION}: {e}")),
    }
}

/// Turns findings into an action by `policy`. `Err` when the policy can't be carried
/// out (a sidecar that is gone can't be repaired or moved): deny then.
pub fn plan(
    pod: &Value,
    status: &InjectionStatus,
    config: Option<&Config>,
    findings: &[Finding],
    policy: StripPolicy,
) -> Result<Action, CannotAct> {
    match policy {
        StripPolicy::Deny => Ok(Action::Deny),
        StripPolicy::Repair => repair(pod, config, findings).map(Action::Patch),
        StripPolicy::Legacy => to_legacy(pod, status, findings).map(Action::Patch),
    }
}

fn gone(findings: &[Finding]) -> Option<&Finding> {
    findings.iter().find(|f| f.loss == Loss::Container)
}

fn repair(
    pod: &Value,
    config: Option<&Config>,
    findings: &[Finding],
) -> Result<Vec<PatchOperation>, CannotAct> {
    if let Some(f) = gone(findings) {
        return Err(CannotAct(format!("{f}: nothing left to repair")));
    }
    let mut ops = PatchBuilder::default();
    let mut affinity_done = false;
    for f in findings {
        match &f.loss {
            Loss::Container => {}
            Loss::RestartPolicy { .. } => {
                restore_restart_policy(pod, f, &mut ops)?;
            }
            Loss::Field { field } if field == "restartPolicy" => {
                restore_restart_policy(pod, f, &mut ops)?;
            }
            Loss::Field { field } => {
                let value = config
                    .and_then(|c| c.sidecars.iter().find(|s| sidecar_name(s) == f.sidecar))
                    .and_then(|s| s.get(field.as_str()))
                    .cloned()
                    .ok_or_else(|| CannotAct(format!("{f}: the configuration no longer has it")))?;
                let i = position(pod, "initContainers", &f.sidecar)
                    .ok_or_else(|| CannotAct(format!("{f}: the container moved")))?;
                ops.add(
                    &Path::root()
                        .join(["spec", "initContainers"])
                        .join([i])
                        .join([field.as_str()]),
                    value,
                );
            }
            Loss::AffinityTerm if !affinity_done => {
                affinity_done = true;
                add_affinity(pod, &mut ops);
            }
            Loss::AffinityTerm => {}
        }
    }
    Ok(ops.finish())
}

fn restore_restart_policy(
    pod: &Value,
    f: &Finding,
    ops: &mut PatchBuilder,
) -> Result<(), CannotAct> {
    let i = position(pod, "initContainers", &f.sidecar)
        .ok_or_else(|| CannotAct(format!("{f}: the container moved")))?;
    ops.add(
        &Path::root()
            .join(["spec", "initContainers"])
            .join([i])
            .join(["restartPolicy"]),
        Value::from("Always"),
    );
    Ok(())
}

/// ANDs the capable-node requirement into every required term that lacks it, creating
/// what is missing (the same rule as injection: a new ORed term would loosen the pod).
fn add_affinity(pod: &Value, ops: &mut PatchBuilder) {
    let req = capable_requirement();
    let term = json!({"matchExpressions": [req.clone()]});
    let mut have = Path::root();
    let mut missing_from = None;
    for (depth, key) in REQUIRED_TERMS.iter().enumerate() {
        let next = have.join([*key]);
        if next.get(pod).is_none_or(Value::is_null) {
            missing_from = Some(depth);
            break;
        }
        have = next;
    }
    let terms = Path::root().join(REQUIRED_TERMS);
    match missing_from {
        Some(depth) => {
            // Build the missing tail: {nodeAffinity: {required…: {nodeSelectorTerms: [term]}}}.
            let mut value = json!([term]);
            for key in REQUIRED_TERMS[depth + 1..].iter().rev() {
                value = json!({ *key: value });
            }
            ops.add(&have.join([REQUIRED_TERMS[depth]]), value);
        }
        None => match terms.get(pod).and_then(Value::as_array) {
            Some(ts) if !ts.is_empty() => {
                for (i, t) in ts.iter().enumerate() {
                    if term_has_requirement(t) {
                        continue;
                    }
                    let exprs = terms.join([i]).join(["matchExpressions"]);
                    match t.get("matchExpressions").and_then(Value::as_array) {
                        Some(es) => ops.add(&exprs.join([es.len()]), req.clone()),
                        None => ops.add(&exprs, json!([req.clone()])),
                    }
                }
            }
            _ => ops.add(&terms, json!([term])),
        },
    }
}

/// Moves every native-form sidecar to the regular containers (as `legacy` places them:
/// first, without `restartPolicy`); for `universal`, removes the native copy so that the
/// regular copy acts alone. Rewrites the status annotation to `legacy`, recording what
/// was replaced under `fallbackFrom`.
fn to_legacy(
    pod: &Value,
    status: &InjectionStatus,
    findings: &[Finding],
) -> Result<Vec<PatchOperation>, CannotAct> {
    if let Some(f) = gone(findings) {
        return Err(CannotAct(format!("{f}: nothing left to move")));
    }
    if status.mode == Placement::Legacy {
        return Err(CannotAct("the pod is in legacy mode already".into()));
    }
    let inits = list(pod, "initContainers");
    let mut at: Vec<(usize, &String)> = status
        .sidecars
        .iter()
        .filter_map(|n| position(pod, "initContainers", n).map(|i| (i, n)))
        .collect();
    let mut ops: Vec<PatchOperation> = Vec::new();
    // Remove from the highest index down, so earlier indexes stay valid.
    at.sort_by_key(|b| std::cmp::Reverse(b.0));
    for (i, _) in &at {
        ops.push(PatchOperation::Remove(RemoveOperation {
            path: Path::root()
                .join(["spec", "initContainers"])
                .join([*i])
                .pointer(),
        }));
    }
    let mut b = PatchBuilder::default();
    let mut moved = 0;
    if status.mode != Placement::Universal {
        // In configuration order, first among the containers.
        for name in &status.sidecars {
            if let Some(i) = position(pod, "initContainers", name) {
                let mut c = inits[i].clone();
                if let Some(obj) = c.as_object_mut() {
                    obj.remove("restartPolicy");
                }
                let containers = Path::root().join(["spec", "containers"]);
                b.insert_all(&containers, containers.get(pod), moved, vec![c]);
                moved += 1;
            }
        }
    }
    let annotations = Path::root().join(["metadata", "annotations"]);
    let mut new_status = status.clone();
    new_status.mode = Placement::Legacy;
    new_status
        .extra
        .insert("fallbackFrom".into(), Value::from(status.mode.as_str()));
    b.add(
        &annotations.join([STATUS_ANNOTATION]),
        Value::from(new_status.to_annotation()),
    );
    let has_default = annotations
        .get(pod)
        .and_then(|a| a.get(names::DEFAULT_CONTAINER_ANNOTATION))
        .is_some();
    if moved > 0
        && !has_default
        && let Some(first) = list(pod, "containers")
            .first()
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
    {
        b.add(
            &annotations.join([names::DEFAULT_CONTAINER_ANNOTATION]),
            Value::from(first),
        );
    }
    ops.extend(b.finish());
    Ok(ops)
}

/// One line for a user: the findings, joined.
pub fn summary(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Short names of the lost fields, deduplicated, for messages and metric labels.
pub fn fields(findings: &[Finding]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in findings {
        if !out.iter().any(|x| x == f.field()) {
            out.push(f.field().to_string());
        }
    }
    out
}

/// The sidecars named by findings (deduplicated, in order).
pub fn sidecars(findings: &[Finding]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in findings {
        if !f.sidecar.is_empty() && !out.contains(&f.sidecar) {
            out.push(f.sidecar.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::{Injector, PodOutcome};
    use crate::knowledge::ClusterKnowledge;
    use crate::mode::Mode;
    use crate::{NamespaceOptIn, patch};

    fn config() -> Config {
        Config::from_yaml(
            r#"
sidecars:
- name: proxy
  image: envoy:1
  command: [envoy]
  startupProbe: {tcpSocket: {port: 15000}}
  lifecycle: {preStop: {exec: {command: [sleep, "1"]}}}
- name: logs
  image: fluent-bit:3
  command: [fluent-bit]
"#,
        )
        .unwrap()
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "shop", "annotations": {"keep": "me"}},
            "spec": {
                "initContainers": [{"name": "migrate", "image": "m"}],
                "containers": [{"name": "app", "image": "nginx", "futureField": 1}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                    {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                                           {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}
            }
        })
    }

    fn injected(mode: Mode) -> (Value, Config) {
        let config = config();
        let k = ClusterKnowledge::default();
        let injector = Injector {
            config: &config,
            knowledge: &k,
            mode_override: Some(mode),
        };
        let mut p = pod();
        let PodOutcome::Injected(inj) = injector.inject_pod(&p, NamespaceOptIn::Enabled).unwrap()
        else {
            panic!("not injected")
        };
        patch::apply(&mut p, &inj.patch).unwrap();
        (p, config)
    }

    fn status(p: &Value) -> InjectionStatus {
        InjectionStatus::of_pod(p).unwrap().unwrap()
    }

    /// What a decode/re-encode webhook built against a pre-1.28 schema does.
    fn strip(p: &mut Value) {
        for c in p["spec"]["initContainers"].as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("restartPolicy");
        }
    }

    fn apply(p: &Value, ops: &[PatchOperation]) -> Value {
        let mut out = p.clone();
        patch::apply(&mut out, ops).unwrap();
        out
    }

    #[test]
    fn freshly_injected_pods_hold_everything() {
        for mode in [Mode::Native, Mode::Affinity, Mode::Universal, Mode::Legacy] {
            let (p, c) = injected(mode);
            assert_eq!(check(&p, &status(&p), Some(&c)), vec![], "{mode:?}");
            assert_eq!(check(&p, &status(&p), None), vec![], "{mode:?}");
        }
    }

    #[test]
    fn stripped_restart_policy_is_named_per_sidecar() {
        let (mut p, c) = injected(Mode::Native);
        strip(&mut p);
        let f = check(&p, &status(&p), Some(&c));
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].sidecar, "proxy");
        assert_eq!(f[0].path, "spec.initContainers[0].restartPolicy");
        assert_eq!(
            f[0].to_string(),
            "sidecar \"proxy\" lost restartPolicy: Always (spec.initContainers[0].restartPolicy)"
        );
        assert_eq!(f[1].sidecar, "logs");
        assert_eq!(fields(&f), ["restartPolicy"]);
        assert_eq!(sidecars(&f), ["proxy", "logs"]);
        // Probes and hooks, when the configuration is known.
        p["spec"]["initContainers"][0]
            .as_object_mut()
            .unwrap()
            .remove("startupProbe");
        let f = check(&p, &status(&p), Some(&c));
        assert!(f.iter().any(|x| x.field() == "startupProbe"), "{f:?}");
        assert!(
            !check(&p, &status(&p), None)
                .iter()
                .any(|x| x.field() == "startupProbe")
        );
        p["spec"]["initContainers"][1]["restartPolicy"] = json!("Never");
        let f = check(&p, &status(&p), None);
        assert!(f.iter().any(|x| x.loss
            == Loss::RestartPolicy {
                found: "Never".into()
            }));
    }

    #[test]
    fn repair_restores_the_injected_form() {
        let (fresh, c) = injected(Mode::Native);
        let mut p = fresh.clone();
        strip(&mut p);
        p["spec"]["initContainers"][0]
            .as_object_mut()
            .unwrap()
            .remove("lifecycle");
        let s = status(&p);
        let f = check(&p, &s, Some(&c));
        let Action::Patch(ops) = plan(&p, &s, Some(&c), &f, StripPolicy::Repair).unwrap() else {
            panic!("no patch")
        };
        assert!(ops.iter().all(|o| matches!(o, PatchOperation::Add(_))));
        let repaired = apply(&p, &ops);
        assert_eq!(repaired, fresh);
        assert!(check(&repaired, &s, Some(&c)).is_empty());
    }

    #[test]
    fn affinity_term_is_checked_and_repaired() {
        let (fresh, c) = injected(Mode::Affinity);
        let terms = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms";
        // Term 1 had no matchExpressions: injection created them.
        let mut p = fresh.clone();
        p.pointer_mut(terms).unwrap()[0]["matchExpressions"]
            .as_array_mut()
            .unwrap()
            .pop();
        p.pointer_mut(terms).unwrap()[1]
            .as_object_mut()
            .unwrap()
            .remove("matchExpressions");
        let s = status(&p);
        let f = check(&p, &s, Some(&c));
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f.iter().all(|x| x.loss == Loss::AffinityTerm));
        assert!(
            f[0].to_string()
                .contains("tandem.dev/native-sidecars In [true]")
        );
        let Action::Patch(ops) = plan(&p, &s, Some(&c), &f, StripPolicy::Repair).unwrap() else {
            panic!()
        };
        assert_eq!(apply(&p, &ops), fresh);
        // The whole affinity gone (a re-encode with an old schema keeps it, a stripper may not).
        let mut p = fresh.clone();
        p["spec"].as_object_mut().unwrap().remove("affinity");
        let f = check(&p, &s, None);
        assert_eq!(f.len(), 1);
        let Action::Patch(ops) = plan(&p, &s, None, &f, StripPolicy::Repair).unwrap() else {
            panic!()
        };
        let repaired = apply(&p, &ops);
        assert!(check(&repaired, &s, None).is_empty(), "{repaired}");
        let mut p = fresh;
        p["spec"]["affinity"]["nodeAffinity"] = Value::Null;
        let f = check(&p, &s, None);
        let Action::Patch(ops) = plan(&p, &s, None, &f, StripPolicy::Repair).unwrap() else {
            panic!()
        };
        assert!(check(&apply(&p, &ops), &s, None).is_empty());
    }

    #[test]
    fn legacy_fallback_moves_sidecars_in_place() {
        for mode in [Mode::Native, Mode::Affinity] {
            let (mut p, c) = injected(mode);
            strip(&mut p);
            let s = status(&p);
            let f = check(&p, &s, Some(&c));
            let Action::Patch(ops) = plan(&p, &s, Some(&c), &f, StripPolicy::Legacy).unwrap()
            else {
                panic!()
            };
            let out = apply(&p, &ops);
            let names = |key: &str| -> Vec<String> {
                out["spec"][key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["name"].as_str().unwrap().to_string())
                    .collect()
            };
            assert_eq!(names("initContainers"), ["migrate"]);
            assert_eq!(names("containers"), ["proxy", "logs", "app"]);
            assert_eq!(
                out["spec"]["containers"][0]["startupProbe"]["tcpSocket"]["port"],
                15000
            );
            assert!(out["spec"]["containers"][0].get("restartPolicy").is_none());
            assert_eq!(out["spec"]["containers"][2]["futureField"], 1);
            assert_eq!(out["metadata"]["annotations"]["keep"], "me");
            assert_eq!(
                out["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
                "app"
            );
            let s2 = status(&out);
            assert_eq!(s2.mode, Placement::Legacy);
            assert_eq!(s2.extra["fallbackFrom"], mode.as_str());
            assert!(check(&out, &s2, Some(&c)).is_empty());
        }
    }

    #[test]
    fn universal_is_checked_and_falls_back_to_its_regular_copy() {
        let (mut p, c) = injected(Mode::Universal);
        strip(&mut p);
        let s = status(&p);
        let f = check(&p, &s, Some(&c));
        assert_eq!(sidecars(&f), ["proxy", "logs"]);
        assert_eq!(fields(&f), ["restartPolicy"]);
        let Action::Patch(ops) = plan(&p, &s, Some(&c), &f, StripPolicy::Legacy).unwrap() else {
            panic!()
        };
        let out = apply(&p, &ops);
        let inits: Vec<&str> = out["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(inits, ["tandem-shim-install", "migrate"]);
        assert!(check(&out, &status(&out), None).is_empty());
        let Action::Patch(ops) = plan(&p, &s, Some(&c), &f, StripPolicy::Repair).unwrap() else {
            panic!()
        };
        assert!(check(&apply(&p, &ops), &s, None).is_empty());
        // The regular copy gone too.
        let mut q = p.clone();
        q["spec"]["containers"].as_array_mut().unwrap().remove(0);
        let f = check(&q, &s, None);
        assert!(
            f.iter()
                .any(|x| x.sidecar == "proxy-legacy" && x.loss == Loss::Container)
        );
    }

    #[test]
    fn gone_sidecars_cannot_be_repaired_or_moved() {
        let (mut p, c) = injected(Mode::Native);
        p["spec"]["initContainers"] = json!([{"name": "migrate", "image": "m"}]);
        let s = status(&p);
        let f = check(&p, &s, Some(&c));
        assert_eq!(f[0].loss, Loss::Container);
        assert!(f[0].to_string().contains("is gone"));
        for policy in [StripPolicy::Repair, StripPolicy::Legacy] {
            let e = plan(&p, &s, Some(&c), &f, policy).unwrap_err();
            assert!(e.0.contains("proxy"), "{e}");
        }
        assert_eq!(
            plan(&p, &s, Some(&c), &f, StripPolicy::Deny).unwrap(),
            Action::Deny
        );
        let (mut p, _) = injected(Mode::Legacy);
        p["spec"]["containers"] = json!([{"name": "app"}]);
        assert_eq!(check(&p, &status(&p), None).len(), 2);
    }

    #[test]
    fn policy_from_annotation_or_default() {
        let mut p = pod();
        assert_eq!(policy_of(&p, StripPolicy::Deny), Ok(StripPolicy::Deny));
        p["metadata"]["annotations"][ON_STRIPPED_ANNOTATION] = json!("legacy");
        assert_eq!(policy_of(&p, StripPolicy::Repair), Ok(StripPolicy::Legacy));
        p["metadata"]["annotations"][ON_STRIPPED_ANNOTATION] = json!("fix");
        let e = policy_of(&p, StripPolicy::Repair).unwrap_err();
        assert!(
            e.contains("tandem.dev/on-stripped") && e.contains("repair, legacy or deny"),
            "{e}"
        );
        assert_eq!(StripPolicy::default(), StripPolicy::Repair);
    }
}
