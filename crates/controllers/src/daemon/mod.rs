//! `daemonset-controller` (upstream's `pkg/controller/daemon`): one pod of each
//! DaemonSet on every node that should run it ([`eligibility`]).
//!
//! A sync of one DaemonSet: record its template as a ControllerRevision (`<ds>-<hash>`,
//! the next revision number, `status.collisionCount` raised on a name clash), claim its
//! pods (adopt matching orphans, release what no longer matches), and — only once every
//! pod it asked for was seen by the informer ([`Expectations`]) — create the missing
//! pods, each pinned to its node by required node affinity so the scheduler places it,
//! and delete pods on nodes that should no longer run one, extra pods on a node (the
//! oldest is kept), and failed pods (recreated with upstream's per-node backoff). Then
//! the update strategy's step ([`update`]: RollingUpdate within maxUnavailable or
//! maxSurge; OnDelete replaces nothing), history trimmed to `revisionHistoryLimit`, and
//! the status through the `status` subresource. Events as upstream's:
//! `SuccessfulCreate`, `FailedCreate`, `SuccessfulDelete`, `FailedDelete`,
//! `FailedDaemonPod`, `SucceededDaemonPod`, `SelectingAll`.
//!
//! Must never create or delete while expectations are pending: a slow watch would
//! otherwise put two pods on a node.

pub mod eligibility;
#[cfg(test)]
mod tests;
pub mod update;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keelson_api::k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use keelson_api::k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use keelson_api::k8s_openapi::jiff::Timestamp;
use keelson_core::labels;
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::events::{EventType, Recorder};
use keelson_runtime::informer::{Change, Informer, key_of};
use keelson_runtime::queue::WorkQueue;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use tokio::time::Instant;

use crate::expectations::Expectations;
use crate::history::{self, hash_of};
use crate::ownership::Claimer;
use crate::pod_handlers::{self, PodOwners};
use crate::pods::{self, controller_of, controller_ref};
use crate::replicaset::{NAMESPACE_INDEX, by_namespace, message};
use crate::wire;

pub const NAME: &str = "daemonset-controller";
pub const SERVICE_ACCOUNT: &str = "daemon-set-controller";
const WORKERS: usize = 2;
/// At most this many pods are created or deleted in one sync (upstream's DaemonSet
/// `BurstReplicas`).
pub const BURST_REPLICAS: usize = 250;
const KIND: &str = "DaemonSet";
const API_VERSION: &str = "apps/v1";

/// Upstream's failed-pod backoff (`flowcontrol.NewBackOff(1s, 15min)`): how long a
/// node waits before its failed daemon pod is deleted again.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(15 * 60) }
    }
}

/// Per-key backoff entries: (current delay, last update).
#[derive(Default)]
struct Backoffs {
    entries: Mutex<HashMap<String, (Duration, Instant)>>,
}

impl Backoffs {
    /// Still waiting since the last failure (`IsInBackOffSinceUpdate`): the delay left.
    fn waiting(&self, key: &str, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (delay, at) = entries.get(key)?;
        let elapsed = now.saturating_duration_since(*at);
        (elapsed < *delay).then(|| *delay - elapsed)
    }

    /// Records one more failure (`Next`): the delay doubles up to `max`, and starts
    /// over after twice `max` without one.
    fn next(&self, key: &str, now: Instant, limits: Backoff) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Upstream's periodic `GC`: entries idle for twice `max` are forgotten.
        entries.retain(|_, (_, at)| now.saturating_duration_since(*at) <= limits.max * 2);
        let delay = match entries.get(key) {
            Some((delay, at)) if now.saturating_duration_since(*at) <= limits.max * 2 => {
                (*delay * 2).min(limits.max)
            }
            _ => limits.initial,
        };
        entries.insert(key.to_owned(), (delay, now));
    }
}

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context, Backoff::default()))
}

struct Controller {
    client: Client,
    sets: Arc<Informer<DaemonSet>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    revisions: Arc<Informer<ControllerRevision>>,
    expectations: Expectations,
    backoff: Backoff,
    backoffs: Backoffs,
    queue: WorkQueue<String>,
    recorder: Recorder,
}

/// Runs the controller with `backoff` for failed pods (upstream's tests set theirs the
/// same way: on the controller, not by a flag).
pub async fn run(context: Context, backoff: Backoff) -> keelson_runtime::Result<()> {
    let sets = context.informers.get::<DaemonSet>();
    let pods = context.informers.get::<Pod>();
    let nodes = context.informers.get::<Node>();
    let revisions = context.informers.get::<ControllerRevision>();
    let controller = Controller::new(
        context.client.clone(),
        Informers {
            sets: sets.clone(),
            pods: pods.clone(),
            nodes: nodes.clone(),
            revisions: revisions.clone(),
        },
        context.queue(),
        backoff,
    );
    sets.wait_synced().await;
    pods.wait_synced().await;
    nodes.wait_synced().await;
    revisions.wait_synced().await;
    let queue = controller.queue.clone();
    run_workers(&context, queue, WORKERS, move |key: String| {
        let c = controller.clone();
        async move { c.sync(&key).await }
    })
    .await;
    Ok(())
}

fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn selector_is_empty(ds: &DaemonSet) -> bool {
    ds.spec.as_ref().is_none_or(|s| {
        s.selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
            && s.selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
    })
}

fn selects(ds: &DaemonSet, labels_of: Option<&BTreeMap<String, String>>) -> bool {
    !selector_is_empty(ds) && labels::matches(ds.spec.as_ref().map(|s| &s.selector), labels_of)
}

fn reference(ds: &DaemonSet) -> ObjectReference {
    pods::reference_to(API_VERSION, KIND, &ds.metadata)
}

/// The informers a controller reads.
struct Informers {
    sets: Arc<Informer<DaemonSet>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    revisions: Arc<Informer<ControllerRevision>>,
}

impl PodOwners for Controller {
    fn resolve(
        &self,
        namespace: &str,
        r: &keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Option<String> {
        crate::pod_handlers::resolve_in(&self.sets, KIND, namespace, r)
    }

    fn matching(&self, pod: &Pod) -> Vec<String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.sets
            .by_index(NAMESPACE_INDEX, namespace)
            .iter()
            .filter(|ds| selects(ds, pod.metadata.labels.as_ref()))
            .map(|ds| key_of(&**ds))
            .collect()
    }

    fn min_ready_seconds(&self, key: &str) -> i32 {
        let ds = self.sets.get(key);
        ds.and_then(|ds| ds.spec.as_ref()?.min_ready_seconds).unwrap_or(0)
    }
}

impl Controller {
    /// The controller over these informers, its handlers registered.
    fn new(
        client: Client,
        informers: Informers,
        queue: WorkQueue<String>,
        backoff: Backoff,
    ) -> Arc<Self> {
        let Informers { sets, pods, nodes, revisions } = informers;
        sets.add_index(NAMESPACE_INDEX, by_namespace::<DaemonSet>);
        pods.add_index(NAMESPACE_INDEX, by_namespace::<Pod>);
        revisions.add_index(NAMESPACE_INDEX, by_namespace::<ControllerRevision>);
        let controller = Arc::new(Controller {
            recorder: Recorder::new(client.clone(), NAME, None),
            client: client.clone(),
            sets: sets.clone(),
            pods: pods.clone(),
            nodes: nodes.clone(),
            revisions: revisions.clone(),
            expectations: Expectations::default(),
            backoff,
            backoffs: Backoffs::default(),
            queue,
        });
        let c = controller.clone();
        sets.on_change(move |change| c.expectations.owner_changed(change, &c.queue));
        let c = controller.clone();
        pods.on_change(move |change| {
            pod_handlers::pod_changed(&*c, &c.expectations, &c.queue, change)
        });
        let c = controller.clone();
        nodes.on_change(move |change| {
            if let Change::Updated { old, new } = change
                && old.metadata.labels == new.metadata.labels
                && old.spec == new.spec
            {
                return;
            }
            c.sets.list().iter().for_each(|ds| c.queue.add(key_of(&**ds)));
        });
        let c = controller.clone();
        revisions.on_change(move |change| {
            let revision = change.object();
            let namespace = revision.metadata.namespace.clone().unwrap_or_default();
            if let Some(key) =
                controller_of(&revision.metadata).and_then(|r| c.resolve(&namespace, r))
            {
                c.queue.add(key);
            }
        });
        controller
    }

    async fn sync(&self, key: &str) -> Result<Action, kube::Error> {
        let Some(ds) = self.sets.get(key) else {
            self.expectations.delete(key);
            return Ok(Action::AwaitChange);
        };
        if selector_is_empty(&ds) {
            self.recorder.event(
                &reference(&ds),
                EventType::Warning,
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.",
            );
            return Ok(Action::AwaitChange);
        }
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Action::AwaitChange);
        }
        let nodes = self.nodes.list();
        let (hash, old) = self.construct_history(&ds).await?;
        let owned = self.claim_pods(&ds).await?;
        if !self.expectations.satisfied(key) {
            let requeue = self.write_status(&ds, &nodes, &owned, &hash, false).await?;
            return Ok(requeue.map_or(Action::AwaitChange, Action::RequeueAfter));
        }
        let mut requeue: Option<Duration> = None;
        let managed = self.manage(key, &ds, &nodes, &owned, &hash, &mut requeue).await;
        let updated = match managed {
            Ok(()) if self.expectations.satisfied(key) && update::is_rolling_update(&ds) => {
                let (by_node, desired) = self.by_node(&ds, &nodes, &owned, false);
                let should_run = |name: &str| {
                    nodes.iter().any(|n| {
                        n.metadata.name.as_deref() == Some(name)
                            && eligibility::node_should_run(n, &ds).0
                    })
                };
                let (delete, create) = update::rolling_update(
                    &ds,
                    &by_node,
                    should_run,
                    desired,
                    &hash,
                    Timestamp::now(),
                );
                self.sync_nodes(key, &ds, &owned, &delete, &create, &hash).await
            }
            other => other,
        };
        let cleaned = match updated {
            Ok(()) => self.cleanup_history(&ds, old, &owned).await,
            Err(e) => Err(e),
        };
        let status = self.write_status(&ds, &nodes, &owned, &hash, true).await;
        cleaned?;
        if let Some(after) = status? {
            requeue = Some(requeue.map_or(after, |r| r.min(after)));
        }
        Ok(requeue.map_or(Action::AwaitChange, Action::RequeueAfter))
    }

    /// The pods `ds` owns after claiming its namespace's pods (upstream's
    /// `getDaemonPods`).
    async fn claim_pods(&self, ds: &DaemonSet) -> Result<Vec<Arc<Pod>>, kube::Error> {
        let namespace = ds.metadata.namespace.clone().unwrap_or_default();
        let sets: Api<DaemonSet> = Api::namespaced(self.client.clone(), &namespace);
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let candidates = self.pods.by_index(NAMESPACE_INDEX, &namespace);
        let owner = controller_ref(API_VERSION, KIND, &ds.metadata);
        Claimer::new(&sets, ds, owner)
            .claim(&pod_api, candidates, |p| selects(ds, p.metadata.labels.as_ref()))
            .await
    }

    /// Pods by the node they run on or are pinned to (upstream's
    /// `getNodesToDaemonPods`), every node that should run one present (empty when it
    /// has none), as the rolling update reads them (`updatedDesiredNodeCounts`); and
    /// how many nodes should run one.
    fn by_node(
        &self,
        ds: &DaemonSet,
        nodes: &[Arc<Node>],
        owned: &[Arc<Pod>],
        include_deleted_terminal: bool,
    ) -> (BTreeMap<String, Vec<Arc<Pod>>>, i32) {
        let mut by_node = group_by_node(owned, include_deleted_terminal);
        let mut desired = 0;
        for node in nodes {
            if eligibility::node_should_run(node, ds).0 {
                desired += 1;
                by_node.entry(name_of(&node.metadata)).or_default();
            }
        }
        (by_node, desired)
    }

    /// Upstream's `manage` with `podsShouldBeOnNode`.
    async fn manage(
        &self,
        key: &str,
        ds: &DaemonSet,
        nodes: &[Arc<Node>],
        owned: &[Arc<Pod>],
        hash: &str,
        requeue: &mut Option<Duration>,
    ) -> Result<(), kube::Error> {
        let by_node = group_by_node(owned, false);
        let surge = update::allows_surge(ds);
        let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        let observed = ds.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let namespace = ds.metadata.namespace.clone().unwrap_or_default();
        let (mut create, mut delete) = (Vec::new(), Vec::new());
        let now = Instant::now();
        for node in nodes {
            let node_name = name_of(&node.metadata);
            let (should_run, should_continue) = eligibility::node_should_run(node, ds);
            let pods = by_node.get(&node_name);
            match pods {
                None if should_run => create.push(node_name),
                Some(pods) if should_continue => {
                    let mut running = Vec::new();
                    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
                        let name = name_of(&pod.metadata);
                        match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
                            Some("Failed") => {
                                let backoff_key = format!("{uid}/{observed}/{node_name}");
                                if let Some(left) = self.backoffs.waiting(&backoff_key, now) {
                                    *requeue = Some(requeue.map_or(left, |r| r.min(left)));
                                    continue;
                                }
                                self.backoffs.next(&backoff_key, now, self.backoff);
                                self.recorder.event(
                                    &reference(ds),
                                    EventType::Warning,
                                    "FailedDaemonPod",
                                    &format!(
                                        "Found failed daemon pod {namespace}/{name} on node \
                                         {node_name}, will try to kill it"
                                    ),
                                );
                                delete.push(name);
                            }
                            Some("Succeeded") => {
                                self.recorder.event(
                                    &reference(ds),
                                    EventType::Normal,
                                    "SucceededDaemonPod",
                                    &format!(
                                        "Found succeeded daemon pod {namespace}/{name} on node \
                                         {node_name}, will try to delete it"
                                    ),
                                );
                                delete.push(name);
                            }
                            _ => running.push(pod.clone()),
                        }
                    }
                    running.sort_by(update::oldest_first);
                    if !surge {
                        delete.extend(running.iter().skip(1).map(|p| name_of(&p.metadata)));
                        continue;
                    }
                    if running.is_empty() {
                        if should_run {
                            create.push(node_name);
                        }
                        continue;
                    }
                    let (mut oldest_new, mut oldest_old) = (None, None);
                    for pod in &running {
                        let label =
                            pod.metadata.labels.as_ref().and_then(|l| l.get(update::HASH_LABEL));
                        let slot = if label.map(String::as_str) == Some(hash) {
                            &mut oldest_new
                        } else {
                            &mut oldest_old
                        };
                        if slot.is_none() {
                            *slot = Some(pod.clone());
                        } else {
                            delete.push(name_of(&pod.metadata));
                        }
                    }
                    if let (Some(new), Some(old)) = (oldest_new, oldest_old)
                        && (!pods::is_ready(&old)
                            || pods::is_available(&new, min_ready, Timestamp::now()))
                    {
                        delete.push(name_of(&old.metadata));
                    }
                }
                Some(pods) if !should_continue => delete.extend(
                    pods.iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .map(|p| name_of(&p.metadata)),
                ),
                _ => {}
            }
        }
        // Pods pinned to nodes that are gone and never scheduled.
        let known: HashSet<String> = nodes.iter().map(|n| name_of(&n.metadata)).collect();
        for (node, pods) in &by_node {
            if known.contains(node) {
                continue;
            }
            let unscheduled = pods.iter().filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty)
            });
            delete.extend(unscheduled.map(|p| name_of(&p.metadata)));
        }
        self.sync_nodes(key, ds, owned, &delete, &create, hash).await
    }

    /// Creates a pod on each of `create` and deletes the pods named `delete`, at most
    /// [`BURST_REPLICAS`] of each, expectations set first (upstream's `syncNodes`).
    async fn sync_nodes(
        &self,
        key: &str,
        ds: &DaemonSet,
        owned: &[Arc<Pod>],
        delete: &[String],
        create: &[String],
        hash: &str,
    ) -> Result<(), kube::Error> {
        let create = &create[..create.len().min(BURST_REPLICAS)];
        let delete = &delete[..delete.len().min(BURST_REPLICAS)];
        if create.is_empty() && delete.is_empty() {
            return Ok(());
        }
        let namespace = ds.metadata.namespace.clone().unwrap_or_default();
        let keys = delete.iter().map(|name| format!("{namespace}/{name}"));
        self.expectations.expect(key, create.len(), keys);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let event_ref = reference(ds);
        let mut template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        let labels = meta.labels.get_or_insert_with(BTreeMap::new);
        if let Some(generation) = update::template_generation(ds) {
            labels.insert(update::GENERATION_LABEL.into(), generation.to_string());
        }
        labels.insert(update::HASH_LABEL.into(), hash.to_owned());
        let spec = template.spec.get_or_insert_with(Default::default);
        eligibility::add_daemon_tolerations(spec);
        let owner = controller_ref(API_VERSION, KIND, &ds.metadata);
        let next = AtomicUsize::new(0);
        let (created, failed) = pods::slow_start_batch(create.len(), || async {
            let node = &create[next.fetch_add(1, Ordering::SeqCst)];
            let mut pod = pods::from_template(&template, owner.clone(), &namespace);
            if let Some(spec) = pod.spec.as_mut() {
                spec.affinity = Some(eligibility::pin_to_node(spec.affinity.take(), node));
            }
            match api.create(&PostParams::default(), &pod).await {
                Ok(pod) => {
                    self.recorder.event(
                        &event_ref,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", name_of(&pod.metadata)),
                    );
                    Ok(())
                }
                Err(e) if crate::namespaces::namespace_gone(&e) => Ok(()),
                Err(e) => {
                    self.recorder.event(
                        &event_ref,
                        EventType::Warning,
                        "FailedCreate",
                        &format!("Error creating: {}", message(&e)),
                    );
                    Err(e)
                }
            }
        })
        .await;
        if failed.is_some() {
            for _ in created..create.len() {
                self.expectations.creation_observed(key);
            }
        }
        let by_name: HashMap<String, &Arc<Pod>> =
            owned.iter().map(|p| (name_of(&p.metadata), p)).collect();
        let (api, by_name, event_ref, namespace) = (&api, &by_name, &event_ref, &namespace);
        let deletes = delete.iter().map(|name| async move {
            let pod_key = format!("{namespace}/{name}");
            let uid = by_name.get(name).and_then(|p| p.metadata.uid.clone());
            let params = DeleteParams {
                preconditions: uid
                    .map(|uid| kube::api::Preconditions { uid: Some(uid), resource_version: None }),
                ..DeleteParams::default()
            };
            match api.delete(name, &params).await {
                Ok(_) => {
                    self.recorder.event(
                        event_ref,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    );
                    Ok(())
                }
                Err(e) => {
                    self.expectations.deletion_observed(key, &pod_key);
                    if matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409) {
                        return Ok(());
                    }
                    self.recorder.event(
                        event_ref,
                        EventType::Warning,
                        "FailedDelete",
                        &format!("Error deleting: {}", message(&e)),
                    );
                    Err(e)
                }
            }
        });
        let results = futures_util::future::join_all(deletes).await;
        if let Some(e) = failed {
            return Err(e);
        }
        results.into_iter().collect()
    }

    /// The revisions `ds` owns after claiming its namespace's revisions.
    async fn controlled_revisions(
        &self,
        ds: &DaemonSet,
    ) -> Result<Vec<Arc<ControllerRevision>>, kube::Error> {
        let kind = (API_VERSION, KIND);
        history::claim(&self.client, &self.revisions, ds, kind, |r| {
            selects(ds, r.metadata.labels.as_ref())
        })
        .await
    }

    /// The current revision's hash and the old revisions (upstream's
    /// `constructHistory`): a revision is made for a new template, and the current
    /// one's number raised above the others' (a rollback).
    async fn construct_history(
        &self,
        ds: &DaemonSet,
    ) -> Result<(String, Vec<Arc<ControllerRevision>>), kube::Error> {
        let namespace = ds.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &namespace);
        let data = update::revision_data(ds);
        let mut current = Vec::new();
        let mut old = Vec::new();
        for revision in self.controlled_revisions(ds).await? {
            let mut revision = revision;
            if revision.metadata.labels.as_ref().is_none_or(|l| !l.contains_key(update::HASH_LABEL))
            {
                let mut fixed = (*revision).clone();
                let name = name_of(&fixed.metadata);
                fixed
                    .metadata
                    .labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(update::HASH_LABEL.into(), name.clone());
                revision = Arc::new(api.replace(&name, &PostParams::default(), &fixed).await?);
            }
            if revision.data.as_ref().map(|d| &d.0) == Some(&data) {
                current.push(revision);
            } else {
                old.push(revision);
            }
        }
        let next = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let current = match current.len() {
            0 => self.snapshot(ds, data, next).await?,
            _ => {
                current.sort_by_key(|r| r.revision);
                let keep = current.pop().expect("one at least");
                // Duplicates of the same template (upstream's `dedupCurHistories`).
                let keep_hash = hash_of(&keep);
                let pods =
                    if current.is_empty() { Vec::new() } else { self.claim_pods(ds).await? };
                for pod in pods {
                    let label =
                        pod.metadata.labels.as_ref().and_then(|l| l.get(update::HASH_LABEL));
                    if label != Some(&keep_hash) {
                        let patch = serde_json::json!({ "metadata": { "labels": { update::HASH_LABEL: keep_hash } } });
                        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
                        pods.patch(
                            &name_of(&pod.metadata),
                            &kube::api::PatchParams::default(),
                            &kube::api::Patch::Merge(&patch),
                        )
                        .await?;
                    }
                }
                for duplicate in current {
                    api.delete(&name_of(&duplicate.metadata), &DeleteParams::default()).await?;
                }
                if keep.revision < next {
                    let mut raised = (*keep).clone();
                    raised.revision = next;
                    api.replace(&name_of(&raised.metadata), &PostParams::default(), &raised)
                        .await?;
                }
                keep
            }
        };
        Ok((hash_of(&current), old))
    }

    /// Creates the revision for `ds`'s template (upstream's `snapshot`); on a name clash
    /// with another template, raises `status.collisionCount` and fails, to retry.
    async fn snapshot(
        &self,
        ds: &DaemonSet,
        data: serde_json::Value,
        revision: i64,
    ) -> Result<Arc<ControllerRevision>, kube::Error> {
        let namespace = ds.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &namespace);
        let spec = ds.spec.clone().unwrap_or_default();
        let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
        let record = history::new_revision(
            &ds.metadata,
            (API_VERSION, KIND),
            &spec.template,
            revision,
            collisions,
        );
        let name = history::name_of(&record);
        match api.create(&PostParams::default(), &record).await {
            Ok(created) => Ok(Arc::new(created)),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api.get(&name).await?;
                if existing.data.as_ref().map(|d| &d.0) == Some(&data) {
                    return Ok(Arc::new(existing));
                }
                let sets: Api<DaemonSet> = Api::namespaced(self.client.clone(), &namespace);
                let mut fresh = sets.get(&name_of(&ds.metadata)).await?;
                let status = fresh.status.get_or_insert_with(Default::default);
                if status.collision_count != collisions {
                    return Err(kube::Error::Api(s));
                }
                status.collision_count = Some(collisions.unwrap_or(0) + 1);
                sets.replace_status(&name_of(&ds.metadata), &PostParams::default(), &fresh).await?;
                Err(kube::Error::Api(s))
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes the oldest revisions beyond `revisionHistoryLimit` that no pod uses
    /// (upstream's `cleanupHistory`).
    async fn cleanup_history(
        &self,
        ds: &DaemonSet,
        mut old: Vec<Arc<ControllerRevision>>,
        owned: &[Arc<Pod>],
    ) -> Result<(), kube::Error> {
        let keep = ds.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10).max(0);
        let mut to_kill = old.len() as i64 - i64::from(keep);
        if to_kill <= 0 {
            return Ok(());
        }
        let live: HashSet<String> = owned
            .iter()
            .filter_map(|p| p.metadata.labels.as_ref()?.get(update::HASH_LABEL).cloned())
            .collect();
        let namespace = ds.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &namespace);
        old.sort_by_key(|r| r.revision);
        for revision in old {
            if to_kill <= 0 {
                break;
            }
            if live.contains(&hash_of(&revision)) {
                continue;
            }
            match api.delete(&name_of(&revision.metadata), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
            to_kill -= 1;
        }
        Ok(())
    }

    /// Writes the counts (upstream's `updateDaemonSetStatus`); returns when to look
    /// again for pods to become available.
    async fn write_status(
        &self,
        ds: &DaemonSet,
        nodes: &[Arc<Node>],
        owned: &[Arc<Pod>],
        hash: &str,
        observe_generation: bool,
    ) -> Result<Option<Duration>, kube::Error> {
        let counts = status(ds, nodes, owned, hash, Timestamp::now());
        let observed = observe_generation.then_some(ds.metadata.generation).flatten();
        let current = ds.status.clone().unwrap_or_default();
        let wanted = with_counts(current.clone(), &counts, observed);
        let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        let available = counts.number_available.unwrap_or(0);
        let requeue = (min_ready > 0 && counts.number_ready != available)
            .then(|| Duration::from_secs(min_ready as u64));
        let up_to_date =
            current.observed_generation.unwrap_or(0) >= ds.metadata.generation.unwrap_or(0);
        if wire::same_status(&current, &wanted) && up_to_date {
            return Ok(requeue);
        }
        let namespace = ds.metadata.namespace.clone().unwrap_or_default();
        let name = name_of(&ds.metadata);
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &namespace);
        let mut object = DaemonSet { status: Some(wanted), ..ds.clone() };
        // Once more after a conflict (upstream's `StatusUpdateRetries`).
        for _ in 0..1 {
            match api.replace_status(&name, &PostParams::default(), &object).await {
                Ok(_) => return Ok(requeue),
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(requeue),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let fresh = api.get(&name).await?;
                    let merged =
                        with_counts(fresh.status.clone().unwrap_or_default(), &counts, observed);
                    object = DaemonSet { status: Some(merged), ..fresh };
                }
                Err(e) => return Err(e),
            }
        }
        api.replace_status(&name, &PostParams::default(), &object).await?;
        Ok(requeue)
    }
}

/// `base` with the counts of `counts` (and `observed` as the observed generation, if
/// given): the rest of a status, `collisionCount` and conditions, stays.
fn with_counts(
    mut base: DaemonSetStatus,
    counts: &DaemonSetStatus,
    observed: Option<i64>,
) -> DaemonSetStatus {
    base.desired_number_scheduled = counts.desired_number_scheduled;
    base.current_number_scheduled = counts.current_number_scheduled;
    base.number_misscheduled = counts.number_misscheduled;
    base.number_ready = counts.number_ready;
    base.updated_number_scheduled = counts.updated_number_scheduled;
    base.number_available = counts.number_available;
    base.number_unavailable = counts.number_unavailable;
    if observed.is_some() {
        base.observed_generation = observed;
    }
    base
}

/// Pods by their target node; terminal pods being deleted left out unless asked for.
fn group_by_node(
    owned: &[Arc<Pod>],
    include_deleted_terminal: bool,
) -> BTreeMap<String, Vec<Arc<Pod>>> {
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in owned {
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Failed" | "Succeeded")
        );
        if !include_deleted_terminal && terminal && pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(node) = eligibility::target_node(pod) {
            by_node.entry(node).or_default().push(pod.clone());
        }
    }
    by_node
}

/// The counts of a DaemonSet's status (upstream's `updateDaemonSetStatus`): per node
/// that should run the pod, whether its oldest pod is there, ready, available, up to
/// date; pods on nodes that should not run one are misscheduled.
pub fn status(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    owned: &[Arc<Pod>],
    hash: &str,
    now: Timestamp,
) -> DaemonSetStatus {
    let by_node = group_by_node(owned, false);
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let generation = update::template_generation(ds);
    let (mut desired, mut current, mut misscheduled, mut ready, mut updated, mut available) =
        (0, 0, 0, 0, 0, 0);
    for node in nodes {
        let pods = by_node.get(node.metadata.name.as_deref().unwrap_or_default());
        let scheduled = pods.is_some_and(|p| !p.is_empty());
        if !eligibility::node_should_run(node, ds).0 {
            if scheduled {
                misscheduled += 1;
            }
            continue;
        }
        desired += 1;
        let Some(pods) = pods.filter(|_| scheduled) else { continue };
        current += 1;
        let mut pods = pods.clone();
        pods.sort_by(update::oldest_first);
        let pod = &pods[0];
        if pods::is_ready(pod) {
            ready += 1;
            if pods::is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if update::is_updated(pod, hash, generation) {
            updated += 1;
        }
    }
    DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: current,
        number_misscheduled: misscheduled,
        number_ready: ready,
        updated_number_scheduled: Some(updated),
        number_available: Some(available),
        number_unavailable: Some(desired - available),
        ..DaemonSetStatus::default()
    }
}
