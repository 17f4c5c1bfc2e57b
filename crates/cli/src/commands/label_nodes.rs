//! `tandem label-nodes`: Node labelling (placeholder until its crate is wired in; issue 6).

use std::process::ExitCode;

/// Flags of `tandem label-nodes`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the command.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tandem label-nodes` is not available in this build yet")
}
