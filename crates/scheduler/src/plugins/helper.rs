//! What several plugins share (upstream's `plugins/helper` and the v1 helpers):
//! tolerations, node selector terms, score normalization, zones.

use std::collections::BTreeMap;

use keelson_api::k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration,
};

use crate::framework::{MAX_NODE_SCORE, NodeScore};
use crate::types::NodeInfo;

pub use keelson_core::taints::tolerates;

/// The first of `taints` (with an effect `filter` accepts) no toleration tolerates
/// (`FindMatchingUntoleratedTaint`).
pub fn untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints.iter().filter(|t| filter(t)).find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// Whether a node selector requirement holds for the labels (`In`, `NotIn`, `Exists`,
/// `DoesNotExist`, `Gt`, `Lt`).
fn requirement_matches(
    r: &NodeSelectorRequirement,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let value = labels.and_then(|l| l.get(&r.key));
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value, values) else { return false };
            let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else { return false };
            if r.operator == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

/// Whether one node selector term matches the node: every expression on its labels and
/// every field (only `metadata.name`) holds; a term with neither matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.labels();
    let name: BTreeMap<String, String> = [("metadata.name".to_owned(), node.name.clone())].into();
    expressions.iter().all(|r| requirement_matches(r, labels))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&name)))
}

/// Whether any term of the selector matches (terms are ORed).
pub fn selector_matches(selector: &NodeSelector, node: &NodeInfo) -> bool {
    selector.node_selector_terms.iter().any(|t| term_matches(t, node))
}

/// Scales scores to `0..=MAX_NODE_SCORE` by the highest (upstream's
/// `DefaultNormalizeScore`); `reverse` makes the highest the lowest.
pub fn default_normalize(max_priority: i64, reverse: bool, scores: &mut [NodeScore<'_>]) {
    let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
    if max == 0 {
        if reverse {
            for s in scores {
                s.score = max_priority;
            }
        }
        return;
    }
    for s in scores {
        s.score = max_priority * s.score / max;
        if reverse {
            s.score = max_priority - s.score;
        }
    }
}

pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const REGION: &str = "topology.kubernetes.io/region";
const BETA_ZONE: &str = "failure-domain.beta.kubernetes.io/zone";
const BETA_REGION: &str = "failure-domain.beta.kubernetes.io/region";

/// A node's zone key (`GetZoneKey`): region and zone, or empty without either.
pub fn zone_key(node: &NodeInfo) -> String {
    let zone = node.label(ZONE).or_else(|| node.label(BETA_ZONE)).unwrap_or_default();
    let region = node.label(REGION).or_else(|| node.label(BETA_REGION)).unwrap_or_default();
    if zone.is_empty() && region.is_empty() {
        return String::new();
    }
    format!("{region}:\x00:{zone}")
}

/// Upstream's `MaxNodeScore`, for plugins that normalize to it.
pub const MAX: i64 = MAX_NODE_SCORE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing_scales_to_the_highest() {
        let mut scores: Vec<NodeScore> = [("0", 0), ("1", 5), ("2", 10)]
            .into_iter()
            .map(|(name, score)| NodeScore { name, score })
            .collect();
        default_normalize(100, false, &mut scores);
        assert_eq!(scores.iter().map(|s| s.score).collect::<Vec<_>>(), [0, 50, 100]);
        default_normalize(100, true, &mut scores);
        assert_eq!(scores.iter().map(|s| s.score).collect::<Vec<_>>(), [100, 50, 0]);
        let mut zeros = vec![NodeScore { name: "a", score: 0 }];
        default_normalize(100, true, &mut zeros);
        assert_eq!(zeros[0].score, 100);
    }
}
