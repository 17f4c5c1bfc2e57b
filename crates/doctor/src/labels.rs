//! `tandem label-nodes`, pure part: the label and evidence annotation a node should
//! carry, and the merge patch (labels and annotations only) that gets it there.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};
use tandem_core::KubeVersion;
use tandem_core::compat::{self, KubeletBehaviour};
use tandem_core::metrics_text::GateReading;
use tandem_core::names::{NODE_EVIDENCE_ANNOTATION, NODE_LABEL};

/// What a node's label and annotation should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// `"true"` or `"false"`.
    pub value: &'static str,
    /// The evidence annotation's text.
    pub evidence: String,
}

/// The label a node should carry, from its kubelet version and (if read) its gate
/// metric; `None` when nothing is known (the node is then left alone).
pub fn desired(kubelet: Option<&KubeVersion>, metric: Option<&GateReading>) -> Option<Desired> {
    let verdict = compat::kubelet(kubelet, metric.map(|r| r.enabled));
    let value = match verdict.behaviour {
        KubeletBehaviour::RunsSidecars => "true",
        KubeletBehaviour::IgnoresField | KubeletBehaviour::RejectsPod => "false",
        KubeletBehaviour::Unknown => return None,
    };
    let mut evidence = format!("{}: {}", verdict.behaviour, verdict.why);
    if let Some(r) = metric {
        evidence.push_str(&format!("; metric {}", r.line));
    }
    Some(Desired { value, evidence })
}

/// One node's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The node.
    pub node: String,
    /// The label's value before (`None`: unset).
    pub from: Option<String>,
    /// The label's value after.
    pub to: String,
    /// The evidence annotation after.
    pub evidence: String,
}

/// The change a node needs, if any.
pub fn plan(
    node: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    want: &Desired,
) -> Option<Change> {
    let from = labels.get(NODE_LABEL).cloned();
    let same = from.as_deref() == Some(want.value)
        && annotations.get(NODE_EVIDENCE_ANNOTATION) == Some(&want.evidence);
    (!same).then(|| Change {
        node: node.to_string(),
        from,
        to: want.value.to_string(),
        evidence: want.evidence.clone(),
    })
}

/// The JSON merge patch for a change: only our label and our annotation.
pub fn merge_patch(c: &Change) -> Value {
    json!({"metadata": {
        "labels": {NODE_LABEL: c.to},
        "annotations": {NODE_EVIDENCE_ANNOTATION: c.evidence},
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KubeVersion {
        KubeVersion::parse(s).unwrap()
    }

    fn reading(on: bool) -> GateReading {
        GateReading {
            enabled: on,
            stage: "BETA".into(),
            line: format!(
                "kubernetes_feature_enabled{{name=\"SidecarContainers\",stage=\"BETA\"}} {}",
                u8::from(on)
            ),
        }
    }

    #[test]
    fn label_values() {
        let cases: &[(&str, Option<bool>, Option<&str>)] = &[
            ("v1.27.9", None, Some("false")),
            ("v1.28.3", None, Some("false")),
            ("v1.28.3", Some(true), Some("true")),
            ("v1.29.0", None, Some("true")),
            ("v1.30.2-eks-1", Some(false), Some("false")),
            ("v1.35.0", None, Some("true")),
        ];
        for (ver, gate, want) in cases {
            let r = gate.map(reading);
            let d = desired(Some(&v(ver)), r.as_ref());
            assert_eq!(d.as_ref().map(|d| d.value), *want, "{ver} {gate:?}");
            let d = d.unwrap();
            assert!(d.evidence.contains(ver), "{}", d.evidence);
            if gate.is_some() {
                assert!(
                    d.evidence.contains("metric kubernetes_feature_enabled"),
                    "{}",
                    d.evidence
                );
            }
        }
        assert!(desired(None, None).is_none());
        assert_eq!(desired(None, Some(&reading(true))).unwrap().value, "true");
    }

    #[test]
    fn plans_only_real_changes() {
        let want = desired(Some(&v("v1.29.0")), None).unwrap();
        let empty = BTreeMap::new();
        let c = plan("n1", &empty, &empty, &want).unwrap();
        assert_eq!((c.from.as_deref(), c.to.as_str()), (None, "true"));
        let labels = BTreeMap::from([
            (NODE_LABEL.to_string(), "true".to_string()),
            ("other".into(), "x".into()),
        ]);
        let ann = BTreeMap::from([(NODE_EVIDENCE_ANNOTATION.to_string(), want.evidence.clone())]);
        assert!(plan("n1", &labels, &ann, &want).is_none());
        // A kubelet upgrade flips it.
        let old = desired(Some(&v("v1.27.0")), None).unwrap();
        let c = plan("n1", &labels, &ann, &old).unwrap();
        assert_eq!((c.from.as_deref(), c.to.as_str()), (Some("true"), "false"));
        // The patch touches only our keys.
        let p = merge_patch(&c);
        assert_eq!(p["metadata"]["labels"].as_object().unwrap().len(), 1);
        assert_eq!(p["metadata"]["labels"][NODE_LABEL], "false");
        assert_eq!(p["metadata"]["annotations"].as_object().unwrap().len(), 1);
        assert!(p.get("spec").is_none());
    }
}
