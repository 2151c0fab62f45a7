//! The volume plugins, basic until the PV controller and CSI arrive:
//!
//! - `VolumeBinding`: every claim the pod uses must exist and not be going away; a claim
//!   bound to a PV fits only the nodes the PV's node affinity allows; an unbound claim
//!   of an `Immediate` class waits for the PV controller; an unbound claim of a
//!   `WaitForFirstConsumer` class with a provisioner is provisioned for the chosen node
//!   (PreBind writes `volume.kubernetes.io/selected-node` on it). Binding a
//!   `WaitForFirstConsumer` claim to an existing PV is not done yet: such a claim fits
//!   no node, said with upstream's reason.
//! - `VolumeRestrictions`: a `ReadWriteOncePod` claim already in use fits nowhere.
//! - `VolumeZone`: a bound PV's zone and region labels must match the node's.
//! - `NodeVolumeLimits`: the CSI volumes per driver on a node stay within the driver's
//!   `CSINode` allocatable count.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use keelson_api::k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use serde::Deserialize;

use super::helper;
use crate::cache::Snapshot;
use crate::framework::{
    ClusterEvent, Code, CycleState, EventResource, Handle, Plugin, Point, PreFilterResult, Status,
    action, futures::BoxFuture,
};
use crate::types::{NodeInfo, PodInfo};

/// `VolumeBindingArgs`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BindingArgs {
    #[serde(default = "bind_timeout")]
    pub bind_timeout_seconds: i64,
    #[serde(default)]
    pub shape: Option<serde_json::Value>,
}

fn bind_timeout() -> i64 {
    600
}

impl Default for BindingArgs {
    fn default() -> Self {
        BindingArgs { bind_timeout_seconds: 600, shape: None }
    }
}

/// The claims of a pod, looked up: `(namespace/name, claim)`.
fn claims(
    handle: &Arc<dyn Handle>,
    pod: &PodInfo,
) -> Result<Vec<(String, Arc<PersistentVolumeClaim>)>, Status> {
    let mut out = Vec::new();
    for key in pod.claims() {
        let (ns, name) = key.split_once('/').unwrap_or_default();
        let Some(claim) = handle.lister().pvc(ns, name) else {
            return Err(Status::unresolvable(format!(
                "persistentvolumeclaim \"{name}\" not found"
            )));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(Status::unresolvable(format!(
                "persistentvolumeclaim \"{name}\" is being deleted"
            )));
        }
        out.push((key, claim));
    }
    Ok(out)
}

fn bound_pv(
    handle: &Arc<dyn Handle>,
    claim: &PersistentVolumeClaim,
) -> Option<Result<Arc<PersistentVolume>, ()>> {
    let name = claim.spec.as_ref()?.volume_name.as_deref().filter(|n| !n.is_empty())?;
    Some(handle.lister().pv(name).ok_or(()))
}

pub struct VolumeBinding {
    handle: Arc<dyn Handle>,
}

impl VolumeBinding {
    pub fn new(_: BindingArgs, handle: Arc<dyn Handle>) -> Self {
        VolumeBinding { handle }
    }
}

#[derive(Clone, Default)]
struct BindingState {
    bound: Vec<Arc<PersistentVolume>>,
    /// Unbound `WaitForFirstConsumer` claims to provision on the chosen node.
    provision: Vec<(String, String)>,
    /// Unbound `WaitForFirstConsumer` claims without a provisioner.
    unprovisionable: bool,
}

const BINDING: &str = "PreFilterVolumeBinding";

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::PreFilter, Point::Filter, Point::Reserve, Point::PreBind]
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent {
                resource: EventResource::PersistentVolumeClaim,
                actions: action::ADD | action::UPDATE,
            },
            ClusterEvent {
                resource: EventResource::PersistentVolume,
                actions: action::ADD | action::UPDATE,
            },
            ClusterEvent {
                resource: EventResource::StorageClass,
                actions: action::ADD | action::UPDATE,
            },
            ClusterEvent {
                resource: EventResource::Node,
                actions: action::ADD | action::UPDATE_NODE_LABEL,
            },
            ClusterEvent {
                resource: EventResource::CsiNode,
                actions: action::ADD | action::UPDATE,
            },
        ]
    }
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        if pod.claims().is_empty() {
            return (None, Status::skip());
        }
        let claims = match claims(&self.handle, pod) {
            Ok(c) => c,
            Err(status) => return (None, status),
        };
        let mut s = BindingState::default();
        for (key, claim) in claims {
            match bound_pv(&self.handle, &claim) {
                Some(Ok(pv)) => s.bound.push(pv),
                Some(Err(())) => {
                    return (
                        None,
                        Status::unresolvable(
                            "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)",
                        ),
                    );
                }
                None => {
                    let class_name = claim
                        .spec
                        .as_ref()
                        .and_then(|s| s.storage_class_name.clone())
                        .unwrap_or_default();
                    let class = self.handle.lister().storage_class(&class_name);
                    let wait = class
                        .as_ref()
                        .and_then(|c| c.volume_binding_mode.as_deref())
                        .is_some_and(|m| m == "WaitForFirstConsumer");
                    if !wait {
                        return (
                            None,
                            Status::unresolvable(
                                "pod has unbound immediate PersistentVolumeClaims",
                            ),
                        );
                    }
                    let provisioner = class.map(|c| c.provisioner.clone()).unwrap_or_default();
                    if provisioner.is_empty() || provisioner == "kubernetes.io/no-provisioner" {
                        s.unprovisionable = true;
                    } else {
                        let (ns, name) = key.split_once('/').unwrap_or_default();
                        s.provision.push((ns.to_owned(), name.to_owned()));
                    }
                }
            }
        }
        state.write(BINDING, s);
        (None, Status::success())
    }
    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<BindingState>(BINDING) else { return Status::success() };
        let mut reasons = Vec::new();
        let conflict = s.bound.iter().any(|pv| {
            let affinity = pv
                .spec
                .as_ref()
                .and_then(|s| s.node_affinity.as_ref())
                .and_then(|a| a.required.as_ref());
            affinity.is_some_and(|selector| !helper::selector_matches(selector, node))
        });
        if conflict {
            reasons.push("node(s) didn't match PersistentVolume's node affinity".to_owned());
        }
        if s.unprovisionable {
            reasons.push("node(s) didn't find available persistent volumes to bind".to_owned());
        }
        if reasons.is_empty() {
            return Status::success();
        }
        Status { code: Code::UnschedulableAndUnresolvable, reasons, plugin: "" }
    }
    fn pre_bind(
        &self,
        state: &CycleState,
        _: &PodInfo,
        node: &str,
    ) -> Option<BoxFuture<'static, Status>> {
        let s = state.read::<BindingState>(BINDING)?;
        if s.provision.is_empty() {
            return None;
        }
        let handle = self.handle.clone();
        let claims = s.provision.clone();
        let node = node.to_owned();
        Some(Box::pin(async move {
            for (ns, name) in claims {
                if let Err(e) = handle.select_node_for_claim(&ns, &name, &node).await {
                    return Status::error(e);
                }
            }
            Status::success()
        }))
    }
}

pub struct VolumeRestrictions {
    handle: Arc<dyn Handle>,
}

impl VolumeRestrictions {
    pub fn new(handle: Arc<dyn Handle>) -> Self {
        VolumeRestrictions { handle }
    }
}

const RESTRICTIONS: &str = "PreFilterVolumeRestrictions";

impl Plugin for VolumeRestrictions {
    fn name(&self) -> &'static str {
        "VolumeRestrictions"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::PreFilter, Point::Filter]
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent { resource: EventResource::AssignedPod, actions: action::DELETE },
            ClusterEvent {
                resource: EventResource::PersistentVolumeClaim,
                actions: action::ADD | action::UPDATE,
            },
        ]
    }
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        if pod.claims().is_empty() {
            return (None, Status::skip());
        }
        let claims = match claims(&self.handle, pod) {
            Ok(c) => c,
            Err(status) => return (None, status),
        };
        let once: HashSet<String> = claims
            .into_iter()
            .filter(|(_, c)| {
                c.spec
                    .as_ref()
                    .and_then(|s| s.access_modes.as_ref())
                    .is_some_and(|m| m.iter().any(|m| m == "ReadWriteOncePod"))
            })
            .map(|(k, _)| k)
            .collect();
        if once.is_empty() {
            return (None, Status::skip());
        }
        let in_use: i64 = snapshot
            .nodes
            .iter()
            .flat_map(|n| n.pvc_refs.iter())
            .filter(|(k, _)| once.contains(*k))
            .map(|(_, n)| *n as i64)
            .sum();
        state.write(RESTRICTIONS, (once, in_use));
        (None, Status::success())
    }
    fn add_pod(
        &self,
        state: &mut CycleState,
        _: &PodInfo,
        other: &Arc<PodInfo>,
        _: &NodeInfo,
    ) -> Status {
        if let Some((once, in_use)) = state.read_mut::<(HashSet<String>, i64)>(RESTRICTIONS) {
            *in_use += other.claims().iter().filter(|c| once.contains(*c)).count() as i64;
        }
        Status::success()
    }
    fn remove_pod(
        &self,
        state: &mut CycleState,
        _: &PodInfo,
        other: &Arc<PodInfo>,
        _: &NodeInfo,
    ) -> Status {
        if let Some((once, in_use)) = state.read_mut::<(HashSet<String>, i64)>(RESTRICTIONS) {
            *in_use -= other.claims().iter().filter(|c| once.contains(*c)).count() as i64;
        }
        Status::success()
    }
    fn filter(&self, state: &CycleState, _: &PodInfo, _: &NodeInfo) -> Status {
        match state.read::<(HashSet<String>, i64)>(RESTRICTIONS) {
            Some((_, n)) if *n > 0 => Status::unschedulable(
                "node(s) unavailable due to PersistentVolumeClaim with ReadWriteOncePod access mode already in-use by another pod",
            ),
            _ => Status::success(),
        }
    }
}

pub struct VolumeZone {
    handle: Arc<dyn Handle>,
}

impl VolumeZone {
    pub fn new(handle: Arc<dyn Handle>) -> Self {
        VolumeZone { handle }
    }
}

const TOPOLOGY_LABELS: [&str; 4] = [
    helper::ZONE,
    helper::REGION,
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
];

const ZONE_STATE: &str = "PreFilterVolumeZone";

impl Plugin for VolumeZone {
    fn name(&self) -> &'static str {
        "VolumeZone"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::PreFilter, Point::Filter]
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent {
                resource: EventResource::Node,
                actions: action::ADD | action::UPDATE_NODE_LABEL,
            },
            ClusterEvent {
                resource: EventResource::PersistentVolumeClaim,
                actions: action::ADD | action::UPDATE,
            },
            ClusterEvent {
                resource: EventResource::PersistentVolume,
                actions: action::ADD | action::UPDATE,
            },
        ]
    }
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        if pod.claims().is_empty() {
            return (None, Status::skip());
        }
        let Ok(claims) = claims(&self.handle, pod) else { return (None, Status::skip()) };
        // Per topology label: the values the bound volumes allow (`a__b` lists several).
        let mut wanted: Vec<(String, HashSet<String>)> = Vec::new();
        for (_, claim) in claims {
            let Some(Ok(pv)) = bound_pv(&self.handle, &claim) else { continue };
            for (k, v) in pv.metadata.labels.iter().flatten() {
                if TOPOLOGY_LABELS.contains(&k.as_str()) {
                    wanted.push((k.clone(), v.split("__").map(str::to_owned).collect()));
                }
            }
        }
        if wanted.is_empty() {
            return (None, Status::skip());
        }
        state.write(ZONE_STATE, wanted);
        (None, Status::success())
    }
    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Status {
        let Some(wanted) = state.read::<Vec<(String, HashSet<String>)>>(ZONE_STATE) else {
            return Status::success();
        };
        // A node without any topology label is not constrained (as upstream).
        if !TOPOLOGY_LABELS.iter().any(|l| node.label(l).is_some()) {
            return Status::success();
        }
        for (key, values) in wanted {
            if !node.label(key).is_some_and(|v| values.contains(v)) {
                return Status::unresolvable("node(s) had no available volume zone");
            }
        }
        Status::success()
    }
}

pub struct NodeVolumeLimits {
    handle: Arc<dyn Handle>,
}

impl NodeVolumeLimits {
    pub fn new(handle: Arc<dyn Handle>) -> Self {
        NodeVolumeLimits { handle }
    }

    /// The CSI volumes of `pod` by driver: unique volume handles.
    fn csi_volumes(&self, pod: &PodInfo) -> HashMap<String, HashSet<String>> {
        let mut out: HashMap<String, HashSet<String>> = HashMap::new();
        for key in pod.claims() {
            let (ns, name) = key.split_once('/').unwrap_or_default();
            let Some(claim) = self.handle.lister().pvc(ns, name) else { continue };
            let Some(Ok(pv)) = bound_pv(&self.handle, &claim) else { continue };
            if let Some(csi) = pv.spec.as_ref().and_then(|s| s.csi.as_ref()) {
                out.entry(csi.driver.clone()).or_default().insert(csi.volume_handle.clone());
            }
        }
        for v in pod.pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
            if let Some(csi) = &v.csi {
                out.entry(csi.driver.clone()).or_default().insert(format!(
                    "{}-{}",
                    pod.key(),
                    v.name
                ));
            }
        }
        out
    }
}

const LIMITS: &str = "PreFilterNodeVolumeLimits";

impl Plugin for NodeVolumeLimits {
    fn name(&self) -> &'static str {
        "NodeVolumeLimits"
    }
    fn points(&self) -> &'static [Point] {
        &[Point::PreFilter, Point::Filter]
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent {
                resource: EventResource::CsiNode,
                actions: action::ADD | action::UPDATE,
            },
            ClusterEvent { resource: EventResource::AssignedPod, actions: action::DELETE },
            ClusterEvent { resource: EventResource::PersistentVolumeClaim, actions: action::ADD },
        ]
    }
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let wanted = self.csi_volumes(pod);
        if wanted.is_empty() {
            return (None, Status::skip());
        }
        state.write(LIMITS, wanted);
        (None, Status::success())
    }
    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Status {
        let Some(wanted) = state.read::<HashMap<String, HashSet<String>>>(LIMITS) else {
            return Status::success();
        };
        let Some(csi_node) = self.handle.lister().csi_node(&node.name) else {
            return Status::success();
        };
        for driver in csi_node.spec.drivers.iter() {
            let Some(limit) = driver.allocatable.as_ref().and_then(|a| a.count) else { continue };
            let Some(new) = wanted.get(&driver.name) else { continue };
            let mut attached: HashSet<String> = HashSet::new();
            for p in &node.pods {
                if let Some(v) = self.csi_volumes(p).remove(&driver.name) {
                    attached.extend(v);
                }
            }
            let added = new.iter().filter(|v| !attached.contains(*v)).count();
            if attached.len() + added > limit as usize {
                return Status::unschedulable("node(s) exceed max volume count");
            }
        }
        Status::success()
    }
}
