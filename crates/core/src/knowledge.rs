//! What tandem knows about a cluster: its API server and its nodes.
//!
//! Filled from Node objects (the webhook's watch cache, `--nodes nodes.yaml`),
//! from bare kubelet versions (`--kubelet-version`), or not at all. Only the facts
//! that placement needs are kept: versions, gate readings, labels and taints. Labels
//! are compact ([`Labels`]): label keys and most values repeat on every node, so each
//! distinct string is held once, shared by the nodes that carry it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::compat::{self, ApiServerBehaviour, KubeletBehaviour, Verdict};
use crate::names::NODE_LABEL;
use crate::node_index::NodeIndex;
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
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
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
    pub labels: Labels,
    /// Node taints.
    pub taints: Vec<Taint>,
}

/// A node's labels: sorted pairs of shared strings. Reads like a map
/// ([`Labels::get`], [`Labels::iter`]); built from any pairs of strings (a later pair
/// with the same key wins). Serializes as a map.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Arc<str>, Arc<str>)]>);

impl Labels {
    /// The value of label `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_ref())
    }

    /// True when label `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The labels, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels as their shared strings (for indexing without copies).
    pub fn shared(&self) -> impl Iterator<Item = &(Arc<str>, Arc<str>)> {
        self.0.iter()
    }

    /// The labels as an owned map.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut pairs: Vec<(Arc<str>, Arc<str>)> = iter
            .into_iter()
            .map(|(k, v)| (intern(k.as_ref()), intern(v.as_ref())))
            .collect();
        // Stable: of equal keys the last given stays last; keep that one.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Arc<str>, Arc<str>)> = Vec::with_capacity(pairs.len());
        for p in pairs {
            match out.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => out.push(p),
            }
        }
        Self(out.into_boxed_slice())
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(m: BTreeMap<String, String>) -> Self {
        m.iter().collect()
    }
}

impl std::fmt::Debug for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// Every label string in use, held once. Strings no node uses any more are dropped when
/// the set has doubled since it was last pruned.
struct Interner {
    strings: HashSet<Arc<str>>,
    pruned_at: usize,
}

static INTERNER: LazyLock<Mutex<Interner>> = LazyLock::new(|| {
    Mutex::new(Interner {
        strings: HashSet::new(),
        pruned_at: 0,
    })
});

/// The shared copy of `s`.
pub fn intern(s: &str) -> Arc<str> {
    let mut i = INTERNER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = i.strings.get(s) {
        return found.clone();
    }
    if i.strings.len() >= 4096 && i.strings.len() >= i.pruned_at.saturating_mul(2) {
        i.strings.retain(|a| Arc::strong_count(a) > 1);
        i.pruned_at = i.strings.len();
    }
    let a: Arc<str> = Arc::from(s);
    i.strings.insert(a.clone());
    a
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
    /// The index of `nodes`, built by the first decision that needs it (see
    /// [`ClusterKnowledge::node_index`]).
    #[serde(skip)]
    pub index: IndexCache,
}

/// Where a [`ClusterKnowledge`] keeps its [`NodeIndex`]. A clone starts empty, and two
/// caches always compare equal: the index is derived from the nodes, not knowledge.
#[derive(Default)]
pub struct IndexCache(OnceLock<NodeIndex>);

impl Clone for IndexCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for IndexCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for IndexCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "IndexCache(built)"
        } else {
            "IndexCache(empty)"
        })
    }
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
            labels: Labels::default(),
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
        let labels: Labels = node
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
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
        let gate = gate_label(&labels, kubelet.as_ref());
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

    /// Facts from a Node's parts (as a typed client reads them); a kubelet version that
    /// doesn't parse counts as unknown.
    pub fn from_parts(
        name: String,
        labels: Labels,
        kubelet_version: Option<&str>,
        taints: Vec<Taint>,
    ) -> Self {
        let kubelet = kubelet_version
            .filter(|t| !t.is_empty())
            .and_then(|t| KubeVersion::parse(t).ok());
        let gate = gate_label(&labels, kubelet.as_ref());
        Self {
            name,
            kubelet,
            gate,
            labels,
            taints,
        }
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

/// The gate as `label-nodes` recorded it in the node's label.
fn gate_label(labels: &Labels, kubelet: Option<&KubeVersion>) -> Option<bool> {
    match labels.get(NODE_LABEL) {
        Some("true") => Some(true),
        // `false` on an old kubelet means "too old", which the version already says.
        Some("false") if kubelet.is_none_or(|v| v.at_least(1, 28)) => Some(false),
        _ => None,
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

    /// The index of the nodes, built once and kept (a snapshot's nodes don't change).
    /// Should `nodes` have been replaced, grown or shrunk since, a fresh index is built
    /// for this call; code that edits a node in place calls [`Self::nodes_changed`].
    pub fn node_index(&self) -> Cow<'_, NodeIndex> {
        let index = self.index.0.get_or_init(|| NodeIndex::build(&self.nodes));
        if index.is_for(&self.nodes) {
            Cow::Borrowed(index)
        } else {
            Cow::Owned(NodeIndex::build(&self.nodes))
        }
    }

    /// Forgets the node index, after `nodes` was edited in place.
    pub fn nodes_changed(&mut self) {
        self.index = IndexCache::default();
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
    fn labels_read_like_a_map_and_share_their_strings() {
        let a: Labels = [("zone", "a"), ("pool", "x"), ("zone", "b")]
            .into_iter()
            .collect();
        assert_eq!(a.get("zone"), Some("b"), "the last value wins");
        assert_eq!(a.get("pool"), Some("x"));
        assert_eq!(a.get("nope"), None);
        assert_eq!(a.len(), 2);
        assert_eq!(a.iter().collect::<Vec<_>>(), [("pool", "x"), ("zone", "b")]);
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"pool": "x", "zone": "b"})
        );
        let b: Labels = BTreeMap::from([("zone".to_string(), "b".to_string())]).into();
        assert!(Arc::ptr_eq(&a.0[1].0, &b.0[0].0), "one copy of each string");
        assert_eq!(b.to_map()["zone"], "b");
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
