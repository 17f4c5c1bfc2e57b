//! Reading manifests from files, folders and stdin, the way `kubectl apply -f` does,
//! one document at a time.
//!
//! [`list_files`] resolves the `-f` arguments; [`read_all`] reads them in order on a
//! thread of its own and hands each document (or each file's error) to a bounded channel,
//! so that reading and parsing overlap with the consumer's work on a second core while
//! only a few documents are held at once. A file that can't be read or parsed is
//! reported once, with its first error, and reading goes on with the next file.
//! New kinds of input (e.g. files of tandem's own objects) fit in as another [`Item`]
//! or as a filter on [`Item::Document`]s.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use anyhow::{Context, Result, bail};
use tandem_core::manifest::{self, Document, DocumentReader};

/// One input: a file, or stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputFile {
    /// `-f -`.
    Stdin,
    /// A file (given, or found in a folder).
    Path(PathBuf),
}

impl InputFile {
    /// How messages name it (`deploy.yaml`, `<stdin>`).
    pub fn name(&self) -> String {
        match self {
            InputFile::Stdin => "<stdin>".to_string(),
            InputFile::Path(p) => p.display().to_string(),
        }
    }

    fn open(&self) -> Result<Box<dyn BufRead + Send>> {
        Ok(match self {
            InputFile::Stdin => Box::new(BufReader::with_capacity(1 << 16, std::io::stdin())),
            InputFile::Path(p) => Box::new(BufReader::with_capacity(
                1 << 16,
                std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?,
            )),
        })
    }
}

/// Resolves every `-f` argument: `-` is stdin, a folder means its `.yaml`, `.yml` and
/// `.json` files in name order (and those of subfolders with `recursive`).
pub fn list_files(paths: &[PathBuf], recursive: bool) -> Result<Vec<InputFile>> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            files.push(InputFile::Stdin);
        } else if path.is_dir() {
            let mut found = Vec::new();
            collect_dir(path, recursive, &mut found)?;
            if found.is_empty() {
                bail!(
                    "{}: no .yaml, .yml or .json files in this folder",
                    path.display()
                );
            }
            files.extend(found.into_iter().map(InputFile::Path));
        } else {
            files.push(InputFile::Path(path.clone()));
        }
    }
    Ok(files)
}

/// What the reading thread hands over, in input order.
#[derive(Debug)]
pub enum Item {
    /// A document, with the name of its source.
    Document(Arc<str>, Document),
    /// A file that can't be read or parsed: its first error, naming the file (the rest
    /// of that file is skipped).
    BadFile(String),
}

/// How many parsed documents may wait for the consumer.
const QUEUE: usize = 64;

/// Reads `files` in order on a thread of its own.
pub fn read_all(files: Vec<InputFile>) -> Receiver<Item> {
    let (tx, rx) = sync_channel(QUEUE);
    std::thread::spawn(move || {
        for file in files {
            let name: Arc<str> = file.name().into();
            let input = match file.open() {
                Ok(i) => i,
                Err(e) => {
                    if tx.send(Item::BadFile(format!("{e:#}"))).is_err() {
                        return;
                    }
                    continue;
                }
            };
            for doc in DocumentReader::new(input) {
                let item = match doc {
                    Ok(d) => Item::Document(name.clone(), d),
                    Err(e) => Item::BadFile(where_in(&name, &e)),
                };
                let bad = matches!(item, Item::BadFile(..));
                if tx.send(item).is_err() {
                    return;
                }
                if bad {
                    break;
                }
            }
        }
    });
    rx
}

/// `deploy.yaml:14:3: problem` (or `deploy.yaml: problem`) for a parse error.
fn where_in(name: &str, e: &manifest::ParseError) -> String {
    let message = manifest::name_source(&e.message, name);
    if let Some(line) = e.line {
        let prefix = format!("line {line} column ");
        if let Some((col, rest)) = message
            .strip_prefix(&prefix)
            .and_then(|r| r.split_once(": "))
        {
            return format!("{name}:{line}:{col}: {rest}");
        }
        if let Some(rest) = message.strip_prefix(&format!("line {line}: ")) {
            return format!("{name}:{line}: {rest}");
        }
    }
    format!("{name}: {message}")
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
pub fn locate(source: &str, doc: &Document) -> String {
    match doc.line {
        Some(line) => format!("{source}: document {} (line {line})", doc.index),
        None => format!("{source}: document {}", doc.index),
    }
}
