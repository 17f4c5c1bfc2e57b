//! The `tandem.dev/v1alpha1` custom resources: `Sidecar` (namespaced) and
//! `ClusterSidecar` (cluster-scoped), and the CustomResourceDefinitions generated from
//! these types (`charts/tandem/crds/`, `tandem install`).
//!
//! Containers, init containers and volumes are kept as raw JSON (copied into pods as
//! written, like the config file's sidecars), but their OpenAPI schema is Kubernetes' own
//! `Container`/`Volume` schema, so the API server refuses a wrong type, a bad quantity
//! (`memory: 64 MiB`) or, with strict field validation (kubectl's default), an unknown
//! field such as `imagePullPolcy`. Nothing in the schema preserves unknown fields.
//!
//! Reading objects (from the API server or files) into something the injector can use is
//! [`crate::catalog`]'s job; this module is only the wire shape and its schema.

use k8s_openapi::api::core::v1::{Container, Volume};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The API group of tandem's custom resources.
pub const GROUP: &str = "tandem.dev";
/// Their version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of tandem's custom resources.
pub const API_VERSION: &str = "tandem.dev/v1alpha1";

/// Sidecars injected into pods of this object's namespace that its `podSelector`
/// selects or that request it by name (`tandem.dev/sidecars: NAME`).
// clippy reads the repeated `type_ = "string"` of the printcolumns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tandem.dev",
    version = "v1alpha1",
    kind = "Sidecar",
    namespaced,
    status = "SidecarStatus",
    shortname = "sc",
    category = "tandem",
    derive = "PartialEq",
    doc = "Sidecar containers that tandem injects into pods of this namespace (selected by podSelector, or requested with the pod annotation tandem.dev/sidecars).",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Revision", type_ = "string", json_path = ".status.revision"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    /// The common part of both kinds.
    #[serde(flatten)]
    pub common: CommonSpec,
}

/// Sidecar containers that tandem injects into pods of every namespace that
/// `namespaceSelector` selects.
// clippy reads the repeated `type_ = "string"` of the printcolumns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tandem.dev",
    version = "v1alpha1",
    kind = "ClusterSidecar",
    status = "SidecarStatus",
    shortname = "csc",
    category = "tandem",
    derive = "PartialEq",
    doc = "Sidecar containers that tandem injects into pods of the namespaces namespaceSelector selects (selected by podSelector, or requested with the pod annotation tandem.dev/sidecars). A Sidecar of the same name in the pod's namespace takes its place there.",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Revision", type_ = "string", json_path = ".status.revision"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSidecarSpec {
    /// Namespaces whose pods this object may be injected into (absent: every namespace
    /// the webhook sees). A scope: pods outside it never get it, even on request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<LabelSelector>")]
    pub namespace_selector: Option<Value>,
    /// The common part of both kinds.
    #[serde(flatten)]
    pub common: CommonSpec,
}

/// What `Sidecar` and `ClusterSidecar` have in common.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonSpec {
    /// Pods that get these sidecars without asking. Absent: only pods that request the
    /// object by name in the annotation `tandem.dev/sidecars`; `{}`: every pod in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<LabelSelector>")]
    pub pod_selector: Option<Value>,
    /// The sidecar containers, in order: ordinary Kubernetes Containers, injected as
    /// written (native, legacy or universal, as the pod's mode decides).
    #[schemars(with = "Vec<Container>", length(min = 1))]
    pub containers: Vec<Value>,
    /// Plain init containers the sidecars need, run (in order) just before them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<Container>")]
    pub init_containers: Vec<Value>,
    /// Volumes the containers mount, added to the pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<Volume>")]
    pub volumes: Vec<Value>,
    /// Mode for these sidecars (native, legacy, affinity, universal, auto). A pod's
    /// `tandem.dev/mode` annotation still wins; absent: the webhook's mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<ModeName>")]
    pub mode: Option<crate::Mode>,
    /// Ordering hint among the sidecar objects a pod gets: lower first (default 0),
    /// ties by name. Sidecars from the config file come before every object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<i32>,
}

/// The mode names, for the schema.
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum ModeName {
    Native,
    Legacy,
    Affinity,
    Universal,
    Auto,
}

/// What the webhook last made of the object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarStatus {
    /// The `metadata.generation` these conditions are about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The revision injected pods record in `tandem.dev/status` for this spec (a hash of
    /// it). `tandem status` lists pods on other revisions; `tandem rollout` restarts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// `Ready` (True: injected into the pods that select it; False with reason
    /// `Invalid` or `ConflictingNames`: skipped, the message says why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The two CustomResourceDefinitions, ready to apply (schemas trimmed and tightened:
/// see [`tighten_schema`]).
pub fn crds() -> Vec<CustomResourceDefinition> {
    use kube_core::CustomResourceExt as _;
    vec![tighten(Sidecar::crd()), tighten(ClusterSidecar::crd())]
}

/// The CRDs as YAML files: `(file name, text)`, as kept in `charts/tandem/crds/`.
pub fn crd_files() -> Vec<(String, String)> {
    crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let value = serde_json::to_value(&crd).unwrap_or(Value::Null);
            let text = format!(
                "# Generated from crates/core/src/api.rs by `cargo test -p tandem-core --test crds` \
                 (set TANDEM_UPDATE_CRDS=1 to rewrite). Do not edit.\n{}",
                crate::manifest::to_yaml_stream([value].iter())
                    .trim_start_matches("---\n")
            );
            (format!("{name}.yaml"), text)
        })
        .collect()
}

fn tighten(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for v in &mut crd.spec.versions {
        if let Some(schema) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            let mut value = serde_json::to_value(&*schema).unwrap_or(Value::Null);
            tighten_schema(&mut value, false, "");
            if let Ok(s) = serde_json::from_value(value) {
                *schema = s;
            }
        }
    }
    crd
}

/// The pattern Kubernetes' own CRDs (controller-gen) give resource quantities.
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// Makes the generated schema one the API server enforces like a Pod's: quantities get
/// a pattern (`anyOf` integer|string, as controller-gen writes them), and the long
/// descriptions of Kubernetes' own types are dropped (they would make each CRD about
/// 1 MiB, too big for client-side `kubectl apply`). `k8s` is true below a field whose
/// schema is a Kubernetes type (`containers`, `volumes`, selectors, conditions); `field`
/// is the name of the property `v` is the schema of.
pub fn tighten_schema(v: &mut Value, k8s: bool, field: &str) {
    let Value::Object(map) = v else { return };
    if k8s {
        map.remove("description");
    }
    // Quantities and IntOrString look alike in the generated schema (both only
    // `x-kubernetes-int-or-string`); Container and Volume have quantities at these fields.
    let is_quantity = map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        && matches!(field, "limits" | "requests" | "divisor" | "sizeLimit");
    if is_quantity {
        map.remove("nullable");
        map.insert(
            "anyOf".into(),
            serde_json::json!([{"type": "integer"}, {"type": "string"}]),
        );
        map.insert("pattern".into(), Value::from(QUANTITY_PATTERN));
        map.insert("x-kubernetes-int-or-string".into(), Value::Bool(true));
        return;
    }
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        for (name, sub) in props.iter_mut() {
            let below = k8s
                || matches!(
                    name.as_str(),
                    "containers"
                        | "initContainers"
                        | "volumes"
                        | "podSelector"
                        | "namespaceSelector"
                        | "conditions"
                );
            // A field of ours keeps its own description; the Kubernetes type below loses its.
            let own = (!k8s).then(|| sub.get("description").cloned()).flatten();
            tighten_schema(sub, below, name);
            if let (Some(d), Value::Object(m)) = (own, sub) {
                m.insert("description".into(), d);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = map.get_mut(key) {
            tighten_schema(sub, k8s, field);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(subs)) = map.get_mut(key) {
            subs.iter_mut().for_each(|s| tighten_schema(s, k8s, field));
        }
    }
}
