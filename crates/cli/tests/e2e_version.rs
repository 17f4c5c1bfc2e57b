//! `tandem version --server` against the real kube-apiserver: the webhook (a server in this
//! process) registered by URL, its version read from its `/version`. Needs the control
//! plane of `e2e/`: `bash e2e/ci.sh` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.

use std::process::Command;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tandem_core::{Config, Mode};
use tandem_testcluster::{TestCluster, unique_name};
use tandem_webhook::{ServeOptions, Webhook};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_version_server_reads_the_webhook() {
    tandem_testcluster::install_crypto_provider();
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let hook = Webhook::start(ServeOptions::standalone(
        Config::builtin(),
        Some(Mode::Native),
    ))
    .await
    .expect("webhook");
    let name = unique_name("tandem-e2e-version");
    let mwcs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let mwc: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"tandem.dev/e2e": "true"}},
        "webhooks": [{
            "name": "pods.version-e2e.tandem.dev",
            "clientConfig": {
                "url": format!("https://127.0.0.1:{}/mutate", hook.addr().port()),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(hook.ca_pem().unwrap())
            },
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"tandem.dev/e2e-never": "true"}},
            "failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1"]
        }]
    }))
    .unwrap();
    mwcs.create(&PostParams::default(), &mwc)
        .await
        .expect("register");
    let kubeconfig = cluster.admin_kubeconfig();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args([
                "version",
                "--server",
                "--webhook-configuration",
                &name,
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .args(extra)
            .output()
            .expect("tandem version")
    };
    let out = run(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = env!("CARGO_PKG_VERSION");
    assert!(text.contains(&format!("Client Version: v{v}")), "{text}");
    assert!(
        text.contains(&format!(
            "Server Version: v{v} (url https://127.0.0.1:{})",
            hook.addr().port()
        )),
        "{text}"
    );
    let out = run(&["-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["serverVersion"]["version"], v);
    // Not installed under that name: exit 1, the reason on stderr.
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "version",
            "--server",
            "--webhook-configuration",
            "no-such-tandem",
            "--tandem-namespace",
            "no-such-ns",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .output()
        .expect("tandem version");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not read the webhook's version"));
    let _ = mwcs.delete(&name, &DeleteParams::default()).await;
    hook.shutdown(std::time::Duration::from_secs(1))
        .await
        .expect("stop");
}
