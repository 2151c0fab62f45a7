//! One sync of a Job (upstream's `syncJob` and `trackJobStatusAndRemoveFinalizers`):
//! what its pods say, the conditions that follow, and the status written in the order
//! that counts every finished pod once — uids to `uncountedTerminatedPods`, then the
//! finalizers off, then the counters.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use keelson_api::k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobStatus, UncountedTerminatedPods,
};
use keelson_api::k8s_openapi::api::core::v1::Pod;
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_api::k8s_openapi::jiff::Timestamp;
use keelson_core::labels;
use keelson_runtime::controller::Action;
use keelson_runtime::events::EventType;
use keelson_runtime::informer::key_of;
use kube::api::{Api, PostParams};

use super::policy::{self, Backoff, FailureAction};
use super::{
    Controller, MAX_UNCOUNTED_PODS, has_tracking_finalizer, is_finished, lock, managed_elsewhere,
    remove_finalizer, true_condition,
};
use crate::ownership::Claimer;
use crate::pods::{self, controller_ref};
use crate::replicaset::NAMESPACE_INDEX;

/// What one sync knows of a Job (upstream's `syncJobCtx`).
pub(super) struct SyncCtx {
    pub key: String,
    /// The Job with the status being built.
    pub job: Job,
    pub pods: Vec<Arc<Pod>>,
    pub active: Vec<Arc<Pod>>,
    pub finished: Option<JobCondition>,
    pub succeeded: i32,
    pub prev_succeeded_indexes: BTreeSet<i32>,
    pub succeeded_indexes: BTreeSet<i32>,
    pub new_backoff: Backoff,
    pub expected_rm: HashSet<String>,
    pub uncounted_succeeded: HashSet<String>,
    pub uncounted_failed: HashSet<String>,
    pub terminating: i32,
    pub ready: i32,
}

pub(super) fn condition(type_: &str, status: &str, reason: &str, message: &str) -> JobCondition {
    let now = Some(Time(Timestamp::now()));
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: now.clone(),
        last_transition_time: now,
    }
}

/// Sets the condition of `type_` unless it already says this; never adds a False one
/// (upstream's `ensureJobConditionStatus`). Whether anything changed.
pub(super) fn ensure_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> bool {
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status
            || c.reason.as_deref() != Some(reason)
            || c.message.as_deref() != Some(message)
        {
            *c = condition(type_, status, reason, message);
            return true;
        }
        return false;
    }
    if status != "False" {
        conditions.push(condition(type_, status, reason, message));
        return true;
    }
    false
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

pub(super) fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// Replaced only once Failed (`podReplacementPolicy: Failed`, the default with a
/// `podFailurePolicy`).
pub(super) fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// Failed, or (unless only Failed pods count) deleted before it succeeded.
pub(super) fn is_pod_failed(pod: &Pod, job: &Job) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    !only_replace_failed(job)
        && pod.metadata.deletion_timestamp.is_some()
        && phase(pod) != "Succeeded"
}

pub(super) fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

pub(super) fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

fn completions(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.completions)
}

/// The pod's index if the Job is Indexed and it is valid for the Job.
pub(super) fn valid_index(job: &Job, pod: &Pod) -> Option<i32> {
    policy::completion_index(pod).filter(|i| *i < completions(job).unwrap_or(0))
}

impl Controller {
    pub(super) async fn sync(&self, key: &str) -> Result<Action, kube::Error> {
        let Some(shared) = self.jobs.get(key) else {
            self.forget(key);
            return Ok(Action::AwaitChange);
        };
        if managed_elsewhere(&shared) {
            return Ok(Action::AwaitChange);
        }
        if is_finished(&shared) {
            lock(&self.backoffs).remove(key);
            return Ok(Action::AwaitChange);
        }
        let mode = shared.spec.as_ref().and_then(|s| s.completion_mode.as_deref());
        if !matches!(mode, None | Some("NonIndexed" | "Indexed")) {
            self.recorder.event(
                &Self::reference(&shared),
                EventType::Warning,
                "UnknownCompletionMode",
                "Skipped Job sync because completion mode is unknown",
            );
            return Ok(Action::AwaitChange);
        }
        let mut job = (*shared).clone();
        let status = job.status.get_or_insert_default();
        status.uncounted_terminated_pods.get_or_insert_default();
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let satisfied = self.expectations.satisfied(key);
        let pods = self.pods_for_job(&shared).await?;
        let active: Vec<Arc<Pod>> = pods.iter().filter(|p| pods::is_active(p)).cloned().collect();
        let set = |uids: Option<Vec<String>>| uids.into_iter().flatten().collect::<HashSet<_>>();
        let mut ctx = SyncCtx {
            key: key.to_owned(),
            ready: active.iter().filter(|p| pods::is_ready(p)).count() as i32,
            terminating: pods
                .iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_some()
                        && !matches!(phase(p), "Succeeded" | "Failed")
                })
                .count() as i32,
            expected_rm: lock(&self.finalizers).get(key).cloned().unwrap_or_default(),
            uncounted_succeeded: set(uncounted.succeeded),
            uncounted_failed: set(uncounted.failed),
            job,
            pods,
            active,
            finished: None,
            succeeded: 0,
            prev_succeeded_indexes: BTreeSet::new(),
            succeeded_indexes: BTreeSet::new(),
            new_backoff: Backoff::default(),
        };
        let spec = ctx.job.spec.clone().unwrap_or_default();
        let now = Timestamp::now();
        let (new_succeeded, new_failed) = self.new_finished_pods(&ctx);
        let status = ctx.job.status.clone().unwrap_or_default();
        ctx.succeeded = status.succeeded.unwrap_or(0)
            + new_succeeded.len() as i32
            + ctx.uncounted_succeeded.len() as i32;
        let counted_failures = new_failed
            .iter()
            .filter(|p| policy::match_failure(spec.pod_failure_policy.as_ref(), p).counts())
            .count();
        let failed = status.failed.unwrap_or(0)
            + counted_failures as i32
            + ctx.uncounted_failed.len() as i32;
        if status.start_time.is_none() && !suspended(&ctx.job) {
            ctx.job.status.get_or_insert_default().start_time = Some(Time(now));
        }
        let finish = |pods: &[Arc<Pod>]| -> Vec<Timestamp> {
            pods.iter().map(|p| policy::finish_time(p, now)).collect()
        };
        let record = lock(&self.backoffs).get(key).copied().unwrap_or_default();
        ctx.new_backoff = record.after(&finish(&new_succeeded), &finish(&new_failed));

        let mut requeue: Option<Duration> = None;
        ctx.finished = true_condition(&ctx.job, "SuccessCriteriaMet").cloned();
        if ctx.finished.is_none() {
            if let Some(target) = true_condition(&ctx.job, "FailureTarget") {
                let (reason, message) = reason_and_message(target);
                ctx.finished = Some(condition("Failed", "True", &reason, &message));
            } else if let Some(message) = fail_job_message(&ctx.job, &ctx.pods) {
                ctx.finished =
                    Some(condition("FailureTarget", "True", "PodFailurePolicy", &message));
            }
        }
        if ctx.finished.is_none() {
            let start = ctx.job.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            let deadline =
                spec.active_deadline_seconds.filter(|_| !suspended(&ctx.job)).zip(start).map(
                    |(seconds, start)| {
                        let elapsed = now.duration_since(start).as_secs_f64().max(0.0);
                        Duration::from_secs_f64((seconds as f64 - elapsed).max(0.0))
                    },
                );
            if failed > spec.backoff_limit.unwrap_or(6)
                || past_backoff_on_failure(&ctx.job, &ctx.pods)
            {
                ctx.finished = Some(condition(
                    "FailureTarget",
                    "True",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                ));
            } else if deadline == Some(Duration::ZERO) {
                ctx.finished = Some(condition(
                    "FailureTarget",
                    "True",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                ));
            } else if let Some(remaining) = deadline {
                requeue = Some(remaining);
            }
        }
        if is_indexed(&ctx.job) {
            let completions = spec.completions.unwrap_or(0);
            let previous = status.completed_indexes.as_deref().unwrap_or_default();
            ctx.prev_succeeded_indexes = policy::parse_indexes(previous, completions);
            let mut now_succeeded = ctx.prev_succeeded_indexes.clone();
            for pod in &ctx.pods {
                if phase(pod) == "Succeeded" && has_tracking_finalizer(pod) {
                    now_succeeded.extend(valid_index(&ctx.job, pod));
                }
            }
            ctx.succeeded = now_succeeded.len() as i32;
            ctx.succeeded_indexes = now_succeeded;
            if ctx.finished.is_none()
                && let Some(message) = policy::match_success(
                    spec.success_policy.as_ref(),
                    completions,
                    &ctx.succeeded_indexes,
                )
            {
                ctx.finished =
                    Some(condition("SuccessCriteriaMet", "True", "SuccessPolicy", &message));
            }
        }

        let mut active = ctx.active.len() as i32;
        let mut suspend_changed = false;
        let mut manage_error = None;
        if ctx.finished.is_some() {
            let active_pods = ctx.active.clone();
            let (deleted_ready, deleted, error) = self.delete_active(&ctx.job, &active_pods).await;
            if deleted != active || !satisfied {
                // Pods may still carry finalizers, or not be in the informer yet.
                ctx.finished = None;
            }
            active -= deleted;
            ctx.terminating += deleted;
            ctx.ready -= deleted_ready;
            manage_error = error;
        } else {
            let mut managed = false;
            if satisfied && ctx.job.metadata.deletion_timestamp.is_none() {
                let (now_active, wait, error) = self.manage(&mut ctx).await;
                active = now_active;
                requeue = min_duration(requeue, wait);
                manage_error = error;
                managed = true;
            }
            let complete = match spec.completions {
                None => ctx.succeeded > 0 && active == 0,
                Some(completions) => ctx.succeeded >= completions && active == 0,
            };
            if complete {
                ctx.finished = Some(condition(
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                ));
            } else if managed {
                suspend_changed = self.suspension(&mut ctx);
            }
        }
        let old = shared.status.clone().unwrap_or_default();
        let status = ctx.job.status.get_or_insert_default();
        let needs_update = suspend_changed
            || Some(active) != old.active.or(Some(0))
            || Some(ctx.ready) != old.ready
            || Some(ctx.terminating) != old.terminating;
        status.active = Some(active);
        status.ready = Some(ctx.ready);
        status.terminating = Some(ctx.terminating);
        self.track(&mut ctx, needs_update).await?;
        if let Some(e) = manage_error {
            return Err(e);
        }
        Ok(requeue.map_or(Action::AwaitChange, Action::RequeueAfter))
    }

    /// The `Suspended` condition and its events; whether the status changed.
    fn suspension(&self, ctx: &mut SyncCtx) -> bool {
        let reference = Self::reference(&ctx.job);
        let is_suspended = suspended(&ctx.job);
        let status = ctx.job.status.get_or_insert_default();
        let conditions = status.conditions.get_or_insert_default();
        if is_suspended {
            let changed =
                ensure_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended");
            if changed {
                self.recorder.event(&reference, EventType::Normal, "Suspended", "Job suspended");
            }
            return changed;
        }
        let changed =
            ensure_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed");
        if changed {
            self.recorder.event(&reference, EventType::Normal, "Resumed", "Job resumed");
            // activeDeadlineSeconds counts from the resume.
            status.start_time = Some(Time(Timestamp::now()));
        }
        changed
    }

    /// Every pod of the Job's namespace it owns after adopting and releasing.
    async fn pods_for_job(&self, job: &Job) -> Result<Vec<Arc<Pod>>, kube::Error> {
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        let all = self.pods.by_index(NAMESPACE_INDEX, &namespace);
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let reference = controller_ref("batch/v1", "Job", &job.metadata);
        let selector = job.spec.as_ref().and_then(|s| s.selector.as_ref());
        Claimer::new(&jobs, job, reference)
            .claim(&pod_api, all, |p| {
                selector.is_some() && labels::matches(selector, p.metadata.labels.as_ref())
            })
            .await
    }

    /// Finished pods not counted yet: (succeeded, failed) — upstream's
    /// `getNewFinishedPods`.
    fn new_finished_pods(&self, ctx: &SyncCtx) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
        let valid = |p: &Pod, uncounted: &HashSet<String>| {
            let uid = uid(p);
            has_tracking_finalizer(p)
                && !uncounted.contains(&uid)
                && !ctx.expected_rm.contains(&uid)
                && (!is_indexed(&ctx.job) || valid_index(&ctx.job, p).is_some())
        };
        let succeeded = ctx
            .pods
            .iter()
            .filter(|p| valid(p, &ctx.uncounted_succeeded) && phase(p) == "Succeeded")
            .cloned()
            .collect();
        let failed = ctx
            .pods
            .iter()
            .filter(|p| valid(p, &ctx.uncounted_failed) && is_pod_failed(p, &ctx.job))
            .cloned()
            .collect();
        (succeeded, failed)
    }

    /// Writes the Job's status; the written Job replaces `ctx.job`.
    async fn write_status(&self, ctx: &mut SyncCtx) -> Result<(), kube::Error> {
        let namespace = ctx.job.metadata.namespace.clone().unwrap_or_default();
        let name = ctx.job.metadata.name.clone().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        ctx.job = api.replace_status(&name, &PostParams::default(), &ctx.job).await?;
        Ok(())
    }

    /// Upstream's `trackJobStatusAndRemoveFinalizers`.
    async fn track(&self, ctx: &mut SyncCtx, mut needs_flush: bool) -> Result<(), kube::Error> {
        let job = ctx.job.clone();
        let indexed = is_indexed(&job);
        let spec = ctx.job.spec.clone().unwrap_or_default();
        let completions = spec.completions.unwrap_or(0);
        let mut pods = ctx.pods.clone();
        if indexed {
            pods.sort_by_key(|p| policy::completion_index(p).unwrap_or(i32::MAX));
        }
        let mut with_finalizer: HashSet<String> = pods
            .iter()
            .filter(|p| has_tracking_finalizer(p) && !ctx.expected_rm.contains(&uid(p)))
            .map(|p| uid(p))
            .collect();
        let shared_deleting = ctx.job.metadata.deletion_timestamp.is_some();
        let status = ctx.job.status.get_or_insert_default();
        needs_flush |= count_uncounted(status, &with_finalizer);
        let uncounted = status.uncounted_terminated_pods.get_or_insert_default();
        let (mut new_succeeded, mut new_failed) = (
            uncounted.succeeded.clone().unwrap_or_default(),
            uncounted.failed.clone().unwrap_or_default(),
        );
        let mut new_indexes = Vec::new();
        let mut to_remove = Vec::new();
        let mut reached_max = false;
        let failing = ctx.finished.as_ref().is_some_and(|c| c.type_ != "SuccessCriteriaMet");
        for pod in &pods {
            let pod_uid = uid(pod);
            if !has_tracking_finalizer(pod) || ctx.expected_rm.contains(&pod_uid) {
                continue;
            }
            let considered_failed = is_pod_failed(pod, &job);
            let removable = shared_deleting
                || ctx.finished.is_some()
                || phase(pod) == "Succeeded"
                || considered_failed;
            if !removable {
                continue;
            }
            to_remove.push(pod.clone());
            if phase(pod) == "Succeeded" && !ctx.uncounted_failed.contains(&pod_uid) {
                if indexed {
                    if let Some(ix) = valid_index(&job, pod)
                        && !ctx.prev_succeeded_indexes.contains(&ix)
                    {
                        new_indexes.push(ix);
                        needs_flush = true;
                    }
                } else if !ctx.uncounted_succeeded.contains(&pod_uid)
                    && !new_succeeded.contains(&pod_uid)
                {
                    new_succeeded.push(pod_uid);
                    needs_flush = true;
                }
            } else if (considered_failed || failing)
                && !ctx.uncounted_failed.contains(&pod_uid)
                && !new_failed.contains(&pod_uid)
                && (!indexed || valid_index(&job, pod).is_some())
                && policy::match_failure(spec.pod_failure_policy.as_ref(), pod)
                    != FailureAction::Ignore
            {
                new_failed.push(pod_uid);
                needs_flush = true;
            }
            if new_indexes.len() + new_succeeded.len() + new_failed.len() >= MAX_UNCOUNTED_PODS {
                reached_max = true;
                break;
            }
        }
        uncounted.succeeded = Some(new_succeeded);
        uncounted.failed = Some(new_failed);
        if indexed {
            let mut done = ctx.prev_succeeded_indexes.clone();
            done.extend(new_indexes);
            let text = policy::format_indexes(&done);
            if status.completed_indexes.as_deref().unwrap_or_default() != text {
                needs_flush = true;
            }
            status.succeeded = Some(done.len() as i32);
            status.completed_indexes = Some(text).filter(|t| !t.is_empty());
            let _ = completions;
        }
        if let Some(finished) = ctx.finished.clone() {
            let (reason, message) = reason_and_message(&finished);
            let conditions = status.conditions.get_or_insert_default();
            if finished.type_ == "FailureTarget" {
                conditions.push(finished);
                needs_flush = true;
                ctx.finished = Some(condition("Failed", "True", &reason, &message));
            } else if finished.type_ == "SuccessCriteriaMet" {
                if !conditions.iter().any(|c| c.type_ == "SuccessCriteriaMet" && c.status == "True")
                {
                    conditions.push(finished);
                    needs_flush = true;
                }
                ctx.finished = Some(condition("Complete", "True", &reason, &message));
            }
        }

        // Upstream's `flushUncountedAndRemoveFinalizers`.
        if needs_flush {
            self.write_status(ctx).await?;
            lock(&self.backoffs).insert(ctx.key.clone(), ctx.new_backoff);
            needs_flush = false;
        }
        let removed = self.remove_finalizers(&ctx.key, &to_remove).await;
        let mut removal_error = None;
        for (pod, result) in to_remove.iter().zip(removed) {
            match result {
                Ok(()) => {
                    with_finalizer.remove(&uid(pod));
                }
                Err(e) => removal_error = Some(e),
            }
        }
        let status = ctx.job.status.get_or_insert_default();
        needs_flush |= count_uncounted(status, &with_finalizer);
        if let Some(e) = removal_error {
            if needs_flush {
                self.write_status(ctx).await?;
            }
            return Err(e);
        }
        let finished = !reached_max && self.enact_finished(ctx);
        if finished || needs_flush {
            self.write_status(ctx).await?;
            if finished {
                self.record_finished(ctx);
            }
        }
        Ok(())
    }

    /// Takes the finalizer off each pod, expecting to see each removal.
    async fn remove_finalizers(
        &self,
        key: &str,
        pods: &[Arc<Pod>],
    ) -> Vec<Result<(), kube::Error>> {
        if pods.is_empty() {
            return Vec::new();
        }
        lock(&self.finalizers)
            .entry(key.to_owned())
            .or_default()
            .extend(pods.iter().map(|p| uid(p)));
        let removals = pods.iter().map(|pod| async move {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            let result = remove_finalizer(&api, pod).await;
            if result.is_err() {
                self.finalizer_removal_observed(key, &uid(pod));
            }
            result
        });
        futures_util::future::join_all(removals).await
    }

    /// Adds the terminal condition once nothing is uncounted or terminating (upstream's
    /// `enactJobFinished`); whether it did.
    fn enact_finished(&self, ctx: &mut SyncCtx) -> bool {
        let Some(finished) = ctx.finished.clone() else { return false };
        let status = ctx.job.status.get_or_insert_default();
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let left = uncounted.succeeded.iter().flatten().count()
            + uncounted.failed.iter().flatten().count();
        if left > 0 || ctx.terminating > 0 {
            return false;
        }
        let (reason, message) = reason_and_message(&finished);
        let conditions = status.conditions.get_or_insert_default();
        ensure_condition(conditions, &finished.type_, "True", &reason, &message);
        if finished.type_ == "Complete" {
            status.completion_time = finished.last_transition_time.clone();
        }
        true
    }

    fn record_finished(&self, ctx: &SyncCtx) {
        let Some(finished) = &ctx.finished else { return };
        let reference = Self::reference(&ctx.job);
        if finished.type_ == "Complete" {
            self.recorder.event(&reference, EventType::Normal, "Completed", "Job completed");
        } else {
            let (reason, message) = reason_and_message(finished);
            self.recorder.event(&reference, EventType::Warning, &reason, &message);
        }
    }
}

/// Moves the uids in `uncountedTerminatedPods` whose pods lost their finalizer to the
/// counters (upstream's `cleanUncountedPodsWithoutFinalizers`); whether it moved any.
fn count_uncounted(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let uncounted =
        status.uncounted_terminated_pods.get_or_insert_with(UncountedTerminatedPods::default);
    let mut changed = false;
    for (list, counter) in [
        (&mut uncounted.succeeded, &mut status.succeeded),
        (&mut uncounted.failed, &mut status.failed),
    ] {
        let before = list.iter().flatten().count();
        let kept: Vec<String> =
            list.take().into_iter().flatten().filter(|u| with_finalizer.contains(u)).collect();
        if kept.len() != before {
            changed = true;
            *counter = Some(counter.unwrap_or(0) + (before - kept.len()) as i32);
        }
        *list = Some(kept);
    }
    changed
}

fn reason_and_message(c: &JobCondition) -> (String, String) {
    (c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default())
}

/// The message of the first `FailJob` rule a failed pod matches.
fn fail_job_message(job: &Job, pods: &[Arc<Pod>]) -> Option<String> {
    let policy = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    pods.iter().filter(|p| is_pod_failed(p, job)).find_map(|p| {
        match policy::match_failure(Some(policy), p) {
            FailureAction::FailJob(message) => Some(message),
            _ => None,
        }
    })
}

/// With `restartPolicy: OnFailure`, whether the restarts of running and pending pods
/// reach `backoffLimit` (upstream's `pastBackoffLimitOnFailure`).
fn past_backoff_on_failure(job: &Job, pods: &[Arc<Pod>]) -> bool {
    let spec = job.spec.clone().unwrap_or_default();
    let restart = spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
    if restart != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    match spec.backoff_limit.unwrap_or(6) {
        0 => restarts > 0,
        limit => restarts >= limit,
    }
}

pub(super) fn min_duration(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub(super) fn pod_key(pod: &Pod) -> String {
    key_of(pod)
}
