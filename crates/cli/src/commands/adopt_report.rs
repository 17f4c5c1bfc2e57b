//! `tandem adopt --from-cluster --report`: the cluster's inventory of legacy sidecars.
//! Lists every pod-carrying workload, runs the same adopt plan as `tandem adopt` on
//! it (nothing is written to the cluster), and reports which workloads could move
//! now, which are blocked and by which nodes, and which Jobs rely on termination
//! workarounds. Text for people, `-o json` for machines.

use std::process::ExitCode;

use anyhow::{Context, Result};
use tandem_core::adopt::Adopter;
use tandem_core::adopt::inventory::{inventory, text};

use crate::commands::inject::{KnowledgeArgs, Output};

/// Runs the inventory against the cluster of `knowledge`'s `--kubeconfig`/`--context`.
pub fn run(adopter: &Adopter<'_>, knowledge: &KnowledgeArgs, output: Output) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let objects = runtime.block_on(async {
        let client = tandem_kube::connect(&knowledge.cluster).await?;
        tandem_kube::workloads::list_workloads(&client).await
    })?;
    let inv = inventory(adopter, &objects);
    let out = match output {
        Output::Json => {
            let mut s = serde_json::to_string_pretty(&inv).context("cannot render JSON")?;
            s.push('\n');
            s
        }
        Output::Yaml => text(&inv),
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
