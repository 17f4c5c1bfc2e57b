//! Fuzzing the request path with proptest: arbitrary bytes, arbitrary JSON, and
//! AdmissionReviews whose Pod is built from arbitrary JSON in every field the engine
//! reads. Whatever comes in, `review` answers (never panics): 400 for what is not an
//! AdmissionReview, otherwise a well-formed AdmissionReview whose patch applies to the pod.
//!
//! Run longer with `PROPTEST_CASES=20000 cargo test -p tandem-webhook --test fuzz_request_path`.

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{Value, json};
use tandem_core::knowledge::NodeFacts;
use tandem_core::{ClusterKnowledge, Config, Mode, NamespaceOptIn};
use tandem_webhook::admission::{Context, Outcome, PatchEncoding, review};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9./:_-]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("Always"),
            Just("Never"),
            Just("native"),
            Just("legacy"),
            Just("auto"),
            Just("universal"),
            Just("affinity"),
            Just("enabled"),
            Just("disabled"),
            Just("")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-z]{1,8}".prop_map(String::from),
                    Just("name".to_string()),
                    Just("containers".to_string()),
                    Just("initContainers".to_string()),
                    Just("restartPolicy".to_string()),
                    Just("nodeSelector".to_string()),
                    Just("affinity".to_string()),
                    Just("volumes".to_string()),
                    Just("command".to_string()),
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A Pod whose fields are sometimes right and sometimes arbitrary.
fn arb_pod() -> impl Strategy<Value = Value> {
    (
        arb_json(),
        arb_json(),
        arb_json(),
        arb_json(),
        arb_json(),
        prop::option::of(prop_oneof![Just("enabled"), Just("disabled"), Just("x")]),
        prop::option::of(prop_oneof![Just("native"), Just("legacy"), Just("auto"), Just("universal"), Just("affinity"), Just("bogus")]),
        any::<bool>(),
    )
        .prop_map(|(c0, init, spec_extra, labels, meta_extra, inject, mode, well_formed)| {
            let containers = if well_formed {
                json!([{"name": "app", "image": "nginx", "extra": c0}])
            } else {
                c0
            };
            let mut labels = if well_formed { json!({}) } else { labels };
            if let (Some(v), Some(m)) = (inject, labels.as_object_mut()) {
                m.insert("tandem.dev/inject".into(), json!(v));
            }
            let annotations = match mode {
                Some(m) => json!({"tandem.dev/mode": m}),
                None => meta_extra.clone(),
            };
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "ns", "labels": labels, "annotations": annotations},
                "spec": {"containers": containers, "initContainers": init, "extra": spec_extra}
            })
        })
}

fn knowledge() -> ClusterKnowledge {
    let nodes = ["v1.27.3", "v1.28.9", "v1.30.1", "v1.33.0"]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            tandem_webhook::live::node_facts(&json!({
                "kind": "Node",
                "metadata": {"name": format!("n{i}"), "labels": {"pool": format!("p{i}")}},
                "status": {"nodeInfo": {"kubeletVersion": v}}
            }))
        })
        .collect::<Vec<NodeFacts>>();
    ClusterKnowledge {
        nodes,
        nodes_have_labels: true,
        ..Default::default()
    }
}

fn check(body: &[u8], pod: Option<&Value>, mode: Option<Mode>, ns: NamespaceOptIn) {
    let config = Config::builtin();
    let k = knowledge();
    for encoding in [PatchEncoding::Base64, PatchEncoding::Array] {
        let ctx = Context {
            config: &config,
            knowledge: &k,
            synced: true,
            mode_override: mode,
            namespace: ns,
            encoding,
        };
        let a = review(body, &ctx);
        if a.outcome == Outcome::Invalid {
            assert_eq!(a.status, 400);
            continue;
        }
        assert_eq!(a.status, 200);
        let v: Value = serde_json::from_slice(&a.body).expect("response is JSON");
        assert_eq!(v["kind"], "AdmissionReview");
        let resp = &v["response"];
        assert!(resp["allowed"].is_boolean());
        let patch_bytes = match &resp["patch"] {
            Value::Null => continue,
            Value::String(s) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .expect("base64"),
            Value::Array(a) => a.iter().map(|n| n.as_u64().expect("byte") as u8).collect(),
            other => panic!("patch is {other}"),
        };
        let patch: json_patch::Patch = serde_json::from_slice(&patch_bytes).expect("patch JSON");
        if let Some(pod) = pod {
            let mut p = pod.clone();
            json_patch::patch(&mut p, &patch)
                .expect("the patch applies to the pod it was made for");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&body, None, None, NamespaceOptIn::Enabled);
    }

    #[test]
    fn arbitrary_json_bodies(v in arb_json()) {
        check(&serde_json::to_vec(&v).unwrap(), None, None, NamespaceOptIn::Enabled);
    }

    #[test]
    fn arbitrary_reviews(
        pod in arb_pod(),
        kind in prop_oneof![Just("Pod"), Just("Deployment"), Just("")],
        op in prop_oneof![Just("CREATE"), Just("UPDATE"), Just("DELETE")],
        dry in any::<bool>(),
        mode in prop::option::of(prop_oneof![Just(Mode::Native), Just(Mode::Legacy), Just(Mode::Auto), Just(Mode::Universal), Just(Mode::Affinity)]),
        labelled in any::<bool>(),
        envelope_noise in arb_json(),
    ) {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u", "kind": {"group": "", "version": "v1", "kind": kind},
                "namespace": "ns", "operation": op, "dryRun": dry, "object": pod,
                "noise": envelope_noise
            }
        });
        let ns = if labelled { NamespaceOptIn::NotEnabled } else { NamespaceOptIn::Enabled };
        check(&serde_json::to_vec(&body).unwrap(), Some(&pod), mode, ns);
    }

    #[test]
    fn arbitrary_envelopes(req in arb_json()) {
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req});
        check(&serde_json::to_vec(&body).unwrap(), None, None, NamespaceOptIn::Enabled);
    }
}
