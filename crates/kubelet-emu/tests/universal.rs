//! Universal mode on emulated kubelets: exactly one copy acts, before the main
//! containers start; Jobs complete; sandbox restarts and sidecar crashes never
//! end with two actors or a pod stuck in Init; the gate-off kubelet rejects.

mod common;

use std::time::Duration;

use common::*;
use tandem_kubelet_emu::{CState, Flavour, Phase, markers};

/// One pod through its whole life on one flavour.
fn lifecycle(flavour: Flavour, policy: &'static str, settle: Settle) {
    let spec = PodSpec::new(policy, settle).on(flavour);
    let k = run(
        &universal_pod(&spec),
        options(flavour),
        &format!("{flavour:?}-{policy}-{settle:?}"),
    );
    k.wait_for("main container to start", LONG, |_| {
        history(&k).iter().any(|l| l.starts_with("main-start "))
    });
    assert_sidecar_before_mains(&k, expected_actor(flavour), settle != Settle::Probe);
    if policy == "Always" {
        let actor = wait_one_acting(&k);
        assert_eq!(actor, expected_actor(flavour), "{}", k.debug_dump());
        k.wait_for("pod Running", LONG, |s| s.phase == Phase::Running);
        // the main container is restarted (Always): still one actor
        k.wait_for("app restarted", LONG, |s| {
            s.get("app").is_some_and(|c| c.restarts >= 1)
        });
        assert_never_two(&k);
        k.delete();
        k.wait_for("pod deleted", LONG, |s| s.phase == Phase::Deleted);
    } else {
        // [Never/OnFailure] the Job completes once the main container finished.
        let s = k.wait_for("pod Succeeded", LONG, |s| {
            matches!(s.phase, Phase::Succeeded | Phase::Failed)
        });
        assert_eq!(s.phase, Phase::Succeeded, "{}", k.debug_dump());
        assert_eq!(
            actors(&k),
            vec![expected_actor(flavour).to_string()],
            "{}",
            k.debug_dump()
        );
        // the acting copy was stopped gracefully (SIGTERM), not left running
        assert!(
            history(&k).iter().any(|l| l.starts_with("act-stop ")),
            "{}",
            k.debug_dump()
        );
        if flavour == Flavour::Old {
            // on an old kubelet the legacy copy stopped itself via the pod watch
            assert_eq!(
                s.get("logger-legacy").map(|c| c.state),
                Some(CState::Terminated(0))
            );
        }
    }
    assert_never_two(&k);
}

macro_rules! lifecycle_tests {
    ($($name:ident: $fl:expr, $pol:expr, $st:expr;)*) => {$(
        #[test]
        fn $name() { lifecycle($fl, $pol, $st); }
    )*};
}

lifecycle_tests! {
    native_always_probe: Flavour::Native, "Always", Settle::Probe;
    native_onfailure_own_probe: Flavour::Native, "OnFailure", Settle::OwnProbe;
    native_never_probe: Flavour::Native, "Never", Settle::Probe;
    native_always_own_probe: Flavour::Native, "Always", Settle::OwnProbe;
    native_always_timeout: Flavour::Native, "Always", Settle::Timeout;
    native_onfailure_timeout: Flavour::Native, "OnFailure", Settle::Timeout;
    native_never_timeout: Flavour::Native, "Never", Settle::Timeout;
    old_always_probe: Flavour::Old, "Always", Settle::Probe;
    old_onfailure_own_probe: Flavour::Old, "OnFailure", Settle::OwnProbe;
    old_never_probe: Flavour::Old, "Never", Settle::Probe;
    old_never_own_probe: Flavour::Old, "Never", Settle::OwnProbe;
    old_always_timeout: Flavour::Old, "Always", Settle::Timeout;
    old_onfailure_timeout: Flavour::Old, "OnFailure", Settle::Timeout;
    old_never_timeout: Flavour::Old, "Never", Settle::Timeout;
}

#[test]
fn copy_delivery_installs_the_shim_then_runs() {
    let mut spec = PodSpec::new("Never", Settle::OwnProbe);
    spec.copy_delivery = true;
    for flavour in [Flavour::Native, Flavour::Old] {
        let k = run(&universal_pod(&spec), options(flavour), "copy");
        let s = k.wait_for("pod done", LONG, |s| {
            matches!(s.phase, Phase::Succeeded | Phase::Failed)
        });
        assert_eq!(s.phase, Phase::Succeeded, "{}", k.debug_dump());
        let installed = k.volume("tandem-bin").join("tandem-shim");
        assert!(installed.exists(), "shim not installed");
        assert_eq!(actors(&k), vec![expected_actor(flavour).to_string()]);
        assert_sidecar_before_mains(&k, expected_actor(flavour), true);
    }
}

#[test]
fn gate_off_kubelet_rejects_universal_pods() {
    let k = run(
        &universal_pod(&PodSpec::new("Always", Settle::Probe)),
        options(Flavour::GateOff),
        "gateoff",
    );
    let s = k.snapshot();
    assert_eq!(
        s.phase,
        Phase::Rejected("InitContainerRestartPolicyForbidden".into())
    );
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        history(&k).is_empty(),
        "nothing may run on a rejecting kubelet"
    );
}

/// Sandbox restarts once the pod runs: init containers re-run over the old state.
fn sandbox_restart(flavour: Flavour, policy: &'static str, settle: Settle) {
    let mut spec = PodSpec::new(policy, settle).on(flavour);
    spec.main_run_ms = 60_000; // keep the Job's main container running across restarts
    let k = run(&universal_pod(&spec), options(flavour), "sandbox");
    assert_eq!(wait_one_acting(&k), expected_actor(flavour));
    for round in 2..=3 {
        k.wait_for("main container running in this sandbox", LONG, |_| {
            history(&k)
                .iter()
                .filter(|l| l.starts_with("main-start "))
                .count()
                >= round as usize - 1
        });
        k.restart_sandbox();
        k.wait_for("pod Running again (not stuck in Init)", LONG, |s| {
            s.sandbox == round && s.phase == Phase::Running
        });
        k.wait_for("main container restarted", LONG, |_| {
            history(&k)
                .iter()
                .filter(|l| l.starts_with("main-start "))
                .count()
                >= round as usize
        });
        assert_eq!(
            wait_one_acting(&k),
            expected_actor(flavour),
            "{}",
            k.debug_dump()
        );
        assert_sidecar_before_mains(&k, expected_actor(flavour), settle != Settle::Probe);
        assert_never_two(&k);
    }
    k.delete();
    k.wait_for("pod deleted", LONG, |s| s.phase == Phase::Deleted);
}

#[test]
fn sandbox_restart_native_probe() {
    sandbox_restart(Flavour::Native, "Always", Settle::Probe);
}

#[test]
fn sandbox_restart_native_own_probe() {
    sandbox_restart(Flavour::Native, "Always", Settle::OwnProbe);
}

#[test]
fn sandbox_restart_native_timeout_job() {
    sandbox_restart(Flavour::Native, "OnFailure", Settle::Timeout);
}

#[test]
fn sandbox_restart_old_probe() {
    sandbox_restart(Flavour::Old, "Always", Settle::OwnProbe);
}

#[test]
fn sandbox_restart_old_timeout_job() {
    sandbox_restart(Flavour::Old, "Never", Settle::Timeout);
}

/// On an old kubelet the sandbox restarts while the regular copy is still in its
/// settle wait (state `first-run`): the native copy runs again as a plain init
/// container and must not become an init container that never ends.
#[test]
fn sandbox_restart_during_settle_window_on_old_kubelet() {
    let mut spec = PodSpec::new("Always", Settle::Timeout);
    spec.settle_timeout = "5s";
    let k = run(
        &universal_pod(&spec),
        options(Flavour::Old),
        "settle-window",
    );
    let state = k.volume("tandem-state").join("state");
    k.wait_for(
        "first-run written and the regular copy waiting",
        LONG,
        |s| {
            s.get("logger-legacy")
                .is_some_and(|c| c.state == CState::Running)
                && std::fs::read_to_string(&state).is_ok_and(|t| t.contains(" first-run "))
        },
    );
    k.restart_sandbox();
    k.wait_for("pod Running (not stuck in Init)", LONG, |s| {
        s.sandbox == 2 && s.phase == Phase::Running
    });
    assert_eq!(wait_one_acting(&k), "logger-legacy");
    k.wait_for("main container started", LONG, |_| {
        history(&k).iter().any(|l| l.starts_with("main-start "))
    });
    assert_sidecar_before_mains(&k, "logger-legacy", true);
    assert_never_two(&k);
}

/// The sidecar crashes and is restarted: the same copy acts again, never both.
fn sidecar_crash(flavour: Flavour, settle: Settle) {
    let mut spec = PodSpec::new("Always", settle).on(flavour);
    spec.sidecar_args = vec!["sidecar".into(), "--crash-after-ms".into(), "300".into()];
    let k = run(&universal_pod(&spec), options(flavour), "crash");
    let actor = expected_actor(flavour);
    k.wait_for("sidecar crashed and restarted twice", LONG, |_| {
        history(&k)
            .iter()
            .filter(|l| l.starts_with("act-start "))
            .count()
            >= 3
    });
    assert_eq!(actors(&k), vec![actor.to_string()], "{}", k.debug_dump());
    assert_never_two(&k);
    // and a hard kill (OOM-style) of the acting copy's container
    k.signal_container(actor, libc::SIGKILL);
    k.wait_for("sidecar back", LONG, |_| {
        markers::live_acting(&k.markers()).len() == 1
    });
    assert_eq!(actors(&k), vec![actor.to_string()], "{}", k.debug_dump());
    assert_never_two(&k);
    let s = k.snapshot();
    assert_eq!(s.phase, Phase::Running);
}

#[test]
fn sidecar_crash_native() {
    sidecar_crash(Flavour::Native, Settle::OwnProbe);
}

#[test]
fn sidecar_crash_old() {
    sidecar_crash(Flavour::Old, Settle::Timeout);
}

/// Without RBAC the Job-completion watch is forbidden: the shim says so clearly and
/// keeps the sidecar running (it never guesses that the main containers are done).
#[test]
fn job_watch_forbidden_is_reported() {
    let mut opts = options(Flavour::Old);
    opts.api_forbidden = true;
    let k = run(
        &universal_pod(&PodSpec::new("Never", Settle::Probe)),
        opts,
        "forbidden",
    );
    k.wait_for("main container finished", LONG, |s| {
        s.get("app")
            .is_some_and(|c| c.state == CState::Terminated(0))
    });
    let log = k.volume("..").join("logs/logger-legacy.log");
    let end = std::time::Instant::now() + LONG;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("403") && text.contains("`get` on `pods`") {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "no clear 403 message:\n{}",
            k.debug_dump()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        k.snapshot().phase,
        Phase::Running,
        "legacy sidecar must keep running"
    );
    assert_eq!(wait_one_acting(&k), "logger-legacy");
}
