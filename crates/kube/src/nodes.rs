//! Nodes: listing them into [`NodeFacts`], and reading each kubelet's
//! `SidecarContainers` metric through `/api/v1/nodes/NAME/proxy/metrics` with bounded
//! concurrency and a per-node timeout, so that thousands of nodes (some slow or dead)
//! never hang a run.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};
use serde::Serialize;
use tandem_core::knowledge::{NodeError, NodeFacts};
use tandem_core::metrics_text::{self, GateReading, SIDECAR_GATE};
use tokio::task::JoinSet;

use crate::cluster::{get_text, list_all};
use crate::error::{Access, KubeError};

/// Every Node object (paginated).
pub async fn list_nodes(client: &Client) -> Result<Vec<Node>, KubeError> {
    let api: Api<Node> = Api::all(client.clone());
    list_all(&api, Access::new("list", "nodes"), ListParams::default()).await
}

/// The facts tandem-core reads from a Node object.
pub fn facts(node: &Node) -> Result<NodeFacts, NodeError> {
    let value = serde_json::to_value(node).map_err(|e| NodeError {
        name: node.metadata.name.clone().unwrap_or_default(),
        problem: e.to_string(),
    })?;
    NodeFacts::from_node(&value)
}

/// Whether a node's `Ready` condition is `True`.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// How node metrics are read.
#[derive(Debug, Clone, Copy)]
pub struct GateProbe {
    /// At most this many nodes are asked at once.
    pub concurrency: usize,
    /// Each node gets this long to answer.
    pub timeout: Duration,
}

impl Default for GateProbe {
    fn default() -> Self {
        Self {
            concurrency: 32,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What one node's metric said.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum NodeGate {
    /// The series was found.
    Read {
        /// The reading (value, stage and the line itself).
        #[serde(serialize_with = "ser_reading")]
        reading: GateReading,
    },
    /// The metrics were read but carry no `SidecarContainers` series.
    Absent,
    /// The node did not answer in time.
    Timeout,
    /// Reading failed (node unreachable through the proxy, kubelet down, …).
    Failed {
        /// What happened.
        message: String,
    },
    /// The identity may not use `nodes/proxy`.
    Forbidden,
}

fn ser_reading<S: serde::Serializer>(r: &GateReading, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("GateReading", 3)?;
    st.serialize_field("enabled", &r.enabled)?;
    st.serialize_field("stage", &r.stage)?;
    st.serialize_field("line", &r.line)?;
    st.end()
}

impl NodeGate {
    /// The gate's value when it was read.
    pub fn enabled(&self) -> Option<bool> {
        match self {
            NodeGate::Read { reading } => Some(reading.enabled),
            _ => None,
        }
    }
}

/// The access that reading a node's metrics needs.
pub fn proxy_access() -> Access {
    Access::new("get", "nodes/proxy")
}

async fn read_one(client: Client, name: String, timeout: Duration) -> NodeGate {
    let path = format!("/api/v1/nodes/{name}/proxy/metrics");
    match tokio::time::timeout(timeout, get_text(&client, &path, proxy_access())).await {
        Err(_) => NodeGate::Timeout,
        Ok(Ok(text)) => match metrics_text::feature_gate(&text, SIDECAR_GATE) {
            Some(reading) => NodeGate::Read { reading },
            None => NodeGate::Absent,
        },
        Ok(Err(KubeError::Forbidden { .. })) => NodeGate::Forbidden,
        Ok(Err(e)) => NodeGate::Failed {
            message: short(&e.to_string()),
        },
    }
}

fn short(text: &str) -> String {
    const MAX: usize = 160;
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > MAX {
        let cut: String = line.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

/// Reads every named node's gate, `probe.concurrency` at a time, each bounded by
/// `probe.timeout`. The first node is asked alone: if `nodes/proxy` is forbidden, the
/// rest are not tried (RBAC does not differ per node) and all are `Forbidden`.
/// `progress(done, total)` is called as answers arrive. Results keep the input order.
pub async fn read_gates(
    client: &Client,
    names: &[String],
    probe: GateProbe,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Vec<NodeGate> {
    let total = names.len();
    let mut out: Vec<Option<NodeGate>> = vec![None; total];
    let Some(first) = names.first() else {
        return Vec::new();
    };
    let first_gate = read_one(client.clone(), first.clone(), probe.timeout).await;
    progress(1, total);
    if first_gate == NodeGate::Forbidden {
        return vec![NodeGate::Forbidden; total];
    }
    out[0] = Some(first_gate);
    let limit = probe.concurrency.max(1);
    let mut done = 1;
    let mut tasks = JoinSet::new();
    let mut next = 1;
    while next < total || !tasks.is_empty() {
        while next < total && tasks.len() < limit {
            let (client, name, i) = (client.clone(), names[next].clone(), next);
            tasks.spawn(async move { (i, read_one(client, name, probe.timeout).await) });
            next += 1;
        }
        match tasks.join_next().await {
            Some(Ok((i, gate))) => {
                out[i] = Some(gate);
                done += 1;
                progress(done, total);
            }
            Some(Err(e)) => {
                // A panicked or cancelled task: its slot stays empty and is reported below.
                tracing::warn!("node metric task failed: {e}");
                done += 1;
            }
            None => break,
        }
    }
    out.into_iter()
        .map(|g| {
            g.unwrap_or(NodeGate::Failed {
                message: "reading the metric did not finish".into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut() {
        let long = "x".repeat(500) + "\nsecond line";
        let s = short(&long);
        assert!(s.chars().count() <= 161);
        assert!(!s.contains("second"));
    }

    #[test]
    fn gate_json() {
        let g = NodeGate::Read {
            reading: GateReading {
                enabled: true,
                stage: "BETA".into(),
                line: "l".into(),
            },
        };
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v["result"], "read");
        assert_eq!(v["reading"]["enabled"], true);
        assert_eq!(
            serde_json::to_value(NodeGate::Timeout).unwrap()["result"],
            "timeout"
        );
        assert_eq!(g.enabled(), Some(true));
    }
}
