//! Printers of the batch group, upstream's `printJob` and `printCronJob`: what a job came
//! to, how many of its completions are done and how long it ran; a cron job's schedule and
//! how it is doing.

use serde_json::{Value, json};

use super::cells::{self, Now, bool_ptr, condition_true, format_selector, int, text_or};
use super::{Column, Printer};

pub(crate) const JOB: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Status"),
        Column::string("Completions"),
        Column::string("Duration"),
        Column::AGE,
        Column::wide("Containers"),
        Column::wide("Images"),
        Column::wide("Selector"),
    ],
    cells: job_cells,
};

pub(crate) const CRON_JOB: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Schedule"),
        Column::string("Timezone"),
        Column::boolean("Suspend"),
        Column::integer("Active"),
        Column::string("Last Schedule"),
        Column::AGE,
        Column::wide("Containers"),
        Column::wide("Images"),
        Column::wide("Selector"),
    ],
    cells: |o, now| {
        let (spec, status) = (&o["spec"], &o["status"]);
        let job = &spec["jobTemplate"]["spec"];
        let last = &status["lastScheduleTime"];
        let last = if last.is_null() { "<none>".to_owned() } else { now.since(last) };
        let [names, images] = cells::containers(&job["template"]["spec"]);
        vec![
            cells::name(o),
            json!(cells::text(&spec["schedule"])),
            json!(text_or(&spec["timeZone"], "<none>")),
            json!(bool_ptr(&spec["suspend"])),
            json!(cells::len(&status["active"])),
            json!(last),
            now.age(o),
            names,
            images,
            json!(format_selector(&job["selector"])),
        ]
    },
};

fn job_cells(o: &Value, now: Now) -> Vec<Value> {
    let (spec, status) = (&o["spec"], &o["status"]);
    let succeeded = int(&status["succeeded"]);
    let completions = match (spec["completions"].as_i64(), int(&spec["parallelism"])) {
        (Some(completions), _) => format!("{succeeded}/{completions}"),
        (None, parallelism) if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
        (None, _) => format!("{succeeded}/1"),
    };
    let duration = match cells::timestamp(&status["startTime"]) {
        None => String::new(),
        Some(start) => match cells::timestamp(&status["completionTime"]) {
            None => now.ago(start),
            Some(end) => cells::between(start, end),
        },
    };
    let conditions = &status["conditions"];
    let state = if condition_true(conditions, "Complete") {
        "Complete"
    } else if condition_true(conditions, "Failed") {
        "Failed"
    } else if cells::deleting(o) {
        "Terminating"
    } else if condition_true(conditions, "Suspended") {
        "Suspended"
    } else if condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else if condition_true(conditions, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let [names, images] = cells::containers(&spec["template"]["spec"]);
    vec![
        cells::name(o),
        json!(state),
        json!(completions),
        json!(duration),
        now.age(o),
        names,
        images,
        json!(format_selector(&spec["selector"])),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::table::tests::print;

    fn job(spec: Value, status: Value) -> Value {
        json!({
            "metadata": { "name": "pi", "creationTimestamp": "2025-01-01T00:00:00Z" },
            "spec": spec,
            "status": status
        })
    }

    #[test]
    fn a_running_job_two_thirds_done() {
        let running = job(
            json!({
                "completions": 3, "parallelism": 1,
                "selector": { "matchLabels": { "batch.kubernetes.io/controller-uid": "u1" } },
                "template": { "spec": { "containers": [{ "name": "pi", "image": "perl:5.34" }] } }
            }),
            json!({ "startTime": "2025-01-01T00:00:05Z", "succeeded": 2, "active": 1 }),
        );
        let (columns, cells) = print("batch", "jobs", &running, "2025-01-01T00:01:35Z");
        assert_eq!(
            columns,
            [
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let expected = json!([
            "pi",
            "Running",
            "2/3",
            "90s",
            "95s",
            "pi",
            "perl:5.34",
            "batch.kubernetes.io/controller-uid=u1"
        ]);
        assert_eq!(json!(cells), expected);
    }

    #[test]
    fn a_job_that_finished_or_has_not_started() {
        let complete = job(
            json!({ "parallelism": 4 }),
            json!({
                "startTime": "2025-01-01T00:00:00Z", "completionTime": "2025-01-01T00:03:10Z",
                "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }]
            }),
        );
        let (_, cells) = print("batch", "jobs", &complete, "2025-01-02T00:00:00Z");
        assert_eq!(
            cells[1..5],
            [json!("Complete"), json!("1/1 of 4"), json!("3m10s"), json!("24h")]
        );

        let suspended = job(
            json!({ "completions": 1, "suspend": true }),
            json!({ "conditions": [{ "type": "Suspended", "status": "True" }] }),
        );
        let (_, cells) = print("batch", "jobs", &suspended, "2025-01-01T00:00:10Z");
        assert_eq!(cells[1..4], [json!("Suspended"), json!("0/1"), json!("")]);
    }

    #[test]
    fn a_cron_job_shows_its_schedule() {
        let cron = json!({
            "metadata": { "name": "nightly", "creationTimestamp": "2025-01-01T00:00:00Z" },
            "spec": {
                "schedule": "0 3 * * *", "suspend": false,
                "jobTemplate": { "spec": { "template": { "spec": { "containers": [
                    { "name": "backup", "image": "restic" }
                ] } } } }
            },
            "status": {
                "active": [{ "kind": "Job", "name": "nightly-1" }],
                "lastScheduleTime": "2025-01-03T03:00:00Z"
            }
        });
        let (columns, cells) = print("batch", "cronjobs", &cron, "2025-01-03T03:02:00Z");
        assert_eq!(
            columns[..7],
            ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age"]
        );
        let expected = json!([
            "nightly",
            "0 3 * * *",
            "<none>",
            "False",
            1,
            "2m",
            "2d3h",
            "backup",
            "restic",
            "<none>"
        ]);
        assert_eq!(json!(cells), expected);
    }
}
