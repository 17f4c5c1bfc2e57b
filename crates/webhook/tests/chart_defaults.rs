//! The Helm chart's defaults (`charts/tandem`) agree with the one place that names the
//! images (`tandem_core::images`), with the built-in config and with `tandem install`'s
//! defaults. No helm needed: the chart's YAML files are read directly. (The rendered
//! objects are compared with helm in `crates/cli/tests/e2e_helm.rs`.)

use std::path::PathBuf;

use serde_json::Value;
use tandem_core::images;

fn repo_file(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn yaml(rel: &str) -> Value {
    let docs = tandem_core::manifest::parse_stream(&repo_file(rel)).expect(rel);
    docs.into_iter().next().expect(rel).value
}

#[test]
fn chart_names_the_images_of_this_version() {
    let chart = yaml("charts/tandem/Chart.yaml");
    assert_eq!(chart["appVersion"], images::TAG, "Chart.yaml appVersion");
    assert_eq!(chart["version"], images::TAG, "Chart.yaml version");
    let values = yaml("charts/tandem/values.yaml");
    assert_eq!(values["image"]["repository"], images::TANDEM_REPOSITORY);
    assert_eq!(values["image"]["tag"], "", "the tag follows appVersion");
    assert_eq!(values["config"]["shim"]["image"], images::SHIM_IMAGE);
}

#[test]
fn chart_config_is_the_built_in_config() {
    let values = yaml("charts/tandem/values.yaml");
    let builtin = yaml("crates/core/src/default-config.yaml");
    assert_eq!(
        values["config"], builtin,
        "charts/tandem/values.yaml `config` must equal crates/core/src/default-config.yaml"
    );
}

#[test]
fn examples_name_the_shim_image_of_this_version() {
    let example = yaml("examples/tandem.yaml");
    assert_eq!(example["shim"]["image"], images::SHIM_IMAGE);
}

#[test]
fn chart_defaults_match_install_defaults() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: tandem_webhook::InstallArgs,
    }
    let args = Cli::parse_from(["install"]).args;
    let v = yaml("charts/tandem/values.yaml");
    assert_eq!(v["replicas"], args.replicas);
    assert_eq!(v["image"]["pullPolicy"], args.image_pull_policy.as_str());
    assert_eq!(v["webhook"]["failurePolicy"], args.failure_policy.as_str());
    assert_eq!(v["webhook"]["timeoutSeconds"], args.timeout_seconds);
    assert_eq!(v["webhook"]["podOptIn"], args.pod_opt_in);
    assert_eq!(v["tls"]["mode"], args.tls.as_str());
    assert_eq!(v["tls"]["secretName"], args.tls_secret.as_str());
    assert_eq!(
        v["tls"]["certManager"]["duration"],
        format!("{}h", u64::from(args.cert_days) * 24)
    );
    assert_eq!(v["metrics"]["scrapeAnnotations"], args.scrape_annotations);
    assert_eq!(v["labeller"]["enabled"], args.with_label_nodes);
    assert_eq!(v["labeller"]["nodeMetrics"], args.label_nodes_node_metrics);
    assert_eq!(args.image, images::TANDEM_IMAGE);
}

#[test]
fn schema_names_every_value() {
    // Every key of values.yaml is declared in values.schema.json (which forbids others).
    fn walk(values: &Value, schema: &Value, path: &str) {
        let Some(map) = values.as_object() else {
            return;
        };
        let props = &schema["properties"];
        if schema["additionalProperties"] != Value::Bool(false) {
            return;
        }
        for (k, v) in map {
            let sub = &props[k];
            assert!(
                sub.is_object(),
                "values.yaml {path}{k} is not in values.schema.json"
            );
            walk(v, sub, &format!("{path}{k}."));
        }
    }
    let values = yaml("charts/tandem/values.yaml");
    let schema: Value =
        serde_json::from_str(&repo_file("charts/tandem/values.schema.json")).expect("schema");
    walk(&values, &schema, "");
}
