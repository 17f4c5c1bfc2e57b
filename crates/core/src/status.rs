//! The `tandem.dev/status` pod annotation: what the injector did to a pod, written once
//! and read by everything that asks afterwards (the webhook at reinvocation, `tandem
//! status`, `tandem rollout`, the doctor). Writing and reading it live here only, so that
//! its format has one owner.
//!
//! ```json
//! {"mode":"native","sidecars":["log-shipper","proxy"],
//!  "objects":[{"kind":"ClusterSidecar","name":"proxy","revision":"3f9a1c0b2e","mode":"native"}]}
//! ```
//! (with sidecars from the configuration, also `"configRevision":"5be0d2a91c"`, the
//! revision of that configuration's sidecars.)
//! `mode` is the pod's placement, `sidecars` every injected sidecar container in order
//! (from the config file and from objects), `objects` (left out when empty, so pods
//! injected from the config alone read as before) each sidecar object with the revision
//! of its spec ([`crate::catalog::revision`]) and its own placement. Keys this version
//! doesn't know are kept (in [`InjectionStatus::extra`]) and written back unchanged, so
//! the format can grow.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalog::Kind;
use crate::mode::Placement;
use crate::names::STATUS_ANNOTATION;

/// The parsed `tandem.dev/status` annotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectionStatus {
    /// The pod's placement.
    pub mode: Placement,
    /// Every injected sidecar container, in order.
    #[serde(default)]
    pub sidecars: Vec<String>,
    /// The sidecar objects injected, with their revisions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<InjectedObject>,
    /// The revision of the webhook's configuration whose sidecars were injected
    /// ([`crate::config::Config::sidecars_revision`]); left out when none were.
    #[serde(
        default,
        rename = "configRevision",
        skip_serializing_if = "Option::is_none"
    )]
    pub config_revision: Option<String>,
    /// Keys written by other versions of tandem, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The name the sidecar-object code uses for [`InjectionStatus`].
pub type PodStatus = InjectionStatus;

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

/// A `tandem.dev/status` annotation that can't be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "annotation {STATUS_ANNOTATION} is not tandem's status ({problem}); remove it and create the pod again"
)]
pub struct StatusError {
    /// What is wrong with it.
    pub problem: String,
}

impl InjectionStatus {
    /// A status with no objects and no extra keys.
    pub fn new(mode: Placement, sidecars: Vec<String>) -> Self {
        Self {
            mode,
            sidecars,
            objects: Vec::new(),
            config_revision: None,
            extra: Map::new(),
        }
    }

    /// Reads the annotation's text.
    pub fn parse(text: &str) -> Result<Self, StatusError> {
        serde_json::from_str(text).map_err(|e| StatusError {
            problem: e.to_string(),
        })
    }

    /// The pod's status annotation: `None` when it has none.
    pub fn of_pod(pod: &Value) -> Option<Result<Self, StatusError>> {
        Self::from_meta(pod.get("metadata")).transpose()
    }

    /// Reads it from a pod's `metadata` (`Ok(None)`: not injected).
    pub fn from_meta(meta: Option<&Value>) -> Result<Option<Self>, StatusError> {
        match meta
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(STATUS_ANNOTATION))
        {
            None => Ok(None),
            Some(v) => match v.as_str() {
                Some(text) => Self::parse(text).map(Some),
                None => Err(StatusError {
                    problem: "not a string".into(),
                }),
            },
        }
    }

    /// The annotation's text (compact JSON, `mode` and `sidecars` first).
    pub fn to_annotation(&self) -> String {
        // Serializing strings and maps can't fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The annotation's text (the same as [`InjectionStatus::to_annotation`]).
    pub fn to_text(&self) -> String {
        self.to_annotation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_and_keeps_unknown_keys() {
        let s = InjectionStatus::parse(
            r#"{"mode":"native","sidecars":["proxy"],"revisions":{"proxy":"3"}}"#,
        )
        .unwrap();
        assert_eq!(s.mode, Placement::Native);
        assert_eq!(s.sidecars, ["proxy"]);
        assert_eq!(s.extra["revisions"], json!({"proxy": "3"}));
        assert_eq!(
            s.to_annotation(),
            r#"{"mode":"native","sidecars":["proxy"],"revisions":{"proxy":"3"}}"#
        );
    }

    #[test]
    fn bad_annotations_are_named() {
        let e = InjectionStatus::parse("{}").unwrap_err();
        assert!(e.to_string().contains("tandem.dev/status"), "{e}");
        assert!(InjectionStatus::parse(r#"{"mode":"sideways"}"#).is_err());
        let pod = json!({"metadata": {"annotations": {"tandem.dev/status": 3}}});
        assert!(InjectionStatus::of_pod(&pod).unwrap().is_err());
        assert!(InjectionStatus::of_pod(&json!({"metadata": {}})).is_none());
    }

    #[test]
    fn old_annotations_read_and_new_ones_round_trip() {
        let old = PodStatus::parse(r#"{"mode":"native","sidecars":["proxy"]}"#).unwrap();
        assert!(old.objects.is_empty());
        assert_eq!(old.to_text(), r#"{"mode":"native","sidecars":["proxy"]}"#);
        let mut new = PodStatus::new(Placement::Universal, vec!["a".into()]);
        new.objects.push(InjectedObject {
            kind: Kind::ClusterSidecar,
            name: "a".into(),
            revision: "0123456789".into(),
            mode: Placement::Legacy,
        });
        assert_eq!(PodStatus::parse(&new.to_text()).unwrap(), new);
        let future = r#"{"mode":"legacy","sidecars":[],"verified":true}"#;
        assert_eq!(PodStatus::parse(future).unwrap().mode, Placement::Legacy);
    }
}
