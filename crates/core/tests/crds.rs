//! The CRD files in `charts/tandem/crds/` are exactly what `tandem_core::api::crd_files`
//! generates from the Rust types. `TANDEM_UPDATE_CRDS=1` rewrites them.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::PathBuf;

fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../charts/tandem/crds")
}

#[test]
fn crd_files_are_up_to_date() {
    let update = std::env::var_os("TANDEM_UPDATE_CRDS").is_some();
    let mut stale = Vec::new();
    for (name, text) in tandem_core::api::crd_files() {
        let path = folder().join(&name);
        if update {
            std::fs::create_dir_all(folder()).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        if on_disk != text {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} in charts/tandem/crds/ are not what the types in crates/core/src/api.rs \
         generate; run `TANDEM_UPDATE_CRDS=1 cargo test -p tandem-core --test crds`"
    );
}

#[test]
fn schemas_are_structural_and_strict() {
    for crd in tandem_core::api::crds() {
        let v = serde_json::to_value(&crd).unwrap();
        let text = v.to_string();
        assert!(
            !text.contains("x-kubernetes-preserve-unknown-fields"),
            "{}: nothing may preserve unknown fields",
            crd.metadata.name.unwrap_or_default()
        );
        assert!(!text.contains("$ref"), "structural schemas have no $ref");
        let spec = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let container = &spec["properties"]["containers"]["items"]["properties"];
        assert_eq!(container["imagePullPolicy"]["type"], "string");
        let limits = &container["resources"]["properties"]["limits"]["additionalProperties"];
        assert_eq!(limits["pattern"], tandem_core::api::QUANTITY_PATTERN);
        // An IntOrString port is not a quantity.
        let port = &container["livenessProbe"]["properties"]["httpGet"]["properties"]["port"];
        assert!(port.get("pattern").is_none(), "{port}");
        assert_eq!(spec["properties"]["containers"]["minItems"], 1);
        assert_eq!(
            v["spec"]["versions"][0]["subresources"]["status"],
            serde_json::json!({})
        );
    }
}
