//! `clusterrole-aggregation-controller`: a ClusterRole with an `aggregationRule` holds
//! the rules of every other ClusterRole its selectors match, in name order, without
//! duplicates (how `admin`, `edit` and `view` get their rules, and how CRD authors
//! extend them). Any cluster role's change requeues every aggregated role.

use std::sync::Arc;

use keelson_api::k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::informer::Informer;
use kube::api::{Api, PostParams};

pub const NAME: &str = "clusterrole-aggregation-controller";

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let roles = context.informers.get::<ClusterRole>();
    let queue = context.queue::<String>();
    {
        let queue = queue.clone();
        let watched = roles.clone();
        roles.on_change(move |_| {
            for role in watched.list() {
                if role.aggregation_rule.is_some() {
                    queue.add(role.metadata.name.clone().unwrap_or_default());
                }
            }
        });
    }
    roles.wait_synced().await;
    let api: Api<ClusterRole> = Api::all(context.client.clone());
    run_workers(&context, queue, 1, move |name: String| {
        let roles = roles.clone();
        let api = api.clone();
        async move { reconcile(&roles, &api, &name).await }
    })
    .await;
    Ok(())
}

/// The rules `role` should hold, from the roles in `all`.
pub fn aggregate(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Option<Vec<PolicyRule>> {
    let selectors =
        role.aggregation_rule.as_ref()?.cluster_role_selectors.clone().unwrap_or_default();
    let mut others: Vec<&Arc<ClusterRole>> = all
        .iter()
        .filter(|other| other.metadata.name != role.metadata.name)
        .filter(|other| {
            selectors
                .iter()
                .any(|s| keelson_core::labels::matches(Some(s), other.metadata.labels.as_ref()))
        })
        .collect();
    others.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for rule in others.iter().flat_map(|o| o.rules.iter().flatten()) {
        if !rules.contains(rule) {
            rules.push(rule.clone());
        }
    }
    Some(rules)
}

async fn reconcile(
    roles: &Informer<ClusterRole>,
    api: &Api<ClusterRole>,
    name: &str,
) -> Result<Action, kube::Error> {
    let Some(role) = roles.get(name) else { return Ok(Action::AwaitChange) };
    let Some(rules) = aggregate(&role, &roles.list()) else { return Ok(Action::AwaitChange) };
    if role.rules.as_deref().unwrap_or_default() == rules.as_slice() {
        return Ok(Action::AwaitChange);
    }
    let mut updated = (*role).clone();
    updated.rules = Some(rules);
    // Conditional on the cached revision: a stale cache costs a retry, never a lost write.
    api.replace(name, &PostParams::default(), &updated).await?;
    tracing::debug!(role = name, "aggregated cluster role");
    Ok(Action::AwaitChange)
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::api::rbac::v1::AggregationRule;
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    use super::*;

    fn role(name: &str, label: Option<&str>, verbs: &[&str]) -> Arc<ClusterRole> {
        Arc::new(ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: label.map(|l| [(l.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            rules: Some(
                verbs
                    .iter()
                    .map(|v| PolicyRule {
                        verbs: vec![v.to_string()],
                        resources: Some(vec!["pods".into()]),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        })
    }

    #[test]
    fn rules_of_matching_roles_in_name_order_without_duplicates() {
        let mut aggregated = (*role("view", None, &[])).clone();
        aggregated.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some([("aggregate-to-view".to_string(), "true".to_string())].into()),
                ..Default::default()
            }]),
        });
        let all = vec![
            role("z-extra", Some("aggregate-to-view"), &["watch", "get"]),
            role("a-base", Some("aggregate-to-view"), &["get", "list"]),
            role("unrelated", Some("other"), &["delete"]),
            Arc::new(aggregated.clone()),
        ];
        let rules = aggregate(&aggregated, &all).unwrap();
        let verbs: Vec<&str> = rules.iter().map(|r| r.verbs[0].as_str()).collect();
        assert_eq!(verbs, ["get", "list", "watch"]);
        assert_eq!(aggregate(&role("plain", None, &["get"]), &all), None);
    }
}
