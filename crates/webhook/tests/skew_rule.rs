//! The webhook decides as `tandem inject` does (issue 15): on an API server v1.37.2 whose
//! nodes include a v1.27.16 kubelet, the version-skew rule ("every kubelet is 1.34 or
//! later") is false for this cluster, and a pod matching no known node must not get
//! native sidecars because of it.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
use serde_json::{Value, json};
use tandem_core::inject::NamespaceOptIn;
use tandem_core::knowledge::ClusterKnowledge;
use tandem_core::mode::Placement;
use tandem_core::{Config, KubeVersion};
use tandem_webhook::admission::{self, Context, Outcome, PatchEncoding};

fn node(name: &str, version: &str) -> Value {
    json!({"kind": "Node", "metadata": {"name": name, "labels": {"pool": name}},
           "status": {"nodeInfo": {"kubeletVersion": version}}})
}

fn review(pod: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0b0e4d4e-1111-4222-8333-944455556666",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "batch",
            "operation": "CREATE",
            "object": pod,
            "dryRun": true
        }
    }))
    .unwrap()
}

#[test]
fn a_node_outside_the_skew_keeps_the_rule_from_deciding() {
    let config = Config::builtin();
    let objs = [node("new", "v1.37.0"), node("old", "v1.27.16")];
    let mut knowledge = ClusterKnowledge {
        nodes: ClusterKnowledge::from_node_objects(objs.iter()).unwrap(),
        nodes_have_labels: true,
        ..Default::default()
    };
    knowledge.apiserver.version = Some(KubeVersion::parse("v1.37.2").unwrap());
    let ctx = Context {
        config: &config,
        knowledge: &knowledge,
        synced: true,
        mode_override: None,
        namespace: NamespaceOptIn::Enabled,
        encoding: PatchEncoding::Base64,
    };
    let job_pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "job-abc", "namespace": "batch"},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"pool": "gpu"},
                 "containers": [{"name": "work", "image": "busybox", "command": ["true"]}]}});
    let a = admission::review(&review(job_pod.clone()), &ctx);
    assert_eq!(
        a.outcome,
        Outcome::Injected(Placement::Legacy),
        "{}",
        a.detail
    );
    assert!(
        a.detail.contains("does not hold") && a.detail.contains("v1.27.16"),
        "{}",
        a.detail
    );
    // Without the old node the rule holds, and the same pod gets native sidecars.
    let mut without_old = knowledge.clone();
    without_old.nodes.retain(|n| n.name != "old");
    let ctx = Context {
        knowledge: &without_old,
        ..ctx
    };
    let a = admission::review(&review(job_pod), &ctx);
    assert_eq!(
        a.outcome,
        Outcome::Injected(Placement::Native),
        "{}",
        a.detail
    );
}
