//! Where the time goes on the webhook's request path, in process (no TLS, no HTTP):
//! `admission::review` for the load benchmark's AdmissionReview with N nodes known
//! (the same Node fixtures as `webhook_load nodes N`), in `auto` and `native` mode, next
//! to decoding the review alone. Figures in `bench/README.md` ("webhook").
//!
//! ```text
//! cargo bench -p tandem-webhook --bench request_path -- [NODES=10000] [ITERATIONS=2000]
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use serde_json::{Value, json};
use tandem_core::{ClusterKnowledge, Config, Mode, NamespaceOptIn};
use tandem_webhook::admission::{self, Context, PatchEncoding};

fn node(i: usize) -> Value {
    let versions = [
        "v1.27.16", "v1.28.15", "v1.30.8", "v1.32.4", "v1.33.1", "v1.34.2",
    ];
    let zone = ["a", "b", "c"][i % 3];
    let mut n = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": format!("bench-node-{i:05}"),
            "labels": {
                "kubernetes.io/hostname": format!("bench-node-{i:05}"),
                "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "m6i.2xlarge",
                "topology.kubernetes.io/region": "eu-west-1",
                "topology.kubernetes.io/zone": format!("eu-west-1{zone}"),
                "pool": format!("pool-{}", i % 20),
                "tandem.dev/e2e": "true"
            }
        },
        "status": {"nodeInfo": {"kubeletVersion": versions[i % versions.len()]}}
    });
    if i.is_multiple_of(10) {
        n["spec"] =
            json!({"taints": [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]});
    }
    n
}

fn percentiles(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    format!(
        "p50 {:>7.1} us  p99 {:>7.1} us  mean {:>7.1} us",
        p(0.5),
        p(0.99),
        v.iter().sum::<f64>() / v.len() as f64
    )
}

fn time(iterations: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..iterations / 10 {
        f();
    }
    (0..iterations)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(10_000);
    let iterations = args.get(1).copied().unwrap_or(2_000);
    let body = support::review(support::realistic_pod(), false);
    let config = Config::builtin();
    let values: Vec<Value> = (0..n).map(node).collect();
    let knowledge = ClusterKnowledge {
        nodes: values
            .iter()
            .map(tandem_webhook::live::node_facts)
            .collect(),
        nodes_have_labels: true,
        ..Default::default()
    };
    drop(values);
    let empty = ClusterKnowledge::default();
    println!(
        "AdmissionReview {} bytes, {n} nodes, {iterations} iterations",
        body.len()
    );
    println!(
        "decode the review (serde_json::Value) {}",
        percentiles(time(iterations, || {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            std::hint::black_box(v);
        }))
    );
    for (label, mode, k) in [
        ("review, native, no nodes ", Mode::Native, &empty),
        ("review, native, N nodes  ", Mode::Native, &knowledge),
        ("review, auto, N nodes    ", Mode::Auto, &knowledge),
    ] {
        let ctx = Context {
            config: &config,
            knowledge: k,
            synced: true,
            mode_override: Some(mode),
            namespace: NamespaceOptIn::Enabled,
            encoding: PatchEncoding::Base64,
        };
        let a = admission::review(&body, &ctx);
        let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        println!(
            "{label} {}  -> {}",
            percentiles(time(iterations, || {
                std::hint::black_box(admission::review(&body, &ctx));
            })),
            v["response"]["auditAnnotations"]["placement"]
        );
    }
}
