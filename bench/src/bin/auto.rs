//! `auto-bench`: the cost of one `auto` decision (the webhook's per-pod work) as the
//! number of candidate nodes grows.
//!
//! Run: `cargo run --release -p tandem-bench --bin auto-bench -- [NODES=5000]`

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;
use tandem_core::inject::{Injector, NamespaceOptIn};
use tandem_core::knowledge::{ClusterKnowledge, NodeFacts};
use tandem_core::{Config, KubeVersion};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    // A realistic mix: mostly current kubelets, one old pool, labels like a cloud's.
    let nodes = (0..n)
        .map(|i| {
            let version = if i % 10 == 0 {
                "v1.27.16-eks-a737599"
            } else {
                "v1.31.4-eks-036c24b"
            };
            let labels: BTreeMap<String, String> = [
                (
                    "kubernetes.io/hostname",
                    format!("ip-10-0-{}-{}", i / 250, i % 250),
                ),
                ("kubernetes.io/os", "linux".into()),
                ("kubernetes.io/arch", "amd64".into()),
                (
                    "topology.kubernetes.io/zone",
                    format!("us-east-1{}", ["a", "b", "c"][i % 3]),
                ),
                ("node.kubernetes.io/instance-type", "m7i.2xlarge".into()),
                (
                    "pool",
                    if i % 10 == 0 {
                        "legacy".into()
                    } else {
                        "general".into()
                    },
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            let mut node = NodeFacts::from_version(
                KubeVersion::parse(version).unwrap_or(KubeVersion::new(1, 31)),
            );
            node.name = format!("node-{i}");
            node.labels = labels.into();
            node
        })
        .collect();
    let knowledge = ClusterKnowledge {
        nodes,
        nodes_have_labels: true,
        ..Default::default()
    };
    // The index is built once per change of the nodes (the webhook does it when it
    // publishes a snapshot), not per pod: time it apart.
    let t = Instant::now();
    let index_len = knowledge.node_index().len();
    let index_time = t.elapsed();
    println!(
        "auto-bench: index of {index_len} nodes built in {index_time:?} (once per node change)"
    );
    let config = Config::builtin();
    let injector = Injector {
        config: &config,
        knowledge: &knowledge,
        mode_override: None,
    };
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-7d9f", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a", "us-east-1b"]}]}
            ]}}},
            "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]
        }
    });
    let rounds = 2000;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let out = injector.inject_pod(&pod, NamespaceOptIn::Enabled);
        times.push(t.elapsed());
        assert!(out.is_ok());
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "auto-bench: {n} nodes, {rounds} decisions: p50 {:?}, p99 {:?}, max {:?}",
        pct(0.5),
        pct(0.99),
        times[times.len() - 1]
    );
}
