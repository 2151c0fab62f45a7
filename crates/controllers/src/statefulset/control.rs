//! One StatefulSet's pods brought towards its spec (upstream's
//! `stateful_set_control.go` and `stateful_pod_control.go`): the replicas in ordinal
//! order, then the condemned pods beyond them from the highest ordinal, then the
//! rolling update, with the pod and claim writes and their events.
//!
//! OrderedReady (`monotonic`) stops at the first pod that is not yet Running, Ready and
//! available, and makes or removes one pod a sync; Parallel does all at once in
//! slow-start batches. `MaxUnavailableStatefulSet` is alpha and off in 1.34, so the
//! rolling update replaces one pod at a time whatever `maxUnavailable` says.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use keelson_api::k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use keelson_api::k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use keelson_api::k8s_openapi::jiff::Timestamp;
use keelson_runtime::events::EventType;
use keelson_runtime::informer::key_of;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use super::identity::{self as id};
use super::{Controller, Error, reference};
use crate::history;
use crate::pods;
use crate::replicaset::message;

/// The set's current and update revisions with the templates they record (upstream's
/// `ApplyRevision` of each).
pub struct Revisions {
    pub current: String,
    pub update: String,
    pub current_template: PodTemplateSpec,
    pub update_template: PodTemplateSpec,
}

impl Revisions {
    pub fn new(
        set: &StatefulSet,
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Self {
        let own = || set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        Revisions {
            current: history::name_of(current),
            update: history::name_of(update),
            current_template: history::template_of(current).unwrap_or_else(own),
            update_template: history::template_of(update).unwrap_or_else(own),
        }
    }
}

/// The pods of a sync: one per ordinal in range (made up where missing) and the
/// condemned beyond it, highest ordinal first.
pub struct Plan {
    pub replicas: Vec<Arc<Pod>>,
    pub condemned: Vec<Arc<Pod>>,
    /// The name of the first unavailable pod, replicas before condemned, by ordinal.
    pub first_unavailable: Option<String>,
}

/// Sorts `pods` into replicas and condemned (upstream's first half of
/// `updateStatefulSet`).
pub fn plan(set: &StatefulSet, revs: &Revisions, pods: &[Arc<Pod>], now: Timestamp) -> Plan {
    let start = id::start_ordinal(set);
    let count = id::replicas(set).max(0) as usize;
    let mut slots: Vec<Option<Arc<Pod>>> = vec![None; count];
    let mut condemned = Vec::new();
    for pod in pods {
        match id::ordinal(pod) {
            Some(o) if id::in_ordinal_range(pod, set) => {
                slots[(o - start) as usize] = Some(pod.clone())
            }
            Some(_) => condemned.push(pod.clone()),
            None => {}
        }
    }
    let replicas: Vec<Arc<Pod>> = slots
        .into_iter()
        .enumerate()
        .map(|(i, slot)| {
            slot.unwrap_or_else(|| {
                let ordinal = start + i as i32;
                let pod = if id::made_from_current(set, ordinal) {
                    id::new_pod(set, &revs.current_template, ordinal, &revs.current)
                } else {
                    id::new_pod(set, &revs.update_template, ordinal, &revs.update)
                };
                Arc::new(pod)
            })
        })
        .collect();
    id::sort_descending(&mut condemned);
    let min_ready = min_ready_seconds(set);
    let first_unavailable = replicas
        .iter()
        .chain(condemned.iter().rev())
        .find(|p| id::is_unavailable(p, min_ready, now))
        .and_then(|p| p.metadata.name.clone());
    Plan { replicas, condemned, first_unavailable }
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// The pod the rolling update deletes next, if any (upstream's loop at the end of
/// `updateStatefulSet`): from the highest ordinal down to the partition, the first pod
/// not of the update revision and not terminating — unless an unavailable pod above it
/// makes the update wait.
pub fn next_to_update<'a>(
    set: &StatefulSet,
    replicas: &'a [Arc<Pod>],
    update: &str,
    now: Timestamp,
) -> Option<&'a Arc<Pod>> {
    let min = id::partition(set).unwrap_or(0).max(0) as usize;
    for pod in replicas.iter().skip(min).rev() {
        if id::pod_revision(pod) != update && !id::is_terminating(pod) {
            return Some(pod);
        }
        if id::is_unavailable(pod, min_ready_seconds(set), now) {
            return None;
        }
    }
    None
}

impl Controller {
    /// Upstream's `updateStatefulSet`: the status of the pods, and whether acting on
    /// them failed. Acts only when `act` (the expectations are satisfied).
    pub(super) async fn update_set(
        &self,
        key: &str,
        set: &StatefulSet,
        revs: &Revisions,
        collisions: i32,
        pods: &[Arc<Pod>],
        act: bool,
    ) -> (StatefulSetStatus, Result<(), Error>) {
        let now = Timestamp::now();
        let mut status = StatefulSetStatus {
            observed_generation: set.metadata.generation,
            current_revision: Some(revs.current.clone()),
            update_revision: Some(revs.update.clone()),
            collision_count: Some(collisions),
            ..StatefulSetStatus::default()
        };
        let min_ready = min_ready_seconds(set);
        let pod_refs: Vec<&Pod> = pods.iter().map(|p| &**p).collect();
        let names = (revs.current.as_str(), revs.update.as_str());
        id::count(&mut status, &pod_refs, min_ready, names, now);
        if set.metadata.deletion_timestamp.is_some() || !act {
            return (status, Ok(()));
        }
        let plan = plan(set, revs, pods, now);
        let mut update_set = set.clone();
        if let Some(spec) = update_set.spec.as_mut() {
            spec.template = revs.update_template.clone();
        }
        let result = self.manage(key, set, &update_set, &plan).await;
        let all: Vec<&Pod> = plan.replicas.iter().chain(&plan.condemned).map(|p| &**p).collect();
        id::count(&mut status, &all, min_ready, names, now);
        match result {
            Ok(true) => return (status, Ok(())),
            Err(e) => return (status, Err(e)),
            Ok(false) => {}
        }
        if !id::is_rolling_update(set) {
            return (status, Ok(()));
        }
        if let Some(pod) = next_to_update(set, &plan.replicas, &revs.update, now) {
            tracing::debug!(statefulset = key, pod = name(pod), "terminating pod for update");
            let deleted = self.delete_pod(key, set, pod).await;
            let current = status.current_replicas.unwrap_or(0);
            status.current_replicas = Some(current - 1);
            return (status, deleted);
        }
        (status, Ok(()))
    }

    /// The replicas, the condemned pods' claims, then the condemned pods; `Ok(true)`
    /// when the sync stops there (an OrderedReady set waiting on a pod).
    async fn manage(
        &self,
        key: &str,
        set: &StatefulSet,
        update_set: &StatefulSet,
        plan: &Plan,
    ) -> Result<bool, Error> {
        let monotonic =
            set.spec.as_ref().and_then(|s| s.pod_management_policy.as_deref()) != Some("Parallel");
        let replica =
            |i: usize| self.process_replica(key, set, update_set, monotonic, &plan.replicas[i]);
        if run_for_all(plan.replicas.len(), replica, monotonic).await? {
            return Ok(true);
        }
        let fix_claims = |i: usize| async move {
            let pod = &plan.condemned[i];
            if !self.claims_match_retention(update_set, pod) {
                self.update_claims_for_retention(update_set, pod).await?;
            }
            Ok(false)
        };
        if run_for_all(plan.condemned.len(), fix_claims, monotonic).await? {
            return Ok(true);
        }
        let first = plan.first_unavailable.as_deref();
        let condemned =
            |i: usize| self.process_condemned(key, set, first, monotonic, &plan.condemned[i]);
        run_for_all(plan.condemned.len(), condemned, monotonic).await
    }

    /// Upstream's `processReplica`: `Ok(true)` when an OrderedReady set must stop here.
    async fn process_replica(
        &self,
        key: &str,
        set: &StatefulSet,
        update_set: &StatefulSet,
        monotonic: bool,
        pod: &Arc<Pod>,
    ) -> Result<bool, Error> {
        let now = Timestamp::now();
        if id::is_failed(pod) || id::is_succeeded(pod) {
            if !id::is_terminating(pod) {
                tracing::debug!(statefulset = key, pod = name(pod), "recreating failed pod");
                self.delete_pod(key, set, pod).await?;
            }
            return Ok(true);
        }
        if !id::is_created(pod) {
            if self.pod_claim_is_stale(set, pod) {
                return Ok(true);
            }
            self.create_pod(key, set, pod).await?;
            if monotonic {
                return Ok(true);
            }
        }
        if id::is_pending(pod) {
            self.create_claims(set, pod).await?;
            if let Err(e) = self.update_claims_for_retention(set, pod).await {
                self.pod_event("update", set, pod, Some(&e));
                return Err(e);
            }
        }
        if monotonic
            && (id::is_terminating(pod)
                || !id::is_running_and_ready(pod)
                || !id::is_available(pod, min_ready_seconds(set), now))
        {
            return Ok(true);
        }
        if id::identity_matches(set, pod)
            && id::storage_matches(set, pod)
            && self.claims_match_retention(update_set, pod)
        {
            return Ok(false);
        }
        self.update_pod(update_set, pod).await?;
        Ok(false)
    }

    /// Upstream's `processCondemned`.
    async fn process_condemned(
        &self,
        key: &str,
        set: &StatefulSet,
        first_unavailable: Option<&str>,
        monotonic: bool,
        pod: &Arc<Pod>,
    ) -> Result<bool, Error> {
        if id::is_terminating(pod) {
            return Ok(monotonic);
        }
        let first = first_unavailable == pod.metadata.name.as_deref();
        let healthy = id::is_running_and_ready(pod)
            && id::is_available(pod, min_ready_seconds(set), Timestamp::now());
        if monotonic && !healthy && !first {
            return Ok(true);
        }
        tracing::debug!(statefulset = key, pod = name(pod), "terminating pod for scale down");
        self.delete_pod(key, set, pod).await?;
        Ok(true)
    }

    /// The claims of `pod`, made where missing (upstream's `createPersistentVolumeClaims`).
    async fn create_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let Some(ordinal) = id::ordinal(pod) else { return Ok(()) };
        let namespace = set.metadata.namespace.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &namespace);
        let mut first = None;
        for (_, claim) in id::claims(set, ordinal) {
            let claim_name = claim.metadata.name.clone().unwrap_or_default();
            match self.claims.get(&format!("{namespace}/{claim_name}")) {
                Some(existing) if existing.metadata.deletion_timestamp.is_some() => {
                    first.get_or_insert(Error::ClaimDeleting(claim_name));
                }
                Some(_) => {}
                None => match api.create(&PostParams::default(), &claim).await {
                    Ok(_) => self.recorder.event(
                        &reference(set),
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!(
                            "create Claim {claim_name} Pod {} in StatefulSet {} success",
                            name(pod),
                            set.metadata.name.as_deref().unwrap_or_default()
                        ),
                    ),
                    Err(e) => {
                        if !matches!(&e, kube::Error::Api(s) if s.code == 409) {
                            self.recorder.event(
                                &reference(set),
                                EventType::Warning,
                                "FailedCreate",
                                &format!(
                                    "create Claim {claim_name} for Pod {} in StatefulSet {} failed error: {}",
                                    name(pod),
                                    set.metadata.name.as_deref().unwrap_or_default(),
                                    message(&e)
                                ),
                            );
                        }
                        first.get_or_insert(Error::CreateClaim { claim: claim_name, source: e });
                    }
                },
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The claims of `pod` the informer has.
    fn claims_of(&self, set: &StatefulSet, pod: &Pod) -> Vec<Arc<PersistentVolumeClaim>> {
        let Some(ordinal) = id::ordinal(pod) else { return Vec::new() };
        let namespace = set.metadata.namespace.clone().unwrap_or_default();
        id::claims(set, ordinal)
            .into_iter()
            .filter_map(|(_, c)| {
                self.claims.get(&format!("{namespace}/{}", c.metadata.name.unwrap_or_default()))
            })
            .collect()
    }

    /// Upstream's `ClaimsMatchRetentionPolicy`: missing claims count as matching.
    fn claims_match_retention(&self, set: &StatefulSet, pod: &Pod) -> bool {
        self.claims_of(set, pod).iter().all(|c| id::claim_owner_up_to_date(c, set, pod))
    }

    /// Upstream's `PodClaimIsStale`: a claim still owned by an earlier pod of this name
    /// is about to be collected; the pod waits for it.
    fn pod_claim_is_stale(&self, set: &StatefulSet, pod: &Pod) -> bool {
        self.claims_of(set, pod).iter().any(|c| id::claim_is_stale(set, c, pod))
    }

    /// Upstream's `UpdatePodClaimForRetentionPolicy`.
    async fn update_claims_for_retention(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let namespace = set.metadata.namespace.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &namespace);
        for claim in self.claims_of(set, pod) {
            let claim_name = claim.metadata.name.clone().unwrap_or_default();
            if id::has_unexpected_controller(&claim, set, pod) {
                self.recorder.event(
                    &reference(set),
                    EventType::Warning,
                    "ConflictingController",
                    &format!(
                        "PersistentVolumeClaim {claim_name} has a conflicting OwnerReference that \
                         acts as a manging controller, the retention policy is ignored for this claim"
                    ),
                );
            }
            if id::claim_owner_up_to_date(&claim, set, pod) {
                continue;
            }
            let mut fixed = (*claim).clone();
            id::set_claim_owners(&mut fixed, set, pod);
            if let Err(source) = api.replace(&claim_name, &PostParams::default(), &fixed).await {
                return Err(Error::UpdateClaim { claim: claim_name, source });
            }
        }
        Ok(())
    }

    /// Upstream's `CreateStatefulPod`: the claims, then the pod.
    async fn create_pod(&self, key: &str, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        if let Err(e) = self.create_claims(set, pod).await {
            self.pod_event("create", set, pod, Some(&e));
            return Err(e);
        }
        let namespace = set.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        self.expectations.raise(key, 1, []);
        match api.create(&PostParams::default(), pod).await {
            Ok(_) => {}
            Err(e) => {
                self.expectations.creation_observed(key);
                if matches!(&e, kube::Error::Api(s) if s.code == 409)
                    || crate::namespaces::namespace_gone(&e)
                {
                    return Err(e.into());
                }
                let e = Error::from(e);
                self.pod_event("create", set, pod, Some(&e));
                return Err(e);
            }
        }
        if let Err(e) = self.update_claims_for_retention(set, pod).await {
            self.pod_event("update", set, pod, Some(&e));
            return Err(e);
        }
        self.pod_event("create", set, pod, None);
        Ok(())
    }

    /// Upstream's `DeleteStatefulPod`, with the pod's uid as precondition; a pod gone or
    /// replaced already is not an error.
    async fn delete_pod(&self, key: &str, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let namespace = set.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let pod_key = key_of(pod);
        self.expectations.raise(key, 0, [pod_key.clone()]);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name(pod), &params).await {
            Ok(_) => {
                self.pod_event("delete", set, pod, None);
                Ok(())
            }
            Err(e) => {
                self.expectations.deletion_observed(key, &pod_key);
                if matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409) {
                    return Ok(());
                }
                let e = Error::from(e);
                self.pod_event("delete", set, pod, Some(&e));
                Err(e)
            }
        }
    }

    /// Upstream's `UpdateStatefulPod`: identity, storage and the claims' owners fixed,
    /// retried on a conflict with the informer's copy.
    async fn update_pod(&self, set: &StatefulSet, pod: &Arc<Pod>) -> Result<(), Error> {
        let namespace = set.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let mut pod: Pod = (**pod).clone();
        for attempt in 0..5 {
            let mut consistent = true;
            if !id::identity_matches(set, &pod) {
                id::update_identity(set, &mut pod);
                consistent = false;
            }
            if !id::storage_matches(set, &pod) {
                id::update_storage(set, &mut pod);
                consistent = false;
                if let Err(e) = self.create_claims(set, &pod).await {
                    self.pod_event("update", set, &pod, Some(&e));
                    return Err(e);
                }
            }
            if !self.claims_match_retention(set, &pod) {
                if let Err(e) = self.update_claims_for_retention(set, &pod).await {
                    self.pod_event("update", set, &pod, Some(&e));
                    return Err(e);
                }
                consistent = false;
            }
            if consistent {
                return Ok(());
            }
            match api.replace(name(&pod), &PostParams::default(), &pod).await {
                Ok(_) => {
                    self.pod_event("update", set, &pod, None);
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < 4 => {
                    match self.pods.get(&key_of(&pod)) {
                        Some(fresh)
                            if fresh.metadata.resource_version != pod.metadata.resource_version =>
                        {
                            pod = (*fresh).clone()
                        }
                        _ => pod = api.get(name(&pod)).await?,
                    }
                }
                Err(e) => {
                    let e = Error::from(e);
                    self.pod_event("update", set, &pod, Some(&e));
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Upstream's `recordPodEvent`: `Successful<Verb>` / `Failed<Verb>`.
    fn pod_event(&self, verb: &str, set: &StatefulSet, pod: &Pod, error: Option<&Error>) {
        let title = format!("{}{}", verb[..1].to_uppercase(), &verb[1..]);
        let set_name = set.metadata.name.as_deref().unwrap_or_default();
        let (kind, reason, text) = match error {
            None => (
                EventType::Normal,
                format!("Successful{title}"),
                format!("{verb} Pod {} in StatefulSet {set_name} successful", name(pod)),
            ),
            Some(e) => (
                EventType::Warning,
                format!("Failed{title}"),
                format!(
                    "{verb} Pod {} in StatefulSet {set_name} failed error: {}",
                    name(pod),
                    describe(e)
                ),
            ),
        };
        self.recorder.event(&reference(set), kind, &reason, &text);
    }
}

fn describe(e: &Error) -> String {
    match e {
        Error::Api(e) => message(e),
        e => e.to_string(),
    }
}

/// Upstream's `runForAll`: in order, stopping at the first `true` or error
/// (monotonic); else all in slow-start batches, stopping at an error. `Ok(true)` when
/// the sync stops here.
async fn run_for_all<F, Fut>(count: usize, call: F, monotonic: bool) -> Result<bool, Error>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<bool, Error>>,
{
    if monotonic {
        for i in 0..count {
            if call(i).await? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    let next = AtomicUsize::new(0);
    let (_, failed) = pods::slow_start_batch(count, || {
        let done = call(next.fetch_add(1, Ordering::SeqCst));
        async move { done.await.map(|_| ()) }
    })
    .await;
    match failed {
        Some(e) => Err(e),
        None => Ok(false),
    }
}
