//! The Job controller against a real API server, scheduler and hollow nodes, finishing
//! pods by writing their status as a kubelet would: completions run `parallelism` at a
//! time, `backoffLimit`, Indexed completion, a `podFailurePolicy` FailJob rule, suspend
//! and resume, and `activeDeadlineSeconds` — with upstream's conditions, counters,
//! finalizers and events.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, eventually, finish_pod, pods_with, wait_for};
use keelson_api::k8s_openapi::api::batch::v1::Job;
use keelson_api::k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn job(name: &str, spec: Value) -> Result<Job> {
    let mut spec = spec;
    spec["template"] = json!({
        "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "c", "image": "registry.k8s.io/pause:3.10" }],
        },
    });
    Ok(serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name },
        "spec": spec,
    }))?)
}

fn status_of(job: &Job) -> Value {
    serde_json::to_value(&job.status).unwrap_or_default()
}

/// The (type, status, reason) of each condition, in order.
fn conditions(job: &Job) -> Vec<(String, String, String)> {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    conditions.into_iter().map(|c| (c.type_, c.status, c.reason.unwrap_or_default())).collect()
}

fn has_condition(job: &Job, type_: &str) -> bool {
    conditions(job).iter().any(|(t, s, _)| t == type_ && s == "True")
}

async fn start() -> Result<(Cluster, Api<Job>)> {
    keelson_controllers::job::set_pod_failure_backoff(Duration::from_millis(10));
    let cluster = Cluster::start(2).await?;
    let jobs = Api::namespaced(cluster.client.clone(), "default");
    Ok((cluster, jobs))
}

/// The active pods of job `name`, waiting until there are `count`.
async fn active_pods(cluster: &Cluster, name: &str, count: usize) -> Result<Vec<String>> {
    let label = format!("batch.kubernetes.io/job-name={name}");
    let pods = wait_for(
        &format!("{count} active pods of {name}"),
        || pods_with(&cluster.client, &label),
        |pods| pods.iter().filter(|(_, active)| *active).count() == count,
    )
    .await?;
    Ok(pods.into_iter().filter(|(_, active)| *active).map(|(n, _)| n).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_completions_run_two_at_a_time_and_complete() -> Result<()> {
    let (cluster, jobs) = start().await?;
    let created = jobs
        .create(
            &PostParams::default(),
            &job("work", json!({ "completions": 3, "parallelism": 2 }))?,
        )
        .await?;
    let uid = created.metadata.uid.clone().unwrap_or_default();
    let first = active_pods(&cluster, "work", 2).await?;
    let podapi: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let pod = podapi.get(&first[0]).await?;
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
    assert_eq!(labels["controller-uid"], uid);
    assert_eq!(labels["job-name"], "work");
    assert_eq!(pod.metadata.finalizers, Some(vec!["batch.kubernetes.io/job-tracking".into()]));
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Job", uid.as_str(), Some(true))
    );
    wait_for(
        "2 active, 2 ready",
        || async { Ok(jobs.get("work").await?) },
        |j| status_of(j)["active"] == 2 && status_of(j)["ready"] == 2,
    )
    .await?;

    finish_pod(&cluster.client, &first[0], 0).await?;
    let second = active_pods(&cluster, "work", 2).await?;
    let job = wait_for(
        "one success counted",
        || async { Ok(jobs.get("work").await?) },
        |j| status_of(j)["succeeded"] == 1,
    )
    .await?;
    assert!(status_of(&job)["startTime"].is_string());
    let done = podapi.get(&first[0]).await?;
    assert_eq!(done.metadata.finalizers, None, "a counted pod loses its finalizer");
    // One success leaves two to go, run two at a time: never a third.
    for name in &second {
        finish_pod(&cluster.client, name, 0).await?;
    }
    let job = wait_for(
        "the job complete",
        || async { Ok(jobs.get("work").await?) },
        |j| has_condition(j, "Complete"),
    )
    .await?;
    let s = status_of(&job);
    assert_eq!((s["succeeded"].clone(), s["failed"].clone()), (json!(3), Value::Null));
    assert_eq!(
        (s["active"].clone(), s["ready"].clone(), s["terminating"].clone()),
        (Value::Null, json!(0), json!(0))
    );
    assert_eq!(s["uncountedTerminatedPods"], json!({}));
    assert!(s["completionTime"].is_string());
    assert_eq!(
        conditions(&job),
        [
            ("SuccessCriteriaMet".into(), "True".into(), "CompletionsReached".into()),
            ("Complete".into(), "True".into(), "CompletionsReached".into()),
        ]
    );
    let all = pods_with(&cluster.client, "job-name=work").await?;
    assert_eq!(all.len(), 3, "exactly three pods were made: {all:?}");
    eventually("the events", || async {
        let events = cluster.events("work").await?;
        Ok(events.iter().filter(|e| e.starts_with("SuccessfulCreate: Created pod: work-")).count()
            == 3
            && events.iter().any(|e| e == "Completed: Job completed"))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_past_the_backoff_limit_fail_the_job() -> Result<()> {
    let (cluster, jobs) = start().await?;
    jobs.create(&PostParams::default(), &job("flaky", json!({ "backoffLimit": 1 }))?).await?;
    let first = active_pods(&cluster, "flaky", 1).await?;
    finish_pod(&cluster.client, &first[0], 1).await?;
    let second = wait_for(
        "a replacement pod",
        || pods_with(&cluster.client, "job-name=flaky"),
        |pods| pods.len() == 2 && pods.iter().any(|(n, active)| *active && *n != first[0]),
    )
    .await?;
    let job = wait_for(
        "one failure counted",
        || async { Ok(jobs.get("flaky").await?) },
        |j| status_of(j)["failed"] == 1,
    )
    .await?;
    assert!(!has_condition(&job, "Failed"), "one failure is within backoffLimit 1");
    let second = second.into_iter().find(|(n, _)| *n != first[0]).unwrap().0;
    finish_pod(&cluster.client, &second, 1).await?;
    let job = wait_for(
        "the job failed",
        || async { Ok(jobs.get("flaky").await?) },
        |j| has_condition(j, "Failed"),
    )
    .await?;
    assert_eq!(status_of(&job)["failed"], 2);
    assert_eq!(
        conditions(&job),
        [
            ("FailureTarget".into(), "True".into(), "BackoffLimitExceeded".into()),
            ("Failed".into(), "True".into(), "BackoffLimitExceeded".into()),
        ]
    );
    assert!(status_of(&job)["completionTime"].is_null());
    eventually("the warning event", || async {
        let events = cluster.events("flaky").await?;
        Ok(events
            .iter()
            .any(|e| e == "BackoffLimitExceeded: Job has reached the specified backoff limit"))
    })
    .await?;
    assert_eq!(pods_with(&cluster.client, "job-name=flaky").await?.len(), 2, "no third pod");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_job_completes_each_index_once() -> Result<()> {
    let (cluster, jobs) = start().await?;
    let spec = json!({ "completions": 3, "parallelism": 3, "completionMode": "Indexed" });
    jobs.create(&PostParams::default(), &job("idx", spec)?).await?;
    let names = active_pods(&cluster, "idx", 3).await?;
    let podapi: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let mut by_index = std::collections::BTreeMap::new();
    for name in &names {
        let pod = podapi.get(name).await?;
        let index =
            pod.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"]
                .clone();
        assert_eq!(
            pod.metadata.labels.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"],
            index
        );
        let spec = pod.spec.clone().unwrap_or_default();
        assert_eq!(spec.hostname, Some(format!("idx-{index}")));
        assert!(name.starts_with(&format!("idx-{index}-")), "{name}");
        let env = spec.containers[0].env.clone().unwrap_or_default();
        assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
        by_index.insert(index, name.clone());
    }
    assert_eq!(by_index.keys().cloned().collect::<Vec<_>>(), ["0", "1", "2"]);
    finish_pod(&cluster.client, &by_index["0"], 0).await?;
    finish_pod(&cluster.client, &by_index["2"], 0).await?;
    wait_for(
        "indexes 0 and 2 completed",
        || async { Ok(jobs.get("idx").await?) },
        |j| status_of(j)["completedIndexes"] == "0,2" && status_of(j)["succeeded"] == 2,
    )
    .await?;
    // A failed index is retried with a new pod of the same index.
    finish_pod(&cluster.client, &by_index["1"], 3).await?;
    let retry = wait_for(
        "index 1 retried",
        || pods_with(&cluster.client, "job-name=idx"),
        |pods| pods.len() == 4 && pods.iter().any(|(n, active)| *active && !names.contains(n)),
    )
    .await?;
    let retry = retry.into_iter().find(|(n, _)| !names.contains(n)).unwrap().0;
    assert!(retry.starts_with("idx-1-"), "{retry}");
    finish_pod(&cluster.client, &retry, 0).await?;
    let job = wait_for(
        "the job complete",
        || async { Ok(jobs.get("idx").await?) },
        |j| has_condition(j, "Complete"),
    )
    .await?;
    let s = status_of(&job);
    assert_eq!(
        (s["completedIndexes"].clone(), s["succeeded"].clone(), s["failed"].clone()),
        (json!("0-2"), json!(3), json!(1))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_job_rule_fails_the_job_on_its_exit_code() -> Result<()> {
    let (cluster, jobs) = start().await?;
    let spec = json!({
        "parallelism": 2,
        "completions": 2,
        "backoffLimit": 6,
        "podFailurePolicy": { "rules": [
            { "action": "Ignore", "onPodConditions": [{ "type": "DisruptionTarget", "status": "True" }] },
            { "action": "FailJob", "onExitCodes": { "containerName": "c", "operator": "In", "values": [42] } },
        ]},
    });
    jobs.create(&PostParams::default(), &job("strict", spec)?).await?;
    let names = active_pods(&cluster, "strict", 2).await?;
    finish_pod(&cluster.client, &names[0], 42).await?;
    let job = wait_for(
        "the job failed",
        || async { Ok(jobs.get("strict").await?) },
        |j| has_condition(j, "Failed"),
    )
    .await?;
    let message = format!(
        "Container c for pod default/{} failed with exit code 42 matching FailJob rule at index 1",
        names[0]
    );
    let failed = job.status.as_ref().and_then(|s| s.conditions.as_ref()).unwrap();
    let failed = failed.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(
        (failed.reason.as_deref(), failed.message.as_deref()),
        (Some("PodFailurePolicy"), Some(message.as_str()))
    );
    assert!(has_condition(&job, "FailureTarget"));
    // The other pod was deleted, and both are counted as failed.
    assert_eq!(
        (status_of(&job)["failed"].clone(), status_of(&job)["active"].clone()),
        (json!(2), Value::Null)
    );
    eventually("the running pod gone", || async {
        let podapi: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
        Ok(podapi.get_opt(&names[1]).await?.is_none())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_deletes_the_pods_and_resume_recreates_them() -> Result<()> {
    let (cluster, jobs) = start().await?;
    jobs.create(
        &PostParams::default(),
        &job("pausable", json!({ "parallelism": 2, "completions": 4 }))?,
    )
    .await?;
    let before = active_pods(&cluster, "pausable", 2).await?;
    let suspend = |on: bool| Patch::Merge(json!({ "spec": { "suspend": on } }));
    jobs.patch("pausable", &PatchParams::default(), &suspend(true)).await?;
    let job = wait_for(
        "suspended, no pod left",
        || async { Ok(jobs.get("pausable").await?) },
        |j| has_condition(j, "Suspended") && status_of(j)["active"].is_null(),
    )
    .await?;
    assert!(conditions(&job).contains(&("Suspended".into(), "True".into(), "JobSuspended".into())));
    eventually("the pods deleted", || async {
        Ok(pods_with(&cluster.client, "job-name=pausable").await?.is_empty())
    })
    .await?;
    assert_eq!(status_of(&job)["failed"], Value::Null, "suspension is no failure");
    jobs.patch("pausable", &PatchParams::default(), &suspend(false)).await?;
    let after = active_pods(&cluster, "pausable", 2).await?;
    assert!(after.iter().all(|n| !before.contains(n)), "new pods: {after:?}");
    let job = wait_for(
        "resumed",
        || async { Ok(jobs.get("pausable").await?) },
        |j| conditions(j).contains(&("Suspended".into(), "False".into(), "JobResumed".into())),
    )
    .await?;
    assert!(status_of(&job)["startTime"].is_string());
    eventually("the events", || async {
        let events = cluster.events("pausable").await?;
        Ok(events.contains(&"Suspended: Job suspended".to_string())
            && events.contains(&"Resumed: Job resumed".to_string())
            && events.iter().filter(|e| e.starts_with("SuccessfulDelete: Deleted pod: ")).count()
                == 2)
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_deadline_fails_the_job_and_deletes_its_pods() -> Result<()> {
    let (cluster, jobs) = start().await?;
    jobs.create(
        &PostParams::default(),
        &job("slow", json!({ "activeDeadlineSeconds": 3, "parallelism": 2, "completions": 2 }))?,
    )
    .await?;
    active_pods(&cluster, "slow", 2).await?;
    let job = wait_for(
        "the job failed",
        || async { Ok(jobs.get("slow").await?) },
        |j| has_condition(j, "Failed"),
    )
    .await?;
    assert_eq!(
        conditions(&job),
        [
            ("FailureTarget".into(), "True".into(), "DeadlineExceeded".into()),
            ("Failed".into(), "True".into(), "DeadlineExceeded".into()),
        ]
    );
    assert_eq!(status_of(&job)["failed"], 2, "the deleted pods count as failed");
    eventually("the pods gone", || async {
        Ok(pods_with(&cluster.client, "job-name=slow").await?.is_empty())
    })
    .await?;
    eventually("the warning event", || async {
        let events = cluster.events("slow").await?;
        Ok(events
            .iter()
            .any(|e| e == "DeadlineExceeded: Job was active longer than specified deadline"))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_deleted_after_its_ttl() -> Result<()> {
    let (cluster, jobs) = start().await?;
    jobs.create(&PostParams::default(), &job("brief", json!({ "ttlSecondsAfterFinished": 2 }))?)
        .await?;
    let pod = active_pods(&cluster, "brief", 1).await?;
    finish_pod(&cluster.client, &pod[0], 0).await?;
    let job = wait_for(
        "the job complete",
        || async { Ok(jobs.get("brief").await?) },
        |j| has_condition(j, "Complete"),
    )
    .await?;
    let finished = job.status.and_then(|s| s.completion_time).unwrap().0;
    eventually("the job and its pod deleted", || async {
        Ok(jobs.get_opt("brief").await?.is_none()
            && pods_with(&cluster.client, "job-name=brief").await?.is_empty())
    })
    .await?;
    let waited = jiff::Timestamp::now().duration_since(finished).as_secs_f64();
    assert!(waited >= 2.0, "deleted {waited} s after finishing, before the TTL");
    Ok(())
}
