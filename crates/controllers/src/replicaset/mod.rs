//! `replicaset-controller` and `replicationcontroller-controller` (upstream's
//! `pkg/controller/replicaset`, whose RC controller wraps the same code): one
//! implementation over [`Workload`], which both kinds convert to a ReplicaSet view.
//!
//! A sync of one owner: claim the active pods of its namespace ([`Claimer`]: adopt
//! matching orphans, release what no longer matches), then — only when every pod it
//! asked for was seen by the informer ([`Expectations`]) — create the missing pods in
//! slow-start batches or delete the extras in upstream's ranking, and write the status
//! through the `status` subresource, with a `ReplicaFailure` condition while creating
//! or deleting fails. Events as upstream's: `SuccessfulCreate`, `FailedCreate`,
//! `SuccessfulDelete`, `FailedDelete`.
//!
//! Must never create or delete while expectations are pending: a slow watch would
//! otherwise cause extra pods.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use keelson_api::k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use keelson_api::k8s_openapi::api::core::v1::{ObjectReference, Pod, ReplicationController};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use keelson_api::k8s_openapi::jiff::Timestamp;
use keelson_core::labels;
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::events::{EventType, Recorder};
use keelson_runtime::informer::{Informer, key_of};
use keelson_runtime::queue::WorkQueue;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::expectations::Expectations;
use crate::ownership::Claimer;
use crate::pod_handlers::{self, PodOwners};
use crate::pods::{self, controller_of, controller_ref};
use crate::wire;

pub const NAME: &str = "replicaset-controller";
pub const SERVICE_ACCOUNT: &str = "replicaset-controller";
pub const RC_NAME: &str = "replicationcontroller-controller";
pub const RC_SERVICE_ACCOUNT: &str = "replication-controller";
/// At most this many pods are created or deleted in one sync (upstream's `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;
const WORKERS: usize = 5;
/// The index of pods and owners by namespace.
pub const NAMESPACE_INDEX: &str = "namespace";

/// A kind the controller manages: a ReplicaSet, or something that converts to one.
pub trait Workload:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The events' source component.
    const EVENT_SOURCE: &'static str;
    /// This object as a ReplicaSet (upstream's conversion for RCs).
    fn view(&self) -> ReplicaSet;
    /// This object with `status` in its own kind's shape.
    fn with_status(&self, status: ReplicaSetStatus) -> Self;
}

impl Workload for ReplicaSet {
    const EVENT_SOURCE: &'static str = "replicaset-controller";
    fn view(&self) -> ReplicaSet {
        self.clone()
    }
    fn with_status(&self, status: ReplicaSetStatus) -> Self {
        ReplicaSet { status: Some(status), ..self.clone() }
    }
}

impl Workload for ReplicationController {
    const EVENT_SOURCE: &'static str = "replication-controller";
    fn view(&self) -> ReplicaSet {
        let spec = self.spec.clone().unwrap_or_default();
        ReplicaSet {
            metadata: self.metadata.clone(),
            spec: Some(ReplicaSetSpec {
                replicas: spec.replicas,
                min_ready_seconds: spec.min_ready_seconds,
                selector: LabelSelector { match_labels: spec.selector, match_expressions: None },
                template: spec.template,
            }),
            // The same fields but `terminatingReplicas`, which an RC lacks.
            status: self.status.as_ref().map(wire::convert),
        }
    }
    fn with_status(&self, status: ReplicaSetStatus) -> Self {
        ReplicationController { status: Some(wire::convert(&status)), ..self.clone() }
    }
}

pub fn start(context: Context) -> StartFuture {
    Box::pin(run::<ReplicaSet>(context))
}

pub fn start_rc(context: Context) -> StartFuture {
    Box::pin(run::<ReplicationController>(context))
}

/// The namespace of an object, for the namespace index.
pub fn by_namespace<K: Resource>(object: &K) -> Vec<String> {
    vec![object.meta().namespace.clone().unwrap_or_default()]
}

struct Controller<K> {
    client: Client,
    owners: Arc<Informer<K>>,
    pods: Arc<Informer<Pod>>,
    expectations: Arc<Expectations>,
    queue: WorkQueue<String>,
    recorder: Recorder,
}

async fn run<K: Workload>(context: Context) -> keelson_runtime::Result<()> {
    let owners = context.informers.get::<K>();
    let pods = context.informers.get::<Pod>();
    let controller =
        Controller::new(context.client.clone(), owners.clone(), pods.clone(), context.queue());
    owners.wait_synced().await;
    pods.wait_synced().await;
    let queue = controller.queue.clone();
    run_workers(&context, queue, WORKERS, move |key: String| {
        let c = controller.clone();
        async move { c.sync(&key).await }
    })
    .await;
    Ok(())
}

impl<K: Workload> PodOwners for Controller<K> {
    /// The key of the owner `reference` names, if it is one of ours and still that one.
    fn resolve(
        &self,
        namespace: &str,
        reference: &keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Option<String> {
        crate::pod_handlers::resolve_in(&self.owners, &K::kind(&()), namespace, reference)
    }

    /// The owners in `pod`'s namespace whose selector matches it.
    fn matching(&self, pod: &Pod) -> Vec<String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.owners
            .by_index(NAMESPACE_INDEX, namespace)
            .iter()
            .filter(|o| {
                let view = o.view();
                let selector = view.spec.as_ref().map(|s| &s.selector);
                selector.is_some_and(|s| !is_empty(s))
                    && labels::matches(selector, pod.metadata.labels.as_ref())
            })
            .map(|o| key_of(&**o))
            .collect()
    }

    const READY_SLACK: Duration = Duration::ZERO;

    fn min_ready_seconds(&self, key: &str) -> i32 {
        let spec = self.owners.get(key).and_then(|o| o.view().spec);
        spec.and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
}

impl<K: Workload> Controller<K> {
    /// The controller over these informers, its handlers registered.
    fn new(
        client: Client,
        owners: Arc<Informer<K>>,
        pods: Arc<Informer<Pod>>,
        queue: WorkQueue<String>,
    ) -> Arc<Self> {
        owners.add_index(NAMESPACE_INDEX, by_namespace::<K>);
        pods.add_index(NAMESPACE_INDEX, by_namespace::<Pod>);
        let controller = Arc::new(Controller {
            recorder: Recorder::new(client.clone(), K::EVENT_SOURCE, None),
            client,
            owners: owners.clone(),
            pods: pods.clone(),
            expectations: Arc::new(Expectations::default()),
            queue,
        });
        let c = controller.clone();
        owners.on_change(move |change| c.expectations.owner_changed(change, &c.queue));
        let c = controller.clone();
        pods.on_change(move |change| {
            pod_handlers::pod_changed(&*c, &c.expectations, &c.queue, change)
        });
        controller
    }

    async fn sync(&self, key: &str) -> Result<Action, kube::Error> {
        let Some(object) = self.owners.get(key) else {
            self.expectations.delete(key);
            return Ok(Action::AwaitChange);
        };
        let rs = object.view();
        let spec = rs.spec.clone().unwrap_or_default();
        let needs_sync = self.expectations.satisfied(key);
        let namespace = rs.metadata.namespace.clone().unwrap_or_default();
        let active: Vec<Arc<Pod>> = self
            .pods
            .by_index(NAMESPACE_INDEX, &namespace)
            .into_iter()
            .filter(|p| pods::is_active(p))
            .collect();
        let owners: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let reference = controller_ref(&K::api_version(&()), &K::kind(&()), &rs.metadata);
        let selector = Some(&spec.selector).filter(|s| !is_empty(s));
        let owned = Claimer::new(&owners, &*object, reference)
            .claim(&pod_api, active, |p| labels::matches(selector, p.metadata.labels.as_ref()))
            .await?;
        let managed = if needs_sync && rs.metadata.deletion_timestamp.is_none() {
            self.manage(key, &rs, &owned).await
        } else {
            Ok(())
        };
        let status = status(&rs, &owned, managed.as_ref().err(), Timestamp::now());
        let (ready, available) = (status.ready_replicas, status.available_replicas);
        self.write_status(&object, status).await?;
        managed?;
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let replicas = spec.replicas.unwrap_or(1);
        if min_ready > 0 && ready.unwrap_or(0) == replicas && available.unwrap_or(0) != replicas {
            return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
        }
        Ok(Action::AwaitChange)
    }

    fn reference(&self, rs: &ReplicaSet) -> ObjectReference {
        ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: rs.metadata.name.clone(),
            namespace: rs.metadata.namespace.clone(),
            uid: rs.metadata.uid.clone(),
            resource_version: rs.metadata.resource_version.clone(),
            ..ObjectReference::default()
        }
    }

    /// Creates or deletes pods until `owned` has `spec.replicas` (upstream's
    /// `manageReplicas`).
    async fn manage(
        &self,
        key: &str,
        rs: &ReplicaSet,
        owned: &[Arc<Pod>],
    ) -> Result<(), kube::Error> {
        let spec = rs.spec.clone().unwrap_or_default();
        let want = spec.replicas.unwrap_or(1).max(0) as usize;
        let namespace = rs.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let event_ref = self.reference(rs);
        if owned.len() < want {
            let diff = (want - owned.len()).min(BURST_REPLICAS);
            self.expectations.expect_creations(key, diff);
            let template = spec.template.unwrap_or_default();
            let reference = controller_ref(&K::api_version(&()), &K::kind(&()), &rs.metadata);
            let (created, failed) = pods::slow_start_batch(diff, || async {
                let pod = pods::from_template(&template, reference.clone(), &namespace);
                match api.create(&PostParams::default(), &pod).await {
                    Ok(pod) => {
                        let name = pod.metadata.name.unwrap_or_default();
                        self.recorder.event(
                            &event_ref,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {name}"),
                        );
                        Ok(())
                    }
                    // The namespace is going: nothing to do (upstream ignores it too).
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
            if let Some(e) = failed {
                // What was not created will never be seen.
                for _ in created..diff {
                    self.expectations.creation_observed(key);
                }
                return Err(e);
            }
        } else if owned.len() > want {
            let diff = (owned.len() - want).min(BURST_REPLICAS);
            let mut victims = owned.to_vec();
            if diff < victims.len() {
                pods::rank_for_deletion(&mut victims, &self.related_pods(rs), Timestamp::now());
            }
            victims.truncate(diff);
            self.expectations.expect_deletions(key, victims.iter().map(|p| key_of(&**p)));
            let deletes = victims.iter().map(|pod| async {
                let name = pod.metadata.name.clone().unwrap_or_default();
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {
                        self.recorder.event(
                            &event_ref,
                            EventType::Normal,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {name}"),
                        );
                        Ok(())
                    }
                    Err(e) => {
                        // Never seen as deleted by us: stop waiting for it.
                        self.expectations.deletion_observed(key, &key_of(&**pod));
                        if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                            return Ok(());
                        }
                        self.recorder.event(
                            &event_ref,
                            EventType::Warning,
                            "FailedDelete",
                            &format!("Error deleting: {}", message(&e)),
                        );
                        Err(e)
                    }
                }
            });
            let results = futures_util::future::join_all(deletes).await;
            if let Some(e) = results.into_iter().find_map(Result::err) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The active pods of every owner with the same controller as `rs` (the
    /// ReplicaSets of one Deployment), for ranking by colocation.
    fn related_pods(&self, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
        let namespace = rs.metadata.namespace.clone().unwrap_or_default();
        let controller = controller_of(&rs.metadata).map(|r| r.uid.clone());
        let siblings: Vec<ReplicaSet> = match controller {
            None => vec![rs.clone()],
            Some(uid) => self
                .owners
                .by_index(NAMESPACE_INDEX, &namespace)
                .iter()
                .map(|o| o.view())
                .filter(|o| controller_of(&o.metadata).map(|r| &r.uid) == Some(&uid))
                .collect(),
        };
        let in_namespace = self.pods.by_index(NAMESPACE_INDEX, &namespace);
        let mut seen = HashSet::new();
        let mut related = Vec::new();
        for sibling in siblings {
            let selector = sibling.spec.as_ref().map(|s| &s.selector).filter(|s| !is_empty(s));
            for pod in &in_namespace {
                if labels::matches(selector, pod.metadata.labels.as_ref())
                    && seen.insert(pod.metadata.uid.clone())
                {
                    related.push(pod.clone());
                }
            }
        }
        related
    }
}

fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// What a Status error says (client-go's `err.Error()` of a StatusError).
pub fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

mod status;
#[cfg(test)]
mod tests;

pub use status::status;
