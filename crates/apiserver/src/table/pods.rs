//! The pod printer, upstream's `printPod`: the STATUS kubectl users read (`Running`,
//! `Init:0/2`, `CrashLoopBackOff`, `Completed`, `Terminating`...), ready containers, and
//! restarts with how long ago the last one was.

use keelson_api::k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::cells::{self, Now, int, items, text};
use super::{Column, Printer};

pub(crate) const POD: Printer = Printer::Columns {
    columns: &[
        Column::NAME,
        Column::string("Ready"),
        Column::string("Status"),
        Column::string("Restarts"),
        Column::AGE,
        Column::wide("IP"),
        Column::wide("Node"),
        Column::wide("Nominated Node"),
        Column::wide("Readiness Gates"),
    ],
    cells: pod_cells,
};

/// Restart counts and the latest time a container last terminated.
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<Timestamp>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += int(&status["restartCount"]);
        let finished = cells::timestamp(&status["lastState"]["terminated"]["finishedAt"]);
        if finished > self.last {
            self.last = finished;
        }
    }
}

fn pod_cells(o: &Value, now: Now) -> Vec<Value> {
    let (spec, status) = (&o["spec"], &o["status"]);
    let phase = text(&status["phase"]);
    let mut reason = match text(&status["reason"]) {
        "" => phase.to_owned(),
        r => r.to_owned(),
    };
    if items(&status["conditions"])
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    let init_containers: Vec<&Value> = items(&spec["initContainers"]).collect();
    let sidecar = |name: &Value| {
        init_containers.iter().any(|c| c["name"] == *name && c["restartPolicy"] == "Always")
    };
    let total = cells::len(&spec["containers"])
        + init_containers.iter().filter(|c| c["restartPolicy"] == "Always").count();
    let mut ready = 0;
    let (mut all, mut sidecars) = (Restarts::default(), Restarts::default());
    let mut initializing = false;
    let init_statuses: Vec<&Value> = items(&status["initContainerStatuses"]).collect();
    for (i, container) in init_statuses.iter().enumerate() {
        all.add(container);
        let is_sidecar = sidecar(&container["name"]);
        if is_sidecar {
            sidecars.add(container);
        }
        let state = &container["state"];
        let terminated = &state["terminated"];
        let waiting = text(&state["waiting"]["reason"]);
        if terminated.is_object() && int(&terminated["exitCode"]) == 0 {
            continue;
        }
        if is_sidecar && container["started"] == true {
            if container["ready"] == true {
                ready += 1;
            }
            continue;
        }
        reason = if terminated.is_object() {
            match text(&terminated["reason"]) {
                "" if int(&terminated["signal"]) != 0 => {
                    format!("Init:Signal:{}", int(&terminated["signal"]))
                }
                "" => format!("Init:ExitCode:{}", int(&terminated["exitCode"])),
                r => format!("Init:{r}"),
            }
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            format!("Init:{waiting}")
        } else {
            format!("Init:{i}/{}", init_containers.len())
        };
        initializing = true;
        break;
    }

    let mut restarts = all;
    let initialized = cells::condition_true(&status["conditions"], "Initialized");
    if !initializing || initialized {
        restarts = sidecars;
        let mut running = false;
        let statuses: Vec<&Value> = items(&status["containerStatuses"]).collect();
        for container in statuses.iter().rev() {
            restarts.add(container);
            let state = &container["state"];
            let terminated = &state["terminated"];
            let waiting = text(&state["waiting"]["reason"]);
            if !waiting.is_empty() {
                reason = waiting.to_owned();
            } else if terminated.is_object() {
                reason = match text(&terminated["reason"]) {
                    "" if int(&terminated["signal"]) != 0 => {
                        format!("Signal:{}", int(&terminated["signal"]))
                    }
                    "" => format!("ExitCode:{}", int(&terminated["exitCode"])),
                    r => r.to_owned(),
                };
            } else if container["ready"] == true && state["running"].is_object() {
                running = true;
                ready += 1;
            }
        }
        // A pod whose containers are still running is not Completed.
        if reason == "Completed" && running {
            reason = if cells::condition_true(&status["conditions"], "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if cells::deleting(o) && text(&status["reason"]) == "NodeLost" {
        reason = "Unknown".into();
    } else if cells::deleting(o) && !matches!(phase, "Succeeded" | "Failed") {
        reason = "Terminating".into();
    }

    let shown_restarts = match restarts.last {
        Some(last) if restarts.count != 0 => {
            format!("{} ({} ago)", restarts.count, now.ago(last))
        }
        _ => restarts.count.to_string(),
    };
    let none = |s: &str| if s.is_empty() { "<none>".to_owned() } else { s.to_owned() };
    let ip = items(&status["podIPs"]).next().map_or("", |ip| text(&ip["ip"]));
    let gates = cells::len(&spec["readinessGates"]);
    let readiness_gates = if gates == 0 {
        "<none>".to_owned()
    } else {
        let met = items(&spec["readinessGates"])
            .filter(|g| {
                cells::condition(&status["conditions"], text(&g["conditionType"]))
                    .is_some_and(|c| c["status"] == "True")
            })
            .count();
        format!("{met}/{gates}")
    };
    vec![
        cells::name(o),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(shown_restarts),
        now.age(o),
        json!(none(if ip.is_empty() { text(&status["podIP"]) } else { ip })),
        json!(none(text(&spec["nodeName"]))),
        json!(none(text(&status["nominatedNodeName"]))),
        json!(readiness_gates),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::table::tests::print;

    fn pod(status: Value) -> Value {
        json!({
            "metadata": { "name": "web", "creationTimestamp": "2025-01-01T00:00:00Z" },
            "spec": {
                "nodeName": "n1",
                "initContainers": [{ "name": "setup" }],
                "containers": [{ "name": "a" }, { "name": "b" }]
            },
            "status": status
        })
    }

    #[test]
    fn a_running_pod_with_a_restart() {
        let running = pod(json!({
            "phase": "Running",
            "podIPs": [{ "ip": "10.42.0.5" }],
            "conditions": [{ "type": "Initialized", "status": "True" }, { "type": "Ready", "status": "True" }],
            "initContainerStatuses": [{ "name": "setup", "state": { "terminated": { "exitCode": 0, "reason": "Completed" } } }],
            "containerStatuses": [
                { "name": "a", "ready": true, "restartCount": 2, "state": { "running": {} },
                  "lastState": { "terminated": { "exitCode": 1, "finishedAt": "2025-01-01T00:50:00Z" } } },
                { "name": "b", "ready": true, "restartCount": 0, "state": { "running": {} } }
            ]
        }));
        let (_, cells) = print("", "pods", &running, "2025-01-01T01:00:00Z");
        let expected =
            ["web", "2/2", "Running", "2 (10m ago)", "60m", "10.42.0.5", "n1", "<none>", "<none>"];
        assert_eq!(cells, expected.map(|s| json!(s)));
    }

    #[test]
    fn a_pod_still_initializing_or_crashing() {
        let initializing = pod(json!({
            "phase": "Pending",
            "initContainerStatuses": [{ "name": "setup", "state": { "running": {} } }]
        }));
        let (_, cells) = print("", "pods", &initializing, "2025-01-01T00:01:00Z");
        assert_eq!(cells[1..4], [json!("0/2"), json!("Init:0/1"), json!("0")]);

        let crashing = pod(json!({
            "phase": "Running",
            "conditions": [{ "type": "Initialized", "status": "True" }],
            "containerStatuses": [
                { "name": "a", "restartCount": 4, "state": { "waiting": { "reason": "CrashLoopBackOff" } } },
                { "name": "b", "ready": true, "state": { "running": {} } }
            ]
        }));
        let (_, cells) = print("", "pods", &crashing, "2025-01-01T00:01:00Z");
        assert_eq!(cells[1..4], [json!("1/2"), json!("CrashLoopBackOff"), json!("4")]);
    }
}
