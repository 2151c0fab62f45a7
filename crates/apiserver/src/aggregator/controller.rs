//! Keeps the APIServices: the local ones this server's group-versions need (upstream's
//! autoregister and crdRegistration controllers: created when missing, their spec set
//! back when changed, removed when the group-version is no longer served, unless a user
//! took one over by removing its `automanaged` label), and every APIService's
//! `Available` condition (upstream's local and remote availability controllers: local
//! ones are always available; a Service-backed one is if its Service has a ready
//! endpoint on the port and answers its discovery document).
//!
//! It runs inside the API server, following the APIService watch cache, and checks
//! again every two seconds (Services, EndpointSlices, CRDs and the extension servers
//! themselves change without touching an APIService). Must never touch an APIService
//! it does not manage but for its status.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use keelson_api::{Registry, ResourceInfo};
use serde_json::{Value, json};

use super::proxy::{self, Target};
use super::{AUTOMANAGED, Remote};
use crate::ApiServer;
use crate::meta;
use crate::registry::{self, Place};
use crate::status::ApiResult;

/// Where APIServices are stored.
pub const PREFIX: &str = "/registry/apiregistration.k8s.io/apiservices/";

/// How long the discovery check waits for an answer (upstream's 5 s client timeout).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Follows the APIServices until the server stops.
pub async fn run(api: Arc<ApiServer>) {
    crate::cache::follow(api, PREFIX, Duration::from_secs(2), |api, stored| async move {
        reconcile(&api, &stored, true).await;
        None
    })
    .await
}

fn info() -> &'static ResourceInfo {
    Registry::builtin().find(super::GROUP, "v1", "apiservices").expect("apiservices are registered")
}

/// One pass: the local APIServices, then every APIService's status — a Service-backed
/// one's only if `check_remote` (at start the extension servers are left for later).
pub async fn reconcile(
    api: &ApiServer,
    stored: &[Arc<keelson_store::KeyValue>],
    check_remote: bool,
) {
    let info = info();
    let mut objects: Vec<Value> =
        stored.iter().filter_map(|kv| registry::decode(info, kv).ok()).collect();
    let wanted = super::local_api_services(&api.registry());
    for want in &wanted {
        let name = meta::name(want).unwrap_or("");
        let found = objects.iter().position(|o| meta::name(o) == Some(name));
        let result = match found {
            None => create(api, want.clone()).await.map(|created| objects.push(created)),
            Some(i) if is_managed(&objects[i]) && objects[i]["spec"] != want["spec"] => {
                let mut updated = objects[i].clone();
                updated["spec"] = want["spec"].clone();
                replace(api, &objects[i], updated, None).await.map(|o| objects[i] = o)
            }
            Some(_) => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(apiservice = name, error = %e.message, "cannot register a local APIService");
        }
    }
    let mut kept = Vec::new();
    for object in objects {
        let name = meta::name(&object).unwrap_or("").to_owned();
        let unwanted = is_managed(&object) && !wanted.iter().any(|w| meta::name(w) == Some(&name));
        if unwanted {
            if let Err(e) = remove(api, &object).await {
                tracing::warn!(apiservice = name, error = %e.message, "cannot remove an APIService no longer served");
            }
            continue;
        }
        kept.push(object);
    }
    let checks = kept.into_iter().map(|object| async move {
        if !check_remote && object["spec"]["service"].is_object() {
            return Remote::from_object(&object, None);
        }
        let (condition, resources) = availability(api, &object).await;
        let object = match set_available(api, &object, condition).await {
            Ok(written) => written,
            Err(e) => {
                tracing::warn!(apiservice = meta::name(&object), error = %e.message, "cannot set an APIService's status");
                object
            }
        };
        Remote::from_object(&object, resources)
    });
    let remote = futures_util::future::join_all(checks).await.into_iter().flatten().collect();
    api.aggregator.set_remote(remote);
}

fn is_managed(object: &Value) -> bool {
    matches!(object["metadata"]["labels"][AUTOMANAGED].as_str(), Some("onstart" | "true"))
}

async fn create(api: &ApiServer, object: Value) -> ApiResult<Value> {
    let info = info();
    let name = meta::name(&object).unwrap_or("").to_owned();
    let object =
        registry::prepare_create(info, None, object, &Default::default(), &mut Vec::new())?;
    let place = Place { info, namespace: None, name: &name };
    let created = api.objects.create(place, object, false).await?;
    tracing::info!(apiservice = name, "registered a local APIService");
    Ok(created)
}

async fn replace(
    api: &ApiServer,
    old: &Value,
    updated: Value,
    subresource: Option<&str>,
) -> ApiResult<Value> {
    let info = info();
    let name = meta::name(old).unwrap_or("").to_owned();
    let revision = registry::resource_version(old).unwrap_or_default();
    let place = Place { info, namespace: None, name: &name };
    api.objects.rewrite(place, old, updated, revision, subresource).await
}

async fn remove(api: &ApiServer, object: &Value) -> ApiResult<()> {
    let name = meta::name(object).unwrap_or("").to_owned();
    let revision = registry::resource_version(object).unwrap_or_default();
    api.objects.remove(Place { info: info(), namespace: None, name: &name }, revision, false).await
}

/// The `Available` condition an APIService should have now (without its transition
/// time), and the resource list its extension server serves, if it answered.
async fn availability(api: &ApiServer, object: &Value) -> (Value, Option<Value>) {
    let condition = |status: &str, reason: &str, message: &str| json!({ "type": "Available", "status": status, "reason": reason, "message": message });
    let Some(remote) = Remote::from_object(object, None) else {
        return (condition("True", "Local", "Local APIServices are always available"), None);
    };
    let (address, port) = match proxy::resolve(api, &remote.service).await {
        Ok(found) => found,
        Err(why) => {
            let status = if why.reason.ends_with("AccessError") { "Unknown" } else { "False" };
            return (condition(status, why.reason, &why.message), None);
        }
    };
    match discovery_check(api, &remote, &address, port).await {
        Ok(resources) => (condition("True", "Passed", "all checks passed"), resources),
        Err(message) => (condition("False", "FailedDiscoveryCheck", &message), None),
    }
}

/// GETs `/apis/<group>/<version>` from the extension server as
/// `system:kube-aggregator` in `system:masters`, its certificate unchecked (as
/// upstream's check: a best-effort probe); 2xx and 3xx pass. Returns the resource list
/// when the answer is one.
async fn discovery_check(
    api: &ApiServer,
    remote: &Remote,
    address: &str,
    port: u16,
) -> Result<Option<Value>, String> {
    let host = if address.contains(':') { format!("[{address}]") } else { address.to_owned() };
    let path = if remote.group.is_empty() {
        format!("/api/{}", remote.version)
    } else {
        format!("/apis/{}/{}", remote.group, remote.version)
    };
    let url = format!("https://{host}:{port}{path}");
    let failed = |why: String| format!("failing or missing response from {url}: {why}");
    let mut headers = http::HeaderMap::new();
    let user = crate::request::User {
        name: "system:kube-aggregator".into(),
        groups: vec!["system:masters".into()],
        ..Default::default()
    };
    proxy::set_user_headers(&mut headers, &user);
    let mut builder = http::Request::get(path.as_str())
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::ACCEPT, "application/json");
    if let Some(h) = builder.headers_mut() {
        h.extend(headers);
    }
    let request = builder.body(Full::new(Bytes::new())).map_err(|e| failed(e.to_string()))?;
    let target = Target { address, port, service: &remote.service, ca_bundle: None };
    let exchange = async {
        let response = proxy::call(api.aggregator.front_proxy(), &target, request)
            .await
            .map_err(|e| failed(format!("Get {url:?}: {e}")))?;
        let status = response.status();
        if !(200..300).contains(&status.as_u16()) {
            return Err(failed(format!("bad status from {url}: {}", status.as_u16())));
        }
        let body = Limited::new(response.into_body(), crate::MAX_REQUEST_BYTES)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Ok(serde_json::from_slice::<Value>(&body).ok().filter(|v| v["kind"] == "APIResourceList"))
    };
    match tokio::time::timeout(CHECK_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out waiting for {url}")),
    }
}

/// Writes the `Available` condition through `status` unless it says that already; its
/// `lastTransitionTime` moves only when its status does.
async fn set_available(api: &ApiServer, object: &Value, mut wanted: Value) -> ApiResult<Value> {
    let conditions: Vec<Value> =
        object["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let current = conditions.iter().find(|c| c["type"] == "Available").cloned();
    let current = current.as_ref();
    let same = |field: &str| current.is_some_and(|c| c[field] == wanted[field]);
    if same("status") && same("reason") && same("message") {
        return Ok(object.clone());
    }
    let since = current
        .filter(|c| c["status"] == wanted["status"])
        .and_then(|c| c["lastTransitionTime"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(meta::now);
    wanted["lastTransitionTime"] = json!(since);
    let mut others: Vec<Value> =
        conditions.into_iter().filter(|c| c["type"] != "Available").collect();
    others.insert(0, wanted);
    let mut updated = object.clone();
    updated["status"] = json!({ "conditions": others });
    if current.map(|c| &c["status"]) != Some(&updated["status"]["conditions"][0]["status"]) {
        tracing::info!(
            apiservice = meta::name(object),
            status = %updated["status"]["conditions"][0]["status"],
            reason = %updated["status"]["conditions"][0]["reason"],
            "changing APIService availability"
        );
    }
    replace(api, object, updated, Some("status")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_where_apiservices_are_stored() {
        assert_eq!(registry::directory(info(), None), PREFIX);
    }

    /// Every built-in group-version gets its local APIService at start, available.
    #[tokio::test]
    async fn local_api_services_are_registered_and_available() {
        let api = crate::ApiServer::for_tests().await;
        let stored = api.store.list(PREFIX, Default::default()).await.expect("list");
        let stored: Vec<_> = stored.items.into_iter().map(Arc::new).collect();
        reconcile(&api, &stored, true).await;
        let place = Place { info: info(), namespace: None, name: "v1.apps" };
        let (apps, _) = api.objects.get(place).await.expect("v1.apps");
        assert_eq!(apps["spec"]["groupPriorityMinimum"], 17800);
        let condition = &apps["status"]["conditions"][0];
        assert_eq!(condition["type"], "Available");
        assert_eq!(condition["status"], "True");
        assert_eq!(condition["reason"], "Local");
    }
}
