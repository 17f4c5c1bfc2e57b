//! `tandem adopt`: moves the legacy sidecars that manifests already carry (a mesh
//! proxy, a log shipper, a secrets agent in `spec.containers`) to native sidecars where
//! every node the pod can land on runs them. Same inputs and outputs as `inject`; the
//! decisions are `tandem_core::adopt`'s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use tandem_core::adopt::{AdoptOutcome, Adopter, Adoption};

use crate::commands::inject::{self, KnowledgeArgs, Output, Writer};
use crate::input::{self, Item};

/// Flags of `tandem adopt`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tandem adopt -f deploy.yaml --kubelet-version 1.31.4
  tandem adopt -f k8s/ -R --nodes nodes.yaml --apiserver-version 1.31.4 --explain
  kubectl get deploy -o yaml | tandem adopt -f - --from-cluster --strip-workarounds
  tandem adopt --from-cluster --report -o json

A regular container is a legacy sidecar when its name or image matches the recognition
list (the config's `adopt:` section, plus built-in entries for istio-proxy,
linkerd-proxy, vault-agent, cloud-sql-proxy, fluent-bit, otel-collector, consul,
kuma, dapr and envoy), or when the pod's tandem.dev/adopt annotation names it. Each one
is moved, exactly as written, to an init container with restartPolicy: Always, right
after the init containers it depends on, when every node the pod can land on runs
native sidecars (the same decision as inject's auto mode); otherwise it stays and the
reason is said. Pods labelled tandem.dev/adopt=disabled are left alone.
Exit codes: 0 done (or nothing to do), 1 bad input or an error (nothing is written to
stdout), 2 bad flags.")]
pub struct Args {
    /// Manifest file or folder to read (`-` for stdin); repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "PATH",
        required_unless_present = "report"
    )]
    files: Vec<PathBuf>,

    /// Also read the subfolders of folders given with -f.
    #[arg(short = 'R', long)]
    recursive: bool,

    /// Configuration file (YAML): its `adopt:` section extends or replaces the
    /// recognition list; `insertAfter` and `autoFallback` apply as for inject.
    #[arg(short, long, value_name = "FILE", env = "TANDEM_CONFIG")]
    config: Option<PathBuf>,

    #[command(flatten)]
    knowledge: KnowledgeArgs,

    /// Sidecar objects (`Sidecar`, `ClusterSidecar` YAML, as for inject): a regular
    /// container named like one of their containers is recognised as that object's
    /// sidecar (repeatable).
    #[arg(long = "sidecars", value_name = "FILE")]
    sidecars: Vec<PathBuf>,

    /// Remove the workarounds that only made sense for a legacy sidecar (kubexit and
    /// scuttle wrappers, linkerd-await, quitquitquit preStop hooks, postStart waits made
    /// redundant by a startupProbe), each removal named; only in pods whose sidecars
    /// all become native.
    #[arg(long)]
    strip_workarounds: bool,

    /// Move recognised sidecars even where the nodes aren't known to run native
    /// sidecars (the risks are still printed).
    #[arg(long)]
    force_native: bool,

    /// Output format (with --report: text for yaml, or json).
    #[arg(short, long, value_enum, default_value_t = Output::Yaml)]
    output: Output,

    /// Print the RFC 6902 JSON Patch of each document instead of the document.
    #[arg(long, conflicts_with = "report")]
    patch: bool,

    /// Explain on stderr, pod by pod: the recognition list, each recognised sidecar
    /// and why, the decision, notes and workarounds.
    #[arg(long)]
    explain: bool,

    /// Don't summarize decisions on stderr.
    #[arg(short, long, conflicts_with = "explain")]
    quiet: bool,

    /// Inventory the cluster instead of reading manifests (needs --from-cluster):
    /// workloads with legacy sidecars, which could move now, which are blocked and by
    /// which nodes, and Jobs that rely on termination workarounds.
    #[arg(long, requires = "from_cluster", conflicts_with = "files")]
    report: bool,
}

/// Runs `tandem adopt`.
pub fn run(args: Args) -> Result<ExitCode> {
    let config = inject::load_config(args.config.as_ref())?;
    let knowledge = args.knowledge.load()?;
    let objects = inject::load_sidecar_objects(&args.sidecars)?;
    let adopter = Adopter {
        config: &config,
        knowledge: &knowledge,
        force_native: args.force_native,
        strip_workarounds: args.strip_workarounds,
        objects: objects.as_ref(),
        namespace: None,
    };
    if args.explain {
        explain_list(&config, objects.as_ref());
    }
    if args.report {
        return crate::commands::adopt_report::run(&adopter, &args.knowledge, args.output);
    }
    let files = input::list_files(&args.files, args.recursive)?;
    let mut out = Writer::new(args.output, args.patch);
    let mut errors = Vec::new();
    let mut summary = Summary::default();
    for item in input::read_all(files) {
        let (source, doc) = match item {
            Item::BadFile(e) => {
                errors.push(e);
                continue;
            }
            Item::Document(source, doc) => (source, doc),
        };
        let at = input::locate(&source, &doc);
        let outcome = match adopter.adopt_document(&doc.value) {
            Ok(o) => o,
            Err(e) => {
                errors.push(format!("{at}: {e}"));
                continue;
            }
        };
        let mut value = doc.value;
        if let Err(e) = tandem_core::patch::apply(&mut value, &outcome.patch) {
            errors.push(format!(
                "{at}: internal error, the patch does not apply: {e}"
            ));
            continue;
        }
        for (loc, pod) in &outcome.pods {
            if args.explain {
                explain_pod(&format!("{at}: {}", loc.object), &loc.base, pod);
            }
            summary.add(pod);
        }
        if errors.is_empty() {
            out.document(value, outcome.patch)
                .context("cannot write the temporary output")?;
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("tandem: error: {e}");
        }
        eprintln!("tandem: {} error(s); nothing was written", errors.len());
        return Ok(ExitCode::from(1));
    }
    if !args.quiet && !args.explain {
        summary.print();
    }
    out.finish().context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Counts of distinct lines, for the stderr summary.
#[derive(Default)]
struct Summary {
    lines: BTreeMap<String, usize>,
}

impl Summary {
    fn add(&mut self, pod: &AdoptOutcome) {
        let mut line = |s: String| *self.lines.entry(s).or_default() += 1;
        match pod {
            AdoptOutcome::Skipped { reason } => line(format!("skipped: {reason}")),
            AdoptOutcome::Planned(a) => {
                let why = a.decision.reasons.join("; ");
                for r in &a.recognised {
                    let verb = if a.moved.contains(&r.container) {
                        "moved to a native sidecar"
                    } else {
                        "left as a regular container"
                    };
                    line(format!("{}: {verb} ({}): {why}", r.container, r.reason));
                }
                for w in &a.workarounds {
                    line(workaround_line(w));
                }
                for n in &a.notes {
                    line(format!("note: {n}"));
                }
                for w in &a.decision.warnings {
                    line(format!("warning: {w}"));
                }
            }
        }
    }

    fn print(&self) {
        for (l, n) in &self.lines {
            eprintln!("tandem: {n} pod(s): {l}");
        }
    }
}

fn workaround_line(w: &tandem_core::adopt::Workaround) -> String {
    let on = if w.container.is_empty() {
        String::new()
    } else {
        format!(" on {}", w.container)
    };
    if w.stripped {
        format!("stripped {}{on} ({})", w.kind.as_str(), w.field)
    } else {
        format!(
            "workaround {}{on} ({}): {}; kept: {}",
            w.kind.as_str(),
            w.field,
            w.detail,
            w.kept_because.as_deref().unwrap_or("")
        )
    }
}

fn explain_list(config: &tandem_core::Config, objects: Option<&tandem_core::catalog::Catalog>) {
    eprintln!("tandem: recognition list (first match wins):");
    let from_objects = objects
        .map(|c| tandem_core::adopt::recognise::from_objects(c, None))
        .unwrap_or_default();
    for k in config.adopt.known_with(from_objects) {
        let mut parts = Vec::new();
        if !k.containers.is_empty() {
            parts.push(format!("containers {}", k.containers.join(", ")));
        }
        if !k.images.is_empty() {
            parts.push(format!("images {}", k.images.join(", ")));
        }
        if !k.after.is_empty() {
            parts.push(format!("after {}", k.after.join(", ")));
        }
        eprintln!("tandem:   {}: {}", k.name, parts.join("; "));
    }
    eprintln!(
        "tandem:   and any container named in the pod's {} annotation",
        tandem_core::names::ADOPT_ANNOTATION
    );
}

fn explain_pod(what: &str, base: &tandem_core::patch::Path, pod: &AdoptOutcome) {
    match pod {
        AdoptOutcome::Skipped { reason } => eprintln!("tandem: {what}: skipped: {reason}"),
        AdoptOutcome::Planned(a) => explain_adoption(what, base, a),
    }
}

fn explain_adoption(what: &str, base: &tandem_core::patch::Path, a: &Adoption) {
    eprintln!("tandem: {what}:");
    for r in &a.recognised {
        eprintln!("tandem:   recognised {}: {}", r.container, r.reason);
    }
    let verdict = if a.moved.is_empty() {
        format!("left as regular containers: {}", a.left.join(", "))
    } else {
        format!("moved to native sidecars: {}", a.moved.join(", "))
    };
    eprintln!("tandem:   {verdict}: {}", a.decision.reasons.join("; "));
    for n in &a.notes {
        eprintln!("tandem:   note: {n}");
    }
    for w in &a.decision.warnings {
        eprintln!("tandem:   warning: {w}");
    }
    for w in &a.workarounds {
        let field = if base.tokens().is_empty() {
            w.field.clone()
        } else {
            format!("{base}.{}", w.field)
        };
        let mut w = w.clone();
        w.field = field;
        eprintln!("tandem:   {}", workaround_line(&w));
    }
}
