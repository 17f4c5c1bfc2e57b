//! # tandem-webhook
//!
//! tandem's mutating admission webhook and the manifests that install it.
//!
//! - [`admission::review`] is the whole request path, without I/O: AdmissionReview bytes
//!   in, AdmissionReview bytes out, through the same [`tandem_core::Injector`] that
//!   `tandem inject --patch` uses. Start reading there.
//! - [`server`] serves it over HTTPS (axum + axum-server, rustls with ring, TLS 1.2+):
//!   `/mutate`, `/healthz`, `/readyz`, `/metrics`, certificate reload, graceful shutdown.
//! - [`live`] keeps what `auto` needs (nodes, API server version and gate) current from
//!   a watch, off the admission path; [`events`] sends Kubernetes Events the same way.
//! - [`install`] renders `tandem install`'s manifests.
//!
//! The CLI stays thin: it calls [`run`] with [`WebhookArgs`] and [`render`] with
//! [`InstallArgs`].

pub mod admission;
pub mod adopt;
pub mod events;
pub mod install;
pub mod live;
pub mod metrics;
pub mod server;
pub mod tls;

pub use install::{InstallArgs, render};
pub use server::{ServeOptions, Webhook, WebhookArgs, run, run_blocking};
