//! From a path and a method to a handler, as kube-apiserver lays out its URLs:
//! `/api/v1/namespaces/{ns}/{resource}/{name}/{subresource}`, `/apis/{group}/{version}/…`,
//! the legacy `/watch/` prefix, discovery, version and health.
//!
//! Must never let an anonymous request past the health and version endpoints.

use http::Method;
use keelson_api::Registry;

use crate::request::Request;
use crate::request::Target;
use crate::response::Response;
use crate::status::{ApiError, ApiResult};
use crate::{ApiServer, discovery, openapi, rest};

pub async fn dispatch(api: &ApiServer, req: Request) -> ApiResult<Response> {
    let path = req.path.trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => return Ok(discovery::version()),
        [check @ ("healthz" | "livez" | "readyz"), rest @ ..] => {
            let query = req.uri.split_once('?').map(|(_, q)| q);
            let options = keelson_serving::health::Options::from_query(query);
            return Ok(discovery::health(api, check, rest, &options).await);
        }
        _ => {}
    }
    if req.user.is_anonymous() {
        return Err(ApiError::unauthorized());
    }
    let mut req = req;
    req.user = crate::authn::impersonate(api, req.user.clone(), &req.headers).await?;
    crate::auth::authorize_request(api, &req).await?;
    if let ["apis", group, version, ..] = segments.as_slice()
        && let Some(remote) = api.aggregator.backing(group, version)
    {
        return Ok(crate::aggregator::proxy::handle(api, &remote, req).await);
    }
    if req.method != Method::GET && segments.len() <= 3 && !is_resource_path(&segments) {
        return Err(ApiError::method_not_supported("", "", req.method.as_str()));
    }
    match segments.as_slice() {
        [".well-known", "openid-configuration"] => match api.tokens.as_ref() {
            Some(tokens) => Ok(crate::authn::serviceaccount::discovery(tokens)),
            None => Err(ApiError::path_not_found()),
        },
        ["openid", "v1", "jwks"] => match api.tokens.as_ref() {
            Some(tokens) => Ok(crate::authn::serviceaccount::jwks(tokens)),
            None => Err(ApiError::path_not_found()),
        },
        ["openapi", "v2"] => Ok(openapi::v2::serve(&api.registry(), &req.headers)),
        ["openapi", "v3"] => Ok(openapi::index(&api.registry())),
        ["openapi", "v3", rest @ ..] => openapi::group_version(&api.registry(), &rest.join("/")),
        ["api"] => Ok(discovery::core_versions(api, &req)),
        ["apis"] => Ok(discovery::groups(api, &req)),
        ["api", "v1"] => discovery::resources(api, "", "v1"),
        ["apis", group] => discovery::group(api, group),
        ["apis", group, version] => discovery::resources(api, group, version),
        ["keelson", "v1", "secrets-encryption"] => encryption_status(api).await,
        ["metrics"] => Ok(metrics(api).await),
        ["api", "v1", rest @ ..] => resource(api, req, "", "v1", rest).await,
        ["apis", group, version, rest @ ..] => {
            let (group, version) = (group.to_string(), version.to_string());
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            resource(api, req, &group, &version, &rest).await
        }
        _ => Err(ApiError::path_not_found()),
    }
}

/// Keelson's own, as k3s's `/v1-k3s/encrypt/status`: the encryption configuration in
/// effect and what the stored Secrets are written with (names and counts, no key
/// material). A non-resource URL: RBAC grants it like `/metrics`.
async fn encryption_status(api: &ApiServer) -> ApiResult<Response> {
    let Some((encryption, raw)) = &api.encryption else {
        return Err(ApiError::path_not_found());
    };
    let status =
        crate::encryption::status(encryption, raw.as_ref()).await.map_err(ApiError::internal)?;
    let value = serde_json::to_value(status).map_err(ApiError::internal)?;
    Ok(crate::response::json_response(http::StatusCode::OK, &value))
}

/// Every metric, after the object counts are brought up to date (a non-resource URL:
/// RBAC grants it, `system:monitoring` has it).
async fn metrics(api: &ApiServer) -> Response {
    crate::metrics::store::count_objects(&api.metrics, &api.registry(), api.store.as_ref()).await;
    let mut response = http::Response::new(crate::response::full(api.metrics.render()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    response
}

fn is_resource_path(segments: &[&str]) -> bool {
    matches!(segments, ["api", "v1", _, ..] | ["apis", _, _, _, ..])
}

async fn resource(
    api: &ApiServer,
    req: Request,
    group: &str,
    version: &str,
    rest: &[&str],
) -> ApiResult<Response> {
    let target = resolve(&api.registry(), group, version, rest)?;
    rest::handle(api, req, target).await
}

/// Resolves the part of a path after `/api/v1` or `/apis/{group}/{version}`.
pub fn resolve(
    registry: &Registry,
    group: &str,
    version: &str,
    rest: &[&str],
) -> ApiResult<Target> {
    let (legacy_watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let find =
        |plural: &str| registry.find(group, version, plural).ok_or_else(ApiError::path_not_found);
    let target = |info, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
        info,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        subresource: sub.map(str::to_owned),
        legacy_watch,
    };
    // `namespaces/{ns}/…` is either a namespace (and its subresources) or a namespaced
    // resource inside it.
    if group.is_empty()
        && let ["namespaces", ns, tail @ ..] = rest
    {
        match tail {
            [] => return Ok(target(find("namespaces")?, None, Some(ns), None)),
            [sub @ ("status" | "finalize")] => {
                return Ok(target(find("namespaces")?, None, Some(ns), Some(sub)));
            }
            _ => {}
        }
    }
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(*ns), tail),
        rest => (None, rest),
    };
    let (info, name, sub) = match rest {
        [plural] => (find(plural)?, None, None),
        [plural, name] => (find(plural)?, Some(*name), None),
        [plural, name, sub] => (find(plural)?, Some(*name), Some(*sub)),
        // Proxy subresources carry a path after them.
        [plural, name, sub, ..] if *sub == "proxy" => (find(plural)?, Some(*name), Some(*sub)),
        _ => return Err(ApiError::path_not_found()),
    };
    if namespace.is_some() && !info.namespaced() {
        return Err(ApiError::path_not_found());
    }
    if let Some(sub) = sub
        && !info.subresources.iter().any(|s| s.name == sub)
    {
        return Err(ApiError::path_not_found());
    }
    Ok(target(info, namespace, name, sub))
}

/// The resource a request's path addresses, if any.
pub fn target(registry: &Registry, req: &Request) -> Option<Target> {
    let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => resolve(registry, "", "v1", rest).ok(),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => {
            resolve(registry, group, version, rest).ok()
        }
        _ => None,
    }
}

/// What a request is about, for the audit log: its verb and the object it addresses.
pub fn describe(target: Option<Target>, req: &Request) -> crate::audit::Described {
    match target {
        Some(target) => crate::audit::Described {
            verb: target.verb(&req.method, target.legacy_watch || req.flag("watch")).to_owned(),
            path: req.path.clone(),
            request_uri: req.uri.clone(),
            object: Some(crate::audit::ObjectRef {
                resource: target.info.plural.to_owned(),
                subresource: target.subresource.unwrap_or_default(),
                namespace: target.namespace.unwrap_or_default(),
                name: target.name.unwrap_or_default(),
                group: target.info.group.to_owned(),
                version: target.info.version.to_owned(),
            }),
        },
        None => crate::audit::Described {
            verb: req.method.as_str().to_ascii_lowercase(),
            path: req.path.clone(),
            request_uri: req.uri.clone(),
            object: None,
        },
    }
}
