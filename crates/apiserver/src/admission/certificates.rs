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

use std::sync::Arc;

use super::{Attributes, Operation, Plugin, Validating};
use crate::auth::Attributes as AuthzAttributes;
use crate::registry::validation::certificates::{certificate, conditions, decoded};
use crate::request::User;
use crate::status::ApiResult;

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";

fn is_csr(a: &Attributes<'_>) -> bool {
    a.is("certificates.k8s.io", "certificatesigningrequests")
}

/// Implements [`Plugin`] for a validating plugin that looks at `$operation`s.
macro_rules! validates {
    ($plugin:ty, $operation:path) => {
        impl Plugin for $plugin {
            fn handles(&self, operation: Operation) -> bool {
                operation == $operation
            }

            fn validating(&self) -> Option<&dyn Validating> {
                Some(self)
            }
        }
    };
}

/// The question the certificate plugins ask the authorizer, so tests can answer it.
#[async_trait::async_trait]
pub trait SignerAuthorizer: Send + Sync {
    async fn allowed(&self, attributes: &AuthzAttributes) -> bool;
}

/// The server's authorizer.
#[async_trait::async_trait]
impl SignerAuthorizer for crate::auth::Authorizer {
    async fn allowed(&self, attributes: &AuthzAttributes) -> bool {
        self.decide(attributes).await.allowed()
    }
}

/// CertificateApproval: `approve` on the signer to change conditions via `/approval`.
pub struct CertificateApproval(pub Arc<dyn SignerAuthorizer>);

validates!(CertificateApproval, Operation::Update);

#[async_trait::async_trait]
impl Validating for CertificateApproval {
    async fn validate(&self, a: &Attributes<'_>, _: Option<&Value>) -> ApiResult<Vec<String>> {
        let (true, "approval", Some(old)) = (is_csr(a), a.subresource, a.old) else {
            return Ok(Vec::new());
        };
        let signer = old["spec"]["signerName"].as_str().unwrap_or("");
        if !authorized_for_signer(&*self.0, a.user, "approve", signer).await {
            return Err(a.forbidden(format!(
                "user not permitted to approve requests with signerName {signer:?}"
            )));
        }
        Ok(Vec::new())
    }
}

/// CertificateSigning: `sign` on the signer to change the certificate or conditions via
/// `/status`.
pub struct CertificateSigning(pub Arc<dyn SignerAuthorizer>);

validates!(CertificateSigning, Operation::Update);

#[async_trait::async_trait]
impl Validating for CertificateSigning {
    async fn validate(&self, a: &Attributes<'_>, object: Option<&Value>) -> ApiResult<Vec<String>> {
        let (true, "status", Some(old), Some(object)) = (is_csr(a), a.subresource, a.old, object)
        else {
            return Ok(Vec::new());
        };
        if certificate(old) == certificate(object) && conditions(old) == conditions(object) {
            return Ok(Vec::new());
        }
        let signer = old["spec"]["signerName"].as_str().unwrap_or("");
        if !authorized_for_signer(&*self.0, a.user, "sign", signer).await {
            return Err(a.forbidden(format!(
                "user not permitted to sign requests with signerName {signer:?}"
            )));
        }
        Ok(Vec::new())
    }
}

pub struct CertificateSubjectRestriction;

validates!(CertificateSubjectRestriction, Operation::Create);

#[async_trait::async_trait]
impl Validating for CertificateSubjectRestriction {
    async fn validate(&self, a: &Attributes<'_>, object: Option<&Value>) -> ApiResult<Vec<String>> {
        match object {
            Some(object) if is_csr(a) && a.subresource.is_empty() => {
                subject_restriction(a, object).map(|()| Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// Upstream's `IsAuthorizedForSignerName`: `verb` on `signers/<signerName>`, or on
/// `signers/<domain>/*`.
pub async fn authorized_for_signer(
    authorizer: &dyn SignerAuthorizer,
    user: &User,
    verb: &str,
    signer: &str,
) -> bool {
    let domain = signer.split('/').next().unwrap_or("");
    for name in [signer.to_owned(), format!("{domain}/*")] {
        let mut attributes =
            AuthzAttributes::resource(user, verb, "certificates.k8s.io", "signers", "", &name);
        attributes.api_version = "*".into();
        if authorizer.allowed(&attributes).await {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Allows `approver` to approve for every `example.com` signer, and nothing else.
    struct Fake;

    #[async_trait::async_trait]
    impl SignerAuthorizer for Fake {
        async fn allowed(&self, attributes: &AuthzAttributes) -> bool {
            attributes.user.name == "approver"
                && attributes.verb == "approve"
                && attributes.api_group == "certificates.k8s.io"
                && attributes.resource == "signers"
                && attributes.name == "example.com/*"
        }
    }

    #[tokio::test]
    async fn approval_needs_approve_on_the_stored_requests_signer() -> anyhow::Result<()> {
        let plugin = CertificateApproval(Arc::new(Fake));
        assert!(plugin.handles(Operation::Update) && !plugin.handles(Operation::Create));
        let info = keelson_api::Registry::builtin()
            .find("certificates.k8s.io", "v1", "certificatesigningrequests")
            .ok_or_else(|| anyhow::anyhow!("CSRs are not registered"))?;
        let stored = json!({ "spec": { "signerName": "example.com/serving" } });
        // The new object names another signer: the stored one is what counts.
        let sent = json!({ "spec": { "signerName": "other.io/x" } });
        let answer = |name: &str| {
            let user = User { name: name.into(), ..Default::default() };
            let plugin = &plugin;
            let (stored, sent) = (&stored, &sent);
            async move {
                let a = Attributes {
                    user: &user,
                    info,
                    namespace: "",
                    name: "csr",
                    subresource: "approval",
                    operation: Operation::Update,
                    old: Some(stored),
                    dry_run: false,
                };
                plugin.validate(&a, Some(sent)).await.map_err(|e| e.message)
            }
        };
        assert_eq!(answer("approver").await, Ok(Vec::new()));
        assert_eq!(
            answer("someone").await,
            Err("certificatesigningrequests.certificates.k8s.io \"csr\" is forbidden: user not permitted to approve requests with signerName \"example.com/serving\"".into())
        );
        Ok(())
    }
}
