//! The scheduling framework (upstream's `framework` and `framework/runtime`): plugins at
//! named extension points, a profile's plugin list per point with score weights, and
//! the code that runs each point — PreEnqueue, QueueSort, PreFilter, Filter (over nodes
//! in parallel), PostFilter, PreScore, Score with NormalizeScore and weights,
//! Reserve/Unreserve, Permit, PreBind, Bind, PostBind.
//!
//! A plugin is one value implementing [`Plugin`]; the points it serves are the ones its
//! [`Plugin::points`] names, each method defaulting to "nothing to do".

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::cache::Snapshot;
use crate::types::{NodeInfo, PodInfo};

/// Upstream's `MaxNodeScore`.
pub const MAX_NODE_SCORE: i64 = 100;

/// A plugin's verdict (upstream's `framework.Code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Success,
    Error,
    Unschedulable,
    UnschedulableAndUnresolvable,
    Wait,
    Skip,
}

/// A verdict with its reasons and the plugin that gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
    pub plugin: &'static str,
}

impl Status {
    pub fn success() -> Self {
        Status { code: Code::Success, reasons: Vec::new(), plugin: "" }
    }

    pub fn new(code: Code, reason: impl Into<String>) -> Self {
        Status { code, reasons: vec![reason.into()], plugin: "" }
    }

    pub fn unschedulable(reason: impl Into<String>) -> Self {
        Status::new(Code::Unschedulable, reason)
    }

    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Status::new(Code::UnschedulableAndUnresolvable, reason)
    }

    pub fn error(reason: impl Into<String>) -> Self {
        Status::new(Code::Error, reason)
    }

    pub fn skip() -> Self {
        Status { code: Code::Skip, reasons: Vec::new(), plugin: "" }
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    pub fn is_rejected(&self) -> bool {
        matches!(self.code, Code::Unschedulable | Code::UnschedulableAndUnresolvable)
    }

    pub fn with_plugin(mut self, plugin: &'static str) -> Self {
        self.plugin = plugin;
        self
    }

    /// The reasons joined, as upstream's `Status.Message`.
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

/// A value a plugin keeps in the cycle state: clonable, so a what-if (nominated pods,
/// preemption) works on a copy.
pub trait StateData: Any + Send + Sync {
    fn clone_box(&self) -> Box<dyn StateData>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Clone + Send + Sync> StateData for T {
    fn clone_box(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Data a plugin computes once per cycle (in PreFilter or PreScore) for its later
/// points, keyed by name (upstream's `CycleState`). A handful of entries, read once per
/// node per plugin: kept in a vector, found by comparing keys, no hashing.
#[derive(Default)]
pub struct CycleState {
    data: Vec<(&'static str, Box<dyn StateData>)>,
    /// Plugins whose PreFilter or PreScore said Skip: their Filter or Score is not run.
    pub skip_filter: Skipped,
    pub skip_score: Skipped,
}

/// The plugins that said Skip at a point.
#[derive(Clone, Default)]
pub struct Skipped(Vec<&'static str>);

impl Skipped {
    pub fn insert(&mut self, plugin: &'static str) {
        if !self.contains(plugin) {
            self.0.push(plugin);
        }
    }

    pub fn contains(&self, plugin: &'static str) -> bool {
        self.0.contains(&plugin)
    }
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        CycleState {
            data: self.data.iter().map(|(k, v)| (*k, (**v).clone_box())).collect(),
            skip_filter: self.skip_filter.clone(),
            skip_score: self.skip_score.clone(),
        }
    }
}

impl CycleState {
    pub fn write<T: Any + Clone + Send + Sync>(&mut self, key: &'static str, value: T) {
        match self.data.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => *slot = Box::new(value),
            None => self.data.push((key, Box::new(value))),
        }
    }

    pub fn read<T: Any>(&self, key: &'static str) -> Option<&T> {
        let (_, value) = self.data.iter().find(|(k, _)| *k == key)?;
        (**value).as_any().downcast_ref()
    }

    pub fn read_mut<T: Any>(&mut self, key: &'static str) -> Option<&mut T> {
        let (_, value) = self.data.iter_mut().find(|(k, _)| *k == key)?;
        (**value).as_any_mut().downcast_mut()
    }
}

/// The extension points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Point {
    PreEnqueue,
    QueueSort,
    PreFilter,
    Filter,
    PostFilter,
    PreScore,
    Score,
    Reserve,
    Permit,
    PreBind,
    Bind,
    PostBind,
}

impl Point {
    pub const ALL: [Point; 12] = [
        Point::PreEnqueue,
        Point::QueueSort,
        Point::PreFilter,
        Point::Filter,
        Point::PostFilter,
        Point::PreScore,
        Point::Score,
        Point::Reserve,
        Point::Permit,
        Point::PreBind,
        Point::Bind,
        Point::PostBind,
    ];
}

/// Which objects changed how (upstream's `ClusterEvent`), for requeueing pods a plugin
/// rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventResource {
    /// A pod bound to a node.
    AssignedPod,
    /// A pod waiting to be scheduled (its own updates).
    UnscheduledPod,
    Node,
    PersistentVolumeClaim,
    PersistentVolume,
    StorageClass,
    CsiNode,
    Namespace,
}

/// Bits of what happened (upstream's `ActionType`).
pub mod action {
    pub const ADD: u32 = 1;
    pub const DELETE: u32 = 1 << 1;
    pub const UPDATE_NODE_ALLOCATABLE: u32 = 1 << 2;
    pub const UPDATE_NODE_LABEL: u32 = 1 << 3;
    pub const UPDATE_NODE_TAINT: u32 = 1 << 4;
    pub const UPDATE_NODE_CONDITION: u32 = 1 << 5;
    pub const UPDATE_NODE_ANNOTATION: u32 = 1 << 6;
    pub const UPDATE_POD_LABEL: u32 = 1 << 7;
    pub const UPDATE_POD_SCALE_DOWN: u32 = 1 << 8;
    pub const UPDATE_POD_TOLERATION: u32 = 1 << 9;
    pub const UPDATE_POD_GATES_ELIMINATED: u32 = 1 << 10;
    pub const UPDATE: u32 = ((1 << 11) - 1) & !(ADD | DELETE);
    pub const ALL: u32 = (1 << 11) - 1;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterEvent {
    pub resource: EventResource,
    pub actions: u32,
}

impl ClusterEvent {
    pub const fn new(resource: EventResource, actions: u32) -> Self {
        ClusterEvent { resource, actions }
    }

    /// Whether `self` (what a plugin registered for) covers `happened`.
    pub fn covers(&self, happened: &ClusterEvent) -> bool {
        self.resource == happened.resource && self.actions & happened.actions != 0
    }

    /// A name for the metrics and logs: `Node/Add`, `AssignedPod/Delete`, …
    pub fn label(&self) -> String {
        format!("{:?}/{}", self.resource, self.actions)
    }
}

/// What PreFilter may narrow the search to (upstream's `PreFilterResult`).
#[derive(Clone, Debug, Default)]
pub struct PreFilterResult {
    /// `None`: every node.
    pub node_names: Option<HashSet<String>>,
}

/// One node's score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeScore<'a> {
    pub name: &'a str,
    pub score: i64,
}

/// Whether a cluster event may make a pod schedulable again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    Queue,
    Skip,
}

/// What a bind or a preemption needs to talk to the cluster.
pub trait Handle: Send + Sync {
    /// The labels of a namespace (for namespace selectors), if known.
    fn namespace_labels(
        &self,
        namespace: &str,
    ) -> Option<std::collections::BTreeMap<String, String>>;
    /// Writes `volume.kubernetes.io/selected-node` on a claim to provision for `node`.
    fn select_node_for_claim(
        &self,
        namespace: &str,
        claim: &str,
        node: &str,
    ) -> futures::BoxFuture<'static, Result<(), String>>;
    /// Extra cluster reads some plugins need (PDBs, PVCs, …).
    fn lister(&self) -> &dyn crate::plugins::Lister;
}

pub mod futures {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

/// A scheduling plugin.
#[allow(unused_variables)]
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// The extension points it serves.
    fn points(&self) -> &'static [Point];
    /// The cluster events that may make a pod it rejected schedulable.
    fn events(&self) -> &'static [ClusterEvent] {
        &[]
    }
    /// Whether `event` (on `object`, before `old`) may make `pod`, which this plugin
    /// rejected, schedulable. The default: yes.
    fn hint(
        &self,
        pod: &PodInfo,
        event: &ClusterEvent,
        old: Option<&Object>,
        new: Option<&Object>,
    ) -> Hint {
        Hint::Queue
    }
    fn pre_enqueue(&self, pod: &PodInfo) -> Status {
        Status::success()
    }
    /// QueueSort's `Less`.
    fn less(&self, a: &QueueOrder, b: &QueueOrder) -> bool {
        false
    }
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        (None, Status::success())
    }
    /// PreFilterExtensions: the pod `other` was added to (or removed from) `node` in a
    /// what-if; update what PreFilter computed.
    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
    ) -> Status {
        Status::success()
    }
    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
    ) -> Status {
        Status::success()
    }
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        Status::success()
    }
    fn post_filter(&self, ctx: &PostFilterContext<'_>) -> PostFilterOutcome {
        PostFilterOutcome {
            nominated: None,
            victims: Vec::new(),
            status: Status::unschedulable(""),
        }
    }
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        Status::success()
    }
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        (0, Status::success())
    }
    /// NormalizeScore, when the plugin has one.
    fn normalize(&self, state: &CycleState, pod: &PodInfo, scores: &mut [NodeScore<'_>]) -> Status {
        Status::success()
    }
    fn reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        Status::success()
    }
    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) {}
    fn permit(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
    ) -> (Status, std::time::Duration) {
        (Status::success(), std::time::Duration::ZERO)
    }
    /// PreBind: work to finish before the binding (a future), if any.
    fn pre_bind(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &str,
    ) -> Option<futures::BoxFuture<'static, Status>> {
        None
    }
}

/// What the queue sorts by.
#[derive(Clone, Debug)]
pub struct QueueOrder {
    pub priority: i32,
    /// When the pod entered the queue, for first-in-first-out among equals.
    pub timestamp: std::time::Instant,
    pub seq: u64,
}

/// Any object a cluster event is about.
#[derive(Clone, Debug)]
pub enum Object {
    Pod(Arc<PodInfo>),
    Node(Arc<keelson_api::k8s_openapi::api::core::v1::Node>),
    Other,
}

/// What PostFilter sees: the cycle, the pod, and why each node was rejected.
pub struct PostFilterContext<'a> {
    pub state: &'a CycleState,
    pub pod: &'a PodInfo,
    pub snapshot: &'a Snapshot,
    pub statuses: &'a HashMap<String, Status>,
    pub framework: &'a Framework,
    /// The pods nominated to a node.
    pub nominated_for: &'a (dyn Fn(&str) -> Vec<Arc<PodInfo>> + Sync),
}

/// PostFilter's answer: a node to nominate (after preemption), and why not.
pub struct PostFilterOutcome {
    /// `Some("")` clears a nomination.
    pub nominated: Option<String>,
    /// Pods to delete so the pod fits on the nominated node.
    pub victims: Vec<Arc<PodInfo>>,
    pub status: Status,
}

/// A plugin as a profile enables it at a point, with its score weight.
#[derive(Clone)]
pub struct Enabled {
    pub plugin: Arc<dyn Plugin>,
    pub weight: i64,
}

/// One profile: a scheduler name and its plugins per extension point.
pub struct Framework {
    pub scheduler_name: String,
    pub percentage_of_nodes_to_score: Option<i32>,
    pub points: HashMap<Point, Vec<Enabled>>,
    pub handle: Arc<dyn Handle>,
}

/// The outcome of Filter over the nodes.
pub struct Feasible {
    pub nodes: Vec<Arc<NodeInfo>>,
    /// Why each rejected node was rejected.
    pub statuses: HashMap<String, Status>,
    /// How many nodes Filter was run on.
    pub evaluated: usize,
}

impl Framework {
    pub fn at(&self, point: Point) -> &[Enabled] {
        self.points.get(&point).map(Vec::as_slice).unwrap_or_default()
    }

    /// Every plugin of the profile, once.
    pub fn plugins(&self) -> Vec<Arc<dyn Plugin>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for point in Point::ALL {
            for e in self.at(point) {
                if seen.insert(e.plugin.name()) {
                    out.push(e.plugin.clone());
                }
            }
        }
        out
    }

    pub fn plugin(&self, name: &str) -> Option<Arc<dyn Plugin>> {
        Point::ALL
            .iter()
            .flat_map(|p| self.at(*p))
            .find(|e| e.plugin.name() == name)
            .map(|e| e.plugin.clone())
    }

    pub fn run_pre_enqueue(&self, pod: &PodInfo) -> Status {
        for e in self.at(Point::PreEnqueue) {
            let status = e.plugin.pre_enqueue(pod);
            if !status.is_success() {
                return status.with_plugin(e.plugin.name());
            }
        }
        Status::success()
    }

    pub fn less(&self, a: &QueueOrder, b: &QueueOrder) -> bool {
        match self.at(Point::QueueSort).first() {
            Some(e) => e.plugin.less(a, b),
            None => (a.timestamp, a.seq) < (b.timestamp, b.seq),
        }
    }

    /// PreFilter: the nodes to search (merged from the plugins' results), or why the
    /// pod fits nowhere.
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let mut result: Option<PreFilterResult> = None;
        let mut narrowing: Vec<&'static str> = Vec::new();
        for e in self.at(Point::PreFilter) {
            let (r, status) = e.plugin.pre_filter(state, pod, snapshot);
            match status.code {
                Code::Skip => {
                    state.skip_filter.insert(e.plugin.name());
                    continue;
                }
                Code::Success => {}
                _ => return (None, status.with_plugin(e.plugin.name())),
            }
            let Some(names) = r.and_then(|r| r.node_names) else { continue };
            narrowing.push(e.plugin.name());
            let merged = match result.take().and_then(|r| r.node_names) {
                Some(current) => current.intersection(&names).cloned().collect(),
                None => names,
            };
            if merged.is_empty() {
                let message = format!(
                    "node(s) didn't satisfy plugin(s) [{}] simultaneously",
                    narrowing.join(" ")
                );
                let message = if narrowing.len() == 1 {
                    format!("node(s) didn't satisfy plugin {}", narrowing[0])
                } else {
                    message
                };
                return (None, Status::unresolvable(message).with_plugin(e.plugin.name()));
            }
            result = Some(PreFilterResult { node_names: Some(merged) });
        }
        (result, Status::success())
    }

    /// Every Filter plugin on one node; the first rejection stops.
    pub fn run_filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for e in self.at(Point::Filter) {
            if state.skip_filter.contains(e.plugin.name()) {
                continue;
            }
            let status = e.plugin.filter(state, pod, node);
            if !status.is_success() {
                return status.with_plugin(e.plugin.name());
            }
        }
        Status::success()
    }

    /// Filter with the pods nominated to `node` (of at least the pod's priority)
    /// counted, as upstream's `RunFilterPluginsWithNominatedPods`: run with them added
    /// (through the PreFilter extensions, on a copy of the state), then without.
    pub fn run_filter_with_nominated(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        nominated: &[Arc<PodInfo>],
    ) -> Status {
        let relevant: Vec<&Arc<PodInfo>> =
            nominated.iter().filter(|p| p.priority >= pod.priority && p.uid != pod.uid).collect();
        if relevant.is_empty() {
            return self.run_filter(state, pod, node);
        }
        let mut with = node.clone();
        let mut what_if = state.clone();
        for p in relevant {
            with.add_pod(p.clone());
            let status = self.run_add_pod(&mut what_if, pod, p, &with);
            if !status.is_success() {
                return status;
            }
        }
        let status = self.run_filter(&what_if, pod, &with);
        if !status.is_success() {
            return status;
        }
        self.run_filter(state, pod, node)
    }

    /// The PreFilter extensions' AddPod.
    pub fn run_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
    ) -> Status {
        self.run_extension(state, |p, state| p.add_pod(state, pod, other, node))
    }

    /// The PreFilter extensions' RemovePod.
    pub fn run_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
    ) -> Status {
        self.run_extension(state, |p, state| p.remove_pod(state, pod, other, node))
    }

    fn run_extension(
        &self,
        state: &mut CycleState,
        run: impl Fn(&dyn Plugin, &mut CycleState) -> Status,
    ) -> Status {
        for e in self.at(Point::PreFilter) {
            if state.skip_filter.contains(e.plugin.name()) {
                continue;
            }
            let status = run(e.plugin.as_ref(), state);
            if !status.is_success() {
                return status.with_plugin(e.plugin.name());
            }
        }
        Status::success()
    }

    /// PreScore then Score with NormalizeScore and weights: each node's total.
    pub fn run_score<'a>(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &'a [Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Result<Vec<NodeScore<'a>>, Status> {
        for e in self.at(Point::PreScore) {
            let status = e.plugin.pre_score(state, pod, nodes, snapshot);
            match status.code {
                Code::Skip => {
                    state.skip_score.insert(e.plugin.name());
                }
                Code::Success => {}
                _ => return Err(status.with_plugin(e.plugin.name())),
            }
        }
        let mut totals: Vec<NodeScore<'a>> =
            nodes.iter().map(|n| NodeScore { name: &n.name, score: 0 }).collect();
        let mut scores = totals.clone();
        for e in self.at(Point::Score) {
            if state.skip_score.contains(e.plugin.name()) {
                continue;
            }
            for (slot, node) in scores.iter_mut().zip(nodes) {
                let (score, status) = e.plugin.score(state, pod, node);
                if !status.is_success() {
                    return Err(status.with_plugin(e.plugin.name()));
                }
                slot.score = score;
            }
            let status = e.plugin.normalize(state, pod, &mut scores);
            if !status.is_success() {
                return Err(status.with_plugin(e.plugin.name()));
            }
            for (total, s) in totals.iter_mut().zip(&scores) {
                if !(0..=MAX_NODE_SCORE).contains(&s.score) {
                    return Err(Status::error(format!(
                        "plugin {:?} returns an invalid score {:?}, it should in the range of [{}, {}] after normalizing",
                        e.plugin.name(),
                        s.score,
                        0,
                        MAX_NODE_SCORE
                    )));
                }
                total.score += s.score * e.weight;
            }
        }
        Ok(totals)
    }

    pub fn run_reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        for e in self.at(Point::Reserve) {
            let status = e.plugin.reserve(state, pod, node);
            if !status.is_success() {
                return status.with_plugin(e.plugin.name());
            }
        }
        Status::success()
    }

    pub fn run_unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) {
        for e in self.at(Point::Reserve).iter().rev() {
            e.plugin.unreserve(state, pod, node);
        }
    }

    pub fn run_permit(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        for e in self.at(Point::Permit) {
            let (status, _) = e.plugin.permit(state, pod, node);
            match status.code {
                Code::Success => {}
                // Waiting pods are not supported by the built-in plugins; a Wait from a
                // plugin is treated as a rejection, said so.
                Code::Wait => {
                    return Status::unschedulable(format!(
                        "plugin {} asked to wait, which this scheduler does not support",
                        e.plugin.name()
                    ))
                    .with_plugin(e.plugin.name());
                }
                _ => return status.with_plugin(e.plugin.name()),
            }
        }
        Status::success()
    }

    pub async fn run_pre_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        for e in self.at(Point::PreBind) {
            let Some(work) = e.plugin.pre_bind(state, pod, node) else { continue };
            let status = work.await;
            if !status.is_success() && status.code != Code::Skip {
                return status.with_plugin(e.plugin.name());
            }
        }
        Status::success()
    }
}
