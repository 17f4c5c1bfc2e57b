//! The webhook's Prometheus metrics (prometheus-client, OpenMetrics text on `/metrics`):
//! `tandem_webhook_*`, `tandem_build_info` and the standard `process_*` series.
//!
//! Conventions: every labelled series a dashboard would query exists from the start at
//! zero (each outcome × placement, each reload or event result); a value that is not known
//! yet (an age before the first sync) is absent rather than a sentinel like `-1`; latency
//! buckets reach the API server's longest webhook timeout (30 s).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels2 = [(&'static str, &'static str); 2];
type Labels1 = [(&'static str, &'static str); 1];
type NoLabels = [(&'static str, &'static str); 0];

/// Latency buckets in seconds: fine below a millisecond, where tandem answers, and wide
/// enough to show trouble up to the API server's timeout (`timeoutSeconds`, default 10 s,
/// at most 30 s).
pub const LATENCY_BUCKETS: [f64; 21] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001, 0.002, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every `outcome` label of the request metrics.
pub const OUTCOMES: [&str; 11] = [
    "injected",
    "skipped",
    "denied",
    "ignored",
    "invalid",
    "panic",
    "refused",
    "repaired",
    "fell_back",
    "denied_stripped",
    "adopted",
];
/// The outcomes whose `mode` label is a placement (the others carry `none`).
const PLACED_OUTCOMES: [&str; 4] = ["injected", "repaired", "fell_back", "denied_stripped"];
/// Every `mode` label (the placement of injected pods; `none` for the other outcomes).
pub const PLACEMENTS: [&str; 4] = ["native", "legacy", "affinity", "universal"];

/// The version this binary reports (`tandem version`, `/version`, `tandem_build_info`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit it was built from, when the build said (`TANDEM_GIT_COMMIT` at compile time).
pub fn git_commit() -> &'static str {
    option_env!("TANDEM_GIT_COMMIT").unwrap_or("unknown")
}

/// The JSON that `/version` answers: the build, and the certificate being served (so that
/// `tandem doctor` can check it against the caBundle through the API server's proxy).
pub fn version_document(cert_pem: &str) -> serde_json::Value {
    let not_after = crate::tls::CertInfo::first_from_pem(cert_pem.as_bytes())
        .ok()
        .map(|c| c.not_after);
    serde_json::json!({
        "version": VERSION,
        "gitCommit": git_commit(),
        "servingCertificate": cert_pem,
        "servingCertificateNotAfter": not_after,
    })
}

/// Every metric the webhook exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `tandem_webhook_requests_total{outcome, mode}`.
    pub requests: Family<Labels2, Counter>,
    /// `tandem_webhook_request_duration_seconds{outcome}`: time spent answering `/mutate`.
    pub latency: Family<Labels1, Histogram>,
    /// `tandem_webhook_patch_bytes`: size of the JSON Patch answered (before encoding).
    pub patch_bytes: Histogram,
    /// `tandem_webhook_knowledge_synced`: 1 once the node cache has synced.
    pub synced: Gauge,
    /// `tandem_webhook_knowledge_age_seconds`: seconds since the node cache last changed or
    /// (re)synced; absent before the first sync.
    pub knowledge_age: Family<NoLabels, Gauge<f64, AtomicU64>>,
    /// `tandem_webhook_nodes_cached`: nodes in the cache.
    pub nodes: Gauge,
    /// `tandem_webhook_apiserver_info_age_seconds`: seconds since the API server's version
    /// and gate were last read; absent if never.
    pub apiserver_age: Family<NoLabels, Gauge<f64, AtomicU64>>,
    /// `tandem_webhook_cert_expiry_timestamp_seconds`: notAfter of the serving certificate.
    pub cert_expiry: Gauge,
    /// `tandem_webhook_cert_reloads_total{result}`: certificate reloads from disk.
    pub cert_reloads: Family<Labels1, Counter>,
    /// `tandem_webhook_events_total{result}`: Kubernetes Events sent, failed, or dropped
    /// because the queue was full.
    pub events: Family<Labels1, Counter>,
    /// `tandem_webhook_panics_total`: requests whose handling panicked (answered 500).
    pub panics: Counter,
    process: ProcessMetrics,
}

/// The standard `process_*` series (as Prometheus' client libraries export them), read
/// from `/proc/self` at each scrape; absent where `/proc` is not there.
#[derive(Debug, Default)]
struct ProcessMetrics {
    cpu: Family<NoLabels, Counter<f64, AtomicU64>>,
    rss: Family<NoLabels, Gauge>,
    vsize: Family<NoLabels, Gauge>,
    open_fds: Family<NoLabels, Gauge>,
    max_fds: Family<NoLabels, Gauge>,
    start_time: Family<NoLabels, Gauge>,
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

impl ProcessMetrics {
    fn register(registry: &mut Registry) -> Self {
        let p = Self::default();
        registry.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            p.cpu.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            p.rss.clone(),
        );
        registry.register(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            p.vsize.clone(),
        );
        registry.register(
            "process_open_fds",
            "Number of open file descriptors",
            p.open_fds.clone(),
        );
        registry.register(
            "process_max_fds",
            "Maximum number of open file descriptors",
            p.max_fds.clone(),
        );
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            p.start_time.clone(),
        );
        p
    }

    fn update(&self) {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        if let Some(stat) = read("/proc/self/stat") {
            // Fields after the command name (which may hold spaces), from field 3 on.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            if let (Some(utime), Some(stime)) = (num(11), num(12)) {
                let total = (utime + stime) / USER_HZ;
                let cpu = self.cpu.get_or_create(&[]);
                let delta = total - cpu.get();
                if delta > 0.0 {
                    cpu.inc_by(delta);
                }
            }
            if let Some(vsize) = num(20) {
                self.vsize.get_or_create(&[]).set(vsize as i64);
            }
            let btime = read("/proc/stat").and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            });
            if let (Some(start), Some(btime)) = (num(19), btime) {
                self.start_time
                    .get_or_create(&[])
                    .set((btime + start / USER_HZ) as i64);
            }
        }
        if let Some(status) = read("/proc/self/status") {
            let kb = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok());
            if let Some(kb) = kb {
                self.rss.get_or_create(&[]).set(kb * 1024);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.get_or_create(&[]).set(dir.count() as i64);
        }
        if let Some(limits) = read("/proc/self/limits") {
            let soft = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<i64>().ok());
            if let Some(n) = soft {
                self.max_fds.get_or_create(&[]).set(n);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let build_info = Family::<[(&'static str, &'static str); 3], Gauge>::default();
        root.register(
            "tandem_build_info",
            "tandem's build: 1, labelled with version, revision (commit) and component",
            build_info.clone(),
        );
        build_info
            .get_or_create(&[
                ("version", VERSION),
                ("revision", git_commit()),
                ("component", "webhook"),
            ])
            .set(1);
        let process = ProcessMetrics::register(&mut root);
        let registry = root.sub_registry_with_prefix("tandem_webhook");
        let requests = Family::<Labels2, Counter>::default();
        registry.register(
            "requests",
            "AdmissionReviews answered, by outcome (injected, skipped, denied, ignored, invalid, panic, refused, repaired, fell_back, denied_stripped) and placement",
            requests.clone(),
        );
        let latency: Family<Labels1, Histogram> =
            Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        registry.register(
            "request_duration_seconds",
            "Time to answer one /mutate request, from body received to response written",
            latency.clone(),
        );
        let patch_bytes = Histogram::new([256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 65536.0]);
        registry.register(
            "patch_bytes",
            "Size of the JSON Patch answered, before encoding",
            patch_bytes.clone(),
        );
        let synced = Gauge::default();
        registry.register(
            "knowledge_synced",
            "1 once the node cache has synced",
            synced.clone(),
        );
        let knowledge_age = Family::<NoLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "knowledge_age_seconds",
            "Seconds since the node cache last changed or resynced (absent before the first sync)",
            knowledge_age.clone(),
        );
        let nodes = Gauge::default();
        registry.register("nodes_cached", "Nodes in the cache", nodes.clone());
        let apiserver_age = Family::<NoLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "apiserver_info_age_seconds",
            "Seconds since the API server's version and SidecarContainers gate were read (absent if never)",
            apiserver_age.clone(),
        );
        let cert_expiry = Gauge::default();
        registry.register(
            "cert_expiry_timestamp_seconds",
            "notAfter of the serving certificate, as a Unix timestamp",
            cert_expiry.clone(),
        );
        let cert_reloads = Family::<Labels1, Counter>::default();
        registry.register(
            "cert_reloads",
            "Serving certificate reloads from disk, by result",
            cert_reloads.clone(),
        );
        let events = Family::<Labels1, Counter>::default();
        registry.register(
            "events",
            "Kubernetes Events: sent, failed, or dropped because the queue was full",
            events.clone(),
        );
        let panics = Counter::default();
        registry.register("panics", "Requests whose handling panicked", panics.clone());
        // Every series a dashboard queries exists from the start, at zero.
        for outcome in OUTCOMES {
            let modes: &[&'static str] = if PLACED_OUTCOMES.contains(&outcome) {
                &PLACEMENTS
            } else {
                &["none"]
            };
            for mode in modes {
                let _ = requests.get_or_create(&[("outcome", outcome), ("mode", mode)]);
            }
            let _ = latency.get_or_create(&[("outcome", outcome)]);
        }
        for result in ["ok", "error"] {
            let _ = cert_reloads.get_or_create(&[("result", result)]);
        }
        for result in ["sent", "failed", "dropped"] {
            let _ = events.get_or_create(&[("result", result)]);
        }
        Self {
            registry: root,
            requests,
            latency,
            patch_bytes,
            synced,
            knowledge_age,
            nodes,
            apiserver_age,
            cert_expiry,
            cert_reloads,
            events,
            panics,
            process,
        }
    }

    /// Sets the knowledge gauges; an unknown age leaves its series out.
    pub fn set_knowledge(
        &self,
        synced: bool,
        nodes: usize,
        node_age: Option<f64>,
        apiserver_age: Option<f64>,
    ) {
        self.synced.set(i64::from(synced));
        self.nodes.set(nodes as i64);
        for (family, age) in [
            (&self.knowledge_age, node_age),
            (&self.apiserver_age, apiserver_age),
        ] {
            match age {
                Some(a) => {
                    family.get_or_create(&[]).set(a);
                }
                None => family.clear(),
            }
        }
    }

    /// Records one answered request.
    pub fn observe(&self, outcome: &'static str, mode: &'static str, seconds: f64) {
        self.requests
            .get_or_create(&[("outcome", outcome), ("mode", mode)])
            .inc();
        self.latency
            .get_or_create(&[("outcome", outcome)])
            .observe(seconds);
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        self.process.update();
        let mut out = String::new();
        // Writing into a String never fails.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sub_millisecond_buckets() {
        let m = Metrics::new();
        m.observe("injected", "native", 0.000_12);
        m.events.get_or_create(&[("result", "dropped")]).inc();
        let text = m.render();
        assert!(
            text.contains("tandem_webhook_requests_total{outcome=\"injected\",mode=\"native\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("le=\"0.0002\",outcome=\"injected\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tandem_webhook_events_total{result=\"dropped\"} 1"),
            "{text}"
        );
        assert!(text.contains("tandem_webhook_cert_expiry_timestamp_seconds"));
    }

    #[test]
    fn series_exist_at_zero_and_nothing_is_negative() {
        let m = Metrics::new();
        m.set_knowledge(false, 0, None, None);
        let text = m.render();
        for needle in [
            "tandem_webhook_requests_total{outcome=\"injected\",mode=\"universal\"} 0",
            "tandem_webhook_requests_total{outcome=\"denied\",mode=\"none\"} 0",
            "tandem_webhook_request_duration_seconds_count{outcome=\"skipped\"} 0",
            "tandem_webhook_cert_reloads_total{result=\"error\"} 0",
            "tandem_webhook_events_total{result=\"failed\"} 0",
            "le=\"30.0\",outcome=\"injected\"} 0",
            "tandem_build_info{version=\"",
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        assert!(
            !text.contains("knowledge_age_seconds{") && !text.contains("knowledge_age_seconds ")
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(!value.starts_with('-'), "negative value: {line}");
        }
        let start: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_start_time_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (start - crate::tls::unix_now() as f64).abs() < 3600.0,
            "{start}"
        );
        m.set_knowledge(true, 3, Some(1.5), Some(2.0));
        let text = m.render();
        assert!(
            text.contains("tandem_webhook_knowledge_age_seconds 1.5"),
            "{text}"
        );
        assert!(
            text.contains("tandem_webhook_apiserver_info_age_seconds 2.0"),
            "{text}"
        );
        let doc = version_document("");
        assert_eq!(doc["version"], VERSION);
    }
}
