//! What the node controllers share (upstream's `pkg/controller/util/node` and
//! `controller_utils.go`): a node's conditions and zone, references for events about
//! it, and taint writes with optimistic concurrency.

use std::collections::BTreeMap;

use keelson_api::k8s_openapi::api::core::v1::{Node, NodeCondition, ObjectReference, Pod, Taint};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_api::k8s_openapi::jiff::Timestamp;
use keelson_runtime::informer::Informer;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// The ServiceAccount the node controllers act as (upstream's `node-controller`).
pub const SERVICE_ACCOUNT: &str = "node-controller";

/// The index of pods by `spec.nodeName`, which the node controllers share.
pub const NODE_INDEX: &str = "node";

/// The node a pod is bound to, or empty.
pub fn node_of(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default()
}

/// Indexes the pods by their node (every node controller asks for the same index).
pub fn index_pods_by_node(pods: &Informer<Pod>) {
    pods.add_index(NODE_INDEX, |p: &Pod| {
        Some(node_of(p)).filter(|n| !n.is_empty()).map(str::to_owned).into_iter().collect()
    });
}

/// How often a taint write is tried on conflict.
const TAINT_RETRIES: usize = 5;

pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// The node's zone key (upstream's `GetZoneKey`): region and zone, or empty.
pub fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).cloned().unwrap_or_default();
    let region = get("topology.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    format!("{region}:\u{0}:{zone}")
}

/// A reference to the node for events (upstream's `RecordNodeEvent`).
pub fn reference(node: &Node) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: node.metadata.name.clone(),
        uid: node.metadata.uid.clone(),
        ..Default::default()
    }
}

pub fn now() -> Time {
    Time(Timestamp::now())
}

/// Whether `taints` holds one with `taint`'s key and effect.
pub fn has_taint(taints: &[Taint], taint: &Taint) -> bool {
    taints.iter().any(|t| t.key == taint.key && t.effect == taint.effect)
}

/// Adds `add` (NoExecute ones stamped with the time) and removes `remove` from the
/// node's taints, from a fresh read, with the node's resourceVersion as precondition
/// (upstream's `SwapNodeControllerTaint`). Does nothing when nothing would change.
pub async fn swap_taints(
    client: &Client,
    node: &str,
    add: &[Taint],
    remove: &[Taint],
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut attempt = 0;
    loop {
        let current = nodes.get(node).await?;
        let taints = current.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let mut next: Vec<Taint> = taints
            .iter()
            .filter(|t| !has_taint(remove, t) && !has_taint(add, t))
            .cloned()
            .collect();
        for taint in add {
            match taints.iter().find(|t| t.key == taint.key && t.effect == taint.effect) {
                Some(existing) if existing.value == taint.value => next.push(existing.clone()),
                _ => {
                    let mut taint = taint.clone();
                    if taint.effect == "NoExecute" {
                        taint.time_added = Some(now());
                    }
                    next.push(taint);
                }
            }
        }
        let key = |t: &Taint| (t.key.clone(), t.effect.clone(), t.value.clone());
        let before: BTreeMap<_, _> = taints.iter().map(|t| (key(t), ())).collect();
        let after: BTreeMap<_, _> = next.iter().map(|t| (key(t), ())).collect();
        if before == after {
            return Ok(());
        }
        let patch = json!({
            "metadata": { "resourceVersion": current.metadata.resource_version },
            "spec": { "taints": next },
        });
        match nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Err(kube::Error::Api(e)) if e.code == 409 && attempt + 1 < TAINT_RETRIES => {
                attempt += 1
            }
            Err(e) => return Err(e),
            Ok(_) => return Ok(()),
        }
    }
}

/// A taint of the node controllers: `key` with `effect`, no value.
pub fn taint(key: &str, effect: &str) -> Taint {
    Taint { key: key.into(), effect: effect.into(), ..Default::default() }
}
