//! The CertificateSigningRequest admission plugins (upstream's
//! `plugin/pkg/admission/certificates`): CertificateApproval — changing a request's
//! conditions through `/approval` needs `approve` on the `signers` resource named after
//! its signer (or `<domain>/*`); CertificateSigning — changing the certificate or the
//! conditions through `/status` needs `sign` there; CertificateSubjectRestriction — no
//! request for `kubernetes.io/kube-apiserver-client` may ask for `system:masters`.
//!
//! The signer is always the stored object's, so an update cannot dodge the check by
//! naming another one.

use serde_json::Value;

use super::{Attributes, Operation};
use crate::ApiServer;
use crate::auth::Attributes as AuthzAttributes;
use crate::registry::validation::certificates::{certificate, conditions, decoded};
use crate::request::User;
use crate::status::ApiResult;

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";

/// Checks a write of a CSR; `object` is the new object (creates and updates).
pub async fn validate(api: &ApiServer, a: &Attributes<'_>, object: &Value) -> ApiResult<()> {
    if !a.is("certificates.k8s.io", "certificatesigningrequests") {
        return Ok(());
    }
    match (a.operation, a.subresource, a.old) {
        (Operation::Create, "", _) => subject_restriction(a, object),
        (Operation::Update, "approval", Some(old)) => {
            let signer = old["spec"]["signerName"].as_str().unwrap_or("");
            if !authorized_for_signer(api, a.user, "approve", signer).await {
                return Err(a.forbidden(format!(
                    "user not permitted to approve requests with signerName {signer:?}"
                )));
            }
            Ok(())
        }
        (Operation::Update, "status", Some(old)) => {
            if certificate(old) == certificate(object) && conditions(old) == conditions(object) {
                return Ok(());
            }
            let signer = old["spec"]["signerName"].as_str().unwrap_or("");
            if !authorized_for_signer(api, a.user, "sign", signer).await {
                return Err(a.forbidden(format!(
                    "user not permitted to sign requests with signerName {signer:?}"
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Upstream's `IsAuthorizedForSignerName`: `verb` on `signers/<signerName>`, or on
/// `signers/<domain>/*`.
pub async fn authorized_for_signer(api: &ApiServer, user: &User, verb: &str, signer: &str) -> bool {
    let domain = signer.split('/').next().unwrap_or("");
    for name in [signer.to_owned(), format!("{domain}/*")] {
        let mut attributes =
            AuthzAttributes::resource(user, verb, "certificates.k8s.io", "signers", "", &name);
        attributes.api_version = "*".into();
        if api.authorizer.decide(api, &attributes).await.allowed() {
            return true;
        }
    }
    false
}

/// CertificateSubjectRestriction.
fn subject_restriction(a: &Attributes<'_>, object: &Value) -> ApiResult<()> {
    if object["spec"]["signerName"] != KUBE_APISERVER_CLIENT {
        return Ok(());
    }
    let request =
        match keelson_pki::CertificateRequest::from_pem(&decoded(&object["spec"]["request"])) {
            Ok(request) => request,
            Err(e) => return Err(a.forbidden(format!("failed to parse CSR: {e}"))),
        };
    if request.organizations.iter().any(|o| o == crate::auth::PRIVILEGED_GROUP) {
        return Err(a.forbidden(format!(
            "use of {KUBE_APISERVER_CLIENT} signer with system:masters group is not allowed"
        )));
    }
    Ok(())
}
