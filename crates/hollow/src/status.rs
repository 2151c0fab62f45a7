//! What a hollow node says about itself and its pods, as a kubelet would: the Node it
//! registers (labels, pod CIDR, capacity, conditions, node info, addresses), its Lease,
//! and the status of a pod it "runs" (upstream's `pkg/kubelet/nodestatus` setters, the
//! node lease controller, and `generateAPIPodStatus` for a pod whose containers all
//! started).
//!
//! Pure functions of their inputs and the time given: no I/O. Times already in an
//! object are kept when nothing changed, so building a status twice from the same
//! inputs gives equal values and the caller writes only what changed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use keelson_api::k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use keelson_api::k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, HostIP, Node,
    NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Pod,
    PodCondition, PodIP, PodStatus,
};
use keelson_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    MicroTime, ObjectMeta, OwnerReference, Time,
};
use keelson_api::k8s_openapi::jiff::Timestamp;

use crate::cidr::Ipv4Cidr;

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The kubelet's `nodeLeaseDurationSeconds`; it renews every quarter of it.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// The kubelet's port, as a Node advertises it.
pub const KUBELET_PORT: i32 = 10250;

/// What every hollow node of a process has (`--cpu`, `--memory`, `--pods`, …).
#[derive(Clone, Debug)]
pub struct Shape {
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    /// `topology.kubernetes.io/region`.
    pub region: String,
    /// `kubernetes.io/arch` and `nodeInfo.architecture`.
    pub arch: String,
}

/// One hollow node: what differs from its siblings.
#[derive(Clone, Debug)]
pub struct Place {
    pub name: String,
    pub zone: String,
    pub pod_cidr: Ipv4Cidr,
    pub ip: Ipv4Addr,
}

/// The Kubernetes architecture name of the machine this runs on.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Now, to the second: what `metav1.Time` keeps on the wire.
pub fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The labels a kubelet puts on its Node (all of them in NodeRestriction's allowed set).
pub fn labels(place: &Place, shape: &Shape) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", place.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", shape.arch.as_str()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", shape.arch.as_str()),
        ("topology.kubernetes.io/zone", place.zone.as_str()),
        ("topology.kubernetes.io/region", shape.region.as_str()),
        ("node.kubernetes.io/instance-type", "hollow"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The Node a hollow node registers: its labels, pod CIDR and status.
pub fn node(place: &Place, shape: &Shape, now: &Time) -> Node {
    let cidr = place.pod_cidr.to_string();
    Node {
        metadata: ObjectMeta {
            name: Some(place.name.clone()),
            labels: Some(labels(place, shape)),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(cidr.clone()),
            pod_cidrs: Some(vec![cidr]),
            ..NodeSpec::default()
        }),
        status: Some(node_status(place, shape, now, None)),
    }
}

/// A hex digest of `parts`, for identifiers that must be stable for one name.
fn digest(parts: &[&str]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(part.as_bytes());
        context.update(b"\0");
    }
    context.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn uuid_of(hex: &str) -> String {
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The node's status; `previous` (what the Node holds) keeps conditions' transition
/// times when their status did not change, as the kubelet's setters do.
pub fn node_status(
    place: &Place,
    shape: &Shape,
    now: &Time,
    previous: Option<&NodeStatus>,
) -> NodeStatus {
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", shape.cpu.clone()),
        ("memory", shape.memory.clone()),
        ("pods", shape.pods.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Quantity(v)))
    .collect();
    let id = digest(&["machine", &place.name]);
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        let transition = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        NodeCondition {
            type_: kind.to_owned(),
            status: status.to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(transition),
        }
    };
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        // Ready last, as the kubelet keeps it.
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: place.ip.to_string() },
            NodeAddress { type_: "Hostname".into(), address: place.name.clone() },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(keelson_api::k8s_openapi::api::core::v1::DaemonEndpoint {
                port: KUBELET_PORT,
            }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: id[..32].to_owned(),
            system_uuid: uuid_of(&id[32..]),
            boot_id: uuid_of(&digest(&["boot", &place.name])),
            kernel_version: "hollow".into(),
            os_image: "Keelson hollow node".into(),
            container_runtime_version: format!("hollow://{}", env!("CARGO_PKG_VERSION")),
            kubelet_version: kubelet_version(),
            kube_proxy_version: String::new(),
            operating_system: "linux".into(),
            architecture: shape.arch.clone(),
            swap: None,
        }),
        ..NodeStatus::default()
    }
}

/// The version a hollow node reports: the one the API server serves.
pub fn kubelet_version() -> String {
    format!("v1.34.0+keelson.{}", env!("CARGO_PKG_VERSION"))
}

/// Whether `desired` says something `current` does not, heartbeats aside (the
/// kubelet's `nodeStatusHasChanged`): a change is reported at once, the rest only
/// every `nodeStatusReportFrequency`.
pub fn node_status_changed(current: Option<&NodeStatus>, desired: &NodeStatus) -> bool {
    let Some(current) = current else { return true };
    let strip = |status: &NodeStatus| {
        let mut status = status.clone();
        for condition in status.conditions.iter_mut().flatten() {
            condition.last_heartbeat_time = None;
        }
        status
    };
    let (current, desired) = (strip(current), strip(desired));
    current.conditions != desired.conditions
        || current.capacity != desired.capacity
        || current.allocatable != desired.allocatable
        || current.addresses != desired.addresses
        || current.node_info != desired.node_info
        || current.daemon_endpoints != desired.daemon_endpoints
}

/// The node's Lease as the kubelet renews it, owned by the Node once its uid is known.
pub fn lease(node: &str, node_uid: Option<&str>, resource_version: Option<String>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.to_owned()),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            resource_version,
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: node.to_owned(),
                    uid: uid.to_owned(),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_owned()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }),
    }
}

/// The status of `pod` running on a hollow node at `host_ip` with address `pod_ip`
/// (the host's for a host-network pod): phase Running, every container started and
/// ready, init containers completed (sidecars running). What the pod's status already
/// says — start times, transition times, container ids — is kept.
pub fn pod_status(pod: &Pod, host_ip: Ipv4Addr, pod_ip: Ipv4Addr, now: &Time) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let generation = pod.metadata.generation;
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let condition = |kind: &str| {
        let transition = old
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == "True")
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        PodCondition {
            type_: kind.to_owned(),
            status: "True".into(),
            last_transition_time: Some(transition),
            observed_generation: generation,
            ..PodCondition::default()
        }
    };
    let started_at = |name: &str, statuses: &Option<Vec<ContainerStatus>>| {
        statuses
            .iter()
            .flatten()
            .find(|s| s.name == name)
            .and_then(|s| s.state.as_ref())
            .and_then(|s| {
                s.running
                    .as_ref()
                    .and_then(|r| r.started_at.clone())
                    .or_else(|| s.terminated.as_ref().and_then(|t| t.started_at.clone()))
            })
            .unwrap_or_else(|| now.clone())
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let status = |name: &str, image: &str, state: ContainerState, ready: bool| ContainerStatus {
        name: name.to_owned(),
        image: image.to_owned(),
        image_id: image_id(image),
        container_id: Some(format!("containerd://{}", digest(&["container", uid, name]))),
        ready,
        started: Some(state.running.is_some()),
        restart_count: 0,
        state: Some(state),
        ..ContainerStatus::default()
    };
    let init: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let image = c.image.as_deref().unwrap_or_default();
            let started = started_at(&c.name, &old.init_container_statuses);
            if c.restart_policy.as_deref() == Some("Always") {
                // A sidecar: it keeps running beside the app containers.
                let running = ContainerStateRunning { started_at: Some(started) };
                status(
                    &c.name,
                    image,
                    ContainerState { running: Some(running), ..Default::default() },
                    true,
                )
            } else {
                let finished = old
                    .init_container_statuses
                    .iter()
                    .flatten()
                    .find(|s| s.name == c.name)
                    .and_then(|s| s.state.as_ref()?.terminated.as_ref()?.finished_at.clone())
                    .unwrap_or_else(|| now.clone());
                let done = ContainerStateTerminated {
                    exit_code: 0,
                    reason: Some("Completed".into()),
                    started_at: Some(started),
                    finished_at: Some(finished),
                    container_id: Some(format!(
                        "containerd://{}",
                        digest(&["container", uid, &c.name])
                    )),
                    ..ContainerStateTerminated::default()
                };
                status(
                    &c.name,
                    image,
                    ContainerState { terminated: Some(done), ..Default::default() },
                    true,
                )
            }
        })
        .collect();
    let containers: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            let running = ContainerStateRunning {
                started_at: Some(started_at(&c.name, &old.container_statuses)),
            };
            let state = ContainerState { running: Some(running), ..Default::default() };
            status(&c.name, c.image.as_deref().unwrap_or_default(), state, true)
        })
        .collect();
    let host = host_ip.to_string();
    let ip = pod_ip.to_string();
    PodStatus {
        phase: Some("Running".into()),
        // The kubelet's order: its own conditions, then PodScheduled.
        conditions: Some(
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
            ]
            .into_iter()
            .map(condition)
            .collect(),
        ),
        host_ip: Some(host.clone()),
        host_ips: Some(vec![HostIP { ip: host }]),
        pod_ip: Some(ip.clone()),
        pod_ips: Some(vec![PodIP { ip }]),
        start_time: old.start_time.clone().or_else(|| Some(now.clone())),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(containers),
        qos_class: old.qos_class.clone(),
        observed_generation: generation,
        ..PodStatus::default()
    }
}

/// A fake image id: the image's repository and a digest of its reference.
fn image_id(image: &str) -> String {
    let repository = match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    };
    let repository = repository.split('@').next().unwrap_or(repository);
    format!("{repository}@sha256:{}", digest(&["image", image]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_api::k8s_openapi::api::core::v1::{Container, PodSpec};

    fn place() -> Place {
        Place {
            name: "hollow-node-3".into(),
            zone: "zone-0".into(),
            pod_cidr: "10.42.3.0/24".parse().unwrap(),
            ip: "10.41.0.4".parse().unwrap(),
        }
    }

    fn shape() -> Shape {
        Shape {
            cpu: "32".into(),
            memory: "256Gi".into(),
            pods: 110,
            region: "region-0".into(),
            arch: "amd64".into(),
        }
    }

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    #[test]
    fn a_node_registers_ready_with_its_shape_labels_and_cidr() {
        let node = node(&place(), &shape(), &at(100));
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "hollow-node-3");
        assert_eq!(labels["topology.kubernetes.io/zone"], "zone-0");
        assert_eq!(labels["topology.kubernetes.io/region"], "region-0");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        let spec = node.spec.unwrap();
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.42.3.0/24"));
        assert!(spec.taints.is_none());
        let status = node.status.unwrap();
        assert_eq!(status.capacity.as_ref().unwrap()["pods"].0, "110");
        assert_eq!(status.allocatable.as_ref().unwrap()["memory"].0, "256Gi");
        let conditions: Vec<_> =
            status.conditions.unwrap().into_iter().map(|c| (c.type_, c.status)).collect();
        let expected = [
            ("MemoryPressure", "False"),
            ("DiskPressure", "False"),
            ("PIDPressure", "False"),
            ("Ready", "True"),
        ];
        assert_eq!(conditions, expected.map(|(t, s)| (t.to_owned(), s.to_owned())).to_vec());
        assert_eq!(status.addresses.unwrap()[0].address, "10.41.0.4");
        let info = status.node_info.unwrap();
        assert_eq!(info.kubelet_version, kubelet_version());
        assert_eq!(info.machine_id.len(), 32);
        // Stable for a name, distinct between names.
        let other = Place { name: "hollow-node-4".into(), ..place() };
        let other = node_status(&other, &shape(), &at(100), None).node_info.unwrap();
        assert_ne!(info.machine_id, other.machine_id);
        assert_eq!(
            info.machine_id,
            node_status(&place(), &shape(), &at(5), None).node_info.unwrap().machine_id
        );
    }

    #[test]
    fn a_heartbeat_alone_is_not_a_change_but_a_transition_is() {
        let first = node_status(&place(), &shape(), &at(100), None);
        let later = node_status(&place(), &shape(), &at(400), Some(&first));
        assert!(!node_status_changed(Some(&first), &later));
        let ready = |s: &NodeStatus| s.conditions.as_ref().unwrap()[3].clone();
        // Transition times survive; heartbeats move.
        assert_eq!(ready(&later).last_transition_time, Some(at(100)));
        assert_eq!(ready(&later).last_heartbeat_time, Some(at(400)));
        // A node marked NotReady by someone else is a change, and becomes Ready anew.
        let mut marked = first.clone();
        marked.conditions.as_mut().unwrap()[3].status = "Unknown".into();
        let fixed = node_status(&place(), &shape(), &at(500), Some(&marked));
        assert!(node_status_changed(Some(&marked), &fixed));
        assert_eq!(ready(&fixed).last_transition_time, Some(at(500)));
        let bigger = Shape { cpu: "64".into(), ..shape() };
        assert!(node_status_changed(Some(&first), &node_status(&place(), &bigger, &at(100), None)));
        assert!(node_status_changed(None, &first));
    }

    #[test]
    fn a_lease_names_its_holder_and_owner() {
        let lease = lease("hollow-node-3", Some("uid-1"), Some("42".into()));
        assert_eq!(lease.metadata.namespace.as_deref(), Some("kube-node-lease"));
        assert_eq!(lease.metadata.resource_version.as_deref(), Some("42"));
        let owner = &lease.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Node", "uid-1"));
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("hollow-node-3"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert!(spec.renew_time.is_some());
    }

    fn pod() -> Pod {
        let container = |name: &str, image: &str| Container {
            name: name.into(),
            image: Some(image.into()),
            ..Container::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("hollow-node-3".into()),
                init_containers: Some(vec![
                    container("setup", "busybox"),
                    Container {
                        restart_policy: Some("Always".into()),
                        ..container("proxy", "envoy:1.30")
                    },
                ]),
                containers: vec![container("app", "registry.local:5000/team/app:v2")],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                qos_class: Some("BestEffort".into()),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn a_pod_runs_ready_with_its_address_and_containers() {
        let host: Ipv4Addr = "10.41.0.4".parse().unwrap();
        let ip: Ipv4Addr = "10.42.3.2".parse().unwrap();
        let status = pod_status(&pod(), host, ip, &at(100));
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.42.3.2"));
        assert_eq!(status.pod_ips.as_ref().unwrap()[0].ip, "10.42.3.2");
        assert_eq!(status.host_ip.as_deref(), Some("10.41.0.4"));
        assert_eq!(status.start_time, Some(at(100)));
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(status.observed_generation, Some(1));
        let conditions: Vec<_> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            conditions,
            [
                ("PodReadyToStartContainers", "True"),
                ("Initialized", "True"),
                ("Ready", "True"),
                ("ContainersReady", "True"),
                ("PodScheduled", "True")
            ]
        );
        let app = &status.container_statuses.as_ref().unwrap()[0];
        assert!(app.ready && app.started == Some(true));
        assert!(app.state.as_ref().unwrap().running.is_some());
        assert!(app.container_id.as_ref().unwrap().starts_with("containerd://"));
        assert!(
            app.image_id.starts_with("registry.local:5000/team/app@sha256:"),
            "{}",
            app.image_id
        );
        let init = status.init_container_statuses.as_ref().unwrap();
        let setup = init[0].state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((setup.exit_code, setup.reason.as_deref()), (0, Some("Completed")));
        assert!(init[1].state.as_ref().unwrap().running.is_some(), "a sidecar keeps running");
    }

    #[test]
    fn building_a_running_pods_status_again_changes_nothing() {
        let host: Ipv4Addr = "10.41.0.4".parse().unwrap();
        let ip: Ipv4Addr = "10.42.3.2".parse().unwrap();
        let mut running = pod();
        running.status = Some(pod_status(&running, host, ip, &at(100)));
        let again = pod_status(&running, host, ip, &at(900));
        assert_eq!(Some(again), running.status);
    }
}
