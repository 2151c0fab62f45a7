//! The pod event handlers of the controllers that own pods (upstream's `addPod`,
//! `updatePod` and `deletePod`, alike in the ReplicaSet, DaemonSet and StatefulSet
//! controllers): a pod with a controller reference wakes that owner and lowers its
//! expectations; an orphan wakes every owner whose selector matches it.
//!
//! Must never do I/O: it runs on the informer's task.

use std::time::Duration;

use keelson_api::k8s_openapi::api::core::v1::Pod;
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use keelson_runtime::informer::{Change, key_of};
use keelson_runtime::queue::WorkQueue;

use crate::expectations::Expectations;
use crate::pods::{self, controller_of};

/// What the handlers need of a controller.
pub trait PodOwners {
    /// The key of the owner `r` names, if it is one of this controller's and still
    /// that one (same uid).
    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<String>;
    /// The owners in the pod's namespace whose selector matches it.
    fn matching(&self, pod: &Pod) -> Vec<String>;
    /// Owner `key`'s `minReadySeconds`.
    fn min_ready_seconds(&self, key: &str) -> i32;
    /// Added to `minReadySeconds` when looking again after a pod turned ready (the
    /// DaemonSet and StatefulSet controllers add a second, the ReplicaSet's none).
    const READY_SLACK: Duration = Duration::from_secs(1);
}

/// [`PodOwners::resolve`] for owners of kind `kind` held in `owners`: the key of the
/// one `r` names, if it is still that one (same uid).
pub fn resolve_in<K: kube::Resource + Send + Sync + 'static>(
    owners: &keelson_runtime::informer::Informer<K>,
    kind: &str,
    namespace: &str,
    r: &OwnerReference,
) -> Option<String> {
    if r.kind != kind {
        return None;
    }
    let key = format!("{namespace}/{}", r.name);
    let owner = owners.get(&key)?;
    (owner.meta().uid.as_deref() == Some(r.uid.as_str())).then_some(key)
}

fn namespace(pod: &Pod) -> String {
    pod.metadata.namespace.clone().unwrap_or_default()
}

/// One pod change, as upstream's handlers read it.
pub fn pod_changed<O: PodOwners>(
    owners: &O,
    expectations: &Expectations,
    queue: &WorkQueue<String>,
    change: &Change<Pod>,
) {
    let gone = |pod: &Pod| pod_gone(owners, expectations, queue, pod);
    match change {
        Change::Added(pod) if pod.metadata.deletion_timestamp.is_some() => gone(pod),
        Change::Added(pod) => match controller_of(&pod.metadata) {
            Some(r) => {
                if let Some(key) = owners.resolve(&namespace(pod), r) {
                    expectations.creation_observed(&key);
                    queue.add(key);
                }
            }
            None => owners.matching(pod).into_iter().for_each(|k| queue.add(k)),
        },
        Change::Updated { old, new } => {
            if old.metadata.resource_version == new.metadata.resource_version {
                return;
            }
            let labels_changed = old.metadata.labels != new.metadata.labels;
            if new.metadata.deletion_timestamp.is_some() {
                gone(new);
                if labels_changed {
                    gone(old);
                }
                return;
            }
            let (old_ref, new_ref) = (controller_of(&old.metadata), controller_of(&new.metadata));
            let ref_changed = old_ref != new_ref;
            if ref_changed
                && let Some(key) = old_ref.and_then(|r| owners.resolve(&namespace(old), r))
            {
                queue.add(key);
            }
            if let Some(r) = new_ref {
                let Some(key) = owners.resolve(&namespace(new), r) else { return };
                let min_ready = owners.min_ready_seconds(&key);
                if !pods::is_ready(old) && pods::is_ready(new) && min_ready > 0 {
                    let after = Duration::from_secs(min_ready as u64) + O::READY_SLACK;
                    queue.add_after(key.clone(), after);
                }
                queue.add(key);
            } else if labels_changed || ref_changed {
                owners.matching(new).into_iter().for_each(|k| queue.add(k));
            }
        }
        Change::Deleted(pod) => gone(pod),
    }
}

/// A pod going away: its owner's awaited deletion seen, the owner woken.
pub fn pod_gone(
    owners: &impl PodOwners,
    expectations: &Expectations,
    queue: &WorkQueue<String>,
    pod: &Pod,
) {
    let Some(r) = controller_of(&pod.metadata) else { return };
    if let Some(key) = owners.resolve(&namespace(pod), r) {
        expectations.deletion_observed(&key, &key_of(pod));
        queue.add(key);
    }
}
