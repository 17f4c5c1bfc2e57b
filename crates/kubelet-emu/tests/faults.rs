//! Fault tests of tandem-shim as a process: killed between temp write and rename,
//! read-only state directory, unknown state, CMD missing / not executable / killed
//! by a signal, signal forwarding and the grace period, `install`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tandem_kubelet_emu::sys;

fn shim_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(shim());
    c.args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("TANDEM_STATE_DIR", dir)
        .env("TANDEM_SANDBOX_ID", "sb-1")
        .stdin(Stdio::null());
    c
}

fn out(mut c: Command) -> Output {
    c.output().expect("run shim")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn state(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("state")).ok()
}

fn wait_stopped(pid: u32) {
    let end = Instant::now() + LONG;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('T'))
        {
            return;
        }
        assert!(Instant::now() < end, "shim never reached the fault point");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs the shim with the fault hook, SIGKILLs it between temp write and rename.
fn kill_before_rename(dir: &Path, args: &[&str]) {
    let mut c = shim_cmd(dir, args);
    c.env("TANDEM_FAULT_INJECT", "stop-before-rename")
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("spawn");
    wait_stopped(child.id());
    sys::kill(child.id(), libc::SIGKILL);
    let _ = child.wait();
}

#[test]
fn killed_between_temp_write_and_rename() {
    let dir = scratch("fault-rename");
    // 1. first run killed: no state yet, only a stray temp file
    kill_before_rename(&dir, &["native", "--", "true"]);
    assert_eq!(state(&dir), None, "state must not change before the rename");
    let temps = || {
        std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".state.tmp."))
            .count()
    };
    assert_eq!(temps(), 1, "the killed write leaves its temp file");
    // status and probe ignore the temp file
    let o = out(shim_cmd(&dir, &["status"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("absent"));
    // the retry (the kubelet restarts the init container) succeeds and cleans up
    let o = out(shim_cmd(&dir, &["native", "--", "true"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(state(&dir).is_some_and(|s| s.contains(" first-run ")));
    assert_eq!(temps(), 0, "stale temp removed by the next writer");
    // 2. the restart's transition first-run -> native-running killed: still first-run
    kill_before_rename(&dir, &["native", "--", "true"]);
    assert!(state(&dir).is_some_and(|s| s.contains(" first-run ")));
    // 3. the regular copy's claim killed: still first-run, nobody acts; a retry claims
    kill_before_rename(&dir, &["legacy", "--", "true"]);
    assert!(state(&dir).is_some_and(|s| s.contains(" first-run ")));
    let o = out(shim_cmd(&dir, &["legacy", "--", "true"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(state(&dir).is_some_and(|s| s.contains(" legacy-active ")));
    // and the native copy now stands down
    let o = out(shim_cmd(&dir, &["native", "--", "sh", "-c", "exit 9"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// Runs as an unprivileged user so that a 0555 directory is really read-only
/// (tests run as root here; root ignores mode bits).
fn as_nobody(c: &mut Command) {
    c.uid(65534).gid(65534);
}

#[test]
fn read_only_state_dir() {
    let dir = scratch("fault-ro");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let root = is_root();
    for role in ["native", "legacy"] {
        let marker = dir.with_extension(format!("{role}-ran"));
        let mut c = shim_cmd(&dir, &[role, "--", "touch", marker.to_str().expect("utf8")]);
        if root {
            as_nobody(&mut c);
        }
        let o = out(c);
        assert_eq!(o.status.code(), Some(3), "{role}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("cannot"),
            "{role}: unclear error: {}",
            stderr(&o)
        );
        assert!(!marker.exists(), "{role} acted without recording the state");
    }
    assert_eq!(state(&dir), None);
    // reads still work: with a state written earlier, the probe answers and the
    // regular copy stands down without writing anything.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(
        dir.join("state"),
        "tandem-state/1 native-running sandbox=sb-1\n",
    )
    .expect("w");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let mut c = shim_cmd(&dir, &["probe"]);
    if root {
        as_nobody(&mut c);
    }
    assert!(out(c).status.success());
    let mut c = shim_cmd(
        &dir,
        &["legacy", "--pod-restart-policy", "Never", "--", "false"],
    );
    if root {
        as_nobody(&mut c);
    }
    let o = out(c);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn missing_state_dir_and_unknown_state_are_reported() {
    let dir = scratch("fault-unknown");
    let gone = dir.join("nope");
    let o = out(shim_cmd(&gone, &["native", "--", "true"]));
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("state directory"), "{}", stderr(&o));
    std::fs::write(dir.join("state"), "legacy-active\n").expect("w");
    for role in ["native", "legacy"] {
        let marker = dir.with_extension(format!("{role}-ran"));
        let o = out(shim_cmd(
            &dir,
            &[role, "--", "touch", marker.to_str().expect("utf8")],
        ));
        assert_eq!(o.status.code(), Some(3), "{role}");
        assert!(stderr(&o).contains("state unknown"), "{}", stderr(&o));
        assert!(!marker.exists(), "{role} acted on an unknown state");
    }
    let o = out(shim_cmd(&dir, &["status"]));
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stdout).contains("UNKNOWN"));
    assert!(!out(shim_cmd(&dir, &["probe"])).status.success());
    assert_eq!(
        state(&dir).as_deref(),
        Some("legacy-active\n"),
        "never overwritten"
    );
}

fn acting_dir() -> std::path::PathBuf {
    let dir = scratch("fault-cmd");
    std::fs::write(
        dir.join("state"),
        "tandem-state/1 native-running sandbox=sb-1\n",
    )
    .expect("w");
    dir
}

#[test]
fn cmd_missing_or_not_executable() {
    let dir = acting_dir();
    let o = out(shim_cmd(&dir, &["native", "--", "/no/such/sidecar"]));
    assert_eq!(o.status.code(), Some(127));
    assert!(
        stderr(&o).contains("\"/no/such/sidecar\": not found"),
        "{}",
        stderr(&o)
    );
    let o = out(shim_cmd(&dir, &["native", "--", "no-such-sidecar-in-path"]));
    assert_eq!(o.status.code(), Some(127));
    let noexec = dir.join("plain-file");
    std::fs::write(&noexec, "#!/bin/sh\n").expect("w");
    std::fs::set_permissions(&noexec, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut c = shim_cmd(&dir, &["native", "--", noexec.to_str().expect("utf8")]);
    if is_root() {
        // root may execute nothing without an x bit either, but be explicit
        as_nobody(&mut c);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let o = out(c);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    assert!(stderr(&o).contains("permission denied"), "{}", stderr(&o));
    let o = out(shim_cmd(&dir, &["native"]));
    assert_eq!(o.status.code(), Some(2), "no CMD is a usage error");
}

#[test]
fn cmd_exit_codes_and_signals_pass_through() {
    let dir = acting_dir();
    let code = |script: &str| {
        out(shim_cmd(&dir, &["native", "--", "sh", "-c", script]))
            .status
            .code()
    };
    assert_eq!(code("exit 0"), Some(0));
    assert_eq!(code("exit 7"), Some(7));
    assert_eq!(code("kill -TERM $$"), Some(143));
    assert_eq!(code("kill -KILL $$"), Some(137));
    assert_eq!(code("kill -SEGV $$"), Some(139));
}

#[test]
fn forwards_signals_and_enforces_the_grace_period() {
    let dir = acting_dir();
    // Each forwarded signal reaches CMD, which reports it through its exit code.
    for (sig, n) in [
        (libc::SIGTERM, 15),
        (libc::SIGINT, 2),
        (libc::SIGHUP, 1),
        (libc::SIGQUIT, 3),
        (libc::SIGUSR1, 10),
        (libc::SIGUSR2, 12),
    ] {
        let ready = dir.join(format!("ready-{n}"));
        let script = format!(
            "trap 'exit {n}' {n}; touch {}; while :; do sleep 0.01; done",
            ready.display()
        );
        let mut child = shim_cmd(&dir, &["native", "--", "sh", "-c", &script])
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let end = Instant::now() + LONG;
        while !ready.exists() {
            assert!(Instant::now() < end);
            std::thread::sleep(Duration::from_millis(2));
        }
        sys::kill(child.id(), sig);
        let st = child.wait().expect("wait");
        assert_eq!(st.code(), Some(n), "signal {n} not forwarded");
    }
    // SIGTERM ignored by CMD: SIGKILL after the shim's grace period → 137.
    let ready = dir.join("ready-ignore");
    let script = format!(
        "trap '' TERM; touch {}; while :; do sleep 0.01; done",
        ready.display()
    );
    let mut child = shim_cmd(
        &dir,
        &[
            "native",
            "--grace-period",
            "300ms",
            "--",
            "sh",
            "-c",
            &script,
        ],
    )
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn");
    let end = Instant::now() + LONG;
    while !ready.exists() {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(2));
    }
    let t = Instant::now();
    sys::kill(child.id(), libc::SIGTERM);
    let st = child.wait().expect("wait");
    assert_eq!(st.code(), Some(137));
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "killed before the grace period"
    );
}

#[test]
fn exits_with_cmd_code_without_waiting_for_grandchildren() {
    // CMD leaves a background grandchild behind and exits; the shim exits with
    // CMD's code at once (as PID 1 the kernel then ends the rest of the namespace).
    let dir = acting_dir();
    let o = out(shim_cmd(
        &dir,
        &["native", "--", "sh", "-c", "sleep 0.2 & exit 4"],
    ));
    assert_eq!(o.status.code(), Some(4));
}

#[test]
fn install_copies_itself_atomically() {
    let dir = scratch("install");
    let dest = dir.join("bin/tandem-shim");
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    let o = out(shim_cmd(&dir, &["install", dest.to_str().expect("utf8")]));
    assert!(o.status.success(), "{}", stderr(&o));
    let mode = std::fs::metadata(&dest).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);
    assert_eq!(
        std::fs::read(&dest).expect("r"),
        std::fs::read(shim()).expect("r")
    );
    let leftovers = std::fs::read_dir(dest.parent().expect("p"))
        .expect("d")
        .count();
    assert_eq!(leftovers, 1, "no temp file left");
    let v = Command::new(&dest)
        .arg("--version")
        .output()
        .expect("run installed");
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("tandem-shim "));
    let o = out(shim_cmd(&dir, &["install", "/nonexistent-dir/x"]));
    assert_eq!(o.status.code(), Some(1));
}

/// (pid, ppid, state) of every process.
fn procs() -> Vec<(u32, u32, char)> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let st = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push((pid, ppid, st));
    }
    out
}

/// As PID 1 of its own PID namespace (as in a container), the shim reaps orphans
/// that CMD leaves behind. Skipped where `unshare --pid` is not permitted.
#[test]
fn reaps_orphans_as_pid_1() {
    let ok = Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: unshare --pid not permitted here");
        return;
    }
    let dir = acting_dir();
    let ready = dir.join("orphans-gone");
    // Two orphans are re-parented to PID 1 (the shim) and exit; CMD keeps running.
    let script = format!(
        "(sleep 0.1 &); (sleep 0.1 &); sleep 0.6; touch {}; sleep 30",
        ready.display()
    );
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork"])
        .arg(shim())
        .args(["native", "--state-dir"])
        .arg(&dir)
        .args(["--", "sh", "-c", &script])
        .env("TANDEM_SANDBOX_ID", "sb-1")
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let end = Instant::now() + LONG;
    while !ready.exists() {
        assert!(Instant::now() < end, "CMD never got ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    let all = procs();
    let shim_pid = all
        .iter()
        .find(|(_, ppid, _)| *ppid == child.id())
        .map(|(pid, _, _)| *pid)
        .expect("shim under unshare");
    let zombies: Vec<_> = all
        .iter()
        .filter(|(_, ppid, st)| *ppid == shim_pid && *st == 'Z')
        .collect();
    assert!(
        zombies.is_empty(),
        "unreaped children of the shim: {zombies:?}"
    );
    sys::kill(shim_pid, libc::SIGTERM);
    let st = child.wait().expect("wait");
    // unshare passes on the shim's exit: CMD's SIGTERM death, 128+15.
    assert_eq!(st.code(), Some(143));
}

/// Runs a shim command with a deadline: `None` if it was still running then (killed).
fn out_within(mut c: Command, limit: Duration) -> Option<Output> {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let end = Instant::now() + limit;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().expect("mkfifo");
    assert!(st.success(), "mkfifo {}", p.display());
}

#[test]
fn a_fifo_at_the_state_file_or_dir_hangs_nothing() {
    // issue 15: a FIFO at DIR/state hung `probe` and `native`, the latter while holding
    // the lock, so the other copy blocked too.
    let dir = scratch("fault-fifo");
    mkfifo(&dir.join("state"));
    let limit = Duration::from_secs(5);
    let o = out_within(shim_cmd(&dir, &["probe"]), limit).expect("probe hung on a FIFO");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("FIFO"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    for role in ["native", "legacy"] {
        let marker = dir.with_extension(format!("{role}-fifo-ran"));
        let o = out_within(
            shim_cmd(&dir, &[role, "--", "touch", marker.to_str().expect("utf8")]),
            limit,
        )
        .unwrap_or_else(|| panic!("{role} hung on a FIFO"));
        assert_eq!(o.status.code(), Some(3), "{role}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("is a FIFO, not a regular file"),
            "{role}: {}",
            stderr(&o)
        );
        assert!(!marker.exists(), "{role} acted on a FIFO");
    }
    let o = out_within(shim_cmd(&dir, &["status"]), limit).expect("status hung on a FIFO");
    assert_eq!(o.status.code(), Some(3));
    let o = out_within(shim_cmd(&dir, &["wait", "--timeout", "200ms"]), limit)
        .expect("wait hung on a FIFO");
    assert_ne!(o.status.code(), Some(0));

    // A FIFO where the state directory should be.
    let parent = scratch("fault-fifo-dir");
    let fifo_dir = parent.join("tandem");
    mkfifo(&fifo_dir);
    for args in [
        &["native", "--", "true"][..],
        &["legacy", "--", "true"],
        &["probe"],
    ] {
        let o = out_within(shim_cmd(&fifo_dir, args), limit)
            .unwrap_or_else(|| panic!("{args:?} hung on a FIFO state directory"));
        assert_ne!(o.status.code(), Some(0), "{args:?}");
    }
}

#[test]
fn the_native_first_run_exits_right_after_its_rename() {
    // issue 15, the old-kubelet window: a native copy killed after `first-run` is in
    // place but before it exits is retried by an old kubelet and acts as an endless init
    // container. The window is every system call between the rename and exit_group
    // (the directory fsync took milliseconds on disk): there must be none.
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("SKIPPED: strace is not installed (apt-get install strace)");
        return;
    }
    for dir in [scratch("fault-exit-disk"), {
        let p = Path::new("/dev/shm").join(format!("tandem-exit-{}", std::process::id()));
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }] {
        let trace = dir.with_extension("trace");
        let mut c = Command::new("strace");
        c.args(["-qq", "-o"])
            .arg(&trace)
            .arg(shim())
            .args(["native", "--", "true"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("TANDEM_STATE_DIR", &dir)
            .env("TANDEM_SANDBOX_ID", "sb-1")
            .stdin(Stdio::null());
        let o = out(c);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(state(&dir).is_some_and(|s| s.contains("first-run")));
        // Only medium: Memory is supported; a disk-backed state directory is warned about.
        assert_eq!(
            stderr(&o).contains("is not a tmpfs"),
            !dir.starts_with("/dev/shm"),
            "{}",
            stderr(&o)
        );
        let text = std::fs::read_to_string(&trace).expect("trace");
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .rposition(|l| l.starts_with("rename") && l.contains("/state\""))
            .unwrap_or_else(|| panic!("no rename of the state file in:\n{text}"));
        assert!(
            lines[at + 1].starts_with("exit_group(0)"),
            "system calls between the first-run rename and the exit:\n{}",
            lines[at..].join("\n")
        );
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&trace);
    }
}
