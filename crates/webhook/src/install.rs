//! `tandem install`: the manifests that run tandem's webhook in a cluster, as one YAML
//! stream for `kubectl apply -f -` (or `kubectl apply --server-side`, or a GitOps repo).
//!
//! Namespace, ServiceAccount, least RBAC, the config as a ConfigMap, Deployment (≥2
//! replicas, spread over nodes), PodDisruptionBudget, Service, and the
//! MutatingWebhookConfiguration. With `--with-label-nodes`, also the `tandem label-nodes`
//! controller and its RBAC. The Helm chart in `charts/tandem` renders the same objects
//! (a test in `crates/webhook/tests/e2e_chart.rs` compares them).
//!
//! ## Certificates
//! `--tls self-managed` (the default) renders no key and no `caBundle`: the webhook keeps
//! its CA and serving certificate in the Secret `tandem-webhook-tls`, creating it on first
//! start and reusing it after, and patches the CA into this MutatingWebhookConfiguration
//! by name (`--tls-secret`, `--webhook-configuration`, `--tls-service`); the RBAC for that
//! is limited with `resourceNames`. So rendering twice gives the same bytes, a rerun or a
//! GitOps sync never switches `caBundle` under a running webhook, and no key ever lands in
//! a repository. `--tls cert-manager` lets cert-manager issue the certificate and inject
//! the CA; `--tls secret` mounts a Secret you provide (`--tls-secret`), with its CA given
//! as `--ca-bundle FILE` (a CA certificate is public; the key stays in the Secret).
//!
//! ## The failurePolicy choice
//! `Fail` by default: a pod that should carry a mesh proxy or a secrets agent and starts
//! without it (what `Ignore` does while the webhook is down, silently) is a security and
//! correctness bug that nobody sees (linkerd2#13702, #3885). The blast radius of `Fail` is
//! kept small instead: only opted-in namespaces are matched, tandem's own namespace and
//! kube-system never are (so the webhook can never block its own pods), there are two
//! replicas on different nodes with a PodDisruptionBudget, and `timeoutSeconds` is short.
//! `--failure-policy ignore` is there for clusters that prefer availability.

use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::{Value, json};
use tandem_core::{Config, Mode};

/// What happens to pod creation when the webhook cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FailurePolicy {
    /// Reject the pod (the default: no pod silently starts without its sidecars).
    #[default]
    Fail,
    /// Admit the pod unchanged (availability first; pods may miss their sidecars).
    Ignore,
}

impl FailurePolicy {
    /// The API's spelling (`Fail`, `Ignore`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "Fail",
            Self::Ignore => "Ignore",
        }
    }
}

/// Where the webhook's serving certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TlsMode {
    /// The webhook manages its own CA and certificate at runtime, in the Secret
    /// `--tls-secret`, and patches the CA into its webhook configuration (no key in the
    /// manifests; identical output on every run).
    #[default]
    SelfManaged,
    /// cert-manager issues and renews them (it must be installed); it also injects the
    /// CA into the webhook configuration.
    CertManager,
    /// A `kubernetes.io/tls` Secret you manage (`--tls-secret`), its CA given with
    /// `--ca-bundle`.
    Secret,
}

impl TlsMode {
    /// The flag's spelling (`self-managed`, `cert-manager`, `secret`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SelfManaged => "self-managed",
            Self::CertManager => "cert-manager",
            Self::Secret => "secret",
        }
    }
}

/// `tandem install`: print the manifests that run tandem in a cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    /// Namespace to install into (created; never matched by the webhook itself).
    #[arg(short = 'n', long, default_value = "tandem-system")]
    pub namespace: String,
    /// tandem's container image (default: the released image of this version, see
    /// packaging/README.md to publish it to your own registry).
    #[arg(long, default_value = tandem_core::images::TANDEM_IMAGE)]
    pub image: String,
    /// imagePullPolicy of tandem's containers.
    #[arg(long, default_value = "IfNotPresent", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub image_pull_policy: String,
    /// Webhook replicas (2 or more keeps it available through a node drain).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub replicas: u32,
    /// Configuration file to ship as the ConfigMap; the built-in one when not given.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// `--mode` for the webhook (overrides the config's `mode`).
    #[arg(long)]
    pub mode: Option<Mode>,
    /// failurePolicy of the webhook configuration (see the crate docs for the choice).
    #[arg(long, value_enum, default_value_t = FailurePolicy::Fail)]
    pub failure_policy: FailurePolicy,
    /// timeoutSeconds of the webhook configuration (1–30).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub timeout_seconds: u32,
    /// Where the serving certificate comes from: self-managed (the webhook keeps it in
    /// the Secret `--tls-secret` and patches its own caBundle; no key in the output),
    /// cert-manager, or secret (yours, with `--ca-bundle`).
    #[arg(long, value_enum, default_value_t = TlsMode::SelfManaged)]
    pub tls: TlsMode,
    /// The Secret that holds the serving certificate (created by the webhook with
    /// `--tls self-managed`, by cert-manager, or by you with `--tls secret`).
    #[arg(long, default_value = TLS_SECRET, value_name = "NAME")]
    pub tls_secret: String,
    /// PEM file with the CA that signed your Secret's certificate (`--tls secret`):
    /// rendered as the webhook configuration's caBundle.
    #[arg(long, value_name = "FILE", required_if_eq("tls", "secret"))]
    pub ca_bundle: Option<std::path::PathBuf>,
    /// Validity of the certificate cert-manager issues, in days.
    #[arg(long, default_value_t = 365, value_name = "DAYS")]
    pub cert_days: u32,
    /// Also register the webhook for pods labelled `tandem.dev/inject: enabled` in
    /// namespaces that are not opted in.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub pod_opt_in: bool,
    /// Prometheus scrape annotations (`prometheus.io/scrape` …) on the webhook's pods.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub scrape_annotations: bool,
    /// Also run `tandem label-nodes` as a controller (strategy 1: node labels for `affinity`).
    #[arg(long)]
    pub with_label_nodes: bool,
    /// Let the label-nodes controller read kubelet metrics through `nodes/proxy` (a
    /// powerful permission: without it, it judges from kubelet versions alone).
    #[arg(long, requires = "with_label_nodes")]
    pub label_nodes_node_metrics: bool,
    /// Extra arguments of the label-nodes controller, after `label-nodes` (comma
    /// separated, e.g. `--selector=pool=general`).
    #[arg(long, value_delimiter = ',')]
    pub label_nodes_args: Vec<String>,
    /// Also register adopt mode (`/adopt`): legacy sidecars that other webhooks inject
    /// become native sidecars where nodes allow it, in namespaces labelled
    /// `tandem.dev/adopt=enabled` and for pods labelled so (failurePolicy Ignore).
    #[arg(long)]
    pub adopt: bool,
}

/// Something that stops rendering.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The configuration file can't be read or is invalid.
    #[error("{path}: {problem}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The `--ca-bundle` file can't be read or holds no PEM certificate.
    #[error("--ca-bundle {path}: {problem}")]
    CaBundle {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

/// Name of the webhook's Deployment, Service, ServiceAccount and RBAC objects.
pub const APP: &str = "tandem-webhook";
/// Name of the MutatingWebhookConfiguration (the webhook's `--webhook-configuration`).
pub const WEBHOOK_CONFIGURATION: &str = "tandem";
/// Default name of the Secret with the serving certificate (and the Lease beside it).
pub const TLS_SECRET: &str = "tandem-webhook-tls";
/// Name of the label-nodes controller's objects.
pub const LABEL_NODES: &str = "tandem-label-nodes";
/// `app.kubernetes.io/instance` of what `tandem install` renders (the chart uses the
/// release name; install it as `tandem` for identical objects).
pub const INSTANCE: &str = "tandem";
/// `app.kubernetes.io/managed-by` of what `tandem install` renders (the chart's is `Helm`).
pub const MANAGED_BY: &str = "tandem";
const WEBHOOK_PORT: u16 = 8443;

/// The recommended labels (`app.kubernetes.io/*`) of one object of tandem.
pub fn labels(name: &str, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": INSTANCE,
        "app.kubernetes.io/version": tandem_core::images::TAG,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "tandem",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    })
}

/// Renders the manifests as one YAML stream.
pub fn render(args: &InstallArgs) -> Result<String, InstallError> {
    Ok(tandem_core::manifest::to_yaml_stream(objects(args)?.iter()))
}

/// The manifests as JSON objects, in apply order.
pub fn objects(args: &InstallArgs) -> Result<Vec<Value>, InstallError> {
    let ns = args.namespace.as_str();
    let config_text = match &args.config {
        Some(p) => std::fs::read_to_string(p).map_err(|e| InstallError::Config {
            path: p.display().to_string(),
            problem: e.to_string(),
        })?,
        None => tandem_core::config::DEFAULT_CONFIG_YAML.to_string(),
    };
    Config::from_yaml(&config_text).map_err(|e| InstallError::Config {
        path: args
            .config
            .as_ref()
            .map_or_else(|| "built-in config".into(), |p| p.display().to_string()),
        problem: e.to_string(),
    })?;
    let ca_bundle = match (args.tls, &args.ca_bundle) {
        (TlsMode::Secret, Some(p)) => Some(read_ca_bundle(p)?),
        (TlsMode::Secret, None) => {
            return Err(InstallError::CaBundle {
                path: "(not given)".into(),
                problem: "--tls secret needs --ca-bundle FILE, the CA that signed the Secret's certificate".into(),
            });
        }
        _ => None,
    };
    let labels = labels(APP, "webhook");
    let dns = vec![
        format!("{APP}.{ns}.svc"),
        format!("{APP}.{ns}.svc.cluster.local"),
    ];
    let mut cluster_rules = vec![
        // The node cache for `auto`.
        json!({"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}),
        // Injected / Skipped events on the pod's owner.
        json!({"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}),
        // The API server's SidecarContainers feature metric (read every few minutes).
        json!({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}),
        // Sidecar objects (watched) and their status (Ready/Invalid conditions);
        // namespaces' labels for ClusterSidecars' namespaceSelector.
        json!({"apiGroups": ["tandem.dev"], "resources": ["sidecars", "clustersidecars"], "verbs": ["get", "list", "watch"]}),
        json!({"apiGroups": ["tandem.dev"], "resources": ["sidecars/status", "clustersidecars/status"], "verbs": ["get", "patch"]}),
        json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}),
    ];
    if args.tls == TlsMode::SelfManaged {
        // Patches its CA into its own webhook configuration, and no other.
        cluster_rules.push(json!({
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": [WEBHOOK_CONFIGURATION],
            "verbs": ["get", "patch"]
        }));
    }

    let mut namespace_labels = labels_of(&labels_for_namespace());
    namespace_labels.insert("tandem.dev/inject".into(), json!("disabled"));
    namespace_labels.insert(
        "pod-security.kubernetes.io/enforce".into(),
        json!("restricted"),
    );
    let mut out = vec![
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": namespace_labels}
        }),
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": APP, "namespace": ns, "labels": labels},
            "automountServiceAccountToken": true
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": APP, "labels": labels},
            "rules": cluster_rules
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": APP, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": APP},
            "subjects": [{"kind": "ServiceAccount", "name": APP, "namespace": ns}]
        }),
    ];
    if args.tls == TlsMode::SelfManaged {
        out.extend(self_managed_rbac(args, &labels));
    }
    out.extend([
        // For tandem-shim in Jobs (universal copies, legacy sidecars with jobCompletion):
        // it reads its own pod to see the main containers finish. Granted per namespace
        // by the user, with a RoleBinding to the Job's service account.
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {
                "name": "tandem-shim-pod-reader",
                "labels": self::labels("tandem-shim", "shim"),
                "annotations": {"tandem.dev/usage": "kubectl create rolebinding tandem-shim -n NAMESPACE --clusterrole=tandem-shim-pod-reader --serviceaccount=NAMESPACE:SERVICEACCOUNT"}
            },
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
        }),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "tandem-config", "namespace": ns, "labels": labels},
            "data": {"config.yaml": config_text}
        }),
    ]);

    // The Sidecar and ClusterSidecar CRDs come first: everything after may use them.
    let crd_labels = self::labels("tandem", "crds");
    let crds = tandem_core::api::crds();
    out.splice(
        0..0,
        crds.iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .map(|mut c| {
                c["metadata"]["labels"] = crd_labels.clone();
                c
            }),
    );

    if args.tls == TlsMode::CertManager {
        out.extend(cert_manager(args, &labels, &dns));
    }

    out.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": APP, "namespace": ns, "labels": labels},
        "spec": {
            "selector": {"app.kubernetes.io/name": APP},
            "ports": [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
        }
    }));
    out.push(deployment(args, &labels, &config_text));
    out.push(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": APP, "namespace": ns, "labels": labels},
        "spec": {
            "minAvailable": if args.replicas >= 2 { 1 } else { 0 },
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": {"app.kubernetes.io/name": APP}}
        }
    }));
    out.push(webhook_configuration(args, &labels, ca_bundle.as_deref()));
    if args.with_label_nodes {
        out.extend(label_nodes(args));
    }
    Ok(out)
}

fn labels_for_namespace() -> Value {
    labels("tandem", "namespace")
}

fn labels_of(v: &Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// The CA file of `--tls secret`, base64 for `caBundle`.
fn read_ca_bundle(path: &std::path::Path) -> Result<String, InstallError> {
    let err = |problem: String| InstallError::CaBundle {
        path: path.display().to_string(),
        problem,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(err(
            "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    if pem.contains("PRIVATE KEY-----") {
        return Err(err(
            "it holds a private key: give only the CA certificate (the key stays in the Secret)"
                .into(),
        ));
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(pem.as_bytes()))
}

/// What the webhook needs to manage its own certificate: its Secret and the Lease that
/// replicas agree through, by name (create can't be limited by name).
fn self_managed_rbac(args: &InstallArgs, labels: &Value) -> Vec<Value> {
    let ns = args.namespace.as_str();
    let secret = args.tls_secret.as_str();
    vec![
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": APP, "namespace": ns, "labels": labels},
            "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret],
                 "verbs": ["get", "list", "watch", "update"]},
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
            ]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": APP, "namespace": ns, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": APP},
            "subjects": [{"kind": "ServiceAccount", "name": APP, "namespace": ns}]
        }),
    ]
}

/// cert-manager's objects: a self-signed CA and the serving certificate it issues.
fn cert_manager(args: &InstallArgs, labels: &Value, dns: &[String]) -> Vec<Value> {
    let ns = args.namespace.as_str();
    vec![
        json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Issuer",
            "metadata": {"name": "tandem-selfsigned", "namespace": ns, "labels": labels},
            "spec": {"selfSigned": {}}
        }),
        json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "tandem-webhook-ca", "namespace": ns, "labels": labels},
            "spec": {
                "isCA": true, "commonName": "tandem-webhook-ca", "secretName": "tandem-webhook-ca",
                "duration": "87600h",
                "privateKey": {"algorithm": "ECDSA", "size": 256},
                "issuerRef": {"name": "tandem-selfsigned", "kind": "Issuer"}
            }
        }),
        json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Issuer",
            "metadata": {"name": "tandem-ca", "namespace": ns, "labels": labels},
            "spec": {"ca": {"secretName": "tandem-webhook-ca"}}
        }),
        json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": APP, "namespace": ns, "labels": labels},
            "spec": {
                "secretName": args.tls_secret, "dnsNames": dns,
                "duration": format!("{}h", u64::from(args.cert_days) * 24),
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                "usages": ["server auth", "digital signature", "key encipherment"],
                "issuerRef": {"name": "tandem-ca", "kind": "Issuer"}
            }
        }),
    ]
}

fn pod_security() -> (Value, Value) {
    (
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
               "seccompProfile": {"type": "RuntimeDefault"}}),
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
               "capabilities": {"drop": ["ALL"]}}),
    )
}

fn deployment(args: &InstallArgs, labels: &Value, config_text: &str) -> Value {
    let ns = args.namespace.as_str();
    let mut container_args = vec![
        "webhook".to_string(),
        format!("--listen=0.0.0.0:{WEBHOOK_PORT}"),
        "--config=/etc/tandem/config/config.yaml".into(),
    ];
    let mut mounts =
        vec![json!({"name": "config", "mountPath": "/etc/tandem/config", "readOnly": true})];
    let mut volumes = vec![json!({"name": "config", "configMap": {"name": "tandem-config"}})];
    let mut env = vec![
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
    ];
    match args.tls {
        TlsMode::SelfManaged => {
            container_args.extend([
                format!("--tls-secret={}", args.tls_secret),
                format!("--webhook-configuration={WEBHOOK_CONFIGURATION}"),
                format!("--tls-service={APP}"),
            ]);
            env.push(json!({"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}));
        }
        TlsMode::CertManager | TlsMode::Secret => {
            container_args.extend([
                "--tls-cert=/etc/tandem/tls/tls.crt".into(),
                "--tls-key=/etc/tandem/tls/tls.key".into(),
            ]);
            mounts.push(json!({"name": "tls", "mountPath": "/etc/tandem/tls", "readOnly": true}));
            volumes.push(json!({"name": "tls", "secret": {"secretName": args.tls_secret}}));
        }
    }
    container_args.extend([
        "--cluster=required".into(),
        "--log-format=json".into(),
        // Keep answering while endpoints drop this pod, then drain.
        "--shutdown-delay=5s".into(),
        "--shutdown-grace=20s".into(),
    ]);
    if let Some(m) = args.mode {
        container_args.push(format!("--mode={}", m.as_str()));
    }
    let mut pod_labels = labels.clone();
    pod_labels["tandem.dev/inject"] = json!("disabled");
    let mut annotations = json!({"tandem.dev/config-hash": format!("{:016x}", fnv1a(config_text))});
    if args.scrape_annotations {
        annotations["prometheus.io/scrape"] = json!("true");
        annotations["prometheus.io/scheme"] = json!("https");
        annotations["prometheus.io/port"] = json!(WEBHOOK_PORT.to_string());
        annotations["prometheus.io/path"] = json!("/metrics");
    }
    let (pod_sc, container_sc) = pod_security();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": APP, "namespace": ns, "labels": labels},
        "spec": {
            "replicas": args.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": APP}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": annotations
                },
                "spec": {
                    "serviceAccountName": APP,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": pod_sc,
                    "affinity": {"podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": APP}}
                            }
                        }]
                    }},
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": APP}}
                    }],
                    "containers": [{
                        "name": "webhook",
                        "image": args.image,
                        "imagePullPolicy": args.image_pull_policy,
                        "args": container_args,
                        "env": env,
                        "ports": [{"name": "https", "containerPort": WEBHOOK_PORT, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "https", "scheme": "HTTPS"},
                                           "periodSeconds": 2, "failureThreshold": 2},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "https", "scheme": "HTTPS"},
                                          "periodSeconds": 10, "failureThreshold": 3},
                        "resources": {"requests": {"cpu": "50m", "memory": "48Mi"},
                                      "limits": {"memory": "128Mi"}},
                        "securityContext": container_sc,
                        "volumeMounts": mounts
                    }],
                    "volumes": volumes
                }
            }
        }
    })
}

fn webhook_configuration(args: &InstallArgs, labels: &Value, ca_bundle: Option<&str>) -> Value {
    let ns = args.namespace.as_str();
    let never = json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                       "values": [ns, "kube-system"]});
    let hook = |name: &str, path: &str, ns_expr: Value, obj_selector: Value| {
        let mut client =
            json!({"service": {"name": APP, "namespace": ns, "path": path, "port": 443}});
        if let Some(ca) = ca_bundle {
            client["caBundle"] = json!(ca);
        }
        json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "clientConfig": client,
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchExpressions": [ns_expr, never.clone()]},
            "objectSelector": obj_selector,
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "reinvocationPolicy": "IfNeeded",
            "timeoutSeconds": args.timeout_seconds,
            "failurePolicy": args.failure_policy.as_str(),
        })
    };
    let mut hooks = vec![hook(
        "namespace.inject.tandem.dev",
        "/mutate",
        json!({"key": "tandem.dev/inject", "operator": "In", "values": ["enabled"]}),
        json!({"matchExpressions": [{"key": "tandem.dev/inject", "operator": "NotIn", "values": ["disabled"]}]}),
    )];
    if args.pod_opt_in {
        hooks.push(hook(
            "pod.inject.tandem.dev",
            "/mutate/labelled",
            json!({"key": "tandem.dev/inject", "operator": "NotIn", "values": ["enabled"]}),
            json!({"matchLabels": {"tandem.dev/inject": "enabled"}}),
        ));
    }
    if args.adopt {
        hooks.extend(crate::adopt::registrations(hook));
    }
    let mut metadata = json!({"name": WEBHOOK_CONFIGURATION, "labels": labels});
    if args.tls == TlsMode::CertManager {
        metadata["annotations"] = json!({"cert-manager.io/inject-ca-from": format!("{ns}/{APP}")});
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": metadata,
        "webhooks": hooks
    })
}

/// The `tandem label-nodes` controller: its ServiceAccount, RBAC and Deployment.
fn label_nodes(args: &InstallArgs) -> Vec<Value> {
    let ns = args.namespace.as_str();
    let labels = labels(LABEL_NODES, "label-nodes");
    let mut rules = vec![json!({"apiGroups": [""], "resources": ["nodes"],
                                "verbs": ["get", "list", "watch", "patch"]})];
    if args.label_nodes_node_metrics {
        rules.push(json!({"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}));
    }
    let mut pod_labels = labels.clone();
    pod_labels["tandem.dev/inject"] = json!("disabled");
    // `tandem label-nodes` runs as a controller by default; without nodes/proxy it must
    // not try the kubelet metrics it may not read.
    let metrics = if args.label_nodes_node_metrics {
        "auto"
    } else {
        "never"
    };
    let mut container_args = vec![
        json!("label-nodes"),
        json!(format!("--node-metrics={metrics}")),
    ];
    container_args.extend(args.label_nodes_args.iter().map(|a| json!(a)));
    let (pod_sc, container_sc) = pod_security();
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": LABEL_NODES, "namespace": ns, "labels": labels}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": LABEL_NODES, "labels": labels}, "rules": rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": LABEL_NODES, "labels": labels},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": LABEL_NODES},
               "subjects": [{"kind": "ServiceAccount", "name": LABEL_NODES, "namespace": ns}]}),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": LABEL_NODES, "namespace": ns, "labels": labels},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app.kubernetes.io/name": LABEL_NODES}},
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "serviceAccountName": LABEL_NODES,
                        "securityContext": pod_sc,
                        "containers": [{
                            "name": "label-nodes",
                            "image": args.image,
                            "imagePullPolicy": args.image_pull_policy,
                            "args": container_args,
                            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                                          "limits": {"memory": "128Mi"}},
                            "securityContext": container_sc
                        }]
                    }
                }
            }
        }),
    ]
}

/// FNV-1a, 64 bits: a stable hash of the config for the pod template annotation, so that
/// a config change rolls the Deployment.
fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A one-line summary of what `render` produced (kinds and names), for messages.
pub fn summary(objects: &[Value]) -> String {
    let mut s = String::new();
    for o in objects {
        let _ = write!(
            s,
            "{}/{} ",
            o["kind"].as_str().unwrap_or("?"),
            o["metadata"]["name"].as_str().unwrap_or("?")
        );
    }
    s.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: InstallArgs,
    }

    fn args(extra: &[&str]) -> InstallArgs {
        let mut argv = vec!["tandem-install"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args
    }

    fn find<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
        objs.iter().filter(|o| o["kind"] == kind).collect()
    }

    #[test]
    fn renders_everything_needed() {
        let objs = objects(&args(&[])).unwrap();
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        for k in [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
            "MutatingWebhookConfiguration",
        ] {
            assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
        }
        // Self-managed TLS: no Secret, no key, no caBundle in the output.
        assert!(find(&objs, "Secret").is_empty());
        let text = render(&args(&[])).unwrap();
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("tls.key"),
            "{text}"
        );
        let reader = find(&objs, "ClusterRole")
            .into_iter()
            .find(|r| r["metadata"]["name"] == "tandem-shim-pod-reader")
            .expect("the shim's pod-reader role");
        assert_eq!(reader["rules"][0]["verbs"], json!(["get"]));
        let dep = find(&objs, "Deployment")[0];
        assert_eq!(dep["spec"]["replicas"], 2);
        let pod = &dep["spec"]["template"];
        assert!(pod["spec"]["affinity"]["podAntiAffinity"].is_object());
        assert_eq!(pod["metadata"]["labels"]["tandem.dev/inject"], "disabled");
        assert_eq!(
            pod["metadata"]["annotations"]["prometheus.io/scrape"],
            "true"
        );
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["image"], tandem_core::images::TANDEM_IMAGE);
        let cargs: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        for a in [
            "--tls-secret=tandem-webhook-tls",
            "--webhook-configuration=tandem",
            "--tls-service=tandem-webhook",
        ] {
            assert!(cargs.contains(&a), "{a} missing from {cargs:?}");
        }
        assert!(
            !cargs.iter().any(|a| a.starts_with("--tls-cert")),
            "{cargs:?}"
        );
        assert_eq!(c["env"][1]["name"], "POD_NAMESPACE");
        assert_eq!(
            c["env"][1]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        assert_eq!(
            pod["spec"]["volumes"].as_array().unwrap().len(),
            1,
            "no tls volume"
        );
        let mwc = find(&objs, "MutatingWebhookConfiguration")[0];
        assert_eq!(mwc["metadata"]["name"], WEBHOOK_CONFIGURATION);
        let hooks = mwc["webhooks"].as_array().unwrap();
        assert_eq!(hooks.len(), 2);
        for h in hooks {
            assert_eq!(h["sideEffects"], "None");
            assert_eq!(h["reinvocationPolicy"], "IfNeeded");
            assert_eq!(h["failurePolicy"], "Fail");
            assert_eq!(h["timeoutSeconds"], 5);
            let exprs = h["namespaceSelector"]["matchExpressions"].to_string();
            assert!(
                exprs.contains("tandem-system"),
                "own namespace excluded: {exprs}"
            );
            assert!(
                h["clientConfig"].get("caBundle").is_none(),
                "the webhook fills it"
            );
        }
        assert_eq!(hooks[0]["clientConfig"]["service"]["path"], "/mutate");
        assert!(hooks[0]["objectSelector"].to_string().contains("disabled"));
        // Least RBAC: cluster-wide no secrets and no pods; the webhook configuration,
        // the Secret and the Lease only by name (create can't be limited by name).
        let role = find(&objs, "ClusterRole")[0];
        let text = role.to_string();
        assert!(
            !text.contains("secrets") && !text.contains("\"pods\""),
            "{text}"
        );
        let mwc_rule = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resources"] == json!(["mutatingwebhookconfigurations"]))
            .expect("patch its own caBundle");
        assert_eq!(mwc_rule["resourceNames"], json!(["tandem"]));
        let ns_role = find(&objs, "Role")[0];
        for rule in ns_role["rules"].as_array().unwrap() {
            let verbs = rule["verbs"].as_array().unwrap();
            assert!(
                verbs == &vec![json!("create")]
                    || rule["resourceNames"] == json!(["tandem-webhook-tls"]),
                "{rule}"
            );
        }
    }

    #[test]
    fn rendering_twice_gives_identical_bytes() {
        for extra in [
            &[][..],
            &["--tls", "cert-manager", "--with-label-nodes"][..],
        ] {
            let a = render(&args(extra)).unwrap();
            let b = render(&args(extra)).unwrap();
            assert_eq!(a, b, "{extra:?}");
        }
    }

    #[test]
    fn every_object_has_the_recommended_labels() {
        let objs = objects(&args(&["--with-label-nodes", "--tls", "cert-manager"])).unwrap();
        for o in &objs {
            let l = &o["metadata"]["labels"];
            for k in [
                "name",
                "instance",
                "version",
                "component",
                "part-of",
                "managed-by",
            ] {
                assert!(
                    l[format!("app.kubernetes.io/{k}")].is_string(),
                    "{}/{} lacks app.kubernetes.io/{k}: {l}",
                    o["kind"],
                    o["metadata"]["name"]
                );
            }
            assert_eq!(l["app.kubernetes.io/part-of"], "tandem");
            assert_eq!(l["app.kubernetes.io/version"], tandem_core::images::TAG);
        }
    }

    #[test]
    fn sidecar_crds_come_first_and_the_webhook_may_watch_them() {
        let objs = objects(&args(&[])).unwrap();
        let names: Vec<&str> = objs[..2]
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sidecars.tandem.dev", "clustersidecars.tandem.dev"]);
        assert_eq!(objs[0]["kind"], "CustomResourceDefinition");
        let role = find(&objs, "ClusterRole")[0]["rules"].to_string();
        for want in [
            r#"["sidecars","clustersidecars"],"verbs":["get","list","watch"]"#,
            r#"["sidecars/status","clustersidecars/status"],"verbs":["get","patch"]"#,
            r#"["namespaces"],"verbs":["get","list","watch"]"#,
        ] {
            assert!(role.contains(want), "{want} in {role}");
        }
    }

    #[test]
    fn yaml_reads_back() {
        let text = render(&args(&["--namespace", "tandem"])).unwrap();
        let docs = tandem_core::manifest::parse_stream(&text).unwrap();
        let objs = objects(&args(&["--namespace", "tandem"])).unwrap();
        assert_eq!(docs.len(), objs.len());
        // The config survives YAML quoting (it is a string holding YAML).
        let cm = docs
            .iter()
            .find(|d| d.value["kind"] == "ConfigMap")
            .unwrap();
        let text = cm.value["data"]["config.yaml"].as_str().unwrap();
        assert!(Config::from_yaml(text).is_ok());
    }

    #[test]
    fn flags_change_the_output() {
        let objs = objects(&args(&[
            "--failure-policy",
            "ignore",
            "--tls",
            "cert-manager",
            "--with-label-nodes",
            "--label-nodes-node-metrics",
            "--replicas",
            "3",
            "--mode",
            "legacy",
            "--pod-opt-in",
            "false",
            "--scrape-annotations",
            "false",
        ]))
        .unwrap();
        assert!(find(&objs, "Secret").is_empty());
        assert!(find(&objs, "Role").is_empty(), "no self-managed RBAC");
        assert_eq!(find(&objs, "Certificate").len(), 2);
        let mwc = find(&objs, "MutatingWebhookConfiguration")[0];
        assert_eq!(mwc["webhooks"].as_array().unwrap().len(), 1);
        assert_eq!(mwc["webhooks"][0]["failurePolicy"], "Ignore");
        assert!(mwc["webhooks"][0]["clientConfig"].get("caBundle").is_none());
        assert_eq!(
            mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "tandem-system/tandem-webhook"
        );
        let deps = find(&objs, "Deployment");
        assert_eq!(deps.len(), 2);
        assert_eq!(deps[0]["spec"]["replicas"], 3);
        let d = deps[0].to_string();
        assert!(
            d.contains("--mode=legacy") && d.contains("--tls-cert="),
            "{d}"
        );
        assert!(!d.contains("prometheus.io"), "{d}");
        assert!(!d.contains("--tls-secret"), "{d}");
        let roles = find(&objs, "ClusterRole");
        assert!(
            !roles[0]
                .to_string()
                .contains("mutatingwebhookconfigurations")
        );
        let ln = roles
            .iter()
            .find(|r| r["metadata"]["name"] == LABEL_NODES)
            .unwrap()
            .to_string();
        assert!(ln.contains("nodes/proxy") && ln.contains("patch"), "{ln}");
        assert!(summary(&objs).contains("Deployment/tandem-label-nodes"));
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tandem-install-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn an_existing_secret_with_its_ca() {
        let ca = scratch("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let objs = objects(&args(&[
            "--tls",
            "secret",
            "--tls-secret",
            "my-tls",
            "--ca-bundle",
            ca.to_str().unwrap(),
        ]))
        .unwrap();
        let mwc = find(&objs, "MutatingWebhookConfiguration")[0];
        let bundle = mwc["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(bundle)
            .unwrap();
        assert!(
            String::from_utf8(pem)
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        let dep = find(&objs, "Deployment")[0].to_string();
        assert!(dep.contains("\"secretName\":\"my-tls\""), "{dep}");
        // A key given by mistake is refused, with what to do.
        let keyed = scratch("keyed.pem");
        std::fs::write(
            &keyed,
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = objects(&args(&[
            "--tls",
            "secret",
            "--ca-bundle",
            keyed.to_str().unwrap(),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("private key"), "{err}");
        let empty = scratch("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = objects(&args(&[
            "--tls",
            "secret",
            "--ca-bundle",
            empty.to_str().unwrap(),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
        // clap requires the CA with --tls secret.
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: InstallArgs,
        }
        assert!(Cli::try_parse_from(["t", "--tls", "secret"]).is_err());
    }

    #[test]
    fn bad_config_is_an_error() {
        let p = scratch("bad.yaml");
        std::fs::write(&p, "sidecars: 3\n").unwrap();
        let err = objects(&args(&["--config", p.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("bad.yaml"), "{err}");
    }
}
