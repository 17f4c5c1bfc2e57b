//! `tandem inject`: offline injection into manifests, printed to stdout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde_json::{Value, json};
use tandem_core::inject::{Injector, PodOutcome};
use tandem_core::knowledge::{ApiServerFacts, ClusterKnowledge, NodeFacts};
use tandem_core::{Config, KubeVersion, Mode, manifest};

use crate::input::{self, Source};

/// Flags of `tandem inject`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tandem inject -f deploy.yaml
  tandem inject -f examples/ --mode universal
  kubectl get deploy web -o yaml | tandem inject -f - --kubelet-version 1.28.3
  tandem inject -f job.yaml --nodes nodes.yaml --apiserver-version 1.31.4 --patch
  tandem inject -f deploy.yaml --from-cluster --context prod

A pod's tandem.dev/mode annotation wins over --mode, which wins over the config's mode.
Exit codes: 0 injected (or nothing to do), 1 bad input or an injection error (nothing
is written to stdout), 2 bad flags.")]
pub struct Args {
    /// Manifest file or folder to read (`-` for stdin); repeatable.
    #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
    files: Vec<PathBuf>,

    /// Also read the subfolders of folders given with -f.
    #[arg(short = 'R', long)]
    recursive: bool,

    /// Configuration file (YAML); the built-in example config when absent.
    #[arg(short, long, value_name = "FILE", env = "TANDEM_CONFIG")]
    config: Option<PathBuf>,

    /// Placement mode for pods without a tandem.dev/mode annotation: native, legacy,
    /// affinity, universal or auto.
    #[arg(short, long, value_parser = parse_mode, value_name = "MODE")]
    mode: Option<Mode>,

    #[command(flatten)]
    knowledge: KnowledgeArgs,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Yaml)]
    output: Output,

    /// Print the RFC 6902 JSON Patch of each document instead of the document
    /// (for a Pod: exactly what the webhook sends).
    #[arg(long)]
    patch: bool,

    /// Don't explain decisions on stderr.
    #[arg(short, long)]
    quiet: bool,
}

/// What `auto` may know about the cluster when there is no cluster at hand.
#[derive(Debug, Clone, clap::Args)]
pub struct KnowledgeArgs {
    /// Kubelet version present in the cluster (repeatable), e.g. 1.28.3 or v1.31.2-gke.1000.
    #[arg(
        long = "kubelet-version",
        value_name = "VERSION",
        conflicts_with = "nodes"
    )]
    kubelet_versions: Vec<String>,

    /// Node objects as `kubectl get nodes -o yaml` prints them (labels, taints and
    /// versions are used to find the nodes each pod can land on).
    #[arg(long, value_name = "FILE")]
    nodes: Option<PathBuf>,

    /// The API server's version (the skew rule: 1.32+ means every kubelet is 1.29+).
    #[arg(long, value_name = "VERSION")]
    apiserver_version: Option<String>,

    /// The API server's SidecarContainers feature gate, if known.
    #[arg(long, value_name = "on|off", value_parser = parse_gate)]
    apiserver_gate: Option<bool>,

    /// Read nodes, the API server's version and its feature gate from a live cluster
    /// (the current kubeconfig context, or --kubeconfig/--context). Needs list nodes;
    /// get /metrics is optional.
    #[arg(long, conflicts_with_all = ["kubelet_versions", "nodes", "apiserver_version", "apiserver_gate"])]
    from_cluster: bool,

    #[command(flatten)]
    pub(crate) cluster: tandem_kube::ClusterArgs,
}

/// Output formats (shared with `tandem adopt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Yaml,
    Json,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse()
        .map_err(|e: tandem_core::mode::ModeError| e.to_string())
}

fn parse_gate(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "enabled" => Ok(true),
        "off" | "false" | "disabled" => Ok(false),
        _ => Err(format!("{s:?}: expected on or off")),
    }
}

impl KnowledgeArgs {
    /// Builds the knowledge the flags give.
    pub fn load(&self) -> Result<ClusterKnowledge> {
        if self.from_cluster {
            return from_cluster(&self.cluster);
        }
        let mut k = ClusterKnowledge::default();
        for v in &self.kubelet_versions {
            k.nodes.push(NodeFacts::from_version(
                KubeVersion::parse(v).context("--kubelet-version")?,
            ));
        }
        if let Some(path) = &self.nodes {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --nodes {}", path.display()))?;
            let docs = manifest::parse_stream(&text)
                .map_err(|e| anyhow::anyhow!("--nodes {}: {e}", path.display()))?;
            k.nodes = ClusterKnowledge::from_node_objects(docs.iter().map(|d| &d.value))
                .with_context(|| format!("--nodes {}", path.display()))?;
            if k.nodes.is_empty() {
                bail!("--nodes {}: no Node objects found", path.display());
            }
            k.nodes_have_labels = true;
        }
        k.apiserver = ApiServerFacts {
            version: self
                .apiserver_version
                .as_deref()
                .map(KubeVersion::parse)
                .transpose()
                .context("--apiserver-version")?,
            gate: self.apiserver_gate,
        };
        Ok(k)
    }
}

/// Reads what `auto` needs from a live cluster: every Node (labels, taints, kubelet
/// versions, and the gate readings that `label-nodes` recorded), the API server's
/// version, and its gate metric when readable.
fn from_cluster(args: &tandem_kube::ClusterArgs) -> Result<ClusterKnowledge> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = tandem_kube::connect(args).await?;
        let version = tandem_kube::cluster::server_version(&client).await?;
        let gate = match tandem_kube::cluster::apiserver_gate(&client).await {
            Ok(reading) => reading.map(|r| r.enabled),
            Err(e) => {
                eprintln!(
                    "tandem: note: API server feature gate not read ({e}); going by its version"
                );
                None
            }
        };
        let mut nodes = Vec::new();
        for node in tandem_kube::nodes::list_nodes(&client).await? {
            nodes.push(tandem_kube::nodes::facts(&node)?);
        }
        Ok(ClusterKnowledge {
            apiserver: ApiServerFacts {
                version: Some(version),
                gate,
            },
            nodes,
            nodes_have_labels: true,
        })
    })
}

/// Loads `--config`, or the built-in config.
pub fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    match path {
        None => Ok(Config::builtin()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config {}", p.display()))?;
            Config::from_yaml(&text).with_context(|| format!("config {}", p.display()))
        }
    }
}

/// Runs `tandem inject`.
pub fn run(args: Args) -> Result<ExitCode> {
    let config = load_config(args.config.as_ref())?;
    let knowledge = args.knowledge.load()?;
    let sources = input::read_sources(&args.files, args.recursive)?;
    let injector = Injector {
        config: &config,
        knowledge: &knowledge,
        mode_override: args.mode,
    };
    let report = inject_all(&injector, &sources);
    if !report.errors.is_empty() {
        for e in &report.errors {
            eprintln!("tandem: error: {e}");
        }
        eprintln!(
            "tandem: {} error(s); nothing was written",
            report.errors.len()
        );
        return Ok(ExitCode::from(1));
    }
    if !args.quiet {
        report.explain();
    }
    let out = render(&report.documents, args.output, args.patch);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Every document's result, in input order, and what to tell the user.
struct Report {
    /// (injected document, its patch) per input document.
    documents: Vec<(Value, Vec<json_patch::PatchOperation>)>,
    errors: Vec<String>,
    /// How many pods got each (placement, reason).
    decisions: BTreeMap<(String, String), usize>,
    warnings: BTreeMap<String, usize>,
    skipped: BTreeMap<String, usize>,
}

fn inject_all(injector: &Injector<'_>, sources: &[Source]) -> Report {
    let mut r = Report {
        documents: Vec::new(),
        errors: Vec::new(),
        decisions: BTreeMap::new(),
        warnings: BTreeMap::new(),
        skipped: BTreeMap::new(),
    };
    for source in sources {
        for doc in &source.documents {
            let outcome = match injector.inject_document(&doc.value) {
                Ok(o) => o,
                Err(e) => {
                    r.errors
                        .push(format!("{}: {e}", input::locate(source, doc)));
                    continue;
                }
            };
            let mut value = doc.value.clone();
            if let Err(e) = tandem_core::patch::apply(&mut value, &outcome.patch) {
                r.errors.push(format!(
                    "{}: internal error, the patch does not apply: {e}",
                    input::locate(source, doc)
                ));
                continue;
            }
            for (_, pod) in &outcome.pods {
                match pod {
                    PodOutcome::Injected(i) => {
                        let reason = i.decision.reasons.join("; ");
                        *r.decisions
                            .entry((i.decision.placement.to_string(), reason))
                            .or_default() += 1;
                        for w in &i.decision.warnings {
                            *r.warnings.entry(w.clone()).or_default() += 1;
                        }
                    }
                    PodOutcome::Skipped { reason } => {
                        *r.skipped.entry(reason.clone()).or_default() += 1;
                    }
                }
            }
            r.documents.push((value, outcome.patch));
        }
    }
    r
}

impl Report {
    /// Tells stderr what was decided and why, one line per distinct reason.
    fn explain(&self) {
        for ((placement, reason), n) in &self.decisions {
            eprintln!("tandem: {n} pod(s) {placement}: {reason}");
        }
        for (reason, n) in &self.skipped {
            eprintln!("tandem: {n} pod(s) skipped: {reason}");
        }
        for (w, n) in &self.warnings {
            eprintln!("tandem: warning ({n} pod(s)): {w}");
        }
    }
}

/// Each (changed document, its patch) as `-o`/`--patch` ask (shared with `tandem adopt`).
pub(crate) fn render(
    documents: &[(Value, Vec<json_patch::PatchOperation>)],
    output: Output,
    patch: bool,
) -> String {
    let values: Vec<Value> = documents
        .iter()
        .map(|(doc, ops)| {
            if patch {
                serde_json::to_value(ops).unwrap_or(Value::Null)
            } else {
                doc.clone()
            }
        })
        .collect();
    match (output, patch) {
        (Output::Yaml, _) => manifest::to_yaml_stream(&values),
        (Output::Json, true) => {
            // One patch per line (JSON Lines), one line per input document.
            values.iter().map(|v| format!("{v}\n")).collect()
        }
        (Output::Json, false) => {
            let v = match values.as_slice() {
                [one] => one.clone(),
                _ => json!({"apiVersion": "v1", "kind": "List", "items": values}),
            };
            let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
            s.push('\n');
            s
        }
    }
}
