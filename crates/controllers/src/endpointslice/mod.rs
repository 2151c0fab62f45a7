//! `endpointslice-controller` (upstream's `pkg/controller/endpointslice`): the
//! EndpointSlices of every Service with a selector, written as [`reconciler::plan`]
//! says — at most [`reconciler::MAX_PER_SLICE`] endpoints a slice, each with its
//! `ready`/`serving`/`terminating` conditions, node and zone; labelled
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by`, owned by
//! the Service (so the garbage collector deletes them with it). Topology hints are off,
//! as upstream's default.
//!
//! A [`Tracker`] remembers the generation of each slice this controller wrote: while
//! the informer holds an older one (or still holds a slice it deleted, or lacks one it
//! created) the Service's sync fails and is retried, so a slow watch never makes it
//! write from a stale view (duplicate slices, lost endpoints).

pub mod reconciler;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keelson_api::k8s_openapi::api::core::v1::{Node, Pod, Service};
use keelson_api::k8s_openapi::api::discovery::v1::EndpointSlice;
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::informer::{Change, Informer, Key};
use keelson_runtime::queue::WorkQueue;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};

use crate::endpointutil;
use crate::replicaset::NAMESPACE_INDEX;
use reconciler::{NodeZone, Plan};

pub const NAME: &str = "endpointslice-controller";
pub const SERVICE_ACCOUNT: &str = "endpointslice-controller";
const WORKERS: usize = 5;
/// The index of slices by their Service's key.
const SERVICE_INDEX: &str = "service";
const ZONE: &str = "topology.kubernetes.io/zone";

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("EndpointSlice informer cache is out of date for Service {0}")]
    Stale(String),
    #[error("skipped pods of Service {service}: {pods}")]
    Skipped { service: String, pods: String },
}

/// What this controller expects of each slice it wrote, by Service key and slice name:
/// at least this generation, or (`None`) gone.
#[derive(Default)]
pub struct Tracker {
    slices: Mutex<HashMap<Key, HashMap<String, Option<i64>>>>,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, HashMap<String, Option<i64>>>> {
        self.slices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a slice as written (`Some` generation) or deleted (`None`).
    pub fn expect(&self, service: &str, slice: &str, generation: Option<i64>) {
        self.lock().entry(service.to_owned()).or_default().insert(slice.to_owned(), generation);
    }

    /// Forgets a slice once the informer saw it go.
    pub fn seen_deleted(&self, service: &str, slice: &str) {
        let mut slices = self.lock();
        if let Some(expected) = slices.get_mut(service) {
            expected.remove(slice);
            if expected.is_empty() {
                slices.remove(service);
            }
        }
    }

    pub fn forget(&self, service: &str) {
        self.lock().remove(service);
    }

    /// Whether `seen` (the informer's slices of the Service) lags behind our writes.
    pub fn stale(&self, service: &str, seen: &[Arc<EndpointSlice>]) -> bool {
        let slices = self.lock();
        let Some(expected) = slices.get(service) else { return false };
        expected.iter().any(|(name, generation)| {
            let found = seen.iter().find(|s| s.metadata.name.as_deref() == Some(name));
            match (generation, found) {
                (None, Some(_)) => true,
                (None, None) => false,
                (Some(_), None) => true,
                (Some(g), Some(s)) => s.metadata.generation.unwrap_or(0) < *g,
            }
        })
    }
}

struct Controller {
    client: Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    slices: Arc<Informer<EndpointSlice>>,
    tracker: Tracker,
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let services = context.informers.get::<Service>();
    let pods = context.informers.get::<Pod>();
    let nodes = context.informers.get::<Node>();
    let slices = context.informers.get::<EndpointSlice>();
    let queue: WorkQueue<Key> = context.queue();
    pods.add_index(NAMESPACE_INDEX, crate::replicaset::by_namespace::<Pod>);
    slices.add_index(SERVICE_INDEX, |s| reconciler::service_key(s).into_iter().collect());
    endpointutil::queue_services_of_pods(&services, &pods, &queue);
    services.queue_changes(&queue);
    let controller = Arc::new(Controller {
        client: context.client.clone(),
        services: services.clone(),
        pods: pods.clone(),
        nodes: nodes.clone(),
        slices: slices.clone(),
        tracker: Tracker::default(),
    });
    {
        let c = controller.clone();
        let queue = queue.clone();
        slices.on_change(move |change| {
            let slice = change.object();
            let Some(service) = reconciler::service_key(slice) else { return };
            if let Change::Deleted(_) = change {
                c.tracker
                    .seen_deleted(&service, slice.metadata.name.as_deref().unwrap_or_default());
            }
            queue.add(service);
        });
    }
    services.wait_synced().await;
    pods.wait_synced().await;
    nodes.wait_synced().await;
    slices.wait_synced().await;
    run_workers(&context, queue, WORKERS, move |key: Key| {
        let c = controller.clone();
        async move { c.sync(&key).await }
    })
    .await;
    Ok(())
}

impl Controller {
    fn zone_of(&self, node: &str) -> NodeZone {
        match self.nodes.get(node) {
            None => NodeZone::Unknown,
            Some(node) => {
                NodeZone::Known(node.metadata.labels.as_ref().and_then(|l| l.get(ZONE)).cloned())
            }
        }
    }

    async fn sync(&self, key: &str) -> Result<Action, SyncError> {
        let (namespace, _) = key.split_once('/').unwrap_or(("", key));
        let Some(service) = self.services.get(key) else {
            // The garbage collector deletes the slices the Service owned.
            self.tracker.forget(key);
            return Ok(Action::AwaitChange);
        };
        let Some(selector) = endpointutil::selector(&service) else {
            return Ok(Action::AwaitChange);
        };
        let pods = endpointutil::pods_selected(&self.pods, namespace, selector);
        let existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .by_index(SERVICE_INDEX, key)
            .into_iter()
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .collect();
        if self.tracker.stale(key, &existing) {
            return Err(SyncError::Stale(key.to_owned()));
        }
        let plan = reconciler::plan(
            &service,
            &pods,
            &existing,
            &|node| self.zone_of(node),
            reconciler::MAX_PER_SLICE,
        );
        let skipped = plan.skipped.join(", ");
        self.write(key, namespace, &service, plan).await?;
        if !skipped.is_empty() {
            return Err(SyncError::Skipped { service: key.to_owned(), pods: skipped });
        }
        Ok(Action::AwaitChange)
    }

    /// Upstream's `finalize`: creates (none while the Service is being deleted, so the
    /// garbage collector is not raced), updates, deletes.
    async fn write(
        &self,
        key: &str,
        namespace: &str,
        service: &Service,
        plan: Plan,
    ) -> Result<(), SyncError> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let record = |slice: &EndpointSlice| {
            let name = slice.metadata.name.as_deref().unwrap_or_default();
            self.tracker.expect(key, name, Some(slice.metadata.generation.unwrap_or(0)));
        };
        if service.metadata.deletion_timestamp.is_none() {
            for slice in &plan.create {
                match api.create(&PostParams::default(), slice).await {
                    Ok(created) => record(&created),
                    // The namespace is going away: nothing more to do here.
                    Err(kube::Error::Api(e))
                        if e.code == 403 && e.message.contains("being terminated") =>
                    {
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        for slice in &plan.update {
            let name = slice.metadata.name.as_deref().unwrap_or_default();
            record(&api.replace(name, &PostParams::default(), slice).await?);
        }
        for slice in &plan.delete {
            let name = slice.metadata.name.as_deref().unwrap_or_default();
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => self.tracker.expect(key, name, None),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, generation: i64) -> Arc<EndpointSlice> {
        let mut slice = EndpointSlice::default();
        slice.metadata.name = Some(name.into());
        slice.metadata.generation = Some(generation);
        Arc::new(slice)
    }

    #[test]
    fn the_tracker_tells_a_stale_cache_from_a_current_one() {
        let tracker = Tracker::default();
        assert!(!tracker.stale("ns/web", &[]));
        tracker.expect("ns/web", "web-a", Some(2));
        assert!(tracker.stale("ns/web", &[]), "created but not seen yet");
        assert!(tracker.stale("ns/web", &[slice("web-a", 1)]), "an older generation");
        assert!(!tracker.stale("ns/web", &[slice("web-a", 2)]));
        tracker.expect("ns/web", "web-a", None);
        assert!(tracker.stale("ns/web", &[slice("web-a", 2)]), "deleted but still seen");
        tracker.seen_deleted("ns/web", "web-a");
        assert!(!tracker.stale("ns/web", &[]));
    }
}
