//! # tandem-kube
//!
//! Cluster access shared by `tandem doctor` and `tandem label-nodes`: everything that
//! talks to an API server lives here, and every verdict about what it says lives in
//! pure code elsewhere (`tandem-core`, `tandem-doctor`'s pure modules).
//!
//! Start at [`connect::connect`] (with [`connect::ClusterArgs`], the `--kubeconfig` and
//! `--context` flags) to get a [`kube::Client`] found the way kubectl finds one. Then:
//! - [`cluster::server_version`] and [`cluster::apiserver_gate`] for the API server;
//! - [`cluster::list_all`] for paginated lists (nodes, pods, webhooks);
//! - [`nodes::read_gates`] for every node's `SidecarContainers` metric through the
//!   API server's node proxy, with bounded concurrency and a per-node timeout;
//! - [`workloads::list_workloads`] for every pod-carrying workload as raw JSON.
//!
//! Errors ([`error::KubeError`]) say which verb on which resource was refused, so a
//! check can tell its user which permission it needed.

pub mod cluster;
pub mod connect;
pub mod error;
pub mod nodes;
pub mod workloads;

pub use connect::{ClusterArgs, connect};
pub use error::{Access, KubeError};
