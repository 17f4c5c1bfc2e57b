//! The API server's own facts (version, `/metrics` gate) and paginated lists.

use std::fmt::Debug;

use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tandem_core::KubeVersion;
use tandem_core::metrics_text::{self, GateReading, SIDECAR_GATE};

use crate::error::{Access, KubeError, error_chain};

/// Page size for lists: large clusters are read in pages, as kubectl does.
pub const PAGE_SIZE: u32 = 500;

/// The API server's version (`GET /version`).
pub async fn server_version(client: &Client) -> Result<KubeVersion, KubeError> {
    let access = Access::new("get", "/version");
    let info = client
        .apiserver_version()
        .await
        .map_err(|e| KubeError::from_kube(access.clone(), e))?;
    KubeVersion::parse(&info.git_version).map_err(|e| KubeError::Other {
        access,
        message: e.to_string(),
    })
}

/// GET a non-resource path (`/metrics`, `/api/v1/nodes/N/proxy/metrics`) as text.
pub async fn get_text(client: &Client, path: &str, access: Access) -> Result<String, KubeError> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| KubeError::Other {
            access: access.clone(),
            message: error_chain(&e),
        })?;
    client
        .request_text(req)
        .await
        .map_err(|e| KubeError::from_kube(access, e))
}

/// The API server's `SidecarContainers` gate from its `/metrics` (`None`: no such
/// series, which means a version without the gate, or one where it was removed).
pub async fn apiserver_gate(client: &Client) -> Result<Option<GateReading>, KubeError> {
    let text = get_text(client, "/metrics", Access::new("get", "/metrics")).await?;
    Ok(metrics_text::feature_gate(&text, SIDECAR_GATE))
}

/// Every object that `api` lists, read in pages of [`PAGE_SIZE`]; `access` names the
/// list for error messages (e.g. `list pods in namespace shop`).
pub async fn list_all<K>(
    api: &Api<K>,
    access: Access,
    params: ListParams,
) -> Result<Vec<K>, KubeError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut out = Vec::new();
    list_each(api, access, params, |item| out.push(item)).await?;
    Ok(out)
}

/// Every object that `api` lists, handed to `each` page by page as the pages arrive
/// (pages of [`PAGE_SIZE`]), so that a caller who keeps only a digest of each object
/// never holds the whole list (the doctor held 273 MiB with 10,000 kwok Nodes
/// listed whole, 52 MiB reducing each page as it came).
pub async fn list_each<K>(
    api: &Api<K>,
    access: Access,
    params: ListParams,
    mut each: impl FnMut(K),
) -> Result<(), KubeError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut params = params.limit(PAGE_SIZE);
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|e| KubeError::from_kube(access.clone(), e))?;
        page.items.into_iter().for_each(&mut each);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(())
}
