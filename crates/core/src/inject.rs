//! The injection engine: one pod in, one JSON Patch out.
//!
//! `tandem inject` and the webhook share every step here: find the pod, decide
//! whether and how to inject (opt-in, idempotency, mode), build the sidecars for
//! the chosen placement, and express all of it as `add` operations on the raw
//! object, so that fields tandem doesn't know survive untouched.

use std::collections::{BTreeSet, HashMap};

use json_patch::PatchOperation;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::catalog::{Catalog, SidecarObject};
use crate::config::{Config, HostNetworkPorts, ShimDelivery, duration_text, sidecar_name};
use crate::knowledge::ClusterKnowledge;
use crate::mode::{Mode, Placement};
use crate::names::{self, env};
use crate::patch::{PatchBuilder, Path};
use crate::plan::{self, Decision, ModeSource, PodFacts};
use crate::status::{InjectedObject, PodStatus};
use crate::workload::{self, PodLocation, ShapeError};

/// Something about a pod that stops injection: names the object and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", crate::workload::join_parts(object, field, problem))]
pub struct InjectError {
    /// `Kind namespace/name` of the object.
    pub object: String,
    /// The field at fault, as users write it (`spec.template.spec.containers[1].name`).
    pub field: String,
    /// What is wrong and, where it helps, what to do.
    pub problem: String,
}

impl From<ShapeError> for InjectError {
    fn from(e: ShapeError) -> Self {
        Self {
            object: e.object,
            field: e.field,
            problem: e.problem,
        }
    }
}

/// What happened to one pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum PodOutcome {
    /// Left as it was.
    Skipped {
        /// Why, in a sentence.
        reason: String,
    },
    /// Sidecars were added.
    Injected(Injection),
}

/// The sidecars added to one pod and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Injection {
    /// How they were placed and why.
    pub decision: Decision,
    /// Names of the injected sidecars (from the config, then from objects, in order).
    pub sidecars: Vec<String>,
    /// The sidecar objects injected, with their revisions (empty without objects).
    pub objects: Vec<InjectedObject>,
    /// The patch, relative to the document root.
    #[serde(skip)]
    pub patch: Vec<PatchOperation>,
}

/// What happened to every pod of one document.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentOutcome {
    /// Each pod found, with its outcome.
    pub pods: Vec<(PodLocation, PodOutcome)>,
    /// The patch for the whole document (all pods' patches, in order).
    pub patch: Vec<PatchOperation>,
}

/// The injection engine: configuration and cluster knowledge, applied to pods.
#[derive(Debug, Clone, Copy)]
pub struct Injector<'a> {
    /// Sidecars and defaults.
    pub config: &'a Config,
    /// What is known about the cluster (for `auto`).
    pub knowledge: &'a ClusterKnowledge,
    /// A mode that replaces the config's default (`--mode`); a pod's annotation still wins.
    pub mode_override: Option<Mode>,
}

/// The opt-in state of the pod's namespace, where the caller knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceOptIn {
    /// Not known (offline `inject`): pods are injected unless they opt out.
    Unknown,
    /// The namespace carries `tandem.dev/inject: enabled`.
    Enabled,
    /// It doesn't: only pods labelled `tandem.dev/inject: enabled` are injected.
    NotEnabled,
}

impl<'a> Injector<'a> {
    /// Injects every pod of a document (a workload, a Pod, a List, or anything else,
    /// which passes untouched).
    pub fn inject_document(&self, doc: &Value) -> Result<DocumentOutcome, InjectError> {
        self.inject_document_with(doc, None)
    }

    /// [`Injector::inject_document`] with sidecar objects (`tandem inject --sidecars`):
    /// each pod also gets the objects `catalog` selects for it (pods without a namespace
    /// count as in `default`).
    pub fn inject_document_with(
        &self,
        doc: &Value,
        catalog: Option<&Catalog>,
    ) -> Result<DocumentOutcome, InjectError> {
        let mut pods = Vec::new();
        let mut patch = Vec::new();
        for loc in workload::find_pods_with(doc, &self.config.workload_kinds)? {
            let outcome = self.inject_at_with(doc, &loc, NamespaceOptIn::Unknown, catalog, None)?;
            if let PodOutcome::Injected(inj) = &outcome {
                patch.extend(inj.patch.iter().cloned());
            }
            pods.push((loc, outcome));
        }
        Ok(DocumentOutcome { pods, patch })
    }

    /// Injects one Pod object (the webhook's entry): the patch is relative to the pod.
    pub fn inject_pod(&self, pod: &Value, ns: NamespaceOptIn) -> Result<PodOutcome, InjectError> {
        self.inject_pod_with(pod, ns, None, None)
    }

    /// [`Injector::inject_pod`] with sidecar objects (the webhook's entry when it watches
    /// them). `namespace` is the request's namespace (a pod being created may not carry
    /// `metadata.namespace`).
    pub fn inject_pod_with(
        &self,
        pod: &Value,
        ns: NamespaceOptIn,
        namespace: Option<&str>,
        catalog: Option<&Catalog>,
    ) -> Result<PodOutcome, InjectError> {
        let locs = workload::find_pods(pod)?;
        match locs.as_slice() {
            [loc] if loc.kind == "Pod" => self.inject_at_with(pod, loc, ns, catalog, namespace),
            _ => Err(InjectError {
                object: workload::describe(pod),
                field: "kind".into(),
                problem: "is not a Pod".into(),
            }),
        }
    }

    /// Injects the pod at `loc` inside `doc`.
    pub fn inject_at(
        &self,
        doc: &Value,
        loc: &PodLocation,
        ns: NamespaceOptIn,
    ) -> Result<PodOutcome, InjectError> {
        self.inject_at_with(doc, loc, ns, None, None)
    }

    /// Injects the pod at `loc` inside `doc`: the config's sidecars and the objects that
    /// `catalog` selects for it, in one patch. `namespace` overrides the pod's own.
    pub fn inject_at_with(
        &self,
        doc: &Value,
        loc: &PodLocation,
        ns: NamespaceOptIn,
        catalog: Option<&Catalog>,
        namespace: Option<&str>,
    ) -> Result<PodOutcome, InjectError> {
        let pod = PodView::new(doc, loc);
        if let Some(reason) = pod.skip_reason(ns)? {
            return Ok(PodOutcome::Skipped { reason });
        }
        let annotation_path =
            || Path::root().join(["metadata", "annotations", names::SIDECARS_ANNOTATION]);
        let selection = match catalog {
            Some(catalog) => {
                let namespace = namespace
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .or_else(|| loc.namespace.clone())
                    .or_else(|| {
                        pod.meta
                            .and_then(|m| m.get("namespace"))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| "default".into());
                let reserved: BTreeSet<String> = self
                    .config
                    .sidecars
                    .iter()
                    .map(|s| sidecar_name(s).to_string())
                    .collect();
                catalog
                    .select(pod.meta, &namespace, &reserved)
                    .map_err(|e| pod.error(&annotation_path(), e.0))?
            }
            None => {
                let requested = crate::catalog::requested_names(pod.meta)
                    .map_err(|e| pod.error(&annotation_path(), e.0))?;
                if !requested.is_empty() {
                    return Err(pod.error(
                        &annotation_path(),
                        format!(
                            "requests sidecar objects {requested:?}, but none are known here (give                              `tandem inject` the objects with --sidecars FILE; the webhook reads                              them from the cluster)"
                        ),
                    ));
                }
                Default::default()
            }
        };
        if self.config.sidecars.is_empty() && selection.objects.is_empty() {
            let reason = if catalog.is_some() {
                "no sidecars: the configuration has none and no Sidecar or ClusterSidecar selects                  this pod"
            } else {
                "the configuration has no sidecars"
            };
            let mut reason = reason.to_string();
            for w in &selection.warnings {
                reason.push_str("; ");
                reason.push_str(w);
            }
            return Ok(PodOutcome::Skipped { reason });
        }
        let (requested, source) = match pod.mode_annotation()? {
            Some(m) => (m, ModeSource::Annotation),
            None => match self.mode_override {
                Some(m) => (m, ModeSource::Override),
                None => (self.config.mode, ModeSource::Config),
            },
        };
        // One group per source of sidecars: the config's, then each object in order.
        let mut groups: Vec<Group<'_>> = Vec::new();
        if !self.config.sidecars.is_empty() {
            groups.push(Group {
                object: None,
                sidecars: &self.config.sidecars,
                init: &[],
                volumes: &self.config.volumes,
                decision: 0,
            });
        }
        let mut asks: Vec<(Mode, ModeSource)> = vec![(requested, source)];
        for sel in &selection.objects {
            let o: &SidecarObject = &sel.object;
            let ask = match (source, o.mode) {
                (ModeSource::Annotation, _) | (_, None) => (requested, source),
                (_, Some(m)) => (m, ModeSource::Object),
            };
            let decision = match asks.iter().position(|a| *a == ask) {
                Some(i) => i,
                None => {
                    asks.push(ask);
                    asks.len() - 1
                }
            };
            groups.push(Group {
                object: Some(o),
                sidecars: &o.containers,
                init: &o.init_containers,
                volumes: &o.volumes,
                decision,
            });
        }
        let mut decisions = Vec::new();
        for (i, (mode, src)) in asks.iter().enumerate() {
            let no_command = groups
                .iter()
                .filter(|g| g.decision == i)
                .flat_map(|g| g.sidecars.iter())
                .find(|s| !has_command(s))
                .map(|s| {
                    format!(
                        "sidecar {:?} has no command for tandem-shim to wrap",
                        sidecar_name(s)
                    )
                });
            let decision = plan::decide(
                *mode,
                *src,
                PodFacts {
                    spec: pod.spec,
                    universal_ok: no_command.as_deref().map_or(Ok(()), Err),
                },
                self.knowledge,
                self.config,
            );
            if decision.placement == Placement::Universal
                && let Some(problem) = no_command
            {
                return Err(pod.error(
                    &Path::root().join(["spec"]),
                    format!(
                        "mode universal: {problem}; give it a `command` in the configuration, or \
                         use another mode"
                    ),
                ));
            }
            decisions.push(decision);
        }
        let (patch, warnings, sidecars, objects) =
            Build::new(self.config, &pod, &groups, &decisions).run()?;
        // The pod's decision: the one its own mode asked for, unless no sidecar used it.
        let main = if groups.iter().any(|g| g.decision == 0) {
            0
        } else {
            groups.first().map_or(0, |g| g.decision)
        };
        let mut decision = decisions[main].clone();
        for g in &groups {
            if let Some(o) = g.object
                && g.decision != main
            {
                let d = &decisions[g.decision];
                decision
                    .reasons
                    .push(format!("{}: {}", o.reference, d.reasons.join("; ")));
            }
        }
        for (i, d) in decisions.iter().enumerate() {
            if i != main && groups.iter().any(|g| g.decision == i) {
                for w in &d.warnings {
                    if !decision.warnings.contains(w) {
                        decision.warnings.push(w.clone());
                    }
                }
            }
        }
        decision.warnings.extend(selection.warnings);
        decision.warnings.extend(warnings);
        Ok(PodOutcome::Injected(Injection {
            sidecars,
            objects,
            decision,
            patch,
        }))
    }
}

/// One source of sidecars for a pod: the config file's, or one sidecar object.
struct Group<'a> {
    /// The object (`None`: the config file).
    object: Option<&'a SidecarObject>,
    sidecars: &'a [Value],
    /// Plain init containers that run just before the sidecars.
    init: &'a [Value],
    volumes: &'a [Value],
    /// Index of this group's placement decision.
    decision: usize,
}

fn has_command(sidecar: &Value) -> bool {
    sidecar
        .get("command")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty())
}

/// A pod (or template) inside a document, with the paths that patches use.
struct PodView<'a> {
    object: String,
    /// Path of the pod object within the document.
    base: Path,
    meta: Option<&'a Value>,
    spec: &'a Value,
}

impl<'a> PodView<'a> {
    fn new(doc: &'a Value, loc: &PodLocation) -> Self {
        let pod = loc.base.get(doc).unwrap_or(&Value::Null);
        Self {
            object: loc.object.clone(),
            base: loc.base.clone(),
            meta: pod.get("metadata").filter(|m| m.is_object()),
            spec: pod.get("spec").unwrap_or(&Value::Null),
        }
    }

    fn error(&self, rel: &Path, problem: String) -> InjectError {
        InjectError {
            object: self.object.clone(),
            field: self.base.join(rel.tokens()).to_string(),
            problem,
        }
    }

    fn map(&self, key: &str) -> Option<&'a Map<String, Value>> {
        self.meta?.get(key)?.as_object()
    }

    fn annotation(&self, key: &str) -> Option<&'a str> {
        self.map("annotations")?.get(key)?.as_str()
    }

    fn skip_reason(&self, ns: NamespaceOptIn) -> Result<Option<String>, InjectError> {
        if self.annotation(names::STATUS_ANNOTATION).is_some() {
            return Ok(Some(format!(
                "already injected ({} is present)",
                names::STATUS_ANNOTATION
            )));
        }
        if self.annotation(names::MIRROR_POD_ANNOTATION).is_some() {
            return Ok(Some("mirror pod of a static pod".into()));
        }
        let label = self
            .map("labels")
            .and_then(|l| l.get(names::INJECT_LABEL))
            .and_then(Value::as_str);
        match label {
            Some("disabled") => {
                return Ok(Some(format!(
                    "pod opted out ({}=disabled)",
                    names::INJECT_LABEL
                )));
            }
            Some("enabled") => return Ok(None),
            Some(other) => {
                return Err(self.error(
                    &Path::root().join(["metadata", "labels", names::INJECT_LABEL]),
                    format!("{other:?} is not a valid value: use enabled or disabled"),
                ));
            }
            None => {}
        }
        Ok(match ns {
            NamespaceOptIn::NotEnabled => Some(format!(
                "namespace not opted in (label it {}=enabled, or label the pod)",
                names::INJECT_LABEL
            )),
            _ => None,
        })
    }

    fn mode_annotation(&self) -> Result<Option<Mode>, InjectError> {
        match self.annotation(names::MODE_ANNOTATION) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|e: crate::mode::ModeError| {
                self.error(
                    &Path::root().join(["metadata", "annotations", names::MODE_ANNOTATION]),
                    e.to_string(),
                )
            }),
        }
    }

    fn list(&self, key: &str) -> &'a [Value] {
        self.spec
            .get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// Builds the patch for one pod and one decision.
struct Build<'a> {
    config: &'a Config,
    pod: &'a PodView<'a>,
    groups: &'a [Group<'a>],
    decisions: &'a [Decision],
    ops: PatchBuilder,
    /// Names already used by the pod's containers, with the field that uses them.
    taken: HashMap<String, Path>,
    /// What the user should know about how the sidecars were adapted.
    warnings: Vec<String>,
    /// More than one shim-wrapped sidecar: each mounts its own part of the state
    /// volume (`subPath: <sidecar name>`), so that each handshake has its own state.
    state_per_sidecar: bool,
}

/// The injected sidecar names, and the objects with their revisions.
type Built = (
    Vec<PatchOperation>,
    Vec<String>,
    Vec<String>,
    Vec<InjectedObject>,
);

impl<'a> Build<'a> {
    fn new(
        config: &'a Config,
        pod: &'a PodView<'a>,
        groups: &'a [Group<'a>],
        decisions: &'a [Decision],
    ) -> Self {
        let mut taken = HashMap::new();
        for key in ["initContainers", "containers", "ephemeralContainers"] {
            for (i, c) in pod.list(key).iter().enumerate() {
                if let Some(name) = c.get("name").and_then(Value::as_str) {
                    taken.insert(
                        name.to_string(),
                        Path::root().join(["spec", key]).join([i]).join(["name"]),
                    );
                }
            }
        }
        Self {
            config,
            pod,
            groups,
            decisions,
            ops: PatchBuilder::default(),
            taken,
            warnings: Vec::new(),
            state_per_sidecar: false,
        }
    }

    fn spec_path(&self, key: &str) -> Path {
        self.pod.base.join(["spec", key])
    }

    fn claim_name(&mut self, name: &str) -> Result<(), InjectError> {
        if let Some(field) = self.taken.get(name) {
            return Err(self.pod.error(
                field,
                format!(
                    "container name {name:?} is already taken, so sidecar {name:?} can't be \
                     added; rename one of them"
                ),
            ));
        }
        self.taken.insert(name.to_string(), Path::root());
        Ok(())
    }

    /// Legacy sidecars of this pod run under tandem-shim so that a Job completes.
    fn legacy_wrap(&self) -> bool {
        self.config.legacy.job_completion && self.pod_restart_policy() != "Always"
    }

    fn run(mut self) -> Result<Built, InjectError> {
        let groups = self.groups;
        let decisions = self.decisions;
        let mut init_new = Vec::new();
        let mut regular_new = Vec::new();
        let mut volumes_new: Vec<Value> = Vec::new();
        for g in groups {
            for v in g.volumes {
                let name = v.get("name").and_then(Value::as_str);
                match volumes_new
                    .iter()
                    .find(|n| n.get("name").and_then(Value::as_str) == name)
                {
                    Some(existing) if existing == v => {}
                    Some(_) => {
                        return Err(self.pod.error(
                            &Path::root().join(["spec", "volumes"]),
                            format!(
                                "two sources of sidecars define volume {:?} differently; rename \
                                 one of them",
                                name.unwrap_or_default()
                            ),
                        ));
                    }
                    None => volumes_new.push(v.clone()),
                }
            }
        }
        // Opt-in: in a Job, wrap legacy sidecars in tandem-shim so that they stop once the
        // main containers have finished, and the Job completes.
        let wrap = self.legacy_wrap();
        let placement = |g: &Group<'_>| decisions[g.decision].placement;
        let wrapped: usize = groups
            .iter()
            .map(|g| match placement(g) {
                Placement::Universal => g.sidecars.len(),
                Placement::Legacy if wrap => g.sidecars.iter().filter(|s| has_command(s)).count(),
                _ => 0,
            })
            .sum();
        self.state_per_sidecar = wrapped > 1;
        let shim = if wrapped > 0 {
            Some(self.add_shim(&mut init_new, &mut volumes_new)?)
        } else {
            None
        };
        let mut sidecars = Vec::new();
        let mut objects = Vec::new();
        for g in groups {
            let decision = &decisions[g.decision];
            for c in g.init {
                self.claim_name(sidecar_name(c))?;
                init_new.push(c.clone());
            }
            for s in g.sidecars {
                let name = sidecar_name(s);
                sidecars.push(name.to_string());
                self.claim_name(name)?;
                match (decision.placement, &shim) {
                    (Placement::Native | Placement::Affinity, _) => {
                        init_new.push(native_sidecar(s))
                    }
                    (Placement::Legacy, Some(shim)) if wrap && has_command(s) => {
                        let c = self.regular_copy(s, shim, name, true, decision);
                        regular_new.push(c);
                    }
                    (Placement::Legacy, _) => {
                        if self.pod_restart_policy() != "Always" {
                            self.warnings.push(format!(
                                "legacy sidecar {name:?} in a pod with restartPolicy {}: it \
                                 keeps running after the main containers finish, so the Job \
                                 never completes ({})",
                                self.pod_restart_policy(),
                                if self.config.legacy.job_completion {
                                    "it has no command for tandem-shim to wrap"
                                } else {
                                    "legacy.jobCompletion is off"
                                }
                            ));
                        }
                        regular_new.push(legacy_sidecar(s));
                    }
                    (Placement::Universal, shim) => {
                        let shim = shim.clone().unwrap_or_default();
                        let legacy_name = format!("{name}{}", names::LEGACY_COPY_SUFFIX);
                        self.claim_name(&legacy_name)?;
                        init_new.push(self.universal_native_copy(s, &shim, decision));
                        let regular = self.regular_copy(s, &shim, &legacy_name, false, decision);
                        regular_new.push(regular);
                    }
                }
            }
            if let Some(o) = g.object {
                objects.push(InjectedObject {
                    kind: o.reference.kind,
                    name: o.reference.name.clone(),
                    revision: o.revision.clone(),
                    mode: decision.placement,
                });
            }
        }
        if self.pod.spec.get("hostNetwork") == Some(&Value::Bool(true)) {
            self.host_network_ports(&mut init_new, &mut regular_new)?;
        }
        self.check_volumes(&volumes_new)?;

        // Native sidecars (and the shim installer) go right after the configured
        // init containers of other injectors, else first.
        let init = self.pod.list("initContainers");
        let at = init
            .iter()
            .rposition(|c| {
                c.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| self.config.insert_after.iter().any(|a| a == n))
            })
            .map_or(0, |i| i + 1);
        let p = self.spec_path("initContainers");
        self.ops
            .insert_all(&p, self.pod.spec.get("initContainers"), at, init_new);
        let p = self.spec_path("containers");
        self.ops
            .insert_all(&p, self.pod.spec.get("containers"), 0, regular_new.clone());
        let p = self.spec_path("volumes");
        let n = self.pod.list("volumes").len();
        self.ops
            .insert_all(&p, self.pod.spec.get("volumes"), n, volumes_new);
        if groups
            .iter()
            .any(|g| decisions[g.decision].placement == Placement::Affinity)
        {
            self.require_capable_node();
        }
        let main = groups.first().map_or(0, |g| g.decision);
        let main = if groups.iter().any(|g| g.decision == 0) {
            0
        } else {
            main
        };
        let mut status = PodStatus::new(decisions[main].placement, sidecars.clone());
        status.objects = objects.clone();
        if groups.iter().any(|g| g.object.is_none()) {
            status.config_revision = self.config.sidecars_revision();
        }
        self.annotate(!regular_new.is_empty(), &status);
        Ok((self.ops.finish(), self.warnings, sidecars, objects))
    }

    fn check_volumes(&self, new: &[Value]) -> Result<(), InjectError> {
        for (i, v) in self.pod.list("volumes").iter().enumerate() {
            let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
            if new
                .iter()
                .any(|n| n.get("name").and_then(Value::as_str) == Some(name))
            {
                return Err(self.pod.error(
                    &Path::root()
                        .join(["spec", "volumes"])
                        .join([i])
                        .join(["name"]),
                    format!(
                        "volume name {name:?} is already taken, so tandem's volume {name:?} can't \
                         be added; rename one of them"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Adds what every shim-wrapped pod needs (the state volume and, with delivery
    /// `copy`, the installer and its volume); returns the shim's path in the containers.
    fn add_shim(
        &mut self,
        init_new: &mut Vec<Value>,
        volumes_new: &mut Vec<Value>,
    ) -> Result<String, InjectError> {
        let shim = self.shim_path();
        if self.config.shim.delivery == ShimDelivery::Copy {
            self.claim_name(names::SHIM_INSTALL_CONTAINER)?;
            init_new.push(self.shim_installer(&shim));
            volumes_new.push(json!({"name": names::SHIM_VOLUME, "emptyDir": {}}));
        }
        volumes_new.push(json!({
            "name": names::STATE_VOLUME,
            "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}
        }));
        Ok(shim)
    }

    fn pod_restart_policy(&self) -> &'a str {
        self.pod
            .spec
            .get("restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always")
    }

    fn shim_path(&self) -> String {
        match self.config.shim.delivery {
            ShimDelivery::Copy => format!("{}/tandem-shim", names::SHIM_DIR),
            ShimDelivery::Image => self.config.shim.path.clone(),
        }
    }

    /// How long the shim gives CMD after SIGTERM: just under the pod's
    /// `terminationGracePeriodSeconds` (default 30), so that CMD is stopped by the shim
    /// (a clean exit code in the logs) before the kubelet's own SIGKILL.
    fn grace_period(&self) -> String {
        let pod = self
            .pod
            .spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(30);
        format!("{}s", pod.saturating_sub(2).max(1))
    }

    fn shim_installer(&self, shim: &str) -> Value {
        json!({
            "name": names::SHIM_INSTALL_CONTAINER,
            "image": self.config.shim.image,
            "command": ["/tandem-shim", "install", shim],
            "volumeMounts": [{"name": names::SHIM_VOLUME, "mountPath": names::SHIM_DIR}],
            "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}, "limits": {"memory": "16Mi"}},
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "capabilities": {"drop": ["ALL"]}
            }
        })
    }

    /// The mounts both universal copies share.
    fn shared_mounts(&self, sidecar: &str) -> Vec<Value> {
        let mut state = json!({
            "name": names::STATE_VOLUME,
            "mountPath": self.config.universal.state_dir
        });
        if self.state_per_sidecar {
            state["subPath"] = Value::from(sidecar);
        }
        let mut mounts = vec![state];
        if self.config.shim.delivery == ShimDelivery::Copy {
            mounts.push(
                json!({"name": names::SHIM_VOLUME, "mountPath": names::SHIM_DIR, "readOnly": true}),
            );
        }
        mounts
    }

    fn universal_native_copy(&self, sidecar: &Value, shim: &str, decision: &Decision) -> Value {
        let mut c = native_sidecar(sidecar);
        wrap_command(&mut c, shim, "native");
        push_all(
            &mut c,
            "env",
            vec![
                env_var(env::STATE_DIR, &self.config.universal.state_dir),
                env_var(env::GRACE_PERIOD, &self.grace_period()),
            ],
        );
        push_all(
            &mut c,
            "volumeMounts",
            self.shared_mounts(sidecar_name(sidecar)),
        );
        let obj = as_object(&mut c);
        if !decision.native_field_kept {
            // Where the API server may drop restartPolicy, a probe or hook on this init
            // container would make the whole create fail.
            for key in [
                "startupProbe",
                "livenessProbe",
                "readinessProbe",
                "lifecycle",
            ] {
                obj.remove(key);
            }
        } else if decision.startup_probe {
            // The sidecar's own startupProbe can only pass once CMD runs, which the shim
            // allows only in state native-running; else the shim's probe says just that.
            if !obj.contains_key("startupProbe") {
                obj.insert(
                    "startupProbe".into(),
                    json!({"exec": {"command": [shim, "probe"]}, "periodSeconds": 1, "failureThreshold": 60}),
                );
            }
        } else {
            obj.remove("startupProbe");
        }
        c
    }

    /// The regular copy: `tandem-shim legacy` around the sidecar. `solo` when there is
    /// no native copy (legacy mode for Jobs): it acts at once and keeps its ports.
    fn regular_copy(
        &mut self,
        sidecar: &Value,
        shim: &str,
        name: &str,
        solo: bool,
        decision: &Decision,
    ) -> Value {
        let mut c = legacy_sidecar(sidecar);
        wrap_command(&mut c, shim, "legacy");
        let restart = self.pod_restart_policy();
        let main: Vec<&str> = self
            .pod
            .list("containers")
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .collect();
        let mut vars = vec![
            env_var(env::STATE_DIR, &self.config.universal.state_dir),
            env_var(env::POD_RESTART_POLICY, restart),
            env_var(env::GRACE_PERIOD, &self.grace_period()),
        ];
        if solo {
            vars.push(env_var(env::SETTLE_TIMEOUT, "0s"));
        } else if !decision.startup_probe {
            vars.push(env_var(
                env::SETTLE_TIMEOUT,
                &duration_text::format(self.config.universal.settle_timeout),
            ));
        }
        vars.push(json!({"name": env::POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}));
        vars.push(json!({"name": env::POD_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}));
        vars.push(env_var(env::MAIN_CONTAINERS, &main.join(",")));
        push_all(&mut c, "env", vars);
        push_all(
            &mut c,
            "volumeMounts",
            self.shared_mounts(sidecar_name(sidecar)),
        );
        let obj = as_object(&mut c);
        obj.insert("name".into(), Value::from(name));
        // The kubelet starts regular containers one by one and waits for each postStart
        // hook: `tandem-shim wait` holds the app until one copy acts (and passes the
        // sidecar's own exec startup check, if it has one).
        let mut wait = vec![Value::from(shim), Value::from("wait")];
        if let Some(Value::Array(check)) = sidecar.pointer("/startupProbe/exec/command") {
            wait.push(Value::from("--"));
            wait.extend(check.iter().cloned());
        }
        let lifecycle = obj.entry("lifecycle").or_insert_with(|| json!({}));
        if !lifecycle.is_object() {
            *lifecycle = json!({});
        }
        if lifecycle.get("postStart").is_some() {
            self.warnings.push(format!(
                "sidecar {:?}: its own postStart hook stays on the native copy; the regular copy \
                 runs tandem-shim wait instead",
                sidecar_name(sidecar)
            ));
        }
        lifecycle["postStart"] = json!({"exec": {"command": wait}});
        // The idle copy can't answer exec probes meant for the acting one; network probes
        // reach the acting copy through the pod's shared network namespace.
        for key in ["startupProbe", "livenessProbe", "readinessProbe"] {
            if obj.get(key).is_some_and(|p| p.get("exec").is_some()) {
                obj.remove(key);
            }
        }
        // Ports are declared once, on the native copy (the API server warns about every
        // duplicate); named ports in this copy's probes and hooks become numbers. Host
        // ports stay on both: an old kubelet maps host ports of regular containers only.
        if solo {
            return c;
        }
        if let Some(Value::Array(ports)) = obj.remove("ports") {
            let host: Vec<Value> = ports
                .iter()
                .filter(|p| p.get("hostPort").is_some_and(|h| !h.is_null()))
                .cloned()
                .collect();
            if !host.is_empty() {
                obj.insert("ports".into(), Value::Array(host));
            }
            number_named_ports(obj, &ports);
        }
        c
    }

    /// In a `hostNetwork: true` pod the API server makes every `containerPort` a
    /// `hostPort`, and the scheduler counts the host ports of regular and restartable
    /// init containers: a sidecar port injected into two host-network workloads makes
    /// one of them unschedulable on every node. `hostNetworkPorts` says what to do.
    fn host_network_ports(
        &mut self,
        init_new: &mut [Value],
        regular_new: &mut [Value],
    ) -> Result<(), InjectError> {
        let mut affected: Vec<(String, Vec<String>)> = Vec::new();
        for c in init_new.iter().chain(regular_new.iter()) {
            let Some(ports) = c.get("ports").and_then(Value::as_array) else {
                continue;
            };
            if ports.is_empty() {
                continue;
            }
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            let list: Vec<String> = ports
                .iter()
                .map(|p| {
                    let number = p.get("containerPort").map(ToString::to_string);
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    format!("{}/{proto}", number.unwrap_or_default())
                })
                .collect();
            affected.push((name.to_string(), list));
        }
        if affected.is_empty() {
            return Ok(());
        }
        let what = affected
            .iter()
            .map(|(n, ps)| format!("{n:?} ({})", ps.join(", ")))
            .collect::<Vec<_>>()
            .join(", ");
        let why = "in a hostNetwork pod the API server makes every containerPort a hostPort \
                   and the scheduler counts them, so another host-network workload with the same \
                   sidecar could not be scheduled on the same node";
        match self.config.host_network_ports {
            HostNetworkPorts::Refuse => {
                return Err(self.pod.error(
                    &Path::root().join(["spec", "hostNetwork"]),
                    format!(
                        "sidecar ports of {what}: {why} (hostNetworkPorts: refuse); set \
                         hostNetworkPorts: drop, or opt the pod out with the label \
                         tandem.dev/inject: disabled"
                    ),
                ));
            }
            HostNetworkPorts::Keep => {
                self.warnings.push(format!(
                    "hostNetwork pod: sidecar ports of {what} kept as configured \
                     (hostNetworkPorts: keep): {why}"
                ));
            }
            HostNetworkPorts::Drop => {
                for c in init_new.iter_mut().chain(regular_new.iter_mut()) {
                    let obj = as_object(c);
                    let Some(Value::Array(ports)) = obj.remove("ports") else {
                        continue;
                    };
                    // Probes and hooks that named a dropped port get its number.
                    number_named_ports(obj, &ports);
                }
                self.warnings.push(format!(
                    "hostNetwork pod: sidecar ports of {what} left out (hostNetworkPorts: drop): \
                     {why}. The sidecar still listens in the node's network namespace, so two \
                     such pods on one node must not use the same port"
                ));
            }
        }
        Ok(())
    }

    /// ANDs `tandem.dev/native-sidecars In [true]` into every required node selector
    /// term (terms are ORed: a new term would loosen the pod), creating what is missing.
    fn require_capable_node(&mut self) {
        let req = json!({"key": names::NODE_LABEL, "operator": "In", "values": ["true"]});
        let term = json!({"matchExpressions": [req.clone()]});
        let spec = self.pod.spec;
        let base = self.pod.base.join(["spec"]);
        let nonnull = |v: Option<&'a Value>| v.filter(|v| !v.is_null());
        let affinity = nonnull(spec.get("affinity"));
        let node_affinity = nonnull(affinity.and_then(|a| a.get("nodeAffinity")));
        let required = nonnull(
            node_affinity.and_then(|n| n.get("requiredDuringSchedulingIgnoredDuringExecution")),
        );
        let terms = required
            .and_then(|r| r.get("nodeSelectorTerms"))
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty());
        let required_value = json!({"nodeSelectorTerms": [term.clone()]});
        match (affinity, node_affinity, required, terms) {
            (None, ..) => self.ops.add(
                &base.join(["affinity"]),
                json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required_value}}),
            ),
            (Some(_), None, ..) => self.ops.add(
                &base.join(["affinity", "nodeAffinity"]),
                json!({"requiredDuringSchedulingIgnoredDuringExecution": required_value}),
            ),
            (Some(_), Some(_), None, _) => self.ops.add(
                &base.join(["affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution"]),
                required_value,
            ),
            (Some(_), Some(_), Some(_), None) => self.ops.add(
                &base.join([
                    "affinity",
                    "nodeAffinity",
                    "requiredDuringSchedulingIgnoredDuringExecution",
                    "nodeSelectorTerms",
                ]),
                json!([term]),
            ),
            (Some(_), Some(_), Some(_), Some(terms)) => {
                let terms_path = base.join([
                    "affinity",
                    "nodeAffinity",
                    "requiredDuringSchedulingIgnoredDuringExecution",
                    "nodeSelectorTerms",
                ]);
                for (i, t) in terms.iter().enumerate() {
                    let exprs = t.get("matchExpressions").and_then(Value::as_array);
                    if exprs.is_some_and(|es| es.contains(&req)) {
                        continue;
                    }
                    let p = terms_path.join([i.to_string(), "matchExpressions".to_string()]);
                    self.ops.insert_all(&p, t.get("matchExpressions"), exprs.map_or(0, Vec::len), vec![req.clone()]);
                }
            }
        }
    }

    fn annotate(&mut self, regular_added: bool, status: &PodStatus) {
        let mut new = vec![(names::STATUS_ANNOTATION, Value::from(status.to_text()))];
        // A sidecar put first among the containers would become `kubectl logs`' default.
        if regular_added
            && self
                .pod
                .annotation(names::DEFAULT_CONTAINER_ANNOTATION)
                .is_none()
            && let Some(first) = self
                .pod
                .list("containers")
                .first()
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
        {
            new.push((names::DEFAULT_CONTAINER_ANNOTATION, Value::from(first)));
        }
        let meta_path = self.pod.base.join(["metadata"]);
        let annotations = self.pod.map("annotations");
        match (self.pod.meta, annotations) {
            (Some(_), Some(_)) => {
                for (k, v) in new {
                    self.ops.add(&meta_path.join(["annotations", k]), v);
                }
            }
            (meta, _) => {
                let map: Map<String, Value> =
                    new.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                self.ops
                    .set_member(&meta_path, meta, "annotations", Value::Object(map));
            }
        }
    }
}

/// The sidecar as a native sidecar: an init container with `restartPolicy: Always`.
fn native_sidecar(sidecar: &Value) -> Value {
    let mut c = sidecar.clone();
    as_object(&mut c).insert("restartPolicy".into(), Value::from("Always"));
    c
}

/// The sidecar as a regular container (no init-only fields).
fn legacy_sidecar(sidecar: &Value) -> Value {
    let mut c = sidecar.clone();
    as_object(&mut c).remove("restartPolicy");
    c
}

/// `command: [shim, role, "--", original command…]`; `args` stay as they are.
fn wrap_command(c: &mut Value, shim: &str, role: &str) {
    let obj = as_object(c);
    let mut command = vec![Value::from(shim), Value::from(role), Value::from("--")];
    if let Some(Value::Array(orig)) = obj.get("command") {
        command.extend(orig.iter().cloned());
    }
    obj.insert("command".into(), Value::Array(command));
}

/// In a container's probes and lifecycle hooks, replaces the names of `ports` (whose
/// declarations the container no longer carries) with their numbers.
fn number_named_ports(container: &mut Map<String, Value>, ports: &[Value]) {
    let named: HashMap<String, Value> = ports
        .iter()
        .filter_map(|p| {
            Some((
                p.get("name")?.as_str()?.to_string(),
                p.get("containerPort")?.clone(),
            ))
        })
        .collect();
    for key in [
        "startupProbe",
        "livenessProbe",
        "readinessProbe",
        "lifecycle",
    ] {
        if let Some(v) = container.get_mut(key) {
            resolve_named_ports(v, &named);
        }
    }
}

/// Replaces `port: <name>` in probe and hook handlers (`httpGet`, `tcpSocket`) with
/// the number that `named` gives for it.
fn resolve_named_ports(v: &mut Value, named: &HashMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if k == "port"
                    && let Some(number) = child.as_str().and_then(|n| named.get(n))
                {
                    *child = number.clone();
                } else {
                    resolve_named_ports(child, named);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| resolve_named_ports(i, named)),
        _ => {}
    }
}

fn env_var(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

fn push_all(c: &mut Value, key: &str, items: Vec<Value>) {
    let obj = as_object(c);
    match obj.get_mut(key) {
        Some(Value::Array(list)) => list.extend(items),
        _ => {
            obj.insert(key.into(), Value::Array(items));
        }
    }
}

/// Sidecars are validated to be objects when the config is read.
fn as_object(c: &mut Value) -> &mut Map<String, Value> {
    if !c.is_object() {
        *c = Value::Object(Map::new());
    }
    match c {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}
