//! `tandem status`: workloads whose pods run an outdated revision of a sidecar object or
//! of the webhook's configuration.
//! The grouping is `tandem_core::outdated`; this file reads the cluster and prints.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde_json::{Value, json};
use tandem_core::api::{ClusterSidecar, Sidecar};
use tandem_core::catalog::{Catalog, SidecarObject};
use tandem_core::outdated::{CurrentConfig, Outdated, outdated};

/// Flags of `tandem status`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Lists, per sidecar object, the workloads whose pods were injected with another
revision of it than the current one (or with an object that was deleted), and the
workloads whose pods got the sidecars of an older webhook configuration (after a helm
upgrade that changed them; SIDECAR Config/tandem-config, read from the ConfigMap in
--tandem-namespace): the pods that `tandem rollout` would restart. A revision is a hash
of the object's spec (of the configuration's sidecars and volumes); pods record it in
their tandem.dev/status annotation.

Examples:
  tandem status
  tandem status -n shop -o json"
)]
pub struct Args {
    #[command(flatten)]
    pub scope: Scope,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Which pods to look at (shared with `tandem rollout`).
#[derive(Debug, Clone, clap::Args)]
pub struct Scope {
    /// Only this namespace (default: all namespaces).
    #[arg(short, long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Only this sidecar object (by name; `tandem-config` for the webhook's configuration).
    #[arg(long, value_name = "NAME")]
    pub sidecar: Option<String>,
    /// Where tandem runs: the ConfigMap `tandem-config` there (the Helm chart's and
    /// `tandem install`'s) holds the configuration whose sidecars new pods get.
    #[arg(long, value_name = "NAMESPACE", default_value = "tandem-system")]
    pub tandem_namespace: String,
    #[command(flatten)]
    pub cluster: tandem_kube::ClusterArgs,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A table.
    Text,
    /// A JSON array.
    Json,
}

/// Reads the sidecar objects and pods, and groups the outdated pods by workload
/// (a ReplicaSet's pods count for its Deployment).
pub async fn gather(client: &kube::Client, scope: &Scope) -> Result<Vec<Outdated>> {
    let mut objects = Vec::new();
    for ar in [
        ApiResource::erase::<Sidecar>(&()),
        ApiResource::erase::<ClusterSidecar>(&()),
    ] {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let list = api.list(&ListParams::default()).await.with_context(|| {
            format!(
                "listing {} (are tandem's CRDs installed? `tandem install` includes them)",
                ar.plural
            )
        })?;
        for o in list.items {
            let mut v = serde_json::to_value(&o)?;
            v["apiVersion"] = json!(tandem_core::api::API_VERSION);
            v["kind"] = json!(ar.kind);
            objects.push(SidecarObject::from_value(&v));
        }
    }
    let catalog = Catalog::build(objects);
    let pods_ar = ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&());
    let pods: Api<DynamicObject> = match &scope.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &pods_ar),
        None => Api::all_with(client.clone(), &pods_ar),
    };
    let mut values = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = pods.list(&params).await.context("listing pods")?;
        for p in &page.items {
            values.push(serde_json::to_value(p)?);
        }
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => break,
        }
    }
    let config = current_config(client, &scope.tandem_namespace).await;
    let mut found = outdated(values.iter(), &catalog, config.as_ref());
    if let Some(name) = &scope.sidecar {
        found.retain(|o| &o.sidecar == name);
    }
    // A ReplicaSet's pods belong to its Deployment.
    let mut deployments: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
    for o in &mut found {
        if o.owner_kind != "ReplicaSet" {
            continue;
        }
        let key = (o.namespace.clone(), o.owner_name.clone());
        if !deployments.contains_key(&key) {
            let rs: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
                Api::namespaced(client.clone(), &o.namespace);
            let owner = rs
                .get_opt(&o.owner_name)
                .await
                .ok()
                .flatten()
                .and_then(|rs| {
                    rs.metadata
                        .owner_references?
                        .into_iter()
                        .find(|r| r.controller == Some(true) && r.kind == "Deployment")
                });
            deployments.insert(key.clone(), owner.map(|r| r.name));
        }
        if let Some(Some(d)) = deployments.get(&key) {
            o.owner_kind = "Deployment".into();
            o.owner_name = d.clone();
        }
    }
    // Merge groups that now name the same workload.
    let mut merged: BTreeMap<(String, String, String, String, String), Outdated> = BTreeMap::new();
    for o in found {
        let key = (
            o.namespace.clone(),
            o.owner_kind.clone(),
            o.owner_name.clone(),
            format!("{}/{}", o.sidecar_kind, o.sidecar),
            o.pod_revision.clone(),
        );
        match merged.get_mut(&key) {
            Some(m) => m.pods.extend(o.pods),
            None => {
                merged.insert(key, o);
            }
        }
    }
    Ok(merged.into_values().collect())
}

/// The ConfigMap the webhook reads its configuration from (chart and `tandem install`).
pub const CONFIG_MAP: &str = "tandem-config";

/// The webhook's configuration now, from its ConfigMap; `None` (said on stderr) when
/// it can't be read, so that sidecar objects are still reported.
async fn current_config(client: &kube::Client, namespace: &str) -> Option<CurrentConfig> {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), namespace);
    let why = match api.get_opt(CONFIG_MAP).await {
        Ok(Some(cm)) => match cm.data.as_ref().and_then(|d| d.get("config.yaml")) {
            Some(text) => match tandem_core::config::Config::from_yaml(text) {
                Ok(c) => {
                    return Some(CurrentConfig {
                        name: CONFIG_MAP.into(),
                        revision: c.sidecars_revision(),
                    });
                }
                Err(e) => format!("its config.yaml does not read: {e}"),
            },
            None => "it has no config.yaml".into(),
        },
        Ok(None) => return None, // tandem runs elsewhere, or not from a ConfigMap
        Err(e) => tandem_kube::error::error_chain(&e),
    };
    eprintln!(
        "warning: configmap {namespace}/{CONFIG_MAP}: {why}; pods of older configurations are not listed"
    );
    None
}

/// A table of outdated workloads.
pub fn table(found: &[Outdated]) -> String {
    let mut rows = vec![[
        "NAMESPACE".to_string(),
        "WORKLOAD".into(),
        "SIDECAR".into(),
        "PODS".into(),
        "RUNNING".into(),
        "CURRENT".into(),
    ]];
    for o in found {
        rows.push([
            o.namespace.clone(),
            format!("{}/{}", o.owner_kind, o.owner_name),
            format!("{}/{}", o.sidecar_kind, o.sidecar),
            o.pods.len().to_string(),
            o.pod_revision.clone(),
            o.current_revision
                .clone()
                .unwrap_or_else(|| "(deleted)".into()),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                if i == 5 {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
                }
            }
            line.trim_end().to_string() + "\n"
        })
        .collect()
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs `tandem status`: exit 0 (with or without outdated pods; see the output).
pub fn run(args: Args) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let client = tandem_kube::connect(&args.scope.cluster).await?;
        let found = gather(&client, &args.scope).await?;
        match args.output {
            Output::Json => {
                let v: Value = serde_json::to_value(&found)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            Output::Text if found.is_empty() => {
                println!("every injected pod runs the current revision of its sidecar objects")
            }
            Output::Text => print!("{}", table(&found)),
        }
        Ok(ExitCode::SUCCESS)
    })
}
