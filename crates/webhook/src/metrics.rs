//! The webhook's Prometheus metrics (prometheus-client, OpenMetrics text on `/metrics`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels2 = [(&'static str, &'static str); 2];
type Labels1 = [(&'static str, &'static str); 1];

/// Latency buckets in seconds: fine below a millisecond, where tandem answers, and wide
/// enough to show trouble up to the API server's timeout.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001, 0.002, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.5, 1.0,
];

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
    /// (re)synced; `-1` before the first sync.
    pub knowledge_age: Gauge<f64, AtomicU64>,
    /// `tandem_webhook_nodes_cached`: nodes in the cache.
    pub nodes: Gauge,
    /// `tandem_webhook_apiserver_info_age_seconds`: seconds since the API server's version
    /// and gate were last read; `-1` if never.
    pub apiserver_age: Gauge<f64, AtomicU64>,
    /// `tandem_webhook_cert_expiry_timestamp_seconds`: notAfter of the serving certificate.
    pub cert_expiry: Gauge,
    /// `tandem_webhook_cert_reloads_total{result}`: certificate reloads from disk.
    pub cert_reloads: Family<Labels1, Counter>,
    /// `tandem_webhook_events_total{result}`: Kubernetes Events sent, failed, or dropped
    /// because the queue was full.
    pub events: Family<Labels1, Counter>,
    /// `tandem_webhook_panics_total`: requests whose handling panicked (answered 500).
    pub panics: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tandem_webhook");
        let requests = Family::<Labels2, Counter>::default();
        registry.register(
            "requests",
            "AdmissionReviews answered, by outcome (injected, skipped, denied, ignored, invalid) and placement",
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
        let knowledge_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "knowledge_age_seconds",
            "Seconds since the node cache last changed or resynced (-1 before the first sync)",
            knowledge_age.clone(),
        );
        let nodes = Gauge::default();
        registry.register("nodes_cached", "Nodes in the cache", nodes.clone());
        let apiserver_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "apiserver_info_age_seconds",
            "Seconds since the API server's version and SidecarContainers gate were read (-1 if never)",
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
        Self {
            registry,
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
}
