//! End-to-end: the doctor's checks of tandem itself against the real control plane. tandem
//! is "installed" in a test namespace: a Deployment and a Service (pods on a kwok node,
//! so they become available and give the Service ready endpoints) and the webhook itself
//! as a server in this process, registered by URL. A healthy install passes; a broken
//! caBundle, a Service without endpoints and an expiring certificate are each named, with
//! exit code 1.
//!
//! Run: `bash e2e/ci.sh`, or with a control plane up:
//! `cargo test -p tandem-doctor --test e2e_tandem_checks -- --ignored --test-threads=1`.

use std::time::Duration;

use base64::Engine as _;
use clap::Parser;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tandem_core::{Config, Mode};
use tandem_doctor::DoctorArgs;
use tandem_doctor::report::{Report, Status};
use tandem_doctor::scan::Progress;
use tandem_testcluster::{FakeNode, TestCluster, unique_name, wait_until};
use tandem_webhook::server::TlsSource;
use tandem_webhook::tls::{CertFiles, Pki};
use tandem_webhook::{ServeOptions, Webhook};

#[derive(Parser)]
struct DoctorCli {
    #[command(flatten)]
    args: DoctorArgs,
}

const GROUP: &str = "tandem.dev/e2e-group";

fn args(kubeconfig: &std::path::Path, ns: &str, mwc: &str, extra: &[&str]) -> DoctorArgs {
    let mut argv: Vec<String> = [
        "doctor",
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--tandem-only",
        "--tandem-namespace",
        ns,
        "--webhook-configuration",
        mwc,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(extra.iter().map(|s| s.to_string()));
    DoctorCli::try_parse_from(argv).expect("flags").args
}

async fn doctor(a: &DoctorArgs) -> Report {
    let client = tandem_kube::connect(&a.cluster).await.expect("client");
    let r = tandem_doctor::doctor_cmd::diagnose(&client, a, &mut Progress::stderr(true))
        .await
        .expect("doctor runs");
    eprintln!("{}", r.to_text());
    r
}

fn status(r: &Report, id: &str) -> Status {
    r.checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id} in {:?}", r.checks))
        .status
}

/// A webhook serving a certificate valid for `days`, from files.
async fn webhook(dir: &std::path::Path, days: u32) -> (Webhook, Pki) {
    let pki = Pki::generate(
        "tandem-e2e-ca",
        &["localhost".into()],
        &["127.0.0.1".parse().expect("ip")],
        days,
    )
    .expect("pki");
    let files = CertFiles {
        cert: dir.join(format!("tls-{days}.crt")),
        key: dir.join(format!("tls-{days}.key")),
    };
    std::fs::write(&files.cert, &pki.cert_pem).expect("write cert");
    std::fs::write(&files.key, &pki.key_pem).expect("write key");
    let mut opts = ServeOptions::standalone(Config::builtin(), Some(Mode::Native));
    opts.tls = TlsSource::Files {
        files,
        every: Duration::from_secs(60),
    };
    (Webhook::start(opts).await.expect("webhook"), pki)
}

fn client_config(hook: &Webhook, ca_pem: &str) -> serde_json::Value {
    json!({
        "url": format!("https://127.0.0.1:{}/mutate", hook.addr().port()),
        "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_tandem_checks_pass_when_healthy_and_name_each_problem() {
    tandem_testcluster::install_crypto_provider();
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let kubeconfig = cluster.admin_kubeconfig();
    let ns = cluster.namespace("td-tandem").await.expect("namespace");
    let group = unique_name("tandem-checks");
    let node = cluster
        .create_node(&FakeNode::new("td-tandem", cluster.current_version()).label(GROUP, &group))
        .await
        .expect("kwok node");
    let dir = std::env::temp_dir().join(unique_name("tandem-checks"));
    std::fs::create_dir_all(&dir).expect("tmp dir");

    // "Installed": Deployment + Service in the namespace, the webhook by URL.
    let labels = json!({"app.kubernetes.io/name": "tandem-webhook"});
    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "tandem-webhook", "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "nodeSelector": {GROUP: group},
                "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "webhook", "image": "registry.k8s.io/pause:3.10"}]}}}
    }))
    .expect("deployment");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    deployments
        .create(&PostParams::default(), &deploy)
        .await
        .expect("create deployment");
    let services: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "tandem-webhook"},
        "spec": {"selector": labels, "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");
    let (good, good_pki) = webhook(&dir, 365).await;
    let mwc_name = unique_name("tandem-e2e-checks");
    let mwcs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let mwc: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": mwc_name, "labels": {"tandem.dev/e2e": "true"}},
        "webhooks": [{
            "name": "pods.checks-e2e.tandem.dev",
            "clientConfig": client_config(&good, &good_pki.ca_pem),
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns.name()]}]},
            "failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1"]
        }]
    }))
    .expect("mwc");
    mwcs.create(&PostParams::default(), &mwc)
        .await
        .expect("register");

    // Healthy: `--wait` returns as soon as every tandem check passes.
    let a = args(
        &kubeconfig,
        ns.name(),
        &mwc_name,
        &["--wait", "90s", "-o", "json"],
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code =
        tandem_doctor::doctor_cmd::run_async(&a, &mut out, &mut err, &mut Progress::stderr(true))
            .await;
    let report: serde_json::Value = serde_json::from_slice(&out).expect("json report");
    assert_eq!(code, 0, "{report:#}\n{}", String::from_utf8_lossy(&err));
    let ids: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        ids,
        [
            "tandem-webhook-configuration",
            "tandem-deployment",
            "tandem-endpoints",
            "tandem-ca-bundle",
            "tandem-certificate",
            "tandem-version"
        ]
    );
    assert!(
        report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .all(|c| c["status"] == "pass"),
        "{report:#}"
    );
    let a = args(&kubeconfig, ns.name(), &mwc_name, &[]);

    // 1. A broken caBundle (another CA).
    let other = Pki::generate("someone-else", &["localhost".into()], &[], 365).expect("pki");
    let set_client_config = |cc: serde_json::Value| {
        let mwcs = mwcs.clone();
        let name = mwc_name.clone();
        async move {
            mwcs.patch(
                &name,
                &PatchParams::default(),
                &Patch::Json::<()>(
                    serde_json::from_value(
                        json!([{"op": "replace", "path": "/webhooks/0/clientConfig", "value": cc}]),
                    )
                    .expect("patch"),
                ),
            )
            .await
            .expect("patch mwc");
        }
    };
    set_client_config(client_config(&good, &other.ca_pem)).await;
    let r = doctor(&a).await;
    assert_eq!(status(&r, "tandem-ca-bundle"), Status::Fail);
    assert_eq!(r.exit_code, 1);
    let c = r
        .checks
        .iter()
        .find(|c| c.id == "tandem-ca-bundle")
        .expect("check");
    assert!(c.hint.is_some());
    assert!(
        c.evidence
            .iter()
            .any(|e| e.contains("UnknownIssuer") || e.contains("issuer")),
        "{c:?}"
    );
    set_client_config(client_config(&good, &good_pki.ca_pem)).await;

    // 2. No endpoints: the Service selects nothing.
    services
        .patch(
            "tandem-webhook",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"selector": {"app.kubernetes.io/name": "nothing"}}})),
        )
        .await
        .expect("patch service");
    wait_until("endpoints gone", Duration::from_secs(30), || async {
        Ok(
            tandem_doctor::tandem_checks::checks(&client, &a.tandem.target)
                .await
                .iter()
                .any(|c| c.id == "tandem-endpoints" && c.status == Status::Fail),
        )
    })
    .await
    .expect("endpoints check fails");
    let r = doctor(&a).await;
    assert_eq!(status(&r, "tandem-endpoints"), Status::Fail);
    assert_eq!(r.exit_code, 1);
    services
        .patch(
            "tandem-webhook",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"selector": {"app.kubernetes.io/name": "tandem-webhook"}}}),
            ),
        )
        .await
        .expect("restore service");

    // 3. A certificate that expires in 10 days.
    let (short, short_pki) = webhook(&dir, 10).await;
    set_client_config(client_config(&short, &short_pki.ca_pem)).await;
    let r = doctor(&a).await;
    assert_eq!(status(&r, "tandem-certificate"), Status::Fail);
    assert_eq!(status(&r, "tandem-ca-bundle"), Status::Pass);
    let c = r
        .checks
        .iter()
        .find(|c| c.id == "tandem-certificate")
        .expect("check");
    assert!(
        c.summary.contains("9 day") || c.summary.contains("10 day"),
        "{}",
        c.summary
    );
    assert_eq!(r.exit_code, 1);

    let _ = mwcs.delete(&mwc_name, &DeleteParams::default()).await;
    good.shutdown(Duration::from_secs(1)).await.expect("stop");
    short.shutdown(Duration::from_secs(1)).await.expect("stop");
    ns.delete().await.expect("delete namespace");
    let _ = cluster.delete_node(&node).await;
    let _ = std::fs::remove_dir_all(&dir);
}
