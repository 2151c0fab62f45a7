//! Request-header authentication (upstream's `authentication/request/headerrequest`
//! behind an `x509request` verifier): a client whose certificate the front-proxy CA
//! signed, with an allowed common name, names the user in `X-Remote-User`,
//! `X-Remote-Group` and `X-Remote-Extra-<key>` — how kube-aggregator (this server
//! included) passes users to the servers behind it. And the trust extension servers
//! read to do the same: the `kube-system/extension-apiserver-authentication` ConfigMap,
//! as upstream's clusterauthenticationtrust controller writes it.
//!
//! Must never take these headers from anyone else: a certificate of the cluster CA
//! names its own user, and these headers are then ignored.

use serde_json::{Value, json};

use crate::ApiServer;
use crate::aggregator::{EXTRA_HEADER_PREFIXES, FrontProxy, GROUP_HEADERS, USERNAME_HEADERS};
use crate::registry::Place;
use crate::request::User;
use crate::status::{ApiError, ApiResult};

/// Who may send request headers.
pub struct RequestHeader {
    verifier: keelson_pki::ClientCaVerifier,
    allowed_names: Vec<String>,
}

/// What a front proxy's connection may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proxy {
    /// Its certificate's common name is allowed: its requests name their user.
    Allowed,
    /// Its certificate names someone not allowed (logged): 401.
    Refused,
}

impl RequestHeader {
    pub fn new(front_proxy: &FrontProxy) -> Result<RequestHeader, keelson_pki::Error> {
        Ok(RequestHeader {
            verifier: keelson_pki::ClientCaVerifier::new(&front_proxy.ca_pem)?,
            allowed_names: front_proxy.allowed_names.clone(),
        })
    }

    /// `None` for a certificate the front-proxy CA did not sign; otherwise whether its
    /// common name may send request headers (any may, when no names are configured,
    /// as upstream's empty `--requestheader-allowed-names`).
    pub fn front_proxy(
        &self,
        certificate: &rustls::pki_types::CertificateDer<'_>,
    ) -> Option<Proxy> {
        if !self.verifier.verifies(certificate) {
            return None;
        }
        let name =
            keelson_pki::identity_from_der(certificate).map(|id| id.user).unwrap_or_default();
        let allowed = self.allowed_names.is_empty() || self.allowed_names.contains(&name);
        if !allowed {
            tracing::info!(common_name = name, allowed = ?self.allowed_names, "a front-proxy certificate with a name not allowed");
        }
        Some(if allowed { Proxy::Allowed } else { Proxy::Refused })
    }
}

/// The user the request headers name, or `None` without a user name (upstream then
/// leaves the request to the other authenticators, which refuse a front proxy's
/// certificate). Takes the headers out of `headers`.
pub fn user(headers: &mut http::HeaderMap) -> Option<User> {
    let values = |headers: &http::HeaderMap, name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let name = USERNAME_HEADERS.iter().find_map(|h| values(headers, h).into_iter().next())?;
    let mut groups: Vec<String> = GROUP_HEADERS.iter().flat_map(|h| values(headers, h)).collect();
    let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
    let names: Vec<http::header::HeaderName> = headers.keys().cloned().collect();
    for header in names {
        let lower = header.as_str();
        for prefix in EXTRA_HEADER_PREFIXES {
            let prefix = prefix.to_ascii_lowercase();
            if let Some(key) = lower.strip_prefix(prefix.as_str()) {
                let key = unescape(key).to_lowercase();
                extra.entry(key).or_default().extend(values(headers, lower));
            }
        }
    }
    // The headers are spent: nothing after this server reads them.
    let spent: Vec<http::header::HeaderName> = headers
        .keys()
        .filter(|h| {
            let h = h.as_str();
            USERNAME_HEADERS.iter().chain(GROUP_HEADERS).any(|n| h.eq_ignore_ascii_case(n))
                || EXTRA_HEADER_PREFIXES.iter().any(|p| h.starts_with(&p.to_ascii_lowercase()))
        })
        .cloned()
        .collect();
    for h in spent {
        headers.remove(h);
    }
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    Some(User { name, groups, extra, ..Default::default() })
}

/// Percent-decoding of an extra key (upstream's `url.PathUnescape`); an invalid
/// escape is kept as it is.
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where extension servers read how to trust this server's front proxy.
pub const CONFIG_MAP: (&str, &str) = ("kube-system", "extension-apiserver-authentication");

/// Creates or updates `kube-system/extension-apiserver-authentication` with the client
/// CA and the request-header settings, merged with what it holds (several servers of
/// one cluster each add theirs), as upstream's clusterauthenticationtrust controller.
pub async fn publish(api: &ApiServer, front_proxy: &FrontProxy) -> ApiResult<()> {
    let info = keelson_api::Registry::builtin()
        .find("", "v1", "configmaps")
        .ok_or_else(|| ApiError::internal("configmaps are not registered"))?;
    let (namespace, name) = CONFIG_MAP;
    let place = Place { info, namespace: Some(namespace), name };
    let existing = match api.objects.get(place).await {
        Ok(found) => Some(found),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    let old = existing.as_ref().map(|(o, _)| &o["data"]).cloned().unwrap_or(Value::Null);
    let data = authentication_data(&old, front_proxy);
    match existing {
        Some((current, _)) if current["data"] == data => Ok(()),
        Some((current, revision)) => {
            let mut updated = current.clone();
            updated["data"] = data;
            api.objects.rewrite(place, &current, updated, revision, None).await.map(drop)
        }
        None => {
            let object =
                json!({ "metadata": { "name": name, "namespace": namespace }, "data": data });
            let object = crate::registry::prepare_create(
                info,
                Some(namespace),
                object,
                &Default::default(),
                &mut Vec::new(),
            )?;
            match api.objects.create(place, object, false).await {
                Ok(_) => {
                    tracing::info!("published kube-system/extension-apiserver-authentication");
                    Ok(())
                }
                Err(e) if e.is_already_exists() => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

/// The ConfigMap's data: `old`'s lists and bundles with this server's added.
fn authentication_data(old: &Value, front_proxy: &FrontProxy) -> Value {
    let list = |key: &str, ours: &[&str]| -> String {
        let mut merged: Vec<String> = old[key]
            .as_str()
            .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
            .unwrap_or_default();
        for value in ours {
            if !merged.iter().any(|m| m == value) {
                merged.push((*value).to_owned());
            }
        }
        serde_json::to_string(&merged).unwrap_or_else(|_| "[]".into())
    };
    let bundle = |key: &str, ours: &str| -> String {
        let mut blocks: Vec<String> = pem_blocks(old[key].as_str().unwrap_or(""));
        for block in pem_blocks(ours) {
            if !blocks.contains(&block) {
                blocks.push(block);
            }
        }
        blocks.concat()
    };
    let allowed: Vec<&str> = front_proxy.allowed_names.iter().map(String::as_str).collect();
    json!({
        "client-ca-file": bundle("client-ca-file", &front_proxy.client_ca_pem),
        "requestheader-allowed-names": list("requestheader-allowed-names", &allowed),
        "requestheader-client-ca-file": bundle("requestheader-client-ca-file", &front_proxy.ca_pem),
        "requestheader-extra-headers-prefix": list("requestheader-extra-headers-prefix", EXTRA_HEADER_PREFIXES),
        "requestheader-group-headers": list("requestheader-group-headers", GROUP_HEADERS),
        "requestheader-uid-headers": list("requestheader-uid-headers", &[]),
        "requestheader-username-headers": list("requestheader-username-headers", USERNAME_HEADERS),
    })
}

/// The certificates of a PEM bundle, each as its own block ending in a newline.
fn pem_blocks(pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    pem.split_inclusive(END)
        .filter_map(|part| part.find("-----BEGIN CERTIFICATE-----").map(|at| &part[at..]))
        .filter(|block| block.ends_with(END))
        .map(|block| format!("{block}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_name_the_user_its_groups_and_extra() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-remote-user", http::HeaderValue::from_static("alice"));
        headers.append("x-remote-group", http::HeaderValue::from_static("dev"));
        headers.append("x-remote-group", http::HeaderValue::from_static("ops"));
        headers.insert("x-remote-extra-example.com%2fTeam", http::HeaderValue::from_static("blue"));
        let found = user(&mut headers).expect("a user");
        assert_eq!(found.name, "alice");
        assert_eq!(found.groups, ["dev", "ops", "system:authenticated"]);
        assert_eq!(found.extra["example.com/team"], ["blue"]);
        assert!(headers.is_empty(), "spent: {headers:?}");
        assert_eq!(user(&mut http::HeaderMap::new()), None);
    }

    #[test]
    fn the_config_map_keeps_what_others_published() {
        let front_proxy = FrontProxy {
            client_ca_pem: "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n".into(),
            allowed_names: vec!["front-proxy-client".into()],
            client_cert_pem: String::new(),
            client_key_pem: String::new(),
        };
        let old = json!({
            "requestheader-allowed-names": "[\"aggregator\"]",
            "client-ca-file": "-----BEGIN CERTIFICATE-----\nZ\n-----END CERTIFICATE-----\n",
        });
        let data = authentication_data(&old, &front_proxy);
        assert_eq!(data["requestheader-allowed-names"], "[\"aggregator\",\"front-proxy-client\"]");
        assert_eq!(data["requestheader-username-headers"], "[\"X-Remote-User\"]");
        assert_eq!(data["requestheader-uid-headers"], "[]");
        assert_eq!(
            data["client-ca-file"],
            "-----BEGIN CERTIFICATE-----\nZ\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(authentication_data(&data, &front_proxy), data, "idempotent");
    }
}
