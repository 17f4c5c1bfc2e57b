//! The `tandem` command: clap definitions and wiring only. Each subcommand lives
//! in `commands/`, and each of those is a thin edge over a library crate.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Subcommand};

mod commands;
mod input;

/// tandem: adopt Kubernetes native sidecar containers on real, mixed clusters.
///
/// Injects sidecars in the form each pod's nodes can run (native, legacy, affinity,
/// universal, or auto), diagnoses clusters and pods that hang in Init, and labels
/// nodes that support native sidecars.
#[derive(Debug, clap::Parser)]
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
    /// Print the CLI's version, and with --server the installed webhook's.
    Version(commands::version::Args),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completion(commands::completion::Args),
    /// Remove tandem from a cluster, webhook configurations first (prints the objects for
    /// `kubectl delete -f -`, or deletes them with --delete).
    Uninstall(commands::uninstall::Args),
}

/// The command's name: `kubectl tandem` when run as the kubectl plugin `kubectl-tandem`.
fn bin_name() -> &'static str {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let base = std::path::Path::new(&argv0)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if base == "kubectl-tandem" {
        "kubectl tandem"
    } else {
        "tandem"
    }
}

fn main() -> ExitCode {
    let bin = bin_name();
    let cmd = Cli::command().bin_name(bin);
    let cli = match Cli::from_arg_matches(&cmd.get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Inject(args) => commands::inject::run(args),
        Command::Webhook(args) => commands::webhook::run(args),
        Command::Install(args) => commands::install::run(args),
        Command::Doctor(args) => commands::doctor::run(args),
        Command::LabelNodes(args) => commands::label_nodes::run(args),
        Command::Lint(args) => commands::lint::run(args),
        Command::Version(args) => commands::version::run(args),
        Command::Completion(args) => commands::completion::run(
            args,
            Cli::command(),
            bin.split(' ').next_back().unwrap_or(bin),
        ),
        Command::Uninstall(args) => commands::uninstall::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tandem: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
