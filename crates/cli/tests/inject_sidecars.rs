//! `tandem inject --sidecars FILE`: sidecar objects offline, chosen as the webhook would.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn tandem(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// Writes `text` to a file of this test process's own and returns its path.
fn tmp(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("tandem-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: cart
  namespace: shop
  labels: {app.kubernetes.io/part-of: shop}
  annotations: {tandem.dev/sidecars: secrets-agent}
spec:
  containers:
  - {name: cart, image: cart:1}
"#;

#[test]
fn objects_from_a_file_are_selected_ordered_and_recorded() {
    let config = tmp("empty-config.yaml", "sidecars: []\n");
    let out = tandem(
        &[
            "inject",
            "-f",
            "-",
            "-o",
            "json",
            "--mode",
            "native",
            "--config",
            &config,
            "--sidecars",
            "examples/sidecars/sidecars.yaml",
        ],
        POD,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let pod: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let inits: Vec<&str> = pod["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // proxy (order 0) with its init container, then secrets-agent (universal, order 0,
    // by name), then log-shipper (order 10).
    assert_eq!(
        inits,
        [
            "tandem-shim-install",
            "proxy-init",
            "proxy",
            "secrets-agent",
            "log-shipper"
        ],
        "{pod}"
    );
    let status: serde_json::Value = serde_json::from_str(
        pod["metadata"]["annotations"]["tandem.dev/status"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let objects: Vec<&str> = status["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(objects, ["proxy", "secrets-agent", "log-shipper"]);
    assert_eq!(status["objects"][1]["mode"], "universal");
    assert_eq!(status["objects"][0]["revision"].as_str().unwrap().len(), 10);
}

#[test]
fn a_broken_objects_file_is_an_error_naming_the_object() {
    let bad = tmp(
        "bad-sidecars.yaml",
        "apiVersion: tandem.dev/v1alpha1\nkind: ClusterSidecar\nmetadata: {name: bad}\nspec:\n  podSelector: {matchExpressions: [{key: app, operator: Equals, values: [x]}]}\n  containers: [{name: x, image: x}]\n",
    );
    let out = tandem(&["inject", "-f", "-", "--sidecars", &bad], POD);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ClusterSidecar bad") && stderr.contains("Equals"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn requesting_objects_without_any_is_an_error() {
    let out = tandem(&["inject", "-f", "-"], POD);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--sidecars"), "{stderr}");
}
