//! From a path and a method to a handler, as kube-apiserver lays out its URLs:
//! `/api/v1/namespaces/{ns}/{resource}/{name}/{subresource}`, `/apis/{group}/{version}/…`,
//! the legacy `/watch/` prefix, discovery, version and health.
//!
//! Must never let an anonymous request past the health and version endpoints.

use futures_util::FutureExt;
use http::Method;
use keelson_api::Registry;

use crate::request::Request;
use crate::request::Target;
use crate::response::Response;
use crate::status::{ApiError, ApiResult};
use crate::{ApiServer, discovery, openapi, rest};

/// What became of a request: its answer, and the APF classification it executed (or
/// was refused) under, for the response headers.
pub struct Routed {
    pub result: ApiResult<Response>,
    pub flow: Option<crate::apf::Classification>,
}

/// Routes a request whose user is authenticated: impersonation, then API Priority and
/// Fairness (a seat, a wait in a queue, or a 429), then authorization and the handler.
/// `deadline` is the request's, `None` for a long-running one.
pub async fn dispatch(
    api: &ApiServer,
    mut req: Request,
    deadline: Option<std::time::Duration>,
) -> Routed {
    let path = req.path.trim_end_matches('/').to_owned();
    // Health and version answer anyone, as they are.
    let open = path == "/version"
        || matches!(path.split('/').nth(1), Some("healthz" | "livez" | "readyz"));
    if !open {
        if req.user.is_anonymous() {
            return Routed { result: Err(ApiError::unauthorized()), flow: None };
        }
        match crate::authn::impersonate(api, req.user.clone(), &req.headers).await {
            Ok(user) => req.user = user,
            Err(e) => return Routed { result: Err(e), flow: None },
        }
    }
    let attributes = crate::auth::Attributes::from_request(&req);
    // Upstream leaves long-running requests other than watches to run unclassified.
    let seat = if deadline.is_none() && attributes.verb != "watch" {
        None
    } else {
        // A queue is waited in for a quarter of the request's time, a minute at most.
        let wait = deadline
            .map_or(crate::apf::DEFAULT_WAIT, |d| (d / 4).min(std::time::Duration::from_secs(60)));
        match api.apf.admit(&attributes, wait).await {
            crate::apf::Admission::Execute(seat) => Some(seat),
            crate::apf::Admission::Reject { classification, retry_after } => {
                return Routed {
                    result: Ok(too_many_requests(retry_after)),
                    flow: Some(classification),
                };
            }
        }
    };
    let (method, logged_path) = (req.method.clone(), req.path.clone());
    let result = recovering(route(api, req, attributes), &method, &logged_path).await;
    Routed { result, flow: seat.map(|seat| seat.classification.clone()) }
}

/// Upstream's APF refusal: a plain-text 429 (not a Status) with `Retry-After`.
fn too_many_requests(retry_after: i64) -> Response {
    let mut response =
        http::Response::new(crate::response::full("Too many requests, please try again later.\n"));
    *response.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert("x-content-type-options", http::HeaderValue::from_static("nosniff"));
    headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(retry_after));
    response
}

/// Runs a request's handler so that a panic in it ends only this request, answered 500
/// (and so audited) as upstream's panic recovery answers it, and logged; nothing else
/// the handler shared is left poisoned (every lock here recovers from poisoning).
pub(crate) async fn recovering(
    handler: impl std::future::Future<Output = ApiResult<Response>>,
    method: &Method,
    path: &str,
) -> ApiResult<Response> {
    match std::panic::AssertUnwindSafe(handler).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%method, %path, panic = %why, "apiserver panicked");
            Err(ApiError::internal(
                "This request caused apiserver to panic. Look in the logs for details.",
            ))
        }
    }
}

async fn route(
    api: &ApiServer,
    req: Request,
    attributes: crate::auth::Attributes,
) -> ApiResult<Response> {
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
    crate::auth::authorize_attributes(api, attributes).await?;
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
