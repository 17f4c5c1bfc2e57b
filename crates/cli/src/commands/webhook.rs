//! `tandem webhook`: Serve the mutating admission webhook (placeholder until its crate is wired in; issue 4).

use std::process::ExitCode;

/// Flags of `tandem webhook`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tandem webhook` is not available in this build yet")
}
