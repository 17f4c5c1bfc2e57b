//! `tandem doctor`: wiring only; the checks and the report live in `tandem-doctor`.

use std::process::ExitCode;

/// Flags of `tandem doctor` (defined in `tandem-doctor`).
pub use tandem_doctor::DoctorArgs as Args;

/// Runs the command: exit 0 all good, 1 problems found, 2 the doctor could not run.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::from(tandem_doctor::doctor_cmd::run(&args)))
}
