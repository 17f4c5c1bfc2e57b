//! `tandem label-nodes`: sets `tandem.dev/native-sidecars=true|false` on nodes, with an
//! evidence annotation, using merge patches on those two keys only. `--once` for a
//! one-shot run, `--dry-run` to print what would change, otherwise a controller that
//! follows node changes (a kubelet upgrade flips the label).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde::Serialize;
use tandem_kube::nodes::{GateProbe, NodeGate};
use tandem_kube::{Access, ClusterArgs, KubeError};

use crate::checks::{NodeObservation, metric_matters};
use crate::labels::{self, Change};
use crate::output::OutputFormat;
use crate::scan::{self, NodeMetrics, NodeScan, Progress};

/// Field manager of the patches.
pub const FIELD_MANAGER: &str = "tandem-label-nodes";

/// Flags of `tandem label-nodes`.
#[derive(Debug, Clone, clap::Args)]
pub struct LabelNodesArgs {
    /// Which cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Label every node once and exit (default: run as a controller).
    #[arg(long)]
    pub once: bool,
    /// Print what would change and change nothing (implies --once).
    #[arg(long)]
    pub dry_run: bool,
    /// Only nodes matching this label selector.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// When to read each kubelet's SidecarContainers metric (needs get nodes/proxy).
    #[arg(long, value_enum, default_value_t = NodeMetrics::Auto)]
    pub node_metrics: NodeMetrics,
    /// How many nodes' metrics are read at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// How long each node gets to answer (`5s`; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "5s",
          value_parser = tandem_core::config::duration_text::parse_flag)]
    pub node_timeout: Duration,
    /// Controller: time between re-checks of a node that did not change (`10m`; a bare
    /// number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "10m",
          value_parser = tandem_core::config::duration_text::parse_flag)]
    pub resync: Duration,
    /// Output format of --once / --dry-run.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

impl LabelNodesArgs {
    fn scan(&self) -> NodeScan {
        NodeScan {
            selector: self.selector.clone(),
            metrics: self.node_metrics,
            probe: GateProbe {
                concurrency: self.concurrency.max(1),
                timeout: self.node_timeout.max(Duration::from_secs(1)),
            },
        }
    }
}

/// What a one-shot run did (the JSON of `-o json`).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelReport {
    /// Always 1 for this layout.
    pub schema_version: u32,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Nodes looked at.
    pub nodes: usize,
    /// Changes made (or that would be made).
    pub changes: Vec<Change>,
    /// Nodes left alone because nothing is known about them.
    pub unknown: Vec<String>,
    /// Patches that failed.
    pub failed: Vec<FailedPatch>,
}

/// A node whose patch failed.
#[derive(Debug, Clone, Serialize)]
pub struct FailedPatch {
    /// The node.
    pub node: String,
    /// The error.
    pub error: String,
}

fn desired_for(o: &NodeObservation) -> Option<labels::Desired> {
    labels::desired(o.facts.kubelet.as_ref(), scan::reading(o))
}

async fn patch(client: &Client, change: &Change) -> Result<(), KubeError> {
    let api: Api<Node> = Api::all(client.clone());
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch(
        &change.node,
        &pp,
        &Patch::Merge(labels::merge_patch(change)),
    )
    .await
    .map(|_| ())
    .map_err(|e| KubeError::from_kube(Access::new("patch", "nodes"), e))
}

/// One pass over every node: compute, patch (unless a dry run), report.
pub async fn label_once(
    client: &Client,
    args: &LabelNodesArgs,
    progress: &mut Progress,
) -> Result<LabelReport, KubeError> {
    let observed = scan::scan_nodes(client, &args.scan(), progress).await?;
    let mut report = LabelReport {
        schema_version: 1,
        dry_run: args.dry_run,
        nodes: observed.len(),
        ..Default::default()
    };
    for scan::ScannedNode {
        observation: o,
        annotations,
    } in &observed
    {
        let Some(want) = desired_for(o) else {
            report.unknown.push(o.facts.name.clone());
            continue;
        };
        if let Some(change) =
            labels::plan(&o.facts.name, &o.facts.labels.to_map(), annotations, &want)
        {
            if !args.dry_run
                && let Err(e) = patch(client, &change).await
            {
                if e.forbidden().is_some() || e.is_fatal() {
                    return Err(e);
                }
                report.failed.push(FailedPatch {
                    node: change.node.clone(),
                    error: e.to_string(),
                });
                continue;
            }
            report.changes.push(change);
        }
    }
    Ok(report)
}

/// The text of a one-shot report.
pub fn render_text(r: &LabelReport) -> String {
    let mut s = String::new();
    let verb = if r.dry_run { "would set" } else { "set" };
    for c in &r.changes {
        let head = format!(
            "node {}: {verb} {}={} (was {})",
            c.node,
            tandem_core::names::NODE_LABEL,
            c.to,
            c.from.as_deref().unwrap_or("unset")
        );
        s.push_str(&crate::text::wrap_first(&head, "", "    "));
        s.push_str(&crate::text::wrap(&c.evidence, "    "));
    }
    for n in &r.unknown {
        s.push_str(&crate::text::wrap(
            &format!("node {n}: left alone: kubelet version unknown and no metric"),
            "",
        ));
    }
    for FailedPatch { node: n, error: e } in &r.failed {
        s.push_str(&crate::text::wrap_first(
            &format!("node {n}: patch failed: {e}"),
            "× ",
            "    ",
        ));
    }
    s.push_str(&format!(
        "{} {} of {} nodes{}\n",
        if r.dry_run { "would change" } else { "changed" },
        r.changes.len(),
        r.nodes,
        if r.failed.is_empty() {
            String::new()
        } else {
            format!(", {} failed", r.failed.len())
        }
    ));
    s
}

struct Ctx {
    client: Client,
    probe: GateProbe,
    metrics: NodeMetrics,
    resync: Duration,
}

/// Errors of the controller's reconcile.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReconcileError(#[from] KubeError);

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let facts = match tandem_kube::nodes::facts(&node) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("{e}");
            return Ok(Action::requeue(ctx.resync));
        }
    };
    let read = match ctx.metrics {
        NodeMetrics::Never => false,
        NodeMetrics::Always => true,
        NodeMetrics::Auto => metric_matters(facts.kubelet.as_ref()),
    };
    let metric = if read {
        Some(
            tandem_kube::nodes::read_gates(
                &ctx.client,
                std::slice::from_ref(&name),
                ctx.probe,
                &mut |_, _| {},
            )
            .await
            .pop()
            .unwrap_or(NodeGate::Absent),
        )
    } else {
        None
    };
    let o = NodeObservation {
        facts,
        metric,
        ready: true,
    };
    let Some(want) = desired_for(&o) else {
        return Ok(Action::requeue(ctx.resync));
    };
    let annotations = node.metadata.annotations.clone().unwrap_or_default();
    if let Some(change) = labels::plan(&name, &o.facts.labels.to_map(), &annotations, &want) {
        patch(&ctx.client, &change).await?;
        tracing::info!(node = %name, from = ?change.from, to = %change.to, "labelled: {}", change.evidence);
    }
    Ok(Action::requeue(ctx.resync))
}

fn error_policy(node: Arc<Node>, err: &ReconcileError, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(node = ?node.metadata.name, "labelling failed: {err}");
    Action::requeue(Duration::from_secs(15))
}

/// Runs the controller until SIGINT/SIGTERM.
pub async fn run_controller(client: Client, args: &LabelNodesArgs) {
    let api: Api<Node> = Api::all(client.clone());
    let mut wc = watcher::Config::default();
    if let Some(s) = &args.selector {
        wc = wc.labels(s);
    }
    let scan = args.scan();
    let ctx = Arc::new(Ctx {
        client,
        probe: scan.probe,
        metrics: scan.metrics,
        resync: args.resync.max(Duration::from_secs(10)),
    });
    Controller::new(api, wc)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!("reconcile: {e}");
            }
        })
        .await;
}

/// Runs `tandem label-nodes` and returns the exit code: 0 done, 1 some patches failed,
/// 2 could not run (no cluster, no permission).
pub async fn run_async(args: &LabelNodesArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let client = match tandem_kube::connect(&args.cluster).await {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "tandem label-nodes: {e}");
            return 2;
        }
    };
    if !(args.once || args.dry_run) {
        // The controller reports through tracing: log to stderr unless the binary set up
        // its own subscriber (RUST_LOG overrides the level).
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .try_init();
        let _ = writeln!(
            err,
            "tandem label-nodes: following node changes (Ctrl-C to stop)"
        );
        run_controller(client, args).await;
        return 0;
    }
    let mut progress = Progress::stderr(false);
    match label_once(&client, args, &mut progress).await {
        Err(e) => {
            let _ = writeln!(err, "tandem label-nodes: {e}");
            if let Some(a) = e.forbidden() {
                let _ = writeln!(err, "  needs: {a} (check with `{}`)", a.can_i());
            }
            2
        }
        Ok(report) => {
            let code = u8::from(!report.failed.is_empty());
            let _ = match args.output {
                OutputFormat::Text => out.write_all(render_text(&report).as_bytes()),
                OutputFormat::Json => serde_json::to_string_pretty(&report)
                    .map_err(std::io::Error::other)
                    .and_then(|s| writeln!(out, "{s}")),
            };
            code
        }
    }
}

/// Runs `tandem label-nodes` on a new tokio runtime; returns the exit code.
pub fn run(args: &LabelNodesArgs) -> u8 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tandem label-nodes: cannot start the async runtime: {e}");
            return 2;
        }
    };
    rt.block_on(run_async(
        args,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_report() {
        let r = LabelReport {
            schema_version: 1,
            dry_run: true,
            nodes: 3,
            changes: vec![Change {
                node: "n1".into(),
                from: None,
                to: "true".into(),
                evidence: "runs-sidecars: kubelet v1.30.0: the gate is at its default, native sidecars run".into(),
            }],
            unknown: vec!["n3".into()],
            failed: vec![],
        };
        let t = render_text(&r);
        assert!(
            t.contains("node n1: would set tandem.dev/native-sidecars=true (was unset)"),
            "{t}"
        );
        assert!(t.contains("would change 1 of 3 nodes"), "{t}");
        assert!(t.contains("node n3: left alone"));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["changes"][0]["to"], "true");
        assert_eq!(v["dryRun"], true);
    }
}
