//! Which nodes a pod can land on: its `nodeName`, `nodeSelector`, required node
//! affinity and the taints it doesn't tolerate, matched the way the scheduler does.

use serde_json::Value;

use crate::knowledge::{NodeFacts, Taint};

/// The nodes (by position in `nodes`) that a pod spec can be scheduled on, by walking
/// every node: the reference that [`crate::node_index::NodeIndex::candidates`] (what
/// placement uses) is tested against.
pub fn candidates(spec: &Value, nodes: &[NodeFacts], nodes_have_labels: bool) -> Vec<usize> {
    let selection = NodeSelection::of(spec);
    (0..nodes.len())
        .filter(|&i| selection.admits(&nodes[i], nodes_have_labels))
        .collect()
}

/// True when the pod spec may be placed on this node. Nodes known only by a version
/// (no labels) match every pod.
pub fn can_land_on(spec: &Value, node: &NodeFacts, nodes_have_labels: bool) -> bool {
    NodeSelection::of(spec).admits(node, nodes_have_labels)
}

/// A pod's node selection, read once from its spec so that thousands of nodes can be
/// matched against it without re-reading JSON or allocating per node.
pub(crate) struct NodeSelection<'a> {
    pub(crate) node_name: Option<&'a str>,
    pub(crate) selector: Vec<(&'a str, Option<&'a str>)>,
    /// `None`: no required node affinity. Terms are ORed.
    pub(crate) terms: Option<Vec<Term<'a>>>,
    pub(crate) tolerations: &'a [Value],
}

/// One node selector term: requirements ANDed; empty matches nothing.
pub(crate) struct Term<'a> {
    pub(crate) labels: Vec<Requirement<'a>>,
    /// Requirements on `metadata.name` (the only field the scheduler supports).
    pub(crate) names: Vec<Requirement<'a>>,
    pub(crate) empty: bool,
}

/// One requirement of a term (`key operator values`).
pub(crate) struct Requirement<'a> {
    pub(crate) key: &'a str,
    pub(crate) operator: &'a str,
    pub(crate) values: Vec<&'a str>,
}

impl<'a> NodeSelection<'a> {
    pub(crate) fn of(spec: &'a Value) -> Self {
        let node_name = spec
            .get("nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        let selector = spec
            .get("nodeSelector")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
            .unwrap_or_default();
        let terms = spec
            .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
            .and_then(Value::as_array)
            .map(|terms| terms.iter().map(Term::of).collect());
        let tolerations = spec
            .get("tolerations")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Self {
            node_name,
            selector,
            terms,
            tolerations,
        }
    }

    fn admits(&self, node: &NodeFacts, nodes_have_labels: bool) -> bool {
        if let Some(name) = self.node_name {
            return !nodes_have_labels || node.name == name;
        }
        if !nodes_have_labels {
            return true;
        }
        let selector_ok = self.selector.iter().all(|(k, v)| node.labels.get(k) == *v);
        selector_ok
            && self
                .terms
                .as_ref()
                .is_none_or(|terms| terms.iter().any(|t| t.matches(node)))
            && tolerates(self.tolerations, node)
    }
}

impl<'a> Term<'a> {
    fn of(term: &'a Value) -> Self {
        let list = |key: &str| -> Vec<Requirement<'a>> {
            term.get(key)
                .and_then(Value::as_array)
                .map(|es| es.iter().map(Requirement::of).collect())
                .unwrap_or_default()
        };
        let labels = list("matchExpressions");
        let fields = list("matchFields");
        let empty = labels.is_empty() && fields.is_empty();
        // The scheduler supports no field but metadata.name; be generous with others.
        let names = fields
            .into_iter()
            .filter(|r| r.key == "metadata.name")
            .collect();
        Self {
            labels,
            names,
            empty,
        }
    }

    fn matches(&self, node: &NodeFacts) -> bool {
        !self.empty
            && self
                .labels
                .iter()
                .all(|r| r.matches(node.labels.get(r.key)))
            && self.names.iter().all(|r| r.matches(Some(&node.name)))
    }
}

impl<'a> Requirement<'a> {
    fn of(expr: &'a Value) -> Self {
        Self {
            key: expr.get("key").and_then(Value::as_str).unwrap_or_default(),
            operator: expr
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            values: expr
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| vs.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default(),
        }
    }

    pub(crate) fn matches(&self, actual: Option<&str>) -> bool {
        let as_int = |s: &str| s.parse::<i64>().ok();
        let bound = self.values.first().and_then(|v| as_int(v));
        match self.operator {
            "In" => actual.is_some_and(|a| self.values.contains(&a)),
            "NotIn" => actual.is_none_or(|a| !self.values.contains(&a)),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            "Gt" => matches!((actual.and_then(as_int), bound), (Some(a), Some(b)) if a > b),
            "Lt" => matches!((actual.and_then(as_int), bound), (Some(a), Some(b)) if a < b),
            // An operator we don't know: assume the pod may land here (the cautious answer).
            _ => true,
        }
    }
}

fn tolerates(tolerations: &[Value], node: &NodeFacts) -> bool {
    tolerates_all(tolerations, &node.taints)
}

/// True when `tolerations` tolerate every taint that keeps pods off ([`keeps_pods_off`]).
pub(crate) fn tolerates_all(tolerations: &[Value], taints: &[Taint]) -> bool {
    taints
        .iter()
        .filter(|t| keeps_pods_off(t))
        .all(|taint| tolerations.iter().any(|tol| toleration_matches(tol, taint)))
}

/// Whether a taint decides where a pod may land: a hard one (`NoSchedule`, `NoExecute`)
/// that a user or a tool put there. The taints Kubernetes sets from a node's state
/// (`node.kubernetes.io/not-ready`, `unreachable`, `unschedulable` on a cordon, the
/// pressure ones) come and go with it: a node restarting for an upgrade carries
/// `not-ready` for a few seconds, and the scheduler waits for it to go, so a pod pinned
/// there still lands there. Counting them made pods created during a node's restart
/// get the form of the other nodes (seen in e2e/journey: a pod pinned to a just-upgraded
/// node got legacy sidecars).
pub(crate) fn keeps_pods_off(t: &Taint) -> bool {
    (t.effect == "NoSchedule" || t.effect == "NoExecute")
        && !t.key.starts_with("node.kubernetes.io/")
}

fn toleration_matches(tol: &Value, taint: &Taint) -> bool {
    let get = |k: &str| tol.get(k).and_then(Value::as_str).unwrap_or_default();
    let effect_ok = get("effect").is_empty() || get("effect") == taint.effect;
    let key_ok = get("key").is_empty() || get("key") == taint.key;
    let value_ok = match get("operator") {
        "Exists" => true,
        // Equal is the default operator.
        _ => get("value") == taint.value && !get("key").is_empty(),
    };
    effect_ok && key_ok && value_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str, &str)]) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            kubelet: None,
            gate: None,
            labels: labels.iter().copied().collect(),
            taints: taints
                .iter()
                .map(|(k, v, e)| Taint {
                    key: k.to_string(),
                    value: v.to_string(),
                    effect: e.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn node_name_pins_one_node() {
        let nodes = [node("a", &[], &[]), node("b", &[], &[])];
        assert_eq!(candidates(&json!({"nodeName": "b"}), &nodes, true), vec![1]);
        assert_eq!(candidates(&json!({}), &nodes, true), vec![0, 1]);
        // Version-only knowledge can't be filtered.
        assert_eq!(
            candidates(&json!({"nodeName": "b"}), &nodes, false),
            vec![0, 1]
        );
    }

    #[test]
    fn node_selector_and_affinity() {
        let nodes = [
            node("a", &[("pool", "new"), ("zone", "1")], &[]),
            node("b", &[("pool", "old"), ("zone", "2")], &[]),
            node("c", &[("gpu", "4")], &[]),
        ];
        assert_eq!(
            candidates(&json!({"nodeSelector": {"pool": "old"}}), &nodes, true),
            vec![1]
        );
        let affinity = |terms: Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}});
        let cases = [
            (
                json!([{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["new"]}]}]),
                vec![0],
            ),
            (
                json!([{"matchExpressions": [{"key": "pool", "operator": "NotIn", "values": ["new"]}]}]),
                vec![1, 2],
            ),
            (
                json!([{"matchExpressions": [{"key": "pool", "operator": "Exists"}]}]),
                vec![0, 1],
            ),
            (
                json!([{"matchExpressions": [{"key": "pool", "operator": "DoesNotExist"}]}]),
                vec![2],
            ),
            (
                json!([{"matchExpressions": [{"key": "gpu", "operator": "Gt", "values": ["2"]}]}]),
                vec![2],
            ),
            (
                json!([{"matchExpressions": [{"key": "gpu", "operator": "Lt", "values": ["2"]}]}]),
                vec![],
            ),
            (
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]}]),
                vec![2],
            ),
            // Terms are ORed.
            (
                json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["1"]}]},
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["2"]}]}]),
                vec![0, 1],
            ),
            // Expressions within a term are ANDed.
            (
                json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["1", "2"]},
                                          {"key": "pool", "operator": "In", "values": ["old"]}]}]),
                vec![1],
            ),
            // An empty term matches nothing.
            (json!([{}]), vec![]),
        ];
        for (terms, want) in cases {
            assert_eq!(
                candidates(&affinity(terms.clone()), &nodes, true),
                want,
                "{terms}"
            );
        }
    }

    #[test]
    fn the_node_state_taints_of_kubernetes_do_not_keep_pods_off() {
        let nodes = [
            node(
                "restarting",
                &[],
                &[("node.kubernetes.io/not-ready", "", "NoSchedule")],
            ),
            node(
                "cordoned",
                &[],
                &[("node.kubernetes.io/unschedulable", "", "NoSchedule")],
            ),
            node(
                "gone",
                &[],
                &[("node.kubernetes.io/unreachable", "", "NoExecute")],
            ),
            node(
                "dedicated",
                &[],
                &[("example.com/dedicated", "", "NoSchedule")],
            ),
        ];
        assert_eq!(candidates(&json!({}), &nodes, true), vec![0, 1, 2]);
    }

    #[test]
    fn taints_keep_pods_off_unless_tolerated() {
        let nodes = [
            node("a", &[], &[("legacy", "true", "NoSchedule")]),
            node("b", &[], &[("soft", "", "PreferNoSchedule")]),
            node("c", &[], &[("dedicated", "batch", "NoExecute")]),
        ];
        assert_eq!(candidates(&json!({}), &nodes, true), vec![1]);
        let tol = |t: Value| json!({"tolerations": [t]});
        assert_eq!(
            candidates(
                &tol(json!({"key": "legacy", "operator": "Exists"})),
                &nodes,
                true
            ),
            vec![0, 1]
        );
        assert_eq!(
            candidates(
                &tol(json!({"key": "legacy", "value": "true"})),
                &nodes,
                true
            ),
            vec![0, 1]
        );
        assert_eq!(
            candidates(&tol(json!({"key": "legacy", "value": "no"})), &nodes, true),
            vec![1]
        );
        assert_eq!(
            candidates(&tol(json!({"operator": "Exists"})), &nodes, true),
            vec![0, 1, 2]
        );
        assert_eq!(
            candidates(
                &tol(
                    json!({"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoExecute"})
                ),
                &nodes,
                true
            ),
            vec![1, 2]
        );
    }
}
