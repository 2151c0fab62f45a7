//! The CertificateSigningRequest controllers a joining node relies on, as upstream's
//! `certificatesigningrequest-approving-controller` ([`approving`]: node client
//! certificates approved after a SubjectAccessReview of the requester) and
//! `certificatesigningrequest-signing-controller` ([`signing`]: approved requests that
//! follow their `kubernetes.io` signer's rules are signed with the cluster CA). Both act
//! as ServiceAccount `certificate-controller` and write only through the `approval` and
//! `status` subresources, so the API server's validation and the CertificateApproval
//! and CertificateSigning admission checks apply to them as to anyone.
//!
//! Must never approve or sign anything upstream's controllers would not, and never touch
//! the CA key: signing goes through `keelson_pki::CsrSigner`.

pub mod approving;
pub mod rules;
pub mod signing;

use keelson_api::k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_api::k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

pub const SERVICE_ACCOUNT: &str = "certificate-controller";

/// Whether the request has a condition of `kind` with status `True`.
pub fn has_true_condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// Whether the request already has its certificate.
pub fn issued(csr: &CertificateSigningRequest) -> bool {
    csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty())
}

/// The request's usages, in order.
pub fn usages(csr: &CertificateSigningRequest) -> Vec<&str> {
    csr.spec.usages.iter().flatten().map(String::as_str).collect()
}

/// A copy of the request with a `True` condition appended.
fn with_condition(
    csr: &CertificateSigningRequest,
    kind: &str,
    reason: &str,
    message: &str,
) -> CertificateSigningRequest {
    let mut updated = csr.clone();
    let now = Time(Timestamp::now());
    updated
        .status
        .get_or_insert_with(CertificateSigningRequestStatus::default)
        .conditions
        .get_or_insert_default()
        .push(CertificateSigningRequestCondition {
            type_: kind.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
    updated
}

/// Writes `updated` through `subresource` (`approval` or `status`), conditional on the
/// revision it was read at.
async fn write(
    api: &Api<CertificateSigningRequest>,
    updated: &CertificateSigningRequest,
    subresource: &str,
) -> Result<(), kube::Error> {
    let name = updated.metadata.name.clone().unwrap_or_default();
    api.replace_subresource(subresource, &name, &PostParams::default(), updated).await?;
    Ok(())
}

/// Whether a failed write only lost a race (changed or gone meanwhile): the informer
/// brings the new state.
fn raced(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 404)
}
