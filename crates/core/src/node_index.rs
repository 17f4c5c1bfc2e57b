//! An index of a knowledge snapshot's nodes, so that one `auto` decision is a few set
//! operations instead of a walk over every node.
//!
//! In a cluster of 10,000 nodes the webhook decides for every pod; walking the nodes
//! (match the selection, classify the kubelet, look up a label) cost about 1.5 ms of
//! CPU per pod, most of a core at 2,000 pods/s. The index is built once per snapshot
//! (the nodes change far less often than pods arrive) and answers the same questions
//! with bitsets over node positions:
//!
//! - label key → the nodes carrying it; its common values (more than one node in 32)
//!   → a bitset of their nodes; the other nodes with the key (values such as
//!   `kubernetes.io/hostname`) as positions sorted by value, searched by reading the
//!   value from the node (4 bytes per node, no copy of the strings);
//! - the distinct sets of hard taints (`NoSchedule`, `NoExecute`) → their nodes;
//! - the nodes sorted by name (for `nodeName`);
//! - kubelet behaviour → nodes, nodes labelled `tandem.dev/native-sidecars=true`, and
//!   kubelet minor version → nodes (for the version-skew rule).
//!
//! Candidates are exactly those of [`crate::scheduling::candidates`]; a property test
//! holds the two to the same answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use fixedbitset::FixedBitSet;

use crate::compat::KubeletBehaviour;
use crate::knowledge::{NodeFacts, Taint};
use crate::names::NODE_LABEL;
use crate::scheduling::{NodeSelection, Requirement, Term};

/// The nodes of one snapshot, indexed for placement decisions.
#[derive(Debug, Clone)]
pub struct NodeIndex {
    len: usize,
    /// Where `nodes` was and how long, to tell a stale index from a current one.
    stamp: (usize, usize),
    labels: HashMap<Arc<str>, KeyIndex>,
    /// Each distinct set of hard taints (sorted), with its nodes; the untainted nodes
    /// are under the empty set.
    taint_groups: Vec<(Vec<Taint>, NodeSet)>,
    /// Node positions sorted by name (a search needs the nodes: no copy of the names).
    by_name: Vec<u32>,
    /// Nodes by [`KubeletBehaviour`] (its discriminant).
    kinds: [FixedBitSet; 4],
    /// Nodes labelled `tandem.dev/native-sidecars=true`.
    labelled: FixedBitSet,
    /// Nodes whose kubelet version is known, by (major, minor).
    by_minor: BTreeMap<(u32, u32), FixedBitSet>,
}

#[derive(Debug, Clone)]
struct KeyIndex {
    /// Nodes carrying the key, whatever the value.
    any: FixedBitSet,
    /// Values carried by more than one node in 32, with their nodes.
    common: HashMap<Arc<str>, FixedBitSet>,
    /// The other nodes carrying the key, sorted by value, then position.
    rare: Vec<u32>,
}

impl KeyIndex {
    /// Adds the nodes whose value of `key` is `value` to `acc`.
    fn union_value_into(&self, key: &str, value: &str, nodes: &[NodeFacts], acc: &mut FixedBitSet) {
        if let Some(b) = self.common.get(value) {
            acc.union_with(b);
            return;
        }
        let of = |i: &u32| nodes[*i as usize].labels.get(key).unwrap_or_default();
        let from = self.rare.partition_point(|i| of(i) < value);
        acc.extend(
            self.rare[from..]
                .iter()
                .take_while(|i| of(i) == value)
                .map(|&i| i as usize),
        );
    }

    /// Adds the nodes whose value of `key` satisfies `pred` to `acc`.
    fn union_matching_into(
        &self,
        key: &str,
        pred: &dyn Fn(&str) -> bool,
        nodes: &[NodeFacts],
        acc: &mut FixedBitSet,
    ) {
        for (v, b) in &self.common {
            if pred(v) {
                acc.union_with(b);
            }
        }
        acc.extend(
            self.rare
                .iter()
                .map(|&i| i as usize)
                .filter(|&i| pred(nodes[i].labels.get(key).unwrap_or_default())),
        );
    }
}

/// Some nodes: a list while few, a bitset once a list would be larger.
#[derive(Debug, Clone)]
enum NodeSet {
    Few(Vec<u32>),
    Many(FixedBitSet),
}

impl NodeSet {
    fn insert(&mut self, i: usize, len: usize) {
        match self {
            NodeSet::Few(v) => {
                v.push(i as u32);
                // A u32 per node against a bit per node: switch at len / 32.
                if v.len() > len / 32 {
                    let mut b = FixedBitSet::with_capacity(len);
                    b.extend(v.iter().map(|&i| i as usize));
                    *self = NodeSet::Many(b);
                }
            }
            NodeSet::Many(b) => b.insert(i),
        }
    }

    fn union_into(&self, acc: &mut FixedBitSet) {
        match self {
            NodeSet::Few(v) => acc.extend(v.iter().map(|&i| i as usize)),
            NodeSet::Many(b) => acc.union_with(b),
        }
    }

    fn shrink(&mut self) {
        if let NodeSet::Few(v) = self {
            v.shrink_to_fit();
        }
    }
}

impl NodeIndex {
    /// Indexes `nodes`.
    pub fn build(nodes: &[NodeFacts]) -> Self {
        Self::build_split(nodes, nodes.len() / 32)
    }

    /// Indexes `nodes`; a label value carried by more than `common_above` nodes gets a
    /// bitset, the others are searched in the sorted positions.
    fn build_split(nodes: &[NodeFacts], common_above: usize) -> Self {
        let len = nodes.len();
        let empty = || FixedBitSet::with_capacity(len);
        let mut labels: HashMap<Arc<str>, KeyIndex> = HashMap::new();
        let mut taint_groups: Vec<(Vec<Taint>, NodeSet)> = Vec::new();
        let mut kinds: [FixedBitSet; 4] = [empty(), empty(), empty(), empty()];
        let mut labelled = empty();
        let mut by_minor: BTreeMap<(u32, u32), FixedBitSet> = BTreeMap::new();
        let mut group_of: HashMap<Vec<Taint>, usize> = HashMap::new();
        // Per key, (value, position) of every node carrying it; sorted and split below.
        let mut carried: HashMap<Arc<str>, Vec<(Arc<str>, u32)>> = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            for (k, v) in node.labels.shared() {
                carried
                    .entry(k.clone())
                    .or_default()
                    .push((v.clone(), i as u32));
            }
            let mut hard: Vec<Taint> = node
                .taints
                .iter()
                .filter(|t| crate::scheduling::keeps_pods_off(t))
                .cloned()
                .collect();
            hard.sort_by(|a, b| (&a.key, &a.value, &a.effect).cmp(&(&b.key, &b.value, &b.effect)));
            let g = *group_of.entry(hard.clone()).or_insert_with(|| {
                taint_groups.push((hard, NodeSet::Few(Vec::new())));
                taint_groups.len() - 1
            });
            taint_groups[g].1.insert(i, len);
            kinds[node.behaviour_kind() as usize].insert(i);
            if node.labels.get(NODE_LABEL) == Some("true") {
                labelled.insert(i);
            }
            if let Some(v) = &node.kubelet {
                by_minor
                    .entry((v.major, v.minor))
                    .or_insert_with(empty)
                    .insert(i);
            }
        }
        for (k, mut pairs) in carried {
            // Stable: positions stay ascending within a value.
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            let mut key = KeyIndex {
                any: empty(),
                common: HashMap::new(),
                rare: Vec::new(),
            };
            key.any.extend(pairs.iter().map(|p| p.1 as usize));
            for run in pairs.chunk_by(|a, b| a.0 == b.0) {
                if run.len() > common_above {
                    let mut b = empty();
                    b.extend(run.iter().map(|p| p.1 as usize));
                    key.common.insert(run[0].0.clone(), b);
                } else {
                    key.rare.extend(run.iter().map(|p| p.1));
                }
            }
            key.rare.shrink_to_fit();
            key.common.shrink_to_fit();
            labels.insert(k, key);
        }
        labels.shrink_to_fit();
        let mut by_name: Vec<u32> = (0..len as u32).collect();
        by_name.sort_by(|&a, &b| nodes[a as usize].name.cmp(&nodes[b as usize].name));
        taint_groups.iter_mut().for_each(|(_, s)| s.shrink());
        Self {
            len,
            stamp: stamp(nodes),
            labels,
            taint_groups,
            by_name,
            kinds,
            labelled,
            by_minor,
        }
    }

    /// True when this index was built from exactly this `nodes` buffer (same place,
    /// same length). A knowledge that changes its nodes in place calls
    /// [`crate::ClusterKnowledge::nodes_changed`].
    pub fn is_for(&self, nodes: &[NodeFacts]) -> bool {
        self.stamp == stamp(nodes)
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The nodes a pod spec can be scheduled on: those of
    /// [`crate::scheduling::candidates`], as a set of positions. `nodes` are those the
    /// index was built from.
    pub fn candidates(
        &self,
        spec: &serde_json::Value,
        nodes: &[NodeFacts],
        nodes_have_labels: bool,
    ) -> FixedBitSet {
        let sel = NodeSelection::of(spec);
        let mut acc = self.all();
        if !nodes_have_labels {
            return acc;
        }
        if let Some(name) = sel.node_name {
            acc.clear();
            let named = |&i: &u32| nodes[i as usize].name.as_str();
            let from = self.by_name.partition_point(|i| named(i) < name);
            for i in self.by_name[from..].iter().take_while(|i| named(i) == name) {
                acc.insert(*i as usize);
            }
            return acc;
        }
        for (k, v) in &sel.selector {
            match v {
                Some(v) => acc.intersect_with(&self.with_value(k, v, nodes)),
                None => acc.difference_with(&self.with_key(k)),
            }
        }
        if let Some(terms) = &sel.terms {
            let mut any = self.none();
            for t in terms {
                any.union_with(&self.term(t, nodes));
            }
            acc.intersect_with(&any);
        }
        acc.intersect_with(&self.tolerated(sel.tolerations));
        acc
    }

    /// Nodes of this kubelet behaviour.
    pub fn of_kind(&self, b: KubeletBehaviour) -> &FixedBitSet {
        &self.kinds[b as usize]
    }

    /// The nodes of `set` whose kubelet behaviour is `b`.
    pub fn of_kind_among(&self, set: &FixedBitSet, b: KubeletBehaviour) -> FixedBitSet {
        let mut out = set.clone();
        out.intersect_with(self.of_kind(b));
        out
    }

    /// Nodes labelled `tandem.dev/native-sidecars=true`.
    pub fn labelled(&self) -> &FixedBitSet {
        &self.labelled
    }

    /// Nodes whose kubelet is known and older than `major.minor`.
    pub fn older_than(&self, major: u32, minor: u32) -> FixedBitSet {
        let mut out = self.none();
        for (_, s) in self.by_minor.range(..(major, minor)) {
            out.union_with(s);
        }
        out
    }

    fn all(&self) -> FixedBitSet {
        let mut b = self.none();
        b.insert_range(..);
        b
    }

    fn none(&self) -> FixedBitSet {
        FixedBitSet::with_capacity(self.len)
    }

    fn with_key(&self, key: &str) -> FixedBitSet {
        self.labels
            .get(key)
            .map(|k| k.any.clone())
            .unwrap_or_else(|| self.none())
    }

    fn with_value(&self, key: &str, value: &str, nodes: &[NodeFacts]) -> FixedBitSet {
        let mut out = self.none();
        if let Some(k) = self.labels.get(key) {
            k.union_value_into(key, value, nodes, &mut out);
        }
        out
    }

    fn term(&self, t: &Term<'_>, nodes: &[NodeFacts]) -> FixedBitSet {
        if t.empty {
            return self.none();
        }
        let mut acc = self.all();
        for r in &t.labels {
            acc.intersect_with(&self.label_requirement(r, nodes));
        }
        for r in &t.names {
            acc.intersect_with(&self.name_requirement(r, nodes));
        }
        acc
    }

    fn label_requirement(&self, r: &Requirement<'_>, nodes: &[NodeFacts]) -> FixedBitSet {
        let key = self.labels.get(r.key);
        match r.operator {
            "In" | "NotIn" => {
                let mut out = self.none();
                if let Some(key) = key {
                    for v in &r.values {
                        key.union_value_into(r.key, v, nodes, &mut out);
                    }
                }
                if r.operator == "NotIn" {
                    out.toggle_range(..);
                }
                out
            }
            "Exists" => self.with_key(r.key),
            "DoesNotExist" => {
                let mut out = self.with_key(r.key);
                out.toggle_range(..);
                out
            }
            "Gt" | "Lt" => {
                let mut out = self.none();
                if let Some(key) = key {
                    key.union_matching_into(r.key, &|v| r.matches(Some(v)), nodes, &mut out);
                }
                out
            }
            // An operator we don't know: every node (the cautious answer).
            _ => self.all(),
        }
    }

    /// `matchFields` on `metadata.name`: rare, so a walk.
    fn name_requirement(&self, r: &Requirement<'_>, nodes: &[NodeFacts]) -> FixedBitSet {
        let mut out = self.none();
        out.extend((0..nodes.len()).filter(|&i| r.matches(Some(&nodes[i].name))));
        out
    }

    fn tolerated(&self, tolerations: &[serde_json::Value]) -> FixedBitSet {
        let mut out = self.none();
        for (taints, s) in &self.taint_groups {
            if crate::scheduling::tolerates_all(tolerations, taints) {
                s.union_into(&mut out);
            }
        }
        out
    }
}

fn stamp(nodes: &[NodeFacts]) -> (usize, usize) {
    (nodes.as_ptr() as usize, nodes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling;
    use crate::version::KubeVersion;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const KEYS: [&str; 3] = ["pool", "zone", "gpu"];
    const VALUES: [&str; 4] = ["a", "b", "1", "3"];
    const OPS: [&str; 7] = ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Weird"];
    const TAINTS: [(&str, &str, &str); 3] = [
        ("legacy", "true", "NoSchedule"),
        ("soft", "", "PreferNoSchedule"),
        ("dedicated", "batch", "NoExecute"),
    ];

    fn node_strategy() -> impl Strategy<Value = NodeFacts> {
        (
            0usize..6,
            proptest::collection::vec((0usize..3, 0usize..4), 0..3),
            proptest::collection::vec(0usize..3, 0..2),
            0u32..4,
            any::<bool>(),
        )
            .prop_map(|(name, labels, taints, minor, labelled)| {
                let mut l: Vec<(String, String)> = labels
                    .into_iter()
                    .map(|(k, v)| (KEYS[k].to_string(), VALUES[v].to_string()))
                    .collect();
                if labelled {
                    l.push((NODE_LABEL.into(), "true".into()));
                }
                NodeFacts {
                    name: format!("n{name}"),
                    kubelet: (minor > 0)
                        .then(|| KubeVersion::parse(&format!("v1.{}.0", 26 + minor)).unwrap()),
                    gate: None,
                    labels: l.into_iter().collect(),
                    taints: taints
                        .into_iter()
                        .map(|t| Taint {
                            key: TAINTS[t].0.into(),
                            value: TAINTS[t].1.into(),
                            effect: TAINTS[t].2.into(),
                        })
                        .collect(),
                }
            })
    }

    fn requirement() -> impl Strategy<Value = Value> {
        (
            0usize..3,
            0usize..7,
            proptest::collection::vec(0usize..4, 0..3),
        )
            .prop_map(|(k, op, vs)| {
                json!({"key": KEYS[k], "operator": OPS[op],
                       "values": vs.into_iter().map(|v| VALUES[v]).collect::<Vec<_>>()})
            })
    }

    fn spec_strategy() -> impl Strategy<Value = Value> {
        let term = (
            proptest::collection::vec(requirement(), 0..3),
            proptest::option::of((0usize..3, 0usize..6)),
        )
            .prop_map(|(exprs, field)| {
                let mut t = json!({"matchExpressions": exprs});
                if let Some((op, n)) = field {
                    t["matchFields"] = json!([{"key": "metadata.name", "operator": OPS[op], "values": [format!("n{n}")]}]);
                }
                t
            });
        (
            proptest::option::of(0usize..7),
            proptest::collection::vec((0usize..3, 0usize..5), 0..2),
            proptest::option::of(proptest::collection::vec(term, 0..3)),
            proptest::collection::vec((0usize..4, any::<bool>()), 0..3),
        )
            .prop_map(|(name, selector, terms, tolerations)| {
                let mut spec = json!({});
                if let Some(n) = name {
                    spec["nodeName"] = json!(format!("n{n}"));
                }
                if !selector.is_empty() {
                    let m: serde_json::Map<String, Value> = selector
                        .into_iter()
                        .map(|(k, v)| {
                            // 4: a value that isn't a string (matches nodes without the key).
                            let v = if v == 4 { json!(7) } else { json!(VALUES[v]) };
                            (KEYS[k].to_string(), v)
                        })
                        .collect();
                    spec["nodeSelector"] = Value::Object(m);
                }
                if let Some(terms) = terms {
                    spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}});
                }
                let tols: Vec<Value> = tolerations
                    .into_iter()
                    .map(|(t, exists)| match (t, exists) {
                        (3, _) => json!({"operator": "Exists"}),
                        (t, true) => json!({"key": TAINTS[t].0, "operator": "Exists"}),
                        (t, false) => json!({"key": TAINTS[t].0, "value": TAINTS[t].1, "effect": TAINTS[t].2}),
                    })
                    .collect();
                if !tols.is_empty() {
                    spec["tolerations"] = json!(tols);
                }
                spec
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn the_index_finds_the_walks_candidates(
            nodes in proptest::collection::vec(node_strategy(), 0..12),
            spec in spec_strategy(),
            has_labels in any::<bool>(),
        ) {
            let want = scheduling::candidates(&spec, &nodes, has_labels);
            // Every value common (bitsets), then every value rare (sorted positions).
            for common_above in [0, usize::MAX] {
                let index = NodeIndex::build_split(&nodes, common_above);
                let got: Vec<usize> = index.candidates(&spec, &nodes, has_labels).ones().collect();
                prop_assert_eq!(&got, &want, "{} (common above {})", spec, common_above);
            }
            let index = NodeIndex::build(&nodes);
            for b in [KubeletBehaviour::RunsSidecars, KubeletBehaviour::IgnoresField,
                      KubeletBehaviour::RejectsPod, KubeletBehaviour::Unknown] {
                let want: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].behaviour_kind() == b).collect();
                prop_assert_eq!(index.of_kind(b).ones().collect::<Vec<_>>(), want);
            }
            let old: Vec<usize> = (0..nodes.len())
                .filter(|&i| nodes[i].kubelet.as_ref().is_some_and(|v| v.minor < 28))
                .collect();
            prop_assert_eq!(index.older_than(1, 28).ones().collect::<Vec<_>>(), old);
        }
    }

    #[test]
    fn rare_values_are_lists_and_common_ones_bitsets() {
        let nodes: Vec<NodeFacts> = (0..200)
            .map(|i| NodeFacts {
                name: format!("n{i}"),
                kubelet: None,
                gate: None,
                labels: [
                    ("kubernetes.io/hostname", format!("n{i}")),
                    ("pool", if i % 2 == 0 { "a".into() } else { "b".into() }),
                ]
                .into_iter()
                .collect(),
                taints: Vec::new(),
            })
            .collect();
        let index = NodeIndex::build(&nodes);
        let host = &index.labels["kubernetes.io/hostname"];
        assert!(host.common.is_empty() && host.rare.len() == 200);
        assert!(index.labels["pool"].common.contains_key("a"));
        assert!(index.labels["pool"].rare.is_empty());
        assert!(index.is_for(&nodes));
        assert!(!index.is_for(&nodes[1..]));
        let spec = json!({"nodeSelector": {"kubernetes.io/hostname": "n7"}});
        assert_eq!(
            index
                .candidates(&spec, &nodes, true)
                .ones()
                .collect::<Vec<_>>(),
            [7]
        );
        let spec = json!({"nodeName": "n12"});
        assert_eq!(
            index
                .candidates(&spec, &nodes, true)
                .ones()
                .collect::<Vec<_>>(),
            [12]
        );
    }
}
