//! `tandem-shim`: the entrypoint of both copies of a universally injected sidecar.
//! It settles which copy acts (PRODUCT.md, "The shim protocol") and then behaves
//! as a well-mannered PID 1 for CMD. See README.md beside this crate.
//!
//! Layout: [`decide`] is the protocol as a pure function, [`state`] the state file,
//! [`supervise`] the entrypoint duties, [`jobwatch`] Job completion on old
//! kubelets, [`sys`] the only `unsafe`. This file parses flags and wires them.

mod decide;
mod jobwatch;
mod json;
mod state;
mod supervise;
mod sys;

use std::ffi::OsString;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use decide::{Action, Context, RestartPolicy, Role, Then};
use state::{Observed, Record, StateDir};

/// Usage or configuration error.
const EXIT_USAGE: i32 = 2;
/// The state directory is unusable or holds a state we don't know.
const EXIT_STATE: i32 = 3;

const USAGE: &str = "\
tandem-shim: settles which copy of a universally injected sidecar acts

usage:
  tandem-shim native  [--state-dir DIR] [--grace-period D] -- CMD [ARG...]
  tandem-shim legacy  [--state-dir DIR] [--pod-restart-policy Always|OnFailure|Never]
                      [--settle-timeout D] [--grace-period D] [--main-containers A,B]
                      [--pod-name N] [--pod-namespace NS] [--poll-interval D] -- CMD [ARG...]
  tandem-shim probe   [--state-dir DIR]     exit 0 iff the native copy acts (startupProbe)
  tandem-shim wait    [--state-dir DIR] [--timeout D] [-- CHECK [ARG...]]
                                            exit 0 once some copy acts and CHECK (the
                                            sidecar's own readiness command) passes;
                                            the regular copy's postStart hook
  tandem-shim status  [--state-dir DIR]     print the state
  tandem-shim install DEST                  copy this binary to DEST atomically (mode 0755)
  tandem-shim --version | --help

Every flag can also come from the environment: TANDEM_STATE_DIR (default
/var/run/tandem), TANDEM_POD_RESTART_POLICY (Always), TANDEM_SETTLE_TIMEOUT (0s),
TANDEM_GRACE_PERIOD (30s), TANDEM_MAIN_CONTAINERS, TANDEM_POD_NAME,
TANDEM_POD_NAMESPACE, TANDEM_POLL_INTERVAL (2s), TANDEM_WAIT_TIMEOUT (60s),
TANDEM_LINGER (10s: how long a regular copy that stands down in a Job waits for
its postStart hook before exiting).
Durations: 250ms, 5s, 2m, 1m30s or plain seconds.
";

/// Writes one line to stderr, prefixed so it stands out in container logs.
pub(crate) fn log(msg: &str) {
    use std::io::Write;
    // One write(2) per line: stderr is unbuffered, and lines from both copies and
    // CMD interleave in the container log.
    let line = format!("tandem-shim: {msg}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Parsed command line plus environment.
#[derive(Debug)]
struct Opts {
    state_dir: PathBuf,
    policy: RestartPolicy,
    settle: Duration,
    grace: Duration,
    mains: Vec<String>,
    pod_name: Option<String>,
    pod_namespace: Option<String>,
    poll: Duration,
    wait_timeout: Duration,
    linger: Duration,
    cmd: Vec<String>,
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(real_main(args));
}

fn real_main(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = match args.into_iter().map(|a| a.into_string()).collect() {
        Ok(a) => a,
        Err(a) => {
            log(&format!("argument is not valid UTF-8: {a:?}"));
            return EXIT_USAGE;
        }
    };
    let Some((sub, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return EXIT_USAGE;
    };
    match sub.as_str() {
        "--help" | "-h" | "help" => {
            print!("{USAGE}");
            0
        }
        "--version" | "-V" => {
            println!("tandem-shim {}", env!("CARGO_PKG_VERSION"));
            0
        }
        "install" => match rest {
            [dest] => install(Path::new(dest)),
            _ => usage_error("install takes exactly one argument: DEST"),
        },
        "native" | "legacy" | "probe" | "wait" | "status" => {
            let opts = match parse_opts(sub, rest) {
                Ok(o) => o,
                Err(e) => return usage_error(&e),
            };
            match sub.as_str() {
                "native" => run_role(Role::Native, &opts),
                "legacy" => run_role(Role::Legacy, &opts),
                "probe" => probe(&opts),
                "wait" => wait(&opts),
                _ => status(&opts),
            }
        }
        other => usage_error(&format!("unknown subcommand {other:?}")),
    }
}

fn usage_error(msg: &str) -> i32 {
    log(msg);
    eprint!("{USAGE}");
    EXIT_USAGE
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_opts(sub: &str, args: &[String]) -> Result<Opts, String> {
    let dur_env = |name: &str, default: Duration| -> Result<Duration, String> {
        match env(name) {
            Some(v) => parse_duration(&v).map_err(|e| format!("{name}={v:?}: {e}")),
            None => Ok(default),
        }
    };
    let mut o = Opts {
        state_dir: env("TANDEM_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/run/tandem")),
        policy: match env("TANDEM_POD_RESTART_POLICY") {
            Some(v) => RestartPolicy::parse(&v).ok_or_else(|| {
                format!("TANDEM_POD_RESTART_POLICY={v:?}: want Always, OnFailure or Never")
            })?,
            None => RestartPolicy::Always,
        },
        settle: dur_env("TANDEM_SETTLE_TIMEOUT", Duration::ZERO)?,
        grace: dur_env("TANDEM_GRACE_PERIOD", Duration::from_secs(30))?,
        mains: env("TANDEM_MAIN_CONTAINERS")
            .map(|v| split_list(&v))
            .unwrap_or_default(),
        pod_name: env("TANDEM_POD_NAME"),
        pod_namespace: env("TANDEM_POD_NAMESPACE"),
        poll: dur_env("TANDEM_POLL_INTERVAL", Duration::from_secs(2))?,
        wait_timeout: dur_env("TANDEM_WAIT_TIMEOUT", Duration::from_secs(60))?,
        linger: dur_env("TANDEM_LINGER", Duration::from_secs(10))?,
        cmd: vec![],
    };
    let takes_cmd = sub == "native" || sub == "legacy" || sub == "wait";
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            if !takes_cmd {
                return Err(format!("{sub} takes no command"));
            }
            o.cmd = it.cloned().collect();
            break;
        }
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        let allowed: &[&str] = match sub {
            "native" => &["--state-dir", "--grace-period"],
            "legacy" => &[
                "--state-dir",
                "--pod-restart-policy",
                "--settle-timeout",
                "--grace-period",
                "--main-containers",
                "--pod-name",
                "--pod-namespace",
                "--poll-interval",
            ],
            "wait" => &["--state-dir", "--timeout"],
            _ => &["--state-dir"],
        };
        if !allowed.contains(&flag) {
            return Err(format!("unknown flag {flag:?} for {sub}"));
        }
        let v = value()?;
        let dur = |v: &str| parse_duration(v).map_err(|e| format!("{flag} {v:?}: {e}"));
        match flag {
            "--state-dir" => o.state_dir = PathBuf::from(v),
            "--pod-restart-policy" => {
                o.policy = RestartPolicy::parse(&v).ok_or_else(|| {
                    format!("--pod-restart-policy {v:?}: want Always, OnFailure or Never")
                })?
            }
            "--settle-timeout" => o.settle = dur(&v)?,
            "--grace-period" => o.grace = dur(&v)?,
            "--main-containers" => o.mains = split_list(&v),
            "--pod-name" => o.pod_name = Some(v),
            "--pod-namespace" => o.pod_namespace = Some(v),
            "--poll-interval" => o.poll = dur(&v)?,
            "--timeout" => o.wait_timeout = dur(&v)?,
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    if takes_cmd && sub != "wait" && o.cmd.is_empty() {
        return Err(format!("{sub} needs the sidecar's command after `--`"));
    }
    Ok(o)
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Parses `250ms`, `5s`, `2m`, `1h`, `1m30s` or a plain number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("missing unit (ms, s, m, h)")?;
        let (num, tail) = rest.split_at(num_end);
        let n: f64 = num.parse().map_err(|_| format!("bad number {num:?}"))?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("unknown unit {unit:?} (ms, s, m, h)")),
        };
        total += Duration::try_from_secs_f64(n * scale).map_err(|e| e.to_string())?;
        rest = tail;
    }
    Ok(total)
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Native => "native",
        Role::Legacy => "legacy",
    }
}

fn run_role(role: Role, o: &Opts) -> i32 {
    // Block the signals first: from here on they queue for the supervisor.
    sys::reset_dispositions();
    let sigs = sys::SignalSet::supervisor();
    if let Err(e) = sigs.block() {
        log(&format!("cannot block signals: {e}"));
        return EXIT_STATE;
    }
    let who = role_name(role);
    let sd = StateDir::new(&o.state_dir);
    let sandbox = state::sandbox_id();
    if role == Role::Native && sys::on_tmpfs(sd.path()) == Some(false) {
        log(&format!(
            "{who}: warning: state directory {} is not a tmpfs; the supported layout is an \
             emptyDir with medium: Memory (on disk the first run's write takes milliseconds, \
             and a kill during it on a kubelet older than 1.28 can leave the pod in Init)",
            sd.path().display()
        ));
    }
    let deadline = Instant::now() + o.settle;
    let mut waited = false;
    let action = loop {
        let lock = match sd.lock() {
            Ok(l) => l,
            Err(e) => {
                log(&format!(
                    "{who}: {e}; not acting (mount the shared emptyDir there, or set TANDEM_STATE_DIR)"
                ));
                return EXIT_STATE;
            }
        };
        let found = lock.read();
        let ctx = Context {
            sandbox: sandbox.clone(),
            restart_policy: o.policy,
            settle_time_left: role == Role::Legacy && Instant::now() < deadline,
        };
        let action = decide::decide(role, &found, &ctx);
        match &action {
            Action::WaitSettle => {
                if !waited {
                    log(&format!(
                        "{who}: state is {}; waiting up to {:?} for the native copy to (re)start",
                        short(&found),
                        o.settle
                    ));
                    waited = true;
                }
                drop(lock);
                // Poll the state every 5 ms, but leave at once if the pod is deleted meanwhile.
                if let Ok(Some(sig)) = sys::wait_signal(&sigs, Duration::from_millis(5))
                    && (sig == libc::SIGTERM || sig == libc::SIGINT)
                {
                    log(&format!(
                        "{who}: {} while waiting to settle; exiting 0 without acting",
                        sys::signal_name(sig)
                    ));
                    return 0;
                }
                continue;
            }
            Action::Transition(phase, _) => {
                let rec = Record {
                    phase: *phase,
                    sandbox: sandbox.clone(),
                };
                if found == Observed::Known(rec.clone()) {
                    // A restart in the same sandbox: the state already says so; no fsync.
                    log(&format!("{who}: state {phase} (unchanged)"));
                    break action;
                }
                if let Action::Transition(state::Phase::FirstRun, Then::Exit) = &action {
                    // Log first: after the rename the process exits at once (see
                    // `write_and_exit`), leaving no time for anything else.
                    log(&format!(
                        "{who}: state {} -> {phase}; exiting 0 (a kubelet with native sidecars restarts this container at once)",
                        short(&found)
                    ));
                    let e = lock.write_and_exit(&rec, 0);
                    log(&format!(
                        "{who}: cannot record state {phase}: {e}; not acting"
                    ));
                    return EXIT_STATE;
                }
                if let Err(e) = lock.write(&rec) {
                    log(&format!(
                        "{who}: cannot record state {phase}: {e}; not acting"
                    ));
                    return EXIT_STATE;
                }
                log(&format!("{who}: state {} -> {phase}", short(&found)));
            }
            _ => {}
        }
        break action;
    };
    match action {
        Action::Transition(_, Then::Exit) => {
            log(&format!(
                "{who}: first run recorded; exiting 0 (a kubelet with native sidecars restarts this container at once)"
            ));
            0
        }
        Action::Transition(_, Then::Act) => {
            let stop = (role == Role::Legacy && o.policy != RestartPolicy::Always)
                .then(|| job_watch(o))
                .flatten();
            supervise::run(
                &o.cmd,
                &sigs,
                &supervise::Options {
                    grace: o.grace,
                    stop_requested: stop,
                },
            )
        }
        Action::StandDown if role == Role::Legacy => {
            log(&format!(
                "{who}: the native copy acts; exiting 0 once the postStart hook is done"
            ));
            linger(&sd, &sandbox, o.linger, &sigs);
            0
        }
        Action::StandDown => {
            log(&format!("{who}: the other copy acts; exiting 0"));
            0
        }
        Action::Idle => {
            log(&format!(
                "{who}: the native copy acts; idling until terminated"
            ));
            supervise::idle(&sigs)
        }
        Action::Fail(why) => {
            log(&format!(
                "{who}: state unknown: {why}; refusing to guess, not acting (inspect with `tandem-shim status`)"
            ));
            EXIT_STATE
        }
        Action::WaitSettle => EXIT_STATE, // unreachable: the loop continues on it
    }
}

/// The regular copy standing down in a Job keeps its container alive until its
/// postStart hook (`tandem-shim wait`) has returned, at most `max`: the kubelet
/// holds the main containers back until that hook returns, and a hook cannot run
/// in a container that already exited.
fn linger(sd: &StateDir, sandbox: &str, max: Duration, sigs: &sys::SignalSet) {
    let marker = sd.waited_marker(sandbox);
    let end = Instant::now() + max;
    while Instant::now() < end {
        if marker.exists() {
            // Let the hook's exec session return before the container goes away.
            let _ = sys::wait_signal(sigs, Duration::from_millis(50));
            return;
        }
        if let Ok(Some(s)) = sys::wait_signal(sigs, Duration::from_millis(5))
            && (s == libc::SIGTERM || s == libc::SIGINT)
        {
            return;
        }
    }
}

fn short(o: &Observed) -> String {
    match o {
        Observed::Absent => "none".into(),
        Observed::Known(r) => r.phase.to_string(),
        Observed::Unknown(_) => "unknown".into(),
    }
}

fn job_watch(o: &Opts) -> Option<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let disabled = |why: &str| {
        log(&format!(
            "job completion disabled: {why}; this sidecar will keep running after the main containers finish"
        ));
        None
    };
    let sa_dir = env("TANDEM_SERVICEACCOUNT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount"));
    let api = match env("TANDEM_API_URL") {
        Some(url) => match parse_url(&url) {
            Ok((tls, host, port)) => jobwatch::Api {
                tls,
                host,
                port,
                sa_dir: sa_dir.clone(),
            },
            Err(e) => return disabled(&format!("TANDEM_API_URL={url:?}: {e}")),
        },
        None => match (
            env("KUBERNETES_SERVICE_HOST"),
            env("KUBERNETES_SERVICE_PORT"),
        ) {
            (Some(h), Some(p)) => match p.parse() {
                Ok(port) => jobwatch::Api {
                    tls: true,
                    host: h,
                    port,
                    sa_dir: sa_dir.clone(),
                },
                Err(_) => return disabled(&format!("KUBERNETES_SERVICE_PORT={p:?} is not a port")),
            },
            _ => return disabled("no API server address (KUBERNETES_SERVICE_HOST/PORT unset)"),
        },
    };
    if api.tls && !sa_dir.join("token").exists() {
        return disabled(&format!(
            "no service-account token at {} (automountServiceAccountToken: false?)",
            sa_dir.display()
        ));
    }
    let Some(pod) = o.pod_name.clone() else {
        return disabled("TANDEM_POD_NAME unset (downward API metadata.name)");
    };
    let ns = o.pod_namespace.clone().or_else(|| {
        std::fs::read_to_string(sa_dir.join("namespace"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    });
    let Some(namespace) = ns else {
        return disabled("TANDEM_POD_NAMESPACE unset (downward API metadata.namespace)");
    };
    Some(jobwatch::spawn(jobwatch::Watch {
        api,
        pod,
        namespace,
        mains: o.mains.clone(),
        policy: o.policy,
        interval: o.poll,
    }))
}

/// `http[s]://host[:port]` → (tls, host, port).
fn parse_url(url: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("want http:// or https://".into());
    };
    let hostport = rest.trim_end_matches('/');
    let default = if tls { 443 } else { 80 };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, p) = h.split_once(']').ok_or("unclosed [")?;
        (h.to_string(), p.strip_prefix(':').map(str::to_string))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.to_string())),
            None => (hostport.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
        None => default,
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    Ok((tls, host, port))
}

fn probe(o: &Opts) -> i32 {
    match StateDir::new(&o.state_dir).read() {
        Observed::Known(Record {
            phase: state::Phase::NativeRunning,
            ..
        }) => 0,
        other => {
            println!("not started: state is {other}");
            1
        }
    }
}

/// postStart hook of the regular copy: the kubelet starts the next container only
/// when this returns, so the main containers start after the handshake is
/// settled and (with a CHECK) after the acting sidecar is ready.
fn wait(o: &Opts) -> i32 {
    let code = wait_inner(o);
    let sd = StateDir::new(&o.state_dir);
    // Non-blocking and no symlinks: a FIFO planted at the marker must not hang the hook.
    let marker = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(sd.waited_marker(&state::sandbox_id()));
    if let Ok(mut f) = marker {
        let _ = std::io::Write::write_all(&mut f, format!("{code}\n").as_bytes());
    }
    code
}

fn wait_inner(o: &Opts) -> i32 {
    let sd = StateDir::new(&o.state_dir);
    let deadline = Instant::now() + o.wait_timeout;
    loop {
        let found = sd.read();
        if decide::settled(&found) {
            return if o.cmd.is_empty() {
                0
            } else {
                wait_check(o, deadline)
            };
        }
        if let Observed::Unknown(why) = &found {
            log(&format!("wait: state unknown: {why}"));
            return EXIT_STATE;
        }
        if Instant::now() >= deadline {
            log(&format!(
                "wait: no copy acts after {:?} (state {found}); giving up",
                o.wait_timeout
            ));
            return 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs CHECK every 50 ms until it exits 0 or the deadline passes.
fn wait_check(o: &Opts, deadline: Instant) -> i32 {
    let Some((prog, args)) = o.cmd.split_first() else {
        return 0;
    };
    loop {
        match std::process::Command::new(prog)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
        {
            Ok(st) if st.success() => return 0,
            Ok(_) => {}
            Err(e) => {
                log(&format!("wait: cannot run check {prog:?}: {e}"));
                return 1;
            }
        }
        if Instant::now() >= deadline {
            log(&format!(
                "wait: check {prog:?} still failing after {:?}; giving up",
                o.wait_timeout
            ));
            return 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status(o: &Opts) -> i32 {
    let sd = StateDir::new(&o.state_dir);
    let found = sd.read();
    println!("state dir:    {}", sd.path().display());
    println!("state:        {found}");
    println!("this sandbox: {}", state::sandbox_id());
    let acting = match &found {
        Observed::Known(r) => match r.phase {
            state::Phase::FirstRun => {
                "nobody yet (native copy ran once; waiting for its restart or the regular copy)"
            }
            state::Phase::NativeRunning => {
                "the native copy (init container, restartPolicy: Always)"
            }
            state::Phase::LegacyActive => "the regular copy (<name>-legacy)",
        },
        Observed::Absent => "nobody yet",
        Observed::Unknown(_) => "UNKNOWN",
    };
    println!("acting:       {acting}");
    if matches!(found, Observed::Unknown(_)) {
        EXIT_STATE
    } else {
        0
    }
}

/// Copies this executable to `dest` atomically (temp file in the same directory,
/// fsync, mode 0755, rename), for the `tandem-shim-install` init container.
fn install(dest: &Path) -> i32 {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let result = (|| -> Result<(), String> {
        let src =
            std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        let bytes =
            std::fs::read(&src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = dest
            .file_name()
            .ok_or_else(|| format!("{} has no file name", dest.display()))?;
        let tmp = dir.join(format!(
            ".{}.tmp.{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o755)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, dest)?;
            std::fs::File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot install to {}: {e}", dest.display())
        })
    })();
    match result {
        Ok(()) => {
            log(&format!("installed to {}", dest.display()));
            0
        }
        Err(e) => {
            log(&e);
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://10.0.0.1:6443"),
            Ok((true, "10.0.0.1".into(), 6443))
        );
        assert_eq!(
            parse_url("http://127.0.0.1:8080/"),
            Ok((false, "127.0.0.1".into(), 8080))
        );
        assert_eq!(
            parse_url("https://[fd00::1]:443"),
            Ok((true, "fd00::1".into(), 443))
        );
        assert_eq!(
            parse_url("https://10.96.0.1"),
            Ok((true, "10.96.0.1".into(), 443))
        );
        assert!(parse_url("ftp://x").is_err());
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flags() {
        let o = parse_opts(
            "legacy",
            &s(&[
                "--state-dir",
                "/x",
                "--pod-restart-policy=Never",
                "--settle-timeout",
                "3s",
                "--",
                "sleep",
                "--",
                "1",
            ]),
        )
        .expect("parse");
        assert_eq!(o.state_dir, PathBuf::from("/x"));
        assert_eq!(o.policy, RestartPolicy::Never);
        assert_eq!(o.settle, Duration::from_secs(3));
        assert_eq!(o.cmd, s(&["sleep", "--", "1"]));
        assert!(parse_opts("native", &s(&["--settle-timeout", "3s", "--", "x"])).is_err());
        assert!(
            parse_opts("native", &s(&["--state-dir", "/x"])).is_err(),
            "needs CMD"
        );
        assert!(parse_opts("probe", &s(&["--", "x"])).is_err());
        assert!(parse_opts("wait", &s(&[])).is_ok(), "wait without a check");
        assert_eq!(
            parse_opts("wait", &s(&["--", "ready"])).expect("wait").cmd,
            s(&["ready"])
        );
        assert!(
            parse_opts(
                "legacy",
                &s(&["--pod-restart-policy", "Sometimes", "--", "x"])
            )
            .is_err()
        );
        assert_eq!(split_list(" a, b,,c "), s(&["a", "b", "c"]));
    }
}
