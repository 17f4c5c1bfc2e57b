//! The known old-kubelet window, measured (issue 15): on a kubelet older than 1.28
//! the native copy is a plain init container; killed after `first-run` is in place but
//! before it exits 0, it is retried in the same sandbox, sees its own `first-run`, and
//! runs CMD as an init container that never ends (the pod stays in `Init`).
//!
//! `cargo test -p tandem-kubelet-emu --test old_kubelet_window -- --ignored --nocapture`
//! (`TANDEM_WINDOW_TRIALS`, default 300 per layout; `TANDEM_SHIM_BIN` to measure
//! another build). Each trial: start `tandem-shim native -- sleep 30` on a fresh
//! state directory, SIGKILL it at a time uniform over the first 3 ms, and, if it was
//! killed rather than exited 0, retry it as an old kubelet does: a retry that records
//! `native-running` and runs CMD instead of exiting 0 is an endless init container: a stuck
//! pod.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tandem_kubelet_emu::sys;

fn native(dir: &Path) -> Command {
    let mut c = Command::new(shim());
    c.args(["native", "--", "sleep", "30"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("TANDEM_STATE_DIR", dir)
        .env("TANDEM_SANDBOX_ID", "sb-window")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

#[derive(Debug, Default)]
struct Tally {
    exited_before_kill: u32,
    killed_before_first_run: u32,
    killed_after_first_run_recovered: u32,
    stuck: u32,
}

/// A tiny xorshift: no dependency, reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn trial(root: &Path, i: u32, delay: Duration, t: &mut Tally) {
    let dir = root.join(format!("t{i}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let start = Instant::now();
    let mut child = native(&dir).spawn().expect("spawn");
    while start.elapsed() < delay {
        std::hint::spin_loop();
    }
    sys::kill(child.id(), libc::SIGKILL);
    let status = child.wait().expect("wait");
    if status.success() {
        t.exited_before_kill += 1;
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let first_run = std::fs::read_to_string(dir.join("state"))
        .unwrap_or_default()
        .contains("first-run");
    // The old kubelet retries the failed init container in the same sandbox.
    let mut retry = native(&dir).spawn().expect("spawn retry");
    // Stuck = the retry acts (state native-running) instead of exiting 0. A retry that
    // is merely slow (an fsync on a loaded disk) is given up to 20 s to exit.
    let end = Instant::now() + Duration::from_secs(20);
    let mut exited = false;
    while Instant::now() < end {
        if retry.try_wait().expect("try_wait").is_some() {
            exited = true;
            break;
        }
        let acting = std::fs::read_to_string(dir.join("state"))
            .unwrap_or_default()
            .contains("native-running");
        if acting {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if !exited {
        let _ = retry.kill();
    }
    let _ = retry.wait();
    if !exited {
        t.stuck += 1;
    } else if first_run {
        t.killed_after_first_run_recovered += 1;
    } else {
        t.killed_before_first_run += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "a measurement: cargo test -p tandem-kubelet-emu --test old_kubelet_window -- --ignored --nocapture"]
fn measure_the_old_kubelet_window() {
    let trials: u32 = std::env::var("TANDEM_WINDOW_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let shm = Path::new("/dev/shm").join(format!("tandem-window-{}", std::process::id()));
    let disk = scratch("window-disk");
    let _ = shim(); // build once, outside the timed trials
    let range_us: u64 = std::env::var("TANDEM_WINDOW_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    for (layout, root) in [("tmpfs (/dev/shm)", shm.clone()), ("disk", disk)] {
        std::fs::create_dir_all(&root).expect("mkdir");
        // How long an unkilled first run takes (spawn to exit 0), for scale.
        let mut clean: Vec<Duration> = (0..30)
            .map(|i| {
                let dir = root.join(format!("clean{i}"));
                std::fs::create_dir_all(&dir).expect("mkdir");
                let start = Instant::now();
                let st = native(&dir).status().expect("run");
                assert!(st.success());
                let _ = std::fs::remove_dir_all(&dir);
                start.elapsed()
            })
            .collect();
        clean.sort();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut t = Tally::default();
        for i in 0..trials {
            let delay = Duration::from_nanos(rng.next() % (range_us * 1000));
            trial(&root, i, delay, &mut t);
        }
        println!(
            "{layout}: clean first run (spawn to exit 0) median {:?}, p90 {:?}",
            clean[clean.len() / 2],
            clean[clean.len() * 9 / 10]
        );
        println!(
            "{layout}: {trials} trials, kill uniform over 0-{range_us} us: stuck in Init {} ({:.1}%), \
             exited 0 before the kill {}, killed before first-run {}, killed after first-run \
             but recovered {}",
            t.stuck,
            100.0 * f64::from(t.stuck) / f64::from(trials),
            t.exited_before_kill,
            t.killed_before_first_run,
            t.killed_after_first_run_recovered
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
