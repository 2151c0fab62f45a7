//! The pure rules of [`identity`] and [`control`], and the controller against a fake API
//! server with hand-fed informers: OrderedReady makes one pod at a time, and a watch
//! that never delivers never makes it create again.

use keelson_api::k8s_openapi::jiff::Timestamp;
use keelson_runtime::queue::RateLimit;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::control::{Revisions, next_to_update, plan};
use super::identity::*;
use super::*;
use crate::testing::{count as calls_to, fake_client, synced};

fn from<K: serde::de::DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("an object")
}

fn set(extra: Value) -> StatefulSet {
    let mut set = json!({
        "metadata": { "name": "web", "namespace": "default", "uid": "set-uid",
            "resourceVersion": "1", "generation": 1 },
        "spec": {
            "replicas": 3, "serviceName": "nginx",
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "c", "image": "nginx:1" }] } },
            "volumeClaimTemplates": [{ "metadata": { "name": "data" },
                "spec": { "accessModes": ["ReadWriteOnce"] } }],
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "partition": 0 } },
        },
    });
    json_merge(&mut set, extra);
    from(set)
}

fn json_merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                json_merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// A pod of `web` as the API server would hold it: `phase` and readiness given.
fn pod(ordinal: i32, revision: &str, phase: &str, ready: bool) -> Arc<Pod> {
    let name = format!("web-{ordinal}");
    Arc::new(from(json!({
        "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "resourceVersion": "2",
            "labels": { "app": "web", POD_NAME_LABEL: name, "controller-revision-hash": revision },
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                "uid": "set-uid", "controller": true }] },
        "spec": { "containers": [{ "name": "c" }], "volumes": [{ "name": "data",
            "persistentVolumeClaim": { "claimName": format!("data-web-{ordinal}") } }] },
        "status": { "phase": phase, "conditions": [{ "type": "Ready",
            "status": if ready { "True" } else { "False" } }] },
    })))
}

fn revisions(set: &StatefulSet) -> Revisions {
    let template = set.spec.as_ref().expect("spec").template.clone();
    Revisions {
        current: "web-old".into(),
        update: "web-new".into(),
        current_template: template.clone(),
        update_template: template,
    }
}

fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    pods.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect()
}

#[test]
fn ordinals_come_from_the_last_dash() {
    assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
    assert_eq!(parent_and_ordinal("my-web-12"), Some(("my-web", 12)));
    for name in ["web", "web-", "web-x1", "web-99999999999"] {
        assert_eq!(parent_and_ordinal(name), None, "{name}");
    }
}

#[test]
fn a_new_pod_has_its_identity_storage_and_revision() {
    let set = set(json!({ "spec": { "template": { "spec": { "volumes": [
        { "name": "config", "emptyDir": {} }] } } } }));
    let template = set.spec.as_ref().expect("spec").template.clone();
    let pod = new_pod(&set, &template, 2, "web-abc");
    assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
    assert_eq!(pod.metadata.generate_name, None);
    let labels = pod.metadata.labels.clone().expect("labels");
    assert_eq!(labels[POD_NAME_LABEL], "web-2");
    assert_eq!(labels[POD_INDEX_LABEL], "2");
    assert_eq!(labels["controller-revision-hash"], "web-abc");
    assert_eq!(labels["app"], "web");
    let spec = pod.spec.clone().expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("web-2"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let volumes: Vec<(String, Option<String>)> = spec
        .volumes
        .expect("volumes")
        .into_iter()
        .map(|v| (v.name, v.persistent_volume_claim.map(|c| c.claim_name)))
        .collect();
    assert_eq!(volumes, [("data".into(), Some("data-web-2".into())), ("config".into(), None)]);
    let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("StatefulSet", "set-uid"));
    assert!(identity_matches(&set, &pod) && storage_matches(&set, &pod));

    let mut renamed = pod.clone();
    renamed.metadata.labels.as_mut().expect("labels").remove(POD_NAME_LABEL);
    renamed.spec.as_mut().expect("spec").volumes = None;
    assert!(!identity_matches(&set, &renamed) && !storage_matches(&set, &renamed));
    update_identity(&set, &mut renamed);
    update_storage(&set, &mut renamed);
    assert!(identity_matches(&set, &renamed) && storage_matches(&set, &renamed));
}

#[test]
fn claims_are_named_after_template_set_and_ordinal_with_the_selector_labels() {
    let set = set(json!({ "spec": { "volumeClaimTemplates": [{ "metadata": { "name": "data",
        "labels": { "tier": "db" } }, "spec": {} }] } }));
    let claims = claims(&set, 4);
    assert_eq!(claims.len(), 1);
    let (template, claim) = &claims[0];
    assert_eq!(template, "data");
    assert_eq!(claim.metadata.name.as_deref(), Some("data-web-4"));
    assert_eq!(claim.metadata.namespace.as_deref(), Some("default"));
    let labels = claim.metadata.labels.clone().expect("labels");
    assert_eq!((labels["tier"].as_str(), labels["app"].as_str()), ("db", "web"));
}

fn claim_for(ordinal: i32) -> PersistentVolumeClaim {
    from(json!({ "metadata": { "name": format!("data-web-{ordinal}"), "namespace": "default" } }))
}

fn owner_kinds(claim: &PersistentVolumeClaim) -> Vec<String> {
    let refs = claim.metadata.owner_references.iter().flatten();
    refs.map(|r| format!("{}/{}", r.kind, r.name)).collect()
}

#[test]
fn retention_policy_sets_the_claims_owners_as_upstream() {
    let cases = [
        // (whenDeleted, whenScaled, owners of a replica's claim, of a condemned one's)
        ("Retain", "Retain", vec![], vec![]),
        ("Delete", "Retain", vec!["StatefulSet/web"], vec!["StatefulSet/web"]),
        ("Retain", "Delete", vec![], vec!["Pod/web-5"]),
        ("Delete", "Delete", vec!["StatefulSet/web"], vec!["Pod/web-5"]),
    ];
    for (deleted, scaled, replica_owners, condemned_owners) in cases {
        let set = set(json!({ "spec": { "persistentVolumeClaimRetentionPolicy":
            { "whenDeleted": deleted, "whenScaled": scaled } } }));
        for (ordinal, want) in [(1, replica_owners.clone()), (5, condemned_owners)] {
            let pod = pod(ordinal, "r", "Running", true);
            let mut claim = claim_for(ordinal);
            let fresh = want.is_empty();
            assert_eq!(claim_owner_up_to_date(&claim, &set, &pod), fresh, "{deleted}/{scaled}");
            set_claim_owners(&mut claim, &set, &pod);
            assert_eq!(owner_kinds(&claim), want, "{deleted}/{scaled} ordinal {ordinal}");
            assert!(claim_owner_up_to_date(&claim, &set, &pod), "{deleted}/{scaled}");
            let refs = claim.metadata.owner_references.iter().flatten();
            assert!(refs.clone().all(|r| r.controller == Some(true)));
        }
    }
    // Another controller's claim is left to it.
    let set = set(json!({ "spec": { "persistentVolumeClaimRetentionPolicy":
        { "whenDeleted": "Delete", "whenScaled": "Retain" } } }));
    let mut claim = claim_for(1);
    claim.metadata.owner_references = Some(vec![crate::pods::controller_ref(
        "v1",
        "Other",
        &from(json!({ "name": "x", "uid": "x-uid" })),
    )]);
    let pod = pod(1, "r", "Running", true);
    assert!(has_unexpected_controller(&claim, &set, &pod));
    assert!(claim_owner_up_to_date(&claim, &set, &pod));
    // A claim owned by an earlier pod of the name is stale under whenScaled=Delete.
    let scaled = self::set(json!({ "spec": { "persistentVolumeClaimRetentionPolicy":
        { "whenDeleted": "Retain", "whenScaled": "Delete" } } }));
    let mut old = claim_for(1);
    old.metadata.owner_references = Some(vec![crate::pods::controller_ref(
        "v1",
        "Pod",
        &from(json!({ "name": "web-1", "uid": "an-earlier-uid" })),
    )]);
    assert!(claim_is_stale(&scaled, &old, &pod));
    assert!(!claim_is_stale(&set, &old, &pod), "whenScaled=Retain never waits");
}

#[test]
fn the_plan_splits_replicas_from_condemned_and_fills_gaps() {
    let set = set(json!({ "spec": { "ordinals": { "start": 1 } } }));
    let revs = revisions(&set);
    let pods = vec![
        pod(0, "web-old", "Running", true),
        pod(2, "web-old", "Running", false),
        pod(5, "web-old", "Running", true),
        pod(4, "web-old", "Running", true),
    ];
    let plan = plan(&set, &revs, &pods, Timestamp::now());
    assert_eq!(names(&plan.replicas), ["web-1", "web-2", "web-3"]);
    assert_eq!(names(&plan.condemned), ["web-5", "web-4", "web-0"]);
    assert!(!is_created(&plan.replicas[0]), "web-1 is made up");
    assert_eq!(pod_revision(&plan.replicas[0]), "web-new", "partition 0: the update revision");
    assert_eq!(plan.first_unavailable.as_deref(), Some("web-1"));

    let partitioned = self::set(json!({ "spec": { "updateStrategy": {
        "rollingUpdate": { "partition": 2 } } } }));
    let plan = super::control::plan(&partitioned, &revs, &[], Timestamp::now());
    let made: Vec<&str> = plan.replicas.iter().map(|p| pod_revision(p)).collect();
    assert_eq!(made, ["web-old", "web-old", "web-new"], "below the partition: current");
}

#[test]
fn the_rolling_update_goes_down_from_the_highest_ordinal_to_the_partition() {
    let set = set(json!({ "spec": { "updateStrategy": { "rollingUpdate": { "partition": 1 } } } }));
    let now = Timestamp::now();
    let replicas = vec![
        pod(0, "old", "Running", true),
        pod(1, "old", "Running", true),
        pod(2, "old", "Running", true),
    ];
    let next = next_to_update(&set, &replicas, "new", now).map(|p| names(std::slice::from_ref(p)));
    assert_eq!(next, Some(vec!["web-2".to_string()]));
    let replicas = vec![
        pod(0, "old", "Running", true),
        pod(1, "old", "Running", true),
        pod(2, "new", "Pending", false),
    ];
    assert!(next_to_update(&set, &replicas, "new", now).is_none(), "web-2 must be available first");
    let replicas = vec![
        pod(0, "old", "Running", true),
        pod(1, "new", "Running", true),
        pod(2, "new", "Running", true),
    ];
    assert!(next_to_update(&set, &replicas, "new", now).is_none(), "web-0 is below the partition");
}

#[test]
fn a_finished_rolling_update_makes_the_update_revision_current() {
    let set = set(json!({}));
    let mut status = StatefulSetStatus {
        replicas: 3,
        ready_replicas: Some(3),
        updated_replicas: Some(3),
        current_replicas: Some(0),
        current_revision: Some("web-old".into()),
        update_revision: Some("web-new".into()),
        ..StatefulSetStatus::default()
    };
    identity::complete_rolling_update(&set, &mut status);
    assert_eq!(status.current_revision.as_deref(), Some("web-new"));
    assert_eq!(status.current_replicas, Some(3));
    assert!(identity::status_changed(&set, &status));
}

fn controller(
    set: StatefulSet,
    pods: Arc<Informer<Pod>>,
) -> (Arc<Controller>, crate::testing::Calls) {
    let (client, calls) = fake_client();
    let c = Controller::new(
        client,
        Informers {
            sets: synced(vec![set]),
            pods,
            claims: synced(Vec::new()),
            revisions: synced(Vec::new()),
        },
        WorkQueue::new(RateLimit::default()),
    );
    (c, calls)
}

/// A pod of the set's one revision, as the watch would deliver it.
fn made_pod(pods: &Informer<Pod>, set: &StatefulSet, ordinal: i32, phase: &str, ready: bool) {
    let template = &set.spec.as_ref().expect("spec").template;
    let revision =
        crate::history::new_revision(&set.metadata, ("apps/v1", KIND), template, 1, None);
    let revision = crate::history::name_of(&revision);
    pods.apply(Event::Apply((*pod(ordinal, &revision, phase, ready)).clone()));
}

#[tokio::test]
async fn ordered_ready_makes_one_pod_at_a_time_and_never_twice() {
    let pods = synced::<Pod>(Vec::new());
    let set = set(json!({}));
    let (c, calls) = controller(set.clone(), pods.clone());
    c.sync("default/web").await.expect("a sync");
    assert_eq!(calls_to(&calls, "POST", "/pods"), 1, "web-0 only");
    assert_eq!(calls_to(&calls, "POST", "/persistentvolumeclaims"), 1, "its claim first");
    for _ in 0..3 {
        c.sync("default/web").await.expect("a sync");
    }
    assert_eq!(calls_to(&calls, "POST", "/pods"), 1, "none again while web-0 is unseen");
    made_pod(&pods, &set, 0, "Pending", false);
    c.sync("default/web").await.expect("a sync");
    assert_eq!(calls_to(&calls, "POST", "/pods"), 1, "web-1 waits for web-0 to be Ready");
    made_pod(&pods, &set, 0, "Running", true);
    c.sync("default/web").await.expect("a sync");
    assert_eq!(calls_to(&calls, "POST", "/pods"), 2, "web-1 once web-0 is Running and Ready");
    assert!(calls.lock().unwrap().iter().any(|(m, p)| m == "PUT" && p.ends_with("/web/status")));
}

#[tokio::test]
async fn parallel_makes_every_pod_at_once_and_scales_down_all_at_once() {
    let pods = synced::<Pod>(Vec::new());
    let parallel = set(json!({ "spec": { "podManagementPolicy": "Parallel" } }));
    let (c, calls) = controller(parallel, pods.clone());
    c.sync("default/web").await.expect("a sync");
    assert_eq!(calls_to(&calls, "POST", "/pods"), 3);
    c.sync("default/web").await.expect("a sync");
    assert_eq!(calls_to(&calls, "POST", "/pods"), 3, "none again while unseen");

    let pods = synced::<Pod>(Vec::new());
    let shrunk = set(json!({ "spec": { "podManagementPolicy": "Parallel", "replicas": 1 } }));
    let (c, calls) = controller(shrunk.clone(), pods.clone());
    for i in 0..3 {
        made_pod(&pods, &shrunk, i, "Running", i != 2);
    }
    c.sync("default/web").await.expect("a sync");
    assert_eq!(calls_to(&calls, "DELETE", "/pods/web-2"), 1);
    assert_eq!(calls_to(&calls, "DELETE", "/pods/web-1"), 1);
    assert_eq!(calls_to(&calls, "DELETE", "/pods/web-0"), 0);
}

#[tokio::test]
async fn ordered_ready_scales_down_from_the_highest_ordinal_one_at_a_time() {
    let pods = synced::<Pod>(Vec::new());
    let one = set(json!({ "spec": { "replicas": 1 } }));
    let (c, calls) = controller(one.clone(), pods.clone());
    for i in 0..3 {
        made_pod(&pods, &one, i, "Running", true);
    }
    c.sync("default/web").await.expect("a sync");
    c.sync("default/web").await.expect("a sync");
    assert_eq!(calls_to(&calls, "DELETE", "/pods/web-2"), 1, "the highest first, once");
    assert_eq!(calls_to(&calls, "DELETE", "/pods/web-1"), 0, "one at a time");
}

#[test]
fn the_controllers_flag_takes_upstreams_alias() {
    let flags = ["*".to_string(), "-statefulset".to_string()];
    let canonical = crate::canonical_controllers(&flags);
    assert_eq!(canonical, ["*", "-statefulset-controller"]);
    assert!(!keelson_runtime::controller::is_enabled(NAME, true, &canonical));
    assert!(keelson_runtime::controller::is_enabled(NAME, true, &["*".to_string()]));
}
