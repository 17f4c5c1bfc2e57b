//! Entrypoint duties: run CMD as a child, forward signals, reap zombies, give a
//! grace period before SIGKILL, pass the exit code through; and the idle loop.
//!
//! Signals are blocked in `main` before anything else and collected with
//! `sigtimedwait`, so there are no async signal handlers. CMD is started with
//! `posix_spawnp` ([`sys::spawn`]) with an empty signal mask, so it starts with
//! no signal blocked and the dispositions the shim itself was given.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{self, ExitStatus, SignalSet};

/// Exit code when CMD does not exist (as shells do).
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code when CMD exists but cannot be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;

/// How to supervise CMD.
pub struct Options {
    /// Time CMD gets after SIGTERM before SIGKILL.
    pub grace: Duration,
    /// Set by the Job-completion watcher when the pod's main containers finished:
    /// the supervisor then stops CMD and exits 0.
    pub stop_requested: Option<Arc<AtomicBool>>,
}

/// Spawns CMD and supervises it until it ends. Returns the shim's exit code.
pub fn run(cmd: &[String], sigs: &SignalSet, opts: &Options) -> i32 {
    let Some(prog) = cmd.first() else {
        crate::log("no command given after `--`");
        return 2;
    };
    let pid = match sys::spawn(cmd) {
        Ok(pid) => pid,
        Err(e) => return spawn_error(prog, &e),
    };
    supervise(pid, sigs, opts)
}

fn spawn_error(prog: &str, e: &io::Error) -> i32 {
    let (code, why) = match e.kind() {
        io::ErrorKind::NotFound => (
            EXIT_NOT_FOUND,
            "not found (check the sidecar's command and that its image has it; a bare name is looked up in PATH)",
        ),
        io::ErrorKind::PermissionDenied => (
            EXIT_NOT_EXECUTABLE,
            "permission denied (not executable, or on a noexec mount)",
        ),
        _ => (EXIT_NOT_EXECUTABLE, "cannot be executed"),
    };
    crate::log(&format!("cannot run CMD {prog:?}: {why}: {e}"));
    code
}

fn supervise(pid: i32, sigs: &SignalSet, opts: &Options) -> i32 {
    let mut kill_at: Option<Instant> = None;
    let mut stopping_for_job = false;
    loop {
        // Reap everything that has exited (as PID 1 that includes orphans).
        loop {
            match sys::reap_any() {
                Ok(Some((p, st))) if p == pid => {
                    if stopping_for_job {
                        crate::log(&format!(
                            "CMD ended ({}) after the pod's main containers finished; exiting 0 so the Job completes",
                            describe(st)
                        ));
                        return 0;
                    }
                    if let ExitStatus::Signal(s) = st {
                        crate::log(&format!("CMD killed by {} ({s})", sys::signal_name(s)));
                    }
                    return st.as_exit_code();
                }
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => {
                    crate::log(&format!("waitpid failed: {e}"));
                    break;
                }
            }
        }
        let now = Instant::now();
        if let Some(t) = kill_at
            && now >= t
        {
            crate::log("grace period over: sending SIGKILL to CMD");
            let _ = sys::kill(pid, libc::SIGKILL);
            kill_at = None;
        }
        if !stopping_for_job
            && let Some(flag) = &opts.stop_requested
            && flag.load(Ordering::Acquire)
        {
            stopping_for_job = true;
            crate::log("the pod's main containers finished: stopping CMD (SIGTERM)");
            let _ = sys::kill(pid, libc::SIGTERM);
            kill_at.get_or_insert(now + opts.grace);
        }
        let mut wait = Duration::from_millis(if opts.stop_requested.is_some() {
            100
        } else {
            60_000
        });
        if let Some(t) = kill_at {
            wait = wait.min(t.saturating_duration_since(now));
        }
        match sys::wait_signal(sigs, wait) {
            Ok(Some(libc::SIGCHLD)) | Ok(None) => {}
            Ok(Some(s)) => {
                let _ = sys::kill(pid, s);
                if s == libc::SIGTERM && kill_at.is_none() {
                    kill_at = Some(Instant::now() + opts.grace);
                }
            }
            Err(e) => {
                crate::log(&format!("sigtimedwait failed: {e}"));
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn describe(st: ExitStatus) -> String {
    match st {
        ExitStatus::Code(c) => format!("exit code {c}"),
        ExitStatus::Signal(s) => format!("{} ({s})", sys::signal_name(s)),
    }
}

/// Does nothing until SIGTERM or SIGINT (then exits 0), reaping zombies meanwhile.
/// Used by the regular copy while the native copy acts in a `restartPolicy: Always` pod.
pub fn idle(sigs: &SignalSet) -> i32 {
    loop {
        while let Ok(Some(_)) = sys::reap_any() {}
        match sys::wait_signal(sigs, Duration::from_secs(3600)) {
            Ok(Some(s)) if s == libc::SIGTERM || s == libc::SIGINT => return 0,
            Ok(_) => {}
            Err(e) => {
                crate::log(&format!("sigtimedwait failed: {e}"));
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}
