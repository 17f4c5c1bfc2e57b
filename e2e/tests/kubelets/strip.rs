//! A webhook that strips `restartPolicy` on real kubelets (issue 16): tandem's webhook
//! (the release binary, `--mode native`, registered by URL) and a test webhook that
//! removes `restartPolicy` from every init container, registered after it, as a webhook
//! built against a pre-1.28 API would. Without tandem's check the pod would be stored with
//! a plain init container that never exits (stuck in `Init`, see
//! `old_kubelet_native_pod_hangs_in_init_and_doctor_explains_it`). With it: under the
//! default policy (`repair`) the stored pod has its native sidecar back and the Job
//! completes on the current kubelet; under `legacy` the sidecar runs as a regular container
//! and the pod runs.

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::Child;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};
use tandem_e2e::webhook::TestWebhook;

use super::*;

/// tandem's webhook as a process, and both registrations; all removed on drop.
struct Stripped<'a> {
    env: &'a Env,
    webhook: Child,
    configs: Vec<String>,
    // The stripper's server runs on this runtime; dropped last.
    _stripper: TestWebhook,
    _rt: tokio::runtime::Runtime,
}

impl Drop for Stripped<'_> {
    fn drop(&mut self) {
        for name in &self.configs {
            let _ = self.env.kubectl(
                &[
                    "delete",
                    "mutatingwebhookconfiguration",
                    name,
                    "--wait=false",
                ],
                None,
            );
        }
        let _ = self.webhook.kill();
        let _ = self.webhook.wait();
    }
}

/// Removes `restartPolicy` from every init container, as a JSON Patch.
fn strip(obj: &kube::core::DynamicObject) -> json_patch::Patch {
    let ops: Vec<Value> = obj.data["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, c)| c.get("restartPolicy").is_some())
        .map(|(i, _)| {
            json!({"op": "remove", "path": format!("/spec/initContainers/{i}/restartPolicy")})
        })
        .collect();
    serde_json::from_value(Value::Array(ops)).unwrap_or_default()
}

fn registration(name: &str, url: &str, ca_pem: &str, ns: &str, reinvocation: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"tandem.dev/e2e": "true"}},
        "webhooks": [{
            "name": format!("{name}.e2e.tandem.dev"),
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
            "reinvocationPolicy": reinvocation,
            "clientConfig": {
                "url": url,
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
            },
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"]}],
        }]
    })
}

/// Starts tandem's webhook (native mode, the suite's config) and the stripper, and
/// registers both for `ns`: tandem first (`IfNeeded`), the stripper after it (`Never`, the
/// API's default, what old webhooks have).
fn stripped<'a>(env: &'a Env, ns: &Ns) -> Stripped<'a> {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let cfg = env.config();
    let mut webhook = Command::new(&env.tandem)
        .args([
            "webhook",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--mode",
            "native",
        ])
        .args(["--cluster", "never", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tandem webhook");
    // Without --tls-cert it generates a CA and prints it on stdout.
    let mut ca = String::new();
    let mut out = BufReader::new(webhook.stdout.take().expect("stdout"));
    while !ca.contains("-----END CERTIFICATE-----") {
        let mut line = String::new();
        let n = out.read_line(&mut line).expect("read the webhook's CA");
        assert!(n > 0, "tandem webhook exited before printing its CA");
        ca.push_str(&line);
    }
    wait_for("tandem webhook listening", 30, || {
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()
    });

    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let stripper = rt
        .block_on(TestWebhook::start(Arc::new(strip)))
        .expect("start the stripping webhook");
    // The API server calls webhook configurations in name order.
    let tandem_name = format!("m-tandem-{}", ns.name);
    let strip_name = format!("z-strip-{}", ns.name);
    let url = format!("https://127.0.0.1:{port}/mutate");
    for cfg in [
        registration(&tandem_name, &url, &ca, &ns.name, "IfNeeded"),
        registration(
            &strip_name,
            &stripper.url(),
            stripper.ca_pem(),
            &ns.name,
            "Never",
        ),
    ] {
        env.kubectl_ok(&["create", "-f", "-"], Some(&cfg.to_string()));
    }
    Stripped {
        env,
        webhook,
        configs: vec![tandem_name, strip_name],
        _stripper: stripper,
        _rt: rt,
    }
}

fn injected_status(pod: &Value) -> Value {
    pod["metadata"]["annotations"]["tandem.dev/status"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn stripped_native_sidecar_is_repaired_and_the_job_completes_on_the_current_kubelet() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "strip-repair");
    let guard = stripped(&env, &ns);
    create(&env, &job(&ns, "j", Some(NEW), "Never", &[]));
    let pod = wait_job_complete(&env, &ns, "j", 120);
    assert!(guard._stripper.calls() > 0, "the stripper saw the pod");
    // What was stored: the native sidecar, restartPolicy put back after the stripper.
    let init = pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(init.len(), 1, "{init:#?}");
    assert_eq!(init[0]["name"], "helper");
    assert_eq!(init[0]["restartPolicy"], "Always", "repaired");
    assert_eq!(
        injected_status(&pod)["mode"],
        "native",
        "{}",
        pod["metadata"]
    );
    assert_eq!(pod["status"]["phase"], "Succeeded");
    let ev = events(&ns, "j");
    assert_one_sidecar(&ev, "none");
    assert_sidecar_stopped_after_app(&ev);
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn stripped_native_sidecar_falls_back_to_legacy_and_the_pod_runs_on_the_current_kubelet() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "strip-legacy");
    let _guard = stripped(&env, &ns);
    let mut doc = pod(&ns, "p", Some(NEW), "Always", &[("APP_SECONDS", "forever")]);
    doc["metadata"]["annotations"] = json!({"tandem.dev/on-stripped": "legacy"});
    // kubectl prints the webhook's warning on stderr; capture it with the create.
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["create", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(localize(&env, doc).to_string().as_bytes())?;
            child.wait_with_output()
        })
        .expect("kubectl create");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "create: {stderr}");
    eprintln!("kubectl create printed:\n{stderr}");
    assert!(
        stderr.contains("Warning:"),
        "kubectl shows a warning: {stderr}"
    );
    let p = wait_for("pod p Ready", 120, || {
        let p = env.get_json(&["pod", "p", "-n", &ns.name])?;
        p["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(p)
    });
    assert!(restartable_init(&p).is_empty(), "{}", p["spec"]);
    let names: Vec<&str> = p["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        names.contains(&"helper") && names.contains(&"app"),
        "{names:?}"
    );
    assert_eq!(injected_status(&p)["mode"], "legacy", "{}", p["metadata"]);
    let ev = events(&ns, "p");
    assert!(position(&ev, "sidecar start").is_some(), "{ev:#?}");
    assert!(position(&ev, "app start").is_some(), "{ev:#?}");
    env.kubectl_ok(
        &["delete", "pod", "p", "-n", &ns.name, "--timeout=120s"],
        None,
    );
}
