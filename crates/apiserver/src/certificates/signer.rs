//! Upstream's `csrsigning` controllers (`signer.go`) for the three `kubernetes.io`
//! signers Keelson runs: an approved (and not denied or failed) request without a
//! certificate is checked against its signer's rules ([`super::rules`]) and either gets
//! a `Failed` condition (`SignerValidationFailure`, upstream's message) or a certificate
//! signed by the cluster CA, valid for `expirationSeconds` (at least ten minutes) or the
//! CA's leaf lifetime (90 days), whichever is shorter.
//!
//! Requests for other signers — `example.com/…`, `kubernetes.io/legacy-unknown` — are
//! left to whoever runs those signers.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use super::rules;
use crate::registry::validation::certificates::{certificate, decoded};

/// The shortest certificate issued: twice the five minutes of backdating.
const MIN_TTL: Duration = Duration::from_secs(600);

/// The request with its certificate or its `Failed` condition, if it is one to sign.
pub fn handle(ca: &keelson_pki::CsrSigner, csr: &Value) -> Option<Value> {
    let approved =
        super::has_true_condition(csr, "Approved") && !super::has_true_condition(csr, "Denied");
    if !approved || super::has_true_condition(csr, "Failed") || !certificate(csr).is_empty() {
        return None;
    }
    let signer = csr["spec"]["signerName"].as_str().unwrap_or("");
    let name = csr["metadata"]["name"].as_str().unwrap_or("");
    let request = match keelson_pki::CertificateRequest::from_pem(&decoded(&csr["spec"]["request"]))
    {
        Ok(request) => request,
        Err(e) => {
            tracing::warn!(csr = name, error = %e, "unable to parse csr");
            return None;
        }
    };
    let usages: Vec<&str> =
        csr["spec"]["usages"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if let Err(problem) = rules::check(signer, &request, &usages)? {
        tracing::info!(csr = name, signer, %problem, "refusing to sign");
        return Some(super::with_condition(csr, "Failed", "SignerValidationFailure", &problem));
    }
    let ttl = ttl(csr["spec"]["expirationSeconds"].as_i64());
    match ca.sign_csr(&request.der, &usages, ttl) {
        Ok(pem) => {
            tracing::info!(csr = name, signer, subject = %request.common_name, "signed a certificate");
            let mut signed = csr.clone();
            if !signed["status"].is_object() {
                signed["status"] = serde_json::json!({});
            }
            signed["status"]["certificate"] =
                base64::engine::general_purpose::STANDARD.encode(pem).into();
            Some(signed)
        }
        Err(e) => {
            tracing::warn!(csr = name, error = %e, "error auto signing csr");
            None
        }
    }
}

/// Upstream's `signer.duration`: the leaf lifetime unless the request asks for less, and
/// never under ten minutes.
fn ttl(expiration_seconds: Option<i64>) -> Duration {
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
        assert_eq!(ttl(Some(i64::MAX)), keelson_pki::LEAF_VALIDITY);
    }
}
