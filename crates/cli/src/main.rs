//! The `tandem` command: clap definitions and wiring only. Each subcommand lives
//! in `commands/`, and each of those is a thin edge over a library crate.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod input;

/// tandem: adopt Kubernetes native sidecar containers on real, mixed clusters.
///
/// Injects sidecars in the form each pod's nodes can run (native, legacy, affinity,
/// universal, or auto), diagnoses clusters and pods that hang in Init, and labels
/// nodes that support native sidecars.
#[derive(Debug, Parser)]
#[command(
    name = "tandem",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inject sidecars into manifests offline (like `istioctl kube-inject`).
    Inject(commands::inject::Args),
    /// Serve the mutating admission webhook (AdmissionReview v1 over HTTPS).
    Webhook(commands::webhook::Args),
    /// Print the manifests that run tandem in a cluster.
    Install(commands::install::Args),
    /// Check a cluster's readiness for native sidecars and explain stuck pods.
    Doctor(commands::doctor::Args),
    /// Label nodes with tandem.dev/native-sidecars=true|false.
    LabelNodes(commands::label_nodes::Args),
    /// Find sidecar pitfalls in manifests (what will hang, what never completes).
    Lint(commands::lint::Args),
    /// Move the legacy sidecars that manifests already carry to native sidecars.
    Adopt(commands::adopt::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inject(args) => commands::inject::run(args),
        Command::Webhook(args) => commands::webhook::run(args),
        Command::Install(args) => commands::install::run(args),
        Command::Doctor(args) => commands::doctor::run(args),
        Command::LabelNodes(args) => commands::label_nodes::run(args),
        Command::Lint(args) => commands::lint::run(args),
        Command::Adopt(args) => commands::adopt::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tandem: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
