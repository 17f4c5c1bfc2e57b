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

pub mod adopt;
pub mod compat;
pub mod config;
pub mod inject;
pub mod knowledge;
pub mod manifest;
pub mod metrics_text;
pub mod mode;
pub mod names;
pub mod patch;
pub mod plan;
pub mod scheduling;
pub mod version;
pub mod workload;

pub use config::Config;
pub use inject::{InjectError, Injector, NamespaceOptIn, PodOutcome};
pub use knowledge::ClusterKnowledge;
pub use mode::{Mode, Placement};
pub use version::KubeVersion;
