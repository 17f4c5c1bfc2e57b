//! `emu-app`: the stand-in sidecar and main program that kubelet-emu tests put in
//! pods. It records what it does in `$EMU_MARKERS` so tests can count how many
//! copies act as the sidecar and whether one acted when a main container started.
//!
//! - `emu-app sidecar [--crash-after-ms N] [--ignore-term]`: creates
//!   `acting.<container>.<pid>`, appends `act-start <container> <pid> others=<n>` to
//!   `history` (n = other live acting markers), runs until SIGTERM (then removes its
//!   marker, logs `act-stop`, exits 0) or crashes with exit 42 after N ms.
//! - `emu-app main [--run-ms N] [--exit C]`: appends `main-start <container> acting=<n>
//!   state=<phase>` (phase read from `$TANDEM_STATE_DIR/state` when mounted, else `-`),
//!   sleeps N ms (default 200), appends `main-exit`, exits C (default 0).
//! - `emu-app ready`: the sidecar's readiness check: exit 0 iff some copy acts.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tandem_kubelet_emu::{markers, sys};

static TERM: AtomicBool = AtomicBool::new(false);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(std::env::var("EMU_MARKERS").unwrap_or_else(|_| ".".into()));
    let me = std::env::var("EMU_CONTAINER").unwrap_or_else(|_| "unknown".into());
    let flag = |name: &str| args.iter().any(|a| a == name);
    let num = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("sidecar") => sidecar(&dir, &me, num("--crash-after-ms", 0), flag("--ignore-term")),
        Some("main") => {
            let acting = markers::live_acting(&dir).len();
            let state = std::env::var("TANDEM_STATE_DIR")
                .ok()
                .and_then(|d| fs::read_to_string(Path::new(&d).join("state")).ok())
                .and_then(|t| t.split(' ').nth(1).map(String::from))
                .unwrap_or_else(|| "-".into());
            history(
                &dir,
                &format!("main-start {me} acting={acting} state={state}"),
            );
            std::thread::sleep(Duration::from_millis(num("--run-ms", 200)));
            let code = num("--exit", 0) as i32;
            history(&dir, &format!("main-exit {me} code={code}"));
            std::process::exit(code);
        }
        Some("ready") => std::process::exit(if markers::live_acting(&dir).is_empty() {
            1
        } else {
            0
        }),
        _ => {
            eprintln!("usage: emu-app sidecar|main|ready ...");
            std::process::exit(2);
        }
    }
}

fn history(dir: &Path, line: &str) {
    markers::append_history(dir, line);
}

fn sidecar(dir: &Path, me: &str, crash_after_ms: u64, ignore_term: bool) {
    let pid = std::process::id();
    let marker = dir.join(format!("acting.{me}.{pid}"));
    if let Err(e) = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&marker)
    {
        eprintln!("emu-app: cannot create {}: {e}", marker.display());
        std::process::exit(3);
    }
    let others = markers::live_acting(dir)
        .into_iter()
        .filter(|(_, p)| *p != pid)
        .count();
    history(dir, &format!("act-start {me} {pid} others={others}"));
    sys::on_sigterm(&TERM, ignore_term);
    let start = Instant::now();
    loop {
        if TERM.load(Ordering::Relaxed) {
            let _ = fs::remove_file(&marker);
            history(dir, &format!("act-stop {me} {pid}"));
            let _ = std::io::stdout().flush();
            std::process::exit(0);
        }
        if crash_after_ms > 0 && start.elapsed() >= Duration::from_millis(crash_after_ms) {
            let _ = fs::remove_file(&marker);
            history(dir, &format!("act-crash {me} {pid}"));
            std::process::exit(42);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
