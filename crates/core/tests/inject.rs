//! The injection engine, end to end over raw documents: every mode, every kind,
//! unknown fields, idempotency and conflicts.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
use json_patch::PatchOperation;
use proptest::prelude::*;
use serde_json::{Value, json};
use tandem_core::config::Config;
use tandem_core::inject::{Injector, NamespaceOptIn, PodOutcome};
use tandem_core::knowledge::{ClusterKnowledge, NodeFacts};
use tandem_core::mode::Mode;
use tandem_core::{KubeVersion, patch};

fn config(mode: &str) -> Config {
    Config::from_yaml(&format!(
        r#"
mode: {mode}
insertAfter: [istio-init]
sidecars:
  - name: proxy
    image: example/proxy:1.0
    command: ["/proxy"]
    args: ["--port=15001"]
    startupProbe:
      httpGet: {{path: /ready, port: 15021}}
    livenessProbe:
      exec: {{command: ["/proxy", "check"]}}
    resizePolicy: [{{resourceName: cpu, restartPolicy: NotRequired}}]
"#
    ))
    .unwrap()
}

fn inject(cfg: &Config, k: &ClusterKnowledge, doc: &Value) -> (Value, Vec<PatchOperation>) {
    let injector = Injector {
        config: cfg,
        knowledge: k,
        mode_override: None,
    };
    let out = injector.inject_document(doc).unwrap();
    let mut result = doc.clone();
    patch::apply(&mut result, &out.patch).unwrap();
    (result, out.patch)
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "migrate:1"}],
            "containers": [{"name": "app", "image": "app:1"}],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    })
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

fn nothing_known() -> ClusterKnowledge {
    ClusterKnowledge::default()
}

#[test]
fn native_goes_first_with_restart_policy_always() {
    let (out, ops) = inject(&config("native"), &nothing_known(), &pod());
    assert_eq!(names(&out["spec"]["initContainers"]), ["proxy", "migrate"]);
    let proxy = &out["spec"]["initContainers"][0];
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["startupProbe"]["httpGet"]["port"], 15021);
    assert_eq!(proxy["resizePolicy"][0]["restartPolicy"], "NotRequired");
    assert_eq!(names(&out["spec"]["containers"]), ["app"]);
    let status: Value = serde_json::from_str(
        out["metadata"]["annotations"]["tandem.dev/status"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let revision = config("native").sidecars_revision().unwrap();
    assert_eq!(
        status,
        json!({"mode": "native", "sidecars": ["proxy"], "configRevision": revision})
    );
    assert!(
        ops.iter().all(|op| matches!(op, PatchOperation::Add(_))),
        "{ops:?}"
    );
}

#[test]
fn native_goes_after_other_injectors_init_containers() {
    let mut p = pod();
    p["spec"]["initContainers"] = json!([
        {"name": "istio-init", "image": "istio"},
        {"name": "migrate", "image": "m"}
    ]);
    let (out, _) = inject(&config("native"), &nothing_known(), &p);
    assert_eq!(
        names(&out["spec"]["initContainers"]),
        ["istio-init", "proxy", "migrate"]
    );
    let mut p = pod();
    p["spec"].as_object_mut().unwrap().remove("initContainers");
    let (out, _) = inject(&config("native"), &nothing_known(), &p);
    assert_eq!(names(&out["spec"]["initContainers"]), ["proxy"]);
}

#[test]
fn legacy_is_a_regular_container_and_keeps_kubectl_default() {
    let (out, _) = inject(&config("legacy"), &nothing_known(), &pod());
    assert_eq!(names(&out["spec"]["containers"]), ["proxy", "app"]);
    assert!(out["spec"]["containers"][0].get("restartPolicy").is_none());
    assert_eq!(names(&out["spec"]["initContainers"]), ["migrate"]);
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "app"
    );
}

#[test]
fn affinity_is_anded_into_every_term() {
    let req = json!({"key": "tandem.dev/native-sidecars", "operator": "In", "values": ["true"]});
    // No affinity at all: created.
    let (out, _) = inject(&config("affinity"), &nothing_known(), &pod());
    assert_eq!(
        out["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
        json!([{"matchExpressions": [req.clone()]}])
    );
    assert_eq!(out["spec"]["initContainers"][0]["restartPolicy"], "Always");
    // Two ORed terms, one with only matchFields, and a preferred term left alone.
    let mut p = pod();
    p["spec"]["affinity"] = json!({
        "podAntiAffinity": {"x": 1},
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {"matchExpressions": [{"key": "z", "operator": "Exists"}]}}],
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
            ]}
        }
    });
    let (out, _) = inject(&config("affinity"), &nothing_known(), &p);
    let na = &out["spec"]["affinity"]["nodeAffinity"];
    let terms = &na["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    assert_eq!(
        terms[0]["matchExpressions"],
        json!([{"key": "pool", "operator": "In", "values": ["a"]}, req.clone()])
    );
    assert_eq!(terms[1]["matchExpressions"], json!([req.clone()]));
    assert_eq!(terms[1]["matchFields"][0]["values"], json!(["n1"]));
    assert_eq!(
        na["preferredDuringSchedulingIgnoredDuringExecution"],
        p["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    );
    assert_eq!(out["spec"]["affinity"]["podAntiAffinity"], json!({"x": 1}));
    // A term that already requires the label is not changed twice.
    let mut p2 = out.clone();
    p2["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .clear();
    p2["spec"]["initContainers"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let (again, _) = inject(&config("affinity"), &nothing_known(), &p2);
    assert_eq!(again["spec"]["affinity"], out["spec"]["affinity"]);
}

#[test]
fn universal_builds_both_copies_and_the_shim_wiring() {
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "report"},
        "spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "m"}, {"name": "uploader", "image": "u"}]
        }}}
    });
    let (out, _) = inject(&config("universal"), &nothing_known(), &job);
    let spec = &out["spec"]["template"]["spec"];
    assert_eq!(
        names(&spec["initContainers"]),
        ["tandem-shim-install", "proxy"]
    );
    assert_eq!(
        names(&spec["containers"]),
        ["proxy-legacy", "main", "uploader"]
    );
    assert_eq!(names(&spec["volumes"]), ["tandem-bin", "tandem-state"]);
    let native = &spec["initContainers"][1];
    assert_eq!(native["restartPolicy"], "Always");
    assert_eq!(
        native["command"],
        json!(["/var/run/tandem-bin/tandem-shim", "native", "--", "/proxy"])
    );
    assert_eq!(native["args"], json!(["--port=15001"]));
    // API server unknown: no probes or hooks on the native copy.
    assert!(native.get("startupProbe").is_none() && native.get("livenessProbe").is_none());
    let legacy = &spec["containers"][0];
    assert_eq!(
        legacy["command"],
        json!(["/var/run/tandem-bin/tandem-shim", "legacy", "--", "/proxy"])
    );
    let env: Vec<(&str, &Value)> = legacy["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e.get("value").unwrap_or(&e["valueFrom"]),
            )
        })
        .collect();
    assert!(
        env.contains(&("TANDEM_POD_RESTART_POLICY", &json!("Never"))),
        "{env:?}"
    );
    assert!(
        env.contains(&("TANDEM_SETTLE_TIMEOUT", &json!("5s"))),
        "{env:?}"
    );
    assert!(
        env.contains(&("TANDEM_MAIN_CONTAINERS", &json!("main,uploader"))),
        "{env:?}"
    );
    assert!(
        legacy.get("livenessProbe").is_none(),
        "exec probes dropped from the idle copy"
    );
    assert_eq!(legacy["startupProbe"]["httpGet"]["port"], 15021);

    // With an API server that keeps the field, the native copy keeps its probes and the
    // regular copy no longer needs the settle timeout.
    let k = ClusterKnowledge {
        apiserver: tandem_core::knowledge::ApiServerFacts {
            version: Some(KubeVersion::parse("v1.31.0").unwrap()),
            gate: None,
        },
        ..Default::default()
    };
    job["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
    let (out, _) = inject(&config("universal"), &k, &job);
    let spec = &out["spec"]["template"]["spec"];
    assert_eq!(
        spec["initContainers"][1]["startupProbe"]["httpGet"]["port"],
        15021
    );
    let env = spec["containers"][0]["env"].to_string();
    assert!(
        !env.contains("TANDEM_SETTLE_TIMEOUT") && env.contains("OnFailure"),
        "{env}"
    );
}

#[test]
fn universal_declares_ports_once_and_resolves_named_ports() {
    let cfg = Config::from_yaml(
        "mode: universal\nsidecars:\n- name: s\n  image: s\n  command: [/s]\n  ports: [{name: admin, containerPort: 9901}, {name: stats, containerPort: 9902, hostPort: 9902}]\n  readinessProbe: {httpGet: {path: /ready, port: admin}}\n  lifecycle: {preStop: {httpGet: {path: /drain, port: admin}}}\n",
    )
    .unwrap();
    let (out, _) = inject(&cfg, &nothing_known(), &pod());
    let native = &out["spec"]["initContainers"][1];
    assert_eq!(native["ports"][0]["containerPort"], 9901);
    let regular = &out["spec"]["containers"][0];
    assert_eq!(regular["name"], "s-legacy");
    assert_eq!(
        regular["ports"],
        json!([{"name": "stats", "containerPort": 9902, "hostPort": 9902}])
    );
    assert_eq!(regular["readinessProbe"]["httpGet"]["port"], 9901);
    assert_eq!(regular["lifecycle"]["preStop"]["httpGet"]["port"], 9901);
}

#[test]
fn universal_without_own_startup_probe_gets_the_shims() {
    let cfg = Config::from_yaml("mode: universal\nshim: {delivery: image, path: /bin/tandem-shim}\nuniversal: {startupProbe: always}\nsidecars: [{name: s, image: s, command: [/s]}]").unwrap();
    let (out, _) = inject(&cfg, &nothing_known(), &pod());
    let native = &out["spec"]["initContainers"][0];
    assert_eq!(native["name"], "s");
    assert_eq!(
        native["startupProbe"]["exec"]["command"],
        json!(["/bin/tandem-shim", "probe"])
    );
    assert_eq!(names(&out["spec"]["volumes"]), ["data", "tandem-state"]);
}

/// Fields tandem has never heard of, at every level, come out with equal values.
#[test]
fn unknown_fields_survive_every_mode() {
    let mut p = pod();
    p["metadata"]["x-vendor"] = json!({"deep": [1, {"a": null}]});
    p["spec"]["futurePodField"] = json!({"enabled": true, "list": ["a", "b"]});
    p["spec"]["containers"][0]["futureContainerField"] = json!(42);
    p["spec"]["initContainers"][0]["resizePolicy"] =
        json!([{"resourceName": "cpu", "restartPolicy": "NotRequired"}]);
    p["status"] = json!({"phase": "Pending", "futureStatus": 1});
    p["spec"]["affinity"] = json!({"nodeAffinity": {"futureAffinityField": "x"}});
    for mode in ["native", "legacy", "affinity", "universal"] {
        let (out, _) = inject(&config(mode), &nothing_known(), &p);
        assert_eq!(
            out["metadata"]["x-vendor"], p["metadata"]["x-vendor"],
            "{mode}"
        );
        assert_eq!(
            out["spec"]["futurePodField"], p["spec"]["futurePodField"],
            "{mode}"
        );
        assert_eq!(out["status"], p["status"], "{mode}");
        assert_eq!(
            out["spec"]["affinity"]["nodeAffinity"]["futureAffinityField"], "x",
            "{mode}"
        );
        let app = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "app")
            .unwrap();
        assert_eq!(app, &p["spec"]["containers"][0], "{mode}");
        let migrate = out["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "migrate")
            .unwrap();
        assert_eq!(migrate, &p["spec"]["initContainers"][0], "{mode}");
    }
}

#[test]
fn injecting_twice_equals_injecting_once() {
    let kinds = [
        pod(),
        json!({"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        json!({"kind": "CronJob", "metadata": {"name": "c"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "i"}]}}}}}}),
        json!({"kind": "List", "items": [pod(), {"kind": "Service", "metadata": {"name": "s"}}]}),
    ];
    for mode in ["native", "legacy", "affinity", "universal", "auto"] {
        for doc in &kinds {
            let (once, _) = inject(&config(mode), &nothing_known(), doc);
            let (twice, ops) = inject(&config(mode), &nothing_known(), &once);
            assert_eq!(once, twice, "{mode}");
            assert!(ops.is_empty(), "{mode}: {ops:?}");
        }
    }
}

#[test]
fn template_without_metadata_gets_one() {
    let doc = json!({"kind": "Job", "metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let (out, _) = inject(&config("native"), &nothing_known(), &doc);
    assert!(out["spec"]["template"]["metadata"]["annotations"]["tandem.dev/status"].is_string());
}

#[test]
fn conflicts_are_errors_naming_object_and_field() {
    let injector_err = |cfg: &Config, doc: &Value| {
        let k = nothing_known();
        Injector {
            config: cfg,
            knowledge: &k,
            mode_override: None,
        }
        .inject_document(doc)
        .unwrap_err()
        .to_string()
    };
    let mut p = pod();
    p["spec"]["containers"][0]["name"] = json!("proxy");
    let err = injector_err(&config("native"), &p);
    assert_eq!(
        err,
        "Pod shop/web: spec.containers[0].name: container name \"proxy\" is already taken, so sidecar \"proxy\" can't be added; rename one of them"
    );
    let mut p = pod();
    p["spec"]["volumes"][0]["name"] = json!("tandem-state");
    assert!(injector_err(&config("universal"), &p).contains("spec.volumes[0].name"));
    let mut p = pod();
    p["metadata"]["annotations"] = json!({"tandem.dev/mode": "sidecar"});
    let err = injector_err(&config("native"), &p);
    assert!(
        err.contains("metadata.annotations[\"tandem.dev/mode\"]") && err.contains("sidecar"),
        "{err}"
    );
    let mut p = pod();
    p["metadata"]["labels"]["tandem.dev/inject"] = json!("yes");
    assert!(injector_err(&config("native"), &p).contains("enabled or disabled"));
    let no_cmd = Config::from_yaml("mode: universal\nsidecars: [{name: s, image: s}]").unwrap();
    let err = injector_err(&no_cmd, &pod());
    assert!(err.contains("no command"), "{err}");
    let deploy = json!({"kind": "Deployment", "metadata": {"name": "d", "namespace": "n"}, "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "x"}]}}}});
    assert!(
        injector_err(&config("legacy"), &deploy)
            .starts_with("Deployment n/d: spec.template.spec.containers[0].name")
    );
}

#[test]
fn opt_out_opt_in_and_annotation_override() {
    let cfg = config("native");
    let k = nothing_known();
    let injector = Injector {
        config: &cfg,
        knowledge: &k,
        mode_override: Some(Mode::Legacy),
    };
    let mut p = pod();
    p["metadata"]["labels"]["tandem.dev/inject"] = json!("disabled");
    assert!(matches!(
        injector.inject_pod(&p, NamespaceOptIn::Enabled).unwrap(),
        PodOutcome::Skipped { .. }
    ));
    let p = pod();
    assert!(matches!(
        injector.inject_pod(&p, NamespaceOptIn::NotEnabled).unwrap(),
        PodOutcome::Skipped { .. }
    ));
    let mut p = pod();
    p["metadata"]["labels"]["tandem.dev/inject"] = json!("enabled");
    let PodOutcome::Injected(inj) = injector.inject_pod(&p, NamespaceOptIn::NotEnabled).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        inj.decision.placement,
        tandem_core::Placement::Legacy,
        "--mode beats the config"
    );
    let mut p = pod();
    p["metadata"]["annotations"] = json!({"tandem.dev/mode": "affinity"});
    let PodOutcome::Injected(inj) = injector.inject_pod(&p, NamespaceOptIn::Unknown).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        inj.decision.placement,
        tandem_core::Placement::Affinity,
        "the annotation beats --mode"
    );
    let mut p = pod();
    p["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
    assert!(matches!(
        injector.inject_pod(&p, NamespaceOptIn::Unknown).unwrap(),
        PodOutcome::Skipped { .. }
    ));
}

#[test]
fn auto_uses_node_versions() {
    let k = |vs: &[&str]| ClusterKnowledge {
        nodes: vs
            .iter()
            .map(|v| NodeFacts::from_version(KubeVersion::parse(v).unwrap()))
            .collect(),
        ..Default::default()
    };
    let placement = |k: &ClusterKnowledge| {
        let cfg = config("auto");
        let injector = Injector {
            config: &cfg,
            knowledge: k,
            mode_override: None,
        };
        match injector
            .inject_pod(&pod(), NamespaceOptIn::Unknown)
            .unwrap()
        {
            PodOutcome::Injected(i) => i.decision.placement.as_str(),
            PodOutcome::Skipped { reason } => panic!("{reason}"),
        }
    };
    assert_eq!(placement(&k(&["v1.30.2"])), "native");
    assert_eq!(placement(&k(&["v1.27.2"])), "legacy");
    assert_eq!(placement(&k(&["v1.27.2", "v1.30.2"])), "universal");
    assert_eq!(placement(&k(&["v1.28.2", "v1.30.2"])), "legacy");
}

fn arb_pod() -> impl Strategy<Value = Value> {
    let name = "[a-z]{1,6}";
    (
        prop::collection::btree_set(name, 1..4),
        prop::collection::btree_set(name, 0..3),
        prop::option::of(prop::sample::select(vec!["Always", "OnFailure", "Never"])),
        any::<bool>(),
        prop::option::of(0usize..3),
    )
        .prop_map(|(containers, inits, restart, with_meta, terms)| {
            let mut spec = json!({
                "containers": containers.iter().map(|n| json!({"name": format!("c-{n}"), "image": "x", "unknownField": n})).collect::<Vec<_>>(),
                "futureField": {"x": containers.len()},
            });
            if !inits.is_empty() {
                spec["initContainers"] = json!(inits.iter().map(|n| json!({"name": format!("i-{n}"), "image": "y"})).collect::<Vec<_>>());
            }
            if let Some(r) = restart {
                spec["restartPolicy"] = json!(r);
            }
            if let Some(n) = terms {
                spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms":
                    (0..n).map(|i| json!({"matchExpressions": [{"key": format!("k{i}"), "operator": "Exists"}]})).collect::<Vec<_>>()}}});
            }
            let mut pod = json!({"kind": "Pod", "spec": spec});
            if with_meta {
                pod["metadata"] = json!({"name": "p", "annotations": {"other/thing": "1"}});
            }
            pod
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// For any pod and mode: the patch is only adds, it applies, the pod's own
    /// containers keep their order and content, and a second run changes nothing.
    #[test]
    fn engine_properties(p in arb_pod(), mode in prop::sample::select(vec!["native", "legacy", "affinity", "universal"])) {
        let cfg = config(mode);
        let (out, ops) = inject(&cfg, &nothing_known(), &p);
        prop_assert!(ops.iter().all(|op| matches!(op, PatchOperation::Add(_))));
        let mine: Vec<&Value> = out["spec"]["containers"].as_array().unwrap().iter()
            .filter(|c| c["name"].as_str().unwrap().starts_with("c-")).collect();
        let orig: Vec<&Value> = p["spec"]["containers"].as_array().unwrap().iter().collect();
        prop_assert_eq!(mine, orig);
        prop_assert_eq!(&out["spec"]["futureField"], &p["spec"]["futureField"]);
        let terms = out.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms");
        if mode == "affinity" {
            for t in terms.and_then(Value::as_array).unwrap() {
                prop_assert!(t.to_string().contains("tandem.dev/native-sidecars"));
            }
        }
        let (twice, ops2) = inject(&cfg, &nothing_known(), &out);
        prop_assert!(ops2.is_empty());
        prop_assert_eq!(twice, out);
    }
}

fn env_of<'a>(c: &'a Value, name: &str) -> Option<&'a Value> {
    c["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| &e["value"])
}

#[test]
fn universal_regular_copy_holds_the_app_with_a_post_start_wait() {
    // The sidecar's own startupProbe here is exec: the wait hook runs it as its check.
    let cfg = Config::from_yaml(
        "mode: universal\nsidecars:\n- name: s\n  image: s\n  command: [/s]\n  startupProbe: {exec: {command: [/s, ready]}}\n",
    )
    .unwrap();
    let mut p = pod();
    p["spec"]["terminationGracePeriodSeconds"] = json!(60);
    let (out, _) = inject(&cfg, &nothing_known(), &p);
    let regular = &out["spec"]["containers"][0];
    assert_eq!(
        regular["lifecycle"]["postStart"]["exec"]["command"],
        json!([
            "/var/run/tandem-bin/tandem-shim",
            "wait",
            "--",
            "/s",
            "ready"
        ])
    );
    assert_eq!(env_of(regular, "TANDEM_GRACE_PERIOD"), Some(&json!("58s")));
    assert_eq!(
        env_of(&out["spec"]["initContainers"][1], "TANDEM_GRACE_PERIOD"),
        Some(&json!("58s"))
    );
    // The default config's sidecar has an httpGet startupProbe: a plain wait.
    let (out, _) = inject(&config("universal"), &nothing_known(), &pod());
    assert_eq!(
        out["spec"]["containers"][0]["lifecycle"]["postStart"]["exec"]["command"],
        json!(["/var/run/tandem-bin/tandem-shim", "wait"])
    );
    assert_eq!(
        env_of(&out["spec"]["containers"][0], "TANDEM_GRACE_PERIOD"),
        Some(&json!("28s"))
    );
}

#[test]
fn a_sidecars_own_post_start_is_replaced_on_the_regular_copy_with_a_warning() {
    let cfg = Config::from_yaml(
        "mode: universal\nsidecars:\n- name: s\n  image: s\n  command: [/s]\n  lifecycle:\n    postStart: {exec: {command: [/s, warm]}}\n    preStop: {exec: {command: [/s, drain]}}\n",
    )
    .unwrap();
    let k = ClusterKnowledge::default();
    let injector = Injector {
        config: &cfg,
        knowledge: &k,
        mode_override: None,
    };
    let PodOutcome::Injected(inj) = injector
        .inject_pod(&pod(), NamespaceOptIn::Unknown)
        .unwrap()
    else {
        panic!()
    };
    assert!(
        inj.decision
            .warnings
            .iter()
            .any(|w| w.contains("postStart")),
        "{:?}",
        inj.decision.warnings
    );
    let mut out = pod();
    patch::apply(&mut out, &inj.patch).unwrap();
    let regular = &out["spec"]["containers"][0];
    assert_eq!(
        regular["lifecycle"]["postStart"]["exec"]["command"][1],
        "wait"
    );
    assert_eq!(
        regular["lifecycle"]["preStop"]["exec"]["command"],
        json!(["/s", "drain"])
    );
}

#[test]
fn legacy_job_completion_wraps_sidecars_in_jobs_only() {
    let cfg = Config::from_yaml(
        "mode: legacy\nlegacy: {jobCompletion: true}\nsidecars:\n- name: s\n  image: s\n  command: [/s]\n  ports: [{name: http, containerPort: 80}]\n- name: nocmd\n  image: nc\n",
    )
    .unwrap();
    let job = json!({"kind": "Job", "metadata": {"name": "j"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "main", "image": "m"}]}}}});
    let (out, _) = inject(&cfg, &nothing_known(), &job);
    let spec = &out["spec"]["template"]["spec"];
    assert_eq!(names(&spec["containers"]), ["s", "nocmd", "main"]);
    let s = &spec["containers"][0];
    assert_eq!(
        s["command"],
        json!(["/var/run/tandem-bin/tandem-shim", "legacy", "--", "/s"])
    );
    assert_eq!(env_of(s, "TANDEM_SETTLE_TIMEOUT"), Some(&json!("0s")));
    assert_eq!(
        env_of(s, "TANDEM_POD_RESTART_POLICY"),
        Some(&json!("Never"))
    );
    assert_eq!(env_of(s, "TANDEM_MAIN_CONTAINERS"), Some(&json!("main")));
    assert_eq!(
        s["ports"][0]["containerPort"], 80,
        "no native copy: ports stay"
    );
    assert_eq!(
        spec["containers"][1],
        json!({"name": "nocmd", "image": "nc"}),
        "no command: nothing to wrap"
    );
    assert_eq!(names(&spec["initContainers"]), ["tandem-shim-install"]);
    assert_eq!(names(&spec["volumes"]), ["tandem-bin", "tandem-state"]);
    let (twice, ops) = inject(&cfg, &nothing_known(), &out);
    assert!(ops.is_empty());
    assert_eq!(twice, out);
    // A Deployment (restartPolicy Always) keeps plain legacy sidecars.
    let (out, _) = inject(&cfg, &nothing_known(), &pod());
    assert_eq!(out["spec"]["containers"][0]["command"], json!(["/s"]));
    assert!(
        out["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "tandem-shim-install")
    );
}
