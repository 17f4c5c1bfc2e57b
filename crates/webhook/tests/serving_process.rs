//! `tandem webhook` as a real process (this test binary re-runs itself as the webhook,
//! through `run_blocking` and the real flags and signal handling): plain logs when
//! stderr is not a terminal, SIGTERM with the default `--shutdown-delay` (readyz fails
//! while requests are still served), a half-sent request that doesn't hold shutdown for
//! the whole grace, and a load of large and slow requests under which `/healthz` stays
//! fast and the resident memory stays under the installed 128 Mi limit.

mod support;

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser as _;
use serde_json::{Value, json};
use support::{connect, exchange, realistic_pod, request, review, tls};
use tokio::io::AsyncWriteExt as _;

const CHILD: &str = "TANDEM_WEBHOOK_TEST_CHILD";

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    args: tandem_webhook::WebhookArgs,
}

/// The webhook process: runs only when this binary was started by [`Child::spawn`].
#[test]
fn child_webhook() {
    let Ok(args) = std::env::var(CHILD) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).expect("child arguments");
    let cli = Cli::parse_from(std::iter::once("webhook".to_string()).chain(args));
    tandem_webhook::run_blocking(cli.args).expect("webhook");
}

struct Child {
    proc: std::process::Child,
    addr: SocketAddr,
    ca: String,
    stderr: Arc<Mutex<String>>,
}

impl Child {
    fn spawn(args: &[&str]) -> Self {
        let mut all = vec![
            "--cluster",
            "never",
            "--mode",
            "native",
            "--listen",
            "127.0.0.1:0",
        ];
        all.extend_from_slice(args);
        let mut proc = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "child_webhook",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, serde_json::to_string(&all).expect("args"))
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning the webhook");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let err = proc.stderr.take().expect("stderr");
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = strip_ansi(&line).split("addr=").nth(1) {
                    let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                    let _ = addr_tx.send(addr);
                }
                let mut l = log.lock().expect("log");
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut out = proc.stdout.take().expect("stdout");
        let (ca_tx, ca_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let mut buf = [0u8; 4096];
            let mut sent = false;
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
                if !sent
                    && let (Some(a), Some(b)) = (
                        text.find("-----BEGIN CERTIFICATE-----"),
                        text.find("-----END CERTIFICATE-----"),
                    )
                {
                    let _ = ca_tx.send(text[a..b + 25].to_string() + "\n");
                    sent = true;
                }
            }
        });
        let ca = ca_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the webhook printed no CA");
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the webhook logged no address")
            .parse()
            .expect("address");
        Self {
            proc,
            addr,
            ca,
            stderr,
        }
    }

    fn term(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.proc.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.proc.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Waits up to `limit` for the process to exit; its exit time since `from`.
    fn exited_within(&mut self, limit: Duration) -> Option<bool> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.proc.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn log(&self) -> String {
        self.stderr.lock().expect("log").clone()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// The text of a log line without its ANSI escape sequences (to find the address in
/// either case; the colour test looks at the raw log).
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[test]
fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    init();
    let mut child = Child::spawn(&["--shutdown-delay", "0s"]);
    // Let it settle (and log) before stopping it.
    std::thread::sleep(Duration::from_millis(300));
    child.term();
    assert_eq!(child.exited_within(Duration::from_secs(20)), Some(true));
    let log = child.log();
    assert!(log.contains("tandem webhook serving"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in a piped log:\n{log:?}"
    );
}

#[tokio::test]
async fn sigterm_fails_readyz_and_keeps_serving_for_the_default_delay() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    init();
    let mut child = Child::spawn(&[]);
    let mut c = connect(child.addr, &child.ca).await.unwrap();
    assert_eq!(
        request(&mut c, "GET", "/readyz", vec![]).await.unwrap().0,
        200
    );
    let t = Instant::now();
    child.term();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Readyz fails at once, while new connections and requests are still served.
    let mut c = connect(child.addr, &child.ca)
        .await
        .expect("still accepting");
    assert_eq!(
        request(&mut c, "GET", "/readyz", vec![]).await.unwrap().0,
        503
    );
    let mut c = connect(child.addr, &child.ca)
        .await
        .expect("still accepting");
    assert_eq!(
        request(&mut c, "GET", "/healthz", vec![]).await.unwrap().0,
        200
    );
    let mut s = tls(child.addr, &child.ca).await.unwrap();
    let (status, close) = exchange(&mut s, &review(realistic_pod(), false))
        .await
        .unwrap();
    assert_eq!(
        (status, close),
        (200, true),
        "answered with Connection: close"
    );
    let exited = tokio::task::spawn_blocking(move || {
        let r = child.exited_within(Duration::from_secs(30));
        (r, child)
    })
    .await
    .unwrap();
    assert_eq!(exited.0, Some(true));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_secs(15),
        "exit {took:?} after SIGTERM (default delay 5 s)"
    );
}

#[tokio::test]
async fn a_half_sent_request_does_not_hold_shutdown_for_the_grace() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    init();
    // Default timeouts and grace (20 s); no delay, to time the drain alone.
    let mut child = Child::spawn(&["--shutdown-delay", "0s"]);
    let mut half = tls(child.addr, &child.ca).await.unwrap();
    half.write_all(b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-le")
        .await
        .unwrap();
    half.flush().await.unwrap();
    let t = Instant::now();
    child.term();
    let exited = tokio::task::spawn_blocking(move || {
        let r = child.exited_within(Duration::from_secs(30));
        (r, child)
    })
    .await
    .unwrap();
    assert_eq!(exited.0, Some(true));
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(12),
        "a half-sent request held shutdown for {took:?} (header-read timeout 10 s, grace 20 s)"
    );
    drop(half);
}

/// Large and slow requests at once: `/healthz` (a new connection each time, as the
/// kubelet probes) stays fast and the resident memory stays under 128 MiB. Generous
/// bounds for a debug build on a shared machine; `bench/README.md` has the precise figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_slow_requests_keep_healthz_fast_and_memory_bounded() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    init();
    let child = Arc::new(Mutex::new(Child::spawn(&["--shutdown-delay", "0s"])));
    let (addr, ca) = {
        let c = child.lock().unwrap();
        (c.addr, c.ca.clone())
    };
    let idle_rss = child.lock().unwrap().rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<std::collections::BTreeMap<String, usize>>> = Arc::default();

    let mut big = realistic_pod();
    big["metadata"]["annotations"]["big"] = json!("x".repeat(3 << 20));
    let big = Arc::new(review(big, false));
    let mut dense = realistic_pod();
    dense["spec"]["containers"][0]["env"] = Value::Array(
        (0..16_000)
            .map(|i| json!({"name": format!("V{i}"), "value": "x"}))
            .collect(),
    );
    let dense = Arc::new(review(dense, false));

    let mut tasks = Vec::new();
    // 40 clients sending reviews back to back: 16 of 3 MiB (a large annotation), 24 dense
    // ones (16,000 env entries: 0.5 MB that decode to about 10 MB).
    for i in 0..40 {
        let (ca, stop, outcomes) = (ca.clone(), stop.clone(), outcomes.clone());
        let body = if i < 16 { big.clone() } else { dense.clone() };
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = tls(addr, &ca).await else {
                    *outcomes
                        .lock()
                        .unwrap()
                        .entry("connect error".into())
                        .or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let key = match exchange(&mut s, &body).await {
                    Ok((status, _)) => status.to_string(),
                    Err(_) => "closed".into(),
                };
                *outcomes.lock().unwrap().entry(key).or_default() += 1;
            }
        }));
    }
    // 16 slow clients: a 3 MiB body announced, sent 2 KiB at a time.
    for _ in 0..16 {
        let (ca, stop) = (ca.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = tls(addr, &ca).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let head =
                    "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-length: 3145728\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    continue;
                }
                while !stop.load(Ordering::Relaxed) {
                    if s.write_all(&[b' '; 2048]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    // Memory, sampled.
    let peak = Arc::new(AtomicUsize::new(0));
    {
        let (child, stop, peak) = (child.clone(), stop.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let rss = child.lock().unwrap().rss_kib() as usize;
                peak.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    // The probe, on its own thread and runtime (the clients above keep this test's
    // runtime busy; their delays are not the server's).
    let probe = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut probes = Vec::new();
            let end = Instant::now() + Duration::from_secs(8);
            tokio::time::sleep(Duration::from_millis(500)).await;
            while Instant::now() < end {
                let t = Instant::now();
                let mut c = connect(addr, &ca).await.expect("probe connection");
                let (status, _) = request(&mut c, "GET", "/healthz", vec![])
                    .await
                    .expect("probe");
                assert_eq!(status, 200);
                probes.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            probes
        })
    });
    let mut probes = tokio::task::spawn_blocking(move || probe.join().expect("probe"))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    probes.sort();
    let peak_mib = peak.load(Ordering::Relaxed) as f64 / 1024.0;
    let outcomes = outcomes.lock().unwrap().clone();
    eprintln!(
        "healthz over {} probes: p50 {:?}, max {:?}; RSS idle {:.1} MiB, peak {peak_mib:.1} MiB; outcomes {outcomes:?}",
        probes.len(),
        probes[probes.len() / 2],
        probes[probes.len() - 1],
        idle_rss as f64 / 1024.0
    );
    assert!(
        outcomes.get("200").copied().unwrap_or(0) > 0,
        "no review answered: {outcomes:?}"
    );
    assert!(
        probes[probes.len() - 1] < Duration::from_secs(2),
        "healthz took {:?}",
        probes[probes.len() - 1]
    );
    assert!(peak_mib < 128.0, "RSS peaked at {peak_mib:.1} MiB");
}
