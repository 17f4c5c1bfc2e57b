//! The Helm chart (`charts/tandem`) with the Go-built helm of `e2e/cluster/build.sh helm`:
//! `helm lint --strict`; a typo in values fails; the chart and `tandem install` render
//! the same objects for the same settings (and each renders identical bytes twice);
//! `helm template` with several value sets is accepted by the real API server
//! (server-side dry run); `helm install`, `helm upgrade` (a new sidecar configuration)
//! and `helm uninstall` create, change and remove every object; `tandem inject` works
//! as a Helm post-renderer. `bash e2e/ci.sh` builds helm and runs these.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery;
use serde_json::{Value, json};
use tandem_testcluster::{TestCluster, unique_name};

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn chart() -> PathBuf {
    root().join("charts/tandem")
}

/// The helm binary `e2e/cluster/build.sh helm` caches (or `TANDEM_HELM`).
fn helm_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TANDEM_HELM") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("TANDEM_CACHE").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/tandem"),
        PathBuf::from,
    );
    let ver = std::env::var("TANDEM_HELM_VERSION").unwrap_or_else(|_| "v3.22.0".into());
    let p = cache.join("bin").join(format!("helm-{ver}"));
    assert!(
        p.is_file(),
        "{} is missing: run `bash e2e/cluster/build.sh helm`",
        p.display()
    );
    p
}

/// Runs helm with its own config/cache folders (nothing of the user's is read).
fn helm_raw(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    let home = std::env::temp_dir().join(format!("tandem-helm-home-{}", std::process::id()));
    let mut cmd = Command::new(helm_bin());
    cmd.args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG");
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    cmd.output().unwrap()
}

fn helm(args: &[&str], kubeconfig: Option<&Path>) -> String {
    let out = helm_raw(args, kubeconfig);
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tandem(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tandem {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The Kubernetes version `helm template` renders for (helm built from source assumes
/// 1.20 without it, which the chart's kubeVersion refuses).
const KUBE_VERSION: &str = "v1.36.3";

/// `helm template tandem charts/tandem -n NS --kube-version … --include-crds EXTRA…`
fn template(ns: &str, extra: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        "tandem",
        chart.to_str().unwrap(),
        "--namespace",
        ns,
        "--kube-version",
        KUBE_VERSION,
        "--include-crds",
    ];
    args.extend_from_slice(extra);
    helm(&args, None)
}

fn parse(text: &str) -> Vec<Value> {
    tandem_core::manifest::parse_stream(text)
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect()
}

fn key(o: &Value) -> String {
    format!(
        "{}/{}/{}",
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["namespace"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// What may differ between `tandem install` and the chart, made equal: who manages the
/// objects (`tandem` vs `Helm`), the config's text (comments and key order; compared as
/// YAML) and hence its hash's value (each must still be 16 hex digits).
fn normalize(mut o: Value) -> Value {
    fn labels(l: &mut Value) {
        if l.get("app.kubernetes.io/managed-by").is_some() {
            l["app.kubernetes.io/managed-by"] = json!("MANAGER");
        }
    }
    labels(&mut o["metadata"]["labels"]);
    if o["kind"] == "Deployment" {
        let t = &mut o["spec"]["template"]["metadata"];
        labels(&mut t["labels"]);
        if let Some(h) = t["annotations"].get_mut("tandem.dev/config-hash") {
            let s = h.as_str().unwrap_or_default();
            assert!(
                s.len() == 16 && s.chars().all(|c| c.is_ascii_hexdigit()),
                "config-hash {s:?}"
            );
            *h = json!("HASH");
        }
    }
    if o["kind"] == "ConfigMap"
        && let Some(text) = o["data"]["config.yaml"].as_str()
    {
        let parsed = parse(text).into_iter().next().unwrap();
        o["data"]["config.yaml"] = parsed;
    }
    if let Some(m) = o["metadata"].as_object_mut()
        && m.get("labels").is_some_and(Value::is_null)
    {
        m.remove("labels");
    }
    o
}

fn by_key(objs: Vec<Value>) -> BTreeMap<String, Value> {
    objs.into_iter().map(|o| (key(&o), normalize(o))).collect()
}

fn write_temp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-helm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Values for `tls.mode: secret` with the CA of [`CA_PEM`], base64-encoded
/// (standard alphabet, as `tandem install --ca-bundle` encodes the file).
fn ca_values_file() -> PathBuf {
    write_temp(
        "ca-values.yaml",
        &format!(
            "tls:\n  mode: secret\n  caBundle: {}\n",
            b64(CA_PEM.as_bytes())
        ),
    )
}

/// Standard base64 with padding (what `caBundle` holds).
fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const CA_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIUTESTtandem\n-----END CERTIFICATE-----\n";

#[test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
fn helm_lint_strict_and_typos_fail() {
    let chart = chart();
    let c = chart.to_str().unwrap();
    let out = helm(
        &["lint", "--strict", c, "--kube-version", KUBE_VERSION],
        None,
    );
    assert!(out.contains("0 chart(s) failed"), "{out}");
    // Every value set of the dry-run test lints too.
    for (name, set) in value_sets() {
        let mut args = vec!["lint", "--strict", c, "--kube-version", KUBE_VERSION];
        args.extend(set.iter().map(String::as_str));
        let out = helm_raw(&args, None);
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A typo in values fails, naming the key.
    for (set, word) in [
        ("replicaz=3", "replicaz"),
        ("webhook.failurePolicy=fail", "failurePolicy"),
        ("tls.mode=generate", "mode"),
        ("config.mdoe=native", "mdoe"),
        ("image.digest=latest", "digest"),
    ] {
        let out = helm_raw(
            &[
                "template",
                "t",
                c,
                "--kube-version",
                KUBE_VERSION,
                "--set",
                set,
            ],
            None,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(err.contains(word), "--set {set}: {err}");
    }
    // tls.mode=secret without its CA names what is missing.
    let out = helm_raw(
        &[
            "template",
            "t",
            c,
            "--kube-version",
            KUBE_VERSION,
            "--set",
            "tls.mode=secret",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tls.caBundle"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The chart refuses the Kubernetes version helm assumes when not told (1.20).
    let out = helm_raw(&["template", "t", c], None);
    assert!(!out.status.success(), "kubeVersion >=1.27 must refuse 1.20");
}

/// Settings both can express: `tandem install` flags and the equivalent chart values.
fn parity_cases() -> Vec<(&'static str, Vec<String>, Vec<String>)> {
    let ca = write_temp("ca.pem", CA_PEM);
    let ca_values = ca_values_file();
    // Helm merges a values map into the defaults (lists are replaced), so the chart's
    // config is the built-in one with `mode` and `sidecars` changed: the same file for
    // `tandem install --config`.
    let sidecars =
        json!([{"name": "proxy", "image": "envoyproxy/envoy:v1.32.1", "command": ["envoy"]}]);
    let mut merged = parse(tandem_core::config::DEFAULT_CONFIG_YAML).remove(0);
    merged["mode"] = json!("native");
    merged["sidecars"] = sidecars.clone();
    let config = write_temp(
        "config.yaml",
        &tandem_core::manifest::to_yaml_stream([&merged]),
    );
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        ("defaults", vec![], vec![]),
        (
            "cert-manager, labeller, everything changed",
            s(&[
                "--tls",
                "cert-manager",
                "--cert-days",
                "90",
                "--with-label-nodes",
                "--label-nodes-node-metrics",
                "--label-nodes-args=--selector=pool=general",
                "--replicas",
                "3",
                "--mode",
                "legacy",
                "--failure-policy",
                "ignore",
                "--timeout-seconds",
                "10",
                "--pod-opt-in",
                "false",
                "--scrape-annotations",
                "false",
                "--image",
                "registry.example/tandem:1.2.3",
                "--image-pull-policy",
                "Always",
                "--tls-secret",
                "webhook-cert",
            ]),
            s(&[
                "--set",
                "tls.mode=cert-manager",
                "--set",
                "tls.certManager.duration=2160h",
                "--set",
                "labeller.enabled=true",
                "--set",
                "labeller.nodeMetrics=true",
                "--set",
                "labeller.args={--selector=pool=general}",
                "--set",
                "replicas=3",
                "--set",
                "mode=legacy",
                "--set",
                "webhook.failurePolicy=Ignore",
                "--set",
                "webhook.timeoutSeconds=10",
                "--set",
                "webhook.podOptIn=false",
                "--set",
                "metrics.scrapeAnnotations=false",
                "--set",
                "image.repository=registry.example/tandem",
                "--set",
                "image.tag=1.2.3",
                "--set",
                "image.pullPolicy=Always",
                "--set",
                "tls.secretName=webhook-cert",
            ]),
        ),
        (
            "own Secret and config file",
            s(&[
                "--tls",
                "secret",
                "--ca-bundle",
                ca.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ]),
            vec![
                "-f".into(),
                ca_values.display().to_string(),
                "--set".into(),
                "config.mode=native".into(),
                "--set-json".into(),
                format!("config.sidecars={sidecars}"),
            ],
        ),
    ]
}

#[test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
fn chart_and_tandem_install_render_the_same_objects() {
    let ns = "tandem-system";
    for (name, flags, values) in parity_cases() {
        let mut install_args = vec!["install"];
        install_args.extend(flags.iter().map(String::as_str));
        let first = tandem(&install_args);
        assert_eq!(
            first,
            tandem(&install_args),
            "{name}: install reruns differ"
        );
        assert!(
            !first.contains("PRIVATE KEY"),
            "{name}: a key in the output"
        );
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let chart_text = template(ns, &values);
        assert_eq!(
            chart_text,
            template(ns, &values),
            "{name}: template reruns differ"
        );
        assert!(
            !chart_text.contains("PRIVATE KEY"),
            "{name}: a key in the chart"
        );

        let install: Vec<Value> = parse(&first)
            .into_iter()
            .filter(|o| o["kind"] != "Namespace") // helm's namespace is the release's
            .collect();
        // The chart's pre-delete hook (helm uninstall's order) has no `tandem install`
        // counterpart: `tandem uninstall` deletes in the right order itself.
        let (hooks, chart_objs): (Vec<Value>, Vec<Value>) = parse(&chart_text)
            .into_iter()
            .partition(|o| o["metadata"]["annotations"]["helm.sh/hook"].is_string());
        let job = hooks
            .iter()
            .find(|o| o["kind"] == "Job")
            .unwrap_or_else(|| panic!("{name}: no uninstall hook Job"));
        assert_eq!(job["metadata"]["annotations"]["helm.sh/hook"], "pre-delete");
        let args = &job["spec"]["template"]["spec"]["containers"][0]["args"];
        assert!(
            args.as_array()
                .is_some_and(|a| a.contains(&Value::from("--helm-hook"))),
            "{name}: {args}"
        );
        for o in chart_objs
            .iter()
            .filter(|o| o["kind"] != "CustomResourceDefinition")
        {
            for k in [
                "name",
                "instance",
                "version",
                "component",
                "part-of",
                "managed-by",
            ] {
                assert!(
                    o["metadata"]["labels"][format!("app.kubernetes.io/{k}")].is_string(),
                    "{name}: chart's {} lacks app.kubernetes.io/{k}",
                    key(o)
                );
            }
        }
        // Files in the chart's crds/ are not templated, so its CRDs carry no release
        // labels, where `tandem install` labels everything it renders: compare the
        // CRDs without their labels.
        let unlabel_crds = |mut objs: Vec<Value>| {
            for o in &mut objs {
                if o["kind"] == "CustomResourceDefinition"
                    && let Some(meta) = o["metadata"].as_object_mut()
                {
                    meta.remove("labels");
                }
            }
            objs
        };
        let a = by_key(unlabel_crds(install));
        let b = by_key(unlabel_crds(chart_objs));
        let only_install: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).collect();
        let only_chart: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).collect();
        assert!(
            only_install.is_empty() && only_chart.is_empty(),
            "{name}: only in tandem install: {only_install:?}; only in the chart: {only_chart:?}"
        );
        for (k, x) in &a {
            let y = &b[k];
            assert!(
                x == y,
                "{name}: {k} differs\n--- tandem install\n{}\n--- chart\n{}",
                serde_json::to_string_pretty(x).unwrap(),
                serde_json::to_string_pretty(y).unwrap()
            );
        }
    }
}

/// Value sets for `helm template` + server-side dry run: the defaults, every option on,
/// and an own Secret.
fn value_sets() -> Vec<(&'static str, Vec<String>)> {
    let ca_values = ca_values_file();
    let everything = write_temp(
        "everything.yaml",
        r#"image:
  repository: registry.example/platform/tandem
  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  pullPolicy: Always
  pullSecrets: [regcred]
replicas: 3
resources:
  requests: {cpu: 100m, memory: 64Mi}
  limits: {memory: 256Mi}
priorityClassName: system-cluster-critical
nodeSelector: {kubernetes.io/os: linux}
tolerations:
  - {key: dedicated, operator: Equal, value: platform, effect: NoSchedule}
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{key: pool, operator: In, values: [platform]}]
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: DoNotSchedule
    labelSelector: {matchLabels: {app.kubernetes.io/name: tandem-webhook}}
podAnnotations: {example.com/team: platform}
podLabels: {example.com/cost-center: "42"}
mode: universal
webhook:
  failurePolicy: Ignore
  timeoutSeconds: 3
  podOptIn: false
  namespaceSelector:
    matchExpressions: [{key: environment, operator: NotIn, values: [dev]}]
  objectSelector:
    matchExpressions: [{key: example.com/no-sidecars, operator: DoesNotExist}]
tls:
  mode: cert-manager
  certManager: {duration: 2160h}
metrics:
  serviceMonitor: {enabled: true, interval: 15s, labels: {release: prometheus}}
  podMonitor: {enabled: true}
networkPolicy:
  enabled: true
  ingressFrom:
    - ipBlock: {cidr: 10.0.0.0/8}
labeller:
  enabled: true
  nodeMetrics: true
  args: [--selector=pool=general]
config:
  mode: native
  sidecars:
    - name: proxy
      image: envoyproxy/envoy:v1.32.1
      command: [envoy]
"#,
    );
    vec![
        ("defaults", vec![]),
        (
            "everything",
            vec!["-f".into(), everything.display().to_string()],
        ),
        (
            "own secret",
            vec![
                "-f".into(),
                ca_values.display().to_string(),
                "--set".into(),
                "tls.secretName=my-webhook-cert".into(),
                "--set".into(),
                "replicas=1".into(),
            ],
        ),
    ]
}

/// Minimal CRDs for the kinds of cert-manager and the Prometheus operator, so that the
/// API server can dry-run those objects (their schemas are not what is tested here).
fn stub_crds() -> Vec<Value> {
    let crd = |group: &str, kind: &str, plural: &str| {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.{group}"), "labels": {"tandem.dev/e2e": "true"}},
            "spec": {
                "group": group, "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                "versions": [{"name": "v1", "served": true, "storage": true,
                              "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
            }
        })
    };
    vec![
        crd("cert-manager.io", "Issuer", "issuers"),
        crd("cert-manager.io", "Certificate", "certificates"),
        crd("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
        crd("monitoring.coreos.com", "PodMonitor", "podmonitors"),
    ]
}

async fn api_for(client: &kube::Client, obj: &Value, ns: &str) -> (Api<DynamicObject>, String) {
    let api_version = obj["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = obj["kind"].as_str().unwrap();
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, caps) = discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("discover {kind}: {e}"));
    let api = match caps.scope {
        discovery::Scope::Namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
    };
    (api, obj["metadata"]["name"].as_str().unwrap().to_string())
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn helm_template_value_sets_pass_a_server_side_dry_run() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.unwrap();
    let ns = cluster.namespace("helm-dry").await.unwrap();
    // The stub CRDs are created for real (and removed at the end), then established.
    let crds = stub_crds();
    for crd in &crds {
        let (api, name) = api_for(&client, crd, "").await;
        api.patch(
            &name,
            &PatchParams::apply("tandem-e2e").force(),
            &Patch::Apply(crd),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let mut failed = Vec::new();
    let mut count = 0;
    for (name, set) in value_sets() {
        let set: Vec<&str> = set.iter().map(String::as_str).collect();
        let objs = parse(&template(ns.name(), &set));
        assert!(objs.len() >= 9, "{name}: {} objects", objs.len());
        for obj in &objs {
            let mut discovered = None;
            for _ in 0..20 {
                // CRDs just created may take a moment to appear in discovery.
                let api_version = obj["apiVersion"].as_str().unwrap();
                let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
                let gvk = GroupVersionKind::gvk(group, version, obj["kind"].as_str().unwrap());
                if discovery::pinned_kind(&client, &gvk).await.is_ok() {
                    discovered = Some(api_for(&client, obj, ns.name()).await);
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            let (api, oname) =
                discovered.unwrap_or_else(|| panic!("{name}: no API for {}", key(obj)));
            let pp = PatchParams::apply("tandem-e2e").force().dry_run();
            count += 1;
            if let Err(e) = api.patch(&oname, &pp, &Patch::Apply(obj)).await {
                failed.push(format!("{name}: {}: {e}", key(obj)));
            }
        }
    }
    for crd in &crds {
        let (api, name) = api_for(&client, crd, "").await;
        let _ = api.delete(&name, &DeleteParams::default()).await;
    }
    let _ = ns.delete().await;
    assert!(
        failed.is_empty(),
        "server-side dry run refused:\n{}",
        failed.join("\n")
    );
    eprintln!(
        "{count} objects of {} value sets passed the server-side dry run",
        value_sets().len()
    );
    assert!(count >= 38, "{count} objects dry-run");
}

async fn get(client: &kube::Client, obj: &Value, ns: &str) -> Option<Value> {
    let (api, name) = api_for(client, obj, ns).await;
    api.get_opt(&name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn helm_install_upgrade_uninstall() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.admin_kubeconfig();
    let kc = Some(kubeconfig.as_path());
    let ns = cluster.namespace("helm").await.unwrap();
    let release = "tandem";
    let chart = chart();
    let c = chart.to_str().unwrap();
    // The webhook (which won't run on kwok nodes) must not catch other tests' pods: it
    // matches only namespaces with a label no other test sets, and fails open. Its
    // uninstall hook (a Job) has no kubelet to run on here: e2e/journey runs it.
    let marker = unique_name("helm");
    let guard = write_temp(
        "guard.yaml",
        &format!(
            "uninstallHook:\n  enabled: false\nwebhook:\n  failurePolicy: Ignore\n  namespaceSelector:\n    matchExpressions:\n      - {{key: tandem.dev/e2e-helm, operator: In, values: [{marker}]}}\n"
        ),
    );
    let g = guard.to_str().unwrap();
    helm(
        &["install", release, c, "--namespace", ns.name(), "-f", g],
        kc,
    );
    let rendered = parse(&template(ns.name(), &["-f", g]));
    for obj in rendered
        .iter()
        .filter(|o| o["kind"] != "CustomResourceDefinition")
    {
        let live = get(&client, obj, ns.name())
            .await
            .unwrap_or_else(|| panic!("{} was not created", key(obj)));
        let l = &live["metadata"]["labels"];
        assert_eq!(l["app.kubernetes.io/managed-by"], "Helm", "{}", key(obj));
        assert_eq!(l["app.kubernetes.io/instance"], release, "{}", key(obj));
        assert_eq!(
            live["metadata"]["annotations"]["meta.helm.sh/release-name"],
            release,
            "{}",
            key(obj)
        );
    }
    let find = |kind: &str, name: &str| {
        rendered
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name} not rendered"))
            .clone()
    };
    let mwc = find("MutatingWebhookConfiguration", "tandem");
    let cm = find("ConfigMap", "tandem-config");
    let dep = find("Deployment", "tandem-webhook");
    let live_mwc = get(&client, &mwc, "").await.unwrap();
    assert!(
        live_mwc["webhooks"][0]["clientConfig"]
            .get("caBundle")
            .is_none(),
        "self-managed: no caBundle from the chart"
    );
    // The webhook patches its CA in at runtime (simulated here: the webhook doesn't run
    // on kwok nodes); an upgrade must keep it.
    let (mwc_api, _) = api_for(&client, &mwc, "").await;
    let webhooks: Vec<Value> = live_mwc["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let mut h = h.clone();
            h["clientConfig"]["caBundle"] = json!("Y2EtYnVuZGxl");
            h
        })
        .collect();
    mwc_api
        .patch(
            "tandem",
            &PatchParams::default(),
            &Patch::Merge(json!({"webhooks": webhooks})),
        )
        .await
        .unwrap();
    let hash_before = get(&client, &dep, ns.name()).await.unwrap()["spec"]["template"]["metadata"]
        ["annotations"]["tandem.dev/config-hash"]
        .clone();

    // Upgrade: a new sidecar configuration, and the labeller on.
    let upgrade = write_temp(
        "upgrade.yaml",
        "config:\n  sidecars:\n    - name: proxy\n      image: envoyproxy/envoy:v1.32.1\n      command: [envoy]\nlabeller:\n  enabled: true\n",
    );
    let u = upgrade.to_str().unwrap();
    helm(
        &[
            "upgrade",
            release,
            c,
            "--namespace",
            ns.name(),
            "-f",
            g,
            "-f",
            u,
        ],
        kc,
    );
    let live_cm = get(&client, &cm, ns.name()).await.unwrap();
    let text = live_cm["data"]["config.yaml"].as_str().unwrap();
    assert!(
        text.contains("envoyproxy/envoy:v1.32.1") && !text.contains("fluent-bit"),
        "{text}"
    );
    assert!(tandem_core::Config::from_yaml(text).is_ok(), "{text}");
    let live_dep = get(&client, &dep, ns.name()).await.unwrap();
    let hash_after =
        &live_dep["spec"]["template"]["metadata"]["annotations"]["tandem.dev/config-hash"];
    assert_ne!(
        &hash_before, hash_after,
        "a new config rolls the Deployment"
    );
    let live_mwc = get(&client, &mwc, "").await.unwrap();
    for h in live_mwc["webhooks"].as_array().unwrap() {
        assert_eq!(
            h["clientConfig"]["caBundle"], "Y2EtYnVuZGxl",
            "helm upgrade kept the caBundle the webhook patched in"
        );
    }
    let upgraded = parse(&template(ns.name(), &["-f", g, "-f", u]));
    let labeller = upgraded
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "tandem-label-nodes")
        .expect("labeller rendered");
    assert!(
        get(&client, labeller, ns.name()).await.is_some(),
        "labeller created"
    );
    let history = helm(
        &["history", release, "--namespace", ns.name(), "-o", "json"],
        kc,
    );
    assert_eq!(
        serde_json::from_str::<Value>(&history)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Uninstall: every object is gone (cluster-scoped ones too).
    helm(
        &["uninstall", release, "--namespace", ns.name(), "--wait"],
        kc,
    );
    let mut left = Vec::new();
    for obj in &upgraded {
        if obj["kind"] == "CustomResourceDefinition" {
            continue; // helm keeps CRDs on uninstall, by design
        }
        if get(&client, obj, ns.name()).await.is_some() {
            left.push(key(obj));
        }
    }
    let _ = ns.delete().await;
    assert!(left.is_empty(), "left after helm uninstall: {left:?}");
}

/// A tiny chart with one Deployment, for the post-renderer.
fn app_chart() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-helm-app-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("templates/deployment.yaml"),
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          {{- if .Values.unknown }}
          x-unknown-field-kept: true
          {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-web
spec:
  selector: {app: web}
  ports: [{port: 80}]
"#,
    )
    .unwrap();
    dir
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn tandem_inject_as_a_helm_post_renderer() {
    let app = app_chart();
    let a = app.to_str().unwrap();
    let tandem = env!("CARGO_BIN_EXE_tandem");
    let post = [
        "--post-renderer",
        tandem,
        "--post-renderer-args",
        "inject",
        "--post-renderer-args",
        "--mode=native",
        "--post-renderer-args",
        "-f",
        "--post-renderer-args",
        "-",
    ];
    let mut args = vec![
        "template",
        "shop",
        a,
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "unknown=true",
    ];
    args.extend_from_slice(&post);
    let out = parse(&helm(&args, None));
    let dep = out
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("deployment");
    let init = &dep["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["name"], "log-shipper", "{dep}");
    assert_eq!(init["restartPolicy"], "Always");
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["x-unknown-field-kept"], true,
        "never lose a field"
    );
    assert!(
        out.iter().any(|o| o["kind"] == "Service"),
        "other objects pass through"
    );

    // And `helm install --post-renderer` against the API server.
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.unwrap();
    let kubeconfig = cluster.admin_kubeconfig();
    let ns = cluster.namespace("helm-post").await.unwrap();
    // (Without the unknown field: helm validates against the API server's schema.)
    let mut args = vec!["install", "shop", a, "--namespace", ns.name()];
    args.extend_from_slice(&post);
    helm(&args, Some(&kubeconfig));
    let deps: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns.name(),
        &kube::core::ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment")),
    );
    let live = serde_json::to_value(deps.get("shop-web").await.unwrap()).unwrap();
    let init = &live["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["name"], "log-shipper");
    assert_eq!(init["restartPolicy"], "Always");
    helm(
        &["uninstall", "shop", "--namespace", ns.name()],
        Some(&kubeconfig),
    );
    let _ = ns.delete().await;
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn reapplying_install_output_keeps_the_patched_ca_bundle() {
    // `tandem install | kubectl apply --server-side -f -`, the webhook patches its CA in,
    // then the same output is applied again (a rerun, a GitOps sync): the caBundle stays.
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.unwrap();
    let out = parse(&tandem(&["install"]));
    assert_eq!(
        out,
        parse(&tandem(&["install"])),
        "reruns render the same objects"
    );
    let mut mwc = out
        .into_iter()
        .find(|o| o["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    // Match nothing else while it exists (other tests share the control plane).
    let marker = unique_name("reapply");
    for h in mwc["webhooks"].as_array_mut().unwrap() {
        h["failurePolicy"] = json!("Ignore");
        h["namespaceSelector"]["matchExpressions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "tandem.dev/e2e-reapply", "operator": "In", "values": [marker]}));
    }
    let (api, name) = api_for(&client, &mwc, "").await;
    let apply = PatchParams::apply("kubectl").force();
    api.patch(&name, &apply, &Patch::Apply(&mwc)).await.unwrap();
    // What the webhook does at runtime: its own field manager sets caBundle by name.
    let live = serde_json::to_value(api.get(&name).await.unwrap()).unwrap();
    let mut hooks = live["webhooks"].clone();
    for h in hooks.as_array_mut().unwrap() {
        h["clientConfig"]["caBundle"] = json!("Y2EtYnVuZGxl");
    }
    let pp = PatchParams {
        field_manager: Some("tandem-webhook".into()),
        ..Default::default()
    };
    api.patch(&name, &pp, &Patch::Merge(json!({"webhooks": hooks})))
        .await
        .unwrap();
    api.patch(&name, &apply, &Patch::Apply(&mwc)).await.unwrap();
    let live = serde_json::to_value(api.get(&name).await.unwrap()).unwrap();
    let _ = api.delete(&name, &DeleteParams::default()).await;
    for h in live["webhooks"].as_array().unwrap() {
        assert_eq!(
            h["clientConfig"]["caBundle"], "Y2EtYnVuZGxl",
            "server-side re-apply kept the caBundle: {h}"
        );
    }
}
