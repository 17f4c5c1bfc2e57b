//! `inject-bench`: how fast `tandem inject`'s pipeline is on a large multi-document
//! stream, split into its stages (read, inject, apply, write), and its peak memory; and
//! the candidate YAML readers on the same corpus.
//!
//! Run: `cargo run --release -p tandem-bench --bin inject-bench -- [WORKLOADS] [MODE]`,
//! `… -- readers [WORKLOADS]` (reader candidates), `… -- corpus WORKLOADS > FILE`
//! (write the corpus, to time the real binary on it).

use std::time::{Duration, Instant};

use serde_json::Value;
use tandem_core::inject::Injector;
use tandem_core::knowledge::{ClusterKnowledge, NodeFacts};
use tandem_core::manifest::DocumentReader;
use tandem_core::{Config, KubeVersion, Mode, manifest, patch};

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    match args.peek().map(String::as_str) {
        Some("corpus") => {
            args.next();
            let n = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
            print!("{}", tandem_bench::workloads_yaml(n));
            return;
        }
        Some("readers") => {
            args.next();
            let n = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
            readers(n);
            return;
        }
        _ => {}
    }
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let mode: Mode = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(Mode::Auto);
    let yaml = tandem_bench::workloads_yaml(n);
    let config = Config::builtin();
    // A mixed cluster, so that `auto` does real work (universal for every pod).
    let knowledge = ClusterKnowledge {
        nodes: ["v1.27.16", "v1.31.4", "v1.33.1"]
            .iter()
            .map(|v| {
                NodeFacts::from_version(KubeVersion::parse(v).unwrap_or(KubeVersion::new(1, 31)))
            })
            .collect(),
        ..Default::default()
    };
    let injector = Injector {
        config: &config,
        knowledge: &knowledge,
        mode_override: Some(mode),
    };

    // The pipeline as `tandem inject` runs it, one document at a time (here on one
    // thread, so that the stages add up to one core's work).
    let rounds = 3;
    let mut best = [Duration::MAX; 4];
    let mut out_len = 0;
    for _ in 0..rounds {
        let mut times = [Duration::ZERO; 4];
        let mut out = String::new();
        let mut written = 0;
        let mut reader = DocumentReader::new(yaml.as_bytes());
        loop {
            let t = Instant::now();
            let Some(doc) = reader.next() else { break };
            let doc = match doc {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("generated input does not parse: {e}");
                    std::process::exit(1);
                }
            };
            times[0] += t.elapsed();
            let t = Instant::now();
            let ops = injector.inject_document(&doc.value).map(|o| o.patch);
            times[1] += t.elapsed();
            let t = Instant::now();
            let mut v: Value = doc.value;
            if let Ok(ops) = ops {
                let _ = patch::apply(&mut v, &ops);
            }
            times[2] += t.elapsed();
            let t = Instant::now();
            out.clear();
            out.push_str("---\n");
            manifest::write_yaml(&mut out, &v);
            written += out.len();
            times[3] += t.elapsed();
        }
        out_len = written;
        for (b, now) in best.iter_mut().zip(times) {
            *b = (*b).min(now);
        }
    }
    let total: Duration = best.iter().sum();
    let per_sec = |d: Duration| n as f64 / d.as_secs_f64();
    let mb = yaml.len() as f64 / 1e6;
    println!(
        "inject-bench: {n} workloads, mode {mode}, input {:.1} MB, output {:.1} MB, best of {rounds}",
        mb,
        out_len as f64 / 1e6
    );
    for (name, d) in [
        "read YAML",
        "inject (plan + patch)",
        "apply patch",
        "write YAML",
    ]
    .iter()
    .zip(best)
    {
        println!(
            "  {name:<22} {:>9.1} ms  {:>10.0} docs/s  {:>5.1}%",
            d.as_secs_f64() * 1e3,
            per_sec(d),
            100.0 * d.as_secs_f64() / total.as_secs_f64()
        );
    }
    println!(
        "  {:<22} {:>9.1} ms  {:>10.0} docs/s  {:.1} MB/s of input",
        "end to end",
        total.as_secs_f64() * 1e3,
        per_sec(total),
        mb / total.as_secs_f64()
    );
    println!("  peak RSS (VmHWM)       {}", peak_rss());
}

/// A reader candidate: text in, how many documents (or events) it read.
type Reader = fn(&str) -> usize;

/// The candidate readers on the same corpus: CPU time of this thread, best of three.
fn readers(n: usize) {
    let yaml = tandem_bench::workloads_yaml(n);
    let mb = yaml.len() as f64 / 1e6;
    println!("readers: {n} workloads, {mb:.1} MB");
    let candidates: [(&str, Reader); 4] = [
        ("serde-saphyr 2.2 -> Value (before)", |t| {
            let mut o = serde_saphyr::Options::default();
            o.legacy_octal_numbers = true;
            let mut budget = serde_saphyr::Budget::default();
            budget.max_documents = usize::MAX / 2;
            budget.max_nodes = usize::MAX / 2;
            budget.max_events = usize::MAX / 2;
            budget.max_total_scalar_bytes = usize::MAX / 2;
            o.budget = Some(budget);
            serde_saphyr::from_multiple_with_options::<Value>(t, o).map_or(0, |v| v.len())
        }),
        ("granit-parser 2.2 events only", |t| {
            granit_parser::Parser::new_from_str(t)
                .take_while(Result::is_ok)
                .count()
        }),
        ("libyaml-safer 0.1 events only", |t| {
            let mut bytes = t.as_bytes();
            let mut p = libyaml_safer::Parser::new();
            p.set_input_string(&mut bytes);
            let mut n = 0;
            while let Ok(e) = p.parse() {
                n += 1;
                if matches!(e.data, libyaml_safer::EventData::StreamEnd) {
                    break;
                }
            }
            n
        }),
        ("kyaml: libyaml-safer -> Value (after)", |t| {
            DocumentReader::new(t.as_bytes())
                .take_while(Result::is_ok)
                .count()
        }),
    ];
    for (name, f) in candidates {
        let mut best = f64::MAX;
        let mut r = 0;
        for _ in 0..3 {
            let t = thread_cpu();
            r = f(&yaml);
            best = best.min(thread_cpu() - t);
        }
        println!(
            "  {name:<40} {:>8.1} ms CPU  {:>6.1} MB/s  ({r})",
            best * 1e3,
            mb / best
        );
    }
}

/// CPU seconds used by this process so far (user + system), from /proc (Linux).
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

/// Peak resident memory of this process, from /proc (Linux).
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
