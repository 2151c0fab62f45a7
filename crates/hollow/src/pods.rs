//! The pods of every hollow node: one shared watch, per-node writes.
//!
//! A kubelet watches only its own pods (`spec.nodeName=<node>`), as the Node authorizer
//! lets it. Thousands of hollow nodes doing so would be thousands of watches, so the
//! process watches once every pod bound to any node with the kubeconfig's identity —
//! the one read that is not the node's own — and routes each to its node. Every write
//! is the node's: the status through `pods/status`, and the final delete of a pod being
//! deleted (grace period 0, the pod's uid as a precondition, as the kubelet deletes a
//! pod once its containers have stopped).
//!
//! A pod bound to a hollow node becomes Running and Ready at once, with an address from
//! its node's pod CIDR (the node's own for a host-network pod). Pods already bound when
//! the process starts are adopted: the addresses they hold are kept.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use keelson_api::k8s_openapi::api::core::v1::Pod;
use keelson_runtime::controller::{Action, Context, run_workers};
use keelson_runtime::informer::{Change, Informer, Key, key_of};
use keelson_runtime::queue::WorkQueue;
use kube::Resource;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::Request;
use serde_json::{Value, json};

use crate::Error;
use crate::node::HollowNode;
use crate::status;

/// How many pods are written at once.
const WORKERS: usize = 16;

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

/// Keeps the node's record of pod addresses in step with what pods hold, and queues
/// the pods of hollow nodes. Runs on the informer's task: quick, no I/O.
pub fn track(
    nodes: Arc<HashMap<String, Arc<HollowNode>>>,
    informer: &Informer<Pod>,
    queue: WorkQueue<Key>,
) {
    informer.on_change(move |change| {
        let pod = change.object();
        let Some(node) = node_of(pod).and_then(|n| nodes.get(n)) else { return };
        let key = key_of(&**pod);
        match change {
            Change::Deleted(_) => node.with_pod_ips(|ips| ips.release(&key)),
            Change::Added(_) | Change::Updated { .. } => {
                let held = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
                if let Some(ip) = held.and_then(|ip| ip.parse::<Ipv4Addr>().ok())
                    && !host_network(pod)
                {
                    node.with_pod_ips(|ips| ips.reserve(&key, ip));
                }
                queue.add(key);
            }
        }
    });
}

/// Runs the pod workers until `context` says stop.
pub async fn run(
    context: Context,
    nodes: Arc<HashMap<String, Arc<HollowNode>>>,
    informer: Arc<Informer<Pod>>,
    queue: WorkQueue<Key>,
) {
    run_workers(&context, queue, WORKERS, move |key: Key| {
        let pod = informer.get(&key);
        let node = pod.as_deref().and_then(node_of).and_then(|n| nodes.get(n)).cloned();
        async move {
            let (Some(pod), Some(node)) = (pod, node) else { return Ok(Action::AwaitChange) };
            sync(&node, &key, &pod).await.map(|()| Action::AwaitChange)
        }
    })
    .await;
}

/// Whether every field `desired` sets is what `current` holds (the status may hold
/// more: a scheduler's nominated node, a resize).
fn covers(current: &Value, desired: &Value) -> bool {
    match desired.as_object() {
        Some(fields) => fields.iter().all(|(k, v)| current.get(k) == Some(v)),
        None => current == desired,
    }
}

fn pods_in(namespace: &str) -> Request {
    Request::new(Pod::url_path(&(), Some(namespace)))
}

/// Brings one pod of `node` to where a kubelet would have it.
async fn sync(node: &HollowNode, key: &str, pod: &Pod) -> Result<(), Error> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let uid = pod.metadata.uid.clone();
    if pod.metadata.deletion_timestamp.is_some() {
        // Deleted with grace 0 already: what remains waits for its finalizers.
        let finalizing = pod.metadata.deletion_grace_period_seconds == Some(0)
            && pod.metadata.finalizers.as_ref().is_some_and(|f| !f.is_empty());
        if finalizing {
            return Ok(());
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid, resource_version: None }),
            ..DeleteParams::default()
        };
        return match node.client().send(pods_in(namespace).delete(name, &params)?).await {
            // Gone already, or another pod of that name now.
            Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(()),
            Err(e) => Err(e),
            Ok(_) => {
                tracing::debug!(node = node.name(), pod = key, "deleted");
                Ok(())
            }
        };
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return Ok(());
    }
    let host_ip = node.place.ip;
    let pod_ip = if host_network(pod) {
        host_ip
    } else {
        match node.with_pod_ips(|ips| ips.allocate(key)) {
            Some(ip) => ip,
            None => {
                tracing::warn!(
                    node = node.name(),
                    pod = key,
                    "no pod address left in the node's pod CIDR"
                );
                return Ok(());
            }
        }
    };
    let desired = status::pod_status(pod, host_ip, pod_ip, &status::now());
    let desired = serde_json::to_value(&desired).map_err(Error::encode)?;
    let current = serde_json::to_value(&pod.status).map_err(Error::encode)?;
    if covers(&current, &desired) {
        return Ok(());
    }
    // The uid makes the write fail if the pod was replaced by one of the same name.
    let patch = json!({ "metadata": { "uid": uid }, "status": desired });
    let request = pods_in(namespace).patch_subresource(
        "status",
        name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )?;
    match node.client().send(request).await {
        Err(e) if matches!(e.code(), Some(404 | 409 | 422)) => {
            tracing::debug!(node = node.name(), pod = key, error = %e, "pod changed under its status write");
            Ok(())
        }
        Err(e) => Err(e),
        Ok(_) => {
            tracing::debug!(node = node.name(), pod = key, ip = %pod_ip, "running");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_covers_what_is_asked_and_may_hold_more() {
        let desired = json!({ "phase": "Running", "podIP": "10.42.0.2" });
        assert!(covers(
            &json!({ "phase": "Running", "podIP": "10.42.0.2", "nominatedNodeName": "n" }),
            &desired
        ));
        assert!(!covers(&json!({ "phase": "Pending", "podIP": "10.42.0.2" }), &desired));
        assert!(!covers(&json!({ "phase": "Running" }), &desired));
        assert!(!covers(&Value::Null, &desired));
    }
}
