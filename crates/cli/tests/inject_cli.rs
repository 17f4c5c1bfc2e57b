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

#[test]
fn reads_repeated_and_typed_keys_as_kubectl_does() {
    // Found in real repositories: a key twice (kubectl: the last wins) and keys that
    // YAML 1.1 types (kubectl: `on`/`y` are "true", `0x10` is "16", `010` is "8").
    let input = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  storageClassName: slow\n  accessModes: [ReadWriteOnce]\n  storageClassName: fast\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {on: a, y: b, 0x10: c, 010: d}\nbinaryData: {}\nextra: 1__0\n";
    let out = tandem(&["inject", "-f", "-", "-o", "json"], Some(input));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"][0]["spec"]["storageClassName"], "fast");
    assert_eq!(
        list["items"][1]["data"],
        serde_json::json!({"true": "b", "16": "c", "8": "d"})
    );
    assert_eq!(list["items"][1]["extra"], 10);
    // In YAML the typed keys come out as the strings kubectl made of them, quoted so
    // that reading the output again gives the same keys.
    let out = tandem(&["inject", "-f", "-"], Some(input));
    let yaml = text(&out.stdout);
    assert!(
        yaml.contains("\"true\": b\n  \"16\": c\n  \"8\": d\n"),
        "{yaml}"
    );
    let again = tandem(&["inject", "-f", "-"], Some(&yaml));
    assert_eq!(text(&again.stdout), yaml);
}

#[test]
fn unrendered_templates_are_named() {
    let out = tandem(
        &["inject", "-f", "-"],
        Some(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {{ .Values.replicas }}\n",
        ),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(
        err.contains("unrendered Helm/Go template") && err.contains("line 6"),
        "{err}"
    );
}

#[test]
fn every_bad_file_of_a_folder_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::copy(
        repo().join("examples/web-deployment.yaml"),
        dir.path().join("a/good.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("a/bad1.yaml"), "kind: Pod\nspec: [1\n").unwrap();
    std::fs::write(
        dir.path().join("a/b/bad2.yaml"),
        "kind: ConfigMap\n---\nimage: {{ .Values.image }}:{{ .Values.tag }}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("z.yaml"), "--- {not: a separator}\n").unwrap();
    let d = dir.path().to_str().unwrap();
    let out = tandem(&["inject", "-f", d, "-R"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    for want in [
        "bad1.yaml:2",
        "bad2.yaml:3",
        "unrendered Helm/Go template",
        "z.yaml:1",
        "3 error(s)",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
}

#[test]
fn foreign_workload_kinds_are_noted_and_can_be_configured() {
    let rollout = "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: r}\nspec:\n  template:\n    spec:\n      containers: [{name: app, image: app}]\n";
    let out = tandem(&["inject", "-f", "-", "--mode", "native"], Some(rollout));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("tandem.dev/status"));
    let err = text(&out.stderr);
    assert!(
        err.contains("1 Rollout object(s) (argoproj.io/v1alpha1) passed through")
            && err.contains("workloadKinds"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tandem.yaml");
    let mut text_config = std::fs::read_to_string(repo().join("examples/tandem.yaml")).unwrap();
    text_config.push_str(
        "workloadKinds:\n- {kind: Rollout, group: argoproj.io, podTemplate: spec.template}\n",
    );
    std::fs::write(&config, text_config).unwrap();
    let out = tandem(
        &[
            "inject",
            "-f",
            "-",
            "--mode",
            "native",
            "--config",
            config.to_str().unwrap(),
        ],
        Some(rollout),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("tandem.dev/status"));
    assert!(!text(&out.stderr).contains("passed through"));
}

/// 100,000 documents go through with flat memory (the old reader held every document
/// three times over: gigabytes). The bound is generous (a debug build, polled from
/// outside); `bench/README.md` has the precise figures of a release build.
#[test]
fn a_hundred_thousand_documents_in_bounded_memory() {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["inject", "-f", "-", "--mode", "native", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut buf = String::new();
        for i in 0..100_000 {
            buf.push_str(&format!(
                "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: w{i}, namespace: ns}}\nspec:\n  template:\n    spec:\n      containers: [{{name: app, image: app:{i}}}]\n"
            ));
            if buf.len() > 1 << 16 {
                stdin.write_all(buf.as_bytes()).unwrap();
                buf.clear();
            }
        }
        stdin.write_all(buf.as_bytes()).unwrap();
    });
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .filter(|l| l.as_ref().unwrap().contains("tandem.dev/status"))
            .count()
    });
    let mut peak_kib = 0u64;
    while child.try_wait().unwrap().is_none() {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    writer.join().unwrap();
    let docs = reader.join().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert_eq!(docs, 100_000);
    assert!(peak_kib > 0, "VmHWM was never read");
    assert!(
        peak_kib < 200 * 1024,
        "peak RSS {} MiB for 100,000 documents",
        peak_kib / 1024
    );
}
