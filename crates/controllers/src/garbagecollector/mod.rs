//! `garbage-collector-controller` (upstream's `pkg/controller/garbagecollector`):
//! deletes objects whose owners are gone, and carries out the propagation policy of a
//! deletion — `Background` (the owner goes, then its dependents), `Foreground` (the
//! owner, marked with the `foregroundDeletion` finalizer, waits until its dependents
//! that set `blockOwnerDeletion` are gone) and `Orphan` (the `orphan` finalizer: the
//! dependents' references to the owner are removed, then the finalizer). The API server
//! adds the finalizers when a delete asks for the policy.
//!
//! `monitors.rs` watches every collectable resource into `graph.rs`'s ownerReferences
//! graph; the workers here check each object the graph says may need it. Whether an
//! owner exists is always asked of the API server by uid (upstream's
//! `attemptToDeleteItem`), never taken from a cache: an object is deleted only if every
//! owner it names is absent or is itself waiting for its dependents.
//!
//! Must never delete an object that still has an owner, nor one whose uid is not the
//! one checked (deletes carry uid and resourceVersion preconditions).

mod graph;
mod monitors;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use keelson_api::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use kube::api::{Api, DeleteParams, DynamicObject, PostParams, Preconditions, PropagationPolicy};
use kube::{Client, ResourceExt};

use crate::lock;

use graph::{FOREGROUND, Graph, Identity, Node, ORPHAN, Work};
use monitors::{Mapping, Monitors};

pub const NAME: &str = "garbage-collector-controller";
pub const SERVICE_ACCOUNT: &str = "generic-garbage-collector";
/// Objects checked at once (`--concurrent-gc-syncs`).
const WORKERS: usize = 20;

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

/// Why a check did not finish; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("unable to get REST mapping for {api_version}/{kind}")]
    UnknownKind { api_version: String, kind: String },
    #[error("{0} has not been observed yet")]
    Unobserved(String),
}

struct Collector {
    client: Client,
    graph: Arc<Mutex<Graph>>,
    monitors: Arc<Monitors>,
    queue: keelson_runtime::queue::WorkQueue<Work>,
    /// Owners found absent (upstream's `absentOwnerCache`), by namespace and uid.
    absent: Mutex<HashSet<(String, String)>>,
}

const ABSENT_CACHE: usize = 500;

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let queue = context.queue::<Work>();
    let graph = Arc::new(Mutex::new(Graph::default()));
    let monitors = Arc::new(Monitors::new(context.client.clone(), graph.clone(), queue.clone()));
    // Discovery again every 30 s, and soon after a custom resource is defined or removed.
    let (resync, mut resync_wanted) = tokio::sync::watch::channel(());
    context.informers.get::<CustomResourceDefinition>().on_change(move |_| {
        resync.send_replace(());
    });
    let syncer = {
        let monitors = monitors.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = monitors.sync().await {
                    tracing::warn!(controller = NAME, error = %e, "cannot read discovery");
                }
                tokio::select! {
                    _ = tokio::time::sleep(monitors::RESYNC) => {}
                    _ = resync_wanted.changed() => {
                        // Let the new resource's discovery settle.
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        })
    };
    let collector = Arc::new(Collector {
        client: context.client.clone(),
        graph,
        monitors,
        queue: queue.clone(),
        absent: Mutex::new(HashSet::new()),
    });
    run_workers(&context, queue, WORKERS, move |work: Work| {
        let collector = collector.clone();
        async move {
            match &work {
                Work::AttemptToDelete(uid) => collector.attempt_to_delete(uid).await,
                Work::AttemptToOrphan(uid) => collector.attempt_to_orphan(uid).await,
            }
        }
    })
    .await;
    syncer.abort();
    Ok(())
}

/// How each owner reference of an object stands (upstream's `classifyReferences`).
#[derive(Default)]
struct Owners {
    solid: Vec<OwnerReference>,
    dangling: Vec<OwnerReference>,
    waiting_for_dependents: Vec<OwnerReference>,
}

impl Collector {
    fn node(&self, uid: &str) -> Option<Node> {
        lock(&self.graph).get(uid).cloned()
    }

    fn enqueue(&self, work: Vec<Work>) {
        for w in work {
            self.queue.add(w);
        }
    }

    /// The API of `identity`'s resource, in its namespace if namespaced.
    async fn api_for(&self, identity: &Identity) -> Result<(Api<DynamicObject>, bool), Error> {
        let mut mapping: Arc<Mapping> = self.monitors.mapping();
        let mut served = mapping.resource(&identity.api_version, &identity.kind);
        if served.is_none() {
            // A kind defined since discovery was last read.
            self.monitors.sync().await?;
            mapping = self.monitors.mapping();
            served = mapping.resource(&identity.api_version, &identity.kind);
        }
        let Some(served) = served else {
            return Err(Error::UnknownKind {
                api_version: identity.api_version.clone(),
                kind: identity.kind.clone(),
            });
        };
        // The group's served version: an object is the same in every version, and a
        // version no longer served must not make its owner look absent.
        let resource = served.resource.clone();
        let api = if served.namespaced {
            Api::namespaced_with(self.client.clone(), &identity.namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        };
        Ok((api, served.namespaced))
    }

    /// The object `identity` names as it is now, if it is still that object (same uid).
    async fn latest(&self, identity: &Identity) -> Result<Option<DynamicObject>, Error> {
        let (api, namespaced) = self.api_for(identity).await?;
        if namespaced && identity.namespace.is_empty() {
            return Ok(None);
        }
        match api.get_opt(&identity.name).await? {
            Some(o) if o.metadata.uid.as_deref() == Some(identity.uid.as_str()) => Ok(Some(o)),
            _ => Ok(None),
        }
    }

    /// An object of the graph is gone: forget it and check its dependents.
    fn gone(&self, uid: &str) {
        let work = lock(&self.graph).forget(uid);
        self.enqueue(work);
    }

    async fn attempt_to_delete(&self, uid: &str) -> Result<Action, Error> {
        let Some(node) = self.node(uid) else { return Ok(Action::AwaitChange) };
        if node.being_deleted && !node.deleting_dependents {
            return Ok(Action::AwaitChange);
        }
        let Some(latest) = self.latest(&node.identity).await? else {
            // Absent (or another object under its name): dependents are checked.
            self.gone(uid);
            return Ok(Action::AwaitChange);
        };
        if node.virtual_ {
            // It exists but no monitor has shown it yet: look again later.
            return Err(Error::Unobserved(format!(
                "{}/{}",
                node.identity.kind, node.identity.name
            )));
        }
        if node.deleting_dependents {
            return self.delete_dependents_first(&node, latest).await;
        }
        let references = latest.owner_references().to_vec();
        if references.is_empty() {
            return Ok(Action::AwaitChange);
        }
        let Some(owners) = self.classify(&node, &references).await? else {
            return Ok(Action::AwaitChange);
        };
        if !owners.solid.is_empty() {
            // Some owner remains: only references to absent or departing owners go.
            let drop: HashSet<&str> = owners
                .dangling
                .iter()
                .chain(&owners.waiting_for_dependents)
                .map(|r| r.uid.as_str())
                .collect();
            if !drop.is_empty() {
                self.remove_owner_references(&node.identity, &drop).await?;
            }
            return Ok(Action::AwaitChange);
        }
        let finalizers = latest.finalizers();
        let policy = if !owners.waiting_for_dependents.is_empty() && !node.dependents.is_empty() {
            // Its owner waits in the foreground: so do its own dependents.
            PropagationPolicy::Foreground
        } else if finalizers.iter().any(|f| f == ORPHAN) {
            PropagationPolicy::Orphan
        } else if finalizers.iter().any(|f| f == FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::debug!(object = ?node.identity, ?policy, "deleting an object whose owners are gone");
        let (api, _) = self.api_for(&node.identity).await?;
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(node.identity.uid.clone()),
                resource_version: latest.resource_version(),
            }),
            propagation_policy: Some(policy),
            ..DeleteParams::default()
        };
        match api.delete(&node.identity.name, &params).await {
            Ok(_) => Ok(Action::AwaitChange),
            Err(e) if not_found(&e) => Ok(Action::AwaitChange),
            Err(e) => Err(e.into()),
        }
    }

    /// Sorts `node`'s owner references; `None` when they cannot be resolved for good
    /// (a cluster-scoped object naming a namespaced owner, which upstream reports and
    /// leaves alone).
    async fn classify(
        &self,
        node: &Node,
        references: &[OwnerReference],
    ) -> Result<Option<Owners>, Error> {
        let mut owners = Owners::default();
        for r in references {
            let key = (node.identity.namespace.clone(), r.uid.clone());
            let cluster_key = (String::new(), r.uid.clone());
            {
                let absent = lock(&self.absent);
                if absent.contains(&key) || absent.contains(&cluster_key) {
                    owners.dangling.push(r.clone());
                    continue;
                }
            }
            let identity = Identity {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                namespace: node.identity.namespace.clone(),
                name: r.name.clone(),
                uid: r.uid.clone(),
            };
            let (api, namespaced) = self.api_for(&identity).await?;
            if namespaced && node.identity.namespace.is_empty() {
                tracing::warn!(
                    object = ?node.identity,
                    owner = ?r,
                    "OwnerRefInvalidNamespace: a cluster-scoped object names a namespaced owner; left alone"
                );
                return Ok(None);
            }
            let owner = match api.get_metadata_opt(&r.name).await? {
                Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => o,
                _ => {
                    let mut absent = lock(&self.absent);
                    if absent.len() >= ABSENT_CACHE {
                        absent.clear();
                    }
                    absent.insert(if namespaced { key } else { cluster_key });
                    owners.dangling.push(r.clone());
                    continue;
                }
            };
            let waiting = owner.metadata.deletion_timestamp.is_some()
                && owner.metadata.finalizers.iter().flatten().any(|f| f == FOREGROUND);
            if waiting {
                owners.waiting_for_dependents.push(r.clone());
            } else {
                owners.solid.push(r.clone());
            }
        }
        Ok(Some(owners))
    }

    /// An owner deleted in the foreground: once no dependent blocks it, its
    /// `foregroundDeletion` finalizer goes; until then its blocking dependents are
    /// deleted.
    async fn delete_dependents_first(
        &self,
        node: &Node,
        latest: DynamicObject,
    ) -> Result<Action, Error> {
        let blocking = lock(&self.graph).blocking_dependents(&node.identity.uid);
        if blocking.is_empty() {
            self.remove_finalizer(&node.identity, latest, FOREGROUND).await?;
            return Ok(Action::AwaitChange);
        }
        for dependent in blocking.iter().filter(|d| !d.being_deleted) {
            self.queue.add(Work::AttemptToDelete(dependent.identity.uid.clone()));
        }
        Ok(Action::AwaitChange)
    }

    /// An owner deleted with `Orphan`: its dependents' references to it go, then its
    /// `orphan` finalizer.
    async fn attempt_to_orphan(&self, uid: &str) -> Result<Action, Error> {
        let Some(node) = self.node(uid) else { return Ok(Action::AwaitChange) };
        let Some(latest) = self.latest(&node.identity).await? else {
            return Ok(Action::AwaitChange);
        };
        let owner: HashSet<&str> = [uid].into();
        for dependent in &node.dependents {
            let Some(d) = self.node(dependent) else { continue };
            self.remove_owner_references(&d.identity, &owner).await?;
        }
        self.remove_finalizer(&node.identity, latest, ORPHAN).await?;
        Ok(Action::AwaitChange)
    }

    /// Removes the references to `owners` from `identity`'s object, read fresh.
    async fn remove_owner_references(
        &self,
        identity: &Identity,
        owners: &HashSet<&str>,
    ) -> Result<(), Error> {
        let Some(mut object) = self.latest(identity).await? else { return Ok(()) };
        let references = object.owner_references().to_vec();
        let kept: Vec<OwnerReference> =
            references.iter().filter(|r| !owners.contains(r.uid.as_str())).cloned().collect();
        if kept.len() == references.len() {
            return Ok(());
        }
        object.metadata.owner_references = Some(kept);
        self.replace(identity, &object).await
    }

    async fn remove_finalizer(
        &self,
        identity: &Identity,
        mut object: DynamicObject,
        finalizer: &str,
    ) -> Result<(), Error> {
        let finalizers = object.finalizers().to_vec();
        if !finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        object.metadata.finalizers =
            Some(finalizers.into_iter().filter(|f| f != finalizer).collect());
        self.replace(identity, &object).await
    }

    /// Writes `object` back (its resourceVersion guards against a lost update).
    async fn replace(&self, identity: &Identity, object: &DynamicObject) -> Result<(), Error> {
        let (api, _) = self.api_for(identity).await?;
        match api.replace(&identity.name, &PostParams::default(), object).await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
