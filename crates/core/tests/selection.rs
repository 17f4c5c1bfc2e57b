//! Selection of sidecar objects for pods: reading objects, the catalog's conflict rules,
//! and the selection rules (selectors × request annotation × opt-out × namespace/cluster
//! scope), as tables and as a property test against a plain model of the rules.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{Value, json};
use tandem_core::catalog::{
    Catalog, Kind, REASON_CONFLICT, REASON_INVALID, SidecarObject, revision,
};

fn obj(kind: &str, ns: Option<&str>, name: &str, spec: Value) -> Value {
    let mut meta = json!({"name": name});
    if let Some(ns) = ns {
        meta["namespace"] = json!(ns);
    }
    json!({"apiVersion": "tandem.dev/v1alpha1", "kind": kind, "metadata": meta, "spec": spec})
}

fn container(name: &str) -> Value {
    json!({"name": name, "image": "example/x:1", "command": ["x"]})
}

fn catalog(objects: &[Value], namespaces: &[(&str, &[(&str, &str)])]) -> Catalog {
    let mut c = Catalog::build(objects.iter().map(SidecarObject::from_value));
    for (ns, labels) in namespaces {
        c.namespaces.insert(
            ns.to_string(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }
    c
}

fn pod_meta(labels: Value, sidecars: Option<&str>) -> Value {
    let mut m = json!({"labels": labels});
    if let Some(s) = sidecars {
        m["annotations"] = json!({"tandem.dev/sidecars": s});
    }
    m
}

fn names(c: &Catalog, meta: &Value, ns: &str) -> Result<Vec<String>, String> {
    c.select(Some(meta), ns, &BTreeSet::new())
        .map(|s| {
            s.objects
                .iter()
                .map(|o| o.object.reference.to_string())
                .collect()
        })
        .map_err(|e| e.0)
}

#[test]
fn objects_that_cannot_be_used_say_why() {
    let good = json!({"containers": [container("proxy")]});
    assert!(SidecarObject::from_value(&obj("Sidecar", Some("a"), "p", good.clone())).is_ok());
    let cases = [
        (json!({"containers": []}), "at least one container"),
        (json!({"containers": [{"name": "p"}]}), "image is required"),
        (
            json!({"containers": [{"name": "P", "image": "x"}]}),
            "\"P\"",
        ),
        (
            json!({"containers": [container("p"), container("p")]}),
            "used twice",
        ),
        (
            json!({"containers": [container("tandem-shim-install")]}),
            "reserved",
        ),
        (json!({"containers": [container("p-legacy")]}), "reserved"),
        (
            json!({"containers": [container("p")], "podSelector": {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]}}),
            "spec.podSelector: matchExpressions[0]: operator \"Equals\"",
        ),
        (
            json!({"containers": [container("p")], "mode": "sidecar"}),
            "spec.mode",
        ),
        (
            json!({"containers": [container("p")], "podSelectr": {}}),
            "spec.podSelectr: unknown field",
        ),
        (
            json!({"containers": [container("p")], "namespaceSelector": {}}),
            "spec.namespaceSelector: unknown field",
        ),
        (
            json!({"containers": [container("p")], "volumes": [{"name": "tandem-state", "emptyDir": {}}]}),
            "reserved",
        ),
        (
            json!({"containers": [container("p")], "order": "first"}),
            "spec.order",
        ),
    ];
    for (spec, want) in cases {
        let err =
            SidecarObject::from_value(&obj("Sidecar", Some("a"), "p", spec.clone())).unwrap_err();
        assert_eq!(err.reason, REASON_INVALID);
        assert!(err.message.contains(want), "{spec}: {}", err.message);
    }
    let wrong_version = json!({"apiVersion": "tandem.dev/v1", "kind": "Sidecar",
        "metadata": {"name": "p"}, "spec": good});
    assert!(
        SidecarObject::from_value(&wrong_version)
            .unwrap_err()
            .message
            .contains("apiVersion")
    );
}

#[test]
fn revisions_follow_the_spec_not_its_key_order() {
    let a = json!({"containers": [{"name": "p", "image": "x:1"}], "order": 1});
    let b: Value =
        serde_json::from_str(r#"{"order":1,"containers":[{"image":"x:1","name":"p"}]}"#).unwrap();
    assert_eq!(revision(&a), revision(&b));
    assert_eq!(revision(&a).len(), 10);
    let c = json!({"containers": [{"name": "p", "image": "x:2"}], "order": 1});
    assert_ne!(revision(&a), revision(&c));
}

#[test]
fn selectors_requests_and_scope() {
    let c = catalog(
        &[
            obj(
                "ClusterSidecar",
                None,
                "logs",
                json!({"podSelector": {}, "containers": [container("logs")]}),
            ),
            obj(
                "ClusterSidecar",
                None,
                "proxy",
                json!({"namespaceSelector": {"matchLabels": {"mesh": "on"}},
                       "podSelector": {"matchLabels": {"app": "web"}},
                       "containers": [container("proxy")]}),
            ),
            obj(
                "ClusterSidecar",
                None,
                "vault",
                json!({"containers": [container("vault")]}),
            ),
            obj(
                "Sidecar",
                Some("shop"),
                "logs",
                json!({"podSelector": {"matchLabels": {"logs": "yes"}}, "containers": [container("logs")]}),
            ),
        ],
        &[("shop", &[("mesh", "on")]), ("plain", &[])],
    );
    // The Sidecar `logs` in shop takes the ClusterSidecar's place there.
    let web = pod_meta(json!({"app": "web"}), None);
    assert_eq!(names(&c, &web, "shop").unwrap(), ["ClusterSidecar proxy"]);
    assert_eq!(
        names(
            &c,
            &pod_meta(json!({"app": "web", "logs": "yes"}), None),
            "shop"
        )
        .unwrap(),
        ["Sidecar shop/logs", "ClusterSidecar proxy"]
    );
    // proxy's namespaceSelector leaves `plain` out; logs applies everywhere.
    assert_eq!(names(&c, &web, "plain").unwrap(), ["ClusterSidecar logs"]);
    // No podSelector: only on request.
    assert_eq!(
        names(&c, &pod_meta(json!({}), Some("vault")), "plain").unwrap(),
        ["ClusterSidecar logs", "ClusterSidecar vault"]
    );
    // Requests: unknown, out of scope.
    let err = names(&c, &pod_meta(json!({}), Some("vault, nope")), "plain").unwrap_err();
    assert!(
        err.contains("\"nope\"") && err.contains("no Sidecar plain/nope"),
        "{err}"
    );
    let err = names(&c, &pod_meta(json!({}), Some("proxy")), "plain").unwrap_err();
    assert!(err.contains("does not apply to namespace"), "{err}");
    // Opt-out wins over selectors and requests.
    let out = pod_meta(
        json!({"app": "web", "tandem.dev/inject": "disabled"}),
        Some("vault"),
    );
    assert_eq!(names(&c, &out, "shop").unwrap(), Vec::<String>::new());
    // Unknown namespaces have no labels.
    assert_eq!(
        names(&c, &web, "elsewhere").unwrap(),
        ["ClusterSidecar logs"]
    );
}

#[test]
fn order_hint_then_name() {
    let c = catalog(
        &[
            obj(
                "ClusterSidecar",
                None,
                "b",
                json!({"podSelector": {}, "containers": [container("b")]}),
            ),
            obj(
                "ClusterSidecar",
                None,
                "a",
                json!({"podSelector": {}, "order": 5, "containers": [container("a")]}),
            ),
            obj(
                "ClusterSidecar",
                None,
                "c",
                json!({"podSelector": {}, "order": -1, "containers": [container("c")]}),
            ),
            obj(
                "Sidecar",
                Some("x"),
                "d",
                json!({"podSelector": {}, "containers": [container("d")]}),
            ),
        ],
        &[],
    );
    assert_eq!(
        names(&c, &pod_meta(json!({}), None), "x").unwrap(),
        [
            "ClusterSidecar c",
            "ClusterSidecar b",
            "Sidecar x/d",
            "ClusterSidecar a"
        ]
    );
}

#[test]
fn unusable_objects_are_skipped_or_refuse_the_pods_that_ask() {
    let c = catalog(
        &[
            obj(
                "ClusterSidecar",
                None,
                "broken",
                json!({"podSelector": {"matchLabels": {"app": "web"}}, "containers": [{"name": "x"}]}),
            ),
            obj(
                "ClusterSidecar",
                None,
                "ok",
                json!({"podSelector": {}, "containers": [container("ok")]}),
            ),
        ],
        &[],
    );
    let sel = c
        .select(
            Some(&pod_meta(json!({"app": "web"}), None)),
            "x",
            &BTreeSet::new(),
        )
        .unwrap();
    assert_eq!(sel.objects.len(), 1);
    assert!(
        sel.warnings[0].contains("ClusterSidecar broken"),
        "{:?}",
        sel.warnings
    );
    // A pod that doesn't select it: no warning at all.
    let sel = c
        .select(
            Some(&pod_meta(json!({"app": "api"}), None)),
            "x",
            &BTreeSet::new(),
        )
        .unwrap();
    assert!(sel.warnings.is_empty());
    let err = names(&c, &pod_meta(json!({}), Some("broken")), "x").unwrap_err();
    assert!(err.contains("image is required"), "{err}");
}

#[test]
fn conflicting_names() {
    // Same scope: the older object keeps the name; the other is unusable.
    let mut older = obj(
        "ClusterSidecar",
        None,
        "z-first",
        json!({"podSelector": {}, "containers": [container("agent")]}),
    );
    older["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    let mut newer = obj(
        "ClusterSidecar",
        None,
        "a-second",
        json!({"podSelector": {}, "containers": [container("agent")]}),
    );
    newer["metadata"]["creationTimestamp"] = json!("2026-02-01T00:00:00Z");
    let c = catalog(&[newer, older], &[]);
    let bad: Vec<_> = c
        .entries()
        .filter_map(|e| match e {
            tandem_core::catalog::Entry::Unusable(u) => Some(u.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].reference.name, "a-second");
    assert_eq!(bad[0].reason, REASON_CONFLICT);
    assert!(
        bad[0].message.contains("ClusterSidecar z-first"),
        "{}",
        bad[0].message
    );

    // Across scopes, per pod: the namespaced object keeps the name.
    let c = catalog(
        &[
            obj(
                "ClusterSidecar",
                None,
                "cluster-agent",
                json!({"podSelector": {}, "containers": [container("agent")]}),
            ),
            obj(
                "Sidecar",
                Some("x"),
                "team-agent",
                json!({"podSelector": {}, "order": 9, "containers": [container("agent")]}),
            ),
        ],
        &[],
    );
    let sel = c
        .select(Some(&pod_meta(json!({}), None)), "x", &BTreeSet::new())
        .unwrap();
    assert_eq!(sel.objects.len(), 1);
    assert_eq!(sel.objects[0].object.reference.name, "team-agent");
    assert!(sel.warnings[0].contains("ClusterSidecar cluster-agent was skipped"));
    // ... unless the pod asked for the other one: then it is an error.
    let err = names(&c, &pod_meta(json!({}), Some("cluster-agent")), "x").unwrap_err();
    assert!(
        err.contains("already used by Sidecar x/team-agent"),
        "{err}"
    );
    // Config sidecars' names are reserved.
    let reserved: BTreeSet<String> = ["agent".to_string()].into();
    let sel = c
        .select(Some(&pod_meta(json!({}), None)), "y", &reserved)
        .unwrap();
    assert!(sel.objects.is_empty());
    assert!(sel.warnings[0].contains("configuration"));
    // Identical volumes are shared; different ones conflict.
    let vol = json!({"name": "shared", "emptyDir": {}});
    let c = catalog(
        &[
            obj(
                "ClusterSidecar",
                None,
                "a",
                json!({"podSelector": {}, "containers": [container("a")], "volumes": [vol]}),
            ),
            obj(
                "ClusterSidecar",
                None,
                "b",
                json!({"podSelector": {}, "containers": [container("b")], "volumes": [vol]}),
            ),
            obj(
                "ClusterSidecar",
                None,
                "c",
                json!({"podSelector": {}, "containers": [container("c")], "volumes": [{"name": "shared", "emptyDir": {"medium": "Memory"}}]}),
            ),
        ],
        &[],
    );
    let sel = c
        .select(Some(&pod_meta(json!({}), None)), "x", &BTreeSet::new())
        .unwrap();
    assert_eq!(sel.objects.len(), 2);
}

#[test]
fn bad_request_annotations() {
    let c = catalog(&[], &[]);
    for bad in ["Proxy", "a b", "-x"] {
        let err = names(&c, &pod_meta(json!({}), Some(bad)), "x").unwrap_err();
        assert!(err.contains("not a valid object name"), "{bad}: {err}");
    }
    assert_eq!(
        names(&c, &pod_meta(json!({}), Some(" , ")), "x")
            .unwrap()
            .len(),
        0
    );
}

// ---- property test: the catalog agrees with a plain model of the rules ----

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const NAMESPACES: [&str; 2] = ["x", "y"];

#[derive(Debug, Clone)]
struct ModelObject {
    cluster: bool,
    namespace: &'static str,
    name: &'static str,
    /// 0: absent, 1: `{}`, 2: app=web, 3: app In [web, api], 4: does not parse.
    pod_selector: u8,
    /// 0: absent, 1: team=t1 (ClusterSidecar only).
    namespace_selector: u8,
    order: i32,
}

fn model_object() -> impl Strategy<Value = ModelObject> {
    (
        any::<bool>(),
        prop::sample::select(NAMESPACES.to_vec()),
        prop::sample::select(NAMES.to_vec()),
        0u8..5,
        0u8..2,
        -1i32..2,
    )
        .prop_map(
            |(cluster, namespace, name, pod_selector, namespace_selector, order)| ModelObject {
                cluster,
                namespace,
                name,
                pod_selector,
                namespace_selector,
                order,
            },
        )
}

fn to_value(m: &ModelObject) -> Value {
    let mut spec = json!({
        "order": m.order,
        // Unique container names per object: no conflicts in this test.
        "containers": [container(&format!("{}-{}", m.name, if m.cluster { "cluster".to_string() } else { m.namespace.to_string() }))],
    });
    match m.pod_selector {
        1 => spec["podSelector"] = json!({}),
        2 => spec["podSelector"] = json!({"matchLabels": {"app": "web"}}),
        3 => {
            spec["podSelector"] = json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]})
        }
        4 => spec["podSelector"] = json!({"matchExpressions": [{"key": "app", "operator": "In"}]}),
        _ => {}
    }
    if m.cluster && m.namespace_selector == 1 {
        spec["namespaceSelector"] = json!({"matchLabels": {"team": "t1"}});
    }
    if m.cluster {
        obj("ClusterSidecar", None, m.name, spec)
    } else {
        obj("Sidecar", Some(m.namespace), m.name, spec)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn selection_follows_the_rules(
        objects in prop::collection::vec(model_object(), 0..8),
        pod_ns in prop::sample::select(NAMESPACES.to_vec()),
        app in prop::option::of(prop::sample::select(vec!["web", "api", "db"])),
        opt_out in any::<bool>(),
        requested in prop::collection::btree_set(prop::sample::select(vec!["a", "b", "c", "d", "e"]), 0..3),
        x_is_t1 in any::<bool>(),
        reverse in any::<bool>(),
    ) {
        // Later duplicates of the same (scope, name) replace earlier ones, as in a cluster.
        let mut unique: BTreeMap<(bool, &str, &str), ModelObject> = BTreeMap::new();
        for m in &objects {
            let ns = if m.cluster { "" } else { m.namespace };
            unique.insert((m.cluster, ns, m.name), m.clone());
        }
        let mut values: Vec<Value> = unique.values().map(to_value).collect();
        if reverse {
            values.reverse();
        }
        let mut c = Catalog::build(values.iter().map(SidecarObject::from_value));
        c.namespaces.insert("x".into(), if x_is_t1 { [("team".to_string(), "t1".to_string())].into() } else { BTreeMap::new() });
        let mut labels = json!({});
        if let Some(app) = app { labels["app"] = json!(app); }
        if opt_out { labels["tandem.dev/inject"] = json!("disabled"); }
        let req: Vec<&str> = requested.iter().copied().collect();
        let meta = pod_meta(labels, (!req.is_empty()).then(|| req.join(",")).as_deref());
        let got = c.select(Some(&meta), pod_ns, &BTreeSet::new());

        // The model.
        let ns_t1 = pod_ns == "x" && x_is_t1;
        let selector_matches = |s: u8| match s {
            1 => true,
            2 => app == Some("web"),
            3 => matches!(app, Some("web" | "api")),
            _ => false,
        };
        if opt_out {
            let got = got.unwrap();
            prop_assert!(got.objects.is_empty());
            return Ok(());
        }
        let mut expected: Vec<(i32, &str, String)> = Vec::new();
        let mut error = false;
        for name in NAMES.iter().chain(["e"].iter()) {
            let local = unique.get(&(false, pod_ns, name));
            let cluster = unique.get(&(true, "", name));
            let effective = local.or(cluster);
            let asked = requested.contains(name);
            let Some(m) = effective else {
                if asked { error = true; }
                continue;
            };
            let in_scope = !m.cluster || m.namespace_selector == 0 || ns_t1;
            let valid = m.pod_selector != 4;
            if !in_scope {
                if asked { error = true; }
                continue;
            }
            if asked && !valid { error = true; continue; }
            if valid && (asked || selector_matches(m.pod_selector)) {
                let r = if m.cluster { format!("ClusterSidecar {name}") } else { format!("Sidecar {pod_ns}/{name}") };
                expected.push((m.order, name, r));
            }
        }
        expected.sort();
        match got {
            Err(e) => prop_assert!(error, "unexpected error {e}"),
            Ok(sel) => {
                prop_assert!(!error, "expected an error, got {:?}", sel.objects);
                let got: Vec<String> = sel.objects.iter().map(|o| o.object.reference.to_string()).collect();
                let want: Vec<String> = expected.into_iter().map(|e| e.2).collect();
                prop_assert_eq!(got, want);
                for o in &sel.objects {
                    prop_assert_eq!(o.requested, requested.contains(o.object.reference.name.as_str()));
                    if o.object.reference.kind == Kind::Sidecar {
                        prop_assert_eq!(o.object.reference.namespace.as_deref(), Some(pod_ns));
                    }
                }
            }
        }
    }
}
