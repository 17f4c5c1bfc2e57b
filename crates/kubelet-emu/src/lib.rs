//! kubelet-emu: a test harness that emulates the kubelet's container rules with
//! real local processes, to test `tandem-shim` and universal injection without a
//! cluster.
//!
//! Start with [`Kubelet::start`]: give it a [`Pod`] (from JSON, e.g. the output
//! of `tandem inject --mode universal -o json`), [`Options`] with a [`Flavour`]
//! (native sidecars 1.29+, a kubelet older than 1.28, or 1.28 with the gate off),
//! and a scratch directory. Then wait for conditions with [`Kubelet::wait_for`],
//! and disturb the pod with [`Kubelet::restart_sandbox`],
//! [`Kubelet::signal_container`] or [`Kubelet::delete`].
//!
//! The `emu-app` binary of this crate is the stand-in sidecar and main program;
//! [`markers`] reads what it records (who acts, when main containers started).
//! Every kubelet rule in [`kubelet`] carries a comment citing where Kubernetes
//! documents it.

pub mod api;
pub mod kubelet;
pub mod markers;
pub mod pod;
pub mod sys;

pub use kubelet::{CState, ContainerView, Flavour, Kubelet, Options, Phase, Snapshot};
pub use pod::Pod;
