//! The only place with `unsafe`: thin wrappers over the POSIX calls std lacks
//! (signal masks, `sigtimedwait`, `posix_spawnp`, `waitpid`, `kill`).
//!
//! Every wrapper checks its return value and hands back a `std::io::Result` or a
//! plain value; nothing here keeps state. Callers never touch `libc` directly.
#![allow(unsafe_code)]

use std::io;
use std::time::Duration;

/// Signals the shim forwards to CMD (besides using SIGTERM for the grace period).
pub const FORWARDED: [i32; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Puts the forwarded signals and SIGCHLD back to their default dispositions. An
/// inherited `SIG_IGN` (a parent run under `nohup`, or a runtime that ignores SIGHUP)
/// would otherwise discard them even while blocked, so [`wait_signal`] never sees
/// them, and an ignored SIGCHLD makes the kernel reap CMD behind our back.
pub fn reset_dispositions() {
    for s in FORWARDED.into_iter().chain([libc::SIGCHLD]) {
        // SAFETY: setting a valid signal to SIG_DFL installs no handler code.
        unsafe {
            libc::signal(s, libc::SIG_DFL);
        }
    }
}

/// A set of signals that the calling thread blocks and collects with [`wait_signal`].
pub struct SignalSet(libc::sigset_t);

impl SignalSet {
    /// The forwarded signals plus SIGCHLD.
    pub fn supervisor() -> SignalSet {
        // SAFETY: sigemptyset/sigaddset only write into the sigset_t we own; the
        // signal numbers are valid constants.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in FORWARDED {
                libc::sigaddset(&mut set, s);
            }
            libc::sigaddset(&mut set, libc::SIGCHLD);
            SignalSet(set)
        }
    }

    /// Blocks the set in the calling thread so that the signals queue up for
    /// [`wait_signal`] instead of running default actions. Children must be
    /// spawned through [`spawn`], or they inherit the blocked mask.
    pub fn block(&self) -> io::Result<()> {
        // SAFETY: pthread_sigmask reads the set we own; old mask not requested.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.0, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    }
}

/// Starts `argv` (PATH is searched for a bare name) with `posix_spawnp`:
/// a vfork-style clone, so no page tables are copied, with an empty signal mask
/// and SIGPIPE back to its default (Rust ignores it in the shim itself). glibc
/// reports exec failures (ENOENT, EACCES, ...) as the returned error.
pub fn spawn(argv: &[String]) -> io::Result<i32> {
    use std::ffi::CString;
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| {
            CString::new(a.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
        })
        .collect::<io::Result<_>>()?;
    if cargs.is_empty() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut ptrs: Vec<*mut libc::c_char> = cargs.iter().map(|c| c.as_ptr() as *mut _).collect();
    ptrs.push(std::ptr::null_mut());
    unsafe extern "C" {
        static environ: *const *mut libc::c_char;
    }
    // SAFETY: every pointer handed to libc lives until posix_spawnp returns: the
    // CStrings and the pointer array above, the attr object initialised here and
    // destroyed before returning, and the process environment.
    unsafe {
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        let rc = libc::posix_spawnattr_init(&mut attr);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let mut dfl: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut dfl);
        libc::sigaddset(&mut dfl, libc::SIGPIPE);
        // CMD starts with default dispositions for what we forward, whatever ours were.
        for s in FORWARDED {
            libc::sigaddset(&mut dfl, s);
        }
        libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        libc::posix_spawnattr_setsigdefault(&mut attr, &dfl);
        libc::posix_spawnattr_setflags(
            &mut attr,
            (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
        );
        let mut pid: libc::pid_t = 0;
        let rc = libc::posix_spawnp(
            &mut pid,
            ptrs[0],
            std::ptr::null(),
            &attr,
            ptrs.as_ptr(),
            environ,
        );
        libc::posix_spawnattr_destroy(&mut attr);
        if rc == 0 {
            Ok(pid)
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    }
}

/// Waits up to `timeout` for one signal of `set` (which must be blocked).
/// Returns `Ok(None)` on timeout or interruption.
pub fn wait_signal(set: &SignalSet, timeout: Duration) -> io::Result<Option<i32>> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: pointers to our own set and timespec; siginfo is not requested.
    let rc = unsafe { libc::sigtimedwait(&set.0, std::ptr::null_mut(), &ts) };
    if rc >= 0 {
        return Ok(Some(rc));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
        _ => Err(err),
    }
}

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + signal number.
    pub fn as_exit_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// Reaps one exited child of any pid without blocking.
/// `Ok(None)`: nothing to reap now (or no children at all).
pub fn reap_any() -> io::Result<Option<(i32, ExitStatus)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid writes only into `status`.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid == 0 {
        return Ok(None);
    }
    if pid < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ECHILD) => Ok(None),
            _ => Err(err),
        };
    }
    let st = if libc::WIFSIGNALED(status) {
        ExitStatus::Signal(libc::WTERMSIG(status))
    } else {
        ExitStatus::Code(libc::WEXITSTATUS(status))
    };
    Ok(Some((pid, st)))
}

/// Sends `sig` to `pid`. ESRCH (already gone) is not an error.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory effects.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Ends the process at once with `code`: no destructors, no buffered-output flush, no
/// further system call. Used right after the `first-run` rename so that a kill can land
/// between that rename and the exit for as short a time as possible.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust-managed memory.
    unsafe { libc::_exit(code) }
}

/// True when `path` is on a tmpfs (an `emptyDir` with `medium: Memory`); `None` if unknown.
pub fn on_tmpfs(path: &std::path::Path) -> Option<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs writes into the zeroed struct we own; c is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    Some(i64::from(st.f_type) == TMPFS_MAGIC)
}

/// Stops the calling process (SIGSTOP): used only by the fault-injection hook.
pub fn stop_self() {
    // SAFETY: raise has no memory effects.
    unsafe {
        libc::raise(libc::SIGSTOP);
    }
}

/// Human name of a signal number, for log lines.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGKILL => "SIGKILL",
        libc::SIGCHLD => "SIGCHLD",
        _ => "signal",
    }
}
