//! `taint-eviction-controller` (upstream's `pkg/controller/tainteviction`): deletes the
//! pods of a node with `NoExecute` taints they do not tolerate — at once, or when the
//! shortest `tolerationSeconds` of the tolerations they use has passed since the
//! controller saw the taint (never, if one of them has none). Before the delete the pod
//! gets the `DisruptionTarget` condition (`DeletionByTaintManager`); events
//! `TaintManagerEviction` say "Marking for deletion Pod …" and, when the taint goes or
//! the pod comes to tolerate it first, "Cancelling deletion of Pod …".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keelson_api::k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint, Toleration};
use keelson_core::taints::matching_tolerations;
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::events::{EventType, Recorder};
use keelson_runtime::informer::{Change, Informer, Key, key_of};
use keelson_runtime::queue::WorkQueue;

use crate::lock;
use crate::nodeutil;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use tokio::time::Instant;

pub const NAME: &str = "taint-eviction-controller";
const WORKERS: usize = 8;

/// When a pod's eviction was planned, and when it is due.
#[derive(Clone, Copy, Debug)]
struct Scheduled {
    created: Instant,
    due: Instant,
}

/// The queue's work: a node or a pod to look at again, or an eviction that may be due.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Work {
    Node(String),
    Pod(Key),
    Evict(Key),
}

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

struct Controller {
    client: Client,
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
    /// Each tainted node's `NoExecute` taints.
    tainted: Mutex<HashMap<String, Vec<Taint>>>,
    scheduled: Mutex<HashMap<Key, Scheduled>>,
    queue: WorkQueue<Work>,
    recorder: Recorder,
}

fn node_of(pod: &Pod) -> Option<&str> {
    Some(nodeutil::node_of(pod)).filter(|n| !n.is_empty())
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let nodes = context.informers.get::<Node>();
    let pods = context.informers.get::<Pod>();
    nodeutil::index_pods_by_node(&pods);
    let controller = Arc::new(Controller {
        recorder: Recorder::new(context.client.clone(), NAME, None),
        client: context.client.clone(),
        nodes: nodes.clone(),
        pods: pods.clone(),
        tainted: Mutex::new(HashMap::new()),
        scheduled: Mutex::new(HashMap::new()),
        queue: context.queue(),
    });
    {
        let queue = controller.queue.clone();
        nodes.on_change(move |change| {
            let node = change.object();
            if let Change::Updated { old, new } = change {
                let taints = |n: &Node| {
                    n.spec.as_ref().map(|s| no_execute(s.taints.as_deref().unwrap_or_default()))
                };
                if taints(old) == taints(new) {
                    return;
                }
            }
            queue.add(Work::Node(node.metadata.name.clone().unwrap_or_default()));
        });
    }
    {
        let queue = controller.queue.clone();
        pods.on_change(move |change| {
            if let Change::Updated { old, new } = change {
                let same = |p: &Pod| {
                    (node_of(p).map(str::to_owned), p.spec.as_ref().map(|s| s.tolerations.clone()))
                };
                if same(old) == same(new) {
                    return;
                }
            }
            queue.add(Work::Pod(key_of(&**change.object())));
        });
    }
    nodes.wait_synced().await;
    pods.wait_synced().await;
    let queue = controller.queue.clone();
    run_workers(&context, queue, WORKERS, move |work: Work| {
        let c = controller.clone();
        async move { c.work(work).await }
    })
    .await;
    Ok(())
}

fn no_execute(taints: &[Taint]) -> Vec<Taint> {
    taints.iter().filter(|t| t.effect == "NoExecute").cloned().collect()
}

/// Upstream's `getMinTolerationTime`: 0 for none or a non-positive one, `None` (never)
/// when no toleration sets `tolerationSeconds`, else the least.
fn min_toleration(tolerations: &[&Toleration]) -> Option<Duration> {
    if tolerations.is_empty() {
        return Some(Duration::ZERO);
    }
    let mut least: Option<i64> = None;
    for t in tolerations {
        if let Some(seconds) = t.toleration_seconds {
            if seconds <= 0 {
                return Some(Duration::ZERO);
            }
            least = Some(least.map_or(seconds, |l| l.min(seconds)));
        }
    }
    least.map(|s| Duration::from_secs(s.unsigned_abs()))
}

impl Controller {
    async fn work(&self, work: Work) -> Result<Action, kube::Error> {
        match work {
            Work::Node(name) => self.node_changed(&name),
            Work::Pod(key) => self.pod_changed(&key),
            Work::Evict(key) => return self.evict_if_due(&key).await,
        }
        Ok(Action::AwaitChange)
    }

    fn node_changed(&self, name: &str) {
        let taints = match self.nodes.get(name) {
            None => {
                lock(&self.tainted).remove(name);
                return;
            }
            Some(node) => {
                no_execute(node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default())
            }
        };
        if taints.is_empty() {
            lock(&self.tainted).remove(name);
        } else {
            lock(&self.tainted).insert(name.to_owned(), taints.clone());
        }
        for pod in self.pods.by_index(nodeutil::NODE_INDEX, name) {
            let key = key_of(&*pod);
            if taints.is_empty() {
                self.cancel(&key);
            } else {
                self.plan(
                    &key,
                    pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default(),
                    &taints,
                );
            }
        }
    }

    fn pod_changed(&self, key: &str) {
        let Some(pod) = self.pods.get(key) else {
            self.cancel(key);
            return;
        };
        let Some(node) = node_of(&pod) else { return };
        let Some(taints) = lock(&self.tainted).get(node).cloned() else { return };
        self.plan(
            key,
            pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default(),
            &taints,
        );
    }

    /// Upstream's `processPodOnNode`.
    fn plan(&self, key: &str, tolerations: &[Toleration], taints: &[Taint]) {
        let now = Instant::now();
        if taints.is_empty() {
            self.cancel(key);
            return;
        }
        let (all, used) = matching_tolerations(taints, tolerations);
        if !all {
            self.cancel(key);
            self.schedule(key, Scheduled { created: now, due: now });
            return;
        }
        let Some(min) = min_toleration(&used) else {
            self.cancel(key);
            return;
        };
        let mut created = now;
        let existing = lock(&self.scheduled).get(key).copied();
        if let Some(existing) = existing {
            created = existing.created;
            if created + min < now + min {
                return;
            }
            self.cancel(key);
        }
        self.schedule(key, Scheduled { created, due: created + min });
    }

    fn schedule(&self, key: &str, when: Scheduled) {
        lock(&self.scheduled).insert(key.to_owned(), when);
        let delay = when.due.saturating_duration_since(Instant::now());
        self.queue.add_after(Work::Evict(key.to_owned()), delay);
    }

    fn cancel(&self, key: &str) {
        if lock(&self.scheduled).remove(key).is_some() {
            self.event(key, None, &format!("Cancelling deletion of Pod {key}"));
        }
    }

    fn event(&self, key: &str, uid: Option<String>, message: &str) {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            uid,
            ..Default::default()
        };
        self.recorder.event(&reference, EventType::Normal, "TaintManagerEviction", message);
    }

    /// The eviction of `key`, if it is still planned and due.
    async fn evict_if_due(&self, key: &str) -> Result<Action, kube::Error> {
        let due = lock(&self.scheduled).get(key).map(|s| s.due);
        match due {
            None => return Ok(Action::AwaitChange),
            Some(due) if due > Instant::now() => {
                return Ok(Action::RequeueAfter(due.saturating_duration_since(Instant::now())));
            }
            Some(_) => {}
        }
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let Some(pod) = api.get_opt(name).await? else {
            lock(&self.scheduled).remove(key);
            return Ok(Action::AwaitChange);
        };
        self.event(key, pod.metadata.uid.clone(), &format!("Marking for deletion Pod {key}"));
        let targeted =
            pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
                c.iter().any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
            });
        if !targeted {
            let patch = json!({
                "metadata": { "uid": pod.metadata.uid },
                "status": { "conditions": [{
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "DeletionByTaintManager",
                    "message": "Taint manager: deleting due to NoExecute taint",
                    "lastTransitionTime": nodeutil::now(),
                }]},
            });
            api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
        lock(&self.scheduled).remove(key);
        Ok(Action::AwaitChange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toleration(seconds: Option<i64>) -> Toleration {
        Toleration { toleration_seconds: seconds, ..Default::default() }
    }

    #[test]
    fn the_least_toleration_decides_and_none_means_never() {
        let (a, b, never) = (toleration(Some(30)), toleration(Some(10)), toleration(None));
        assert_eq!(min_toleration(&[&a, &b, &never]), Some(Duration::from_secs(10)));
        assert_eq!(min_toleration(&[&never]), None);
        assert_eq!(min_toleration(&[]), Some(Duration::ZERO));
        assert_eq!(min_toleration(&[&a, &toleration(Some(0))]), Some(Duration::ZERO));
    }
}
