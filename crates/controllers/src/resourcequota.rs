//! `resourcequota-controller` (upstream's `pkg/controller/resourcequota`): every
//! quota's `status.hard` is its `spec.hard`, and its `status.used` what the objects of
//! its namespace in its scopes use, counted with `keelson_core::quota`'s evaluators —
//! the same ones admission charges with — over lists read through the API (resources
//! found by discovery, so `count/<resource>.<group>` of custom resources counts too).
//!
//! Level-triggered, one namespace per key. It wakes when a quota is new or its spec
//! changed (its status does not match), when a counted object is deleted, when a pod
//! finishes or starts terminating, when a service or claim changes, and every
//! [`RESYNC`] for everything else. It never wakes on the creates admission has already
//! charged: recounting before a charged object is stored would undo the charge.

use std::sync::Arc;
use std::time::Duration;

use keelson_api::k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Secret, Service,
};
use keelson_core::quantity::{self, ResourceList};
use keelson_core::quota::{self, Evaluator};
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::informer::{Change, Informer};
use keelson_runtime::queue::WorkQueue;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::{ApiResource, Discovery, Scope};
use serde_json::Value;
use tokio::sync::Mutex;

pub const NAME: &str = "resourcequota-controller";
pub const SERVICE_ACCOUNT: &str = "resourcequota-controller";
/// How often every quota is recounted whatever happened.
pub const RESYNC: Duration = Duration::from_secs(30);
/// How long discovery is trusted before it is read again, so a new custom resource is
/// counted within seconds.
const DISCOVERY_AGE: Duration = Duration::from_secs(5);

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

/// Queues the namespace of every change `wakes` says may change usage.
fn wake_on<K>(informer: &Informer<K>, queue: &WorkQueue<String>, wakes: fn(&Change<K>) -> bool)
where
    K: kube::Resource + Send + Sync + 'static,
{
    let queue = queue.clone();
    informer.on_change(move |change| {
        if wakes(change) {
            queue.add(change.object().meta().namespace.clone().unwrap_or_default());
        }
    });
}

fn deleted<K>(change: &Change<K>) -> bool {
    matches!(change, Change::Deleted(_))
}

fn changed_or_deleted<K>(change: &Change<K>) -> bool {
    !matches!(change, Change::Added(_))
}

fn pod_wakes(change: &Change<Pod>) -> bool {
    match change {
        Change::Deleted(_) => true,
        Change::Updated { new, .. } => {
            let phase = new.status.as_ref().and_then(|s| s.phase.as_deref());
            matches!(phase, Some("Succeeded" | "Failed"))
                || new.metadata.deletion_timestamp.is_some()
        }
        Change::Added(_) => false,
    }
}

/// A quota whose `status.hard` is not its `spec.hard`, or that has no usage yet.
fn quota_wakes(change: &Change<ResourceQuota>) -> bool {
    let Ok(quota) = serde_json::to_value(&**change.object()) else { return false };
    !deleted(change)
        && (quantity::to_json(&quantity::resource_list(&quota["spec"]["hard"]))
            != quota["status"]["hard"]
            || quota["status"]["used"].is_null())
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let queue = context.queue::<String>();
    let quotas = context.informers.get::<ResourceQuota>();
    wake_on(&quotas, &queue, quota_wakes);
    let pods = context.informers.get::<Pod>();
    wake_on(&pods, &queue, pod_wakes);
    let services = context.informers.get::<Service>();
    wake_on(&services, &queue, changed_or_deleted);
    let claims = context.informers.get::<PersistentVolumeClaim>();
    wake_on(&claims, &queue, changed_or_deleted);
    let maps = context.informers.get::<ConfigMap>();
    wake_on(&maps, &queue, deleted);
    let secrets = context.informers.get::<Secret>();
    wake_on(&secrets, &queue, deleted);
    let controllers = context.informers.get::<ReplicationController>();
    wake_on(&controllers, &queue, deleted);
    quotas.wait_synced().await;
    let resync = {
        let (quotas, queue) = (quotas.clone(), queue.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RESYNC).await;
                for quota in quotas.list() {
                    queue.add(quota.metadata.namespace.clone().unwrap_or_default());
                }
            }
        })
    };
    for quota in quotas.list() {
        queue.add(quota.metadata.namespace.clone().unwrap_or_default());
    }
    let counter = Arc::new(Counter { client: context.client.clone(), discovery: Mutex::new(None) });
    run_workers(&context, queue, 1, move |namespace: String| {
        let (quotas, counter) = (quotas.clone(), counter.clone());
        async move { reconcile(&quotas, &counter, &namespace).await }
    })
    .await;
    resync.abort();
    Ok(())
}

/// Recounts the quotas of one namespace; a quota whose write lost a race is read again.
async fn reconcile(
    quotas: &Informer<ResourceQuota>,
    counter: &Counter,
    namespace: &str,
) -> Result<Action, kube::Error> {
    let api: Api<ResourceQuota> = Api::namespaced(counter.client.clone(), namespace);
    let mut in_namespace: Vec<Arc<ResourceQuota>> = quotas
        .list()
        .into_iter()
        .filter(|q| q.metadata.namespace.as_deref() == Some(namespace))
        .collect();
    in_namespace.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut raced = false;
    for cached in in_namespace {
        let object = serde_json::to_value(&*cached).map_err(kube::Error::SerdeError)?;
        let (hard, used) = counter.usage(namespace, &object).await?;
        let status = &object["status"];
        if status["hard"] == quantity::to_json(&hard) && status["used"] == quantity::to_json(&used)
        {
            continue;
        }
        let mut updated = object.clone();
        updated["status"] = serde_json::json!({ "hard": quantity::to_json(&hard), "used": quantity::to_json(&used) });
        let updated: ResourceQuota =
            serde_json::from_value(updated).map_err(kube::Error::SerdeError)?;
        let name = cached.metadata.name.clone().unwrap_or_default();
        // Conditional on the cached revision; the role grants no `get`, so a lost race
        // waits for the informer's newer copy, as upstream's controller does.
        match api.replace_status(&name, &PostParams::default(), &updated).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => raced = true,
            // Gone meanwhile: nothing to count.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(if raced { Action::RequeueAfter(Duration::from_millis(100)) } else { Action::AwaitChange })
}

/// Counts objects through the API, finding resources by discovery.
struct Counter {
    client: kube::Client,
    discovery: Mutex<Option<(tokio::time::Instant, Discovery)>>,
}

impl Counter {
    /// A quota's hard limits and what its namespace's objects use of them (upstream's
    /// `CalculateUsage`); usage of names no evaluator counts is kept as it was.
    async fn usage(
        &self,
        namespace: &str,
        quota: &Value,
    ) -> Result<(ResourceList, ResourceList), kube::Error> {
        let hard = quantity::resource_list(&quota["spec"]["hard"]);
        let scopes = quota::scopes(quota);
        let mut used = quantity::resource_list(&quota["status"]["used"]);
        let now = keelson_api::k8s_openapi::jiff::Timestamp::now().as_second();
        let served = self.namespaced_resources().await?;
        let evaluators = Evaluator::for_names(
            |group, plural| served.iter().any(|r| r.group == group && r.plural == plural),
            hard.keys(),
        );
        for e in evaluators {
            let Some(resource) = served.iter().find(|r| r.group == e.group && r.plural == e.plural)
            else {
                continue;
            };
            let matched = e.matching(hard.keys());
            let mut total: ResourceList =
                matched.iter().map(|n| (n.clone(), Default::default())).collect();
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), namespace, resource);
            for object in api.list(&ListParams::default()).await?.items {
                let object = serde_json::to_value(&object).map_err(kube::Error::SerdeError)?;
                if scopes.iter().all(|s| e.in_scope(s, &object)) {
                    quantity::add_into(
                        &mut total,
                        &quantity::mask(&e.usage(&object, now), &matched),
                    );
                }
            }
            used.extend(total);
        }
        let used = quantity::mask(&used, hard.keys());
        Ok((hard, used))
    }

    /// Every namespaced resource served, in its preferred version.
    async fn namespaced_resources(&self) -> Result<Vec<ApiResource>, kube::Error> {
        let mut cached = self.discovery.lock().await;
        let fresh = cached.as_ref().is_some_and(|(at, _)| at.elapsed() < DISCOVERY_AGE);
        if !fresh {
            let discovery = Discovery::new(self.client.clone()).run_aggregated().await?;
            *cached = Some((tokio::time::Instant::now(), discovery));
        }
        let Some((_, discovery)) = cached.as_ref() else { return Ok(Vec::new()) };
        Ok(discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .filter(|(_, caps)| caps.scope == Scope::Namespaced)
            .map(|(resource, _)| resource)
            .collect())
    }
}
