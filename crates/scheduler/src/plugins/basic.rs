//! The small default plugins: PrioritySort, SchedulingGates, NodeName,
//! NodeUnschedulable, NodePorts, TaintToleration, ImageLocality and DefaultBinder —
//! with upstream's semantics and reasons.

use std::sync::Arc;

use keelson_api::k8s_openapi::api::core::v1::{Taint, Toleration};

use super::helper;
use crate::cache::Snapshot;
use crate::framework::{
    ClusterEvent, CycleState, EventResource, Hint, MAX_NODE_SCORE, NodeScore, Object, Plugin,
    Point, PreFilterResult, QueueOrder, Status, action,
};
use crate::types::{HostPort, NodeInfo, PodInfo, normalized_image_name};

/// Highest priority first, then first in (`PrioritySort`).
pub struct PrioritySort;

impl Plugin for PrioritySort {
    fn name(&self) -> &'static str {
        "PrioritySort"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::QueueSort]
    }
    fn less(&self, a: &QueueOrder, b: &QueueOrder) -> bool {
        a.priority > b.priority
            || (a.priority == b.priority && (a.timestamp, a.seq) < (b.timestamp, b.seq))
    }
}

/// Holds pods with `spec.schedulingGates` out of the queue (`SchedulingGates`).
pub struct SchedulingGates;

impl Plugin for SchedulingGates {
    fn name(&self) -> &'static str {
        "SchedulingGates"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::PreEnqueue]
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent {
            resource: EventResource::UnscheduledPod,
            actions: action::UPDATE_POD_GATES_ELIMINATED,
        }]
    }
    fn pre_enqueue(&self, pod: &PodInfo) -> Status {
        let gates: Vec<&str> = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .into_iter()
            .flatten()
            .map(|g| g.name.as_str())
            .collect();
        if gates.is_empty() {
            return Status::success();
        }
        Status::unresolvable(format!("waiting for scheduling gates: [{}]", gates.join(" ")))
    }
}

/// A pod that names its node fits only there (`NodeName`).
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::Filter]
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent { resource: EventResource::Node, actions: action::ADD }]
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.node_name() {
            Some(name) if name != node.name => {
                Status::unresolvable("node(s) didn't match the requested node name")
            }
            _ => Status::success(),
        }
    }
}

const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Cordoned nodes (`spec.unschedulable`) take only pods that tolerate
/// `node.kubernetes.io/unschedulable:NoSchedule` (`NodeUnschedulable`).
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::Filter]
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent {
                resource: EventResource::Node,
                actions: action::ADD | action::UPDATE_NODE_TAINT,
            },
            ClusterEvent {
                resource: EventResource::UnscheduledPod,
                actions: action::UPDATE_POD_TOLERATION,
            },
        ]
    }
    fn hint(
        &self,
        _: &PodInfo,
        event: &ClusterEvent,
        _: Option<&Object>,
        new: Option<&Object>,
    ) -> Hint {
        match (event.resource, new) {
            (EventResource::Node, Some(Object::Node(node))) => {
                if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
                    Hint::Skip
                } else {
                    Hint::Queue
                }
            }
            _ => Hint::Queue,
        }
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !node.unschedulable() {
            return Status::success();
        }
        let taint = Taint {
            key: UNSCHEDULABLE_TAINT.into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        if pod.tolerations().iter().any(|t| helper::tolerates(t, &taint)) {
            return Status::success();
        }
        Status::unresolvable("node(s) were unschedulable")
    }
}

/// Host ports already bound on a node (`NodePorts`).
pub struct NodePorts;

const NODE_PORTS: &str = "PreFilterNodePorts";

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::PreFilter, Point::Filter]
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent { resource: EventResource::AssignedPod, actions: action::DELETE },
            ClusterEvent { resource: EventResource::Node, actions: action::ADD | action::UPDATE },
        ]
    }
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        if pod.host_ports.is_empty() {
            return (None, Status::skip());
        }
        state.write(NODE_PORTS, pod.host_ports.clone());
        (None, Status::success())
    }
    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Status {
        let Some(wanted) = state.read::<Vec<HostPort>>(NODE_PORTS) else {
            return Status::error("reading \"PreFilterNodePorts\" from cycleState: not found");
        };
        if wanted.iter().any(|w| node.used_ports.iter().any(|u| w.conflicts(u))) {
            return Status::unschedulable(
                "node(s) didn't have free ports for the requested pod ports",
            );
        }
        Status::success()
    }
}

/// Taints the pod does not tolerate (`TaintToleration`): `NoSchedule` and `NoExecute`
/// ones exclude the node, `PreferNoSchedule` ones lower its score.
pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::Filter, Point::PreScore, Point::Score]
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent {
                resource: EventResource::Node,
                actions: action::ADD | action::UPDATE_NODE_TAINT,
            },
            ClusterEvent {
                resource: EventResource::UnscheduledPod,
                actions: action::UPDATE_POD_TOLERATION,
            },
        ]
    }
    fn hint(
        &self,
        pod: &PodInfo,
        event: &ClusterEvent,
        old: Option<&Object>,
        new: Option<&Object>,
    ) -> Hint {
        let untolerated = |o: Option<&Object>| match o {
            Some(Object::Node(n)) => {
                let taints = n.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
                helper::untolerated(taints, pod.tolerations(), do_not_schedule).is_some()
            }
            _ => true,
        };
        if event.resource != EventResource::Node {
            return Hint::Queue;
        }
        if untolerated(old) && !untolerated(new) { Hint::Queue } else { Hint::Skip }
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match helper::untolerated(node.taints(), pod.tolerations(), do_not_schedule) {
            Some(_) => Status::unresolvable("node(s) had untolerated taint(s)"),
            None => Status::success(),
        }
    }
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        _: &Snapshot,
    ) -> Status {
        // The tolerations that can tolerate PreferNoSchedule: an empty effect is any.
        let tolerations: Vec<Toleration> = pod
            .tolerations()
            .iter()
            .filter(|t| matches!(t.effect.as_deref(), None | Some("") | Some("PreferNoSchedule")))
            .cloned()
            .collect();
        state.write(TAINT_TOLERATION, tolerations);
        Status::success()
    }
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(tolerations) = state.read::<Vec<Toleration>>(TAINT_TOLERATION) else {
            return (
                0,
                Status::error("reading \"PreScoreTaintToleration\" from cycleState: not found"),
            );
        };
        let count = node
            .taints()
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|t| !tolerations.iter().any(|tol| helper::tolerates(tol, t)))
            .count();
        (count as i64, Status::success())
    }
    fn normalize(&self, _: &CycleState, _: &PodInfo, scores: &mut [NodeScore<'_>]) -> Status {
        helper::default_normalize(MAX_NODE_SCORE, true, scores);
        Status::success()
    }
}

const TAINT_TOLERATION: &str = "PreScoreTaintToleration";

fn do_not_schedule(t: &Taint) -> bool {
    t.effect == "NoSchedule" || t.effect == "NoExecute"
}

/// Nodes that already hold the pod's images score higher, weighted by the images'
/// sizes and how widely they are spread (`ImageLocality`).
pub struct ImageLocality;

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

impl ImageLocality {
    fn images(pod: &PodInfo) -> Vec<String> {
        let spec = pod.pod.spec.as_ref();
        let init = spec.and_then(|s| s.init_containers.as_ref()).into_iter().flatten();
        let containers = spec.map(|s| s.containers.iter()).into_iter().flatten();
        init.chain(containers)
            .map(|c| normalized_image_name(c.image.as_deref().unwrap_or_default()))
            .collect()
    }
}

#[derive(Clone)]
struct ImageLocalityState {
    /// Per image of the pod: on how many nodes it is.
    spread: Vec<(String, usize)>,
    total_nodes: usize,
    containers: usize,
}

const IMAGE_LOCALITY: &str = "PreScoreImageLocality";

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::PreScore, Point::Score]
    }
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let images = Self::images(pod);
        let containers = images.len();
        let spread = images
            .into_iter()
            .map(|i| {
                let n = snapshot.image_nodes.get(&i).copied().unwrap_or(0);
                (i, n)
            })
            .collect();
        state.write(
            IMAGE_LOCALITY,
            ImageLocalityState { spread, total_nodes: snapshot.nodes.len(), containers },
        );
        Status::success()
    }
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(s) = state.read::<ImageLocalityState>(IMAGE_LOCALITY) else {
            return (
                0,
                Status::error("reading \"PreScoreImageLocality\" from cycleState: not found"),
            );
        };
        let total = s.total_nodes.max(1) as f64;
        let sum: i64 = s
            .spread
            .iter()
            .filter_map(|(image, nodes)| {
                let state = node.images.get(image)?;
                Some((state.size as f64 * (*nodes as f64 / total)) as i64)
            })
            .sum();
        let max_threshold = MAX_CONTAINER_THRESHOLD * s.containers as i64;
        let clamped = sum.clamp(MIN_THRESHOLD, max_threshold.max(MIN_THRESHOLD));
        if max_threshold <= MIN_THRESHOLD {
            return (0, Status::success());
        }
        (
            MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD),
            Status::success(),
        )
    }
}

/// Binds through `pods/binding` (`DefaultBinder`); the binding cycle calls the handle.
pub struct DefaultBinder;

impl Plugin for DefaultBinder {
    fn name(&self) -> &'static str {
        "DefaultBinder"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::Bind]
    }
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::api::core::v1::{Node, NodeSpec, Pod, PodSpec, Toleration};

    use super::*;

    fn node(spec: NodeSpec) -> NodeInfo {
        let mut n = Node::default();
        n.metadata.name = Some("n".into());
        n.spec = Some(spec);
        NodeInfo::new(Arc::new(n))
    }

    fn pod(spec: PodSpec) -> PodInfo {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some("p".into());
        p.spec = Some(spec);
        PodInfo::new(Arc::new(p))
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: None, effect: effect.into(), time_added: None }
    }

    #[test]
    fn cordoned_nodes_take_only_pods_that_tolerate_it() {
        let cordoned = node(NodeSpec { unschedulable: Some(true), ..Default::default() });
        let state = CycleState::default();
        let status = NodeUnschedulable.filter(&state, &pod(PodSpec::default()), &cordoned);
        assert_eq!(status.reasons, ["node(s) were unschedulable"]);
        assert_eq!(status.code, crate::framework::Code::UnschedulableAndUnresolvable);
        let tolerating = pod(PodSpec {
            tolerations: Some(vec![Toleration {
                key: Some(UNSCHEDULABLE_TAINT.into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(NodeUnschedulable.filter(&state, &tolerating, &cordoned).is_success());
    }

    #[test]
    fn taints_filter_and_score() {
        let state = CycleState::default();
        let tainted =
            node(NodeSpec { taints: Some(vec![taint("a", "NoSchedule")]), ..Default::default() });
        let status = TaintToleration.filter(&state, &pod(PodSpec::default()), &tainted);
        assert_eq!(status.reasons, ["node(s) had untolerated taint(s)"]);
        let preferring = node(NodeSpec {
            taints: Some(vec![taint("a", "PreferNoSchedule"), taint("b", "PreferNoSchedule")]),
            ..Default::default()
        });
        assert!(TaintToleration.filter(&state, &pod(PodSpec::default()), &preferring).is_success());
        let tolerates_a = pod(PodSpec {
            tolerations: Some(vec![Toleration {
                key: Some("a".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let score = |p: &PodInfo| {
            let mut state = CycleState::default();
            TaintToleration.pre_score(&mut state, p, &[], &Snapshot::default());
            TaintToleration.score(&state, p, &preferring).0
        };
        assert_eq!(score(&tolerates_a), 1);
        assert_eq!(score(&pod(PodSpec::default())), 2);
    }

    #[test]
    fn scheduling_gates_hold_the_pod() {
        let gated = pod(PodSpec {
            scheduling_gates: Some(vec![
                keelson_api::k8s_openapi::api::core::v1::PodSchedulingGate { name: "a".into() },
                keelson_api::k8s_openapi::api::core::v1::PodSchedulingGate { name: "b".into() },
            ]),
            ..Default::default()
        });
        assert_eq!(
            SchedulingGates.pre_enqueue(&gated).reasons,
            ["waiting for scheduling gates: [a b]"]
        );
        assert!(SchedulingGates.pre_enqueue(&pod(PodSpec::default())).is_success());
    }
}
