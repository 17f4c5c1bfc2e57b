//! Workarounds that only made sense for a legacy sidecar: Job termination wrappers
//! (kubexit, scuttle, `linkerd-await --shutdown`), calls to a proxy's
//! `/quitquitquit` or `/shutdown` endpoint, `holdApplicationUntilProxyStarts`-style
//! `postStart` waits, and shared "done" files. `adopt` reports them all; with
//! `--strip-workarounds` it removes those that can be removed exactly (each removal
//! named), and only once every sidecar of the pod is native.

use serde::Serialize;
use serde_json::Value;

use crate::patch::Path;

/// What kind of workaround.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkaroundKind {
    /// `kubexit` wrapping a command (tombstone files; birth and death dependencies).
    Kubexit,
    /// `scuttle` wrapping a command (waits for Envoy, then calls `/quitquitquit`).
    Scuttle,
    /// `linkerd-await` wrapping a command (waits for the proxy; `--shutdown` stops it).
    LinkerdAwait,
    /// A call to a proxy's `/quitquitquit` or `/shutdown` endpoint (preStop or script).
    QuitEndpoint,
    /// A `postStart` hook on the sidecar that holds the app until the sidecar is ready.
    HoldUntilStarted,
    /// A shared file that the app touches for the sidecar to see and exit.
    DoneFile,
}

impl WorkaroundKind {
    /// The kind as users read it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kubexit => "kubexit wrapper",
            Self::Scuttle => "scuttle wrapper",
            Self::LinkerdAwait => "linkerd-await wrapper",
            Self::QuitEndpoint => "proxy shutdown call",
            Self::HoldUntilStarted => "hold-until-started postStart hook",
            Self::DoneFile => "shared done file",
        }
    }
}

/// One workaround found in a pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workaround {
    /// What kind.
    pub kind: WorkaroundKind,
    /// The container that carries it (empty for pod-level ones).
    pub container: String,
    /// Where, relative to the pod (`spec.containers[0].command[0]`).
    pub field: String,
    /// What was found and why it only made sense for a legacy sidecar.
    pub detail: String,
    /// Whether `adopt` removed it.
    pub stripped: bool,
    /// Why it was left, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_because: Option<String>,
    /// The removals that strip it, in order (paths relative to the pod), or why it
    /// can't be stripped exactly.
    #[serde(skip)]
    pub strip: Result<Vec<Path>, String>,
}

/// Env vars that scuttle reads.
const SCUTTLE_ENV: &[&str] = &[
    "ENVOY_ADMIN_API",
    "ISTIO_QUIT_API",
    "SCUTTLE_LOGGING",
    "START_WITHOUT_ENVOY",
    "WAIT_FOR_ENVOY_TIMEOUT",
    "ISTIO_FALLBACK_PKILL",
    "NEVER_KILL_ISTIO",
    "NEVER_KILL_ISTIO_ON_FAILURE",
    "GENERIC_QUIT_ENDPOINTS",
    "QUIT_WITHOUT_ENVOY_TIMEOUT",
    "QUIT_REQUEST_TIMEOUT",
];

fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// True for text that calls a proxy's shutdown endpoint.
fn calls_quit(text: &str) -> bool {
    text.contains("quitquitquit") || text.contains(":4191/shutdown")
}

/// Finds the workarounds in a pod's regular containers. `sidecars` are the names of
/// the recognised legacy sidecars.
pub fn detect(spec: &Value, meta: Option<&Value>, sidecars: &[&str]) -> Vec<Workaround> {
    let mut out = Vec::new();
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let sidecar_text: Vec<String> = containers
        .iter()
        .filter(|c| {
            c.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| sidecars.contains(&n))
        })
        .map(Value::to_string)
        .collect();
    for (i, c) in containers.iter().enumerate() {
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        let cpath = Path::root().join(["spec", "containers"]).join([i]);
        let is_sidecar = sidecars.contains(&name);
        let found = |kind, field: &Path, detail: String, strip| Workaround {
            kind,
            container: name.to_string(),
            field: field.to_string(),
            detail,
            stripped: false,
            kept_because: None,
            strip,
        };
        let command = strings(c.get("command"));
        let args = strings(c.get("args"));
        if let Some(first) = command.first() {
            let cmd0 = cpath.join(["command", "0"]);
            match basename(first) {
                "kubexit" | "scuttle" => {
                    let kind = if basename(first) == "kubexit" {
                        WorkaroundKind::Kubexit
                    } else {
                        WorkaroundKind::Scuttle
                    };
                    let env_paths = env_removals(c, &cpath, |n| match kind {
                        WorkaroundKind::Kubexit => n.starts_with("KUBEXIT_"),
                        _ => SCUTTLE_ENV.contains(&n),
                    });
                    let env_len = c.get("env").and_then(Value::as_array).map_or(0, Vec::len);
                    let strip = if command.len() > 1 {
                        let mut paths = vec![cmd0.clone()];
                        if !env_paths.is_empty() && env_paths.len() == env_len {
                            paths.push(cpath.join(["env"]));
                        } else {
                            paths.extend(env_paths.iter().map(|(p, _)| p.clone()));
                        }
                        Ok(paths)
                    } else {
                        Err(
                            "the wrapped command is in args, which would then run as the \
                             image's entrypoint's arguments; edit it by hand"
                                .to_string(),
                        )
                    };
                    let vars: Vec<&str> = env_paths.iter().map(|(_, n)| n.as_str()).collect();
                    let detail = format!(
                        "{first:?} wraps the command{} so that the Job ends when the main \
                         container does; a native sidecar is stopped by the kubelet instead \
                         (an init container that installs the wrapper, and its volumes, can \
                         then go by hand)",
                        if vars.is_empty() {
                            String::new()
                        } else {
                            format!(" (env {})", vars.join(", "))
                        }
                    );
                    out.push(found(kind, &cmd0, detail, strip));
                }
                "linkerd-await" => {
                    let shutdown = command.contains(&"--shutdown");
                    let strip = match command.iter().position(|a| *a == "--") {
                        Some(k) if k + 1 < command.len() => Ok(vec![cmd0.clone(); k + 1]),
                        _ => Err("no `--` separates linkerd-await's flags from the command; \
                                  edit it by hand"
                            .to_string()),
                    };
                    let detail = if shutdown {
                        format!(
                            "{:?} waits for the proxy and shuts it down when the command exits, \
                             so that the Job ends; a native sidecar starts first and is stopped \
                             by the kubelet",
                            command.join(" ")
                        )
                    } else {
                        format!(
                            "{:?} holds the command until the proxy is ready; a native sidecar \
                             starts before the app",
                            command.join(" ")
                        )
                    };
                    out.push(found(WorkaroundKind::LinkerdAwait, &cmd0, detail, strip));
                }
                _ => {}
            }
        }
        for (key, list) in [("command", &command), ("args", &args)] {
            for (j, text) in list.iter().enumerate() {
                if calls_quit(text) && basename(list[0]) != "linkerd-await" {
                    out.push(found(
                        WorkaroundKind::QuitEndpoint,
                        &cpath.join([key.to_string(), j.to_string()]),
                        "the script calls the proxy's shutdown endpoint when it ends; a native \
                         sidecar is stopped by the kubelet (tandem does not rewrite scripts: \
                         edit it by hand)"
                            .to_string(),
                        Err("tandem does not rewrite shell scripts".to_string()),
                    ));
                }
            }
        }
        if let Some(pre) = c.pointer("/lifecycle/preStop")
            && calls_quit(&pre.to_string())
        {
            out.push(found(
                WorkaroundKind::QuitEndpoint,
                &cpath.join(["lifecycle", "preStop"]),
                "a preStop hook calls the proxy's shutdown endpoint; a native sidecar is stopped \
                 after the app by the kubelet"
                    .to_string(),
                Ok(vec![cpath.join(["lifecycle", "preStop"])]),
            ));
        }
        if is_sidecar
            && let Some(post) = c.pointer("/lifecycle/postStart")
            && strings(post.pointer("/exec/command"))
                .iter()
                .any(|a| a.contains("wait"))
        {
            let field = cpath.join(["lifecycle", "postStart"]);
            let strip = if c.get("startupProbe").is_some_and(|p| !p.is_null()) {
                Ok(vec![field.clone()])
            } else {
                Err(format!(
                    "{name} has no startupProbe: this hook is what holds the app until it is \
                     ready (a native sidecar counts as started once it runs and this hook returns)"
                ))
            };
            out.push(found(
                WorkaroundKind::HoldUntilStarted,
                &field,
                "a postStart hook holds the app until the sidecar is ready (like Istio's \
                 holdApplicationUntilProxyStarts); a native sidecar's startupProbe does that"
                    .to_string(),
                strip,
            ));
        }
        if !is_sidecar {
            for (key, list) in [("command", &command), ("args", &args)] {
                for (j, text) in list.iter().enumerate() {
                    let touched = touched_paths(text);
                    if let Some(p) = touched
                        .iter()
                        .find(|p| sidecar_text.iter().any(|s| s.contains(*p)))
                    {
                        out.push(found(
                            WorkaroundKind::DoneFile,
                            &cpath.join([key.to_string(), j.to_string()]),
                            format!(
                                "the app touches {p:?}, which a sidecar watches to know when to \
                                 exit; a native sidecar is stopped by the kubelet (edit both by \
                                 hand)"
                            ),
                            Err("tandem does not rewrite shell scripts".to_string()),
                        ));
                    }
                }
            }
        }
    }
    if let Some(cfg) = meta
        .and_then(|m| m.pointer("/annotations/proxy.istio.io~1config"))
        .and_then(Value::as_str)
        && cfg.contains("holdApplicationUntilProxyStarts")
    {
        out.push(Workaround {
            kind: WorkaroundKind::HoldUntilStarted,
            container: String::new(),
            field: r#"metadata.annotations["proxy.istio.io/config"]"#.to_string(),
            detail: "holdApplicationUntilProxyStarts is only read by Istio's injector; a native \
                     istio-proxy starts before the app"
                .to_string(),
            stripped: false,
            kept_because: None,
            strip: Err("harmless once injected; remove it from the template by hand".to_string()),
        });
    }
    out
}

/// Removal paths (last index first) of the env vars whose names `pick` selects.
fn env_removals(c: &Value, cpath: &Path, pick: impl Fn(&str) -> bool) -> Vec<(Path, String)> {
    let mut found: Vec<(Path, String)> = c
        .get("env")
        .and_then(Value::as_array)
        .map(|env| {
            env.iter()
                .enumerate()
                .filter_map(|(k, e)| {
                    let n = e.get("name")?.as_str()?;
                    pick(n).then(|| {
                        (
                            cpath.join(["env".to_string(), k.to_string()]),
                            n.to_string(),
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    found.reverse();
    found
}

/// Absolute paths that a shell snippet `touch`es.
fn touched_paths(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut words = text.split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|');
    while let Some(w) = words.next() {
        if basename(w) == "touch" {
            for next in words.by_ref() {
                if next.is_empty() || next.starts_with('-') {
                    continue;
                }
                let p = next.trim_matches(|c| c == '"' || c == '\'');
                if p.starts_with('/') {
                    out.push(p);
                }
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn touched() {
        assert_eq!(
            touched_paths("/app; touch /shared/done && exit 0"),
            ["/shared/done"]
        );
        assert_eq!(touched_paths("touch -c '/x/y'"), ["/x/y"]);
        assert!(touched_paths("touching nothing").is_empty());
    }

    #[test]
    fn finds_each_kind() {
        let spec = json!({"containers": [
            {"name": "app", "image": "a",
             "command": ["/kubexit/kubexit", "/app", "--run"],
             "env": [{"name": "KUBEXIT_NAME", "value": "app"}, {"name": "X", "value": "1"},
                     {"name": "KUBEXIT_GRAVEYARD", "value": "/graveyard"}]},
            {"name": "job", "image": "j", "command": ["linkerd-await", "--shutdown", "--", "/job"]},
            {"name": "sh", "image": "s", "command": ["sh", "-c", "/work; touch /done/finished; curl -X POST localhost:15020/quitquitquit"]},
            {"name": "istio-proxy", "image": "p",
             "args": ["proxy", "sidecar"],
             "lifecycle": {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}},
                           "preStop": {"httpGet": {"path": "/quitquitquit", "port": 15020}}}},
            {"name": "watcher", "image": "w", "command": ["sh", "-c", "until [ -f /done/finished ]; do sleep 1; done"]}
        ]});
        let meta = json!({"annotations": {"proxy.istio.io/config": "holdApplicationUntilProxyStarts: true"}});
        let w = detect(&spec, Some(&meta), &["istio-proxy", "watcher"]);
        let kinds: Vec<(WorkaroundKind, &str)> =
            w.iter().map(|w| (w.kind, w.field.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (WorkaroundKind::Kubexit, "spec.containers[0].command[0]"),
                (
                    WorkaroundKind::LinkerdAwait,
                    "spec.containers[1].command[0]"
                ),
                (
                    WorkaroundKind::QuitEndpoint,
                    "spec.containers[2].command[2]"
                ),
                (WorkaroundKind::DoneFile, "spec.containers[2].command[2]"),
                (
                    WorkaroundKind::QuitEndpoint,
                    "spec.containers[3].lifecycle.preStop"
                ),
                (
                    WorkaroundKind::HoldUntilStarted,
                    "spec.containers[3].lifecycle.postStart"
                ),
                (
                    WorkaroundKind::HoldUntilStarted,
                    r#"metadata.annotations["proxy.istio.io/config"]"#
                ),
            ]
        );
        // kubexit: the wrapper, then the env vars, last first.
        let strip: Vec<String> = w[0]
            .strip
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            strip,
            [
                "spec.containers[0].command[0]",
                "spec.containers[0].env[2]",
                "spec.containers[0].env[0]"
            ]
        );
        assert_eq!(w[1].strip.as_ref().unwrap().len(), 3);
        assert!(w[2].strip.is_err());
        // No startupProbe: the hold hook can't go.
        assert!(w[5].strip.as_ref().unwrap_err().contains("startupProbe"));
    }
}
