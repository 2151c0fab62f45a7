//! Label selectors (`metav1.LabelSelector`) as upstream's
//! `metav1.LabelSelectorAsSelector` evaluates them: `matchLabels` and `matchExpressions`
//! (`In`, `NotIn`, `Exists`, `DoesNotExist`) all must hold. An empty selector matches
//! everything; an absent one (`None`) matches nothing, as upstream's callers treat a nil
//! selector. An unknown operator, or `In`/`NotIn` without values, matches nothing
//! (upstream refuses such a selector; refusing nothing here is never wider).

use std::collections::BTreeMap;

use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` satisfy `selector`.
pub fn matches(
    selector: Option<&LabelSelector>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let Some(selector) = selector else { return false };
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let by_label = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    by_label
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => !values.is_empty() && value.is_some_and(|v| values.contains(v)),
                "NotIn" => !values.is_empty() && value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect())
                .filter(|v: &Vec<String>| !v.is_empty()),
        }
    }

    #[test]
    fn match_labels_and_expressions_must_all_hold() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")]).into_iter().collect()),
            match_expressions: Some(vec![
                expr("tier", "In", &["front", "edge"]),
                expr("canary", "DoesNotExist", &[]),
            ]),
        };
        let s = Some(&selector);
        assert!(matches(s, Some(&labels(&[("app", "web"), ("tier", "edge")]))));
        assert!(!matches(s, Some(&labels(&[("app", "web"), ("tier", "back")]))));
        assert!(!matches(s, Some(&labels(&[("app", "web"), ("tier", "front"), ("canary", "")]))));
        assert!(!matches(s, Some(&labels(&[("tier", "front")]))));
        assert!(!matches(s, None));
    }

    #[test]
    fn not_in_and_exists_follow_upstream() {
        let selector = LabelSelector {
            match_expressions: Some(vec![
                expr("env", "NotIn", &["prod"]),
                expr("team", "Exists", &[]),
            ]),
            ..LabelSelector::default()
        };
        let s = Some(&selector);
        assert!(matches(s, Some(&labels(&[("team", "a")]))));
        assert!(matches(s, Some(&labels(&[("team", "a"), ("env", "dev")]))));
        assert!(!matches(s, Some(&labels(&[("team", "a"), ("env", "prod")]))));
        assert!(!matches(s, Some(&labels(&[("env", "dev")]))));
    }

    #[test]
    fn empty_matches_all_absent_and_malformed_match_nothing() {
        assert!(matches(Some(&LabelSelector::default()), None));
        assert!(!matches(None, Some(&labels(&[("a", "b")]))));
        let bad = LabelSelector {
            match_expressions: Some(vec![expr("a", "Near", &["b"])]),
            ..Default::default()
        };
        assert!(!matches(Some(&bad), Some(&labels(&[("a", "b")]))));
        let no_values = LabelSelector {
            match_expressions: Some(vec![expr("a", "In", &[])]),
            ..Default::default()
        };
        assert!(!matches(Some(&no_values), Some(&labels(&[("a", "b")]))));
    }
}
