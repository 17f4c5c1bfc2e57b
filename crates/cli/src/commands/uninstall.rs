//! `tandem uninstall`: the objects `tandem install` creates (plus the Secret the webhook
//! makes for itself), in the order that keeps pod creates working on the way out: the
//! webhook configurations first (so that the API server stops calling the webhook while it
//! still runs), then the workloads, Services, configuration, RBAC, and the namespace last.
//!
//! By default it prints them for `kubectl delete -f -` (which deletes in file order);
//! `--delete` deletes them itself, in the same order, waiting a few seconds after the
//! webhook configurations so that every API server has dropped them.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

/// Flags of `tandem uninstall`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Delete the objects (instead of printing them for `kubectl delete -f -`).
    #[arg(long)]
    pub delete: bool,
    /// With --delete: a server-side dry run (nothing is deleted).
    #[arg(long, requires = "delete")]
    pub dry_run: bool,
    /// Keep tandem's namespace.
    #[arg(long)]
    pub keep_namespace: bool,
    /// Also delete tandem's CustomResourceDefinitions, and with them every Sidecar and
    /// ClusterSidecar in the cluster.
    #[arg(long)]
    pub include_crds: bool,
    /// What the Helm chart's pre-delete hook runs: only what Helm would delete in the
    /// wrong order or not at all. The webhook configurations first, then the workloads
    /// (waiting until their pods are gone, so that nothing re-creates the Secret), then
    /// the Secret the webhook made; Helm deletes the rest afterwards.
    #[arg(long, requires = "delete")]
    pub helm_hook: bool,
    /// Leave the Secret `--tls-secret` alone (with `--tls self-managed` it is the
    /// webhook's own and deleted by default; with the other modes it is never touched).
    #[arg(long)]
    pub keep_secret: bool,
    /// How long to wait after deleting the webhook configurations (so that every API
    /// server has stopped calling the webhook before it goes).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub settle: Duration,
    /// Which cluster (with --delete).
    #[command(flatten)]
    pub cluster: tandem_kube::ClusterArgs,
    /// The flags given to `tandem install` (the namespace above all).
    #[command(flatten)]
    pub install: tandem_webhook::InstallArgs,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    tandem_core::config::duration_text::parse(s)
}

/// Deletion rank of a kind: lower goes first.
pub fn rank(kind: &str) -> u8 {
    match kind {
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => 0,
        "Deployment" | "DaemonSet" | "StatefulSet" | "Job" | "CronJob" => 1,
        "Service"
        | "PodDisruptionBudget"
        | "NetworkPolicy"
        | "ServiceMonitor"
        | "PodMonitor"
        | "HorizontalPodAutoscaler" => 2,
        "ConfigMap" | "Secret" | "Certificate" | "Issuer" | "ClusterIssuer" => 3,
        "RoleBinding" | "ClusterRoleBinding" | "Role" | "ClusterRole" | "ServiceAccount" => 4,
        "CustomResourceDefinition" => 5,
        "Namespace" => 6,
        _ => 3,
    }
}

/// The references to delete, in order (pure: from the rendered objects).
pub fn plan(
    rendered: &[Value],
    namespace: &str,
    secret: Option<&str>,
    keep_namespace: bool,
    crds: bool,
) -> Vec<Value> {
    let mut refs: Vec<Value> = Vec::new();
    let mut push = |api: &str, kind: &str, name: &str, ns: Option<&str>| {
        let mut meta = json!({"name": name});
        if let Some(ns) = ns {
            meta["namespace"] = json!(ns);
        }
        let r = json!({"apiVersion": api, "kind": kind, "metadata": meta});
        if !refs.contains(&r) {
            refs.push(r);
        }
    };
    for o in rendered {
        let (Some(api), Some(kind), Some(name)) = (
            o["apiVersion"].as_str(),
            o["kind"].as_str(),
            o["metadata"]["name"].as_str(),
        ) else {
            continue;
        };
        if (kind == "Namespace" && keep_namespace) || (kind == "CustomResourceDefinition" && !crds)
        {
            continue;
        }
        push(api, kind, name, o["metadata"]["namespace"].as_str());
    }
    // Made at runtime by the webhook (self-managed TLS), not rendered.
    if let Some(secret) = secret {
        push("v1", "Secret", secret, Some(namespace));
    }
    refs.sort_by_key(|r| rank(r["kind"].as_str().unwrap_or("")));
    refs
}

/// The part of [`plan`] the chart's pre-delete hook deletes: the webhook configurations,
/// the workloads and the Secret the webhook made at runtime (not one of Helm's objects).
pub fn helm_hook_plan(refs: Vec<Value>, secret: &str) -> Vec<Value> {
    refs.into_iter()
        .filter(|r| {
            let kind = r["kind"].as_str().unwrap_or_default();
            rank(kind) <= 1 || (kind == "Secret" && r["metadata"]["name"] == secret)
        })
        .collect()
}

/// Prints or deletes.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut install = args.install.clone();
    install.with_label_nodes = true; // remove the labeller too, if it was installed
    let rendered = tandem_webhook::install::objects(&install)?;
    // Only the self-managed Secret is the webhook's to delete: the others are yours or
    // cert-manager's.
    let webhooks_secret = (install.tls == tandem_webhook::install::TlsMode::SelfManaged
        && !args.keep_secret)
        .then_some(install.tls_secret.as_str());
    let refs = plan(
        &rendered,
        &install.namespace,
        webhooks_secret,
        args.keep_namespace,
        args.include_crds,
    );
    let refs = if args.helm_hook {
        helm_hook_plan(refs, &install.tls_secret)
    } else {
        refs
    };
    if !args.delete {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "# tandem uninstall: delete in this order (webhook configurations first):\n\
             #   tandem uninstall | kubectl delete --ignore-not-found -f -"
        )?;
        out.write_all(tandem_core::manifest::to_yaml_stream(&refs).as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(delete_all(&args, &refs))
}

async fn delete_all(args: &Args, refs: &[Value]) -> anyhow::Result<ExitCode> {
    use kube::api::{Api, DeleteParams, DynamicObject};
    use kube::core::GroupVersionKind;
    let client = tandem_kube::connect(&args.cluster).await?;
    let params = DeleteParams {
        dry_run: args.dry_run,
        ..DeleteParams::background()
    };
    let suffix = if args.dry_run { " (dry run)" } else { "" };
    let mut failed = 0;
    let mut previous_rank = None;
    for r in refs {
        let kind = r["kind"].as_str().unwrap_or_default();
        let api_version = r["apiVersion"].as_str().unwrap_or_default();
        let name = r["metadata"]["name"].as_str().unwrap_or_default();
        let ns = r["metadata"]["namespace"].as_str();
        if previous_rank == Some(0) && rank(kind) > 0 && !args.dry_run {
            eprintln!(
                "waiting {:?} for the API servers to drop the webhook configurations",
                args.settle
            );
            tokio::time::sleep(args.settle).await;
        }
        previous_rank = Some(rank(kind));
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let what = match ns {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        };
        let (ar, _) = match kube::discovery::pinned_kind(&client, &gvk).await {
            Ok(found) => found,
            Err(_) => {
                println!("{what}: kind not served by this cluster, skipped");
                continue;
            }
        };
        let api: Api<DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        let workload = rank(kind) == 1;
        let params = if workload && args.helm_hook && !args.dry_run {
            // Its pods go before it does: nothing of the webhook is left to re-create
            // the Secret deleted next.
            DeleteParams {
                propagation_policy: Some(kube::api::PropagationPolicy::Foreground),
                ..params.clone()
            }
        } else {
            params.clone()
        };
        match api.delete(name, &params).await {
            Ok(_) if workload && args.helm_hook && !args.dry_run => {
                if wait_gone(&api, name, Duration::from_secs(120)).await {
                    println!("{what}: deleted, its pods gone");
                } else {
                    failed += 1;
                    eprintln!("{what}: still there after 120s (its pods are terminating)");
                }
            }
            Ok(_) => println!("{what}: deleted{suffix}"),
            Err(kube::Error::Api(s)) if s.code == 404 => println!("{what}: not found"),
            Err(e) => {
                failed += 1;
                eprintln!("{what}: {}", tandem_kube::error::error_chain(&e));
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Polls until the object is gone (true) or `timeout` has passed (false).
async fn wait_gone(
    api: &kube::Api<kube::api::DynamicObject>,
    name: &str,
    timeout: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        match api.get_opt(name).await {
            Ok(None) => return true,
            Ok(Some(_)) | Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_configurations_first_namespace_last() {
        let rendered = vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "t"}}),
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": {"name": "tandem"}}),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "sidecars.tandem.dev"}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "c"}}),
        ];
        let kinds = |refs: &[Value]| -> Vec<String> {
            refs.iter()
                .map(|r| r["kind"].as_str().unwrap().to_string())
                .collect()
        };
        let refs = plan(&rendered, "t", Some("tandem-webhook-tls"), false, false);
        assert_eq!(
            kinds(&refs),
            [
                "MutatingWebhookConfiguration",
                "Deployment",
                "Secret",
                "ClusterRole",
                "Namespace"
            ]
        );
        assert_eq!(refs[2]["metadata"]["name"], "tandem-webhook-tls");
        assert_eq!(
            kinds(&helm_hook_plan(refs, "tandem-webhook-tls")),
            ["MutatingWebhookConfiguration", "Deployment", "Secret"],
            "the chart's hook leaves the rest to Helm"
        );
        let refs = plan(&rendered, "t", None, true, true);
        assert_eq!(kinds(&refs).last().unwrap(), "CustomResourceDefinition");
        assert!(!kinds(&refs).contains(&"Namespace".to_string()));
        assert!(
            !kinds(&refs).contains(&"Secret".to_string()),
            "a Secret that isn't the webhook's own stays"
        );
    }
}
