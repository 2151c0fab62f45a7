//! `cronjob-controller` (upstream's `pkg/controller/cronjob`, the v2 controller): makes
//! a Job from a CronJob's template at each time its schedule names.
//!
//! A sync of one CronJob reconciles `status.active` with the Jobs it controls
//! (`SawCompletedJob`, `MissingJob`, `UnexpectedJob`, `lastSuccessfulTime`), then —
//! unless it is being deleted, suspended, or its `timeZone` or schedule is bad — finds
//! the most recent unmet schedule time ([`schedule::most_recent`]: only that one runs,
//! with a `TooManyMissedTimes` warning past 100 missed), skips it when past
//! `startingDeadlineSeconds` (`MissSchedule`) or when a Job is active under `Forbid`
//! (`JobAlreadyActive`), deletes the active Jobs under `Replace`, and creates
//! `<cronjob>-<minutes since the epoch>` with the
//! `batch.kubernetes.io/cronjob-scheduled-timestamp` annotation. Finished Jobs beyond
//! the history limits are deleted, oldest first; the CronJob is looked at again at its
//! next schedule time.
//!
//! Must never create two Jobs for one schedule time: the name is derived from it.

pub mod schedule;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use keelson_api::k8s_openapi::api::batch::v1::{CronJob, Job};
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::events::{EventType, Recorder};
use keelson_runtime::informer::{Change, Informer, key_of};
use keelson_runtime::queue::WorkQueue;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};

use crate::job::{is_finished, true_condition};
use crate::pods::{controller_of, controller_ref, reference_to};
use crate::replicaset::{NAMESPACE_INDEX, by_namespace, message};
use schedule::{Missed, Schedule};

pub const NAME: &str = "cronjob-controller";
pub const SERVICE_ACCOUNT: &str = "cronjob-controller";
/// The annotation with the time a Job was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// How long after a schedule time the CronJob is looked at (upstream's
/// `nextScheduleDelta`).
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
const WORKERS: usize = 5;

pub fn start(context: Context) -> StartFuture {
    Box::pin(run(context))
}

struct Controller {
    client: Client,
    cronjobs: Arc<Informer<CronJob>>,
    jobs: Arc<Informer<Job>>,
    queue: WorkQueue<String>,
    recorder: Recorder,
}

async fn run(context: Context) -> keelson_runtime::Result<()> {
    let cronjobs = context.informers.get::<CronJob>();
    let jobs = context.informers.get::<Job>();
    jobs.add_index(NAMESPACE_INDEX, by_namespace::<Job>);
    let controller = Arc::new(Controller {
        recorder: Recorder::new(context.client.clone(), NAME, None),
        client: context.client.clone(),
        cronjobs: cronjobs.clone(),
        jobs: jobs.clone(),
        queue: context.queue(),
    });
    let c = controller.clone();
    cronjobs.on_change(move |change| c.queue.add(key_of(&**change.object())));
    let c = controller.clone();
    jobs.on_change(move |change| {
        let job = change.object();
        let mut owners = vec![controller_of(&job.metadata)];
        if let Change::Updated { old, .. } = change {
            owners.push(controller_of(&old.metadata));
        }
        let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
        for owner in owners.into_iter().flatten().filter(|r| r.kind == "CronJob") {
            c.queue.add(format!("{namespace}/{}", owner.name));
        }
    });
    cronjobs.wait_synced().await;
    jobs.wait_synced().await;
    let queue = controller.queue.clone();
    run_workers(&context, queue, WORKERS, move |key: String| {
        let c = controller.clone();
        async move { c.sync(&key).await }
    })
    .await;
    Ok(())
}

/// `<cronjob>-<minutes since the epoch of the schedule time>` (upstream's
/// `getJobName`).
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// The Job for `scheduled` (upstream's `getJobFromTemplate2`).
pub fn job_for(cronjob: &CronJob, scheduled: Timestamp) -> Result<Job, String> {
    let spec = cronjob.spec.clone().unwrap_or_default();
    let zone = schedule::zone(spec.time_zone.as_deref().unwrap_or_default())?;
    let template = spec.job_template;
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let stamp = scheduled.to_zoned(zone).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    let stamp = stamp.strip_suffix("+00:00").map_or(stamp.clone(), |s| format!("{s}Z"));
    annotations.insert(SCHEDULED_TIMESTAMP.into(), stamp);
    let name = cronjob.metadata.name.clone().unwrap_or_default();
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name, scheduled)),
            namespace: cronjob.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref("batch/v1", "CronJob", &cronjob.metadata)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    })
}

/// The type of the condition a finished Job ended with.
fn finished_as(job: &Job) -> Option<&'static str> {
    if true_condition(job, "Complete").is_some() {
        Some("Complete")
    } else if true_condition(job, "Failed").is_some() {
        Some("Failed")
    } else {
        None
    }
}

impl Controller {
    fn event(&self, cronjob: &CronJob, kind: EventType, reason: &str, message: &str) {
        let reference = reference_to("batch/v1", "CronJob", &cronjob.metadata);
        self.recorder.event(&reference, kind, reason, message);
    }

    /// Upstream's `sync`: `syncCronJob`, the history clean-up, one status write.
    async fn sync(&self, key: &str) -> Result<Action, kube::Error> {
        let Some(shared) = self.cronjobs.get(key) else { return Ok(Action::AwaitChange) };
        let namespace = shared.metadata.namespace.clone().unwrap_or_default();
        let uid = shared.metadata.uid.clone();
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .by_index(NAMESPACE_INDEX, &namespace)
            .into_iter()
            .filter(|j| {
                controller_of(&j.metadata)
                    .is_some_and(|r| r.kind == "CronJob" && Some(&r.uid) == uid.as_ref())
            })
            .collect();
        let mut cronjob = (*shared).clone();
        let (requeue, mut update, result) = self.sync_cronjob(&mut cronjob, &jobs).await;
        if result.is_ok() {
            update |= self.clean_up(&mut cronjob, &jobs).await;
        }
        if update {
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), &namespace);
            let name = cronjob.metadata.name.clone().unwrap_or_default();
            match api.replace_status(&name, &PostParams::default(), &cronjob).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        result?;
        Ok(requeue.map_or(Action::AwaitChange, Action::RequeueAfter))
    }

    /// Upstream's `syncCronJob`: (when to look again, whether the status changed, the
    /// error).
    async fn sync_cronjob(
        &self,
        cronjob: &mut CronJob,
        jobs: &[Arc<Job>],
    ) -> (Option<Duration>, bool, Result<(), kube::Error>) {
        let now = Timestamp::now();
        let mut update = false;
        let namespace = cronjob.metadata.namespace.clone().unwrap_or_default();
        let job_api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        let mut children = HashSet::new();
        for job in jobs {
            let job_uid = job.metadata.uid.clone().unwrap_or_default();
            children.insert(job_uid.clone());
            let status = cronjob.status.get_or_insert_default();
            let active = status.active.get_or_insert_default();
            let found = active.iter().any(|r| r.uid.as_deref() == Some(&job_uid));
            let name = job.metadata.name.clone().unwrap_or_default();
            if !found && !is_finished(job) {
                // Not ours yet as far as the status says (a job made by kubectl
                // `create job --from`, or a status write lost after a create).
                let text =
                    format!("Saw a job that the controller did not create or forgot: {name}");
                self.event(cronjob, EventType::Warning, "UnexpectedJob", &text);
            } else if found && let Some(condition) = finished_as(job) {
                active.retain(|r| r.uid.as_deref() != Some(&job_uid));
                let text = format!("Saw completed job: {name}, condition: {condition}");
                self.event(cronjob, EventType::Normal, "SawCompletedJob", &text);
                update = true;
            }
            if finished_as(job) == Some("Complete") {
                let completed = job.status.as_ref().and_then(|s| s.completion_time.clone());
                let status = cronjob.status.get_or_insert_default();
                if let Some(completed) = completed
                    && status.last_successful_time.as_ref().is_none_or(|t| t.0 < completed.0)
                {
                    status.last_successful_time = Some(completed);
                    update = true;
                }
            }
        }
        let active = cronjob.status.as_ref().and_then(|s| s.active.clone()).unwrap_or_default();
        for gone in active.iter().filter(|r| !children.contains(r.uid.as_deref().unwrap_or(""))) {
            // The informer may be slow: ask the API server.
            let name = gone.name.clone().unwrap_or_default();
            match job_api.get_opt(&name).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    let text = format!("Active job went missing: {name}");
                    self.event(cronjob, EventType::Normal, "MissingJob", &text);
                    let status = cronjob.status.get_or_insert_default();
                    status.active.get_or_insert_default().retain(|r| r.uid != gone.uid);
                    update = true;
                }
                Err(e) => return (None, update, Err(e)),
            }
        }
        if cronjob.metadata.deletion_timestamp.is_some() {
            return (None, update, Ok(()));
        }
        let spec = cronjob.spec.clone().unwrap_or_default();
        let zone_name = spec.time_zone.clone().unwrap_or_default();
        if let Err(e) = schedule::zone(&zone_name) {
            let text = format!("invalid timeZone: {zone_name:?}: {e}");
            self.event(cronjob, EventType::Warning, "UnknownTimeZone", &text);
            return (None, update, Ok(()));
        }
        if spec.suspend == Some(true) {
            return (None, update, Ok(()));
        }
        if spec.schedule.contains("TZ") {
            let text = format!(
                "CRON_TZ or TZ used in schedule {:?} is not officially supported, see \
                 https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more \
                 details",
                spec.schedule
            );
            self.event(cronjob, EventType::Warning, "UnsupportedSchedule", &text);
        }
        let parsed = match Schedule::parse(&spec.schedule, &zone_name) {
            Ok(s) => s,
            Err(e) => {
                let text = format!("unparseable schedule: {:?} : {e}", spec.schedule);
                self.event(cronjob, EventType::Warning, "UnparseableSchedule", &text);
                return (None, update, Ok(()));
            }
        };
        let earliest = self.earliest(cronjob);
        let scheduled =
            match schedule::most_recent(&parsed, earliest, now, spec.starting_deadline_seconds) {
                Ok((_, recent, missed)) => {
                    if recent.is_some() && missed == Missed::Many {
                        let text = "too many missed start times. Set or decrease \
                                .spec.startingDeadlineSeconds or check clock skew";
                        self.event(cronjob, EventType::Warning, "TooManyMissedTimes", text);
                    }
                    recent
                }
                Err(e) => {
                    let text = format!("invalid schedule: {} : {e}", spec.schedule);
                    self.event(cronjob, EventType::Warning, "InvalidSchedule", &text);
                    return (None, update, Ok(()));
                }
            };
        let next = self.next_in(cronjob, &parsed, now);
        let Some(scheduled) = scheduled else { return (next, update, Ok(())) };
        let too_late = spec
            .starting_deadline_seconds
            .is_some_and(|s| scheduled + Duration::from_secs(s.max(0) as u64) < now);
        if too_late {
            let text = format!(
                "Missed scheduled time to start a job: {}",
                scheduled.strftime("%a, %d %b %Y %H:%M:%S %z")
            );
            self.event(cronjob, EventType::Warning, "MissSchedule", &text);
            return (next, update, Ok(()));
        }
        let name = job_name(cronjob.metadata.name.as_deref().unwrap_or_default(), scheduled);
        let status = cronjob.status.clone().unwrap_or_default();
        let active = status.active.clone().unwrap_or_default();
        let processed = active.iter().any(|r| r.name.as_deref() == Some(&name))
            || status.last_schedule_time.as_ref().map(|t| t.0) == Some(scheduled);
        if processed {
            return (next, update, Ok(()));
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && !active.is_empty() {
            let text = "Not starting job because prior execution is running and concurrency \
                        policy is Forbid";
            self.event(cronjob, EventType::Normal, "JobAlreadyActive", text);
            return (next, update, Ok(()));
        }
        if policy == "Replace" {
            for running in &active {
                let name = running.name.clone().unwrap_or_default();
                if let Err(e) = self.delete_job(cronjob, &job_api, &name).await {
                    return (None, update, Err(e));
                }
                let status = cronjob.status.get_or_insert_default();
                status.active.get_or_insert_default().retain(|r| r.uid != running.uid);
                update = true;
            }
        }
        let request = match job_for(cronjob, scheduled) {
            Ok(job) => job,
            Err(e) => {
                tracing::warn!(cronjob = ?cronjob.metadata.name, error = %e, "unable to make job from template");
                return (None, update, Ok(()));
            }
        };
        let created = match job_api.create(&PostParams::default(), &request).await {
            Ok(job) => {
                let text = format!("Created job {name}");
                self.event(cronjob, EventType::Normal, "SuccessfulCreate", &text);
                job
            }
            Err(e) if crate::namespaces::namespace_gone(&e) => return (None, update, Err(e)),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Made before, and the status write lost? Only ours are taken back.
                let existing = match job_api.get(&name).await {
                    Ok(job) => job,
                    Err(e) => return (None, update, Err(e)),
                };
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == cronjob.metadata.uid.as_ref());
                let listed = active.iter().any(|r| r.uid == existing.metadata.uid);
                if !ours || listed {
                    return (None, update, Ok(()));
                }
                existing
            }
            Err(e) => {
                let text = format!("Error creating job: {}", message(&e));
                self.event(cronjob, EventType::Warning, "FailedCreate", &text);
                return (None, update, Err(e));
            }
        };
        let status = cronjob.status.get_or_insert_default();
        status.active.get_or_insert_default().push(reference_to(
            "batch/v1",
            "Job",
            &created.metadata,
        ));
        status.last_schedule_time = Some(Time(scheduled));
        let next = self.next_in(cronjob, &parsed, now);
        (next, true, Ok(()))
    }

    /// The last schedule time, else the creation time.
    fn earliest(&self, cronjob: &CronJob) -> Timestamp {
        let last = cronjob.status.as_ref().and_then(|s| s.last_schedule_time.as_ref());
        let created = cronjob.metadata.creation_timestamp.as_ref();
        last.or(created).map_or_else(Timestamp::now, |t| t.0)
    }

    /// How long until just after the next schedule time (upstream's
    /// `nextScheduleTimeDuration`).
    fn next_in(&self, cronjob: &CronJob, parsed: &Schedule, now: Timestamp) -> Option<Duration> {
        let earliest = self.earliest(cronjob);
        let from = match schedule::most_recent(parsed, earliest, now, None) {
            Ok((_, Some(recent), _)) => recent,
            Ok((earliest, None, Missed::None)) => earliest,
            _ => now,
        };
        let next = parsed.next(from)?;
        let wait = next.duration_since(now).as_secs_f64().max(0.0);
        Some(Duration::from_secs_f64(wait) + NEXT_SCHEDULE_DELTA)
    }

    /// Deletes a Job in the background, with upstream's event.
    async fn delete_job(
        &self,
        cronjob: &CronJob,
        api: &Api<Job>,
        name: &str,
    ) -> Result<(), kube::Error> {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {
                let text = format!("Deleted job {name}");
                self.event(cronjob, EventType::Normal, "SuccessfulDelete", &text);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => {
                let text = format!("Deleted job: {}", message(&e));
                self.event(cronjob, EventType::Warning, "FailedDelete", &text);
                Err(e)
            }
        }
    }

    /// Deletes the oldest finished Jobs beyond the history limits (upstream's
    /// `cleanupFinishedJobs`); whether the status changed.
    async fn clean_up(&self, cronjob: &mut CronJob, jobs: &[Arc<Job>]) -> bool {
        let spec = cronjob.spec.clone().unwrap_or_default();
        let namespace = cronjob.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        let mut update = false;
        for (condition, limit) in [
            ("Complete", spec.successful_jobs_history_limit),
            ("Failed", spec.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else { continue };
            let mut finished: Vec<&Arc<Job>> =
                jobs.iter().filter(|j| finished_as(j) == Some(condition)).collect();
            let excess = finished.len().saturating_sub(limit.max(0) as usize);
            finished.sort_by_key(|j| {
                let start = j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
                (start.is_none(), start, j.metadata.name.clone())
            });
            for job in finished.into_iter().take(excess) {
                let name = job.metadata.name.clone().unwrap_or_default();
                if self.delete_job(cronjob, &api, &name).await.is_ok() {
                    let status = cronjob.status.get_or_insert_default();
                    let active = status.active.get_or_insert_default();
                    let before = active.len();
                    active.retain(|r| r.uid != job.metadata.uid);
                    update |= active.len() != before;
                }
            }
        }
        update
    }
}
