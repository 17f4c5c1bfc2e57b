//! End-to-end: tandem's webhook registered through a real kube-apiserver (built from
//! source, `e2e/cluster/`), with the MutatingWebhookConfiguration that `tandem install`
//! renders (its clientConfig pointed at the in-process server on loopback).
//!
//! Run: `bash e2e/ci.sh` brings a control plane up; then
//! `TANDEM_E2E_NO_START=1 cargo test -p tandem-webhook --test e2e_webhook -- --ignored --test-threads=1`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, discovery};
use serde_json::{Value, json};
use tandem_core::{Config, Mode};
use tandem_testcluster::{FakeNode, TestCluster, TestNamespace, unique_name, wait_until};
use tandem_webhook::admission::PatchEncoding;
use tandem_webhook::install::{self, InstallArgs};
use tandem_webhook::live::LiveKnowledge;
use tandem_webhook::{ServeOptions, Webhook};

fn install_args(extra: &[&str]) -> InstallArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: InstallArgs,
    }
    let mut argv = vec!["install"];
    argv.extend_from_slice(extra);
    Cli::parse_from(argv).args
}

/// The rendered MutatingWebhookConfiguration, pointed at `base_url` (`https://127.0.0.1:N`)
/// with `ca_pem`, and narrowed to `namespaces` so that other tests sharing the control
/// plane are never affected.
fn registration(
    base_url: &str,
    ca_pem: &str,
    namespaces: &[&str],
    failure_policy: &str,
) -> MutatingWebhookConfiguration {
    let objs = install::objects(&install_args(&["--failure-policy", failure_policy]))
        .expect("install objects");
    let mut mwc = objs
        .into_iter()
        .find(|o| o["kind"] == "MutatingWebhookConfiguration")
        .expect("rendered MutatingWebhookConfiguration");
    mwc["metadata"]["name"] = json!(unique_name("tandem-e2e"));
    mwc["metadata"]["labels"]["tandem.dev/e2e"] = json!("true");
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    for hook in mwc["webhooks"].as_array_mut().expect("webhooks") {
        let path = hook["clientConfig"]["service"]["path"]
            .as_str()
            .unwrap_or("/mutate")
            .to_string();
        hook["clientConfig"] = json!({"url": format!("{base_url}{path}"), "caBundle": ca});
        hook["namespaceSelector"]["matchExpressions"]
            .as_array_mut()
            .expect("matchExpressions")
            .push(json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}));
    }
    serde_json::from_value(mwc).expect("MutatingWebhookConfiguration")
}

struct Registered {
    name: String,
    client: Client,
}

impl Registered {
    async fn new(client: &Client, mwc: MutatingWebhookConfiguration) -> Self {
        let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let created = api
            .create(&PostParams::default(), &mwc)
            .await
            .expect("register webhook");
        Self {
            name: created.metadata.name.unwrap_or_default(),
            client: client.clone(),
        }
    }

    async fn delete(self) {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client);
        let _ = api.delete(&self.name, &DeleteParams::default()).await;
    }
}

async fn start_webhook(client: &Client, mode: Option<Mode>, encoding: PatchEncoding) -> Webhook {
    let mut opts = ServeOptions::standalone(Config::builtin(), mode);
    opts.listen = "127.0.0.1:0".parse().expect("addr");
    opts.knowledge = LiveKnowledge::watch(client.clone(), Duration::from_secs(2));
    opts.events_client = Some(client.clone());
    opts.encoding = encoding;
    Webhook::start(opts).await.expect("start webhook")
}

fn base_url(hook: &Webhook) -> String {
    format!("https://127.0.0.1:{}", hook.addr().port())
}

async fn opt_in(client: &Client, ns: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.patch(
        ns,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tandem.dev/inject": "enabled"}}})),
    )
    .await
    .expect("label namespace");
}

fn pods(ns: &TestNamespace, client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns.name(), &ApiResource::erase::<Pod>(&()))
}

fn pod(name: &str, extra_labels: Value, spec_extra: Value) -> DynamicObject {
    let mut spec = json!({"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": extra_labels},
        "spec": spec
    }))
    .expect("pod")
}

fn status_mode(p: &DynamicObject) -> Option<String> {
    let status = p.metadata.annotations.as_ref()?.get("tandem.dev/status")?;
    let v: Value = serde_json::from_str(status).ok()?;
    v["mode"].as_str().map(str::to_string)
}

fn dry() -> PostParams {
    PostParams {
        dry_run: true,
        ..Default::default()
    }
}

/// Waits until the API server calls the webhook (the configuration is picked up
/// asynchronously): a dry-run create comes back injected.
async fn wait_registered(api: &Api<DynamicObject>) {
    wait_until(
        "webhook registration to take effect",
        Duration::from_secs(60),
        || async {
            let probe = pod(&unique_name("probe"), json!({}), json!({}));
            Ok(match api.create(&dry(), &probe).await {
                Ok(p) => status_mode(&p).is_some(),
                Err(_) => false,
            })
        },
    )
    .await
    .expect("webhook registered");
}

fn init_containers(p: &DynamicObject) -> Vec<Value> {
    p.data["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn containers(p: &DynamicObject) -> Vec<String> {
    p.data["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_deployment_gets_native_sidecars_and_opt_out_works() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let ns = cluster.namespace("tw-inject").await.expect("namespace");
    opt_in(&client, ns.name()).await;
    let hook = start_webhook(&client, Some(Mode::Native), PatchEncoding::Base64).await;
    let reg = Registered::new(
        &client,
        registration(
            &base_url(&hook),
            hook.ca_pem().expect("ca"),
            &[ns.name()],
            "fail",
        ),
    )
    .await;
    let api = pods(&ns, &client);
    wait_registered(&api).await;

    // A Deployment: its ReplicaSet's pods are injected by the API server calling tandem.
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "shop"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "shop"}},
            "template": {
                "metadata": {"labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
            }
        }
    });
    let deployments: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns.name(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment")),
    );
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(deploy).expect("deployment"),
        )
        .await
        .expect("create deployment");
    let lp = ListParams::default().labels("app=shop");
    wait_until(
        "2 pods of the Deployment",
        Duration::from_secs(60),
        || async { Ok(api.list(&lp).await?.items.len() >= 2) },
    )
    .await
    .expect("pods created");
    for p in api.list(&lp).await.expect("list").items {
        let inits = init_containers(&p);
        assert_eq!(
            inits.first().and_then(|c| c["name"].as_str()),
            Some("log-shipper"),
            "{:?}",
            p.data
        );
        assert_eq!(
            inits[0]["restartPolicy"], "Always",
            "native sidecar kept by the API server"
        );
        assert_eq!(status_mode(&p).as_deref(), Some("native"));
    }

    // Events on the ReplicaSet (sent off the admission path).
    let events: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns.name(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event")),
    );
    wait_until(
        "a PatchedAtAdmission event on the ReplicaSet",
        Duration::from_secs(30),
        || async {
            Ok(events
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .any(|e| {
                    e.data["reason"] == "PatchedAtAdmission"
                        && e.data["regarding"]["kind"] == "ReplicaSet"
                }))
        },
    )
    .await
    .expect("PatchedAtAdmission event");

    // Opt-out by pod label: the objectSelector keeps the API server from even calling us.
    let before = hook.metrics_text();
    let out = api
        .create(
            &PostParams::default(),
            &pod(
                "opted-out",
                json!({"tandem.dev/inject": "disabled"}),
                json!({}),
            ),
        )
        .await
        .expect("create opted-out pod");
    assert!(init_containers(&out).is_empty(), "{:?}", out.data);
    assert!(status_mode(&out).is_none());
    assert_eq!(containers(&out), vec!["app".to_string()]);
    assert_eq!(
        count(&before, "injected"),
        count(&hook.metrics_text(), "injected")
    );

    // A pod with fields tandem doesn't model keeps them all.
    let unknown = api
        .create(
            &PostParams::default(),
            &pod(
                "unknown-fields",
                json!({}),
                json!({
                    "os": {"name": "linux"},
                    "hostUsers": true,
                    "schedulingGates": [{"name": "tandem.dev/e2e-gate"}],
                    "containers": [{
                        "name": "app", "image": "registry.k8s.io/pause:3.10",
                        "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
                        "stdin": true
                    }]
                }),
            ),
        )
        .await
        .expect("create pod with extra fields");
    assert_eq!(unknown.data["spec"]["os"]["name"], "linux");
    assert_eq!(unknown.data["spec"]["hostUsers"], true);
    assert_eq!(
        unknown.data["spec"]["schedulingGates"][0]["name"],
        "tandem.dev/e2e-gate"
    );
    let app = &unknown.data["spec"]["containers"][0];
    assert_eq!(app["resizePolicy"][0]["restartPolicy"], "NotRequired");
    assert_eq!(app["stdin"], true);
    assert_eq!(init_containers(&unknown)[0]["restartPolicy"], "Always");

    // A dry-run create is answered (injected) and leaves no event behind.
    let dry_name = unique_name("dry");
    let answered = api
        .create(&dry(), &pod(&dry_name, json!({}), json!({})))
        .await
        .expect("dry-run create");
    assert_eq!(status_mode(&answered).as_deref(), Some("native"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let evs = events.list(&ListParams::default()).await.expect("events");
    assert!(
        !evs.items
            .iter()
            .any(|e| e.data["regarding"]["name"] == dry_name.as_str()),
        "dry-run left an event"
    );
    assert!(
        evs.items
            .iter()
            .any(|e| e.data["regarding"]["name"] == "unknown-fields")
    );

    reg.delete().await;
    hook.shutdown(Duration::from_secs(2))
        .await
        .expect("shutdown");
    let _ = ns.delete().await;
}

fn count(metrics: &str, outcome: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("tandem_webhook_requests_total{")
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_patch_encodings_both_accepted() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    for encoding in [PatchEncoding::Array, PatchEncoding::Base64] {
        let ns = cluster.namespace("tw-enc").await.expect("namespace");
        opt_in(&client, ns.name()).await;
        let hook = start_webhook(&client, Some(Mode::Native), encoding).await;
        let reg = Registered::new(
            &client,
            registration(
                &base_url(&hook),
                hook.ca_pem().expect("ca"),
                &[ns.name()],
                "fail",
            ),
        )
        .await;
        let api = pods(&ns, &client);
        wait_registered(&api).await;
        let p = api
            .create(&PostParams::default(), &pod("enc", json!({}), json!({})))
            .await
            .expect("create");
        assert_eq!(
            init_containers(&p)[0]["restartPolicy"],
            "Always",
            "{encoding:?}"
        );
        eprintln!(
            "patch encoding {encoding:?}: accepted by kube-apiserver {}",
            cluster.apiserver_version()
        );
        reg.delete().await;
        hook.shutdown(Duration::from_secs(2))
            .await
            .expect("shutdown");
        let _ = ns.delete().await;
    }
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_auto_picks_from_node_versions() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let pool = unique_name("pool");
    let mk = |suffix: &str, version: &str| {
        FakeNode::new(&format!("tw-{suffix}"), version)
            .label("tandem.dev/e2e-pool", &format!("{pool}-{suffix}"))
    };
    let new = cluster
        .create_node(&mk("new", "v1.34.2"))
        .await
        .expect("new node");
    let old = cluster
        .create_node(&mk("old", "v1.27.16"))
        .await
        .expect("old node");
    let gate_off = cluster
        .create_node(&mk("v128", "v1.28.15"))
        .await
        .expect("1.28 node");

    let ns = cluster.namespace("tw-auto").await.expect("namespace");
    opt_in(&client, ns.name()).await;
    let hook = start_webhook(&client, Some(Mode::Auto), PatchEncoding::Base64).await;
    let reg = Registered::new(
        &client,
        registration(
            &base_url(&hook),
            hook.ca_pem().expect("ca"),
            &[ns.name()],
            "fail",
        ),
    )
    .await;
    let api = pods(&ns, &client);
    wait_registered(&api).await;

    let on_pools = |pools: &[&str]| {
        let values: Vec<String> = pools.iter().map(|s| format!("{pool}-{s}")).collect();
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "tandem.dev/e2e-pool", "operator": "In", "values": values}
            ]}]
        }}}})
    };
    let cases: [(&[&str], &str); 4] = [
        (&["new"], "native"),
        (&["old"], "legacy"),
        (&["new", "old"], "universal"),
        (&["new", "v128"], "legacy"),
    ];
    for (pools, want) in cases {
        let mut got = None;
        // The node cache catches up with the new nodes within moments.
        for _ in 0..40 {
            let p = api
                .create(
                    &dry(),
                    &pod(&unique_name("auto"), json!({}), on_pools(pools)),
                )
                .await
                .expect("dry-run create");
            got = status_mode(&p);
            if got.as_deref() == Some(want) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(got.as_deref(), Some(want), "pods on {pools:?}");
    }
    reg.delete().await;
    hook.shutdown(Duration::from_secs(2))
        .await
        .expect("shutdown");
    let _ = ns.delete().await;
    for n in [new, old, gate_off] {
        let _ = cluster.delete_node(&n).await;
    }
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_auto_follows_the_api_server_gate() {
    let mut cluster = TestCluster::connect().await.expect("control plane");
    let old = cluster.old_version().to_string();
    let outcome = gate_off_checks(&mut cluster, &old).await;
    let restored = cluster.restart_apiserver(None, "").await;
    let mode = outcome.unwrap_or_else(|e| panic!("{e}"));
    restored.expect("restart back to the current release");
    assert_eq!(
        mode, "legacy",
        "auto with the API server's SidecarContainers gate off"
    );
}

async fn gate_off_checks(cluster: &mut TestCluster, old: &str) -> Result<String, String> {
    cluster
        .restart_apiserver(Some(old), "SidecarContainers=false")
        .await
        .map_err(|e| format!("restart {old} with the gate off: {e}"))?;
    let client = cluster.client().await.map_err(|e| e.to_string())?;
    let node = cluster
        .create_node(&FakeNode::new("tw-gate", "v1.32.9").label("tandem.dev/e2e-pool", "gate"))
        .await
        .map_err(|e| e.to_string())?;
    let ns = cluster
        .namespace("tw-gate")
        .await
        .map_err(|e| e.to_string())?;
    opt_in(&client, ns.name()).await;
    let hook = start_webhook(&client, Some(Mode::Auto), PatchEncoding::Base64).await;
    let reg = Registered::new(
        &client,
        registration(
            &base_url(&hook),
            hook.ca_pem().unwrap_or_default(),
            &[ns.name()],
            "fail",
        ),
    )
    .await;
    let api = pods(&ns, &client);
    wait_registered(&api).await;
    let mut mode = None;
    for _ in 0..40 {
        let p = api
            .create(
                &dry(),
                &pod(
                    &unique_name("gate"),
                    json!({}),
                    json!({"nodeSelector": {"tandem.dev/e2e-pool": "gate"}}),
                ),
            )
            .await
            .map_err(|e| e.to_string())?;
        mode = status_mode(&p);
        if mode.as_deref() == Some("legacy") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    reg.delete().await;
    let _ = hook.shutdown(Duration::from_secs(2)).await;
    let _ = ns.delete().await;
    let _ = cluster.delete_node(&node).await;
    mode.ok_or_else(|| "no tandem.dev/status on the pod".to_string())
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_failure_policy_with_tandem_down() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    // A webhook that answers once (to prove registration), then goes away.
    let hook = start_webhook(&client, Some(Mode::Native), PatchEncoding::Base64).await;
    let url = base_url(&hook);
    let ca = hook.ca_pem().expect("ca").to_string();
    let fail_ns = cluster.namespace("tw-fail").await.expect("namespace");
    let ignore_ns = cluster.namespace("tw-ignore").await.expect("namespace");
    for ns in [&fail_ns, &ignore_ns] {
        opt_in(&client, ns.name()).await;
    }
    let fail = Registered::new(&client, registration(&url, &ca, &[fail_ns.name()], "fail")).await;
    let ignore = Registered::new(
        &client,
        registration(&url, &ca, &[ignore_ns.name()], "ignore"),
    )
    .await;
    wait_registered(&pods(&fail_ns, &client)).await;
    wait_registered(&pods(&ignore_ns, &client)).await;
    hook.shutdown(Duration::from_secs(1))
        .await
        .expect("shutdown");

    let err = pods(&fail_ns, &client)
        .create(
            &PostParams::default(),
            &pod("blocked", json!({}), json!({})),
        )
        .await
        .expect_err("failurePolicy Fail rejects pods while tandem is down");
    let msg = err.to_string();
    assert!(msg.contains("tandem.dev"), "error names the webhook: {msg}");
    let admitted = pods(&ignore_ns, &client)
        .create(
            &PostParams::default(),
            &pod("admitted", json!({}), json!({})),
        )
        .await
        .expect("failurePolicy Ignore admits the pod");
    assert!(
        init_containers(&admitted).is_empty(),
        "admitted without sidecars"
    );
    fail.delete().await;
    ignore.delete().await;
    let _ = fail_ns.delete().await;
    let _ = ignore_ns.delete().await;
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_install_output_applies() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let target = unique_name("tandem-install");
    let objs = install::objects(&install_args(&[
        "--namespace",
        &target,
        "--with-label-nodes",
        "--label-nodes-node-metrics",
    ]))
    .expect("render");
    // The YAML printed by `tandem install` reads back to the same objects.
    let yaml = install::render(&install_args(&["--namespace", &target])).expect("render yaml");
    assert!(tandem_core::manifest::parse_stream(&yaml).is_ok());

    // The namespace is created for real (a dry-run namespace can't hold dry-run objects);
    // everything else is applied server-side with dryRun=All.
    let mut results = BTreeMap::new();
    for obj in &objs {
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (group, version) = match obj["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .split_once('/')
        {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (
                String::new(),
                obj["apiVersion"].as_str().unwrap_or_default().to_string(),
            ),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, &kind);
        let (ar, caps) = discovery::pinned_kind(&client, &gvk)
            .await
            .expect("discover kind");
        let api: Api<DynamicObject> = match caps.scope {
            discovery::Scope::Namespaced => Api::namespaced_with(client.clone(), &target, &ar),
            discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        let mut pp = PatchParams::apply("tandem-e2e").force();
        if kind != "Namespace" {
            pp = pp.dry_run();
        }
        let mut o = obj.clone();
        if kind == "Namespace" {
            o["metadata"]["labels"]["tandem.dev/e2e"] = json!("true");
        }
        let res = api.patch(&name, &pp, &Patch::Apply(&o)).await;
        results.insert(
            format!("{kind}/{name}"),
            res.map(|_| ()).map_err(|e| e.to_string()),
        );
    }
    let nss: Api<Namespace> = Api::all(client.clone());
    let _ = nss.delete(&target, &DeleteParams::background()).await;
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "server-side dry-run apply failed: {failed:#?}"
    );
    assert!(results.len() >= 14, "{results:#?}");
}
