//! `tandem lint`: wiring only; the rules and the report live in `tandem-doctor`.

use std::process::ExitCode;

/// Flags of `tandem lint` (defined in `tandem-doctor`).
pub use tandem_doctor::LintArgs as Args;

/// Runs the command: exit 0 clean, 1 findings at `--fail-on` severity, 2 unreadable input.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::from(tandem_doctor::lint_cmd::run(&args)))
}
