//! The command line behaves the same way everywhere (issue 15, "a fresh machine"): the
//! same short flags mean the same thing in every command, durations are written as
//! kubectl writes them, bad versions are usage errors, a closed stdout ends quietly,
//! configured sidecars are checked strictly by every command that reads a config.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn tandem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The subcommands `tandem --help` lists (those added later are checked too).
fn commands() -> Vec<String> {
    let help = text(&tandem(&["--help"]).stdout);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn short_flags_mean_the_same_in_every_command() {
    let meaning = [
        ("-n", "--namespace"),
        ("-A", "--all-namespaces"),
        ("-l", "--selector"),
        ("-R", "--recursive"),
        ("-f", "--filename"),
        ("-o", "--output"),
    ];
    let cmds = commands();
    assert!(cmds.len() >= 6, "{cmds:?}");
    let mut seen = std::collections::BTreeMap::<&str, Vec<String>>::new();
    for cmd in &cmds {
        let help = text(&tandem(&[cmd, "--help"]).stdout);
        for line in help.lines().map(str::trim_start) {
            for (short, long) in meaning {
                if let Some(rest) = line.strip_prefix(&format!("{short}, ")) {
                    let got = rest.split([' ', ',']).next().unwrap();
                    assert_eq!(
                        got, long,
                        "`tandem {cmd}`: {short} is {got}, elsewhere {long}"
                    );
                    seen.entry(short).or_default().push(cmd.clone());
                }
            }
        }
    }
    // Where each letter is expected (more commands may add them, with the same meaning).
    for (short, cmd) in [
        ("-n", "doctor"),
        ("-n", "install"),
        ("-A", "doctor"),
        ("-l", "doctor"),
        ("-l", "label-nodes"),
        ("-R", "inject"),
        ("-R", "lint"),
    ] {
        assert!(
            seen.get(short).is_some_and(|c| c.iter().any(|c| c == cmd)),
            "`tandem {cmd}` has no {short}: {seen:?}"
        );
    }
}

#[test]
fn durations_are_written_as_kubectl_writes_them() {
    for args in [
        &["doctor", "--request-timeout", "30s"][..],
        &[
            "doctor",
            "--request-timeout",
            "1m30s",
            "--node-timeout",
            "2s",
        ],
        &["doctor", "--request-timeout", "30"],
        &[
            "label-nodes",
            "--once",
            "--resync",
            "5m",
            "--node-timeout",
            "500ms",
        ],
        &[
            "inject",
            "-f",
            "-",
            "--from-cluster",
            "--request-timeout",
            "0",
        ],
    ] {
        let mut a = args.to_vec();
        a.extend(["--kubeconfig", "/nonexistent/kubeconfig"]);
        let o = tandem(&a);
        let err = text(&o.stderr);
        assert!(
            !err.contains("invalid value") && err.contains("/nonexistent/kubeconfig"),
            "{args:?}: the flags were refused, or something else went wrong:\n{err}"
        );
    }
    let o = tandem(&["doctor", "--request-timeout", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("not a duration"));
}

#[test]
fn bad_versions_are_usage_errors() {
    for flag in ["--kubelet-version", "--apiserver-version"] {
        let o = tandem(&["inject", "-f", "examples/", flag, "banana"]);
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("banana"));
        assert!(o.stdout.is_empty());
    }
    let o = tandem(&["lint", "-f", "examples/", "--kubelet-version", "banana"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_closed_stdout_ends_quietly() {
    for args in [
        &["inject", "-f", "examples/", "-R"][..],
        &["install"],
        &["lint", "-f", "examples/", "-o", "json"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // `| head` that has already gone
        let o = child.wait_with_output().unwrap();
        let err = text(&o.stderr);
        assert!(
            !err.contains("error") && !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}:\n{err}"
        );
        assert_eq!(o.status.code(), Some(0), "{args:?}:\n{err}");
    }
}

#[test]
fn every_command_that_reads_a_config_checks_sidecars_strictly() {
    let dir = std::env::temp_dir().join(format!("tandem-cli-strict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (yaml, want) in [
        (
            "sidecars: [{name: p, image: x, imagePullPolcy: Always}]",
            "sidecars[0] (p): imagePullPolcy: unknown field (did you mean imagePullPolicy?)",
        ),
        (
            "sidecars: [{name: p, image: x, resorces: {limits: {cpu: 1}}}]",
            "resorces: unknown field (did you mean resources?)",
        ),
        (
            "sidecars: [{name: p, image: x, resources: {limits: {cpu: lots}}}]",
            "resources.limits.cpu: \"lots\" is not a quantity",
        ),
    ] {
        let cfg = dir.join("config.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let cfg = cfg.to_str().unwrap();
        for args in [
            &["inject", "-f", "examples/", "--config", cfg][..],
            &["install", "--config", cfg],
            &[
                "webhook",
                "--config",
                cfg,
                "--cluster",
                "never",
                "--listen",
                "127.0.0.1:0",
            ],
        ] {
            let o = tandem(args);
            let err = text(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.contains(want), "{args:?}: {err}");
            assert_eq!(err.matches(want).count(), 1, "printed once: {err}");
            assert!(o.stdout.is_empty(), "{args:?}");
        }
    }
    // lint applies the same check to the manifests it reads.
    let pod = dir.join("pod.yaml");
    std::fs::write(
        &pod,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: a, imagePullPolcy: Always}\n",
    )
    .unwrap();
    let o = tandem(&["lint", "-f", pod.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stdout).contains("TL007"), "{}", text(&o.stdout));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_webhook_readme_names_only_flags_that_exist() {
    // issue 15: it documented `label-nodes --watch`, which is no flag of label-nodes.
    let mut known = String::new();
    for cmd in commands() {
        known.push_str(&text(&tandem(&[&cmd, "--help"]).stdout));
    }
    let readme = std::fs::read_to_string(repo().join("crates/webhook/README.md")).unwrap();
    let others = ["cargo", "bash", "kubectl", "curl", "openssl", "go "];
    for piece in readme.split('`').skip(1).step_by(2) {
        // Commands of other tools, possibly after environment variables.
        let command = piece
            .split_whitespace()
            .find(|w| !w.contains('='))
            .unwrap_or_default();
        if others.iter().any(|o| command.starts_with(o.trim())) {
            continue;
        }
        for word in piece.split([' ', ',', '=']) {
            let Some(name) = word.strip_prefix("--") else {
                continue;
            };
            let flag: String = name
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                .collect();
            if flag.is_empty() {
                continue;
            }
            assert!(
                known.contains(&format!("--{flag} ")) || known.contains(&format!("--{flag}\n")),
                "crates/webhook/README.md mentions --{flag}, which no tandem command has"
            );
        }
    }
}
