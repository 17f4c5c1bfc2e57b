//! Errors from the cluster, classified so that a user learns what to fix: which
//! permission (verb + resource) was missing, or that no cluster could be reached.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// One API access: a verb on a resource (optionally a subresource, in a namespace),
/// or on a non-resource URL such as `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    /// `get`, `list`, `create`, `patch`, `watch`, …
    pub verb: String,
    /// `pods`, `nodes/proxy`, `mutatingwebhookconfigurations.admissionregistration.k8s.io`,
    /// or a non-resource URL (starting with `/`).
    pub resource: String,
    /// The namespace, for namespaced resources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Access {
    /// A verb on a resource across the cluster (or a non-resource URL).
    pub fn new(verb: &str, resource: &str) -> Self {
        Self {
            verb: verb.into(),
            resource: resource.into(),
            namespace: None,
        }
    }

    /// The same access in one namespace.
    pub fn in_namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.into());
        self
    }

    /// The `kubectl auth can-i` line that checks this access.
    pub fn can_i(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("kubectl auth can-i {} {} -n {ns}", self.verb, self.resource),
            None => format!("kubectl auth can-i {} {}", self.verb, self.resource),
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if let Some(ns) = &self.namespace {
            write!(f, " in namespace {ns}")?;
        }
        Ok(())
    }
}

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No kubeconfig, context or in-cluster configuration could be used.
    #[error("no cluster to talk to: {0}")]
    NoCluster(String),
    /// The identity lacks a permission.
    #[error("forbidden: cannot {access} ({message})")]
    Forbidden {
        /// The access that was refused.
        access: Access,
        /// The API server's message.
        message: String,
    },
    /// The credentials were rejected (401).
    #[error("the API server rejected the credentials while trying to {access}: {message}")]
    Unauthorized {
        /// What was being attempted.
        access: Access,
        /// The API server's message.
        message: String,
    },
    /// The API server could not be reached at all.
    #[error("cannot reach the API server (while trying to {access}): {message}")]
    Unreachable {
        /// What was being attempted.
        access: Access,
        /// The transport error.
        message: String,
    },
    /// The object does not exist.
    #[error("not found while trying to {access}: {message}")]
    NotFound {
        /// What was being attempted.
        access: Access,
        /// The API server's message.
        message: String,
    },
    /// The API server answered with another error.
    #[error("{access} failed ({code}): {message}")]
    Api {
        /// What was being attempted.
        access: Access,
        /// HTTP status code.
        code: u16,
        /// The API server's message.
        message: String,
    },
    /// The request did not finish in time.
    #[error("{access} timed out after {after:?}")]
    Timeout {
        /// What was being attempted.
        access: Access,
        /// The limit.
        after: Duration,
    },
    /// Anything else (bad response, serialization).
    #[error("{access} failed: {message}")]
    Other {
        /// What was being attempted.
        access: Access,
        /// What happened.
        message: String,
    },
}

impl KubeError {
    /// Classifies a kube error for an access.
    pub fn from_kube(access: Access, err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) => {
                let message = if status.message.is_empty() {
                    status.reason.clone()
                } else {
                    status.message.clone()
                };
                match status.code {
                    // RBAC says "User \"x\" cannot <verb> …"; other 403s are admission
                    // plugins refusing the object (a missing ServiceAccount, a quota).
                    403 if message.contains(" cannot ") => KubeError::Forbidden { access, message },
                    401 => KubeError::Unauthorized { access, message },
                    404 => KubeError::NotFound { access, message },
                    code => KubeError::Api {
                        access,
                        code,
                        message,
                    },
                }
            }
            e @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => KubeError::Unreachable {
                access,
                message: error_chain(&e),
            },
            e => KubeError::Other {
                access,
                message: error_chain(&e),
            },
        }
    }

    /// The refused access, when this is a permission problem.
    pub fn forbidden(&self) -> Option<&Access> {
        match self {
            KubeError::Forbidden { access, .. } => Some(access),
            _ => None,
        }
    }

    /// True when the doctor can't go on at all: no cluster, bad credentials, unreachable.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            KubeError::NoCluster(_)
                | KubeError::Unauthorized { .. }
                | KubeError::Unreachable { .. }
        )
    }
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, msg: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(msg, "Forbidden")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn names_the_refused_access() {
        let a = Access::new("get", "nodes/proxy");
        let e = KubeError::from_kube(
            a.clone(),
            status(
                403,
                "nodes \"n1\" is forbidden: User \"u\" cannot get resource \"nodes/proxy\"",
            ),
        );
        assert_eq!(e.forbidden(), Some(&a));
        assert!(e.to_string().contains("cannot get nodes/proxy"), "{e}");
        let e = KubeError::from_kube(
            Access::new("list", "pods").in_namespace("shop"),
            status(403, "User \"u\" cannot list resource \"pods\""),
        );
        assert!(e.to_string().contains("list pods in namespace shop"), "{e}");
        assert!(!e.is_fatal());
        let e = KubeError::from_kube(Access::new("get", "/version"), status(401, "Unauthorized"));
        assert!(e.is_fatal());
        let e = KubeError::from_kube(
            Access::new("create", "pods"),
            status(403, "error looking up service account default/default"),
        );
        assert!(
            e.forbidden().is_none(),
            "an admission refusal is not a missing permission"
        );
        let e = KubeError::from_kube(Access::new("get", "nodes"), status(500, "boom"));
        assert!(matches!(e, KubeError::Api { code: 500, .. }));
    }

    #[test]
    fn can_i_lines() {
        assert_eq!(
            Access::new("create", "pods").in_namespace("x").can_i(),
            "kubectl auth can-i create pods -n x"
        );
        assert_eq!(
            Access::new("get", "/metrics").can_i(),
            "kubectl auth can-i get /metrics"
        );
    }
}
