//! `statefulset-controller` (upstream's `pkg/controller/statefulset`): pods with a
//! stable identity — `<set>-<ordinal>`, hostname and subdomain, one claim per volume
//! claim template — made, replaced and removed in ordinal order.
//!
//! A sync of one StatefulSet: claim its ControllerRevisions and pods (adopt matching
//! orphans named after it, release the rest), find or record the revision of its
//! template ([`history`](crate::history): `<set>-<hash>`, the next revision number,
//! `collisionCount` raised on a name clash), then [`control`]: create missing pods
//! (OrderedReady: one at a time, each after the one before is Running, Ready and
//! available; Parallel: all at once), delete failed ones to recreate them, fix a pod's
//! identity and storage and its claims' ownerReferences
//! (`persistentVolumeClaimRetentionPolicy`), delete pods beyond the replicas (highest
//! ordinal first), then roll the pods at or above the partition onto the update
//! revision in reverse ordinal order (RollingUpdate; OnDelete replaces nothing). Then
//! the status through the `status` subresource and the history trimmed to
//! `revisionHistoryLimit`. Events as upstream words them (`SuccessfulCreate` — `create
//! Pod web-0 in StatefulSet web successful` —, `FailedCreate`, `SuccessfulDelete`,
//! `SuccessfulUpdate`, `FailedUpdate`, `ConflictingController`).
//!
//! Must never act while the informer has yet to show a pod it created or deleted
//! ([`Expectations`]; upstream relies on names being unique instead): a slow watch
//! would otherwise make it create, delete or replace on a stale view.

pub mod control;
pub mod identity;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use keelson_api::k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use keelson_api::k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use keelson_core::labels;
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::events::Recorder;
use keelson_runtime::informer::{Informer, key_of};
use keelson_runtime::queue::WorkQueue;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};

use self::identity::{API_VERSION, KIND};
use crate::expectations::Expectations;
use crate::history;
use crate::ownership::Claimer;
use crate::pod_handlers::{self, PodOwners};
use crate::pods::{self, controller_ref};
use crate::replicaset::{NAMESPACE_INDEX, by_namespace};

pub const NAME: &str = "statefulset-controller";
pub const SERVICE_ACCOUNT: &str = "statefulset-controller";
/// Upstream's `--concurrent-statefulset-syncs` default.
const WORKERS: usize = 5;

/// What a sync can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("failed to create PVC {claim}: {source}")]
    CreateClaim { claim: String, source: kube::Error },
    #[error("pvc {0} is being deleted")]
    ClaimDeleting(String),
    #[error("could not update claim {claim} for delete policy ownerRefs: {source}")]
    UpdateClaim { claim: String, source: kube::Error },
}

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

/// The informers a controller reads.
struct Informers {
    sets: Arc<Informer<StatefulSet>>,
    pods: Arc<Informer<Pod>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    revisions: Arc<Informer<ControllerRevision>>,
}

struct Controller {
    client: Client,
    sets: Arc<Informer<StatefulSet>>,
    pods: Arc<Informer<Pod>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    revisions: Arc<Informer<ControllerRevision>>,
    expectations: Expectations,
    queue: WorkQueue<String>,
    recorder: Recorder,
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let informers = Informers {
        sets: context.informers.get::<StatefulSet>(),
        pods: context.informers.get::<Pod>(),
        claims: context.informers.get::<PersistentVolumeClaim>(),
        revisions: context.informers.get::<ControllerRevision>(),
    };
    let controller = Controller::new(context.client.clone(), informers, context.queue());
    controller.sets.wait_synced().await;
    controller.pods.wait_synced().await;
    controller.claims.wait_synced().await;
    controller.revisions.wait_synced().await;
    let queue = controller.queue.clone();
    run_workers(&context, queue, WORKERS, move |key: String| {
        let c = controller.clone();
        async move { c.sync(&key).await }
    })
    .await;
    Ok(())
}

fn selects(
    set: &StatefulSet,
    labels_of: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    labels::matches(set.spec.as_ref().map(|s| &s.selector), labels_of)
}

fn reference(set: &StatefulSet) -> ObjectReference {
    pods::reference_to(API_VERSION, KIND, &set.metadata)
}

impl PodOwners for Controller {
    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<String> {
        crate::pod_handlers::resolve_in(&self.sets, KIND, namespace, r)
    }

    /// Upstream's `getStatefulSetsForPod`.
    fn matching(&self, pod: &Pod) -> Vec<String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let sets = self.sets.by_index(NAMESPACE_INDEX, namespace);
        let matching = sets.iter().filter(|s| selects(s, pod.metadata.labels.as_ref()));
        matching.map(|s| key_of(&**s)).collect()
    }

    fn min_ready_seconds(&self, key: &str) -> i32 {
        let set = self.sets.get(key);
        set.and_then(|s| s.spec.as_ref()?.min_ready_seconds).unwrap_or(0)
    }
}

impl Controller {
    /// The controller over these informers, its handlers registered.
    fn new(client: Client, informers: Informers, queue: WorkQueue<String>) -> Arc<Self> {
        let Informers { sets, pods, claims, revisions } = informers;
        sets.add_index(NAMESPACE_INDEX, by_namespace::<StatefulSet>);
        pods.add_index(NAMESPACE_INDEX, by_namespace::<Pod>);
        revisions.add_index(NAMESPACE_INDEX, by_namespace::<ControllerRevision>);
        let controller = Arc::new(Controller {
            recorder: Recorder::new(client.clone(), NAME, None),
            client,
            sets: sets.clone(),
            pods: pods.clone(),
            claims,
            revisions,
            expectations: Expectations::default(),
            queue,
        });
        let c = controller.clone();
        sets.on_change(move |change| c.expectations.owner_changed(change, &c.queue));
        let c = controller.clone();
        pods.on_change(move |change| {
            pod_handlers::pod_changed(&*c, &c.expectations, &c.queue, change)
        });
        controller
    }

    async fn sync(&self, key: &str) -> Result<Action, Error> {
        let Some(set) = self.sets.get(key) else {
            self.expectations.delete(key);
            return Ok(Action::AwaitChange);
        };
        let kind = (API_VERSION, KIND);
        let mut revisions = history::claim(&self.client, &self.revisions, &*set, kind, |r| {
            selects(&set, r.metadata.labels.as_ref())
        })
        .await?;
        history::sort(&mut revisions);
        let pods = self.claim_pods(&set).await?;
        let (current, update, collisions) = self.revisions_of(&set, &revisions).await?;
        let act = self.expectations.satisfied(key);
        let revs = control::Revisions::new(&set, &current, &update);
        let (status, updated) = self.update_set(key, &set, &revs, collisions, &pods, act).await;
        let written = self.write_status(&set, status.clone()).await;
        let truncated = self.truncate_history(&set, &pods, &revisions, &current, &update).await;
        updated?;
        written?;
        truncated?;
        let min_ready = set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        if min_ready > 0 && status.available_replicas.unwrap_or(0) != identity::replicas(&set) {
            return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
        }
        Ok(Action::AwaitChange)
    }

    /// The pods `set` owns after claiming the pods named after it that its selector
    /// matches (upstream's `getPodsForStatefulSet`).
    async fn claim_pods(&self, set: &StatefulSet) -> Result<Vec<Arc<Pod>>, kube::Error> {
        let namespace = set.metadata.namespace.clone().unwrap_or_default();
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), &namespace);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let candidates = self.pods.by_index(NAMESPACE_INDEX, &namespace);
        let owner = controller_ref(API_VERSION, KIND, &set.metadata);
        Claimer::new(&sets, set, owner)
            .claim(&api, candidates, |p| {
                selects(set, p.metadata.labels.as_ref()) && identity::is_member(set, p)
            })
            .await
    }

    /// The current and update revisions and the collision count (upstream's
    /// `getStatefulSetRevisions`): the update revision is the latest revision that
    /// records the template — raised to the next number if an older one does (a
    /// rollback) — or a new one.
    async fn revisions_of(
        &self,
        set: &StatefulSet,
        revisions: &[Arc<ControllerRevision>],
    ) -> Result<(Arc<ControllerRevision>, Arc<ControllerRevision>, i32), kube::Error> {
        let mut collisions = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
        let next = revisions.last().map_or(1, |r| r.revision + 1);
        let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let data = history::patch_data(&template);
        let namespace = set.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &namespace);
        let equal = revisions.iter().rfind(|r| history::records(r, &data));
        let update = match (equal, revisions.last()) {
            (Some(equal), Some(last)) if history::name_of(equal) == history::name_of(last) => {
                last.clone()
            }
            (Some(equal), _) => {
                let mut raised = (**equal).clone();
                raised.revision = next;
                let name = history::name_of(&raised);
                Arc::new(api.replace(&name, &PostParams::default(), &raised).await?)
            }
            (None, _) => loop {
                let count = Some(collisions).filter(|c| *c > 0);
                let revision = history::new_revision(
                    &set.metadata,
                    (API_VERSION, KIND),
                    &template,
                    next,
                    count,
                );
                match api.create(&PostParams::default(), &revision).await {
                    Ok(created) => break Arc::new(created),
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        let existing = api.get(&history::name_of(&revision)).await?;
                        if history::records(&existing, &data) {
                            break Arc::new(existing);
                        }
                        collisions += 1;
                    }
                    Err(e) => return Err(e),
                }
            },
        };
        let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
        let current = revisions
            .iter()
            .find(|r| r.metadata.name.is_some() && r.metadata.name == current_name)
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok((current, update, collisions))
    }

    /// Deletes the oldest revisions beyond `revisionHistoryLimit` that are neither
    /// current, nor the update, nor any pod's (upstream's `truncateHistory`).
    async fn truncate_history(
        &self,
        set: &StatefulSet,
        pods: &[Arc<Pod>],
        revisions: &[Arc<ControllerRevision>],
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Result<(), kube::Error> {
        let live = |name: &str| {
            name == history::name_of(current)
                || name == history::name_of(update)
                || pods.iter().any(|p| identity::pod_revision(p) == name)
        };
        let old: Vec<_> = revisions.iter().filter(|r| !live(&history::name_of(r))).collect();
        let limit = set.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10);
        if limit < 0 || old.len() <= limit as usize {
            return Ok(());
        }
        let namespace = set.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &namespace);
        for revision in &old[..old.len() - limit as usize] {
            match api.delete(&history::name_of(revision), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes `status` if it differs from the set's in what upstream compares, once
    /// more after a conflict with a fresh copy (upstream's `updateStatefulSetStatus`).
    async fn write_status(
        &self,
        set: &StatefulSet,
        mut status: StatefulSetStatus,
    ) -> Result<(), kube::Error> {
        identity::complete_rolling_update(set, &mut status);
        if !identity::status_changed(set, &status) {
            return Ok(());
        }
        let namespace = set.metadata.namespace.clone().unwrap_or_default();
        let name = set.metadata.name.clone().unwrap_or_default();
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &namespace);
        let mut object = StatefulSet { status: Some(status.clone()), ..set.clone() };
        for attempt in 0..5 {
            match api.replace_status(&name, &PostParams::default(), &object).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < 4 => {
                    let fresh = api.get(&name).await?;
                    object = StatefulSet { status: Some(status.clone()), ..fresh };
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
