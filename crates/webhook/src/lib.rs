//! # tandem-webhook
//!
//! tandem's mutating admission webhook and the manifests that install it.
//!
//! - [`admission::review`] is the whole request path, without I/O: AdmissionReview bytes
//!   in, AdmissionReview bytes out, through the same [`tandem_core::Injector`] that
//!   `tandem inject --patch` uses. Start reading there.
//! - [`server`] serves it over HTTPS (axum, hyper, rustls with ring, TLS 1.2+):
//!   `/mutate`, `/healthz`, `/readyz`, `/metrics`, certificate reload, graceful shutdown;
//!   [`edge`] runs the connections (timeouts, cap, drain) and [`work`] bounds the
//!   admission work (memory, threads).
//! - [`live`] keeps what `auto` needs (nodes, API server version and gate) current from
//!   a watch, off the admission path; [`events`] sends Kubernetes Events the same way.
//! - [`selfmanaged`] keeps the serving certificate in a Secret and the caBundle in the
//!   webhook configuration current (`--tls-secret`), with rotation before expiry.
//! - [`sidecars`] keeps the `Sidecar`/`ClusterSidecar` objects current the same way and
//!   writes their status conditions.
//! - [`install`] renders `tandem install`'s manifests.
//!
//! The CLI stays thin: it calls [`run`] with [`WebhookArgs`] and [`render`] with
//! [`InstallArgs`].

pub mod admission;
pub mod adopt;
pub mod edge;
pub mod events;
pub mod install;
pub mod live;
pub mod metrics;
pub mod selfmanaged;
pub mod server;
pub mod sidecars;
pub mod tls;
pub mod work;

pub use install::{InstallArgs, render};
pub use server::{ServeOptions, Webhook, WebhookArgs, run, run_blocking};
