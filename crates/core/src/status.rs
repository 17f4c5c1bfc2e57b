//! The `tandem.dev/status` annotation: what tandem injected into a pod (the mode and the
//! sidecars' names, plus whatever later parts of tandem add). Every reader goes through
//! [`InjectionStatus::of_pod`] / [`InjectionStatus::parse`], so the format is read in one
//! place; keys this version doesn't know are kept (in [`InjectionStatus::extra`]) and
//! written back unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::mode::Placement;
use crate::names::STATUS_ANNOTATION;

/// The parsed `tandem.dev/status` annotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectionStatus {
    /// The placement tandem used.
    pub mode: Placement,
    /// The injected sidecars' names, in configuration order.
    #[serde(default)]
    pub sidecars: Vec<String>,
    /// Keys written by other parts of tandem (e.g. revisions), kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
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
    /// Reads the annotation's text.
    pub fn parse(text: &str) -> Result<Self, StatusError> {
        serde_json::from_str(text).map_err(|e| StatusError {
            problem: e.to_string(),
        })
    }

    /// The pod's status annotation: `None` when it has none.
    pub fn of_pod(pod: &Value) -> Option<Result<Self, StatusError>> {
        let text = pod
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)?
            .get(STATUS_ANNOTATION)?;
        Some(match text.as_str() {
            Some(t) => Self::parse(t),
            None => Err(StatusError {
                problem: "not a string".into(),
            }),
        })
    }

    /// The annotation's text (compact JSON, `mode` and `sidecars` first).
    pub fn to_annotation(&self) -> String {
        // Serializing strings and maps can't fail.
        serde_json::to_string(self).unwrap_or_default()
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
}
