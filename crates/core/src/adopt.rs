//! Adopting the sidecars a workload already has: a second kind of plan over the same
//! pod facts and compatibility model as [`crate::inject`].
//!
//! [`recognise`] finds legacy sidecars among the regular containers (a configurable
//! list of well-known sidecars by name or image, and the `tandem.dev/adopt` pod
//! annotation); [`crate::plan::decide`] says whether every node the pod can land on
//! runs native sidecars (exactly as `auto` does for `inject`); and the patch, built
//! with the same [`PatchBuilder`], *moves* each sidecar verbatim (RFC 6902 `move`) into
//! `initContainers` with `restartPolicy: Always`, right after the init containers it
//! depends on (`istio-init`, `linkerd-init`, `vault-agent-init`, …). Where the nodes
//! can't run it, the sidecar stays a regular container and the reason is given.
//! [`workarounds`] reports what only made sense for a legacy sidecar and, when asked,
//! strips it.
//!
//! Adopt never touches tandem's own injected sidecars (those named in
//! `tandem.dev/status`), never adds node affinity, and is idempotent: a moved sidecar is
//! no longer a regular container, so a second run finds nothing to move.

pub mod inventory;
pub mod recognise;
pub mod workarounds;

use json_patch::PatchOperation;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::catalog::Catalog;
use crate::compat::ApiServerBehaviour;
use crate::config::Config;
use crate::inject::{InjectError, NamespaceOptIn};
use crate::knowledge::ClusterKnowledge;
use crate::mode::{Mode, Placement};
use crate::names;
use crate::patch::{PatchBuilder, Path};
use crate::plan::{self, Decision, ModeSource, PodFacts};
use crate::workload::{self, PodLocation};

pub use recognise::{AdoptConfig, KnownSidecar, Recognition};
pub use workarounds::{Workaround, WorkaroundKind};

/// Fields that the API server allows on an init container only with
/// `restartPolicy: Always` (and rejects where it drops that field).
const NATIVE_ONLY_FIELDS: [&str; 4] = [
    "startupProbe",
    "livenessProbe",
    "readinessProbe",
    "lifecycle",
];

/// The adopt engine: configuration and cluster knowledge, applied to pods.
#[derive(Debug, Clone, Copy)]
pub struct Adopter<'a> {
    /// The recognition list (`adopt:`), `insertAfter` and `autoFallback`.
    pub config: &'a Config,
    /// What is known about the cluster (the same knowledge as `auto`).
    pub knowledge: &'a ClusterKnowledge,
    /// Move recognised sidecars even where the nodes aren't known to run native
    /// sidecars (`--force-native`); the risks are still said.
    pub force_native: bool,
    /// Remove the workarounds that can be removed exactly (`--strip-workarounds`).
    pub strip_workarounds: bool,
    /// Sidecar objects (`Sidecar`, `ClusterSidecar`): a regular container named like one
    /// of their containers is recognised as that object's sidecar.
    pub objects: Option<&'a Catalog>,
    /// The pods' namespace when their metadata doesn't say (a review's namespace).
    pub namespace: Option<&'a str>,
}

/// What happened to one pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum AdoptOutcome {
    /// Left as it was, without looking further.
    Skipped {
        /// Why, in a sentence.
        reason: String,
    },
    /// Legacy sidecars were recognised; see what was done with them.
    Planned(Adoption),
}

/// The plan for one pod's legacy sidecars.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adoption {
    /// The recognised legacy sidecars and why each was recognised.
    pub recognised: Vec<Recognition>,
    /// Whether the pod's nodes run native sidecars (the same decision as `auto`).
    pub decision: Decision,
    /// Sidecars moved to native sidecars.
    pub moved: Vec<String>,
    /// Sidecars left as regular containers.
    pub left: Vec<String>,
    /// Workarounds found, and whether each was stripped.
    pub workarounds: Vec<Workaround>,
    /// What else changed or should be known (probes kept or dropped, the default
    /// container, readiness).
    pub notes: Vec<String>,
    /// The patch, relative to the document root.
    #[serde(skip)]
    pub patch: Vec<PatchOperation>,
}

/// What happened to every pod of one document.
#[derive(Debug, Clone, PartialEq)]
pub struct AdoptDocument {
    /// Each pod found, with its outcome.
    pub pods: Vec<(PodLocation, AdoptOutcome)>,
    /// The patch for the whole document.
    pub patch: Vec<PatchOperation>,
}

impl Adopter<'_> {
    /// Adopts the sidecars of every pod of a document (a workload, a Pod, a List, or
    /// anything else, which passes untouched).
    pub fn adopt_document(&self, doc: &Value) -> Result<AdoptDocument, InjectError> {
        let mut pods = Vec::new();
        let mut patch = Vec::new();
        for loc in workload::find_pods(doc)? {
            let outcome = self.adopt_at(doc, &loc, NamespaceOptIn::Unknown)?;
            if let AdoptOutcome::Planned(a) = &outcome {
                patch.extend(a.patch.iter().cloned());
            }
            pods.push((loc, outcome));
        }
        Ok(AdoptDocument { pods, patch })
    }

    /// Adopts one Pod object (the webhook's entry): the patch is relative to the pod.
    /// `ns` is the opt-in of the pod's namespace to adopt mode (label
    /// `tandem.dev/adopt: enabled`).
    pub fn adopt_pod(&self, pod: &Value, ns: NamespaceOptIn) -> Result<AdoptOutcome, InjectError> {
        let locs = workload::find_pods(pod)?;
        match locs.as_slice() {
            [loc] if loc.kind == "Pod" => self.adopt_at(pod, loc, ns),
            _ => Err(InjectError {
                object: workload::describe(pod),
                field: "kind".into(),
                problem: "is not a Pod".into(),
            }),
        }
    }

    /// Adopts the sidecars of the pod at `loc` inside `doc`.
    pub fn adopt_at(
        &self,
        doc: &Value,
        loc: &PodLocation,
        ns: NamespaceOptIn,
    ) -> Result<AdoptOutcome, InjectError> {
        let pod_value = loc.base.get(doc).unwrap_or(&Value::Null);
        let meta = pod_value.get("metadata").filter(|m| m.is_object());
        let spec = pod_value.get("spec").unwrap_or(&Value::Null);
        let err = |rel: &[&str], problem: String| InjectError {
            object: loc.object.clone(),
            field: loc.base.join(rel.iter()).to_string(),
            problem,
        };
        let annotation = |k: &str| {
            meta.and_then(|m| m.get("annotations"))
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
        };
        if annotation(names::MIRROR_POD_ANNOTATION).is_some() {
            return Ok(skip("mirror pod of a static pod"));
        }
        let label = meta
            .and_then(|m| m.get("labels"))
            .and_then(|l| l.get(names::ADOPT_LABEL))
            .and_then(Value::as_str);
        match (label, ns) {
            (Some("disabled"), _) => {
                return Ok(skip(&format!(
                    "pod opted out ({}=disabled)",
                    names::ADOPT_LABEL
                )));
            }
            (Some("enabled"), _) => {}
            (Some(other), _) => {
                return Err(err(
                    &["metadata", "labels", names::ADOPT_LABEL],
                    format!("{other:?} is not a valid value: use enabled or disabled"),
                ));
            }
            (None, NamespaceOptIn::NotEnabled) => {
                return Ok(skip(&format!(
                    "namespace not opted in to adopt (label it {}=enabled, or label the pod)",
                    names::ADOPT_LABEL
                )));
            }
            (None, _) => {}
        }
        let mut exclude = injected_by_tandem(annotation(names::STATUS_ANNOTATION));
        exclude.push(names::SHIM_INSTALL_CONTAINER.to_string());
        let namespace = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .or(self.namespace);
        let known = match self.objects {
            Some(catalog) => self
                .config
                .adopt
                .known_with(recognise::from_objects(catalog, namespace)),
            None => self.config.adopt.known(),
        };
        let found =
            recognise::recognise(spec, annotation(names::ADOPT_ANNOTATION), &known, &exclude);
        let mut notes: Vec<String> = found
            .unknown_names
            .iter()
            .filter(|n| !is_native_sidecar_named(spec, n))
            .map(|n| {
                format!(
                    "{} names {n:?}, which is not a regular container of this pod",
                    names::ADOPT_ANNOTATION
                )
            })
            .collect();
        if found.sidecars.is_empty() {
            return Ok(skip(if annotation(names::ADOPTED_ANNOTATION).is_some() {
                "already adopted (no legacy sidecar left)"
            } else {
                "no legacy sidecars recognised"
            }));
        }
        let regular = list(spec, "containers");
        let apps = regular
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .filter(|n| {
                !exclude.iter().any(|e| e == n) && !found.sidecars.iter().any(|r| r.container == *n)
            })
            .count();
        if apps == 0 {
            return Ok(skip(
                "every regular container is recognised as a sidecar: a pod needs at least one \
                 app container, so none is moved (name the sidecars with the tandem.dev/adopt \
                 annotation, or narrow the recognition list)",
            ));
        }

        let (requested, source) = if self.force_native {
            (Mode::Native, ModeSource::Override)
        } else {
            (Mode::Auto, ModeSource::Config)
        };
        let mut decision = plan::decide(
            requested,
            source,
            PodFacts {
                spec,
                universal_ok: Err("adopt moves a sidecar or leaves it; it makes none universal"),
            },
            self.knowledge,
            self.config,
        );
        if decision.placement != Placement::Native {
            if decision.placement == Placement::Affinity {
                decision.reasons.push(
                    "adopt adds no node affinity: the sidecars stay regular containers".into(),
                );
            }
            decision.placement = Placement::Legacy;
        }
        let moving = decision.placement == Placement::Native;
        let sidecar_names: Vec<&str> = found
            .sidecars
            .iter()
            .map(|r| r.container.as_str())
            .collect();
        let mut found_workarounds = workarounds::detect(spec, meta, &sidecar_names);

        let mut b = Scratch {
            pod: pod_value.clone(),
            base: loc.base.clone(),
            ops: PatchBuilder::default(),
            object: loc.object.clone(),
        };
        // Strip first: removals inside containers leave the containers' indices alone.
        let mut stripped = Vec::new();
        for w in &mut found_workarounds {
            match (&w.strip, moving, self.strip_workarounds) {
                (Err(why), _, _) => w.kept_because = Some(why.clone()),
                (Ok(_), false, _) => {
                    w.kept_because = Some(format!(
                        "{} {} regular, so it is still needed",
                        sidecar_names.join(", "),
                        stay(sidecar_names.len())
                    ));
                }
                (Ok(_), true, false) => {
                    w.kept_because = Some("pass --strip-workarounds to remove it".into());
                }
                (Ok(paths), true, true) => {
                    for p in paths {
                        b.remove(p)?;
                    }
                    w.stripped = true;
                    stripped.push(if w.container.is_empty() {
                        w.kind.as_str().to_string()
                    } else {
                        format!("{} on {}", w.kind.as_str(), w.container)
                    });
                }
            }
        }

        let api = self.knowledge.apiserver_behaviour();
        let mut moved = Vec::new();
        if moving {
            if !b.spec().get("initContainers").is_some_and(Value::is_array) {
                b.add(&["spec", "initContainers"], json!([]))?;
            }
            for r in &found.sidecars {
                let from =
                    index_of(list(b.spec(), "containers"), &r.container).ok_or_else(|| {
                        err(
                            &["spec", "containers"],
                            format!("container {:?} vanished", r.container),
                        )
                    })?;
                let sidecar = &list(b.spec(), "containers")[from];
                let at = self.insert_at(
                    list(b.spec(), "initContainers"),
                    sidecar,
                    &r.after,
                    &exclude,
                );
                let from_p = Path::root().join(["spec", "containers"]).join([from]);
                let to_p = Path::root().join(["spec", "initContainers"]).join([at]);
                b.move_to(&from_p, &to_p)?;
                let c = b.spec()["initContainers"][at].clone();
                match c.get("restartPolicy").and_then(Value::as_str) {
                    Some("Always") => {}
                    other => {
                        if let Some(old) = other {
                            notes.push(format!(
                                "{}: restartPolicy {old:?} replaced by \"Always\"",
                                r.container
                            ));
                        }
                        b.add_at(&to_p.join(["restartPolicy"]), json!("Always"))?;
                    }
                }
                let present: Vec<&str> = NATIVE_ONLY_FIELDS
                    .into_iter()
                    .filter(|k| c.get(*k).is_some_and(|v| !v.is_null()))
                    .collect();
                if !present.is_empty() {
                    let fields = present.join(", ");
                    match api.behaviour {
                        ApiServerBehaviour::KeepsField => notes.push(format!(
                            "{}: {fields} kept: allowed on restartable init containers ({})",
                            r.container, api.why
                        )),
                        ApiServerBehaviour::Unknown => decision.warnings.push(format!(
                            "{}: {fields} kept: allowed where the API server keeps \
                             restartPolicy (1.28+ with the gate on); one that drops it rejects \
                             the pod (give --apiserver-version to check)",
                            r.container
                        )),
                        ApiServerBehaviour::DropsField => {
                            for k in &present {
                                b.remove(&to_p.join([*k]))?;
                            }
                            notes.push(format!(
                                "{}: {fields} dropped: {}, and an init container without \
                                 restartPolicy may not have them",
                                r.container, api.why
                            ));
                        }
                    }
                }
                let later: Vec<&str> = list(b.spec(), "initContainers")
                    .iter()
                    .skip(at + 1)
                    .filter(|i| i.get("restartPolicy").and_then(Value::as_str) != Some("Always"))
                    .filter_map(|i| i.get("name").and_then(Value::as_str))
                    .collect();
                if !later.is_empty() {
                    notes.push(format!(
                        "{}: now starts before init containers {} (which can use it) and runs \
                         beside them, so its resource requests add to theirs in the pod's \
                         effective request",
                        r.container,
                        later.join(", ")
                    ));
                }
                if c.get("readinessProbe").is_some_and(|v| !v.is_null()) {
                    notes.push(format!(
                        "{}: its readinessProbe still gates the pod's Ready condition \
                         (restartable init containers count toward ContainersReady)",
                        r.container
                    ));
                }
                if c.get("startupProbe").is_some_and(|v| !v.is_null()) {
                    notes.push(format!(
                        "{}: its startupProbe now holds later init containers and the app until \
                         it passes",
                        r.container
                    ));
                }
                moved.push(r.container.clone());
            }
            b.update_main_containers(&exclude, &moved, &mut notes)?;
            let first_before = regular
                .first()
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str);
            b.fix_default_container(
                meta,
                &moved,
                &exclude,
                &sidecar_names,
                first_before,
                &mut notes,
            )?;
            let record = json!({"mode": "native", "sidecars": moved, "stripped": stripped});
            b.annotate(
                meta,
                names::ADOPTED_ANNOTATION,
                Value::from(record.to_string()),
            )?;
        }
        let left = if moving {
            Vec::new()
        } else {
            sidecar_names.iter().map(|s| (*s).to_string()).collect()
        };
        if !moving
            && spec
                .get("restartPolicy")
                .and_then(Value::as_str)
                .is_some_and(|p| p != "Always")
        {
            decision.warnings.push(format!(
                "{} {} regular in a pod with restartPolicy {}: keep the workarounds that let it \
                 complete",
                sidecar_names.join(", "),
                stay(sidecar_names.len()),
                spec.get("restartPolicy")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ));
        }
        Ok(AdoptOutcome::Planned(Adoption {
            recognised: found.sidecars,
            decision,
            moved,
            left,
            workarounds: found_workarounds,
            notes,
            patch: b.ops.finish(),
        }))
    }

    /// Where a moved sidecar goes: right after the last init container it depends on
    /// (its own `after`, the config's `insertAfter`, and any init container that writes
    /// to a volume the sidecar mounts, such as the one that copies kubexit's binary or
    /// renders Vault's secrets), then past the native sidecars and tandem's own init
    /// containers that follow, so that `adopt` and `inject` give the same order
    /// whichever runs first.
    fn insert_at(
        &self,
        init: &[Value],
        sidecar: &Value,
        after: &[String],
        tandem: &[String],
    ) -> usize {
        let mounts: Vec<&str> = list(sidecar, "volumeMounts")
            .iter()
            .filter_map(|m| m.get("name").and_then(Value::as_str))
            .collect();
        let mut at = init
            .iter()
            .rposition(|c| {
                let named = c.get("name").and_then(Value::as_str).is_some_and(|n| {
                    after.iter().any(|a| a == n) || self.config.insert_after.iter().any(|a| a == n)
                });
                let writes_shared = c.get("restartPolicy").and_then(Value::as_str)
                    != Some("Always")
                    && list(c, "volumeMounts").iter().any(|m| {
                        m.get("readOnly").and_then(Value::as_bool) != Some(true)
                            && m.get("name")
                                .and_then(Value::as_str)
                                .is_some_and(|n| mounts.contains(&n))
                    });
                named || writes_shared
            })
            .map_or(0, |i| i + 1);
        while let Some(c) = init.get(at) {
            let native = c.get("restartPolicy").and_then(Value::as_str) == Some("Always");
            let ours = c
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| tandem.iter().any(|t| t == n));
            if !(native || ours) {
                break;
            }
            at += 1;
        }
        at
    }
}

fn stay(n: usize) -> &'static str {
    if n == 1 { "stays" } else { "stay" }
}

fn skip(reason: &str) -> AdoptOutcome {
    AdoptOutcome::Skipped {
        reason: reason.to_string(),
    }
}

fn list<'v>(spec: &'v Value, key: &str) -> &'v [Value] {
    spec.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn index_of(items: &[Value], name: &str) -> Option<usize> {
    items
        .iter()
        .position(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

fn is_native_sidecar_named(spec: &Value, name: &str) -> bool {
    list(spec, "initContainers").iter().any(|c| {
        c.get("name").and_then(Value::as_str) == Some(name)
            && c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
    })
}

/// The containers tandem injected, from `tandem.dev/status` (and their universal
/// regular copies): adopt leaves them to `inject`.
fn injected_by_tandem(status: Option<&str>) -> Vec<String> {
    let Some(v) = status.and_then(|s| serde_json::from_str::<Value>(s).ok()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for n in v
        .get("sidecars")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(n) = n.as_str() {
            out.push(n.to_string());
            out.push(format!("{n}{}", names::LEGACY_COPY_SUFFIX));
        }
    }
    out
}

/// The pod being changed: every operation is applied to this copy as it is recorded,
/// so that each index is computed against the state the previous operations left.
struct Scratch {
    pod: Value,
    base: Path,
    ops: PatchBuilder,
    object: String,
}

impl Scratch {
    fn spec(&self) -> &Value {
        self.pod.get("spec").unwrap_or(&Value::Null)
    }

    fn apply(&mut self, op: PatchOperation) -> Result<(), InjectError> {
        crate::patch::apply(&mut self.pod, std::slice::from_ref(&op)).map_err(|e| InjectError {
            object: self.object.clone(),
            field: self.base.to_string(),
            problem: format!("internal error: adopt's patch does not apply ({e})"),
        })
    }

    fn add(&mut self, rel: &[&str], value: Value) -> Result<(), InjectError> {
        self.add_at(&Path::root().join(rel.iter()), value)
    }

    fn add_at(&mut self, rel: &Path, value: Value) -> Result<(), InjectError> {
        let mut local = PatchBuilder::default();
        local.add(rel, value.clone());
        for op in local.finish() {
            self.apply(op)?;
        }
        self.ops.add(&self.base.join(rel.tokens()), value);
        Ok(())
    }

    fn move_to(&mut self, from: &Path, to: &Path) -> Result<(), InjectError> {
        let mut local = PatchBuilder::default();
        local.move_to(from, to);
        for op in local.finish() {
            self.apply(op)?;
        }
        self.ops
            .move_to(&self.base.join(from.tokens()), &self.base.join(to.tokens()));
        Ok(())
    }

    fn remove(&mut self, rel: &Path) -> Result<(), InjectError> {
        let mut local = PatchBuilder::default();
        local.remove(rel);
        for op in local.finish() {
            self.apply(op)?;
        }
        self.ops.remove(&self.base.join(rel.tokens()));
        Ok(())
    }

    /// `kubectl logs` must still mean the app: an explicit default container that names
    /// a moved sidecar is pointed at the first app container; without the annotation,
    /// kubectl's default (the first regular container) only gets better.
    fn fix_default_container(
        &mut self,
        meta: Option<&Value>,
        moved: &[String],
        tandem: &[String],
        sidecars: &[&str],
        first_before: Option<&str>,
        notes: &mut Vec<String>,
    ) -> Result<(), InjectError> {
        let current = meta
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(names::DEFAULT_CONTAINER_ANNOTATION))
            .and_then(Value::as_str);
        let app = list(self.spec(), "containers")
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .find(|n| {
                !tandem.iter().any(|t| t == n)
                    && !n.ends_with(names::LEGACY_COPY_SUFFIX)
                    && !sidecars.contains(n)
            })
            .map(str::to_string);
        match current {
            Some(named) if moved.iter().any(|m| m == named) => {
                if let Some(app) = app {
                    self.add(
                        &[
                            "metadata",
                            "annotations",
                            names::DEFAULT_CONTAINER_ANNOTATION,
                        ],
                        Value::from(app.as_str()),
                    )?;
                    notes.push(format!(
                        "{} named {named:?}, now a native sidecar; it now names {app:?}",
                        names::DEFAULT_CONTAINER_ANNOTATION
                    ));
                }
            }
            Some(_) => {}
            None => {
                if let (Some(first), Some(app)) = (first_before, app)
                    && moved.iter().any(|m| m == first)
                {
                    notes.push(format!(
                        "kubectl's default container is now {app:?} (it was the sidecar \
                         {first:?}, first among the containers)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// tandem-shim's regular copies wait for the containers listed in
    /// `TANDEM_MAIN_CONTAINERS`; a sidecar moved out of `containers` must leave that list.
    fn update_main_containers(
        &mut self,
        tandem: &[String],
        moved: &[String],
        notes: &mut Vec<String>,
    ) -> Result<(), InjectError> {
        let mut changes = Vec::new();
        for (i, c) in list(self.spec(), "containers").iter().enumerate() {
            let Some(name) = c.get("name").and_then(Value::as_str) else {
                continue;
            };
            if !tandem.iter().any(|t| t == name) {
                continue;
            }
            for (k, e) in list(c, "env").iter().enumerate() {
                if e.get("name").and_then(Value::as_str) != Some(names::env::MAIN_CONTAINERS) {
                    continue;
                }
                let Some(value) = e.get("value").and_then(Value::as_str) else {
                    continue;
                };
                let kept: Vec<&str> = value
                    .split(',')
                    .filter(|n| !moved.iter().any(|m| m == n))
                    .collect();
                if kept.len() != value.split(',').count() {
                    changes.push((i, k, name.to_string(), kept.join(",")));
                }
            }
        }
        for (i, k, name, value) in changes {
            let p = Path::root().join(["spec", "containers"]).join([i]).join([
                "env".to_string(),
                k.to_string(),
                "value".to_string(),
            ]);
            self.add_at(&p, Value::from(value))?;
            notes.push(format!(
                "{name}: {} no longer lists the moved sidecars",
                names::env::MAIN_CONTAINERS
            ));
        }
        Ok(())
    }

    /// Sets one annotation, creating `metadata` and `annotations` as needed.
    fn annotate(
        &mut self,
        meta: Option<&Value>,
        key: &str,
        value: Value,
    ) -> Result<(), InjectError> {
        let has_annotations = meta
            .and_then(|m| m.get("annotations"))
            .is_some_and(Value::is_object)
            || self
                .pod
                .pointer("/metadata/annotations")
                .is_some_and(Value::is_object);
        if has_annotations {
            return self.add(&["metadata", "annotations", key], value);
        }
        let mut m = Map::new();
        m.insert(key.to_string(), value);
        if self.pod.get("metadata").is_some_and(Value::is_object) {
            self.add(&["metadata", "annotations"], Value::Object(m))
        } else {
            self.add(&["metadata"], json!({"annotations": m}))
        }
    }
}
