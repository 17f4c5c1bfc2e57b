//! The `tandem.dev/status` pod annotation: what the injector did to a pod, written once
//! and read by everything that asks afterwards (`tandem status`, `tandem rollout`, the
//! doctor). Writing and reading it live here only, so that its format has one owner.
//!
//! ```json
//! {"mode":"native","sidecars":["log-shipper","proxy"],
//!  "objects":[{"kind":"ClusterSidecar","name":"proxy","revision":"3f9a1c0b2e","mode":"native"}]}
//! ```
//! `mode` is the pod's placement, `sidecars` every injected sidecar container in order
//! (from the config file and from objects), `objects` (left out when empty, so pods
//! injected from the config alone read as before) each sidecar object with the revision
//! of its spec ([`crate::catalog::revision`]) and its own placement. Unknown keys are
//! ignored when reading, so the format can grow.

use serde::{Deserialize, Serialize};

use crate::catalog::Kind;
use crate::mode::Placement;

/// The parsed annotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodStatus {
    /// The pod's placement.
    pub mode: Placement,
    /// Every injected sidecar container, in order.
    #[serde(default)]
    pub sidecars: Vec<String>,
    /// The sidecar objects injected, with their revisions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<InjectedObject>,
}

/// One sidecar object injected into a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedObject {
    /// `Sidecar` or `ClusterSidecar`.
    pub kind: Kind,
    /// Its name (a `Sidecar` is in the pod's namespace).
    pub name: String,
    /// The revision of its spec when the pod was injected.
    pub revision: String,
    /// How its sidecars were placed.
    pub mode: Placement,
}

/// Why an annotation can't be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation tandem.dev/status: {0}")]
pub struct StatusError(pub String);

impl PodStatus {
    /// Reads the annotation's value.
    pub fn parse(text: &str) -> Result<Self, StatusError> {
        serde_json::from_str(text).map_err(|e| StatusError(e.to_string()))
    }

    /// Reads it from a pod's `metadata` (`Ok(None)`: not injected).
    pub fn from_meta(meta: Option<&serde_json::Value>) -> Result<Option<Self>, StatusError> {
        match meta
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(crate::names::STATUS_ANNOTATION))
        {
            None => Ok(None),
            Some(v) => match v.as_str() {
                Some(text) => Self::parse(text).map(Some),
                None => Err(StatusError("must be a string".into())),
            },
        }
    }

    /// The annotation's value.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_annotations_read_and_new_ones_round_trip() {
        let old = PodStatus::parse(r#"{"mode":"native","sidecars":["proxy"]}"#).unwrap();
        assert!(old.objects.is_empty());
        assert_eq!(old.to_text(), r#"{"mode":"native","sidecars":["proxy"]}"#);
        let new = PodStatus {
            mode: Placement::Universal,
            sidecars: vec!["a".into()],
            objects: vec![InjectedObject {
                kind: Kind::ClusterSidecar,
                name: "a".into(),
                revision: "0123456789".into(),
                mode: Placement::Legacy,
            }],
        };
        assert_eq!(PodStatus::parse(&new.to_text()).unwrap(), new);
        let future = r#"{"mode":"legacy","sidecars":[],"verified":true}"#;
        assert_eq!(PodStatus::parse(future).unwrap().mode, Placement::Legacy);
        assert!(PodStatus::parse("{}").is_err());
    }
}
