//! # tandem-doctor
//!
//! `tandem doctor`, `tandem label-nodes` and `tandem lint`.
//!
//! Every verdict is computed by pure, exhaustively tested code; the modules that talk
//! to a cluster only gather facts (through `tandem-kube`) and hand them over.
//!
//! - Pure: [`quantity`], [`resources`] (effective pod requests, the scheduler's way).
//! - Commands: each has a clap `Args` struct and a `run` function that returns the
//!   process exit code, so the `tandem` binary stays thin.

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
pub mod text;
pub mod webhooks;

pub use doctor_cmd::DoctorArgs;
pub use label_nodes_cmd::LabelNodesArgs;
pub use lint_cmd::LintArgs;
pub use output::OutputFormat;
