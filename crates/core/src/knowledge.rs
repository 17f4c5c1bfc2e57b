//! What tandem knows about a cluster: its API server and its nodes.
//!
//! Filled from Node objects (the webhook's watch cache, `--nodes nodes.yaml`),
//! from bare kubelet versions (`--kubelet-version`), or not at all. Only the facts
//! that placement needs are kept: versions, gate readings, labels and taints.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::compat::{self, ApiServerBehaviour, KubeletBehaviour, Verdict};
use crate::names::NODE_LABEL;
use crate::version::KubeVersion;

/// What is known about the API server.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApiServerFacts {
    /// Its version, if known.
    pub version: Option<KubeVersion>,
    /// The `SidecarContainers` gate as its metric reports it, if read.
    pub gate: Option<bool>,
}

/// A node taint (only the parts scheduling looks at).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value (may be empty).
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// What is known about one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeFacts {
    /// Node name (empty for nodes known only by a `--kubelet-version`).
    pub name: String,
    /// The kubelet's version as reported, parsed.
    pub kubelet: Option<KubeVersion>,
    /// The kubelet's `SidecarContainers` gate, from its metric or from the
    /// `tandem.dev/native-sidecars` label that `label-nodes` derived from it.
    pub gate: Option<bool>,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    pub taints: Vec<Taint>,
}

/// Everything known about a cluster, for placement decisions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterKnowledge {
    /// The API server.
    pub apiserver: ApiServerFacts,
    /// The nodes. Empty means "no node knowledge", not "no nodes".
    pub nodes: Vec<NodeFacts>,
    /// True when `nodes` came with labels and taints (Node objects), so that a pod's
    /// node selection can be matched against them; false for bare versions.
    pub nodes_have_labels: bool,
}

/// A Node object that can't be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node {name}: {problem}")]
pub struct NodeError {
    /// The node's name, or `#N` for its position.
    pub name: String,
    /// What is wrong.
    pub problem: String,
}

impl NodeFacts {
    /// A node known only by its kubelet version.
    pub fn from_version(version: KubeVersion) -> Self {
        Self {
            name: String::new(),
            kubelet: Some(version),
            gate: None,
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }

    /// Reads the facts from a Node object as the API server returns it.
    pub fn from_node(node: &Value) -> Result<Self, NodeError> {
        let name = node
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let err = |problem: String| NodeError {
            name: if name.is_empty() {
                "(unnamed)".into()
            } else {
                name.clone()
            },
            problem,
        };
        if node
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k != "Node")
        {
            return Err(err(format!(
                "is a {}, not a Node",
                node["kind"].as_str().unwrap_or_default()
            )));
        }
        let labels: BTreeMap<String, String> = node
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let kubelet = match node
            .pointer("/status/nodeInfo/kubeletVersion")
            .and_then(Value::as_str)
        {
            Some(text) if !text.is_empty() => {
                Some(KubeVersion::parse(text).map_err(|e| err(e.to_string()))?)
            }
            _ => None,
        };
        let gate = match labels.get(NODE_LABEL).map(String::as_str) {
            Some("true") => Some(true),
            // `false` on an old kubelet means "too old", which the version already says.
            Some("false") if kubelet.as_ref().is_none_or(|v| v.at_least(1, 28)) => Some(false),
            _ => None,
        };
        let taints = node
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .map(|ts| {
                ts.iter()
                    .map(|t| Taint {
                        key: str_field(t, "key"),
                        value: str_field(t, "value"),
                        effect: str_field(t, "effect"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            name,
            kubelet,
            gate,
            labels,
            taints,
        })
    }

    /// What this node's kubelet does with a native sidecar, and why.
    pub fn behaviour(&self) -> Verdict<KubeletBehaviour> {
        compat::kubelet(self.kubelet.as_ref(), self.gate)
    }

    /// What this node's kubelet does with a native sidecar (no explanation: cheap).
    pub fn behaviour_kind(&self) -> KubeletBehaviour {
        compat::kubelet_behaviour(self.kubelet.as_ref(), self.gate)
    }

    /// `name (v1.28.3)` or just the version for nameless nodes.
    pub fn label(&self) -> String {
        let version = self
            .kubelet
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "version unknown".into());
        if self.name.is_empty() {
            format!("kubelet {version}")
        } else {
            format!("node {} ({version})", self.name)
        }
    }
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl ClusterKnowledge {
    /// Knowledge from Node objects (a `kind: List`/`NodeList`, or single Nodes).
    pub fn from_node_objects<'a>(
        objects: impl IntoIterator<Item = &'a Value>,
    ) -> Result<Vec<NodeFacts>, NodeError> {
        let mut nodes = Vec::new();
        for obj in objects {
            match obj.get("items").and_then(Value::as_array) {
                Some(items) => {
                    for item in items {
                        nodes.push(NodeFacts::from_node(item)?);
                    }
                }
                None => nodes.push(NodeFacts::from_node(obj)?),
            }
        }
        Ok(nodes)
    }

    /// What the API server does with a native sidecar.
    pub fn apiserver_behaviour(&self) -> Verdict<ApiServerBehaviour> {
        compat::apiserver(self.apiserver.version.as_ref(), self.apiserver.gate)
    }

    /// True when nothing at all is known.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.apiserver.version.is_none() && self.apiserver.gate.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_node_objects() {
        let node = json!({
            "kind": "Node",
            "metadata": {"name": "n1", "labels": {"pool": "old", NODE_LABEL: "false"}},
            "spec": {"taints": [{"key": "legacy", "value": "yes", "effect": "NoSchedule"}]},
            "status": {"nodeInfo": {"kubeletVersion": "v1.28.9-eks-036c24b"}}
        });
        let n = NodeFacts::from_node(&node).unwrap();
        assert_eq!(n.name, "n1");
        assert_eq!(n.kubelet.as_ref().unwrap().minor, 28);
        assert_eq!(n.gate, Some(false));
        assert_eq!(n.taints[0].effect, "NoSchedule");
        assert_eq!(n.behaviour().behaviour, KubeletBehaviour::RejectsPod);
    }

    #[test]
    fn node_lists_and_bad_nodes() {
        let list = json!({"kind": "List", "items": [
            {"kind": "Node", "metadata": {"name": "a"}, "status": {"nodeInfo": {"kubeletVersion": "v1.30.0"}}},
            {"kind": "Node", "metadata": {"name": "b"}}
        ]});
        let nodes = ClusterKnowledge::from_node_objects([&list]).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].behaviour().behaviour, KubeletBehaviour::Unknown);
        let bad = json!({"kind": "Node", "metadata": {"name": "c"}, "status": {"nodeInfo": {"kubeletVersion": "banana"}}});
        let err = ClusterKnowledge::from_node_objects([&bad]).unwrap_err();
        assert!(err.to_string().contains("node c"), "{err}");
        let pod = json!({"kind": "Pod", "metadata": {"name": "p"}});
        assert!(NodeFacts::from_node(&pod).is_err());
    }
}
