//! The scheduler's side of the API: informers feeding the cache and the queue (upstream's
//! `eventhandlers.go`), the reads plugins need, and the writes the scheduler makes —
//! bindings, `PodScheduled` conditions and nominations, preemption's deletions, and
//! events — all with the scheduler's own identity.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use keelson_api::k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use keelson_api::k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
    ReplicationController, Service,
};
use keelson_api::k8s_openapi::api::policy::v1::PodDisruptionBudget;
use keelson_api::k8s_openapi::api::storage::v1::{CSINode, StorageClass};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use keelson_runtime::events::{EventType, Recorder};
use keelson_runtime::informer::{Change, Informer, Informers, Selectors};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::framework::{ClusterEvent, EventResource, Handle, Object, action, futures::BoxFuture};
use crate::plugins::Lister;
use crate::queue::{SchedulingQueue, pod_update_actions};
use crate::scheduler::{Failure, Reporter, Scheduler};
use crate::types::PodInfo;

/// The informers the scheduler reads.
pub struct Reads {
    pub pods: Arc<Informer<Pod>>,
    pub nodes: Arc<Informer<Node>>,
    pub namespaces: Arc<Informer<Namespace>>,
    pub pvcs: Arc<Informer<PersistentVolumeClaim>>,
    pub pvs: Arc<Informer<PersistentVolume>>,
    pub classes: Arc<Informer<StorageClass>>,
    pub csi_nodes: Arc<Informer<CSINode>>,
    pub pdbs: Arc<Informer<PodDisruptionBudget>>,
    pub services: Arc<Informer<Service>>,
    pub rcs: Arc<Informer<ReplicationController>>,
    pub replica_sets: Arc<Informer<ReplicaSet>>,
    pub stateful_sets: Arc<Informer<StatefulSet>>,
}

const BY_NAMESPACE: &str = "namespace";

fn namespace_of<K: kube::Resource>(o: &K) -> Vec<String> {
    o.meta().namespace.clone().into_iter().collect()
}

impl Reads {
    pub fn start(informers: &Informers) -> Self {
        // Finished pods hold no resources: upstream's scheduler does not watch them.
        let pods = informers.get_with::<Pod>(Selectors {
            labels: None,
            fields: Some("status.phase!=Succeeded,status.phase!=Failed".into()),
        });
        let reads = Reads {
            pods,
            nodes: informers.get(),
            namespaces: informers.get(),
            pvcs: informers.get(),
            pvs: informers.get(),
            classes: informers.get(),
            csi_nodes: informers.get(),
            pdbs: informers.get(),
            services: informers.get(),
            rcs: informers.get(),
            replica_sets: informers.get(),
            stateful_sets: informers.get(),
        };
        reads.pdbs.add_index(BY_NAMESPACE, namespace_of);
        reads.services.add_index(BY_NAMESPACE, namespace_of);
        reads.rcs.add_index(BY_NAMESPACE, namespace_of);
        reads.replica_sets.add_index(BY_NAMESPACE, namespace_of);
        reads.stateful_sets.add_index(BY_NAMESPACE, namespace_of);
        reads
    }

    pub async fn wait_synced(&self) {
        self.pods.wait_synced().await;
        self.nodes.wait_synced().await;
        self.namespaces.wait_synced().await;
        self.pvcs.wait_synced().await;
        self.pvs.wait_synced().await;
        self.classes.wait_synced().await;
        self.csi_nodes.wait_synced().await;
        self.pdbs.wait_synced().await;
        self.services.wait_synced().await;
        self.rcs.wait_synced().await;
        self.replica_sets.wait_synced().await;
        self.stateful_sets.wait_synced().await;
    }
}

fn selector_of(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector { match_labels: Some(labels.clone()), match_expressions: None }
}

fn selects_map(selector: Option<&BTreeMap<String, String>>, pod: &Pod) -> bool {
    selector.is_some_and(|s| {
        !s.is_empty()
            && keelson_core::labels::matches(Some(&selector_of(s)), pod.metadata.labels.as_ref())
    })
}

impl Lister for Reads {
    fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.pvcs.get(&format!("{namespace}/{name}"))
    }
    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.pvs.get(name)
    }
    fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(name)
    }
    fn csi_node(&self, name: &str) -> Option<Arc<CSINode>> {
        self.csi_nodes.get(name)
    }
    fn pdbs(&self, namespace: &str) -> Vec<Arc<PodDisruptionBudget>> {
        self.pdbs.by_index(BY_NAMESPACE, namespace)
    }
    fn default_selector(&self, pod: &Pod) -> Option<LabelSelector> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut labels = BTreeMap::new();
        let mut expressions: Vec<LabelSelectorRequirement> = Vec::new();
        for s in self.services.by_index(BY_NAMESPACE, ns) {
            let selector = s.spec.as_ref().and_then(|s| s.selector.as_ref());
            if selects_map(selector, pod) {
                labels.extend(selector.into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        for rc in self.rcs.by_index(BY_NAMESPACE, ns) {
            let selector = rc.spec.as_ref().and_then(|s| s.selector.as_ref());
            if selects_map(selector, pod) {
                labels.extend(selector.into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let mut add = |selector: Option<&LabelSelector>| {
            let Some(selector) = selector else { return };
            if keelson_core::labels::matches(Some(selector), pod.metadata.labels.as_ref()) {
                labels.extend(selector.match_labels.clone().unwrap_or_default());
                expressions.extend(selector.match_expressions.clone().unwrap_or_default());
            }
        };
        for rs in self.replica_sets.by_index(BY_NAMESPACE, ns) {
            add(rs.spec.as_ref().map(|s| &s.selector));
        }
        for ss in self.stateful_sets.by_index(BY_NAMESPACE, ns) {
            add(ss.spec.as_ref().map(|s| &s.selector));
        }
        if labels.is_empty() && expressions.is_empty() {
            return None;
        }
        Some(LabelSelector {
            match_labels: Some(labels).filter(|l| !l.is_empty()),
            match_expressions: Some(expressions).filter(|e| !e.is_empty()),
        })
    }
}

/// What plugins and the scheduling loop use to meet the cluster.
pub struct ApiHandle {
    client: Client,
    reads: Arc<Reads>,
    recorders: Mutex<HashMap<String, Recorder>>,
}

impl ApiHandle {
    pub fn new(client: Client, reads: Arc<Reads>) -> Self {
        ApiHandle { client, reads, recorders: Mutex::new(HashMap::new()) }
    }

    /// The event recorder of a profile: events name the scheduler's name as upstream's
    /// do.
    fn recorder(&self, scheduler_name: &str) -> Recorder {
        let mut recorders = self.recorders.lock().unwrap_or_else(|e| e.into_inner());
        recorders
            .entry(scheduler_name.to_owned())
            .or_insert_with(|| Recorder::new(self.client.clone(), scheduler_name, None))
            .clone()
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }
}

fn reference(pod: &PodInfo) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(pod.namespace.clone()),
        name: Some(pod.name.clone()),
        uid: Some(pod.uid.clone()),
        resource_version: pod.pod.metadata.resource_version.clone(),
        ..Default::default()
    }
}

impl Handle for ApiHandle {
    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        Some(self.reads.namespaces.get(namespace)?.metadata.labels.clone().unwrap_or_default())
    }
    fn select_node_for_claim(
        &self,
        namespace: &str,
        claim: &str,
        node: &str,
    ) -> BoxFuture<'static, Result<(), String>> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let (claim, node) = (claim.to_owned(), node.to_owned());
        Box::pin(async move {
            let patch = json!({ "metadata": { "annotations": { "volume.kubernetes.io/selected-node": node } } });
            api.patch(&claim, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
    fn lister(&self) -> &dyn Lister {
        self.reads.as_ref()
    }
}

impl Reporter for ApiHandle {
    fn bind(&self, pod: &PodInfo, node: &str) -> BoxFuture<'static, Result<(), String>> {
        let api = self.pods(&pod.namespace);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: Some(pod.uid.clone()),
                ..Default::default()
            },
            target: ObjectReference {
                kind: Some("Node".into()),
                name: Some(node.to_owned()),
                ..Default::default()
            },
        };
        let name = pod.name.clone();
        Box::pin(async move {
            api.create_subresource::<Binding, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        })
    }

    fn scheduled(&self, pod: &PodInfo, node: &str) {
        let message = format!("Successfully assigned {}/{} to {node}", pod.namespace, pod.name);
        self.recorder(pod.scheduler_name()).event(
            &reference(pod),
            EventType::Normal,
            "Scheduled",
            &message,
        );
    }

    fn failed(&self, pod: &PodInfo, failure: Failure) {
        self.recorder(pod.scheduler_name()).event(
            &reference(pod),
            EventType::Warning,
            "FailedScheduling",
            &failure.message,
        );
        // The condition, and the nomination, written only when they change.
        let status = pod.pod.status.as_ref();
        let current = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let same_condition = current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some(failure.reason)
                && c.message.as_deref() == Some(failure.message.as_str())
        });
        let nominated_now = status.and_then(|s| s.nominated_node_name.clone()).unwrap_or_default();
        let nomination_changes = failure.nominated.as_ref().is_some_and(|n| *n != nominated_now);
        if same_condition && !nomination_changes {
            return;
        }
        let now = keelson_api::k8s_openapi::jiff::Timestamp::now();
        let transition = match current {
            Some(c) if c.status == "False" => {
                c.last_transition_time.as_ref().map(|t| t.0.to_string())
            }
            _ => None,
        }
        .unwrap_or_else(|| now.to_string());
        let mut patch = json!({
            "status": {
                "conditions": [{
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": failure.reason,
                    "message": failure.message,
                    "lastProbeTime": null,
                    "lastTransitionTime": transition,
                }]
            }
        });
        if let Some(node) = failure.nominated.filter(|_| nomination_changes) {
            patch["status"]["nominatedNodeName"] =
                if node.is_empty() { serde_json::Value::Null } else { node.into() };
        }
        let api = self.pods(&pod.namespace);
        let name = pod.name.clone();
        tokio::spawn(async move {
            if let Err(e) =
                api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await
            {
                tracing::debug!(pod = %name, error = %e, "cannot update the pod's PodScheduled condition");
            }
        });
    }

    fn evict(&self, victim: &PodInfo, preemptor: &PodInfo, node: &str) {
        let api = self.pods(&victim.namespace);
        let name = victim.name.clone();
        let uid = victim.uid.clone();
        let scheduler = preemptor.scheduler_name().to_owned();
        let terminating = victim.pod.metadata.deletion_timestamp.is_some();
        let message = format!("Preempted by pod {} on node {node}", preemptor.uid);
        self.recorder(&scheduler).event(
            &reference(victim),
            EventType::Normal,
            "Preempted",
            &message,
        );
        tokio::spawn(async move {
            if !terminating {
                let patch = json!({ "status": { "conditions": [{
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "PreemptionByScheduler",
                    "message": format!("{scheduler}: preempting to accommodate a higher priority pod"),
                    "lastTransitionTime": keelson_api::k8s_openapi::jiff::Timestamp::now().to_string(),
                }]}});
                if let Err(e) = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await
                {
                    tracing::debug!(pod = %name, error = %e, "cannot mark the preemption victim");
                }
            }
            let params = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            if let Err(e) = api.delete(&name, &params).await {
                tracing::warn!(pod = %name, error = %e, "cannot delete a preemption victim");
            }
        });
    }
}

/// Node changes, as action bits (`nodeSchedulingPropertiesChange`).
fn node_update_actions(old: &Node, new: &Node) -> u32 {
    let mut actions = 0;
    let status = |n: &Node| n.status.clone().unwrap_or_default();
    if status(old).allocatable != status(new).allocatable {
        actions |= action::UPDATE_NODE_ALLOCATABLE;
    }
    if old.metadata.labels != new.metadata.labels {
        actions |= action::UPDATE_NODE_LABEL;
    }
    let spec = |n: &Node| n.spec.clone().unwrap_or_default();
    if spec(old).taints != spec(new).taints || spec(old).unschedulable != spec(new).unschedulable {
        actions |= action::UPDATE_NODE_TAINT;
    }
    let conditions = |n: &Node| {
        status(n)
            .conditions
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.type_, c.status))
            .collect::<Vec<_>>()
    };
    if conditions(old) != conditions(new) {
        actions |= action::UPDATE_NODE_CONDITION;
    }
    if old.metadata.annotations != new.metadata.annotations {
        actions |= action::UPDATE_NODE_ANNOTATION;
    }
    actions
}

fn assigned(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty())
}

/// Wires the informers to the cache and the queue.
pub fn connect(reads: &Reads, scheduler: &Arc<Scheduler>) {
    let s = scheduler.clone();
    reads.nodes.on_change(move |change| {
        let queue = &s.queue;
        match change {
            Change::Added(node) => {
                s.cache.lock().unwrap_or_else(|e| e.into_inner()).add_node(node.clone());
                queue.on_event(
                    ClusterEvent::new(EventResource::Node, action::ADD),
                    None,
                    Some(Object::Node(node.clone())),
                );
            }
            Change::Updated { old, new } => {
                s.cache.lock().unwrap_or_else(|e| e.into_inner()).add_node(new.clone());
                let actions = node_update_actions(old, new);
                if actions != 0 {
                    queue.on_event(
                        ClusterEvent::new(EventResource::Node, actions),
                        Some(Object::Node(old.clone())),
                        Some(Object::Node(new.clone())),
                    );
                }
            }
            Change::Deleted(node) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                s.cache.lock().unwrap_or_else(|e| e.into_inner()).remove_node(&name);
            }
        }
    });
    let s = scheduler.clone();
    reads.pods.on_change(move |change| handle_pod(&s, change));
    let queue = &scheduler.queue;
    reads.pvcs.on_change(requeue_on(queue.clone(), EventResource::PersistentVolumeClaim));
    reads.pvs.on_change(requeue_on(queue.clone(), EventResource::PersistentVolume));
    reads.classes.on_change(requeue_on(queue.clone(), EventResource::StorageClass));
    reads.csi_nodes.on_change(requeue_on(queue.clone(), EventResource::CsiNode));
}

/// A handler that tells the queue of any change of a kind only volume plugins read.
fn requeue_on<K>(
    queue: Arc<SchedulingQueue>,
    resource: EventResource,
) -> impl Fn(&Change<K>) + Send + Sync {
    move |change| {
        let actions = match change {
            Change::Added(_) => action::ADD,
            Change::Updated { .. } => action::UPDATE,
            Change::Deleted(_) => action::DELETE,
        };
        queue.on_event(ClusterEvent::new(resource, actions), None, None);
    }
}

fn handle_pod(s: &Scheduler, change: &Change<Pod>) {
    let responsible = |p: &Pod| {
        let name = p
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or(crate::DEFAULT_SCHEDULER_NAME);
        s.profiles.contains_key(name)
    };
    let info = |p: &Arc<Pod>| Arc::new(PodInfo::new(p.clone()));
    match change {
        Change::Added(pod) => {
            if assigned(pod) {
                let pod = info(pod);
                s.cache.lock().unwrap_or_else(|e| e.into_inner()).put_pod(pod.clone());
                s.queue.on_event(
                    ClusterEvent::new(EventResource::AssignedPod, action::ADD),
                    None,
                    Some(Object::Pod(pod)),
                );
            } else if responsible(pod) && pod.metadata.deletion_timestamp.is_none() {
                s.queue.add(info(pod));
            }
        }
        Change::Updated { old, new } => {
            let uid = new.metadata.uid.clone().unwrap_or_default();
            // What was computed of the old version, from the cache (bound or assumed)
            // or the queue; reused when the update changes none of it.
            let known = s.cache.lock().unwrap_or_else(|e| e.into_inner()).pod(&uid).map(|(p, _)| p);
            let old_info = known.or_else(|| s.queue.info(&uid)).unwrap_or_else(|| info(old));
            let new_info = Arc::new(old_info.updated(new.clone()));
            if assigned(new) {
                if !assigned(old) {
                    s.queue.delete(&new_info.uid);
                }
                s.cache.lock().unwrap_or_else(|e| e.into_inner()).put_pod(new_info.clone());
                let actions = if assigned(old) {
                    pod_update_actions(&old_info, &new_info)
                } else {
                    action::ADD
                };
                s.queue.on_event(
                    ClusterEvent::new(EventResource::AssignedPod, actions),
                    Some(Object::Pod(old_info)),
                    Some(Object::Pod(new_info)),
                );
            } else if responsible(new) {
                if new.metadata.deletion_timestamp.is_some() {
                    s.queue.delete(&new_info.uid);
                } else {
                    s.queue.update(new_info);
                }
            }
        }
        Change::Deleted(pod) => {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            s.queue.delete(&uid);
            let held = s.cache.lock().unwrap_or_else(|e| e.into_inner()).pod(&uid).is_some();
            if held {
                s.cache.lock().unwrap_or_else(|e| e.into_inner()).remove_pod(&uid);
                s.queue.on_event(
                    ClusterEvent::new(EventResource::AssignedPod, action::DELETE),
                    Some(Object::Pod(info(pod))),
                    None,
                );
            }
        }
    }
}
