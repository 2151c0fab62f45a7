//! The aggregation layer, as kube-aggregator runs in front of kube-apiserver:
//!
//! - `APIService` objects (`apiregistration.k8s.io/v1`): a *local* one for every
//!   group-version this server serves — built-in ones with upstream's priorities
//!   ([`PRIORITIES`], kube-apiserver's `apiVersionPriorities`), custom ones as upstream's
//!   crdRegistrationController makes them — kept by [`controller`] (upstream's
//!   autoregister controller), which also keeps every APIService's `Available` condition
//!   (upstream's local and remote availability controllers);
//! - [`proxy`]: requests for a group-version an APIService backs with a Service go to
//!   that extension API server, over TLS with the front-proxy client certificate, the
//!   user in request headers (`X-Remote-User`, `X-Remote-Group`, `X-Remote-Extra-*`);
//! - discovery: the extension servers' groups join `/apis` (from the APIServices, as
//!   upstream's `apisHandler`) and aggregated discovery (from the resource lists the
//!   availability check read) — see [`Aggregator::remote`].
//!
//! The trust an extension server needs to accept those headers is published by
//! `authn::requestheader` (`kube-system/extension-apiserver-authentication`).
//!
//! Must never forward a client's own credentials (`Authorization`, client
//! certificates, `Impersonate-*`) to an extension server, nor proxy before the request
//! is authenticated and authorized.

pub mod controller;
pub mod proxy;

use std::sync::{Arc, RwLock};

use keelson_api::Registry;
use serde_json::{Value, json};

/// What the API server needs for request-header authentication and for proxying to
/// extension API servers (kube-apiserver's `--client-ca-file`, `--requestheader-*` and
/// `--proxy-client-*` flags).
#[derive(Clone, Debug)]
pub struct FrontProxy {
    /// The CA client certificates name their user with (`client-ca-file`).
    pub client_ca_pem: String,
    /// The CA of front proxies (`--requestheader-client-ca-file`).
    pub ca_pem: String,
    /// The common names a front proxy's certificate may have
    /// (`--requestheader-allowed-names`).
    pub allowed_names: Vec<String>,
    /// The certificate and key this server presents to extension API servers.
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl FrontProxy {
    /// The front proxy of `keelson server`: the cluster PKI's front-proxy CA and its
    /// `front-proxy-client` certificate, the one allowed name. The server's TLS must
    /// accept that CA's certificates (`Pki::server_config_with_front_proxy`).
    pub fn from_pki(pki: &keelson_pki::Pki) -> FrontProxy {
        let (cert, key) = pki.front_proxy_client();
        FrontProxy {
            client_ca_pem: pki.ca_pem().to_owned(),
            ca_pem: pki.front_proxy_ca_pem().to_owned(),
            allowed_names: vec![keelson_pki::FRONT_PROXY_CLIENT.to_owned()],
            client_cert_pem: cert.to_owned(),
            client_key_pem: key.to_owned(),
        }
    }
}

/// The request headers of upstream's request-header authentication, as kubeadm and
/// k3s configure them (`--requestheader-username-headers` and the others).
pub const USERNAME_HEADERS: &[&str] = &["X-Remote-User"];
pub const GROUP_HEADERS: &[&str] = &["X-Remote-Group"];
pub const EXTRA_HEADER_PREFIXES: &[&str] = &["X-Remote-Extra-"];

/// The label upstream's autoregister controller puts on the APIServices it manages:
/// `onstart` for built-in group-versions, `true` for custom resources'.
pub const AUTOMANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";

/// kube-apiserver's `apiVersionPriorities` (`cmd/kube-apiserver/app/aggregator.go`, over
/// `DefaultGenericAPIServicePriorities`) for the group-versions Keelson serves:
/// (group, version, groupPriorityMinimum, versionPriority). `apiregistration.k8s.io`
/// has none: the aggregator serves it itself, never through an APIService.
pub const PRIORITIES: &[(&str, &str, i64, i64)] = &[
    ("", "v1", 18000, 1),
    ("apps", "v1", 17800, 15),
    ("events.k8s.io", "v1", 17750, 15),
    ("authentication.k8s.io", "v1", 17700, 15),
    ("authorization.k8s.io", "v1", 17600, 15),
    ("autoscaling", "v1", 17500, 15),
    ("autoscaling", "v2", 17500, 30),
    ("batch", "v1", 17400, 15),
    ("certificates.k8s.io", "v1", 17300, 15),
    ("networking.k8s.io", "v1", 17200, 15),
    ("policy", "v1", 17100, 15),
    ("rbac.authorization.k8s.io", "v1", 17000, 15),
    ("storage.k8s.io", "v1", 16800, 15),
    ("apiextensions.k8s.io", "v1", 16700, 15),
    ("admissionregistration.k8s.io", "v1", 16700, 15),
    ("scheduling.k8s.io", "v1", 16600, 15),
    ("coordination.k8s.io", "v1", 16500, 15),
    ("node.k8s.io", "v1", 16300, 15),
    ("discovery.k8s.io", "v1", 16200, 15),
    ("resource.k8s.io", "v1", 16200, 21),
    ("flowcontrol.apiserver.k8s.io", "v1", 16100, 21),
];

/// The group of the APIService objects themselves.
pub const GROUP: &str = "apiregistration.k8s.io";

/// The local APIServices this server should have for what `registry` serves: one per
/// built-in group-version with a priority (label `onstart`), one per custom
/// group-version (priority 1000/100, label `true`), as upstream's autoregister and
/// crdRegistration controllers make them.
pub fn local_api_services(registry: &Registry) -> Vec<Value> {
    let mut wanted = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for info in registry.resources() {
        if info.group == GROUP || !seen.insert((info.group, info.version)) {
            continue;
        }
        let (priorities, managed) = if info.is_custom() {
            (Some((1000, 100)), "true")
        } else {
            let found = PRIORITIES
                .iter()
                .find(|(g, v, _, _)| (*g, *v) == (info.group, info.version))
                .map(|&(_, _, group, version)| (group, version));
            (found, "onstart")
        };
        let Some((group_priority, version_priority)) = priorities else {
            tracing::info!(
                group = info.group,
                version = info.version,
                "no APIService priority for a group-version: skipped, as upstream skips it"
            );
            continue;
        };
        wanted.push(json!({
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {
                "name": format!("{}.{}", info.version, info.group),
                "labels": { AUTOMANAGED: managed },
            },
            "spec": {
                "group": info.group,
                "version": info.version,
                "groupPriorityMinimum": group_priority,
                "versionPriority": version_priority,
            },
        }));
    }
    wanted
}

/// An APIService backed by a Service, as the availability controller last saw it.
#[derive(Clone, Debug)]
pub struct Remote {
    pub name: String,
    pub group: String,
    pub version: String,
    pub group_priority: i64,
    pub version_priority: i64,
    pub service: proxy::ServiceRef,
    /// The PEM the server's certificate must chain to; `None` with
    /// `insecureSkipTLSVerify`.
    pub ca_bundle: Option<String>,
    pub insecure: bool,
    /// Whether its `Available` condition is True.
    pub available: bool,
    /// The `APIResourceList` its discovery check last read.
    pub resources: Option<Value>,
}

impl Remote {
    /// Reads a stored APIService; `None` for a local one.
    pub fn from_object(object: &Value, resources: Option<Value>) -> Option<Remote> {
        let spec = &object["spec"];
        let service = &spec["service"];
        if !service.is_object() {
            return None;
        }
        let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
        let ca_bundle = spec["caBundle"].as_str().and_then(|b| {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
            String::from_utf8(bytes).ok()
        });
        let available = object["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Available" && c["status"] == "True");
        Some(Remote {
            name: crate::meta::name(object).unwrap_or("").to_owned(),
            group: text(&spec["group"]),
            version: text(&spec["version"]),
            group_priority: spec["groupPriorityMinimum"].as_i64().unwrap_or(0),
            version_priority: spec["versionPriority"].as_i64().unwrap_or(0),
            service: proxy::ServiceRef {
                namespace: text(&service["namespace"]),
                name: text(&service["name"]),
                port: service["port"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(443),
            },
            ca_bundle,
            insecure: spec["insecureSkipTLSVerify"].as_bool().unwrap_or(false),
            available,
            resources,
        })
    }
}

/// The aggregator's state: how it proxies, and the Service-backed APIServices.
#[derive(Default)]
pub struct Aggregator {
    front_proxy: Option<FrontProxy>,
    remote: RwLock<Arc<Vec<Remote>>>,
}

impl Aggregator {
    pub fn new(front_proxy: Option<FrontProxy>) -> Aggregator {
        Aggregator { front_proxy, remote: Default::default() }
    }

    pub fn front_proxy(&self) -> Option<&FrontProxy> {
        self.front_proxy.as_ref()
    }

    /// The Service-backed APIServices, sorted by group priority (highest first), then
    /// group name, then version priority (highest first), as upstream orders discovery.
    pub fn remote(&self) -> Arc<Vec<Remote>> {
        self.remote.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The Service-backed APIService serving `group`/`version`, if any.
    pub fn backing(&self, group: &str, version: &str) -> Option<Remote> {
        self.remote().iter().find(|r| r.group == group && r.version == version).cloned()
    }

    fn set_remote(&self, mut remote: Vec<Remote>) {
        remote.sort_by(|a, b| {
            (b.group_priority, &a.group, b.version_priority, &a.version).cmp(&(
                a.group_priority,
                &b.group,
                a.version_priority,
                &b.version,
            ))
        });
        *self.remote.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(remote);
    }
}

/// The groups only extension servers serve, each with its Service-backed versions in
/// discovery order (a group takes the highest priority of its versions).
pub fn remote_groups(remote: &[Remote], registry: &Registry) -> Vec<(String, Vec<Remote>)> {
    let local: std::collections::HashSet<&str> = registry.groups().iter().map(|g| g.name).collect();
    let mut groups: Vec<(String, Vec<Remote>)> = Vec::new();
    for r in remote.iter().filter(|r| !local.contains(r.group.as_str())) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => versions.push(r.clone()),
            None => groups.push((r.group.clone(), vec![r.clone()])),
        }
    }
    for (_, versions) in &mut groups {
        versions.sort_by_key(|v| std::cmp::Reverse(v.version_priority));
    }
    groups.sort_by_key(|(name, versions)| {
        (std::cmp::Reverse(versions.iter().map(|v| v.group_priority).max()), name.clone())
    });
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every built-in group-version but the aggregator's own gets a local APIService: a
    /// new group must get its priority from upstream's table here.
    #[test]
    fn every_built_in_group_version_has_a_priority() {
        let wanted = local_api_services(Registry::builtin());
        let names: Vec<&str> =
            wanted.iter().filter_map(|a| a["metadata"]["name"].as_str()).collect();
        for info in Registry::builtin().resources().filter(|r| r.group != GROUP) {
            let name = format!("{}.{}", info.version, info.group);
            assert!(names.contains(&name.as_str()), "{name} has no APIService");
        }
        assert!(names.contains(&"v1."), "{names:?}");
        let apps = wanted.iter().find(|a| a["metadata"]["name"] == "v1.apps").expect("v1.apps");
        assert_eq!(apps["spec"]["groupPriorityMinimum"], 17800);
        assert_eq!(apps["spec"]["versionPriority"], 15);
    }
}
