//! Service IPs and node ports.
//!
//! A cluster IP is claimed by creating the `networking.k8s.io/v1` `IPAddress` object
//! named after it (as upstream's allocator does since 1.33), a node port by creating the
//! key `/registry/keelson/nodeports/<port>`: the store's create-if-absent makes each
//! claim exclusive across requests and servers, and both outlive restarts. Claims are
//! released when the service lets go of them. Must never hand one IP or port to two
//! services.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use keelson_api::Registry;
use serde_json::{Value, json};

use crate::ApiServer;
use crate::meta;
use crate::registry::Place;
use crate::registry::hooks::{Hooks, Undo};
use crate::status::{ApiError, ApiResult, Cause};

/// The Service storage's hooks (upstream's `pkg/registry/core/service/storage`): claims
/// on create and update, released when the write fails, when ports are dropped and when
/// the service is deleted.
pub struct Allocation;

#[async_trait]
impl Hooks for Allocation {
    async fn begin_create(
        &self,
        api: &ApiServer,
        object: &mut Value,
        dry_run: bool,
    ) -> ApiResult<Option<Undo>> {
        Ok(Some(undo(allocate(api, object, dry_run).await?)))
    }

    async fn begin_update(
        &self,
        api: &ApiServer,
        old: &Value,
        object: &mut Value,
        dry_run: bool,
    ) -> ApiResult<Option<Undo>> {
        Ok(Some(undo(reallocate(api, old, object, dry_run).await?)))
    }

    async fn after_update(&self, api: &ApiServer, old: &Value, new: &Value) {
        release_dropped(api, old, new).await;
    }

    async fn after_delete(&self, api: &ApiServer, object: &Value) {
        release_service(api, object).await;
    }
}

fn undo(claims: Claims) -> Undo {
    Undo::new(move |api| Box::pin(release(api, claims)))
}

/// The node port range, as upstream's default `--service-node-port-range`.
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;
const NODE_PORT_KEYS: &str = "/registry/keelson/nodeports/";

/// An IPv4 CIDR, e.g. the service CIDR `10.43.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// Why text is not a service CIDR.
#[derive(Debug, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not a CIDR (a.b.c.d/n)")]
    NoPrefix(String),
    #[error("{text:?}: {error}")]
    Address { text: String, error: std::net::AddrParseError },
    #[error("{text:?}: {error}")]
    Prefix { text: String, error: std::num::ParseIntError },
    #[error("{0:?}: the prefix must be between /8 and /30")]
    PrefixLength(String),
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, CidrError> {
        let (ip, prefix) =
            text.split_once('/').ok_or_else(|| CidrError::NoPrefix(text.to_owned()))?;
        let ip: Ipv4Addr =
            ip.parse().map_err(|error| CidrError::Address { text: text.to_owned(), error })?;
        let prefix: u8 =
            prefix.parse().map_err(|error| CidrError::Prefix { text: text.to_owned(), error })?;
        if !(8..=30).contains(&prefix) {
            return Err(CidrError::PrefixLength(text.to_owned()));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr { base: u32::from(ip) & mask, prefix })
    }

    fn size(&self) -> u32 {
        1 << (32 - self.prefix)
    }

    /// The `n`th address of the range.
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + n)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & (u32::MAX << (32 - self.prefix)) == self.base
    }

    /// Usable service IPs: not the network address, not the broadcast address.
    fn usable(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip).wrapping_sub(self.base);
        self.contains(ip) && n != 0 && n != self.size() - 1
    }
}

fn needs_cluster_ip(spec: &Value) -> bool {
    spec["type"] != "ExternalName" && spec["clusterIP"] != "None"
}

fn needs_node_ports(spec: &Value) -> bool {
    spec["type"] == "NodePort" || spec["type"] == "LoadBalancer"
}

fn invalid(name: &str, field: &str, value: Value, detail: &str) -> ApiError {
    ApiError::invalid("", "Service", name, vec![Cause::invalid(field, &value, detail)])
}

/// What a service claimed, to release if its write fails.
#[derive(Default)]
pub struct Claims {
    ip: Option<Ipv4Addr>,
    ports: Vec<u16>,
}

/// Claims the cluster IP and node ports a new service needs, filling them in.
async fn allocate(api: &ApiServer, object: &mut Value, dry_run: bool) -> ApiResult<Claims> {
    let name = meta::name(object).unwrap_or_default().to_owned();
    let namespace = meta::str_field(object, "namespace").unwrap_or("default").to_owned();
    let mut claims = Claims::default();
    let spec = &mut object["spec"];
    if needs_cluster_ip(spec) {
        let ip = match spec["clusterIP"].as_str().filter(|s| !s.is_empty()) {
            Some(wanted) => {
                let ip: Ipv4Addr = wanted.parse().map_err(|_| {
                    invalid(&name, "spec.clusterIPs", json!([wanted]), "must be a valid IP address")
                })?;
                if !api.service_cidr.usable(ip) {
                    return Err(invalid(
                        &name,
                        "spec.clusterIPs",
                        json!([wanted]),
                        &format!(
                            "failed to allocate IP {wanted}: the provided IP ({wanted}) is not in the valid range. The range of valid IPs is {}/{}",
                            api.service_cidr.nth(0),
                            api.service_cidr.prefix
                        ),
                    ));
                }
                if !dry_run && !claim_ip(api, ip, &namespace, &name).await? {
                    return Err(invalid(
                        &name,
                        "spec.clusterIPs",
                        json!([wanted]),
                        &format!(
                            "failed to allocate IP {wanted}: provided IP is already allocated"
                        ),
                    ));
                }
                ip
            }
            None => pick_ip(api, &namespace, &name, dry_run).await?,
        };
        claims.ip = (!dry_run).then_some(ip);
        spec["clusterIP"] = json!(ip.to_string());
        spec["clusterIPs"] = json!([ip.to_string()]);
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
    }
    if needs_node_ports(spec) {
        let ports = allocate_node_ports(api, spec, &[], dry_run).await;
        match ports {
            Ok(ports) => claims.ports = ports,
            Err(e) => {
                release(api, claims).await;
                return Err(e);
            }
        }
    }
    Ok(claims)
}

/// Carries the old service's IP over and adjusts node ports on update.
async fn reallocate(
    api: &ApiServer,
    old: &Value,
    object: &mut Value,
    dry_run: bool,
) -> ApiResult<Claims> {
    let name = meta::name(object).unwrap_or_default().to_owned();
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        let given = &object["spec"][field];
        let before = &old["spec"][field];
        if field == "clusterIP"
            && !given.is_null()
            && given != ""
            && given != before
            && !before.is_null()
        {
            return Err(invalid(
                &name,
                "spec.clusterIPs[0]",
                given.clone(),
                "may not change once set",
            ));
        }
        if !before.is_null() {
            object["spec"][field] = before.clone();
        }
    }
    let held: Vec<u16> = node_ports(&old["spec"]);
    let mut claims = Claims::default();
    if needs_node_ports(&object["spec"]) {
        claims.ports = allocate_node_ports(api, &mut object["spec"], &held, dry_run).await?;
    }
    Ok(claims)
}

/// Node ports `old` held that `new` no longer does.
async fn release_dropped(api: &ApiServer, old: &Value, new: &Value) {
    let kept = node_ports(&new["spec"]);
    let dropped: Vec<u16> =
        node_ports(&old["spec"]).into_iter().filter(|p| !kept.contains(p)).collect();
    release(api, Claims { ip: None, ports: dropped }).await;
}

fn node_ports(spec: &Value) -> Vec<u16> {
    spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .collect()
}

/// Releases everything a deleted service held.
async fn release_service(api: &ApiServer, object: &Value) {
    let ip = object["spec"]["clusterIP"].as_str().and_then(|s| s.parse().ok());
    release(api, Claims { ip, ports: node_ports(&object["spec"]) }).await;
}

async fn release(api: &ApiServer, claims: Claims) {
    if let Some(ip) = claims.ip
        && let Some(info) = Registry::builtin().find("networking.k8s.io", "v1", "ipaddresses")
    {
        let name = ip.to_string();
        let place = Place { info, namespace: None, name: &name };
        if let Ok((_, revision)) = api.objects.get(place).await
            && let Err(e) = api.objects.remove(place, revision, false).await
        {
            tracing::warn!(ip = %ip, error = %e.message, "cannot release a service IP");
        }
    }
    for port in claims.ports {
        let key = format!("{NODE_PORT_KEYS}{port}");
        if let Ok(Some(kv)) = api.store.get(&key).await
            && let Err(e) = api.store.delete(&key, kv.mod_revision).await
        {
            tracing::warn!(port, error = %e, "cannot release a node port");
        }
    }
}

/// Claims `ip` for the service; `false` if another holds it.
async fn claim_ip(api: &ApiServer, ip: Ipv4Addr, namespace: &str, name: &str) -> ApiResult<bool> {
    let info = Registry::builtin()
        .find("networking.k8s.io", "v1", "ipaddresses")
        .ok_or_else(|| ApiError::internal("ipaddresses are not registered"))?;
    let address = json!({
        "metadata": {
            "name": ip.to_string(),
            "labels": { "ipaddress.kubernetes.io/ip-family": "IPv4", "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io" },
        },
        "spec": { "parentRef": { "group": "", "resource": "services", "namespace": namespace, "name": name } },
    });
    let address =
        crate::registry::prepare_create(info, None, address, &Default::default(), &mut Vec::new())?;
    let ip_name = ip.to_string();
    match api.objects.create(Place { info, namespace: None, name: &ip_name }, address, false).await
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_already_exists() => Ok(false),
        Err(e) => Err(e),
    }
}

/// A free IP of the range: random probes, then a scan.
async fn pick_ip(
    api: &ApiServer,
    namespace: &str,
    name: &str,
    dry_run: bool,
) -> ApiResult<Ipv4Addr> {
    let cidr = api.service_cidr;
    let usable = cidr.size() - 2;
    let start =
        u32::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..4].try_into().unwrap_or([0; 4]))
            % usable;
    for probe in 0..usable {
        // Random start, then a walk: a few probes when the range is empty, all of them
        // when it is nearly full.
        let ip = cidr.nth(1 + (start + probe) % usable);
        if !cidr.usable(ip) || ip == cidr.nth(1) {
            continue;
        }
        if dry_run {
            return Ok(ip);
        }
        if claim_ip(api, ip, namespace, name).await? {
            return Ok(ip);
        }
    }
    Err(ApiError::internal(format!(
        "failed to allocate a serviceIP: range is full ({}/{})",
        cidr.nth(0),
        cidr.prefix
    )))
}

/// Fills in the node ports `spec` lacks and claims the ones it names that `held` does not
/// already cover; returns the ports newly claimed.
async fn allocate_node_ports(
    api: &ApiServer,
    spec: &mut Value,
    held: &[u16],
    dry_run: bool,
) -> ApiResult<Vec<u16>> {
    let mut claimed = Vec::new();
    let count = spec["ports"].as_array().map_or(0, Vec::len);
    for i in 0..count {
        let wanted = spec["ports"][i]["nodePort"].as_u64();
        let port = match wanted {
            Some(p) if held.contains(&(p as u16)) => continue,
            Some(p) => {
                let p = u16::try_from(p).ok().filter(|p| NODE_PORTS.contains(p)).ok_or_else(|| {
                    invalid("", &format!("spec.ports[{i}].nodePort"), json!(p), "provided port is not in the valid range. The range of valid ports is 30000-32767")
                })?;
                if !dry_run && !claim_port(api, p).await? {
                    release(api, Claims { ip: None, ports: claimed }).await;
                    return Err(invalid(
                        "",
                        &format!("spec.ports[{i}].nodePort"),
                        json!(p),
                        "provided port is already allocated",
                    ));
                }
                p
            }
            None => {
                let span = u32::from(NODE_PORTS.end() - NODE_PORTS.start()) + 1;
                let start = u32::from_le_bytes(
                    uuid::Uuid::new_v4().as_bytes()[..4].try_into().unwrap_or([0; 4]),
                ) % span;
                let mut found = None;
                for probe in 0..span {
                    let p = NODE_PORTS.start() + ((start + probe) % span) as u16;
                    if dry_run || claim_port(api, p).await? {
                        found = Some(p);
                        break;
                    }
                }
                match found {
                    Some(p) => {
                        spec["ports"][i]["nodePort"] = json!(p);
                        p
                    }
                    None => {
                        release(api, Claims { ip: None, ports: claimed }).await;
                        return Err(ApiError::internal(
                            "failed to allocate a nodePort: range is full",
                        ));
                    }
                }
            }
        };
        if !dry_run {
            claimed.push(port);
        }
    }
    Ok(claimed)
}

async fn claim_port(api: &ApiServer, port: u16) -> ApiResult<bool> {
    match api.store.create(&format!("{NODE_PORT_KEYS}{port}"), b"{}".to_vec()).await {
        Ok(_) => Ok(true),
        Err(keelson_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(crate::status::from_store(e, "", "services", "")),
    }
}

/// The `kubernetes` Service in `default` (the first service IP, port 443) and its
/// Endpoints pointing at this server, as upstream's control plane keeps them.
pub async fn kubernetes_service(api: &ApiServer, endpoint: std::net::SocketAddr) -> ApiResult<()> {
    let registry = Registry::builtin();
    let (Some(services), Some(endpoints), Some(slices)) = (
        registry.find("", "v1", "services"),
        registry.find("", "v1", "endpoints"),
        registry.find("discovery.k8s.io", "v1", "endpointslices"),
    ) else {
        return Err(ApiError::internal("services, endpoints or endpointslices are not registered"));
    };
    let place = Place { info: services, namespace: Some("default"), name: "kubernetes" };
    let ip = api.service_cidr.nth(1);
    if api.objects.get(place).await.is_err() {
        let service = json!({
            "metadata": { "name": "kubernetes", "labels": { "component": "apiserver", "provider": "kubernetes" } },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": ip.to_string(),
                "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": endpoint.port() }],
                "sessionAffinity": "None",
            },
        });
        let mut service = crate::registry::prepare_create(
            services,
            Some("default"),
            service,
            &Default::default(),
            &mut Vec::new(),
        )?;
        let claims = allocate(api, &mut service, false).await?;
        match api.objects.create(place, service, false).await {
            Ok(_) => tracing::info!(ip = %ip, "created the kubernetes service"),
            Err(e) if e.is_already_exists() => release(api, claims).await,
            Err(e) => {
                release(api, claims).await;
                return Err(e);
            }
        }
    }
    let ip = endpoint.ip().to_string();
    let subsets = json!([{
        "addresses": [{ "ip": ip }],
        "ports": [{ "name": "https", "port": endpoint.port(), "protocol": "TCP" }],
    }]);
    let labels = json!({ "endpointslice.kubernetes.io/skip-mirror": "true" });
    ensure(api, endpoints, labels, json!({ "subsets": subsets })).await?;
    // The slice upstream's endpoints adapter writes beside them, for kube-proxy.
    let labels = json!({ "kubernetes.io/service-name": "kubernetes" });
    let slice = json!({
        "addressType": if endpoint.is_ipv6() { "IPv6" } else { "IPv4" },
        "endpoints": [{ "addresses": [ip], "conditions": { "ready": true } }],
        "ports": [{ "name": "https", "port": endpoint.port(), "protocol": "TCP" }],
    });
    ensure(api, slices, labels, slice).await
}

/// Makes `default/kubernetes` of `info` hold `fields`: created with `labels` if missing,
/// replaced if it says otherwise.
async fn ensure(
    api: &ApiServer,
    info: &'static keelson_api::ResourceInfo,
    labels: Value,
    fields: Value,
) -> ApiResult<()> {
    let place = Place { info, namespace: Some("default"), name: "kubernetes" };
    let fields = fields.as_object().cloned().unwrap_or_default();
    let write = |object: &mut Value| {
        for (k, v) in &fields {
            object[k] = v.clone();
        }
    };
    match api.objects.get(place).await {
        Ok((current, _)) if fields.iter().all(|(k, v)| &current[k] == v) => Ok(()),
        Ok((mut current, revision)) => {
            write(&mut current);
            api.objects.replace(place, current, revision, false).await.map(|_| ())
        }
        Err(_) => {
            let mut object = json!({ "metadata": { "name": "kubernetes", "labels": labels } });
            write(&mut object);
            let object = crate::registry::prepare_create(
                info,
                Some("default"),
                object,
                &Default::default(),
                &mut Vec::new(),
            )?;
            match api.objects.create(place, object, false).await {
                Err(e) if !e.is_already_exists() => Err(e),
                _ => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_know_their_usable_addresses() {
        let cidr = Cidr::parse("10.43.0.0/16").expect("parses");
        assert_eq!(cidr.nth(1), Ipv4Addr::new(10, 43, 0, 1));
        assert!(cidr.usable(Ipv4Addr::new(10, 43, 200, 7)));
        assert!(!cidr.usable(Ipv4Addr::new(10, 43, 0, 0)));
        assert!(!cidr.usable(Ipv4Addr::new(10, 43, 255, 255)));
        assert!(!cidr.usable(Ipv4Addr::new(10, 44, 0, 1)));
        assert!(Cidr::parse("10.43.0.0").is_err() && Cidr::parse("10.43.0.0/31").is_err());
    }

    #[test]
    fn cidr_errors_name_the_text() {
        let message = |text: &str| Cidr::parse(text).expect_err(text).to_string();
        assert_eq!(message("10.43.0.0"), r#""10.43.0.0" is not a CIDR (a.b.c.d/n)"#);
        assert_eq!(message("10.43.0/16"), r#""10.43.0/16": invalid IPv4 address syntax"#);
        assert_eq!(message("10.43.0.0/x"), r#""10.43.0.0/x": invalid digit found in string"#);
        assert_eq!(
            message("10.43.0.0/31"),
            r#""10.43.0.0/31": the prefix must be between /8 and /30"#
        );
    }
}
