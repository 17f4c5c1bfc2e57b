//! Measures what each way of settling the handshake adds to a pod's start
//! (admission → main container start), with the kubelet's real timings
//! (time_scale 1: probe period 1 s, restart backoff as documented). Ignored by
//! default (it takes ~30 s); run:
//! `cargo test -p tandem-kubelet-emu --test settle_cost -- --ignored --nocapture`

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tandem_kubelet_emu::{Flavour, Phase};

fn main_start(pod: &serde_json::Value, flavour: Flavour) -> Duration {
    let mut o = options(flavour);
    o.time_scale = 1.0;
    let k = run(pod, o, "cost");
    k.wait_for("main started", LONG, |s| {
        s.phase == Phase::Running && s.get("app").is_some_and(|c| c.restarts == 0 && c.started)
    });
    let t = k
        .events()
        .into_iter()
        .find(|(_, e)| e == "start app")
        .map(|(t, _)| t)
        .expect("start app event");
    k.delete();
    k.wait_for("deleted", LONG, |s| s.phase == Phase::Deleted);
    t
}

fn plain(flavour: Flavour) -> serde_json::Value {
    // The same sidecar without tandem: native sidecar on 1.29+, legacy container otherwise.
    let sidecar = json!({"name": "logger", "command": [APP, "sidecar"]});
    let app = json!({"name": "app", "command": [APP, "main", "--run-ms", "60000"]});
    let mut native = sidecar.clone();
    native["restartPolicy"] = json!("Always");
    native["startupProbe"] = json!({"exec": {"command": [APP, "ready"]}, "periodSeconds": 1});
    if flavour == Flavour::Native {
        json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"initContainers": [native], "containers": [app]}})
    } else {
        json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [sidecar, app]}})
    }
}

#[test]
#[ignore = "measurement: prints a table, takes ~30 s"]
fn settle_costs() {
    let mut rows = vec![];
    for flavour in [Flavour::Native, Flavour::Old] {
        let base = main_start(&plain(flavour), flavour);
        rows.push((
            format!("{flavour:?}"),
            "no tandem (own probe / none)".to_string(),
            base,
        ));
        for (name, settle, timeout) in [
            ("startupProbe `tandem-shim probe`", Settle::Probe, "5s"),
            ("sidecar's own startupProbe", Settle::OwnProbe, "5s"),
            ("settle timeout 5s", Settle::Timeout, "5s"),
        ] {
            let mut spec = PodSpec::new("Always", settle);
            spec.settle_timeout = timeout;
            spec.main_run_ms = 60_000;
            let t = main_start(&universal_pod(&spec), flavour);
            rows.push((format!("{flavour:?}"), name.to_string(), t));
        }
    }
    println!("\n| kubelet | universal settle path | admission -> main start |");
    println!("|---|---|---|");
    for (f, n, t) in rows {
        println!("| {f} | {n} | {:.0} ms |", t.as_secs_f64() * 1000.0);
    }
}
