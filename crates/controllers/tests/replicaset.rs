//! The ReplicaSet and ReplicationController controllers against a real API server,
//! scheduler and hollow nodes: pods created and never more, adoption of an orphan and
//! deletion of the extra in upstream's order, release of a relabelled pod, quota
//! failures reported on the status, `minReadySeconds`, and `kubectl scale`.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use common::{Cluster, eventually, wait_for};
use futures_util::StreamExt;
use keelson_api::k8s_openapi::api::apps::v1::ReplicaSet;
use keelson_api::k8s_openapi::api::core::v1::{Pod, ReplicationController, ResourceQuota};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

fn replica_set(name: &str, replicas: i32) -> Result<ReplicaSet> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name, "tier": "web" } },
                "spec": { "containers": [{ "name": "c", "image": "registry.k8s.io/pause:3.10" }] },
            },
        },
    }))?)
}

/// The active pods controlled by the object with `uid`.
async fn owned_pods(pods: &Api<Pod>, uid: &str) -> Result<Vec<Pod>> {
    let list = pods.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid && r.controller == Some(true))
        })
        .collect())
}

/// Names of every pod ever added in `default` while the returned task runs.
fn record_pod_adds(pods: Api<Pod>) -> (Arc<Mutex<HashSet<String>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let sink = seen.clone();
    let task = tokio::spawn(async move {
        let Ok(stream) = pods.watch(&WatchParams::default(), "0").await else { return };
        let mut stream = stream.boxed();
        while let Some(Ok(event)) = stream.next().await {
            if let WatchEvent::Added(p) = event {
                sink.lock().unwrap().insert(p.metadata.name.unwrap_or_default());
            }
        }
    });
    (seen, task)
}

fn status_of(rs: &ReplicaSet) -> Value {
    serde_json::to_value(&rs.status).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicaset_runs_its_pods_and_never_more() -> Result<()> {
    let cluster = Cluster::start(2).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let (added, watching) = record_pod_adds(pods.clone());
    let sets: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    let rs = sets.create(&PostParams::default(), &replica_set("web", 5)?).await?;
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let rs = wait_for(
        "5 ready and available replicas",
        || async { Ok(sets.get("web").await?) },
        |rs| {
            let s = status_of(rs);
            s["readyReplicas"] == 5 && s["availableReplicas"] == 5 && s["observedGeneration"] == 1
        },
    )
    .await?;
    let s = status_of(&rs);
    assert_eq!((s["replicas"].clone(), s["fullyLabeledReplicas"].clone()), (json!(5), json!(5)));
    let status_manager = rs
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|m| m.subresource.as_deref() == Some("status"));
    assert_eq!(status_manager.and_then(|m| m.manager.as_deref()), Some("kube-controller-manager"));
    let owned = owned_pods(&pods, &uid).await?;
    assert_eq!(owned.len(), 5);
    for pod in &owned {
        let manager =
            pod.metadata.managed_fields.iter().flatten().next().and_then(|m| m.manager.clone());
        assert_eq!(manager.as_deref(), Some("kube-controller-manager"));
        let name = pod.metadata.name.clone().unwrap_or_default();
        assert!(name.starts_with("web-"), "{name}");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("ReplicaSet", "web"));
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(pod.metadata.labels.as_ref().unwrap()["tier"], "web");
    }
    eventually("five SuccessfulCreate events", || async {
        let events = cluster.events("web").await?;
        Ok(events.iter().filter(|e| e.starts_with("SuccessfulCreate: Created pod: web-")).count()
            == 5)
    })
    .await?;
    // Later syncs (status writes, pod updates) create nothing more.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "touched": "yes" } } })),
    )
    .await?;
    wait_for(
        "the update seen",
        || async { Ok(sets.get("web").await?) },
        |rs| status_of(rs)["observedGeneration"] == 1 && rs.metadata.labels.is_some(),
    )
    .await?;
    watching.abort();
    assert_eq!(added.lock().unwrap().len(), 5, "exactly five pods were ever created");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_is_adopted_and_the_unscheduled_extra_deleted_first() -> Result<()> {
    let cluster = Cluster::start(2).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    let rs = sets.create(&PostParams::default(), &replica_set("app", 3)?).await?;
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    wait_for(
        "3 ready",
        || async { Ok(sets.get("app").await?) },
        |rs| status_of(rs)["readyReplicas"] == 3,
    )
    .await?;

    // An orphan no scheduler will place: adopted, then the first to go of four.
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": { "name": "orphan", "labels": { "app": "app" } },
        "spec": { "schedulerName": "nobody", "containers": [{ "name": "c", "image": "registry.k8s.io/pause:3.10" }] },
    }))?;
    pods.create(&PostParams::default(), &orphan).await?;
    eventually("the orphan adopted and deleted", || async {
        let events = cluster.events("app").await?;
        Ok(events.iter().any(|e| e == "SuccessfulDelete: Deleted pod: orphan"))
    })
    .await?;
    let owned = owned_pods(&pods, &uid).await?;
    assert_eq!(owned.len(), 3, "the three running pods kept");
    assert!(owned.iter().all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()));

    // A pod relabelled out of the selector is released and replaced.
    let leaving = owned[0].metadata.name.clone().unwrap_or_default();
    pods.patch(
        &leaving,
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "app": "other" } } })),
    )
    .await?;
    eventually("the relabelled pod released", || async {
        let pod = pods.get(&leaving).await?;
        Ok(pod.metadata.owner_references.unwrap_or_default().is_empty())
    })
    .await?;
    wait_for(
        "a replacement",
        || async { owned_pods(&pods, &uid).await },
        |p| p.len() == 3 && p.iter().all(|p| p.metadata.name.as_deref() != Some(leaving.as_str())),
    )
    .await?;

    // `kubectl scale` through the scale subresource.
    cluster.kubectl(&["scale", "replicaset", "app", "--replicas=1"]).await?;
    wait_for("one pod left", || async { owned_pods(&pods, &uid).await }, |p| p.len() == 1).await?;
    wait_for(
        "the status says 1",
        || async { Ok(sets.get("app").await?) },
        |rs| {
            let s = status_of(rs);
            s["replicas"] == 1 && s["readyReplicas"] == 1 && s["observedGeneration"] == 2
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_failure_shows_as_a_replica_failure_until_it_clears() -> Result<()> {
    let cluster = Cluster::start(1).await?;
    let quotas: Api<ResourceQuota> = Api::namespaced(cluster.client.clone(), "default");
    let quota = serde_json::from_value(json!({
        "metadata": { "name": "two-pods" }, "spec": { "hard": { "pods": "2" } },
    }))?;
    quotas.create(&PostParams::default(), &quota).await?;
    wait_for(
        "the quota counted",
        || async { Ok(quotas.get("two-pods").await?) },
        |q| q.status.as_ref().and_then(|s| s.used.as_ref()).is_some(),
    )
    .await?;
    let sets: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    sets.create(&PostParams::default(), &replica_set("capped", 3)?).await?;
    let rs = wait_for(
        "a ReplicaFailure condition",
        || async { Ok(sets.get("capped").await?) },
        |rs| {
            status_of(rs)["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "ReplicaFailure"))
        },
    )
    .await?;
    let condition = &status_of(&rs)["conditions"][0];
    assert_eq!(
        (condition["status"].clone(), condition["reason"].clone()),
        (json!("True"), json!("FailedCreate"))
    );
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(message.contains("exceeded quota: two-pods"), "{message}");
    eventually("a FailedCreate event", || async {
        let events = cluster.events("capped").await?;
        Ok(events.iter().any(|e| {
            e.starts_with("FailedCreate: Error creating: pods ") && e.contains("exceeded quota")
        }))
    })
    .await?;
    cluster.kubectl(&["scale", "rs", "capped", "--replicas=2"]).await?;
    wait_for(
        "the condition gone",
        || async { Ok(sets.get("capped").await?) },
        |rs| {
            let s = status_of(rs);
            s["conditions"].as_array().is_none_or(Vec::is_empty) && s["replicas"] == 2
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_controller_scales_with_kubectl() -> Result<()> {
    let cluster = Cluster::start(1).await?;
    let rcs: Api<ReplicationController> = Api::namespaced(cluster.client.clone(), "default");
    let rc = serde_json::from_value(json!({
        "metadata": { "name": "legacy" },
        "spec": {
            "replicas": 2,
            // Available a second after Ready: only a sync the controller schedules itself
            // (no event follows) counts the pods available.
            "minReadySeconds": 1,
            "selector": { "app": "legacy" },
            "template": {
                "metadata": { "labels": { "app": "legacy" } },
                "spec": { "containers": [{ "name": "c", "image": "registry.k8s.io/pause:3.10" }] },
            },
        },
    }))?;
    let rc = rcs.create(&PostParams::default(), &rc).await?;
    let uid = rc.metadata.uid.clone().unwrap_or_default();
    let ready = |n: i32| {
        move |rc: &ReplicationController| {
            rc.status.as_ref().is_some_and(|s| {
                s.replicas == n
                    && s.ready_replicas.unwrap_or(0) == n
                    && s.available_replicas.unwrap_or(0) == n
            })
        }
    };
    wait_for("2 ready", || async { Ok(rcs.get("legacy").await?) }, ready(2)).await?;
    cluster.kubectl(&["scale", "rc", "legacy", "--replicas=4"]).await?;
    wait_for("4 ready", || async { Ok(rcs.get("legacy").await?) }, ready(4)).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let owned = owned_pods(&pods, &uid).await?;
    assert_eq!(owned.len(), 4);
    let owner = &owned[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.api_version.as_str(), owner.kind.as_str()), ("v1", "ReplicationController"));
    let events = cluster.events("legacy").await?;
    assert!(
        events.iter().any(|e| e.starts_with("SuccessfulCreate: Created pod: legacy-")),
        "{events:?}"
    );
    Ok(())
}
