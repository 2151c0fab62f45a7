//! One pass of a namespace's deletion (upstream's `namespacedResourcesDeleter`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use keelson_api::k8s_openapi::api::core::v1::{Namespace, Pod};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_runtime::controller::Action;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};

use super::FINALIZER;
use super::conditions::Updater;
use crate::discovery::{self, Served};

/// How long content held by finalizers is expected to take (upstream's
/// `finalizerEstimateSeconds`).
const FINALIZER_ESTIMATE: i64 = 15;

/// Why a pass did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{}", .0.join(", "))]
    Content(Vec<String>),
}

pub struct Deleter {
    client: Client,
}

/// What remains of one resource after its deletion was asked for.
#[derive(Default)]
struct Remaining {
    /// Seconds until it is expected gone (0: not expected to go by itself).
    estimate: i64,
    count: usize,
    finalizers: BTreeMap<String, usize>,
    /// What went wrong deleting it, if anything.
    error: Option<String>,
}

fn is_gone_or_unsupported(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 405)
}

impl Deleter {
    pub fn new(client: Client) -> Self {
        Deleter { client }
    }

    /// Deletes what is in namespace `name` if it is being deleted, then its finalizer.
    pub async fn delete(&self, name: &str) -> Result<Action, Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let Some(mut namespace) = api.get_opt(name).await? else {
            return Ok(Action::AwaitChange);
        };
        let Some(deleted_at) = namespace.metadata.deletion_timestamp.clone() else {
            return Ok(Action::AwaitChange);
        };
        let status = namespace.status.get_or_insert_default();
        if status.phase.as_deref() != Some("Terminating") {
            status.phase = Some("Terminating".into());
            namespace = match api.replace_status(name, &PostParams::default(), &namespace).await {
                Ok(ns) => ns,
                Err(e) if is_gone_or_unsupported(&e) => return Ok(Action::AwaitChange),
                Err(e) => return Err(e.into()),
            };
        }
        let finalizers = namespace.spec.as_ref().and_then(|s| s.finalizers.clone());
        if !finalizers.iter().flatten().any(|f| f == FINALIZER) {
            return Ok(Action::AwaitChange);
        }
        let estimate = self.delete_all_content(&api, namespace.clone(), &deleted_at).await?;
        if estimate > 0 {
            return Ok(Action::RequeueAfter(Duration::from_secs((estimate / 2 + 1) as u64)));
        }
        let mut finalized = namespace;
        let rest: BTreeSet<String> =
            finalizers.into_iter().flatten().filter(|f| f != FINALIZER).collect();
        finalized.spec.get_or_insert_default().finalizers = Some(rest.into_iter().collect());
        match api.replace_subresource("finalize", name, &PostParams::default(), &finalized).await {
            Ok(_) => Ok(Action::AwaitChange),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::AwaitChange),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every namespaced resource of `namespace`; returns the estimate of
    /// seconds until what remains is gone, and records the conditions.
    async fn delete_all_content(
        &self,
        api: &Api<Namespace>,
        mut namespace: Namespace,
        deleted_at: &Time,
    ) -> Result<i64, Error> {
        let name = namespace.name_any();
        let mut errors = Vec::new();
        let mut conditions = Updater::default();
        let resources: Vec<Served> = match discovery::resources(&self.client).await {
            Ok(all) => all.into_iter().filter(|r| r.namespaced && r.supports("delete")).collect(),
            Err(e) => {
                conditions.discovery_failed(0, &e.to_string());
                errors.push(e.to_string());
                Vec::new()
            }
        };
        let mut estimate = 0;
        let mut remaining = BTreeMap::new();
        let mut finalizers = BTreeMap::new();
        let is_pods = |r: &Served| r.resource.group.is_empty() && r.resource.plural == "pods";
        // Pods first (upstream's OrderedNamespaceDeletion): nothing they use is deleted
        // while they run.
        let (pods, others): (Vec<&Served>, Vec<&Served>) =
            resources.iter().partition(|r| is_pods(r));
        for (phase, resources) in [pods, others].into_iter().enumerate() {
            for resource in resources {
                let left = self.delete_resource(resource, &name, deleted_at).await;
                estimate = estimate.max(left.estimate);
                if left.count > 0 {
                    remaining.insert(resource.group_resource(), left.count);
                }
                for (f, n) in left.finalizers {
                    *finalizers.entry(f).or_default() += n;
                }
                if let Some(e) = left.error {
                    conditions.content_deletion_failed(e.clone());
                    errors.push(if phase == 0 {
                        format!("failed to delete pods for namespace: {name}, err: {e}")
                    } else {
                        e
                    });
                }
            }
            if phase == 0 && !remaining.is_empty() {
                break;
            }
        }
        conditions.content_totals(&remaining, &finalizers);
        if conditions.update(namespace.status.get_or_insert_default())
            && let Err(e) = api.replace_status(&name, &PostParams::default(), &namespace).await
        {
            tracing::warn!(namespace = name, error = %e, "cannot update the namespace's conditions");
        }
        if errors.is_empty() { Ok(estimate) } else { Err(Error::Content(errors)) }
    }

    /// Deletes every object of one resource in `namespace` (deletecollection where
    /// served, else one by one) and says what remains.
    async fn delete_resource(
        &self,
        served: &Served,
        namespace: &str,
        deleted_at: &Time,
    ) -> Remaining {
        self.try_delete_resource(served, namespace, deleted_at)
            .await
            .unwrap_or_else(|error| Remaining { error: Some(error), ..Remaining::default() })
    }

    async fn try_delete_resource(
        &self,
        served: &Served,
        namespace: &str,
        deleted_at: &Time,
    ) -> Result<Remaining, String> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &served.resource);
        let estimate = if served.resource.group.is_empty() && served.resource.plural == "pods" {
            self.pod_estimate(namespace, deleted_at).await.map_err(|e| e.to_string())?
        } else {
            0
        };
        let background = DeleteParams::background();
        let mut collected = false;
        if served.supports("deletecollection") {
            match api.delete_collection(&background, &ListParams::default()).await {
                Ok(_) => collected = true,
                Err(e) if is_gone_or_unsupported(&e) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        if !served.supports("list") {
            return Ok(Remaining { estimate, ..Remaining::default() });
        }
        let list = |api: Api<DynamicObject>| async move {
            match api.list_metadata(&ListParams::default()).await {
                Ok(list) => Ok(Some(list.items)),
                Err(e) if is_gone_or_unsupported(&e) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        };
        if !collected {
            for item in list(api.clone()).await?.unwrap_or_default() {
                match api.delete(&item.name_any(), &background).await {
                    Ok(_) => {}
                    Err(e) if is_gone_or_unsupported(&e) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        let Some(left) = list(api).await? else {
            return Ok(Remaining { estimate, ..Remaining::default() });
        };
        if left.is_empty() {
            return Ok(Remaining::default());
        }
        let mut finalizers = BTreeMap::new();
        for item in &left {
            for f in item.finalizers() {
                *finalizers.entry(f.clone()).or_default() += 1;
            }
        }
        let count = left.len();
        if estimate != 0 {
            return Ok(Remaining { estimate, count, finalizers, error: None });
        }
        if !finalizers.is_empty() {
            return Ok(Remaining { estimate: FINALIZER_ESTIMATE, count, finalizers, error: None });
        }
        let error = format!(
            "unexpected items still remain in namespace: {namespace} for gvr: {}",
            served.gvr()
        );
        Ok(Remaining { count, error: Some(error), ..Remaining::default() })
    }

    /// The longest grace period of the namespace's running pods, or 0 once that long
    /// has passed since the namespace's deletion.
    async fn pod_estimate(&self, namespace: &str, deleted_at: &Time) -> Result<i64, kube::Error> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let estimate = pods
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .filter_map(|p| p.spec.as_ref()?.termination_grace_period_seconds)
            .max()
            .unwrap_or(0);
        let elapsed =
            keelson_api::k8s_openapi::jiff::Timestamp::now().duration_since(deleted_at.0).as_secs();
        Ok(if elapsed >= estimate { 0 } else { estimate })
    }
}
