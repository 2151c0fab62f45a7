//! What the endpoints controllers share (upstream's `k8s.io/endpointslice/util`): which
//! Services select a pod, which pods belong in a Service's endpoints, the port a
//! Service port reaches on a pod, and the pod handler that queues the Services a pod
//! change concerns.

use std::collections::BTreeMap;
use std::sync::Arc;

use keelson_api::k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use keelson_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_runtime::informer::{Change, Informer, Key, key_of};
use keelson_runtime::queue::WorkQueue;

use crate::replicaset::{NAMESPACE_INDEX, by_namespace};

/// The label that marks a headless Service's endpoints.
pub const HEADLESS: &str = "service.kubernetes.io/headless";

/// The selector a Service's endpoints follow: none for `ExternalName` Services and
/// Services without one (their endpoints are someone else's). An empty selector reads
/// back absent (Go omits the empty map), so it selects nothing too.
pub fn selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether every pair of `selector` is among the pod's labels.
pub fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the Service has a cluster IP (upstream's `IsServiceIPSet`).
pub fn has_cluster_ip(service: &Service) -> bool {
    let ip = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or_default();
    !ip.is_empty() && ip != "None"
}

/// Whether the Service is headless: `clusterIP: None`.
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Upstream's `ShouldPodBeInEndpoints`: not finished, has an address, and not being
/// deleted unless `include_terminating`.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) {
        return false;
    }
    let has_ip = status.is_some_and(|s| {
        s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
            || s.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    });
    has_ip && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// The pod's hostname, if it goes on its endpoint (upstream's `ShouldSetHostname`): it
/// names one and its subdomain is the Service.
pub fn hostname(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace)
        .then(|| hostname.to_owned())
}

/// An endpoint's reference to its pod.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The pods of the Service's namespace that `selector` picks.
pub fn pods_selected(
    pods: &Informer<Pod>,
    namespace: &str,
    selector: &BTreeMap<String, String>,
) -> Vec<Arc<Pod>> {
    pods.by_index(NAMESPACE_INDEX, namespace).into_iter().filter(|p| selects(selector, p)).collect()
}

/// The pod's port that `port` targets (upstream's `FindPort`): a number as it is, a name
/// looked up among the containers' ports of the same protocol, then the restartable
/// init containers' (sidecars).
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let name = match &port.target_port {
        None => return Some(port.port),
        Some(IntOrString::Int(n)) => return Some(*n),
        Some(IntOrString::String(name)) => name,
    };
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol
        })
        .map(|p| p.container_port)
}

/// The Services of `services` (indexed by namespace) whose selector picks `pod`.
pub fn services_selecting(services: &Informer<Service>, pod: &Pod) -> Vec<Key> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    services
        .by_index(NAMESPACE_INDEX, namespace)
        .iter()
        .filter(|s| selector(s).is_some_and(|sel| selects(sel, pod)))
        .map(|s| key_of(&**s))
        .collect()
}

/// Whether a pod update can change the endpoints it is in: its labels, addresses,
/// readiness, phase, deletion, node, hostname or ports.
fn endpoints_changed(old: &Pod, new: &Pod) -> bool {
    fn relevant(p: &Pod) -> impl PartialEq + '_ {
        let status = p.status.as_ref();
        let spec = p.spec.as_ref();
        (
            &p.metadata.labels,
            &p.metadata.deletion_timestamp,
            status.map(|s| (&s.pod_ip, &s.pod_ips, &s.phase)),
            crate::pods::is_ready(p),
            spec.map(|s| (&s.node_name, &s.hostname, &s.subdomain, &s.containers)),
        )
    }
    relevant(old) != relevant(new)
}

/// Indexes `services` by namespace and queues, on each pod change, the Services that
/// select the pod as it was or as it is.
pub fn queue_services_of_pods(
    services: &Arc<Informer<Service>>,
    pods: &Informer<Pod>,
    queue: &WorkQueue<Key>,
) {
    services.add_index(NAMESPACE_INDEX, by_namespace::<Service>);
    let services = services.clone();
    let queue = queue.clone();
    pods.on_change(move |change| {
        let mut keys = services_selecting(&services, change.object());
        if let Change::Updated { old, new } = change {
            if !endpoints_changed(old, new) {
                return;
            }
            if old.metadata.labels != new.metadata.labels {
                keys.extend(services_selecting(&services, old));
            }
        }
        for key in keys {
            queue.add(key);
        }
    });
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("a pod")
    }

    #[test]
    fn named_ports_are_found_by_name_and_protocol() {
        let p = pod(json!({ "spec": {
            "initContainers": [
                { "name": "init", "ports": [{ "name": "side", "containerPort": 7 }] },
                { "name": "sidecar", "restartPolicy": "Always", "ports": [{ "name": "side", "containerPort": 9 }] },
            ],
            "containers": [{ "name": "c", "ports": [
                { "name": "dns", "containerPort": 53, "protocol": "UDP" },
                { "name": "http", "containerPort": 8080 },
            ]}],
        }}));
        let port =
            |v: serde_json::Value| -> ServicePort { serde_json::from_value(v).expect("port") };
        assert_eq!(find_port(&p, &port(json!({ "port": 80, "targetPort": "http" }))), Some(8080));
        assert_eq!(find_port(&p, &port(json!({ "port": 53, "targetPort": "dns" }))), None);
        let udp = port(json!({ "port": 53, "targetPort": "dns", "protocol": "UDP" }));
        assert_eq!(find_port(&p, &udp), Some(53));
        assert_eq!(find_port(&p, &port(json!({ "port": 1, "targetPort": "side" }))), Some(9));
        assert_eq!(find_port(&p, &port(json!({ "port": 80, "targetPort": 81 }))), Some(81));
        assert_eq!(find_port(&p, &port(json!({ "port": 80 }))), Some(80));
    }

    #[test]
    fn finished_addressless_and_terminating_pods_are_left_out() {
        let running = json!({ "status": { "phase": "Running", "podIP": "10.42.0.2" } });
        assert!(should_be_in_endpoints(&pod(running.clone()), false));
        let mut deleting = running.clone();
        deleting["metadata"] = json!({ "deletionTimestamp": "2026-01-01T00:00:00Z" });
        assert!(!should_be_in_endpoints(&pod(deleting.clone()), false));
        assert!(should_be_in_endpoints(&pod(deleting), true));
        let done = json!({ "status": { "phase": "Succeeded", "podIP": "10.42.0.2" } });
        assert!(!should_be_in_endpoints(&pod(done), true));
        assert!(!should_be_in_endpoints(&pod(json!({ "status": { "phase": "Running" } })), true));
    }

    #[test]
    fn empty_and_external_name_services_select_nothing() {
        let service = |v: serde_json::Value| -> Service { serde_json::from_value(v).expect("svc") };
        assert!(selector(&service(json!({ "spec": { "selector": {} } }))).is_none());
        let external = json!({ "spec": { "type": "ExternalName", "selector": { "a": "b" } } });
        assert!(selector(&service(external)).is_none());
        let selected = service(json!({ "spec": { "selector": { "a": "b" } } }));
        let sel = selector(&selected).expect("a selector");
        assert!(selects(sel, &pod(json!({ "metadata": { "labels": { "a": "b", "c": "d" } } }))));
        assert!(!selects(sel, &pod(json!({ "metadata": { "labels": { "a": "c" } } }))));
    }
}
