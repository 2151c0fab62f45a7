//! The controller against a fake API server and hand-fed informers: a watch that never
//! delivers the pods the controller made must not make it put a second pod on a node.

use keelson_runtime::queue::RateLimit;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::*;
use crate::deployment::util::template_hash;
use crate::testing::{count, fake_client, synced};

fn from<K: serde::de::DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("an object")
}

/// A pod of `agent` made from its current template, as the watch would deliver it.
fn pod(name: &str, node: &str) -> Pod {
    let ds = daemon_set();
    let hash = template_hash(&ds.spec.expect("spec").template, None);
    from(json!({
        "metadata": {
            "name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "resourceVersion": "1", "labels": { "app": "agent", update::HASH_LABEL: hash },
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "DaemonSet",
                "name": "agent", "uid": "ds-uid", "controller": true }],
        },
        "spec": { "containers": [{ "name": "c" }], "affinity": { "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
                { "matchFields": [{ "key": "metadata.name", "operator": "In", "values": [node] }] },
            ]},
        }}},
    }))
}

fn daemon_set() -> DaemonSet {
    from(json!({
        "metadata": { "name": "agent", "namespace": "default", "uid": "ds-uid",
            "resourceVersion": "1", "generation": 1 },
        "spec": {
            "selector": { "matchLabels": { "app": "agent" } },
            "template": { "metadata": { "labels": { "app": "agent" } },
                "spec": { "containers": [{ "name": "c" }] } },
        },
    }))
}

#[tokio::test]
async fn a_slow_watch_never_puts_two_pods_on_a_node() {
    let (client, calls) = fake_client();
    let ds = daemon_set();
    let nodes: Vec<Node> =
        (0..3).map(|i| from(json!({ "metadata": { "name": format!("n{i}") } }))).collect();
    let pods = synced::<Pod>(Vec::new());
    let c = Controller::new(
        client,
        Informers {
            sets: synced(vec![ds]),
            pods: pods.clone(),
            nodes: synced(nodes),
            revisions: synced(Vec::new()),
        },
        WorkQueue::new(RateLimit::default()),
        Backoff::default(),
    );
    c.sync("default/agent").await.expect("a sync");
    assert_eq!(count(&calls, "POST", "/pods"), 3, "one pod per node");
    for _ in 0..3 {
        c.sync("default/agent").await.expect("a sync");
    }
    assert_eq!(count(&calls, "POST", "/pods"), 3, "none again while creations are awaited");
    pods.apply(Event::Apply(pod("agent-a", "n0")));
    pods.apply(Event::Apply(pod("agent-b", "n1")));
    c.sync("default/agent").await.expect("a sync");
    assert_eq!(count(&calls, "POST", "/pods"), 3);
    pods.apply(Event::Apply(pod("agent-c", "n2")));
    assert!(c.expectations.satisfied("default/agent"));
    c.sync("default/agent").await.expect("a sync");
    assert_eq!(count(&calls, "POST", "/pods"), 3, "every node has its pod");

    // A second pod on a node (made by someone else, adopted): the younger one goes,
    // once, however often the controller syncs before the watch shows it gone.
    pods.apply(Event::Apply(pod("agent-d", "n0")));
    c.sync("default/agent").await.expect("a sync");
    c.sync("default/agent").await.expect("a sync");
    assert_eq!(count(&calls, "DELETE", "/pods/agent-d"), 1);
    assert_eq!(count(&calls, "DELETE", "/pods/agent-a"), 0, "the oldest is kept");
}

#[tokio::test(start_paused = true)]
async fn failed_pod_backoff_doubles_and_is_forgotten() {
    let limits = Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(4) };
    let backoffs = Backoffs::default();
    let start = Instant::now();
    assert_eq!(backoffs.waiting("k", start), None, "the first failure is acted on at once");
    backoffs.next("k", start, limits);
    assert_eq!(backoffs.waiting("k", start), Some(Duration::from_secs(1)));
    let later = start + Duration::from_secs(1);
    assert_eq!(backoffs.waiting("k", later), None);
    backoffs.next("k", later, limits);
    assert_eq!(backoffs.waiting("k", later), Some(Duration::from_secs(2)));
    for _ in 0..3 {
        backoffs.next("k", later, limits);
    }
    assert_eq!(backoffs.waiting("k", later), Some(Duration::from_secs(4)), "capped at max");
    let idle = later + Duration::from_secs(9);
    backoffs.next("other", idle, limits);
    assert_eq!(backoffs.waiting("k", idle), None, "forgotten after twice max idle");
    backoffs.next("k", idle, limits);
    assert_eq!(backoffs.waiting("k", idle), Some(Duration::from_secs(1)), "starts over");
}
