//! Workloads that carry pods, listed as raw JSON across all namespaces (for `tandem
//! adopt --from-cluster --report`): Deployments, StatefulSets, DaemonSets, Jobs,
//! CronJobs, and Pods. Objects owned by another listed kind (a Deployment's
//! ReplicaSets are not listed at all; a CronJob's Jobs, a controller's Pods) are left
//! out, so that each workload is counted once.

use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use crate::cluster::list_all;
use crate::error::{Access, KubeError};

/// (group, version, kind, plural) of every kind listed.
const KINDS: &[(&str, &str, &str, &str)] = &[
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("apps", "v1", "DaemonSet", "daemonsets"),
    ("batch", "v1", "Job", "jobs"),
    ("batch", "v1", "CronJob", "cronjobs"),
    ("", "v1", "Pod", "pods"),
];

/// Every workload of the kinds above, with `apiVersion` and `kind` set, skipping
/// objects that have a controller owner.
pub async fn list_workloads(client: &Client) -> Result<Vec<Value>, KubeError> {
    let mut out = Vec::new();
    for (group, version, kind, plural) in KINDS {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let resource = if group.is_empty() {
            (*plural).to_string()
        } else {
            format!("{plural}.{group}")
        };
        let items = list_all(&api, Access::new("list", &resource), ListParams::default()).await?;
        for item in items {
            let owned = item
                .metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|r| r.controller == Some(true)));
            if owned {
                continue;
            }
            let mut v = serde_json::to_value(&item).map_err(|e| KubeError::Other {
                access: Access::new("list", &resource),
                message: e.to_string(),
            })?;
            v["apiVersion"] = Value::from(ar.api_version.clone());
            v["kind"] = Value::from(*kind);
            out.push(v);
        }
    }
    Ok(out)
}
