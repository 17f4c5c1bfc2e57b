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
    /// Move the legacy sidecars that manifests already carry to native sidecars.
    Adopt(commands::adopt::Args),
    /// Print the CLI's version, and with --server the installed webhook's.
    Version(commands::version::Args),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completion(commands::completion::Args),
    /// Remove tandem from a cluster, webhook configurations first (prints the objects for
    /// `kubectl delete -f -`, or deletes them with --delete).
    Uninstall(commands::uninstall::Args),
    /// List workloads whose pods run an outdated revision of a sidecar object.
    Status(commands::status::Args),
    /// Restart the workloads that `tandem status` lists, at a set pace (dry run by default).
    Rollout(commands::rollout::Args),
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
        Command::Adopt(args) => commands::adopt::run(args),
        Command::Version(args) => commands::version::run(args),
        Command::Completion(args) => commands::completion::run(
            args,
            Cli::command(),
            bin.split(' ').next_back().unwrap_or(bin),
        ),
        Command::Uninstall(args) => commands::uninstall::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::Rollout(args) => commands::rollout::run(args),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that quotes its source in its own message, as many libraries' do.
    #[derive(Debug)]
    struct Quoting(std::io::Error);
    impl std::fmt::Display for Quoting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "TLS configuration: {}", self.0)
        }
    }
    impl std::error::Error for Quoting {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_chain_is_printed_once() {
        let e = anyhow::Error::new(Quoting(std::io::Error::other("KeyMismatch")))
            .context("loading cert.pem and key.pem");
        assert_eq!(format!("{e:#}").matches("KeyMismatch").count(), 2);
        assert_eq!(
            chain_text(&e),
            "loading cert.pem and key.pem: TLS configuration: KeyMismatch"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain_text(&plain), "outer: inner");
    }

    #[test]
    fn broken_pipes_are_recognised_through_context() {
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("cannot write to stdout");
        assert!(is_broken_pipe(&e));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}
