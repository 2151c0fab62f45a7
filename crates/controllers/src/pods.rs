//! What the workload controllers share about pods (upstream's `controller_utils.go` and
//! `podutil`): which pods count, readiness and availability, the order extras are
//! deleted in (`ActivePodsWithRanks`), a pod from a template, and slow-start batches.
//!
//! Pure, except [`slow_start_batch`], which runs the caller's futures.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use keelson_api::k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use keelson_api::k8s_openapi::jiff::Timestamp;

/// The annotation that makes a pod cheaper (or dearer) to delete on scale-down.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Neither finished nor being deleted (upstream's `IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

/// The time the pod's `Ready` condition turned true, if it is true.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(ready.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => {
            since.as_second().saturating_add(i64::from(min_ready_seconds)) < now.as_second()
        }
    }
}

/// The owner reference a controller puts on what it creates or adopts.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A reference to the object `meta` describes, as events and status lists name it.
pub fn reference_to(api_version: &str, kind: &str, meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// The controller reference among `meta`'s owners (upstream's `GetControllerOf`).
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// A pod to create from `template` for `owner` (upstream's `GetPodFromTemplate`): the
/// template's labels, annotations, finalizers and spec, named `<owner>-<random>`.
pub fn from_template(template: &PodTemplateSpec, owner: OwnerReference, namespace: &str) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    // Upstream drops the dash when `<name>-` is not a valid generateName; names of
    // owners are already valid DNS subdomains, so the dash is always kept.
    let generate_name = format!("{}-", owner.name);
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: Some(namespace.to_owned()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Runs `count` calls of `call` in batches of 1, 2, 4, … (upstream's `slowStartBatch`
/// with an initial batch of 1), stopping after the first batch with a failure, so a
/// quota or admission error costs one request, not hundreds. Returns how many calls
/// succeeded and the first error.
pub async fn slow_start_batch<F, Fut, E>(count: usize, call: F) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut batch = remaining.min(1);
    let mut successes = 0;
    while batch > 0 {
        let results = futures_util::future::join_all((0..batch).map(|_| call())).await;
        let mut first = None;
        for result in results {
            match result {
                Ok(()) => successes += 1,
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        if first.is_some() {
            return (successes, first);
        }
        remaining -= batch;
        batch = (batch * 2).min(remaining);
    }
    (successes, None)
}

/// Orders pods for deletion, the first ones going first (upstream's
/// `ActivePodsWithRanks` with `LogarithmicScaleDown` and `PodDeletionCost` on): `related`
/// are the active pods whose count on each node ranks a pod as doubled up.
///
/// Sorted by a key, a total order: upstream's comparator is not transitive (pods whose
/// ready times fall in one logarithmic bucket compare by uid, pods whose ready times are
/// equal by what follows), which Go's sort tolerates and Rust's may panic on. The key
/// keeps upstream's criteria and their order; within a bucket of ready time it goes on
/// to restarts, then the creation bucket, then the uid.
pub fn rank_for_deletion(pods: &mut [Arc<Pod>], related: &[Arc<Pod>], now: Timestamp) {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for pod in related.iter().filter(|p| is_active(p)) {
        *on_node.entry(node_name(pod)).or_default() += 1;
    }
    let rank = |pod: &Pod| on_node.get(node_name(pod)).copied().unwrap_or(0);
    pods.sort_by_cached_key(|p| deletion_key(p, rank(p), now));
}

/// Where a pod stands in the deletion order: smaller goes first.
type DeletionKey = (
    bool,
    u8,
    bool,
    i32,
    std::cmp::Reverse<usize>,
    i64,
    std::cmp::Reverse<(i32, i32)>,
    i64,
    String,
);

fn deletion_key(pod: &Pod, rank: usize, now: Timestamp) -> DeletionKey {
    let ready = is_ready(pod);
    (
        // 1. Unassigned before assigned.
        !node_name(pod).is_empty(),
        // 2. Pending before Unknown before Running.
        phase_ordinal(pod),
        // 3. Not ready before ready.
        ready,
        // 4. Lower deletion cost first.
        deletion_cost(pod),
        // 5. Doubled up (more related pods on its node) first.
        std::cmp::Reverse(rank),
        // 6. Ready for a shorter time first, on a logarithmic scale.
        if ready { age_bucket(ready_since(pod).flatten(), now) } else { 0 },
        // 7. More restarts first.
        std::cmp::Reverse(max_restarts(pod)),
        // 8. Newer first, on a logarithmic scale; then the uid.
        age_bucket(pod.metadata.creation_timestamp.as_ref().map(|t| t.0), now),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

/// Upstream's `logarithmicRankDiff` bucket of a time's age: base-2 logarithm of the
/// nanoseconds since it; the zero (absent) time is newer than any.
fn age_bucket(time: Option<Timestamp>, now: Timestamp) -> i64 {
    let Some(time) = time else { return i64::MIN };
    let nanos = now.as_nanosecond() - time.as_nanosecond();
    if nanos > 0 { (nanos as f64).log2() as i64 } else { -1 }
}

fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default()
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        // Upstream's map has no other phase: the zero value.
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    let annotations = pod.metadata.annotations.as_ref();
    annotations.and_then(|a| a.get(DELETION_COST)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// (regular, sidecar) restart counts, the highest of each.
fn max_restarts(pod: &Pod) -> (i32, i32) {
    let Some(status) = pod.status.as_ref() else { return (0, 0) };
    let regular = status.container_statuses.iter().flatten().map(|c| c.restart_count).max();
    let init = pod.spec.as_ref().and_then(|s| s.init_containers.as_ref());
    let sidecars: Vec<&str> = init
        .iter()
        .flat_map(|cs| cs.iter())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(&c.name.as_str()))
        .map(|c| c.restart_count)
        .max();
    (regular.unwrap_or(0), sidecar.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("valid")
    }

    fn pod(name: &str, node: &str, phase: &str, ready_at: Option<i64>, created: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(at(created))),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()).filter(|n: &String| !n.is_empty()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(at(t))),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        })
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect()
    }

    #[test]
    fn extras_go_unscheduled_then_pending_then_not_ready_then_newest() {
        let now = at(100_000);
        let mut pods = vec![
            pod("old-ready", "n1", "Running", Some(10), 0),
            pod("running-not-ready", "n2", "Running", None, 0),
            pod("pending", "n3", "Pending", None, 0),
            pod("unscheduled", "", "Pending", None, 0),
            pod("new-ready", "n4", "Running", Some(90_000), 89_000),
        ];
        let related = pods.clone();
        rank_for_deletion(&mut pods, &related, now);
        assert_eq!(
            names(&pods),
            ["unscheduled", "pending", "running-not-ready", "new-ready", "old-ready"]
        );
    }

    #[test]
    fn doubled_up_pods_and_cheap_pods_go_first() {
        let now = at(100_000);
        let a = pod("alone", "n1", "Running", Some(10), 0);
        let b = pod("crowded", "n2", "Running", Some(10), 0);
        let sibling = pod("sibling", "n2", "Running", Some(10), 0);
        let mut pods = vec![a.clone(), b.clone()];
        rank_for_deletion(&mut pods, &[a.clone(), b.clone(), sibling], now);
        assert_eq!(names(&pods), ["crowded", "alone"]);

        let mut dear = (*b).clone();
        dear.metadata.annotations = Some([(DELETION_COST.to_string(), "100".to_string())].into());
        let mut pods = vec![Arc::new(dear), a.clone()];
        rank_for_deletion(&mut pods, &[], now);
        assert_eq!(names(&pods), ["alone", "crowded"], "a higher deletion cost is kept");
    }

    #[test]
    fn a_thousand_pods_of_close_ages_sort_without_a_panic() {
        // Ready times within one logarithmic bucket, some equal, creation times spread:
        // upstream's comparator is not transitive on these; the key sort is total.
        let now = at(100_000);
        let mut pods: Vec<Arc<Pod>> = (0..1000)
            .map(|i| {
                let mut p = (*pod(
                    &format!("p{i}"),
                    &format!("n{}", i % 100),
                    "Running",
                    Some(50_000 + (i % 7) as i64),
                    (i % 13) as i64,
                ))
                .clone();
                p.metadata.uid = Some(format!("{:04}", (i * 7919) % 1000));
                Arc::new(p)
            })
            .collect();
        let related = pods.clone();
        rank_for_deletion(&mut pods, &related, now);
        let keys: Vec<_> = pods.iter().map(|p| deletion_key(p, 10, now)).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "sorted by the key");
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let p = pod("p", "n", "Running", Some(0), 0);
        assert!(is_available(&p, 0, at(0)));
        assert!(!is_available(&p, 10, at(10)));
        assert!(is_available(&p, 10, at(11)));
        assert!(!is_available(&pod("q", "n", "Running", None, 0), 0, at(5)));
    }

    #[tokio::test]
    async fn slow_start_doubles_batches_and_stops_at_a_failure() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, ()>(())
        })
        .await;
        assert_eq!((ok, err), (10, None));
        calls.store(0, std::sync::atomic::Ordering::SeqCst);
        // Batches 1, 2, 4: the fourth call fails, so the batch of 4 is the last.
        let (ok, err) = slow_start_batch(10, || async {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n == 3 { Err("quota") } else { Ok(()) }
        })
        .await;
        assert_eq!((ok, err), (6, Some("quota")));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 7);
    }
}
