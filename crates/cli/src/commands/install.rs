//! `tandem install`: print the manifests that run tandem in a cluster (rendered by tandem-webhook).

use std::io::Write as _;
use std::process::ExitCode;

/// Flags of `tandem install`.
pub use tandem_webhook::InstallArgs as Args;

/// Prints the manifests as one YAML stream on stdout.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let yaml = tandem_webhook::render(&args)?;
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
