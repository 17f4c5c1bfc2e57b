//! A Deployment goes through the real controller-manager and scheduler onto kwok nodes
//! and its pods become Running.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use tandem_testcluster::{FakeNode, TestCluster, wait_until};

#[tokio::test]
#[ignore = "needs a control plane: bash e2e/ci.sh"]
async fn deployment_pods_are_scheduled_on_kwok_nodes_and_running() {
    let cluster = TestCluster::connect().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let pool = tandem_testcluster::unique_name("pool");
    let old = cluster
        .create_node(&FakeNode::new("kubelet-128", "v1.28.15").label("e2e-pool", &pool))
        .await
        .expect("node v1.28.15");
    let new = cluster
        .create_node(&FakeNode::new("kubelet-131", "v1.31.4").label("e2e-pool", &pool))
        .await
        .expect("node v1.31.4");
    let names = [
        old.metadata.name.clone().unwrap_or_default(),
        new.metadata.name.clone().unwrap_or_default(),
    ];
    // The kubelet versions we asked for are what the API reports.
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, want) in names.iter().zip(["v1.28.15", "v1.31.4"]) {
        let n = nodes.get(name).await.expect("get node");
        let got = n
            .status
            .and_then(|s| s.node_info)
            .map(|i| i.kubelet_version);
        assert_eq!(got.as_deref(), Some(want), "kubelet version of {name}");
    }

    let ns = cluster.namespace("deploy").await.expect("namespace");
    let deploy: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "nodeSelector": { "e2e-pool": pool },
                    "containers": [{ "name": "web", "image": "registry.k8s.io/pause:3.10" }]
                }
            }
        }
    }))
    .expect("deployment literal");
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deploy)
        .await
        .expect("create deployment");

    let pods: Api<Pod> = ns.api();
    let lp = ListParams::default().labels("app=web");
    let waited = wait_until(
        "3 pods Running on the kwok nodes",
        Duration::from_secs(90),
        || async {
            let list = pods.list(&lp).await?;
            let running = list
                .items
                .iter()
                .filter(|p| {
                    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                    let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
                    phase == Some("Running") && node.is_some_and(|n| names.iter().any(|m| m == n))
                })
                .count();
            Ok(running == 3)
        },
    )
    .await;
    if let Err(e) = waited {
        let list = pods.list(&lp).await.map(|l| l.items).unwrap_or_default();
        for p in &list {
            eprintln!(
                "pod {:?}: node {:?} status {:?}",
                p.metadata.name,
                p.spec.as_ref().and_then(|s| s.node_name.clone()),
                p.status
            );
        }
        panic!("{e}");
    }

    for p in pods.list(&lp).await.expect("list pods").items {
        eprintln!(
            "pod {} on {} is {}",
            p.metadata.name.unwrap_or_default(),
            p.spec.and_then(|s| s.node_name).unwrap_or_default(),
            p.status.and_then(|s| s.phase).unwrap_or_default()
        );
    }

    // The Deployment's status catches up through the controller-manager.
    let deploys: Api<Deployment> = ns.api();
    wait_until(
        "deployment 3/3 available",
        Duration::from_secs(60),
        || async {
            let d = deploys.get("web").await?;
            Ok(d.status.and_then(|s| s.available_replicas) == Some(3))
        },
    )
    .await
    .expect("deployment available");

    ns.delete().await.expect("delete namespace");
    cluster.delete_node(&old).await.expect("delete node");
    cluster.delete_node(&new).await.expect("delete node");
}
