//! Reading feature gates out of Prometheus text, as the seed's
//! `kubectl get --raw /metrics | grep kubernetes_feature_enabled` does by eye.

/// A feature gate's line in a component's `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateReading {
    /// Whether the gate is on.
    pub enabled: bool,
    /// The `stage` label (`ALPHA`, `BETA`, empty once GA).
    pub stage: String,
    /// The metric line itself, as evidence.
    pub line: String,
}

/// Finds `kubernetes_feature_enabled{name="<gate>",…} 0|1` in Prometheus text.
/// `None` when the series is absent (too old a component, or a gate removed after GA).
pub fn feature_gate(metrics: &str, gate: &str) -> Option<GateReading> {
    metrics.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("kubernetes_feature_enabled{")?;
        let (labels, value) = rest.split_once('}')?;
        let label = |key: &str| {
            labels.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        if label("name")? != gate {
            return None;
        }
        let value: f64 = value.split_whitespace().next()?.parse().ok()?;
        Some(GateReading {
            enabled: value >= 1.0,
            stage: label("stage").unwrap_or_default(),
            line: line.trim().to_string(),
        })
    })
}

/// The gate tandem is about.
pub const SIDECAR_GATE: &str = "SidecarContainers";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_gate() {
        let text = "# HELP kubernetes_feature_enabled ...\n# TYPE kubernetes_feature_enabled gauge\n\
            kubernetes_feature_enabled{name=\"APIListChunking\",stage=\"\"} 1\n\
            kubernetes_feature_enabled{name=\"SidecarContainers\",stage=\"BETA\"} 1\n";
        let r = feature_gate(text, SIDECAR_GATE).unwrap();
        assert!(r.enabled);
        assert_eq!(r.stage, "BETA");
        assert!(r.line.contains("SidecarContainers"));
        let off = "kubernetes_feature_enabled{name=\"SidecarContainers\",stage=\"ALPHA\"} 0\n";
        assert!(!feature_gate(off, SIDECAR_GATE).unwrap().enabled);
        assert!(
            feature_gate(
                "kubernetes_feature_enabled{name=\"SidecarContainersX\"} 1",
                SIDECAR_GATE
            )
            .is_none()
        );
        assert!(feature_gate("garbage{", SIDECAR_GATE).is_none());
        assert!(feature_gate("", SIDECAR_GATE).is_none());
    }
}
