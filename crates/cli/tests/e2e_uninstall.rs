//! `tandem uninstall --delete` against the real kube-apiserver: what `tandem install`
//! created (in a namespace of the test's own; the cluster-wide MutatingWebhookConfiguration
//! left out so that other tests sharing the control plane are never affected) is deleted,
//! webhook configurations first and the namespace last. Needs the control plane of `e2e/`:
//! `bash e2e/ci.sh` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.

use std::process::Command;
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::Value;
use tandem_testcluster::{TestCluster, unique_name, wait_until};

fn api_for(
    client: &kube::Client,
    ar: &kube::core::ApiResource,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

async fn resource(client: &kube::Client, obj: &Value) -> kube::core::ApiResource {
    let api_version = obj["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, obj["kind"].as_str().unwrap());
    kube::discovery::pinned_kind(client, &gvk).await.unwrap().0
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_uninstall_deletes_everything_install_made_in_order() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let ns = unique_name("tu-uninstall");
    let rendered = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["install", "--namespace", &ns])
        .output()
        .expect("tandem install");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let docs = tandem_core::manifest::parse_stream(&String::from_utf8_lossy(&rendered.stdout))
        .expect("install's YAML");
    let mut created = Vec::new();
    // Namespace first; no webhook configuration, no CRDs (cluster-wide, shared).
    let mut objs: Vec<Value> = docs.into_iter().map(|d| d.value).collect();
    objs.sort_by_key(|o| o["kind"] != "Namespace");
    for o in objs {
        let kind = o["kind"].as_str().unwrap_or_default().to_string();
        if kind.ends_with("WebhookConfiguration") || kind == "CustomResourceDefinition" {
            continue;
        }
        let ar = resource(&client, &o).await;
        let obj_ns = o["metadata"]["namespace"].as_str().map(str::to_string);
        let api = api_for(&client, &ar, obj_ns.as_deref());
        let name = o["metadata"]["name"].as_str().unwrap().to_string();
        api.patch(
            &name,
            &PatchParams::apply("tandem-e2e").force(),
            &Patch::Apply(&o),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind}: {e}"));
        created.push((
            ar,
            obj_ns,
            o["metadata"]["name"].as_str().unwrap().to_string(),
            kind,
        ));
    }
    assert!(created.len() >= 8, "{} objects", created.len());

    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "uninstall",
            "--delete",
            "--settle",
            "1s",
            "--namespace",
            &ns,
        ])
        .arg("--kubeconfig")
        .arg(cluster.admin_kubeconfig())
        .output()
        .expect("tandem uninstall");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("MutatingWebhookConfiguration tandem:"),
        "{stdout}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with(&format!("Namespace {ns}: deleted")),
        "{stdout}"
    );
    for (_, obj_ns, name, kind) in &created {
        let what = match obj_ns {
            Some(n) => format!("{kind} {n}/{name}: deleted"),
            None => format!("{kind} {name}: deleted"),
        };
        assert!(stdout.contains(&what), "{what} missing from\n{stdout}");
    }
    // Gone (namespaced objects go with their namespace; cluster-wide ones at once).
    for (ar, obj_ns, name, kind) in &created {
        let api = api_for(&client, ar, obj_ns.as_deref());
        wait_until(
            &format!("{kind} {name} gone"),
            Duration::from_secs(60),
            || async {
                Ok(match api.get_opt(name).await? {
                    None => true,
                    Some(o) => o.metadata.deletion_timestamp.is_some(),
                })
            },
        )
        .await
        .expect("deleted");
    }
    // A second run finds nothing and still succeeds.
    let again = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "uninstall",
            "--delete",
            "--settle",
            "0s",
            "--namespace",
            &ns,
            "--keep-namespace",
        ])
        .arg("--kubeconfig")
        .arg(cluster.admin_kubeconfig())
        .output()
        .expect("tandem uninstall");
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{text}");
    assert!(
        text.contains("ClusterRole tandem-webhook: not found"),
        "{text}"
    );
}
