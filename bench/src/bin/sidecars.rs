//! `sidecars-bench`: the webhook's per-pod work (selection + injection, the pure part of
//! admission) with 50 sidecar objects loaded, against the config file alone, and the
//! memory the catalog takes.
//!
//! Run: `cargo run --release -p tandem-bench --bin sidecars-bench -- [OBJECTS=50] [ROUNDS=20000]`

use std::time::Instant;

use serde_json::{Value, json};
use tandem_core::catalog::{Catalog, SidecarObject};
use tandem_core::inject::{Injector, NamespaceOptIn, PodOutcome};
use tandem_core::{ClusterKnowledge, Config};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn object(i: usize) -> Value {
    // Half ClusterSidecars, half Sidecars of the pod's namespace; three select the pod
    // (one by `podSelector: {}`, one by label, one by request), the rest select others.
    let cluster = i.is_multiple_of(2);
    let selector = match i {
        0 => json!({}),
        1 => json!({"matchLabels": {"app": "web"}}),
        _ => {
            json!({"matchExpressions": [{"key": "app", "operator": "In", "values": [format!("svc-{i}"), "other"]}]})
        }
    };
    let mut meta = json!({"name": format!("sidecar-{i}"), "generation": 1});
    if !cluster {
        meta["namespace"] = json!("shop");
    }
    json!({
        "apiVersion": "tandem.dev/v1alpha1",
        "kind": if cluster { "ClusterSidecar" } else { "Sidecar" },
        "metadata": meta,
        "spec": {
            "podSelector": selector,
            "order": i % 7,
            "containers": [{
                "name": format!("agent-{i}"), "image": format!("registry.example.com/agent:{i}"),
                "command": ["/agent"], "args": ["--port=15000"],
                "ports": [{"containerPort": 15000 + i, "name": "admin"}],
                "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
                "startupProbe": {"httpGet": {"path": "/ready", "port": 15000 + i}},
                "volumeMounts": [{"name": format!("agent-{i}-data"), "mountPath": "/data"}]
            }],
            "volumes": [{"name": format!("agent-{i}-data"), "emptyDir": {}}]
        }
    })
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-7d9f-", "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": "7d9f"},
            "annotations": {"tandem.dev/sidecars": "sidecar-2"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f", "uid": "1", "controller": true}]},
        "spec": {
            "containers": [
                {"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}],
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}},
                {"name": "worker", "image": "worker:1"},
                {"name": "metrics", "image": "exporter:1"}
            ],
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]
        }
    })
}

/// CPU time of this thread in ns (`/proc/thread-self/schedstat`): on a machine shared
/// with builds, wall time mostly measures the others.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn time(label: &str, rounds: usize, mut f: impl FnMut() -> usize) {
    let mut best = f64::MAX;
    let mut best_cpu = f64::MAX;
    let mut sidecars = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let cpu = cpu_ns();
        for _ in 0..rounds {
            sidecars = f();
        }
        best_cpu = best_cpu.min(cpu_ns().saturating_sub(cpu) as f64 / 1e3 / rounds as f64);
        best = best.min(start.elapsed().as_secs_f64() / rounds as f64);
    }
    println!(
        "{label}: {best_cpu:.1} µs CPU per pod ({:.1} µs wall; {sidecars} sidecars injected)",
        best * 1e6
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let config = Config::builtin();
    let knowledge = ClusterKnowledge::default();
    let injector = Injector {
        config: &config,
        knowledge: &knowledge,
        mode_override: Some(tandem_core::Mode::Native),
    };
    let mut plain = pod();
    plain["metadata"]["annotations"] = json!({});
    let requesting = pod();
    let count = |o: PodOutcome| match o {
        PodOutcome::Injected(i) => i.sidecars.len(),
        PodOutcome::Skipped { .. } => 0,
    };

    let before = rss_kib();
    let objects: Vec<Value> = (0..n).map(object).collect();
    let start = Instant::now();
    let mut catalog = Catalog::build(objects.iter().map(SidecarObject::from_value));
    catalog.namespaces.insert("shop".into(), Default::default());
    let build = start.elapsed();
    drop(objects);
    let after = rss_kib();
    println!(
        "catalog of {n} objects: built in {:.2} ms (what the webhook does after each change), {} KiB resident",
        build.as_secs_f64() * 1e3,
        after.saturating_sub(before)
    );

    time("config file only (before this feature)", rounds, || {
        count(
            injector
                .inject_pod(&plain, NamespaceOptIn::Enabled)
                .unwrap_or(PodOutcome::Skipped {
                    reason: String::new(),
                }),
        )
    });
    let mut unselected = plain.clone();
    unselected["metadata"]["labels"] = json!({"app": "db"});
    let mut without_objects = catalog.clone();
    without_objects.cluster.retain(|k, _| k != "sidecar-0");
    time(
        &format!("{n} objects loaded, none selects the pod"),
        rounds,
        || {
            count(
                injector
                    .inject_pod_with(
                        &unselected,
                        NamespaceOptIn::Enabled,
                        Some("shop"),
                        Some(&without_objects),
                    )
                    .unwrap_or(PodOutcome::Skipped {
                        reason: String::new(),
                    }),
            )
        },
    );
    let reserved = Default::default();
    time(
        &format!("  of which selection alone ({n} objects)"),
        rounds,
        || {
            without_objects
                .select(unselected.get("metadata"), "shop", &reserved)
                .map(|s| s.objects.len())
                .unwrap_or(0)
        },
    );
    time(&format!("{n} objects loaded, 3 selected"), rounds, || {
        count(
            injector
                .inject_pod_with(
                    &requesting,
                    NamespaceOptIn::Enabled,
                    Some("shop"),
                    Some(&catalog),
                )
                .unwrap_or(PodOutcome::Skipped {
                    reason: String::new(),
                }),
        )
    });
}
