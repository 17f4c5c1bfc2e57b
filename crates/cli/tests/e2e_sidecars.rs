//! End-to-end: Sidecar and ClusterSidecar objects on a real kube-apiserver (built from
//! source, `e2e/cluster/`), with tandem's webhook in process watching them, and the
//! `tandem status` / `tandem rollout` binaries reading the cluster.
//!
//! Run: `bash e2e/ci.sh` (or `TANDEM_E2E_NO_START=1 cargo test -p tandem --test
//! e2e_sidecars -- --ignored --test-threads=1` with a control plane up).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt as _};
use serde_json::{Value, json};
use tandem_core::api::{ClusterSidecar, Sidecar};
use tandem_core::{Config, Mode};
use tandem_testcluster::{TestCluster, TestNamespace, unique_name, wait_until};
use tandem_webhook::install::{self, InstallArgs};
use tandem_webhook::live::LiveKnowledge;
use tandem_webhook::sidecars::SidecarIndex;
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

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Applies tandem's CRDs (as `tandem install` renders them) and waits until served.
async fn apply_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let objs = install::objects(&install_args(&[])).unwrap();
    for crd in objs
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
    {
        let name = crd["metadata"]["name"].as_str().unwrap();
        api.patch(
            name,
            &PatchParams::apply("tandem-e2e").force(),
            &Patch::Apply(crd),
        )
        .await
        .expect("apply CRD");
        wait_until("CRD established", Duration::from_secs(30), || async {
            let c = api.get(name).await?;
            Ok(c.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"))
        })
        .await
        .expect("CRD established");
    }
}

struct Setup {
    client: Client,
    ns: TestNamespace,
    hook: Webhook,
    mwc: String,
}

async fn setup(cluster: &TestCluster, prefix: &str) -> Setup {
    let client = cluster.client().await.expect("client");
    apply_crds(&client).await;
    let ns = cluster.namespace(prefix).await.expect("namespace");
    let api: Api<Namespace> = Api::all(client.clone());
    api.patch(
        ns.name(),
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"labels": {"tandem.dev/inject": "enabled", "tandem-e2e-ns": ns.name()}}}),
        ),
    )
    .await
    .unwrap();
    let mut opts = ServeOptions::standalone(
        Config::from_yaml("sidecars: []").unwrap(),
        Some(Mode::Native),
    );
    opts.listen = "127.0.0.1:0".parse().unwrap();
    opts.knowledge = LiveKnowledge::watch(client.clone(), Duration::from_secs(5));
    let mut index = SidecarIndex::watch(client.clone(), None);
    opts.sidecars = index.clone();
    tokio::time::timeout(Duration::from_secs(30), index.wait_synced())
        .await
        .expect("sidecar objects synced");
    let hook = Webhook::start(opts).await.expect("webhook");
    let base = format!("https://127.0.0.1:{}", hook.addr().port());
    let objs = install::objects(&install_args(&[])).unwrap();
    let mut mwc = objs
        .into_iter()
        .find(|o| o["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    let name = unique_name("tandem-e2e-sc");
    mwc["metadata"]["name"] = json!(name);
    let ca = b64(hook.ca_pem().unwrap());
    for h in mwc["webhooks"].as_array_mut().unwrap() {
        let path = h["clientConfig"]["service"]["path"]
            .as_str()
            .unwrap()
            .to_string();
        h["clientConfig"] = json!({"url": format!("{base}{path}"), "caBundle": ca});
        h["namespaceSelector"]["matchExpressions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns.name()]}));
    }
    let mwc: MutatingWebhookConfiguration = serde_json::from_value(mwc).unwrap();
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &mwc)
        .await
        .unwrap();
    Setup {
        client,
        ns,
        hook,
        mwc: name,
    }
}

impl Setup {
    fn pods(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            self.ns.name(),
            &ApiResource::erase::<Pod>(&()),
        )
    }

    fn sidecars(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            self.ns.name(),
            &ApiResource::erase::<Sidecar>(&()),
        )
    }

    fn cluster_sidecars(&self) -> Api<DynamicObject> {
        Api::all_with(
            self.client.clone(),
            &ApiResource::erase::<ClusterSidecar>(&()),
        )
    }

    /// A dry-run pod create: what the next pod would get.
    async fn try_pod(
        &self,
        labels: Value,
        annotations: Value,
    ) -> Result<DynamicObject, kube::Error> {
        let pod: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": unique_name("p"), "labels": labels, "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
        }))
        .unwrap();
        self.pods()
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &pod,
            )
            .await
    }

    /// Waits until the next pod with `labels` gets exactly these init containers.
    async fn expect_inits(&self, labels: Value, want: &[&str]) -> DynamicObject {
        let ok = wait_until(
            "injection to follow the objects",
            Duration::from_secs(30),
            || async { Ok(inits(&self.try_pod(labels.clone(), json!({})).await?) == want) },
        )
        .await;
        let p = self.try_pod(labels.clone(), json!({})).await.unwrap();
        assert!(ok.is_ok(), "want {want:?}, got {:?}", inits(&p));
        p
    }

    async fn teardown(self) {
        let _ = Api::<MutatingWebhookConfiguration>::all(self.client.clone())
            .delete(&self.mwc, &DeleteParams::default())
            .await;
        let _ = self.hook.shutdown(Duration::from_secs(2)).await;
        let _ = self.ns.delete().await;
    }
}

fn inits(p: &DynamicObject) -> Vec<String> {
    p.data["spec"]["initContainers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn status(p: &DynamicObject) -> Value {
    p.annotations()
        .get("tandem.dev/status")
        .map(|s| serde_json::from_str(s).unwrap())
        .unwrap_or(Value::Null)
}

fn sidecar(kind: &str, name: &str, ns: Option<&str>, spec: Value) -> Value {
    let mut meta = json!({"name": name});
    if let Some(ns) = ns {
        meta["namespace"] = json!(ns);
    }
    json!({"apiVersion": "tandem.dev/v1alpha1", "kind": kind, "metadata": meta, "spec": spec})
}

async fn apply(api: &Api<DynamicObject>, v: &Value) -> Result<DynamicObject, kube::Error> {
    let name = v["metadata"]["name"].as_str().unwrap();
    api.patch(
        name,
        &PatchParams::apply("tandem-e2e").validation_strict(),
        &Patch::Apply(v),
    )
    .await
}

async fn ready_condition(api: &Api<DynamicObject>, name: &str) -> Option<Value> {
    let o = api.get(name).await.ok()?;
    let conds = o.data["status"]["conditions"].as_array()?.clone();
    let generation = o.metadata.generation?;
    let c = conds.into_iter().find(|c| c["type"] == "Ready")?;
    (o.data["status"]["observedGeneration"] == json!(generation)).then_some(c)
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_sidecar_objects_change_injection_without_restart() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let s = setup(&cluster, "sc-live").await;
    let ns = s.ns.name().to_string();
    let web = json!({"app": "web"});

    // Nothing yet: the pod is left alone.
    let p = s.try_pod(web.clone(), json!({})).await.unwrap();
    assert!(inits(&p).is_empty() && status(&p).is_null());

    // Create a Sidecar: the next pod gets it, with its revision recorded.
    let spec = json!({"podSelector": {"matchLabels": {"app": "web"}},
        "containers": [{"name": "proxy", "image": "example/proxy:1", "command": ["/proxy"]}]});
    apply(
        &s.sidecars(),
        &sidecar("Sidecar", "proxy", Some(&ns), spec.clone()),
    )
    .await
    .unwrap();
    let p = s.expect_inits(web.clone(), &["proxy"]).await;
    let r1 = tandem_core::catalog::revision(&spec);
    assert_eq!(status(&p)["objects"][0]["revision"], json!(r1));
    assert_eq!(
        p.data["spec"]["initContainers"][0]["restartPolicy"],
        "Always"
    );

    // Update it: the next pod gets the new image and revision.
    let mut spec2 = spec.clone();
    spec2["containers"][0]["image"] = json!("example/proxy:2");
    apply(
        &s.sidecars(),
        &sidecar("Sidecar", "proxy", Some(&ns), spec2.clone()),
    )
    .await
    .unwrap();
    wait_until(
        "the update to reach admission",
        Duration::from_secs(30),
        || async {
            let p = s.try_pod(web.clone(), json!({})).await?;
            Ok(p.data["spec"]["initContainers"][0]["image"] == "example/proxy:2")
        },
    )
    .await
    .expect("updated image injected");
    let ready = ready_condition(&s.sidecars(), "proxy")
        .await
        .expect("status written");
    assert_eq!(ready["status"], "True");

    // A ClusterSidecar of the same name is shadowed by the Sidecar in this namespace ...
    let cspec = json!({"podSelector": {}, "order": 5, "namespaceSelector": {"matchLabels": {"tandem-e2e-ns": ns}},
        "containers": [{"name": "cluster-proxy", "image": "example/cproxy:1", "command": ["/p"]}]});
    let cname = unique_name("proxy");
    // (cluster-scoped objects are shared by parallel runs: use a unique name, and a
    // same-named namespaced object to show the shadowing)
    apply(
        &s.cluster_sidecars(),
        &sidecar("ClusterSidecar", &cname, None, cspec),
    )
    .await
    .unwrap();
    apply(
        &s.sidecars(),
        &sidecar("Sidecar", &cname, Some(&ns), spec2.clone()),
    )
    .await
    .unwrap();
    // ... which conflicts on the container name "proxy" with Sidecar proxy, the older one:
    let bad = wait_until(
        "the conflict to be reported",
        Duration::from_secs(30),
        || async {
            Ok(ready_condition(&s.sidecars(), &cname)
                .await
                .is_some_and(|c| c["reason"] == "ConflictingNames"))
        },
    )
    .await;
    assert!(
        bad.is_ok(),
        "{:?}",
        ready_condition(&s.sidecars(), &cname).await
    );
    // Pods still get Sidecar proxy; the shadowed ClusterSidecar is not injected here.
    s.expect_inits(web.clone(), &["proxy"]).await;
    // Delete the namespaced one: the ClusterSidecar applies (its namespaceSelector picks
    // this namespace by a label only it carries).
    s.sidecars()
        .delete(&cname, &DeleteParams::default())
        .await
        .unwrap();
    s.expect_inits(web.clone(), &["proxy", "cluster-proxy"])
        .await;
    // Delete the ClusterSidecar and the Sidecar: nothing again.
    s.cluster_sidecars()
        .delete(&cname, &DeleteParams::default())
        .await
        .unwrap();
    s.sidecars()
        .delete("proxy", &DeleteParams::default())
        .await
        .unwrap();
    wait_until(
        "deletes to reach admission",
        Duration::from_secs(30),
        || async { Ok(status(&s.try_pod(web.clone(), json!({})).await?).is_null()) },
    )
    .await
    .expect("no injection once deleted");

    // The API server itself refuses a typo in a container field and a bad quantity.
    let typo = json!({"podSelector": {}, "containers": [{"name": "t", "image": "t:1", "imagePullPolcy": "Always"}]});
    let err = apply(&s.sidecars(), &sidecar("Sidecar", "typo", Some(&ns), typo))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("imagePullPolcy"), "{err}");
    let quantity = json!({"podSelector": {}, "containers": [{"name": "t", "image": "t:1",
        "resources": {"limits": {"memory": "64 MiB"}}}]});
    let err = apply(
        &s.sidecars(),
        &sidecar("Sidecar", "quantity", Some(&ns), quantity),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("memory"), "{err}");

    // An unusable object (a selector operator the API server's schema can't refuse) is
    // reported in its status and with an Event; pods that don't select it are unaffected,
    // pods that do are admitted without it and told why.
    let broken = json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["broken"]}]},
        "containers": [{"name": "broken", "image": "b:1", "command": ["/b"]}]});
    apply(
        &s.sidecars(),
        &sidecar("Sidecar", "broken", Some(&ns), broken),
    )
    .await
    .unwrap();
    let good = json!({"podSelector": {"matchLabels": {"app": "web"}},
        "containers": [{"name": "logs", "image": "l:1", "command": ["/l"]}]});
    apply(&s.sidecars(), &sidecar("Sidecar", "logs", Some(&ns), good))
        .await
        .unwrap();
    wait_until(
        "the invalid object to be reported",
        Duration::from_secs(30),
        || async {
            Ok(ready_condition(&s.sidecars(), "broken")
                .await
                .is_some_and(|c| {
                    c["status"] == "False"
                        && c["reason"] == "Invalid"
                        && c["message"].as_str().unwrap_or("").contains("Equals")
                }))
        },
    )
    .await
    .expect("Invalid condition with the reason");
    s.expect_inits(web.clone(), &["logs"]).await;
    let asked = s
        .try_pod(
            json!({"app": "other"}),
            json!({"tandem.dev/sidecars": "broken"}),
        )
        .await;
    let err = asked.unwrap_err().to_string();
    assert!(err.contains("broken") && err.contains("Equals"), "{err}");
    let events: Api<DynamicObject> = Api::namespaced_with(
        s.client.clone(),
        &ns,
        &ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "events.k8s.io",
            "v1",
            "Event",
        )),
    );
    wait_until(
        "an Event about the invalid object",
        Duration::from_secs(30),
        || async {
            let list = events.list(&ListParams::default()).await?;
            Ok(list
                .items
                .iter()
                .any(|e| e.data["regarding"]["name"] == "broken" && e.data["reason"] == "Invalid"))
        },
    )
    .await
    .expect("Warning event on the Sidecar");
    s.teardown().await;
}

fn tandem(cluster: &TestCluster, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .arg("--kubeconfig")
        .arg(cluster.admin_kubeconfig())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn e2e_status_lists_old_revisions_and_rollout_restarts_owners() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let s = setup(&cluster, "sc-rollout").await;
    let ns = s.ns.name().to_string();
    let spec = json!({"podSelector": {"matchLabels": {"app": "shop"}},
        "containers": [{"name": "agent", "image": "example/agent:1", "command": ["/agent"]}]});
    apply(
        &s.sidecars(),
        &sidecar("Sidecar", "agent", Some(&ns), spec.clone()),
    )
    .await
    .unwrap();
    s.expect_inits(json!({"app": "shop"}), &["agent"]).await;
    let deployments: Api<Deployment> = Api::namespaced(s.client.clone(), &ns);
    let dep: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "shop"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "shop"}},
            "template": {"metadata": {"labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &dep)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &ns);
    let r1 = tandem_core::catalog::revision(&spec);
    wait_until("two injected pods", Duration::from_secs(60), || async {
        let l = pods.list(&ListParams::default().labels("app=shop")).await?;
        Ok(l.items.len() == 2
            && l.items.iter().all(|p| {
                p.annotations()
                    .get("tandem.dev/status")
                    .is_some_and(|a| a.contains(&r1))
            }))
    })
    .await
    .expect("Deployment's pods injected");
    let (ok, out, err) = tandem(&cluster, &["status", "-n", &ns, "-o", "json"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!([]),
        "all current"
    );

    // Update the Sidecar: both pods are now behind.
    let mut spec2 = spec.clone();
    spec2["containers"][0]["image"] = json!("example/agent:2");
    apply(
        &s.sidecars(),
        &sidecar("Sidecar", "agent", Some(&ns), spec2.clone()),
    )
    .await
    .unwrap();
    let r2 = tandem_core::catalog::revision(&spec2);
    let (ok, out, err) = tandem(&cluster, &["status", "-n", &ns, "-o", "json"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["ownerKind"], "Deployment");
    assert_eq!(v[0]["ownerName"], "shop");
    assert_eq!(v[0]["podRevision"], json!(r1));
    assert_eq!(v[0]["currentRevision"], json!(r2));
    assert_eq!(v[0]["pods"].as_array().unwrap().len(), 2);
    let (ok, table, _) = tandem(&cluster, &["status", "-n", &ns]);
    assert!(
        ok && table.contains("Deployment/shop") && table.contains("Sidecar/agent"),
        "{table}"
    );

    // Dry run by default: nothing changes.
    let (ok, out, err) = tandem(&cluster, &["rollout", "-n", &ns]);
    assert!(ok, "{err}");
    assert!(
        out.contains("would restart Deployment") && out.contains("dry run"),
        "{out}"
    );
    let restarted_at = "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt";
    let before = serde_json::to_value(deployments.get("shop").await.unwrap()).unwrap();
    assert!(before.pointer(restarted_at).is_none());

    // --yes restarts the Deployment; its new pods get the current revision.
    let (ok, out, err) = tandem(
        &cluster,
        &["rollout", "-n", &ns, "--yes", "--interval", "1s"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("restarted Deployment"), "{out}");
    let after = serde_json::to_value(deployments.get("shop").await.unwrap()).unwrap();
    assert!(after.pointer(restarted_at).is_some(), "{after}");
    wait_until(
        "new pods on the current revision",
        Duration::from_secs(90),
        || async {
            let l = pods.list(&ListParams::default().labels("app=shop")).await?;
            Ok(l.items.iter().any(|p| {
                p.annotations()
                    .get("tandem.dev/status")
                    .is_some_and(|a| a.contains(&r2))
            }))
        },
    )
    .await
    .expect("the restart re-created pods with the new revision");
    s.teardown().await;
}
