//! The admission request path without I/O: AdmissionReview bytes in, AdmissionReview bytes out.
//!
//! One pod's path reads as one straight line: bytes → review envelope → raw Pod JSON →
//! [`tandem_core::Injector::inject_pod`] → JSON Patch → AdmissionResponse. The pod is kept
//! as raw JSON all the way (never decoded into a typed struct), so the patch is computed
//! on exactly what the API server sent, and fields tandem doesn't know survive.
//!
//! The envelope is read with a lean struct of our own rather than
//! `kube::core::admission::AdmissionReview<DynamicObject>`: kube's type decodes the
//! object's metadata into a typed `ObjectMeta` (dropping metadata fields it doesn't
//! know) and writes the patch as a JSON array of numbers. The wire format is the same
//! (`admission.k8s.io/v1`); tests check both ways against kube's types.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tandem_core::inject::Injection;
use tandem_core::names::{INJECT_LABEL, MIRROR_POD_ANNOTATION, STATUS_ANNOTATION};
use tandem_core::status::InjectionStatus;
use tandem_core::verify::{self, Action, Finding, StripPolicy};
use tandem_core::{
    ClusterKnowledge, Config, Injector, Mode, NamespaceOptIn, Placement, PodOutcome,
};

/// Kubernetes truncates admission warnings longer than this.
pub const MAX_WARNING_CHARS: usize = 256;

/// How the JSON Patch is written into the AdmissionResponse's `patch` field (`[]byte` in Go).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PatchEncoding {
    /// A base64 string, as Go's `encoding/json` writes `[]byte` (what every Go webhook sends).
    #[default]
    Base64,
    /// A JSON array of numbers, as kube-core's `AdmissionResponse` writes it (about 3×
    /// larger); Go's decoder accepts it too.
    Array,
}

/// Everything one review needs besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Sidecars and defaults.
    pub config: &'a Config,
    /// What is known about the cluster.
    pub knowledge: &'a ClusterKnowledge,
    /// Whether `knowledge` comes from a synced cache (false: `auto` used the safe mode).
    pub synced: bool,
    /// `--mode`, when given.
    pub mode_override: Option<Mode>,
    /// The namespace's opt-in state, as the webhook registration implies it.
    pub namespace: NamespaceOptIn,
    /// How to write the patch.
    pub encoding: PatchEncoding,
}

/// What happened to one review, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sidecars were injected with this placement.
    Injected(Placement),
    /// A Pod that was left as it was (opted out, already injected, …).
    Skipped,
    /// Injection failed: the request was denied with the error.
    Denied,
    /// At reinvocation, the pod had lost what tandem injected (another webhook stripped
    /// it); tandem re-added it (policy `repair`).
    Repaired(Placement),
    /// Same, and tandem moved the sidecars to the regular containers (policy `legacy`).
    FellBack(Placement),
    /// Same, and tandem denied the create (policy `deny`, or nothing left to repair).
    StripDenied(Placement),
    /// Not a Pod CREATE (another kind, a subresource, another operation): allowed unchanged.
    Ignored,
    /// The body was not an AdmissionReview: HTTP 400.
    Invalid,
    /// Adopt mode moved legacy sidecars to native sidecars.
    Adopted,
}

impl Outcome {
    /// The `outcome` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Injected(_) => "injected",
            Outcome::Skipped => "skipped",
            Outcome::Denied => "denied",
            Outcome::Repaired(_) => "repaired",
            Outcome::FellBack(_) => "fell_back",
            Outcome::StripDenied(_) => "denied_stripped",
            Outcome::Ignored => "ignored",
            Outcome::Invalid => "invalid",
            Outcome::Adopted => "adopted",
        }
    }

    /// The `mode` metric label: the placement for injected pods (for stripped ones, the
    /// placement their status annotation records), `none` otherwise.
    pub fn mode_label(self) -> &'static str {
        match self {
            Outcome::Injected(p)
            | Outcome::Repaired(p)
            | Outcome::FellBack(p)
            | Outcome::StripDenied(p) => p.as_str(),
            _ => "none",
        }
    }
}

/// A Kubernetes Event to record about the pod's owner (or the pod), off the admission path.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRequest {
    /// The object the event is about: the pod's controlling owner, else the pod.
    pub regarding: k8s_openapi::api::core::v1::ObjectReference,
    /// `Normal` or `Warning`.
    pub warning: bool,
    /// `PatchedAtAdmission`, `Skipped`, `InjectionFailed`, `SidecarRepaired`,
    /// `SidecarFellBack` or `SidecarStripped`.
    pub reason: &'static str,
    /// The human-readable detail.
    pub note: String,
}

/// The answer to one HTTP request on `/mutate`.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status: 200 for every AdmissionReview, 400 for a body that isn't one.
    pub status: u16,
    /// The response body (an AdmissionReview, or a plain-text error for 400).
    pub body: Vec<u8>,
    /// What happened.
    pub outcome: Outcome,
    /// `namespace/name` of the pod (`generateName*` when it has no name yet), for logs.
    pub pod: String,
    /// Why, in a sentence (skip reason, placement reasons, error), for logs.
    pub detail: String,
    /// The event to record, if any (never for dry-run requests).
    pub event: Option<EventRequest>,
    /// The request's `dryRun`.
    pub dry_run: bool,
    /// Size in bytes of the JSON Patch before encoding (0 when there is none).
    pub patch_bytes: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<RequestIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Gvk {
    #[serde(default)]
    group: String,
    #[serde(default)]
    kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn {
    uid: String,
    #[serde(default)]
    kind: Gvk,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default)]
    object: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut {
    uid: String,
    allowed: bool,
    /// Always present (empty when allowed): Go reads it as optional, kube-rs requires it.
    status: StatusOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<PatchField>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum PatchField {
    Base64(String),
    Array(Vec<u8>),
}

#[derive(Serialize, Default)]
struct StatusOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    #[serde(skip_serializing_if = "str::is_empty")]
    status: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
}

/// The sidecar objects admission chooses from, when the webhook watches them.
#[derive(Debug, Clone, Copy)]
pub struct Objects<'a> {
    /// Every known object and the namespaces' labels.
    pub catalog: &'a tandem_core::catalog::Catalog,
    /// False until the watch has listed everything once.
    pub synced: bool,
}

/// Answers one `/mutate` request body. Never panics on any input (the request path is
/// fuzzed); a body that is not an AdmissionReview gets HTTP 400.
pub fn review(body: &[u8], ctx: &Context<'_>) -> Answer {
    review_with(body, ctx, None)
}

/// [`review`] with sidecar objects: each pod also gets the objects that select it.
pub fn review_with(body: &[u8], ctx: &Context<'_>, objects: Option<Objects<'_>>) -> Answer {
    review_as(body, ctx, objects, false)
}

/// Answers one `/adopt` request body: adopt mode ([`crate::adopt`]) instead of injection;
/// the same envelope handling. With `objects`, a container named like one of a sidecar
/// object's containers is recognised as that object's sidecar.
pub fn review_adopt(body: &[u8], ctx: &Context<'_>, objects: Option<Objects<'_>>) -> Answer {
    review_as(body, ctx, objects, true)
}

fn review_as(body: &[u8], ctx: &Context<'_>, objects: Option<Objects<'_>>, adopt: bool) -> Answer {
    let parsed: ReviewIn = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return invalid(format!("not an AdmissionReview: {e}")),
    };
    if parsed.kind.as_deref() != Some("AdmissionReview") {
        return invalid("not an AdmissionReview: kind must be AdmissionReview".into());
    }
    let api_version = match parsed.api_version.as_deref() {
        Some(v @ ("admission.k8s.io/v1" | "admission.k8s.io/v1beta1")) => v,
        other => {
            return invalid(format!(
                "unsupported AdmissionReview apiVersion {other:?}: expected admission.k8s.io/v1"
            ));
        }
    };
    let Some(req) = parsed.request else {
        return invalid("AdmissionReview has no request".into());
    };
    let dry_run = req.dry_run.unwrap_or(false);
    let pod = pod_name(&req);
    let mut resp = ResponseOut {
        uid: req.uid.clone(),
        allowed: true,
        status: StatusOut::default(),
        patch_type: None,
        patch: None,
        warnings: Vec::new(),
        audit_annotations: BTreeMap::new(),
    };
    let mut answer = Answer {
        status: 200,
        body: Vec::new(),
        outcome: Outcome::Ignored,
        pod,
        detail: String::new(),
        event: None,
        dry_run,
        patch_bytes: 0,
    };

    let is_pod = req.kind.group.is_empty() && req.kind.kind == "Pod";
    let operation = req.operation.as_deref().unwrap_or("");
    let object = req.object.as_ref().filter(|o| o.is_object());
    match (
        is_pod,
        req.sub_resource.as_deref().filter(|s| !s.is_empty()),
        operation,
        object,
    ) {
        (false, _, _, _) => {
            let kind = if req.kind.group.is_empty() {
                req.kind.kind.clone()
            } else {
                format!("{}.{}", req.kind.kind, req.kind.group)
            };
            answer.detail = format!("{kind} is not a Pod: allowed unchanged");
            resp.warnings.push(format!(
                "tandem: only Pods are mutated; this {kind} was allowed unchanged"
            ));
        }
        (true, Some(sub), _, _) => {
            answer.detail = format!("pods/{sub} is a subresource: allowed unchanged");
            resp.warnings.push(format!(
                "tandem: only Pod CREATE is mutated; pods/{sub} was allowed unchanged"
            ));
        }
        (true, None, op, _) if op != "CREATE" => {
            answer.detail = format!("operation {op:?} is not CREATE: allowed unchanged");
            resp.warnings.push(format!(
                "tandem: only Pod CREATE is mutated; this {op} was allowed unchanged"
            ));
        }
        (true, None, _, None) => {
            answer.detail = "the review carries no Pod object: allowed unchanged".into();
            resp.warnings
                .push("tandem: the review carried no Pod object; allowed unchanged".into());
        }
        (true, None, _, Some(obj)) if adopt => {
            let a = crate::adopt::decide(
                obj,
                ctx,
                ctx.namespace,
                objects.map(|o| o.catalog),
                req.namespace.as_deref(),
            );
            resp.warnings.extend(a.warnings);
            answer.detail = a.detail;
            answer.outcome = if a.moved {
                Outcome::Adopted
            } else {
                Outcome::Skipped
            };
            if !a.patch.is_empty() {
                set_patch(&a.patch, ctx.encoding, &mut resp, &mut answer);
            }
        }
        (true, None, _, Some(obj)) if verifiable(obj) => {
            verify_answer(&req, obj, ctx, &mut resp, &mut answer);
        }
        (true, None, _, Some(obj)) => {
            let injector = Injector {
                config: ctx.config,
                knowledge: ctx.knowledge,
                mode_override: ctx.mode_override,
            };
            let namespace = req.namespace.as_deref();
            match injector.inject_pod_with(
                obj,
                ctx.namespace,
                namespace,
                objects.map(|o| o.catalog),
            ) {
                Ok(PodOutcome::Injected(inj)) => {
                    inject_answer(&inj, ctx, &mut resp, &mut answer);
                    if objects.is_some_and(|o| !o.synced) {
                        resp.warnings.push(
                            "tandem: sidecar objects not synced yet; only the configuration's \
                             sidecars were considered"
                                .into(),
                        );
                    }
                    // Said as what it is: a decision at admission. Nothing is stored yet,
                    // and a later webhook or validation may still reject the pod.
                    let note = format!(
                        "tandem patched a pod at admission (not stored yet: the rest of the admission chain may still reject it): sidecars {} in mode {}: {}",
                        inj.sidecars.join(", "),
                        inj.decision.placement.as_str(),
                        answer.detail
                    );
                    answer.event = event(&req, obj, false, "PatchedAtAdmission", note);
                }
                Ok(PodOutcome::Skipped { reason }) => {
                    answer.outcome = Outcome::Skipped;
                    // A pod that carries the status annotation was injected before (e.g. a
                    // reinvocation): no event for that, it would only be noise.
                    if !has_annotation(obj, STATUS_ANNOTATION) {
                        answer.event = event(&req, obj, false, "Skipped", reason.clone());
                    }
                    answer.detail = reason;
                }
                Err(e) => {
                    let message = format!("tandem: {e}");
                    answer.outcome = Outcome::Denied;
                    answer.detail = e.to_string();
                    answer.event = event(&req, obj, true, "InjectionFailed", message.clone());
                    resp.allowed = false;
                    resp.status = StatusOut {
                        code: Some(400),
                        status: "Failure",
                        reason: "BadRequest",
                        message,
                    };
                }
            }
        }
    }
    for w in &mut resp.warnings {
        truncate_chars(w, MAX_WARNING_CHARS);
    }
    if dry_run {
        answer.event = None;
    }
    let out = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response: resp,
    };
    match serde_json::to_vec(&out) {
        Ok(body) => answer.body = body,
        // Serializing plain strings, numbers and maps can't fail; answer 500-ish anyway.
        Err(e) => return invalid(format!("internal error writing the response: {e}")),
    }
    answer
}

fn inject_answer(inj: &Injection, ctx: &Context<'_>, resp: &mut ResponseOut, answer: &mut Answer) {
    let d = &inj.decision;
    answer.outcome = Outcome::Injected(d.placement);
    answer.detail = d.reasons.join("; ");
    // Tell the user why when auto did not pick plain native sidecars, and always what
    // can go wrong with the chosen form.
    if d.requested == Mode::Auto && d.placement != Placement::Native {
        resp.warnings
            .extend(d.reasons.iter().map(|r| format!("tandem: {r}")));
    }
    if d.requested == Mode::Auto && !ctx.synced {
        resp.warnings
            .push("tandem: node knowledge not synced yet; auto used the safe mode".into());
    }
    resp.warnings
        .extend(d.warnings.iter().map(|w| format!("tandem: {w}")));
    resp.audit_annotations
        .insert("placement", d.placement.as_str().to_string());
    set_patch(&inj.patch, ctx.encoding, resp, answer);
}

fn set_patch(
    ops: &[json_patch::PatchOperation],
    encoding: PatchEncoding,
    resp: &mut ResponseOut,
    answer: &mut Answer,
) {
    let patch = json_patch::Patch(ops.to_vec());
    // A Vec of patch operations always serializes.
    let bytes = serde_json::to_vec(&patch).unwrap_or_default();
    answer.patch_bytes = bytes.len();
    resp.patch_type = Some("JSONPatch");
    resp.patch = Some(match encoding {
        PatchEncoding::Base64 => {
            PatchField::Base64(base64::engine::general_purpose::STANDARD.encode(&bytes))
        }
        PatchEncoding::Array => PatchField::Array(bytes),
    });
}

/// Whether tandem checks the pod against what it injected: it carries
/// `tandem.dev/status` (tandem injected it earlier in this admission, or `tandem inject`
/// did), and it is neither opted out nor a mirror pod.
fn verifiable(obj: &Value) -> bool {
    has_annotation(obj, STATUS_ANNOTATION)
        && !has_annotation(obj, MIRROR_POD_ANNOTATION)
        && obj
            .pointer("/metadata/labels")
            .and_then(|l| l.get(INJECT_LABEL))
            .and_then(Value::as_str)
            != Some("disabled")
}

/// The hint every stripped-pod message ends with.
fn doctor_hint(namespace: &str) -> String {
    if namespace.is_empty() {
        "find it with `tandem doctor`".into()
    } else {
        format!("find it with `tandem doctor -n {namespace}`")
    }
}

/// A pod that carries `tandem.dev/status` (typically tandem's reinvocation, after later
/// webhooks ran): check that it still holds what tandem injected, and act by policy.
fn verify_answer(
    req: &RequestIn,
    obj: &Value,
    ctx: &Context<'_>,
    resp: &mut ResponseOut,
    answer: &mut Answer,
) {
    answer.outcome = Outcome::Skipped;
    let status = match InjectionStatus::of_pod(obj) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            answer.detail = format!("not verified: {e}");
            resp.warnings.push(format!("tandem: {e}"));
            return;
        }
        None => {
            answer.detail = "no status annotation".into();
            return;
        }
    };
    let findings = verify::check(obj, &status, Some(ctx.config));
    if findings.is_empty() {
        answer.detail =
            format!("already injected ({STATUS_ANNOTATION} is present) and still as injected");
        return;
    }
    let namespace = req
        .namespace
        .as_deref()
        .filter(|s| !s.is_empty())
        .or_else(|| str_at(obj, "/metadata/namespace"))
        .unwrap_or("");
    let hint = doctor_hint(namespace);
    let what = verify::summary(&findings);
    let mode = status.mode;
    let policy = verify::policy_of(obj, ctx.config.on_stripped);
    let action = match policy {
        Ok(policy) => verify::plan(obj, &status, Some(ctx.config), &findings, policy)
            .map(|a| (policy, a))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    resp.audit_annotations
        .insert("stripped", verify::fields(&findings).join(","));
    match action {
        Ok((policy, Action::Patch(ops))) => {
            let (outcome, did, reason) = match policy {
                StripPolicy::Legacy => (
                    Outcome::FellBack(mode),
                    "moved the sidecars to the regular containers (legacy) so that the pod runs",
                    "SidecarFellBack",
                ),
                _ => (
                    Outcome::Repaired(mode),
                    "re-added what was removed",
                    "SidecarRepaired",
                ),
            };
            answer.outcome = outcome;
            answer.detail = format!("{what}; {did} (on-stripped: {})", policy.as_str());
            resp.warnings.push(format!(
                "tandem: another mutating webhook removed {} after tandem injected it; tandem {did} (on-stripped: {})",
                lost_text(&findings),
                policy.as_str()
            ));
            resp.warnings.push(format!("tandem: {hint}; {what}"));
            resp.audit_annotations
                .insert("on-stripped", policy.as_str().to_string());
            set_patch(&ops, ctx.encoding, resp, answer);
            let note = format!(
                "at admission, another mutating webhook had changed a pod after tandem injected it: {what}. tandem {did} (on-stripped: {}); {hint}",
                policy.as_str()
            );
            answer.event = event(req, obj, true, reason, note);
        }
        Ok((_, Action::Deny)) | Err(_) => {
            let why = match &action {
                Err(e) => format!(" ({e}, so tandem can't act on it otherwise)"),
                _ => String::new(),
            };
            let message = format!(
                "tandem: denied: another mutating webhook changed this pod after tandem injected it (tandem.dev/status says mode {}): {what}{why}. That webhook probably decodes and re-encodes pods with a pre-1.28 schema; {hint}. To let the pod through, set the annotation {} to repair or legacy on the pod, or onStripped in tandem's configuration",
                mode.as_str(),
                verify::ON_STRIPPED_ANNOTATION,
            );
            answer.outcome = Outcome::StripDenied(mode);
            answer.detail = format!("{what}{why}; denied");
            answer.event = event(req, obj, true, "SidecarStripped", message.clone());
            resp.allowed = false;
            resp.status = StatusOut {
                code: Some(400),
                status: "Failure",
                reason: "BadRequest",
                message,
            };
        }
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What was removed, in a few words: `restartPolicy from sidecar "proxy"`, `the node
/// affinity term tandem.dev/native-sidecars In [true]`, or both.
fn lost_text(findings: &[Finding]) -> String {
    let containers: Vec<Finding> = findings
        .iter()
        .filter(|f| !f.sidecar.is_empty())
        .cloned()
        .collect();
    let mut parts = Vec::new();
    if !containers.is_empty() {
        let names = verify::sidecars(&containers);
        parts.push(format!(
            "{} from {} {}",
            verify::fields(&containers).join(", "),
            if names.len() == 1 {
                "sidecar"
            } else {
                "sidecars"
            },
            quoted(&names)
        ));
    }
    if findings.iter().any(|f| f.sidecar.is_empty()) {
        parts.push(format!(
            "the node affinity term {} In [true]",
            tandem_core::names::NODE_LABEL
        ));
    }
    parts.join(" and ")
}

fn invalid(message: String) -> Answer {
    Answer {
        status: 400,
        body: message.clone().into_bytes(),
        outcome: Outcome::Invalid,
        pod: String::new(),
        detail: message,
        event: None,
        dry_run: false,
        patch_bytes: 0,
    }
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn has_annotation(obj: &Value, key: &str) -> bool {
    obj.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(key))
}

fn pod_name(req: &RequestIn) -> String {
    let obj = req.object.as_ref().unwrap_or(&Value::Null);
    let ns = req
        .namespace
        .as_deref()
        .filter(|s| !s.is_empty())
        .or_else(|| str_at(obj, "/metadata/namespace"))
        .unwrap_or("");
    let name = req
        .name
        .as_deref()
        .filter(|s| !s.is_empty())
        .or_else(|| str_at(obj, "/metadata/name"))
        .map(str::to_string)
        .or_else(|| str_at(obj, "/metadata/generateName").map(|g| format!("{g}*")))
        .unwrap_or_default();
    format!("{ns}/{name}")
}

/// The event's subject: the pod's controlling owner (a ReplicaSet, a Job, …), else the
/// pod itself when it has a name. A pod made by a controller has no name yet at CREATE.
fn event(
    req: &RequestIn,
    obj: &Value,
    warning: bool,
    reason: &'static str,
    mut note: String,
) -> Option<EventRequest> {
    use k8s_openapi::api::core::v1::ObjectReference;
    let namespace = req
        .namespace
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| str_at(obj, "/metadata/namespace").map(str::to_string))?;
    let owner = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|owners| {
            owners
                .iter()
                .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        });
    let regarding = match owner {
        Some(o) => ObjectReference {
            api_version: str_at(o, "/apiVersion").map(str::to_string),
            kind: str_at(o, "/kind").map(str::to_string),
            name: Some(str_at(o, "/name")?.to_string()),
            uid: str_at(o, "/uid").map(str::to_string),
            namespace: Some(namespace),
            ..Default::default()
        },
        None => ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(
                req.name
                    .clone()
                    .filter(|s| !s.is_empty())
                    .or_else(|| str_at(obj, "/metadata/name").map(str::to_string))?,
            ),
            namespace: Some(namespace),
            ..Default::default()
        },
    };
    // events.k8s.io caps the note at 1 kB.
    truncate_chars(&mut note, 1000);
    Some(EventRequest {
        regarding,
        warning,
        reason,
        note,
    })
}

fn truncate_chars(s: &mut String, max: usize) {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx<'a>(config: &'a Config, knowledge: &'a ClusterKnowledge) -> Context<'a> {
        Context {
            config,
            knowledge,
            synced: true,
            mode_override: Some(Mode::Native),
            namespace: NamespaceOptIn::Enabled,
            encoding: PatchEncoding::Base64,
        }
    }

    pub(crate) fn review_json(object: Value, dry_run: bool) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop",
                "operation": "CREATE",
                "userInfo": {"username": "admin"},
                "object": object,
                "oldObject": null,
                "dryRun": dry_run,
                "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
            }
        })
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-7d9f-", "namespace": "shop",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f",
                    "uid": "1234", "controller": true}]},
            "spec": {"containers": [{"name": "app", "image": "nginx", "futureField": {"x": 1}}],
                     "futureSpecField": true}
        })
    }

    fn run(review: &Value, ctx: &Context<'_>) -> (Answer, Value) {
        let a = super::review(review.to_string().as_bytes(), ctx);
        let v = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        (a, v)
    }

    fn decode_patch(resp: &Value) -> Value {
        match &resp["response"]["patch"] {
            Value::String(s) => serde_json::from_slice(
                &base64::engine::general_purpose::STANDARD.decode(s).unwrap(),
            )
            .unwrap(),
            Value::Array(a) => {
                let bytes: Vec<u8> = a.iter().map(|n| n.as_u64().unwrap() as u8).collect();
                serde_json::from_slice(&bytes).unwrap()
            }
            other => panic!("no patch: {other}"),
        }
    }

    #[test]
    fn injects_pod_and_keeps_unknown_fields() {
        let config = Config::builtin();
        let k = ClusterKnowledge::default();
        let (a, v) = run(&review_json(pod(), false), &ctx(&config, &k));
        assert_eq!(a.status, 200);
        assert_eq!(a.outcome, Outcome::Injected(Placement::Native));
        assert_eq!(v["response"]["allowed"], true);
        assert_eq!(v["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(v["response"]["patchType"], "JSONPatch");
        let patch: json_patch::Patch = serde_json::from_value(decode_patch(&v)).unwrap();
        let mut pod = pod();
        json_patch::patch(&mut pod, &patch).unwrap();
        assert_eq!(pod["spec"]["initContainers"][0]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["containers"][0]["futureField"]["x"], 1);
        assert_eq!(pod["spec"]["futureSpecField"], true);
        assert_eq!(a.pod, "shop/web-7d9f-*");
        let ev = a.event.unwrap();
        assert_eq!(ev.reason, "PatchedAtAdmission");
        assert!(ev.note.contains("not stored yet"), "{}", ev.note);
        assert_eq!(ev.regarding.kind.as_deref(), Some("ReplicaSet"));
        assert_eq!(ev.regarding.name.as_deref(), Some("web-7d9f"));
    }

    #[test]
    fn same_patch_as_inject_patch() {
        let config = Config::builtin();
        let k = ClusterKnowledge::default();
        let (_, v) = run(&review_json(pod(), false), &ctx(&config, &k));
        let injector = Injector {
            config: &config,
            knowledge: &k,
            mode_override: Some(Mode::Native),
        };
        let PodOutcome::Injected(inj) = injector
            .inject_pod(&pod(), NamespaceOptIn::Enabled)
            .unwrap()
        else {
            panic!("not injected")
        };
        assert_eq!(decode_patch(&v), serde_json::to_value(&inj.patch).unwrap());
    }

    #[test]
    fn array_encoding_reads_back_through_kube_types() {
        let config = Config::builtin();
        let k = ClusterKnowledge::default();
        let mut c = ctx(&config, &k);
        for enc in [PatchEncoding::Array, PatchEncoding::Base64] {
            c.encoding = enc;
            let (a, v) = run(&review_json(pod(), false), &c);
            let patch = decode_patch(&v);
            let parsed: Result<
                kube::core::admission::AdmissionReview<kube::core::DynamicObject>,
                _,
            > = serde_json::from_slice(&a.body);
            match enc {
                // kube-rs reads `[]byte` only as a number array: Go's base64 string (what
                // the API server itself expects first) is beyond its types.
                PatchEncoding::Base64 => assert!(parsed.is_err()),
                PatchEncoding::Array => {
                    let resp = parsed.unwrap().response.unwrap();
                    assert!(resp.allowed);
                    let bytes = resp.patch.unwrap();
                    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), patch);
                }
            }
        }
    }

    #[test]
    fn reads_kube_serialized_request() {
        // A request written by kube's own types (what kube-based tools send in tests).
        let text = serde_json::to_string(&review_json(pod(), false)).unwrap();
        let kube_review: kube::core::admission::AdmissionReview<kube::core::DynamicObject> =
            serde_json::from_str(&text).unwrap();
        let again = serde_json::to_vec(&kube_review).unwrap();
        let config = Config::builtin();
        let k = ClusterKnowledge::default();
        let a = review(&again, &ctx(&config, &k));
        assert_eq!(a.outcome, Outcome::Injected(Placement::Native));
    }

    #[test]
    fn garbage_is_400() {
        let config = Config::builtin();
        let k = ClusterKnowledge::default();
        for body in [
            &b""[..],
            b"{",
            b"[]",
            b"null",
            b"{\"kind\":\"Pod\"}",
            b"\xff\xfe",
        ] {
            let a = review(body, &ctx(&config, &k));
            assert_eq!(a.status, 400, "{:?}", String::from_utf8_lossy(body));
            assert_eq!(a.outcome, Outcome::Invalid);
        }
        let no_request = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
        assert_eq!(run(&no_request, &ctx(&config, &k)).0.status, 400);
    }

    #[test]
    fn non_pod_allowed_with_warning() {
        let config = Config::builtin();
        let k = ClusterKnowledge::default();
        let mut r = review_json(
            json!({"kind": "ConfigMap", "metadata": {"name": "x"}}),
            false,
        );
        r["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
        let (a, v) = run(&r, &ctx(&config, &k));
        assert_eq!(a.status, 200);
        assert_eq!(a.outcome, Outcome::Ignored);
        assert_eq!(v["response"]["allowed"], true);
        assert!(v["response"].get("patch").is_none());
        assert!(
            v["response"]["warnings"][0]
                .as_str()
                .unwrap()
                .contains("ConfigMap")
        );
        let mut r = review_json(pod(), false);
        r["request"]["operation"] = json!("UPDATE");
        assert_eq!(run(&r, &ctx(&config, &k)).0.outcome, Outcome::Ignored);
        let mut r = review_json(pod(), false);
        r["request"]["subResource"] = json!("status");
        assert_eq!(run(&r, &ctx(&config, &k)).0.outcome, Outcome::Ignored);
    }

    #[test]
    fn injection_error_denies_with_field() {
        let config = Config::builtin();
        let k = ClusterKnowledge::default();
        let mut p = pod();
        p["spec"]["containers"] = json!("not a list");
        let (a, v) = run(&review_json(p, false), &ctx(&config, &k));
        assert_eq!(a.outcome, Outcome::Denied);
        assert_eq!(v["response"]["allowed"], false);
        let msg = v["response"]["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains("spec.containers") || msg.contains("containers"),
            "{msg}"
        );
        assert_eq!(v["response"]["status"]["code"], 400);
    }

    #[test]
    fn dry_run_has_no_event_but_same_patch() {
        let config = Config::builtin();
        let k = ClusterKnowledge::default();
        let (a, v) = run(&review_json(pod(), true), &ctx(&config, &k));
        let (b, w) = run(&review_json(pod(), false), &ctx(&config, &k));
        assert!(a.dry_run && a.event.is_none());
        assert!(b.event.is_some());
        assert_eq!(decode_patch(&v), decode_patch(&w));
    }

    #[test]
    fn opt_out_and_already_injected_skip() {
        let config = Config::builtin();
        let k = ClusterKnowledge::default();
        let mut p = pod();
        p["metadata"]["labels"] = json!({"tandem.dev/inject": "disabled"});
        let (a, v) = run(&review_json(p, false), &ctx(&config, &k));
        assert_eq!(a.outcome, Outcome::Skipped);
        assert!(v["response"].get("patch").is_none());
        assert_eq!(a.event.unwrap().reason, "Skipped");
        let mut p = pod();
        p["metadata"]["annotations"] = json!({"tandem.dev/status": "{}"});
        let (a, _) = run(&review_json(p, false), &ctx(&config, &k));
        assert_eq!(a.outcome, Outcome::Skipped);
        assert!(a.event.is_none());
    }

    #[test]
    fn auto_before_sync_is_safe_and_warns() {
        let config = Config::builtin();
        let k = ClusterKnowledge::default();
        let mut c = ctx(&config, &k);
        c.mode_override = Some(Mode::Auto);
        c.synced = false;
        let (a, v) = run(&review_json(pod(), false), &c);
        assert_eq!(a.outcome, Outcome::Injected(Placement::Legacy));
        let warnings = v["response"]["warnings"].to_string();
        assert!(warnings.contains("not synced"), "{warnings}");
        assert!(warnings.contains("legacy"), "{warnings}");
    }

    /// The pod as tandem's first call left it, then stripped like a decode/re-encode
    /// webhook built against a pre-1.28 schema does.
    fn injected_then_stripped(config: &Config, mode: Mode) -> (Value, Value) {
        let k = ClusterKnowledge::default();
        let mut c = ctx(config, &k);
        c.mode_override = Some(mode);
        let (_, v) = run(&review_json(pod(), false), &c);
        let patch: json_patch::Patch = serde_json::from_value(decode_patch(&v)).unwrap();
        let mut injected = pod();
        json_patch::patch(&mut injected, &patch).unwrap();
        let mut stripped = injected.clone();
        for ic in stripped["spec"]["initContainers"].as_array_mut().unwrap() {
            ic.as_object_mut().unwrap().remove("restartPolicy");
        }
        (injected, stripped)
    }

    #[test]
    fn reinvocation_of_an_intact_pod_is_a_quiet_skip() {
        let config = Config::builtin();
        let k = ClusterKnowledge::default();
        let (injected, _) = injected_then_stripped(&config, Mode::Native);
        let (a, v) = run(&review_json(injected, false), &ctx(&config, &k));
        assert_eq!(a.outcome, Outcome::Skipped);
        assert!(a.event.is_none());
        assert!(v["response"].get("patch").is_none());
        assert!(v["response"].get("warnings").is_none(), "{v}");
    }

    #[test]
    fn reinvocation_repairs_a_stripped_pod_by_default() {
        let config = Config::builtin();
        let k = ClusterKnowledge::default();
        let (injected, stripped) = injected_then_stripped(&config, Mode::Native);
        let (a, v) = run(&review_json(stripped.clone(), false), &ctx(&config, &k));
        assert_eq!(a.outcome, Outcome::Repaired(Placement::Native));
        assert_eq!(a.outcome.label(), "repaired");
        assert_eq!(v["response"]["allowed"], true);
        let patch: json_patch::Patch = serde_json::from_value(decode_patch(&v)).unwrap();
        let mut repaired = stripped;
        json_patch::patch(&mut repaired, &patch).unwrap();
        assert_eq!(repaired, injected);
        let warnings: Vec<&str> = v["response"]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        assert_eq!(
            warnings[0],
            "tandem: another mutating webhook removed restartPolicy from sidecar \"log-shipper\" after tandem injected it; tandem re-added what was removed (on-stripped: repair)"
        );
        assert!(
            warnings[1].starts_with("tandem: find it with `tandem doctor -n shop`; sidecar \"log-shipper\" lost restartPolicy: Always (spec.initContainers[0].restartPolicy)"),
            "{}",
            warnings[1]
        );
        assert!(
            warnings
                .iter()
                .all(|w| w.chars().count() <= MAX_WARNING_CHARS)
        );
        let ev = a.event.unwrap();
        assert!(ev.warning);
        assert_eq!(ev.reason, "SidecarRepaired");
        assert_eq!(ev.regarding.kind.as_deref(), Some("ReplicaSet"));
        assert!(ev.note.contains("tandem doctor -n shop"), "{}", ev.note);
        assert_eq!(
            v["response"]["auditAnnotations"]["stripped"],
            "restartPolicy"
        );
    }

    #[test]
    fn reinvocation_policy_from_config_and_annotation() {
        let mut config = Config::builtin();
        let k = ClusterKnowledge::default();
        config.on_stripped = StripPolicy::Deny;
        let (_, stripped) = injected_then_stripped(&config, Mode::Native);
        let (a, v) = run(&review_json(stripped.clone(), false), &ctx(&config, &k));
        assert_eq!(a.outcome, Outcome::StripDenied(Placement::Native));
        assert_eq!(v["response"]["allowed"], false);
        let msg = v["response"]["status"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with("tandem: denied: another mutating webhook changed this pod after tandem injected it (tandem.dev/status says mode native): sidecar \"log-shipper\" lost restartPolicy: Always"),
            "{msg}"
        );
        assert!(
            msg.contains("find it with `tandem doctor -n shop`"),
            "{msg}"
        );
        assert!(msg.contains("tandem.dev/on-stripped"), "{msg}");
        assert_eq!(a.event.unwrap().reason, "SidecarStripped");
        // The pod's annotation wins: legacy moves the sidecar to the regular containers.
        let mut p = stripped.clone();
        p["metadata"]["annotations"]["tandem.dev/on-stripped"] = json!("legacy");
        let (a, v) = run(&review_json(p.clone(), false), &ctx(&config, &k));
        assert_eq!(a.outcome, Outcome::FellBack(Placement::Native));
        let patch: json_patch::Patch = serde_json::from_value(decode_patch(&v)).unwrap();
        json_patch::patch(&mut p, &patch).unwrap();
        assert_eq!(p["spec"]["containers"][0]["name"], "log-shipper");
        assert_eq!(p["spec"]["containers"][1]["futureField"]["x"], 1);
        assert!(p["spec"]["initContainers"].as_array().unwrap().is_empty());
        let status = InjectionStatus::of_pod(&p).unwrap().unwrap();
        assert_eq!(status.mode, Placement::Legacy);
        assert_eq!(a.event.unwrap().reason, "SidecarFellBack");
        assert!(
            v["response"]["warnings"][0]
                .as_str()
                .unwrap()
                .contains("moved the sidecars to the regular containers (legacy)")
        );
        // A bad annotation value denies and says what to write.
        let mut p = stripped;
        p["metadata"]["annotations"]["tandem.dev/on-stripped"] = json!("fix-it");
        let (a, v) = run(&review_json(p, false), &ctx(&config, &k));
        assert_eq!(a.outcome, Outcome::StripDenied(Placement::Native));
        let msg = v["response"]["status"]["message"].as_str().unwrap();
        assert!(msg.contains("use repair, legacy or deny"), "{msg}");
    }

    #[test]
    fn reinvocation_checks_universal_and_affinity_too() {
        let config = Config::builtin();
        let k = ClusterKnowledge::default();
        for mode in [Mode::Universal, Mode::Affinity] {
            let (injected, stripped) = injected_then_stripped(&config, mode);
            let (a, v) = run(&review_json(stripped.clone(), false), &ctx(&config, &k));
            assert!(matches!(a.outcome, Outcome::Repaired(_)), "{mode:?}: {a:?}");
            let patch: json_patch::Patch = serde_json::from_value(decode_patch(&v)).unwrap();
            let mut repaired = stripped;
            json_patch::patch(&mut repaired, &patch).unwrap();
            assert_eq!(repaired, injected, "{mode:?}");
        }
        let (mut injected, _) = injected_then_stripped(&config, Mode::Affinity);
        injected["spec"].as_object_mut().unwrap().remove("affinity");
        let (a, v) = run(&review_json(injected, false), &ctx(&config, &k));
        assert_eq!(a.outcome, Outcome::Repaired(Placement::Affinity));
        assert!(
            v["response"]["warnings"][0]
                .as_str()
                .unwrap()
                .contains("removed the node affinity term tandem.dev/native-sidecars In [true]"),
            "{v}"
        );
    }

    #[test]
    fn opted_out_pods_with_a_status_are_not_verified() {
        let config = Config::builtin();
        let k = ClusterKnowledge::default();
        let (_, mut stripped) = injected_then_stripped(&config, Mode::Native);
        stripped["metadata"]["labels"] = json!({"tandem.dev/inject": "disabled"});
        let (a, _) = run(&review_json(stripped, false), &ctx(&config, &k));
        assert_eq!(a.outcome, Outcome::Skipped);
    }

    #[test]
    fn long_warnings_are_cut() {
        let mut s = "é".repeat(400);
        truncate_chars(&mut s, MAX_WARNING_CHARS);
        assert_eq!(s.chars().count(), MAX_WARNING_CHARS);
    }
}
