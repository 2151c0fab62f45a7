//! The StatefulSet controller against a real API server, scheduler and hollow nodes,
//! driven by the real kubectl: OrderedReady creation in ordinal order (web-1 not made
//! while web-0 cannot run) and scale-down from the highest ordinal, Parallel, claims
//! from volume claim templates under a retention policy, a rolling update in reverse
//! ordinal order with a partition, `kubectl rollout status|history|undo` and
//! `kubectl scale`, OnDelete, and deleted or failed pods recreated under their name.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, ensure};
use common::{Cluster, eventually, is_ready, wait_for};
use futures_util::StreamExt;
use keelson_api::k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use keelson_api::k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use keelson_api::k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

const IMAGE: &str = "registry.k8s.io/pause:3.10";
const NEW_IMAGE: &str = "registry.k8s.io/pause:3.9";
const NODES: [&str; 2] = ["hollow-node-0", "hollow-node-1"];

fn stateful_set(name: &str, extra_spec: Value) -> Result<StatefulSet> {
    let mut set = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": { "name": name },
        "spec": {
            "replicas": 3,
            "serviceName": name,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "c", "image": IMAGE }] },
            },
        },
    });
    if let Value::Object(extra) = extra_spec {
        set["spec"].as_object_mut().expect("spec").extend(extra);
    }
    Ok(serde_json::from_value(set)?)
}

fn status(set: &StatefulSet) -> Value {
    serde_json::to_value(&set.status).unwrap_or_default()
}

/// `[replicas, readyReplicas, currentReplicas, updatedReplicas, availableReplicas]`.
fn counts(set: &StatefulSet) -> [i64; 5] {
    let s = status(set);
    let n = |f: &str| s[f].as_i64().unwrap_or(0);
    [
        n("replicas"),
        n("readyReplicas"),
        n("currentReplicas"),
        n("updatedReplicas"),
        n("availableReplicas"),
    ]
}

async fn wait_counts(cluster: &Cluster, name: &str, want: [i64; 5]) -> Result<StatefulSet> {
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), "default");
    wait_for(
        &format!("{name} counts {want:?}"),
        || async { Ok(sets.get(name).await?) },
        |s| counts(s) == want,
    )
    .await
}

/// The pods of `app` not being deleted, by name.
async fn live_pods(client: &kube::Client, app: &str) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await?.items;
    list.retain(|p| p.metadata.deletion_timestamp.is_none());
    list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(list)
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect()
}

fn label<'a>(pod: &'a Pod, key: &str) -> &'a str {
    pod.metadata.labels.as_ref().and_then(|l| l.get(key)).map_or("", String::as_str)
}

fn image(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.containers[0].image.clone()).unwrap_or_default()
}

fn ready_since(pod: &Pod) -> Option<keelson_api::k8s_openapi::jiff::Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(ready.last_transition_time.as_ref()?.0)
}

/// Records, in order, each pod of `app` that starts going away (its first event with a
/// deletion timestamp, or its deletion), as `name`, until aborted.
async fn record_deletions(
    cluster: &Cluster,
    app: &str,
) -> Result<(tokio::task::JoinHandle<()>, Arc<Mutex<Vec<String>>>)> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await?;
    let version = list.metadata.resource_version.unwrap_or_default();
    let watched =
        pods.watch(&WatchParams::default().labels(&format!("app={app}")), &version).await?;
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    let recorder = tokio::spawn(async move {
        let mut stream = watched.boxed();
        let mut going: std::collections::HashSet<String> = Default::default();
        while let Some(Ok(event)) = stream.next().await {
            let (pod, gone) = match event {
                WatchEvent::Modified(p) => {
                    let deleting = p.metadata.deletion_timestamp.is_some();
                    (p, deleting)
                }
                WatchEvent::Deleted(p) => (p, true),
                _ => continue,
            };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if gone && going.insert(uid) {
                seen.lock().expect("lock").push(pod.metadata.name.clone().unwrap_or_default());
            }
        }
    });
    Ok((recorder, order))
}

async fn cordon(cluster: &Cluster, verb: &str) -> Result<()> {
    for node in NODES {
        cluster.kubectl(&[verb, node]).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_ready_creates_in_order_recreates_and_scales_down_from_the_top() -> Result<()> {
    let cluster = Cluster::start(2).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), "default");
    cordon(&cluster, "cordon").await?;
    sets.create(&PostParams::default(), &stateful_set("web", json!({}))?).await?;
    wait_for("web-0", || async { Ok(pods.get_opt("web-0").await?) }, Option::is_some).await?;
    // web-0 cannot be scheduled: web-1 is not made meanwhile.
    for _ in 0..10 {
        ensure!(pods.get_opt("web-1").await?.is_none(), "web-1 made before web-0 was Ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cordon(&cluster, "uncordon").await?;
    cluster.kubectl(&["rollout", "status", "statefulset/web", "--timeout=120s"]).await?;
    let set = wait_counts(&cluster, "web", [3, 3, 3, 3, 3]).await?;
    let s = status(&set);
    ensure!(s["currentRevision"] == s["updateRevision"], "{s}");
    ensure!(s["observedGeneration"] == json!(1) && s["collisionCount"] == json!(0), "{s}");

    let live = live_pods(&cluster.client, "web").await?;
    assert_eq!(names(&live), ["web-0", "web-1", "web-2"]);
    for pair in live.windows(2) {
        let created = pair[1].metadata.creation_timestamp.as_ref().map(|t| t.0);
        ensure!(
            ready_since(&pair[0]).is_some_and(|ready| created.is_some_and(|c| c >= ready)),
            "{} created before {} was Ready",
            names(&pair[1..]).join(""),
            names(&pair[..1]).join("")
        );
    }
    let web1 = &live[1];
    let spec = web1.spec.clone().unwrap_or_default();
    assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("web-1"), Some("web")));
    assert_eq!(label(web1, "statefulset.kubernetes.io/pod-name"), "web-1");
    assert_eq!(label(web1, "apps.kubernetes.io/pod-index"), "1");
    assert_eq!(Some(label(web1, "controller-revision-hash")), s["updateRevision"].as_str());
    let owner = &web1.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("StatefulSet", Some(true)));
    let events = cluster.events("web").await?;
    ensure!(
        events.contains(&"SuccessfulCreate: create Pod web-0 in StatefulSet web successful".into()),
        "{events:?}"
    );

    // A deleted pod comes back under its name.
    let old_uid = web1.metadata.uid.clone();
    cluster.kubectl(&["delete", "pod", "web-1", "--wait=false"]).await?;
    wait_for(
        "web-1 made again",
        || async { Ok(pods.get_opt("web-1").await?) },
        |p| p.as_ref().is_some_and(|p| p.metadata.uid != old_uid && is_ready(p)),
    )
    .await?;
    wait_counts(&cluster, "web", [3, 3, 3, 3, 3]).await?;

    // Scaling down goes from the highest ordinal, one pod after the other is gone.
    let (recorder, order) = record_deletions(&cluster, "web").await?;
    cluster.kubectl(&["scale", "statefulset/web", "--replicas=1"]).await?;
    wait_counts(&cluster, "web", [1, 1, 1, 1, 1]).await?;
    let client = cluster.client.clone();
    eventually("only web-0 left", || {
        let client = client.clone();
        async move { Ok(names(&live_pods(&client, "web").await?) == ["web-0"]) }
    })
    .await?;
    recorder.abort();
    assert_eq!(*order.lock().expect("lock"), ["web-2", "web-1"]);
    let events = cluster.events("web").await?;
    ensure!(
        events.contains(&"SuccessfulDelete: delete Pod web-2 in StatefulSet web successful".into()),
        "{events:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_and_removes_all_pods_at_once() -> Result<()> {
    let cluster = Cluster::start(2).await?;
    cordon(&cluster, "cordon").await?;
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), "default");
    let set = stateful_set("par", json!({ "podManagementPolicy": "Parallel" }))?;
    sets.create(&PostParams::default(), &set).await?;
    let client = cluster.client.clone();
    // All three exist while none can run.
    let pending = wait_for(
        "three pending pods",
        || {
            let client = client.clone();
            async move { live_pods(&client, "par").await }
        },
        |pods| pods.len() == 3,
    )
    .await?;
    ensure!(pending.iter().all(|p| !is_ready(p)), "pods ran on cordoned nodes");
    cordon(&cluster, "uncordon").await?;
    cluster.kubectl(&["rollout", "status", "statefulset/par", "--timeout=120s"]).await?;
    wait_counts(&cluster, "par", [3, 3, 3, 3, 3]).await?;
    cluster.kubectl(&["scale", "statefulset/par", "--replicas=0"]).await?;
    wait_counts(&cluster, "par", [0, 0, 0, 0, 0]).await?;
    eventually("no pods", || {
        let client = client.clone();
        async move { Ok(live_pods(&client, "par").await?.is_empty()) }
    })
    .await?;
    Ok(())
}

async fn claim(cluster: &Cluster, name: &str) -> Result<Option<PersistentVolumeClaim>> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), "default");
    Ok(claims.get_opt(name).await?)
}

fn owners(claim: &PersistentVolumeClaim) -> Vec<String> {
    let refs = claim.metadata.owner_references.iter().flatten();
    refs.map(|r| format!("{}/{}", r.kind, r.name)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_follow_the_templates_and_the_retention_policy() -> Result<()> {
    let cluster = Cluster::start(2).await?;
    // A class the scheduler provisions for the chosen node, so the pods can run.
    let classes: Api<StorageClass> = Api::all(cluster.client.clone());
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": { "name": "local" }, "provisioner": "example.com/fake",
        "volumeBindingMode": "WaitForFirstConsumer",
    }))?;
    classes.create(&PostParams::default(), &class).await?;
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), "default");
    let set = stateful_set(
        "db",
        json!({
            "replicas": 2,
            "volumeClaimTemplates": [{ "metadata": { "name": "data" }, "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                "resources": { "requests": { "storage": "1Gi" } } } }],
            "persistentVolumeClaimRetentionPolicy": { "whenDeleted": "Retain", "whenScaled": "Delete" },
        }),
    )?;
    sets.create(&PostParams::default(), &set).await?;
    cluster.kubectl(&["rollout", "status", "statefulset/db", "--timeout=120s"]).await?;
    for i in 0..2 {
        let c = claim(&cluster, &format!("data-db-{i}")).await?.expect("a claim per pod");
        let labels = c.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("app").map(String::as_str), Some("db"));
        ensure!(owners(&c).is_empty(), "whenDeleted=Retain: no owner yet, {:?}", owners(&c));
    }
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let db1 = pods.get("db-1").await?;
    let volume = db1.spec.as_ref().and_then(|s| s.volumes.as_ref()).and_then(|v| {
        v.iter().find(|v| v.name == "data").and_then(|v| v.persistent_volume_claim.clone())
    });
    assert_eq!(volume.map(|c| c.claim_name).as_deref(), Some("data-db-1"));
    let events = cluster.events("db").await?;
    ensure!(
        events.contains(
            &"SuccessfulCreate: create Claim data-db-0 Pod db-0 in StatefulSet db success".into()
        ),
        "{events:?}"
    );

    // whenScaled=Delete: the claim of the pod scaled away goes with it.
    cluster.kubectl(&["scale", "statefulset/db", "--replicas=1"]).await?;
    wait_for("data-db-1 collected", || claim(&cluster, "data-db-1"), Option::is_none).await?;
    ensure!(claim(&cluster, "data-db-0").await?.is_some(), "the kept pod's claim stays");

    // whenDeleted=Delete: the set owns the claims it keeps, and they go with it.
    let policy =
        json!({ "spec": { "persistentVolumeClaimRetentionPolicy": { "whenDeleted": "Delete" } } });
    sets.patch("db", &PatchParams::default(), &Patch::Merge(&policy)).await?;
    wait_for(
        "data-db-0 owned by the set",
        || claim(&cluster, "data-db-0"),
        |c| c.as_ref().is_some_and(|c| owners(c) == ["StatefulSet/db"]),
    )
    .await?;
    cluster.kubectl(&["delete", "statefulset", "db", "--wait=false"]).await?;
    wait_for("data-db-0 collected", || claim(&cluster, "data-db-0"), Option::is_none).await?;
    Ok(())
}

async fn revisions(cluster: &Cluster, app: &str) -> Result<Vec<i64>> {
    let api: Api<ControllerRevision> = Api::namespaced(cluster.client.clone(), "default");
    let list = api.list(&ListParams::default().labels(&format!("app={app}"))).await?;
    let mut numbers: Vec<i64> = list.items.iter().map(|r| r.revision).collect();
    numbers.sort();
    Ok(numbers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_goes_in_reverse_order_down_to_the_partition_and_undo_rolls_back()
-> Result<()> {
    let cluster = Cluster::start(2).await?;
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), "default");
    let strategy = json!({ "updateStrategy": { "type": "RollingUpdate",
        "rollingUpdate": { "partition": 2 } } });
    sets.create(&PostParams::default(), &stateful_set("web", strategy)?).await?;
    cluster.kubectl(&["rollout", "status", "statefulset/web", "--timeout=120s"]).await?;
    wait_counts(&cluster, "web", [3, 3, 3, 3, 3]).await?;

    // Partition 2: only web-2 moves to the new template.
    cluster.kubectl(&["set", "image", "statefulset/web", &format!("c={NEW_IMAGE}")]).await?;
    let out = cluster.kubectl(&["rollout", "status", "statefulset/web", "--timeout=120s"]).await?;
    ensure!(out.contains("partitioned roll out complete"), "{out}");
    let set = wait_counts(&cluster, "web", [3, 3, 2, 1, 3]).await?;
    let s = status(&set);
    ensure!(s["currentRevision"] != s["updateRevision"] && s["observedGeneration"] == json!(2));
    let live = live_pods(&cluster.client, "web").await?;
    let images: Vec<String> = live.iter().map(image).collect();
    assert_eq!(images, [IMAGE, IMAGE, NEW_IMAGE]);

    // Partition 0: web-1, then web-0.
    let (recorder, order) = record_deletions(&cluster, "web").await?;
    let partition =
        json!({ "spec": { "updateStrategy": { "rollingUpdate": { "partition": 0 } } } });
    sets.patch("web", &PatchParams::default(), &Patch::Merge(&partition)).await?;
    cluster.kubectl(&["rollout", "status", "statefulset/web", "--timeout=120s"]).await?;
    let set = wait_counts(&cluster, "web", [3, 3, 3, 3, 3]).await?;
    recorder.abort();
    assert_eq!(*order.lock().expect("lock"), ["web-1", "web-0"]);
    let s = status(&set);
    ensure!(s["currentRevision"] == s["updateRevision"], "{s}");
    let live = live_pods(&cluster.client, "web").await?;
    ensure!(
        live.iter().all(|p| image(p) == NEW_IMAGE),
        "{:?}",
        live.iter().map(image).collect::<Vec<_>>()
    );
    assert_eq!(revisions(&cluster, "web").await?, [1, 2]);

    let history = cluster.kubectl(&["rollout", "history", "statefulset/web"]).await?;
    ensure!(history.contains('1') && history.contains('2'), "{history}");
    cluster.kubectl(&["rollout", "undo", "statefulset/web"]).await?;
    cluster.kubectl(&["rollout", "status", "statefulset/web", "--timeout=120s"]).await?;
    let set = wait_counts(&cluster, "web", [3, 3, 3, 3, 3]).await?;
    let template_image = set
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers[0].image.clone());
    assert_eq!(template_image, Some(Some(IMAGE.to_string())));
    let client = cluster.client.clone();
    eventually("every pod back on the first template", || {
        let client = client.clone();
        async move { Ok(live_pods(&client, "web").await?.iter().all(|p| image(p) == IMAGE)) }
    })
    .await?;
    // The first template is the update revision again: its number raised to 3.
    assert_eq!(revisions(&cluster, "web").await?, [2, 3]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_replaces_only_deleted_pods_and_failed_pods_are_recreated() -> Result<()> {
    let cluster = Cluster::start(2).await?;
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), "default");
    let strategy = json!({ "replicas": 2, "updateStrategy": { "type": "OnDelete" } });
    sets.create(&PostParams::default(), &stateful_set("od", strategy)?).await?;
    wait_counts(&cluster, "od", [2, 2, 2, 2, 2]).await?;

    cluster.kubectl(&["set", "image", "statefulset/od", &format!("c={NEW_IMAGE}")]).await?;
    let set = wait_for(
        "the new template observed",
        || async { Ok(sets.get("od").await?) },
        |s| status(s)["observedGeneration"] == json!(2),
    )
    .await?;
    assert_eq!(counts(&set), [2, 2, 2, 0, 2], "OnDelete replaces nothing by itself");
    cluster.kubectl(&["delete", "pod", "od-1", "--wait=false"]).await?;
    wait_counts(&cluster, "od", [2, 2, 1, 1, 2]).await?;
    let live = live_pods(&cluster.client, "od").await?;
    assert_eq!(live.iter().map(image).collect::<Vec<_>>(), [IMAGE, NEW_IMAGE]);

    // A failed pod is deleted and made again under its name.
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let old_uid = pods.get("od-0").await?.metadata.uid;
    common::finish_pod(&cluster.client, "od-0", 1).await?;
    wait_for(
        "od-0 made again",
        || async { Ok(pods.get_opt("od-0").await?) },
        |p| p.as_ref().is_some_and(|p| p.metadata.uid != old_uid && is_ready(p)),
    )
    .await?;
    let events = cluster.events("od").await?;
    ensure!(
        events.contains(&"SuccessfulDelete: delete Pod od-0 in StatefulSet od successful".into()),
        "{events:?}"
    );
    wait_counts(&cluster, "od", [2, 2, 0, 2, 2]).await?;
    Ok(())
}
