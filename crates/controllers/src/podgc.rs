//! `pod-garbage-collector-controller` (upstream's `pkg/controller/podgc`): every
//! 20 seconds, force-deletes (grace period 0) what no kubelet will ever finish —
//!
//! - finished pods beyond `--terminated-pod-gc-threshold` (12,500; 0 keeps all), evicted
//!   ones first, then the oldest;
//! - terminating pods on a node that is not ready and carries the
//!   `node.kubernetes.io/out-of-service` taint;
//! - pods bound to a node that no longer exists, once the node has stayed absent for 40
//!   seconds and a fresh read confirms it — marked `Failed` with the `DisruptionTarget`
//!   condition (`DeletionByPodGC`, "PodGC: node no longer exists") first;
//! - terminating pods never bound to a node.
//!
//! A pod not yet finished is marked `Failed` before its delete, as upstream does.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use keelson_api::k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use keelson_runtime::controller::{Context, StartFuture};
use keelson_runtime::informer::Informer;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::time::Instant;

use crate::nodeutil::{self, condition, node_of};

pub const NAME: &str = "pod-garbage-collector-controller";
pub const SERVICE_ACCOUNT: &str = "pod-garbage-collector";
const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// kube-controller-manager's `--terminated-pod-gc-threshold`, and upstream's fixed
/// periods (settable, as upstream's own tests set them).
#[derive(Clone, Debug)]
pub struct Settings {
    pub terminated_pod_threshold: usize,
    pub period: Duration,
    pub quarantine: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            terminated_pod_threshold: 12_500,
            period: Duration::from_secs(20),
            quarantine: Duration::from_secs(40),
        }
    }
}

pub fn starter(settings: Settings) -> impl Fn(Context) -> StartFuture + Send + Sync {
    move |context| Box::pin(run(context, settings.clone()))
}

struct Collector {
    client: Client,
    settings: Settings,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    /// Missing nodes and when they may be checked (the quarantine).
    missing: HashMap<String, Instant>,
}

async fn run(context: Context, settings: Settings) -> keelson_runtime::Result<()> {
    let pods = context.informers.get::<Pod>();
    let nodes = context.informers.get::<Node>();
    pods.wait_synced().await;
    nodes.wait_synced().await;
    let mut collector = Collector {
        client: context.client.clone(),
        settings,
        pods,
        nodes,
        missing: HashMap::new(),
    };
    let mut stop = context.stop.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(collector.settings.period) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        collector.collect().await;
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Upstream's `byEvictionAndCreationTimestamp`: evicted first, then oldest, then name.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let evicted = |p: &Pod| {
        phase(p) == "Failed"
            && p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
    };
    evicted(b)
        .cmp(&evicted(a))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a).cmp(&created(b))
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

impl Collector {
    async fn collect(&mut self) {
        let pods = self.pods.list();
        if self.settings.terminated_pod_threshold > 0 {
            let mut finished: Vec<&Arc<Pod>> = pods.iter().filter(|p| is_finished(p)).collect();
            let excess = finished.len().saturating_sub(self.settings.terminated_pod_threshold);
            finished.sort_by(|a, b| deletion_order(a, b));
            for pod in finished.into_iter().take(excess) {
                self.fail_and_delete(pod, None).await;
            }
        }
        let mut out_of_service: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .filter(|p| {
                self.nodes.get(node_of(p)).is_some_and(|node| {
                    let ready = condition(&node, "Ready").is_some_and(|c| c.status == "True");
                    let taints =
                        node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
                    !ready && taints.iter().any(|t| t.key == OUT_OF_SERVICE)
                })
            })
            .collect();
        out_of_service.sort_by(|a, b| deletion_order(a, b));
        for pod in out_of_service {
            self.fail_and_delete(pod, None).await;
        }
        self.collect_orphans(&pods).await;
        for pod in
            pods.iter().filter(|p| p.metadata.deletion_timestamp.is_some() && node_of(p).is_empty())
        {
            self.fail_and_delete(pod, None).await;
        }
    }

    /// Upstream's `gcOrphaned`: pods of nodes absent for the quarantine and confirmed
    /// gone by a fresh read.
    async fn collect_orphans(&mut self, pods: &[Arc<Pod>]) {
        let now = Instant::now();
        for pod in pods {
            let node = node_of(pod);
            if !node.is_empty() && self.nodes.get(node).is_none() {
                self.missing.entry(node.to_owned()).or_insert(now + self.settings.quarantine);
            }
        }
        let due: Vec<String> =
            self.missing.iter().filter(|(_, at)| **at <= now).map(|(n, _)| n.clone()).collect();
        let api: Api<Node> = Api::all(self.client.clone());
        let mut gone = HashSet::new();
        for name in due {
            self.missing.remove(&name);
            if self.nodes.get(&name).is_some() {
                continue;
            }
            match api.get_opt(&name).await {
                Ok(None) => {
                    gone.insert(name);
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::warn!(node = name, error = %e, "cannot tell whether the node exists")
                }
            }
        }
        for pod in pods.iter().filter(|p| gone.contains(node_of(p))) {
            let condition = PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("DeletionByPodGC".into()),
                message: Some("PodGC: node no longer exists".into()),
                last_transition_time: Some(nodeutil::now()),
                ..Default::default()
            };
            self.fail_and_delete(pod, Some(condition)).await;
        }
    }

    /// Upstream's `markFailedAndDeletePodWithCondition`: `Failed` (with `condition`) if
    /// not finished, then deleted with grace period 0; logged, never fatal.
    async fn fail_and_delete(&self, pod: &Pod, condition: Option<PodCondition>) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        tracing::info!(pod = format!("{namespace}/{name}"), "PodGC is force deleting the pod");
        if !is_finished(pod) {
            let mut status = json!({ "phase": "Failed" });
            if let Some(condition) = condition {
                status["conditions"] = json!([condition]);
            }
            let patch = json!({ "metadata": { "uid": pod.metadata.uid }, "status": status });
            match api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return,
                Err(e) => {
                    tracing::warn!(pod = name, error = %e, "cannot mark the pod failed");
                    return;
                }
            }
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => {}
            Err(e) => tracing::warn!(pod = name, error = %e, "cannot delete the pod"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, created: &str, phase: &str, reason: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name, "creationTimestamp": created },
            "status": { "phase": phase, "reason": reason },
        }))
        .expect("a pod")
    }

    #[test]
    fn evicted_pods_go_first_then_the_oldest() {
        let mut pods = [
            pod("new", "2026-01-03T00:00:00Z", "Succeeded", None),
            pod("old", "2026-01-01T00:00:00Z", "Failed", None),
            pod("evicted", "2026-01-05T00:00:00Z", "Failed", Some("Evicted")),
            pod("also-old", "2026-01-01T00:00:00Z", "Succeeded", None),
        ];
        pods.sort_by(deletion_order);
        let names: Vec<_> = pods.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
        assert_eq!(names, ["evicted", "also-old", "old", "new"]);
    }
}
