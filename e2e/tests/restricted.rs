//! The restricted kubeconfig really is restricted: it can read pods and nodes but not
//! write, and not use nodes/proxy (what tandem's doctor must cope with).

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ListParams, PostParams};
use tandem_testcluster::TestCluster;

async fn allowed(client: &kube::Client, verb: &str, resource: &str, sub: Option<&str>) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_string()),
                resource: Some(resource.to_string()),
                subresource: sub.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let r = api
        .create(&PostParams::default(), &review)
        .await
        .expect("SelfSubjectAccessReview");
    r.status.is_some_and(|s| s.allowed)
}

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn restricted_identity_reads_but_cannot_proxy_or_write() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster
        .restricted_client()
        .await
        .expect("restricted client");
    Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("restricted user lists nodes");
    assert!(allowed(&client, "list", "pods", None).await);
    assert!(
        !allowed(&client, "get", "nodes", Some("proxy")).await,
        "no nodes/proxy"
    );
    assert!(!allowed(&client, "create", "pods", None).await, "no writes");
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(tandem_testcluster::unique_name("forbidden")),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = Api::<Namespace>::all(client)
        .create(&PostParams::default(), &ns)
        .await
        .expect_err("restricted user cannot create namespaces");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err}"
    );
}
