//! `tandem doctor`: gathers facts from the cluster (through `tandem-kube`), hands them
//! to the pure verdicts of [`crate::checks`] and [`crate::webhooks`], and prints the
//! [`Report`]. A check that lacks a permission says which, and the others go on.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::Value;
use tandem_core::names::INJECT_LABEL;
use tandem_kube::cluster::{self, list_all};
use tandem_kube::nodes::GateProbe;
use tandem_kube::{Access, ClusterArgs, KubeError};

use crate::checks::{self, NodeObservation};
use crate::output::OutputFormat;
use crate::report::{Check, Report, Status};
use crate::scan::{self, NodeMetrics, NodeScan, Progress};
use crate::webhooks;

/// Flags of `tandem doctor`.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// Which cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The namespace to check, as kubectl's -n: the webhook check dry-runs its probe pod
    /// there (never persisted; every namespace labelled tandem.dev/inject=enabled is
    /// probed too), and only its pods are looked at for stuck pods and missed
    /// injections. Default: the probe in `default`, pods in every namespace.
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Look at pods in every namespace, as kubectl's -A (the default without -n; with -n,
    /// only the probe pod uses that namespace).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Extra label for the probe pod, KEY=VALUE (repeatable): label it like the
    /// workloads whose injection you want to test.
    #[arg(long = "probe-label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub probe_labels: Vec<(String, String)>,
    /// Image of the probe pod's containers (never pulled: the pod is only dry-run).
    #[arg(long, default_value = "registry.k8s.io/pause:3.10")]
    pub probe_image: String,
    /// Skip the dry-run probe (the webhook check then only lists webhooks).
    #[arg(long)]
    pub no_probe: bool,
    /// Look for stuck pods and missed injections only in this namespace (overrides -n
    /// and -A for pods).
    #[arg(long, value_name = "NAMESPACE")]
    pub pods_namespace: Option<String>,
    /// Only check nodes matching this label selector (as `label-nodes -l`).
    #[arg(
        short = 'l',
        long = "selector",
        visible_alias = "node-selector",
        value_name = "SELECTOR"
    )]
    pub node_selector: Option<String>,
    /// When to read each kubelet's SidecarContainers metric (needs get nodes/proxy).
    #[arg(long, value_enum, default_value_t = NodeMetrics::Auto)]
    pub node_metrics: NodeMetrics,
    /// How many nodes' metrics are read at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// How long each node gets to answer before it is reported as slow (`5s`; a bare
    /// number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "5s",
          value_parser = tandem_core::config::duration_text::parse_flag)]
    pub node_timeout: Duration,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// The checks of tandem itself.
    #[command(flatten)]
    pub tandem: crate::tandem_checks::TandemCheckArgs,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}

impl DoctorArgs {
    /// Where the probe pod is dry-run: `-n`, else `default`.
    pub fn probe_namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// The one namespace whose pods are looked at, or `None` for all of them.
    pub fn pods_scope(&self) -> Option<&str> {
        match (&self.pods_namespace, self.all_namespaces, &self.namespace) {
            (Some(ns), _, _) => Some(ns),
            (None, true, _) => None,
            (None, false, ns) => ns.as_deref(),
        }
    }

    /// The probe pod's labels: a workload-like name label plus `--probe-label`s.
    pub fn probe_labels(&self) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([(
            "app.kubernetes.io/name".to_string(),
            "tandem-doctor-probe".to_string(),
        )]);
        l.extend(self.probe_labels.iter().cloned());
        l
    }
}

fn to_values<T: serde::Serialize>(items: Vec<T>) -> Vec<Value> {
    items
        .into_iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect()
}

/// Runs every check against the cluster. `Err` only when the doctor can't run at all
/// (no cluster, credentials rejected, API server unreachable).
pub async fn diagnose(
    client: &Client,
    args: &DoctorArgs,
    progress: &mut Progress,
) -> Result<Report, KubeError> {
    // 0. tandem itself (its own category, first, like linkerd's control-plane checks).
    let mut checks: Vec<Check> = crate::tandem_checks::checks(client, &args.tandem.target).await;
    if args.tandem.tandem_only {
        return Ok(Report::new(checks));
    }

    // 1. API server version.
    let version = match cluster::server_version(client).await {
        Err(e) if e.is_fatal() => return Err(e),
        other => other,
    };
    checks.push(checks::apiserver_version(&version));
    let version = version.ok();

    // 2. API server gate.
    let gate = cluster::apiserver_gate(client).await;
    checks.push(checks::apiserver_gate(version.as_ref(), &gate));
    let gate = gate.ok().flatten().map(|r| r.enabled);

    // 3. Nodes.
    let scan = NodeScan {
        selector: args.node_selector.clone(),
        metrics: args.node_metrics,
        probe: GateProbe {
            concurrency: args.concurrency.max(1),
            timeout: args.node_timeout.max(Duration::from_secs(1)),
        },
    };
    let observed: Result<Vec<NodeObservation>, KubeError> =
        scan::scan_nodes(client, &scan, progress)
            .await
            .map(|v| v.into_iter().map(|n| n.observation).collect());
    checks.push(checks::nodes(&observed, args.node_selector.as_deref()));
    let nodes_by_name: BTreeMap<String, NodeObservation> = observed
        .unwrap_or_default()
        .into_iter()
        .map(|o| (o.facts.name.clone(), o))
        .collect();

    // 4. Webhooks.
    checks.push(webhook_check(client, args, version.as_ref(), gate).await);

    // 5. Stuck pods: only unfinished pods are listed.
    let pods_access = |verb: &str| match args.pods_scope() {
        Some(ns) => Access::new(verb, "pods").in_namespace(ns),
        None => Access::new(verb, "pods"),
    };
    let pods_api: Api<Pod> = match args.pods_scope() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let unfinished = list_all(
        &pods_api,
        pods_access("list"),
        ListParams::default().fields("status.phase!=Running,status.phase!=Succeeded"),
    )
    .await
    .map(to_values);
    checks.push(checks::stuck_pods(&unfinished, &nodes_by_name));

    // 6. Missed injections.
    checks.push(missed_check(client, args).await);

    Ok(Report::new(checks))
}

async fn webhook_check(
    client: &Client,
    args: &DoctorArgs,
    version: Option<&tandem_core::KubeVersion>,
    gate: Option<bool>,
) -> Check {
    let cfg_api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let configs = list_all(
        &cfg_api,
        Access::new(
            "list",
            "mutatingwebhookconfigurations.admissionregistration.k8s.io",
        ),
        ListParams::default(),
    )
    .await;
    let (count, configs) = match configs {
        Ok(c) => (Ok(c.len()), c),
        Err(e) => (Err(e), Vec::new()),
    };
    // The probe runs in `-n` and in every namespace that opts in: a webhook scoped to
    // opted-in namespaces would never see a probe in `default` alone.
    let (namespaces, listed) = crate::scan::probe_namespaces(client, args.probe_namespace()).await;
    let drops = checks::apiserver_drops(version, gate);
    let mut per_ns = Vec::new();
    for ns in &namespaces {
        let mut c = probe_one(client, args, ns, (&count, &configs), drops.as_deref()).await;
        if let Some(note) = &listed {
            c.evidence.push(note.clone());
        }
        per_ns.push((ns.clone(), c));
    }
    webhooks::combine(per_ns)
}

/// Check 4 in one namespace.
async fn probe_one(
    client: &Client,
    args: &DoctorArgs,
    ns: &str,
    (count, configs): (&Result<usize, KubeError>, &[MutatingWebhookConfiguration]),
    drops: Option<&str>,
) -> Check {
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let ns_labels = ns_api
        .get(ns)
        .await
        .ok()
        .map(|n| n.metadata.labels.unwrap_or_default());
    let mut labels = args.probe_labels();
    // The probe opts out of tandem, so tandem's own webhook never touches it.
    labels.insert(INJECT_LABEL.to_string(), "disabled".to_string());
    let seen = webhooks::webhooks_seeing(configs, ns_labels.as_ref(), &labels);
    if args.no_probe {
        let mut c = Check::new(
            "webhooks",
            webhooks::TITLE,
            Status::Skip,
            "the dry-run probe was turned off (--no-probe)",
        );
        for s in &seen {
            c.items.push(crate::report::Item::new(
                Status::Skip,
                format!("webhook {}", s.name),
                s.detail.clone(),
            ));
        }
        return c;
    }
    let probe = webhooks::probe_pod(ns, &labels, &args.probe_image);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let result = match serde_json::from_value::<Pod>(probe) {
        Err(e) => Err(KubeError::Other {
            access: Access::new("create", "pods").in_namespace(ns),
            message: e.to_string(),
        }),
        Ok(pod) => pods
            .create(
                &PostParams {
                    dry_run: true,
                    field_manager: Some("tandem-doctor".into()),
                },
                &pod,
            )
            .await
            .map_err(|e| KubeError::from_kube(Access::new("create", "pods").in_namespace(ns), e))
            .and_then(|p| {
                serde_json::to_value(p).map_err(|e| KubeError::Other {
                    access: Access::new("create", "pods").in_namespace(ns),
                    message: e.to_string(),
                })
            }),
    };
    webhooks::verdict(ns, count, &seen, &result, drops)
}

async fn missed_check(client: &Client, args: &DoctorArgs) -> Check {
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let namespaces: Result<Vec<Value>, KubeError> = match args.pods_scope() {
        Some(ns) => ns_api
            .get(ns)
            .await
            .map(|n| to_values(vec![n]))
            .map_err(|e| KubeError::from_kube(Access::new("get", "namespaces"), e)),
        None => list_all(
            &ns_api,
            Access::new("list", "namespaces"),
            ListParams::default().labels(&format!("{INJECT_LABEL}=enabled")),
        )
        .await
        .map(to_values),
    };
    let opted: Vec<String> = namespaces
        .as_ref()
        .map(|nss| {
            nss.iter()
                .filter(|n| {
                    n.pointer("/metadata/labels")
                        .and_then(|l| l.get(INJECT_LABEL))
                        .and_then(Value::as_str)
                        == Some("enabled")
                })
                .filter_map(|n| {
                    n.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut pods = Ok(Vec::new());
    for ns in &opted {
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        match list_all(
            &api,
            Access::new("list", "pods").in_namespace(ns),
            ListParams::default(),
        )
        .await
        {
            Ok(p) => {
                if let Ok(all) = &mut pods {
                    all.extend(to_values(p));
                }
            }
            Err(e) => {
                pods = Err(e);
                break;
            }
        }
    }
    checks::missed_injections(&namespaces, &pods)
}

/// Runs `tandem doctor` and writes the report; returns the exit code (0 all good,
/// 1 problems found, 2 the doctor could not run or could not check everything).
pub async fn run_async(
    args: &DoctorArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    progress: &mut Progress,
) -> u8 {
    let report = match tandem_kube::connect(&args.cluster).await {
        Err(e) => Err(e),
        Ok(client) => {
            if let Some(wait) = args.tandem.wait {
                let mut last = Vec::new();
                crate::tandem_checks::wait_healthy(&client, &args.tandem.target, wait, |f| {
                    if f != last.as_slice() {
                        let _ =
                            writeln!(err, "tandem doctor: waiting for tandem: {}", f.join(", "));
                        last = f.iter().map(|s| s.to_string()).collect();
                    }
                })
                .await;
            }
            diagnose(&client, args, progress).await
        }
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            progress.finish();
            let c = Check::new("cluster", "The doctor can reach the cluster", Status::Error, format!("{e}"))
                .hint("check --kubeconfig / --context / $KUBECONFIG, and that the API server is up (`kubectl version`)");
            let mut r = Report::new(vec![c]);
            r.exit_code = 2;
            if args.output == OutputFormat::Text {
                let _ = writeln!(err, "tandem doctor: cannot run: {e}");
                return 2;
            }
            r
        }
    };
    let written = match args.output {
        OutputFormat::Text => out.write_all(report.to_text().as_bytes()),
        OutputFormat::Json => serde_json::to_string_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|s| writeln!(out, "{s}")),
    };
    match written {
        // `tandem doctor | head`: the reader is gone; end quietly.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            let _ = writeln!(err, "tandem doctor: writing the report: {e}");
            return 2;
        }
        Ok(()) => {}
    }
    report.exit_code
}

/// Runs `tandem doctor` on a new tokio runtime with the process's stdout/stderr.
pub fn run(args: &DoctorArgs) -> u8 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tandem doctor: cannot start the async runtime: {e}");
            return 2;
        }
    };
    let mut progress = Progress::stderr(false);
    rt.block_on(run_async(
        args,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
        &mut progress,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DoctorArgs,
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "doctor",
            "-n",
            "shop",
            "--probe-label",
            "app=web",
            "-o",
            "json",
            "--context",
            "prod",
        ])
        .unwrap();
        assert_eq!(cli.args.probe_namespace(), "shop");
        assert_eq!(cli.args.pods_scope(), Some("shop"));
        assert_eq!(cli.args.output, OutputFormat::Json);
        assert_eq!(cli.args.cluster.context.as_deref(), Some("prod"));
        assert_eq!(
            cli.args.probe_labels().get("app").map(String::as_str),
            Some("web")
        );
        assert!(Cli::try_parse_from(["doctor", "--probe-label", "nolabel"]).is_err());
    }

    #[tokio::test]
    async fn no_cluster_exits_2() {
        let cli = Cli::try_parse_from([
            "doctor",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "-o",
            "json",
        ])
        .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut p = Progress::stderr(true);
        let code = run_async(&cli.args, &mut out, &mut err, &mut p).await;
        assert_eq!(code, 2);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["exitCode"], 2);
        assert_eq!(v["checks"][0]["id"], "cluster");
        let cli =
            Cli::try_parse_from(["doctor", "--kubeconfig", "/nonexistent/kubeconfig"]).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run_async(&cli.args, &mut out, &mut err, &mut p).await, 2);
        assert!(String::from_utf8(err).unwrap().contains("cannot run"));
    }
}
