//! Discovery (legacy and aggregated v2), `/version`, and the health endpoints, all
//! derived from the resource registry so they cannot drift from what is served.

use http::StatusCode;
use keelson_api::{Registry, ResourceInfo, Scope};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::request::Request;
use crate::response::{Response, full, json_response};
use crate::status::{ApiError, ApiResult};

/// The Kubernetes version served, k3s-style: `v1.34.0+keelson.<version>`.
pub fn git_version() -> String {
    format!("v1.{}.0+keelson.{}", crate::KUBERNETES_MINOR, env!("CARGO_PKG_VERSION"))
}

pub fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": crate::KUBERNETES_MINOR.to_string(),
            "gitVersion": git_version(),
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "",
            "goVersion": "",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, goarch()),
        }),
    )
}

fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `/livez`, `/readyz`, `/healthz`, with named checks (`/livez/ping`), `?verbose` and
/// `?exclude=`.
pub async fn health(
    api: &ApiServer,
    endpoint: &str,
    rest: &[&str],
    options: &keelson_serving::health::Options<'_>,
) -> Response {
    let store = api.store.current_revision().await.map(drop).map_err(|e| e.to_string());
    let mut checks = vec![("ping", Ok(())), ("log", Ok(())), ("etcd", store)];
    if endpoint == "readyz" {
        checks.push(("informer-sync", Ok(())));
        let shutdown = if api.shutting_down() { Err("shutting down".into()) } else { Ok(()) };
        checks.push(("shutdown", shutdown));
    }
    let (code, body) = keelson_serving::health::answer(endpoint, rest, options, &checks);
    let mut response = http::Response::new(full(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client takes aggregated discovery (v2) before plain JSON.
fn wants_aggregated(req: &Request) -> bool {
    let accept = req.header(http::header::ACCEPT).replace(' ', "");
    accept.split(',').next().is_some_and(|first| {
        first.contains("g=apidiscovery.k8s.io")
            && first.contains("v=v2")
            && !first.contains("v=v2beta1")
    })
}

pub fn core_versions(api: &ApiServer, req: &Request) -> Response {
    if wants_aggregated(req) {
        let versions = [version_discovery(&api.registry(), "", "v1")];
        let items = vec![json!({ "metadata": {}, "versions": versions })];
        return aggregated(items);
    }
    json_response(
        StatusCode::OK,
        &json!({ "kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [] }),
    )
}

pub fn groups(api: &ApiServer, req: &Request) -> Response {
    let registry = api.registry();
    if wants_aggregated(req) {
        let items = registry
            .groups()
            .iter()
            .map(|g| {
                let versions: Vec<Value> =
                    g.versions.iter().map(|v| version_discovery(&registry, g.name, v)).collect();
                json!({ "metadata": { "name": g.name }, "versions": versions })
            })
            .collect();
        return aggregated(items);
    }
    let groups: Vec<Value> = registry.groups().iter().map(group_json).collect();
    json_response(
        StatusCode::OK,
        &json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }),
    )
}

pub fn group(api: &ApiServer, name: &str) -> ApiResult<Response> {
    let registry = api.registry();
    let group = registry
        .groups()
        .into_iter()
        .find(|g| g.name == name)
        .ok_or_else(ApiError::path_not_found)?;
    let mut value = group_json(&group);
    value["kind"] = json!("APIGroup");
    value["apiVersion"] = json!("v1");
    Ok(json_response(StatusCode::OK, &value))
}

fn group_json(g: &keelson_api::GroupInfo) -> Value {
    let versions: Vec<Value> = g
        .versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{}/{v}", g.name), "version": v }))
        .collect();
    json!({
        "name": g.name,
        "versions": versions,
        "preferredVersion": { "groupVersion": format!("{}/{}", g.name, g.preferred_version), "version": g.preferred_version },
    })
}

fn served<'a>(
    registry: &'a Registry,
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    registry.resources().filter(move |r| r.group == group && r.version == version)
}

/// `/api/v1` and `/apis/{group}/{version}`: an `APIResourceList`.
pub fn resources(api: &ApiServer, group: &str, version: &str) -> ApiResult<Response> {
    let mut list = Vec::new();
    for r in served(&api.registry(), group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced(),
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        list.push(entry);
        for s in r.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced(),
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if !s.group.is_empty() || !s.version.is_empty() {
                sub["group"] = json!(s.group);
                sub["version"] = json!(s.version);
            }
            list.push(sub);
        }
    }
    if list.is_empty() {
        return Err(ApiError::path_not_found());
    }
    let group_version =
        if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    Ok(json_response(
        StatusCode::OK,
        &json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list }),
    ))
}

/// One version of a group in aggregated discovery.
fn version_discovery(registry: &Registry, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = served(registry, group, version)
        .map(|r| {
            let subresources: Vec<Value> = r
                .subresources
                .iter()
                .map(|s| {
                    json!({
                        "subresource": s.name,
                        "responseKind": { "group": s.group, "version": s.version, "kind": s.kind },
                        "verbs": s.verbs,
                    })
                })
                .collect();
            let mut entry = json!({
                "resource": r.plural,
                "responseKind": { "group": "", "version": "", "kind": r.kind },
                "scope": if r.scope == Scope::Namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": r.verbs,
            });
            if !r.short_names.is_empty() {
                entry["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                entry["categories"] = json!(r.categories);
            }
            if !subresources.is_empty() {
                entry["subresources"] = Value::Array(subresources);
            }
            entry
        })
        .collect();
    json!({ "version": version, "resources": resources, "freshness": "Current" })
}

fn aggregated(items: Vec<Value>) -> Response {
    let mut response = json_response(
        StatusCode::OK,
        &json!({ "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items }),
    );
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(AGGREGATED));
    response
}
