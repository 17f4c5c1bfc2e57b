//! `tandem lint`: reads manifests (files, folders, `-` for stdin) as `tandem inject`
//! does, runs the rules of [`crate::lint`] and prints findings as text or JSON.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tandem_core::KubeVersion;
use tandem_core::manifest;

use crate::lint::{self, Finding, LintOptions, Severity};
use crate::output::OutputFormat;
use crate::text;

/// Flags of `tandem lint`.
#[derive(Debug, Clone, clap::Args)]
pub struct LintArgs {
    /// Manifest file or folder to read (`-` for stdin); may be repeated. Folders give
    /// their *.yaml, *.yml and *.json files.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// Also read the subfolders of folders given with -f (as `tandem inject -R` and
    /// `kubectl -R`).
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// A kubelet version the pods may run on (e.g. v1.28.3); may be repeated. Native
    /// sidecars that such a kubelet rejects or leaves hanging are errors.
    #[arg(long = "kubelet-version", value_name = "VERSION", value_parser = parse_version)]
    pub kubelet_versions: Vec<KubeVersion>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Exit 1 on findings of this severity or worse.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
}

/// Which findings make `tandem lint` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warning,
}

fn parse_version(s: &str) -> Result<KubeVersion, String> {
    KubeVersion::parse(s).map_err(|e| e.to_string())
}

/// The JSON document `tandem lint -o json` prints (schema version 1).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LintReport {
    /// Always 1 for this layout.
    pub schema_version: u32,
    /// Every finding, in input order.
    pub findings: Vec<Finding>,
    /// Counts.
    pub summary: LintSummary,
    /// The exit code.
    pub exit_code: u8,
}

/// Counts of findings and inputs.
#[derive(Debug, Default, Serialize)]
pub struct LintSummary {
    /// Documents read.
    pub documents: usize,
    /// Findings of severity error.
    pub errors: usize,
    /// Findings of severity warning.
    pub warnings: usize,
    /// Findings of severity info.
    pub infos: usize,
}

/// Why input could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct InputError {
    /// The path (or `-`).
    pub path: String,
    /// What happened.
    #[source]
    pub source: std::io::Error,
}

/// The manifests to read: every file named, folders expanded (sorted; their subfolders
/// too with `recursive`, as `-R` means for `tandem inject` and kubectl).
fn expand(path: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let err = |source| InputError {
        path: path.display().to_string(),
        source,
    };
    if path.as_os_str() == "-" || !path.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        if e.is_dir() {
            if recursive {
                expand(&e, true, out)?;
            }
        } else if e
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
        {
            out.push(e);
        }
    }
    Ok(())
}

/// Lints the inputs and writes the report; returns the exit code (0 clean, 1 findings
/// at `--fail-on` severity, 2 input that could not be read).
pub fn run_with(
    args: &LintArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let opts = LintOptions {
        kubelet_versions: args.kubelet_versions.clone(),
    };
    let mut paths = Vec::new();
    for p in &args.files {
        if let Err(e) = expand(p, args.recursive, &mut paths) {
            let _ = writeln!(err, "tandem lint: {e}");
            return 2;
        }
    }
    let mut findings = Vec::new();
    let mut documents = 0;
    for path in &paths {
        let name = if path.as_os_str() == "-" {
            "stdin".to_string()
        } else {
            path.display().to_string()
        };
        let text = if path.as_os_str() == "-" {
            let mut s = String::new();
            stdin.read_to_string(&mut s).map(|_| s)
        } else {
            std::fs::read_to_string(path)
        };
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                let _ = writeln!(err, "tandem lint: {name}: {e}");
                return 2;
            }
        };
        match manifest::parse_stream(&text) {
            Err(e) => findings.push(Finding {
                rule: lint::RULES[0].id,
                name: lint::RULES[0].name,
                severity: Severity::Error,
                object: name.clone(),
                field: "(document)".into(),
                message: format!(
                    "not valid YAML: {}",
                    manifest::name_source(&e.message, &name)
                ),
                fix: "fix the syntax".into(),
                source: Some(match e.line {
                    Some(l) => format!("{name}:{l}"),
                    None => name.clone(),
                }),
            }),
            Ok(docs) => {
                for doc in docs {
                    documents += 1;
                    for mut f in lint::lint_document(&doc.value, &opts) {
                        f.source = Some(match doc.line {
                            Some(l) => format!("{name}:{l}"),
                            None => name.clone(),
                        });
                        findings.push(f);
                    }
                }
            }
        }
    }
    let mut summary = LintSummary {
        documents,
        ..Default::default()
    };
    for f in &findings {
        match f.severity {
            Severity::Error => summary.errors += 1,
            Severity::Warning => summary.warnings += 1,
            Severity::Info => summary.infos += 1,
        }
    }
    let failing = summary.errors
        + if args.fail_on == FailOn::Warning {
            summary.warnings
        } else {
            0
        };
    let code = u8::from(failing > 0);
    let written = match args.output {
        OutputFormat::Json => {
            let report = LintReport {
                schema_version: 1,
                findings,
                summary,
                exit_code: code,
            };
            serde_json::to_string_pretty(&report)
                .map_err(std::io::Error::other)
                .and_then(|s| writeln!(out, "{s}"))
        }
        OutputFormat::Text => out.write_all(render_text(&findings, &summary).as_bytes()),
    };
    match written {
        // `tandem lint | head`: the reader is gone; end quietly.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            let _ = writeln!(err, "tandem lint: writing the report: {e}");
            return 2;
        }
        Ok(()) => {}
    }
    code
}

/// Runs `tandem lint` on the process's stdin/stdout/stderr.
pub fn run(args: &LintArgs) -> u8 {
    run_with(
        args,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
}

/// The text report: one block per finding, then a summary line.
pub fn render_text(findings: &[Finding], summary: &LintSummary) -> String {
    let mut s = String::new();
    for f in findings {
        let head = match &f.source {
            Some(src) => format!("{} {} {}: {} ({src})", f.rule, f.name, f.object, f.field),
            None => format!("{} {} {}: {}", f.rule, f.name, f.object, f.field),
        };
        s.push_str(&text::wrap_first(
            &head,
            &format!("{} ", f.severity.mark()),
            "    ",
        ));
        s.push_str(&text::wrap(&f.message, "    "));
        s.push_str(&text::wrap_first(&f.fix, "    fix: ", "         "));
    }
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    s.push_str(&format!(
        "{}: {}, {}, {} in {}\n",
        if summary.errors > 0 {
            "× lint failed"
        } else {
            "√ lint passed"
        },
        plural(summary.errors, "error"),
        plural(summary.warnings, "warning"),
        plural(summary.infos, "note"),
        plural(summary.documents, "document"),
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(files: &[&str], output: OutputFormat) -> LintArgs {
        LintArgs {
            files: files.iter().map(PathBuf::from).collect(),
            recursive: true,
            kubelet_versions: vec![KubeVersion::parse("v1.27.3").unwrap()],
            output,
            fail_on: FailOn::Error,
        }
    }

    const JOB: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: backup\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: backup\n        image: backup\n      - name: istio-proxy\n        image: proxyv2\n";
    const OK: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: a\n";

    fn run_on(a: &LintArgs, stdin: &str) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(a, &mut stdin.as_bytes(), &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn stdin_text_and_exit_codes() {
        let (code, out, _) = run_on(&args(&["-"], OutputFormat::Text), JOB);
        assert_eq!(code, 1);
        assert!(
            out.contains("× TL001 job-sidecar-never-completes Job backup"),
            "{out}"
        );
        assert!(out.contains("(stdin:1)"), "{out}");
        for l in out.lines() {
            assert!(l.chars().count() <= 80, "{l:?}");
        }
        let (code, out, _) = run_on(&args(&["-"], OutputFormat::Text), OK);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("√ lint passed: 0 errors, 0 warnings, 0 notes in 2 documents"),
            "{out}"
        );
    }

    #[test]
    fn json_and_folders() {
        let dir = std::env::temp_dir().join(format!("tandem-lint-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.yaml"), OK).unwrap();
        std::fs::write(dir.join("sub/job.yml"), JOB).unwrap();
        std::fs::write(dir.join("notes.txt"), "not yaml: [").unwrap();
        let (code, out, _) = run_on(&args(&[dir.to_str().unwrap()], OutputFormat::Json), "");
        assert_eq!(code, 1);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["schemaVersion"], 1);
        assert_eq!(v["summary"]["documents"], 3);
        assert_eq!(v["findings"][0]["rule"], "TL001");
        assert_eq!(v["findings"][0]["severity"], "error");
        assert!(
            v["findings"][0]["source"]
                .as_str()
                .unwrap()
                .ends_with("job.yml:1")
        );
        assert_eq!(v["exitCode"], 1);
        // Without -R, as for `tandem inject` and kubectl, subfolders are not read.
        let mut flat = args(&[dir.to_str().unwrap()], OutputFormat::Json);
        flat.recursive = false;
        let (code, out, _) = run_on(&flat, "");
        assert_eq!(code, 0, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["summary"]["documents"], 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn yaml_errors_keep_their_snippet_and_name_the_file() {
        let dir = std::env::temp_dir().join(format!("tandem-lint-snip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.yaml");
        std::fs::write(&f, "a: [\n").unwrap();
        let (code, out, _) = run_on(&args(&[f.to_str().unwrap()], OutputFormat::Text), "");
        assert_eq!(code, 1);
        assert!(out.contains(&format!("--> {}:1:4", f.display())), "{out}");
        assert!(out.lines().any(|l| l.trim() == "1 | a: ["), "{out}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A writer whose reader went away (`tandem lint | head`).
    struct ClosedPipe;
    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_stdout_ends_quietly() {
        let mut err = Vec::new();
        let code = run_with(
            &args(&["-"], OutputFormat::Text),
            &mut JOB.as_bytes(),
            &mut ClosedPipe,
            &mut err,
        );
        assert_eq!(code, 1, "the findings' exit code, not 2");
        assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
    }

    #[test]
    fn unreadable_and_invalid_input() {
        let (code, _, err) = run_on(&args(&["/nonexistent/x.yaml"], OutputFormat::Text), "");
        assert_eq!(code, 2);
        assert!(err.contains("/nonexistent/x.yaml"), "{err}");
        let (code, out, _) = run_on(&args(&["-"], OutputFormat::Text), "a: [1, 2\n");
        assert_eq!(code, 1);
        assert!(out.contains("TL000") && out.contains("(stdin:1)"), "{out}");
    }

    #[test]
    fn fail_on_warning() {
        let pod = "kind: Pod\nmetadata: {name: p}\nspec:\n  initContainers:\n  - {name: m, image: m}\n  - {name: s, image: s, restartPolicy: Always}\n  containers:\n  - {name: a, image: a}\n";
        let mut a = args(&["-"], OutputFormat::Text);
        a.kubelet_versions.clear();
        assert_eq!(run_on(&a, pod).0, 0);
        a.fail_on = FailOn::Warning;
        assert_eq!(run_on(&a, pod).0, 1);
    }
}
