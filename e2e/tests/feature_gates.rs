//! The API server's `/metrics` shows the `SidecarContainers` feature gate: on the current
//! release, and on the older release 1 by default and 0 after a restart with
//! `--feature-gates=SidecarContainers=false`.

use tandem_testcluster::TestCluster;

/// The value of `kubernetes_feature_enabled{name="<gate>",...}` in Prometheus text.
fn feature_enabled(metrics: &str, gate: &str) -> Option<(String, f64)> {
    let needle = format!("name=\"{gate}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("kubernetes_feature_enabled{") && l.contains(&needle))
        .find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.trim().parse().ok()?))
        })
}

#[test]
fn parses_feature_metric() {
    let text = "# TYPE kubernetes_feature_enabled gauge\n\
        kubernetes_feature_enabled{name=\"SidecarContainers\",stage=\"BETA\"} 1\n\
        kubernetes_feature_enabled{name=\"Other\",stage=\"\"} 0\n";
    let (series, v) = feature_enabled(text, "SidecarContainers").expect("found");
    assert!(series.contains("BETA"));
    assert_eq!(v, 1.0);
    assert_eq!(feature_enabled(text, "Other").map(|x| x.1), Some(0.0));
    assert!(feature_enabled(text, "Missing").is_none());
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn sidecar_gate_metric_on_current_release() {
    let cluster = TestCluster::connect().await.expect("control plane");
    assert_eq!(cluster.apiserver_version(), cluster.current_version());
    let metrics = cluster.apiserver_metrics().await.expect("metrics");
    let (series, value) = feature_enabled(&metrics, "SidecarContainers").unwrap_or_else(|| {
        panic!(
            "no SidecarContainers series on {}",
            cluster.current_version()
        )
    });
    eprintln!("{}: {series} {value}", cluster.current_version());
    assert_eq!(value, 1.0, "SidecarContainers is GA and on");
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn sidecar_gate_can_be_switched_off_on_old_release() {
    let mut cluster = TestCluster::connect().await.expect("control plane");
    let old = cluster.old_version().to_string();
    let outcome = old_release_checks(&mut cluster, &old).await;
    // Always go back to the current release for the tests that follow.
    let restored = cluster.restart_apiserver(None, "").await;
    let (default_series, default_value, off_value) = outcome.unwrap_or_else(|e| panic!("{e}"));
    restored.expect("restart back to the current release");
    eprintln!("{old}: {default_series} {default_value}; with SidecarContainers=false: {off_value}");
    assert_eq!(default_value, 1.0, "on by default in {old}");
    assert_eq!(
        off_value, 0.0,
        "off after --feature-gates=SidecarContainers=false"
    );
}

async fn old_release_checks(
    cluster: &mut TestCluster,
    old: &str,
) -> Result<(String, f64, f64), String> {
    cluster
        .restart_apiserver(Some(old), "")
        .await
        .map_err(|e| format!("restart with {old}: {e}"))?;
    if cluster.apiserver_version() != old {
        return Err(format!(
            "running {} after restart, not {old}",
            cluster.apiserver_version()
        ));
    }
    let metrics = cluster
        .apiserver_metrics()
        .await
        .map_err(|e| e.to_string())?;
    let (series, on) = feature_enabled(&metrics, "SidecarContainers")
        .ok_or_else(|| format!("no SidecarContainers series on {old}"))?;
    cluster
        .restart_apiserver(Some(old), "SidecarContainers=false")
        .await
        .map_err(|e| format!("restart with {old} and the gate off: {e}"))?;
    let metrics = cluster
        .apiserver_metrics()
        .await
        .map_err(|e| e.to_string())?;
    let (_, off) = feature_enabled(&metrics, "SidecarContainers")
        .ok_or_else(|| format!("no SidecarContainers series on {old} with the gate off"))?;
    Ok((series, on, off))
}
