//! `tandem inject`'s output, in every mode, is accepted by a real kube-apiserver
//! (server-side dry-run create), and the API server keeps what tandem wrote: the
//! native sidecar's `restartPolicy: Always`, the shim wiring, and fields unknown to
//! tandem. Needs the control plane of `e2e/`: `bash e2e/ci.sh` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.

use std::io::Write;
use std::process::{Command, Stdio};

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tandem_testcluster::{FakeNode, TestCluster};

/// Runs the real binary with `stdin`, returning stdout as JSON.
fn inject(args: &[&str], stdin: &str) -> Value {
    inject_with(args, stdin, None).0
}

/// Runs the real binary with `stdin` and, if given, a kubeconfig; returns stdout as
/// JSON and stderr.
fn inject_with(
    args: &[&str],
    stdin: &str,
    kubeconfig: Option<&std::path::Path>,
) -> (Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tandem"));
    if let Some(path) = kubeconfig {
        cmd.env("KUBECONFIG", path);
    }
    let mut child = cmd
        .args(["inject", "-f", "-", "-o", "json"])
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tandem inject {args:?}: {stderr}");
    (
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        stderr,
    )
}

fn resource(obj: &Value) -> ApiResource {
    let api_version = obj["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = obj["kind"].as_str().unwrap();
    let plural = format!("{}s", kind.to_lowercase());
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural)
}

fn items(v: Value) -> Vec<Value> {
    match v.get("items") {
        Some(Value::Array(items)) if v["kind"] == "List" => items.clone(),
        _ => vec![v],
    }
}

/// The pod spec inside any workload the examples use.
fn pod_spec(obj: &Value) -> &Value {
    match obj["kind"].as_str().unwrap() {
        "Pod" => &obj["spec"],
        "CronJob" => &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &obj["spec"]["template"]["spec"],
    }
}

async fn create(
    client: &kube::Client,
    ns: &str,
    obj: &Value,
    dry_run: bool,
) -> Result<Value, kube::Error> {
    let mut obj = obj.clone();
    obj["metadata"]["namespace"] = json!(ns);
    let ar = resource(&obj);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let pp = PostParams {
        dry_run,
        ..Default::default()
    };
    let created = api
        .create(&pp, &serde_json::from_value(obj).unwrap())
        .await?;
    Ok(serde_json::to_value(created).unwrap())
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn every_mode_is_accepted_by_the_api_server() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.unwrap();
    let ns = cluster.namespace("inject").await.unwrap();
    let version = cluster.apiserver_version().to_string();
    let examples: String = [
        "web-deployment",
        "report-cronjob",
        "db-statefulset",
        "migrate-job",
    ]
    .iter()
    .map(|f| {
        std::fs::read_to_string(format!(
            "{}/../../examples/{f}.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
            + "\n---\n"
    })
    .collect();
    for mode in ["native", "legacy", "affinity", "universal"] {
        // Twice for universal: without API server knowledge (no probes on the native
        // copy) and with it (startupProbe on the native copy).
        for known in [false, true] {
            let mut args = vec!["--mode", mode];
            if known {
                args.extend(["--apiserver-version", version.as_str()]);
            }
            for obj in items(inject(&args, &examples)) {
                if obj["kind"] == "ConfigMap" {
                    continue;
                }
                let name = obj["metadata"]["name"].clone();
                let created = create(&client, ns.name(), &obj, true)
                    .await
                    .unwrap_or_else(|e| panic!("{mode} (known={known}): {name} rejected: {e}"));
                // The API server kept every container exactly (no pruned fields).
                assert_eq!(
                    pod_spec(&created)["initContainers"]
                        .as_array()
                        .map(Vec::len),
                    pod_spec(&obj)["initContainers"].as_array().map(Vec::len),
                    "{mode} {name}"
                );
                for (sent, kept) in pod_spec(&obj)["initContainers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .zip(
                        pod_spec(&created)["initContainers"]
                            .as_array()
                            .into_iter()
                            .flatten(),
                    )
                {
                    assert_eq!(
                        sent["restartPolicy"], kept["restartPolicy"],
                        "{mode} {name}: {}",
                        sent["name"]
                    );
                    assert_eq!(sent["command"], kept["command"], "{mode} {name}");
                    assert_eq!(
                        sent.get("startupProbe").is_some(),
                        kept.get("startupProbe").is_some(),
                        "{mode} {name}"
                    );
                }
            }
        }
    }
    ns.delete().await.unwrap();
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn injected_pod_is_stored_with_unknown_fields_intact() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.unwrap();
    let ns = cluster.namespace("inject-fields").await.unwrap();
    // Fields this tandem build has no typed knowledge of, but the API server does
    // (hostUsers, resizePolicy, a sidecar's own restartPolicy-era fields), survive.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: fields\n  annotations: {tandem.dev/mode: universal}\nspec:\n  hostUsers: true\n  enableServiceLinks: false\n  containers:\n  - name: app\n    image: registry.k8s.io/pause:3.10\n    resizePolicy: [{resourceName: cpu, restartPolicy: NotRequired}]\n";
    let injected = inject(&["--apiserver-version", cluster.apiserver_version()], pod);
    let created = create(&client, ns.name(), &injected, false)
        .await
        .expect("create");
    let spec = &created["spec"];
    assert_eq!(spec["enableServiceLinks"], false);
    assert_eq!(spec["hostUsers"], true);
    assert_eq!(
        spec["containers"][1]["resizePolicy"][0]["restartPolicy"],
        "NotRequired"
    );
    assert_eq!(spec["initContainers"][1]["restartPolicy"], "Always");
    assert_eq!(spec["containers"][0]["name"], "log-shipper-legacy");
    assert!(
        created["metadata"]["annotations"]["tandem.dev/status"]
            .as_str()
            .unwrap()
            .contains("universal")
    );
    // Injecting what the API server stored changes nothing.
    let again = inject(&[], &serde_json::to_string(&created).unwrap());
    assert_eq!(again["spec"], created["spec"]);
    ns.delete().await.unwrap();
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn from_cluster_decides_from_the_nodes_a_pod_can_land_on() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let pool = tandem_testcluster::unique_name("pool");
    let old = cluster
        .create_node(
            &FakeNode::new("inject-old", "v1.27.16")
                .label("e2e.tandem.dev/pool", &pool)
                .label("tier", "old"),
        )
        .await
        .unwrap();
    let new = cluster
        .create_node(&FakeNode::new("inject-new", "v1.31.4").label("e2e.tandem.dev/pool", &pool))
        .await
        .unwrap();
    let rejecting = cluster
        .create_node(
            &FakeNode::new("inject-128", "v1.28.15")
                .label("e2e.tandem.dev/pool", &pool)
                .taint("legacy", "true", "NoSchedule"),
        )
        .await
        .unwrap();
    let pod = |selector: &str, tolerate: bool| {
        let tolerations = if tolerate {
            "  tolerations: [{key: legacy, operator: Exists}]\n"
        } else {
            ""
        };
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  nodeSelector: {{{selector}}}\n{tolerations}  containers: [{{name: app, image: app}}]\n"
        )
    };
    let kubeconfig = cluster.admin_kubeconfig();
    let status = |v: &Value| {
        v["metadata"]["annotations"]["tandem.dev/status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let run = |selector: String, tolerate: bool| {
        inject_with(
            &["--from-cluster"],
            &pod(&selector, tolerate),
            Some(&kubeconfig),
        )
    };
    let all = run(format!("e2e.tandem.dev/pool: {pool}"), false);
    let tolerating = run(format!("e2e.tandem.dev/pool: {pool}"), true);
    let only_old = run(format!("e2e.tandem.dev/pool: {pool}, tier: old"), false);
    let rejecting_name = rejecting.metadata.name.clone().unwrap();
    for node in [old, new, rejecting] {
        cluster.delete_node(&node).await.unwrap();
    }
    // Old and new kubelets, and a 1.28 node kept away by its taint: universal.
    assert!(status(&all.0).contains("universal"), "{}", all.1);
    // Tolerating the taint brings the 1.28 node in: never universal there.
    assert!(status(&tolerating.0).contains("legacy"), "{}", tolerating.1);
    assert!(tolerating.1.contains(&rejecting_name), "{}", tolerating.1);
    // Only the old pool: legacy.
    assert!(status(&only_old.0).contains("legacy"), "{}", only_old.1);
}
