//! The emulated kubelet: runs one pod's containers as real local processes by
//! the kubelet's container rules, in one of three flavours.
//!
//! Sources for the rules, cited at each rule below by these tags:
//! - KEP: KEP-753 "Sidecar containers",
//!   <https://github.com/kubernetes/enhancements/tree/master/keps/sig-node/753-sidecar-containers>
//! - SIDECAR: <https://kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/>
//! - LIFECYCLE: <https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/>
//! - INIT: <https://kubernetes.io/docs/concepts/workloads/pods/init-containers/>
//! - HOOKS: <https://kubernetes.io/docs/concepts/containers/container-lifecycle-hooks/>
//!
//! Each container runs in its own process group, which stands in for its PID
//! namespace: when the container's main process exits, the rest of the group is
//! killed, as the kernel does when PID 1 of a namespace dies.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pod::{Container, EnvSource, Pod, RestartPolicy};
use crate::sys;

/// Which kubelet to emulate (PRODUCT.md's compatibility table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// 1.29+ with the SidecarContainers gate on: native sidecars.
    Native,
    /// Older than 1.28: does not know `restartPolicy` on init containers and ignores it.
    Old,
    /// 1.28 with the gate off (1.28's default): rejects such pods at admission.
    GateOff,
}

/// How to run the pod.
#[derive(Debug, Clone)]
pub struct Options {
    /// Kubelet flavour.
    pub flavour: Flavour,
    /// Multiplies the kubelet's own times (restart backoff, probe period, grace period).
    pub time_scale: f64,
    /// In-image paths mapped to host paths (e.g. `/usr/local/bin/tandem-shim` → the built shim).
    /// Mount paths of volumes are mapped automatically.
    pub path_map: Vec<(String, PathBuf)>,
    /// The emulated API server answers 403 to pod reads (service account without RBAC).
    pub api_forbidden: bool,
    /// Extra env for every container (after the pod's own).
    pub extra_env: Vec<(String, String)>,
}

impl Options {
    /// Defaults: given flavour, time scaled to 1/50.
    pub fn new(flavour: Flavour) -> Options {
        Options {
            flavour,
            time_scale: 0.02,
            path_map: vec![],
            api_forbidden: false,
            extra_env: vec![],
        }
    }
}

/// Pod phase as the emulator reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Init containers have not all completed/started ("stuck in Init" if it stays here).
    Pending,
    /// All init containers done; regular containers started.
    Running,
    /// All regular containers terminated for good, all with exit code 0.
    Succeeded,
    /// Terminated for good with a failure, or an init container failed under `Never`.
    Failed,
    /// Rejected at node admission with this reason; nothing ran.
    Rejected(String),
    /// Deleted and all containers terminated.
    Deleted,
}

/// A container's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CState {
    /// Not started yet, or waiting for a restart.
    Waiting,
    /// Its main process runs.
    Running,
    /// Exited with this code (128+n for signal n).
    Terminated(i32),
}

/// What a test sees of one container.
#[derive(Debug, Clone)]
pub struct ContainerView {
    /// Name.
    pub name: String,
    /// State.
    pub state: CState,
    /// Restarts so far (all sandboxes).
    pub restarts: u32,
    /// Started: running and startupProbe passed (or none), the kubelet's `started`.
    pub started: bool,
}

/// A consistent view of the pod.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Phase.
    pub phase: Phase,
    /// Sandbox incarnation (starts at 1).
    pub sandbox: u32,
    /// Init containers.
    pub init: Vec<ContainerView>,
    /// Regular containers.
    pub containers: Vec<ContainerView>,
}

impl Snapshot {
    /// A container by name, init or regular.
    pub fn get(&self, name: &str) -> Option<&ContainerView> {
        self.init
            .iter()
            .chain(&self.containers)
            .find(|c| c.name == name)
    }
}

struct Ctr {
    spec: Container,
    child: Option<Child>,
    state: CState,
    restarts: u32,
    started: bool,
    /// Counted as started once in this sandbox (gates the next init container).
    started_once: bool,
    next_start: Option<Instant>,
    sent_term: bool,
    probe: Option<(Child, Instant)>,
    probe_next: Option<Instant>,
    probe_failures: u32,
    hook: Option<Child>,
}

impl Ctr {
    fn new(spec: Container) -> Ctr {
        Ctr {
            spec,
            child: None,
            state: CState::Waiting,
            restarts: 0,
            started: false,
            started_once: false,
            next_start: None,
            sent_term: false,
            probe: None,
            probe_next: None,
            probe_failures: 0,
            hook: None,
        }
    }

    fn view(&self) -> ContainerView {
        ContainerView {
            name: self.spec.name.clone(),
            state: self.state,
            restarts: self.restarts,
            started: self.started,
        }
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }

    fn kill_all(&mut self) {
        if let Some(c) = &mut self.child {
            sys::kill_group(c.id(), libc::SIGKILL);
            let _ = c.wait();
        }
        self.child = None;
        for p in [self.probe.take().map(|(c, _)| c), self.hook.take()]
            .into_iter()
            .flatten()
        {
            let mut p = p;
            sys::kill_group(p.id(), libc::SIGKILL);
            let _ = p.wait();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Delete,
    Complete,
}

struct Inner {
    opts: Options,
    pod: Pod,
    root: PathBuf,
    t0: Instant,
    sandbox: u32,
    phase: Phase,
    init: Vec<Ctr>,
    regular: Vec<Ctr>,
    init_index: usize,
    regular_started: bool,
    start_queue: VecDeque<usize>,
    hook_blocking: Option<usize>,
    ending: Option<(Ending, Instant)>,
    events: Vec<(Duration, String)>,
    api_addr: String,
}

/// A running emulated kubelet with one pod. Dropping it kills every process.
pub struct Kubelet {
    inner: Arc<Mutex<Inner>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    root: PathBuf,
}

impl Kubelet {
    /// Admits the pod and starts running it in a background thread. `root` is a
    /// fresh directory for volumes, markers and logs.
    pub fn start(pod: Pod, opts: Options, root: &Path) -> Kubelet {
        for d in ["volumes", "markers", "logs", "sa"] {
            fs::create_dir_all(root.join(d)).expect("create emulator dirs");
        }
        fs::write(root.join("sa/token"), "emu-token\n").expect("token");
        fs::write(root.join("sa/namespace"), format!("{}\n", pod.namespace)).expect("ns");
        let mut phase = Phase::Pending;
        // [KEP] "Kubelet ... with the feature gate disabled will reject pods with
        // restartable init containers" (InitContainerRestartPolicyForbidden at admission);
        // PRODUCT.md compatibility table: 1.28 with the gate off.
        if opts.flavour == Flavour::GateOff && pod.init.iter().any(|c| c.restartable) {
            phase = Phase::Rejected("InitContainerRestartPolicyForbidden".into());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind emulated API server");
        let api_addr = listener.local_addr().expect("addr").to_string();
        let inner = Arc::new(Mutex::new(Inner {
            init: pod.init.iter().cloned().map(Ctr::new).collect(),
            regular: pod.containers.iter().cloned().map(Ctr::new).collect(),
            opts,
            pod,
            root: root.to_path_buf(),
            t0: Instant::now(),
            sandbox: 1,
            phase,
            init_index: 0,
            regular_started: false,
            start_queue: VecDeque::new(),
            hook_blocking: None,
            ending: None,
            events: vec![],
            api_addr,
        }));
        let mut threads = vec![];
        {
            let inner = inner.clone();
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    lock(&inner).tick();
                    std::thread::sleep(Duration::from_millis(3));
                }
            }));
        }
        {
            let inner = inner.clone();
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                crate::api::serve(listener, inner_view(inner), stop)
            }));
        }
        Kubelet {
            inner,
            stop,
            threads,
            root: root.to_path_buf(),
        }
    }

    /// The current view.
    pub fn snapshot(&self) -> Snapshot {
        lock(&self.inner).snapshot()
    }

    /// Waits until `cond` holds (checked every few ms); panics with the pod's
    /// events and logs after `timeout`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&Snapshot) -> bool,
    ) -> Snapshot {
        let end = Instant::now() + timeout;
        loop {
            let s = self.snapshot();
            if cond(&s) {
                return s;
            }
            if Instant::now() >= end {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\nsnapshot: {s:#?}\n{}",
                    self.debug_dump()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Events, history and container logs, for failure messages.
    pub fn debug_dump(&self) -> String {
        let mut out = String::from("events:\n");
        for (t, e) in self.events() {
            out.push_str(&format!("  {:>8.3}s {e}\n", t.as_secs_f64()));
        }
        out.push_str("history:\n");
        for (_, l) in crate::markers::history(&self.markers()) {
            out.push_str(&format!("  {l}\n"));
        }
        if let Ok(rd) = fs::read_dir(self.root.join("logs")) {
            for e in rd.flatten() {
                let text = fs::read_to_string(e.path()).unwrap_or_default();
                out.push_str(&format!(
                    "log {}:\n{text}\n",
                    e.file_name().to_string_lossy()
                ));
            }
        }
        out
    }

    /// Emulator events with their time since the pod was admitted.
    pub fn events(&self) -> Vec<(Duration, String)> {
        lock(&self.inner).events.clone()
    }

    /// Directory where `emu-app` writes markers and history.
    pub fn markers(&self) -> PathBuf {
        self.root.join("markers")
    }

    /// Host directory backing the pod volume `name` (an emptyDir).
    pub fn volume(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(name)
    }

    /// Kills the pod sandbox and starts a new one: every container is killed, and
    /// init containers run again from the first, over the volumes' old content.
    /// (INIT) "If the Pod restarts, or is restarted, all init containers must execute again."
    /// (LIFECYCLE) emptyDir content survives container and sandbox restarts on the same node.
    pub fn restart_sandbox(&self) {
        let mut guard = lock(&self.inner);
        let g = &mut *guard;
        for c in g.init.iter_mut().chain(g.regular.iter_mut()) {
            c.kill_all();
            let restarts = c.restarts;
            *c = Ctr::new(c.spec.clone());
            c.restarts = restarts;
        }
        g.sandbox += 1;
        g.init_index = 0;
        g.regular_started = false;
        g.start_queue.clear();
        g.hook_blocking = None;
        if !matches!(g.phase, Phase::Rejected(_)) {
            g.phase = Phase::Pending;
        }
        let sb = g.sandbox;
        g.event(format!("sandbox restarted (now #{sb})"));
    }

    /// Sends `sig` to a container's main process (SIGKILL: its whole group).
    pub fn signal_container(&self, name: &str, sig: i32) {
        let g = lock(&self.inner);
        if let Some(c) = g
            .init
            .iter()
            .chain(&g.regular)
            .find(|c| c.spec.name == name)
            && let Some(ch) = &c.child
        {
            if sig == libc::SIGKILL {
                sys::kill_group(ch.id(), sig);
            } else {
                sys::kill(ch.id(), sig);
            }
        }
    }

    /// Deletes the pod: graceful termination ((LIFECYCLE) "Termination of Pods").
    pub fn delete(&self) {
        let mut g = lock(&self.inner);
        if g.ending.is_none() {
            let grace = g.scaled(g.pod.grace);
            g.ending = Some((Ending::Delete, Instant::now() + grace));
            g.event("pod deleted: terminating".into());
        }
    }

    /// Address of the emulated API server (`http://127.0.0.1:PORT`).
    pub fn api_url(&self) -> String {
        format!("http://{}", lock(&self.inner).api_addr)
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let mut guard = lock(&self.inner);
        let g = &mut *guard;
        for c in g.init.iter_mut().chain(g.regular.iter_mut()) {
            c.kill_all();
        }
        // Sidecar processes orphaned by a killed shim are in the killed groups too.
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the API server thread needs: a function producing the pod as JSON.
fn inner_view(inner: Arc<Mutex<Inner>>) -> crate::api::PodSource {
    Box::new(move || {
        let g = lock(&inner);
        crate::api::PodState {
            name: g.pod.name.clone(),
            namespace: g.pod.namespace.clone(),
            forbidden: g.opts.api_forbidden,
            phase: match &g.phase {
                Phase::Pending => "Pending",
                Phase::Running => "Running",
                Phase::Succeeded => "Succeeded",
                Phase::Failed | Phase::Rejected(_) => "Failed",
                Phase::Deleted => "Running",
            }
            .into(),
            containers: g
                .regular
                .iter()
                .map(|c| (c.spec.name.clone(), c.spec.argv.clone(), c.state))
                .collect(),
        }
    })
}

impl Inner {
    fn event(&mut self, e: String) {
        self.events.push((self.t0.elapsed(), e));
    }

    fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.opts.time_scale)
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            phase: self.phase.clone(),
            sandbox: self.sandbox,
            init: self.init.iter().map(Ctr::view).collect(),
            containers: self.regular.iter().map(Ctr::view).collect(),
        }
    }

    /// A restartable init container as this kubelet sees it.
    fn native_sidecar(&self, c: &Ctr) -> bool {
        // [KEP] older kubelets do not know the field: the container is a plain
        // init container there ("Upgrade / Downgrade Strategy").
        c.spec.restartable && self.opts.flavour == Flavour::Native
    }

    /// Restart delay before the n-th restart: (LIFECYCLE) "Container restarts":
    /// exponential back-off (10s, 20s, 40s, …) capped at five minutes; the first
    /// restart of a sidecar is immediate (FIELD-NOTES, KEP-753 behaviour).
    fn backoff(&self, restarts: u32) -> Duration {
        if restarts == 0 {
            return Duration::ZERO;
        }
        let secs = (10u64 << (restarts - 1).min(5)).min(300);
        self.scaled(Duration::from_secs(secs))
    }

    fn map(&self, s: &str, c: &Container) -> String {
        let mut pairs: Vec<(String, String)> = self
            .opts
            .path_map
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string_lossy().into_owned()))
            .collect();
        for (vol, path) in &c.mounts {
            pairs.push((
                path.clone(),
                self.root
                    .join("volumes")
                    .join(vol)
                    .to_string_lossy()
                    .into_owned(),
            ));
        }
        // Longest in-container path first, so /var/run/tandem-bin wins over /var/run/tandem.
        pairs.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        for (k, v) in pairs {
            if s == k {
                return v;
            }
            if let Some(rest) = s.strip_prefix(&format!("{k}/")) {
                return format!("{v}/{rest}");
            }
        }
        s.to_string()
    }

    fn command(&self, c: &Container, argv: &[String]) -> Command {
        for (vol, _) in &c.mounts {
            let _ = fs::create_dir_all(self.root.join("volumes").join(vol));
        }
        let mapped: Vec<String> = argv.iter().map(|a| self.map(a, c)).collect();
        let mut cmd = Command::new(&mapped[0]);
        cmd.args(&mapped[1..]);
        cmd.env_clear();
        cmd.env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        );
        // What the kubelet puts in every container's environment (service links),
        // pointing at the emulated API server, plus the emulator's own.
        cmd.env("TANDEM_API_URL", format!("http://{}", self.api_addr));
        cmd.env("TANDEM_SERVICEACCOUNT_DIR", self.root.join("sa"));
        cmd.env("TANDEM_SANDBOX_ID", format!("emu-sandbox-{}", self.sandbox));
        cmd.env("EMU_CONTAINER", &c.name);
        cmd.env("EMU_MARKERS", self.root.join("markers"));
        for (k, src) in &c.env {
            let v = match src {
                EnvSource::Literal(v) => self.map(v, c),
                EnvSource::PodName => self.pod.name.clone(),
                EnvSource::PodNamespace => self.pod.namespace.clone(),
            };
            cmd.env(k, v);
        }
        for (k, v) in &self.opts.extra_env {
            cmd.env(k, v);
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("logs").join(format!("{}.log", c.name)));
        match log.and_then(|f| Ok((f.try_clone()?, f))) {
            Ok((a, b)) => {
                cmd.stdout(a).stderr(b);
            }
            Err(_) => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        cmd.stdin(Stdio::null());
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        cmd
    }

    fn spawn_container(&mut self, init: bool, i: usize) {
        let spec = if init {
            &self.init[i].spec
        } else {
            &self.regular[i].spec
        }
        .clone();
        let mut cmd = self.command(&spec, &spec.argv);
        let res = cmd.spawn();
        let now = Instant::now();
        let native = init && self.native_sidecar(&self.init[i]);
        let probe_period = spec
            .startup_probe
            .as_ref()
            .map(|p| self.scaled(p.initial_delay));
        let c = if init {
            &mut self.init[i]
        } else {
            &mut self.regular[i]
        };
        c.sent_term = false;
        c.next_start = None;
        c.probe_failures = 0;
        c.started = false;
        let ev = match res {
            Ok(child) => {
                c.child = Some(child);
                c.state = CState::Running;
                // [KEP] a sidecar without a startupProbe counts as started once running;
                // with one, once it passes. Old kubelets never probe init containers
                // (only containers in spec.containers have probe workers).
                if native && spec.startup_probe.is_some() {
                    c.probe_next = Some(now + probe_period.unwrap_or_default());
                } else {
                    c.started = true;
                    c.started_once = true;
                }
                format!("start {}", spec.name)
            }
            Err(e) => {
                // The runtime fails to create the container: counts as exit 128.
                c.state = CState::Terminated(128);
                format!("start {} failed: {e}", spec.name)
            }
        };
        self.event(ev);
    }

    fn exited(&mut self, init: bool, i: usize, code: i32) {
        let name = if init {
            &self.init[i]
        } else {
            &self.regular[i]
        }
        .spec
        .name
        .clone();
        self.event(format!("exit {name} code={code}"));
        let ending = self.ending.is_some();
        let native = init && self.native_sidecar(&self.init[i]);
        let policy = self.pod.restart_policy;
        let backoff;
        {
            let c = if init {
                &mut self.init[i]
            } else {
                &mut self.regular[i]
            };
            c.state = CState::Terminated(code);
            c.started = false;
            if let Some((mut p, _)) = c.probe.take() {
                sys::kill_group(p.id(), libc::SIGKILL);
                let _ = p.wait();
            }
            c.probe_next = None;
            backoff = c.restarts;
        }
        if ending {
            return; // [LIFECYCLE] no restarts while the pod terminates.
        }
        let restart = if native {
            // [SIDECAR] "If a sidecar container exits, the kubelet restarts it,
            // regardless of the Pod restartPolicy" (any exit code).
            true
        } else if init {
            // [INIT] "If a Pod's init container fails, the kubelet repeatedly restarts
            // that init container until it succeeds. However, if the Pod has a
            // restartPolicy of Never ... Kubernetes treats the overall Pod as failed."
            if code == 0 {
                false
            } else if policy == RestartPolicy::Never {
                self.phase = Phase::Failed;
                self.event(format!("init container {name} failed: pod Failed"));
                false
            } else {
                true
            }
        } else {
            // [LIFECYCLE] "Container restart policy": Always, OnFailure (non-zero), Never.
            match policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => code != 0,
                RestartPolicy::Never => false,
            }
        };
        if restart {
            let delay = self.backoff(backoff);
            let c = if init {
                &mut self.init[i]
            } else {
                &mut self.regular[i]
            };
            c.next_start = Some(Instant::now() + delay);
        }
    }

    fn reap(&mut self) {
        for init in [true, false] {
            let n = if init {
                self.init.len()
            } else {
                self.regular.len()
            };
            for i in 0..n {
                let c = if init {
                    &mut self.init[i]
                } else {
                    &mut self.regular[i]
                };
                if let Some(ch) = &mut c.child
                    && let Ok(Some(st)) = ch.try_wait()
                {
                    // PID 1 of the container died: the rest of its namespace dies too.
                    sys::kill_group(ch.id(), libc::SIGKILL);
                    c.child = None;
                    let code = exit_code(st);
                    self.exited(init, i, code);
                }
            }
        }
    }

    fn run_probes(&mut self) {
        let now = Instant::now();
        for i in 0..self.init.len() {
            if !self.native_sidecar(&self.init[i])
                || !self.init[i].running()
                || self.init[i].started
            {
                continue;
            }
            let Some(probe) = self.init[i].spec.startup_probe.clone() else {
                continue;
            };
            let period = self.scaled(probe.period).max(Duration::from_millis(10));
            // A running probe: collect its result. Timeout is generous (5 s real time)
            // so that a loaded test machine does not fail probes spuriously.
            if let Some((p, began)) = &mut self.init[i].probe {
                let done = p.try_wait().ok().flatten();
                let timed_out = done.is_none() && began.elapsed() > Duration::from_secs(5);
                if done.is_none() && !timed_out {
                    continue;
                }
                if timed_out {
                    sys::kill_group(p.id(), libc::SIGKILL);
                    let _ = p.wait();
                }
                self.init[i].probe = None;
                let ok = done.is_some_and(|s| s.success());
                let name = self.init[i].spec.name.clone();
                if ok {
                    // [KEP] started once the startupProbe succeeds.
                    self.init[i].started = true;
                    self.init[i].started_once = true;
                    self.event(format!("startupProbe passed {name}"));
                } else {
                    self.init[i].probe_failures += 1;
                    if self.init[i].probe_failures >= probe.failure_threshold {
                        // [LIFECYCLE] "startupProbe ... If the startup probe fails,
                        // the kubelet kills the container".
                        self.event(format!("startupProbe failed {name}: killing"));
                        if let Some(ch) = &self.init[i].child {
                            sys::kill_group(ch.id(), libc::SIGKILL);
                        }
                    }
                }
                self.init[i].probe_next = Some(now + period);
                continue;
            }
            if self.init[i].probe_next.is_some_and(|t| now >= t) {
                let spec = self.init[i].spec.clone();
                let mut cmd = self.command(&spec, &probe.exec);
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
                match cmd.spawn() {
                    Ok(p) => self.init[i].probe = Some((p, now)),
                    Err(_) => {
                        self.init[i].probe_failures += 1;
                        self.init[i].probe_next = Some(now + period);
                    }
                }
            }
        }
    }

    fn restarts_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.init.len() {
            let due = self.init[i].next_start.is_some_and(|t| now >= t) && !self.init[i].running();
            // A plain init container is retried only while it is the one the pod waits on.
            let allowed = self.native_sidecar(&self.init[i]) || i == self.init_index;
            if due && allowed {
                self.init[i].restarts += 1;
                self.spawn_container(true, i);
            }
        }
        for i in 0..self.regular.len() {
            if self.regular[i].next_start.is_some_and(|t| now >= t)
                && !self.regular[i].running()
                && !self.start_queue.contains(&i)
            {
                self.regular[i].restarts += 1;
                self.regular[i].next_start = None;
                self.start_queue.push_back(i);
            }
        }
    }

    fn progress_init(&mut self) {
        // [INIT] "init containers run one at a time, in order; each must complete
        // successfully before the next one starts" and [SIDECAR]/[KEP]: a sidecar
        // (restartable init container) lets the next one start once it has started.
        while self.init_index < self.init.len() {
            let i = self.init_index;
            let native = self.native_sidecar(&self.init[i]);
            let c = &self.init[i];
            if !c.running() && c.state == CState::Waiting && c.next_start.is_none() {
                self.spawn_container(true, i);
            }
            let c = &self.init[i];
            let done = if native {
                c.started_once
            } else {
                c.state == CState::Terminated(0)
            };
            if !done {
                return;
            }
            self.init_index += 1;
        }
        if !self.regular_started {
            self.regular_started = true;
            self.phase = Phase::Running;
            self.event("init done: starting containers".into());
            self.start_queue.extend(0..self.regular.len());
        }
    }

    fn progress_regular(&mut self) {
        // The kubelet starts regular containers one after another in spec order and
        // runs each one's postStart hook before starting the next (kuberuntime
        // SyncPod; the behaviour Istio's holdApplicationUntilProxyStarts relies on).
        // [HOOKS] "the container's status is not set to RUNNING until the postStart
        // handler completes"; a failing hook gets the container killed.
        if let Some(i) = self.hook_blocking {
            let c = &mut self.regular[i];
            let res = match &mut c.hook {
                Some(h) => h.try_wait().ok().flatten(),
                None => None,
            };
            let gone = c.hook.is_none() || !c.running();
            match res {
                None if !gone => return,
                Some(st) if !st.success() => {
                    let name = c.spec.name.clone();
                    if let Some(ch) = &c.child {
                        sys::kill_group(ch.id(), libc::SIGKILL);
                    }
                    c.hook = None;
                    self.event(format!("postStart hook failed {name}: killing"));
                }
                _ => {
                    if let Some(mut h) = c.hook.take() {
                        sys::kill_group(h.id(), libc::SIGKILL);
                        let _ = h.wait();
                    }
                    let name = c.spec.name.clone();
                    self.event(format!("postStart done {name}"));
                }
            }
            self.hook_blocking = None;
        }
        while let Some(i) = self.start_queue.pop_front() {
            self.spawn_container(false, i);
            if let Some(hook) = self.regular[i].spec.post_start.clone()
                && self.regular[i].running()
            {
                let spec = self.regular[i].spec.clone();
                let mut cmd = self.command(&spec, &hook);
                if let Ok(h) = cmd.spawn() {
                    self.regular[i].hook = Some(h);
                    self.hook_blocking = Some(i);
                    return;
                }
            }
        }
    }

    fn check_completion(&mut self) {
        if self.pod.restart_policy == RestartPolicy::Always
            || !self.regular_started
            || self.ending.is_some()
        {
            return;
        }
        let finished = self.start_queue.is_empty()
            && self.regular.iter().all(|c| {
                matches!(c.state, CState::Terminated(_)) && c.next_start.is_none() && !c.running()
            });
        if finished {
            // [SIDECAR] "sidecar containers ... do not block Pod completion": once the
            // main containers are done the kubelet terminates the sidecars.
            let grace = self.scaled(self.pod.grace);
            self.ending = Some((Ending::Complete, Instant::now() + grace));
            self.event("main containers finished: pod completing".into());
        }
    }

    fn terminate(&mut self) {
        let Some((why, deadline)) = self.ending else {
            return;
        };
        let now = Instant::now();
        if now >= deadline {
            // [LIFECYCLE] "If the grace period expires, the kubelet sends SIGKILL".
            for c in self.init.iter_mut().chain(self.regular.iter_mut()) {
                if let Some(ch) = &c.child {
                    sys::kill_group(ch.id(), libc::SIGKILL);
                }
            }
        }
        let term = |c: &mut Ctr, ev: &mut Vec<String>| {
            if c.running() && !c.sent_term {
                if let Some(ch) = &c.child {
                    sys::kill(ch.id(), libc::SIGTERM);
                }
                c.sent_term = true;
                ev.push(format!("SIGTERM {}", c.spec.name));
            }
        };
        let mut evs = vec![];
        let flavour = self.opts.flavour;
        if flavour == Flavour::Native {
            // [SIDECAR] "Upon Pod termination, the kubelet postpones terminating sidecar
            // containers until the main application container has fully stopped. The
            // sidecar containers are then shut down in the opposite order of their
            // appearance in the Pod specification."
            for c in self.regular.iter_mut() {
                term(c, &mut evs);
            }
            for i in 0..self.init.len() {
                if !self.init[i].spec.restartable {
                    term(&mut self.init[i], &mut evs);
                }
            }
            let mains_running = self.regular.iter().any(Ctr::running)
                || self.init.iter().any(|c| !c.spec.restartable && c.running());
            if !mains_running {
                for i in (0..self.init.len()).rev() {
                    if self.init[i].running() {
                        term(&mut self.init[i], &mut evs);
                        break;
                    }
                }
            }
        } else {
            // Before sidecars: SIGTERM goes to every container at once ([LIFECYCLE]).
            for c in self.init.iter_mut().chain(self.regular.iter_mut()) {
                term(c, &mut evs);
            }
        }
        for e in evs {
            self.event(e);
        }
        let any_running = self.init.iter().chain(&self.regular).any(Ctr::running);
        if !any_running {
            for c in self.init.iter_mut().chain(self.regular.iter_mut()) {
                c.kill_all();
                c.next_start = None;
            }
            self.phase = match why {
                Ending::Delete => Phase::Deleted,
                Ending::Complete => {
                    // [LIFECYCLE] Succeeded: all containers terminated in success;
                    // sidecars' exit codes do not count ([SIDECAR]).
                    let ok = self
                        .regular
                        .iter()
                        .all(|c| c.state == CState::Terminated(0));
                    if ok { Phase::Succeeded } else { Phase::Failed }
                }
            };
            let ph = format!("{:?}", self.phase);
            self.event(format!("pod {ph}"));
            self.ending = None;
            self.regular_started = false;
        }
    }

    fn tick(&mut self) {
        if matches!(
            self.phase,
            Phase::Rejected(_) | Phase::Succeeded | Phase::Failed | Phase::Deleted
        ) {
            return;
        }
        self.reap();
        if self.ending.is_some() {
            self.terminate();
            return;
        }
        if self.phase == Phase::Failed {
            return;
        }
        self.restarts_due();
        self.run_probes();
        if !self.regular_started {
            self.progress_init();
        }
        if self.regular_started {
            self.progress_regular();
            self.check_completion();
        }
    }
}

fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}
