//! Load generator for `tandem webhook`: open-loop HTTPS/1.1 keep-alive load at a fixed
//! rate with realistic AdmissionReviews, latency percentiles measured from each request's
//! scheduled send time (so a stalled server can't hide its queueing: no coordinated
//! omission). Also writes Node fixtures and creates Nodes in a test cluster, for the
//! memory figures. See `bench/README.md` ("webhook") for the full procedure.
//!
//! ```text
//! cargo bench -p tandem-webhook --bench webhook_load -- run --addr 127.0.0.1:18443 --ca ca.pem --rate 1000 --seconds 20
//! cargo bench -p tandem-webhook --bench webhook_load -- sweep --addr ... --ca ca.pem --rates 1000,2000,4000
//! cargo bench -p tandem-webhook --bench webhook_load -- nodes 5000 > nodes.yaml
//! cargo bench -p tandem-webhook --bench webhook_load -- create-nodes 5000   # uses KUBECONFIG
//! cargo bench -p tandem-webhook --bench webhook_load -- hostile --addr ... --ca ca.pem --pid PID
//! ```
//!
//! `hostile`: large, dense, slow and idle clients at once (see [`hostile`]), while a probe
//! opens a new connection for `/healthz` every 50 ms as the kubelet does; reports the
//! probe's latency and the server's peak resident memory (`VmRSS` of `--pid`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn usage() -> ! {
    eprintln!(
        "usage:\n  webhook_load run --addr ADDR --ca FILE [--rate N] [--seconds S] [--connections C] [--path P] [--auto-pod]\n  \
         webhook_load sweep --addr ADDR --ca FILE --rates N,N,... [--seconds S] [--connections C]\n  \
         webhook_load nodes N\n  webhook_load create-nodes N\n  \
         webhook_load hostile --addr ADDR --ca FILE --pid PID [--seconds S] [--connections C]"
    );
    std::process::exit(2)
}

struct Opts {
    addr: SocketAddr,
    ca: String,
    rate: u32,
    rates: Vec<u32>,
    seconds: u64,
    connections: usize,
    path: String,
    pid: u32,
}

fn parse(args: &[String]) -> Opts {
    let mut o = Opts {
        addr: "127.0.0.1:18443".parse().unwrap_or_else(|_| usage()),
        ca: String::new(),
        rate: 1000,
        rates: Vec::new(),
        seconds: 20,
        connections: 32,
        path: "/mutate".into(),
        pid: 0,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_else(|| usage());
        match a.as_str() {
            "--addr" => o.addr = val().parse().unwrap_or_else(|_| usage()),
            "--ca" => {
                let p = val();
                o.ca = std::fs::read_to_string(&p).unwrap_or_else(|e| {
                    eprintln!("{p}: {e}");
                    usage()
                })
            }
            "--rate" => o.rate = val().parse().unwrap_or_else(|_| usage()),
            "--rates" => {
                o.rates = val()
                    .split(',')
                    .map(|r| r.parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            "--seconds" => o.seconds = val().parse().unwrap_or_else(|_| usage()),
            "--connections" => o.connections = val().parse().unwrap_or_else(|_| usage()),
            "--path" => o.path = val(),
            "--pid" => o.pid = val().parse().unwrap_or_else(|_| usage()),
            "--bench" => {}
            _ => usage(),
        }
    }
    o
}

/// Latency statistics of one run.
struct Stats {
    rate: u32,
    sent: usize,
    errors: usize,
    achieved: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    /// Percentiles measured from the actual send instead (excludes the generator's
    /// 1 ms timer granularity and any queueing behind a slow previous response).
    sent_p50: f64,
    sent_p99: f64,
    sent_p999: f64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rate {:>6}/s  achieved {:>8.1}/s  n={:<7} errors={:<4} | from schedule: p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>8.3} ms | from send: p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms",
            self.rate,
            self.achieved,
            self.sent,
            self.errors,
            self.p50,
            self.p99,
            self.p999,
            self.max,
            self.sent_p50,
            self.sent_p99,
            self.sent_p999
        )
    }
}

async fn run_once(o: &Opts, rate: u32, body: Arc<Vec<u8>>) -> Stats {
    let conns = o.connections.max(1);
    let total = (u64::from(rate) * o.seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for i in 0..conns {
        let ca = o.ca.clone();
        let addr = o.addr;
        let path = o.path.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut from_send = Vec::new();
            let mut errors = 0usize;
            let Ok(mut c) = support::connect(addr, &ca).await else {
                return (lat, from_send, total / conns + 1);
            };
            let mut k = i;
            while k < total {
                let due = start + interval * k as u32;
                tokio::time::sleep_until(due.into()).await;
                let sent = Instant::now();
                match support::request(&mut c, "POST", &path, body.to_vec()).await {
                    Ok((200, _)) => {
                        lat.push(due.elapsed().as_secs_f64() * 1000.0);
                        from_send.push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => {
                        errors += 1;
                        if let Ok(nc) = support::connect(addr, &ca).await {
                            c = nc;
                        }
                    }
                }
                k += conns;
            }
            (lat, from_send, errors)
        }));
    }
    let mut all = Vec::with_capacity(total);
    let mut sends = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, s, e)) = t.await {
            all.extend(l);
            sends.extend(s);
            errors += e;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    sends.sort_by(f64::total_cmp);
    let pct_of = |v: &[f64], p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(v.len() - 1);
        v[i]
    };
    let pct = |p: f64| pct_of(&all, p);
    Stats {
        rate,
        sent: all.len() + errors,
        errors,
        achieved: all.len() as f64 / elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        p999: pct(0.999),
        max: all.last().copied().unwrap_or(f64::NAN),
        sent_p50: pct_of(&sends, 0.50),
        sent_p99: pct_of(&sends, 0.99),
        sent_p999: pct_of(&sends, 0.999),
    }
}

/// A kwok-like Node (labels, a taint on some, a kubelet version from a mixed fleet).
fn node(i: usize) -> Value {
    let versions = [
        "v1.27.16", "v1.28.15", "v1.30.8", "v1.32.4", "v1.33.1", "v1.34.2",
    ];
    let zone = ["a", "b", "c"][i % 3];
    let mut n = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": format!("bench-node-{i:05}"),
            "labels": {
                "kubernetes.io/hostname": format!("bench-node-{i:05}"),
                "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "m6i.2xlarge",
                "topology.kubernetes.io/region": "eu-west-1",
                "topology.kubernetes.io/zone": format!("eu-west-1{zone}"),
                "pool": format!("pool-{}", i % 20),
                "tandem.dev/e2e": "true"
            }
        },
        "status": {"nodeInfo": {"kubeletVersion": versions[i % versions.len()],
            "kubeProxyVersion": versions[i % versions.len()], "operatingSystem": "linux",
            "architecture": "amd64"}}
    });
    if i.is_multiple_of(10) {
        n["spec"] =
            json!({"taints": [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]});
    }
    n
}

async fn create_nodes(n: usize) {
    let client = kube::Client::try_default().await.unwrap_or_else(|e| {
        eprintln!("no cluster: {e}");
        std::process::exit(1)
    });
    let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    let created = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(n.div_ceil(8).max(1)) {
        let api = api.clone();
        let chunk = chunk.to_vec();
        let created = created.clone();
        set.spawn(async move {
            for i in chunk {
                // kwok takes over nodes with this annotation: Ready, heartbeats, as a
                // real fleet (the doctor's benchmark reads them).
                let mut n = node(i);
                n["metadata"]["annotations"] = json!({"kwok.x-k8s.io/node": "fake"});
                let Ok(node) = serde_json::from_value(n) else {
                    continue;
                };
                if api
                    .create(&kube::api::PostParams::default(), &node)
                    .await
                    .is_ok()
                {
                    created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    eprintln!(
        "created {} nodes",
        created.load(std::sync::atomic::Ordering::Relaxed)
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Hostile and heavy load for `o.seconds`: `o.connections` clients sending 4 MB reviews
/// (a large annotation) and as many sending dense ones (16,000 env entries: 0.5 MB that
/// decode to about 10 MB), each on a new connection after an answer; 32 slow clients
/// announcing 3 MiB and sending 2 KiB every 20 ms; 1,000 idle TLS connections. A probe
/// on its own thread opens a new connection for `/healthz` every 50 ms.
fn hostile(o: &Opts) {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use tokio::io::AsyncWriteExt as _;

    let mut big = support::realistic_pod();
    big["metadata"]["annotations"]["big"] = json!("x".repeat(4_000_000));
    let big = Arc::new(support::review(big, false));
    let mut dense = support::realistic_pod();
    dense["spec"]["containers"][0]["env"] = Value::Array(
        (0..16_000)
            .map(|i| json!({"name": format!("V{i}"), "value": "x"}))
            .collect(),
    );
    let dense = Arc::new(support::review(dense, false));
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let pid = o.pid;
    let idle_rss = rss_kib(pid);

    let probe = {
        let (stop, ca, addr) = (stop.clone(), o.ca.clone(), o.addr);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| {
                    eprintln!("runtime: {e}");
                    std::process::exit(1)
                });
            rt.block_on(async move {
                let mut lat = Vec::new();
                let mut failed = 0usize;
                tokio::time::sleep(Duration::from_millis(500)).await;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let answer = tokio::time::timeout(Duration::from_secs(10), async {
                        let mut c = support::connect(addr, &ca).await.ok()?;
                        support::request(&mut c, "GET", "/healthz", vec![])
                            .await
                            .ok()
                    })
                    .await;
                    let ok = matches!(answer, Ok(Some((200, _))));
                    if ok {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        failed += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (lat, failed)
            })
        })
    };
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("runtime: {e}");
            std::process::exit(1)
        });
    let outcomes: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    rt.block_on(async {
        let mut tasks = Vec::new();
        let mut idle = Vec::new();
        for _ in 0..1000 {
            if let Ok(c) = support::tls(o.addr, &o.ca).await {
                idle.push(c);
            }
        }
        eprintln!("{} idle TLS connections open", idle.len());
        for i in 0..o.connections * 2 {
            let body = if i % 2 == 0 { big.clone() } else { dense.clone() };
            let (stop, ca, addr, outcomes) = (stop.clone(), o.ca.clone(), o.addr, outcomes.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let key = match support::tls(addr, &ca).await {
                        Err(_) => "connect failed".to_string(),
                        Ok(mut s) => match support::exchange(&mut s, &body).await {
                            Ok((status, _)) => status.to_string(),
                            Err(_) => "closed".into(),
                        },
                    };
                    *outcomes.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_default() += 1;
                }
            }));
        }
        for _ in 0..32 {
            let (stop, ca, addr) = (stop.clone(), o.ca.clone(), o.addr);
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = support::tls(addr, &ca).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let head = "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-length: 3145728\r\n\r\n";
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
        tokio::time::sleep(Duration::from_secs(o.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.abort();
        }
        drop(idle);
    });
    let (mut lat, failed) = probe.join().unwrap_or_default();
    let _ = sampler.join();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "healthz (new connection each, every 50 ms): n={} failed={failed} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "server RSS: before {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
        idle_rss as f64 / 1024.0,
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
        rss_kib(pid) as f64 / 1024.0
    );
    println!(
        "review outcomes: {:?}",
        outcomes.lock().unwrap_or_else(|p| p.into_inner())
    );
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(cmd) = args.first() else {
        // `cargo bench` with no arguments: nothing to do without a running server.
        eprintln!("webhook_load: no command given (see bench/README.md); nothing to do");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("runtime: {e}");
            std::process::exit(1)
        });
    match cmd.as_str() {
        "nodes" => {
            let n: usize = args
                .get(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| usage());
            let items: Vec<Value> = (0..n).map(node).collect();
            println!(
                "{}",
                json!({"apiVersion": "v1", "kind": "List", "items": items})
            );
        }
        "create-nodes" => {
            let n: usize = args
                .get(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| usage());
            rt.block_on(create_nodes(n));
        }
        "run" | "sweep" => {
            let o = parse(&args[1..]);
            if o.ca.is_empty() {
                usage();
            }
            let body = Arc::new(support::review(support::realistic_pod(), false));
            eprintln!("AdmissionReview body: {} bytes", body.len());
            rt.block_on(async {
                // Warm up: connections, TLS sessions, allocator.
                let warm = Opts {
                    seconds: 2,
                    ..parse(&args[1..])
                };
                let _ = run_once(&warm, 500, body.clone()).await;
                if cmd == "run" {
                    println!("{}", run_once(&o, o.rate, body.clone()).await);
                } else {
                    let mut best = None;
                    for &r in &o.rates {
                        let s = run_once(&o, r, body.clone()).await;
                        println!("{s}");
                        if s.p99 < 5.0 && s.errors == 0 && s.achieved > f64::from(r) * 0.97 {
                            best = Some(r);
                        }
                    }
                    println!("highest rate with p99 < 5 ms: {best:?}");
                }
            });
        }
        "hostile" => {
            let mut o = parse(&args[1..]);
            if o.ca.is_empty() || o.pid == 0 {
                usage();
            }
            if !args.iter().any(|a| a == "--seconds") {
                o.seconds = 15;
            }
            if !args.iter().any(|a| a == "--connections") {
                o.connections = 32;
            }
            hostile(&o);
        }
        _ => usage(),
    }
}
