//! The cluster's inventory of legacy sidecars (`tandem adopt --from-cluster --report`):
//! the adopt plan run over every workload, summarized as which could move now, which
//! are blocked (and by which nodes), and which Job-like pods rely on termination
//! workarounds. Pure: the CLI lists the workloads and prints the result.

use serde::Serialize;
use serde_json::Value;

use super::{AdoptOutcome, Adopter, WorkaroundKind};

/// One workload with legacy sidecars.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The workload's kind.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `movable` (every candidate node runs native sidecars) or `blocked`.
    pub verdict: &'static str,
    /// The recognised sidecars, with the reason for each.
    pub sidecars: Vec<Sidecar>,
    /// Why it is movable or blocked (for blocked: the nodes that block it).
    pub reasons: Vec<String>,
    /// Termination workarounds of a Job-like pod (restartPolicy not Always).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub termination_workarounds: Vec<String>,
}

/// A recognised sidecar of a workload.
#[derive(Debug, Serialize)]
pub struct Sidecar {
    /// The container.
    pub container: String,
    /// Why it was recognised.
    pub reason: String,
}

/// The whole inventory.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// Workloads looked at.
    pub scanned: usize,
    /// Pods (templates) with at least one legacy sidecar.
    pub with_legacy_sidecars: usize,
    /// Of those, how many could move now.
    pub movable: usize,
    /// And how many are blocked.
    pub blocked: usize,
    /// Job-like pods that rely on termination workarounds.
    pub jobs_with_termination_workarounds: usize,
    /// Each workload with legacy sidecars.
    pub workloads: Vec<Entry>,
    /// Workloads that could not be planned (bad objects), with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// Builds the inventory from raw workload objects.
pub fn inventory(adopter: &Adopter<'_>, objects: &[Value]) -> Inventory {
    let mut inv = Inventory {
        scanned: objects.len(),
        with_legacy_sidecars: 0,
        movable: 0,
        blocked: 0,
        jobs_with_termination_workarounds: 0,
        workloads: Vec::new(),
        errors: Vec::new(),
    };
    for obj in objects {
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let namespace = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let doc = match adopter.adopt_document(obj) {
            Ok(d) => d,
            Err(e) => {
                inv.errors.push(e.to_string());
                continue;
            }
        };
        for (loc, pod) in &doc.pods {
            let AdoptOutcome::Planned(a) = pod else {
                continue;
            };
            let restart = loc
                .base
                .get(obj)
                .and_then(|p| p.pointer("/spec/restartPolicy"))
                .and_then(Value::as_str)
                .unwrap_or("Always");
            let termination: Vec<String> = a
                .workarounds
                .iter()
                .filter(|w| {
                    restart != "Always"
                        && matches!(
                            w.kind,
                            WorkaroundKind::Kubexit
                                | WorkaroundKind::Scuttle
                                | WorkaroundKind::LinkerdAwait
                                | WorkaroundKind::QuitEndpoint
                                | WorkaroundKind::DoneFile
                        )
                })
                .map(|w| format!("{} on {} ({})", w.kind.as_str(), w.container, w.field))
                .collect();
            let movable = !a.moved.is_empty();
            inv.with_legacy_sidecars += 1;
            if movable {
                inv.movable += 1;
            } else {
                inv.blocked += 1;
            }
            if !termination.is_empty() {
                inv.jobs_with_termination_workarounds += 1;
            }
            inv.workloads.push(Entry {
                kind: kind.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
                verdict: if movable { "movable" } else { "blocked" },
                sidecars: a
                    .recognised
                    .iter()
                    .map(|r| Sidecar {
                        container: r.container.clone(),
                        reason: r.reason.clone(),
                    })
                    .collect(),
                reasons: a.decision.reasons.clone(),
                termination_workarounds: termination,
            });
        }
    }
    inv
}

/// Renders the inventory as text.
pub fn text(inv: &Inventory) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "{} workloads scanned, {} with legacy sidecars: {} could move now, {} blocked; {} \
         Job-like pods rely on termination workarounds",
        inv.scanned,
        inv.with_legacy_sidecars,
        inv.movable,
        inv.blocked,
        inv.jobs_with_termination_workarounds
    ));
    for e in &inv.workloads {
        let sidecars: Vec<&str> = e.sidecars.iter().map(|s| s.container.as_str()).collect();
        line(format!(
            "{} {} {}/{}: {}",
            e.verdict,
            e.kind,
            e.namespace,
            e.name,
            sidecars.join(", ")
        ));
        for r in &e.reasons {
            line(format!("    {r}"));
        }
        for w in &e.termination_workarounds {
            line(format!("    termination workaround: {w}"));
        }
    }
    for e in &inv.errors {
        line(format!("error: {e}"));
    }
    out
}
