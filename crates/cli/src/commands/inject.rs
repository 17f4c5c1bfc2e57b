//! `tandem inject`: offline injection into manifests, printed to stdout.

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde_json::{Value, json};
use tandem_core::catalog::Catalog;
use tandem_core::inject::{Injector, PodOutcome};
use tandem_core::knowledge::{ApiServerFacts, ClusterKnowledge, NodeFacts};
use tandem_core::manifest::Document;
use tandem_core::{Config, KubeVersion, Mode, manifest, workload};

use crate::input::{self, Item};

/// Flags of `tandem inject`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tandem inject -f deploy.yaml
  tandem inject -f examples/ --mode universal
  kubectl get deploy web -o yaml | tandem inject -f - --kubelet-version 1.28.3
  tandem inject -f job.yaml --nodes nodes.yaml --apiserver-version 1.31.4 --patch
  tandem inject -f deploy.yaml --from-cluster --context prod
  tandem inject -f deploy.yaml --sidecars sidecars.yaml

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

    /// Sidecar and ClusterSidecar objects (YAML/JSON, several documents or a List;
    /// Namespace objects there give the labels namespaceSelector matches); repeatable.
    /// Pods get the objects that select them, as the webhook would choose them.
    #[arg(long = "sidecars", value_name = "FILE")]
    sidecar_files: Vec<PathBuf>,

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
        conflicts_with = "nodes",
        value_parser = checked_version
    )]
    kubelet_versions: Vec<String>,

    /// Node objects as `kubectl get nodes -o yaml` prints them (labels, taints and
    /// versions are used to find the nodes each pod can land on).
    #[arg(long, value_name = "FILE")]
    nodes: Option<PathBuf>,

    /// The API server's version (the skew rule: 1.32+ means every kubelet is 1.29+).
    #[arg(long, value_name = "VERSION", value_parser = checked_version)]
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

/// A version flag's value, checked while the flags are parsed: a bad one is a usage
/// error (exit 2), as the help says.
fn checked_version(s: &str) -> Result<String, String> {
    KubeVersion::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
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
            ..Default::default()
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
///
/// Documents stream through: a reading thread parses them (see [`input::read_all`]),
/// this thread injects each one and writes it to a spool (memory, then an unlinked
/// temporary file past 8 MiB). Only when every input was read and every document
/// injected without an error is the spool copied to stdout, so that an error leaves
/// stdout empty while memory stays flat whatever the input's size.
pub fn run(args: Args) -> Result<ExitCode> {
    let config = load_config(args.config.as_ref())?;
    let knowledge = args.knowledge.load()?;
    let files = input::list_files(&args.files, args.recursive)?;
    let catalog = load_sidecar_objects(&args.sidecar_files)?;
    let injector = Injector {
        config: &config,
        knowledge: &knowledge,
        mode_override: args.mode,
    };
    let mut out = Writer::new(args.output, args.patch);
    let mut report = Report::default();
    for item in input::read_all(files) {
        match item {
            Item::BadFile(e) => report.errors.push(e),
            Item::Document(source, doc) => {
                if let Some((value, ops)) = report.inject(&injector, catalog.as_ref(), &source, doc)
                    && report.errors.is_empty()
                {
                    out.document(value, ops)
                        .context("cannot write the temporary output")?;
                }
            }
        }
    }
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
    out.finish().context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// What to tell the user, gathered over every document.
#[derive(Default)]
struct Report {
    errors: Vec<String>,
    /// How many pods got each (placement, reason).
    decisions: BTreeMap<(String, String), usize>,
    warnings: BTreeMap<String, usize>,
    skipped: BTreeMap<String, usize>,
    /// Objects of kinds tandem doesn't inject that carry a pod template:
    /// (kind, apiVersion, path) → count.
    foreign: BTreeMap<(String, String, String), usize>,
}

/// Reads `--sidecars` files into a catalog (`None` without any).
pub fn load_sidecar_objects(files: &[PathBuf]) -> Result<Option<Catalog>> {
    if files.is_empty() {
        return Ok(None);
    }
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for item in input::read_all(input::list_files(files, false)?) {
        match item {
            Item::BadFile(e) => errors.push(e),
            Item::Document(_, doc) => docs.push(doc.value),
        }
    }
    if !errors.is_empty() {
        bail!("--sidecars: {}", errors.join("; "));
    }
    Catalog::from_documents(docs.iter())
        .map(Some)
        .map_err(|errors| anyhow::anyhow!("--sidecars: {}", errors.join("; ")))
}

impl Report {
    /// Injects one document: the injected document and its patch, or `None` after
    /// recording an error.
    fn inject(
        &mut self,
        injector: &Injector<'_>,
        catalog: Option<&Catalog>,
        source: &str,
        doc: Document,
    ) -> Option<(Value, Vec<json_patch::PatchOperation>)> {
        let outcome = match injector.inject_document_with(&doc.value, catalog) {
            Ok(o) => o,
            Err(e) => {
                self.errors
                    .push(format!("{}: {e}", input::locate(source, &doc)));
                return None;
            }
        };
        if outcome.pods.is_empty()
            && let Some(path) = workload::foreign_pod_template(&doc.value)
        {
            let s = |k: &str| {
                doc.value
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            *self
                .foreign
                .entry((s("kind"), s("apiVersion"), path.to_string()))
                .or_default() += 1;
        }
        for (_, pod) in &outcome.pods {
            match pod {
                PodOutcome::Injected(i) => {
                    let reason = i.decision.reasons.join("; ");
                    *self
                        .decisions
                        .entry((i.decision.placement.to_string(), reason))
                        .or_default() += 1;
                    for w in &i.decision.warnings {
                        *self.warnings.entry(w.clone()).or_default() += 1;
                    }
                }
                PodOutcome::Skipped { reason } => {
                    *self.skipped.entry(reason.clone()).or_default() += 1;
                }
            }
        }
        let mut value = doc.value;
        if let Err(e) = tandem_core::patch::apply(&mut value, &outcome.patch) {
            let at = input::locate(
                source,
                &Document {
                    value: Value::Null,
                    ..doc
                },
            );
            self.errors.push(format!(
                "{at}: internal error, the patch does not apply: {e}"
            ));
            return None;
        }
        Some((value, outcome.patch))
    }

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
        for ((kind, api, path), n) in &self.foreign {
            eprintln!(
                "tandem: note: {n} {kind} object(s) ({api}) passed through without sidecars: they carry a pod template at {path}, but {kind} is not a workload kind tandem knows; to inject them, add `workloadKinds: [{{kind: {kind}, podTemplate: {path}}}]` to the config"
            );
        }
    }
}

/// Renders documents in the output format into a [`Spool`].
pub(crate) struct Writer {
    output: Output,
    patch: bool,
    spool: Spool,
    count: usize,
    /// `-o json` without `--patch`: the first document, held until it is known whether
    /// a second one makes the output a `List`.
    first: Option<Value>,
    buf: String,
}

impl Writer {
    pub(crate) fn new(output: Output, patch: bool) -> Self {
        Self {
            output,
            patch,
            spool: Spool::default(),
            count: 0,
            first: None,
            buf: String::new(),
        }
    }

    pub(crate) fn document(
        &mut self,
        doc: Value,
        ops: Vec<json_patch::PatchOperation>,
    ) -> std::io::Result<()> {
        let value = if self.patch {
            serde_json::to_value(ops).unwrap_or(Value::Null)
        } else {
            doc
        };
        self.count += 1;
        self.buf.clear();
        match (self.output, self.patch) {
            (Output::Yaml, _) => {
                if self.count > 1 {
                    self.buf.push_str("---\n");
                }
                manifest::write_yaml(&mut self.buf, &value);
            }
            (Output::Json, true) => {
                // One patch per line (JSON Lines), one line per input document.
                self.buf.push_str(&value.to_string());
                self.buf.push('\n');
            }
            (Output::Json, false) => match self.first.take() {
                None if self.count == 1 => {
                    self.first = Some(value);
                    return Ok(());
                }
                first => {
                    if let Some(first) = first {
                        self.buf.push_str(
                            "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"List\",\n  \"items\": [\n",
                        );
                        push_item(&mut self.buf, &first);
                    }
                    self.buf.push_str(",\n");
                    push_item(&mut self.buf, &value);
                }
            },
        }
        self.spool.write_all(self.buf.as_bytes())
    }

    /// Ends the output and copies it to stdout.
    pub(crate) fn finish(mut self) -> std::io::Result<()> {
        if let (Output::Json, false) = (self.output, self.patch) {
            let tail = match (self.count, self.first.take()) {
                (0, _) => json_pretty(&json!({"apiVersion": "v1", "kind": "List", "items": []})),
                (_, Some(one)) => json_pretty(&one),
                _ => "\n  ]\n}\n".to_string(),
            };
            self.spool.write_all(tail.as_bytes())?;
        }
        let mut stdout = std::io::stdout().lock();
        self.spool.copy_to(&mut stdout)?;
        stdout.flush()
    }
}

fn json_pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// One item of a pretty-printed `List`, indented as `serde_json` would (JSON strings
/// hold no raw newlines, so indenting every line is exact).
fn push_item(buf: &mut String, v: &Value) {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            buf.push('\n');
        }
        buf.push_str("    ");
        buf.push_str(line);
    }
}

/// Output held back until the run has succeeded: in memory up to 8 MiB, then in an
/// unlinked temporary file (gone with the process, whatever happens).
#[derive(Default)]
struct Spool {
    memory: Vec<u8>,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

const SPOOL_IN_MEMORY: usize = 8 << 20;

impl Spool {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() && self.memory.len() + bytes.len() > SPOOL_IN_MEMORY {
            let mut file = std::io::BufWriter::with_capacity(1 << 16, tempfile::tempfile()?);
            file.write_all(&self.memory)?;
            self.memory = Vec::new();
            self.file = Some(file);
        }
        match &mut self.file {
            Some(f) => f.write_all(bytes),
            None => {
                self.memory.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn copy_to(self, out: &mut impl Write) -> std::io::Result<()> {
        match self.file {
            None => out.write_all(&self.memory),
            Some(f) => {
                let mut file = f.into_inner().map_err(|e| e.into_error())?;
                file.seek(std::io::SeekFrom::Start(0))?;
                std::io::copy(&mut file, out).map(|_| ())
            }
        }
    }
}
