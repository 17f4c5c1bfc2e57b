//! `adopt` end to end over raw documents: the real-world shapes (Istio, Linkerd,
//! Vault's agent, a cloud-sql-proxy Job under kubexit), and properties: no field is
//! lost, adopting twice equals adopting once, and `adopt` then `inject` equals `inject`
//! then `adopt`.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
use json_patch::PatchOperation;
use proptest::prelude::*;
use serde_json::{Value, json};
use tandem_core::adopt::{AdoptOutcome, Adopter, Adoption, WorkaroundKind};
use tandem_core::config::Config;
use tandem_core::inject::Injector;
use tandem_core::knowledge::{ApiServerFacts, ClusterKnowledge, NodeFacts};
use tandem_core::mode::Mode;
use tandem_core::{KubeVersion, patch};

fn cluster(kubelets: &[&str], apiserver: Option<&str>) -> ClusterKnowledge {
    ClusterKnowledge {
        apiserver: ApiServerFacts {
            version: apiserver.map(|v| KubeVersion::parse(v).unwrap()),
            gate: None,
        },
        nodes: kubelets
            .iter()
            .map(|v| NodeFacts::from_version(KubeVersion::parse(v).unwrap()))
            .collect(),
        nodes_have_labels: false,
        ..Default::default()
    }
}

fn modern() -> ClusterKnowledge {
    cluster(&["v1.31.4", "v1.33.1"], Some("v1.33.1"))
}

struct Run {
    out: Value,
    ops: Vec<PatchOperation>,
    pods: Vec<AdoptOutcome>,
}

fn adopt_with(doc: &Value, k: &ClusterKnowledge, strip: bool, cfg: &Config) -> Run {
    let a = Adopter {
        config: cfg,
        knowledge: k,
        force_native: false,
        strip_workarounds: strip,
        objects: None,
        namespace: None,
    };
    let res = a.adopt_document(doc).unwrap();
    let mut out = doc.clone();
    patch::apply(&mut out, &res.patch).unwrap();
    Run {
        out,
        ops: res.patch,
        pods: res.pods.into_iter().map(|(_, o)| o).collect(),
    }
}

fn adopt(doc: &Value, k: &ClusterKnowledge, strip: bool) -> Run {
    adopt_with(doc, k, strip, &Config::builtin())
}

fn planned(r: &Run) -> &Adoption {
    match &r.pods[0] {
        AdoptOutcome::Planned(a) => a,
        other => panic!("not planned: {other:?}"),
    }
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|l| l.iter().map(|c| c["name"].as_str().unwrap()).collect())
        .unwrap_or_default()
}

fn istio_proxy() -> Value {
    json!({
        "name": "istio-proxy",
        "image": "docker.io/istio/proxyv2:1.24.0",
        "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 15},
        "lifecycle": {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}},
        "securityContext": {"runAsUser": 1337, "readOnlyRootFilesystem": true},
        "volumeMounts": [{"name": "istio-envoy", "mountPath": "/etc/istio/proxy"}],
        "futureContainerField": {"keep": "me"}
    })
}

fn istio_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}, "annotations": {
                "sidecar.istio.io/status": "{\"initContainers\":[\"istio-init\"],\"containers\":[\"istio-proxy\"]}",
                "kubectl.kubernetes.io/default-container": "web",
                "proxy.istio.io/config": "holdApplicationUntilProxyStarts: true"
            }},
            "spec": {
                "initContainers": [{"name": "istio-init", "image": "docker.io/istio/proxyv2:1.24.0", "args": ["istio-iptables"]}],
                "containers": [{"name": "web", "image": "shop/web:1", "ports": [{"containerPort": 8080}]}, istio_proxy()],
                "volumes": [{"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}],
                "futurePodField": 7
            }
        }}
    })
}

#[test]
fn istio_proxy_moves_after_istio_init_verbatim() {
    let r = adopt(&istio_deployment(), &modern(), false);
    let spec = &r.out["spec"]["template"]["spec"];
    assert_eq!(
        names(&spec["initContainers"]),
        ["istio-init", "istio-proxy"]
    );
    assert_eq!(names(&spec["containers"]), ["web"]);
    let mut want = istio_proxy();
    want["restartPolicy"] = json!("Always");
    assert_eq!(spec["initContainers"][1], want);
    assert_eq!(spec["futurePodField"], 7);
    // One verbatim move, one added field, one annotation.
    assert!(matches!(r.ops[0], PatchOperation::Move(_)), "{:?}", r.ops);
    assert_eq!(r.ops.len(), 3, "{:?}", r.ops);
    let a = planned(&r);
    assert_eq!(a.moved, ["istio-proxy"]);
    assert!(a.recognised[0].reason.contains("istio-proxy"));
    // The API server is 1.33: probes and hooks stay, and the output says so.
    assert!(
        a.notes
            .iter()
            .any(|n| n.contains("readinessProbe, lifecycle kept")),
        "{:?}",
        a.notes
    );
    // postStart wait without a startupProbe: reported, kept even when stripping.
    let hold: Vec<_> = a
        .workarounds
        .iter()
        .filter(|w| w.kind == WorkaroundKind::HoldUntilStarted)
        .collect();
    assert_eq!(hold.len(), 2, "{:?}", a.workarounds);
    let stripped = adopt(&istio_deployment(), &modern(), true);
    assert_eq!(
        stripped.out["spec"]["template"]["spec"]["initContainers"][1]["lifecycle"],
        istio_proxy()["lifecycle"]
    );
    // With a startupProbe the hold hook is redundant and --strip-workarounds removes it.
    let mut d = istio_deployment();
    d["spec"]["template"]["spec"]["containers"][1]["startupProbe"] =
        json!({"httpGet": {"path": "/healthz/ready", "port": 15021}});
    let s = adopt(&d, &modern(), true);
    let proxy = &s.out["spec"]["template"]["spec"]["initContainers"][1];
    assert_eq!(proxy["lifecycle"], json!({}));
    let a = planned(&s);
    assert!(a.workarounds.iter().any(|w| w.stripped
        && w.kind == WorkaroundKind::HoldUntilStarted
        && w.container == "istio-proxy"));
    let record: Value = serde_json::from_str(
        s.out["spec"]["template"]["metadata"]["annotations"]["tandem.dev/adopted"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        record,
        json!({"mode": "native", "sidecars": ["istio-proxy"],
               "stripped": ["hold-until-started postStart hook on istio-proxy"]})
    );
}

#[test]
fn old_or_mixed_nodes_leave_the_sidecar_and_say_why() {
    for (kubelets, why) in [
        (&["v1.27.16"][..], "too old"),
        (&["v1.27.16", "v1.31.0"][..], "universal is not possible"),
        (&["v1.28.15", "v1.31.0"][..], "would reject"),
    ] {
        let r = adopt(&istio_deployment(), &cluster(kubelets, None), true);
        assert!(r.ops.is_empty(), "{kubelets:?}: {:?}", r.ops);
        let a = planned(&r);
        assert_eq!(a.left, ["istio-proxy"]);
        assert!(a.moved.is_empty());
        assert!(
            a.decision.reasons.join(" ").contains(why),
            "{kubelets:?}: {:?}",
            a.decision.reasons
        );
    }
    // Nothing known: legacy, the safe choice, with the reason.
    let r = adopt(&istio_deployment(), &ClusterKnowledge::default(), false);
    assert!(r.ops.is_empty());
    assert!(planned(&r).decision.reasons[0].contains("no node knowledge"));
}

fn linkerd_pod(default_container: Option<&str>) -> Value {
    let mut annotations =
        json!({"linkerd.io/inject": "enabled", "linkerd.io/proxy-version": "edge-24.11.1"});
    if let Some(d) = default_container {
        annotations["kubectl.kubernetes.io/default-container"] = json!(d);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "api", "annotations": annotations},
        "spec": {
            "initContainers": [{"name": "linkerd-init", "image": "cr.l5d.io/linkerd/proxy-init:v2.4.1"}],
            "containers": [
                {"name": "linkerd-proxy", "image": "cr.l5d.io/linkerd/proxy:edge-24.11.1",
                 "ports": [{"containerPort": 4143, "name": "linkerd-proxy"}],
                 "lifecycle": {"postStart": {"exec": {"command": ["/usr/lib/linkerd/linkerd-await", "--timeout=2m", "--port=4191"]}}},
                 "livenessProbe": {"httpGet": {"path": "/live", "port": 4191}}},
                {"name": "api", "image": "shop/api:2"}
            ]
        }
    })
}

#[test]
fn linkerd_proxy_moves_after_linkerd_init_and_default_container_stays_right() {
    let r = adopt(&linkerd_pod(None), &modern(), false);
    assert_eq!(
        names(&r.out["spec"]["initContainers"]),
        ["linkerd-init", "linkerd-proxy"]
    );
    assert_eq!(names(&r.out["spec"]["containers"]), ["api"]);
    assert_eq!(
        r.out["spec"]["initContainers"][1]["restartPolicy"],
        "Always"
    );
    let a = planned(&r);
    assert!(
        a.notes
            .iter()
            .any(|n| n.contains("default container is now \"api\"")),
        "{:?}",
        a.notes
    );
    // An explicit default naming the proxy is pointed at the app.
    let r = adopt(&linkerd_pod(Some("linkerd-proxy")), &modern(), false);
    assert_eq!(
        r.out["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "api"
    );
    // One naming the app is left alone.
    let r = adopt(&linkerd_pod(Some("api")), &modern(), false);
    assert_eq!(
        r.out["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "api"
    );
}

#[test]
fn apiserver_that_drops_the_field_means_probes_and_hooks_go_when_forced() {
    let k = cluster(&["v1.31.0"], Some("v1.27.5"));
    // auto: the API server drops restartPolicy, so nothing moves.
    let r = adopt(&linkerd_pod(None), &k, false);
    assert!(r.ops.is_empty());
    // forced: it moves, and the fields that would make the create fail are dropped, named.
    let cfg = Config::builtin();
    let forced = Adopter {
        config: &cfg,
        knowledge: &k,
        force_native: true,
        strip_workarounds: false,
        objects: None,
        namespace: None,
    };
    let doc = linkerd_pod(None);
    let res = forced.adopt_document(&doc).unwrap();
    let mut out = doc.clone();
    patch::apply(&mut out, &res.patch).unwrap();
    let proxy = &out["spec"]["initContainers"][1];
    assert!(proxy.get("livenessProbe").is_none() && proxy.get("lifecycle").is_none());
    assert_eq!(proxy["ports"][0]["containerPort"], 4143);
    let AdoptOutcome::Planned(a) = &res.pods[0].1 else {
        panic!()
    };
    assert!(
        a.notes
            .iter()
            .any(|n| n.contains("livenessProbe, lifecycle dropped")),
        "{:?}",
        a.notes
    );
    assert!(
        !a.decision.warnings.is_empty(),
        "forced native says its risks"
    );
}

fn kubexit_job() -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "migrate", "namespace": "shop"},
        "spec": {"backoffLimit": 2, "template": {"spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "kubexit", "image": "karlkfi/kubexit:0.3.2",
                                "command": ["cp", "/bin/kubexit", "/kubexit/kubexit"],
                                "volumeMounts": [{"name": "kubexit", "mountPath": "/kubexit"}]}],
            "containers": [
                {"name": "migrate", "image": "shop/migrate:5",
                 "command": ["/kubexit/kubexit", "/migrate", "--apply"],
                 "env": [{"name": "KUBEXIT_NAME", "value": "migrate"},
                         {"name": "KUBEXIT_GRAVEYARD", "value": "/graveyard"},
                         {"name": "KUBEXIT_BIRTH_DEPS", "value": "cloud-sql-proxy"},
                         {"name": "DB_HOST", "value": "127.0.0.1"}],
                 "volumeMounts": [{"name": "graveyard", "mountPath": "/graveyard"}, {"name": "kubexit", "mountPath": "/kubexit"}]},
                {"name": "cloud-sql-proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.0",
                 "command": ["/kubexit/kubexit", "/cloud-sql-proxy", "--port=5432", "proj:region:db"],
                 "env": [{"name": "KUBEXIT_NAME", "value": "cloud-sql-proxy"},
                         {"name": "KUBEXIT_GRAVEYARD", "value": "/graveyard"},
                         {"name": "KUBEXIT_DEATH_DEPS", "value": "migrate"}],
                 "volumeMounts": [{"name": "graveyard", "mountPath": "/graveyard"},
                                  {"name": "kubexit", "mountPath": "/kubexit"}],
                 "securityContext": {"runAsNonRoot": true}}
            ],
            "volumes": [{"name": "graveyard", "emptyDir": {"medium": "Memory"}}, {"name": "kubexit", "emptyDir": {}}]
        }}}
    })
}

#[test]
fn cloud_sql_proxy_job_with_kubexit() {
    // Reported but kept without --strip-workarounds.
    let r = adopt(&kubexit_job(), &modern(), false);
    let spec = &r.out["spec"]["template"]["spec"];
    assert_eq!(
        names(&spec["initContainers"]),
        ["kubexit", "cloud-sql-proxy"]
    );
    assert_eq!(
        spec["containers"][0]["command"][0], "/kubexit/kubexit",
        "kept without --strip-workarounds"
    );
    let a = planned(&r);
    let kubexit: Vec<_> = a
        .workarounds
        .iter()
        .filter(|w| w.kind == WorkaroundKind::Kubexit)
        .collect();
    assert_eq!(kubexit.len(), 2);
    assert!(kubexit.iter().all(|w| !w.stripped
        && w.kept_because.as_deref() == Some("pass --strip-workarounds to remove it")));

    // Stripped: each wrapper and its env vars go, everything else stays.
    let r = adopt(&kubexit_job(), &modern(), true);
    let spec = &r.out["spec"]["template"]["spec"];
    assert_eq!(
        spec["containers"][0]["command"],
        json!(["/migrate", "--apply"])
    );
    assert_eq!(
        spec["containers"][0]["env"],
        json!([{"name": "DB_HOST", "value": "127.0.0.1"}])
    );
    let proxy = &spec["initContainers"][1];
    assert_eq!(
        proxy["command"],
        json!(["/cloud-sql-proxy", "--port=5432", "proj:region:db"])
    );
    assert!(
        proxy.get("env").is_none(),
        "every env var was kubexit's: env goes"
    );
    assert_eq!(proxy["securityContext"], json!({"runAsNonRoot": true}));
    assert_eq!(proxy["restartPolicy"], "Always");
    let a = planned(&r);
    assert_eq!(a.workarounds.iter().filter(|w| w.stripped).count(), 2);

    // On a 1.27 cluster the proxy stays, and so do the workarounds the Job needs.
    let r = adopt(&kubexit_job(), &cluster(&["v1.27.16"], None), true);
    assert!(r.ops.is_empty(), "{:?}", r.ops);
    let a = planned(&r);
    assert!(
        a.workarounds
            .iter()
            .all(|w| !w.stripped && w.kept_because.as_deref().unwrap().contains("still needed"))
    );
    assert!(
        a.decision
            .warnings
            .iter()
            .any(|w| w.contains("restartPolicy Never"))
    );
}

#[test]
fn vault_agent_goes_after_its_init_container() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "annotations": {
            "vault.hashicorp.com/agent-inject": "true",
            "vault.hashicorp.com/agent-inject-status": "injected"}},
        "spec": {
            "initContainers": [
                {"name": "vault-agent-init", "image": "hashicorp/vault:1.18.1", "args": ["agent", "-config=/vault/config/init.hcl"]},
                {"name": "migrate", "image": "shop/migrate:1"}
            ],
            "containers": [
                {"name": "app", "image": "shop/app:1"},
                {"name": "vault-agent", "image": "hashicorp/vault:1.18.1",
                 "args": ["agent", "-config=/vault/config/config.hcl"],
                 "volumeMounts": [{"name": "vault-secrets", "mountPath": "/vault/secrets"}]}
            ],
            "volumes": [{"name": "vault-secrets", "emptyDir": {"medium": "Memory"}}]
        }
    });
    let r = adopt(&pod, &modern(), false);
    assert_eq!(
        names(&r.out["spec"]["initContainers"]),
        ["vault-agent-init", "vault-agent", "migrate"]
    );
    assert_eq!(names(&r.out["spec"]["containers"]), ["app"]);
    assert!(
        planned(&r)
            .notes
            .iter()
            .any(|n| n.contains("before init containers migrate")),
        "{:?}",
        planned(&r).notes
    );
    // The image alone (hashicorp/vault) doesn't make a sidecar: Vault servers use it too.
    let mut renamed = pod.clone();
    renamed["spec"]["containers"][1]["name"] = json!("agent");
    let r = adopt(&renamed, &modern(), false);
    assert!(
        matches!(&r.pods[0], AdoptOutcome::Skipped { reason } if reason.contains("no legacy sidecars"))
    );
    // ... but the annotation can name it.
    renamed["metadata"]["annotations"]["tandem.dev/adopt"] = json!("agent");
    let r = adopt(&renamed, &modern(), false);
    assert_eq!(names(&r.out["spec"]["containers"]), ["app"]);
    assert_eq!(
        planned(&r).recognised[0].reason,
        "named in tandem.dev/adopt"
    );
}

#[test]
fn opt_out_only_sidecars_and_tandems_own_are_left_alone() {
    let mut p = linkerd_pod(None);
    p["metadata"]["labels"] = json!({"tandem.dev/adopt": "disabled"});
    let r = adopt(&p, &modern(), false);
    assert!(matches!(&r.pods[0], AdoptOutcome::Skipped { reason } if reason.contains("opted out")));
    p["metadata"]["labels"] = json!({"tandem.dev/adopt": "maybe"});
    let a = Adopter {
        config: &Config::builtin(),
        knowledge: &modern(),
        force_native: false,
        strip_workarounds: false,
        objects: None,
        namespace: None,
    };
    let err = a.adopt_document(&p).unwrap_err().to_string();
    assert!(
        err.contains("metadata.labels") && err.contains("maybe"),
        "{err}"
    );
    // A pod made only of recognised containers: nothing is moved.
    let only = json!({"kind": "Pod", "metadata": {"name": "envoy"},
        "spec": {"containers": [{"name": "envoy", "image": "envoyproxy/envoy:v1.32"}]}});
    let r = adopt(&only, &modern(), false);
    assert!(
        matches!(&r.pods[0], AdoptOutcome::Skipped { reason } if reason.contains("at least one"))
    );
    // tandem's injected log shipper (fluent-bit) is inject's, not adopt's.
    let cfg = Config::builtin();
    let k = cluster(&["v1.27.3"], None);
    let inj = Injector {
        config: &cfg,
        knowledge: &k,
        mode_override: Some(Mode::Legacy),
    };
    let doc = json!({"kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [{"name": "app", "image": "a"}]}});
    let res = inj.inject_document(&doc).unwrap();
    let mut injected = doc.clone();
    patch::apply(&mut injected, &res.patch).unwrap();
    let r = adopt(&injected, &modern(), false);
    assert!(r.ops.is_empty(), "{:?}", r.ops);
}

#[test]
fn recognition_list_is_configurable() {
    let cfg = Config::from_yaml(
        "sidecars: []\nadopt:\n  builtin: false\n  sidecars:\n  - name: acme\n    images: [acme/agent]\n    after: [acme-init]\n",
    )
    .unwrap();
    let pod = json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {
        "initContainers": [{"name": "acme-init", "image": "acme/init"}],
        "containers": [{"name": "app", "image": "a"}, {"name": "a1", "image": "reg.io/acme/agent:3"},
                       {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1"}]}});
    let r = adopt_with(&pod, &modern(), false, &cfg);
    assert_eq!(names(&r.out["spec"]["initContainers"]), ["acme-init", "a1"]);
    assert_eq!(names(&r.out["spec"]["containers"]), ["app", "istio-proxy"]);
    let err = Config::from_yaml("sidecars: []\nadopt:\n  sidecars:\n  - name: x\n").unwrap_err();
    assert!(err.to_string().contains("adopt"), "{err}");
}

// ---- properties ----

/// Pods with app containers, some recognisable sidecars (by name or image), other
/// init containers, unknown fields everywhere, and sometimes a Job's restartPolicy.
fn arb_pod() -> impl Strategy<Value = Value> {
    let sidecar = prop::sample::select(vec![
        json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24", "readinessProbe": {"httpGet": {"port": 15021}}}),
        json!({"name": "linkerd-proxy", "image": "cr.l5d.io/linkerd/proxy:edge", "ports": [{"containerPort": 4143}]}),
        json!({"name": "csp", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2", "command": ["/kubexit/kubexit", "/cloud-sql-proxy"], "env": [{"name": "KUBEXIT_NAME", "value": "csp"}]}),
        json!({"name": "vault-agent", "image": "hashicorp/vault:1", "lifecycle": {"preStop": {"exec": {"command": ["curl", "-X", "POST", "localhost:15020/quitquitquit"]}}}}),
        json!({"name": "otc-container", "image": "otel/opentelemetry-collector:0.1", "restartPolicy": "Always"}),
    ]);
    (
        prop::collection::btree_set("[a-z]{1,5}", 1..3),
        prop::collection::vec(sidecar, 0..4),
        prop::collection::vec(prop::sample::select(vec!["istio-init", "linkerd-init", "vault-agent-init", "migrate"]), 0..3),
        prop::option::of(prop::sample::select(vec!["Always", "Never"])),
        any::<bool>(),
        0usize..4,
    )
        .prop_map(|(apps, sidecars, inits, restart, with_meta, pos)| {
            let mut containers: Vec<Value> = apps
                .iter()
                .map(|n| json!({"name": format!("app-{n}"), "image": "x", "unknownField": n,
                                "command": ["/kubexit/kubexit", "/app"], "env": [{"name": "KUBEXIT_NAME", "value": n}]}))
                .collect();
            let mut seen = std::collections::BTreeSet::new();
            for (i, s) in sidecars.into_iter().enumerate() {
                if seen.insert(s["name"].as_str().unwrap().to_string()) {
                    containers.insert((pos + i) % (containers.len() + 1), s);
                }
            }
            let mut init_seen = std::collections::BTreeSet::new();
            let inits: Vec<Value> = inits
                .into_iter()
                .filter(|n| init_seen.insert(*n))
                .map(|n| json!({"name": n, "image": "i", "x-extra": [1, 2]}))
                .collect();
            let mut spec = json!({"containers": containers, "futureField": {"a": 1}});
            if !inits.is_empty() {
                spec["initContainers"] = json!(inits);
            }
            if let Some(r) = restart {
                spec["restartPolicy"] = json!(r);
            }
            let mut pod = json!({"kind": "Pod", "spec": spec});
            if with_meta {
                pod["metadata"] = json!({"name": "p", "annotations": {"other/thing": "1"}});
            }
            pod
        })
}

/// Every container object of a pod by name, with `restartPolicy` and what stripping
/// may remove taken out.
fn containers_by_name(pod: &Value, stripped: bool) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
    for key in ["initContainers", "containers"] {
        for c in pod["spec"][key].as_array().into_iter().flatten() {
            let mut c = c.clone();
            let o = c.as_object_mut().unwrap();
            o.remove("restartPolicy");
            if stripped {
                o.remove("env");
                o.remove("command");
                o.remove("lifecycle");
            }
            out.insert(o["name"].as_str().unwrap().to_string(), c);
        }
    }
    out
}

fn inject_doc(doc: &Value, k: &ClusterKnowledge, mode: Mode) -> Value {
    let cfg = Config::builtin();
    let inj = Injector {
        config: &cfg,
        knowledge: k,
        mode_override: Some(mode),
    };
    let res = inj.inject_document(doc).unwrap();
    let mut out = doc.clone();
    patch::apply(&mut out, &res.patch).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// No field is lost (every container object survives, moved whole), nothing but
    /// containers and annotations change, and adopting again changes nothing.
    #[test]
    fn adopt_never_loses_a_field_and_is_idempotent(
        p in arb_pod(),
        strip in any::<bool>(),
        which in 0usize..3,
    ) {
        let k = [modern(), cluster(&["v1.27.1"], None), cluster(&["v1.27.1", "v1.30.0"], Some("v1.30.0"))][which].clone();
        let r = adopt(&p, &k, strip);
        prop_assert_eq!(containers_by_name(&r.out, strip), containers_by_name(&p, strip));
        prop_assert_eq!(&r.out["spec"]["futureField"], &p["spec"]["futureField"]);
        prop_assert_eq!(&r.out["kind"], &p["kind"]);
        // Without stripping, only moves and adds.
        if !strip {
            prop_assert!(r.ops.iter().all(|op| matches!(op, PatchOperation::Move(_) | PatchOperation::Add(_))), "{:?}", r.ops);
            // Each container object is byte-for-byte the original, plus restartPolicy.
            let before = containers_by_name(&p, false);
            for (name, c) in containers_by_name(&r.out, false) {
                prop_assert_eq!(&before[&name], &c);
            }
        }
        // App containers stay, in order; moved ones are native sidecars.
        let apps = |v: &Value| names(&v["spec"]["containers"]).into_iter().filter(|n| n.starts_with("app-")).map(str::to_string).collect::<Vec<_>>();
        prop_assert_eq!(apps(&r.out), apps(&p));
        for c in r.out["spec"]["initContainers"].as_array().into_iter().flatten() {
            let was_regular = names(&p["spec"]["containers"]).contains(&c["name"].as_str().unwrap());
            if was_regular {
                prop_assert_eq!(&c["restartPolicy"], "Always");
            }
        }
        let again = adopt(&r.out, &k, strip);
        prop_assert!(again.ops.is_empty(), "{:?}", again.ops);
    }

    /// `adopt` then `inject` gives the same pod as `inject` then `adopt`, for every
    /// inject placement that doesn't narrow the pod's nodes (affinity does: after it,
    /// every candidate runs native sidecars and adopt rightly moves more).
    #[test]
    fn adopt_and_inject_commute(
        p in arb_pod(),
        mode in prop::sample::select(vec![Mode::Native, Mode::Legacy, Mode::Universal, Mode::Auto]),
        strip in any::<bool>(),
        which in 0usize..3,
    ) {
        let k = [modern(), cluster(&["v1.27.1"], None), cluster(&["v1.27.1", "v1.30.0"], Some("v1.30.0"))][which].clone();
        let a_then_i = inject_doc(&adopt(&p, &k, strip).out, &k, mode);
        let i_then_a = adopt(&inject_doc(&p, &k, mode), &k, strip).out;
        prop_assert_eq!(a_then_i, i_then_a);
    }
}

#[test]
fn inventory_says_what_could_move_what_is_blocked_and_which_jobs_rely_on_hacks() {
    use tandem_core::adopt::inventory::{inventory, text};
    let node = |name: &str, v: &str, pool: &str| {
        json!({"kind": "Node", "metadata": {"name": name, "labels": {"pool": pool}},
               "status": {"nodeInfo": {"kubeletVersion": v}}})
    };
    let nodes = [
        node("new-1", "v1.31.4", "new"),
        node("old-1", "v1.27.16", "old"),
    ];
    let k = ClusterKnowledge {
        nodes: ClusterKnowledge::from_node_objects(nodes.iter()).unwrap(),
        nodes_have_labels: true,
        ..Default::default()
    };
    let mut on_new = istio_deployment();
    on_new["spec"]["template"]["spec"]["nodeSelector"] = json!({"pool": "new"});
    let plain = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain", "namespace": "x"},
                       "spec": {"containers": [{"name": "app", "image": "a"}]}});
    let cfg = Config::builtin();
    let a = Adopter {
        config: &cfg,
        knowledge: &k,
        force_native: false,
        strip_workarounds: false,
        objects: None,
        namespace: None,
    };
    let inv = inventory(&a, &[on_new, kubexit_job(), plain]);
    assert_eq!(
        (
            inv.scanned,
            inv.with_legacy_sidecars,
            inv.movable,
            inv.blocked
        ),
        (3, 2, 1, 1)
    );
    assert_eq!(inv.jobs_with_termination_workarounds, 1);
    assert_eq!(inv.workloads[0].verdict, "movable");
    assert_eq!(inv.workloads[1].verdict, "blocked");
    assert!(
        inv.workloads[1].reasons.join(" ").contains("old-1"),
        "{:?}",
        inv.workloads[1].reasons
    );
    let t = text(&inv);
    assert!(
        t.starts_with("3 workloads scanned, 2 with legacy sidecars: 1 could move now, 1 blocked"),
        "{t}"
    );
    assert!(
        t.contains("blocked Job shop/migrate: cloud-sql-proxy"),
        "{t}"
    );
    assert!(
        t.contains("termination workaround: kubexit wrapper on migrate"),
        "{t}"
    );
    let j = serde_json::to_value(&inv).unwrap();
    assert_eq!(j["workloads"][0]["sidecars"][0]["container"], "istio-proxy");
    assert_eq!(j["jobsWithTerminationWorkarounds"], 1);
}
