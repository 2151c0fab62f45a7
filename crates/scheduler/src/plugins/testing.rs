//! What plugin tests share: a handle with fixed cluster reads, and nodes and pods built
//! from JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use keelson_api::k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use keelson_api::k8s_openapi::api::policy::v1::PodDisruptionBudget;
use keelson_api::k8s_openapi::api::storage::v1::{CSINode, StorageClass};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};

use super::Lister;
use crate::framework::{Handle, futures::BoxFuture};
use crate::types::{NodeInfo, PodInfo};

/// A cluster of fixed objects.
#[derive(Default)]
pub struct Fixed {
    pub pdbs: Vec<Arc<PodDisruptionBudget>>,
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    pub default_selector: Option<LabelSelector>,
}

impl Lister for Fixed {
    fn pvc(&self, _: &str, _: &str) -> Option<Arc<PersistentVolumeClaim>> {
        None
    }
    fn pv(&self, _: &str) -> Option<Arc<PersistentVolume>> {
        None
    }
    fn storage_class(&self, _: &str) -> Option<Arc<StorageClass>> {
        None
    }
    fn csi_node(&self, _: &str) -> Option<Arc<CSINode>> {
        None
    }
    fn pdbs(&self, namespace: &str) -> Vec<Arc<PodDisruptionBudget>> {
        self.pdbs
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .cloned()
            .collect()
    }
    fn default_selector(&self, _: &Pod) -> Option<LabelSelector> {
        self.default_selector.clone()
    }
}

impl Handle for Fixed {
    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.namespace_labels.get(namespace).cloned()
    }
    fn select_node_for_claim(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn lister(&self) -> &dyn Lister {
        self
    }
}

/// A node with 4 CPUs, 110 pods, and these labels.
pub fn node(name: &str, labels: Value) -> NodeInfo {
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": labels },
        "status": { "allocatable": { "cpu": "4", "memory": "8Gi", "pods": "110" } },
    }))
    .expect("node");
    NodeInfo::new(Arc::new(node))
}

/// A pod in `default` from its metadata labels and spec (one container added).
pub fn pod(name: &str, labels: Value, mut spec: Value) -> Arc<PodInfo> {
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{ "name": "c", "image": "pause" }]);
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "default", "uid": name, "labels": labels },
        "spec": spec,
    }))
    .expect("pod");
    Arc::new(PodInfo::new(Arc::new(pod)))
}
