//! Sidecar objects as the injector uses them, and the rules that pick them for a pod.
//!
//! [`SidecarObject::from_value`] turns a raw `Sidecar`/`ClusterSidecar` (from the API
//! server or a file) into a checked object with its [revision] or says why it
//! can't be used. A [`Catalog`] holds every object the webhook (or `tandem inject
//! --sidecars`) knows, with the namespaces' labels, and answers one question with
//! [`Catalog::select`]: which objects does this pod get, in which order?
//!
//! # Selection rules
//! 1. A pod labelled `tandem.dev/inject: disabled` gets nothing (the opt-out wins).
//! 2. For each name, the `Sidecar` of that name in the pod's namespace takes the place of
//!    a `ClusterSidecar` of the same name (even when the `Sidecar` is unusable).
//! 3. A `ClusterSidecar` applies only in namespaces its `namespaceSelector` selects
//!    (absent: all). A `Sidecar` applies only in its own namespace.
//! 4. An object in scope is selected when its `podSelector` matches the pod's labels
//!    (absent: never; `{}`: every pod), or when the pod names it in the annotation
//!    `tandem.dev/sidecars: a,b`.
//! 5. A requested name that is unknown, unusable or out of scope is an error (the pod is
//!    refused with the reason: a pod that asked for a secrets agent must not start without
//!    it). An unusable object that a selector would pick is skipped with a warning.
//! 6. Order: by `spec.order` (default 0), then by name. Two selected objects that use the
//!    same container or volume name (different volumes; identical ones are shared): the
//!    namespaced one, else the earlier in that order, is kept; the other is skipped with a
//!    warning, or is an error if the pod requested it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{dns1123_label_problem, validate_container};
use crate::mode::Mode;
use crate::names;
use crate::selector::{Selector, labels_of};

/// Which of the two kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// `Sidecar` (namespaced).
    Sidecar,
    /// `ClusterSidecar` (cluster-scoped).
    ClusterSidecar,
}

impl Kind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sidecar => "Sidecar",
            Kind::ClusterSidecar => "ClusterSidecar",
        }
    }
}

/// Names one sidecar object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// The kind.
    pub kind: Kind,
    /// Its namespace (`Sidecar` only).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind.as_str(), self.name),
            None => write!(f, "{} {}", self.kind.as_str(), self.name),
        }
    }
}

/// A checked sidecar object, ready to inject.
#[derive(Debug, Clone, PartialEq)]
pub struct SidecarObject {
    /// Which object.
    pub reference: ObjectRef,
    /// `metadata.generation` (absent in files).
    pub generation: Option<i64>,
    /// `metadata.uid` (absent in files).
    pub uid: Option<String>,
    /// `metadata.creationTimestamp` (RFC 3339; ties of conflicts go to the older).
    pub created: Option<String>,
    /// The revision injected pods record: see [`revision`].
    pub revision: String,
    /// `spec.podSelector` (`None`: only pods that request it).
    pub pod_selector: Option<Selector>,
    /// `spec.namespaceSelector` (`ClusterSidecar`; `None`: every namespace).
    pub namespace_selector: Option<Selector>,
    /// The sidecar containers, raw.
    pub containers: Vec<Value>,
    /// Plain init containers run just before them, raw.
    pub init_containers: Vec<Value>,
    /// Volumes they need, raw.
    pub volumes: Vec<Value>,
    /// `spec.mode`.
    pub mode: Option<Mode>,
    /// `spec.order` (default 0).
    pub order: i32,
}

/// An object that can't be used, and why (what its `Ready` condition says).
#[derive(Debug, Clone, PartialEq)]
pub struct Unusable {
    /// Which object.
    pub reference: ObjectRef,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// The revision of its spec.
    pub revision: String,
    /// `Invalid` or `ConflictingNames`.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
    /// Its pod selector, when that part parsed (to warn the pods it would have selected).
    pub pod_selector: Option<Selector>,
    /// Its namespace selector, when that part parsed.
    pub namespace_selector: Option<Selector>,
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reference, self.message)
    }
}

/// Condition reason: the object is injected where selected.
pub const REASON_READY: &str = "Ready";
/// Condition reason: the object is malformed.
pub const REASON_INVALID: &str = "Invalid";
/// Condition reason: the object uses a container or volume name another object uses.
pub const REASON_CONFLICT: &str = "ConflictingNames";

const SPEC_FIELDS: [&str; 7] = [
    "podSelector",
    "namespaceSelector",
    "containers",
    "initContainers",
    "volumes",
    "mode",
    "order",
];

/// The revision of a spec: 10 hex digits of a 64-bit FNV-1a hash of the spec's JSON
/// with object keys sorted, so that the same spec gives the same revision from a file,
/// from the API server (which reorders keys) and across tandem versions.
///
/// Why a hash rather than `metadata.generation`: it is the same offline and in the
/// cluster, it changes when an object is deleted and created again with another spec
/// (a generation starts again at 1), and an edit that is reverted makes pods current again.
pub fn revision(spec: &Value) -> String {
    let mut text = String::new();
    canonical(spec, &mut text);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")[..10].to_string()
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

impl SidecarObject {
    /// Reads and checks one raw object (`apiVersion: tandem.dev/v1alpha1`, kind
    /// `Sidecar` or `ClusterSidecar`). The error is what its status will say.
    pub fn from_value(v: &Value) -> Result<Self, Box<Unusable>> {
        let kind = match v.get("kind").and_then(Value::as_str) {
            Some("Sidecar") => Kind::Sidecar,
            Some("ClusterSidecar") => Kind::ClusterSidecar,
            other => {
                return Err(Box::new(unusable_shell(
                    Kind::Sidecar,
                    v,
                    format!("kind {other:?} is not Sidecar or ClusterSidecar"),
                )));
            }
        };
        let spec = v.get("spec").cloned().unwrap_or(Value::Null);
        let mut bad = unusable_shell(kind, v, String::new());
        let fail = |mut bad: Unusable, message: String| {
            bad.message = message;
            Err(Box::new(bad))
        };
        if let Some(api) = v.get("apiVersion").and_then(Value::as_str)
            && api != crate::api::API_VERSION
        {
            return fail(
                bad,
                format!("apiVersion {api:?} is not {}", crate::api::API_VERSION),
            );
        }
        if bad.reference.name.is_empty() {
            return fail(bad, "metadata.name is required".into());
        }
        if kind == Kind::Sidecar && bad.reference.namespace.is_none() {
            // Files may leave it out; the API server always sets it.
            bad.reference.namespace = Some("default".into());
        }
        let Some(spec_map) = spec.as_object() else {
            return fail(bad, "spec is required".into());
        };
        for key in spec_map.keys() {
            if !SPEC_FIELDS.contains(&key.as_str())
                || (key == "namespaceSelector" && kind == Kind::Sidecar)
            {
                return fail(
                    bad,
                    format!(
                        "spec.{key}: unknown field (a {} has {})",
                        kind.as_str(),
                        SPEC_FIELDS
                            .iter()
                            .filter(|f| kind == Kind::ClusterSidecar || **f != "namespaceSelector")
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        let selector = |key: &str| -> Result<Option<Selector>, String> {
            match spec.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(s) => Selector::parse(s)
                    .map(Some)
                    .map_err(|e| format!("spec.{key}: {e}")),
            }
        };
        let pod_selector = selector("podSelector");
        let namespace_selector = selector("namespaceSelector");
        bad.pod_selector = pod_selector.clone().ok().flatten();
        bad.namespace_selector = namespace_selector.clone().ok().flatten();
        let pod_selector = match pod_selector {
            Ok(s) => s,
            Err(e) => return fail(bad, e),
        };
        let namespace_selector = match namespace_selector {
            Ok(s) => s,
            Err(e) => return fail(bad, e),
        };
        let list = |key: &str| -> Result<Vec<Value>, String> {
            match spec.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => Ok(items.clone()),
                Some(_) => Err(format!("spec.{key}: must be a list")),
            }
        };
        let (containers, init_containers, volumes) =
            match (list("containers"), list("initContainers"), list("volumes")) {
                (Ok(c), Ok(i), Ok(v)) => (c, i, v),
                (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => return fail(bad, e),
            };
        if containers.is_empty() {
            return fail(bad, "spec.containers: needs at least one container".into());
        }
        let mut names = BTreeSet::new();
        for (key, items) in [
            ("initContainers", &init_containers),
            ("containers", &containers),
        ] {
            for (i, c) in items.iter().enumerate() {
                let at = |p: String| format!("spec.{key}[{i}]: {p}");
                if let Err(p) = check_container(c) {
                    return fail(bad, at(p));
                }
                let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                if !names.insert(name.to_string()) {
                    return fail(bad, at(format!("name {name:?} is used twice")));
                }
                if name == names::SHIM_INSTALL_CONTAINER
                    || name.ends_with(names::LEGACY_COPY_SUFFIX)
                {
                    return fail(
                        bad,
                        at(format!(
                            "name {name:?} is reserved for tandem (its shim installer and the \
                             `-legacy` copies of universal sidecars)"
                        )),
                    );
                }
                if key == "containers" && name.len() + names::LEGACY_COPY_SUFFIX.len() > 63 {
                    return fail(
                        bad,
                        at(format!(
                            "name {name:?} is too long for its universal copy (56 characters at most)"
                        )),
                    );
                }
            }
        }
        let mut volume_names = BTreeSet::new();
        for (i, vol) in volumes.iter().enumerate() {
            let name = vol.get("name").and_then(Value::as_str).unwrap_or_default();
            let problem = if !vol.is_object() {
                Some("must be a Volume object".to_string())
            } else if let Err(e) =
                serde_json::from_value::<k8s_openapi::api::core::v1::Volume>(vol.clone())
            {
                Some(format!("not a valid Volume: {e}"))
            } else if let Some(p) = dns1123_label_problem(name) {
                Some(format!("name {name:?} {p}"))
            } else if !volume_names.insert(name) {
                Some(format!("name {name:?} is used twice"))
            } else if [names::STATE_VOLUME, names::SHIM_VOLUME].contains(&name) {
                Some(format!("name {name:?} is reserved for tandem"))
            } else {
                None
            };
            if let Some(p) = problem {
                return fail(bad, format!("spec.volumes[{i}]: {p}"));
            }
        }
        let mode = match spec.get("mode") {
            None | Some(Value::Null) => None,
            Some(m) => match m.as_str().map(str::parse::<Mode>) {
                Some(Ok(m)) => Some(m),
                Some(Err(e)) => return fail(bad, format!("spec.mode: {e}")),
                None => return fail(bad, "spec.mode: must be a string".into()),
            },
        };
        let order = match spec.get("order") {
            None | Some(Value::Null) => 0,
            Some(o) => match o.as_i64().and_then(|o| i32::try_from(o).ok()) {
                Some(o) => o,
                None => return fail(bad, "spec.order: must be a 32-bit integer".into()),
            },
        };
        Ok(Self {
            reference: bad.reference,
            generation: bad.generation,
            uid: bad.uid,
            created: str_at(v, "/metadata/creationTimestamp"),
            revision: bad.revision,
            pod_selector,
            namespace_selector,
            containers,
            init_containers,
            volumes,
            mode,
            order,
        })
    }

    /// Names of every container it adds (init containers first).
    pub fn container_names(&self) -> impl Iterator<Item = &str> {
        self.init_containers
            .iter()
            .chain(&self.containers)
            .map(|c| c.get("name").and_then(Value::as_str).unwrap_or_default())
    }
}

/// The one check a sidecar object's container gets (the config file's check, so both
/// sources accept the same containers).
pub fn check_container(c: &Value) -> Result<(), String> {
    validate_container(c)
}

fn str_at(v: &Value, ptr: &str) -> Option<String> {
    v.pointer(ptr).and_then(Value::as_str).map(str::to_string)
}

fn unusable_shell(kind: Kind, v: &Value, message: String) -> Unusable {
    Unusable {
        reference: ObjectRef {
            kind,
            namespace: match kind {
                Kind::Sidecar => str_at(v, "/metadata/namespace"),
                Kind::ClusterSidecar => None,
            },
            name: str_at(v, "/metadata/name").unwrap_or_default(),
        },
        generation: v.pointer("/metadata/generation").and_then(Value::as_i64),
        uid: str_at(v, "/metadata/uid"),
        revision: revision(v.get("spec").unwrap_or(&Value::Null)),
        reason: REASON_INVALID,
        message,
        pod_selector: None,
        namespace_selector: None,
    }
}

/// One entry of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// Injected where selected.
    Usable(Arc<SidecarObject>),
    /// Skipped (its status says why).
    Unusable(Arc<Unusable>),
}

impl Entry {
    /// Which object.
    pub fn reference(&self) -> &ObjectRef {
        match self {
            Entry::Usable(o) => &o.reference,
            Entry::Unusable(u) => &u.reference,
        }
    }
}

/// Every sidecar object known, and the namespaces' labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// `Sidecar`s by namespace, then name.
    pub namespaced: BTreeMap<String, BTreeMap<String, Entry>>,
    /// `ClusterSidecar`s by name.
    pub cluster: BTreeMap<String, Entry>,
    /// Labels of each known namespace.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

/// Why a pod can't get what it asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectError(pub String);

/// One object selected for a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    /// The object.
    pub object: Arc<SidecarObject>,
    /// True when the pod named it in `tandem.dev/sidecars`.
    pub requested: bool,
}

/// What a pod gets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selection {
    /// The objects, in injection order.
    pub objects: Vec<Selected>,
    /// Objects skipped for this pod, and why.
    pub warnings: Vec<String>,
}

/// The names a pod requests in `tandem.dev/sidecars` (comma-separated, spaces allowed).
pub fn requested_names(meta: Option<&Value>) -> Result<Vec<String>, SelectError> {
    let Some(text) = meta
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(names::SIDECARS_ANNOTATION))
    else {
        return Ok(Vec::new());
    };
    let text = text.as_str().ok_or_else(|| {
        SelectError(format!(
            "annotation {} must be a string",
            names::SIDECARS_ANNOTATION
        ))
    })?;
    let mut out: Vec<String> = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.len() > 253 || !name.split('.').all(|l| dns1123_label_problem(l).is_none()) {
            return Err(SelectError(format!(
                "annotation {}: {name:?} is not a valid object name (use names of Sidecar or \
                 ClusterSidecar objects, separated by commas)",
                names::SIDECARS_ANNOTATION
            )));
        }
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

impl Catalog {
    /// A catalog from documents (`tandem inject --sidecars`): `Sidecar` and
    /// `ClusterSidecar` objects, `Namespace`s (their labels, for `namespaceSelector`), and
    /// `List`s of them. Offline, every object must be usable: the error names each one
    /// that isn't (unusable objects, conflicts, and documents of other kinds).
    pub fn from_documents<'a>(
        docs: impl IntoIterator<Item = &'a Value>,
    ) -> Result<Self, Vec<String>> {
        let mut objects = Vec::new();
        let mut namespaces = BTreeMap::new();
        let mut errors = Vec::new();
        let mut stack: Vec<&Value> = docs.into_iter().collect();
        stack.reverse();
        while let Some(doc) = stack.pop() {
            match doc.get("kind").and_then(Value::as_str) {
                None if doc.is_null() => {}
                Some("List") | Some("SidecarList") | Some("ClusterSidecarList") => {
                    if let Some(items) = doc.get("items").and_then(Value::as_array) {
                        stack.extend(items.iter().rev());
                    }
                }
                Some("Namespace") => {
                    if let Some(name) = doc.pointer("/metadata/name").and_then(Value::as_str) {
                        namespaces.insert(name.to_string(), labels_of(doc.get("metadata")));
                    }
                }
                Some("Sidecar") | Some("ClusterSidecar") => {
                    objects.push(SidecarObject::from_value(doc))
                }
                other => errors.push(format!(
                    "{}: kind {other:?} is not Sidecar, ClusterSidecar or Namespace",
                    crate::workload::describe(doc)
                )),
            }
        }
        let mut catalog = Catalog::build(objects);
        catalog.namespaces = namespaces;
        for e in catalog.entries() {
            if let Entry::Unusable(u) = e {
                errors.push(format!("{u} ({})", u.reason));
            }
        }
        if errors.is_empty() {
            Ok(catalog)
        } else {
            Err(errors)
        }
    }

    /// Builds a catalog from read objects (and their read errors), resolving conflicts
    /// within a scope: among the `ClusterSidecar`s, and among the `Sidecar`s of one
    /// namespace, two usable objects that add the same container name (or the same volume
    /// name with different contents) can't both be used: the older one (by creation time,
    /// then name) keeps it and the other becomes unusable with reason `ConflictingNames`.
    pub fn build(objects: impl IntoIterator<Item = Result<SidecarObject, Box<Unusable>>>) -> Self {
        let mut c = Catalog::default();
        let mut scopes: BTreeMap<Option<String>, Vec<SidecarObject>> = BTreeMap::new();
        for o in objects {
            match o {
                Ok(o) => scopes
                    .entry(o.reference.namespace.clone())
                    .or_default()
                    .push(o),
                Err(u) => c.insert(Entry::Unusable(Arc::new(*u))),
            }
        }
        for (_, mut objs) in scopes {
            objs.sort_by(|a, b| {
                (a.created.is_none(), &a.created, &a.reference.name).cmp(&(
                    b.created.is_none(),
                    &b.created,
                    &b.reference.name,
                ))
            });
            let mut containers: BTreeMap<String, String> = BTreeMap::new();
            let mut volumes: BTreeMap<String, (String, Value)> = BTreeMap::new();
            for o in objs {
                if let Some(message) = conflict(&o, &containers, &volumes) {
                    c.insert(Entry::Unusable(Arc::new(Unusable {
                        reference: o.reference.clone(),
                        generation: o.generation,
                        uid: o.uid.clone(),
                        revision: o.revision.clone(),
                        reason: REASON_CONFLICT,
                        message,
                        pod_selector: o.pod_selector.clone(),
                        namespace_selector: o.namespace_selector.clone(),
                    })));
                    continue;
                }
                let who = o.reference.to_string();
                for n in o.container_names() {
                    containers.insert(n.to_string(), who.clone());
                }
                for v in &o.volumes {
                    let n = v.get("name").and_then(Value::as_str).unwrap_or_default();
                    volumes.insert(n.to_string(), (who.clone(), v.clone()));
                }
                c.insert(Entry::Usable(Arc::new(o)));
            }
        }
        c
    }

    /// Adds or replaces one entry (no conflict check: [`Catalog::build`] does those).
    pub fn insert(&mut self, e: Entry) {
        let r = e.reference().clone();
        match (r.kind, r.namespace) {
            (Kind::Sidecar, Some(ns)) => {
                self.namespaced.entry(ns).or_default().insert(r.name, e);
            }
            _ => {
                self.cluster.insert(r.name, e);
            }
        }
    }

    /// Every entry, `ClusterSidecar`s first, then `Sidecar`s by namespace and name.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.cluster
            .values()
            .chain(self.namespaced.values().flat_map(BTreeMap::values))
    }

    /// True when there are no objects at all.
    pub fn is_empty(&self) -> bool {
        self.cluster.is_empty() && self.namespaced.values().all(BTreeMap::is_empty)
    }

    /// The objects a pod gets (see the module docs for the rules). `meta` is the pod's
    /// `metadata`; `namespace` the pod's namespace; `reserved` the container and volume
    /// names already taken by sidecars from the config file.
    pub fn select(
        &self,
        meta: Option<&Value>,
        namespace: &str,
        reserved: &BTreeSet<String>,
    ) -> Result<Selection, SelectError> {
        let labels = labels_of(meta);
        let requested = requested_names(meta)?;
        let mut sel = Selection::default();
        if labels.get(names::INJECT_LABEL).map(String::as_str) == Some("disabled") {
            return Ok(sel);
        }
        let ns_labels = self.namespaces.get(namespace);
        let local = self.namespaced.get(namespace);
        for r in &requested {
            if !local.is_some_and(|l| l.contains_key(r)) && !self.cluster.contains_key(r) {
                return Err(SelectError(format!(
                    "requests sidecar {r:?} ({}), but there is no Sidecar {namespace}/{r} and no \
                     ClusterSidecar {r}; create it, or fix the annotation",
                    names::SIDECARS_ANNOTATION
                )));
            }
        }
        // Every name once: the namespace's Sidecars, then the ClusterSidecars they don't
        // shadow (no set of names is built: this runs for every pod).
        let shadowed = |name: &String| local.is_some_and(|l| l.contains_key(name));
        let candidates = local
            .into_iter()
            .flat_map(BTreeMap::iter)
            .chain(self.cluster.iter().filter(|(n, _)| !shadowed(n)));
        let mut chosen: Vec<Selected> = Vec::new();
        for (name, entry) in candidates {
            let is_requested = requested.contains(name);
            let (pod_sel, ns_sel, cluster) = match entry {
                Entry::Usable(o) => (
                    &o.pod_selector,
                    &o.namespace_selector,
                    o.reference.kind == Kind::ClusterSidecar,
                ),
                Entry::Unusable(u) => (
                    &u.pod_selector,
                    &u.namespace_selector,
                    u.reference.kind == Kind::ClusterSidecar,
                ),
            };
            let in_scope = !cluster
                || match ns_sel {
                    None => true,
                    Some(s) => match ns_labels {
                        Some(l) => s.matches(l),
                        None => s.matches(&BTreeMap::new()),
                    },
                };
            let by_selector = pod_sel.as_ref().is_some_and(|s| s.matches(&labels));
            if !in_scope {
                if is_requested {
                    return Err(SelectError(format!(
                        "requests sidecar {name:?}, but ClusterSidecar {name} does not apply to \
                         namespace {namespace:?} (its namespaceSelector does not select it{})",
                        if ns_labels.is_none() {
                            "; the namespace's labels are unknown"
                        } else {
                            ""
                        }
                    )));
                }
                continue;
            }
            if !(is_requested || by_selector) {
                continue;
            }
            match entry {
                Entry::Usable(o) => chosen.push(Selected {
                    object: o.clone(),
                    requested: is_requested,
                }),
                Entry::Unusable(u) if is_requested => {
                    return Err(SelectError(format!(
                        "requests sidecar {name:?}, but {u} ({}; fix the object, or remove it \
                         from {})",
                        u.reason,
                        names::SIDECARS_ANNOTATION
                    )));
                }
                Entry::Unusable(u) => sel.warnings.push(format!(
                    "{} selects this pod but was skipped: {} ({})",
                    u.reference, u.message, u.reason
                )),
            }
        }
        // Claim names: namespaced objects first, then by (order, name).
        chosen.sort_by(|a, b| {
            let key = |s: &Selected| {
                (
                    s.object.reference.kind,
                    s.object.order,
                    s.object.reference.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        let mut containers: BTreeMap<String, String> = reserved
            .iter()
            .map(|n| (n.clone(), "a sidecar of the configuration".to_string()))
            .collect();
        let mut volumes: BTreeMap<String, (String, Value)> = BTreeMap::new();
        for s in chosen {
            let o = &s.object;
            if let Some(problem) = conflict(o, &containers, &volumes) {
                if s.requested {
                    return Err(SelectError(format!(
                        "requests sidecar {:?}, but {}: {problem}",
                        o.reference.name, o.reference
                    )));
                }
                sel.warnings.push(format!(
                    "{} was skipped for this pod: {problem}",
                    o.reference
                ));
                continue;
            }
            let who = o.reference.to_string();
            for n in o.container_names() {
                containers.insert(n.to_string(), who.clone());
            }
            for v in &o.volumes {
                let n = v.get("name").and_then(Value::as_str).unwrap_or_default();
                volumes.insert(n.to_string(), (who.clone(), v.clone()));
            }
            sel.objects.push(s);
        }
        sel.objects.sort_by(|a, b| {
            (
                a.object.order,
                &a.object.reference.name,
                a.object.reference.kind,
            )
                .cmp(&(
                    b.object.order,
                    &b.object.reference.name,
                    b.object.reference.kind,
                ))
        });
        Ok(sel)
    }
}

/// Why `o` can't be used beside what already claimed these names, or `None`.
fn conflict(
    o: &SidecarObject,
    containers: &BTreeMap<String, String>,
    volumes: &BTreeMap<String, (String, Value)>,
) -> Option<String> {
    for n in o.container_names() {
        if let Some(other) = containers.get(n) {
            return Some(format!(
                "container name {n:?} is already used by {other}; rename one of them"
            ));
        }
    }
    for v in &o.volumes {
        let n = v.get("name").and_then(Value::as_str).unwrap_or_default();
        if let Some((other, existing)) = volumes.get(n)
            && existing != v
        {
            return Some(format!(
                "volume {n:?} is also defined, differently, by {other}; rename one of them or \
                 make them identical"
            ));
        }
    }
    None
}
