//! The state file in the shared directory: its format, locking, and atomic writes.
//!
//! One file, `DIR/state`, holds one line: `tandem-state/1 <phase> sandbox=<id>`.
//! Writers hold an exclusive `flock` on the directory itself (so a read-only
//! directory can still be locked and read), write `DIR/.state.tmp.<pid>`, fsync it,
//! rename it over `DIR/state` and fsync the directory. Readers need no lock: a
//! rename is atomic, so they see the old or the new line, never a torn one.
//! Temp files left by a writer that was killed are ignored by readers and removed
//! by the next writer (it holds the lock, so no live writer can own them).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Name of the state file inside the state directory.
pub const STATE_FILE: &str = "state";
const TMP_PREFIX: &str = ".state.tmp.";
const MAGIC: &str = "tandem-state/1";

/// Which step of the handshake the pod is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The native copy ran once and exited 0 (the seed's "first run" file).
    FirstRun,
    /// The native copy was restarted in place: the kubelet runs native sidecars, and it acts.
    NativeRunning,
    /// The regular copy claimed the role and acts.
    LegacyActive,
}

impl Phase {
    /// The word written to the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::FirstRun => "first-run",
            Phase::NativeRunning => "native-running",
            Phase::LegacyActive => "legacy-active",
        }
    }

    fn parse(s: &str) -> Option<Phase> {
        match s {
            "first-run" => Some(Phase::FirstRun),
            "native-running" => Some(Phase::NativeRunning),
            "legacy-active" => Some(Phase::LegacyActive),
            _ => None,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state record: the phase and the pod sandbox it was written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Handshake step.
    pub phase: Phase,
    /// Identity of the pod sandbox that wrote it (see [`sandbox_id`]).
    pub sandbox: String,
}

impl Record {
    /// The file's content for this record.
    pub fn encode(&self) -> String {
        format!("{MAGIC} {} sandbox={}\n", self.phase, self.sandbox)
    }

    /// Parses a file's content strictly; `None` for anything unexpected.
    pub fn decode(text: &str) -> Option<Record> {
        let line = text.strip_suffix('\n')?;
        if line.contains('\n') {
            return None;
        }
        let mut parts = line.split(' ');
        if parts.next()? != MAGIC {
            return None;
        }
        let phase = Phase::parse(parts.next()?)?;
        let sandbox = parts.next()?.strip_prefix("sandbox=")?;
        if parts.next().is_some() || sandbox.is_empty() {
            return None;
        }
        Some(Record {
            phase,
            sandbox: sandbox.to_string(),
        })
    }
}

/// What a reader found in the state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// No state file: nobody has run yet.
    Absent,
    /// A well-formed record.
    Known(Record),
    /// The file exists but cannot be read or is not a record we know. Never guessed at.
    Unknown(String),
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Absent => f.write_str("absent (no state file yet)"),
            Observed::Known(r) => write!(f, "{} (sandbox {})", r.phase, r.sandbox),
            Observed::Unknown(why) => write!(f, "UNKNOWN: {why}"),
        }
    }
}

/// The shared state directory (the `emptyDir` both copies mount).
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

/// The state directory while this process holds its exclusive lock.
/// The lock is released when this value is dropped (or the process dies).
pub struct Locked<'a> {
    dir: &'a StateDir,
    _lock: File,
}

impl StateDir {
    /// A state directory at `path` (not touched yet).
    pub fn new(path: impl Into<PathBuf>) -> StateDir {
        StateDir { path: path.into() }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state file's path.
    pub fn file(&self) -> PathBuf {
        self.path.join(STATE_FILE)
    }

    /// Marker that `tandem-shim wait` (the regular copy's postStart hook) leaves
    /// when it returns in sandbox `sandbox`, so that a regular copy standing down
    /// exits only after its hook finished (a hook cannot run in a dead container).
    pub fn waited_marker(&self, sandbox: &str) -> PathBuf {
        let safe: String = sandbox
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.path.join(format!(".waited.{safe}"))
    }

    /// Takes the exclusive lock (blocking) on the directory itself. The directory is
    /// opened non-blocking and must be one (`O_DIRECTORY`): a FIFO there would otherwise
    /// block the open forever.
    pub fn lock(&self) -> io::Result<Locked<'_>> {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&self.path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open state directory {}: {e}", self.path.display()),
                )
            })?;
        f.lock().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot lock state directory {}: {e}", self.path.display()),
            )
        })?;
        Ok(Locked {
            dir: self,
            _lock: f,
        })
    }

    /// Reads the state without the lock (atomic thanks to rename). The file is opened
    /// non-blocking and must be a regular file: a FIFO, socket or device at `DIR/state`
    /// is reported as unknown state instead of hanging the reader (and, under the lock,
    /// the other copy).
    pub fn read(&self) -> Observed {
        let path = self.file();
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path);
        let f = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Distinguish "no file yet" from "no directory at all".
                return match fs::metadata(&self.path) {
                    Ok(m) if m.is_dir() => Observed::Absent,
                    Ok(_) => {
                        Observed::Unknown(format!("{} is not a directory", self.path.display()))
                    }
                    Err(e) => Observed::Unknown(format!(
                        "state directory {} unusable: {e}",
                        self.path.display()
                    )),
                };
            }
            Err(e) => return Observed::Unknown(format!("cannot open {}: {e}", path.display())),
        };
        match f.metadata() {
            Ok(m) if m.file_type().is_file() => {}
            Ok(m) => {
                return Observed::Unknown(format!(
                    "{} is {}, not a regular file",
                    path.display(),
                    file_kind(&m.file_type())
                ));
            }
            Err(e) => return Observed::Unknown(format!("cannot stat {}: {e}", path.display())),
        }
        let mut buf = Vec::with_capacity(96);
        // Bound the read: a valid record is short.
        if let Err(e) = f.take(4096).read_to_end(&mut buf) {
            return Observed::Unknown(format!("cannot read {}: {e}", path.display()));
        }
        match std::str::from_utf8(&buf).ok().and_then(Record::decode) {
            Some(r) => Observed::Known(r),
            None => Observed::Unknown(format!(
                "{} holds {:?}, which is not a tandem state record",
                path.display(),
                String::from_utf8_lossy(&buf[..buf.len().min(120)])
            )),
        }
    }
}

/// `a FIFO`, `a socket`, … for messages about a file that should be a regular one.
pub fn file_kind(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

impl Locked<'_> {
    /// Reads the state (under the lock).
    pub fn read(&self) -> Observed {
        self.dir.read()
    }

    /// Replaces the state atomically: temp file, fsync, rename, fsync directory.
    pub fn write(&self, rec: &Record) -> io::Result<()> {
        self.put(rec, None)
    }

    /// Writes `first-run` and exits with `code` right after the rename: nothing (no
    /// directory fsync, no log line, no unlock, no destructor) between the moment the
    /// record is in place and the exit, so that a native copy killed there — on an old
    /// kubelet it would be retried and act as an endless init container — is as unlikely
    /// as it can be. The directory fsync is not needed for this record: it only matters
    /// across a node crash, after which the boot id (part of the sandbox id) differs and
    /// a `first-run` of the old boot means "detect again" anyway. Returns only on error.
    pub fn write_and_exit(&self, rec: &Record, code: i32) -> io::Error {
        match self.put(rec, Some(code)) {
            Ok(()) => io::Error::other("exit after write did not happen"),
            Err(e) => e,
        }
    }

    fn put(&self, rec: &Record, exit_after_rename: Option<i32>) -> io::Result<()> {
        let dir = &self.dir.path;
        self.remove_stale_temps();
        let tmp = dir.join(format!("{TMP_PREFIX}{}", std::process::id()));
        let ctx = |what: &str, e: io::Error| {
            io::Error::new(e.kind(), format!("cannot {what} in {}: {e}", dir.display()))
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| ctx("create a temp file", e))?;
        f.write_all(rec.encode().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                ctx("write the temp file", e)
            })?;
        drop(f);
        if std::env::var_os("TANDEM_FAULT_INJECT").is_some_and(|v| v == "stop-before-rename") {
            // Fault-injection hook for tests: freeze here so a test can SIGKILL us
            // between the temp write and the rename.
            crate::sys::stop_self();
        }
        let renamed = fs::rename(&tmp, self.dir.file());
        if let (Ok(()), Some(code)) = (&renamed, exit_after_rename) {
            crate::sys::exit_now(code);
        }
        renamed.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            ctx("rename the temp file", e)
        })?;
        // Make the rename durable (no-op on tmpfs, matters on disk-backed emptyDirs).
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ctx("fsync the directory", e))?;
        Ok(())
    }

    fn remove_stale_temps(&self) {
        let Ok(entries) = fs::read_dir(&self.dir.path) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name()
                .as_encoded_bytes()
                .starts_with(TMP_PREFIX.as_bytes())
            {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Identity of the current pod sandbox, used to tell a restart of the native
/// copy in place (same sandbox) from init containers re-running after a pod
/// sandbox restart (new sandbox). `TANDEM_SANDBOX_ID` overrides it (tests,
/// runtimes without namespaces). Otherwise: the boot id plus the network and IPC
/// namespace links, which all containers of one sandbox share. If it cannot be
/// told apart (hostNetwork and hostIPC, or inode reuse), the shim behaves exactly
/// as the plain protocol: the id only ever adds safety.
pub fn sandbox_id() -> String {
    if let Some(v) = std::env::var_os("TANDEM_SANDBOX_ID") {
        return sanitize(&v.to_string_lossy());
    }
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = |n: &str| {
        fs::read_link(format!("/proc/self/ns/{n}"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let boot = boot.trim();
    let short_boot = boot.get(..8).unwrap_or(boot);
    sanitize(&format!("{short_boot}/{}/{}", ns("net"), ns("ipc")))
}

fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if out.is_empty() {
        "unknown".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("tandem-shim-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("mkdir");
        p
    }

    #[test]
    fn record_round_trips() {
        for phase in [Phase::FirstRun, Phase::NativeRunning, Phase::LegacyActive] {
            let r = Record {
                phase,
                sandbox: "abc/net:[1]/ipc:[2]".into(),
            };
            assert_eq!(Record::decode(&r.encode()), Some(r));
        }
    }

    #[test]
    fn decode_rejects_garbage() {
        for bad in [
            "",
            "first-run\n",
            "tandem-state/1 first-run sandbox=x",
            "tandem-state/1 bogus sandbox=x\n",
            "tandem-state/2 first-run sandbox=x\n",
            "tandem-state/1 first-run sandbox=\n",
            "tandem-state/1 first-run sandbox=x extra\n",
            "tandem-state/1 first-run sandbox=x\nmore\n",
        ] {
            assert_eq!(Record::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn write_read_and_stale_temp_cleanup() {
        let d = tmpdir("rw");
        let sd = StateDir::new(&d);
        assert_eq!(sd.read(), Observed::Absent);
        fs::write(d.join(".state.tmp.999999"), "tandem-state/1 legacy-act").expect("w");
        assert_eq!(sd.read(), Observed::Absent, "temp files are ignored");
        let rec = Record {
            phase: Phase::FirstRun,
            sandbox: "s1".into(),
        };
        sd.lock().expect("lock").write(&rec).expect("write");
        assert_eq!(sd.read(), Observed::Known(rec));
        assert!(!d.join(".state.tmp.999999").exists(), "stale temp removed");
        fs::write(d.join(STATE_FILE), "junk").expect("w");
        assert!(matches!(sd.read(), Observed::Unknown(_)));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn missing_dir_is_unknown_not_absent() {
        let sd = StateDir::new("/nonexistent/tandem-shim-test");
        assert!(matches!(sd.read(), Observed::Unknown(_)));
        assert!(sd.lock().is_err());
    }
}
