//! `tandem doctor`: Cluster diagnosis (placeholder until its crate is wired in; issue 6).

use std::process::ExitCode;

/// Flags of `tandem doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tandem doctor` is not available in this build yet")
}
