//! The scheduler's cache (upstream's `internal/cache`): every node with the pods on it,
//! bound or *assumed* — placed by this scheduler a moment ago, its binding perhaps still
//! in flight — so the next cycle counts a pod as soon as it is placed, not when its
//! watch event comes back. A cycle reads a [`Snapshot`], brought up to date from the
//! cache at the cycle's start by copying only the nodes that changed.
//!
//! Must never count a pod twice, nor lose an assumed pod before its binding is
//! confirmed by the watch or given up.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use keelson_api::k8s_openapi::api::core::v1::Node;

use crate::types::{NodeInfo, PodInfo};

struct PodState {
    pod: Arc<PodInfo>,
    node: String,
    assumed: bool,
}

/// Nodes and pods as the watches and this scheduler's own decisions left them.
#[derive(Default)]
pub struct Cache {
    /// Every node with a Node object or pods; those without an object are not offered
    /// for scheduling.
    nodes: HashMap<String, NodeSlot>,
    pods: HashMap<String, PodState>,
    /// Nodes changed since the last snapshot.
    dirty: HashSet<String>,
    /// A node was added or removed since the last snapshot.
    membership_changed: bool,
    /// A node object changed (its images, perhaps) since the last snapshot.
    nodes_changed: bool,
}

struct NodeSlot {
    info: Arc<NodeInfo>,
    has_node: bool,
}

impl Cache {
    pub fn new() -> Self {
        Cache::default()
    }

    fn slot(&mut self, name: &str) -> &mut NodeSlot {
        self.dirty.insert(name.to_owned());
        self.nodes.entry(name.to_owned()).or_insert_with(|| NodeSlot {
            info: Arc::new(NodeInfo::new(Arc::new(Node {
                metadata: keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(name.to_owned()),
                    ..Default::default()
                },
                ..Default::default()
            }))),
            has_node: false,
        })
    }

    pub fn add_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let slot = self.slot(&name);
        if !slot.has_node {
            slot.has_node = true;
            self.membership_changed = true;
        }
        Arc::make_mut(&mut self.slot(&name).info).set_node(node);
        self.nodes_changed = true;
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(slot) = self.nodes.get_mut(name) else { return };
        slot.has_node = false;
        self.membership_changed = true;
        self.nodes_changed = true;
        self.dirty.insert(name.to_owned());
        if slot.info.pods.is_empty() {
            self.nodes.remove(name);
        }
    }

    /// Counts `pod` on `node` until its binding is confirmed or given up.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.forget_uid(&pod.uid);
        Arc::make_mut(&mut self.slot(node).info).add_pod(pod.clone());
        self.pods.insert(pod.uid.clone(), PodState { pod, node: node.to_owned(), assumed: true });
    }

    /// Gives up an assumed pod (its binding failed).
    pub fn forget(&mut self, uid: &str) {
        if self.pods.get(uid).is_some_and(|p| p.assumed) {
            self.forget_uid(uid);
        }
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    /// A bound pod as its watch reports it (added or updated); confirms an assumed one.
    pub fn put_pod(&mut self, pod: Arc<PodInfo>) {
        let Some(node) = pod.node_name().map(str::to_owned) else { return };
        self.forget_uid(&pod.uid);
        Arc::make_mut(&mut self.slot(&node).info).add_pod(pod.clone());
        self.pods.insert(pod.uid.clone(), PodState { pod, node, assumed: false });
    }

    pub fn remove_pod(&mut self, uid: &str) {
        self.forget_uid(uid);
    }

    fn forget_uid(&mut self, uid: &str) {
        let Some(state) = self.pods.remove(uid) else { return };
        let Some(slot) = self.nodes.get_mut(&state.node) else { return };
        Arc::make_mut(&mut slot.info).remove_pod(&state.pod.uid);
        self.dirty.insert(state.node.clone());
        if !slot.has_node && slot.info.pods.is_empty() {
            self.nodes.remove(&state.node);
        }
    }

    /// How many nodes hold a Node object.
    pub fn node_count(&self) -> usize {
        self.nodes.values().filter(|s| s.has_node).count()
    }

    /// The pod the cache holds for `uid`, and its node.
    pub fn pod(&self, uid: &str) -> Option<(Arc<PodInfo>, &str)> {
        self.pods.get(uid).map(|s| (s.pod.clone(), s.node.as_str()))
    }

    /// Brings `snapshot` up to date: only the nodes that changed are replaced, and the
    /// derived lists rebuilt only when what they list may have changed.
    pub fn update_snapshot(&mut self, snapshot: &mut Snapshot) {
        if self.dirty.is_empty() && !self.membership_changed {
            return;
        }
        let mut rebuild = self.membership_changed || self.nodes_changed;
        if self.membership_changed {
            let mut infos: Vec<Arc<NodeInfo>> =
                self.nodes.values().filter(|s| s.has_node).map(|s| s.info.clone()).collect();
            infos.sort_by(|a, b| a.name.cmp(&b.name));
            snapshot.nodes = zone_interleaved(infos);
            snapshot.index =
                snapshot.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        } else {
            for name in &self.dirty {
                if let (Some(&i), Some(slot)) = (snapshot.index.get(name), self.nodes.get(name)) {
                    let old = std::mem::replace(&mut snapshot.nodes[i], slot.info.clone());
                    rebuild |= affinity_flags(&old) != affinity_flags(&slot.info)
                        || affinity_flags(&old) != (false, false);
                }
            }
        }
        self.dirty.clear();
        self.membership_changed = false;
        if rebuild {
            snapshot.refresh(self.nodes_changed);
        }
        self.nodes_changed = false;
    }
}

/// Whether a node holds pods with (anti-)affinity terms, and with required
/// anti-affinity.
fn affinity_flags(node: &NodeInfo) -> (bool, bool) {
    (node.pods_with_affinity > 0, node.pods_with_required_anti_affinity > 0)
}

/// Nodes ordered zone by zone in turn (upstream's `nodeTree`), so a search that stops
/// early has seen every zone.
fn zone_interleaved(nodes: Vec<Arc<NodeInfo>>) -> Vec<Arc<NodeInfo>> {
    let mut zones: BTreeMap<String, std::collections::VecDeque<Arc<NodeInfo>>> = BTreeMap::new();
    for node in nodes {
        let zone = crate::plugins::helper::zone_key(&node);
        zones.entry(zone).or_default().push_back(node);
    }
    let mut out = Vec::new();
    loop {
        let mut any = false;
        for queue in zones.values_mut() {
            if let Some(node) = queue.pop_front() {
                out.push(node);
                any = true;
            }
        }
        if !any {
            return out;
        }
    }
}

/// What one scheduling cycle reads: every node with an object, in search order.
#[derive(Default, Clone)]
pub struct Snapshot {
    pub nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    /// The nodes with a pod that has (anti-)affinity terms, and with a pod that has a
    /// required anti-affinity term.
    pub with_affinity: Vec<Arc<NodeInfo>>,
    pub with_required_anti_affinity: Vec<Arc<NodeInfo>>,
    /// On how many nodes each image is.
    pub image_nodes: HashMap<String, usize>,
}

impl Snapshot {
    /// A snapshot of exactly these nodes (tests, and preemption's what-ifs).
    pub fn from_nodes(nodes: Vec<NodeInfo>) -> Self {
        let mut snapshot =
            Snapshot { nodes: nodes.into_iter().map(Arc::new).collect(), ..Snapshot::default() };
        snapshot.index =
            snapshot.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        snapshot.refresh(true);
        snapshot
    }

    /// Rebuilds the lists of nodes with affinity pods, and (with `images`) the image
    /// counts.
    fn refresh(&mut self, images: bool) {
        self.with_affinity =
            self.nodes.iter().filter(|n| n.pods_with_affinity > 0).cloned().collect();
        self.with_required_anti_affinity =
            self.nodes.iter().filter(|n| n.pods_with_required_anti_affinity > 0).cloned().collect();
        if !images {
            return;
        }
        self.image_nodes.clear();
        for node in &self.nodes {
            for image in node.images.keys() {
                *self.image_nodes.entry(image.clone()).or_default() += 1;
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// Replaces one node (preemption's what-ifs).
    pub fn replace(&mut self, info: Arc<NodeInfo>) {
        if let Some(&i) = self.index.get(&info.name) {
            self.nodes[i] = info;
            self.refresh(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::api::core::v1::{Pod, PodSpec};

    use super::*;

    fn node(name: &str, zone: &str) -> Arc<Node> {
        let mut node = Node::default();
        node.metadata.name = Some(name.into());
        node.metadata.labels =
            Some([("topology.kubernetes.io/zone".to_owned(), zone.to_owned())].into());
        Arc::new(node)
    }

    fn pod(uid: &str, node: Option<&str>) -> Arc<PodInfo> {
        let mut pod = Pod::default();
        pod.metadata.name = Some(uid.into());
        pod.metadata.namespace = Some("default".into());
        pod.metadata.uid = Some(uid.into());
        pod.spec = Some(PodSpec { node_name: node.map(Into::into), ..Default::default() });
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    #[test]
    fn an_assumed_pod_counts_until_confirmed_or_forgotten() {
        let mut cache = Cache::new();
        cache.add_node(node("a", "z1"));
        let mut snapshot = Snapshot::default();
        cache.assume(pod("p", None), "a");
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.get("a").map(|n| n.pods.len()), Some(1));
        assert!(cache.is_assumed("p"));
        // The watch confirms it: still one pod.
        cache.put_pod(pod("p", Some("a")));
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.get("a").map(|n| n.pods.len()), Some(1));
        assert!(!cache.is_assumed("p"));
        // Forgetting a confirmed pod does nothing.
        cache.forget("p");
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.get("a").map(|n| n.pods.len()), Some(1));
        cache.assume(pod("q", None), "a");
        cache.forget("q");
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.get("a").map(|n| n.pods.len()), Some(1));
        cache.remove_pod("p");
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.get("a").map(|n| n.pods.len()), Some(0));
    }

    #[test]
    fn snapshot_sees_nodes_zone_by_zone_and_leaves_removed_ones_out() {
        let mut cache = Cache::new();
        for (name, zone) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c"), ("b2", "b")] {
            cache.add_node(node(name, zone));
        }
        let mut snapshot = Snapshot::default();
        cache.update_snapshot(&mut snapshot);
        let names: Vec<&str> = snapshot.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a1", "b1", "c1", "a2", "b2"]);
        // A pod on a node whose object went away keeps the node out of the snapshot.
        cache.put_pod(pod("p", Some("c1")));
        cache.remove_node("c1");
        cache.update_snapshot(&mut snapshot);
        assert!(snapshot.get("c1").is_none());
        assert_eq!(cache.node_count(), 4);
        cache.add_node(node("c1", "c"));
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.get("c1").map(|n| n.pods.len()), Some(1));
    }
}
