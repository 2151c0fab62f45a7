//! Delegated authentication (upstream's `DelegatingAuthenticatorConfig`): a client
//! certificate the TLS layer verified against the client CA names the user (CN) and
//! groups (O); otherwise a bearer token is sent to the API server in a TokenReview, and
//! the answer — who, or nobody — kept for 10 s (`--authentication-token-webhook-cache-ttl`),
//! under the token's SHA-256 so the cache holds no token.

use std::collections::BTreeMap;
use std::time::Duration;

use keelson_api::k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::Client;
use kube::api::{Api, PostParams};

use super::cache::TtlCache;

/// Upstream's `--authentication-token-webhook-cache-ttl` default, for both answers.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);

/// An authenticated caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Who a connection's client certificate names; `None` without one, or with one that
/// names nobody.
pub(crate) fn from_certificate(peer: &keelson_serving::Peer) -> Option<User> {
    let identity = peer.identity().flatten()?;
    Some(User { name: identity.user, groups: identity.groups, ..User::default() })
}

/// The bearer token of an `Authorization` header, if any.
pub(crate) fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub(crate) struct Authenticator {
    client: Option<Client>,
    cache: TtlCache<[u8; 32], Option<User>>,
}

impl Authenticator {
    pub(crate) fn new(client: Option<Client>) -> Self {
        Authenticator { client, cache: TtlCache::new() }
    }

    /// Who `token` is (`None`: nobody), by a TokenReview; `Err` when the API server could
    /// not be asked.
    pub(crate) async fn token(&self, token: &str) -> Result<Option<User>, String> {
        let Some(client) = &self.client else { return Ok(None) };
        let mut key = [0u8; 32];
        key.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
        if let Some(known) = self.cache.get(&key) {
            return Ok(known);
        }
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_owned()), audiences: None },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("tokenreview: {e}"))?;
        let status = reviewed.status.unwrap_or_default();
        let user = match (status.authenticated, status.user) {
            (Some(true), Some(user)) => Some(User {
                name: user.username.unwrap_or_default(),
                uid: user.uid.unwrap_or_default(),
                groups: user.groups.unwrap_or_default(),
                extra: user.extra.unwrap_or_default(),
            }),
            _ => {
                tracing::info!(error = status.error.unwrap_or_default(), "bearer token rejected");
                None
            }
        };
        self.cache.put(key, user.clone(), TOKEN_CACHE_TTL);
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
        headers.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("bearer  "));
        assert_eq!(bearer(&headers), None);
    }
}
