//! `tandem version`, `tandem completion`, `tandem uninstall` and the kubectl plugin name,
//! run as the real binary.

use std::process::Command;

fn tandem(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .output()
        .expect("run tandem");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_in_every_format() {
    let version = env!("CARGO_PKG_VERSION");
    let (code, out, _) = tandem(&["version"]);
    assert_eq!(code, 0);
    assert_eq!(out, format!("Client Version: v{version}\n"));
    let (code, out, _) = tandem(&["version", "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["clientVersion"]["version"], version);
    let (_, out, _) = tandem(&["version", "-o", "yaml"]);
    assert!(out.contains(&format!("version: \"{version}\"")), "{out}");
    // --server without a cluster: exit 1 and a reason, the client version still printed.
    let (code, out, err) = tandem(&[
        "version",
        "--server",
        "--kubeconfig",
        "/nonexistent/kubeconfig",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("Client Version"));
    assert!(err.contains("kubeconfig"), "{err}");
}

#[test]
fn completion_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _tandem"),
        ("zsh", "#compdef tandem"),
        ("fish", "complete -c tandem"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let (code, out, err) = tandem(&["completion", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(marker), "{shell}: {marker} missing");
        assert!(out.contains("uninstall"), "{shell}: subcommands listed");
    }
    let (code, _, err) = tandem(&["completion", "tcsh"]);
    assert_eq!(code, 2);
    assert!(err.contains("possible values"), "{err}");
}

#[test]
fn uninstall_prints_webhook_configurations_first() {
    let (code, out, err) = tandem(&["uninstall", "--namespace", "tandem-x"]);
    assert_eq!(code, 0, "{err}");
    let kinds: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .collect();
    assert_eq!(
        kinds.first(),
        Some(&"MutatingWebhookConfiguration"),
        "{out}"
    );
    assert_eq!(kinds.last(), Some(&"Namespace"), "{out}");
    assert!(out.contains("name: tandem-webhook-tls"), "{out}");
    assert!(out.contains("namespace: tandem-x"));
    assert!(!out.contains("BEGIN"), "no key material in the listing");
}

#[cfg(unix)]
#[test]
fn answers_as_kubectl_plugin() {
    let dir = std::env::temp_dir().join(format!("tandem-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let plugin = dir.join("kubectl-tandem");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tandem"), &plugin).expect("symlink");
    let out = Command::new(&plugin).arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: kubectl tandem <COMMAND>"), "{help}");
    let out = Command::new(&plugin).arg("version").output().expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Client Version: v"));
    let _ = std::fs::remove_dir_all(&dir);
}
