//! What the scheduler knows of a pod and of a node, computed once when the object
//! arrives (upstream's `framework.PodInfo` and `framework.NodeInfo`), so a scheduling
//! cycle reads sums and parsed terms instead of walking specs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use keelson_api::k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, Taint, Toleration};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::resources::{PodRequests, Resources};

/// Upstream's `DefaultBindAllHostIP`.
pub const BIND_ALL: &str = "0.0.0.0";

/// A host port a pod's container binds: IP (`0.0.0.0` when unset), protocol (`TCP`
/// when unset) and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether binding `self` conflicts with `used` (`HostPortInfo.CheckConflict`):
    /// same protocol and port, and the same IP or either being `0.0.0.0`.
    pub fn conflicts(&self, used: &HostPort) -> bool {
        self.protocol == used.protocol
            && self.port == used.port
            && (self.ip == used.ip || self.ip == BIND_ALL || used.ip == BIND_ALL)
    }
}

/// A pod (anti-)affinity term with its namespaces resolved (upstream's
/// `framework.AffinityTerm`): the pods it selects are in `namespaces`, or in a namespace
/// `namespace_selector` matches, and match `selector`.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    pub namespaces: HashSet<String>,
    /// `None`: no selector (no namespace by labels); `Some(empty)`: every namespace.
    pub namespace_selector: Option<LabelSelector>,
    pub selector: Option<LabelSelector>,
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(term: &PodAffinityTerm, pod_namespace: &str) -> Self {
        let mut namespaces: HashSet<String> = term.namespaces.iter().flatten().cloned().collect();
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.insert(pod_namespace.to_owned());
        }
        AffinityTerm {
            namespaces,
            namespace_selector: term.namespace_selector.clone(),
            selector: term.label_selector.clone(),
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether `pod` (in a namespace labelled `namespace_labels`) is one the term
    /// selects.
    pub fn matches(
        &self,
        pod: &PodInfo,
        namespace_labels: Option<&BTreeMap<String, String>>,
    ) -> bool {
        let in_namespace = self.namespaces.contains(&pod.namespace)
            || keelson_core::labels::matches(self.namespace_selector.as_ref(), namespace_labels);
        in_namespace && keelson_core::labels::matches(self.selector.as_ref(), pod.labels())
    }
}

/// A weighted preferred term.
#[derive(Clone, Debug)]
pub struct WeightedAffinityTerm {
    pub term: AffinityTerm,
    pub weight: i32,
}

/// A pod, with what scheduling reads of it computed once.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub requests: PodRequests,
    pub host_ports: Vec<HostPort>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity: Vec<WeightedAffinityTerm>,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let spec_json = serde_json::to_value(&spec).unwrap_or_default();
        let requests = PodRequests::of_spec(&spec_json);
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let host_ports = sidecars
            .chain(spec.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.unwrap_or(0) > 0)
            .map(|p| HostPort {
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| BIND_ALL.into()),
                protocol: p
                    .protocol
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "TCP".into()),
                port: p.host_port.unwrap_or(0),
            })
            .collect();
        let affinity = spec.affinity.as_ref();
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let pod_anti_affinity = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms.into_iter().flatten().map(|t| AffinityTerm::new(t, &namespace)).collect()
        };
        let preferred = |terms: Option<
            &Vec<keelson_api::k8s_openapi::api::core::v1::WeightedPodAffinityTerm>,
        >| {
            terms
                .into_iter()
                .flatten()
                .map(|t| WeightedAffinityTerm {
                    term: AffinityTerm::new(&t.pod_affinity_term, &namespace),
                    weight: t.weight,
                })
                .collect()
        };
        PodInfo {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            requests,
            host_ports,
            required_affinity: required(
                pod_affinity
                    .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            ),
            required_anti_affinity: required(
                pod_anti_affinity
                    .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            ),
            preferred_affinity: preferred(
                pod_affinity
                    .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
            preferred_anti_affinity: preferred(
                pod_anti_affinity
                    .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
            priority: spec.priority.unwrap_or(0),
            namespace,
            pod,
        }
    }

    /// The same pod's newer version: what was computed is reused when nothing the
    /// scheduler derives it from changed (a status update, the binding).
    pub fn updated(&self, pod: Arc<Pod>) -> PodInfo {
        let same = match (self.pod.spec.as_ref(), pod.spec.as_ref()) {
            (Some(a), Some(b)) => {
                a.containers == b.containers
                    && a.init_containers == b.init_containers
                    && a.overhead == b.overhead
                    && a.resources == b.resources
                    && a.affinity == b.affinity
                    && a.volumes == b.volumes
                    && a.priority == b.priority
            }
            _ => false,
        } && self.pod.metadata.uid == pod.metadata.uid;
        if !same {
            return PodInfo::new(pod);
        }
        PodInfo {
            pod,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            requests: self.requests.clone(),
            host_ports: self.host_ports.clone(),
            required_affinity: self.required_affinity.clone(),
            required_anti_affinity: self.required_anti_affinity.clone(),
            preferred_affinity: self.preferred_affinity.clone(),
            preferred_anti_affinity: self.preferred_anti_affinity.clone(),
            priority: self.priority,
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.pod.metadata.labels.as_ref()
    }

    pub fn node_name(&self) -> Option<&str> {
        self.pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
    }

    pub fn tolerations(&self) -> &[Toleration] {
        self.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default()
    }

    pub fn has_affinity(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    pub fn scheduler_name(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or(crate::DEFAULT_SCHEDULER_NAME)
    }

    /// The names of the PVCs the pod's volumes claim (ephemeral volumes' included), as
    /// `namespace/name`.
    pub fn claims(&self) -> Vec<String> {
        let spec = self.pod.spec.as_ref();
        spec.and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|v| {
                if let Some(claim) = &v.persistent_volume_claim {
                    Some(format!("{}/{}", self.namespace, claim.claim_name))
                } else {
                    v.ephemeral
                        .as_ref()
                        .map(|_| format!("{}/{}-{}", self.namespace, self.name, v.name))
                }
            })
            .collect()
    }
}

/// An image on a node: its size, and on how many nodes it is (filled in by the
/// snapshot).
#[derive(Clone, Debug, Default)]
pub struct ImageState {
    pub size: i64,
    pub nodes: usize,
}

/// A node with the pods on it (bound or assumed) and their sums.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub name: String,
    pub pods: Vec<Arc<PodInfo>>,
    /// How many of `pods` have any (anti-)affinity term, and a required anti-affinity.
    pub pods_with_affinity: usize,
    pub pods_with_required_anti_affinity: usize,
    pub requested: Resources,
    pub non_zero_requested: Resources,
    pub allocatable: Resources,
    pub used_ports: Vec<HostPort>,
    /// Images by every name they go by.
    pub images: HashMap<String, ImageState>,
    /// PVCs (`namespace/name`) in use by the node's pods, with how many use each.
    pub pvc_refs: HashMap<String, usize>,
    /// `spec.unschedulable` and `spec.taints`, kept here: every filter reads them, and
    /// following the pointer to the Node costs a cache miss per node.
    unschedulable: bool,
    taints: Vec<Taint>,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> Self {
        let mut info = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            node: node.clone(),
            pods: Vec::new(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            allocatable: Resources::default(),
            used_ports: Vec::new(),
            images: HashMap::new(),
            pvc_refs: HashMap::new(),
            unschedulable: false,
            taints: Vec::new(),
        };
        info.set_node(node);
        info
    }

    /// Replaces the node object, keeping the pods.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let status = node.status.as_ref();
        let allocatable: BTreeMap<String, serde_json::Value> = status
            .and_then(|s| s.allocatable.as_ref())
            .map(|a| {
                a.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.0.clone()))).collect()
            })
            .unwrap_or_default();
        let list = keelson_core::quantity::resource_list(
            &serde_json::to_value(allocatable).unwrap_or_default(),
        );
        self.allocatable = Resources::from_list(&list);
        self.images.clear();
        for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in image.names.iter().flatten() {
                let state = ImageState { size: image.size_bytes.unwrap_or(0), nodes: 0 };
                self.images.insert(normalized_image_name(name), state);
            }
        }
        let spec = node.spec.as_ref();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.node = node;
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests.requests);
        self.non_zero_requested.milli_cpu += pod.requests.non_zero_milli_cpu;
        self.non_zero_requested.memory += pod.requests.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        for claim in pod.claims() {
            *self.pvc_refs.entry(claim).or_default() += 1;
        }
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Removes the pod with `uid`; whether it was there.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(at) = self.pods.iter().position(|p| p.uid == uid) else { return false };
        let pod = self.pods.swap_remove(at);
        self.requested.sub(&pod.requests.requests);
        self.non_zero_requested.milli_cpu -= pod.requests.non_zero_milli_cpu;
        self.non_zero_requested.memory -= pod.requests.non_zero_memory;
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        for claim in pod.claims() {
            if let Some(n) = self.pvc_refs.get_mut(&claim) {
                *n -= 1;
                if *n == 0 {
                    self.pvc_refs.remove(&claim);
                }
            }
        }
        if pod.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        true
    }

    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.node.metadata.labels.as_ref()
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels()?.get(key).map(String::as_str)
    }

    pub fn taints(&self) -> &[Taint] {
        &self.taints
    }

    pub fn unschedulable(&self) -> bool {
        self.unschedulable
    }
}

/// An image name as the kubelet reports it and a pod names it, compared alike
/// (`normalizedImageName`): a name without a tag or digest means `:latest`.
pub fn normalized_image_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_conflict_as_upstream() {
        let port = |ip: &str, protocol: &str, port: i32| HostPort {
            ip: ip.into(),
            protocol: protocol.into(),
            port,
        };
        assert!(port("0.0.0.0", "TCP", 80).conflicts(&port("10.0.0.1", "TCP", 80)));
        assert!(port("10.0.0.1", "TCP", 80).conflicts(&port("0.0.0.0", "TCP", 80)));
        assert!(!port("10.0.0.1", "TCP", 80).conflicts(&port("10.0.0.2", "TCP", 80)));
        assert!(!port("0.0.0.0", "UDP", 80).conflicts(&port("0.0.0.0", "TCP", 80)));
        assert!(!port("0.0.0.0", "TCP", 81).conflicts(&port("0.0.0.0", "TCP", 80)));
    }

    #[test]
    fn image_names_without_a_tag_mean_latest() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(normalized_image_name("localhost:5000/nginx"), "localhost:5000/nginx:latest");
        assert_eq!(normalized_image_name("nginx:1.2"), "nginx:1.2");
        assert_eq!(normalized_image_name("nginx@sha256:ab"), "nginx@sha256:ab");
    }
}
