//! The DaemonSet controller against a real API server, scheduler and hollow nodes,
//! driven by the real kubectl: one pod per node with its status counts, a node added
//! later, a nodeSelector following relabelled nodes, a taint without toleration, a
//! rolling update within maxUnavailable with `kubectl rollout status`, and
//! `kubectl rollout history|undo` over the ControllerRevisions.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::{Result, ensure};
use common::{Cluster, eventually, is_ready, wait_for};
use futures_util::StreamExt;
use keelson_api::k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use keelson_api::k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

const IMAGE: &str = "registry.k8s.io/pause:3.10";

fn daemon_set(name: &str, extra_spec: Value, pod_spec: Value) -> Result<DaemonSet> {
    let mut ds = json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": { "name": name },
        "spec": {
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "c", "image": IMAGE }] },
            },
        },
    });
    if let Value::Object(extra) = extra_spec {
        ds["spec"].as_object_mut().expect("spec").extend(extra);
    }
    if let Value::Object(extra) = pod_spec {
        ds["spec"]["template"]["spec"].as_object_mut().expect("pod spec").extend(extra);
    }
    Ok(serde_json::from_value(ds)?)
}

/// The active pods of DaemonSet `name`, by the node they are pinned to.
async fn pods_by_node(client: &kube::Client, name: &str) -> Result<BTreeMap<String, Vec<Pod>>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = pods.list(&ListParams::default().labels(&format!("app={name}"))).await?;
    let mut by_node: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        by_node.entry(pinned_node(&pod)).or_default().push(pod);
    }
    Ok(by_node)
}

fn pinned_node(pod: &Pod) -> String {
    let value = serde_json::to_value(pod).unwrap_or_default();
    value
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn status(ds: &DaemonSet) -> Value {
    serde_json::to_value(&ds.status).unwrap_or_default()
}

fn counts(ds: &DaemonSet) -> [i64; 6] {
    let s = status(ds);
    let n = |f: &str| s[f].as_i64().unwrap_or(0);
    [
        n("desiredNumberScheduled"),
        n("currentNumberScheduled"),
        n("numberReady"),
        n("numberAvailable"),
        n("updatedNumberScheduled"),
        n("numberMisscheduled"),
    ]
}

async fn wait_counts(cluster: &Cluster, name: &str, want: [i64; 6]) -> Result<DaemonSet> {
    let sets: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), "default");
    wait_for(
        &format!("daemonset {name} counts {want:?}"),
        || async { Ok(sets.get(name).await?) },
        |ds| counts(ds) == want,
    )
    .await
}

async fn revisions(cluster: &Cluster, name: &str) -> Result<Vec<ControllerRevision>> {
    let api: Api<ControllerRevision> = Api::namespaced(cluster.client.clone(), "default");
    let mut list: Vec<_> = api
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await?
        .items
        .into_iter()
        .filter(|r| r.metadata.owner_references.iter().flatten().any(|o| o.name == name))
        .collect();
    list.sort_by_key(|r| r.revision);
    Ok(list)
}

fn label(meta: &kube::api::ObjectMeta, key: &str) -> String {
    meta.labels.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_node_and_a_node_added_later_gets_one() -> Result<()> {
    let cluster = Cluster::start(3).await?;
    let sets: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), "default");
    sets.create(&PostParams::default(), &daemon_set("agent", json!({}), json!({}))?).await?;
    cluster.kubectl(&["rollout", "status", "daemonset/agent", "--timeout=120s"]).await?;
    let ds = wait_counts(&cluster, "agent", [3, 3, 3, 3, 3, 0]).await?;
    let s = status(&ds);
    assert_eq!(s["numberUnavailable"].as_i64().unwrap_or(0), 0, "{s}");
    assert_eq!(s["observedGeneration"], json!(ds.metadata.generation), "{s}");

    let by_node = pods_by_node(&cluster.client, "agent").await?;
    let nodes: Vec<&String> = by_node.keys().collect();
    assert_eq!(nodes, ["hollow-node-0", "hollow-node-1", "hollow-node-2"]);
    let history = revisions(&cluster, "agent").await?;
    ensure!(history.len() == 1, "one revision: {history:?}");
    let hash = label(&history[0].metadata, "controller-revision-hash");
    assert_eq!(history[0].metadata.name.as_deref(), Some(format!("agent-{hash}").as_str()));
    assert_eq!(history[0].revision, 1);
    for (node, pods) in &by_node {
        ensure!(pods.len() == 1, "one pod on {node}: {pods:?}");
        let pod = &pods[0];
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.node_name.clone()).as_deref(),
            Some(node.as_str())
        );
        assert_eq!(label(&pod.metadata, "controller-revision-hash"), hash);
        assert_eq!(label(&pod.metadata, "pod-template-generation"), "1");
        let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("DaemonSet", "agent"));
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
        let tolerations = serde_json::to_string(&pod.spec.as_ref().expect("spec").tolerations)?;
        for key in ["not-ready", "unreachable", "disk-pressure", "unschedulable"] {
            ensure!(tolerations.contains(&format!("node.kubernetes.io/{key}")), "{tolerations}");
        }
    }
    let events = cluster.events("agent").await?;
    ensure!(
        events.iter().filter(|e| e.starts_with("SuccessfulCreate: Created pod: agent-")).count()
            == 3,
        "{events:?}"
    );

    // A node registered later gets its pod, pinned to it.
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let node: Node = serde_json::from_value(json!({ "metadata": { "name": "late" } }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let ready = json!({ "status": { "conditions": [{ "type": "Ready", "status": "True",
        "reason": "KubeletReady", "lastHeartbeatTime": keelson_api::k8s_openapi::jiff::Timestamp::now().to_string() }] } });
    nodes.patch_status("late", &PatchParams::default(), &Patch::Strategic(&ready)).await?;
    let client = cluster.client.clone();
    eventually("a pod for the late node", || {
        let client = client.clone();
        async move {
            Ok(pods_by_node(&client, "agent").await?.get("late").is_some_and(|p| p.len() == 1))
        }
    })
    .await?;
    wait_for(
        "four nodes desired",
        || async { Ok(sets.get("agent").await?) },
        |ds| counts(ds)[0] == 4,
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_and_taints_choose_nodes() -> Result<()> {
    let cluster = Cluster::start(3).await?;
    cluster.kubectl(&["label", "node", "hollow-node-0", "role=edge"]).await?;
    cluster.kubectl(&["taint", "node", "hollow-node-2", "dedicated=db:NoSchedule"]).await?;
    let sets: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), "default");
    let edge = daemon_set("edge", json!({}), json!({ "nodeSelector": { "role": "edge" } }))?;
    sets.create(&PostParams::default(), &edge).await?;
    let all = daemon_set("all", json!({}), json!({}))?;
    sets.create(&PostParams::default(), &all).await?;

    // The tainted node runs neither; the selector limits `edge` to the labelled node.
    wait_counts(&cluster, "edge", [1, 1, 1, 1, 1, 0]).await?;
    wait_counts(&cluster, "all", [2, 2, 2, 2, 2, 0]).await?;
    let nodes: Vec<String> = pods_by_node(&cluster.client, "all").await?.into_keys().collect();
    assert_eq!(nodes, ["hollow-node-0", "hollow-node-1"]);
    let nodes: Vec<String> = pods_by_node(&cluster.client, "edge").await?.into_keys().collect();
    assert_eq!(nodes, ["hollow-node-0"]);

    // Relabelling moves the pod: one added on the newly labelled node, one removed.
    cluster.kubectl(&["label", "node", "hollow-node-1", "role=edge"]).await?;
    cluster.kubectl(&["label", "node", "hollow-node-0", "role-"]).await?;
    let client = cluster.client.clone();
    eventually("edge moved to hollow-node-1", || {
        let client = client.clone();
        async move {
            let by_node = pods_by_node(&client, "edge").await?;
            Ok(by_node.keys().map(String::as_str).collect::<Vec<_>>() == ["hollow-node-1"])
        }
    })
    .await?;
    wait_counts(&cluster, "edge", [1, 1, 1, 1, 1, 0]).await?;
    let events = cluster.events("edge").await?;
    ensure!(
        events.iter().any(|e| e.starts_with("SuccessfulDelete: Deleted pod: edge-")),
        "{events:?}"
    );

    // A toleration lets `all` onto the tainted node too.
    let patch = json!({ "spec": { "template": { "spec": { "tolerations": [
        { "key": "dedicated", "operator": "Exists", "effect": "NoSchedule" },
    ]}}}});
    sets.patch("all", &PatchParams::default(), &Patch::Merge(&patch)).await?;
    cluster.kubectl(&["rollout", "status", "daemonset/all", "--timeout=120s"]).await?;
    wait_counts(&cluster, "all", [3, 3, 3, 3, 3, 0]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_stays_within_max_unavailable_and_undo_rolls_back() -> Result<()> {
    let cluster = Cluster::start(3).await?;
    let sets: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), "default");
    let strategy = json!({ "updateStrategy": { "type": "RollingUpdate",
        "rollingUpdate": { "maxUnavailable": 1 } } });
    sets.create(&PostParams::default(), &daemon_set("web", strategy, json!({}))?).await?;
    cluster.kubectl(&["rollout", "status", "daemonset/web", "--timeout=120s"]).await?;
    wait_counts(&cluster, "web", [3, 3, 3, 3, 3, 0]).await?;

    // Watch every pod: at no time may more than one node lack a ready pod.
    let nodes = ["hollow-node-0", "hollow-node-1", "hollow-node-2"];
    let (observer, worst) = observe(&cluster, "web", &nodes).await?;
    cluster.kubectl(&["set", "image", "daemonset/web", "c=registry.k8s.io/pause:3.9"]).await?;
    cluster.kubectl(&["rollout", "status", "daemonset/web", "--timeout=120s"]).await?;
    wait_counts(&cluster, "web", [3, 3, 3, 3, 3, 0]).await?;
    observer.abort();
    let (worst, _) = *worst.lock().expect("lock");
    ensure!(worst <= 1, "{worst} nodes lacked a ready pod at once; maxUnavailable is 1");

    let history = revisions(&cluster, "web").await?;
    ensure!(history.len() == 2, "two revisions: {history:?}");
    assert_eq!(history.iter().map(|r| r.revision).collect::<Vec<_>>(), [1, 2]);
    let new_hash = label(&history[1].metadata, "controller-revision-hash");
    for (_, pods) in pods_by_node(&cluster.client, "web").await? {
        ensure!(pods.len() == 1, "{pods:?}");
        assert_eq!(label(&pods[0].metadata, "controller-revision-hash"), new_hash);
        assert_eq!(label(&pods[0].metadata, "pod-template-generation"), "2");
        let image = pods[0].spec.as_ref().and_then(|s| s.containers[0].image.clone());
        assert_eq!(image.as_deref(), Some("registry.k8s.io/pause:3.9"));
    }

    let listed = cluster.kubectl(&["rollout", "history", "daemonset/web"]).await?;
    ensure!(listed.contains('1') && listed.contains('2'), "{listed}");
    cluster.kubectl(&["rollout", "undo", "daemonset/web"]).await?;
    cluster.kubectl(&["rollout", "status", "daemonset/web", "--timeout=120s"]).await?;
    let ds = wait_counts(&cluster, "web", [3, 3, 3, 3, 3, 0]).await?;
    let image = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers[0].image.clone());
    assert_eq!(image, Some(Some(IMAGE.to_string())));
    let history = revisions(&cluster, "web").await?;
    // The first template is current again: its revision is raised to 3.
    assert_eq!(history.iter().map(|r| r.revision).collect::<Vec<_>>(), [2, 3]);
    for (_, pods) in pods_by_node(&cluster.client, "web").await? {
        let image = pods[0].spec.as_ref().and_then(|s| s.containers[0].image.clone());
        assert_eq!(image.as_deref(), Some(IMAGE));
    }
    Ok(())
}

/// The nodes of `pods` lacking a ready pod, and the most active pods on one node.
fn coverage(pods: &HashMap<String, Pod>, nodes: &[&str]) -> (usize, usize) {
    let lacking = nodes
        .iter()
        .filter(|n| !pods.values().any(|p| is_ready(p) && pinned_node(p) == **n))
        .count();
    let crowded = nodes
        .iter()
        .map(|n| {
            pods.values()
                .filter(|p| p.metadata.deletion_timestamp.is_none() && pinned_node(p) == *n)
                .count()
        })
        .max()
        .unwrap_or(0);
    (lacking, crowded)
}

/// Watches the pods of `app` from now on: the most `nodes` lacking a ready pod at once,
/// and the most active pods on one node, until aborted.
async fn observe(
    cluster: &Cluster,
    app: &str,
    nodes: &[&'static str],
) -> Result<(tokio::task::JoinHandle<()>, Arc<Mutex<(usize, usize)>>)> {
    let mut seen = HashMap::new();
    for (_, pods) in pods_by_node(&cluster.client, app).await? {
        for pod in pods {
            seen.insert(pod.metadata.name.clone().unwrap_or_default(), pod);
        }
    }
    let worst = Arc::new(Mutex::new(coverage(&seen, nodes)));
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let watched = pods.watch(&WatchParams::default().labels(&format!("app={app}")), "0").await?;
    let (w, nodes) = (worst.clone(), nodes.to_vec());
    let observer = tokio::spawn(async move {
        let mut stream = watched.boxed();
        while let Some(Ok(event)) = stream.next().await {
            match event {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                    seen.insert(p.metadata.name.clone().unwrap_or_default(), p);
                }
                WatchEvent::Deleted(p) => {
                    seen.remove(&p.metadata.name.clone().unwrap_or_default());
                }
                _ => continue,
            }
            let (lacking, crowded) = coverage(&seen, &nodes);
            let mut worst = w.lock().expect("lock");
            *worst = (worst.0.max(lacking), worst.1.max(crowded));
        }
    });
    Ok((observer, worst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surge_update_starts_the_new_pod_before_deleting_the_old() -> Result<()> {
    let cluster = Cluster::start(2).await?;
    let sets: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), "default");
    let strategy = json!({ "updateStrategy": { "type": "RollingUpdate",
        "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 } } });
    sets.create(&PostParams::default(), &daemon_set("surge", strategy, json!({}))?).await?;
    cluster.kubectl(&["rollout", "status", "daemonset/surge", "--timeout=120s"]).await?;
    wait_counts(&cluster, "surge", [2, 2, 2, 2, 2, 0]).await?;

    let (observer, worst) = observe(&cluster, "surge", &["hollow-node-0", "hollow-node-1"]).await?;
    cluster.kubectl(&["set", "image", "daemonset/surge", "c=registry.k8s.io/pause:3.9"]).await?;
    cluster.kubectl(&["rollout", "status", "daemonset/surge", "--timeout=120s"]).await?;
    wait_counts(&cluster, "surge", [2, 2, 2, 2, 2, 0]).await?;
    let client = cluster.client.clone();
    eventually("the old pods gone", || {
        let client = client.clone();
        async move { Ok(pods_by_node(&client, "surge").await?.values().all(|p| p.len() == 1)) }
    })
    .await?;
    observer.abort();
    let (lacking, crowded) = *worst.lock().expect("lock");
    ensure!(lacking == 0, "a node lacked a ready pod during a surge update (maxUnavailable 0)");
    ensure!(crowded == 2, "the new pod ran beside the old one: at most {crowded} on a node");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_replaces_only_deleted_pods_and_failed_pods_are_recreated() -> Result<()> {
    let cluster = Cluster::start(2).await?;
    let sets: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), "default");
    let strategy = json!({ "updateStrategy": { "type": "OnDelete" } });
    sets.create(&PostParams::default(), &daemon_set("manual", strategy, json!({}))?).await?;
    wait_counts(&cluster, "manual", [2, 2, 2, 2, 2, 0]).await?;

    cluster.kubectl(&["set", "image", "daemonset/manual", "c=registry.k8s.io/pause:3.9"]).await?;
    wait_for(
        "the new template observed",
        || async { Ok(sets.get("manual").await?) },
        |ds| status(ds)["observedGeneration"] == json!(2),
    )
    .await?;
    let ds = wait_counts(&cluster, "manual", [2, 2, 2, 2, 0, 0]).await?;
    assert_eq!(status(&ds)["updatedNumberScheduled"].as_i64().unwrap_or(0), 0);
    let by_node = pods_by_node(&cluster.client, "manual").await?;
    let old = by_node["hollow-node-0"][0].metadata.name.clone().unwrap_or_default();
    cluster.kubectl(&["delete", "pod", &old, "--wait=false"]).await?;
    wait_counts(&cluster, "manual", [2, 2, 2, 2, 1, 0]).await?;
    let by_node = pods_by_node(&cluster.client, "manual").await?;
    let image =
        |node: &str| by_node[node][0].spec.as_ref().and_then(|s| s.containers[0].image.clone());
    assert_eq!(image("hollow-node-0").as_deref(), Some("registry.k8s.io/pause:3.9"));
    assert_eq!(image("hollow-node-1").as_deref(), Some(IMAGE), "OnDelete leaves the rest");

    // A failed daemon pod is deleted and a new one made for its node.
    let failed = by_node["hollow-node-1"][0].metadata.name.clone().unwrap_or_default();
    common::finish_pod(&cluster.client, &failed, 1).await?;
    let client = cluster.client.clone();
    let gone = failed.clone();
    eventually("a new pod for hollow-node-1", || {
        let (client, gone) = (client.clone(), gone.clone());
        async move {
            let by_node = pods_by_node(&client, "manual").await?;
            Ok(by_node.get("hollow-node-1").is_some_and(|p| {
                p.len() == 1 && p[0].metadata.name.as_deref() != Some(gone.as_str())
            }))
        }
    })
    .await?;
    let events = cluster.events("manual").await?;
    let wanted = format!(
        "FailedDaemonPod: Found failed daemon pod default/{failed} on node hollow-node-1, will try to kill it"
    );
    ensure!(events.contains(&wanted), "{events:?}");
    wait_counts(&cluster, "manual", [2, 2, 2, 2, 2, 0]).await?;
    Ok(())
}
