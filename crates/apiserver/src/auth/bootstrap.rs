//! The RBAC bootstrap policy (`bootstrap-policy.yaml`: Kubernetes 1.34's default roles
//! and bindings), reconciled at every start as upstream's `rbac/bootstrap-roles`
//! post-start hook does: missing objects are created; an existing one whose
//! `rbac.authorization.kubernetes.io/autoupdate` annotation is not `"false"` gains the
//! rules, subjects, labels and annotations it lacks (nothing is taken away); a binding
//! whose role reference changed is recreated.
//!
//! Also reconciled: Keelson's own additions (`keelson-policy.yaml`), the bindings kubeadm
//! creates so that nodes join with bootstrap tokens and renew their client certificates.
//!
//! Must never remove a permission or subject an administrator added.

use serde_json::{Value, json};

use super::rbac::{self, Rule};
use crate::meta::metadata;
use crate::registry::{self, Place};
use crate::status::{ApiError, ApiResult};
use crate::{ApiServer, Error};

const POLICY: &str = include_str!("bootstrap-policy.yaml");
const KEELSON_POLICY: &str = include_str!("keelson-policy.yaml");
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// The objects of the bootstrap policy, then Keelson's additions.
pub fn policy() -> Vec<Value> {
    // Parsed in a test, so a broken file never reaches a server.
    let mut objects = serde_saphyr::from_multiple::<Value>(POLICY).unwrap_or_default();
    objects.extend(serde_saphyr::from_multiple::<Value>(KEELSON_POLICY).unwrap_or_default());
    objects
}

/// Creates and reconciles the bootstrap roles and bindings.
pub async fn reconcile(api: &ApiServer) -> Result<(), Error> {
    let registry = keelson_api::Registry::builtin();
    for object in policy() {
        let kind = object["kind"].as_str().unwrap_or("");
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        let namespace = object["metadata"]["namespace"].as_str();
        let plural = match kind {
            "ClusterRole" => "clusterroles",
            "Role" => "roles",
            "ClusterRoleBinding" => "clusterrolebindings",
            _ => "rolebindings",
        };
        let bootstrap_error =
            |e: ApiError| Error::Bootstrap { name: format!("{plural}/{name}"), message: e.message };
        let info = registry.find(rbac::GROUP, "v1", plural).ok_or_else(|| Error::Bootstrap {
            name: plural.into(),
            message: "the resource is not registered".into(),
        })?;
        let place = Place { info, namespace, name };
        // Another server of the cluster may write at the same time: start again on a
        // conflict.
        for _ in 0..5 {
            match reconcile_one(api, place, &object).await {
                Err(e) if e.is_conflict() || e.is_already_exists() => continue,
                result => {
                    result.map_err(bootstrap_error)?;
                    break;
                }
            }
        }
    }
    Ok(())
}

async fn reconcile_one(api: &ApiServer, place: Place<'_>, wanted: &Value) -> ApiResult<()> {
    let existing = match api.objects.get(place).await {
        Ok(found) => Some(found),
        Err(e) if e.code == http::StatusCode::NOT_FOUND => None,
        Err(e) => return Err(e),
    };
    let Some((existing, revision)) = existing else {
        let object = registry::prepare_create(
            place.info,
            place.namespace,
            wanted.clone(),
            &Default::default(),
            &mut Vec::new(),
        )?;
        api.objects.create(place, object, false).await?;
        tracing::debug!(kind = place.info.kind, name = place.name, "created bootstrap RBAC object");
        return Ok(());
    };
    if metadata(&existing).get("annotations").and_then(|a| a.get(AUTOUPDATE))
        == Some(&json!("false"))
    {
        return Ok(());
    }
    let binding = place.info.kind.ends_with("Binding");
    if binding && existing["roleRef"] != wanted["roleRef"] {
        // The role reference is immutable: the binding is made anew.
        api.objects.remove(place, revision, false).await?;
        tracing::info!(
            kind = place.info.kind,
            name = place.name,
            "recreating a bootstrap binding whose role changed"
        );
        return Box::pin(reconcile_one(api, place, wanted)).await;
    }
    let mut updated = existing.clone();
    for field in ["labels", "annotations"] {
        for (key, value) in wanted["metadata"][field].as_object().into_iter().flatten() {
            let map = &mut updated["metadata"][field];
            if map.get(key).is_none() {
                map[key] = value.clone();
            }
        }
    }
    if binding {
        let subjects = updated["subjects"].as_array().cloned().unwrap_or_default();
        let mut merged = subjects.clone();
        for subject in wanted["subjects"].as_array().into_iter().flatten() {
            if !subjects.contains(subject) {
                merged.push(subject.clone());
            }
        }
        if !merged.is_empty() {
            updated["subjects"] = Value::Array(merged);
        }
    } else if wanted.get("aggregationRule").is_some() {
        // An aggregated role's rules are the aggregation controller's; its selectors
        // are the union of both.
        let mut selectors = updated["aggregationRule"]["clusterRoleSelectors"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for selector in
            wanted["aggregationRule"]["clusterRoleSelectors"].as_array().into_iter().flatten()
        {
            if !selectors.contains(selector) {
                selectors.push(selector.clone());
            }
        }
        updated["aggregationRule"]["clusterRoleSelectors"] = Value::Array(selectors);
    } else {
        let held = rbac::rules_of(&existing);
        let missing: Vec<Rule> = rbac::rules_of(wanted)
            .into_iter()
            .filter(|rule| !rbac::uncovered(&held, std::slice::from_ref(rule)).is_empty())
            .collect();
        if !missing.is_empty() {
            let mut rules = updated["rules"].as_array().cloned().unwrap_or_default();
            rules.extend(missing.iter().map(|r| serde_json::to_value(r).unwrap_or_default()));
            updated["rules"] = Value::Array(rules);
        }
    }
    if updated == existing {
        return Ok(());
    }
    super::write_update(api, place, &existing, updated, revision).await?;
    tracing::info!(kind = place.info.kind, name = place.name, "reconciled a bootstrap RBAC object");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_parses_and_is_complete() {
        let objects: Vec<Value> =
            serde_saphyr::from_multiple(POLICY).expect("bootstrap policy parses");
        let named = |kind: &str, name: &str| {
            objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        };
        for (kind, name) in [
            ("ClusterRole", "cluster-admin"),
            ("ClusterRole", "admin"),
            ("ClusterRole", "system:discovery"),
            ("ClusterRole", "system:node"),
            ("ClusterRole", "system:kube-scheduler"),
            ("ClusterRole", "system:controller:replicaset-controller"),
            ("ClusterRoleBinding", "cluster-admin"),
            ("ClusterRoleBinding", "system:basic-user"),
            ("Role", "extension-apiserver-authentication-reader"),
        ] {
            let object = named(kind, name).unwrap_or_else(|| panic!("{kind} {name} is missing"));
            assert_eq!(object["apiVersion"], "rbac.authorization.k8s.io/v1");
            assert_eq!(
                object["metadata"]["labels"]["kubernetes.io/bootstrapping"],
                "rbac-defaults"
            );
        }
        let admin = named("ClusterRoleBinding", "cluster-admin").expect("binding");
        let ours: Vec<Value> =
            serde_saphyr::from_multiple(KEELSON_POLICY).expect("keelson policy parses");
        assert_eq!(ours.len(), 3);
        for binding in &ours {
            let role = binding["roleRef"]["name"].as_str().expect("role");
            assert!(named("ClusterRole", role).is_some(), "{role} is an upstream role");
        }
        assert_eq!(policy().len(), objects.len() + ours.len());
        assert_eq!(admin["subjects"][0]["name"], "system:masters");
        for object in &objects {
            if object["kind"] == "ClusterRole" || object["kind"] == "Role" {
                let rules = rbac::rules_of(object);
                assert_eq!(
                    serde_json::to_value(&rules).expect("rules"),
                    object.get("rules").cloned().unwrap_or(json!([])),
                    "rules of {} survive parsing",
                    object["metadata"]["name"]
                );
            }
        }
    }
}
