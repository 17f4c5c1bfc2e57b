//! tandem's pods on real kubelets with real containers (issue 7): a current kubelet
//! (native sidecars), a 1.28 kubelet (knows the field, gate off: rejects it) and a kubelet
//! older than 1.28 (ignores the field), each with its own containerd, all registered with
//! one control plane. `bash e2e/kubelets/run.sh` builds and starts everything and runs
//! these tests; they read `$TANDEM_KUBELETS_STATE/kubelets.env` (default state dir
//! `/var/lib/tandem-kubelets`). The target needs the `real-kubelets` feature (run.sh turns
//! it on), so `cargo test --workspace -- --ignored` (e2e/ci.sh) does not build it, run it,
//! or count it as passed; started without run.sh's environment, each test fails saying so.
//!
//! Every pod is host-network (the nodes have no pod network that leads anywhere) and pinned
//! to its node by `nodeName` (except the affinity test, which goes through the scheduler).
//! The test sidecar and app (e2e/kubelets/images) append to an `events` file in a hostPath
//! directory per workload: when the sidecar started and under which shim state (which copy
//! acts), whether it was ready when the app started, and whether the app had exited when the
//! sidecar got SIGTERM. The tests read that file and the pod's status.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

mod adopt;
mod strip;

const NEW: &str = "k-new";
const K128: &str = "k-128";
const OLD: &str = "k-old";

/// What run.sh/up.sh wrote: where the cluster is and where the state lives.
struct Env {
    state: PathBuf,
    kubeconfig: PathBuf,
    server: String,
    tandem: PathBuf,
}

/// The environment run.sh prepared. A test started without it fails (never a silent
/// pass): the `real-kubelets` feature is the switch, and run.sh the way to use it.
fn env_or_skip() -> Option<Env> {
    assert!(
        std::env::var("TANDEM_KUBELETS_E2E").as_deref() == Ok("1"),
        "needs real kubelets: run `bash e2e/kubelets/run.sh` (it starts them and sets \
         TANDEM_KUBELETS_E2E=1)"
    );
    Some(env())
}

fn env() -> Env {
    let state = PathBuf::from(
        std::env::var("TANDEM_KUBELETS_STATE")
            .unwrap_or_else(|_| "/var/lib/tandem-kubelets".into()),
    );
    let file = state.join("kubelets.env");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: start the environment with `bash e2e/kubelets/run.sh` (or up.sh)",
            file.display()
        )
    });
    let vars: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| {
        vars.get(k)
            .map(|v| v.to_string())
            .unwrap_or_else(|| panic!("{k} missing in {}", file.display()))
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tandem = std::env::var("TANDEM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            ["release", "debug"]
                .iter()
                .map(|p| root.join("target").join(p).join("tandem"))
                .find(|p| p.exists())
                .expect("tandem binary: cargo build --release -p tandem (or set TANDEM_BIN)")
        });
    Env {
        state,
        kubeconfig: PathBuf::from(get("TANDEM_KUBELETS_KUBECONFIG")),
        server: get("TANDEM_KUBELETS_SERVER"),
        tandem,
    }
}

/// Runs a command with optional stdin; Ok(stdout) on exit 0, Err(stderr + stdout) otherwise.
fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<String, String> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{cmd:?} exited {}: {}{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Env {
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        run(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args),
            stdin,
        )
    }

    fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        self.kubectl(args, stdin).unwrap_or_else(|e| panic!("{e}"))
    }

    fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        self.kubectl(&a, None)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
    }

    fn tandem(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        run(Command::new(&self.tandem).args(args), stdin)
    }

    /// The injector's config for these tests: one sidecar from the test image, the shim
    /// copied from tandem's image.
    fn config(&self) -> PathBuf {
        let path = self.state.join("tandem-e2e-config.yaml");
        std::fs::write(
            &path,
            "mode: universal\n\
             universal: {settleTimeout: 5s, startupProbe: auto}\n\
             shim: {delivery: copy, image: tandem.local/tandem:e2e}\n\
             sidecars:\n\
             - name: helper\n\
             \x20 image: tandem.local/e2e-sidecar:e2e\n\
             \x20 imagePullPolicy: Never\n\
             \x20 command: [/sidecar]\n\
             \x20 volumeMounts: [{name: e2e, mountPath: /e2e}]\n",
        )
        .expect("write config");
        path
    }

    /// `tandem inject -o json` of one document, with the given flags.
    fn inject(&self, doc: &Value, flags: &[&str]) -> Value {
        let cfg = self.config();
        let cfg = cfg.to_str().expect("utf-8 path");
        let mut args = vec!["inject", "-c", cfg, "-f", "-", "-o", "json", "-q"];
        args.extend_from_slice(flags);
        let out = self
            .tandem(&args, Some(&doc.to_string()))
            .unwrap_or_else(|e| panic!("tandem inject: {e}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("tandem inject output: {e}: {out}"))
    }
}

/// A namespace for one test (deleted at the end) whose default service account may read
/// pods, which the shim's Job-completion poller needs.
struct Ns<'a> {
    env: &'a Env,
    name: String,
}

impl<'a> Ns<'a> {
    fn new(env: &'a Env, prefix: &str) -> Ns<'a> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        let name = format!("{prefix}-{:05x}", nanos & 0xfffff);
        env.kubectl_ok(&["create", "namespace", &name], None);
        env.kubectl_ok(
            &[
                "create",
                "rolebinding",
                "shim-reads-pods",
                "-n",
                &name,
                "--clusterrole=view",
                &format!("--serviceaccount={name}:default"),
            ],
            None,
        );
        // The service-account controller creates "default" shortly after the namespace.
        wait_for(&format!("service account default in {name}"), 30, || {
            env.kubectl(&["get", "serviceaccount", "default", "-n", &name], None)
                .ok()
        });
        Ns { env, name }
    }

    /// The hostPath directory where a workload's processes write their events.
    fn dir(&self, workload: &str) -> PathBuf {
        self.env.state.join("pods").join(&self.name).join(workload)
    }
}

impl Drop for Ns<'_> {
    fn drop(&mut self) {
        let _ = self
            .env
            .kubectl(&["delete", "namespace", &self.name, "--wait=false"], None);
    }
}

/// Polls `f` every 500 ms until it returns Some, or panics after `secs`.
fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The pod spec of a test workload: the app (test image) on `node`, host network, the
/// events directory mounted at /e2e.
fn pod_spec(
    ns: &Ns,
    workload: &str,
    node: Option<&str>,
    restart: &str,
    app_env: &[(&str, &str)],
) -> Value {
    let env: Vec<Value> = app_env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let mut spec = json!({
        "hostNetwork": true,
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 30,
        "volumes": [{"name": "e2e", "hostPath": {
            "path": ns.dir(workload).to_str().expect("utf-8 path"), "type": "DirectoryOrCreate"}}],
        "containers": [{
            "name": "app", "image": "tandem.local/e2e-app:e2e", "imagePullPolicy": "Never",
            "command": ["/app"], "env": env,
            "volumeMounts": [{"name": "e2e", "mountPath": "/e2e"}]
        }]
    });
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    spec
}

fn pod(ns: &Ns, name: &str, node: Option<&str>, restart: &str, app_env: &[(&str, &str)]) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns.name},
           "spec": pod_spec(ns, name, node, restart, app_env)})
}

fn job(ns: &Ns, name: &str, node: Option<&str>, restart: &str, app_env: &[(&str, &str)]) -> Value {
    // With OnFailure, a container restart counts against backoffLimit.
    let backoff = if restart == "OnFailure" { 3 } else { 0 };
    json!({"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "namespace": ns.name},
           "spec": {"backoffLimit": backoff, "template": {
               "metadata": {"labels": {"e2e-job": name}},
               "spec": pod_spec(ns, name, node, restart, app_env)}}})
}

/// Points every container's in-cluster API address at the API server on 127.0.0.1: there
/// is no kube-proxy, and the `kubernetes` service's ClusterIP must never be dialled here.
fn localize(env: &Env, mut doc: Value) -> Value {
    let port = env
        .server
        .rsplit(':')
        .next()
        .expect("server port")
        .to_string();
    let extra = [
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_string()),
        ("KUBERNETES_SERVICE_PORT", port),
        ("TANDEM_API_URL", env.server.clone()),
    ];
    let spec = if doc["kind"] == "Job" {
        &mut doc["spec"]["template"]["spec"]
    } else {
        &mut doc["spec"]
    };
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec[list].as_array_mut() {
            for c in cs {
                if !c["env"].is_array() {
                    c["env"] = json!([]);
                }
                let envs = c["env"].as_array_mut().expect("env array");
                for (k, v) in &extra {
                    envs.push(json!({"name": k, "value": v}));
                }
            }
        }
    }
    doc
}

fn create(env: &Env, doc: &Value) {
    env.kubectl_ok(
        &["create", "-f", "-"],
        Some(&localize(env, doc.clone()).to_string()),
    );
}

/// The events file of a workload, one line per event, without the uptime stamp.
fn events(ns: &Ns, workload: &str) -> Vec<String> {
    std::fs::read_to_string(ns.dir(workload).join("events"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            l.split_once(' ')
                .map(|(_, rest)| rest.to_string())
                .unwrap_or_default()
        })
        .collect()
}

fn position(ev: &[String], prefix: &str) -> Option<usize> {
    ev.iter().position(|l| l.starts_with(prefix))
}

/// Exactly one sidecar process ran, under the expected shim state; the app found it ready.
fn assert_one_sidecar(ev: &[String], state: &str) {
    let starts: Vec<&String> = ev
        .iter()
        .filter(|l| l.starts_with("sidecar start"))
        .collect();
    assert_eq!(starts.len(), 1, "exactly one copy acts: {ev:#?}");
    assert_eq!(
        starts[0],
        &format!("sidecar start state={state}"),
        "{ev:#?}"
    );
    let app = position(ev, "app start").unwrap_or_else(|| panic!("the app started: {ev:#?}"));
    let ready =
        position(ev, "sidecar ready").unwrap_or_else(|| panic!("the sidecar got ready: {ev:#?}"));
    assert!(ready < app, "sidecar ready before the app started: {ev:#?}");
    assert!(ev[app].contains("sidecar-ready=yes"), "{ev:#?}");
}

fn assert_sidecar_stopped_after_app(ev: &[String]) {
    let exit = ev
        .iter()
        .rposition(|l| l.starts_with("app exit"))
        .unwrap_or_else(|| panic!("the app exited: {ev:#?}"));
    let term = position(ev, "sidecar sigterm")
        .unwrap_or_else(|| panic!("the sidecar got SIGTERM: {ev:#?}"));
    assert!(exit < term, "sidecar stopped after the app: {ev:#?}");
    assert_eq!(ev[term], "sidecar sigterm app-exited=yes", "{ev:#?}");
}

/// Waits for a Job's Complete condition (panics on Failed), returns its pod.
fn wait_job_complete(env: &Env, ns: &Ns, name: &str, secs: u64) -> Value {
    wait_for(&format!("job {name} to complete"), secs, || {
        let j = env.get_json(&["job", name, "-n", &ns.name])?;
        let conds = j["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(f) = conds
            .iter()
            .find(|c| c["type"] == "Failed" && c["status"] == "True")
        {
            panic!("job {name} failed: {f}; pods: {}", pods_summary(env, ns));
        }
        conds
            .iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True")
            .then_some(())
    });
    let pods = env
        .get_json(&["pods", "-n", &ns.name, "-l", &format!("e2e-job={name}")])
        .expect("job pods");
    pods["items"][0].clone()
}

fn pods_summary(env: &Env, ns: &Ns) -> String {
    env.kubectl(&["get", "pods", "-n", &ns.name, "-o", "wide"], None)
        .unwrap_or_else(|e| e)
}

/// Restart counts and final states of a pod's containers, by name.
fn statuses(pod: &Value) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for list in ["initContainerStatuses", "containerStatuses"] {
        for c in pod["status"][list].as_array().cloned().unwrap_or_default() {
            m.insert(c["name"].as_str().unwrap_or_default().to_string(), c);
        }
    }
    m
}

fn restartable_init(doc: &Value) -> Vec<String> {
    let spec = if doc["kind"] == "Job" {
        &doc["spec"]["template"]["spec"]
    } else {
        &doc["spec"]
    };
    spec["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|c| c["restartPolicy"] == "Always")
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

const UNIVERSAL: &[&str] = &["--mode", "universal", "--apiserver-version", "1.36.3"];
const NATIVE: &[&str] = &["--mode", "native", "--apiserver-version", "1.36.3"];

// ---------------------------------------------------------------- current kubelet

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn current_kubelet_native_job_completes_with_sidecar_first_and_last() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "new-native");
    let doc = env.inject(&job(&ns, "j", Some(NEW), "Never", &[]), NATIVE);
    assert_eq!(restartable_init(&doc), ["helper"]);
    create(&env, &doc);
    let pod = wait_job_complete(&env, &ns, "j", 120);
    assert_eq!(pod["status"]["phase"], "Succeeded");
    let ev = events(&ns, "j");
    assert_one_sidecar(&ev, "none");
    assert_sidecar_stopped_after_app(&ev);
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn current_kubelet_universal_always_native_copy_acts_and_stops_after_the_app() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "new-uni-always");
    let doc = env.inject(
        &pod(&ns, "p", Some(NEW), "Always", &[("APP_SECONDS", "forever")]),
        UNIVERSAL,
    );
    assert_eq!(restartable_init(&doc), ["helper"]);
    create(&env, &doc);
    let p = wait_for("pod p Ready", 120, || {
        let p = env.get_json(&["pod", "p", "-n", &ns.name])?;
        let ready = p["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then_some(p)
    });
    let ev = events(&ns, "p");
    assert_one_sidecar(&ev, "native-running");
    // The regular copy stays, doing nothing (restartPolicy Always: it sleeps).
    let st = statuses(&p);
    assert!(
        st["helper-legacy"]["state"]["running"].is_object(),
        "{:#?}",
        st["helper-legacy"]
    );
    assert!(
        st["helper"]["state"]["running"].is_object(),
        "{:#?}",
        st["helper"]
    );
    // Termination: the app first, then the sidecar (reverse order, after the app exited).
    env.kubectl_ok(
        &["delete", "pod", "p", "-n", &ns.name, "--timeout=120s"],
        None,
    );
    let ev = events(&ns, "p");
    assert_sidecar_stopped_after_app(&ev);
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn current_kubelet_universal_onfailure_job_completes_native_copy_acts() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "new-uni-onfail");
    let doc = env.inject(
        &job(&ns, "j", Some(NEW), "OnFailure", &[("APP_FAIL_FIRST", "1")]),
        UNIVERSAL,
    );
    create(&env, &doc);
    let pod = wait_job_complete(&env, &ns, "j", 180);
    let ev = events(&ns, "j");
    assert_one_sidecar(&ev, "native-running");
    assert_sidecar_stopped_after_app(&ev);
    // The app failed once and was restarted in place, the sidecar kept running.
    assert_eq!(
        ev.iter().filter(|l| l.starts_with("app start")).count(),
        2,
        "{ev:#?}"
    );
    assert_eq!(statuses(&pod)["app"]["restartCount"], 1);
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn current_kubelet_universal_never_job_completes_native_copy_acts() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "new-uni-never");
    let doc = env.inject(&job(&ns, "j", Some(NEW), "Never", &[]), UNIVERSAL);
    create(&env, &doc);
    let pod = wait_job_complete(&env, &ns, "j", 120);
    let ev = events(&ns, "j");
    assert_one_sidecar(&ev, "native-running");
    assert_sidecar_stopped_after_app(&ev);
    let st = statuses(&pod);
    // The native copy: first run exited 0 (state first-run), restarted at once, acted.
    assert_eq!(st["helper"]["restartCount"], 1, "{:#?}", st["helper"]);
    assert_eq!(st["helper-legacy"]["state"]["terminated"]["exitCode"], 0);
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn affinity_pod_is_scheduled_onto_the_native_capable_node_only() {
    let Some(env) = env_or_skip() else { return };
    let labels = label_nodes(&env);
    assert_eq!(
        labels.get(NEW).map(String::as_str),
        Some("true"),
        "{labels:?}"
    );
    for n in [K128, OLD] {
        assert_ne!(
            labels.get(n).map(String::as_str),
            Some("true"),
            "{labels:?}"
        );
    }
    let ns = Ns::new(&env, "affinity");
    let doc = env.inject(
        &job(&ns, "j", None, "Never", &[]),
        &["--mode", "affinity", "--apiserver-version", "1.36.3"],
    );
    create(&env, &doc);
    let pod = wait_job_complete(&env, &ns, "j", 120);
    assert_eq!(pod["spec"]["nodeName"], NEW);
    let ev = events(&ns, "j");
    assert_one_sidecar(&ev, "none");
    assert_sidecar_stopped_after_app(&ev);
}

/// `tandem label-nodes --once` over the real nodes; falls back to the versions when the
/// labeller cannot decide (recorded in the test output). Returns node → label value.
fn label_nodes(env: &Env) -> BTreeMap<String, String> {
    let kc = env.kubeconfig.to_str().expect("utf-8 path").to_string();
    match env.tandem(&["label-nodes", "--once", "--kubeconfig", &kc], None) {
        Ok(out) => eprintln!("tandem label-nodes --once:\n{out}"),
        Err(e) => eprintln!("tandem label-nodes --once failed: {e}"),
    }
    let nodes = env.get_json(&["nodes"]).expect("nodes");
    let mut m = BTreeMap::new();
    for n in nodes["items"].as_array().cloned().unwrap_or_default() {
        let name = n["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let v = n["metadata"]["labels"]["tandem.dev/native-sidecars"]
            .as_str()
            .unwrap_or("")
            .to_string();
        m.insert(name, v);
    }
    m
}

// ---------------------------------------------------------------- kubelet older than 1.28

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn old_kubelet_universal_never_job_completes_regular_copy_acts() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "old-uni-never");
    let doc = env.inject(&job(&ns, "j", Some(OLD), "Never", &[]), UNIVERSAL);
    create(&env, &doc);
    let pod = wait_job_complete(&env, &ns, "j", 180);
    let ev = events(&ns, "j");
    assert_one_sidecar_legacy(&ev);
    assert_sidecar_stopped_after_app(&ev);
    let st = statuses(&pod);
    // A plain init container on this kubelet: ran once, exited 0.
    assert_eq!(st["helper"]["restartCount"], 0, "{:#?}", st["helper"]);
    assert_eq!(st["helper"]["state"]["terminated"]["exitCode"], 0);
    assert_eq!(st["helper-legacy"]["state"]["terminated"]["exitCode"], 0);
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn old_kubelet_universal_onfailure_job_completes_regular_copy_acts() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "old-uni-onfail");
    let doc = env.inject(
        &job(&ns, "j", Some(OLD), "OnFailure", &[("APP_FAIL_FIRST", "1")]),
        UNIVERSAL,
    );
    create(&env, &doc);
    let pod = wait_job_complete(&env, &ns, "j", 180);
    let ev = events(&ns, "j");
    assert_one_sidecar_legacy(&ev);
    assert_eq!(
        ev.iter().filter(|l| l.starts_with("app start")).count(),
        2,
        "{ev:#?}"
    );
    assert_sidecar_stopped_after_app(&ev);
    assert_eq!(statuses(&pod)["app"]["restartCount"], 1);
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn old_kubelet_universal_always_pod_runs_regular_copy_acts() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "old-uni-always");
    let doc = env.inject(
        &pod(&ns, "p", Some(OLD), "Always", &[("APP_SECONDS", "forever")]),
        UNIVERSAL,
    );
    create(&env, &doc);
    wait_for("pod p Ready", 120, || {
        let p = env.get_json(&["pod", "p", "-n", &ns.name])?;
        p["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(())
    });
    // Give a late second copy the time to show up, then count.
    std::thread::sleep(Duration::from_secs(5));
    assert_one_sidecar_legacy(&events(&ns, "p"));
    env.kubectl_ok(
        &["delete", "pod", "p", "-n", &ns.name, "--timeout=120s"],
        None,
    );
}

/// On an old kubelet the regular copy acts; it starts beside the app (regular containers
/// start in order without waiting), so "ready before the app" is not promised there.
fn assert_one_sidecar_legacy(ev: &[String]) {
    let starts: Vec<&String> = ev
        .iter()
        .filter(|l| l.starts_with("sidecar start"))
        .collect();
    assert_eq!(starts.len(), 1, "exactly one copy acts: {ev:#?}");
    assert_eq!(starts[0], "sidecar start state=legacy-active", "{ev:#?}");
    assert!(
        position(ev, "app start").is_some(),
        "the app started: {ev:#?}"
    );
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn old_kubelet_native_pod_hangs_in_init_and_doctor_explains_it() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "old-native");
    let doc = env.inject(&pod(&ns, "p", Some(OLD), "Never", &[]), NATIVE);
    create(&env, &doc);
    // The sidecar runs as a plain init container that never exits: the app never starts.
    let p = wait_for(
        "the native sidecar running as an init container",
        120,
        || {
            let p = env.get_json(&["pod", "p", "-n", &ns.name])?;
            statuses(&p).get("helper")?["state"]["running"]
                .is_object()
                .then_some(p)
        },
    );
    std::thread::sleep(Duration::from_secs(15));
    let p2 = env.get_json(&["pod", "p", "-n", &ns.name]).unwrap_or(p);
    assert_eq!(p2["status"]["phase"], "Pending", "{}", p2["status"]);
    let st = statuses(&p2);
    assert!(
        st["app"]["state"]["waiting"].is_object(),
        "{:#?}",
        st["app"]
    );
    let ev = events(&ns, "p");
    assert!(position(&ev, "app start").is_none(), "{ev:#?}");
    let doctor = doctor(&env);
    eprintln!("tandem doctor:\n{doctor}");
    assert!(
        doctor.contains(&format!("{}/p", ns.name)),
        "doctor names the stuck pod"
    );
    assert!(doctor.contains(OLD), "doctor names the node");
}

fn doctor(env: &Env) -> String {
    let kc = env.kubeconfig.to_str().expect("utf-8 path").to_string();
    match env.tandem(&["doctor", "--kubeconfig", &kc, "-o", "json"], None) {
        Ok(out) => out,
        // Exit 1: problems found (what we expect here); the report is on stdout.
        Err(e) => e,
    }
}

// ---------------------------------------------------------------- 1.28 (gate off)

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn kubelet_128_rejects_a_native_pod_and_doctor_names_the_node() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "k128-native");
    let doc = env.inject(&pod(&ns, "p", Some(K128), "Never", &[]), NATIVE);
    create(&env, &doc);
    let p = wait_for("pod p rejected", 120, || {
        let p = env.get_json(&["pod", "p", "-n", &ns.name])?;
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    let reason = p["status"]["reason"].as_str().unwrap_or_default();
    let message = p["status"]["message"].as_str().unwrap_or_default();
    eprintln!("rejected: reason={reason:?} message={message:?}");
    assert_eq!(
        reason, "InitContainerRestartPolicyForbidden",
        "{}",
        p["status"]
    );
    let doctor = doctor(&env);
    eprintln!("tandem doctor:\n{doctor}");
    assert!(doctor.contains(K128), "doctor names the node");
    assert!(
        doctor.contains(&format!("{}/p", ns.name)),
        "doctor names the rejected pod"
    );
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn kubelet_128_rejects_universal_too() {
    // PRODUCT.md: universal is never safe on a node that rejects the field.
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "k128-universal");
    let doc = env.inject(&pod(&ns, "p", Some(K128), "Never", &[]), UNIVERSAL);
    create(&env, &doc);
    let p = wait_for("pod p rejected", 120, || {
        let p = env.get_json(&["pod", "p", "-n", &ns.name])?;
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    assert_eq!(
        p["status"]["reason"], "InitContainerRestartPolicyForbidden",
        "{}",
        p["status"]
    );
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn auto_never_gives_the_128_node_a_native_sidecar_and_the_pod_runs_there() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "k128-auto");
    let nodes = env.state.join("nodes.json");
    std::fs::write(
        &nodes,
        env.kubectl_ok(&["get", "nodes", "-o", "json"], None),
    )
    .expect("write nodes");
    let nodes = nodes.to_str().expect("utf-8 path").to_string();
    let auto = |doc: &Value| {
        env.inject(
            doc,
            &[
                "--mode",
                "auto",
                "--nodes",
                &nodes,
                "--apiserver-version",
                "1.36.3",
            ],
        )
    };
    // Pinned to the 1.28 node, or free to land anywhere (1.28 is a candidate): never native.
    for (name, node) in [("pinned", Some(K128)), ("anywhere", None)] {
        let out = auto(&job(&ns, name, node, "Never", &[]));
        assert!(
            restartable_init(&out).is_empty(),
            "{name}: auto gave the 1.28 node a native sidecar: {out}"
        );
    }
    // The other nodes get what they can run.
    let new = auto(&job(&ns, "x", Some(NEW), "Never", &[]));
    assert_eq!(
        restartable_init(&new),
        ["helper"],
        "auto on the current kubelet: native"
    );
    // And the pod auto made for the 1.28 node is admitted and runs there. auto chose
    // `legacy` (a regular container, no shim), so the sidecar keeps the Job from completing
    // after the app exited: the known legacy limitation (kubernetes#25908), shown here.
    let doc = auto(&job(&ns, "pinned", Some(K128), "Never", &[]));
    create(&env, &doc);
    wait_for("the app to exit 0 on the 1.28 node", 120, || {
        position(&events(&ns, "pinned"), "app exit code=0").map(|_| ())
    });
    let pods = env
        .get_json(&["pods", "-n", &ns.name, "-l", "e2e-job=pinned"])
        .expect("job pods");
    let pod = &pods["items"][0];
    assert_eq!(pod["spec"]["nodeName"], K128);
    assert_eq!(
        pod["status"]["phase"], "Running",
        "admitted, sidecar still up: {}",
        pod["status"]
    );
    let ev = events(&ns, "pinned");
    assert_eq!(
        ev.iter().filter(|l| l.starts_with("sidecar start")).count(),
        1,
        "{ev:#?}"
    );
    assert!(
        position(&ev, "sidecar sigterm").is_none(),
        "legacy sidecar is not stopped: {ev:#?}"
    );
}

/// Kills a pod's sandbox (its pause container) through the node's containerd, as a node
/// problem would: the kubelet makes a new sandbox and runs the init containers again.
fn kill_sandbox(env: &Env, node: &str, pod_uid: &str) {
    let sock = env.state.join(node).join("containerd.sock");
    let sock = sock.to_str().expect("utf-8 path");
    let filter = format!(
        "labels.\"io.kubernetes.pod.uid\"=={pod_uid},labels.\"io.cri-containerd.kind\"==sandbox"
    );
    let ids = run(
        Command::new("ctr").args([
            "-a",
            sock,
            "-n",
            "k8s.io",
            "containers",
            "ls",
            "-q",
            &filter,
        ]),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = ids.split_whitespace().collect();
    assert!(
        !ids.is_empty(),
        "no sandbox found for pod {pod_uid} on {node}"
    );
    for id in ids {
        // The sandbox of the last incarnation may already be gone: ignore errors.
        let _ = run(
            Command::new("ctr").args([
                "-a", sock, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id,
            ]),
            None,
        );
    }
}

fn wait_ready(env: &Env, ns: &Ns, name: &str, secs: u64) -> Value {
    wait_for(&format!("pod {name} Ready"), secs, || {
        let p = env.get_json(&["pod", name, "-n", &ns.name])?;
        p["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(p)
    })
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn old_kubelet_sandbox_restart_reruns_init_and_the_pod_comes_back() {
    // PRODUCT.md: after a sandbox restart on an old kubelet the init containers run again,
    // and the native copy must exit 0 at once on the stale `legacy-active` marker.
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "old-sandbox");
    let doc = env.inject(
        &pod(&ns, "p", Some(OLD), "Always", &[("APP_SECONDS", "forever")]),
        UNIVERSAL,
    );
    create(&env, &doc);
    let p = wait_ready(&env, &ns, "p", 120);
    let uid = p["metadata"]["uid"].as_str().expect("uid").to_string();
    kill_sandbox(&env, OLD, &uid);
    // Back to Ready with a new sandbox: the app restarted, init containers ran again.
    let p = wait_for("pod p Ready again after the sandbox restart", 180, || {
        let p = env.get_json(&["pod", "p", "-n", &ns.name])?;
        let st = statuses(&p);
        let restarted = st.get("app")?["restartCount"].as_u64()? >= 1;
        let ready = p["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        (restarted && ready).then_some(p)
    });
    let st = statuses(&p);
    assert_eq!(
        st["helper"]["state"]["terminated"]["exitCode"], 0,
        "{:#?}",
        st["helper"]
    );
    std::thread::sleep(Duration::from_secs(3));
    let ev = events(&ns, "p");
    eprintln!("events: {ev:#?}");
    // Every sidecar start is by the regular copy, and one at a time: each start after the
    // first follows a SIGTERM of the previous one.
    let starts: Vec<&String> = ev
        .iter()
        .filter(|l| l.starts_with("sidecar start"))
        .collect();
    assert!(starts.len() >= 2, "the regular copy acted again: {ev:#?}");
    assert!(
        starts
            .iter()
            .all(|l| *l == "sidecar start state=legacy-active"),
        "{ev:#?}"
    );
    let mut running = 0;
    for l in &ev {
        if l.starts_with("sidecar start") {
            running += 1;
        } else if l.starts_with("sidecar sigterm") {
            running -= 1;
        }
        assert!(running <= 1, "two acting copies at once: {ev:#?}");
    }
    env.kubectl_ok(
        &["delete", "pod", "p", "-n", &ns.name, "--timeout=120s"],
        None,
    );
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn current_kubelet_sandbox_restart_native_copy_acts_again() {
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "new-sandbox");
    let doc = env.inject(
        &pod(&ns, "p", Some(NEW), "Always", &[("APP_SECONDS", "forever")]),
        UNIVERSAL,
    );
    create(&env, &doc);
    let p = wait_ready(&env, &ns, "p", 120);
    let uid = p["metadata"]["uid"].as_str().expect("uid").to_string();
    kill_sandbox(&env, NEW, &uid);
    wait_for("pod p Ready again after the sandbox restart", 180, || {
        let p = env.get_json(&["pod", "p", "-n", &ns.name])?;
        let restarted = statuses(&p).get("app")?["restartCount"].as_u64()? >= 1;
        let ready = p["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        (restarted && ready).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let ev = events(&ns, "p");
    eprintln!("events: {ev:#?}");
    let starts: Vec<&String> = ev
        .iter()
        .filter(|l| l.starts_with("sidecar start"))
        .collect();
    assert!(starts.len() >= 2, "the sidecar acted again: {ev:#?}");
    assert!(
        starts
            .iter()
            .all(|l| *l == "sidecar start state=native-running"),
        "{ev:#?}"
    );
    env.kubectl_ok(
        &["delete", "pod", "p", "-n", &ns.name, "--timeout=120s"],
        None,
    );
}

/// The output of a container's first run, from the node's pod log directory (the API
/// server cannot reach the kubelets: nodes have no address here).
fn container_log(env: &Env, node: &str, pod: &Value, container: &str) -> String {
    let dir = format!(
        "{}_{}_{}",
        pod["metadata"]["namespace"].as_str().unwrap_or_default(),
        pod["metadata"]["name"].as_str().unwrap_or_default(),
        pod["metadata"]["uid"].as_str().unwrap_or_default()
    );
    let path = env
        .state
        .join(node)
        .join("var-log-pods")
        .join(dir)
        .join(container)
        .join("0.log");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
#[ignore = "needs real kubelets: bash e2e/kubelets/run.sh"]
fn tandems_image_runs_on_a_real_kubelet() {
    // tandem's image as built by images.sh: the static shim always, the static tandem CLI
    // when run.sh was asked for it (TANDEM_KUBELETS_STATIC_CLI=1).
    let Some(env) = env_or_skip() else { return };
    let ns = Ns::new(&env, "image");
    let mut containers = vec![json!({"name": "shim", "image": "tandem.local/tandem:e2e",
        "imagePullPolicy": "Never", "command": ["/tandem-shim", "--version"]})];
    let cli = std::env::var("TANDEM_KUBELETS_STATIC_CLI").as_deref() == Ok("1");
    if cli {
        containers.push(json!({"name": "tandem", "image": "tandem.local/tandem:e2e",
            "imagePullPolicy": "Never", "command": ["/tandem", "--version"]}));
    }
    let doc = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "img", "namespace": ns.name},
        "spec": {"nodeName": NEW, "hostNetwork": true, "restartPolicy": "Never",
                 "containers": containers}});
    create(&env, &doc);
    let p = wait_for("pod img Succeeded", 120, || {
        let p = env.get_json(&["pod", "img", "-n", &ns.name])?;
        assert_ne!(p["status"]["phase"], "Failed", "{}", p["status"]);
        (p["status"]["phase"] == "Succeeded").then_some(p)
    });
    let log = container_log(&env, NEW, &p, "shim");
    assert!(log.contains("tandem-shim "), "{log}");
    if cli {
        let log = container_log(&env, NEW, &p, "tandem");
        assert!(log.contains("tandem "), "{log}");
    }
}
