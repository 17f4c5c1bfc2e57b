//! The names tandem shares with users and with its other parts: labels,
//! annotations and the names of what it adds to a pod.

/// Namespace and pod label that opts in (`enabled`) or out (`disabled`).
pub const INJECT_LABEL: &str = "tandem.dev/inject";
/// Pod annotation that overrides the mode for one pod.
pub const MODE_ANNOTATION: &str = "tandem.dev/mode";
/// Pod annotation that requests sidecar objects by name: `tandem.dev/sidecars: a,b`.
pub const SIDECARS_ANNOTATION: &str = "tandem.dev/sidecars";
/// Pod annotation written by the injector: which sidecars, in which mode.
pub const STATUS_ANNOTATION: &str = "tandem.dev/status";
/// Node label written by `tandem label-nodes`: `"true"` where native sidecars run.
pub const NODE_LABEL: &str = "tandem.dev/native-sidecars";
/// Node annotation written beside [`NODE_LABEL`]: the evidence for it.
pub const NODE_EVIDENCE_ANNOTATION: &str = "tandem.dev/native-sidecars-evidence";
/// kubectl's annotation naming the container that `kubectl logs`/`exec` use by default.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
/// Annotation the kubelet puts on mirror pods of static pods (never injected).
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Pod annotation naming regular containers that `adopt` should treat as legacy
/// sidecars (`a,b`), besides those the recognition list matches.
pub const ADOPT_ANNOTATION: &str = "tandem.dev/adopt";
/// Namespace and pod label that opts in (`enabled`) or out (`disabled`) of the
/// webhook's adopt mode; a pod labelled `disabled` is never adopted, offline either.
pub const ADOPT_LABEL: &str = "tandem.dev/adopt";
/// Pod annotation written by `adopt`: which sidecars it moved, and what it stripped.
pub const ADOPTED_ANNOTATION: &str = "tandem.dev/adopted";

/// The shared `emptyDir` through which the two copies of a universal sidecar talk.
pub const STATE_VOLUME: &str = "tandem-state";
/// The `emptyDir` into which `tandem-shim install` copies the shim (delivery `copy`).
pub const SHIM_VOLUME: &str = "tandem-bin";
/// Mount path of [`SHIM_VOLUME`].
pub const SHIM_DIR: &str = "/var/run/tandem-bin";
/// Name of the init container that copies the shim (delivery `copy`).
pub const SHIM_INSTALL_CONTAINER: &str = "tandem-shim-install";
/// Suffix of the regular copy of a universal sidecar (`<name>-legacy`).
pub const LEGACY_COPY_SUFFIX: &str = "-legacy";

/// Environment variables the engine sets for `tandem-shim` (see `crates/shim`).
pub mod env {
    /// Where the state file lives (the shared `emptyDir`).
    pub const STATE_DIR: &str = "TANDEM_STATE_DIR";
    /// The pod's `restartPolicy`, for the regular copy.
    pub const POD_RESTART_POLICY: &str = "TANDEM_POD_RESTART_POLICY";
    /// How long the regular copy waits for the handshake when there is no startupProbe.
    pub const SETTLE_TIMEOUT: &str = "TANDEM_SETTLE_TIMEOUT";
    /// The pod's name (downward API).
    pub const POD_NAME: &str = "TANDEM_POD_NAME";
    /// The pod's namespace (downward API).
    pub const POD_NAMESPACE: &str = "TANDEM_POD_NAMESPACE";
    /// How long CMD gets after SIGTERM before the shim sends SIGKILL.
    pub const GRACE_PERIOD: &str = "TANDEM_GRACE_PERIOD";
    /// Comma-separated names of the pod's own regular containers.
    pub const MAIN_CONTAINERS: &str = "TANDEM_MAIN_CONTAINERS";
}
