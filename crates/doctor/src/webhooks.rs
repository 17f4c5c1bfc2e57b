//! Check 4, pure parts: which MutatingWebhookConfigurations see a Pod CREATE in a
//! namespace (rules, namespaceSelector, objectSelector), the probe pod, and the verdict
//! on what a server-side dry-run create gave back.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};
use tandem_core::names::INJECT_LABEL;
use tandem_kube::KubeError;

use crate::report::{Check, Item, Status};

/// Title of check 4.
pub const TITLE: &str = "Mutating webhooks keep restartPolicy: Always on init containers";
/// Name of the probe pod's native sidecar.
pub const PROBE_SIDECAR: &str = "tandem-probe-sidecar";

/// Whether a webhook sees the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Its rules and selectors match.
    Yes,
    /// It may: something could not be evaluated (matchConditions, unreadable namespace).
    Maybe(String),
    /// It doesn't, and why.
    No(String),
}

/// Whether a label selector matches a set of labels (`None` selector: everything).
pub fn selector_matches(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = sel else { return true };
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|h| values.contains(h)),
            "NotIn" => have.is_none_or(|h| !values.contains(h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

fn is_empty_selector(sel: Option<&LabelSelector>) -> bool {
    sel.is_none_or(|s| {
        s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
            && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
    })
}

fn has(list: Option<&Vec<String>>, wanted: &[&str]) -> bool {
    list.is_some_and(|l| l.iter().any(|x| wanted.contains(&x.as_str())))
}

/// Whether one webhook sees a Pod CREATE of a pod with `pod_labels` in a namespace with
/// `ns_labels` (`None`: the namespace could not be read).
pub fn webhook_matches(
    w: &MutatingWebhook,
    ns_labels: Option<&BTreeMap<String, String>>,
    pod_labels: &BTreeMap<String, String>,
) -> Match {
    let rule_ok = w.rules.iter().flatten().any(|r| {
        has(r.operations.as_ref(), &["CREATE", "*"])
            && has(r.api_groups.as_ref(), &["", "*"])
            && has(r.api_versions.as_ref(), &["v1", "*"])
            && has(r.resources.as_ref(), &["pods", "*", "*/*"])
            && r.scope
                .as_deref()
                .is_none_or(|s| s == "*" || s == "Namespaced")
    });
    if !rule_ok {
        return Match::No("its rules don't cover Pod CREATE".into());
    }
    if !selector_matches(w.object_selector.as_ref(), pod_labels) {
        return Match::No("its objectSelector doesn't match the probe's labels".into());
    }
    match ns_labels {
        Some(labels) if !selector_matches(w.namespace_selector.as_ref(), labels) => {
            return Match::No("its namespaceSelector doesn't match the namespace".into());
        }
        None if !is_empty_selector(w.namespace_selector.as_ref()) => {
            return Match::Maybe(
                "it has a namespaceSelector and the namespace's labels could not be read".into(),
            );
        }
        _ => {}
    }
    if w.match_conditions.as_ref().is_some_and(|c| !c.is_empty()) {
        return Match::Maybe(
            "it has matchConditions (CEL), which the doctor doesn't evaluate".into(),
        );
    }
    Match::Yes
}

/// A webhook that sees the probe, with what a user needs to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// `configuration/webhook`.
    pub name: String,
    /// Certain or possible.
    pub certain: bool,
    /// Why it may or does match, plus its failure policy and side effects.
    pub detail: String,
    /// tandem's own webhook: never a suspect, since the probe opts out of tandem.
    pub tandem: bool,
}

/// Whether a webhook is tandem's own: its configuration is labelled
/// `app.kubernetes.io/part-of: tandem` (what `tandem install` and the chart render), or
/// its name ends in `inject.tandem.dev`.
pub fn is_tandem(cfg: &MutatingWebhookConfiguration, w: &MutatingWebhook) -> bool {
    cfg.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/part-of"))
        .is_some_and(|v| v == "tandem")
        || w.name.ends_with("inject.tandem.dev")
}

/// The webhooks (of all configurations) that see the probe.
pub fn webhooks_seeing(
    configs: &[MutatingWebhookConfiguration],
    ns_labels: Option<&BTreeMap<String, String>>,
    pod_labels: &BTreeMap<String, String>,
) -> Vec<Seen> {
    let mut out = Vec::new();
    for cfg in configs {
        let cfg_name = cfg.metadata.name.clone().unwrap_or_default();
        for w in cfg.webhooks.iter().flatten() {
            let m = webhook_matches(w, ns_labels, pod_labels);
            let facts = format!(
                "failurePolicy {}, sideEffects {}, reinvocationPolicy {}",
                w.failure_policy.as_deref().unwrap_or("Fail"),
                w.side_effects,
                w.reinvocation_policy.as_deref().unwrap_or("Never"),
            );
            let tandem = is_tandem(cfg, w);
            match m {
                Match::Yes => out.push(Seen {
                    name: format!("{cfg_name}/{}", w.name),
                    certain: true,
                    detail: facts,
                    tandem,
                }),
                Match::Maybe(why) => out.push(Seen {
                    name: format!("{cfg_name}/{}", w.name),
                    certain: false,
                    detail: format!("{why}; {facts}"),
                    tandem,
                }),
                Match::No(_) => {}
            }
        }
    }
    out
}

/// The probe pod: a pause container and one native sidecar of its own, labelled like a
/// workload. It opts out of tandem (`tandem.dev/inject: disabled`, which wins over any
/// `--probe-label`), so that tandem never injects into it, and whatever changes its
/// sidecar is another webhook.
pub fn probe_pod(namespace: &str, labels: &BTreeMap<String, String>, image: &str) -> Value {
    let mut labels = labels.clone();
    labels.insert(INJECT_LABEL.to_string(), "disabled".to_string());
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "tandem-doctor-probe-",
            "namespace": namespace,
            "labels": labels,
            "annotations": {"tandem.dev/doctor-probe": "dry-run only; never persisted"},
        },
        "spec": {
            "initContainers": [{"name": PROBE_SIDECAR, "image": image, "restartPolicy": "Always"}],
            "containers": [{"name": "app", "image": image}],
            "terminationGracePeriodSeconds": 0,
        }
    })
}

/// What came back from the dry-run create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// `restartPolicy: Always` survived.
    Kept,
    /// The sidecar is there without `restartPolicy: Always`.
    Stripped,
    /// The sidecar init container is gone altogether.
    Removed,
}

/// Reads the dry-run result.
pub fn probe_outcome(result: &Value) -> ProbeOutcome {
    let inits = result
        .pointer("/spec/initContainers")
        .and_then(Value::as_array);
    match inits
        .into_iter()
        .flatten()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(PROBE_SIDECAR))
    {
        None => ProbeOutcome::Removed,
        Some(c) if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") => {
            ProbeOutcome::Kept
        }
        Some(_) => ProbeOutcome::Stripped,
    }
}

/// The webhook check's verdict. `configs`: the list (or why it failed); `seen`: what
/// [`webhooks_seeing`] made of it; `probe`: the dry-run result; `apiserver_drops`: why
/// the API server itself drops the field, when it does.
pub fn verdict(
    namespace: &str,
    configs: &Result<usize, KubeError>,
    seen: &[Seen],
    probe: &Result<Value, KubeError>,
    apiserver_drops: Option<&str>,
) -> Check {
    let id = "webhooks";
    let mut c = Check::new(id, TITLE, Status::Pass, String::new());
    match configs {
        Err(e) => {
            let err = Check::from_error(id, TITLE, e);
            c.evidence.push(format!("webhooks not listed: {}", err.summary.trim_start_matches("could not check: ")));
            c.permission = err.permission;
        }
        Ok(n) => c.evidence.push(format!(
            "{} of {} mutating webhook configurations' webhooks see Pod CREATE in namespace {namespace}",
            seen.len(),
            n
        )),
    }
    let others: Vec<&Seen> = seen.iter().filter(|s| !s.tandem).collect();
    // `lost`: what the probe's sidecar lost, as the suspects' detail says it.
    let suspects = |c: &mut Check, status: Status, lost: &str| {
        for s in seen {
            if s.tandem {
                c.items.push(Item::new(
                    Status::Pass,
                    format!("webhook {}", s.name),
                    format!("tandem's own webhook: not a suspect (the probe opts out of tandem with {INJECT_LABEL}=disabled); {}", s.detail),
                ));
                continue;
            }
            let what = if s.certain {
                "suspect"
            } else {
                "possible suspect"
            };
            let who = if others.len() == 1 {
                lost.to_string()
            } else {
                format!(
                    "{lost} (it or one of the other {} webhooks that see the probe)",
                    others.len() - 1
                )
            };
            c.items.push(Item::new(
                status,
                format!("webhook {}", s.name),
                format!("{what}: {who}; {}", s.detail),
            ));
        }
    };
    let names_of_others = || {
        others
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match probe {
        Err(e) => {
            let msg = e.to_string();
            if msg.contains("restartPolicy") && msg.contains("init container") {
                c.status = Status::Fail;
                c.summary = format!("the probe pod was rejected after mutation: {msg}");
                suspects(
                    &mut c,
                    Status::Fail,
                    &format!(
                        "dropped restartPolicy: Always from init container {PROBE_SIDECAR:?} (the create was then rejected)"
                    ),
                );
            } else if let Some(access) = e.forbidden() {
                c.status = Status::Error;
                c.summary =
                    format!("could not run the dry-run probe: permission to {access} is missing");
                c.hint = Some(format!(
                    "grant it (check with `{}`), or pass --namespace NS where you may create pods",
                    access.can_i()
                ));
                c.permission = Some(access.clone());
                for s in seen {
                    c.items.push(Item::new(
                        Status::Skip,
                        format!("webhook {}", s.name),
                        format!("not tested: {}", s.detail),
                    ));
                }
            } else {
                c.status = if msg.contains("failed calling webhook") {
                    Status::Fail
                } else {
                    Status::Error
                };
                c.summary = format!("the dry-run create of the probe pod failed: {msg}");
                suspects(&mut c, Status::Warn, "the create failed");
            }
        }
        Ok(result) => {
            let outcome = probe_outcome(result);
            c.evidence.push(format!(
                "dry-run create (dryRun=All) of a pod with native sidecar {PROBE_SIDECAR:?} in namespace {namespace}: {}",
                match outcome {
                    ProbeOutcome::Kept => "restartPolicy: Always kept",
                    ProbeOutcome::Stripped => "restartPolicy: Always is gone",
                    ProbeOutcome::Removed => "the sidecar init container is gone",
                }
            ));
            match (outcome, apiserver_drops) {
                (ProbeOutcome::Kept, _) => {
                    c.summary = if seen.is_empty() {
                        "no mutating webhook sees the probe; restartPolicy: Always survives".into()
                    } else {
                        format!(
                            "restartPolicy: Always survives the {} that see the probe",
                            if seen.len() == 1 {
                                "webhook"
                            } else {
                                "webhooks"
                            }
                        )
                    };
                    for s in seen {
                        c.items.push(Item::new(
                            Status::Pass,
                            format!("webhook {}", s.name),
                            s.detail.clone(),
                        ));
                    }
                }
                (_, Some(why)) => {
                    c.status = Status::Fail;
                    c.summary = format!(
                        "restartPolicy: Always is gone, and the API server itself drops it: {why}"
                    );
                    c.hint = Some("turn the SidecarContainers gate on in kube-apiserver first, then run the doctor again to test the webhooks".into());
                    for s in seen {
                        c.items.push(Item::new(
                            Status::Warn,
                            format!("webhook {}", s.name),
                            format!(
                                "not tested while the API server drops the field: {}",
                                s.detail
                            ),
                        ));
                    }
                }
                (outcome, None) => {
                    let lost = match outcome {
                        ProbeOutcome::Removed => {
                            format!("removed init container {PROBE_SIDECAR:?}")
                        }
                        _ => format!(
                            "dropped restartPolicy: Always from init container {PROBE_SIDECAR:?}"
                        ),
                    };
                    c.status = Status::Fail;
                    c.summary = if others.is_empty() {
                        "restartPolicy: Always is gone after mutation, but no webhook other than tandem's sees the probe: check webhooks with matchConditions or reinvocation".into()
                    } else {
                        format!(
                            "restartPolicy: Always is gone after mutation: {} rewrote the pod, probably decoding it with a pre-1.28 schema",
                            names_of_others()
                        )
                    };
                    c.hint = Some("ask the webhook's authors to patch pods (JSON Patch of what they add) instead of replacing them, or to rebuild with a 1.28+ client library; exclude tandem's namespaces or pods from it meanwhile".into());
                    suspects(&mut c, Status::Fail, &lost);
                }
            }
        }
    }
    if c.status == Status::Pass && c.permission.is_some() {
        c.status = Status::Warn;
    }
    c
}

fn rank(s: Status) -> u8 {
    match s {
        Status::Skip => 0,
        Status::Pass => 1,
        Status::Warn => 2,
        Status::Fail => 3,
        Status::Error => 4,
    }
}

/// Merges check 4's verdicts for several namespaces (the `-n` namespace and every
/// namespace that opts in) into one check: the worst status, a summary per namespace
/// that isn't clean, and one item per webhook that says in which namespaces it was seen.
pub fn combine(per_ns: Vec<(String, Check)>) -> Check {
    let mut per_ns = per_ns;
    if per_ns.len() == 1 {
        return per_ns.remove(0).1;
    }
    let mut c = Check::new("webhooks", TITLE, Status::Skip, String::new());
    let Some(worst) = per_ns
        .iter()
        .map(|(_, c)| c.status)
        .max_by_key(|s| rank(*s))
    else {
        c.summary = "no namespace to probe".into();
        return c;
    };
    c.status = worst;
    let names: Vec<&str> = per_ns.iter().map(|(n, _)| n.as_str()).collect();
    let bad: Vec<&(String, Check)> = per_ns
        .iter()
        .filter(|(_, c)| rank(c.status) > rank(Status::Pass))
        .collect();
    c.summary = if bad.is_empty() {
        format!(
            "{} (probed in {} namespaces: {})",
            per_ns[0].1.summary,
            names.len(),
            names.join(", ")
        )
    } else {
        bad.iter()
            .map(|(n, c)| format!("namespace {n}: {}", c.summary))
            .collect::<Vec<_>>()
            .join("; ")
    };
    // Evidence in full where something is wrong (or everywhere, when nothing is); one
    // line for the namespaces where the probe came through clean.
    let clean: Vec<&str> = per_ns
        .iter()
        .filter(|(_, c)| c.status == Status::Pass)
        .map(|(n, _)| n.as_str())
        .collect();
    for (_, one) in per_ns
        .iter()
        .filter(|(_, c)| bad.is_empty() || c.status != Status::Pass)
    {
        for e in &one.evidence {
            if !c.evidence.contains(e) {
                c.evidence.push(e.clone());
            }
        }
    }
    if !bad.is_empty() && !clean.is_empty() {
        c.evidence.push(format!(
            "restartPolicy: Always kept in namespaces {}",
            clean.join(", ")
        ));
    }
    c.hint = bad
        .iter()
        .find_map(|(_, c)| c.hint.clone())
        .or_else(|| per_ns.iter().find_map(|(_, c)| c.hint.clone()));
    c.permission = per_ns.iter().find_map(|(_, c)| c.permission.clone());
    // One item per subject: the worst occurrence, with the namespaces where it is so.
    let mut subjects: Vec<String> = Vec::new();
    for (_, one) in &per_ns {
        for i in &one.items {
            if !subjects.contains(&i.subject) {
                subjects.push(i.subject.clone());
            }
        }
    }
    for subject in subjects {
        let occurrences: Vec<(&str, &Item)> = per_ns
            .iter()
            .flat_map(|(n, c)| {
                c.items
                    .iter()
                    .filter(|i| i.subject == subject)
                    .map(move |i| (n.as_str(), i))
            })
            .collect();
        let Some((_, worst_item)) = occurrences
            .iter()
            .max_by_key(|(_, i)| rank(i.status))
            .copied()
        else {
            continue;
        };
        let at: Vec<&str> = occurrences
            .iter()
            .filter(|(_, i)| i.status == worst_item.status)
            .map(|(n, _)| *n)
            .collect();
        let mut item = worst_item.clone();
        item.detail = format!(
            "{} ({} {})",
            item.detail,
            if at.len() == 1 {
                "namespace"
            } else {
                "namespaces"
            },
            at.join(", ")
        );
        c.items.push(item);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn config(name: &str, webhook: Value) -> MutatingWebhookConfiguration {
        serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name}, "webhooks": [webhook]
        }))
        .unwrap()
    }

    fn webhook(rules: Value) -> Value {
        json!({"name": "w.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
               "clientConfig": {"url": "https://127.0.0.1:1/m"}, "rules": rules})
    }

    fn pods_rule() -> Value {
        json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}])
    }

    #[test]
    fn rules_and_selectors() {
        let ns = labels(&[("kubernetes.io/metadata.name", "shop"), ("mesh", "on")]);
        let pod = labels(&[("app", "probe")]);
        let seen = |w: Value, ns: Option<&BTreeMap<String, String>>| {
            webhooks_seeing(&[config("cfg", w)], ns, &pod)
        };
        assert_eq!(seen(webhook(pods_rule()), Some(&ns)).len(), 1);
        assert_eq!(
            seen(webhook(pods_rule()), Some(&ns))[0].name,
            "cfg/w.example.com"
        );
        let star = json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"], "scope": "*"}]);
        assert_eq!(seen(webhook(star), Some(&ns)).len(), 1);
        let update_only = json!([{"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]);
        assert!(seen(webhook(update_only), Some(&ns)).is_empty());
        let subresource = json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/exec"]}]);
        assert!(seen(webhook(subresource), Some(&ns)).is_empty());
        let deployments = json!([{"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]}]);
        assert!(seen(webhook(deployments), Some(&ns)).is_empty());

        let mut w = webhook(pods_rule());
        w["namespaceSelector"] = json!({"matchLabels": {"mesh": "on"}});
        assert_eq!(seen(w.clone(), Some(&ns)).len(), 1);
        let other = labels(&[("kubernetes.io/metadata.name", "other")]);
        assert!(seen(w.clone(), Some(&other)).is_empty());
        let unknown = seen(w, None);
        assert!(!unknown[0].certain);

        let mut w = webhook(pods_rule());
        w["objectSelector"] =
            json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["probe"]}]});
        assert!(seen(w, Some(&ns)).is_empty());
        let mut w = webhook(pods_rule());
        w["matchConditions"] = json!([{"name": "c", "expression": "true"}]);
        assert!(!seen(w, Some(&ns))[0].certain);
    }

    #[test]
    fn selector_operators() {
        let l = labels(&[("a", "1")]);
        let sel = |v: Value| serde_json::from_value::<LabelSelector>(v).unwrap();
        assert!(selector_matches(
            Some(&sel(
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]})
            )),
            &l
        ));
        assert!(!selector_matches(
            Some(&sel(
                json!({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]})
            )),
            &l
        ));
        assert!(selector_matches(
            Some(&sel(
                json!({"matchExpressions": [{"key": "b", "operator": "DoesNotExist"}]})
            )),
            &l
        ));
        assert!(selector_matches(
            Some(&sel(
                json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]})
            )),
            &l
        ));
        assert!(selector_matches(Some(&sel(json!({}))), &l));
        assert!(!selector_matches(
            Some(&sel(
                json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})
            )),
            &l
        ));
    }

    fn seen_one() -> Vec<Seen> {
        vec![Seen {
            name: "legacy-injector/inject.example.com".into(),
            certain: true,
            detail: "failurePolicy Fail".into(),
            tandem: false,
        }]
    }

    #[test]
    fn stripped_probe_names_suspects() {
        let ns = "default";
        let probe = probe_pod(ns, &labels(&[("app", "x")]), "pause");
        assert_eq!(probe_outcome(&probe), ProbeOutcome::Kept);
        let mut stripped = probe.clone();
        stripped["spec"]["initContainers"][0]
            .as_object_mut()
            .unwrap()
            .remove("restartPolicy");
        assert_eq!(probe_outcome(&stripped), ProbeOutcome::Stripped);
        let c = verdict(ns, &Ok(3), &seen_one(), &Ok(stripped.clone()), None);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.summary.contains("legacy-injector/inject.example.com"),
            "{}",
            c.summary
        );
        assert_eq!(c.items[0].status, Status::Fail);
        assert!(c.items[0].detail.starts_with("suspect"));
        // The API server's own gate explains it instead.
        let c = verdict(
            ns,
            &Ok(3),
            &seen_one(),
            &Ok(stripped),
            Some("API server v1.31.0: gate off"),
        );
        assert!(c.summary.contains("API server itself"), "{}", c.summary);
        assert_eq!(c.items[0].status, Status::Warn);
        // Kept: pass, webhooks listed.
        let c = verdict(ns, &Ok(3), &seen_one(), &Ok(probe.clone()), None);
        assert_eq!(c.status, Status::Pass);
        assert_eq!(c.items.len(), 1);
        let mut removed = probe;
        removed["spec"]["initContainers"] = json!([]);
        assert_eq!(probe_outcome(&removed), ProbeOutcome::Removed);
    }

    #[test]
    fn tandem_is_not_a_suspect_and_each_suspect_says_what_it_dropped() {
        let ns = "shop";
        let mut tandem_cfg = config("tandem", webhook(pods_rule()));
        tandem_cfg.metadata.labels = Some(labels(&[("app.kubernetes.io/part-of", "tandem")]));
        let strip_cfg = config("legacy-injector", webhook(pods_rule()));
        let probe_labels = labels(&[("app", "x")]);
        let seen = webhooks_seeing(&[tandem_cfg, strip_cfg], None, &probe_labels);
        assert_eq!(seen.len(), 2);
        assert!(seen[0].tandem && !seen[1].tandem);
        let probe = probe_pod(ns, &probe_labels, "pause");
        assert_eq!(probe["metadata"]["labels"]["tandem.dev/inject"], "disabled");
        let mut stripped = probe.clone();
        stripped["spec"]["initContainers"][0]
            .as_object_mut()
            .unwrap()
            .remove("restartPolicy");
        let c = verdict(ns, &Ok(2), &seen, &Ok(stripped), None);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.summary
                .contains(": legacy-injector/w.example.com rewrote the pod"),
            "{}",
            c.summary
        );
        assert!(!c.summary.contains("tandem/"), "{}", c.summary);
        assert_eq!(c.items[0].status, Status::Pass);
        assert!(
            c.items[0]
                .detail
                .starts_with("tandem's own webhook: not a suspect")
        );
        assert_eq!(c.items[1].status, Status::Fail);
        assert!(
            c.items[1].detail.starts_with(
                "suspect: dropped restartPolicy: Always from init container \"tandem-probe-sidecar\"; "
            ),
            "{}",
            c.items[1].detail
        );
        // By name alone, too.
        let named = config(
            "whatever",
            json!({"name": "namespace.inject.tandem.dev", "admissionReviewVersions": ["v1"],
                   "sideEffects": "None", "clientConfig": {"url": "https://127.0.0.1:1/m"},
                   "rules": pods_rule()}),
        );
        assert!(webhooks_seeing(&[named], None, &probe_labels)[0].tandem);
    }

    #[test]
    fn namespaces_are_combined() {
        let ns_a = verdict(
            "a",
            &Ok(1),
            &seen_one(),
            &Ok(probe_pod("a", &BTreeMap::new(), "p")),
            None,
        );
        let mut stripped = probe_pod("b", &BTreeMap::new(), "p");
        stripped["spec"]["initContainers"][0]
            .as_object_mut()
            .unwrap()
            .remove("restartPolicy");
        let ns_b = verdict("b", &Ok(1), &seen_one(), &Ok(stripped), None);
        let one = combine(vec![("a".into(), ns_a.clone())]);
        assert_eq!(one, ns_a);
        let c = combine(vec![("a".into(), ns_a.clone()), ("b".into(), ns_b)]);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.summary
                .starts_with("namespace b: restartPolicy: Always is gone"),
            "{}",
            c.summary
        );
        assert_eq!(c.items.len(), 1);
        assert!(c.items[0].detail.starts_with("suspect"));
        assert!(
            c.items[0].detail.ends_with("(namespace b)"),
            "{}",
            c.items[0].detail
        );
        assert!(c.evidence.iter().any(|e| e.contains("in namespace b")));
        assert!(!c.evidence.iter().any(|e| e.contains("in namespace a")));
        assert!(
            c.evidence
                .contains(&"restartPolicy: Always kept in namespaces a".to_string()),
            "{:?}",
            c.evidence
        );
        let c = combine(vec![("a".into(), ns_a.clone()), ("c".into(), ns_a)]);
        assert_eq!(c.status, Status::Pass);
        assert!(
            c.summary.ends_with("(probed in 2 namespaces: a, c)"),
            "{}",
            c.summary
        );
        assert!(c.items[0].detail.ends_with("(namespaces a, c)"));
    }

    #[test]
    fn probe_errors() {
        let forbidden = KubeError::Forbidden {
            access: tandem_kube::Access::new("create", "pods").in_namespace("default"),
            message: "no".into(),
        };
        let c = verdict("default", &Ok(1), &seen_one(), &Err(forbidden), None);
        assert_eq!(c.status, Status::Error);
        assert_eq!(c.permission.as_ref().unwrap().verb, "create");
        assert!(c.summary.contains("create pods in namespace default"));
        let invalid = KubeError::Api {
            access: tandem_kube::Access::new("create", "pods"),
            code: 422,
            message: "spec.initContainers[0].startupProbe: Forbidden: may not be set for init containers without restartPolicy=Always".into(),
        };
        assert_eq!(
            verdict("default", &Ok(1), &seen_one(), &Err(invalid), None).status,
            Status::Fail
        );
        let list_forbidden = KubeError::Forbidden {
            access: tandem_kube::Access::new(
                "list",
                "mutatingwebhookconfigurations.admissionregistration.k8s.io",
            ),
            message: "no".into(),
        };
        let probe = probe_pod("default", &BTreeMap::new(), "pause");
        let c = verdict("default", &Err(list_forbidden), &[], &Ok(probe), None);
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.permission
                .unwrap()
                .resource
                .starts_with("mutatingwebhookconfigurations")
        );
    }
}
