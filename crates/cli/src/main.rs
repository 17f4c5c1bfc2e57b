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
    };
    match result {
        Ok(code) => code,
        // `tandem … | head`: the reader is gone; end quietly, as a filter should.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem: error: {}", chain_text(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, each cause once: a cause whose text an outer
/// message already quotes (`TLS configuration: {source}`) is not repeated.
fn chain_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// True when writing to stdout failed because its reader went away.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
