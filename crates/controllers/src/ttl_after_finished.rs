//! `ttl-after-finished-controller` (upstream's `pkg/controller/ttlafterfinished`):
//! deletes a finished Job `spec.ttlSecondsAfterFinished` after it finished — the last
//! transition of its `Complete` or `Failed` condition — with upstream's cascade:
//! foreground propagation and the uid as precondition, after checking a fresh copy.
//!
//! Must never delete a Job that is not finished, nor one whose TTL was raised or
//! removed since the informer saw it.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use keelson_api::k8s_openapi::api::batch::v1::Job;
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::informer::{Change, Informer, key_of};
use kube::Client;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};

use crate::job::{is_finished, true_condition};

pub const NAME: &str = "ttl-after-finished-controller";
pub const SERVICE_ACCOUNT: &str = "ttl-after-finished-controller";
const WORKERS: usize = 5;

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

/// When the Job's TTL runs out, if it has one and is finished.
pub fn expires_at(job: &Job) -> Option<Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    if !is_finished(job) {
        return None;
    }
    let condition = true_condition(job, "Complete").or_else(|| true_condition(job, "Failed"))?;
    let finished = condition.last_transition_time.as_ref()?.0;
    Some(finished + Duration::from_secs(ttl.max(0) as u64))
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let jobs: Arc<Informer<Job>> = context.informers.get::<Job>();
    let queue = context.queue::<String>();
    let q = queue.clone();
    jobs.on_change(move |change| {
        if let Change::Added(job) | Change::Updated { new: job, .. } = change
            && expires_at(job).is_some()
        {
            q.add(key_of(&**job));
        }
    });
    jobs.wait_synced().await;
    let client = context.client.clone();
    run_workers(&context, queue, WORKERS, move |key: String| {
        let (jobs, client) = (jobs.clone(), client.clone());
        async move { sync(&jobs, &client, &key).await }
    })
    .await;
    Ok(())
}

/// How long until `expires` at `now`; zero once passed.
fn remaining(expires: Timestamp, now: Timestamp) -> Duration {
    Duration::from_secs_f64(expires.duration_since(now).as_secs_f64().max(0.0))
}

async fn sync(jobs: &Informer<Job>, client: &Client, key: &str) -> Result<Action, kube::Error> {
    let Some(job) = jobs.get(key) else { return Ok(Action::AwaitChange) };
    let Some(expires) = expires_at(&job) else { return Ok(Action::AwaitChange) };
    let wait = remaining(expires, Timestamp::now());
    if !wait.is_zero() {
        return Ok(Action::RequeueAfter(wait));
    }
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(client.clone(), &namespace);
    // The informer may be behind (a TTL changed): decide on a fresh copy.
    let Some(fresh) = api.get_opt(&name).await? else { return Ok(Action::AwaitChange) };
    let Some(expires) = expires_at(&fresh) else { return Ok(Action::AwaitChange) };
    let wait = remaining(expires, Timestamp::now());
    if !wait.is_zero() {
        return Ok(Action::RequeueAfter(wait));
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: fresh.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    tracing::debug!(job = key, "cleaning up job");
    match api.delete(&name, &params).await {
        Ok(_) => Ok(Action::AwaitChange),
        Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409) => Ok(Action::AwaitChange),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use keelson_api::k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn job(ttl: Option<i32>, condition: Option<(&str, &str)>) -> Job {
        let at: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        Job {
            spec: Some(JobSpec { ttl_seconds_after_finished: ttl, ..JobSpec::default() }),
            status: Some(JobStatus {
                conditions: condition.map(|(t, s)| {
                    vec![JobCondition {
                        type_: t.into(),
                        status: s.into(),
                        last_transition_time: Some(Time(at)),
                        ..JobCondition::default()
                    }]
                }),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn only_finished_jobs_with_a_ttl_expire() {
        let expected: Timestamp = "2024-01-01T00:01:40Z".parse().unwrap();
        assert_eq!(expires_at(&job(Some(100), Some(("Complete", "True")))), Some(expected));
        assert_eq!(expires_at(&job(Some(100), Some(("Failed", "True")))), Some(expected));
        assert_eq!(expires_at(&job(None, Some(("Complete", "True")))), None);
        assert_eq!(expires_at(&job(Some(100), Some(("FailureTarget", "True")))), None);
        assert_eq!(expires_at(&job(Some(100), None)), None);
    }
}
