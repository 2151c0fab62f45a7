//! NodeRestriction (upstream's `plugin/pkg/admission/noderestriction`): what a kubelet
//! may write, beyond what the Node authorizer lets it ask for. A node creates only
//! mirror pods bound to itself that reference nothing else, updates the status and
//! deletes only pods bound to itself, evicts only those, and modifies only its own Node
//! — not its taints, not labels outside the kubelet's set.

use std::collections::BTreeSet;

use serde_json::Value;

use super::lister::Lister;
use super::{Attributes, Operation, Plugin, Validating};
use crate::auth::node::node_name;
use crate::status::ApiResult;

const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

pub struct NodeRestriction {
    pods: Lister,
}

impl NodeRestriction {
    pub fn new(pods: Lister) -> Self {
        NodeRestriction { pods }
    }
}

impl Plugin for NodeRestriction {
    fn handles(&self, _: Operation) -> bool {
        true
    }

    fn validating(&self) -> Option<&dyn Validating> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl Validating for NodeRestriction {
    async fn validate(&self, a: &Attributes<'_>, object: Option<&Value>) -> ApiResult<Vec<String>> {
        validate(&self.pods, a, object).await.map(|()| Vec::new())
    }
}

/// Checks a write by a node; `object` is `None` for deletes.
async fn validate(pods: &Lister, a: &Attributes<'_>, object: Option<&Value>) -> ApiResult<()> {
    let Some(node) = node_name(a.user) else {
        return Ok(());
    };
    match (a.info.group, a.info.plural, a.subresource) {
        ("", "pods", "") => match (a.operation, object) {
            (Operation::Create, Some(pod)) => pod_create(a, node, pod),
            (Operation::Delete, _) => {
                let pod = existing_pod(pods, a, a.name).await?;
                if pod["spec"]["nodeName"] != node {
                    return Err(a.forbidden(format!(
                        "node {node:?} can only delete pods with spec.nodeName set to itself"
                    )));
                }
                Ok(())
            }
            (op, _) => Err(a.forbidden(format!(
                "unexpected operation {:?}, node {node:?} can only create and delete mirror pods",
                op.as_str()
            ))),
        },
        ("", "pods", "status") => {
            let (Some(old), Some(new)) = (a.old, object) else {
                return Err(a.forbidden(format!("unexpected operation {:?}", a.operation.as_str())));
            };
            if old["spec"]["nodeName"] != node {
                return Err(a.forbidden(format!(
                    "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                )));
            }
            if old["metadata"]["labels"] != new["metadata"]["labels"] {
                return Err(
                    a.forbidden(format!("node {node:?} cannot update labels through pod status"))
                );
            }
            Ok(())
        }
        ("", "pods", "eviction") => {
            let pod = existing_pod(pods, a, a.name).await?;
            if pod["spec"]["nodeName"] != node {
                return Err(a.forbidden(format!(
                    "node {node} can only evict pods with spec.nodeName set to itself"
                )));
            }
            Ok(())
        }
        ("", "pods", sub) => Err(a.forbidden(format!(
            "unexpected pod subresource {sub:?}, only 'status' and 'eviction' are allowed"
        ))),
        ("", "nodes", _) => node_write(a, node, object),
        ("", "serviceaccounts", "token") => match object {
            Some(request) => token_request(pods, a, node, request).await,
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// A node asks for tokens only for pods bound to itself, named by uid.
async fn token_request(
    pods: &Lister,
    a: &Attributes<'_>,
    node: &str,
    request: &Value,
) -> ApiResult<()> {
    let reference = &request["spec"]["boundObjectRef"];
    let name = reference["name"].as_str().unwrap_or("");
    if reference["apiVersion"] != "v1" || reference["kind"] != "Pod" || name.is_empty() {
        return Err(a.forbidden("node requested token not bound to a pod"));
    }
    let uid = reference["uid"].as_str().unwrap_or("");
    if uid.is_empty() {
        return Err(a.forbidden("node requested token with a pod binding without a uid"));
    }
    let pod = pods.live(Some(a.namespace), name).await?;
    let actual = pod["metadata"]["uid"].as_str().unwrap_or("");
    if uid != actual {
        return Err(a.forbidden(format!(
            "the UID in the bound object reference ({uid}) does not match the UID in record ({actual}). The object might have been deleted and then recreated"
        )));
    }
    if pod["spec"]["nodeName"] != node {
        return Err(
            a.forbidden("node requested token bound to a pod scheduled on a different node")
        );
    }
    Ok(())
}

async fn existing_pod(pods: &Lister, a: &Attributes<'_>, name: &str) -> ApiResult<Value> {
    pods.live(Some(a.namespace), name).await
}

fn pod_create(a: &Attributes<'_>, node: &str, pod: &Value) -> ApiResult<()> {
    if pod["metadata"]["annotations"][MIRROR_ANNOTATION].is_null() {
        return Err(a.forbidden(format!(
            "pod does not have {MIRROR_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
        )));
    }
    if pod["spec"]["nodeName"] != node {
        return Err(a.forbidden(format!(
            "node {node:?} can only create pods with spec.nodeName set to itself"
        )));
    }
    let owners = pod["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
    if owners.len() > 1 {
        return Err(a.forbidden(format!(
            "node {node:?} can only create pods with a single owner reference set to itself"
        )));
    }
    if let Some(owner) = owners.first() {
        if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != node {
            return Err(a.forbidden(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            )));
        }
        if owner["controller"] != true {
            return Err(a.forbidden(format!(
                "node {node:?} can only create pods with a controller owner reference set to itself"
            )));
        }
        if owner["blockOwnerDeletion"] == true {
            return Err(a.forbidden(format!(
                "node {node:?} must not set blockOwnerDeletion on an owner reference"
            )));
        }
    }
    let account = pod["spec"]["serviceAccountName"].as_str().unwrap_or("");
    if !account.is_empty() {
        return Err(a.forbidden(format!(
            "node {node:?} can not create pods that reference a service account"
        )));
    }
    for (kind, plural) in [("secrets", "secrets"), ("configmaps", "configmaps")] {
        if !crate::auth::node::references(pod, kind).is_empty() {
            return Err(
                a.forbidden(format!("node {node:?} can not create pods that reference {plural}"))
            );
        }
    }
    let claims = pod["spec"]["volumes"].as_array().into_iter().flatten();
    if claims.clone().any(|v| !v["persistentVolumeClaim"].is_null()) {
        return Err(a.forbidden(format!(
            "node {node:?} can not create pods that reference persistentvolumeclaims"
        )));
    }
    Ok(())
}

fn node_write(a: &Attributes<'_>, node: &str, object: Option<&Value>) -> ApiResult<()> {
    let requested = match (a.operation, object) {
        (Operation::Create, Some(new)) => new["metadata"]["name"].as_str().unwrap_or(""),
        _ => a.name,
    };
    let empty = Value::Null;
    if let (Operation::Create, Some(new)) = (a.operation, object) {
        let forbidden = forbidden_labels(&new["metadata"]["labels"], &empty);
        if !forbidden.is_empty() {
            return Err(a.forbidden(format!(
                "node {node:?} is not allowed to set the following labels: {}",
                forbidden.join(", ")
            )));
        }
    }
    if requested != node {
        return Err(
            a.forbidden(format!("node {node:?} is not allowed to modify node {requested:?}"))
        );
    }
    if let (Operation::Update, Some(new), Some(old)) = (a.operation, object, a.old) {
        if new["spec"]["taints"] != old["spec"]["taints"] {
            return Err(a.forbidden(format!("node {node:?} is not allowed to modify taints")));
        }
        let forbidden = forbidden_labels(&new["metadata"]["labels"], &old["metadata"]["labels"]);
        if !forbidden.is_empty() {
            return Err(
                a.forbidden(format!("is not allowed to modify labels: {}", forbidden.join(", ")))
            );
        }
    }
    Ok(())
}

/// The changed labels a kubelet may not set: the `node-restriction.kubernetes.io/`
/// namespace, and Kubernetes' namespaces outside the kubelet's own labels.
fn forbidden_labels(new: &Value, old: &Value) -> Vec<String> {
    let keys: BTreeSet<&String> = new
        .as_object()
        .into_iter()
        .flatten()
        .chain(old.as_object().into_iter().flatten())
        .map(|(k, _)| k)
        .filter(|k| new.get(k.as_str()) != old.get(k.as_str()))
        .collect();
    keys.into_iter()
        .filter(|key| {
            let namespace = key.split_once('/').map(|(ns, _)| ns).unwrap_or("");
            let within =
                |domain: &str| namespace == domain || namespace.ends_with(&format!(".{domain}"));
            within("node-restriction.kubernetes.io")
                || ((within("kubernetes.io") || within("k8s.io"))
                    && !is_kubelet_label(key, namespace))
        })
        .cloned()
        .collect()
}

/// Upstream's `IsKubeletLabel`: the labels a kubelet sets on its own Node.
fn is_kubelet_label(key: &str, namespace: &str) -> bool {
    const LABELS: [&str; 11] = [
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "node.kubernetes.io/instance-type",
        "beta.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    ];
    LABELS.contains(&key)
        || ["kubelet.kubernetes.io", "node.kubernetes.io"]
            .iter()
            .any(|d| namespace == *d || namespace.ends_with(&format!(".{d}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubelets_set_only_their_own_labels() {
        let old = json!({ "kubernetes.io/hostname": "n1", "team": "a" });
        let new = json!({
            "kubernetes.io/hostname": "n1",
            "team": "b",
            "node.kubernetes.io/exclude-from-external-load-balancers": "",
            "node-restriction.kubernetes.io/pci": "true",
            "node-role.kubernetes.io/control-plane": "",
            "example.k8s.io/x": "y",
        });
        assert_eq!(
            forbidden_labels(&new, &old),
            [
                "example.k8s.io/x",
                "node-restriction.kubernetes.io/pci",
                "node-role.kubernetes.io/control-plane"
            ]
        );
        assert!(forbidden_labels(&old, &old).is_empty());
    }
}
