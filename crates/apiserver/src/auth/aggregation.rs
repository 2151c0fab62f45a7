//! Cluster role aggregation (upstream's `clusterrole-aggregation` controller): a
//! ClusterRole with an `aggregationRule` holds the rules of every ClusterRole its
//! selectors match, in name order, without duplicates. This is how `admin`, `edit` and
//! `view` get their rules, and how CRD authors extend them.
//!
//! It runs inside the API server (there is no controller manager yet) and follows the
//! clusterroles watch cache; it is level-triggered: every pass recomputes every
//! aggregated role from the current roles.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::ApiServer;
use crate::registry::Place;
use crate::registry::selector::{LabelSelector, selector_string};

pub const PREFIX: &str = "/registry/clusterroles/";

/// Follows the cluster roles until the server stops.
pub async fn run(api: Arc<ApiServer>) {
    crate::cache::follow(api, PREFIX, Duration::from_secs(3600), |api, roles| async move {
        aggregate_all(&api, &roles).await;
        None
    })
    .await
}

/// One pass over the given roles (as stored).
pub async fn aggregate_all(api: &ApiServer, stored: &[std::sync::Arc<keelson_store::KeyValue>]) {
    let mut roles: Vec<Value> =
        stored.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect();
    roles.sort_by(|a, b| name(a).cmp(name(b)));
    for role in roles.iter().filter(|r| r.get("aggregationRule").is_some_and(|a| !a.is_null())) {
        let selectors: Vec<LabelSelector> = role["aggregationRule"]["clusterRoleSelectors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| LabelSelector::parse(&selector_string(s, false)).ok())
            .collect();
        let mut rules: Vec<Value> = Vec::new();
        for other in &roles {
            if name(other) == name(role) || !selectors.iter().any(|s| s.matches(other)) {
                continue;
            }
            for rule in other["rules"].as_array().into_iter().flatten() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
        let current = role["rules"].as_array().cloned().unwrap_or_default();
        if current == rules {
            continue;
        }
        if let Err(e) = write(api, role, rules).await {
            // The next change of any role retries.
            tracing::warn!(role = name(role), error = %e.message, "cannot aggregate a cluster role");
        }
    }
}

fn name(role: &Value) -> &str {
    role["metadata"]["name"].as_str().unwrap_or("")
}

async fn write(api: &ApiServer, role: &Value, rules: Vec<Value>) -> crate::status::ApiResult<()> {
    let info = keelson_api::Registry::builtin()
        .find(super::rbac::GROUP, "v1", "clusterroles")
        .ok_or_else(|| crate::status::ApiError::internal("clusterroles are not registered"))?;
    let place = Place { info, namespace: None, name: name(role) };
    let (existing, revision) = api.objects.get(place).await?;
    let mut updated = existing.clone();
    updated["rules"] = Value::Array(rules);
    super::write_update(api, place, &existing, updated, revision).await?;
    tracing::debug!(role = place.name, "aggregated cluster role");
    Ok(())
}
