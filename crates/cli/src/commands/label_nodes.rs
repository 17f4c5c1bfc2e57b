//! `tandem label-nodes`: wiring only; the labeller lives in `tandem-doctor`.

use std::process::ExitCode;

/// Flags of `tandem label-nodes` (defined in `tandem-doctor`).
pub use tandem_doctor::LabelNodesArgs as Args;

/// Runs the command: exit 0 done, 1 some patches failed, 2 could not run.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::from(tandem_doctor::label_nodes_cmd::run(&args)))
}
