//! The built-in plugins, by upstream's names, and the registry that builds them from a
//! profile's plugin arguments.

pub mod basic;
pub mod helper;
pub mod interpodaffinity;
pub mod node_affinity;
pub mod noderesources;
pub mod podtopologyspread;
pub mod preemption;
#[cfg(test)]
pub mod testing;
pub mod volumes;

use std::sync::Arc;

use keelson_api::k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use keelson_api::k8s_openapi::api::policy::v1::PodDisruptionBudget;
use keelson_api::k8s_openapi::api::storage::v1::{CSINode, StorageClass};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::framework::{Handle, Plugin};

/// Cluster reads beyond nodes and pods, from the scheduler's informers.
pub trait Lister: Send + Sync {
    fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>>;
    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>>;
    fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>>;
    fn csi_node(&self, name: &str) -> Option<Arc<CSINode>>;
    fn pdbs(&self, namespace: &str) -> Vec<Arc<PodDisruptionBudget>>;
    /// The selector of the Services, ReplicationControllers, ReplicaSets and
    /// StatefulSets that select `pod`, together (`helper.DefaultSelector`).
    fn default_selector(&self, pod: &Pod) -> Option<LabelSelector>;
}

/// Upstream's default plugins (`getDefaultPlugins`), in order, with their score
/// weights.
pub const DEFAULT_PLUGINS: [(&str, i64); 18] = [
    ("SchedulingGates", 0),
    ("PrioritySort", 0),
    ("NodeUnschedulable", 0),
    ("NodeName", 0),
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodePorts", 0),
    ("NodeResourcesFit", 1),
    ("VolumeRestrictions", 0),
    ("NodeVolumeLimits", 0),
    ("VolumeBinding", 0),
    ("VolumeZone", 0),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("DefaultPreemption", 0),
    ("NodeResourcesBalancedAllocation", 1),
    ("ImageLocality", 1),
    ("DefaultBinder", 0),
];

/// Whether this scheduler can build a plugin of that name (every default one).
pub fn known(name: &str) -> bool {
    DEFAULT_PLUGINS.iter().any(|(n, _)| *n == name)
}

fn args<T: serde::de::DeserializeOwned + Default>(
    name: &str,
    value: Option<&serde_json::Value>,
) -> Result<T, String> {
    let Some(value) = value else { return Ok(T::default()) };
    // The type's `apiVersion` and `kind` may be given; they say nothing the plugin's name
    // does not.
    let mut value = value.clone();
    if let Some(map) = value.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    serde_json::from_value(value)
        .map_err(|e| format!("decoding args for plugin {name}: strict decoding error: {e}"))
}

/// Checks a plugin's arguments as upstream's `Validate*Args` do; `path` names them in
/// the messages.
pub fn validate_args(
    name: &str,
    value: Option<&serde_json::Value>,
    path: &str,
) -> Result<Vec<String>, String> {
    Ok(match name {
        "NodeResourcesFit" => args::<noderesources::FitArgs>(name, value)?.validate(path),
        "NodeResourcesBalancedAllocation" => {
            args::<noderesources::BalancedArgs>(name, value)?.validate(path)
        }
        "PodTopologySpread" => args::<podtopologyspread::Args>(name, value)?.validate(path),
        "InterPodAffinity" => args::<interpodaffinity::Args>(name, value)?.validate(path),
        "DefaultPreemption" => args::<preemption::Args>(name, value)?.validate(path),
        "NodeAffinity" => {
            args::<node_affinity::Args>(name, value)?;
            Vec::new()
        }
        "VolumeBinding" => {
            args::<volumes::BindingArgs>(name, value)?;
            Vec::new()
        }
        _ => Vec::new(),
    })
}

/// Builds the plugin called `name` with its arguments.
pub fn build(
    name: &str,
    value: Option<&serde_json::Value>,
    handle: &Arc<dyn Handle>,
) -> Result<Arc<dyn Plugin>, String> {
    Ok(match name {
        "SchedulingGates" => Arc::new(basic::SchedulingGates),
        "PrioritySort" => Arc::new(basic::PrioritySort),
        "NodeUnschedulable" => Arc::new(basic::NodeUnschedulable),
        "NodeName" => Arc::new(basic::NodeName),
        "TaintToleration" => Arc::new(basic::TaintToleration),
        "NodePorts" => Arc::new(basic::NodePorts),
        "ImageLocality" => Arc::new(basic::ImageLocality),
        "DefaultBinder" => Arc::new(basic::DefaultBinder),
        "NodeAffinity" => Arc::new(node_affinity::NodeAffinity::new(args(name, value)?)),
        "NodeResourcesFit" => Arc::new(noderesources::Fit::new(args(name, value)?)),
        "NodeResourcesBalancedAllocation" => {
            Arc::new(noderesources::Balanced::new(args(name, value)?))
        }
        "PodTopologySpread" => {
            Arc::new(podtopologyspread::PodTopologySpread::new(args(name, value)?, handle.clone()))
        }
        "InterPodAffinity" => {
            Arc::new(interpodaffinity::InterPodAffinity::new(args(name, value)?, handle.clone()))
        }
        "DefaultPreemption" => {
            Arc::new(preemption::DefaultPreemption::new(args(name, value)?, handle.clone()))
        }
        "VolumeRestrictions" => Arc::new(volumes::VolumeRestrictions::new(handle.clone())),
        "NodeVolumeLimits" => Arc::new(volumes::NodeVolumeLimits::new(handle.clone())),
        "VolumeBinding" => {
            Arc::new(volumes::VolumeBinding::new(args(name, value)?, handle.clone()))
        }
        "VolumeZone" => Arc::new(volumes::VolumeZone::new(handle.clone())),
        other => return Err(format!("plugin {other:?} does not exist")),
    })
}
