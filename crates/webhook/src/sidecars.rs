//! Live sidecar objects: `Sidecar`s, `ClusterSidecar`s and namespaces' labels, watched
//! off the admission path and published as one [`Catalog`] that every admission reads.
//!
//! Three kube-rs watchers (list + watch, with backoff) keep raw objects; after a change
//! (batched every 100 ms) the catalog is rebuilt in the core ([`Catalog::build`]: checks,
//! conflicts) and published with one `Arc` swap, so the next pod sees it at once, without
//! a restart. Then each object whose `status` doesn't say what the catalog decided gets
//! it written (`observedGeneration`, `revision`, a `Ready` condition with reason `Ready`,
//! `Invalid` or `ConflictingNames`), and an object that turned unusable gets a Warning
//! Event. An unusable object is skipped for the pods that select it; no other pod notices.
//!
//! When the CRDs aren't installed, the catalog is empty and counts as synced (pods get
//! the config file's sidecars), and the watchers keep retrying, so installing the CRDs
//! later needs no restart either.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::{Value, json};
use tandem_core::api::{API_VERSION, ClusterSidecar, Sidecar};
use tandem_core::catalog::{Catalog, Entry, Kind, REASON_READY, SidecarObject};
use tokio::sync::watch;

/// What admission reads: the catalog and whether it reflects the cluster yet.
#[derive(Debug, Clone, Default)]
pub struct CatalogSnapshot {
    /// The objects (empty until synced).
    pub catalog: Arc<Catalog>,
    /// True once every watcher listed everything once (or found no CRD).
    pub synced: bool,
}

/// A handle on the latest [`CatalogSnapshot`]; cheap to clone and to read.
#[derive(Debug, Clone)]
pub struct SidecarIndex {
    rx: Option<watch::Receiver<Arc<CatalogSnapshot>>>,
    /// The sender of a fixed index (a watched one's lives in its tasks).
    _fixed: Option<Arc<watch::Sender<Arc<CatalogSnapshot>>>>,
}

impl SidecarIndex {
    /// No sidecar objects at all (no cluster): admission uses the config file only.
    pub fn disabled() -> Self {
        Self {
            rx: None,
            _fixed: None,
        }
    }

    /// A fixed catalog (tests, benchmarks).
    pub fn fixed(catalog: Catalog) -> Self {
        let (tx, rx) = watch::channel(Arc::new(CatalogSnapshot {
            catalog: Arc::new(catalog),
            synced: true,
        }));
        Self {
            rx: Some(rx),
            _fixed: Some(Arc::new(tx)),
        }
    }

    /// True when objects are in use (watched or fixed).
    pub fn enabled(&self) -> bool {
        self.rx.is_some()
    }

    /// The latest snapshot (`None` when disabled).
    pub fn current(&self) -> Option<Arc<CatalogSnapshot>> {
        self.rx.as_ref().map(|rx| rx.borrow().clone())
    }

    /// Waits until synced (for tests and tools); returns at once when disabled.
    pub async fn wait_synced(&mut self) {
        if let Some(rx) = &mut self.rx {
            let _ = rx.wait_for(|s| s.synced).await;
        }
    }

    /// Starts watching `client`'s cluster; unsynced at first. `instance` names this
    /// webhook replica in Events. The tasks stop when every handle is dropped.
    pub fn watch(client: Client, instance: Option<String>) -> Self {
        let (tx, rx) = watch::channel(Arc::new(CatalogSnapshot::default()));
        let shared = Arc::new(Shared {
            tx,
            state: Mutex::new(State::default()),
            dirty: AtomicBool::new(false),
        });
        let sidecars = ApiResource::erase::<Sidecar>(&());
        let clusters = ApiResource::erase::<ClusterSidecar>(&());
        tokio::spawn(watch_objects(
            Api::all_with(client.clone(), &sidecars),
            Kind::Sidecar,
            shared.clone(),
        ));
        tokio::spawn(watch_objects(
            Api::all_with(client.clone(), &clusters),
            Kind::ClusterSidecar,
            shared.clone(),
        ));
        tokio::spawn(watch_namespaces(client.clone(), shared.clone()));
        tokio::spawn(publish_loop(client, instance, shared));
        Self {
            rx: Some(rx),
            _fixed: None,
        }
    }
}

#[derive(Default)]
struct State {
    /// Raw objects by (kind, namespace, name).
    objects: BTreeMap<(Kind, String, String), Value>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Which of the three watchers have listed once.
    synced: [bool; 3],
    /// Objects that were unusable when last published (Events only on the change).
    unusable: BTreeMap<(Kind, String, String), String>,
}

struct Shared {
    tx: watch::Sender<Arc<CatalogSnapshot>>,
    state: Mutex<State>,
    dirty: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key_of(kind: Kind, v: &Value) -> (Kind, String, String) {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (kind, s("/metadata/namespace"), s("/metadata/name"))
}

fn raw(kind: Kind, obj: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    // Watch events of dynamic objects may lack apiVersion/kind; the core checks them.
    v["apiVersion"] = json!(API_VERSION);
    v["kind"] = json!(kind.as_str());
    v
}

fn is_not_found(e: &watcher::Error) -> bool {
    matches!(
        e,
        watcher::Error::InitialListFailed(kube::Error::Api(s))
            | watcher::Error::WatchStartFailed(kube::Error::Api(s)) if s.code == 404
    )
}

async fn watch_objects(api: Api<DynamicObject>, kind: Kind, shared: Arc<Shared>) {
    let slot = kind as usize;
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut pending: Vec<Value> = Vec::new();
    let mut warned = false;
    while let Some(ev) = stream.next().await {
        if shared.tx.is_closed() {
            break;
        }
        match ev {
            Ok(Event::Init) => pending.clear(),
            Ok(Event::InitApply(o)) => pending.push(raw(kind, &o)),
            Ok(Event::InitDone) => {
                let mut st = shared.lock();
                st.objects.retain(|k, _| k.0 != kind);
                for v in pending.drain(..) {
                    st.objects.insert(key_of(kind, &v), v);
                }
                st.synced[slot] = true;
                shared.dirty.store(true, Ordering::SeqCst);
            }
            Ok(Event::Apply(o)) => {
                let v = raw(kind, &o);
                shared.lock().objects.insert(key_of(kind, &v), v);
                shared.dirty.store(true, Ordering::SeqCst);
            }
            Ok(Event::Delete(o)) => {
                let v = raw(kind, &o);
                shared.lock().objects.remove(&key_of(kind, &v));
                shared.dirty.store(true, Ordering::SeqCst);
            }
            Err(e) if is_not_found(&e) => {
                if !warned {
                    tracing::warn!(
                        kind = kind.as_str(),
                        "the {} CRD is not installed: no sidecar objects of this kind (retrying)",
                        kind.as_str()
                    );
                    warned = true;
                }
                let mut st = shared.lock();
                if !st.synced[slot] {
                    st.synced[slot] = true;
                    shared.dirty.store(true, Ordering::SeqCst);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, kind = kind.as_str(), "sidecar object watch failed; retrying with backoff")
            }
        }
    }
}

async fn watch_namespaces(client: Client, shared: Arc<Shared>) {
    let api: Api<Namespace> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut pending = BTreeMap::new();
    let labels = |ns: &Namespace| -> (String, BTreeMap<String, String>) {
        (
            ns.metadata.name.clone().unwrap_or_default(),
            ns.metadata.labels.clone().unwrap_or_default(),
        )
    };
    while let Some(ev) = stream.next().await {
        if shared.tx.is_closed() {
            break;
        }
        match ev {
            Ok(Event::Init) => pending.clear(),
            Ok(Event::InitApply(ns)) => {
                let (n, l) = labels(&ns);
                pending.insert(n, l);
            }
            Ok(Event::InitDone) => {
                let mut st = shared.lock();
                st.namespaces = std::mem::take(&mut pending);
                st.synced[2] = true;
                shared.dirty.store(true, Ordering::SeqCst);
            }
            Ok(Event::Apply(ns)) => {
                let (n, l) = labels(&ns);
                let mut st = shared.lock();
                if st.namespaces.get(&n) != Some(&l) {
                    st.namespaces.insert(n, l);
                    shared.dirty.store(true, Ordering::SeqCst);
                }
            }
            Ok(Event::Delete(ns)) => {
                let (n, _) = labels(&ns);
                shared.lock().namespaces.remove(&n);
                shared.dirty.store(true, Ordering::SeqCst);
            }
            Err(e) => tracing::warn!(error = %e, "namespace watch failed; retrying with backoff"),
        }
    }
}

/// What an object's status should say, from the catalog's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredStatus {
    /// Which object (kind, namespace, name).
    pub kind: Kind,
    /// Its namespace (`Sidecar`).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The spec's revision.
    pub revision: String,
    /// True: usable.
    pub ready: bool,
    /// `Ready`, `Invalid` or `ConflictingNames`.
    pub reason: String,
    /// The condition's message.
    pub message: String,
}

/// The status every catalog entry should have (pure; tested without a cluster).
pub fn desired_statuses(catalog: &Catalog) -> Vec<DesiredStatus> {
    catalog
        .entries()
        .map(|e| match e {
            Entry::Usable(o) => usable_status(o),
            Entry::Unusable(u) => DesiredStatus {
                kind: u.reference.kind,
                namespace: u.reference.namespace.clone(),
                name: u.reference.name.clone(),
                generation: u.generation,
                revision: u.revision.clone(),
                ready: false,
                reason: u.reason.to_string(),
                message: format!("skipped: {}", u.message),
            },
        })
        .collect()
}

fn usable_status(o: &SidecarObject) -> DesiredStatus {
    DesiredStatus {
        kind: o.reference.kind,
        namespace: o.reference.namespace.clone(),
        name: o.reference.name.clone(),
        generation: o.generation,
        revision: o.revision.clone(),
        ready: true,
        reason: REASON_READY.into(),
        message: format!(
            "injected into the pods that select it, as revision {}; `tandem status` lists pods \
             on older revisions",
            o.revision
        ),
    }
}

/// True when the object's current `status` already says `d`.
pub fn status_matches(current: Option<&Value>, d: &DesiredStatus) -> bool {
    let Some(s) = current else { return false };
    let cond = s
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    s.get("observedGeneration").and_then(Value::as_i64) == d.generation
        && s.get("revision").and_then(Value::as_str) == Some(d.revision.as_str())
        && cond.is_some_and(|c| {
            c["status"] == if d.ready { "True" } else { "False" }
                && c["reason"] == d.reason.as_str()
                && c["message"] == d.message.as_str()
        })
}

async fn publish_loop(client: Client, instance: Option<String>, shared: Arc<Shared>) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "tandem-webhook".into(),
            instance,
        },
    );
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.tx.is_closed() {
            break;
        }
        if !shared.dirty.swap(false, Ordering::SeqCst) {
            continue;
        }
        let (catalog, synced, raw_objects) = {
            let st = shared.lock();
            let mut c = Catalog::build(st.objects.values().map(SidecarObject::from_value));
            c.namespaces = st.namespaces.clone();
            (c, st.synced.iter().all(|s| *s), st.objects.clone())
        };
        let statuses = desired_statuses(&catalog);
        shared.tx.send_replace(Arc::new(CatalogSnapshot {
            catalog: Arc::new(catalog),
            synced,
        }));
        for d in statuses {
            let key = (
                d.kind,
                d.namespace.clone().unwrap_or_default(),
                d.name.clone(),
            );
            let current = raw_objects.get(&key).and_then(|o| o.get("status"));
            if status_matches(current, &d) {
                continue;
            }
            let newly_bad = {
                let mut st = shared.lock();
                if d.ready {
                    st.unusable.remove(&key);
                    false
                } else {
                    st.unusable.insert(key.clone(), d.message.clone()) != Some(d.message.clone())
                }
            };
            if let Err(e) = write_status(&client, &d, current).await {
                tracing::warn!(error = %e, object = %d.name, "writing a sidecar object's status failed");
            }
            if newly_bad {
                tracing::warn!(kind = d.kind.as_str(), namespace = ?d.namespace, name = %d.name, reason = %d.reason, "{}", d.message);
                let uid = raw_objects
                    .get(&key)
                    .and_then(|o| o.pointer("/metadata/uid"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let regarding = ObjectReference {
                    api_version: Some(API_VERSION.into()),
                    kind: Some(d.kind.as_str().into()),
                    name: Some(d.name.clone()),
                    namespace: d.namespace.clone(),
                    uid,
                    ..Default::default()
                };
                let ev = KubeEvent {
                    type_: EventType::Warning,
                    reason: d.reason.clone(),
                    note: Some(d.message.clone()),
                    action: "Validate".into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&ev, &regarding).await {
                    tracing::debug!(error = %e, "sending an event failed");
                }
            }
        }
    }
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

async fn write_status(
    client: &Client,
    d: &DesiredStatus,
    current: Option<&Value>,
) -> Result<(), kube::Error> {
    let status = if d.ready { "True" } else { "False" };
    // lastTransitionTime changes only when the condition's status does.
    let since = current
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .filter(|c| c["status"] == status)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now_rfc3339()));
    let body = json!({
        "status": {
            "observedGeneration": d.generation,
            "revision": d.revision,
            "conditions": [{
                "type": "Ready",
                "status": status,
                "reason": d.reason,
                "message": d.message,
                "observedGeneration": d.generation,
                "lastTransitionTime": since,
            }]
        }
    });
    let params = PatchParams::default();
    match (d.kind, &d.namespace) {
        (Kind::Sidecar, Some(ns)) => {
            let api: Api<Sidecar> = Api::namespaced(client.clone(), ns);
            api.patch_status(&d.name, &params, &Patch::Merge(&body))
                .await
                .map(drop)
        }
        _ => {
            let api: Api<ClusterSidecar> = Api::all(client.clone());
            api.patch_status(&d.name, &params, &Patch::Merge(&body))
                .await
                .map(drop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(spec: Value) -> Value {
        json!({"apiVersion": API_VERSION, "kind": "ClusterSidecar",
               "metadata": {"name": "x", "generation": 2}, "spec": spec})
    }

    #[test]
    fn statuses_say_what_the_catalog_decided_and_match_once_written() {
        let good = object(json!({"containers": [{"name": "a", "image": "a:1"}]}));
        let mut bad = object(json!({"containers": [{"name": "b"}]}));
        bad["metadata"]["name"] = json!("y");
        let c = Catalog::build([&good, &bad].into_iter().map(SidecarObject::from_value));
        let ds = desired_statuses(&c);
        assert_eq!(ds.len(), 2);
        assert!(ds[0].ready && ds[0].reason == "Ready" && ds[0].generation == Some(2));
        assert!(!ds[1].ready && ds[1].reason == "Invalid");
        assert!(
            ds[1].message.contains("image is required"),
            "{}",
            ds[1].message
        );
        assert!(!status_matches(None, &ds[0]));
        let written = json!({"observedGeneration": 2, "revision": ds[0].revision,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                            "message": ds[0].message, "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        assert!(status_matches(Some(&written), &ds[0]));
        let mut older = written.clone();
        older["observedGeneration"] = json!(1);
        assert!(!status_matches(Some(&older), &ds[0]));
    }

    /// The admission path with objects: a pod that selects a usable object gets it; a
    /// pod that only an unusable object would select is admitted with a warning; a pod
    /// that selects neither is untouched by them; a pod that asks for the unusable one is
    /// refused with the reason.
    #[test]
    fn admission_with_objects() {
        use crate::admission::{Context, Objects, Outcome, PatchEncoding, review_with};
        use tandem_core::inject::NamespaceOptIn;
        use tandem_core::{ClusterKnowledge, Config, Mode, Placement};
        let good = json!({"apiVersion": API_VERSION, "kind": "Sidecar",
            "metadata": {"name": "proxy", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                     "containers": [{"name": "proxy", "image": "p:1", "command": ["/p"]}]}});
        let bad = json!({"apiVersion": API_VERSION, "kind": "ClusterSidecar",
            "metadata": {"name": "broken"},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                     "containers": [{"name": "broken"}]}});
        let catalog = Catalog::build([&good, &bad].into_iter().map(SidecarObject::from_value));
        let config = Config::from_yaml("sidecars: []").unwrap();
        let k = ClusterKnowledge::default();
        let ctx = Context {
            config: &config,
            knowledge: &k,
            synced: true,
            mode_override: Some(Mode::Native),
            namespace: NamespaceOptIn::Enabled,
            encoding: PatchEncoding::Base64,
        };
        let objects = Some(Objects {
            catalog: &catalog,
            synced: true,
        });
        let review = |labels: Value, annotations: Value| {
            let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "namespace": "shop", "operation": "CREATE",
                    "object": {"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "p", "labels": labels, "annotations": annotations},
                        "spec": {"containers": [{"name": "app", "image": "a:1"}]}}}});
            let a = review_with(body.to_string().as_bytes(), &ctx, objects);
            let v: Value = serde_json::from_slice(&a.body).unwrap();
            (a.outcome, v["response"].clone())
        };
        let (o, _) = review(json!({"app": "web"}), json!({}));
        assert_eq!(o, Outcome::Injected(Placement::Native));
        let (o, r) = review(json!({"app": "db"}), json!({}));
        assert_eq!(o, Outcome::Skipped);
        assert_eq!(r["allowed"], true);
        let (o, r) = review(json!({"app": "api"}), json!({}));
        assert_eq!(o, Outcome::Skipped);
        assert!(r.get("warnings").is_none(), "{r}");
        let (o, r) = review(
            json!({"app": "api"}),
            json!({"tandem.dev/sidecars": "broken"}),
        );
        assert_eq!(o, Outcome::Denied);
        let msg = r["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains("ClusterSidecar broken") && msg.contains("image is required"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn fixed_and_disabled_indexes() {
        assert!(SidecarIndex::disabled().current().is_none());
        let mut fixed = SidecarIndex::fixed(Catalog::default());
        fixed.wait_synced().await;
        assert!(fixed.current().unwrap().synced);
    }
}
