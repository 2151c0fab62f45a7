//! A ReplicaSet's status (upstream's `replica_set_utils.go`): the counts of its pods,
//! the `ReplicaFailure` condition, and the write through `/status`.

use std::sync::Arc;

use keelson_api::k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use keelson_api::k8s_openapi::api::core::v1::Pod;
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_api::k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

use super::{Controller, Workload, message};
use crate::{pods, wire};

impl<K: Workload> Controller<K> {
    /// Writes `status` unless the object already has it (upstream's
    /// `updateReplicaSetStatus`: one retry on a fresh copy).
    pub(super) async fn write_status(
        &self,
        object: &K,
        mut status: ReplicaSetStatus,
    ) -> Result<(), kube::Error> {
        let view = object.view();
        status.observed_generation = view.metadata.generation;
        if view.status.as_ref().is_some_and(|s| wire::same_status(s, &status)) {
            return Ok(());
        }
        let namespace = view.metadata.namespace.clone().unwrap_or_default();
        let name = view.metadata.name.clone().unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        let mut current = object.clone();
        loop {
            match api
                .replace_status(&name, &PostParams::default(), &current.with_status(status.clone()))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(kube::Error::Api(s))
                    if s.code == 409
                        && current.meta().resource_version == object.meta().resource_version =>
                {
                    current = api.get(&name).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Upstream's `calculateStatus`: counts of `owned`, and the `ReplicaFailure` condition
/// set while `failure` stands and removed once managing succeeds.
pub fn status(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    failure: Option<&kube::Error>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.clone().unwrap_or_default();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let count = |f: &dyn Fn(&Pod) -> bool| owned.iter().filter(|p| f(p)).count() as i32;
    let fully_labeled = count(&|p| {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        template_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    });
    let mut status = rs.status.clone().unwrap_or_default();
    status.replicas = owned.len() as i32;
    status.fully_labeled_replicas = Some(fully_labeled);
    status.ready_replicas = Some(count(&|p| pods::is_ready(p)));
    status.available_replicas = Some(count(&|p| pods::is_available(p, min_ready, now)));
    let has_failure = status.conditions.iter().flatten().any(|c| c.type_ == "ReplicaFailure");
    match failure {
        Some(e) if !has_failure => {
            let diff = owned.len() as i64 - i64::from(spec.replicas.unwrap_or(1));
            let reason = match diff {
                d if d < 0 => "FailedCreate",
                d if d > 0 => "FailedDelete",
                _ => "",
            };
            status.conditions.get_or_insert_default().push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message(e)),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => {
            if let Some(cs) = status.conditions.as_mut() {
                cs.retain(|c| c.type_ != "ReplicaFailure");
            }
        }
        _ => {}
    }
    status
}
