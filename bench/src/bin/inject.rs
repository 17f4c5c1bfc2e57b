//! `inject-bench`: how fast `tandem inject`'s pipeline is on a large multi-document
//! file, split into its stages (parse, inject, apply, write), and its peak memory.
//!
//! Run: `cargo run --release -p tandem-bench --bin inject-bench -- [WORKLOADS] [MODE]`

use std::time::{Duration, Instant};

use tandem_core::inject::Injector;
use tandem_core::knowledge::{ClusterKnowledge, NodeFacts};
use tandem_core::{Config, KubeVersion, Mode, manifest, patch};

fn main() {
    let mut args = std::env::args().skip(1);
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

    let rounds = 3;
    let mut best = [Duration::MAX; 4];
    let mut out_len = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let docs = match manifest::parse_stream(&yaml) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("generated input does not parse: {e}");
                std::process::exit(1);
            }
        };
        let parse = t.elapsed();
        let t = Instant::now();
        let outcomes: Vec<_> = docs
            .iter()
            .map(|d| injector.inject_document(&d.value).map(|o| o.patch))
            .collect();
        let inject = t.elapsed();
        let t = Instant::now();
        let mut values = Vec::with_capacity(docs.len());
        for (d, ops) in docs.into_iter().zip(outcomes) {
            let mut v = d.value;
            if let Ok(ops) = ops {
                let _ = patch::apply(&mut v, &ops);
            }
            values.push(v);
        }
        let apply = t.elapsed();
        let t = Instant::now();
        let out = manifest::to_yaml_stream(&values);
        let write = t.elapsed();
        out_len = out.len();
        for (b, now) in best.iter_mut().zip([parse, inject, apply, write]) {
            *b = (*b).min(now);
        }
    }
    let total: Duration = best.iter().sum();
    let per_sec = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "inject-bench: {n} workloads, mode {mode}, input {:.1} MiB, output {:.1} MiB, best of {rounds}",
        yaml.len() as f64 / 1048576.0,
        out_len as f64 / 1048576.0
    );
    for (name, d) in [
        "parse YAML",
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
        "  {:<22} {:>9.1} ms  {:>10.0} docs/s",
        "end to end",
        total.as_secs_f64() * 1e3,
        per_sec(total)
    );
    println!("  peak RSS (VmHWM)       {}", peak_rss());
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
