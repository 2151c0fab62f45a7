//! ServiceAccount admission (upstream's `plugin/pkg/admission/serviceaccount`): a new
//! pod runs as a service account that exists (`default` unless it names one), inherits
//! its image pull secrets, and — unless it or its account opts out with
//! `automountServiceAccountToken: false` — gets the projected `kube-api-access-*` volume
//! (a bound token, the cluster CA, its namespace) mounted in every container at
//! `/var/run/secrets/kubernetes.io/serviceaccount`.

use std::time::Duration;

use serde_json::{Value, json};

use super::lister::Lister;
use super::{Attributes, Mutating, Operation, Plugin};
use crate::status::ApiResult;

const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Upstream's token lifetime for the projected volume (an hour and seven seconds).
const TOKEN_SECONDS: i64 = 3607;

pub struct ServiceAccount {
    /// The service accounts; `None` when the server serves no tokens (nothing to mount).
    accounts: Option<Lister>,
}

impl ServiceAccount {
    pub fn new(accounts: Option<Lister>) -> Self {
        ServiceAccount { accounts }
    }
}

impl Plugin for ServiceAccount {
    fn handles(&self, operation: Operation) -> bool {
        operation == Operation::Create
    }

    fn mutating(&self) -> Option<&dyn Mutating> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl Mutating for ServiceAccount {
    async fn admit(&self, a: &Attributes<'_>, pod: Option<&mut Value>) -> ApiResult<Vec<String>> {
        match (pod, &self.accounts) {
            (Some(pod), Some(accounts)) if a.subresource.is_empty() => {
                admit(accounts, a, pod).await.map(|()| Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }
}

async fn admit(accounts: &Lister, a: &Attributes<'_>, pod: &mut Value) -> ApiResult<()> {
    if !a.is("", "pods") {
        return Ok(());
    }
    // Mirror pods come from a kubelet's files and may not use service accounts.
    if !pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_null() {
        return Ok(());
    }
    let name = match pod["spec"]["serviceAccountName"].as_str() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => "default".to_owned(),
    };
    pod["spec"]["serviceAccountName"] = json!(name);
    let account = lookup(accounts, a.namespace, &name).await.ok_or_else(|| {
        a.forbidden(format!(
            "error looking up service account {}/{name}: serviceaccount {name:?} not found",
            a.namespace
        ))
    })?;
    if pod["spec"]["imagePullSecrets"].as_array().is_none_or(Vec::is_empty)
        && let Some(secrets) = account["imagePullSecrets"].as_array().filter(|s| !s.is_empty())
    {
        pod["spec"]["imagePullSecrets"] = json!(secrets);
    }
    let automount = match pod["spec"]["automountServiceAccountToken"].as_bool() {
        Some(choice) => choice,
        None => account["automountServiceAccountToken"].as_bool().unwrap_or(true),
    };
    if automount {
        mount_token(pod);
    }
    Ok(())
}

/// The service account, read again for up to a second: a namespace's `default`
/// account is created just after the namespace (upstream's admission falls back to a
/// live lookup for the same reason).
async fn lookup(accounts: &Lister, namespace: &str, name: &str) -> Option<Value> {
    if let Some(account) = accounts.get(Some(namespace), name).await {
        return Some(account);
    }
    for _ in 0..20 {
        match accounts.live(Some(namespace), name).await {
            Ok(account) => return Some(account),
            Err(e) if e.code == http::StatusCode::NOT_FOUND && name == "default" => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => return None,
        }
    }
    None
}

fn mount_token(pod: &mut Value) {
    let mounted = |c: &Value| {
        c["volumeMounts"].as_array().into_iter().flatten().any(|m| m["mountPath"] == MOUNT_PATH)
    };
    let kinds = ["initContainers", "containers"];
    let needs: bool = kinds
        .iter()
        .flat_map(|k| pod["spec"][*k].as_array().cloned().unwrap_or_default())
        .any(|c| !mounted(&c));
    if !needs {
        return;
    }
    let volume = format!("kube-api-access-{}", random_suffix());
    for kind in kinds {
        // Through `get_mut`: indexing would add the lists a pod does not have, as nulls.
        let containers = pod.get_mut("spec").and_then(|spec| spec.get_mut(kind));
        for container in containers.and_then(Value::as_array_mut).into_iter().flatten() {
            if mounted(container) {
                continue;
            }
            let mount = json!({ "name": volume, "readOnly": true, "mountPath": MOUNT_PATH });
            match container["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount),
                None => container["volumeMounts"] = json!([mount]),
            }
        }
    }
    let projected = json!({
        "name": volume,
        "projected": {
            "sources": [
                { "serviceAccountToken": { "expirationSeconds": TOKEN_SECONDS, "path": "token" } },
                { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                { "downwardAPI": { "items": [{ "path": "namespace", "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } }] } },
            ],
            "defaultMode": 420,
        },
    });
    match pod["spec"]["volumes"].as_array_mut() {
        Some(volumes) => volumes.push(projected),
        None => pod["spec"]["volumes"] = json!([projected]),
    }
}

/// Five characters from upstream's `utilrand` alphabet (no vowels, no look-alikes).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_volume_is_mounted_where_missing() {
        let mut pod = json!({ "spec": {
            "initContainers": [{ "name": "init" }],
            "containers": [
                { "name": "a" },
                { "name": "b", "volumeMounts": [{ "name": "own", "mountPath": MOUNT_PATH }] },
            ],
        } });
        mount_token(&mut pod);
        let volume = pod["spec"]["volumes"][0]["name"].as_str().expect("volume").to_owned();
        assert!(volume.starts_with("kube-api-access-") && volume.len() == 21, "{volume}");
        assert_eq!(pod["spec"]["containers"][0]["volumeMounts"][0]["name"], volume.as_str());
        assert_eq!(pod["spec"]["initContainers"][0]["volumeMounts"][0]["readOnly"], true);
        assert_eq!(pod["spec"]["containers"][1]["volumeMounts"].as_array().map(Vec::len), Some(1));
        let sources = &pod["spec"]["volumes"][0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        // Lists the pod does not have stay absent (a null would read back as a change).
        let mut plain = json!({ "spec": { "containers": [{ "name": "a" }] } });
        mount_token(&mut plain);
        assert!(plain["spec"].get("initContainers").is_none(), "{plain}");
    }
}
