//! Recognising legacy sidecars: containers in `spec.containers` that are really
//! sidecars (a mesh proxy, a log shipper, a secrets agent), by name or image pattern
//! from a configurable list, or because the pod's `tandem.dev/adopt` annotation names
//! them. Every match carries the reason, so that users can check it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{Catalog, Entry};

/// The `adopt:` section of the configuration: which containers are legacy sidecars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdoptConfig {
    /// Also recognise the built-in well-known sidecars ([`builtin`]); default true.
    #[serde(default = "yes")]
    pub builtin: bool,
    /// More sidecars to recognise, checked before the built-in ones.
    #[serde(default)]
    pub sidecars: Vec<KnownSidecar>,
}

fn yes() -> bool {
    true
}

impl Default for AdoptConfig {
    fn default() -> Self {
        Self {
            builtin: true,
            sidecars: Vec::new(),
        }
    }
}

/// One kind of legacy sidecar and how to recognise it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KnownSidecar {
    /// What it is, for messages (`istio-proxy`).
    pub name: String,
    /// Container name patterns (`*` matches any run of characters).
    #[serde(default)]
    pub containers: Vec<String>,
    /// Image patterns, matched against the image without tag or digest: a pattern
    /// without `/` against its last path segment (`proxyv2` matches
    /// `docker.io/istio/proxyv2:1.24.0`), one with `/` against its trailing segments
    /// (`fluent/fluent-bit` matches `cr.fluentbit.io/fluent/fluent-bit:3.1`).
    #[serde(default)]
    pub images: Vec<String>,
    /// Init containers it depends on: once moved, it goes right after the last of
    /// these that the pod has (e.g. `istio-init`, which sets up the proxy's iptables).
    #[serde(default)]
    pub after: Vec<String>,
}

/// The built-in list: sidecars that injectors and users commonly add as regular
/// containers. Image patterns are only given where the image is unambiguous.
pub fn builtin() -> Vec<KnownSidecar> {
    type Row = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
    );
    const ROWS: &[Row] = &[
        (
            "istio-proxy",
            &["istio-proxy"],
            &["proxyv2", "istio/proxyv2"],
            &["istio-init", "istio-validation"],
        ),
        (
            "linkerd-proxy",
            &["linkerd-proxy"],
            &["linkerd/proxy"],
            &["linkerd-init", "linkerd-network-validator"],
        ),
        ("vault-agent", &["vault-agent"], &[], &["vault-agent-init"]),
        (
            "cloud-sql-proxy",
            &["cloud-sql-proxy", "cloudsql-proxy"],
            &["cloud-sql-proxy", "cloudsql-docker/gce-proxy"],
            &[],
        ),
        (
            "fluent-bit",
            &["fluent-bit", "fluentbit"],
            &["fluent-bit", "fluent/fluent-bit"],
            &[],
        ),
        (
            "otel-collector",
            &["otc-container", "otel-collector", "opentelemetry-collector"],
            &[
                "opentelemetry-collector",
                "opentelemetry-collector-contrib",
                "otelcol",
                "otelcol-contrib",
            ],
            &[],
        ),
        (
            "consul-dataplane",
            &["consul-dataplane", "consul-connect-envoy-sidecar"],
            &["consul-dataplane"],
            &["consul-connect-inject-init"],
        ),
        (
            "kuma-sidecar",
            &["kuma-sidecar"],
            &["kuma-dp"],
            &["kuma-init"],
        ),
        ("daprd", &["daprd"], &["daprd"], &[]),
        (
            "envoy",
            &["envoy", "envoy-sidecar"],
            &["envoyproxy/envoy", "aws-appmesh-envoy"],
            &["proxyinit"],
        ),
    ];
    let list = |items: &[&str]| items.iter().map(|s| (*s).to_string()).collect();
    ROWS.iter()
        .map(|(name, containers, images, after)| KnownSidecar {
            name: (*name).to_string(),
            containers: list(containers),
            images: list(images),
            after: list(after),
        })
        .collect()
}

impl AdoptConfig {
    /// The list in the order it is checked: the configured sidecars, then the built-in
    /// ones (unless `builtin: false`).
    pub fn known(&self) -> Vec<KnownSidecar> {
        let mut out = self.sidecars.clone();
        if self.builtin {
            out.extend(builtin());
        }
        out
    }

    /// [`Self::known`] with the containers of sidecar objects in between: the configured
    /// sidecars, then `objects`, then the built-in ones.
    pub fn known_with(&self, objects: Vec<KnownSidecar>) -> Vec<KnownSidecar> {
        let mut out = self.sidecars.clone();
        out.extend(objects);
        if self.builtin {
            out.extend(builtin());
        }
        out
    }

    /// Checks what serde can't: every entry has a name and at least one pattern.
    pub fn validate(&self) -> Result<(), String> {
        for (i, s) in self.sidecars.iter().enumerate() {
            if s.name.trim().is_empty() {
                return Err(format!("adopt.sidecars[{i}].name: is required"));
            }
            if s.containers.is_empty() && s.images.is_empty() {
                return Err(format!(
                    "adopt.sidecars[{i}] ({}): give at least one of containers or images",
                    s.name
                ));
            }
            if let Some(p) = s.containers.iter().chain(&s.images).find(|p| p.is_empty()) {
                return Err(format!(
                    "adopt.sidecars[{i}] ({}): pattern {p:?} is empty",
                    s.name
                ));
            }
        }
        Ok(())
    }
}

/// What the sidecar objects of a catalog add, as recognition rules: a regular container
/// named like one of an object's containers is that object's sidecar, added as a plain
/// container before (by an older injector, by hand, or by tandem in `legacy` mode). Only
/// usable objects count: every `ClusterSidecar`, and the `Sidecar`s of `namespace` (of
/// every namespace when the pod's is not known, as in a file without one). Once moved, the
/// container goes after the object's own init containers.
pub fn from_objects(catalog: &Catalog, namespace: Option<&str>) -> Vec<KnownSidecar> {
    let namespaced = catalog
        .namespaced
        .iter()
        .filter(|(ns, _)| namespace.is_none_or(|want| want == ns.as_str()))
        .flat_map(|(_, objects)| objects.values());
    namespaced
        .chain(catalog.cluster.values())
        .filter_map(|e| match e {
            Entry::Usable(o) => Some(o),
            Entry::Unusable(_) => None,
        })
        .flat_map(|o| {
            let after: Vec<String> = o
                .init_containers
                .iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
            o.containers
                .iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(move |name| KnownSidecar {
                    name: o.reference.to_string(),
                    containers: vec![name.to_string()],
                    images: Vec::new(),
                    after: after.clone(),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A regular container recognised as a legacy sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recognition {
    /// The container's name.
    pub container: String,
    /// Its index in `spec.containers`.
    pub index: usize,
    /// The known sidecar it matched (`istio-proxy`), or `annotation`.
    pub known_as: String,
    /// Why, in words a user can check.
    pub reason: String,
    /// Init containers it goes after once moved.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

/// What [`recognise`] found in one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recognised {
    /// The recognised containers, in `spec.containers` order.
    pub sidecars: Vec<Recognition>,
    /// Names that the annotation gives but the pod has no regular container of.
    pub unknown_names: Vec<String>,
}

/// Finds the legacy sidecars among the regular containers of `spec`.
///
/// `annotation` is the pod's `tandem.dev/adopt` annotation (comma-separated container
/// names); `exclude` are containers never to adopt (tandem's own injected sidecars).
pub fn recognise(
    spec: &Value,
    annotation: Option<&str>,
    known: &[KnownSidecar],
    exclude: &[String],
) -> Recognised {
    let named: Vec<&str> = annotation
        .map(|a| {
            a.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = Recognised::default();
    for (index, c) in containers.iter().enumerate() {
        let Some(name) = c.get("name").and_then(Value::as_str) else {
            continue;
        };
        if exclude.iter().any(|e| e == name) {
            continue;
        }
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
        let rule = known.iter().find_map(|k| match_rule(k, name, image));
        let in_annotation = named.contains(&name);
        let (known_as, reason, after) = match (rule, in_annotation) {
            (Some((k, why)), true) => (
                k.name.clone(),
                format!("named in {} ({why})", crate::names::ADOPT_ANNOTATION),
                k.after.clone(),
            ),
            (Some((k, why)), false) => (k.name.clone(), why, k.after.clone()),
            (None, true) => (
                "annotation".to_string(),
                format!("named in {}", crate::names::ADOPT_ANNOTATION),
                Vec::new(),
            ),
            (None, false) => continue,
        };
        out.sidecars.push(Recognition {
            container: name.to_string(),
            index,
            known_as,
            reason,
            after,
        });
    }
    for n in named {
        let is_regular = containers
            .iter()
            .any(|c| c.get("name").and_then(Value::as_str) == Some(n));
        if !is_regular && !out.unknown_names.iter().any(|u| u == n) {
            out.unknown_names.push(n.to_string());
        }
    }
    out
}

fn match_rule<'k>(
    k: &'k KnownSidecar,
    name: &str,
    image: &str,
) -> Option<(&'k KnownSidecar, String)> {
    if let Some(p) = k.containers.iter().find(|p| glob(p, name)) {
        return Some((
            k,
            if p == name {
                format!("container name {name:?} is {}", k.name)
            } else {
                format!("container name {name:?} matches {p:?} ({})", k.name)
            },
        ));
    }
    let repo = repository(image);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    k.images
        .iter()
        .find(|p| {
            if p.contains('/') {
                std::iter::once(repo)
                    .chain(repo.match_indices('/').map(|(i, _)| &repo[i + 1..]))
                    .any(|tail| glob(p, tail))
            } else {
                glob(p, last)
            }
        })
        .map(|p| (k, format!("image {image:?} matches {p:?} ({})", k.name)))
}

/// The image reference without its tag or digest.
pub fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match (no_digest.rfind(':'), no_digest.rfind('/')) {
        (Some(colon), Some(slash)) if colon > slash => &no_digest[..colon],
        (Some(colon), None) => &no_digest[..colon],
        _ => no_digest,
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, rest) = (parts[0], &parts[1..]);
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let (last, middle) = match rest.split_last() {
        Some((last, middle)) => (*last, middle),
        None => return true,
    };
    for part in middle {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob("proxyv2", "proxyv2"));
        assert!(!glob("proxyv2", "proxyv3"));
        assert!(glob("*istio*/proxyv2", "docker.io/istio/proxyv2"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "abc"));
        assert!(glob("a*b*c", "a-b-b-c"));
        assert!(!glob("a*b*c", "a-c-b"));
        assert!(!glob("ab*ba", "aba"));
        assert!(glob("otelcol*", "otelcol-contrib"));
    }

    #[test]
    fn repositories() {
        assert_eq!(
            repository("docker.io/istio/proxyv2:1.24.0"),
            "docker.io/istio/proxyv2"
        );
        assert_eq!(repository("localhost:5000/envoy"), "localhost:5000/envoy");
        assert_eq!(
            repository("localhost:5000/envoy:v1@sha256:ab"),
            "localhost:5000/envoy"
        );
        assert_eq!(repository("fluent-bit:3"), "fluent-bit");
        assert_eq!(repository("busybox"), "busybox");
    }

    #[test]
    fn recognises_by_name_image_and_annotation_with_reasons() {
        let spec = json!({"containers": [
            {"name": "app", "image": "shop/app:1"},
            {"name": "mesh", "image": "docker.io/istio/proxyv2:1.24.0"},
            {"name": "cloud-sql-proxy", "image": "example/whatever"},
            {"name": "shipper", "image": "cr.fluentbit.io/fluent/fluent-bit:3.1"},
            {"name": "custom", "image": "me/custom"},
            {"name": "log-shipper", "image": "fluent/fluent-bit:3"}
        ]});
        let known = AdoptConfig::default().known();
        let r = recognise(
            &spec,
            Some("custom, ghost"),
            &known,
            &["log-shipper".to_string()],
        );
        let got: Vec<(&str, &str)> = r
            .sidecars
            .iter()
            .map(|s| (s.container.as_str(), s.known_as.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("mesh", "istio-proxy"),
                ("cloud-sql-proxy", "cloud-sql-proxy"),
                ("shipper", "fluent-bit"),
                ("custom", "annotation")
            ]
        );
        assert!(
            r.sidecars[0].reason.contains("proxyv2"),
            "{:?}",
            r.sidecars[0]
        );
        assert_eq!(r.sidecars[0].after, ["istio-init", "istio-validation"]);
        assert!(r.sidecars[1].reason.contains("container name"));
        assert_eq!(r.unknown_names, ["ghost"]);
    }

    #[test]
    fn configured_rules_win_and_builtin_can_be_off() {
        let cfg: AdoptConfig = serde_json::from_value(json!({
            "builtin": false,
            "sidecars": [{"name": "acme-agent", "images": ["acme/agent*"], "after": ["acme-init"]}]
        }))
        .unwrap();
        cfg.validate().unwrap();
        let spec = json!({"containers": [
            {"name": "app", "image": "app"},
            {"name": "istio-proxy", "image": "x"},
            {"name": "a", "image": "reg.example/acme/agent-v2:3"}
        ]});
        let r = recognise(&spec, None, &cfg.known(), &[]);
        assert_eq!(r.sidecars.len(), 1);
        assert_eq!(r.sidecars[0].container, "a");
        assert_eq!(r.sidecars[0].after, ["acme-init"]);
        let bad: AdoptConfig =
            serde_json::from_value(json!({"sidecars": [{"name": "x"}]})).unwrap();
        assert!(bad.validate().unwrap_err().contains("containers or images"));
    }

    #[test]
    fn builtin_list_is_valid() {
        let cfg = AdoptConfig {
            builtin: false,
            sidecars: builtin(),
        };
        cfg.validate().unwrap();
    }
}
