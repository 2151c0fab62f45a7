//! `NodeResourcesFit` (requests against what is left of allocatable; scoring by
//! LeastAllocated, MostAllocated or RequestedToCapacityRatio) and
//! `NodeResourcesBalancedAllocation` (favour nodes whose resources would be used
//! evenly), with upstream's reasons and arithmetic.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;

use crate::cache::Snapshot;
use crate::framework::{
    ClusterEvent, Code, CycleState, EventResource, Hint, MAX_NODE_SCORE, Object, Plugin, Point,
    PreFilterResult, Status, action,
};
use crate::resources::{Resources, is_extended, is_scalar};
use crate::types::{NodeInfo, PodInfo};

/// A resource and its weight in a score.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    pub name: String,
    #[serde(default)]
    pub weight: i64,
}

fn default_resources() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec { name: "cpu".into(), weight: 1 },
        ResourceSpec { name: "memory".into(), weight: 1 },
    ]
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShapePoint {
    pub utilization: i64,
    pub score: i64,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RequestedToCapacityRatio {
    #[serde(default)]
    pub shape: Vec<ShapePoint>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScoringStrategy {
    #[serde(rename = "type", default = "least_allocated")]
    pub kind: String,
    #[serde(default = "default_resources")]
    pub resources: Vec<ResourceSpec>,
    #[serde(default)]
    pub requested_to_capacity_ratio: Option<RequestedToCapacityRatio>,
}

fn least_allocated() -> String {
    "LeastAllocated".into()
}

impl Default for ScoringStrategy {
    fn default() -> Self {
        ScoringStrategy {
            kind: least_allocated(),
            resources: default_resources(),
            requested_to_capacity_ratio: None,
        }
    }
}

/// `NodeResourcesFitArgs`.
#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FitArgs {
    #[serde(default)]
    pub ignored_resources: Vec<String>,
    #[serde(default)]
    pub ignored_resource_groups: Vec<String>,
    #[serde(default)]
    pub scoring_strategy: Option<ScoringStrategy>,
}

impl FitArgs {
    /// Upstream's `ValidateNodeResourcesFitArgs`, in its words.
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        let strategy = self.scoring_strategy.clone().unwrap_or_default();
        let strategy_path = format!("{path}.scoringStrategy");
        match strategy.kind.as_str() {
            "LeastAllocated" | "MostAllocated" => {}
            "RequestedToCapacityRatio" => {
                let shape = strategy.requested_to_capacity_ratio.map(|r| r.shape).unwrap_or_default();
                if shape.is_empty() {
                    errors.push(format!("{strategy_path}.requestedToCapacityRatio.shape: Required value: at least one point must be specified"));
                }
                for (i, p) in shape.iter().enumerate() {
                    if !(0..=100).contains(&p.utilization) {
                        errors.push(format!("{strategy_path}.requestedToCapacityRatio.shape[{i}].utilization: Invalid value: {}: not in valid range [0, 100]", p.utilization));
                    }
                    if !(0..=10).contains(&p.score) {
                        errors.push(format!("{strategy_path}.requestedToCapacityRatio.shape[{i}].score: Invalid value: {}: not in valid range [0, 10]", p.score));
                    }
                    if i > 0 && p.utilization <= shape[i - 1].utilization {
                        errors.push(format!("{strategy_path}.requestedToCapacityRatio.shape[{i}].utilization: Invalid value: {}: utilization values must be sorted in increasing order", p.utilization));
                    }
                }
            }
            other => errors.push(format!(
                "{strategy_path}.type: Unsupported value: \"{other}\": supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\""
            )),
        }
        errors
            .extend(validate_resources(&strategy.resources, &format!("{strategy_path}.resources")));
        errors
    }
}

fn validate_resources(resources: &[ResourceSpec], path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in resources.iter().enumerate() {
        if !(1..=100).contains(&r.weight) {
            errors.push(format!("{path}[{i}].weight: Invalid value: {}: resource weight of {} should be in range [1, 100]", r.weight, r.name));
        }
        if !seen.insert(r.name.clone()) {
            errors.push(format!("{path}[{i}].name: Duplicate value: \"{}\"", r.name));
        }
    }
    errors
}

/// `NodeResourcesBalancedAllocationArgs`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BalancedArgs {
    #[serde(default = "default_resources")]
    pub resources: Vec<ResourceSpec>,
}

impl Default for BalancedArgs {
    fn default() -> Self {
        BalancedArgs { resources: default_resources() }
    }
}

impl BalancedArgs {
    pub fn validate(&self, path: &str) -> Vec<String> {
        validate_resources(&self.resources, &format!("{path}.resources"))
    }
}

enum Scorer {
    Least,
    Most,
    /// The broken-line function's points, scores scaled to 0..=100.
    Ratio(Vec<(i64, i64)>),
}

/// `NodeResourcesFit`.
pub struct Fit {
    ignored: HashSet<String>,
    ignored_groups: HashSet<String>,
    resources: Vec<ResourceSpec>,
    scorer: Scorer,
}

const FIT: &str = "PreFilterNodeResourcesFit";
const FIT_SCORE: &str = "PreScoreNodeResourcesFit";

impl Fit {
    pub fn new(args: FitArgs) -> Self {
        let strategy = args.scoring_strategy.unwrap_or_default();
        let scorer = match strategy.kind.as_str() {
            "MostAllocated" => Scorer::Most,
            "RequestedToCapacityRatio" => Scorer::Ratio(
                strategy
                    .requested_to_capacity_ratio
                    .map(|r| r.shape)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| (p.utilization, p.score * (MAX_NODE_SCORE / 10)))
                    .collect(),
            ),
            _ => Scorer::Least,
        };
        Fit {
            ignored: args.ignored_resources.into_iter().collect(),
            ignored_groups: args.ignored_resource_groups.into_iter().collect(),
            resources: strategy.resources,
            scorer,
        }
    }

    /// The reasons `node` cannot hold `pod`, and whether any is beyond the node's whole
    /// allocatable (unresolvable by preemption).
    pub fn insufficient(&self, requests: &Resources, node: &NodeInfo) -> (Vec<String>, bool) {
        let mut reasons = Vec::new();
        let mut unresolvable = false;
        let (alloc, used) = (&node.allocatable, &node.requested);
        if node.pods.len() as i64 + 1 > alloc.pods {
            reasons.push("Too many pods".to_owned());
        }
        let mut check = |name: &str, want: i64, have: i64, used: i64| {
            if want > 0 && want > have - used {
                reasons.push(format!("Insufficient {name}"));
                unresolvable |= want > have;
            }
        };
        check("cpu", requests.milli_cpu, alloc.milli_cpu, used.milli_cpu);
        check("memory", requests.memory, alloc.memory, used.memory);
        check(
            "ephemeral-storage",
            requests.ephemeral_storage,
            alloc.ephemeral_storage,
            used.ephemeral_storage,
        );
        for (name, &want) in &requests.scalar {
            if want == 0 {
                continue;
            }
            if is_extended(name) {
                let group = name.split('/').next().unwrap_or_default();
                if self.ignored.contains(name) || self.ignored_groups.contains(group) {
                    continue;
                }
            }
            check(name, want, alloc.get(name), used.get(name));
        }
        (reasons, unresolvable)
    }

    /// The score of `node` for a pod requesting `pod` of each scored resource.
    fn score_of(&self, node: &NodeInfo, pod: &[i64]) -> i64 {
        let (mut total, mut weights) = (0i64, 0i64);
        for (r, &want) in self.resources.iter().zip(pod) {
            let Some((cap, req)) = amount(node, &r.name, want, true) else { continue };
            let score = match &self.scorer {
                Scorer::Least => {
                    if req > cap {
                        0
                    } else {
                        (cap - req) * MAX_NODE_SCORE / cap
                    }
                }
                Scorer::Most => req.min(cap) * MAX_NODE_SCORE / cap,
                Scorer::Ratio(shape) => {
                    let utilization = if req > cap { 100 } else { req * 100 / cap };
                    let s = broken_line(shape, utilization);
                    if s <= 0 {
                        continue;
                    }
                    s
                }
            };
            total += score * r.weight;
            weights += r.weight;
        }
        if weights == 0 {
            return 0;
        }
        match self.scorer {
            Scorer::Ratio(_) => (total as f64 / weights as f64).round() as i64,
            _ => total / weights,
        }
    }
}

/// Upstream's `BuildBrokenLinearFunction`.
fn broken_line(shape: &[(i64, i64)], x: i64) -> i64 {
    for (i, &(u, s)) in shape.iter().enumerate() {
        if x <= u {
            if i == 0 {
                return shape[0].1;
            }
            let (u0, s0) = shape[i - 1];
            return s0 + (s - s0) * (x - u0) / (u - u0);
        }
    }
    shape.last().map(|p| p.1).unwrap_or(0)
}

/// The pod's request of each scored resource; CPU and memory with the scoring defaults
/// when `non_zero`.
fn pod_requests(pod: &PodInfo, resources: &[ResourceSpec], non_zero: bool) -> Vec<i64> {
    resources
        .iter()
        .map(|r| match r.name.as_str() {
            "cpu" if non_zero => pod.requests.non_zero_milli_cpu,
            "memory" if non_zero => pod.requests.non_zero_memory,
            name => pod.requests.requests.get(name),
        })
        .collect()
}

/// Allocatable and requested (with the pod's `want`) of resource `name` on `node`
/// (`calculateResourceAllocatableRequest`); `None` when the node has none of it or the
/// pod asks for none of a scalar resource.
fn amount(node: &NodeInfo, name: &str, want: i64, non_zero: bool) -> Option<(i64, i64)> {
    if want == 0 && is_scalar(name) {
        return None;
    }
    let requested = if non_zero { &node.non_zero_requested } else { &node.requested };
    let (alloc, used) = match name {
        "cpu" => (node.allocatable.milli_cpu, requested.milli_cpu),
        "memory" => (node.allocatable.memory, requested.memory),
        "ephemeral-storage" => {
            (node.allocatable.ephemeral_storage, node.requested.ephemeral_storage)
        }
        other => (*node.allocatable.scalar.get(other)?, node.requested.get(other)),
    };
    (alloc != 0).then_some((alloc, used + want))
}

impl Plugin for Fit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::PreFilter, Point::Filter, Point::PreScore, Point::Score]
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent {
                resource: EventResource::AssignedPod,
                actions: action::DELETE | action::UPDATE_POD_SCALE_DOWN,
            },
            ClusterEvent {
                resource: EventResource::Node,
                actions: action::ADD
                    | action::UPDATE_NODE_ALLOCATABLE
                    | action::UPDATE_NODE_TAINT
                    | action::UPDATE_NODE_LABEL,
            },
            ClusterEvent {
                resource: EventResource::UnscheduledPod,
                actions: action::UPDATE_POD_SCALE_DOWN,
            },
        ]
    }
    fn hint(
        &self,
        pod: &PodInfo,
        event: &ClusterEvent,
        _: Option<&Object>,
        new: Option<&Object>,
    ) -> Hint {
        // A node too small for the pod even when empty does not help.
        if let (EventResource::Node, Some(Object::Node(node))) = (event.resource, new) {
            let info = NodeInfo::new(node.clone());
            let (reasons, _) = self.insufficient(&pod.requests.requests, &info);
            return if reasons.is_empty() { Hint::Queue } else { Hint::Skip };
        }
        Hint::Queue
    }
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        state.write(FIT, pod.requests.requests.clone());
        (None, Status::success())
    }
    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Status {
        let Some(requests) = state.read::<Resources>(FIT) else {
            return Status::error(
                "reading \"PreFilterNodeResourcesFit\" from cycleState: not found",
            );
        };
        let (reasons, unresolvable) = self.insufficient(requests, node);
        if reasons.is_empty() {
            return Status::success();
        }
        let code =
            if unresolvable { Code::UnschedulableAndUnresolvable } else { Code::Unschedulable };
        Status { code, reasons, plugin: "" }
    }
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        _: &Snapshot,
    ) -> Status {
        state.write(FIT_SCORE, pod_requests(pod, &self.resources, true));
        Status::success()
    }
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let computed;
        let requests = match state.read::<Vec<i64>>(FIT_SCORE) {
            Some(r) => r,
            None => {
                computed = pod_requests(pod, &self.resources, true);
                &computed
            }
        };
        (self.score_of(node, requests), Status::success())
    }
}

/// `NodeResourcesBalancedAllocation`.
pub struct Balanced {
    resources: Vec<ResourceSpec>,
}

const BALANCED: &str = "PreScoreNodeResourcesBalancedAllocation";

impl Balanced {
    pub fn new(args: BalancedArgs) -> Self {
        Balanced { resources: args.resources }
    }
}

impl Plugin for Balanced {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::PreScore, Point::Score]
    }
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        _: &Snapshot,
    ) -> Status {
        let requests = pod_requests(pod, &self.resources, false);
        if requests.iter().all(|r| *r == 0) {
            return Status::skip();
        }
        state.write(BALANCED, requests);
        Status::success()
    }
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(requests) = state.read::<Vec<i64>>(BALANCED) else {
            return (0, Status::success());
        };
        // Each resource's share of the node with the pod, capped at 1; their spread.
        let fractions = || {
            self.resources.iter().zip(requests.iter()).filter_map(|(r, &want)| {
                let (cap, req) = amount(node, &r.name, want, false)?;
                Some((req as f64 / cap as f64).min(1.0))
            })
        };
        let (n, sum) = fractions().fold((0usize, 0.0), |(n, sum), f| (n + 1, sum + f));
        let std = match n {
            0 | 1 => 0.0,
            2 => {
                let mut two = fractions();
                let (a, b) = (two.next().unwrap_or(0.0), two.next().unwrap_or(0.0));
                ((a - b) / 2.0).abs()
            }
            n => {
                let mean = sum / n as f64;
                (fractions().map(|f| (f - mean) * (f - mean)).sum::<f64>() / n as f64).sqrt()
            }
        };
        (((1.0 - std) * MAX_NODE_SCORE as f64) as i64, Status::success())
    }
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::api::core::v1::{
        Container, Node, NodeStatus, Pod, PodSpec, ResourceRequirements,
    };
    use keelson_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    fn node(cpu: &str, memory: &str, pods: &str) -> NodeInfo {
        let mut n = Node::default();
        n.metadata.name = Some("n".into());
        n.status = Some(NodeStatus {
            allocatable: Some(
                [("cpu", cpu), ("memory", memory), ("pods", pods)]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
                    .collect(),
            ),
            ..Default::default()
        });
        NodeInfo::new(Arc::new(n))
    }

    fn pod(name: &str, cpu: &str, memory: &str) -> Arc<PodInfo> {
        let mut requests = std::collections::BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert("cpu".to_owned(), Quantity(cpu.into()));
        }
        if !memory.is_empty() {
            requests.insert("memory".to_owned(), Quantity(memory.into()));
        }
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some(name.into());
        p.spec = Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(requests),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        Arc::new(PodInfo::new(Arc::new(p)))
    }

    fn filter(fit: &Fit, pod: &PodInfo, node: &NodeInfo) -> Status {
        let mut state = CycleState::default();
        fit.pre_filter(&mut state, pod, &Snapshot::default());
        fit.filter(&state, pod, node)
    }

    #[test]
    fn fit_reports_each_insufficient_resource() {
        let fit = Fit::new(FitArgs::default());
        let mut n = node("1", "1Gi", "2");
        n.add_pod(pod("a", "600m", "512Mi"));
        assert!(filter(&fit, &pod("b", "400m", "512Mi"), &n).is_success());
        let status = filter(&fit, &pod("b", "500m", "600Mi"), &n);
        assert_eq!(status.reasons, ["Insufficient cpu", "Insufficient memory"]);
        assert_eq!(status.code, Code::Unschedulable);
        // More than the node has at all: preemption cannot help.
        let status = filter(&fit, &pod("b", "2", ""), &n);
        assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
        n.add_pod(pod("c", "", ""));
        assert_eq!(filter(&fit, &pod("d", "", ""), &n).reasons, ["Too many pods"]);
    }

    #[test]
    fn scoring_strategies_follow_upstream() {
        // Upstream's least-allocated case: 4000m/10000 node with 3000m/5000 requested
        // by the pod → cpu (4000-3000)*100/4000 = 25, memory (10000-5000)*100/10000 = 50.
        let n = node("4", "10000", "110");
        let p = pod("p", "3", "5000");
        let least = Fit::new(FitArgs::default());
        let mut state = CycleState::default();
        least.pre_score(&mut state, &p, &[], &Snapshot::default());
        assert_eq!(least.score(&state, &p, &n).0, 37);
        let most = Fit::new(FitArgs {
            scoring_strategy: Some(ScoringStrategy {
                kind: "MostAllocated".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        // cpu 75, memory 50.
        assert_eq!(most.score(&state, &p, &n).0, 62);
        let ratio = Fit::new(FitArgs {
            scoring_strategy: Some(ScoringStrategy {
                kind: "RequestedToCapacityRatio".into(),
                resources: default_resources(),
                requested_to_capacity_ratio: Some(RequestedToCapacityRatio {
                    shape: vec![
                        ShapePoint { utilization: 0, score: 10 },
                        ShapePoint { utilization: 100, score: 0 },
                    ],
                }),
            }),
            ..Default::default()
        });
        // Like least-allocated here: cpu 25, memory 50 → 37.5 rounds to 38.
        assert_eq!(ratio.score(&state, &p, &n).0, 38);
        // Balanced: cpu 0.75, memory 0.5 → std 0.125 → 87.
        let balanced = Balanced::new(BalancedArgs::default());
        balanced.pre_score(&mut state, &p, &[], &Snapshot::default());
        assert_eq!(balanced.score(&state, &p, &n).0, 87);
    }

    #[test]
    fn invalid_args_are_refused_in_upstreams_words() {
        let args = FitArgs {
            scoring_strategy: Some(ScoringStrategy { kind: "Other".into(), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(
            args.validate("profiles[0].pluginConfig[0].args"),
            [
                "profiles[0].pluginConfig[0].args.scoringStrategy.type: Unsupported value: \"Other\": supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\""
            ]
        );
    }
}
