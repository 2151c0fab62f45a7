//! `certificatesigningrequest-signing-controller`, upstream's `csrsigning`
//! (`signer.go`) for the three `kubernetes.io` signers Keelson runs: an approved (and not
//! denied or failed) request without a certificate is checked against its signer's
//! rules ([`super::rules`]) and either gets a `Failed` condition
//! (`SignerValidationFailure`, upstream's message) or a certificate signed by the
//! cluster CA, valid for `expirationSeconds` (at least ten minutes) or the CA's leaf
//! lifetime (90 days), whichever is shorter.
//!
//! Requests for other signers — `example.com/…`, `kubernetes.io/legacy-unknown` — are
//! left to whoever runs those signers.

use std::time::Duration;

use keelson_api::k8s_openapi::ByteString;
use keelson_api::k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestStatus,
};
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use kube::api::Api;

use super::rules;

pub const NAME: &str = "certificatesigningrequest-signing-controller";
/// The shortest certificate issued: twice the five minutes of backdating.
const MIN_TTL: Duration = Duration::from_secs(600);

/// The controller with the CA it signs with; without one it only says it is idle, as
/// upstream's does without `--cluster-signing-*-file`.
pub fn starter(ca: Option<keelson_pki::CsrSigner>) -> impl Fn(Context) -> StartFuture {
    move |context| Box::pin(run(context, ca.clone()))
}

async fn run(context: Context, ca: Option<keelson_pki::CsrSigner>) -> keelson_runtime::Result<()> {
    let Some(ca) = ca else {
        tracing::info!("no cluster signing certificate and key: not signing requests");
        return Ok(());
    };
    let requests = context.informers.get::<CertificateSigningRequest>();
    let queue = context.queue::<String>();
    requests.queue_changes(&queue);
    requests.wait_synced().await;
    let api: Api<CertificateSigningRequest> = Api::all(context.client.clone());
    run_workers(&context, queue, 1, move |name: String| {
        let decision = requests.get(&name).and_then(|csr| sign(&ca, &csr));
        let api = api.clone();
        async move {
            let Some(signed) = decision else { return Ok(Action::AwaitChange) };
            match super::write(&api, &signed, "status").await {
                Err(e) if !super::raced(&e) => Err(e),
                _ => Ok(Action::AwaitChange),
            }
        }
    })
    .await;
    Ok(())
}

/// The request with its certificate or its `Failed` condition, if it is one to sign.
pub fn sign(
    ca: &keelson_pki::CsrSigner,
    csr: &CertificateSigningRequest,
) -> Option<CertificateSigningRequest> {
    let approved =
        super::has_true_condition(csr, "Approved") && !super::has_true_condition(csr, "Denied");
    if !approved || super::has_true_condition(csr, "Failed") || super::issued(csr) {
        return None;
    }
    let signer = csr.spec.signer_name.as_str();
    let name = csr.metadata.name.as_deref().unwrap_or_default();
    let request = match keelson_pki::CertificateRequest::from_pem(&csr.spec.request.0) {
        Ok(request) => request,
        Err(e) => {
            tracing::warn!(csr = name, error = %e, "unable to parse csr");
            return None;
        }
    };
    let usages = super::usages(csr);
    if let Err(problem) = rules::check(signer, &request, &usages)? {
        tracing::info!(csr = name, signer, %problem, "refusing to sign");
        return Some(super::with_condition(
            csr,
            "Failed",
            "SignerValidationFailure",
            &problem.to_string(),
        ));
    }
    match ca.sign_csr(&request.der, &usages, ttl(csr.spec.expiration_seconds)) {
        Ok(pem) => {
            tracing::info!(csr = name, signer, subject = %request.common_name, "signed a certificate");
            let mut signed = csr.clone();
            signed
                .status
                .get_or_insert_with(CertificateSigningRequestStatus::default)
                .certificate = Some(ByteString(pem.into_bytes()));
            Some(signed)
        }
        Err(e) => {
            tracing::warn!(csr = name, error = %e, "error auto signing csr");
            None
        }
    }
}

fn ttl(expiration_seconds: Option<i32>) -> Duration {
    match expiration_seconds {
        None => keelson_pki::LEAF_VALIDITY,
        Some(seconds) => {
            Duration::from_secs(seconds.max(0) as u64).clamp(MIN_TTL, keelson_pki::LEAF_VALIDITY)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_bounded() {
        assert_eq!(ttl(None), keelson_pki::LEAF_VALIDITY);
        assert_eq!(ttl(Some(3600)), Duration::from_secs(3600));
        assert_eq!(ttl(Some(60)), MIN_TTL);
        assert_eq!(ttl(Some(i32::MAX)), keelson_pki::LEAF_VALIDITY);
    }
}
