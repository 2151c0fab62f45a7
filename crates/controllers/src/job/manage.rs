//! Creating and deleting a Job's pods (upstream's `manageJob`, `deleteJobPods`,
//! `deleteActivePods` and the Indexed helpers).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use keelson_api::k8s_openapi::api::batch::v1::Job;
use keelson_api::k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec,
};
use keelson_api::k8s_openapi::jiff::Timestamp;
use keelson_runtime::events::EventType;
use kube::api::{Api, DeleteParams, PostParams};

use super::policy::COMPLETION_INDEX;
use super::sync::{SyncCtx, is_indexed, only_replace_failed, pod_key, suspended, valid_index};
use super::{
    Controller, MAX_POD_CREATE_DELETE_PER_SYNC, MAX_POD_FAILURE_BACKOFF, TRACKING_FINALIZER,
    pod_failure_backoff, remove_finalizer,
};
use crate::pods::{self, controller_ref};
use crate::replicaset::message;

type Outcome = (i32, Option<Duration>, Option<kube::Error>);

impl Controller {
    /// Brings the active pods to what the Job wants: (active now, when to look again,
    /// the first error).
    pub(super) async fn manage(&self, ctx: &mut SyncCtx) -> Outcome {
        let job = ctx.job.clone();
        let spec = job.spec.clone().unwrap_or_default();
        let active = ctx.active.len() as i32;
        if suspended(&job) {
            let victims = ctx.active.clone();
            return self.delete_pods(ctx, victims, active).await;
        }
        let parallelism = spec.parallelism.unwrap_or(1);
        let want = match spec.completions {
            // Once one pod succeeded, what runs may finish; nothing new starts.
            None if ctx.succeeded > 0 => active,
            None => parallelism,
            Some(completions) => (completions - ctx.succeeded).min(parallelism).max(0),
        };
        let mut victims = self.pods_for_removal(&job, &ctx.active, (active - want).max(0) as usize);
        victims.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
        if !victims.is_empty() {
            return self.delete_pods(ctx, victims, active).await;
        }
        let terminating = if only_replace_failed(&job) { ctx.terminating } else { 0 };
        let diff = want - terminating - active;
        if diff <= 0 {
            return (active, None, None);
        }
        let remaining = ctx.new_backoff.remaining(
            Timestamp::now(),
            pod_failure_backoff(),
            MAX_POD_FAILURE_BACKOFF,
        );
        if remaining > Duration::ZERO {
            return (active, Some(remaining), None);
        }
        let mut diff = (diff as usize).min(MAX_POD_CREATE_DELETE_PER_SYNC);
        let mut indexes = Vec::new();
        if is_indexed(&job) {
            indexes = first_pending_indexes(ctx, diff, spec.completions.unwrap_or(0));
            diff = indexes.len();
        }
        self.expectations.expect_creations(&ctx.key, diff);
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let reference = Self::reference(&job);
        let owner = controller_ref("batch/v1", "Job", &job.metadata);
        let mut template = spec.template.clone();
        if is_indexed(&job) {
            add_index_env(&mut template);
        }
        let next = std::sync::Mutex::new(indexes.into_iter());
        let (created, failed) = pods::slow_start_batch(diff, || {
            let index = next.lock().map(|mut n| n.next()).unwrap_or_default();
            let mut pod = pods::from_template(&template, owner.clone(), &namespace);
            let finalizers = pod.metadata.finalizers.get_or_insert_default();
            if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
                finalizers.push(TRACKING_FINALIZER.to_owned());
            }
            if let Some(index) = index {
                let name = job.metadata.name.clone().unwrap_or_default();
                set_index(&mut pod, &name, index);
            }
            let api = &api;
            let reference = &reference;
            async move {
                match api.create(&PostParams::default(), &pod).await {
                    Ok(pod) => {
                        let name = pod.metadata.name.unwrap_or_default();
                        let text = format!("Created pod: {name}");
                        self.recorder.event(
                            reference,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &text,
                        );
                        Ok(())
                    }
                    Err(e) if crate::namespaces::namespace_gone(&e) => Ok(()),
                    Err(e) => {
                        let text = format!("Error creating: {}", message(&e));
                        self.recorder.event(reference, EventType::Warning, "FailedCreate", &text);
                        Err(e)
                    }
                }
            }
        })
        .await;
        if failed.is_some() {
            for _ in created..diff {
                self.expectations.creation_observed(&ctx.key);
            }
        }
        (active + created as i32, None, failed)
    }

    /// Deletes `victims` after taking their finalizer off, so they are never counted
    /// (upstream's `deleteJobPods`).
    async fn delete_pods(&self, ctx: &mut SyncCtx, victims: Vec<Arc<Pod>>, active: i32) -> Outcome {
        self.expectations.expect_deletions(&ctx.key, victims.iter().map(|p| pod_key(p)));
        let (key, job) = (&ctx.key, &ctx.job);
        let deletes = victims.iter().map(|pod| async move {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            let result = match remove_finalizer(&api, pod).await {
                Ok(()) => self.delete_pod(job, pod).await,
                Err(e) => Err(e),
            };
            if result.is_err() {
                self.expectations.deletion_observed(key, &pod_key(pod));
            }
            (pods::is_ready(pod), result)
        });
        let results = futures_util::future::join_all(deletes).await;
        let (mut deleted, mut error) = (0, None);
        for (ready, result) in results {
            match result {
                Ok(()) => {
                    deleted += 1;
                    ctx.terminating += 1;
                    ctx.ready -= i32::from(ready);
                }
                Err(e) => error = Some(e),
            }
        }
        (active - deleted, None, error)
    }

    /// Deletes the active pods of a finished Job, keeping their finalizers (upstream's
    /// `deleteActivePods`): (ready ones deleted, deleted, the first error).
    pub(super) async fn delete_active(
        &self,
        job: &Job,
        active: &[Arc<Pod>],
    ) -> (i32, i32, Option<kube::Error>) {
        let deletes = active
            .iter()
            .map(|pod| async move { (pods::is_ready(pod), self.delete_pod(job, pod).await) });
        let (mut ready, mut deleted, mut error) = (0, 0, None);
        for (was_ready, result) in futures_util::future::join_all(deletes).await {
            match result {
                Ok(()) => {
                    deleted += 1;
                    ready += i32::from(was_ready);
                }
                Err(e) => error = Some(e),
            }
        }
        (ready, deleted, error)
    }

    /// Deletes one pod with upstream's events; a pod already gone counts as deleted.
    async fn delete_pod(&self, job: &Job, pod: &Pod) -> Result<(), kube::Error> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let reference = Self::reference(job);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                let text = format!("Deleted pod: {name}");
                self.recorder.event(&reference, EventType::Normal, "SuccessfulDelete", &text);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => {
                let text = format!("Error deleting: {}", message(&e));
                self.recorder.event(&reference, EventType::Warning, "FailedDelete", &text);
                Err(e)
            }
        }
    }

    /// The active pods to delete: for an Indexed Job, first those with a duplicate or
    /// invalid index, then the least advanced (upstream's `activePodsForRemoval`).
    fn pods_for_removal(&self, job: &Job, active: &[Arc<Pod>], at_least: usize) -> Vec<Arc<Pod>> {
        let (mut remove, mut left) = (Vec::new(), Vec::new());
        if is_indexed(job) {
            let mut seen = BTreeSet::new();
            let mut sorted = active.to_vec();
            sorted.sort_by_key(|p| !pods::is_ready(p));
            for pod in sorted {
                match valid_index(job, &pod) {
                    Some(ix) if seen.insert(ix) => left.push(pod),
                    _ => remove.push(pod),
                }
            }
        } else {
            left = active.to_vec();
        }
        if remove.len() < at_least {
            pods::rank_for_deletion(&mut left, &[], Timestamp::now());
            let more = at_least - remove.len();
            remove.extend(left.into_iter().take(more));
        }
        remove
    }
}

/// The lowest `count` indexes neither succeeded nor held by an active pod (upstream's
/// `firstPendingIndexes`).
fn first_pending_indexes(ctx: &SyncCtx, count: usize, completions: i32) -> Vec<i32> {
    let held: BTreeSet<i32> = ctx.active.iter().filter_map(|p| valid_index(&ctx.job, p)).collect();
    (0..completions)
        .filter(|i| !ctx.succeeded_indexes.contains(i) && !held.contains(i))
        .take(count)
        .collect()
}

/// The index annotation and label, hostname and name prefix of an Indexed pod.
fn set_index(pod: &mut Pod, job_name: &str, index: i32) {
    let value = index.to_string();
    let meta = &mut pod.metadata;
    meta.annotations.get_or_insert_default().insert(COMPLETION_INDEX.into(), value.clone());
    meta.labels.get_or_insert_default().insert(COMPLETION_INDEX.into(), value);
    let prefix = format!("{job_name}-{index}-");
    // Upstream's `podGenerateNameWithIndex`: the job name is cut to keep 63 characters.
    let keep = 63usize.saturating_sub(prefix.len() - job_name.len());
    meta.generate_name = Some(if prefix.len() > 63 {
        format!("{}-{index}-", &job_name[..keep.min(job_name.len())])
    } else {
        prefix
    });
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(format!("{job_name}-{index}"));
    }
}

/// `JOB_COMPLETION_INDEX` from the index annotation in every container (upstream's
/// `addCompletionIndexEnvVariables`).
fn add_index_env(template: &mut PodTemplateSpec) {
    let Some(spec) = template.spec.as_mut() else { return };
    let add = |c: &mut Container| {
        let env = c.env.get_or_insert_default();
        if env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
            return;
        }
        env.push(EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                }),
                ..EnvVarSource::default()
            }),
        });
    };
    spec.containers.iter_mut().for_each(add);
    spec.init_containers.iter_mut().flatten().for_each(add);
}
