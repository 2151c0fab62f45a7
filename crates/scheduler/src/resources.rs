//! Resource amounts as the scheduler counts them (upstream's `framework.Resource`):
//! CPU in millicores, memory and ephemeral storage in bytes, a pod count, and scalar
//! resources (extended resources, hugepages, attachable volumes) in whole units.

use std::collections::BTreeMap;

use keelson_core::quantity::{Quantity, ResourceList};
use serde_json::Value;

/// The CPU a container without a CPU request counts as when scoring (upstream's
/// `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory a container without a memory request counts as when scoring
/// (`DefaultMemoryRequest`, 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    pub scalar: BTreeMap<String, i64>,
}

/// A quantity's value in whole units, rounded up (`Quantity.Value()`).
fn value(q: &Quantity) -> i64 {
    let milli = q.milli_value();
    let whole = if milli >= 0 { (milli + 999) / 1000 } else { milli / 1000 };
    i64::try_from(whole).unwrap_or(i64::MAX)
}

/// A quantity in thousandths, rounded up (`Quantity.MilliValue()`).
fn milli(q: &Quantity) -> i64 {
    i64::try_from(q.milli_value()).unwrap_or(i64::MAX)
}

/// Whether `name` is counted as a scalar resource (`IsScalarResourceName`): an
/// extended resource (a domain outside `kubernetes.io`), hugepages or attachable
/// volumes.
pub fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-") || name.starts_with("attachable-volumes-") || is_extended(name)
}

/// `IsExtendedResourceName`: not native (native names have no domain, or the
/// `kubernetes.io` one) and not a quota's `requests.` name.
pub fn is_extended(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    !native && !name.starts_with("requests.")
}

impl Resources {
    /// The sum of `list` (`NewResource`).
    pub fn from_list(list: &ResourceList) -> Self {
        let mut r = Resources::default();
        r.add_list(list);
        r
    }

    pub fn add_list(&mut self, list: &ResourceList) {
        for (name, q) in list {
            match name.as_str() {
                "cpu" => self.milli_cpu += milli(q),
                "memory" => self.memory += value(q),
                "pods" => self.pods += value(q),
                "ephemeral-storage" => self.ephemeral_storage += value(q),
                other if is_scalar(other) => {
                    *self.scalar.entry(other.to_owned()).or_default() += value(q)
                }
                _ => {}
            }
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (name, v) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (name, v) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() -= v;
        }
    }

    /// The amount of `name` (0 when absent).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.pods,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }
}

/// What a pod asks of a node: its requests (upstream's `PodRequests`: containers,
/// sidecars, the largest init container, pod-level resources, and the overhead), and
/// the CPU and memory it counts as when scoring, where a container that requests none
/// counts the defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    pub requests: Resources,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
}

impl PodRequests {
    /// From a pod's spec, as JSON.
    pub fn of_spec(spec: &Value) -> Self {
        let overhead = keelson_core::quantity::resource_list(&spec["overhead"]);
        let mut list = keelson_core::pod::pod_resources(spec, "requests");
        keelson_core::quantity::add_into(&mut list, &overhead);
        let requests = Resources::from_list(&list);
        // The same sum with the scoring defaults put into each container that lacks
        // them.
        let mut defaulted = spec.clone();
        for field in ["containers", "initContainers"] {
            if let Some(containers) = defaulted[field].as_array_mut() {
                for c in containers {
                    default_requests(c);
                }
            }
        }
        let pod_level = keelson_core::quantity::resource_list(&spec["resources"]["requests"]);
        let mut non_zero = keelson_core::pod::pod_resources(&defaulted, "requests");
        keelson_core::quantity::add_into(&mut non_zero, &overhead);
        let non_zero = Resources::from_list(&non_zero);
        PodRequests {
            // Pod-level requests stand as given.
            non_zero_milli_cpu: if pod_level.contains_key("cpu") {
                requests.milli_cpu
            } else {
                non_zero.milli_cpu
            },
            non_zero_memory: if pod_level.contains_key("memory") {
                requests.memory
            } else {
                non_zero.memory
            },
            requests,
        }
    }
}

fn default_requests(container: &mut Value) {
    let Some(c) = container.as_object_mut() else { return };
    let resources = c.entry("resources").or_insert_with(|| Value::Object(Default::default()));
    let Some(resources) = resources.as_object_mut() else { return };
    let requests = resources.entry("requests").or_insert_with(|| Value::Object(Default::default()));
    let Some(requests) = requests.as_object_mut() else { return };
    requests.entry("cpu").or_insert_with(|| format!("{DEFAULT_MILLI_CPU_REQUEST}m").into());
    requests.entry("memory").or_insert_with(|| DEFAULT_MEMORY_REQUEST.to_string().into());
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pod_requests_count_sidecars_init_containers_and_overhead() {
        let spec = json!({
            "containers": [
                { "name": "a", "resources": { "requests": { "cpu": "200m", "memory": "1Gi" } } },
                { "name": "b" },
            ],
            "initContainers": [
                { "name": "big", "resources": { "requests": { "cpu": "2" } } },
                { "name": "side", "restartPolicy": "Always",
                  "resources": { "requests": { "cpu": "100m", "example.com/gpu": "1" } } },
            ],
            "overhead": { "cpu": "10m", "memory": "1Mi" },
        });
        let r = PodRequests::of_spec(&spec);
        // max(200m + 100m, 2) + 10m overhead.
        assert_eq!(r.requests.milli_cpu, 2010);
        assert_eq!(r.requests.memory, (1 << 30) + (1 << 20));
        assert_eq!(r.requests.scalar.get("example.com/gpu"), Some(&1));
        // Scoring counts 100m and 200Mi for containers without requests: a (200m),
        // b (100m), side (100m) = 400m; big (2) with no sidecar before it = 2.
        assert_eq!(r.non_zero_milli_cpu, 2010);
        // a 1Gi + b 200Mi + side 200Mi, against big's 200Mi, + 1Mi.
        assert_eq!(r.non_zero_memory, (1 << 30) + 400 * (1 << 20) + (1 << 20));
    }

    #[test]
    fn a_pod_without_requests_scores_as_the_defaults() {
        let r = PodRequests::of_spec(&json!({ "containers": [{ "name": "a" }] }));
        assert_eq!(r.requests, Resources::default());
        assert_eq!(r.non_zero_milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.non_zero_memory, DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn scalar_names_follow_upstream() {
        assert!(is_scalar("example.com/gpu"));
        assert!(is_scalar("hugepages-2Mi"));
        assert!(!is_scalar("kubernetes.io/something"));
        assert!(!is_scalar("cpu"));
        assert!(!is_scalar("requests.example.com/gpu"));
    }
}
