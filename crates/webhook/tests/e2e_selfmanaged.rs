//! End-to-end: self-managed TLS (`tandem webhook --tls-secret`) against the real
//! kube-apiserver. Two replicas (in this process, each with its own client and manager)
//! sit behind a round-robin TCP forwarder on loopback, as a Service would put them; the
//! MutatingWebhookConfiguration is registered by URL without a caBundle, with
//! `failurePolicy: Fail`. Shown: the caBundle is patched in, the second replica reuses the
//! first one's Secret, and a rotation (serving certificate and CA, short lifetimes) while
//! pods are created at a steady rate ends with zero failed creates and the new certificate
//! served.
//!
//! Run: `bash e2e/ci.sh`, or with a control plane up:
//! `cargo test -p tandem-webhook --test e2e_selfmanaged -- --ignored --test-threads=1`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use rustls::pki_types::ServerName;
use serde_json::json;
use tandem_core::{Config, Mode};
use tandem_testcluster::{TestCluster, unique_name, wait_until};
use tandem_webhook::selfmanaged::{self, Manager, Settings};
use tandem_webhook::server::TlsSource;
use tandem_webhook::tls::CertInfo;
use tandem_webhook::{ServeOptions, Webhook};

/// Forwards each TCP connection on a loopback port to the next backend, round robin.
async fn forwarder(backends: Vec<SocketAddr>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind forwarder");
    let addr = listener.local_addr().expect("addr");
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let backend = backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()];
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    addr
}

/// The certificate a server presents (DER), checked against `bundle_pem` as the API server
/// checks it against caBundle.
async fn served_cert(addr: SocketAddr, bundle_pem: &str) -> Result<Vec<u8>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = support::connector(bundle_pem)
        .connect(
            ServerName::try_from("localhost").expect("name").to_owned(),
            tcp,
        )
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| "no peer certificate".into())
}

fn settings(ns: &str, secret: &str, mwc: &str, cert: u64, ca: u64, renew: u64) -> Settings {
    Settings::new(
        ns.into(),
        secret.into(),
        mwc.into(),
        vec![format!("tandem-webhook.{ns}.svc"), "localhost".into()],
        vec!["127.0.0.1".parse().expect("ip")],
        Duration::from_secs(cert),
        Duration::from_secs(ca),
        Duration::from_secs(renew),
    )
    .expect("settings")
}

async fn replica(client: &kube::Client, s: Settings) -> (Webhook, selfmanaged::Current) {
    let manager = Manager::new(client.clone(), s);
    let current = manager
        .bootstrap(Duration::from_secs(30))
        .await
        .expect("bootstrap");
    let mut opts = ServeOptions::standalone(Config::builtin(), Some(Mode::Native));
    opts.tls = TlsSource::SelfManaged {
        manager: Box::new(manager),
        current: Box::new(current.clone()),
    };
    (Webhook::start(opts).await.expect("start"), current)
}

async fn readyz(addr: SocketAddr, bundle: &str) -> u16 {
    match support::connect(addr, bundle).await {
        Ok(mut c) => support::request(&mut c, "GET", "/readyz", vec![])
            .await
            .map(|(s, _)| s)
            .unwrap_or(0),
        Err(_) => 0,
    }
}

fn bundle_of(mwc: &MutatingWebhookConfiguration) -> String {
    mwc.webhooks
        .as_ref()
        .and_then(|w| w.first())
        .and_then(|w| w.client_config.ca_bundle.as_ref())
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_self_managed_tls_patches_reuses_and_rotates_without_failed_creates() {
    tandem_testcluster::install_crypto_provider();
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let ns = cluster.namespace("tw-tls").await.expect("namespace");
    let secret_name = "tandem-webhook-tls";
    let mwc_name = unique_name("tandem-e2e-tls");
    // Short lifetimes: certificates last 24 s and are renewed 10 s before the end; a CA
    // lasts 48 s and is replaced (staged, then promoted) when fewer than 20 s remain.
    let s = settings(ns.name(), secret_name, &mwc_name, 24, 48, 10);

    // Replica A creates the Secret.
    let (a, a_first) = replica(&client, s.clone()).await;
    assert!(
        matches!(a_first.step, selfmanaged::Step::Create(_)),
        "{:?}",
        a_first.step
    );
    assert!(!a_first.trusted, "no webhook configuration yet");
    // Replica B reuses it.
    let (b, b_first) = replica(&client, s.clone()).await;
    assert_eq!(
        b_first.step,
        selfmanaged::Step::Keep,
        "second replica reuses"
    );
    assert_eq!(b_first.stored.leaf, a_first.stored.leaf);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns.name());
    let secret = secrets.get(secret_name).await.expect("secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let first_leaf = a_first.stored.leaf.cert_pem.clone();
    let first_ca = CertInfo::first_from_pem(a_first.stored.ca.cert_pem.as_bytes())
        .expect("ca")
        .der;

    // Not ready: nothing trusts the CA yet.
    let bundle0 = a_first.stored.bundle_pem();
    assert_eq!(readyz(a.addr(), &bundle0).await, 503);

    // Register by URL, no caBundle, failurePolicy Fail, only this namespace.
    let lb = forwarder(vec![a.addr(), b.addr()]).await;
    let mwcs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let mwc: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": mwc_name, "labels": {"tandem.dev/e2e": "true"}},
        "webhooks": [{
            "name": "pods.tls-e2e.tandem.dev",
            "clientConfig": {"url": format!("https://127.0.0.1:{}/mutate", lb.port())},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns.name()]}]},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10, "reinvocationPolicy": "Never"
        }]
    }))
    .expect("mwc");
    mwcs.create(&PostParams::default(), &mwc)
        .await
        .expect("register");

    // The caBundle is patched in, and both replicas become ready.
    wait_until("caBundle patched", Duration::from_secs(30), || async {
        Ok(bundle_of(&mwcs.get(&mwc_name).await?).contains("BEGIN CERTIFICATE"))
    })
    .await
    .expect("caBundle patched");
    let live = mwcs.get(&mwc_name).await.expect("mwc");
    let secret = secrets.get(secret_name).await.expect("secret");
    let secret_bundle = secret
        .data
        .as_ref()
        .and_then(|d| d.get(selfmanaged::KEY_BUNDLE))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .expect("ca-bundle.crt");
    assert_eq!(bundle_of(&live), secret_bundle);
    for r in [&a, &b] {
        let addr = r.addr();
        wait_until("replica ready", Duration::from_secs(30), || async {
            Ok(readyz(addr, &secret_bundle).await == 200)
        })
        .await
        .expect("ready once the caBundle holds its CA");
    }

    // Pods at a steady rate (5 per second) through the API server while certificates and
    // the CA rotate.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let pod = |name: String| -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
        }))
        .expect("pod")
    };
    // First one: proves the API server reaches the webhook (injected).
    wait_until("first injected pod", Duration::from_secs(30), || async {
        Ok(pods
            .create(&PostParams::default(), &pod(unique_name("warmup")))
            .await
            .map(|p| {
                p.metadata
                    .annotations
                    .is_some_and(|a| a.contains_key("tandem.dev/status"))
            })
            .unwrap_or(false))
    })
    .await
    .expect("webhook reachable");

    // Beside the creates, the invariant itself, checked the way the API server would: the
    // caBundle read from the API server *before* connecting verifies what each replica
    // serves, on a fresh connection every 100 ms (the API server keeps its connections
    // open, so the creates alone would rarely catch a replica that switches too early).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let (mwcs, name, stop) = (mwcs.clone(), mwc_name.clone(), stop.clone());
        let addrs = [a.addr(), b.addr()];
        tokio::spawn(async move {
            let (mut checked, mut violations) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = mwcs.get(&name).await {
                    let bundle = bundle_of(&m);
                    for addr in addrs {
                        checked += 1;
                        if let Err(e) = served_cert(addr, &bundle).await {
                            violations.push(format!("{addr}: {e}"));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (checked, violations)
        })
    };
    let (mut ok, mut failed) = (0usize, Vec::new());
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let run_for = Duration::from_secs(50);
    while start.elapsed() < run_for {
        tick.tick().await;
        match pods
            .create(&PostParams::default(), &pod(unique_name("steady")))
            .await
        {
            Ok(p)
                if p.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("tandem.dev/status")) =>
            {
                ok += 1
            }
            Ok(p) => failed.push(format!("{:?}: not injected", p.metadata.name)),
            Err(e) => failed.push(format!("{:.1}s: {e}", start.elapsed().as_secs_f64())),
        }
    }
    println!(
        "steady creates: {ok} ok, {} failed over {run_for:?}",
        failed.len()
    );
    stop.store(true, Ordering::Relaxed);
    let (checked, violations) = probe.await.expect("probe");
    println!(
        "caBundle probe: {checked} handshakes, {} not verified",
        violations.len()
    );
    assert!(failed.is_empty(), "failed creates: {failed:#?}");
    assert!(
        violations.is_empty(),
        "served certificates the caBundle did not verify: {violations:#?}"
    );
    assert!(checked > 300, "{checked} probe handshakes");
    assert!(ok >= 200, "{ok} creates");

    // Rotated: a new CA signs what both replicas serve now, and the bundle verifies it.
    let live = mwcs.get(&mwc_name).await.expect("mwc");
    let bundle = bundle_of(&live);
    let secret = secrets.get(secret_name).await.expect("secret");
    let stored = selfmanaged::Stored::from_secret(&secret).expect("stored");
    let ca_now = CertInfo::first_from_pem(stored.ca.cert_pem.as_bytes())
        .expect("ca")
        .der;
    assert_ne!(ca_now, first_ca, "the CA was rotated");
    assert!(stored.generation >= 3, "generation {}", stored.generation);
    for r in [&a, &b] {
        let served = served_cert(r.addr(), &bundle)
            .await
            .expect("served certificate verifies against the live caBundle");
        let leaf = CertInfo::first_from_pem(stored.leaf.cert_pem.as_bytes()).expect("leaf");
        assert_eq!(
            served, leaf.der,
            "every replica serves the Secret's certificate"
        );
        assert_ne!(
            served,
            CertInfo::first_from_pem(first_leaf.as_bytes())
                .expect("first")
                .der
        );
    }
    let rendered = a.metrics_text();
    assert!(
        rendered.contains("tandem_webhook_cert_reloads_total{result=\"ok\"}")
            && !rendered.contains("tandem_webhook_cert_reloads_total{result=\"ok\"} 0"),
        "{rendered}"
    );

    let _ = mwcs.delete(&mwc_name, &DeleteParams::default()).await;
    a.shutdown(Duration::from_secs(1)).await.expect("stop a");
    b.shutdown(Duration::from_secs(1)).await.expect("stop b");
    ns.delete().await.expect("delete namespace");
}

/// install's objects of `kinds`, rendered for namespace `ns`.
fn install_objects(ns: &str, kinds: &[&str]) -> Vec<serde_json::Value> {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: tandem_webhook::install::InstallArgs,
    }
    let args = Cli::parse_from(["install", "-n", ns]).args;
    tandem_webhook::install::objects(&args)
        .expect("install objects")
        .into_iter()
        .filter(|o| kinds.iter().any(|k| o["kind"] == *k))
        .collect()
}

/// A client authenticated as `ns`'s ServiceAccount `sa` (a TokenRequest), through a
/// kubeconfig written next to the cluster's state.
async fn service_account_client(
    cluster: &TestCluster,
    admin: &kube::Client,
    ns: &str,
    sa: &str,
) -> kube::Client {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = sas
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .expect("token request")
        .status
        .expect("token status")
        .token;
    let path = cluster.state_dir().join(format!("kubeconfig-{ns}-{sa}"));
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {
            "server": cluster.server_url(),
            "certificate-authority": cluster.ca_cert()}}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": "e2e", "user": sa}}],
        "current-context": sa,
    });
    std::fs::write(&path, kubeconfig.to_string()).expect("write kubeconfig");
    tandem_testcluster::client_from(&path)
        .await
        .expect("service account client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_self_managed_tls_needs_no_more_than_installs_rbac() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    tandem_testcluster::install_crypto_provider();
    let cluster = TestCluster::connect().await.expect("control plane");
    let admin = cluster.client().await.expect("client");
    let ns = cluster.namespace("tw-rbac").await.expect("namespace");
    let mwc_name = unique_name("tandem-e2e-rbac");

    // tandem install's ServiceAccount, Role and RoleBinding as they are; its ClusterRole
    // and binding under unique names, the webhook configuration's resourceName pointed
    // at this test's configuration (install's is `tandem`).
    let role_name = unique_name("tandem-e2e-rbac");
    for mut obj in install_objects(
        ns.name(),
        &[
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
        ],
    ) {
        let pp = PostParams::default();
        match obj["kind"].as_str().unwrap_or_default() {
            "ServiceAccount" => {
                let api: Api<k8s_openapi::api::core::v1::ServiceAccount> =
                    Api::namespaced(admin.clone(), ns.name());
                api.create(&pp, &serde_json::from_value(obj).expect("sa"))
                    .await
                    .expect("create sa");
            }
            "Role" => {
                let api: Api<Role> = Api::namespaced(admin.clone(), ns.name());
                api.create(&pp, &serde_json::from_value(obj).expect("role"))
                    .await
                    .expect("create role");
            }
            "RoleBinding" => {
                let api: Api<RoleBinding> = Api::namespaced(admin.clone(), ns.name());
                api.create(&pp, &serde_json::from_value(obj).expect("rb"))
                    .await
                    .expect("create rolebinding");
            }
            "ClusterRole" if obj["metadata"]["name"] == tandem_webhook::install::APP => {
                obj["metadata"]["name"] = json!(role_name);
                for rule in obj["rules"].as_array_mut().expect("rules") {
                    if rule["resources"][0] == "mutatingwebhookconfigurations" {
                        rule["resourceNames"] = json!([mwc_name]);
                    }
                }
                let api: Api<ClusterRole> = Api::all(admin.clone());
                api.create(&pp, &serde_json::from_value(obj).expect("cr"))
                    .await
                    .expect("create clusterrole");
            }
            "ClusterRoleBinding" if obj["metadata"]["name"] == tandem_webhook::install::APP => {
                obj["metadata"]["name"] = json!(role_name);
                obj["roleRef"]["name"] = json!(role_name);
                let api: Api<ClusterRoleBinding> = Api::all(admin.clone());
                api.create(&pp, &serde_json::from_value(obj).expect("crb"))
                    .await
                    .expect("create clusterrolebinding");
            }
            _ => {}
        }
    }
    let sa =
        service_account_client(&cluster, &admin, ns.name(), tandem_webhook::install::APP).await;

    // The webhook configuration exists first (as install applies it), without caBundle.
    let mwcs: Api<MutatingWebhookConfiguration> = Api::all(admin.clone());
    // One replica as that ServiceAccount: it creates the Secret and patches the caBundle.
    let (hook, first) = replica(
        &sa,
        settings(ns.name(), "tandem-webhook-tls", &mwc_name, 3600, 7200, 600),
    )
    .await;
    assert!(
        matches!(first.step, selfmanaged::Step::Create(_)),
        "{:?}",
        first.step
    );
    let mwc: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": mwc_name, "labels": {"tandem.dev/e2e": "true"}},
        "webhooks": [{
            "name": "pods.rbac-e2e.tandem.dev",
            "clientConfig": {"url": format!("https://127.0.0.1:{}/mutate", hook.addr().port())},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns.name()]}]},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10, "reinvocationPolicy": "Never"
        }]
    }))
    .expect("mwc");
    mwcs.create(&PostParams::default(), &mwc)
        .await
        .expect("register");
    wait_until(
        "caBundle patched by the ServiceAccount",
        Duration::from_secs(30),
        || async { Ok(bundle_of(&mwcs.get(&mwc_name).await?).contains("BEGIN CERTIFICATE")) },
    )
    .await
    .expect("caBundle patched");
    let bundle = first.stored.bundle_pem();
    wait_until("replica ready", Duration::from_secs(30), || async {
        Ok(readyz(hook.addr(), &bundle).await == 200)
    })
    .await
    .expect("ready");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns.name());
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "rbac-probe"},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .expect("pod");
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod created through the webhook");
    assert!(
        created
            .metadata
            .annotations
            .is_some_and(|a| a.contains_key("tandem.dev/status")),
        "injected"
    );

    // And no more: other Secrets and other webhook configurations are out of reach.
    let secrets: Api<Secret> = Api::namespaced(sa.clone(), ns.name());
    let err = secrets
        .get("some-other-secret")
        .await
        .expect_err("forbidden");
    assert!(format!("{err}").contains("forbidden"), "{err}");
    assert!(
        secrets.list(&Default::default()).await.is_err(),
        "no list of all secrets"
    );
    let sa_mwcs: Api<MutatingWebhookConfiguration> = Api::all(sa.clone());
    assert!(
        sa_mwcs.get(&mwc_name).await.is_ok(),
        "its own configuration"
    );
    assert!(
        sa_mwcs.list(&Default::default()).await.is_err(),
        "no list of every webhook configuration"
    );

    let _ = mwcs.delete(&mwc_name, &DeleteParams::default()).await;
    let _ = Api::<ClusterRoleBinding>::all(admin.clone())
        .delete(&role_name, &DeleteParams::default())
        .await;
    let _ = Api::<ClusterRole>::all(admin.clone())
        .delete(&role_name, &DeleteParams::default())
        .await;
    drop(hook);
    ns.delete().await.expect("delete namespace");
}
