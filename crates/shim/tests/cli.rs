//! The binary's command line as a user meets it: help, version, usage errors.
//! (Also makes `cargo test` build the `tandem-shim` binary, which the
//! kubelet-emu tests run.)

use std::process::Command;

fn shim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tandem-shim"))
        .args(args)
        .env_remove("TANDEM_STATE_DIR")
        .output()
        .expect("run tandem-shim")
}

#[test]
fn version_and_help() {
    let v = shim(&["--version"]);
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("tandem-shim "));
    let h = shim(&["--help"]);
    assert!(h.status.success());
    let text = String::from_utf8_lossy(&h.stdout);
    for sub in ["native", "legacy", "probe", "wait", "status", "install"] {
        assert!(
            text.contains(&format!("tandem-shim {sub}")),
            "help lacks {sub}"
        );
    }
}

#[test]
fn usage_errors_exit_2_with_a_reason() {
    for (args, why) in [
        (&[][..], ""),
        (&["bogus"][..], "unknown subcommand"),
        (&["native"][..], "needs the sidecar's command"),
        (
            &["legacy", "--settle-timeout", "soon", "--", "x"][..],
            "--settle-timeout",
        ),
        (
            &["legacy", "--pod-restart-policy", "Sometimes", "--", "x"][..],
            "Always, OnFailure or Never",
        ),
        (&["probe", "--", "x"][..], "takes no command"),
        (&["install"][..], "exactly one argument"),
    ] {
        let o = shim(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(why),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn env_values_are_validated() {
    let o = Command::new(env!("CARGO_BIN_EXE_tandem-shim"))
        .args(["legacy", "--", "true"])
        .env("TANDEM_POD_RESTART_POLICY", "always")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("TANDEM_POD_RESTART_POLICY"));
}
