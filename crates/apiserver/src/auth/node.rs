//! The Node authorizer (upstream's `plugin/pkg/auth/authorizer/node`): a kubelet, user
//! `system:node:<name>` in group `system:nodes`, may read a Secret, ConfigMap,
//! PersistentVolumeClaim or PersistentVolume only when a pod bound to its node uses it,
//! may request tokens only for the service accounts of its pods, may touch only its own
//! Lease and CSINode, and otherwise holds the rules of the `system:node` role.
//! NodeRestriction (in admission) narrows the writes further to its own Node and pods.
//!
//! Upstream keeps a graph of pods, volumes and nodes; this authorizer walks the pods of
//! the object's namespace from the watch cache instead. Must never answer Allow for an
//! object no pod of the node references.

use std::sync::OnceLock;

use serde_json::Value;

use super::rbac::Rule;
use super::{Attributes, Decision};
use crate::cache::Caches;

/// The node a user is, if it is a node: `system:node:<name>` in `system:nodes`.
pub fn node_name(user: &crate::request::User) -> Option<&str> {
    let name = user.name.strip_prefix("system:node:")?;
    (user.groups.iter().any(|g| g == "system:nodes") && !name.is_empty()).then_some(name)
}

/// The rules of the bootstrap `system:node` role, which the Node authorizer grants.
fn node_rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        super::bootstrap::policy()
            .iter()
            .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "system:node")
            .map(super::rbac::rules_of)
            .unwrap_or_default()
    })
}

pub async fn decide(caches: &Caches, a: &Attributes) -> Decision {
    let Some(node) = node_name(&a.user) else {
        return Decision::NoOpinion(String::new());
    };
    if !a.resource_request {
        return rules(a);
    }
    let no_relationship = || {
        Decision::NoOpinion(format!("no relationship found between node '{node}' and this object"))
    };
    match (a.api_group.as_str(), a.resource.as_str()) {
        (
            "",
            kind @ ("secrets" | "configmaps" | "persistentvolumeclaims" | "persistentvolumes"),
        ) => {
            if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
                return Decision::NoOpinion("can only read resources of this type".into());
            }
            if !a.subresource.is_empty() {
                return Decision::NoOpinion("cannot read subresource".into());
            }
            if kind != "persistentvolumes" && a.namespace.is_empty() {
                return Decision::NoOpinion("can only read namespaced object of this type".into());
            }
            if a.name.is_empty() {
                return Decision::NoOpinion("No Object name found".into());
            }
            match related(caches, node, kind, &a.namespace, &a.name).await {
                true => Decision::Allow(String::new()),
                false => no_relationship(),
            }
        }
        ("", "serviceaccounts") if a.subresource == "token" => {
            if a.verb != "create" {
                return Decision::NoOpinion(
                    "can only create tokens for individual service accounts".into(),
                );
            }
            match related(caches, node, "serviceaccounts", &a.namespace, &a.name).await {
                true => Decision::Allow(String::new()),
                false => no_relationship(),
            }
        }
        ("coordination.k8s.io", "leases") => {
            if a.namespace != "kube-node-lease" || (a.name != node && a.verb != "create") {
                return Decision::NoOpinion(
                    "can only access node lease with the same name as the requesting node".into(),
                );
            }
            if !matches!(a.verb.as_str(), "get" | "create" | "update" | "patch" | "delete") {
                return Decision::NoOpinion(
                    "can only get, create, update, patch, or delete a node lease".into(),
                );
            }
            Decision::Allow(String::new())
        }
        ("storage.k8s.io", "csinodes") => {
            if a.name != node && a.verb != "create" {
                return Decision::NoOpinion(
                    "can only access CSINode with the same name as the requesting node".into(),
                );
            }
            Decision::Allow(String::new())
        }
        _ => rules(a),
    }
}

fn rules(a: &Attributes) -> Decision {
    if node_rules().iter().any(|r| r.allows(a)) {
        Decision::Allow(String::new())
    } else {
        Decision::NoOpinion(String::new())
    }
}

/// Whether a pod bound to `node` uses the object (for a PersistentVolume: through a
/// claim of such a pod).
async fn related(caches: &Caches, node: &str, kind: &str, namespace: &str, name: &str) -> bool {
    if kind == "persistentvolumes" {
        return bound_volume(caches, node, name).await;
    }
    pods_on(caches, node, Some(namespace)).await.iter().any(|pod| uses(pod, kind, name))
}

/// The pods bound to `node`, in `namespace` or everywhere.
async fn pods_on(caches: &Caches, node: &str, namespace: Option<&str>) -> Vec<Value> {
    let prefix = "/registry/pods/";
    let Some(cache) = caches.get(prefix).await else {
        return Vec::new();
    };
    let dir = match namespace {
        Some(ns) => format!("{prefix}{ns}/"),
        None => prefix.to_owned(),
    };
    cache
        .objects(&dir)
        .0
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        .filter(|pod| pod["spec"]["nodeName"] == node)
        .collect()
}

/// Whether a PersistentVolume is bound to a claim a pod of `node` uses.
async fn bound_volume(caches: &Caches, node: &str, volume: &str) -> bool {
    let Some(cache) = caches.get("/registry/persistentvolumes/").await else {
        return false;
    };
    let (kvs, _) = cache.objects(&format!("/registry/persistentvolumes/{volume}"));
    let Some(pv) = kvs.first().and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
    else {
        return false;
    };
    let (Some(ns), Some(claim)) =
        (pv["spec"]["claimRef"]["namespace"].as_str(), pv["spec"]["claimRef"]["name"].as_str())
    else {
        return false;
    };
    pods_on(caches, node, Some(ns))
        .await
        .iter()
        .any(|pod| uses(pod, "persistentvolumeclaims", claim))
}

/// Whether a pod's spec names the object.
pub fn uses(pod: &Value, kind: &str, name: &str) -> bool {
    references(pod, kind).iter().any(|n| n == name)
}

/// The objects of `kind` a pod's spec names: volumes (also projected and ephemeral
/// ones), `env`/`envFrom` of every container, image pull secrets, its service account.
pub fn references(pod: &Value, kind: &str) -> Vec<String> {
    let spec = &pod["spec"];
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let volumes = list(&spec["volumes"]);
    let projected: Vec<Value> =
        volumes.iter().flat_map(|v| list(&v["projected"]["sources"])).collect();
    let containers: Vec<Value> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| list(&spec[*f]))
        .collect();
    // A container's `envFrom[].<whole>` and `env[].valueFrom.<key>`.
    let from_env = |whole: &str, key: &str| -> Vec<Value> {
        containers
            .iter()
            .flat_map(|c| {
                let whole = list(&c["envFrom"]).into_iter().map(|e| e[whole]["name"].clone());
                let keys = list(&c["env"]).into_iter().map(|e| e["valueFrom"][key]["name"].clone());
                whole.chain(keys).collect::<Vec<_>>()
            })
            .collect()
    };
    let found: Vec<Value> = match kind {
        "serviceaccounts" => match spec["serviceAccountName"].as_str() {
            Some(account) if !account.is_empty() => vec![Value::from(account)],
            _ => vec![Value::from("default")],
        },
        "secrets" => {
            let mut found: Vec<Value> =
                list(&spec["imagePullSecrets"]).iter().map(|s| s["name"].clone()).collect();
            for v in &volumes {
                found.push(v["secret"]["secretName"].clone());
                found.push(v["azureFile"]["secretName"].clone());
                found.push(v["csi"]["nodePublishSecretRef"]["name"].clone());
                for source in ["cephfs", "flexVolume", "iscsi", "rbd", "scaleIO", "storageos"] {
                    found.push(v[source]["secretRef"]["name"].clone());
                }
            }
            found.extend(projected.iter().map(|s| s["secret"]["name"].clone()));
            found.extend(from_env("secretRef", "secretKeyRef"));
            found
        }
        "configmaps" => {
            let mut found: Vec<Value> =
                volumes.iter().map(|v| v["configMap"]["name"].clone()).collect();
            found.extend(projected.iter().map(|s| s["configMap"]["name"].clone()));
            found.extend(from_env("configMapRef", "configMapKeyRef"));
            found
        }
        "persistentvolumeclaims" => {
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
            let mut found = Vec::new();
            for v in &volumes {
                found.push(v["persistentVolumeClaim"]["claimName"].clone());
                if v["ephemeral"].is_object() {
                    found.push(Value::from(format!(
                        "{pod_name}-{}",
                        v["name"].as_str().unwrap_or("")
                    )));
                }
            }
            found
        }
        _ => Vec::new(),
    };
    found.iter().filter_map(Value::as_str).filter(|n| !n.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_reference_what_they_use() {
        let pod = json!({
            "metadata": { "name": "p" },
            "spec": {
                "nodeName": "n1",
                "serviceAccountName": "robot",
                "imagePullSecrets": [{ "name": "pull" }],
                "containers": [{
                    "name": "c",
                    "env": [{ "name": "A", "valueFrom": { "secretKeyRef": { "name": "env-secret", "key": "k" } } }],
                    "envFrom": [{ "configMapRef": { "name": "env-cm" } }],
                }],
                "volumes": [
                    { "name": "s", "secret": { "secretName": "vol-secret" } },
                    { "name": "proj", "projected": { "sources": [{ "configMap": { "name": "proj-cm" } }] } },
                    { "name": "data", "persistentVolumeClaim": { "claimName": "claim" } },
                    { "name": "scratch", "ephemeral": { "volumeClaimTemplate": { "spec": {} } } },
                ],
            },
        });
        for (kind, name) in [
            ("secrets", "pull"),
            ("secrets", "env-secret"),
            ("secrets", "vol-secret"),
            ("configmaps", "env-cm"),
            ("configmaps", "proj-cm"),
            ("persistentvolumeclaims", "claim"),
            ("persistentvolumeclaims", "p-scratch"),
            ("serviceaccounts", "robot"),
        ] {
            assert!(uses(&pod, kind, name), "{kind} {name}");
        }
        assert!(!uses(&pod, "secrets", "other"));
        assert!(!uses(&pod, "configmaps", "vol-secret"));
        assert!(!uses(&pod, "serviceaccounts", "default"));
    }

    #[test]
    fn only_nodes_are_nodes() {
        let user = |name: &str, groups: &[&str]| crate::request::User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(node_name(&user("system:node:n1", &["system:nodes"])), Some("n1"));
        assert_eq!(node_name(&user("system:node:n1", &[])), None);
        assert_eq!(node_name(&user("bob", &["system:nodes"])), None);
    }
}
