//! `tandem version`: the CLI's version, and with `--server` the installed webhook's (its
//! `/version`, read through the API server's service proxy, or straight from a webhook
//! registered by URL; the Deployment's `app.kubernetes.io/version` label otherwise).

use std::io::Write as _;
use std::process::ExitCode;

use serde_json::{Value, json};
use tandem_doctor::tandem_checks::{self, Endpoint, TandemTarget};

/// Output format of `tandem version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// `Client Version: …` lines.
    #[default]
    Text,
    /// JSON (`clientVersion`, `serverVersion`).
    Json,
    /// YAML, the same fields.
    Yaml,
}

/// Flags of `tandem version`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Also read the version of the webhook installed in the cluster.
    #[arg(long)]
    pub server: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Where tandem is installed.
    #[command(flatten)]
    pub target: TandemTarget,
    /// Which cluster.
    #[command(flatten)]
    pub cluster: tandem_kube::ClusterArgs,
}

fn client_version() -> Value {
    json!({
        "version": tandem_webhook::metrics::VERSION,
        "gitCommit": tandem_webhook::metrics::git_commit(),
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

async fn server_version(args: &Args) -> anyhow::Result<Value> {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, ListParams};
    let client = tandem_kube::connect(&args.cluster).await?;
    let mwcs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let endpoint = match mwcs.get_opt(&args.target.webhook_configuration).await {
        Ok(Some(m)) => Endpoint::of(&m),
        Ok(None) => None,
        Err(e) => anyhow::bail!(
            "reading MutatingWebhookConfiguration {}: {e}",
            args.target.webhook_configuration
        ),
    };
    let endpoint = endpoint.unwrap_or(Endpoint::Service {
        namespace: args.target.tandem_namespace.clone(),
        name: args.target.tandem_service.clone(),
        port: 443,
    });
    let first_error = match tandem_checks::webhook_info(&client, &endpoint).await {
        Ok(info) => {
            return Ok(
                json!({"version": info.version, "gitCommit": info.git_commit, "source": info.via}),
            );
        }
        Err(e) => e,
    };
    // An older webhook without /version, or no proxy permission: the Deployment's label.
    let deployments: Api<Deployment> = Api::namespaced(client, &args.target.tandem_namespace);
    let list = deployments
        .list(&ListParams::default().labels("app.kubernetes.io/name=tandem-webhook"))
        .await;
    if let Some(v) = list.ok().and_then(|l| {
        l.items.into_iter().find_map(|d| {
            d.metadata
                .labels
                .and_then(|l| l.get("app.kubernetes.io/version").cloned())
        })
    }) {
        return Ok(
            json!({"version": v, "source": format!("deployment label app.kubernetes.io/version in {}", args.target.tandem_namespace)}),
        );
    }
    anyhow::bail!(
        "could not read the webhook's version: {first_error}; and no Deployment labelled \
         app.kubernetes.io/name=tandem-webhook with app.kubernetes.io/version in {} \
         (--tandem-namespace)",
        args.target.tandem_namespace
    )
}

/// Prints the versions; exit 1 if `--server` could not read the webhook's.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut doc = json!({"clientVersion": client_version()});
    let mut code = ExitCode::SUCCESS;
    let mut server_error = None;
    if args.server {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        match rt.block_on(server_version(&args)) {
            Ok(v) => doc["serverVersion"] = v,
            Err(e) => {
                server_error = Some(format!("{e:#}"));
                code = ExitCode::from(1);
            }
        }
    }
    let mut out = std::io::stdout().lock();
    match args.output {
        Format::Text => {
            writeln!(
                out,
                "Client Version: v{}",
                doc["clientVersion"]["version"].as_str().unwrap_or("?")
            )?;
            if let Some(s) = doc.get("serverVersion") {
                writeln!(
                    out,
                    "Server Version: v{} ({})",
                    s["version"].as_str().unwrap_or("?"),
                    s["source"].as_str().unwrap_or("?")
                )?;
            }
        }
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?,
        Format::Yaml => out.write_all(tandem_core::manifest::to_yaml(&doc).as_bytes())?,
    }
    if let Some(e) = server_error {
        eprintln!("tandem version: --server: {e}");
    }
    Ok(code)
}
