//! `tandem install`: Print the install manifests (placeholder until its crate is wired in; issue 4).

use std::process::ExitCode;

/// Flags of `tandem install`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tandem install` is not available in this build yet")
}
