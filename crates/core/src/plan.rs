//! Deciding how one pod gets its sidecars: which placement, and why.
//!
//! `auto` looks at the nodes the pod can land on and at the API server, through
//! the compatibility model, and never picks a form that a candidate node rejects.

use serde::Serialize;
use serde_json::Value;

use fixedbitset::FixedBitSet;

use crate::compat::{self, ApiServerBehaviour, KubeletBehaviour};
use crate::config::{Config, Fallback, ProbePolicy};
use crate::knowledge::{ClusterKnowledge, NodeFacts};
use crate::mode::{Mode, Placement};
use crate::names::NODE_LABEL;
use crate::node_index::NodeIndex;

/// Where the requested mode came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeSource {
    /// The pod's `tandem.dev/mode` annotation.
    Annotation,
    /// An override given to the command (`--mode`).
    Override,
    /// The configuration's `mode`.
    Config,
    /// A sidecar object's `spec.mode`.
    Object,
}

/// How one pod gets its sidecars, and the reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The mode that was asked for.
    pub requested: Mode,
    /// Where it was asked for.
    pub source: ModeSource,
    /// What will be done.
    pub placement: Placement,
    /// Why (for `auto`: the evidence), in sentences.
    pub reasons: Vec<String>,
    /// What a user should know: risks of the chosen form on candidate nodes.
    pub warnings: Vec<String>,
    /// Universal only: whether the API server is trusted to keep `restartPolicy`
    /// (and so probes and hooks) on the native copy.
    pub native_field_kept: bool,
    /// Universal only: the native copy gets a startupProbe that settles the handshake.
    pub startup_probe: bool,
}

/// The facts about one pod that decide its placement.
#[derive(Debug, Clone, Copy)]
pub struct PodFacts<'a> {
    /// The pod spec.
    pub spec: &'a Value,
    /// `Err(why)` when universal can't be used for this pod's sidecars.
    pub universal_ok: Result<(), &'a str>,
}

/// Decides the placement for a pod that asked for `requested`.
pub fn decide(
    requested: Mode,
    source: ModeSource,
    pod: PodFacts<'_>,
    knowledge: &ClusterKnowledge,
    config: &Config,
) -> Decision {
    let api = knowledge.apiserver_behaviour();
    let mut d = Decision {
        requested,
        source,
        placement: Placement::Legacy,
        reasons: Vec::new(),
        warnings: Vec::new(),
        native_field_kept: false,
        startup_probe: false,
    };
    match requested.fixed() {
        Some(p) => {
            d.placement = p;
            d.reasons
                .push(format!("mode {p} set by {}", source_words(source)));
            d.warnings.extend(risks(p, pod.spec, knowledge));
        }
        None => decide_auto(&mut d, pod, knowledge, config),
    }
    if d.placement == Placement::Universal {
        d.native_field_kept = match config.universal.startup_probe {
            ProbePolicy::Always => true,
            _ => api.behaviour == ApiServerBehaviour::KeepsField,
        };
        d.startup_probe =
            d.native_field_kept && config.universal.startup_probe != ProbePolicy::Never;
        if !d.native_field_kept {
            d.warnings.push(format!(
                "universal: {}; the native copy gets no probes or lifecycle hooks (they would be \
                 rejected if the API server dropped restartPolicy), and the regular copy waits up \
                 to {} for the handshake",
                api.why,
                crate::config::duration_text::format(config.universal.settle_timeout)
            ));
        }
    }
    d
}

/// What an unseen kubelet can be assumed to do: the version-skew rule, unless the
/// cluster has already shown a node outside the skew. The rule is an assumption for
/// when nodes are unknown; a listed kubelet older than it allows proves it false for
/// this cluster, and then it must not decide anything.
pub fn skew_rule(k: &ClusterKnowledge) -> compat::Verdict<KubeletBehaviour> {
    skew_rule_indexed(k, &k.node_index())
}

fn skew_rule_indexed(k: &ClusterKnowledge, index: &NodeIndex) -> compat::Verdict<KubeletBehaviour> {
    let rule = compat::kubelet_by_skew(k.apiserver.version.as_ref());
    let Some(api) = k.apiserver.version.as_ref() else {
        return rule;
    };
    if rule.behaviour == KubeletBehaviour::Unknown {
        return rule;
    }
    let oldest = compat::oldest_kubelet_minor(api);
    let outside = index.older_than(api.major, oldest);
    let count = outside.count_ones(..);
    if count == 0 {
        return rule;
    }
    compat::Verdict {
        behaviour: KubeletBehaviour::Unknown,
        why: format!(
            "the version-skew rule (API server {api}: kubelets 1.{oldest} or later) does not hold \
             in this cluster: {} {} older",
            summarize_set(&k.nodes, &outside),
            if count == 1 { "is" } else { "are" }
        ),
    }
}

fn source_words(source: ModeSource) -> &'static str {
    match source {
        ModeSource::Annotation => "the pod's tandem.dev/mode annotation",
        ModeSource::Override => "--mode",
        ModeSource::Config => "the configuration",
        ModeSource::Object => "the sidecar object's spec.mode",
    }
}

fn decide_auto(d: &mut Decision, pod: PodFacts<'_>, k: &ClusterKnowledge, config: &Config) {
    let api = k.apiserver_behaviour();
    if api.behaviour == ApiServerBehaviour::DropsField {
        d.placement = Placement::Legacy;
        d.reasons.push(format!("auto chose legacy: {}", api.why));
        return;
    }
    let index = k.node_index();
    let skew = skew_rule_indexed(k, &index);
    let candidates = index.candidates(pod.spec, &k.nodes, k.nodes_have_labels);
    if candidates.is_clear() {
        let why = if k.nodes.is_empty() {
            "no node knowledge"
        } else {
            "no known node matches the pod's node selection"
        };
        if skew.behaviour == KubeletBehaviour::RunsSidecars {
            d.placement = Placement::Native;
            d.reasons
                .push(format!("auto chose native: {why}, but {}", skew.why));
        } else {
            d.placement = Placement::Legacy;
            let hint = if k.nodes.is_empty() {
                " (give nodes or an API server version to decide better)"
            } else {
                ""
            };
            d.reasons.push(format!(
                "auto chose legacy, the safe mode: {why} and {}{hint}",
                skew.why
            ));
        }
        return;
    }

    // Classify the candidates; unknown kubelets fall back on the skew rule.
    let class = |b: KubeletBehaviour| {
        let mut set = index.of_kind_among(&candidates, b);
        if skew.behaviour == b && b != KubeletBehaviour::Unknown {
            set.union_with(&index.of_kind_among(&candidates, KubeletBehaviour::Unknown));
        }
        set
    };
    let runs = class(KubeletBehaviour::RunsSidecars);
    let ignores = class(KubeletBehaviour::IgnoresField);
    let rejects = class(KubeletBehaviour::RejectsPod);
    let unknown = if skew.behaviour == KubeletBehaviour::Unknown {
        class(KubeletBehaviour::Unknown)
    } else {
        FixedBitSet::with_capacity(candidates.len())
    };
    let summarize = |set: &FixedBitSet| summarize_set(&k.nodes, set);
    let (runs_n, total) = (runs.count_ones(..), candidates.count_ones(..));

    if !rejects.is_clear() || !unknown.is_clear() {
        let mut why = Vec::new();
        if !rejects.is_clear() {
            why.push(format!(
                "{} would reject native sidecars",
                summarize(&rejects)
            ));
        }
        if !unknown.is_clear() {
            why.push(format!("{} unknown", summarize(&unknown)));
        }
        let why = why.join(" and ");
        let labelled = runs.intersection_count(index.labelled());
        let affinity_possible = runs_n > 0 && (labelled > 0 || !k.nodes_have_labels);
        if config.auto_fallback == Fallback::Affinity && affinity_possible {
            d.placement = Placement::Affinity;
            d.reasons.push(format!(
                "auto chose affinity: {why}; the pod is kept to nodes labelled {NODE_LABEL}=true"
            ));
        } else {
            d.placement = Placement::Legacy;
            d.reasons.push(format!(
                "auto chose legacy: of {total} candidate nodes, {why}"
            ));
            if config.auto_fallback == Fallback::Affinity {
                d.warnings.push(format!(
                    "autoFallback is affinity, but no candidate node is labelled {NODE_LABEL}=true \
                     (run `tandem label-nodes`): chose legacy"
                ));
            }
        }
        return;
    }
    if ignores.is_clear() {
        d.placement = Placement::Native;
        d.reasons.push(format!(
            "auto chose native: all {total} candidate nodes run native sidecars"
        ));
        return;
    }
    if runs_n == 0 {
        d.placement = Placement::Legacy;
        d.reasons.push(format!(
            "auto chose legacy: {} too old for native sidecars",
            summarize(&ignores)
        ));
        return;
    }
    match pod.universal_ok {
        Ok(()) => {
            d.placement = Placement::Universal;
            d.reasons.push(format!(
                "auto chose universal: {} of {total} candidate nodes run native sidecars, {} \
                 ignore the field",
                runs_n,
                summarize(&ignores)
            ));
        }
        Err(why) => {
            d.placement = Placement::Legacy;
            d.reasons.push(format!(
                "auto chose legacy: candidate nodes are mixed ({} ignore the field) and universal \
                 is not possible: {why}",
                summarize(&ignores)
            ));
        }
    }
}

/// What goes wrong with a fixed placement on the nodes this pod can land on.
pub fn risks(p: Placement, spec: &Value, k: &ClusterKnowledge) -> Vec<String> {
    let mut out = Vec::new();
    let api = k.apiserver_behaviour();
    if p != Placement::Legacy && api.behaviour == ApiServerBehaviour::DropsField {
        out.push(format!(
            "{p}: {}; the sidecar becomes a plain init container",
            api.why
        ));
    }
    let index = k.node_index();
    let candidates = index.candidates(spec, &k.nodes, k.nodes_have_labels);
    let rejects = index.of_kind_among(&candidates, KubeletBehaviour::RejectsPod);
    let ignores = index.of_kind_among(&candidates, KubeletBehaviour::IgnoresField);
    match p {
        Placement::Native | Placement::Universal if !rejects.is_clear() => out.push(format!(
            "{p}: {} would reject this pod (InitContainerRestartPolicyForbidden)",
            summarize_set(&k.nodes, &rejects)
        )),
        _ => {}
    }
    if p == Placement::Native && !ignores.is_clear() {
        out.push(format!(
            "native: {} ignore restartPolicy on init containers; there the pod hangs in Init",
            summarize_set(&k.nodes, &ignores)
        ));
    }
    out
}

/// `node a (v1.28.3), node b (v1.28.3) and 12 more` (or `2 kubelets v1.28.3`).
pub fn summarize(nodes: &[&NodeFacts]) -> String {
    summarize_labels(nodes.iter().take(SHOWN).map(|n| n.label()), nodes.len())
}

/// [`summarize`] for the nodes at the positions in `set`.
pub fn summarize_set(nodes: &[NodeFacts], set: &FixedBitSet) -> String {
    let shown = set.ones().take(SHOWN).map(|i| nodes[i].label());
    summarize_labels(shown, set.count_ones(..))
}

const SHOWN: usize = 3;

fn summarize_labels(shown: impl Iterator<Item = String>, count: usize) -> String {
    let mut parts: Vec<String> = shown.collect();
    if count > SHOWN {
        parts.push(format!("{} more", count - SHOWN));
    }
    match parts.len() {
        0 => "no nodes".into(),
        1 => parts.remove(0),
        _ => {
            let last = parts.pop().unwrap_or_default();
            format!("{} and {last}", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::{ApiServerFacts, NodeFacts};
    use crate::version::KubeVersion;
    use serde_json::json;

    fn v(s: &str) -> KubeVersion {
        KubeVersion::parse(s).unwrap()
    }

    fn versions(vs: &[&str]) -> ClusterKnowledge {
        ClusterKnowledge {
            nodes: vs.iter().map(|s| NodeFacts::from_version(v(s))).collect(),
            ..Default::default()
        }
    }

    fn auto(
        k: &ClusterKnowledge,
        spec: Value,
        universal_ok: Result<(), &str>,
        fallback: Fallback,
    ) -> Decision {
        let mut config = Config::builtin();
        config.auto_fallback = fallback;
        decide(
            Mode::Auto,
            ModeSource::Config,
            PodFacts {
                spec: &spec,
                universal_ok,
            },
            k,
            &config,
        )
    }

    #[test]
    fn auto_by_kubelet_versions() {
        use Placement::*;
        let cases: &[(&[&str], Placement)] = &[
            (&["v1.29.0", "v1.33.1"], Native),
            (&["v1.27.3", "v1.26.1"], Legacy),
            (&["v1.27.3", "v1.31.0"], Universal),
            (&["v1.28.15", "v1.31.0"], Legacy),
            (&["v1.28.15", "v1.27.0", "v1.31.0"], Legacy),
        ];
        for (vs, want) in cases {
            let d = auto(&versions(vs), json!({}), Ok(()), Fallback::Legacy);
            assert_eq!(d.placement, *want, "{vs:?}: {:?}", d.reasons);
        }
    }

    #[test]
    fn auto_never_picks_a_form_a_candidate_rejects() {
        // Exhaustive over small clusters of the interesting versions and both fallbacks.
        let pool = [
            "v1.26.0", "v1.27.9", "v1.28.15", "v1.29.2", "v1.32.1", "v1.35.0",
        ];
        for mask in 1u32..(1 << pool.len()) {
            let vs: Vec<&str> = (0..pool.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| pool[i])
                .collect();
            let k = versions(&vs);
            for fallback in [Fallback::Legacy, Fallback::Affinity] {
                for universal_ok in [Ok(()), Err("no command")] {
                    let d = auto(&k, json!({}), universal_ok, fallback);
                    for node in &k.nodes {
                        let b = node.behaviour().behaviour;
                        let ok = match d.placement {
                            Placement::Legacy => true,
                            // Affinity keeps the pod off nodes that aren't labelled true.
                            Placement::Affinity => true,
                            Placement::Universal => b != KubeletBehaviour::RejectsPod,
                            Placement::Native => b == KubeletBehaviour::RunsSidecars,
                        };
                        assert!(
                            ok,
                            "{vs:?} {fallback:?}: {} on {}",
                            d.placement,
                            node.label()
                        );
                    }
                    if universal_ok.is_err() {
                        assert_ne!(d.placement, Placement::Universal);
                    }
                }
            }
        }
    }

    #[test]
    fn no_knowledge_is_safe_and_explained() {
        let d = auto(
            &ClusterKnowledge::default(),
            json!({}),
            Ok(()),
            Fallback::Legacy,
        );
        assert_eq!(d.placement, Placement::Legacy);
        assert!(
            d.reasons[0].contains("no node knowledge"),
            "{:?}",
            d.reasons
        );
    }

    #[test]
    fn skew_rule_makes_native_safe() {
        let k = ClusterKnowledge {
            apiserver: ApiServerFacts {
                version: Some(v("v1.32.0")),
                gate: None,
            },
            ..Default::default()
        };
        assert_eq!(
            auto(&k, json!({}), Ok(()), Fallback::Legacy).placement,
            Placement::Native
        );
        let k = ClusterKnowledge {
            apiserver: ApiServerFacts {
                version: Some(v("v1.31.0")),
                gate: None,
            },
            ..Default::default()
        };
        assert_eq!(
            auto(&k, json!({}), Ok(()), Fallback::Legacy).placement,
            Placement::Legacy
        );
    }

    #[test]
    fn skew_rule_does_not_decide_once_a_node_is_outside_it() {
        // issue 15: API server v1.37.2, nodes v1.37 and v1.27.16, a Job whose
        // nodeSelector matches no known node.
        let node = |name: &str, ver: &str| {
            json!({"kind": "Node", "metadata": {"name": name, "labels": {"pool": name}},
                   "status": {"nodeInfo": {"kubeletVersion": ver}}})
        };
        let objs = [node("new", "v1.37.0"), node("old", "v1.27.16")];
        let mut k = ClusterKnowledge {
            nodes: ClusterKnowledge::from_node_objects(objs.iter()).unwrap(),
            nodes_have_labels: true,
            ..Default::default()
        };
        k.apiserver.version = Some(v("v1.37.2"));
        let spec = json!({"nodeSelector": {"pool": "elsewhere"}});
        let d = auto(&k, spec.clone(), Ok(()), Fallback::Legacy);
        assert_eq!(d.placement, Placement::Legacy, "{:?}", d.reasons);
        let why = &d.reasons[0];
        assert!(
            why.contains("does not hold") && why.contains("old (v1.27.16)"),
            "{why}"
        );
        assert!(!why.contains("every kubelet is"), "{why}");
        // A node of unknown version is not judged by the broken rule either.
        k.nodes.push(NodeFacts {
            name: "mystery".into(),
            kubelet: None,
            gate: None,
            labels: std::collections::BTreeMap::from([(
                "pool".to_string(),
                "elsewhere".to_string(),
            )])
            .into(),
            taints: Vec::new(),
        });
        let d = auto(&k, spec.clone(), Ok(()), Fallback::Legacy);
        assert_eq!(d.placement, Placement::Legacy, "{:?}", d.reasons);
        assert!(d.reasons[0].contains("unknown"), "{:?}", d.reasons);
        // Without the old node, the rule holds and decides as before.
        k.nodes.retain(|n| n.name != "old" && n.name != "mystery");
        let d = auto(&k, spec, Ok(()), Fallback::Legacy);
        assert_eq!(d.placement, Placement::Native, "{:?}", d.reasons);
        assert!(
            d.reasons[0].contains("version-skew rule"),
            "{:?}",
            d.reasons
        );
    }

    #[test]
    fn apiserver_gate_off_means_legacy() {
        let mut k = versions(&["v1.31.0"]);
        k.apiserver = ApiServerFacts {
            version: Some(v("v1.31.0")),
            gate: Some(false),
        };
        let d = auto(&k, json!({}), Ok(()), Fallback::Legacy);
        assert_eq!(d.placement, Placement::Legacy);
        assert!(d.reasons[0].contains("drops"), "{:?}", d.reasons);
    }

    #[test]
    fn node_selection_narrows_candidates() {
        let node = |name: &str, ver: &str, pool: &str, label: Option<&str>| {
            let mut labels = serde_json::Map::new();
            labels.insert("pool".into(), pool.into());
            if let Some(l) = label {
                labels.insert(NODE_LABEL.into(), l.into());
            }
            json!({"kind": "Node", "metadata": {"name": name, "labels": labels},
                   "status": {"nodeInfo": {"kubeletVersion": ver}}})
        };
        let objs = [
            node("old-1", "v1.28.15", "old", Some("false")),
            node("new-1", "v1.31.4", "new", Some("true")),
            node("new-2", "v1.31.4", "new", Some("true")),
        ];
        let k = ClusterKnowledge {
            nodes: ClusterKnowledge::from_node_objects(objs.iter()).unwrap(),
            nodes_have_labels: true,
            ..Default::default()
        };
        let d = auto(
            &k,
            json!({"nodeSelector": {"pool": "new"}}),
            Ok(()),
            Fallback::Legacy,
        );
        assert_eq!(d.placement, Placement::Native, "{:?}", d.reasons);
        let d = auto(&k, json!({"nodeName": "old-1"}), Ok(()), Fallback::Legacy);
        assert_eq!(d.placement, Placement::Legacy);
        assert!(d.reasons[0].contains("old-1"), "{:?}", d.reasons);
        let d = auto(&k, json!({}), Ok(()), Fallback::Affinity);
        assert_eq!(d.placement, Placement::Affinity, "{:?}", d.reasons);
        // Without any labelled node, affinity would leave the pod unschedulable.
        let unlabelled = [
            node("a", "v1.28.15", "x", None),
            node("b", "v1.31.4", "x", None),
        ];
        let k2 = ClusterKnowledge {
            nodes: ClusterKnowledge::from_node_objects(unlabelled.iter()).unwrap(),
            nodes_have_labels: true,
            ..Default::default()
        };
        let d = auto(&k2, json!({}), Ok(()), Fallback::Affinity);
        assert_eq!(d.placement, Placement::Legacy);
        assert!(d.warnings[0].contains("label-nodes"), "{:?}", d.warnings);
    }

    #[test]
    fn fixed_modes_warn_about_their_risks() {
        let k = versions(&["v1.28.15", "v1.27.1", "v1.31.0"]);
        let config = Config::builtin();
        let spec = json!({});
        let pod = PodFacts {
            spec: &spec,
            universal_ok: Ok(()),
        };
        let d = decide(Mode::Native, ModeSource::Override, pod, &k, &config);
        assert_eq!(d.placement, Placement::Native);
        assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
        let d = decide(Mode::Legacy, ModeSource::Annotation, pod, &k, &config);
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn universal_probe_follows_the_apiserver() {
        let config = Config::builtin();
        let spec = json!({});
        let pod = PodFacts {
            spec: &spec,
            universal_ok: Ok(()),
        };
        let mut k = ClusterKnowledge::default();
        let d = decide(Mode::Universal, ModeSource::Config, pod, &k, &config);
        assert!(!d.startup_probe && !d.native_field_kept);
        k.apiserver.version = Some(v("v1.30.0"));
        let d = decide(Mode::Universal, ModeSource::Config, pod, &k, &config);
        assert!(d.startup_probe && d.native_field_kept);
    }
}
