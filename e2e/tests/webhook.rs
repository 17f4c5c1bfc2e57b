//! The real API server calls a MutatingWebhookConfiguration's URL on loopback (HTTPS, CA
//! given as caBundle) and applies the JSON Patch it answers to a created Pod, including a
//! native sidecar (an init container with restartPolicy: Always).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use tandem_e2e::webhook::TestWebhook;
use tandem_testcluster::{TestCluster, unique_name, wait_until};

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": "hooked" } },
        "spec": { "containers": [{ "name": "app", "image": "registry.k8s.io/pause:3.10" }] }
    }))
    .expect("pod literal")
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn mutating_webhook_patch_is_applied_to_created_pod() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let ns = cluster.namespace("webhook").await.expect("namespace");

    let patch: tandem_e2e::webhook::PatchFn = Arc::new(|_obj| {
        serde_json::from_value(serde_json::json!([
            { "op": "add", "path": "/metadata/labels/e2e.tandem.dev~1mutated", "value": "true" },
            { "op": "add", "path": "/spec/initContainers", "value": [{
                "name": "sidecar",
                "image": "registry.k8s.io/pause:3.10",
                "restartPolicy": "Always"
            }]}
        ]))
        .unwrap_or_default()
    });
    let hook = TestWebhook::start(patch).await.expect("start webhook");

    let config_name = unique_name("tandem-e2e-hook");
    let config: MutatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": { "name": config_name, "labels": { "tandem.dev/e2e": "true" } },
        "webhooks": [{
            "name": "e2e.tandem.dev",
            "clientConfig": {
                "url": hook.url(),
                "caBundle": k8s_openapi::ByteString(hook.ca_pem().as_bytes().to_vec())
            },
            "rules": [{
                "operations": ["CREATE"],
                "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]
            }],
            "namespaceSelector": {
                "matchLabels": { "kubernetes.io/metadata.name": ns.name() }
            },
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 10
        }]
    }))
    .expect("webhook configuration literal");
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    configs
        .create(&PostParams::default(), &config)
        .await
        .expect("create MutatingWebhookConfiguration");

    // The API server picks the configuration up asynchronously: probe with server-side
    // dry-run until the patch shows, then create for real.
    let pods: Api<Pod> = ns.api();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let res = wait_until(
        "webhook configuration active",
        Duration::from_secs(30),
        || async {
            let p = pods.create(&dry, &pod("probe")).await?;
            Ok(p.metadata
                .labels
                .is_some_and(|l| l.contains_key("e2e.tandem.dev/mutated")))
        },
    )
    .await;
    if let Err(e) = res {
        let _ = configs.delete(&config_name, &DeleteParams::default()).await;
        panic!("{e} (webhook called {} times)", hook.calls());
    }

    let before = hook.calls();
    let created = pods
        .create(&PostParams::default(), &pod("hooked"))
        .await
        .expect("create pod");
    assert!(hook.calls() > before, "the API server called the webhook");
    let labels = created.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("e2e.tandem.dev/mutated").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        labels.get("app").map(String::as_str),
        Some("hooked"),
        "other labels kept"
    );
    let inits = created
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.clone())
        .unwrap_or_default();
    assert_eq!(inits.len(), 1, "the sidecar was added: {inits:?}");
    assert_eq!(inits[0].name, "sidecar");
    assert_eq!(
        inits[0].restart_policy.as_deref(),
        Some("Always"),
        "the API server kept restartPolicy: Always (native sidecar)"
    );
    // And what is stored is what was returned.
    let stored = pods.get("hooked").await.expect("get pod");
    assert_eq!(
        stored.spec.and_then(|s| s.init_containers).map(|i| i.len()),
        Some(1)
    );

    configs
        .delete(&config_name, &DeleteParams::default())
        .await
        .expect("delete webhook configuration");
    ns.delete().await.expect("delete namespace");
}
