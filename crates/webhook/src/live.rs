//! Live cluster knowledge for `auto`: a watch-backed cache of Nodes and the API server's
//! version and `SidecarContainers` gate, kept off the admission path.
//!
//! An admission answer never waits on the API server: it reads the latest published
//! [`Snapshot`] (one `Arc` clone). Background tasks keep it current:
//! - a kube-rs `watcher` on Nodes (list + watch, with backoff) feeds a compact cache of
//!   [`NodeFacts`] — only what placement needs (versions, gate labels, labels, taints),
//!   not whole Node objects, so 5,000 nodes stay within a few MiB;
//! - a poller reads `/version` and `/metrics` (the gate; skipped gracefully when
//!   forbidden) every few minutes.
//!
//! Until the first full node list and the first version read, the snapshot is
//! unsynced and holds no knowledge, so `auto` takes the safe mode.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::Value;
use tandem_core::knowledge::{ApiServerFacts, Labels, NodeFacts, Taint};
use tandem_core::metrics_text::{SIDECAR_GATE, feature_gate};
use tandem_core::{ClusterKnowledge, KubeVersion};
use tokio::sync::watch;

/// What the webhook knows at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The knowledge handed to the injector (empty until synced).
    pub knowledge: Arc<ClusterKnowledge>,
    /// True once the node cache has listed every node and the API server was read.
    pub synced: bool,
}

/// A handle on the latest [`Snapshot`]; cheap to clone and to read.
#[derive(Debug, Clone)]
pub struct LiveKnowledge {
    rx: watch::Receiver<Arc<Snapshot>>,
    /// Unix millis of the last node watch event (-1: none yet).
    last_event: Arc<AtomicI64>,
    /// Unix millis of the last API server read (-1: none yet).
    last_apiserver: Arc<AtomicI64>,
}

impl LiveKnowledge {
    /// Fixed knowledge (no cluster, or `--nodes`): never changes.
    pub fn fixed(knowledge: ClusterKnowledge, synced: bool) -> Self {
        // Index the nodes now rather than on the first pod's request, and hand back
        // what building it took.
        let _ = knowledge.node_index();
        crate::work::release_memory();
        let (_tx, rx) = watch::channel(Arc::new(Snapshot {
            knowledge: Arc::new(knowledge),
            synced,
        }));
        let now = if synced { unix_millis() } else { -1 };
        Self {
            rx,
            last_event: Arc::new(AtomicI64::new(now)),
            last_apiserver: Arc::new(AtomicI64::new(now)),
        }
    }

    /// Starts watching `client`'s cluster; the returned handle is unsynced at first.
    /// The tasks stop when every handle is dropped.
    pub fn watch(client: Client, apiserver_every: Duration) -> Self {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let live = Self {
            rx,
            last_event: Arc::new(AtomicI64::new(-1)),
            last_apiserver: Arc::new(AtomicI64::new(-1)),
        };
        let shared = Arc::new(Shared {
            tx,
            parts: Mutex::new(Parts::default()),
        });
        tokio::spawn(watch_nodes(
            client.clone(),
            shared.clone(),
            live.last_event.clone(),
        ));
        tokio::spawn(poll_apiserver(
            client,
            shared,
            live.last_apiserver.clone(),
            apiserver_every,
        ));
        live
    }

    /// The latest snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.rx.borrow().clone()
    }

    /// Seconds since the last node watch event, or `None` before the first.
    pub fn node_age(&self) -> Option<f64> {
        age(self.last_event.load(Ordering::Relaxed))
    }

    /// Seconds since the API server was last read, or `None` if never.
    pub fn apiserver_age(&self) -> Option<f64> {
        age(self.last_apiserver.load(Ordering::Relaxed))
    }

    /// Waits until the snapshot is synced (for tests and tools).
    pub async fn wait_synced(&mut self) {
        let _ = self.rx.wait_for(|s| s.synced).await;
    }
}

fn age(millis: i64) -> Option<f64> {
    (millis >= 0).then(|| (unix_millis() - millis).max(0) as f64 / 1000.0)
}

fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The knowledge being built. `knowledge` (nodes sorted by name) is the same `Arc` as the
/// published snapshot's, so 5,000 nodes are held once; a change copies it only when
/// readers still hold the published one (`Arc::make_mut`), and the old copy goes away
/// with its last reader.
#[derive(Default)]
struct Parts {
    knowledge: Arc<ClusterKnowledge>,
    nodes_synced: bool,
    apiserver_known: bool,
}

struct Shared {
    tx: watch::Sender<Arc<Snapshot>>,
    parts: Mutex<Parts>,
}

impl Shared {
    fn publish(&self) {
        let snapshot = {
            let parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
            if !(parts.nodes_synced && parts.apiserver_known) {
                return;
            }
            // Index the nodes here, once per change, rather than on a pod's request.
            let _ = parts.knowledge.node_index();
            Snapshot {
                knowledge: parts.knowledge.clone(),
                synced: true,
            }
        };
        self.tx.send_replace(Arc::new(snapshot));
        // The index's building and the replaced snapshot (once its readers are done)
        // leave freed memory: hand it back.
        crate::work::release_memory();
    }
}

impl Parts {
    /// Inserts or replaces a node; false when nothing changed.
    fn apply(&mut self, facts: NodeFacts) -> bool {
        match self
            .knowledge
            .nodes
            .binary_search_by(|n| n.name.as_str().cmp(&facts.name))
        {
            Ok(i) if self.knowledge.nodes[i] == facts => false,
            Ok(i) => {
                let k = Arc::make_mut(&mut self.knowledge);
                k.nodes[i] = facts;
                k.nodes_changed();
                true
            }
            Err(i) => {
                let k = Arc::make_mut(&mut self.knowledge);
                k.nodes.insert(i, facts);
                k.nodes_changed();
                true
            }
        }
    }

    fn delete(&mut self, name: &str) -> bool {
        match self
            .knowledge
            .nodes
            .binary_search_by(|n| n.name.as_str().cmp(name))
        {
            Ok(i) => {
                let k = Arc::make_mut(&mut self.knowledge);
                k.nodes.remove(i);
                k.nodes_changed();
                true
            }
            Err(_) => false,
        }
    }

    fn replace_all(&mut self, mut nodes: Vec<NodeFacts>) {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
        self.knowledge = Arc::new(ClusterKnowledge {
            apiserver: self.knowledge.apiserver.clone(),
            nodes,
            nodes_have_labels: true,
            ..Default::default()
        });
    }
}

/// A Node's facts; a kubelet version that doesn't parse counts as unknown.
pub fn node_facts(node: &Value) -> NodeFacts {
    NodeFacts::from_node(node).unwrap_or_else(|_| {
        let mut n = node.clone();
        if let Some(info) = n
            .pointer_mut("/status/nodeInfo")
            .and_then(Value::as_object_mut)
        {
            info.remove("kubeletVersion");
        }
        if let Some(o) = n.as_object_mut() {
            o.remove("kind");
        }
        NodeFacts::from_node(&n).unwrap_or_else(|_| NodeFacts {
            name: node
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            kubelet: None,
            gate: None,
            labels: Labels::default(),
            taints: Vec::new(),
        })
    })
}

async fn watch_nodes(client: Client, shared: Arc<Shared>, last_event: Arc<AtomicI64>) {
    let api: Api<Node> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default().page_size(250))
        .default_backoff()
        .boxed();
    let mut pending: Vec<NodeFacts> = Vec::new();
    let mut dirty = false;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = stream.next() => {
                let Some(ev) = ev else { break };
                if shared.tx.is_closed() {
                    break;
                }
                last_event.store(unix_millis(), Ordering::Relaxed);
                match ev {
                    Ok(Event::Init) => pending.clear(),
                    Ok(Event::InitApply(node)) => pending.push(to_facts(&node)),
                    Ok(Event::InitDone) => {
                        let mut parts = shared.parts.lock().unwrap_or_else(|p| p.into_inner());
                        parts.replace_all(std::mem::take(&mut pending));
                        let first = !parts.nodes_synced;
                        parts.nodes_synced = true;
                        if first {
                            tracing::info!(nodes = parts.knowledge.nodes.len(), "node cache synced");
                        }
                        drop(parts);
                        // The listed Node objects are gone: hand their memory back.
                        crate::work::release_memory();
                        dirty = true;
                    }
                    Ok(Event::Apply(node)) => {
                        let facts = to_facts(&node);
                        let mut parts = shared.parts.lock().unwrap_or_else(|p| p.into_inner());
                        dirty |= parts.apply(facts);
                    }
                    Ok(Event::Delete(node)) => {
                        let name = node.metadata.name.unwrap_or_default();
                        let mut parts = shared.parts.lock().unwrap_or_else(|p| p.into_inner());
                        dirty |= parts.delete(&name);
                    }
                    Err(e) => tracing::warn!(error = %e, "node watch failed; retrying with backoff"),
                }
            }
            _ = tick.tick() => {
                if shared.tx.is_closed() {
                    break;
                }
                if dirty {
                    dirty = false;
                    shared.publish();
                }
            }
        }
    }
}

/// A watched Node's facts, read from the typed object (no JSON copy of it).
fn to_facts(node: &Node) -> NodeFacts {
    let labels: Labels = node
        .metadata
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let kubelet = node
        .status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.kubelet_version.as_str());
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|ts| {
            ts.iter()
                .map(|t| Taint {
                    key: t.key.clone(),
                    value: t.value.clone().unwrap_or_default(),
                    effect: t.effect.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    NodeFacts::from_parts(
        node.metadata.name.clone().unwrap_or_default(),
        labels,
        kubelet,
        taints,
    )
}

async fn poll_apiserver(
    client: Client,
    shared: Arc<Shared>,
    last: Arc<AtomicI64>,
    every: Duration,
) {
    let mut warned_metrics = false;
    let mut delay = Duration::from_secs(1);
    loop {
        if shared.tx.is_closed() {
            break;
        }
        match read_apiserver(&client, &mut warned_metrics).await {
            Ok(facts) => {
                last.store(unix_millis(), Ordering::Relaxed);
                let changed = {
                    let mut parts = shared.parts.lock().unwrap_or_else(|p| p.into_inner());
                    let changed = !parts.apiserver_known || parts.knowledge.apiserver != facts;
                    if changed {
                        Arc::make_mut(&mut parts.knowledge).apiserver = facts;
                    }
                    parts.apiserver_known = true;
                    changed
                };
                if changed {
                    shared.publish();
                }
                delay = every;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the API server's version failed; retrying");
                delay = (delay * 2).min(every).max(Duration::from_secs(1));
            }
        }
        tokio::time::sleep(delay).await;
    }
}

/// Reads the API server's version and, where `/metrics` is readable, its
/// `SidecarContainers` gate.
pub async fn read_apiserver(
    client: &Client,
    warned: &mut bool,
) -> Result<ApiServerFacts, kube::Error> {
    let info = client.apiserver_version().await?;
    let version = KubeVersion::parse(&info.git_version).ok();
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    let gate = match client.request_text(req).await {
        Ok(text) => feature_gate(&text, SIDECAR_GATE).map(|r| r.enabled),
        Err(e) => {
            if !*warned {
                tracing::info!(error = %e, "cannot read the API server's /metrics; the SidecarContainers gate is judged from the version alone");
                *warned = true;
            }
            None
        }
    };
    Ok(ApiServerFacts { version, gate })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_versions_become_unknown() {
        let n = node_facts(
            &json!({"kind": "Node", "metadata": {"name": "x", "labels": {"a": "b"}},
            "status": {"nodeInfo": {"kubeletVersion": "banana"}}}),
        );
        assert_eq!(n.name, "x");
        assert!(n.kubelet.is_none());
        assert_eq!(n.labels.get("a"), Some("b"));
    }

    fn facts(name: &str, version: &str) -> NodeFacts {
        node_facts(&json!({"kind": "Node", "metadata": {"name": name},
            "status": {"nodeInfo": {"kubeletVersion": version}}}))
    }

    #[test]
    fn parts_keep_nodes_sorted_and_copy_only_when_shared() {
        let mut p = Parts::default();
        p.replace_all(vec![
            facts("b", "v1.30.0"),
            facts("a", "v1.28.0"),
            facts("b", "v1.30.0"),
        ]);
        assert_eq!(p.knowledge.nodes.len(), 2);
        assert!(!p.apply(facts("a", "v1.28.0")), "unchanged");
        let published = p.knowledge.clone();
        assert!(p.apply(facts("c", "v1.33.0")));
        assert!(p.apply(facts("a", "v1.29.0")));
        assert_eq!(published.nodes.len(), 2, "readers keep their snapshot");
        let names: Vec<&str> = p.knowledge.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(p.delete("b"));
        assert!(!p.delete("zz"));
        assert_eq!(p.knowledge.nodes.len(), 2);
    }

    #[test]
    fn typed_nodes_read_as_their_json_does() {
        let json = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "labels": {"zone": "a", "tandem.dev/native-sidecars": "false"}},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"nodeInfo": {"kubeletVersion": "v1.29.4", "architecture": "", "bootID": "",
                "containerRuntimeVersion": "", "kernelVersion": "", "kubeProxyVersion": "",
                "machineID": "", "operatingSystem": "", "osImage": "", "systemUUID": ""}}});
        let typed: Node = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(to_facts(&typed), node_facts(&json));
        let bad: Node = serde_json::from_value(json!({"metadata": {"name": "b"},
            "status": {"nodeInfo": {"kubeletVersion": "banana", "architecture": "", "bootID": "",
                "containerRuntimeVersion": "", "kernelVersion": "", "kubeProxyVersion": "",
                "machineID": "", "operatingSystem": "", "osImage": "", "systemUUID": ""}}}))
        .unwrap();
        assert!(to_facts(&bad).kubelet.is_none());
    }

    #[tokio::test]
    async fn fixed_knowledge_reads_back() {
        let live = LiveKnowledge::fixed(ClusterKnowledge::default(), true);
        assert!(live.current().synced);
        assert!(live.node_age().is_some());
        let unsynced = LiveKnowledge::fixed(ClusterKnowledge::default(), false);
        assert!(!unsynced.current().synced);
        assert!(unsynced.node_age().is_none());
    }
}
