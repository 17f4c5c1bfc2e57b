//! Reads a Pod (or a Job / List holding one pod template) from JSON into the
//! few fields the emulator acts on. Anything else in the object is ignored.

use serde_json::Value;
use std::time::Duration;

/// Pod `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart every container that exits.
    Always,
    /// Restart containers that fail.
    OnFailure,
    /// Never restart.
    Never,
}

/// An exec startup probe.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `exec.command`.
    pub exec: Vec<String>,
    /// `periodSeconds` (default 10).
    pub period: Duration,
    /// `failureThreshold` (default 3).
    pub failure_threshold: u32,
    /// `initialDelaySeconds` (default 0).
    pub initial_delay: Duration,
}

/// One container as the emulator sees it.
#[derive(Debug, Clone)]
pub struct Container {
    /// `name`.
    pub name: String,
    /// `command` followed by `args`.
    pub argv: Vec<String>,
    /// `env` with literal values and the two downward-API fields we know.
    pub env: Vec<(String, EnvSource)>,
    /// Init container with `restartPolicy: Always`.
    pub restartable: bool,
    /// `startupProbe` (exec only).
    pub startup_probe: Option<Probe>,
    /// `lifecycle.postStart.exec.command`.
    pub post_start: Option<Vec<String>>,
    /// `(volume name, mountPath)` pairs.
    pub mounts: Vec<(String, String)>,
}

/// Where an env var's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    /// `value`.
    Literal(String),
    /// `valueFrom.fieldRef.fieldPath: metadata.name`.
    PodName,
    /// `valueFrom.fieldRef.fieldPath: metadata.namespace`.
    PodNamespace,
}

/// The pod.
#[derive(Debug, Clone)]
pub struct Pod {
    /// `metadata.name` (or `emu-pod`).
    pub name: String,
    /// `metadata.namespace` (or `default`).
    pub namespace: String,
    /// `spec.restartPolicy` (default Always).
    pub restart_policy: RestartPolicy,
    /// `spec.terminationGracePeriodSeconds` (default 30 s).
    pub grace: Duration,
    /// `spec.initContainers`.
    pub init: Vec<Container>,
    /// `spec.containers`.
    pub containers: Vec<Container>,
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn secs(v: Option<&Value>, default: f64) -> Duration {
    Duration::from_secs_f64(v.and_then(Value::as_f64).unwrap_or(default))
}

fn container(c: &Value, init: bool) -> Result<Container, String> {
    let name = c["name"]
        .as_str()
        .ok_or("container without a name")?
        .to_string();
    let mut argv = strs(c.get("command"));
    argv.extend(strs(c.get("args")));
    if argv.is_empty() {
        return Err(format!(
            "container {name}: the emulator needs an explicit command"
        ));
    }
    let mut env = vec![];
    for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
        let Some(k) = e["name"].as_str() else {
            continue;
        };
        let src = if let Some(v) = e.get("value").and_then(Value::as_str) {
            EnvSource::Literal(v.to_string())
        } else {
            match e
                .pointer("/valueFrom/fieldRef/fieldPath")
                .and_then(Value::as_str)
            {
                Some("metadata.name") => EnvSource::PodName,
                Some("metadata.namespace") => EnvSource::PodNamespace,
                _ => continue,
            }
        };
        env.push((k.to_string(), src));
    }
    let startup_probe = match c.get("startupProbe") {
        None | Some(Value::Null) => None,
        Some(p) => {
            let exec = strs(p.pointer("/exec/command"));
            if exec.is_empty() {
                return Err(format!(
                    "container {name}: only exec startup probes are emulated"
                ));
            }
            Some(Probe {
                exec,
                period: secs(p.get("periodSeconds"), 10.0),
                failure_threshold: p
                    .get("failureThreshold")
                    .and_then(Value::as_u64)
                    .unwrap_or(3) as u32,
                initial_delay: secs(p.get("initialDelaySeconds"), 0.0),
            })
        }
    };
    let post_start = c
        .pointer("/lifecycle/postStart/exec/command")
        .map(|v| strs(Some(v)))
        .filter(|v| !v.is_empty());
    let mounts = c
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some((
                m["name"].as_str()?.to_string(),
                m["mountPath"].as_str()?.to_string(),
            ))
        })
        .collect();
    Ok(Container {
        name,
        argv,
        env,
        restartable: init && c.get("restartPolicy").and_then(Value::as_str) == Some("Always"),
        startup_probe,
        post_start,
        mounts,
    })
}

impl Pod {
    /// Parses a Pod, a Job/CronJob-less workload with `spec.template`, or a List of one.
    pub fn from_json(text: &str) -> Result<Pod, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("bad JSON: {e}"))?;
        Pod::from_value(&v)
    }

    /// As [`Pod::from_json`], from a parsed value.
    pub fn from_value(v: &Value) -> Result<Pod, String> {
        if v["kind"] == "List" {
            let items = v["items"].as_array().ok_or("List without items")?;
            let first = items.first().ok_or("empty List")?;
            return Pod::from_value(first);
        }
        let (meta, spec) = if v["kind"] == "Pod" || v.get("kind").is_none() {
            (&v["metadata"], &v["spec"])
        } else {
            (
                &v["spec"]["template"]["metadata"],
                &v["spec"]["template"]["spec"],
            )
        };
        let top_meta = &v["metadata"];
        let name = meta["name"]
            .as_str()
            .or(top_meta["name"].as_str())
            .unwrap_or("emu-pod")
            .to_string();
        let namespace = top_meta["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let restart_policy = match spec["restartPolicy"].as_str() {
            None | Some("Always") => RestartPolicy::Always,
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            Some(o) => return Err(format!("unknown restartPolicy {o}")),
        };
        let list = |key: &str, init: bool| -> Result<Vec<Container>, String> {
            spec[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| container(c, init))
                .collect()
        };
        Ok(Pod {
            name,
            namespace,
            restart_policy,
            grace: secs(spec.get("terminationGracePeriodSeconds"), 30.0),
            init: list("initContainers", true)?,
            containers: list("containers", false)?,
        })
    }
}
