//! Consistency of the e2e scripts with each other, checked without a cluster (issue 15,
//! "a fresh machine"): what one script builds is where another looks for it, and the
//! real-kubelet tests stay behind their own switch.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap()
}

/// What a bash expression evaluates to after `ROOT`/`root` are set to `/R`.
fn bash(expr: &str) -> String {
    let out = Command::new("bash")
        .args(["-c", expr])
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("TANDEM_SHIM_BIN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{expr}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn images_sh_copies_the_shim_from_where_build_static_sh_builds_it() {
    // build-static.sh: its default output, with root=/R.
    let build = read("crates/shim/build-static.sh");
    let target = build
        .lines()
        .find_map(|l| l.strip_prefix("target="))
        .unwrap();
    let target_dir = build
        .lines()
        .find(|l| l.starts_with("export CARGO_TARGET_DIR="))
        .unwrap();
    let out_line = build.lines().find(|l| l.starts_with("out=")).unwrap();
    let built = bash(&format!(
        "root=/R; target={target}; {target_dir}; {out_line}; echo \"$out\""
    ));
    // images.sh: the default path it copies from, with ROOT=/R.
    let images = read("e2e/kubelets/images.sh");
    let shim_line = images
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("local shim="))
        .unwrap();
    let copied = bash(&format!(
        "ROOT=/R; {}; echo \"$shim\"",
        shim_line.trim_start_matches("local ")
    ));
    assert_eq!(
        copied, built,
        "images.sh looks for the static shim elsewhere"
    );
}

#[test]
fn real_kubelet_tests_have_their_own_switch() {
    let manifest = read("e2e/Cargo.toml");
    assert!(
        manifest.contains("name = \"kubelets\"")
            && manifest.contains("required-features = [\"real-kubelets\"]"),
        "tests/kubelets/ must need the real-kubelets feature, or ci.sh counts it as passed"
    );
    assert!(read("e2e/kubelets/run.sh").contains("--features real-kubelets --test kubelets"));
    for file in ["main.rs", "adopt.rs", "strip.rs"] {
        let tests = read(&format!("e2e/tests/kubelets/{file}"));
        assert!(
            !tests.contains("return None"),
            "no silent skip left in {file}"
        );
    }
}

#[test]
fn apiserver_1_37_gets_no_endpoint_reconciler() {
    // The flag list start_apiserver builds, for a few versions (binaries not needed:
    // the function is cut before it starts anything).
    let lib = read("e2e/cluster/lib.sh");
    let body = &lib[lib.find("start_apiserver() {").unwrap()..];
    let cut = body.find("  start_proc kube-apiserver").unwrap();
    let func = format!("{}  printf '%s\\n' \"${{args[@]}}\"\n}}", &body[..cut]);
    let cases = [
        ("v1.36.3", "127.0.0.1", false),
        ("v1.37.2", "127.0.0.1", true),
        ("v1.40.0", "127.0.0.1", true),
        // The journey advertises a routable address: the reconciler stays on.
        ("v1.37.2", "10.200.0.1", false),
    ];
    for (ver, advertise, want) in cases {
        let script = format!(
            "set -e; die() {{ exit 1; }}; bin_path() {{ echo /bin/true; }}; \
             K8S_VERSION={ver}; APISERVER_BIND=127.0.0.1; APISERVER_ADVERTISE={advertise}; \
             {func}; start_apiserver {ver} ''"
        );
        let flags = bash(&script);
        assert!(
            flags.contains(&format!("--advertise-address={advertise}")),
            "{flags}"
        );
        assert_eq!(
            flags.contains("--endpoint-reconciler-type=none"),
            want,
            "{ver}: {flags}"
        );
    }
}

#[test]
fn every_journey_test_runs_in_the_journey() {
    // A test_* function left out of ALL would never run, and nothing would say so.
    let tests = read("e2e/journey/tests.sh");
    let all = tests
        .lines()
        .find_map(|l| l.strip_prefix("ALL=("))
        .and_then(|l| l.strip_suffix(')'))
        .expect("tests.sh defines ALL=(...)");
    let listed: Vec<&str> = all.split_whitespace().collect();
    let defined: Vec<&str> = tests
        .lines()
        .filter_map(|l| l.strip_prefix("test_"))
        .filter_map(|l| l.strip_suffix("() {"))
        .collect();
    assert_eq!(listed, defined, "ALL lists the tests in their order");
    assert!(listed.len() >= 6, "{listed:?}");
}
