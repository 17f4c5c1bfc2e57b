//! Reading manifests from files, folders and stdin, the way `kubectl apply -f` does.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tandem_core::manifest::{self, Document};

/// The documents of one source (a file, or stdin).
#[derive(Debug)]
pub struct Source {
    /// How messages name it (`deploy.yaml`, `<stdin>`).
    pub name: String,
    /// Its documents, in order.
    pub documents: Vec<Document>,
}

/// Reads every `-f` argument: `-` is stdin, a folder means its `.yaml`, `.yml` and
/// `.json` files in name order (and those of subfolders with `recursive`).
pub fn read_sources(paths: &[PathBuf], recursive: bool) -> Result<Vec<Source>> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            files.push(None);
        } else if path.is_dir() {
            let mut found = Vec::new();
            collect_dir(path, recursive, &mut found)?;
            if found.is_empty() {
                bail!(
                    "{}: no .yaml, .yml or .json files in this folder",
                    path.display()
                );
            }
            files.extend(found.into_iter().map(Some));
        } else {
            files.push(Some(path.clone()));
        }
    }
    let mut sources = Vec::new();
    for file in files {
        let (name, text) = match file {
            None => {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read standard input")?;
                ("<stdin>".to_string(), text)
            }
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                (path.display().to_string(), text)
            }
        };
        let documents = manifest::parse_stream(&text)
            .map_err(|e| anyhow::anyhow!("{name}: {}", manifest::name_source(&e.message, &name)))?;
        sources.push(Source { name, documents });
    }
    Ok(sources)
}

fn collect_dir(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if recursive {
                collect_dir(&path, recursive, out)?;
            }
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// `deploy.yaml: document 2 (line 14)` for messages.
pub fn locate(source: &Source, doc: &Document) -> String {
    match doc.line {
        Some(line) => format!("{}: document {} (line {line})", source.name, doc.index),
        None => format!("{}: document {}", source.name, doc.index),
    }
}
