//! What a DaemonSet's update strategy and history decide (upstream's `update.go` and
//! `util`): which pods are up to date, the rolling update's choice of old pods to
//! delete (maxUnavailable) or nodes to surge onto (maxSurge), the per-node choice of
//! pods to keep, and the ControllerRevision a template is recorded as.
//!
//! Pure: the controller feeds it its informers' view.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use keelson_api::k8s_openapi::api::apps::v1::DaemonSet;
use keelson_api::k8s_openapi::api::core::v1::Pod;
use keelson_api::k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::deployment::util::scaled;
use crate::pods;

/// The label naming the revision a pod was made from (`DefaultDaemonSetUniqueLabelKey`).
pub use crate::history::HASH_LABEL;
/// The label with the template generation a pod was made from.
pub const GENERATION_LABEL: &str = "pod-template-generation";
/// Where apps/v1 keeps a DaemonSet's template generation.
pub const GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// The template generation of `ds` (upstream's `GetTemplateGeneration`).
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata.annotations.as_ref()?.get(GENERATION_ANNOTATION)?.parse().ok()
}

/// Made from the current template: the revision's hash, or the template generation
/// (upstream's `IsPodUpdated`).
pub fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let label = |k: &str| pod.metadata.labels.as_ref().and_then(|l| l.get(k)).cloned();
    let by_generation = generation.is_some_and(|g| label(GENERATION_LABEL) == Some(g.to_string()));
    (!hash.is_empty() && label(HASH_LABEL).as_deref() == Some(hash)) || by_generation
}

fn strategy_type(ds: &DaemonSet) -> &str {
    let strategy = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate")
}

pub fn is_rolling_update(ds: &DaemonSet) -> bool {
    strategy_type(ds) == "RollingUpdate"
}

/// (maxSurge, maxUnavailable) against `desired` nodes (upstream's `SurgeCount` and
/// `UnavailableCount`, both rounding up, and `updatedDesiredNodeCounts`' fallback to
/// one unavailable when both are zero).
pub fn limits(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    if !is_rolling_update(ds) {
        return (0, 0);
    }
    let rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let Some(rolling) = rolling else { return (0, 0) };
    let surge = scaled(rolling.max_surge.as_ref(), desired, true);
    let mut unavailable = scaled(rolling.max_unavailable.as_ref(), desired, true);
    if desired > 0 && surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// Whether the strategy surges (upstream's `AllowsSurge`).
pub fn allows_surge(ds: &DaemonSet) -> bool {
    limits(ds, 1).0 > 0
}

/// Assigned before unassigned, then oldest, then by name (upstream's
/// `podByCreationTimestampAndPhase`).
pub fn oldest_first(a: &Arc<Pod>, b: &Arc<Pod>) -> Ordering {
    let assigned = |p: &Pod| {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty())
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    assigned(b)
        .cmp(&assigned(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// The one new and one old pod of a node; `None` when there are more (the manage loop
/// cleans those up first) — upstream's `findUpdatedPodsOnNode`.
type NewOld = (Option<Arc<Pod>>, Option<Arc<Pod>>);

fn new_and_old(pods: &[Arc<Pod>], hash: &str, generation: Option<i64>) -> Option<NewOld> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let slot = if is_updated(pod, hash, generation) { &mut new } else { &mut old };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod.clone());
    }
    Some((new, old))
}

/// The rolling update's step (upstream's `rollingUpdate`): the names of pods to delete
/// and the nodes to create a pod on. `by_node` has every node that should run the pod
/// (with no pods, if none) and every node that has one of its pods; `should_run` says
/// whether a node wants the pod.
pub fn rolling_update(
    ds: &DaemonSet,
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    should_run: impl Fn(&str) -> bool,
    desired: i32,
    hash: &str,
    now: Timestamp,
) -> (Vec<String>, Vec<String>) {
    let (max_surge, max_unavailable) = limits(ds, desired);
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let generation = template_generation(ds);
    let available = |p: &Pod| pods::is_available(p, min_ready, now);
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace = Vec::new();
        let mut candidates = Vec::new();
        for pods in by_node.values() {
            let Some(found) = new_and_old(pods, hash, generation) else {
                unavailable += 1;
                continue;
            };
            match found {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(&new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(&old) {
                        replace.push(name(&old));
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(name(&old));
                    }
                }
            }
        }
        let remaining = (max_unavailable - unavailable).clamp(0, candidates.len() as i32);
        replace.extend(candidates.into_iter().take(remaining as usize));
        return (replace, Vec::new());
    }
    let mut delete = Vec::new();
    let mut should_not_run = Vec::new();
    let mut candidates = Vec::new();
    let mut allowed = Vec::new();
    let (mut surge, mut num_available) = (0, 0);
    for (node, pods) in by_node {
        let Some((new, old)) = new_and_old(pods, hash, generation) else {
            surge += 1;
            continue;
        };
        match (&old, &new) {
            (Some(old), _) if available(old) => num_available += 1,
            (None, Some(new)) if available(new) => num_available += 1,
            _ => {}
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !available(&old) {
                    if should_run(node) {
                        allowed.push(node.clone());
                    } else {
                        delete.push(name(&old));
                    }
                } else if !should_run(node) {
                    should_not_run.push(name(&old));
                } else if surge < max_surge {
                    candidates.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(&new) {
                    delete.push(name(&old));
                } else {
                    surge += 1;
                }
            }
        }
    }
    let deletable = (num_available - desired).clamp(0, should_not_run.len() as i32);
    delete.extend(should_not_run.into_iter().take(deletable as usize));
    let remaining = (max_surge - surge).clamp(0, candidates.len() as i32);
    allowed.extend(candidates.into_iter().take(remaining as usize));
    (delete, allowed)
}

/// A ControllerRevision's `data` for `ds`: its template to be put back whole
/// (upstream's `getPatch`).
pub fn revision_data(ds: &DaemonSet) -> Value {
    crate::history::patch_data(&ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    use super::*;

    fn ds(surge: Value, unavailable: Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": { "name": "d" },
            "spec": {
                "selector": { "matchLabels": { "app": "d" } },
                "template": { "metadata": { "labels": { "app": "d" } } },
                "updateStrategy": { "type": "RollingUpdate",
                    "rollingUpdate": { "maxSurge": surge, "maxUnavailable": unavailable } },
            },
        }))
        .expect("daemonset")
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("time")
    }

    fn pod(name: &str, hash: &str, ready: bool, created: i64) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "name": name, "labels": { HASH_LABEL: hash },
                    "creationTimestamp": Time(at(created)) },
                "spec": { "nodeName": "n", "containers": [] },
                "status": { "conditions": [{ "type": "Ready",
                    "status": if ready { "True" } else { "False" } }] },
            }))
            .expect("pod"),
        )
    }

    fn nodes(pods: Vec<Vec<Arc<Pod>>>) -> BTreeMap<String, Vec<Arc<Pod>>> {
        pods.into_iter().enumerate().map(|(i, p)| (format!("n{i}"), p)).collect()
    }

    #[test]
    fn limits_round_up_and_never_both_zero() {
        assert_eq!(limits(&ds(json!(0), json!(1)), 5), (0, 1));
        assert_eq!(limits(&ds(json!(0), json!("25%")), 5), (0, 2));
        assert_eq!(limits(&ds(json!("10%"), json!(0)), 5), (1, 0));
        assert_eq!(limits(&ds(json!(0), json!(0)), 5), (0, 1));
        assert_eq!(limits(&ds(json!(0), json!(0)), 0), (0, 0));
        assert!(allows_surge(&ds(json!("1%"), json!(0))));
        assert!(!allows_surge(&ds(json!(0), json!(1))));
    }

    #[test]
    fn unavailable_budget_limits_old_pods_deleted() {
        let d = ds(json!(0), json!(2));
        let now = at(100);
        let all_old = nodes((0..4).map(|i| vec![pod(&format!("p{i}"), "old", true, 0)]).collect());
        let (delete, create) = rolling_update(&d, &all_old, |_| true, 4, "new", now);
        assert_eq!((delete.len(), create.len()), (2, 0));

        // One new pod not yet available uses one of the two: one more old pod goes.
        let by_node = nodes(vec![
            vec![pod("a", "new", false, 0)],
            vec![pod("b", "old", true, 0)],
            vec![pod("c", "old", true, 0)],
        ]);
        assert_eq!(rolling_update(&d, &by_node, |_| true, 3, "new", now).0, ["b"]);

        // An old pod that is unavailable anyway is always replaced.
        let by_node = nodes(vec![
            vec![pod("a", "new", false, 0)],
            vec![pod("b", "new", false, 0)],
            vec![pod("c", "old", false, 0)],
            vec![pod("d", "old", true, 0)],
        ]);
        assert_eq!(rolling_update(&d, &by_node, |_| true, 4, "new", now).0, ["c"]);

        // A node still without its pod counts as unavailable.
        let by_node = nodes(vec![vec![], vec![], vec![pod("c", "old", true, 0)]]);
        assert!(rolling_update(&d, &by_node, |_| true, 3, "new", now).0.is_empty());
    }

    #[test]
    fn surge_creates_first_and_deletes_old_once_new_is_available() {
        let d = ds(json!(1), json!(0));
        let now = at(100);
        let by_node = nodes(vec![vec![pod("a", "old", true, 0)], vec![pod("b", "old", true, 0)]]);
        let (delete, create) = rolling_update(&d, &by_node, |_| true, 2, "new", now);
        assert!(delete.is_empty());
        assert_eq!(create, ["n0"], "one surge pod at a time");

        let by_node = nodes(vec![
            vec![pod("a", "old", true, 0), pod("a2", "new", false, 50)],
            vec![pod("b", "old", true, 0)],
        ]);
        assert_eq!(rolling_update(&d, &by_node, |_| true, 2, "new", now), (vec![], vec![]));

        let by_node = nodes(vec![
            vec![pod("a", "old", true, 0), pod("a2", "new", true, 50)],
            vec![pod("b", "old", true, 0)],
        ]);
        let (delete, create) = rolling_update(&d, &by_node, |_| true, 2, "new", now);
        assert_eq!((delete, create), (vec!["a".to_string()], vec!["n1".to_string()]));
    }

    #[test]
    fn oldest_assigned_pod_is_kept_first() {
        let mut pods = [pod("young", "h", true, 10), pod("old", "h", true, 0)];
        pods.sort_by(oldest_first);
        assert_eq!(pods[0].metadata.name.as_deref(), Some("old"));
        assert!(is_updated(&pods[0], "h", None));
        assert!(!is_updated(&pods[0], "x", None));
    }
}
