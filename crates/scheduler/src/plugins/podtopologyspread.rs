//! `PodTopologySpread`: `spec.topologySpreadConstraints` — `DoNotSchedule` ones filter
//! (the skew a placement would make must stay within `maxSkew`, counting `minDomains`),
//! `ScheduleAnyway` ones score; a pod without constraints gets the cluster defaults
//! (hostname skew 3, zone skew 5, both soft) over the pods its Services and controllers
//! select.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use keelson_api::k8s_openapi::api::core::v1::TopologySpreadConstraint;
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;

use super::helper;
use super::node_affinity::NodeAffinity;
use crate::cache::Snapshot;
use crate::framework::{
    ClusterEvent, CycleState, EventResource, Handle, MAX_NODE_SCORE, NodeScore, Plugin, Point,
    PreFilterResult, Status, action,
};
use crate::types::{NodeInfo, PodInfo};

const HOSTNAME: &str = "kubernetes.io/hostname";
const NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";

/// `PodTopologySpreadArgs`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Args {
    #[serde(default)]
    pub default_constraints: Vec<TopologySpreadConstraint>,
    /// `System` (the default) or `List`.
    #[serde(default)]
    pub defaulting_type: Option<String>,
}

impl Args {
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        let kind = self.defaulting_type.as_deref().unwrap_or("System");
        match kind {
            "System" if !self.default_constraints.is_empty() => errors.push(format!(
                "{path}.defaultingType: Invalid value: \"System\": when .defaultConstraints are not empty"
            )),
            "System" | "List" => {}
            other => errors.push(format!(
                "{path}.defaultingType: Unsupported value: \"{other}\": supported values: \"List\", \"System\""
            )),
        }
        for (i, c) in self.default_constraints.iter().enumerate() {
            let at = format!("{path}.defaultConstraints[{i}]");
            if c.max_skew <= 0 {
                errors.push(format!(
                    "{at}.maxSkew: Invalid value: {}: not in valid range (0, inf)",
                    c.max_skew
                ));
            }
            if c.topology_key.is_empty() {
                errors.push(format!("{at}.topologyKey: Required value: can not be empty"));
            }
            if !matches!(c.when_unsatisfiable.as_str(), "DoNotSchedule" | "ScheduleAnyway") {
                errors.push(format!(
                    "{at}.whenUnsatisfiable: Unsupported value: \"{}\": supported values: \"DoNotSchedule\", \"ScheduleAnyway\"",
                    c.when_unsatisfiable
                ));
            }
            if c.label_selector.is_some() {
                errors.push(format!("{at}.labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod"));
            }
        }
        errors
    }
}

fn system_defaults() -> Vec<TopologySpreadConstraint> {
    let soft = |key: &str, skew: i32| TopologySpreadConstraint {
        topology_key: key.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        max_skew: skew,
        ..Default::default()
    };
    vec![soft(HOSTNAME, 3), soft(helper::ZONE, 5)]
}

#[derive(Clone, Debug)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: LabelSelector,
    min_domains: usize,
    honor_affinity: bool,
    honor_taints: bool,
}

impl Constraint {
    fn selects(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        keelson_core::labels::matches(Some(&self.selector), labels)
    }

    fn includes(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        if self.honor_affinity && !NodeAffinity::pod_matches(pod, node) {
            return false;
        }
        if self.honor_taints
            && helper::untolerated(node.taints(), pod.tolerations(), |t| {
                t.effect == "NoSchedule" || t.effect == "NoExecute"
            })
            .is_some()
        {
            return false;
        }
        true
    }
}

fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// Pods on `node` in `namespace`, not being deleted, that `constraint` selects.
fn count(node: &NodeInfo, constraint: &Constraint, namespace: &str) -> i64 {
    if is_empty(&constraint.selector) {
        return 0;
    }
    node.pods
        .iter()
        .filter(|p| p.namespace == namespace && p.pod.metadata.deletion_timestamp.is_none())
        .filter(|p| constraint.selects(p.labels()))
        .count() as i64
}

fn has_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    constraints.iter().all(|c| node.label(&c.topology_key).is_some())
}

pub struct PodTopologySpread {
    defaults: Vec<TopologySpreadConstraint>,
    system_defaulted: bool,
    handle: Arc<dyn Handle>,
}

#[derive(Clone)]
struct FilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: matching pods per topology value.
    counts: Vec<HashMap<String, i64>>,
}

impl FilterState {
    fn min_match(&self, i: usize) -> i64 {
        if self.counts[i].len() < self.constraints[i].min_domains {
            return 0;
        }
        self.counts[i].values().copied().min().unwrap_or(0)
    }

    fn update(&mut self, other: &PodInfo, pod: &PodInfo, node: &NodeInfo, delta: i64) {
        if other.namespace != pod.namespace || !has_keys(node, &self.constraints) {
            return;
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if !c.selects(other.labels()) || !c.includes(pod, node) {
                continue;
            }
            let value = node.label(&c.topology_key).unwrap_or_default().to_owned();
            *self.counts[i].entry(value).or_default() += delta;
        }
    }
}

#[derive(Clone)]
struct ScoreState {
    constraints: Vec<Constraint>,
    ignored: HashSet<String>,
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
}

const FILTER: &str = "PreFilterPodTopologySpread";
const SCORE: &str = "PreScorePodTopologySpread";

impl PodTopologySpread {
    pub fn new(args: Args, handle: Arc<dyn Handle>) -> Self {
        let system = args.defaulting_type.as_deref().unwrap_or("System") == "System";
        PodTopologySpread {
            defaults: if system { system_defaults() } else { args.default_constraints },
            system_defaulted: system,
            handle,
        }
    }

    fn constraints_of(
        &self,
        list: &[TopologySpreadConstraint],
        pod: &PodInfo,
        when: &str,
        selector: Option<&LabelSelector>,
    ) -> Vec<Constraint> {
        list.iter()
            .filter(|c| c.when_unsatisfiable == when)
            .map(|c| {
                let mut selector =
                    selector.cloned().or_else(|| c.label_selector.clone()).unwrap_or_default();
                // matchLabelKeys: the pod's values of those keys join the selector.
                let mut extra = BTreeMap::new();
                for key in c.match_label_keys.iter().flatten() {
                    if let Some(v) = pod.labels().and_then(|l| l.get(key)) {
                        extra.insert(key.clone(), v.clone());
                    }
                }
                if !extra.is_empty() {
                    selector.match_labels.get_or_insert_with(BTreeMap::new).extend(extra);
                }
                Constraint {
                    max_skew: i64::from(c.max_skew),
                    topology_key: c.topology_key.clone(),
                    selector,
                    min_domains: c.min_domains.map(|m| m.max(1) as usize).unwrap_or(1),
                    honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                    honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                }
            })
            .collect()
    }

    fn constraints(&self, pod: &PodInfo, when: &str) -> Vec<Constraint> {
        let own = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or_default();
        if !own.is_empty() {
            return self.constraints_of(own, pod, when, None);
        }
        if self.defaults.iter().all(|c| c.when_unsatisfiable != when) {
            return Vec::new();
        }
        match self.handle.lister().default_selector(&pod.pod) {
            Some(selector) if !is_empty(&selector) => {
                self.constraints_of(&self.defaults, pod, when, Some(&selector))
            }
            _ => Vec::new(),
        }
    }
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::PreFilter, Point::Filter, Point::PreScore, Point::Score]
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent {
                resource: EventResource::AssignedPod,
                actions: action::ADD | action::UPDATE_POD_LABEL | action::DELETE,
            },
            ClusterEvent {
                resource: EventResource::UnscheduledPod,
                actions: action::UPDATE_POD_LABEL,
            },
            ClusterEvent {
                resource: EventResource::Node,
                actions: action::ADD
                    | action::DELETE
                    | action::UPDATE_NODE_LABEL
                    | action::UPDATE_NODE_TAINT,
            },
        ]
    }
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let constraints = self.constraints(pod, "DoNotSchedule");
        if constraints.is_empty() {
            return (None, Status::skip());
        }
        let mut counts = vec![HashMap::new(); constraints.len()];
        for node in &snapshot.nodes {
            if !has_keys(node, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !c.includes(pod, node) {
                    continue;
                }
                let value = node.label(&c.topology_key).unwrap_or_default().to_owned();
                *counts[i].entry(value).or_default() += count(node, c, &pod.namespace);
            }
        }
        state.write(FILTER, FilterState { constraints, counts });
        (None, Status::success())
    }
    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
    ) -> Status {
        if let Some(s) = state.read_mut::<FilterState>(FILTER) {
            s.update(other, pod, node, 1);
        }
        Status::success()
    }
    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
    ) -> Status {
        if let Some(s) = state.read_mut::<FilterState>(FILTER) {
            s.update(other, pod, node, -1);
        }
        Status::success()
    }
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<FilterState>(FILTER) else {
            return Status::error(
                "reading \"PreFilterPodTopologySpread\" from cycleState: not found",
            );
        };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.label(&c.topology_key) else {
                return Status::unresolvable(format!("{NOT_MATCH} (missing required label)"));
            };
            let own = i64::from(c.selects(pod.labels()));
            let skew = s.counts[i].get(value).copied().unwrap_or(0) + own - s.min_match(i);
            if skew > c.max_skew {
                return Status::unschedulable(NOT_MATCH);
            }
        }
        Status::success()
    }
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        if snapshot.nodes.is_empty() {
            return Status::skip();
        }
        let constraints = self.constraints(pod, "ScheduleAnyway");
        if constraints.is_empty() {
            return Status::skip();
        }
        let own = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        let require_all = own || !self.system_defaulted;
        let mut ignored = HashSet::new();
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for node in nodes {
            if require_all && !has_keys(node, &constraints) {
                ignored.insert(node.name.clone());
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == HOSTNAME {
                    continue;
                }
                counts[i]
                    .entry(node.label(&c.topology_key).unwrap_or_default().to_owned())
                    .or_insert(0);
            }
        }
        let weights = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == HOSTNAME {
                    nodes.len() - ignored.len()
                } else {
                    counts[i].len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        for node in &snapshot.nodes {
            if require_all && !has_keys(node, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !c.includes(pod, node) {
                    continue;
                }
                let value = node.label(&c.topology_key).unwrap_or_default();
                if let Some(total) = counts[i].get_mut(value) {
                    *total += count(node, c, &pod.namespace);
                }
            }
        }
        state.write(SCORE, ScoreState { constraints, ignored, counts, weights });
        Status::success()
    }
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(s) = state.read::<ScoreState>(SCORE) else {
            return (
                0,
                Status::error(
                    "error reading \"PreScorePodTopologySpread\" from cycleState: not found",
                ),
            );
        };
        if s.ignored.contains(&node.name) {
            return (0, Status::success());
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.label(&c.topology_key) else { continue };
            let n = if c.topology_key == HOSTNAME {
                count(node, c, &pod.namespace)
            } else {
                s.counts[i].get(value).copied().unwrap_or(0)
            };
            score += n as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        (score.round() as i64, Status::success())
    }
    fn normalize(&self, state: &CycleState, _: &PodInfo, scores: &mut [NodeScore<'_>]) -> Status {
        let Some(s) = state.read::<ScoreState>(SCORE) else { return Status::success() };
        let valid = |n: &NodeScore<'_>| !s.ignored.contains(n.name);
        let min = scores.iter().filter(|n| valid(n)).map(|n| n.score).min().unwrap_or(0);
        let max = scores.iter().filter(|n| valid(n)).map(|n| n.score).max().unwrap_or(0);
        for n in scores.iter_mut() {
            n.score = if !valid(n) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - n.score) / max
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{Fixed, node, pod};

    fn filter_all(
        plugin: &PodTopologySpread,
        p: &PodInfo,
        snapshot: &Snapshot,
    ) -> Vec<(String, bool)> {
        let mut state = CycleState::default();
        let (_, status) = plugin.pre_filter(&mut state, p, snapshot);
        assert!(status.is_success(), "{status:?}");
        snapshot
            .nodes
            .iter()
            .map(|n| (n.name.clone(), plugin.filter(&state, p, n).is_success()))
            .collect()
    }

    fn spread(max_skew: i32, min_domains: Option<i32>) -> serde_json::Value {
        json!({ "topologySpreadConstraints": [{
            "maxSkew": max_skew,
            "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": { "matchLabels": { "app": "a" } },
            "minDomains": min_domains,
        }]})
    }

    #[test]
    fn the_skew_a_placement_would_make_filters_nodes() {
        let plugin = PodTopologySpread::new(Args::default(), Arc::new(Fixed::default()));
        let mut a = node("a", json!({ "zone": "z1" }));
        let b = node("b", json!({ "zone": "z2" }));
        let bare = node("c", json!({}));
        // Two matching pods in z1, none in z2: with maxSkew 1 only z2 fits.
        for i in 0..2 {
            a.add_pod(pod(&format!("p{i}"), json!({ "app": "a" }), json!({})));
        }
        // A pod that does not match counts for nothing.
        a.add_pod(pod("other", json!({ "app": "b" }), json!({})));
        let snapshot = Snapshot::from_nodes(vec![a, b, bare]);
        let incoming = pod("new", json!({ "app": "a" }), spread(1, None));
        assert_eq!(
            filter_all(&plugin, &incoming, &snapshot),
            [("a".into(), false), ("b".into(), true), ("c".into(), false)]
        );
        // The node without the key says why.
        let mut state = CycleState::default();
        plugin.pre_filter(&mut state, &incoming, &snapshot);
        let missing = plugin.filter(&state, &incoming, &snapshot.nodes[2]);
        assert_eq!(
            missing.reasons,
            ["node(s) didn't match pod topology spread constraints (missing required label)"]
        );
        // maxSkew 3 lets z1 take another.
        let loose = pod("new", json!({ "app": "a" }), spread(3, None));
        assert_eq!(filter_all(&plugin, &loose, &snapshot)[0], ("a".into(), true));
        // minDomains 3 with two domains: the minimum counts as 0, so z1 (2+1) is out
        // with maxSkew 2, z2 (0+1) in.
        let few = pod("new", json!({ "app": "a" }), spread(2, Some(3)));
        assert_eq!(
            filter_all(&plugin, &few, &snapshot)[..2],
            [("a".into(), false), ("b".into(), true)]
        );
    }

    #[test]
    fn default_constraints_score_by_the_pods_own_selectors() {
        let fixed = Fixed {
            default_selector: Some(LabelSelector {
                match_labels: Some([("app".to_owned(), "a".to_owned())].into()),
                match_expressions: None,
            }),
            ..Fixed::default()
        };
        let plugin = PodTopologySpread::new(Args::default(), Arc::new(fixed));
        let labels = |h: &str, z: &str| json!({ "kubernetes.io/hostname": h, "topology.kubernetes.io/zone": z });
        let mut a = node("a", labels("a", "z1"));
        a.add_pod(pod("p0", json!({ "app": "a" }), json!({})));
        let b = node("b", labels("b", "z2"));
        let snapshot = Snapshot::from_nodes(vec![a, b]);
        let incoming = pod("new", json!({ "app": "a" }), json!({}));
        let mut state = CycleState::default();
        // No hard constraint by default.
        assert_eq!(
            plugin.pre_filter(&mut state, &incoming, &snapshot).1.code,
            crate::framework::Code::Skip
        );
        assert!(plugin.pre_score(&mut state, &incoming, &snapshot.nodes, &snapshot).is_success());
        let mut scores: Vec<NodeScore> = snapshot
            .nodes
            .iter()
            .map(|n| NodeScore { name: &n.name, score: plugin.score(&state, &incoming, n).0 })
            .collect();
        plugin.normalize(&state, &incoming, &mut scores);
        // The empty node scores best.
        assert!(scores[1].score > scores[0].score, "{scores:?}");
        assert_eq!(scores[1].score, MAX_NODE_SCORE);
    }
}
