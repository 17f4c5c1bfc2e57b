//! `tandem inject` as a user runs it: the real binary, real files, real pipes.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn tandem(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .current_dir(repo())
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

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn injects_the_examples_and_is_idempotent() {
    for mode in ["native", "legacy", "affinity", "universal", "auto"] {
        let once = tandem(&["inject", "-f", "examples/", "--mode", mode], None);
        assert!(once.status.success(), "{mode}: {}", text(&once.stderr));
        let out = text(&once.stdout);
        assert_eq!(
            out.matches("tandem.dev/status").count(),
            4,
            "{mode}:\n{out}"
        );
        // The ConfigMap passes through, and its "no" stays a string.
        assert!(out.contains("DRY_RUN: \"no\""), "{out}");
        let twice = tandem(&["inject", "-f", "-", "--mode", mode], Some(&out));
        assert!(twice.status.success(), "{}", text(&twice.stderr));
        assert_eq!(
            text(&twice.stdout),
            out,
            "{mode}: injecting twice changed the output"
        );
    }
}

#[test]
fn auto_explains_its_choice_on_stderr() {
    let out = tandem(&["inject", "-f", "examples/web-deployment.yaml"], None);
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("legacy") && err.contains("no node knowledge"),
        "{err}"
    );
    let out = tandem(
        &[
            "inject",
            "-f",
            "examples/web-deployment.yaml",
            "--nodes",
            "examples/cluster/nodes.yaml",
        ],
        None,
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("auto chose legacy") && err.contains("storage-1"),
        "{err}"
    );
    let out = tandem(
        &[
            "inject",
            "-f",
            "examples/web-deployment.yaml",
            "--kubelet-version",
            "1.27.3",
            "--kubelet-version",
            "v1.31.2-gke.1000",
        ],
        None,
    );
    assert!(
        text(&out.stderr).contains("auto chose universal"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn patch_output_applies_to_the_input() {
    let input = std::fs::read_to_string(repo().join("examples/migrate-job.yaml")).unwrap();
    let out = tandem(
        &[
            "inject",
            "-f",
            "-",
            "--mode",
            "universal",
            "--patch",
            "-o",
            "json",
        ],
        Some(&input),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let patches: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(patches.len(), 2, "one patch per input document");
    assert_eq!(
        patches[1],
        serde_json::json!([]),
        "the ConfigMap is untouched"
    );
    let full = tandem(
        &["inject", "-f", "-", "--mode", "universal", "-o", "json"],
        Some(&input),
    );
    let list: serde_json::Value = serde_json::from_slice(&full.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    let docs = tandem_core::manifest::parse_stream(&input).unwrap();
    let mut job = docs[0].value.clone();
    let ops: json_patch::Patch = serde_json::from_value(patches[0].clone()).unwrap();
    json_patch::patch(&mut job, &ops).unwrap();
    assert_eq!(job, list["items"][0]);
}

#[test]
fn bad_input_writes_nothing_and_says_where() {
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (
            &["inject", "-f", "-"],
            Some("kind: Pod\nspec: [1\n"),
            "<stdin>:2",
        ),
        (
            &["inject", "-f", "-"],
            Some("kind: Job\nmetadata: {name: j}\nspec: {}\n"),
            "Job j: spec.template",
        ),
        (
            &["inject", "-f", "-"],
            Some(
                "kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: log-shipper, image: x}]\n",
            ),
            "spec.containers[0].name",
        ),
        (
            &["inject", "-f", "does-not-exist.yaml"],
            None,
            "cannot read does-not-exist.yaml",
        ),
        (
            &[
                "inject",
                "-f",
                "examples/",
                "--config",
                "examples/cluster/nodes.yaml",
            ],
            None,
            "unknown field",
        ),
    ];
    for (args, stdin, want) in cases {
        let out = tandem(args, *stdin);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let out = tandem(&["inject", "-f", "examples/", "--mode", "sidecar"], None);
    assert_eq!(out.status.code(), Some(2));
    // A bad version is a usage error too, as the help says (issue 15).
    let out = tandem(
        &["inject", "-f", "examples/", "--kubelet-version", "latest"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--kubelet-version"));
}

#[test]
fn unknown_fields_pass_through_the_cli() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  hostUsers: false\n  futureField:\n    nested: [1, \"on\", {deep: true}]\n  containers:\n  - name: app\n    image: app\n    vendorThing: {x: \"0755\"}\n";
    let out = tandem(
        &["inject", "-f", "-", "--mode", "native", "-o", "json"],
        Some(pod),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["spec"]["futureField"],
        serde_json::json!({"nested": [1, "on", {"deep": true}]})
    );
    assert_eq!(v["spec"]["hostUsers"], false);
    assert_eq!(v["spec"]["containers"][0]["vendorThing"]["x"], "0755");
}
