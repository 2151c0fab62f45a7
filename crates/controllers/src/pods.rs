//! What the workload controllers share about pods (upstream's `controller_utils.go` and
//! `podutil`): which pods count, readiness and availability, the order extras are
//! deleted in (`ActivePodsWithRanks`), a pod from a template, and slow-start batches.
//!
//! Pure, except [`slow_start_batch`], which runs the caller's futures.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use keelson_api::k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
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
/// `ActivePodsWithRanks` with `LogarithmicScaleDown` and `PodDeletionCost` on): `rank`
/// is how many related active pods share each pod's node.
pub fn rank_for_deletion(pods: &mut [Arc<Pod>], related: &[Arc<Pod>], now: Timestamp) {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for pod in related.iter().filter(|p| is_active(p)) {
        *on_node.entry(node_name(pod)).or_default() += 1;
    }
    let rank = |pod: &Pod| on_node.get(node_name(pod)).copied().unwrap_or(0);
    let mut ranked: Vec<(usize, Arc<Pod>)> = pods.iter().map(|p| (rank(p), p.clone())).collect();
    ranked.sort_by(|(ri, i), (rj, j)| delete_first(i, *ri, j, *rj, now));
    for (slot, (_, pod)) in pods.iter_mut().zip(ranked) {
        *slot = pod;
    }
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

fn less(b: bool) -> Ordering {
    if b { Ordering::Less } else { Ordering::Greater }
}

/// Upstream's `afterOrZero`: the zero (absent) time is later than any other.
fn after_or_zero(a: Option<Timestamp>, b: Option<Timestamp>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => a.is_none(),
        (Some(a), Some(b)) => a > b,
    }
}

/// Compares two times on a base-2 logarithmic scale of their age (upstream's
/// `logarithmicRankDiff`), so pods of about the same age are ordered by uid.
fn newer_first(
    a: Option<Timestamp>,
    b: Option<Timestamp>,
    ua: &str,
    ub: &str,
    now: Timestamp,
) -> Ordering {
    let (Some(ta), Some(tb)) = (a, b) else { return less(after_or_zero(a, b)) };
    let log_rank = |t: Timestamp| {
        let nanos = now.as_nanosecond() - t.as_nanosecond();
        if nanos > 0 { (nanos as f64).log2() as i64 } else { -1 }
    };
    match log_rank(ta) - log_rank(tb) {
        0 => ua.cmp(ub),
        diff => less(diff < 0),
    }
}

/// `Less` before `Greater`: whether `i` is deleted before `j`.
fn delete_first(i: &Pod, ri: usize, j: &Pod, rj: usize, now: Timestamp) -> Ordering {
    let (ni, nj) = (node_name(i), node_name(j));
    // 1. Unassigned before assigned.
    if ni != nj && (ni.is_empty() || nj.is_empty()) {
        return less(ni.is_empty());
    }
    // 2. Pending before Unknown before Running.
    if phase_ordinal(i) != phase_ordinal(j) {
        return less(phase_ordinal(i) < phase_ordinal(j));
    }
    // 3. Not ready before ready.
    if is_ready(i) != is_ready(j) {
        return less(!is_ready(i));
    }
    // 4. Lower deletion cost first.
    if deletion_cost(i) != deletion_cost(j) {
        return less(deletion_cost(i) < deletion_cost(j));
    }
    // 5. Doubled up (more related pods on its node) first.
    if ri != rj {
        return less(ri > rj);
    }
    let (ui, uj) =
        (i.metadata.uid.as_deref().unwrap_or(""), j.metadata.uid.as_deref().unwrap_or(""));
    // 6. Ready for a shorter time first.
    if let (Some(a), Some(b)) = (ready_since(i), ready_since(j))
        && a != b
    {
        return newer_first(a, b, ui, uj, now);
    }
    // 7. More restarts first.
    if max_restarts(i) != max_restarts(j) {
        let ((ri, si), (rj, sj)) = (max_restarts(i), max_restarts(j));
        return less(if ri != rj { ri > rj } else { si > sj });
    }
    // 8. Newer first.
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if created(i) != created(j) {
        return newer_first(created(i), created(j), ui, uj, now);
    }
    Ordering::Equal
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
