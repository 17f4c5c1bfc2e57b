//! `tandem adopt` as a user runs it: the real binary over the real-world shapes in
//! `examples/adopt/`, real pipes and exit codes.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn tandem(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const MODERN: &[&str] = &[
    "--kubelet-version",
    "1.31.4",
    "--apiserver-version",
    "1.31.4",
];

#[test]
fn adopts_the_examples_and_is_idempotent() {
    let mut args = vec!["adopt", "-f", "examples/adopt/"];
    args.extend(MODERN);
    let once = tandem(&args, None);
    assert!(once.status.success(), "{}", text(&once.stderr));
    let out = text(&once.stdout);
    assert_eq!(out.matches("tandem.dev/adopted").count(), 4, "{out}");
    assert_eq!(out.matches("restartPolicy: Always").count(), 4, "{out}");
    let err = text(&once.stderr);
    for sidecar in [
        "istio-proxy",
        "linkerd-proxy",
        "vault-agent",
        "cloud-sql-proxy",
    ] {
        assert!(
            err.contains(&format!("{sidecar}: moved to a native sidecar")),
            "{sidecar}: {err}"
        );
    }
    // Workarounds are reported, not removed, without --strip-workarounds.
    assert!(
        err.contains("workaround kubexit wrapper on migrate"),
        "{err}"
    );
    assert!(out.contains("/kubexit/kubexit"), "{out}");
    let mut again = vec!["adopt", "-f", "-"];
    again.extend(MODERN);
    let twice = tandem(&again, Some(&out));
    assert!(twice.status.success(), "{}", text(&twice.stderr));
    assert_eq!(
        text(&twice.stdout),
        out,
        "adopting twice changed the output"
    );
}

#[test]
fn strip_workarounds_names_each_removal() {
    let mut args = vec![
        "adopt",
        "-f",
        "examples/adopt/cloudsql-job.yaml",
        "--strip-workarounds",
        "-o",
        "json",
    ];
    args.extend(MODERN);
    let out = tandem(&args, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("stripped kubexit wrapper on migrate"), "{err}");
    assert!(
        err.contains("stripped kubexit wrapper on cloud-sql-proxy"),
        "{err}"
    );
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    let spec = &job["spec"]["template"]["spec"];
    assert_eq!(spec["containers"][0]["command"][0], "/migrate");
    assert_eq!(spec["initContainers"][1]["name"], "cloud-sql-proxy");
    assert_eq!(spec["initContainers"][1]["command"][0], "/cloud-sql-proxy");
    assert!(spec["initContainers"][1].get("env").is_none());
}

#[test]
fn old_nodes_leave_sidecars_and_explain_says_why() {
    let out = tandem(
        &[
            "adopt",
            "-f",
            "examples/adopt/cloudsql-job.yaml",
            "--kubelet-version",
            "1.27.16",
            "--strip-workarounds",
            "--explain",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let input = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/adopt/cloudsql-job.yaml"),
    )
    .unwrap();
    let left = tandem_core::manifest::parse_stream(&text(&out.stdout)).unwrap()[0]
        .value
        .clone();
    let orig = tandem_core::manifest::parse_stream(&input).unwrap()[0]
        .value
        .clone();
    assert_eq!(left, orig, "nothing changes on a 1.27 cluster");
    let err = text(&out.stderr);
    assert!(err.contains("recognition list"), "{err}");
    assert!(err.contains("istio-proxy: containers istio-proxy"), "{err}");
    assert!(
        err.contains("recognised cloud-sql-proxy: container name \"cloud-sql-proxy\""),
        "{err}"
    );
    assert!(err.contains("too old for native sidecars"), "{err}");
    assert!(err.contains("still needed"), "{err}");
    assert!(
        err.contains("spec.template.spec.containers[0].command[0]"),
        "explain names the full field: {err}"
    );
}

#[test]
fn patch_output_moves_and_applies() {
    let input = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/adopt/istio-deployment.yaml"),
    )
    .unwrap();
    let mut args = vec!["adopt", "-f", "-", "--patch", "-o", "json"];
    args.extend(MODERN);
    let out = tandem(&args, Some(&input));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ops: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ops[0]["op"], "move");
    assert_eq!(ops[0]["from"], "/spec/template/spec/containers/1");
    assert_eq!(ops[0]["path"], "/spec/template/spec/initContainers/1");
    let mut doc = tandem_core::manifest::parse_stream(&input).unwrap()[0]
        .value
        .clone();
    let patch: json_patch::Patch = serde_json::from_value(ops).unwrap();
    json_patch::patch(&mut doc, &patch).unwrap();
    assert_eq!(
        doc["spec"]["template"]["spec"]["initContainers"][1]["name"],
        "istio-proxy"
    );
}

#[test]
fn bad_input_writes_nothing_and_report_needs_a_cluster() {
    let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {tandem.dev/adopt: sometimes}\nspec:\n  containers: [{name: app, image: a}, {name: istio-proxy, image: p}]\n";
    let out = tandem(&["adopt", "-f", "-"], Some(bad));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(
        err.contains("metadata.labels") && err.contains("sometimes"),
        "{err}"
    );
    let out = tandem(&["adopt", "--report"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--from-cluster"));
    let out = tandem(&["adopt"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sidecar_objects_are_recognised_in_their_namespace() {
    // The containers that `examples/sidecars/sidecars.yaml` describes, added as plain
    // containers (by an older injector, or by hand): `proxy` is the Sidecar shop/proxy
    // (after its init container), `secrets-agent` the ClusterSidecar of that name.
    let pod = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  \
             initContainers:\n  - {{name: proxy-init, image: example/proxy-init:1.4}}\n  \
             containers:\n  - {{name: app, image: example/app:1}}\n  \
             - {{name: proxy, image: example/proxy:1.4}}\n  \
             - {{name: secrets-agent, image: example/secrets-agent:2.0}}\n"
        )
    };
    let mut args = vec![
        "adopt",
        "-f",
        "-",
        "-o",
        "json",
        "--sidecars",
        "examples/sidecars/sidecars.yaml",
        "--explain",
    ];
    args.extend(MODERN);
    let out = tandem(&args, Some(&pod("shop")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let init: Vec<&str> = v["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // The proxy right after the init container its object runs before it; the agent,
    // which depends on none, first.
    assert_eq!(init, ["secrets-agent", "proxy-init", "proxy"], "{v}");
    assert_eq!(v["spec"]["containers"].as_array().unwrap().len(), 1);
    let err = text(&out.stderr);
    assert!(
        err.contains("Sidecar shop/proxy: containers proxy; after proxy-init"),
        "{err}"
    );
    assert!(
        err.contains(r#"container name "proxy" is Sidecar shop/proxy"#),
        "{err}"
    );
    assert!(
        err.contains(r#"container name "secrets-agent" is ClusterSidecar secrets-agent"#),
        "{err}"
    );

    // In another namespace, the namespaced Sidecar doesn't apply: only the cluster one.
    let out = tandem(&args, Some(&pod("other")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let regular: Vec<&str> = v["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(regular, ["app", "proxy"], "{v}");
}
