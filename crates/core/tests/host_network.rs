//! Host-network pods (issue 15): the API server makes every `containerPort` of a
//! `hostNetwork: true` pod a `hostPort`, and the scheduler counts the host ports of
//! regular and restartable init containers. Injecting a sidecar port into two
//! host-network DaemonSets (node-exporter and filebeat shapes) must not leave one of
//! them unschedulable on every node.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
use std::collections::BTreeSet;

use serde_json::{Value, json};
use tandem_core::config::Config;
use tandem_core::inject::{Injector, PodOutcome};
use tandem_core::knowledge::ClusterKnowledge;
use tandem_core::mode::Mode;

fn config(extra: &str) -> Config {
    Config::from_yaml(&format!(
        r#"
{extra}
sidecars:
  - name: log-shipper
    image: fluent/fluent-bit:3.1
    command: ["/fluent-bit/bin/fluent-bit"]
    ports: [{{name: http, containerPort: 2020}}]
    readinessProbe:
      httpGet: {{path: /api/v1/health, port: http}}
"#
    ))
    .unwrap()
}

fn node_exporter() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
           "metadata": {"name": "node-exporter", "namespace": "monitoring"},
           "spec": {"selector": {"matchLabels": {"app": "node-exporter"}},
                    "template": {"metadata": {"labels": {"app": "node-exporter"}},
                                 "spec": {"hostNetwork": true, "hostPID": true,
                                          "containers": [{"name": "node-exporter",
                                                          "image": "quay.io/prometheus/node-exporter:v1.8.2",
                                                          "args": ["--path.rootfs=/host"],
                                                          "ports": [{"name": "metrics", "containerPort": 9100, "hostPort": 9100}]}]}}}})
}

fn filebeat() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
           "metadata": {"name": "filebeat", "namespace": "kube-system"},
           "spec": {"selector": {"matchLabels": {"k8s-app": "filebeat"}},
                    "template": {"metadata": {"labels": {"k8s-app": "filebeat"}},
                                 "spec": {"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet",
                                          "containers": [{"name": "filebeat",
                                                          "image": "docker.elastic.co/beats/filebeat:8.15.0",
                                                          "args": ["-c", "/etc/filebeat.yml", "-e"]}]}}}})
}

fn inject(cfg: &Config, mode: Mode, doc: &Value) -> Result<(Value, Vec<String>), String> {
    let k = ClusterKnowledge::default();
    let injector = Injector {
        config: cfg,
        knowledge: &k,
        mode_override: Some(mode),
    };
    let out = injector.inject_document(doc).map_err(|e| e.to_string())?;
    let mut warnings = Vec::new();
    for (_, o) in &out.pods {
        if let PodOutcome::Injected(i) = o {
            warnings.extend(i.decision.warnings.clone());
        }
    }
    let mut doc = doc.clone();
    json_patch::patch(&mut doc, &out.patch).unwrap();
    Ok((doc, warnings))
}

/// The host ports the scheduler counts for a pod, as the API server defaults them.
fn host_ports(doc: &Value) -> BTreeSet<(u64, String)> {
    let spec = &doc["spec"]["template"]["spec"];
    let host_network = spec["hostNetwork"] == true;
    let restartable = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["restartPolicy"] == "Always");
    let regular = spec["containers"].as_array().into_iter().flatten();
    let mut out = BTreeSet::new();
    for c in restartable.chain(regular) {
        for p in c["ports"].as_array().into_iter().flatten() {
            let proto = p["protocol"].as_str().unwrap_or("TCP").to_string();
            let host = match p.get("hostPort").and_then(Value::as_u64) {
                Some(h) if h > 0 => h,
                _ if host_network => p["containerPort"].as_u64().unwrap(),
                _ => continue,
            };
            out.insert((host, proto));
        }
    }
    out
}

fn sidecars(doc: &Value) -> Vec<&Value> {
    let spec = &doc["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .filter(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("log-shipper"))
        })
        .collect()
}

#[test]
fn two_host_network_daemonsets_still_fit_on_one_node() {
    let cfg = config("");
    for mode in [Mode::Native, Mode::Legacy, Mode::Universal, Mode::Affinity] {
        let (a, wa) = inject(&cfg, mode, &node_exporter()).unwrap();
        let (b, wb) = inject(&cfg, mode, &filebeat()).unwrap();
        let (pa, pb) = (host_ports(&a), host_ports(&b));
        assert!(
            pa.is_disjoint(&pb),
            "{mode:?}: node-exporter {pa:?} and filebeat {pb:?} share a host port"
        );
        assert_eq!(pa, BTreeSet::from([(9100, "TCP".to_string())]), "{mode:?}");
        assert!(pb.is_empty(), "{mode:?}: {pb:?}");
        for w in [&wa, &wb] {
            assert!(
                w.iter()
                    .any(|w| w.contains("hostNetwork pod") && w.contains("2020/TCP")),
                "{mode:?}: {w:?}"
            );
        }
        // The probe that named the dropped port now carries its number.
        for s in sidecars(&a) {
            if let Some(port) = s.pointer("/readinessProbe/httpGet/port") {
                assert_eq!(port, 2020, "{mode:?}: {s}");
            }
        }
    }
}

#[test]
fn refuse_and_keep_by_config() {
    let err = inject(
        &config("hostNetworkPorts: refuse"),
        Mode::Native,
        &filebeat(),
    )
    .unwrap_err();
    assert!(
        err.contains("DaemonSet kube-system/filebeat")
            && err.contains("spec.template.spec.hostNetwork")
            && err.contains("2020/TCP"),
        "{err}"
    );
    let (doc, w) = inject(&config("hostNetworkPorts: keep"), Mode::Native, &filebeat()).unwrap();
    assert_eq!(
        host_ports(&doc),
        BTreeSet::from([(2020, "TCP".to_string())])
    );
    assert!(w.iter().any(|w| w.contains("kept")), "{w:?}");
    assert!(Config::from_yaml("hostNetworkPorts: sometimes\nsidecars: []").is_err());
}

#[test]
fn pods_on_the_pod_network_keep_their_sidecar_ports() {
    let mut ds = filebeat();
    ds["spec"]["template"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("hostNetwork");
    let (doc, w) = inject(&config(""), Mode::Native, &ds).unwrap();
    assert_eq!(sidecars(&doc)[0]["ports"][0]["containerPort"], 2020);
    assert!(!w.iter().any(|w| w.contains("hostNetwork")), "{w:?}");
}
