//! The node controllers against a real API server: pod CIDRs handed out and taken back
//! (`node-ipam-controller`); a node that stops reporting turns `Unknown`, is tainted
//! and its pods marked not ready and evicted after their `tolerationSeconds`
//! (`node-lifecycle-controller`, `taint-eviction-controller`), and recovers; taints that
//! follow conditions and `kubectl cordon`. Nodes here are plain Node objects whose
//! status and Lease the test writes, as a kubelet would; grace periods are short flags.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, eventually, wait_for};
use futures_util::{StreamExt, TryStreamExt};
use keelson_api::k8s_openapi::api::coordination::v1::Lease;
use keelson_api::k8s_openapi::api::core::v1::{Event, Node, Pod};
use keelson_api::k8s_openapi::jiff::Timestamp;
use keelson_controllers::{NodeSettings, nodeipam, nodelifecycle, podgc};
use kube::Client;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};

fn from<T: serde::de::DeserializeOwned>(value: Value) -> Result<T> {
    Ok(serde_json::from_value(value)?)
}

fn pod_cidr(node: &Node) -> Option<String> {
    node.spec.as_ref()?.pod_cidr.clone()
}

fn taints(node: &Node) -> Vec<String> {
    let mut taints: Vec<String> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    taints.sort();
    taints
}

async fn events_about(client: &Client, name: &str) -> Result<Vec<String>> {
    let events: Api<Event> = Api::all(client.clone());
    let list =
        events.list(&ListParams::default().fields(&format!("involvedObject.name={name}"))).await?;
    Ok(list
        .items
        .into_iter()
        .map(|e| format!("{}: {}", e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect())
}

#[tokio::test]
async fn nodes_get_pod_cidrs_of_the_cluster_range() -> Result<()> {
    let settings = NodeSettings {
        ipam: Some(nodeipam::Settings::new("10.42.0.0/22", 24).map_err(anyhow::Error::msg)?),
        ..NodeSettings::default()
    };
    let cluster = Cluster::start_with(0, settings).await?;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    // A node that brings its own block keeps it, and the block is never handed out.
    nodes
        .create(
            &PostParams::default(),
            &from(json!({ "metadata": { "name": "own" }, "spec": { "podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"] } }))?,
        )
        .await?;
    let mut given = Vec::new();
    for name in ["a", "b", "c"] {
        nodes
            .create(&PostParams::default(), &from(json!({ "metadata": { "name": name } }))?)
            .await?;
        let node = wait_for(
            "a pod CIDR",
            || async { Ok(nodes.get(name).await?) },
            |n| pod_cidr(n).is_some(),
        )
        .await?;
        let spec = node.spec.clone().unwrap_or_default();
        assert_eq!(spec.pod_cidrs.as_deref(), Some(&[pod_cidr(&node).unwrap_or_default()][..]));
        given.push(pod_cidr(&node).unwrap_or_default());
    }
    given.sort();
    assert_eq!(given, ["10.42.1.0/24", "10.42.2.0/24", "10.42.3.0/24"]);

    // The range is used up: the next node is told so.
    nodes.create(&PostParams::default(), &from(json!({ "metadata": { "name": "d" } }))?).await?;
    eventually("the CIDRNotAvailable event", || async {
        Ok(events_about(&cluster.client, "d")
            .await?
            .iter()
            .any(|e| e == "CIDRNotAvailable: Node d status is now: CIDRNotAvailable"))
    })
    .await?;
    assert_eq!(pod_cidr(&nodes.get("d").await?), None);
    nodes.delete("d", &DeleteParams::default()).await?;

    // A deleted node's block is free again.
    let a = pod_cidr(&nodes.get("a").await?).unwrap_or_default();
    nodes.delete("a", &DeleteParams::default()).await?;
    eventually("a gone", || async { Ok(nodes.get_opt("a").await?.is_none()) }).await?;
    nodes.create(&PostParams::default(), &from(json!({ "metadata": { "name": "e" } }))?).await?;
    let e =
        wait_for("e's pod CIDR", || async { Ok(nodes.get("e").await?) }, |n| pod_cidr(n).is_some())
            .await?;
    assert_eq!(pod_cidr(&e), Some(a));
    Ok(())
}

/// Writes the node's Ready condition and renews its Lease, as its kubelet would.
async fn heartbeat(client: &Client, name: &str, ready: &str) -> Result<()> {
    let now = Timestamp::now().to_string();
    let nodes: Api<Node> = Api::all(client.clone());
    let status = json!({ "status": { "conditions": [{
        "type": "Ready",
        "status": ready,
        "reason": "KubeletReady",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }]}});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Strategic(&status)).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": name, "namespace": "kube-node-lease" },
        "spec": { "holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string() },
    });
    leases.patch(name, &PatchParams::apply("kubelet").force(), &Patch::Apply(&lease)).await?;
    Ok(())
}

async fn create_node(client: &Client, name: &str, zone: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node =
        json!({ "metadata": { "name": name, "labels": { "topology.kubernetes.io/zone": zone } } });
    nodes.create(&PostParams::default(), &from(node)?).await?;
    heartbeat(client, name, "True").await
}

async fn create_pod(client: &Client, name: &str, node: &str, tolerations: Value) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = json!({
        "metadata": { "name": name },
        "spec": {
            "nodeName": node,
            "tolerations": tolerations,
            "containers": [{ "name": "c", "image": "registry.k8s.io/pause:3.10" }],
        },
    });
    pods.create(&PostParams::default(), &from(pod)?).await?;
    let status = json!({ "status": {
        "phase": "Running",
        "podIP": "10.42.9.9",
        "conditions": [{ "type": "Ready", "status": "True" }],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

fn condition(pod: &Pod, type_: &str) -> Option<(String, Option<String>)> {
    let c = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

#[tokio::test]
async fn a_lost_node_is_tainted_and_its_pods_evicted_after_their_toleration() -> Result<()> {
    let settings = NodeSettings {
        ipam: None,
        lifecycle: nodelifecycle::Settings {
            monitor_period: Duration::from_millis(200),
            grace_period: Duration::from_secs(3),
            startup_grace_period: Duration::from_secs(3),
            eviction_rate: 10.0,
            ..nodelifecycle::Settings::default()
        },
        ..NodeSettings::default()
    };
    let cluster = Cluster::start_with(0, settings).await?;
    let client = cluster.client.clone();
    // A healthy node in another zone, so the controller does not take the loss of
    // every node for its own network's fault.
    create_node(&client, "healthy", "zone-a").await?;
    let keeper = {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                let _ = heartbeat(&client, "healthy", "True").await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    create_node(&client, "lost", "zone-b").await?;
    let unreachable = |seconds: Option<i64>| json!([{ "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds }]);
    create_pod(&client, "brief", "lost", unreachable(Some(1))).await?;
    create_pod(&client, "stays", "lost", unreachable(None)).await?;

    // No heartbeat from "lost": Unknown after the grace period, tainted, pods not ready.
    let nodes: Api<Node> = Api::all(client.clone());
    let lost = wait_for(
        "the lost node tainted unreachable",
        || async { Ok(nodes.get("lost").await?) },
        |n| {
            taints(n)
                == [
                    "node.kubernetes.io/unreachable:NoExecute",
                    "node.kubernetes.io/unreachable:NoSchedule",
                ]
        },
    )
    .await?;
    let ready = lost
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .cloned();
    let ready = ready.expect("a Ready condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("Unknown", Some("NodeStatusUnknown"))
    );
    assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
    let no_execute = lost
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .and_then(|t| t.iter().find(|t| t.effect == "NoExecute"))
        .cloned();
    assert!(no_execute.and_then(|t| t.time_added).is_some(), "NoExecute taints carry their time");
    eventually("the NodeNotReady event", || async {
        Ok(events_about(&client, "lost")
            .await?
            .iter()
            .any(|e| e == "NodeNotReady: Node lost status is now: NodeNotReady"))
    })
    .await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let brief = wait_for(
        "the briefly tolerating pod evicted",
        || async { Ok(pods.get_opt("brief").await?) },
        |p| p.as_ref().is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
    )
    .await?;
    if let Some(brief) = brief {
        assert_eq!(
            condition(&brief, "DisruptionTarget"),
            Some(("True".into(), Some("DeletionByTaintManager".into())))
        );
        assert_eq!(
            condition(&brief, "Ready").map(|c| c.0).as_deref(),
            Some("False"),
            "marked not ready"
        );
    }
    eventually("the eviction event", || async {
        Ok(events_about(&client, "brief")
            .await?
            .iter()
            .any(|e| e == "TaintManagerEviction: Marking for deletion Pod default/brief"))
    })
    .await?;
    let stays = pods.get("stays").await?;
    assert!(
        stays.metadata.deletion_timestamp.is_none(),
        "a toleration without seconds holds forever"
    );
    assert_eq!(condition(&stays, "Ready").map(|c| c.0).as_deref(), Some("False"));
    let healthy = nodes.get("healthy").await?;
    assert!(taints(&healthy).is_empty(), "{:?}", taints(&healthy));

    // Back: the taints go.
    heartbeat(&client, "lost", "True").await?;
    wait_for(
        "the taints removed",
        || async { Ok(nodes.get("lost").await?) },
        |n| taints(n).is_empty(),
    )
    .await?;
    keeper.abort();
    Ok(())
}

#[tokio::test]
async fn no_schedule_taints_follow_conditions_and_cordons() -> Result<()> {
    let cluster = Cluster::start_with(0, NodeSettings::default()).await?;
    let client = cluster.client.clone();
    create_node(&client, "n1", "zone-a").await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let pressure =
        json!({ "status": { "conditions": [{ "type": "MemoryPressure", "status": "True" }] } });
    nodes.patch_status("n1", &PatchParams::default(), &Patch::Strategic(&pressure)).await?;
    wait_for(
        "the memory-pressure taint",
        || async { Ok(nodes.get("n1").await?) },
        |n| taints(n) == ["node.kubernetes.io/memory-pressure:NoSchedule"],
    )
    .await?;
    cluster.kubectl(&["cordon", "n1"]).await?;
    wait_for(
        "the unschedulable taint",
        || async { Ok(nodes.get("n1").await?) },
        |n| {
            taints(n)
                == [
                    "node.kubernetes.io/memory-pressure:NoSchedule",
                    "node.kubernetes.io/unschedulable:NoSchedule",
                ]
        },
    )
    .await?;
    cluster.kubectl(&["uncordon", "n1"]).await?;
    let relieved =
        json!({ "status": { "conditions": [{ "type": "MemoryPressure", "status": "False" }] } });
    nodes.patch_status("n1", &PatchParams::default(), &Patch::Strategic(&relieved)).await?;
    wait_for("no taints", || async { Ok(nodes.get("n1").await?) }, |n| taints(n).is_empty())
        .await?;
    Ok(())
}

#[tokio::test]
async fn pods_of_deleted_nodes_and_finished_pods_beyond_the_threshold_are_collected() -> Result<()>
{
    let settings = NodeSettings {
        podgc: podgc::Settings {
            terminated_pod_threshold: 2,
            period: Duration::from_millis(200),
            quarantine: Duration::from_secs(1),
        },
        ..NodeSettings::default()
    };
    let cluster = Cluster::start_with(0, settings).await?;
    let client = cluster.client.clone();
    create_node(&client, "keeper", "zone-a").await?;
    create_node(&client, "gone", "zone-a").await?;
    create_pod(&client, "orphan", "gone", json!([])).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Three finished pods, created in order: the oldest goes, two stay.
    for name in ["done-1", "done-2", "done-3"] {
        create_pod(&client, name, "keeper", json!([])).await?;
        let finished = json!({ "status": { "phase": "Succeeded" } });
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&finished)).await?;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    eventually("the oldest finished pod collected", || async {
        Ok(pods.get_opt("done-1").await?.is_none())
    })
    .await?;
    assert!(pods.get_opt("done-2").await?.is_some() && pods.get_opt("done-3").await?.is_some());

    // The node goes: after the quarantine its pod is marked failed and deleted.
    let nodes: Api<Node> = Api::all(client.clone());
    let params = WatchParams::default().fields("metadata.name=orphan");
    let mut seen = pods.watch(&params, "0").await?.boxed();
    nodes.delete("gone", &DeleteParams::default()).await?;
    let mut failed = None;
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(event) = seen.try_next().await? {
            match event {
                WatchEvent::Modified(pod) if condition(&pod, "DisruptionTarget").is_some() => {
                    failed.get_or_insert(pod);
                }
                WatchEvent::Deleted(_) => break,
                _ => {}
            }
        }
        anyhow::Ok(())
    })
    .await??;
    let failed = failed.expect("the pod marked failed before its delete");
    assert_eq!(failed.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed"));
    assert_eq!(
        condition(&failed, "DisruptionTarget"),
        Some(("True".into(), Some("DeletionByPodGC".into())))
    );
    assert!(pods.get_opt("orphan").await?.is_none());
    assert!(pods.get_opt("done-2").await?.is_some(), "pods of nodes that exist stay");
    Ok(())
}
