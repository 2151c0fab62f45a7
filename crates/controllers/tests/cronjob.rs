//! The CronJob controller against a real API server, with the Job controller and hollow
//! nodes. Missed schedules are made without waiting: the CronJob is created suspended,
//! its `status.lastScheduleTime` set hours back (upstream counts misses from it), and
//! then resumed; a changed `spec.schedule` makes a second schedule time due at once.
//! Covered: only the latest missed time runs, `TooManyMissedTimes`, Forbid vs Replace,
//! history limits, and `kubectl create job --from=cronjob/…`.

mod common;

use anyhow::Result;
use common::{Cluster, eventually, finish_pod, pods_with, wait_for};
use jiff::Timestamp;
use keelson_api::k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn cronjob(name: &str, schedule: &str, policy: &str) -> Result<CronJob> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": { "name": name },
        "spec": {
            "schedule": schedule,
            "suspend": true,
            "concurrencyPolicy": policy,
            "successfulJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": { "labels": { "app": name } },
                "spec": { "template": { "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "c", "image": "registry.k8s.io/pause:3.10" }],
                }}},
            },
        },
    }))?)
}

/// Now, minus `hours`, in whole seconds.
fn hours_ago(hours: i64) -> String {
    let now = Timestamp::now().as_second();
    Timestamp::from_second(now - hours * 3600).expect("valid").to_string()
}

/// The start of the current hour: what an hourly schedule ran last.
fn this_hour() -> i64 {
    let now = Timestamp::now().as_second();
    now - now.rem_euclid(3600)
}

async fn set_last_schedule(api: &Api<CronJob>, name: &str, at: &str) -> Result<()> {
    let patch = json!({ "status": { "lastScheduleTime": at } });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

async fn patch_spec(api: &Api<CronJob>, name: &str, spec: Value) -> Result<()> {
    api.patch(name, &PatchParams::default(), &Patch::Merge(json!({ "spec": spec }))).await?;
    Ok(())
}

/// The names of the Jobs of CronJob `name` (by the template's label).
async fn jobs_of(jobs: &Api<Job>, name: &str) -> Result<Vec<String>> {
    let list = jobs.list(&ListParams::default().labels(&format!("app={name}"))).await?;
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .filter_map(|j| j.metadata.name)
        .collect();
    names.sort();
    Ok(names)
}

async fn start() -> Result<(Cluster, Api<CronJob>, Api<Job>)> {
    keelson_controllers::job::set_pod_failure_backoff(std::time::Duration::from_millis(10));
    let cluster = Cluster::start(1).await?;
    let cronjobs = Api::namespaced(cluster.client.clone(), "default");
    let jobs = Api::namespaced(cluster.client.clone(), "default");
    Ok((cluster, cronjobs, jobs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_latest_missed_schedule_runs() -> Result<()> {
    let (cluster, cronjobs, jobs) = start().await?;
    cronjobs.create(&PostParams::default(), &cronjob("hourly", "@hourly", "Allow")?).await?;
    set_last_schedule(&cronjobs, "hourly", &hours_ago(3)).await?;
    patch_spec(&cronjobs, "hourly", json!({ "suspend": false })).await?;
    let expected = format!("hourly-{}", this_hour() / 60);
    let cj = wait_for(
        "the missed run started",
        || async { Ok(cronjobs.get("hourly").await?) },
        |cj| {
            let active = cj.status.as_ref().and_then(|s| s.active.clone()).unwrap_or_default();
            active.len() == 1 && active[0].name.as_deref() == Some(expected.as_str())
        },
    )
    .await?;
    let status = serde_json::to_value(&cj.status)?;
    let hour = Timestamp::from_second(this_hour())?.to_string();
    assert_eq!(status["lastScheduleTime"], json!(hour));
    assert_eq!(
        jobs_of(&jobs, "hourly").await?,
        std::slice::from_ref(&expected),
        "three missed, one run"
    );
    let job = jobs.get(&expected).await?;
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"], hour);
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("CronJob", Some(true)));
    let label = format!("job-name={expected}");
    eventually("the job's pod", || async {
        Ok(pods_with(&cluster.client, &label).await?.len() == 1)
    })
    .await?;

    // Over 100 misses: upstream's warning, and still no second job for this hour.
    set_last_schedule(&cronjobs, "hourly", &hours_ago(200)).await?;
    eventually("the TooManyMissedTimes warning", || async {
        let events = cluster.events("hourly").await?;
        Ok(events.iter().any(|e| e.starts_with("TooManyMissedTimes: too many missed start times")))
    })
    .await?;
    assert_eq!(jobs_of(&jobs, "hourly").await?, [expected]);
    let events = cluster.events("hourly").await?;
    assert!(events.contains(&format!("SuccessfulCreate: Created job hourly-{}", this_hour() / 60)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_skips_a_run_and_replace_replaces_the_active_job() -> Result<()> {
    let (cluster, cronjobs, jobs) = start().await?;
    cronjobs.create(&PostParams::default(), &cronjob("busy", "0 * * * *", "Forbid")?).await?;
    set_last_schedule(&cronjobs, "busy", &hours_ago(3)).await?;
    patch_spec(&cronjobs, "busy", json!({ "suspend": false })).await?;
    let first = format!("busy-{}", this_hour() / 60);
    wait_for(
        "the first run",
        || jobs_of(&jobs, "busy"),
        |names| names == std::slice::from_ref(&first),
    )
    .await?;
    // A second schedule time comes due while the first job still runs.
    set_last_schedule(&cronjobs, "busy", &hours_ago(3)).await?;
    patch_spec(&cronjobs, "busy", json!({ "schedule": "30 * * * *" })).await?;
    eventually("JobAlreadyActive", || async {
        let events = cluster.events("busy").await?;
        Ok(events.iter().any(|e| {
            e == "JobAlreadyActive: Not starting job because prior execution is running and \
                  concurrency policy is Forbid"
        }))
    })
    .await?;
    assert_eq!(
        jobs_of(&jobs, "busy").await?,
        std::slice::from_ref(&first),
        "Forbid starts nothing"
    );

    patch_spec(&cronjobs, "busy", json!({ "concurrencyPolicy": "Replace" })).await?;
    let names = wait_for(
        "the first job replaced",
        || jobs_of(&jobs, "busy"),
        |names| names.len() == 1 && names[0] != first,
    )
    .await?;
    let cj = cronjobs.get("busy").await?;
    let active = cj.status.and_then(|s| s.active).unwrap_or_default();
    assert_eq!(active.iter().filter_map(|r| r.name.clone()).collect::<Vec<_>>(), names);
    let events = cluster.events("busy").await?;
    assert!(events.contains(&format!("SuccessfulDelete: Deleted job {first}")), "{events:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_a_job_from_a_cronjob_and_history_keeps_the_newest() -> Result<()> {
    let (cluster, cronjobs, jobs) = start().await?;
    cronjobs.create(&PostParams::default(), &cronjob("report", "0 * * * *", "Allow")?).await?;
    set_last_schedule(&cronjobs, "report", &hours_ago(2)).await?;
    patch_spec(&cronjobs, "report", json!({ "suspend": false })).await?;
    let scheduled = format!("report-{}", this_hour() / 60);
    wait_for(
        "the scheduled run",
        || jobs_of(&jobs, "report"),
        |n| n == std::slice::from_ref(&scheduled),
    )
    .await?;
    let label = format!("job-name={scheduled}");
    let pod =
        wait_for("its pod", || pods_with(&cluster.client, &label), |pods| pods.len() == 1).await?;
    finish_pod(&cluster.client, &pod[0].0, 0).await?;
    let cj = wait_for(
        "the run seen complete",
        || async { Ok(cronjobs.get("report").await?) },
        |cj| {
            let s = cj.status.clone().unwrap_or_default();
            s.active.unwrap_or_default().is_empty() && s.last_successful_time.is_some()
        },
    )
    .await?;
    assert!(cj.status.is_some());
    eventually("SawCompletedJob", || async {
        let events = cluster.events("report").await?;
        Ok(events.contains(&format!(
            "SawCompletedJob: Saw completed job: {scheduled}, condition: Complete"
        )))
    })
    .await?;

    // Start times have whole seconds and ties go by name ("manual" < "report-…"), as
    // upstream orders them: the manual run must start in a later second to be the newer.
    let first = jobs.get(&scheduled).await?;
    let started = first.status.and_then(|s| s.start_time).map(|t| t.0.as_second()).unwrap_or(0);
    while Timestamp::now().as_second() <= started {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = cluster.kubectl(&["create", "job", "manual", "--from=cronjob/report"]).await?;
    assert!(out.contains("job.batch/manual created"), "{out}");
    let manual = jobs.get("manual").await?;
    let annotations = manual.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("cronjob.kubernetes.io/instantiate").map(String::as_str),
        Some("manual")
    );
    let owner = &manual.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("CronJob", "report"));
    let pod = wait_for(
        "the manual job's pod",
        || pods_with(&cluster.client, "job-name=manual"),
        |pods| pods.len() == 1,
    )
    .await?;
    finish_pod(&cluster.client, &pod[0].0, 0).await?;
    // Two finished successfully, successfulJobsHistoryLimit 1: the older one goes.
    wait_for(
        "the older job deleted",
        || jobs_of(&jobs, "report"),
        |n| n == &["manual".to_string()],
    )
    .await?;
    let events = cluster.events("report").await?;
    assert!(events.contains(&format!("SuccessfulDelete: Deleted job {scheduled}")), "{events:?}");
    assert!(
        events.iter().any(|e| e
            == "UnexpectedJob: Saw a job that the controller did not create or forgot: manual")
    );
    Ok(())
}
