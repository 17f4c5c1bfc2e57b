//! `tandem adopt` on real kubelets (issue 13): a Job that carries its sidecar the old way
//! (a regular container, kept from blocking completion by a shared "done" file the app's
//! exit leaves behind) is adopted with the cluster's real node knowledge
//! (`--from-cluster`). Pinned to the current kubelet, the sidecar becomes native and the
//! Job completes with the sidecar started before the app and stopped after it; pinned to
//! the 1.27 kubelet, adopt leaves it a regular container (the node would run a native
//! sidecar as a plain init container that never exits) and the Job still completes.

use serde_json::{Value, json};

use super::*;

/// A Job with the app and a cloud-sql-proxy-style sidecar in `spec.containers`, the
/// sidecar's command the common "done file" workaround: run the real sidecar in the
/// background, stop it once the app has left `/e2e/app-exited` behind.
fn hacked_job(ns: &Ns, name: &str, node: &str) -> Value {
    let mut doc = job(ns, name, Some(node), "Never", &[]);
    let hack = "/sidecar & p=$!; \
                while [ ! -e /e2e/app-exited ]; do sleep 1; done; \
                kill $p; wait $p";
    doc["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({
            "name": "cloud-sql-proxy",
            "image": "tandem.local/e2e-sidecar:e2e",
            "imagePullPolicy": "Never",
            "command": ["/bin/sh", "-c", hack],
            "volumeMounts": [{"name": "e2e", "mountPath": "/e2e"}],
        }));
    doc
}

/// `tandem adopt -o json --from-cluster` of one document; returns the output and stderr's
/// explanation.
fn adopt(env: &Env, doc: &Value) -> (Value, String) {
    let kc = env.kubeconfig.to_str().expect("utf-8 path");
    let out = std::process::Command::new(&env.tandem)
        .args([
            "adopt",
            "-f",
            "-",
            "-o",
            "json",
            "--from-cluster",
            "--kubeconfig",
            kc,
            "--explain",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(doc.to_string().as_bytes())?;
            child.wait_with_output()
        })
        .expect("run tandem adopt");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tandem adopt failed: {stderr}");
    let adopted = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("tandem adopt output: {e}: {stderr}"));
    (adopted, stderr)
}

fn container_names(doc: &Value, list: &str) -> Vec<String> {
    doc["spec"]["template"]["spec"][list]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn adopted_job_becomes_native_and_completes_on_the_current_kubelet() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "adopt-new");
    let input = hacked_job(&ns, "j", NEW);
    let (doc, explain) = adopt(&env, &input);
    eprintln!("tandem adopt --explain:\n{explain}");
    assert_eq!(restartable_init(&doc), ["cloud-sql-proxy"], "{doc}");
    assert_eq!(container_names(&doc, "containers"), ["app"]);
    // Moved verbatim: the container object is the input's, plus restartPolicy.
    let mut moved = doc["spec"]["template"]["spec"]["initContainers"][0].clone();
    moved
        .as_object_mut()
        .expect("container")
        .remove("restartPolicy");
    assert_eq!(
        moved, input["spec"]["template"]["spec"]["containers"][1],
        "no field lost in the move"
    );
    // The "done file" script is reported, never stripped.
    assert!(explain.contains("cloud-sql-proxy"), "{explain}");
    create(&env, &doc);
    let pod = wait_job_complete(&env, &ns, "j", 120);
    assert_eq!(pod["status"]["phase"], "Succeeded");
    let st = statuses(&pod);
    assert!(
        st.contains_key("cloud-sql-proxy")
            && pod["status"]["initContainerStatuses"]
                .as_array()
                .is_some_and(|a| a.iter().any(|c| c["name"] == "cloud-sql-proxy")),
        "the kubelet ran it as an init container: {st:#?}"
    );
    let ev = events(&ns, "j");
    let sidecar = position(&ev, "sidecar start").expect("sidecar started");
    let app = position(&ev, "app start").expect("app started");
    assert!(sidecar < app, "native: the sidecar started first: {ev:#?}");
    assert_sidecar_stopped_after_app(&ev);
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn adopt_leaves_the_sidecar_regular_on_the_1_27_kubelet_and_the_job_completes() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "adopt-old");
    let input = hacked_job(&ns, "j", OLD);
    let (doc, explain) = adopt(&env, &input);
    eprintln!("tandem adopt --explain:\n{explain}");
    assert!(restartable_init(&doc).is_empty(), "left legacy: {doc}");
    assert_eq!(
        doc["spec"]["template"]["spec"]["containers"],
        input["spec"]["template"]["spec"]["containers"],
        "unchanged"
    );
    assert!(
        explain.contains(OLD),
        "the reason names the node: {explain}"
    );
    create(&env, &doc);
    let pod = wait_job_complete(&env, &ns, "j", 180);
    assert_eq!(pod["status"]["phase"], "Succeeded");
    let ev = events(&ns, "j");
    assert_sidecar_stopped_after_app(&ev);
}
