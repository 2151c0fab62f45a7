//! Authentication beyond the client certificate (which `server.rs` reads from the TLS
//! session): bearer tokens — static ones from `--token-auth-file` ([`tokenfile`]),
//! bootstrap tokens ([`bootstrap`]) and service account JWTs ([`serviceaccount`]), in
//! upstream's order — and impersonation (`Impersonate-User`, `-Group`, `-Uid`,
//! `-Extra-*`), each impersonated attribute authorized with the `impersonate` verb.
//!
//! Must never turn a bad credential into an anonymous request: a token that does not
//! authenticate is a 401, with the reason in the server log only.

pub mod bootstrap;
pub mod requestheader;
pub mod serviceaccount;
pub mod tokenfile;

use std::collections::BTreeMap;

use crate::ApiServer;
use crate::auth::Attributes;
use crate::request::User;
use crate::status::{ApiError, ApiResult};

/// Why a bearer token does not authenticate.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Bootstrap(#[from] bootstrap::Error),
    #[error(transparent)]
    ServiceAccount(#[from] serviceaccount::Error),
    #[error("service account tokens are not configured")]
    NotConfigured,
}

/// Authenticates a bearer token for `audiences`; the user, or why not.
pub async fn authenticate_token(
    api: &ApiServer,
    token: &str,
    audiences: &[String],
) -> Result<User, TokenError> {
    if let Some(user) = api.static_tokens.as_ref().and_then(|file| file.authenticate(token)) {
        return Ok(user);
    }
    if let Some((id, secret)) = bootstrap::parse(token) {
        return Ok(bootstrap::authenticate(api, id, secret).await?);
    }
    match api.tokens.as_ref() {
        Some(tokens) => Ok(serviceaccount::authenticate(api, tokens, token, audiences).await?),
        None => Err(TokenError::NotConfigured),
    }
}

/// The bearer token of a request, if it carries one.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Upstream's impersonation filter: the user a request acts as, once the caller may
/// impersonate every part of it. Without `Impersonate-*` headers, the caller.
pub async fn impersonate(
    api: &ApiServer,
    caller: User,
    headers: &http::HeaderMap,
) -> ApiResult<User> {
    let values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    };
    let name = values("impersonate-user").into_iter().next();
    let groups = values("impersonate-group");
    let uid = values("impersonate-uid").into_iter().next();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (header, value) in headers {
        if let Some(key) = header.as_str().strip_prefix("impersonate-extra-")
            && let Ok(value) = value.to_str()
        {
            extra.entry(crate::request::percent_decode(key)).or_default().push(value.to_owned());
        }
    }
    let Some(name) = name else {
        if !groups.is_empty() || uid.is_some() || !extra.is_empty() {
            return Err(ApiError::bad_request(
                "requested impersonation of groups, uid or extra without impersonating a user",
            ));
        }
        return Ok(caller);
    };
    let check = |verb: &str, group: &str, resource: &str, namespace: &str, object: &str| {
        let mut attributes =
            Attributes::resource(&caller, verb, group, resource, namespace, object);
        attributes.api_version = "v1".into();
        attributes
    };
    let mut asks = Vec::new();
    let account = name.strip_prefix("system:serviceaccount:").and_then(|rest| rest.split_once(':'));
    match account {
        Some((namespace, account)) => {
            asks.push(check("impersonate", "", "serviceaccounts", namespace, account))
        }
        None => asks.push(check("impersonate", "", "users", "", &name)),
    }
    for group in &groups {
        asks.push(check("impersonate", "", "groups", "", group));
    }
    if let Some(uid) = &uid {
        asks.push(check("impersonate", "authentication.k8s.io", "uids", "", uid));
    }
    for (key, values) in &extra {
        for value in values {
            let mut ask = check("impersonate", "authentication.k8s.io", "userextras", "", value);
            ask.subresource = key.clone();
            asks.push(ask);
        }
    }
    for ask in &asks {
        api.authorizer.authorize(ask).await?;
    }
    let mut impersonated = User { name: name.clone(), groups, uid: uid.unwrap_or_default(), extra };
    if let Some((namespace, _)) = account
        && impersonated.groups.is_empty()
    {
        impersonated.groups =
            vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}")];
    }
    let everyone =
        if name == "system:anonymous" { "system:unauthenticated" } else { "system:authenticated" };
    if !impersonated.groups.iter().any(|g| g == everyone) {
        impersonated.groups.push(everyone.into());
    }
    crate::audit::impersonated(&impersonated);
    Ok(impersonated)
}
