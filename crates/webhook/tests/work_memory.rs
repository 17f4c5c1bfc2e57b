//! `work::estimate` is an upper bound of what answering a review really allocates: the
//! peak of live heap bytes during `admission::review`, measured by a counting allocator,
//! for realistic pods and for the shapes a hostile client would pick (dense small
//! objects, long arrays, deep nesting, huge strings), in every mode.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use support::{realistic_pod, review};
use tandem_core::knowledge::NodeFacts;
use tandem_core::{ClusterKnowledge, Config, KubeVersion, Mode, NamespaceOptIn};
use tandem_webhook::admission::{self, Context, PatchEncoding};
use tandem_webhook::work::{VALUE_BYTES, chunk, estimate};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(chunk(layout.size()));
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Count the moment both blocks exist (a moving realloc).
            add(chunk(new_size));
            LIVE.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        }
        p
    }
}

/// Live bytes are counted as glibc's malloc takes them (header, rounding).
fn add(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak heap bytes above the level at the start, while answering `body`.
fn peak_of(body: &[u8], ctx: &Context<'_>) -> usize {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let answer = admission::review(body, ctx);
    drop(answer);
    PEAK.load(Ordering::SeqCst) - base
}

fn shapes() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    out.push(("realistic pod", review(realistic_pod(), false)));
    let mut pod = realistic_pod();
    pod["metadata"]["annotations"]["big"] = json!("x".repeat(2 << 20));
    out.push(("2 MiB annotation", review(pod, false)));
    let mut pod = realistic_pod();
    let env: Vec<Value> = (0..20_000)
        .map(|i| json!({"name": format!("V{i}"), "value": "x"}))
        .collect();
    pod["spec"]["containers"][0]["env"] = Value::Array(env);
    out.push(("20k env entries", review(pod, false)));
    let mut pod = realistic_pod();
    let many: Vec<Value> = (0..100_000).map(|_| json!({"a": 1})).collect();
    pod["metadata"]["annotations"] = json!({});
    pod["spec"]["x-dense"] = Value::Array(many);
    out.push(("100k tiny objects", review(pod, false)));
    let mut pod = realistic_pod();
    pod["spec"]["x-empty"] = Value::Array((0..250_000).map(|_| json!({})).collect());
    out.push(("250k empty objects", review(pod, false)));
    let mut pod = realistic_pod();
    pod["spec"]["x-nums"] = Value::Array((0..250_000).map(|i| json!(i)).collect());
    out.push(("250k numbers", review(pod, false)));
    let mut pod = realistic_pod();
    pod["spec"]["x-arrays"] = Value::Array((0..150_000).map(|_| json!([])).collect());
    out.push(("150k empty arrays", review(pod, false)));
    let mut pod = realistic_pod();
    let labels: serde_json::Map<String, Value> =
        (0..30_000).map(|i| (format!("k{i}"), json!("v"))).collect();
    pod["metadata"]["labels"] = Value::Object(labels);
    out.push(("30k labels", review(pod, false)));
    let mut pod = realistic_pod();
    let containers: Vec<Value> = (0..300)
        .map(|i| {
            let mut c = pod["spec"]["containers"][0].clone();
            c["name"] = json!(format!("c{i}"));
            c
        })
        .collect();
    pod["spec"]["containers"] = Value::Array(containers);
    out.push(("300 containers", review(pod, false)));
    let mut deep = json!(1);
    for _ in 0..120 {
        deep = json!({"d": [deep]});
    }
    let mut pod = realistic_pod();
    pod["spec"]["x-deep"] = deep;
    out.push(("deep nesting", review(pod, false)));
    out
}

fn mixed_cluster() -> ClusterKnowledge {
    let versions = ["1.27.16", "1.31.2", "1.33.1"];
    ClusterKnowledge {
        nodes: (0..300)
            .map(|i| {
                let mut n =
                    NodeFacts::from_version(KubeVersion::parse(versions[i % 3]).expect("version"));
                n.name = format!("node-{i}");
                n
            })
            .collect(),
        nodes_have_labels: true,
        ..Default::default()
    }
}

#[test]
fn estimate_bounds_the_real_peak() {
    assert_eq!(std::mem::size_of::<Value>(), VALUE_BYTES);
    let config = Config::builtin();
    let empty = ClusterKnowledge::default();
    let mixed = mixed_cluster();
    let mut worst = 0.0f64;
    for (name, body) in shapes() {
        for (mode, knowledge) in [
            (Mode::Native, &empty),
            (Mode::Universal, &empty),
            (Mode::Auto, &mixed),
        ] {
            let ctx = Context {
                config: &config,
                knowledge,
                synced: true,
                mode_override: Some(mode),
                namespace: NamespaceOptIn::Enabled,
                encoding: PatchEncoding::Base64,
            };
            let peak = peak_of(&body, &ctx);
            let bound = estimate(&body);
            let ratio = peak as f64 / bound as f64;
            worst = worst.max(ratio);
            eprintln!(
                "{name:>20} {mode:?}: body {:>9} B, peak {:>10} B ({:>5.1}x body), bound {:>10} B, peak/bound {ratio:.2}",
                body.len(),
                peak,
                peak as f64 / body.len() as f64,
                bound
            );
            assert!(
                peak <= bound,
                "{name} in {mode:?}: peak {peak} B over the bound {bound} B"
            );
        }
    }
    eprintln!("worst peak/bound: {worst:.2}");
}
