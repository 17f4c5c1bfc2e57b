//! The five ways one sidecar can be placed into one pod.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How sidecars are placed into a pod, as a user asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Init container with `restartPolicy: Always`, ahead of the pod's own init containers.
    Native,
    /// Regular container, as injectors did before Kubernetes 1.29.
    Legacy,
    /// `native`, plus a required node affinity on `tandem.dev/native-sidecars=true`.
    Affinity,
    /// Both copies and `tandem-shim`, so exactly one acts on any node.
    Universal,
    /// Decided per pod from what is known about the nodes it can land on.
    Auto,
}

/// A mode that says exactly what to do: every [`Mode`] except `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// See [`Mode::Native`].
    Native,
    /// See [`Mode::Legacy`].
    Legacy,
    /// See [`Mode::Affinity`].
    Affinity,
    /// See [`Mode::Universal`].
    Universal,
}

/// A mode name that isn't one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?}: expected one of native, legacy, affinity, universal, auto")]
pub struct ModeError(pub String);

impl Mode {
    /// Every mode, in the order the docs list them.
    pub const ALL: [Mode; 5] = [
        Mode::Native,
        Mode::Legacy,
        Mode::Affinity,
        Mode::Universal,
        Mode::Auto,
    ];

    /// The mode's name as users write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Legacy => "legacy",
            Mode::Affinity => "affinity",
            Mode::Universal => "universal",
            Mode::Auto => "auto",
        }
    }

    /// The placement this mode fixes, or `None` for `auto`.
    pub fn fixed(self) -> Option<Placement> {
        match self {
            Mode::Native => Some(Placement::Native),
            Mode::Legacy => Some(Placement::Legacy),
            Mode::Affinity => Some(Placement::Affinity),
            Mode::Universal => Some(Placement::Universal),
            Mode::Auto => None,
        }
    }
}

impl Placement {
    /// The placement's name as users write it.
    pub fn as_str(self) -> &'static str {
        Mode::from(self).as_str()
    }

    /// True when the sidecar runs as an init container with `restartPolicy: Always`
    /// on a capable node (every placement but `legacy`).
    pub fn uses_native_field(self) -> bool {
        !matches!(self, Placement::Legacy)
    }
}

impl From<Placement> for Mode {
    fn from(p: Placement) -> Self {
        match p {
            Placement::Native => Mode::Native,
            Placement::Legacy => Mode::Legacy,
            Placement::Affinity => Mode::Affinity,
            Placement::Universal => Mode::Universal,
        }
    }
}

impl FromStr for Mode {
    type Err = ModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ModeError(s.to_string()))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>().unwrap(), m);
        }
        assert!("Native".parse::<Mode>().is_err());
        assert_eq!(Mode::Auto.fixed(), None);
        assert_eq!(Mode::Affinity.fixed(), Some(Placement::Affinity));
    }
}
