//! RBAC escalation prevention (upstream's `pkg/registry/rbac/*/policybased`): a user may
//! write a role only with rules they already hold, and bind a role only if they hold its
//! rules — unless RBAC grants them `escalate` on the role or `bind` on the bound role.
//! Members of `system:masters` may do anything.
//!
//! Must never let a write through because a role could not be resolved.

use keelson_api::ResourceInfo;
use serde_json::Value;

use super::rbac::{self, GROUP, Rule};
use super::{Attributes, PRIVILEGED_GROUP};
use crate::ApiServer;
use crate::request::User;
use crate::status::{ApiError, ApiResult};

/// Checks a create (`old` is `None`) or update of an RBAC object by `user`.
pub async fn check(
    api: &ApiServer,
    user: &User,
    info: &ResourceInfo,
    old: Option<&Value>,
    new: &Value,
) -> ApiResult<()> {
    if info.group != GROUP || user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
        return Ok(());
    }
    if let Some(old) = old
        && !changes_access(old, new)
    {
        return Ok(());
    }
    let namespace = new["metadata"]["namespace"].as_str().unwrap_or("");
    let name = new["metadata"]["name"].as_str().unwrap_or("");
    let allowed = |verb: &str, resource: &str, name: &str| {
        let attributes = Attributes::resource(user, verb, GROUP, resource, namespace, name);
        async move { api.authorizer.decide(&attributes).await.allowed() }
    };
    let index = api
        .authorizer
        .rbac_index()
        .await
        .ok_or_else(|| ApiError::unavailable("the roles and bindings cannot be read"))?;
    let wanted: Vec<Rule> = match info.plural {
        "roles" | "clusterroles" => {
            if allowed("escalate", info.plural, name).await {
                return Ok(());
            }
            let aggregates = !new["aggregationRule"].is_null()
                && old.is_none_or(|old| old["aggregationRule"].is_null());
            if aggregates {
                // Aggregating can gather any rule: it takes cluster-admin's power.
                vec![
                    Rule {
                        verbs: vec!["*".into()],
                        api_groups: vec!["*".into()],
                        resources: vec!["*".into()],
                        ..Default::default()
                    },
                    Rule {
                        verbs: vec!["*".into()],
                        non_resource_urls: vec!["*".into()],
                        ..Default::default()
                    },
                ]
            } else {
                rbac::rules_of(new)
            }
        }
        "rolebindings" | "clusterrolebindings" => {
            let binding = rbac::Binding::from_object(new);
            let role_resource =
                if binding.role_ref.kind == "Role" { "roles" } else { "clusterroles" };
            if allowed("bind", role_resource, &binding.role_ref.name).await {
                return Ok(());
            }
            match index.role_rules(&binding.role_ref, namespace) {
                Ok(rules) => rules.to_vec(),
                Err(_) => {
                    return Err(ApiError::not_found(GROUP, role_resource, &binding.role_ref.name));
                }
            }
        }
        _ => return Ok(()),
    };
    let (held, errors) = index.rules_for(user, namespace);
    let missing = rbac::uncovered(&held, &wanted);
    if missing.is_empty() {
        return Ok(());
    }
    let mut described: Vec<String> = missing.iter().map(Rule::compact).collect();
    described.dedup();
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let mut why = format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        groups.join(" "),
        described.join("\n")
    );
    if !errors.is_empty() {
        why = format!("{why}; resolution errors: [{}]", errors.join(", "));
    }
    Err(ApiError::forbidden_resource(GROUP, info.plural, name, &why))
}

/// Whether an update changes more than the fields garbage collection writes (upstream's
/// `IsOnlyMutatingGCFields`), which anyone allowed to update may change.
fn changes_access(old: &Value, new: &Value) -> bool {
    let strip = |object: &Value| {
        let mut object = object.clone();
        if let Some(meta) = object["metadata"].as_object_mut() {
            for field in ["ownerReferences", "finalizers", "resourceVersion", "managedFields"] {
                meta.remove(field);
            }
        }
        object
    };
    strip(old) != strip(new)
}
