//! `tandem adopt`'s output is accepted by a real kube-apiserver (server-side dry-run
//! create) and stored as sent: the moved sidecar is a restartable init container with
//! its ports, probes and hooks; and `tandem adopt --from-cluster --report` inventories
//! real workloads against real Node objects. Needs the control plane of `e2e/`:
//! `bash e2e/ci.sh` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.

use std::process::{Command, Stdio};

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tandem_testcluster::{FakeNode, TestCluster};

/// Runs `tandem adopt ARGS` from the repository root; returns stdout and stderr.
fn adopt(args: &[&str], kubeconfig: Option<&std::path::Path>) -> (Vec<u8>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tandem"));
    if let Some(path) = kubeconfig {
        cmd.env("KUBECONFIG", path);
    }
    let out = cmd
        .arg("adopt")
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tandem adopt {args:?}: {stderr}");
    (out.stdout, stderr)
}

fn resource(obj: &Value) -> ApiResource {
    let api_version = obj["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = obj["kind"].as_str().unwrap();
    let plural = format!("{}s", kind.to_lowercase());
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural)
}

fn pod_spec(obj: &Value) -> &Value {
    match obj["kind"].as_str().unwrap() {
        "Pod" => &obj["spec"],
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
async fn adopted_examples_pass_a_server_side_dry_run() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.unwrap();
    let ns = cluster.namespace("adopt").await.unwrap();
    let version = cluster.apiserver_version().to_string();
    for strip in [false, true] {
        let mut args = vec![
            "-f",
            "examples/adopt/",
            "-o",
            "json",
            "--apiserver-version",
            version.as_str(),
            "--kubelet-version",
            version.as_str(),
        ];
        if strip {
            args.push("--strip-workarounds");
        }
        let (stdout, stderr) = adopt(&args, None);
        let list: Value = serde_json::from_slice(&stdout).unwrap();
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 4, "{stderr}");
        for obj in items {
            let name = obj["metadata"]["name"].as_str().unwrap();
            let created = create(&client, ns.name(), obj, true)
                .await
                .unwrap_or_else(|e| panic!("strip={strip}: {name} rejected: {e}\n{stderr}"));
            let sent = pod_spec(obj);
            let kept = pod_spec(&created);
            // Exactly one sidecar moved per example, kept as a restartable init container.
            let natives: Vec<&Value> = kept["initContainers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["restartPolicy"] == "Always")
                .collect();
            assert_eq!(natives.len(), 1, "{name}: {kept}");
            let native = natives[0];
            let sent_native = sent["initContainers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == native["name"])
                .unwrap();
            // Ports, probes and hooks the API server allows there, stored as sent.
            for key in [
                "ports",
                "readinessProbe",
                "livenessProbe",
                "lifecycle",
                "command",
                "args",
            ] {
                assert_eq!(
                    sent_native.get(key).is_some(),
                    native.get(key).is_some(),
                    "{name}: {key}"
                );
            }
            // The API server defaults `protocol`; every port sent is kept.
            let ports = |c: &Value| -> Vec<(Value, Value)> {
                c["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| (p["name"].clone(), p["containerPort"].clone()))
                    .collect()
            };
            assert_eq!(ports(sent_native), ports(native), "{name}");
            assert_eq!(
                sent["containers"].as_array().unwrap().len(),
                kept["containers"].as_array().unwrap().len(),
                "{name}"
            );
        }
    }
    ns.delete().await.unwrap();
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn report_inventories_real_workloads_against_real_nodes() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.unwrap();
    let ns = cluster.namespace("adopt-report").await.unwrap();
    let pool = tandem_testcluster::unique_name("pool");
    let new = cluster
        .create_node(
            &FakeNode::new("adopt-new", "v1.31.4")
                .label("e2e.tandem.dev/adopt-pool", &format!("{pool}-new")),
        )
        .await
        .unwrap();
    let old = cluster
        .create_node(
            &FakeNode::new("adopt-old", "v1.27.16")
                .label("e2e.tandem.dev/adopt-pool", &format!("{pool}-old")),
        )
        .await
        .unwrap();
    let load = |file: &str| -> Value {
        let text = std::fs::read_to_string(format!(
            "{}/../../examples/adopt/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        tandem_core::manifest::parse_stream(&text).unwrap()[0]
            .value
            .clone()
    };
    let mut istio = load("istio-deployment.yaml");
    istio["spec"]["template"]["spec"]["nodeSelector"] =
        json!({"e2e.tandem.dev/adopt-pool": format!("{pool}-new")});
    let mut job = load("cloudsql-job.yaml");
    job["spec"]["suspend"] = json!(true);
    job["spec"]["template"]["spec"]["nodeSelector"] =
        json!({"e2e.tandem.dev/adopt-pool": format!("{pool}-old")});
    create(&client, ns.name(), &istio, false).await.unwrap();
    create(&client, ns.name(), &job, false).await.unwrap();

    let kubeconfig = cluster.admin_kubeconfig();
    let (stdout, stderr) = adopt(
        &["--from-cluster", "--report", "-o", "json"],
        Some(&kubeconfig),
    );
    let text_out = adopt(&["--from-cluster", "--report"], Some(&kubeconfig)).0;
    for node in [new, old] {
        cluster.delete_node(&node).await.unwrap();
    }
    let inv: Value = serde_json::from_slice(&stdout).unwrap();
    let mine: Vec<&Value> = inv["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["namespace"] == ns.name())
        .collect();
    assert_eq!(mine.len(), 2, "{inv:#}\n{stderr}");
    let by = |kind: &str| mine.iter().find(|w| w["kind"] == kind).unwrap();
    assert_eq!(by("Deployment")["verdict"], "movable", "{inv:#}");
    assert_eq!(by("Job")["verdict"], "blocked", "{inv:#}");
    assert!(
        by("Job")["reasons"].to_string().contains("adopt-old"),
        "blocked by the old node, named: {inv:#}"
    );
    assert!(
        by("Job")["terminationWorkarounds"]
            .to_string()
            .contains("kubexit"),
        "{inv:#}"
    );
    let text_out = String::from_utf8(text_out).unwrap();
    assert!(
        text_out.contains(&format!(
            "movable Deployment {}/reviews: istio-proxy",
            ns.name()
        )),
        "{text_out}"
    );
    ns.delete().await.unwrap();
}
