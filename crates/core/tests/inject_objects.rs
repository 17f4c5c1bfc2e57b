//! Injection of several sidecars from sidecar objects: order, per-object modes, init
//! containers and volumes, separate handshake state, the status annotation's revisions,
//! and idempotency.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
use proptest::prelude::*;
use serde_json::{Value, json};
use tandem_core::catalog::{Catalog, SidecarObject, revision};
use tandem_core::config::Config;
use tandem_core::inject::{Injector, PodOutcome};
use tandem_core::knowledge::ClusterKnowledge;
use tandem_core::patch;
use tandem_core::status::PodStatus;

fn config(mode: &str, with_sidecar: bool) -> Config {
    let sidecars = if with_sidecar {
        "[{name: base, image: example/base:1, command: [/base]}]"
    } else {
        "[]"
    };
    Config::from_yaml(&format!(
        "mode: {mode}\ninsertAfter: [istio-init]\nsidecars: {sidecars}\n"
    ))
    .unwrap()
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    let mut meta = json!({"name": name, "generation": 3});
    if kind == "Sidecar" {
        meta["namespace"] = json!("shop");
    }
    json!({"apiVersion": "tandem.dev/v1alpha1", "kind": kind, "metadata": meta, "spec": spec})
}

fn catalog() -> (Catalog, Vec<Value>) {
    let objects = vec![
        object(
            "ClusterSidecar",
            "logs",
            json!({"podSelector": {}, "order": 10,
                   "containers": [{"name": "logs", "image": "fluent-bit:3", "command": ["/fluent-bit"]}],
                   "volumes": [{"name": "logs-buffer", "emptyDir": {}}]}),
        ),
        object(
            "Sidecar",
            "proxy",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "initContainers": [{"name": "proxy-init", "image": "proxy:1", "command": ["/init"]}],
                   "containers": [{"name": "proxy", "image": "proxy:1", "command": ["/proxy"],
                                   "ports": [{"containerPort": 15001, "name": "p"}]}]}),
        ),
        object(
            "ClusterSidecar",
            "vault",
            json!({"mode": "legacy",
                   "containers": [{"name": "vault", "image": "vault:1", "command": ["vault", "agent"]}]}),
        ),
    ];
    (
        Catalog::build(objects.iter().map(SidecarObject::from_value)),
        objects,
    )
}

fn pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}, "annotations": annotations},
        "spec": {
            "initContainers": [{"name": "istio-init", "image": "istio:1"}, {"name": "migrate", "image": "m:1"}],
            "containers": [{"name": "app", "image": "app:1"}],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    })
}

fn run(cfg: &Config, cat: &Catalog, doc: &Value) -> (Value, PodOutcome) {
    let k = ClusterKnowledge::default();
    let injector = Injector {
        config: cfg,
        knowledge: &k,
        mode_override: None,
    };
    let out = injector.inject_document_with(doc, Some(cat)).unwrap();
    let mut result = doc.clone();
    patch::apply(&mut result, &out.patch).unwrap();
    (result, out.pods.into_iter().next().unwrap().1)
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn native_order_is_config_then_objects_with_their_init_containers_after_insert_after() {
    let (cat, objects) = catalog();
    let cfg = config("native", true);
    let (out, outcome) = run(&cfg, &cat, &pod(json!({"tandem.dev/sidecars": "vault"})));
    assert_eq!(
        names(&out["spec"]["initContainers"]),
        [
            "istio-init",
            "base",
            "proxy-init",
            "proxy",
            "logs",
            "migrate"
        ]
    );
    // vault asked for legacy in its spec: a regular container, first.
    assert_eq!(names(&out["spec"]["containers"]), ["vault", "app"]);
    assert_eq!(out["spec"]["initContainers"][3]["restartPolicy"], "Always");
    assert!(
        out["spec"]["initContainers"][2]
            .get("restartPolicy")
            .is_none()
    );
    assert_eq!(names(&out["spec"]["volumes"]), ["data", "logs-buffer"]);
    let status = PodStatus::from_meta(out.get("metadata")).unwrap().unwrap();
    // Objects by (order, name): proxy (0), vault (0), logs (10).
    assert_eq!(status.sidecars, ["base", "proxy", "vault", "logs"]);
    let objs: Vec<(String, String, String)> = status
        .objects
        .iter()
        .map(|o| (o.name.clone(), o.revision.clone(), o.mode.to_string()))
        .collect();
    assert_eq!(
        objs,
        [
            (
                "proxy".into(),
                revision(&objects[1]["spec"]),
                "native".into()
            ),
            (
                "vault".into(),
                revision(&objects[2]["spec"]),
                "legacy".into()
            ),
            (
                "logs".into(),
                revision(&objects[0]["spec"]),
                "native".into()
            ),
        ]
    );
    let PodOutcome::Injected(inj) = outcome else {
        panic!()
    };
    assert!(
        inj.decision
            .reasons
            .iter()
            .any(|r| r.contains("ClusterSidecar vault")),
        "{:?}",
        inj.decision.reasons
    );
    // A second run changes nothing.
    let (again, outcome) = run(&cfg, &cat, &out);
    assert_eq!(again, out);
    assert!(matches!(outcome, PodOutcome::Skipped { .. }));
}

#[test]
fn the_pods_mode_annotation_wins_over_an_objects_mode() {
    let (cat, _) = catalog();
    let cfg = config("native", false);
    let (out, _) = run(
        &cfg,
        &cat,
        &pod(json!({"tandem.dev/sidecars": "vault", "tandem.dev/mode": "native"})),
    );
    assert_eq!(names(&out["spec"]["containers"]), ["app"]);
    assert!(names(&out["spec"]["initContainers"]).contains(&"vault".to_string()));
}

#[test]
fn universal_sidecars_each_get_their_own_handshake_state() {
    let (cat, _) = catalog();
    let cfg = config("universal", false);
    let (out, _) = run(&cfg, &cat, &pod(json!({})));
    assert_eq!(
        names(&out["spec"]["initContainers"]),
        [
            "istio-init",
            "tandem-shim-install",
            "proxy-init",
            "proxy",
            "logs",
            "migrate"
        ]
    );
    assert_eq!(
        names(&out["spec"]["containers"]),
        ["proxy-legacy", "logs-legacy", "app"]
    );
    let sub = |c: &Value| -> Vec<String> {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["name"] == "tandem-state")
            .map(|m| m["subPath"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(sub(&out["spec"]["initContainers"][3]), ["proxy"]);
    assert_eq!(sub(&out["spec"]["containers"][0]), ["proxy"]);
    assert_eq!(sub(&out["spec"]["initContainers"][4]), ["logs"]);
    assert_eq!(sub(&out["spec"]["containers"][1]), ["logs"]);
    // One state volume and one shim volume for all of them.
    assert_eq!(
        names(&out["spec"]["volumes"]),
        ["data", "logs-buffer", "tandem-bin", "tandem-state"]
    );
}

#[test]
fn a_single_universal_sidecar_keeps_the_whole_state_volume() {
    let cfg = config("universal", true);
    let (out, _) = run(&cfg, &Catalog::default(), &pod(json!({})));
    let mounts = &out["spec"]["containers"][0]["volumeMounts"];
    assert!(mounts[0].get("subPath").is_none(), "{mounts}");
    assert!(
        !out["metadata"]["annotations"]["tandem.dev/status"]
            .as_str()
            .unwrap()
            .contains("objects")
    );
}

#[test]
fn requests_without_objects_and_name_clashes_are_errors() {
    let (cat, _) = catalog();
    let k = ClusterKnowledge::default();
    let cfg = config("native", false);
    let injector = Injector {
        config: &cfg,
        knowledge: &k,
        mode_override: None,
    };
    let err = injector
        .inject_document(&pod(json!({"tandem.dev/sidecars": "vault"})))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--sidecars"), "{err}");
    let err = injector
        .inject_document_with(&pod(json!({"tandem.dev/sidecars": "nope"})), Some(&cat))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("metadata.annotations") && err.contains("\"nope\""),
        "{err}"
    );
    let mut clash = pod(json!({}));
    clash["spec"]["containers"][0]["name"] = json!("proxy");
    let err = injector
        .inject_document_with(&clash, Some(&cat))
        .unwrap_err()
        .to_string();
    assert!(err.contains("already taken"), "{err}");
    // Nothing selected, no config sidecars: skipped, saying so.
    let mut lonely = pod(json!({}));
    lonely["metadata"]["labels"] = json!({"app": "db"});
    let only_vault = Catalog::build(
        [object(
            "ClusterSidecar",
            "vault",
            json!({"containers": [{"name": "vault", "image": "v:1"}]}),
        )]
        .iter()
        .map(SidecarObject::from_value),
    );
    match injector
        .inject_document_with(&lonely, Some(&only_vault))
        .unwrap()
        .pods[0]
        .1
        .clone()
    {
        PodOutcome::Skipped { reason } => assert!(reason.contains("no Sidecar"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever the mode and the request, the patch applies, keeps the pod's own
    /// containers in their order, and a second run is a no-op.
    #[test]
    fn patches_apply_and_are_idempotent(
        mode in prop::sample::select(vec!["native", "legacy", "affinity", "universal"]),
        with_sidecar in any::<bool>(),
        request_vault in any::<bool>(),
        app in prop::sample::select(vec!["web", "db"]),
        job in any::<bool>(),
    ) {
        let (cat, _) = catalog();
        let cfg = config(mode, with_sidecar);
        let mut doc = pod(if request_vault { json!({"tandem.dev/sidecars": "vault"}) } else { json!({}) });
        doc["metadata"]["labels"]["app"] = json!(app);
        if job { doc["spec"]["restartPolicy"] = json!("Never"); }
        let (out, _) = run(&cfg, &cat, &doc);
        let own: Vec<String> = names(&out["spec"]["containers"]).into_iter().filter(|n| n == "app").collect();
        prop_assert_eq!(own, vec!["app".to_string()]);
        let inits = names(&out["spec"]["initContainers"]);
        let pos = |n: &str| inits.iter().position(|i| i == n);
        prop_assert!(pos("istio-init") < pos("migrate"));
        prop_assert_eq!(inits.last().map(String::as_str), Some("migrate"));
        let (again, _) = run(&cfg, &cat, &out);
        prop_assert_eq!(again, out);
    }
}
