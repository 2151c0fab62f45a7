//! `job-controller` (upstream's `pkg/controller/job`): runs a Job's pods to
//! completion.
//!
//! A sync of one Job claims the pods its selector matches, then — only when every pod
//! it asked for was seen by the informer ([`Expectations`]) — creates pods up to
//! `parallelism` (never more than the completions left; for an Indexed Job, the lowest
//! indexes not yet done, each pod with its index annotation, label, hostname and
//! `JOB_COMPLETION_INDEX`), waiting out the pod-failure backoff, or deletes the extras,
//! and deletes every active pod while the Job is suspended. Finished pods are counted
//! with upstream's finalizer tracking ([`status`]): every pod carries
//! [`TRACKING_FINALIZER`]; a finished pod's uid goes to `status.uncountedTerminatedPods`
//! first, its finalizer comes off next, and only then is it counted, so a pod is
//! counted once however the syncs interleave. A Job that meets its success criteria
//! or fails (`backoffLimit`, `activeDeadlineSeconds`, a `FailJob` rule of its
//! `podFailurePolicy`) gets the interim `SuccessCriteriaMet` / `FailureTarget`
//! condition, its active pods deleted, and the terminal `Complete` / `Failed` once no
//! pod is left uncounted or terminating, as upstream 1.34 writes them.
//!
//! Must never create or delete pods while expectations are pending, nor count a pod
//! whose finalizer removal it has not yet seen.

mod manage;
mod policy;
mod sync;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keelson_api::k8s_openapi::api::batch::v1::{Job, JobCondition};
use keelson_api::k8s_openapi::api::core::v1::{ObjectReference, Pod};
use keelson_core::labels;
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::events::Recorder;
use keelson_runtime::informer::{Change, Informer, key_of};
use keelson_runtime::queue::WorkQueue;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::expectations::Expectations;
use crate::lock;
use crate::pods::controller_of;
use crate::replicaset::{NAMESPACE_INDEX, by_namespace};

pub use policy::{
    Backoff, COMPLETION_INDEX, FailureAction, format_indexes, match_failure, match_success,
    parse_indexes,
};

pub const NAME: &str = "job-controller";
pub const SERVICE_ACCOUNT: &str = "job-controller";
/// The finalizer on every pod of a Job until the pod is counted.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// `spec.managedBy` of the Jobs this controller syncs (or none).
pub const MANAGED_BY: &str = "kubernetes.io/job-controller";
/// The most pods created or deleted in one sync (upstream's `MaxPodCreateDeletePerSync`).
pub const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
/// The most uids added to `uncountedTerminatedPods` in one sync (`MaxUncountedPods`).
pub const MAX_UNCOUNTED_PODS: usize = 500;
/// Upstream's `MaxJobPodFailureBackOff`.
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10 * 60);
const WORKERS: usize = 5;

/// Upstream's `DefaultJobPodFailureBackOff` (10 s), a variable as upstream's is so that
/// tests can shorten it.
static POD_FAILURE_BACKOFF_MS: AtomicU64 = AtomicU64::new(10_000);

/// Sets the first delay before a failed pod is replaced, for every Job controller in
/// this process (upstream's integration tests set `DefaultJobPodFailureBackOff`).
pub fn set_pod_failure_backoff(base: Duration) {
    POD_FAILURE_BACKOFF_MS.store(base.as_millis() as u64, Ordering::Relaxed);
}

fn pod_failure_backoff() -> Duration {
    Duration::from_millis(POD_FAILURE_BACKOFF_MS.load(Ordering::Relaxed))
}

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

/// What the work queue holds: a Job, or a pod left with the tracking finalizer by a Job
/// that is gone or finished (upstream's orphan queue).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Job(String),
    OrphanPod(String),
}

struct Controller {
    client: Client,
    jobs: Arc<Informer<Job>>,
    pods: Arc<Informer<Pod>>,
    expectations: Expectations,
    /// Per Job, the uids of the pods whose finalizer removal is not yet seen.
    finalizers: Mutex<HashMap<String, HashSet<String>>>,
    /// Per Job, the pod failures since its last success.
    backoffs: Mutex<HashMap<String, Backoff>>,
    queue: WorkQueue<Key>,
    recorder: Recorder,
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let jobs = context.informers.get::<Job>();
    let pods = context.informers.get::<Pod>();
    let controller = Controller::new(context.client.clone(), jobs.clone(), pods.clone(), &context);
    jobs.wait_synced().await;
    pods.wait_synced().await;
    let queue = controller.queue.clone();
    run_workers(&context, queue, WORKERS, move |key: Key| {
        let c = controller.clone();
        async move {
            match key {
                Key::Job(key) => c.sync(&key).await,
                Key::OrphanPod(key) => c.sync_orphan(&key).await,
            }
        }
    })
    .await;
    Ok(())
}

pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

/// The condition of `type_` with status True, if the Job has it.
pub fn true_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the Job is `Complete` or `Failed` (upstream's `IsJobFinished`).
pub fn is_finished(job: &Job) -> bool {
    true_condition(job, "Complete").is_some() || true_condition(job, "Failed").is_some()
}

impl Controller {
    fn new(
        client: Client,
        jobs: Arc<Informer<Job>>,
        pods: Arc<Informer<Pod>>,
        context: &Context,
    ) -> Arc<Self> {
        jobs.add_index(NAMESPACE_INDEX, by_namespace::<Job>);
        pods.add_index(NAMESPACE_INDEX, by_namespace::<Pod>);
        let controller = Arc::new(Controller {
            recorder: Recorder::new(client.clone(), NAME, None),
            client,
            jobs: jobs.clone(),
            pods: pods.clone(),
            expectations: Expectations::default(),
            finalizers: Mutex::default(),
            backoffs: Mutex::default(),
            queue: context.queue(),
        });
        let c = controller.clone();
        jobs.on_change(move |change| {
            let key = key_of(&**change.object());
            if matches!(change, Change::Deleted(_)) {
                c.forget(&key);
            }
            c.queue.add(Key::Job(key));
        });
        let c = controller.clone();
        pods.on_change(move |change| c.pod_changed(change));
        controller
    }

    fn forget(&self, key: &str) {
        self.expectations.delete(key);
        lock(&self.finalizers).remove(key);
        lock(&self.backoffs).remove(key);
    }

    /// The Job `reference` names, if it is one and still that one.
    fn resolve(&self, namespace: &str, reference: &OwnerRef) -> Option<Arc<Job>> {
        if reference.kind != "Job" {
            return None;
        }
        let job = self.jobs.get(&format!("{namespace}/{}", reference.name))?;
        (job.metadata.uid.as_deref() == Some(reference.uid.as_str())).then_some(job)
    }

    fn matching_jobs(&self, pod: &Pod) -> Vec<String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.jobs
            .by_index(NAMESPACE_INDEX, namespace)
            .iter()
            .filter(|j| {
                let selector = j.spec.as_ref().and_then(|s| s.selector.as_ref());
                selector.is_some() && labels::matches(selector, pod.metadata.labels.as_ref())
            })
            .map(|j| key_of(&**j))
            .collect()
    }

    fn finalizer_removal_observed(&self, key: &str, uid: &str) {
        if let Some(uids) = lock(&self.finalizers).get_mut(key) {
            uids.remove(uid);
        }
    }

    fn orphan(&self, pod: &Pod) {
        if has_tracking_finalizer(pod) {
            self.queue.add(Key::OrphanPod(key_of(pod)));
        }
    }

    /// Upstream's pod event handlers.
    fn pod_changed(&self, change: &Change<Pod>) {
        let namespace = |p: &Pod| p.metadata.namespace.clone().unwrap_or_default();
        match change {
            Change::Added(pod) if pod.metadata.deletion_timestamp.is_some() => {
                self.pod_deleted(pod, false)
            }
            Change::Added(pod) => match controller_of(&pod.metadata) {
                Some(r) => {
                    if let Some(job) = self.resolve(&namespace(pod), r) {
                        let key = key_of(&*job);
                        self.expectations.creation_observed(&key);
                        self.queue.add(Key::Job(key));
                    }
                }
                None => {
                    self.orphan(pod);
                    self.matching_jobs(pod).into_iter().for_each(|k| self.queue.add(Key::Job(k)));
                }
            },
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                if new.metadata.deletion_timestamp.is_some() {
                    return self.pod_deleted(new, false);
                }
                let removed = !has_tracking_finalizer(new);
                let uid = new.metadata.uid.clone().unwrap_or_default();
                let (old_ref, new_ref) =
                    (controller_of(&old.metadata), controller_of(&new.metadata));
                let ref_changed = old_ref != new_ref;
                if ref_changed
                    && let Some(job) = old_ref.and_then(|r| self.resolve(&namespace(old), r))
                {
                    let key = key_of(&*job);
                    if removed {
                        self.finalizer_removal_observed(&key, &uid);
                    }
                    self.queue.add(Key::Job(key));
                }
                if let Some(r) = new_ref {
                    let Some(job) = self.resolve(&namespace(new), r) else { return };
                    let key = key_of(&*job);
                    if removed {
                        self.finalizer_removal_observed(&key, &uid);
                    }
                    self.queue.add(Key::Job(key));
                    return;
                }
                self.orphan(new);
                if ref_changed || old.metadata.labels != new.metadata.labels {
                    self.matching_jobs(new).into_iter().for_each(|k| self.queue.add(Key::Job(k)));
                }
            }
            Change::Deleted(pod) => self.pod_deleted(pod, true),
        }
    }

    /// A pod is being deleted (`last`: it is gone).
    fn pod_deleted(&self, pod: &Pod, last: bool) {
        let Some(r) = controller_of(&pod.metadata) else {
            return self.orphan(pod);
        };
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let job = self.resolve(&namespace, r).filter(|j| !is_finished(j));
        let Some(job) = job else {
            return self.orphan(pod);
        };
        let key = key_of(&*job);
        self.expectations.deletion_observed(&key, &key_of(pod));
        if last || !has_tracking_finalizer(pod) {
            self.finalizer_removal_observed(&key, pod.metadata.uid.as_deref().unwrap_or_default());
        }
        self.queue.add(Key::Job(key));
    }

    /// Removes the tracking finalizer from a pod no running Job counts (upstream's
    /// `syncOrphanPod`).
    async fn sync_orphan(&self, key: &str) -> Result<Action, kube::Error> {
        let Some(pod) = self.pods.get(key) else { return Ok(Action::AwaitChange) };
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        if let Some(r) = controller_of(&pod.metadata) {
            if r.kind != "Job" || r.api_version != "batch/v1" {
                return Ok(Action::AwaitChange);
            }
            let job = self.resolve(&namespace, r);
            let external = job.as_ref().is_some_and(|j| managed_elsewhere(j));
            if external || job.is_some_and(|j| !is_finished(&j)) {
                return Ok(Action::AwaitChange);
            }
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        remove_finalizer(&api, &pod).await?;
        Ok(Action::AwaitChange)
    }

    fn reference(job: &Job) -> ObjectReference {
        ObjectReference {
            api_version: Some("batch/v1".into()),
            kind: Some("Job".into()),
            name: job.metadata.name.clone(),
            namespace: job.metadata.namespace.clone(),
            uid: job.metadata.uid.clone(),
            resource_version: job.metadata.resource_version.clone(),
            ..ObjectReference::default()
        }
    }
}

type OwnerRef = keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// Whether `spec.managedBy` hands the Job to another controller.
fn managed_elsewhere(job: &Job) -> bool {
    let managed_by = job.spec.as_ref().and_then(|s| s.managed_by.as_deref());
    managed_by.is_some_and(|m| m != MANAGED_BY)
}

/// Takes the tracking finalizer off `pod` (a 404 means it is gone: done too).
async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    if !has_tracking_finalizer(pod) {
        return Ok(());
    }
    let patch =
        json!({ "metadata": { "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER] } });
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
