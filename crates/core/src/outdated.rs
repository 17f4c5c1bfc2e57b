//! Which pods run an outdated revision of a sidecar object, or of the webhook's
//! configuration, grouped by workload: what `tandem status` prints and `tandem rollout`
//! restarts. Pure: pods, a [`Catalog`] and the configuration's revision in, groups out.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::catalog::{Catalog, Entry, Kind};
use crate::status::PodStatus;

/// Pods of one workload on one outdated revision of one sidecar object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outdated {
    /// The pods' namespace.
    pub namespace: String,
    /// The pods' controlling owner (`ReplicaSet`, `StatefulSet`, …), or `Pod` itself.
    pub owner_kind: String,
    /// Its name.
    pub owner_name: String,
    /// `Sidecar`, `ClusterSidecar`, or [`CONFIG_KIND`] (the webhook's configuration).
    pub sidecar_kind: String,
    /// The object's name (for the configuration: its ConfigMap's name).
    pub sidecar: String,
    /// The revision the pods run.
    pub pod_revision: String,
    /// The object's revision now (`None`: the object was deleted).
    pub current_revision: Option<String>,
    /// The pods, by name.
    pub pods: Vec<String>,
}

/// [`Outdated::sidecar_kind`] of pods injected from an older webhook configuration.
pub const CONFIG_KIND: &str = "Config";

/// The webhook's configuration now: where it lives and its
/// [`crate::config::Config::sidecars_revision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentConfig {
    /// The name it is listed under (its ConfigMap's name).
    pub name: String,
    /// Its sidecars' revision (`None`: it has no sidecars now).
    pub revision: Option<String>,
}

/// A pod's controlling owner `(kind, name)`, or `("Pod", its name)`.
pub fn owner_of(pod: &Value) -> (String, String) {
    let controller = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|os| {
            os.iter()
                .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        });
    let s = |v: Option<&Value>, k: &str| {
        v.and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match controller {
        Some(o) => (s(Some(o), "kind"), s(Some(o), "name")),
        None => ("Pod".into(), s(pod.get("metadata"), "name")),
    }
}

/// Groups the pods that run a revision of a sidecar object other than the current one
/// (or of one that no longer exists), and, given the current configuration, the pods
/// injected from another revision of it. Pods without revisions in `tandem.dev/status`
/// (injected before tandem recorded them), and pods whose annotation doesn't parse, are
/// left out; so are finished pods.
pub fn outdated<'a>(
    pods: impl IntoIterator<Item = &'a Value>,
    catalog: &Catalog,
    config: Option<&CurrentConfig>,
) -> Vec<Outdated> {
    let mut groups: BTreeMap<(String, String, String, String, String, String), Outdated> =
        BTreeMap::new();
    for pod in pods {
        let phase = pod.pointer("/status/phase").and_then(Value::as_str);
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let Ok(Some(status)) = PodStatus::from_meta(pod.get("metadata")) else {
            continue;
        };
        let namespace = pod
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (owner_kind, owner_name) = owner_of(pod);
        let mut add = |kind: &str, sidecar: &str, revision: &str, current: Option<String>| {
            let key = (
                namespace.clone(),
                owner_kind.clone(),
                owner_name.clone(),
                kind.to_string(),
                sidecar.to_string(),
                revision.to_string(),
            );
            groups
                .entry(key)
                .or_insert_with(|| Outdated {
                    namespace: namespace.clone(),
                    owner_kind: owner_kind.clone(),
                    owner_name: owner_name.clone(),
                    sidecar_kind: kind.to_string(),
                    sidecar: sidecar.to_string(),
                    pod_revision: revision.to_string(),
                    current_revision: current,
                    pods: Vec::new(),
                })
                .pods
                .push(name.clone());
        };
        if let (Some(c), Some(rev)) = (config, &status.config_revision)
            && c.revision.as_ref() != Some(rev)
        {
            add(CONFIG_KIND, &c.name, rev, c.revision.clone());
        }
        for o in &status.objects {
            let entry = match o.kind {
                Kind::Sidecar => catalog
                    .namespaced
                    .get(&namespace)
                    .and_then(|m| m.get(&o.name)),
                Kind::ClusterSidecar => catalog.cluster.get(&o.name),
            };
            let current = entry.map(|e| match e {
                Entry::Usable(x) => x.revision.clone(),
                Entry::Unusable(u) => u.revision.clone(),
            });
            if current.as_deref() == Some(o.revision.as_str()) {
                continue;
            }
            add(o.kind.as_str(), &o.name, &o.revision, current);
        }
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::SidecarObject;
    use serde_json::json;

    fn pod(name: &str, owner: Option<&str>, objects: Value) -> Value {
        let status = json!({"mode": "native", "sidecars": [], "objects": objects}).to_string();
        let mut p = json!({"metadata": {"name": name, "namespace": "shop",
                           "annotations": {"tandem.dev/status": status}}});
        if let Some(o) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"kind": "ReplicaSet", "name": o, "controller": true}]);
        }
        p
    }

    #[test]
    fn old_revisions_and_deleted_objects_are_listed_per_workload() {
        let spec = json!({"podSelector": {}, "containers": [{"name": "p", "image": "p:2"}]});
        let now = crate::catalog::revision(&spec);
        let c = Catalog::build([SidecarObject::from_value(&json!({
            "apiVersion": "tandem.dev/v1alpha1", "kind": "ClusterSidecar",
            "metadata": {"name": "proxy"}, "spec": spec}))]);
        let old = json!([{"kind": "ClusterSidecar", "name": "proxy", "revision": "aaaaaaaaaa", "mode": "native"}]);
        let cur =
            json!([{"kind": "ClusterSidecar", "name": "proxy", "revision": now, "mode": "native"}]);
        let gone = json!([{"kind": "Sidecar", "name": "gone", "revision": "bbbbbbbbbb", "mode": "legacy"}]);
        let mut done = pod("done", Some("web-1"), old.clone());
        done["status"] = json!({"phase": "Succeeded"});
        let pods = [
            pod("web-1-a", Some("web-1"), old.clone()),
            pod("web-1-b", Some("web-1"), old),
            pod("web-2-a", Some("web-2"), cur),
            pod("solo", None, gone),
            done,
            json!({"metadata": {"name": "plain", "namespace": "shop"}}),
        ];
        let out = outdated(pods.iter(), &c, None);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].owner_kind, "Pod");
        assert_eq!(out[0].current_revision, None);
        assert_eq!(out[1].owner_name, "web-1");
        assert_eq!(out[1].pods, ["web-1-a", "web-1-b"]);
        assert_eq!(out[1].current_revision.as_deref(), Some(now.as_str()));
    }

    #[test]
    fn pods_of_an_older_configuration_are_listed() {
        let with_config = |name: &str, rev: &str| {
            let status = json!({"mode": "native", "sidecars": ["helper"], "configRevision": rev})
                .to_string();
            json!({"metadata": {"name": name, "namespace": "shop",
                   "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1", "controller": true}],
                   "annotations": {"tandem.dev/status": status}}})
        };
        let pods = [
            with_config("a", "1111111111"),
            with_config("b", "2222222222"),
        ];
        let current = CurrentConfig {
            name: "tandem-config".into(),
            revision: Some("2222222222".into()),
        };
        let out = outdated(pods.iter(), &Catalog::default(), Some(&current));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].sidecar_kind, CONFIG_KIND);
        assert_eq!(out[0].sidecar, "tandem-config");
        assert_eq!(out[0].pods, ["a"]);
        assert_eq!(out[0].pod_revision, "1111111111");
        assert_eq!(out[0].current_revision.as_deref(), Some("2222222222"));
        // Without the current configuration, nothing is said about it.
        assert!(outdated(pods.iter(), &Catalog::default(), None).is_empty());
    }
}
