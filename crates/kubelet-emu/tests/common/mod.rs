//! Shared helpers for the kubelet-emu integration tests: locating (building) the
//! shim, writing universal pods by the engine contract, reading markers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use tandem_kubelet_emu::{Flavour, Kubelet, Options, Pod, markers};

/// Generous bound for anything a loaded 2-core machine must finish.
pub const LONG: Duration = Duration::from_secs(40);

/// In-image path of the shim (config `shim.delivery: image`).
pub const SHIM_IMAGE_PATH: &str = "/usr/local/bin/tandem-shim";
/// In-image path of the test program.
pub const APP: &str = "/emu/emu-app";

/// Workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tandem-shim binary next to emu-app (building it once if needed;
/// `TANDEM_SHIM_BIN` overrides).
pub fn shim() -> PathBuf {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        if let Ok(p) = std::env::var("TANDEM_SHIM_BIN") {
            return PathBuf::from(p);
        }
        let dir = Path::new(env!("CARGO_BIN_EXE_emu-app"))
            .parent()
            .expect("bin dir")
            .to_path_buf();
        let built = dir.join("tandem-shim");
        if fresh(&built) {
            return built;
        }
        let release = dir.ends_with("release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace())
            .args(["build", "-q", "-p", "tandem-shim"]);
        if release {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build -p tandem-shim");
        assert!(st.success(), "cargo build -p tandem-shim failed");
        let p = dir.join("tandem-shim");
        assert!(p.exists(), "{} missing after build", p.display());
        p
    })
    .clone()
}

/// Whether `bin` exists and is newer than every source file of the shim
/// (`cargo test --workspace` builds it for the shim's own integration tests).
fn fresh(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let shim = workspace().join("crates/shim");
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut stack = vec![shim.join("src"), shim.join("Cargo.toml")];
    while let Some(p) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&p) {
            stack.extend(rd.flatten().map(|e| e.path()));
        } else if let Ok(t) = std::fs::metadata(&p).and_then(|m| m.modified()) {
            newest = newest.max(t);
        }
    }
    built >= newest
}

/// The emu-app binary.
pub fn app() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_emu-app"))
}

/// A fresh scratch directory.
pub fn scratch(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("kubelet-emu-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("scratch dir");
    p
}

/// How the race between the native copy's first exit and its restart is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// The sidecar has no probe of its own: startupProbe `tandem-shim probe` on the
    /// native copy, plain `tandem-shim wait` as the regular copy's postStart.
    Probe,
    /// The sidecar has its own exec startupProbe (`emu-app ready`): the native copy
    /// keeps it, the regular copy's postStart is `tandem-shim wait -- emu-app ready`.
    OwnProbe,
    /// The API server may not take probes on the native copy: no probe there,
    /// `TANDEM_SETTLE_TIMEOUT` on the regular copy, whose postStart is
    /// `tandem-shim wait -- emu-app ready`.
    Timeout,
}

/// Knobs for [`universal_pod`].
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub policy: &'static str,
    pub settle: Settle,
    pub copy_delivery: bool,
    pub sidecar_args: Vec<String>,
    pub main_run_ms: u64,
    pub main_exit: i32,
    pub settle_timeout: &'static str,
}

impl PodSpec {
    /// Sets a settle timeout that keeps tests deterministic on a loaded machine:
    /// long on a native kubelet (the native copy's restart ends the wait early,
    /// so a long timeout costs nothing, and a slow restart cannot lose the race),
    /// short on an old one (it always waits the whole timeout; nothing races).
    pub fn on(mut self, flavour: Flavour) -> PodSpec {
        self.settle_timeout = if flavour == Flavour::Native {
            "30s"
        } else {
            "1s"
        };
        self
    }

    pub fn new(policy: &'static str, settle: Settle) -> PodSpec {
        PodSpec {
            policy,
            settle,
            copy_delivery: false,
            sidecar_args: vec!["sidecar".into()],
            main_run_ms: 300,
            main_exit: 0,
            settle_timeout: "3s",
        }
    }
}

/// A universal pod exactly as the engine contract describes it (crates/shim/CONTRACT.md).
pub fn universal_pod(s: &PodSpec) -> Value {
    let shim = if s.copy_delivery {
        "/var/run/tandem-bin/tandem-shim"
    } else {
        SHIM_IMAGE_PATH
    };
    let state_mount = json!({"name": "tandem-state", "mountPath": "/var/run/tandem"});
    let bin_mount =
        json!({"name": "tandem-bin", "mountPath": "/var/run/tandem-bin", "readOnly": true});
    let mut mounts = vec![state_mount];
    if s.copy_delivery {
        mounts.push(bin_mount);
    }
    let state_env = json!({"name": "TANDEM_STATE_DIR", "value": "/var/run/tandem"});
    let mut native = json!({
        "name": "logger", "image": "example/logger:1", "restartPolicy": "Always",
        "command": [shim, "native", "--", APP], "args": s.sidecar_args,
        "env": [state_env], "volumeMounts": mounts,
    });
    let mut legacy_env = vec![
        state_env.clone(),
        json!({"name": "TANDEM_POD_RESTART_POLICY", "value": s.policy}),
        json!({"name": "TANDEM_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        json!({"name": "TANDEM_POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
        json!({"name": "TANDEM_MAIN_CONTAINERS", "value": "app"}),
        json!({"name": "TANDEM_POLL_INTERVAL", "value": "100ms"}),
    ];
    let own_probe =
        json!({"exec": {"command": [APP, "ready"]}, "periodSeconds": 1, "failureThreshold": 60});
    let mut hook = vec![json!(shim), json!("wait")];
    match s.settle {
        Settle::Probe => {
            native["startupProbe"] = json!({"exec": {"command": [shim, "probe"]}, "periodSeconds": 1, "failureThreshold": 60});
        }
        Settle::OwnProbe => {
            native["startupProbe"] = own_probe;
            hook.extend([json!("--"), json!(APP), json!("ready")]);
        }
        Settle::Timeout => {
            legacy_env.push(json!({"name": "TANDEM_SETTLE_TIMEOUT", "value": s.settle_timeout}));
            hook.extend([json!("--"), json!(APP), json!("ready")]);
        }
    }
    let legacy = json!({
        "name": "logger-legacy", "image": "example/logger:1",
        "command": [shim, "legacy", "--", APP], "args": s.sidecar_args,
        "env": legacy_env, "volumeMounts": mounts,
        "lifecycle": {"postStart": {"exec": {"command": hook}}},
    });
    // Test-only: the main container mounts the state read-only so that emu-app can
    // record the handshake's phase at its start.
    let main = json!({
        "name": "app", "image": "busybox",
        "command": [APP, "main", "--run-ms", s.main_run_ms.to_string(), "--exit", s.main_exit.to_string()],
        "env": [{"name": "TANDEM_STATE_DIR", "value": "/var/run/tandem"}],
        "volumeMounts": [{"name": "tandem-state", "mountPath": "/var/run/tandem", "readOnly": true}],
    });
    let mut init = vec![];
    let mut volumes = vec![json!({"name": "tandem-state", "emptyDir": {"medium": "Memory"}})];
    if s.copy_delivery {
        init.push(json!({
            "name": "tandem-shim-install", "image": "ghcr.io/tandem-dev/tandem-shim:0.1.0",
            "command": ["/tandem-shim", "install", "/var/run/tandem-bin/tandem-shim"],
            "volumeMounts": [{"name": "tandem-bin", "mountPath": "/var/run/tandem-bin"}],
        }));
        volumes.push(json!({"name": "tandem-bin", "emptyDir": {}}));
    }
    init.push(native);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "team-a"},
        "spec": {
            "restartPolicy": s.policy,
            "terminationGracePeriodSeconds": 30,
            "initContainers": init,
            "containers": [legacy, main],
            "volumes": volumes,
        }
    })
}

/// Emulator options with the in-image paths mapped to the built binaries.
pub fn options(flavour: Flavour) -> Options {
    let mut o = Options::new(flavour);
    o.path_map = vec![
        (SHIM_IMAGE_PATH.into(), shim()),
        ("/tandem-shim".into(), shim()),
        (APP.into(), app()),
    ];
    o
}

/// Starts a pod on an emulated kubelet.
pub fn run(pod: &Value, opts: Options, tag: &str) -> Kubelet {
    let pod = Pod::from_value(pod).expect("pod");
    Kubelet::start(pod, opts, &scratch(tag))
}

/// History lines (text only).
pub fn history(k: &Kubelet) -> Vec<String> {
    markers::history(&k.markers())
        .into_iter()
        .map(|(_, l)| l)
        .collect()
}

/// Containers whose sidecar ever started acting.
pub fn actors(k: &Kubelet) -> Vec<String> {
    let mut v: Vec<String> = history(k)
        .iter()
        .filter_map(|l| l.strip_prefix("act-start "))
        .filter_map(|l| l.split(' ').next().map(String::from))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Asserts that no sidecar ever started while another one acted.
pub fn assert_never_two(k: &Kubelet) {
    for l in history(k) {
        if l.starts_with("act-start ") {
            assert!(
                l.ends_with("others=0"),
                "two copies acted at once: {l}\n{}",
                k.debug_dump()
            );
        }
    }
    let live = markers::live_acting(&k.markers());
    assert!(
        live.len() <= 1,
        "two copies acting now: {live:?}\n{}",
        k.debug_dump()
    );
}

/// Asserts every main container started after the handshake settled on
/// `actor`, and (when the sidecar has a readiness check, `ready`) while exactly
/// one sidecar acted. Without a readiness check, "started" means what it means
/// for a native sidecar without a startupProbe: its process has been started.
pub fn assert_sidecar_before_mains(k: &Kubelet, actor: &str, ready: bool) {
    let phase = if actor == "logger" {
        "native-running"
    } else {
        "legacy-active"
    };
    let starts: Vec<String> = history(k)
        .into_iter()
        .filter(|l| l.starts_with("main-start "))
        .collect();
    assert!(
        !starts.is_empty(),
        "no main container started\n{}",
        k.debug_dump()
    );
    for l in starts {
        assert!(
            l.ends_with(&format!("state={phase}")),
            "main started before the handshake settled on {actor}: {l}\n{}",
            k.debug_dump()
        );
        if ready {
            assert!(
                l.contains(" acting=1 "),
                "main started without exactly one acting sidecar: {l}\n{}",
                k.debug_dump()
            );
        } else {
            assert!(
                !l.contains(" acting=2"),
                "two sidecars acting at main start: {l}\n{}",
                k.debug_dump()
            );
        }
    }
}

/// Waits until exactly one sidecar acts (by live markers) and returns its container.
pub fn wait_one_acting(k: &Kubelet) -> String {
    let end = std::time::Instant::now() + LONG;
    loop {
        let live = markers::live_acting(&k.markers());
        if live.len() == 1 {
            return live[0].0.clone();
        }
        assert!(
            live.len() < 2,
            "two copies acting: {live:?}\n{}",
            k.debug_dump()
        );
        if std::time::Instant::now() > end {
            panic!("no copy acting after {LONG:?}\n{}", k.debug_dump());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The copy expected to act on each flavour.
pub fn expected_actor(f: Flavour) -> &'static str {
    match f {
        Flavour::Native => "logger",
        _ => "logger-legacy",
    }
}
