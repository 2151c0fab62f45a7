//! The Deployment controller against a real API server, scheduler, ReplicaSet
//! controller and hollow nodes, driven by the real kubectl: a rolling update within
//! maxSurge/maxUnavailable, Recreate, `kubectl rollout status|history|undo|restart|
//! pause|resume`, `kubectl scale`, proportional scaling of a stuck rollout and its
//! progress deadline, revision history cleanup, and a ReplicaSet's quota failure shown
//! on its Deployment.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, ensure};
use common::{Cluster, eventually, is_ready, wait_for};
use futures_util::StreamExt;
use keelson_api::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use keelson_api::k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

fn deployment(name: &str, replicas: i32, strategy: Value, extra: Value) -> Result<Deployment> {
    let mut d = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "strategy": strategy,
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "c", "image": "registry.k8s.io/pause:3.10" }] },
            },
        },
    });
    if let (Some(spec), Value::Object(extra)) = (d["spec"].as_object_mut(), extra) {
        spec.extend(extra);
    }
    Ok(serde_json::from_value(d)?)
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({ "type": "RollingUpdate", "rollingUpdate": { "maxSurge": surge, "maxUnavailable": unavailable } })
}

/// The ReplicaSets of Deployment `name`, lowest revision first.
async fn replica_sets(cluster: &Cluster, name: &str) -> Result<Vec<ReplicaSet>> {
    let api: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    let mut sets: Vec<ReplicaSet> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.name == name && r.kind == "Deployment")
        })
        .collect();
    sets.sort_by_key(|rs| {
        annotation(&rs.metadata, "deployment.kubernetes.io/revision").parse::<i64>().unwrap_or(0)
    });
    Ok(sets)
}

fn annotation(meta: &kube::api::ObjectMeta, key: &str) -> String {
    meta.annotations.as_ref().and_then(|a| a.get(key)).cloned().unwrap_or_default()
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn condition(d: &Deployment, kind: &str) -> (String, String) {
    let cs = d.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    cs.into_iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status, c.reason.unwrap_or_default()))
        .unwrap_or_default()
}

/// Watches `watch` (from now) and calls `seen` with every object, until aborted.
fn observe<K>(
    api: Api<K>,
    mut seen: impl FnMut(WatchEvent<K>) + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::spawn(async move {
        let Ok(stream) = api.watch(&WatchParams::default(), "0").await else { return };
        let mut stream = stream.boxed();
        while let Some(Ok(event)) = stream.next().await {
            seen(event);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_stays_within_surge_and_unavailable() -> Result<()> {
    let cluster = Cluster::start(2).await?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let d = deployment("web", 4, rolling(json!(1), json!(1)), json!({}))?;
    deployments.create(&PostParams::default(), &d).await?;
    cluster.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]).await?;
    let d = deployments.get("web").await?;
    assert_eq!(condition(&d, "Available"), ("True".into(), "MinimumReplicasAvailable".into()));
    assert_eq!(condition(&d, "Progressing"), ("True".into(), "NewReplicaSetAvailable".into()));
    let status = serde_json::to_value(&d.status)?;
    for field in ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas"] {
        assert_eq!(status[field], 4, "{field} in {status}");
    }
    assert_eq!(annotation(&d.metadata, "deployment.kubernetes.io/revision"), "1");
    let sets = replica_sets(&cluster, "web").await?;
    ensure!(sets.len() == 1, "one ReplicaSet: {sets:?}");
    let first = &sets[0];
    let hash = first
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
        .cloned()
        .context("hash label")?;
    assert_eq!(first.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
    assert_eq!(annotation(&first.metadata, "deployment.kubernetes.io/revision"), "1");
    assert_eq!(annotation(&first.metadata, "deployment.kubernetes.io/desired-replicas"), "4");
    assert_eq!(annotation(&first.metadata, "deployment.kubernetes.io/max-replicas"), "5");

    // Observe the rollout: the ReplicaSets never ask for more than 4 + 1 pods, and no
    // more than 1 of the 4 ready pods is ever missing.
    let sizes: Arc<Mutex<HashMap<String, i32>>> = Arc::default();
    let most = Arc::new(Mutex::new(0));
    let rs_task = {
        let (sizes, most) = (sizes.clone(), most.clone());
        observe(Api::<ReplicaSet>::namespaced(cluster.client.clone(), "default"), move |event| {
            if let WatchEvent::Added(rs) | WatchEvent::Modified(rs) = event {
                let mut sizes = sizes.lock().unwrap();
                sizes.insert(rs.metadata.name.clone().unwrap_or_default(), spec_replicas(&rs));
                let total: i32 = sizes.values().sum();

                let mut most = most.lock().unwrap();
                *most = (*most).max(total);
            }
        })
    };
    let ready: Arc<Mutex<BTreeMap<String, bool>>> = Arc::default();
    let fewest = Arc::new(Mutex::new(i32::MAX));
    let pod_task = {
        let (ready, fewest) = (ready.clone(), fewest.clone());
        observe(Api::<Pod>::namespaced(cluster.client.clone(), "default"), move |event| {
            let mut ready = ready.lock().unwrap();
            match event {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                    ready.insert(p.metadata.name.clone().unwrap_or_default(), is_ready(&p));
                }
                WatchEvent::Deleted(p) => {
                    ready.remove(&p.metadata.name.unwrap_or_default());
                }
                _ => return,
            }
            let count = ready.values().filter(|r| **r).count() as i32;
            if ready.len() >= 4 {
                let mut fewest = fewest.lock().unwrap();
                *fewest = (*fewest).min(count);
            }
        })
    };
    eventually("the watches primed", || async {
        Ok(sizes.lock().unwrap().len() == 1 && ready.lock().unwrap().len() == 4)
    })
    .await?;

    cluster.kubectl(&["set", "image", "deployment/web", "c=registry.k8s.io/pause:3.9"]).await?;
    cluster.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]).await?;
    rs_task.abort();
    pod_task.abort();
    let most = *most.lock().unwrap();
    let fewest = *fewest.lock().unwrap();
    assert!(most <= 5, "the ReplicaSets asked for {most} pods at most; maxSurge allows 5");
    assert!(fewest >= 3, "{fewest} pods were ready at the least; maxUnavailable allows 3");

    let sets = replica_sets(&cluster, "web").await?;
    ensure!(sets.len() == 2, "two ReplicaSets: {sets:?}");
    assert_eq!(spec_replicas(&sets[0]), 0, "the old one scaled to zero");
    assert_eq!(
        (
            spec_replicas(&sets[1]),
            annotation(&sets[1].metadata, "deployment.kubernetes.io/revision")
        ),
        (4, "2".into())
    );
    let d = deployments.get("web").await?;
    assert_eq!(annotation(&d.metadata, "deployment.kubernetes.io/revision"), "2");
    let events = cluster.events("web").await?;
    assert!(
        events.iter().any(|e| e.starts_with("ScalingReplicaSet: Scaled up replica set web-")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.starts_with("ScalingReplicaSet: Scaled down replica set web-")),
        "{events:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_undo_restart_pause_resume_and_scale() -> Result<()> {
    let cluster = Cluster::start(2).await?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let d = deployment(
        "app",
        2,
        rolling(json!("25%"), json!("25%")),
        json!({ "revisionHistoryLimit": 2 }),
    )?;
    deployments.create(&PostParams::default(), &d).await?;
    let status = || cluster.kubectl(&["rollout", "status", "deployment/app", "--timeout=120s"]);
    status().await?;
    let first = replica_sets(&cluster, "app").await?[0].metadata.name.clone().context("a name")?;

    cluster.kubectl(&["set", "image", "deployment/app", "c=registry.k8s.io/pause:3.9"]).await?;
    status().await?;
    // Undo: the first ReplicaSet is the new one again, as revision 3.
    cluster.kubectl(&["rollout", "undo", "deployment/app"]).await?;
    let out = status().await?;
    assert!(out.contains("successfully rolled out"), "{out}");
    let sets = replica_sets(&cluster, "app").await?;
    let again = sets
        .iter()
        .find(|rs| rs.metadata.name.as_deref() == Some(first.as_str()))
        .context("the first ReplicaSet")?;
    assert_eq!(spec_replicas(again), 2);
    assert_eq!(annotation(&again.metadata, "deployment.kubernetes.io/revision"), "3");
    assert_eq!(annotation(&again.metadata, "deployment.kubernetes.io/revision-history"), "1");
    let history = cluster.kubectl(&["rollout", "history", "deployment/app"]).await?;
    assert!(history.contains('2') && history.contains('3'), "{history}");

    // Restart: a template annotation, so a new ReplicaSet (revision 4).
    cluster.kubectl(&["rollout", "restart", "deployment/app"]).await?;
    status().await?;
    let sets = replica_sets(&cluster, "app").await?;
    let newest = sets.iter().find(|rs| spec_replicas(rs) == 2).context("an active ReplicaSet")?;
    assert_eq!(annotation(&newest.metadata, "deployment.kubernetes.io/revision"), "4");
    assert!(sets.len() <= 3, "revisionHistoryLimit 2 keeps two old ReplicaSets: {}", sets.len());

    // Paused: a template change makes no ReplicaSet, but scaling works.
    cluster.kubectl(&["rollout", "pause", "deployment/app"]).await?;
    wait_for(
        "the paused condition",
        || async { Ok(deployments.get("app").await?) },
        |d| condition(d, "Progressing") == ("Unknown".into(), "DeploymentPaused".into()),
    )
    .await?;
    cluster.kubectl(&["set", "image", "deployment/app", "c=registry.k8s.io/pause:3.8"]).await?;
    cluster.kubectl(&["scale", "deployment/app", "--replicas=3"]).await?;
    wait_for(
        "3 available while paused",
        || async { Ok(deployments.get("app").await?) },
        |d| {
            let s = d.status.clone().unwrap_or_default();
            s.available_replicas == Some(3) && s.observed_generation == d.metadata.generation
        },
    )
    .await?;
    let image_of = |rs: &ReplicaSet| {
        let template = rs.spec.as_ref().and_then(|s| s.template.as_ref());
        template.and_then(|t| t.spec.as_ref()).and_then(|s| s.containers[0].image.clone())
    };
    let newest = Some("registry.k8s.io/pause:3.8".to_string());
    let sets = replica_sets(&cluster, "app").await?;
    assert!(sets.iter().all(|rs| image_of(rs) != newest), "no rollout while paused");
    cluster.kubectl(&["rollout", "resume", "deployment/app"]).await?;
    status().await?;
    let sets = replica_sets(&cluster, "app").await?;
    let active: Vec<&ReplicaSet> = sets.iter().filter(|rs| spec_replicas(rs) > 0).collect();
    ensure!(active.len() == 1, "one active ReplicaSet: {active:?}");
    assert_eq!(spec_replicas(active[0]), 3);
    let image = active[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers[0].image.clone());
    assert_eq!(image, Some(Some("registry.k8s.io/pause:3.8".into())));
    assert!(sets.len() <= 3, "old revisions cleaned up: {}", sets.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_rollout_scales_proportionally_and_times_out() -> Result<()> {
    let cluster = Cluster::start(1).await?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let d = deployment(
        "stuck",
        4,
        rolling(json!(2), json!(0)),
        json!({ "progressDeadlineSeconds": 3 }),
    )?;
    deployments.create(&PostParams::default(), &d).await?;
    cluster.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=120s"]).await?;
    // New pods that no node can take: the rollout stops at the surge.
    cluster
        .kubectl(&[
            "patch",
            "deployment/stuck",
            "-p",
            r#"{"spec":{"template":{"spec":{"nodeSelector":{"nowhere":"true"}}}}}"#,
        ])
        .await?;
    let sizes = || async {
        let sets = replica_sets(&cluster, "stuck").await?;
        Ok(sets.iter().map(spec_replicas).collect::<Vec<_>>())
    };
    wait_for("old 4, new 2", sizes, |s| s == &[4, 2]).await?;
    let d = wait_for(
        "the deadline exceeded",
        || async { Ok(deployments.get("stuck").await?) },
        |d| condition(d, "Progressing") == ("False".into(), "ProgressDeadlineExceeded".into()),
    )
    .await?;
    let message = d
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .and_then(|c| c.message);
    assert!(message.is_some_and(|m| m.ends_with("has timed out progressing.")));
    let err = cluster
        .kubectl(&["rollout", "status", "deployment/stuck", "--timeout=60s"])
        .await
        .expect_err("a stuck rollout fails");
    assert!(err.to_string().contains("exceeded its progress deadline"), "{err}");
    // 4 → 8 with 6 pods across two ReplicaSets and room for 10: 4·10/6 ≈ 7 and 2·10/6 ≈ 3.
    cluster.kubectl(&["scale", "deployment/stuck", "--replicas=8"]).await?;
    wait_for("old 7, new 3", sizes, |s| s == &[7, 3]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_every_old_pod_before_the_new_ones() -> Result<()> {
    let cluster = Cluster::start(1).await?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let d = deployment("db", 3, json!({ "type": "Recreate" }), json!({}))?;
    deployments.create(&PostParams::default(), &d).await?;
    cluster.kubectl(&["rollout", "status", "deployment/db", "--timeout=120s"]).await?;
    let first = replica_sets(&cluster, "db").await?[0].metadata.uid.clone().context("uid")?;
    // Pods of both revisions never run at once.
    let live: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let overlap = Arc::new(Mutex::new(false));
    let task = {
        let (live, overlap) = (live.clone(), overlap.clone());
        observe(Api::<Pod>::namespaced(cluster.client.clone(), "default"), move |event| {
            let mut live = live.lock().unwrap();
            match event {
                WatchEvent::Added(p) | WatchEvent::Modified(p)
                    if p.metadata.deletion_timestamp.is_none() =>
                {
                    let owner = p.metadata.owner_references.clone().unwrap_or_default();
                    live.insert(
                        p.metadata.name.clone().unwrap_or_default(),
                        owner.first().map(|r| r.uid.clone()).unwrap_or_default(),
                    );
                }
                WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p) => {
                    live.remove(&p.metadata.name.unwrap_or_default());
                }
                _ => return,
            }
            let owners: std::collections::HashSet<&String> = live.values().collect();
            if owners.len() > 1 {
                *overlap.lock().unwrap() = true;
            }
        })
    };
    eventually("the watch primed", || async { Ok(live.lock().unwrap().len() == 3) }).await?;
    cluster.kubectl(&["set", "image", "deployment/db", "c=registry.k8s.io/pause:3.9"]).await?;
    cluster.kubectl(&["rollout", "status", "deployment/db", "--timeout=120s"]).await?;
    task.abort();
    assert!(!*overlap.lock().unwrap(), "old and new pods overlapped");
    let sets = replica_sets(&cluster, "db").await?;
    let old = sets
        .iter()
        .find(|rs| rs.metadata.uid.as_deref() == Some(first.as_str()))
        .context("the old ReplicaSet")?;
    assert_eq!(spec_replicas(old), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_failure_shows_on_its_deployment() -> Result<()> {
    let cluster = Cluster::start(1).await?;
    let quotas: Api<keelson_api::k8s_openapi::api::core::v1::ResourceQuota> =
        Api::namespaced(cluster.client.clone(), "default");
    let quota = serde_json::from_value(json!({
        "metadata": { "name": "one-pod" }, "spec": { "hard": { "pods": "1" } },
    }))?;
    quotas.create(&PostParams::default(), &quota).await?;
    wait_for(
        "the quota counted",
        || async { Ok(quotas.get("one-pod").await?) },
        |q| q.status.as_ref().and_then(|s| s.used.as_ref()).is_some(),
    )
    .await?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let d = deployment("capped", 3, rolling(json!(1), json!(0)), json!({}))?;
    deployments.create(&PostParams::default(), &d).await?;
    let d = wait_for(
        "a ReplicaFailure condition",
        || async { Ok(deployments.get("capped").await?) },
        |d| condition(d, "ReplicaFailure") == ("True".into(), "FailedCreate".into()),
    )
    .await?;
    assert_eq!(condition(&d, "Available").0, "False");
    let events = cluster.events("capped").await?;
    let created =
        events.iter().any(|e| e.starts_with("ScalingReplicaSet: Scaled up replica set capped-"));
    assert!(created, "{events:?}");
    Ok(())
}
