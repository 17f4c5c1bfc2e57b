//! The names of tandem's container images: the one place that names the registry, the
//! repositories and the tag.
//!
//! `tandem install`, the built-in config (`shim.image`), the Helm chart's defaults and
//! `packaging/build.sh` all take their image names from here (the chart's `values.yaml`,
//! `Chart.yaml` and `default-config.yaml` hold copies that a test compares with these
//! constants, since YAML cannot refer to Rust). The tag is the workspace version, so a
//! release bumps every name at once. Publishing to another registry: see
//! `packaging/README.md`.

/// The registry and namespace of the published images (a macro so that the full names
/// below can be built with `concat!`; `packaging/lib.sh` reads the line below).
macro_rules! registry {
    () => {
        "ghcr.io/tandem-dev"
    };
}

/// The registry and namespace the images are published under.
pub const REGISTRY: &str = registry!();
/// The tag of both images: tandem's version.
pub const TAG: &str = env!("CARGO_PKG_VERSION");
/// Repository of the `tandem` image (entrypoint `/tandem`: webhook, label-nodes, doctor).
pub const TANDEM_REPOSITORY: &str = concat!(registry!(), "/tandem");
/// Repository of the `tandem-shim` image (entrypoint `/tandem-shim`; `shim.delivery: copy`).
pub const SHIM_REPOSITORY: &str = concat!(registry!(), "/tandem-shim");
/// The `tandem` image, repository and tag.
pub const TANDEM_IMAGE: &str = concat!(registry!(), "/tandem:", env!("CARGO_PKG_VERSION"));
/// The `tandem-shim` image, repository and tag (the built-in `shim.image`).
pub const SHIM_IMAGE: &str = concat!(registry!(), "/tandem-shim:", env!("CARGO_PKG_VERSION"));
/// Where the source lives (the images' `org.opencontainers.image.source`).
pub const SOURCE: &str = "https://github.com/tandem-dev/tandem";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_built_from_the_parts() {
        assert_eq!(TANDEM_IMAGE, format!("{TANDEM_REPOSITORY}:{TAG}"));
        assert_eq!(SHIM_IMAGE, format!("{SHIM_REPOSITORY}:{TAG}"));
        assert!(TANDEM_REPOSITORY.starts_with(REGISTRY));
    }

    #[test]
    fn the_built_in_config_names_the_shim_image() {
        let config = crate::Config::from_yaml(crate::config::DEFAULT_CONFIG_YAML).unwrap();
        assert_eq!(config.shim.image, SHIM_IMAGE);
        assert_eq!(crate::config::ShimConfig::default().image, SHIM_IMAGE);
    }
}
