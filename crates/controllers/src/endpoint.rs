//! `endpoints-controller` (upstream's `pkg/controller/endpoint`): the `Endpoints` object
//! of every Service with a selector — its pods' addresses, ready or not ready, grouped
//! by the ports they serve (upstream's `RepackSubsets`), at most 1,000 addresses (the
//! rest cut in proportion, `endpoints.kubernetes.io/over-capacity: truncated`), labelled
//! with the Service's labels, `service.kubernetes.io/headless` when headless and
//! `endpoints.kubernetes.io/managed-by: endpoint-controller`. Deleted with its Service.
//!
//! Writes nothing when the object already says it; refuses to write over a version of
//! the object it has replaced already (a stale informer), so a slow watch never undoes
//! a newer write.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use keelson_api::k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::events::{EventType, Recorder};
use keelson_runtime::informer::{Informer, Key, key_of};
use keelson_runtime::queue::WorkQueue;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};

use crate::endpointutil::{self, HEADLESS};
use crate::lock;
use crate::replicaset::NAMESPACE_INDEX;
use crate::wire;

pub const NAME: &str = "endpoints-controller";
pub const SERVICE_ACCOUNT: &str = "endpoint-controller";
/// Who manages an Endpoints object.
pub const MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpoint-controller";
/// Set on Endpoints cut down to [`MAX_CAPACITY`] addresses.
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const MAX_CAPACITY: usize = 1000;
const WORKERS: usize = 5;

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

struct Controller {
    client: Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    endpoints: Arc<Informer<Endpoints>>,
    /// The resource versions this controller has replaced, by Endpoints key: seeing one
    /// of them in the informer means it has not caught up with our own write.
    replaced: Mutex<HashMap<Key, String>>,
    recorder: Recorder,
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let services = context.informers.get::<Service>();
    let pods = context.informers.get::<Pod>();
    let endpoints = context.informers.get::<Endpoints>();
    let queue: WorkQueue<Key> = context.queue();
    pods.add_index(NAMESPACE_INDEX, crate::replicaset::by_namespace::<Pod>);
    endpointutil::queue_services_of_pods(&services, &pods, &queue);
    services.queue_changes(&queue);
    let controller = Arc::new(Controller {
        recorder: Recorder::new(context.client.clone(), CONTROLLER, None),
        client: context.client.clone(),
        services: services.clone(),
        pods: pods.clone(),
        endpoints: endpoints.clone(),
        replaced: Mutex::new(HashMap::new()),
    });
    services.wait_synced().await;
    pods.wait_synced().await;
    endpoints.wait_synced().await;
    // Endpoints left behind by Services deleted while no controller ran.
    for e in endpoints.list() {
        let key = key_of(&*e);
        if services.get(&key).is_none()
            && e.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY)).map(String::as_str)
                == Some(CONTROLLER)
        {
            queue.add(key);
        }
    }
    run_workers(&context, queue, WORKERS, move |key: Key| {
        let c = controller.clone();
        async move { c.sync(&key).await }
    })
    .await;
    Ok(())
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Action, kube::Error> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), namespace);
        let Some(service) = self.services.get(key) else {
            lock(&self.replaced).remove(key);
            return match api.delete(name, &DeleteParams::default()).await {
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::AwaitChange),
                Err(e) => Err(e),
                Ok(_) => Ok(Action::AwaitChange),
            };
        };
        let Some(selector) = endpointutil::selector(&service) else {
            return Ok(Action::AwaitChange);
        };
        let pods = endpointutil::pods_selected(&self.pods, namespace, selector);
        let subsets = desired_subsets(&service, &pods);
        let current = self.endpoints.get(key);
        if let Some(current) = &current
            && lock(&self.replaced).get(key) == current.metadata.resource_version.as_ref()
        {
            return Err(stale(key));
        }
        let labels = desired_labels(&service);
        if let Some(current) = &current
            && same_subsets(current.subsets.as_deref().unwrap_or_default(), &subsets)
            && current.metadata.labels.clone().unwrap_or_default() == labels
            && capacity_annotation_right(current)
        {
            return Ok(Action::AwaitChange);
        }
        let mut new = current.as_deref().cloned().unwrap_or_else(|| Endpoints {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        });
        new.subsets = Some(subsets);
        new.metadata.labels = Some(labels);
        let truncated = truncate(&mut new);
        let annotations = new.metadata.annotations.get_or_insert_default();
        // No change-trigger tracking yet: the annotation is cleared, as upstream clears it
        // when it has no trigger time.
        annotations.remove("endpoints.kubernetes.io/last-change-trigger-time");
        if truncated {
            annotations.insert(OVER_CAPACITY.into(), "truncated".into());
        } else {
            annotations.remove(OVER_CAPACITY);
        }
        let result = match &current {
            None => api.create(&PostParams::default(), &new).await,
            Some(_) => api.replace(name, &PostParams::default(), &new).await,
        };
        match result {
            Ok(_) => {
                if let Some(version) = current.and_then(|c| c.metadata.resource_version.clone()) {
                    lock(&self.replaced).insert(key.to_owned(), version);
                }
                Ok(Action::AwaitChange)
            }
            // The namespace is going away: nothing more to do here.
            Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("being terminated") => {
                Ok(Action::AwaitChange)
            }
            Err(e) => {
                let (reason, message) = match current {
                    None => (
                        "FailedToCreateEndpoint",
                        format!("Failed to create endpoint for service {key}: {e}"),
                    ),
                    Some(_) => {
                        ("FailedToUpdateEndpoint", format!("Failed to update endpoint {key}: {e}"))
                    }
                };
                let reference = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Endpoints".into()),
                    namespace: Some(namespace.into()),
                    name: Some(name.into()),
                    uid: new.metadata.uid.clone(),
                    ..Default::default()
                };
                self.recorder.event(&reference, EventType::Warning, reason, &message);
                Err(e)
            }
        }
    }
}

fn stale(key: &str) -> kube::Error {
    kube::Error::Service(
        format!("endpoints informer cache is out of date for endpoints {key}").into(),
    )
}

/// The Service's labels, the headless mark when it has no cluster IP, and ours.
fn desired_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS);
    if !endpointutil::has_cluster_ip(service) {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    labels
}

/// Whether the over-capacity annotation says what the addresses are.
fn capacity_annotation_right(endpoints: &Endpoints) -> bool {
    let count: usize = endpoints
        .subsets
        .iter()
        .flatten()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len)
                + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum();
    let annotated =
        endpoints.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(OVER_CAPACITY));
    count <= MAX_CAPACITY && !annotated
}

fn same_subsets(current: &[EndpointSubset], desired: &[EndpointSubset]) -> bool {
    let strip = |subsets: &[EndpointSubset]| {
        let mut subsets = subsets.to_vec();
        for address in subsets.iter_mut().flat_map(|s| {
            s.addresses.iter_mut().flatten().chain(s.not_ready_addresses.iter_mut().flatten())
        }) {
            if let Some(target) = &mut address.target_ref {
                target.resource_version = None;
            }
        }
        wire::pruned(&subsets, false)
    };
    strip(current) == strip(desired)
}

/// One address of a pod for a port (`None`: a headless Service without ports).
struct Entry {
    address: EndpointAddress,
    ready: bool,
    port: Option<EndpointPort>,
}

/// The pod's address in the Service's IP family (the first of its `podIPs`).
fn address_of(service: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let spec = service.spec.as_ref();
    let want_v6 = match spec.and_then(|s| s.ip_families.as_ref()).and_then(|f| f.first()) {
        Some(family) => family == "IPv6",
        None if endpointutil::has_cluster_ip(service) => {
            spec.and_then(|s| s.cluster_ip.as_deref()).is_some_and(|ip| ip.contains(':'))
        }
        None => {
            pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).is_some_and(|ip| ip.contains(':'))
        }
    };
    let status = pod.status.as_ref()?;
    let mut ips: Vec<&str> = status.pod_ips.iter().flatten().map(|i| i.ip.as_str()).collect();
    if ips.is_empty() {
        ips.extend(status.pod_ip.as_deref());
    }
    let ip = ips.into_iter().find(|ip| ip.contains(':') == want_v6)?;
    Some(EndpointAddress {
        ip: ip.to_owned(),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        hostname: endpointutil::hostname(pod, service),
        target_ref: Some(endpointutil::pod_reference(pod)),
    })
}

/// The subsets the Service's pods make (upstream's `syncService` and `RepackSubsets`).
pub fn desired_subsets(service: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = service.spec.clone().unwrap_or_default();
    let tolerate_unready = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut entries = Vec::new();
    for pod in pods {
        if !endpointutil::should_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(address) = address_of(service, pod) else { continue };
        let ready = tolerate_unready || crate::pods::is_ready(pod);
        let ports = spec.ports.as_deref().unwrap_or_default();
        if ports.is_empty() {
            if endpointutil::is_headless(service) {
                entries.push(Entry { address, ready, port: None });
            }
            continue;
        }
        for port in ports {
            let Some(number) = endpointutil::find_port(pod, port) else { continue };
            let port = EndpointPort {
                name: port.name.clone(),
                port: number,
                protocol: port.protocol.clone(),
                app_protocol: port.app_protocol.clone(),
            };
            entries.push(Entry { address: address.clone(), ready, port: Some(port) });
        }
    }
    repack(entries)
}

type AddressKey = (String, String);

fn address_key(address: &EndpointAddress) -> AddressKey {
    let uid = address.target_ref.as_ref().and_then(|t| t.uid.clone()).unwrap_or_default();
    (address.ip.clone(), uid)
}

fn port_key(port: &Option<EndpointPort>) -> String {
    serde_json::to_string(port).unwrap_or_default()
}

/// Groups addresses by port, then ports by the same addresses: one subset per set of
/// addresses, each address ready only if it is ready for every port it serves.
fn repack(entries: Vec<Entry>) -> Vec<EndpointSubset> {
    let mut addresses: HashMap<AddressKey, EndpointAddress> = HashMap::new();
    let mut by_port: BTreeMap<String, (Option<EndpointPort>, BTreeMap<AddressKey, bool>)> =
        BTreeMap::new();
    for Entry { address, ready, port } in entries {
        let key = address_key(&address);
        addresses.entry(key.clone()).or_insert(address);
        let (_, set) = by_port.entry(port_key(&port)).or_insert_with(|| (port, BTreeMap::new()));
        let was = set.entry(key).or_insert(ready);
        *was = *was && ready;
    }
    let mut groups: BTreeMap<Vec<(AddressKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (_, (port, set)) in by_port {
        let ports = groups.entry(set.into_iter().collect()).or_default();
        ports.extend(port);
    }
    groups
        .into_iter()
        .map(|(set, mut ports)| {
            ports.sort_by(|a, b| {
                (&a.name, a.port, &a.protocol).cmp(&(&b.name, b.port, &b.protocol))
            });
            let (ready, not_ready): (Vec<_>, Vec<_>) = set.into_iter().partition(|(_, r)| *r);
            let pick = |list: Vec<(AddressKey, bool)>| -> Option<Vec<EndpointAddress>> {
                let list: Vec<EndpointAddress> =
                    list.iter().map(|(k, _)| addresses[k].clone()).collect();
                (!list.is_empty()).then_some(list)
            };
            EndpointSubset {
                addresses: pick(ready),
                not_ready_addresses: pick(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// Cuts the Endpoints down to [`MAX_CAPACITY`] addresses as upstream does: not-ready
/// ones first, each subset keeping its share; says whether it cut.
pub fn truncate(endpoints: &mut Endpoints) -> bool {
    let subsets = endpoints.subsets.get_or_insert_default();
    let count = |f: fn(&EndpointSubset) -> usize| subsets.iter().map(f).sum::<usize>();
    let ready = count(|s| s.addresses.as_ref().map_or(0, Vec::len));
    let not_ready = count(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len));
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) =
        if truncate_ready { (MAX_CAPACITY, ready) } else { (MAX_CAPACITY - ready, not_ready) };
    let mut room = max;
    for subset in subsets.iter_mut() {
        let list =
            if truncate_ready { &mut subset.addresses } else { &mut subset.not_ready_addresses };
        let here = list.as_ref().map_or(0, Vec::len);
        let share = (here * max).div_ceil(total).min(room);
        if let Some(list) = list {
            list.truncate(share);
        }
        room -= share.min(here);
        if truncate_ready {
            subset.not_ready_addresses = None;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, ip: &str, ready: bool, ports: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "name": name, "namespace": "ns", "uid": format!("uid-{name}") },
                "spec": { "nodeName": "n1", "containers": [{ "name": "c", "ports": ports }] },
                "status": {
                    "phase": "Running",
                    "podIP": ip,
                    "podIPs": [{ "ip": ip }],
                    "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
                },
            }))
            .expect("a pod"),
        )
    }

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({ "metadata": { "name": "web", "namespace": "ns" }, "spec": spec }),
        )
        .expect("a service")
    }

    #[test]
    fn pods_are_grouped_by_the_ports_they_serve() {
        let svc = service(json!({
            "clusterIP": "10.43.0.10",
            "selector": { "app": "web" },
            "ports": [
                { "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP" },
                { "name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP" },
            ],
        }));
        let http = json!([{ "name": "http", "containerPort": 8080 }]);
        let pods = [
            pod("a", "10.42.0.2", true, http.clone()),
            pod("b", "10.42.0.3", false, http),
            pod("c", "10.42.0.4", true, json!([])),
        ];
        let subsets = desired_subsets(&svc, &pods);
        let json = serde_json::to_value(&subsets).expect("json");
        // a and b serve both ports, c only the numbered one: two sets of addresses.
        assert_eq!(subsets.len(), 2, "{json}");
        let ips = |list: &Option<Vec<EndpointAddress>>| -> Vec<String> {
            list.iter().flatten().map(|a| a.ip.clone()).collect()
        };
        let with_port = |port: i32| {
            subsets
                .iter()
                .find(|s| s.ports.iter().flatten().any(|p| p.port == port))
                .expect("a subset")
        };
        let http = with_port(8080);
        assert_eq!(http.ports.as_ref().map(Vec::len), Some(1));
        assert_eq!(http.ports.as_ref().expect("ports")[0].name.as_deref(), Some("http"));
        assert_eq!(ips(&http.addresses), ["10.42.0.2"]);
        assert_eq!(ips(&http.not_ready_addresses), ["10.42.0.3"]);
        let metrics = with_port(9090);
        assert_eq!(ips(&metrics.addresses), ["10.42.0.2", "10.42.0.4"]);
        assert_eq!(ips(&metrics.not_ready_addresses), ["10.42.0.3"]);
        let c = &metrics.addresses.as_ref().expect("ready")[1];
        assert_eq!(c.target_ref.as_ref().and_then(|t| t.name.as_deref()), Some("c"));
        assert_eq!(c.node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn headless_services_without_ports_list_addresses_alone() {
        let svc = service(json!({ "clusterIP": "None", "selector": { "app": "web" } }));
        let subsets = desired_subsets(&svc, &[pod("a", "10.42.0.2", true, json!([]))]);
        assert_eq!(subsets.len(), 1);
        assert!(subsets[0].ports.is_none());
        let with_ip = service(json!({ "clusterIP": "10.43.0.9", "selector": { "app": "web" } }));
        assert!(desired_subsets(&with_ip, &[pod("a", "10.42.0.2", true, json!([]))]).is_empty());
        assert_eq!(desired_labels(&svc).get(HEADLESS).map(String::as_str), Some(""));
        assert!(!desired_labels(&with_ip).contains_key(HEADLESS));
    }

    #[test]
    fn over_capacity_cuts_not_ready_addresses_first() {
        let address = |i: usize| EndpointAddress {
            ip: format!("10.0.{}.{}", i / 256, i % 256),
            ..Default::default()
        };
        let mut endpoints = Endpoints {
            subsets: Some(vec![EndpointSubset {
                addresses: Some((0..900).map(address).collect()),
                not_ready_addresses: Some((900..1200).map(address).collect()),
                ports: None,
            }]),
            ..Default::default()
        };
        assert!(truncate(&mut endpoints));
        let subset = &endpoints.subsets.as_ref().expect("subsets")[0];
        assert_eq!(subset.addresses.as_ref().map(Vec::len), Some(900));
        assert_eq!(subset.not_ready_addresses.as_ref().map(Vec::len), Some(100));
        assert!(!truncate(&mut endpoints));
    }
}
