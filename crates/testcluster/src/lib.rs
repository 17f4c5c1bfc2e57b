//! Test support for tandem's end-to-end tests.
//!
//! The control plane itself (etcd, kube-apiserver, kube-controller-manager, kube-scheduler
//! and kwok, all built from source) is run by the scripts in `e2e/cluster/`; this crate
//! connects to it through the state directory those scripts write (`e2e/.state` unless
//! `TANDEM_E2E_STATE` says otherwise), starting it with `up.sh` when it is not up yet.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tandem_testcluster::Error> {
//! let cluster = tandem_testcluster::TestCluster::connect().await?;
//! let client = cluster.client().await?;
//! let ns = cluster.namespace("demo").await?;
//! let node = cluster
//!     .create_node(&tandem_testcluster::FakeNode::new("old-node", "v1.28.15"))
//!     .await?;
//! // ... use `client` in `ns.name()` ...
//! ns.delete().await?;
//! cluster.delete_node(&node).await?;
//! # let _ = client;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount, Taint};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Label put on every namespace and node this crate creates, so leftovers can be found.
pub const MANAGED_LABEL: &str = "tandem.dev/e2e";
/// Annotation that makes kwok manage a node (matches `up.sh`'s kwok flags).
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// Everything that can go wrong while talking to the test control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file of the state directory or running a script failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A script of `e2e/cluster/` exited with an error.
    #[error("{script} failed ({status}); its output:\n{output}")]
    Script {
        /// The script that ran.
        script: String,
        /// How it exited.
        status: String,
        /// Its stdout and stderr, for the test log.
        output: String,
    },
    /// The kubeconfig written by `up.sh` could not be used.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Which kubeconfig.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A request to the API server failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        after: Duration,
    },
    /// The state directory holds something unexpected.
    #[error("state directory {dir}: {message}")]
    State {
        /// The state directory.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Serialises script runs (up/restart) inside one test binary.
static SCRIPT_LOCK: Mutex<()> = Mutex::new(());
/// Makes generated names unique within one process.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A handle on the running test control plane.
#[derive(Debug, Clone)]
pub struct TestCluster {
    e2e_dir: PathBuf,
    state_dir: PathBuf,
    env: HashMap<String, String>,
}

impl TestCluster {
    /// Connects to the control plane whose state lives in `TANDEM_E2E_STATE` (default
    /// `e2e/.state`), running `e2e/cluster/up.sh` first when it is not up. `up.sh` is
    /// idempotent, so several test binaries may call this in turn; it builds missing
    /// binaries, which takes long on a cold machine (see `e2e/README.md`).
    ///
    /// Set `TANDEM_E2E_NO_START=1` to fail instead of starting a control plane.
    pub async fn connect() -> Result<Self> {
        install_crypto_provider();
        let e2e_dir = e2e_dir();
        let state_dir = std::env::var_os("TANDEM_E2E_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|| e2e_dir.join(".state"));
        let mut cluster = TestCluster {
            e2e_dir,
            state_dir,
            env: HashMap::new(),
        };
        let no_start = std::env::var("TANDEM_E2E_NO_START").is_ok_and(|v| v == "1");
        if !cluster.state_dir.join("cluster.env").is_file() || !cluster.is_ready().await {
            if no_start {
                return Err(Error::State {
                    dir: cluster.state_dir.clone(),
                    message: "no control plane is up and TANDEM_E2E_NO_START=1".into(),
                });
            }
            cluster.run_script("up.sh", &[]).await?;
        }
        cluster.reload_env()?;
        Ok(cluster)
    }

    /// The state directory (`TANDEM_E2E_STATE`).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Path of the admin kubeconfig (`system:masters`).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.state_dir.join("admin.kubeconfig")
    }

    /// Path of the restricted kubeconfig: user `tandem-e2e-restricted` in group
    /// `tandem:restricted`, bound to the built-in `view` role plus reading nodes; it cannot
    /// write, read secrets, or use `nodes/proxy`.
    pub fn restricted_kubeconfig(&self) -> PathBuf {
        self.state_dir.join("restricted.kubeconfig")
    }

    /// Path of the cluster CA certificate (PEM).
    pub fn ca_cert(&self) -> PathBuf {
        self.state_dir.join("pki").join("ca.crt")
    }

    /// The API server's URL, e.g. `https://127.0.0.1:26443`.
    pub fn server_url(&self) -> &str {
        self.env_value("TANDEM_E2E_SERVER")
    }

    /// The version of the kube-apiserver binary running now (e.g. `v1.36.3`).
    pub fn apiserver_version(&self) -> &str {
        self.env_value("TANDEM_E2E_APISERVER_VERSION")
    }

    /// The `--feature-gates` the running kube-apiserver was started with (may be empty).
    pub fn apiserver_feature_gates(&self) -> &str {
        self.env_value("TANDEM_E2E_APISERVER_FEATURE_GATES")
    }

    /// The current release (the one controller-manager and scheduler run).
    pub fn current_version(&self) -> &str {
        self.env_value("TANDEM_E2E_K8S_VERSION")
    }

    /// The older release whose kube-apiserver can still switch `SidecarContainers` off.
    pub fn old_version(&self) -> &str {
        self.env_value("TANDEM_E2E_K8S_OLD_VERSION")
    }

    fn env_value(&self, key: &str) -> &str {
        self.env.get(key).map(String::as_str).unwrap_or("")
    }

    /// A client with the admin identity. Create one per tokio runtime (per test).
    pub async fn client(&self) -> Result<Client> {
        client_from(&self.admin_kubeconfig()).await
    }

    /// A client with the restricted identity (see [`TestCluster::restricted_kubeconfig`]).
    pub async fn restricted_client(&self) -> Result<Client> {
        client_from(&self.restricted_kubeconfig()).await
    }

    /// Whether the API server answers `/readyz` with the admin identity.
    pub async fn is_ready(&self) -> bool {
        let Ok(client) = self.client().await else {
            return false;
        };
        matches!(get_text(&client, "/readyz").await, Ok(body) if body.trim() == "ok")
    }

    /// The API server's `/metrics` (Prometheus text), read with the admin identity.
    pub async fn apiserver_metrics(&self) -> Result<String> {
        let client = self.client().await?;
        get_text(&client, "/metrics").await
    }

    /// Restarts only kube-apiserver, with the given binary version (`None`: the current
    /// release) and `--feature-gates` value (empty: none), and waits until it is ready.
    /// A version other than the current one starts from an empty store (its own etcd
    /// prefix). Call it again with `(None, "")` to go back.
    pub async fn restart_apiserver(
        &mut self,
        version: Option<&str>,
        feature_gates: &str,
    ) -> Result<()> {
        let mut args = vec![format!("--feature-gates={feature_gates}")];
        if let Some(v) = version {
            args.push(format!("--version={v}"));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_script("restart-apiserver.sh", &refs).await?;
        self.reload_env()?;
        Ok(())
    }

    /// Creates a throwaway namespace `<prefix>-<unique suffix>` labelled
    /// [`MANAGED_LABEL`], and waits for its `default` ServiceAccount (pods cannot be
    /// created before the controller-manager made it).
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        let client = self.client().await?;
        let name = unique_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    MANAGED_LABEL.to_string(),
                    "true".to_string(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        wait_until(
            &format!("ServiceAccount {name}/default"),
            Duration::from_secs(60),
            || async { Ok(sas.get_opt("default").await?.is_some()) },
        )
        .await?;
        Ok(TestNamespace { name, client })
    }

    /// Creates a node that kwok manages (annotated [`KWOK_NODE_ANNOTATION`]`=fake`), with
    /// the given kubelet version, labels and taints, and waits until kwok reports it
    /// Ready. The node's name gets a unique suffix; the returned Node has it.
    pub async fn create_node(&self, spec: &FakeNode) -> Result<Node> {
        let client = self.client().await?;
        let nodes: Api<Node> = Api::all(client);
        let node = spec.to_node(&unique_name(&spec.name_prefix));
        let created = nodes.create(&PostParams::default(), &node).await?;
        let name = created.metadata.name.clone().unwrap_or_default();
        wait_until(
            &format!("node {name} Ready"),
            Duration::from_secs(60),
            || async { Ok(nodes.get_opt(&name).await?.as_ref().is_some_and(node_ready)) },
        )
        .await?;
        Ok(nodes.get(&name).await?)
    }

    /// Deletes a node made by [`TestCluster::create_node`] (no error if it is gone).
    pub async fn delete_node(&self, node: &Node) -> Result<()> {
        let Some(name) = node.metadata.name.as_deref() else {
            return Ok(());
        };
        let nodes: Api<Node> = Api::all(self.client().await?);
        match nodes.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every namespace and node this crate created (label [`MANAGED_LABEL`]),
    /// e.g. what a failed test left behind.
    pub async fn cleanup_all(&self) -> Result<()> {
        let client = self.client().await?;
        let lp = kube::api::ListParams::default().labels(MANAGED_LABEL);
        let nss: Api<Namespace> = Api::all(client.clone());
        for ns in nss.list(&lp).await? {
            if let Some(name) = ns.metadata.name {
                let _ = nss.delete(&name, &DeleteParams::background()).await;
            }
        }
        let nodes: Api<Node> = Api::all(client);
        for n in nodes.list(&lp).await? {
            if let Some(name) = n.metadata.name {
                let _ = nodes.delete(&name, &DeleteParams::default()).await;
            }
        }
        Ok(())
    }

    fn reload_env(&mut self) -> Result<()> {
        let path = self.state_dir.join("cluster.env");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            what: format!("reading {}", path.display()),
            source,
        })?;
        self.env = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        if self.server_url().is_empty() {
            return Err(Error::State {
                dir: self.state_dir.clone(),
                message: "cluster.env has no TANDEM_E2E_SERVER".into(),
            });
        }
        Ok(())
    }

    /// Runs `e2e/cluster/<script>` (blocking, off the async threads) with this state dir.
    async fn run_script(&self, script: &str, args: &[&str]) -> Result<()> {
        let path = self.e2e_dir.join("cluster").join(script);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let state = self.state_dir.clone();
        let script_name = script.to_string();
        let out = tokio::task::spawn_blocking(move || {
            let _guard = SCRIPT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            tracing::info!("running {} {:?}", path.display(), args);
            Command::new("bash")
                .arg(&path)
                .args(&args)
                .env("TANDEM_E2E_STATE", &state)
                .output()
        })
        .await
        .map_err(|e| Error::Io {
            what: format!("running {script_name}"),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| Error::Io {
            what: format!("running {script_name}"),
            source,
        })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Script {
                script: script_name,
                status: out.status.to_string(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            })
        }
    }
}

/// A namespace created by [`TestCluster::namespace`]; delete it with
/// [`TestNamespace::delete`] at the end of the test.
#[derive(Clone)]
pub struct TestNamespace {
    name: String,
    client: Client,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish()
    }
}

impl TestNamespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A typed API for namespaced objects in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace (in the background; no error if it is already gone).
    pub async fn delete(self) -> Result<()> {
        let nss: Api<Namespace> = Api::all(self.client);
        match nss.delete(&self.name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The description of a fake (kwok) node.
#[derive(Debug, Clone)]
pub struct FakeNode {
    name_prefix: String,
    kubelet_version: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    taints: Vec<Taint>,
}

impl FakeNode {
    /// A node named `<name_prefix>-<unique suffix>` whose kubelet reports `kubelet_version`
    /// (e.g. `v1.28.15`).
    pub fn new(name_prefix: &str, kubelet_version: &str) -> Self {
        FakeNode {
            name_prefix: name_prefix.to_string(),
            kubelet_version: kubelet_version.to_string(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            taints: Vec::new(),
        }
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    /// Adds a taint (`effect`: `NoSchedule`, `PreferNoSchedule` or `NoExecute`).
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.taints.push(Taint {
            key: key.to_string(),
            value: Some(value.to_string()),
            effect: effect.to_string(),
            time_added: None,
        });
        self
    }

    /// The Node object that [`TestCluster::create_node`] posts.
    pub fn to_node(&self, name: &str) -> Node {
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), name.to_string()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), "amd64".to_string()),
            ("type".to_string(), "kwok".to_string()),
            (MANAGED_LABEL.to_string(), "true".to_string()),
        ]);
        labels.extend(self.labels.clone());
        let mut annotations = BTreeMap::from([
            (KWOK_NODE_ANNOTATION.to_string(), "fake".to_string()),
            ("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string()),
        ]);
        annotations.extend(self.annotations.clone());
        let node = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": { "name": name, "labels": labels, "annotations": annotations },
            "spec": { "taints": self.taints },
            "status": {
                "allocatable": { "cpu": "32", "memory": "256Gi", "pods": "110" },
                "capacity": { "cpu": "32", "memory": "256Gi", "pods": "110" },
                "nodeInfo": {
                    "architecture": "amd64",
                    "kubeletVersion": self.kubelet_version,
                    "kubeProxyVersion": self.kubelet_version,
                    "operatingSystem": "linux",
                },
            },
        });
        // A literal built from strings and maps always matches Node's schema.
        serde_json::from_value(node).unwrap_or_default()
    }
}

/// Whether a node's `Ready` condition is `True`.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Polls `check` every 250 ms until it returns `Ok(true)`, an error, or `timeout` passes.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let start = Instant::now();
    loop {
        if check().await? {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: what.to_string(),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Installs rustls' ring provider as the process default (once; later calls do nothing),
/// so that kube's client and a rustls server in the same test agree on one provider.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client built from a kubeconfig file.
pub async fn client_from(path: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
        path: path.to_path_buf(),
        source,
    })?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(Client::try_from(config)?)
}

/// GET a non-resource path (`/metrics`, `/readyz`, `/version`) as text.
pub async fn get_text(client: &Client, path: &str) -> Result<String> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    Ok(client.request_text(req).await?)
}

/// `<prefix>-<seconds in base 36><counter>`: unique enough for throwaway objects.
pub fn unique_name(prefix: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}{n}", to_base36(secs % 36u128.pow(6)))
}

fn to_base36(mut v: u128) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// `e2e/` of this repository: `TANDEM_E2E_DIR`, else found from this crate's manifest dir.
fn e2e_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TANDEM_E2E_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../e2e")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_node_has_version_annotation_and_taints() {
        let n = FakeNode::new("old", "v1.28.15")
            .label("pool", "old")
            .taint("dedicated", "old", "NoSchedule")
            .to_node("old-1");
        assert_eq!(n.metadata.name.as_deref(), Some("old-1"));
        let ann = n.metadata.annotations.unwrap_or_default();
        assert_eq!(
            ann.get(KWOK_NODE_ANNOTATION).map(String::as_str),
            Some("fake")
        );
        let labels = n.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get("pool").map(String::as_str), Some("old"));
        let info = n.status.and_then(|s| s.node_info).expect("nodeInfo");
        assert_eq!(info.kubelet_version, "v1.28.15");
        let taints = n.spec.and_then(|s| s.taints).unwrap_or_default();
        assert_eq!(taints.len(), 1);
        assert_eq!(taints[0].effect, "NoSchedule");
    }

    #[test]
    fn unique_names_differ() {
        let a = unique_name("ns");
        let b = unique_name("ns");
        assert_ne!(a, b);
        assert!(a.starts_with("ns-"));
        assert!(a.len() <= 63);
    }
}
