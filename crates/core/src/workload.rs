//! Where the pod is inside a manifest: `Pod`, the workload kinds that carry a pod
//! template, and `List`s of them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::patch::Path;

/// A kind beyond the built-in ones that carries a pod template (config `workloadKinds`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadKind {
    /// The object's `kind` (`DeploymentConfig`, `Rollout`, `ScaledJob`, …).
    pub kind: String,
    /// The object's `apiVersion` group, if only one group's kind is meant
    /// (`argoproj.io`); any group when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Dotted path of the pod template (the object with `metadata` and `spec`), e.g.
    /// `spec.template` or `spec.jobTargetRef.template`.
    pub pod_template: String,
}

impl WorkloadKind {
    fn matches(&self, doc: &Value, kind: &str) -> bool {
        self.kind == kind
            && self.group.as_deref().is_none_or(|g| {
                let api = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
                api.rsplit_once('/').map_or("", |(group, _)| group) == g
            })
    }

    fn path(&self) -> Vec<&str> {
        self.pod_template
            .split('.')
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// Where kinds tandem doesn't know commonly keep a pod template: Argo `Rollout`,
/// OpenShift `DeploymentConfig` and Knative `Service` (`spec.template`), KEDA
/// `ScaledJob` (`spec.jobTargetRef.template`), CronJob-like kinds and `PodTemplate`-like
/// ones.
const FOREIGN_TEMPLATE_PATHS: &[&str] = &[
    "spec.template",
    "spec.jobTargetRef.template",
    "spec.jobTemplate.spec.template",
    "template",
];

/// For a document of a kind tandem doesn't inject: the path of a pod template it carries
/// (an object whose `spec.containers` is a list), if any. `tandem inject` says so on
/// stderr; naming the kind under `workloadKinds` in the config makes it injected.
pub fn foreign_pod_template(doc: &Value) -> Option<&'static str> {
    let kind = doc.get("kind").and_then(Value::as_str)?;
    if carries_pod(kind) || kind.ends_with("List") {
        return None;
    }
    FOREIGN_TEMPLATE_PATHS.iter().copied().find(|path| {
        path.split('.')
            .try_fold(doc, |v, seg| v.get(seg))
            .and_then(|t| t.pointer("/spec/containers"))
            .is_some_and(Value::is_array)
    })
}

/// A pod (or pod template) found in a document.
#[derive(Debug, Clone, PartialEq)]
pub struct PodLocation {
    /// Path of the object holding `metadata` and `spec` (the Pod, or the template).
    pub base: Path,
    /// Kind of the object that owns the pod (`Deployment`, `Pod`, …).
    pub kind: String,
    /// `namespace/name` (or `name`) of that object, for messages.
    pub object: String,
    /// The owning object's namespace, if it says.
    pub namespace: Option<String>,
}

/// A document that should carry a pod but doesn't, or isn't an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join_parts(object, field, problem))]
pub struct ShapeError {
    /// `Kind namespace/name` of the object.
    pub object: String,
    /// The field at fault.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

/// `object: field: problem`, leaving out empty parts.
pub(crate) fn join_parts(object: &str, field: &str, problem: &str) -> String {
    [object, field, problem]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Where each kind keeps its pod template.
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &[],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => &["spec", "template"],
        "PodTemplate" => &["template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        _ => return None,
    })
}

/// True for kinds that carry a pod (directly or as a template).
pub fn carries_pod(kind: &str) -> bool {
    template_path(kind).is_some()
}

/// `Kind namespace/name` for messages.
pub fn describe(doc: &Value) -> String {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("object");
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .or_else(|| {
            doc.pointer("/metadata/generateName")
                .and_then(Value::as_str)
        })
        .unwrap_or("(unnamed)");
    match doc.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Every pod in a document (none for kinds that carry no pod; one per List item
/// that does). Errors when a kind that should carry a pod has no valid one.
pub fn find_pods(doc: &Value) -> Result<Vec<PodLocation>, ShapeError> {
    find_pods_with(doc, &[])
}

/// [`find_pods`], with `extra` kinds (config `workloadKinds`) besides the built-in ones.
pub fn find_pods_with(doc: &Value, extra: &[WorkloadKind]) -> Result<Vec<PodLocation>, ShapeError> {
    let mut out = Vec::new();
    find_into(doc, &Path::root(), extra, &mut out)?;
    Ok(out)
}

fn find_into(
    doc: &Value,
    at: &Path,
    extra: &[WorkloadKind],
    out: &mut Vec<PodLocation>,
) -> Result<(), ShapeError> {
    let object = describe(doc);
    let shape = |field: &Path, problem: &str| ShapeError {
        object: object.clone(),
        field: if field.to_string().is_empty() {
            "(document)".into()
        } else {
            field.to_string()
        },
        problem: problem.into(),
    };
    if !doc.is_object() {
        return Err(ShapeError {
            object: String::new(),
            field: at.to_string(),
            problem:
                "is not an object (a Kubernetes manifest is a mapping with apiVersion and kind)"
                    .into(),
        });
    }
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind == "List" || kind.ends_with("List") && doc.get("items").is_some() {
        let items = doc
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| shape(&at.join(["items"]), "must be a list"))?;
        for (i, item) in items.iter().enumerate() {
            find_into(
                item,
                &at.join(["items".to_string(), i.to_string()]),
                extra,
                out,
            )?;
        }
        return Ok(());
    }
    let configured;
    let template: &[&str] = match template_path(kind) {
        Some(t) => t,
        None => match extra.iter().find(|w| w.matches(doc, kind)) {
            Some(w) => {
                configured = w.path();
                &configured
            }
            None => return Ok(()),
        },
    };
    let base = at.join(template.iter());
    let rel = Path::root().join(template.iter());
    let pod = rel
        .get(doc)
        .filter(|v| v.is_object())
        .ok_or_else(|| shape(&rel, "is missing (a pod template is required)"))?;
    let spec = pod
        .get("spec")
        .filter(|v| v.is_object())
        .ok_or_else(|| shape(&rel.join(["spec"]), "is missing or not an object"))?;
    match spec.get("containers") {
        Some(Value::Array(cs)) if !cs.is_empty() => {}
        _ => {
            return Err(shape(
                &rel.join(["spec", "containers"]),
                "must be a non-empty list of containers",
            ));
        }
    }
    if let Some(meta) = pod.get("metadata")
        && !meta.is_object()
        && !meta.is_null()
    {
        return Err(shape(&rel.join(["metadata"]), "must be an object"));
    }
    out.push(PodLocation {
        base,
        kind: kind.to_string(),
        object,
        namespace: doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Value {
        json!({"containers": [{"name": "app", "image": "app"}]})
    }

    #[test]
    fn finds_templates_of_every_kind() {
        let cases = [
            ("Pod", json!({"kind": "Pod", "spec": spec()}), ""),
            (
                "Deployment",
                json!({"kind": "Deployment", "spec": {"template": {"spec": spec()}}}),
                "/spec/template",
            ),
            (
                "CronJob",
                json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": spec()}}}}}),
                "/spec/jobTemplate/spec/template",
            ),
            (
                "PodTemplate",
                json!({"kind": "PodTemplate", "template": {"spec": spec()}}),
                "/template",
            ),
        ];
        for (kind, doc, ptr) in cases {
            let found = find_pods(&doc).unwrap();
            assert_eq!(found.len(), 1, "{kind}");
            assert_eq!(found[0].base.pointer().as_str(), ptr, "{kind}");
        }
        for kind in [
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "ReplicationController",
            "Job",
        ] {
            let doc = json!({"kind": kind, "spec": {"template": {"spec": spec()}}});
            assert_eq!(find_pods(&doc).unwrap().len(), 1, "{kind}");
        }
    }

    #[test]
    fn lists_and_other_kinds() {
        let doc = json!({"kind": "List", "items": [
            {"kind": "Service", "spec": {}},
            {"kind": "Pod", "spec": spec()},
            {"kind": "List", "items": [{"kind": "Job", "spec": {"template": {"spec": spec()}}}]}
        ]});
        let found = find_pods(&doc).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].base.pointer().as_str(), "/items/1");
        assert_eq!(
            found[1].base.pointer().as_str(),
            "/items/2/items/0/spec/template"
        );
        assert!(
            find_pods(&json!({"kind": "ConfigMap", "data": {}}))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn foreign_kinds_with_pod_templates_are_noticed_and_configurable() {
        let rollout = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "spec": {"template": {"spec": spec()}}});
        let scaled_job = json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob",
            "spec": {"jobTargetRef": {"template": {"spec": spec()}}}});
        assert!(find_pods(&rollout).unwrap().is_empty());
        assert_eq!(foreign_pod_template(&rollout), Some("spec.template"));
        assert_eq!(
            foreign_pod_template(&scaled_job),
            Some("spec.jobTargetRef.template")
        );
        assert_eq!(
            foreign_pod_template(&json!({"kind": "ConfigMap", "data": {}})),
            None
        );
        assert_eq!(
            foreign_pod_template(
                &json!({"kind": "Deployment", "spec": {"template": {"spec": spec()}}})
            ),
            None
        );
        let extra = [
            WorkloadKind {
                kind: "Rollout".into(),
                group: Some("argoproj.io".into()),
                pod_template: "spec.template".into(),
            },
            WorkloadKind {
                kind: "ScaledJob".into(),
                group: None,
                pod_template: "spec.jobTargetRef.template".into(),
            },
        ];
        let found = find_pods_with(&rollout, &extra).unwrap();
        assert_eq!(found[0].base.pointer().as_str(), "/spec/template");
        assert_eq!(found[0].kind, "Rollout");
        let found = find_pods_with(&scaled_job, &extra).unwrap();
        assert_eq!(
            found[0].base.pointer().as_str(),
            "/spec/jobTargetRef/template"
        );
        // Another group's Rollout is not the one configured.
        let other = json!({"apiVersion": "example.com/v1", "kind": "Rollout",
            "spec": {"template": {"spec": spec()}}});
        assert!(find_pods_with(&other, &extra).unwrap().is_empty());
        // A configured kind without its template is a shape error, as for built-in kinds.
        let err = find_pods_with(&json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "r"}, "spec": {}}), &extra).unwrap_err();
        assert!(err.to_string().contains("spec.template"), "{err}");
    }

    #[test]
    fn shape_errors_name_object_and_field() {
        let err = find_pods(&json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}, "spec": {}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Deployment shop/web: spec.template: is missing (a pod template is required)"
        );
        let err = find_pods(
            &json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("spec.containers"), "{err}");
        let err = find_pods(&json!(["not", "an", "object"])).unwrap_err();
        assert!(err.to_string().contains("not an object"), "{err}");
    }
}
