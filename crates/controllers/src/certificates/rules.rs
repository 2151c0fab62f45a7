//! What a request must look like for each `kubernetes.io` signer (upstream's
//! `pkg/apis/certificates/helpers.go` and the signer's `validAPIServerClientUsages`),
//! with upstream's messages: they become a `Failed` condition's message.
//!
//! Pure functions of the parsed request and its usages.

use std::collections::BTreeSet;

use keelson_pki::CertificateRequest;

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

type Usages<'a> = BTreeSet<&'a str>;

fn set<'a>(items: &[&'a str]) -> Usages<'a> {
    items.iter().copied().collect()
}

/// A rule of the signer the request breaks, with upstream's message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("subject organization is not system:nodes")]
    OrganizationNotNodes,
    #[error("subject common name does not begin with system:node:")]
    CommonNameNotNode,
    /// A subject alternative name of a kind (`DNS`, `Email`, `IP`, `URI`) the signer refuses.
    #[error("{0} subjectAltNames are not allowed")]
    SubjectAltName(&'static str),
    #[error("DNS or IP subjectAltName is required")]
    NoDnsOrIpSubjectAltName,
    /// The usages are not the required set (or its allowed subset); upstream names the set
    /// sorted: `usages did not match [a b c]`.
    #[error("usages did not match [{}]", set(.0).into_iter().collect::<Vec<_>>().join(" "))]
    UsagesMismatch(&'static [&'static str]),
    #[error("invalid usage for client certificate: {0}")]
    InvalidClientUsage(String),
    #[error("missing required usage for client certificate: client auth")]
    NoClientAuth,
}

/// Upstream's `ValidateKubeletClientCSR`.
pub fn kubelet_client(request: &CertificateRequest, usages: &Usages<'_>) -> Result<(), Violation> {
    if request.organizations != ["system:nodes"] {
        return Err(Violation::OrganizationNotNodes);
    }
    if !request.dns_names.is_empty() {
        return Err(Violation::SubjectAltName("DNS"));
    }
    if !request.email_addresses.is_empty() {
        return Err(Violation::SubjectAltName("Email"));
    }
    if !request.ip_addresses.is_empty() {
        return Err(Violation::SubjectAltName("IP"));
    }
    if !request.uris.is_empty() {
        return Err(Violation::SubjectAltName("URI"));
    }
    if !request.common_name.starts_with("system:node:") {
        return Err(Violation::CommonNameNotNode);
    }
    const FULL: &[&str] = &["digital signature", "key encipherment", "client auth"];
    if *usages != set(FULL) && *usages != set(&["digital signature", "client auth"]) {
        return Err(Violation::UsagesMismatch(FULL));
    }
    Ok(())
}

/// Upstream's `ValidateKubeletServingCSR`.
pub fn kubelet_serving(request: &CertificateRequest, usages: &Usages<'_>) -> Result<(), Violation> {
    if request.organizations != ["system:nodes"] {
        return Err(Violation::OrganizationNotNodes);
    }
    if request.dns_names.is_empty() && request.ip_addresses.is_empty() {
        return Err(Violation::NoDnsOrIpSubjectAltName);
    }
    if !request.email_addresses.is_empty() {
        return Err(Violation::SubjectAltName("Email"));
    }
    if !request.uris.is_empty() {
        return Err(Violation::SubjectAltName("URI"));
    }
    const FULL: &[&str] = &["digital signature", "key encipherment", "server auth"];
    if *usages != set(FULL) && *usages != set(&["digital signature", "server auth"]) {
        return Err(Violation::UsagesMismatch(FULL));
    }
    if !request.common_name.starts_with("system:node:") {
        return Err(Violation::CommonNameNotNode);
    }
    Ok(())
}

/// Upstream's `validAPIServerClientUsages`, on the usages in the order given.
pub fn apiserver_client(usages: &[&str]) -> Result<(), Violation> {
    let mut client_auth = false;
    for usage in usages {
        match *usage {
            "digital signature" | "key encipherment" => {}
            "client auth" => client_auth = true,
            other => return Err(Violation::InvalidClientUsage(other.to_owned())),
        }
    }
    if !client_auth {
        return Err(Violation::NoClientAuth);
    }
    Ok(())
}

/// The rules of `signer` for a request, or `None` for a signer Keelson does not sign.
pub fn check(
    signer: &str,
    request: &CertificateRequest,
    usages_in_order: &[&str],
) -> Option<Result<(), Violation>> {
    let usages: Usages<'_> = usages_in_order.iter().copied().collect();
    Some(match signer {
        KUBELET_CLIENT => kubelet_client(request, &usages),
        KUBELET_SERVING => kubelet_serving(request, &usages),
        KUBE_APISERVER_CLIENT => apiserver_client(usages_in_order),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cn: &str, orgs: &[&str]) -> CertificateRequest {
        CertificateRequest {
            der: Vec::new(),
            common_name: cn.into(),
            organizations: orgs.iter().map(|o| o.to_string()).collect(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            email_addresses: Vec::new(),
            uris: Vec::new(),
        }
    }

    /// The message a check's violation reads as.
    fn message(checked: Result<(), Violation>) -> Result<(), String> {
        checked.map_err(|v| v.to_string())
    }

    #[test]
    fn kubelet_client_rules() {
        let node = request("system:node:n1", &["system:nodes"]);
        let ok = set(&["digital signature", "client auth"]);
        assert_eq!(kubelet_client(&node, &ok), Ok(()));
        assert_eq!(
            kubelet_client(&node, &set(&["key encipherment", "digital signature", "client auth"])),
            Ok(())
        );
        assert_eq!(
            message(kubelet_client(&node, &set(&["client auth"]))),
            Err("usages did not match [client auth digital signature key encipherment]".into())
        );
        assert_eq!(
            message(kubelet_client(&request("system:node:n1", &["system:masters"]), &ok)),
            Err("subject organization is not system:nodes".into())
        );
        assert_eq!(
            message(kubelet_client(&request("alice", &["system:nodes"]), &ok)),
            Err("subject common name does not begin with system:node:".into())
        );
        let mut with_dns = node.clone();
        with_dns.dns_names.push("n1".into());
        assert_eq!(
            message(kubelet_client(&with_dns, &ok)),
            Err("DNS subjectAltNames are not allowed".into())
        );
    }

    #[test]
    fn kubelet_serving_rules() {
        let mut node = request("system:node:n1", &["system:nodes"]);
        let ok = set(&["digital signature", "key encipherment", "server auth"]);
        assert_eq!(
            message(kubelet_serving(&node, &ok)),
            Err("DNS or IP subjectAltName is required".into())
        );
        node.ip_addresses.push("10.0.0.1".parse().expect("ip"));
        assert_eq!(kubelet_serving(&node, &ok), Ok(()));
        assert_eq!(
            message(kubelet_serving(&node, &set(&["digital signature", "client auth"]))),
            Err("usages did not match [digital signature key encipherment server auth]".into())
        );
    }

    #[test]
    fn apiserver_client_rules() {
        assert_eq!(apiserver_client(&["client auth", "digital signature"]), Ok(()));
        assert_eq!(
            message(apiserver_client(&["server auth", "client auth"])),
            Err("invalid usage for client certificate: server auth".into())
        );
        assert_eq!(
            message(apiserver_client(&["digital signature"])),
            Err("missing required usage for client certificate: client auth".into())
        );
        assert!(check("example.com/x", &request("a", &[]), &[]).is_none());
    }
}
