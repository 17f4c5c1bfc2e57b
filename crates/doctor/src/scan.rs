//! Reading the nodes of a cluster into [`NodeObservation`]s: list them, then read the
//! gate metric of the ones where it can change the verdict, with a progress line on a
//! terminal. Shared by the doctor and the labeller.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};
use tandem_kube::nodes::{self, GateProbe, NodeGate};
use tandem_kube::{Access, KubeError};

use crate::checks::{NodeObservation, metric_matters};

/// When to read a node's `SidecarContainers` metric through `nodes/proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum NodeMetrics {
    /// Only where it can change the verdict (kubelets 1.28 to 1.32, or of unknown
    /// version): older ones lack the field, newer ones have the gate locked on.
    #[default]
    Auto,
    /// On every node.
    Always,
    /// Never (versions and labels decide).
    Never,
}

/// How nodes are scanned.
#[derive(Debug, Clone, Default)]
pub struct NodeScan {
    /// Label selector for the nodes to look at.
    pub selector: Option<String>,
    /// Which metrics to read.
    pub metrics: NodeMetrics,
    /// Concurrency and per-node timeout.
    pub probe: GateProbe,
}

/// A progress line on stderr, only when stderr is a terminal.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    last: Option<Instant>,
    shown: bool,
}

impl Progress {
    /// A progress line if stderr is a terminal (and `quiet` is false).
    pub fn stderr(quiet: bool) -> Self {
        Self {
            enabled: !quiet && std::io::stderr().is_terminal(),
            last: None,
            shown: false,
        }
    }

    /// Shows `what: done/total`, at most ten times a second.
    pub fn update(&mut self, what: &str, done: usize, total: usize) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if done < total
            && self
                .last
                .is_some_and(|l| now.duration_since(l) < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        self.shown = true;
        let _ = write!(std::io::stderr(), "\r\x1b[2K{what}: {done}/{total}");
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.shown = false;
        }
    }
}

/// A node as the scan saw it: what was observed, and its annotations (for `label-nodes`).
#[derive(Debug, Clone)]
pub struct ScannedNode {
    /// What was observed.
    pub observation: NodeObservation,
    /// The Node's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Lists the nodes and reads the metrics that matter. Returns what was observed of
/// each, in list order. Each Node object is reduced to its facts as its page arrives,
/// so that memory follows the facts, not the objects (issue 14: 10,000 nodes).
pub async fn scan_nodes(
    client: &Client,
    scan: &NodeScan,
    progress: &mut Progress,
) -> Result<Vec<ScannedNode>, KubeError> {
    let api: Api<Node> = Api::all(client.clone());
    let mut params = ListParams::default();
    if let Some(s) = &scan.selector {
        params = params.labels(s);
    }
    progress.update("listing nodes", 0, 1);
    let mut out = Vec::new();
    tandem_kube::cluster::list_each(&api, Access::new("list", "nodes"), params, |node| {
        out.push(scanned(node))
    })
    .await?;
    out.shrink_to_fit();
    let wanted: Vec<usize> = (0..out.len())
        .filter(|&i| match scan.metrics {
            NodeMetrics::Never => false,
            NodeMetrics::Always => true,
            NodeMetrics::Auto => metric_matters(out[i].observation.facts.kubelet.as_ref()),
        })
        .collect();
    if !wanted.is_empty() {
        let names: Vec<String> = wanted
            .iter()
            .map(|&i| out[i].observation.facts.name.clone())
            .collect();
        let gates = nodes::read_gates(client, &names, scan.probe, &mut |done, total| {
            progress.update("reading node metrics", done, total)
        })
        .await;
        for (i, gate) in wanted.into_iter().zip(gates) {
            out[i].observation.metric = Some(gate);
        }
    }
    progress.finish();
    Ok(out)
}

/// One listed Node, reduced to what the checks read.
fn scanned(node: Node) -> ScannedNode {
    let facts = nodes::facts(&node).unwrap_or_else(|e| {
        // An unreadable version: keep the node, version unknown.
        tracing::warn!("{e}");
        tandem_core::knowledge::NodeFacts {
            name: node.metadata.name.clone().unwrap_or_default(),
            kubelet: None,
            gate: None,
            labels: node.metadata.labels.clone().unwrap_or_default().into(),
            taints: Vec::new(),
        }
    });
    let ready = nodes::is_ready(&node);
    ScannedNode {
        observation: NodeObservation {
            facts,
            metric: None,
            ready,
        },
        annotations: node.metadata.annotations.unwrap_or_default(),
    }
}

/// The namespaces the webhook check probes: `first` (`-n`), then every namespace labelled
/// `tandem.dev/inject: enabled` that is not being deleted, in name order. The second value notes why the opted-in
/// namespaces could not be listed, if they could not (only `first` is probed then).
pub async fn probe_namespaces(client: &Client, first: &str) -> (Vec<String>, Option<String>) {
    use k8s_openapi::api::core::v1::Namespace;
    use tandem_core::names::INJECT_LABEL;
    let api: Api<Namespace> = Api::all(client.clone());
    let mut out = vec![first.to_string()];
    match tandem_kube::cluster::list_all(
        &api,
        Access::new("list", "namespaces"),
        ListParams::default().labels(&format!("{INJECT_LABEL}=enabled")),
    )
    .await
    {
        Ok(list) => {
            // A namespace being deleted refuses every create, the probe's too.
            let mut names: Vec<String> = list
                .into_iter()
                .filter(|n| {
                    n.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
                })
                .filter_map(|n| n.metadata.name)
                .filter(|n| n != first)
                .collect();
            names.sort();
            out.extend(names);
            (out, None)
        }
        Err(e) => (
            out,
            Some(format!(
                "namespaces opted in with {INJECT_LABEL}=enabled not listed ({e}): probed {first} only"
            )),
        ),
    }
}

/// The metric reading of an observation, when it was read.
pub fn reading(o: &NodeObservation) -> Option<&tandem_core::metrics_text::GateReading> {
    match &o.metric {
        Some(NodeGate::Read { reading }) => Some(reading),
        _ => None,
    }
}
