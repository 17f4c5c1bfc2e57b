//! `tandem install`: the manifests that run tandem's webhook in a cluster, as one YAML
//! stream for `kubectl apply -f -`.
//!
//! Namespace, ServiceAccount, least RBAC, the config as a ConfigMap, TLS material
//! (generated here, or by cert-manager), Deployment (≥2 replicas, spread over nodes),
//! PodDisruptionBudget, Service, and the MutatingWebhookConfiguration. With
//! `--with-label-nodes`, also the `tandem label-nodes` controller and its RBAC.
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

use crate::tls::Pki;

/// What happens to pod creation when the webhook cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FailurePolicy {
    /// Reject the pod (the default: no pod silently starts without its sidecars).
    #[default]
    Fail,
    /// Admit the pod unchanged (availability first; pods may miss their sidecars).
    Ignore,
}

/// Where the webhook's serving certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TlsMode {
    /// Generate a CA and a serving certificate now: a Secret, and the CA as `caBundle`.
    #[default]
    Generate,
    /// cert-manager issues and renews them (it must be installed); it also injects the
    /// CA into the webhook configuration.
    CertManager,
}

/// `tandem install`: print the manifests that run tandem in a cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    /// Namespace to install into (created; never matched by the webhook itself).
    #[arg(long, default_value = "tandem-system")]
    pub namespace: String,
    /// tandem's container image.
    #[arg(long, default_value = concat!("ghcr.io/tandem-dev/tandem:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
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
    /// TLS material: generated now, or by cert-manager.
    #[arg(long, value_enum, default_value_t = TlsMode::Generate)]
    pub tls: TlsMode,
    /// Validity of a generated certificate, in days.
    #[arg(long, default_value_t = 365, value_name = "DAYS")]
    pub cert_days: u32,
    /// Also register the webhook for pods labelled `tandem.dev/inject: enabled` in
    /// namespaces that are not opted in.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub pod_opt_in: bool,
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
    /// Generating TLS material failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

const APP: &str = "tandem-webhook";
const LABEL_NODES: &str = "tandem-label-nodes";
const WEBHOOK_PORT: u16 = 8443;

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
    let labels = json!({
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/part-of": "tandem",
    });
    let dns = vec![
        format!("{APP}.{ns}.svc"),
        format!("{APP}.{ns}.svc.cluster.local"),
    ];

    let mut out = vec![
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {
                "tandem.dev/inject": "disabled",
                "pod-security.kubernetes.io/enforce": "restricted",
            }}
        }),
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": APP, "namespace": ns, "labels": labels},
            "automountServiceAccountToken": true
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": APP, "labels": labels},
            "rules": [
                // The node cache for `auto`.
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
                // Injected / Skipped events on the pod's owner.
                {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
                // The API server's SidecarContainers feature metric (read every few minutes).
                {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
            ]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": APP, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": APP},
            "subjects": [{"kind": "ServiceAccount", "name": APP, "namespace": ns}]
        }),
        // For tandem-shim in Jobs (universal copies, legacy sidecars with jobCompletion):
        // it reads its own pod to see the main containers finish. Granted per namespace
        // by the user, with a RoleBinding to the Job's service account.
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {
                "name": "tandem-shim-pod-reader",
                "labels": labels,
                "annotations": {"tandem.dev/usage": "kubectl create rolebinding tandem-shim -n NAMESPACE --clusterrole=tandem-shim-pod-reader --serviceaccount=NAMESPACE:SERVICEACCOUNT"}
            },
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
        }),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "tandem-config", "namespace": ns, "labels": labels},
            "data": {"config.yaml": config_text}
        }),
    ];

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let mut ca_bundle = None;
    match args.tls {
        TlsMode::Generate => {
            let pki = Pki::generate("tandem-webhook-ca", &dns, &[], args.cert_days)?;
            out.push(json!({
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": "tandem-webhook-tls", "namespace": ns, "labels": labels},
                "data": {
                    "tls.crt": b64(&pki.cert_pem),
                    "tls.key": b64(&pki.key_pem),
                    "ca.crt": b64(&pki.ca_pem),
                }
            }));
            ca_bundle = Some(b64(&pki.ca_pem));
        }
        TlsMode::CertManager => {
            out.extend([
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
                        "secretName": "tandem-webhook-tls", "dnsNames": dns,
                        "duration": format!("{}h", u64::from(args.cert_days) * 24),
                        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                        "usages": ["server auth", "digital signature", "key encipherment"],
                        "issuerRef": {"name": "tandem-ca", "kind": "Issuer"}
                    }
                }),
            ]);
        }
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
    out.push(webhook_configuration(args, ca_bundle.as_deref()));
    if args.with_label_nodes {
        out.extend(label_nodes(args));
    }
    Ok(out)
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
        "--tls-cert=/etc/tandem/tls/tls.crt".into(),
        "--tls-key=/etc/tandem/tls/tls.key".into(),
        "--cluster=required".into(),
        "--log-format=json".into(),
        // Keep answering while endpoints drop this pod, then drain.
        "--shutdown-delay=5s".into(),
        "--shutdown-grace=20s".into(),
    ];
    if let Some(m) = args.mode {
        container_args.push(format!("--mode={}", m.as_str()));
    }
    let mut pod_labels = labels.clone();
    pod_labels["tandem.dev/inject"] = json!("disabled");
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
                    "annotations": {"tandem.dev/config-hash": format!("{:016x}", fnv1a(config_text))}
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
                        "args": container_args,
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "ports": [{"name": "https", "containerPort": WEBHOOK_PORT, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "https", "scheme": "HTTPS"},
                                           "periodSeconds": 2, "failureThreshold": 2},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "https", "scheme": "HTTPS"},
                                          "periodSeconds": 10, "failureThreshold": 3},
                        "resources": {"requests": {"cpu": "50m", "memory": "48Mi"},
                                      "limits": {"memory": "128Mi"}},
                        "securityContext": container_sc,
                        "volumeMounts": [
                            {"name": "config", "mountPath": "/etc/tandem/config", "readOnly": true},
                            {"name": "tls", "mountPath": "/etc/tandem/tls", "readOnly": true}
                        ]
                    }],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "tandem-config"}},
                        {"name": "tls", "secret": {"secretName": "tandem-webhook-tls"}}
                    ]
                }
            }
        }
    })
}

fn webhook_configuration(args: &InstallArgs, ca_bundle: Option<&str>) -> Value {
    let ns = args.namespace.as_str();
    let never = json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                       "values": [ns, "kube-system"]});
    let policy = match args.failure_policy {
        FailurePolicy::Fail => "Fail",
        FailurePolicy::Ignore => "Ignore",
    };
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
            "failurePolicy": policy,
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
    let mut metadata = json!({"name": "tandem", "labels": {"app.kubernetes.io/part-of": "tandem"}});
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
    let labels =
        json!({"app.kubernetes.io/name": LABEL_NODES, "app.kubernetes.io/part-of": "tandem"});
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
            "ConfigMap",
            "Secret",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
            "MutatingWebhookConfiguration",
        ] {
            assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
        }
        let reader = find(&objs, "ClusterRole")
            .into_iter()
            .find(|r| r["metadata"]["name"] == "tandem-shim-pod-reader")
            .expect("the shim's pod-reader role");
        assert_eq!(reader["rules"][0]["verbs"], json!(["get"]));
        let dep = find(&objs, "Deployment")[0];
        assert_eq!(dep["spec"]["replicas"], 2);
        assert!(dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"].is_object());
        assert_eq!(
            dep["spec"]["template"]["metadata"]["labels"]["tandem.dev/inject"],
            "disabled"
        );
        let mwc = find(&objs, "MutatingWebhookConfiguration")[0];
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
            assert!(h["clientConfig"]["caBundle"].is_string());
        }
        assert_eq!(hooks[0]["clientConfig"]["service"]["path"], "/mutate");
        assert!(hooks[0]["objectSelector"].to_string().contains("disabled"));
        // The caBundle is the CA that signed the Secret's certificate.
        let secret = find(&objs, "Secret")[0];
        assert_eq!(
            secret["data"]["ca.crt"],
            hooks[0]["clientConfig"]["caBundle"]
        );
        // Least RBAC: no secrets, no pods, no writes but events.
        let role = find(&objs, "ClusterRole")[0].to_string();
        assert!(
            !role.contains("secrets") && !role.contains("\"pods\""),
            "{role}"
        );
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
        ]))
        .unwrap();
        assert!(find(&objs, "Secret").is_empty());
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
        assert!(deps[0].to_string().contains("--mode=legacy"), "{}", deps[0]);
        let roles = find(&objs, "ClusterRole");
        let ln = roles
            .iter()
            .find(|r| r["metadata"]["name"] == LABEL_NODES)
            .unwrap()
            .to_string();
        assert!(ln.contains("nodes/proxy") && ln.contains("patch"), "{ln}");
        assert!(summary(&objs).contains("Deployment/tandem-label-nodes"));
    }

    #[test]
    fn bad_config_is_an_error() {
        let dir = std::env::temp_dir().join(format!("tandem-install-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.yaml");
        std::fs::write(&p, "sidecars: 3\n").unwrap();
        let err = objects(&args(&["--config", p.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("bad.yaml"), "{err}");
    }
}
