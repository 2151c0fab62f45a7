//! What the endpointslice controller writes for one Service (upstream's
//! `k8s.io/endpointslice` reconciler), as a pure function of the Service, its pods, the
//! nodes' zones and the slices it has: [`plan`] says which slices to create, update and
//! delete.
//!
//! Per address type and per set of ports the pods serve: existing slices drop the
//! endpoints no longer wanted and take the changed ones; slices that changed anyway are
//! filled up first (fullest first), then leftovers go into the unchanged slice they fit
//! best, then into new slices of at most `max_per_slice`. A Service with no endpoints
//! keeps one empty placeholder slice. A create paired with a delete becomes an update
//! of the slice that would have been deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use keelson_api::k8s_openapi::api::core::v1::{Pod, Service};
use keelson_api::k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort, EndpointSlice,
};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::endpointutil::{self, HEADLESS};
use crate::pods::controller_ref;

/// The label naming a slice's Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller, as [`MANAGED_BY`] says it.
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// `--max-endpoints-per-slice`'s default.
pub const MAX_PER_SLICE: usize = 100;

/// A node as a slice's endpoint sees it: known or not, and its zone.
pub enum NodeZone {
    Unknown,
    Known(Option<String>),
}

/// What to write.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
    /// Pods left out because their node is not known yet (the Service is synced again).
    pub skipped: Vec<String>,
}

/// The slices to create, update and delete for `service`, given the pods its selector
/// picks and the slices of it this controller manages.
pub fn plan(
    service: &Service,
    pods: &[Arc<Pod>],
    existing: &[Arc<EndpointSlice>],
    zone_of: &dyn Fn(&str) -> NodeZone,
    max_per_slice: usize,
) -> Plan {
    let mut plan = Plan::default();
    let types = address_types(service);
    let mut by_type: BTreeMap<&str, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if types.contains(slice.address_type.as_str()) {
            by_type.entry(slice.address_type.as_str()).or_default().push(slice);
        } else {
            plan.delete.push((**slice).clone());
        }
    }
    for address_type in types {
        let slices = by_type.remove(address_type).unwrap_or_default();
        by_address_type(service, pods, &slices, address_type, zone_of, max_per_slice, &mut plan);
    }
    plan
}

/// The address types a Service's slices have: its IP families', else its cluster IP's,
/// else both.
fn address_types(service: &Service) -> BTreeSet<&'static str> {
    let spec = service.spec.as_ref();
    let mut types: BTreeSet<&'static str> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some("IPv4"),
            "IPv6" => Some("IPv6"),
            _ => None,
        })
        .collect();
    if types.is_empty() {
        if endpointutil::has_cluster_ip(service) {
            let v6 = spec.and_then(|s| s.cluster_ip.as_deref()).is_some_and(|ip| ip.contains(':'));
            types.insert(if v6 { "IPv6" } else { "IPv4" });
        } else {
            types.extend(["IPv4", "IPv6"]);
        }
    }
    types
}

/// What identifies an endpoint across syncs (upstream's endpoint hash).
type EndpointKey = (Vec<String>, String, String, String);

fn endpoint_key(endpoint: &Endpoint) -> EndpointKey {
    let mut addresses = endpoint.addresses.clone();
    addresses.sort();
    let target = endpoint.target_ref.as_ref();
    (
        addresses,
        endpoint.hostname.clone().unwrap_or_default(),
        target.and_then(|t| t.namespace.clone()).unwrap_or_default(),
        target.and_then(|t| t.name.clone()).unwrap_or_default(),
    )
}

/// Whether two endpoints of the same key differ in what a slice says of them.
fn endpoint_changed(a: &Endpoint, b: &Endpoint) -> bool {
    let target = |e: &Endpoint| {
        e.target_ref.clone().map(|mut t| {
            t.resource_version = None;
            t
        })
    };
    let conditions = |e: &Endpoint| {
        let c = e.conditions.as_ref();
        (c.and_then(|c| c.ready), c.and_then(|c| c.serving), c.and_then(|c| c.terminating))
    };
    a.node_name != b.node_name
        || a.zone != b.zone
        || conditions(a) != conditions(b)
        || target(a) != target(b)
}

/// The key of a set of ports: the ports in order.
fn port_key(ports: &[EndpointPort]) -> String {
    let mut ports = ports.to_vec();
    sort_ports(&mut ports);
    serde_json::to_string(&ports).unwrap_or_default()
}

fn sort_ports(ports: &mut [EndpointPort]) {
    ports.sort_by(|a, b| (&a.name, a.port, &a.protocol).cmp(&(&b.name, b.port, &b.protocol)));
}

/// The ports `pod` serves for the Service's ports (none for a headless Service without).
fn endpoint_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let mut out: Vec<EndpointPort> = ports
        .iter()
        .filter_map(|port| {
            let number = endpointutil::find_port(pod, port)?;
            Some(EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect();
    sort_ports(&mut out);
    out
}

/// The pod as an endpoint of the Service (upstream's `podToEndpoint`).
fn pod_to_endpoint(
    pod: &Pod,
    zone: Option<String>,
    service: &Service,
    address_type: &str,
) -> Endpoint {
    let serving = crate::pods::is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish =
        service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let want_v6 = address_type == "IPv6";
    let status = pod.status.as_ref();
    let addresses = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .map(|ip| ip.ip.clone())
        .filter(|ip| ip.contains(':') == want_v6)
        .collect();
    let spec = pod.spec.as_ref();
    Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        target_ref: Some(endpointutil::pod_reference(pod)),
        node_name: spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        zone,
        hostname: endpointutil::hostname(pod, service),
        ..Default::default()
    }
}

/// Whether `slice` belongs to this Service (not to an older one of the same name).
fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    slice.metadata.owner_references.iter().flatten().any(|r| {
        Some(&r.uid) == service.metadata.uid.as_ref()
            && r.kind == "Service"
            && r.api_version == "v1"
    })
}

/// The labels a slice of the Service carries, and whether the Service's own labels on
/// it changed (upstream's `setEndpointSliceLabels`).
fn slice_labels(slice: &EndpointSlice, service: &Service) -> (BTreeMap<String, String>, bool) {
    let reserved = |k: &String| k == SERVICE_NAME || k == MANAGED_BY || k == HEADLESS;
    let own = |labels: &Option<BTreeMap<String, String>>| -> BTreeMap<String, String> {
        labels
            .iter()
            .flatten()
            .filter(|(k, _)| !reserved(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut labels = own(&service.metadata.labels);
    let changed = own(&slice.metadata.labels) != labels;
    if !endpointutil::has_cluster_ip(service) {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels.insert(SERVICE_NAME.into(), service.metadata.name.clone().unwrap_or_default());
    labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    (labels, changed)
}

fn new_slice(service: &Service, ports: Vec<EndpointPort>, address_type: &str) -> EndpointSlice {
    let mut slice = EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                service.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: service.metadata.namespace.clone(),
            owner_references: Some(vec![controller_ref("v1", "Service", &service.metadata)]),
            ..Default::default()
        },
        address_type: address_type.into(),
        endpoints: Vec::new(),
        ports: Some(ports),
    };
    slice.metadata.labels = Some(slice_labels(&slice, service).0);
    slice
}

/// Upstream's `placeholderSliceCompare`: the same namespace, labels and owners, no
/// endpoints and no ports.
fn same_placeholder(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    let empty =
        |s: &EndpointSlice| s.endpoints.is_empty() && s.ports.as_ref().is_none_or(Vec::is_empty);
    a.metadata.namespace == b.metadata.namespace
        && a.metadata.labels.clone().unwrap_or_default()
            == b.metadata.labels.clone().unwrap_or_default()
        && a.metadata.owner_references.clone().unwrap_or_default()
            == b.metadata.owner_references.clone().unwrap_or_default()
        && a.address_type == b.address_type
        && empty(a)
        && empty(b)
}

fn by_address_type(
    service: &Service,
    pods: &[Arc<Pod>],
    existing: &[&EndpointSlice],
    address_type: &str,
    zone_of: &dyn Fn(&str) -> NodeZone,
    max_per_slice: usize,
    plan: &mut Plan,
) {
    let mut create = Vec::new();
    let mut update = Vec::new();
    let mut delete = Vec::new();
    let mut existing_by_ports: BTreeMap<String, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if owned_by(slice, service) {
            existing_by_ports
                .entry(port_key(slice.ports.as_deref().unwrap_or_default()))
                .or_default()
                .push(slice);
        } else {
            delete.push((*slice).clone());
        }
    }
    let publish =
        service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let mut desired: BTreeMap<String, (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)> =
        BTreeMap::new();
    for pod in pods {
        if !endpointutil::should_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = endpoint_ports(service, pod);
        let entry = desired.entry(port_key(&ports)).or_insert_with(|| (ports, BTreeMap::new()));
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default();
        let zone = match zone_of(node) {
            NodeZone::Known(zone) => zone,
            NodeZone::Unknown if publish => None,
            NodeZone::Unknown => {
                let name = pod.metadata.name.as_deref().unwrap_or_default();
                plan.skipped.push(format!("pod {name}: node {node:?} not found"));
                continue;
            }
        };
        let endpoint = pod_to_endpoint(pod, zone, service, address_type);
        if !endpoint.addresses.is_empty() {
            entry.1.insert(endpoint_key(&endpoint), endpoint);
        }
    }
    for (key, (ports, endpoints)) in &mut desired {
        let slices = existing_by_ports.get(key).map(Vec::as_slice).unwrap_or_default();
        let (c, u, d) = by_ports(
            service,
            slices,
            std::mem::take(endpoints),
            ports,
            address_type,
            max_per_slice,
        );
        create.extend(c);
        update.extend(u);
        delete.extend(d);
    }
    for (key, slices) in &existing_by_ports {
        if !desired.contains_key(key) {
            delete.extend(slices.iter().map(|s| (*s).clone()));
        }
    }
    if existing.len() == delete.len() && create.is_empty() {
        let placeholder = new_slice(service, Vec::new(), address_type);
        if delete.len() == 1 && same_placeholder(&delete[0], &placeholder) {
            delete.clear();
        } else {
            create.push(placeholder);
        }
    }
    // Creates paired with deletes become updates of the slices otherwise deleted.
    let mut kept = Vec::new();
    for slice in delete {
        match create.pop() {
            Some(mut new) if owned_by(&slice, service) => {
                new.metadata.name = slice.metadata.name.clone();
                new.metadata.generate_name = None;
                new.metadata.resource_version = slice.metadata.resource_version.clone();
                new.metadata.uid = slice.metadata.uid.clone();
                new.metadata.annotations = slice.metadata.annotations.clone();
                update.push(new);
            }
            Some(new) => {
                create.push(new);
                kept.push(slice);
            }
            None => kept.push(slice),
        }
    }
    plan.create.extend(create);
    plan.update.extend(update);
    plan.delete.extend(kept);
}

/// Upstream's `reconcileByPortMapping` for the slices of one set of ports.
fn by_ports(
    service: &Service,
    existing: &[&EndpointSlice],
    mut desired: BTreeMap<EndpointKey, Endpoint>,
    ports: &[EndpointPort],
    address_type: &str,
    max_per_slice: usize,
) -> (Vec<EndpointSlice>, Vec<EndpointSlice>, Vec<EndpointSlice>) {
    let mut slices: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged: BTreeSet<String> = BTreeSet::new();
    let mut to_update: BTreeSet<String> = BTreeSet::new();
    let mut to_delete: BTreeSet<String> = BTreeSet::new();
    // 1. Drop unwanted endpoints; take the changed ones.
    for slice in existing {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let mut kept = Vec::new();
        let mut changed = false;
        for endpoint in &slice.endpoints {
            if let Some(want) = desired.remove(&endpoint_key(endpoint)) {
                changed |= endpoint_changed(&want, endpoint);
                kept.push(want);
            }
        }
        let (labels, labels_changed) = slice_labels(slice, service);
        if changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                to_delete.insert(name.clone());
                slices.insert(name, (*slice).clone());
            } else {
                let mut copy = (*slice).clone();
                copy.endpoints = kept;
                copy.metadata.labels = Some(labels);
                to_update.insert(name.clone());
                slices.insert(name, copy);
            }
        } else if labels_changed {
            let mut copy = (*slice).clone();
            copy.metadata.labels = Some(labels);
            to_update.insert(name.clone());
            slices.insert(name, copy);
        } else {
            unchanged.insert(name.clone());
            slices.insert(name, (*slice).clone());
        }
    }
    let mut remaining: Vec<Endpoint> = desired.into_values().collect();
    remaining.reverse();
    // 2. Fill the slices being updated anyway, fullest first.
    if !remaining.is_empty() && !to_update.is_empty() {
        let mut names: Vec<&String> = to_update.iter().collect();
        names.sort_by_key(|n| std::cmp::Reverse(slices[*n].endpoints.len()));
        let names: Vec<String> = names.into_iter().cloned().collect();
        for name in names {
            let slice = slices.get_mut(&name).expect("a slice being updated");
            while slice.endpoints.len() < max_per_slice {
                let Some(endpoint) = remaining.pop() else { break };
                slice.endpoints.push(endpoint);
            }
        }
    }
    // 3. Leftovers: the unchanged slice they fit best, else new slices.
    let mut create = Vec::new();
    while !remaining.is_empty() {
        let fit = (remaining.len() < max_per_slice)
            .then(|| {
                unchanged
                    .iter()
                    .filter(|n| slices[*n].endpoints.len() + remaining.len() <= max_per_slice)
                    .min_by_key(|n| max_per_slice - (slices[*n].endpoints.len() + remaining.len()))
                    .cloned()
            })
            .flatten();
        let mut slice = match &fit {
            Some(name) => slices[name].clone(),
            None => new_slice(service, ports.to_vec(), address_type),
        };
        while slice.endpoints.len() < max_per_slice {
            let Some(endpoint) = remaining.pop() else { break };
            slice.endpoints.push(endpoint);
        }
        match fit {
            Some(name) => {
                unchanged.remove(&name);
                to_update.insert(name.clone());
                slices.insert(name, slice);
            }
            None => create.push(slice),
        }
    }
    let pick =
        |names: &BTreeSet<String>| names.iter().map(|n| slices[n].clone()).collect::<Vec<_>>();
    (create, pick(&to_update), pick(&to_delete))
}

/// The Service key a slice of this controller belongs to.
pub fn service_key(slice: &EndpointSlice) -> Option<String> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY).map(String::as_str) != Some(CONTROLLER) {
        return None;
    }
    let service = labels.get(SERVICE_NAME).filter(|s| !s.is_empty())?;
    Some(format!("{}/{service}", slice.metadata.namespace.as_deref().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;

    use super::*;

    /// The names of the pods a slice holds.
    fn names(slice: &EndpointSlice) -> HashSet<String> {
        slice.endpoints.iter().filter_map(|e| e.target_ref.as_ref()?.name.clone()).collect()
    }

    fn service() -> Service {
        serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "ns", "uid": "svc-uid", "labels": { "team": "a" } },
            "spec": {
                "clusterIP": "10.43.0.10",
                "ipFamilies": ["IPv4"],
                "selector": { "app": "web" },
                "ports": [{ "name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP" }],
            },
        }))
        .expect("a service")
    }

    fn pod(i: usize, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "name": format!("p{i}"), "namespace": "ns", "uid": format!("u{i}"), "labels": { "app": "web" } },
                "spec": { "nodeName": "n1", "containers": [{ "name": "c" }] },
                "status": {
                    "phase": "Running",
                    "podIP": format!("10.42.{}.{}", i / 200, i % 200 + 2),
                    "podIPs": [{ "ip": format!("10.42.{}.{}", i / 200, i % 200 + 2) }],
                    "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
                },
            }))
            .expect("a pod"),
        )
    }

    fn zone(node: &str) -> NodeZone {
        match node {
            "n1" => NodeZone::Known(Some("z1".into())),
            _ => NodeZone::Unknown,
        }
    }

    /// The plan's creates and updates, as the API server would store them.
    fn stored(plan: Plan) -> Vec<Arc<EndpointSlice>> {
        plan.create
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                s.metadata.name = Some(format!("web-{i}"));
                s
            })
            .chain(plan.update)
            .map(Arc::new)
            .collect()
    }

    #[test]
    fn endpoints_are_cut_into_slices_of_at_most_the_maximum() {
        let pods: Vec<_> = (0..250).map(|i| pod(i, true)).collect();
        let plan = plan(&service(), &pods, &[], &zone, MAX_PER_SLICE);
        assert_eq!(plan.create.len(), 3);
        let mut sizes: Vec<_> = plan.create.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        assert_eq!(sizes, [50, 100, 100]);
        let slice = &plan.create[0];
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(SERVICE_NAME).map(String::as_str), Some("web"));
        assert_eq!(labels.get(MANAGED_BY).map(String::as_str), Some(CONTROLLER));
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(slice.address_type, "IPv4");
        let endpoint = &slice.endpoints[0];
        assert_eq!(endpoint.zone.as_deref(), Some("z1"));
        assert_eq!(endpoint.node_name.as_deref(), Some("n1"));
        let port = &slice.ports.as_ref().expect("ports")[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), Some(8080)));
    }

    #[test]
    fn a_steady_state_writes_nothing_and_a_change_touches_one_slice() {
        let pods: Vec<_> = (0..150).map(|i| pod(i, true)).collect();
        let existing = stored(plan(&service(), &pods, &[], &zone, MAX_PER_SLICE));
        let again = plan(&service(), &pods, &existing, &zone, MAX_PER_SLICE);
        assert!(
            again.create.is_empty() && again.update.is_empty() && again.delete.is_empty(),
            "{again:?}"
        );
        // One pod turns not ready: only its slice is written, with the conditions.
        let mut changed = pods.clone();
        changed[7] = pod(7, false);
        let next = plan(&service(), &changed, &existing, &zone, MAX_PER_SLICE);
        assert!(next.create.is_empty() && next.delete.is_empty());
        assert_eq!(next.update.len(), 1);
        let endpoint = next.update[0]
            .endpoints
            .iter()
            .find(|e| e.target_ref.as_ref().and_then(|t| t.name.as_deref()) == Some("p7"))
            .expect("p7 stays");
        let conditions = endpoint.conditions.as_ref().expect("conditions");
        assert_eq!(
            (conditions.ready, conditions.serving, conditions.terminating),
            (Some(false), Some(false), Some(false))
        );
    }

    #[test]
    fn no_endpoints_leave_one_placeholder() {
        let existing = stored(plan(&service(), &[pod(1, true)], &[], &zone, MAX_PER_SLICE));
        let empty = plan(&service(), &[], &existing, &zone, MAX_PER_SLICE);
        // The slice is emptied in place rather than deleted and created again.
        assert!(empty.create.is_empty() && empty.delete.is_empty(), "{empty:?}");
        assert_eq!(empty.update.len(), 1);
        assert!(empty.update[0].endpoints.is_empty());
        assert_eq!(empty.update[0].ports.as_deref(), Some(&[][..]));
        let placeholder: Vec<_> = empty.update.into_iter().map(Arc::new).collect();
        let steady = plan(&service(), &[], &placeholder, &zone, MAX_PER_SLICE);
        assert!(
            steady.create.is_empty() && steady.update.is_empty() && steady.delete.is_empty(),
            "{steady:?}"
        );
    }

    #[test]
    fn pods_on_unknown_nodes_are_skipped_unless_not_ready_addresses_are_published() {
        let mut lost = (*pod(1, true)).clone();
        lost.spec.as_mut().expect("spec").node_name = Some("gone".into());
        let lost = Arc::new(lost);
        let plan1 = plan(&service(), &[lost.clone(), pod(2, true)], &[], &zone, MAX_PER_SLICE);
        assert_eq!(plan1.skipped.len(), 1);
        assert_eq!(names(&plan1.create[0]), HashSet::from(["p2".to_owned()]));
        let mut publishing = service();
        publishing.spec.as_mut().expect("spec").publish_not_ready_addresses = Some(true);
        let plan2 = plan(&publishing, &[lost], &[], &zone, MAX_PER_SLICE);
        assert!(plan2.skipped.is_empty());
        assert_eq!(plan2.create[0].endpoints[0].zone, None);
    }

    #[test]
    fn slices_of_an_older_service_of_the_same_name_are_replaced() {
        let existing = stored(plan(&service(), &[pod(1, true)], &[], &zone, MAX_PER_SLICE));
        let mut newer = service();
        newer.metadata.uid = Some("new-uid".into());
        let next = plan(&newer, &[pod(1, true)], &existing, &zone, MAX_PER_SLICE);
        assert_eq!((next.create.len(), next.update.len(), next.delete.len()), (1, 0, 1));
    }
}
