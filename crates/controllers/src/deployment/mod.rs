//! `deployment-controller` (upstream's `pkg/controller/deployment`): a Deployment
//! owns ReplicaSets, one per pod template (named `<deployment>-<hash>`, the hash also
//! labelling its pods as `pod-template-hash`), and moves replicas from the old ones to
//! the new one — RollingUpdate within maxSurge/maxUnavailable, or Recreate — writing
//! revisions (`deployment.kubernetes.io/revision`, `revision-history`), the
//! `Progressing`/`Available` conditions and the status counts.
//!
//! A sync ([`rollout`]) follows upstream's `syncDeployment`: claim ReplicaSets by
//! selector; a paused Deployment or a scaling event only scales (proportionally
//! during a rollout) and cleans up; otherwise the strategy's rollout. `kubectl rollout
//! undo` writes an old template back, so the old ReplicaSet becomes the new one again
//! and gets the next revision; `kubectl rollout restart` changes a template annotation,
//! so a new ReplicaSet is made.
//!
//! Must never scale ReplicaSets it does not own, nor write pods (that is the
//! ReplicaSet controller's work).

mod rollout;
pub mod util;

use std::collections::BTreeMap;
use std::sync::Arc;

use keelson_api::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use keelson_api::k8s_openapi::api::core::v1::Pod;
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use keelson_core::labels;
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::events::Recorder;
use keelson_runtime::informer::{Change, Informer, key_of};
use keelson_runtime::queue::WorkQueue;
use kube::Client;
use kube::api::Api;

use crate::ownership::Claimer;
use crate::pods::{controller_of, controller_ref};
use crate::replicaset::{NAMESPACE_INDEX, by_namespace};

pub const NAME: &str = "deployment-controller";
pub const SERVICE_ACCOUNT: &str = "deployment-controller";
const WORKERS: usize = 5;

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

struct Controller {
    client: Client,
    deployments: Arc<Informer<Deployment>>,
    sets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    queue: WorkQueue<String>,
    recorder: Recorder,
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let deployments = context.informers.get::<Deployment>();
    deployments.add_index(NAMESPACE_INDEX, by_namespace::<Deployment>);
    let sets = context.informers.get::<ReplicaSet>();
    sets.add_index(NAMESPACE_INDEX, by_namespace::<ReplicaSet>);
    let pods = context.informers.get::<Pod>();
    pods.add_index(NAMESPACE_INDEX, by_namespace::<Pod>);
    let controller = Arc::new(Controller {
        client: context.client.clone(),
        deployments: deployments.clone(),
        sets: sets.clone(),
        pods: pods.clone(),
        queue: context.queue::<String>(),
        recorder: Recorder::new(context.client.clone(), NAME, None),
    });
    deployments.queue_changes(&controller.queue);
    {
        let c = controller.clone();
        sets.on_change(move |change| c.replica_set_changed(change));
    }
    {
        let c = controller.clone();
        pods.on_change(move |change| {
            if let Change::Deleted(pod) = change {
                c.pod_deleted(pod);
            }
        });
    }
    deployments.wait_synced().await;
    sets.wait_synced().await;
    pods.wait_synced().await;
    let queue = controller.queue.clone();
    run_workers(&context, queue, WORKERS, move |key: String| {
        let c = controller.clone();
        async move { c.sync(&key).await }
    })
    .await;
    Ok(())
}

fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

impl Controller {
    fn resolve(&self, namespace: &str, reference: &OwnerReference) -> Option<String> {
        if reference.kind != "Deployment" {
            return None;
        }
        let key = format!("{namespace}/{}", reference.name);
        let d = self.deployments.get(&key)?;
        (d.metadata.uid.as_deref() == Some(reference.uid.as_str())).then_some(key)
    }

    /// The Deployments whose selector matches an orphan ReplicaSet's labels.
    fn matching(&self, rs: &ReplicaSet) -> Vec<String> {
        if rs.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty) {
            return Vec::new();
        }
        let namespace = rs.metadata.namespace.clone().unwrap_or_default();
        self.deployments
            .by_index(NAMESPACE_INDEX, &namespace)
            .iter()
            .filter(|d| {
                let selector = d.spec.as_ref().map(|s| &s.selector).filter(|s| !is_empty(s));
                labels::matches(selector, rs.metadata.labels.as_ref())
            })
            .map(|d| key_of(&**d))
            .collect()
    }

    fn replica_set_changed(&self, change: &Change<ReplicaSet>) {
        let namespace = |rs: &ReplicaSet| rs.metadata.namespace.clone().unwrap_or_default();
        let enqueue_owner = |rs: &ReplicaSet| {
            if let Some(key) =
                controller_of(&rs.metadata).and_then(|r| self.resolve(&namespace(rs), r))
            {
                self.queue.add(key);
            }
        };
        match change {
            Change::Added(rs) | Change::Deleted(rs) => match controller_of(&rs.metadata) {
                Some(_) => enqueue_owner(rs),
                None if matches!(change, Change::Added(_)) => {
                    self.matching(rs).into_iter().for_each(|k| self.queue.add(k))
                }
                None => {}
            },
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                let ref_changed = controller_of(&old.metadata) != controller_of(&new.metadata);
                if ref_changed {
                    enqueue_owner(old);
                }
                if controller_of(&new.metadata).is_some() {
                    enqueue_owner(new);
                } else if ref_changed || old.metadata.labels != new.metadata.labels {
                    self.matching(new).into_iter().for_each(|k| self.queue.add(k));
                }
            }
        }
    }

    /// A Recreate rollout waits for the old pods to be gone: look again at each delete.
    fn pod_deleted(&self, pod: &Pod) {
        let Some(r) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else {
            return;
        };
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let Some(rs) = self.sets.get(&format!("{namespace}/{}", r.name)) else { return };
        let Some(key) = controller_of(&rs.metadata).and_then(|r| self.resolve(&namespace, r))
        else {
            return;
        };
        if self.deployments.get(&key).is_some_and(|d| !util::is_rolling_update(&d)) {
            self.queue.add(key);
        }
    }

    /// The ReplicaSets `d` owns after adopting and releasing by its selector.
    async fn claim(&self, d: &Deployment) -> Result<Vec<ReplicaSet>, kube::Error> {
        let namespace = d.metadata.namespace.clone().unwrap_or_default();
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &namespace);
        let sets: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &namespace);
        let reference = controller_ref("apps/v1", "Deployment", &d.metadata);
        let selector = d.spec.as_ref().map(|s| &s.selector).filter(|s| !is_empty(s));
        let candidates = self.sets.by_index(NAMESPACE_INDEX, &namespace);
        let owned = Claimer::new(&deployments, d, reference)
            .claim(&sets, candidates, |rs| labels::matches(selector, rs.metadata.labels.as_ref()))
            .await?;
        Ok(owned.iter().map(|rs| (**rs).clone()).collect())
    }

    async fn sync(&self, key: &str) -> Result<Action, kube::Error> {
        let Some(d) = self.deployments.get(key) else { return Ok(Action::AwaitChange) };
        let mut run = rollout::Rollout::new(self, (*d).clone());
        let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        if is_empty(&selector) {
            return run.selecting_all().await;
        }
        let sets = self.claim(&d).await?;
        if d.metadata.deletion_timestamp.is_some() {
            return run.sync_status_only(&sets).await;
        }
        run.check_paused_conditions().await?;
        if util::is_paused(&d) || run.is_scaling_event(&sets).await? {
            return run.sync(&sets).await;
        }
        if util::is_rolling_update(&d) {
            run.rolling(&sets).await
        } else {
            let uids: Vec<String> = sets.iter().filter_map(|rs| rs.metadata.uid.clone()).collect();
            let namespace = d.metadata.namespace.clone().unwrap_or_default();
            let pods: Vec<Arc<Pod>> = self
                .pods
                .by_index(NAMESPACE_INDEX, &namespace)
                .into_iter()
                .filter(|p| controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid)))
                .collect();
            run.recreate(&sets, &pods).await
        }
    }
}
