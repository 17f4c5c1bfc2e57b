//! The compatibility model: what a kubelet and an API server do with a native
//! sidecar (an init container with `restartPolicy: Always`).
//!
//! This is the one place that encodes KEP-753's version history; `auto`, `lint`,
//! the doctor and the node labeller all ask it. The table it implements:
//!
//! | component | version / gate | behaviour |
//! | --- | --- | --- |
//! | kubelet | 1.29+ with the gate on (default), 1.28 with the gate on | runs it as a sidecar |
//! | kubelet | 1.28 with the gate off (1.28's default), any that knows the field with the gate off | rejects the pod at admission (`InitContainerRestartPolicyForbidden`) |
//! | kubelet | older than 1.28 | ignores the field: a plain init container that never exits, pod stuck in `Init` |
//! | API server | gate off (or older than 1.28) | drops the field on create |
//!
//! The gate is locked on from 1.33 (GA). Skew: a kubelet is at most three minors
//! older than its API server, never newer.

use std::fmt;

use serde::Serialize;

use crate::version::KubeVersion;

/// First minor in which the field and the `SidecarContainers` gate exist (alpha, off).
pub const FIELD_MINOR: u32 = 28;
/// First minor in which the gate is on by default (beta).
pub const DEFAULT_ON_MINOR: u32 = 29;
/// First minor in which the gate is locked on (GA).
pub const LOCKED_ON_MINOR: u32 = 33;
/// How many minors a kubelet may lag its API server.
pub const KUBELET_SKEW: u32 = 3;

/// What a kubelet does with a pod that has a native sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubeletBehaviour {
    /// Runs it as a sidecar (1.29+, or 1.28 with the gate on).
    RunsSidecars,
    /// Doesn't know the field: runs it as a plain init container (older than 1.28).
    IgnoresField,
    /// Knows the field with the gate off: rejects the pod (`InitContainerRestartPolicyForbidden`).
    RejectsPod,
    /// Nothing is known about this kubelet.
    Unknown,
}

/// What an API server does with a pod that has a native sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApiServerBehaviour {
    /// Keeps `restartPolicy: Always` and accepts probes on such init containers.
    KeepsField,
    /// Drops the field on create (gate off, or older than 1.28): the sidecar becomes a
    /// plain init container, and probes on it make the create fail.
    DropsField,
    /// Nothing is known about the API server.
    Unknown,
}

/// A verdict and the sentence that explains it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict<B> {
    /// What the component does.
    pub behaviour: B,
    /// Why we think so, in words a user can check.
    pub why: String,
}

/// What the `SidecarContainers` gate is at a given minor by default.
fn gate_default(minor: u32) -> bool {
    minor >= DEFAULT_ON_MINOR
}

/// Whether the feature is on, from version and (if read) the gate's metric.
/// `None` when the component is too old to have the field at all.
fn feature_on(version: &KubeVersion, gate: Option<bool>) -> Option<bool> {
    if version.major != 1 {
        // Kubernetes 2.x does not exist; anything reporting it is treated as new.
        return Some(version.major > 1);
    }
    if version.minor < FIELD_MINOR {
        return None;
    }
    if version.minor >= LOCKED_ON_MINOR {
        return Some(true);
    }
    Some(gate.unwrap_or_else(|| gate_default(version.minor)))
}

fn gate_words(gate: Option<bool>) -> &'static str {
    match gate {
        Some(true) => "the SidecarContainers gate is on (metric)",
        Some(false) => "the SidecarContainers gate is off (metric)",
        None => "the gate is at its default",
    }
}

/// [`kubelet`]'s verdict without its explanation: a few comparisons, for the hot path
/// (the webhook classifies thousands of candidate nodes per pod).
pub fn kubelet_behaviour(version: Option<&KubeVersion>, gate: Option<bool>) -> KubeletBehaviour {
    use KubeletBehaviour::*;
    match version {
        None => match gate {
            Some(true) => RunsSidecars,
            Some(false) => RejectsPod,
            None => Unknown,
        },
        Some(v) => match feature_on(v, gate) {
            None => IgnoresField,
            Some(true) => RunsSidecars,
            Some(false) => RejectsPod,
        },
    }
}

/// What a kubelet of this version, with this gate reading, does with a native sidecar.
pub fn kubelet(version: Option<&KubeVersion>, gate: Option<bool>) -> Verdict<KubeletBehaviour> {
    use KubeletBehaviour::*;
    let Some(v) = version else {
        // The gate's metric exists only where the field does (1.28+).
        return match gate {
            Some(true) => Verdict {
                behaviour: RunsSidecars,
                why: "kubelet version unknown, but its SidecarContainers gate is on".into(),
            },
            Some(false) => Verdict {
                behaviour: RejectsPod,
                why: "kubelet version unknown, but its SidecarContainers gate is off".into(),
            },
            None => Verdict {
                behaviour: Unknown,
                why: "kubelet version unknown".into(),
            },
        };
    };
    match feature_on(v, gate) {
        None => Verdict {
            behaviour: IgnoresField,
            why: format!(
                "kubelet {v} is older than 1.{FIELD_MINOR}: it ignores restartPolicy on init \
                 containers, so a sidecar that never exits keeps the pod in Init"
            ),
        },
        Some(true) if v.minor >= LOCKED_ON_MINOR => Verdict {
            behaviour: RunsSidecars,
            why: format!("kubelet {v}: native sidecars are GA and always on"),
        },
        Some(true) => Verdict {
            behaviour: RunsSidecars,
            why: format!("kubelet {v}: {}, native sidecars run", gate_words(gate)),
        },
        Some(false) => Verdict {
            behaviour: RejectsPod,
            why: format!(
                "kubelet {v}: {} (off by default before 1.{DEFAULT_ON_MINOR}), so it rejects \
                 pods with native sidecars (InitContainerRestartPolicyForbidden)",
                gate_words(gate)
            ),
        },
    }
}

/// What an API server of this version, with this gate reading, does with a native sidecar.
pub fn apiserver(version: Option<&KubeVersion>, gate: Option<bool>) -> Verdict<ApiServerBehaviour> {
    use ApiServerBehaviour::*;
    let Some(v) = version else {
        return match gate {
            Some(true) => Verdict {
                behaviour: KeepsField,
                why: "API server's SidecarContainers gate is on".into(),
            },
            Some(false) => Verdict {
                behaviour: DropsField,
                why: "API server's SidecarContainers gate is off: it drops restartPolicy from \
                      init containers"
                    .into(),
            },
            None => Verdict {
                behaviour: Unknown,
                why: "API server version unknown".into(),
            },
        };
    };
    match feature_on(v, gate) {
        None => Verdict {
            behaviour: DropsField,
            why: format!(
                "API server {v} is older than 1.{FIELD_MINOR} and drops restartPolicy from init \
                 containers"
            ),
        },
        Some(true) => Verdict {
            behaviour: KeepsField,
            why: format!("API server {v}: {}", gate_words(gate)),
        },
        Some(false) => Verdict {
            behaviour: DropsField,
            why: format!(
                "API server {v}: {} , so it drops restartPolicy from init containers",
                gate_words(gate)
            ),
        },
    }
}

/// The oldest kubelet minor an API server of this version may have (version skew).
pub fn oldest_kubelet_minor(apiserver: &KubeVersion) -> u32 {
    apiserver.minor.saturating_sub(KUBELET_SKEW)
}

/// What an unseen kubelet behind this API server can be assumed to do, from the
/// version-skew rule alone: every such kubelet runs native sidecars once the API
/// server is at 1.32 or later. `Unknown` otherwise.
pub fn kubelet_by_skew(apiserver: Option<&KubeVersion>) -> Verdict<KubeletBehaviour> {
    match apiserver {
        Some(v) if v.major == 1 && oldest_kubelet_minor(v) >= DEFAULT_ON_MINOR => Verdict {
            behaviour: KubeletBehaviour::RunsSidecars,
            why: format!(
                "API server {v}: by the version-skew rule every kubelet is 1.{} or later",
                oldest_kubelet_minor(v)
            ),
        },
        Some(v) => Verdict {
            behaviour: KubeletBehaviour::Unknown,
            why: format!(
                "API server {v} allows kubelets as old as 1.{}, which may not run native sidecars",
                oldest_kubelet_minor(v)
            ),
        },
        None => Verdict {
            behaviour: KubeletBehaviour::Unknown,
            why: "neither the kubelet nor the API server version is known".into(),
        },
    }
}

impl KubeletBehaviour {
    /// True where a pod with native sidecars would be refused or hang.
    pub fn breaks_native(self) -> bool {
        !matches!(self, KubeletBehaviour::RunsSidecars)
    }

    /// Short label for tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            KubeletBehaviour::RunsSidecars => "runs-sidecars",
            KubeletBehaviour::IgnoresField => "ignores-field",
            KubeletBehaviour::RejectsPod => "rejects-pod",
            KubeletBehaviour::Unknown => "unknown",
        }
    }
}

impl fmt::Display for KubeletBehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ApiServerBehaviour as A;
    use KubeletBehaviour as K;

    fn v(s: &str) -> KubeVersion {
        KubeVersion::parse(s).unwrap()
    }

    /// The brief's compatibility table, row by row, for kubelets.
    #[test]
    fn kubelet_table() {
        let cases: &[(&str, Option<bool>, KubeletBehaviour)] = &[
            ("v1.25.16", None, K::IgnoresField),
            ("v1.27.9-eks-1a2b3c", None, K::IgnoresField),
            // A metric can't exist before 1.28; an odd reading doesn't change the verdict.
            ("v1.27.9", Some(true), K::IgnoresField),
            ("v1.28.15", None, K::RejectsPod),
            ("v1.28.15", Some(false), K::RejectsPod),
            ("v1.28.15", Some(true), K::RunsSidecars),
            ("v1.29.0", None, K::RunsSidecars),
            ("v1.29.0", Some(false), K::RejectsPod),
            ("v1.30.1+k3s1", None, K::RunsSidecars),
            ("v1.32.4-gke.1000", Some(false), K::RejectsPod),
            ("v1.33.0", None, K::RunsSidecars),
            // GA: the gate can no longer be turned off.
            ("v1.33.0", Some(false), K::RunsSidecars),
            ("v1.37.0", None, K::RunsSidecars),
        ];
        for (ver, gate, want) in cases {
            let got = kubelet(Some(&v(ver)), *gate);
            assert_eq!(got.behaviour, *want, "{ver} gate={gate:?}: {}", got.why);
            assert_eq!(
                kubelet_behaviour(Some(&v(ver)), *gate),
                *want,
                "{ver} fast path"
            );
        }
        for gate in [None, Some(true), Some(false)] {
            assert_eq!(kubelet_behaviour(None, gate), kubelet(None, gate).behaviour);
        }
        assert_eq!(kubelet(None, None).behaviour, K::Unknown);
        assert_eq!(kubelet(None, Some(true)).behaviour, K::RunsSidecars);
        assert_eq!(kubelet(None, Some(false)).behaviour, K::RejectsPod);
    }

    #[test]
    fn apiserver_table() {
        let cases: &[(&str, Option<bool>, ApiServerBehaviour)] = &[
            ("v1.27.3", None, A::DropsField),
            ("v1.28.2", None, A::DropsField),
            ("v1.28.2", Some(true), A::KeepsField),
            ("v1.29.1", None, A::KeepsField),
            ("v1.31.0", Some(false), A::DropsField),
            ("v1.33.1", Some(false), A::KeepsField),
        ];
        for (ver, gate, want) in cases {
            assert_eq!(
                apiserver(Some(&v(ver)), *gate).behaviour,
                *want,
                "{ver} {gate:?}"
            );
        }
        assert_eq!(apiserver(None, None).behaviour, A::Unknown);
        assert_eq!(apiserver(None, Some(false)).behaviour, A::DropsField);
    }

    #[test]
    fn skew_rule() {
        assert_eq!(oldest_kubelet_minor(&v("v1.32.0")), 29);
        assert_eq!(
            kubelet_by_skew(Some(&v("v1.32.0"))).behaviour,
            K::RunsSidecars
        );
        assert_eq!(kubelet_by_skew(Some(&v("v1.31.9"))).behaviour, K::Unknown);
        assert_eq!(kubelet_by_skew(None).behaviour, K::Unknown);
    }

    #[test]
    fn verdicts_explain_themselves() {
        let why = kubelet(Some(&v("v1.28.3")), None).why;
        assert!(why.contains("v1.28.3") && why.contains("InitContainerRestartPolicyForbidden"));
        let why = kubelet(Some(&v("v1.27.1")), None).why;
        assert!(why.contains("Init"));
    }
}
