//! End-to-end: adopt mode at admission. A test webhook earlier in the chain (another
//! injector, as Istio's was before native sidecars) appends `istio-proxy` as a regular
//! container; tandem's adopt webhook (registered as `tandem install --adopt` renders
//! it, `reinvocationPolicy: IfNeeded`) moves it to a native sidecar where the pod's
//! nodes run native sidecars, and leaves it where they don't.
//!
//! Run: `bash e2e/ci.sh` brings a control plane up; then
//! `TANDEM_E2E_NO_START=1 cargo test -p tandem-webhook --test e2e_adopt_webhook -- --ignored --test-threads=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tandem_core::Config;
use tandem_e2e::webhook::TestWebhook;
use tandem_testcluster::{FakeNode, TestCluster, unique_name, wait_until};
use tandem_webhook::install::{self, InstallArgs};
use tandem_webhook::live::LiveKnowledge;
use tandem_webhook::{ServeOptions, Webhook};

/// tandem's adopt webhooks only, as `tandem install --adopt` renders them, pointed at
/// the in-process server and narrowed to `ns`.
fn adopt_registration(name: &str, hook: &Webhook, ns: &str) -> MutatingWebhookConfiguration {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: InstallArgs,
    }
    let args = Cli::parse_from(["install", "--adopt"]).args;
    let mut mwc = install::objects(&args)
        .unwrap()
        .into_iter()
        .find(|o| o["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    mwc["metadata"]["name"] = json!(name);
    mwc["metadata"]["labels"]["tandem.dev/e2e"] = json!("true");
    let ca = base64::engine::general_purpose::STANDARD.encode(hook.ca_pem().unwrap());
    let hooks: Vec<Value> = mwc["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["name"].as_str().unwrap().contains("adopt"))
        .cloned()
        .map(|mut h| {
            let path = h["clientConfig"]["service"]["path"]
                .as_str()
                .unwrap()
                .to_string();
            h["clientConfig"] = json!({
                "url": format!("https://127.0.0.1:{}{path}", hook.addr().port()),
                "caBundle": ca,
            });
            h["namespaceSelector"]["matchExpressions"]
                .as_array_mut()
                .unwrap()
                .push(
                    json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]}),
                );
            h
        })
        .collect();
    assert_eq!(hooks.len(), 2);
    mwc["webhooks"] = Value::Array(hooks);
    serde_json::from_value(mwc).unwrap()
}

/// The other injector: appends a legacy `istio-proxy`, once.
fn injector_registration(name: &str, hook: &TestWebhook, ns: &str) -> MutatingWebhookConfiguration {
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"tandem.dev/e2e": "true"}},
        "webhooks": [{
            "name": "sidecar-injector.mesh.example.com",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "clientConfig": {"url": hook.url(), "caBundle": k8s_openapi::ByteString(hook.ca_pem().as_bytes().to_vec())},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
        }]
    }))
    .unwrap()
}

fn inject_istio_proxy(obj: &DynamicObject) -> json_patch::Patch {
    let has = obj.data["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["name"] == "istio-proxy");
    if has {
        return json_patch::Patch(Vec::new());
    }
    serde_json::from_value(
        json!([{"op": "add", "path": "/spec/containers/-", "value": {
            "name": "istio-proxy",
            "image": "docker.io/istio/proxyv2:1.24.0",
            "args": ["proxy", "sidecar"],
            "ports": [{"containerPort": 15090, "name": "http-envoy-prom"}],
            "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}},
        }}]),
    )
    .unwrap()
}

fn pod(name: &str, pool: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"e2e.tandem.dev/adopt-pool": pool},
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]
        }
    }))
    .unwrap()
}

fn names(p: &DynamicObject, key: &str) -> Vec<String> {
    p.data["spec"][key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

async fn register(client: &Client, mwc: &MutatingWebhookConfiguration) -> String {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    api.create(&PostParams::default(), mwc)
        .await
        .unwrap()
        .metadata
        .name
        .unwrap()
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_adopt_converts_a_sidecar_added_by_an_earlier_webhook() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.unwrap();
    let ns = cluster.namespace("adopt-hook").await.unwrap();
    let pool = unique_name("p");
    let new = cluster
        .create_node(
            &FakeNode::new("adopt-hook-new", "v1.31.4")
                .label("e2e.tandem.dev/adopt-pool", &format!("{pool}-new")),
        )
        .await
        .unwrap();
    let old = cluster
        .create_node(
            &FakeNode::new("adopt-hook-old", "v1.27.16")
                .label("e2e.tandem.dev/adopt-pool", &format!("{pool}-old")),
        )
        .await
        .unwrap();

    let mut opts = ServeOptions::standalone(Config::builtin(), None);
    opts.listen = "127.0.0.1:0".parse().unwrap();
    opts.knowledge = LiveKnowledge::watch(client.clone(), Duration::from_secs(2));
    let tandem = Webhook::start(opts).await.expect("start webhook");
    let injector = TestWebhook::start(Arc::new(inject_istio_proxy))
        .await
        .unwrap();
    // Name order: the injector ("aa-") runs first, tandem's adopt ("zz-") after it.
    let injector_mwc = register(
        &client,
        &injector_registration(&unique_name("aa-mesh-injector"), &injector, ns.name()),
    )
    .await;
    let tandem_mwc = register(
        &client,
        &adopt_registration(&unique_name("zz-tandem-adopt"), &tandem, ns.name()),
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            ns.name(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tandem.dev/adopt": "enabled"}}})),
        )
        .await
        .unwrap();

    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Pod"));
    let pods: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.name(), &ar);
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    // Registration and node knowledge are picked up asynchronously.
    let new_pool = format!("{pool}-new");
    wait_until("adopt to take effect", Duration::from_secs(60), || {
        let pods = pods.clone();
        let dry = dry.clone();
        let p = pod(&unique_name("probe"), &new_pool);
        async move {
            Ok(match pods.create(&dry, &p).await {
                Ok(p) => names(&p, "initContainers").contains(&"istio-proxy".to_string()),
                Err(_) => false,
            })
        }
    })
    .await
    .expect("adopt took effect");

    // Stored: on capable nodes the injected proxy is a native sidecar, kept verbatim.
    let created = pods
        .create(&PostParams::default(), &pod("on-new", &new_pool))
        .await
        .unwrap();
    let old_pod = pods
        .create(
            &PostParams::default(),
            &pod("on-old", &format!("{pool}-old")),
        )
        .await
        .unwrap();
    let injector_calls = injector.calls();

    let mwcs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    for name in [injector_mwc, tandem_mwc] {
        let _ = mwcs.delete(&name, &DeleteParams::default()).await;
    }
    for node in [new, old] {
        cluster.delete_node(&node).await.unwrap();
    }

    assert_eq!(names(&created, "initContainers"), ["istio-proxy"]);
    assert_eq!(names(&created, "containers"), ["app"]);
    let proxy = &created.data["spec"]["initContainers"][0];
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["readinessProbe"]["httpGet"]["port"], 15021);
    assert_eq!(proxy["ports"][0]["name"], "http-envoy-prom");
    let adopted = created.metadata.annotations.as_ref().unwrap()["tandem.dev/adopted"].clone();
    assert!(adopted.contains("istio-proxy"), "{adopted}");
    // On a 1.27 node the proxy stays a regular container.
    assert_eq!(names(&old_pod, "containers"), ["app", "istio-proxy"]);
    assert!(names(&old_pod, "initContainers").is_empty());
    assert!(injector_calls >= 3, "the injector ran: {injector_calls}");
    ns.delete().await.unwrap();
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_install_with_adopt_is_accepted() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: InstallArgs,
    }
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.unwrap();
    let args = Cli::parse_from(["install", "--adopt"]).args;
    let mut mwc = install::objects(&args)
        .unwrap()
        .into_iter()
        .find(|o| o["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    mwc["metadata"]["name"] = json!(unique_name("tandem-adopt-install"));
    let mwc: MutatingWebhookConfiguration = serde_json::from_value(mwc).unwrap();
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let created = api.create(&dry, &mwc).await.expect("accepted");
    let names: Vec<String> = created
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert!(
        names.contains(&"namespace.adopt.tandem.dev".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"pod.adopt.tandem.dev".to_string()),
        "{names:?}"
    );
}
