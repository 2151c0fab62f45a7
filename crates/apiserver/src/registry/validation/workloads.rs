//! Workloads: ReplicationControllers, ReplicaSets, Deployments, StatefulSets, DaemonSets,
//! Jobs and CronJobs — their selectors, templates and counts.

use serde_json::{Value, json};

use super::{non_negative, not_supported, one_of, required, selects};
use crate::status::Cause;

/// Replicated workloads: a selector that selects the template's labels, a valid pod
/// template that restarts `Always`, sane counts and strategies.
pub fn replicated(plural: &str, object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    non_negative(&spec["replicas"], "spec.replicas", causes);
    non_negative(&spec["minReadySeconds"], "spec.minReadySeconds", causes);
    non_negative(&spec["revisionHistoryLimit"], "spec.revisionHistoryLimit", causes);
    let labels = &spec["template"]["metadata"]["labels"];
    if plural == "replicationcontrollers" {
        // A plain label map, every pair of which the template must carry.
        if let Some(selector) = spec["selector"].as_object().filter(|s| !s.is_empty()) {
            let matches = selector.iter().all(|(k, v)| labels.get(k) == Some(v));
            if !matches {
                causes.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    labels,
                    "`selector` does not match template `labels`",
                ));
            }
        } else {
            required("spec.selector", causes);
        }
    } else if spec["selector"].is_null() {
        required("spec.selector", causes);
    } else if spec["selector"].as_object().is_some_and(|s| {
        s.values().all(|v| {
            v.is_null()
                || v.as_object().is_some_and(|m| m.is_empty())
                || v.as_array().is_some_and(|a| a.is_empty())
        })
    }) {
        causes.push(Cause::invalid(
            "spec.selector",
            &spec["selector"],
            "empty selector is invalid for deployment",
        ));
    } else if !selects(&spec["selector"], labels) {
        causes.push(Cause::invalid(
            "spec.template.metadata.labels",
            labels,
            "`selector` does not match template `labels`",
        ));
    }
    if spec["template"].is_null() {
        required("spec.template", causes);
    } else {
        super::pod::spec(&spec["template"]["spec"], "spec.template.spec", causes);
        let restart = &spec["template"]["spec"]["restartPolicy"];
        if restart.as_str().is_some_and(|r| r != "Always") {
            not_supported("spec.template.spec.restartPolicy", restart, &["Always"], causes);
        }
    }
    match plural {
        "deployments" => {
            let strategy = &spec["strategy"];
            one_of(&strategy["type"], "spec.strategy.type", &["Recreate", "RollingUpdate"], causes);
            if strategy["type"] == "Recreate" && !strategy["rollingUpdate"].is_null() {
                causes.push(Cause::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
            let rolling = &strategy["rollingUpdate"];
            if is_zero(&rolling["maxSurge"])
                && is_zero(&rolling["maxUnavailable"])
                && strategy["type"] == "RollingUpdate"
            {
                causes.push(Cause::invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    &rolling["maxUnavailable"],
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        "statefulsets" => {
            one_of(
                &spec["podManagementPolicy"],
                "spec.podManagementPolicy",
                &["OrderedReady", "Parallel"],
                causes,
            );
            one_of(
                &spec["updateStrategy"]["type"],
                "spec.updateStrategy.type",
                &["RollingUpdate", "OnDelete"],
                causes,
            );
        }
        "daemonsets" => {
            one_of(
                &spec["updateStrategy"]["type"],
                "spec.updateStrategy.type",
                &["RollingUpdate", "OnDelete"],
                causes,
            );
        }
        _ => {}
    }
}

fn is_zero(value: &Value) -> bool {
    value == &json!(0) || value == "0%" || value == "0"
}

/// `ValidateJobSpec`, at `path`.
/// `spec.selector` may not change (deployments, replica sets, stateful sets, daemon sets,
/// jobs).
pub fn selector_unchanged(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    super::immutable(&old["spec"]["selector"], &new["spec"]["selector"], "spec.selector", causes);
}

pub fn job(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    for field in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        non_negative(&spec[field], &format!("{path}.{field}"), causes);
    }
    one_of(
        &spec["completionMode"],
        &format!("{path}.completionMode"),
        &["NonIndexed", "Indexed"],
        causes,
    );
    if spec["completionMode"] == "Indexed" && spec["completions"].is_null() {
        required(&format!("{path}.completions"), causes);
    }
    if spec["template"].is_null() {
        required(&format!("{path}.template"), causes);
        return;
    }
    super::pod::spec(&spec["template"]["spec"], &format!("{path}.template.spec"), causes);
    let restart = &spec["template"]["spec"]["restartPolicy"];
    match restart.as_str() {
        Some("OnFailure" | "Never") => {}
        Some(_) => not_supported(
            &format!("{path}.template.spec.restartPolicy"),
            restart,
            &["OnFailure", "Never"],
            causes,
        ),
        None => required(&format!("{path}.template.spec.restartPolicy"), causes),
    }
}

pub fn cronjob(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    match spec["schedule"].as_str() {
        None | Some("") => required("spec.schedule", causes),
        Some(schedule) if !valid_schedule(schedule) => {
            causes.push(Cause::invalid("spec.schedule", &spec["schedule"], "unparseable schedule"));
        }
        Some(_) => {}
    }
    one_of(
        &spec["concurrencyPolicy"],
        "spec.concurrencyPolicy",
        &["Allow", "Forbid", "Replace"],
        causes,
    );
    for field in ["startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"]
    {
        non_negative(&spec[field], &format!("spec.{field}"), causes);
    }
    job(&spec["jobTemplate"]["spec"], "spec.jobTemplate.spec", causes);
}

/// A standard 5-field cron schedule or one of the `@` macros.
fn valid_schedule(schedule: &str) -> bool {
    let schedule = schedule.trim();
    let schedule = schedule
        .strip_prefix("TZ=")
        .or_else(|| schedule.strip_prefix("CRON_TZ="))
        .map_or(schedule, |rest| rest.split_once(' ').map_or("", |(_, s)| s.trim()));
    if schedule.starts_with('@') {
        return ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]
            .contains(&schedule)
            || schedule.starts_with("@every ");
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    let ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    fields.len() == 5
        && fields.iter().zip(ranges).all(|(field, (low, high))| {
            field.split(',').all(|part| {
            let (range, step) = part.split_once('/').unwrap_or((part, "1"));
            if step.parse::<u32>().map_or(true, |s| s == 0) {
                return false;
            }
            if range == "*" || range == "?" {
                return true;
            }
            let named = |s: &str| s.parse::<u32>().ok().or_else(|| month_or_day(s));
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            matches!((named(a), named(b)), (Some(a), Some(b)) if a >= low && b <= high && a <= b)
        })
        })
}

fn month_or_day(s: &str) -> Option<u32> {
    let names =
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let lower = s.to_ascii_lowercase();
    names
        .iter()
        .position(|n| *n == lower)
        .map(|i| i as u32 + 1)
        .or_else(|| days.iter().position(|d| *d == lower).map(|i| i as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_schedules() {
        for good in [
            "*/5 * * * *",
            "0 0 * * 0",
            "30 2 1-15 jan,jul mon-fri",
            "@hourly",
            "CRON_TZ=UTC 0 * * * *",
        ] {
            assert!(valid_schedule(good), "{good}");
        }
        for bad in ["", "* * * *", "61 * * * *", "*/0 * * * *", "@sometimes"] {
            assert!(!valid_schedule(bad), "{bad}");
        }
    }

    #[test]
    fn a_deployment_selector_must_select_its_template() {
        let mut causes = Vec::new();
        let deployment = json!({"spec": {"replicas": -1, "selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}});
        replicated("deployments", &deployment, &mut causes);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.replicas",
                "spec.template.metadata.labels",
                "spec.template.spec.restartPolicy",
                "spec.strategy.rollingUpdate.maxUnavailable"
            ]
        );
    }
}
