//! The CertificateSigningRequest controllers a joining node relies on: the approver
//! (upstream's `csrapproving`: node client certificates approved after a
//! SubjectAccessReview of the requester, [`approver`]) and the signers (upstream's
//! `csrsigning` for `kubernetes.io/kube-apiserver-client`,
//! `kubernetes.io/kube-apiserver-client-kubelet` and `kubernetes.io/kubelet-serving`:
//! approved requests that follow the signer's rules are signed with the cluster CA,
//! [`signer`]).
//!
//! Upstream runs both in the controller manager; until Keelson has one they run inside
//! the API server, following the CSR watch cache, level-triggered: every pass looks at
//! every request (and a pass runs every 30 seconds regardless, so a requester granted
//! the right later is approved without touching its request). They write as the server
//! itself, through the `approval` and `status` subresources' preparation and validation,
//! so they can never store what a client could not.
//!
//! Must never approve or sign anything upstream's controllers would not, and never touch
//! the CA key: signing goes through `keelson_pki::CsrSigner`.

pub mod approver;
pub mod rules;
pub mod signer;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::ApiServer;
use crate::registry::Place;
use crate::status::{ApiError, ApiResult};

pub const PREFIX: &str = "/registry/certificatesigningrequests/";

/// How often a pass runs without any change to the requests.
const RESYNC: Duration = Duration::from_secs(30);

/// Follows the certificate signing requests until the server stops.
pub async fn run(api: Arc<ApiServer>) {
    crate::cache::follow(api, PREFIX, RESYNC, |api, requests| async move {
        reconcile(&api, &requests).await;
        None
    })
    .await
}

/// One pass over the stored requests: approve what qualifies, then sign what is approved.
pub async fn reconcile(api: &ApiServer, stored: &[std::sync::Arc<keelson_store::KeyValue>]) {
    for kv in stored {
        let Ok(csr) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let name = csr["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let result = match approver::handle(api, &csr).await {
            Some(approved) => write(api, &name, &csr, approved, kv.mod_revision, "approval").await,
            None => match api.csr_signer.as_ref() {
                Some(ca) => match signer::handle(ca, &csr) {
                    Some(signed) => {
                        write(api, &name, &csr, signed, kv.mod_revision, "status").await
                    }
                    None => Ok(()),
                },
                None => Ok(()),
            },
        };
        match result {
            Ok(()) => {}
            // Changed or gone in between: the next pass sees the new state.
            Err(e) if e.reason == "Conflict" || e.code == http::StatusCode::NOT_FOUND => {}
            Err(e) => {
                tracing::warn!(csr = %name, error = %e.message, "cannot update a certificate signing request")
            }
        }
    }
}

/// Writes `updated` through `subresource` as the server itself.
async fn write(
    api: &ApiServer,
    name: &str,
    stored: &Value,
    updated: Value,
    revision: i64,
    subresource: &str,
) -> ApiResult<()> {
    let info = keelson_api::Registry::builtin()
        .find("certificates.k8s.io", "v1", "certificatesigningrequests")
        .ok_or_else(|| ApiError::internal("certificatesigningrequests are not registered"))?;
    let place = Place { info, namespace: None, name };
    let mut existing = stored.clone();
    existing["apiVersion"] = info.api_version().into();
    existing["kind"] = info.kind.into();
    crate::auth::write_subresource(api, place, &existing, updated, revision, Some(subresource))
        .await
}

/// Whether the request has a condition of `kind` with status `True`.
pub fn has_true_condition(csr: &Value, kind: &str) -> bool {
    crate::registry::validation::certificates::conditions(csr)
        .iter()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// The request's usages, as a sorted set.
pub fn usages(csr: &Value) -> std::collections::BTreeSet<&str> {
    csr["spec"]["usages"].as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

/// Appends a `True` condition to a copy of the request.
fn with_condition(csr: &Value, kind: &str, reason: &str, message: &str) -> Value {
    let mut updated = csr.clone();
    if !updated["status"].is_object() {
        updated["status"] = serde_json::json!({});
    }
    let condition = serde_json::json!({
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastUpdateTime": crate::registry::meta::now(),
    });
    match updated["status"]["conditions"].as_array_mut() {
        Some(list) => list.push(condition),
        None => updated["status"]["conditions"] = serde_json::json!([condition]),
    }
    updated
}
