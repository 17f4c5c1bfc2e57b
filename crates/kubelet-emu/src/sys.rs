//! The emulator's only `unsafe`: process-group kills, liveness checks and the
//! SIGTERM flag handler of `emu-app`.
#![allow(unsafe_code)]

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};

/// Sends `sig` to process `pid` (errors such as "already gone" are ignored).
pub fn kill(pid: u32, sig: i32) {
    // SAFETY: kill has no memory effects.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Sends `sig` to the process group `pgid` (a container's processes).
pub fn kill_group(pgid: u32, sig: i32) {
    // SAFETY: kill has no memory effects.
    unsafe {
        libc::kill(-(pgid as i32), sig);
    }
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    let exists = unsafe { libc::kill(pid as i32, 0) } == 0;
    if !exists {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

static FLAG: std::sync::OnceLock<&'static AtomicBool> = std::sync::OnceLock::new();

extern "C" fn on_term(_: libc::c_int) {
    if let Some(f) = FLAG.get() {
        f.store(true, Ordering::Relaxed);
    }
}

/// Sets `flag` on SIGTERM (or ignores SIGTERM when `ignore`).
pub fn on_sigterm(flag: &'static AtomicBool, ignore: bool) {
    let _ = FLAG.set(flag);
    // SAFETY: the handler only stores into an atomic (async-signal-safe).
    unsafe {
        if ignore {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        } else {
            libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        }
    }
}
