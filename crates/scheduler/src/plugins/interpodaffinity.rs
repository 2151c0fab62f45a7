//! `InterPodAffinity`: required pod affinity and anti-affinity (the incoming pod's, and
//! existing pods' anti-affinity against it) filter; preferred terms of both sides, and
//! existing pods' required affinity weighted by `hardPodAffinityWeight`, score.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;

use crate::cache::Snapshot;
use crate::framework::{
    ClusterEvent, CycleState, EventResource, Handle, MAX_NODE_SCORE, NodeScore, Plugin, Point,
    PreFilterResult, Status, action,
};
use crate::types::{AffinityTerm, NodeInfo, PodInfo, WeightedAffinityTerm};

/// `InterPodAffinityArgs`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Args {
    #[serde(default = "one")]
    pub hard_pod_affinity_weight: i32,
    #[serde(default)]
    pub ignore_preferred_terms_of_existing_pods: bool,
}

fn one() -> i32 {
    1
}

impl Default for Args {
    fn default() -> Self {
        Args { hard_pod_affinity_weight: 1, ignore_preferred_terms_of_existing_pods: false }
    }
}

impl Args {
    pub fn validate(&self, path: &str) -> Vec<String> {
        if !(0..=100).contains(&self.hard_pod_affinity_weight) {
            return vec![format!(
                "{path}.hardPodAffinityWeight: Invalid value: {}: not in valid range [0, 100]",
                self.hard_pod_affinity_weight
            )];
        }
        Vec::new()
    }
}

pub struct InterPodAffinity {
    args: Args,
    handle: Arc<dyn Handle>,
}

/// Matching pods per topology key and value, looked up without building keys.
type Counts = HashMap<String, HashMap<String, i64>>;

fn count_of(counts: &Counts, key: &str, value: &str) -> i64 {
    counts.get(key).and_then(|values| values.get(value)).copied().unwrap_or(0)
}

#[derive(Clone)]
struct FilterState {
    existing_anti: Counts,
    affinity: Counts,
    anti: Counts,
    pod: Arc<PodInfo>,
}

fn bump(counts: &mut Counts, node: &NodeInfo, key: &str, by: i64) {
    let Some(value) = node.label(key) else { return };
    let values = counts.entry(key.to_owned()).or_default();
    let n = values.entry(value.to_owned()).or_default();
    *n += by;
    if *n == 0 {
        values.remove(value);
        if values.is_empty() {
            counts.remove(key);
        }
    }
}

impl InterPodAffinity {
    pub fn new(args: Args, handle: Arc<dyn Handle>) -> Self {
        InterPodAffinity { args, handle }
    }

    /// Whether `term` selects `pod`, reading the namespace's labels only when the term
    /// selects namespaces by label.
    fn selects(&self, term: &AffinityTerm, pod: &PodInfo) -> bool {
        let labels: Option<BTreeMap<String, String>> = match term.namespace_selector {
            Some(_) if !term.namespaces.contains(&pod.namespace) => {
                self.handle.namespace_labels(&pod.namespace)
            }
            _ => None,
        };
        term.matches(pod, labels.as_ref())
    }

    fn all_select(&self, terms: &[AffinityTerm], pod: &PodInfo) -> bool {
        !terms.is_empty() && terms.iter().all(|t| self.selects(t, pod))
    }

    fn update(&self, s: &mut FilterState, other: &PodInfo, node: &NodeInfo, by: i64) {
        for t in &other.required_anti_affinity {
            if self.selects(t, &s.pod) {
                bump(&mut s.existing_anti, node, &t.topology_key, by);
            }
        }
        if self.all_select(&s.pod.required_affinity, other) {
            for t in &s.pod.required_affinity {
                bump(&mut s.affinity, node, &t.topology_key, by);
            }
        }
        for t in &s.pod.required_anti_affinity {
            if self.selects(t, other) {
                bump(&mut s.anti, node, &t.topology_key, by);
            }
        }
    }
}

const FILTER: &str = "PreFilterInterPodAffinity";
const SCORE: &str = "PreScoreInterPodAffinity";

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
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
                actions: action::ADD | action::UPDATE_NODE_LABEL,
            },
        ]
    }
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let pod = Arc::new(pod.updated(pod.pod.clone()));
        let mut s = FilterState {
            existing_anti: Counts::new(),
            affinity: Counts::new(),
            anti: Counts::new(),
            pod,
        };
        for node in &snapshot.with_required_anti_affinity {
            for existing in node.pods.iter().filter(|p| !p.required_anti_affinity.is_empty()) {
                for t in &existing.required_anti_affinity {
                    if self.selects(t, &s.pod) {
                        bump(&mut s.existing_anti, node, &t.topology_key, 1);
                    }
                }
            }
        }
        if !s.pod.required_affinity.is_empty() || !s.pod.required_anti_affinity.is_empty() {
            for node in &snapshot.nodes {
                for existing in &node.pods {
                    if self.all_select(&s.pod.required_affinity, existing) {
                        for t in &s.pod.required_affinity {
                            bump(&mut s.affinity, node, &t.topology_key, 1);
                        }
                    }
                    for t in &s.pod.required_anti_affinity {
                        if self.selects(t, existing) {
                            bump(&mut s.anti, node, &t.topology_key, 1);
                        }
                    }
                }
            }
        }
        if s.existing_anti.is_empty()
            && s.pod.required_affinity.is_empty()
            && s.pod.required_anti_affinity.is_empty()
        {
            return (None, Status::skip());
        }
        state.write(FILTER, s);
        (None, Status::success())
    }
    fn add_pod(
        &self,
        state: &mut CycleState,
        _: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
    ) -> Status {
        if let Some(mut s) = state.read::<FilterState>(FILTER).cloned() {
            self.update(&mut s, other, node, 1);
            state.write(FILTER, s);
        }
        Status::success()
    }
    fn remove_pod(
        &self,
        state: &mut CycleState,
        _: &PodInfo,
        other: &Arc<PodInfo>,
        node: &NodeInfo,
    ) -> Status {
        if let Some(mut s) = state.read::<FilterState>(FILTER).cloned() {
            self.update(&mut s, other, node, -1);
            state.write(FILTER, s);
        }
        Status::success()
    }
    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<FilterState>(FILTER) else {
            return Status::error(
                "error reading \"PreFilterInterPodAffinity\" from cycleState: not found",
            );
        };
        // Affinity: every term's topology on this node must hold a matching pod — or
        // no pod matches anywhere and the pod matches its own terms (the first of a
        // group).
        let mut exist = true;
        for t in &s.pod.required_affinity {
            let Some(value) = node.label(&t.topology_key) else {
                return Status::unresolvable("node(s) didn't match pod affinity rules");
            };
            if count_of(&s.affinity, &t.topology_key, value) <= 0 {
                exist = false;
            }
        }
        let first_of_group =
            s.affinity.is_empty() && self.all_select(&s.pod.required_affinity, &s.pod);
        if !exist && !first_of_group {
            return Status::unresolvable("node(s) didn't match pod affinity rules");
        }
        if !s.anti.is_empty() {
            for t in &s.pod.required_anti_affinity {
                if let Some(value) = node.label(&t.topology_key)
                    && count_of(&s.anti, &t.topology_key, value) > 0
                {
                    return Status::unschedulable("node(s) didn't match pod anti-affinity rules");
                }
            }
        }
        if !s.existing_anti.is_empty() {
            for (k, v) in node.labels().into_iter().flatten() {
                if count_of(&s.existing_anti, k, v) > 0 {
                    return Status::unschedulable(
                        "node(s) didn't satisfy existing pods anti-affinity rules",
                    );
                }
            }
        }
        Status::success()
    }
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let has_own = !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if self.args.ignore_preferred_terms_of_existing_pods && !has_own {
            return Status::skip();
        }
        let nodes = if has_own { &snapshot.nodes } else { &snapshot.with_affinity };
        let mut scores: Counts = HashMap::new();
        let mut any = false;
        let mut add = |node: &NodeInfo, key: &str, by: i64| {
            if let Some(v) = node.label(key) {
                *scores.entry(key.to_owned()).or_default().entry(v.to_owned()).or_default() += by;
                any = true;
            }
        };
        let weighted = |terms: &[WeightedAffinityTerm],
                        target: &PodInfo,
                        node: &NodeInfo,
                        sign: i64,
                        add: &mut dyn FnMut(&NodeInfo, &str, i64)| {
            for t in terms {
                if self.selects(&t.term, target) {
                    add(node, &t.term.topology_key, sign * i64::from(t.weight));
                }
            }
        };
        for node in nodes {
            if node.labels().is_none_or(|l| l.is_empty()) {
                continue;
            }
            for existing in node.pods.iter().filter(|p| has_own || p.has_affinity()) {
                weighted(&pod.preferred_affinity, existing, node, 1, &mut add);
                weighted(&pod.preferred_anti_affinity, existing, node, -1, &mut add);
                if self.args.hard_pod_affinity_weight > 0 {
                    for t in &existing.required_affinity {
                        if self.selects(t, pod) {
                            add(
                                node,
                                &t.topology_key,
                                i64::from(self.args.hard_pod_affinity_weight),
                            );
                        }
                    }
                }
                if !self.args.ignore_preferred_terms_of_existing_pods {
                    weighted(&existing.preferred_affinity, pod, node, 1, &mut add);
                    weighted(&existing.preferred_anti_affinity, pod, node, -1, &mut add);
                }
            }
        }
        if !any {
            return Status::skip();
        }
        state.write(SCORE, scores);
        Status::success()
    }
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(scores) = state.read::<Counts>(SCORE) else {
            return (0, Status::success());
        };
        let total = node.labels().into_iter().flatten().map(|(k, v)| count_of(scores, k, v)).sum();
        (total, Status::success())
    }
    fn normalize(&self, state: &CycleState, _: &PodInfo, scores: &mut [NodeScore<'_>]) -> Status {
        if state.read::<Counts>(SCORE).is_none_or(|s| s.is_empty()) {
            return Status::success();
        }
        let min = scores.iter().map(|s| s.score).min().unwrap_or(0);
        let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
        let diff = max - min;
        for s in scores.iter_mut() {
            s.score = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((s.score - min) as f64 / diff as f64)) as i64
            } else {
                0
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

    fn filter(plugin: &InterPodAffinity, p: &PodInfo, snapshot: &Snapshot) -> Vec<Vec<String>> {
        let mut state = CycleState::default();
        let (_, status) = plugin.pre_filter(&mut state, p, snapshot);
        if status.code == crate::framework::Code::Skip {
            return snapshot.nodes.iter().map(|_| Vec::new()).collect();
        }
        snapshot.nodes.iter().map(|n| plugin.filter(&state, p, n).reasons).collect()
    }

    fn term(kind: &str, key: &str) -> serde_json::Value {
        json!({ "affinity": { kind: { "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": { "matchLabels": { "app": "db" } }, "topologyKey": key,
        }]}}})
    }

    #[test]
    fn required_affinity_and_anti_affinity_as_upstream() {
        let plugin = InterPodAffinity::new(Args::default(), Arc::new(Fixed::default()));
        let mut a = node("a", json!({ "zone": "z1", "host": "a" }));
        let b = node("b", json!({ "zone": "z2", "host": "b" }));
        a.add_pod(pod("db", json!({ "app": "db" }), json!({})));
        let snapshot = Snapshot::from_nodes(vec![a, b]);
        // Affinity to db's zone: only a.
        let near = pod("near", json!({}), term("podAffinity", "zone"));
        assert_eq!(
            filter(&plugin, &near, &snapshot),
            [vec![], vec!["node(s) didn't match pod affinity rules".to_owned()]]
        );
        // Anti-affinity to db's host: only b.
        let far = pod("far", json!({}), term("podAntiAffinity", "host"));
        assert_eq!(
            filter(&plugin, &far, &snapshot),
            [vec!["node(s) didn't match pod anti-affinity rules".to_owned()], vec![]]
        );
        // The first pod of a group that selects itself may go anywhere.
        let empty = Snapshot::from_nodes(vec![node("a", json!({ "zone": "z1" }))]);
        let first = pod("first", json!({ "app": "db" }), term("podAffinity", "zone"));
        assert_eq!(filter(&plugin, &first, &empty), [Vec::<String>::new()]);
    }

    #[test]
    fn existing_pods_anti_affinity_keeps_the_incoming_pod_away() {
        let plugin = InterPodAffinity::new(Args::default(), Arc::new(Fixed::default()));
        let mut a = node("a", json!({ "host": "a" }));
        a.add_pod(pod("loner", json!({}), term("podAntiAffinity", "host")));
        let b = node("b", json!({ "host": "b" }));
        let snapshot = Snapshot::from_nodes(vec![a, b]);
        let db = pod("db", json!({ "app": "db" }), json!({}));
        assert_eq!(
            filter(&plugin, &db, &snapshot),
            [vec!["node(s) didn't satisfy existing pods anti-affinity rules".to_owned()], vec![]]
        );
        // A pod the existing term does not select is not kept away.
        let web = pod("web", json!({ "app": "web" }), json!({}));
        assert_eq!(filter(&plugin, &web, &snapshot), [Vec::<String>::new(), vec![]]);
    }
}
