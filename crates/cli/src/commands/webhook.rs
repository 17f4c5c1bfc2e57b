//! `tandem webhook`: serve the mutating admission webhook (flags and server live in tandem-webhook).

use std::process::ExitCode;

/// Flags of `tandem webhook`.
pub use tandem_webhook::WebhookArgs as Args;

/// Runs the command until SIGTERM or Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    tandem_webhook::run_blocking(args)?;
    Ok(ExitCode::SUCCESS)
}
