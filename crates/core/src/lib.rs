//! # tandem-core
//!
//! The pure heart of tandem: everything that decides how sidecars are placed into
//! pods, with no I/O. The CLI, the webhook and the doctor are thin edges around it.
//!
//! Start at [`inject::Injector`]: give it a [`config::Config`] and what is known
//! about the cluster ([`knowledge::ClusterKnowledge`]), then hand it documents
//! ([`Injector::inject_document`](inject::Injector::inject_document)) or Pods from
//! admission ([`Injector::inject_pod`](inject::Injector::inject_pod)). It answers
//! with an RFC 6902 JSON Patch computed on the raw object, never a re-encoded one.
//!
//! One pod's path: bytes → [`manifest`] → [`workload`] (where the pod is) →
//! [`plan`] (which placement, through [`compat`] and [`scheduling`]) →
//! [`inject`] (the patch, built with [`patch`]).
//!
//! [`adopt`] is a second plan over the same pod facts and compatibility model: it
//! moves the legacy sidecars a pod already has to native sidecars ([`adopt::Adopter`]).
//!
//! Sidecar objects: [`api`] holds the `Sidecar`/`ClusterSidecar` types and their CRDs,
//! [`catalog`] checks objects and decides which ones a pod gets ([`selector`] for label
//! selectors), [`status`] reads and writes the `tandem.dev/status` annotation, and
//! [`outdated`] finds pods on old revisions. The injector takes the selected objects with
//! [`Injector::inject_pod_with`](inject::Injector::inject_pod_with) and
//! [`Injector::inject_document_with`](inject::Injector::inject_document_with).

pub mod adopt;
pub mod api;
pub mod catalog;
pub mod compat;
pub mod config;
pub mod images;
pub mod inject;
pub mod knowledge;
pub mod kyaml;
pub mod manifest;
pub mod metrics_text;
pub mod mode;
pub mod names;
pub mod node_index;
pub mod outdated;
pub mod patch;
pub mod plan;
pub mod scheduling;
pub mod selector;
pub mod status;
pub mod validate;
pub mod verify;
pub mod version;
pub mod workload;
pub mod yaml_write;

pub use config::Config;
pub use inject::{InjectError, Injector, NamespaceOptIn, PodOutcome};
pub use knowledge::ClusterKnowledge;
pub use mode::{Mode, Placement};
pub use version::KubeVersion;
