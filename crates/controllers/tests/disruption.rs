//! The disruption controller against a real API server, scheduler and hollow nodes,
//! driven by the real kubectl: a PodDisruptionBudget's status from a Deployment's
//! pods (minAvailable, maxUnavailable as a percentage of the Deployment's scale), the
//! Eviction API refusing what the budget does not allow, `kubectl drain` honouring a
//! budget, and the fail-safe status when a pod's controller has no scale.

mod common;

use anyhow::Result;
use common::{Cluster, wait_for};
use keelson_api::k8s_openapi::api::core::v1::Pod;
use keelson_api::k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, ListParams};

const IMAGE: &str = "registry.k8s.io/pause:3.10";

/// The budget's status as `expected/desired/current/allowed reason`.
async fn summary(budgets: &Api<PodDisruptionBudget>, name: &str) -> Result<String> {
    let pdb = budgets.get(name).await?;
    let status = pdb.status.unwrap_or_default();
    let condition = status.conditions.iter().flatten().find(|c| c.type_ == "DisruptionAllowed");
    let observed = status.observed_generation == pdb.metadata.generation;
    Ok(format!(
        "{}/{}/{}/{} {} {}",
        status.expected_pods,
        status.desired_healthy,
        status.current_healthy,
        status.disruptions_allowed,
        condition.map_or("-".into(), |c| format!("{}:{}", c.status, c.reason)),
        if observed { "observed" } else { "stale" },
    ))
}

async fn ready_pods(pods: &Api<Pod>, label: &str) -> Result<usize> {
    let list = pods.list(&ListParams::default().labels(label)).await?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && common::is_ready(p))
        .count())
}

#[tokio::test]
async fn a_budget_counts_the_deployments_pods_and_the_eviction_api_spends_it() -> Result<()> {
    let c = Cluster::start(3).await?;
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    c.kubectl(&["create", "deployment", "web", "--image", IMAGE, "--replicas", "3"]).await?;
    c.kubectl(&["create", "pdb", "web", "--selector", "app=web", "--min-available", "3"]).await?;
    wait_for(
        "all three healthy, none to spare",
        || summary(&budgets, "web"),
        |s: &String| s == "3/3/3/0 False:InsufficientPods observed",
    )
    .await?;
    // Nothing to spare: the Eviction API refuses, as upstream words it (asked by a
    // client that does not retry a 429 after its Retry-After, as kube's default does).
    let victim = pods.list(&ListParams::default().labels("app=web")).await?.items.remove(0);
    let name = victim.metadata.name.clone().unwrap_or_default();
    let (_, mut config) = keelson_runtime::credentials::from_kubeconfig(&c.kubeconfig()).await?;
    config.default_retry = false;
    let once: Api<Pod> = Api::namespaced(kube::Client::try_from(config)?, "default");
    let refused = once.evict(&name, &EvictParams::default()).await.expect_err("refused");
    match refused {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 429, "{status:?}");
            assert!(
                status
                    .message
                    .contains("Cannot evict pod as it would violate the pod's disruption budget"),
                "{}",
                status.message
            );
        }
        other => panic!("{other}"),
    }
    // One to spare: one eviction goes through and is recorded until the pod is gone.
    c.kubectl(&["patch", "pdb", "web", "--type=merge", "-p", r#"{"spec":{"minAvailable":2}}"#])
        .await?;
    wait_for(
        "one disruption allowed",
        || summary(&budgets, "web"),
        |s: &String| s == "3/2/3/1 True:SufficientPods observed",
    )
    .await?;
    pods.evict(&name, &EvictParams::default()).await?;
    // The Deployment replaces it; the budget comes back to one allowed.
    wait_for(
        "the replacement counted",
        || summary(&budgets, "web"),
        |s: &String| s == "3/2/3/1 True:SufficientPods observed",
    )
    .await?;
    assert!(pods.get_opt(&name).await?.is_none_or(|p| p.metadata.deletion_timestamp.is_some()));
    // maxUnavailable as a percentage of the Deployment's scale: 50% of 4 is 2.
    c.kubectl(&["delete", "pdb", "web"]).await?;
    c.kubectl(&["create", "pdb", "web-pct", "--selector", "app=web", "--max-unavailable", "50%"])
        .await?;
    c.kubectl(&["scale", "deployment", "web", "--replicas", "4"]).await?;
    wait_for(
        "expected pods from the Deployment's scale",
        || summary(&budgets, "web-pct"),
        |s: &String| s == "4/2/4/2 True:SufficientPods observed",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn kubectl_drain_waits_for_the_budget_and_empties_the_node() -> Result<()> {
    let c = Cluster::start(3).await?;
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    c.kubectl(&["create", "deployment", "web", "--image", IMAGE, "--replicas", "4"]).await?;
    c.kubectl(&["create", "pdb", "web", "--selector", "app=web", "--max-unavailable", "1"]).await?;
    wait_for(
        "the budget",
        || summary(&budgets, "web"),
        |s: &String| s == "4/3/4/1 True:SufficientPods observed",
    )
    .await?;
    // The node with the most of the pods.
    let list = pods.list(&ListParams::default().labels("app=web")).await?;
    let mut by_node = std::collections::BTreeMap::<String, usize>::new();
    for pod in &list.items {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        *by_node.entry(node).or_default() += 1;
    }
    let (node, _) = by_node.iter().max_by_key(|(_, n)| **n).expect("a node");
    let out = c.kubectl(&["drain", node, "--ignore-daemonsets", "--timeout=90s"]).await?;
    assert!(out.contains(&format!("node/{node} drained")), "{out}");
    let left = pods.list(&ListParams::default().labels("app=web")).await?;
    assert!(left.items.iter().all(|p| {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node.as_str())
            || p.metadata.deletion_timestamp.is_some()
    }));
    wait_for("all four ready elsewhere", || ready_pods(&pods, "app=web"), |n: &usize| *n == 4)
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_pod_whose_controller_cannot_scale_fails_safe() -> Result<()> {
    let c = Cluster::start(1).await?;
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), "default");
    c.kubectl(&["create", "configmap", "owner"]).await?;
    let uid = c.kubectl(&["get", "configmap", "owner", "-o", "jsonpath={.metadata.uid}"]).await?;
    let pod = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"odd","labels":{{"app":"odd"}},
        "ownerReferences":[{{"apiVersion":"v1","kind":"ConfigMap","name":"owner","uid":"{uid}","controller":true}}]}},
        "spec":{{"containers":[{{"name":"c","image":"{IMAGE}"}}]}}}}"#
    );
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), pod)?;
    c.kubectl(&["create", "-f", &file.path().display().to_string()]).await?;
    c.kubectl(&["create", "pdb", "odd", "--selector", "app=odd", "--max-unavailable", "1"]).await?;
    let failed = wait_for(
        "the fail-safe status",
        || async { Ok(budgets.get("odd").await?.status.unwrap_or_default()) },
        |s| s.conditions.iter().flatten().any(|c| c.reason == "SyncFailed"),
    )
    .await?;
    assert_eq!(failed.disruptions_allowed, 0);
    let condition = failed
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed")
        .expect("condition");
    assert_eq!(condition.status, "False");
    assert_eq!(condition.message, "configmaps does not implement the scale subresource");
    let events = c.events("odd").await?;
    assert!(
        events.iter().any(|e| e.starts_with(
            "CalculateExpectedPodCountFailed: Failed to calculate the number of expected pods"
        )),
        "{events:?}"
    );
    Ok(())
}
