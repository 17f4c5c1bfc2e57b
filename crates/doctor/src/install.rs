//! Manifests that run `tandem label-nodes` as a controller in a cluster (ServiceAccount,
//! ClusterRole, ClusterRoleBinding, Deployment), for `tandem install` to include. Pure.

use serde_json::{Value, json};

/// Name shared by the labeller's objects.
pub const LABELLER_NAME: &str = "tandem-label-nodes";

/// The RBAC the labeller needs: read and patch nodes; read kubelet metrics through the
/// node proxy (optional: without it, versions alone decide).
pub fn labeller_cluster_role() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": LABELLER_NAME, "labels": {"app.kubernetes.io/name": LABELLER_NAME, "app.kubernetes.io/part-of": "tandem"}},
        "rules": [
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}
        ]
    })
}

/// Every object, in apply order: ServiceAccount, ClusterRole, ClusterRoleBinding,
/// Deployment (one replica: patches are idempotent, so a second one during a rollout
/// does no harm).
pub fn labeller_manifests(namespace: &str, image: &str) -> Vec<Value> {
    let labels =
        json!({"app.kubernetes.io/name": LABELLER_NAME, "app.kubernetes.io/part-of": "tandem"});
    vec![
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": LABELLER_NAME, "namespace": namespace, "labels": labels}
        }),
        labeller_cluster_role(),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": LABELLER_NAME, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": LABELLER_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": LABELLER_NAME, "namespace": namespace}]
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": LABELLER_NAME, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app.kubernetes.io/name": LABELLER_NAME}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": LABELLER_NAME,
                        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "label-nodes",
                            "image": image,
                            "args": ["label-nodes"],
                            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}}
                        }]
                    }
                }
            }
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_consistent() {
        let m = labeller_manifests("tandem-system", "ghcr.io/tandem-dev/tandem:0.1.0");
        let kinds: Vec<&str> = m.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Deployment"
            ]
        );
        assert_eq!(m[2]["subjects"][0]["namespace"], "tandem-system");
        assert_eq!(
            m[3]["spec"]["template"]["spec"]["serviceAccountName"],
            LABELLER_NAME
        );
        assert_eq!(
            m[3]["spec"]["template"]["spec"]["containers"][0]["args"][0],
            "label-nodes"
        );
        let verbs = &m[1]["rules"][0]["verbs"];
        assert!(verbs.as_array().unwrap().iter().any(|v| v == "patch"));
        assert!(
            !verbs.as_array().unwrap().iter().any(|v| v == "update"),
            "patches only"
        );
        // Lints clean with tandem's own linter.
        assert!(crate::lint::lint_document(&m[3], &Default::default()).is_empty());
    }
}
