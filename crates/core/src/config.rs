//! tandem's configuration: the sidecars to inject and how to place them.
//!
//! Read from YAML (`--config`), with unknown keys rejected so that a typo is an
//! error, not a silently ignored setting. Sidecars stay raw JSON: they are copied
//! into pods exactly as written, never through a typed round trip.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::mode::Mode;

/// The built-in configuration, used when no file is given.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("default-config.yaml");

/// tandem's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Default mode for pods without a `tandem.dev/mode` annotation.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// What `auto` picks when a candidate node would reject native sidecars.
    #[serde(default)]
    pub auto_fallback: Fallback,
    /// Native sidecars go right after the last of these init containers, if present.
    #[serde(default)]
    pub insert_after: Vec<String>,
    /// Settings of `universal` mode.
    #[serde(default)]
    pub universal: UniversalConfig,
    /// Settings of `legacy` mode.
    #[serde(default)]
    pub legacy: LegacyConfig,
    /// How `tandem-shim` gets into the sidecar's container.
    #[serde(default)]
    pub shim: ShimConfig,
    /// What happens to sidecar ports in `hostNetwork: true` pods.
    #[serde(default)]
    pub host_network_ports: HostNetworkPorts,
    /// The sidecars: ordinary Kubernetes `Container` objects, kept raw.
    pub sidecars: Vec<Value>,
    /// Volumes the sidecars mount: ordinary Kubernetes `Volume` objects, kept raw.
    #[serde(default)]
    pub volumes: Vec<Value>,
    /// Which regular containers `tandem adopt` recognises as legacy sidecars.
    #[serde(default)]
    pub adopt: crate::adopt::AdoptConfig,
    /// Kinds beyond the built-in ones that carry a pod template (OpenShift
    /// `DeploymentConfig`, Argo `Rollout`, …), each with the path of its template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workload_kinds: Vec<crate::workload::WorkloadKind>,
    /// What the webhook does when, at reinvocation, a pod no longer holds what tandem
    /// injected (another webhook stripped it): `repair`, `legacy` or `deny`.
    #[serde(default)]
    pub on_stripped: crate::verify::StripPolicy,
}

/// What happens to the sidecars' `ports` in a `hostNetwork: true` pod, where the API
/// server makes every `containerPort` a `hostPort` and the scheduler counts them (for
/// restartable init containers too): the same sidecar port in two host-network
/// workloads (node-exporter, filebeat…) leaves one unschedulable on every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostNetworkPorts {
    /// Leave the sidecars' ports out (named ports in their probes become numbers) and warn.
    #[default]
    Drop,
    /// Refuse to inject such a pod (an error naming the pod and the ports).
    Refuse,
    /// Inject the ports as configured and warn.
    Keep,
}

/// What `auto` falls back to where native sidecars can't be trusted everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Regular containers: works on every node.
    #[default]
    Legacy,
    /// Native sidecars kept off incapable nodes by node affinity (needs `label-nodes`).
    Affinity,
}

/// Settings of `universal` mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UniversalConfig {
    /// Mount path of the shared state `emptyDir`.
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    /// How long the regular copy waits for the handshake without a startupProbe.
    #[serde(default = "default_settle", with = "duration_text")]
    pub settle_timeout: Duration,
    /// Whether the native copy gets a startupProbe.
    #[serde(default)]
    pub startup_probe: ProbePolicy,
}

/// Settings of `legacy` mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegacyConfig {
    /// In pods whose `restartPolicy` isn't `Always` (Jobs), run legacy sidecars under
    /// `tandem-shim legacy`, which stops them once the main containers have finished so
    /// that the Job completes. Needs `get pods` for the pod's service account. On by
    /// default: a plain legacy sidecar keeps a Job from ever completing.
    #[serde(default = "yes")]
    pub job_completion: bool,
}

fn yes() -> bool {
    true
}

impl Default for LegacyConfig {
    fn default() -> Self {
        Self {
            job_completion: true,
        }
    }
}

/// Whether the native copy of a universal sidecar gets a startupProbe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbePolicy {
    /// Only where the API server is known to accept probes on restartable init containers.
    #[default]
    Auto,
    /// Always (the API server is known to be 1.29+ with the gate on).
    Always,
    /// Never: the regular copy waits `settleTimeout` instead.
    Never,
}

/// How `tandem-shim` gets into the sidecar's container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShimConfig {
    /// `copy` or `image`.
    #[serde(default)]
    pub delivery: ShimDelivery,
    /// Image that carries `/tandem-shim` (delivery `copy`).
    #[serde(default = "default_shim_image")]
    pub image: String,
    /// Path of the shim inside the sidecar's image (delivery `image`).
    #[serde(default = "default_shim_path")]
    pub path: String,
}

/// How `tandem-shim` gets into the sidecar's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShimDelivery {
    /// An init container copies it from tandem's image into an `emptyDir`.
    #[default]
    Copy,
    /// The sidecar's image already has it at `shim.path`.
    Image,
}

/// A configuration that can't be used, and where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not YAML, or not the shape of a config.
    #[error("{0}")]
    Parse(String),
    /// A sidecar that isn't a valid container.
    #[error("sidecars[{index}]{name}: {problem}")]
    Sidecar {
        /// Position in `sidecars`.
        index: usize,
        /// ` (name)` when the sidecar has one.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// A volume that isn't a valid Volume.
    #[error("volumes[{index}]: {problem}")]
    Volume {
        /// Position in `volumes`.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// Another setting that can't be used.
    #[error("{field}: {problem}")]
    Field {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

fn default_mode() -> Mode {
    Mode::Auto
}
fn default_state_dir() -> String {
    "/var/run/tandem".into()
}
fn default_settle() -> Duration {
    Duration::from_secs(5)
}
fn default_shim_image() -> String {
    crate::images::SHIM_IMAGE.into()
}
fn default_shim_path() -> String {
    "/usr/local/bin/tandem-shim".into()
}

impl Default for UniversalConfig {
    fn default() -> Self {
        Self {
            state_dir: default_state_dir(),
            settle_timeout: default_settle(),
            startup_probe: ProbePolicy::Auto,
        }
    }
}

impl Default for ShimConfig {
    fn default() -> Self {
        Self {
            delivery: ShimDelivery::Copy,
            image: default_shim_image(),
            path: default_shim_path(),
        }
    }
}

impl Config {
    /// Reads and validates a configuration from YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: Config =
            crate::manifest::from_yaml_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The revision of what this configuration injects (its sidecars and their
    /// volumes), recorded in injected pods' `tandem.dev/status` so that `tandem status`
    /// lists the pods still running an older configuration after an upgrade. `None`
    /// when the configuration has no sidecars.
    pub fn sidecars_revision(&self) -> Option<String> {
        if self.sidecars.is_empty() {
            return None;
        }
        Some(crate::catalog::revision(&serde_json::json!({
            "sidecars": self.sidecars,
            "volumes": self.volumes,
        })))
    }

    /// The built-in configuration.
    pub fn builtin() -> Self {
        // The built-in text is tested to parse; this can't fail at run time.
        Self::from_yaml(DEFAULT_CONFIG_YAML)
            .unwrap_or_else(|e| unreachable!("the built-in config is invalid: {e}"))
    }

    /// Checks what serde can't: that every sidecar is a valid, uniquely named container.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (index, sidecar) in self.sidecars.iter().enumerate() {
            let bad = |problem: String| ConfigError::Sidecar {
                index,
                name: sidecar
                    .get("name")
                    .and_then(Value::as_str)
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                problem,
            };
            validate_container(sidecar).map_err(bad)?;
            let name = sidecar_name(sidecar);
            if !seen.insert(name.to_string()) {
                return Err(bad(format!("name {name:?} is used by another sidecar")));
            }
            let legacy = format!("{name}{}", crate::names::LEGACY_COPY_SUFFIX);
            if legacy.len() > 63 {
                return Err(bad(format!(
                    "name {name:?} is too long for its universal copy {legacy:?} (63 characters at most)"
                )));
            }
        }
        let mut volume_names = std::collections::HashSet::new();
        for (index, volume) in self.volumes.iter().enumerate() {
            let name = volume
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let problem = if !volume.is_object() {
                Some("must be a Volume object".to_string())
            } else if let Err(errs) = crate::validate::validate_volume(volume) {
                Some(format!(
                    "not a valid Volume: {}",
                    crate::validate::join(&errs)
                ))
            } else if dns1123_label_problem(name).is_some() {
                Some(format!("name {name:?} is not a valid volume name"))
            } else if !volume_names.insert(name) {
                Some(format!("name {name:?} is used by another volume"))
            } else if [crate::names::STATE_VOLUME, crate::names::SHIM_VOLUME].contains(&name) {
                Some(format!("name {name:?} is reserved for tandem"))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ConfigError::Volume { index, problem });
            }
        }
        if !self.universal.state_dir.starts_with('/') {
            return Err(ConfigError::Field {
                field: "universal.stateDir",
                problem: format!("{:?} is not an absolute path", self.universal.state_dir),
            });
        }
        if self.universal.settle_timeout.is_zero() {
            return Err(ConfigError::Field {
                field: "universal.settleTimeout",
                problem: "must be more than 0s".into(),
            });
        }
        self.adopt
            .validate()
            .map_err(|problem| ConfigError::Field {
                field: "adopt",
                problem,
            })?;
        if !self.shim.path.starts_with('/') {
            return Err(ConfigError::Field {
                field: "shim.path",
                problem: format!("{:?} is not an absolute path", self.shim.path),
            });
        }
        Ok(())
    }
}

/// A sidecar's name (validated configs always have one).
pub fn sidecar_name(sidecar: &Value) -> &str {
    sidecar.get("name").and_then(Value::as_str).unwrap_or("")
}

/// Checks that a raw container is one Kubernetes would accept as a sidecar: strictly
/// (unknown fields, quantities, enums), every problem named by its field.
pub(crate) fn validate_container(c: &Value) -> Result<(), String> {
    crate::validate::validate_container(c).map_err(|errs| crate::validate::join(&errs))
}

/// Why `name` is not a DNS-1123 label (a container name), or `None` if it is one.
pub fn dns1123_label_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.len() > 63 {
        return Some("is longer than 63 characters");
    }
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = !name.starts_with('-') && !name.ends_with('-');
    if !ok_chars || !ok_ends {
        return Some(
            "must be lowercase letters, digits and '-', starting and ending with a letter or digit",
        );
    }
    None
}

/// Durations written as Kubernetes and Go write them: `500ms`, `5s`, `2m`, `1m30s`.
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Parses Go's (and so kubectl's) duration form: `500ms`, `5s`, `1.5s`, `2m`,
    /// `1m30s`, `1h`, `250us`, `0`.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let bad = || format!("{text:?} is not a duration (e.g. 500ms, 5s, 2m, 1m30s)");
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        if rest == "0" {
            return Ok(Duration::ZERO);
        }
        let mut total = 0f64;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            let number: f64 = rest[..num_end].parse().map_err(|_| bad())?;
            rest = &rest[num_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = match &rest[..unit_end] {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(bad()),
            };
            total += number * scale;
            rest = &rest[unit_end..];
        }
        Ok(Duration::from_secs_f64(total))
    }

    /// Parses a command-line timeout as kubectl does (`--request-timeout`): a duration
    /// (`30s`, `1m`, `0`) or a bare number of seconds (`30`).
    pub fn parse_flag(text: &str) -> Result<Duration, String> {
        match text.trim().parse::<u64>() {
            Ok(secs) => Ok(Duration::from_secs(secs)),
            Err(_) => parse(text).map_err(|e| format!("{e}, or a number of seconds")),
        }
    }

    /// Writes a duration the way [`parse`] reads it.
    pub fn format(d: Duration) -> String {
        let ms = d.as_millis();
        if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }

    /// serde: read.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// serde: write.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_config_is_valid() {
        let c = Config::builtin();
        assert_eq!(c.mode, Mode::Auto);
        assert_eq!(c.sidecars.len(), 1);
        assert_eq!(sidecar_name(&c.sidecars[0]), "log-shipper");
        assert_eq!(c.universal.settle_timeout, Duration::from_secs(5));
    }

    #[test]
    fn typo_is_an_error_naming_the_key() {
        let err = Config::from_yaml("mode: native\nsidecar: []\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sidecar"), "{text}");
        let err = Config::from_yaml("mode: nativ\nsidecars: []\n").unwrap_err();
        assert!(err.to_string().contains("nativ"), "{err}");
    }

    #[test]
    fn invalid_sidecars_are_named() {
        let cases = [
            ("sidecars: [{image: x}]", "sidecars[0]"),
            ("sidecars: [{name: Proxy, image: x}]", "Proxy"),
            ("sidecars: [{name: p}]", "image is required"),
            (
                "sidecars: [{name: p, image: x, ports: 80}]",
                "ports: invalid type",
            ),
            (
                "sidecars: [{name: p, image: x, imagePullPolcy: Always}]",
                "sidecars[0] (p): imagePullPolcy: unknown field (did you mean imagePullPolicy?)",
            ),
            (
                "sidecars: [{name: p, image: x, resorces: {limits: {cpu: 1}}}]",
                "resorces: unknown field",
            ),
            (
                "sidecars: [{name: p, image: x, resources: {limits: {cpu: lots}}}]",
                "resources.limits.cpu: \"lots\" is not a quantity",
            ),
            (
                "sidecars: [{name: p, image: x, imagePullPolicy: Sometimes}]",
                "imagePullPolicy: \"Sometimes\" is not one of",
            ),
            (
                "sidecars: [{name: p, image: x}]\nvolumes: [{name: v, emptyDri: {}}]",
                "volumes[0]: not a valid Volume: emptyDri: unknown field",
            ),
            (
                "sidecars: [{name: p, image: x}, {name: p, image: z}]",
                "another sidecar",
            ),
            ("sidecars: [7]", "Container object"),
        ];
        for (yaml, want) in cases {
            let err = Config::from_yaml(yaml).unwrap_err().to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }

    #[test]
    fn unknown_container_fields_are_errors() {
        // The README promises strict validation: a typo is never silently ignored.
        let err = Config::from_yaml("sidecars: [{name: p, image: x, futureField: {a: 1}}]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("futureField: unknown field"), "{err}");
    }

    #[test]
    fn durations() {
        for (text, ms) in [
            ("5s", 5000),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("1.5s", 1500),
        ] {
            assert_eq!(
                duration_text::parse(text).unwrap().as_millis(),
                ms,
                "{text}"
            );
        }
        for bad in ["", "5", "s", "5 s", "5x", "-1s"] {
            assert!(duration_text::parse(bad).is_err(), "{bad}");
        }
        // kubectl's forms (issue 15: `--request-timeout 30s` was refused).
        assert_eq!(duration_text::parse("0").unwrap(), Duration::ZERO);
        assert_eq!(duration_text::parse("250us").unwrap().as_micros(), 250);
        for (text, ms) in [("30s", 30_000), ("30", 30_000), ("1m", 60_000), ("0", 0)] {
            assert_eq!(
                duration_text::parse_flag(text).unwrap().as_millis(),
                ms,
                "{text}"
            );
        }
        assert!(duration_text::parse_flag("soon").is_err());
        assert_eq!(duration_text::format(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration_text::format(Duration::from_secs(5)), "5s");
    }

    #[test]
    fn dns_labels() {
        assert!(dns1123_label_problem("log-shipper").is_none());
        for bad in ["", "-a", "a-", "A", "a_b", &"a".repeat(64)] {
            assert!(dns1123_label_problem(bad).is_some(), "{bad}");
        }
    }
}
