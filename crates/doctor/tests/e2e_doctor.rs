//! End-to-end tests of `tandem doctor` and `tandem label-nodes` against the real control
//! plane of `e2e/` (kube-apiserver, scheduler, controller-manager, kwok nodes).
//!
//! Run: `bash e2e/ci.sh` brings the control plane up; then
//! `TANDEM_E2E_NO_START=1 cargo test -p tandem-doctor --test e2e_doctor -- --ignored --test-threads=1`.
//! Every test scopes the doctor to its own nodes (a unique label) and namespace, so
//! that what other tests leave behind doesn't change its verdicts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tandem_core::names::{NODE_EVIDENCE_ANNOTATION, NODE_LABEL};
use tandem_doctor::report::{Report, Status};
use tandem_doctor::scan::Progress;
use tandem_doctor::{DoctorArgs, LabelNodesArgs};
use tandem_testcluster::{FakeNode, TestCluster, unique_name, wait_until};

#[derive(Parser)]
struct DoctorCli {
    #[command(flatten)]
    args: DoctorArgs,
}

#[derive(Parser)]
struct LabelCli {
    #[command(flatten)]
    args: LabelNodesArgs,
}

/// A label that marks one test's nodes.
const GROUP: &str = "tandem.dev/e2e-group";

async fn doctor(kubeconfig: &std::path::Path, flags: &[&str]) -> Report {
    let mut argv = vec![
        "doctor".to_string(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
    ];
    argv.extend(flags.iter().map(|s| s.to_string()));
    let args = DoctorCli::try_parse_from(argv).expect("flags").args;
    let client = tandem_kube::connect(&args.cluster).await.expect("client");
    let report = tandem_doctor::doctor_cmd::diagnose(&client, &args, &mut Progress::stderr(true))
        .await
        .expect("doctor runs");
    eprintln!("{}", report.to_text());
    report
}

fn check<'a>(r: &'a Report, id: &str) -> &'a tandem_doctor::report::Check {
    r.checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id}"))
}

async fn nodes_in_group(cluster: &TestCluster, group: &str, versions: &[&str]) -> Vec<Node> {
    let mut out = Vec::new();
    for v in versions {
        let spec = FakeNode::new(&format!("dr-{}", v.replace('.', "-")), v).label(GROUP, group);
        out.push(cluster.create_node(&spec).await.expect("kwok node"));
    }
    out
}

async fn delete_nodes(cluster: &TestCluster, nodes: &[Node]) {
    for n in nodes {
        let _ = cluster.delete_node(n).await;
    }
}

fn name(n: &Node) -> String {
    n.metadata.name.clone().unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn doctor_all_pass_on_a_healthy_cluster() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let ns = cluster.namespace("doctor-ok").await.expect("namespace");
    let group = unique_name("ok");
    let current = cluster.current_version().to_string();
    let nodes = nodes_in_group(&cluster, &group, &[&current, &current]).await;
    let sel = format!("{GROUP}={group}");
    let r = doctor(
        &cluster.admin_kubeconfig(),
        &["-n", ns.name(), "--pods-namespace", ns.name(), "-l", &sel],
    )
    .await;
    delete_nodes(&cluster, &nodes).await;
    ns.delete().await.ok();
    for c in &r.checks {
        // tandem itself is not installed on the test control plane: its category skips.
        let want = if c.id == "tandem" {
            Status::Skip
        } else {
            Status::Pass
        };
        assert_eq!(c.status, want, "{}: {}", c.id, c.summary);
    }
    assert_eq!(r.exit_code, 0);
    assert_eq!(check(&r, "nodes").summary, "2 nodes: 2 run native sidecars");
    assert!(check(&r, "apiserver-gate").evidence[0].contains("SidecarContainers"));
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn doctor_names_the_old_kwok_nodes() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let group = unique_name("old");
    let current = cluster.current_version().to_string();
    let nodes = nodes_in_group(&cluster, &group, &["v1.27.9", "v1.28.15", &current]).await;
    let sel = format!("{GROUP}={group}");
    let r = doctor(
        &cluster.admin_kubeconfig(),
        &["-l", &sel, "--no-probe", "--node-timeout", "2"],
    )
    .await;
    delete_nodes(&cluster, &nodes).await;
    let c = check(&r, "nodes");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert_eq!(r.exit_code, 1);
    assert!(
        c.summary
            .starts_with("3 nodes: 1 runs native sidecars, 2 can't"),
        "{}",
        c.summary
    );
    let old = c
        .items
        .iter()
        .find(|i| i.subject.starts_with("kubelet v1.27.9"))
        .expect("1.27 group");
    assert_eq!(old.status, Status::Fail);
    assert_eq!(old.nodes, [name(&nodes[0])]);
    let mid = c
        .items
        .iter()
        .find(|i| i.subject.starts_with("kubelet v1.28.15"))
        .expect("1.28 group");
    assert_eq!(mid.nodes, [name(&nodes[1])]);
    assert!(
        mid.detail.contains("InitContainerRestartPolicyForbidden"),
        "{}",
        mid.detail
    );
    assert!(
        c.hint
            .as_deref()
            .unwrap_or_default()
            .contains("label-nodes")
    );
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn doctor_names_the_gate_when_the_apiserver_has_it_off() {
    let mut cluster = TestCluster::connect().await.expect("control plane");
    let old = cluster.old_version().to_string();
    let off = cluster
        .restart_apiserver(Some(&old), "SidecarContainers=false")
        .await;
    let r = match &off {
        Ok(()) => Some(
            doctor(
                &cluster.admin_kubeconfig(),
                &[
                    "-l",
                    "tandem.dev/no-such-node=1",
                    "--pods-namespace",
                    "default",
                ],
            )
            .await,
        ),
        Err(_) => None,
    };
    // Always go back to the current release for the tests that follow.
    cluster
        .restart_apiserver(None, "")
        .await
        .expect("restore the current release");
    off.expect("restart with the gate off");
    let r = r.expect("report");
    let gate = check(&r, "apiserver-gate");
    assert_eq!(gate.status, Status::Fail, "{gate:?}");
    assert!(
        gate.evidence[0].contains("kubernetes_feature_enabled{name=\"SidecarContainers\""),
        "{:?}",
        gate.evidence
    );
    assert!(gate.evidence[0].ends_with(" 0"), "{:?}", gate.evidence);
    assert!(
        gate.hint
            .as_deref()
            .unwrap_or_default()
            .contains("SidecarContainers=false")
    );
    assert_eq!(r.exit_code, 1);
    // The probe shows the API server dropping the field itself, and says so.
    let w = check(&r, "webhooks");
    if w.status == Status::Fail {
        assert!(w.summary.contains("API server itself"), "{}", w.summary);
    }
}

/// The pre-1.28 `Container` schema: what an old webhook decodes pods into (no
/// `restartPolicy`), before it re-encodes and replaces the whole spec.
#[derive(serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct OldContainer {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    termination_message_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    termination_message_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_pull_policy: Option<String>,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct OldPodSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    init_containers: Vec<OldContainer>,
    containers: Vec<OldContainer>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

fn strip_like_an_old_webhook(obj: &kube::core::DynamicObject) -> json_patch::Patch {
    let spec = obj.data.get("spec").cloned().unwrap_or(Value::Null);
    let old: Result<OldPodSpec, _> = serde_json::from_value(spec);
    match old.ok().and_then(|s| serde_json::to_value(s).ok()) {
        Some(reencoded) => {
            serde_json::from_value(json!([{"op": "replace", "path": "/spec", "value": reencoded}]))
                .unwrap_or_else(|_| json_patch::Patch(vec![]))
        }
        None => json_patch::Patch(vec![]),
    }
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn doctor_names_a_stripping_webhook_as_the_suspect() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let ns = cluster.namespace("doctor-wh").await.expect("namespace");
    let hook = tandem_e2e::webhook::TestWebhook::start(Arc::new(strip_like_an_old_webhook))
        .await
        .expect("webhook");
    let cfg_name = unique_name("legacy-injector");
    let cfg: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": cfg_name, "labels": {"tandem.dev/e2e": "true"}},
        "webhooks": [{
            "name": "inject.legacy.example.com",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "clientConfig": {"url": hook.url(), "caBundle": base64(hook.ca_pem().as_bytes())},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.name()}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
        }]
    }))
    .expect("config");
    let cfgs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    cfgs.create(&PostParams::default(), &cfg)
        .await
        .expect("register webhook");
    // Webhook configurations reach the admission chain within a second or so.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = doctor(
        &cluster.admin_kubeconfig(),
        &[
            "-n",
            ns.name(),
            "--pods-namespace",
            ns.name(),
            "-l",
            "tandem.dev/no-such-node=1",
        ],
    )
    .await;
    let _ = cfgs.delete(&cfg_name, &DeleteParams::default()).await;
    let calls = hook.calls();
    ns.delete().await.ok();
    let w = check(&r, "webhooks");
    assert!(calls > 0, "the webhook was never called");
    assert_eq!(w.status, Status::Fail, "{w:?}");
    let suspect = format!("webhook {cfg_name}/inject.legacy.example.com");
    let item = w
        .items
        .iter()
        .find(|i| i.subject == suspect)
        .unwrap_or_else(|| panic!("{suspect} not named: {w:?}"));
    assert!(item.detail.starts_with("suspect"), "{}", item.detail);
    assert!(
        w.summary.contains("restartPolicy: Always is gone"),
        "{}",
        w.summary
    );
    assert_eq!(r.exit_code, 1);
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn doctor_explains_a_stuck_pod() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let ns = cluster.namespace("doctor-stuck").await.expect("namespace");
    // A node that no kubelet (and no kwok) serves: pods bound to it stay Pending, as a
    // pod whose sidecar never exits stays in Init on a real 1.27 kubelet.
    let node_name = unique_name("dr-stuck-127");
    let mut node = FakeNode::new("unused", "v1.27.9")
        .label(GROUP, &node_name)
        .to_node(&node_name);
    if let Some(a) = node.metadata.annotations.as_mut() {
        a.remove(tandem_testcluster::KWOK_NODE_ANNOTATION);
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("node");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {
            "nodeName": node_name,
            "initContainers": [{"name": "mesh-proxy", "image": "envoy", "restartPolicy": "Always"}],
            "containers": [{"name": "app", "image": "app"}],
        }
    }))
    .expect("pod");
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod created");
    let sel = format!("{GROUP}={node_name}");
    let r = doctor(
        &cluster.admin_kubeconfig(),
        &[
            "-n",
            ns.name(),
            "--pods-namespace",
            ns.name(),
            "-l",
            &sel,
            "--no-probe",
        ],
    )
    .await;
    let ns_name = ns.name().to_string();
    ns.delete().await.ok();
    let _ = cluster.delete_node(&node).await;
    let c = check(&r, "stuck-pods");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert_eq!(c.items.len(), 1);
    assert_eq!(c.items[0].subject, format!("pod {ns_name}/web"));
    let d = &c.items[0].detail;
    assert!(
        d.starts_with("stuck in Init: its native sidecar \"mesh-proxy\""),
        "{d}"
    );
    assert!(d.contains(&node_name) && d.contains("v1.27.9"), "{d}");
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn doctor_reports_missing_permissions_with_the_restricted_identity() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let group = unique_name("rbac");
    let nodes = nodes_in_group(&cluster, &group, &["v1.30.4"]).await;
    let sel = format!("{GROUP}={group}");
    let r = doctor(
        &cluster.restricted_kubeconfig(),
        &["-l", &sel, "--pods-namespace", "default"],
    )
    .await;
    delete_nodes(&cluster, &nodes).await;
    let w = check(&r, "webhooks");
    assert_eq!(w.status, Status::Error, "{w:?}");
    let p = w.permission.as_ref().expect("permission named");
    assert_eq!((p.verb.as_str(), p.resource.as_str()), ("create", "pods"));
    assert!(
        w.summary.contains("create pods in namespace default"),
        "{}",
        w.summary
    );
    let n = check(&r, "nodes");
    assert_eq!(
        n.permission.as_ref().map(|p| p.resource.as_str()),
        Some("nodes/proxy"),
        "{n:?}"
    );
    assert_eq!(r.exit_code, 2, "no failures, but a check could not run");
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn label_nodes_labels_relabels_and_the_scheduler_follows() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let group = unique_name("lbl");
    let current = cluster.current_version().to_string();
    let nodes = nodes_in_group(&cluster, &group, &["v1.27.9", "v1.28.15", &current]).await;
    let sel = format!("{GROUP}={group}");
    let kc = cluster.admin_kubeconfig().display().to_string();
    let args = LabelCli::try_parse_from([
        "label-nodes",
        "--kubeconfig",
        &kc,
        "--once",
        "-l",
        &sel,
        "--node-timeout",
        "2",
    ])
    .expect("flags")
    .args;
    let report =
        tandem_doctor::label_nodes_cmd::label_once(&client, &args, &mut Progress::stderr(true))
            .await
            .expect("labelled");
    assert_eq!(report.changes.len(), 3, "{report:?}");
    let api: Api<Node> = Api::all(client.clone());
    let label_of = |n: &Node| {
        n.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(NODE_LABEL))
            .cloned()
    };
    let mut got = Vec::new();
    for n in &nodes {
        let fresh = api.get(&name(n)).await.expect("node");
        let evidence = fresh
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(NODE_EVIDENCE_ANNOTATION))
            .cloned();
        assert!(
            evidence.is_some_and(|e| e.contains("kubelet v1.")),
            "evidence on {}",
            name(n)
        );
        // Other labels survive the merge patch.
        assert_eq!(
            fresh.metadata.labels.as_ref().and_then(|l| l.get(GROUP)),
            Some(&group)
        );
        got.push(label_of(&fresh));
    }
    assert_eq!(
        got,
        [
            Some("false".into()),
            Some("false".into()),
            Some("true".into())
        ]
    );
    // A second run changes nothing.
    let again =
        tandem_doctor::label_nodes_cmd::label_once(&client, &args, &mut Progress::stderr(true))
            .await
            .expect("again");
    assert!(again.changes.is_empty(), "{again:?}");

    // The controller follows a kubelet upgrade of the 1.27 node.
    let ctl_args = LabelCli::try_parse_from(["label-nodes", "--kubeconfig", &kc, "-l", &sel])
        .expect("flags")
        .args;
    let ctl_client = client.clone();
    let controller = tokio::spawn(async move {
        tandem_doctor::label_nodes_cmd::run_controller(ctl_client, &ctl_args).await
    });
    let upgraded = name(&nodes[0]);
    api.patch_status(
        &upgraded,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"nodeInfo": {"kubeletVersion": current}}})),
    )
    .await
    .expect("upgrade the kubelet version");
    let flipped = wait_until("the label to flip", Duration::from_secs(30), || async {
        Ok(api
            .get(&upgraded)
            .await?
            .metadata
            .labels
            .and_then(|l| l.get(NODE_LABEL).cloned())
            .as_deref()
            == Some("true"))
    })
    .await;
    controller.abort();

    // The scheduler places affinity-mode pods only on labelled nodes.
    let ns = cluster.namespace("affinity").await.expect("namespace");
    let config = tandem_core::Config::builtin();
    let knowledge = tandem_core::ClusterKnowledge::default();
    let injector = tandem_core::Injector {
        config: &config,
        knowledge: &knowledge,
        mode_override: Some(tandem_core::Mode::Affinity),
    };
    let mut placed = Vec::new();
    for i in 0..6 {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("aff-{i}"), "namespace": ns.name()},
            "spec": {"nodeSelector": {GROUP: group}, "containers": [{"name": "app", "image": "app"}],
                     "tolerations": [{"operator": "Exists"}]}});
        match injector
            .inject_pod(&pod, tandem_core::NamespaceOptIn::Unknown)
            .expect("inject")
        {
            tandem_core::PodOutcome::Injected(inj) => {
                tandem_core::patch::apply(&mut pod, &inj.patch).expect("patch")
            }
            other => panic!("not injected: {other:?}"),
        }
        let pod: Pod = serde_json::from_value(pod).expect("pod");
        ns.api::<Pod>()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create");
    }
    let pods = ns.api::<Pod>();
    let all_bound = wait_until("pods to be scheduled", Duration::from_secs(60), || async {
        let list = pods.list(&Default::default()).await?;
        Ok(list
            .items
            .iter()
            .all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()))
    })
    .await;
    for p in pods.list(&Default::default()).await.expect("list").items {
        placed.push(p.spec.and_then(|s| s.node_name).unwrap_or_default());
    }
    ns.delete().await.ok();
    delete_nodes(&cluster, &nodes).await;
    flipped.expect("the controller flipped the label after the upgrade");
    all_bound.expect("affinity-mode pods scheduled");
    let labelled_true = [name(&nodes[0]), name(&nodes[2])];
    for n in &placed {
        assert!(
            labelled_true.contains(n),
            "pod placed on {n}, which is labelled false"
        );
    }
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh (scale run: 2,000 kwok nodes)"]
async fn doctor_scale_2000_nodes() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let count: usize = std::env::var("TANDEM_SCALE_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let group = unique_name("scale");
    let current = cluster.current_version().to_string();
    let api: Api<Node> = Api::all(client.clone());
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut names = Vec::new();
    for i in 0..count {
        // Mostly current, some too old, some where the metric matters (1.30).
        let version = match i % 40 {
            0 => "v1.27.9".to_string(),
            1 => "v1.30.4".to_string(),
            _ => current.clone(),
        };
        let node_name = format!("{group}-{i}");
        names.push(node_name.clone());
        let node = FakeNode::new("scale", &version)
            .label(GROUP, &group)
            .to_node(&node_name);
        let api = api.clone();
        while tasks.len() >= 16 {
            tasks.join_next().await;
        }
        tasks.spawn(async move { api.create(&PostParams::default(), &node).await.map(|_| ()) });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("node created");
    }
    eprintln!("created {count} nodes in {:?}", start.elapsed());
    let sel = format!("{GROUP}={group}");
    let t = Instant::now();
    let r = doctor(
        &cluster.admin_kubeconfig(),
        &[
            "-l",
            &sel,
            "--no-probe",
            "--pods-namespace",
            "default",
            "--node-timeout",
            "3",
        ],
    )
    .await;
    let wall = t.elapsed();
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(str::to_string)
        })
        .unwrap_or_default();
    eprintln!(
        "SCALE: doctor over {count} nodes (selector {sel}): wall {wall:?}; test process {hwm}"
    );
    // Clean up in parallel (TANDEM_SCALE_KEEP=1 keeps the nodes, to measure the binary).
    let keep = std::env::var("TANDEM_SCALE_KEEP").is_ok_and(|v| v == "1");
    for n in names.into_iter().filter(|_| !keep) {
        let api = api.clone();
        while tasks.len() >= 16 {
            tasks.join_next().await;
        }
        tasks.spawn(async move { api.delete(&n, &DeleteParams::default()).await.map(|_| ()) });
    }
    while tasks.join_next().await.is_some() {}
    let c = check(&r, "nodes");
    assert!(
        c.summary.starts_with(&format!("{count} nodes:")),
        "{}",
        c.summary
    );
    assert_eq!(
        c.status,
        Status::Fail,
        "the 1.27 nodes can't run native sidecars"
    );
    assert!(
        c.items.len() < 10,
        "grouped by version, not one line per node"
    );
    assert!(wall < Duration::from_secs(120), "took {wall:?}");
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn doctor_lists_missed_injections_with_their_owners() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let ns = cluster.namespace("doctor-missed").await.expect("namespace");
    // Opt the namespace in; no webhook is running, as when it was down under
    // failurePolicy: Ignore.
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    nss.patch(
        ns.name(),
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"labels": {tandem_core::names::INJECT_LABEL: "enabled"}}}),
        ),
    )
    .await
    .expect("opt in");
    let nowhere = json!({"tandem.dev/no-such-node": "1"});
    let rs: k8s_openapi::api::apps::v1::ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"nodeSelector": nowhere, "containers": [{"name": "app", "image": "app"}]}}}
    }))
    .expect("rs");
    ns.api::<k8s_openapi::api::apps::v1::ReplicaSet>()
        .create(&PostParams::default(), &rs)
        .await
        .expect("replicaset");
    let bare: Pod = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"},
        "spec": {"nodeSelector": nowhere, "containers": [{"name": "app", "image": "app"}]}}),
    )
    .expect("pod");
    ns.api::<Pod>()
        .create(&PostParams::default(), &bare)
        .await
        .expect("pod");
    let pods = ns.api::<Pod>();
    wait_until("the ReplicaSet's pods", Duration::from_secs(60), || async {
        Ok(pods.list(&Default::default()).await?.items.len() == 3)
    })
    .await
    .expect("3 pods");
    let r = doctor(
        &cluster.admin_kubeconfig(),
        &[
            "-n",
            ns.name(),
            "--pods-namespace",
            ns.name(),
            "-l",
            "tandem.dev/no-such-node=1",
            "--no-probe",
        ],
    )
    .await;
    let ns_name = ns.name().to_string();
    ns.delete().await.ok();
    let c = check(&r, "missed-injections");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert_eq!(
        c.summary,
        "3 pods in opted-in namespaces run without their sidecars"
    );
    let subjects: Vec<&str> = c.items.iter().map(|i| i.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            format!("Pod {ns_name}/bare (1 pod)"),
            format!("ReplicaSet {ns_name}/web (2 pods)")
        ]
    );
}
