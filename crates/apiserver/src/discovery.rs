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

/// `version.Info`'s fields in Go struct order.
const VERSION_INFO: crate::gojson::Order = crate::gojson::Order(&[
    ("major", &crate::gojson::KEYS),
    ("minor", &crate::gojson::KEYS),
    ("gitVersion", &crate::gojson::KEYS),
    ("gitCommit", &crate::gojson::KEYS),
    ("gitTreeState", &crate::gojson::KEYS),
    ("buildDate", &crate::gojson::KEYS),
    ("goVersion", &crate::gojson::KEYS),
    ("compiler", &crate::gojson::KEYS),
    ("platform", &crate::gojson::KEYS),
]);

/// `/version`, indented for every client (upstream writes it with `WriteRawJSON`, which
/// is `json.MarshalIndent`).
pub fn version() -> Response {
    let info = crate::gojson::to_vec(
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
        &VERSION_INFO,
    );
    crate::response::json_body(crate::gojson::indent(&info))
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
            .chain(remote_aggregated(api, &registry))
            .collect();
        return aggregated(items);
    }
    let remote = crate::aggregator::remote_groups(&api.aggregator.remote(), &registry);
    let groups: Vec<Value> = registry
        .groups()
        .iter()
        .map(group_json)
        .chain(remote.iter().map(|(name, versions)| remote_group_json(name, versions)))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }),
    )
}

pub fn group(api: &ApiServer, name: &str) -> ApiResult<Response> {
    let registry = api.registry();
    let found = registry.groups().into_iter().find(|g| g.name == name).map(|g| group_json(&g));
    let remote = || {
        crate::aggregator::remote_groups(&api.aggregator.remote(), &registry)
            .into_iter()
            .find(|(group, _)| group == name)
            .map(|(group, versions)| remote_group_json(&group, &versions))
    };
    let mut value = found.or_else(remote).ok_or_else(ApiError::path_not_found)?;
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

/// An extension server's group in `/apis`, from its APIServices (upstream's
/// `convertToDiscoveryAPIGroup`): every version, available or not, the first preferred.
fn remote_group_json(name: &str, versions: &[crate::aggregator::Remote]) -> Value {
    let listed: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{name}/{}", v.version), "version": v.version }))
        .collect();
    json!({ "name": name, "versions": listed, "preferredVersion": listed.first().cloned().unwrap_or(Value::Null) })
}

/// Extension servers' groups in aggregated discovery, from the resource lists their
/// availability checks read: `Current` while available; a version never read is left
/// out.
fn remote_aggregated(api: &ApiServer, registry: &Registry) -> Vec<Value> {
    crate::aggregator::remote_groups(&api.aggregator.remote(), registry)
        .into_iter()
        .filter_map(|(name, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .filter_map(|v| {
                    let list = v.resources.as_ref()?;
                    let freshness = if v.available { "Current" } else { "Stale" };
                    Some(json!({ "version": v.version, "resources": resource_list_v2(list), "freshness": freshness }))
                })
                .collect();
            (!versions.is_empty())
                .then(|| json!({ "metadata": { "name": name }, "versions": versions }))
        })
        .collect()
}

/// An `APIResourceList`'s resources in aggregated discovery's form.
fn resource_list_v2(list: &Value) -> Vec<Value> {
    let entries: Vec<&Value> = list["resources"].as_array().into_iter().flatten().collect();
    let kind = |e: &Value| {
        json!({
            "group": e["group"].as_str().unwrap_or(""),
            "version": e["version"].as_str().unwrap_or(""),
            "kind": e["kind"].as_str().unwrap_or(""),
        })
    };
    entries
        .iter()
        .filter_map(|e| {
            let name = e["name"].as_str()?;
            if name.contains('/') {
                return None;
            }
            let prefix = format!("{name}/");
            let subresources: Vec<Value> = entries
                .iter()
                .filter_map(|s| {
                    let sub = s["name"].as_str()?.strip_prefix(prefix.as_str())?;
                    Some(
                        json!({ "subresource": sub, "responseKind": kind(s), "verbs": s["verbs"] }),
                    )
                })
                .collect();
            let namespaced = e["namespaced"].as_bool().unwrap_or(false);
            let mut entry = json!({
                "resource": name,
                "responseKind": kind(e),
                "scope": if namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": e["singularName"].as_str().unwrap_or(""),
                "verbs": e["verbs"],
            });
            for field in ["shortNames", "categories"] {
                if e[field].as_array().is_some_and(|a| !a.is_empty()) {
                    entry[field] = e[field].clone();
                }
            }
            if !subresources.is_empty() {
                entry["subresources"] = Value::Array(subresources);
            }
            Some(entry)
        })
        .collect()
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
        if let Some(hash) = storage_version_hash(r) {
            entry["storageVersionHash"] = json!(hash);
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
    let mut document = json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list });
    if group.is_empty() {
        // The legacy group's list says no apiVersion, as upstream's.
        document.as_object_mut().map(|d| d.remove("apiVersion"));
    }
    Ok(json_response(StatusCode::OK, &document))
}

/// Upstream's `storageVersionHash` of a stored resource: the first 8 bytes of the
/// SHA-256 of `<group>/<version>/<kind>` of its storage version, in base64. Clients
/// (the storage version migrator) compare it to notice a change of storage version.
fn storage_version_hash(r: &ResourceInfo) -> Option<String> {
    use base64::Engine;
    let storage = r.storage_version?;
    let gvk = format!("{}/{}/{}", storage.group, storage.version, storage.kind);
    let digest = ring::digest::digest(&ring::digest::SHA256, gvk.as_bytes());
    Some(base64::engine::general_purpose::STANDARD.encode(&digest.as_ref()[..8]))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `<group-version> <plural> <storageVersionHash>` (`-`: none) of every resource a
    /// 1.34 kube-apiserver serves in Keelson's group-versions, from upstream's
    /// `api/discovery` fixtures.
    const UPSTREAM: &str = "
v1 bindings -
v1 componentstatuses -
v1 configmaps qFsyl6wFWjQ=
v1 endpoints fWeeMqaN/OA=
v1 events r2yiGXH7wu8=
v1 limitranges EBKMFVe6cwo=
v1 namespaces Q3oi5N2YM8M=
v1 nodes XwShjMxG9Fs=
v1 persistentvolumeclaims QWTyNDq0dC4=
v1 persistentvolumes HN/zwEC+JgM=
v1 pods xPOwRZ+Yhw8=
v1 podtemplates LIXB2x4IFpk=
v1 replicationcontrollers Jond2If31h0=
v1 resourcequotas 8uhSgffRX6w=
v1 secrets S6u1pOWzb84=
v1 serviceaccounts pbx9ZvyFpBE=
v1 services 0/CO1lhkEBI=
admissionregistration.k8s.io/v1 mutatingwebhookconfigurations Sqi0GUgDaX0=
admissionregistration.k8s.io/v1 validatingadmissionpolicies 6OxvlMmQ6is=
admissionregistration.k8s.io/v1 validatingadmissionpolicybindings v9715VZqakg=
admissionregistration.k8s.io/v1 validatingwebhookconfigurations B0wHjQmsGNk=
apiextensions.k8s.io/v1 customresourcedefinitions jfWCUB31mvA=
apiregistration.k8s.io/v1 apiservices InPBPD7+PqM=
apps/v1 controllerrevisions 85nkx63pcBU=
apps/v1 daemonsets dd7pWHUlMKQ=
apps/v1 deployments 8aSe+NMegvE=
apps/v1 replicasets P1RzHs8/mWQ=
apps/v1 statefulsets H+vl74LkKdo=
authentication.k8s.io/v1 selfsubjectreviews -
authentication.k8s.io/v1 tokenreviews -
authorization.k8s.io/v1 localsubjectaccessreviews -
authorization.k8s.io/v1 selfsubjectaccessreviews -
authorization.k8s.io/v1 selfsubjectrulesreviews -
authorization.k8s.io/v1 subjectaccessreviews -
autoscaling/v1 horizontalpodautoscalers qwQve8ut294=
autoscaling/v2 horizontalpodautoscalers qwQve8ut294=
batch/v1 cronjobs sd5LIXh4Fjs=
batch/v1 jobs mudhfqk/qZY=
certificates.k8s.io/v1 certificatesigningrequests 95fRKMXA+00=
coordination.k8s.io/v1 leases gqkMMb/YqFM=
discovery.k8s.io/v1 endpointslices qgS0xkrxYAI=
events.k8s.io/v1 events r2yiGXH7wu8=
flowcontrol.apiserver.k8s.io/v1 flowschemas GJVAJZSZBIw=
flowcontrol.apiserver.k8s.io/v1 prioritylevelconfigurations Kir5PVfvNeI=
networking.k8s.io/v1 ingressclasses l/iqIbDgFyQ=
networking.k8s.io/v1 ingresses 39NQlfNR+bo=
networking.k8s.io/v1 ipaddresses 3f/plJFChNE=
networking.k8s.io/v1 networkpolicies YpfwF18m1G8=
networking.k8s.io/v1 servicecidrs gNLvruQhW2g=
node.k8s.io/v1 runtimeclasses WQTu1GL3T2Q=
policy/v1 poddisruptionbudgets EVWiDmWqyJw=
rbac.authorization.k8s.io/v1 clusterrolebindings 48tpQ8gZHFc=
rbac.authorization.k8s.io/v1 clusterroles bYE5ZWDrJ44=
rbac.authorization.k8s.io/v1 rolebindings eGsCzGH6b1g=
rbac.authorization.k8s.io/v1 roles 7FuwZcIIItM=
resource.k8s.io/v1 deviceclasses weQRMT6DeYM=
resource.k8s.io/v1 resourceclaims EJAWH5WrAYg=
resource.k8s.io/v1 resourceclaimtemplates 24m0okHrUtk=
resource.k8s.io/v1 resourceslices z6Bc9vgk6yE=
scheduling.k8s.io/v1 priorityclasses 1QwjyaZjj3Y=
storage.k8s.io/v1 csidrivers hL6j/rwBV5w=
storage.k8s.io/v1 csinodes Pe62DkZtjuo=
storage.k8s.io/v1 csistoragecapacities xeVl+2Ly1kE=
storage.k8s.io/v1 storageclasses K+m6uJwbjGY=
storage.k8s.io/v1 volumeattachments tJx/ezt6UDU=
storage.k8s.io/v1 volumeattributesclasses Bl3MtjZ/n/s=
";

    #[test]
    fn storage_version_hashes_are_upstreams() {
        for r in Registry::builtin().resources() {
            let line = format!("{} {} ", r.api_version(), r.plural);
            let expected = UPSTREAM
                .lines()
                .find_map(|l| l.strip_prefix(line.as_str()))
                .unwrap_or_else(|| panic!("{line}is not in upstream's fixtures"));
            let hash = storage_version_hash(r);
            assert_eq!(hash.as_deref().unwrap_or("-"), expected, "{line}");
        }
    }
}
