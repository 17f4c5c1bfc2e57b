//! # tandem-doctor
//!
//! `tandem doctor`, `tandem label-nodes` and `tandem lint`: the seed's troubleshooting
//! steps made into commands that give a verdict. See `README.md` for the checks, the
//! JSON schema, exit codes and permissions.
//!
//! Every verdict is computed by pure, unit-tested code; the command modules only gather
//! facts through `tandem-kube` and hand them over.
//!
//! - Pure: [`checks`] (the doctor's verdicts), [`webhooks`] (which webhooks see a Pod
//!   CREATE, what the dry-run probe showed), [`labels`] (node label and evidence),
//!   [`lint`] (rules TL000–TL006), [`resources`] and [`quantity`] (effective requests the
//!   scheduler's way), [`report`] (statuses, exit codes, text and JSON), [`text`]
//!   (80-column wrapping). The labeller's Deployment and RBAC are rendered by
//!   `tandem install --with-label-nodes` (`tandem-webhook`).
//! - [`tandem_checks`]: the checks of tandem itself (webhook configuration, Deployment,
//!   endpoints, caBundle against the served certificate, certificate lifetime, version).
//! - Commands: [`doctor_cmd`], [`label_nodes_cmd`], [`lint_cmd`]. Each has a clap `Args`
//!   struct and a `run` function that returns the process exit code, so the `tandem`
//!   binary stays thin. [`scan`] reads nodes for the first two.

pub mod checks;
pub mod doctor_cmd;
pub mod label_nodes_cmd;
pub mod labels;
pub mod lint;
pub mod lint_cmd;
pub mod output;
pub mod quantity;
pub mod report;
pub mod resources;
pub mod scan;
pub mod tandem_checks;
pub mod text;
pub mod webhooks;

pub use doctor_cmd::DoctorArgs;
pub use label_nodes_cmd::LabelNodesArgs;
pub use lint_cmd::LintArgs;
pub use output::OutputFormat;
