//! What the two per-namespace publishers share: which namespaces are active, and
//! requeueing a namespace when it or one of its objects changes.

use std::sync::Arc;

use keelson_api::k8s_openapi::api::core::v1::Namespace;
use keelson_runtime::informer::{Change, Informer};
use keelson_runtime::queue::WorkQueue;

/// Whether the namespace `name` exists and is not being deleted.
pub fn active(namespaces: &Informer<Namespace>, name: &str) -> bool {
    namespaces.get(name).is_some_and(|ns| is_active(&ns))
}

pub fn is_active(ns: &Arc<Namespace>) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

/// Whether a write failed only because the namespace is gone or going (its objects
/// then need nothing).
pub fn namespace_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || (s.code == 403 && s.message.contains("being terminated")))
}

/// Queues a namespace's name whenever it is added or changes.
pub fn requeue_on_namespace_changes(namespaces: &Informer<Namespace>, queue: &WorkQueue<String>) {
    let queue = queue.clone();
    namespaces.on_change(move |change| {
        if !matches!(change, Change::Deleted(_)) {
            queue.add(change.object().metadata.name.clone().unwrap_or_default());
        }
    });
}
