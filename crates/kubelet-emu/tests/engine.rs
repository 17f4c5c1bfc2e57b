//! Universal pods made by the real engine (`tandem inject --mode universal -o json`)
//! run on the emulated kubelets. Skipped, with a message, when the `tandem` binary
//! has not been built (it is built by `cargo test --workspace` for the CLI's own
//! tests; or run `cargo build -p tandem`).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::Value;
use tandem_kubelet_emu::{Flavour, Phase};

fn tandem() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TANDEM_BIN") {
        return Some(PathBuf::from(p));
    }
    let p = app().parent()?.join("tandem");
    p.exists().then_some(p)
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: job-1, namespace: team-a}
spec:
  restartPolicy: RESTART
  containers:
  - name: app
    image: busybox
    command: ["/emu/emu-app", "main", "--run-ms", "300"]
"#;

fn config(delivery: &str, own_probe: bool) -> String {
    let probe = if own_probe {
        "    startupProbe:\n      exec: {command: [\"/emu/emu-app\", \"ready\"]}\n      periodSeconds: 1\n      failureThreshold: 60\n"
    } else {
        ""
    };
    format!(
        "mode: universal\nshim:\n  delivery: {delivery}\nsidecars:\n  - name: logger\n    image: example/logger:1\n    command: [\"/emu/emu-app\"]\n    args: [\"sidecar\"]\n{probe}"
    )
}

/// Runs the engine; `None` (and a note on stderr) when it is not built or fails.
fn inject(
    restart: &str,
    delivery: &str,
    own_probe: bool,
    apiserver: Option<&str>,
) -> Option<Value> {
    let Some(bin) = tandem() else {
        eprintln!(
            "SKIP: target/*/tandem not built; run `cargo build -p tandem` to test the engine's pods"
        );
        return None;
    };
    let dir = scratch("engine");
    let cfg = dir.join("tandem.yaml");
    let pod = dir.join("pod.yaml");
    std::fs::write(&cfg, config(delivery, own_probe)).expect("cfg");
    std::fs::write(&pod, POD.replace("RESTART", restart)).expect("pod");
    let mut cmd = Command::new(bin);
    cmd.args(["inject", "-q", "--mode", "universal", "-o", "json", "-c"])
        .arg(&cfg)
        .arg("-f")
        .arg(&pod);
    if let Some(v) = apiserver {
        cmd.args(["--apiserver-version", v]);
    }
    let out = cmd.output().expect("run tandem");
    assert!(
        out.status.success(),
        "tandem inject failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("engine JSON"))
}

fn has_wait_hook(pod: &Value) -> bool {
    pod.pointer("/spec/containers/0/lifecycle/postStart/exec/command/1")
        .and_then(Value::as_str)
        == Some("wait")
}

fn run_engine_pod(
    flavour: Flavour,
    restart: &str,
    delivery: &str,
    own_probe: bool,
    apiserver: Option<&str>,
) {
    let Some(pod) = inject(restart, delivery, own_probe, apiserver) else {
        return;
    };
    let k = run(&pod, options(flavour), "engine");
    let actor = expected_actor(flavour);
    if restart == "Always" {
        assert_eq!(wait_one_acting(&k), actor, "{}", k.debug_dump());
        k.wait_for("pod Running", LONG, |s| s.phase == Phase::Running);
        k.wait_for("main started", LONG, |_| {
            history(&k).iter().any(|l| l.starts_with("main-start "))
        });
    } else {
        let s = k.wait_for("Job pod done", LONG, |s| {
            matches!(s.phase, Phase::Succeeded | Phase::Failed)
        });
        assert_eq!(s.phase, Phase::Succeeded, "{}", k.debug_dump());
        assert_eq!(actors(&k), vec![actor.to_string()], "{}", k.debug_dump());
    }
    assert_never_two(&k);
    let starts: Vec<String> = history(&k)
        .into_iter()
        .filter(|l| l.starts_with("main-start "))
        .collect();
    if has_wait_hook(&pod) && own_probe {
        for l in &starts {
            assert!(l.contains(" acting=1 "), "{l}\n{}", k.debug_dump());
        }
    } else if flavour == Flavour::Old {
        eprintln!(
            "NOTE: the engine's regular copy has no `tandem-shim wait` postStart hook (crates/shim/CONTRACT.md): \
             on an old kubelet the main containers may start before the sidecar acts; main starts: {starts:?}"
        );
    }
}

#[test]
fn engine_pod_native_never_image() {
    run_engine_pod(Flavour::Native, "Never", "image", false, Some("1.30.0"));
}

#[test]
fn engine_pod_native_always_settle_timeout() {
    run_engine_pod(Flavour::Native, "Always", "image", false, None);
}

#[test]
fn engine_pod_old_onfailure_copy() {
    run_engine_pod(Flavour::Old, "OnFailure", "copy", true, Some("1.30.0"));
}

#[test]
fn engine_pod_old_always_image() {
    run_engine_pod(Flavour::Old, "Always", "image", true, Some("1.30.0"));
}

#[test]
fn engine_pod_old_never_settle_timeout() {
    run_engine_pod(Flavour::Old, "Never", "copy", false, None);
}

#[test]
fn engine_pod_is_rejected_by_gate_off_kubelet() {
    let Some(pod) = inject("Always", "image", false, Some("1.30.0")) else {
        return;
    };
    let k = run(&pod, options(Flavour::GateOff), "engine-gateoff");
    assert_eq!(
        k.snapshot().phase,
        Phase::Rejected("InitContainerRestartPolicyForbidden".into())
    );
}

/// `auto` never picks `universal` when a candidate node would reject the field
/// (1.28 with the gate off): the pod it makes runs on the rejecting kubelet.
#[test]
fn auto_never_picks_universal_on_a_rejecting_kubelet() {
    let Some(bin) = tandem() else {
        eprintln!("SKIP: target/*/tandem not built");
        return;
    };
    let dir = scratch("engine-auto");
    let cfg = dir.join("tandem.yaml");
    let pod = dir.join("pod.yaml");
    std::fs::write(
        &cfg,
        config("image", false).replace("mode: universal", "mode: auto"),
    )
    .expect("cfg");
    std::fs::write(&pod, POD.replace("RESTART", "Never")).expect("pod");
    for versions in [
        &["1.28.0"][..],
        &["1.28.3", "1.30.1"],
        &["1.28.0", "1.26.9"],
    ] {
        let mut cmd = Command::new(&bin);
        cmd.args(["inject", "-q", "--mode", "auto", "-o", "json", "-c"])
            .arg(&cfg)
            .arg("-f")
            .arg(&pod);
        for v in versions {
            cmd.args(["--kubelet-version", v]);
        }
        let out = cmd.output().expect("run tandem");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let injected: Value = serde_json::from_slice(&out.stdout).expect("json");
        let status = injected
            .pointer("/metadata/annotations/tandem.dev~1status")
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert!(!status.contains("universal"), "{versions:?}: {status}");
        if status.contains("\"legacy\"") {
            // Not rejected: the main container runs to completion. (A plain legacy
            // sidecar still keeps a Job pod from completing: the classic problem
            // that wrapping it in `tandem-shim legacy` would solve.)
            let k = run(&injected, options(Flavour::GateOff), "engine-auto");
            let s = k.wait_for("main container done", LONG, |s| {
                s.get("app")
                    .is_some_and(|c| c.state == tandem_kubelet_emu::CState::Terminated(0))
            });
            assert_eq!(s.phase, Phase::Running, "{versions:?}\n{}", k.debug_dump());
        }
    }
}
