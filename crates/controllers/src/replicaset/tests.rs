//! The controller against a fake API server and hand-fed informers: a watch that
//! never delivers the pods the controller made (the slowest watch there is) must not
//! make it create or delete again until expectations are met or expire.

use keelson_runtime::queue::RateLimit;
use kube::runtime::watcher::Event;
use serde_json::json;

use super::*;
use crate::testing::{count, fake_client, synced};

fn replica_set(replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": { "name": "web", "namespace": "default", "uid": "rs-uid", "resourceVersion": replicas.to_string(), "generation": 1 },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } }, "spec": { "containers": [{ "name": "c" }] } },
        },
    }))
    .expect("a ReplicaSet")
}

/// A pod of `web` as the watch would deliver it.
fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": "default", "uid": format!("uid-{name}"), "resourceVersion": "1",
            "labels": { "app": "web" },
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-uid", "controller": true }],
        },
        "spec": { "containers": [{ "name": "c" }] },
    }))
    .expect("a pod")
}

#[tokio::test]
async fn a_slow_watch_never_causes_extra_pods() {
    let (client, calls) = fake_client();
    let owners = synced(vec![replica_set(3)]);
    let pods = synced::<Pod>(Vec::new());
    let c =
        Controller::new(client, owners.clone(), pods.clone(), WorkQueue::new(RateLimit::default()));

    c.sync("default/web").await.expect("a sync");
    assert_eq!(count(&calls, "POST", "/pods"), 3);
    // The watch has shown none of them yet: syncing again creates nothing.
    for _ in 0..3 {
        c.sync("default/web").await.expect("a sync");
    }
    assert_eq!(count(&calls, "POST", "/pods"), 3, "no extra pods while creations are awaited");
    assert_eq!(c.expectations.pending("default/web"), Some((3, 0)));

    // Two arrive: one still awaited.
    pods.apply(Event::Apply(pod("web-a")));
    pods.apply(Event::Apply(pod("web-b")));
    c.sync("default/web").await.expect("a sync");
    assert_eq!(count(&calls, "POST", "/pods"), 3);
    pods.apply(Event::Apply(pod("web-c")));
    c.sync("default/web").await.expect("a sync");
    assert_eq!(count(&calls, "POST", "/pods"), 3, "three wanted, three seen");
    assert!(c.expectations.satisfied("default/web"));

    // Scaled to one: two deletes, and none again until the watch shows them gone.
    owners.apply(Event::Apply(replica_set(1)));
    c.sync("default/web").await.expect("a sync");
    assert_eq!(count(&calls, "DELETE", "/pods/"), 2);
    c.sync("default/web").await.expect("a sync");
    assert_eq!(count(&calls, "DELETE", "/pods/"), 2, "no deletes while deletions are awaited");
    let deleted: Vec<String> = calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, _)| m == "DELETE")
        .filter_map(|(_, p)| p.rsplit('/').next().map(str::to_owned))
        .collect();
    for name in &deleted {
        pods.apply(Event::Delete(pod(name)));
    }
    assert!(c.expectations.satisfied("default/web"));
    c.sync("default/web").await.expect("a sync");
    assert_eq!(count(&calls, "DELETE", "/pods/"), 2);
    assert_eq!(count(&calls, "POST", "/pods"), 3);
}

#[tokio::test(start_paused = true)]
async fn lost_events_stop_blocking_once_expectations_expire() {
    let (client, calls) = fake_client();
    let owners = synced(vec![replica_set(2)]);
    let pods = synced::<Pod>(Vec::new());
    let c = Controller::new(client, owners, pods, WorkQueue::new(RateLimit::default()));
    c.sync("default/web").await.expect("a sync");
    assert_eq!(count(&calls, "POST", "/pods"), 2);
    tokio::time::advance(crate::expectations::TTL + Duration::from_secs(1)).await;
    c.sync("default/web").await.expect("a sync");
    assert_eq!(
        count(&calls, "POST", "/pods"),
        4,
        "after the TTL the controller acts on what it sees"
    );
}
