//! What a StatefulSet's pods and claims must be (upstream's `stateful_set_utils.go`):
//! names and ordinals, a pod's identity (name, hostname, subdomain, the pod-name and
//! pod-index labels) and storage (one claim per volume claim template, named
//! `<template>-<set>-<ordinal>`), the claims' ownerReferences under
//! `persistentVolumeClaimRetentionPolicy`, and the status counts.
//!
//! Pure: the controller feeds it its informers' view.

use std::collections::BTreeMap;
use std::sync::Arc;

use keelson_api::k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
use keelson_api::k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use keelson_api::k8s_openapi::jiff::Timestamp;

use crate::history::HASH_LABEL;
use crate::pods::{self, controller_ref};

/// The label with a pod's own name (`StatefulSetPodNameLabel`).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a pod's ordinal (`PodIndexLabel`, GA in 1.32).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
pub const API_VERSION: &str = "apps/v1";
pub const KIND: &str = "StatefulSet";

fn spec(set: &StatefulSet) -> StatefulSetSpec {
    set.spec.clone().unwrap_or_default()
}

fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// `(parent, ordinal)` from a name `<parent>-<digits>` (upstream's
/// `getParentNameAndOrdinal`); `None` for any other name.
pub fn parent_and_ordinal(pod_name: &str) -> Option<(&str, i32)> {
    let (parent, digits) = pod_name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, digits.parse().ok()?))
}

pub fn ordinal(pod: &Pod) -> Option<i32> {
    parent_and_ordinal(name(&pod.metadata)).map(|(_, o)| o)
}

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.ordinals.start`.
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0)
}

/// Whether the pod's ordinal is in `[start, start + replicas)`.
pub fn in_ordinal_range(pod: &Pod, set: &StatefulSet) -> bool {
    let start = start_ordinal(set);
    ordinal(pod).is_some_and(|o| o >= start && o < start + replicas(set))
}

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", name(&set.metadata))
}

pub fn claim_name(set: &StatefulSet, template: &PersistentVolumeClaim, ordinal: i32) -> String {
    format!("{}-{}-{ordinal}", name(&template.metadata), name(&set.metadata))
}

/// Named after `set` (upstream's `isMemberOf`): what the set claims by its selector.
pub fn is_member(set: &StatefulSet, pod: &Pod) -> bool {
    parent_and_ordinal(name(&pod.metadata)).is_some_and(|(p, _)| p == name(&set.metadata))
}

/// Name, namespace and pod-name label as the ordinal says (upstream's
/// `identityMatches`).
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some((parent, ordinal)) = parent_and_ordinal(name(&pod.metadata)) else { return false };
    let label = pod.metadata.labels.as_ref().and_then(|l| l.get(POD_NAME_LABEL));
    ordinal >= 0
        && parent == name(&set.metadata)
        && pod.metadata.namespace == set.metadata.namespace
        && label.map(String::as_str) == pod.metadata.name.as_deref()
}

/// Every claim template mounted from its claim (upstream's `storageMatches`).
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ordinal) = ordinal(pod) else { return false };
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    spec(set).volume_claim_templates.iter().flatten().all(|template| {
        volumes.into_iter().flatten().find(|v| v.name == name(&template.metadata)).is_some_and(
            |v| {
                v.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str())
                    == Some(claim_name(set, template, ordinal).as_str())
            },
        )
    })
}

/// The claims of the pod with `ordinal`, by template name (upstream's
/// `getPersistentVolumeClaims`): the template named for the pod, in the set's
/// namespace, with the selector's `matchLabels` added to its labels.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let spec = spec(set);
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    let templates = spec.volume_claim_templates.unwrap_or_default();
    let mut out: Vec<(String, PersistentVolumeClaim)> = templates
        .into_iter()
        .map(|template| {
            let mut claim = template.clone();
            claim.metadata.name = Some(claim_name(set, &template, ordinal));
            claim.metadata.namespace = set.metadata.namespace.clone();
            let labels = claim.metadata.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(selector.clone());
            claim.status = None;
            (name(&template.metadata).to_owned(), claim)
        })
        .collect();
    // Upstream keys a map by template name; one per name.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// Points the claim templates' volumes at the pod's claims, keeping its other volumes
/// (upstream's `updateStorage`).
pub fn update_storage(set: &StatefulSet, pod: &mut Pod) {
    let Some(ordinal) = ordinal(pod) else { return };
    let claims = claims(set, ordinal);
    let spec = pod.spec.get_or_insert_with(Default::default);
    let current = spec.volumes.take().unwrap_or_default();
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(template, claim)| Volume {
            name: template.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: name(&claim.metadata).to_owned(),
                read_only: Some(false),
            }),
            ..Volume::default()
        })
        .collect();
    volumes.extend(current.into_iter().filter(|v| !claims.iter().any(|(t, _)| *t == v.name)));
    spec.volumes = Some(volumes);
}

/// Name, namespace and the pod-name and pod-index labels (upstream's
/// `updateIdentity`).
pub fn update_identity(set: &StatefulSet, pod: &mut Pod) {
    let Some(ordinal) = ordinal(pod) else { return };
    let name = pod_name(set, ordinal);
    pod.metadata.namespace = set.metadata.namespace.clone();
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    pod.metadata.name = Some(name);
}

/// The pod with `ordinal` made from `template` (upstream's `newStatefulSetPod` with the
/// template of the revision it belongs to), labelled with `revision`.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let namespace = set.metadata.namespace.clone().unwrap_or_default();
    let owner = controller_ref(API_VERSION, KIND, &set.metadata);
    let mut pod = pods::from_template(template, owner, &namespace);
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(pod_name(set, ordinal));
    update_identity(set, &mut pod);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = pod.metadata.name.clone();
    spec.subdomain =
        set.spec.as_ref().and_then(|s| s.service_name.clone()).filter(|s| !s.is_empty());
    update_storage(set, &mut pod);
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), revision.into());
    pod
}

/// The revision a pod was made from: its `controller-revision-hash` label.
pub fn pod_revision(pod: &Pod) -> &str {
    pod.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)).map_or("", String::as_str)
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

/// Seen by the API server (a phase is set).
pub fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

pub fn is_failed(pod: &Pod) -> bool {
    phase(pod) == "Failed"
}

pub fn is_succeeded(pod: &Pod) -> bool {
    phase(pod) == "Succeeded"
}

pub fn is_pending(pod: &Pod) -> bool {
    phase(pod) == "Pending"
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && pods::is_ready(pod)
}

pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    pods::is_available(pod, min_ready_seconds, now)
}

/// Not available, or going away (upstream's `isUnavailable`).
pub fn is_unavailable(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    !is_available(pod, min_ready_seconds, now) || is_terminating(pod)
}

/// `(whenDeleted, whenScaled)` deletes the claims: upstream's
/// `getPersistentVolumeClaimRetentionPolicy`, an unknown value read as Retain.
pub fn retention(set: &StatefulSet) -> (bool, bool) {
    let policy =
        set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.is_some_and(|v| v == "Delete");
    policy.map_or((false, false), |p| {
        (delete(p.when_deleted.as_ref()), delete(p.when_scaled.as_ref()))
    })
}

/// The pod or set an ownerReference names (`matchesRef`: version, kind and name).
fn refers_to(r: &OwnerReference, (api_version, kind): (&str, &str), meta: &ObjectMeta) -> bool {
    r.api_version == api_version && r.kind == kind && Some(&r.name) == meta.name.as_ref()
}

const POD_KIND: (&str, &str) = ("v1", "Pod");
const SET_KIND: (&str, &str) = (API_VERSION, KIND);

fn refs(claim: &PersistentVolumeClaim) -> &[OwnerReference] {
    claim.metadata.owner_references.as_deref().unwrap_or_default()
}

fn has_owner(claim: &PersistentVolumeClaim, owner: &ObjectMeta) -> bool {
    refs(claim).iter().any(|r| Some(&r.uid) == owner.uid.as_ref())
}

/// A reference to an earlier object of the same name (upstream's `hasStaleOwnerRef`).
pub fn has_stale_owner(
    claim: &PersistentVolumeClaim,
    owner: &ObjectMeta,
    kind: (&str, &str),
) -> bool {
    refs(claim)
        .iter()
        .find(|r| refers_to(r, kind, owner))
        .is_some_and(|r| Some(&r.uid) != owner.uid.as_ref())
}

/// Whether the claim's pod reference is to an earlier pod of that name, so the claim is
/// about to be collected (upstream's `PodClaimIsStale` for one claim).
pub fn claim_is_stale(set: &StatefulSet, claim: &PersistentVolumeClaim, pod: &Pod) -> bool {
    retention(set).1 && has_stale_owner(claim, &pod.metadata, POD_KIND)
}

/// Another controller owns the claim (upstream's `hasUnexpectedController`).
pub fn has_unexpected_controller(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Pod,
) -> bool {
    if retention(set) == (false, false) {
        return false;
    }
    refs(claim).iter().any(|r| {
        if refers_to(r, SET_KIND, &set.metadata) {
            return Some(&r.uid) != set.metadata.uid.as_ref();
        }
        if refers_to(r, POD_KIND, &pod.metadata) {
            return Some(&r.uid) != pod.metadata.uid.as_ref();
        }
        r.controller == Some(true)
    })
}

fn has_non_controller_owner(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    refs(claim).iter().any(|r| {
        (Some(&r.uid) == set.metadata.uid.as_ref() || Some(&r.uid) == pod.metadata.uid.as_ref())
            && r.controller != Some(true)
    })
}

/// Whether the claim's ownerReferences are what the retention policy asks (upstream's
/// `isClaimOwnerUpToDate`): whenDeleted=Delete owns it by the set, whenScaled=Delete by
/// the pod once the pod is scaled away.
pub fn claim_owner_up_to_date(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    if has_stale_owner(claim, &set.metadata, SET_KIND)
        || has_stale_owner(claim, &pod.metadata, POD_KIND)
    {
        return true;
    }
    if has_unexpected_controller(claim, set, pod) {
        return !(has_owner(claim, &set.metadata) || has_owner(claim, &pod.metadata));
    }
    if has_non_controller_owner(claim, set, pod) {
        return false;
    }
    let (want_set, want_pod) = wanted_owners(set, pod);
    has_owner(claim, &set.metadata) == want_set && has_owner(claim, &pod.metadata) == want_pod
}

/// (owned by the set, owned by the pod) as the policy wants it.
fn wanted_owners(set: &StatefulSet, pod: &Pod) -> (bool, bool) {
    let (when_deleted, when_scaled) = retention(set);
    let scaled_down = !in_ordinal_range(pod, set);
    match (when_deleted, when_scaled) {
        (false, false) => (false, false),
        (true, false) => (true, false),
        (false, true) => (false, scaled_down),
        (true, true) => (!scaled_down, scaled_down),
    }
}

/// The claim's ownerReferences set as the policy wants (upstream's
/// `updateClaimOwnerRefForSetAndPod`): references to the set and the pod dropped, then
/// added back as controller references where wanted — none under another controller.
pub fn set_claim_owners(claim: &mut PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) {
    let unexpected = has_unexpected_controller(claim, set, pod);
    let mut owners: Vec<OwnerReference> = refs(claim)
        .iter()
        .filter(|r| {
            !refers_to(r, SET_KIND, &set.metadata) && !refers_to(r, POD_KIND, &pod.metadata)
        })
        .cloned()
        .collect();
    if !unexpected {
        let (want_set, want_pod) = wanted_owners(set, pod);
        let mut add = |meta: &ObjectMeta, (api_version, kind): (&str, &str)| {
            if !owners.iter().any(|r| Some(&r.uid) == meta.uid.as_ref()) {
                owners.push(controller_ref(api_version, kind, meta));
            }
        };
        if want_pod {
            add(&pod.metadata, POD_KIND);
        }
        if want_set {
            add(&set.metadata, SET_KIND);
        }
    }
    claim.metadata.owner_references = Some(owners);
}

/// The counts of `pods` (upstream's `computeReplicaStatus`, summed over the lists).
pub fn count(
    status: &mut StatefulSetStatus,
    pods: &[&Pod],
    min_ready_seconds: i32,
    (current, update): (&str, &str),
    now: Timestamp,
) {
    let (mut replicas, mut ready, mut available, mut current_n, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods {
        if is_created(pod) {
            replicas += 1;
        }
        if is_running_and_ready(pod) {
            ready += 1;
            if is_available(pod, min_ready_seconds, now) {
                available += 1;
            }
        }
        if is_created(pod) && !is_terminating(pod) {
            let revision = pod_revision(pod);
            current_n += i32::from(revision == current);
            updated += i32::from(revision == update);
        }
    }
    status.replicas = replicas;
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.current_replicas = Some(current_n);
    status.updated_replicas = Some(updated);
}

/// A finished rolling update makes the update revision current (upstream's
/// `completeRollingUpdate`).
pub fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let n = replicas(set);
    if is_rolling_update(set)
        && status.updated_replicas == Some(n)
        && status.ready_replicas == Some(n)
        && status.replicas == n
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

/// Whether `status` differs from the set's in what upstream compares
/// (`inconsistentStatus`).
pub fn status_changed(set: &StatefulSet, status: &StatefulSetStatus) -> bool {
    let old = set.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    status.observed_generation.unwrap_or(0) > old.observed_generation.unwrap_or(0)
        || status.replicas != old.replicas
        || n(status.current_replicas) != n(old.current_replicas)
        || n(status.ready_replicas) != n(old.ready_replicas)
        || n(status.updated_replicas) != n(old.updated_replicas)
        || status.current_revision != old.current_revision
        || n(status.available_replicas) != n(old.available_replicas)
        || status.update_revision != old.update_revision
}

pub fn is_rolling_update(set: &StatefulSet) -> bool {
    let strategy = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate"
}

/// `rollingUpdate.partition`, if the strategy has a `rollingUpdate`.
pub fn partition(set: &StatefulSet) -> Option<i32> {
    let strategy = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref())?;
    Some(strategy.rolling_update.as_ref()?.partition.unwrap_or(0))
}

/// Whether a missing pod with `ordinal` is made from the current revision rather than
/// the update revision (upstream's `newVersionedStatefulSetPod`): below the partition,
/// or, with RollingUpdate and no `rollingUpdate`, below the current replicas.
pub fn made_from_current(set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(set);
    match partition(set) {
        Some(partition) => ordinal < start + partition,
        None => {
            let current = set.status.as_ref().and_then(|s| s.current_replicas).unwrap_or(0);
            is_rolling_update(set) && ordinal < start + current
        }
    }
}

/// Pods by ordinal, highest first (upstream's `descendingOrdinal`).
pub fn sort_descending(pods: &mut [Arc<Pod>]) {
    pods.sort_by_key(|p| std::cmp::Reverse(ordinal(p).unwrap_or(-1)));
}
