//! The API server's `/metrics` shows the `SidecarContainers` feature gate: on the current
//! release, and on the older release 1 by default and 0 after a restart with
//! `--feature-gates=SidecarContainers=false`.

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};
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

/// What the old release showed.
#[derive(Debug)]
struct OldRelease {
    default_series: String,
    default_value: f64,
    /// A native sidecar created (dry-run) with the gate on keeps `restartPolicy: Always`.
    default_keeps_restart_policy: bool,
    off_value: f64,
    /// With the gate off the API server drops the field on create.
    off_keeps_restart_policy: bool,
    /// ... and rejects a sidecar that has a startupProbe.
    off_probe_error: String,
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn sidecar_gate_can_be_switched_off_on_old_release() {
    let mut cluster = TestCluster::connect().await.expect("control plane");
    let old = cluster.old_version().to_string();
    let outcome = old_release_checks(&mut cluster, &old).await;
    // Always go back to the current release for the tests that follow.
    let restored = cluster.restart_apiserver(None, "").await;
    let seen = outcome.unwrap_or_else(|e| panic!("{e}"));
    restored.expect("restart back to the current release");
    eprintln!("{old}: {seen:#?}");
    assert_eq!(seen.default_value, 1.0, "on by default in {old}");
    assert!(
        seen.default_series.contains("BETA"),
        "{}",
        seen.default_series
    );
    assert!(
        seen.default_keeps_restart_policy,
        "gate on: restartPolicy kept"
    );
    assert_eq!(
        seen.off_value, 0.0,
        "off after --feature-gates=SidecarContainers=false"
    );
    assert!(
        !seen.off_keeps_restart_policy,
        "gate off: the API server drops restartPolicy on create"
    );
    assert!(
        seen.off_probe_error
            .contains("may not be set for init containers without restartPolicy=Always"),
        "gate off: a sidecar with a startupProbe is rejected: {}",
        seen.off_probe_error
    );
}

fn sidecar_pod(with_probe: bool) -> Pod {
    let mut sidecar = serde_json::json!({
        "name": "sidecar", "image": "registry.k8s.io/pause:3.10", "restartPolicy": "Always"
    });
    if with_probe {
        sidecar["startupProbe"] = serde_json::json!({ "exec": { "command": ["true"] } });
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "native-sidecar" },
        "spec": {
            "initContainers": [sidecar],
            "containers": [{ "name": "app", "image": "registry.k8s.io/pause:3.10" }]
        }
    }))
    .expect("pod literal")
}

/// Creates (server-side dry-run, namespace `default`) a pod with a native sidecar and says
/// whether the API server kept `restartPolicy: Always`.
async fn keeps_restart_policy(cluster: &TestCluster) -> Result<bool, String> {
    let client = cluster.client().await.map_err(|e| e.to_string())?;
    // An old release starts from an empty store: make sure the default ServiceAccount that
    // admission looks up exists (the controller-manager makes it too, a moment later).
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    if sas
        .get_opt("default")
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        let sa = ServiceAccount {
            metadata: kube::api::ObjectMeta {
                name: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match sas.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(format!("create ServiceAccount default: {e}")),
        }
    }
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let p = pods
        .create(&dry, &sidecar_pod(false))
        .await
        .map_err(|e| format!("dry-run create: {e}"))?;
    let inits = p.spec.and_then(|s| s.init_containers).unwrap_or_default();
    Ok(inits
        .first()
        .and_then(|c| c.restart_policy.as_deref())
        .is_some_and(|r| r == "Always"))
}

async fn old_release_checks(cluster: &mut TestCluster, old: &str) -> Result<OldRelease, String> {
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
    let (default_series, default_value) = feature_enabled(&metrics, "SidecarContainers")
        .ok_or_else(|| format!("no SidecarContainers series on {old}"))?;
    let default_keeps_restart_policy = keeps_restart_policy(cluster).await?;

    cluster
        .restart_apiserver(Some(old), "SidecarContainers=false")
        .await
        .map_err(|e| format!("restart with {old} and the gate off: {e}"))?;
    let metrics = cluster
        .apiserver_metrics()
        .await
        .map_err(|e| e.to_string())?;
    let (_, off_value) = feature_enabled(&metrics, "SidecarContainers")
        .ok_or_else(|| format!("no SidecarContainers series on {old} with the gate off"))?;
    let off_keeps_restart_policy = keeps_restart_policy(cluster).await?;
    let client = cluster.client().await.map_err(|e| e.to_string())?;
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let off_probe_error = match Api::<Pod>::namespaced(client, "default")
        .create(&dry, &sidecar_pod(true))
        .await
    {
        Ok(_) => String::from("accepted"),
        Err(e) => e.to_string(),
    };
    Ok(OldRelease {
        default_series,
        default_value,
        default_keeps_restart_policy,
        off_value,
        off_keeps_restart_policy,
        off_probe_error,
    })
}
