//! `NodeAffinity`: `spec.nodeSelector` and required node affinity must hold
//! (and the profile's `addedAffinity`); preferred terms add their weights to the score.

use std::collections::HashSet;
use std::sync::Arc;

use keelson_api::k8s_openapi::api::core::v1::{
    NodeAffinity as Affinity, NodeSelectorTerm, PreferredSchedulingTerm,
};
use serde::Deserialize;

use super::helper;
use crate::cache::Snapshot;
use crate::framework::{
    ClusterEvent, CycleState, EventResource, Hint, MAX_NODE_SCORE, NodeScore, Object, Plugin,
    Point, PreFilterResult, Status, action,
};
use crate::types::{NodeInfo, PodInfo};

/// `NodeAffinityArgs`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Args {
    #[serde(default)]
    pub added_affinity: Option<Affinity>,
}

pub struct NodeAffinity {
    added: Option<Affinity>,
}

impl NodeAffinity {
    pub fn new(args: Args) -> Self {
        NodeAffinity { added: args.added_affinity }
    }

    fn required_terms(pod: &PodInfo) -> Option<&Vec<NodeSelectorTerm>> {
        let affinity = pod.pod.spec.as_ref()?.affinity.as_ref()?.node_affinity.as_ref()?;
        affinity
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .map(|s| &s.node_selector_terms)
    }

    fn preferred_terms(pod: &PodInfo) -> &[PreferredSchedulingTerm] {
        pod.pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref())
            .unwrap_or_default()
    }

    /// Whether the pod's node selector and required affinity hold on `node`
    /// (`GetRequiredNodeAffinity(pod).Match`).
    pub fn pod_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
        let selector = pod.pod.spec.as_ref().and_then(|s| s.node_selector.as_ref());
        let labels = node.labels();
        let by_selector =
            selector.into_iter().flatten().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        by_selector
            && match Self::required_terms(pod) {
                Some(terms) => terms.iter().any(|t| helper::term_matches(t, node)),
                None => true,
            }
    }

    fn enforced(&self, node: &NodeInfo) -> bool {
        let Some(required) = self
            .added
            .as_ref()
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
        else {
            return true;
        };
        helper::selector_matches(required, node)
    }
}

const PRE_FILTER: &str = "PreFilterNodeAffinity";

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::PreFilter, Point::Filter, Point::PreScore, Point::Score]
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent {
            resource: EventResource::Node,
            actions: action::ADD | action::UPDATE_NODE_LABEL,
        }]
    }
    fn hint(
        &self,
        pod: &PodInfo,
        event: &ClusterEvent,
        _: Option<&Object>,
        new: Option<&Object>,
    ) -> Hint {
        match (event.resource, new) {
            (EventResource::Node, Some(Object::Node(node))) => {
                let info = NodeInfo::new(node.clone());
                if self.enforced(&info) && Self::pod_matches(pod, &info) {
                    Hint::Queue
                } else {
                    Hint::Skip
                }
            }
            _ => Hint::Queue,
        }
    }
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let has_selector = pod.pod.spec.as_ref().is_some_and(|s| s.node_selector.is_some());
        let terms = Self::required_terms(pod);
        if terms.is_none() && self.added.is_none() && !has_selector {
            return (None, Status::skip());
        }
        state.write(PRE_FILTER, ());
        let Some(terms) = terms.filter(|t| !t.is_empty()) else { return (None, Status::success()) };
        // Terms that name nodes (`metadata.name In [...]`) narrow the search.
        let mut names: Option<HashSet<String>> = None;
        for term in terms {
            let mut term_names: Option<HashSet<String>> = None;
            for field in term.match_fields.iter().flatten() {
                if field.key == "metadata.name" && field.operator == "In" {
                    let values: HashSet<String> = field.values.iter().flatten().cloned().collect();
                    term_names = Some(match term_names {
                        Some(current) => current.intersection(&values).cloned().collect(),
                        None => values,
                    });
                }
            }
            let Some(term_names) = term_names else { return (None, Status::success()) };
            names.get_or_insert_with(HashSet::new).extend(term_names);
        }
        match names {
            Some(n) if n.is_empty() => (None, Status::unresolvable("pod affinity terms conflict")),
            Some(n) => (Some(PreFilterResult { node_names: Some(n) }), Status::success()),
            None => (None, Status::success()),
        }
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !self.enforced(node) {
            return Status::unresolvable("node(s) didn't match scheduler-enforced node affinity");
        }
        if !Self::pod_matches(pod, node) {
            return Status::unresolvable("node(s) didn't match Pod's node affinity/selector");
        }
        Status::success()
    }
    fn pre_score(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
        _: &Snapshot,
    ) -> Status {
        let added = self
            .added
            .as_ref()
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref());
        if Self::preferred_terms(pod).is_empty() && added.is_none() {
            return Status::skip();
        }
        Status::success()
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let added = self
            .added
            .as_ref()
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref())
            .unwrap_or_default();
        let score = Self::preferred_terms(pod)
            .iter()
            .chain(added)
            .filter(|t| t.weight != 0 && helper::term_matches(&t.preference, node))
            .map(|t| i64::from(t.weight))
            .sum();
        (score, Status::success())
    }
    fn normalize(&self, _: &CycleState, _: &PodInfo, scores: &mut [NodeScore<'_>]) -> Status {
        helper::default_normalize(MAX_NODE_SCORE, false, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::api::core::v1::{
        Affinity as PodAffinitySpec, Node, NodeSelector, NodeSelectorRequirement, Pod, PodSpec,
    };

    use super::*;

    fn node(name: &str, labels: &[(&str, &str)]) -> NodeInfo {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.metadata.labels =
            Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        NodeInfo::new(Arc::new(n))
    }

    fn pod(spec: PodSpec) -> PodInfo {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.metadata.namespace = Some("default".into());
        p.spec = Some(spec);
        PodInfo::new(Arc::new(p))
    }

    fn requirement(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn required(terms: Vec<NodeSelectorTerm>) -> PodSpec {
        PodSpec {
            affinity: Some(PodAffinitySpec {
                node_affinity: Some(Affinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: terms,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn selector_and_required_terms_must_hold() {
        let plugin = NodeAffinity::new(Args::default());
        let state = CycleState::default();
        let by_selector = pod(PodSpec {
            node_selector: Some([("disk".to_owned(), "ssd".to_owned())].into()),
            ..Default::default()
        });
        assert!(plugin.filter(&state, &by_selector, &node("a", &[("disk", "ssd")])).is_success());
        let status = plugin.filter(&state, &by_selector, &node("b", &[("disk", "hdd")]));
        assert_eq!(status.reasons, ["node(s) didn't match Pod's node affinity/selector"]);
        // Terms are ORed; expressions within a term ANDed; Gt compares integers.
        let spec = required(vec![
            NodeSelectorTerm {
                match_expressions: Some(vec![
                    requirement("zone", "In", &["a"]),
                    requirement("cores", "Gt", &["4"]),
                ]),
                match_fields: None,
            },
            NodeSelectorTerm {
                match_expressions: Some(vec![requirement("zone", "In", &["b"])]),
                match_fields: None,
            },
        ]);
        let p = pod(spec);
        assert!(
            plugin.filter(&state, &p, &node("a", &[("zone", "a"), ("cores", "8")])).is_success()
        );
        assert!(
            !plugin.filter(&state, &p, &node("a", &[("zone", "a"), ("cores", "2")])).is_success()
        );
        assert!(plugin.filter(&state, &p, &node("b", &[("zone", "b")])).is_success());
    }

    #[test]
    fn node_name_fields_narrow_the_search() {
        let plugin = NodeAffinity::new(Args::default());
        let p = pod(required(vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![requirement("metadata.name", "In", &["n1", "n2"])]),
        }]));
        let mut state = CycleState::default();
        let (result, status) = plugin.pre_filter(&mut state, &p, &Snapshot::default());
        assert!(status.is_success());
        let names = result.and_then(|r| r.node_names).unwrap_or_default();
        assert_eq!(names, HashSet::from(["n1".to_owned(), "n2".to_owned()]));
        assert!(plugin.filter(&state, &p, &node("n1", &[])).is_success());
        assert!(!plugin.filter(&state, &p, &node("n3", &[])).is_success());
    }
}
