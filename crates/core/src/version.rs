//! Kubernetes version strings as clusters really report them.
//!
//! Parsing follows apimachinery's `ParseGeneric`: an optional `v`, then
//! `MAJOR.MINOR[.PATCH]`, then anything (`-eks-036c24b`, `+k3s1`, `-gke.1000`).
//! Only major and minor decide behaviour; the suffix is kept for display.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A parsed Kubernetes component version (kubelet or API server).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KubeVersion {
    /// Major version (always 1 in practice).
    pub major: u32,
    /// Minor version: the number that decides features.
    pub minor: u32,
    /// Patch version, 0 when absent.
    pub patch: u32,
    /// Whatever followed the numbers (`-eks-036c24b`, `+k3s1`), empty if nothing.
    pub suffix: String,
}

/// Why a version string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a Kubernetes version: {reason} (expected e.g. v1.29.3 or 1.30)")]
pub struct VersionError {
    /// The text that was given.
    pub input: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

impl KubeVersion {
    /// A version from its major and minor numbers.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self {
            major,
            minor,
            patch: 0,
            suffix: String::new(),
        }
    }

    /// Parses a version like apimachinery's `ParseGeneric` does.
    pub fn parse(input: &str) -> Result<Self, VersionError> {
        let err = |reason| VersionError {
            input: input.to_string(),
            reason,
        };
        let trimmed = input.trim();
        let s = trimmed.strip_prefix('v').unwrap_or(trimmed);
        let (major, rest) = take_number(s).ok_or_else(|| err("no major version"))?;
        let rest = rest
            .strip_prefix('.')
            .ok_or_else(|| err("no minor version"))?;
        let (minor, rest) = take_number(rest).ok_or_else(|| err("no minor version"))?;
        let (patch, rest) = match rest.strip_prefix('.') {
            Some(after) => take_number(after).ok_or_else(|| err("bad patch version"))?,
            None => (0, rest),
        };
        if !(rest.is_empty() || rest.starts_with('-') || rest.starts_with('+')) {
            return Err(err("unexpected text after the version numbers"));
        }
        Ok(Self {
            major,
            minor,
            patch,
            suffix: rest.to_string(),
        })
    }

    /// True when this version is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// `major.minor` as a short label, e.g. `1.28`.
    pub fn minor_label(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
}

/// Reads a run of ASCII digits without leading zeros (as semver requires),
/// returning the number and the rest.
fn take_number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let digits = &s[..end];
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    Some((digits.parse().ok()?, &s[end..]))
}

impl FromStr for KubeVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "v{}.{}.{}{}",
            self.major, self.minor, self.patch, self.suffix
        )
    }
}

impl serde::Serialize for KubeVersion {
    /// Serialized as the text Kubernetes reports (`v1.29.3-eks-1a2b`).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl PartialOrd for KubeVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KubeVersion {
    /// Orders by major, minor, patch; the suffix only breaks ties.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch, &self.suffix).cmp(&(
            other.major,
            other.minor,
            other.patch,
            &other.suffix,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_versions_as_clusters_report_them() {
        let cases = [
            ("v1.29.3", (1, 29, 3, "")),
            ("1.30", (1, 30, 0, "")),
            ("v1.30.1+k3s1", (1, 30, 1, "+k3s1")),
            ("v1.28.9-eks-036c24b", (1, 28, 9, "-eks-036c24b")),
            ("v1.31.2-gke.1000", (1, 31, 2, "-gke.1000")),
            ("v1.31.4-gke.1183000", (1, 31, 4, "-gke.1183000")),
            ("v1.27.0-alpha.1", (1, 27, 0, "-alpha.1")),
            (" v1.33.0 ", (1, 33, 0, "")),
        ];
        for (input, (major, minor, patch, suffix)) in cases {
            let v = KubeVersion::parse(input).unwrap();
            assert_eq!(
                (v.major, v.minor, v.patch, v.suffix.as_str()),
                (major, minor, patch, suffix),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_version() {
        for input in [
            "", "v", "1", "v1", "1.", "1.x", "latest", "v1.29.3x", "01.29", "1.029", "1.29.",
        ] {
            assert!(KubeVersion::parse(input).is_err(), "{input:?} parsed");
        }
    }

    #[test]
    fn orders_by_numbers() {
        let a = KubeVersion::parse("v1.28.15").unwrap();
        let b = KubeVersion::parse("v1.29.0").unwrap();
        assert!(a < b);
        assert!(b.at_least(1, 29));
        assert!(!a.at_least(1, 29));
        assert_eq!(a.minor_label(), "1.28");
    }

    proptest! {
        #[test]
        fn display_round_trips(major in 0u32..5, minor in 0u32..100, patch in 0u32..1000,
                               suffix in "(|[-+][a-z0-9.]{1,12})") {
            let v = KubeVersion { major, minor, patch, suffix };
            let again = KubeVersion::parse(&v.to_string()).unwrap();
            prop_assert_eq!(again, v);
        }

        #[test]
        fn never_panics(input in ".{0,40}") {
            let _ = KubeVersion::parse(&input);
        }

        #[test]
        fn suffix_never_changes_major_minor(minor in 0u32..100, suffix in "[-+][ -~]{0,20}") {
            let v = KubeVersion::parse(&format!("v1.{minor}.3{suffix}")).unwrap();
            prop_assert_eq!((v.major, v.minor, v.patch), (1, minor, 3));
        }
    }
}
