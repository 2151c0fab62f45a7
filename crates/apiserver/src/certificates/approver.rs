//! Upstream's `csrapproving` controller (`sarapprove.go`): a pending request for a node
//! client certificate (`kubernetes.io/kube-apiserver-client-kubelet`, subject
//! `system:node:<name>` in `system:nodes`, client usages, no SANs) is approved when a
//! SubjectAccessReview for its requester allows `create` on
//! `certificatesigningrequests/selfnodeclient` (the requester is that node, renewing) or
//! `certificatesigningrequests/nodeclient` (anyone allowed to join nodes: bootstrap
//! tokens). Nothing else is ever approved automatically, and nothing is ever denied.

use std::collections::BTreeMap;

use serde_json::Value;

use super::rules::{self, KUBELET_CLIENT};
use crate::ApiServer;
use crate::auth::Attributes;
use crate::registry::validation::certificates::{certificate, decoded};
use crate::request::User;

/// The request with its `Approved` condition added, if it qualifies; `None` otherwise.
pub async fn handle(api: &ApiServer, csr: &Value) -> Option<Value> {
    if !certificate(csr).is_empty()
        || super::has_true_condition(csr, "Approved")
        || super::has_true_condition(csr, "Denied")
        || csr["spec"]["signerName"] != KUBELET_CLIENT
    {
        return None;
    }
    let request =
        keelson_pki::CertificateRequest::from_pem(&decoded(&csr["spec"]["request"])).ok()?;
    if rules::kubelet_client(&request, &super::usages(csr)).is_err() {
        return None;
    }
    let requester = requester(csr);
    let own = requester.name == request.common_name;
    let recognized = [
        (
            own,
            "selfnodeclient",
            "Auto approving self kubelet client certificate after SubjectAccessReview.",
        ),
        (
            true,
            "nodeclient",
            "Auto approving kubelet client certificate after SubjectAccessReview.",
        ),
    ];
    for (_, subresource, message) in recognized.into_iter().filter(|(applies, ..)| *applies) {
        let mut review = Attributes::resource(
            &requester,
            "create",
            "certificates.k8s.io",
            "certificatesigningrequests",
            "",
            "",
        );
        review.subresource = subresource.into();
        if api.authorizer.decide(api, &review).await.allowed() {
            tracing::info!(csr = csr["metadata"]["name"].as_str().unwrap_or(""), user = %requester.name, subresource, "approving a node client certificate");
            return Some(super::with_condition(csr, "Approved", "AutoApproved", message));
        }
    }
    None
}

/// Who asked for the certificate, as the request records it.
fn requester(csr: &Value) -> User {
    let spec = &csr["spec"];
    let extra: BTreeMap<String, Vec<String>> = spec["extra"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), crate::registry::meta::string_list(v)))
        .collect();
    User {
        name: spec["username"].as_str().unwrap_or("").to_owned(),
        groups: crate::registry::meta::string_list(&spec["groups"]),
        uid: spec["uid"].as_str().unwrap_or("").to_owned(),
        extra,
    }
}
