//! A pod's effective resource requests with native sidecars counted the way the
//! scheduler counts them (KEP-753, `resourcehelper.PodRequests`):
//!
//! ```text
//! init phase  = max over init containers i of
//!                 requests(i) + sum(sidecars declared before i)     (regular init container)
//!                 sum(sidecars up to and including i)               (sidecar i)
//! run phase   = sum(app containers) + sum(all sidecars)
//! effective   = max(init phase, run phase) + overhead
//! ```
//!
//! Many tools get this wrong (kubernetes/autoscaler#7229): they either add every
//! container up or count sidecars as plain init containers (max only).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::quantity::{Quantity, QuantityError};

/// Requests per resource name (`cpu`, `memory`, `ephemeral-storage`, …).
pub type Requests = BTreeMap<String, Quantity>;

/// The effective requests of one pod, and the two phases they come from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Effective {
    /// What the scheduler reserves: `max(init, run) + overhead`.
    pub total: Requests,
    /// The largest init-phase demand.
    pub init_phase: Requests,
    /// Sidecars plus app containers.
    pub run_phase: Requests,
    /// Every container added up (what a naive tool reports).
    pub naive_sum: Requests,
    /// Sidecars counted as plain init containers (max only): what pre-1.28 accounting
    /// would give.
    pub as_plain_init: Requests,
}

/// A container whose requests can't be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {source}")]
pub struct ResourceError {
    /// The field (`initContainers[0].resources.requests.cpu`).
    pub field: String,
    /// The bad quantity.
    #[source]
    pub source: QuantityError,
}

/// A container's requests, with limits standing in for requests that are not set
/// (the API server's defaulting does the same).
pub fn container_requests(c: &Value, field: &str) -> Result<Requests, ResourceError> {
    let mut out = Requests::new();
    for (part, overwrite) in [("limits", false), ("requests", true)] {
        let Some(map) = c
            .pointer(&format!("/resources/{part}"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (name, v) in map {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            let q = Quantity::parse(&text).map_err(|source| ResourceError {
                field: format!("{field}.resources.{part}.{name}"),
                source,
            })?;
            if overwrite || !out.contains_key(name) {
                out.insert(name.clone(), q);
            }
        }
    }
    Ok(out)
}

fn add(into: &mut Requests, r: &Requests) {
    for (k, v) in r {
        let e = into.entry(k.clone()).or_default();
        *e = e.plus(*v);
    }
}

fn max_into(into: &mut Requests, r: &Requests) {
    for (k, v) in r {
        let e = into.entry(k.clone()).or_default();
        if *v > *e {
            *e = *v;
        }
    }
}

/// True for an init container with `restartPolicy: Always` (a native sidecar).
pub fn is_native_sidecar(c: &Value) -> bool {
    c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
}

/// Computes the effective requests of a pod spec.
pub fn effective(spec: &Value) -> Result<Effective, ResourceError> {
    let mut e = Effective::default();
    let mut sidecars = Requests::new();
    let inits = spec.get("initContainers").and_then(Value::as_array);
    for (i, c) in inits.into_iter().flatten().enumerate() {
        let r = container_requests(c, &format!("initContainers[{i}]"))?;
        add(&mut e.naive_sum, &r);
        max_into(&mut e.as_plain_init, &r);
        let demand = if is_native_sidecar(c) {
            add(&mut sidecars, &r);
            sidecars.clone()
        } else {
            let mut d = r.clone();
            add(&mut d, &sidecars);
            d
        };
        max_into(&mut e.init_phase, &demand);
    }
    let mut apps = Requests::new();
    let cs = spec.get("containers").and_then(Value::as_array);
    for (i, c) in cs.into_iter().flatten().enumerate() {
        let r = container_requests(c, &format!("containers[{i}]"))?;
        add(&mut e.naive_sum, &r);
        add(&mut apps, &r);
    }
    // Pre-1.28 accounting: app containers summed, init containers (sidecars too) max'ed.
    let plain = std::mem::take(&mut e.as_plain_init);
    e.as_plain_init = apps.clone();
    max_into(&mut e.as_plain_init, &plain);
    e.run_phase = apps;
    add(&mut e.run_phase, &sidecars);
    e.total = e.run_phase.clone();
    max_into(&mut e.total, &e.init_phase);
    if let Some(overhead) = spec.get("overhead") {
        let o = container_requests(
            &serde_json::json!({"resources": {"requests": overhead}}),
            "overhead",
        )?;
        add(&mut e.total, &o);
        add(&mut e.naive_sum, &o);
        add(&mut e.as_plain_init, &o);
    }
    Ok(e)
}

/// `cpu 600m, memory 256Mi` (resources in name order; `none` when empty).
pub fn describe(r: &Requests) -> String {
    let parts: Vec<String> = r
        .iter()
        .map(|(k, v)| format!("{k} {}", v.display_for(k)))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// Requests as JSON-friendly text values (`{"cpu": "600m", "memory": "256Mi"}`).
pub fn to_text_map(r: &Requests) -> BTreeMap<String, String> {
    r.iter()
        .map(|(k, v)| (k.clone(), v.display_for(k)))
        .collect()
}

/// Serializable form of [`Effective`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectiveText {
    /// What the scheduler reserves.
    pub total: BTreeMap<String, String>,
    /// The largest init-phase demand.
    pub init_phase: BTreeMap<String, String>,
    /// Sidecars plus app containers.
    pub run_phase: BTreeMap<String, String>,
    /// Every container added up.
    pub naive_sum: BTreeMap<String, String>,
}

impl Effective {
    /// The text form for JSON output.
    pub fn to_text(&self) -> EffectiveText {
        EffectiveText {
            total: to_text_map(&self.total),
            init_phase: to_text_map(&self.init_phase),
            run_phase: to_text_map(&self.run_phase),
            naive_sum: to_text_map(&self.naive_sum),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(name: &str, cpu: &str, mem: &str, sidecar: bool) -> Value {
        let mut v = json!({"name": name, "resources": {"requests": {"cpu": cpu, "memory": mem}}});
        if sidecar {
            v["restartPolicy"] = json!("Always");
        }
        v
    }

    fn text(r: &Requests) -> String {
        describe(r)
    }

    /// The example of the Kubernetes docs for sidecar resource sharing.
    #[test]
    fn scheduler_counting() {
        let spec = json!({
            "initContainers": [
                c("sidecar-1", "100m", "64Mi", true),
                c("setup", "500m", "128Mi", false),
                c("sidecar-2", "200m", "32Mi", true),
            ],
            "containers": [c("app", "300m", "256Mi", false)]
        });
        let e = effective(&spec).unwrap();
        // init phase: max(100m, 500m+100m, 100m+200m) = 600m; memory max(64, 192, 96) = 192Mi
        assert_eq!(text(&e.init_phase), "cpu 600m, memory 192Mi");
        // run phase: 300m + 100m + 200m = 600m; 256 + 64 + 32 = 352Mi
        assert_eq!(text(&e.run_phase), "cpu 600m, memory 352Mi");
        assert_eq!(text(&e.total), "cpu 600m, memory 352Mi");
        assert_eq!(text(&e.naive_sum), "cpu 1100m, memory 480Mi");
        // Old accounting: max(init) vs sum(app) = max(500m, 300m), max(128, 256)
        assert_eq!(text(&e.as_plain_init), "cpu 500m, memory 256Mi");
    }

    #[test]
    fn init_phase_can_dominate() {
        let spec = json!({
            "initContainers": [c("proxy", "100m", "10Mi", true), c("migrate", "2", "1Gi", false)],
            "containers": [c("app", "100m", "10Mi", false)]
        });
        let e = effective(&spec).unwrap();
        assert_eq!(text(&e.total), "cpu 2100m, memory 1034Mi");
    }

    #[test]
    fn limits_stand_in_and_overhead_adds() {
        let spec = json!({
            "overhead": {"cpu": "50m"},
            "containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"memory": "512Mi"}}}]
        });
        let e = effective(&spec).unwrap();
        assert_eq!(text(&e.total), "cpu 1050m, memory 512Mi");
        let none = effective(&json!({"containers": [{"name": "a"}]})).unwrap();
        assert_eq!(text(&none.total), "none");
    }

    #[test]
    fn bad_quantities_name_the_field() {
        let spec =
            json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "lots"}}}]});
        let err = effective(&spec).unwrap_err();
        assert_eq!(err.field, "containers[0].resources.requests.cpu");
        let num = json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": 2}}}]});
        assert_eq!(text(&effective(&num).unwrap().total), "cpu 2");
    }
}
