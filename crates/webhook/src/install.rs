//! `tandem install`: the manifests that run tandem in a cluster.

/// `tandem install`: print the manifests.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {}

/// Renders the manifests as one YAML stream.
pub fn render(_args: &InstallArgs) -> anyhow::Result<String> {
    Ok(String::new())
}
