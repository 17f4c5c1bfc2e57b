//! Adopt mode at admission (`/adopt`, `/adopt/labelled`): the same plan as `tandem
//! adopt`, run on the Pod the API server sends, so that legacy sidecars injected by
//! another webhook earlier in the chain become native sidecars where every node the pod
//! can land on runs them. Off unless registered (opt-in per namespace with the label
//! `tandem.dev/adopt=enabled`, or per pod), and registered with
//! `reinvocationPolicy: IfNeeded` so that it runs again after later injectors. It never
//! denies a pod: anything it can't plan is allowed unchanged, with a warning.

use json_patch::PatchOperation;
use serde_json::Value;
use tandem_core::NamespaceOptIn;
use tandem_core::adopt::{AdoptOutcome, Adopter};
use tandem_core::catalog::Catalog;

use crate::admission::Context;

/// The two adopt webhooks of `tandem install --adopt`, built with install's `hook(name,
/// path, namespace expression, object selector)`: one for namespaces labelled
/// `tandem.dev/adopt=enabled` (pods may opt out), one for pods labelled so elsewhere.
/// Adopt is an improvement, never a requirement: its failurePolicy is `Ignore`.
pub fn registrations(hook: impl Fn(&str, &str, Value, Value) -> Value) -> Vec<Value> {
    let label = tandem_core::names::ADOPT_LABEL;
    let mut out = vec![
        hook(
            "namespace.adopt.tandem.dev",
            "/adopt",
            serde_json::json!({"key": label, "operator": "In", "values": ["enabled"]}),
            serde_json::json!({"matchExpressions": [{"key": label, "operator": "NotIn", "values": ["disabled"]}]}),
        ),
        hook(
            "pod.adopt.tandem.dev",
            "/adopt/labelled",
            serde_json::json!({"key": label, "operator": "NotIn", "values": ["enabled"]}),
            serde_json::json!({"matchLabels": {label: "enabled"}}),
        ),
    ];
    for h in &mut out {
        h["failurePolicy"] = Value::from("Ignore");
    }
    out
}

/// What adopt mode decided for one Pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdoptAnswer {
    /// The patch (empty: allowed unchanged).
    pub patch: Vec<PatchOperation>,
    /// Warnings for the user (kubectl prints them).
    pub warnings: Vec<String>,
    /// Why, in a sentence, for logs.
    pub detail: String,
    /// Whether a sidecar was moved.
    pub moved: bool,
}

/// Plans adoption for `pod` (the AdmissionReview's object, in `namespace`); `objects`
/// are the sidecar objects the webhook watches, whose containers are recognised too.
pub fn decide(
    pod: &Value,
    ctx: &Context<'_>,
    ns: NamespaceOptIn,
    objects: Option<&Catalog>,
    namespace: Option<&str>,
) -> AdoptAnswer {
    let adopter = Adopter {
        config: ctx.config,
        knowledge: ctx.knowledge,
        force_native: false,
        strip_workarounds: false,
        objects,
        namespace,
    };
    match adopter.adopt_pod(pod, ns) {
        Ok(AdoptOutcome::Skipped { reason }) => AdoptAnswer {
            detail: reason,
            ..AdoptAnswer::default()
        },
        Ok(AdoptOutcome::Planned(a)) => {
            let mut warnings = Vec::new();
            let reasons = a.decision.reasons.join("; ");
            if !a.left.is_empty() {
                warnings.push(format!(
                    "tandem adopt: {} left as regular containers: {reasons}",
                    a.left.join(", ")
                ));
            }
            if !ctx.synced {
                warnings.push("tandem adopt: node knowledge not synced yet; nothing moved".into());
            }
            warnings.extend(
                a.decision
                    .warnings
                    .iter()
                    .map(|w| format!("tandem adopt: {w}")),
            );
            warnings.extend(
                a.workarounds
                    .iter()
                    .filter(|w| !a.moved.is_empty() && !w.container.is_empty())
                    .map(|w| {
                        format!(
                            "tandem adopt: {} on {} ({}) is no longer needed",
                            w.kind.as_str(),
                            w.container,
                            w.field
                        )
                    }),
            );
            let detail = if a.moved.is_empty() {
                format!("adopt left {}: {reasons}", a.left.join(", "))
            } else {
                format!(
                    "adopt moved {} to native sidecars: {reasons}",
                    a.moved.join(", ")
                )
            };
            AdoptAnswer {
                moved: !a.moved.is_empty(),
                patch: a.patch,
                warnings,
                detail,
            }
        }
        Err(e) => AdoptAnswer {
            warnings: vec![format!("tandem adopt: allowed unchanged: {e}")],
            detail: e.to_string(),
            ..AdoptAnswer::default()
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
    use base64::Engine as _;
    use serde_json::json;
    use tandem_core::knowledge::NodeFacts;
    use tandem_core::{ClusterKnowledge, Config, KubeVersion};

    use super::*;
    use crate::admission::{Outcome, PatchEncoding, review_adopt};

    fn review_json(object: Value) -> Value {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop", "operation": "CREATE", "object": object}})
    }

    fn knowledge(v: &str) -> ClusterKnowledge {
        ClusterKnowledge {
            nodes: vec![NodeFacts::from_version(KubeVersion::parse(v).unwrap())],
            ..Default::default()
        }
    }

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "api", "namespace": "shop"},
            "spec": {
                "initContainers": [{"name": "istio-init", "image": "docker.io/istio/proxyv2:1.24.0"}],
                "containers": [{"name": "api", "image": "api"},
                               {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "futureField": 1}]}})
    }

    fn run(
        k: &ClusterKnowledge,
        ns: NamespaceOptIn,
        object: Value,
    ) -> (crate::admission::Answer, Value) {
        let config = Config::builtin();
        let ctx = Context {
            config: &config,
            knowledge: k,
            synced: true,
            mode_override: None,
            namespace: ns,
            encoding: PatchEncoding::Base64,
        };
        let a = review_adopt(review_json(object).to_string().as_bytes(), &ctx, None);
        let body: Value = serde_json::from_slice(&a.body).unwrap();
        (a, body)
    }

    #[test]
    fn a_sidecar_objects_container_is_recognised_in_the_reviews_namespace() {
        // The pod has no namespace of its own (a create through a ReplicaSet): the
        // review's namespace decides which Sidecar objects apply.
        let object = json!({"apiVersion": "tandem.dev/v1alpha1", "kind": "Sidecar",
            "metadata": {"name": "shipper", "namespace": "shop"},
            "spec": {"containers": [{"name": "log-shipper", "image": "example/shipper:1"}]}});
        let catalog = tandem_core::catalog::Catalog::from_documents([&object]).unwrap();
        let config = Config::builtin();
        let k = knowledge("v1.31.4");
        let ctx = Context {
            config: &config,
            knowledge: &k,
            synced: true,
            mode_override: None,
            namespace: NamespaceOptIn::Enabled,
            encoding: PatchEncoding::Base64,
        };
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api"},
            "spec": {"containers": [{"name": "api", "image": "api"},
                                    {"name": "log-shipper", "image": "example/shipper:1"}]}});
        let objects = crate::admission::Objects {
            catalog: &catalog,
            synced: true,
        };
        let a = review_adopt(
            review_json(pod.clone()).to_string().as_bytes(),
            &ctx,
            Some(objects),
        );
        assert_eq!(a.outcome, Outcome::Adopted, "{}", a.detail);
        // Without the objects, the container is nobody's sidecar.
        let a = review_adopt(review_json(pod).to_string().as_bytes(), &ctx, None);
        assert_eq!(a.outcome, Outcome::Skipped, "{}", a.detail);
    }

    #[test]
    fn install_registers_adopt_only_when_asked() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: crate::install::InstallArgs,
        }
        let hooks = |argv: &[&str]| {
            let args = Cli::parse_from(argv).args;
            crate::install::objects(&args)
                .unwrap()
                .into_iter()
                .find(|o| o["kind"] == "MutatingWebhookConfiguration")
                .unwrap()["webhooks"]
                .clone()
        };
        let off = hooks(&["install"]);
        assert!(!off.to_string().contains("/adopt"), "{off}");
        let on = hooks(&["install", "--adopt"]);
        let adopt: Vec<&Value> = on
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["name"].as_str().unwrap().contains("adopt"))
            .collect();
        assert_eq!(adopt.len(), 2);
        for h in adopt {
            assert_eq!(h["failurePolicy"], "Ignore");
            assert_eq!(h["reinvocationPolicy"], "IfNeeded");
            assert!(
                h["clientConfig"]["service"]["path"]
                    .as_str()
                    .unwrap()
                    .starts_with("/adopt")
            );
        }
    }

    #[test]
    fn moves_a_sidecar_another_webhook_added_and_never_denies() {
        let (a, body) = run(&knowledge("v1.31.4"), NamespaceOptIn::Enabled, pod());
        assert_eq!(a.outcome, Outcome::Adopted, "{}", a.detail);
        let resp = &body["response"];
        assert_eq!(resp["allowed"], true);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(resp["patch"].as_str().unwrap())
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        let mut out = pod();
        json_patch::patch(&mut out, &patch).unwrap();
        assert_eq!(out["spec"]["initContainers"][1]["name"], "istio-proxy");
        assert_eq!(out["spec"]["initContainers"][1]["restartPolicy"], "Always");
        assert_eq!(out["spec"]["initContainers"][1]["futureField"], 1);
        // Reinvocation: already adopted, nothing more.
        let (again, body) = run(&knowledge("v1.31.4"), NamespaceOptIn::Enabled, out);
        assert_eq!(again.outcome, Outcome::Skipped);
        assert!(body["response"].get("patch").is_none());
        // Old nodes: allowed unchanged, with the reason as a warning.
        let (old, body) = run(&knowledge("v1.27.3"), NamespaceOptIn::Enabled, pod());
        assert_eq!(old.outcome, Outcome::Skipped);
        assert!(
            body["response"]["warnings"][0]
                .as_str()
                .unwrap()
                .contains("too old"),
            "{body}"
        );
        // Not opted in: nothing. A bad label: allowed, with a warning, never denied.
        let (off, _) = run(&knowledge("v1.31.4"), NamespaceOptIn::NotEnabled, pod());
        assert_eq!(off.outcome, Outcome::Skipped);
        let mut bad = pod();
        bad["metadata"]["labels"] = json!({"tandem.dev/adopt": "perhaps"});
        let (bad, body) = run(&knowledge("v1.31.4"), NamespaceOptIn::Enabled, bad);
        assert_eq!(body["response"]["allowed"], true);
        assert_eq!(bad.outcome, Outcome::Skipped);
    }
}
