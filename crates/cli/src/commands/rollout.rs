//! `tandem rollout`: restart the workloads whose pods run an outdated revision of a
//! sidecar object (what `tandem status` lists), one at a time at a set pace. Dry run
//! unless `--yes`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::status::{Scope, gather, runtime};

/// Flags of `tandem rollout`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Restarts each Deployment, StatefulSet and DaemonSet with pods on an outdated
sidecar revision the way `kubectl rollout restart` does (a kubectl.kubernetes.io/restartedAt
annotation on its pod template), so that its own rollout strategy replaces the pods and
the webhook injects the current revision. Other owners (bare pods, Jobs, ReplicaSets
without a Deployment) are listed, not touched: delete their pods to re-create them.

Without --yes it only prints what it would do (a dry run).

Examples:
  tandem rollout                          # what would be restarted
  tandem rollout --yes --interval 1m      # one workload a minute
  tandem rollout --yes -n shop --sidecar proxy --max 5"
)]
pub struct Args {
    #[command(flatten)]
    pub scope: Scope,
    /// Restart for real (default: a dry run that prints the plan).
    #[arg(long)]
    pub yes: bool,
    /// Pause between two restarts (the rate: one workload per interval).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Restart at most this many workloads, then stop.
    #[arg(long, value_name = "N")]
    pub max: Option<usize>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    tandem_core::config::duration_text::parse(s)
}

/// Runs `tandem rollout`.
pub fn run(args: Args) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let client = tandem_kube::connect(&args.scope.cluster).await?;
        let found = gather(&client, &args.scope).await?;
        let mut workloads: Vec<(String, String, String, String)> = Vec::new();
        for o in &found {
            let w = (
                o.namespace.clone(),
                o.owner_kind.clone(),
                o.owner_name.clone(),
                format!(
                    "{} pod(s) on {}/{} revision {} (now {})",
                    o.pods.len(),
                    o.sidecar_kind.as_str(),
                    o.sidecar,
                    o.pod_revision,
                    o.current_revision.as_deref().unwrap_or("deleted")
                ),
            );
            match workloads
                .iter_mut()
                .find(|x| x.0 == w.0 && x.1 == w.1 && x.2 == w.2)
            {
                Some(x) => {
                    x.3.push_str("; ");
                    x.3.push_str(&w.3);
                }
                None => workloads.push(w),
            }
        }
        if workloads.is_empty() {
            println!("nothing to restart: every injected pod runs the current revision");
            return Ok(ExitCode::SUCCESS);
        }
        let mut restarted = 0usize;
        for (ns, kind, name, why) in &workloads {
            if !matches!(kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet") {
                println!("skip {kind} {ns}/{name}: {why} (not restartable here: delete its pods)");
                continue;
            }
            if args.max.is_some_and(|m| restarted >= m) {
                println!(
                    "stop: --max {} reached; {kind} {ns}/{name} left for later",
                    restarted
                );
                break;
            }
            if !args.yes {
                println!("would restart {kind} {ns}/{name}: {why}");
                restarted += 1;
                continue;
            }
            if restarted > 0 {
                tokio::time::sleep(args.interval).await;
            }
            restart(&client, ns, kind, name).await?;
            println!("restarted {kind} {ns}/{name}: {why}");
            restarted += 1;
        }
        if !args.yes {
            println!(
                "(dry run: add --yes to restart, one every {})",
                tandem_core::config::duration_text::format(args.interval)
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn restart(client: &kube::Client, ns: &str, kind: &str, name: &str) -> Result<()> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let body = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": now}}}}});
    let p = PatchParams::default();
    let patch = Patch::Merge(&body);
    let result = match kind {
        "Deployment" => Api::<Deployment>::namespaced(client.clone(), ns)
            .patch(name, &p, &patch)
            .await
            .map(drop),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), ns)
            .patch(name, &p, &patch)
            .await
            .map(drop),
        _ => Api::<DaemonSet>::namespaced(client.clone(), ns)
            .patch(name, &p, &patch)
            .await
            .map(drop),
    };
    result.with_context(|| format!("restarting {kind} {ns}/{name} (needs patch on it)"))
}
