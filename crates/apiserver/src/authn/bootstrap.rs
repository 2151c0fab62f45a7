//! Bootstrap tokens (upstream's `plugin/pkg/auth/authenticator/token/bootstrap`): a
//! `<id>.<secret>` bearer token is valid while the Secret `bootstrap-token-<id>` in
//! `kube-system` (type `bootstrap.kubernetes.io/token`) holds that secret, allows
//! authentication and has not expired. Its user is `system:bootstrap:<id>` in
//! `system:bootstrappers` and the token's extra groups — what a joining node uses to
//! ask for its certificate.

use base64::Engine;

use crate::ApiServer;
use crate::registry::Place;
use crate::request::User;

/// `<6 lowercase alphanumerics>.<16 lowercase alphanumerics>`.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let valid = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (valid(id, 6) && valid(secret, 16)).then_some((id, secret))
}

/// Why a bootstrap token does not authenticate (for the server log: the client sees 401).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("secrets are not registered")]
    SecretsNotRegistered,
    /// The token's Secret, named `name`, cannot be read.
    #[error("no bootstrap token secret kube-system/{name}")]
    NoSecret { name: String },
    #[error("secret kube-system/{name} is not a bootstrap token")]
    NotBootstrapToken { name: String },
    #[error("bootstrap token {id} is being deleted")]
    Deleting { id: String },
    #[error("bootstrap token {id} does not match its secret")]
    Mismatch { id: String },
    #[error("bootstrap token {id} is not usable for authentication")]
    NotForAuthentication { id: String },
    /// `problem` is why the timestamp does not parse (jiff's error is a std error only
    /// with its `std` feature, which this crate alone does not turn on).
    #[error("bootstrap token {id} has an unreadable expiration")]
    UnreadableExpiration { id: String, problem: String },
    #[error("bootstrap token {id} expired at {expiration}")]
    Expired { id: String, expiration: String },
    #[error("bootstrap token {id} names a group outside system:bootstrappers: {group}")]
    ForeignGroup { id: String, group: String },
}

pub async fn authenticate(api: &ApiServer, id: &str, secret: &str) -> Result<User, Error> {
    let name = format!("bootstrap-token-{id}");
    let info = keelson_api::Registry::builtin()
        .find("", "v1", "secrets")
        .ok_or(Error::SecretsNotRegistered)?;
    let place = Place { info, namespace: Some("kube-system"), name: &name };
    let (object, _) =
        api.objects.get(place).await.map_err(|_| Error::NoSecret { name: name.clone() })?;
    if object["type"] != "bootstrap.kubernetes.io/token" {
        return Err(Error::NotBootstrapToken { name });
    }
    if !object["metadata"]["deletionTimestamp"].is_null() {
        return Err(Error::Deleting { id: id.to_owned() });
    }
    let data = |key: &str| -> String {
        object["data"][key]
            .as_str()
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .and_then(|v| String::from_utf8(v).ok())
            .unwrap_or_default()
    };
    let matches = same_secret(data("token-secret").as_bytes(), secret.as_bytes());
    if data("token-id") != id || !matches {
        return Err(Error::Mismatch { id: id.to_owned() });
    }
    if data("usage-bootstrap-authentication") != "true" {
        return Err(Error::NotForAuthentication { id: id.to_owned() });
    }
    let expiration = data("expiration");
    if !expiration.is_empty() {
        let expires: keelson_api::k8s_openapi::jiff::Timestamp =
            expiration.parse().map_err(|e: keelson_api::k8s_openapi::jiff::Error| {
                Error::UnreadableExpiration { id: id.to_owned(), problem: e.to_string() }
            })?;
        if expires <= crate::meta::now_timestamp() {
            return Err(Error::Expired { id: id.to_owned(), expiration });
        }
    }
    let mut groups = vec!["system:bootstrappers".to_owned()];
    for group in data("auth-extra-groups").split(',').map(str::trim).filter(|g| !g.is_empty()) {
        if !group.starts_with("system:bootstrappers:") {
            return Err(Error::ForeignGroup { id: id.to_owned(), group: group.to_owned() });
        }
        groups.push(group.to_owned());
    }
    groups.push("system:authenticated".into());
    Ok(User { name: format!("system:bootstrap:{id}"), groups, ..Default::default() })
}

/// Compares two secrets in time that depends only on their length.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_upstreams_shape() {
        assert_eq!(parse("abcdef.0123456789abcdef"), Some(("abcdef", "0123456789abcdef")));
        for bad in [
            "abcdef.0123456789abcde",
            "ABCDEF.0123456789abcdef",
            "abcdef0123456789abcdef",
            "abc.def",
            "eyJhbGciOi.x.y",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
